//! Logical backup, list, stats, restore and verify on a local repository, driven through
//! the `lifeboat` binary against a real PostgreSQL.

mod common;

use common::{backed_up, count, db_exists, lb, list_json, ok, run};
use lifeboat_testing::{cluster, sample_db, Workspace, REPO_PASSWORD};

const TABLES: [&str; 4] = [
    "shop.users",
    "shop.orders",
    "shop.events",
    "shop.attachments",
];

#[test]
fn backup_list_stats_restore_round_trip() {
    let c = cluster();
    sample_db(&c, "app", 1500);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    let out = ok(lb(&cfg).args(["--json", "backup", "--source", "app-db"]));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let backups = report["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 3, "logical, schema, globals: {out}");

    let list = list_json(&cfg);
    let kinds: Vec<&str> = list.iter().map(|b| b["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 3);
    for k in ["logical", "schema", "globals"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let logical = list.iter().find(|b| b["kind"] == "logical").unwrap();
    // a listing says how many tables and rows; --tables adds each table
    assert!(logical["truth"].get("tables").is_none(), "{logical}");
    let with_tables: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "list", "--tables"]))).unwrap();
    let logical_tables = with_tables.iter().find(|b| b["kind"] == "logical").unwrap();
    // the truth recorded at backup time matches an independent count
    let truth_tables = logical_tables["truth"]["tables"].as_array().unwrap();
    assert_eq!(
        logical["truth"]["table_count"].as_u64().unwrap(),
        truth_tables.len() as u64
    );
    assert_eq!(
        logical["truth"]["total_rows"].as_u64().unwrap(),
        truth_tables
            .iter()
            .map(|x| x["rows"].as_u64().unwrap())
            .sum::<u64>()
    );
    for t in TABLES {
        let (schema, name) = t.split_once('.').unwrap();
        let rec = truth_tables
            .iter()
            .find(|x| x["schema"] == schema && x["table"] == name)
            .unwrap_or_else(|| panic!("{t} missing from truth"));
        assert_eq!(rec["rows"].as_i64().unwrap(), count(&c, "app", t), "{t}");
        // rows and hash, not the COPY statement (megabytes for thousands of tables)
        assert!(
            rec.get("copy").is_none() && rec["hash"].is_string(),
            "{rec}"
        );
    }
    // filters; --last keeps the newest
    let newest: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "list", "--last", "2"]))).unwrap();
    assert_eq!(
        newest.iter().map(|b| b["id"].clone()).collect::<Vec<_>>(),
        list[1..]
            .iter()
            .map(|b| b["id"].clone())
            .collect::<Vec<_>>()
    );
    let only_schema = ok(lb(&cfg).args(["--json", "list", "--kind", "schema"]));
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&only_schema)
            .unwrap()
            .len(),
        1
    );
    let none = ok(lb(&cfg).args(["--json", "list", "--until", "2000-01-01"]));
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&none)
            .unwrap()
            .len(),
        0
    );

    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).unwrap();
    assert_eq!(stats["sources"][0]["source"], "app-db");
    assert_eq!(stats["pending"], 0);

    // restore into a new database: data back, verified against the truth
    let out = ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--to-database",
        "app_copy",
    ]));
    assert!(out.contains("verified"), "{out}");
    for t in TABLES {
        assert_eq!(count(&c, "app_copy", t), count(&c, "app", t), "{t}");
    }
    let digest = |db: &str| {
        c.sql(
            db,
            "select md5(string_agg(o::text, ',' order by o.id)) from shop.orders o",
        )
        .unwrap()
    };
    assert_eq!(digest("app"), digest("app_copy"));

    // by id, into a third database
    let id = logical["id"].as_str().unwrap();
    ok(lb(&cfg).args([
        "restore",
        &id[..10],
        "--to-database",
        "app_by_id",
        "--jobs",
        "1",
    ]));
    assert_eq!(
        count(&c, "app_by_id", "shop.events"),
        count(&c, "app", "shop.events")
    );

    // a server that cannot reach lifeboat's FIFO is read through psql instead, with the same
    // result. As root (CI) the private directory keeps the server's OS user out; as the
    // server's own user it cannot, and both restores go through the FIFO.
    let private = ws.path().join("private-scratch");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(
        &private,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .unwrap();
    for (db, scratch) in [("app_fifo", None), ("app_psql", Some(&private))] {
        let mut cmd = lb(&cfg);
        if let Some(dir) = scratch {
            cmd.env("LIFEBOAT_SCRATCH_DIR", dir);
        }
        let out = ok(cmd.args(["--json", "restore", "--latest", "--to-database", db]));
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        // the plan's backup carries its truth's rows and hashes, not every COPY statement
        let planned = &r["plan"]["backup"]["truth"]["tables"][0];
        assert!(
            planned["rows"].is_u64() && planned.get("copy").is_none(),
            "{out}"
        );
        assert!(
            r["comparison"]["tables"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["ok"] == true),
            "{out}"
        );
        // as root the server runs as another user, who cannot enter the private directory
        let expect_server = scratch.is_none() || !nix::unistd::geteuid().is_root();
        assert_eq!(
            r["comparison"]["read_by_server"], expect_server,
            "{db}: {out}"
        );
    }

    // verify with read-data
    let out = ok(lb(&cfg).args(["verify", "--all", "--read-data"]));
    assert!(
        out.contains("3 backup(s) checked, all ok, data read"),
        "{out}"
    );
    let out = ok(lb(&cfg).args(["verify", "--all", "--read-data-subset", "50%"]));
    assert!(
        out.contains("3 backup(s) checked, all ok, data read for a subset of the packs (50%)"),
        "a subset is not reported as all data read: {out}"
    );
    let (code, _, err) = run(lb(&cfg).args(["verify", "--all", "--read-data-subset", "lots"]));
    assert_eq!(code, 2, "{err}");
    // --list shows what can be restored, newest first
    let out = ok(lb(&cfg).args(["restore", "--list"]));
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ID "), "a header: {out}");
    let first = lines.next().unwrap();
    assert!(
        first.starts_with(&id[..8]) && first.contains(" logical "),
        "{out}"
    );
    // the columns line up under their headers
    assert_eq!(header.find("KIND"), first.find("logical"), "{out}");
}

