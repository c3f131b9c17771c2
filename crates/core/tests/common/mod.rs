//! What the library's tests share: a local repository in a directory.

use lifeboat_core::{
    config::RepositoryConfig, repository::Repo, rustic_core::NoProgressBars, secret::Secret,
};

/// The password of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

/// The settings of a local repository at `path`.
pub fn local(path: &std::path::Path) -> RepositoryConfig {
    RepositoryConfig {
        url: Some(path.display().to_string()),
        ..RepositoryConfig::default()
    }
}

/// A new local repository at `path` (an existing, empty directory is fine), opened.
pub fn new_repo(path: &std::path::Path) -> Repo {
    let cfg = local(path);
    let password = Secret::new(PASSWORD);
    Repo::init(&cfg, &password, NoProgressBars).expect("init");
    Repo::open(&cfg, &password, NoProgressBars).expect("open")
}

/// A throw-away cluster with a small shop database `app`, its source `app-db`, and a
/// repository at `dir/repo` holding one backup of it.
pub fn backed_up(
    dir: &std::path::Path,
) -> (
    lifeboat_testing::Cluster,
    Repo,
    lifeboat_core::config::SourceConfig,
) {
    use lifeboat_core::ops::backup::{backup, BackupOptions};
    let c = lifeboat_testing::cluster();
    lifeboat_testing::sample_db(&c, "app", 20);
    let repo = new_repo(&dir.join("repo"));
    let src = lifeboat_core::config::SourceConfig::postgres("app-db", &c.dsn("app"));
    assert!(backup(&repo, &src, &BackupOptions::default())
        .expect("backup")
        .ok());
    (c, repo, src)
}
