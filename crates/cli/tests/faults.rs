//! Bad input and faults: each gets a clear message, a documented exit code, and loses
//! nothing. Secrets never show up in output or on a command line.

mod common;

use std::{io::Write, os::unix::fs::PermissionsExt};

use common::{
    backed_up, count, db_exists, german_locale, lb, lb_std, list_json, nix_is_root, ok, run,
    SmallDisk,
};
use lifeboat_testing::{cluster, sample_db, Workspace, REPO_PASSWORD};

#[test]
fn wrong_repository_password_and_second_init() {
    let ws = Workspace::new();
    let cfg = ws.local_config(&[]);
    ok(lb(&cfg).arg("init"));
    let (code, _, err) = run(lb(&cfg).arg("init"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, out, err) = run(lb(&cfg)
        .env("LIFEBOAT_PASSWORD", "not-the-password")
        .arg("list"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("wrong password"), "{err}");
    assert!(!err.contains("not-the-password") && !out.contains("not-the-password"));
    assert!(!err.contains(REPO_PASSWORD));
    // a script reading --json gets the error as JSON on stdout, with the exit code
    let (code, out, _) = run(lb(&cfg)
        .env("LIFEBOAT_PASSWORD", "not-the-password")
        .args(["--json", "list"]));
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["error"]["kind"], "auth", "{v}");
    assert_eq!(v["error"]["exit_code"], 3, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("wrong password")),
        "{v}"
    );
    assert!(!out.contains("not-the-password"));
    // keys/ emptied (deleted, a bad copy): no password opens it, and it is not called a
    // wrong password, which would send the operator hunting for another one
    let keys = ws.repo_path().join("keys");
    let aside = ws.path().join("keys-aside");
    std::fs::rename(&keys, &aside).unwrap();
    std::fs::create_dir(&keys).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("list"));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("has no key file") && err.contains("put keys/ back from a copy"),
        "{err}"
    );
    assert!(!err.contains("wrong password"), "{err}");
    std::fs::remove_dir(&keys).unwrap();
    std::fs::rename(&aside, &keys).unwrap();
    ok(lb(&cfg).arg("list"));
    let (code, out, _) = run(lb(&cfg).args(["--json", "list", "--kind", "nonsense"]));
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["error"]["kind"], "config", "{v}");
    // as a restore_command: recovery stops (126), and the PostgreSQL log gets a few lines
    // that say what to do, not the repository library's pages
    let ws2 = Workspace::new();
    let cfg2 = ws2.local_config(&[("main", "host=/nonexistent dbname=x")]);
    ok(lb(&cfg2).arg("init"));
    let (code, _, err) = run(lb(&cfg2)
        .env("LIFEBOAT_PASSWORD", "not-the-password")
        .env("RUST_BACKTRACE", "1")
        .args(["wal-fetch", "000000010000000000000001"])
        .arg(ws2.path().join("seg")));
    assert_eq!(code, 126, "{err}");
    assert!(err.lines().count() <= 5, "{err}");
    assert!(
        err.contains("wrong password") && err.contains("lifeboat wal-fetch: hint:"),
        "{err}"
    );
    // the JSON document gives the exit code the process really ends with
    let (code, out, _) = run(lb(&cfg2)
        .env("LIFEBOAT_PASSWORD", "not-the-password")
        .args(["--json", "wal-fetch", "000000010000000000000001"])
        .arg(ws2.path().join("seg")));
    assert_eq!(code, 126);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["error"]["exit_code"], 126, "{v}");
    assert_eq!(v["error"]["kind"], "auth", "{v}");
}

