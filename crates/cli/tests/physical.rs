//! Physical backups, WAL archiving with `lifeboat wal-push` as archive_command, and
//! point-in-time recovery, on real PostgreSQL clusters: PITR under a write load to a time,
//! an LSN and a named restore point; a missing and a corrupted segment; a second timeline;
//! wal-push idempotence and conflict, alone and through `wal serve`; the same PITR on S3
//! (Garage).

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{lb, ok, run};
use lifeboat_core::sources::postgres::{cluster::Cluster, conn::PgBin};
use lifeboat_testing::{garage::Garage, Workspace};

/// A cluster archiving into a lifeboat repository through `lifeboat wal-push`.
struct Archiving {
    cluster: Cluster,
    ws: Workspace,
    cfg: PathBuf,
    /// `lifeboat wal serve`, when the test runs one.
    server: Option<std::process::Child>,
    socket: PathBuf,
    /// The lifeboat binary where the PostgreSQL user can run it.
    exe: PathBuf,
}

impl Drop for Archiving {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

fn pg_user() -> Option<nix::unistd::User> {
    nix::unistd::geteuid()
        .is_root()
        .then(|| nix::unistd::User::from_name("postgres").ok().flatten())
        .flatten()
}

/// Hands the workspace to the user PostgreSQL runs as: its archive_command reads the
/// config and password and writes the repository.
fn share(ws: &Workspace) {
    let Some(u) = pg_user() else { return };
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{}:{}", u.uid, u.gid)])
        .arg(ws.path())
        .status()
        .expect("chown");
    assert!(status.success());
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Archiving {
    /// `repository` is the TOML body of `[repository]`, or `None` for a local one; with
    /// `serve`, pushes and fetches go through `lifeboat wal serve`.
    fn start(repository: Option<&dyn Fn(&Workspace) -> String>, serve: bool) -> Self {
        Self::start_with(repository, serve, "")
    }

    /// As [`Archiving::start`], with `extra` lines in the server's configuration.
    fn start_with(
        repository: Option<&dyn Fn(&Workspace) -> String>,
        serve: bool,
        extra: &str,
    ) -> Self {
        let ws = Workspace::new();
        let cfg = ws.config_path();
        let socket = ws.path().join("wal.sock");
        let exe = common::shared_binary(ws.path());
        let conf = format!(
            "archive_mode = on\narchive_command = '{} --config {} wal-push --socket {} %p'\nwal_level = replica\n{extra}",
            exe.display(),
            cfg.display(),
            socket.display()
        );
        let cluster =
            Cluster::start_with(&PgBin::new(None), &conf).expect("start an archiving cluster");
        let dsn = cluster.dsn("postgres");
        match repository {
            None => ws.local_config(&[("main", &dsn)]),
            Some(f) => ws.write_config(&f(&ws), &[("main", &dsn)]),
        };
        ok(lb(&cfg).arg("init"));
        share(&ws);
        let server = serve.then(|| {
            let mut cmd = match pg_user() {
                Some(_) => {
                    let mut c = std::process::Command::new("runuser");
                    c.args(["-u", "postgres", "--"]).arg(&exe);
                    c
                }
                None => std::process::Command::new(&exe),
            };
            let log = std::fs::File::create(ws.path().join("serve.log")).expect("log");
            let child = cmd
                .stderr(log)
                .arg("--config")
                .arg(&cfg)
                .args(["wal", "serve", "--socket"])
                .arg(&socket)
                .env_remove("LIFEBOAT_PASSWORD")
                .spawn()
                .expect("start lifeboat wal serve");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !socket.exists() {
                assert!(Instant::now() < deadline, "wal serve did not listen");
                std::thread::sleep(Duration::from_millis(50));
            }
            child
        });
        cluster
            .sql(
                "postgres",
                "create table markers (id int primary key, at timestamptz not null default clock_timestamp())",
            )
            .expect("markers table");
        Self {
            cluster,
            ws,
            cfg,
            server,
            socket,
            exe,
        }
    }

    /// `lifeboat --config CFG` run from the shared binary (restore_command names it).
    fn lb(&self) -> assert_cmd::Command {
        common::lb_at(&self.exe, &self.cfg)
    }

    fn sql(&self, q: &str) -> String {
        self.cluster
            .sql("postgres", q)
            .expect("sql")
            .trim()
            .to_string()
    }

    /// Inserts marker `id`; returns its time as PostgreSQL wrote it.
    fn marker(&self, id: i32) -> String {
        self.sql(&format!(
            "insert into markers (id) values ({id}) returning to_char(at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        ))
    }

    /// Inserts markers `ids` 40 ms apart, switching WAL segments now and then.
    fn load(&self, ids: std::ops::RangeInclusive<i32>) {
        for id in ids {
            self.marker(id);
            if id % 7 == 0 {
                self.sql("select pg_switch_wal()");
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Closes the current segment and waits until the archiver has pushed it.
    fn archive_now(&self) {
        archive_now(|q| self.sql(q), || self.cluster.log_tail());
    }

    fn backup(&self) -> String {
        let out = ok(self.lb().args(["--json", "backup", "--kind", "physical"]));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["backups"][0]["id"].as_str().expect("id").to_string()
    }

    /// A directory the PostgreSQL user can create a data directory and socket in.
    fn scratch(&self, name: &str) -> PathBuf {
        let d = self.ws.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        share(&self.ws);
        d
    }
}

/// Closes the current segment of the server `sql` talks to and waits until its archiver has
/// pushed it; `log` goes into the failure message.
fn archive_now(sql: impl Fn(&str) -> String, log: impl Fn() -> String) {
    // the segment the switch closed (the write position may still be in the one before:
    // the test clusters run with synchronous_commit off); with nothing written since the
    // last switch, none is closed, and the one before is the one to wait for
    let seg = sql("select pg_walfile_name(pg_switch_wal() - 1)");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = sql("select coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') from pg_stat_archiver");
        if row.split('|').next().unwrap_or("") >= seg.as_str() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the archiver did not push {seg} (pg_stat_archiver: {row}); server log: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A restored, running server; stopped on drop.
struct Restored {
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl Restored {
    fn sql(&self, q: &str) -> String {
        lifeboat_core::sources::postgres::conn::PgConn::local(
            &self.sock,
            self.port,
            "postgres",
            PgBin::new(None),
        )
        .query("postgres", q)
        .expect("query the restored server")
        .trim()
        .to_string()
    }

    fn markers(&self) -> (i64, i64) {
        let r = self.sql("select count(*), coalesce(max(id), 0) from markers");
        let (a, b) = r.split_once('|').expect("two columns");
        (a.parse().expect("count"), b.parse().expect("max"))
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let pg_ctl = PgBin::new(None).program("pg_ctl");
        let mut cmd = match pg_user() {
            Some(_) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(pg_ctl);
                c
            }
            None => std::process::Command::new(pg_ctl),
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `restore --kind physical --start` into a new directory with `target` flags.
fn restore(a: &Archiving, name: &str, target: &[&str]) -> (Restored, String) {
    let base = a.scratch(name);
    let data = base.join("data");
    let port = free_port();
    let mut cmd = a.lb();
    if a.server.is_some() {
        // inherited by the restored server's restore_command
        cmd.env("LIFEBOAT_WAL_SOCKET", &a.socket);
    }
    let out = ok(cmd
        .args([
            "restore",
            "--kind",
            "physical",
            "--source",
            "main",
            "--start",
            "--timeout",
            "60",
        ])
        .arg("--to-dir")
        .arg(&data)
        .arg("--socket-dir")
        .arg(&base)
        .args(["--port", &port.to_string()])
        .args(target));
    if !target.contains(&"shutdown") {
        assert!(
            out.contains(&format!("connect: psql -h {} -p {port}", base.display()))
                && out.contains(&format!("-D {} stop", data.display())),
            "how to reach and stop the restored server: {out}"
        );
    }
    (
        Restored {
            data,
            sock: base,
            port,
        },
        out,
    )
}

/// Markers 1..=k exist exactly, checked with plain SQL.
fn assert_markers_up_to(r: &Restored, k: i64, what: &str) {
    assert_eq!(
        r.markers(),
        (k, k),
        "{what}: markers in the restored cluster"
    );
}

fn pitr_under_load(a: &Archiving) {
    a.load(1..=10);
    let first = a.backup();
    a.load(11..=20);
    // a gap in the writes so that a target time falls cleanly between two commits
    let t20 = a.marker(21);
    std::thread::sleep(Duration::from_millis(300));
    a.load(22..=30);
    let lsn = {
        a.marker(31);
        a.sql("select pg_current_wal_insert_lsn()")
    };
    std::thread::sleep(Duration::from_millis(100));
    a.load(32..=40);
    a.sql("select pg_create_restore_point('before-migration')");
    let made = jiff::Timestamp::now().to_string();
    a.load(41..=45);
    let second = a.backup();
    assert_ne!(first, second);
    a.load(46..=50);
    a.archive_now();

    let at: jiff::Timestamp = t20.parse().expect("marker time");
    let target = (at + jiff::SignedDuration::from_millis(150)).to_string();
    let (r, out) = restore(a, "pitr-time", &["--target-time", &target]);
    assert!(
        out.contains(&first[..8]),
        "the backup before the target is used:\n{out}"
    );
    assert!(out.contains("reached LSN"), "{out}");
    assert!(
        out.contains(", inclusive (stops just after it)"),
        "the target says which side of it recovery stops: {out}"
    );
    assert_markers_up_to(&r, 21, "target time");
    drop(r);

    let (r, _) = restore(a, "pitr-lsn", &["--target-lsn", &lsn]);
    assert_markers_up_to(&r, 31, "target LSN");
    drop(r);

    let (r, _) = restore(
        a,
        "pitr-name",
        &["--target-name", "before-migration", "--before", &made],
    );
    assert_markers_up_to(&r, 40, "restore point");
    drop(r);

    let (r, out) = restore(a, "pitr-latest", &["--latest"]);
    assert!(
        out.contains(&second[..8]),
        "--latest uses the newest backup:\n{out}"
    );
    // without a `wal serve` named, the restore served the archive to its recovery itself
    // (one repository opening, not one per segment), also as root to a server running as
    // postgres
    let served = out.lines().any(|l| {
        l.contains("WAL file(s) served to the recovery by this lifeboat")
            && !l.trim_start().starts_with("0 ")
    });
    assert_eq!(served, a.server.is_none(), "{out}");
    assert_markers_up_to(&r, 50, "end of archive");
    drop(r);

    // the WAL archive's size counts in the repository's figures
    let stats: serde_json::Value =
        serde_json::from_str(&ok(a.lb().args(["--json", "stats"]))).expect("stats");
    let src = &stats["sources"][0];
    assert!(src["wal_files"].as_u64().unwrap() > 3, "{stats}");
    assert!(src["wal_stored_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["total_wal_stored_bytes"], src["wal_stored_bytes"]);
}

#[test]
fn pitr_to_time_lsn_and_restore_point_on_a_local_repository() {
    let a = Archiving::start(None, true);
    pitr_under_load(&a);
    // a transaction id as the target, inclusive and exclusive
    let xid = a.sql("insert into markers (id) values (60) returning txid_current()");
    a.marker(61);
    a.archive_now();
    let (r, _) = restore(&a, "pitr-xid", &["--target-xid", &xid]);
    assert_eq!(r.markers(), (51, 60), "target xid, inclusive");
    drop(r);
    let (r, _) = restore(&a, "pitr-xid-excl", &["--target-xid", &xid, "--exclusive"]);
    assert_eq!(r.markers(), (50, 50), "target xid, exclusive");
    drop(r);
    // the log says it stopped before the transaction, not "up to" it alone, and the
    // evidence pack says who restored
    let entries: Vec<serde_json::Value> = serde_json::from_str(&ok(lb(&a.cfg).args([
        "--json", "audit", "list", "--action", "restore", "--last", "1",
    ])))
    .unwrap();
    let details = entries[0]["details"].as_str().unwrap();
    assert!(
        details.contains(&format!(
            "up to transaction {xid} (exclusive: stopped before it)"
        )) && details.contains("last transaction committed")
            && details.contains(&format!(
                "recovery stopping before commit of transaction {xid}"
            )),
        "{details}"
    );
    let pack = ok(lb(&a.cfg).arg("report"));
    assert!(
        pack.lines().any(|l| l.contains(" restored: ")
            && l.contains("(exclusive: stopped before it)")
            && l.contains("(by ")),
        "{pack}"
    );

    // paused just before a DROP TABLE commits: replay holds the table's lock, and a query on
    // it would wait for ever; the restore names the table. Hooks given on the command line
    // run around a physical restore, the post-hook against the started server
    a.sql("create table doomed (id int)");
    let drop_xid = a.sql("begin; drop table doomed; select txid_current(); commit;");
    a.archive_now();
    let said = a.ws.path().join("physical-hooks.log");
    let (r, out) = restore(
        &a,
        "pitr-pause",
        &[
            "--target-xid",
            &drop_xid,
            "--exclusive",
            "--target-action",
            "pause",
            "--pre-hook",
            &format!(
                "echo \"$LIFEBOAT_HOOK $LIFEBOAT_KIND $LIFEBOAT_TARGET_DIR\" >> {}",
                said.display()
            ),
            "--post-hook",
            &format!(
                "psql \"$LIFEBOAT_TARGET_CONNINFO\" -XAtc 'select pg_is_in_recovery()' >> {}",
                said.display()
            ),
        ],
    );
    assert!(
        out.contains("holds exclusive locks on postgres: doomed"),
        "{out}"
    );
    assert!(out.contains("ran the post-restore hook"), "{out}");
    let said = std::fs::read_to_string(&said).expect("the hooks ran");
    assert_eq!(
        said,
        format!("pre-restore physical {}\nt\n", r.data.display()),
        "pre-hook before, post-hook against the paused server"
    );
    assert_eq!(r.sql("select pg_is_in_recovery()"), "t");
    drop(r);
    // a server archiving WAL without archive_timeout: config check says what that loses
    let out = ok(a.lb().args(["config", "check"]));
    assert!(
        out.contains("archive_timeout is 0")
            && out.contains("ALTER SYSTEM SET archive_timeout = '60s'; SELECT pg_reload_conf();"),
        "{out}"
    );
    a.sql("alter system set archive_timeout = '60s'");
    a.sql("select pg_reload_conf()");
    let out = ok(a.lb().args(["config", "check"]));
    assert!(!out.contains("archive_timeout"), "{out}");
    // a physical backup's id given to a logical restore is refused before anything runs
    // (the pre-restore hook would have stopped the application for nothing)
    let hooked = a.ws.path().join("pre-hook-ran");
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(a.lb().args(["--json", "list", "--kind", "physical"])))
            .expect("json");
    let physical = listed[0]["id"].as_str().expect("id")[..8].to_string();
    let (code, _, err) = run(a
        .lb()
        .args(["restore", &physical, "--to-database", "zz", "--pre-hook"])
        .arg(format!("touch {}", hooked.display())));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a physical backup") && err.contains("--kind physical --to-dir"),
        "{err}"
    );
    assert!(!hooked.exists(), "the pre-restore hook ran");
    // flags of a logical restore are refused, not ignored
    let (code, _, err) = run(a
        .lb()
        .args(["restore", "--kind", "physical", "--latest", "--to-dir"])
        .arg(a.scratch("refused").join("data"))
        .args(["--to-database", "x", "--jobs", "4"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--to-database, --jobs only apply to a logical restore"),
        "{err}"
    );
    // flags that would be dropped or fail only after the unpack are refused before it
    for (extra, code_wanted, said) in [
        (
            &["--target-lsn", "0/1", "--latest"][..],
            2,
            "--latest recovers to the end",
        ),
        (
            &["--latest", "--exclusive"],
            2,
            "--exclusive stops just before",
        ),
        (&["--target-name", ""], 2, "--target-name is empty"),
        (
            &["--latest", "--socket-dir", "/nonexistent/s"],
            2,
            "is not a directory",
        ),
        (&["--latest", "--port", "0"], 2, "0 is not in 1..=65535"),
        (
            &["--latest", "--target-timeline", "7"],
            4,
            "timeline 7 is not in the archive",
        ),
    ] {
        let (code, _, err) = run(a
            .lb()
            .args(["restore", "--kind", "physical", "--dry-run", "--to-dir"])
            .arg(a.scratch("refused-early").join("data"))
            .args(extra));
        assert_eq!(code, code_wanted, "{extra:?}: {err}");
        assert!(err.contains(said), "{extra:?}: {err}");
    }
    let served = std::fs::read_to_string(a.ws.path().join("serve.log")).expect("server log");
    assert!(
        served.contains("PUSH") && served.contains("OK stored"),
        "archiving went through wal serve:\n{served}"
    );
    assert!(
        served.contains("FETCH") && served.contains("OK found"),
        "recovery fetched through wal serve:\n{served}"
    );
    let status = ok(a.lb().args(["wal", "status"]));
    assert!(status.contains("timeline 1:"), "{status}");
    assert!(status.contains("recoverable up to"), "{status}");
    assert!(!status.contains("GAP"), "{status}");
    assert!(
        status.contains("archiver (server): archive_mode on, last archived"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(a
        .lb()
        .args(["--json", "wal", "status", "--socket"])
        .arg(&a.socket)))
    .expect("json");
    let archiver = &json["archiver"];
    assert_eq!(archiver["failing"], false, "{json}");
    assert!(archiver["archived_count"].as_u64() > Some(3), "{json}");
    let last = archiver["last_archived_wal"]
        .as_str()
        .expect("a last archived segment");
    // the segment's own name: the last file archived may be a `.backup` label beside it
    let last = &last[..last.len().min(24)];
    assert!(
        json["timelines"][0]["last"].as_str() >= Some(last),
        "the repository holds what the server says it archived: {json}"
    );
    assert_eq!(
        json["wal_server"],
        a.server.is_some(),
        "a running wal serve is seen, and a missing one is not: {json}"
    );
}

/// Paths and names that shells and PostgreSQL's configuration file read specially: a
/// configuration in a directory with a space, `'`, `%` and `\` (the restore_command
/// PostgreSQL runs names it), a data directory and socket directory with a space and `'`
/// (a socket directory with a comma, which no client could reach, is refused up front),
/// a restore point with a backslash, and a hook that connects through the socket. A data
/// directory with `$(...)` in its path is refused before anything is written, and the
/// command in it never runs.
#[test]
fn odd_paths_and_names_reach_postgresql_as_they_are() {
    let a = Archiving::start(None, false);
    a.marker(1);
    a.backup();
    a.marker(2);
    a.sql(r"select pg_create_restore_point(E'it''s a\\tb')");
    a.marker(3);
    a.archive_now();
    let odd = a.ws.path().join(r"c'fg 100%f \x");
    std::fs::create_dir_all(&odd).unwrap();
    let cfg = odd.join("lifeboat.toml");
    std::fs::copy(&a.cfg, &cfg).unwrap();
    let base = a.scratch("re'stored dir");
    let port = free_port();
    let said = a.ws.path().join("hook.out");
    let out = ok(common::lb_at(&a.exe, &cfg)
        .args([
            "restore", "--kind", "physical", "--source", "main", "--start",
        ])
        .arg("--to-dir")
        .arg(base.join("da ta"))
        .arg("--socket-dir")
        .arg(&base)
        .args(["--port", &port.to_string()])
        .args(["--target-name", r"it's a\tb"])
        .arg("--post-hook")
        .arg(format!(
            "psql -XAtc 'select count(*) from markers' \"$LIFEBOAT_TARGET_CONNINFO\" > {}",
            said.display()
        )));
    let r = Restored {
        data: base.join("da ta"),
        sock: base.clone(),
        port,
    };
    assert_eq!(r.markers(), (2, 2), "{out}");
    assert_eq!(std::fs::read_to_string(&said).unwrap().trim(), "2");
    // pasted as printed, the stop command names the directory
    assert!(
        out.contains(&format!(
            "-D '{}' stop",
            base.join("da ta")
                .display()
                .to_string()
                .replace('\'', r"'\''")
        )),
        "{out}"
    );
    drop(r);

    // refused up front (exit 2, `why` said), with nothing written to `to_dir`
    let refused = |to_dir: &Path, socket: Option<&Path>, why: &str| {
        let mut cmd = a.lb();
        cmd.args(["restore", "--kind", "physical", "--source", "main"])
            .args(["--start", "--latest", "--to-dir"])
            .arg(to_dir);
        if let Some(s) = socket {
            cmd.arg("--socket-dir").arg(s);
        }
        let (code, _, err) = common::run(&mut cmd);
        assert!(code == 2 && err.contains(why), "{err}");
        assert!(!to_dir.exists());
    };
    let pwned = a.ws.path().join("pwned");
    let evil = a.scratch(&format!("r$(touch {})", pwned.display()));
    refused(&evil.join("data"), None, "pg_ctl hands to a shell");
    assert!(!pwned.exists());
    refused(
        &base.join("again"),
        Some(&a.scratch("so,ck")),
        "has a comma in its path",
    );
}

#[test]
fn pitr_on_s3() {
    let g = Garage::start();
    let repo = |ws: &Workspace| {
        let secret = ws.path().join("s3.secret");
        g.repository_toml("wal-pitr", &secret)
    };
    let a = Archiving::start(Some(&repo), false);
    pitr_under_load(&a);
}

/// The archived objects of source `main` in a local repository.
fn archived_segments(a: &Archiving) -> Vec<PathBuf> {
    let dir = a.ws.repo_path().join("lifeboat-wal/main/00000001");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("archive dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 24)
        })
        .collect();
    v.sort();
    v
}

/// `program` from PostgreSQL's bin directory, as the user the servers run as.
fn as_pg_user(program: &str) -> std::process::Command {
    let path = PgBin::new(None).program(program);
    match pg_user() {
        Some(_) => {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        }
        None => std::process::Command::new(path),
    }
}

/// A base backup taken from a hot standby with `archive_mode = on`: the standby archives
/// nothing and its pg_basebackup does not wait for archiving, so the segment the backup
/// needs reaches the archive only when the primary closes it. The backup used to look once,
/// at once, and say the cluster archived elsewhere; it now waits up to archive_timeout.
/// Writes `to` as the configuration `from` with `old` replaced by `new`.
fn edited_config(from: &Path, to: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(from).expect("config");
    assert!(text.contains(old), "{old} in {text}");
    std::fs::write(to, text.replace(old, new)).expect("config");
}

/// Waits until `standby` has replayed marker `id`.
fn replayed_on(standby: &Restored, id: i32) {
    let replayed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        standby.sql(&format!("select count(*) from markers where id = {id}")) == "1"
    });
    assert!(replayed, "the standby did not replay marker {id}");
}

#[test]
fn a_base_backup_from_a_standby_waits_for_the_primary_to_archive_its_wal() {
    // a standby takes base backups only of WAL written with full-page images
    let a = Archiving::start_with(None, false, "full_page_writes = on\n");
    a.load(1..=3);
    a.archive_now();
    let base = a.scratch("standby");
    let data = base.join("data");
    let port = free_port();
    let st = as_pg_user("pg_basebackup")
        .arg("-D")
        .arg(&data)
        .args(["-R", "-X", "stream", "-h"])
        .arg(a.cluster.socket_dir())
        .args(["-p", &a.cluster.port().to_string(), "-U", "postgres"])
        .status()
        .expect("pg_basebackup");
    assert!(st.success());
    std::fs::write(
        data.join("postgresql.auto.conf"),
        format!(
            "{}\nport = {port}\nunix_socket_directories = '{}'\nlisten_addresses = ''\narchive_mode = on\n",
            std::fs::read_to_string(data.join("postgresql.auto.conf")).expect("auto.conf"),
            base.display()
        ),
    )
    .expect("auto.conf");
    share(&a.ws);
    let st = as_pg_user("pg_ctl")
        .args(["start", "-w", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(base.join("standby.log"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pg_ctl");
    assert!(st.success());
    let standby = Restored {
        data,
        sock: base.clone(),
        port,
    };
    assert_eq!(standby.sql("select pg_is_in_recovery()"), "t");
    let cfg2 = a.ws.path().join("standby.toml");
    let text = std::fs::read_to_string(&a.cfg).expect("config").replace(
        &a.cluster.dsn("postgres"),
        &format!(
            "host={} port={port} user=postgres dbname=postgres",
            base.display()
        ),
    );
    std::fs::write(&cfg2, format!("{text}archive_timeout = \"3s\"\n")).expect("config");

    // written after the last switch: the backup ends in a segment not yet archived, and
    // nothing closes it within 3 s: the wait ends, naming why
    a.marker(4);
    replayed_on(&standby, 4);
    let (code, _, err) = run(lb(&cfg2).args(["backup", "--kind", "physical"]));
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("taken from a standby") && err.contains("archive_mode = always"),
        "{err}"
    );
    // the primary closes it while the backup waits: the backup is kept
    edited_config(
        &cfg2,
        &cfg2,
        "archive_timeout = \"3s\"",
        "archive_timeout = \"120s\"",
    );
    let before = common::list_json(&a.cfg).len();
    a.marker(5);
    let backup = std::thread::spawn({
        let cfg2 = cfg2.clone();
        move || run(lb(&cfg2).args(["backup", "--kind", "physical"]))
    });
    std::thread::sleep(Duration::from_secs(3));
    a.archive_now();
    let (code, _, err) = backup.join().expect("backup thread");
    assert_eq!(code, 0, "{err}");
    assert_eq!(common::list_json(&a.cfg).len(), before + 1);

    // `config check` names the primary's archive_timeout, not the standby's (which does
    // nothing)
    let (_, out, err) = run(lb(&cfg2).args(["config", "check"]));
    assert!(
        format!("{out}{err}")
            .contains("the server is a standby: WAL segments are closed by the primary"),
        "{out}\n{err}"
    );
    let restart_with = |mode: &str| {
        let auto = standby.data.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).expect("auto.conf");
        std::fs::write(&auto, format!("{text}archive_mode = {mode}\n")).expect("auto.conf");
        let st = as_pg_user("pg_ctl")
            .args(["restart", "-w", "-D"])
            .arg(&standby.data)
            .arg("-l")
            .arg(base.join("standby.log"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(st.success());
    };
    // archive_mode = always: the standby archives, and still waits for the primary to
    // close the segment; a wait that ends names that, not only archive_command
    restart_with("always");
    a.marker(6);
    edited_config(
        &cfg2,
        &cfg2,
        "archive_timeout = \"120s\"",
        "archive_timeout = \"3s\"",
    );
    let (code, _, err) = run(lb(&cfg2).args(["backup", "--kind", "physical"]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("the server is a standby") && err.contains("closes when the primary switches"),
        "{err}"
    );
    // the usual replica: archive_mode off, the primary archiving. `wal status` through
    // the standby is no alarm (it said archiving was switched off, exit 10)
    restart_with("off");
    a.archive_now();
    let (code, out, err) = run(lb(&cfg2).args(["wal", "status"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("a standby with archive_mode = off: it archives nothing itself"),
        "{out}"
    );

    // a healthy standby's dump, by a role that may read the data but not the receiver's
    // details (pg_read_all_data, no pg_read_all_stats): no alarm, nothing recorded
    a.sql("create role reader login; grant pg_read_all_data to reader");
    a.marker(8);
    replayed_on(&standby, 8);
    let cfg3 = a.ws.path().join("reader.toml");
    edited_config(&cfg2, &cfg3, "user=postgres", "user=reader");
    let (code, _, err) = run(lb(&cfg3).args(["backup", "--kind", "logical"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("the server is a standby"), "{err}");
    assert!(common::list_json(&a.cfg)
        .iter()
        .all(|b| b.get("data_as_of").is_none()));
    // a standby takes no restore: the plan says so, also in a dry run
    let (code, _, err) =
        run(lb(&cfg2).args(["restore", "--latest", "--to-database", "copy", "--dry-run"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the target server is a standby") && err.contains("--target-dsn"),
        "{err}"
    );
    // a log-shipping standby (a restore_command, no primary_conninfo) streams nothing by
    // design: replayed a moment ago, it is no alarm and records nothing
    let conninfo = standby.sql("show primary_conninfo");
    a.marker(9);
    replayed_on(&standby, 9);
    standby.sql("alter system set primary_conninfo = ''");
    standby.sql("alter system set restore_command = 'false'");
    standby.sql("select pg_reload_conf()");
    let before = common::list_json(&a.cfg).len();
    let (code, _, err) = run(lb(&cfg2).args(["backup", "--kind", "logical"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("the server is a standby"), "{err}");
    let all = common::list_json(&a.cfg);
    assert!(all.len() > before, "{all:?}");
    assert!(
        all[before..].iter().all(|b| b.get("data_as_of").is_none()),
        "{all:?}"
    );
    standby.sql(&format!(
        "alter system set primary_conninfo = '{}'",
        conninfo.replace('\'', "''")
    ));
    standby.sql("alter system reset restore_command");
    standby.sql("select pg_reload_conf()");
    // replication breaks: the standby's dumps hold its last replayed data, said and
    // recorded, and a drill counts the RPO from it
    standby.sql("alter system set primary_conninfo = 'host=/nonexistent port=1 user=postgres'");
    standby.sql("select pg_reload_conf()");
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        standby.sql("select count(*) from pg_stat_wal_receiver") == "0"
    });
    assert!(stopped, "the standby's WAL receiver did not stop");
    let replayed = standby.sql(
        "select to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    a.marker(7);
    let (code, _, err) = run(lb(&cfg2).args(["backup", "--kind", "logical"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the server is a standby that receives no WAL from its primary now")
            && err.contains("its last replayed transaction committed at"),
        "{err}"
    );
    let newest = common::list_json(&a.cfg)
        .into_iter()
        .rfind(|b| b["kind"] == "logical")
        .expect("the logical backup");
    let as_of: jiff::Timestamp = newest["data_as_of"]
        .as_str()
        .expect("data_as_of recorded")
        .parse()
        .expect("time");
    let replayed: jiff::Timestamp = replayed.parse().expect("replay time");
    assert_eq!(as_of.as_second(), replayed.as_second(), "{newest}");
    let out = ok(lb(&cfg2).args(["--json", "drill"]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        report["rpo_point"]["what"]
            .as_str()
            .is_some_and(|w| w.contains("standby's last replayed transaction")),
        "{report}"
    );
    drop(standby);
}

/// A second host's configuration names the same source but points at another cluster: its
/// base backup would become the source's newest, `wal status` would call it recoverable,
/// and every restore of it would replay the first cluster's WAL and fail.
#[test]
fn a_base_backup_of_another_cluster_under_the_same_source_is_refused() {
    let a = Archiving::start(None, false);
    a.backup();
    let other = Cluster::start(&PgBin::new(None)).expect("a second cluster");
    let cfg2 = a.ws.path().join("second-host.toml");
    let text = std::fs::read_to_string(&a.cfg).expect("config");
    let dsn = a.cluster.dsn("postgres");
    assert!(text.contains(&dsn), "{text}");
    std::fs::write(&cfg2, text.replace(&dsn, &other.dsn("postgres"))).expect("config");
    let before = common::list_json(&a.cfg).len();
    let (code, _, err) = run(lb(&cfg2).args(["backup", "--kind", "physical"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("this server is another cluster (system identifier")
            && err.contains("source name of its own"),
        "{err}"
    );
    assert_eq!(common::list_json(&a.cfg).len(), before);

    // its WAL under the same source (an archive_command copied from the first host) is
    // refused before it mixes with the first cluster's, whatever segment name it has
    other.sql("postgres", "select pg_switch_wal()").unwrap();
    let (code, _, err) = run(lb(&cfg2).arg("wal-push").arg(oldest_segment(&other)));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("two servers archive under one source name") && err.contains("its own source"),
        "{err}"
    );

    // a source with WAL of one cluster and no base backup yet takes none of another
    let ws = Workspace::new();
    let cfg3 = ws.local_config(&[("main", &other.dsn("postgres"))]);
    ok(lb(&cfg3).arg("init"));
    ok(lb(&cfg3).arg("wal-push").arg(oldest_segment(&a.cluster)));
    let (code, _, err) = run(lb(&cfg3).args(["backup", "--kind", "physical"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("than the one whose WAL source \"main\"'s archive holds"),
        "{err}"
    );
}

/// The oldest segment in `c`'s pg_wal: a newer file may be one recycled or made ahead,
/// not written yet.
fn oldest_segment(c: &Cluster) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(c.data_dir().join("pg_wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().len() == 24)
        .collect();
    segments.sort();
    segments.swap_remove(0)
}

/// Files under `dir` with their contents' hashes, to see whether anything wrote there.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&bytes, &mut h);
                out.push((p, std::hash::Hasher::finish(&h)));
            }
        }
    }
    out.sort();
    out
}

/// A tablespace created after the newest base backup: replaying its creation would point
/// the drill's or the restore's copy at production's own tablespace directory (on this host
/// it exists), and a walkthrough saw a drill corrupt a production table that way. Recovery
/// ends just before that record instead, naming the directory and how to recover to a
/// point before it; a point in time before it, in the same segment, is reached as usual.
#[test]
fn wal_that_creates_a_tablespace_is_never_replayed_into_productions_directory() {
    let a = Archiving::start(None, false);
    a.load(1..=3);
    a.backup();
    // the last marker before the tablespace, in the segment that creates it (PostgreSQL
    // reads ahead of what it replays, and a refused segment stopped this recovery too)
    let t4 = a.marker(4);
    std::thread::sleep(Duration::from_millis(300));
    // the bad change: PostgreSQL stops at a time on the first commit after it
    a.marker(5);
    let ts = a.scratch("tablespace");
    a.sql(&format!(
        "create tablespace ts1 location '{}'",
        ts.display()
    ));
    a.sql("create table in_ts (id int primary key, v text) tablespace ts1");
    a.sql("insert into in_ts select g, 'production' from generate_series(1, 5000) g");
    a.sql("checkpoint");
    a.archive_now();
    let before = fingerprint(&ts);
    assert!(!before.is_empty());

    // monitoring hears of it: nothing after the creation can be recovered
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        err.contains(&format!("tablespace(s) ts1 ({})", ts.display())),
        "{err}"
    );

    let (code, out, err) = run(a.lb().args(["drill", "--kind", "physical"]));
    assert_ne!(code, 0, "{out}\n{err}");
    let said = format!("{out}\n{err}");
    assert!(
        said.contains(&format!("creates a tablespace in {}", ts.display())),
        "{said}"
    );

    let base = a.scratch("restore-ts");
    let data = base.join("data");
    let (code, _, err) = run(a
        .lb()
        .args(["restore", "--kind", "physical", "--latest", "--start"])
        .arg("--to-dir")
        .arg(&data)
        .arg("--socket-dir")
        .arg(&base)
        .args(["--port", &free_port().to_string()]));
    // refused before anything is unpacked, naming where recovery would end
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("creates a tablespace at LSN") && err.contains("--exclusive"),
        "{err}"
    );
    assert!(!data.exists(), "nothing unpacked");
    let _running = Restored {
        data: data.clone(),
        sock: base.clone(),
        port: 0,
    };
    assert_eq!(
        fingerprint(&ts),
        before,
        "nothing wrote into production's tablespace"
    );

    // a time before the creation, in its segment
    let at: jiff::Timestamp = t4.parse().expect("time");
    let target = (at + jiff::SignedDuration::from_millis(150)).to_string();
    let (r, _) = restore(&a, "time-before-ts", &["--target-time", &target]);
    assert_markers_up_to(&r, 4, "up to a time before the tablespace's creation");
    drop(r);
    assert_eq!(fingerprint(&ts), before);
    // and a drill to that time passes: it stopped where asked, whatever it read ahead
    let out = ok(a.lb().args([
        "--json",
        "drill",
        "--kind",
        "physical",
        "--target-time",
        &target,
        "--check",
        "select count(*) = 4 from markers",
    ]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["passed"], true, "{out}");
    assert_eq!(fingerprint(&ts), before);

    // the hint's way out: everything up to the creation
    let lsn = err
        .split("--target-lsn ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the hint names an LSN")
        .to_string();
    let (r, _) = restore(&a, "before-ts", &["--target-lsn", &lsn, "--exclusive"]);
    assert_markers_up_to(&r, 5, "up to the tablespace's creation");
    drop(r);
    assert_eq!(fingerprint(&ts), before);

    // the tablespace gone from the server, its creation is still in the WAL every
    // recovery from the latest base backup replays: `wal status` still fails
    a.sql("drop table in_ts");
    a.sql("drop tablespace ts1");
    a.archive_now();
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        out.contains("TABLESPACE: the WAL at LSN") && err.contains("creates a tablespace at LSN"),
        "{out}\n{err}"
    );
    // the recoverable point it states is the creation's, not the archive's end
    assert!(
        out.contains("recoverable only up to LSN") && !out.contains("live RPO"),
        "{out}"
    );
    // and a base backup taken now starts after it
    a.backup();
    ok(a.lb().args(["wal", "status"]));
}

/// The repository's disk fills up while a base backup waits for its WAL: archive_command's
/// "No space left on device" reaches only the server's log, and the backup, stopped after
/// archive_timeout, said only that archiving kept failing. It now names the full disk.
#[test]
fn a_full_repository_disk_is_named_when_a_base_backup_waits_for_its_wal() {
    if !common::nix_is_root() {
        eprintln!("not root: the full-disk case is not exercised");
        return;
    }
    let disk = std::cell::RefCell::new(None);
    let repo = |ws: &Workspace| {
        let d = common::SmallDisk::mount(ws.path().join("disk"), "64m");
        let url = d.0.join("repo").display().to_string();
        *disk.borrow_mut() = Some(d);
        format!("url = {url:?}")
    };
    let a = Archiving::start(Some(&repo), false);
    a.archive_now();
    a.backup();
    // short only for the backup that must give up: the first one may wait on a busy host
    let mut text = std::fs::read_to_string(&a.cfg).expect("config");
    text.push_str("archive_timeout = \"3s\"\n");
    std::fs::write(&a.cfg, text).expect("config");
    // the disk fills up, all but 1 MiB; then 3 MiB of WAL that does not compress
    let mount = disk.borrow().as_ref().expect("mounted").0.clone();
    let filler = mount.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0x5a_u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        let len = f.metadata().expect("size").len();
        f.set_len(len.saturating_sub(1 << 20)).expect("truncate");
    }
    a.sql(
        "select pg_logical_emit_message(false, 'lifeboat-test', \
         decode(string_agg(md5(random()::text), ''), 'hex')) from generate_series(1, 200000)",
    );
    a.sql("select pg_switch_wal()");
    let (code, _, err) = run(a.lb().args(["backup", "--kind", "physical"]));
    // the backup's own writes fail too when they need room (exit 7, the disk named); when
    // they fit, it waits for its WAL and says why that never came
    let named = match code {
        7 => err.contains("No space left"),
        8 => {
            err.contains("archive_command keeps failing")
                && err.contains("less than two WAL segments")
                && err.contains("free space on the repository's file system")
        }
        _ => false,
    };
    assert!(named, "{code}: {err}");
    // `wal status` and `config check` name the full disk too, not only the server's log
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        err.contains("archive_command is failing") && err.contains("less than two WAL segments"),
        "{err}"
    );
    let (code, out, err) = run(a.lb().args(["config", "check"]));
    assert_eq!(code, 7, "a full disk, not a bug (1): {out}\n{err}");
    assert!(
        format!("{out}{err}").contains("free on its file system"),
        "{out}\n{err}"
    );
    // a physical restore onto that disk is refused before it writes, dry run or not
    for dry in [true, false] {
        let mut cmd = a.lb();
        cmd.args(["restore", "--kind", "physical", "--latest", "--to-dir"])
            .arg(mount.join("restored"));
        if dry {
            cmd.arg("--dry-run");
        }
        let (code, out, err) = run(&mut cmd);
        assert_eq!(code, 7, "{out}\n{err}");
        assert!(
            err.contains("has too little free space for") && err.contains("nothing was written"),
            "{err}"
        );
        assert!(!mount.join("restored").exists());
    }
    // a compressing file system holds more than its free space says: the check can go
    let (_, out, err) = run(a
        .lb()
        .args([
            "restore",
            "--kind",
            "physical",
            "--latest",
            "--dry-run",
            "--no-space-check",
            "--to-dir",
        ])
        .arg(mount.join("restored")));
    assert!(
        !err.contains("has too little free space for"),
        "{out}\n{err}"
    );
    drop(a);
}

#[test]
fn a_missing_segment_is_named_with_the_last_reachable_point() {
    let a = Archiving::start(None, false);
    a.load(1..=3);
    let first = a.backup();
    a.load(4..=30);
    a.archive_now();
    let segs = archived_segments(&a);
    assert!(segs.len() >= 4, "{segs:?}");
    let victim = &segs[segs.len() - 2];
    let name = victim
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    std::fs::remove_file(victim).expect("remove a segment");

    let (code, out, _) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "wal status fails on a gap:\n{out}");
    assert!(out.contains(&format!("GAP: {name} is missing")), "{out}");

    // every source in turn: one with logical backups only is named in a line, and the
    // gap fails the run whichever source comes after it
    let one_source = std::fs::read_to_string(&a.cfg).expect("config");
    let mut conf = one_source.clone();
    conf.push_str("\n[[source]]\nname = \"reports\"\nkind = \"postgres\"\ndsn = \"host=/nonexistent port=5 dbname=x connect_timeout=2\"\n");
    // ... and one configured for point-in-time recovery that archives nothing: no silence
    conf.push_str("\n[[source]]\nname = \"meant\"\nkind = \"postgres\"\ndsn = \"host=/nonexistent port=5 dbname=x connect_timeout=2\"\nschedule = { physical = \"0 3 * * 0\" }\n");
    std::fs::write(&a.cfg, conf).expect("config");
    let (code, out, err) = run(a.lb().args(["wal", "status", "--all"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("== source main\n") && out.contains(&format!("GAP: {name} is missing")),
        "{out}"
    );
    assert!(
        out.contains("== source reports\nWAL archive of source reports: none (nothing archived, no physical backup, the server did not answer: "),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == "1 of 3 sources passed the archive checks; FAILED: main, meant"),
        "{out}"
    );
    assert!(err.contains("2 of 3 sources failed: main ("), "{err}");
    assert!(
        err.contains("source meant is configured for point-in-time recovery (its schedule takes physical backups), and its WAL archive holds nothing"),
        "{err}"
    );
    let (code, out, _) = run(a.lb().args(["--json", "wal", "status", "--all"]));
    assert_eq!(code, 10, "{out}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(all.len(), 3, "{out}");
    assert_eq!(all[0]["source"], "main", "{out}");
    assert!(
        all[0]["error"].as_str().is_some() && all[0]["timelines"].is_array(),
        "{out}"
    );
    assert_eq!(
        (&all[1]["source"], &all[1]["archiving"]),
        (&"reports".into(), &false.into()),
        "{out}"
    );
    std::fs::write(&a.cfg, one_source).expect("config");

    // a directory that holds anything is refused, and left as it was
    let busy = a.scratch("busy");
    std::fs::write(busy.join("keep.txt"), "mine").expect("write");
    let (code, _, err) = run(a
        .lb()
        .args([
            "restore",
            "--kind",
            "physical",
            "--target-immediate",
            "--to-dir",
        ])
        .arg(&busy));
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).expect("kept"),
        "mine"
    );

    let dir = a.scratch("gap").join("data");
    let (code, _, err) = run(a
        .lb()
        .args(["restore", "--kind", "physical", "--latest", "--to-dir"])
        .arg(&dir));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&name),
        "the error names the missing segment:\n{err}"
    );
    assert!(err.contains("can reach only LSN"), "{err}");
    assert!(!dir.exists(), "nothing was written");
    // the hint's target works as written: the last record before the gap (the end of the
    // last segment is no target: no record starts there)
    let lsn = err
        .split("restore up to the gap with --target-lsn ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no target in the hint: {err}"))
        .to_string();
    let (r, out) = restore(&a, "to-the-gap", &["--target-lsn", &lsn]);
    assert!(out.contains("reached LSN"), "{out}");
    let (count, newest) = r.markers();
    assert_eq!(count, newest, "markers 1..={newest}, none missing");
    assert!(newest >= 3, "the backup's own rows at least: {newest}");
    drop(r);

    // a backup after the gap restarts the chain: status is good again, and names the
    // older backup whose recovery now stops at the gap
    a.backup();
    a.load(31..=32);
    a.archive_now();
    let (code, out, _) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("older backups cut short by a gap"), "{out}");
    assert!(
        out.contains(&format!("backup {}: recovers only up to", &first[..8]))
            && out.contains(&format!("{name} is missing")),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(a.lb().args(["--json", "wal", "status"]))).expect("json");
    assert_eq!(json["cut_short"][0]["backup_id"], first.as_str(), "{json}");
    assert_eq!(
        json["cut_short"].as_array().map(Vec::len),
        Some(1),
        "{json}"
    );

    // a target past the end of the archive is not a gap
    let (code, _, err) = run(a
        .lb()
        .args([
            "restore",
            "--kind",
            "physical",
            "--target-lsn",
            "0/FFFFFFFF",
            "--dry-run",
            "--to-dir",
        ])
        .arg(&dir));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("archive ends at LSN"), "{err}");
    assert!(!err.contains("missing"), "{err}");
    // a time past the newest archived WAL: the dry run warns that recovery cannot reach it
    let out = ok(a
        .lb()
        .args([
            "restore",
            "--kind",
            "physical",
            "--target-time",
            "2099-01-01T00:00:00Z",
            "--dry-run",
            "--to-dir",
        ])
        .arg(&dir));
    assert!(
        out.contains("warning: the target is later than the newest archived WAL"),
        "{out}"
    );
}

#[test]
fn a_corrupted_segment_stops_recovery_and_is_named() {
    let a = Archiving::start(None, false);
    a.backup();
    a.load(1..=20);
    a.archive_now();
    let segs = archived_segments(&a);
    let victim = &segs[segs.len() - 2];
    let name = victim
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let mut bytes = std::fs::read(victim).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(victim, bytes).expect("write");

    let (code, err, _stop) = latest_started(&a, "corrupt");
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains(&name) && err.contains("damaged"),
        "the error names the damaged segment:\n{err}"
    );
}

/// `restore --kind physical --latest --start` into a new directory `name`, however it
/// ends: its exit code, its stderr, and the copy (stopped when dropped).
fn latest_started(a: &Archiving, name: &str) -> (i32, String, Restored) {
    let base = a.scratch(name);
    let port = free_port();
    let (code, _, err) = run(a
        .lb()
        .args([
            "restore",
            "--kind",
            "physical",
            "--latest",
            "--start",
            "--timeout",
            "120",
        ])
        .arg("--to-dir")
        .arg(base.join("data"))
        .arg("--socket-dir")
        .arg(&base)
        .args(["--port", &port.to_string()]));
    let copy = Restored {
        data: base.join("data"),
        sock: base,
        port,
    };
    (code, err, copy)
}

/// A segment that decrypts and hashes right but holds WAL PostgreSQL cannot read (written
/// so, or damaged before it was pushed): recovery to the end of the archive ends there
/// and promotes, and the restore says it fell short instead of "restored".
#[test]
fn a_latest_restore_that_ends_before_the_archive_does_says_so() {
    // archived by hand, so that one segment can be damaged before it is pushed
    let a = Archiving::start_with(None, false, "archive_mode = off\n");
    a.load(1..=3);
    a.backup();
    a.load(4..=40);
    let current = a.sql("select pg_walfile_name(pg_current_wal_lsn())");
    let wal_dir = a.cluster.data_dir().join("pg_wal");
    let mut segs: Vec<String> = std::fs::read_dir(&wal_dir)
        .expect("pg_wal")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.as_str() < current.as_str())
        .collect();
    segs.sort();
    assert!(
        segs.len() >= 4,
        "segments written after the backup: {segs:?}"
    );
    let victim = segs[segs.len() - 2].clone();
    let copies = a.scratch("copies");
    let intact = std::fs::read(wal_dir.join(&victim)).expect("segment");
    for name in &segs {
        let copy = copies.join(name);
        let mut bytes = std::fs::read(wal_dir.join(name)).expect("segment");
        if *name == victim {
            // its records zeroed after the long page header: "invalid record length"
            bytes[40..8192].fill(0);
        }
        std::fs::write(&copy, bytes).expect("copy");
        ok(a.lb().arg("wal-push").arg(&copy));
    }
    let (code, err, r) = latest_started(&a, "short");
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("short of the end of the archive")
            && err.contains(&format!("segment {victim}"))
            && err.contains(segs.last().expect("last")),
        "the error names where recovery ended and where the archive does:\n{err}"
    );
    // the copy runs, at the point it reached: markers written before the damaged segment
    let (n, max) = r.markers();
    assert!(n > 3 && n < 40 && n == max, "markers 1..{max}, {n} rows");
    drop(r);
    // as the hint says: the damaged object moved out, the intact copy pushed, restored again
    let stored = err
        .split("move ")
        .nth(1)
        .and_then(|r| r.split(" out of the repository").next())
        .expect("the hint names the archived object")
        .to_string();
    assert!(stored.ends_with(&victim), "{stored}");
    std::fs::rename(&stored, a.ws.path().join("damaged-segment")).expect("move it out");
    let copy = copies.join(&victim);
    std::fs::write(&copy, &intact).expect("intact copy");
    ok(a.lb().arg("wal-push").arg(&copy));
    let (r, _) = restore(&a, "whole", &["--latest"]);
    // (markers 36-40 are in the segment still being written: `load` switches after 35)
    assert_markers_up_to(&r, 35, "every archived marker once the intact segment is");
}

/// A base backup of a copy that was itself restored holds that earlier recovery's
/// `recovery.log`, which this recovery appends to: only the lines it writes are read, so
/// an old cut before a tablespace does not make a whole restore to the end of the archive
/// look short (it did, exit 6, before the log was read from its length at start).
#[test]
fn an_earlier_recovery_s_log_in_the_backup_is_not_read_as_this_one_s() {
    let a = Archiving::start(None, false);
    a.load(1..=3);
    let log = a.cluster.data_dir().join("recovery.log");
    std::fs::write(
        &log,
        format!(
            "lifeboat wal-fetch: WAL segment 000000010000000000000002 creates a tablespace in /gone (at LSN 0/2000100): {}, so recovery ends just before it\nlifeboat wal-fetch: hint: an earlier recovery's hint\n",
            lifeboat_core::wal::TABLESPACE_CUT
        ),
    )
    .expect("an earlier recovery's log");
    a.backup();
    a.load(4..=9);
    a.archive_now();
    let (code, err, r) = latest_started(&a, "after-a-restore");
    assert_eq!(code, 0, "{err}");
    assert_markers_up_to(&r, 9, "every archived marker");
    let text = std::fs::read_to_string(r.data.join("recovery.log")).expect("recovery.log");
    assert!(
        text.contains("an earlier recovery's hint") && text.contains("database system is ready"),
        "the earlier lines are kept and this recovery's follow them: {text}"
    );
}

/// A cluster that logs in German (`lc_messages`, as `initdb --locale=de_DE.UTF-8` sets
/// it): lifeboat reads recovery's progress from the restored server's log, which it now
/// has written in PostgreSQL's own English, so where recovery stopped is reported.
#[test]
fn a_cluster_that_logs_in_another_language_reports_where_recovery_stopped() {
    let locale = common::german_locale();
    let a = Archiving::start_with(None, false, &format!("lc_messages = '{locale}'\n"));
    let (_, target) = backup_then_marker_11(&a);
    // (only where PostgreSQL was built with its translations is there anything to prove)
    let log = a.cluster.log_tail();
    if !log.contains("Datenbank") && !log.contains("Checkpoint") {
        eprintln!("this PostgreSQL logs no German: the case is not exercised\n{log}");
        return;
    }
    let (r, out) = restore(&a, "german", &["--target-time", &target]);
    assert!(out.contains("recovery stopping before"), "{out}");
    assert_markers_up_to(&r, 11, "PITR of a German-logging cluster");
}

/// A cluster whose superuser is not `postgres` (`initdb -U dba`, a container's
/// `POSTGRES_USER`) and that has no `postgres` database: a restore with `--start` and a
/// physical drill reach the restored copy as the role and database the backup recorded.
/// They used to wait for ever, silently, on "role postgres does not exist".
#[test]
fn a_cluster_without_a_postgres_role_or_database_is_restored_and_drilled() {
    let a = Archiving::start(None, false);
    a.load(1..=3);
    // renamed by another superuser: a session cannot rename its own role
    a.sql("create role renamer superuser login");
    let as_renamer = lifeboat_core::sources::postgres::conn::PgConn::local(
        a.cluster.socket_dir(),
        a.cluster.port(),
        "renamer",
        PgBin::new(None),
    );
    as_renamer
        .query(
            "template1",
            "alter role postgres rename to dba; alter database postgres rename to app",
        )
        .expect("rename the superuser and the postgres database");
    let dsn = a.cluster.dsn("postgres");
    let renamed = dsn
        .replace("user=postgres", "user=dba")
        .replace("dbname=postgres", "dbname=app");
    edited_config(&a.cfg, &a.cfg, &dsn, &renamed);
    let as_dba = lifeboat_core::sources::postgres::conn::PgConn::local(
        a.cluster.socket_dir(),
        a.cluster.port(),
        "dba",
        PgBin::new(None),
    );
    a.backup();
    as_dba
        .query(
            "app",
            "insert into markers (id) values (4); select pg_switch_wal()",
        )
        .expect("marker 4");
    archive_now(
        |q| as_dba.query("app", q).expect("sql").trim().to_string(),
        || a.cluster.log_tail(),
    );
    // --timeout: a regression fails the test instead of hanging it
    let (code, err, r) = latest_started(&a, "renamed");
    assert_eq!(code, 0, "{err}");
    let count = lifeboat_core::sources::postgres::conn::PgConn::local(
        &r.sock,
        r.port,
        "dba",
        PgBin::new(None),
    )
    .query("app", "select count(*) from markers")
    .expect("the restored copy answers as dba");
    assert_eq!(count.trim(), "4");
    drop(r);
    let out = ok(a.lb().args(["--json", "drill", "--kind", "physical"]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["passed"], true, "{report}");
}

/// The restored configuration names a file this host lacks (the lost host's certificate):
/// the server stops before recovery begins, and the hint says to fix the setting and start
/// it, not to empty the directory and restore again.
#[test]
fn a_restored_server_stopped_by_its_configuration_is_started_once_it_is_fixed() {
    let a = Archiving::start(None, false);
    a.marker(1);
    // in postgresql.auto.conf, so in the backup; a reload with it fails and changes nothing
    a.sql("alter system set ssl_cert_file = '/nonexistent/lost-host/server.crt'");
    a.sql("alter system set ssl = on");
    a.backup();
    a.marker(2);
    a.archive_now();
    let base = a.scratch("cert");
    let data = base.join("data");
    let port = free_port();
    let (code, _, err) = run(a
        .lb()
        .args(["restore", "--kind", "physical", "--latest", "--start"])
        .arg("--to-dir")
        .arg(&data)
        .arg("--socket-dir")
        .arg(&base)
        .args(["--port", &port.to_string()]));
    let r = Restored {
        data: data.clone(),
        sock: base.clone(),
        port,
    };
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("server.crt")
            && err.contains("stopped before recovery began")
            && err.contains("need not be restored again")
            && !err.contains("empty it"),
        "{err}"
    );
    // as the hint says: the setting changed, the server started
    let auto = data.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto).expect("auto.conf");
    std::fs::write(&auto, text.replace("ssl = 'on'", "ssl = 'off'")).expect("auto.conf");
    let started = as_pg_user("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(data.join("recovery.log"))
        .args(["-w", "-t", "60", "start"])
        .output()
        .expect("pg_ctl");
    assert!(started.status.success(), "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.sql("select pg_is_in_recovery()") == "t" {
        assert!(Instant::now() < deadline, "recovery did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_markers_up_to(&r, 2, "recovered after the fix");
}

/// Markers 1-5, a base backup, markers 6-15 archived; returns the backup id and a target
/// time that falls between markers 11 and 12.
fn backup_then_marker_11(a: &Archiving) -> (String, String) {
    a.load(1..=5);
    let first = a.backup();
    a.load(6..=10);
    let t = a.marker(11);
    std::thread::sleep(Duration::from_millis(300));
    a.load(12..=15);
    a.archive_now();
    let at: jiff::Timestamp = t.parse().expect("time");
    (
        first,
        (at + jiff::SignedDuration::from_millis(150)).to_string(),
    )
}

#[test]
fn a_second_timeline_is_archived_and_restored() {
    let a = Archiving::start(None, false);
    let (first, target) = backup_then_marker_11(&a);
    // a base backup on timeline 1 after the point timeline 2 will branch at
    let late = a.backup();
    // PITR to marker 11 with archiving kept: the promoted copy writes timeline 2
    let (r, out) = restore(&a, "tl2", &["--target-time", &target, "--archive"]);
    assert!(out.contains("timeline 2"), "{out}");
    assert_markers_up_to(&r, 11, "first PITR");
    r.sql("insert into markers (id) select g from generate_series(100, 120) g");
    archive_now(
        |q| r.sql(q),
        || "(the restored server on timeline 2)".to_string(),
    );
    assert!(a
        .ws
        .repo_path()
        .join("lifeboat-wal/main/00000002/00000002.history")
        .exists());
    // the later timeline-1 backup is not on timeline 2's history (as an old primary's after
    // a failover): status warns, and a restore to the latest timeline starts from the one
    // before the branch
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    // the source's server is still on timeline 1: what status calls recoverable is the
    // copy's history, and it fails saying so
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        err.contains("writes on timeline 1, but the archive's newest timeline 2 left timeline 1")
            && err.contains("--target-timeline 1`"),
        "{err}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&run(a.lb().args(["--json", "wal", "status"])).1).expect("json");
    assert_eq!(v["archiver"]["timeline"], 1, "{v}");
    assert_eq!(v["kept_writing"][0]["timeline"], 1, "{v}");
    assert_eq!(v["kept_writing"][0]["child"], 2, "{v}");
    assert!(
        err.contains(&format!("physical backup {} is on a timeline", &late[..8])),
        "{err}"
    );
    // and the original server, writing on timeline 1 past the branch, is named
    assert!(
        err.contains("warning: timeline 1 has WAL archived up to")
            && err.contains("where timeline 2 branched off it"),
        "{err}"
    );
    // a logical backup of the server left on timeline 1 is taken, and says what it is
    let (code, _, err) = run(a.lb().args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "this server writes on timeline 1, which the archive's newest timeline 2 left"
        ) && err.contains("restore --latest"),
        "{err}"
    );
    // asked for by id, the late backup is refused with the reason, not a missing segment
    let (code, _, err) = run(a
        .lb()
        .args(["restore", "--kind", "physical", "--dry-run", &late])
        .arg("--to-dir")
        .arg(a.ws.path().join("dry-late")));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("recovery to the latest timeline cannot start from it")
            && err.contains("--target-timeline current"),
        "{err}"
    );
    let dry = a.ws.path().join("dry-latest");
    let out = ok(a
        .lb()
        .args(["restore", "--kind", "physical", "--latest", "--dry-run"])
        .arg("--to-dir")
        .arg(&dry));
    assert!(
        out.contains(&format!("would restore physical backup {}", &first[..8]))
            && out
                .lines()
                .any(|l| l.starts_with("  restore_command: ") && l.ends_with("--timeline 2")),
        "{out}"
    );
    // the plan names the restore_command the server will run: told to follow timeline 2
    let plan: serde_json::Value = serde_json::from_str(&ok(a
        .lb()
        .args([
            "--json",
            "restore",
            "--kind",
            "physical",
            "--latest",
            "--dry-run",
        ])
        .arg("--to-dir")
        .arg(&dry)))
    .expect("json plan");
    assert!(
        plan["restore_command"]
            .as_str()
            .is_some_and(|c| c.ends_with("--timeline 2")),
        "{plan}"
    );
    // the old base backup, replayed along the history file onto timeline 2
    let (r2, _) = restore(&a, "tl2-again", &[&first]);
    assert_eq!(
        r2.markers(),
        (11 + 21, 120),
        "timeline 2's rows after the branch"
    );
    drop(r2);

    // the original server, still writing on timeline 1 past the branch (an old primary
    // after a failover): timeline 2's history left it before its base backup would end,
    // so no restore to the latest timeline could start from it, and none is kept
    let (code, _, err) = run(a.lb().args(["backup", "--kind", "physical"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("which the archive's newest timeline 2 left at LSN")
            && err.contains("current primary"),
        "{err}"
    );

    // the promoted copy becomes the source: a base backup on timeline 2 restores too
    let text = std::fs::read_to_string(&a.cfg).expect("config");
    let dsn = format!(
        "host={} port={} user=postgres dbname=postgres",
        r.sock.display(),
        r.port
    );
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("dsn = ") {
                format!("dsn = {dsn:?}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg2 = a.ws.path().join("timeline2.toml");
    std::fs::write(&cfg2, text).expect("config");
    share(&a.ws);
    let out = ok(lb(&cfg2).args(["--json", "backup", "--kind", "physical"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let on_tl2 = v["backups"][0]["id"].as_str().expect("id").to_string();
    let listed = common::list_json(&a.cfg);
    let meta = listed
        .iter()
        .find(|b| b["id"] == on_tl2.as_str())
        .expect("listed");
    assert_eq!(meta["physical"]["timeline"], 2);
    r.sql("insert into markers (id) select g from generate_series(200, 209) g");
    archive_now(
        |q| r.sql(q),
        || "(the restored server on timeline 2)".to_string(),
    );
    drop(r);
    // a dry run checks and prints the plan, and writes nothing, not even an audit entry
    let audited = || -> u64 {
        let out = ok(a.lb().args(["--json", "audit", "verify"]));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["entries"].as_u64().expect("entries")
    };
    let before = audited();
    let dry = a.scratch("dry").join("data");
    let out = ok(a
        .lb()
        .args(["restore", "--kind", "physical", "--start", "--dry-run"])
        .arg("--to-dir")
        .arg(&dry)
        .arg(&on_tl2));
    assert!(
        out.contains(&format!("would restore physical backup {}", &on_tl2[..8]))
            && out.contains("nothing was written"),
        "{out}"
    );
    assert!(!dry.exists(), "a dry run creates no data directory");
    assert_eq!(audited(), before, "a dry run is not audited");
    let (r3, out) = restore(&a, "tl2-backup", &[&on_tl2]);
    assert!(out.contains("timeline 3"), "{out}");
    // the backup holds the log of the first PITR, which stopped before a commit: this
    // recovery replayed to the end of the archive, and must not report that old stop
    assert!(
        std::fs::read_to_string(r3.data.join("recovery.log"))
            .expect("log")
            .contains("recovery stopping"),
        "the old log came along in the backup"
    );
    assert!(
        !out.contains("recovery stopping"),
        "a stale stop reason: {out}"
    );
    assert_eq!(
        r3.markers(),
        (11 + 21 + 10, 209),
        "rows written on timeline 2 after its base backup; log:\n{}",
        std::fs::read_to_string(r3.data.join("recovery.log")).unwrap_or_default()
    );
    // wal status shows both timelines, and the newest backup's chain along timeline 2 (and
    // fails: the source's server is the one left on timeline 1)
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("timeline 1:") && out.contains("timeline 2:"),
        "{out}"
    );
    assert!(
        out.contains(&format!("from backup {}", &on_tl2[..8])),
        "{out}"
    );
    // the restored copy on timeline 3 as the new primary, archiving still off (as every
    // restore leaves it): the archive holds WAL, so nothing new being archived is an alarm
    let cfg3 = a.ws.path().join("timeline3.toml");
    let dsn3 = format!(
        "host={} port={} user=postgres dbname=postgres",
        r3.sock.display(),
        r3.port
    );
    std::fs::write(
        &cfg3,
        std::fs::read_to_string(&cfg2)
            .expect("config")
            .replace(&dsn, &dsn3),
    )
    .expect("config");
    let (code, out, err) = run(lb(&cfg3).args(["wal", "status"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("archive_mode is off") && err.contains("does not archive WAL"),
        "{out}{err}"
    );
    assert!(err.contains("ALTER SYSTEM SET archive_mode = on"), "{err}");
    drop(r3);
    // timeline 2's history file gone from the archive (as when archiving was switched on
    // only after the promotion): a later recovery would not follow it, and status says so
    let history =
        a.ws.repo_path()
            .join("lifeboat-wal/main/00000002/00000002.history");
    let aside = history.with_extension("aside");
    std::fs::rename(&history, &aside).expect("move the history aside");
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("timeline 2 has segments but no 00000002.history in the archive")
            && out.contains("wal-push --source main PGDATA/pg_wal/00000002.history"),
        "{out}"
    );
    assert!(
        err.contains("timeline 2 is archived without its history file"),
        "{err}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&run(a.lb().args(["--json", "wal", "status"])).1).expect("json");
    assert_eq!(v["without_history"][0], 2, "{v}");
    std::fs::rename(&aside, &history).expect("put it back");
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert!(!out.contains("but no 00000002.history"), "{out}");
    // the source is still the server left on timeline 1
    assert_eq!(code, 10, "{out}{err}");
    assert!(err.contains("writes on timeline 1"), "{err}");
}

/// A copy promoted without archiving, whose history file alone was pushed (the README's
/// step, before its first segment is archived): a restore to the latest timeline follows
/// it, and PostgreSQL, not finding timeline 2's segments, asks for timeline 1's past the
/// branch. They are withheld: the restore ends before the branch, without production's
/// writes after it (the bad migration the first restore undid).
#[test]
fn a_newer_timeline_not_archived_yet_is_not_filled_with_the_old_one() {
    let a = Archiving::start(None, false);
    a.load(1..=5);
    let first = a.backup();
    // the branch below lies in a later segment than the backup's end
    a.archive_now();
    a.load(6..=10);
    let t = a.marker(11);
    std::thread::sleep(Duration::from_millis(300));
    a.load(12..=15);
    a.archive_now();
    let at: jiff::Timestamp = t.parse().expect("time");
    let target = (at + jiff::SignedDuration::from_millis(150)).to_string();
    let (r, out) = restore(&a, "tl2", &["--target-time", &target]);
    assert!(out.contains("timeline 2"), "{out}");
    assert_markers_up_to(&r, 11, "the copy");
    ok(a.lb()
        .args(["wal-push", "--source", "main"])
        .arg(r.data.join("pg_wal/00000002.history")));
    drop(r);
    // production, still on timeline 1, goes on writing past the branch
    a.load(16..=20);
    a.archive_now();
    // the plan says so before anything is written
    let (code, out, err) = run(a
        .lb()
        .args([
            "restore",
            "--kind",
            "physical",
            "--latest",
            "--dry-run",
            "--to-dir",
        ])
        .arg(a.ws.path().join("dry-latest")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("timeline 2, which recovery follows, has no segment after its branch"),
        "{err}"
    );
    let (r2, out) = restore(&a, "latest", &["--latest"]);
    assert!(out.contains(&first[..8]), "{out}");
    let (_, newest) = r2.markers();
    assert!(
        newest <= 11,
        "timeline 1's rows after the branch were replayed (newest marker {newest}): {out}\n{}",
        std::fs::read_to_string(r2.data.join("recovery.log")).unwrap_or_default()
    );
    assert!(
        std::fs::read_to_string(r2.data.join("recovery.log"))
            .unwrap_or_default()
            .contains("where timeline 2 branched off it: not handed out"),
        "{out}"
    );
}

/// Ctrl-C while the restored server replays WAL: the server is stopped (it would otherwise
/// fetch on alone, replay to the end and promote itself, unattended), and lifeboat says
/// what it left. (That the socket directory of lifeboat's own WAL server goes too is
/// checked in crates/core/tests/interrupt_serving.rs: here a hanging server stands in.)
#[test]
fn an_interrupted_recovery_stops_the_restored_server() {
    use std::os::unix::net::UnixListener;
    let a = Archiving::start(None, false);
    a.load(1..=5);
    a.backup();
    a.load(6..=10);
    a.archive_now();
    // a WAL server that answers the restore's probe of its restore_command (a file that is
    // not there), then takes every request and never answers: the replay waits on it
    let hang = a.ws.path().join("hang");
    std::fs::create_dir_all(&hang).unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = hang.join("wal.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = std::sync::Arc::clone(&held);
        std::thread::spawn(move || {
            let mut probed = false;
            for s in listener.incoming().flatten() {
                if !probed {
                    use std::io::{BufRead, Write};
                    let mut line = String::new();
                    let _ = std::io::BufReader::new(&s).read_line(&mut line);
                    let _ = (&s).write_all(b"OK missing\n");
                    probed = true;
                    continue;
                }
                held.lock().unwrap().push(s);
            }
        });
    }
    let base = a.scratch("interrupted");
    let data = base.join("data");
    let child = common::std_at(&a.exe, &a.cfg)
        .args(["restore", "--kind", "physical", "--start", "--latest"])
        .arg("--to-dir")
        .arg(&data)
        .arg("--socket-dir")
        .arg(&base)
        .args(["--port", &free_port().to_string()])
        .env("LIFEBOAT_WAL_SOCKET", &socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the replay never asked for WAL");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        data.join("postmaster.pid").exists(),
        "the server is not running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped the restored server in"), "{err}");
    held.lock().unwrap().clear();
    assert!(
        !data.join("postmaster.pid").exists(),
        "the restored server runs on after the interrupt"
    );
}

/// A new local repository whose source has no reachable server: for WAL pushed by hand.
fn wal_only_repository() -> (Workspace, PathBuf) {
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("main", "host=/nonexistent dbname=x")]);
    ok(lb(&cfg).arg("init"));
    (ws, cfg)
}

/// Pushes the archived `seg` (holding `data`) again through `push`, which succeeds, then
/// with byte 5 flipped (left so in `data` and on disk), which must fail with exit 6.
fn again_and_conflict(push: &dyn Fn(&Path) -> (i32, String, String), seg: &Path, data: &mut [u8]) {
    let (code, _, err) = push(seg);
    assert_eq!(code, 0, "pushing the same segment again succeeds: {err}");
    assert!(err.contains("already archived"), "{err}");
    data[5] ^= 1;
    std::fs::write(seg, &data).expect("segment");
    let (code, _, err) = push(seg);
    assert_eq!(
        code, 6,
        "a different segment under the same name fails: {err}"
    );
    assert!(err.contains("different content"), "{err}");
    // served or not, the operator is told what to do about it
    assert!(err.contains("hint: two clusters may be archiving"), "{err}");
}

/// A server that answers but refuses the login (a password rotated, the configuration
/// not yet): `wal status` prints what the archive holds and exits 3, since the checks
/// that ask the server did not run.
#[test]
fn wal_status_fails_when_the_server_refuses_the_login() {
    let c = lifeboat_testing::cluster();
    std::fs::write(
        c.data_dir().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    c.sql(
        "postgres",
        "ALTER ROLE postgres PASSWORD 'rotated-pw'; select pg_reload_conf()",
    )
    .unwrap();
    let ws = Workspace::new();
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres password=before-rotation dbname=postgres",
        c.port()
    );
    let cfg = ws.local_config(&[("main", &dsn)]);
    ok(lb(&cfg).arg("init"));
    let seg = ws.path().join("000000010000000000000001");
    std::fs::write(&seg, vec![0u8; 16 << 20]).unwrap();
    ok(lb(&cfg).arg("wal-push").arg(&seg));
    let (code, out, err) = run(lb(&cfg).args(["wal", "status"]));
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("timeline 1:"), "{out}");
    assert!(
        err.contains("the server refused lifeboat's login")
            && err.contains("password authentication failed"),
        "{err}"
    );
    assert!(!err.contains("before-rotation"), "{err}");
    let (code, _, _) = run(lb(&cfg).args(["--json", "wal", "status"]));
    assert_eq!(code, 3);
    // a server that does not answer, for an archive in use: its checks did not run, which
    // monitoring must not read as passed (exit 7)
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &dsn,
        "host=127.0.0.1 port=1 dbname=postgres connect_timeout=2",
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["wal", "status"]));
    assert_eq!(code, 7, "{out}{err}");
    assert!(
        out.contains("timeline 1:") && out.contains("archiver (server): not reachable"),
        "{out}"
    );
    assert!(
        err.contains("the server of source main did not answer")
            && err.contains("Connection refused"),
        "{err}"
    );
    let (code, out, _) = run(lb(&cfg).args(["--json", "wal", "status"]));
    assert_eq!(code, 7, "{out}");
}

#[test]
fn wal_push_is_idempotent_and_refuses_a_conflict() {
    let (ws, cfg) = wal_only_repository();
    let dir = ws.path().join("pg_wal");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let seg = dir.join("000000010000000000000042");
    let mut data = vec![0u8; 16 << 20];
    for (i, b) in data.iter_mut().enumerate().take(1 << 20) {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&seg, &data).expect("segment");
    ok(lb(&cfg).arg("wal-push").arg(&seg));
    // what a killed push left (its temporary file) goes with the next push once it is an
    // hour old; a younger one may be a push still running
    let timeline = ws.repo_path().join("lifeboat-wal/main/00000001");
    // a push killed between making the timeline's directory and setting its mode left the
    // umask's (a root shell's 0755): the next push gives it the repository's
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("mode").permissions().mode() & 0o7777
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&timeline, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for (name, age) in [(".tmp-killed", 7200), (".tmp-running", 0)] {
        let f = std::fs::File::create(timeline.join(name)).expect("temp file");
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(age))
            .expect("mtime");
    }
    let next = dir.join("000000010000000000000044");
    std::fs::write(&next, &data).expect("segment");
    ok(lb(&cfg).arg("wal-push").arg(&next));
    assert!(!timeline.join(".tmp-killed").exists());
    assert!(timeline.join(".tmp-running").exists());
    assert_eq!(mode(&timeline), mode(&ws.repo_path()) & 0o2775);
    again_and_conflict(&|p| run(lb(&cfg).arg("wal-push").arg(p)), &seg, &mut data);
    data[5] ^= 1;
    std::fs::write(&seg, &data).expect("segment");
    // the archived copy is the first one
    let back = ws.path().join("back");
    ok(lb(&cfg)
        .args(["wal-fetch", "000000010000000000000042"])
        .arg(&back));
    assert!(
        std::fs::read(&back).expect("fetched") == data,
        "fetch returns the first push"
    );
    let (code, _, err) = run(lb(&cfg)
        .args(["wal-fetch", "000000010000000000000043"])
        .arg(&back));
    assert_eq!(code, 4, "a missing segment exits non-zero: {err}");
    let (code, _, err) = run(lb(&cfg)
        .arg("wal-push")
        .arg(ws.path().join("lifeboat.toml")));
    assert_eq!(code, 2, "a file that is not WAL is refused: {err}");
    // the other files PostgreSQL archives: a promotion's partial segment, a base backup's
    // history file, a timeline history; each comes back byte for byte
    for (name, body) in [
        ("000000020000000000000042.partial", vec![3u8; 16 << 20]),
        (
            "000000010000000000000042.00000028.backup",
            b"START WAL LOCATION: 0/42000028\n".to_vec(),
        ),
        (
            "00000002.history",
            b"1\t0/42000000\tno recovery target specified\n".to_vec(),
        ),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, &body).expect("file");
        ok(lb(&cfg).arg("wal-push").arg(&f));
        let got = ws.path().join(format!("got-{name}"));
        ok(lb(&cfg).arg("wal-fetch").arg(name).arg(&got));
        assert!(std::fs::read(&got).expect("fetched") == body, "{name}");
    }
    // a restore_command with a wrong flag must stop recovery, not end it as "not archived"
    let (code, _, err) = run(lb(&cfg)
        .args(["wal-fetch", "--no-such-flag", "000000010000000000000043"])
        .arg(&back));
    assert_eq!(code, 126, "a bad wal-fetch command line is fatal: {err}");
    // so is a repository that cannot be opened (a wrong password): never "not archived"
    let (code, _, err) = run(lb(&cfg)
        .args(["wal-fetch", "--socket"])
        .arg(ws.path().join("none.sock"))
        .arg("000000010000000000000042")
        .arg(&back)
        .env("LIFEBOAT_PASSWORD", "not-the-password"));
    assert_eq!(
        code, 126,
        "a repository that does not open stops recovery: {err}"
    );
}

#[test]
fn an_interrupted_base_backup_leaves_no_snapshot_and_a_standalone_one_restores() {
    // no archiving: the base backup carries its own WAL (-X fetch)
    let c = lifeboat_testing::cluster();
    c.sql(
        "postgres",
        "create table z (id int, t text); \
         insert into z select g, repeat(md5(g::text), 8) from generate_series(1, 600000) g",
    )
    .expect("data");
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("main", &c.dsn("postgres"))]);
    ok(lb(&cfg).arg("init"));
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .arg("--config")
        .arg(&cfg)
        .args(["backup", "--kind", "physical"])
        .env_remove("LIFEBOAT_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // wait until files are streaming, then end the server side of the backup
    let mut killed = false;
    for _ in 0..3000 {
        let n = c
            .sql(
                "postgres",
                "select count(pg_terminate_backend(p.pid)) from pg_stat_progress_basebackup p \
                 where p.phase = 'streaming database files' and p.backup_streamed > 4000000",
            )
            .expect("query");
        if n.trim() == "1" {
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(killed, "never saw the base backup streaming");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an interrupted base backup fails: {err}"
    );
    assert!(
        err.contains("pg_basebackup"),
        "the error names pg_basebackup: {err}"
    );
    assert!(common::list_json(&cfg).is_empty(), "no backup is visible");
    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).expect("json");
    assert_eq!(stats["pending"], 0, "the pending snapshot is removed");

    ok(lb(&cfg).args(["backup", "--kind", "physical"]));
    let list = common::list_json(&cfg);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["physical"]["wal_included"], true);
    assert_eq!(list[0]["physical"]["timeline"], 1);
    // restored without any WAL archive, to the end of the backup
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = common::shared_binary(ws.path());
    let base = ws.path().join("standalone");
    std::fs::create_dir_all(&base).expect("mkdir");
    if let Some(u) = pg_user() {
        nix::unistd::chown(&base, Some(u.uid), Some(u.gid)).expect("chown");
    }
    if pg_user().is_some() {
        // the server runs as postgres: a config only root can read is caught up front
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let other = base.join("unreadable");
        let (code, _, err) = run(common::lb_at(&exe, &cfg)
            .args(["restore", "--kind", "physical", "--latest", "--to-dir"])
            .arg(&other));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("could not run its restore_command"), "{err}");
        assert!(
            err.contains("readable by this user"),
            "the hint is for an unreadable file, not a missing one: {err}"
        );
        assert!(!other.exists(), "nothing was written");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // a repository root made is root's alone (0700): its restore_command cannot read
        // it either, and the error says whose it is and how to share it
        let other = base.join("private-repo");
        let (code, _, err) = run(common::lb_at(&exe, &cfg)
            .args(["restore", "--kind", "physical", "--latest", "--to-dir"])
            .arg(&other));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("belongs to root (mode 700), and postgres may not read it")
                && err.contains("chown -R postgres"),
            "{err}"
        );
        assert!(!other.exists(), "nothing was written");
        // as the README says: give it to the PostgreSQL user
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(ws.repo_path())
            .status()
            .expect("chown");
        assert!(status.success());
    }
    // a physical restore of the latest backup into `dir` under base, started
    let restore_latest = |dir: &str, extra: &[&str]| {
        let port = free_port();
        let r = Restored {
            data: base.join(dir),
            sock: base.clone(),
            port,
        };
        let out = ok(common::lb_at(&exe, &cfg)
            .args(["restore", "--kind", "physical", "--latest"])
            .args(extra)
            .args(["--start", "--timeout", "120"])
            .arg("--to-dir")
            .arg(&r.data)
            .arg("--socket-dir")
            .arg(&base)
            .args(["--port", &port.to_string()]));
        (r, out)
    };
    let (r, out) = restore_latest("data", &["--target-immediate"]);
    assert_eq!(r.sql("select count(*) from z"), "600000");
    // nothing committed after the backup: the restore says how recent the data is
    assert!(
        out.contains("no transaction committed after the base backup was replayed: the data is as of the backup's end"),
        "{out}"
    );
    drop(r);

    // archiving switched on only after that backup: the archive begins with the segment
    // after the WAL the backup carries itself (it ends where the backup's stop switched
    // segments), which is no gap
    let stop = list[0]["physical"]["stop_lsn"].as_str().expect("stop lsn");
    let (hi, lo) = stop.split_once('/').expect("an LSN");
    let stop = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let next = stop / (16 << 20) + 1;
    let name = format!("00000001{:08X}{:08X}", next >> 8, next & 0xff);
    for _ in 0..2 {
        c.sql(
            "postgres",
            "insert into z select g, 'later' from generate_series(1, 100) g",
        )
        .expect("insert");
        c.sql("postgres", "select pg_switch_wal()").expect("switch");
    }
    ok(lb(&cfg)
        .arg("wal-push")
        .arg(c.data_dir().join("pg_wal").join(&name)));
    let (code, out, err) = run(lb(&cfg).args(["wal", "status"]));
    assert!(!out.contains("GAP"), "{out}{err}");
    assert!(out.contains(&format!("end of {name}")), "{out}");
    // exit 10 only for the server's archiver (switched off here), not for a gap
    assert!(
        code == 0 || err.contains("archive_mode"),
        "{code}: {out}{err}"
    );
    // and it is true: a restore replays the backup's own WAL, then the archived segment
    // (the first 100 rows written after the backup are in it, the next 100 are not).
    // The restore_command runs as the server's user: the archive root pushed is handed to
    // it, as an archive written by PostgreSQL's own archive_command would be
    if let Some(u) = pg_user() {
        let status = std::process::Command::new("chown")
            .args(["-R", &format!("{}:{}", u.uid, u.gid)])
            .arg(ws.repo_path())
            .status()
            .expect("chown");
        assert!(status.success());
    }
    let (r, _) = restore_latest("again", &[]);
    assert_eq!(r.sql("select count(*) from z"), "600100");
}

#[test]
fn a_physical_drill_replays_to_a_time_and_names_a_failing_check() {
    let a = Archiving::start(None, false);
    // its rows are in no base backup and no WAL: the drill says so, not a false alarm
    a.sql("create unlogged table scratchpad (id int); insert into scratchpad values (1)");
    let (_, target) = backup_then_marker_11(&a);
    let evidence = a.ws.path().join("evidence");
    let out = ok(a
        .lb()
        .args([
            "--json",
            "drill",
            "--kind",
            "physical",
            "--target-time",
            &target,
        ])
        .args([
            "--check",
            "select count(*) = 11 and max(id) = 11 from markers",
        ])
        .arg("--report-dir")
        .arg(&evidence));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["passed"], true, "{out}");
    assert_eq!(report["kind"], "physical");
    assert_eq!(
        report["reached"]["unlogged"],
        serde_json::json!(["postgres: public.scratchpad"]),
        "{out}"
    );
    assert!(
        report["not_checked"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n
                .as_str()
                .is_some_and(|n| n.contains("1 unlogged table(s) (postgres: public.scratchpad)")))),
        "{out}"
    );
    let names: Vec<&str> = report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["fetch", "verify", "replay", "hooks", "checks", "teardown"]
    );
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks.iter().any(|c| c["name"]
            .as_str()
            .is_some_and(|n| n.contains("pg_verifybackup"))
            && c["ok"] == true),
        "{out}"
    );
    assert!(
        report["reached"]["stop_reason"]
            .as_str()
            .is_some_and(|r| r.contains("recovery stopping")),
        "{out}"
    );
    assert!(evidence.read_dir().expect("evidence dir").count() >= 3);
    // the RPO is measured to the newest archived WAL, and says so
    assert!(report["rpo_point"]["lsn"].is_string(), "{out}");
    assert_eq!(report["restored"], "whole_cluster", "{out}");
    // read back for an auditor: a physical drill restored the whole cluster, not one database
    let id = report["id"].as_str().expect("id");
    let md = ok(a.lb().args(["report", "--drill", id, "--format", "md"]));
    assert!(
        md.contains("`main`, the whole cluster (hooks and assertions ran in database"),
        "{md}"
    );
    assert!(
        md.contains("measured to the newest archived WAL, up to LSN"),
        "{md}"
    );
    let book = ok(a.lb().arg("runbook"));
    assert!(
        book.contains("latest physical backup: `") && book.contains("` of the whole cluster"),
        "{book}"
    );
    assert!(
        book.contains("restore --kind physical --source main"),
        "{book}"
    );
    assert!(
        book.contains("select pg_switch_wal()"),
        "the PITR steps push the current WAL out first: {book}"
    );

    // the same drill with a false assertion fails and names it
    let (code, out, _) = run(a
        .lb()
        .args(["drill", "--kind", "physical", "--target-time", &target])
        .args(["--check", "select count(*) = 12 from markers"]));
    assert_eq!(code, 10, "{out}");
    assert!(
        out.contains("FAIL assert: select count(*) = 12 from markers"),
        "{out}"
    );
    // the assertions run in the database given (they ran in the source's first, whatever
    // --database said)
    let out = ok(a
        .lb()
        .args(["drill", "--kind", "physical", "--target-time", &target])
        .args(["--database", "template1"])
        .args(["--check", "select current_database() = 'template1'"]));
    assert!(out.contains("PASSED"), "{out}");
    // a time past the archive's end: the drill fails, and says what to do instead
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let (code, out, _) = run(a
        .lb()
        .args(["drill", "--kind", "physical", "--target-time", &later]));
    assert_eq!(code, 10, "{out}");
    assert!(
        out.contains("before the target") && out.contains("drill without --target-time"),
        "{out}"
    );
    // nothing is left running: only the archiving cluster answers
    let leftovers = std::process::Command::new("pgrep")
        .args(["-f", "lifeboat-drill-"])
        .output()
        .expect("pgrep");
    assert!(
        leftovers.stdout.is_empty(),
        "a drill server is still running: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
}

#[test]
fn a_backup_without_its_configuration_restores_and_its_drill_copy_is_isolated() {
    // Debian's packages keep postgresql.conf, pg_hba.conf and pg_ident.conf in /etc: the
    // base backup then holds none. Removing them from the running cluster's data directory
    // gives the same backup (the server keeps the settings it loaded).
    let a = Archiving::start(None, false);
    for f in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        std::fs::remove_file(a.cluster.data_dir().join(f)).expect("remove a configuration file");
    }
    // the lost host's socket directory, which the new host does not have (the running
    // server keeps its own until a restart)
    a.sql("alter system set unix_socket_directories = '/nonexistent/lost-host/run'");
    a.marker(1);
    a.backup();
    a.marker(2);
    a.archive_now();
    // the runbook says to keep the files the backups lack
    let book = ok(a.lb().arg("runbook"));
    assert!(
        book.contains(
            "its cluster's postgresql.conf, pg_hba.conf, pg_ident.conf (postgresql.conf was `"
        ) && book.contains("in no backup"),
        "{book}"
    );
    let (r, out) = restore(&a, "no-etc", &["--latest"]);
    assert!(
        out.contains("the backup held no postgresql.conf, pg_hba.conf, pg_ident.conf"),
        "{out}"
    );
    assert!(out.contains("recovery finished"), "{out}");
    // a later `pg_ctl restart` starts it as configured, not with lifeboat's recovery options
    let opts = std::fs::read_to_string(r.data.join("postmaster.opts")).expect("postmaster.opts");
    assert!(
        opts.contains("-D") && !opts.contains("logging_collector") && !opts.contains("lc_messages"),
        "{opts}"
    );
    // the original's settings come along as comments (its port, which this cluster
    // takes on its command line, would be applied), and nothing that may hold a password
    let conf =
        std::fs::read_to_string(r.data.join("postgresql.conf")).expect("postgresql.conf written");
    assert!(
        conf.contains("\n#wal_level = 'replica'\n") && !conf.contains("archive_command"),
        "{conf}"
    );
    let hba = std::fs::read_to_string(r.data.join("pg_hba.conf")).expect("pg_hba.conf written");
    assert!(
        hba.contains("local   all             all                                     peer"),
        "{hba}"
    );
    // lifeboat read the point reached through peer authentication, as the server's user
    let user = pg_user().map(|u| u.name);
    let count = lifeboat_core::sources::postgres::conn::PgConn::local(
        &r.sock,
        r.port,
        "postgres",
        PgBin::new(None),
    )
    .run_as(user.as_deref())
    .query("postgres", "select count(*) from markers")
    .expect("query the restored server as its own user");
    assert_eq!(count.trim(), "2");
    drop(r);

    // a drill's copy of it starts too, isolated: no TCP, no logical replication workers
    let out = ok(a
        .lb()
        .args(["--json", "drill", "--kind", "physical"])
        .args([
            "--check",
            "select current_setting('listen_addresses') = '' and current_setting('max_logical_replication_workers') = '0'",
        ])
        .args(["--check", "select count(*) = 2 from markers"]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["passed"], true, "{out}");

    // with the password only in this shell's environment, the restore works but warns
    // that a server started another way could not fetch WAL
    let env_only = a.ws.path().join("env-only.toml");
    let text = std::fs::read_to_string(&a.cfg).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env_only, text).expect("config");
    share(&a.ws);
    let base = a.scratch("env-only");
    let restore_env_only = |extra: &[&str]| {
        ok(common::lb_at(&a.exe, &env_only)
            .env("LIFEBOAT_PASSWORD", lifeboat_testing::REPO_PASSWORD)
            .args([
                "restore", "--kind", "physical", "--source", "main", "--latest",
            ])
            .args(extra)
            .arg("--to-dir")
            .arg(base.join("data")))
    };
    let warned =
        "warning: the restore_command reads the repository password from LIFEBOAT_PASSWORD";
    // the dry run warns the same way
    let out = restore_env_only(&["--dry-run"]);
    assert!(
        out.contains(warned) && out.contains("dry run: nothing was written"),
        "{out}"
    );
    let out = restore_env_only(&[]);
    assert!(out.contains(warned), "{out}");
    // without --start it says how to start the server
    assert!(
        out.contains("start it to replay WAL up to the target:") && out.contains("pg_ctl"),
        "{out}"
    );

    // after a host loss there is no configuration, only the repository (`--repo`)
    let host_lost = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::new(&a.exe);
        cmd.current_dir("/")
            .env("LIFEBOAT_PASSWORD", lifeboat_testing::REPO_PASSWORD)
            .env_remove("LIFEBOAT_CONFIG")
            .arg("--repo")
            .arg(a.ws.repo_path())
            .args(args);
        cmd
    };
    // the restore_command finds the archive by the source's name
    let bare = a.scratch("no-config");
    let out = ok(&mut host_lost(&[
        "restore",
        "--kind",
        "physical",
        "--source",
        "main",
        "--latest",
        "--dry-run",
        "--to-dir",
        &bare.join("data").display().to_string(),
    ]));
    assert!(out.contains("the restore_command answered"), "{out}");
    // a configuration with only its [repository], as that dry-run advises writing: the
    // repository names the source; one with a misspelled [[source]] hears the real name
    let repo_only = a.scratch("repo-only").join("lifeboat.toml");
    std::fs::write(
        &repo_only,
        format!(
            "[repository]\nurl = {:?}\n",
            a.ws.repo_path().display().to_string()
        ),
    )
    .expect("config");
    let with_config = |cfg: &Path, args: &[&str]| {
        let mut cmd = assert_cmd::Command::new(&a.exe);
        cmd.current_dir("/")
            .env("LIFEBOAT_PASSWORD", lifeboat_testing::REPO_PASSWORD)
            .env("LIFEBOAT_STATE_DIR", a.ws.path().join("state"))
            .arg("--config")
            .arg(cfg)
            .args(args);
        cmd
    };
    let dry = |cfg: &Path| {
        with_config(
            cfg,
            &[
                "restore",
                "--kind",
                "physical",
                "--latest",
                "--dry-run",
                "--to-dir",
                &bare.join("data").display().to_string(),
            ],
        )
    };
    let out = ok(&mut dry(&repo_only));
    assert!(out.contains("the restore_command answered"), "{out}");
    let out = ok(&mut with_config(&repo_only, &["config", "check"]));
    assert!(
        out.contains("holds backups of source(s) not configured here: main"),
        "{out}"
    );
    let misspelled = a.scratch("misspelled").join("lifeboat.toml");
    std::fs::write(
        &misspelled,
        format!(
            "[repository]\nurl = {:?}\n\n[[source]]\nname = \"mian\"\nkind = \"postgres\"\ndsn = \"host=/nonexistent dbname=x\"\n",
            a.ws.repo_path().display().to_string()
        ),
    )
    .expect("config");
    let (code, _, err) = common::run(&mut dry(&misspelled));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("source \"mian\" has no physical backup")
            && err.contains("physical backups of source(s) main"),
        "{err}"
    );

    // ... and the rest of what the on-call needs from there, with the repository alone
    // the evidence pack finds the WAL archive the repository holds
    let pack: serde_json::Value =
        serde_json::from_str(&ok(&mut host_lost(&["--json", "report"]))).expect("json");
    assert!(
        pack["wal"].as_array().is_some_and(|w| w
            .iter()
            .any(|l| l["source"] == "main" && l["segments"].as_u64() > Some(0))),
        "{pack}"
    );
    // the only source the repository names is the one meant, for a drill and `wal status`
    let out = ok(&mut host_lost(&[
        "--json",
        "drill",
        "--kind",
        "physical",
        "--check",
        "select count(*) = 2 from markers",
    ]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["passed"], true, "{out}");
    let out = ok(&mut host_lost(&["wal", "status"]));
    assert!(out.contains("main"), "{out}");
    // a backup needs the connection a configuration holds, and says so
    let (code, _, err) = common::run(&mut host_lost(&["backup", "--source", "main"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("no configuration file here")
            && err.contains("[[source]] named \"main\" with its dsn"),
        "{err}"
    );
    // the runbook written there covers the source and carries the audit head
    let book = ok(&mut host_lost(&["runbook"]));
    assert!(
        book.contains("## Source `main`")
            && book.contains("audit verify --expected-head ")
            && book.contains(
                "Write a `lifeboat.toml` (FILE) with the `[repository]` and a `[[source]]` named `main`"
            )
            && book.contains("`lifeboat --config FILE backup --source main`"),
        "{book}"
    );
    // the starter configuration it gives parses, with the source's name and databases
    let starter: String = book
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("   ```").next())
        .expect("a starter configuration")
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let parsed: toml::Value = toml::from_str(&starter).expect("toml");
    assert_eq!(
        parsed["source"][0]["name"].as_str(),
        Some("main"),
        "{starter}"
    );
    assert_eq!(
        parsed["repository"]["url"].as_str(),
        Some(a.ws.repo_path().display().to_string().as_str()),
        "{starter}"
    );
    // restored and started there: the lost host's socket directory is replaced
    let again = a.scratch("host-lost");
    let port = free_port();
    let out = ok(&mut host_lost(&[
        "restore",
        "--kind",
        "physical",
        "--source",
        "main",
        "--latest",
        "--start",
        "--timeout",
        "60",
        "--port",
        &port.to_string(),
        "--to-dir",
        &again.join("data").display().to_string(),
    ]));
    let here = if Path::new("/var/run/postgresql").is_dir() {
        PathBuf::from("/var/run/postgresql")
    } else {
        PathBuf::from("/tmp")
    };
    assert!(
        out.contains(
            "the backup's socket directory /nonexistent/lost-host/run is not on this host"
        ) && out.contains(&format!("connect: psql -h {} -p {port}", here.display())),
        "{out}"
    );
    let r = Restored {
        data: again.join("data"),
        sock: here,
        port,
    };
    // the written pg_hba.conf lets the server's own OS user in (peer)
    let count = lifeboat_core::sources::postgres::conn::PgConn::local(
        &r.sock,
        r.port,
        "postgres",
        PgBin::new(None),
    )
    .run_as(pg_user().map(|u| u.name).as_deref())
    .query("postgres", "select count(*) from markers")
    .expect("query the server restored on the new host");
    assert_eq!(count.trim(), "2");
}

#[test]
fn a_base_backup_taken_under_writes_restores_every_committed_row() {
    // a gentle backup, as on a busy server: a spread checkpoint (kept short here by the
    // server's checkpoint_timeout) and a read rate limit well above what this cluster needs
    let a = Archiving::start_with(
        None,
        false,
        "log_checkpoints = on\ncheckpoint_timeout = 30s\ncheckpoint_completion_target = 0.1\n",
    );
    let mut cfg = std::fs::read_to_string(&a.cfg).expect("config");
    cfg.push_str("checkpoint = \"spread\"\nmax_rate = \"1024M\"\n");
    std::fs::write(&a.cfg, cfg).expect("config");
    a.sql("create table churn (id bigserial primary key, pad text not null)");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let batches = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                a.sql("insert into churn (pad) select repeat(md5(g::text), 8) from generate_series(1, 500) g");
                n += 1;
            }
            n
        });
        a.backup();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("writer")
    });
    assert!(
        batches > 1,
        "the writes ran during the backup ({batches} batches)"
    );
    // the backup's checkpoint was requested without "immediate" (PostgreSQL logs a fast
    // one as "checkpoint starting: immediate force wait")
    let log = std::fs::read_to_string(
        a.cluster
            .data_dir()
            .parent()
            .expect("cluster dir")
            .join("server.log"),
    )
    .expect("server log");
    assert!(
        log.contains("checkpoint starting: force wait"),
        "a spread checkpoint: {log}"
    );
    assert!(
        !log.contains("immediate force wait"),
        "no fast checkpoint: {log}"
    );
    let rows = a.sql("select count(*) from churn");
    a.archive_now();
    let (r, _) = restore(&a, "under-writes", &["--latest"]);
    assert_eq!(
        r.sql("select count(*) from churn"),
        rows,
        "every committed row"
    );
    // and the restored table and its index agree (amcheck ships with PostgreSQL; it raises
    // an error, failing the query, on any inconsistency)
    r.sql("create extension if not exists amcheck");
    r.sql("select bt_index_parent_check('churn_pkey', true)");
}

#[test]
fn a_cluster_with_a_user_tablespace_is_refused_with_the_reason() {
    let c = lifeboat_testing::cluster();
    let dir = c.data_dir().parent().expect("cluster dir").join("space");
    std::fs::create_dir_all(&dir).expect("mkdir");
    if let Some(u) = pg_user() {
        nix::unistd::chown(&dir, Some(u.uid), Some(u.gid)).expect("chown");
    }
    c.sql(
        "postgres",
        &format!("create tablespace extra location '{}'", dir.display()),
    )
    .expect("tablespace");
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("main", &c.dsn("postgres"))]);
    ok(lb(&cfg).arg("init"));
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "physical"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tablespace") && err.contains("--kind logical"),
        "{err}"
    );
    assert!(common::list_json(&cfg).is_empty(), "no backup is visible");
}

