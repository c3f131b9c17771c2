//! A child process's stdout as a repository stream. A pump thread drains the pipe in 1 MiB
//! blocks, counts and hashes them and shares each block with an inspector thread that parses
//! the stream in flight; the archiver reads the same blocks from a bounded queue. After the
//! archiver is done, [`ChildStream::finish`] decides whether the output was complete and
//! good: exit status, stderr, length and the inspector's verdict.

use std::{
    io::Read,
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        mpsc::{Receiver, SyncSender},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use super::conn::{classify, missing_program};
use crate::error::{Error, Result};

/// Counters shared between the pump, the stream (read by the archiver) and the process owner.
#[derive(Default)]
struct StreamState {
    /// Bytes the archiver read.
    bytes: u64,
    /// The whole stream's hash, once the pump reached its end.
    hasher: Option<xxhash_rust::xxh3::Xxh3>,
    /// The archiver read up to the end of the stream.
    eof: bool,
}

/// One read of the pipe, shared by the archiver and the inspector without a copy.
type Block = Arc<Vec<u8>>;

/// Bytes the pump reads from the pipe at a time.
const BLOCK: usize = 1 << 20;
/// Blocks queued for the archiver. The queue is what lets the dumping program (and the
/// server behind it) keep going while the archiver chunks, hashes and hands chunks to the
/// compressors: with only the pipe between them, every pause of the archiver stopped the
/// server too. With the queue the benchmark's 1.28 GB dump took about 10% less wall time
/// (docs/benchmarks.md, session 4).
const QUEUE_BLOCKS: usize = 32;
/// Blocks queued for the inspector: it may lag a little, never by gigabytes.
const INSPECT_BLOCKS: usize = 16;

/// What the pump hands on.
enum Piece {
    Data(Block),
    /// The end of the stream (the pump read all of it).
    End,
    Failed(std::io::Error),
}

/// Drains `stdout` into the queues until its end, or until the archiver goes away.
fn pump(
    mut stdout: ChildStdout,
    tx: SyncSender<Piece>,
    mut inspect: Option<SyncSender<Block>>,
    state: Arc<Mutex<StreamState>>,
) {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    loop {
        let mut block = Vec::with_capacity(BLOCK);
        let n = match (&mut stdout).take(BLOCK as u64).read_to_end(&mut block) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Piece::Failed(e));
                return;
            }
        };
        if n > 0 {
            hasher.update(&block);
            let block = Arc::new(block);
            if let Some(t) = &inspect {
                if t.send(Arc::clone(&block)).is_err() {
                    // the inspector stopped (malformed archive): keep streaming, finish() reports it
                    inspect = None;
                }
            }
            if tx.send(Piece::Data(block)).is_err() {
                return; // the archiver gave up; finish() stops the program
            }
        }
        if n < BLOCK {
            break;
        }
    }
    drop(inspect);
    if let Ok(mut st) = state.lock() {
        st.hasher = Some(hasher);
    }
    let _ = tx.send(Piece::End);
}

/// The child's stdout as the archiver reads it.
pub struct OutputStream {
    rx: Receiver<Piece>,
    block: Block,
    pos: usize,
    state: Arc<Mutex<StreamState>>,
    bytes: u64,
    published: bool,
}

impl OutputStream {
    /// Publishes the counters for [`ChildStream::finish`]; `eof` says the stream ended.
    fn publish(&mut self, eof: bool) {
        self.published = true;
        if let Ok(mut st) = self.state.lock() {
            st.eof = eof;
            st.bytes = self.bytes;
        }
    }
}