#[test]
fn config_errors_name_the_key_and_line() {
    let ws = Workspace::new();
    let p = ws.path().join("bad.toml");
    std::fs::write(&p, "[repository]\nurl = \"/tmp/x\"\n\n[[source]]\nname = \"a\"\nkind = \"postgres\"\ndatabse = [\"app\"]\n").unwrap();
    let (code, _, err) = run(lb(&p).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml:7") && err.contains("databse"),
        "{err}"
    );
    let missing = ws.path().join("missing.toml");
    let (code, _, err) = run(lb(&missing).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.toml"), "{err}");
    // no repository configured at all
    let empty = ws.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let (code, _, err) = run(lb(&empty).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no repository given"), "{err}");
}

#[test]
fn verify_without_ids_says_what_to_give() {
    let ws = Workspace::new();
    let cfg = ws.path().join("empty.toml");
    std::fs::write(&cfg, "").unwrap();
    let (code, _, err) = run(lb(&cfg).arg("verify"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("hint: give backup ids, --latest (the newest run) or --all"),
        "{err}"
    );
}

#[test]
fn no_config_file_names_the_paths_searched() {
    if std::path::Path::new("/etc/lifeboat/lifeboat.toml").exists() {
        eprintln!("skipped: /etc/lifeboat/lifeboat.toml exists on this machine");
        return;
    }
    let ws = Workspace::new();
    let mut cmd = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"));
    for v in [
        "LIFEBOAT_REPOSITORY",
        "LIFEBOAT_CONFIG",
        "LIFEBOAT_PASSWORD",
    ] {
        cmd.env_remove(v);
    }
    let (code, _, err) = run(cmd.current_dir(ws.path()).arg("list"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no configuration file found")
            && err.contains("./lifeboat.toml")
            && err.contains("/etc/lifeboat/lifeboat.toml"),
        "{err}"
    );
    assert!(err.contains("hint:") && err.contains("--repo"), "{err}");
    // with --repo there is no complaint about the file
    let repo = ws.path().join("repo");
    let (code, _, err) = run(cmd.arg("--repo").arg(&repo));
    assert_ne!(code, 0);
    assert!(!err.contains("no configuration file found"), "{err}");
}

#[test]
fn unreachable_server_and_wrong_postgres_password() {
    let c = cluster();
    sample_db(&c, "app", 50);
    c.sql(
        "postgres",
        "CREATE ROLE app_user LOGIN PASSWORD 'right-pass'; GRANT pg_read_all_data TO app_user",
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new();
    let wrong = format!(
        "postgresql://app_user:wrong-pass-123@127.0.0.1:{}/app",
        c.port()
    );
    let cfg = ws.local_config(&[
        (
            "down",
            &format!("host=127.0.0.1 port={closed} user=postgres dbname=app"),
        ),
        ("badpw", &wrong),
    ]);
    ok(lb(&cfg).arg("init"));
    // config check names each source that does not answer, and fails
    let (code, out, err) = run(lb(&cfg).args(["config", "check"]));
    assert_eq!(code, 7, "{out}{err}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL source down")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL source badpw") && l.contains("password")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("ok   repository")),
        "{out}"
    );
    assert!(!out.contains("wrong-pass-123") && !err.contains("wrong-pass-123"));
    let (code, _, err) = run(lb(&cfg).args(["backup", "--source", "down"]));
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("cannot be reached"), "{err}");
    let (code, out, err) = run(lb(&cfg).args(["backup", "--source", "badpw"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("password"), "{err}");
    assert!(
        !err.contains("wrong-pass-123") && !out.contains("wrong-pass-123"),
        "{err}"
    );
    assert!(list_json(&cfg).is_empty());
}

/// pg_dump, pg_dumpall and psql replaced by scripts that log their argv and environment
/// names, then run the real program: the password must never be on a command line.
#[test]
fn postgres_password_never_reaches_argv() {
    let c = cluster();
    sample_db(&c, "app", 50);
    c.sql(
        "postgres",
        "CREATE ROLE app_user LOGIN SUPERUSER PASSWORD 'sekret-pw-42'",
    )
    .unwrap();
    let ws = Workspace::new();
    let real = lifeboat_core::sources::postgres::conn::PgBin::new(None);
    let spy = ws.path().join("spybin");
    std::fs::create_dir(&spy).unwrap();
    let log = ws.path().join("argv.log");
    for prog in ["pg_dump", "pg_dumpall", "psql", "pg_restore"] {
        let p = spy.join(prog);
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(
            f,
            "#!/bin/sh\necho \"{prog} $*\" >> {}\nexec {} \"$@\"",
            log.display(),
            real.program(prog).display()
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dsn = format!(
        "postgresql://app_user:sekret-pw-42@127.0.0.1:{}/app",
        c.port()
    );
    let pw = ws.path().join("repo.pass");
    std::fs::write(&pw, REPO_PASSWORD).unwrap();
    let cfg = ws.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = {:?}\npassword_file = {:?}\n[[source]]\nname = \"app-db\"\nkind = \"postgres\"\ndsn = {dsn:?}\npg_bin_dir = {:?}\n",
            ws.repo_path().display().to_string(),
            pw.display().to_string(),
            spy.display().to_string()
        ),
    )
    .unwrap();
    ok(lb(&cfg).arg("init"));
    let out = ok(lb(&cfg).arg("backup"));
    assert!(!out.contains("sekret-pw-42"));
    // a post-hook connects with the conninfo it is given (no password in it) and finds the
    // password in the file PGPASSFILE names, not in its environment
    let hook_out = ws.path().join("hook.out");
    let hook_env = ws.path().join("hook.env");
    let hook = format!(
        "{} \"$LIFEBOAT_TARGET_CONNINFO\" -w -XAtc 'select count(*) from shop.users' > {} && env > {}",
        real.program("psql").display(),
        hook_out.display(),
        hook_env.display()
    );
    ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "copy",
        "--post-hook",
        &hook,
    ]));
    assert_eq!(std::fs::read_to_string(&hook_out).unwrap().trim(), "50");
    let env = std::fs::read_to_string(&hook_env).unwrap();
    assert!(env.contains("PGPASSFILE="), "{env}");
    assert!(
        !env.contains("sekret-pw-42"),
        "password in a hook's environment:\n{env}"
    );
    let argv = std::fs::read_to_string(&log).unwrap();
    assert!(
        argv.contains("pg_dump ") && argv.contains("pg_restore "),
        "{argv}"
    );
    assert!(
        !argv.contains("sekret-pw-42"),
        "password on a command line:\n{argv}"
    );
    assert_eq!(count(&c, "copy", "shop.users"), 50);
}

/// Ctrl-C while pg_restore loads a new database: the half-loaded database goes again (the
/// retry would be refused "not empty"), the exit code is 130, and the retry restores.
#[test]
fn an_interrupted_restore_drops_the_database_it_created() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE big").unwrap();
    c.sql(
        "big",
        "CREATE TABLE z (id int, t text); \
         INSERT INTO z SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 600000) g",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("big-db", &c.dsn("big"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    // a restore into "copy" with `extra` flags, sent `signal` while pg_restore loads z
    let interrupted = |extra: &[&str], signal| {
        let child = common::lb_std(&cfg)
            .args(["restore", "--latest", "--to-database", "copy"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            common::catch_copy(&c, "public.z", false),
            "never saw pg_restore loading the table"
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = interrupted(&[], nix::sys::signal::Signal::SIGINT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        !db_exists(&c, "copy"),
        "the half-restored database is left behind: {err}"
    );
    assert!(err.contains("dropped database \"copy\""), "{err}");

    // Ctrl-C pressed again and again at a terminal (SIGINT to the whole process group):
    // the cleanup's own DROP DATABASE is not cancelled by the later ones
    let child = {
        use std::os::unix::process::CommandExt;
        common::lb_std(&cfg)
            .args(["restore", "--latest", "--to-database", "copy"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    assert!(
        common::catch_copy(&c, "public.z", false),
        "never saw pg_restore loading the table"
    );
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let pressing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let presser = {
        let pressing = std::sync::Arc::clone(&pressing);
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while pressing.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < until
            {
                let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT);
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    pressing.store(false, std::sync::atomic::Ordering::SeqCst);
    presser.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!db_exists(&c, "copy"), "left behind: {err}");
    assert!(
        err.contains("dropped database \"copy\"") && !err.contains("left unfinished"),
        "{err}"
    );

    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "copy"]));
    assert_eq!(count(&c, "copy", "z"), 600_000);
    // the audit log says which restore was interrupted, and what a finished one did
    let entries: Vec<serde_json::Value> = serde_json::from_str(&ok(
        lb(&cfg).args(["--json", "audit", "list", "--action", "restore"])
    ))
    .unwrap();
    let details: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["details"].as_str())
        .collect();
    // (logged by the interrupt's handler, "restore of backup …", or by the restore
    // itself when its failure was logged first, "backup … into database …: interrupted")
    // one entry for each of the two interrupted restores, never one from each logger
    let interrupted_entries = details
        .iter()
        .filter(|d| {
            d.contains("interrupted")
                && (d.contains(" of backup ") || d.contains(": backup "))
                && d.contains("into database \"copy\"")
        })
        .count();
    assert_eq!(interrupted_entries, 2, "{details:#?}");
    assert_eq!(
        details
            .iter()
            .filter(|d| d.contains("into database \"copy\""))
            .count(),
        3,
        "{details:#?}"
    );
    assert!(
        details.iter().any(|d| d.contains("restored in")
            && d.contains("verified against the backup-time truth: 1 tables")),
        "{details:#?}"
    );

    // SIGTERM to lifeboat alone (a service manager, `kill PID`) during an overwrite, or
    // SIGKILL (the OOM killer): its pg_restore must not go on to commit the overwrite
    c.sql("copy", "update z set t = 'CHANGED' where id = 1")
        .unwrap();
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        let out = interrupted(&["--clean", "--force"], signal);
        if signal == nix::sys::signal::Signal::SIGTERM {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(130), "{err}");
            // the first question after stopping an overwrite
            assert!(err.contains("database \"copy\" is as it was"), "{err}");
        }
        // whatever of lifeboat's might still run on the server has ended
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while c
            .sql(
                "postgres",
                "select count(*) from pg_stat_activity where application_name = 'lifeboat' and pid <> pg_backend_pid()",
            )
            .unwrap()
            != "0"
        {
            assert!(std::time::Instant::now() < deadline, "a restore session stays");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            c.sql("copy", "select t from z where id = 1").unwrap(),
            "CHANGED",
            "the overwrite interrupted by {signal} committed after all"
        );
    }
}

#[test]
fn terminated_pg_dump_leaves_no_snapshot() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE big").unwrap();
    c.sql(
        "big",
        "CREATE TABLE a (id int); INSERT INTO a VALUES (1); \
         CREATE TABLE z (id int, t text); INSERT INTO z SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 1500000) g",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("big-db", &c.dsn("big"))]);
    ok(lb(&cfg).arg("init"));
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(["--config"])
        .arg(&cfg)
        .args(["backup", "--kind", "logical"])
        .env_remove("LIFEBOAT_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until pg_dump is streaming the big table, then kill its server process
    assert!(
        common::catch_copy(&c, "public.z", true),
        "never saw pg_dump copying the table"
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("pg_dump") && err.contains("terminat"), "{err}");
    assert!(
        list_json(&cfg).is_empty(),
        "a failed dump must not leave a visible backup"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).unwrap();
    assert_eq!(stats["pending"], 0, "the pending snapshot is removed");
    // and the next backup works
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(list_json(&cfg).len(), 1);

    // lifeboat itself killed mid-stream (OOM killer, power cut): no backup appears either,
    // and the repository stays usable
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(["--config"])
        .arg(&cfg)
        .args(["backup", "--kind", "logical"])
        .env_remove("LIFEBOAT_PASSWORD")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        common::catch_copy(&c, "public.z", false),
        "never saw pg_dump copying the table"
    );
    assert!(child.try_wait().unwrap().is_none(), "still backing up");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        list_json(&cfg).len(),
        1,
        "only the complete backup is listed"
    );
    ok(lb(&cfg).args(["verify", "--all"]));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(list_json(&cfg).len(), 2);
}

#[test]
fn repository_directory_not_writable() {
    let ws = Workspace::new();
    let locked = ws.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let cfg_text = |url: &std::path::Path| {
        format!(
            "[repository]\nurl = {:?}\n",
            url.join("repo").display().to_string()
        )
    };
    let cfg = ws.path().join("lifeboat.toml");
    std::fs::write(&cfg, cfg_text(&locked)).unwrap();
    let is_root = nix_is_root();
    let mut cmd = if is_root {
        // root may write anywhere: run lifeboat as an unprivileged user instead
        std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        // the build directory may be private to root (CI keeps it under /root): use a copy
        let bin = ws.path().join("lifeboat");
        std::fs::copy(assert_cmd::cargo::cargo_bin("lifeboat"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = assert_cmd::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        assert_cmd::Command::cargo_bin("lifeboat").unwrap()
    };
    cmd.arg("--config")
        .arg(&cfg)
        .arg("init")
        .env("LIFEBOAT_PASSWORD", "pw");
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 7, "{err}");
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert!(!locked.join("repo").join("config").exists());
}

/// The repository's disk fills up during a backup (a real 8 MiB tmpfs): the error names the
/// full disk and what to do, no backup appears, and the repository still opens.
#[test]
fn repository_disk_full_mid_dump_is_named_and_leaves_no_snapshot() {
    if !nix_is_root() {
        // mounting the small file system needs root; the CI and the test script run as root
        eprintln!("not root: the full-disk case is not exercised");
        return;
    }
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE fill").unwrap();
    // ~20 MB of random bytes: far more than the 8 MiB disk holds, even compressed
    c.sql(
        "fill",
        "CREATE TABLE r AS SELECT g, decode(md5(random()::text) || md5(random()::text) \
         || md5(random()::text) || md5(random()::text), 'hex') AS b \
         FROM generate_series(1, 320000) g",
    )
    .unwrap();
    let ws = Workspace::new();
    let disk = SmallDisk::mount(ws.path().join("disk"), "8m");
    let cfg = ws.write_config(
        &format!("url = {:?}", disk.0.join("repo").display().to_string()),
        &[("fill-db", &c.dsn("fill"))],
    );
    ok(lb(&cfg).arg("init"));
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(code, 7, "unavailable: {err}");
    assert!(
        err.contains("No space left"),
        "the full disk is named: {err}"
    );
    assert!(err.contains("free disk space"), "says what to do: {err}");
    assert!(
        list_json(&cfg).is_empty(),
        "a failed backup must not leave a visible backup"
    );
}

/// The drill host's disk fills up while a drill restores (a real tmpfs as its scratch
/// directory): the drill was not carried out (exit 7, the directory named, the backup not
/// judged) and leaves nothing there, where it used to be a failed drill of an intact
/// backup. A runbook written with `-o` to a full disk leaves the one that was there whole.
#[test]
fn a_full_drill_disk_blames_no_backup_and_a_full_output_disk_keeps_the_old_file() {
    if !nix_is_root() {
        eprintln!("not root: the full-disk case is not exercised");
        return;
    }
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE many").unwrap();
    // ~24 MB as a dump, four times that as a table once restored
    c.sql(
        "many",
        "CREATE TABLE t AS SELECT g AS id, g % 1000 AS v FROM generate_series(1, 2000000) g",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("many", &c.dsn("many"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    // room for initdb and the fetched dump, not for the loaded table
    let disk = SmallDisk::mount(ws.path().join("scratch"), "120m");
    let (code, out, err) = run(lb(&cfg).arg("drill").arg("--scratch-dir").arg(&disk.0));
    assert_eq!(
        code, 7,
        "not carried out, not a failed drill (10): {out}\n{err}"
    );
    assert!(
        err.contains("the drill ran out of disk space in")
            && err.contains(&disk.0.display().to_string())
            && err.contains("the backup itself was not judged"),
        "{err}"
    );
    assert!(!out.contains("FAIL"), "no failed check is reported: {out}");
    let left: Vec<_> = std::fs::read_dir(&disk.0).unwrap().collect();
    assert!(left.is_empty(), "the drill left {left:?}");
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    let last = entries.last().expect("an entry");
    assert_eq!(last["action"], "drill", "{last}");
    assert!(
        last["details"]
            .as_str()
            .is_some_and(|d| d.contains("not carried out") && d.contains("ran out of disk space")),
        "{last}"
    );

    // -o onto the full disk: the earlier runbook stays as it was
    let runbook = disk.0.join("RUNBOOK.md");
    ok(lb(&cfg).args(["runbook", "-o"]).arg(&runbook));
    let good = std::fs::read(&runbook).unwrap();
    {
        let mut f = std::fs::File::create(disk.0.join("filler")).unwrap();
        let block = vec![0x5a_u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let (code, _, err) = run(lb(&cfg).args(["runbook", "-o"]).arg(&runbook));
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("No space left") && err.contains("the disk holding it is full"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&runbook).unwrap(),
        good,
        "the old runbook is whole"
    );
    let names: Vec<String> = std::fs::read_dir(&disk.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");

    // the state directory on the full disk: an operation cannot mark itself under way (a
    // kill would reach no log), goes on, says so, and leaves no half-made mark
    let state = disk.0.join("state");
    let (code, _, err) = run(lb(&cfg)
        .env("LIFEBOAT_STATE_DIR", &state)
        .args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: marking the backup under way in")
            && err.contains("no log will say so"),
        "{err}"
    );
    let mut left = Vec::new();
    if let Ok(dir) = std::fs::read_dir(state.join("parked-audit")) {
        left.extend(
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                // (the directory's lock file is no mark)
                .filter(|n| n != ".lock"),
        );
    }
    assert!(left.is_empty(), "{left:?}");
}

/// The repository's disk fills up while a WAL segment is written to it piece by piece:
/// the push fails (PostgreSQL keeps the segment and retries), names the full disk, and leaves
/// neither the object nor a temporary file; the next push that fits is stored.
#[test]
fn repository_disk_full_during_a_wal_push_leaves_nothing() {
    if !nix_is_root() {
        eprintln!("not root: the full-disk case is not exercised");
        return;
    }
    let ws = Workspace::new();
    let disk = SmallDisk::mount(ws.path().join("disk"), "8m");
    let cfg = ws.write_config(
        &format!("url = {:?}", disk.0.join("repo").display().to_string()),
        &[("main", "host=/nonexistent dbname=x")],
    );
    ok(lb(&cfg).arg("init"));
    let pg_wal = ws.path().join("pg_wal");
    std::fs::create_dir_all(&pg_wal).expect("mkdir");
    // 16 MiB that does not compress: twice what the disk holds
    let big = pg_wal.join("000000010000000000000001");
    std::fs::write(&big, common::noise(16 << 20, 0x2545_F491_4F6C_DD1D)).expect("segment");
    let (code, _, err) = run(lb(&cfg).arg("wal-push").arg(&big));
    assert_eq!(
        code, 7,
        "a push that does not fit fails as unavailable: {err}"
    );
    assert!(
        err.contains("No space left"),
        "the full disk is named: {err}"
    );
    assert!(err.contains("free disk space"), "says what to do: {err}");
    let archive = disk.0.join("repo/lifeboat-wal/main/00000001");
    let left: Vec<_> = std::fs::read_dir(&archive)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing is left in the archive: {left:?}");

    let small = pg_wal.join("000000010000000000000002");
    std::fs::write(&small, vec![0u8; 16 << 20]).expect("segment");
    ok(lb(&cfg).arg("wal-push").arg(&small));
    let back = ws.path().join("back");
    ok(lb(&cfg)
        .args(["wal-fetch", "000000010000000000000002"])
        .arg(&back));
    assert!(std::fs::read(&back).expect("fetched") == vec![0u8; 16 << 20]);
}

/// Flips one byte of the biggest pack (it holds the dump's data); returns it, and the
/// other packs with their sizes, smallest first.
fn flip_a_byte_of_the_biggest_pack(
    ws: &Workspace,
) -> (std::path::PathBuf, Vec<(u64, std::path::PathBuf)>) {
    let mut packs: Vec<(u64, std::path::PathBuf)> = walk(&ws.repo_path().join("data"))
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    packs.sort();
    let (len, pack) = packs.pop().expect("a data pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(len / 3) as usize] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    (pack, packs)
}

#[test]
fn flipped_byte_in_a_pack_is_named_and_refused() {
    let (c, ws, cfg) = backed_up(800);
    let id = list_json(&cfg)[0]["id"].as_str().unwrap().to_string();
    // a second backup, in packs of its own: it must stay "ok" next to the damaged one
    ok(lb(&cfg).args(["backup", "--kind", "schema"]));
    let schema = list_json(&cfg)
        .into_iter()
        .find(|b| b["kind"] == "schema")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(lb(&cfg).args(["verify", "--all", "--read-data"]));
    let (_, packs) = flip_a_byte_of_the_biggest_pack(&ws);

    let (code, out, err) = run(lb(&cfg).args(["verify", "--all", "--read-data"]));
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(out.contains(&format!("DAMAGED  {}", &id[..8])), "{out}");
    assert!(out.contains(&format!("ok       {}", &schema[..8])), "{out}");
    let checked = list_json(&cfg).len();
    assert!(
        out.contains(&format!(
            "{checked} backup(s) checked, 1 DAMAGED, data read"
        )),
        "the last line counts the damage: {out}"
    );
    // with --json the report is the one document on stdout (no error document after it)
    let (code, out, _) = run(lb(&cfg).args(["--json", "verify", "--all", "--read-data"]));
    assert_eq!(code, 6);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert!(v.get("error").is_none(), "{v}");
    let (code, _, err) =
        run(lb(&cfg).args(["restore", "--latest", "--to-database", "from_damaged"]));
    assert_eq!(code, 6, "{err}");
    // what is wrong and what to do, not pages of the repository library's context
    assert!(
        err.lines().count() <= 4 && err.contains("cannot be read"),
        "{err}"
    );
    assert!(err.contains("verify --all --read-data"), "{err}");
    assert!(
        !db_exists(&c, "from_damaged"),
        "a damaged backup must not touch the target"
    );

    // every pack damaged, trees too: each backup is named, and no library thread panics
    // (with RUST_BACKTRACE set, rustic_core's tree loaders used to outlive the check and
    // take the process down with exit 101)
    for (len, p) in &packs {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[(len / 2) as usize] ^= 0x40;
        std::fs::write(p, bytes).unwrap();
    }
    let (code, out, err) =
        run(lb(&cfg)
            .env("RUST_BACKTRACE", "1")
            .args(["verify", "--all", "--read-data"]));
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.contains(&format!("DAMAGED  {}", &schema[..8])), "{out}");

    // a pack file gone is found without reading any data
    let (_, smallest) = packs.first().expect("another pack").clone();
    std::fs::remove_file(&smallest).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(
        code, 6,
        "a missing pack fails a structure check: {out}\n{err}"
    );
    assert!(out.contains("DAMAGED"), "{out}");
}

/// The repository's config file damaged or deleted: said as what it is, with what to do
/// (not "run verify", which cannot open the repository either, nor "no repository here").
#[test]
fn a_damaged_or_missing_repository_config_is_named() {
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("main", "host=/nonexistent dbname=x")]);
    ok(lb(&cfg).arg("init"));
    let config = ws.repo_path().join("config");
    let good = std::fs::read(&config).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&config, &bad).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("list"));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("config file is damaged or was replaced") && !err.contains("lifeboat verify"),
        "{err}"
    );
    std::fs::remove_file(&config).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("list"));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("has no config file, though its keys, data and snapshots are there"),
        "{err}"
    );
    std::fs::write(&config, &good).unwrap();
    ok(lb(&cfg).arg("list"));
}

