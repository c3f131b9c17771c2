#!/usr/bin/env bash
# Installs what lifeboat's demo and tests run against, when it is missing: the PostgreSQL
# server and client programs, and restic (the emergency-restore path is tested with it);
# with --tests also Chromium (drill reports are checked as a browser renders them).
# Reuses whatever is already installed. Needs root (or sudo) only when something is missing.
set -euo pipefail

missing=()
if [ "${1:-}" = --tests ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)

if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
