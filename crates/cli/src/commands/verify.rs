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
    /// Check the backups of the newest run (of each source, or of --source): what a
    /// backup job just made.
    #[arg(long, conflicts_with_all = ["ids", "all"])]
    latest: bool,
    /// With --latest: only this source's newest run.
    #[arg(long, short, requires = "latest")]
    source: Option<String>,
    /// Read every pack and check that it decrypts and hashes correctly.
    #[arg(long)]
    read_data: bool,
    /// Read only a subset: 10%, 1/5 or a size such as 500MiB.
    #[arg(long)]
    read_data_subset: Option<String>,
}

/// The ids of the backups of each source's newest run (its newest recovery point), or of
/// `source`'s.
fn newest_run(
    repo: &lifeboat_core::repository::Repo,
    source: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    use lifeboat_core::ops::list::{list, ListFilter};
    let all = list(
        repo,
        &ListFilter {
            source: source.map(str::to_string),
            ..ListFilter::default()
        },
    )?;
    // a run's backups share its recovery point (a backup from before lifeboat recorded
    // it is a run of its own)
    let run = |b: &lifeboat_core::repository::SnapshotInfo| {
        b.meta
            .recovery_point
            .clone()
            .unwrap_or_else(|| b.meta.finished_at.strftime("%Y%m%dT%H%M%SZ").to_string())
    };
    let mut newest: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for b in &all {
        let point = newest.entry(b.meta.source.as_str()).or_default();
        let this = run(b);
        if this > *point {
            *point = this;
        }
    }
    let ids: Vec<String> = all
        .iter()
        .filter(|b| newest.get(b.meta.source.as_str()) == Some(&run(b)))
        .map(|b| b.id.clone())
        .collect();
    if ids.is_empty() {
        return Err(lifeboat_core::Error::not_found(match source {
            Some(s) => format!("source {s:?} has no backup to verify"),
            None => "the repository holds no backup to verify".to_string(),
        })
        .hint("`lifeboat list` shows the backups")
        .into());
    }
    Ok(ids)
}

impl VerifyCmd {
    /// Verifies and fails (exit 6) when anything is damaged.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.ids.is_empty() && !self.all && !self.latest {
            return Err(Error::config("which backups? no backup ids given")
                .hint("give backup ids, --latest (the newest run) or --all (`lifeboat list` shows the ids)")
                .into());
        }
        let what = if self.all {
            "all backups".to_string()
        } else if self.latest {
            "the newest run's backups".to_string()
        } else {
            format!("backup(s) {}", self.ids.join(", "))
        };
        let repo = ctx.open_logged("verify", &what)?;
        let ids = if self.latest {
            if let Some(e) = super::list::unknown_name(ctx, &repo, self.source.as_deref(), None)? {
                return Err(e.into());
            }
            newest_run(&repo, self.source.as_deref())?
        } else {
            self.ids.clone()
        };
        let report = verify(
            &repo,
            &VerifyOptions {
                ids,
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
            if let Some(note) =
                lifeboat_core::repository::audit::unlogged_note(&report.unlogged_backups)
            {
                println!("NOTE     {note}");
            }
            for p in &report.history_problems {
                // a backup gone, or the log's own record broken or missing a backup
                let label = if p.contains("no longer in the repository") {
                    "MISSING"
                } else {
                    "AUDIT  "
                };
                println!("{label}  {p}");
            }
            let damaged = report.backups.iter().filter(|b| !b.ok).count();
            let others = report.repository_problems.len() + report.history_problems.len();
            println!(
                "{} backup(s) checked, {}{}",
                report.backups.len(),
                match (damaged, others, report.ok()) {
                    (0, 0, true) => "all ok".to_string(),
                    (0, _, _) => format!("none damaged, {others} other problem(s) above"),
                    (d, 0, _) => format!("{d} DAMAGED"),
                    (d, o, _) => format!("{d} DAMAGED, {o} other problem(s) above"),
                },
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
        if let (false, Some(g)) = (report.ok(), &report.evidence_gap) {
            // the damage decides the exit code; the missing head is said too
            crate::output::write_err(format_args!("warning: {}\n", g.message));
        }
        if report.ok() {
            // the verdict above stands; the evidence of it outside the repository lags
            report
                .evidence_gap
                .as_ref()
                .map_or(Ok(()), |g| Err(g.error().into()))
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
