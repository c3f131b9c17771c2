//! Reads a table through a FIFO the server writes itself (`COPY ... TO '/path/fifo'`).
//!
//! Comparing a restored database with its backup-time truth reads every table once. Through
//! psql, the client protocol and psql's own copying cost about a third of that work (the
//! server's text output is the rest); when the server runs on this host and the role may
//! write server files (a drill's throw-away cluster, a restore as superuser over the local
//! socket), the server writes COPY's text straight into a FIFO lifeboat reads. Anything
//! that rules this out (a remote or containerised server, a non-superuser role, another OS
//! user) falls back to psql.

use std::{
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
};

use super::{cluster::ScratchDir, compare::literal, conn::PgConn, stream::GatheringPipe};
use crate::error::{Error, Result};

/// Settings pg_dump uses, so that every value is written as in the dump.
/// The timeouts are off as in pg_dump's own session: a database's `statement_timeout`
/// (applied to a restored copy) must not cut a table's read short. The search path is
/// pg_dump's too (pg_catalog alone), which makes `regclass`, `regtype` and `regproc`
/// values print schema-qualified as in the dump.
const DUMP_OPTIONS: &str =
    "-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c row_security=off \
     -c search_path=pg_catalog -c statement_timeout=0 -c lock_timeout=0 \
     -c idle_in_transaction_session_timeout=0";

/// psql running one `COPY` statement on `db` with pg_dump's session settings and the dump's
/// client encoding, so that the text of every value is the text the dump holds.
pub(crate) fn copy_command(
    conn: &PgConn,
    db: &str,
    encoding: Option<&str>,
    sql: &str,
) -> std::process::Command {
    let mut cmd = copy_session(conn, db, encoding);
    cmd.arg("-c")
        .arg(super::text::arg(sql))
        .stdin(Stdio::null());
    cmd
}

/// As [`copy_command`], reading its statements from stdin (a script of several `COPY`s).
pub(crate) fn copy_script_command(
    conn: &PgConn,
    db: &str,
    encoding: Option<&str>,
) -> std::process::Command {
    let mut cmd = copy_session(conn, db, encoding);
    cmd.args(["-f", "-"]).stdin(Stdio::piped());
    cmd
}

fn copy_session(conn: &PgConn, db: &str, encoding: Option<&str>) -> std::process::Command {
    let mut cmd = conn.with_options(DUMP_OPTIONS).command("psql", db);
    cmd.args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
        .env_remove("PGTZ")
        .stderr(Stdio::piped());
    if let Some(enc) = encoding {
        cmd.env("PGCLIENTENCODING", enc);
    }
    cmd
}

/// FIFOs in a private directory, owned by the server's OS user.
pub(crate) struct ServerCopy {
    dir: ScratchDir,
    /// Given the FIFOs when lifeboat runs as root and the server as someone else.
    owner: Option<nix::unistd::Uid>,
    next: AtomicUsize,
}

/// How one read through a FIFO ended.
pub(crate) enum Outcome {
    /// Every byte was read.
    Done,
    /// The server could not open the FIFO (another host or mount namespace): use psql.
    Unreachable,
}

