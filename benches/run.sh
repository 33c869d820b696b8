#!/usr/bin/env bash
# tapcred benchmarks (issues 3 and 4): builds the release binaries, then runs the driver
# benches/tapcred.rs, which prints one table (medians, min/max, ratios) and writes it to
# target/bench-results.md. Needs root + pcscd + vsmartcard-vpcd + ykman for section A,
# strace for the warm-path check; what is missing is skipped loudly.
#
#   bash benches/run.sh                    everything
#   TAPCRED_BENCH_ONLY=B bash benches/run.sh   only section B (A or B)
#   TAPCRED_BENCH_A_N=41 …                 samples per command in section A (default 21)
#   TAPCRED_BENCH_PAR=32 …                 parallel processes in B6/B7b (default 32)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p tapcred -p tapcred-testkit --bins
exec cargo bench --locked --bench tapcred
