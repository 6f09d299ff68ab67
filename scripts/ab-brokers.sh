#!/usr/bin/env bash
# A/B wall-clock comparison of two broker binaries with the same loadgen: each round
# starts each broker fresh, alternating, and runs the same cells against it (16 B:
# fan-out 1 -> 100, pairs 100, fan-in 16 -> 1, latency 10k msgs/s -> 100). Prints
# per cell the delivered rate, p99 latency and broker CPU per delivery of every run
# and the medians. Loopback only; every broker it starts is stopped.
#
#   scripts/ab-brokers.sh OLD_BROKER NEW_BROKER [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: scripts/ab-brokers.sh OLD_BROKER NEW_BROKER [ROUNDS]}
new=${2:?usage: scripts/ab-brokers.sh OLD_BROKER NEW_BROKER [ROUNDS]}
rounds=${3:-3}
port=${PORT:-28911}
cargo build --release -p loadgen >/dev/null 2>&1
lg=target/release/loadgen
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
cells=("fanout -n 100 --window 1000" "pairs -n 100 --window 1000"
    "fanin -p 16 --window 1000" "latency -n 100 --rate 10000")
for ((round = 1; round <= rounds; round++)); do
    for tag in old new; do
        broker=$old
        [[ $tag == new ]] && broker=$new
        "$broker" --listen "127.0.0.1:$port" --log-level error >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 1 50); do
            (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
        for cell in "${cells[@]}"; do
            # shellcheck disable=SC2086 # a cell is a scenario and its flags
            "$lg" $cell --target "json://127.0.0.1:$port" --broker-pid "$pid" --payload 16 \
                --warmup 1 --duration 3 --drain 3 --json "$tmp/run.jsonl" >/dev/null 2>&1
            tail -1 "$tmp/run.jsonl" | jq -c --arg tag "$tag" --arg cell "$cell" \
                '{tag: $tag, cell: $cell, delivered: .delivered_per_sec, p99: .latency_us.p99,
                  ns: ((.broker_cpu_secs // 0) / ([.delivered, 1] | max) * 1e9)}' >>"$tmp/ab.jsonl"
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
    done
done
python3 - "$tmp/ab.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for cell in dict.fromkeys(r["cell"] for r in rows):
    for tag in ("old", "new"):
        rs = [r for r in rows if r["cell"] == cell and r["tag"] == tag]
        d = [r["delivered"] for r in rs]
        p = [r["p99"] for r in rs]
        ns = [round(r["ns"]) for r in rs]
        print(f"{cell:30} {tag}  delivered/s median {statistics.median(d) / 1e6:.2f}M "
              f"{[round(x / 1e6, 2) for x in d]}  p99 us {p}  broker ns/delivery {ns}")
PY
