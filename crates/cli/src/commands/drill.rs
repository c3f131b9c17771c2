//! `lifeboat drill`.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::{
    ops::drill::{drill, ensure_passed, DrillOptions, Pick},
    sources::postgres::logical::BackupKind,
};

use crate::{output, Ctx};

/// Restore a backup into a throw-away cluster and prove it.
#[derive(Debug, Args)]
pub struct DrillCmd {
    /// Source name (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Drill every configured source, one after the other: with --pick latest, the newest
    /// backup of each database of each (a database is its own dump); with --pick random, a
    /// random one of each source. One that fails does not stop the others; the exit code
    /// says whether any failed.
    #[arg(long, conflicts_with_all = ["source", "database"])]
    all: bool,
    /// Which backup: latest, random, or a snapshot id.
    #[arg(long, default_value = "latest")]
    pick: String,
    /// Extra SQL assertion that must return true (repeatable; added to drill.checks).
    #[arg(long = "check")]
    checks: Vec<String>,
    /// Shell command run against the restored database after its data was compared with
    /// the backup, before the assertions: migrations, starting the application, a health
    /// probe (repeatable; added to drill.hooks; a failing one stops those after it).
    #[arg(long = "hook")]
    hooks: Vec<String>,
    /// Shell command run against the restored copy before its data is compared with the
    /// backup, so that what it changes fails the drill (repeatable; added to
    /// drill.hooks_before_checks): a fault injected to show the drill catches it.
    #[arg(long = "hook-before-checks")]
    hooks_before_checks: Vec<String>,
    /// With --pick random or latest: only backups finished at or after this time (a bare
    /// date: from the start of that day; or a time ago: 30d for the seeds' "random backup of
    /// last month").
    #[arg(long, value_parser = super::parse_since)]
    since: Option<jiff::Timestamp>,
    /// With --pick random or latest: only backups finished at or before this time (a bare
    /// date: to the end of that day).
    #[arg(long, value_parser = super::parse_until)]
    until: Option<jiff::Timestamp>,
    /// Parallel restore jobs and table checks, 1 to 32.
    #[arg(long, short, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    jobs: u32,
    /// Also write the report as JSON, Markdown and HTML into this directory.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// logical (restore a dump) or physical (a base backup plus WAL replay).
    #[arg(long, short, default_value = "logical")]
    kind: BackupKind,
    /// Logical drills of a source with several databases: the database to drill; physical
    /// drills: the database the assertions and hooks run in (default: the source's first).
    #[arg(long, short)]
    database: Option<String>,
    /// Physical drills: recover to this time (default: the end of the archive).
    #[arg(long, value_parser = super::parse_time)]
    target_time: Option<jiff::Timestamp>,
    /// Where the throw-away cluster and the fetched backup go: a disk with room for the
    /// restored database [default: $LIFEBOAT_SCRATCH_DIR, else the system temp directory].
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
}

