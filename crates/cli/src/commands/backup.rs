//! `lifeboat backup`.

use clap::Args;
use lifeboat_core::{
    ops::backup::{backup, BackupOptions},
    sources::postgres::logical::BackupKind,
};

use crate::{output, Ctx};

/// Back up a source.
#[derive(Debug, Args)]
pub struct BackupCmd {
    /// Source name from the configuration (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Back up every configured source, one after the other; one that fails does not stop
    /// the others, and the exit code says whether any failed.
    #[arg(long, conflicts_with_all = ["source", "database"])]
    all: bool,
    /// Kind to take: logical, schema, globals or physical (repeatable; default: the three
    /// logical kinds).
    #[arg(long, short)]
    kind: Vec<BackupKind>,
    /// Database to dump (repeatable; default: the source's databases).
    #[arg(long, short)]
    database: Vec<String>,
    /// How long a dump waits for another run on this host that is taking the same dump
    /// (two cron lines that collide): once that run has stored it, it is not taken again;
    /// still running after this long, it is left out as locked (exit 5). `0` leaves it out
    /// at once.
    #[arg(long, default_value = "1h", value_parser = overlap_wait, value_name = "DURATION")]
    overlap_wait: u64,
}

/// `--overlap-wait`: a duration (`90s`, `30m`, `1h`) or `0`.
fn overlap_wait(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    lifeboat_core::config::parse_duration(s)
}

impl BackupCmd {
    /// Runs the backup and prints a summary.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.all {
            return self.run_all(ctx);
        }
        if self.source.is_none() && ctx.config.sources.len() > 1 {
            return Err(
                lifeboat_core::Error::config("several sources are configured: which one?")
                    .hint(format!(
                        "pass --source with one of: {}; or --all to back up every one",
                        source_names(ctx)
                    ))
                    .into(),
            );
        }
        let src = ctx.source(self.source.as_deref())?;
        if !self.database.is_empty() && self.kind == [BackupKind::Physical] {
            return Err(lifeboat_core::Error::config(
                "--database picks the databases to dump; a physical backup holds the whole cluster",
            )
            .hint("leave out --database for --kind physical")
            .into());
        }
        let repo = ctx.open_logged(
            "backup",
            &format!(
                "source {} ({})",
                src.name,
                lifeboat_core::ops::backup::kinds_named(&self.kind)
            ),
        )?;
        let report = backup(&repo, src, &self.options(ctx, &src.name))?;
        output::warn_repository(&repo);
        let outcome = summarize(ctx, &repo, &report);
        if ctx.json {
            output::json(&report)?;
        }
        outcome
    }

    fn options(&self, ctx: &Ctx, source: &str) -> BackupOptions {
        BackupOptions {
            kinds: self.kind.clone(),
            databases: self.database.clone(),
            recovery_point: None,
            archive_command: super::restore::archive_command(ctx, source).ok(),
            overlap_wait_secs: Some(self.overlap_wait),
        }
    }

    /// `--all`: each source in the configuration's order. The repository is opened once;
    /// a source that cannot be backed up at all (its server is down) is said and the next
    /// one is taken, because a cron line backing up forty databases must not lose thirty-nine
    /// to one.
    fn run_all(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let mut each = super::each::Each::new(ctx, "sources", "backed up")?;
        let repo = ctx.open_logged(
            "backup",
            &format!(
                "all {} sources ({})",
                each.sources().len(),
                lifeboat_core::ops::backup::kinds_named(&self.kind)
            ),
        )?;
        let mut reports = Vec::new();
        for src in each.sources() {
            each.heading(&src.name);
            // each source is an operation of its own: an interrupt or a kill during it is
            // logged as that source's (the one before it logged its outcome already)
            Ctx::logged(
                &repo,
                "backup",
                &format!(
                    "source {} ({})",
                    src.name,
                    lifeboat_core::ops::backup::kinds_named(&self.kind)
                ),
            );
            // stored, with only its audit head unpublished: done, its evidence incomplete
            let mut stored = false;
            let outcome = backup(&repo, src, &self.options(ctx, &src.name))
                .map_err(anyhow::Error::from)
                .and_then(|report| {
                    stored = report.failure().is_none();
                    let outcome = summarize(ctx, &repo, &report);
                    reports.push(AllEntry::Done(report));
                    outcome
                });
            if let Err(e) = outcome {
                if !matches!(reports.last(), Some(AllEntry::Done(r)) if r.source == src.name) {
                    reports.push(AllEntry::Failed {
                        source: src.name.clone(),
                        error: format!("{e:#}"),
                    });
                }
                // Ctrl-C stops the whole run, not just this source
                if stored {
                    each.incomplete(&src.name, e)?;
                } else {
                    each.failed(&src.name, e)?;
                }
            }
        }
        output::warn_repository(&repo);
        if ctx.json {
            output::json(&reports)?;
        }
        each.finish()
    }
}

