#!/usr/bin/env bash
# Calls per second over gRPC, each row beside the ceiling measured in the same round.
#
# The release binary serves benches/grpc.toml pinned to one core; h2load drives it from the
# other core with fixed, pre-checked request bodies (examples/grpc_bench.rs writes them). Every
# round measures the service's own Health/Check right before each row, so a row's share of the
# ceiling does not depend on what else the machine is doing; the table shows the median over
# the rounds.
#
#   benches/grpc.sh                 # 5 rounds of 4 s per measurement
#   ROUNDS=9 SECONDS_EACH=6 benches/grpc.sh
#   LOG=warn benches/grpc.sh        # the same with per-call log lines filtered out
#   LOG_FORMAT=json benches/grpc.sh # JSON log lines, as the container image writes them
#   BIN=/tmp/old/token-authority benches/grpc.sh   # another build, for a before/after
#
# Ceilings: HS256 rows and LoginUrl are compared with Health/Check itself; public-key rows with
# 1 / (Health/Check cost + the bare ring operation's cost), the ring cost measured on the server
# core at the start of the same round (it moves by a third between runs on a shared machine). p50/p99 come from h2load's per-request log, at 16 connections x 10
# streams (160 calls in flight). With that many calls in flight, latency grows as throughput
# falls (Little's law), so a public-key row's p99 is also shown against the p99 its ceiling
# implies: Health/Check's p99 x Health/Check calls/s / the row's ceiling (for HS256 rows the two
# p99 columns are the same). Needs h2load (Debian: nghttp2-client), installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECONDS_EACH=${SECONDS_EACH:-4}
CONNECTIONS=${CONNECTIONS:-16}
STREAMS=${STREAMS:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-50071}
LOG=${LOG:-info}
LOG_FORMAT=${LOG_FORMAT:-text}

if ! command -v h2load >/dev/null 2>&1; then
    apt-get update && apt-get install -y nghttp2-client
fi

cargo build --release --quiet --bin token-authority --example grpc_bench
# BIN=path measures another build of the service (an older commit, say) with the same bodies.
bin=${BIN:-target/release/token-authority}
tool=target/release/examples/grpc_bench

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=$LOG taskset -c "$SERVER_CPU" "$bin" --log-format "$LOG_FORMAT" serve --config benches/grpc.toml \
    --data-dir "$work/data" --listen "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    grep -q '"listening"\|listening' "$work/server.log" 2>/dev/null && break
    sleep 0.1
done
grep -q 'listening' "$work/server.log" || { cat "$work/server.log"; echo "the service did not start" >&2; exit 1; }

idle_rss=$(awk '/VmRSS/ {print $2 " kB"}' "/proc/$server_pid/status")
"$tool" bodies --addr "127.0.0.1:$PORT" --out "$work/bodies"
# The ring costs are timed on the server core at the start of every round, like the floor.
primitives=
value() { sed -n "s/^$1=//p" <<<"$primitives"; }

# One h2load run: prints "calls/s p50_us p99_us".
measure() {
    local name=$1
    local path
    path=$(cat "$work/bodies/$name.path")
    rm -f "$work/h2.log"
    local out
    out=$(taskset -c "$CLIENT_CPU" h2load -c "$CONNECTIONS" -m "$STREAMS" -D "$SECONDS_EACH" --warm-up-time=1 \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$work/bodies/$name.bin" --log-file="$work/h2.log" \
        "http://127.0.0.1:$PORT$path" 2>&1)
    local failed
    failed=$(sed -n 's/.*requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out" | head -1)
    if [ "${failed:-0}" != 0 ]; then echo "$out" >&2; echo "$name: $failed failed" >&2; exit 1; fi
    local rate
    rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    # Column 3 of the log: microseconds until the end of the response.
    local p50 p99
    read -r p50 p99 < <(cut -f3 "$work/h2.log" | sort -n | awk '{v[NR]=$1} END {print v[int(NR*0.50)+1], v[int(NR*0.99)+1]}')
    echo "$rate $p50 $p99"
}

rows=(issue-hs256 verify-hs256 issue-es256 verify-es256 issue-eddsa verify-eddsa login-hs256)
# The bare ring operation each row pays on top of the call, in µs (0: compare with Health/Check).
primitive_us() {
    case $1 in
        issue-es256) value es256_sign_us ;;
        verify-es256) value es256_verify_us ;;
        issue-eddsa) value eddsa_sign_us ;;
        verify-eddsa) value eddsa_verify_us ;;
        *) echo 0 ;;
    esac
}

