//! Choosing what to restore: `--before TIME` between two backups, and the restore hooks
//! configured in `lifeboat.toml` (overridden by the command line).

mod common;

use common::{count, lb, list_json, ok};
use lifeboat_testing::{cluster, sample_db, Workspace};

#[test]
fn before_picks_the_backup_finished_by_then_and_configured_hooks_run() {
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

    // --before a time between the two: the first backup, all its rows
    ok(lb(&cfg).args([
        "restore",
        "--before",
        &between,
        "--source",
        "app-db",
        "--to-database",
        "as_before",
    ]));
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

    // the configured hooks ran around both restores, with the snapshot and the target
    let ran = std::fs::read_to_string(&log).unwrap();
    let first_id = first["id"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    assert!(ran.contains(&format!("pre {first_id} as_before")), "{ran}");
    assert!(ran.contains(&format!("post {first_id}")), "{ran}");
    assert!(ran.contains(&format!("pre {second_id} as_now")), "{ran}");
    // a hook on the command line replaces the configured one
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
}