#[test]
fn restore_refuses_non_empty_target_and_dry_run_changes_nothing() {
    let (c, _ws, cfg) = backed_up(300);
    let audit_entries = || {
        serde_json::from_str::<Vec<serde_json::Value>>(&ok(
            lb(&cfg).args(["--json", "audit", "list"])
        ))
        .unwrap()
        .len()
    };

    // a refused dry run is refused the same way, and leaves no trace in the audit log
    let before = audit_entries();
    let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--dry-run"]));
    assert_eq!(code, 9, "{err}");
    assert_eq!(audit_entries(), before);

    let (code, _, err) = run(lb(&cfg).args(["restore", "--latest"]));
    assert_eq!(code, 9, "{err}");
    assert!(
        err.contains("exists and is not empty") && err.contains("--clean --force"),
        "{err}"
    );
    // while a real one is logged
    assert_eq!(audit_entries(), before + 1);

    // a recovery target without --kind physical is refused, not ignored: the last dump
    // restored "successfully" is not the point in time asked for
    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--target-time",
        "2026-12-06 19:18",
        "--exclusive",
        "--to-database",
        "pitr",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--target-time, --exclusive only apply to a physical restore")
            && err.contains("--kind physical"),
        "{err}"
    );
    assert_eq!(audit_entries(), before + 1);

    let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--clean"]));
    assert_eq!(code, 2, "{err}");
    // usage mistakes attempted nothing and are not logged (README, Audit log): --clean
    // alone, an id that names no backup (with or without --source), in restore and verify
    for args in [
        &["restore", "deadbeef", "--to-database", "x"][..],
        &[
            "restore",
            "deadbeef",
            "--source",
            "app-db",
            "--to-database",
            "x",
        ],
        &["verify", "deadbeef"],
    ] {
        let (code, _, err) = run(lb(&cfg).args(args));
        assert_eq!(code, 4, "{args:?}: {err}");
        assert!(err.contains("no backup with id deadbeef"), "{err}");
    }
    // nor are names PostgreSQL cannot take, and --to-dir with a dump's kind (it did a
    // physical restore)
    let long = "x".repeat(70);
    for (args, said) in [
        (
            &["restore", "--latest", "--to-database", ""][..],
            "--to-database is empty",
        ),
        (
            &["restore", "--latest", "--to-database", &long],
            "PostgreSQL allows 63",
        ),
        (
            &[
                "restore",
                "--latest",
                "--kind",
                "logical",
                "--to-dir",
                "/nonexistent/x",
            ],
            "--to-dir restores a physical backup, not a logical one",
        ),
        (
            &["restore", "--latest", "--to-database", "j", "--jobs", "0"],
            "1..=64",
        ),
        (
            &["restore", "--list", "--latest"],
            "--list lists the backups",
        ),
        (
            &["backup", "--kind", "physical", "--database", "app"],
            "a physical backup holds the whole cluster",
        ),
        // more than the server has free (the test cluster allows 50): the application
        // would find none left
        (
            &[
                "restore",
                "--latest",
                "--to-database",
                "j",
                "--jobs",
                "64",
                "--dry-run",
            ],
            "which has",
        ),
    ] {
        let (code, _, err) = run(lb(&cfg).args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
    }
    assert_eq!(audit_entries(), before + 1);
    // a template: every database created afterwards would hold the restored tables
    for db in ["template1", "template0"] {
        let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--to-database", db]));
        assert_eq!(code, 2, "{db}: {err}");
        assert!(err.contains("is a template"), "{db}: {err}");
    }
    assert_eq!(
        c.sql(
            "template1",
            "select count(*) from pg_tables where schemaname = 'shop'"
        )
        .unwrap(),
        "0"
    );
    // refused for what the target is: logged as refused restores
    assert_eq!(audit_entries(), before + 3);

    // a database without tables is not empty when it holds anything a restore would clash with
    for (db, sql) in [
        (
            "only_function",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'",
        ),
        ("only_schema", "CREATE SCHEMA s"),
        ("only_type", "CREATE TYPE mood AS ENUM ('ok')"),
        ("only_large_object", "SELECT lo_create(0)"),
    ] {
        c.sql("postgres", &format!("CREATE DATABASE {db}")).unwrap();
        c.sql(db, sql).unwrap();
        let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--to-database", db]));
        assert_eq!(code, 9, "{db}: {err}");
        assert!(err.contains("exists and is not empty"), "{db}: {err}");
    }
    // while a freshly created one is empty (its public schema and plpgsql do not count)
    c.sql("postgres", "CREATE DATABASE blank").unwrap();
    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "blank"]));
    assert_eq!(count(&c, "blank", "shop.users"), 300);

    let out = ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "planned",
        "--dry-run",
    ]));
    assert!(
        out.contains("would restore") && out.contains("planned"),
        "{out}"
    );
    assert!(!db_exists(&c, "planned"));

    // an application still connected to the original is named before --clean waits for it
    let mut app = std::process::Command::new(
        lifeboat_core::sources::postgres::conn::PgBin::new(None).program("psql"),
    )
    .args(["-X", "-d", &c.dsn("app"), "-c", "select pg_sleep(60)"])
    .env("PGAPPNAME", "shop-frontend")
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("psql");
    let connected = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.sql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'shop-frontend'",
        )
        .is_ok_and(|n| n.trim() == "1")
    });
    assert!(connected, "the application session never connected");
    let (code, _, err) =
        run(lb(&cfg).args(["restore", "--latest", "--clean", "--force", "--dry-run"]));
    let _ = app.kill();
    let _ = app.wait();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("1 other session(s) are connected to \"app\" (shop-frontend)")
            && err.contains("stop the application first"),
        "{err}"
    );

    // over the original, explicitly; an object made since the backup that depends on a
    // table of it stops the clean before anything is dropped
    c.sql("app", "delete from shop.events").unwrap();
    c.sql(
        "app",
        "create view public.recent_orders as select * from shop.orders",
    )
    .unwrap();
    let orders = count(&c, "app", "shop.orders");
    let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--clean", "--force"]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("as it was") && err.contains("recent_orders"),
        "{err}"
    );
    assert_eq!(count(&c, "app", "shop.orders"), orders);
    assert_eq!(count(&c, "app", "shop.users"), 300);
    c.sql("app", "drop view public.recent_orders").unwrap();
    ok(lb(&cfg).args(["restore", "--latest", "--clean", "--force"]));
    assert!(count(&c, "app", "shop.events") > 0);

    // a large object made since the backup stays, as a table made since would, and is
    // no difference (pg_restore --clean replaces the backup's objects only); the backup's
    // own come back
    c.sql("app", "select lo_from_bytea(4242, 'backed up')")
        .unwrap();
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    c.sql(
        "app",
        "select lo_from_bytea(4343, 'made since'), lo_put(4242, 0, 'CHANGED')",
    )
    .unwrap();
    let out = ok(lb(&cfg).args(["restore", "--latest", "--clean", "--force"]));
    assert!(
        out.contains(
            "note: 1 large object(s) the backup does not have (made since) were left in place"
        ),
        "{out}"
    );
    // what time the data is from, said where the operator looks
    let newest = list_json(&cfg)
        .into_iter()
        .rfind(|b| b["kind"] == "logical")
        .unwrap();
    let started: jiff::Timestamp = newest["started_at"].as_str().unwrap().parse().unwrap();
    assert!(
        out.contains(&format!(
            "(the data as of {})",
            started.strftime("%Y-%m-%d %H:%M:%S UTC")
        )),
        "{out}"
    );
    assert_eq!(
        c.sql("app", "select convert_from(lo_get(4242), 'UTF8')")
            .unwrap()
            .trim(),
        "backed up"
    );

    // unknown id and empty selection
    let (code, _, err) = run(lb(&cfg).args(["restore", "deadbeef", "--to-database", "x"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no backup with id deadbeef"), "{err}");
    let (code, _, err) =
        run(lb(&cfg).args(["restore", "--before", "2001-01-01", "--to-database", "x"]));
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = run(lb(&cfg).args(["restore", "--to-database", "x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("which backup"), "{err}");
}

#[test]
fn hooks_receive_the_snapshot_and_a_failing_pre_hook_stops_the_restore() {
    let (c, ws, cfg) = backed_up(200);
    let log = ws.path().join("hooks.log");
    let pre = format!(
        "echo pre $LIFEBOAT_SNAPSHOT_ID $LIFEBOAT_TARGET_DATABASE >> {}",
        log.display()
    );
    // the post hook sees the restored data (a migration would run here)
    let post = format!(
        "psql -X -A -t -d \"$LIFEBOAT_TARGET_CONNINFO\" -c 'select count(*) from shop.users' | sed 's/^/post /' >> {}",
        log.display()
    );
    // what the hooks print goes to stderr: stdout is one JSON document
    let (code, out, err) = run(lb(&cfg).args([
        "--json",
        "restore",
        "--latest",
        "--to-database",
        "hooked",
        "--pre-hook",
        &format!("echo pre-hook says hi; {pre}"),
        "--post-hook",
        &format!("echo running migrations; {post}"),
    ]));
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(doc["plan"]["target_database"], "hooked", "{out}");
    assert!(
        err.contains("pre-hook says hi") && err.contains("running migrations"),
        "{err}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let id = list_json(&cfg)[0]["id"].as_str().unwrap().to_string();
    assert!(text.contains(&format!("pre {id} hooked")), "{text}");
    assert!(text.contains("post 200"), "{text}");

    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "never",
        "--pre-hook",
        "exit 3",
    ]));
    assert_eq!(code, 10, "{err}");
    assert!(err.contains("pre-restore hook failed"), "{err}");
    assert!(!db_exists(&c, "never"));

    // a failing post hook: the error says the data is restored and verified
    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "restored_anyway",
        "--post-hook",
        "TOKEN=sk_live_hook_secret; exit 4",
    ]));
    assert_eq!(code, 10, "{err}");
    // a hook's command line may carry a token: never in the error or the log
    assert!(!err.contains("sk_live_hook_secret"), "{err}");
    assert!(
        err.contains("was restored into database \"restored_anyway\" and verified")
            && err.contains("post-restore hook failed"),
        "{err}"
    );
    assert_eq!(count(&c, "restored_anyway", "shop.users"), 200);
    // and the audit log keeps the cause with the failed restore
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    let last = entries.last().expect("an entry");
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["details"]
            .as_str()
            .unwrap()
            .contains("post-restore hook failed"),
        "{last}"
    );
    assert!(!last.to_string().contains("sk_live_hook_secret"), "{last}");
}

