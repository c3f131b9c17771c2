//! `lifeboat repair index`.

use clap::Subcommand;
use lifeboat_core::ops::repair::repair_index;

use crate::{output, Ctx};

/// Repair the repository.
#[derive(Debug, Subcommand)]
pub enum RepairCmd {
    /// Rebuild the index from the pack files there are: lost packs leave it (the next backup
    /// stores their data again), packs no index names are read into it.
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
        } else if report.lost_packs.is_empty() {
            println!("index rebuilt from the pack files; no pack was lost");
        } else {
            println!(
                "index rebuilt from the pack files; {} lost pack(s) dropped from it: {}",
                report.lost_packs.len(),
                report.lost_packs.join(", ")
            );
            println!("the next backup stores their data again; the backups that held data in them stay damaged: `lifeboat verify --all` names them");
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
