//! The `lifeboat` binary against a real S3 server (Garage) and a real PostgreSQL: a full
//! backup, verify and restore round trip, and the S3 failure cases users meet first
//! (repository already there, wrong S3 secret, wrong repository password, the store gone).
//!
//! Needs `LIFEBOAT_GARAGE_BIN`; `scripts/test.sh` sets it. Without it these tests fail.

mod common;

use std::{path::Path, time::Duration};

use assert_cmd::Command;
use lifeboat_testing::{cluster, garage::Garage, sample_db, Workspace};

const TABLES: [&str; 4] = [
    "shop.users",
    "shop.orders",
    "shop.events",
    "shop.attachments",
];

/// `lifeboat --config CFG` isolated from the caller's environment: S3 settings and
/// passwords come from the config only, and rustic's cache stays in the workspace.
fn lifeboat(ws: &Workspace) -> Command {
    let mut cmd = Command::from_std(lifeboat_process(ws));
    cmd.timeout(Duration::from_secs(600));
    cmd
}

/// The same as a plain process, for a test that must act while it runs.
fn lifeboat_process(ws: &Workspace) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"));
    cmd.current_dir(ws.path())
        .arg("--config")
        .arg(ws.config_path())
        .env("XDG_CACHE_HOME", ws.path().join("cache"))
        // parked audit entries stay with the test, not in /var/lib/lifeboat
        .env("LIFEBOAT_STATE_DIR", ws.path().join("state"));
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "LIFEBOAT_PASSWORD",
        "LIFEBOAT_REPOSITORY",
        "LIFEBOAT_CONFIG",
        // users see errors without backtraces; so should these assertions
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd`, panicking with both streams unless it succeeds; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run lifeboat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lifeboat failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `cmd`, expecting it to fail; returns (exit code, stdout, stderr).
fn fails(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run lifeboat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "lifeboat should have failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal ({}):\n{stderr}", out.status));
    (code, stdout, stderr)
}

/// Rows in `table`, counted by PostgreSQL itself.
fn count(c: &lifeboat_testing::Cluster, db: &str, table: &str) -> u64 {
    let text = c
        .sql(db, &format!("select count(*) from {table}"))
        .unwrap_or_else(|e| panic!("count {db}.{table}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("count {db}.{table}: {text:?}: {e}"))
}

/// A workspace whose config points at `s3://BUCKET/prefix` on `garage`.
fn s3_workspace(garage: &Garage, prefix: &str, sources: &[(&str, &str)]) -> Workspace {
    let ws = Workspace::new();
    let body = garage.repository_toml(prefix, &secret_path(&ws));
    ws.write_config(&body, sources);
    ws
}

fn secret_path(ws: &Workspace) -> std::path::PathBuf {
    ws.path().join("s3.secret")
}

/// Objects stored in `bucket`, as Garage reports them.
fn object_count(garage: &Garage, bucket: &str) -> u64 {
    let info = garage.cli(&["bucket", "info", bucket]);
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Objects:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no object count in `garage bucket info`:\n{info}"))
}

