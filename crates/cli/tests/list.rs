//! `list` filters and `stats`: what a repository holds, read from snapshot files only.

mod common;

use common::{lb, ok};
use lifeboat_testing::{cluster, sample_db, Workspace};

fn listed(cfg: &std::path::Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = ok(lb(cfg).args(["--json", "list"]).args(args));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn list_filters_and_stats_need_no_data_pack() {
    let c = cluster();
    sample_db(&c, "app", 40);
    sample_db(&c, "crm", 20);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app")), ("crm-db", &c.dsn("crm"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--source", "app-db", "--kind", "logical"]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = jiff::Timestamp::now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(lb(&cfg).args(["backup", "--source", "crm-db"]));
    c.sql(
        "app",
        "insert into shop.users (email, name, created_at, profile) \
         select 'more' || g || '@example.com', 'more ' || g, now(), '{}' from generate_series(1, 2000) g",
    )
    .unwrap();
    ok(lb(&cfg).args(["backup", "--source", "app-db", "--kind", "logical"]));

    // list and stats read snapshot files only: the data packs may be unreachable
    let data = ws.repo_path().join("data");
    let away = ws.repo_path().join("data.away");
    std::fs::rename(&data, &away).unwrap();

    let crm = listed(&cfg, &["--source", "crm-db"]);
    assert_eq!(crm.len(), 3, "logical, schema, globals: {crm:?}");
    // a name that names nothing is a typo, not "no backups"
    for (args, said) in [
        (&["list", "--source", "crm"][..], "no source named \"crm\""),
        (
            &["list", "--database", "apps"],
            "databases backed up: app, crm",
        ),
        (
            &[
                "restore",
                "--list",
                "--source",
                "app-db",
                "--database",
                "crm",
            ],
            "no backup of a database named \"crm\" from source \"app-db\"",
        ),
    ] {
        let (code, _, err) = common::run(lb(&cfg).args(args));
        assert_eq!(code, 4, "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
    }
    // a known name with nothing in the window is an empty listing
    assert!(listed(&cfg, &["--source", "crm-db", "--until", "2000-01-01"]).is_empty());
    assert!(crm.iter().all(|b| b["source"] == "crm-db"));
    let logical = listed(&cfg, &["--kind", "logical"]);
    assert_eq!(logical.len(), 3, "{logical:?}");
    assert!(logical.iter().all(|b| b["kind"] == "logical"));
    assert_eq!(listed(&cfg, &["--since", &between]).len(), 4);
    let before = listed(&cfg, &["--until", &between]);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["source"], "app-db");
    assert_eq!(listed(&cfg, &["--database", "app"]).len(), 2);
    // a bare date as --until is the end of that day: the day of a backup lists it
    let finished: jiff::Timestamp = before[0]["finished_at"].as_str().unwrap().parse().unwrap();
    let day = finished
        .to_zoned(jiff::tz::TimeZone::system())
        .date()
        .to_string();
    let that_day = listed(&cfg, &["--since", &day, "--until", &day]);
    assert!(
        that_day.iter().any(|b| b["id"] == before[0]["id"]),
        "--since {day} --until {day}: {that_day:?}"
    );
    // filters combine: crm is another source's database
    let (code, _, err) =
        common::run(lb(&cfg).args(["list", "--source", "app-db", "--database", "crm"]));
    assert_eq!(code, 4, "{err}");

    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).unwrap();
    let kinds = |source: &str| -> Vec<serde_json::Value> {
        stats["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == source)
            .unwrap()["kinds"]
            .as_array()
            .unwrap()
            .clone()
    };
    let app = kinds("app-db");
    assert_eq!(app.len(), 1, "{app:?}");
    assert_eq!(app[0]["count"], 2);
    assert!(
        app[0]["growth_percent"].as_f64().unwrap() > 5.0,
        "2000 more users: {app:?}"
    );
    assert!(app[0]["stored_bytes"].as_u64().unwrap() > 0);
    assert_eq!(kinds("crm-db").len(), 3);
    let text = ok(lb(&cfg).arg("stats"));
    assert!(text.contains("app-db") && text.contains("crm-db"), "{text}");
    assert!(!text.contains("NEVER"), "{text}");
    // a configured source never backed up has its row
    let mut conf = std::fs::read_to_string(&cfg).unwrap();
    conf.push_str("\n[[source]]\nname = \"new-db\"\nkind = \"postgres\"\ndsn = \"dbname=new\"\n");
    std::fs::write(&cfg, conf).unwrap();
    let text = ok(lb(&cfg).arg("stats"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("new-db") && l.contains("NEVER")),
        "{text}"
    );

    std::fs::rename(&away, &data).unwrap();
    ok(lb(&cfg).args(["verify", "--all"]));
}

