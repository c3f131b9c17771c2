//! What a long operation is doing right now, for a progress display: the phase it is in
//! ("building indexes") or what it waits for ("PostgreSQL to archive the WAL this backup
//! needs"). The library only says it; a program shows it (the CLI next to its spinner).
//!
//! One line for the process: operations run one at a time in a CLI, and a program running
//! several at once gets the newest.

use std::sync::Mutex;

/// What is being done, newest last, each with the id of its guard: phases that overlap
/// (a fetch while a cluster starts) end in any order.
static NOW: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());

/// Whether output from other processes (a restore hook) is going to the terminal now:
/// a display draws nothing meanwhile, or it would garble that output.
static OTHERS_WRITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Says what the operation does now, until the guard is dropped (then what was said
/// before, and is still under way, comes back).
#[must_use]
pub fn doing(what: impl Into<String>) -> Doing {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut n) = NOW.lock() {
        n.push((id, what.into()));
    }
    Doing(id)
}

/// See [`doing`].
pub struct Doing(u64);

impl Doing {
    /// Says something else for the same step (a count that grows).
    pub fn say(&self, what: impl Into<String>) {
        if let Ok(mut n) = NOW.lock() {
            if let Some(e) = n.iter_mut().find(|(id, _)| *id == self.0) {
                e.1 = what.into();
            }
        }
    }
}

impl Drop for Doing {
    fn drop(&mut self) {
        if let Ok(mut n) = NOW.lock() {
            n.retain(|(id, _)| *id != self.0);
        }
    }
}

/// What the operation does now, if it said.
#[must_use]
pub fn now() -> Option<String> {
    NOW.lock()
        .ok()
        .and_then(|n| n.last().map(|(_, s)| s.clone()))
}

/// Told at once when other processes start (`true`) and stop (`false`) writing to the
/// terminal: a display hides itself before their first line.
static DISPLAY: std::sync::OnceLock<fn(bool)> = std::sync::OnceLock::new();

/// Registers the display to tell (see [`others_writing`]); the first registration stays.
pub fn set_display(f: fn(bool)) {
    let _ = DISPLAY.set(f);
}

/// Runs `f`, during which another process writes to this process's terminal.
pub fn others_writing<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::atomic::Ordering;
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            if OTHERS_WRITING.fetch_sub(1, Ordering::SeqCst) == 1 {
                if let Some(tell) = DISPLAY.get() {
                    tell(false);
                }
            }
        }
    }
    if OTHERS_WRITING.fetch_add(1, Ordering::SeqCst) == 0 {
        if let Some(tell) = DISPLAY.get() {
            tell(true);
        }
    }
    let _done = Done;
    f()
}

/// Whether another process writes to the terminal now (see [`others_writing`]).
#[must_use]
pub fn others_are_writing() -> bool {
    OTHERS_WRITING.load(std::sync::atomic::Ordering::SeqCst) > 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_phase_lasts_as_long_as_its_guard_and_the_one_before_comes_back() {
        let outer = super::doing("restoring");
        assert_eq!(super::now().as_deref(), Some("restoring"));
        {
            let _inner = super::doing("building indexes");
            assert_eq!(super::now().as_deref(), Some("building indexes"));
        }
        assert_eq!(super::now().as_deref(), Some("restoring"));
        // overlapping steps end in any order
        let a = super::doing("fetching");
        let b = super::doing("starting a cluster");
        drop(a);
        assert_eq!(super::now().as_deref(), Some("starting a cluster"));
        b.say("cluster up");
        assert_eq!(super::now().as_deref(), Some("cluster up"));
        drop(b);
        drop(outer);
        assert_eq!(super::now(), None);
        assert!(!super::others_are_writing());
        super::others_writing(|| assert!(super::others_are_writing()));
        assert!(!super::others_are_writing());
    }
}
