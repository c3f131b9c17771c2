//! The audit log: an append-only, hash-chained record of every backup, verify, restore
//! and drill, kept in the repository.
//!
//! Each entry is a tiny snapshot tagged [`AUDIT_TAG`] whose description is the entry's
//! JSON, so reading the log touches snapshot files only. Entry `n` carries the hash of
//! entry `n-1`; its own hash covers its sequence number, time, action, details and that
//! previous hash. [`verify`] therefore detects an edited entry (its hash no longer matches),
//! a removed one (a gap in the sequence, a broken link) and a reordering (broken links).
//! Removing the newest entries leaves a consistent shorter chain; that is caught by
//! comparing with a head hash kept elsewhere (`expected_head`), which drill reports carry.

use std::{io::Cursor, path::Path};

use jiff::Timestamp;
use rustic_core::{BackupOptions as RusticBackupOptions, SnapshotOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Repo, StreamSource, LABEL};
use crate::error::{Error, ErrorKind, Result};

/// Tag of audit-entry snapshots.
pub const AUDIT_TAG: &str = "lifeboat-audit";
/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, ...
    pub seq: u64,
    /// When it was written.
    pub time: Timestamp,
    /// `backup`, `verify`, `restore`, `drill`, ...
    pub action: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// What was acted on and the key figures (free text, no secrets).
    pub details: String,
    /// Who ran it: the operating-system user, and the user who ran `sudo` when it was run
    /// through sudo (absent in entries written before lifeboat recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The host it ran on (absent in entries written before lifeboat recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Hash of the previous entry ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 over the fields above and [`Entry::extra`].
    pub hash: String,
    /// Fields this version does not know, written by a newer lifeboat: kept as they are
    /// and hashed by the rule in [`Entry::compute_hash`], so that an older lifeboat checks
    /// entries from a newer one instead of calling them edited.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Entry {
    /// The hash this entry must carry.
    #[must_use]
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut fields = vec![
            self.seq.to_string(),
            self.time.to_string(),
            self.action.clone(),
            self.outcome.clone(),
            self.details.clone(),
            self.prev.clone(),
        ];
        // entries written before the actor was recorded keep their six fields, so their
        // hashes still verify; dropping the actor from a newer entry changes its hash
        if self.user.is_some() || self.host.is_some() || !self.extra.is_empty() {
            fields.push(self.user.clone().unwrap_or_default());
            fields.push(self.host.clone().unwrap_or_default());
        }
        // a field added later is hashed as its name and its compact JSON with every
        // object's keys in order, fields in name order: the rule every later version
        // keeps for what it adds
        for (name, value) in &self.extra {
            fields.push(name.clone());
            fields.push(canonical(value).to_string());
        }
        // length-prefixed fields: no two different entries serialise the same
        for field in fields {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        format!("{:x}", h.finalize())
    }

    /// When the operation happened: the time an entry added late says (one parked while
    /// the repository could not be written, see [`super::parked::Parked::late_details`]),
    /// else when it was written. What a period is about: an outage at a period's end must
    /// not move its failures into the next one.
    #[must_use]
    pub fn happened_at(&self) -> Timestamp {
        super::parked::late_time(&self.details).unwrap_or(self.time)
    }

    /// The details without the note an entry added late carries (`[at …, recorded late
    /// …]`): what the operation itself wrote, for readers that parse it.
    #[must_use]
    pub fn own_details(&self) -> &str {
        super::parked::without_late_note(&self.details)
    }

    /// `user@host`, or `-` for an entry written before lifeboat recorded who ran it.
    #[must_use]
    pub fn actor(&self) -> String {
        match (&self.user, &self.host) {
            (None, None) => "-".into(),
            (u, h) => format!(
                "{}@{}",
                u.as_deref().unwrap_or("?"),
                h.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// `v` with every object's keys in order, whatever order serde_json keeps them in.
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Who is running this process and where, as an audit entry records it: the effective
/// user's name (its uid when it has none) with the `sudo` user when there is one, and the
/// host name.
#[must_use]
pub fn current_actor() -> (String, String) {
    let mut user = super::owner::user_name(nix::unistd::geteuid().as_raw());
    // who logged in, as the kernel keeps it (pam_loginuid; no process may change it):
    // SUDO_USER is only the environment's word, which anyone can set
    let login = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&uid| uid != u32::MAX)
        .map(super::owner::user_name);
    match login {
        Some(by) if by != user => user = format!("{user} (login {by})"),
        Some(_) => {}
        None => {
            if let Ok(by) = std::env::var("SUDO_USER") {
                if !by.is_empty() && by != user {
                    user = format!("{user} (sudo by {by})");
                }
            }
        }
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "?".into());
    (user, host)
}

/// Every audit entry in the repository, in sequence order.
///
/// # Errors
///
/// When snapshot files cannot be read.
pub fn entries(repo: &Repo) -> Result<Vec<Entry>> {
    let snaps = repo.all_snapshots()?;
    let mut out: Vec<Entry> = snaps
        .into_iter()
        .filter(|s| s.tags.contains(AUDIT_TAG))
        .filter_map(|s| serde_json::from_str(s.description.as_deref()?).ok())
        .collect();
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// Appends an entry after the current head and publishes the new head to the places
/// configured in `[audit]`.
///
/// # Errors
///
/// When the log cannot be read or the entry cannot be written; when the entry was written
/// but its head could not be published ([`crate::ErrorKind::Unavailable`]).
pub fn append(repo: &Repo, action: &str, ok: bool, details: &str) -> Result<Entry> {
    logging_outcome(|| {
        let entry = write(repo, action, ok, details)?;
        publish_head(repo, &entry)?;
        Ok(entry)
    })
}

/// The action of an entry an operator wrote by hand ([`record_note`]).
pub const NOTE: &str = "note";

/// Appends a note an operator writes into the log (`audit note`): what was done by hand
/// during an incident (rows copied back, a server promoted), so the log that holds the
/// restores holds what came of them, with who and when.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] for an empty note, one over 2000 characters or one with
/// control characters (a line break included: an entry is one line); the log's errors.
pub fn record_note(repo: &Repo, text: &str) -> Result<Entry> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::config("the note is empty")
            .hint("say what was done, e.g. `lifeboat audit note \"copied back 6004 rows of shop.orders from the copy restored to 14:31:59\"`"));
    }
    if text.chars().count() > 2000 {
        return Err(Error::config(format!(
            "the note has {} characters, more than the 2000 an entry takes",
            text.chars().count()
        ))
        .hint("keep the note to what was done and where the rest is (a ticket, a file)"));
    }
    if text.chars().any(char::is_control) {
        return Err(
            Error::config("the note has a line break or another control character")
                .hint("write it on one line; an audit entry is one line"),
        );
    }
    append(repo, NOTE, true, text)
}

/// Whether this process has logged its operation's outcome (`true` once it has).
static OUTCOME: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Runs `log`, which logs the operation's outcome (its entry, the head, and what the entry
/// names, such as a drill's report), as one step an interrupt does not split: an
/// interrupt handler asks [`outcome_logged`] first, which waits for it, so that an
/// operation is never in the log both as done and as interrupted.
pub fn logging_outcome<T>(log: impl FnOnce() -> T) -> T {
    let mut logged = OUTCOME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = log();
    *logged = true;
    out
}

/// Marks a new operation under way whose outcome is not logged yet (a process that runs
/// several, as the demo does).
pub fn outcome_pending() {
    *OUTCOME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
}

