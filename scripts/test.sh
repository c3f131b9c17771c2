#!/usr/bin/env bash
# The README's second command: installs what is missing (PostgreSQL, restic, Chromium, the
# Garage S3 server) and runs the whole test suite against real servers. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh --test s3`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
LIFEBOAT_GARAGE_BIN="$(scripts/ensure-garage.sh)"
export LIFEBOAT_GARAGE_BIN
cargo test --workspace --locked --no-fail-fast "$@"