/// What `backup --all --json` prints for one source.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum AllEntry {
    Done(lifeboat_core::ops::backup::BackupReport),
    Failed { source: String, error: String },
}

fn source_names(ctx: &Ctx) -> String {
    ctx.config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints what one source's backup stored (not with `--json`) and returns what its exit
/// code should say: the failure first, a missing evidence head otherwise.
fn summarize(
    ctx: &Ctx,
    repo: &lifeboat_core::repository::Repo,
    report: &lifeboat_core::ops::backup::BackupReport,
) -> anyhow::Result<()> {
    // what was stored is printed first, and the exit code then says what is missing
    let outcome = || match (report.failure(), &report.evidence_gap) {
        (Some(e), gap) => {
            // the failure decides the exit code; a missing head is said too
            if let Some(g) = gap {
                output::write_err(format_args!("warning: {}\n", g.message));
            }
            Err(e.into())
        }
        (None, Some(g)) => Err(g.error().into()),
        (None, None) => Ok(()),
    };
    if ctx.json {
        return outcome();
    }
    let mut rows = vec![vec![
        "ID".into(),
        "KIND".into(),
        "DATABASE".into(),
        "TIME".into(),
        "SIZE".into(),
        "NEW".into(),
        "STORED".into(),
        "DEDUP".into(),
        "TABLES".into(),
        "ROWS".into(),
    ]];
    for b in &report.backups {
        rows.push(vec![
            b.id[..8].to_string(),
            b.kind.to_string(),
            b.database.clone().unwrap_or_else(|| "-".into()),
            output::secs(b.duration_secs),
            output::bytes(b.logical_bytes),
            output::bytes(b.new_bytes),
            output::bytes(b.stored_bytes),
            format!("{:.1}x", b.dedup_ratio.min(9999.0)),
            // only a full dump records rows
            if b.kind == BackupKind::Logical {
                b.tables.to_string()
            } else {
                "-".into()
            },
            if b.kind == BackupKind::Logical {
                b.rows.to_string()
            } else {
                "-".into()
            },
        ]);
    }
    if !report.backups.is_empty() || report.by_other_run.is_empty() {
        output::table(&rows);
    }
    for o in &report.by_other_run {
        println!(
            "{} {}: stored by an overlapping run on this host ({}) as {} while this one waited; not taken again",
            o.kind,
            o.database.as_deref().unwrap_or("-"),
            o.holder,
            &o.id[..8]
        );
    }
    for f in &report.failed {
        println!(
            "FAILED {} {}: {}",
            f.kind,
            f.database.as_deref().unwrap_or("-"),
            f.error
        );
    }
    println!(
        "backed up source {} into {} (recovery point {}){}",
        report.source,
        repo.location(),
        report.recovery_point,
        if report.failed.is_empty() {
            String::new()
        } else {
            format!(
                ": {} of {} backups FAILED (above)",
                report.failed.len(),
                report.failed.len() + report.backups.len()
            )
        }
    );
    outcome()
}
