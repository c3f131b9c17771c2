#!/usr/bin/env bash
# lifeboat backup/restore benchmark, side by side with the usual alternatives, in one run.
#
#   bench/run.sh                      # full run: ~BENCH_SCALE MB of plain-text dump (default 1200)
#   BENCH_SCALE=100 bench/run.sh      # quick run (~100 MB)
#
# It starts its own PostgreSQL cluster (as the `postgres` OS user when run as root) on a
# private port and socket directory, with default durability settings (only
# shared_buffers is raised), fills it with a generated application-like dataset
# (bench/schema.sql), then measures:
#
#   backups (each BENCH_REPEAT times, round-robin, best wall time kept; fresh repositories):
#     bare `pg_dump -Fp > /dev/null`, `pg_dump -Fc` to a file, `pg_dump | zstd -3` to a file,
#     `pg_dump | restic backup --stdin`, `lifeboat backup --kind logical` (under /usr/bin/time -v)
#   restores: `pg_restore -j2` from the local -Fc file vs `lifeboat restore --jobs 2`
#   second backups after an append-only change (~1% new rows in every table) and third
#   backups after a scattered change (~1% of the rows of every table updated or deleted at
#   random): bytes added to the lifeboat and restic repositories (du -sb)
#
# and writes bench/results/latest.md (rendered by bench/report.sh from latest.tsv, the raw
# numbers).
#
# Environment:
#   BENCH_SCALE    approximate size of the plain-text dump in MB (default 1200)
#   BENCH_REPEAT   repetitions of each first backup (default 2)
#   BENCH_LB_REPEAT  repetitions of the first lifeboat backup (default BENCH_REPEAT; run in
#                  the last rounds)
#   BENCH_PORT     port of the benchmark cluster (default 55432)
#   BENCH_WORK     scratch directory, deleted at the end (default /var/tmp/lifeboat-bench)
#   BENCH_OUT      results directory (default bench/results)
#   BENCH_DIAG     1 (default) also measures diagnostics: pg_dump -Fc -Z0 and pg_restore -j2
#                  from a streamed (offset-less) -Fc -Z0 file
#   BENCH_BUILD    1 (default) builds lifeboat first with cargo build --release -p lifeboat
#   LIFEBOAT_BIN   lifeboat binary (default target/release/lifeboat)
#   BENCH_LB_SOURCE  where that binary was built from, for the report (default: git describe)
#   PG_BIN         PostgreSQL bin directory (default: newest /usr/lib/postgresql/*/bin)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SCALE=${BENCH_SCALE:-1200}
REPEAT=${BENCH_REPEAT:-2}
LB_REPEAT=${BENCH_LB_REPEAT:-$REPEAT}
PORT=${BENCH_PORT:-55432}
WORK=${BENCH_WORK:-/var/tmp/lifeboat-bench}
OUTDIR=${BENCH_OUT:-$HERE/results}
DIAG=${BENCH_DIAG:-1}
LIFEBOAT=${LIFEBOAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeboat}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || { echo "bench: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need=()
command -v restic >/dev/null || need+=(restic)
[ -x /usr/bin/time ] || need+=(time)
command -v zstd >/dev/null || need+=(zstd)
command -v jq >/dev/null || need+=(jq)
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
STARTED=1
as_pg "$PG_BIN/pg_ctl" start -w -t 120 -D "$PGDATA_DIR" -l "$WORK/pg/server.log" \
  -o "-p $PORT -k $SOCK -c listen_addresses='' -c shared_buffers=512MB -c max_wal_size=4GB" >/dev/null \
  || { tail -20 "$WORK/pg/server.log" >&2; die "pg_ctl start"; }

export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres
unset PGDATABASE PGPASSWORD PGSERVICE
psql_() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
q() { "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 -d "${DB:-bench}" -c "$1"; }

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
declare -A R   # results: key -> value
TSV=$OUTDIR/latest.tsv
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

# ---------------------------------------------------------------- repositories
umask 077
echo "bench-$RANDOM-$RANDOM" >"$WORK/password"
export RESTIC_PASSWORD
RESTIC_PASSWORD=$(cat "$WORK/password")
export RESTIC_CACHE_DIR=$WORK/restic-cache RESTIC_REPOSITORY=$WORK/restic-repo
LB_REPO=$WORK/lifeboat-repo
CFG=$WORK/lifeboat.toml
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
umask 022
lb() { "$LIFEBOAT" --config "$CFG" "$@"; }
fresh_repos() { # $1 = 1 for a new lifeboat repository too
  rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
  restic init -q >/dev/null || die "restic init"
  if [ "$1" = 1 ]; then
    rm -rf "$LB_REPO"
    lb --json init >"$WORK/lb-init.json" || die "lifeboat init"
  fi
}

# ---------------------------------------------------------------- first backups
PGD="$PG_BIN/pg_dump"
m_bare() { "$PGD" -d bench -Fp >/dev/null; }
m_fc() { "$PGD" -d bench -Fc -f "$WORK/dumps/bench.fc"; }
m_zstd() { "$PGD" -d bench | zstd -q -3 -T1 -o "$WORK/dumps/bench.sql.zst" -f; }
m_restic() { "$PGD" -d bench | restic backup -q --stdin --stdin-filename bench.sql >/dev/null; }
m_lifeboat() {
  /usr/bin/time -v -o "$WORK/lb-time.txt" "$LIFEBOAT" --config "$CFG" --json backup --source bench --kind logical >"$WORK/lb-backup.json"
}
m_fcz0() { "$PGD" -d bench -Fc -Z0 >/dev/null; }

log "warm-up: pg_dump -Fp | wc -c"
put plain_bytes "$("$PGD" -d bench -Fp | wc -c)"
log "plain dump: $(mib "${R[plain_bytes]}") MiB"

put load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= REPEAT; r++)); do
  methods=(bare fc zstd restic)
  with_lb=0
  if ((r > REPEAT - LB_REPEAT)); then methods+=(lifeboat); with_lb=1; fi
  [ "$DIAG" = 1 ] && methods+=(fcz0)
  fresh_repos $with_lb
  for m in "${methods[@]}"; do
    checkpoint
    log "round $r/$REPEAT: $m"
    t0=$(now)
    "m_$m" || die "backup method $m"
    cur=$(elapsed "$t0")
    put_min "t_$m" "$cur"
    log "  ${m}: $cur s (best so far ${R[t_$m]} s)"
    if [ "$m" = lifeboat ]; then
      rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/lb-time.txt")
      put_min rss_neg "-$rss" # the maximum over the repetitions
    fi
  done
