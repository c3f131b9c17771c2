#!/usr/bin/env bash
# Drills of a database with many small tables (a schema per tenant): how long the checks
# take when every table is a few rows. Compares two lifeboat binaries, alternating.
#
#   LIFEBOAT_BIN=new LIFEBOAT_OLD_BIN=old bench/many-tables.sh   # ~2 min here
#
# BENCH_SCHEMAS (default 150) schemas of 15 tables with 3 rows and a serial each, on a
# private cluster (port BENCH_PORT, default 56400) in BENCH_WORK (default
# /var/tmp/lifeboat-bench-tables, kept between runs; delete it to start over). As root the
# server runs as `postgres`. Prints wall time and the checks phase of each drill.
set -euo pipefail

W=${BENCH_WORK:-/var/tmp/lifeboat-bench-tables}
NEW=${LIFEBOAT_BIN:?set LIFEBOAT_BIN to the lifeboat binary to measure}
OLD=${LIFEBOAT_OLD_BIN:-}
PORT=${BENCH_PORT:-56400}
SCHEMAS=${BENCH_SCHEMAS:-150}
PG=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
for tool in jq bc psql; do
  command -v $tool >/dev/null || { echo "bench: $tool is missing (apt-get install jq bc postgresql-client)" >&2; exit 1; }
done
export LIFEBOAT_STATE_DIR=$W/state LIFEBOAT_PASSWORD=bench-password
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$W" && chmod 755 "$W"
if [ ! -d "$W/pg" ]; then
  mkdir -p "$W/pg" "$W/sock"
  [ "$(id -u)" = 0 ] && chown postgres: "$W/pg" "$W/sock"
  as_pg "$PG/initdb" -D "$W/pg/data" -U postgres --auth-local=trust -E UTF8 --locale=C >/dev/null 2>&1
fi
as_pg "$PG/pg_ctl" -D "$W/pg/data" -o "-p $PORT -k $W/sock -c listen_addresses=''" -l "$W/pg/log" -w start >/dev/null
trap 'as_pg "$PG/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null' EXIT
P="psql -X -q -h $W/sock -p $PORT -U postgres"
if ! $P -d postgres -Atc "select 1 from pg_database where datname = 'tenants'" | grep -q 1; then
  $P -d postgres -c "create database tenants"
  for s in $(seq 1 "$SCHEMAS"); do
    $P -d tenants -c "DO \$\$ BEGIN EXECUTE 'CREATE SCHEMA t$s'; FOR i IN 1..15 LOOP EXECUTE format('CREATE TABLE t$s.x%s (id serial primary key, v text)', i); EXECUTE format('INSERT INTO t$s.x%s (v) SELECT md5(g::text) FROM generate_series(1, 3) g', i); END LOOP; END \$\$"
  done
fi
cat > "$W/lifeboat.toml" <<CFG
[repository]
url = "$W/repo"

[[source]]
name = "tenants"
kind = "postgres"
dsn = "host=$W/sock port=$PORT user=postgres dbname=tenants"
CFG
if [ ! -d "$W/repo" ]; then
  "$NEW" --config "$W/lifeboat.toml" init >/dev/null
  "$NEW" --config "$W/lifeboat.toml" backup --kind logical >/dev/null
fi
for round in 1 2; do
  for b in OLD NEW; do
    bin=${!b}
    [ -n "$bin" ] || continue
    start=$(date +%s.%N)
    "$bin" --config "$W/lifeboat.toml" --json drill > "$W/drill-$b-$round.json"
    end=$(date +%s.%N)
    echo "$b round $round: wall $(echo "$end - $start" | bc) s, checks $(jq -r '.phases[] | select(.name == "checks") | .secs' "$W/drill-$b-$round.json") s, passed $(jq -r .passed "$W/drill-$b-$round.json")"
  done
done
