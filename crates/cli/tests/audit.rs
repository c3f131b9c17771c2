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
    forge(ws, seq, edit, true);
}

/// Writes an edited copy of entry `seq` (with `edit`), and deletes the original when
/// `replace` (without `replace` two entries share the place, as a fork leaves them).
fn forge(ws: &Workspace, seq: u64, edit: Option<&dyn Fn(&mut serde_json::Value)>, replace: bool) {
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
        if replace {
            r.delete_snapshots(&[snap.id])?;
        }
        Ok(())
    })
    .unwrap();
}

/// A backup written into the repository outside lifeboat (here: a copy of a real one,
/// dated later) is in no audit entry: `verify --all` and `audit verify` name it without
/// failing, and a restore that picks by time leaves it out, saying so; by its id it
/// restores.
#[test]
fn a_backup_no_audit_entry_records_is_named_and_not_picked_by_time() {
    let (_c, ws, cfg) = backed_up(50);
    let real = common::list_json(&cfg)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = open(&ws);
    repo.with_open(|r| {
        let snap = r
            .get_all_snapshots()?
            .into_iter()
            .find(|s| real.starts_with(s.id.to_string().as_str()))
            .expect("the backup");
        let mut planted = snap.clone();
        let mut meta: serde_json::Value =
            serde_json::from_str(snap.description.as_deref().unwrap()).unwrap();
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)).to_string();
        meta["finished_at"] = later.clone().into();
        meta["started_at"] = later.into();
        planted.description = Some(meta.to_string());
        planted.time = jiff::Zoned::now() + jiff::SignedDuration::from_secs(60);
        r.save_snapshots(vec![planted])?;
        Ok(())
    })
    .unwrap();
    let listed = common::list_json(&cfg);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let planted = listed
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .find(|id| *id != real)
        .unwrap();
    let out = ok(lb(&cfg).args(["verify", "--all"]));
    assert!(
        out.contains(&format!(
            "NOTE     1 backup(s) in the repository are in no entry of the audit log: {}",
            &planted[..8]
        )),
        "{out}"
    );
    let (code, out, _) = run(lb(&cfg).args(["--json", "audit", "verify"]));
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["unlogged_backups"][0]
            .as_str()
            .is_some_and(|s| s.starts_with(&planted[..8])),
        "{v}"
    );
    let (code, out, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--to-database",
        "picked",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("backup {} (logical app", &planted[..8]))
            && err.contains("left out of this pick; give its id to use it"),
        "{err}"
    );
    assert!(
        out.contains(&format!("restored backup {}", &real[..8])),
        "{out}"
    );
    ok(lb(&cfg).args(["restore", &planted, "--to-database", "by_id"]));

    // checked and kept: adopted, with the reason; a logged backup or an empty reason is
    // refused, and nothing is written then
    let entries = || -> usize {
        serde_json::from_str::<Vec<serde_json::Value>>(&ok(
            lb(&cfg).args(["--json", "audit", "list"])
        ))
        .unwrap()
        .len()
    };
    let before = entries();
    let (code, _, err) = run(lb(&cfg).args(["audit", "adopt", &real, "--reason", "x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is already in the audit log"), "{err}");
    let (code, _, err) = run(lb(&cfg).args(["audit", "adopt", "deadbeef", "--reason", "x"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no backup in the repository has the id deadbeef"),
        "{err}"
    );
    let (code, _, err) = run(lb(&cfg).args(["audit", "adopt", &planted, "--reason", " "]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(entries(), before, "a refused adoption writes no entry");
    ok(lb(&cfg).args([
        "audit",
        "adopt",
        &planted[..8],
        "--reason",
        "verify --read-data passed, written by the migration job",
    ]));
    let out = ok(lb(&cfg).args(["verify", "--all"]));
    assert!(!out.contains("in no entry of the audit log"), "{out}");
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    assert!(
        out.contains(&format!(
            "adopted without a backup entry: entry {}",
            before + 1
        )) && out.contains("written by the migration job"),
        "{out}"
    );
    // the evidence pack names the adoption, with who and why
    let pack: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "report"]))).unwrap();
    assert!(
        pack["recorded_by_hand"]
            .as_array()
            .is_some_and(|r| r.len() == 1
                && r[0]
                    .as_str()
                    .unwrap()
                    .contains("written by the migration job")
                && r[0].as_str().unwrap().contains(&planted[..8])),
        "{pack}"
    );
    assert!(pack.get("unlogged_backups").is_none(), "{pack}");
    // a pick by time takes it now
    let (code, out, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "app-db",
        "--to-database",
        "picked_again",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("restored backup {}", &planted[..8])),
        "{out}"
    );
    assert!(!err.contains("left out of this pick"), "{err}");
}

