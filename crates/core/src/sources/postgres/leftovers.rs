//! What a killed lifeboat left behind: scratch directories (a throw-away cluster still
//! running, a staged dump: copies of production's data) whose creator no longer runs. Each
//! scratch directory holds a mark its creator keeps locked (`flock`) for as long as it
//! lives; the kernel drops the lock when the process dies, whatever the pid namespace or
//! `/proc` visibility. The next run that makes a scratch directory removes the others'
//! leftovers and says so.
//!
//! Only what this user made is touched: a mark owned by another user, a directory or a
//! data directory that is a symlink, is left alone (anyone can create `/tmp/lifeboat-x`).

use std::{fs::File, os::unix::fs::MetadataExt, path::Path};

use nix::fcntl::{Flock, FlockArg};

/// The file in each scratch directory whose lock says its creator still runs.
const OWNER_FILE: &str = ".lifeboat-owner";

/// Marks `dir` as made by this process; the lock lasts as long as the returned value.
/// The mark is locked before it takes its name: another process's [`sweep`] that found
/// it between its creation and its lock took it for a dead run's, and removed the
/// directory from under a drill that was just starting (seen in CI, two drills at once).
pub(crate) fn mark(dir: &Path) -> Option<Flock<File>> {
    let staged = dir.join(format!("{OWNER_FILE}.new"));
    let file = File::create(&staged).ok()?;
    let locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
    std::fs::rename(&staged, dir.join(OWNER_FILE)).ok()?;
    Some(locked)
}

/// Removes this process's scratch directory `dir` (after an interrupt), its mark last:
/// a thread still unpacking into it adds files while they go, and a directory left
/// without its mark would be no one's to sweep. Tries for a few seconds; what stays keeps
/// the mark, which the next run's [`sweep`] finds once this process is gone.
pub(crate) fn remove(dir: &Path) {
    // one remover at a time (an interrupt's clean-up and the interrupted operation's own):
    // each takes the mark last, and neither leaves the other a directory without one
    static REMOVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = REMOVING.lock();
    if !real_dir(dir) {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // after an interrupt, empty twice in a row a moment apart: the interrupted operation
    // may still be between two files; otherwise once, at once
    let interrupted = super::cluster::interrupted();
    let mut clean_passes = 0;
    loop {
        let (mut seen, mut failed) = (false, false);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_name() == OWNER_FILE {
                    continue;
                }
                let p = entry.path();
                let gone = if real_dir(&p) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                seen = true;
                failed |= gone.is_err();
            }
        }
        clean_passes = if seen { 0 } else { clean_passes + 1 };
        if clean_passes == if interrupted { 2 } else { 1 } || std::time::Instant::now() > deadline {
            break;
        }
        if failed || interrupted {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_file(dir.join(OWNER_FILE));
    if std::fs::remove_dir(dir).is_err() {
        // something came back after all: a mark again, for the next run's sweep
        let _ = File::create(dir.join(OWNER_FILE));
    }
}

/// The mark of `dir`, locked, when its creator is gone and it was made by this user.
fn orphaned(dir: &Path) -> Option<Flock<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let me = nix::unistd::geteuid().as_raw();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(dir.join(OWNER_FILE))
        .ok()?;
    if file.metadata().ok()?.uid() != me {
        return None;
    }
    // held by a live creator: not ours to take
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// A real directory (not a symlink to one).
fn real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir())
}

/// Removes the scratch directories in `base` whose creator is gone, stopping a server still
/// running in one first; returns a line for each, also for one that had to stay.
pub(crate) fn sweep(base: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut said = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("lifeboat-"));
        if !named || !real_dir(&dir) {
            continue;
        }
        let Some(_gone) = orphaned(&dir) else {
            continue;
        };
        let data = dir.join("data");
        let mut stopped = "";
        if real_dir(&data) && data.join("postmaster.pid").exists() {
            // as the server's own user (initdb and postgres refuse root)
            let user = std::fs::metadata(&data).ok().and_then(|m| {
                (m.uid() != nix::unistd::geteuid().as_raw())
                    .then(|| nix::unistd::User::from_uid(m.uid().into()).ok().flatten())
                    .flatten()
                    .map(|u| u.name)
            });
            let pg_ctl = super::conn::PgBin::new(None).program("pg_ctl");
            let stop = super::cluster::pg_ctl_cmd(&pg_ctl, user.as_deref())
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&data)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if !stop.is_ok_and(|s| s.success()) {
                // its files stay while it may run: deleting them under a live server
                // would only hide it
                said.push(format!(
                    "a lifeboat run that was killed left a throw-away server in {} that could not be stopped: stop it with `{} -D {} stop -m immediate` as its owner, then remove the directory",
                    dir.display(),
                    pg_ctl.display(),
                    data.display()
                ));
                continue;
            }
            stopped = " (its throw-away server stopped)";
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            said.push(format!(
                "removed {}{stopped}, left by a lifeboat run that ended before it could remove it (killed, or interrupted while it was still writing there)",
                dir.display()
            ));
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::{mark, orphaned, remove, OWNER_FILE};

    #[test]
    fn a_marked_directory_is_never_anyone_elses_to_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let held = mark(dir.path()).expect("marked");
        assert!(dir.path().join(OWNER_FILE).exists());
        assert!(!dir.path().join(format!("{OWNER_FILE}.new")).exists());
        // another process's sweep would try to lock it: held, so not orphaned
        assert!(orphaned(dir.path()).is_none());
        drop(held);
        assert!(orphaned(dir.path()).is_some(), "its creator gone, it is");
    }

    #[test]
    fn a_scratch_directory_still_being_written_is_removed_whole() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("lifeboat-drill-x");
        std::fs::create_dir_all(dir.join("data/base")).unwrap();
        std::fs::write(dir.join(OWNER_FILE), "").unwrap();
        // an unpacking thread that writes until it sees the interrupt (as the unpack checks
        // before each file and each write), removal starting as the interrupt comes
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writing = dir.join("data/base");
        let writer = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let _ = std::fs::write(writing.join(format!("{i}")), [0u8; 4096]);
                    i += 1;
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        remove(&dir);
        writer.join().unwrap();
        assert!(
            !dir.exists(),
            "left: {:?}",
            std::fs::read_dir(&dir).map(|d| d.count())
        );
    }
}
