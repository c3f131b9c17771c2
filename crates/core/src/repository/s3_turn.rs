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
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}) since {}",
            self.user,
            self.host,
            self.pid,
            self.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// Whether the holder is a process of this host that no longer runs.
    fn died_here(&self, host: &str) -> bool {
        self.host == host
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
    let path = format!("{LOCK_DIR}/{:032x}.json", rand::random::<u128>());
    let began = Instant::now();
    let mut seen: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut removed = Vec::new();
    let mut told = false;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let me = Holder {
            user: user.to_string(),
            host: host.to_string(),
            pid: std::process::id(),
            time: Timestamp::now(),
        };
        let body = serde_json::to_vec(&me).map_err(|e| Error::internal(e.to_string()))?;
        op.write(&path, body)
            .map_err(|e| s3_error("writing the audit log's lock", &e))?;
        let turn = S3Turn {
            op: op.clone(),
            path: path.clone(),
            removed: Vec::new(),
        };
        let mut others = Vec::new();
        let listed = op
            .list(&format!("{LOCK_DIR}/"))
            .map_err(|e| s3_error("listing the audit log's locks", &e))?;
        for entry in listed {
            let other = entry.path();
            if other == path || !other.ends_with(".json") {
                continue;
            }
            let holder = match op.read(other) {
                Ok(b) => serde_json::from_slice::<Holder>(&b.to_vec()).ok(),
                // let go of since it was listed
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                Err(e) => return Err(s3_error("reading the audit log's locks", &e)),
            };
            let first_seen = *seen.entry(other.to_string()).or_insert_with(Instant::now);
            let who = holder
                .as_ref()
                .map_or_else(|| format!("{other} (unreadable)"), Holder::describe);
            let why = if holder.as_ref().is_some_and(|h| h.died_here(host)) {
                Some(format!("left by {who}, a process that no longer runs"))
            } else if first_seen.elapsed() >= patience {
                Some(format!(
                    "held by {who} for more than {} s: a run stopped (Ctrl-Z), hung or killed",
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
                    removed.push(format!("removed the audit lock {other}, {why}"));
                }
                None => others.push(who),
            }
        }
        if others.is_empty() {
            let mut turn = turn;
            turn.removed = removed;
            return Ok(turn);
        }
        drop(turn);
        if began.elapsed() >= patience * 2 {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "other processes kept the audit log's turn for {} s (last {})",
                    began.elapsed().as_secs(),
                    others.join(", ")
                ),
            )
            .hint("lifeboat runs that keep going at once? run it again later"));
        }
        if !told && began.elapsed() >= Duration::from_secs(5) {
            told = true;
            if let Some(tell) = tell {
                tell(&format!(
                    "waiting for the audit log's turn, held by {}; a lock held {} s is removed as stale",
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

    fn plant(op: &opendal::blocking::Operator, name: &str, host: &str, pid: u32) {
        let holder = Holder {
            user: "someone".into(),
            host: host.into(),
            pid,
            time: Timestamp::now(),
        };
        op.write(
            &format!("{LOCK_DIR}/{name}.json"),
            serde_json::to_vec(&holder).expect("json"),
        )
        .expect("write");
    }

    #[test]
    fn turns_never_overlap_and_leave_no_lock() {
        let garage = Garage::start();
        let op = operator(&garage, "/overlap");
        let inside = AtomicUsize::new(0);
        let turns = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let turn = take(op.clone(), "me", "here", Duration::from_secs(300), None)
                            .expect("turn");
                        assert_eq!(
                            inside.fetch_add(1, Ordering::SeqCst),
                            0,
                            "two turns at once"
                        );
                        std::thread::sleep(Duration::from_millis(30));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        turns.fetch_add(1, Ordering::SeqCst);
                        assert!(turn.removed.is_empty(), "{:?}", turn.removed);
                    }
                });
            }
        });
        assert_eq!(turns.load(Ordering::SeqCst), 20);
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
    fn a_live_lock_is_waited_for_and_one_held_all_the_patience_is_removed() {
        let garage = Garage::start();
        let op = operator(&garage, "/live");
        // this very process, here: alive; the same pid elsewhere is no process of ours
        plant(&op, "alive", "here", std::process::id());
        plant(&op, "elsewhere", "another-host", 1);
        let began = Instant::now();
        let turn = take(op.clone(), "me", "here", Duration::from_secs(2), None).expect("turn");
        assert!(began.elapsed() >= Duration::from_secs(2), "it waited");
        assert_eq!(turn.removed.len(), 2, "{:?}", turn.removed);
        assert!(
            turn.removed.iter().all(|r| r.contains("for more than 2 s")),
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
        std::thread::scope(|s| {
            // runs that keep coming, each taking over before the last lets go
            s.spawn(|| {
                let mut n = 0;
                plant(&op, "busy-0", "here", std::process::id());
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    n += 1;
                    plant(&op, &format!("busy-{n}"), "here", std::process::id());
                    let _ = op.delete(&format!("{LOCK_DIR}/busy-{}.json", n - 1));
                }
            });
            let e = take(op.clone(), "me", "here", Duration::from_secs(1), None)
                .err()
                .expect("locked");
            stop.store(true, Ordering::SeqCst);
            assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
            assert!(e.to_string().contains("someone@here"), "{e}");
        });
    }
}