#[test]
fn globals_are_restored_when_asked() {
    let c = cluster();
    sample_db(&c, "app", 100);
    c.sql("postgres", "CREATE ROLE app_reader NOLOGIN").unwrap();
    c.sql(
        "app",
        "GRANT USAGE ON SCHEMA shop TO app_reader; GRANT SELECT ON shop.users TO app_reader",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).arg("backup"));
    // production's superuser has a password, which the globals backup carries
    c.sql("postgres", "ALTER ROLE postgres PASSWORD 'production-pw'")
        .unwrap();
    c.sql(
        "postgres",
        "CREATE ROLE app_writer LOGIN PASSWORD 'writer-pw'",
    )
    .unwrap();
    let newest: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "backup"]))).unwrap();
    // what the job just made, and only that: the three backups of the second run
    let checked: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "verify", "--latest"]))).unwrap();
    let ids = |v: &serde_json::Value| {
        let mut ids: Vec<String> = v["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&checked), ids(&newest), "{checked}");
    assert_eq!(ids(&checked).len(), 3);
    // a fresh server has no such role: restoring there needs the globals first; it is
    // reached over TCP with its own password, which the restore must not replace
    let target = cluster();
    std::fs::write(
        target.data_dir().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    target
        .sql(
            "postgres",
            "ALTER ROLE postgres PASSWORD 'new-host-pw'; select pg_reload_conf()",
        )
        .unwrap();
    // a target that logs every statement: production's password hashes stay out of it
    target
        .sql("postgres", "ALTER SYSTEM SET log_statement = 'all'")
        .unwrap();
    target.sql("postgres", "select pg_reload_conf()").unwrap();
    while target.sql("postgres", "show log_statement").unwrap().trim() != "all" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres password=new-host-pw dbname=postgres",
        target.port()
    );
    let out = ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--target-dsn",
        &dsn,
        "--globals",
    ]));
    assert!(
        out.contains("restored the globals (roles, tablespaces) first"),
        "{out}"
    );
    assert!(
        out.contains("note: role \"postgres\", which this restore connects as, kept its password on the target"),
        "{out}"
    );
    let server_log =
        std::fs::read_to_string(target.data_dir().parent().unwrap().join("server.log")).unwrap();
    assert!(server_log.contains("DO $lifeboat$"), "{server_log}");
    assert!(!server_log.contains("SCRAM-SHA-256$"), "{server_log}");
    assert_eq!(
        target
            .sql("postgres", "select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'app_writer'")
            .unwrap()
            .trim(),
        "t"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(lb(&cfg).args([
        "--json",
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--target-dsn",
        &dsn,
        "--to-database",
        "app_again",
        "--globals",
    ])))
    .unwrap();
    assert_eq!(json["globals_restored"], true, "{json}");
    let json: serde_json::Value = serde_json::from_str(&ok(lb(&cfg).args([
        "--json",
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--target-dsn",
        &dsn,
        "--to-database",
        "app_no_globals",
    ])))
    .unwrap();
    assert_eq!(json["globals_restored"], false, "{json}");
    assert_eq!(
        target
            .sql(
                "postgres",
                "select count(*) from pg_roles where rolname = 'app_reader'"
            )
            .unwrap(),
        "1"
    );
    assert_eq!(
        target
            .sql(
                "app",
                "select has_table_privilege('app_reader', 'shop.users', 'select')"
            )
            .unwrap(),
        "t"
    );
}

