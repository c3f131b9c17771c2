//! `repair index`: an index that names lost pack files, or misses packs that are there,
//! rebuilt from the packs the repository holds (rustic_core's index repair), logged in the
//! audit log.

use serde::Serialize;

use crate::{error::Result, repository::Repo};

/// What an index repair found and left.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RepairReport {
    /// Packs the index named that were gone, before the repair (short ids).
    pub lost_packs: Vec<String>,
    /// Packs still named but gone after it (none when it worked).
    pub still_lost: Vec<String>,
    /// Pending snapshots older than a day removed: placeholders of backups killed before
    /// they finished (no backup lists them; a running backup's is younger).
    pub stale_pending_removed: usize,
}

/// A pending snapshot older than this belongs to no running backup.
const STALE_PENDING: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

impl RepairReport {
    /// What happened to the index, in one line.
    #[must_use]
    pub fn summary(&self) -> String {
        if self.lost_packs.is_empty() {
            "index rebuilt from the pack files; no pack was lost".to_string()
        } else {
            format!(
                "index rebuilt from the pack files; {} lost pack(s) dropped from it: {}",
                self.lost_packs.len(),
                self.lost_packs.join(", ")
            )
        }
    }

    /// `"; N stale pending snapshot(s) removed"`, or nothing.
    #[must_use]
    pub fn pending_note(&self) -> String {
        if self.stale_pending_removed == 0 {
            String::new()
        } else {
            format!(
                "; {} pending snapshot(s) of backups interrupted over a day ago removed",
                self.stale_pending_removed
            )
        }
    }
}

/// Rebuilds the index of `repo` (see [`Repo::repair_index`]). Backups whose data was in a
/// lost pack stay damaged: `verify` names them, and the next backup stores that data again.
///
/// # Errors
///
/// When the repository cannot be read or written.
pub fn repair_index(repo: &Repo) -> Result<RepairReport> {
    let result = (|| {
        let lost_packs = repo.missing_packs()?;
        repo.repair_index()?;
        let still_lost = repo.missing_packs()?;
        let now = jiff::Timestamp::now();
        let stale: Vec<_> = repo
            .pending()?
            .into_iter()
            .filter(|s| now.duration_since(s.time.timestamp()) > STALE_PENDING)
            .collect();
        for s in &stale {
            repo.discard(s)?;
        }
        Ok(RepairReport {
            lost_packs,
            still_lost,
            stale_pending_removed: stale.len(),
        })
    })();
    let details = match &result {
        Ok(r) => format!("{}{}", r.summary(), r.pending_note()),
        Err(e) => format!("index repair: {e}"),
    };
    crate::repository::audit::record(repo, "repair", result, &details)
}
