//! `--all`: one command over every configured source, in the configuration's order. A
//! source that fails is said with its own hint and the next one is taken, because a cron
//! line over forty databases must not lose thirty-nine to one; the last lines name each
//! failure, and the exit code is the first failure's, or damage's when there was damage.

use lifeboat_core::ErrorKind;

use crate::{output, Ctx};

/// The failures of an `--all` run so far.
pub struct Each<'a> {
    ctx: &'a Ctx,
    /// What is counted: "sources", "drills".
    unit: &'static str,
    /// What was done to those that did not fail: "backed up", "passed".
    done: &'static str,
    /// How many were taken (headings given).
    total: usize,
    first_kind: Option<ErrorKind>,
    /// (source, what went wrong in one line, its hint): the last lines a mail shows
    causes: Vec<(String, String, Option<String>)>,
}

impl<'a> Each<'a> {
    /// An `--all` run over `unit`s, whose last line counts those that did not fail as
    /// `done` ("2 of 3 sources backed up").
    pub fn new(ctx: &'a Ctx, unit: &'static str, done: &'static str) -> anyhow::Result<Self> {
        if ctx.config.sources.is_empty() {
            // the usual error and hint for a configuration without sources
            ctx.source(None)?;
        }
        Ok(Self {
            ctx,
            unit,
            done,
            total: 0,
            first_kind: None,
            causes: Vec::new(),
        })
    }

    /// The sources to go through.
    pub fn sources(&self) -> &'a [lifeboat_core::config::SourceConfig] {
        &self.ctx.config.sources
    }

    /// Says which one comes next (not with `--json`): a source's name, or its name and a
    /// part of it ("app-db database billing").
    pub fn heading(&mut self, what: &str) {
        self.total += 1;
        if !self.ctx.json {
            println!("== source {what}");
        }
    }

    /// Records that `what` (as given to [`Self::heading`]) failed with `e` and says so
    /// with its hint. An interrupt stops the whole run: it is given back to be returned.
    pub fn failed(&mut self, what: &str, e: anyhow::Error) -> anyhow::Result<()> {
        let kind = error_kind(&e);
        if kind == ErrorKind::Interrupted {
            return Err(e);
        }
        let hint = core_error(&e).and_then(|c| c.hint_text().map(str::to_string));
        output::write_err(format_args!(
            "lifeboat: source {what}: {e:#}\n{}",
            hint.as_deref()
                .map(|h| format!("hint: {h}\n"))
                .unwrap_or_default()
        ));
        // damage outranks an outage in the exit code: it needs a person, not a retry
        if self.first_kind.is_none() || kind == ErrorKind::Integrity {
            self.first_kind = Some(kind);
        }
        self.causes.push((
            what.to_string(),
            lifeboat_core::error::headline(&format!("{e:#}")).to_string(),
            hint,
        ));
        Ok(())
    }

    /// Prints the last line (not with `--json`) and gives the run's outcome: one error
    /// naming every failed source with its cause.
    pub fn finish(self) -> anyhow::Result<()> {
        let total = self.total;
        let failed: Vec<&str> = self.causes.iter().map(|c| c.0.as_str()).collect();
        if !self.ctx.json {
            println!(
                "{} of {total} {} {}{}",
                total - failed.len(),
                self.unit,
                self.done,
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; FAILED: {}", failed.join(", "))
                }
            );
        }
        if failed.is_empty() {
            return Ok(());
        }
        // one cause's own hint when every failure has it (the repository's disk is full),
        // else where to look
        let hint = match self.causes.first().and_then(|c| c.2.clone()) {
            Some(h) if self.causes.iter().all(|c| c.2.as_deref() == Some(h.as_str())) => h,
            _ => "each failure and its hint is said above; run it again with --source NAME once its cause is gone".to_string(),
        };
        Err(lifeboat_core::Error::new(
            self.first_kind.unwrap_or(ErrorKind::Internal),
            format!(
                "{} of {total} {} failed: {}",
                failed.len(),
                self.unit,
                self.causes
                    .iter()
                    .map(|(s, what, _)| format!("{s} ({what})"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .hint(hint)
        .into())
    }
}

/// The library error behind `e`.
pub fn core_error(e: &anyhow::Error) -> Option<&lifeboat_core::Error> {
    e.chain()
        .find_map(|c| c.downcast_ref::<lifeboat_core::Error>())
}

/// The kind of the library error behind `e`, which decides the exit code.
pub fn error_kind(e: &anyhow::Error) -> ErrorKind {
    core_error(e).map_or(ErrorKind::Internal, lifeboat_core::Error::kind)
}
