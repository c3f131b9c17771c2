//! `lifeboat verify`.

use clap::Args;
use lifeboat_core::{
    ops::verify::{verify, VerifyOptions},
    Error, ErrorKind,
};

use crate::{output, Ctx};

/// Check backups.
#[derive(Debug, Args)]
pub struct VerifyCmd {
    /// Backup ids to check.
    ids: Vec<String>,
    /// Check every backup.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Read every pack and check that it decrypts and hashes correctly.
    #[arg(long)]
    read_data: bool,
    /// Read only a subset: 10%, 1/5 or a size such as 500MiB.
    #[arg(long)]
    read_data_subset: Option<String>,
}

impl VerifyCmd {
    /// Verifies and fails (exit 6) when anything is damaged.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.ids.is_empty() && !self.all {
            return Err(Error::config("which backups? no backup ids given")
                .hint("give backup ids or --all (`lifeboat list` shows the ids)")
                .into());
        }
        let what = if self.all {
            "all backups".to_string()
        } else {
            format!("backup(s) {}", self.ids.join(", "))
        };
        let repo = ctx.open_logged("verify", &what)?;
        let report = verify(
            &repo,
            &VerifyOptions {
                ids: self.ids.clone(),
                read_data: self.read_data,
                read_data_subset: self.read_data_subset.clone(),
            },
        )?;
        output::warn_repository(&repo);
        if ctx.json {
            output::json(&report)?;
        } else {
            for b in &report.backups {
                let what = format!(
                    "{} {} {} {}",
                    &b.id[..8],
                    b.source,
                    b.kind,
                    b.database.as_deref().unwrap_or("-")
                );
                if b.ok {
                    println!("ok       {what}");
                } else {
                    println!("DAMAGED  {what}: {}", b.problems.join("; "));
                }
            }
            for p in &report.repository_problems {
                println!("DAMAGED  repository: {p}");
            }
            for p in &report.history_problems {
                println!("MISSING  {p}");
            }
            println!(
                "{} backup(s) checked{}",
                report.backups.len(),
                match (&report.read_data_subset, report.read_data) {
                    (Some(subset), _) => format!(
                        ", data read for a subset of the packs ({subset}); a backup whose packs were not in it was checked for structure only"
                    ),
                    (None, true) => ", data read".to_string(),
                    (None, false) => {
                        " (structure only; add --read-data to read the data)".to_string()
                    }
                }
            );
        }
        if report.ok() {
            Ok(())
        } else {
            let names: Vec<String> = report
                .damaged()
                .iter()
                .map(|b| b.id[..8].to_string())
                .collect();
            if names.is_empty() && report.repository_problems.is_empty() {
                // nothing damaged: backups are missing or the log went back, which no
                // repair brings back
                return Err(Error::new(
                    ErrorKind::Integrity,
                    "the repository does not hold what its audit log (or the head file kept outside it) records",
                )
                .hint("`lifeboat audit verify` names each; backups deleted on purpose are recorded with `lifeboat audit deleted ID... --reason \"...\"`; otherwise treat it as an incident (README: An attacker on the database host) and take new backups")
                .into());
            }
            Err(Error::new(
                ErrorKind::Integrity,
                format!("damaged: {}", if names.is_empty() { "repository".to_string() } else { names.join(", ") }),
            )
            .hint("restore from an older backup or an offsite copy; a pack named damaged would be reused by every later backup: move its file out of the repository's data/ directory, then `lifeboat repair index` (README: A lost pack file)")
            .into())
        }
    }
}
