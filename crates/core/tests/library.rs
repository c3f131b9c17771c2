//! What a program embedding lifeboat-core meets that the CLI's file parsing would have
//! caught: a configuration built in code is checked on request, and a drill refuses an
//! objective that is no duration instead of judging against none.

use lifeboat_core::{
    config::{Config, RepositoryConfig, SourceConfig},
    ops::drill::{drill, DrillOptions},
    repository::Repo,
    rustic_core::NoProgressBars,
    secret::Secret,
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
    let cfg = RepositoryConfig {
        url: Some(dir.path().join("repo").display().to_string()),
        ..RepositoryConfig::default()
    };
    let password = Secret::new("correct horse battery staple");
    Repo::init(&cfg, &password, NoProgressBars).unwrap();
    let repo = Repo::open(&cfg, &password, NoProgressBars).unwrap();
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
    use lifeboat_core::ops::{
        backup::{backup, BackupOptions},
        restore::{plan, restore, RestoreOptions, Selector},
    };
    let c = lifeboat_testing::cluster();
    lifeboat_testing::sample_db(&c, "app", 20);
    let dir = tempfile::tempdir().unwrap();
    let cfg = RepositoryConfig {
        url: Some(dir.path().join("repo").display().to_string()),
        ..RepositoryConfig::default()
    };
    let password = Secret::new("correct horse battery staple");
    Repo::init(&cfg, &password, NoProgressBars).unwrap();
    let repo = Repo::open(&cfg, &password, NoProgressBars).unwrap();
    let src = SourceConfig::postgres("app-db", &c.dsn("app"));
    assert!(backup(&repo, &src, &BackupOptions::default()).unwrap().ok());
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
    let cfg = RepositoryConfig {
        url: Some(dir.path().join("repo").display().to_string()),
        ..RepositoryConfig::default()
    };
    let password = Secret::new("correct horse battery staple");
    Repo::init(&cfg, &password, NoProgressBars).unwrap();
    let head_file = dir.path().join("audit.head");
    let repo = Repo::open(&cfg, &password, NoProgressBars)
        .unwrap()
        .with_audit(AuditConfig {
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
