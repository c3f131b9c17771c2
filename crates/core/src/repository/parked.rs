//! Audit entries parked on the local disk while the repository cannot be written.
//!
//! A backup that fails because its S3 store is down (or the repository's disk is full, or
//! its password was refused) has nowhere to log the failure, and failures are what the
//! evidence pack must show. Such an entry is parked as a small JSON file in the state
//! directory (`$LIFEBOAT_STATE_DIR`, else `/var/lib/lifeboat` for root and
//! `$XDG_STATE_HOME/lifeboat` or `~/.local/state/lifeboat` for other users), under
//! `parked-audit/`; the next operation that appends to the same repository's log adds the
//! parked entries first, each saying when it happened and that it was recorded late.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One parked entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// The repository whose log it belongs to, as [`super::Repo::location`] names it.
    pub repository: String,
    /// When the operation failed.
    pub time: Timestamp,
    /// `backup`, `verify`, `restore`, `drill`.
    pub action: String,
    /// Whether the operation itself succeeded (only its entry could not be written).
    pub ok: bool,
    /// What was acted on and why it failed.
    pub details: String,
    /// Who ran it.
    pub user: String,
    /// Where.
    pub host: String,
}

impl Parked {
    /// The details the log gets: when it happened, that it was recorded late, and why.
    #[must_use]
    pub fn late_details(&self) -> String {
        // the details first, as in every entry: readers match a drill's entry by its id
        format!(
            "{} [at {}{LATE_NOTE}",
            self.details,
            self.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// What [`Parked::late_details`] adds after an entry's own details.
const LATE_NOTE: &str = ", recorded late by the next operation that could write to the repository]";

/// The time an entry's details say it happened when it was added late (`[at 2026-12-07
/// 04:35:53 UTC, recorded late …]`); `None` for any other entry.
#[must_use]
pub fn late_time(details: &str) -> Option<Timestamp> {
    let at = details.strip_suffix(LATE_NOTE)?.rsplit_once(" [at ")?.1;
    format!("{}Z", at.strip_suffix(" UTC")?.replace(' ', "T"))
        .parse()
        .ok()
}

/// `details` without the note [`Parked::late_details`] adds (as they are, for any other
/// entry).
#[must_use]
pub fn without_late_note(details: &str) -> &str {
    match late_time(details) {
        Some(_) => details.rsplit_once(" [at ").map_or(details, |(own, _)| own),
        None => details,
    }
}

/// lifeboat's state directory for this user (see the module documentation).
#[must_use]
pub fn state_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("LIFEBOAT_STATE_DIR") {
        return Some(d);
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/lifeboat"));
    }
    var("XDG_STATE_HOME")
        .or_else(|| crate::home_dir().map(|h| h.join(".local/state")))
        .map(|d| d.join("lifeboat"))
}

/// Makes `dir` (and its missing parents) private to this user whatever the umask: what
/// lies in the state directory is trusted by the next run (a lock file it writes to, an
/// entry it adds to the audit log), so no other user may plant anything there.
///
/// # Errors
///
/// When a directory cannot be made.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
}

/// Why the directory at `dir` cannot be trusted with this user's state (`None` when it
/// can, or does not exist yet: it is then made private): a link, not a directory, another
/// user's, or writable by others. A planted link or a directory someone else controls
/// would have this user (root, say) write lock files and read audit entries where they
/// choose.
#[must_use]
pub fn untrusted_dir(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("{}: {e}", dir.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    let why = if m.file_type().is_symlink() {
        "a symbolic link".to_string()
    } else if !m.is_dir() {
        "not a directory".to_string()
    } else if m.uid() != me && m.uid() != 0 {
        let owner = super::owner::user_name(m.uid());
        format!("owned by {owner}")
    } else if m.mode() & 0o022 != 0 {
        format!("writable by others (mode {:o})", m.mode() & 0o777)
    } else {
        return None;
    };
    Some(format!("{} is {why}", dir.display()))
}

/// The first of lifeboat's state directory and its `sub` directory that cannot be
/// trusted (see [`untrusted_dir`]), said once per process in a note.
fn untrusted_state(sub: &str) -> Option<String> {
    let state = state_dir()?;
    let why = untrusted_dir(&state).or_else(|| untrusted_dir(&state.join(sub)))?;
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !said.contains(&why) {
        said.push(why.clone());
        crate::sources::postgres::cluster::note(format!(
            "lifeboat's state directory is not used: {why}, and what lies there decides what this user writes and logs (set LIFEBOAT_STATE_DIR to a directory of this user's alone; each OS user keeps its own)"
        ));
    }
    Some(why)
}

/// Whether the file at `path` can be trusted as this user's own state: a regular file
/// (not a link to one elsewhere), owned by this user or by root, that no one else may
/// write. `Err` names the owner of one that cannot.
fn trusted_state_file(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != me && meta.uid() != 0 {
        let owner = super::owner::user_name(meta.uid());
        return Err(format!("owned by {owner}"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Where parked entries are kept; `None` without a state directory, or when it cannot be
/// trusted (see [`untrusted_dir`]).
#[must_use]
pub fn dir() -> Option<PathBuf> {
    if untrusted_state("parked-audit").is_some() {
        return None;
    }
    state_dir().map(|d| d.join("parked-audit"))
}

/// Parks an entry for `repository`'s log; returns the file it is in.
///
/// # Errors
///
/// When there is no state directory or the file cannot be written durably.
pub fn park(repository: &str, action: &str, ok: bool, details: &str) -> Result<PathBuf> {
    let dir = dir().ok_or_else(|| {
        Error::config("no state directory to park the audit entry in")
            .hint("set LIFEBOAT_STATE_DIR (or HOME) for lifeboat: where an audit entry the repository could not take waits for the next run")
    })?;
    let (user, host) = super::audit::current_actor();
    let entry = Parked {
        repository: same_place(repository),
        time: Timestamp::now(),
        action: action.to_string(),
        ok,
        details: details.to_string(),
        user,
        host,
    };
    let what = |p: &Path| format!("parking the audit entry in {}", p.display());
    if !dir.exists() {
        make_private_dir(&dir).map_err(|e| Error::io(what(&dir), e))?;
        // the directory's own name must be on disk for the entry in it to be
        if let Some(parent) = dir.parent() {
            crate::wal::store::sync_dir(parent)?;
        }
    }
    let name = format!(
        "{}-{}-{:08x}.json",
        entry.time.as_nanosecond(),
        std::process::id(),
        rand::random::<u32>()
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let json = serde_json::to_vec_pretty(&entry).map_err(|e| Error::internal(e.to_string()))?;
    let written = || -> std::io::Result<()> {
        // private: the details name databases and what went wrong on this host
        let mut f = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().write(true).create_new(true),
            0o600,
        )
        .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    written().map_err(|e| {
        // a full disk must not collect half-written entries, one per failed run
        let _ = std::fs::remove_file(&tmp);
        Error::io(what(&path), e)
    })?;
    Ok(path)
}

/// An audited operation under way on this host: a parked entry saying that it ended
/// without a result, kept under an `flock` while the process lives. The process removes
/// it once its outcome is logged (or its interruption parked); a process killed outright
/// (SIGKILL, the OOM killer, a power cut) cannot, and the kernel drops its lock, so the
/// next operation that adds parked entries finds it unlocked and logs it: the killed
/// drill is in the evidence as a failure, not missing.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    file: nix::fcntl::Flock<std::fs::File>,
    entry: Parked,
}

/// What the entry of an operation that was killed says after what it was doing.
const KILLED: &str = "started then and ended without a result: the process was killed outright (SIGKILL, the OOM killer) or its host went down";

impl Pending {
    /// Marks `action` on `repository` (`what`: what it acts on) under way. `Ok(None)`
    /// when there is no state directory to hold the mark; an error (a full disk, no
    /// permission) when the mark could not be made, with nothing of it left behind. Either
    /// way the operation can go on unmarked, but a kill would then reach no log: the
    /// caller says so.
    ///
    /// # Errors
    ///
    /// When the state directory cannot take the mark.
    pub fn start(repository: &str, action: &str, what: &str) -> Result<Option<Self>> {
        let Some(dir) = dir() else {
            return Ok(None);
        };
        let failed = |e: std::io::Error| {
            Error::io(
                format!("marking the {action} under way in {}", dir.display()),
                e,
            )
        };
        make_private_dir(&dir).map_err(failed)?;
        let (user, host) = super::audit::current_actor();
        let entry = Parked {
            repository: same_place(repository),
            time: Timestamp::now(),
            action: action.to_string(),
            ok: false,
            details: format!("{what}: {KILLED}"),
            user,
            host,
        };
        let name = format!(
            "{}-{}-{:08x}.pending",
            entry.time.as_nanosecond(),
            std::process::id(),
            rand::random::<u32>()
        );
        let path = dir.join(&name);
        // locked before it has its name: an adder must never find it unlocked while this
        // process lives (see `leftovers::mark`)
        let staged = dir.join(format!(".{name}.new"));
        let made = || -> std::io::Result<Self> {
            let file = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create_new(true),
                0o600,
            )
            .open(&staged)?;
            let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|(_, errno)| std::io::Error::from(errno))?;
            let mut pending = Self { path, file, entry };
            pending.write()?;
            std::fs::rename(&staged, &pending.path)?;
            Ok(pending)
        };
        match made() {
            Ok(pending) => {
                let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
                Ok(Some(pending))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                Err(failed(e))
            }
        }
    }

    /// Names what the operation acts on more closely (which backup, where to).
    pub fn now_doing(&mut self, what: &str) {
        self.entry.details = format!("{what}: {KILLED}");
        let _ = self.write();
    }

    fn write(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let json = serde_json::to_vec_pretty(&self.entry).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.seek(std::io::SeekFrom::Start(0))?;
        self.file.write_all(&json)?;
        self.file.sync_all()
    }

    /// The operation's outcome is logged (or its interruption parked): the mark goes.
    pub fn finish(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Turns the marks of operations whose process is gone (see [`Pending`]) into parked
/// entries. One adopter at a time per mark: it holds the mark's lock while it renames.
fn adopt_killed(dir: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for path in read.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|x| x != "pending") {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // held: its process still runs
        let Ok(_dead) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue;
        };
        let _ = std::fs::rename(&path, path.with_extension("json"));
    }
}

/// The entries parked for `repository`, oldest first, with their files. Files that are
/// not parked entries are left alone.
///
/// # Errors
///
/// When the directory exists but cannot be read.
pub fn for_repository(repository: &str) -> Result<Vec<(PathBuf, Parked)>> {
    files_for(repository, "json")
}

/// Parked entries for `repository` that an adding process claimed and did not finish
/// (interrupted between claiming and removing the file): each was added or not.
///
/// # Errors
///
/// As [`for_repository`].
pub fn claimed_for_repository(repository: &str) -> Result<Vec<(PathBuf, Parked)>> {
    files_for(repository, "adding")
}

/// The repository's location as every spelling of it names it: a local path absolute,
/// without `.`/`..`, symbolic links or a trailing slash (`--repo repo/` from one directory,
/// the configured absolute path from another); an S3 URL without a trailing slash.
fn same_place(repository: &str) -> String {
    if super::backend::is_s3_url(repository) {
        return repository.trim_end_matches('/').to_string();
    }
    let path = Path::new(repository);
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map_or_else(
            |_| repository.to_string(),
            // rebuilt from its parts: no trailing slash, no `.`
            |p| p.components().collect::<PathBuf>().display().to_string(),
        )
}

fn files_for(repository: &str, extension: &str) -> Result<Vec<(PathBuf, Parked)>> {
    let Some(dir) = dir() else {
        return Ok(Vec::new());
    };
    if extension == "json" {
        adopt_killed(&dir);
    }
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut out: Vec<(PathBuf, Parked)> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        // an entry anyone else could have put there would go into the log as this
        // user's evidence: it waits for its own user's run
        .filter(|p| match trusted_state_file(p) {
            Ok(()) => true,
            Err(why) => {
                static SAID: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
                let mut said = SAID.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if said.contains(p) {
                    return false;
                }
                said.push(p.clone());
                crate::sources::postgres::cluster::note(format!(
                    "the parked audit entry {} is not added by this run: it is {why}, and an entry someone else could have written is no evidence (its owner's next operation adds it once it is theirs alone; remove it if nobody parked it)",
                    p.display()
                ));
                false
            }
        })
        .filter_map(|p| {
            let parked: Parked = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            (same_place(&parked.repository) == same_place(repository)).then_some((p, parked))
        })
        .collect();
    out.sort_by_key(|(p, e)| (e.time, p.clone()));
    Ok(out)
}

/// An exclusive lock on the parking directory, so that two processes do not add the same
/// parked entry twice (`None` when there is no directory, so nothing to add).
///
/// # Errors
///
/// When the lock file cannot be opened or locked.
pub fn lock() -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let Some(dir) = dir().filter(|d| d.is_dir()) else {
        return Ok(None);
    };
    super::audit::exclusive_lock(&dir.join(".lock")).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path` relative to `base` (both absolute), with as many `..` as it takes.
    fn pathdiff(path: &Path, base: &Path) -> String {
        let depth = base.components().count() - 1;
        format!(
            "{}{}",
            "../".repeat(depth),
            path.display().to_string().trim_start_matches('/')
        )
    }

    #[test]
    fn parked_entries_are_kept_per_repository_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        // no other test of this crate reads LIFEBOAT_STATE_DIR; the value the test script
        // exports comes back at the end
        let before = std::env::var_os("LIFEBOAT_STATE_DIR");
        std::env::set_var("LIFEBOAT_STATE_DIR", tmp.path());
        let a1 = park("s3://b/a", "backup", false, "first").unwrap();
        let b = park("/srv/b", "verify", false, "other").unwrap();
        let a2 = park("s3://b/a", "drill", true, "second").unwrap();
        std::fs::write(dir().unwrap().join("notes.txt"), "not an entry").unwrap();
        let got = for_repository("s3://b/a").unwrap();
        assert_eq!(
            got.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            [a1, a2]
        );
        assert_eq!(got[0].1.details, "first");
        assert!(got[1].1.ok);
        assert!(got[0].1.late_details().starts_with("first [at "));
        // read back: when it happened, to the second, and its own words
        let late = got[0].1.late_details();
        assert_eq!(
            late_time(&late).map(|t| t.as_second()),
            Some(got[0].1.time.as_second())
        );
        assert_eq!(without_late_note(&late), "first");
        assert_eq!(late_time("first"), None);
        assert_eq!(without_late_note("damaged e130108a"), "damaged e130108a");
        assert_eq!(for_repository("/srv/b").unwrap()[0].0, b);
        // other spellings of the same place: a trailing slash, a relative path, a link
        assert_eq!(for_repository("s3://b/a/").unwrap().len(), 2);
        assert_eq!(for_repository("/srv/b/").unwrap()[0].0, b);
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&repo, &link).unwrap();
        let here = park(&format!("{}/", link.display()), "verify", false, "by link").unwrap();
        assert_eq!(
            for_repository(&repo.display().to_string()).unwrap()[0].0,
            here
        );
        let cwd = std::env::current_dir().unwrap();
        let relative = pathdiff(&repo, &cwd);
        assert_eq!(for_repository(&relative).unwrap()[0].0, here);
        assert!(lock().unwrap().is_some());
        // entries someone else could have written are not taken as evidence
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir().unwrap()), 0o700);
        assert_eq!(mode(&here), 0o600);
        let forged = |name: &str| {
            let p = dir().unwrap().join(name);
            std::fs::copy(&here, &p).unwrap();
            p
        };
        let open = forged("1-1-open.json");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o620)).unwrap();
        let elsewhere = tmp.path().join("planted.json");
        std::fs::copy(&here, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir().unwrap().join("1-2-link.json")).unwrap();
        if nix::unistd::geteuid().is_root() {
            let theirs = forged("1-3-theirs.json");
            let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
            nix::unistd::chown(&theirs, Some(nobody.uid), None).unwrap();
        }
        let got = for_repository(&repo.display().to_string()).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, here);
        match before {
            Some(v) => std::env::set_var("LIFEBOAT_STATE_DIR", v),
            None => std::env::remove_var("LIFEBOAT_STATE_DIR"),
        }
    }
}
