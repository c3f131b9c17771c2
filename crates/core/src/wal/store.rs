//! The WAL archive inside a repository: one object per WAL file under `lifeboat-wal/`,
//! compressed with zstd and encrypted with the repository's master key (restic's
//! AES-256-CTR + Poly1305-AES), so that a segment is stored and fetched with one request and
//! a range is pruned by deleting objects. See docs/decisions/0004-wal-archive.md.
//!
//! Object layout: `LBWAL01\n` · nonce · ciphertext · MAC, where the plaintext is
//! `u16 name length · name · u64 size · xxh3-128 of the file · zstd frame`. The name inside
//! the ciphertext stops a renamed or swapped object from being replayed as another segment.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use aes256ctr_poly1305aes::{
    aead::{Aead, Nonce},
    Aes256CtrPoly1305Aes,
};

use super::{
    name::{Lsn, WalFile},
    seal::{compress_pieces, MasterKey, Sealer},
};
use crate::{
    error::{Error, ErrorKind, Result},
    repository::{backend, owner::give_to_owner, repo_url, Repo},
};

/// Directory (prefix) of the WAL archive inside the repository.
pub const WAL_DIR: &str = "lifeboat-wal";

/// Where a source's archive keeps its marks of tablespace creations (no timeline's
/// directory: its name is not eight hex digits, and nothing in it parses as a WAL file).
const MARKS_DIR: &str = "marks";
/// The mark of the cluster whose WAL the archive holds: `marks/system-<identifier>`.
const SYSTEM_MARK: &str = "system-";
const MAGIC: &[u8; 8] = b"LBWAL01\n";
/// zstd level for WAL: WAL compresses well even at the fastest levels, and the archiver
/// waits for every push.
const WAL_ZSTD_LEVEL: i32 = 1;

/// Every this many bytes written, a push asks the kernel to start writing them back, so
/// that the final fsync finds little left to do.
const WRITEBACK_EVERY: u64 = 1 << 20;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The file is now stored.
    Stored,
    /// An identical file was already stored (PostgreSQL retried an archived segment).
    AlreadyPresent,
}

/// One archived WAL file as listed (no data read).
#[derive(Debug, Clone)]
pub struct StoredWal {
    /// The file.
    pub file: WalFile,
    /// Stored (compressed, encrypted) size.
    pub stored_bytes: u64,
    /// When it was archived, as the storage reports it.
    pub archived_at: Option<jiff::Timestamp>,
}

enum Backend {
    Local(PathBuf),
    Remote(opendal::blocking::Operator),
}

/// The WAL archive of one repository.
pub struct WalStore {
    backend: Backend,
    /// `lifeboat-wal/<source>`: each cluster archives under its own source name.
    prefix: String,
    cipher: Aes256CtrPoly1305Aes,
    /// The same key for [`Sealer`], which encrypts a push as it is compressed.
    key: MasterKey,
    location: String,
    /// The system identifier this store found marked as the archive's own: a served
    /// archiver asks the repository once, not for every segment.
    system_checked: std::sync::Mutex<Option<u64>>,
}

impl std::fmt::Debug for WalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("{what}: {e}"))
        .hint("check that the repository is reachable and writable")
}

