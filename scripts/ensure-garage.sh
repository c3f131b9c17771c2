#!/usr/bin/env bash
# Prints the absolute path of a Garage binary (the S3 server the tests run against) on
# stdout, and nothing else there; progress goes to stderr.
#
# Order: $LIFEBOAT_GARAGE_BIN when it is an executable file; else the copy cached by an
# earlier run; else `cargo install garage` into that cache (about 14 minutes, once).
# Downloads nothing except through cargo.
set -euo pipefail

say() { echo "ensure-garage: $*" >&2; }

# A binary is usable when it runs; a truncated copy or one for another machine is not.
usable() {
  [ -f "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1
}

absolute() {
  (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$1")")
}

if [ -n "${LIFEBOAT_GARAGE_BIN:-}" ]; then
  if usable "$LIFEBOAT_GARAGE_BIN"; then
    absolute "$LIFEBOAT_GARAGE_BIN"
    exit 0
  fi
  say "LIFEBOAT_GARAGE_BIN=$LIFEBOAT_GARAGE_BIN is not an executable Garage binary; ignoring it"
fi

root="${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat/garage"
bin="$root/bin/garage"
if usable "$bin"; then
  absolute "$bin"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is not installed, so Garage cannot be built"
  say "install Rust (https://rustup.rs) or set LIFEBOAT_GARAGE_BIN to a Garage binary"
  exit 1
fi

say "building the Garage S3 server with cargo into $root"
say "this happens once and takes about 14 minutes; later runs reuse it"
mkdir -p "$root"
# CARGO_TARGET_DIR would mix Garage's build into lifeboat's target directory; cargo's own
# temporary directory keeps it apart and is removed afterwards
if ! env -u CARGO_TARGET_DIR cargo install garage --locked --root "$root" >&2; then
  say "building Garage failed (see cargo's output above)"
  say "fix the cause and run this script again, or set LIFEBOAT_GARAGE_BIN to a Garage binary"
  exit 1
fi
if ! usable "$bin"; then
  say "cargo install finished but $bin does not run"
  exit 1
fi
say "Garage is ready: $bin"
absolute "$bin"