/// Adds `[audit] head_file` (named `name` in the workspace) to the configuration.
fn with_head_file(ws: &Workspace, cfg: &std::path::Path, name: &str) -> std::path::PathBuf {
    let head_file = ws.path().join(name);
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(
        cfg,
        format!(
            "{text}\n[audit]\nhead_file = {:?}\n",
            head_file.display().to_string()
        ),
    )
    .unwrap();
    head_file
}

#[test]
fn failures_that_cannot_reach_the_log_are_parked_and_added_later() {
    let (_c, ws, cfg) = backed_up(50);
    // with a head file kept outside, which has lines from here on
    let head_file = with_head_file(&ws, &cfg, "audit.heads");
    ok(lb(&cfg).args(["verify", "--latest"]));
    // the repository refuses the password: the backup cannot log its failure there
    let (code, _, err) = run(lb(&cfg)
        .env("LIFEBOAT_PASSWORD", "not-the-password")
        .args(["backup", "--kind", "schema"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("parked in"), "{err}");
    let after_failure = jiff::Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let parked = ws.path().join("state/parked-audit");
    let files = || {
        std::fs::read_dir(&parked)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
    };
    assert_eq!(files(), 1);
    // a wrong configuration is not an operation that failed: nothing is parked
    let (code, _, _) = run(lb(&cfg).args(["backup", "--source", "nope"]));
    assert_eq!(code, 4);
    assert_eq!(files(), 1);
    // the log's listing says that one waits, and what adds it
    let listed = ok(lb(&cfg).args(["audit", "list"]));
    assert!(
        listed.contains("note: 1 entry is parked on this host, waiting")
            && listed.contains("adds them first"),
        "{listed}"
    );
    // while it waits, it is the newest failure: the glance and its check say so (the
    // moment the log cannot be written, a full disk, is when this matters)
    let (code, out, _) = run(lb(&cfg).args(["stats", "--check"]));
    assert_eq!(code, 10, "{out}");
    assert!(
        out.contains("LAST RUN FAILED  app-db at ") && out.contains("wrong password"),
        "{out}"
    );

    // the next operation that can write adds it first, with when it happened
    ok(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(files(), 0);
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("backup", "ok"),
            ("verify", "ok"),
            ("backup", "failed"),
            ("verify", "ok")
        ]
    );
    // `audit list --until` takes it by when it failed, not when it was recorded
    let until = after_failure.to_string();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ok(
        lb(&cfg).args(["--json", "audit", "list", "--failed", "--until", &until])
    ))
    .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let late = entries[2]["details"].as_str().unwrap();
    assert!(
        late.contains("recorded late")
            && late.contains("source app-db (schema)")
            && late.contains("wrong password"),
        "{late}"
    );
    assert!(!late.contains("not-the-password"), "{late}");
    // the late entry has its line in the head file: nothing written by someone else
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    assert!(!out.contains("no line in the head file"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&head_file).unwrap().lines().count(),
        3
    );
    // the evidence pack counts it with the failed backups
    let pack: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "report"]))).unwrap();
    assert_eq!(
        pack["failures"]["backup"].as_array().map(Vec::len),
        Some(1),
        "{pack}"
    );
}

