//! `lifeboat restore`.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::{
    config::{Hooks, SourceConfig},
    ops::{
        list::{list, ListFilter},
        restore::{plan, restore, RestoreOptions, Selector},
    },
    sources::postgres::logical::LogicalKind,
    Error,
};

use super::parse_time;
use crate::{output, Ctx};

/// Restore a backup.
#[derive(Debug, Args)]
pub struct RestoreCmd {
    /// Snapshot id (a unique prefix is enough).
    id: Option<String>,
    /// List the backups that can be restored, then stop.
    #[arg(long)]
    list: bool,
    /// The newest backup of the source.
    #[arg(long, conflicts_with_all = ["id", "before"])]
    latest: bool,
    /// The newest backup finished at or before this time.
    #[arg(long, value_parser = parse_time, conflicts_with = "id")]
    before: Option<jiff::Timestamp>,
    /// Source name (default: the only one; with an id: the backup's source).
    #[arg(long, short)]
    source: Option<String>,
    /// Kind: logical (default) or schema.
    #[arg(long, short, default_value = "logical")]
    kind: LogicalKind,
    /// Which database of the source.
    #[arg(long, short)]
    database: Option<String>,
    /// Restore into this database (created if missing; default: the original name).
    #[arg(long)]
    to_database: Option<String>,
    /// Restore onto another server (libpq DSN; password via PGPASSWORD or .pgpass).
    #[arg(long)]
    target_dsn: Option<String>,
    /// Drop existing objects in the target first (needs --force).
    #[arg(long)]
    clean: bool,
    /// Allow writing into an existing, non-empty database.
    #[arg(long)]
    force: bool,
    /// Parallel pg_restore jobs.
    #[arg(long, short, default_value_t = 2)]
    jobs: u32,
    /// Restore roles and tablespaces (the globals backup) first.
    #[arg(long)]
    globals: bool,
    /// Skip ownership and privileges (when the roles do not exist on the target).
    #[arg(long)]
    no_owner: bool,
    /// Do not compare the restored data with the backup-time truth.
    #[arg(long)]
    no_verify: bool,
    /// Shell command run before the restore (stop the application).
    #[arg(long)]
    pre_hook: Option<String>,
    /// Shell command run after a successful restore (migrations, start the application).
    #[arg(long)]
    post_hook: Option<String>,
    /// Directory for the staged dump (default: the system temp directory).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl RestoreCmd {
    /// Plans, then restores (or prints the plan).
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let repo = ctx.open()?;
        if self.list {
            let backups = list(
                &repo,
                &ListFilter {
                    source: self.source.clone(),
                    kind: Some(self.kind),
                    ..ListFilter::default()
                },
            )?;
            if ctx.json {
                return output::json(&backups);
            }
            for b in backups.iter().rev() {
                println!(
                    "{}  {}  {}  {}",
                    b.short_id(),
                    output::time(b.meta.finished_at),
                    b.meta.source,
                    b.meta.database.as_deref().unwrap_or("-")
                );
            }
            return Ok(());
        }
        let selector = match (&self.id, self.latest, self.before) {
            (Some(id), _, _) => Selector::Id(id.clone()),
            (None, _, Some(t)) => Selector::Before(t),
            (None, true, None) => Selector::Latest,
            (None, false, None) => {
                return Err(
                    Error::config("which backup? give an id, --latest or --before TIME")
                        .hint("`lifeboat restore --list` shows what can be restored")
                        .into(),
                )
            }
        };
        let source_name = match (&self.source, &selector) {
            (Some(s), _) => s.clone(),
            (None, Selector::Id(id)) => repo.backup(id)?.meta.source,
            (None, _) => ctx.source(None)?.name.clone(),
        };
        let mut src: SourceConfig = match ctx.config.source(&source_name) {
            Ok(s) => s.clone(),
            // disaster case: no config for the old server, only a target to restore onto
            Err(e) => match &self.target_dsn {
                Some(dsn) => SourceConfig::postgres(&source_name, dsn),
                None => {
                    return Err(anyhow::Error::from(
                        e.hint("pass --target-dsn to restore onto a server of your choice"),
                    ))
                }
            },
        };
        if let Some(dsn) = &self.target_dsn {
            src.dsn = Some(dsn.clone());
        }
        let opts = RestoreOptions {
            selector,
            source: Some(source_name),
            kind: self.kind,
            database: self.database.clone(),
            to_database: self.to_database.clone(),
            clean: self.clean,
            force: self.force,
            jobs: self.jobs,
            globals: self.globals,
            verify: !self.no_verify,
            no_owner: self.no_owner,
            hooks: Hooks {
                pre_restore: self.pre_hook.clone(),
                post_restore: self.post_hook.clone(),
            },
            scratch_dir: self.scratch_dir.clone(),
        };
        let p = plan(&repo, &src, &opts)?;
        if self.dry_run {
            if ctx.json {
                return output::json(&p);
            }
            println!(
                "would restore backup {} ({} of {:?}, finished {})",
                p.backup.short_id(),
                p.backup.meta.kind,
                p.backup.meta.database.as_deref().unwrap_or("-"),
                output::time(p.backup.meta.finished_at)
            );
            println!(
                "  into database {:?} on {}{}",
                p.target_database,
                p.target_server,
                if p.create_database {
                    " (created)"
                } else {
                    " (exists)"
                }
            );
            if let Some(g) = &p.globals {
                println!("  roles and tablespaces first, from {}", g.short_id());
            }
            println!(
                "  pg_restore jobs: {}, clean first: {}, verify against backup-time truth: {}",
                p.jobs, p.clean, p.verify
            );
            println!(
                "  pre-restore hook: {}",
                p.pre_hook.as_deref().unwrap_or("-")
            );
            println!(
                "  post-restore hook: {}",
                p.post_hook.as_deref().unwrap_or("-")
            );
            println!("dry run: nothing was changed");
            return Ok(());
        }
        let spinner = ctx.bars.spinner(&format!(
            "restoring {} into {}",
            p.backup.short_id(),
            p.target_database
        ));
        let report = restore(&repo, &src, p, self.scratch_dir.as_deref());
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        let report = report?;
        if ctx.json {
            return output::json(&report);
        }
        println!(
            "restored backup {} into database {:?} in {} (fetch {}, restore {})",
            report.plan.backup.short_id(),
            report.plan.target_database,
            output::secs(report.total_secs),
            output::secs(report.fetch_secs),
            output::secs(report.restore_secs)
        );
        if let Some(c) = &report.comparison {
            println!(
                "verified: {} tables, {} rows match the backup-time counts and hashes",
                c.tables.len(),
                c.rows()
            );
        }
        Ok(())
    }
}
