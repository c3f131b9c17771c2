//! Repositories written by earlier lifeboat versions stay readable.

mod common;

use common::{lb, ok};
use lifeboat_testing::{cluster, Workspace};

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn a_backup_with_streamed_zstd_frames_restores_and_verifies() {
    let c = cluster();
    let ws = Workspace::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/repo-0.1-streamed-zstd");
    copy_dir(&fixture, &ws.repo_path());
    let cfg = ws.local_config(&[("app-db", &c.dsn("app"))]);
    let out = ok(lb(&cfg).args([
        "--json",
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--to-database",
        "from_old",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["comparison"]["tables"][0]["ok"], true, "{out}");
    assert_eq!(
        c.sql(
            "from_old",
            "select count(*), sum(length(body)) from public.notes"
        )
        .unwrap(),
        "1500|288000"
    );
    // and a new backup into the same repository sits beside it
    c.sql("postgres", "CREATE DATABASE app").unwrap();
    c.sql(
        "app",
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'new')",
    )
    .unwrap();
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let out = ok(lb(&cfg).args(["--json", "verify", "--all", "--read-data"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backups"].as_array().unwrap().len(), 2, "{out}");
    assert!(
        v["backups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["ok"] == true),
        "{out}"
    );
    // the old entries (no user or host) and the new ones (with them) are one chain
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    assert!(
        entries.first().is_some_and(|e| e.get("user").is_none()),
        "{entries:?}"
    );
    assert!(
        entries.last().is_some_and(|e| e.get("user").is_some()),
        "{entries:?}"
    );
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    assert!(out.contains("chain intact"), "{out}");
}
