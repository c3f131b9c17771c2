//! What a program embedding lifeboat-core meets that the CLI's file parsing would have
//! caught: a configuration built in code is checked on request, and a drill refuses an
//! objective that is no duration instead of judging against none.

mod common;

use lifeboat_core::{
    config::{Config, SourceConfig},
    ops::drill::{drill, DrillOptions},
    ErrorKind,
};

fn source_with_rto(rto: &str) -> SourceConfig {
    let mut src = SourceConfig::postgres("app-db", "host=/nonexistent port=1 dbname=app");
    src.objectives.rto = Some(rto.into());
    src
}

#[test]
fn a_configuration_built_in_code_is_checked_like_a_file() {
    let mut cfg = Config::default();
    cfg.sources.push(source_with_rto("1 hour"));
    let e = cfg.check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("objectives.rto"), "{e}");
    cfg.sources[0].objectives.rto = Some("1h".into());
    cfg.check().unwrap();
}

#[test]
fn a_drill_refuses_an_objective_that_is_no_duration_before_anything() {
    let dir = tempfile::tempdir().unwrap();
    let repo = common::new_repo(&dir.path().join("repo"));
    let e = drill(&repo, &source_with_rto("1 hour"), &DrillOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.message()
            .contains("objectives.rto of source \"app-db\": \"1 hour\" is not a duration"),
        "{e}"
    );
    // attempted nothing: not in the audit log
    assert!(lifeboat_core::repository::audit::entries(&repo)
        .unwrap()
        .is_empty());
}

/// `RestoreOptions::scratch_dir` is where the dump is staged when `restore` is given no
/// directory of its own: a caller who set it must not get the system's temporary
/// directory (possibly a disk too small for the dump) without a word.
#[test]
fn a_restore_stages_its_dump_where_its_options_say() {
    use lifeboat_core::ops::restore::{plan, restore, RestoreOptions, Selector};
    let dir = tempfile::tempdir().unwrap();
    let (_c, repo, src) = common::backed_up(dir.path());
    let opts = RestoreOptions {
        selector: Selector::Latest,
        source: Some("app-db".into()),
        to_database: Some("app_copy".into()),
        scratch_dir: Some(dir.path().join("no-such-dir")),
        ..RestoreOptions::default()
    };
    let e = restore(&repo, &src, plan(&repo, &src, &opts).unwrap(), None).unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let opts = RestoreOptions {
        scratch_dir: Some(staging),
        ..opts
    };
    restore(&repo, &src, plan(&repo, &src, &opts).unwrap(), None).unwrap();
}

/// The library's audit check compares the log with the head file the repository was
/// opened with, as `lifeboat audit verify` does: entries cut off the end of the log are
/// seen only that way.
#[test]
fn the_audit_check_compares_with_the_configured_head_file() {
    use lifeboat_core::{config::AuditConfig, ops::verify, repository::audit};
    let dir = tempfile::tempdir().unwrap();
    let head_file = dir.path().join("audit.head");
    let repo = common::new_repo(&dir.path().join("repo")).with_audit(AuditConfig {
        head_file: Some(head_file.clone()),
        ..AuditConfig::default()
    });
    verify::verify(&repo, &verify::VerifyOptions::default()).unwrap();
    assert!(head_file.exists(), "the entry's head was published");
    assert!(audit::verify(&repo, None).unwrap().ok());
    // a head the log no longer holds: its newest entries were cut off
    let mut text = std::fs::read_to_string(&head_file).unwrap();
    text.push_str("ffffffffffffffffffffffffffffffff\n");
    std::fs::write(&head_file, text).unwrap();
    let v = audit::verify(&repo, None).unwrap();
    assert!(!v.ok(), "{v:?}");
    assert!(
        v.problems.iter().any(|p| p.contains("ffffffffffffffff")),
        "{v:?}"
    );
}

/// The library's audit check is `lifeboat audit verify`'s: a backup the log records that
/// is gone from the repository breaks it (it used to pass a log whose backups were
/// deleted by hand).
#[test]
fn the_audit_check_names_a_logged_backup_that_is_gone() {
    use lifeboat_core::repository::audit;
    let dir = tempfile::tempdir().unwrap();
    let (_c, repo, _src) = common::backed_up(dir.path());
    assert!(audit::verify(&repo, None).unwrap().ok());
    let gone = repo.backups().unwrap()[0].id.clone();
    let snapshots = repo.location().to_string() + "/snapshots";
    let file = std::fs::read_dir(&snapshots)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy() == gone)
        .expect("its snapshot file");
    std::fs::remove_file(file.path()).unwrap();
    let v = audit::verify(&repo, None).unwrap();
    assert!(!v.ok(), "{v:?}");
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("no longer in the repository") && p.contains(&gone[..8])),
        "{v:?}"
    );
}

/// Run as root in a repository that belongs to the PostgreSQL user and its group (setgid,
/// 2750), everything written is that user's at once, with the group's read bit and the
/// group kept: the library does not hand files over afterwards as the CLI does, and a run
/// killed midway must not leave root's private files behind.
#[test]
fn root_writes_into_a_shared_repository_as_its_owner() {
    use lifeboat_core::ops::backup::{backup, BackupOptions};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let pg = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the suite runs as root with a postgres OS user");
    assert!(nix::unistd::geteuid().is_root(), "the suite runs as root");
    let c = lifeboat_testing::cluster();
    lifeboat_testing::sample_db(&c, "app", 10);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(pg.uid.as_raw()), Some(pg.gid.as_raw())).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o2750)).unwrap();
    let repo = common::new_repo(&root);
    let src = SourceConfig::postgres("app-db", &c.dsn("app"));
    assert!(backup(&repo, &src, &BackupOptions::default()).unwrap().ok());
    let mut seen = std::collections::BTreeSet::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            assert_eq!(
                (m.uid(), m.gid()),
                (pg.uid.as_raw(), pg.gid.as_raw()),
                "{} is not the repository owner's",
                e.path().display()
            );
            let kind = if m.is_dir() { 'd' } else { 'f' };
            seen.insert(format!("{kind}{:o}", m.permissions().mode() & 0o7777));
            if m.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    assert_eq!(
        seen,
        ["d2750", "f640"].map(String::from).into_iter().collect(),
        "{seen:?}"
    );
}

/// A service keeps what the operations return (in its own database, a queue) and reads it
/// back: the reports deserialize as they serialize.
#[test]
fn the_reports_read_back_as_they_were_written() {
    use lifeboat_core::ops::{backup, list, verify};
    let dir = tempfile::tempdir().unwrap();
    let (_c, repo, src) = common::backed_up(dir.path());
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> serde_json::Value {
        let json = serde_json::to_value(v).unwrap();
        let back: T = serde_json::from_value(json.clone()).unwrap();
        let again = serde_json::to_value(&back).unwrap();
        assert_eq!(json, again);
        json
    }
    let report = backup::backup(&repo, &src, &backup::BackupOptions::default()).unwrap();
    let json = round_trip(&report);
    assert_eq!(json["backups"].as_array().unwrap().len(), 3, "{json}");
    round_trip(&list::stats(&repo).unwrap());
    round_trip(&list::list(&repo, &list::ListFilter::default()).unwrap());
    round_trip(&verify::verify(&repo, &verify::VerifyOptions::default()).unwrap());
    round_trip(&lifeboat_core::repository::audit::verify(&repo, None).unwrap());
}
