#!/usr/bin/env bash
# The README's first command: installs what is missing, builds lifeboat and runs
# `lifeboat demo` (a throw-away PostgreSQL, backed up, changed, backed up, restored, checked).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p lifeboat
exec "${CARGO_TARGET_DIR:-target}/release/lifeboat" demo "$@"
