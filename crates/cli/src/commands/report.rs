//! `lifeboat report`: the evidence pack for an audit period.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::ops::report::{evidence_pack, markdown};

use super::{parse_since, parse_until};
use crate::{output, Ctx};

/// Build the evidence pack for a period.
#[derive(Debug, Args)]
pub struct ReportCmd {
    /// Start of the period (default: 90 days before --to; a bare date: the start of that
    /// day; or a time ago: 30d).
    #[arg(long, value_parser = |s: &str| parse_since(s).map(|at| (at, s.to_string())))]
    from: Option<(jiff::Timestamp, String)>,
    /// End of the period, included (default: now; a bare date: the end of that day, so
    /// `--from 2026-07-01 --to 2026-09-30` covers the whole of 30 September).
    #[arg(long, value_parser = |s: &str| parse_until(s).map(|at| (at, s.to_string())))]
    to: Option<(jiff::Timestamp, String)>,

    /// Write the Markdown here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Instead of a period: render the stored report of this drill again (its id, as
    /// `drill-20261205T182838Z-3f2a`), e.g. for an auditor asking for a past drill.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    drill: Option<String>,
    /// With --drill: md (default), html or json.
    #[arg(long, value_parser = ["md", "html", "json"], requires = "drill")]
    format: Option<String>,
}

impl ReportCmd {
    /// Builds and prints or writes the pack.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if let Some(id) = &self.drill {
            let repo = ctx.open()?;
            let report = lifeboat_core::ops::evidence::load(&repo, id)?;
            // --json is stdout's form: a --format given for the file (-o) is honoured
            let format = match (self.format.as_deref(), ctx.json) {
                (Some(f @ ("md" | "html")), true) if self.output.is_none() => {
                    return Err(lifeboat_core::Error::config(format!(
                        "--format {f} and --json both name what stdout gets"
                    ))
                    .hint(format!(
                        "write the {f} report to a file with -o FILE (stdout then gets a JSON acknowledgement), or leave --json out"
                    ))
                    .into());
                }
                (Some(f), _) => f,
                (None, true) => "json",
                (None, false) => "md",
            };
            let text = match format {
                "json" => serde_json::to_string_pretty(&report)? + "\n",
                "html" => lifeboat_core::ops::evidence::html(&report),
                _ => lifeboat_core::ops::evidence::markdown(&report),
            };
            return self.emit(&text, "drill report", ctx.json);
        }
        let to = self.to.as_ref().map_or_else(jiff::Timestamp::now, |t| t.0);
        let from = match &self.from {
            Some(f) => f.0,
            None => to.checked_sub(jiff::SignedDuration::from_hours(24 * 90))?,
        };
        if from > to {
            return Err(lifeboat_core::Error::config("--from is after --to")
                .hint("give the start of the period first")
                .into());
        }
        let repo = ctx.open()?;
        let mut pack = evidence_pack(&repo, &ctx.config, from, to)?;
        pack.asked = period_asked(
            self.from.as_ref().map(|f| f.1.as_str()),
            self.to.as_ref().map(|t| t.1.as_str()),
        );
        output::warn_repository(&repo);
        let text = if ctx.json {
            serde_json::to_string_pretty(&pack)? + "\n"
        } else {
            markdown(&pack)
        };
        self.emit(&text, "evidence pack", ctx.json)?;
        // the pack is written either way (it says what is wrong); the exit status says it
        // cannot be relied on, as `audit verify` does
        if !pack.ok() {
            return Err(lifeboat_core::Error::integrity(format!(
                "the evidence does not verify: {}",
                pack.problems()
            ))
            .hint("someone with access to the repository changed its history or its drill reports: keep a copy of the repository and investigate")
            .into());
        }
        Ok(())
    }

    /// Writes `text` to `--output`, or prints it.
    fn emit(&self, text: &str, what: &str, json: bool) -> anyhow::Result<()> {
        match &self.output {
            Some(p) => {
                crate::output::write_file(p, text)?;
                if json {
                    // stdout stays one JSON document; the pack itself is in the file
                    return output::json(&serde_json::json!({ "written_to": p, "what": what }));
                }
                println!("{what} written to {}", p.display());
            }
            None => output::document(text),
        }
        Ok(())
    }
}

/// `--from` and `--to` as they were typed, when one of them was read in this machine's
/// time zone: the same dates cover another period on a host in another zone.
fn period_asked(from: Option<&str>, to: Option<&str>) -> Option<String> {
    let local = [from, to].into_iter().flatten().any(super::reads_local);
    local.then(|| {
        let shown = [("--from", from), ("--to", to)]
            .into_iter()
            .filter_map(|(f, v)| v.map(|v| format!("{f} {v}")))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "`{shown}`, read in {}",
            jiff::tz::TimeZone::system()
                .iana_name()
                .unwrap_or("this machine's time zone")
        )
    })
}
