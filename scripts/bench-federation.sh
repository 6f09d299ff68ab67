#!/usr/bin/env bash
# Federation benchmarks (issue 4): throughput and latency through one broker vs. across
# one hop (publisher on leaf-a, subscribers on the hub) and two hops (publisher on
# leaf-a, subscribers on leaf-b); subscription propagation delay for 0, 1 and 2 hops;
# and the recipe "one broker per core joined to a hub" (2 leaves + hub on a 2-core
# machine) against a single broker. Writes docs/bench/federation.md, a self-contained
# markdown fragment that docs/BENCHMARKS.md includes. Then the fleet (issue 11): 100,000
# simultaneous subscribed clients across a hub and six leaves (each broker under its
# 20,000-fd limit), held by `loadgen fleet` worker processes from several source
# addresses, with memory per client and an exactly-once check; writes docs/bench/fleet.md.
#
# Usage: scripts/bench-federation.sh [--quick] [--runs N] [--port-base P] [--out DIR]
#                                    [--no-build] [--no-report]
#                                    [--fleet N] [--fleet-only] [--fleet-runs R]
#                                    [--fleet-processes P] [--fleet-connect-timeout S]
#   --quick        1 s windows (3 runs per cell unless --runs); under 3 minutes
#   --runs N       runs per cell (default 3); tables show the median
#   --port-base P  brokers listen on P (single), P+1 (hub), P+2 (leaf-a), P+3 (leaf-b);
#                  the fleet's hub on P+10 and its leaves on P+11..P+16; default 27400
#   --out DIR      raw JSON records, STATS snapshots and logs (default
#                  target/bench-federation/TIMESTAMP)
#   --no-build     use the binaries already in target/release
#   --no-report    collect records only; leave docs/bench/*.md alone
#   --fleet N      clients in the fleet part (default 100000; 0 skips it)
#   --fleet-only   run only the fleet part (about a minute; rewrites only fleet.md)
#   --fleet-runs R fleet runs, each on freshly started brokers (default 1)
#   --fleet-processes P  loadgen worker processes holding the clients (default 7)
#   --fleet-connect-timeout S  seconds a fleet client may take to connect and get its
#                  SUBSCRIBED (default: loadgen's, 10); the report names a non-default
#
# Every process it starts is recorded by PID and stopped on exit (also on failure or
# Ctrl-C). Loopback only. Needs bash, jq and python3 (for the tables).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=full
RUNS=
PORT_BASE=27400
OUT=
BUILD=1
REPORT=1
FLEET=100000
FLEET_ONLY=0
FLEET_RUNS=1
FLEET_PROCESSES=7
FLEET_CONNECT_TIMEOUT=
while (($#)); do
    case $1 in
    --quick) MODE=quick ;;
    --runs)
        RUNS=${2:?--runs needs a number}
        shift
        ;;
    --port-base)
        PORT_BASE=${2:?--port-base needs a port}
        shift
        ;;
    --out)
        OUT=${2:?--out needs a directory}
        shift
        ;;
    --no-build) BUILD=0 ;;
    --no-report) REPORT=0 ;;
    --fleet)
        FLEET=${2:?--fleet needs a number of clients}
        shift
        ;;
    --fleet-only) FLEET_ONLY=1 ;;
    --fleet-runs)
        FLEET_RUNS=${2:?--fleet-runs needs a number}
        shift
        ;;
    --fleet-processes)
        FLEET_PROCESSES=${2:?--fleet-processes needs a number}
        shift
        ;;
    --fleet-connect-timeout)
        FLEET_CONNECT_TIMEOUT=${2:?--fleet-connect-timeout needs seconds}
        shift
        ;;
    -h | --help)
        sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench-federation.sh: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

RUNS=${RUNS:-3}
if [[ $MODE == quick ]]; then
    WARMUP=0.3
    DURATION=1
    DRAIN=3
    TRIALS=100
else
    WARMUP=1
    DURATION=5
    DRAIN=5
    TRIALS=300
fi
PROBE_US=100   # propagation probe interval = its resolution
LG_TIMEOUT=180 # seconds any one loadgen run may take