impl WalStore {
    /// The WAL archive of `source` in `repo`, using its master key.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a bad URL or source name, [`ErrorKind::Unavailable`] when
    /// the S3 client cannot be built.
    pub fn new(repo: &Repo, source: &str) -> Result<Self> {
        let cfg = repo.config();
        // the rule before `config::valid_source_name` (which new configurations follow):
        // an archive a source so named already has stays readable
        let readable = !source.is_empty()
            && !source.starts_with('.')
            && source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !readable {
            return Err(
                Error::config(format!("source name {source:?} cannot name a WAL archive"))
                    .hint(crate::config::SOURCE_NAME_RULE),
            );
        }
        let key = repo.with_open(|r| Ok(r.key()))?;
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&key.encrypt);
        bytes.extend_from_slice(&key.mac.k);
        bytes.extend_from_slice(&key.mac.r);
        let key: MasterKey = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::integrity("the repository master key has the wrong length"))?;
        let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&key));
        let url = repo_url(cfg)?;
        let backend = match backend::s3_options(url, cfg)? {
            // a whole segment is one PUT: its I/O may take minutes on a slow uplink (16 MiB
            // in 5 minutes is 450 kbit/s), so only a stall that long counts; PostgreSQL
            // retries a failed push itself, so a few tries here are enough to ride out a
            // blip without holding the archiver for an hour
            Some(opts) => Backend::Remote(
                backend::s3_operator(
                    opts,
                    std::time::Duration::from_secs(60),
                    std::time::Duration::from_secs(300),
                    2,
                )
                .map_err(|e| unavailable("cannot set up the S3 client", e))?,
            ),
            None => Backend::Local(PathBuf::from(url)),
        };
        let prefix = format!("{WAL_DIR}/{source}");
        Ok(Self {
            backend,
            cipher,
            key,
            location: format!("{}/{prefix}", repo.location()),
            prefix,
            system_checked: std::sync::Mutex::new(None),
        })
    }

    /// Where the archive is (no credentials).
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where `file` is kept, for people: the repository's location and the object's path
    /// in it (to move a damaged one out of the way).
    #[must_use]
    pub fn place_of(&self, file: &WalFile) -> String {
        format!("{}/{:08X}/{file}", self.location, file.timeline())
    }

    fn object_path(&self, file: &WalFile) -> String {
        format!("{}/{:08X}/{file}", self.prefix, file.timeline())
    }

    /// Hands `file`'s object to `out` piece by piece, each piece as soon as it is
    /// compressed and encrypted; `sum` is [`digest`] of `data`.
    fn seal(
        &self,
        file: &WalFile,
        data: &[u8],
        sum: [u8; 16],
        out: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let name = file.to_string();
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let mut sealer = Sealer::new(&self.key, &nonce);
        let mut head = Vec::with_capacity(name.len() + 26);
        head.extend_from_slice(&(name.len() as u16).to_le_bytes());
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&(data.len() as u64).to_le_bytes());
        head.extend_from_slice(&sum);
        sealer.seal(&mut head);
        out(MAGIC)?;
        out(&nonce)?;
        out(&head)?;
        compress_pieces(data, WAL_ZSTD_LEVEL, &mut |piece| {
            sealer.seal(piece);
            out(piece)
        })?;
        out(&sealer.finish())
    }

    /// Decrypts an object and returns (size, digest, zstd frame), checking the name.
    fn open_object(&self, file: &WalFile, object: &[u8]) -> Result<(u64, [u8; 16], Vec<u8>)> {
        let corrupt = |why: &str| {
            Error::integrity(format!(
                "the archived {file} in {} is damaged: {why}",
                self.location
            ))
            .hint("recovery cannot use it; restore from an older base backup or a copy of the archive, and run `lifeboat wal status`")
        };
        let body = object
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| corrupt("not a lifeboat WAL object"))?;
        if body.len() < 32 {
            return Err(corrupt("too short"));
        }
        let (nonce, sealed) = body.split_at(16);
        let plain = self
            .cipher
            .decrypt(Nonce::<Aes256CtrPoly1305Aes>::from_slice(nonce), sealed)
            .map_err(|_| {
                corrupt("authentication failed (changed bytes or another repository's key)")
            })?;
        let Some((len, rest)) = plain.split_first_chunk::<2>() else {
            return Err(corrupt("truncated header"));
        };
        let name_len = u16::from_le_bytes(*len) as usize;
        if rest.len() < name_len + 24 {
            return Err(corrupt("truncated header"));
        }
        let (name, rest) = rest.split_at(name_len);
        if name != file.to_string().as_bytes() {
            return Err(corrupt(&format!(
                "it holds {}",
                String::from_utf8_lossy(name)
            )));
        }
        let size = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let sum: [u8; 16] = rest[8..24].try_into().expect("16 bytes");
        Ok((size, sum, rest[24..].to_vec()))
    }

    fn read_raw(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.read_raw_as(path, &format!("reading {path}"))
    }

    /// As [`WalStore::read_raw`], its errors saying `what` was being done.
    fn read_raw_as(&self, path: &str, what: &str) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Local(root) => match std::fs::read(root.join(path)) {
                Ok(b) => Ok(Some(b)),
                // an unmounted or moved repository must not read as "not archived": recovery
                // would take that for the end of the archive and stop early
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && !root.join("config").is_file() =>
                {
                    Err(Error::unavailable(format!(
                        "the repository at {} is gone (it has no config file any more)",
                        root.display()
                    ))
                    .hint("is its file system mounted? `lifeboat wal status` checks the archive"))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(what, e)),
            },
            Backend::Remote(op) => match op.read(path) {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(remote_error(what, &e)),
            },
        }
    }

    /// Stores `data` as `file`, durably. An identical file already stored is success; a
    /// different one is [`ErrorKind::Integrity`].
    ///
    /// # Errors
    ///
    /// When the object cannot be written, or conflicts with a stored one.
    pub fn put(&self, file: &WalFile, data: &[u8]) -> Result<PutOutcome> {
        self.put_digested(file, data, digest(data))
    }

    /// As [`WalStore::put`], for a caller that already has [`digest`] of `data`.
    pub(crate) fn put_digested(
        &self,
        file: &WalFile,
        data: &[u8],
        sum: [u8; 16],
    ) -> Result<PutOutcome> {
        if let (WalFile::Segment(_) | WalFile::Partial(_), Some(system)) =
            (file, super::segment_system_identifier(data))
        {
            self.claim_system(file, system)?;
        }
        let outcome = self.put_object(file, data, sum)?;
        // after the segment, also when it was there already (a push that died between the
        // two is retried by PostgreSQL)
        self.mark_tablespaces(file, data)?;
        Ok(outcome)
    }

    /// Refuses a segment of another cluster than the one whose WAL the archive holds (the
    /// first segment pushed marks it): an `archive_command` copied from another server
    /// and still naming its source would otherwise mix two clusters' WAL under one name,
    /// and a recovery would stop, promoted, at the first foreign segment. Two clusters
    /// pushing their very first segments at the same moment can both mark; each is then
    /// refused only by the other's WAL names (`already archived with different content`).
    fn claim_system(&self, file: &WalFile, system: u64) -> Result<()> {
        if *self
            .system_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            == Some(system)
        {
            return Ok(());
        }
        let mine = format!("{}/{MARKS_DIR}/{SYSTEM_MARK}{system}", self.prefix);
        let marked = match &self.backend {
            Backend::Local(root) => root.join(&mine).is_file(),
            Backend::Remote(op) => match op.stat(&mine) {
                Ok(_) => true,
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => false,
                Err(e) => return Err(remote_error(&format!("looking for {mine}"), &e)),
            },
        };
        let names = if marked {
            Vec::new()
        } else {
            self.names_in(Some(MARKS_DIR), false)?
        };
        let ids: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix(SYSTEM_MARK))
            .collect();
        // its own mark, made by a push of the same cluster in between (`wal serve` pushes
        // ahead in parallel), is no other cluster's
        let mine_name = system.to_string();
        if !marked && !ids.contains(&mine_name.as_str()) {
            if let Some(theirs) = ids.first() {
                let source = self.prefix.rsplit('/').next().unwrap_or_default();
                return Err(Error::integrity(format!(
                    "{file} is WAL of the cluster with system identifier {system}, but source {source:?}'s archive in {} holds the WAL of cluster {theirs}: two servers archive under one source name",
                    self.location
                ))
                .hint(
                    "give this server's archive_command its own source: `wal-push --source NAME %p`, NAME its [[source]] in the configuration (`lifeboat config check` notes an archive_command that names another source); a cluster made anew (initdb, pg_upgrade) needs a new source name too, since its WAL names start over. Until then PostgreSQL keeps the segment in pg_wal and retries",
                ));
            }
            self.write_mark(&mine)?;
        }
        *self
            .system_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(system);
        Ok(())
    }

    /// The system identifiers of the clusters whose WAL the archive holds, as its pushes
    /// marked them (one, unless two clusters pushed their first segments at once; none
    /// for an archive written before lifeboat marked them).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn marked_systems(&self) -> Result<Vec<u64>> {
        Ok(self
            .names_in(Some(MARKS_DIR), false)?
            .iter()
            .filter_map(|n| n.strip_prefix(SYSTEM_MARK)?.parse().ok())
            .collect())
    }

    /// Marks each tablespace creation in the segment `data` (see [`WalStore::tablespace_marks`]):
    /// an empty object named by the timeline and the record's LSN (no location: the
    /// repository's names are not encrypted).
    fn mark_tablespaces(&self, file: &WalFile, data: &[u8]) -> Result<()> {
        let WalFile::Segment(seg) = file else {
            return Ok(());
        };
        for t in super::records::tablespace_creations(data) {
            let path = format!(
                "{}/{MARKS_DIR}/tablespace-{:08X}-{:016X}",
                self.prefix, seg.timeline, t.lsn.0
            );
            self.write_mark(&path)?;
        }
        Ok(())
    }

    /// Writes the empty object `path` (a mark: its name says it all), durably.
    fn write_mark(&self, path: &str) -> Result<()> {
        match &self.backend {
            Backend::Local(root) => write_durably(root, path, &mut |_| Ok(())).map(|_| ()),
            Backend::Remote(op) => op
                .write(path, Vec::<u8>::new())
                .map(|_| ())
                .map_err(|e| remote_error(&format!("writing {path}"), &e)),
        }
    }

    /// Where archived WAL creates a tablespace, as its pushes marked it: (timeline, LSN of
    /// the record), in no order. A recovery lifeboat sets up ends just before each (see
    /// [`super::cut_at_tablespace`]), so no point past one can be recovered from a base
    /// backup older than it.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn tablespace_marks(&self) -> Result<Vec<(u32, Lsn)>> {
        Ok(self
            .names_in(Some(MARKS_DIR), false)?
            .iter()
            .filter_map(|name| {
                let (tl, lsn) = name.strip_prefix("tablespace-")?.split_once('-')?;
                Some((
                    u32::from_str_radix(tl, 16).ok()?,
                    Lsn(u64::from_str_radix(lsn, 16).ok()?),
                ))
            })
            .collect())
    }

    fn put_object(&self, file: &WalFile, data: &[u8], sum: [u8; 16]) -> Result<PutOutcome> {
        let path = self.object_path(file);
        let checking = format!("checking whether {path} is already archived");
        if let Some(existing) = self.read_raw_as(&path, &checking)? {
            let outcome = self.compare_existing(file, data.len(), sum, &existing)?;
            // a push killed after its link and before its fsyncs (or whose directory
            // fsync failed) left a name that may live only in the page cache: PostgreSQL
            // recycles the segment on this answer, so it must be on disk first
            if let Backend::Local(root) = &self.backend {
                make_durable(root, &path)?;
            }
            return Ok(outcome);
        }
        match &self.backend {
            Backend::Local(root) => {
                match write_durably(root, &path, &mut |out| self.seal(file, data, sum, out))? {
                    true => Ok(PutOutcome::Stored),
                    // another pusher won the race: it must have stored the same content
                    false => {
                        let existing = self.read_raw(&path)?.unwrap_or_default();
                        self.compare_existing(file, data.len(), sum, &existing)
                    }
                }
            }
            Backend::Remote(op) => {
                let mut object = Vec::with_capacity(data.len() / 2);
                self.seal(file, data, sum, &mut |piece| {
                    object.extend_from_slice(piece);
                    Ok(())
                })?;
                op.write(&path, object)
                    .map_err(|e| remote_error(&format!("writing {path}"), &e))?;
                Ok(PutOutcome::Stored)
            }
        }
    }

    /// Whether `existing` holds a file of `len` bytes with digest `sum`.
    fn compare_existing(
        &self,
        file: &WalFile,
        len: usize,
        sum: [u8; 16],
        existing: &[u8],
    ) -> Result<PutOutcome> {
        let (size, stored_sum, _) = self.open_object(file, existing)?;
        if size == len as u64 && stored_sum == sum {
            Ok(PutOutcome::AlreadyPresent)
        } else {
            Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "{file} is already archived in {} with different content",
                    self.location
                ),
            )
            .hint("two clusters may be archiving into the same repository, or this cluster was restored without a new timeline; give each cluster its own repository or source, and keep the archived file"))
        }
    }

    /// The content of `file`, verified; `None` when it is not archived.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Integrity`] when the stored object is damaged, or a storage error.
    pub fn get(&self, file: &WalFile) -> Result<Option<Vec<u8>>> {
        let Some(object) = self.read_raw(&self.object_path(file))? else {
            return Ok(None);
        };
        let (size, sum, frame) = self.open_object(file, &object)?;
        let data = zstd::bulk::decompress(&frame, usize::try_from(size).unwrap_or(usize::MAX))
            .map_err(|e| {
                Error::integrity(format!("the archived {file} does not decompress: {e}"))
            })?;
        if data.len() as u64 != size || digest(&data) != sum {
            return Err(Error::integrity(format!(
                "the archived {file} does not match its checksum"
            )));
        }
        Ok(Some(data))
    }

    /// Whether `file` is archived, without reading it.
    ///
    /// # Errors
    ///
    /// A storage error (a vanished local repository included).
    pub fn contains(&self, file: &WalFile) -> Result<bool> {
        let path = self.object_path(file);
        match &self.backend {
            Backend::Local(root) => {
                if root.join(&path).is_file() {
                    return Ok(true);
                }
                // the same "gone or not archived" distinction as reading
                self.read_raw(&path).map(|o| o.is_some())
            }
            Backend::Remote(op) => match op.stat(&path) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(remote_error(&format!("looking for {path}"), &e)),
            },
        }
    }

    /// The timelines the archive holds files of (its directories): one listing of a
    /// level, not of every segment.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn timelines(&self) -> Result<std::collections::BTreeSet<u32>> {
        Ok(self
            .names_in(None, true)?
            .iter()
            .filter(|n| n.len() == 8)
            .filter_map(|n| u32::from_str_radix(n, 16).ok())
            .collect())
    }

    /// The names one level below the archive's directory (or its `sub` directory): its
    /// directories with `dirs`, else its files; none when it does not exist.
    fn names_in(&self, sub: Option<&str>, dirs: bool) -> Result<Vec<String>> {
        let dir = sub.map_or_else(|| self.prefix.clone(), |s| format!("{}/{s}", self.prefix));
        let mut out = Vec::new();
        match &self.backend {
            Backend::Local(root) => {
                let dir = root.join(&dir);
                let entries = match std::fs::read_dir(&dir) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
                };
                for e in entries {
                    let e = e.map_err(|e| Error::io("listing the WAL archive", e))?;
                    if e.file_type().is_ok_and(|t| t.is_dir()) == dirs {
                        out.extend(e.file_name().to_str().map(str::to_string));
                    }
                }
            }
            Backend::Remote(op) => {
                let entries = op
                    .list(&format!("{dir}/"))
                    .map_err(|e| remote_error("listing the WAL archive", &e))?;
                for e in entries {
                    let path = e.path().trim_end_matches('/');
                    // the listing may name the directory itself (a source named in 8 hex
                    // digits would read as a timeline)
                    if e.path().ends_with('/') == dirs && path != dir {
                        out.extend(path.rsplit('/').next().map(str::to_string));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every archived file, unordered. Reads names and sizes only.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn list(&self) -> Result<Vec<StoredWal>> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Local(root) => {
                let dir = root.join(&self.prefix);
                let timelines = match std::fs::read_dir(&dir) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
                };
                for tl in timelines {
                    let tl = tl.map_err(|e| Error::io("listing the WAL archive", e))?;
                    if !tl.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    for f in std::fs::read_dir(tl.path())
                        .map_err(|e| Error::io("listing the WAL archive", e))?
                    {
                        let f = f.map_err(|e| Error::io("listing the WAL archive", e))?;
                        let Some(file) =
                            f.file_name().to_str().and_then(|n| WalFile::parse(n).ok())
                        else {
                            continue;
                        };
                        let meta = f
                            .metadata()
                            .map_err(|e| Error::io("listing the WAL archive", e))?;
                        out.push(StoredWal {
                            file,
                            stored_bytes: meta.len(),
                            archived_at: meta
                                .modified()
                                .ok()
                                .and_then(|t| jiff::Timestamp::try_from(t).ok()),
                        });
                    }
                }
            }
            Backend::Remote(op) => {
                let entries = op
                    .list_options(
                        &format!("{}/", self.prefix),
                        opendal::options::ListOptions {
                            recursive: true,
                            ..Default::default()
                        },
                    )
                    .map_err(|e| remote_error("listing the WAL archive", &e))?;
                for e in entries {
                    let Some(file) = e
                        .path()
                        .rsplit('/')
                        .next()
                        .and_then(|n| WalFile::parse(n).ok())
                    else {
                        continue;
                    };
                    let meta = e.metadata();
                    out.push(StoredWal {
                        file,
                        stored_bytes: meta.content_length(),
                        archived_at: meta.last_modified().and_then(|t| {
                            jiff::Timestamp::from_second(t.into_inner().as_second()).ok()
                        }),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Removes `file` from the archive (pruning, tests).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn remove(&self, file: &WalFile) -> Result<()> {
        let path = self.object_path(file);
        match &self.backend {
            Backend::Local(root) => match std::fs::remove_file(root.join(&path)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("removing {path}"), e)),
            },
            Backend::Remote(op) => op
                .delete(&path)
                .map_err(|e| remote_error(&format!("removing {path}"), &e)),
        }
    }
}

/// Content digest: identifies a file for "pushed twice?" and checks decompression. The
/// AEAD tag already authenticates the object, so a fast non-cryptographic hash suffices
/// (SHA-256 cost a quarter of a push).
pub(crate) fn digest(data: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(data).to_le_bytes()
}

fn remote_error(what: &str, e: &opendal::Error) -> Error {
    match e.kind() {
        opendal::ErrorKind::PermissionDenied => Error::new(
            ErrorKind::Auth,
            format!("{what}: access denied by the storage"),
        )
        .hint("check the S3 credentials"),
        // the innermost cause ("Connection refused", a timeout) is what the operator
        // needs; opendal's own text leads with its request context
        _ => match root_cause(e) {
            Some(cause) => Error::unavailable(format!("{what}: the S3 store did not answer: {cause}"))
                .hint("check that the store is up and reachable, and [repository] endpoint (PostgreSQL retries a failed wal-push; a failed wal-fetch stops recovery, which goes on from there when the server is started again)")
                .source(e.to_string()),
            None => unavailable(what, e),
        },
    }
}

/// The last error in `e`'s source chain, when it has one.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = e.source()?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    Some(cur.to_string())
}

/// The content `fill` hands over, piece by piece.
type Fill<'a> = dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> + 'a;

/// Writes what `fill` produces at `root/path` so that it is on disk before this returns: a
/// temporary file, fsync, a hard link to the final name (which never replaces an existing
/// file), fsync of the directory. Returns `false` if the name already existed.
fn write_durably(root: &Path, path: &str, fill: &mut Fill<'_>) -> Result<bool> {
    let target = root.join(path);
    let dir = target.parent().expect("object paths have a directory");
    if dir.exists() {
        set_modes_left_behind(root, dir)?;
        // made by a push killed before it synced the directory into its parent: synced
        // now (a clean directory's fsync costs next to nothing)
        for parent in dir.ancestors().skip(1).take_while(|d| d.starts_with(root)) {
            sync_dir(parent)?;
        }
    } else {
        // every directory created here must be durable in its parent, or the first push
        // into a new repository (or timeline) could vanish in a crash after answering
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // as private as the repository itself: the umask of a root shell (022) is not
        // the archiver's (PostgreSQL runs it with 077)
        let mode = dir_mode(root);
        for created in missing.iter().rev() {
            std::fs::set_permissions(created, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(|e| Error::io(format!("creating {}", created.display()), e))?;
            // run as root (a history file pushed by hand after a PITR): a directory left
            // to root would stop the PostgreSQL user's archiver at the next segment
            give_to_owner(root, created)?;
            if let Some(parent) = created.parent() {
                sync_dir(parent)?;
            }
        }
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("writing in {}", dir.display()), e))?;
    let failed = |e| Error::io(format!("writing {}", target.display()), e);
    let (mut written, mut flushed) = (0u64, 0u64);
    fill(&mut |piece| {
        tmp.write_all(piece).map_err(failed)?;
        written += piece.len() as u64;
        if written - flushed >= WRITEBACK_EVERY {
            start_writeback(tmp.as_file(), flushed, written - flushed);
            flushed = written;
        }
        Ok(())
    })?;
    give_to_owner(root, tmp.path())?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            crate::repository::owner::file_mode(root),
        ))
        .map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    let linked = match std::fs::hard_link(tmp.path(), &target) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(Error::io(format!("writing {}", target.display()), e)),
    };
    drop(tmp);
    sync_dir(dir)?;
    remove_stale_temps(dir);
    Ok(linked)
}

