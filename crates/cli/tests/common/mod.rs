//! Shared helpers for the CLI integration tests.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;
use lifeboat_testing::{cluster, sample_db, Cluster, Workspace};

/// `lifeboat --config <config>` with a clean environment for lifeboat's own variables.
pub fn lb(config: &Path) -> Command {
    lb_at(&assert_cmd::cargo::cargo_bin("lifeboat"), config)
}

/// As [`lb`], running the binary at `bin`.
pub fn lb_at(bin: &Path, config: &Path) -> Command {
    Command::from_std(std_at(bin, config))
}

/// As [`lb`], as a `std` command (to spawn it and signal it midway).
pub fn lb_std(config: &Path) -> std::process::Command {
    std_at(&assert_cmd::cargo::cargo_bin("lifeboat"), config)
}

/// As [`lb_at`], as a `std` command.
pub fn std_at(bin: &Path, config: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.arg("--config").arg(config);
    // parked audit entries stay with the test's files, not in /var/lib/lifeboat
    c.env(
        "LIFEBOAT_STATE_DIR",
        config.parent().unwrap_or(config).join("state"),
    );
    for v in [
        "LIFEBOAT_PASSWORD",
        "LIFEBOAT_REPOSITORY",
        "LIFEBOAT_CONFIG",
        "PGPASSWORD",
        "PGDATABASE",
    ] {
        c.env_remove(v);
    }
    c
}

/// The lifeboat binary placed in `dir` (hard link, else copy), where PostgreSQL's own user
/// can run it: the build directory may sit in root's home, which that user cannot enter,
/// and archive_command / restore_command run as that user.
pub fn shared_binary(dir: &Path) -> std::path::PathBuf {
    let src = assert_cmd::cargo::cargo_bin("lifeboat");
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    let dest = bin_dir.join("lifeboat");
    if !dest.exists() && std::fs::hard_link(&src, &dest).is_err() {
        std::fs::copy(&src, &dest).expect("copy the lifeboat binary");
    }
    dest
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run lifeboat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs and asserts success; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "command failed\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// `list --json` parsed.
pub fn list_json(config: &Path) -> Vec<serde_json::Value> {
    let out = ok(lb(config).args(["--json", "list"]));
    serde_json::from_str(&out).expect("list --json is JSON")
}

/// Row count of a table, by plain SQL.
pub fn count(c: &Cluster, db: &str, table: &str) -> i64 {
    c.sql(db, &format!("select count(*) from {table}"))
        .expect("count")
        .trim()
        .parse()
        .expect("number")
}

/// Whether database `db` exists.
pub fn db_exists(c: &Cluster, db: &str) -> bool {
    c.sql(
        "postgres",
        &format!("select count(*) from pg_database where datname = '{db}'"),
    )
    .expect("query")
    .trim()
        == "1"
}

/// A cluster with the sample shop in database `app` (`users` users), a workspace whose
/// config has source `app-db` on it and an initialised local repository holding one
/// logical backup.
pub fn backed_up(users: u64) -> (Cluster, Workspace, std::path::PathBuf) {
    let c = cluster();
    sample_db(&c, "app", users);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    (c, ws, cfg)
}

/// The DOM of an HTML file as headless Chromium renders it (Debian `chromium`, installed by
/// scripts/setup.sh --tests), and the size of a screenshot of the page.
pub fn render_in_chromium(file: &Path) -> (String, u64) {
    let profile = tempfile::tempdir().expect("chromium profile dir");
    let shot = profile.path().join("page.png");
    let chromium = |extra: &[&str]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--allow-file-access-from-files",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", file.display()))
            .output()
            .expect("run chromium (scripts/setup.sh --tests installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1000,1400",
    ]);
    assert!(
        out.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    (String::from_utf8_lossy(&dom.stdout).into_owned(), size)
}

/// `len` bytes that do not compress (xorshift from `seed`): segments whose pushes take a
/// while, or that fill a disk.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Waits (up to ~15 s) until pg_dump of lifeboat streams `table` (`public.z`) from `c`;
/// with `terminate`, ends that server process then. False when it was never seen.
pub fn catch_copy(c: &Cluster, table: &str, terminate: bool) -> bool {
    let what = if terminate {
        "count(pg_terminate_backend(pid))"
    } else {
        "count(*)"
    };
    for _ in 0..3000 {
        let n = c
            .sql(
                "postgres",
                &format!(
                    "select {what} from pg_stat_activity \
                     where application_name = 'lifeboat' and query like 'COPY {table} %'"
                ),
            )
            .expect("pg_stat_activity");
        if n.trim() == "1" {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// The name of a German locale, made with `localedef` when this machine has none (the
/// postgresql package depends on `locales`, which has the sources).
pub fn german_locale() -> &'static str {
    let have = std::process::Command::new("locale")
        .arg("-a")
        .output()
        .expect("locale -a");
    if !String::from_utf8_lossy(&have.stdout)
        .lines()
        .any(|l| l.eq_ignore_ascii_case("de_DE.utf8"))
    {
        let made = std::process::Command::new("localedef")
            .args(["-i", "de_DE", "-f", "UTF-8", "de_DE.UTF-8"])
            .output()
            .expect("localedef");
        assert!(
            made.status.success(),
            "this test needs the locale de_DE.UTF-8: run `localedef -i de_DE -f UTF-8 de_DE.UTF-8` as root ({})",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    "de_DE.UTF-8"
}

/// A small tmpfs, unmounted when dropped (also when the test panics).
pub struct SmallDisk(pub std::path::PathBuf);

impl SmallDisk {
    pub fn mount(at: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "lifeboat-test",
            ])
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Self(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Whether the tests run as root (mounting a small file system needs it).
pub fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A session holding an `ACCESS EXCLUSIVE` lock on `table` of `db` (a migration), returned
/// once the lock is granted; it sleeps with it for `secs`.
pub fn hold_exclusive_lock(c: &Cluster, db: &str, table: &str, secs: u32) -> std::process::Child {
    let holder = std::process::Command::new(
        lifeboat_core::sources::postgres::conn::PgBin::new(None).program("psql"),
    )
    .args(["-X", "-q", "-d", &c.dsn(db), "-c"])
    .arg(format!(
        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({secs})"
    ))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("psql");
    let locked = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.sql(
            db,
            &format!("select count(*) from pg_locks where relation = '{table}'::regclass and mode = 'AccessExclusiveLock' and granted"),
        )
        .is_ok_and(|n| n.trim() == "1")
    });
    assert!(locked, "the lock on {table} was never taken");
    holder
}