P_SINGLE=$PORT_BASE
P_HUB=$((PORT_BASE + 1))
P_A=$((PORT_BASE + 2))
P_B=$((PORT_BASE + 3))
SINGLE=json://127.0.0.1:$P_SINGLE
HUB=json://127.0.0.1:$P_HUB
LEAF_A=json://127.0.0.1:$P_A
LEAF_B=json://127.0.0.1:$P_B

OUT=${OUT:-$ROOT/target/bench-federation/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/logs" "$OUT/runs" "$OUT/stats"
OUT=$(cd "$OUT" && pwd)
CELLS=$OUT/cells.tsv # cell id, run, record file, exit code, wall s, broker CPU s per broker
: >"$CELLS"
CMDS=$OUT/commands.tsv # cell id, command (first run)
: >"$CMDS"
BROKER=$ROOT/target/release/broker
LOADGEN=$ROOT/target/release/loadgen

log() { printf '[bench-federation %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

declare -A PID=()
LG_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $LG_PID ]] && kill -0 "$LG_PID" 2>/dev/null; then
        kill "$LG_PID" 2>/dev/null || true
    fi
    for name in "${!PID[@]}"; do
        kill "${PID[$name]}" 2>/dev/null || true
    done
    for name in "${!PID[@]}"; do
        for _ in $(seq 20); do
            kill -0 "${PID[$name]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "${PID[$name]}" 2>/dev/null || true
        wait "${PID[$name]}" 2>/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# One STATS reply (a JSON line) from the broker on port $1.
stats() {
    local line=
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf '{"command":"STATS"}\n' >&3
    read -r -t 3 line <&3 || true
    exec 3>&-
    printf '%s\n' "$line"
}

# start_broker NAME PORT [UPSTREAM_PORT]
start_broker() {
    local name=$1 port=$2 args=(--name "$1" --listen "127.0.0.1:$2" --log-level warn)
    [[ -n ${3:-} ]] && args+=(--upstream "127.0.0.1:$3")
    if port_open "$port"; then
        log "port $port is already in use: pass --port-base"
        exit 1
    fi
    "$BROKER" "${args[@]}" >"$OUT/logs/$name.log" 2>&1 &
    PID[$name]=$!
    printf '%s %s\n' "$BROKER" "${args[*]}" | sed "s|$ROOT/||" >>"${BROKERS_TXT:-$OUT/brokers.txt}"
    for _ in $(seq 100); do
        port_open "$port" && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.05
    done
    log "broker $name did not start; see $OUT/logs/$name.log"
    exit 1
}

# Total CPU seconds (user + system) of the broker $1 so far.
cpu_secs() {
    local stat
    stat=$(cat "/proc/${PID[$1]}/stat" 2>/dev/null) || {
        echo 0
        return
    }
    stat=${stat##*) }
    # Fields after "pid (comm) ": utime is the 12th, stime the 13th.
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($12 + $13) / hz }' <<<"$stat"
}

# Sum of routes_in + routes_out over all links of all brokers (messages that crossed).
link_routes() {
    local total=0 n p
    for p in $P_HUB $P_A $P_B; do
        n=$(stats "$p" | jq '[.links[]? | .routes_in + .routes_out] | add // 0' 2>/dev/null || echo 0)
        total=$((total + n))
    done
    echo "$total"
}

# cell ID PUB_BROKER_NAME LOADGEN_ARGS... : RUNS runs of one table cell.
cell() {
    local id=$1 pub=$2
    shift 2
    local run file rc t0 t1 before after routes0 routes1 cmd
    cmd="target/release/loadgen $* --broker-pid PID_OF_$pub --json FILE"
    printf '%s\t%s\n' "$id" "$cmd" >>"$CMDS"
    for run in $(seq "$RUNS"); do
        file=$OUT/runs/$id.$run.json
        before=$(for b in single hub leaf-a leaf-b; do cpu_secs $b; done | paste -sd,)
        routes0=$(link_routes)
        t0=$(date +%s.%N)
        set +e
        timeout "$LG_TIMEOUT" "$LOADGEN" "$@" --broker-pid "${PID[$pub]}" --json "$file" \
            >"$OUT/logs/$id.$run.txt" 2>&1 &
        LG_PID=$!
        wait "$LG_PID"
        rc=$?
        set -e
        LG_PID=
        t1=$(date +%s.%N)
        after=$(for b in single hub leaf-a leaf-b; do cpu_secs $b; done | paste -sd,)
        routes1=$(link_routes)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$run" "$file" "$rc" \
            "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
            "$before" "$after" "$((routes1 - routes0))" >>"$CELLS"
        if ((rc != 0)); then
            log "$id run $run: loadgen exited $rc (see $OUT/logs/$id.$run.txt)"
        fi
        [[ -s $file ]] || log "$id run $run: no record"
    done
    log "$id done"
}

