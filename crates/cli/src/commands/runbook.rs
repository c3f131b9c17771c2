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
        // the commands act on what this runbook was written from: with --repo, that
        // repository and not the configured one
        let mut hint: Vec<String> = Vec::new();
        if let Some(p) = ctx
            .config_path
            .as_ref()
            .and_then(|p| std::path::absolute(p).ok())
        {
            hint.push(format!(
                "--config {}",
                lifeboat_core::ops::runbook::sh(&p.display().to_string())
            ));
        }
        if let Some(r) = &ctx.repo_override {
            hint.push(format!("--repo {}", lifeboat_core::ops::runbook::sh(r)));
        }
        let hint = hint.join(" ");
        let book = runbook(&repo, &ctx.config, &hint)?;
        // --json: the Markdown with the state it was written from, as other commands do
        let text = if ctx.json {
            serde_json::to_string_pretty(&book)? + "\n"
        } else {
            book.markdown
        };
        match &self.output {
            Some(p) => {
                crate::output::write_file(p, &text)?;
                if ctx.json {
                    // stdout stays one JSON document, as `report -o` does
                    return crate::output::json(
                        &serde_json::json!({ "written_to": p, "what": "runbook" }),
                    );
                }
                println!("runbook written to {}", p.display());
            }
            None => crate::output::document(&text),
        }
        Ok(())
    }
}
