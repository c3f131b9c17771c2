//! `list` and `stats`: what the repository holds, read from snapshot files only (no data
//! pack is downloaded).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
    repository::{Repo, SnapshotInfo},
    sources::postgres::logical::BackupKind,
};

/// Which backups to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFilter {
    /// Only this source.
    pub source: Option<String>,
    /// Only this kind.
    pub kind: Option<BackupKind>,
    /// Only this database.
    pub database: Option<String>,
    /// Finished at or after.
    pub since: Option<Timestamp>,
    /// Finished at or before.
    pub until: Option<Timestamp>,
}

impl ListFilter {
    /// Whether `b` passes the filter.
    #[must_use]
    pub fn matches(&self, b: &SnapshotInfo) -> bool {
        let m = &b.meta;
        self.source.as_ref().is_none_or(|s| &m.source == s)
            && self.kind.is_none_or(|k| m.kind == k)
            && self
                .database
                .as_ref()
                .is_none_or(|d| m.database.as_ref() == Some(d))
            && self.since.is_none_or(|t| m.finished_at >= t)
            && self.until.is_none_or(|t| m.finished_at <= t)
    }
}

/// The databases `backups` hold dumps of, sorted, each once.
#[must_use]
pub fn databases_in(backups: &[SnapshotInfo]) -> Vec<&str> {
    let mut dbs: Vec<&str> = backups
        .iter()
        .filter_map(|b| b.meta.database.as_deref())
        .collect();
    dbs.sort_unstable();
    dbs.dedup();
    dbs
}

/// Complete backups matching `filter`, oldest first.
///
/// # Errors
///
/// When snapshot files cannot be read.
pub fn list(repo: &Repo, filter: &ListFilter) -> Result<Vec<SnapshotInfo>> {
    Ok(repo
        .backups()?
        .into_iter()
        .filter(|b| filter.matches(b))
        .collect())
}

/// Figures for one source, kind and database.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KindStats {
    /// Kind.
    pub kind: BackupKind,
    /// Database (none for globals and physical backups).
    pub database: Option<String>,
    /// Number of backups.
    pub count: usize,
    /// Newest backup's finish time.
    pub last_success: Option<Timestamp>,
    /// Newest backup's id.
    pub last_id: Option<String>,
    /// Sum of dump sizes.
    pub logical_bytes: u64,
    /// Sum of bytes each backup added to the repository.
    pub stored_bytes: u64,
    /// Newest dump size.
    pub last_logical_bytes: u64,
    /// Change of the newest dump size against the one before of the same database, in percent.
    pub growth_percent: Option<f64>,
    /// Newest backup's duration.
    pub last_duration_secs: f64,
}

/// Figures for one source.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SourceStats {
    /// Source name.
    pub source: String,
    /// Per kind and database.
    pub kinds: Vec<KindStats>,
    /// Files in its WAL archive (segments, history and backup files).
    pub wal_files: usize,
    /// Bytes its WAL archive takes in the repository.
    pub wal_stored_bytes: u64,
}

/// Statistics of the whole repository.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Repository location.
    pub repository: String,
    /// Per source.
    pub sources: Vec<SourceStats>,
    /// Snapshots left by interrupted backups (ignored, removed by prune).
    pub pending: usize,
    /// Sum over all backups of the dump sizes.
    pub total_logical_bytes: u64,
    /// Sum over all backups of the bytes they added.
    pub total_stored_bytes: u64,
    /// Bytes the WAL archives take (not part of any backup's figures).
    pub total_wal_stored_bytes: u64,
    /// Per source, its newest failed backup that no backup of the kinds it failed has
    /// followed (read from the audit log): a source whose last run failed looks fresh by
    /// its last success alone until that success is old.
    pub failed_last: Vec<FailedAttempt>,
    /// Why the audit log could not be read for `failed_last`, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_error: Option<String>,
    /// The audit log's chain breaks after this many entries (one damaged, removed or
    /// edited; `audit verify` says which): `None` when it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_broken_after: Option<usize>,
}

/// A backup run that failed, as the audit log recorded it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FailedAttempt {
    /// Source name.
    pub source: String,
    /// When it failed.
    pub at: Timestamp,
    /// The audit entry's details (what failed and why; no secrets).
    pub details: String,
}