# report OUT: the markdown fragment, from the records (medians over runs).
report() {
    python3 - "$1" <<'PY'
import json, os, statistics, sys

out = sys.argv[1]
meta = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(out, "meta.txt")) if "=" in l)
cmds = {}
for l in open(os.path.join(out, "commands.tsv")):
    cid, cmd = l.rstrip("\n").split("\t", 1)
    cmds[cid] = cmd
BROKERS = ["single", "hub", "leaf-a", "leaf-b"]
runs = {}
for l in open(os.path.join(out, "cells.tsv")):
    cid, run, path, rc, wall, before, after, routes = l.rstrip("\n").split("\t")
    rec = None
    try:
        with open(path) as f:
            lines = [x for x in f if x.strip()]
        rec = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        rec = None
    cpu = [float(b) - float(a) for a, b in zip(before.split(","), after.split(","))]
    runs.setdefault(cid, []).append(
        dict(rec=rec, rc=int(rc), wall=float(wall), cpu=dict(zip(BROKERS, cpu)), routes=int(routes))
    )


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def field(cid, getter):
    out_ = []
    for r in runs.get(cid, []):
        try:
            out_.append(getter(r))
        except (KeyError, TypeError):
            out_.append(None)
    return med(out_)


def rec_field(cid, *path):
    def get(r):
        v = r["rec"]
        for k in path:
            v = v[k]
        return v
    return field(cid, get)


def rate(v):
    if v is None:
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def us(v):
    if v is None:
        return "n/a"
    if v >= 10000:
        return f"{v / 1000:.0f} ms"
    if v >= 1000:
        return f"{v / 1000:.1f} ms"
    return f"{v:.0f} µs"


def problems(cid):
    loss = sum((r["rec"] or {}).get("loss", 0) for r in runs.get(cid, []))
    reorder = sum((r["rec"] or {}).get("reorder", 0) for r in runs.get(cid, []))
    errors = sum((r["rec"] or {}).get("errors", 0) for r in runs.get(cid, []))
    missing = sum(1 for r in runs.get(cid, []) if r["rec"] is None)
    bits = []
    if loss:
        bits.append(f"loss {loss}")
    if reorder:
        bits.append(f"reorder {reorder}")
    if errors:
        bits.append(f"errors {errors}")
    if missing:
        bits.append(f"{missing} run(s) without a record")
    return ", ".join(bits)


notes = []


def flagged(cid, text):
    p = problems(cid)
    if p:
        notes.append(f"`{cid}`: {p} (summed over runs)")
        return text + " ⚠"
    return text


def ratio(cid, base):
    a = rec_field(cid, "delivered_per_sec")
    b = rec_field(base, "delivered_per_sec")
    if a is None or not b:
        return ""
    return f" ({100 * a / b:.0f}%)"


quick = meta.get("mode") == "quick"
nruns = meta.get("runs", "?")
print("## Federation: one and two hops vs. one broker")
print()
print("Generated by `scripts/bench-federation.sh" + (" --quick" if quick else "") + "`"
      f" on {meta.get('date')} (commit {meta.get('commit')}).")
if quick:
    print()
    print("> **Quick run** (1 s measured windows, short warm-up) on a machine that was running")
    print(f"> other builds and benchmarks at the same time (load average at the end: {meta.get('load')}).")
    print("> Read the numbers as rough; re-run `scripts/bench-federation.sh` on a quiet machine")
    print("> for the report.")
print()
print(f"- Machine: {meta.get('cpu')}, {meta.get('cores')} cores, {meta.get('kernel')}; {meta.get('rustc')}.")
print("  loadgen shares the cores with every broker, on loopback.")
print(f"- Each cell is the median of {nruns} run(s); throughput runs measure {meta.get('duration')} s")
print(f"  after {meta.get('warmup')} s of warm-up, 16-byte payloads, loadgen's default window.")
print("- Topology (all four brokers run during the whole benchmark; idle ones cost nothing):")
print()
print("```")
for l in open(os.path.join(out, "brokers.txt")):
    print(l.rstrip("\n"))