#[test]
fn backup_verify_restore_round_trip_on_s3() {
    let garage = Garage::start();
    let c = cluster();
    sample_db(&c, "app", 2000);
    let dsn = c.dsn("app");
    let ws = s3_workspace(&garage, "prod/app", &[("app-db", &dsn)]);

    let out = ok(lifeboat(&ws).arg("init"));
    assert!(out.contains("s3://lifeboat-test/prod/app"), "{out}");
    let out = ok(lifeboat(&ws).args(["backup", "--source", "app-db"]));
    assert!(out.contains("s3://lifeboat-test/prod/app"), "{out}");
    // the data went to the S3 server, not to some local directory
    assert!(object_count(&garage, garage.bucket()) > 0);
    assert!(!ws.repo_path().exists());

    let list = ok(lifeboat(&ws).args(["--json", "list"]));
    let backups: Vec<serde_json::Value> = serde_json::from_str(&list).expect("list --json");
    let mut kinds: Vec<&str> = backups
        .iter()
        .map(|b| b["kind"].as_str().expect("kind"))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["globals", "logical", "schema"], "{list}");
    assert!(backups.iter().all(|b| b["source"] == "app-db"), "{list}");
    let logical = backups.iter().find(|b| b["kind"] == "logical").unwrap();
    assert_eq!(logical["database"], "app", "{list}");

    let out = ok(lifeboat(&ws).args(["verify", "--all", "--read-data"]));
    assert!(
        out.contains("3 backup(s) checked, all ok, data read"),
        "{out}"
    );

    // the README's emergency path on S3: plain restic lists the backups and dumps one
    let id = logical["id"].as_str().expect("id");
    let restic = |args: &[&str]| {
        std::process::Command::new("restic")
            .args([
                "--no-cache",
                "-o",
                &format!("s3.region={}", garage.region()),
            ])
            .args(args)
            .env(
                "RESTIC_REPOSITORY",
                format!("s3:{}/{}/prod/app", garage.endpoint(), garage.bucket()),
            )
            .env("RESTIC_PASSWORD", lifeboat_testing::REPO_PASSWORD)
            .env("AWS_ACCESS_KEY_ID", garage.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", garage.secret_access_key())
            .output()
            .expect("restic is installed by scripts/setup.sh")
    };
    let out = restic(&["snapshots", "--tag", "kind=logical"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&id[..8]),
        "restic snapshots on S3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = restic(&["dump", id, logical["path"].as_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len() as u64,
        logical["logical_bytes"].as_u64().expect("size"),
        "restic dumps the whole backup from S3"
    );

    // the runbook's emergency command, as printed, works against the bucket
    let book = ok(lifeboat(&ws).arg("runbook"));
    let line = book
        .lines()
        .find(|l| l.contains("restic -r s3:"))
        .expect("an S3 restic command");
    let listing = line
        .split('`')
        .find(|part| part.starts_with("restic -r ") && part.contains(" snapshots "))
        .expect("the snapshots command");
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("{listing} --no-cache")])
        .env("RESTIC_PASSWORD", lifeboat_testing::REPO_PASSWORD)
        .env("AWS_ACCESS_KEY_ID", garage.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", garage.secret_access_key())
        .output()
        .expect("bash");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&id[..8]),
        "{listing}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // a stale secret of another account in the shell does not break the configured pair
    ok(lifeboat(&ws)
        .env("AWS_SECRET_ACCESS_KEY", "stale-secret-of-another-account")
        .arg("list"));

    let originals: Vec<u64> = TABLES.iter().map(|t| count(&c, "app", t)).collect();
    assert!(originals.iter().all(|n| *n > 0), "{originals:?}");
    ok(lifeboat(&ws).args([
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--to-database",
        "app_copy",
    ]));
    for (t, n) in TABLES.iter().zip(&originals) {
        assert_eq!(count(&c, "app_copy", t), *n, "rows of {t} after restore");
    }

    // operations logging at the same moment keep one audit chain: S3 has no lock, so
    // appenders take turns by lock objects of their own
    let entries = || {
        let out = ok(lifeboat(&ws).args(["--json", "audit", "list"]));
        serde_json::from_str::<Vec<serde_json::Value>>(&out)
            .expect("audit list --json")
            .len()
    };
    let before = entries();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| ok(lifeboat(&ws).args(["verify", "--all"])));
        }
    });
    let out = ok(lifeboat(&ws).args(["audit", "verify"]));
    assert!(out.contains("chain intact"), "{out}");
    assert_eq!(entries(), before + 6, "one entry per verify");
}

#[test]
fn init_twice_on_s3_refuses() {
    let garage = Garage::start();
    let ws = s3_workspace(&garage, "twice", &[]);
    ok(lifeboat(&ws).arg("init"));
    let objects = object_count(&garage, garage.bucket());
    let (code, _, stderr) = fails(lifeboat(&ws).arg("init"));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("a repository already exists at s3://lifeboat-test/twice"),
        "{stderr}"
    );
    // the existing repository is untouched and still opens
    assert_eq!(object_count(&garage, garage.bucket()), objects);
    ok(lifeboat(&ws).arg("list"));

    // a bucket that does not exist is named as such, and init does not pretend to fix it
    let missing = format!("s3://no-such-bucket-{}/x", std::process::id());
    let (code, _, err) = fails(lifeboat(&ws).args(["--repo", &missing, "list"]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!(
            "no repository at {missing}: the bucket does not exist"
        )),
        "{err}"
    );
    // the bucket exists, the prefix holds nothing: that is a missing repository, not bucket
    let (code, _, err) = fails(lifeboat(&ws).args([
        "--repo",
        &format!("s3://{}/nothing-here", garage.bucket()),
        "list",
    ]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("no repository at") && !err.contains("the bucket does not exist"),
        "{err}"
    );
    let (code, _, err) = fails(lifeboat(&ws).args(["--repo", &missing, "init"]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("the bucket does not exist") && err.contains("create it in the store first"),
        "{err}"
    );
    // a wrong region reads as one, not as a missing repository
    let cfg = ws.config_path();
    let body = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("region = {:?}", garage.region()),
        "region = \"eu-north-9\"",
    );
    std::fs::write(&cfg, body).unwrap();
    let (code, _, err) = fails(lifeboat(&ws).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("(400 bad request)") && err.contains("check [repository] region"),
        "{err}"
    );
}

