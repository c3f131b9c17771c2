//! The audit log: operations append to it, and `audit verify` detects an edited, removed
//! or cut-off entry. Tampering is done the way an attacker holding the repository password
//! would: by rewriting snapshot files through the restic format library.

mod common;

use common::{backed_up, lb, ok, run};
use lifeboat_core::{
    config::RepositoryConfig,
    repository::{audit::AUDIT_TAG, Repo},
    secret::Secret,
};
use lifeboat_testing::{Workspace, REPO_PASSWORD};
use rustic_core::NoProgressBars;

fn open(ws: &Workspace) -> Repo {
    let cfg = RepositoryConfig {
        url: Some(ws.repo_path().display().to_string()),
        ..RepositoryConfig::default()
    };
    Repo::open(&cfg, &Secret::new(REPO_PASSWORD), NoProgressBars).unwrap()
}

/// Rewrites (with `edit`) or deletes (with `None`) the audit entry `seq`.
fn tamper(ws: &Workspace, seq: u64, edit: Option<&dyn Fn(&mut serde_json::Value)>) {
    let repo = open(ws);
    repo.with_open(|r| {
        let snap = r
            .get_all_snapshots()?
            .into_iter()
            .find(|s| {
                s.tags.contains(AUDIT_TAG)
                    && serde_json::from_str::<serde_json::Value>(
                        s.description.as_deref().unwrap_or("{}"),
                    )
                    .unwrap()["seq"]
                        == seq
            })
            .expect("entry exists");
        if let Some(edit) = edit {
            let mut v: serde_json::Value =
                serde_json::from_str(snap.description.as_deref().unwrap()).unwrap();
            edit(&mut v);
            let mut forged = snap.clone();
            forged.description = Some(v.to_string());
            r.save_snapshots(vec![forged])?;
        }
        r.delete_snapshots(&[snap.id])?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn operations_are_logged_and_tampering_is_detected() {
    let (_c, ws, cfg) = backed_up(100);
    ok(lb(&cfg).args(["verify", "--all"]));
    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "copy"]));
    let drill: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "drill"]))).unwrap();
    let head = drill["audit_head"].as_str().unwrap().to_string();

    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["backup", "verify", "restore", "drill"]);
    assert_eq!(entries[3]["hash"], head.as_str());
    let head_file = ws.path().join("audit.head");
    let out = ok(lb(&cfg)
        .args(["audit", "verify", "--head-file"])
        .arg(&head_file));
    assert!(
        out.contains("4 entries") && out.contains("chain intact"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&head_file).unwrap().trim(), head);

    // a failed operation is logged too
    let (code, _, _) = run(lb(&cfg).args(["restore", "--latest", "--to-database", "copy"]));
    assert_eq!(code, 9);
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[4]["outcome"], "failed");
    let head5 = entries[4]["hash"].as_str().unwrap().to_string();

    // cut off the newest entry: consistent by itself, caught by the recorded head
    tamper(&ws, 5, None);
    ok(lb(&cfg).args(["audit", "verify"]));
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify", "--expected-head", &head5]));
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(out.contains("expected head"), "{out}");

    // edit an entry in place (hash kept)
    tamper(
        &ws,
        2,
        Some(&|v: &mut serde_json::Value| v["details"] = "nothing to see".into()),
    );
    let (code, out, _) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6);
    assert!(out.contains("entry 2 (verify"), "{out}");

    // remove an entry
    tamper(&ws, 3, None);
    let (code, out, _) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6);
    assert!(out.contains("entries 3 to 3 are missing"), "{out}");
}

#[test]
fn a_signed_head_proves_the_log_and_catches_a_rewrite() {
    let (_c, ws, cfg) = backed_up(50);
    ok(lb(&cfg).args(["verify", "--all"]));
    let keys = ws.path().join("outside").join("audit");
    std::fs::create_dir_all(keys.parent().unwrap()).unwrap();
    ok(lb(&cfg).args(["audit", "keygen"]).arg(&keys));
    let secret = keys.with_extension("key");
    let public = keys.with_extension("pub");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, _, err) = run(lb(&cfg).args(["audit", "keygen"]).arg(&keys));
    assert_eq!(code, 2, "keys are never overwritten: {err}");

    let statement = ws.path().join("outside").join("head.json");
    ok(lb(&cfg)
        .args(["audit", "sign", "--key"])
        .arg(&secret)
        .arg("-o")
        .arg(&statement));
    let verify = |stmt: &std::path::Path, key: &std::path::Path| {
        run(lb(&cfg)
            .args(["audit", "verify", "--signed"])
            .arg(stmt)
            .arg("--public-key")
            .arg(key))
    };
    let (code, out, err) = verify(&statement, &public);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("chain intact"), "{out}");

    // the log grows after signing: still fine
    ok(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(verify(&statement, &public).0, 0);

    // an edited statement does not verify
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&statement).unwrap()).unwrap();
    v["entries"] = serde_json::json!(v["entries"].as_u64().unwrap() + 5);
    let forged = ws.path().join("outside").join("forged.json");
    std::fs::write(&forged, v.to_string()).unwrap();
    let (code, _, err) = verify(&forged, &public);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("does not verify"), "{err}");

    // a statement signed with another key does not verify against the trusted one
    let other = ws.path().join("outside").join("other");
    ok(lb(&cfg).args(["audit", "keygen"]).arg(&other));
    let (code, _, _) = verify(&statement, &other.with_extension("pub"));
    assert_eq!(code, 6);

    // the signed head removed from the repository: caught, though the rest is consistent
    let signed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&statement).unwrap()).unwrap();
    let seq = signed["entries"].as_u64().unwrap();
    tamper(&ws, seq, None);
    let (code, out, err) = verify(&statement, &public);
    assert_eq!(code, 6, "{out}{err}");
    assert!(out.contains("expected head"), "{out}");
    // and a broken log is never signed
    let (code, _, err) = run(lb(&cfg).args(["audit", "sign", "--key"]).arg(&secret));
    assert_eq!(code, 6, "{err}");
}
