#!/usr/bin/env bash
# Writes the Markdown report of a bench/run.sh run from its raw numbers (latest.tsv: one
# "key<TAB>value" a line; "*.run" lines are the individual repetitions, the plain keys the
# values reported). bench/run.sh calls it; run it by hand to re-render a report:
#
#   bench/report.sh bench/results/latest.tsv > bench/results/latest.md
set -euo pipefail
TSV=${1:?usage: bench/report.sh RESULTS.tsv}
declare -A R
while IFS=$'\t' read -r k v; do
  [[ $k == *.run ]] || R[$k]=$v
done <"$TSV"
for k in t_bare t_fc t_zstd t_restic t_lifeboat plain_bytes fc_bytes lb_1 restic_1 t_pg_restore t_lb_restore \
  lb_add_append restic_add_append lb_add_scattered restic_add_scattered rss_kib; do
  [ -n "${R[$k]:-}" ] || { echo "report: $TSV has no $k" >&2; exit 1; }
done
v() { printf '%s' "${R[$1]:-?}"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
# a ratio with three decimals when two would round across the limit
ratio_near() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { r = a / b; s = sprintf("%.2f", r); if ((r <= l) != (s + 0 <= l)) s = sprintf("%.3f", r); print s }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
# pass when a / b <= limit, on the unrounded values
pm() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { print (a <= l * b) ? "**pass**" : "**miss**" }'; }
s1() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }

diag=${R[diag]:-0}
t_lb=${R[t_lifeboat]}
rss_mib=$(awk -v k="${R[rss_kib]}" 'BEGIN { printf "%.0f", k / 1024 }')

echo "# lifeboat benchmark results"
echo
echo "One run of \`bench/run.sh\` on $(v date), BENCH_SCALE=$(v scale), BENCH_REPEAT=$(v repeat)"
echo "(first backups: best of $(v repeat), lifeboat's of $(v lb_repeat); everything else: one measurement)."
echo "Load average when the backups started: $(v load_start); at the end: $(v load_end) (shared machine)."
echo
echo "- machine: $(v nproc) CPUs ($(v cpu)), $(v mem) RAM, $(v kernel)"
echo "- lifeboat $(v v_lb) ($(v lb_build)), PostgreSQL server $(v v_pg), pg_dump $(v v_dump), restic $(v v_restic), zstd $(v v_zstd)"
echo "- cluster: default durability settings, shared_buffers=512MB, max_wal_size=4GB, Unix socket"
echo "- dataset: database $(mib "${R[db_bytes]}") MiB, plain dump $(mib "${R[plain_bytes]}") MiB, generated in $(v gen_secs) s;"
echo "  incompressible bytea $(mib "${R[bytea_bytes]}") MiB = $(pct "${R[bytea_bytes]}" "${R[db_bytes]}") of the database ($(pct "$((2 * R[bytea_bytes]))" "${R[plain_bytes]}") of the plain dump, hex-encoded)"
echo
echo "| table | rows | size (MiB, with indexes and TOAST) |"
echo "|---|---:|---:|"
for k in $(printf '%s\n' "${!R[@]}" | grep '^table\.'); do
  IFS='|' read -r n s <<<"${R[$k]}"
  printf '%s\t| %s | %s | %s |\n' "$s" "${k#table.}" "$n" "$s"
done | sort -rn | cut -f2-
echo
echo "## Targets"
echo
echo "| target | measured | limit | result |"
echo "|---|---:|---:|---|"
echo "| backup wall vs bare \`pg_dump -Fp > /dev/null\` | $(ratio_near "$t_lb" "${R[t_bare]}" 1.3)x | 1.3x | $(pm "$t_lb" "${R[t_bare]}" 1.3) |"
echo "| backup wall vs \`pg_dump -Fc\` | $(ratio_near "$t_lb" "${R[t_fc]}" 0.4)x | 0.4x | $(pm "$t_lb" "${R[t_fc]}" 0.4) |"
echo "| backup wall vs \`pg_dump \| restic backup --stdin\` | $(ratio_near "$t_lb" "${R[t_restic]}" 0.6)x | 0.6x | $(pm "$t_lb" "${R[t_restic]}" 0.6) |"
echo "| repository after the first backup vs the \`pg_dump -Fc\` file | $(ratio_near "${R[lb_1]}" "${R[fc_bytes]}" 1)x | 1.0x | $(pm "${R[lb_1]}" "${R[fc_bytes]}" 1) |"
echo "| append-only re-backup: bytes added vs the first backup | $(pct "${R[lb_add_append]}" "${R[lb_1]}") | 10% | $(pm "${R[lb_add_append]}" "${R[lb_1]}" 0.1) |"
echo "| scattered-change re-backup: bytes added vs restic's | $(ratio_near "${R[lb_add_scattered]}" "${R[restic_add_scattered]}" 1)x | 1.0x | $(pm "${R[lb_add_scattered]}" "${R[restic_add_scattered]}" 1) |"
echo "| restore wall vs \`pg_restore -j2\` of the -Fc file | $(ratio_near "${R[t_lb_restore]}" "${R[t_pg_restore]}" 1.2)x | 1.2x | $(pm "${R[t_lb_restore]}" "${R[t_pg_restore]}" 1.2) |"
echo "| peak RSS of \`lifeboat backup\` | $rss_mib MiB | 300 MiB | $(pm "${R[rss_kib]}" 1024 300) |"
if [ -n "${R[drill_overhead_big]:-}" ]; then
  if [ -n "${R[drill_own_overhead_big]:-}" ]; then
    echo "| drill overhead beyond its own restore (fetch, pg_restore, indexes), benchmark database | ${R[drill_own_overhead_big]} s = $(pct "${R[drill_own_overhead_big]}" "${R[t_drill_own_restore_big]}") of the restore (${R[t_drill_own_restore_big]} s) | 15% | $(pm "${R[drill_own_overhead_big]}" "${R[t_drill_own_restore_big]}" 0.15) |"
    echo "| drill overhead beyond its own restore, small database (20 000 rows) | ${R[drill_own_overhead_small]} s | 10 s | $(pm "${R[drill_own_overhead_small]}" 10 1) |"
  fi
  echo "| diagnostic: drill wall minus a plain \`lifeboat restore --no-verify\` into the benchmark cluster | ${R[drill_overhead_big]} s = $(pct "${R[drill_overhead_big]}" "${R[t_drill_restore_big]}") of that restore (${R[t_drill_restore_big]} s) | - | - |"
  echo "| diagnostic: the same, small database | ${R[drill_overhead_small]} s | - | - |"