#[test]
fn a_backup_whose_audit_entry_cannot_be_written_succeeds_and_its_entry_is_parked() {
    let (_c, ws, cfg) = backed_up(30);
    // the log's lock cannot be opened (root is not stopped by permissions; a lock file
    // pointing nowhere stops everyone)
    let lock = ws.repo_path().join("lifeboat-audit.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink("/nonexistent/lifeboat/lock", &lock).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["--json", "backup", "--kind", "schema"]));
    assert_eq!(code, 0, "the backup is done and nothing is lost: {err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("the report");
    assert_eq!(r["backups"][0]["kind"], "schema", "{r}");
    assert!(
        err.contains("warning") && err.contains("parked in"),
        "{err}"
    );
    std::fs::remove_file(&lock).unwrap();
    // the process adding it was stopped after claiming the file (renamed to `.adding`) and
    // before the entry was written: the next one adds it all the same
    let parked_dir = ws.path().join("state/parked-audit");
    let parked: Vec<std::path::PathBuf> = std::fs::read_dir(&parked_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let saved = std::fs::read(&parked[0]).unwrap();
    std::fs::rename(&parked[0], parked[0].with_extension("adding")).unwrap();
    ok(lb(&cfg).args(["verify", "--all"]));
    let late_entries = || {
        let entries: Vec<serde_json::Value> =
            serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
        entries
            .into_iter()
            .filter(|e| {
                e["details"]
                    .as_str()
                    .is_some_and(|d| d.contains("recorded late"))
            })
            .collect::<Vec<_>>()
    };
    let late = late_entries();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0]["action"], "backup");
    assert_eq!(late[0]["outcome"], "ok");
    // stopped after the entry was written, before the file went: not added twice
    std::fs::write(parked[0].with_extension("adding"), saved).unwrap();
    ok(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(late_entries().len(), 1);
    let left = std::fs::read_dir(&parked_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "adding"))
        .count();
    assert_eq!(left, 0);
    ok(lb(&cfg).args(["audit", "verify"]));
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
    // who ran each operation, and where (the tests run as some user on this host)
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    for e in &entries {
        assert!(
            e["user"].as_str().is_some_and(|u| !u.is_empty()) && e["host"] == host.as_str(),
            "{e}"
        );
    }
    let listed = ok(lb(&cfg).args(["audit", "list"]));
    assert!(listed.contains(&format!("@{host})")), "{listed}");
    // a long log is narrowed: by action, to the newest, to failures, by time
    let seqs = |args: &[&str]| -> Vec<u64> {
        let listed: Vec<serde_json::Value> =
            serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]).args(args)))
                .unwrap();
        listed.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    };
    assert_eq!(seqs(&["--action", "verify"]), [2]);
    assert_eq!(seqs(&["--last", "2"]), [3, 4]);
    assert_eq!(seqs(&["--failed"]), Vec::<u64>::new());
    let third = entries[2]["time"].as_str().unwrap();
    assert_eq!(seqs(&["--since", third]), [3, 4]);
    assert_eq!(seqs(&["--until", third, "--last", "1"]), [3]);
    // a typo or a reversed period is said, not an empty list
    let (code, _, err) = run(lb(&cfg).args(["audit", "list", "--action", "Drill"]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("its actions: backup, drill, restore, verify"),
        "{err}"
    );
    let (code, _, err) = run(lb(&cfg).args([
        "audit",
        "list",
        "--since",
        "2026-12-07",
        "--until",
        "2026-12-06",
    ]));
    assert_eq!(code, 2, "{err}");
    let head_file = ws.path().join("audit.head");
    let out = ok(lb(&cfg)
        .args(["audit", "verify", "--head-file"])
        .arg(&head_file));
    assert!(
        out.contains("4 entries") && out.contains("chain intact"),
        "{out}"
    );
    // what the log's end was compared with, for people and for scripts
    let out = ok(lb(&cfg)
        .args(["audit", "verify", "--head-file"])
        .arg(&head_file));
    assert!(
        out.contains(&format!(
            "compared with {}: its newest head is entry 4, the log's head",
            head_file.display()
        )),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(lb(&cfg)
        .args(["--json", "audit", "verify", "--head-file"])
        .arg(&head_file)))
    .unwrap();
    assert_eq!(v["compared_with"][0]["entry"], 4, "{v}");
    assert_eq!(v["compared_with"][0]["unpublished"], 0, "{v}");
    let kept = std::fs::read_to_string(&head_file).unwrap();
    assert!(
        kept.trim_end().ends_with(&format!("{head} ")) || kept.contains(&format!(" {head} ")),
        "{kept}"
    );

    // operations logging at the same moment keep one chain (the local lock orders them)
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| ok(lb(&cfg).args(["verify", "--all"])));
        }
    });
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    assert!(
        out.contains("8 entries") && out.contains("chain intact"),
        "{out}"
    );

    // a failed operation is logged too
    let (code, _, _) = run(lb(&cfg).args(["restore", "--latest", "--to-database", "copy"]));
    assert_eq!(code, 9);
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    assert_eq!(entries.len(), 9);
    assert_eq!(entries[8]["outcome"], "failed");
    let head9 = entries[8]["hash"].as_str().unwrap().to_string();

    // cut off the newest entry: consistent by itself, caught by the recorded head
    tamper(&ws, 9, None);
    ok(lb(&cfg).args(["audit", "verify"]));
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify", "--expected-head", &head9]));
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

    // a log already damaged at its head (two entries at one place) does not stop logging:
    // the next operation still runs and is logged, `verify --all` names the damage with the
    // backups' verdicts, and `audit verify` keeps naming it
    let listed = || -> Vec<serde_json::Value> {
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap()
    };
    let entries = listed();
    let newest = entries.last().unwrap()["seq"].as_u64().unwrap();
    forge(
        &ws,
        newest,
        Some(&|v: &mut serde_json::Value| v["details"] = "a rival".into()),
        false,
    );
    let (code, out, err) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains("AUDIT    audit log: entries 3 to 3 are missing") && out.contains("ok       "),
        "{out}"
    );
    assert_eq!(
        listed().len(),
        entries.len() + 2,
        "the verify was not logged"
    );
    let (code, _, _) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6);
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
    // the key auditors trust: nobody else may change it, whatever the umask
    let grouped = ws.path().join("outside").join("grouped");
    let status = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(["audit", "keygen"])
        .arg(&grouped)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    for (key, want) in [("pub", 0o644), ("key", 0o600)] {
        let mode = std::fs::metadata(grouped.with_extension(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, want, "{key}");
    }
    let (code, _, err) = run(lb(&cfg).args(["audit", "keygen"]).arg(&keys));
    assert_eq!(code, 2, "keys are never overwritten: {err}");

    // the public key given for the secret one is refused, before anything is signed
    let (code, _, err) = run(lb(&cfg).args(["audit", "sign", "--key"]).arg(&public));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the public key"), "{err}");
    // a key others may read signs, with a warning
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(lb(&cfg).args(["audit", "sign", "--key"]).arg(&secret));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
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
    assert!(
        out.contains("chain intact, 1 signed head verified"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(lb(&cfg)
        .args(["--json", "audit", "verify", "--signed"])
        .arg(&statement)
        .arg("--public-key")
        .arg(&public)))
    .unwrap();
    assert_eq!(json["signed_heads_verified"], 1, "{json}");
    // a key without a statement is a usage error, not a silent pass
    let (code, _, err) = run(lb(&cfg)
        .args(["audit", "verify", "--public-key"])
        .arg(&public));
    assert_eq!(code, 2, "{err}");
    // without --signed no signature is claimed
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    assert!(
        out.contains("chain intact") && !out.contains("signed"),
        "{out}"
    );

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

/// A one-thread HTTP server on 127.0.0.1 that hands over each request (request line and
/// body) and answers 200 `delay` later.
fn evidence_service(
    delay: std::time::Duration,
) -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            if request.trim().is_empty() {
                // a connection without a request: `config check` seeing that we are up
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let gone = tx
                .send((request.trim().to_string(), String::from_utf8(body).unwrap()))
                .is_err();
            std::thread::sleep(delay);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if gone {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn every_new_head_is_published_outside_the_repository() {
    let (_c, ws, cfg) = backed_up(30);
    // the evidence service is on 127.0.0.1: never through a proxy the environment may name
    let lb = |cfg: &std::path::Path| {
        let mut cmd = lb(cfg);
        cmd.env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1");
        cmd
    };
    let outside = ws.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let head_file = outside.join("audit.heads");
    let (port, requests) = evidence_service(std::time::Duration::ZERO);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let with_audit = |url: &str| {
        std::fs::write(
            &cfg,
            format!(
                "{base}\n[audit]\nhead_file = {:?}\nhead_url = {url:?}\n",
                head_file.display().to_string()
            ),
        )
        .unwrap();
    };
    with_audit(&format!(
        "http://127.0.0.1:{port}/lifeboat/head?token=s3cret"
    ));

    // config check looks at both places without writing to either
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.contains("audit head URL") && out.contains("accepts connections"),
        "{out}"
    );
    assert!(out.contains("audit head file"), "{out}");
    assert!(!head_file.exists());
    // the source's line names the server's and pg_dump's versions
    assert!(
        out.contains("(server ") && out.contains(", pg_dump "),
        "{out}"
    );

    ok(lb(&cfg).args(["verify", "--all"]));
    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "copy"]));
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    assert_eq!(entries.len(), 3, "backup (before [audit]), verify, restore");
    // the file: a line per new entry, in order
    let lines: Vec<String> = std::fs::read_to_string(&head_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, e) in lines.iter().zip(&entries[1..]) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], e["seq"].to_string(), "{line}");
        assert_eq!(fields[1], e["hash"].as_str().unwrap(), "{line}");
        assert_eq!(fields[3], e["action"].as_str().unwrap(), "{line}");
    }
    // the service: a JSON POST per new entry
    for e in &entries[1..] {
        let (request, body) = requests
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert!(
            request.starts_with("POST /lifeboat/head?token=s3cret "),
            "{request}"
        );
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(got["seq"], e["seq"]);
        assert_eq!(got["hash"], e["hash"]);
        assert_eq!(got["action"], e["action"]);
    }
    ok(lb(&cfg)
        .args(["audit", "verify", "--head-file"])
        .arg(&head_file));

    // cutting off the newest entry is caught by the file outside
    tamper(&ws, 3, None);
    let (code, out, err) = run(lb(&cfg)
        .args(["audit", "verify", "--head-file"])
        .arg(&head_file));
    assert_eq!(code, 6, "{out}{err}");
    assert!(out.contains("expected head"), "{out}");
    // and what the cut-off entry was, as the file recorded it
    let third = &entries[2];
    assert!(
        out.contains("recorded 1 entry the log no longer holds: 3 (")
            && out.contains(&format!(
                "{} {})",
                third["action"].as_str().unwrap(),
                third["outcome"].as_str().unwrap()
            )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "compared with {}: its newest head is not in the log",
            head_file.display()
        )),
        "{out}"
    );
    // naming another head file (a new one, which has nothing to compare with yet) still
    // compares with the configured one, and trusts nothing into the new file
    let other = ws.path().join("elsewhere.head");
    let (code, out, err) = run(lb(&cfg)
        .args(["audit", "verify", "--head-file"])
        .arg(&other));
    assert_eq!(code, 6, "{out}{err}");
    assert!(out.contains("expected head"), "{out}");
    assert!(!other.exists(), "a truncated head was written as trusted");

    // a service that is down: the operation's own work is done, the exit code says what is
    // missing, and the URL's token stays out of the message
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    // (with a new head file: the old one still says the log was cut, which `verify --all`
    // now reports first, exit 6)
    std::fs::remove_file(&head_file).unwrap();
    with_audit(&format!("http://127.0.0.1:{dead}/head?token=s3cret"));
    let (code, out, err) = run(lb(&cfg).args(["config", "check"]));
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("does not accept connections"), "{out}");
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "{out}{err}"
    );
    let (code, out, err) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(code, 7, "{out}{err}");
    // the verdicts are printed, then what is missing
    assert!(out.contains("ok       "), "{out}");
    assert!(err.contains("verify succeeded, but audit entry"), "{err}");
    // a backup's ids too (a script must not back up again), and in its JSON the gap
    let (code, out, err) = run(lb(&cfg).args(["--json", "backup", "--kind", "schema"]));
    assert_eq!(code, 7, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("the backup's report");
    assert!(v["backups"][0]["id"].as_str().is_some(), "{v}");
    assert!(
        v["evidence_gap"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("backup succeeded, but audit entry")),
        "{v}"
    );
    assert!(err.contains("backup succeeded, but audit entry"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{dead}")), "{err}");
    assert!(!err.contains("s3cret") && !out.contains("s3cret"), "{err}");
    // a drill too: it passed, and its evidence is incomplete (it exited 0 and only the
    // report said so)
    let (code, out, err) = run(lb(&cfg).arg("drill"));
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("PASSED"), "{out}");
    assert!(
        err.contains("passed, but its evidence is incomplete"),
        "{err}"
    );
    assert!(!err.contains("s3cret") && !out.contains("s3cret"), "{err}");

    // a URL that is not http(s) is a config error naming the key
    with_audit("ftp://127.0.0.1/head");
    let (code, _, err) = run(lb(&cfg).args(["audit", "list"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("audit.head_url"), "{err}");
}

/// A workspace with an initialised local repository whose audit log holds `n` entries
/// (verifies of the empty repository: no PostgreSQL needed).
fn logged(n: usize) -> (Workspace, std::path::PathBuf) {
    let ws = Workspace::new();
    let cfg = ws.local_config(&[]);
    ok(lb(&cfg).arg("init"));
    for _ in 0..n {
        ok(lb(&cfg).args(["verify", "--all"]));
    }
    (ws, cfg)
}

#[test]
fn the_head_as_verify_prints_it_is_an_expected_head_and_a_shorter_one_a_usage_error() {
    let (ws, cfg) = logged(2);
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    // "2 entries, head 6aedbc05d906b694: chain intact"
    let printed = out
        .split("head ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap()
        .to_string();
    assert_eq!(printed.len(), 16, "{out}");
    let out = ok(lb(&cfg).args(["audit", "verify", "--expected-head", &printed]));
    // it says what it compared with, not only "intact"
    assert!(
        out.contains(&format!(
            "compared with the expected head {printed}: it is entry 2, the log's head"
        )),
        "{out}"
    );

    for short in [&printed[..12], "zzzzzzzzzzzzzzzz"] {
        let (code, out, err) = run(lb(&cfg).args(["audit", "verify", "--expected-head", short]));
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains("at least 16 hex digits, as printed by `lifeboat audit verify`"),
            "{err}"
        );
        assert!(!out.contains("BROKEN"), "{out}");
    }

    // the newest entry cut off: the alarm names the head as it was given
    tamper(&ws, 2, None);
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify", "--expected-head", &printed]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains(&format!(
            "BROKEN  the expected head {printed} is not in the log"
        )),
        "{out}"
    );
}