done
put rss_kib "${R[rss_neg]#-}"
put lb_user "$(awk -F': ' '/User time/ { print $2 }' "$WORK/lb-time.txt")"
put lb_sys "$(awk -F': ' '/System time/ { print $2 }' "$WORK/lb-time.txt")"
put lb_cs "$(awk -F': ' '/Voluntary context switches/ { v = $2 } /Involuntary context switches/ { i = $2 } END { print v + i }' "$WORK/lb-time.txt")"
cp "$WORK/lb-time.txt" "$OUTDIR/lifeboat-backup-1.time.txt"
put fc_bytes "$(size_of "$WORK/dumps/bench.fc")"
put zstd_bytes "$(size_of "$WORK/dumps/bench.sql.zst")"
put restic_1 "$(size_of "$RESTIC_REPOSITORY")"
put lb_1 "$(size_of "$LB_REPO")"
put lb_stream_bytes "$(jq '.backups[0].logical_bytes' "$WORK/lb-backup.json")"
put lb_rows "$(jq '.backups[0].rows' "$WORK/lb-backup.json")"
cp "$WORK/lb-backup.json" "$OUTDIR/lifeboat-backup-1.json"

# ---------------------------------------------------------------- restores
restore_pg() {
  DB=postgres q "CREATE DATABASE restored_pg TEMPLATE template0"
  "$PG_BIN/pg_restore" -j2 --exit-on-error -d restored_pg "$1"
}
drop_db() { DB=postgres q "DROP DATABASE IF EXISTS $1"; checkpoint; }
checkpoint
log "restore: pg_restore -j2 from the -Fc file"
t0=$(now); restore_pg "$WORK/dumps/bench.fc" || die "pg_restore"; put t_pg_restore "$(elapsed "$t0")"
log "  ${R[t_pg_restore]} s"
drop_db restored_pg
log "restore: lifeboat restore --jobs 2 (with its default verification)"
t0=$(now)
lb --json restore --latest --source bench --to-database restored --jobs 2 >"$WORK/lb-restore.json" || die "lifeboat restore"
put t_lb_restore "$(elapsed "$t0")"
put t_lb_restore_fetch "$(jq '.fetch_secs' "$WORK/lb-restore.json")"
put t_lb_restore_pg "$(jq '.restore_secs' "$WORK/lb-restore.json")"
put t_lb_restore_verify "$(jq '.comparison.duration_secs' "$WORK/lb-restore.json")"
put lb_restore_ok "$(jq '[.comparison.tables[].ok] | all' "$WORK/lb-restore.json")"
cp "$WORK/lb-restore.json" "$OUTDIR/lifeboat-restore.json"
log "  ${R[t_lb_restore]} s (fetch ${R[t_lb_restore_fetch]} s, pg_restore ${R[t_lb_restore_pg]} s, verification ${R[t_lb_restore_verify]} s)"
drop_db restored
if [ "$DIAG" = 1 ]; then
  log "diagnostic: lifeboat restore --jobs 2 --no-verify"
  t0=$(now)
  lb --json restore --latest --source bench --to-database restored --jobs 2 --no-verify >"$WORK/lb-restore-nv.json" || die "lifeboat restore --no-verify"
  put t_lb_restore_nv "$(elapsed "$t0")"
  log "  ${R[t_lb_restore_nv]} s"
  drop_db restored
  log "diagnostic: pg_restore -j2 from a streamed (offset-less) pg_dump -Fc -Z0 file"
  "$PGD" -d bench -Fc -Z0 | cat >"$WORK/dumps/bench.piped.fcz0"
  checkpoint
  t0=$(now); restore_pg "$WORK/dumps/bench.piped.fcz0" || die "pg_restore (piped)"; put t_pg_restore_piped "$(elapsed "$t0")"
  log "  ${R[t_pg_restore_piped]} s"
  drop_db restored_pg
  rm -f "$WORK/dumps/bench.piped.fcz0"
