#!/usr/bin/env bash
# Instructions per delivered message of one or more broker binaries, under callgrind.
#
# Each broker runs under valgrind twice with the same loadgen run (default: fan-out
# 1 -> 100, 16 B, window 2000; SCENARIO="pairs -n 10 --window 100" for one delivery
# per publish), once for 2 s and once for 8 s; the difference in instructions divided
# by the difference in deliveries cancels start-up and warm-up. Counts, not seconds: usable on
# a busy machine, though batching (and so the count) still depends a little on timing.
#
#   scripts/instructions-per-delivery.sh target/release/broker /path/to/older/broker
#   SCENARIO="pairs -n 10 --window 100" scripts/instructions-per-delivery.sh target/release/broker
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (scripts/ci-deps.sh installs it)" >&2; exit 1; }
cargo build --release -p loadgen >/dev/null 2>&1
LG=target/release/loadgen
PORT=${PORT:-7657}
SCENARIO=${SCENARIO:-fanout -n 100 --window 2000}
tmp=$(mktemp -d)
pid=
# A failed loadgen run must not leave a broker running under valgrind.
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for broker in "$@"; do
  results=()
  for secs in 2 8; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$broker" \
      --listen "127.0.0.1:$PORT" --log-level error >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
      sleep 0.2
      (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    done
    # shellcheck disable=SC2086 # SCENARIO is a scenario name and its flags
    "$LG" $SCENARIO --payload 16 --target "json://127.0.0.1:$PORT" --duration "$secs" \
      --warmup 1 --json "$tmp/run.json" >/dev/null 2>&1
    kill -INT "$pid"
    wait "$pid" || true
    ir=$(grep -E '^(summary|totals):' "$tmp/cg.out" | head -1 | awk '{print $2}')
    delivered=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])['delivered'])" "$tmp/run.json")
    rm -f "$tmp/run.json"
    results+=("$ir" "$delivered")
  done
  python3 -c "import sys; i1,d1,i2,d2=map(int,sys.argv[3:]); print(f'{sys.argv[1]} ({sys.argv[2]}): {(i2-i1)/max(d2-d1,1):.1f} instructions per delivery')" "$broker" "$SCENARIO" "${results[@]}"
done
