# shellcheck shell=bash
# Process and port helpers for scripts/bench.sh: free loopback ports, waiting for a
# listener, and stopping (by PID only) every process the script started.
# Sourced, not executed. Owns the STARTED_PIDS list; never signals a process it did not start.

# PIDs of every long-running process the script started, in start order.
STARTED_PIDS=()

# log MESSAGE...: progress line on stderr with elapsed seconds.
log() {
    printf '[bench %4ds] %s\n' "$SECONDS" "$*" >&2
}

# port_in_use PORT: succeeds when something accepts on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port START: prints the first port >= START that nothing listens on and that no
# earlier call handed out.
_HANDED_OUT=" "
free_port() {
    local p=$1
    while port_in_use "$p" || [[ $_HANDED_OUT == *" $p "* ]]; do
        p=$((p + 1))
    done
    _HANDED_OUT+="$p "
    echo "$p"
}

# wait_listen PORT PID NAME: waits (10 s at most) until PORT accepts while PID lives.
wait_listen() {
    local port=$1 pid=$2 name=$3 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) exited before listening on $port"
            return 1
        fi
        if port_in_use "$port"; then
            return 0
        fi
        sleep 0.1
    done
    log "$name (pid $pid) did not listen on $port within 10 s"
    return 1
}

# track PID: remembers PID for stop_all.
track() {
    STARTED_PIDS+=("$1")
}

# untrack PID: forgets a reaped PID, so a later stop_all can never signal a reused PID.
untrack() {
    local keep=() p
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    STARTED_PIDS=("${keep[@]}")
}

# stop_pid PID: SIGTERM, then SIGKILL after 5 s, then reap.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# stop_all: stops every tracked process, newest first. Safe to call twice.
stop_all() {
    local i
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED_PIDS[i]}"
    done
    STARTED_PIDS=()
}

# have_perf: succeeds when `perf stat` can count syscall tracepoints here.
have_perf() {
    command -v perf >/dev/null &&
        perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true >/dev/null 2>&1
}
