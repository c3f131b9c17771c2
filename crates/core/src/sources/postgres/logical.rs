//! Logical dumps: pg_dump (custom format, uncompressed) and pg_dumpall --globals-only,
//! streamed without a temporary file.
//!
//! The child's stdout is read by the repository archiver through [`DumpStream`], which
//! counts and hashes every byte and hands a copy to an inspector thread that reads the
//! archive's TOC and COPY data (see [`super::archive`]). [`DumpProcess::finish`] then
//! decides whether the stream is a complete, good dump: exit status, stderr, length and a
//! fully read archive. Compression happens after chunking, in the repository, so that
//! unchanged rows deduplicate.

use std::{
    io::Read,
    path::PathBuf,
    process::{Child, ChildStdout, Stdio},
    sync::{
        mpsc::{Receiver, SyncSender},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use serde::{Deserialize, Serialize};

use super::{
    archive,
    conn::{classify, missing_program, PgConn},
    truth::Truth,
};
use crate::error::{Error, Result};

/// What a logical backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LogicalKind {
    /// Schema and data of one database (`pg_dump -Fc -Z0`).
    Logical,
    /// Schema only (`pg_dump -Fc -s`).
    Schema,
    /// Roles and tablespaces of the cluster (`pg_dumpall --globals-only`).
    Globals,
}

impl LogicalKind {
    /// All logical kinds, in backup order.
    pub const ALL: [Self; 3] = [Self::Logical, Self::Schema, Self::Globals];

    /// Name used in tags and on the command line.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Logical => "logical",
            Self::Schema => "schema",
            Self::Globals => "globals",
        }
    }

    /// File name of the stream inside the snapshot.
    #[must_use]
    pub fn file_name(self, database: &str) -> String {
        match self {
            Self::Logical => format!("{database}.pgdump"),
            Self::Schema => format!("{database}.schema.pgdump"),
            Self::Globals => "globals.sql".to_string(),
        }
    }
}

impl std::str::FromStr for LogicalKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logical" => Ok(Self::Logical),
            "schema" => Ok(Self::Schema),
            "globals" => Ok(Self::Globals),
            other => Err(Error::config(format!("unknown backup kind {other:?}"))
                .hint("use logical, schema or globals")),
        }
    }
}

impl std::fmt::Display for LogicalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters shared between the stream (read by the archiver) and the process owner.
#[derive(Default)]
struct StreamState {
    bytes: u64,
    hasher: Option<xxhash_rust::xxh3::Xxh3>,
    eof: bool,
}

/// Bytes handed to the inspector thread at a time: one message per 256 KiB instead of one
/// per (4 KiB) read keeps thread hand-offs out of the profile.
const INSPECT_BATCH: usize = 256 * 1024;

/// The child's stdout as the archiver reads it.
pub struct DumpStream {
    stdout: std::io::BufReader<ChildStdout>,
    state: Arc<Mutex<StreamState>>,
    tx: Option<SyncSender<Vec<u8>>>,
    batch: Vec<u8>,
    bytes: u64,
    hasher: xxhash_rust::xxh3::Xxh3,
    published: bool,
}

impl DumpStream {
    /// Reads until `buf` is full or the stream ends. rustic_core's chunker shrinks its
    /// buffer to the size of each short read and never grows it back, so the short reads a
    /// pipe gives would slowly turn into byte-sized reads.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(INSPECT_BATCH));
        if let Some(tx) = &self.tx {
            if tx.send(full).is_err() {
                // the inspector stopped (malformed archive): keep streaming, finish() reports it
                self.tx = None;
            }
        }
    }

    /// Publishes the counters for [`DumpProcess::finish`]; `eof` says the stream ended.
    fn publish(&mut self, eof: bool) {
        self.send_batch();
        self.tx = None;
        self.published = true;
        if let Ok(mut st) = self.state.lock() {
            st.eof = eof;
            st.bytes = self.bytes;
            st.hasher = Some(self.hasher.clone());
        }
    }
}

impl Read for DumpStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill(buf)?;
        if n == 0 {
            self.publish(true);
            return Ok(0);
        }
        self.bytes += n as u64;
        self.hasher.update(&buf[..n]);
        if self.tx.is_some() {
            self.batch.extend_from_slice(&buf[..n]);
            if self.batch.len() >= INSPECT_BATCH {
                self.send_batch();
            }
        }
        Ok(n)
    }
}

impl Drop for DumpStream {
    fn drop(&mut self) {
        // dropped before the end (the archiver gave up): counters for the error message
        if !self.published {
            self.publish(false);
        }
    }
}

/// A running pg_dump / pg_dumpall and what is learned from its output.
pub struct DumpProcess {
    child: Child,
    program: String,
    stream: Option<DumpStream>,
    state: Arc<Mutex<StreamState>>,
    stderr: Option<JoinHandle<String>>,
    inspector: Option<JoinHandle<std::result::Result<Truth, archive::ArchiveError>>>,
    /// Database (or `"globals"`) being dumped.
    pub database: String,
    /// Kind of dump.
    pub kind: LogicalKind,
}

