//! `lifeboat wal serve`: a long-lived process that keeps the repository key open so that
//! `wal-push` and `wal-fetch` (started by PostgreSQL once per file) hand their work over a
//! Unix socket instead of deriving the key and opening the repository every time. It
//! answers a push only once the file is durable, and reads ahead on fetch so that replay
//! does not wait for the storage.
//!
//! When PostgreSQL has a backlog (segments marked `.ready` in `pg_wal/archive_status`
//! besides the one it asks for), the server pushes the next ones ahead, in parallel, as
//! pgBackRest's asynchronous archiving does: PostgreSQL archives one file at a time and
//! waits for each, so a slow store (an S3 round trip per segment) would otherwise set the
//! pace of catching up. A `.ready` segment is complete and synced, so storing it early is
//! safe; when PostgreSQL then asks for it, the server checks that the file still has the
//! content it stored before answering.
//!
//! Protocol, one request per connection, one line each way:
//! `PUSH <absolute path>` → `OK stored` | `OK present` | `ERR <exit code> <message>`;
//! `FETCH <name> <absolute path>` → `OK found` | `OK missing` | `ERR …`.
//! The client checks that the server runs as its own user (or root) before sending
//! anything, so another user's socket can never receive WAL; the server answers only its
//! own user (or root), so nobody else can read or plant segments through it.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    os::unix::fs::DirBuilderExt,
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use super::{
    name::{SegmentName, WalFile},
    store::{PutOutcome, WalStore},
};
use crate::error::{Error, ErrorKind, Result};

/// Segments fetched ahead of the one recovery asked for.
const READ_AHEAD: u64 = 4;

/// Segments pushed ahead of the one PostgreSQL asked for, running or waiting to be asked
/// for, at most.
const PUSH_AHEAD: usize = 2;

/// Files larger than this are not pushed ahead: each push holds its file in memory, and a
/// cluster built with 1 GiB segments would otherwise hold gigabytes at once.
const PUSH_AHEAD_MAX_BYTES: u64 = 64 << 20;

/// How long a request waits for the push ahead of its file before pushing it itself.
const AHEAD_WAIT: Duration = Duration::from_secs(600);

/// One line in the server's journal (stderr). Never panics, unlike `eprintln!`: a closed
/// or full log must not stop archiving.
fn journal(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{} {line}", jiff::Timestamp::now());
}

/// The default socket of `source` in the repository at `repository` (its URL or path):
/// `/tmp/lifeboat-<uid>/wal-<source>-<8 hex digits>.sock`, the digits a hash of the
/// repository's location. It depends only on the user and the configuration, so
/// PostgreSQL's archiver and a `wal serve` started by hand or by systemd agree on it
/// without sharing an environment; and a `wal-fetch --repo OTHER` (a restore from an
/// offsite copy on the production host) never reaches the server of the primary
/// repository.
#[must_use]
pub fn default_socket(source: &str, repository: &str) -> PathBuf {
    default_socket_dir().join(format!("wal-{}.sock", archive_key(source, repository)))
}

/// Which archive a server serves and a request means: the source and a hash of the
/// repository's location (`main-1a2b3c4d`). A request names it, and a server of another
/// archive refuses it: a socket given by hand (`--socket`, `LIFEBOAT_WAL_SOCKET`) must not
/// put one repository's WAL into another's.
#[must_use]
pub fn archive_key(source: &str, repository: &str) -> String {
    format!(
        "{source}-{:08x}",
        xxhash_rust::xxh3::xxh3_64(canonical_location(repository).as_bytes()) as u32
    )
}

/// The socket name of versions before 2026-12-05 (`wal-<source>.sock`, not tied to a
/// repository): clients still try it, so a server started before an upgrade keeps serving.
#[must_use]
pub fn legacy_socket(source: &str) -> PathBuf {
    default_socket_dir().join(format!("wal-{source}.sock"))
}

/// The directory of the default sockets: `/tmp/lifeboat-<uid>`.
fn default_socket_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/lifeboat-{}", nix::unistd::geteuid()))
}

/// A repository location written the same way whoever reads it: a local path made
/// absolute and without a trailing slash.
fn canonical_location(repository: &str) -> String {
    let trimmed = repository.trim().trim_end_matches('/');
    if trimmed.contains("://") {
        return trimmed.to_string();
    }
    std::path::absolute(trimmed).map_or_else(|_| trimmed.to_string(), |p| p.display().to_string())
}

