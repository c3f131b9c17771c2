//! The emergency path in the README: with lifeboat gone, the Debian `restic` binary lists
//! the backups and dumps one that pg_restore brings back.

mod common;

use std::process::Command;

use common::{backed_up, count, lb, list_json, ok};
use lifeboat_testing::REPO_PASSWORD;

#[test]
fn plain_restic_lists_and_dumps_a_backup() {
    let (c, ws, cfg) = backed_up(300);
    let backup = list_json(&cfg).pop().unwrap();
    let id = backup["id"].as_str().unwrap();
    let path = backup["path"].as_str().unwrap();

    let restic = |args: &[&str]| {
        Command::new("restic")
            .args(["--no-cache", "-r"])
            .arg(ws.repo_path())
            .args(args)
            .env("RESTIC_PASSWORD", REPO_PASSWORD)
            .output()
            .expect("restic is installed by scripts/setup.sh")
    };
    // lifeboat's WAL archive lives beside restic's directories and must not disturb it
    let seg = ws.path().join("000000010000000000000001");
    std::fs::write(&seg, vec![7u8; 1 << 20]).unwrap();
    ok(lb(&cfg).arg("wal-push").arg(&seg));
    assert!(ws.repo_path().join("lifeboat-wal").exists());
    let out = restic(&["check"]);
    assert!(
        out.status.success(),
        "restic check with a WAL archive present: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = restic(&["snapshots", "--tag", "kind=logical"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&id[..8]), "{text}");

    let out = restic(&["dump", id, path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len() as u64,
        backup["logical_bytes"].as_u64().unwrap()
    );
    let file = ws.path().join("app.pgdump");
    std::fs::write(&file, &out.stdout).unwrap();
    c.sql("postgres", "CREATE DATABASE by_restic").unwrap();
    let status = c
        .conn()
        .command("pg_restore", "by_restic")
        .arg("-j2")
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        count(&c, "by_restic", "shop.orders"),
        count(&c, "app", "shop.orders")
    );
}