const WRONG_SECRET: &str = "wrong-secret-4f1d2c3b5a6978695a4b3c2d1e0f";

/// Runs `args` with [`WRONG_SECRET`] as the S3 secret and checks that lifeboat refuses
/// clearly, naming `url` and never printing a secret.
fn assert_wrong_secret_refused(garage: &Garage, ws: &Workspace, args: &[&str], url: &str) {
    std::fs::write(secret_path(ws), WRONG_SECRET).expect("write the wrong secret");
    let what = format!("`lifeboat {}`", args.join(" "));
    let (code, stdout, stderr) = fails(lifeboat(ws).args(args));
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains(WRONG_SECRET) && !text.contains(garage.secret_access_key()),
            "{what} printed an S3 secret on {name}:\n{text}"
        );
    }
    assert!(
        stderr.contains(url),
        "{what} does not name the repository {url}:\n{stderr}"
    );
    // the hint may guess at credentials; the error itself must say access was refused
    let error_lines = stderr
        .lines()
        .filter(|l| !l.starts_with("hint:"))
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    assert!(
        ["denied", "forbidden", "refused", "signature", "403"]
            .iter()
            .any(|w| error_lines.contains(w)),
        "{what} does not say the S3 server refused the credentials:\n{stderr}"
    );
    assert!(
        !stderr.contains("We believe this is a bug"),
        "{what} calls a wrong S3 secret a rustic bug:\n{stderr}"
    );
    // rustic's reading of a refused request ("path `config` does not exist") would
    // contradict it
    assert!(
        !error_lines.contains("does not exist"),
        "{what} says something is missing:\n{stderr}"
    );
    // exit 4 means "not found": it would send the user looking for a missing repository
    assert_ne!(code, 4, "{what} exits 4 (not found):\n{stderr}");
}

#[test]
fn wrong_s3_secret_on_open_is_refused_without_echoing_it() {
    let garage = Garage::start();
    let ws = s3_workspace(&garage, "creds", &[]);
    ok(lifeboat(&ws).arg("init"));
    assert_wrong_secret_refused(&garage, &ws, &["list"], "s3://lifeboat-test/creds");
}

#[test]
fn wrong_s3_secret_on_init_is_refused_without_echoing_it() {
    let garage = Garage::start();
    let ws = s3_workspace(&garage, "fresh", &[]);
    assert_wrong_secret_refused(&garage, &ws, &["init"], "s3://lifeboat-test/fresh");
    // nothing was created under the refused key
    assert_eq!(object_count(&garage, garage.bucket()), 0);
}

#[test]
fn wrong_repository_password_exits_3() {
    let garage = Garage::start();
    let ws = s3_workspace(&garage, "password", &[]);
    ok(lifeboat(&ws).arg("init"));
    ok(lifeboat(&ws).arg("list"));
    // LIFEBOAT_PASSWORD wins over the (correct) password_file in the config
    let (code, stdout, stderr) = fails(
        lifeboat(&ws)
            .env("LIFEBOAT_PASSWORD", "not-the-repository-password")
            .arg("list"),
    );
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert!(!stderr.contains("not-the-repository-password"), "{stderr}");
}

/// The helper writes the secret for lifeboat, readable by its owner only.
#[test]
fn repository_toml_writes_a_private_secret_file() {
    use std::os::unix::fs::PermissionsExt;
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let body = garage.repository_toml("/a/b/", &secret);
    assert!(body.contains("url = \"s3://lifeboat-test/a/b\""), "{body}");
    assert!(
        body.contains(&format!("endpoint = {:?}", garage.endpoint())),
        "{body}"
    );
    assert!(body.contains("region = \"garage\""), "{body}");
    assert!(!body.contains(garage.secret_access_key()), "{body}");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        garage.secret_access_key()
    );
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(Path::new(&secret).is_file());
}