/// Whether this process's operation has logged its outcome, for an interrupt handler
/// deciding whether to log an interruption: waits up to `patience` while the outcome is
/// being logged, `None` when it still is then.
#[must_use]
pub fn outcome_logged(patience: std::time::Duration) -> Option<bool> {
    let until = std::time::Instant::now() + patience;
    loop {
        match OUTCOME.try_lock() {
            Ok(logged) => return Some(*logged),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(*p.into_inner()),
            // still waiting for its turn: nothing written, nothing to wait for
            Err(std::sync::TryLockError::WouldBlock)
                if WAITING_FOR_TURN.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                return Some(false)
            }
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// Publishes `entry`'s head to the places configured in `[audit]` (see [`super::head`]).
///
/// # Errors
///
/// [`crate::ErrorKind::Unavailable`] naming each place that failed.
pub fn publish_head(repo: &Repo, entry: &Entry) -> Result<()> {
    super::head::publish(repo.audit_config(), repo.location(), entry).map_err(|e| {
        Error::new(
            e.kind(),
            format!("audit entry {} is in the repository; {e}", entry.seq),
        )
    })
}

/// Appends an entry after the current head, in the repository only.
///
/// Two processes appending at once (a backup and a drill, two cron jobs) would both
/// extend the same head and fork the chain, which `audit verify` could only call
/// tampering, so appenders take turns: on a local repository by an exclusive lock on
/// `lifeboat-audit.lock` in the repository directory, on S3 by lock objects under
/// `lifeboat-audit-lock/` (see `s3_turn`).
///
/// # Errors
///
/// When the log cannot be read or the entry cannot be written.
pub fn write(repo: &Repo, action: &str, ok: bool, details: &str) -> Result<Entry> {
    match write_or_park(repo, action, ok, details)? {
        Logged::Written(entry) => Ok(entry),
        Logged::Parked(e) => Err(e),
    }
}

/// How an entry reached the log.
enum Logged {
    /// In the repository.
    Written(Entry),
    /// Parked on this host (see [`super::parked`]); the error says why and where.
    Parked(Error),
}

/// Writes the entry, or parks it when the repository cannot take it; an error only when
/// it could be neither written nor parked.
fn write_or_park(repo: &Repo, action: &str, ok: bool, details: &str) -> Result<Logged> {
    let (user, host) = current_actor();
    let written = take_turn(repo, &user, &host).and_then(|turn| {
        add_parked(repo, &turn);
        write_one(repo, &turn, action, ok, details, &user, &host)
    });
    match written {
        Ok(entry) => Ok(Logged::Written(entry)),
        Err(e) => {
            let parked = super::parked::park(repo.location(), action, ok, details);
            let kept = parked.is_ok();
            let e = park_note(e, parked);
            if kept {
                Ok(Logged::Parked(e))
            } else {
                Err(e)
            }
        }
    }
}

/// `e` (the entry could not be written) saying where it was parked, or that parking failed.
fn park_note(e: Error, parked: Result<std::path::PathBuf>) -> Error {
    match parked {
        Ok(p) => e.with_note(format!(
            "the entry is parked in {} and goes into the log with the next operation that can write to this repository",
            p.display()
        )),
        Err(pe) => {
            let hint = pe.hint_text().map(str::to_string);
            let e = e.with_note(format!("parking the entry on this host failed too: {pe}"));
            match hint {
                Some(h) => e.hint(h),
                None => e,
            }
        }
    }
}

/// Adds the entries parked for this repository before a new one, oldest first, in the
/// caller's turn. Best effort: what cannot be added stays parked for the next operation.
fn add_parked(repo: &Repo, turn: &Turn) {
    let Ok(Some(_turn)) = super::parked::lock() else {
        return;
    };
    // claimed by a process that was stopped before it removed them (this one holds the
    // lock, so nobody is adding now): gone if the log has them, parked again if not
    if let Ok(claimed) = super::parked::claimed_for_repository(repo.location()) {
        if !claimed.is_empty() {
            let Ok(log) = entries(repo) else {
                return;
            };
            for (path, p) in claimed {
                let late = p.late_details();
                if let Some(e) = log
                    .iter()
                    .find(|e| e.action == p.action && e.details == late)
                {
                    // that process may have been stopped before it wrote the head line
                    publish_late(repo, e);
                    let _ = std::fs::remove_file(&path);
                } else {
                    let _ = std::fs::rename(&path, path.with_extension("json"));
                }
            }
        }
    }
    let Ok(list) = super::parked::for_repository(repo.location()) else {
        return;
    };
    for (path, p) in list {
        // claimed first (renamed away from `.json`): whatever happens after the entry is
        // written, the file is never added a second time
        let claimed = path.with_extension("adding");
        if std::fs::rename(&path, &claimed).is_err() {
            return;
        }
        let late = p.late_details();
        match write_one(repo, turn, &p.action, p.ok, &late, &p.user, &p.host) {
            // its line in the head file too, before the entry that follows it: without
            // it `audit verify` took the late entry for one written by someone else
            // (best effort: the caller's own entry reports a head that cannot be kept)
            Ok(entry) => publish_late(repo, &entry),
            Err(_) => {
                let _ = std::fs::rename(&claimed, &path);
                return;
            }
        }
        let _ = std::fs::remove_file(&claimed);
    }
}

/// The head-file line of an entry added late, in the caller's turn: the file only (a
/// `head_url` that is down would hold the turn for its timeout per entry; the caller's
/// own entry, published after the turn, sends the newest head there), and not twice.
/// Best effort: the caller's own entry reports a head file that cannot be written.
fn publish_late(repo: &Repo, entry: &Entry) {
    let cfg = crate::config::AuditConfig {
        head_url: None,
        ..repo.audit_config().clone()
    };
    let Some(file) = &cfg.head_file else {
        return;
    };
    if std::fs::read_to_string(file).is_ok_and(|t| t.contains(&entry.hash)) {
        return;
    }
    let _ = super::head::publish(&cfg, repo.location(), entry);
}

/// Appends one entry after the head, in the caller's turn (see [`write`]).
fn write_one(
    repo: &Repo,
    turn: &Turn,
    action: &str,
    ok: bool,
    details: &str,
    user: &str,
    host: &str,
) -> Result<Entry> {
    let head = settled_head(repo)?;
    let mut entry = Entry {
        seq: head.as_ref().map_or(1, |h| h.seq + 1),
        time: Timestamp::now(),
        action: action.to_string(),
        outcome: if ok { "ok" } else { "failed" }.to_string(),
        details: details.to_string(),
        user: Some(user.to_string()),
        host: Some(host.to_string()),
        prev: head.map_or_else(|| GENESIS.to_string(), |h| h.hash),
        hash: String::new(),
        extra: Default::default(),
    };
    entry.hash = entry.compute_hash();
    turn.confirm()?;
    let id = store(repo, &entry).map_err(|e| {
        Error::new(
            e.kind(),
            format!("its audit entry could not be written: {e}"),
        )
    })?;
    // stopped while it stored (Ctrl-Z, a paused VM) for longer than the patience: another
    // run may have taken the turn and appended at the same place meanwhile
    if let Err(taken) = turn.confirm() {
        let all = entries(repo)?;
        let rival = all
            .iter()
            .any(|e| e.seq == entry.seq && e.hash != entry.hash);
        let built_on = all
            .iter()
            .any(|e| e.seq == entry.seq + 1 && e.prev == entry.hash);
        if rival && !built_on {
            // the other run's entry is the chain's: this one goes, and is parked instead
            repo.with_open(|r| Ok(r.delete_snapshots(&[id])?))?;
            return Err(taken);
        }
    }
    Ok(entry)
}

/// The entry to append after: the newest. Two at the newest place are a run withdrawing
/// its entry (see [`write_one`]), which takes a moment; a fork older than that is `audit
/// verify`'s to report, and the append goes on after one of them.
fn settled_head(repo: &Repo) -> Result<Option<Entry>> {
    let mut all = entries(repo)?;
    for _ in 0..5 {
        let top = all.last().map(|e| e.seq);
        if all.iter().filter(|e| Some(e.seq) == top).count() < 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        all = entries(repo)?;
    }
    Ok(all.pop())
}

/// Writes `entry` as its snapshot and returns the snapshot's id.
fn store(repo: &Repo, entry: &Entry) -> Result<rustic_core::repofile::SnapshotId> {
    let json = serde_json::to_string(entry).map_err(|e| Error::internal(e.to_string()))?;
    let path = std::path::PathBuf::from(format!("/lifeboat/audit/{:010}.json", entry.seq));
    let mut snap = SnapshotOptions::default()
        .label(LABEL.to_string())
        .add_tags(AUDIT_TAG)?
        .to_snapshot()?;
    snap.description = Some(json.clone());
    let mut opts = RusticBackupOptions::default();
    opts.parent_opts.force = true;
    let source = StreamSource::new(path.clone(), Cursor::new(json.into_bytes()));
    repo.with_indexed_ids(|idx| {
        Ok(idx
            .archive(&opts, &source, snap, std::slice::from_ref(&path))?
            .id)
    })
}

/// What orders appenders, held until dropped.
enum Turn {
    /// The exclusive lock on `lifeboat-audit.lock` of a local repository.
    Local(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>),
    /// A lock object of an S3 repository.
    S3(#[allow(dead_code)] super::s3_turn::S3Turn),
}

impl Turn {
    /// Fails when this turn was taken over: on S3 another process removes a lock it has
    /// seen for the whole patience (this run was stopped or hung that long) and appends
    /// itself, and an entry written now would fork the chain.
    fn confirm(&self) -> Result<()> {
        match self {
            Self::Local(_) => Ok(()),
            Self::S3(turn) if turn.still_held()? => Ok(()),
            Self::S3(_) => Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "this run's turn to append to the audit log was taken over: it held it for more than {} s (stopped or hung), and another run removed its lock as stale",
                    LOCK_PATIENCE.as_secs()
                ),
            )),
        }
    }
}

