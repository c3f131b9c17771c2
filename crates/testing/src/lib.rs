//! Test harnesses for lifeboat: throw-away PostgreSQL clusters (from lifeboat-core), a
//! Garage S3 server, and helpers to write configurations for the `lifeboat` binary.
//!
//! Everything here starts real programs; nothing is mocked. Servers stop on drop, so a
//! panicking test leaves nothing running.

pub mod garage;

use std::path::{Path, PathBuf};

pub use lifeboat_core::sources::postgres::cluster::Cluster;
use lifeboat_core::sources::postgres::conn::PgBin;

/// Password used for test repositories.
pub const REPO_PASSWORD: &str = "test-repository-password";

/// Starts a throw-away cluster, panicking with the reason when it cannot.
#[must_use]
pub fn cluster() -> Cluster {
    Cluster::start(&PgBin::new(None))
        .expect("start a throw-away PostgreSQL (is the postgresql package installed?)")
}

/// Creates database `db` on `c` with the demo's sample shop (`users` users).
pub fn sample_db(c: &Cluster, db: &str, users: u64) {
    c.sql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("create database");
    c.sql(db, lifeboat_core::demo::SAMPLE_SCHEMA)
        .expect("schema");
    c.sql(db, &lifeboat_core::demo::sample_data_sql(users))
        .expect("data");
}

/// A temporary directory holding a lifeboat.toml and (for local tests) the repository.
pub struct Workspace {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// A new empty workspace.
    #[must_use]
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Path of the local repository inside the workspace.
    #[must_use]
    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Path of the config file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("lifeboat.toml")
    }

    /// Writes lifeboat.toml with `repository` (TOML body of `[repository]`) and one
    /// postgres source per `(name, dsn)`.
    pub fn write_config(&self, repository: &str, sources: &[(&str, &str)]) -> PathBuf {
        let pw = self.dir.path().join("repo.pass");
        std::fs::write(&pw, REPO_PASSWORD).expect("password file");
        let mut text = format!(
            "[repository]\npassword_file = {:?}\n{repository}\n",
            pw.display().to_string()
        );
        for (name, dsn) in sources {
            text.push_str(&format!(
                "\n[[source]]\nname = {name:?}\nkind = \"postgres\"\ndsn = {dsn:?}\n"
            ));
        }
        let p = self.config_path();
        std::fs::write(&p, text).expect("config");
        p
    }

    /// Writes a config with a local repository in the workspace.
    pub fn local_config(&self, sources: &[(&str, &str)]) -> PathBuf {
        self.write_config(
            &format!("url = {:?}", self.repo_path().display().to_string()),
            sources,
        )
    }

    /// The workspace directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}