fi
echo
echo "## Backups (first, fresh repositories)"
echo
echo "| method | wall (s) | vs bare pg_dump -Fp | stored (MiB) | vs plain dump |"
echo "|---|---:|---:|---:|---:|"
echo "| bare \`pg_dump -Fp > /dev/null\` | ${R[t_bare]} | 1.00x | - | - |"
[ "$diag" = 1 ] && echo "| \`pg_dump -Fc -Z0 > /dev/null\` (what lifeboat reads) | ${R[t_fcz0]} | $(ratio "${R[t_fcz0]}" "${R[t_bare]}")x | - | - |"
echo "| \`pg_dump -Fc\` (zlib) to a file | ${R[t_fc]} | $(ratio "${R[t_fc]}" "${R[t_bare]}")x | $(mib "${R[fc_bytes]}") | $(ratio "${R[fc_bytes]}" "${R[plain_bytes]}") |"
echo "| \`pg_dump \| zstd -3\` to a file | ${R[t_zstd]} | $(ratio "${R[t_zstd]}" "${R[t_bare]}")x | $(mib "${R[zstd_bytes]}") | $(ratio "${R[zstd_bytes]}" "${R[plain_bytes]}") |"
echo "| \`pg_dump \| restic backup --stdin\` | ${R[t_restic]} | $(ratio "${R[t_restic]}" "${R[t_bare]}")x | $(mib "${R[restic_1]}") | $(ratio "${R[restic_1]}" "${R[plain_bytes]}") |"
echo "| \`lifeboat backup --kind logical\` | $t_lb | $(ratio "$t_lb" "${R[t_bare]}")x | $(mib "${R[lb_1]}") | $(ratio "${R[lb_1]}" "${R[plain_bytes]}") |"
echo
echo "lifeboat's stream (pg_dump -Fc -Z0): $(mib "${R[lb_stream_bytes]}") MiB, $(v lb_rows) rows; peak RSS ${R[rss_kib]} KiB (max over the repetitions);"
echo "last first backup: user $(v lb_user) s, system $(v lb_sys) s, $(v lb_cs) context switches (/usr/bin/time -v)."
echo
echo "## Restore"
echo
echo "| method | wall (s) | vs pg_restore -j2 |"
echo "|---|---:|---:|"
echo "| \`pg_restore -j2\` from the local \`pg_dump -Fc\` file | ${R[t_pg_restore]} | 1.00x |"
echo "| \`lifeboat restore --jobs 2\` (fetch $(s1 "${R[t_lb_restore_fetch]}") s, pg_restore $(s1 "${R[t_lb_restore_pg]}") s, verification $(s1 "${R[t_lb_restore_verify]}") s: tables match = $(v lb_restore_ok)) | ${R[t_lb_restore]} | $(ratio_near "${R[t_lb_restore]}" "${R[t_pg_restore]}" 1.2)x |"
if [ "$diag" = 1 ]; then
  echo "| diagnostic: \`lifeboat restore --jobs 2 --no-verify\` | ${R[t_lb_restore_nv]} | $(ratio "${R[t_lb_restore_nv]}" "${R[t_pg_restore]}")x |"
  echo "| diagnostic: \`pg_restore -j2\` from a streamed \`pg_dump -Fc -Z0 \| cat > file\` | ${R[t_pg_restore_piped]} | $(ratio "${R[t_pg_restore_piped]}" "${R[t_pg_restore]}")x |"
fi
echo
echo "## Re-backups (bytes added to each repository, du -sb)"
echo
echo "| change | lifeboat added (MiB) | vs its first | restic added (MiB) | vs its first | lifeboat vs restic | lifeboat wall (s) | restic wall (s) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in append scattered; do
  echo "| $c | $(mib "${R[lb_add_$c]}") | $(pct "${R[lb_add_$c]}" "${R[lb_1]}") | $(mib "${R[restic_add_$c]}") | $(pct "${R[restic_add_$c]}" "${R[restic_1]}") | $(ratio "${R[lb_add_$c]}" "${R[restic_add_$c]}")x | ${R[t_lb_$c]} | ${R[t_restic_$c]} |"
done
echo
echo "Changes: append-only = ~1% new rows in every table (same generators, new ids);"
echo "scattered = in every table ~1% of the rows, picked at random, updated or deleted, then VACUUM ANALYZE."
