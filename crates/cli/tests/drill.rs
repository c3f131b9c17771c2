//! Restore drills: one that passes, and drills that must fail and name the failing check.

mod common;

use common::{lb, ok, run};
use lifeboat_testing::{cluster, sample_db, Workspace};

fn list_ids(cfg: &std::path::Path) -> Vec<String> {
    let out = ok(lb(cfg).args(["--json", "list", "--kind", "logical"]));
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn drill_config(ws: &Workspace, dsn: &str, extra: &str) -> std::path::PathBuf {
    let cfg = ws.local_config(&[("app-db", dsn)]);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(extra);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Starts `lifeboat drill` with a hook that touches `marker`, then sleeps; returns once
/// the drill is midway (cluster up, backup restored, hook running).
fn drill_until_its_hook(
    cfg: &std::path::Path,
    marker: &std::path::Path,
    scratch: Option<&std::path::Path>,
) -> std::process::Child {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"));
    cmd.arg("--config")
        .arg(cfg)
        .args([
            "drill",
            "--hook",
            &format!("touch {} && sleep 20", marker.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // as `lb` does: parked audit entries stay with the test
        .env("LIFEBOAT_STATE_DIR", cfg.parent().unwrap().join("state"));
    if let Some(s) = scratch {
        cmd.env("LIFEBOAT_SCRATCH_DIR", s);
    }
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the drill never reached its hook"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// Interrupts `child` as Ctrl-C does; it must exit 130.
fn interrupt(child: std::process::Child) {
    interrupt_with(child, nix::sys::signal::Signal::SIGINT);
}

/// Sends `child` `signal` (SIGINT as Ctrl-C, SIGTERM as a service stop or `timeout`); it
/// must exit 130.
fn interrupt_with(mut child: std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn drill_passes_and_writes_evidence() {
    let c = cluster();
    sample_db(&c, "app", 400);
    // definitions holding timestamptz and bytea constants, which pg_dump writes in its
    // session's time zone and bytea_output: the drill's comparison of definitions must
    // read them as the backup did
    c.sql(
        "app",
        "CREATE TABLE shop.ticks (at timestamptz NOT NULL DEFAULT '2024-06-01 14:00:00+02', b bytea DEFAULT '\\x00ff5c'::bytea CHECK (b <> '\\xdead'::bytea)) PARTITION BY RANGE (at);
         CREATE TABLE shop.ticks_2024 PARTITION OF shop.ticks FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2025-01-01 00:00+00');",
    )
    .unwrap();
    // production's own session settings: the text of timestamptz and bytea values depends
    // on the first two (the truth must not), the checks rely on the search_path, and a
    // comment holds what a naive statement split would cut
    c.sql(
        "postgres",
        "ALTER DATABASE app SET timezone TO 'Pacific/Chatham';
         ALTER DATABASE app SET bytea_output TO 'escape';
         ALTER DATABASE app SET search_path TO shop, public;
         ALTER DATABASE app SET default_transaction_read_only TO on;
         COMMENT ON DATABASE app IS 'Billing DB;\n-- do not drop\n\\ end'",
    )
    .unwrap();
    let ws = Workspace::new();
    // and the connection string a third
    let dsn = format!("{} options='-c timezone=Asia/Kathmandu'", c.dsn("app"));
    let cfg = drill_config(
        &ws,
        &dsn,
        "objectives = { rpo = \"24h\", rto = \"2h\" }\ndrill = { checks = [\"select count(*) > 0 from users\", \"select shobj_description(d.oid, 'pg_database') = E'Billing DB;\\\\n-- do not drop\\\\n\\\\\\\\ end' from pg_database d where datname = current_database()\"] }\n",
    );
    ok(lb(&cfg).arg("init"));
    // and the operator's shell a fourth
    ok(lb(&cfg).env("PGTZ", "America/St_Johns").arg("backup"));
    let evidence = ws.path().join("evidence");
    // the throw-away cluster and the fetched dump go here (reachable by the cluster's
    // user); pg_ctl hands the socket directory to a shell, which must see one word
    let scratch = ws.path().join("scr 'atch");
    std::fs::create_dir(&scratch).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let pghost = ws.path().join("pghost");
    let out = ok(lb(&cfg)
        .args(["--json", "drill", "--report-dir"])
        .arg(&evidence)
        .arg("--scratch-dir")
        .arg(&scratch)
        .arg("--hook")
        .arg(format!("echo \"$PGHOST\" > {}", pghost.display())));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["passed"], true, "{out}");
    // each table's numbers, typed, beside the checks' words
    let tables = r["tables"].as_array().expect("tables");
    let users = tables
        .iter()
        .find(|t| t["table"].as_str().is_some_and(|n| n.ends_with("users")))
        .expect("the users table");
    assert_eq!(users["rows"], users["expected_rows"], "{users}");
    assert!(users["rows"].as_u64() > Some(0), "{users}");
    assert!(
        tables.iter().all(|t| t["hash_matches"] == true),
        "{tables:?}"
    );
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "definitions vs the backup" && c["ok"] == true),
        "{out}"
    );
    // the throw-away server ran there (its socket directory is in it), and left nothing
    assert!(
        std::fs::read_to_string(&pghost)
            .unwrap()
            .starts_with(&scratch.display().to_string()),
        "{out}"
    );
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "the drill left {left:?} behind");
    // one that shell would expand is refused, and what it says never runs
    let pwned = ws.path().join("pwned");
    let evil = ws.path().join(format!("s$(touch {})", pwned.display()));
    std::fs::create_dir_all(&evil).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("drill").arg("--scratch-dir").arg(&evil));
    assert!(
        code != 0 && err.contains("pg_ctl hands to a shell"),
        "{err}"
    );
    assert!(!pwned.exists());
    // one with a comma no client could reach: refused too
    let comma = ws.path().join("scr,atch");
    std::fs::create_dir(&comma).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("drill").arg("--scratch-dir").arg(&comma));
    assert!(
        code != 0 && err.contains("has a comma in its path"),
        "{err}"
    );
    assert_eq!(r["rto"]["objective_secs"], 7200.0);
    assert_eq!(r["rto"]["met"], true);
    assert!(r["rpo"]["achieved_secs"].as_f64().unwrap() < 3600.0);
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "globals",
            "cluster",
            "fetch",
            "restore",
            "indexes",
            "checks",
            "hooks",
            "assertions",
            "teardown"
        ]
    );
    let checks = r["checks"].as_array().unwrap();
    assert!(checks
        .iter()
        .any(|c| c["name"] == "table shop.orders" && c["ok"] == true));
    assert!(checks
        .iter()
        .any(|c| c["name"] == "assert: select count(*) > 0 from users" && c["ok"] == true));
    // the comment came back whole (it is compared by the check itself)
    assert!(
        checks.iter().any(|c| c["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("assert: select shobj_description"))
            && c["ok"] == true),
        "{out}"
    );
    // production size known: an extrapolation is given
    assert!(r["extrapolated_rto_secs"].as_f64().is_some(), "{out}");
    let id = r["id"].as_str().unwrap();
    for ext in ["json", "md", "html"] {
        let f = evidence.join(format!("{id}.{ext}"));
        let text = std::fs::read_to_string(&f).unwrap();
        let verdict = if ext == "json" {
            "\"passed\": true"
        } else {
            "PASSED"
        };
        assert!(text.contains(verdict), "{}", f.display());
    }
    // the HTML page as a browser renders it: verdict, objectives, every check, the timeline
    let (dom, png) = common::render_in_chromium(&evidence.join(format!("{id}.html")));
    assert!(dom.contains(r#"id="verdict">PASSED<"#), "{dom}");
    assert!(
        dom.contains("<td>table shop.orders</td><td>pass</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td>RTO</td>") && dom.contains("<td>met, "),
        "{dom}"
    );
    assert_eq!(
        dom.matches("<rect").count(),
        phases.len(),
        "one timeline bar per phase"
    );
    assert!(
        png > 10_000,
        "the screenshot of the report is not blank ({png} bytes)"
    );
    // the drill report is in the repository but not listed as a backup
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "list"]))).unwrap();
    assert_eq!(list.len(), 3);
    // the production database was not touched
    assert_eq!(
        c.sql("app", "select count(*) from shop.users").unwrap(),
        "400"
    );

    // a past drill's report comes back from the repository alone, as the auditor wants it
    let again = ws.path().join("again.html");
    ok(lb(&cfg)
        .args(["report", "--drill", id, "--format", "html", "-o"])
        .arg(&again));
    let html = std::fs::read_to_string(&again).unwrap();
    assert!(
        html.contains(&format!("Restore drill {id}")) && html.contains(r#"id="verdict">PASSED<"#),
        "{html}"
    );
    let md = ok(lb(&cfg).args(["report", "--drill", id]));
    assert!(
        md.starts_with(&format!("# Restore drill {id} — PASSED")),
        "{md}"
    );
    // byte for byte what the drill wrote, so a handed-over file can be checked with diff
    for ext in ["md", "html", "json"] {
        let again = ok(lb(&cfg).args(["report", "--drill", id, "--format", ext]));
        let kept = std::fs::read_to_string(evidence.join(format!("{id}.{ext}"))).unwrap();
        assert_eq!(again.trim_end(), kept.trim_end(), "{ext}");
    }
    let (code, _, err) = run(lb(&cfg).args(["report", "--drill", "drill-19990101T000000Z"]));
    assert_eq!(code, 4, "{err}");
    // --json with --format html: the file gets HTML, stdout its JSON acknowledgement (the
    // file got JSON); without a file the two are a usage mistake
    let ack = ok(lb(&cfg)
        .args(["--json", "report", "--drill", id, "--format", "html", "-o"])
        .arg(&again));
    assert!(ack.contains("written_to"), "{ack}");
    assert!(std::fs::read_to_string(&again)
        .unwrap()
        .contains(r#"id="verdict">PASSED<"#));
    let (code, out, err) =
        run(lb(&cfg).args(["--json", "report", "--drill", id, "--format", "html"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--format html and --json"), "{err}");

    // the runbook names the latest backup and the drill's measured RTO
    let book = ok(lb(&cfg).arg("runbook"));
    let logical = list.iter().find(|b| b["kind"] == "logical").unwrap();
    let short = &logical["id"].as_str().unwrap()[..8];
    assert!(
        book.contains(&format!("latest logical backup: `{short}`")),
        "{book}"
    );
    assert!(
        book.contains(&format!("last drill: {id}")) && book.contains("passed, measured RTO"),
        "{book}"
    );
    assert!(
        book.contains(&format!("proven by drill {id}"))
            && book.contains("last measured RTO of a logical restore"),
        "{book}"
    );
    assert!(
        book.contains("Scenario 3: ransomware")
            && book.contains("restore --latest --source app-db"),
        "{book}"
    );

    // two drills started at the same moment (two cron jobs) keep their own reports, and
    // the evidence still verifies
    let ids: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let out = ok(lb(&cfg)
                        .args(["--json", "drill", "--report-dir"])
                        .arg(&evidence)
                        .env("LIFEBOAT_SCRATCH_DIR", &scratch));
                    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
                    r["id"].as_str().unwrap().to_string()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert!(evidence.join(format!("{id}.json")).exists(), "{id}");
    }
    ok(lb(&cfg).arg("report"));
    // a report directory under a file is refused before the drill; one that cannot be
    // made (not even by root: /proc) fails the job that collects the files after it, and
    // names no files that are not there
    let blocked = ws.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let (code, out, err) = run(lb(&cfg)
        .args(["drill", "--report-dir"])
        .arg(blocked.join("evidence"))
        .arg("--scratch-dir")
        .arg(&scratch));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("is not a directory") && !out.contains("drill-"),
        "{out}{err}"
    );
    let (code, out, err) = run(lb(&cfg)
        .args(["drill", "--report-dir", "/proc/lifeboat-evidence"])
        .arg("--scratch-dir")
        .arg(&scratch));
    assert_eq!(code, 7, "{out}{err}");
    assert!(
        out.contains("PASSED")
            && !out.contains("  evidence: ")
            && err.contains("its report files could not be written"),
        "{out}{err}"
    );
}

#[test]
fn drills_fail_and_name_the_failing_check() {
    let c = cluster();
    sample_db(&c, "app", 300);
    let ws = Workspace::new();
    let cfg = drill_config(&ws, &c.dsn("app"), "");
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));

    // a hook deletes rows from the restored copy before the checks
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--hook-before-checks",
        "psql -X -q -c 'delete from shop.events where id % 2 = 0'",
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(out.contains("FAIL table shop.events"), "{out}");
    assert!(err.contains("shop.events"), "{err}");
    // the rows all there, the definitions not: an index gone, a grant given, a comment
    // changed on the restored copy
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--hook-before-checks",
        "psql -X -q -c 'drop index shop.orders_user_idx; alter table shop.users alter column name set default $$x$$; comment on table shop.events is $$changed$$'",
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains("definitions vs the backup"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("  FAIL")
            && line.contains("missing from the restored copy: INDEX shop.orders_user_idx")
            && line.contains("not in the backup: COMMENT TABLE events (schema shop)")
            && line.contains("defined differently: TABLE shop.users"),
        "{line}"
    );
    assert!(out.contains("ok   row counts and content hashes"), "{out}");
    // a migration writes data (alembic rewrites alembic_version) after the comparison, and
    // is no bad backup; the assertions see the migrated copy
    let migrate = "psql -X -q -c 'create table shop.alembic_version (v text); insert into shop.alembic_version values ($$b2$$); update shop.users set name = upper(name)'";
    let out = ok(lb(&cfg).args([
        "drill",
        "--hook",
        migrate,
        "--check",
        "select v = 'b2' from shop.alembic_version",
    ]));
    assert!(out.contains("PASSED"), "{out}");
    // mistakes said before the restore, not after it: an empty assertion, a report
    // directory that is a file
    let file = ws.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    for (args, said) in [
        (vec!["drill", "--check", " "], "an assertion is empty"),
        (
            vec!["drill", "--report-dir", file.to_str().unwrap()],
            "is not a directory",
        ),
    ] {
        let (code, out, err) = run(lb(&cfg).args(&args));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(said), "{args:?}: {err}");
        assert!(!err.contains("drill-"), "no drill ran: {err}");
    }
    // a failing hook stops the hooks after it: no application on a failed migration
    let started = ws.path().join("app-started");
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--hook",
        "echo migrating; exit 3",
        "--hook",
        &format!("touch {}", started.display()),
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        out.contains("migrating") && out.contains("1 later hook(s) not run"),
        "{out}"
    );
    assert!(!started.exists(), "the hook after a failed one ran");
    // also when the failed one ran before the checks
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--hook-before-checks",
        "exit 3",
        "--hook",
        &format!("touch {}", started.display()),
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        !started.exists(),
        "a hook ran after a failed one before the checks"
    );
    assert!(
        out.contains("FAIL hook before checks: exit 3")
            && out.contains("the 1 hook(s) after the checks were not run either"),
        "{out}"
    );
    // a sequence set back by a hook: the batch of sequence checks names it
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--hook-before-checks",
        "psql -X -q -c \"select setval('shop.orders_id_seq', 1)\"",
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        out.contains("sequence shop.orders_id_seq: 1, expected"),
        "{out}"
    );
    // the same value, but the next nextval would hand it out again
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--hook-before-checks",
        "psql -X -q -c \"select setval('shop.orders_id_seq', last_value, false) from shop.orders_id_seq\"",
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains("sequence shop.orders_id_seq:"))
        .unwrap_or_else(|| panic!("{out}"));
    let (actual, expected) = line
        .split_once("sequence shop.orders_id_seq: ")
        .and_then(|(_, r)| r.split_once(", expected "))
        .unwrap_or_else(|| panic!("{line}"));
    // both states said: the values alike, is_called not
    assert!(
        expected.starts_with(&format!(
            "{} (is_called true)",
            actual.split(' ').next().unwrap()
        )),
        "{line}"
    );
    let expected = expected.split([';', ' ']).next().unwrap();
    assert_eq!(actual, format!("{expected} (is_called false)"), "{line}");
    // the same through psql, the path for servers that cannot write into lifeboat's FIFO
    let (code, out, err) = run(lb(&cfg).env("LIFEBOAT_COPY_VIA_PSQL", "1").args([
        "drill",
        "--hook-before-checks",
        "psql -X -q -c 'update shop.events set kind = upper(kind) where id % 7 = 0'",
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(out.contains("FAIL table shop.events"), "{out}");
    let through = |env: Option<&str>| {
        let mut cmd = lb(&cfg);
        if let Some(v) = env {
            cmd.env("LIFEBOAT_COPY_VIA_PSQL", v);
        }
        ok(cmd.args(["drill"]))
    };
    let out = through(Some("1"));
    assert!(out.contains("read through psql"), "{out}");
    let out = through(None);
    assert!(
        out.contains("rows, 4 sequences match"),
        "the sequences are counted among what was compared: {out}"
    );
    assert!(out.contains("written by the server into a FIFO"), "{out}");

    // within a window: none finished then is said, not another one drilled
    let (code, out, err) = run(lb(&cfg).args([
        "drill",
        "--pick",
        "random",
        "--since",
        "2000-01-01",
        "--until",
        "2000-01-31",
    ]));
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        err.contains("no logical backup to drill finished between 2000-01-01 00:00:00 UTC and 2000-01-31 23:59:59")
            && err.contains("widen --since/--until"),
        "{err}"
    );
    // the seeds' monthly test: a random backup (only one here, so it must be that one)
    let out = ok(lb(&cfg).args([
        "--json",
        "drill",
        "--pick",
        "random",
        "--since",
        "2000-01-01",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let only = list_ids(&cfg);
    assert_eq!(r["backup_id"].as_str().unwrap(), only[0], "{out}");

    // a user assertion that is false
    let (code, out, err) =
        run(lb(&cfg).args(["drill", "--check", "select count(*) = 0 from shop.users"]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        out.contains("FAIL assert: select count(*) = 0 from shop.users"),
        "{out}"
    );

    // a corrupted pack: the backup is not readable, the drill says so
    let mut packs: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(ws.repo_path().join("data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| {
            let p = e.unwrap().path();
            (std::fs::metadata(&p).unwrap().len(), p)
        })
        .collect();
    packs.sort();
    let (len, pack) = packs.pop().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(len / 2) as usize] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["drill"]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(out.contains("FAIL backup readable and intact"), "{out}");
    // nothing was recovered, so no recovery time or point was achieved
    assert!(
        out.contains("RTO NOT ACHIEVED") && out.contains("RPO NOT ACHIEVED"),
        "{out}"
    );
    // nor did any check run whose limits the terminal would name
    assert!(!out.contains("not checked:"), "{out}");
    // its report, rendered again, is evidence of a failed restore test and claims no
    // comparison, nor the limits of checks, that never ran
    let drills: Vec<serde_json::Value> = serde_json::from_str(&ok(lb(&cfg).args([
        "--json", "audit", "list", "--action", "drill", "--last", "1",
    ])))
    .unwrap();
    let id = drills[0]["details"]
        .as_str()
        .and_then(|d| d.split(' ').next())
        .unwrap()
        .to_string();
    let md = ok(lb(&cfg).args(["report", "--drill", &id]));
    let page = ok(lb(&cfg).args(["report", "--drill", &id, "--format", "html"]));
    for text in [&md, &page] {
        assert!(
            text.contains("Evidence for SOC 2 CC9.1 / A1.3 of a failed restore test: the restore did not complete")
                && !text.contains("content hashes")
                && !text.contains("Not checked"),
            "{text}"
        );
    }
    assert!(page.contains("<td>RTO</td><td>not achieved</td>"), "{page}");
    let json: serde_json::Value = serde_json::from_str(&ok(
        lb(&cfg).args(["report", "--drill", &id, "--format", "json"])
    ))
    .unwrap();
    assert!(json["rto"]["margin_secs"].is_null(), "{json}");
    assert_eq!(json["rto"]["not_achieved"], true, "{json}");
    assert_eq!(
        c.sql("app", "select count(*) from shop.users").unwrap(),
        "300"
    );
    // the runbook does not send the operator to it without a warning
    let book = ok(lb(&cfg).arg("runbook"));
    assert!(
        book.lines()
            .any(|l| l.contains("latest logical backup") && l.contains("FAILED")),
        "{book}"
    );
}

#[test]
fn interrupted_drill_leaves_no_process_or_directory() {
    use std::os::unix::fs::PermissionsExt;
    let c = cluster();
    sample_db(&c, "app", 100);
    let ws = Workspace::new();
    // the throw-away cluster runs as an unprivileged user when root: it must reach its directory
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = ws.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = drill_config(&ws, &c.dsn("app"), "");
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let marker = ws.path().join("hook-started");
    let child = drill_until_its_hook(&cfg, &marker, Some(&scratch));
    assert!(
        std::fs::read_dir(&scratch).unwrap().count() > 0,
        "the drill uses the scratch directory"
    );
    interrupt(child);
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // a service stop (SIGTERM) cleans up alike
    std::fs::remove_file(&marker).unwrap();
    let child = drill_until_its_hook(&cfg, &marker, Some(&scratch));
    interrupt_with(child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    // both interruptions reach the audit log with the next operation
    ok(lb(&cfg).args(["verify", "--all"]));
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    let interrupted = entries
        .iter()
        .filter(|e| {
            e["action"] == "drill"
                && e["outcome"] == "failed"
                && e["details"]
                    .as_str()
                    .is_some_and(|d| d.contains("interrupted") && d.contains("recorded late"))
        })
        .count();
    assert_eq!(interrupted, 2, "{entries:?}");
    let killed = |entries: &[serde_json::Value]| {
        entries
            .iter()
            .filter(|e| {
                e["action"] == "drill"
                    && e["outcome"] == "failed"
                    && e["details"].as_str().is_some_and(|d| {
                        d.contains("ended without a result: the process was killed outright")
                            && d.contains("recorded late")
                    })
            })
            .count()
    };
    // an interrupted drill is in the log as interrupted, not also as killed
    assert_eq!(killed(&entries), 0, "{entries:?}");
    // neither a server of the drill nor the hook (its own process group) is left
    for pattern in [scratch.display().to_string(), marker.display().to_string()] {
        let procs = std::process::Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .unwrap();
        let survivors = String::from_utf8_lossy(&procs.stdout).trim().to_string();
        assert!(
            survivors.is_empty(),
            "still running after the interrupt ({pattern}): {survivors}"
        );
    }
    // killed outright (kill -9, the OOM killer), nothing cleans up: the next run that uses
    // the scratch place stops the server and removes the copy, and says so
    std::fs::remove_file(&marker).unwrap();
    let mut child = drill_until_its_hook(&cfg, &marker, Some(&scratch));
    child.kill().unwrap();
    child.wait().unwrap();
    let running = |pattern: &str| {
        let procs = std::process::Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&procs.stdout).trim().is_empty()
    };
    assert!(
        running(&scratch.display().to_string()),
        "a killed drill leaves its server running"
    );
    // what looks like leftovers but is not this user's to remove: anyone can make a
    // `lifeboat-*` directory in a shared temp directory (a symlink to one, or a mark of
    // another user with a `data` link to a real cluster)
    let elsewhere = ws.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, scratch.join("lifeboat-link")).unwrap();
    let planted = scratch.join("lifeboat-planted");
    std::fs::create_dir(&planted).unwrap();
    std::fs::write(planted.join(".lifeboat-owner"), "").unwrap();
    std::os::unix::fs::symlink(c.data_dir(), planted.join("data")).unwrap();
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(&planted.join(".lifeboat-owner"), Some(nobody.uid), None).unwrap();
    }
    let (code, _, err) = run(lb(&cfg).env("LIFEBOAT_SCRATCH_DIR", &scratch).arg("drill"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("left by a lifeboat run that ended before it could remove it")
            && err.contains("its throw-away server stopped"),
        "{err}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // not root, the planted mark is this user's own: its directory may go, never the
    // cluster its `data` link points at
    let expected: &[&str] = if nix::unistd::geteuid().is_root() {
        &["lifeboat-link", "lifeboat-planted"]
    } else {
        &["lifeboat-link"]
    };
    assert_eq!(left, expected, "{err}");
    assert!(!running(&format!("{}/lifeboat-pg", scratch.display())));
    // the production cluster behind the planted link still answers
    assert_eq!(c.sql("app", "select 1").unwrap(), "1");
    // the killed drill is in the audit log, as a failure the next drill recorded late
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    assert_eq!(killed(&entries), 1, "{entries:?}");
    // and the chain with the late entry in it verifies
    ok(lb(&cfg).args(["audit", "verify"]));
}

#[test]
fn drill_hooks_from_the_config_see_only_the_drill_and_do_not_outlive_it() {
    let c = cluster();
    sample_db(&c, "app", 50);
    let ws = Workspace::new();
    let env_file = ws.path().join("hook.env");
    let pid_file = ws.path().join("app.pid");
    let chatty = ws.path().join("chatty-done");
    let nobody_file = ws.path().join("nobody.txt");
    let server_env = ws.path().join("server.env");
    let tcp_file = ws.path().join("tcp.txt");
    let hooks = [
        format!("env > {}", env_file.display()),
        // what the throw-away server's processes hold, as a superuser reads it
        format!(
            "psql -XAt -c 'create temp table e (l text)' -c \"copy e from program 'env'\" -c 'select l from e' > {}",
            server_env.display()
        ),
        // the throw-away cluster trusts whoever reaches its socket: nobody else may
        format!(
            "(stat -c %a \"$PGHOST\"; runuser -u nobody -- psql -X -h \"$PGHOST\" -p \"$PGPORT\" -U postgres -d postgres -Atc 'select 42'; echo \"rc=$?\") > {} 2>&1; true",
            nobody_file.display()
        ),
        // nor over TCP, where production's roles (from the globals) would log in with
        // production's passwords
        format!(
            "(psql -X -h 127.0.0.1 -p \"$PGPORT\" -U postgres -d postgres -Atc 'select 42'; echo \"rc=$?\") > {} 2>&1; true",
            tcp_file.display()
        ),
        // an application started in the background, then probed
        format!("sleep 300 & echo $! > {}", pid_file.display()),
        "psql -Atc 'select count(*) from shop.users' | grep -qx 50".to_string(),
        // 3 MB on stderr: read to the end, never cut off (the writer would die of SIGPIPE)
        format!(
            "head -c 3000000 /dev/zero | tr '\\0' x >&2 && touch {}",
            chatty.display()
        ),
        // a failing migration: what it said on stdout and stderr explains the failure
        "echo step-1 applied; echo 'ERROR: relation missing' >&2; echo rolled-back; exit 3"
            .to_string(),
    ];
    let cfg = drill_config(
        &ws,
        &c.dsn("app"),
        &format!("drill = {{ hooks = {hooks:?}, hook_timeout = \"3s\" }}\n"),
    );
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    // what an operator's shell may hold: libpq pointed at production, lifeboat's secret
    let service = ws.path().join("pg_service.conf");
    std::fs::write(&service, "[production]\nhost=192.0.2.1\ndbname=app\n").unwrap();
    let (code, out, err) = run(lb(&cfg)
        .arg("drill")
        .env("PGSERVICEFILE", &service)
        .env("PGSERVICE", "production")
        .env("PGHOSTADDR", "192.0.2.1")
        // set for a one-off `--target-dsn`, as the README suggests: production's password
        .env("PGPASSWORD", "production-pw")
        .env("LIFEBOAT_PASSWORD", lifeboat_testing::REPO_PASSWORD));
    assert_eq!(code, 10, "the failing hook fails the drill: {out}{err}");
    // after the hook's name (which holds the same words) and its exit status
    let failed = out
        .split("FAIL hook: echo step-1")
        .nth(1)
        .and_then(|rest| rest.split("exit status: 3").nth(1))
        .unwrap_or_else(|| panic!("the failing hook is named with its status: {out}"));
    let said: Vec<usize> = ["step-1 applied", "ERROR: relation missing", "rolled-back"]
        .iter()
        .map(|l| {
            failed
                .find(l)
                .unwrap_or_else(|| panic!("{l:?} is shown: {out}"))
        })
        .collect();
    assert!(
        said.windows(2).all(|w| w[0] < w[1]),
        "its output in order, stdout and stderr alike: {out}"
    );
    assert!(
        out.contains("ok   hook: psql"),
        "the hook reached the restored copy, not the service: {out}"
    );
    assert!(chatty.exists(), "the chatty hook ran to its end: {out}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    for leaked in [
        "PGSERVICE=",
        "PGSERVICEFILE=",
        "PGHOSTADDR=",
        "PGPASSWORD=production-pw",
        "LIFEBOAT_PASSWORD=",
    ] {
        assert!(
            !env.lines().any(|l| l.starts_with(leaked)),
            "{leaked} reached the hook: {env}"
        );
    }
    assert!(env.lines().any(|l| l == "PGDATABASE=app"), "{env}");
    let server = std::fs::read_to_string(&server_env).unwrap();
    assert!(server.lines().any(|l| l.starts_with("PATH=")), "{server}");
    for leaked in [
        "LIFEBOAT_PASSWORD=",
        "PGPASSWORD=",
        "PGSERVICE=",
        "PGHOSTADDR=",
    ] {
        assert!(
            !server.lines().any(|l| l.starts_with(leaked)),
            "{leaked} reached the throw-away server: {server}"
        );
    }
    let nobody = std::fs::read_to_string(&nobody_file).unwrap();
    assert!(nobody.starts_with("700\n"), "{nobody}");
    let tcp = std::fs::read_to_string(&tcp_file).unwrap();
    assert!(
        tcp.contains("rc=2") && tcp.contains("Connection refused"),
        "the drill's cluster listens on TCP: {tcp}"
    );
    if nix::unistd::geteuid().is_root() {
        assert!(
            !nobody.lines().any(|l| l == "42") && !nobody.contains("rc=0"),
            "another OS user reached the drill's cluster: {nobody}"
        );
    }
    // the background application went with the drill
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proc_dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !proc_dir.exists(),
        "the hook's background process outlived the drill"
    );

    // one that never ends is killed at the timeout and fails, with what it said last
    let text = std::fs::read_to_string(&cfg).unwrap();
    let hung =
        "drill = { hooks = [\"echo hanging at step 2; sleep 60\"], hook_timeout = \"3s\" }\n";
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("drill = ") {
                hung.trim_end()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text + "\n").unwrap();
    // and an assertion that never returns is cancelled at the same timeout
    let (code, out, err) =
        run(lb(&cfg).args(["drill", "--check", "select pg_sleep(60) is not null"]));
    assert_eq!(code, 10, "the endless hook fails the drill: {out}{err}");
    assert!(
        out.contains("FAIL hook: echo hanging")
            && out.contains("still running after 3s")
            && out.contains("hanging at step 2"),
        "{out}"
    );
    assert!(
        out.contains("FAIL assert: select pg_sleep(60)") && out.contains("statement timeout"),
        "{out}"
    );
}

#[test]
fn a_drill_on_a_configured_scratch_server_cleans_up_and_refuses_production() {
    let prod = cluster();
    sample_db(&prod, "app", 120);
    // an application's DDL log, kept by an event trigger: what the drill does to its copy
    // after pg_restore (a revocation, a setting) must not write to it
    prod.sql(
        "app",
        "CREATE FUNCTION shop.definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'select 1';
         REVOKE EXECUTE ON FUNCTION shop.definer() FROM PUBLIC;
         CREATE MATERIALIZED VIEW shop.user_count AS SELECT count(*) AS n FROM shop.users;
         CREATE TABLE shop.ddl_log (id serial PRIMARY KEY, tag text);
         CREATE FUNCTION shop.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO shop.ddl_log (tag) VALUES (tg_tag); END $$;
         CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION shop.log_ddl();
         COMMENT ON EVENT TRIGGER log_ddl IS 'every DDL statement, logged';
         -- as in a database upgraded from PostgreSQL 14: public owned by a role, which a
         -- drill without production's roles does not have
         CREATE ROLE app_owner;
         ALTER SCHEMA public OWNER TO app_owner;
         -- a subscription (made without connecting): the drill's copy gets it too, and
         -- its drop must neither fail on it nor reach the publisher
         CREATE PUBLICATION users_pub FOR TABLE shop.users;
         CREATE SUBSCRIPTION users_sub CONNECTION 'host=/nonexistent dbname=upstream'
           PUBLICATION users_pub WITH (connect = false, slot_name = 'users_slot');
         ALTER DATABASE app SET search_path TO shop, public;
         CREATE TABLE shop.after_the_trigger (id int);",
    )
    .unwrap();
    let scratch = cluster();
    let ws = Workspace::new();
    let cfg = drill_config(
        &ws,
        &prod.dsn("app"),
        &format!(
            "drill = {{ server = {:?}, checks = [\"select count(*) = 120 from shop.users\"] }}\n",
            scratch.dsn("postgres")
        ),
    );
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let out = ok(lb(&cfg).args([
        "--json",
        "drill",
        "--hook",
        "psql -Atc 'select 1' >/dev/null",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["passed"], true, "{out}");
    assert_eq!(r["phases"][0]["name"], "connect", "{out}");
    // as a superuser there, the event trigger is restored (and fired by nothing after)
    assert!(
        !out.contains("event trigger(s)")
            && r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "definitions vs the backup" && c["ok"] == true),
        "{out}"
    );
    // the evidence says where it ran and what a scratch server cannot prove
    assert!(
        r["scratch_server"]
            .as_str()
            .is_some_and(|s| s.contains("dbname='lifeboat_drill_") && !s.contains("password")),
        "{out}"
    );
    assert!(
        r["not_checked"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("roles, owners and grants")),
        "{out}"
    );
    let md = ok(lb(&cfg).args(["report", "--drill", r["id"].as_str().unwrap()]));
    assert!(
        md.contains("in a new database on the scratch server")
            && !md.contains("on a throw-away PostgreSQL")
            && !md.contains("isolated cluster")
            && md.contains("Not checked: roles, owners and grants"),
        "{md}"
    );
    // and so does the evidence pack
    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.contains("(on the scratch server: roles, owners and grants not checked)"),
        "{pack}"
    );
    assert!(
        r["checks"].as_array().unwrap().iter().any(|c| c["name"]
            .as_str()
            .unwrap()
            .starts_with("hook:")
            && c["ok"] == true),
        "the hook reached the restored database through PGHOST/PGPORT: {out}"
    );
    // the drill database is gone from the scratch server; production is as it was
    let left = scratch
        .sql(
            "postgres",
            "select count(*) from pg_database where datname like 'lifeboat_drill_%'",
        )
        .unwrap();
    assert_eq!(left.trim(), "0");
    assert_eq!(
        prod.sql("app", "select count(*) from shop.users").unwrap(),
        "120"
    );

    // its password in its DSN, in a configuration every user may read: named, not shown
    let open_cfg = ws.path().join("open.toml");
    let body = std::fs::read_to_string(&cfg).unwrap().replace(
        &scratch.dsn("postgres"),
        &format!("{} password=pw-of-scratch", scratch.dsn("postgres")),
    );
    std::fs::write(&open_cfg, body).unwrap();
    std::fs::set_permissions(
        &open_cfg,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = ok(lb(&open_cfg).args(["config", "check"]));
    assert!(
        out.lines().any(|l| l.starts_with("note")
            && l.contains("drill.server of source app-db")
            && l.contains("its DSN holds a password")),
        "{out}"
    );
    assert!(!out.contains("pw-of-scratch"), "{out}");

    // drill.server pointing at production itself is refused before anything happens
    let bad_cfg = ws.path().join("bad.toml");
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&scratch.dsn("postgres"), &prod.dsn("postgres"));
    std::fs::write(&bad_cfg, body).unwrap();
    let (code, _, err) = run(lb(&bad_cfg).arg("drill"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the production cluster itself"), "{err}");

    // production not answering (here: refusing the source's role) cannot be told apart
    // from a scratch server at its address: refused too
    let body = std::fs::read_to_string(&bad_cfg).unwrap().replace(
        &prod.dsn("app"),
        &prod.dsn("app").replace("user=postgres", "user=nobody_here"),
    );
    std::fs::write(&bad_cfg, body).unwrap();
    let (code, _, err) = run(lb(&bad_cfg).arg("drill"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is at the production server's address")
            && err.contains("system identifier could not be read"),
        "{err}"
    );

    // a least-privilege source role that may connect to its own database only, and
    // production spelled another way as the scratch server (the socket directory with a
    // trailing `/.`): production's identity is read through the source's database, and the
    // drill is refused
    prod.sql(
        "postgres",
        "create role limited login;
         revoke connect on database postgres from public;
         revoke connect on database template1 from public",
    )
    .unwrap();
    let prod_dsn = prod.dsn("postgres");
    let host = prod_dsn
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .unwrap()
        .to_string();
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &scratch.dsn("postgres"),
            &prod_dsn.replace(&format!("host={host}"), &format!("host={host}/.")),
        )
        .replace(
            &prod.dsn("app"),
            &prod.dsn("app").replace("user=postgres", "user=limited"),
        );
    std::fs::write(&bad_cfg, body).unwrap();
    let (code, _, err) = run(lb(&bad_cfg).arg("drill"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the production cluster itself"), "{err}");
    prod.sql(
        "postgres",
        "grant connect on database postgres to public;
         grant connect on database template1 to public;
         drop role limited",
    )
    .unwrap();

    // a drill role whose connection limit leaves no room for the restore's jobs: the
    // drill cannot be carried out (exit 7), which says nothing about the backup
    scratch
        .sql(
            "postgres",
            "create role busy login createdb bypassrls connection limit 2",
        )
        .unwrap();
    let body = std::fs::read_to_string(&cfg).unwrap().replace(
        &scratch.dsn("postgres"),
        &scratch
            .dsn("postgres")
            .replace("user=postgres", "user=busy"),
    );
    std::fs::write(&bad_cfg, body).unwrap();
    let (code, _, err) = run(lb(&bad_cfg).arg("drill"));
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("CONNECTION LIMIT") && err.contains("drill.server of source"),
        "{err}"
    );
    let (code, out, err) = run(lb(&bad_cfg).args(["--json", "drill", "--jobs", "1"]));
    assert_eq!(code, 0, "one job fits: {err}");
    // production's event trigger needs a superuser, which busy is not: left out, said
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        r["not_checked"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("2 event trigger(s) or subscription(s)")),
        "{out}"
    );

    // an interrupted drill drops its database on the scratch server
    let marker = ws.path().join("hook-started");
    let child = drill_until_its_hook(&cfg, &marker, None);
    let during = scratch
        .sql(
            "postgres",
            "select count(*) from pg_database where datname like 'lifeboat_drill_%'",
        )
        .unwrap();
    assert_eq!(
        during.trim(),
        "1",
        "the drill restored into its own database"
    );
    interrupt(child);
    let left = scratch
        .sql(
            "postgres",
            "select count(*) from pg_database where datname like 'lifeboat_drill_%'",
        )
        .unwrap();
    assert_eq!(
        left.trim(),
        "0",
        "the interrupted drill dropped its database"
    );

    // one killed outright (kill -9) cannot; the next drill from this host drops it
    let marker = ws.path().join("hook-started-again");
    let mut child = drill_until_its_hook(&cfg, &marker, None);
    child.kill().unwrap();
    child.wait().unwrap();
    let count = || {
        scratch
            .sql(
                "postgres",
                "select count(*) from pg_database where datname like 'lifeboat_drill_%'",
            )
            .unwrap()
    };
    assert_eq!(count().trim(), "1", "kill -9 leaves the copy");
    // taken over by someone to look into (another owner): not the drill's to drop
    let left_db = scratch
        .sql(
            "postgres",
            "select datname from pg_database where datname like 'lifeboat_drill_%'",
        )
        .unwrap()
        .trim()
        .to_string();
    let owner = |who: &str| {
        scratch
            .sql(
                "postgres",
                &format!("alter database {left_db} owner to {who}"),
            )
            .unwrap();
    };
    scratch.sql("postgres", "create role investigator").unwrap();
    owner("investigator");
    let (code, out, err) = run(lb(&cfg).arg("drill"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("dropped lifeboat_drill_"), "{err}");
    assert_eq!(count().trim(), "1", "another owner's copy was dropped");
    owner("postgres");
    let (code, out, err) = run(lb(&cfg).arg("drill"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("on the drill server, left by a drill from this host that was killed"),
        "{err}"
    );
    assert_eq!(count().trim(), "0");
}

#[test]
fn a_drill_refuses_another_source_s_backup_and_one_that_cannot_run_is_logged() {
    let c = cluster();
    sample_db(&c, "app", 20);
    sample_db(&c, "crm", 20);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app")), ("crm-db", &c.dsn("crm"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--source", "crm-db", "--kind", "logical"]));
    let crm = list_ids(&cfg).pop().unwrap();
    // judged by app-db's objectives and filed under it, crm-db's backup would prove nothing
    let (code, _, err) = run(lb(&cfg).args(["drill", "--source", "app-db", "--pick", &crm]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a backup of source \"crm-db\", not of \"app-db\""),
        "{err}"
    );
    let (code, _, err) = run(lb(&cfg).args(["drill", "--source", "crm-db", "--kind", "schema"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a schema one"), "{err}");
    let (code, _, err) = run(lb(&cfg).args(["drill", "--source", "crm-db", "--pick", "feedbeef"]));
    assert_eq!(code, 4, "{err}");
    // mistakes on the command line attempted no drill: the log holds the backup only
    let log = ok(lb(&cfg).args(["audit", "list"]));
    assert!(!log.contains("drill"), "{log}");
    // app-db has no backup at all: the drill cannot be carried out, and the log says so
    let (code, _, err) = run(lb(&cfg).args(["drill", "--source", "app-db"]));
    assert_ne!(code, 0, "{err}");
    let log = ok(lb(&cfg).args(["audit", "list"]));
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.contains("drill") && last.contains("failed") && last.contains("not carried out"),
        "{log}"
    );
    // without --source, the id names its source among several
    let out = ok(lb(&cfg).args(["drill", "--pick", &crm]));
    assert!(
        out.contains("PASSED") && out.contains("of source crm-db"),
        "{out}"
    );
}

#[test]
fn a_missed_objective_fails_the_drill_with_its_margin() {
    let c = cluster();
    sample_db(&c, "app", 30);
    let ws = Workspace::new();
    let cfg = drill_config(
        &ws,
        &c.dsn("app"),
        "objectives = { rto = \"2h\", rpo = \"1s\" }\n",
    );
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    // the newest backup is older than the 1 s objective when the drill starts
    std::thread::sleep(std::time::Duration::from_secs(2));
    let evidence = ws.path().join("evidence");
    let (code, out, err) = run(lb(&cfg).arg("drill").arg("--report-dir").arg(&evidence));
    assert_eq!(code, 10, "a missed RPO fails the drill: {out}{err}");
    assert!(
        out.contains("RPO achieved") && out.contains("MISSED by"),
        "{out}"
    );
    assert!(
        out.contains("RTO achieved") && out.contains("to spare"),
        "{out}"
    );
    let json = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["passed"], false);
    assert_eq!(r["rpo"]["met"], false);
    assert!(r["rpo"]["margin_secs"].as_f64().unwrap() <= -1.0, "{r}");
    assert_eq!(r["rto"]["met"], true);
    let html = std::fs::read_to_string(json.with_extension("html")).unwrap();
    assert!(html.contains("MISSED by"), "the HTML shows the margin");
    assert!(
        html.contains("audit-head"),
        "the HTML carries the audit head"
    );
    // the dumps' own RPO (a plan's "database: 24 h with daily dumps, WAL: 1 h"): logical
    // drills are judged against it, not against the WAL archive's
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "objectives = { rto = \"2h\", rpo = \"1s\" }",
        "objectives = { rto = \"2h\", rpo = \"1s\", logical_rpo = \"1h\" }",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = ok(lb(&cfg).args(["--json", "drill"]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["rpo"]["objective_secs"], 3600.0, "{out}");
    assert_eq!(r["passed"], true, "{out}");
    let book = ok(lb(&cfg).arg("runbook"));
    assert!(book.contains("RPO 1s (logical dumps: 1h)"), "{book}");
}

/// Applications keep tables in the `postgres` database too (pgbench does): its drill
/// replaces the throw-away cluster's own `postgres` database instead of failing on it,
/// and finds a row deleted before the backup missing.
#[test]
fn the_postgres_database_itself_is_drilled() {
    let c = cluster();
    c.sql(
        "postgres",
        "CREATE TABLE accounts (id int primary key, owner text);
         INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 500) g;
         COMMENT ON DATABASE postgres IS 'the app lives here';",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = drill_config(&ws, &c.dsn("postgres"), "");
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let out = ok(lb(&cfg).args([
        "--json",
        "drill",
        "--check",
        "select count(*) = 500 from accounts",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["passed"], true, "{r}");
    assert_eq!(r["database"], "postgres");
    let tables = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["name"] == "table public.accounts")
        .unwrap_or_else(|| panic!("no check of public.accounts: {r}"));
    assert_eq!(tables["ok"], true, "{r}");
}

/// The newest logical backup of `db` in the repository: its id and finish time.
fn newest_of(cfg: &std::path::Path, db: &str) -> (String, jiff::Timestamp) {
    let out = ok(lb(cfg).args(["--json", "list", "--kind", "logical"]));
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .filter(|b| b["database"] == db)
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["finished_at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .max_by_key(|(_, t): &(String, jiff::Timestamp)| *t)
        .unwrap_or_else(|| panic!("no backup of {db}: {out}"))
}

#[test]
fn a_drill_of_an_older_backup_measures_the_rpo_to_the_newest_of_its_database() {
    let c = cluster();
    sample_db(&c, "app", 20);
    sample_db(&c, "crm", 20);
    let ws = Workspace::new();
    let cfg = drill_config(&ws, &c.dsn("app"), "databases = [\"app\", \"crm\"]\n");
    ok(lb(&cfg).arg("init"));
    let backup = |db: &str| {
        ok(lb(&cfg).args(["backup", "--kind", "logical", "--database", db]));
        newest_of(&cfg, db)
    };
    let (older, older_at) = backup("app");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (newer, newer_at) = backup("app");
    std::thread::sleep(std::time::Duration::from_secs(3));
    // a newer dump of another database recovers nothing of app: it is not app's RPO
    backup("crm");
    for database in [None, Some("app")] {
        let mut cmd = lb(&cfg);
        cmd.args(["--json", "drill", "--pick", &older[..8]]);
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        let out = ok(&mut cmd);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["backup_id"], older.as_str(), "{out}");
        let started: jiff::Timestamp = r["started_at"].as_str().unwrap().parse().unwrap();
        let age = |t: jiff::Timestamp| (started - t).total(jiff::Unit::Second).unwrap();
        let rpo = r["rpo"]["achieved_secs"].as_f64().unwrap();
        assert!(
            rpo < age(older_at) - 2.0,
            "the RPO ({rpo} s) is not the drilled backup's age ({} s): {out}",
            age(older_at)
        );
        assert!(
            (rpo - age(newer_at)).abs() < 0.5,
            "the RPO ({rpo} s) is the age of the newest backup of app ({} s): {out}",
            age(newer_at)
        );
        assert_eq!(r["rpo_point"]["backup_id"], newer.as_str(), "{out}");
    }
    // the terminal output says what the RPO was measured to
    let out = ok(lb(&cfg).args(["drill", "--pick", &older[..8]]));
    assert!(
        out.contains(&format!(
            "measured to the newest logical backup of database \"app\", {}",
            &newer[..8]
        )),
        "{out}"
    );
}

#[test]
fn a_successful_hook_s_output_is_kept_in_the_report() {
    let c = cluster();
    sample_db(&c, "app", 20);
    let ws = Workspace::new();
    let cfg = drill_config(&ws, &c.dsn("app"), "");
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let hook = "psql -Atc 'select count(*) from shop.users'";
    let out = ok(lb(&cfg).args(["--json", "drill", "--hook", hook]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let check = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("hook: {hook}"))
        .unwrap_or_else(|| panic!("the hook's check: {out}"));
    assert_eq!(check["ok"], true, "{out}");
    assert_eq!(
        check["detail"], "exit 0; the lines of its output:\n20",
        "what the probe said: {out}"
    );
    // read back from the repository, for an auditor
    let id = r["id"].as_str().unwrap();
    let md = ok(lb(&cfg).args(["report", "--drill", id, "--format", "md"]));
    assert!(
        md.contains(&format!(
            "| hook: {hook} | pass | exit 0; the lines of its output:<br>20 |"
        )),
        "{md}"
    );
    let html = ok(lb(&cfg).args(["report", "--drill", id, "--format", "html"]));
    assert!(
        html.contains("exit 0; the lines of its output:<br>20</td>"),
        "{html}"
    );
}

/// `pg_dump --schema-only` of a drill's copy locks every table in one transaction: a
/// scratch server with a smaller lock table than production's runs out of it, which says
/// nothing about the backup. The drill passes on its data checks and says the
/// definitions were not compared, and why.
#[test]
fn a_scratch_server_short_of_locks_leaves_the_definitions_unchecked_and_says_why() {
    let prod = cluster();
    prod.sql("postgres", "CREATE DATABASE many").unwrap();
    prod.sql(
        "many",
        "DO $$ BEGIN FOR i IN 1..2000 LOOP EXECUTE format('CREATE TABLE t%s (id int)', i); END LOOP; END $$",
    )
    .unwrap();
    let scratch = lifeboat_testing::Cluster::start_with(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        "max_locks_per_transaction = 10",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = drill_config(
        &ws,
        &prod.dsn("many"),
        &format!("drill = {{ server = {:?} }}\n", scratch.dsn("postgres")),
    );
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let out = ok(lb(&cfg).args(["drill", "--jobs", "1"]));
    assert!(
        out.contains("PASSED")
            && out.contains(
                "definitions: pg_dump --schema-only of the copy ran out of the server's lock table"
            )
            && out.contains("raise max_locks_per_transaction"),
        "{out}"
    );
}

#[test]
fn a_drill_server_refusing_the_login_names_drill_server_and_the_cause() {
    let c = cluster();
    sample_db(&c, "app", 10);
    let scratch = cluster();
    // the scratch server checks who connects: peer on its socket, a password over TCP
    std::fs::write(
        scratch.data_dir().join("pg_hba.conf"),
        "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    scratch.sql("postgres", "select pg_reload_conf()").unwrap();
    let ws = Workspace::new();
    let peer = format!(
        "host={} port={} user=postgres",
        scratch.socket_dir().display(),
        scratch.port()
    );
    let cfg = drill_config(
        &ws,
        &c.dsn("app"),
        &format!("drill = {{ server = {peer:?} }}\n"),
    );
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    // lifeboat runs as root here, which peer authentication does not let in as postgres
    let (code, _, err) = run(lb(&cfg).arg("drill"));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("drill.server of source \"app-db\"")
            && err.contains("Peer authentication failed"),
        "{err}"
    );
    assert!(
        err.contains("hint: peer authentication: ") && err.contains("OS user lifeboat runs as"),
        "{err}"
    );
    assert!(!err.contains("password_file"), "{err}");

    // over TCP with a wrong password: the drill server's own password, not the source's
    let tcp = format!(
        "host=127.0.0.1 port={} user=postgres password=wrong",
        scratch.port()
    );
    let body = std::fs::read_to_string(&cfg).unwrap().replace(&peer, &tcp);
    std::fs::write(&cfg, body).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("drill"));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("drill.server of source \"app-db\"")
            && err.contains("password authentication failed"),
        "{err}"
    );
    assert!(
        err.contains("hint: the drill server refused the password")
            && err.contains("password in drill.server"),
        "{err}"
    );
    assert!(!err.contains("check password_file"), "{err}");
}

/// Production has a tablespace. The drill's throw-away cluster cannot have it (its
/// directory is production's): the roles still apply, the tables land in the default
/// tablespace, and the drill says the roles were applied (it used to drop them without a
/// word and restore without owners and grants). A restore onto a server without the
/// tablespace names `--no-tablespaces`, which works.
#[test]
fn a_tablespace_in_production_neither_fails_a_drill_nor_costs_it_the_roles() {
    let c = cluster();
    let ts = c.socket_dir().join("ts1");
    std::fs::create_dir(&ts).unwrap();
    if nix::unistd::geteuid().is_root() {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(&ts, Some(pg.uid), Some(pg.gid)).unwrap();
    }
    sample_db(&c, "app", 30);
    c.sql("postgres", "CREATE ROLE app_ro NOLOGIN").unwrap();
    c.sql(
        "postgres",
        &format!("CREATE TABLESPACE ts1 LOCATION '{}'", ts.display()),
    )
    .unwrap();
    c.sql(
        "app",
        "CREATE TABLE shop.in_ts (id int primary key) TABLESPACE ts1; \
         INSERT INTO shop.in_ts SELECT generate_series(1, 50); \
         GRANT SELECT ON shop.in_ts TO app_ro",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical", "--kind", "globals"]));
    // physical backups of this cluster would be refused: config check says so first
    let (_, out, err) = run(lb(&cfg).args(["config", "check"]));
    assert!(
        out.contains("tablespaces besides pg_default and pg_global (ts1)"),
        "{out}\n{err}"
    );

    let out = ok(lb(&cfg).args([
        "--json",
        "drill",
        "--check",
        "select has_table_privilege('app_ro', 'shop.in_ts', 'select')",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["passed"], true, "{out}");
    let roles = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "roles from the globals backup")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(roles["ok"], true, "{out}");

    let other = lifeboat_core::sources::postgres::cluster::Cluster::start(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
    )
    .unwrap();
    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--target-dsn",
        &other.dsn("postgres"),
    ]));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("--no-tablespaces"), "{err}");
    // with the globals, their tablespace fails (its directory is production's), and the
    // error says what the rest of the script did to the target
    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--globals",
        "--target-dsn",
        &other.dsn("postgres"),
    ]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("--no-tablespaces") && err.contains("the rest of the globals script ran"),
        "{err}"
    );
    let out = ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--globals",
        "--no-tablespaces",
        "--target-dsn",
        &other.dsn("postgres"),
    ]));
    assert!(
        out.contains("restored the globals (roles; tablespaces left out)"),
        "{out}"
    );
    assert_eq!(
        other
            .sql("app", "select count(*) from shop.in_ts")
            .unwrap()
            .trim(),
        "50"
    );
    assert_eq!(
        other
            .sql(
                "app",
                "select has_table_privilege('app_ro', 'shop.in_ts', 'select')"
            )
            .unwrap()
            .trim(),
        "t"
    );
}