/// A workspace whose source `multi` dumps databases `a` (50 users) and `b` (400 users),
/// backed up once.
fn two_databases() -> (lifeboat_testing::Cluster, Workspace, std::path::PathBuf) {
    let c = cluster();
    sample_db(&c, "a", 50);
    sample_db(&c, "b", 400);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("multi", &c.dsn("postgres"))]);
    // the source is the config's last table: its keys can be appended
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("databases = [\"a\", \"b\"]\n");
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).arg("backup"));
    (c, ws, cfg)
}

#[test]
fn a_multi_database_source_needs_database_to_restore_and_has_stats_per_database() {
    let (c, _ws, cfg) = two_databases();
    // one server and pg_dump: their versions are said once for the databases
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.contains("connected: 2 databases (server ") && out.contains("): a, b"),
        "{out}"
    );

    // one database that cannot be dumped does not keep the others from their backup
    let before = list_json(&cfg).len();
    let (code, out, err) = run(lb(&cfg).args([
        "--json",
        "backup",
        "--kind",
        "logical",
        "--kind",
        "globals",
        "--database",
        "gone",
        "--database",
        "b",
    ]));
    assert_eq!(code, 4, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("the report, one document");
    assert_eq!(r["backups"][0]["database"], "b", "{r}");
    // the roles through a database that could be reached, not the first named
    assert_eq!(r["backups"][1]["kind"], "globals", "{r}");
    assert_eq!(r["failed"][0]["database"], "gone", "{r}");
    assert_eq!(r["failed"][0]["error_kind"], "not_found", "{r}");
    assert!(
        err.contains("1 of 3 backups of source multi failed"),
        "{err}"
    );
    assert_eq!(list_json(&cfg).len(), before + 2);
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["details"]
            .as_str()
            .unwrap()
            .contains("failed: logical gone"),
        "{last}"
    );
    // the failure first, then what was stored
    let said = last["details"].as_str().unwrap();
    assert!(
        said.contains(" backups failed: logical gone")
            && said.find("failed: logical gone") < said.find("; stored: "),
        "{last}"
    );

    // a backup given by id is restored only as what it is: another database, kind or
    // source named beside it is refused (it restored one source's dump over another's)
    let of_a = list_json(&cfg)
        .into_iter()
        .find(|b| b["kind"] == "logical" && b["database"] == "a")
        .expect("a logical backup of a");
    let id = of_a["id"].as_str().unwrap()[..8].to_string();
    let elsewhere = c.dsn("postgres");
    for (extra, says) in [
        (vec!["--database", "b"], "is of database \"a\", not \"b\""),
        (vec!["--kind", "schema"], "is a logical backup, not schema"),
        // another source, on a server of its own
        (
            vec!["--source", "other", "--target-dsn", &elsewhere],
            "is a backup of source \"multi\", not of \"other\"",
        ),
    ] {
        let (code, _, err) = run(lb(&cfg)
            .args(["restore", &id, "--to-database", "copy_a", "--dry-run"])
            .args(&extra));
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    // a drill of a source of several databases needs one: a usage mistake, not logged
    let logged = || {
        serde_json::from_str::<Vec<serde_json::Value>>(&ok(
            lb(&cfg).args(["--json", "audit", "list"])
        ))
        .unwrap()
        .len()
    };
    let before = logged();
    let (code, _, err) = run(lb(&cfg).args(["drill", "--pick", "latest"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backs up several databases (a, b)"), "{err}");
    assert_eq!(logged(), before, "a refused drill is no failed drill");
    // named alike, it goes ahead, and the plan names the backup's source
    let out = ok(lb(&cfg).args([
        "restore",
        &id,
        "--source",
        "multi",
        "--database",
        "a",
        "--kind",
        "logical",
        "--to-database",
        "copy_a",
        "--dry-run",
    ]));
    assert!(out.contains("(source multi, logical of \"a\""), "{out}");

    for kind in ["logical", "schema"] {
        let (code, _, err) = run(lb(&cfg).args([
            "restore",
            "--latest",
            "--source",
            "multi",
            "--kind",
            kind,
            "--to-database",
            "x",
        ]));
        assert_eq!(code, 2, "{kind}: {err}");
        assert!(
            err.contains("\"a\", \"b\"") && err.contains("--database NAME"),
            "{kind}: {err}"
        );
        assert!(!db_exists(&c, "x"), "{kind}");
    }

    ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "multi",
        "--database",
        "b",
        "--to-database",
        "x",
    ]));
    assert_eq!(count(&c, "x", "shop.users"), 400);
    ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "multi",
        "--database",
        "a",
        "--to-database",
        "y",
    ]));
    assert_eq!(count(&c, "y", "shop.users"), 50);
    // the list of what can be restored keeps to the database asked for
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ok(lb(&cfg).args([
        "--json",
        "restore",
        "--list",
        "--source",
        "multi",
        "--database",
        "a",
    ])))
    .unwrap();
    assert!(
        !listed.is_empty() && listed.iter().all(|b| b["database"] == "a"),
        "{listed:?}"
    );
    // the runbook has the steps for each database, and the newest backup of each
    let book = ok(lb(&cfg).arg("runbook"));
    for d in ["a", "b"] {
        assert!(
            book.contains(&format!("--database {d} --to-database {d}_restored")),
            "{book}"
        );
        assert!(book.contains(&format!("` of `{d}`, finished")), "{book}");
    }
    // a database without backups is named, with the ones that have them
    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "multi",
        "--database",
        "nosuch",
        "--to-database",
        "z",
    ]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("of database \"nosuch\"") && err.contains("backups of: \"a\", \"b\""),
        "{err}"
    );

    // a drill restores one database: it must be named, never picked silently
    let (code, _, err) = run(lb(&cfg).args(["drill", "--source", "multi"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a, b") && err.contains("--database"), "{err}");
    let out = ok(lb(&cfg).args(["--json", "drill", "--source", "multi", "--database", "a"]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["database"], "a", "{report}");
    assert_eq!(report["passed"], true, "{report}");
    // the runbook gives a's measured restore time as a's only, and names b as never drilled
    let book = ok(lb(&cfg).arg("runbook"));
    assert!(
        book.contains("last measured RTO of a logical restore of `a`:"),
        "{book}"
    );
    assert!(
        book.contains("no passed logical drill, so no measured RTO, for `b`"),
        "{book}"
    );
    assert!(
        book.contains("- all databases one after the other (a host loss): ")
            && book.contains(" and the databases never drilled"),
        "{book}"
    );
    // the evidence pack has a line per database
    let pack: serde_json::Value = serde_json::from_str(&ok(lb(&cfg).args([
        "--json",
        "report",
        "--from",
        "2020-01-01",
    ])))
    .unwrap();
    assert_eq!(
        pack["undrilled"]["multi"][0],
        serde_json::json!(["b"]),
        "{pack}"
    );
    assert_eq!(pack["drills"][0]["database"], "a", "{pack}");
    let markdown = ok(lb(&cfg).args(["report", "--from", "2020-01-01"]));
    assert!(
        markdown
            .contains("**Not drilled in the period**: 1 of the 2 databases of source multi (b)"),
        "{markdown}"
    );
    let lines = pack["backups"].as_array().expect("backup lines");
    for db in ["a", "b"] {
        assert!(
            lines
                .iter()
                .any(|l| l["kind"] == "logical" && l["database"] == db),
            "{pack}"
        );
    }

    // stats: one row per database, and growth compares each database with itself (a second
    // backup of unchanged data grows by about nothing; a against b would be several hundred %)
    ok(lb(&cfg).arg("backup"));
    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).unwrap();
    let kinds = stats["sources"][0]["kinds"].as_array().unwrap();
    for kind in ["logical", "schema"] {
        for db in ["a", "b"] {
            let row = kinds
                .iter()
                .find(|k| k["kind"] == kind && k["database"] == db)
                .unwrap_or_else(|| panic!("no {kind} row for {db}: {stats}"));
            // (b's logical backup once more, next to the database that could not be dumped)
            let expected = if kind == "logical" && db == "b" { 3 } else { 2 };
            assert_eq!(row["count"], expected, "{kind} {db}: {row}");
            let growth = row["growth_percent"].as_f64().unwrap();
            assert!(growth.abs() < 1.0, "{kind} {db}: {row}");
        }
    }
    let globals = kinds.iter().find(|k| k["kind"] == "globals").unwrap();
    assert_eq!(globals["count"], 3, "{globals}");
    assert_eq!(kinds.len(), 5, "{stats}");
    let table = ok(lb(&cfg).arg("stats"));
    assert!(
        table.lines().next().unwrap().contains("DATABASE"),
        "{table}"
    );
    // a database taken out of `databases` is left out of the runbook's steps, and named
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("databases = [\"a\", \"b\"]", "databases = [\"a\"]"),
    )
    .unwrap();
    let book = ok(lb(&cfg).arg("runbook"));
    assert!(
        book.contains("no longer in its `databases`") && book.contains("`b`"),
        "{book}"
    );
    assert!(!book.contains("--database b "), "{book}");
    // the latest logical backup named is the configured database's, not b's (the newest)
    let latest: Vec<&str> = book
        .lines()
        .filter(|l| l.starts_with("- latest logical backup"))
        .collect();
    assert!(
        !latest.is_empty() && latest.iter().all(|l| l.contains("of `a`")),
        "{latest:?}"
    );
    // the seeds' random test picks a database at random too
    let drilled: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "drill", "--pick", "random"]))).unwrap();
    assert!(
        ["a", "b"].contains(&drilled["database"].as_str().unwrap_or_default()),
        "{drilled}"
    );
    assert_eq!(drilled["passed"], true, "{drilled}");

    // each database's own assertions run only in a drill of it
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "drill = { checks = [\"select true\"], database_checks = { a = [\"select count(*) = 50 from shop.users\"], b = [\"select false\"] } }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = ok(lb(&cfg).args(["drill", "--database", "a"]));
    assert!(
        out.contains("assert: select count(*) = 50 from shop.users")
            && out.contains("assert: select true")
            && !out.contains("select false"),
        "{out}"
    );
    let (code, out, err) = run(lb(&cfg).args(["drill", "--database", "b"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("FAIL assert: select false") && !out.contains("from shop.users"),
        "{out}"
    );
}

#[test]
fn target_dsn_uses_the_targets_password_not_the_sources() {
    let c = cluster();
    sample_db(&c, "app", 50);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    // the source's password (its socket trusts anyway): it must never reach the target
    let source_pw = ws.path().join("pg.pass");
    std::fs::write(&source_pw, "production-secret").unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "password_file = {:?}\n",
        source_pw.display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));

    // a target that asks for a password (scram over TCP) and knows only its own
    let target = cluster();
    target
        .sql(
            "postgres",
            "CREATE ROLE restorer LOGIN SUPERUSER PASSWORD 'target-secret'",
        )
        .unwrap();
    let port = target.port();
    // a wrong password: the hint is about the target's password, not the source's settings
    let (code, _, err) = run(lb(&cfg).env("PGPASSWORD", "wrong").args([
        "restore",
        "--latest",
        "--target-dsn",
        &format!("host=127.0.0.1 port={port} user=restorer dbname=postgres"),
        "--to-database",
        "refused",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("hint: the target server refused the password")
            && err.contains("~/.pgpass for that server"),
        "{err}"
    );
    assert!(!err.contains("check password_file"), "{err}");
    // the password from PGPASSWORD, as the help says
    ok(lb(&cfg).env("PGPASSWORD", "target-secret").args([
        "restore",
        "--latest",
        "--target-dsn",
        &format!("host=127.0.0.1 port={port} user=restorer dbname=postgres"),
        "--to-database",
        "by_env",
    ]));
    assert_eq!(count(&target, "by_env", "shop.users"), 50);
    // and from the DSN itself
    ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--target-dsn",
        &format!("postgresql://restorer:target-secret@127.0.0.1:{port}/postgres"),
        "--to-database",
        "by_dsn",
    ]));
    assert_eq!(count(&target, "by_dsn", "shop.users"), 50);
}

