#!/usr/bin/env bash
# Runs the Python and Node clients of examples/clients/ against a real token-authority on the
# embedded default configuration, then Django REST framework simplejwt (examples/clients/django)
# against one on examples/simplejwt.toml, and fails when any gets an answer it does not expect.
#
#     bash examples/clients/run.sh
#
# Needs python3 (3.10 or later, with venv) and node 20 with npm. The Python packages go into
# venvs under target/clients/ and the Node ones into examples/clients/node/node_modules; all are
# reused while their requirements.txt and package-lock.json stay the same.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}
cache=target/clients
venv=$cache/venv
bin=target/debug/token-authority

work=$(mktemp -d "${TMPDIR:-/tmp}/token-authority-clients.XXXXXX")
server_pid=
# Whatever happens, the server does not outlive the script and its data directory goes.
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# Bash runs the EXIT trap on a signal only when the signal itself is trapped.
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "clients: $*" >&2
    if [[ -f $work/server.log ]]; then
        echo "--- server log ---" >&2
        tail -n 20 "$work/server.log" >&2
    fi
    exit 1
}

# A stamp of the file a dependency directory was installed from, so it is reinstalled only when
# that file changes.
stamp_of() { sha256sum "$1" | cut -d' ' -f1; }

# install_python REQUIREMENTS VENV
install_python() {
    local requirements=$1 venv=$2
    if [[ -f $venv/.installed && $(cat "$venv/.installed") == "$(stamp_of $requirements)" ]]; then
        return 0
    fi
    echo "clients: installing Python packages into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv" || return 1
    timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 60 \
        -r "$requirements" || return 1
    stamp_of "$requirements" >"$venv/.installed"
}

install_node() {
    local dir=examples/clients/node
    if [[ -f $dir/node_modules/.installed && $(cat "$dir/node_modules/.installed") == "$(stamp_of $dir/package-lock.json)" ]]; then
        return 0
    fi
    echo "clients: installing Node packages into $dir/node_modules"
    (cd "$dir" && timeout 600 npm ci --no-audit --no-fund --loglevel=error) || return 1
    stamp_of "$dir/package-lock.json" >"$dir/node_modules/.installed"
}

# Reuses what cargo test built; a no-op when target/ is up to date.
timeout 900 cargo build --quiet || fail "cargo build failed"

# start_server [SERVE ARGS...]: starts the service on free ports (it logs the gRPC one) and
# waits until it reports SERVING; sets server_pid and addr.
start_server() {
    rm -rf "$work/data"
    "$bin" --log-format json serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
        --data-dir "$work/data" "$@" >"$work/server.log" 2>&1 &
    server_pid=$!
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*"message":"listening","addr":"\([^"]*\)".*/\1/p' "$work/server.log")
        [[ -n $addr ]] && break
        kill -0 "$server_pid" 2>/dev/null || fail "the server stopped before listening"
        sleep 0.1
    done
    [[ -n $addr ]] || fail "the server did not log its address within 10s"
    local healthy=
    for _ in $(seq 20); do
        if "$bin" healthcheck --addr "$addr" --service tokenauthority.v1.TokenAuthority --timeout 1s >/dev/null 2>&1; then
            healthy=1
            break
        fi
        sleep 0.25
    done
    [[ -n $healthy ]] || fail "the server at $addr did not report SERVING"
}

start_server
echo "clients: server SERVING at $addr"

passed=0
failed=0
check() {
    local name=$1
    shift
    echo "--- $name ---"
    if "$@"; then
        passed=$((passed + 1))
        echo "$name: passed"
    else
        failed=$((failed + 1))
        echo "$name: FAILED" >&2
    fi
}
run_python() {
    install_python examples/clients/python/requirements.txt "$venv" ||
        { echo "python: could not install the packages" >&2; return 1; }
    timeout 60 "$venv/bin/python" examples/clients/python/client.py --addr "$addr"
}
run_node() {
    install_node || { echo "node: could not install the packages" >&2; return 1; }
    timeout 60 node examples/clients/node/client.js --addr "$addr"
}
check python run_python
check node run_node

# The shutdown path is part of the test: SIGTERM must drain and exit 0.
stop_server() {
    kill -TERM "$server_pid"
    local status=0
    for _ in $(seq 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        fail "the server did not stop within 15s of SIGTERM"
    fi
    wait "$server_pid" || status=$?
    server_pid=
    [[ $status -eq 0 ]] || fail "the server exited with status $status after SIGTERM"
}
stop_server

# Django REST framework simplejwt, configured as a Django project would be, accepts the pairs
# and refreshed tokens of examples/simplejwt.toml under the shared signing key.
signing_key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
DJANGO_JWT_SIGNING_KEY=$signing_key start_server --config examples/simplejwt.toml
echo "clients: simplejwt server SERVING at $addr"
run_django() {
    install_python examples/clients/django/requirements.txt "$cache/venv-django" ||
        { echo "django: could not install the packages" >&2; return 1; }
    timeout 60 "$cache/venv-django/bin/python" examples/clients/django/check.py \
        --addr "$addr" --signing-key "$signing_key"
}
check django run_django
stop_server

echo "clients: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
