//! Throw-away PostgreSQL clusters: their own initdb in a temporary directory, a free port,
//! a private socket directory, stopped and removed on drop.
//!
//! initdb and postgres refuse to run as root, so when lifeboat runs as root the cluster is
//! owned and run by an unprivileged user (`postgres` by default). Every running cluster is
//! registered so that an interrupted program (Ctrl-C) can stop them all: see [`stop_all`].

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
};

use super::conn::{missing_program, PgBin, PgConn};
use crate::error::{Error, Result};

/// Data directories of clusters started by this process and not yet stopped.
static RUNNING: Mutex<Vec<(PathBuf, PathBuf, Option<String>)>> = Mutex::new(Vec::new());

/// Databases a drill created on a scratch server, dropped when the process is interrupted.
static DROPS: Mutex<Vec<(super::conn::PgConn, String)>> = Mutex::new(Vec::new());

/// Remembers database `db` on the server `conn` reaches, for [`stop_all`] to drop.
pub(crate) fn register_drop(conn: super::conn::PgConn, db: String) {
    if let Ok(mut l) = DROPS.lock() {
        l.push((conn, db));
    }
}

/// Forgets database `db` (the drill dropped it itself).
pub(crate) fn unregister_drop(db: &str) {
    if let Ok(mut l) = DROPS.lock() {
        l.retain(|(_, d)| d != db);
    }
}

/// Process groups of hook commands, killed when the process is interrupted.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Remembers process group `pgid` (a hook's) for [`stop_all`].
pub(crate) fn register_group(pgid: i32) {
    if let Ok(mut l) = GROUPS.lock() {
        l.push(pgid);
    }
}

/// Forgets process group `pgid` without killing it: a restore's post-hook that started
/// the application in the background leaves it running.
pub(crate) fn forget_group(pgid: i32) {
    if let Ok(mut l) = GROUPS.lock() {
        l.retain(|g| *g != pgid);
    }
}