/// Makes sure `dir` is fit to hold a socket: the default directory is created private to
/// this user, and must stay so (in world-writable `/tmp` another user could have made it
/// first); a directory given with `--socket` must exist and is never changed.
fn prepare_socket_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if dir != default_socket_dir() {
        return if dir.is_dir() {
            Ok(())
        } else {
            Err(
                Error::config(format!("{} is not a directory", dir.display()))
                    .hint("create it first, or leave --socket out to use the default"),
            )
        };
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&format!("creating {}", dir.display()), e)),
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| io(&format!("reading {}", dir.display()), e))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Auth,
            format!(
                "{} is not a private directory of this user (owner uid {}, mode {:o})",
                dir.display(),
                meta.uid(),
                meta.permissions().mode() & 0o7777
            ),
        )
        .hint("another user may have created it: remove it, or give a socket in a directory you own with --socket / LIFEBOAT_WAL_SOCKET"));
    }
    Ok(())
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("{what}: {e}"))
}

/// Read-ahead cache: files being fetched or fetched and not yet asked for.
#[derive(Default)]
struct Cache {
    entries: Mutex<HashMap<WalFile, Slot>>,
    ready: Condvar,
}

enum Slot {
    Loading,
    Done(
        std::result::Result<Option<Arc<Vec<u8>>>, String>,
        std::time::Instant,
    ),
}

/// The uid at the other end of `stream`, and whether it is this process's user or root —
/// the only peers either side of the socket trusts.
fn peer_is_trusted(stream: &UnixStream) -> Result<(u32, bool)> {
    let peer = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| io("checking the other end of the WAL socket", e))?;
    let uid = peer.uid();
    Ok((uid, uid == nix::unistd::geteuid().as_raw() || uid == 0))
}

/// Read-ahead results nobody asked for are dropped after this long.
const STALE: Duration = Duration::from_secs(60);

/// What a push ahead of PostgreSQL's request stored: enough to tell whether the file it
/// later asks for is the same.
struct Pushed {
    outcome: PutOutcome,
    size: u64,
    digest: [u8; 16],
}

enum AheadSlot {
    Pushing,
    Done(std::result::Result<Pushed, String>, std::time::Instant),
}

/// Pushes running or done ahead of PostgreSQL's requests, by path.
#[derive(Default)]
struct Ahead {
    entries: Mutex<HashMap<PathBuf, AheadSlot>>,
    done: Condvar,
}

struct Server {
    store: WalStore,
    /// [`archive_key`] of what it serves.
    key: String,
    cache: Cache,
    ahead: Ahead,
    segment_size: u64,
    /// Another user it answers besides its own and root: the OS user of a restored server
    /// that a root lifeboat serves during its recovery ([`Serving`]).
    guest_uid: Option<u32>,
    /// Writes a journal line per request (a service's log); not inside another command.
    journal: bool,
    /// Segments handed out (`OK found`).
    served: std::sync::atomic::AtomicU64,
    /// Guest connections open now (at most [`MAX_GUESTS`]).
    guests: std::sync::atomic::AtomicUsize,
}

/// Guest connections served at once: PostgreSQL's recovery fetches one file at a time.
const MAX_GUESTS: usize = 8;

/// Who a connection is from ([`Server::admit`]).
#[derive(Clone, Copy)]
enum Admitted {
    /// This user or root.
    Own,
    /// The guest user ([`Serving`]); past the limit it is told to work alone.
    Guest { over_limit: bool },
    /// Anyone else: refused.
    Stranger,
}

/// The push-ahead table, also after a thread panicked while holding it: its entries stay
/// valid (each is replaced whole), so a poisoned lock must not stop every later push.
fn lock_ahead(
    m: &Mutex<HashMap<PathBuf, AheadSlot>>,
) -> std::sync::MutexGuard<'_, HashMap<PathBuf, AheadSlot>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `path` and returns it with its digest.
fn fingerprint(path: &Path) -> Result<(Vec<u8>, [u8; 16])> {
    let data =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let digest = super::store::digest(&data);
    Ok((data, digest))
}

impl Server {
    fn load(&self, file: WalFile) {
        let r = self
            .store
            .get(&file)
            .map(|o| o.map(Arc::new))
            .map_err(|e| reply_error(&e));
        let mut m = self.cache.entries.lock().expect("cache");
        if !matches!(r, Ok(Some(_))) {
            // neither "not archived yet" (it may be archived a moment later) nor a failed
            // read (a storage hiccup) is remembered: the request reads again itself, so a
            // transient error in a read ahead never stops recovery
            m.remove(&file);
        } else {
            m.insert(file, Slot::Done(r, std::time::Instant::now()));
        }
        self.cache.ready.notify_all();
    }

