#!/usr/bin/env bash
# Idle cost of `tapcred serve` (issue 12 item 3): CPU time and context switches of a serve
# that has a child and receives no request, over a fixed window.
#
#   bash benches/serve_idle.sh [TAPCRED_BINARY]     # default target/release/tapcred
#   TAPCRED_IDLE_SECONDS=60 bash benches/serve_idle.sh
#
# It starts `tapcred serve --profile toolkit-user -- sleep N` with the design example (fixtures/aws/design)
# files in a temporary HOME (a static-key profile: no STS, no key, no network but the
# loopback listener), waits 2 s for it to settle, then reads every thread's utime+stime
# (/proc/PID/task/*/stat, clock ticks) and voluntary/involuntary context switches
# (/proc/PID/task/*/status) at the start and end of the window, and prints the differences
# summed over the threads present at the end (a thread that exits inside the window is
# lost, so the thread list of both ends is printed too). Linux only. Not a test: no
# threshold, just the numbers (an idle serve with no periodic wake-up shows 0 switches).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/tapcred}"
SECS="${TAPCRED_IDLE_SECONDS:-60}"
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release, or pass a path)" >&2; exit 1; }

home="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$home"' EXIT
mkdir -p "$home/.aws"
cp fixtures/aws/design/config fixtures/aws/design/credentials "$home/.aws/"

env -i PATH="$PATH" HOME="$home" XDG_CACHE_HOME="$home/.cache" \
  "$BIN" serve --profile toolkit-user -- sleep $((SECS + 10)) </dev/null >/dev/null 2>&1 &
pid=$!
sleep 2

# Prints "ticks voluntary involuntary threads" summed over the live threads of $pid.
sample() {
  local t=0 v=0 n=0 names=""
  for d in /proc/"$pid"/task/*; do
    [ -r "$d/stat" ] || continue
    # utime and stime are fields 14 and 15; the name (field 2) may contain spaces.
    local stat rest
    stat="$(cat "$d/stat")" || continue
    rest="${stat##*) }"
    read -r -a f <<<"$rest"
    t=$((t + f[11] + f[12]))
    v=$((v + $(awk '/^voluntary_ctxt_switches/ {print $2}' "$d/status")))
    n=$((n + $(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$d/status")))
    names="$names $(cat "$d/comm")"
  done
  echo "$t $v $n$names"
}

read -r t0 v0 n0 threads0 < <(sample)
sleep "$SECS"
kill -0 "$pid" 2>/dev/null || { echo "tapcred serve exited early" >&2; exit 1; }
read -r t1 v1 n1 threads1 < <(sample)
hz="$(getconf CLK_TCK)"
echo "binary:                        $BIN"
echo "window:                        ${SECS} s idle (threads: $threads1; at start: $threads0)"
echo "cpu time (utime+stime):        $(( (t1 - t0) * 1000 / hz )) ms"
echo "voluntary context switches:    $((v1 - v0))"
echo "involuntary context switches:  $((n1 - n0))"