#[test]
fn hooks_and_postgres_programs_do_not_inherit_lifeboat_secrets() {
    let (_c, ws, cfg) = backed_up(50);
    // psql and pg_restore behind wrappers that log their environment
    let real = lifeboat_core::sources::postgres::conn::PgBin::new(None).program("psql");
    let real = real.parent().unwrap();
    let wrappers = ws.path().join("pg-bin");
    std::fs::create_dir(&wrappers).unwrap();
    let pg_env = ws.path().join("pg.env");
    for program in ["psql", "pg_restore", "pg_dump"] {
        let path = wrappers.join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n(echo 'ran {program}'; env) >> '{}'\nexec '{}' \"$@\"\n",
                pg_env.display(),
                real.join(program).display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
    }
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "pg_bin_dir = {:?}\n",
        wrappers.display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();

    let hook_env = ws.path().join("hook.env");
    let hook = format!("env >> '{}'", hook_env.display());
    ok(lb(&cfg)
        .env("LIFEBOAT_PASSWORD", REPO_PASSWORD)
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
        .env("AWS_SESSION_TOKEN", "aws-session-value")
        .args([
            "restore",
            "--latest",
            "--to-database",
            "copy",
            "--pre-hook",
            &hook,
            "--post-hook",
            &hook,
        ]));
    for (what, file, ran) in [
        ("hooks", &hook_env, "LIFEBOAT_HOOK=post-restore"),
        ("psql/pg_restore", &pg_env, "ran pg_restore"),
    ] {
        let env = std::fs::read_to_string(file).unwrap();
        assert!(env.contains(ran), "{what} did not run: {env}");
        for secret in [REPO_PASSWORD, "aws-secret-value", "aws-session-value"] {
            assert!(!env.contains(secret), "{what} saw {secret:?}");
        }
    }
}