#[test]
fn a_terminated_dump_leaves_no_backup_on_s3() {
    // the failure path on S3: the pending snapshot is discarded there too
    let garage = Garage::start();
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE big").expect("database");
    c.sql(
        "big",
        "CREATE TABLE z (id int, t text); \
         INSERT INTO z SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 1500000) g",
    )
    .expect("table");
    let ws = s3_workspace(&garage, "terminated", &[("big-db", &c.dsn("big"))]);
    ok(lifeboat(&ws).arg("init"));
    let child = lifeboat_process(&ws)
        .args(["backup", "--kind", "logical"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the backup");
    assert!(
        common::catch_copy(&c, "public.z", true),
        "never saw pg_dump copying the table"
    );
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("pg_dump"), "{err}");
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lifeboat(&ws).args(["--json", "list"]))).expect("list");
    assert!(
        list.is_empty(),
        "no backup on S3 after a failed dump: {list:?}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(lifeboat(&ws).args(["--json", "stats"]))).expect("stats");
    assert_eq!(
        stats["pending"], 0,
        "the pending snapshot is removed from S3"
    );
    ok(lifeboat(&ws).args(["verify", "--all"]));
}

#[test]
fn a_store_that_accepts_connections_but_never_answers_is_named_at_once() {
    // a stalled store (or a load balancer in front of a dead one): connections are
    // accepted, nothing is ever said; no command may sit on it until the requests time out
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let ws = Workspace::new();
    let secret = ws.path().join("s3.secret");
    std::fs::write(&secret, "not-used").unwrap();
    let cfg = ws.write_config(
        &format!(
            "url = \"s3://stalled/x\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"garage\"\naccess_key_id = \"GK0000\"\nsecret_access_key_file = {:?}\n",
            secret.display().to_string()
        ),
        &[("app-db", "host=/nonexistent dbname=app")],
    );
    let (code, _, err) = fails(common::lb(&cfg).arg("list"));
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains(&format!(
            "127.0.0.1:{port} accepts connections but does not answer"
        )),
        "{err}"
    );
}

#[test]
fn a_store_that_went_away_is_named_and_never_read_as_missing_wal() {
    // the bucket's server down: every command says so and exits "unavailable" (7), and
    // wal-fetch stops the recovery (126) instead of reporting the segment as not archived,
    // which would end a recovery early
    let mut garage = Garage::start();
    let c = cluster();
    sample_db(&c, "app", 50);
    let ws = s3_workspace(&garage, "gone", &[("app-db", &c.dsn("app"))]);
    ok(lifeboat(&ws).arg("init"));
    ok(lifeboat(&ws).args(["backup", "--kind", "logical"]));
    let seg = ws.path().join("000000010000000000000001");
    std::fs::write(&seg, common::noise(1 << 20, 0x60E)).expect("segment");
    ok(lifeboat(&ws)
        .args(["wal-push", "--socket", "none.sock"])
        .arg(&seg));
    garage.stop();

    let endpoint = garage.endpoint();
    let host = endpoint.trim_start_matches("http://");
    for args in [
        &["list"][..],
        &["backup", "--kind", "logical"],
        &["verify", "--all"],
        &["restore", "--latest", "--to-database", "back"],
    ] {
        let (code, _, err) = fails(lifeboat(&ws).args(args));
        assert_eq!(code, 7, "{args:?}: {err}");
        assert!(err.contains(host), "{args:?} names the store: {err}");
        assert!(!err.contains(garage.secret_access_key()), "{err}");
    }
    // wal status still shows what the server says about its archiver
    let (code, out, err) = fails(lifeboat(&ws).args(["wal", "status"]));
    assert_eq!(code, 7, "{err}");
    assert!(
        out.contains("the repository cannot be read") && out.contains("archiver (server):"),
        "{out}"
    );
    let (code, _, err) = fails(
        lifeboat(&ws)
            .args(["wal-push", "--socket", "none.sock"])
            .arg(ws.path().join("000000010000000000000001")),
    );
    assert_ne!(code, 0, "{err}");
    let (code, _, err) = fails(lifeboat(&ws).args([
        "wal-fetch",
        "--socket",
        "none.sock",
        "000000010000000000000002",
        "pg_wal/RECOVERYXLOG",
    ]));
    assert_eq!(code, 126, "recovery must stop, not promote: {err}");
    assert_eq!(
        count(&c, "app", "shop.users"),
        50,
        "the source is untouched"
    );
}