    /// Starts loading `file` in the background unless it is cached or loading.
    fn prefetch(self: &Arc<Self>, file: WalFile) {
        {
            let mut m = self.cache.entries.lock().expect("cache");
            m.retain(|_, slot| !matches!(slot, Slot::Done(_, at) if at.elapsed() > STALE));
            if m.contains_key(&file) || m.len() > 2 * READ_AHEAD as usize {
                return;
            }
            m.insert(file, Slot::Loading);
        }
        let me = Arc::clone(self);
        std::thread::spawn(move || me.load(file));
    }

    fn fetch(self: &Arc<Self>, file: WalFile) -> std::result::Result<Option<Arc<Vec<u8>>>, String> {
        if let WalFile::Segment(s) = file {
            let n = s.number(self.segment_size);
            for k in 1..=READ_AHEAD {
                self.prefetch(WalFile::Segment(SegmentName::from_number(
                    s.timeline,
                    n + k,
                    self.segment_size,
                )));
            }
        }
        let mut m = self.cache.entries.lock().expect("cache");
        loop {
            match m.remove(&file) {
                Some(Slot::Done(r, _)) => return r,
                Some(Slot::Loading) => {
                    m.insert(file, Slot::Loading);
                    m = self.cache.ready.wait(m).expect("cache");
                }
                None => {
                    drop(m);
                    return self
                        .store
                        .get(&file)
                        .map(|o| o.map(Arc::new))
                        .map_err(|e| reply_error(&e));
                }
            }
        }
    }

