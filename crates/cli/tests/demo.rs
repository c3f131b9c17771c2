//! The README's first command: `lifeboat demo` runs end to end on its own throw-away
//! PostgreSQL, proves what it prints, leaves the repository, a config for it and the drill's
//! evidence, and no server or scratch file behind.

mod common;

use lifeboat_testing::Workspace;

#[test]
fn the_demo_proves_what_it_prints_and_cleans_up() {
    let ws = Workspace::new();
    let dir = ws.path().join("demo");
    let scratch = ws.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let out = assert_cmd::Command::cargo_bin("lifeboat")
        .expect("binary")
        .args(["--json", "demo", "--dir"])
        .arg(&dir)
        .env("LIFEBOAT_SCRATCH_DIR", &scratch)
        .env_remove("LIFEBOAT_PASSWORD")
        .env_remove("LIFEBOAT_CONFIG")
        .env_remove("PGDATABASE")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo succeeds:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("json");

    // 1. the first backup: the dump with its truth, plus schema and globals
    let kinds: Vec<&str> = r["first"]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["kind"].as_str())
        .collect();
    for k in ["logical", "schema", "globals"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let first = r["first"]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .find(|b| b["kind"] == "logical")
        .expect("logical");
    assert!(first["rows"].as_u64() > Some(200_000), "{first}");
    // 2. the second backup after ~1% of changes stores a small part of the first (at the
    // demo's default size; on a tiny database every chunk would hold a change)
    let second = &r["second"]["backups"][0];
    let (a, b) = (
        first["stored_bytes"].as_u64().expect("first stored"),
        second["stored_bytes"].as_u64().expect("second stored"),
    );
    assert!(b * 4 < a, "dedup: second {b} bytes against first {a}");
    // 3. the restore matched every table against the backup-time truth
    let tables = r["restore"]["comparison"]["tables"]
        .as_array()
        .expect("tables");
    assert!(tables.len() >= 4, "{tables:?}");
    assert!(tables.iter().all(|t| t["ok"] == true), "{tables:?}");
    // 4. the drill passed, and its evidence is on disk
    assert_eq!(r["drill"]["passed"], true, "{}", r["drill"]);
    let id = r["drill"]["id"].as_str().expect("drill id");
    let evidence = std::path::PathBuf::from(r["evidence_dir"].as_str().expect("evidence dir"));
    for ext in ["json", "md", "html"] {
        assert!(
            evidence.join(format!("{id}.{ext}")).is_file(),
            "{id}.{ext} in {}",
            evidence.display()
        );
    }

    // what the README promises is left: a repository that opens with the config and
    // password the demo wrote, listing the backups
    let cfg = std::path::PathBuf::from(r["config_file"].as_str().expect("config"));
    let list = common::list_json(&cfg);
    assert!(list.len() >= 4, "{list:?}");
    // and nothing else: no throw-away server, no scratch file
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .expect("scratch")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the scratch directory: {left:?}");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines()
            .any(|l| l.contains(&scratch.display().to_string())),
        "a server of the demo still runs:\n{ps}"
    );
}