print("```")
print()
print("- **single**: publishers and subscribers on the `single` broker. **1 hop**: publishers on")
print("  leaf-a, subscribers on the hub. **2 hops**: publishers on leaf-a, subscribers on leaf-b")
print("  (leaf-a -> hub -> leaf-b). In cross-broker runs loadgen first waits until a probe")
print("  published on every channel has reached every subscriber (`--sub-target`; see")
print("  loadgen/README.md), so no message is lost to interest that has not propagated yet;")
print("  loss and reordering are counted and must be 0.")
print()

print("### Throughput (delivered msgs/s; % of single broker)")
print()
print("| scenario | single broker | 1 hop | 2 hops |")
print("|---|---:|---:|---:|")
for name, label in [("fanout100", "fanout 1 -> 100"), ("pairs100", "pairs 100")]:
    row = [label]
    for place in ["single", "hop1", "hop2"]:
        cid = f"{name}.{place}"
        text = rate(rec_field(cid, "delivered_per_sec"))
        if place != "single":
            text += ratio(cid, f"{name}.single")
        row.append(flagged(cid, text))
    print("| " + " | ".join(row) + " |")
print()
fan = {pl: rec_field(f"fanout100.{pl}", "delivered_per_sec") for pl in ["single", "hop1", "hop2"]}
prs = {pl: rec_field(f"pairs100.{pl}", "delivered_per_sec") for pl in ["single", "hop1", "hop2"]}
print("Why the two rows differ: in fan-out, the publishers' broker forwards one `ROUTE` per")
print("message over one link and the subscribers' broker does the fan-out to 100, so the")
print("work is split over two processes (a pipeline) and a hop costs little or nothing")
if fan["single"] and fan["hop2"]:
    print(f"({fan['hop2'] / fan['single']:.2f}x the single broker at two hops here).")
else:
    print("(see the table).")
print("In pairs, every message is one delivery, so each broker on the path pays the full")
print("per-message cost (parse, route, write) for one delivery; the path's busiest broker")
print("sets the rate")
if prs["single"] and prs["hop1"] and prs["hop2"]:
    print(f"({prs['hop1'] / prs['single']:.2f}x at one hop, {prs['hop2'] / prs['single']:.2f}x at two).")
else:
    print("(see the table).")
print("Throughput latency is queueing inside the window, not a latency measurement; see")
print("the paced runs below.")
print()

print("### Latency at 10,000 msgs/s (p50 / p99 / max, from the intended send time)")
print()
print("| subscribers | single broker | 1 hop | 2 hops |")
print("|---|---:|---:|---:|")
for n in [10, 100]:
    row = [str(n)]
    for place in ["single", "hop1", "hop2"]:
        cid = f"latency{n}.{place}"
        text = " / ".join(us(rec_field(cid, "latency_us", k)) for k in ["p50", "p99", "max"])
        row.append(flagged(cid, text))
    print("| " + " | ".join(row) + " |")
print()

print("### Subscription propagation delay")
print()
probe = meta.get("probe_us", "?")
print(f"Each of {meta.get('trials')} trials opens a fresh subscriber on the subscribers' broker and")
print("subscribes it to a fresh channel, while a publisher on the publishers' broker publishes a")
print(f"probe on that channel every {probe} µs. Delay = time from `SUBSCRIBED` arriving to the first")
print(f"probe arriving (resolution: the probe interval, {probe} µs; it includes one message's transit).")
print("Median over runs of each percentile.")
print()
print("| path | p50 | p90 | p99 | max | local SUBSCRIBE round trip (p50) |")
print("|---|---:|---:|---:|---:|---:|")
for place, label in [("single", "same broker (baseline)"), ("hop1", "1 hop (leaf-a -> hub)"),
                     ("hop2", "2 hops (leaf-a -> hub -> leaf-b)")]:
    cid = f"prop.{place}"
    cells = [us(rec_field(cid, "latency_us", k)) for k in ["p50", "p90", "p99", "max"]]
    cells.append(us(rec_field(cid, "propagation", "subscribe_rtt_p50_us")))
    cells[0] = flagged(cid, cells[0])
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("A client that publishes on another broker right after its peer's `SUBSCRIBED` can lose")
print("messages inside this window (at most once across links; docs/federation.md).")
print()

