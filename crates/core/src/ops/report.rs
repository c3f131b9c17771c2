//! `report --from --to`: the evidence pack for an audit period. Backups taken and failed,
//! verifications, restores, drills with their achieved RTO/RPO, the WAL archive, encryption,
//! the retention and offsite copies configured (saying that lifeboat applies neither yet:
//! an auditor reads the pack as what is in place), and the audit log's own check — each
//! section mapped to the SOC 2 criteria it supports (CC9.1 business-disruption risk
//! mitigation, A1.2 backup and recovery infrastructure, A1.3 recovery-plan testing). Built
//! from the repository alone.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    config::Config,
    error::Result,
    ops::{
        copies::{self, CopyDestination},
        evidence::{drills, DrillSummary},
    },
    repository::{audit, Repo, SnapshotInfo},
    sources::postgres::logical::BackupKind,
    wal::{self, ChainStart, WalStore},
};

/// Backups of one source, kind and database in the period.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupLine {
    /// Source.
    pub source: String,
    /// Kind.
    pub kind: BackupKind,
    /// The database, for the kinds that back up one (a source may have several: each is
    /// its own line, so that one backed up every hour cannot hide another never backed up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Backups completed: those the repository holds, and those the audit log records as
    /// stored that it no longer holds (`no_longer_held`).
    pub count: usize,
    /// Of `count`, backups the audit log records as completed in the period that the
    /// repository no longer holds (deleted since: their bytes are not in the sums).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub no_longer_held: usize,
    /// Of `no_longer_held`, those an entry records as deleted on purpose (`audit deleted`);
    /// the others are gone without one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deleted_on_purpose: usize,
    /// Newest in the period.
    pub newest: Option<Timestamp>,
    /// Bytes of the streams.
    pub logical_bytes: u64,
    /// Bytes added to the repository.
    pub stored_bytes: u64,
    /// The longest stretch of the period with no newer backup of this kind (from the
    /// newest one before it, between backups, and up to the period's end or now).
    pub longest_gap_secs: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The key of a [`BackupLine`]: source, kind, database.
type LineKey = (String, BackupKind, Option<String>);

/// An empty line for `key`.
fn line_of(key: &LineKey) -> BackupLine {
    BackupLine {
        source: key.0.clone(),
        kind: key.1,
        database: key.2.clone(),
        count: 0,
        no_longer_held: 0,
        deleted_on_purpose: 0,
        newest: None,
        logical_bytes: 0,
        stored_bytes: 0,
        longest_gap_secs: 0.0,
    }
}

/// Counts into `lines` the backups of `logged` (the log's backup entries) completed in
/// `[from, to]` that the repository no longer holds (`held` says which it does): deleted
/// since, they were still completed in the period. Returns, per line, when each such
/// backup up to `to` completed (for the stretches without a new backup).
fn count_no_longer_held(
    lines: &mut BTreeMap<LineKey, BackupLine>,
    logged: &[audit::LoggedBackup],
    held: impl Fn(&str) -> bool,
    from: Timestamp,
    to: Timestamp,
) -> BTreeMap<LineKey, Vec<Timestamp>> {
    let mut times: BTreeMap<LineKey, Vec<Timestamp>> = BTreeMap::new();
    for b in logged.iter().filter(|b| b.at <= to && !held(&b.id)) {
        let Ok(kind) = b.kind.parse::<BackupKind>() else {
            continue;
        };
        let key = (
            b.source.clone(),
            kind,
            (b.database != "-").then(|| b.database.clone()),
        );
        // a line only for a backup of the period: one deleted long ago (a dropped
        // database's, an erasure request) would otherwise show a 0 in every later pack
        if !within(b.at, from, to) {
            // gone without a record: its line stays, to say 0 (whoever deleted it did not
            // say so); deleted on purpose long ago (a dropped database's): no line
            if !b.deleted_on_purpose {
                lines.entry(key.clone()).or_insert_with(|| line_of(&key));
            }
        } else {
            let l = lines.entry(key.clone()).or_insert_with(|| line_of(&key));
            l.count += 1;
            l.no_longer_held += 1;
            l.deleted_on_purpose += usize::from(b.deleted_on_purpose);
            l.newest = l.newest.max(Some(b.at));
        }
        times.entry(key).or_default().push(b.at);
    }
    times
}

/// The WAL archive of a source as of the report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WalLine {
    /// Source.
    pub source: String,
    /// Segments archived (all timelines).
    pub segments: u64,
    /// Gaps (missing runs) anywhere in the archive.
    pub gaps: usize,
    /// Newest segment's archive time.
    pub newest_archived_at: Option<Timestamp>,
    /// First missing segment after the latest base backup, if any.
    pub blocked_by: Option<String>,
}

/// A source's configured retention, and whether anything applies it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RetentionLine {
    /// Source.
    pub source: String,
    /// Every key set in `retention`, with its count.
    pub configured: BTreeMap<String, u32>,
    /// As text, in the file's key order (`daily 30, monthly 12`).
    pub text: String,
    /// Whether backups are pruned by it: never yet, lifeboat has no prune.
    pub enforced: bool,
}

/// The retention lines of `config`: every configured key, none enforced.
fn retention_lines(config: &Config) -> Vec<RetentionLine> {
    config
        .sources
        .iter()
        .filter(|s| !s.retention.configured().is_empty())
        .map(|s| RetentionLine {
            source: s.name.clone(),
            configured: s
                .retention
                .configured()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            text: s.retention.describe(),
            enforced: false,
        })
        .collect()
}

/// The evidence pack.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvidencePack {
    /// The period as the one who asked for it typed it, when it was read in their
    /// machine's time zone (set by the CLI): the same dates are another period elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<String>,
    /// Period start.
    pub from: Timestamp,
    /// Period end.
    pub to: Timestamp,
    /// When the pack was built.
    pub generated_at: Timestamp,
    /// Repository location.
    pub repository: String,
    /// Backups per source and kind.
    pub backups: Vec<BackupLine>,
    /// Failed operations from the audit log, per action (`backup`, `verify`, ...).
    pub failures: BTreeMap<String, Vec<String>>,
    /// Backups of the period that no audit entry names (`id source kind database`): a run
    /// killed (`kill -9`, the OOM killer) after it stored them and before it could log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged_backups: Vec<String>,
    /// Entries of the period recording backups deleted on purpose (`audit deleted`),
    /// adopted without a backup entry (`audit adopt`), and operators' notes (`audit
    /// note`), each with when, who and why:
    /// anyone with the repository password can write one, so they are evidence to review.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recorded_by_hand: Vec<String>,
    /// Successful operations from the audit log, per action.
    pub successes: BTreeMap<String, usize>,
    /// Drills in the period.
    pub drills: Vec<DrillSummary>,
    /// Per source that backs up several databases, those with logical backups that no
    /// logical drill of the period restored: one database's drill proves nothing of
    /// another's restore.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub undrilled: BTreeMap<String, (Vec<String>, usize)>,
    /// Objectives per source (`rto`, `rpo`).
    pub objectives: BTreeMap<String, (Option<String>, Option<String>)>,
    /// Per source that sets one, the RPO objective of its logical dumps (`logical_rpo`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logical_rpo: BTreeMap<String, String>,
    /// WAL archives.
    pub wal: Vec<WalLine>,
    /// Configured retention per source that has one; lifeboat does not prune yet, so
    /// none is enforced.
    pub retention: Vec<RetentionLine>,
    /// Configured offsite copy destinations; lifeboat makes no copies yet.
    pub copies: Vec<CopyDestination>,
    /// Audit log: entries, head hash, problems found.
    pub audit: audit::AuditVerdict,
    /// The file outside the repository whose newest head the log was compared with
    /// (`[audit] head_file`); `None` when none was compared (none configured, or nothing
    /// readable in it): then cutting off the newest entries cannot be told from this pack
    /// alone.
    #[serde(default)]
    pub external_head: Option<PathBuf>,
    /// When the head kept outside the repository is older than the log's head: its entry
    /// number and the log's newest (entries after it were never published outside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_head_lags: Option<(u64, u64)>,
    /// Drill reports and drill audit entries that do not match: a report without its
    /// entry (not written by a drill of this log), an entry without its report (removed),
    /// a verdict that differs. Empty when they agree. After them, backups the log records
    /// that the repository no longer holds, and snapshot files that cannot be read.
    pub evidence_problems: Vec<String>,
    /// How many of `evidence_problems` (the first) are about drill reports, so that the
    /// others are not shown under the drill reports' heading.
    #[serde(skip)]
    pub drill_mismatches: usize,
    /// Stored drill reports (of any period) whose audit head is no entry of the log: the
    /// log was rewritten with its hashes computed again, or the reports were altered.
    /// Either way the chain verifying does not show that no entry was edited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drill_heads_not_in_log: Vec<String>,
    /// Backups a `verify` of the period or before found damaged (short ids, with when)
    /// that no later check up to the period's end found intact.
    pub damaged: Vec<(String, Timestamp)>,
    /// Backups a `verify` up to the period's end found damaged and a later check (a
    /// `verify` reading their data, a passed drill, a verified restore) found intact
    /// again, before the period's end: the history an auditor should see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intact_again: Vec<IntactAgain>,
    /// Each `verify` of the period, from the audit log: when, how much, what it read.
    #[serde(default)]
    pub verifications: Vec<VerificationLine>,
    /// Each restore of the period, from the audit log (`time`, `ok`, its entry's words:
    /// which backup, where to, how long, whether it was verified): the recoveries done,
    /// drills aside.
    #[serde(default)]
    pub restores: Vec<(Timestamp, bool, String)>,
    /// When the repository's audit log begins (its first entry): nothing before it can be
    /// shown from this repository.
    pub log_begins: Option<Timestamp>,
}

