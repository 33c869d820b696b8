#!/usr/bin/env bash
# The whole test suite: unit, property, integration (real binary + strict STS double), the
# real pcscd + virtual YubiKey stack, ykman, moto, the AWS CLI and SDK clients.
# Stacks that need root or Python tools skip loudly outside CI; with CI=true they must run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TAPCRED_TEST_THREADS:-4}"