impl ServerCopy {
    /// Whether `conn` reaches a server on this host that may write into a FIFO lifeboat can
    /// read; `None` when not (then psql reads the tables).
    pub(crate) fn probe(conn: &PgConn, db: &str) -> Option<Self> {
        if std::env::var_os("LIFEBOAT_COPY_VIA_PSQL").is_some() {
            return None;
        }
        // only a Unix socket proves the server shares this host's file system
        let host = conn
            .param("host")
            .map(str::to_string)
            .or_else(|| std::env::var("PGHOST").ok());
        let tcp = conn.param("hostaddr").is_some() || std::env::var_os("PGHOSTADDR").is_some();
        match host {
            _ if tcp => return None,
            Some(h) if h.starts_with('/') && !h.contains(',') => {}
            None => {}
            Some(_) => return None,
        }
        let out = conn
            .query(
                db,
                // data_directory only for those who may read it: a refusal logs an ERROR
                "select pg_has_role('pg_write_server_files', 'USAGE'), \
                 case when pg_has_role('pg_read_all_settings', 'USAGE') \
                 then current_setting('data_directory') end",
            )
            .ok()?;
        let (may_write, data_dir) = out.split_once('|')?;
        if may_write != "t" {
            return None;
        }
        let server_uid = nix::unistd::Uid::from_raw(std::fs::metadata(data_dir).ok()?.uid());
        let me = nix::unistd::geteuid();
        let owner = if me == server_uid {
            None
        } else if me.is_root() {
            Some(server_uid)
        } else {
            return None;
        };
        let dir = ScratchDir::new("lifeboat-copy-", None).ok()?;
        // the server must reach the FIFO; only its owner may open it
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).ok()?;
        Some(Self {
            dir,
            owner,
            next: AtomicUsize::new(0),
        })
    }

    fn fifo(&self) -> Result<PathBuf> {
        let path = self
            .dir
            .path()
            .join(format!("t{}", self.next.fetch_add(1, Ordering::Relaxed)));
        nix::unistd::mkfifo(
            &path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .map_err(|e| Error::io(format!("creating FIFO {}", path.display()), e.into()))?;
        if let Some(uid) = self.owner {
            nix::unistd::chown(&path, Some(uid), None).map_err(|e| {
                Error::io(format!("handing FIFO {} over", path.display()), e.into())
            })?;
        }
        Ok(path)
    }

    /// Runs `COPY <head> TO '<fifo>'` on `db` and feeds what the server writes to `sink`.
    ///
    /// # Errors
    ///
    /// When psql or the server fails after the FIFO was opened, or the FIFO cannot be made.
    pub(crate) fn copy_out(
        &self,
        conn: &PgConn,
        db: &str,
        encoding: Option<&str>,
        head: &str,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Outcome> {
        let fifo = self.fifo()?;
        let result = self.run(conn, db, encoding, head, &fifo, sink);
        let _ = std::fs::remove_file(&fifo);
        result
    }

    fn run(
        &self,
        conn: &PgConn,
        db: &str,
        encoding: Option<&str>,
        head: &str,
        fifo: &Path,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Outcome> {
        let what = |e: std::io::Error| Error::io(format!("opening FIFO {}", fifo.display()), e);
        // Both ends are open before the server is asked to write, so its open() never waits
        // for a reader (a backend blocked there ignores cancel and terminate). Our own write
        // end keeps the reader from seeing the end of the stream until psql has exited, by
        // which time the server has closed its end.
        let read_end = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
            .map_err(what)?;
        let held = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
            .map_err(what)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(
            nix::fcntl::fcntl(&read_end, nix::fcntl::FcntlArg::F_GETFL)
                .map_err(|e| what(e.into()))?,
        );
        nix::fcntl::fcntl(
            &read_end,
            nix::fcntl::FcntlArg::F_SETFL(flags - nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| what(e.into()))?;

        let sql = format!("{head} TO {}", literal(&fifo.to_string_lossy()));
        let child = copy_command(conn, db, encoding, &sql)
            // error codes as well as messages: the fallback is decided by code
            .args(["-v", "VERBOSITY=verbose"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| super::conn::missing_program(&conn.bin().program("psql"), e))?;
        std::thread::scope(|s| {
            // (drain cannot fail before data arrives: a read end closed before the server's
            // open() would leave that open() waiting)
            let reader = s.spawn(|| drain(read_end, sink));
            let out = child.wait_with_output();
            drop(held);
            let read = reader.join().expect("FIFO reader panicked");
            let out = out.map_err(|e| Error::io("waiting for psql", e))?;
            let bytes = read.map_err(|e| Error::io("reading COPY output from a FIFO", e))?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                // 58P01 undefined_file (the server does not see the path: another host or
                // mount namespace), 42501 insufficient_privilege (no right to write files)
                // the severity word before the code is translated (`FEHLER:  58P01: …`)
                if bytes == 0
                    && stderr
                        .lines()
                        .any(|l| l.contains(":  58P01: ") || l.contains(":  42501: "))
                {
                    return Ok(Outcome::Unreachable);
                }
                return Err(conn.classify(&stderr, &format!("reading {db:?}")));
            }
            Ok(Outcome::Done)
        })
    }
}

/// Reads a pipe to its end through a 1 MiB pipe buffer and a [`GatheringPipe`], handing
/// what arrives to `sink`; returns the bytes read. Gathering took a tenth off the CPU time of
/// a comparison through psql (decision 0006).
pub(crate) fn drain<R: Read + std::os::fd::AsFd>(
    pipe: R,
    sink: &mut (dyn FnMut(&[u8]) + Send),
) -> std::io::Result<u64> {
    let _ = nix::fcntl::fcntl(pipe.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    let mut pipe = GatheringPipe::new(pipe);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        sink(&buf[..n]);
    }
}