/// A tablespace created while a base backup runs puts its creation into the WAL every
/// restore of that backup must replay, which the WAL guard refuses: such a backup could never
/// be restored, and being the newest it would hide the older ones. The backup checks again
/// after pg_basebackup; a wrapper creates the tablespace just as pg_basebackup ends, the
/// last moment that check must catch.
#[test]
fn a_tablespace_created_during_a_base_backup_discards_the_backup() {
    let a = Archiving::start(None, false);
    a.load(1..=2);
    let kept = a.backup();
    let ts = a.scratch("tablespace");
    let real = PgBin::new(None);
    let bin = a.scratch("bin");
    for entry in std::fs::read_dir(real.program("pg_dump").parent().expect("bin dir")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "pg_basebackup" {
            std::os::unix::fs::symlink(entry.path(), bin.join(entry.file_name())).unwrap();
        }
    }
    let wrapper = bin.join("pg_basebackup");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{} \"$@\"\nrc=$?\n{} -XAtqc \"create tablespace during location '{}'\" '{}' >&2 || exit 99\nexit $rc\n",
            real.program("pg_basebackup").display(),
            real.program("psql").display(),
            ts.display(),
            a.cluster.dsn("postgres"),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = std::fs::read_to_string(&a.cfg).unwrap();
    cfg.push_str(&format!("pg_bin_dir = {:?}\n", bin.display().to_string()));
    std::fs::write(&a.cfg, cfg).unwrap();

    let (code, out, err) = run(a.lb().args(["backup", "--kind", "physical"]));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("tablespace") && err.contains("created while the backup ran"),
        "the refusal says a tablespace appeared during the backup: {err}"
    );
    let ids: Vec<String> = common::list_json(&a.cfg)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![kept], "only the earlier backup is stored");
}

