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
//! use rustic_core::NoProgressBars;
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

pub mod config;
pub mod demo;
pub mod error;
pub mod ops;
pub mod repository;
pub mod secret;
pub mod sources;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