impl EvidencePack {
    /// Whether the pack can be relied on: the audit chain verifies and the drill reports
    /// match it.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.audit.ok()
            && self.evidence_problems.is_empty()
            && self.drill_heads_not_in_log.is_empty()
    }

    /// What keeps the pack from verifying: the audit chain's problems, then the drill
    /// reports'.
    #[must_use]
    pub fn problems(&self) -> String {
        self.audit
            .problems
            .iter()
            .chain(&self.evidence_problems)
            .chain(&self.drill_heads_not_in_log)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks the stored drill reports of `[from, to]` against the drill entries of the audit
/// log: each report must have its entry, with the same verdict, and each entry its report.
fn check_drills(
    drills: &[DrillSummary],
    entries: &[audit::Entry],
    from: Timestamp,
    to: Timestamp,
) -> Vec<String> {
    let mut problems = Vec::new();
    // a finished drill's entry starts with its id ("drill-… of logical backup …")
    let entry_of = |id: &str| {
        entries.iter().find(|e| {
            e.action == "drill"
                && e.details
                    .strip_prefix(id)
                    .is_some_and(|rest| rest.starts_with(' '))
        })
    };
    for d in drills.iter().filter(|d| within(d.finished_at, from, to)) {
        match entry_of(&d.drill) {
            None => problems.push(format!(
                "drill report {} ({}) has no entry in the audit log: it was not written by a drill recorded in this log",
                d.drill,
                if d.passed { "passed" } else { "failed" }
            )),
            Some(e) if (e.outcome == "ok") != d.passed => problems.push(format!(
                "drill report {} says {}, its audit entry {} says {}",
                d.drill,
                if d.passed { "passed" } else { "failed" },
                e.seq,
                e.outcome
            )),
            Some(e) => {
                if let Some(h) = d.audit_head.as_deref().filter(|h| *h != e.hash) {
                    problems.push(format!(
                        "drill report {} names audit entry {}…, but its entry in the log is {} ({}…)",
                        d.drill,
                        h.get(..16).unwrap_or(h),
                        e.seq,
                        &e.hash[..16]
                    ));
                }
            }
        }
    }
    for e in entries
        .iter()
        .filter(|e| e.action == "drill" && within(e.happened_at(), from, to))
    {
        let Some(id) = e
            .details
            .split(' ')
            .next()
            .filter(|w| w.starts_with("drill-"))
        else {
            continue; // a drill that could not be carried out wrote no report
        };
        if !drills.iter().any(|d| d.drill == id) {
            problems.push(format!(
                "audit entry {} records drill {id} ({}), but its report is not in the repository: it was removed",
                e.seq, e.outcome
            ));
        }
    }
    problems
}

/// The stored drill reports whose audit head (the hash of the entry their drill
/// appended) is not the hash of any entry of `entries`. A log rewritten with every hash
/// computed again verifies as a chain, and matches a head file rewritten with it; the
/// reports, written when each drill ran, still name the old hashes. `lifeboat report` and
/// `lifeboat audit verify` both check it.
#[must_use]
pub fn drill_heads_not_in_log(drills: &[DrillSummary], entries: &[audit::Entry]) -> Vec<String> {
    let hashes: std::collections::HashSet<&str> = entries.iter().map(|e| e.hash.as_str()).collect();
    drills
        .iter()
        .filter_map(|d| {
            let h = d.audit_head.as_deref()?;
            (!hashes.contains(h)).then(|| {
                format!(
                    "drill report {} ({}) names audit head {}…, which is not in the log: the log was rewritten and its hashes computed again (entries edited, removed or reordered), or the report was altered",
                    d.drill,
                    d.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    h.get(..16).unwrap_or(h)
                )
            })
        })
        .collect()
}

/// One `verify` run, as its audit entry records it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerificationLine {
    /// When it ended.
    pub time: Timestamp,
    /// Backups checked (`None` when the entry does not say: an interrupted run).
    pub backups: Option<u64>,
    /// `structure` (every blob present), `data` (every pack read and checked) or `subset`
    /// (a part of the packs read).
    pub depth: String,
    /// Whether it found everything intact.
    pub ok: bool,
    /// Its entry's words after the counts: `all intact`, or what was damaged.
    pub finding: String,
}

/// The `verify` entries of the period as lines.
fn verification_lines(
    entries: &[audit::Entry],
    from: Timestamp,
    to: Timestamp,
) -> Vec<VerificationLine> {
    entries
        .iter()
        .filter(|e| e.action == "verify" && within(e.happened_at(), from, to))
        .map(|e| {
            let details = e.own_details();
            let (head, finding) = details.split_once(": ").unwrap_or(("", details));
            VerificationLine {
                time: e.happened_at(),
                backups: head
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|_| head.contains("backup(s)")),
                depth: if head.contains("data read for a subset") {
                    "subset"
                } else if head.contains("data read") {
                    "data"
                } else {
                    "structure"
                }
                .to_string(),
                ok: e.outcome == "ok",
                finding: finding.to_string(),
            }
        })
        .collect()
}

/// A backup a `verify` found damaged that a later check found intact again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IntactAgain {
    /// The backup (short id, as the verify entry names it).
    pub id: String,
    /// When a verification found it damaged (the newest such, before it was found intact).
    pub damaged_at: Timestamp,
    /// When it was found intact again.
    pub intact_at: Timestamp,
    /// What found it intact: `verify reading its data`, `drill`, `verified restore`.
    pub by: String,
}

/// What the log says of damaged backups up to `to` (by when each operation happened):
/// those a `verify` found damaged and nothing found intact since (short id, when found
/// damaged), and those a later data-reading `verify`, passed drill or verified restore
/// found intact again. A check after `to` does not count: the pack is of its period.
#[must_use]
pub fn damage_history(
    entries: &[audit::Entry],
    to: Timestamp,
) -> (BTreeMap<String, Timestamp>, Vec<IntactAgain>) {
    let mut ordered: Vec<&audit::Entry> =
        entries.iter().filter(|e| e.happened_at() <= to).collect();
    ordered.sort_by_key(|e| e.happened_at());
    let mut damaged: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut intact: Vec<IntactAgain> = Vec::new();
    for e in ordered {
        let at = e.happened_at();
        // deleted on purpose: no longer a backup anyone could restore, damaged or not (and
        // a later verify of every backup did not read it)
        for d in audit::deleted_on_purpose(e) {
            damaged.retain(|id, _| !(d.starts_with(id.as_str()) || id.starts_with(d)));
        }
        if e.action == "verify" && e.outcome != "ok" {
            for id in damaged_in(e) {
                damaged.insert(id.to_string(), at);
                intact.retain(|i| i.id != id);
            }
            continue;
        }
        let Some((found, by)) = found_intact(e) else {
            continue;
        };
        let cleared: Vec<String> = damaged
            .keys()
            .filter(|id| match &found {
                Found::Every => true,
                Found::Ids(ids) => ids.iter().any(|i| i.starts_with(id.as_str())),
            })
            .cloned()
            .collect();
        for id in cleared {
            let damaged_at = damaged.remove(&id).expect("listed");
            intact.push(IntactAgain {
                id,
                damaged_at,
                intact_at: at,
                by: by.to_string(),
            });
        }
    }
    (damaged, intact)
}

/// Backups damaged in the log as of now (short ids, with when a `verify` found them
/// damaged): see [`damage_history`].
#[must_use]
pub fn damaged_backups(entries: &[audit::Entry]) -> BTreeMap<String, Timestamp> {
    damage_history(entries, Timestamp::MAX).0
}

/// The backup ids a failed `verify` entry names damaged, short (8 hex digits, as the
/// damage history keys them; entries name them whole, older ones short).
fn damaged_in(e: &audit::Entry) -> Vec<&str> {
    let Some(list) = e.own_details().split_once("damaged ").map(|(_, l)| l) else {
        return Vec::new();
    };
    // only backup ids: a repository problem's text may say "damaged" too
    list.split(", ")
        .map(str::trim)
        .filter(|i| matches!(i.len(), 8 | 64) && i.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|i| &i[..8])
        .collect()
}

/// Which backups a check found intact.
enum Found<'a> {
    /// Every backup in the repository.
    Every,
    /// These (whole or short ids).
    Ids(Vec<&'a str>),
}