    /// Starts pushing the segments PostgreSQL marked ready after `requested`, oldest
    /// first, while fewer than [`PUSH_AHEAD`] pushes ahead are running or stored and not
    /// yet asked for.
    fn push_ahead(self: &Arc<Self>, requested: &Path) {
        let (Some(dir), Some(name)) = (
            requested.parent(),
            requested.file_name().and_then(|n| n.to_str()),
        ) else {
            return;
        };
        if !matches!(WalFile::parse(name), Ok(WalFile::Segment(_)))
            || std::fs::metadata(requested).map_or(true, |m| m.len() > PUSH_AHEAD_MAX_BYTES)
        {
            return;
        }
        let Ok(listing) = std::fs::read_dir(dir.join("archive_status")) else {
            return;
        };
        // segment names sort by timeline and position, so later ones compare greater
        let mut ready: Vec<String> = listing
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".ready").map(str::to_string))
            .filter(|n| n.as_str() > name && matches!(WalFile::parse(n), Ok(WalFile::Segment(_))))
            .collect();
        ready.sort();
        let mut m = lock_ahead(&self.ahead.entries);
        m.retain(|_, slot| !matches!(slot, AheadSlot::Done(_, at) if at.elapsed() > STALE));
        for next in ready {
            // running or done and not asked for yet: the lead over PostgreSQL stays bounded
            if m.keys().filter(|p| p.as_path() != requested).count() >= PUSH_AHEAD {
                break;
            }
            let path = dir.join(&next);
            if m.contains_key(&path) {
                continue;
            }
            m.insert(path.clone(), AheadSlot::Pushing);
            let me = Arc::clone(self);
            let owned = path.clone();
            let started = std::thread::Builder::new()
                .name("wal-push-ahead".into())
                .spawn(move || me.push_one_ahead(owned));
            if started.is_err() {
                // no thread to spare: PostgreSQL's own request will push it
                m.remove(&path);
                break;
            }
        }
    }

    fn push_one_ahead(&self, path: PathBuf) {
        let clock = std::time::Instant::now();
        let push = || {
            let (data, digest) = fingerprint(&path)?;
            let file = WalFile::parse(
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default(),
            )?;
            let outcome = self.store.put_digested(&file, &data, digest)?;
            Ok(Pushed {
                outcome,
                size: data.len() as u64,
                digest,
            })
        };
        // a panic must still end in Done: PostgreSQL's request for this file waits for it
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(push))
            .unwrap_or_else(|_| Err(Error::internal("the push ahead stopped unexpectedly")));
        let reply = match &result {
            Ok(p) => outcome_reply(p.outcome),
            Err(e) => reply_error(e),
        };
        lock_ahead(&self.ahead.entries).insert(
            path.clone(),
            AheadSlot::Done(
                result.map_err(|e| reply_error(&e)),
                std::time::Instant::now(),
            ),
        );
        self.ahead.done.notify_all();
        if self.journal {
            journal(format_args!(
                "AHEAD {}: {reply} ({:.1} ms)",
                path.display(),
                clock.elapsed().as_secs_f64() * 1000.0
            ));
        }
    }

    /// The answer for a push of `path` that was pushed ahead, waiting for it if it is still
    /// running; `None` when it was not pushed ahead, failed, or the file changed since
    /// (then the push is done again, and reports what it finds).
    fn pushed_ahead(&self, path: &Path) -> Option<PutOutcome> {
        let deadline = std::time::Instant::now() + AHEAD_WAIT;
        let mut m = lock_ahead(&self.ahead.entries);
        let pushed = loop {
            match m.remove(path) {
                Some(AheadSlot::Pushing) => {
                    m.insert(path.to_path_buf(), AheadSlot::Pushing);
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        // the push ahead is stuck: push it here (that push keeps its
                        // slot until it ends, one way or the other)
                        return None;
                    }
                    m = self
                        .ahead
                        .done
                        .wait_timeout(m, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                Some(AheadSlot::Done(Ok(p), _)) => break p,
                Some(AheadSlot::Done(Err(_), _)) | None => return None,
            }
        };
        drop(m);
        let (data, digest) = fingerprint(path).ok()?;
        (data.len() as u64 == pushed.size && digest == pushed.digest).then_some(pushed.outcome)
    }

    /// Who is at the other end of a connection just accepted. A guest's place among the
    /// [`MAX_GUESTS`] is taken here, in the order connections arrive (counted in each
    /// connection's own thread, a ninth could overtake the eighth).
    fn admit(&self, stream: &UnixStream) -> Admitted {
        // only this user (or root) may hand over or ask for WAL, whatever the socket's
        // directory permissions are
        match peer_is_trusted(stream) {
            Ok((_, true)) => Admitted::Own,
            Ok((uid, false)) if Some(uid) == self.guest_uid => {
                let over_limit = self.guests.fetch_add(1, Ordering::SeqCst) >= MAX_GUESTS;
                if over_limit {
                    // told to work alone, it holds no place
                    self.guests.fetch_sub(1, Ordering::SeqCst);
                }
                Admitted::Guest { over_limit }
            }
            _ => Admitted::Stranger,
        }
    }

    fn handle(self: &Arc<Self>, stream: UnixStream, admitted: Admitted) {
        match admitted {
            Admitted::Stranger => {
                let _ = (&stream).write_all(
                    format!(
                        "ERR {} this WAL server serves its own user only\n",
                        ErrorKind::Auth.exit_code()
                    )
                    .as_bytes(),
                );
                return;
            }
            Admitted::Guest { over_limit } => {
                struct Left<'a>(&'a std::sync::atomic::AtomicUsize);
                impl Drop for Left<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _left = (!over_limit).then(|| Left(&self.guests));
                self.handle_guest(&stream, over_limit);
                return;
            }
            Admitted::Own => {}
        }
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        // nothing sent: a probe (`wal status` asking whether a server answers), not a request
        if !reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            return;
        }
        let request = line.trim_end();
        let clock = std::time::Instant::now();
        let reply = self.answer(request);
        let ms = clock.elapsed().as_secs_f64() * 1000.0;
        // one line per request: the service's journal shows what was archived and served,
        // written before the answer so that it is there once the client has its answer
        let what = request.split(' ').take(2).collect::<Vec<_>>().join(" ");
        if self.journal {
            journal(format_args!("{what}: {reply} ({ms:.1} ms)"));
        }
        let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
    }

    /// A connection of the guest user ([`Serving`]): a request line of a few KiB read
    /// within seconds, a few such connections at a time; another user must not be able to
    /// hold a root process's memory or threads.
    fn handle_guest(self: &Arc<Self>, stream: &UnixStream, over_limit: bool) {
        use std::io::Read;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
        let read_request = || {
            let mut line = String::new();
            BufReader::new(stream.take(4096))
                .read_line(&mut line)
                .is_ok_and(|n| n > 0 && line.ends_with('\n'))
                .then_some(line)
        };
        if over_limit {
            // read first: a client still writing its request takes an early close for a
            // broken server, not for "work alone"
            if read_request().is_some() {
                let _ = (&*stream).write_all(b"OK alone\n");
            }
            return;
        }
        let Some(line) = read_request() else {
            return;
        };
        let (reply, data) = self.answer_guest(line.trim_end());
        if (&*stream)
            .write_all(format!("{reply}\n").as_bytes())
            .is_ok()
        {
            if let Some(d) = data {
                let _ = (&*stream).write_all(&d);
            }
        }
    }

    /// A request of the guest user ([`Serving`]), answered without touching a path it
    /// names: a root server writing or reading where another user says would hand that
    /// user root's reach. A fetch gets the data in the reply (`OK data <length>`, then the
    /// bytes), which the client writes itself; anything else, or another archive, gets
    /// `OK alone` (the client then works without the server).
    fn answer_guest(self: &Arc<Self>, line: &str) -> (String, Option<Arc<Vec<u8>>>) {
        let alone = || ("OK alone".to_string(), None);
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        let Some(("FETCH", key)) = head.split_once('@') else {
            return alone();
        };
        if key != self.key {
            return alone();
        }
        let file = match WalFile::parse(rest.split(' ').next().unwrap_or_default()) {
            Ok(f) => f,
            Err(e) => return (reply_error(&e), None),
        };
        match self.fetch(file) {
            Ok(None) => ("OK missing".into(), None),
            Ok(Some(data)) => {
                self.served.fetch_add(1, Ordering::Relaxed);
                (format!("OK data {}", data.len()), Some(data))
            }
            Err(reply) => (reply, None),
        }
    }

    fn answer(self: &Arc<Self>, line: &str) -> String {
        let err = reply_error;
        let (head, line) = line.split_once(' ').unwrap_or((line, ""));
        let (verb, key) = match head.split_once('@') {
            Some((verb, key)) => (verb, Some(key)),
            None => (head, None),
        };
        if let Some(key) = key.filter(|k| *k != self.key) {
            return format!(
                "ERR {} {OTHER_ARCHIVE} {} ({}), not {key}{HINT_SEP}the socket given (--socket, LIFEBOAT_WAL_SOCKET) belongs to another source or repository: give this one's, or leave it out",
                ErrorKind::Config.exit_code(),
                self.key,
                self.store.location()
            );
        }
        let mut parts = line.splitn(2, ' ');
        match (verb, parts.next().filter(|p| !p.is_empty()), parts.next()) {
            ("PUSH", Some(_), _) => {
                let path = Path::new(line);
                self.push_ahead(path);
                if let Some(outcome) = self.pushed_ahead(path) {
                    return outcome_reply(outcome);
                }
                match super::push(&self.store, path) {
                    Ok((_, outcome)) => outcome_reply(outcome),
                    Err(e) => err(&e),
                }
            }
            ("FETCH", Some(name), Some(dest)) => {
                let file = match WalFile::parse(name) {
                    Ok(f) => f,
                    Err(e) => return err(&e),
                };
                match self.fetch(file) {
                    Ok(None) => "OK missing".into(),
                    Ok(Some(data)) => match super::write_file(Path::new(dest), &data) {
                        Ok(()) => {
                            self.served.fetch_add(1, Ordering::Relaxed);
                            "OK found".into()
                        }
                        Err(e) => err(&e),
                    },
                    Err(reply) => reply,
                }
            }
            _ => format!("ERR {} bad request", ErrorKind::Config.exit_code()),
        }
    }
}

