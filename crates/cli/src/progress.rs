//! Terminal progress for rustic_core's operations and lifeboat's own steps: indicatif bars
//! on a terminal, nothing when output is piped or `--json` is given.
//!
//! Every bar is drawn by one [`MultiProgress`], so that a spinner and rustic's bars never
//! draw over each other, and lifeboat's own lines (see [`print_above`]) go above them.
//! Next to each bar stands what the library says it is doing now
//! ([`lifeboat_core::status`]); while another process writes to the terminal (a restore
//! hook) nothing is drawn.

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// Chooses bars or silence once, at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Bars {
    visible: bool,
}

/// The bars on screen, each with its own words (the status is added to them).
struct Shown {
    multi: MultiProgress,
    bars: Mutex<Vec<(ProgressBar, String)>>,
}

static SHOWN: OnceLock<Shown> = OnceLock::new();

/// Set by [`clear_for_exit`]: the display stays off (a hook that ends during the
/// interrupt's clean-up must not bring it back).
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Hides the display while other processes write to the terminal, shows it again after.
fn others_writing(writing: bool) {
    if let Some(s) = SHOWN.get() {
        if writing {
            let _ = s.multi.clear();
            s.multi.set_draw_target(ProgressDrawTarget::hidden());
        } else if !EXITING.load(std::sync::atomic::Ordering::SeqCst) {
            s.multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

/// The display, started with its refresher on first use.
fn shown() -> &'static Shown {
    SHOWN.get_or_init(|| {
        lifeboat_core::status::set_display(others_writing);
        std::thread::spawn(refresh);
        Shown {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(Vec::new()),
        }
    })
}

/// Puts the library's status next to each bar.
fn refresh() {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Some(s) = SHOWN.get() else { continue };
        let now = lifeboat_core::status::now();
        if let Ok(mut bars) = s.bars.lock() {
            bars.retain(|(pb, _)| !pb.is_finished());
            for (pb, words) in bars.iter() {
                pb.set_message(match (&now, words.is_empty()) {
                    (Some(n), true) => n.clone(),
                    (Some(n), false) => format!("{words}: {n}"),
                    (None, _) => words.clone(),
                });
            }
        }
    }
}

/// Takes every bar off the terminal for good: an interrupt's messages and the shell's
/// prompt come after it, never after a last frame.
pub fn clear_for_exit() {
    EXITING.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(s) = SHOWN.get() {
        if let Ok(bars) = s.bars.lock() {
            for (pb, _) in bars.iter() {
                pb.finish_and_clear();
            }
        }
        let _ = s.multi.clear();
        s.multi.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// Whether one of lifeboat's own spinners is turning (it says the step; rustic's bars for
/// the repository work under it would only flicker below).
fn spinner_turning() -> bool {
    SHOWN.get().is_some_and(|s| {
        s.bars.lock().is_ok_and(|b| {
            b.iter()
                .any(|(pb, words)| !words.is_empty() && !pb.is_finished())
        })
    })
}

/// Writes lifeboat's own output with the bars, if any, out of the way: a line printed
/// while a spinner turns would otherwise be drawn over (or leave a stale frame above it).
pub fn print_above(write: impl FnOnce()) {
    match SHOWN.get() {
        Some(s) if !lifeboat_core::status::others_are_writing() => s.multi.suspend(write),
        _ => write(),
    }
}

/// Adds `pb` to the display, its message `words` and the status.
fn show(pb: ProgressBar, words: &str) -> ProgressBar {
    let s = shown();
    let pb = s.multi.add(pb);
    pb.set_message(words.to_string());
    if let Ok(mut bars) = s.bars.lock() {
        bars.push((pb.clone(), words.to_string()));
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
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
            // to the second: "2m" for 90 s read as stalled next to a summary of "1m30s"
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                    .expect("template"),
            );
            show(pb, msg)
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
struct Bar {
    pb: ProgressBar,
    kind: ProgressType,
}

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.pb.set_length(len);
        // a known total (the packs `verify --read-data` reads): how far, and how long left
        if len > 0 {
            let template = match self.kind {
                ProgressType::Bytes => Some(
                    "{spinner} {prefix:20} {percent:>3}% {bytes}/{total_bytes} at {bytes_per_sec}, {eta} left {wide_msg}",
                ),
                ProgressType::Counter => {
                    Some("{spinner} {prefix:20} {pos}/{len} {elapsed_precise} {wide_msg}")
                }
                ProgressType::Spinner => None,
            };
            if let Some(t) = template {
                self.pb
                    .set_style(ProgressStyle::with_template(t).expect("template"));
            }
        }
    }
    fn set_title(&self, title: &str) {
        self.pb.set_prefix(title.to_string());
    }
    fn inc(&self, inc: u64) {
        self.pb.inc(inc);
    }
    fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

/// A bar rustic drops without finishing it (an error path) goes too, instead of turning
/// under every later line until the process ends.
impl Drop for Bar {
    fn drop(&mut self) {
        if !self.pb.is_finished() {
            self.pb.finish_and_clear();
        }
    }
}

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        // rustic's bars for lifeboat's incidental writes (a pending snapshot replaced, a
        // report stored after the work): not the step the operator waits for
        let incidental = prefix.starts_with("removing snapshots")
            || (prefix.starts_with("backing up") && lifeboat_core::status::now().is_none())
            || spinner_turning();
        if !self.visible || incidental {
            return Progress::hidden();
        }
        let template = match progress_type {
            ProgressType::Spinner => "{spinner} {prefix:20} {elapsed_precise} {wide_msg}",
            ProgressType::Counter => {
                "{spinner} {prefix:20} {pos}/{len} {elapsed_precise} {wide_msg}"
            }
            // the length of a dump stream is unknown: show bytes and throughput
            ProgressType::Bytes => {
                "{spinner} {prefix:20} {bytes} at {bytes_per_sec} {elapsed_precise} {wide_msg}"
            }
        };
        let pb = ProgressBar::new(0);
        pb.set_style(ProgressStyle::with_template(template).expect("template"));
        pb.set_prefix(prefix.to_string());
        Progress::new(Bar {
            pb: show(pb, ""),
            kind: progress_type,
        })
    }
}
