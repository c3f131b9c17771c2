//! `lifeboat runbook`.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::ops::runbook::runbook;

use crate::Ctx;

/// Write the disaster-recovery runbook.
#[derive(Debug, Args)]
pub struct RunbookCmd {
    /// Write to this file instead of stdout (with --json: the JSON).
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
        let book = runbook(&repo, &ctx.config, &hint)?;
        // --json: the Markdown with the state it was written from, as other commands do
        let text = if ctx.json {
            serde_json::to_string_pretty(&book)? + "\n"
        } else {
            book.markdown
        };
        match &self.output {
            Some(p) => std::fs::write(p, text)?,
            None => print!("{text}"),
        }
        Ok(())
    }
}
