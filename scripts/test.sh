#!/usr/bin/env bash
# The README's second command: installs what is missing (PostgreSQL, restic, Chromium, the
# Garage S3 server) and runs the whole test suite against real servers. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh --test s3`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
LIFEBOAT_GARAGE_BIN="$(scripts/ensure-garage.sh)"
export LIFEBOAT_GARAGE_BIN
# audit entries a test's failure parks stay in a directory of the run, not in this machine's
# /var/lib/lifeboat (most tests give each workspace its own anyway)
LIFEBOAT_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-test-state.XXXXXX")"
export LIFEBOAT_STATE_DIR
trap 'rm -rf "$LIFEBOAT_STATE_DIR"' EXIT
cargo test --workspace --locked --no-fail-fast "$@"
