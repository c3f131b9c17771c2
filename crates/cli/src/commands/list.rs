//! `lifeboat list` and `lifeboat stats`.

use clap::Args;
use lifeboat_core::{
    ops::list::{list, stats as repo_stats, ListFilter},
    sources::postgres::logical::BackupKind,
};

use super::{parse_since, parse_until};
use crate::{output, Ctx};

/// List backups.
#[derive(Debug, Args)]
pub struct ListCmd {
    /// Only this source.
    #[arg(long, short)]
    source: Option<String>,
    /// Only this kind (logical, schema, globals, physical).
    #[arg(long, short)]
    kind: Option<BackupKind>,
    /// Only this database.
    #[arg(long, short)]
    database: Option<String>,
    /// Only backups finished at or after this time (a bare date: from the start of that day;
    /// or a time ago: 1d, 12h, 2w).
    #[arg(long, value_parser = parse_since)]
    since: Option<jiff::Timestamp>,
    /// Only backups finished at or before this time (a bare date: to the end of that day,
    /// so `--since 2026-12-05 --until 2026-12-05` lists that whole day).
    #[arg(long, value_parser = parse_until)]
    until: Option<jiff::Timestamp>,
    /// Only the newest N of the backups that match.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// With --json, every table's backup-time row count and hash (by default each backup
    /// says how many tables and rows it holds).
    #[arg(long)]
    tables: bool,
}

/// A `--source` or `--database` that names nothing, neither configured nor in any backup
/// of the repository: a typo, which an empty listing would pass off as "no backups".
pub(crate) fn unknown_name(
    ctx: &Ctx,
    repo: &lifeboat_core::repository::Repo,
    source: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<Option<lifeboat_core::Error>> {
    if source.is_none() && database.is_none() {
        return Ok(None);
    }
    let all = list(repo, &ListFilter::default())?;
    if let Some(s) = source {
        let configured = ctx.config.sources.iter().any(|c| c.name == s);
        if !configured && !all.iter().any(|b| b.meta.source == s) {
            let mut known: Vec<&str> = ctx.config.sources.iter().map(|c| c.name.as_str()).collect();
            known.extend(all.iter().map(|b| b.meta.source.as_str()));
            known.sort_unstable();
            known.dedup();
            return Ok(Some(
                lifeboat_core::Error::not_found(format!(
                    "no source named {s:?}, in the configuration or in the repository's backups"
                ))
                .hint(if known.is_empty() {
                    "the repository holds no backups yet".to_string()
                } else {
                    format!("sources: {}", known.join(", "))
                }),
            ));
        }
    }
    if let Some(d) = database {
        let of_source = all
            .iter()
            .filter(|b| source.is_none_or(|s| b.meta.source == s))
            .collect::<Vec<_>>();
        if !of_source
            .iter()
            .any(|b| b.meta.database.as_deref() == Some(d))
        {
            let mut known: Vec<&str> = of_source
                .iter()
                .filter_map(|b| b.meta.database.as_deref())
                .collect();
            known.sort_unstable();
            known.dedup();
            return Ok(Some(
                lifeboat_core::Error::not_found(format!(
                    "no backup of a database named {d:?}{}",
                    source
                        .map(|s| format!(" from source {s:?}"))
                        .unwrap_or_default()
                ))
                .hint(if known.is_empty() {
                    "no database backups yet".to_string()
                } else {
                    format!("databases backed up: {}", known.join(", "))
                }),
            ));
        }
    }
    Ok(None)
}

impl ListCmd {
    /// Prints the matching backups, oldest first.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        super::since_before_until(self.since, self.until)?;
        let repo = ctx.open()?;
        let filter = ListFilter {
            source: self.source.clone(),
            kind: self.kind,
            database: self.database.clone(),
            since: self.since,
            until: self.until,
        };
        let mut backups = list(&repo, &filter)?;
        if let Some(n) = self.last {
            backups.drain(..backups.len().saturating_sub(n));
        }
        if backups.is_empty() {
            if let Some(e) =
                unknown_name(ctx, &repo, self.source.as_deref(), self.database.as_deref())?
            {
                return Err(e.into());
            }
        }
        output::warn_repository(&repo);
        if ctx.json {
            return if self.tables {
                output::json_slim(&backups)
            } else {
                output::json_counts(&backups)
            };
        }
        let mut rows = vec![vec![
            "ID".into(),
            "FINISHED".into(),
            "SOURCE".into(),
            "KIND".into(),
            "DATABASE".into(),
            "SIZE".into(),
            "STORED".into(),
            "TABLES".into(),
            "ROWS".into(),
        ]];
        for b in &backups {
            let m = &b.meta;
            rows.push(vec![
                b.short_id().to_string(),
                output::time(m.finished_at),
                m.source.clone(),
                m.kind.to_string(),
                m.database.clone().unwrap_or_else(|| "-".into()),
                output::bytes(m.logical_bytes),
                output::bytes(m.stored_bytes),
                // a schema dump has tables but no rows to count: "-", not a suspicious 0
                data_truth(m).map_or_else(|| "-".into(), |t| t.tables.len().to_string()),
                data_truth(m).map_or_else(|| "-".into(), |t| t.total_rows().to_string()),
            ]);
        }
        output::table(&rows);
        println!("{} backup(s) in {}", backups.len(), repo.location());
        Ok(())
    }
}