/// The mode of a directory made in the archive: the repository directory's, never
/// writable by all (a repository directory made under umask 000).
fn dir_mode(root: &Path) -> u32 {
    std::fs::metadata(root).map_or(0o700, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o2775
    })
}

/// A push killed between making a directory and setting its mode left it with the
/// process's umask (0700 under PostgreSQL, so an operators' group lost the timeline):
/// `dir` and its parents up to `root` get the mode they should have had, and their owner.
fn set_modes_left_behind(root: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = dir_mode(root);
    for d in dir
        .ancestors()
        .take_while(|d| *d != root && d.starts_with(root))
    {
        let Ok(meta) = std::fs::metadata(d) else {
            continue;
        };
        if meta.permissions().mode() & 0o7777 != mode {
            // best effort: only the owner (or root) may change it
            if std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).is_ok() {
                give_to_owner(root, d)?;
            }
        }
    }
    Ok(())
}

/// A push that was killed (kill -9, a power cut) leaves its temporary file behind, up to
/// a segment's size each. One an hour old belongs to no push still running (a push gives up
/// within minutes): removed by the next push into the same directory. Best effort.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for e in entries.flatten() {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".tmp-"))
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < hour_ago);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Starts writing `len` bytes at `offset` of `file` back to disk without waiting, the way
/// PostgreSQL's `pg_flush_data` does where `sync_file_range` is unavailable (that call
/// needs `unsafe` here): `POSIX_FADV_DONTNEED` writes dirty pages back before dropping
/// the clean ones. Only a hint: the fsync that follows is what makes the data durable.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        file,
        offset,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// fsync of the file at `root/path` and of every directory from its own up to `root`.
