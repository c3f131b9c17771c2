//! What lifeboat records with each snapshot, and how it reads it back without touching
//! data packs: tags for restic users, a JSON description for lifeboat.

use jiff::Timestamp;
use rustic_core::repofile::SnapshotFile;
use serde::{Deserialize, Serialize};

use super::{LABEL, PENDING_TAG};
use crate::sources::postgres::{logical::BackupKind, physical::PhysicalMeta, truth::Truth};

/// Format version of [`BackupMeta`].
pub const META_VERSION: u32 = 1;

/// Metadata of one lifeboat backup, stored as the snapshot description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMeta {
    /// [`META_VERSION`].
    pub lifeboat: u32,
    /// Configured source name.
    pub source: String,
    /// Kind of backup.
    pub kind: BackupKind,
    /// Database dumped (`None` for globals).
    pub database: Option<String>,
    /// Server version (`SHOW server_version_num`).
    pub server_version_num: u32,
    /// pg_dump version used.
    pub client_version: u32,
    /// Path of the stream inside the snapshot.
    pub path: String,
    /// When the dump started.
    pub started_at: Timestamp,
    /// When the snapshot was complete.
    pub finished_at: Timestamp,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Bytes of the dump stream.
    pub logical_bytes: u64,
    /// New bytes added to the repository after dedup, before compression.
    pub new_bytes: u64,
    /// New bytes stored (after dedup and compression).
    pub stored_bytes: u64,
    /// xxh3-128 of the dump stream, checked on restore.
    pub stream_hash: String,
    /// Backup-time truth (rows and hashes), for logical and schema dumps.
    pub truth: Option<Truth>,
    /// Groups backups taken together (a recovery point).
    pub recovery_point: Option<String>,
    /// LSNs, timeline and cluster identity of a physical backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalMeta>,
    /// The lifeboat that took it ([`crate::VERSION`]; absent in backups taken before
    /// lifeboat recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    /// A dump taken on a standby that was behind its primary: the commit time of the last
    /// transaction it had replayed, so the newest data the dump can hold. Absent when
    /// the server was a primary or a standby that had replayed all its primary sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_as_of: Option<Timestamp>,
}

impl BackupMeta {
    /// When the data this backup holds was current: its start (a dump's snapshot is taken
    /// as it starts, and what is written while it runs is not in it), or earlier for a
    /// dump of a standby that lagged.
    #[must_use]
    pub fn data_point(&self) -> Timestamp {
        self.data_as_of
            .map_or(self.started_at, |d| d.min(self.started_at))
    }

    /// Tags written on the snapshot: readable by `restic snapshots --tag`.
    #[must_use]
    pub fn tags(&self) -> rustic_core::StringList {
        let mut tags = vec![
            LABEL.to_string(),
            format!("source={}", self.source),
            format!("kind={}", self.kind),
        ];
        if let Some(db) = &self.database {
            tags.push(format!("db={db}"));
        }
        let mut list = rustic_core::StringList::default();
        for t in tags {
            list.add(t);
        }
        list
    }

    /// logical / stored, the saving from dedup and compression for this backup.
    #[must_use]
    pub fn dedup_ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            f64::INFINITY
        } else {
            self.logical_bytes as f64 / self.stored_bytes as f64
        }
    }
}

/// A complete lifeboat backup as listed.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// Snapshot id (64 hex digits).
    pub id: String,
    /// Host that took it.
    pub hostname: String,
    /// Metadata.
    #[serde(flatten)]
    pub meta: BackupMeta,
}

impl SnapshotInfo {
    /// Reads a snapshot; `None` if it is not a complete lifeboat backup.
    #[must_use]
    pub fn from_snapshot(snap: SnapshotFile) -> Option<Self> {
        if snap.label != LABEL || snap.tags.contains(PENDING_TAG) {
            return None;
        }
        let meta: BackupMeta = serde_json::from_str(snap.description.as_deref()?).ok()?;
        Some(Self {
            id: snap.id.to_hex().as_str().to_string(),
            hostname: snap.hostname,
            meta,
        })
    }

    /// First 8 hex digits of the id.
    #[must_use]
    pub fn short_id(&self) -> &str {
        &self.id[..8.min(self.id.len())]
    }
}
