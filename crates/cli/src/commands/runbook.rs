//! `lifeboat runbook`.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::ops::runbook::runbook;

use crate::Ctx;

/// Write the disaster-recovery runbook.
#[derive(Debug, Args)]
pub struct RunbookCmd {
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

impl RunbookCmd {
    /// Generates the runbook from the config and the repository.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let repo = ctx.open()?;
        let hint = ctx
            .config_path
            .as_ref()
            .and_then(|p| std::path::absolute(p).ok())
            .map(|p| format!("--config {}", p.display()))
            .unwrap_or_default();
        let text = runbook(&repo, &ctx.config, &hint)?;
        match &self.output {
            Some(p) => std::fs::write(p, text)?,
            None => print!("{text}"),
        }
        Ok(())
    }
}