/// A backup deleted from the repository (an attacker's `restic forget`) leaves its packs in
/// the index, and the next backup deduplicates against them: `verify --all --read-data`
/// reads them too, and names a damaged one before a backup reuses it.
#[test]
fn a_damaged_pack_no_backup_uses_is_named_before_a_backup_reuses_it() {
    let (_c, ws, cfg) = backed_up(800);
    let id = list_json(&cfg)[0]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(ws.repo_path().join("snapshots").join(&id)).unwrap();
    let (pack, _) = flip_a_byte_of_the_biggest_pack(&ws);
    let short = pack.file_name().unwrap().to_str().unwrap()[..8].to_string();

    let (code, out, err) = run(lb(&cfg).args(["verify", "--all", "--read-data"]));
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(
        format!("{out}{err}").contains(&format!(
            "pack {short} is damaged; no dump checked reads from it"
        )),
        "{out}\n{err}"
    );
    // as the README says: move it out, repair the index, and the next backup stores the
    // data again instead of reusing the damaged copy
    std::fs::rename(&pack, ws.path().join("damaged-pack")).unwrap();
    ok(lb(&cfg).args(["repair", "index"]));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    ok(lb(&cfg).args(["verify", "--latest", "--read-data"]));
}

#[test]
fn a_table_locked_by_another_session_fails_the_backup_instead_of_hanging_it() {
    let (c, _ws, cfg) = backed_up(20);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("lock_wait_timeout = \"2s\"\n");
    std::fs::write(&cfg, text).unwrap();
    // the server answers in German: pg_dump prints its message without a SQLSTATE, and
    // the lock timeout is still recognised (lifeboat asks a superuser's session for English)
    c.sql(
        "postgres",
        &format!(
            "ALTER DATABASE app SET lc_messages TO '{}'",
            german_locale()
        ),
    )
    .unwrap();
    let err = c.sql("app", "select 1/0").unwrap_err();
    assert!(err.to_string().contains("Division"), "not German: {err}");
    // a migration holding an exclusive lock
    let mut holder = common::hold_exclusive_lock(&c, "app", "shop.orders", 60);
    // the schema dump after it is not tried: it would wait as long again, holding the
    // tables it had locked
    let clock = std::time::Instant::now();
    let (code, out, err) = run(lb(&cfg).args([
        "backup", "--kind", "logical", "--kind", "schema", "--kind", "globals",
    ]));
    let took = clock.elapsed();
    // the migration ends (its backend, not only its client)
    end_migration(&c, &mut holder);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("LOCK TABLE shop.orders")
            && err.contains("lock_wait_timeout")
            && format!("{out}{err}")
                .contains("not tried: the logical dump of \"app\" could not get its table locks"),
        "{out}{err}"
    );
    // one wait of 2 s, not two (a generous bound: this is not a speed test)
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let (_c, _ws, cfg) = backed_up(20);
    // `lifeboat list | head -0`: stdout is a pipe nobody reads any more
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .arg("--config")
        .arg(&cfg)
        .arg("list")
        .env("LIFEBOAT_STATE_DIR", cfg.parent().unwrap().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_damaged_snapshot_file_hides_only_itself() {
    let (c, ws, cfg) = backed_up(100);
    ok(lb(&cfg).args(["backup", "--kind", "schema"]));
    let all = list_json(&cfg);
    let logical = all.iter().find(|b| b["kind"] == "logical").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let schema = all.iter().find(|b| b["kind"] == "schema").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // bit rot in one snapshot file
    std::fs::write(ws.repo_path().join("snapshots").join(&schema), b"garbage").unwrap();

    let (code, out, err) = run(lb(&cfg).args(["--json", "list"]));
    assert_eq!(code, 0, "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], logical.as_str());
    assert!(
        err.contains(&format!("snapshot file {} cannot be read", &schema[..8])),
        "{err}"
    );
    // the others stay restorable, and verify names the damaged file
    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "back"]));
    assert_eq!(
        c.sql("back", "select count(*) from shop.users").unwrap(),
        "100"
    );
    let (code, out, _) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(code, 6, "{out}");
    assert!(out.contains(&schema), "{out}");
    // the audit log cannot be vouched for either: the file may have held an entry
    let (code, out, _) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains(&format!("snapshot file {schema} cannot be read")),
        "{out}"
    );
    // the evidence pack cannot be complete without it, and says so
    let (code, out, _) = run(lb(&cfg).arg("report"));
    assert_eq!(code, 6, "{out}");
    assert!(out.contains(&format!("snapshot file {schema}")), "{out}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A pack file lost (deleted, gone with a disk): a backup refuses rather than reference its
/// data and say "backed up"; `repair index` drops it from the index, the next backup stores
/// the data again and restores, and `verify` keeps naming the backup that lost data.
#[test]
fn a_lost_pack_stops_backups_until_the_index_is_repaired() {
    let (c, ws, cfg) = backed_up(200);
    let first = list_json(&cfg)[0]["id"].as_str().unwrap().to_string();
    let mut packs: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(ws.repo_path().join("data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| {
            let p = f.unwrap().path();
            (std::fs::metadata(&p).unwrap().len(), p)
        })
        .collect();
    packs.sort();
    let (_, lost) = packs.pop().expect("a pack");
    std::fs::remove_file(&lost).unwrap();

    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("pack file(s) that are gone") && err.contains("lifeboat repair index"),
        "{err}"
    );
    assert_eq!(list_json(&cfg).len(), 1, "no backup was added");

    let out = ok(lb(&cfg).args(["repair", "index"]));
    assert!(out.contains("1 lost pack(s) dropped"), "{out}");
    let (code, out, _) = run(lb(&cfg).args(["verify", &first]));
    assert_eq!(code, 6, "the backup that lost data stays damaged: {out}");

    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let second = list_json(&cfg)
        .into_iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .find(|id| *id != first)
        .expect("the new backup");
    ok(lb(&cfg).args(["verify", "--read-data", &second]));
    ok(lb(&cfg).args(["restore", &second, "--to-database", "again"]));
    assert_eq!(count(&c, "again", "shop.users"), 200);
    let log = ok(lb(&cfg).args(["audit", "list"]));
    assert!(log.contains("repair"), "{log}");
}