/// Whether this process is waiting for its turn (nothing of its outcome is written yet:
/// an interrupt need not wait for it).
static WAITING_FOR_TURN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Takes this process's turn to append to the log of `repo`, as `user`@`host`.
fn take_turn(repo: &Repo, user: &str, host: &str) -> Result<Turn> {
    WAITING_FOR_TURN.store(true, std::sync::atomic::Ordering::SeqCst);
    let turn = take_turn_waiting(repo, user, host);
    WAITING_FOR_TURN.store(false, std::sync::atomic::Ordering::SeqCst);
    turn
}

fn take_turn_waiting(repo: &Repo, user: &str, host: &str) -> Result<Turn> {
    let cfg = repo.config();
    let Some(opts) = super::backend::s3_options(super::repo_url(cfg)?, cfg)? else {
        let path = std::path::Path::new(repo.location()).join("lifeboat-audit.lock");
        return exclusive_lock(&path).map(Turn::Local);
    };
    // bounded like the repository's own requests (README: 30 s, 60 s without progress,
    // tried four times)
    let op = super::backend::s3_operator(
        opts,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(60),
        3,
    )
    .map_err(|e| Error::unavailable(format!("cannot set up the S3 client: {e}")))?;
    let turn = super::s3_turn::take(op, user, host, LOCK_PATIENCE, ON_LOCK_WAIT.get().copied())?;
    for removed in &turn.removed {
        repo.notice(removed.clone());
    }
    Ok(Turn::S3(turn))
}

/// Told once when an append has waited a few seconds for another process's lock (the CLI
/// prints it): a wait of minutes without a word looks like a hang.
static ON_LOCK_WAIT: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Sets what is told when an append waits for the audit log's lock (once per process).
pub fn on_lock_wait(tell: fn(&str)) {
    let _ = ON_LOCK_WAIT.set(tell);
}

/// How long an appender waits for another to let go of the lock. An append holds it for
/// seconds; one held this long belongs to a process that was stopped (Ctrl-Z) or hangs,
/// and waiting on would hang this run, its work already done, without a word.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// An exclusive lock on the file at `path`, created when missing; waits for the holder
/// up to five minutes.
///
/// # Errors
///
/// When the file can be neither opened nor created, or not locked; [`ErrorKind::Locked`]
/// when another process held it all that time.
pub(crate) fn exclusive_lock(path: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    exclusive_lock_within(path, LOCK_PATIENCE)
}