/// The result of a finished, successful dump.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    /// Bytes in the stream.
    pub bytes: u64,
    /// xxh3-128 of the whole stream (hex), checked again on restore.
    pub stream_hash: String,
    /// Backup-time truth (custom-format dumps only).
    pub truth: Option<Truth>,
}

struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Enlarges a pipe so the dumping program rarely blocks on a slow reader.
fn enlarge_pipe(stdout: &ChildStdout) {
    use std::os::fd::AsFd;
    // 1 MiB is the default /proc/sys/fs/pipe-max-size for unprivileged users
    let _ = nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

impl DumpProcess {
    /// Starts dumping `database` (ignored for globals) of `conn`.
    ///
    /// # Errors
    ///
    /// When the program cannot be started.
    pub fn start(conn: &PgConn, database: &str, kind: LogicalKind) -> Result<Self> {
        let (program, mut cmd) = match kind {
            LogicalKind::Globals => {
                let mut c = conn.command("pg_dumpall", database);
                c.args(["--globals-only", "--no-password"]);
                ("pg_dumpall", c)
            }
            LogicalKind::Logical | LogicalKind::Schema => {
                let mut c = conn.command("pg_dump", database);
                c.args(["--format=custom", "--compress=0", "--no-password"]);
                if kind == LogicalKind::Schema {
                    c.arg("--schema-only");
                }
                ("pg_dump", c)
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| missing_program(&conn.bin().program(program), e))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        enlarge_pipe(&stdout);
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = (&mut stderr_pipe).take(64 * 1024).read_to_string(&mut s);
            // drain the rest so the child never blocks on a full stderr pipe
            let _ = std::io::copy(&mut stderr_pipe, &mut std::io::sink());
            s
        });
        let state = Arc::new(Mutex::new(StreamState::default()));
        let (tx, inspector) = if kind == LogicalKind::Globals {
            (None, None)
        } else {
            // bounded: the inspector may lag a little, never by gigabytes
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
            let handle = std::thread::spawn(move || {
                archive::inspect(ChannelReader {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                })
            });
            (Some(tx), Some(handle))
        };
        Ok(Self {
            child,
            program: program.to_string(),
            stream: Some(DumpStream {
                stdout: std::io::BufReader::with_capacity(1 << 20, stdout),
                state: Arc::clone(&state),
                tx,
                batch: Vec::with_capacity(INSPECT_BATCH),
                bytes: 0,
                hasher: xxhash_rust::xxh3::Xxh3::new(),
                published: false,
            }),
            state,
            stderr: Some(stderr),
            inspector,
            database: database.to_string(),
            kind,
        })
    }

    /// Takes the stream for the archiver (once).
    pub fn take_stream(&mut self) -> Option<DumpStream> {
        self.stream.take()
    }

    /// Waits for the program and decides whether the dump is complete and good.
    ///
    /// # Errors
    ///
    /// A classified error when the program failed or was killed, or
    /// [`crate::ErrorKind::Integrity`] when the stream is incomplete or malformed.
    pub fn finish(mut self) -> Result<DumpOutcome> {
        drop(self.stream.take());
        let (eof, bytes, hash) = {
            let mut st = self.state.lock().expect("stream state poisoned");
            let h = st.hasher.take().map(|h| h.digest128()).unwrap_or(0);
            (st.eof, st.bytes, h)
        };
        if !eof {
            // the archiver stopped before the end: make sure the dump does not linger
            let _ = self.child.kill();
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", self.program), e))?;
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let inspected = self.inspector.take().map(|h| h.join());
        let what = format!("{} of {:?}", self.program, self.database);
        if !status.success() {
            let mut e = classify(&stderr, &what);
            if stderr.trim().is_empty() {
                e = Error::postgres(format!("{what} failed ({status}) without a message"))
                    .hint("the process was killed or crashed; run the backup again");
            }
            return Err(e);
        }
        if !eof {
            return Err(Error::integrity(format!(
                "{what}: the repository stopped reading the dump after {bytes} bytes"
            ))
            .hint("see the repository error above; no snapshot was kept"));
        }
        if bytes == 0 {
            return Err(Error::integrity(format!("{what} produced no output")));
        }
        let truth = match inspected {
            None => None,
            Some(Ok(Ok(t))) => Some(t),
            Some(Ok(Err(e))) => {
                return Err(
                    Error::integrity(format!("{what}: the dump is not complete: {e}"))
                        .hint("no snapshot was kept; run the backup again"),
                )
            }
            Some(Err(_)) => {
                return Err(Error::internal(format!(
                    "{what}: the dump inspector panicked"
                )))
            }
        };
        Ok(DumpOutcome {
            bytes,
            stream_hash: format!("{hash:032x}"),
            truth,
        })
    }
}

impl Drop for DumpProcess {
    fn drop(&mut self) {
        // an abandoned dump (error, panic) must not keep running
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A path inside a snapshot: `/lifeboat/<source>/<file>`.
#[must_use]
pub fn snapshot_path(source: &str, file: &str) -> PathBuf {
    PathBuf::from(format!("/lifeboat/{source}/{file}"))
}
