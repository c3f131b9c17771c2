# Shared by bench/run.sh and bench/physical.sh (sourced, not run): tools, the benchmark
# cluster (stopped and removed on exit), result helpers and the generated dataset.
# Expects HERE, ROOT, SCALE, PORT, WORK, OUTDIR, LIFEBOAT and PG_BIN to be set, and
# optionally BENCH_EXTRA_TOOLS (Debian packages), BENCH_PG_OPTS (postgres -c options, which
# ALTER SYSTEM cannot override) and BENCH_PG_CONF (lines for postgresql.conf, which it can).

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need=()
command -v restic >/dev/null || need+=(restic)
[ -x /usr/bin/time ] || need+=(time)
command -v zstd >/dev/null || need+=(zstd)
command -v jq >/dev/null || need+=(jq)
for p in ${BENCH_EXTRA_TOOLS:-}; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  log "building lifeboat (cargo build --release -p lifeboat)"
  (cd "$ROOT" && cargo build --release -q -p lifeboat)
fi
[ -x "$LIFEBOAT" ] || die "no lifeboat binary at $LIFEBOAT"

# ---------------------------------------------------------------- cluster
PGUSER_OS=""
[ "$(id -u)" = 0 ] && PGUSER_OS=${LIFEBOAT_PG_USER:-postgres}
as_pg() { if [ -n "$PGUSER_OS" ]; then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi; }