#[test]
fn a_failing_archive_command_stops_the_base_backup_with_the_reason() {
    let c = Cluster::start_with(
        &PgBin::new(None),
        "archive_mode = on\narchive_command = 'false'\nwal_level = replica\n",
    )
    .expect("cluster");
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("main", &c.dsn("postgres"))]);
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str("archive_timeout = \"3s\"\n");
    std::fs::write(&cfg, text).expect("config");
    ok(lb(&cfg).arg("init"));
    // without the watchdog PostgreSQL would wait for ever: the command timeout fails the test
    let (code, _, err) = run(lb(&cfg)
        .args(["backup", "--kind", "physical"])
        .timeout(Duration::from_secs(300)));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("archive_command keeps failing"), "{err}");
    assert!(common::list_json(&cfg).is_empty(), "no backup is visible");

    // wal status asks the server and reports the failing archiver, exiting 10
    let (code, out, err) = run(lb(&cfg).args(["wal", "status"]));
    assert_eq!(code, 10, "a failing archiver fails wal status:\n{out}{err}");
    assert!(out.contains("archiver (server): FAILING: 0000000"), "{out}");
    assert!(err.contains("archive_command is failing"), "{err}");
    // what waits in pg_wal is in no archive: the live RPO is at least its age
    assert!(
        out.contains("the oldest since") && out.contains("the live RPO is at least that"),
        "{out}"
    );
    let (code, out, err) = run(lb(&cfg).args(["--json", "wal", "status"]));
    assert_eq!(code, 10, "the same exit status with --json: {out}");
    assert!(err.contains("archive_command is failing"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["archiver"]["failing"], true, "{json}");
    assert!(
        json["archiver"]["failed_count"].as_u64() > Some(0),
        "{json}"
    );
    assert!(
        json["archiver"]["waiting"].as_u64() > Some(0),
        "segments wait: {json}"
    );
    assert!(
        json["archiver"]["oldest_waiting_since"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "{json}"
    );

    // archiving works again: no longer failing
    c.sql("postgres", "alter system set archive_command = 'true'")
        .expect("fix archive_command");
    c.sql("postgres", "select pg_reload_conf()")
        .expect("reload");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, _) = run(lb(&cfg).args(["wal", "status"]));
        if code == 0 {
            assert!(out.contains("archiver (server): archive_mode on"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "still failing:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // archiving "works", but into nowhere (`true`): a base backup relying on that archive
    // could never be restored, so none is kept
    let (code, _, err) = run(lb(&cfg)
        .args(["backup", "--kind", "physical"])
        .timeout(Duration::from_secs(300)));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("but not into source \"main\""), "{err}");
    // the archive_command to set is this configuration's, ready to paste
    assert!(
        err.contains(&format!(
            "--config {} wal-push --source main %p'",
            cfg.display()
        )),
        "{err}"
    );
    assert!(common::list_json(&cfg).is_empty(), "no backup is visible");

    // an archive_command that cannot be run (a path moved by an upgrade): PostgreSQL's
    // archiver dies of it (exit 127) and records no failure; only the segments waiting
    // in pg_wal show it, as stalled once the oldest waited longer than the RPO objective
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str("objectives = { rpo = \"2s\" }\n");
    std::fs::write(&cfg, text).expect("config");
    c.sql(
        "postgres",
        "alter system set archive_command = '/nonexistent/lifeboat wal-push %p'",
    )
    .expect("break archive_command");
    c.sql("postgres", "select pg_reload_conf()")
        .expect("reload");
    c.sql(
        "postgres",
        "create table if not exists stall (i int); insert into stall values (1); select pg_switch_wal()",
    )
    .expect("switch");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = run(lb(&cfg).args(["wal", "status"]));
        if code == 10 {
            assert!(
                out.contains("archiver (server): STALLED: nothing archived for "),
                "{out}"
            );
            assert!(
                err.contains("has archived nothing for")
                    && err.contains("archive_command must name lifeboat by its full path"),
                "{err}"
            );
            break;
        }
        assert_eq!(code, 0, "{out}{err}");
        assert!(Instant::now() < deadline, "never called stalled:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, out, _) = run(lb(&cfg).args(["--json", "wal", "status"]));
    assert_eq!(code, 10, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(json["archiver_stalled_secs"].as_u64() >= Some(2), "{json}");
    // config check, the place one looks after editing it, fails on it at once
    let (code, out, _) = run(lb(&cfg).args(["config", "check"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains(
                "archive_command runs /nonexistent/lifeboat, which does not exist on this host"
            )),
        "{out}"
    );
    // a bare name: found only on the server's PATH
    c.sql(
        "postgres",
        "alter system set archive_command = 'lifeboat wal-push %p'",
    )
    .expect("bare archive_command");
    c.sql("postgres", "select pg_reload_conf()")
        .expect("reload");
    let out = run(lb(&cfg).args(["config", "check"])).1;
    assert!(
        out.lines().any(|l| l.starts_with("note")
            && l.contains("archive_command names \"lifeboat\" without its path")),
        "{out}"
    );
    assert_eq!(json["archiver"]["failing"], false, "{json}");

    // the server gone: the repository's part still prints, says the server is not
    // reachable, and exits 7: the checks that ask it did not run, which monitoring must
    // not read as passed
    drop(c);
    let (code, out, _) = run(lb(&cfg).args(["wal", "status"]));
    assert_eq!(code, 0, "nothing was archived here: {out}");
    assert!(out.contains("archiver (server): not reachable"), "{out}");
}

/// `lifeboat wal serve` as this user; killed when a test fails before it stops it.
struct Server(std::process::Child);

impl Server {
    fn start(ws: &Workspace, cfg: &Path, socket: &Path) -> Self {
        let server = Self(
            std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
                .arg("--config")
                .arg(cfg)
                .args(["wal", "serve", "--socket"])
                .arg(socket)
                .env_remove("LIFEBOAT_PASSWORD")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(ws.path().join("serve.log")).expect("log"))
                .spawn()
                .expect("start lifeboat wal serve"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "wal serve did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Server {
    fn terminate(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal");
    }

    fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "wal serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_backlog_is_pushed_ahead_and_checked_when_postgres_asks_for_it() {
    let (ws, cfg) = wal_only_repository();
    let socket = ws.path().join("wal.sock");
    let _server = Server::start(&ws, &cfg, &socket);
    // a pg_wal with a backlog: six segments marked ready, as PostgreSQL leaves them
    let pg_wal = ws.path().join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status")).expect("mkdir");
    let name = |n: u32| format!("0000000100000000000000{n:02X}");
    for n in 1..=6 {
        // 8 MiB that compresses poorly: each push takes a while
        let data = common::noise(8 << 20, 0x9E37_79B9_7F4A_7C15 ^ u64::from(n));
        std::fs::write(pg_wal.join(name(n)), data).expect("segment");
        std::fs::write(pg_wal.join(format!("archive_status/{}.ready", name(n))), "")
            .expect("ready");
    }
    let archived = |n: u32| {
        ws.repo_path()
            .join("lifeboat-wal/main/00000001")
            .join(name(n))
            .exists()
    };
    let wait_for = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !archived(n) {
            assert!(
                Instant::now() < deadline,
                "{} was not pushed ahead",
                name(n)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let push = |n: u32| {
        run(lb(&cfg)
            .arg("wal-push")
            .arg("--socket")
            .arg(&socket)
            .arg(pg_wal.join(name(n)))
            .timeout(Duration::from_secs(120)))
    };

    let (code, _, err) = push(1);
    assert_eq!(code, 0, "{err}");
    // the next two are being pushed, no more: nothing asked for the third yet
    assert!(!archived(4), "only two segments are pushed ahead at once");
    // asked for at once, 2 is most likely still being pushed ahead: the request waits for
    // that push (a command timeout turns a lost wake-up into a failure, not a hang)
    let (code, _, err) = push(2);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("already archived"),
        "a segment pushed ahead is reported as stored: {err}"
    );
    wait_for(3);
    // the server logs a push once it is stored: the file may be there a moment before
    let serve_log = || std::fs::read_to_string(ws.path().join("serve.log")).expect("log");
    let ahead = |n: u32| format!("AHEAD {}: OK stored", pg_wal.join(name(n)).display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(serve_log().contains(&ahead(2)) && serve_log().contains(&ahead(3)))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = serve_log();
    for n in [2, 3] {
        assert!(log.contains(&ahead(n)), "{log}");
    }
    assert!(!log.contains("bad request"), "{log}");

    // a file that changed after it was pushed ahead is not taken for the stored one
    let (code, _, err) = push(3);
    assert_eq!(code, 0, "{err}");
    wait_for(4);
    std::fs::write(pg_wal.join(name(4)), vec![9u8; 8 << 20]).expect("rewrite");
    let (code, _, err) = push(4);
    assert_eq!(
        code, 6,
        "the changed file conflicts with what was stored: {err}"
    );
    assert!(err.contains("different content"), "{err}");

    // the rest of the backlog goes through; every object opens to its file
    for n in 5..=6 {
        let (code, _, err) = push(n);
        assert_eq!(code, 0, "{err}");
    }
    for n in [1, 2, 3, 5, 6] {
        let back = ws.path().join(format!("back-{n}"));
        ok(lb(&cfg)
            .arg("wal-fetch")
            .arg("--socket")
            .arg(ws.path().join("none.sock"))
            .arg(name(n))
            .arg(&back));
        assert!(
            std::fs::read(&back).expect("fetched")
                == std::fs::read(pg_wal.join(name(n))).expect("segment"),
            "{} round-trips",
            name(n)
        );
    }
}

#[test]
fn a_served_push_is_idempotent_refuses_a_conflict_and_the_server_stops_on_sigterm() {
    let (ws, cfg) = wal_only_repository();
    let socket = ws.path().join("wal.sock");
    // a directory given with --socket is the operator's: its mode must stay as it is
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut server = Server::start(&ws, &cfg, &socket);
    // a second server started by mistake says only that it cannot serve
    let (code, _, err) = run(lb(&cfg).args(["wal", "serve", "--socket"]).arg(&socket));
    assert!(
        code != 0 && err.contains("already listening") && !err.contains("serving the WAL"),
        "{err}"
    );
    let push = |seg: &Path| {
        run(lb(&cfg)
            .arg("wal-push")
            .arg("--socket")
            .arg(&socket)
            .arg(seg))
    };
    // several MiB of output, so the object is written in many pieces
    let dir = ws.path().join("pg_wal");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let seg = dir.join("000000010000000000000007");
    let mut data = common::noise(16 << 20, 0x9E37_79B9_7F4A_7C15);
    // random pages between pages of a repeating pattern: compressible, not trivially
    for (i, b) in data.iter_mut().enumerate() {
        if (i / 4096) % 2 == 1 {
            *b = (i % 97) as u8;
        }
    }
    std::fs::write(&seg, &data).expect("segment");

    let (code, _, err) = push(&seg);
    assert_eq!(code, 0, "served push: {err}");
    let object = ws
        .repo_path()
        .join("lifeboat-wal/main/00000001/000000010000000000000007");
    let stored = std::fs::metadata(&object).expect("the object is in the repository");
    assert!(
        stored.len() > 4 << 20 && stored.len() < 16 << 20,
        "compressed, several pieces: {} bytes",
        stored.len()
    );
    let log = std::fs::read_to_string(ws.path().join("serve.log")).expect("log");
    assert!(
        log.contains("PUSH") && log.contains("OK stored"),
        "served: {log}"
    );

    again_and_conflict(&push, &seg, &mut data);
    data[5] ^= 1;
    std::fs::write(&seg, &data).expect("segment");

    // fetched through the server, and alone (the object opens with the one-shot AEAD)
    for (how, via_socket) in [("served", true), ("alone", false)] {
        let back = ws.path().join(format!("back-{how}"));
        let mut cmd = lb(&cfg);
        cmd.arg("wal-fetch");
        if via_socket {
            cmd.arg("--socket").arg(&socket);
        } else {
            cmd.arg("--socket").arg(ws.path().join("none.sock"));
        }
        ok(cmd.arg("000000010000000000000007").arg(&back));
        assert!(
            std::fs::read(&back).expect("fetched") == data,
            "{how} fetch returns the pushed segment"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(object.parent().expect("dir"))
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files: {leftovers:?}");
    assert_eq!(
        std::fs::metadata(ws.path())
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o755,
        "wal serve left the socket's directory alone"
    );

    // a repository that vanished (unmounted, moved) is an error, never "not archived":
    // that would end a recovery early
    let moved = ws.path().join("repo-moved");
    std::fs::rename(ws.repo_path(), &moved).expect("move the repository away");
    let (code, _, err) = run(lb(&cfg)
        .args(["wal-fetch", "--socket"])
        .arg(&socket)
        .arg("000000010000000000000008")
        .arg(ws.path().join("back-gone")));
    std::fs::rename(&moved, ws.repo_path()).expect("move the repository back");
    assert_eq!(code, 126, "a vanished repository stops recovery: {err}");
    assert!(err.contains("is gone"), "{err}");

    // an idle server notices SIGTERM, exits cleanly and removes its socket
    server.terminate();
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert!(status.success(), "wal serve exits 0 on SIGTERM: {status}");
    assert!(!socket.exists(), "the socket is removed");
}

#[test]
fn a_push_by_root_leaves_the_archive_to_its_owner() {
    // the README's history-file push after a PITR, run as root: the new timeline's
    // directory must stay writable by the PostgreSQL user who archives into it
    use std::os::unix::fs::MetadataExt;
    let Some(pg) = pg_user() else {
        return;
    };
    let (ws, cfg) = wal_only_repository();
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{}:", pg.name)])
        .arg(ws.repo_path())
        .status()
        .expect("chown");
    assert!(chown.success());
    let history = ws.path().join("00000002.history");
    std::fs::write(&history, "1\t0/3000000\tno recovery target specified\n").expect("history");
    ok(lb(&cfg)
        .args(["wal-push", "--socket"])
        .arg(ws.path().join("none.sock"))
        .arg(&history));
    let dir = ws.repo_path().join("lifeboat-wal/main/00000002");
    // as private as the repository, not open to every user by a root shell's umask
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("mode").mode() & 0o777;
    assert_eq!(mode(&dir), mode(&ws.repo_path()), "{}", dir.display());
    for p in [dir.clone(), dir.join("00000002.history")] {
        let m = std::fs::metadata(&p).expect("stored");
        assert_eq!(
            m.uid(),
            pg.uid.as_raw(),
            "{} belongs to {}",
            p.display(),
            pg.name
        );
    }
    // so does any other command that writes (here a verify, which appends to the audit
    // log and creates its lock file): nothing in the repository is left to root
    ok(lb(&cfg).args(["verify", "--all"]));
    let left = std::process::Command::new("find")
        .arg(ws.repo_path())
        .args(["-user", "root"])
        .output()
        .expect("find");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(left.trim().is_empty(), "left to root:\n{left}");
}

#[test]
fn a_stopping_server_finishes_the_push_under_way() {
    use std::io::{BufRead, Write};
    let (ws, cfg) = wal_only_repository();
    let socket = ws.path().join("wal.sock");
    let mut server = Server::start(&ws, &cfg, &socket);
    let seg = ws.path().join("000000010000000000000003");
    std::fs::write(&seg, common::noise(16 << 20, 0xD1A1)).expect("segment");
    // a client that has connected but not yet sent its request: the server has accepted
    // it (it polls at once on a pending connection) and waits for the line
    let mut client = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    std::thread::sleep(Duration::from_millis(500));
    server.terminate();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.0.try_wait().expect("wait").is_none(),
        "wal serve waits for the request under way"
    );
    assert!(!socket.exists(), "no new requests are taken");
    writeln!(client, "PUSH {}", seg.display()).expect("send");
    let mut reply = String::new();
    std::io::BufReader::new(&client)
        .read_line(&mut reply)
        .expect("reply");
    assert_eq!(
        reply.trim_end(),
        "OK stored",
        "the push under way completes"
    );
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert!(status.success(), "then wal serve exits 0: {status}");
    let back = ws.path().join("back");
    ok(lb(&cfg)
        .args(["wal-fetch", "--socket"])
        .arg(ws.path().join("none.sock"))
        .arg("000000010000000000000003")
        .arg(&back));
    assert!(
        std::fs::read(&back).expect("fetched") == std::fs::read(&seg).expect("segment"),
        "the segment is in the repository"
    );
}

#[test]
fn a_server_on_the_older_socket_name_still_serves() {
    // a `wal serve` started before the socket name carried the repository's hash keeps
    // serving clients that give no --socket, with a note to restart it
    let source = format!("legacy{}", std::process::id());
    let ws = Workspace::new();
    let cfg = ws.local_config(&[(source.as_str(), "host=/nonexistent dbname=x")]);
    ok(lb(&cfg).arg("init"));
    let socket = lifeboat_core::wal::spool::legacy_socket(&source);
    let mut server = Server::start(&ws, &cfg, &socket);
    let seg = ws.path().join("000000010000000000000001");
    std::fs::write(&seg, common::noise(1 << 20, 0x1E6A)).expect("segment");
    let (code, _, err) = run(lb(&cfg).arg("wal-push").arg(&seg));
    server.terminate();
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("older socket"), "the client says so: {err}");
    let log = std::fs::read_to_string(ws.path().join("serve.log")).expect("log");
    assert!(
        log.contains("PUSH") && log.contains("OK stored"),
        "served: {log}"
    );
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the socket is removed");
}

#[test]
fn a_served_push_on_s3_pushes_ahead_refuses_a_conflict_and_fetches() {
    // the store push-ahead is meant for, and the S3 code path of a conflict (no link(2))
    let mut g = Garage::start();
    let ws = Workspace::new();
    let secret = ws.path().join("s3.secret");
    let cfg = ws.write_config(
        &g.repository_toml("wal-served", &secret),
        &[("main", "host=/nonexistent dbname=x")],
    );
    ok(lb(&cfg).arg("init"));
    let socket = ws.path().join("wal.sock");
    let _server = Server::start(&ws, &cfg, &socket);
    let pg_wal = ws.path().join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status")).expect("mkdir");
    let name = |n: u32| format!("0000000100000000000000{n:02X}");
    for n in 1..=3 {
        let data = common::noise(4 << 20, 0x5EED ^ u64::from(n));
        std::fs::write(pg_wal.join(name(n)), data).expect("segment");
        std::fs::write(pg_wal.join(format!("archive_status/{}.ready", name(n))), "")
            .expect("ready");
    }
    let push = |p: &Path| {
        run(lb(&cfg)
            .arg("wal-push")
            .arg("--socket")
            .arg(&socket)
            .arg(p)
            .timeout(Duration::from_secs(120)))
    };
    for n in 1..=3 {
        let (code, _, err) = push(&pg_wal.join(name(n)));
        assert_eq!(code, 0, "{}: {err}", name(n));
    }
    let log = std::fs::read_to_string(ws.path().join("serve.log")).expect("log");
    assert!(log.contains("AHEAD"), "the backlog was pushed ahead: {log}");
    let mut data = std::fs::read(pg_wal.join(name(3))).expect("segment");
    again_and_conflict(&push, &pg_wal.join(name(3)), &mut data);
    data[5] ^= 1;
    // fetched back as stored, through the server; a missing one is "not archived" (4)
    let back = ws.path().join("back");
    ok(lb(&cfg)
        .args(["wal-fetch", "--socket"])
        .arg(&socket)
        .arg(name(3))
        .arg(&back));
    assert!(std::fs::read(&back).expect("fetched") == data);
    let (code, _, err) = run(lb(&cfg)
        .args(["wal-fetch", "--socket"])
        .arg(&socket)
        .arg(name(9))
        .arg(&back));
    assert_eq!(code, 4, "{err}");
    // (no PostgreSQL behind this source: the server's part is not asked, exit 7)
    let (code, out, err) = run(lb(&cfg).args(["wal", "status"]));
    assert_eq!(code, 7, "{out}{err}");
    assert!(
        out.contains(&format!("timeline 1: {} .. {}", name(1), name(3))),
        "{out}"
    );
    // the store gone while the server runs: the push fails (PostgreSQL keeps the segment
    // and retries), saying what it was doing and why, not the client library's context
    g.stop();
    std::fs::write(pg_wal.join(name(4)), common::noise(1 << 20, 0x44)).expect("segment");
    let (code, _, err) = push(&pg_wal.join(name(4)));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "checking whether lifeboat-wal/main/00000001/{} is already archived",
            name(4)
        )) && err.contains("the S3 store did not answer")
            && err.to_lowercase().contains("refused"),
        "{err}"
    );
}

/// A socket given by hand (`--socket`, `LIFEBOAT_WAL_SOCKET`) whose server serves another
/// repository: the request names its archive, the server refuses it, and the client
/// pushes into its own configuration's repository alone. It used to land in the server's.
#[test]
fn a_server_of_another_repository_is_not_used_through_a_given_socket() {
    let (ws_a, cfg_a) = wal_only_repository();
    let (ws_b, cfg_b) = wal_only_repository();
    let socket = ws_a.path().join("wal.sock");
    let mut server = Server::start(&ws_a, &cfg_a, &socket);
    let seg = ws_b.path().join("000000010000000000000003");
    std::fs::write(&seg, common::noise(1 << 20, 0x5EED)).expect("segment");
    let (code, _, err) = run(lb(&cfg_b)
        .arg("wal-push")
        .arg("--socket")
        .arg(&socket)
        .arg(&seg));
    let fetched = ws_b.path().join("fetched");
    let (fetch_code, _, fetch_err) = run(lb(&cfg_b)
        .arg("wal-fetch")
        .arg("--socket")
        .arg(&socket)
        .arg("000000010000000000000003")
        .arg(&fetched));
    server.terminate();
    server.wait_for_exit(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ignoring the WAL server"), "{err}");
    let object = "lifeboat-wal/main/00000001/000000010000000000000003";
    assert!(
        ws_b.repo_path().join(object).exists(),
        "in its own repository"
    );
    assert!(
        !ws_a.repo_path().join(object).exists(),
        "not in the server's"
    );
    assert_eq!(fetch_code, 0, "{fetch_err}");
    assert_eq!(
        std::fs::read(&fetched).expect("fetched"),
        std::fs::read(&seg).expect("segment")
    );
}

/// The newest segments deleted from the archive (or a repository rolled back, or a server
/// archiving into another one) leave no gap to see: the archive just ends earlier. The
/// server knows what it archived last, and `wal status` holds the two together.
#[test]
fn newest_segments_gone_from_the_archive_are_noticed_from_the_server() {
    let a = Archiving::start(None, false);
    a.load(1..=3);
    a.backup();
    a.load(4..=10);
    a.archive_now();
    ok(a.lb().args(["wal", "status"]));
    let segs = archived_segments(&a);
    let newest = segs.last().expect("segments");
    let name = newest
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    std::fs::remove_file(newest).expect("remove the newest segment");
    let (code, out, err) = run(a.lb().args(["wal", "status"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        err.contains(&format!("the server says it archived {name}"))
            && err.contains("does not hold it"),
        "{err}"
    );
    let (code, out, _) = run(a.lb().args(["--json", "wal", "status"]));
    assert_eq!(code, 10, "{out}");
}

/// A guest of a served recovery testing its limits (perl: in every Debian's perl-base);
/// prints what each request got back, `[]` for a connection closed without an answer.
const GUEST_LIMITS: &str = r#"
my ($path, $key) = @ARGV;
$| = 1;
# a connection the server closed: the write fails, the read gets nothing
$SIG{PIPE} = 'IGNORE';
sub conn { IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or die "connect: $!" }
sub ask { my ($s, $what) = @_; print $s $what; my $r = <$s> // ''; chomp $r; return $r }
my $idle = conn();
my $since = time;
my @held = map { conn() } 1 .. 7;
print "ninth: [", ask(conn(), "FETCH\@$key 000000010000000000000042\n"), "]\n";
close $_ for @held;
print "oversize: [", ask(conn(), "FETCH\@$key " . ("0" x 5000)), "]\n";
print "push: [", ask(conn(), "PUSH\@$key /etc/shadow\n"), "]\n";
print "other archive: [", ask(conn(), "FETCH\@other 000000010000000000000042\n"), "]\n";
sleep 1 while time - $since < 12;
print "idle: [", ask($idle, "FETCH\@$key 000000010000000000000042\n"), "]\n";
"#;

/// A root lifeboat serving a restored server's recovery (as `restore --kind physical
/// --start` does when the server runs as another user) hands that user WAL, and nothing
/// else: it never writes or reads a path the other user names, so a push of a file only
/// root may read is not served (the client works alone, and fails on the file as that
/// user), and a fetch arrives as the client's own file.
#[test]
fn a_recovery_served_as_root_gives_the_server_s_user_wal_and_nothing_else() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: a server for another user needs root; nothing to check here");
        return;
    }
    let (ws, cfg) = wal_only_repository();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = ws.path().join("pg_wal");
    std::fs::create_dir_all(&dir).unwrap();
    let seg = dir.join("000000010000000000000042");
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&seg, &data).unwrap();
    ok(lb(&cfg).arg("wal-push").arg(&seg));

    let repo = lifeboat_core::repository::Repo::open(
        &lifeboat_core::config::RepositoryConfig {
            url: Some(ws.repo_path().display().to_string()),
            ..Default::default()
        },
        &lifeboat_core::secret::Secret::new(lifeboat_testing::REPO_PASSWORD),
        rustic_core::NoProgressBars,
    )
    .unwrap();
    let store = lifeboat_core::wal::WalStore::new(&repo, "main").unwrap();
    let key = lifeboat_core::wal::spool::archive_key("main", repo.location());
    let serving = lifeboat_core::wal::spool::Serving::start(
        store,
        &key,
        16 << 20,
        Some((nobody.uid.as_raw(), nobody.gid.as_raw())),
    )
    .unwrap();
    // where nobody may write, reached through directories nobody may enter
    let theirs = tempfile::Builder::new()
        .prefix("lifeboat-guest-")
        .tempdir_in("/tmp")
        .unwrap();
    nix::unistd::chown(theirs.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    // the test binary may be where nobody cannot reach it (CI's target under /root)
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = common::shared_binary(ws.path());
    let as_nobody = |args: &[&str], file: &Path| {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "nobody", "--"])
            .arg(&exe)
            .arg("--repo")
            .arg(ws.repo_path())
            .args(args)
            .arg("--socket")
            .arg(serving.socket())
            .arg(file)
            .current_dir("/")
            .env_remove("LIFEBOAT_PASSWORD");
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let got = theirs.path().join("000000010000000000000042");
    let (code, err) = as_nobody(
        &["wal-fetch", "--source", "main", "000000010000000000000042"],
        &got,
    );
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&got).unwrap() == data);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&got).unwrap().uid(), nobody.uid.as_raw());
    assert_eq!(serving.served(), 1);

    // a file only root may read, named as WAL: the server does not push it for nobody
    let secret = dir.join("000000010000000000000043");
    std::fs::write(&secret, vec![7u8; 16 << 20]).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = as_nobody(&["wal-push", "--source", "main"], &secret);
    assert_ne!(code, 0, "{err}");
    // nor does a fetch write where nobody may not, on root's behalf
    let planted = Path::new("/root/lifeboat-guest-planted");
    let (code, err) = as_nobody(
        &["wal-fetch", "--source", "main", "000000010000000000000042"],
        planted,
    );
    assert_ne!(code, 0, "{err}");
    assert!(!planted.exists(), "root wrote where nobody asked");

    // nobody cannot hold the root server's threads or memory: an idle connection is
    // dropped after 10 s, a request line of more than 4 KiB is not read, at most 8
    // connections are served at once (the ninth is told to work alone), and anything but a
    // fetch of this archive is answered with `OK alone`
    let key = lifeboat_core::wal::spool::archive_key("main", &ws.repo_path().display().to_string());
    let before = serving.served();
    let out = std::process::Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "perl",
            "-MIO::Socket::UNIX",
            "-e",
            GUEST_LIMITS,
        ])
        .arg(serving.socket())
        .arg(&key)
        .current_dir("/")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ninth: [OK alone]",
        "oversize: []",
        "push: [OK alone]",
        "other archive: [OK alone]",
        "idle: []",
    ] {
        assert!(said.contains(line), "{line:?} missing from:\n{said}");
    }
    // once those connections are gone, nobody is served again (the server may take a
    // moment to see the last ones close)
    let again = theirs.path().join("again");
    let served = (0..50).any(|_| {
        let (code, _) = as_nobody(
            &["wal-fetch", "--source", "main", "000000010000000000000042"],
            &again,
        );
        code == 0 || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(served, "nobody was not served after the limits test");
    assert_eq!(
        serving.served(),
        before + 1,
        "only the last fetch was served"
    );
    drop(serving);
    let (code, _, _) = run(lb(&cfg)
        .args(["wal-fetch", "000000010000000000000043"])
        .arg(ws.path().join("leaked")));
    assert_eq!(code, 4, "the root-only file reached the archive");
}

/// The 03:00 question, "which transaction deleted the orders, and when": `wal inspect`
/// reads it from the archive, names the table, and gives the restore that stops just
/// before it.
#[test]
fn wal_inspect_finds_the_transaction_that_deleted_the_rows() {
    let a = Archiving::start(None, false);
    a.sql("create table orders (id int primary key, note text)");
    a.sql("insert into orders select g, 'order ' || g from generate_series(1, 300) g");
    a.backup();
    a.archive_now();
    let before = jiff::Timestamp::now();
    let xid = a.sql("begin; delete from orders where id % 3 = 0; select txid_current(); commit;");
    // the application goes on writing elsewhere
    a.marker(1);
    a.archive_now();
    let out = ok(a.lb().args([
        "--json",
        "wal",
        "inspect",
        "--since",
        &before.to_string(),
        "--table",
        "public.orders",
        "--database",
        "postgres",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found = v["transactions"].as_array().unwrap();
    assert_eq!(
        found.len(),
        1,
        "only the transaction that touched orders: {out}"
    );
    assert_eq!(found[0]["xid"].to_string(), xid, "{out}");
    assert_eq!(found[0]["deletes"], 100, "{out}");
    assert_eq!(found[0]["committed"], true, "{out}");
    let file = found[0]["relations"][0].as_str().unwrap();
    assert_eq!(v["relation_names"][file], "postgres: orders", "{out}");
    // in words, with the restore to run
    let out = ok(a
        .lb()
        .args(["wal", "inspect", "--since", &before.to_string()]));
    assert!(
        out.contains(&format!("--target-xid {xid} --exclusive")),
        "{out}"
    );
    assert!(out.contains("postgres: orders"), "{out}");
    // and that restore has every row back
    let (r, _) = restore(&a, "inspected", &["--target-xid", &xid, "--exclusive"]);
    assert_eq!(r.sql("select count(*) from orders"), "300");
}
