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

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

# ---------------------------------------------------------------- repositories
write_lifeboat_config
export RESTIC_PASSWORD
RESTIC_PASSWORD=$(cat "$WORK/password")
export RESTIC_CACHE_DIR=$WORK/restic-cache RESTIC_REPOSITORY=$WORK/restic-repo
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

# ---------------------------------------------------------------- drills
# overhead = the drill's wall time minus its own restore (the fetch, and the span of
# pg_restore and the index builds in its report), as a share of that restore: what proving
# it costs.
# Also against a plain `lifeboat restore --no-verify` of the same backup into this cluster,
# which restores slower than the drill's bulk-load-tuned throw-away cluster (a diagnostic).
drill_of() { # $1 = label, $2 = config, $3 = database
  local t0
  checkpoint
  t0=$(now)
  "$LIFEBOAT" --config "$2" restore --latest --to-database plain_restore --no-verify >/dev/null || die "lifeboat restore --no-verify ($1)"
  put "t_drill_restore_$1" "$(elapsed "$t0")"
  DB=postgres q "DROP DATABASE plain_restore"
  checkpoint
  t0=$(now)
  "$LIFEBOAT" --config "$2" --json drill >"$WORK/lb-drill-$1.json" || die "lifeboat drill ($1)"
  put "t_drill_$1" "$(elapsed "$t0")"
  put "drill_overhead_$1" "$(awk -v a="${R[t_drill_$1]}" -v b="${R[t_drill_restore_$1]}" 'BEGIN { printf "%.2f", a - b }')"
  # the fetch (beside the cluster's start) plus the span of pg_restore and the index builds
  put "t_drill_own_restore_$1" "$(jq '([.phases[] | select(.name == "fetch") | .secs] | add)
    + ([.phases[] | select(.name == "restore" or .name == "indexes")]
       | (map(.start_secs + .secs) | max) - (map(.start_secs) | min))
    | . * 100 | round / 100' "$WORK/lb-drill-$1.json")"
  put "drill_own_overhead_$1" "$(awk -v a="${R[t_drill_$1]}" -v b="${R[t_drill_own_restore_$1]}" 'BEGIN { printf "%.2f", a - b }')"
  put "drill_ok_$1" "$(jq '.passed' "$WORK/lb-drill-$1.json")"
  cp "$WORK/lb-drill-$1.json" "$OUTDIR/lifeboat-drill-$1.json"
  log "  drill $1: ${R[t_drill_$1]} s; its own restore ${R[t_drill_own_restore_$1]} s (overhead ${R[drill_own_overhead_$1]} s); plain restore ${R[t_drill_restore_$1]} s (overhead ${R[drill_overhead_$1]} s)"
}
checkpoint
log "drill of the latest logical backup (the benchmark database)"
drill_of big "$CFG"
log "drill of a small database"
DB=postgres q "CREATE DATABASE small"
DB=small q "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS label FROM generate_series(1, 20000) g" >/dev/null
sed 's/dbname=bench/dbname=small/; s/^name = "bench"/name = "small"/' "$CFG" >"$WORK/small.toml"
"$LIFEBOAT" --config "$WORK/small.toml" backup --kind logical >/dev/null || die "lifeboat backup (small)"
drill_of small "$WORK/small.toml"
DB=postgres q "DROP DATABASE small"
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

scattered_change
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