/// The backups an entry shows intact by reading their data, and how: a passed `verify`
/// that read all the data of the backups it names (or of every backup), a passed drill,
/// a restore verified against the backup-time truth. A verify of structure only, or of a
/// subset of the packs, did not read the damaged data, and entries that do not say which
/// backups they read (written before lifeboat named them) show nothing.
fn found_intact(e: &audit::Entry) -> Option<(Found<'_>, &'static str)> {
    if e.outcome != "ok" {
        return None;
    }
    let details = e.own_details();
    let backup_after = |marker: &str| {
        details
            .split_once(marker)
            .and_then(|(_, rest)| rest.split([' ', ',', ':', ';']).next())
            .filter(|id| id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match e.action.as_str() {
        "verify" => {
            let head = details.split_once(": ")?.0;
            if !head.contains(", data read") || head.contains("data read for a subset") {
                return None;
            }
            let scope = head.split_once(" (")?.1.split_once(')')?.0;
            let found = if scope == audit::VERIFIED_EVERY {
                Found::Every
            } else {
                Found::Ids(scope.split(", ").collect())
            };
            Some((found, "verify reading its data"))
        }
        "drill" => Some((Found::Ids(vec![backup_after(" backup ")?]), "drill")),
        "restore" if details.contains("verified against the backup-time truth") => Some((
            Found::Ids(vec![backup_after(": backup ")?]),
            "verified restore",
        )),
        _ => None,
    }
}

/// The successful operations of `[from, to]` counted per action, and the failed ones
/// listed (when, what, by whom), by when each happened: an entry parked through an outage
/// at the period's end and added in the next one belongs to this one.
fn operations(
    entries: &[audit::Entry],
    from: Timestamp,
    to: Timestamp,
) -> (BTreeMap<String, usize>, BTreeMap<String, Vec<String>>) {
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut successes: BTreeMap<String, usize> = BTreeMap::new();
    for e in entries.iter().filter(|e| within(e.happened_at(), from, to)) {
        if e.outcome == "ok" {
            *successes.entry(e.action.clone()).or_default() += 1;
        } else {
            failures.entry(e.action.clone()).or_default().push(format!(
                "{}: {} (by {})",
                e.happened_at().strftime("%Y-%m-%d %H:%M:%S UTC"),
                e.details,
                e.actor()
            ));
        }
    }
    (successes, failures)
}

fn within(t: Timestamp, from: Timestamp, to: Timestamp) -> bool {
    t >= from && t <= to
}

/// Builds the pack for `[from, to]`. The audit log is compared with the head file of the
/// repository's own audit settings ([`Repo::with_audit`]), not `config`'s: a repository
/// opened with `--repo` is not the one `config` keeps heads for.
///
/// # Errors
///
/// When the repository cannot be read.
pub fn evidence_pack(
    repo: &Repo,
    config: &Config,
    from: Timestamp,
    to: Timestamp,
) -> Result<EvidencePack> {
    let all = repo.backups()?;
    let key = |b: &SnapshotInfo| (b.meta.source.clone(), b.meta.kind, b.meta.database.clone());
    let mut lines: BTreeMap<LineKey, BackupLine> = BTreeMap::new();
    // every database backed up by then has its line, also one with no backup in the
    // period: that is the finding, not an absence
    for b in all.iter().filter(|b| b.meta.finished_at <= to) {
        let l = lines.entry(key(b)).or_insert_with(|| line_of(&key(b)));
        if within(b.meta.finished_at, from, to) {
            l.count += 1;
            l.newest = l.newest.max(Some(b.meta.finished_at));
            l.logical_bytes += b.meta.logical_bytes;
            l.stored_bytes += b.meta.stored_bytes;
        }
    }
    // the head file before the log: a run finishing in between appends to both, and the
    // file must not name an entry the log read before it has not got yet
    let kept_text = repo
        .audit_config()
        .head_file
        .as_ref()
        .map(std::fs::read_to_string);
    let entries = audit::entries(repo)?;
    let unreadable = repo.unreadable_snapshots();
    // a backup the log records and the repository no longer holds was still completed
    // (a snapshot file that cannot be read is named as such below, not as gone)
    let held = audit::Held::of(
        all.iter()
            .map(|b| b.id.as_str())
            .chain(unreadable.iter().map(|(id, _)| id.as_str())),
    );
    let gone_times = count_no_longer_held(
        &mut lines,
        &audit::logged_backups(&entries),
        |id| held.holds(id),
        from,
        to,
    );
    // as `verify --all` counts them (the log's intact chain, from when it began); one whose
    // entry waits parked on this host is named with that
    let of_period: Vec<audit::Entry> = entries
        .iter()
        .filter(|e| within(e.happened_at(), from, to))
        .cloned()
        .collect();
    let recorded_by_hand: Vec<String> = audit::recorded_deletions(&of_period)
        .into_iter()
        .chain(audit::recorded_adoptions(&of_period))
        .chain(audit::recorded_notes(&of_period))
        .collect();
    let unlogged_backups: Vec<String> = audit::not_in_log(repo, &entries, &all)?
        .into_iter()
        .map(|(i, parked)| (&all[i], parked))
        .filter(|(b, _)| within(b.meta.finished_at, from, to))
        .map(|(b, parked)| {
            format!(
                "{} {} {} {}{}",
                b.id.get(..8).unwrap_or(&b.id),
                b.meta.source,
                b.meta.kind,
                b.meta.database.as_deref().unwrap_or("-"),
                if parked {
                    " (its entry is parked on this host: the next backup, verify, restore or drill on this host that can write to the repository adds it)"
                } else {
                    ""
                }
            )
        })
        .collect();
    // how long the period went without a new backup of each kind it has, from when the
    // repository's log begins (nothing before it could have been backed up here)
    let start = entries.first().map_or(from, |e| e.time.max(from));
    let end = to.min(Timestamp::now());
    for l in lines.values_mut() {
        let mut times: Vec<Timestamp> = all
            .iter()
            .filter(|b| {
                b.meta.source == l.source && b.meta.kind == l.kind && b.meta.database == l.database
            })
            .map(|b| b.meta.finished_at)
            .chain(
                gone_times
                    .get(&(l.source.clone(), l.kind, l.database.clone()))
                    .into_iter()
                    .flatten()
                    .copied(),
            )
            .filter(|t| *t <= end)
            .collect();
        times.sort();
        let mut last = times
            .iter()
            .rev()
            .find(|t| **t < start)
            .copied()
            .unwrap_or(start);
        let mut longest = 0.0_f64;
        for t in times.into_iter().filter(|t| *t >= start) {
            longest = longest.max(t.duration_since(last).as_secs_f64());
            last = t;
        }
        l.longest_gap_secs = longest.max(end.duration_since(last).as_secs_f64());
    }
    // the head kept outside the repository is what catches entries cut off the end
    let external_head = repo.audit_config().head_file.clone();
    // what can be read of it: a missing, unreadable or empty file is a finding, not a
    // reason to withhold the pack
    let mut head_problem = None;
    let mut rewritten = Vec::new();
    let kept_head = match (&external_head, kept_text) {
        (Some(f), Some(read)) => match read {
            Ok(text) => {
                rewritten = crate::repository::head::rewritten(&text, &entries);
                let h = crate::repository::head::newest_in(&text);
                if h.is_none() && !entries.is_empty() {
                    head_problem =
                        Some(format!("the audit head file {} holds no head", f.display()));
                }
                h
            }
            Err(e) => {
                if !entries.is_empty() {
                    head_problem = Some(format!(
                        "the audit head file {} cannot be read ({e}), though the log has entries",
                        f.display()
                    ));
                }
                None
            }
        },
        _ => None,
    };
    let mut audit = audit::verify_entries(&entries, kept_head.as_deref());
    audit.problems.extend(head_problem);
    audit.problems.extend(rewritten);
    let external_head = external_head.filter(|_| kept_head.is_some());
    // a head file behind the log: the entries after it were never published outside
    let external_head_lags = kept_head.as_deref().and_then(|h| {
        let at = entries.iter().find(|e| e.hash.starts_with(h))?;
        let last = entries.last()?;
        (at.seq < last.seq).then_some((at.seq, last.seq))
    });
    let (successes, failures) = operations(&entries, from, to);
    let stored = drills(repo)?;
    let mut evidence_problems = check_drills(&stored, &entries, from, to);
    let drill_mismatches = evidence_problems.len();
    let drill_heads_not_in_log = drill_heads_not_in_log(&stored, &entries);
    // backups of the period the log records and the repository no longer holds (those
    // recorded as deleted on purpose, also after the period, are not named)
    let in_period: Vec<audit::Entry> = entries
        .iter()
        .filter(|e| within(e.happened_at(), from, to) || e.action == audit::DELETED)
        .cloned()
        .collect();
    let mut gone = audit::gone_backups(
        &in_period,
        all.iter()
            .map(|b| b.id.as_str())
            .chain(unreadable.iter().map(|(id, _)| id.as_str())),
    );
    if !gone.is_empty() {
        // the backups were listed before the log was read: one that finished in between
        // has its entry and was not listed; the log's entries are all in a listing now
        gone = audit::backups_gone_from(repo, &in_period)?;
    }
    evidence_problems.extend(gone);
    // a snapshot file that cannot be read held a backup, a drill report or an audit entry
    // this pack cannot show: the pack is incomplete, and says so
    evidence_problems.extend(unreadable.into_iter().map(|(id, why)| {
        format!("snapshot file {id} cannot be read ({why}): whatever it held (a backup, a drill report, an audit entry) is missing from this pack")
    }));
    let mut drills: Vec<DrillSummary> = stored
        .into_iter()
        .filter(|d| within(d.finished_at, from, to))
        .collect();
    // reports stored before the summary named the database: the drilled backup does
    for d in drills.iter_mut().filter(|d| d.database.is_none()) {
        if let Some(b) = all.iter().find(|b| b.id == d.backup_id) {
            if b.meta.kind == BackupKind::Logical {
                d.database.clone_from(&b.meta.database);
            }
        }
    }
    let mut undrilled: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
    for src in lines
        .keys()
        .map(|(s, _, _)| s)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let dbs: std::collections::BTreeSet<&String> = lines
            .keys()
            .filter(|(s, k, _)| s == src && *k == BackupKind::Logical)
            .filter_map(|(_, _, d)| d.as_ref())
            .collect();
        if dbs.len() < 2 {
            continue;
        }
        let drilled: std::collections::BTreeSet<&String> = drills
            .iter()
            .filter(|d| &d.source == src && d.kind != Some(BackupKind::Physical))
            .filter_map(|d| d.database.as_ref())
            .collect();
        let missing: Vec<String> = dbs
            .iter()
            .filter(|d| !drilled.contains(*d))
            .map(|d| (*d).clone())
            .collect();
        if !missing.is_empty() {
            undrilled.insert(src.clone(), (missing, dbs.len()));
        }
    }
    let (damaged, intact_again) = damage_history(&entries, to);
    let mut wal = Vec::new();
    // the configured sources and those the repository's backups name: a pack made where
    // the configuration is lost (a recovery host) must not say there is no archive
    let names: std::collections::BTreeSet<&str> = config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .chain(all.iter().map(|b| b.meta.source.as_str()))
        .collect();
    for name in names {
        let Ok(store) = WalStore::new(repo, name) else {
            continue;
        };
        let latest = all
            .iter()
            .rev()
            .find(|b| b.meta.source == name && b.meta.kind == BackupKind::Physical);
        let start = latest.and_then(|b| {
            b.meta
                .physical
                .as_ref()
                .map(|p| ChainStart::of_backup(&b.id, p))
        });
        let size = latest
            .and_then(|b| b.meta.physical.as_ref())
            .map_or(wal::DEFAULT_SEGMENT_SIZE, |p| p.wal_segment_size);
        let configured = config.sources.iter().any(|s| s.name == name);
        let st = match wal::status(&store, start.as_ref(), size) {
            Ok(st) => st,
            // a source no longer configured (or a pack made without the configuration) must
            // not cost the whole pack
            Err(_) if !configured => continue,
            Err(e) => return Err(e),
        };
        if st.timelines.is_empty() {
            continue;
        }
        wal.push(WalLine {
            source: name.to_string(),
            segments: st.timelines.iter().map(|t| t.segments).sum(),
            gaps: st.timelines.iter().map(|t| t.gaps.len()).sum(),
            newest_archived_at: st.newest_archived_at,
            blocked_by: st.reachable.and_then(|r| r.blocked_by),
        });
    }
    Ok(EvidencePack {
        asked: None,
        from,
        to,
        generated_at: Timestamp::now(),
        repository: repo.location().to_string(),
        backups: lines.into_values().collect(),
        failures,
        unlogged_backups,
        recorded_by_hand,
        successes,
        drills,
        undrilled,
        objectives: config
            .sources
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    (s.objectives.rto.clone(), s.objectives.rpo.clone()),
                )
            })
            .collect(),
        logical_rpo: config
            .sources
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.objectives.logical_rpo.clone()?)))
            .collect(),
        wal,
        retention: retention_lines(config),
        copies: copies::destinations(config),
        audit,
        external_head,
        external_head_lags,
        evidence_problems,
        drill_mismatches,
        drill_heads_not_in_log,
        verifications: verification_lines(&entries, from, to),
        restores: entries
            .iter()
            .filter(|e| e.action == "restore" && within(e.happened_at(), from, to))
            // who restored is what an incident review asks first
            .map(|e| {
                (
                    e.happened_at(),
                    e.outcome == "ok",
                    format!("{} (by {})", e.details, e.actor()),
                )
            })
            .collect(),
        damaged: damaged.into_iter().collect(),
        intact_again,
        log_begins: entries.first().map(|e| e.time),
    })
}

