#!/usr/bin/env bash
# Runs the benchmark matrix of issue 3 against our broker, the minimal relay (the
# machine's ceiling for the JSON protocol), Redis, NATS and Mosquitto, all on loopback,
# then regenerates docs/BENCHMARKS.md and docs/bench/*.svg from the JSON records.
#
# Usage: scripts/bench.sh [--quick] [--runs N] [--out DIR] [--no-report] [--no-build]
#   --quick      fewer cells, 1 s windows, 1 run each; finishes in under 3 minutes
#   --runs N     runs per cell (default 3; --quick: 1); tables show the median
#   --out DIR    where raw records and logs go (default target/bench/TIMESTAMP)
#   --no-report  collect records only; do not touch docs/
#   --no-build   use the binaries already in target/release
#
# Every process this script starts is recorded by PID and stopped on exit, also on
# failure or Ctrl-C. Nothing leaves 127.0.0.0/8.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"

MODE=full
RUNS=
OUT=
REPORT=1
BUILD=1
while (($#)); do
    case $1 in
    --quick) MODE=quick ;;
    --runs)
        RUNS=${2:?--runs needs a number}
        shift
        ;;
    --out)
        OUT=${2:?--out needs a directory}
        shift
        ;;
    --no-report) REPORT=0 ;;
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench.sh: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

if [[ $MODE == quick ]]; then
    RUNS=${RUNS:-1}
    WARMUP=0.5
    DURATION=1
    DRAIN=3
    LAT_DURATION=2
    CONNS=19000
else
    RUNS=${RUNS:-3}
    WARMUP=1
    DURATION=5
    DRAIN=5
    LAT_DURATION=5
    CONNS=19000
fi
# Source addresses for the conns ramp, so ephemeral ports are never the limit below
# ~28,000 connections per address.
CONN_SOURCES=127.0.0.2,127.0.0.3