fn exclusive_lock_within(
    path: &std::path::Path,
    patience: std::time::Duration,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    // read-only is enough to lock, and works for every user who may write beside it,
    // whoever created the file
    let file = std::fs::File::open(path)
        .or_else(|_| {
            let mode = path.parent().map_or(0o600, super::owner::file_mode);
            let f = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true),
                mode,
            )
            .open(path)?;
            // exactly, whatever the umask (the archiver's 077 would shut a group out), and
            // the repository owner's at once when root made it: a run killed before it
            // hands everything over must not lock that user out
            let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
            if let Some(root) = path.parent() {
                let _ = super::owner::give_to_owner(root, path);
            }
            Ok::<_, std::io::Error>(f)
        })
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let began = std::time::Instant::now();
    let deadline = began + patience;
    let mut told = false;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = f;
                if !told && began.elapsed() >= std::time::Duration::from_secs(5) {
                    told = true;
                    if let Some(tell) = ON_LOCK_WAIT.get() {
                        tell(&format!(
                            "waiting for {}, held by another process (a lifeboat run stopped with Ctrl-Z, or one that hangs? `fuser -v` on it names it); after {} s this run's audit entry is parked instead",
                            path.display(),
                            patience.as_secs()
                        ));
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "another process has held {} for {} s: a lifeboat run that was stopped (Ctrl-Z) or hangs",
                        path.display(),
                        patience.as_secs()
                    ),
                )
                .hint(format!(
                    "`fuser -v {}` names it: resume or end it",
                    path.display()
                )))
            }
            Err((_, e)) => {
                return Err(Error::unavailable(format!(
                    "locking {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// Appends an entry for an operation's `result` and passes the result on. An operation
/// that succeeded but could not be logged reports that, since an unlogged success would
/// leave a hole in the evidence.
///
/// # Errors
///
/// The operation's own error, or the logging error after a success.
pub fn record<T>(repo: &Repo, action: &str, result: Result<T>, details: &str) -> Result<T> {
    let ok = result.is_ok();
    record_outcome(repo, action, result, ok, details)
}

/// As [`record`], for operations whose success is more than `Ok` (a verify that found
/// damage returns its report but is logged as failed). A logging failure is reported only
/// when the operation succeeded: otherwise the operation's own news comes first.
///
/// # Errors
///
/// The operation's own error, or the logging error after a success.
pub fn record_outcome<T>(
    repo: &Repo,
    action: &str,
    result: Result<T>,
    ok: bool,
    details: &str,
) -> Result<T> {
    match logged_outcome(repo, action, result, ok, details)? {
        (v, None) => Ok(v),
        // the operation's result is not printed after an error: say what was done
        (_, Some(e)) if ok => Err(Error::new(
            e.kind(),
            format!("{action} succeeded ({details}), but {e}"),
        )
        .hint(GAP_HINT)),
        // its own failure is the news; the missing head is said beside it
        (v, Some(e)) => {
            repo.notice(format!("audit: {e}"));
            Ok(v)
        }
    }
}

/// What to do about an [`EvidenceGap`].
const GAP_HINT: &str = "the operation itself is complete; the message says what its evidence lacks (a head that did not reach its place is not sent again: the next logged operation publishes its own, which follows this one); fix that place, then run `lifeboat audit verify`";

/// An operation whose result stands but whose audit evidence is incomplete: its entry
/// could not be logged, or is in the repository but its head could not be published
/// where the configuration keeps it (`[audit] head_file`, `head_url`). A retry would do the
/// work twice. After a success, [`Self::error`] is what the CLI exits with once it has
/// printed the result; after a failure (damage found), the failure decides the exit and
/// the gap is said beside it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvidenceGap {
    /// What is missing, and where.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The logging error's kind, which chooses the exit code.
    pub kind: crate::ErrorKind,
}

impl EvidenceGap {
    /// The gap as an error (for an exit code).
    #[must_use]
    pub fn error(&self) -> Error {
        let e = Error::new(self.kind, self.message.clone());
        match &self.hint {
            Some(h) => e.hint(h.clone()),
            None => e,
        }
    }
}

/// As [`record_outcome`], for operations whose report a caller needs also when the audit
/// evidence could not be completed (a backup's ids, a verify's verdicts): the gap comes
/// beside the result instead of in its place.
///
/// # Errors
///
/// The operation's own error.
pub fn record_outcome_kept<T>(
    repo: &Repo,
    action: &str,
    result: Result<T>,
    ok: bool,
    details: &str,
) -> Result<(T, Option<EvidenceGap>)> {
    let (v, gap) = logged_outcome(repo, action, result, ok, details)?;
    Ok((
        v,
        gap.map(|e| EvidenceGap {
            message: if ok {
                format!("{action} succeeded, but {e}")
            } else {
                format!("{action} ran (its result says what it found), and {e}")
            },
            hint: Some(GAP_HINT.into()),
            kind: e.kind(),
        }),
    ))
}

/// Logs the outcome; returns the operation's result, with the logging error when its
/// entry or head did not get where it belongs (an entry neither written nor parked after
/// a failed outcome is said as a notice instead).
fn logged_outcome<T>(
    repo: &Repo,
    action: &str,
    result: Result<T>,
    ok: bool,
    details: &str,
) -> Result<(T, Option<Error>)> {
    let mut parked = None;
    // neither written nor parked (not a head that could not be published afterwards)
    let mut unlogged = false;
    let logged = logging_outcome(|| match write_or_park(repo, action, ok, details) {
        Ok(Logged::Written(entry)) => publish_head(repo, &entry),
        Ok(Logged::Parked(why)) => {
            parked = Some(format!("{action}: {why}"));
            Ok(())
        }
        Err(e) => {
            unlogged = true;
            Err(e)
        }
    });
    let result = match (result, parked) {
        // the operation's own error, and where its entry went
        (Err(e), Some(note)) => Err(e.with_note(format!("audit: {note}"))),
        // nothing is lost: the entry goes in with the next operation. The operation's own
        // outcome stands (a retry after a false failure would do the work twice)
        (Ok(v), Some(note)) => {
            repo.notice(note);
            Ok(v)
        }
        (result, None) => result,
    };
    match (result, logged) {
        // a damage verdict is evidence too: its head missing from the places outside is
        // said, whatever the operation found
        (Ok(v), Err(e)) if ok || !unlogged => Ok((v, Some(e))),
        // a failure that reaches no log must at least be said
        (Err(e), Err(l)) if unlogged => Err(e.with_note(format!(
            "audit: this failure is in no log: {}",
            crate::error::headline(&l.to_string())
        ))),
        (Ok(v), Err(l)) if unlogged => {
            repo.notice(format!(
                "audit: the {action} entry is in no log: {}",
                crate::error::headline(&l.to_string())
            ));
            Ok((v, None))
        }
        (result, _) => result.map(|v| (v, None)),
    }
}

/// The result of checking the chain.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditVerdict {
    /// Entries read.
    pub entries: usize,
    /// Hash of the newest entry.
    pub head: Option<String>,
    /// What is wrong, naming the entries; empty when the chain is intact.
    pub problems: Vec<String>,
    /// Signed heads (`audit verify --signed`) whose signature verified with the trusted
    /// public key; each head is then checked against the chain like an expected head (one
    /// missing from the log is in `problems`).
    pub signed_heads_verified: usize,
}

impl AuditVerdict {
    /// The chain is intact (and matches the expected head, if one was given).
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the chain; with `expected_head`, also that no newest entry was cut off.
#[must_use]
pub fn verify_entries(entries: &[Entry], expected_head: Option<&str>) -> AuditVerdict {
    let mut problems = Vec::new();
    let mut prev_hash = GENESIS.to_string();
    let mut expected_seq = 1;
    for e in entries {
        if e.seq != expected_seq {
            if e.seq > expected_seq {
                problems.push(format!(
                    "entries {expected_seq} to {} are missing",
                    e.seq - 1
                ));
            } else {
                problems.push(format!("entry {} appears twice or out of order", e.seq));
            }
        }
        if e.compute_hash() != e.hash && e.extra.is_empty() {
            problems.push(format!(
                "entry {} ({} at {}) was edited: its hash does not match",
                e.seq, e.action, e.time
            ));
        } else if e.compute_hash() != e.hash {
            problems.push(format!(
                "entry {} ({} at {}) does not match its hash, and it has fields this lifeboat ({}) does not know ({}): check the log with the lifeboat that wrote it; if that one also finds it edited, it was",
                e.seq,
                e.action,
                e.time,
                crate::VERSION,
                e.extra.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if e.prev != prev_hash {
            problems.push(format!(
                "entry {} does not follow the entry before it (removed or reordered)",
                e.seq
            ));
        }
        prev_hash.clone_from(&e.hash);
        expected_seq = e.seq + 1;
    }
    let head = entries.last().map(|e| e.hash.clone());
    if let Some(expected) = expected_head {
        // the log may have grown since the head was recorded, but it must still contain it;
        // the head is named as it was given, so the reader can find it where it came from
        if let Err(e) = check_head(expected) {
            problems.push(e.to_string());
        } else {
            let matching = entries
                .iter()
                .filter(|e| is_head(&e.hash, expected))
                .count();
            match matching {
                0 => problems.push(format!(
                    "the expected head {expected} is not in the log: newest entries were removed or the log was replaced"
                )),
                1 => {}
                n => problems.push(format!(
                    "the expected head {expected} matches {n} entries: give more of its digits"
                )),
            }
        }
    }
    AuditVerdict {
        entries: entries.len(),
        head,
        problems,
        signed_heads_verified: 0,
    }
}

/// Digits a head given by a person must have at least: what `audit verify` prints. 64 bits
/// leave no chance that two entries of a log share them by accident.
pub const HEAD_PREFIX_DIGITS: usize = 16;

/// Checks that `given` can name an entry: [`HEAD_PREFIX_DIGITS`] to 64 hex digits (the
/// head as `audit verify` prints it, or the full hash).
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] when it is shorter, longer or not hex.
pub fn check_head(given: &str) -> Result<()> {
    let hex = given.chars().all(|c| c.is_ascii_hexdigit());
    if hex && (HEAD_PREFIX_DIGITS..=64).contains(&given.len()) {
        return Ok(());
    }
    let why = if !hex {
        "is not hexadecimal"
    } else if given.len() < HEAD_PREFIX_DIGITS {
        "is too short"
    } else {
        "is longer than a hash"
    };
    Err(
        Error::config(format!("the audit head {given:?} {why}")).hint(format!(
            "give at least {HEAD_PREFIX_DIGITS} hex digits, as printed by `lifeboat audit verify` \
         (`lifeboat audit list --json` shows every full hash)"
        )),
    )
}

/// Whether the entry hash `hash` is the head `given` names: the full hash or its first
/// digits, in either case (a head checked by [`check_head`]).
fn is_head(hash: &str, given: &str) -> bool {
    hash.get(..given.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(given))
}

/// Reads and checks the repository's audit log: the chain, `expected_head` when given, and
/// the newest head in the head file the repository was opened with
/// ([`Repo::with_audit`]'s `head_file`), which is what catches entries cut off the end of
/// the log (as `lifeboat audit verify` does).
///
/// # Errors
///
/// When snapshot files cannot be read, or the head file exists and cannot be read or
/// holds no head.
pub fn verify(repo: &Repo, expected_head: Option<&str>) -> Result<AuditVerdict> {
    // the head file before the log: a run finishing in between appends to both, and the
    // file must not be newer than the log it is compared with
    let kept = head_file_text(repo)?;
    let texts: Vec<(&str, &Path)> = match (&kept, &repo.audit_config().head_file) {
        (Some(t), Some(f)) => vec![(t.as_str(), f.as_path())],
        _ => Vec::new(),
    };
    check_log(repo, expected_head, &texts).map(|(v, _)| v)
}

/// The whole check of the log, as `lifeboat audit verify` makes it (and [`verify`]): the
/// chain and `expected_head`; backups the log records that are gone; snapshot files of
/// the log that cannot be read; the heads the drill reports stored in the repository name
/// (a log rewritten with its hashes computed again verifies as a chain, but not against
/// those); and each head file's text in `head_texts` (its newest head, and every line
/// against the log), read before the log. Returns the verdict and the entries it read.
///
/// # Errors
///
/// When snapshot files cannot be read, or a head file's text holds no head.
pub fn check_log(
    repo: &Repo,
    expected_head: Option<&str>,
    head_texts: &[(&str, &Path)],
) -> Result<(AuditVerdict, Vec<Entry>)> {
    let entries = entries(repo)?;
    let mut v = verify_entries(&entries, expected_head);
    v.problems.extend(backups_gone_from(repo, &entries)?);
    v.problems.extend(unreadable_problems(repo));
    v.problems.extend(drill_head_problems(repo, &entries));
    for (text, file) in head_texts {
        let head = super::head::newest_in(text).ok_or_else(|| {
            Error::config(format!("{} holds no audit head", file.display())).hint("it should end with a line `SEQ HASH TIME ACTION OUTCOME` or a bare hash (at least its first 16 hex digits)")
        })?;
        let found = verify_entries(&entries, Some(&head))
            .problems
            .into_iter()
            .chain(super::head::rewritten(text, &entries))
            .chain(super::head::gone_from_log(text, &entries));
        for p in found {
            if !v.problems.contains(&p) {
                v.problems.push(p);
            }
        }
    }
    Ok((v, entries))
}

/// The drill reports stored in `repo` that name an audit head `entries` do not hold: a
/// log rewritten with its hashes computed again verifies as a chain, but not against
/// those. Reports that cannot be read are a problem of their own, not a reason to stop.
#[must_use]
pub fn drill_head_problems(repo: &Repo, entries: &[Entry]) -> Vec<String> {
    match crate::ops::evidence::drills(repo) {
        Ok(stored) => crate::ops::report::drill_heads_not_in_log(&stored, entries),
        Err(e) => vec![format!(
            "the drill reports stored in the repository could not be read to check the audit heads they name: {}",
            crate::error::one_line(&e)
        )],
    }
}

/// What the configured head file ([`Repo::with_audit`]) says against the log `entries`:
/// entries cut off its end (the file's newest head is not in it), and lines whose place the
/// log holds with another hash (a log that went back and grew again). Empty without a head
/// file, or when it does not exist yet.
///
/// # Errors
///
/// When the file cannot be read or holds no head.
pub fn head_file_problems(
    repo: &Repo,
    text: Option<&str>,
    entries: &[Entry],
) -> Result<Vec<String>> {
    let (Some(file), Some(text)) = (repo.audit_config().head_file.as_ref(), text) else {
        return Ok(Vec::new());
    };
    let head = super::head::newest_in(text)
        .ok_or_else(|| Error::config(format!("{} holds no audit head", file.display())))?;
    let mut out = verify_entries(entries, Some(&head)).problems;
    // the chain's own problems are said by the caller; these are the file's
    let own = verify_entries(entries, None).problems;
    out.retain(|p| !own.contains(p));
    out.extend(super::head::rewritten(text, entries));
    out.extend(super::head::gone_from_log(text, entries));
    Ok(out)
}

/// The configured head file's text ([`Repo::with_audit`]), read before the log it is
/// compared with ([`head_file_problems`]); `None` without one or before it exists.
///
/// # Errors
///
/// When it exists and cannot be read.
pub fn head_file_text(repo: &Repo) -> Result<Option<String>> {
    match repo
        .audit_config()
        .head_file
        .as_ref()
        .filter(|f| f.exists())
    {
        Some(f) => std::fs::read_to_string(f)
            .map(Some)
            .map_err(|e| Error::io(f.display(), e)),
        None => Ok(None),
    }
}

/// The backups a `backup` entry records as stored (`ID logical app (N bytes)` in its
/// details, after `; stored: ` when some failed, before any `; failed: ` part in entries
/// written before session 24; `ID logical app, …` after an interruption): id, kind and
/// database.
fn backups_recorded(e: &Entry) -> Vec<(&str, &str, &str)> {
    let list = match e.action.as_str() {
        // a run with some dumps failed is logged as failed, and stored the others
        "backup" => match e.own_details().rsplit_once("; stored: ") {
            Some((_, stored)) => Some(stored),
            None => e
                .own_details()
                .split("; failed: ")
                .next()
                .unwrap_or_default()
                .split_once(": ")
                .map(|(_, list)| list),
        },
        ADOPTED if e.outcome == "ok" => e
            .details
            .strip_prefix("backups ")
            .and_then(|r| r.split_once(" adopted: "))
            .map(|(list, _)| list),
        _ => None,
    };
    let Some(list) = list else {
        return Vec::new();
    };
    let words: Vec<&str> = list.split(' ').collect();
    words
        .windows(3)
        .filter(|w| {
            (w[0].len() == 8 || w[0].len() == ID_LEN)
                && w[0].bytes().all(|b| b.is_ascii_hexdigit())
                && ["logical", "schema", "globals", "physical"].contains(&w[1])
        })
        .map(|w| (w[0], w[1], w[2].trim_end_matches(',')))
        .collect()
}

/// Backups the log records as stored that the repository no longer holds (`held`: the
/// ids of the backups there are, and of snapshot files that cannot be read). lifeboat
/// never deletes a backup, so one that is gone was deleted by hand (`restic forget`, `rm`)
/// or by someone who wanted it gone: nothing else would say so, `list` simply shows fewer.
#[must_use]
pub fn gone_backups<'a>(entries: &[Entry], held: impl Iterator<Item = &'a str>) -> Vec<String> {
    let held = Held::of(held);
    let gone: Vec<String> = gone_recorded(entries, &held)
        .into_iter()
        .map(|(e, id, kind, db)| {
            format!(
                "{} ({kind}{}, entry {} at {})",
                short_id(id),
                if db == "-" {
                    String::new()
                } else {
                    format!(" of {db}")
                },
                e.seq,
                e.time.strftime("%Y-%m-%d %H:%M:%S UTC")
            )
        })
        .collect();
    match gone.len() {
        0 => Vec::new(),
        n => vec![format!(
            "{n} backup(s) the audit log records as stored are no longer in the repository: {}{}; lifeboat never deletes a backup, so they were deleted by hand or by someone who wanted them gone (if on purpose, record it: `lifeboat audit deleted ID... --reason \"...\"`)",
            gone.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if n > 5 { format!(" and {} more", n - 5) } else { String::new() }
        )],
    }
}

/// The first 8 digits of a backup id, as entries written before session 21 name it.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Hex digits in a whole backup (snapshot) id.
const ID_LEN: usize = 64;

/// Backup ids as the log names them: whole, or (entries written before session 21) by
/// their first 8 digits. A whole id names that backup alone; 8 digits name any backup
/// whose id begins with them, and someone with the repository's password could make a
/// snapshot to fit in a few CPU hours (2^32 tries of its hash), which would then pass
/// for a logged backup.
#[derive(Debug, Default)]
pub struct LoggedIds<'a> {
    whole: std::collections::HashSet<&'a str>,
    short: std::collections::HashSet<&'a str>,
}

impl LoggedIds<'_> {
    /// Whether the log names the backup whose whole id is `id`.
    #[must_use]
    pub fn names(&self, id: &str) -> bool {
        self.whole.contains(id) || self.short.contains(short_id(id))
    }
}

impl<'a> FromIterator<&'a str> for LoggedIds<'a> {
    fn from_iter<I: IntoIterator<Item = &'a str>>(ids: I) -> Self {
        let mut out = Self::default();
        for id in ids {
            if id.len() == ID_LEN {
                out.whole.insert(id);
            } else {
                out.short.insert(short_id(id));
            }
        }
        out
    }
}