print("### One broker per core, joined to a hub")
print()
print("pairs N=1000 (1000 publisher/subscriber pairs, one channel each): all on one broker;")
print("spread over two leaves with each pair's publisher and subscriber on the same leaf (pair")
print("i on leaf i mod 2, the recipe's intended placement); and crossed, each subscriber on")
print("the other leaf than its publisher (every message takes two hops through the hub).")
print("Broker CPU is measured by the script over the whole loadgen run (connect, warm-up,")
print("window, drain) and shown as cores busy; 'over links' counts ROUTE frames sent or")
print("received on all links during the runs (median per run). Brackets: slowest and fastest run.")
print()
print("| layout | delivered msgs/s | brokers' CPU (cores busy: single / hub / leaf-a / leaf-b) | loadgen CPU (cores, window) | messages over links |")
print("|---|---:|---|---:|---:|")
for place, label in [("single", "one broker"), ("spread", "two leaves, pairs local"),
                     ("crossed", "two leaves, pairs crossed")]:
    cid = f"percore.{place}"
    busy = []
    for b in BROKERS:
        v = field(cid, lambda r, b=b: r["cpu"][b] / r["wall"] if r["wall"] > 0 else None)
        busy.append("n/a" if v is None else f"{v:.2f}")
    routes = field(cid, lambda r: r["routes"])
    text = rate(rec_field(cid, "delivered_per_sec"))
    if place != "single":
        text += ratio(cid, "percore.single")
    each = [r["rec"]["delivered_per_sec"] for r in runs.get(cid, []) if r["rec"]]
    if len(each) > 1:
        text += f" [{rate(min(each))}–{rate(max(each))}]"
    lg = field(cid, lambda r: r["rec"]["loadgen_cpu_secs"] / r["rec"]["params"]["duration"])
    lg_text = "n/a" if lg is None else f"{lg:.2f}"
    print(f"| {label} | {flagged(cid, text)} | {' / '.join(busy)} | {lg_text} | {rate(routes)} |")
print()
single = rec_field("percore.single", "delivered_per_sec")
spread = rec_field("percore.spread", "delivered_per_sec")
crossed = rec_field("percore.crossed", "delivered_per_sec")
cores = meta.get("cores", "?")
print("What it shows:")
print()
spread_routes = field("percore.spread", lambda r: r["routes"])
if single and spread:
    gain = spread / single
    print(f"- Spreading the pairs over two leaves delivered {gain:.2f}x what one broker delivered.")
    if spread_routes == 0:
        print("  Local pairs never crossed a link (0 messages over links): the leaves work")
        print("  independently and the hub idles, so the design adds no per-message cost.")
    if gain >= 1.15:
        print("  The second broker used the second core: one broker per core pays off when")
        print("  publishers and subscribers of a channel share a leaf.")
    else:
        def busy(cid, b):
            return field(cid, lambda r: r["cpu"][b] / r["wall"] if r["wall"] > 0 else None) or 0.0
        one = busy("percore.single", "single")
        two = busy("percore.spread", "leaf-a") + busy("percore.spread", "leaf-b")
        print(f"  It did not pay off in this run: the two leaves together were busy {two:.2f} cores")
        print(f"  against {one:.2f} for the single broker, so they found no idle core to use. The")
        print(f"  {cores} cores are shared by loadgen, the brokers and the kernel's loopback work")
        if quick:
            print(f"  (and, in this quick run, other jobs: load average {meta.get('load')}).")
        else:
            print("  (see the loadgen CPU column).")
        print("  Each leaf is single-threaded and local traffic makes the leaves independent,")
        print("  so the gain is bounded by free cores, not by the design; it needs a machine with")
        print("  cores to spare beyond the clients' share.")
print(f"- loadgen and every broker share the same {cores} cores; the brokers' CPU column is")
print("  averaged over the whole loadgen run (connect and drain included), so it understates")
print("  the measured window, but compares the layouts fairly.")
if crossed and spread:
    print(f"- Crossed placement delivered {crossed / spread:.2f}x the local placement: every message")
    print("  costs three brokers (leaf, hub, leaf) instead of one, and the hub carries all of them.")
    print("  Put clients that talk to each other on the same leaf.")
