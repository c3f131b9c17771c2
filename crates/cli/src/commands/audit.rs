//! `lifeboat audit list | verify`.

use std::path::PathBuf;

use clap::Subcommand;
use lifeboat_core::{repository::audit, Error, ErrorKind};

use crate::{output, Ctx};

/// Audit-log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print the audit log, oldest first.
    List,
    /// Check the hash chain: names every edited, removed or reordered entry.
    Verify {
        /// Head hash recorded earlier (e.g. from a drill report): detects removed newest entries.
        #[arg(long)]
        expected_head: Option<String>,
        /// File outside the repository holding the head: checked against, then updated.
        #[arg(long)]
        head_file: Option<PathBuf>,
    },
}

impl AuditCmd {
    /// Runs the command; `verify` exits 6 when the chain is broken.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let repo = ctx.open()?;
        match self {
            Self::List => {
                let entries = audit::entries(&repo)?;
                if ctx.json {
                    return output::json(&entries);
                }
                for e in &entries {
                    println!(
                        "{:>5}  {}  {:<8} {:<6} {}",
                        e.seq,
                        output::time(e.time),
                        e.action,
                        e.outcome,
                        e.details
                    );
                }
                Ok(())
            }
            Self::Verify {
                expected_head,
                head_file,
            } => {
                let from_file = match head_file {
                    Some(f) if f.exists() => Some(std::fs::read_to_string(f)?.trim().to_string()),
                    _ => None,
                };
                let expected = expected_head.clone().or(from_file);
                let v = audit::verify(&repo, expected.as_deref())?;
                if ctx.json {
                    output::json(&v)?;
                } else {
                    for p in &v.problems {
                        println!("BROKEN  {p}");
                    }
                    println!(
                        "{} entries, head {}{}",
                        v.entries,
                        v.head.as_deref().map_or("-", |h| &h[..16]),
                        if v.ok() { ": chain intact" } else { "" }
                    );
                }
                if !v.ok() {
                    return Err(Error::new(ErrorKind::Integrity, format!("the audit log is not intact: {}", v.problems.join("; ")))
                        .hint("someone with access to the repository changed its history: keep a copy and investigate")
                        .into());
                }
                if let (Some(f), Some(h)) = (head_file, &v.head) {
                    std::fs::write(f, format!("{h}\n"))?;
                }
                Ok(())
            }
        }
    }
}