#[test]
fn a_configured_head_file_not_there_yet_is_named_the_same_way_and_says_when_it_comes() {
    let (ws, cfg) = logged(1);
    let head_file = ws.path().join("audit.heads");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[audit]\nhead_file = {:?}\n",
        head_file.display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();

    // text and JSON name the same thing: the file, and that it does not exist yet
    let detail = |json: &str| -> String {
        let lines: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
        let l = lines
            .iter()
            .find(|l| l["what"] == "audit head file")
            .unwrap();
        l["detail"].as_str().unwrap().to_string()
    };
    let expected = format!(
        "{} does not exist yet; {} is writable, so the next audit entry creates it",
        head_file.display(),
        ws.path().display()
    );
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(out.contains(&expected), "{out}");
    assert_eq!(
        detail(&ok(lb(&cfg).args(["--json", "config", "check"]))),
        expected
    );

    let (code, _, err) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("does not exist yet") && err.contains("the next audit entry"),
        "{err}"
    );
    assert!(
        !head_file.exists(),
        "audit verify writes no configured head file"
    );

    // created under a umask that would let the group or all write it: mode 0644 all the
    // same, as it anchors the log
    let status = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(assert_cmd::cargo::cargo_bin("lifeboat"))
        .arg("--config")
        .arg(&cfg)
        .args(["verify", "--all"])
        .env("LIFEBOAT_STATE_DIR", cfg.parent().unwrap().join("state"))
        .env_remove("LIFEBOAT_PASSWORD")
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(head_file.exists());
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(p).unwrap()) & 0o777
    };
    assert_eq!(mode(&head_file), 0o644);
    // one every user may write anchors nothing: config check fails on it
    std::fs::set_permissions(
        &head_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let (code, out, _) = run(lb(&cfg).args(["config", "check"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "every user of this host may change {}",
            head_file.display()
        )) && out.contains("chmod o-w"),
        "{out}"
    );
    std::fs::set_permissions(
        &head_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let (_, _, err) = run(lb(&cfg).args(["audit", "verify"]));
    assert!(!err.contains("does not exist"), "{err}");
    let writable = format!("{} is writable", head_file.display());
    assert!(
        ok(lb(&cfg).args(["config", "check"])).contains(&writable),
        "text"
    );
    assert_eq!(
        detail(&ok(lb(&cfg).args(["--json", "config", "check"]))),
        writable
    );
}

/// A service stop (SIGTERM) while a finished operation publishes its audit head: the
/// operation is in the log once, as done. It was also parked as "interrupted", which for
/// a drill made the evidence pack cry tampering over a report never stored.
#[test]
fn an_interrupt_while_the_outcome_is_logged_does_not_log_it_twice() {
    let (_c, _ws, cfg) = backed_up(10);
    let (port, requests) = evidence_service(std::time::Duration::from_secs(4));
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{base}\n[audit]\nhead_url = \"http://127.0.0.1:{port}/head\"\n"),
    )
    .unwrap();
    let entries = || -> Vec<serde_json::Value> {
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap()
    };
    let before = entries().len();
    let mut verify = common::lb_std(&cfg)
        .env("NO_PROXY", "127.0.0.1")
        .args(["verify", "--all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // its entry is written and the head is on its way out
    requests
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the head was published");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(verify.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    verify.wait().unwrap();
    // anything parked goes in with the next operation
    ok(lb(&cfg)
        .env("NO_PROXY", "127.0.0.1")
        .args(["verify", "--all"]));
    let log = entries();
    let added: Vec<&serde_json::Value> = log[before..].iter().collect();
    assert_eq!(added.len(), 2, "one entry per verify: {added:?}");
    assert!(
        added.iter().all(|e| e["outcome"] == "ok"
            && !e["details"].as_str().unwrap_or("").contains("interrupted")),
        "{added:?}"
    );
}

/// A backup run interrupted after it stored one database's backup: that backup is listed
/// and restores, so the log must name it (the entry said only "interrupted before it
/// finished", and the stored backup was in no entry).
#[test]
fn an_interrupted_backup_names_what_it_had_stored() {
    let c = lifeboat_testing::cluster();
    lifeboat_testing::sample_db(&c, "a", 10);
    lifeboat_testing::sample_db(&c, "b", 10);
    let ws = lifeboat_testing::Workspace::new();
    let cfg = ws.local_config(&[("multi", &c.dsn("postgres"))]);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("databases = [\"a\", \"b\"]\n");
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    // a migration holds one of b's tables: the run stores a, then waits for b
    let mut holder = common::hold_exclusive_lock(&c, "b", "shop.users", 120);
    let waits = |q: &str| {
        (0..600).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            c.sql("postgres", q).is_ok_and(|n| n.trim() == "1")
        })
    };
    let log = ws.path().join("backup.err");
    let mut run_ = common::lb_std(&cfg)
        .args(["backup", "--kind", "logical"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let waiting = waits(
        "select count(*) from pg_stat_activity where datname = 'b' and wait_event_type = 'Lock'",
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run_.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = run_.wait().unwrap();
    // its pg_dump goes with it, while the lock it waits for is still held (it went on
    // waiting, orphaned, until the lock came free)
    let port = format!("port={}", c.port());
    let dumping = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.contains("pg_dump ") && c.contains(&port)
            })
        })
    };
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !dumping()
    });
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(gone, "the interrupted backup's pg_dump is still running");
    assert!(
        waiting,
        "the backup of b never waited for the lock: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(status.code(), Some(130));
    let stored = common::list_json(&cfg);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["database"], "a");
    // by its whole id, as every backup entry names one; and on the terminal too
    let id = stored[0]["id"].as_str().unwrap().to_string();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains(&format!("stored before the interruption: {id} logical a")),
        "{said}"
    );
    // the next operation adds the parked entry
    ok(lb(&cfg).args(["verify", "--all"]));
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "audit", "list"]))).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["details"].as_str().is_some_and(|d| {
                d.contains("interrupted")
                    && d.contains(&format!("stored before the interruption: {id} logical a"))
            })),
        "{entries:?}"
    );
    // so that a backup stored before an interruption and deleted later is named too
    let full = stored[0]["id"].as_str().unwrap();
    std::fs::rename(
        ws.repo_path().join("snapshots").join(full),
        ws.path().join("aside"),
    )
    .unwrap();
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        format!("{out}{err}").contains(&format!("{} (logical of a", &id[..8])),
        "{out}{err}"
    );
}

