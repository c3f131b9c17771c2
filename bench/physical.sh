#!/usr/bin/env bash
# Physical backup, WAL archiving and PITR benchmark: lifeboat side by side with pgBackRest
# (Debian package; local repository, zstd level 3, process-max 2) on the same cluster, in
# one run.
#
#   bench/physical.sh                    # ~BENCH_SCALE MB dataset (default 1200, a ~1.5 GB cluster)
#   BENCH_SCALE=100 bench/physical.sh    # quick run
#
# Measures: pg_basebackup -Ft (uncompressed, the floor), lifeboat vs pgBackRest full backup
# (time, repository size), a second full backup vs pgBackRest's incremental after a
# scattered ~1% change (bytes added), restore without WAL replay, wal-push latency per
# 16 MiB segment (through `lifeboat wal serve` and alone), sustained WAL ingest under
# pgbench (archiver backlog), and PITR replay through wal-fetch vs from a local directory
# of plain segments. Writes bench/results/physical.md (and physical.tsv, the raw numbers).
#
# Environment: BENCH_SCALE, BENCH_PORT (default 55433), BENCH_WORK (default
# /var/tmp/lifeboat-bench-physical), BENCH_OUT, BENCH_BUILD, LIFEBOAT_BIN, PG_BIN as in
# bench/run.sh; BENCH_REPEAT (default 2: best of two first full backups each);
# BENCH_PGBENCH_SECS (default 60) for the ingest phase.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SCALE=${BENCH_SCALE:-1200}
PORT=${BENCH_PORT:-55433}
WORK=${BENCH_WORK:-/var/tmp/lifeboat-bench-physical}
OUTDIR=${BENCH_OUT:-$HERE/results}
LIFEBOAT=${LIFEBOAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeboat}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PGBENCH_SECS=${BENCH_PGBENCH_SECS:-60}
REPEAT=${BENCH_REPEAT:-2}
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || { echo "bench: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
BENCH_EXTRA_TOOLS="pgbackrest"
BENCH_NAME=physical
# archiving on from the start; the real archive_command is set once the repositories exist
BENCH_PG_OPTS="-c archive_mode=on -c wal_level=replica"
BENCH_PG_CONF="archive_command = '/bin/true'"

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

# everything below runs as the PostgreSQL user: its archiver writes both repositories; a
# copy of the binary it can run (root's cargo target directory is closed to it)
if [ -n "$PGUSER_OS" ]; then
  install -m 755 "$LIFEBOAT" "$WORK/lifeboat" && LIFEBOAT=$WORK/lifeboat
  chown -R "$PGUSER_OS:" "$WORK"
fi
write_lifeboat_config
PGBR_REPO=$WORK/pgbackrest-repo
PGBR_CONF=$WORK/pgbackrest.conf
cat >"$PGBR_CONF" <<EOF
[global]
repo1-path=$PGBR_REPO
compress-type=zst
compress-level=3
process-max=2
start-fast=y
log-level-console=warn
log-level-file=off
lock-path=$WORK/pgbackrest-lock
spool-path=$WORK/pgbackrest-spool

[bench]
pg1-path=$PGDATA_DIR
pg1-port=$PORT
pg1-socket-path=$SOCK
pg1-user=postgres
EOF
mkdir -p "$WORK/plain-wal" "$WORK/restore"
[ -n "$PGUSER_OS" ] && chown -R "$PGUSER_OS:" "$WORK"
lb() { as_pg "$LIFEBOAT" --config "$CFG" "$@"; }
pgbr() { as_pg pgbackrest --config="$PGBR_CONF" --stanza=bench "$@"; }
SOCKET=$WORK/wal.sock

lb --json init >/dev/null || die "lifeboat init"
pgbr stanza-create >/dev/null || die "pgbackrest stanza-create"
log "starting lifeboat wal serve"
# started directly (not through the as_pg function, whose subshell would be what $! names)
if [ -n "$PGUSER_OS" ]; then
  runuser -u "$PGUSER_OS" -- "$LIFEBOAT" --config "$CFG" wal serve --socket "$SOCKET" 2>"$WORK/serve.log" &
else
  "$LIFEBOAT" --config "$CFG" wal serve --socket "$SOCKET" 2>"$WORK/serve.log" &
fi
SERVE_PID=$!
trap '_rc=$?; kill "$SERVE_PID" 2>/dev/null; (exit $_rc); cleanup' EXIT
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || die "wal serve did not start"
set_archive() {
  DB=postgres q "ALTER SYSTEM SET archive_command = '$1'" >/dev/null
  DB=postgres q "SELECT pg_reload_conf()" >/dev/null
  # the reload is asynchronous
  for _ in $(seq 50); do [ "$(DB=postgres q "SHOW archive_command")" = "$1" ] && return; sleep 0.1; done
  die "archive_command was not reloaded"
}
ARCH_LB="$LIFEBOAT --config $CFG wal-push --socket $SOCKET %p"
# the timed full backups go into a fresh repository each round ($WORK/fresh.toml, below),
# and a physical backup is refused unless the WAL it needs reached its own archive: push
# there too whenever that repository exists (directly, without a `wal serve`)
ARCH_FRESH="{ [ ! -f $WORK/fresh.toml ] || $LIFEBOAT --config $WORK/fresh.toml wal-push --socket $WORK/no-such.sock %p; }"
set_archive "$ARCH_LB && pgbackrest --config=$PGBR_CONF --stanza=bench archive-push %p && $ARCH_FRESH"
pgbr check >/dev/null || die "pgbackrest check (archiving)"

# ---------------------------------------------------------------- full backups
put cluster_bytes "$(size_of "$PGDATA_DIR")"
checkpoint
log "pg_basebackup -Ft (uncompressed, to a local directory)"
mkdir -p "$WORK/bb" && [ -n "$PGUSER_OS" ] && chown "$PGUSER_OS:" "$WORK/bb"
t0=$(now); as_pg "$PG_BIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -D "$WORK/bb" -Ft -X none -c fast || die pg_basebackup
put t_basebackup "$(elapsed "$t0")"; rm -rf "$WORK/bb"
log "  ${R[t_basebackup]} s"
checkpoint
# BENCH_REPEAT rounds (best wall time kept): lifeboat into a fresh repository each time (the
# main repository keeps the WAL archive and takes an untimed first backup below), pgBackRest
# full backups into its repository (a full always copies every file)
for ((r = 1; r <= REPEAT; r++)); do
  FRESH=$WORK/lb-fresh
  rm -rf "$FRESH" "$WORK/fresh.toml"
  sed "s|^url = .*|url = \"$FRESH\"|" "$CFG" >"$WORK/fresh.toml"
  [ -n "$PGUSER_OS" ] && chown "$PGUSER_OS:" "$WORK/fresh.toml"
  as_pg "$LIFEBOAT" --config "$WORK/fresh.toml" --json init >/dev/null || die "lifeboat init (fresh)"
  checkpoint
  log "round $r/$REPEAT: lifeboat backup --kind physical (fresh repository)"
  t0=$(now); as_pg "$LIFEBOAT" --config "$WORK/fresh.toml" --json backup --kind physical >"$WORK/lb-full.json" || die "lifeboat backup"
  put_min t_lb_full "$(elapsed "$t0")"
  ((r == 1)) && put lb_full_bytes "$(size_of "$FRESH")"
  log "  $(elapsed "$t0") s (best ${R[t_lb_full]} s), repository $(mib "${R[lb_full_bytes]}") MiB"
  checkpoint
  log "round $r/$REPEAT: pgbackrest backup --type=full"
  t0=$(now); pgbr backup --type=full >/dev/null || die "pgbackrest full"
  put_min t_pgbr_full "$(elapsed "$t0")"
  ((r == 1)) && put pgbr_full_bytes "$(size_of "$PGBR_REPO/backup")"
  log "  $(elapsed "$t0") s (best ${R[t_pgbr_full]} s), repository $(mib "${R[pgbr_full_bytes]}") MiB"
done
rm -rf "$WORK/lb-fresh" "$WORK/fresh.toml"
put lb_tar_bytes "$(jq '.backups[0].logical_bytes' "$WORK/lb-full.json")"
log "lifeboat backup --kind physical into the main repository (the base of the second full)"
lb --json backup --kind physical >/dev/null || die "lifeboat backup (main)"

# ---------------------------------------------------------------- after a scattered change
scattered_change
checkpoint
before=$(size_of "$LB_REPO")
t0=$(now); lb --json backup --kind physical >"$WORK/lb-second.json" || die "lifeboat second backup"
put t_lb_second "$(elapsed "$t0")"; put lb_second_add $(($(size_of "$LB_REPO") - before))
before=$(size_of "$PGBR_REPO/backup")
t0=$(now); pgbr backup --type=incr >/dev/null || die "pgbackrest incr"
put t_pgbr_incr "$(elapsed "$t0")"; put pgbr_incr_add $(($(size_of "$PGBR_REPO/backup") - before))
log "  second full: lifeboat +$(mib "${R[lb_second_add]}") MiB in ${R[t_lb_second]} s; pgBackRest incremental +$(mib "${R[pgbr_incr_add]}") MiB in ${R[t_pgbr_incr]} s"
SECOND=$(jq -r '.backups[0].id' "$WORK/lb-second.json")

# ---------------------------------------------------------------- restores (no WAL replay)
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
log "restore without replay: lifeboat"
t0=$(now); lb restore --kind physical "$SECOND" --target-immediate --to-dir "$WORK/restore/lb" >/dev/null || die "lifeboat restore"
put t_lb_restore "$(elapsed "$t0")"
rm -rf "$WORK/restore/lb"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
log "restore without replay: pgBackRest"
mkdir -p "$WORK/restore/pgbr" && chmod 700 "$WORK/restore/pgbr" && [ -n "$PGUSER_OS" ] && chown "$PGUSER_OS:" "$WORK/restore/pgbr"
t0=$(now); pgbr --pg1-path="$WORK/restore/pgbr" restore --type=immediate >/dev/null || die "pgbackrest restore"
put t_pgbr_restore "$(elapsed "$t0")"
rm -rf "$WORK/restore/pgbr"
log "  lifeboat ${R[t_lb_restore]} s, pgBackRest ${R[t_pgbr_restore]} s"

# ---------------------------------------------------------------- wal-push latency
log "pgbench tables (WAL for the latency, ingest and replay phases)"
set_archive "$ARCH_LB"
as_pg "$PG_BIN/pgbench" -h "$SOCK" -p "$PORT" -U postgres -i -q -s 20 bench >/dev/null 2>&1 || die "pgbench -i"
DB=bench q "SELECT pg_switch_wal()" >/dev/null
# real segments, renamed onto an unused timeline so they do not touch the real archive
mkdir -p "$WORK/lat" && [ -n "$PGUSER_OS" ] && chown "$PGUSER_OS:" "$WORK/lat"
n=0
for f in $(ls "$PGDATA_DIR/pg_wal" | grep -E '^[0-9A-F]{24}$' | head -30); do
  cp "$PGDATA_DIR/pg_wal/$f" "$WORK/lat/00000077${f:8}"; n=$((n + 1))
done
[ -n "$PGUSER_OS" ] && chown -R "$PGUSER_OS:" "$WORK/lat"
# PostgreSQL fsyncs a segment before it asks for it to be archived: the copies must be on
# disk too, or the kernel writes their 480 MiB back while (and in front of) the pushes' fsyncs
sync
lat() { # $1 = label, $2 = socket; timed inside one shell of the PostgreSQL user
  local label=$1
  # shellcheck disable=SC2016
  as_pg bash -c 'for f in "$1"/lat/00000077*; do
      t0=$(date +%s%N); "$2" --config "$3" wal-push --socket "$4" "$f" 2>/dev/null || exit 1
      t1=$(date +%s%N); echo $(((t1 - t0) / 1000)); done' _ "$WORK" "$LIFEBOAT" "$CFG" "$2" >"$WORK/lat-$label.txt" \
    || die "wal-push ($label)"
  sort -n "$WORK/lat-$label.txt" -o "$WORK/lat-$label.txt"
  put "lat_${label}_p50_ms" "$(awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1000 }' "$WORK/lat-$label.txt")"
  put "lat_${label}_p99_ms" "$(awk '{ a[NR] = $1 } END { i = int(NR * 0.99 + 0.999); printf "%.1f", a[i] / 1000 }' "$WORK/lat-$label.txt")"
}
checkpoint # background writeback from pgbench -i would otherwise sit in front of every fsync
# the cluster archives pgbench -i's WAL through the same server: time the pushes once that
# backlog is drained, or they measure the contention with it (and with the pushes ahead it
# starts), not a push
n_ready=$(ls "$PGDATA_DIR/pg_wal/archive_status" | grep -c '\.ready$' || true)
t0=$(now)
for _ in $(seq 600); do
  [ "$(ls "$PGDATA_DIR/pg_wal/archive_status" | grep -c '\.ready$' || true)" = 0 ] && break
  sleep 0.2
done
put lat_backlog_before "$n_ready"
put lat_backlog_wait "$(elapsed "$t0")"
log "  archiver backlog before timing wal-push: $n_ready segments, drained in ${R[lat_backlog_wait]} s"
lat served "$SOCKET"
as_pg rm -rf "$LB_REPO/lifeboat-wal/bench/00000077"
lat alone "$WORK/no-server.sock"
put lat_segments "$n"
log "  wal-push per segment ($n segments): served p50 ${R[lat_served_p50_ms]} ms p99 ${R[lat_served_p99_ms]} ms; alone p50 ${R[lat_alone_p50_ms]} ms"
as_pg rm -rf "$LB_REPO/lifeboat-wal/bench/00000077"

# ---------------------------------------------------------------- sustained ingest
log "pgbench for $PGBENCH_SECS s at full speed (synchronous_commit off) with archive_command = lifeboat wal-push (served)"
DB=bench q "SELECT pg_stat_reset_shared('archiver')" >/dev/null
lsn0=$(DB=bench q "SELECT pg_current_wal_lsn()")
max_ready=0
PGOPTIONS='-c synchronous_commit=off' as_pg "$PG_BIN/pgbench" -h "$SOCK" -p "$PORT" -U postgres -c 2 -j 2 -T "$PGBENCH_SECS" bench >"$WORK/pgbench.txt" 2>&1 &
PGB=$!
while kill -0 $PGB 2>/dev/null; do
  ready=$(ls "$PGDATA_DIR/pg_wal/archive_status" | grep -c '\.ready$' || true)
  echo "$(date +%s) $ready" >>"$WORK/backlog.txt"
  ((ready > max_ready)) && max_ready=$ready
  sleep 2
done
wait $PGB || die pgbench
lsn1=$(DB=bench q "SELECT pg_current_wal_lsn()")
put ingest_wal_bytes "$(DB=bench q "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")"
put ingest_tps "$(awk '/^tps/ { print int($3); exit }' "$WORK/pgbench.txt")"
put ingest_max_ready "$max_ready"
put ingest_end_ready "$(ls "$PGDATA_DIR/pg_wal/archive_status" | grep -c '\.ready$' || true)"
put ingest_archived "$(DB=bench q "SELECT archived_count FROM pg_stat_archiver")"
put ingest_failed "$(DB=bench q "SELECT failed_count FROM pg_stat_archiver")"
log "  $(mib "${R[ingest_wal_bytes]}") MiB of WAL at ${R[ingest_tps]} tps; backlog max ${R[ingest_max_ready]} segments, at the end ${R[ingest_end_ready]}"
log "WAL burst: one bulk insert as fast as the server writes, archive_command = lifeboat wal-push (served)"
ready() { ls "$PGDATA_DIR/pg_wal/archive_status" | grep -c '\.ready$' || true; }
lsn0=$(DB=bench q "SELECT pg_current_wal_lsn()")
t0=$(now)
DB=bench q "CREATE TABLE burst AS SELECT g, repeat(md5(g::text), 4) AS t FROM generate_series(1, 3000000) g" >/dev/null &
BURST=$!
max_ready=0
while kill -0 $BURST 2>/dev/null; do
  r=$(ready); ((r > max_ready)) && max_ready=$r
  sleep 0.5
done
wait $BURST || die "burst insert"
put burst_secs "$(elapsed "$t0")"
lsn1=$(DB=bench q "SELECT pg_current_wal_lsn()")
put burst_wal_bytes "$(DB=bench q "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")"
t1=$(now)
until [ "$(ready)" = 0 ]; do
  r=$(ready); ((r > max_ready)) && max_ready=$r
  sleep 0.2
done
put burst_drain_secs "$(elapsed "$t1")"
put burst_max_ready "$max_ready"
log "  $(mib "${R[burst_wal_bytes]}") MiB of WAL in ${R[burst_secs]} s; backlog at most ${R[burst_max_ready]} segments, drained ${R[burst_drain_secs]} s after the insert"
DB=bench q "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 300); do
  [ "$(ls "$PGDATA_DIR/pg_wal/archive_status" | grep -c '\.ready$' || true)" = 0 ] && break; sleep 1
done
END_LSN=$(DB=bench q "SELECT pg_current_wal_lsn()")

# ---------------------------------------------------------------- PITR replay
wait_promoted() { # $1 = data dir, $2 = port
  until [ "$("$PG_BIN/psql" -X -qAt -h "$WORK/restore" -p "$2" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
    as_pg "$PG_BIN/pg_ctl" status -D "$1" >/dev/null 2>&1 || die "the restored server stopped: $(tail -3 "$1/recovery.log")"
    sleep 0.25
  done
}
stop_restored() { as_pg "$PG_BIN/pg_ctl" stop -m immediate -D "$1" >/dev/null 2>&1 || true; rm -rf "$1"; }
log "PITR to the end of the archive through wal-fetch (served)"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
LIFEBOAT_WAL_SOCKET=$SOCKET lb --json restore --kind physical "$SECOND" --to-dir "$WORK/restore/pitr" --socket-dir "$WORK/restore" --port $((PORT + 1)) \
  --start >"$WORK/lb-pitr.json" 2>"$WORK/lb-pitr.err" || die "lifeboat PITR: $(cat "$WORK/lb-pitr.err")"
put t_pitr_lb "$(jq '.replay_secs * 100 | round / 100' "$WORK/lb-pitr.json")"
put t_pitr_lb_fetch "$(jq '.fetch_secs * 100 | round / 100' "$WORK/lb-pitr.json")"
put pitr_wal_bytes "$(DB=bench q "SELECT pg_wal_lsn_diff('$END_LSN', '$(jq -r '.backup.physical.start_lsn' "$WORK/lb-pitr.json")')::bigint")"
stop_restored "$WORK/restore/pitr"
log "  replay ${R[t_pitr_lb]} s right after unpacking (the kernel still writing the base backup back)"
# the target compares fetching WAL, so both replays start alike: base backup unpacked and
# synced, page cache dropped, the server started by pg_ctl
log "PITR through wal-fetch (served), started like the plain one below"
lb restore --kind physical "$SECOND" --to-dir "$WORK/restore/pitr" --socket-dir "$WORK/restore" --port $((PORT + 1)) >/dev/null || die "lifeboat restore (pitr)"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
as_pg env LIFEBOAT_WAL_SOCKET="$SOCKET" "$PG_BIN/pg_ctl" start -D "$WORK/restore/pitr" -l "$WORK/restore/pitr/recovery.log" >/dev/null || die "start (pitr)"
wait_promoted "$WORK/restore/pitr" $((PORT + 1))
put t_pitr_lb_alike "$(elapsed "$t0")"
stop_restored "$WORK/restore/pitr"
log "  replay ${R[t_pitr_lb_alike]} s"
log "PITR from a local directory of plain segments (restore_command = cp)"
as_pg "$LIFEBOAT" --config "$CFG" --json wal status --source bench >"$WORK/wal-status.json" || true
first=$(jq -r '.timelines[] | select(.timeline == 1) | .first' "$WORK/wal-status.json")
last=$(jq -r '.timelines[] | select(.timeline == 1) | .last' "$WORK/wal-status.json")
for ((i = 16#${first:16:8} + 16#${first:8:8} * 256; i <= 16#${last:16:8} + 16#${last:8:8} * 256; i++)); do
  name=$(printf '00000001%08X%08X' $((i / 256)) $((i % 256)))
  as_pg "$LIFEBOAT" --config "$CFG" wal-fetch --socket "$SOCKET" "$name" "$WORK/plain-wal/$name" 2>/dev/null || true
done
lb restore --kind physical "$SECOND" --to-dir "$WORK/restore/plain" --socket-dir "$WORK/restore" --port $((PORT + 2)) >/dev/null || die "lifeboat restore (plain)"
sed -i "s|^restore_command = .*|restore_command = 'cp $WORK/plain-wal/%f %p'|" "$WORK/restore/plain/postgresql.auto.conf"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
as_pg "$PG_BIN/pg_ctl" start -D "$WORK/restore/plain" -l "$WORK/restore/plain/recovery.log" >/dev/null || die "start (plain)"
wait_promoted "$WORK/restore/plain" $((PORT + 2))
put t_pitr_plain "$(elapsed "$t0")"
stop_restored "$WORK/restore/plain"
log "  replay ${R[t_pitr_plain]} s"

# ---------------------------------------------------------------- report
put date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put scale "$SCALE"; put nproc "$(nproc)"
put v_pgbr "$(pgbackrest version | awk '{ print $2 }')"
put v_pg "$(DB=bench q "SHOW server_version")"
put lb_build "$(sha256sum "$LIFEBOAT" | cut -c1-12), $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort >>"$TSV.tmp"
mv "$TSV.tmp" "$TSV"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
pm() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { print (a <= l * b) ? "**pass**" : "**miss**" }'; }
{
  echo "# lifeboat physical backup / WAL / PITR benchmark"
  echo
  echo "One run of \`bench/physical.sh\` on ${R[date]}, BENCH_SCALE=$SCALE, first full backups best of $REPEAT, $(nproc) CPUs; PostgreSQL ${R[v_pg]}, pgBackRest ${R[v_pgbr]} (zstd 3, process-max 2, local repository, no encryption); lifeboat ${R[lb_build]} (encrypted repository)."
  echo "Cluster $(mib "${R[cluster_bytes]}") MiB; base backup tar $(mib "${R[lb_tar_bytes]}") MiB; \`pg_basebackup -Ft\` ${R[t_basebackup]} s."
  echo
  echo "| target | lifeboat | pgBackRest / baseline | ratio | limit | result |"
  echo "|---|---:|---:|---:|---:|---|"
  echo "| full backup wall time | ${R[t_lb_full]} s | ${R[t_pgbr_full]} s | $(ratio "${R[t_lb_full]}" "${R[t_pgbr_full]}")x | 1.0x | $(pm "${R[t_lb_full]}" "${R[t_pgbr_full]}" 1) |"
  echo "| repository after the full backup | $(mib "${R[lb_full_bytes]}") MiB | $(mib "${R[pgbr_full_bytes]}") MiB | $(ratio "${R[lb_full_bytes]}" "${R[pgbr_full_bytes]}")x | 1.05x | $(pm "${R[lb_full_bytes]}" "${R[pgbr_full_bytes]}" 1.05) |"
  echo "| stored after a scattered 1% change (lifeboat: second full; pgBackRest: incremental) | $(mib "${R[lb_second_add]}") MiB | $(mib "${R[pgbr_incr_add]}") MiB | $(ratio "${R[lb_second_add]}" "${R[pgbr_incr_add]}")x | 0.6x | $(pm "${R[lb_second_add]}" "${R[pgbr_incr_add]}" 0.6) |"
  echo "| restore without WAL replay | ${R[t_lb_restore]} s | ${R[t_pgbr_restore]} s | $(ratio "${R[t_lb_restore]}" "${R[t_pgbr_restore]}")x | 1.2x | $(pm "${R[t_lb_restore]}" "${R[t_pgbr_restore]}" 1.2) |"
  echo "| wal-push median per 16 MiB segment (served) | ${R[lat_served_p50_ms]} ms | 50 ms | | | $(pm "${R[lat_served_p50_ms]}" 50 1) |"
  echo "| PITR replay through wal-fetch vs plain local segments (both started alike) | ${R[t_pitr_lb_alike]} s | ${R[t_pitr_plain]} s | $(ratio "${R[t_pitr_lb_alike]}" "${R[t_pitr_plain]}")x | 1.2x | $(pm "${R[t_pitr_lb_alike]}" "${R[t_pitr_plain]}" 1.2) |"
  echo
  echo "- wal-push p99 (served): ${R[lat_served_p99_ms]} ms; without a server (opens the repository per call): p50 ${R[lat_alone_p50_ms]} ms, p99 ${R[lat_alone_p99_ms]} ms (${R[lat_segments]} real pgbench segments), timed after the cluster's own archiver had drained its backlog (${R[lat_backlog_before]:-?} segments, ${R[lat_backlog_wait]:-?} s)."
  echo "- sustained ingest: pgbench -c 2 -j 2 (synchronous_commit off) for ${PGBENCH_SECS} s at ${R[ingest_tps]} tps wrote $(mib "${R[ingest_wal_bytes]}") MiB of WAL; ${R[ingest_archived]} segments archived, ${R[ingest_failed]} failures; archiver backlog (\`.ready\` files) at most ${R[ingest_max_ready]}, ${R[ingest_end_ready]} when pgbench stopped."
  echo "- WAL burst: a bulk insert wrote $(mib "${R[burst_wal_bytes]}") MiB of WAL in ${R[burst_secs]} s ($(awk -v b="${R[burst_wal_bytes]}" -v s="${R[burst_secs]}" 'BEGIN { printf "%.0f", b / 1048576 / s }') MiB/s); the archiver's backlog peaked at ${R[burst_max_ready]} segments and was empty ${R[burst_drain_secs]} s after the insert ended.
- PITR: $(mib "${R[pitr_wal_bytes]}") MiB of WAL replayed. End to end with \`lifeboat restore --start\`: unpacking the base backup took ${R[t_pitr_lb_fetch]} s, then the replay ${R[t_pitr_lb]} s ($(ratio "${R[t_pitr_lb]}" "${R[t_pitr_plain]}")x of the plain one, while the kernel was still writing the unpacked base backup back); the target row starts both replays from a synced base backup and an empty page cache."
  echo "- second full backup ${R[t_lb_second]} s; pgBackRest incremental ${R[t_pgbr_incr]} s."
} >"$OUTDIR/physical.md"
log "results: $OUTDIR/physical.md"
cat "$OUTDIR/physical.md"
