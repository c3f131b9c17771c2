//! Terminal progress for rustic_core's operations: indicatif bars on a terminal, nothing
//! when output is piped or `--json` is given.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// Chooses bars or silence once, at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Bars {
    visible: bool,
}

impl Bars {
    /// Bars only when stderr is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        Self {
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Whether bars are drawn.
    pub fn visible(self) -> bool {
        self.visible
    }

    /// A spinner with a message, for lifeboat's own steps.
    pub fn spinner(self, msg: &str) -> Option<ProgressBar> {
        self.visible.then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"),
            );
            pb.set_message(msg.to_string());
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        })
    }

    /// Runs `f` with a spinner showing `msg` (on a terminal), cleared afterwards.
    pub fn spinning<T>(self, msg: &str, f: impl FnOnce() -> T) -> T {
        let spinner = self.spinner(msg);
        let out = f();
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        out
    }
}

#[derive(Debug)]
struct Bar(ProgressBar);

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.0.set_prefix(title.to_string());
    }
    fn inc(&self, inc: u64) {
        self.0.inc(inc);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        if !self.visible {
            return Progress::hidden();
        }
        let template = match progress_type {
            ProgressType::Spinner => "{spinner} {prefix:20} {elapsed}",
            ProgressType::Counter => "{spinner} {prefix:20} {pos}/{len} {elapsed}",
            // the length of a dump stream is unknown: show bytes and throughput
            ProgressType::Bytes => "{spinner} {prefix:20} {bytes} at {bytes_per_sec} {elapsed}",
        };
        let pb = ProgressBar::new(0);
        pb.set_style(ProgressStyle::with_template(template).expect("template"));
        pb.set_prefix(prefix.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Progress::new(Bar(pb))
    }
}