impl DrillCmd {
    /// Runs the drill; exits 10 when it fails.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.check_flags()?;
        if self.all {
            return self.run_all(ctx);
        }
        // `--pick ID` names its source, as `restore ID` does, when several are configured
        // (the repository opened once: the key derivation is a fixed cost of every open; an
        // id that names no backup is a usage mistake, not a failed drill for the log)
        let (by_id, opened) = match (&self.source, self.pick.as_str()) {
            (None, "latest" | "random") => (None, None),
            (None, id) if ctx.config.sources.len() > 1 => {
                let repo = ctx.open()?;
                let source = repo.backup(id)?.meta.source;
                (Some(source), Some(repo))
            }
            _ => (None, None),
        };
        let (src, repo) = ctx.source_and_repo(
            self.source.as_deref().or(by_id.as_deref()),
            |name| match opened {
                Some(repo) => {
                    Ctx::logged(&repo, "drill", &format!("source {name}"));
                    Ok(repo)
                }
                None => ctx.open_logged("drill", &format!("source {name}")),
            },
        )?;
        self.drill_one(ctx, &repo, &src, self.database.clone(), None, &mut false)
    }

    /// Flag mistakes, refused before the repository is opened (no failed drill to log).
    fn check_flags(&self) -> anyhow::Result<()> {
        let by_id = !matches!(self.pick.as_str(), "latest" | "random");
        if by_id && (self.since.is_some() || self.until.is_some()) {
            return Err(lifeboat_core::Error::config(
                "--since and --until choose among backups; --pick ID names one",
            )
            .hint("leave out --since/--until, or use --pick random or latest")
            .into());
        }
        if by_id && self.all {
            return Err(lifeboat_core::Error::config(
                "--all drills the latest or a random backup of each source; --pick ID names one backup",
            )
            .hint("use --pick latest or random with --all, or leave out --all")
            .into());
        }
        super::since_before_until(self.since, self.until)?;
        if self.target_time.is_some() && self.kind != BackupKind::Physical {
            return Err(
                lifeboat_core::Error::config("--target-time is for physical drills")
                    .hint("add --kind physical")
                    .into(),
            );
        }
        Ok(())
    }

    /// `--all` (see [`super::each`]): the repository is opened once.
    fn run_all(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let mut each = super::each::Each::new(ctx, "drills", "passed")?;
        let repo = ctx.open_logged("drill", &format!("all {} sources", each.sources().len()))?;
        let mut reports = Vec::new();
        for src in each.sources() {
            let databases = match self.databases_of(&repo, src) {
                Ok(d) => d,
                Err(e) => {
                    each.heading(&src.name);
                    reports
                        .push(serde_json::json!({"source": src.name, "error": format!("{e:#}")}));
                    each.failed(&src.name, e)?;
                    continue;
                }
            };
            for database in databases {
                let what = match &database {
                    Some(d) => format!("{} database {d}", src.name),
                    None => src.name.clone(),
                };
                each.heading(&what);
                Ctx::logged(&repo, "drill", &format!("source {what}"));
                let done = reports.len();
                let mut passed = false;
                if let Err(e) = self.drill_one(
                    ctx,
                    &repo,
                    src,
                    database.clone(),
                    Some(&mut reports),
                    &mut passed,
                ) {
                    // a drill that ran and failed is in its report; one that could not run
                    // (no backup of the kind) says why
                    if reports.len() == done {
                        reports.push(serde_json::json!({"source": src.name, "database": database, "error": format!("{e:#}")}));
                    }
                    if passed {
                        // its verdict stands; its evidence did not get where it belongs
                        each.incomplete(&what, e)?;
                    } else {
                        each.failed(&what, e)?;
                    }
                }
            }
        }
        output::warn_repository(&repo);
        if ctx.json {
            output::json(&reports)?;
        }
        each.finish()
    }

    /// The databases `--all` drills of source `src`: with `--pick latest`, each database
    /// it is meant to back up now (see [`lifeboat_core::ops::runbook::meant_databases`]:
    /// one named with no backup fails its drill, one dropped from the list on purpose is
    /// left out), when there are several; else the drill's own choice.
    fn databases_of(
        &self,
        repo: &lifeboat_core::repository::Repo,
        src: &lifeboat_core::config::SourceConfig,
    ) -> anyhow::Result<Vec<Option<String>>> {
        if self.kind != BackupKind::Logical || self.pick != "latest" {
            return Ok(vec![None]);
        }
        let backups = lifeboat_core::ops::list::list(
            repo,
            &lifeboat_core::ops::list::ListFilter {
                source: Some(src.name.clone()),
                kind: Some(BackupKind::Logical),
                ..Default::default()
            },
        )?;
        let databases = lifeboat_core::ops::runbook::meant_databases(src, &backups);
        Ok(if databases.len() > 1 {
            databases.into_iter().map(Some).collect()
        } else {
            vec![None]
        })
    }

    /// One drill of `src`; with `collect` (`--all --json`) its report is kept there
    /// instead of printed. `passed` says whether it passed, also when what came after
    /// (its evidence) failed.
    fn drill_one(
        &self,
        ctx: &Ctx,
        repo: &lifeboat_core::repository::Repo,
        src: &lifeboat_core::config::SourceConfig,
        database: Option<String>,
        collect: Option<&mut Vec<serde_json::Value>>,
        passed: &mut bool,
    ) -> anyhow::Result<()> {
        let pick = match self.pick.as_str() {
            "latest" => Pick::Latest,
            "random" => Pick::Random,
            id => Pick::Id(id.to_string()),
        };
        let opts = DrillOptions {
            pick,
            checks: self.checks.clone(),
            hooks: self.hooks.clone(),
            hooks_before_checks: self.hooks_before_checks.clone(),
            since: self.since,
            until: self.until,
            jobs: self.jobs,
            report_dir: self.report_dir.clone(),
            kind: self.kind,
            target_time: self.target_time,
            restore_command: (self.kind == BackupKind::Physical)
                .then(|| super::restore::restore_command(ctx, &src.name))
                .transpose()?,
            database,
            scratch_dir: self.scratch_dir.clone(),
        };
        let report = ctx
            .bars
            .spinning(&format!("drilling source {}", src.name), || {
                drill(repo, src, &opts)
            })?;
        *passed = report.passed;
        let files_written = || {
            self.report_dir.as_ref().is_none_or(|d| {
                ["json", "md", "html"]
                    .iter()
                    .all(|ext| d.join(format!("{}.{ext}", report.id)).exists())
            })
        };
        if let Some(reports) = collect.filter(|_| ctx.json) {
            reports.push(serde_json::to_value(&report)?);
        } else if ctx.json {
            output::json(&report)?;
        } else {
            println!(
                "drill {}: {}",
                report.id,
                if report.passed { "PASSED" } else { "FAILED" }
            );
            println!(
                "  {} backup {} of {}, finished {}{}",
                report.kind,
                &report.backup_id[..8],
                if report.kind == BackupKind::Physical {
                    format!("the cluster of source {}", report.source)
                } else {
                    format!("{:?} of source {}", report.database, report.source)
                },
                output::time(report.backup_finished_at),
                report
                    .target
                    .as_deref()
                    .map(|t| format!("; recovered to {t}"))
                    .unwrap_or_default()
            );
            let width = report
                .phases
                .iter()
                .map(|p| p.name.len())
                .max()
                .unwrap_or(0);
            for p in &report.phases {
                println!("  phase {:<width$} {}", p.name, output::secs(p.secs));
            }
            // failing tables one per line, but not thousands of them on a terminal: the
            // report lists every check
            const TABLES_SHOWN: usize = 20;
            let failing_tables = report
                .checks
                .iter()
                .filter(|c| c.name.starts_with("table ") && !c.ok)
                .count();
            let mut tables_shown = 0;
            for c in report
                .checks
                .iter()
                .filter(|c| !c.name.starts_with("table ") || !c.ok)
            {
                if c.name.starts_with("table ") {
                    tables_shown += 1;
                    if tables_shown > TABLES_SHOWN {
                        continue;
                    }
                }
                println!(
                    "  {} {}: {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail.replace('\n', "\n         ")
                );
            }
            // a restore that did not complete checked nothing: no limits of checks to name
            let completed = lifeboat_core::ops::evidence::restore_completed(&report);
            for n in report.not_checked.iter().filter(|_| completed) {
                println!("  not checked: {n}");
            }
            if failing_tables > TABLES_SHOWN {
                println!(
                    "  … and {} more failing tables (every check is in the report)",
                    failing_tables - TABLES_SHOWN
                );
            }
            let obj = |name: &str, o: &lifeboat_core::ops::drill::Objective| match o.objective_secs
            {
                _ if o.not_achieved && name == "RTO" => println!(
                    "  {name} NOT ACHIEVED: the restore did not complete (it failed after {})",
                    output::secs(o.achieved_secs)
                ),
                _ if o.not_achieved => {
                    println!("  {name} NOT ACHIEVED: the restore did not complete");
                }
                Some(t) => println!(
                    "  {name} achieved {} vs objective {}: {}",
                    output::secs(o.achieved_secs),
                    output::secs(t),
                    o.verdict(output::secs).unwrap_or_default()
                ),
                None => println!(
                    "  {name} achieved {} (no objective configured)",
                    output::secs(o.achieved_secs)
                ),
            };
            obj("RTO", &report.rto);
            obj("RPO", &report.rpo);
            if let Some(p) = &report.rpo_point {
                println!("      measured to {}, {}", p.what, output::time(p.at));
            }
            if let Some(e) = report.extrapolated_rto_secs {
                println!(
                    "  restore time extrapolated to production size: {}{}",
                    output::secs(e),
                    if report.extrapolation_misses_rto {
                        " (misses the RTO objective)"
                    } else {
                        ""
                    }
                );
            }
            if let Some(e) = &report.evidence_error {
                println!("  warning: {e}");
            }
            if let Some(d) = self.report_dir.as_ref().filter(|_| files_written()) {
                println!(
                    "  evidence: {}/{}.{{json,md,html}} (also stored in the repository)",
                    d.display(),
                    report.id
                );
            }
        }
        ensure_passed(&report)?;
        match &self.report_dir {
            // a job that collects the files must not take their absence for success
            Some(d) if !files_written() => Err(lifeboat_core::Error::new(
                lifeboat_core::ErrorKind::Unavailable,
                format!(
                    "drill {} ran, but its report files could not be written to {}",
                    report.id,
                    d.display()
                ),
            )
            .hint(format!(
                "make room on its disk, or make it writable for this user (the warning above says which); the report is stored in the repository: `lifeboat report --drill {} --format md|html|json -o FILE` writes each file again",
                report.id
            ))
            .into()),
            // as a backup whose head could not be published exits 7: a job must not take
            // a drill whose evidence is incomplete for a proven one
            _ => match &report.evidence_error {
                Some(e) => Err(lifeboat_core::Error::new(
                    lifeboat_core::ErrorKind::Unavailable,
                    format!("drill {} passed, but its evidence is incomplete: {e}", report.id),
                )
                .hint("fix what the message names (the audit head's places, the repository); the drill's verdict stands, the next drill writes complete evidence")
                .into()),
                None => Ok(()),
            },
        }
    }
}