fi

# ---------------------------------------------------------------- second and third backups
second() { # $1 = label
  local before_lb before_rs t0
  checkpoint
  before_lb=$(size_of "$LB_REPO"); before_rs=$(size_of "$RESTIC_REPOSITORY")
  t0=$(now)
  lb --json backup --source bench --kind logical >"$WORK/lb-backup-$1.json" || die "lifeboat backup ($1)"
  put "t_lb_$1" "$(elapsed "$t0")"
  put "lb_add_$1" $(($(size_of "$LB_REPO") - before_lb))
  put "lb_stored_$1" "$(jq '.backups[0].stored_bytes' "$WORK/lb-backup-$1.json")"
  checkpoint
  t0=$(now)
  m_restic || die "restic backup ($1)"
  put "t_restic_$1" "$(elapsed "$t0")"
  put "restic_add_$1" $(($(size_of "$RESTIC_REPOSITORY") - before_rs))
  cp "$WORK/lb-backup-$1.json" "$OUTDIR/lifeboat-backup-$1.json"
  log "  $1: lifeboat +$(mib "${R[lb_add_$1]}") MiB in ${R[t_lb_$1]} s, restic +$(mib "${R[restic_add_$1]}") MiB in ${R[t_restic_$1]} s"
}

log "append-only change: ~1% new rows in every table"
a_acc=$((NACC / 100 + 1)); a_prod=$((NPROD / 100 + 1)); a_ord=$((NORD / 100 + 1))
a_ev=$((NEV / 100 + 1)); a_msg=$((NMSG / 100 + 1)); a_att=$((NATT / 100 + 1))
psql_ -d bench >/dev/null <<SQL
SELECT setseed(0.33);
SELECT benchgen.fill_accounts($NACC + 1, $NACC + $a_acc);
SELECT benchgen.fill_products($NPROD + 1, $NPROD + $a_prod);
SELECT benchgen.fill_orders($NORD + 1, $NORD + $a_ord, $NACC + $a_acc, $NPROD + $a_prod);
SELECT benchgen.fill_events($NEV + 1, $NEV + $a_ev, $NACC + $a_acc);
SELECT benchgen.fill_messages($NMSG + 1, $NMSG + $a_msg, $NACC + $a_acc, $NORD + $a_ord);
SELECT benchgen.fill_attachments($NATT + 1, $NATT + $a_att, $NMSG + $a_msg);
VACUUM ANALYZE;
SQL
second append

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
second scattered

# ---------------------------------------------------------------- report
put load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
put date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put scale "$SCALE"; put repeat "$REPEAT"; put lb_repeat "$LB_REPEAT"; put diag "$DIAG"
put nproc "$(nproc)"
put cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
put mem "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
put kernel "$(uname -sr)"
put v_lb "$("$LIFEBOAT" --version | awk '{ print $2 }')"
put lb_build "binary sha256 $(sha256sum "$LIFEBOAT" | cut -c1-12), built $(date -u -r "$LIFEBOAT" '+%Y-%m-%d %H:%M UTC'); ${BENCH_LB_SOURCE:-tree $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')}"
put v_pg "$(q "SHOW server_version")"
put v_dump "$("$PGD" --version | awk '{ print $3 }')"
put v_restic "$(restic version | awk '{ print $2 }')"
put v_zstd "$(zstd --version | sed -n 's/.*v\([0-9.]*\).*/\1/p')"
while IFS='|' read -r t n b; do put "table.$t" "$n|$(mib "$b")"; done <"$WORK/tables.txt"
# the reported values (minimums of the repetitions included) after the individual runs
for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort >>"$TSV.tmp"
mv "$TSV.tmp" "$TSV"
"$HERE/report.sh" "$TSV" >"$OUTDIR/latest.md"
log "results: $OUTDIR/latest.md"
cat "$OUTDIR/latest.md"