PGDATA_DIR=$WORK/pg/data
SOCK=$WORK/pg
STARTED=0
cleanup() {
  local rc=$?
  if [ "$STARTED" = 1 ]; then
    log "stopping the benchmark cluster"
    as_pg "$PG_BIN/pg_ctl" stop -m fast -w -D "$PGDATA_DIR" >/dev/null 2>&1 || true
  fi
  if [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a cluster left running by an interrupted earlier run of this script
if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
  as_pg "$PG_BIN/pg_ctl" stop -m fast -w -D "$PGDATA_DIR" >/dev/null 2>&1 || true
fi
rm -rf "$WORK"
mkdir -p "$WORK/pg" "$WORK/dumps" "$OUTDIR"
[ -n "$PGUSER_OS" ] && chown "$PGUSER_OS:" "$WORK/pg"

log "initdb + start PostgreSQL on port $PORT (socket $SOCK)"
as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die initdb; }
[ -n "${BENCH_PG_CONF:-}" ] && printf '%s\n' "$BENCH_PG_CONF" >>"$PGDATA_DIR/postgresql.conf"
STARTED=1
as_pg "$PG_BIN/pg_ctl" start -w -t 120 -D "$PGDATA_DIR" -l "$WORK/pg/server.log" \
  -o "-p $PORT -k $SOCK -c listen_addresses='' -c shared_buffers=512MB -c max_wal_size=4GB ${BENCH_PG_OPTS:-}" >/dev/null \
  || { tail -20 "$WORK/pg/server.log" >&2; die "pg_ctl start"; }

export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres
unset PGDATABASE PGPASSWORD PGSERVICE
psql_() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
q() { "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 -d "${DB:-bench}" -c "$1"; }

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
declare -A R   # results: key -> value
TSV=$OUTDIR/${BENCH_NAME:-latest}.tsv
: >"$TSV.tmp"
put() { R[$1]=$2; }
# keeps the minimum of the values put under a key
put_min() {
  if [ -z "${R[$1]:-}" ] || awk -v a="$2" -v b="${R[$1]}" 'BEGIN { exit !(a < b) }'; then R[$1]=$2; fi
  printf '%s\t%s\n' "$1.run" "$2" >>"$TSV.tmp"
}
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }
size_of() { du -sb "$1" | cut -f1; }
checkpoint() { q "CHECKPOINT" >/dev/null; sync; }

# ---------------------------------------------------------------- dataset
# per MB of plain dump (tuned on PostgreSQL 15): see bench/schema.sql for the row shapes
n_of() { awk -v s="$SCALE" -v per="$1" -v min="$2" 'BEGIN { n = int(s * per); if (n < min) n = min; print n }'; }
NACC=$(n_of 310 100); NPROD=$(n_of 16 100); NORD=$(n_of 510 100)
NEV=$(n_of 1550 100); NMSG=$(n_of 350 100); NATT=$(n_of 5.4 10)

log "creating database bench (scale $SCALE MB: $NACC accounts, $NORD orders, $NEV events, $NMSG messages, $NATT attachments)"
DB=postgres q "CREATE DATABASE bench"
psql_ -d bench -f "$HERE/schema.sql" >/dev/null
t0=$(now)
# two sessions (the machine is assumed to have 2+ cores), each with its own seed
psql_ -d bench -c "SELECT setseed(0.11)" -c "SELECT benchgen.fill_events(1, $NEV, $NACC)" \
  -c "SELECT benchgen.fill_attachments(1, $NATT, $NMSG)" -c "SELECT benchgen.fill_products(1, $NPROD)" >/dev/null &
gen_a=$!
psql_ -d bench -c "SELECT setseed(0.22)" -c "SELECT benchgen.fill_messages(1, $NMSG, $NACC, $NORD)" \
  -c "SELECT benchgen.fill_orders(1, $NORD, $NACC, $NPROD)" -c "SELECT benchgen.fill_accounts(1, $NACC)" >/dev/null &
gen_b=$!
wait $gen_a || die "data generation (events/attachments/products)"
wait $gen_b || die "data generation (messages/orders/accounts)"
log "indexes, foreign keys, vacuum"
psql_ -d bench >/dev/null <<'SQL'
CREATE INDEX orders_account_idx ON app.orders (account_id, created_at);
CREATE INDEX events_account_idx ON app.events (account_id, occurred_at);
CREATE INDEX messages_account_idx ON app.messages (account_id);
CREATE INDEX order_items_product_idx ON app.order_items (product_id);
CREATE INDEX attachments_message_idx ON app.attachments (message_id);
ALTER TABLE app.orders ADD FOREIGN KEY (account_id) REFERENCES app.accounts (id);
ALTER TABLE app.order_items ADD FOREIGN KEY (order_id) REFERENCES app.orders (id) ON DELETE CASCADE;
ALTER TABLE app.order_items ADD FOREIGN KEY (product_id) REFERENCES app.products (id);
ALTER TABLE app.messages ADD FOREIGN KEY (account_id) REFERENCES app.accounts (id);
ALTER TABLE app.attachments ADD FOREIGN KEY (message_id) REFERENCES app.messages (id) ON DELETE CASCADE;
VACUUM (FREEZE, ANALYZE);
SQL
checkpoint
put gen_secs "$(elapsed "$t0")"
put db_bytes "$(q "SELECT pg_database_size('bench')")"
put bytea_bytes "$(q "SELECT sum(octet_length(data)) FROM app.attachments")"
q "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'app' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC" >"$WORK/tables.txt"
log "dataset ready in ${R[gen_secs]} s: database $(mib "${R[db_bytes]}") MiB"


# ~1% of the rows of every table updated or deleted, at random
scattered_change() {
  log "scattered change: ~1% of the rows of every table updated or deleted, at random"
  psql_ -d bench >/dev/null <<'SQL'
SELECT setseed(0.44);
UPDATE app.accounts SET balance = balance + 1, profile = profile || '{"edited": true}' WHERE random() < 0.01;
UPDATE app.products SET price = price + 0.5, stock = greatest(stock - 1, 0) WHERE random() < 0.01;
UPDATE app.orders SET status = 'returned', updated_at = updated_at + interval '3 days' WHERE random() < 0.007;
DELETE FROM app.orders WHERE random() < 0.003 AND id NOT IN (SELECT order_id FROM app.messages WHERE order_id IS NOT NULL);
UPDATE app.order_items SET qty = qty + 1 WHERE random() < 0.007;
DELETE FROM app.order_items WHERE random() < 0.003;
UPDATE app.events SET payload = payload || '{"late": true}' WHERE random() < 0.005;
DELETE FROM app.events WHERE random() < 0.005;
UPDATE app.messages SET body = body || ' (edited)' WHERE random() < 0.007;
DELETE FROM app.messages WHERE random() < 0.003;
DELETE FROM app.attachments WHERE random() < 0.01;
VACUUM ANALYZE;
SQL
}

# the benchmark's lifeboat config (source `bench`) and its repository password
LB_REPO=$WORK/lifeboat-repo
CFG=$WORK/lifeboat.toml
write_lifeboat_config() {
  umask 077
  echo "bench-$RANDOM-$RANDOM" >"$WORK/password"
  umask 022
  cat >"$CFG" <<EOF
[repository]
url = "$LB_REPO"
password_file = "$WORK/password"

[[source]]
name = "bench"
kind = "postgres"
dsn = "host=$SOCK port=$PORT user=postgres dbname=bench"
pg_bin_dir = "$PG_BIN"
EOF
}
