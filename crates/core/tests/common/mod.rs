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