#[test]
fn a_database_with_an_awkward_name_backs_up_restores_and_its_runbook_commands_run() {
    let c = cluster();
    let name = "../Café \"prod\" 'x'";
    // four databases: the runbook's steps become one shell loop over them
    let names = [name, "-dash", "b 2", "c"];
    for (i, n) in names.iter().enumerate() {
        c.sql(
            "postgres",
            &format!("CREATE DATABASE \"{}\"", n.replace('"', "\"\"")),
        )
        .unwrap();
        c.sql(n, lifeboat_core::demo::SAMPLE_SCHEMA).unwrap();
        c.sql(n, &lifeboat_core::demo::sample_data_sql(30 + i as u64))
            .unwrap();
    }
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("odd", &c.dsn("postgres"))]);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("databases = {names:?}\n"));
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    ok(lb(&cfg).args(["verify", "--all", "--read-data"]));

    // the runbook's restore command, run by a shell exactly as printed (the time filled in)
    let book = ok(lb(&cfg).arg("runbook"));
    let line = book
        .lines()
        .find(|l| l.contains("restore --before") && l.contains("_restored"))
        .unwrap_or_else(|| panic!("{book}"));
    // the damaged database comes first, the loop over all of them after it
    assert!(
        line.contains("--database DB --to-database DB_restored"),
        "{line}"
    );
    let line = book
        .lines()
        .find(|l| l.contains("restore --before") && l.contains("for db in "))
        .unwrap_or_else(|| panic!("{book}"));
    assert!(line.trim().starts_with("`for db in "), "{line}");
    // replacing databases in place names the damaged one: a loop would roll back the others
    assert!(
        !book
            .lines()
            .any(|l| l.contains("for db in") && l.contains("--clean --force")),
        "{book}"
    );
    assert!(
        book.lines()
            .any(|l| l.contains("--database DB --clean --force") && l.contains("only for those")),
        "{book}"
    );
    let cmd = line
        .trim()
        .trim_matches('`')
        .replace("--before \"YYYY-MM-DDTHH:MM:SSZ\"", "--latest");
    let bin_dir = assert_cmd::cargo::cargo_bin("lifeboat")
        .parent()
        .unwrap()
        .to_path_buf();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env("LIFEBOAT_STATE_DIR", ws.path().join("state"))
        .env_remove("LIFEBOAT_PASSWORD")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("FAILED"),
        "{cmd}\n{err}"
    );
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            count(&c, &format!("{n}_restored"), "shop.users"),
            30 + i as i64,
            "{n}"
        );
    }
}