/// A policy naming a role, and no globals backup to give the drill's cluster that role:
/// the restore fails, and the drill says how to give it the roles.
#[test]
fn a_drill_without_the_roles_its_policies_name_says_to_back_them_up() {
    let c = cluster();
    sample_db(&c, "app", 20);
    c.sql(
        "app",
        "CREATE ROLE reader NOLOGIN; CREATE POLICY readers ON shop.users FOR SELECT TO reader USING (true)",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = drill_config(&ws, &c.dsn("app"), "");
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let (code, out, err) = run(lb(&cfg).arg("drill"));
    assert_eq!(code, 10, "{out}{err}");
    // on the failing check itself, not only under "not checked"
    let failed = out
        .lines()
        .find(|l| l.starts_with("  FAIL pg_restore"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        failed.contains("role \"reader\" does not exist")
            && failed.contains("take a new backup of every kind"),
        "{failed}"
    );
    // with the roles backed up, the drill restores them and passes
    ok(lb(&cfg).args(["backup", "--kind", "globals"]));
    ok(lb(&cfg).arg("drill"));
}

#[test]
fn drill_all_drills_each_database_of_each_source_past_one_that_fails() {
    let c = cluster();
    sample_db(&c, "app", 20);
    sample_db(&c, "crm", 20);
    sample_db(&c, "billing", 10);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[
        ("app-db", &c.dsn("app")),
        (
            "gone-db",
            "host=/nonexistent port=5 dbname=x connect_timeout=2",
        ),
        ("billing-db", &c.dsn("billing")),
    ]);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "name = \"app-db\"\n",
        "name = \"app-db\"\ndatabases = [\"app\", \"crm\"]\n",
    );
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    let (code, _, err) = run(lb(&cfg).args(["backup", "--all", "--kind", "logical"]));
    assert_ne!(code, 0, "{err}");

    // a flag that names one backup is refused before anything runs
    let (code, _, err) = run(lb(&cfg).args(["drill", "--all", "--pick", "abcd1234"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--pick ID names one backup"), "{err}");

    // each database of a source of several is its own drill; the source without backups
    // fails and the ones after it are still drilled
    let (code, out, err) = run(lb(&cfg).args(["drill", "--all"]));
    assert_ne!(code, 0, "{out}{err}");
    for heading in [
        "== source app-db database app",
        "== source app-db database crm",
        "== source gone-db",
        "== source billing-db",
    ] {
        assert!(out.lines().any(|l| l == heading), "{heading}: {out}");
    }
    assert_eq!(out.matches(": PASSED").count(), 3, "{out}");
    assert!(
        out.lines()
            .any(|l| l == "3 of 4 drills passed; FAILED: gone-db"),
        "{out}"
    );
    assert!(err.contains("1 of 4 drills failed: gone-db ("), "{err}");

    let (code, out, err) = run(lb(&cfg).args(["--json", "drill", "--all"]));
    assert_ne!(code, 0, "{err}");
    let reports: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let drilled: Vec<(String, String)> = reports
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["database"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        drilled,
        [
            ("app-db".to_string(), "app".to_string()),
            ("app-db".into(), "crm".into()),
            ("gone-db".into(), String::new()),
            ("billing-db".into(), "billing".into()),
        ],
        "{out}"
    );
    assert!(reports[2]["error"].as_str().is_some(), "{out}");
    for i in [0, 1, 3] {
        assert_eq!(reports[i]["passed"], true, "{out}");
    }
    // drills that passed and whose evidence could not be completed count as passed,
    // named apart, and the exit code says what failed (7)
    // (here: the audit head could not be published, its URL down)
    let plain = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{plain}\n[audit]\nhead_url = \"http://127.0.0.1:1/heads\"\n"),
    )
    .unwrap();
    let (code, out, err) = run(lb(&cfg).args(["drill", "--all"]));
    std::fs::write(&cfg, plain).unwrap();
    assert_eq!(code, 7, "{out}{err}");
    assert!(
        out.lines().any(|l| l
            == "3 of 4 drills passed; FAILED: gone-db; evidence INCOMPLETE: app-db database app, app-db database crm, billing-db"),
        "{out}"
    );
    assert!(
        err.contains("1 of 4 drills failed: gone-db (")
            && err.contains("and the evidence of 3 more is incomplete: app-db database app ("),
        "{err}"
    );
    // a database taken out of the source's list was dropped on purpose: its old backups
    // are not drilled for ever
    let plain = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        plain.replace("databases = [\"app\", \"crm\"]", "databases = [\"app\"]"),
    )
    .unwrap();
    let (_, out, _) = run(lb(&cfg).args(["drill", "--all"]));
    std::fs::write(&cfg, plain).unwrap();
    assert!(
        out.lines().any(|l| l == "== source app-db") && !out.contains("crm"),
        "{out}"
    );
    // every drill that ran is in the audit log, the one that could not run too
    let log = ok(lb(&cfg).args(["--json", "audit", "list", "--action", "drill"]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    assert!(
        entries.len() >= 12,
        "three runs of four drills and one of three: {log}"
    );
}