/// Per-source statistics.
#[derive(Debug, Args)]
pub struct StatsCmd {
    /// Exit 10 when a configured source or database has no backup, a source's newest run
    /// failed, a database's newest logical backup is older than its source's RPO
    /// objective, or the audit log's chain breaks: a check for monitoring that reads exit
    /// codes.
    #[arg(long)]
    check: bool,
}

impl StatsCmd {
    /// Prints statistics per source, kind and database.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        stats(ctx, self.check)
    }
}

/// What `stats` says of an audit log whose chain breaks after `n` entries.
fn broken_chain(n: usize) -> String {
    format!("the audit log's chain breaks after entry {n} (an entry damaged, removed or edited): `lifeboat audit verify` says which")
}

/// What `stats --check` finds wrong, a line each: sources and databases never backed up,
/// newest runs that failed, and logical backups older than their RPO objective
/// (`logical_rpo`, or `rpo` for a source without physical backups, whose WAL `wal status`
/// judges).
fn check_problems(
    ctx: &Ctx,
    s: &lifeboat_core::ops::list::Stats,
    never: &[(String, Option<String>)],
) -> Vec<String> {
    let now = jiff::Timestamp::now();
    let mut out: Vec<String> = never
        .iter()
        .map(|(source, db)| match db {
            Some(d) => format!("source {source}: database {d} has no logical backup"),
            None => format!("source {source}: no backup at all"),
        })
        .collect();
    // a source the configuration no longer has is nobody's alarm
    out.extend(
        s.failed_last
            .iter()
            .filter(|f| ctx.config.sources.iter().any(|c| c.name == f.source))
            .map(|f| {
                format!(
                    "source {}: a backup run failed at {}, and what it failed was not backed up since",
                    f.source,
                    output::time(f.at)
                )
            }),
    );
    if let Some(n) = s.audit_broken_after {
        out.push(broken_chain(n));
    }
    // as `config check` judges it: the next backup or WAL push would fail
    if let Some(free) = lifeboat_core::repository::free_space(&s.repository)
        .filter(|f| *f < 2 * lifeboat_core::wal::DEFAULT_SEGMENT_SIZE)
    {
        out.push(format!(
            "the repository's file system at {} has {} free: the next backup or WAL push fails",
            s.repository,
            output::bytes(free)
        ));
    }
    if let Some(e) = &s.audit_error {
        out.push(format!(
            "the audit log could not be read, so failed runs could not be looked for: {e}"
        ));
    }
    for src in &ctx.config.sources {
        let Some(stored) = s.sources.iter().find(|st| st.source == src.name) else {
            continue;
        };
        let physical = stored.kinds.iter().any(|k| k.kind == BackupKind::Physical);
        let objective = match (&src.objectives.logical_rpo, &src.objectives.rpo) {
            (Some(l), _) => l,
            (None, Some(r)) if !physical => r,
            _ => continue,
        };
        let Ok(limit) = lifeboat_core::config::parse_duration(objective) else {
            continue;
        };
        if src.objectives.logical_rpo.is_some()
            && !stored.kinds.iter().any(|k| k.kind == BackupKind::Logical)
        {
            out.push(format!(
                "source {}: no logical backup, though its logical_rpo is {objective}",
                src.name
            ));
        }
        // a database the source no longer backs up (dropped, renamed) keeps its old
        // backups until they are pruned: not judged
        for k in stored.kinds.iter().filter(|k| {
            k.kind == BackupKind::Logical
                && (src.databases.is_empty()
                    || k.database
                        .as_deref()
                        .is_some_and(|d| src.covers_database(d)))
        }) {
            let Some(last) = k.last_success else { continue };
            let age = now.duration_since(last).as_secs().max(0).unsigned_abs();
            if age > limit {
                out.push(format!(
                    "source {}: the newest logical backup of {} is {} old, past its RPO objective of {objective}",
                    src.name,
                    k.database.as_deref().unwrap_or("-"),
                    output::secs(age as f64)
                ));
            }
        }
    }
    out
}

