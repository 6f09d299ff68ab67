#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time each (default 20 s), starting
# from the checked-in seed corpus, and fails if any target finds a crash. Needs a nightly
# toolchain; installs cargo-fuzz when it is missing. Prints per target the number of
# executions. New corpus entries go to a temporary directory, so the seed corpus in
# fuzz/corpus/ stays as checked in; crashes are kept in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]            every target
#   TARGETS="router_model" scripts/fuzz.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS]  (per target, default 20)" >&2
    exit 2
fi
if ! rustup toolchain list | grep -q nightly; then
    echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

targets="${TARGETS:-$(cargo +nightly fuzz list)}"
echo "== cargo +nightly fuzz build"
cargo +nightly fuzz build

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
summary=()
for t in $targets; do
    echo "== $t (${secs} s)"
    mkdir -p "$work/$t"
    log="$work/$t.log"
    # The first corpus directory receives new inputs; the seeds are read only.
    if cargo +nightly fuzz run "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
        grep -E "panicked at|assertion|SUMMARY|Test unit written to" -A3 "$log" | head -40 >&2 || true
    fi
    execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)"
    if [ -z "$execs" ]; then
        execs="$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)"
    fi
    line="$(printf '%-20s %-6s %12s executions in %s s' "$t" "$status" "${execs:-?}" "$secs")"
    summary+=("$line")
    echo "$line"
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crash found in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