fn outcome_reply(outcome: PutOutcome) -> String {
    match outcome {
        PutOutcome::Stored => "OK stored".into(),
        PutOutcome::AlreadyPresent => "OK present".into(),
    }
}

/// An error as a reply line: `ERR <exit code> <message>`, the kind kept for the client.
/// `ERR <exit code> <message>[<tab>hint: <hint>]`: the client prints the hint as its own,
/// as a push without the server would.
fn reply_error(e: &Error) -> String {
    let one_line = |t: &str| t.replace(['\n', '\t'], " ");
    let hint = e
        .hint_text()
        .map(|h| format!("{HINT_SEP}{}", one_line(h)))
        .unwrap_or_default();
    format!(
        "ERR {} {}{hint}",
        e.kind().exit_code(),
        one_line(&e.to_string())
    )
}

/// Separates a reply's error message from its hint.
const HINT_SEP: &str = "\thint: ";

/// Serves `store` on `socket` until `stop` is set, calling `listening` once the socket is
/// taken: a service log then says "serving" only of a server that does.
///
/// # Errors
///
/// When the socket cannot be created (another server may be running).
pub fn serve(
    store: WalStore,
    key: &str,
    socket: &Path,
    segment_size: u64,
    stop: &AtomicBool,
    listening: impl FnOnce(),
) -> Result<()> {
    let listener = listen(socket)?;
    listening();
    let server = Server::new(store, key, segment_size, None, true);
    run(&listener, &server, socket, stop);
    Ok(())
}