/// Prints statistics per source, kind and database; with `check`, fails (exit 10) on
/// what [`check_problems`] finds.
fn stats(ctx: &Ctx, check: bool) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let s = repo_stats(&repo)?;
    output::warn_repository(&repo);
    let never = never_backed_up(ctx, &s);
    let problems = if check {
        check_problems(ctx, &s, &never)
    } else {
        Vec::new()
    };
    let verdict = || {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(lifeboat_core::Error::new(
                lifeboat_core::ErrorKind::CheckFailed,
                format!("stats --check: {} problem(s): {}", problems.len(), problems.join("; ")),
            )
            .hint("back up what is named (`lifeboat backup --all`), and see why its runs fail (`lifeboat audit list --action backup --failed`)")
            .into())
        }
    };
    if ctx.json {
        let mut v = serde_json::to_value(&s)?;
        v["never_backed_up"] = never
            .iter()
            .map(|(source, database)| serde_json::json!({"source": source, "database": database}))
            .collect();
        if check {
            v["problems"] = problems.clone().into();
        }
        output::json(&v)?;
        return verdict();
    }
    let mut rows = vec![vec![
        "SOURCE".into(),
        "KIND".into(),
        "DATABASE".into(),
        "COUNT".into(),
        "LAST SUCCESS".into(),
        "LAST SIZE".into(),
        "GROWTH".into(),
        "LOGICAL TOTAL".into(),
        "STORED TOTAL".into(),
    ]];
    for src in &s.sources {
        for k in &src.kinds {
            rows.push(vec![
                src.source.clone(),
                k.kind.to_string(),
                k.database.clone().unwrap_or_else(|| "-".into()),
                k.count.to_string(),
                k.last_success.map_or_else(|| "-".into(), output::time),
                output::bytes(k.last_logical_bytes),
                k.growth_percent
                    .map_or_else(|| "-".into(), |g| format!("{g:+.1}%")),
                output::bytes(k.logical_bytes),
                output::bytes(k.stored_bytes),
            ]);
        }
    }
    // a configured source or database with nothing stored is the row that matters most
    for (source, database) in &never {
        rows.push(vec![
            source.clone(),
            if database.is_some() { "logical" } else { "-" }.into(),
            database.clone().unwrap_or_else(|| "-".into()),
            "0".into(),
            "NEVER".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    output::table(&rows);
    for f in &s.failed_last {
        println!(
            "LAST RUN FAILED  {} at {}: {}",
            f.source,
            output::time(f.at),
            f.details
        );
    }
    if let Some(n) = s.audit_broken_after {
        println!("AUDIT LOG BROKEN  {}", broken_chain(n));
    }
    for src in s.sources.iter().filter(|s| s.wal_files > 0) {
        println!(
            "WAL archive of {}: {} files, {} stored",
            src.source,
            src.wal_files,
            output::bytes(src.wal_stored_bytes)
        );
    }
    println!(
        "repository {}: {} logical, {} stored by backups{}{}",
        s.repository,
        output::bytes(s.total_logical_bytes),
        output::bytes(s.total_stored_bytes),
        if s.total_wal_stored_bytes > 0 {
            format!(
                ", {} by WAL archives",
                output::bytes(s.total_wal_stored_bytes)
            )
        } else {
            String::new()
        },
        if s.pending > 0 {
            format!(
                ", {} pending snapshot(s) of interrupted backups (ignored; `lifeboat repair index` removes those over a day old)",
                s.pending
            )
        } else {
            String::new()
        }
    );
    if check {
        for p in &problems {
            println!("PROBLEM  {p}");
        }
        if problems.is_empty() {
            println!("stats --check: every configured source and database has a backup within its objective, and no newest run failed");
        }
    }
    verdict()
}

/// Configured sources with no backup at all (database `None`), and databases a source
/// names outright that have no logical backup while others of it do (added to
/// `databases` later, or failing every night). Patterns are matched at backup time
/// against the server, which `stats` does not ask.
fn never_backed_up(
    ctx: &Ctx,
    s: &lifeboat_core::ops::list::Stats,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for src in &ctx.config.sources {
        let Some(stored) = s.sources.iter().find(|st| st.source == src.name) else {
            out.push((src.name.clone(), None));
            continue;
        };
        let logical = |db: &str| {
            stored
                .kinds
                .iter()
                .any(|k| k.kind == BackupKind::Logical && k.database.as_deref() == Some(db))
        };
        if !stored.kinds.iter().any(|k| k.kind == BackupKind::Logical) {
            continue;
        }
        for db in src.named_databases().into_iter().filter(|d| !logical(d)) {
            out.push((src.name.clone(), Some(db)));
        }
    }
    out
}

/// The backup-time truth of a backup that holds table data.
fn data_truth(
    m: &lifeboat_core::repository::meta::BackupMeta,
) -> Option<&lifeboat_core::sources::postgres::truth::Truth> {
    m.truth.as_ref().filter(|_| m.kind == BackupKind::Logical)
}
