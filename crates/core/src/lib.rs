//! lifeboat-core: disaster recovery for PostgreSQL that you can prove.
//!
//! Every lifeboat operation is a function here; the `lifeboat` CLI only parses arguments
//! and prints results. Backups are stored in a restic-format repository (through
//! [`rustic_core`]): deduplicated, zstd-compressed and encrypted, on local disk or S3.
//!
//! The operations of a classic `BackupService` map to:
//!
//! | BackupService     | lifeboat-core                          |
//! |-------------------|----------------------------------------|
//! | `CreateBackup`    | [`ops::backup::backup`]                |
//! | `VerifyBackup`    | [`ops::verify::verify`]                |
//! | `ListBackups`     | [`ops::list::list`]                    |
//! | `GetBackupStats`  | [`ops::list::stats`]                   |
//! | restore           | [`ops::restore::plan`] / [`ops::restore::restore`] |
//!
//! # Example
//!
//! Create a repository, then list and summarise its backups:
//!
//! ```
//! use lifeboat_core::{config::RepositoryConfig, ops, repository::Repo, secret::Secret};
//! use lifeboat_core::rustic_core::NoProgressBars;
//!
//! let dir = tempfile::tempdir()?;
//! let cfg = RepositoryConfig {
//!     url: Some(dir.path().join("repo").display().to_string()),
//!     ..RepositoryConfig::default()
//! };
//! let password = Secret::new("correct horse battery staple");
//! Repo::init(&cfg, &password, NoProgressBars)?;
//!
//! let repo = Repo::open(&cfg, &password, NoProgressBars)?;
//! let backups = ops::list::list(&repo, &ops::list::ListFilter::default())?;
//! assert!(backups.is_empty());
//! let stats = ops::list::stats(&repo)?;
//! assert!(stats.sources.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Backing up needs a PostgreSQL server; see [`ops::backup::backup`] and the README.
//!
//! # Embedding
//!
//! - **Dependencies.** lifeboat-core is built on patched copies of `rustic_core` and
//!   `rustic_backend` (the repository's `vendor/`, each with a `LIFEBOAT.md` saying what
//!   changed). A crate depending on lifeboat-core needs the same `[patch.crates-io]`
//!   entries as lifeboat's workspace `Cargo.toml`, pointing at those directories; use
//!   [`rustic_core`] through this crate's re-export, which is that exact version.
//! - **Configuration.** [`config::Config::load`] and [`config::Config::parse`] validate
//!   what they read; a configuration built in code is validated by
//!   [`config::Config::check`]. A restore onto another server takes
//!   [`config::SourceConfig::on_server`], which leaves the source's password behind.
//!   Open the repository with `Repo::open(&config.repository, …)?.with_audit(config.audit.clone())`:
//!   without [`repository::Repo::with_audit`] no head reaches the `[audit]` head file or
//!   URL, the tamper evidence kept outside the repository.
//! - **Blocking calls.** Every operation blocks its thread until it is done (processes,
//!   files, and on S3 a runtime of the backend's own). From async code, call them through
//!   `tokio::task::spawn_blocking` or a thread of your own, never directly in a task: the
//!   S3 backend cannot block on its runtime from inside another one.
//! - **Results beside evidence.** A backup or verify whose audit head could not be
//!   published still returns its report, with the failure in `evidence_gap`
//!   ([`repository::audit::EvidenceGap`]); a drill's report says it in `evidence_error`.
//!   The work is done: retrying it would back up twice.
//! - **Interrupts.** The library installs no signal handlers and never exits the process.
//!   On SIGINT/SIGTERM the CLI calls [`sources::postgres::cluster::stop_all`] (stops the
//!   servers and clients lifeboat started and drops databases a restore or drill created
//!   midway) and then exits. A program that cancels an operation this way gets it back
//!   as an error of kind [`ErrorKind::Interrupted`] (a drill stopped so is no failed drill
//!   in the evidence or the audit log; a backup, verify or restore is logged as failed)
//!   and calls [`sources::postgres::cluster::resume_after_stop`] before the next one: until
//!   then no client program starts. The stop is process-wide: it stops every operation
//!   under way in the process, so a program that must cancel one of several runs each in
//!   a process of its own (the CLI, for instance).
//!   Cleanup notices (a throw-away server left by a killed run and removed now) are
//!   collected by [`sources::postgres::cluster::take_notes`].
//! - **Running as root.** On a local repository that belongs to another user (the
//!   PostgreSQL user, whose `archive_command` writes into it), call
//!   [`repository::owner::hand_over`] after an operation that wrote to it, as the CLI
//!   does, or that user's next WAL push may find root-owned files.
//! - **Failures before the log can hold them.** An operation that cannot open the
//!   repository (a wrong password, S3 down) has no log to write to, and a process killed
//!   outright (SIGKILL, the OOM killer) writes nothing. The CLI records both: it parks
//!   the first with [`repository::parked::park`], and holds a
//!   [`repository::parked::Pending`] mark while an operation runs, which the next run
//!   turns into a "killed outright" entry. A program that wants those in its evidence
//!   does the same.
//! - **Settings read from the environment.** Where runs keep their locks and parked
//!   entries: `LIFEBOAT_STATE_DIR` (default `/var/lib/lifeboat` as root, else under the
//!   user's state directory); as root, the OS user that runs throw-away servers:
//!   `LIFEBOAT_PG_USER` (default `postgres`). Set them before the program starts threads.
//! - **Build.** Debug builds of the repository code are slow (opening a repository
//!   takes seconds): lifeboat's workspace builds its dependencies with
//!   `[profile.dev.package."*"] opt-level = 2`; a program embedding it wants the same.
//! - **Physical restores and drills** replay WAL through PostgreSQL's `restore_command`,
//!   which must run `lifeboat wal-fetch`: the `lifeboat` binary has to be installed for
//!   them ([`ops::recover::RecoverOptions::restore_command`]).