fn make_durable(root: &Path, path: &str) -> Result<()> {
    let target = root.join(path);
    std::fs::File::open(&target)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", target.display()), e))?;
    for dir in target
        .ancestors()
        .skip(1)
        .take_while(|d| d.starts_with(root))
    {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsync of a directory, so that the names made in it are on disk.
///
/// # Errors
///
/// When it cannot be opened or synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::RepositoryConfig, secret::Secret};

    /// The timelines an archive in `cfg` lists after a segment of timeline 1 and the
    /// history file of timeline 3 were pushed (none before).
    fn listed_timelines(cfg: &RepositoryConfig) -> Vec<u32> {
        let password = Secret::new("timelines");
        Repo::init(cfg, &password, rustic_core::NoProgressBars).expect("init");
        let repo = Repo::open(cfg, &password, rustic_core::NoProgressBars).expect("open");
        let store = WalStore::new(&repo, "main").expect("store");
        assert!(store.timelines().expect("list").is_empty());
        let seg = WalFile::parse("000000010000000000000003").expect("name");
        store.put(&seg, &[7u8; 4096]).expect("push a segment");
        let history = WalFile::parse("00000003.history").expect("name");
        store
            .put(&history, b"1\t0/3000000\tno recovery target specified\n")
            .expect("push a history file");
        // a segment that creates a tablespace leaves a mark, which is no timeline
        assert!(store.tablespace_marks().expect("marks").is_empty());
        let (creating, lsn) = super::super::records::segment_creating(0x0400_0000, "/srv/ts");
        let seg = WalFile::parse("000000010000000000000004").expect("name");
        store.put(&seg, &creating).expect("push a creation");
        store.put(&seg, &creating).expect("push it again");
        assert_eq!(store.tablespace_marks().expect("marks"), vec![(1, lsn)]);
        store.timelines().expect("list").into_iter().collect()
    }

    #[test]
    fn the_archive_lists_its_timelines_locally_and_on_s3() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = RepositoryConfig {
            url: Some(dir.path().join("repo").display().to_string()),
            ..RepositoryConfig::default()
        };
        assert_eq!(listed_timelines(&local), vec![1, 3]);
        let garage = lifeboat_testing::garage::Garage::start();
        let remote: RepositoryConfig =
            toml::from_str(&garage.repository_toml("timelines", &dir.path().join("s3.secret")))
                .expect("repository config");
        assert_eq!(listed_timelines(&remote), vec![1, 3]);
    }
}
