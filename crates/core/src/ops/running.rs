//! One backup of a source's database and kind at a time on this host. Until the daemon
//! schedules backups, cron starts them; a run that outlives its interval (a lock wait, a
//! slow store) would otherwise be joined by the next one, which dumps production a second
//! time at once and stores the same data again. Each dump holds a `flock` on a small file
//! in the state directory while it runs; a second run finds it held and skips that dump.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, ErrorKind, Result};
use crate::sources::postgres::logical::{path_component, BackupKind};

/// Held while one dump runs; released on drop (also when the process dies: the kernel
/// drops a dead process's `flock`).
pub struct Running {
    _lock: Flock<std::fs::File>,
}

/// What a run claims: the backup of one kind of one database of a source (the database
/// `None` for the cluster-wide kinds) into one repository.
#[derive(Debug, Clone, Copy)]
pub struct Work<'a> {
    /// The repository's location.
    pub location: &'a str,
    /// The source.
    pub source: &'a str,
    /// The kind.
    pub kind: BackupKind,
    /// The database, for the per-database kinds.
    pub database: Option<&'a str>,
}

/// The file a run of `work` locks, in lifeboat's state directory. `None` without one
/// (then runs are not kept apart).
#[must_use]
pub fn lock_path(work: Work<'_>) -> Option<PathBuf> {
    crate::repository::parked::state_dir().map(|d| lock_path_in(&d, work))
}

/// As [`lock_path`], in the state directory `state`.
#[must_use]
pub fn lock_path_in(state: &Path, work: Work<'_>) -> PathBuf {
    let key = format!("{}\n{}", work.location, work.database.unwrap_or(""));
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32;
    state.join("running").join(format!(
        "backup-{}-{}-{hash:08x}.lock",
        path_component(work.source),
        work.kind
    ))
}

/// Claims `work` for this process. A state directory that cannot hold the lock (read-only,
/// a file system without `flock`) keeps no runs apart, said in a note: that is no reason
/// to fail the backup.
///
/// # Errors
///
/// [`ErrorKind::Locked`] when another process on this host runs that work now, with its
/// pid and start.
pub fn claim(work: Work<'_>) -> Result<Option<Running>> {
    let Some(path) = lock_path(work) else {
        return Ok(None);
    };
    let unkept = |why: String| {
        crate::sources::postgres::cluster::note(format!(
            "overlapping runs of this backup are not kept apart on this host: {why} (set LIFEBOAT_STATE_DIR to a directory this user may write)"
        ));
        Ok(None)
    };
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return unkept(format!("{}: {e}", dir.display()));
        }
    }
    // another user's file (root's and postgres's runs sharing a state directory) can be
    // locked read-only; only who holds it is then not written
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .or_else(|_| std::fs::File::open(&path));
    let file = match file {
        Ok(f) => f,
        Err(e) => return unkept(format!("{}: {e}", path.display())),
    };
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
                    "another {} backup{} of source {} into this repository runs on this host ({}): this run leaves it out rather than dump it a second time at once",
                    work.kind,
                    work.database.map(|d| format!(" of {d:?}")).unwrap_or_default(),
                    work.source,
                    if holder.is_empty() { "its lock is held" } else { holder.trim() }
                ),
            )
            .hint("a run that outlives its schedule is usually waiting for a table lock (lock_wait_timeout) or a slow store; the next scheduled run takes over when it ends"))
        }
        Err((_, e)) => unkept(format!("{}: {e}", path.display())),
    }
}
