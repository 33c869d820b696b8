#!/bin/sh
# A real pcscd (in a private network namespace) with one virtual YubiKey on the reader
# "Yubico YubiKey OTP+FIDO+CCID 00 00", for manual runs, scripts and benchmarks.
#
#   scripts/pcsc-stack.sh start [tapcred-vpcd-card options…]   e.g.
#       scripts/pcsc-stack.sh start --serial 1234567 --account 'ACME:alice=JBSWY3DPEHPK3PXP,touch'
#   scripts/pcsc-stack.sh press [TIMEOUT_MS]   press the button once the card waits for touch
#   scripts/pcsc-stack.sh control COMMAND      any control command (status, wait-touch, remove…)
#   scripts/pcsc-stack.sh status | stop
#
# Needs root, pcscd, vsmartcard-vpcd, util-linux (unshare), iproute2. Seeds may also be
# given in TAPCRED_VYK_ACCOUNTS (one spec per line), the OATH password in
# TAPCRED_VYK_PASSWORD. The card binary is $TAPCRED_VPCD_CARD, or built from this
# workspace (target/debug/tapcred-vpcd-card).
set -eu

STATE=${TAPCRED_PCSC_STATE:-/tmp/tapcred-pcsc-stack-card}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

card_bin() {
    if [ -n "${TAPCRED_VPCD_CARD:-}" ]; then
        echo "$TAPCRED_VPCD_CARD"
        return
    fi
    (cd "$ROOT" && cargo build -q -p tapcred-testkit --bin tapcred-vpcd-card) >&2
    echo "${CARGO_TARGET_DIR:-$ROOT/target}/debug/tapcred-vpcd-card"
}

running() {
    [ -f "$STATE.pid" ] && kill -0 "$(cat "$STATE.pid")" 2>/dev/null
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start)
    if running; then
        echo "pcsc-stack: already running (pid $(cat "$STATE.pid"))" >&2
        exit 1
    fi
    bin=$(card_bin)
    rm -f "$STATE.ready" "$STATE.sock"
    "$bin" --with-pcscd --ready-file "$STATE.ready" --control "$STATE.sock" "$@" >"$STATE.log" 2>&1 &
    echo $! >"$STATE.pid"
    i=0
    while [ ! -s "$STATE.ready" ]; do
        if ! running; then
            echo "pcsc-stack: card/pcscd failed to start:" >&2
            cat "$STATE.log" >&2
            rm -f "$STATE.pid"
            exit 1
        fi
        i=$((i + 1))
        if [ $i -gt 300 ]; then
            echo "pcsc-stack: not ready after 15 s" >&2
            kill -TERM "$(cat "$STATE.pid")"
            exit 1
        fi
        sleep 0.05
    done
    cat "$STATE.ready"
    ;;
stop)
    if ! running; then
        echo "pcsc-stack: not running"
        rm -f "$STATE.pid"
        exit 0
    fi
    pid=$(cat "$STATE.pid")
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 100 ] && { echo "pcsc-stack: pid $pid did not stop" >&2; exit 1; }
        sleep 0.05
    done
    rm -f "$STATE.pid" "$STATE.ready" "$STATE.sock"
    echo "pcsc-stack: stopped"
    ;;
status)
    if running; then
        echo "running (pid $(cat "$STATE.pid")): $(cat "$STATE.ready" 2>/dev/null)"
    else
        echo "not running"
        exit 1
    fi
    ;;
press)
    "$(card_bin)" control "$STATE.sock" press-when-requested "${1:-15000}"
    ;;
control)
    "$(card_bin)" control "$STATE.sock" "$@"
    ;;
*)
    echo "usage: $0 start [card options…] | stop | status | press [MS] | control COMMAND" >&2
    exit 2
    ;;
esac
