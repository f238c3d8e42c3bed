#!/usr/bin/env bash
# The container image, tested for real with podman: the Dockerfile's runtime stage around a
# binary built on this machine, on a base image made here from the binary's own libraries (no
# registry is needed). Checks that the container
#   - becomes healthy through the image's own HEALTHCHECK,
#   - answers Issue and Verify on the published gRPC port and the JWKS on the HTTP port,
#   - runs as uid 10001 on a read-only root filesystem,
#   - keeps its keys in the /data volume across `podman rm` and a new container,
#   - ends with exit status 0 on `podman stop`, inside podman's default stop timeout.
#
# Usage: tests/container/run.sh      (needs root, or rootless podman set up for this user)
# Skips (exit 0, with a message) where podman is missing and cannot be installed; CI=true makes
# a missing podman an error instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

say() { printf 'container test: %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
# Runs podman, showing its stderr only when it fails: without systemd, podman logs an error
# about health-check timers on every start and stop although the container is fine.
pm() { podman "$@" 2>"$work/podman.err" || { cat "$work/podman.err" >&2; return 1; }; }

if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing podman and runc from the distribution's packages"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
    elif [ "${CI:-}" = true ]; then
        fail "podman and runc are needed and cannot be installed here"
    else
        say "SKIPPED: podman or runc is not installed (apt-get install podman runc)"
        exit 0
    fi
fi

work=$(mktemp -d)
image=localhost/token-authority:container-test
base=localhost/token-authority-base:host-libs
volume=ta-container-test-data
names=(ta-container-test-1 ta-container-test-2)
cleanup() {
    for name in "${names[@]}"; do podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; done
    podman volume rm -f "$volume" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# crun and podman's default rlimits (nofile and nproc raised past the hard limits) fail on
# these machines; runc with explicit limits works.
if [ -z "${CONTAINERS_CONF:-}" ]; then
    cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF="$work/containers.conf"
fi

profile=${TA_CARGO_PROFILE:-dev}
target_dir=debug
[ "$profile" = release ] && target_dir=release
say "building the binary and the smoke client (cargo profile $profile)"
cargo build --quiet --profile "$profile" --bin token-authority --example smoke
binary=target/$target_dir/token-authority
smoke=target/$target_dir/examples/smoke

# The runtime base: the binary's shared libraries and nothing else, like distroless/cc. Kept
# between runs under a name that changes with the host's libraries.
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
base="$base-$(cat $libs | sha256sum | cut -c1-12)"
if ! podman image exists "$base"; then
    say "making the base image $base from the host's libraries"
    mkdir -p "$work/rootfs/tmp"
    for lib in $libs; do
        mkdir -p "$work/rootfs$(dirname "$lib")"
        cp -L "$lib" "$work/rootfs$lib"
    done
    # Dynamic loaders are found by their absolute path, which is also where ldd lists them.
    tar -C "$work/rootfs" -c . | podman import --quiet - "$base" >/dev/null
fi

# The Dockerfile's build stage is replaced by a directory laid out as it leaves /out.
mkdir -p "$work/out/out/data"
cp "$binary" "$work/out/out/token-authority"
say "building the image from the Dockerfile"
podman build --quiet --format docker \
    --build-arg RUNTIME_IMAGE="$base" \
    --build-context build="$work/out" \
    -t "$image" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
say "image size: $((size / 1000 / 1000)) MB (binary $(( $(stat -c %s "$binary") / 1000 / 1000 )) MB, cargo profile $profile)"

# Starts a container on the volume and waits until its own HEALTHCHECK reports healthy. Podman
# runs health checks from systemd timers; where there is no systemd they are run here, on the
# same schedule, with `podman healthcheck run`, which executes the image's HEALTHCHECK command.
start() {
    local name=$1
    pm run -d --name "$name" --read-only \
        -p 127.0.0.1::50051 -p 127.0.0.1::8080 \
        -v "$volume:/data" "$image" >/dev/null
    local t0=$SECONDS status=""
    for _ in $(seq 1 60); do
        podman healthcheck run "$name" >/dev/null 2>&1 || true
        status=$(podman inspect --format '{{.State.Health.Status}}' "$name")
        [ "$status" = healthy ] && break
        sleep 0.5
    done
    [ "$status" = healthy ] || { podman logs "$name" >&2; fail "$name is $status, not healthy"; }
    say "$name healthy after $((SECONDS - t0)) s"
    grpc=$(podman port "$name" 50051/tcp)
    http=$(podman port "$name" 8080/tcp)
}

start "${names[0]}"
token=$("$smoke" --addr "$grpc") || fail "Issue/Verify through $grpc"
jwks=$(curl -fsS "http://$http/.well-known/jwks.json") || fail "JWKS through $http"
kid=$(printf '%s' "$token" | cut -d. -f1 | tr '_-' '/+' | base64 -d 2>/dev/null | sed -n 's/.*"kid":"\([^"]*\)".*/\1/p' || true)
[ -n "$kid" ] || fail "the token's header has no kid"
case "$jwks" in
*"\"kid\":\"$kid\""*) ;;
*) fail "the JWKS does not publish the signing key $kid: $jwks" ;;
esac
say "Issue, Verify and the JWKS answer; the JWKS publishes $kid"

uid=$(podman top "${names[0]}" huser | tail -n +2 | sort -u)
[ "$uid" = 10001 ] || fail "the service runs as host uid '$uid', not 10001"
[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "${names[0]}")" = true ] ||
    fail "the root filesystem is writable"
# The binary itself tries to write outside /data, and must be refused by the filesystem.
if out=$(podman exec "${names[0]}" /usr/local/bin/token-authority keys generate \
    --algorithm ES256 --out /usr/local/probe.pem 2>&1); then
    fail "a file could be written to the root filesystem"
fi
case "$out" in
*"Read-only file system"* | *"read-only"*) ;;
*) fail "writing to the root filesystem failed for another reason: $out" ;;
esac
podman exec "${names[0]}" /usr/local/bin/token-authority keys generate \
    --algorithm ES256 --out /data/probe.pem >/dev/null 2>&1 || fail "/data is not writable"
say "runs as uid 10001; the root filesystem is read-only, /data is writable"

t0=$SECONDS
pm stop "${names[0]}" >/dev/null
stop_s=$((SECONDS - t0))
code=$(podman inspect --format '{{.State.ExitCode}}' "${names[0]}")
[ "$code" = 0 ] || { podman logs "${names[0]}" >&2; fail "podman stop: exit status $code"; }
logs=$(podman logs "${names[0]}" 2>&1)
case "$logs" in
*"draining in-flight calls"*) ;;
*) printf '%s\n' "$logs" >&2; fail "no drain on SIGTERM" ;;
esac
[ "$stop_s" -lt 10 ] || fail "stopping took ${stop_s} s, past podman's 10 s default"
say "podman stop: drained and exited 0 in ${stop_s} s"

pm rm "${names[0]}" >/dev/null
start "${names[1]}"
"$smoke" --addr "$grpc" --token "$token" >/dev/null || fail "a token from the first container does not verify"
say "a new container on the same volume verifies the first container's token"

say "passed in $((SECONDS - started)) s"