impl Read for OutputStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.block.len() {
            if self.published {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Data(b)) => {
                    self.block = b;
                    self.pos = 0;
                }
                Ok(Piece::End) => {
                    self.publish(true);
                    return Ok(0);
                }
                Ok(Piece::Failed(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::other(
                        "the thread reading the program's output stopped",
                    ))
                }
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Drop for OutputStream {
    fn drop(&mut self) {
        // dropped before the end (the archiver gave up): counters for the error message
        if !self.published {
            self.publish(false);
        }
    }
}

/// The inspector's view of the stream.
pub struct ChannelReader {
    rx: Receiver<Block>,
    buf: Block,
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

/// A pipe read so that its writer's small writes gather between reads.
///
/// pg_dump, psql and the server write 4-8 KiB at a time, and every write into an empty pipe
/// wakes a waiting reader: a reader that keeps up is woken for every one of them. After a
/// short read (the pipe was nearly empty, so the reader is ahead) the next read waits half
/// a millisecond first; a reader that is behind finds the pipe full and never waits. (The
/// backup stream does not use it: there the chunker is the slower side, and measured with
/// and without it a backup took the same CPU time.)
pub(crate) struct GatheringPipe<R> {
    inner: R,
    was_short: bool,
}

/// Reads shorter than this mean the writer is behind.
const SHORT_READ: usize = 64 * 1024;

impl<R> GatheringPipe<R> {
    pub(crate) const fn new(inner: R) -> Self {
        Self {
            inner,
            was_short: false,
        }
    }
}

impl<R: Read> Read for GatheringPipe<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.was_short {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        let n = self.inner.read(buf)?;
        self.was_short = n > 0 && n < SHORT_READ.min(buf.len() / 2);
        Ok(n)
    }
}

/// Enlarges a pipe so the dumping program rarely blocks on a slow reader.
fn enlarge_pipe(stdout: &ChildStdout) {
    use std::os::fd::AsFd;
    // 1 MiB is the default /proc/sys/fs/pipe-max-size for unprivileged users
    let _ = nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

/// A running program whose stdout is the backup stream.
pub struct ChildStream<T> {
    child: Child,
    program: String,
    what: String,
    stream: Option<OutputStream>,
    state: Arc<Mutex<StreamState>>,
    stderr: Option<JoinHandle<String>>,
    pump: Option<JoinHandle<()>>,
    inspector: Option<JoinHandle<std::result::Result<T, String>>>,
}

/// What a complete, good stream was.
#[derive(Debug, Clone)]
pub struct StreamOutcome<T> {
    /// Bytes in the stream.
    pub bytes: u64,
    /// xxh3-128 of the whole stream (hex), checked again on restore.
    pub stream_hash: String,
    /// The inspector's result.
    pub inspected: Option<T>,
    /// What the program wrote on stderr (its progress and notices).
    pub stderr: String,
}

impl<T: Send + 'static> ChildStream<T> {
    /// Spawns `cmd` (program name `program`, described as `what` in errors) and, with
    /// `inspect`, a thread that parses a copy of its output.
    ///
    /// # Errors
    ///
    /// When the program cannot be started.
    pub fn spawn(
        cmd: Command,
        program: &str,
        what: String,
        inspect: Option<fn(ChannelReader) -> std::result::Result<T, String>>,
    ) -> Result<Self> {
        let given = std::path::PathBuf::from(cmd.get_program());
        let mut cmd =
            super::cluster::dies_with_lifeboat(cmd).map_err(|e| missing_program(&given, e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            super::cluster::spawn_client(&mut cmd).map_err(|e| missing_program(&given, e))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        enlarge_pipe(&stdout);
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            // as bytes: the server's message quotes names in the database's encoding
            // (LATIN1), and text that is not UTF-8 would have lost the whole message
            let mut b = Vec::new();
            let _ = (&mut stderr_pipe).take(64 * 1024).read_to_end(&mut b);
            // drain the rest so the child never blocks on a full stderr pipe
            let _ = std::io::copy(&mut stderr_pipe, &mut std::io::sink());
            // two names that differ only in such bytes stay two (see `text`)
            super::text::decode(&b)
        });
        let state = Arc::new(Mutex::new(StreamState::default()));
        let (inspect_tx, inspector) = match inspect {
            None => (None, None),
            Some(f) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(INSPECT_BLOCKS);
                let handle = std::thread::spawn(move || {
                    f(ChannelReader {
                        rx,
                        buf: Block::default(),
                        pos: 0,
                    })
                });
                (Some(tx), Some(handle))
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BLOCKS);
        let pump_state = Arc::clone(&state);
        let pump = std::thread::spawn(move || pump(stdout, tx, inspect_tx, pump_state));
        Ok(Self {
            child,
            program: program.to_string(),
            what,
            stream: Some(OutputStream {
                rx,
                block: Block::default(),
                pos: 0,
                state: Arc::clone(&state),
                bytes: 0,
                published: false,
            }),
            state,
            stderr: Some(stderr),
            pump: Some(pump),
            inspector,
        })
    }

    /// The program's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the stream for the archiver (once).
    pub fn take_stream(&mut self) -> Option<OutputStream> {
        self.stream.take()
    }

    /// Waits for the program and decides whether its output is complete and good.
    ///
    /// # Errors
    ///
    /// A classified error when the program failed or was killed, or
    /// [`crate::ErrorKind::Integrity`] when the stream is incomplete or malformed.
    pub fn finish(mut self) -> Result<StreamOutcome<T>> {
        drop(self.stream.take());
        let (eof, bytes, hash) = {
            let mut st = self.state.lock().expect("stream state poisoned");
            let h = st.hasher.take().map(|h| h.digest128()).unwrap_or(0);
            (st.eof, st.bytes, h)
        };
        // the archiver stopped before the end: make sure the program does not linger
        let stopped_here = !eof && matches!(self.child.try_wait(), Ok(None));
        if stopped_here {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        super::cluster::client_done(self.child.id());
        let status = status.map_err(|e| Error::io(format!("waiting for {}", self.program), e))?;
        if let Some(pump) = self.pump.take() {
            // ends at the end of the stream, or once the archiver (the queue) or the program
            // (the pipe) is gone
            let _ = pump.join();
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let inspected = self.inspector.take().map(|h| h.join());
        let what = &self.what;
        let stopped_reading = || {
            Error::integrity(format!(
                "{what}: the repository stopped reading the stream after {bytes} bytes"
            ))
            .hint("no snapshot was kept; the repository's own error says why")
        };
        if stopped_here {
            // killed above because the archiver gave up: its status says nothing of the cause
            return Err(stopped_reading());
        }
        if !status.success() {
            let mut e = classify(&stderr, what);
            if stderr.trim().is_empty() {
                e = Error::postgres(format!("{what} failed ({status}) without a message"))
                    .hint("the process was killed or crashed; run the backup again");
            }
            return Err(e);
        }
        if !eof {
            return Err(stopped_reading());
        }
        if bytes == 0 {
            return Err(Error::integrity(format!("{what} produced no output")));
        }
        let inspected = match inspected {
            None => None,
            Some(Ok(Ok(t))) => Some(t),
            Some(Ok(Err(e))) => {
                return Err(
                    Error::integrity(format!("{what}: the output is not complete: {e}"))
                        .hint("no snapshot was kept; run the backup again"),
                )
            }
            Some(Err(_)) => {
                return Err(Error::internal(format!(
                    "{what}: the stream inspector panicked"
                )))
            }
        };
        Ok(StreamOutcome {
            bytes,
            stream_hash: format!("{hash:032x}"),
            inspected,
            stderr,
        })
    }
}

impl<T> Drop for ChildStream<T> {
    fn drop(&mut self) {
        // an abandoned program (error, panic) must not keep running
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        super::cluster::client_done(self.child.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A child writing `script`'s output, with an inspector that counts what it sees.
    fn spawn(script: &str) -> ChildStream<u64> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let count: fn(ChannelReader) -> std::result::Result<u64, String> =
            |mut r| std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| e.to_string());
        ChildStream::spawn(cmd, "sh", "the test program".into(), Some(count)).unwrap()
    }

    /// Reads like the chunker does: small, odd-sized requests.
    fn read_all(s: &mut OutputStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 3001];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads the first 4096 bytes of `child`'s output, then stops reading, as an archiver
    /// that gave up does.
    fn read_a_little_then_stop(child: &mut ChildStream<u64>) {
        let mut stream = child.take_stream().unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(stream.read(&mut buf).unwrap(), 4096);
    }

    #[test]
    fn every_byte_reaches_the_archiver_and_the_inspector_once() {
        // ~14 MB: many 1 MiB blocks and a short last one
        let mut child = spawn("seq 1 2000000");
        let mut stream = child.take_stream().unwrap();
        let data = read_all(&mut stream);
        drop(stream);
        let outcome = child.finish().unwrap();
        let expected = std::process::Command::new("seq")
            .args(["1", "2000000"])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(data, expected);
        assert_eq!(outcome.bytes, expected.len() as u64);
        assert_eq!(outcome.inspected, Some(expected.len() as u64));
        let hash = xxhash_rust::xxh3::xxh3_128(&expected);
        assert_eq!(outcome.stream_hash, format!("{hash:032x}"));
    }

    #[test]
    fn an_archiver_that_stops_early_stops_the_program_and_keeps_nothing() {
        let mut child = spawn("while :; do seq 1 100000; done");
        read_a_little_then_stop(&mut child);
        let err = child.finish().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
        assert!(err.to_string().contains("after 4096 bytes"), "{err}");
    }

    #[test]
    fn a_program_that_failed_on_its_own_keeps_its_message_when_the_archiver_stopped_too() {
        // under 1 MiB: the pump hands on its first block only at the end of the output
        let mut child = spawn("seq 1 100000; echo 'pg_dump: error: lost the server' >&2; exit 1");
        read_a_little_then_stop(&mut child);
        for _ in 0..500 {
            if matches!(child.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let err = child.finish().unwrap_err();
        assert!(err.to_string().contains("lost the server"), "{err}");
    }

    #[test]
    fn a_program_that_fails_after_its_output_is_an_error() {
        let mut child = spawn("seq 1 300000; echo 'pg_dump: error: query failed' >&2; exit 1");
        let mut stream = child.take_stream().unwrap();
        let data = read_all(&mut stream);
        assert!(data.len() > 1 << 20);
        drop(stream);
        let err = child.finish().unwrap_err();
        assert!(err.to_string().contains("query failed"), "{err}");
    }
}
