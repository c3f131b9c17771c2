//! Choosing what to restore: `--before TIME` between two backups, and the restore hooks
//! configured in `lifeboat.toml` (overridden by the command line); a target server that
//! answers in another language.

mod common;

use common::{count, german_locale, lb, list_json, ok, run};
use lifeboat_testing::{cluster, sample_db, Cluster, Workspace};

#[test]
fn before_picks_the_backup_finished_by_then_and_configured_hooks_run_for_the_database_itself() {
    let c = cluster();
    sample_db(&c, "app", 30);
    let ws = Workspace::new();
    let log = ws.path().join("hooks.log");
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "hooks = {{ pre_restore = \"echo pre $LIFEBOAT_SNAPSHOT_ID $LIFEBOAT_TARGET_DATABASE >> {log}\", post_restore = \"echo post $LIFEBOAT_SNAPSHOT_ID >> {log}\" }}\n",
        log = log.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let first = list_json(&cfg)[0].clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = jiff::Timestamp::now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    c.sql("app", "delete from shop.events where id % 2 = 0")
        .unwrap();
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let second = list_json(&cfg)
        .into_iter()
        .find(|b| b["id"] != first["id"])
        .unwrap();
    let events_now = count(&c, "app", "shop.events");
    assert!(events_now > 0);

    // --before a time between the two: the first backup, all its rows; a copy next to
    // production, so the configured hooks (which stop the application) stay out of it
    let (code, out, err) = run(lb(&cfg).args([
        "restore",
        "--before",
        &between,
        "--source",
        "app-db",
        "--to-database",
        "as_before",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("configured restore hooks do not run for a copy"),
        "{err}"
    );
    assert!(!out.contains("ran the"), "{out}");
    assert!(!log.exists(), "a hook ran for a side copy");
    let restored = count(&c, "as_before", "shop.events");
    assert!(
        restored > events_now,
        "the older backup has the deleted rows: {restored} vs {events_now}"
    );
    // --before now: the second backup
    ok(lb(&cfg).args([
        "restore",
        "--before",
        &jiff::Timestamp::now().to_string(),
        "--source",
        "app-db",
        "--to-database",
        "as_now",
    ]));
    assert_eq!(count(&c, "as_now", "shop.events"), events_now);

    // the database itself restored under its own name (it was lost): the configured
    // hooks run around it, with the snapshot and the target, and the restore says so
    c.sql("postgres", "DROP DATABASE app").unwrap();
    let out = ok(lb(&cfg).args(["restore", "--before", &between, "--source", "app-db"]));
    assert!(out.contains("ran the pre-restore hook: echo pre"), "{out}");
    let ran = std::fs::read_to_string(&log).unwrap();
    let first_id = first["id"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    assert!(ran.contains(&format!("pre {first_id} app")), "{ran}");
    assert!(ran.contains(&format!("post {first_id}")), "{ran}");
    assert!(!ran.contains(second_id), "{ran}");
    // a hook on the command line runs for a copy too
    ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--to-database",
        "as_flag",
        "--pre-hook",
        &format!("echo flag >> {}", log.display()),
    ]));
    let ran = std::fs::read_to_string(&log).unwrap();
    assert!(ran.contains("flag"), "{ran}");
    assert!(
        !ran.contains("as_flag"),
        "the configured pre-hook did not run: {ran}"
    );
    assert!(!ran.contains("as_now"), "{ran}");
}

/// Many production servers answer in their operator's language (`lc_messages`). Restoring
/// onto one that lacks the source's roles must go as it does in English: the owner and the
/// role's settings are skipped with a note, the data is in. The decision is by SQLSTATE;
/// by the English text it failed on "Rolle »app_owner« existiert nicht".
#[test]
fn a_server_answering_in_german_skips_what_it_cannot_apply_as_in_english() {
    let locale = german_locale();
    let c = cluster();
    sample_db(&c, "app", 40);
    c.sql(
        "postgres",
        "CREATE ROLE app_owner NOLOGIN; ALTER DATABASE app OWNER TO app_owner; \
         ALTER ROLE app_owner IN DATABASE app SET work_mem TO '8MB'",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));

    let target = Cluster::start_with(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        &format!("lc_messages = '{locale}'"),
    )
    .expect("start a cluster answering in German");
    let err = target
        .sql("postgres", "ALTER DATABASE postgres OWNER TO app_owner")
        .unwrap_err();
    assert!(
        err.to_string().contains("existiert nicht"),
        "the target does not answer in German: {err}"
    );
    let out = ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--target-dsn",
        &target.dsn("postgres"),
    ]));
    let notes: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("note: not applied") && l.contains("app_owner"))
        .collect();
    assert_eq!(notes.len(), 2, "{out}");
    assert_eq!(count(&target, "app", "shop.users"), 40);
}