/// Backups started at the same moment into one repository (cron jobs that overlap): each
/// confirmed its snapshot by listing the repository before and after saving it, and read
/// another run's pending snapshot just as that run deleted it. The run then failed (exit 4
/// or 7) with its backup stored and its pending snapshot left behind. A walkthrough saw 4
/// failures in 104 runs; this runs 24, so without the fix it fails about half the time.
#[test]
fn backups_started_together_all_succeed_and_leave_nothing_pending() {
    let (_c, ws, cfg) = backed_up(10);
    let before = list_json(&cfg).len();
    let mut runs = 0;
    for round in 0..6 {
        let children: Vec<_> = (0..4)
            .map(|i| {
                // as from four hosts: on one host a second run of the same backup stops
                // (tested below); the repository must take them all at once
                common::lb_std(&cfg)
                    .env(
                        "LIFEBOAT_STATE_DIR",
                        cfg.parent().unwrap().join(format!("state-{round}-{i}")),
                    )
                    .args(["backup", "--kind", "globals", "-q"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            runs += 1;
        }
    }
    assert_eq!(list_json(&cfg).len(), before + runs);
    let stats = ok(lb(&cfg).arg("stats"));
    assert!(!stats.contains("interrupted backup"), "{stats}");

    // on one host, a run of the same backup while another runs (cron overlapping a run
    // stuck on a table lock) stops before it touches the database; another kind goes on
    let repo = ws.repo_path().display().to_string();
    let lock = lifeboat_core::ops::running::lock_path_in(
        &cfg.parent().unwrap().join("state"),
        lifeboat_core::ops::running::Work {
            location: &repo,
            source: "app-db",
            kind: lifeboat_core::sources::postgres::logical::BackupKind::Logical,
            database: Some("app"),
        },
    );
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "pid 4242 since 2026-12-07 03:00:00 UTC").unwrap();
    let held = nix::fcntl::Flock::lock(
        std::fs::File::open(&lock).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let (code, out, err) = run(lb(&cfg).args(["backup", "--overlap-wait", "2s"]));
    assert_eq!(code, 5, "{err}");
    assert!(
        format!("{out}{err}").contains("another logical backup of \"app\" of source app-db")
            && err.contains("pid 4242 since 2026-12-07 03:00:00 UTC")
            && err.contains("waiting for it (up to 2 s)"),
        "{out}{err}"
    );
    // the schema and the globals of the same run were stored
    let kinds: Vec<String> = list_json(&cfg)
        .iter()
        .rev()
        .take(2)
        .map(|b| b["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"schema".into()) && kinds.contains(&"globals".into()),
        "{kinds:?}"
    );
    // waiting (the default) for the other run, which stores the dump meanwhile: this run
    // does not take it again, and succeeds
    let logical = |cfg: &std::path::Path| {
        list_json(cfg)
            .iter()
            .filter(|b| b["kind"] == "logical")
            .count()
    };
    let before = logical(&cfg);
    let waiting = common::lb_std(&cfg)
        .args(["backup", "--kind", "logical", "--overlap-wait", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // (whether it reaches its claim before or after the other run ends: what the holder
    // stored after it claimed the dump, as its lock file says, is the holder's)
    std::thread::sleep(std::time::Duration::from_secs(2));
    // the other run (its own state directory: the lock held here is its lock)
    ok(lb(&cfg)
        .env(
            "LIFEBOAT_STATE_DIR",
            cfg.parent().unwrap().join("state-other"),
        )
        .args(["backup", "--kind", "logical"]));
    drop(held);
    let done = waiting.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr),
    );
    assert!(done.status.success(), "{out}{err}");
    assert!(
        err.contains("waiting for it")
            && out.contains("logical app: stored by an overlapping run on this host (pid 4242")
            && out.contains("not taken again"),
        "{out}{err}"
    );
    assert_eq!(logical(&cfg), before + 1, "the dump was taken once");
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(logical(&cfg), before + 2);
}

/// What cron, systemd and containers do to a process: a working directory a deploy removed,
/// stdout into a log on a full disk, umask 000.
#[test]
fn a_removed_working_directory_a_full_disk_and_an_open_umask() {
    let (_c, ws, cfg) = backed_up(20);
    let exe = assert_cmd::cargo::cargo_bin("lifeboat");
    // lifeboat run by `sh -c SCRIPT` (which ends in `exec "$@"`), as lb() runs it
    let through_sh = |script: &str, args: &[&std::ffi::OsStr]| {
        let c = lb_std(&cfg);
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", script, "sh"])
            .args(args)
            .arg(&exe)
            .args(c.get_args())
            .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        for (k, v) in c.get_envs() {
            if v.is_none() {
                sh.env_remove(k);
            }
        }
        sh
    };
    // pg_dumpall (like initdb and pg_ctl) refuses to run in a directory that is gone
    let gone = ws.path().join("release-1");
    std::fs::create_dir(&gone).unwrap();
    let out = through_sh(
        r#"cd "$1" && rmdir "$1" && shift && exec "$@""#,
        &[gone.as_os_str()],
    )
    .args(["backup", "--kind", "globals"])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the working directory no longer exists"),
        "{err}"
    );

    // a summary that cannot be written is lost, not a panic (101) over a stored backup;
    // the exit code says the output did not arrive
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let before = list_json(&cfg).len();
    let out = lb_std(&cfg)
        .args(["backup", "--kind", "schema"])
        .stdout(full())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("the output could not be written in full (the operation itself succeeded)")
            && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(list_json(&cfg).len(), before + 1, "the backup was stored");
    let out = lb_std(&cfg)
        .args(["--json", "list"])
        .stdout(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));

    // files for people outside the repository are never world-writable
    let book = ws.path().join("runbook.md");
    let out = through_sh(r#"umask 000 && exec "$@""#, &[])
        .args(["runbook", "-o"])
        .arg(&book)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&book).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "runbook mode {mode:o}");
}

/// SIGTERM while a restore's pre-hook runs (`timeout`, a service stop): lifeboat exits 130
/// with its JSON error document, and the hook goes with it instead of running on alone
/// (it used to finish its work after lifeboat had said "interrupted").
#[test]
fn a_restore_hook_is_stopped_with_an_interrupted_restore() {
    let (_c, ws, cfg) = common::backed_up(20);
    let marker = ws.path().join("hook-finished");
    let started = ws.path().join("hook-started");
    let child = common::lb_std(&cfg)
        .args([
            "--json",
            "restore",
            "--latest",
            "--to-database",
            "hooked",
            "--pre-hook",
        ])
        .arg(format!(
            "touch {}; sleep 4; touch {}",
            started.display(),
            marker.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the hook never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["error"]["kind"], "interrupted", "{doc}");
    assert_eq!(doc["error"]["exit_code"], 130, "{doc}");
    // the hook would have finished 4 s after it started
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(!marker.exists(), "the hook ran on after the interrupt");
}

/// A key file that no longer parses is damage to put back, not an outage to retry.
#[test]
fn a_damaged_key_file_is_named_as_damage() {
    let ws = Workspace::new();
    let cfg = ws.local_config(&[]);
    ok(lb(&cfg).arg("init"));
    let keys: Vec<_> = std::fs::read_dir(ws.repo_path().join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    std::fs::write(&keys[0], "garbage\n").unwrap();
    let (code, _, err) = run(lb(&cfg).arg("list"));
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("keys/"), "{err}");
}

/// The pg_dump processes whose parent is `pid`.
fn pg_dumps_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid ...`
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            comm.ends_with("(pg_dump")
                && rest.split_whitespace().nth(1) == Some(pid.to_string().as_str())
        })
        .collect()
}

/// Whether process `pid` still runs (a zombie has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')))
}

/// `kill -9` of a backup (the OOM killer) takes its pg_dump with it: left alone, it went on
/// waiting for a table lock, holding the locks it had, until its next write found no
/// reader.
#[test]
fn a_backup_killed_outright_takes_its_pg_dump_with_it() {
    let (c, _ws, cfg) = backed_up(20);
    let mut holder = common::hold_exclusive_lock(&c, "app", "shop.orders", 60);
    let mut backup = common::lb_std(&cfg)
        .args(["backup", "--kind", "logical"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = (0..300).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let waits = c
            .sql(
                "app",
                "select count(*) from pg_stat_activity where query like 'LOCK TABLE%' and wait_event_type = 'Lock'",
            )
            .ok()?;
        (waits.trim() == "1")
            .then(|| pg_dumps_of(backup.id()))
            .filter(|d| d.len() == 1)
    });
    let dumps = waiting.expect("pg_dump waiting for the lock");
    backup.kill().unwrap();
    backup.wait().unwrap();
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !running(dumps[0])
    });
    end_migration(&c, &mut holder);
    assert!(
        gone,
        "pg_dump {} outlived the backup killed outright",
        dumps[0]
    );
}

/// A nightly dump that succeeds beside failing WAL archiving says so: no point-in-time
/// recovery reaches past the last archived segment, and only `wal status` told.
#[test]
fn a_backup_says_when_the_servers_wal_archiving_fails() {
    let c = lifeboat_testing::Cluster::start_with(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        "archive_mode = on\narchive_command = 'false'",
    )
    .expect("an archiving cluster");
    sample_db(&c, "app", 10);
    c.sql("app", "select pg_switch_wal()").unwrap();
    let failed = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.sql(
            "app",
            "select last_failed_time is not null from pg_stat_archiver",
        )
        .is_ok_and(|v| v.trim() == "t")
    });
    assert!(failed, "the archiver never failed");
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the server's WAL archiving is failing:")
            && err.contains("wal status --source app-db"),
        "{err}"
    );
    // a command that cannot be run (exit 127) stops the archiver and counts no failure:
    // the segment waiting longer than the RPO objective says it
    // the failures counted so far must read as past: one success after them
    c.sql("app", "alter system set archive_command = 'true'")
        .unwrap();
    c.sql("app", "select pg_reload_conf()").unwrap();
    let archived = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.sql(
            "app",
            "select last_archived_time > last_failed_time from pg_stat_archiver",
        )
        .is_ok_and(|v| v.trim() == "t")
    });
    assert!(archived, "the archiver never succeeded");
    c.sql(
        "app",
        "alter system set archive_command = '/nonexistent/lifeboat wal-push %p'",
    )
    .unwrap();
    c.sql("app", "select pg_reload_conf()").unwrap();
    c.sql("app", "create table stall (i int); select pg_switch_wal()")
        .unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "name = \"app-db\"\n",
        "name = \"app-db\"\nobjectives = { rpo = \"2s\" }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the server's WAL archiving has stalled: ")
            && err.contains(" segment(s) wait in pg_wal")
            && err.contains("no failure is recorded"),
        "{err}"
    );
}

/// Ends the session [`common::hold_exclusive_lock`] started on `shop.orders` of `app`: its
/// backend, not only its client.
fn end_migration(c: &lifeboat_testing::Cluster, holder: &mut std::process::Child) {
    c.sql(
        "app",
        "select pg_terminate_backend(pid) from pg_locks where relation = 'shop.orders'::regclass and mode = 'AccessExclusiveLock'",
    )
    .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
}
