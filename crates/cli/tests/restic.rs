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

/// A backup killed before it confirmed leaves a pending snapshot; `repair index` removes the
/// ones over a day old (no backup runs that long) and keeps a fresh one, which may belong to
/// a backup still running. restic stands in for the killed backups: it writes snapshots with
/// the pending tag and a chosen time.
#[test]
fn repair_removes_only_day_old_pending_snapshots() {
    let (_c, ws, cfg) = backed_up(50);
    let before = list_json(&cfg);
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args(["--no-cache", "-r"])
            .arg(ws.repo_path())
            .args(args)
            .env("RESTIC_PASSWORD", REPO_PASSWORD)
            .output()
            .expect("restic is installed by scripts/setup.sh");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file = ws.path().join("partial.pgdump");
    std::fs::write(&file, b"half a dump").unwrap();
    let file = file.to_str().unwrap();
    let two_days_ago = jiff::Zoned::now()
        .checked_sub(jiff::SignedDuration::from_hours(49))
        .unwrap()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    restic(&[
        "backup",
        "--tag",
        "lifeboat-pending",
        "--time",
        &two_days_ago,
        file,
    ]);
    restic(&["backup", "--tag", "lifeboat-pending", file]);
    let pending = |restic_out: &str| {
        restic_out
            .lines()
            .filter(|l| l.contains("lifeboat-pending"))
            .count()
    };
    assert_eq!(
        pending(&restic(&["snapshots", "--tag", "lifeboat-pending"])),
        2
    );

    let out = ok(lb(&cfg).args(["repair", "index"]));
    assert!(
        out.contains("1 pending snapshot(s) of backups interrupted over a day ago removed"),
        "{out}"
    );
    let left = restic(&["snapshots", "--tag", "lifeboat-pending"]);
    assert_eq!(pending(&left), 1, "{left}");
    assert!(
        !left.contains(&two_days_ago[..10]),
        "the old one went: {left}"
    );
    // pending snapshots are never backups, and the stored backups stay as they were
    assert_eq!(list_json(&cfg), before);
}
