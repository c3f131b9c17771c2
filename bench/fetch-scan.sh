#!/usr/bin/env bash
# What `wal-fetch` costs per segment, two lifeboat binaries alternating: since session 13
# it reads each fetched segment's record headers for tablespace creations before handing it
# to recovery. Real WAL from a private cluster (mixed inserts, updates and index changes),
# archived once into a local repository, then fetched segment by segment, BENCH_ROUNDS
# times per binary.
#
#   LIFEBOAT_BIN=new LIFEBOAT_OLD_BIN=old bench/fetch-scan.sh   # ~2 min here
#
# BENCH_SEGMENTS (default 24) segments, port BENCH_PORT (default 56410), scratch in
# BENCH_WORK (default /var/tmp/lifeboat-bench-fetch, deleted at the end). As root the
# server runs as `postgres`. Prints the total and per-segment wall time of each round, each
# binary alone (it opens the repository every time) and through its own `wal serve`.
set -euo pipefail

W=${BENCH_WORK:-/var/tmp/lifeboat-bench-fetch}
NEW=${LIFEBOAT_BIN:?set LIFEBOAT_BIN to the lifeboat binary to measure}
OLD=${LIFEBOAT_OLD_BIN:?set LIFEBOAT_OLD_BIN to the binary to compare with}
PORT=${BENCH_PORT:-56410}
SEGMENTS=${BENCH_SEGMENTS:-24}
ROUNDS=${BENCH_ROUNDS:-3}
PG=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
export LIFEBOAT_STATE_DIR=$W/state LIFEBOAT_PASSWORD=bench-password
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
rm -rf "$W" && mkdir -p "$W/pg" "$W/sock" "$W/segs" "$W/out"
[ "$(id -u)" = 0 ] && chown postgres: "$W/pg" "$W/sock"
as_pg "$PG/initdb" -D "$W/pg/data" -U postgres --auth-local=trust -E UTF8 --locale=C >/dev/null
as_pg "$PG/pg_ctl" -D "$W/pg/data" -o "-p $PORT -k $W/sock -c listen_addresses='' -c max_wal_size=4GB" -l "$W/pg/log" -w start >/dev/null
trap 'as_pg "$PG/pg_ctl" -D "$W/pg/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$W"' EXIT
P="psql -X -q -h $W/sock -p $PORT -U postgres -d postgres"
$P -c "create table t (id bigint primary key, v text, n numeric)"
first=$($P -Atc "select pg_walfile_name(pg_current_wal_lsn())")
i=0
while :; do
  $P -c "insert into t select g, md5(g::text) || repeat('x', (g % 50)), g * 1.5 from generate_series($i * 40000 + 1, ($i + 1) * 40000) g" \
     -c "update t set v = md5(v) where id % 7 = $((i % 7))"
  i=$((i + 1))
  last=$($P -Atc "select pg_walfile_name(pg_current_wal_lsn())")
  [ $((16#${last:16:8} - 16#${first:16:8})) -ge "$SEGMENTS" ] && break
done
$P -Atc "select pg_switch_wal()" >/dev/null
$P -c checkpoint
# the closed segments, copied before they are recycled
segs=$(cd "$W/pg/data/pg_wal" && ls | grep -E '^[0-9A-F]{24}$' | sort | head -n "$SEGMENTS")
for s in $segs; do cp "$W/pg/data/pg_wal/$s" "$W/segs/$s"; done
cat > "$W/lifeboat.toml" <<CFG
[repository]
url = "$W/repo"

[[source]]
name = "bench"
kind = "postgres"
dsn = "host=$W/sock port=$PORT user=postgres dbname=postgres"
CFG
"$NEW" --config "$W/lifeboat.toml" init >/dev/null
for s in $segs; do "$NEW" --config "$W/lifeboat.toml" wal-push "$W/segs/$s" 2>/dev/null; done
n=$(echo "$segs" | wc -w)
# each binary also through its own `wal serve` (the repository kept open: what recovery
# pays per segment in production set-ups)
"$OLD" --config "$W/lifeboat.toml" wal serve --socket "$W/old.sock" 2>/dev/null & old_pid=$!
"$NEW" --config "$W/lifeboat.toml" wal serve --socket "$W/new.sock" 2>/dev/null & new_pid=$!
trap 'kill $old_pid $new_pid 2>/dev/null; as_pg "$PG/pg_ctl" -D "$W/pg/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$W"' EXIT
while [ ! -S "$W/old.sock" ] || [ ! -S "$W/new.sock" ]; do sleep 0.1; done
round() {
  local bin=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  for s in $segs; do "$bin" --config "$W/lifeboat.toml" wal-fetch "$@" "$s" "$W/out/RECOVERYXLOG"; done
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
show() {
  printf '%s round %s: old %.2f s (%.1f ms/segment), new %.2f s (%.1f ms/segment)\n' \
    "$1" "$2" "$3" "$(echo "$3 * 1000 / $n" | bc -l)" "$4" "$(echo "$4 * 1000 / $n" | bc -l)"
}
echo "segments: $n"
for r in $(seq 1 "$ROUNDS"); do
  show alone "$r" "$(round "$OLD")" "$(round "$NEW")"
  show served "$r" "$(round "$OLD" --socket "$W/old.sock")" "$(round "$NEW" --socket "$W/new.sock")"
done