/// Kills process group `pgid` and forgets it: what a hook left running (an application it
/// started in the background) must not outlive the drill.
pub(crate) fn kill_group(pgid: i32) {
    if let Ok(mut l) = GROUPS.lock() {
        l.retain(|g| *g != pgid);
    }
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Process groups of client programs whose work must end with lifeboat's (pg_restore over
/// a database): [`stop_all`] kills them first.
static CLIENTS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Set by [`stop_all`]: no client starts after the clean-up.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `setpriv` takes `--pdeathsig` (util-linux 2.33 and later), tried once.
fn setpriv_has_pdeathsig(setpriv: &Path) -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new(setpriv)
            .args(["--pdeathsig", "KILL", "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Starts `cmd` as a client [`stop_all`] kills (in a process group of its own), for a
/// caller that reads its output as it comes (pg_dump, pg_basebackup): an interrupt would
/// otherwise leave it running, holding its table locks, until its next write finds no
/// reader. [`client_done`] once it has ended.
///
/// # Errors
///
/// When it cannot be started, or the interrupt's clean-up has already run.
pub(crate) fn spawn_client(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // held across the spawn: an interrupt in between still finds the client to kill
    let mut clients = CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
        // the interrupt's clean-up has run: nothing may start after it
        return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
    }
    let child = cmd.spawn()?;
    clients.push(child.id() as i32);
    Ok(child)
}

/// A client [`spawn_client`] started has ended (its process group is no one's to kill).
pub(crate) fn client_done(pid: u32) {
    if let Ok(mut l) = CLIENTS.lock() {
        l.retain(|g| *g != pid as i32);
    }
}

/// `cmd` run through util-linux's `setpriv --pdeathsig KILL` where it takes that option:
/// the kernel kills the program when the lifeboat thread that started it dies (a
/// `kill -9`, the OOM killer), so that a pg_dump does not go on holding its table locks
/// until its next write finds no reader. Program, arguments, environment and directory are
/// carried over; set its stdio on the result. `setpriv` execs the program, so its pid and
/// exit status are the program's own.
///
/// # Errors
///
/// [`std::io::ErrorKind::NotFound`] for a program given by a path that does not exist
/// (through setpriv it would fail as the program's error, not as a missing program).
pub(crate) fn dies_with_lifeboat(cmd: Command) -> std::io::Result<Command> {
    let program = Path::new(cmd.get_program());
    if program.is_absolute() && !program.exists() {
        return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    }
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv_has_pdeathsig(setpriv) {
        return Ok(cmd);
    }
    // the death signal is set in the child and kept through the exec of the program
    let mut wrapped = Command::new(setpriv);
    wrapped
        .args(["--pdeathsig", "KILL", "--"])
        .arg(cmd.get_program());
    wrapped.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        wrapped.current_dir(d);
    }
    Ok(wrapped)
}

/// Runs `cmd` to its end as a client whose work must not outlive lifeboat: in a process
/// group of its own that [`stop_all`] kills before anything else (an interrupted overwrite
/// must not commit after lifeboat said it was interrupted), and, where util-linux's
/// `setpriv` is at hand, killed by the kernel if lifeboat itself is killed.
pub(crate) fn run_client(cmd: Command) -> std::io::Result<std::process::Output> {
    run_client_with(cmd, false, None)
}

/// As [`run_client`], also capturing stdout when `stdout`, and killing the client's process
/// group after `timeout` (the error is then [`std::io::ErrorKind::TimedOut`]).
pub(crate) fn run_client_with(
    cmd: Command,
    stdout: bool,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<std::process::Output> {
    let mut cmd = dies_with_lifeboat(cmd)?;
    cmd.stdin(Stdio::null())
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    let child = spawn_client(&mut cmd)?;
    let pid = child.id();
    let out = match timeout {
        None => child.wait_with_output(),
        Some(limit) => wait_within(child, pid as i32, limit),
    };
    client_done(pid);
    out
}

/// Waits for `child` (leader of process group `pgid`) at most `limit`, reading its pipes
/// meanwhile; past it the group is killed.
fn wait_within(
    mut child: std::process::Child,
    pgid: i32,
    limit: std::time::Duration,
) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // a background child the command left may hold its pipes open: it goes with the
    // group rather than keep this waiting past the deadline
    while !(out.is_finished() && err.is_finished()) {
        if std::time::Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Temporary directories to remove when the process is interrupted.
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Directories being filled (a physical restore's `--to-dir`), and whether this run created
/// them: an interrupt removes or empties them, as a failure does, so that a retry is not
/// refused "not empty" by a half-written data directory.
static FILLING: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());

/// What an interrupt must tell the operator besides what it cleaned up (an overwrite
/// that ran as one transaction left the database as it was), while the guard lives.
static SAY_ON_STOP: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());

/// Has [`stop_all`] say `line` if it runs before the guard is dropped.
#[must_use]
pub fn say_on_stop(line: String) -> SayOnStop {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut l) = SAY_ON_STOP.lock() {
        l.push((id, line));
    }
    SayOnStop(id)
}

/// See [`say_on_stop`].
pub struct SayOnStop(u64);

impl Drop for SayOnStop {
    fn drop(&mut self) {
        if let Ok(mut l) = SAY_ON_STOP.lock() {
            l.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Registers `dir` as being filled until the guard is dropped: an interrupt removes it (when
/// `created`) or empties it, as a failure does.
#[must_use]
pub fn filling(dir: &Path, created: bool) -> Filling {
    if let Ok(mut l) = FILLING.lock() {
        l.push((dir.to_path_buf(), created));
    }
    Filling(dir.to_path_buf())
}

/// See [`filling`].
pub struct Filling(PathBuf);

impl Drop for Filling {
    fn drop(&mut self) {
        if let Ok(mut l) = FILLING.lock() {
            l.retain(|(d, _)| d != &self.0);
        }
    }
}

/// Removes `dir` when this run `created` it, else what is in it: never a half-written data
/// directory that looks usable.
pub fn clear_dir(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
    } else if let Ok(d) = std::fs::read_dir(dir) {
        for entry in d.flatten() {
            let p = entry.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// A temporary directory, removed on drop and by [`stop_all`] when the process is
/// interrupted (an exiting process runs no destructors).
pub struct ScratchDir {
    // declared first: the mark's lock is released before the directory goes
    _mark: Option<nix::fcntl::Flock<std::fs::File>>,
    // removed by [`Drop`] with its mark last, never by TempDir's own removal, which takes
    // the mark first: racing an interrupt's clean-up, it left data files and no mark
    dir: PathBuf,
}

impl ScratchDir {
    /// A new directory under `base`, else `LIFEBOAT_SCRATCH_DIR`, else the system temp
    /// directory.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created.
    pub fn new(prefix: &str, base: Option<&Path>) -> Result<Self> {
        let base = base.map_or_else(scratch_base, Path::to_path_buf);
        // once per process and place: what a killed run left there goes first
        if let Ok(mut swept) = SWEPT.lock() {
            if !swept.contains(&base) {
                swept.push(base.clone());
                let said = super::leftovers::sweep(&base);
                if let Ok(mut n) = NOTES.lock() {
                    n.extend(said);
                }
            }
        }
        // private: a throw-away cluster trusts whoever reaches its socket here, and staged
        // dumps and globals (role password hashes) are production's data
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(|e| {
                Error::io(
                    format!("creating a scratch directory in {}", base.display()),
                    e,
                )
                .hint("the place is --scratch-dir, else LIFEBOAT_SCRATCH_DIR, else TMPDIR, else /tmp: make it an existing directory this user may write, on a disk with room for the restored database")
            })?;
        let dir = dir.keep();
        if let Ok(mut l) = TEMP_DIRS.lock() {
            l.push(dir.clone());
        }
        Ok(Self {
            _mark: super::leftovers::mark(&dir),
            dir,
        })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Ok(mut l) = TEMP_DIRS.lock() {
            l.retain(|p| p != &self.dir);
        }
        super::leftovers::remove(&self.dir);
    }
}

/// Scratch places already swept for a killed run's leftovers by this process.
static SWEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// What the sweep removed, for the operator (see [`take_notes`]).
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Adds to what [`take_notes`] tells the operator.
pub(crate) fn note(line: String) {
    if let Ok(mut n) = NOTES.lock() {
        n.push(line);
    }
}

/// What this process cleaned up that an earlier, killed run left behind (scratch
/// directories, a throw-away server still running), once.
pub fn take_notes() -> Vec<String> {
    NOTES
        .lock()
        .map(|mut n| std::mem::take(&mut *n))
        .unwrap_or_default()
}

/// Where throw-away clusters and staged dumps go: `LIFEBOAT_SCRATCH_DIR`, else the
/// system temp directory.
#[must_use]
pub fn scratch_base() -> PathBuf {
    std::env::var_os("LIFEBOAT_SCRATCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// Registers a server this process is about to start in `data`, so that [`stop_all`]
/// stops it if the process is interrupted.
pub(crate) fn register(pg_ctl: PathBuf, data: PathBuf, user: Option<String>) {
    if let Ok(mut l) = RUNNING.lock() {
        l.push((pg_ctl, data, user));
    }
}

/// Forgets the newest registration of the server in `data` without stopping it: a
/// restored server that runs on once its recovery is over.
pub(crate) fn forget_registered(data: &Path) {
    if let Ok(mut l) = RUNNING.lock() {
        if let Some(i) = l.iter().rposition(|(_, d, _)| d == data) {
            l.remove(i);
        }
    }
}

/// Has `dir` (a private directory of this process's, such as a WAL server's socket
/// directory) removed if the process is interrupted; [`forget_temp_dir`] once it is gone.
pub(crate) fn remove_on_stop(dir: &Path) {
    if let Ok(mut l) = TEMP_DIRS.lock() {
        l.push(dir.to_path_buf());
    }
}

/// See [`remove_on_stop`].
pub(crate) fn forget_temp_dir(dir: &Path) {
    if let Ok(mut l) = TEMP_DIRS.lock() {
        l.retain(|p| p != dir);
    }
}

/// Stops (immediately) a server registered with [`register`] and forgets it.
pub(crate) fn stop_registered(data: &Path) {
    let entry = RUNNING.lock().ok().and_then(|mut l| {
        let i = l.iter().position(|(_, d, _)| d == data)?;
        Some(l.remove(i))
    });
    if let Some((pg_ctl, data, user)) = entry {
        stop_server(&pg_ctl, &data, user.as_deref(), "immediate");
    }
}

/// Stops the server in `data` at once (`pg_ctl stop -m immediate`), as `user`: one that
/// started after an interrupt's clean-up had already run.
pub(crate) fn stop_now(pg_ctl: &Path, data: &Path, user: Option<&str>) {
    stop_server(pg_ctl, data, user, "immediate");
}

/// `pg_ctl stop -m MODE -w` on `data`, as `user`; errors are ignored (it may be stopped).
fn stop_server(pg_ctl: &Path, data: &Path, user: Option<&str>, mode: &str) {
    let _ = pg_ctl_cmd(pg_ctl, user)
        .args(["stop", "-m", mode, "-w", "-D"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether [`stop_all`] has run: an operation under way was interrupted, and no client
/// program starts until [`resume_after_stop`].
#[must_use]
pub fn interrupted() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Lets client programs start again after [`stop_all`], for a program that cancelled one
/// operation and goes on with others (the CLI exits instead). Call it once the interrupted
/// operation has returned.
pub fn resume_after_stop() {
    let _cleaning = CLEANING.lock();
    STOPPING.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// Stops every cluster this process started, drops the databases it created and had not
/// finished, and removes its scratch directories (for signal handlers). Returns what the
/// operator must be told: each database dropped, or left because the drop failed.
pub fn stop_all() -> Vec<String> {
    let mut said = Vec::new();
    // held to the end: the interrupted operation may fail on the stopped server and the
    // process head for exit while this still removes directories (see [`wait_for_stop_all`])
    let _cleaning = CLEANING.lock();
    // what to say is taken now: the interrupted operation, failing on what is stopped
    // below, drops its guards meanwhile
    let say: Vec<String> = SAY_ON_STOP
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    // clients first: a pg_restore over a database must not reach its COMMIT while the
    // rest is cleaned up (killed, its transaction rolls back)
    let clients = CLIENTS
        .lock()
        .map(|mut l| {
            STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
            std::mem::take(&mut *l)
        })
        .unwrap_or_default();
    for g in clients {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(g),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let drops = DROPS
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    for (conn, db) in drops {
        // tried twice: under a storm of Ctrl-C the first client may die of a signal that
        // reached it before it was out of the terminal's reach (no message, nothing done)
        let dropped = drop_copy(&conn, &db, true).or_else(|_| drop_copy(&conn, &db, true));
        // a drop that failed may still have happened (its answer lost)
        let gone = dropped.is_ok()
            || conn
                .query(
                    conn.maintenance_db(),
                    &format!(
                        "select count(*) from pg_database where datname = {}",
                        super::compare::literal(&db)
                    ),
                )
                .is_ok_and(|n| n.trim() == "0");
        said.push(match dropped {
            Err(e) if !gone => format!(
                "database {db:?}, which this run created, is left unfinished (dropping it failed: {}); drop it before retrying",
                crate::error::headline(&e.to_string())
            ),
            _ => format!("dropped database {db:?}, which this run created and had not finished"),
        });
    }
    let list = RUNNING
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    for (pg_ctl, data, user) in list {
        let pid_file = data.join("postmaster.pid");
        if !pid_file.exists() {
            // one being started right now (`pg_ctl start` under way, its postmaster not
            // yet written down) would start after this and run on unattended: wait a
            // moment for it to appear
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while !pid_file.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        stop_server(&pg_ctl, &data, user.as_deref(), "immediate");
    }
    said.extend(say);
    // the unpack stops at its next file once it sees the interrupt: wait for it (a while)
    // so that nothing is written into the directory after it was cleared
    let filling = FILLING.lock().map(|l| l.clone()).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !filling.is_empty()
        && std::time::Instant::now() < deadline
        && FILLING.lock().is_ok_and(|l| !l.is_empty())
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (dir, created) in filling {
        clear_dir(&dir, created);
        said.push(format!(
            "{} {}, which this run had begun to fill",
            if created { "removed" } else { "emptied" },
            dir.display()
        ));
    }
    let dirs = TEMP_DIRS
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    for d in dirs {
        super::leftovers::remove(&d);
    }
    // hooks last: a killed hook lets the interrupted operation go on to its next step
    // (which would write into the directories just removed) until the process exits
    let groups = GROUPS
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    for g in groups {
        kill_group(g);
    }
    said
}

/// Held by [`stop_all`] while it cleans up.
static CLEANING: Mutex<()> = Mutex::new(());

/// Waits until a [`stop_all`] running on another thread (the interrupt handler's) is done;
/// returns at once when none is. Call before exiting, so that an exit does not cut the
/// clean-up short and leave a data directory behind.
pub fn wait_for_stop_all() {
    drop(CLEANING.lock());
}

/// The words of a command line as `sh` splits simple ones: whitespace outside quotes,
/// quotes removed, a backslash escaping the next character outside single quotes.
#[must_use]
pub fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `s` as one word for `/bin/sh`: as it is when only safe characters, else between single
/// quotes.
#[must_use]
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:@+,%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `dir` as one item of `unix_socket_directories` (or `-k`), a list PostgreSQL splits at
/// commas: between double quotes, which it reads, `"` doubled.
#[must_use]
pub fn socket_dir_item(dir: &Path) -> String {
    format!("\"{}\"", dir.display().to_string().replace('"', "\"\""))
}

/// Refuses a socket directory with a comma: libpq reads `host` as a comma-separated list
/// and has no way to escape one, so no client could connect there.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] naming the directory.
pub fn check_socket_dir(dir: &Path, what: &str) -> Result<()> {
    let text = dir.display().to_string();
    if text.contains(',') {
        return Err(Error::config(format!(
            "{what} {text:?} has a comma in its path: PostgreSQL's clients read a socket directory as a comma-separated list of hosts, so none could connect there"
        ))
        .hint("choose a directory whose path has no comma"));
    }
    Ok(())
}

/// Refuses a directory `pg_ctl start` cannot be given safely: it runs the server through
/// `/bin/sh -c` with the data directory and log file between double quotes, where `$`, a
/// backquote, `"` and `\` keep their meaning (a path could run commands, or name another
/// directory). `what` names the directory in the error.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] naming the character.
pub fn check_pg_ctl_path(dir: &Path, what: &str) -> Result<()> {
    let text = dir.display().to_string();
    match text.chars().find(|c| matches!(c, '$' | '`' | '"' | '\\' | '\n')) {
        None => Ok(()),
        Some(c) => Err(Error::config(format!(
            "{what} {text:?} has {c:?} in its path, which pg_ctl hands to a shell that would expand it (PostgreSQL cannot be started there safely)"
        ))
        .hint("choose a directory whose path has no $, `, \", \\ or line break")),
    }
}

/// `program`, run as OS `user` through `runuser` when one is given, without lifeboat's
/// secrets: a server started this way would hand them to every process it runs, where a
/// superuser reads them with `COPY ... FROM PROGRAM 'env'` (a drill hook, say).
pub(crate) fn pg_ctl_cmd(program: &Path, user: Option<&str>) -> Command {
    let mut c = pg_ctl_cmd_with_secrets(program, user);
    crate::secret::remove_secret_env(&mut c);
    c
}

/// [`pg_ctl_cmd`] for a server lifeboat starts (`initdb`, `pg_ctl start`): also without
/// the caller's `PG*` variables. `PGPASSWORD` set for a one-off `--target-dsn` is
/// production's password, and every process of a drill's server, a hook's `COPY ... FROM
/// PROGRAM 'env'` included, would see it; the server needs none of them (its directory,
/// port and socket are given on its command line).
pub(crate) fn server_cmd(program: &Path, user: Option<&str>) -> Command {
    without_pg_env(pg_ctl_cmd(program, user))
}

/// `c` without the `PG*` variables of lifeboat's environment.
pub(crate) fn without_pg_env(mut c: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            c.env_remove(&key);
        }
    }
    c
}

/// As [`pg_ctl_cmd`], keeping lifeboat's secrets in the environment: only for a restored
/// server whose `restore_command` (`lifeboat wal-fetch`) may have no other way to open the
/// repository than the password in this process's environment.
pub(crate) fn pg_ctl_cmd_with_secrets(program: &Path, user: Option<&str>) -> Command {
    from_live_dir(match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    })
}

/// `c`, run from `/` when lifeboat's working directory was removed (a deploy replaced
/// the release directory under a service): PostgreSQL's programs refuse to run there
/// ("could not identify current directory"). lifeboat itself stays put, so a relative
/// path it was given still fails rather than meaning one under `/`.
pub(crate) fn from_live_dir(mut c: Command) -> Command {
    if std::env::current_dir().is_err() {
        c.current_dir("/");
    }
    c
}

/// A running throw-away cluster.
pub struct Cluster {
    dir: ScratchDir,
    port: u16,
    bin: PgBin,
    user: Option<String>,
    running: bool,
    /// The caller's configuration sets `full_page_writes` (a primary whose standby takes
    /// base backups needs it on): it is then not switched off for speed.
    own_full_page_writes: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

/// The OS user a cluster runs as: `None` = the current user; when root, `LIFEBOAT_PG_USER`
/// or `postgres`.
pub(crate) fn run_as() -> Option<String> {
    nix::unistd::geteuid()
        .is_root()
        .then(|| std::env::var("LIFEBOAT_PG_USER").unwrap_or_else(|_| "postgres".into()))
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free port", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("finding a free port", e))?
        .port())
}

/// A setting for [`Cluster::start_with`]'s `conf`: no TCP listener, the private socket
/// only. For a copy of production's data with production's roles (their password hashes
/// come with the globals), which another user of the host must not log in to.
pub const NO_TCP: &str = "listen_addresses = ''";

impl Cluster {
    /// initdb + start. The superuser is `postgres` (trust on the socket, scram over TCP on
    /// 127.0.0.1 unless `conf` holds [`NO_TCP`]).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Unavailable`] with the server log when initdb or start fails.
    pub fn start(bin: &PgBin) -> Result<Self> {
        Self::start_with(bin, "")
    }

    /// As [`Cluster::start`], with `conf` appended to postgresql.conf before the first start
    /// (e.g. `archive_mode = on`).
    ///
    /// # Errors
    ///
    /// As [`Cluster::start`].
    pub fn start_with(bin: &PgBin, conf: &str) -> Result<Self> {
        Self::start_in(bin, conf, None)
    }

    /// As [`Cluster::start_with`], in a new directory under `base` (else
    /// `LIFEBOAT_SCRATCH_DIR`, else the system temp directory).
    ///
    /// # Errors
    ///
    /// As [`Cluster::start`].
    pub fn start_in(bin: &PgBin, conf: &str, base: Option<&Path>) -> Result<Self> {
        Self::start_encoded(bin, conf, base, "UTF8")
    }

    /// As [`Cluster::start_in`], the cluster initialised in `encoding` (`SQL_ASCII` for a
    /// drill of a cluster whose role names are bytes that are not UTF-8, as production's).
    ///
    /// # Errors
    ///
    /// As [`Cluster::start`].
    pub fn start_encoded(
        bin: &PgBin,
        conf: &str,
        base: Option<&Path>,
        encoding: &str,
    ) -> Result<Self> {
        let user = run_as();
        let dir = ScratchDir::new("lifeboat-pg-", base)?;
        check_pg_ctl_path(dir.path(), "the throw-away cluster's directory")?;
        check_socket_dir(dir.path(), "the throw-away cluster's directory")?;
        if let Some(u) = &user {
            let pw = nix::unistd::User::from_name(u)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Error::unavailable(format!(
                        "user {u:?} does not exist; PostgreSQL cannot run as root"
                    ))
                    .hint("create the user (the postgresql package does) or set LIFEBOAT_PG_USER")
                })?;
            nix::unistd::chown(dir.path(), Some(pw.uid), Some(pw.gid))
                .map_err(|e| Error::unavailable(format!("chown {}: {e}", dir.path().display())))?;
        }
        let data = dir.path().join("data");
        let initdb = bin.program("initdb");
        let out = server_cmd(&initdb, user.as_deref())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                encoding,
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| missing_program(&initdb, e))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let place = dir
                .path()
                .parent()
                .unwrap_or(dir.path())
                .display()
                .to_string();
            let hint = if crate::error::says_disk_full(&stderr) {
                format!(
                    "the disk of {place} is full: free space there, or point LIFEBOAT_SCRATCH_DIR (or --scratch-dir) at a disk with room for a copy of the database"
                )
            } else {
                // initdb ran, so it is installed: its own words say what stopped it
                format!("initdb's own words above say what stopped it (a directory its user may not write, a locale this host lacks); the throw-away cluster was made in {place}")
            };
            return Err(Error::unavailable(format!("initdb failed: {}", stderr.trim())).hint(hint));
        }
        {
            let path = data.join("postgresql.conf");
            let mut text =
                std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
            // reachable over TCP on this host unless `conf` says otherwise (a drill's copy
            // with production's roles: see `NO_TCP`)
            text.push_str("\nlisten_addresses = '127.0.0.1'\n");
            text.push_str(conf);
            text.push('\n');
            std::fs::write(&path, text).map_err(|e| Error::io(path.display(), e))?;
        }
        let mut cluster = Self {
            port: 0,
            dir,
            bin: bin.clone(),
            user,
            running: false,
            own_full_page_writes: conf.contains("full_page_writes"),
        };
        cluster.launch()?;
        Ok(cluster)
    }

    fn launch(&mut self) -> Result<()> {
        let mut last_err = None;
        // a port found free can be taken by someone else before postgres binds it: retry
        for _ in 0..5 {
            self.port = free_port()?;
            let opts = format!(
                "-p {} -k {} -c fsync=off{} -c synchronous_commit=off -c max_connections=50",
                self.port,
                // pg_ctl hands these options to a shell
                shell_quote(&socket_dir_item(self.dir.path())),
                if self.own_full_page_writes {
                    ""
                } else {
                    " -c full_page_writes=off"
                }
            );
            let pg_ctl = self.bin.program("pg_ctl");
            // registered before it starts: an interrupt while `pg_ctl start` waits must stop
            // it too (pg_ctl puts the server in a session of its own, which outlives us)
            register(pg_ctl.clone(), self.data_dir(), self.user.clone());
            let out = server_cmd(&pg_ctl, self.user.as_deref())
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .arg("-o")
                .arg(&opts)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .output()
                .map_err(|e| missing_program(&pg_ctl, e))?;
            if out.status.success() {
                self.running = true;
                return Ok(());
            }
            // a start that timed out may still come up later
            stop_registered(&self.data_dir());
            last_err = Some(self.log_tail());
        }
        Err(Error::unavailable(format!(
            "the throw-away PostgreSQL did not start: {}",
            last_err.unwrap_or_default()
        )))
    }

    /// Last lines of the server log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("; ")
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The TCP port (also the socket's port number).
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The socket directory.
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A superuser connection over the socket.
    #[must_use]
    pub fn conn(&self) -> PgConn {
        PgConn::local(self.socket_dir(), self.port, "postgres", self.bin.clone())
    }

    /// A DSN for the superuser over the socket (no password).
    #[must_use]
    pub fn dsn(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Runs SQL as superuser on `db`.
    ///
    /// # Errors
    ///
    /// As [`PgConn::query`].
    pub fn sql(&self, db: &str, sql: &str) -> Result<String> {
        self.conn().query(db, sql)
    }

    /// Stops the server (fast mode) and forgets it.
    pub fn stop(&mut self) {
        self.stop_in("fast");
    }

    /// Stops the server without its shutdown checkpoint (immediate mode) and forgets it:
    /// for a throw-away cluster whose files are removed next, where writing its dirty
    /// buffers out first would only be thrown away.
    pub fn discard(&mut self) {
        self.stop_in("immediate");
    }

    fn stop_in(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        stop_server(
            &self.bin.program("pg_ctl"),
            &self.data_dir(),
            self.user.as_deref(),
            mode,
        );
        self.running = false;
        if let Ok(mut l) = RUNNING.lock() {
            let d = self.data_dir();
            l.retain(|(_, p, _)| p != &d);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Drops a drill's copy `db` through `conn` (`WITH (FORCE)` when `force`). A subscription
/// restored into it (disabled, as pg_restore makes them) would stop the drop, and a plain
/// `DROP SUBSCRIPTION` would connect to production's publisher and drop its slot: each is
/// first detached from its slot, then dropped, without connecting anywhere.
///
/// # Errors
///
/// The drop's error.
pub(crate) fn drop_copy(conn: &PgConn, db: &str, force: bool) -> Result<String> {
    drop_copy_from(conn, conn.maintenance_db(), db, force)
}

/// [`drop_copy`], dropping it from database `from`.
///
/// # Errors
///
/// The drop's error.
pub(crate) fn drop_copy_from(conn: &PgConn, from: &str, db: &str, force: bool) -> Result<String> {
    // production's read-only default or statement timeout, restored onto the copy, must
    // not stop it, nor an event trigger that blocks DDL; the replica session needs a
    // superuser, as a subscription does (another role's copy has none, and this fails)
    let detached = conn
        .with_options(
            "-c default_transaction_read_only=off -c statement_timeout=0 -c session_replication_role=replica",
        )
        .query(
        db,
        "DO $lifeboat$ DECLARE s record; BEGIN \
         FOR s IN SELECT subname FROM pg_catalog.pg_subscription \
           WHERE subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) LOOP \
           EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', s.subname); \
           EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', s.subname); \
           EXECUTE format('DROP SUBSCRIPTION %I', s.subname); \
         END LOOP; END $lifeboat$",
    );
    conn.query(
        from,
        &format!(
            "DROP DATABASE IF EXISTS {}{}",
            super::compare::ident(db),
            if force { " WITH (FORCE)" } else { "" }
        ),
    )
    .map_err(|e| match detached {
        Err(d) if e.message().contains("subscription") => e.with_note(format!(
            "its subscriptions could not be detached first ({}): in it, for each, run ALTER SUBSCRIPTION s DISABLE; ALTER SUBSCRIPTION s SET (slot_name = NONE); DROP SUBSCRIPTION s; then drop it (a plain DROP SUBSCRIPTION would drop production's replication slot on the publisher)",
            crate::error::headline(&d.to_string())
        )),
        _ => e,
    })
}