impl Server {
    fn new(
        store: WalStore,
        key: &str,
        segment_size: u64,
        guest_uid: Option<u32>,
        journal: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            key: key.to_string(),
            cache: Cache::default(),
            ahead: Ahead::default(),
            segment_size,
            guest_uid,
            journal,
            served: std::sync::atomic::AtomicU64::new(0),
            guests: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

/// Listens on `socket`, in a directory fit for it (see [`prepare_socket_dir`]).
fn listen(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_socket_dir(dir)?;
    }
    if UnixStream::connect(socket).is_ok() {
        return Err(Error::config(format!(
            "a WAL server is already listening on {}",
            socket.display()
        ))
        .hint("one `lifeboat wal serve` per source is enough"));
    }
    // a socket nobody answers on is a leftover of a server that died; anything else at
    // that path is not ours to remove
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(
                Error::config(format!("{} exists and is not a socket", socket.display()))
                    .hint("choose another path with --socket / LIFEBOAT_WAL_SOCKET"),
            );
        }
        let _ = std::fs::remove_file(socket);
    }
    let listener = UnixListener::bind(socket)
        .map_err(|e| io(&format!("listening on {}", socket.display()), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io("configuring the socket", e))?;
    Ok(listener)
}

/// Answers on `listener` until `stop` is set, then removes `socket` and lets the requests
/// under way finish.
fn run(listener: &UnixListener, server: &Arc<Server>, socket: &Path, stop: &AtomicBool) {
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let s = Arc::clone(server);
                let busy = Arc::clone(&busy);
                busy.fetch_add(1, Ordering::SeqCst);
                // counted down even if the handler panics, or never runs
                struct Done(Arc<std::sync::atomic::AtomicUsize>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let done = Done(busy);
                let admitted = s.admit(&stream);
                // a thread the system refuses (out of threads) drops this connection,
                // not the server (and gives back a guest's place)
                let spawned = std::thread::Builder::new().spawn({
                    let s = Arc::clone(&s);
                    move || {
                        let _done = done;
                        s.handle(stream, admitted);
                    }
                });
                if spawned.is_err() {
                    if let Admitted::Guest { over_limit: false } = admitted {
                        s.guests.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(listener),
            // out of file descriptors, a client gone before it was accepted, a signal: the
            // server stays up (PostgreSQL would otherwise fall back to slow pushes)
            Err(e) => {
                if server.journal {
                    journal(format_args!("accepting a connection failed: {e}; going on"));
                }
                std::thread::sleep(STOP_CHECK);
            }
        }
    }
    // no new requests; the ones under way finish (a fetch cut off would stop a recovery,
    // a push cut off would leave a temporary file), for a while
    let _ = std::fs::remove_file(socket);
    // a recovery that is over needs no fetch finished; a service's pushes do
    let deadline = std::time::Instant::now()
        + if server.guest_uid.is_some() || !server.journal {
            Duration::from_secs(2)
        } else {
            DRAIN
        };
    while busy.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// lifeboat serving the WAL archive to a server it restored, for as long as that server's
/// recovery runs: each `wal-fetch` the restore_command starts hands its segment over here
/// ([`Serving::socket`], given to the server as `LIFEBOAT_WAL_SOCKET`) instead of deriving
/// the repository key and opening the repository (about a second a segment), with read-ahead
/// as `wal serve` does. The socket is in a private directory of its own; stopped and
/// removed on drop. Without it (lifeboat gone) a `wal-fetch` works alone.
pub struct Serving {
    stop: Arc<AtomicBool>,
    server: Arc<Server>,
    socket: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Serving {
    /// Starts serving `store` (of archive `key`) to this user, root, and `guest` (the uid
    /// and gid the restored server runs as, when that is another user).
    ///
    /// # Errors
    ///
    /// When the directory or the socket cannot be made.
    pub fn start(
        store: WalStore,
        key: &str,
        segment_size: u64,
        guest: Option<(u32, u32)>,
    ) -> Result<Self> {
        // short: a socket path holds at most 107 bytes, and TMPDIR may be long
        let base = Path::new("/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-wal-")
            .tempdir_in(&base)
            .map_err(|e| {
                io(
                    &format!("creating a socket directory in {}", base.display()),
                    e,
                )
            })?;
        let socket = dir.path().join("wal.sock");
        let listener = listen(&socket)?;
        if let Some((uid, gid)) = guest {
            // the restored server's user must reach the socket: it may pass through the
            // directory, which stays this user's (a directory of its own in /tmp could be
            // renamed away and replaced by a link under root's feet), and the socket is
            // its own
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .map_err(|e| io(&format!("opening {} to uid {uid}", dir.path().display()), e))?;
            nix::unistd::chown(
                &socket,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| io(&format!("giving {} to uid {uid}", socket.display()), e))?;
        }
        let server = Server::new(store, key, segment_size, guest.map(|g| g.0), false);
        // an interrupt ends the process without dropping this: the directory goes then
        crate::sources::postgres::cluster::remove_on_stop(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop, socket) = (Arc::clone(&server), Arc::clone(&stop), socket.clone());
            std::thread::spawn(move || run(&listener, &server, &socket, &stop))
        };
        Ok(Self {
            stop,
            server,
            socket,
            thread: Some(thread),
            dir,
        })
    }

    /// The socket to give the restored server (`LIFEBOAT_WAL_SOCKET`).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Segments handed out so far.
    #[must_use]
    pub fn served(&self) -> u64 {
        self.server.served.load(Ordering::Relaxed)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        crate::sources::postgres::cluster::forget_temp_dir(self.dir.path());
    }
}

/// How long a stopping server waits for the requests under way.
const DRAIN: Duration = Duration::from_secs(60);

/// Waits until a connection is pending, or for [`STOP_CHECK`]. A connection wakes `poll` at
/// once: sleeping between `accept` attempts instead added half the sleep to every push on
/// average, a fifth of a push's latency.
fn wait_readable(listener: &UnixListener) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(STOP_CHECK).unwrap_or(PollTimeout::MAX);
    // an interrupted or failed poll only means "look again": accept reports real errors
    let _ = poll(&mut fds, timeout);
}

/// How often an idle server looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Sends one request; `None` when no server listens (the caller works alone then).
fn request(socket: &Path, line: &str) -> Result<Option<(String, BufReader<UnixStream>)>> {
    let Ok(stream) = UnixStream::connect(socket) else {
        return Ok(None);
    };
    // a hung server must not hang PostgreSQL's archiver or a replay for ever; a request
    // may wait up to AHEAD_WAIT for a push ahead, and then push the file itself
    let _ = stream.set_read_timeout(Some(AHEAD_WAIT * 3));
    let (uid, trusted) = peer_is_trusted(&stream)?;
    if !trusted {
        // nothing was sent: working alone keeps archiving going, where refusing would let
        // another user stop it (and fill pg_wal) by planting a socket
        let _ = writeln!(
            std::io::stderr(),
            "lifeboat: ignoring the WAL server on {}: it runs as uid {uid}, not as this user; \
             working without it (remove that socket, or give your own with --socket / LIFEBOAT_WAL_SOCKET)",
            socket.display()
        );
        return Ok(None);
    }
    // a server that closed before it took the request (busy, stopping) did nothing of
    // it: working alone is safe, where failing would stop PostgreSQL's recovery
    match (&stream).write_all(format!("{line}\n").as_bytes()) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io("talking to the WAL server", e)),
    }
    let mut reply = String::new();
    let mut reader = BufReader::new(stream);
    reader
        .read_line(&mut reply)
        .map_err(|e| io("talking to the WAL server", e))?;
    if reply.is_empty() {
        return Err(
            Error::unavailable("the WAL server closed the connection without an answer")
                .hint("see the output of `lifeboat wal serve`"),
        );
    }
    Ok(Some((reply.trim_end().to_string(), reader)))
}