/// Every mode under `root`, the root itself included: `d700`, `f600`.
fn modes_under(root: &std::path::Path) -> std::collections::BTreeSet<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |m: &std::fs::Metadata| {
        let kind = if m.is_dir() { 'd' } else { 'f' };
        format!("{kind}{:o}", m.permissions().mode() & 0o777)
    };
    let mut out = std::collections::BTreeSet::new();
    out.insert(mode(&std::fs::metadata(root).unwrap()));
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            out.insert(mode(&m));
            if m.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    out
}

/// A repository lifeboat creates is its owner's alone, as restic makes one: its key file
/// holds the master key, encrypted with the password, which any local user could otherwise
/// copy and attack offline. One made beforehand for a group of its users (0750) keeps the
/// group's read bits for everything written into it, the WAL archive included.
#[test]
fn a_new_repository_is_private_and_a_shared_one_keeps_its_group() {
    let (_c, ws, cfg) = backed_up(20);
    let seg = ws.path().join("000000010000000000000001");
    std::fs::write(&seg, vec![7u8; 1 << 20]).unwrap();
    ok(lb(&cfg).arg("wal-push").arg(&seg));
    let private = modes_under(&ws.repo_path());
    assert_eq!(
        private,
        ["d700", "f600"].map(String::from).into_iter().collect(),
        "{private:?}"
    );

    use std::os::unix::fs::PermissionsExt;
    let shared = ws.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
    let repo = shared.to_str().unwrap();
    ok(lb(&cfg).args(["--repo", repo, "init"]));
    ok(lb(&cfg).args(["--repo", repo, "backup", "--kind", "logical"]));
    ok(lb(&cfg).args(["--repo", repo, "wal-push"]).arg(&seg));
    let grouped = modes_under(&shared);
    assert_eq!(
        grouped,
        ["d750", "f640"].map(String::from).into_iter().collect(),
        "{grouped:?}"
    );

    // a repository directory open to all (made under umask 000): `init` takes away what it
    // gives others, so nothing in it is readable or writable by all
    let open = ws.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let repo = open.to_str().unwrap();
    ok(lb(&cfg).args(["--repo", repo, "init"]));
    ok(lb(&cfg).args(["--repo", repo, "backup", "--kind", "logical"]));
    ok(lb(&cfg).args(["--repo", repo, "wal-push"]).arg(&seg));
    // the root as the test made it aside, so that a 0777 below it would show
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
    let modes = modes_under(&open);
    assert_eq!(
        modes,
        ["d700", "d770", "f660"]
            .map(String::from)
            .into_iter()
            .collect(),
        "{modes:?}"
    );
}