/// The backups a repository holds (whole ids), asked whether it holds one as an entry
/// names it (whole, or by its first 8 digits).
pub struct Held<'a> {
    whole: std::collections::HashSet<&'a str>,
    short: std::collections::HashSet<&'a str>,
}

impl<'a> Held<'a> {
    /// The backups with whole ids `ids`.
    pub fn of(ids: impl Iterator<Item = &'a str>) -> Self {
        let whole: std::collections::HashSet<&str> = ids.collect();
        let short = whole.iter().map(|id| short_id(id)).collect();
        Self { whole, short }
    }

    /// Whether one of them is the backup an entry names `named` (whole, or 8 digits).
    #[must_use]
    pub fn holds(&self, named: &str) -> bool {
        if named.len() == ID_LEN {
            self.whole.contains(named)
        } else {
            self.short.contains(named)
        }
    }
}

/// The backups `entries` record as stored whose short id is not in `held` (the backups
/// there are) and that no entry records as deleted on purpose (`lifeboat audit deleted`),
/// each with the entry that recorded it, its kind and database.
fn gone_recorded<'e>(
    entries: &'e [Entry],
    held: &Held<'_>,
) -> Vec<(&'e Entry, &'e str, &'e str, &'e str)> {
    let deleted: std::collections::HashSet<&str> =
        entries.iter().flat_map(deleted_on_purpose).collect();
    entries
        .iter()
        .flat_map(|e| {
            backups_recorded(e)
                .into_iter()
                .map(move |(id, kind, db)| (e, id, kind, db))
        })
        .filter(|(_, id, _, _)| !held.holds(id) && !deleted.contains(id))
        .collect()
}

/// A backup a `backup` entry records as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBackup {
    /// When the backup run ended ([`Entry::happened_at`] of its entry).
    pub at: Timestamp,
    /// The source the entry names.
    pub source: String,
    /// The id as the entry names it: whole, or 8 hex digits in entries written before
    /// session 21.
    pub id: String,
    /// `logical`, `schema`, `globals`, `physical`.
    pub kind: String,
    /// The database, `-` for the kinds without one.
    pub database: String,
    /// Recorded as deleted on purpose (`lifeboat audit deleted`) by any entry of the log.
    pub deleted_on_purpose: bool,
}

/// Every backup the `backup` entries of `entries` record as stored, oldest first: what
/// was completed, also when the repository no longer holds it.
#[must_use]
pub fn logged_backups(entries: &[Entry]) -> Vec<LoggedBackup> {
    let deleted: std::collections::HashSet<&str> =
        entries.iter().flat_map(deleted_on_purpose).collect();
    entries
        .iter()
        .filter(|e| e.action == "backup")
        .flat_map(|e| {
            // `source NAME recovery point …: …` (`source NAME: error` stored nothing)
            let source = e
                .details
                .strip_prefix("source ")
                .and_then(|r| r.split_once(" recovery point "))
                .map(|(s, _)| s.to_string())
                .unwrap_or_default();
            let deleted = &deleted;
            backups_recorded(e)
                .into_iter()
                .map(move |(id, kind, db)| LoggedBackup {
                    at: e.happened_at(),
                    source: source.clone(),
                    id: id.to_string(),
                    kind: kind.to_string(),
                    database: db.to_string(),
                    deleted_on_purpose: deleted.contains(id),
                })
        })
        .collect()
}

/// The backups recorded as deleted on purpose, with the entry that says so: what `audit
/// verify` shows beside its verdict (such an entry is evidence to review, not a clearance).
#[must_use]
pub fn recorded_deletions(entries: &[Entry]) -> Vec<String> {
    recorded_where(entries, |e| !deleted_on_purpose(e).is_empty())
}

/// The entries adopting backups no backup entry recorded (`lifeboat audit adopt`), shown
/// beside `audit verify`'s verdict like [`recorded_deletions`]: the adoption is evidence
/// to review too.
#[must_use]
pub fn recorded_adoptions(entries: &[Entry]) -> Vec<String> {
    recorded_where(entries, |e| {
        e.action == ADOPTED && !backups_recorded(e).is_empty()
    })
}

/// The notes operators wrote ([`record_note`]), as [`recorded_deletions`] says its entries.
#[must_use]
pub fn recorded_notes(entries: &[Entry]) -> Vec<String> {
    recorded_where(entries, |e| e.action == NOTE)
}

fn recorded_where(entries: &[Entry], which: impl Fn(&Entry) -> bool) -> Vec<String> {
    entries
        .iter()
        .filter(|e| which(e))
        .map(|e| {
            format!(
                "entry {} at {} by {}: {}",
                e.seq,
                e.time.strftime("%Y-%m-%d %H:%M:%S UTC"),
                e.actor(),
                e.details
            )
        })
        .collect()
}

/// What a `verify` entry says it checked when it checked every backup (`3 backup(s)
/// (every backup in the repository), data read: all intact`); one of given backups names
/// their whole ids there instead.
pub const VERIFIED_EVERY: &str = "every backup in the repository";

/// The action of an entry recording backups deleted on purpose.
pub const DELETED: &str = "deleted";

/// What an entry of [`DELETED`] names: `backups 1234abcd, 5678abcd deleted on purpose: ...`
/// (whole ids since session 21); nothing for any other entry.
#[must_use]
pub fn deleted_on_purpose(e: &Entry) -> Vec<&str> {
    if e.action != DELETED || e.outcome != "ok" {
        return Vec::new();
    }
    e.details
        .strip_prefix("backups ")
        .and_then(|r| r.split_once(" deleted on purpose"))
        .map(|(ids, _)| ids.split(", ").collect())
        .unwrap_or_default()
}

/// Records in the log that `ids` (backups it records as stored, no longer in the
/// repository) were deleted on purpose, with `reason`: the checks that name gone backups
/// stop naming them, and the entry says who did it and why.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] for an id that is not one of the gone backups; the log's
/// errors.
pub fn record_deleted(repo: &Repo, ids: &[String], reason: &str) -> Result<Entry> {
    let entries = entries(repo)?;
    let backups = repo.backups()?;
    let unreadable = repo.unreadable_snapshots();
    let held = Held::of(
        backups
            .iter()
            .map(|b| b.id.as_str())
            .chain(unreadable.iter().map(|(id, _)| id.as_str())),
    );
    let gone: Vec<(&str, String)> = gone_recorded(&entries, &held)
        .into_iter()
        .map(|(_, id, _, _)| (id, id.to_string()))
        .collect();
    record_named(
        repo,
        Named {
            action: DELETED,
            verb: "deleted on purpose",
            candidates: &gone,
            not_one:
                "is not a backup the audit log records as stored and the repository no longer holds",
            which: "`lifeboat audit verify` names the gone backups",
            why: "say why they were deleted (an erasure request, a backup taken by mistake)",
        },
        ids,
        reason,
    )
}

/// An entry naming backups: what it records, of which backups, and what to say when an
/// id or the reason is wrong.
struct Named<'a> {
    action: &'a str,
    verb: &'a str,
    /// (id as the log names it, as this entry will) of the backups it may name.
    candidates: &'a [(&'a str, String)],
    not_one: &'a str,
    which: &'a str,
    why: &'a str,
}

/// Writes (and publishes) an entry `backups A, B VERB: reason` naming those of
/// `n.candidates` that `ids` give.
fn record_named(repo: &Repo, n: Named<'_>, ids: &[String], reason: &str) -> Result<Entry> {
    let mut named = Vec::new();
    for id in ids {
        let id = id.to_ascii_lowercase();
        // 8 digits or more of a whole id, or an id an older entry names by 8 digits
        let fits = |c: &str| id.len() >= 8 && (c.starts_with(&id) || id.starts_with(c));
        match n.candidates.iter().find(|(c, _)| fits(c)) {
            Some((_, as_named)) => named.push(as_named.as_str()),
            None => {
                return Err(Error::config(format!("{id} {}", n.not_one)).hint(format!(
                    "{}; give their ids (8 hex digits or more)",
                    n.which
                )))
            }
        }
    }
    if reason.trim().is_empty() {
        return Err(
            Error::config("--reason is empty").hint(format!("{}: the entry is evidence", n.why))
        );
    }
    named.sort_unstable();
    named.dedup();
    let entry = write(
        repo,
        n.action,
        true,
        &format!(
            "backups {} {}: {}",
            named.join(", "),
            n.verb,
            reason.trim().replace('\n', " ")
        ),
    )?;
    publish_head(repo, &entry)?;
    Ok(entry)
}

/// The action of an entry recording backups in no backup entry taken as the
/// repository's own after a check (a run killed before it could log, a backup written
/// with restic on purpose).
pub const ADOPTED: &str = "adopted";

/// Records in the log that `ids` (backups in the repository no entry records, as
/// `verify --all` names them) were checked and are the repository's own, with `reason`:
/// from then on they are counted as logged (a pick by time may take them, the checks stop
/// naming them), and the entry says who took them and why.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] for an id that is not one of those backups, or an empty
/// reason; the log's errors.
pub fn record_adopted(repo: &Repo, ids: &[String], reason: &str) -> Result<Entry> {
    let entries = entries(repo)?;
    let backups = repo.backups()?;
    let missing = not_in_log(repo, &entries, &backups)?;
    let logged = logged_backup_ids(&entries);
    // the ids that are not candidates, said for what they are
    for id in ids {
        let given = id.to_ascii_lowercase();
        let short = short_id(&given);
        let place = backups
            .iter()
            .position(|b| given.len() >= 8 && b.id.starts_with(&given));
        let why = match place {
            None => Some(format!("no backup in the repository has the id {id}")),
            Some(i) => match missing.iter().find(|(m, _)| *m == i) {
                None if logged.names(&backups[i].id) => {
                    Some(format!(
                        "backup {short} is already in the audit log: nothing to adopt"
                    ))
                }
                None => Some(format!(
                    "backup {short} was made before the audit log began (an older lifeboat): nothing to adopt"
                )),
                Some((_, true)) => Some(format!(
                    "backup {short} has its entry parked on this host: the next backup, verify, restore or drill adds it to the log (`lifeboat verify --latest`), nothing to adopt"
                )),
                Some((_, false)) => None,
            },
        };
        if let Some(why) = why {
            return Err(Error::config(why).hint(
                "`lifeboat verify --all` names the backups in no audit entry; give their ids (8 hex digits or more)",
            ));
        }
    }
    // as a backup entry names each: id, kind, database
    let unlogged: Vec<(&str, String)> = missing
        .into_iter()
        .filter(|(_, parked)| !parked)
        .map(|(i, _)| {
            let b = &backups[i];
            let db = b.meta.database.as_deref().unwrap_or("-");
            (b.id.as_str(), format!("{} {} {db}", b.id, b.meta.kind))
        })
        .collect();
    record_named(
        repo,
        Named {
            action: ADOPTED,
            verb: "adopted",
            candidates: &unlogged,
            not_one: "is not a backup in the repository that no audit entry records",
            which: "`lifeboat verify --all` names those backups",
            why: "say how they were checked and why they are kept (e.g. `verify --read-data` passed; a run killed by the OOM killer)",
        },
        ids,
        reason,
    )
}

/// [`gone_backups`] of `entries` against the backups `repo` holds now.
///
/// # Errors
///
/// When the snapshots cannot be listed.
pub fn backups_gone_from(repo: &Repo, entries: &[Entry]) -> Result<Vec<String>> {
    let backups = repo.backups()?;
    let unreadable = repo.unreadable_snapshots();
    Ok(gone_backups(
        entries,
        backups
            .iter()
            .map(|b| b.id.as_str())
            .chain(unreadable.iter().map(|(id, _)| id.as_str())),
    ))
}

/// The backups `entries` name (a backup entry names each, done or interrupted).
#[must_use]
pub fn logged_backup_ids(entries: &[Entry]) -> LoggedIds<'_> {
    entries
        .iter()
        .filter(|e| e.action == "backup")
        .flat_map(|e| ids_in(&e.details))
        .chain(
            entries
                .iter()
                .filter(|e| e.action == ADOPTED)
                .flat_map(|e| backups_recorded(e).into_iter().map(|(id, _, _)| id)),
        )
        .collect()
}

/// The backup ids `text` names: its whole ids (64 hex digits) when it has any, as every
/// entry written since session 21 does; else, as older entries name backups (`7c1d03aa`),
/// the first 8 digits of every run of at least 8. An entry with whole ids names nothing
/// by 8 digits: its `recovery point 20261207T…` would otherwise pass any snapshot whose
/// id was made to begin `20261207`.
fn ids_in(text: &str) -> Vec<&str> {
    let runs = || text.split(|c: char| !c.is_ascii_hexdigit());
    if runs().any(|w| w.len() == ID_LEN) {
        runs().filter(|w| w.len() == ID_LEN).collect()
    } else {
        runs().filter(|w| w.len() >= 8).map(|w| &w[..8]).collect()
    }
}

/// Where the chain breaks: the number of entries from the first that hold (each in its
/// place, its hash its own, following the one before), when fewer than all do.
#[must_use]
pub fn chain_breaks_after(entries: &[Entry]) -> Option<usize> {
    let intact = intact_prefix(entries).len();
    (intact < entries.len()).then_some(intact)
}

/// The entries from the first as long as the chain holds.
fn intact_prefix(entries: &[Entry]) -> &[Entry] {
    let mut prev = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 + 1 || e.prev != prev || e.compute_hash() != e.hash {
            return &entries[..i];
        }
        prev = &e.hash;
    }
    entries
}

/// Which of `backups` no entry of the log records (their places in `backups`): see
/// [`unlogged_backups`].
fn unlogged_places(
    repo: &Repo,
    entries: &[Entry],
    backups: &[crate::repository::SnapshotInfo],
) -> Result<Vec<usize>> {
    Ok(not_in_log(repo, entries, backups)?
        .into_iter()
        .filter(|(_, parked)| !parked)
        .map(|(i, _)| i)
        .collect())
}

/// Which of `backups` (their places) no entry of the log records, each with whether an
/// entry parked on this host names it (logged late, by the next operation that can write:
/// lifeboat's own picks count it as logged, an evidence pack says which). Entries after a
/// break of the chain count: one damaged entry must not hide every later backup from a
/// pick by time (a restore of months-old data with exit 0); the break itself is said by
/// the picks, `stats --check`, `verify --all` and `audit verify`.
pub(crate) fn not_in_log(
    repo: &Repo,
    entries: &[Entry],
    backups: &[crate::repository::SnapshotInfo],
) -> Result<Vec<(usize, bool)>> {
    // entries parked on this host (the repository could not be written then) are logged
    // too, late: the next operation that writes adds them
    let parked: Vec<super::parked::Parked> = super::parked::for_repository(repo.location())
        .into_iter()
        .chain(super::parked::claimed_for_repository(repo.location()))
        .flatten()
        .map(|(_, p)| p)
        .filter(|p| p.action == "backup")
        .collect();
    let in_parked: LoggedIds<'_> = parked.iter().flat_map(|p| ids_in(&p.details)).collect();
    let unlogged = |entries: &[Entry]| -> Vec<(usize, bool)> {
        let logged = logged_backup_ids(entries);
        // a backup from before the log began (an older lifeboat) is in none
        let Some(began) = entries.first().map(|e| e.time) else {
            return Vec::new();
        };
        backups
            .iter()
            .enumerate()
            .filter(|(_, b)| b.meta.finished_at >= began)
            .filter(|(_, b)| !logged.names(&b.id))
            .map(|(i, b)| (i, in_parked.names(&b.id)))
            .collect()
    };
    let found = unlogged(entries);
    if found.is_empty() {
        return Ok(found);
    }
    // read again: a backup saves its snapshot before its entry
    Ok(unlogged(&self::entries(repo)?))
}

/// `ID (kind db, time)` of a backup, as notes about unlogged backups name it.
fn described(b: &crate::repository::SnapshotInfo) -> String {
    format!(
        "{} ({} {}, {})",
        short_id(&b.id),
        b.meta.kind,
        b.meta.database.as_deref().unwrap_or("-"),
        b.meta.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Backups in the repository that no entry of the log names (`ID (kind db, time)` each),
/// counting only the log's intact chain from its start: a run still under way (a backup
/// of several databases logs once, at its end), a run killed after storing one and before
/// it could log, entries removed, or a backup written into the repository outside lifeboat
/// (restic, a copied snapshot). Reported beside a verdict, not as damage: the first two
/// are no fault. Someone who runs lifeboat itself with the password logs what they write;
/// the head file kept outside the repository is what shows such entries.
///
/// # Errors
///
/// When the log cannot be read again.
pub fn unlogged_backups(
    repo: &Repo,
    entries: &[Entry],
    backups: &[crate::repository::SnapshotInfo],
) -> Result<Vec<String>> {
    Ok(unlogged_places(repo, entries, backups)?
        .into_iter()
        .map(|i| described(&backups[i]))
        .collect())
}

/// `backups` (oldest first) without those no entry of the audit log records, for a pick
/// by time (`--latest`, `--before`, a drill's latest or random, the globals beside a
/// restore): a backup written into the repository outside lifeboat is newer than the real
/// ones and would be picked first. Each one left out is noted for the operator (a run
/// still under way is one: given by its id, a backup is used all the same).
///
/// # Errors
///
/// When the log cannot be read.
pub fn logged_only(
    repo: &Repo,
    backups: Vec<crate::repository::SnapshotInfo>,
) -> Result<Vec<crate::repository::SnapshotInfo>> {
    let entries = entries(repo)?;
    if let Some(intact) = chain_breaks_after(&entries) {
        crate::sources::postgres::cluster::note(format!(
            "the audit log's chain breaks after entry {intact} (an entry damaged, removed or edited: `lifeboat audit verify` says which): the backups its later entries record are taken all the same, but check with `lifeboat verify` that the one picked is what you expect"
        ));
    }
    let places = unlogged_places(repo, &entries, &backups)?;
    if places.is_empty() {
        return Ok(backups);
    }
    let mut kept = Vec::with_capacity(backups.len());
    for (i, b) in backups.into_iter().enumerate() {
        if places.contains(&i) {
            crate::sources::postgres::cluster::note(format!(
                "backup {} is in no entry of the audit log (a backup run still under way, one killed before it could log, or written into the repository outside lifeboat): left out of this pick; give its id to use it all the same (or, once checked, `lifeboat audit adopt ID --reason \"...\"`)",
                described(&b)
            ));
        } else {
            kept.push(b);
        }
    }
    Ok(kept)
}

/// What to say of [`unlogged_backups`]; `None` when there are none.
#[must_use]
pub fn unlogged_note(unlogged: &[String]) -> Option<String> {
    let n = unlogged.len();
    (n > 0).then(|| {
        format!(
            "{n} backup(s) in the repository are in no entry of the audit log: {}{}; a backup run still under way, one killed before it could log, entries removed, or backups written into the repository by someone else with its password: check their times and contents before restoring one (`lifeboat audit adopt ID... --reason \"...\"` records the ones you keep as the repository's own)",
            unlogged.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if n > 5 { format!(" and {} more", n - 5) } else { String::new() }
        )
    })
}

/// Snapshot files the last listing could not read, as problems of the log: one may have
/// held an entry, which the chain cannot be checked without.
#[must_use]
pub fn unreadable_problems(repo: &Repo) -> Vec<String> {
    repo.unreadable_snapshots()
        .into_iter()
        .map(|(id, why)| {
            format!("snapshot file {id} cannot be read ({why}): if it held an audit entry, the chain cannot be checked there")
        })
        .collect()
}

/// A log of `n` entries, correctly chained (for the tests of this module and of signing).
#[cfg(test)]
pub(crate) fn test_chain(n: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for seq in 1..=n {
        let mut e = Entry {
            seq,
            time: Timestamp::from_second(1_700_000_000 + seq as i64).expect("time"),
            action: "backup".into(),
            outcome: "ok".into(),
            details: format!("snapshot {seq}"),
            user: None,
            host: None,
            prev: out
                .last()
                .map_or_else(|| GENESIS.to_string(), |p| p.hash.clone()),
            hash: String::new(),
            extra: Default::default(),
        };
        e.hash = e.compute_hash();
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partly_failed_backup_s_stored_backups_are_read_in_either_layout() {
        let a = "a".repeat(ID_LEN);
        let b = "b".repeat(ID_LEN);
        let mut e = test_chain(1).remove(0);
        // since session 24: the failures first
        e.details = format!(
            "source app recovery point 20261207T180000Z-1: 1 of 3 backups failed: logical gone: database \"gone\" does not exist (deadbeef logical x); stored: {a} logical app (10 bytes), {b} schema app (5 bytes)"
        );
        let got = backups_recorded(&e);
        assert_eq!(
            got,
            [
                (a.as_str(), "logical", "app"),
                (b.as_str(), "schema", "app")
            ]
        );
        // before: the stored ones first
        e.details = format!(
            "source app recovery point 20261207T180000Z-1: {a} logical app (10 bytes); failed: logical gone: no such database"
        );
        assert_eq!(backups_recorded(&e), [(a.as_str(), "logical", "app")]);
    }

    #[test]
    fn an_entry_with_fields_added_later_verifies_and_keeps_them() {
        let mut chain = test_chain(3);
        // as a newer lifeboat would write entry 3: a field this one does not know
        let mut newer: serde_json::Value = serde_json::to_value(&chain[2]).expect("json");
        newer["signed_by"] = serde_json::json!({"key": "ops", "n": 2});
        newer["hash"] = serde_json::Value::String(String::new());
        let mut e: Entry = serde_json::from_value(newer).expect("entry");
        e.hash = e.compute_hash();
        assert_ne!(e.hash, chain[2].hash, "the new field is hashed");
        // stored and read back by this version, it keeps the field and verifies
        let read: Entry =
            serde_json::from_str(&serde_json::to_string(&e).expect("json")).expect("entry");
        assert_eq!(read.extra["signed_by"]["key"], "ops");
        chain[2] = read;
        assert!(verify_entries(&chain, None).ok());
        // an edit of the new field is found, and named as what it may be
        chain[2]
            .extra
            .insert("signed_by".into(), serde_json::json!("someone else"));
        let verdict = verify_entries(&chain, None);
        assert!(
            verdict.problems.len() == 1
                && verdict.problems[0].contains("fields this lifeboat")
                && verdict.problems[0].contains("signed_by"),
            "{:?}",
            verdict.problems
        );
    }

    #[test]
    fn a_lock_held_too_long_is_named_instead_of_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lifeboat-audit.lock");
        let held = exclusive_lock(&path).expect("first");
        let err = exclusive_lock_within(&path, std::time::Duration::from_millis(300))
            .expect_err("held by another");
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(
            err.hint_text().is_some_and(|h| h.contains("fuser -v")),
            "{err}"
        );
        drop(held);
        exclusive_lock_within(&path, std::time::Duration::from_millis(300)).expect("free again");
    }

    use super::test_chain as chain;

    #[test]
    fn intact_chain_passes() {
        let c = chain(5);
        let v = verify_entries(&c, Some(&c[4].hash));
        assert!(v.ok(), "{:?}", v.problems);
    }

    #[test]
    fn entries_without_an_actor_keep_their_hash_and_the_actor_is_covered() {
        // the hash of an entry written before lifeboat recorded who ran it, computed
        // independently (length-prefixed fields, SHA-256): old logs must keep verifying
        let old = &chain(1)[0];
        assert_eq!(
            old.hash,
            "8ec2218112e1c454885213df61b488b91cd07acb50ea91c09a98b14a7431e10a"
        );
        assert_eq!(old.actor(), "-");

        let mut c = chain(3);
        c[1].user = Some("backup".into());
        c[1].host = Some("db1".into());
        c[1].hash = c[1].compute_hash();
        c[2].prev = c[1].hash.clone();
        c[2].hash = c[2].compute_hash();
        assert!(verify_entries(&c, None).ok());
        assert_eq!(c[1].actor(), "backup@db1");
        for forge in [None, Some("root".to_string())] {
            let mut f = c.clone();
            f[1].user = forge;
            let v = verify_entries(&f, None);
            assert!(
                v.problems
                    .iter()
                    .any(|p| p.contains("entry 2") && p.contains("edited")),
                "{:?}",
                v.problems
            );
        }
        let (user, host) = current_actor();
        assert!(!user.is_empty() && !host.is_empty());
    }

    #[test]
    fn a_head_as_printed_names_its_entry() {
        let c = chain(5);
        // what `audit verify` prints: the first 16 digits
        let printed = &c[3].hash[..HEAD_PREFIX_DIGITS];
        let v = verify_entries(&c, Some(printed));
        assert!(v.ok(), "{:?}", v.problems);
        assert!(verify_entries(&c, Some(&c[3].hash.to_uppercase())).ok());
        // cut off: the message names the head as it was given
        let v = verify_entries(&c[..3], Some(printed));
        assert_eq!(
            v.problems,
            [format!(
                "the expected head {printed} is not in the log: newest entries were removed or the log was replaced"
            )]
        );
    }

    #[test]
    fn a_head_too_short_or_not_hex_is_refused() {
        for bad in ["6aedbc05", "", "6aedbc05d906b69", "zaedbc05d906b694"] {
            let e = check_head(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad}");
            assert!(
                e.hint_text()
                    .is_some_and(|h| h.contains("at least 16 hex digits")),
                "{bad}: {e}"
            );
            // the library refuses it too, rather than matching every entry
            assert!(!verify_entries(&chain(2), Some(bad)).ok(), "{bad}");
        }
        assert!(check_head("6aedbc05d906b694").is_ok());
        // two entries sharing the digits (only a forged log can): not taken as a match
        let mut c = chain(2);
        c[1].hash = format!("{}{}", &c[0].hash[..16], "0".repeat(48));
        let v = verify_entries(&c, Some(&c[0].hash[..16]));
        assert!(
            v.problems.iter().any(|p| p.contains("matches 2 entries")),
            "{:?}",
            v.problems
        );
        assert!(check_head(&"a".repeat(65)).is_err());
    }

    #[test]
    fn edit_removal_reorder_and_truncation_are_detected() {
        let mut edited = chain(5);
        edited[2].details = "snapshot 999".into();
        let v = verify_entries(&edited, None);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("entry 3") && p.contains("edited")),
            "{:?}",
            v.problems
        );

        let mut removed = chain(5);
        removed.remove(1);
        let v = verify_entries(&removed, None);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("entries 2 to 2 are missing")),
            "{:?}",
            v.problems
        );

        let mut reordered = chain(5);
        reordered.swap(1, 2);
        let v = verify_entries(&reordered, None);
        assert!(!v.ok());

        let full = chain(5);
        let truncated = &full[..3];
        assert!(
            verify_entries(truncated, None).ok(),
            "a shorter chain is consistent by itself"
        );
        let v = verify_entries(truncated, Some(&full[4].hash));
        assert!(
            v.problems.iter().any(|p| p.contains("expected head")),
            "{:?}",
            v.problems
        );
    }
}
