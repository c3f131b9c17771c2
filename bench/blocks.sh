#!/usr/bin/env bash
# What a physical backup would store after the scattered ~1% change of bench/lib.sh if it cut
# the data directory into fixed, page-aligned blocks instead of lifeboat's content-defined
# chunks: a study for the block size, not a benchmark of lifeboat.
#
#   bench/blocks.sh                   # BENCH_SCALE=1200 (~1.4 GB cluster), ~5 min here
#
# It builds the benchmark cluster (bench/lib.sh), copies its data directory (without pg_wal)
# after a checkpoint, applies the scattered change, copies it again, and runs
# bench/blocks.py over the two copies: for each block size, zstd-2 of every block (the
# repository's level) against zstd-3 of whole files (pgBackRest's full and file-level
# incremental). Writes bench/results/blocks.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SCALE=${BENCH_SCALE:-1200}
PORT=${BENCH_PORT:-55434}
WORK=${BENCH_WORK:-/var/tmp/lifeboat-bench-blocks}
OUTDIR=${BENCH_OUT:-$HERE/results}
LIFEBOAT=/bin/true  # lifeboat itself is not run
BENCH_BUILD=0
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || { echo "bench: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
BENCH_NAME=blocks
BENCH_PG_OPTS="-c wal_level=replica"

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

copy_cluster() { rm -rf "$1"; mkdir -p "$1"; (cd "$PGDATA_DIR" && tar --exclude=./pg_wal -cf - .) | (cd "$1" && tar -xf -); }
checkpoint
copy_cluster "$WORK/before"
scattered_change
checkpoint
copy_cluster "$WORK/after"
log "comparing blocks (python3, libzstd)"
{
  echo "# Page-aligned blocks after a scattered 1% change ($(date -u +%Y-%m-%dT%H:%MZ), scale $SCALE)"
  echo
  python3 "$HERE/blocks.py" "$WORK/before" "$WORK/after"
} >"$OUTDIR/blocks.md"
cat "$OUTDIR/blocks.md"
