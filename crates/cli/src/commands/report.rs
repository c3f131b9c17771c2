//! `lifeboat report`: the evidence pack for an audit period.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::ops::report::{evidence_pack, markdown};

use super::parse_time;
use crate::{output, Ctx};

/// Build the evidence pack for a period.
#[derive(Debug, Args)]
pub struct ReportCmd {
    /// Start of the period (default: 90 days before --to).
    #[arg(long, value_parser = parse_time)]
    from: Option<jiff::Timestamp>,
    /// End of the period (default: now).
    #[arg(long, value_parser = parse_time)]
    to: Option<jiff::Timestamp>,
    /// Write the Markdown here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

impl ReportCmd {
    /// Builds and prints or writes the pack.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let to = self.to.unwrap_or_else(jiff::Timestamp::now);
        let from = match self.from {
            Some(f) => f,
            None => to.checked_sub(jiff::SignedDuration::from_hours(24 * 90))?,
        };
        if from > to {
            return Err(lifeboat_core::Error::config("--from is after --to")
                .hint("give the start of the period first")
                .into());
        }
        let repo = ctx.open()?;
        let pack = evidence_pack(&repo, &ctx.config, from, to)?;
        if ctx.json {
            return output::json(&pack);
        }
        let text = markdown(&pack);
        match &self.output {
            Some(p) => {
                std::fs::write(p, text)?;
                println!("evidence pack written to {}", p.display());
            }
            None => print!("{text}"),
        }
        Ok(())
    }
}