fn secs(s: f64) -> String {
    super::evidence::pack_secs(s)
}

/// `2 no longer in the repository: 1 deleted on purpose, 1 gone without a record`.
fn no_longer_held_words(gone: usize, on_purpose: usize) -> String {
    let parts: Vec<String> = [
        (on_purpose, "deleted on purpose (`audit deleted`)"),
        (gone - on_purpose, "**gone without a record**"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    format!("{gone} no longer in the repository: {}", parts.join(", "))
}

/// The pack as Markdown, one section per criterion.
#[must_use]
pub fn markdown(p: &EvidencePack) -> String {
    let day = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M UTC").to_string();
    let mut m = String::new();
    // to the second: a period that ends at 23:59:59 must not read as one that ends a
    // minute early
    let bound = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    let _ = writeln!(
        m,
        "# Backup and recovery evidence, {} to {}\n",
        bound(p.from),
        bound(p.to)
    );
    if let Some(a) = &p.asked {
        let _ = writeln!(m, "Period as asked for: {a}.\n");
    }
    if !p.ok() {
        let _ = writeln!(
            m,
            "**WARNING: this evidence does not verify** — {}. See \"Integrity of this evidence\" at the end.\n",
            p.problems()
        );
    }
    let _ = writeln!(m, "Generated by `lifeboat report` at {} from the repository `{}`. Backups, drills and operations are read from the repository (snapshots, drill reports, the hash-chained audit log) and checked against each other; each drill was judged against the objectives configured when it ran. Retention, offsite copies and the audit head file are as configured now.\n", day(p.generated_at), p.repository);

    if let Some(t) = p.log_begins.filter(|t| *t > p.from) {
        let _ = writeln!(m, "This repository's audit log begins at {}: the period before that holds nothing from it.\n", day(t));
    }
    let _ = writeln!(m, "## CC9.1 — risk mitigation for business disruption\n");
    let _ = writeln!(
        m,
        "Recovery objectives per source, and whether the drills of the period met them (objectives as the drills recorded them, each one they were judged against when it changed in the period; the configuration's current value in brackets where it differs):\n"
    );
    let _ = writeln!(m, "| source | RTO objective | RPO objective | drills | passed | RTO met | RPO met | worst achieved RTO | worst achieved RPO |");
    let _ = writeln!(m, "|---|---|---|---:|---:|---:|---:|---:|---:|");
    let mut sources: Vec<&String> = p
        .objectives
        .keys()
        .chain(p.drills.iter().map(|d| &d.source))
        .collect();
    sources.sort();
    sources.dedup();
    for src in sources {
        let (rto_now, rpo_any) = p.objectives.get(src).cloned().unwrap_or_default();
        let of_source: Vec<&DrillSummary> = p.drills.iter().filter(|d| &d.source == src).collect();
        // logical and physical drills are judged against their own RPO (`logical_rpo`): a
        // row each when the period has both, so that no count mixes them
        let mut kinds: Vec<Option<BackupKind>> = of_source.iter().map(|d| d.kind).collect();
        // with an RPO of their own the logical dumps always get their row, and WAL its
        // own, drilled in the period or not: one row would show one of the two objectives
        // as the source's only one
        if p.logical_rpo.contains_key(src.as_str()) {
            kinds.push(Some(BackupKind::Logical));
            // WAL's row only for a source that takes base backups: an empty one would
            // read as a gap in the evidence of a logical-only source
            if p.backups
                .iter()
                .any(|b| &b.source == src && b.kind == BackupKind::Physical)
            {
                kinds.push(Some(BackupKind::Physical));
            }
        }
        kinds.sort_by_key(|k| k.map(|k| k.to_string()));
        kinds.dedup();
        let split = kinds.len() > 1;
        for kind in if split { kinds } else { vec![None] } {
            let ds: Vec<&DrillSummary> = of_source
                .iter()
                .copied()
                .filter(|d| !split || d.kind == kind)
                .collect();
            let label = match kind {
                Some(k) if split => format!("{src} ({k} drills)"),
                _ => src.to_string(),
            };
            let logical_rpo = p.logical_rpo.get(src.as_str());
            let rpo_now = match (
                kind.or_else(|| ds.first().and_then(|d| d.kind)),
                logical_rpo,
            ) {
                (Some(BackupKind::Physical), _) | (_, None) => rpo_any.clone(),
                (_, Some(l)) => Some(l.clone()),
            };
            let worst = |f: fn(&DrillSummary) -> f64| {
                // a drill whose restore failed achieved no time to compare
                ds.iter()
                    .filter(|d| !d.not_achieved)
                    .map(|d| f(d))
                    .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
            };
            // every objective the period's drills were judged against, oldest first (the
            // counts of met objectives mix them when it changed), and the configuration's
            // when it is another
            let recorded = |f: fn(&DrillSummary) -> Option<f64>| {
                let mut seen: Vec<f64> = Vec::new();
                for v in ds.iter().filter_map(|d| f(d)) {
                    if !seen.iter().any(|s| (s - v).abs() < 0.5) {
                        seen.push(v);
                    }
                }
                seen
            };
            let objective = |recorded: Vec<f64>, now: Option<&str>| {
                let now_secs = now.and_then(|n| crate::config::parse_duration(n).ok());
                let newest = recorded.last().copied();
                let list = recorded
                    .iter()
                    .map(|r| secs(*r))
                    .collect::<Vec<_>>()
                    .join(", ");
                let changed = if recorded.len() > 1 {
                    "changed in the period; "
                } else {
                    ""
                };
                match (newest, now) {
                    (Some(r), Some(n))
                        if recorded.len() == 1
                            && now_secs.is_some_and(|x| (x as f64 - r).abs() < 0.5) =>
                    {
                        n.to_string()
                    }
                    (Some(_), Some(n)) => format!("{list} ({changed}now {n})"),
                    // no source configured at all: a pack made where the configuration is
                    // lost (a recovery host), which says nothing of the objectives now
                    (Some(_), None) if p.objectives.is_empty() => {
                        format!("{list} ({changed}not configured where this pack was made)")
                    }
                    (Some(_), None) => format!("{list} ({changed}now not set)"),
                    (None, Some(n)) => n.to_string(),
                    (None, None) => "not set".to_string(),
                }
            };
            let met = |f: fn(&DrillSummary) -> Option<bool>| {
                let judged: Vec<bool> = ds.iter().filter_map(|d| f(d)).collect();
                if judged.is_empty() {
                    "-".to_string()
                } else {
                    let n = judged.iter().filter(|m| **m).count();
                    if n == judged.len() {
                        format!("{n} of {}", judged.len())
                    } else {
                        format!("**{n} of {}**", judged.len())
                    }
                }
            };
            let _ = writeln!(
                m,
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                objective(recorded(|d| d.rto_objective_secs), rto_now.as_deref()),
                objective(recorded(|d| d.rpo_objective_secs), rpo_now.as_deref()),
                ds.len(),
                match ds.iter().filter(|d| !d.passed && d.fault_injected).count() {
                    0 => ds.iter().filter(|d| d.passed).count().to_string(),
                    n => format!(
                        "{} ({n} failed on a fault injected on purpose)",
                        ds.iter().filter(|d| d.passed).count()
                    ),
                },
                met(|d| d.rto_met),
                met(|d| d.rpo_met),
                worst(|d| d.rto_secs).map_or("-".into(), secs),
                worst(|d| d.rpo_secs).map_or("-".into(), secs),
            );
        }
    }

    for (src, (missing, of)) in &p.undrilled {
        let _ = writeln!(
            m,
            "\n**Not drilled in the period**: {} of the {of} databases of source {src} ({}); each database is its own dump, and its restore is proven only by its own drill.",
            missing.len(),
            missing
                .iter()
                .map(|d| super::evidence::md_cell(d))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let _ = writeln!(
        m,
        "\n## A1.2 — backup processes and recovery infrastructure\n"
    );
    let _ = writeln!(m, "Backups completed in the period (those the repository holds, and those the audit log records that it no longer holds; the sizes are of those it holds):\n");
    let _ = writeln!(
        m,
        "| source | kind | database | backups | newest | longest without a new one | data backed up | stored (after dedup, compression) |"
    );
    let _ = writeln!(m, "|---|---|---|---:|---|---:|---:|---:|");
    for b in &p.backups {
        // a logical backup is the recovery point when no WAL is archived: a longer
        // stretch than the RPO objective is a finding
        let rpo = p
            .logical_rpo
            .get(&b.source)
            .map(String::as_str)
            .or_else(|| {
                p.objectives
                    .get(&b.source)
                    .and_then(|(_, rpo)| rpo.as_deref())
            })
            .and_then(|r| crate::config::parse_duration(r).ok());
        let gap = secs(b.longest_gap_secs);
        let gap = match rpo {
            Some(r) if b.kind == BackupKind::Logical && b.longest_gap_secs > r as f64 => {
                format!("**{gap}** (RPO objective {})", secs(r as f64))
            }
            _ => gap,
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {gap} | {} | {} |",
            b.source,
            b.kind,
            b.database
                .as_deref()
                .map_or_else(|| "-".to_string(), super::evidence::md_cell),
            match (b.count, b.no_longer_held) {
                (0, _) => "**0**".to_string(),
                (n, 0) => n.to_string(),
                (n, gone) => format!("{n} ({})", no_longer_held_words(gone, b.deleted_on_purpose)),
            },
            b.newest.map_or("-".into(), day),
            bytesize::ByteSize::b(b.logical_bytes),
            bytesize::ByteSize::b(b.stored_bytes)
        );
    }
    // a configured source without a backup up to the period's end is the finding, not an
    // absence
    let without: Vec<&String> = p
        .objectives
        .keys()
        .filter(|s| !p.backups.iter().any(|b| &b.source == *s))
        .collect();
    for s in &without {
        let _ = writeln!(
            m,
            "| {} | — | — | **0** | — | — | — | — |",
            super::evidence::md_cell(s)
        );
    }
    if p.backups.is_empty() && without.is_empty() {
        let _ = writeln!(m, "| — | — | — | **0** | — | — | — | — |");
    }
    if !p.recorded_by_hand.is_empty() {
        let _ = writeln!(
            m,
            "\n**Recorded by hand** (backups deleted on purpose with `audit deleted`, taken as the repository's own with `audit adopt`, and notes of what was done by hand with `audit note`; anyone with the repository password can write such an entry, so review each):\n"
        );
        for r in &p.recorded_by_hand {
            let _ = writeln!(m, "- {}", super::evidence::md_cell(r));
        }
    }
    if !p.unlogged_backups.is_empty() {
        let _ = writeln!(
            m,
            "\n**In no audit entry**: {} backup(s) of the period are in the repository but in no entry of the log ({}): an entry parked on this host and not added yet (it says so), a run killed (`kill -9`, the OOM killer) after storing them and before it could log, entries removed, or backups written into the repository outside lifeboat. They are counted above; `lifeboat verify ID` checks one, `lifeboat audit verify` checks the log.",
            p.unlogged_backups.len(),
            p.unlogged_backups
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        m,
        "\nOperations recorded in the audit log (successful / failed):\n"
    );
    let mut actions: Vec<&String> = p.successes.keys().chain(p.failures.keys()).collect();
    actions.sort();
    actions.dedup();
    if actions.is_empty() {
        let _ = writeln!(m, "- none");
    }
    for a in actions {
        let _ = writeln!(
            m,
            "- {a}: {} ok, {} failed",
            p.successes.get(a).copied().unwrap_or(0),
            p.failures.get(a).map_or(0, Vec::len)
        );
    }
    if !p.failures.is_empty() {
        let _ = writeln!(m, "\n**Failed operations** in the period:\n");
    }
    for (a, list) in &p.failures {
        for f in list {
            // a program's message may run over lines: one list item each
            let _ = writeln!(
                m,
                "- failed {a}: {}",
                super::evidence::md_text(f).replace('\n', "<br>")
            );
        }
    }
    let _ = writeln!(m, "\nVerifications of the backups in the period (`lifeboat verify`: structure = every piece of every backup is there; data = every pack read, decrypted and its hash checked):\n");
    if p.verifications.is_empty() {
        let _ = writeln!(m, "- **none**: no backup was verified in this period");
    } else {
        let _ = writeln!(m, "| when | backups | depth | result |");
        let _ = writeln!(m, "|---|---:|---|---|");
        for v in &p.verifications {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} |",
                v.time.strftime("%Y-%m-%d %H:%M UTC"),
                v.backups.map_or("-".to_string(), |n| n.to_string()),
                match v.depth.as_str() {
                    "data" => "data read",
                    "subset" => "data read, a subset of the packs",
                    _ => "structure",
                },
                if v.ok {
                    super::evidence::md_cell(&v.finding)
                } else {
                    format!("**{}**", super::evidence::md_cell(&v.finding))
                }
            );
        }
    }
    if !p.restores.is_empty() {
        let _ = writeln!(m, "\nRestores in the period (drills aside):\n");
        for (t, ok, details) in &p.restores {
            let _ = writeln!(
                m,
                "- {} {}: {}",
                t.strftime("%Y-%m-%d %H:%M UTC"),
                if *ok { "restored" } else { "**failed**" },
                super::evidence::md_text(details).replace('\n', "<br>")
            );
        }
    }
    if !p.damaged.is_empty() {
        let _ = writeln!(
            m,
            "\nBackups a verification found **damaged**, and no check found intact since by the period's end (do not restore them; restore an older one): {}",
            p.damaged
                .iter()
                .map(|(id, t)| format!("`{id}` ({})", day(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !p.intact_again.is_empty() {
        let _ = writeln!(
            m,
            "\nBackups found damaged, then intact again: {}",
            p.intact_again
                .iter()
                .map(|i| format!(
                    "`{}` (found damaged {}, found intact again {} by a {})",
                    i.id,
                    day(i.damaged_at),
                    day(i.intact_at),
                    i.by
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        m,
        "\nContinuous WAL archiving (point-in-time recovery), as the archive is now:\n"
    );
    if p.wal.is_empty() {
        let _ = writeln!(m, "- no WAL archive in this repository");
    }
    for w in &p.wal {
        let _ = writeln!(
            m,
            "- {}: {} segments, {} gap(s), newest archived {}{}",
            w.source,
            w.segments,
            w.gaps,
            w.newest_archived_at.map_or("-".into(), day),
            w.blocked_by
                .as_deref()
                .map(|b| format!(" — **the chain from the latest base backup breaks at {b}**"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(m, "\nProtection of the backups:\n");
    let _ = writeln!(m, "- encryption: every backup, drill report, audit entry and WAL segment is encrypted with the repository key (AES-256-CTR with Poly1305-AES authentication, restic repository format 2; the key is derived from the password with scrypt). Data cannot be read or silently changed without the password.");
    if p.retention.is_empty() {
        let _ = writeln!(m, "- retention: not configured");
    }
    for r in &p.retention {
        let _ = writeln!(
            m,
            "- retention: {}: configured: {} — **not enforced**: lifeboat does not prune yet",
            r.source, r.text
        );
    }
    if p.copies.is_empty() {
        let _ = writeln!(m, "- offsite copies: **none configured**");
    }
    for c in &p.copies {
        let _ = writeln!(m, "- offsite copies: {}", c.describe());
    }

    let _ = writeln!(m, "\n## A1.3 — recovery plan testing\n");
    let _ = writeln!(m, "Restore drills in the period (each restored a backup into a throw-away cluster, or where marked into a new database on the configured scratch server, and checked it):\n");
    let _ = writeln!(
        m,
        "| drill | finished | source | restored | kind | backup | result | achieved RTO | achieved RPO |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---:|---:|");
    for d in &p.drills {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | `{}` | {}{}{} | {} | {} |",
            d.drill,
            day(d.finished_at),
            d.source,
            match (&d.database, d.kind) {
                (_, Some(BackupKind::Physical)) => "whole cluster".to_string(),
                (Some(db), _) if d.on_scratch_server => format!(
                    "{} (on the scratch server: roles, owners and grants not checked)",
                    super::evidence::md_cell(db)
                ),
                (Some(db), _) => super::evidence::md_cell(db),
                (None, _) => "-".to_string(),
            },
            d.kind.map_or_else(|| "-".to_string(), |k| k.to_string()),
            &d.backup_id[..8.min(d.backup_id.len())],
            match (d.passed, d.fault_injected) {
                (true, _) => "passed",
                // the drill did its job: it caught the damage a hook made on purpose
                (false, true) => "failed on a fault injected on purpose (hooks before the checks changed the copy)",
                (false, false) => "**FAILED**",
            },
            if d.extrapolation_misses_rto {
                " (**at production's size the restore would miss the RTO**)"
            } else {
                ""
            },
            d.evidence_error.as_ref().map_or_else(String::new, |_| {
                " (evidence not published outside the repository)".to_string()
            }),
            d.rto_words(),
            d.rpo_words()
        );
    }
    if p.drills.is_empty() {
        let _ = writeln!(m, "| **no drill in this period** | | | | | | | | |");
    }
    let _ = writeln!(m, "\nEach drill's own report (`lifeboat report --drill ID --format md|html|json`) has its phases, every check and its objectives with margins.");

    let _ = writeln!(m, "\n## Integrity of this evidence\n");
    let _ = writeln!(
        m,
        "The audit log holds {} entries; its hash chain {}. Head hash: `{}`. {}",
        p.audit.entries,
        if p.audit.ok() && p.drill_heads_not_in_log.is_empty() {
            "verifies (no entry edited, removed or reordered)".to_string()
        } else if p.audit.ok() {
            format!(
                "is consistent in itself, but **{} drill report(s) name an audit head that is not in the log**: the log was rewritten and its hashes computed again, or those reports were altered, so the chain does not show that no entry was edited: {}",
                p.drill_heads_not_in_log.len(),
                p.drill_heads_not_in_log.join("; ")
            )
        } else {
            format!("**does not verify**: {}", p.audit.problems.join("; "))
        },
        p.audit.head.as_deref().unwrap_or("-"),
        match (&p.external_head, p.external_head_lags) {
            (Some(f), Some((kept, last))) if p.audit.ok() => format!("The newest head kept outside the repository in `{}` is entry {kept}, and it is in the log; **entries {} to {last} were never published to that file** (written by a run whose configuration names no head file or another one, or whose publishing failed), so their removal could not be detected from it.", f.display(), kept + 1),
            (Some(f), None) if p.audit.ok() && p.drill_heads_not_in_log.is_empty() => format!("It matches the newest head kept outside the repository in `{}`, so no entry was cut off the end either.", f.display()),
            (Some(f), None) if p.audit.ok() => format!("It matches the newest head kept outside the repository in `{}`.", f.display()),
            (Some(f), _) => format!("It was compared with the newest head kept outside the repository in `{}`.", f.display()),
            (None, _) => "**No head kept outside the repository was compared** (`[audit] head_file` is not set, or holds nothing readable): entries cut off the end of the log cannot be detected from this pack; compare the head with a copy kept elsewhere (`lifeboat audit verify --expected-head`).".to_string(),
        }
    );
    let (drills, held) = p
        .evidence_problems
        .split_at(p.drill_mismatches.min(p.evidence_problems.len()));
    if !drills.is_empty() {
        let _ = writeln!(m, "\nThe drill reports **do not match the audit log**:\n");
        for e in drills {
            let _ = writeln!(m, "- {e}");
        }
    }
    if !held.is_empty() {
        let _ = writeln!(
            m,
            "\nThe repository **does not hold everything the audit log records**, or cannot read all of it:\n"
        );
        for e in held {
            let _ = writeln!(m, "- {e}");
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_entries_name_snapshots_by_their_first_eight_digits() {
        let entries = [
            entry(
                1,
                "backup",
                "ok",
                "source main recovery point 20261206T0100Z: 7c1d03aa logical app (12 bytes), \
                 interrupted 0123456789abcdef0123 physical; fe12",
            ),
            entry(2, "verify", "ok", "89abcdef checked"),
        ];
        let logged = audit::logged_backup_ids(&entries);
        for named in ["7c1d03aa", "01234567"] {
            assert!(
                logged.names(&format!("{named}{}", "5".repeat(56))),
                "{named}"
            );
        }
        assert!(!logged.names(&"89abcdef".repeat(8)));
        assert!(!logged.names(&"fe12".repeat(16)));
    }

    #[test]
    fn a_whole_id_names_that_backup_alone() {
        let whole = format!("7c1d03aa{}", "0".repeat(56));
        let entries = [entry(
            1,
            "backup",
            "ok",
            &format!("source main recovery point 20261206T0100Z: {whole} logical app (12 bytes)"),
        )];
        let logged = audit::logged_backup_ids(&entries);
        assert!(logged.names(&whole));
        // the same first 8 digits, or the recovery point's: what a forger would aim for
        assert!(!logged.names(&format!("7c1d03aa{}", "1".repeat(56))));
        assert!(!logged.names(&format!("20261206{}", "1".repeat(56))));
    }

    fn entry(seq: u64, action: &str, outcome: &str, details: &str) -> audit::Entry {
        entry_at(seq, "2026-12-05T10:00:00Z", action, outcome, details)
    }

    fn entry_at(seq: u64, time: &str, action: &str, outcome: &str, details: &str) -> audit::Entry {
        audit::Entry {
            seq,
            time: time.parse().unwrap(),
            action: action.into(),
            outcome: outcome.into(),
            details: details.into(),
            user: None,
            host: None,
            prev: String::new(),
            hash: format!("{seq:064x}"),
            extra: Default::default(),
        }
    }

    /// A pack of nothing for `config`, made `now`.
    fn empty_pack(config: &Config, now: Timestamp) -> EvidencePack {
        EvidencePack {
            asked: None,
            from: now,
            to: now,
            generated_at: now,
            repository: "/r".into(),
            backups: Vec::new(),
            failures: BTreeMap::new(),
            unlogged_backups: Vec::new(),
            recorded_by_hand: Vec::new(),
            successes: BTreeMap::new(),
            drills: Vec::new(),
            undrilled: BTreeMap::new(),
            objectives: BTreeMap::new(),
            logical_rpo: BTreeMap::new(),
            wal: Vec::new(),
            retention: retention_lines(config),
            copies: copies::destinations(config),
            audit: audit::verify_entries(&[], None),
            external_head: None,
            external_head_lags: None,
            evidence_problems: Vec::new(),
            drill_mismatches: 0,
            drill_heads_not_in_log: Vec::new(),
            damaged: Vec::new(),
            intact_again: Vec::new(),
            verifications: Vec::new(),
            restores: Vec::new(),
            log_begins: None,
        }
    }

    fn summary(id: &str, passed: bool, head: Option<u64>) -> DrillSummary {
        DrillSummary {
            drill: id.into(),
            source: "app".into(),
            database: Some("app".into()),
            backup_id: "ab".repeat(32),
            passed,
            rto_secs: 1.0,
            rpo_secs: 1.0,
            finished_at: "2026-12-05T10:00:00Z".parse().unwrap(),
            kind: None,
            audit_head: head.map(|s| format!("{s:064x}")),
            rto_objective_secs: None,
            rpo_objective_secs: None,
            rto_met: None,
            rpo_met: None,
            evidence_error: None,
            not_achieved: false,
            on_scratch_server: false,
            extrapolation_misses_rto: false,
            fault_injected: false,
        }
    }

    #[test]
    fn drill_reports_are_checked_against_the_audit_log() {
        let (from, to) = (
            "2026-12-01T00:00:00Z".parse().unwrap(),
            "2026-12-31T00:00:00Z".parse().unwrap(),
        );
        let entries = vec![
            entry(
                1,
                "drill",
                "ok",
                "drill-A of logical backup 1234abcd (\"app\"): passed",
            ),
            entry(
                2,
                "drill",
                "failed",
                "drill-B of logical backup 1234abcd (\"app\"): failed: x",
            ),
            entry(
                3,
                "drill",
                "failed",
                "logical drill of source app: not carried out: no backup",
            ),
        ];
        let agree = [
            summary("drill-A", true, Some(1)),
            summary("drill-B", false, Some(2)),
        ];
        assert!(check_drills(&agree, &entries, from, to).is_empty());
        // B's report removed; C injected without an entry; A's verdict edited
        let doctored = [
            summary("drill-A", false, Some(1)),
            summary("drill-C", true, None),
        ];
        let problems = check_drills(&doctored, &entries, from, to);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("drill-A says failed, its audit entry 1 says ok"));
        assert!(problems[1].contains("drill-C (passed) has no entry in the audit log"));
        assert!(problems[2].contains("audit entry 2 records drill drill-B (failed)"));
        // a report naming another entry than its own
        let moved = [
            summary("drill-A", true, Some(2)),
            summary("drill-B", false, Some(2)),
        ];
        assert!(check_drills(&moved, &entries, from, to)[0].contains("names audit entry"));
        // an entry added late (it was parked) still belongs to its drill's report
        let parked = crate::repository::parked::Parked {
            repository: "/r".into(),
            time: "2026-12-05T09:00:00Z".parse().unwrap(),
            action: "drill".into(),
            ok: true,
            details: "drill-D of logical backup 1234abcd (\"app\"): passed".into(),
            user: "u".into(),
            host: "h".into(),
        };
        let late = vec![entry(4, "drill", "ok", &parked.late_details())];
        assert!(
            check_drills(&[summary("drill-D", true, None)], &late, from, to).is_empty(),
            "{:?}",
            check_drills(&[summary("drill-D", true, None)], &late, from, to)
        );
    }

    #[test]
    fn each_verification_of_the_period_is_a_line_with_its_depth() {
        let entries = vec![
            entry(1, "verify", "ok", "3 backup(s): all intact"),
            entry(2, "verify", "ok", "4 backup(s), data read: all intact"),
            entry(
                3,
                "verify",
                "failed",
                "4 backup(s), data read for a subset of the packs (1/4): damaged e130108a",
            ),
            entry(4, "backup", "ok", "source app: ..."),
        ];
        let (from, to) = (
            "2026-12-01T00:00:00Z".parse().unwrap(),
            "2026-12-31T00:00:00Z".parse().unwrap(),
        );
        let lines = verification_lines(&entries, from, to);
        let got: Vec<(Option<u64>, &str, bool, &str)> = lines
            .iter()
            .map(|l| (l.backups, l.depth.as_str(), l.ok, l.finding.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(3), "structure", true, "all intact"),
                (Some(4), "data", true, "all intact"),
                (Some(4), "subset", false, "damaged e130108a"),
            ]
        );
        let late = "2027-01-01T00:00:00Z".parse().unwrap();
        assert!(verification_lines(&entries, late, late).is_empty());
    }

    #[test]
    fn logical_and_physical_drills_with_their_own_rpo_get_a_row_each() {
        let text = "[[source]]\nname = \"app\"\nkind = \"postgres\"\nobjectives = { rto = \"2h\", rpo = \"1h\", logical_rpo = \"24h\" }\n";
        let config = Config::parse(text, "c").unwrap();
        let now = Timestamp::now();
        let drill = |id: &str, kind: BackupKind, rpo: f64| {
            let mut d = summary(id, true, None);
            d.finished_at = now;
            d.kind = Some(kind);
            d.rpo_objective_secs = Some(rpo);
            d.rpo_met = Some(true);
            d
        };
        let pack = EvidencePack {
            drills: vec![
                drill("d1", BackupKind::Logical, 86400.0),
                drill("d2", BackupKind::Physical, 3600.0),
            ],
            objectives: BTreeMap::from([(
                "app".to_string(),
                (Some("2h".into()), Some("1h".into())),
            )]),
            logical_rpo: BTreeMap::from([("app".to_string(), "24h".to_string())]),
            ..empty_pack(&config, now)
        };
        let m = markdown(&pack);
        assert!(m.contains("| app (logical drills) | 2h | 24h | 1 |"), "{m}");
        assert!(m.contains("| app (physical drills) | 2h | 1h | 1 |"), "{m}");
        assert!(!m.contains("(changed in the period"), "{m}");
        // with no drill in the period, or drills of one kind, each kind keeps its row
        // (the physical one for a source that takes base backups)
        let base_backups = vec![line_of(&("app".into(), BackupKind::Physical, None))];
        for drills in [vec![], vec![drill("d1", BackupKind::Logical, 86400.0)]] {
            let n = drills.len();
            let m = markdown(&EvidencePack {
                drills: drills.clone(),
                backups: base_backups.clone(),
                ..pack.clone()
            });
            assert!(
                m.contains(&format!("| app (logical drills) | 2h | 24h | {n} |")),
                "{m}"
            );
            assert!(m.contains("| app (physical drills) | 2h | 1h | 0 |"), "{m}");
            // a logical-only source: no empty row for WAL it does not have
            let m = markdown(&EvidencePack {
                drills,
                ..pack.clone()
            });
            assert!(!m.contains("(physical drills)"), "{m}");
        }
    }

    #[test]
    fn restores_of_the_period_are_listed_with_their_entry() {
        let config = Config::parse("", "c").unwrap();
        let now = Timestamp::now();
        let pack = EvidencePack {
            restores: vec![
                (now, true, "source app: backup 1234abcd of \"app\" into database \"app_check\" (...): restored in 3.0s".into()),
                (now, false, "restore of backup 1234abcd: interrupted".into()),
            ],
            ..empty_pack(&config, now)
        };
        let m = markdown(&pack);
        assert!(m.contains("Restores in the period"), "{m}");
        assert!(m.contains(" restored: source app: backup 1234abcd"), "{m}");
        assert!(
            m.contains(" **failed**: restore of backup 1234abcd: interrupted"),
            "{m}"
        );
        assert!(!markdown(&empty_pack(&config, now)).contains("Restores in the period"));
    }

    #[test]
    fn verify_entries_name_the_damaged_backups() {
        let entries = vec![
            entry(
                1,
                "verify",
                "failed",
                &format!(
                    "3 backup(s), data read: damaged e130108a, 77f6e698{}",
                    "0".repeat(56)
                ),
            ),
            entry(2, "verify", "ok", "3 backup(s): all intact"),
            // a repository problem's own words are no backup ids
            entry(
                3,
                "verify",
                "failed",
                "2 backup(s), data read: pack e0df3f2e is damaged (no backup's dump checked uses it), move data/e0/e0df3f2e… out; 1 backup(s) the audit log records as stored are no longer in the repository: 38c73584 (logical of app, entry 21 at 2026-12-07 04:35:53 UTC)",
            ),
        ];
        let d = damaged_backups(&entries);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["77f6e698", "e130108a"]);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn damage_counts_up_to_the_periods_end_and_a_later_check_that_read_it_clears_it() {
        let whole = |short: &str| format!("{short}{}", "0".repeat(56));
        let entries = vec![
            entry_at(1, "2026-12-05T10:00:00Z", "verify", "failed", "3 backup(s), data read: damaged e130108a, 77f6e698"),
            // structure only, or a subset: the damaged data was not read
            entry_at(2, "2026-12-06T10:00:00Z", "verify", "ok", &format!("3 backup(s) ({}): all intact", audit::VERIFIED_EVERY)),
            entry_at(3, "2026-12-06T11:00:00Z", "verify", "ok", &format!("3 backup(s) ({}), data read for a subset of the packs (1/4): all intact", audit::VERIFIED_EVERY)),
            // an entry from before lifeboat named what it read says nothing of e130108a
            entry_at(4, "2026-12-06T12:00:00Z", "verify", "ok", "1 backup(s), data read: all intact"),
            entry_at(5, "2026-12-07T10:00:00Z", "verify", "ok", &format!("1 backup(s) ({}), data read: all intact", whole("e130108a"))),
            entry_at(6, "2026-12-09T10:00:00Z", "drill", "ok", "drill-20261209T100000Z-0a0b of logical backup 77f6e698 (\"app\") of source app: passed"),
        ];
        // a period that ends before the damage was found knows nothing of it
        let (damaged, again) = damage_history(&entries, ts("2026-12-04T00:00:00Z"));
        assert!(
            damaged.is_empty() && again.is_empty(),
            "{damaged:?} {again:?}"
        );
        // after the checks that did not read it, both are still damaged
        let (damaged, _) = damage_history(&entries, ts("2026-12-06T23:00:00Z"));
        assert_eq!(damaged.keys().collect::<Vec<_>>(), ["77f6e698", "e130108a"]);
        // the verify that read e130108a's data found it intact; the drill of 77f6e698
        // came after the period's end
        let (damaged, again) = damage_history(&entries, ts("2026-12-08T00:00:00Z"));
        assert_eq!(damaged.keys().collect::<Vec<_>>(), ["77f6e698"]);
        assert_eq!(
            again,
            [IntactAgain {
                id: "e130108a".into(),
                damaged_at: ts("2026-12-05T10:00:00Z"),
                intact_at: ts("2026-12-07T10:00:00Z"),
                by: "verify reading its data".into(),
            }]
        );
        let (damaged, again) = damage_history(&entries, ts("2026-12-31T00:00:00Z"));
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(again[1].by, "drill");
        assert!(damaged_backups(&entries).is_empty());
        // found damaged again later: listed again, with the newer time
        let mut more = entries.clone();
        more.push(entry_at(
            7,
            "2026-12-10T10:00:00Z",
            "verify",
            "failed",
            "2 backup(s), data read: damaged 77f6e698",
        ));
        // and a verified restore of it clears it; an unverified one does not
        more.push(entry_at(8, "2026-12-11T10:00:00Z", "restore", "ok", "source app: backup 77f6e698 of \"app\" into database \"x\" (local): restored in 3.0s (fetch 1.0s, restore 2.0s); not compared with a backup-time truth"));
        let (damaged, _) = damage_history(&more, ts("2026-12-11T23:00:00Z"));
        assert_eq!(damaged.get("77f6e698"), Some(&ts("2026-12-10T10:00:00Z")));
        more.push(entry_at(9, "2026-12-12T10:00:00Z", "restore", "ok", "source app: backup 77f6e698 of \"app\" into database \"x\" (local): restored in 3.0s (fetch 1.0s, restore 2.0s); verified against the backup-time truth: 3 tables, 1 sequences"));
        let (damaged, again) = damage_history(&more, ts("2026-12-31T00:00:00Z"));
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(
            again.last().map(|i| i.by.as_str()),
            Some("verified restore")
        );
        // deleted on purpose, then a verify of every backup: that verify did not read it
        let mut gone = vec![
            entry_at(
                1,
                "2026-12-05T10:00:00Z",
                "verify",
                "failed",
                "2 backup(s), data read: damaged e130108a",
            ),
            entry_at(
                2,
                "2026-12-05T11:00:00Z",
                audit::DELETED,
                "ok",
                &format!("backups {} deleted on purpose: damaged", whole("e130108a")),
            ),
            entry_at(
                3,
                "2026-12-05T12:00:00Z",
                "verify",
                "ok",
                &format!(
                    "1 backup(s) ({}), data read: all intact",
                    audit::VERIFIED_EVERY
                ),
            ),
        ];
        let (still, cleared) = damage_history(&gone, ts("2026-12-31T00:00:00Z"));
        assert!(
            cleared.is_empty() && still.is_empty(),
            "{still:?} {cleared:?}"
        );
        gone.remove(1);
        let (_, cleared) = damage_history(&gone, ts("2026-12-31T00:00:00Z"));
        assert_eq!(cleared.len(), 1, "{cleared:?}");
        // the pack says both
        let config = Config::parse("", "c").unwrap();
        let m = markdown(&EvidencePack {
            damaged: vec![("77f6e698".into(), ts("2026-12-10T10:00:00Z"))],
            intact_again: again[..1].to_vec(),
            ..empty_pack(&config, ts("2026-12-31T00:00:00Z"))
        });
        assert!(
            m.contains("found **damaged**, and no check found intact since by the period's end")
                && m.contains("`e130108a` (found damaged 2026-12-05 10:00 UTC, found intact again 2026-12-07 10:00 UTC by a verify reading its data)"),
            "{m}"
        );
    }

    #[test]
    fn a_drill_that_caught_a_fault_injected_on_purpose_is_not_counted_against_the_backup() {
        let config = Config::parse("", "c").unwrap();
        let mut injected = summary("drill-F", false, None);
        injected.fault_injected = true;
        let m = markdown(&EvidencePack {
            drills: vec![
                summary("drill-A", true, None),
                injected,
                summary("drill-B", false, None),
            ],
            ..empty_pack(&config, ts("2026-12-31T00:00:00Z"))
        });
        assert!(
            m.contains("| 3 | 1 (1 failed on a fault injected on purpose) |"),
            "{m}"
        );
        let row = |id: &str| {
            m.lines()
                .find(|l| l.starts_with(&format!("| {id} |")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            row("drill-F").contains("failed on a fault injected on purpose"),
            "{m}"
        );
        assert!(row("drill-B").contains("**FAILED**"), "{m}");
    }

    #[test]
    fn a_failure_message_over_several_lines_stays_one_list_item() {
        let config = Config::parse("", "c").unwrap();
        let mut failures = BTreeMap::new();
        failures.insert(
            "drill".to_string(),
            vec![
                "initdb failed: could not create directory\ninitdb: removing data directory"
                    .to_string(),
            ],
        );
        let m = markdown(&EvidencePack {
            failures,
            ..empty_pack(&config, ts("2026-12-31T00:00:00Z"))
        });
        assert!(
            m.contains("- failed drill: initdb failed: could not create directory<br>initdb: removing data directory\n"),
            "{m}"
        );
        assert!(!m.lines().any(|l| l.starts_with("initdb:")), "{m}");
    }

    #[test]
    fn an_entry_recorded_late_belongs_to_the_period_it_happened_in() {
        let parked = |time: &str, action: &str, ok: bool, details: &str| {
            crate::repository::parked::Parked {
                repository: "/r".into(),
                time: ts(time),
                action: action.into(),
                ok,
                details: details.into(),
                user: "u".into(),
                host: "h".into(),
            }
            .late_details()
        };
        // the repository could not be written from 23:50 to past midnight: the failed
        // backup and the verify were added by the first run of January
        let entries = vec![
            entry_at(
                1,
                "2026-12-31T12:00:00Z",
                "backup",
                "ok",
                "source app recovery point 20261231T1200Z: x",
            ),
            entry_at(
                2,
                "2027-01-01T00:10:00Z",
                "backup",
                "failed",
                &parked(
                    "2026-12-31T23:55:00Z",
                    "backup",
                    false,
                    "source app: the repository is unavailable",
                ),
            ),
            entry_at(
                3,
                "2027-01-01T00:10:01Z",
                "verify",
                "failed",
                &parked(
                    "2026-12-31T23:56:00Z",
                    "verify",
                    false,
                    "1 backup(s), data read: damaged e130108a",
                ),
            ),
            entry_at(
                4,
                "2027-01-01T00:10:02Z",
                "backup",
                "ok",
                "source app recovery point 20270101T0010Z: y",
            ),
        ];
        let december = (ts("2026-12-01T00:00:00Z"), ts("2026-12-31T23:59:59Z"));
        let january = (ts("2027-01-01T00:00:00Z"), ts("2027-01-31T23:59:59Z"));
        let (ok, failed) = operations(&entries, december.0, december.1);
        assert_eq!(ok.get("backup"), Some(&1));
        assert_eq!(failed["backup"].len(), 1, "{failed:?}");
        assert!(
            failed["backup"][0].starts_with("2026-12-31 23:55:00 UTC: "),
            "{failed:?}"
        );
        assert_eq!(failed["verify"].len(), 1, "{failed:?}");
        let (ok, failed) = operations(&entries, january.0, january.1);
        assert_eq!(ok.get("backup"), Some(&1));
        assert!(failed.is_empty(), "{failed:?}");
        // the verify of December, with its finding read without the late note
        let lines = verification_lines(&entries, december.0, december.1);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].time, ts("2026-12-31T23:56:00Z"));
        assert_eq!(lines[0].finding, "damaged e130108a");
        assert!(verification_lines(&entries, january.0, january.1).is_empty());
        let (damaged, _) = damage_history(&entries, december.1);
        assert_eq!(damaged.get("e130108a"), Some(&ts("2026-12-31T23:56:00Z")));
    }

    #[test]
    fn backups_completed_in_the_period_count_those_deleted_since() {
        let whole = |c: char| c.to_string().repeat(64);
        let entries = vec![
            entry_at(1, "2026-11-20T10:00:00Z", "backup", "ok", &format!("source app recovery point 20261120T1000Z: {} logical app (12 bytes)", whole('a'))),
            entry_at(2, "2026-12-05T10:00:00Z", "backup", "ok", &format!("source app recovery point 20261205T1000Z: {} logical app (12 bytes), {} globals - (3 bytes)", whole('b'), whole('c'))),
            // an older entry names its backup by 8 digits
            entry_at(3, "2026-12-06T10:00:00Z", "backup", "ok", "source app recovery point 20261206T1000Z: dddddddd logical app (12 bytes)"),
            entry_at(4, "2026-12-07T10:00:00Z", "backup", "ok", &format!("source app recovery point 20261207T1000Z: {} logical app (12 bytes)", whole('e'))),
            entry_at(5, "2026-12-20T10:00:00Z", audit::DELETED, "ok", &format!("backups {} deleted on purpose: erasure request", whole('b'))),
        ];
        let logged = audit::logged_backups(&entries);
        assert_eq!(logged.len(), 5, "{logged:?}");
        assert!(logged[1].deleted_on_purpose && !logged[3].deleted_on_purpose);
        // the repository holds the November one, the globals and the 8-digit one's backup
        let there = [
            whole('a'),
            whole('c'),
            format!("dddddddd{}", "1".repeat(56)),
        ];
        let held = audit::Held::of(there.iter().map(String::as_str));
        let mut lines = BTreeMap::new();
        let times = count_no_longer_held(
            &mut lines,
            &logged,
            |id| held.holds(id),
            ts("2026-12-01T00:00:00Z"),
            ts("2026-12-31T00:00:00Z"),
        );
        let app = (
            "app".to_string(),
            BackupKind::Logical,
            Some("app".to_string()),
        );
        let l = &lines[&app];
        assert_eq!(
            (l.count, l.no_longer_held, l.deleted_on_purpose),
            (2, 2, 1),
            "{l:?}"
        );
        assert_eq!(l.newest, Some(ts("2026-12-07T10:00:00Z")));
        assert_eq!(times[&app].len(), 2);
        assert!(!lines.contains_key(&("app".to_string(), BackupKind::Globals, None)));
        // a period before both: no line
        let mut before = BTreeMap::new();
        count_no_longer_held(
            &mut before,
            &logged,
            |id| held.holds(id),
            ts("2026-01-01T00:00:00Z"),
            ts("2026-11-30T00:00:00Z"),
        );
        assert!(before.is_empty(), "{before:?}");
        // a period after them: a 0 for the backup gone without a record (whoever deleted
        // it did not say so), none for backups only deleted on purpose (a dropped
        // database's would come back as a 0 in every later pack)
        let mut after = BTreeMap::new();
        count_no_longer_held(
            &mut after,
            &logged,
            |id| held.holds(id),
            ts("2027-01-01T00:00:00Z"),
            ts("2027-01-31T00:00:00Z"),
        );
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(after[&app].count, 0);
        let only_deleted: Vec<audit::LoggedBackup> = logged
            .iter()
            .filter(|b| b.deleted_on_purpose)
            .cloned()
            .collect();
        let mut after = BTreeMap::new();
        count_no_longer_held(
            &mut after,
            &only_deleted,
            |id| held.holds(id),
            ts("2027-01-01T00:00:00Z"),
            ts("2027-01-31T00:00:00Z"),
        );
        assert!(after.is_empty(), "{after:?}");
        let config = Config::parse("", "c").unwrap();
        let m = markdown(&EvidencePack {
            backups: lines.into_values().collect(),
            ..empty_pack(&config, ts("2026-12-31T00:00:00Z"))
        });
        assert!(
            m.contains("| app | logical | app | 2 (2 no longer in the repository: 1 deleted on purpose (`audit deleted`), 1 **gone without a record**) |"),
            "{m}"
        );
    }

    #[test]
    fn the_integrity_section_claims_no_unedited_log_when_a_drill_names_a_head_not_in_it() {
        let entries = vec![entry(
            1,
            "drill",
            "ok",
            "drill-A of logical backup 1234abcd (\"app\"): passed",
        )];
        let config = Config::parse("", "c").unwrap();
        let now = ts("2026-12-31T00:00:00Z");
        // (the test entries' hashes are made up: the chain of none verifies)
        let pack = empty_pack(&config, now);
        assert!(markdown(&pack).contains("verifies (no entry edited, removed or reordered)"));
        // the log was rewritten and rehashed: entry 1 has another hash than drill A saw
        let stored = [summary("drill-A", true, Some(99))];
        let heads = drill_heads_not_in_log(&stored, &entries);
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(drill_heads_not_in_log(&[summary("drill-A", true, Some(1))], &entries).is_empty());
        let rewritten = EvidencePack {
            drill_heads_not_in_log: heads,
            ..pack
        };
        assert!(!rewritten.ok());
        let m = markdown(&rewritten);
        assert!(!m.contains("no entry edited"), "{m}");
        assert!(
            m.contains("is consistent in itself, but **1 drill report(s) name an audit head that is not in the log**"),
            "{m}"
        );
    }

    #[test]
    fn backups_gone_from_the_repository_have_their_own_heading() {
        let config = Config::parse("", "c").unwrap();
        let now = ts("2026-12-31T00:00:00Z");
        let gone = "1 backup(s) the audit log records as stored are no longer in the repository: 38c73584 (logical of app, entry 21 at 2026-12-07 04:35:53 UTC)";
        let m = markdown(&EvidencePack {
            evidence_problems: vec![gone.into()],
            drill_mismatches: 0,
            ..empty_pack(&config, now)
        });
        assert!(!m.contains("drill reports **do not match"), "{m}");
        assert!(
            m.contains(&format!("The repository **does not hold everything the audit log records**, or cannot read all of it:\n\n- {gone}")),
            "{m}"
        );
        let m = markdown(&EvidencePack {
            evidence_problems: vec![
                "drill report d (passed) has no entry in the audit log".into(),
                gone.into(),
            ],
            drill_mismatches: 1,
            ..empty_pack(&config, now)
        });
        assert!(
            m.contains("do not match the audit log**:\n\n- drill report d (passed) has no entry in the audit log\n\nThe repository **does not hold"),
            "{m}"
        );
    }

    #[test]
    fn short_times_keep_a_decimal_and_an_empty_log_says_none() {
        let config = Config::parse("", "c").unwrap();
        let now = Timestamp::now();
        let mut quick = summary("d1", true, None);
        quick.finished_at = now;
        quick.rto_secs = 0.4;
        quick.rpo_secs = 1.26;
        let m = markdown(&EvidencePack {
            drills: vec![quick],
            ..empty_pack(&config, now)
        });
        assert!(m.contains("| 0.4 s | 1.3 s |"), "{m}");
        assert!(
            m.contains("Operations recorded in the audit log (successful / failed):\n\n- none\n"),
            "{m}"
        );
        assert_eq!(secs(8.0), "8 s");
        assert_eq!(secs(45.0), "45 s");
    }

    #[test]
    fn retention_and_copies_are_reported_as_configured_not_in_place() {
        let text = r#"
[[copies]]
url = "/nonexistent/offsite"

[[source]]
name = "app-db"
kind = "postgres"
retention = { last = 7, hourly = 24, daily = 30, weekly = 8, monthly = 12, yearly = 7, schema_days = 90 }
"#;
        let config = Config::parse(text, "lifeboat.toml").unwrap();
        let now = Timestamp::now();
        let pack = empty_pack(&config, now);
        // a configured source without a single backup is a row of its own
        let m = markdown(&EvidencePack {
            objectives: BTreeMap::from([("newsrc".to_string(), (Some("1h".into()), None))]),
            ..pack.clone()
        });
        assert!(m.contains("| newsrc | — | — | **0** |"), "{m}");
        let m = markdown(&pack);
        assert!(
            m.contains(
                "- retention: app-db: configured: last 7, hourly 24, daily 30, weekly 8, monthly 12, \
                 yearly 7, schema_days 90 — **not enforced**: lifeboat does not prune yet"
            ),
            "{m}"
        );
        assert!(
            m.contains(
                "- offsite copies: configured destination `/nonexistent/offsite` — no copy has been made by lifeboat"
            ),
            "{m}"
        );
        let json = serde_json::to_value(&pack).unwrap();
        assert_eq!(json["retention"][0]["enforced"], false, "{json}");
        // made without any configured source: a drill's objective is not "now not set"
        let mut drilled = summary("d1", true, None);
        drilled.finished_at = now;
        drilled.rto_objective_secs = Some(3600.0);
        let bare = EvidencePack {
            drills: vec![drilled.clone()],
            ..pack.clone()
        };
        let m = markdown(&bare);
        assert!(
            m.contains("(not configured where this pack was made)") && !m.contains("now not set"),
            "{m}"
        );
        // objectives changed in the period: each one the drills were judged against; a
        // drill whose restore failed shows no achieved time
        let mut failed = summary("d2", false, None);
        failed.finished_at = now;
        failed.rto_objective_secs = Some(8.0);
        failed.rto_secs = 11.0;
        failed.not_achieved = true;
        let changed = EvidencePack {
            drills: vec![drilled, failed],
            objectives: BTreeMap::from([("app".to_string(), (Some("8s".into()), None))]),
            ..pack
        };
        let m = markdown(&changed);
        assert!(
            m.contains("| app | 60 min, 8 s (changed in the period; now 8s) |"),
            "{m}"
        );
        assert!(
            m.contains("| **FAILED** | not achieved | not achieved |"),
            "{m}"
        );
        assert!(!m.contains("| 11 s |"), "{m}");
        let mut estimate = summary("d3", true, None);
        estimate.finished_at = now;
        estimate.extrapolation_misses_rto = true;
        let m = markdown(&EvidencePack {
            drills: vec![estimate],
            ..changed
        });
        assert!(
            m.contains("| passed (**at production's size the restore would miss the RTO**) |"),
            "{m}"
        );
        assert_eq!(json["retention"][0]["configured"]["weekly"], 8, "{json}");
        assert_eq!(json["copies"][0]["copies_made"], 0, "{json}");
        assert_eq!(json["copies"][0]["holds_repository"], false, "{json}");
    }
}
