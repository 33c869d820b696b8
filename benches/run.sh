#!/usr/bin/env bash
# tapcred benchmarks (issues 3, 4 and 12): builds the release binaries, the floor binary
# and the driver benches/tapcred/, runs it, and prints one table (medians, min/max, ratios); the table is
# also written to target/bench-results.md. See benches/README.md.
#
#   bash benches/run.sh                       everything
#   TAPCRED_BENCH_ONLY=B bash benches/run.sh  only section B (or A, or S; letters combine)
#   TAPCRED_BENCH_IDLE_SECONDS=60 …           the idle window of S1 (serve_idle.sh)
#   TAPCRED_BENCH_A_N=41 …                    samples per command in section A (default 21)
#   TAPCRED_BENCH_PAR=32 …                    parallel processes in B6/B7b (default 32)
#   TAPCRED_BENCH_QUICKACK=0 …                keep delayed ACKs on loopback (see README)
#   TAPCRED_BENCH_NO_WINE=1 …                 no Windows build, no Wine row (F5)
#
# Section A needs root, pcscd, vsmartcard-vpcd and $TAPCRED_VENV/bin/ykman; B8 needs strace.
# What is missing is skipped loudly. As root (with unshare and ip), the driver runs in a
# private network namespace whose loopback routes have `quickack 1`. That guarded against a
# 40 ms delayed-ACK stall of the STS double on reused connections; the double now listens
# with TCP_NODELAY, and TAPCRED_BENCH_QUICKACK=0 gives the same numbers (benches/README.md).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # ip, pcscd
cd "$(dirname "$0")/.."
TAPCRED_BENCH_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src tests Cargo.toml Cargo.lock 2>/dev/null || echo +dirty)"
export TAPCRED_BENCH_REV
target="${CARGO_TARGET_DIR:-target}"
# Row F4: the release build's time (clean when target/release held no tapcred yet).
kind=incremental
[ -e "$target/release/tapcred" ] || kind="clean"
t0=$(date +%s.%N)
if [ -x /usr/bin/time ]; then
    /usr/bin/time -o "$target/.bench-build-time" -f "%U %S" \
        cargo build --release --locked -p tapcred -p tapcred-testkit --bins
    read -r user sys < "$target/.bench-build-time"
else
    cargo build --release --locked -p tapcred -p tapcred-testkit --bins
    user=nan sys=nan
fi
TAPCRED_BENCH_BUILD=$(awk -v a="$t0" -v b="$(date +%s.%N)" -v u="$user" -v s="$sys" -v k="$kind" \
    'BEGIN { printf "%.0f s wall, %.0f s CPU (user+sys), %s build", b - a, u + s, k }')
export TAPCRED_BENCH_BUILD
# Row F5: the Windows release binaries under Wine (informative). Built here when the MinGW
# linker, the Rust target and Wine are present; TAPCRED_BENCH_NO_WINE=1 skips it (and the
# row), TAPCRED_BENCH_WINE_EXE=PATH uses a given tapcred.exe instead.
if [ "${TAPCRED_BENCH_NO_WINE:-0}" = 1 ]; then
    export TAPCRED_BENCH_WINE_EXE=/nonexistent/skipped-by-TAPCRED_BENCH_NO_WINE
elif [ -z "${TAPCRED_BENCH_WINE_EXE:-}" ] && command -v x86_64-w64-mingw32-gcc >/dev/null &&
    { [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null; } &&
    rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc} \
        cargo build --release --locked --target x86_64-pc-windows-gnu --bin tapcred --bin tapcred-full
fi
# The Rust floor of the warm path (rows B2f, F1f): std only, no Cargo profile.
rustc --edition 2024 -C opt-level=3 -C strip=symbols benches/support/floor.rs \
    -o "$target/release/tapcred-bench-floor"
exe=$(cargo bench --locked --bench tapcred --no-run 2>&1 | tee /dev/stderr |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n1)
[ -n "$exe" ] && [ -x "$exe" ] || { echo "benches: cannot find the built driver" >&2; exit 1; }

if [ "${TAPCRED_BENCH_QUICKACK:-1}" != 0 ] && [ "$(id -u)" = 0 ] &&
    command -v unshare >/dev/null && command -v ip >/dev/null; then
    export TAPCRED_BENCH_NETNS="private network namespace, loopback routes with quickack 1"
    exec unshare --net sh -c '
        set -e
        ip link set lo up
        for r in 127.0.0.0/8 127.0.0.1; do
            ip route change local "$r" dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
        done
        exec "$0" --bench' "$exe"
fi
export TAPCRED_BENCH_NETNS="host network namespace, default delayed ACKs"
exec "$exe" --bench