/// `VERB@KEY ARGS`, naming the archive meant; a server from before such requests
/// (running since an upgrade) answers "bad request", and gets `VERB ARGS` as before.
fn keyed_request(
    socket: &Path,
    verb: &str,
    key: &str,
    args: &str,
) -> Result<Option<(String, BufReader<UnixStream>)>> {
    let reply = request(socket, &format!("{verb}@{key} {args}"))?;
    let refused = format!("ERR {} {OTHER_ARCHIVE}", ErrorKind::Config.exit_code());
    match reply {
        Some((r, _)) if r == format!("ERR {} bad request", ErrorKind::Config.exit_code()) => {
            request(socket, &format!("{verb} {args}"))
        }
        // a server serving another user's recovery only fetches for it
        Some((r, _)) if r == "OK alone" => Ok(None),
        // this configuration's own repository is what the command is for: it works alone,
        // as without a server (failing would stop PostgreSQL's archiving)
        Some((r, _)) if r.starts_with(&refused) => {
            // " KEY (location), not OTHER" from the server: what it serves
            let said = r[refused.len()..]
                .split(HINT_SEP)
                .next()
                .unwrap_or_default();
            let said = said.split(", not ").next().unwrap_or(said);
            let _ = writeln!(
                std::io::stderr(),
                "lifeboat: ignoring the WAL server on {}: it serves archive{said}, not this configuration's {key}; working without it",
                socket.display()
            );
            Ok(None)
        }
        other => Ok(other),
    }
}