/// The source a backup audit entry names (`source NAME (kinds): ...`, `source NAME
/// recovery point ...`): source names have no spaces or colons.
fn backup_entry_source(details: &str) -> Option<&str> {
    let rest = details.strip_prefix("source ")?;
    let end = rest.find([' ', ':']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// The kinds a failed backup entry names as failed: its `(logical, schema)` list, or the
/// failures of a partly failed run (`N of M backups failed: logical app: …, schema app:
/// …; stored: …`). Empty when it names none.
fn kinds_of_failure(details: &str) -> Vec<BackupKind> {
    let kind = |w: &str| {
        [
            BackupKind::Logical,
            BackupKind::Schema,
            BackupKind::Globals,
            BackupKind::Physical,
        ]
        .into_iter()
        .find(|k| k.as_str() == w)
    };
    let Some(rest) = details.strip_prefix("source ") else {
        return Vec::new();
    };
    let rest = rest.split_once([' ', ':']).map_or("", |(_, r)| r);
    if let Some((list, _)) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
        return list.split(", ").filter_map(kind).collect();
    }
    let Some((_, failures)) = rest.split_once(" backups failed: ") else {
        return Vec::new();
    };
    let failures = failures.split("; stored: ").next().unwrap_or_default();
    let mut out: Vec<BackupKind> = failures
        .split(", ")
        .filter_map(|item| kind(item.split(' ').next().unwrap_or_default()))
        .collect();
    out.sort_by_key(|k| k.as_str());
    out.dedup();
    out
}

/// Per source, its newest failed backup entry that no backup of the kinds it names has
/// followed (any backup of the source, when it names none): a failed weekly base backup
/// stays failed however many nightly dumps succeed after it.
fn failed_last(
    entries: &[crate::repository::audit::Entry],
    all: &[SnapshotInfo],
) -> Vec<FailedAttempt> {
    let mut newest: BTreeMap<&str, &crate::repository::audit::Entry> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.action == "backup" && e.outcome != "ok")
    {
        let Some(source) = backup_entry_source(e.own_details()) else {
            continue;
        };
        let kinds = kinds_of_failure(e.own_details());
        let followed = |k: Option<BackupKind>| {
            all.iter().any(|b| {
                b.meta.source == source
                    && k.is_none_or(|k| b.meta.kind == k)
                    && b.meta.finished_at > e.happened_at()
            })
        };
        let resolved = if kinds.is_empty() {
            followed(None)
        } else {
            kinds.iter().all(|k| followed(Some(*k)))
        };
        // a parked entry is appended late: its own time places it
        if !resolved
            && newest
                .get(source)
                .is_none_or(|n| e.happened_at() >= n.happened_at())
        {
            newest.insert(source, e);
        }
    }
    newest
        .into_iter()
        .map(|(source, e)| FailedAttempt {
            source: source.to_string(),
            at: e.happened_at(),
            details: e.own_details().to_string(),
        })
        .collect()
}

/// The entries parked on this host for `repo`, as the log will hold them once added.
fn parked_as_entries(repo: &Repo) -> Vec<crate::repository::audit::Entry> {
    crate::repository::parked::for_repository(repo.location())
        .unwrap_or_default()
        .into_iter()
        .map(|(_, p)| crate::repository::audit::Entry {
            seq: 0,
            time: jiff::Timestamp::now(),
            outcome: if p.ok { "ok" } else { "failed" }.into(),
            details: p.late_details(),
            action: p.action,
            user: Some(p.user),
            host: Some(p.host),
            prev: String::new(),
            hash: String::new(),
            extra: std::collections::BTreeMap::new(),
        })
        .collect()
}

