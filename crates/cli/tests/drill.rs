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

#[test]
fn drill_passes_and_writes_evidence() {
    let c = cluster();
    sample_db(&c, "app", 400);
    let ws = Workspace::new();
    let cfg = drill_config(
        &ws,
        &c.dsn("app"),
        "objectives = { rpo = \"24h\", rto = \"2h\" }\ndrill = { checks = [\"select count(*) > 0 from shop.users\"] }\n",
    );
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).arg("backup"));
    let evidence = ws.path().join("evidence");
    // the throw-away cluster and the fetched dump go here (reachable by the cluster's user)
    let scratch = ws.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = ok(lb(&cfg)
        .args(["--json", "drill", "--report-dir"])
        .arg(&evidence)
        .env("LIFEBOAT_SCRATCH_DIR", &scratch));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["passed"], true, "{out}");
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "the drill left {left:?} behind");
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
            "cluster",
            "fetch",
            "restore",
            "indexes",
            "hooks",
            "checks",
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
        .any(|c| c["name"] == "assert: select count(*) > 0 from shop.users" && c["ok"] == true));
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
        dom.contains("<td>RTO</td>") && dom.contains("<td>met</td>"),
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
        book.contains("Scenario 3: ransomware")
            && book.contains("restore --latest --source app-db"),
        "{book}"
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
        "--hook",
        "psql -X -q -c 'delete from shop.events where id % 2 = 0'",
    ]));
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(out.contains("FAIL table shop.events"), "{out}");
    assert!(err.contains("shop.events"), "{err}");
    // the same through psql, the path for servers that cannot write into lifeboat's FIFO
    let (code, out, err) = run(lb(&cfg).env("LIFEBOAT_COPY_VIA_PSQL", "1").args([
        "drill",
        "--hook",
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
    assert!(out.contains("written by the server into a FIFO"), "{out}");

    // the seeds' monthly test: a random backup (only one here, so it must be that one)
    let out = ok(lb(&cfg).args(["--json", "drill", "--pick", "random"]));
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
    assert_eq!(
        c.sql("app", "select count(*) from shop.users").unwrap(),
        "300"
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
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "drill",
            "--hook",
            &format!("touch {} && sleep 20", marker.display()),
        ])
        .env("LIFEBOAT_SCRATCH_DIR", &scratch)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait until the drill is midway: cluster up, backup restored, hook running
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the drill never reached its hook"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        std::fs::read_dir(&scratch).unwrap().count() > 0,
        "the drill uses the scratch directory"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let procs = std::process::Command::new("pgrep")
        .args(["-f", &scratch.display().to_string()])
        .output()
        .unwrap();
    // the hook's sleep is the only child allowed to linger (it holds no server or directory)
    let survivors = String::from_utf8_lossy(&procs.stdout).trim().to_string();
    let postgres_left = survivors.lines().any(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("postgres"))
    });
    assert!(
        !postgres_left,
        "a postgres of the drill is still running: {survivors}"
    );
}

#[test]
fn a_drill_on_a_configured_scratch_server_cleans_up_and_refuses_production() {
    let prod = cluster();
    sample_db(&prod, "app", 120);
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

    // drill.server pointing at production itself is refused before anything happens
    let bad_cfg = ws.path().join("bad.toml");
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&scratch.dsn("postgres"), &prod.dsn("postgres"));
    std::fs::write(&bad_cfg, body).unwrap();
    let (code, _, err) = run(lb(&bad_cfg).arg("drill"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the production cluster itself"), "{err}");
}
