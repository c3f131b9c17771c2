//! Whose turn it is to append to the audit log of an S3 repository, which has no lock.
//!
//! Each appender writes a lock object of its own under `lifeboat-audit-lock/`, then lists
//! them: it holds the turn when no other live one is there, and otherwise removes its own
//! and tries again after a random pause. A store that lists what was written before the
//! listing started (S3 since 2020, Garage) makes two appenders that write at once see at
//! least one the other, so two never hold the turn together; both may step back, and the
//! random pauses part them. restic orders its own locks the same way.
//!
//! A lock left by a process that died on this host is removed at once; one on another
//! host, or of a process that is stopped or hangs, once it has been seen for the whole
//! patience (appends hold it for seconds).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// Directory (prefix) of the lock objects inside the repository.
pub(crate) const LOCK_DIR: &str = "lifeboat-audit-lock";

/// What a lock object says about its holder (never a secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    user: String,
    host: String,
    pid: u32,
    time: Timestamp,
    /// This boot of the host (`/proc/sys/kernel/random/boot_id`): a pid of another boot
    /// says nothing about a process now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot: Option<String>,
    /// The pid namespace (`/proc/self/ns/pid`): containers sharing the host's name have
    /// their own pids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid_ns: Option<String>,
}

impl Holder {
    /// This process, as `user`@`host`.
    fn me(user: &str, host: &str) -> Self {
        Self {
            user: user.to_string(),
            host: host.to_string(),
            pid: std::process::id(),
            time: Timestamp::now(),
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|b| b.trim().to_string()),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.display().to_string()),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}) since {}",
            self.user,
            self.host,
            self.pid,
            self.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// Whether the holder is a process of this host, this boot and this pid namespace
    /// (`me`) that no longer runs. Anything less certain waits for the patience.
    fn died_here(&self, me: &Self) -> bool {
        self.host == me.host
            && self.boot.is_some()
            && self.boot == me.boot
            && self.pid_ns.is_some()
            && self.pid_ns == me.pid_ns
            && i32::try_from(self.pid).is_ok_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(nix::errno::Errno::ESRCH)
            })
    }
}

/// The audit log's turn on an S3 repository: held until dropped, when its lock object is
/// removed.
pub(crate) struct S3Turn {
    op: opendal::blocking::Operator,
    path: String,
    /// Locks of others this turn removed, each with why.
    pub(crate) removed: Vec<String>,
}

impl S3Turn {
    /// Whether this turn's lock object is still there: another process removes it as
    /// stale once it has seen it for the whole patience (this one was stopped or hung),
    /// and then takes the turn itself.
    pub(crate) fn still_held(&self) -> Result<bool> {
        match self.op.stat(&self.path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(s3_error("looking for the audit log's lock", &e)),
        }
    }
}

impl Drop for S3Turn {
    fn drop(&mut self) {
        // best effort: a lock left behind names this process, which no longer runs, and
        // the next appender on this host removes it at once (on another, after patience)
        let _ = self.op.delete(&self.path);
    }
}

fn s3_error(what: &str, e: &opendal::Error) -> Error {
    match e.kind() {
        opendal::ErrorKind::PermissionDenied => Error::new(
            ErrorKind::Auth,
            format!("{what}: access denied by the storage"),
        )
        .hint("check the S3 credentials: appending to the audit log writes and removes objects under lifeboat-audit-lock/"),
        _ => Error::unavailable(format!("{what}: {e}"))
            .hint("check that the repository is reachable and writable"),
    }
}

