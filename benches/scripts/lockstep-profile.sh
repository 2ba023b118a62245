#!/usr/bin/env bash
# Where one lockstep request (batch 1, window 1) goes, on tmpfs: `zavro serve` and `zavro bench` under
# callgrind (instructions per function), then the same under strace -c (system calls per request).
# BENCHMARKS.md quotes its figures. Needs valgrind and strace (Debian packages).
#
#   cargo build --release && benches/scripts/lockstep-profile.sh target/release/zavro [REQUESTS]
#
# TRANSPORT=plaintext profiles `serve --plaintext` and `bench --plaintext`; the default is CURVE.
# For function names, build with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only. Only 127.0.0.1 is used.
set -euo pipefail
Z=$(realpath "${1:?the zavro binary}")
N=${2:-2000}
TRANSPORT=${TRANSPORT:-curve}
serve_flags=() bench_flags=()
[ "$TRANSPORT" = plaintext ] && serve_flags=(--plaintext) bench_flags=(--plaintext)
OUT=$(mktemp -d)
D=$(mktemp -d /dev/shm/zavro-profile.XXXX)
trap 'rm -rf "$D"' EXIT

key=$("$Z" --db "$D/zavro.db" keys add --json)
ZAVRO_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$key")
ZAVRO_SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <<<"$key")
export ZAVRO_KEY ZAVRO_SECRET

# Runs `serve` under $1 (a command prefix, maybe empty), `bench` under $2, N lockstep requests.
run() {
    local serve_wrap=$1 bench_wrap=$2 log="$D/serve.log"
    rm -f "$log"
    # shellcheck disable=SC2086
    $serve_wrap "$Z" --db "$D/zavro.db" serve 127.0.0.1:* "${serve_flags[@]}" --output "$D/out.ndjson" 2>"$log" &
    local wrapper=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
    local endpoint
    endpoint=$(sed -n 's/^listening on \([^ ]*\) (.*/\1/p' "$log")
    local flags=("${bench_flags[@]}")
    [ "$TRANSPORT" = plaintext ] || flags=(--server-key "$(sed -n 's/^listening on [^ ]* (CURVE, server key \(.*\))$/\1/p' "$log")")
    # shellcheck disable=SC2086
    $bench_wrap "$Z" --db "$D/zavro.db" bench "$endpoint" "${flags[@]}" --batch 1 --window 1 --count "$N" --json >"$OUT/bench.json"
    # The server is the wrapper itself or its only child.
    local server
    server=$(pgrep -P "$wrapper" -f "zavro.*serve" || echo "$wrapper")
    kill -TERM "$server"
    wait "$wrapper" || true
}

run "valgrind -q --tool=callgrind --callgrind-out-file=$OUT/serve.callgrind" \
    "valgrind -q --tool=callgrind --callgrind-out-file=$OUT/bench.callgrind"
run "strace -f -c -o $OUT/serve.strace" "strace -f -c -o $OUT/bench.strace"

per_request() { awk -v n="$N" '{gsub(",", "", $1); printf "%.1f k instructions per request\n", $1 / n / 1000}'; }
for side in serve bench; do
    echo "== $side"
    callgrind_annotate "$OUT/$side.callgrind" 2>/dev/null | grep "PROGRAM TOTALS" | per_request
    awk -v n="$N" 'NR > 2 && $0 !~ /^---/ && $NF != "total" && $4 / n >= 0.5 {printf "%s %.1f  ", $NF, $4 / n} END {print "(system calls per request)"}' "$OUT/$side.strace"
done
echo "callgrind files (for callgrind_annotate --inclusive=yes): $OUT"
