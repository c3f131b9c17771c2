//! `lifeboat repair index`.

use clap::Subcommand;
use lifeboat_core::ops::repair::repair_index;

use crate::{output, Ctx};

/// Repair the repository.
#[derive(Debug, Subcommand)]
pub enum RepairCmd {
    /// Rebuild the index from the pack files there are: lost packs leave it (the next backup
    /// stores their data again), packs no index names are read into it; pending snapshots
    /// of backups interrupted over a day ago are removed.
    Index,
}

impl RepairCmd {
    /// Runs the repair; fails when lost packs are still named afterwards.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let Self::Index = self;
        let repo = ctx.open()?;
        let report = ctx
            .bars
            .spinning("rebuilding the index from the packs", || {
                repair_index(&repo)
            })?;
        output::warn_repository(&repo);
        if ctx.json {
            output::json(&report)?;
        } else {
            println!("{}{}", report.summary(), report.pending_note());
            if !report.lost_packs.is_empty() {
                println!("the next backup stores their data again; the backups that held data in them stay damaged: `lifeboat verify --all` names them");
            }
        }
        if !report.still_lost.is_empty() {
            return Err(lifeboat_core::Error::integrity(format!(
                "the index still names lost packs: {}",
                report.still_lost.join(", ")
            ))
            .into());
        }
        Ok(())
    }
}