/// The start of a server's refusal of a request for another archive.
const OTHER_ARCHIVE: &str = "this WAL server serves archive";

fn server_error(reply: &str) -> Error {
    let rest = reply.strip_prefix("ERR ").unwrap_or(reply);
    let (code, msg) = rest.split_once(' ').unwrap_or(("1", rest));
    let kind = ErrorKind::from_exit_code(code.parse().unwrap_or(1));
    match msg.split_once(HINT_SEP) {
        Some((msg, hint)) => Error::new(kind, format!("WAL server: {msg}")).hint(hint),
        None => Error::new(kind, format!("WAL server: {msg}")),
    }
}

/// Pushes through the server; `None` when none is running.
///
/// # Errors
///
/// The server's error.
pub fn client_push(socket: &Path, key: &str, path: &Path) -> Result<Option<PutOutcome>> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
    match keyed_request(socket, "PUSH", key, &abs.display().to_string())?.map(|(r, _)| r) {
        None => Ok(None),
        Some(r) if r == "OK stored" => Ok(Some(PutOutcome::Stored)),
        Some(r) if r == "OK present" => Ok(Some(PutOutcome::AlreadyPresent)),
        Some(r) => Err(server_error(&r)),
    }
}

/// Fetches through the server; `None` when none is running, else whether it was found.
///
/// # Errors
///
/// The server's error.
pub fn client_fetch(socket: &Path, key: &str, name: &str, dest: &Path) -> Result<Option<bool>> {
    let abs = std::path::absolute(dest).map_err(|e| Error::io(dest.display(), e))?;
    match keyed_request(socket, "FETCH", key, &format!("{name} {}", abs.display()))? {
        None => Ok(None),
        Some((r, _)) if r == "OK found" => Ok(Some(true)),
        Some((r, _)) if r == "OK missing" => Ok(Some(false)),
        // served to another user than the server's: the data comes in the reply
        Some((r, mut reader)) if r.starts_with("OK data ") => {
            // no WAL file is larger than PostgreSQL's largest segment
            let len: usize = r["OK data ".len()..]
                .parse()
                .ok()
                .filter(|n| *n <= 1 << 30)
                .ok_or_else(|| Error::unavailable(format!("the WAL server answered {r:?}")))?;
            let mut data = vec![0u8; len];
            std::io::Read::read_exact(&mut reader, &mut data)
                .map_err(|e| io("reading a WAL file from the WAL server", e))?;
            super::write_file(&abs, &data)?;
            Ok(Some(true))
        }
        Some((r, _)) => Err(server_error(&r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_socket_belongs_to_one_repository() {
        let a = default_socket("main", "/var/backups/lifeboat");
        assert_eq!(a, default_socket("main", "/var/backups/lifeboat/"));
        assert_ne!(a, default_socket("main", "/mnt/offsite/lifeboat"));
        assert_ne!(a, default_socket("other", "/var/backups/lifeboat"));
        assert_ne!(
            default_socket("main", "s3://bucket/a"),
            default_socket("main", "s3://bucket/b")
        );
        assert_eq!(a.parent(), Some(default_socket_dir().as_path()));
    }

    #[test]
    fn a_socket_directory_given_by_the_operator_is_never_changed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lifeboat-spool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare_socket_dir(&dir).expect("an existing directory is fine");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        std::fs::remove_dir(&dir).expect("rmdir");
        assert_eq!(mode, 0o755);
        assert!(
            prepare_socket_dir(&dir).is_err(),
            "a missing one is an error"
        );
    }
}
