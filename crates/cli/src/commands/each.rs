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
    /// What went wrong, per source: the last lines a mail shows.
    causes: Vec<Cause>,
}

/// One source's trouble in an `--all` run.
struct Cause {
    what: String,
    /// Its first line, cut short: a mail's last lines must stay readable.
    line: String,
    hint: Option<String>,
    /// The work was done (a backup stored, a drill passed) and something after it failed
    /// (its evidence could not be published): counted as done, and named apart.
    done: bool,
}

/// How long one cause may be in the last lines.
const CAUSE_CHARS: usize = 200;

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
        self.record(what, e, false)
    }

    /// As [`Self::failed`], for work that was done (a drill passed, a backup stored) with
    /// something after it failed (its evidence not published): it counts as done, and the
    /// exit code still says what failed.
    pub fn incomplete(&mut self, what: &str, e: anyhow::Error) -> anyhow::Result<()> {
        self.record(what, e, true)
    }

    fn record(&mut self, what: &str, e: anyhow::Error, done: bool) -> anyhow::Result<()> {
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
        let full = format!("{e:#}");
        let line = lifeboat_core::error::headline(&full);
        let line = match line.char_indices().nth(CAUSE_CHARS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_string(),
        };
        self.causes.push(Cause {
            what: what.to_string(),
            line,
            hint,
            done,
        });
        Ok(())
    }

    /// Prints the last line (not with `--json`) and gives the run's outcome: one error
    /// naming every failed source with its cause.
    pub fn finish(self) -> anyhow::Result<()> {
        let total = self.total;
        let names = |done: bool| -> Vec<&str> {
            self.causes
                .iter()
                .filter(|c| c.done == done)
                .map(|c| c.what.as_str())
                .collect()
        };
        let (failed, incomplete) = (names(false), names(true));
        if !self.ctx.json {
            println!(
                "{} of {total} {} {}{}{}",
                total - failed.len(),
                self.unit,
                self.done,
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; FAILED: {}", failed.join(", "))
                },
                if incomplete.is_empty() {
                    String::new()
                } else {
                    format!("; evidence INCOMPLETE: {}", incomplete.join(", "))
                }
            );
        }
        if self.causes.is_empty() {
            return Ok(());
        }
        // one cause's own hint when every failure has it (the repository's disk is full),
        // else where to look
        let hint = match self.causes.first().and_then(|c| c.hint.clone()) {
            Some(h) if self.causes.iter().all(|c| c.hint.as_deref() == Some(h.as_str())) => h,
            _ => "each failure and its hint is said above; run it again with --source NAME once its cause is gone".to_string(),
        };
        let list = |done: bool| {
            self.causes
                .iter()
                .filter(|c| c.done == done)
                .map(|c| format!("{} ({})", c.what, c.line))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let message = match (failed.len(), incomplete.len()) {
            (0, n) => format!(
                "{total} of {total} {} {}, but the evidence of {n} is incomplete: {}",
                self.unit,
                self.done,
                list(true)
            ),
            (f, 0) => format!("{f} of {total} {} failed: {}", self.unit, list(false)),
            (f, n) => format!(
                "{f} of {total} {} failed: {}; and the evidence of {n} more is incomplete: {}",
                self.unit,
                list(false),
                list(true)
            ),
        };
        Err(
            lifeboat_core::Error::new(self.first_kind.unwrap_or(ErrorKind::Internal), message)
                .hint(hint)
                .into(),
        )
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
