//! `verify`: is every blob a backup needs present (structure), and does it decrypt and hash
//! correctly (`read_data`)? The report names each damaged backup.
//!
//! rustic_core's check finds damaged packs; lifeboat maps them back to the backups whose
//! data lives in them, through the index.

use std::collections::{BTreeSet, HashSet};

use rustic_core::{CheckOptions, ReadSubsetOption};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    repository::{Repo, SnapshotInfo},
};

/// What to verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyOptions {
    /// Backups to verify (id prefixes); empty = all.
    pub ids: Vec<String>,
    /// Read and check every pack's content.
    pub read_data: bool,
    /// Read only a subset: `"10%"`, `"1/5"`, `"500MiB"` (implies read_data).
    pub read_data_subset: Option<String>,
}

/// One backup's verdict.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupVerdict {
    /// Snapshot id.
    pub id: String,
    /// Source.
    pub source: String,
    /// Kind.
    pub kind: crate::sources::postgres::logical::BackupKind,
    /// Database.
    pub database: Option<String>,
    /// Good or not.
    pub ok: bool,
    /// What is wrong.
    pub problems: Vec<String>,
}

/// The verify report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// Whether pack contents were read.
    pub read_data: bool,
    /// When only a subset of the packs was read (`--read-data-subset`): which. A backup
    /// whose packs were not in it was checked for structure only.
    pub read_data_subset: Option<String>,
    /// Per backup.
    pub backups: Vec<BackupVerdict>,
    /// Repository-level damage not tied to a backup (a damaged pack holding only trees, a
    /// snapshot file that cannot be read, what the check found elsewhere).
    pub repository_problems: Vec<String>,
    /// With every backup verified: what the audit log (or the head file kept outside the
    /// repository) records that the repository no longer holds — backups gone, a log that
    /// went back. No repair brings these back.
    pub history_problems: Vec<String>,
    /// With every backup verified: backups no audit entry records (see
    /// [`crate::repository::audit::unlogged_backups`]); not damage, and not in [`Self::ok`].
    pub unlogged_backups: Vec<String>,
    /// The verify is done, but its audit entry or head did not get where it belongs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_gap: Option<crate::repository::audit::EvidenceGap>,
}

impl VerifyReport {
    /// No problem anywhere.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.backups.iter().all(|b| b.ok)
            && self.repository_problems.is_empty()
            && self.history_problems.is_empty()
    }

    /// Backups with problems.
    #[must_use]
    pub fn damaged(&self) -> Vec<&BackupVerdict> {
        self.backups.iter().filter(|b| !b.ok).collect()
    }
}