/// Another process holds the audit log's lock (a run stopped with Ctrl-Z): the run says
/// what it waits for after a few seconds instead of looking hung, and goes on once the
/// lock is free.
#[test]
fn a_run_waiting_for_the_audit_lock_says_so() {
    let (_c, ws, cfg) = backed_up(10);
    let lock = ws.repo_path().join("lifeboat-audit.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(8));
        drop(held);
    });
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "schema"]));
    release.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("waiting for") && err.contains("lifeboat-audit.lock"),
        "{err}"
    );

    // stopped (SIGTERM) while it waits: nothing of its entry is written, so it parks the
    // interruption at once instead of waiting for an entry that cannot come
    let file = std::fs::OpenOptions::new().read(true).open(&lock).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let log = ws.path().join("waiting.err");
    let mut waiting = common::lb_std(&cfg)
        .args(["verify", "--all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting for"))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(waiting.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = waiting.wait().unwrap();
    drop(held);
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(said, "{err}");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        !err.contains("finishing the audit entry") && err.contains("parked"),
        "{err}"
    );
}

/// What an attacker holding the repository does to hide their tracks: delete the newest
/// backups, or put an older copy of the repository back. The log records every backup;
/// the head file, kept elsewhere, every head. Both must say so, also after new runs.
#[test]
fn a_backup_deleted_by_hand_and_a_rolled_back_log_are_found() {
    let (_c, ws, cfg) = backed_up(20);
    with_head_file(&ws, &cfg, "outside.heads");
    ok(lb(&cfg).args(["backup", "--kind", "globals"]));
    let old = ws.path().join("repo-two-days-ago");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(ws.repo_path())
        .arg(&old)
        .status()
        .unwrap();
    assert!(copied.success());
    ok(lb(&cfg).args(["backup", "--kind", "globals"]));
    ok(lb(&cfg).args(["backup", "--kind", "globals"]));
    ok(lb(&cfg).args(["audit", "verify"]));

    // the newest backup's snapshot file removed, as `restic forget` or `rm` would
    let newest = common::list_json(&cfg)
        .last()
        .and_then(|b| b["id"].as_str().map(str::to_string))
        .unwrap();
    let file = ws.repo_path().join("snapshots").join(&newest);
    let aside = ws.path().join("aside");
    std::fs::rename(&file, &aside).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}{err}");
    let both = format!("{out}{err}");
    assert!(
        both.contains("no longer in the repository") && both.contains(&newest[..8]),
        "{both}"
    );
    // and `verify --all`, which checked "every backup" there was
    let (code, out, err) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains("no longer in the repository") && out.contains(&newest[..8]),
        "{out}"
    );
    // nothing is damaged, so no repair is suggested; automation sees it as history
    assert!(err.contains("does not hold what its audit log"), "{err}");
    let (code, out, _) = run(lb(&cfg).args(["--json", "verify", "--all"]));
    assert_eq!(code, 6, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["repository_problems"].as_array().unwrap().len(),
        0,
        "{doc}"
    );
    assert!(
        doc["history_problems"][0]
            .as_str()
            .unwrap()
            .contains(&newest[..8]),
        "{doc}"
    );
    // deleted on purpose: recorded, with the reason, and no longer named; an id that is
    // not gone is refused
    let (code, _, err) = run(lb(&cfg).args(["audit", "deleted", "deadbeef", "--reason", "x"]));
    assert_eq!(code, 2, "{err}");
    ok(lb(&cfg).args([
        "audit",
        "deleted",
        &newest[..8],
        "--reason",
        "erasure request 42",
    ]));
    let out = ok(lb(&cfg).args(["audit", "verify"]));
    assert!(
        out.contains("recorded as deleted on purpose") && out.contains("erasure request 42"),
        "{out}"
    );
    ok(lb(&cfg).args(["verify", "--all"]));
    // an evidence pack of a period that ends before the deletion was recorded does not
    // name it either
    let entries: Vec<serde_json::Value> = serde_json::from_str(&ok(
        lb(&cfg).args(["--json", "audit", "list", "--action", "backup"])
    ))
    .unwrap();
    let stored_at = entries.last().unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();
    ok(lb(&cfg).args(["report", "--to", &stored_at]));
    let listed = ok(lb(&cfg).args(["audit", "list", "--action", "deleted"]));
    assert!(
        listed.contains(&format!(
            "backups {} deleted on purpose: erasure request 42",
            // named whole: 8 digits could be forged to fit another backup
            newest
        )),
        "{listed}"
    );
    std::fs::rename(&aside, &file).unwrap();
    ok(lb(&cfg).args(["audit", "verify"]));

    // the repository rolled back two entries, then two new runs: the log has grown back
    // to the newest line's number, and those lines are its own
    std::fs::remove_dir_all(ws.repo_path()).unwrap();
    std::fs::rename(&old, ws.repo_path()).unwrap();
    // each run finds its place already taken in the head file, and fails after its work
    for _ in 0..2 {
        let (code, out, err) = run(lb(&cfg).args(["backup", "--kind", "globals"]));
        assert_eq!(code, 6, "{out}{err}");
        assert!(
            err.contains("backup succeeded") && err.contains("already records entry"),
            "{err}"
        );
    }
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}{err}");
    let both = format!("{out}{err}");
    assert!(
        both.contains("the audit head file recorded entry 3 as"),
        "{both}"
    );
    // `verify --all`, which checks every backup, names it too
    let (code, out, err) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains("the audit head file recorded entry 3 as"),
        "{out}"
    );
}

