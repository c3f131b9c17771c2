//! One backup of a source's database and kind at a time on this host. Until the daemon
//! schedules backups, cron starts them; a run that outlives its interval (a lock wait, a
//! slow store) would otherwise be joined by the next one, which dumps production a second
//! time at once and stores the same data again. Each dump holds a `flock` on a small file
//! in the state directory while it runs; a second run finds it held and waits for it
//! (see [`claim_waiting`]): when the other run stored that dump meanwhile, it is not taken
//! again, and neither run reports a failure for what the other did.

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
    match lock_path(work) {
        Some(path) => claim_at(&path, work),
        None => Ok(None),
    }
}

/// How a [`claim_waiting`] ended.
pub enum Claimed {
    /// This run holds the work (or runs are not kept apart on this host).
    Now(Option<Running>),
    /// This run holds it after another run on this host (who held it, as its lock file
    /// says) let it go: that run may have stored this very dump meanwhile.
    After(Option<Running>, String),
}

/// As [`claim`], waiting up to `patience` for another run on this host that holds the
/// work; `waiting` hears once who holds it when this run starts to wait.
///
/// # Errors
///
/// [`ErrorKind::Locked`] when the other run still holds it after `patience`.
pub fn claim_waiting(
    work: Work<'_>,
    patience: std::time::Duration,
    waiting: impl FnOnce(&str),
) -> Result<Claimed> {
    let Some(path) = lock_path(work) else {
        return Ok(Claimed::Now(None));
    };
    let holder = match try_claim(&path)? {
        Ok(held) => return Ok(Claimed::Now(held)),
        Err(holder) if patience.is_zero() => return Err(held_error(work, &holder)),
        Err(holder) => holder,
    };
    waiting(&holder);
    let since = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500).min(patience));
        // a service's cancellation (`stop_all`) ends the wait as it ends any work
        if crate::sources::postgres::cluster::interrupted() {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "stopped while waiting for another run's dump",
            ));
        }
        match try_claim(&path)? {
            Ok(held) => return Ok(Claimed::After(held, holder)),
            Err(_) if since.elapsed() >= patience => {
                return Err(held_error(work, &holder).with_note(format!(
                    "this run waited {}s for it",
                    since.elapsed().as_secs()
                )))
            }
            Err(_) => {}
        }
    }
}

/// The error for `work` held by another run (`holder`, as its lock file says).
fn held_error(work: Work<'_>, holder: &str) -> Error {
    Error::new(
        ErrorKind::Locked,
        format!(
            "another {} backup{} of source {} into this repository runs on this host ({}): this run leaves it out rather than dump it a second time at once",
            work.kind,
            work.database.map(|d| format!(" of {d:?}")).unwrap_or_default(),
            work.source,
            if holder.is_empty() { "its lock is held" } else { holder }
        ),
    )
    .hint("a run that outlives its schedule is usually waiting for a table lock (lock_wait_timeout) or a slow store; the next scheduled run takes over when it ends")
}

/// As [`claim`], with the lock file at `path`.
fn claim_at(path: &Path, work: Work<'_>) -> Result<Option<Running>> {
    try_claim(path)?.map_err(|holder| held_error(work, &holder))
}

/// [`claim_at`], giving who holds the lock (its file's text) when another run does.
fn try_claim(path: &Path) -> Result<std::result::Result<Option<Running>, String>> {
    let unkept = |why: String| {
        crate::sources::postgres::cluster::note(format!(
            "overlapping runs of this backup are not kept apart on this host: {why} (set LIFEBOAT_STATE_DIR to a directory this user may write)"
        ));
        Ok(Ok(None))
    };
    if let Some(dir) = path.parent() {
        // the state directory, then `running/`: neither another user's nor a link
        if let Some(why) = dir
            .parent()
            .and_then(crate::repository::parked::untrusted_dir)
            .or_else(|| crate::repository::parked::untrusted_dir(dir))
        {
            return unkept(why);
        }
        if let Err(e) = crate::repository::parked::make_private_dir(dir) {
            return unkept(format!("{}: {e}", dir.display()));
        }
    }
    // another user's file (root's and postgres's runs sharing a state directory) can be
    // locked read-only; only who holds it is then not written
    // never through a link: a link planted there would have this run write to its target
    let no_follow = |o: &mut std::fs::OpenOptions| {
        std::os::unix::fs::OpenOptionsExt::custom_flags(o, nix::libc::O_NOFOLLOW).open(path)
    };
    let file = no_follow(std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true),
        0o600,
    ))
    .or_else(|_| no_follow(std::fs::OpenOptions::new().read(true)));
    let file = match file {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return unkept(format!(
                "{} is a symbolic link, which is not followed (lifeboat never makes one there: someone planted it; remove it)",
                path.display()
            ))
        }
        Err(e) => return unkept(format!("{}: {e}", path.display())),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // who holds it, for the run that finds it held; written only into this user's own
        // lock file, never into another name of a file elsewhere (a hard link)
        Ok(mut lock) if own_single_file(&lock) => {
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = write!(
                lock,
                "pid {} since {}",
                std::process::id(),
                jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC")
            );
            Ok(Ok(Some(Running { _lock: lock })))
        }
        Ok(lock) => Ok(Ok(Some(Running { _lock: lock }))),
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Ok(Err(holder.trim().to_string()))
        }
        Err((_, e)) => unkept(format!("{}: {e}", path.display())),
    }
}

/// Whether `file` is a regular file of this user with no other name.
fn own_single_file(file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| {
        m.file_type().is_file() && m.nlink() == 1 && m.uid() == nix::unistd::geteuid().as_raw()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_never_writes_through_a_link_or_into_another_name_of_a_file() {
        let state = tempfile::tempdir().unwrap();
        let work = Work {
            location: "/srv/repo",
            source: "app",
            kind: BackupKind::Globals,
            database: None,
        };
        let path = lock_path_in(state.path(), work);
        let victim = state.path().join("victim.conf");
        std::fs::write(&victim, "precious").unwrap();
        // a link planted where the lock goes: no lock, and the file it names untouched
        crate::repository::parked::make_private_dir(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(claim_at(&path, work).unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // a hard link: locked, but not written
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&victim, &path).unwrap();
        assert!(claim_at(&path, work).unwrap().is_some());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // its own file: who holds it is written, and a second claim is refused with it
        std::fs::remove_file(&path).unwrap();
        let held = claim_at(&path, work).unwrap();
        assert!(held.is_some());
        let e = claim_at(&path, work).err().expect("held");
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        // `running/` itself a link to a place of someone's choosing: not used
        let other = tempfile::tempdir().unwrap();
        let elsewhere = other.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, other.path().join("running")).unwrap();
        let planted = lock_path_in(other.path(), work);
        assert!(claim_at(&planted, work).unwrap().is_none());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
