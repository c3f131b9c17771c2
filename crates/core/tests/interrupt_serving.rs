//! An interrupt's clean-up removes the socket directory of a recovery's WAL server: it is
//! root's, in /tmp, and an interrupted restore never drops the server that would remove
//! it. (Its own test binary: `stop_all` acts on the whole process.)

use lifeboat_core::{
    config::RepositoryConfig,
    repository::Repo,
    secret::Secret,
    sources::postgres::cluster,
    wal::{spool::Serving, WalStore},
};
use rustic_core::NoProgressBars;

#[test]
fn an_interrupt_removes_a_recovery_s_wal_socket_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RepositoryConfig {
        url: Some(dir.path().join("repo").display().to_string()),
        ..RepositoryConfig::default()
    };
    let password = Secret::new("serving");
    Repo::init(&cfg, &password, NoProgressBars).unwrap();
    let repo = Repo::open(&cfg, &password, NoProgressBars).unwrap();
    let store = WalStore::new(&repo, "main").unwrap();
    let serving = Serving::start(store, "main@test", 16 << 20, None).unwrap();
    let socket_dir = serving.socket().parent().unwrap().to_path_buf();
    assert!(serving.socket().exists());
    cluster::stop_all();
    assert!(
        !socket_dir.exists(),
        "{} is left after the interrupt",
        socket_dir.display()
    );
    cluster::resume_after_stop();
    // the server's own removal, later, finds nothing left and does not fail
    drop(serving);
    // and one started after the clean-up is removed by its own drop, not by an interrupt
    let store = WalStore::new(&repo, "main").unwrap();
    let again = Serving::start(store, "main@test", 16 << 20, None).unwrap();
    let dir_again = again.socket().parent().unwrap().to_path_buf();
    drop(again);
    assert!(!dir_again.exists());
}