OUT=${OUT:-$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
META=$OUT/meta.tsv
COMMANDS=$OUT/commands.sh
: >"$META"
: >"$COMMANDS"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#STARTED_PIDS[@]})); then
        log "stopping ${#STARTED_PIDS[@]} processes started by this script: ${STARTED_PIDS[*]}"
    fi
    stop_all
    # Keep the peers' logs with the records; drop the temporary configs.
    cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# meta KEY VALUE: one line of facts for the report generator.
meta() {
    printf '%s\t%s\n' "$1" "$2" >>"$META"
}

# ---------------------------------------------------------------- build and peers
cd "$ROOT"
log "mode $MODE: $RUNS run(s) per cell, ${DURATION}s windows; records in $OUT"
if ((BUILD)); then
    log "building release binaries"
    # Two commands: `--bin broker` with two packages would select only the broker.
    cargo build --release -p pubsub --bin broker
    cargo build --release -p loadgen
fi
BROKER=$ROOT/target/release/broker
LOADGEN=$ROOT/target/release/loadgen
BENCHREPORT=$ROOT/target/release/benchreport

# Peers: binary -> Debian package. Installed only when missing.
declare -A PKG=([redis-server]=redis-server [nats-server]=nats-server [mosquitto]=mosquitto)
missing=()
for bin in "${!PKG[@]}"; do
    command -v "$bin" >/dev/null || missing+=("${PKG[$bin]}")
done
if ((${#missing[@]})); then
    log "installing missing peers: ${missing[*]}"
    if ! { apt-get update && apt-get install -y "${missing[@]}"; } >"$OUT/logs/apt.log" 2>&1; then
        log "apt-get failed (see $OUT/logs/apt.log); peers still missing are skipped"
    fi
fi

# Raise the soft fd limit to the hard one for this script and every process it starts,
# so all brokers and loadgen get the same ceiling.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

# ---------------------------------------------------------------- machine facts
meta mode "$MODE"
meta root "$ROOT"
meta runs "$RUNS"
meta warmup "$WARMUP"
meta duration "$DURATION"
meta drain "$DRAIN"
meta latency_duration "$LAT_DURATION"
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta git "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
meta nproc "$(nproc)"
meta cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
meta kernel "$(uname -r)"
meta mem_total_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
meta ulimit_n "$NOFILE"
meta ulimit_hn "$(ulimit -Hn)"
meta nr_open "$(cat /proc/sys/fs/nr_open)"
meta file_max "$(cat /proc/sys/fs/file-max)"
meta port_range "$(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range)"
meta somaxconn "$(cat /proc/sys/net/core/somaxconn)"
meta tcp_mem "$(tr '\t' ' ' </proc/sys/net/ipv4/tcp_mem)"
meta tcp_rmem "$(tr '\t' ' ' </proc/sys/net/ipv4/tcp_rmem)"
meta tcp_wmem "$(tr '\t' ' ' </proc/sys/net/ipv4/tcp_wmem)"
meta page_size "$(getconf PAGESIZE)"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta loadgen_threads "$(nproc)"
HAVE_PERF=0
if have_perf; then
    HAVE_PERF=1
    meta syscalls "perf stat -e raw_syscalls:sys_enter -p BROKER_PID over each whole run"
else
    log "perf cannot count syscalls here: syscalls per message will be 'not measured'"
fi

# ---------------------------------------------------------------- start the targets
declare -A URL=() PID=() PORT=() START=()
LABELS=()

# started LABEL URL PID PORT VERSION COMMAND...: bookkeeping after a start.
started() {
    local label=$1 url=$2 pid=$3 port=$4 version=$5
    shift 5
    track "$pid"
    if wait_listen "$port" "$pid" "$label"; then
        URL[$label]=$url
        PID[$label]=$pid
        PORT[$label]=$port
        START[$label]=$(printf '%q ' "$@")
        LABELS+=("$label")
        meta "version_$label" "$version"
        meta "start_$label" "$(printf '%q ' "$@")"
        meta "pid_$label" "$pid"
        log "started $label (pid $pid) on $url: $version"
    else
        log "skipping $label: it did not start (log in $OUT/logs)"
    fi
}

port=$(free_port 17400)
cmd=("$BROKER" --listen "127.0.0.1:$port" --log-level warn)
"${cmd[@]}" >"$WORK/ours.log" 2>&1 &
started ours "json://127.0.0.1:$port" $! "$port" "$("$BROKER" --version)" "${cmd[@]}"

port=$(free_port 17401)
cmd=("$LOADGEN" relay --listen "127.0.0.1:$port")
"${cmd[@]}" >"$WORK/relay.log" 2>&1 &
started relay "json://127.0.0.1:$port" $! "$port" "$("$LOADGEN" --version) relay" "${cmd[@]}"

if command -v redis-server >/dev/null; then
    port=$(free_port 16379)
    # Persistence off, every client allowed that the fd limit permits (Redis keeps 32
    # fds for itself), and no output-buffer cap for pub/sub clients: with the default
    # (32 MiB hard) Redis disconnects a subscriber that falls behind, the other brokers
    # here do not at these sizes.
    cmd=(redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no
        --maxclients "$((NOFILE - 32))" --client-output-buffer-limit 'pubsub 0 0 0'
        --protected-mode no --daemonize no --dir "$WORK" --logfile "$WORK/redis.log")
    "${cmd[@]}" &
    started redis "redis://127.0.0.1:$port" $! "$port" "$(redis-server --version)" "${cmd[@]}"
else
    log "skipping redis: redis-server not installed"
fi

if command -v nats-server >/dev/null; then
    port=$(free_port 14222)
    # max_pending: unsent bytes per client before NATS calls it a slow consumer
    # (default 64 MiB), raised so a 1 KiB fan-out window never trips it.
    cat >"$WORK/nats.conf" <<'EOF'
max_connections: 100000
max_pending: 268435456
write_deadline: "10s"
EOF
    cmd=(nats-server -c "$WORK/nats.conf" -a 127.0.0.1 -p "$port" -l "$WORK/nats.log")
    "${cmd[@]}" &
    started nats "nats://127.0.0.1:$port" $! "$port" "$(nats-server --version)" "${cmd[@]}"
    meta config_nats "$(tr '\n' ';' <"$WORK/nats.conf")"
else
    log "skipping nats: nats-server not installed"
fi

if command -v mosquitto >/dev/null; then
    port=$(free_port 11883)
    cat >"$WORK/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
max_connections -1
max_queued_messages 1000000
max_queued_bytes 0
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF
    cmd=(mosquitto -c "$WORK/mosquitto.conf")
    "${cmd[@]}" >"$WORK/mosquitto.log" 2>&1 &
    started mosquitto "mqtt://127.0.0.1:$port" $! "$port" "$(mosquitto -h 2>&1 | head -n1 || true)" "${cmd[@]}"
    meta config_mosquitto "$(grep -v '^log_' "$WORK/mosquitto.conf" | tr '\n' ';')"
else
    log "skipping mosquitto: mosquitto not installed"
fi
meta loadgen_version "$("$LOADGEN" --version)"
meta labels "${LABELS[*]}"

# ---------------------------------------------------------------- running loadgen
alive() {
    kill -0 "${PID[$1]}" 2>/dev/null
}

# lines FILE: number of records in FILE (0 when it does not exist yet).
lines() {
    if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi
}

# run_cell LABEL SCENARIO ARGS...: one bounded loadgen run; its record is appended to
# records-LABEL.jsonl and the broker's read/write syscall counts to syscalls.tsv.
run_cell() {
    local label=$1 scenario=$2
    shift 2
    local file=$OUT/records-$label.jsonl
    if ! alive "$label"; then
        log "  $label is no longer running; skipped $scenario $*"
        return 0
    fi
    local before after rc=0 t0 bound perf_pid='' perf_out=$WORK/perf.out
    before=$(lines "$file")
    bound=$(awk -v d="$DURATION" -v l="$LAT_DURATION" 'BEGIN {printf "%d", 60 + (d > l ? d : l) * 2}')
    local cmd=("$LOADGEN" "$scenario" --target "${URL[$label]}" --broker-pid "${PID[$label]}"
        --json "$file" "$@")
    printf '%s\n' "${cmd[*]}" >>"$COMMANDS"
    if ((HAVE_PERF)); then
        # Count every syscall the broker (all its threads) makes during the whole run.
        perf stat -x, -e raw_syscalls:sys_enter -p "${PID[$label]}" -o "$perf_out" &
        perf_pid=$!
        track "$perf_pid"
    fi
    t0=$SECONDS
    timeout -k 5 "$bound" "${cmd[@]}" >>"$OUT/logs/loadgen-$label.txt" 2>&1 || rc=$?
    local syscalls=
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        untrack "$perf_pid"
        syscalls=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$perf_out" 2>/dev/null || true)
    fi
    after=$(lines "$file")
    if ((after > before)); then
        if [[ $syscalls =~ ^[0-9]+$ ]]; then
            printf '%s\t%s\t%s\n' "$label" "$after" "$syscalls" >>"$OUT/syscalls.tsv"
        fi
        local rate
        rate=$(tail -n1 "$file" | grep -o '"delivered_per_sec":[0-9.e+]*' | cut -d: -f2)
        log "  $label: $(awk -v r="${rate:-0}" 'BEGIN {printf "%.0f", r}') delivered/s (exit $rc, $((SECONDS - t0)) s)"
    else
        log "  $label: no record (exit $rc); see $OUT/logs/loadgen-$label.txt"
    fi
}

# cell DESCRIPTION SCENARIO ARGS...: RUNS rounds over every throughput target, interleaved
# (ours, relay, redis, nats, mosquitto, then again) so slow drift in machine load
# spreads over all of them.
cell() {
    local what=$1
    shift
    local r label
    for ((r = 1; r <= RUNS; r++)); do
        log "$what (run $r/$RUNS)"
        for label in "${LABELS[@]}"; do
            run_cell "$label" "$@"
        done
    done
}

TP=(--warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN")
LAT=(--warmup "$WARMUP" --duration "$LAT_DURATION" --drain "$DRAIN")

if [[ $MODE == quick ]]; then
    FANOUT_N=(10 1000)
    FANOUT_1K_N=(1000)
    FANIN_N=(16)
    PAIRS_N=(1000)
    PARSE_256_FANIN_N=()
    PARSE_256_PAIRS_N=()
    LAT_N=(100)
    LAT_R=(10000 50000)
else
    FANOUT_N=(1 10 100 1000)
    FANOUT_1K_N=(1 10 100 1000)
    FANIN_N=(1 16 256)
    PAIRS_N=(100 1000)
    PARSE_256_FANIN_N=(16)
    PARSE_256_PAIRS_N=(100)
    LAT_N=(10 100)
    LAT_R=(10000 50000)
fi

# window N PAYLOAD: messages in flight per publisher for a cell with N subscribers (fanout)
# or N publishers (fanin, pairs). loadgen's default allows up to 1,000,000 deliveries in
# flight; here the cap is 100,000 deliveries in flight in total at 16 B and
# 64 MiB at 1 KiB, so the slowest peer still completes several windows per second and
# a window's backlog drains within --drain. Clamped to 16..10000, the same for every
# broker. (Up to 2026-12-02 the clamp was 1000: with one publisher that made the cell a
# closed loop whose round trip bounded it, each side idle while the other worked; at
# fan-out 1 -> 1 the broker sat at 55% of its core with a window of 1000 and 91% with
# 10,000. See "The pipeline bubble" in docs/BENCHMARKS.md.)
window() {
    local n=$1 payload=$2 w
    if ((payload <= 64)); then w=$((100000 / n)); else w=$((65536 / n)); fi
    ((w > 10000)) && w=10000
    ((w < 16)) && w=16
    echo "$w"
}

for n in "${FANOUT_N[@]}"; do
    cell "fanout 1 -> $n, 16 B" fanout -n "$n" --payload 16 --window "$(window "$n" 16)" "${TP[@]}"
done
for n in "${FANOUT_1K_N[@]}"; do
    cell "fanout 1 -> $n, 1 KiB" fanout -n "$n" --payload 1024 --window "$(window "$n" 1024)" "${TP[@]}"
done
for n in "${FANIN_N[@]}"; do
    cell "fanin $n -> 1, 16 B" fanin -p "$n" --payload 16 --window "$(window "$n" 16)" "${TP[@]}"
done
for n in "${PAIRS_N[@]}"; do
    cell "pairs $n, 16 B" pairs -n "$n" --payload 16 --window "$(window "$n" 16)" "${TP[@]}"
done
# Issue 11's cells where every message is parsed for one delivery, at 256 B too.
for n in "${PARSE_256_FANIN_N[@]}"; do
    cell "fanin $n -> 1, 256 B" fanin -p "$n" --payload 256 --window "$(window "$n" 256)" "${TP[@]}"
done
for n in "${PARSE_256_PAIRS_N[@]}"; do
    cell "pairs $n, 256 B" pairs -n "$n" --payload 256 --window "$(window "$n" 256)" "${TP[@]}"
done
for n in "${LAT_N[@]}"; do
    for r in "${LAT_R[@]}"; do
        cell "latency $r msgs/s -> $n" latency -n "$n" --rate "$r" --payload 16 "${LAT[@]}"
    done
done

# restart LABEL: stops that target and starts it again with the same command, so that a
# measurement starts from a fresh process (nothing left in its allocator or tables by
# the cells before).
restart() {
    local label=$1 pid
    stop_pid "${PID[$label]}"
    untrack "${PID[$label]}"
    # `exec`, so that $! is the broker itself and not a subshell running it (the
    # subshell's RSS never grows: the 2026-12-02 run read 0 B per connection that way).
    eval "exec ${START[$label]}" >>"$WORK/$label.log" 2>&1 &
    pid=$!
    track "$pid"
    if ! wait_listen "${PORT[$label]}" "$pid" "$label"; then
        log "$label did not restart (log in $OUT/logs)"
        return 1
    fi
    PID[$label]=$pid
    meta "pid_${label}_conns" "$pid"
}

# conns: one ramp per broker (not the relay: it is a forwarder, not a broker), each on
# a freshly restarted broker: RSS per connection measured on a process that has served
# the throughput cells counts memory those cells left behind as already there (our
# broker showed 257 B per connection that way, about 770 B fresh). While it runs,
# sample the kernel's TCP memory (/proc/net/sockstat, pages) and slab memory
# (/proc/meminfo), which RSS does not show.
sockstat_mem() {
    awk '/^TCP:/ {for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat
}
slab_kib() {
    awk '/^Slab:/ {print $2}' /proc/meminfo
}
for label in "${LABELS[@]}"; do
    [[ $label == relay ]] && continue
    alive "$label" || continue
    restart "$label" || continue
    log "conns up to $CONNS -> $label"
    file=$OUT/records-$label.jsonl
    cmd=("$LOADGEN" conns --target "${URL[$label]}" --broker-pid "${PID[$label]}"
        --clients "$CONNS" --source "$CONN_SOURCES" --json "$file")
    printf '%s\n' "${cmd[*]}" >>"$COMMANDS"
    slab0=$(slab_kib)
    mem0=$(sockstat_mem)
    peak_slab=$slab0
    peak_mem=$mem0
    t0=$SECONDS
    timeout -k 5 180 "${cmd[@]}" >>"$OUT/logs/loadgen-$label.txt" 2>&1 &
    lg=$!
    track "$lg"
    while kill -0 "$lg" 2>/dev/null; do
        s=$(slab_kib)
        m=$(sockstat_mem)
        ((s > peak_slab)) && peak_slab=$s
        ((m > peak_mem)) && peak_mem=$m
        sleep 0.2
    done
    rc=0
    wait "$lg" || rc=$?
    untrack "$lg"
    line=$(lines "$file")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$line" "$slab0" "$peak_slab" "$mem0" "$peak_mem" >>"$OUT/kernelmem.tsv"
    log "  $label: exit $rc in $((SECONDS - t0)) s; slab +$((peak_slab - slab0)) KiB, tcp mem +$((peak_mem - mem0)) pages"
    # Let closed sockets leave the kernel before the next broker's ramp.
    sleep 2
done

meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta total_secs "$SECONDS"
stop_all

# ---------------------------------------------------------------- the report
if ((REPORT)); then
    log "regenerating docs/BENCHMARKS.md and docs/bench/*.svg"
    mkdir -p "$ROOT/docs/bench/data"
    rm -f "$ROOT/docs/bench/data/"*
    cp "$OUT"/*.jsonl "$OUT"/*.tsv "$OUT/commands.sh" "$ROOT/docs/bench/data/"
    "$BENCHREPORT" --results "$ROOT/docs/bench/data" --doc "$ROOT/docs/BENCHMARKS.md" \
        --charts "$ROOT/docs/bench"
fi
log "done in $SECONDS s"
