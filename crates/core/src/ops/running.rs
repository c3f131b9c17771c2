//! One backup of a source and kind at a time on this host. Until the daemon schedules
//! backups, cron starts them; a run that outlives its interval (a lock wait, a slow
//! store) would otherwise be joined by the next one, which dumps production a second time
//! at once and stores the same data again. Each run holds a `flock` on a small file in
//! the state directory per source and kind; a second run finds it held and stops.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, ErrorKind, Result};
use crate::sources::postgres::logical::{path_component, BackupKind};

/// Held while a backup of one source and kind runs; released on drop (also when the
/// process dies: the kernel drops a dead process's `flock`).
pub struct Running {
    _lock: Flock<std::fs::File>,
}

/// The file a backup of `source`'s `kind` into the repository at `location` locks, in
/// lifeboat's state directory. `None` without one (then runs are not kept apart).
#[must_use]
pub fn lock_path(location: &str, source: &str, kind: BackupKind) -> Option<PathBuf> {
    crate::repository::parked::state_dir().map(|d| lock_path_in(&d, location, source, kind))
}

/// As [`lock_path`], in the state directory `state`.
#[must_use]
pub fn lock_path_in(state: &Path, location: &str, source: &str, kind: BackupKind) -> PathBuf {
    let repo = xxhash_rust::xxh3::xxh3_64(location.as_bytes()) as u32;
    state.join("running").join(format!(
        "backup-{}-{kind}-{repo:08x}.lock",
        path_component(source)
    ))
}

/// Claims the backup of `source`'s `kind` into the repository at `location` for this
/// process.
///
/// # Errors
///
/// [`ErrorKind::Locked`] when another process on this host runs that backup now, with its
/// pid and start; an I/O error when the lock file cannot be made.
pub fn claim(location: &str, source: &str, kind: BackupKind) -> Result<Option<Running>> {
    let Some(path) = lock_path(location, source, kind) else {
        return Ok(None);
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(path.display(), e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // who holds it, for the run that finds it held
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = write!(
                lock,
                "pid {} since {}",
                std::process::id(),
                jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC")
            );
            Ok(Some(Running { _lock: lock }))
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "another {kind} backup of source {source} into this repository runs on this host ({}): this one stops rather than dump the database a second time at once",
                    if holder.is_empty() { "its lock is held" } else { holder.trim() }
                ),
            )
            .hint("a run that outlives its schedule is usually waiting for a table lock (lock_wait_timeout) or a slow store; the next scheduled run takes over when it ends"))
        }
        Err((_, e)) => Err(Error::io(
            path.display(),
            std::io::Error::from_raw_os_error(e as i32),
        )),
    }
}