pub mod config;
pub mod demo;
pub mod error;
pub mod files;
pub mod ops;
pub mod repository;
pub mod secret;
pub mod sources;
pub mod status;
pub mod wal;

pub use error::{Error, ErrorKind, Result};

/// This user's home directory: `HOME`, else the user database's entry (cron, systemd
/// units and `env -i` leave `HOME` unset; libpq looks there too), when it exists.
#[must_use]
pub fn home_dir() -> Option<std::path::PathBuf> {
    home_dir_from(std::env::var_os("HOME"))
}

fn home_dir_from(home: Option<std::ffi::OsString>) -> Option<std::path::PathBuf> {
    home.filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
                .filter(|d| d.is_dir() && d != std::path::Path::new("/"))
        })
}

/// This lifeboat's version and the commit it was built from (`0.1.0 (a85ac2d3f1
/// 2026-12-06)`; the version alone when built without git).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), env!("LIFEBOAT_BUILD"));
/// The repository library, at the exact (patched) version lifeboat-core is built with:
/// `Repo::init` and `Repo::open` take its progress bars (`rustic_core::NoProgressBars`).
pub use rustic_core;
pub use sources::postgres::logical::BackupKind;

#[cfg(test)]
mod tests {
    #[test]
    fn without_home_the_user_database_gives_it() {
        // the user database read by another program: a uid without an entry (a
        // container's arbitrary uid) or whose home is missing or `/` has no home to find
        let uid = nix::unistd::geteuid().to_string();
        let entry = std::process::Command::new("getent")
            .args(["passwd", &uid])
            .output()
            .expect("getent runs");
        let mine = String::from_utf8_lossy(&entry.stdout)
            .trim_end()
            .split(':')
            .nth(5)
            .map(std::path::PathBuf::from)
            .filter(|d| d.is_dir() && d != std::path::Path::new("/"));
        assert_eq!(super::home_dir_from(None), mine);
        if uid == "0" && std::path::Path::new("/root").is_dir() {
            assert_eq!(super::home_dir_from(None), Some("/root".into()));
        }
        assert_eq!(
            super::home_dir_from(Some("/srv/x".into())),
            Some("/srv/x".into())
        );
        assert_eq!(
            super::home_dir_from(Some("".into())),
            super::home_dir_from(None)
        );
    }
}