#[test]
fn backup_all_takes_every_source_past_one_that_is_down() {
    let c = cluster();
    sample_db(&c, "app", 30);
    sample_db(&c, "crm", 20);
    let ws = Workspace::new();
    let cfg = ws.local_config(&[
        ("app-db", &c.dsn("app")),
        (
            "gone-db",
            "host=/nonexistent port=5 dbname=x connect_timeout=2",
        ),
        ("crm-db", &c.dsn("crm")),
    ]);
    ok(lb(&cfg).arg("init"));

    // several sources and no --source: the usage mistake names --all
    let (code, _, err) = common::run(lb(&cfg).arg("backup"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--all") && err.contains("gone-db"), "{err}");
    assert!(listed(&cfg, &[]).is_empty());

    let (code, out, err) =
        common::run(lb(&cfg).args(["--json", "backup", "--all", "--kind", "logical"]));
    assert_ne!(code, 0, "a source that is down fails the run: {err}");
    // the last lines, which a mail from cron shows, say why and what to do
    assert!(err.contains("1 of 3 sources failed: gone-db ("), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("hint: ") && !last.contains("each failure"),
        "one failure's own hint: {err}"
    );
    let reports: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let sources: Vec<_> = reports.iter().map(|r| r["source"].clone()).collect();
    assert_eq!(sources, ["app-db", "gone-db", "crm-db"], "{out}");
    assert!(!reports[1]["error"].as_str().unwrap().is_empty(), "{out}");
    assert_eq!(reports[0]["backups"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(reports[2]["backups"].as_array().unwrap().len(), 1, "{out}");
    // the source after the one that failed was backed up too
    let stored: Vec<_> = listed(&cfg, &[])
        .iter()
        .map(|b| b["source"].as_str().unwrap().to_string())
        .collect();
    assert!(
        stored.contains(&"app-db".into()) && stored.contains(&"crm-db".into()),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 2, "{stored:?}");
    // the glance says which source's last run failed, and that it has nothing stored
    let text = ok(lb(&cfg).arg("stats"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("LAST RUN FAILED  gone-db at ")),
        "{text}"
    );
    assert!(!text.contains("LAST RUN FAILED  app-db"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("gone-db") && l.contains("NEVER")),
        "{text}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).unwrap();
    assert_eq!(stats["failed_last"].as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(stats["failed_last"][0]["source"], "gone-db", "{stats}");
    assert_eq!(
        stats["never_backed_up"],
        serde_json::json!([{"source": "gone-db", "database": null}])
    );
    let (code, out, _) = common::run(lb(&cfg).args(["--json", "stats", "--check"]));
    assert_eq!(code, 10, "{out}");
    let checked: serde_json::Value = serde_json::from_str(&out).unwrap();
    let problems = checked["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{out}");
    assert_eq!(problems[0], "source gone-db: no backup at all");
    assert!(
        problems[1]
            .as_str()
            .unwrap()
            .starts_with("source gone-db: a backup run failed at "),
        "{out}"
    );

    // --all with every source up exits 0 and says so
    let ws2 = Workspace::new();
    let cfg2 = ws2.local_config(&[("app-db", &c.dsn("app")), ("crm-db", &c.dsn("crm"))]);
    ok(lb(&cfg2).arg("init"));
    let out = ok(lb(&cfg2).args(["backup", "--all", "--kind", "schema"]));
    assert!(
        out.contains("== source app-db") && out.contains("== source crm-db"),
        "{out}"
    );
    assert!(out.contains("2 of 2 sources backed up"), "{out}");
    // stats --check: all fresh, then one source's objective passed
    let out = ok(lb(&cfg2).args(["stats", "--check"]));
    assert!(
        out.contains("stats --check: every configured source"),
        "{out}"
    );
    let conf = std::fs::read_to_string(&cfg2).unwrap().replace(
        "name = \"crm-db\"\n",
        "name = \"crm-db\"\nobjectives = { rpo = \"1s\" }\n",
    );
    std::fs::write(&cfg2, conf).unwrap();
    ok(lb(&cfg2).args(["backup", "--source", "crm-db", "--kind", "logical"]));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, out, err) = run_stats_check(&cfg2);
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("PROBLEM  source crm-db: the newest logical backup of crm is")
            && out.contains("past its RPO objective of 1s")
            && !out.contains("PROBLEM  source app-db"),
        "{out}"
    );
    let conf = std::fs::read_to_string(&cfg2)
        .unwrap()
        .replace("objectives = { rpo = \"1s\" }\n", "");
    std::fs::write(&cfg2, conf).unwrap();
    // a database named in `databases` after the last backup has its NEVER row
    let conf = std::fs::read_to_string(&cfg2).unwrap().replace(
        "name = \"app-db\"\n",
        "name = \"app-db\"\ndatabases = [\"app\", \"crm\"]\n",
    );
    std::fs::write(&cfg2, conf).unwrap();
    ok(lb(&cfg2).args([
        "backup",
        "--source",
        "app-db",
        "--kind",
        "logical",
        "--database",
        "app",
    ]));
    let text = ok(lb(&cfg2).arg("stats"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("app-db") && l.contains(" crm ") && l.contains("NEVER")),
        "{text}"
    );
    assert!(!text.contains("LAST RUN FAILED"), "{text}");
    let (code, out, err) = run_stats_check(&cfg2);
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("PROBLEM  source app-db: database crm has no logical backup"),
        "{out}"
    );
    // --all takes no --source: the two would contradict each other
    let (code, _, err) = common::run(lb(&cfg2).args(["backup", "--all", "--source", "app-db"]));
    assert_eq!(code, 2, "{err}");
}

fn run_stats_check(cfg: &std::path::Path) -> (i32, String, String) {
    common::run(lb(cfg).args(["stats", "--check"]))
}