#[test]
fn a_note_of_what_was_done_by_hand_is_an_entry_of_the_chain_and_of_the_evidence() {
    let (_ws, cfg) = logged(1);
    let text = "copied back 6004 rows of shop.orders from the copy restored to 14:31:59";
    let out = ok(lb(&cfg).args(["audit", "note", text]));
    assert!(out.contains("recorded as entry 2"), "{out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ok(
        lb(&cfg).args(["--json", "audit", "list", "--action", "note"])
    ))
    .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["details"], text);
    assert_eq!(listed[0]["outcome"], "ok");
    assert!(ok(lb(&cfg).args(["audit", "verify"])).contains("2 entries"));
    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.lines()
            .any(|l| l.starts_with("- entry 2 at ") && l.contains(text)),
        "{pack}"
    );
    // an empty note or one over several lines is a usage error, and writes nothing
    for bad in ["  ", "line one\nline two"] {
        let (code, _, err) = run(lb(&cfg).args(["audit", "note", bad]));
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
    assert!(ok(lb(&cfg).args(["audit", "verify"])).contains("2 entries"));
}

/// One damaged entry breaks the chain: the backups the later entries record are still
/// picked by time (a restore of old data with exit 0 would be the worst outcome), with a
/// note naming the break, and `stats --check` fails on it.
#[test]
fn a_broken_chain_does_not_hide_later_backups_from_a_pick_by_time() {
    let (_c, ws, cfg) = backed_up(20);
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    tamper(
        &ws,
        2,
        Some(&|v: &mut serde_json::Value| v["details"] = "edited by hand".into()),
    );
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let newest = common::list_json(&cfg)
        .iter()
        .filter(|b| b["kind"] == "logical")
        .map(|b| b["id"].as_str().unwrap().to_string())
        .next_back()
        .unwrap();
    let (code, out, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "picked",
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&newest[..8]), "the newest backup: {out}{err}");
    assert!(
        err.contains("the audit log's chain breaks after entry 1"),
        "{err}"
    );
    let (code, out, err) = run(lb(&cfg).args(["stats", "--check"]));
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("AUDIT LOG BROKEN") && out.contains("chain breaks after entry 1"),
        "{out}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "stats"]))).unwrap();
    assert_eq!(stats["audit_broken_after"], 1, "{stats}");
}