print()
if notes:
    print("Cells marked ⚠ had problems: " + "; ".join(notes) + ". See the raw records.")
    print()

print("### Commands")
print()
print("Brokers as above; each cell ran this once per run (FILE: that run's JSON record):")
print()
print("```sh")
for cid, cmd in cmds.items():
    print(f"# {cid}")
    print(cmd)
print("```")
PY
}


# ---- The fleet (issue 11): FLEET clients across a hub and FLEET_LEAVES leaves ----
FLEET_LEAVES=6
FLEET_SOURCES=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5
FLEET_TIMEOUT=900 # seconds one fleet run may take, all included
FLEET_NAMES=()
FLEET_URLS=
FLEET_PIDS=
P_FLEET=$((PORT_BASE + 10))          # the fleet's hub; leaves on the next ports
P_SOLO=$((PORT_BASE + 10 + FLEET_LEAVES + 1)) # an unlinked broker, for the baseline

# start_fleet: the fleet's hub and leaves, linked; sets FLEET_URLS and FLEET_PIDS (hub
# first, in the same order).
start_fleet() {
    local i links=0
    FLEET_NAMES=(fleet-hub)
    for ((i = 1; i <= FLEET_LEAVES; i++)); do FLEET_NAMES+=("fleet-leaf-$i"); done
    : >"$OUT/fleet-brokers.txt"
    BROKERS_TXT=$OUT/fleet-brokers.txt start_broker fleet-hub "$P_FLEET"
    for ((i = 1; i <= FLEET_LEAVES; i++)); do
        BROKERS_TXT=$OUT/fleet-brokers.txt start_broker "fleet-leaf-$i" "$((P_FLEET + i))" "$P_FLEET"
    done
    for _ in $(seq 100); do
        links=$(stats "$P_FLEET" | jq '.links | length' 2>/dev/null || echo 0)
        ((links == FLEET_LEAVES)) && break
        sleep 0.1
    done
    ((links == FLEET_LEAVES)) || {
        log "fleet: the leaves did not link to the hub ($links of $FLEET_LEAVES links)"
        exit 1
    }
    FLEET_URLS=
    FLEET_PIDS=
    for ((i = 0; i <= FLEET_LEAVES; i++)); do
        FLEET_URLS+=${FLEET_URLS:+,}json://127.0.0.1:$((P_FLEET + i))
        FLEET_PIDS+=${FLEET_PIDS:+,}${PID[${FLEET_NAMES[i]}]}
    done
}

# stop_broker NAME [LOG_AS]: stops one broker by its PID (TERM, then KILL after 5 s),
# forgets it, and renames its log to LOG_AS.log.
stop_broker() {
    local name=$1
    kill "${PID[$name]}" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
    [[ -n ${2:-} ]] && mv "$OUT/logs/$name.log" "$OUT/logs/$2.log" 2>/dev/null || true
}

# fleet_cpu: CPU seconds of the fleet's brokers so far, comma-separated (hub first).
fleet_cpu() {
    local name
    for name in "${FLEET_NAMES[@]}"; do cpu_secs "$name"; done | paste -sd,
}