/// The workspace, its configuration and password file readable by another user (the
/// PostgreSQL user a test runs lifeboat as).
fn readable_by_others(ws: &Workspace, cfg: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for (p, mode) in [
        (ws.path().to_path_buf(), 0o755),
        (cfg.to_path_buf(), 0o644),
        (ws.path().join("repo.pass"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// `config check` as another user on a repository root made and keeps for itself, readable
/// by everyone: it cannot write there (every backup and WAL push would fail) and the key
/// file is open to the host. Both are said, the first as a failure.
#[test]
fn config_check_names_a_repository_it_cannot_write_and_one_open_to_all() {
    if nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .is_none()
        || !nix::unistd::geteuid().is_root()
    {
        panic!("this test runs as root with a postgres OS user, as the suite does");
    }
    let (_c, ws, cfg) = backed_up(10);
    let repo = ws.repo_path();
    let exe = common::shared_binary(ws.path());
    readable_by_others(&ws, &cfg);
    // the repository as someone would have loosened it, for reading by monitoring
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(status.success());
    let mut cmd = std::process::Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(&exe)
        .arg("--config")
        .arg(&cfg)
        .args(["config", "check"])
        .env("LIFEBOAT_STATE_DIR", ws.path().join("state-pg"));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains(&format!("this user cannot write into {}", repo.display()))),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("note")
            && l.contains("is open to every user of this host (mode 755)")),
        "{text}"
    );
    // root, who may write, hears only of the open modes
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(!out.contains("cannot write"), "{out}");
    assert!(out.contains("open to every user of this host"), "{out}");
}

/// Key files another user wrote into the repository (`restic key add` run as root makes
/// them root's, mode 0400): the repository's own user still opens it with its key, and
/// only when no key fits is the unreadable file what the error names.
#[test]
fn key_files_this_user_cannot_read_do_not_stop_the_key_that_fits() {
    use std::os::unix::fs::PermissionsExt;
    let pg = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the suite runs as root with a postgres OS user");
    let (_c, ws, cfg) = backed_up(10);
    let repo = ws.repo_path();
    let exe = common::shared_binary(ws.path());
    readable_by_others(&ws, &cfg);
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{}:{}", pg.uid, pg.gid)])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(status.success());
    // copies of the key under other names, root's: listed before the real one or after
    // it, as the directory happens to order them
    let keys = repo.join("keys");
    let key = std::fs::read_dir(&keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for i in 0..19u8 {
        let copy = keys.join(format!("{:064x}", u128::from(i) + 0xf00d));
        std::fs::copy(&key, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    let as_pg = |password: Option<&str>| {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(&exe)
            .arg("--config")
            .arg(&cfg)
            .args(["list"])
            .env("LIFEBOAT_STATE_DIR", ws.path().join("state-pg"));
        if let Some(p) = password {
            cmd.env("LIFEBOAT_PASSWORD", p);
        }
        cmd.output().unwrap()
    };
    let out = as_pg(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_pg(Some("not-the-password"));
    let err = String::from_utf8_lossy(&out.stderr);
    // a wrong password, or its key in a file this user cannot read: exit 3, both named
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the password fits no key file this user can read")
            && err.contains(&format!("keys/{:064x} (owner root)", 0xf00d_u128))
            && err.contains("restic key add"),
        "{err}"
    );
}

/// A source renamed or removed in the configuration keeps its backups: they are still
/// drilled and restored by name, and the runbook lists them.
#[test]
fn a_source_no_longer_configured_keeps_its_backups_in_reach() {
    let (_c, _ws, cfg) = backed_up(20);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("name = \"app-db\""), "{text}");
    std::fs::write(&cfg, text.replace("name = \"app-db\"", "name = \"app-eu\"")).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["drill", "--source", "app-db"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PASSED") && err.contains("source \"app-db\" is not in the configuration"),
        "{out}{err}"
    );
    let book = ok(lb(&cfg).arg("runbook"));
    assert!(
        book.contains("## Backups of sources not in the configuration")
            && book.contains("- `app-db`: 1 backup(s)"),
        "{book}"
    );
    // a name the repository does not know either is still an error
    let (code, _, err) = run(lb(&cfg).args(["drill", "--source", "nowhere"]));
    assert_eq!(code, 4, "{err}");
    // writing stays with configured sources: WAL pushed under a name this host does not
    // configure would land in another server's archive
    let (code, _, err) = run(lb(&cfg).args([
        "wal-push",
        "--source",
        "app-db",
        "/nonexistent/000000010000000000000001",
    ]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("no source named \"app-db\""), "{err}");
}

/// One database per customer: a pattern in `databases` backs up a customer's database the
/// night it appears, and a list that leaves a database of the server out says so.
#[test]
fn database_patterns_follow_the_server_and_a_list_names_what_it_leaves_out() {
    // the server's archive_command runs another lifeboat than this one, as an old build
    // left in place after an upgrade would: `config check` names it below
    let ws = Workspace::new();
    let other = ws.path().join("lifeboat-old");
    std::fs::copy("/bin/true", &other).unwrap();
    let c = lifeboat_testing::Cluster::start_with(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        &format!(
            "archive_mode = on\narchive_command = '{} wal-push %p'",
            other.display()
        ),
    )
    .expect("an archiving cluster");
    for db in ["cust_a", "cust_b", "billing"] {
        c.sql("postgres", &format!("CREATE DATABASE {db}")).unwrap();
        c.sql(db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
            .unwrap();
    }
    let cfg = ws.local_config(&[("saas", &c.dsn("postgres"))]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let with = |databases: &str| {
        std::fs::write(&cfg, format!("{base}databases = {databases}\n")).unwrap();
    };
    ok(lb(&cfg).arg("init"));
    // a list written before cust_b and billing were made: both are named
    with(r#"["cust_a", "cust_a"]"#);
    let (code, out, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("the server has 2 database(s) that source.databases does not name")
            && err.contains("billing, cust_b"),
        "{err}"
    );
    // named twice, dumped once
    assert_eq!(list_json(&cfg).len(), 1);
    let check = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        check
            .lines()
            .any(|l| l.starts_with("note") && l.contains("billing, cust_b")),
        "{check}"
    );
    assert!(
        check.contains(&format!(
            "PostgreSQL archives its WAL with {}, not with this lifeboat",
            other.display()
        )),
        "{check}"
    );
    // an archive_command copied from another server names that server's source
    c.sql(
        "postgres",
        &format!(
            "ALTER SYSTEM SET archive_command = '{} wal-push --source elsewhere %p'",
            other.display()
        ),
    )
    .unwrap();
    c.sql("postgres", "select pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let check = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        check.contains("PostgreSQL archives its WAL as source \"elsewhere\"")
            && check.contains("wal-push --source saas %p"),
        "{check}"
    );
    // one left out on purpose is not named again
    with(r#"["cust_a", "!billing"]"#);
    let (code, out, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("the server has 1 database(s)") && err.contains(": cust_b ("),
        "{err}"
    );
    // a pattern: the customers the server has now
    with(r#"["cust_*"]"#);
    let (code, out, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("billing") && !err.contains("cust_b"), "{err}");
    c.sql("postgres", "CREATE DATABASE cust_c").unwrap();
    // a backslash in a name is itself, not an escape
    c.sql("postgres", r#"CREATE DATABASE "odd\x41name""#)
        .unwrap();
    with(r#"["*"]"#);
    let (code, out, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("does not name"), "{err}");
    let mut latest: Vec<String> = list_json(&cfg)
        .iter()
        .rev()
        .take(6)
        .map(|b| b["database"].as_str().unwrap().to_string())
        .collect();
    latest.sort();
    assert_eq!(
        latest,
        [
            "billing",
            "cust_a",
            "cust_b",
            "cust_c",
            r"odd\x41name",
            "postgres"
        ]
    );
    // a pattern that matches nothing is refused, naming it
    with(r#"["crm_*"]"#);
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("(crm_*) matches no database on the server"),
        "{err}"
    );
}

/// `--pick random` over a source's databases leaves out one without tables (the
/// `postgres` maintenance database under `databases = ["*"]`): its drill proves nothing.
#[test]
fn a_random_drill_picks_a_database_with_tables() {
    let c = cluster();
    sample_db(&c, "a", 20);
    c.sql("postgres", "CREATE DATABASE e").unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("two", &c.dsn("postgres"))]);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("databases = [\"a\", \"e\"]\n");
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(list_json(&cfg).len(), 2);
    // each pick would be e half the time if it could be
    for _ in 0..3 {
        let drilled: serde_json::Value =
            serde_json::from_str(&ok(lb(&cfg).args(["--json", "drill", "--pick", "random"])))
                .unwrap();
        assert_eq!(drilled["database"], "a", "{drilled}");
    }
}
