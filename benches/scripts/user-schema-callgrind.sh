#!/usr/bin/env bash
# The server's instructions per record for a user schema (`send --schema`), on tmpfs: `zavro serve --plaintext`
# under callgrind, receiving N records of about 150 bytes (`zavro::bench::record`'s shape: seq, ts, indicator,
# value, pad) in requests of 1000 from a `zavro send --schema` of their five fields. Prints the whole process's
# instructions per record and `Decoder::decode_request`'s (inclusive); BENCHMARKS.md (issue 18) quotes them.
# Needs valgrind (Debian package).
#
#   cargo build --release && benches/scripts/user-schema-callgrind.sh target/release/zavro [N]
#
# KEEP=DIR keeps callgrind's output there (DIR/callgrind.out) for callgrind_annotate.
# The key's secret goes to the client through the environment only. Only ipc:// in a temporary directory is used.
set -euo pipefail
Z=$(realpath "${1:?the zavro binary}")
N=${2:-50000}
D=$(mktemp -d /dev/shm/zavro-user-schema.XXXX)
trap 'rm -rf "$D"' EXIT

python3 - "$N" >"$D/records.ndjson" <<'EOF'
import json, sys
for seq in range(int(sys.argv[1])):
    base = {"seq": seq, "ts": 1_764_301_635_000 + seq, "indicator": "power", "value": 5.3, "pad": ""}
    base["pad"] = "x" * max(0, 150 - len(json.dumps(base, separators=(",", ":"))))
    print(json.dumps(base, separators=(",", ":")))
EOF
cat >"$D/schema.json" <<'EOF'
{"type":"record","name":"Reading","fields":[{"name":"seq","type":"long"},{"name":"ts","type":"long"},
 {"name":"indicator","type":"string"},{"name":"value","type":"double"},{"name":"pad","type":"string"}]}
EOF

key=$("$Z" --db "$D/zavro.db" keys add --json)
ZAVRO_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$key")
ZAVRO_SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <<<"$key")
export ZAVRO_KEY ZAVRO_SECRET

valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$D/callgrind.out" \
    "$Z" --db "$D/zavro.db" serve "ipc://$D/sock" --plaintext --output "$D/out.ndjson" 2>"$D/serve.log" &
server=$!
for _ in $(seq 1 600); do grep -q "listening on" "$D/serve.log" 2>/dev/null && break; sleep 0.1; done
"$Z" send --plaintext --timeout 600 --schema "$D/schema.json" "ipc://$D/sock" <"$D/records.ndjson"
kill -TERM "$server"
wait "$server" || true

[ -n "${KEEP:-}" ] && cp "$D/callgrind.out" "$KEEP/callgrind.out"
total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$D/callgrind.out")
decode=$(callgrind_annotate --inclusive=yes "$D/callgrind.out" 2>/dev/null |
    grep 'Decoder::decode_request' | head -1 | awk '{gsub(",", "", $1); print $1}')
echo "records: $(wc -l <"$D/out.ndjson") written, sha256 of the output $(sha256sum <"$D/out.ndjson" | cut -c1-16)…"
echo "first record: $(head -1 "$D/out.ndjson")"
echo "whole process: $total instructions, $((total / N)) per record"
echo "Decoder::decode_request (inclusive): ${decode:-?} instructions, $(( ${decode:-0} / N )) per record"
