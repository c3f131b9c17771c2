#!/usr/bin/env bash
# Installs what lifeboat's demo and tests run against, when it is missing: the PostgreSQL
# server and client programs, and restic (the emergency-restore path is tested with it);
# with --tests also Chromium (drill reports are checked as a browser renders them) and the
# de_DE.UTF-8 locale (a test restores onto a server that answers in German).
# Reuses whatever is already installed. Needs root (or sudo) only when something is missing.
set -euo pipefail

SUDO=""
as_root() {
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to $1" >&2; exit 1; }
    SUDO="sudo"
  fi
}

missing=()
if [ "${1:-}" = --tests ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}" >&2
  as_root "install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# the postgresql package depends on `locales`, which has the definitions localedef needs
if [ "${1:-}" = --tests ] && ! locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
  echo "setup: generating the de_DE.UTF-8 locale" >&2
  as_root "generate the de_DE.UTF-8 locale"
  $SUDO localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi
