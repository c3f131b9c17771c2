//! The repository: a restic-format store (rustic_core) holding lifeboat's snapshots.
//!
//! Invariant: a lifeboat backup is visible (listed, restorable) only once it is complete.
//! The archiver writes a snapshot tagged [`PENDING_TAG`]; after the dump has been checked,
//! lifeboat saves the final snapshot (with its metadata) and deletes the pending one. A crash
//! in between leaves only a pending snapshot, which lists and restores ignore.

pub mod audit;
pub(crate) mod backend;
pub mod head;
pub mod meta;
pub mod owner;
pub mod parked;
mod s3_turn;
pub mod signing;
mod source;

use std::path::{Path, PathBuf};

use rustic_core::{
    repofile::{SnapshotFile, SnapshotId},
    ConfigOptions, Credentials, KeyOptions, OpenStatus, ProgressBars, Repository,
    RepositoryOptions,
};

pub use self::{
    backend::{describe_url, free_space, is_s3_url, wal_room_note},
    meta::{BackupMeta, SnapshotInfo},
    source::StreamSource,
};
use crate::{
    config::RepositoryConfig,
    error::{Error, ErrorKind, Result},
    secret::Secret,
};

/// Label of every lifeboat snapshot.
pub const LABEL: &str = "lifeboat";
/// Tag of a snapshot whose backup has not been confirmed yet.
pub const PENDING_TAG: &str = "lifeboat-pending";

/// Average chunk size: see docs/decisions/0003-chunking-and-compression.md.
pub const CHUNK_SIZE_KIB: u64 = 512;
/// Minimum chunk size.
pub const CHUNK_MIN_KIB: u64 = 128;
/// Maximum chunk size.
pub const CHUNK_MAX_KIB: u64 = 2048;
/// zstd level for new repositories.
pub const COMPRESSION_LEVEL: i32 = 2;

/// Where an open repository is kept while an operation has lent it.
type Slot<'a> = std::sync::MutexGuard<'a, Option<Repository<OpenStatus>>>;

/// Backups this process confirmed, oldest first: an interrupt's audit entry names what
/// was stored before it.
static CONFIRMED: std::sync::Mutex<Vec<Confirmed>> = std::sync::Mutex::new(Vec::new());

/// A backup this process confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// Full snapshot id.
    pub id: String,
    /// Its kind.
    pub kind: crate::sources::postgres::logical::BackupKind,
    /// Its database (none for globals and physical backups).
    pub database: Option<String>,
}

impl std::fmt::Display for Confirmed {
    /// As a `backup` audit entry records it (the whole id, `logical`, the database), so
    /// that the checks for backups gone from the repository read both alike: an 8-digit
    /// prefix could be made to fit another snapshot.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.id,
            self.kind,
            self.database.as_deref().unwrap_or("-")
        )
    }
}

/// The backups this process has confirmed so far, oldest first.
#[must_use]
pub fn confirmed_in_this_process() -> Vec<Confirmed> {
    CONFIRMED.lock().map(|c| c.clone()).unwrap_or_default()
}

/// An open lifeboat repository.
pub struct Repo {
    // rustic_core's typestate consumes the repository to index it; the mutex lets `&Repo`
    // lend it out and get it back, one operation at a time
    inner: std::sync::Mutex<Option<Repository<OpenStatus>>>,
    location: String,
    config: RepositoryConfig,
    audit: crate::config::AuditConfig,
    /// Snapshot files found unreadable by the last [`Repo::all_snapshots`], with the reason.
    unreadable: std::sync::Mutex<Vec<(String, String)>>,
    /// What operations on it want said besides their result (see [`Repo::take_notices`]).
    notices: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.location)
            .finish()
    }
}

/// The configured repository URL.
///
/// # Errors
///
/// [`ErrorKind::Config`] when none is set.
pub fn repo_url(cfg: &RepositoryConfig) -> Result<&str> {
    cfg.url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            Error::config("no repository given")
                .hint("set [repository] url in lifeboat.toml, LIFEBOAT_REPOSITORY, or pass --repo")
        })
}

/// The configured repository URL, or, when no configuration file was found (`config_found`
/// false) and none is set, an error saying so and naming the paths searched: an operator
/// in the wrong directory learns that the file is missing, not only that the URL is.
///
/// # Errors
///
/// [`ErrorKind::Config`] when no URL is set.
pub fn repo_url_from(cfg: &RepositoryConfig, config_found: bool) -> Result<&str> {
    repo_url(cfg).map_err(|e| {
        if config_found {
            return e;
        }
        let searched: Vec<String> = crate::config::DEFAULT_CONFIG_PATHS
            .iter()
            .map(|p| {
                if Path::new(p).is_relative() {
                    format!("./{p}")
                } else {
                    (*p).to_string()
                }
            })
            .collect();
        Error::config(format!(
            "no configuration file found (searched {}) and no repository given",
            searched.join(", ")
        ))
        .hint("create lifeboat.toml (see the README's Quick start) or pass --config PATH; or give the repository with --repo or LIFEBOAT_REPOSITORY")
    })
}

fn rustic_repo<P: ProgressBars>(cfg: &RepositoryConfig, pb: P) -> Result<Repository<()>> {
    let url = repo_url(cfg)?;
    let backends = backend::backends(url, cfg)?;
    let mut opts = RepositoryOptions::default();
    match cache_dir().filter(|_| is_s3_url(url)) {
        Some(dir) => opts.cache_dir = Some(dir),
        None => opts.no_cache = true,
    }
    Ok(Repository::new_with_progress(&opts, &backends, pb)?)
}

/// Whether the store says the bucket of `url` does not exist. The existence check of the
/// config file is a HEAD request, whose 404 has no body to tell a missing bucket from a
/// missing file; a GET's error body does.
fn bucket_missing(url: &str, cfg: &RepositoryConfig) -> bool {
    let Ok(backends) = backend::backends(url, cfg) else {
        return false;
    };
    match backends
        .repository()
        .read_full(rustic_core::FileType::Config, &rustic_core::Id::default())
    {
        Ok(_) => false,
        Err(e) => {
            let (kind, hint) = crate::error::classify_repository(e.as_ref());
            kind == ErrorKind::NotFound && hint.is_some_and(|h| h.contains("bucket does not exist"))
        }
    }
}

/// The S3 cache: `$XDG_CACHE_HOME/lifeboat`, else `~/.cache/lifeboat`; without a home,
/// one directory of this user's in the temp directory, used only when it is a real
/// directory this user owns and no one else may enter (anyone can create a name in /tmp
/// first, as a symlink or open to all): else no cache.
fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| crate::home_dir().map(|h| h.join(".cache")))
    {
        return Some(d.join("lifeboat"));
    }
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = std::env::temp_dir().join(format!("lifeboat-cache-{}", nix::unistd::geteuid()));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let m = std::fs::symlink_metadata(&dir).ok()?;
    (m.file_type().is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o077 == 0)
        .then_some(dir)
}

impl Repo {
    /// Creates a new repository at the configured URL.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when a repository already exists there (it is never touched),
    /// [`ErrorKind::Unavailable`] when the location cannot be written.
    pub fn init<P: ProgressBars>(cfg: &RepositoryConfig, password: &Secret, pb: P) -> Result<Self> {
        let url = repo_url(cfg)?.to_string();
        if !is_s3_url(&url) {
            let path = std::path::Path::new(&url);
            if path.exists()
                && std::fs::read_dir(path)
                    .map_err(|e| Error::io(format!("repository {url}"), e))?
                    .next()
                    .is_some()
                && !path.join("config").exists()
            {
                return Err(Error::new(
                    ErrorKind::TargetNotEmpty,
                    format!("{url} is not empty and is not a repository"),
                )
                .hint("choose an empty or new directory for the repository"));
            }
        }
        let opened_up = if is_s3_url(&url) {
            None
        } else {
            close_to_others(std::path::Path::new(&url))?
        };
        let repo = rustic_repo(cfg, pb)?;
        if repo.config_id().map_err(|e| init_error(&url, e))?.is_some() {
            return Err(Error::config(format!("a repository already exists at {url}"))
                .hint("lifeboat init never touches an existing repository; use it as it is or choose another url"));
        }
        let config = ConfigOptions::default()
            .set_compression(COMPRESSION_LEVEL)
            .set_chunk_size(bytesize::ByteSize::kib(CHUNK_SIZE_KIB))
            .set_chunk_min_size(bytesize::ByteSize::kib(CHUNK_MIN_KIB))
            .set_chunk_max_size(bytesize::ByteSize::kib(CHUNK_MAX_KIB));
        let inner = repo
            .init(
                &Credentials::Password(password.expose().to_string()),
                &KeyOptions::default(),
                &config,
            )
            .map_err(|e| init_error(&url, e))?;
        Ok(Self {
            inner: std::sync::Mutex::new(Some(inner)),
            location: describe_url(&url),
            config: cfg.clone(),
            audit: crate::config::AuditConfig::default(),
            unreadable: std::sync::Mutex::default(),
            notices: std::sync::Mutex::new(opened_up.into_iter().collect()),
        })
    }

    /// Opens the configured repository. The `[audit]` section is not part of `cfg`: a
    /// program that reads a configuration file passes it on with
    /// [`Repo::with_audit`]`(config.audit.clone())`, or no new head reaches the head file
    /// and URL kept outside the repository (the CLI does).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when there is no repository, [`ErrorKind::Auth`] for a wrong
    /// password, [`ErrorKind::Unavailable`] when the backend cannot be reached.
    pub fn open<P: ProgressBars>(cfg: &RepositoryConfig, password: &Secret, pb: P) -> Result<Self> {
        let url = repo_url(cfg)?.to_string();
        if !is_s3_url(&url) {
            owner::readable(std::path::Path::new(&url))?;
        }
        let repo = rustic_repo(cfg, pb)?;
        if repo.config_id().map_err(|e| open_error(&url, e))?.is_none() {
            if is_s3_url(&url) && bucket_missing(&url, cfg) {
                return Err(Error::not_found(format!(
                    "no repository at {}: the bucket does not exist",
                    describe_url(&url)
                ))
                .hint("check the bucket in [repository] url and the endpoint (the store may be another one than meant); a new bucket is created in the store, then `lifeboat init` creates a repository in it, for a first setup only"));
            }
            // the bucket may still be missing when the store's answer did not say
            // a repository whose config file alone is gone: not a wrong url
            if !is_s3_url(&url) {
                let dir = std::path::Path::new(&url);
                if ["keys", "data", "snapshots"]
                    .iter()
                    .all(|d| dir.join(d).is_dir())
                {
                    return Err(Error::integrity(format!(
                        "the repository at {} has no config file, though its keys, data and snapshots are there: it was deleted or lost",
                        describe_url(&url)
                    ))
                    .hint("put back `config` from a copy of the repository (an offsite copy, a backup of its disk); `lifeboat init` refuses a directory that is not empty, and a new repository could not read these backups"));
                }
            }
            let hint = if is_s3_url(&url) {
                "check [repository] url (bucket and prefix) and endpoint first: the bucket may not exist (create it in the store) or hold no repository under that prefix; `lifeboat init` creates a new, empty repository in an existing bucket, for a first setup only"
            } else {
                "check [repository] url (the path; a relative one is taken from the configuration file's directory) first, and that the disk it is on is mounted (an empty mount point looks like this); `lifeboat init` creates a new, empty repository there, for a first setup only"
            };
            return Err(
                Error::not_found(format!("no repository at {}", describe_url(&url))).hint(hint),
            );
        }
        let inner = repo
            .open(&Credentials::Password(password.expose().to_string()))
            .map_err(|e| open_error(&url, e))?;
        Ok(Self {
            inner: std::sync::Mutex::new(Some(inner)),
            location: describe_url(&url),
            config: cfg.clone(),
            audit: crate::config::AuditConfig::default(),
            unreadable: std::sync::Mutex::default(),
            notices: std::sync::Mutex::default(),
        })
    }

    /// Publishes every new audit head to `audit`'s places too.
    #[must_use]
    pub fn with_audit(mut self, audit: crate::config::AuditConfig) -> Self {
        self.audit = audit;
        self
    }

    /// Where new audit heads are published besides the repository.
    #[must_use]
    pub const fn audit_config(&self) -> &crate::config::AuditConfig {
        &self.audit
    }

    /// The settings it was opened with (for the WAL archive beside it).
    #[must_use]
    pub const fn config(&self) -> &RepositoryConfig {
        &self.config
    }

    /// Where the repository is (no credentials).
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    fn take(&self) -> Result<(Slot<'_>, Repository<OpenStatus>)> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let repo = guard.take().ok_or_else(|| {
            Error::internal("the repository was lost after an earlier error; open it again")
        })?;
        Ok((guard, repo))
    }

    /// Runs `f` on the open repository.
    ///
    /// # Errors
    ///
    /// `f`'s error.
    pub fn with_open<T>(&self, f: impl FnOnce(&Repository<OpenStatus>) -> Result<T>) -> Result<T> {
        let (mut guard, repo) = self.take()?;
        let r = f(&repo);
        *guard = Some(repo);
        r
    }

    /// Pack files the index names that the repository no longer holds (deleted, lost with
    /// a disk), as short ids. A backup would take their blobs as stored and reference data
    /// that is gone: [`crate::ops::backup::backup`] refuses while there are any.
    ///
    /// # Errors
    ///
    /// When the packs cannot be listed or an index file cannot be read.
    pub fn missing_packs(&self) -> Result<Vec<String>> {
        use rustic_core::repofile::{IndexFile, PackId};
        self.with_open(|repo| {
            // the index files first, then the packs: a backup running beside this one
            // writes a pack before the index naming it, so every pack an index read here
            // names is listed after it (in the other order, a pack and its index written
            // in between read as a lost pack, and a backup started together was refused)
            let mut named = Vec::new();
            for file in repo.stream_files::<IndexFile>()? {
                let (_, index) = file?;
                named.extend(index.packs.into_iter().map(|p| p.id));
            }
            let present: std::collections::HashSet<PackId> = repo.list::<PackId>()?.collect();
            let missing: std::collections::BTreeSet<String> = named
                .into_iter()
                .filter(|id| !present.contains(id))
                .map(|id| {
                    let id = id.to_string();
                    id[..8.min(id.len())].to_string()
                })
                .collect();
            Ok(missing.into_iter().collect())
        })
    }

    /// Rebuilds the index from the pack files there are: entries of lost packs go (the
    /// next backup stores their data again), packs no index names (left by a backup that
    /// failed on a full disk, or after an index file was lost) are read and indexed. The
    /// backups that referenced lost data stay damaged; `verify` names them.
    ///
    /// # Errors
    ///
    /// When the repository cannot be listed, read or written.
    pub fn repair_index(&self) -> Result<()> {
        self.with_open(|repo| {
            repo.repair_index(&rustic_core::RepairIndexOptions::default(), false)?;
            Ok(())
        })
    }

    /// Runs `f` on the repository with its full index loaded (to read data).
    ///
    /// # Errors
    ///
    /// When the index cannot be read, or `f`'s error.
    pub fn with_indexed<T>(
        &self,
        f: impl FnOnce(&Repository<rustic_core::IndexedFullStatus>) -> Result<T>,
    ) -> Result<T> {
        let (mut guard, repo) = self.take()?;
        let indexed = repo.to_indexed()?;
        let r = f(&indexed);
        *guard = Some(indexed.drop_index());
        r
    }

    /// Runs `f` on the repository with the blob-id index loaded (to write backups).
    ///
    /// # Errors
    ///
    /// When the index cannot be read, or `f`'s error.
    pub fn with_indexed_ids<T>(
        &self,
        f: impl FnOnce(&Repository<rustic_core::IndexedIdsStatus>) -> Result<T>,
    ) -> Result<T> {
        let (mut guard, repo) = self.take()?;
        let indexed = repo.to_indexed_ids()?;
        let r = f(&indexed);
        *guard = Some(indexed.drop_index());
        r
    }

    /// Every snapshot file. A snapshot deleted between the listing and the reading (a
    /// pending backup discarded, a concurrent prune) makes the reading fail: it is listed again, a few times.
    ///
    /// # Errors
    ///
    /// When the snapshot files cannot be read.
    pub fn all_snapshots(&self) -> Result<Vec<SnapshotFile>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.with_open(|r| Ok(r.get_all_snapshots()?)) {
                Err(_) if attempt < 3 => {
                    // a snapshot deleted between listing and reading (a concurrent prune or
                    // a discarded pending backup): the next listing no longer has it
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                }
                Err(e) => return self.snapshots_one_by_one(e),
                Ok(all) => {
                    self.set_unreadable(Vec::new());
                    return Ok(all);
                }
            }
        }
    }

    /// Reads the snapshot files one at a time, keeping those that can be read: one damaged
    /// file (a flipped bit, a file written with another key) must not hide every backup
    /// from `list`, `restore` and `verify`. The others are remembered for
    /// [`Repo::unreadable_snapshots`]. `first` is returned when nothing can be read at all.
    fn snapshots_one_by_one(&self, first: Error) -> Result<Vec<SnapshotFile>> {
        let Ok(ids) = self.with_open(|r| Ok(r.list::<SnapshotId>()?.collect::<Vec<_>>())) else {
            return Err(first);
        };
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for id in ids {
            let id = id.to_hex().as_str().to_string();
            match self.with_open(|r| Ok(r.get_snapshots(&[id.as_str()])?)) {
                Ok(mut s) => good.append(&mut s),
                Err(e) => bad.push((id, crate::error::headline(&e.to_string()).to_string())),
            }
        }
        if good.is_empty() && !bad.is_empty() {
            return Err(first);
        }
        // still listed now: damaged, not deleted meanwhile
        let listed: std::collections::HashSet<String> = self
            .with_open(|r| {
                Ok(r.list::<SnapshotId>()?
                    .map(|i| i.to_hex().as_str().to_string())
                    .collect())
            })
            .unwrap_or_default();
        bad.retain(|(id, _)| listed.contains(id));
        self.set_unreadable(bad);
        Ok(good)
    }

    fn set_unreadable(&self, bad: Vec<(String, String)>) {
        if let Ok(mut u) = self.unreadable.lock() {
            *u = bad;
        }
    }

    /// Records something an operation wants said besides its result (an audit entry parked
    /// on this host because the repository could not take it).
    pub fn notice(&self, text: String) {
        if let Ok(mut n) = self.notices.lock() {
            n.push(text);
        }
    }

    /// The notices recorded so far, emptied.
    #[must_use]
    pub fn take_notices(&self) -> Vec<String> {
        self.notices
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    /// Snapshot files the last listing could not read (id, reason): damaged, or not
    /// written with this repository's key. `verify` reports them.
    #[must_use]
    pub fn unreadable_snapshots(&self) -> Vec<(String, String)> {
        self.unreadable
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Every complete lifeboat backup, oldest first. Reads snapshot files only, never packs.
    ///
    /// # Errors
    ///
    /// When the snapshot files cannot be read.
    pub fn backups(&self) -> Result<Vec<SnapshotInfo>> {
        let snaps = self.all_snapshots()?;
        let mut out: Vec<SnapshotInfo> = snaps
            .into_iter()
            .filter_map(SnapshotInfo::from_snapshot)
            .collect();
        out.sort_by_key(|b| b.meta.finished_at);
        Ok(out)
    }

    /// Snapshots left by an interrupted backup.
    ///
    /// # Errors
    ///
    /// When the snapshot files cannot be read.
    pub fn pending(&self) -> Result<Vec<SnapshotFile>> {
        Ok(self
            .all_snapshots()?
            .into_iter()
            .filter(|s| s.tags.contains(PENDING_TAG))
            .collect())
    }

    /// The backup whose id starts with `id`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when no lifeboat backup matches, [`ErrorKind::Config`] when
    /// the prefix is ambiguous.
    pub fn backup(&self, id: &str) -> Result<SnapshotInfo> {
        let id = id.trim().to_ascii_lowercase();
        let id = id.as_str();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::config(format!("{id:?} is not a snapshot id"))
                .hint("ids are hexadecimal; `lifeboat list` shows them"));
        }
        let all = self.backups()?;
        let found: Vec<SnapshotInfo> = all.into_iter().filter(|b| b.id.starts_with(id)).collect();
        match found.len() {
            0 => Err(
                Error::not_found(format!("no backup with id {id} in {}", self.location))
                    .hint("`lifeboat list` shows the backups in this repository"),
            ),
            1 => Ok(found.into_iter().next().expect("one")),
            n => Err(Error::config(format!("id {id} matches {n} backups"))
                .hint("give more digits of the id")),
        }
    }

    /// Replaces the pending snapshot `pending` by its final form carrying `meta`; returns
    /// the final snapshot's id.
    ///
    /// # Errors
    ///
    /// When the snapshot cannot be written; the pending snapshot then stays (ignored).
    /// Once the final snapshot is written the backup is confirmed, even when the pending
    /// one cannot be deleted.
    pub fn confirm(&self, pending: &SnapshotFile, meta: &BackupMeta) -> Result<String> {
        let mut snap = pending.clone();
        snap.tags = meta.tags();
        snap.label = LABEL.to_string();
        snap.description =
            Some(serde_json::to_string(meta).map_err(|e| Error::internal(e.to_string()))?);
        self.with_open(|inner| {
            let id = inner.save_snapshot(snap)?;
            // the backup is stored from here on: a pending snapshot that stays is ignored
            // (and counted by `stats`), never a reason to call the backup failed
            let _ = inner.delete_snapshots(&[pending.id]);
            let id = id.to_hex().as_str().to_string();
            if let Ok(mut c) = CONFIRMED.lock() {
                c.push(Confirmed {
                    id: id.clone(),
                    kind: meta.kind,
                    database: meta.database.clone(),
                });
            }
            Ok(id)
        })
    }

    /// Deletes a pending snapshot after a failed backup.
    ///
    /// # Errors
    ///
    /// When the snapshot file cannot be removed.
    pub fn discard(&self, pending: &SnapshotFile) -> Result<()> {
        self.with_open(|r| Ok(r.delete_snapshots(&[pending.id])?))
    }
}

fn init_error(url: &str, e: Box<rustic_core::RusticError>) -> Error {
    describe(
        url,
        "cannot create a repository at",
        e,
        "check the repository url and that the location is writable",
    )
}

fn open_error(url: &str, e: Box<rustic_core::RusticError>) -> Error {
    let err = describe(
        url,
        "cannot open the repository at",
        e,
        "check the repository url, the network and the S3 credentials",
    );
    // the repository's own config file does not decrypt: no backup check can run before
    // it is put back, so `verify` would only say this again
    if err.kind() == ErrorKind::Integrity && err.to_string().contains("Config:0") {
        return err.hint("the repository's config file is damaged or was replaced: put back `config` from a copy of the repository (an offsite copy, a backup of its disk); nothing else can be checked before");
    }
    err
}

/// An empty directory made beforehand for a new repository (`mkdir` under umask 022 makes
/// it 0755) loses what it gives every user, keeping the owner's and the group's (a group
/// setup, 2750 or 2770, stays as it is): the files written into it follow its mode, and the
/// key file would be readable by all. Returns what was changed, for the operator.
fn close_to_others(dir: &std::path::Path) -> Result<Option<String>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(None); // created private by the backend
    };
    let mode = meta.permissions().mode() & 0o7777;
    // only a directory still empty: an existing repository's mode is its owner's choice
    let empty = || std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if !meta.is_dir() || mode & 0o007 == 0 || !empty() {
        return Ok(None);
    }
    let private = mode & 0o2770;
    // through the directory itself, never a link put in its place since the look above
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(dir);
    if let Err(e) = opened.and_then(|d| d.set_permissions(std::fs::Permissions::from_mode(private)))
    {
        // not this user's directory (a group's, which it may write into): `init` goes
        // on, and its warning says what the mode gives away
        return Ok(Some(format!(
            "{} is open to every user of this host (mode {mode:o}) and could not be made private ({e}): the key file written into it holds the master key; `chmod o-rwx {}` as its owner",
            dir.display(),
            dir.display()
        )));
    }
    Ok(Some(format!(
        "{} was open to every user of this host (mode {:o}): made it {:o}, its owner's and group's only, as the key file written into it holds the master key",
        dir.display(),
        mode,
        private
    )))
}

/// Whether the local repository at `url` holds no key file while its `config` is there
/// (an S3 repository is not listed here: it says "wrong password" as before).
fn no_key_files(url: &str) -> bool {
    if is_s3_url(url) {
        return false;
    }
    let root = std::path::Path::new(url);
    // gone or empty; one this user may not read is a permission matter, said as such
    root.join("config").is_file()
        && match std::fs::read_dir(root.join("keys")) {
            Ok(mut d) => d.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
}

/// `; unreadable: keys/ID (owner root), ...` for the key files of the local repository at
/// `url` this process cannot open, empty when there are none (or it is not local).
fn keys_unreadable_here(url: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    if is_s3_url(url) {
        return String::new();
    }
    let Ok(dir) = std::fs::read_dir(std::path::Path::new(url).join("keys")) else {
        return String::new();
    };
    let named: Vec<String> = dir
        .flatten()
        .filter(|e| {
            std::fs::File::open(e.path())
                .is_err_and(|err| err.kind() == std::io::ErrorKind::PermissionDenied)
        })
        .map(|e| {
            let owner = e
                .metadata()
                .ok()
                .and_then(|m| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(m.uid()))
                        .ok()
                        .flatten()
                })
                .map_or_else(|| "another user".to_string(), |u| u.name);
            format!("keys/{} (owner {owner})", e.file_name().to_string_lossy())
        })
        .collect();
    if named.is_empty() {
        String::new()
    } else {
        format!("; this user cannot read {}", named.join(", "))
    }
}

/// A repository error naming the URL, classified from the whole cause chain, cause kept.
fn describe(url: &str, what: &str, e: Box<rustic_core::RusticError>, fallback_hint: &str) -> Error {
    let (kind, hint) = crate::error::classify_repository(e.as_ref());
    let detail = match kind {
        ErrorKind::Auth if hint.is_some_and(|h| h.contains("403") || h.contains("clock")) => {
            // the store's own reason, when it gave one: a skewed clock or a bucket policy
            // is not a wrong secret
            let chain = crate::error::chain_text(e.as_ref());
            let code = [
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied",
                "RequestTimeTooSkewed",
                "ExpiredToken",
                "InvalidToken",
            ]
            .into_iter()
            .find(|c| chain.contains(&c.to_ascii_lowercase()));
            match code {
                Some(c) => format!("access denied by the storage (403 forbidden: {c})"),
                None => "access denied by the storage (403 forbidden)".to_string(),
            }
        }
        ErrorKind::Auth => "wrong password".to_string(),
        ErrorKind::Unavailable if hint.is_some_and(|h| h.contains("may not read or write")) => {
            "permission denied".to_string()
        }
        ErrorKind::Config if hint.is_some_and(|h| h.contains("(400)")) => {
            "the storage rejected the request (400 bad request)".to_string()
        }
        ErrorKind::NotFound if hint.is_some_and(|h| h.contains("bucket does not exist")) => {
            "the bucket does not exist".to_string()
        }
        _ => match crate::error::headline(&e.to_string()) {
            "" => "repository error".to_string(),
            l => l.to_string(),
        },
    };
    if kind == ErrorKind::Auth && no_key_files(url) {
        // no password opens it: hunting for the right one wastes the night
        return Error::integrity(format!(
            "the repository at {} has no key file (its keys/ directory is empty or gone): no password can open it",
            describe_url(url)
        ))
        .hint("put keys/ back from a copy of the repository (an offsite copy, a file-system snapshot or backup of this disk): the key files are small and change only with `restic key add`/`remove`; the data packs cannot be decrypted without one")
        .source(e);
    }
    let unreadable_keys = hint.is_some_and(|h| h.contains("fits no key file this user can read"));
    let message = if unreadable_keys {
        format!(
            "the password fits no key file this user can read in the repository at {}{}",
            describe_url(url),
            keys_unreadable_here(url)
        )
    } else if kind == ErrorKind::Auth && detail == "wrong password" {
        format!("wrong password for the repository at {}", describe_url(url))
    } else {
        format!("{what} {}: {detail}", describe_url(url))
    };
    let refused = detail.contains("403 forbidden");
    let err = Error::new(kind, message).hint(hint.unwrap_or(fallback_hint));
    // a refused credential reaches rustic as "path `config` does not exist": as a cause
    // under "access denied" it contradicts the message
    if refused {
        err
    } else {
        err.source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::{repo_url_from, RepositoryConfig};

    #[test]
    fn no_url_without_a_config_file_names_the_paths_searched() {
        let e = repo_url_from(&RepositoryConfig::default(), false).unwrap_err();
        assert!(
            e.message().contains("no configuration file found")
                && e.message()
                    .contains("./lifeboat.toml, /etc/lifeboat/lifeboat.toml"),
            "{e}"
        );
        assert!(e.hint_text().is_some_and(|h| h.contains("--repo")), "{e}");
    }

    #[test]
    fn no_url_in_a_config_file_says_only_that() {
        let e = repo_url_from(&RepositoryConfig::default(), true).unwrap_err();
        assert_eq!(e.message(), "no repository given");
        let cfg = RepositoryConfig {
            url: Some("/srv/repo".into()),
            ..RepositoryConfig::default()
        };
        assert_eq!(repo_url_from(&cfg, false).unwrap(), "/srv/repo");
    }
}