/// `lifeboat backup | head`: the reader goes away and lifeboat stops quietly (141); what it
/// did is logged as it was, never later as a run killed outright.
#[test]
fn a_run_whose_output_pipe_closes_is_not_logged_as_killed() {
    let (_c, _ws, cfg) = backed_up(10);
    for args in [
        &["backup", "--kind", "globals"][..],
        &["restore", "--latest", "--to-database", "piped"][..],
    ] {
        let mut child = common::lb_std(&cfg)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(141), "{args:?}");
    }
    // the next operation adds what was parked
    ok(lb(&cfg).args(["verify", "--latest"]));
    let log = ok(lb(&cfg).args(["--json", "audit", "list"]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    assert!(
        !entries.iter().any(|e| e["details"]
            .as_str()
            .unwrap_or("")
            .contains("killed outright")),
        "{log}"
    );
    let done = |action: &str| {
        entries
            .iter()
            .rfind(|e| e["action"] == action)
            .cloned()
            .unwrap()
    };
    // the piped backup is the newest: a globals one, logged once, as done
    let backup = done("backup");
    assert!(
        backup["outcome"] == "ok" && backup["details"].as_str().unwrap().contains(" globals "),
        "{log}"
    );
    assert_eq!(
        entries.iter().filter(|e| e["action"] == "backup").count(),
        2,
        "the sample's backup and the piped one: {log}"
    );
    // the restore finished before it printed, so its outcome stands
    assert_eq!(done("restore")["outcome"], "ok", "{log}");
}
