//! `repair index`: an index that names lost pack files, or misses packs that are there,
//! rebuilt from the packs the repository holds (rustic_core's index repair), logged in the
//! audit log.

use serde::Serialize;

use crate::{error::Result, repository::Repo};

/// What an index repair found and left.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// Packs the index named that were gone, before the repair (short ids).
    pub lost_packs: Vec<String>,
    /// Packs still named but gone after it (none when it worked).
    pub still_lost: Vec<String>,
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
        Ok(RepairReport {
            lost_packs,
            still_lost,
        })
    })();
    let details = match &result {
        Ok(r) if r.lost_packs.is_empty() => {
            "index rebuilt from the packs; no pack was lost".to_string()
        }
        Ok(r) => format!(
            "index rebuilt from the packs; {} lost pack(s) dropped from it: {}",
            r.lost_packs.len(),
            r.lost_packs.join(", ")
        ),
        Err(e) => format!("index repair: {e}"),
    };
    crate::repository::audit::record(repo, "repair", result, &details)
}