/// Verifies backups.
///
/// # Example
///
/// ```
/// use lifeboat_core::{
///     config::RepositoryConfig,
///     ops::verify::{verify, VerifyOptions},
///     repository::Repo,
///     secret::Secret,
/// };
/// use lifeboat_core::rustic_core::NoProgressBars;
///
/// let dir = tempfile::tempdir()?;
/// let cfg = RepositoryConfig {
///     url: Some(dir.path().join("repo").display().to_string()),
///     ..RepositoryConfig::default()
/// };
/// let password = Secret::new("correct horse battery staple");
/// Repo::init(&cfg, &password, NoProgressBars)?;
/// let repo = Repo::open(&cfg, &password, NoProgressBars)?;
/// let report = verify(&repo, &VerifyOptions { read_data: true, ..VerifyOptions::default() })?;
/// assert!(report.ok() && report.backups.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// When the repository cannot be read at all, or an id is unknown. Damage is not an error
/// here: it is in the report (see [`VerifyReport::ok`]).
pub fn verify(repo: &Repo, opts: &VerifyOptions) -> Result<VerifyReport> {
    // an id that names no backup, or a subset that means nothing, attempted nothing: a
    // usage mistake, not a verification for the audit log
    let backups: Vec<SnapshotInfo> = opts
        .ids
        .iter()
        .map(|id| repo.backup(id))
        .collect::<Result<_>>()?;
    let check = check_options(opts)?;
    let result = verify_inner(repo, opts, backups, check);
    let details = match &result {
        Ok(r) => format!(
            "{} backup(s) ({}){}: {}",
            r.backups.len(),
            // which: a later pack tells a backup found damaged and then read intact
            if opts.ids.is_empty() {
                crate::repository::audit::VERIFIED_EVERY.to_string()
            } else {
                r.backups
                    .iter()
                    .map(|b| b.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            match (&r.read_data_subset, r.read_data) {
                (Some(s), _) => format!(", data read for a subset of the packs ({s})"),
                (None, true) => ", data read".to_string(),
                (None, false) => String::new(),
            },
            if r.ok() {
                "all intact".to_string()
            } else if r.damaged().is_empty() {
                r.repository_problems
                    .iter()
                    .chain(&r.history_problems)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            } else {
                format!(
                    "damaged {}",
                    r.damaged()
                        .iter()
                        .map(|b| b.id.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        Err(e) => e.to_string(),
    };
    let ok = result.as_ref().is_ok_and(VerifyReport::ok);
    let (mut report, gap) =
        crate::repository::audit::record_outcome_kept(repo, "verify", result, ok, &details)
            .map_err(Error::or_interrupted)?;
    report.evidence_gap = gap;
    Ok(report)
}

/// What rustic_core's check reads, from `opts`.
fn check_options(opts: &VerifyOptions) -> Result<CheckOptions> {
    let mut check = CheckOptions::default();
    check.read_data = opts.read_data || opts.read_data_subset.is_some();
    if let Some(subset) = &opts.read_data_subset {
        let refused = |why: &str| {
            Error::config(format!("--read-data-subset {subset:?} {why}")).hint(
                "use a percentage above 0 and at most 100 (10%), n/m with 1 <= n <= m (1/5: the first of five runs that together read every pack), or a size (500MiB)",
            )
        };
        // as restic takes n/m: rustic takes n modulo m, and divides by a zero m
        if let Some((n, m)) = subset.split_once('/') {
            let (n, m) = (n.trim().parse::<u32>(), m.trim().parse::<u32>());
            if m == Ok(0) || matches!((n, m), (Ok(n), Ok(m)) if n == 0 || n > m) {
                return Err(refused(
                    "names no part of the packs (n/m needs 1 <= n <= m)",
                ));
            }
        }
        // rustic's own message is a page long
        let parsed = subset
            .parse::<ReadSubsetOption>()
            .map_err(|_| refused("is not a subset"))?;
        match parsed {
            ReadSubsetOption::Percentage(p) if !(p > 0.0 && p <= 100.0) => {
                return Err(refused("is no percentage of the packs to read"))
            }
            ReadSubsetOption::Size(0) => return Err(refused("reads nothing")),
            _ => {}
        }
        check.read_data_subset = parsed;
    }
    Ok(check)
}

/// Verifies `backups` (every backup when empty).
fn verify_inner(
    repo: &Repo,
    opts: &VerifyOptions,
    backups: Vec<SnapshotInfo>,
    check: CheckOptions,
) -> Result<VerifyReport> {
    let every = backups.is_empty();
    // every backup: also those the log records that are no longer there ("0 backup(s)
    // checked: all intact" after someone deleted them all). The log first: a backup
    // saves its snapshot before its entry, so one finishing meanwhile is in the listing
    // (the head file before the log, as `audit verify` reads them: a backup finishing
    // meanwhile appends to both)
    let kept = if every {
        Some(crate::repository::audit::head_file_text(repo))
    } else {
        None
    };
    let entries = if every {
        Some(crate::repository::audit::entries(repo)?)
    } else {
        None
    };
    let backups = if every { repo.backups()? } else { backups };
    let (gone, unlogged) = if let Some(entries) = entries {
        // and a log that went back (rolled back to an older copy, replaced): the backups of
        // the lost entries would be named nowhere else
        // a head file that cannot be read or holds no head is a finding, not a reason
        // to check no data
        let mut problems = match kept.expect("read with the entries") {
            Ok(text) => {
                crate::repository::audit::head_file_problems(repo, text.as_deref(), &entries)
                    .unwrap_or_else(|e| vec![e.to_string()])
            }
            Err(e) => vec![e.to_string()],
        };
        // the chain's own breaks (entries edited, removed, reordered): the backups of
        // removed entries are named nowhere else
        problems.extend(
            crate::repository::audit::verify_entries(&entries, None)
                .problems
                .into_iter()
                .map(|p| format!("audit log: {p}")),
        );
        // a log rewritten with its hashes computed again verifies as a chain, but not
        // against the heads the drill reports name (as `audit verify` checks)
        problems.extend(
            crate::repository::audit::drill_head_problems(repo, &entries)
                .into_iter()
                .map(|p| format!("audit log: {p}")),
        );
        let unreadable = repo.unreadable_snapshots();
        problems.extend(crate::repository::audit::gone_backups(
            &entries,
            backups
                .iter()
                .map(|b| b.id.as_str())
                .chain(unreadable.iter().map(|(id, _)| id.as_str())),
        ));
        let unlogged = crate::repository::audit::unlogged_backups(repo, &entries, &backups)?;
        (problems, unlogged)
    } else {
        (Vec::new(), Vec::new())
    };
    let read_data = check.read_data;
    // every backup: every pack too, also those no backup uses now (a forgotten backup's):
    // the next backup reuses their blobs, and would be the first to find them damaged
    let check = check.read_unused_packs(every && read_data);
    let mut report =
        repo.with_indexed(|indexed| verify_indexed(indexed, backups, check, read_data))?;
    report.read_data_subset = opts.read_data_subset.clone();
    report.history_problems = gone;
    report.unlogged_backups = unlogged;
    report
        .repository_problems
        .extend(repo.unreadable_snapshots().into_iter().map(|(id, why)| {
            format!("snapshot file {id} cannot be read (damaged, or not written with this repository's key): {why}")
        }));
    Ok(report)
}

fn verify_indexed(
    indexed: &rustic_core::Repository<rustic_core::IndexedFullStatus>,
    backups: Vec<SnapshotInfo>,
    check: CheckOptions,
    read_data: bool,
) -> Result<VerifyReport> {
    let snaps =
        indexed.get_snapshots(&backups.iter().map(|b| b.id.as_str()).collect::<Vec<_>>())?;
    let trees = snaps.iter().map(|s| s.tree).collect();
    let results = indexed.check_with_trees(check, trees)?;
    let mut bad_packs: HashSet<String> = HashSet::new();
    let mut repository_problems = Vec::new();
    for (level, err) in &results.0 {
        if format!("{level:?}") != "Error" {
            continue;
        }
        let text = err.to_string();
        match pack_of(&text) {
            Some(p) => {
                bad_packs.insert(p);
            }
            // rustic's text carries a backtrace and a bug-report invitation: the first line
            // says what is wrong
            None => repository_problems.push(crate::error::headline(&text).to_string()),
        }
    }
    let mut verdicts = Vec::new();
    for (b, snap) in backups.iter().zip(&snaps) {
        let mut problems = BTreeSet::new();
        match indexed.node_from_snapshot_and_path(snap, &b.meta.path) {
            Err(e) => {
                let text = e.to_string();
                problems.insert(format!(
                    "the dump file is missing from the snapshot: {}",
                    crate::error::headline(&text)
                ));
            }
            Ok(node) => {
                let mut missing = Vec::new();
                for blob in node.content.iter().flatten() {
                    match indexed.get_index_entry(blob) {
                        Err(_) => missing.push(blob.to_string()),
                        Ok(ie) => {
                            // check errors name packs by the short (8 hex digit) id
                            let pack = ie.pack.to_string();
                            if bad_packs.contains(&pack) {
                                problems.insert(format!("pack {pack} is damaged"));
                            }
                        }
                    }
                }
                // one line, not one per blob: a lost index file leaves hundreds
                match missing.len() {
                    0 => {}
                    1 => {
                        problems.insert(format!("data blob {} is missing", missing[0]));
                    }
                    n => {
                        problems.insert(format!(
                            "{n} data blobs are missing from the repository's index (e.g. {}): a pack or an index file is gone",
                            missing[0]
                        ));
                    }
                }
            }
        }
        verdicts.push(BackupVerdict {
            id: b.id.clone(),
            source: b.meta.source.clone(),
            kind: b.meta.kind,
            database: b.meta.database.clone(),
            ok: problems.is_empty(),
            problems: problems.into_iter().collect(),
        });
    }
    // a damaged pack no backup's dump uses (tree blobs, a forgotten backup's data, which
    // the next backup would reuse) is still a damage: named on its own
    let mut unnamed: Vec<&String> = bad_packs
        .iter()
        .filter(|p| {
            let named = format!("pack {p} is damaged");
            !verdicts.iter().any(|v| v.problems.contains(&named))
        })
        .collect();
    unnamed.sort();
    repository_problems.extend(unnamed.into_iter().map(|p| {
        format!(
            "pack {} is damaged; no dump checked reads from it (it holds backups' directory data, or data of a backup no longer listed, which a later backup would reuse): see the README, \"A lost pack file\" (data/{}/{}…)",
            &p[..8.min(p.len())],
            &p[..2.min(p.len())],
            &p[..8.min(p.len())]
        )
    }));
    Ok(VerifyReport {
        read_data,
        read_data_subset: None,
        backups: verdicts,
        repository_problems,
        history_problems: Vec::new(),
        unlogged_backups: Vec::new(),
        evidence_gap: None,
    })
}

/// The short pack id named in a check error message ("error reading pack 1a2b3c4d : ...").
fn pack_of(text: &str) -> Option<String> {
    let after = text.split_once("pack ")?.1;
    let word: String = after.chars().take_while(char::is_ascii_hexdigit).collect();
    (word.len() == 8).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::{check_options, VerifyOptions};

    #[test]
    fn a_subset_that_reads_nothing_or_divides_by_zero_is_refused() {
        let with = |s: &str| {
            check_options(&VerifyOptions {
                read_data_subset: Some(s.into()),
                ..VerifyOptions::default()
            })
        };
        for bad in ["1/0", "0/5", "6/5", "0%", "150%", "-5%", "abc", "0"] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad}");
            assert!(
                !e.to_string().contains("Backtrace") && e.to_string().contains(bad),
                "{bad}: {e}"
            );
        }
        for good in ["10%", "100%", "1/5", "5/5", "500MiB"] {
            assert!(with(good).is_ok_and(|c| c.read_data), "{good}");
        }
    }
}