# fleet_run RUN: one baseline ramp on an unlinked broker, then one fleet run on fresh
# brokers; a line in fleet-runs.tsv.
fleet_run() {
    local run=$1 share rc solo cpu0 cpu1 load0 i name
    share=$(((FLEET + FLEET_LEAVES) / (FLEET_LEAVES + 1)))
    # Baseline: what one client costs a broker without links, the same number of clients
    # as one fleet broker holds (loadgen conns on a single, unlinked broker).
    solo=$OUT/runs/fleet-solo.$run.json
    BROKERS_TXT=$OUT/fleet-solo.txt start_broker fleet-solo "$P_SOLO"
    SOLO_CMD=(conns --clients "$share" --target "json://127.0.0.1:$P_SOLO"
        --source "$FLEET_SOURCES")
    log "fleet run $run: baseline, $share clients on one unlinked broker"
    timeout "$LG_TIMEOUT" "$LOADGEN" "${SOLO_CMD[@]}" --broker-pid "${PID[fleet-solo]}" \
        --json "$solo" >"$OUT/logs/fleet-solo.$run.txt" 2>&1 ||
        log "fleet run $run: the baseline ramp exited $? (see $OUT/logs/fleet-solo.$run.txt)"
    stop_broker fleet-solo "fleet-solo.$run"

    start_fleet
    FLEET_CMD=(fleet --clients "$FLEET" --processes "$FLEET_PROCESSES" --target "$FLEET_URLS"
        --source "$FLEET_SOURCES" --drain 5)
    [[ -n $FLEET_CONNECT_TIMEOUT ]] && FLEET_CMD+=(--connect-timeout "$FLEET_CONNECT_TIMEOUT")
    log "fleet run $run: $FLEET clients over a hub and $FLEET_LEAVES leaves, $FLEET_PROCESSES loadgen processes"
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    cpu0=$(fleet_cpu)
    set +e
    timeout "$FLEET_TIMEOUT" "$LOADGEN" "${FLEET_CMD[@]}" --broker-pids "$FLEET_PIDS" \
        --json "$OUT/runs/fleet.$run.json" >"$OUT/logs/fleet.$run.txt" 2>&1 &
    LG_PID=$!
    wait "$LG_PID"
    rc=$?
    set -e
    LG_PID=
    cpu1=$(fleet_cpu)
    sed -n '/^== fleet/,$p' "$OUT/logs/fleet.$run.txt" >&2
    ((rc == 0)) || log "fleet run $run: loadgen exited $rc (see $OUT/logs/fleet.$run.txt)"
    for ((i = 0; i <= FLEET_LEAVES; i++)); do
        name=${FLEET_NAMES[i]}
        if kill -0 "${PID[$name]}" 2>/dev/null; then
            stats "$((P_FLEET + i))" >"$OUT/stats/fleet.$run.$name.json" || true
        else
            log "WARNING: fleet broker $name exited during run $run"
        fi
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$OUT/runs/fleet.$run.json" "$rc" \
        "$solo" "$cpu0" "$cpu1" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/fleet-runs.tsv"
    for name in "${FLEET_NAMES[@]}"; do stop_broker "$name" "fleet.$run.$name"; done
}

# run_fleet: FLEET_RUNS fleet runs, then docs/bench/fleet.md.
run_fleet() {
    local run
    # Each process may hold up to the hard limit (20,000 here), no more.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    : >"$OUT/fleet-runs.tsv"
    for run in $(seq "$FLEET_RUNS"); do fleet_run "$run"; done
    {
        echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
        echo "clients=$FLEET"
        echo "processes=$FLEET_PROCESSES"
        echo "leaves=$FLEET_LEAVES"
        echo "sources=$FLEET_SOURCES"
        echo "connect_timeout=${FLEET_CONNECT_TIMEOUT:-default}"
        echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        echo "cores=$(nproc)"
        echo "memory_gib=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
        echo "kernel=$(uname -sr)"
        echo "nofile=$(ulimit -Sn)/$(ulimit -Hn)"
        echo "port_range=$(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range)"
        echo "nr_open=$(cat /proc/sys/fs/nr_open)"
        echo "tcp_mem=$(tr '\t' ' ' </proc/sys/net/ipv4/tcp_mem)"
        local dirty=
        [[ -n $(git -C "$ROOT" status --porcelain -- src loadgen Cargo.toml 2>/dev/null) ]] &&
            dirty=" with uncommitted changes"
        echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
        echo "fleet_cmd=target/release/loadgen ${FLEET_CMD[*]} --broker-pids PIDS --json FILE"
        echo "solo_cmd=target/release/loadgen ${SOLO_CMD[*]} --broker-pid PID --json FILE"
    } >"$OUT/fleet-meta.txt"
    log "fleet records in $OUT"
    if ((REPORT)); then
        mkdir -p "$ROOT/docs/bench"
        fleet_report "$OUT" >"$ROOT/docs/bench/fleet.md"
        log "wrote docs/bench/fleet.md"
    fi
}

# fleet_report OUT: the markdown fragment for the fleet, from its records.
fleet_report() {
    python3 "$ROOT/scripts/lib/fleet_report.py" "$1"
}

if ((BUILD)); then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p loadgen -p pubsub)
fi
[[ -x $BROKER && -x $LOADGEN ]] || {
    log "missing $BROKER or $LOADGEN"
    exit 1
}

if ((FLEET_ONLY)); then
    ((FLEET > 0)) || {
        log "--fleet-only with --fleet 0: nothing to run"
        exit 2
    }
    run_fleet
    exit 0