results="$work/results"
: >"$results"
prims="$work/primitives"
: >"$prims"
for round in $(seq "$ROUNDS"); do
    primitives=$(taskset -c "$SERVER_CPU" "$tool" primitives)
    echo "$(value es256_sign_us) $(value es256_verify_us) $(value eddsa_sign_us) $(value eddsa_verify_us)" >>"$prims"
    for row in "${rows[@]}"; do
        read -r health_rate health_p50 health_p99 < <(measure health)
        read -r rate p50 p99 < <(measure "$row")
        echo "$round $row $rate $p50 $p99 $health_rate $health_p50 $health_p99 $(primitive_us "$row")" >>"$results"
    done
    echo "round $round of $ROUNDS done" >&2
done

echo
awk '
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { n++; for (c = 1; c <= 4; c++) { v[c, n] = $c; if (n == 1 || $c < lo[c]) lo[c] = $c; if ($c > hi[c]) hi[c] = $c } }
    END {
        split("ES256 sign,ES256 verify,Ed25519 sign,Ed25519 verify", name, ",")
        printf "ring on the server core (µs, median of rounds and range):"
        for (c = 1; c <= 4; c++) { for (i = 1; i <= n; i++) a[i] = v[c, i]; printf " %s %.1f (%.1f-%.1f)%s", name[c], median(a, n), lo[c], hi[c], c < 4 ? ";" : "\n" }
    }' "$prims"
echo "$ROUNDS rounds x ${SECONDS_EACH}s, $CONNECTIONS connections x $STREAMS streams, log level $LOG ($LOG_FORMAT); medians over rounds"
echo
printf '| %-12s | %9s | %9s | %8s | %8s | %8s | %16s | %17s | %-10s |\n' call calls/s ceiling share "p50 µs" "p99 µs" "p99 / Health p99" "p99 / ceiling p99" "share range"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------- ----------- ----------- ---------- ---------- ---------- ------------------ ------------------- ------------
for row in health "${rows[@]}"; do
    awk -v row="$row" '
        function median(a, n,   i, j, t) {
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        row == "health" || $2 == row {
            n++
            if (row == "health") { rate[n] = $6; p50[n] = $7; p99[n] = $8; ceil[n] = $6; share[n] = 1; tail[n] = 1; own[n] = 1; next }
            ceiling = 1e6 / (1e6 / $6 + $9)
            rate[n] = $3; p50[n] = $4; p99[n] = $5; ceil[n] = ceiling; share[n] = $3 / ceiling; tail[n] = $5 / $8
            own[n] = $5 / ($8 * $6 / ceiling)
        }
        END {
            lo = 1e9; hi = 0
            for (i = 1; i <= n; i++) { if (share[i] < lo) lo = share[i]; if (share[i] > hi) hi = share[i] }
            printf "| %-12s | %9.0f | %9.0f | %7.0f%% | %8.0f | %8.0f | %16.2f | %17.2f | %3.0f-%3.0f%%   |\n", \
                row == "health" ? "Health/Check" : row, median(rate, n), median(ceil, n), 100 * median(share, n), \
                median(p50, n), median(p99, n), median(tail, n), median(own, n), 100 * lo, 100 * hi
        }' "$results"
done
# LoginUrl is Issue plus a URL: compare the two shares, each against its own Health/Check.
awk '
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $2 == "issue-hs256" { i++; issue[i] = $3 / $6 }
    $2 == "login-hs256" { l++; login[l] = $3 / $6 }
    END { if (i && l) printf "\nLoginUrl at %.0f%% of Issue HS256 (median shares)\n", 100 * median(login, l) / median(issue, i) }
' "$results"
echo
echo "RSS idle after start: $idle_rss; after the run: $(awk '/VmRSS/ {print $2 " kB"}' "/proc/$server_pid/status")"
