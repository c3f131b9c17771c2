//! `lifeboat config check`: validate the file and test every connection.

use clap::Subcommand;
use lifeboat_core::ops::backup::check_source;

use crate::{output, Ctx};

/// Configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration, open the repository and connect to every source.
    Check,
}

#[derive(serde::Serialize)]
struct CheckLine {
    what: String,
    ok: bool,
    detail: String,
}

impl ConfigCmd {
    /// Runs the check; fails when any line fails.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        let path = ctx
            .config_path
            .as_ref()
            .map_or_else(|| "(no file)".to_string(), |p| p.display().to_string());
        lines.push(CheckLine {
            what: "configuration".into(),
            ok: true,
            detail: format!("{path} is valid"),
        });
        let repo = ctx.open();
        let mut first_err = None;
        match repo {
            Ok(r) => lines.push(CheckLine {
                what: "repository".into(),
                ok: true,
                detail: format!("opened {}", r.location()),
            }),
            Err(e) => {
                lines.push(CheckLine {
                    what: "repository".into(),
                    ok: false,
                    detail: e.to_string(),
                });
                first_err = Some(e);
            }
        }
        for src in &ctx.config.sources {
            let res = check_source(src);
            match res {
                Ok(d) => lines.push(CheckLine {
                    what: format!("source {}", src.name),
                    ok: true,
                    detail: format!("connected: {d}"),
                }),
                Err(e) => {
                    lines.push(CheckLine {
                        what: format!("source {}", src.name),
                        ok: false,
                        detail: e.to_string(),
                    });
                    first_err.get_or_insert(e.into());
                }
            }
        }
        for (what, r) in lifeboat_core::repository::head::check(&ctx.config.audit) {
            match r {
                Ok(detail) => lines.push(CheckLine {
                    what,
                    ok: true,
                    detail,
                }),
                Err(e) => {
                    lines.push(CheckLine {
                        what,
                        ok: false,
                        detail: e.to_string(),
                    });
                    first_err.get_or_insert(e.into());
                }
            }
        }
        if ctx.json {
            output::json(&lines)?;
        } else {
            for l in &lines {
                println!(
                    "{} {:<20} {}",
                    if l.ok { "ok  " } else { "FAIL" },
                    l.what,
                    l.detail
                );
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