#[test]
fn credentials_come_from_an_aws_profile_when_no_key_is_configured() {
    let garage = Garage::start();
    let c = cluster();
    sample_db(&c, "app", 30);
    let ws = Workspace::new();
    let creds = ws.path().join("aws-credentials");
    lifeboat_core::secret::write_private_file(
        &creds,
        &format!(
            "[default]\naws_access_key_id = GKnotthisone\naws_secret_access_key = wrong\n\n\
             [backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            garage.access_key_id(),
            garage.secret_access_key()
        ),
    )
    .expect("credentials file");
    let repo = |profile: &str| {
        format!(
            "url = \"s3://{}/profile\"\nendpoint = {:?}\nregion = {:?}\n{profile}",
            garage.bucket(),
            garage.endpoint(),
            garage.region()
        )
    };
    ws.write_config(
        &repo("profile = \"backup\"\n"),
        &[("app-db", &c.dsn("app"))],
    );
    let with_files = |cmd: &mut Command| {
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .env("AWS_CONFIG_FILE", ws.path().join("no-aws-config"));
    };
    let mut cmd = lifeboat(&ws);
    with_files(&mut cmd);
    ok(cmd.arg("init"));
    let mut cmd = lifeboat(&ws);
    with_files(&mut cmd);
    ok(cmd.args(["backup", "--kind", "logical"]));
    // the same profile through AWS_PROFILE
    ws.write_config(&repo(""), &[("app-db", &c.dsn("app"))]);
    let mut cmd = lifeboat(&ws);
    with_files(&mut cmd);
    let list: Vec<serde_json::Value> = serde_json::from_str(&ok(cmd
        .env("AWS_PROFILE", "backup")
        .args(["--json", "list"])))
    .expect("list");
    assert_eq!(list.len(), 1, "{list:?}");
    // the file's default profile holds other keys: refused, and the secret never shown
    let mut cmd = lifeboat(&ws);
    with_files(&mut cmd);
    let (code, _, err) = fails(cmd.arg("list"));
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains(garage.secret_access_key()), "{err}");
    // no key, no profile, no credentials file: says what to set
    let (code, _, err) = fails(lifeboat(&ws).env("HOME", ws.path()).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no S3 credentials") && err.contains("profile"),
        "{err}"
    );
}

/// An HTTP proxy on 127.0.0.1 in front of `upstream` (`host:port`) that answers 500 to
/// every request whose request line contains all of `fail` (a store failing one kind of
/// request), and passes the others on, each over a connection of its own.
fn failing_proxy(upstream: String, fail: &'static [&'static str]) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut client = client;
                loop {
                    let mut head = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if !lower.starts_with("connection:") {
                            head.push(line);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if fail.iter().all(|f| head[0].contains(f)) {
                        let xml =
                            "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
                        let _ = write!(
                            client,
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{xml}",
                            xml.len()
                        );
                        continue;
                    }
                    let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                        return;
                    };
                    head.push("connection: close\r\n\r\n".into());
                    let mut answer = Vec::new();
                    if up.write_all(head.concat().as_bytes()).is_err()
                        || up.write_all(&body).is_err()
                        || up.read_to_end(&mut answer).is_err()
                        || client.write_all(&answer).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The store fails while a backup lists the pack files: that is an unreachable store,
/// not a repository whose packs are gone (a listing that failed midway read as a short
/// one, and every pack of the index was called lost, exit 6, "run lifeboat repair index").
#[test]
fn a_listing_the_store_fails_is_no_lost_pack() {
    let garage = Garage::start();
    let c = cluster();
    sample_db(&c, "app", 50);
    let ws = s3_workspace(&garage, "listing", &[("app-db", &c.dsn("app"))]);
    ok(lifeboat(&ws).arg("init"));
    ok(lifeboat(&ws).args(["backup", "--kind", "logical"]));
    let upstream = garage.endpoint().trim_start_matches("http://").to_string();
    let port = failing_proxy(upstream.clone(), &["list-type=2", "data"]);
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        text.replace(&upstream, &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let (code, _, err) = fails(lifeboat(&ws).args(["backup", "--kind", "logical"]));
    assert!(
        code != 6 && !err.contains("gone") && !err.contains("repair index"),
        "{code}: {err}"
    );
    assert_eq!(code, 7, "the store is named unavailable: {err}");
    // through the proxy, everything else works
    let out = ok(lifeboat(&ws).arg("list"));
    assert!(out.contains("logical"), "{out}");
}