/// Per-source statistics, per kind and database.
///
/// # Errors
///
/// When snapshot files cannot be read.
pub fn stats(repo: &Repo) -> Result<Stats> {
    let all = repo.backups()?;
    // one group per database: growth and last size compare a database with itself only
    type Key = (String, BackupKind, Option<String>);
    let mut groups: BTreeMap<Key, Vec<&SnapshotInfo>> = BTreeMap::new();
    for b in &all {
        groups
            .entry((b.meta.source.clone(), b.meta.kind, b.meta.database.clone()))
            .or_default()
            .push(b);
    }
    let mut sources: BTreeMap<String, Vec<KindStats>> = BTreeMap::new();
    for ((source, kind, database), list) in groups {
        let last = list.last().copied();
        let prev = list.len().checked_sub(2).map(|i| list[i]);
        let growth_percent = match (last, prev) {
            (Some(l), Some(p)) if p.meta.logical_bytes > 0 => Some(
                (l.meta.logical_bytes as f64 - p.meta.logical_bytes as f64) * 100.0
                    / p.meta.logical_bytes as f64,
            ),
            _ => None,
        };
        sources.entry(source).or_default().push(KindStats {
            kind,
            database,
            count: list.len(),
            last_success: last.map(|l| l.meta.finished_at),
            last_id: last.map(|l| l.id.clone()),
            logical_bytes: list.iter().map(|b| b.meta.logical_bytes).sum(),
            stored_bytes: list.iter().map(|b| b.meta.stored_bytes).sum(),
            last_logical_bytes: last.map_or(0, |l| l.meta.logical_bytes),
            growth_percent,
            last_duration_secs: last.map_or(0.0, |l| l.meta.duration_secs),
        });
    }
    let sources: Vec<SourceStats> = sources
        .into_iter()
        .map(|(source, kinds)| {
            // a source without physical backups has no archive: an empty listing
            let wal = crate::wal::WalStore::new(repo, &source)
                .and_then(|w| w.list())
                .unwrap_or_default();
            SourceStats {
                wal_files: wal.len(),
                wal_stored_bytes: wal.iter().map(|w| w.stored_bytes).sum(),
                source,
                kinds,
            }
        })
        .collect();
    // a log that cannot be read is `audit verify`'s to report, not a reason for no stats
    let (failed_last, audit_error, audit_broken_after) =
        match crate::repository::audit::entries(repo) {
            Ok(entries) => {
                let broken = crate::repository::audit::chain_breaks_after(&entries);
                // entries parked on this host are runs that failed when the repository
                // could not take their entry (its disk full, the store down): the newest
                // failures of all, at the moment the log cannot show them
                let mut entries = entries;
                entries.extend(parked_as_entries(repo));
                (failed_last(&entries, &all), None, broken)
            }
            Err(e) => (Vec::new(), Some(crate::error::one_line(&e)), None),
        };
    Ok(Stats {
        failed_last,
        audit_error,
        audit_broken_after,
        repository: repo.location().to_string(),
        pending: repo.pending()?.len(),
        total_logical_bytes: all.iter().map(|b| b.meta.logical_bytes).sum(),
        total_stored_bytes: all.iter().map(|b| b.meta.stored_bytes).sum(),
        total_wal_stored_bytes: sources.iter().map(|s| s.wal_stored_bytes).sum(),
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_entry_names_the_kinds_that_failed() {
        use BackupKind::{Globals, Logical, Physical, Schema};
        for (details, kinds) in [
            (
                "source app (logical, schema, globals): connection refused",
                vec![Logical, Schema, Globals],
            ),
            ("source app (physical): a physical backup failed", vec![Physical]),
            (
                "source app recovery point P: 2 of 3 backups failed: schema a: x, y, logical b: z; stored: 1 globals - (5 bytes)",
                vec![Logical, Schema],
            ),
            ("source app: interrupted", vec![]),
        ] {
            assert_eq!(kinds_of_failure(details), kinds, "{details}");
        }
    }

    #[test]
    fn backup_entries_name_their_source() {
        for (details, source) in [
            (
                "source app-db (logical): connection refused",
                Some("app-db"),
            ),
            (
                "source app.db recovery point 20261207T010203Z: a b",
                Some("app.db"),
            ),
            (
                "source crm: 1 of 3 backups failed: x; stored: none",
                Some("crm"),
            ),
            (
                "all 3 sources (logical): the repository could not be opened",
                None,
            ),
            ("source : nothing", None),
        ] {
            assert_eq!(backup_entry_source(details), source, "{details}");
        }
    }
}
