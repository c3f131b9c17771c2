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
    /// Kind to take: logical, schema, globals or physical (repeatable; default: the three
    /// logical kinds).
    #[arg(long, short)]
    kind: Vec<BackupKind>,
    /// Database to dump (repeatable; default: the source's databases).
    #[arg(long, short)]
    database: Vec<String>,
}

impl BackupCmd {
    /// Runs the backup and prints a summary.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
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
        let opts = BackupOptions {
            kinds: self.kind.clone(),
            databases: self.database.clone(),
            recovery_point: None,
            archive_command: super::restore::archive_command(ctx, &src.name).ok(),
        };
        let report = backup(&repo, src, &opts)?;
        output::warn_repository(&repo);
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
            output::json(&report)?;
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
        output::table(&rows);
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
}