fi

log "starting brokers: single :$P_SINGLE, hub :$P_HUB, leaf-a :$P_A, leaf-b :$P_B"
start_broker single "$P_SINGLE"
start_broker hub "$P_HUB"
start_broker leaf-a "$P_A" "$P_HUB"
start_broker leaf-b "$P_B" "$P_HUB"
for _ in $(seq 100); do
    links=$(stats "$P_HUB" | jq '.links | length' 2>/dev/null || echo 0)
    ((links == 2)) && break
    sleep 0.1
done
((links == 2)) || {
    log "the leaves did not link to the hub (hub shows $links links)"
    exit 1
}
stats "$P_HUB" >"$OUT/stats/hub-start.json"

T="--warmup $WARMUP -d $DURATION --drain $DRAIN"
# place NAME -> "--target X --sub-target Y" and the publisher's broker.
declare -A PLACE=(
    [single]="--target $SINGLE"
    [hop1]="--target $LEAF_A --sub-target $HUB"
    [hop2]="--target $LEAF_A --sub-target $LEAF_B"
)
declare -A PUB=([single]=single [hop1]=leaf-a [hop2]=leaf-a)

log "throughput and latency: single broker vs 1 hop vs 2 hops ($RUNS runs per cell)"
for place in single hop1 hop2; do
    # shellcheck disable=SC2086
    cell "fanout100.$place" "${PUB[$place]}" fanout -n 100 --payload 16 ${PLACE[$place]} $T
    # shellcheck disable=SC2086
    cell "pairs100.$place" "${PUB[$place]}" pairs -n 100 --payload 16 ${PLACE[$place]} $T
    for n in 10 100; do
        # shellcheck disable=SC2086
        cell "latency$n.$place" "${PUB[$place]}" latency -n "$n" --rate 10000 ${PLACE[$place]} $T
    done
done

log "propagation delay: 0, 1 and 2 hops, $TRIALS trials, probe every $PROBE_US us"
P="propagation --trials $TRIALS --probe-interval-us $PROBE_US"
# shellcheck disable=SC2086
cell prop.single single $P --target "$SINGLE" --sub-target "$SINGLE"
# shellcheck disable=SC2086
cell prop.hop1 leaf-a $P --target "$LEAF_A" --sub-target "$HUB"
# shellcheck disable=SC2086
cell prop.hop2 leaf-a $P --target "$LEAF_A" --sub-target "$LEAF_B"

log "one broker per core: pairs N=1000 on one broker vs spread over two leaves"
# shellcheck disable=SC2086
cell percore.single single pairs -n 1000 --target "$SINGLE" $T
# Pair i publishes and subscribes on leaf (i mod 2): nothing needs to cross a link.
# shellcheck disable=SC2086
cell percore.spread leaf-a pairs -n 1000 --target "$LEAF_A,$LEAF_B" --sub-target "$LEAF_A,$LEAF_B" $T
# Worst placement: every pair's subscriber is on the other leaf (2 hops via the hub).
# shellcheck disable=SC2086
cell percore.crossed leaf-a pairs -n 1000 --target "$LEAF_A,$LEAF_B" --sub-target "$LEAF_B,$LEAF_A" $T

for p in $P_SINGLE $P_HUB $P_A $P_B; do stats "$p" >"$OUT/stats/end-$p.json"; done
for name in "${!PID[@]}"; do
    kill -0 "${PID[$name]}" 2>/dev/null || log "WARNING: broker $name exited during the run"
done

# Machine and versions, for the report.
{
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "mode=$MODE"
    echo "runs=$RUNS"
    echo "warmup=$WARMUP"
    echo "duration=$DURATION"
    echo "trials=$TRIALS"
    echo "probe_us=$PROBE_US"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores=$(nproc)"
    echo "kernel=$(uname -sr)"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    dirty=
    [[ -n $(git -C "$ROOT" status --porcelain -- src loadgen Cargo.toml 2>/dev/null) ]] &&
        dirty=" with uncommitted changes"
    echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.txt"
log "records in $OUT"

if ((REPORT)); then
    mkdir -p "$ROOT/docs/bench"
    report "$OUT" >"$ROOT/docs/bench/federation.md"
    log "wrote docs/bench/federation.md"
fi

if ((FLEET > 0)); then
    run_fleet
fi