/// Takes the turn as `user`@`host`, waiting for others; `tell` hears once when the wait
/// passes a few seconds. A lock seen for all of `patience` is removed as stale.
///
/// # Errors
///
/// A storage error; [`ErrorKind::Locked`] when others kept taking the turn for twice the
/// patience.
pub(crate) fn take(
    op: opendal::blocking::Operator,
    user: &str,
    host: &str,
    patience: Duration,
    tell: Option<fn(&str)>,
) -> Result<S3Turn> {
    let began = Instant::now();
    // how long each other lock has been there without a break: a waiter's lock comes and
    // goes under a new name at each attempt, only a holder's stays
    let mut seen: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut removed = Vec::new();
    let mut told = false;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let me = Holder::me(user, host);
        let body = serde_json::to_vec(&me).map_err(|e| Error::internal(e.to_string()))?;
        let path = format!("{LOCK_DIR}/{:032x}.json", rand::random::<u128>());
        op.write(&path, body)
            .map_err(|e| s3_error("writing the audit log's lock", &e))?;
        // from here on, an error or a step back removes this attempt's lock
        let turn = S3Turn {
            op: op.clone(),
            path: path.clone(),
            removed: Vec::new(),
        };
        let listed: Vec<String> = op
            .list(&format!("{LOCK_DIR}/"))
            .map_err(|e| s3_error("listing the audit log's locks", &e))?
            .into_iter()
            .map(|e| e.path().to_string())
            .filter(|p| *p != path && p.ends_with(".json"))
            .collect();
        seen.retain(|p, _| listed.contains(p));
        let mut others = Vec::new();
        let mut cleared = false;
        for other in &listed {
            let holder = match op.read(other) {
                Ok(b) => serde_json::from_slice::<Holder>(&b.to_vec()).ok(),
                // let go of since it was listed
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                Err(e) => return Err(s3_error("reading the audit log's locks", &e)),
            };
            let first_seen = *seen.entry(other.clone()).or_insert_with(Instant::now);
            let who = holder
                .as_ref()
                .map_or_else(|| format!("{other} (unreadable)"), Holder::describe);
            let why = if holder.as_ref().is_some_and(|h| h.died_here(&me)) {
                Some(format!("left by {who}, a process that no longer runs"))
            } else if first_seen.elapsed() >= patience {
                Some(format!(
                    "held by {who}, seen for more than {} s: a run stopped (Ctrl-Z), hung or killed",
                    patience.as_secs()
                ))
            } else {
                None
            };
            match why {
                Some(why) => {
                    match op.delete(other) {
                        Ok(()) => {}
                        Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
                        Err(e) => return Err(s3_error("removing a stale audit lock", &e)),
                    }
                    seen.remove(other);
                    removed.push(format!("removed the audit lock {other}, {why}"));
                    cleared = true;
                }
                None => others.push(who),
            }
        }
        if others.is_empty() && !cleared {
            let mut turn = turn;
            turn.removed = removed;
            return Ok(turn);
        }
        drop(turn);
        // bounded whatever happens, also when stale locks keep coming
        if began.elapsed() >= patience * 2 {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "other processes kept the audit log's turn for {} s (last {})",
                    began.elapsed().as_secs(),
                    if others.is_empty() {
                        "locks removed as stale".to_string()
                    } else {
                        others.join(", ")
                    }
                ),
            )
            .hint("lifeboat runs that keep going at once? run it again later"));
        }
        if cleared {
            // others waiting behind the same stale lock clear it too: whoever takes the
            // turn takes it in a pass that removed nothing, where two always see each other
            continue;
        }
        if !told && began.elapsed() >= Duration::from_secs(5) {
            told = true;
            if let Some(tell) = tell {
                tell(&format!(
                    "waiting for the audit log's turn, held by {}; a lock seen for {} s is removed as stale",
                    others.join(", "),
                    patience.as_secs()
                ));
            }
        }
        let pause = rand::random::<u64>() % (100 * attempt.min(10)) + 20;
        std::thread::sleep(Duration::from_millis(pause));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use lifeboat_testing::garage::Garage;

    use super::*;

    fn operator(garage: &Garage, root: &str) -> opendal::blocking::Operator {
        let opts = [
            ("bucket", garage.bucket().to_string()),
            ("root", root.to_string()),
            ("endpoint", garage.endpoint()),
            ("region", garage.region().to_string()),
            ("access_key_id", garage.access_key_id().to_string()),
            ("secret_access_key", garage.secret_access_key().to_string()),
            ("disable_config_load", "true".to_string()),
            ("disable_ec2_metadata", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        crate::repository::backend::s3_operator(
            opts,
            Duration::from_secs(30),
            Duration::from_secs(30),
            2,
        )
        .expect("S3 client")
    }

    fn locks(op: &opendal::blocking::Operator) -> Vec<String> {
        op.list(&format!("{LOCK_DIR}/"))
            .expect("list")
            .into_iter()
            .map(|e| e.path().to_string())
            .filter(|p| p.ends_with(".json"))
            .collect()
    }

    /// A lock as a process `pid` of this boot and pid namespace on `host` writes it.
    fn plant(op: &opendal::blocking::Operator, name: &str, host: &str, pid: u32) {
        plant_holder(
            op,
            name,
            &Holder {
                pid,
                ..Holder::me("someone", host)
            },
        );
    }

    fn plant_holder(op: &opendal::blocking::Operator, name: &str, holder: &Holder) {
        op.write(
            &format!("{LOCK_DIR}/{name}.json"),
            serde_json::to_vec(holder).expect("json"),
        )
        .expect("write");
    }

    /// `threads` threads each take the turn `rounds` times with `patience`, hold it a
    /// moment and let go; fails when two held it at once. Returns the turns taken.
    fn contend(
        op: &opendal::blocking::Operator,
        threads: usize,
        rounds: usize,
        patience: Duration,
    ) -> usize {
        let inside = AtomicUsize::new(0);
        let turns = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..rounds {
                        let turn = take(op.clone(), "me", "here", patience, None).expect("turn");
                        assert_eq!(
                            inside.fetch_add(1, Ordering::SeqCst),
                            0,
                            "two turns at once"
                        );
                        std::thread::sleep(Duration::from_millis(40));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        turns.fetch_add(1, Ordering::SeqCst);
                        drop(turn);
                    }
                });
            }
        });
        turns.load(Ordering::SeqCst)
    }

    #[test]
    fn turns_never_overlap_and_leave_no_lock() {
        let garage = Garage::start();
        let op = operator(&garage, "/overlap");
        assert_eq!(contend(&op, 4, 5, Duration::from_secs(300)), 20);
        assert_eq!(locks(&op), Vec::<String>::new(), "every lock let go");
    }

    #[test]
    fn a_lock_of_a_process_that_died_here_is_removed_at_once_and_named() {
        let garage = Garage::start();
        let op = operator(&garage, "/dead");
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("wait");
        plant(&op, "dead", "here", dead);
        // an hour's patience: only the dead pid can explain the turn
        let turn = take(op.clone(), "me", "here", Duration::from_secs(3600), None).expect("turn");
        assert_eq!(turn.removed.len(), 1, "{:?}", turn.removed);
        assert!(
            turn.removed[0].contains(&format!("pid {dead}"))
                && turn.removed[0].contains("no longer runs"),
            "{:?}",
            turn.removed
        );
        drop(turn);
        assert_eq!(locks(&op), Vec::<String>::new());
    }

    #[test]
    fn a_dead_pid_of_another_pid_namespace_or_boot_proves_nothing() {
        let garage = Garage::start();
        let op = operator(&garage, "/ns");
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("wait");
        let here = Holder {
            pid: dead,
            ..Holder::me("someone", "here")
        };
        assert!(here.pid_ns.is_some() && here.boot.is_some(), "{here:?}");
        plant_holder(
            &op,
            "container",
            &Holder {
                pid_ns: Some("pid:[1]".into()),
                ..here.clone()
            },
        );
        plant_holder(
            &op,
            "before-reboot",
            &Holder {
                boot: Some("another-boot".into()),
                ..here
            },
        );
        let turn = take(op.clone(), "me", "here", Duration::from_secs(3), None).expect("turn");
        assert_eq!(turn.removed.len(), 2, "{:?}", turn.removed);
        assert!(
            turn.removed
                .iter()
                .all(|r| r.contains("seen for more than 3 s")),
            "only the patience removed them: {:?}",
            turn.removed
        );
    }

    #[test]
    fn waiters_behind_a_stopped_holder_take_the_turn_one_at_a_time() {
        let garage = Garage::start();
        let op = operator(&garage, "/stopped");
        // a holder on another host that stopped (Ctrl-Z) and never lets go
        plant(&op, "stopped", "another-host", 1);
        assert_eq!(contend(&op, 3, 2, Duration::from_secs(3)), 6);
        assert_eq!(
            locks(&op),
            Vec::<String>::new(),
            "the stale lock is gone too"
        );
    }

    #[test]
    fn a_turn_whose_lock_was_removed_knows_it() {
        let garage = Garage::start();
        let op = operator(&garage, "/taken");
        let turn = take(op.clone(), "me", "here", Duration::from_secs(300), None).expect("turn");
        assert!(turn.still_held().expect("stat"));
        for lock in locks(&op) {
            op.delete(&lock).expect("remove it as a waiter would");
        }
        assert!(!turn.still_held().expect("stat"));
    }

    #[test]
    fn a_live_lock_is_waited_for_and_one_held_all_the_patience_is_removed() {
        let garage = Garage::start();
        let op = operator(&garage, "/live");
        // this very process, here: alive; the same pid elsewhere is no process of ours
        plant(&op, "alive", "here", std::process::id());
        plant(&op, "elsewhere", "another-host", 1);
        let began = Instant::now();
        let turn = take(op.clone(), "me", "here", Duration::from_secs(3), None).expect("turn");
        assert!(began.elapsed() >= Duration::from_secs(3), "it waited");
        assert_eq!(turn.removed.len(), 2, "{:?}", turn.removed);
        assert!(
            turn.removed.iter().all(|r| r.contains("for more than 3 s")),
            "{:?}",
            turn.removed
        );
        assert!(turn
            .removed
            .iter()
            .any(|r| r.contains("someone@another-host (pid 1)")));
    }

    #[test]
    fn a_turn_kept_by_others_past_twice_the_patience_is_refused_as_locked() {
        let garage = Garage::start();
        let op = operator(&garage, "/kept");
        let stop = std::sync::atomic::AtomicBool::new(false);
        // there before the taker looks
        plant(&op, "busy-0", "here", std::process::id());
        std::thread::scope(|s| {
            // runs that keep coming, each taking over before the last lets go
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    // each lock far shorter-lived than the patience, also on a loaded machine
                    std::thread::sleep(Duration::from_millis(100));
                    n += 1;
                    plant(&op, &format!("busy-{n}"), "here", std::process::id());
                    let _ = op.delete(&format!("{LOCK_DIR}/busy-{}.json", n - 1));
                }
            });
            // a patience a loaded machine (a CI run, Garage answering slowly) cannot
            // outlast between two plantings: with 5 s, a planter starved that long let its
            // lock look stale and the taker took the turn
            let taken = take(op.clone(), "me", "here", Duration::from_secs(12), None);
            // the runs stop whatever the outcome, or a failure here would hang the test
            stop.store(true, Ordering::SeqCst);
            let e = taken.err().expect("locked");
            assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
            assert!(e.to_string().contains("someone@here"), "{e}");
        });
    }
}
