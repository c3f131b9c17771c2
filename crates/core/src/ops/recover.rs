//! Physical restore and point-in-time recovery: a base backup unpacked into an empty
//! directory, recovery settings for PostgreSQL 15 (`recovery.signal`, a `restore_command`
//! calling `lifeboat wal-fetch`, the target), and optionally the server started and
//! watched until recovery ends, reporting the point actually reached.
//!
//! Before anything is written the archive is checked: a missing segment between the
//! backup and the target is named, with the last point that can be reached.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    error::{Error, ErrorKind, Result},
    ops::{
        list::{list, ListFilter},
        restore::dump_checked,
    },
    repository::{Repo, SnapshotInfo},
    sources::postgres::{
        cluster::{pg_ctl_cmd, run_as},
        conn::{missing_program, PgBin},
        logical::BackupKind,
        physical::PhysicalMeta,
    },
    wal::{self, ChainStart, Lsn, SegmentName, WalStore},
};

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "value")]
pub enum RecoveryTarget {
    /// Replay all archived WAL.
    Latest,
    /// Stop at the end of the base backup (the earliest consistent point).
    Immediate,
    /// A point in time.
    Time(Timestamp),
    /// A WAL position.
    Lsn(Lsn),
    /// A transaction id.
    Xid(u64),
    /// A restore point made with `pg_create_restore_point`.
    Name(String),
}

/// What to do when the target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    /// Open for writes on a new timeline.
    #[default]
    Promote,
    /// Stay read-only so the result can be inspected first.
    Pause,
    /// Stop the server.
    Shutdown,
}

impl TargetAction {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Pause => "pause",
            Self::Shutdown => "shutdown",
        }
    }
}

/// How to run a physical restore.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// Source whose backups and WAL are used.
    pub source: String,
    /// A snapshot id; default: the newest backup that can reach the target.
    pub backup: Option<String>,
    /// Use the newest backup finished before this time (for name and xid targets, which
    /// do not say when they were made).
    pub before: Option<Timestamp>,
    /// The empty (or new) data directory to create.
    pub to_dir: PathBuf,
    /// Where to stop.
    pub target: RecoveryTarget,
    /// Stop after (true) or before (false) the target.
    pub inclusive: bool,
    /// `recovery_target_timeline`: `latest` (default), `current` or a number.
    pub timeline: Option<String>,
    /// What to do at the target.
    pub action: TargetAction,
    /// The `restore_command` to write (it must call `lifeboat wal-fetch` for this source).
    pub restore_command: String,
    /// Keep the restored server's archive_command (false: `archive_mode = off`).
    pub keep_archiving: bool,
    /// Start the server and wait for recovery to end.
    pub start: bool,
    /// Port for the started server (default: the backup's setting).
    pub port: Option<u16>,
    /// Socket directory for the started server.
    pub socket_dir: Option<PathBuf>,
    /// OS user owning the files and running the server (default: the current user; when
    /// root, `LIFEBOAT_PG_USER` or `postgres`).
    pub owner: Option<String>,
    /// Seconds to wait for recovery when starting (0 = no limit).
    pub timeout_secs: u64,
    /// Where the PostgreSQL server programs are (default: the newest installed).
    pub pg_bin_dir: Option<PathBuf>,
    /// A drill's throw-away copy: when lifeboat starts it, it listens on its private socket
    /// only (no TCP), lets only local connections in (without a password, through a
    /// private socket), and starts no logical replication workers, so that it can never
    /// be reached from outside nor reach a publisher of the production cluster.
    pub isolate: bool,
    /// Shell commands run before anything is written (stop the application) and after the
    /// restore succeeded (with `start`: once the server reached the target). They get the
    /// backup's variables, `LIFEBOAT_TARGET_DIR` and, with `start`,
    /// `LIFEBOAT_TARGET_CONNINFO`.
    pub hooks: crate::config::Hooks,
    /// Skip the check that the directory's file system has room for the unpacked backup
    /// (a compressing file system, ZFS or btrfs, holds more than its free space says).
    pub skip_space_check: bool,
}

/// Where recovery ended, read from the server.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct ReachedPoint {
    /// Last replayed WAL position.
    pub lsn: Option<String>,
    /// Commit time of the last replayed transaction.
    pub last_transaction: Option<String>,
    /// PostgreSQL's own words on why it stopped (`recovery stopping before …`).
    pub stop_reason: Option<String>,
    /// Timeline the server runs on now.
    pub timeline: Option<u32>,
    /// Whether the server is still in recovery (paused at the target).
    pub in_recovery: bool,
    /// Where the running server listens: its socket directory and port.
    pub listen: Option<(PathBuf, u16)>,
    /// Paused at the target: the tables the replayed, unfinished transaction holds
    /// exclusively (`db: schema.table`); a query on them waits until recovery resumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<String>,
    /// Unlogged tables (`db: schema.table`): PostgreSQL keeps their rows in no base backup
    /// and no WAL, so they came back empty, as after a crash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged: Vec<String>,
    /// WAL files lifeboat handed to the recovery itself (see [`wal::spool::Serving`]);
    /// the others, if any, each `wal-fetch` fetched alone.
    #[serde(default)]
    pub wal_served: u64,
}

/// What a physical restore did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RecoverReport {
    /// The base backup used.
    pub backup: SnapshotInfo,
    /// The data directory.
    pub to_dir: PathBuf,
    /// The target.
    pub target: RecoveryTarget,
    /// The last point the archive can reach from this backup.
    pub reachable_lsn: String,
    /// When the last reachable segment was archived.
    pub reachable_time: Option<Timestamp>,
    /// Seconds fetching and unpacking the base backup.
    pub fetch_secs: f64,
    /// Seconds of WAL replay (with `start`).
    pub replay_secs: Option<f64>,
    /// Where recovery ended (with `start`).
    pub reached: Option<ReachedPoint>,
    /// The server log (with `start`).
    pub log: Option<PathBuf>,
    /// Port of the started server.
    pub port: Option<u16>,
    /// How to start the server (without `start`).
    pub start_hint: Option<String>,
    /// The OS user the files belong to and the server runs as (when lifeboat runs as root).
    pub owner: Option<String>,
    /// Configuration files the backup did not hold (the cluster kept them outside its data
    /// directory, as Debian's packages do) and the restore wrote, minimal.
    #[serde(default)]
    pub config_written: Vec<String>,
    /// The backup's socket directories that do not exist on this host (it was restored
    /// elsewhere, after a host loss), and where the server's socket went instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_socket: Option<MovedSocket>,
    /// The restored configuration's `archive_command` (what archiving runs once it is
    /// turned back on), when it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_command: Option<String>,
}

/// Where a restored server's socket went because the backup's directory is not on this host.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MovedSocket {
    /// The directories the backup's configuration names, missing here.
    pub missing: Vec<PathBuf>,
    /// The directory used instead.
    pub to: PathBuf,
}

fn physical_of(b: &SnapshotInfo) -> Result<&PhysicalMeta> {
    b.meta.physical.as_ref().ok_or_else(|| {
        Error::config(format!(
            "backup {} is a {} backup, not a physical one",
            b.short_id(),
            b.meta.kind
        ))
        .hint("pick a physical backup: `lifeboat list --kind physical`")
    })
}

/// Picks the base backup: the given id, or the newest that ends before the target.
fn select(repo: &Repo, opts: &RecoverOptions) -> Result<SnapshotInfo> {
    if let Some(id) = &opts.backup {
        let b = super::restore::of_source(repo.backup(id)?, Some(&opts.source))?;
        let p = physical_of(&b)?;
        if matches!(opts.timeline.as_deref(), None | Some("latest")) {
            let store = WalStore::new(repo, &opts.source)?;
            if let Some((newest, switch)) =
                crate::wal::status::LatestTimeline::new(&store)?.left(p.timeline, p.stop_lsn)?
            {
                return Err(Error::config(format!(
                    "backup {} is on timeline {}, which timeline {newest} left at LSN {switch}, before the backup ended at {}: recovery to the latest timeline cannot start from it (a backup of an old primary after a failover)",
                    b.short_id(),
                    p.timeline,
                    p.stop_lsn
                ))
                .hint("leave out the id (the newest backup on the latest timeline is taken), or pass --target-timeline current to recover along the backup's own timeline, the old primary's writes included"));
            }
        }
        return Ok(b);
    }
    let listed = list(
        repo,
        &ListFilter {
            source: Some(opts.source.clone()),
            kind: Some(BackupKind::Physical),
            ..ListFilter::default()
        },
    )?;
    // none at all: a name mistyped is told the names there are (before the audit log
    // leaves out backups it does not record, which are said on their own)
    if listed.is_empty() {
        return Err(no_physical_backup_of(repo, &opts.source));
    }
    let all = crate::repository::audit::logged_only(repo, listed)?;
    // recovery to the latest timeline follows the newest one; a backup its history does
    // not contain (taken on an old primary after a failover) would fail to recover, so the
    // newest backup that it does contain is taken
    let store = WalStore::new(repo, &opts.source)?;
    let latest = match opts.timeline.as_deref() {
        None | Some("latest") => Some(crate::wal::status::LatestTimeline::new(&store)?),
        Some(_) => None,
    };
    let on_newest = |b: &SnapshotInfo| match (&latest, &b.meta.physical) {
        (Some(l), Some(p)) => l.left(p.timeline, p.stop_lsn).map(|left| left.is_none()),
        _ => Ok(true),
    };
    let fits = |b: &SnapshotInfo| {
        opts.before.is_none_or(|t| b.meta.finished_at <= t)
            && match (&opts.target, &b.meta.physical) {
                (RecoveryTarget::Time(t), _) => b.meta.finished_at <= *t,
                (RecoveryTarget::Lsn(l), Some(p)) => p.stop_lsn <= *l,
                _ => true,
            }
    };
    let mut chosen = None;
    for b in all.into_iter().rev().filter(fits) {
        if on_newest(&b)? {
            chosen = Some(b);
            break;
        }
    }
    chosen.ok_or_else(|| {
        Error::not_found(format!(
            "no physical backup of source {:?} can reach {}",
            opts.source,
            describe_target(&opts.target)
        ))
        .hint("a point-in-time restore starts from a base backup finished before the target: `lifeboat list --kind physical`")
    })
}

/// A source without one physical backup: a misspelled name (a configuration written anew
/// after a host loss) is told the names the repository's base backups have.
fn no_physical_backup_of(repo: &Repo, source: &str) -> Error {
    let mut others: Vec<String> = repo
        .backups()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.meta.kind == BackupKind::Physical && b.meta.source != source)
        .map(|b| b.meta.source)
        .collect();
    others.sort();
    others.dedup();
    let e = Error::not_found(format!(
        "source {source:?} has no physical backup in the repository at {}",
        repo.location()
    ));
    if others.is_empty() {
        e.hint("the repository holds no physical backup of another source either: a point-in-time restore starts from one (`lifeboat backup --kind physical`)")
    } else {
        e.hint(format!(
            "the repository has physical backups of source(s) {}: pass --source with that name, or give the [[source]] that name",
            others.join(", ")
        ))
    }
}

/// A recovery target in words.
#[must_use]
pub fn describe_target(t: &RecoveryTarget) -> String {
    match t {
        RecoveryTarget::Latest => "the end of the archive".into(),
        RecoveryTarget::Immediate => "the end of the backup".into(),
        RecoveryTarget::Time(t) => format!("time {t}"),
        RecoveryTarget::Lsn(l) => format!("LSN {l}"),
        RecoveryTarget::Xid(x) => format!("transaction {x}"),
        RecoveryTarget::Name(n) => format!("restore point {n:?}"),
    }
}

fn check_empty(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(Error::new(
                    ErrorKind::TargetNotEmpty,
                    format!("{} is not empty", dir.display()),
                )
                .hint("a physical restore writes a whole data directory: give a new or empty directory (nothing was changed)"));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir.display(), e)),
    }
}

/// Said by a restore refused for want of room, so that a drill can tell its own full disk
/// from a bad backup (lowercase: it is matched in an error's lowercased text).
pub(crate) const NO_ROOM: &str = "has too little free space for";

/// Refuses a restore whose directory's file system cannot take the unpacked backup and a
/// few WAL segments: found out before the first byte is written (a dry run says it too),
/// not when the disk fills halfway through.
fn room_for(to_dir: &Path, backup: &SnapshotInfo, segment_size: u64) -> Result<()> {
    // the directory may not exist yet: its file system is its nearest existing ancestor's
    let absolute = std::path::absolute(to_dir).unwrap_or_else(|_| to_dir.to_path_buf());
    let Some(existing) = absolute.ancestors().find(|a| a.exists()) else {
        return Ok(());
    };
    let Some(free) = crate::repository::free_space(&existing.display().to_string()) else {
        return Ok(());
    };
    let needed = backup.meta.logical_bytes + 3 * segment_size;
    if free >= needed {
        return Ok(());
    }
    Err(Error::unavailable(format!(
        "the file system of {} {NO_ROOM} backup {}: {} free, and it needs {} (the backup unpacks to {}, and WAL replay needs three segments more at least)",
        to_dir.display(),
        backup.short_id(),
        bytesize::ByteSize::b(free),
        bytesize::ByteSize::b(needed),
        bytesize::ByteSize::b(backup.meta.logical_bytes)
    ))
    .hint("free space there, or give --to-dir a directory on a larger disk (nothing was written); on a compressing file system (ZFS, btrfs) that holds more than its free space says, --no-space-check skips this check"))
}

/// A `--target-timeline` number. PostgreSQL reads the setting as C does (`010` is octal
/// 8, `0x10` hex 16), lifeboat in decimal: a leading zero (a timeline copied from a file
/// name, `00000010`) would have the two follow different timelines, so it is refused.
fn timeline_number(n: &str) -> Result<u32> {
    match n.parse::<u32>() {
        Ok(t) if t > 0 && !n.starts_with('0') && !n.starts_with('+') => Ok(t),
        _ => Err(Error::config(format!(
            "--target-timeline {n:?} is not a timeline: give latest, current or a number"
        ))
        .hint("in decimal, without leading zeros: timeline 00000010 of a WAL file name (hex) is --target-timeline 16")),
    }
}

/// Checks the archive can carry the backup to the target; returns the chain's reach.
fn check_archive(
    store: &WalStore,
    backup: &SnapshotInfo,
    phys: &PhysicalMeta,
    target: &RecoveryTarget,
    timeline: Option<&str>,
) -> Result<wal::Reachable> {
    let start = ChainStart {
        target_timeline: match timeline.map(str::trim) {
            None | Some("latest") => None,
            Some("current") => Some(phys.timeline),
            Some(n) => Some(timeline_number(n)?),
        },
        ..ChainStart::of_backup(&backup.id, phys)
    };
    let st = wal::status(store, Some(&start), phys.wal_segment_size)?;
    // a timeline that is neither the backup's nor archived: PostgreSQL would refuse it only
    // after the whole unpack
    if let Some(n) = start.target_timeline.filter(|n| *n != phys.timeline) {
        if !st.timelines.iter().any(|t| t.timeline == n) {
            return Err(Error::not_found(format!(
                "timeline {n} is not in the archive (archived: {}; backup {} is on timeline {})",
                st.timelines
                    .iter()
                    .map(|t| t.timeline.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                backup.short_id(),
                phys.timeline
            ))
            .hint("give a timeline `lifeboat wal status` lists, or leave --target-timeline out to follow the latest"));
        }
    }
    let reach = st.reachable.expect("a chain start was given");
    let seg = |l: Lsn| SegmentName::containing(phys.timeline, l, phys.wal_segment_size);
    if !phys.wal_included && reach.until_lsn < phys.stop_lsn {
        let missing = reach
            .blocked_by
            .clone()
            .unwrap_or_else(|| seg(reach.until_lsn).to_string());
        return Err(Error::not_found(format!(
            "WAL segment {missing} is not in the archive, and backup {} needs the WAL up to {} (segment {}) to be consistent",
            backup.short_id(),
            phys.stop_lsn,
            seg(phys.stop_lsn)
        ))
        .hint("check that archive_command runs `lifeboat wal-push` (`lifeboat wal status`), or restore an older backup"));
    }
    let short = match target {
        RecoveryTarget::Lsn(l) => reach.until_lsn < *l,
        RecoveryTarget::Time(t) => {
            reach.blocked_by.is_some() && reach.until_time.is_some_and(|u| u < *t)
        }
        RecoveryTarget::Latest => reach.blocked_by.is_some(),
        _ => false,
    };
    if short && reach.blocked_by.is_none() {
        // nothing is missing: the target lies past what has been archived so far
        return Err(Error::not_found(format!(
            "the WAL archive ends at LSN {}{} (end of {}): recovery from backup {} cannot reach {}",
            reach.until_lsn,
            reach.until_time.map(|t| format!(", archived {t}")).unwrap_or_default(),
            reach.last_segment,
            backup.short_id(),
            describe_target(target)
        ))
        .hint(format!(
            "the WAL up to the target is not archived yet: on the server, `SELECT pg_switch_wal()` hands the current segment to archive_command; check `lifeboat wal status`, or restore up to --target-lsn {} (the last record the archive holds whole)",
            reachable_target(store, &reach, phys.stop_lsn)
        )));
    }
    if short {
        let missing = reach
            .blocked_by
            .clone()
            .unwrap_or_else(|| seg(reach.until_lsn).to_string());
        return Err(Error::not_found(format!(
            "WAL segment {missing} is missing from the archive: recovery from backup {} can reach only LSN {}{} (end of {}), not {}",
            backup.short_id(),
            reach.until_lsn,
            reach.until_time.map(|t| format!(", archived {t}")).unwrap_or_default(),
            reach.last_segment,
            describe_target(target)
        ))
        .hint(format!(
            "restore up to the gap with --target-lsn {} (the last record before it), or find the segment (the server's pg_wal, another copy of the archive) and push it with `lifeboat wal-push`",
            reachable_target(store, &reach, phys.stop_lsn)
        )));
    }
    // the followed timeline has no segment in the archive yet (its history file alone was
    // pushed): recovery ends at its branch point, and wal-fetch withholds the old
    // timeline's WAL past it; said here, not only in the server's log
    if SegmentName::parse(&reach.last_segment).is_some_and(|s| s.timeline < reach.timeline) {
        crate::sources::postgres::cluster::note(format!(
            "timeline {t}, which recovery follows, has no segment after its branch in the archive yet: recovery ends at LSN {} at the latest, before the branch; to include what was written on timeline {t}: on the server promoted to it, turn archiving on (archive_mode = on and a restart: a restore leaves it off) and run select pg_switch_wal(), or push its segments from its pg_wal with `lifeboat wal-push`; then restore again",
            reach.until_lsn,
            t = reach.timeline
        ));
    }
    Ok(reach)
}

/// The start of the last record the reachable segments hold whole: an inclusive
/// `--target-lsn` recovery reaches (the end of the last segment is none, since no record
/// starts there and the next segment is missing). That end when the segment cannot be read.
fn reachable_target(store: &WalStore, reach: &wal::Reachable, backup_end: Lsn) -> Lsn {
    SegmentName::parse(&reach.last_segment)
        .and_then(|s| store.get(&wal::WalFile::Segment(s)).ok().flatten())
        .and_then(|bytes| wal::records::last_whole_record(&bytes))
        // never before the backup's end: recovery cannot stop before it is consistent
        .map_or(reach.until_lsn, |l| l.max(backup_end))
}

fn quote(s: &str) -> String {
    conf_quote(s)
}

/// `s` as a quoted value in a PostgreSQL configuration file: `'` doubled, and `\\`
/// doubled too, since the file's strings read a backslash as an escape (`\\t` is a tab).
#[must_use]
pub fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The value the restored configuration in `dir` gives `name`: `postgresql.conf`, then
/// `postgresql.auto.conf` (which overrides it); `include` directives are not followed.
fn conf_setting(dir: &Path, name: &str) -> Option<String> {
    let mut value = None;
    for file in ["postgresql.conf", "postgresql.auto.conf"] {
        let Ok(text) = crate::sources::postgres::text::read_file(&dir.join(file)) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = conf_line(line, name) {
                value = Some(v);
            }
        }
    }
    value
}

/// The value of `name` on one configuration line (`name = 'value'  # comment`, the `=`
/// optional, the name in any case), `None` when the line sets something else.
fn conf_line(line: &str, name: &str) -> Option<String> {
    let line = line.trim_start();
    let key_end = line
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(line.len());
    if !line[..key_end].eq_ignore_ascii_case(name) {
        return None;
    }
    let rest = line[key_end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    if let Some(quoted) = rest.strip_prefix('\'') {
        let mut value = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => return Some(value),
                '\\' => match chars.next() {
                    Some('b') => value.push('\u{8}'),
                    Some('f') => value.push('\u{c}'),
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('t') => value.push('\t'),
                    Some(d @ '0'..='7') => {
                        let mut code = d.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.next_if(|c| ('0'..='7').contains(c)) {
                                Some(c) => code = code * 8 + c.to_digit(8).unwrap_or(0),
                                None => break,
                            }
                        }
                        value.extend(char::from_u32(code));
                    }
                    Some(next) => value.push(next),
                    None => {}
                },
                c => value.push(c),
            }
        }
        return None;
    }
    let value = rest.split('#').next().unwrap_or("").trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The socket directories of the restored configuration in `dir` that are not on this
/// host: PostgreSQL will not start without them.
fn missing_socket_dirs(dir: &Path) -> Vec<PathBuf> {
    conf_setting(dir, "unix_socket_directories")
        .map(|v| {
            directory_list(&v)
                .into_iter()
                .map(PathBuf::from)
                .filter(|d| d.is_absolute() && !d.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// The directories of a list setting as PostgreSQL splits it: separated by commas, each
/// trimmed, and double-quoted (`""` for a quote) when ALTER SYSTEM wrote it.
fn directory_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                if c == '"' && chars.next_if_eq(&'"').is_none() {
                    break;
                }
                item.push(c);
            }
            while chars.next_if(|c| *c != ',').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            item = item.trim_end().to_string();
        }
        if !item.is_empty() {
            out.push(item);
        }
        if chars.next().is_none() {
            return out;
        }
    }
}

/// Where the socket goes when the backup's directory is not on this host: where this
/// host's packaged PostgreSQL and psql look (Debian's), else PostgreSQL's own default.
fn socket_dir_here(owner: Option<&nix::unistd::User>) -> PathBuf {
    let debian = Path::new("/var/run/postgresql");
    let writable = match owner {
        // the server runs as `owner`: the directory must let that user in
        Some(u) => std::fs::metadata(debian).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.is_dir()
                && (m.uid() == u.uid.as_raw()
                    || (m.gid() == u.gid.as_raw() && m.mode() & 0o020 != 0)
                    || m.mode() & 0o002 != 0)
        }),
        None => {
            debian.is_dir() && nix::unistd::access(debian, nix::unistd::AccessFlags::W_OK).is_ok()
        }
    };
    if writable {
        debian.to_path_buf()
    } else {
        PathBuf::from("/tmp")
    }
}

/// `command` with the values of its environment assignments (`PGPASSWORD=...`) left out:
/// an archive_command may carry a secret, and a restore's output ends up in tickets.
pub(crate) fn redact_assignments(command: &str) -> String {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars().peekable();
    let mut at_word = true;
    while let Some(c) = chars.next() {
        out.push(c);
        if at_word && (c.is_ascii_alphabetic() || c == '_') {
            let mut name = String::from(c);
            while let Some(n) = chars.next_if(|n| n.is_ascii_alphanumeric() || *n == '_') {
                name.push(n);
                out.push(n);
            }
            if chars.next_if_eq(&'=').is_some() {
                out.push('=');
                if matches!(name.as_str(), "LIFEBOAT_CONFIG" | "LIFEBOAT_REPOSITORY") {
                    continue;
                }
                out.push('…');
                // the value: up to whitespace outside quotes
                let mut quote = None;
                while let Some(v) = chars.next_if(|v| quote.is_some() || !v.is_whitespace()) {
                    match (quote, v) {
                        (None, '\'' | '"') => quote = Some(v),
                        (Some(q), v) if v == q => quote = None,
                        _ => {}
                    }
                }
            }
            at_word = false;
            continue;
        }
        // a word starts after a blank, an operator, or a quote or parenthesis that opens
        // a command of its own (`sh -c 'PGPASSWORD=... cmd'`)
        at_word = c.is_whitespace() || matches!(c, ';' | '&' | '|' | '\'' | '"' | '(' | '`');
    }
    out
}

const BLOCK_BEGIN: &str = "# lifeboat restore: begin";
const BLOCK_END: &str = "# lifeboat restore: end";

/// `postgresql.auto.conf` without an earlier restore's settings: a base backup taken of a
/// server that was itself restored carries them, and a stale recovery target would stop
/// the next recovery at the old point.
fn without_recovery_settings(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with(BLOCK_BEGIN) {
            inside = true;
            continue;
        }
        if line.starts_with(BLOCK_END) {
            inside = false;
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if inside || key == "restore_command" || key.starts_with("recovery_target") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The settings appended to `postgresql.auto.conf`, for a recovery of a base backup that
/// started at `start` and ended at `stop`.
fn recovery_settings(opts: &RecoverOptions, start: Lsn, stop: Lsn) -> String {
    let mut s = format!(
        "{BLOCK_BEGIN} at {}\nrestore_command = {}\n",
        Timestamp::now(),
        quote(&opts.restore_command)
    );
    // for `wal-fetch`, which refuses WAL that would create a tablespace only where this
    // recovery replays it (see wal::replay_window)
    s.push_str(&format!("{} {start}\n", wal::REPLAY_FROM));
    if opts.target == RecoveryTarget::Immediate {
        s.push_str(&format!("{} {stop}\n", wal::REPLAY_BEFORE));
    }
    match &opts.target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Immediate => s.push_str("recovery_target = 'immediate'\n"),
        RecoveryTarget::Time(t) => s.push_str(&format!(
            "recovery_target_time = {}\n",
            quote(&t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        )),
        RecoveryTarget::Lsn(l) => s.push_str(&format!("recovery_target_lsn = '{l}'\n")),
        RecoveryTarget::Xid(x) => s.push_str(&format!("recovery_target_xid = '{x}'\n")),
        RecoveryTarget::Name(n) => s.push_str(&format!("recovery_target_name = {}\n", quote(n))),
    }
    if !matches!(
        opts.target,
        RecoveryTarget::Latest | RecoveryTarget::Immediate
    ) {
        s.push_str(&format!("recovery_target_inclusive = {}\n", opts.inclusive));
    }
    s.push_str(&format!(
        "recovery_target_timeline = {}\nrecovery_target_action = '{}'\n",
        quote(opts.timeline.as_deref().map_or("latest", str::trim)),
        opts.action.as_str()
    ));
    if !opts.keep_archiving {
        s.push_str("archive_mode = off\n");
    }
    if let Some(p) = opts.port {
        s.push_str(&format!("port = {p}\n"));
    }
    if let Some(d) = &opts.socket_dir {
        s.push_str(&format!(
            "unix_socket_directories = {}\n",
            quote(&crate::sources::postgres::cluster::socket_dir_item(d))
        ));
    }
    s.push_str(BLOCK_END);
    s.push('\n');
    s
}

/// The file a drill's isolated server takes its client authentication from.
pub(crate) const ISOLATED_HBA: &str = "lifeboat-drill-hba.conf";

/// Server options for a start lifeboat drives (`pg_ctl -o`), not written to any file: the
/// log must go to the `-l` file lifeboat reads (a `logging_collector` would take it
/// elsewhere), and a drill's copy is isolated (see [`RecoverOptions::isolate`]).
fn start_options(opts: &RecoverOptions) -> String {
    // the log is read for what recovery did (where it stopped, why it ended): in
    // PostgreSQL's own words, whatever language the cluster was set up to log in
    let mut o = String::from("-c logging_collector=off -c lc_messages=C");
    if opts.isolate {
        // pg_ctl hands these options to a shell
        o.push_str(&format!(
            " -c listen_addresses='' -c max_logical_replication_workers=0 -c hba_file={}",
            crate::sources::postgres::cluster::shell_quote(
                &opts.to_dir.join(ISOLATED_HBA).display().to_string()
            )
        ));
    }
    o
}

/// Removes lifeboat's `logging_collector=off` and `lc_messages=C` from `postmaster.opts`,
/// which `pg_ctl restart` reuses: a restored server that becomes the primary must log as
/// configured, not into `recovery.log` for ever. The running server keeps them until its
/// next restart.
fn forget_start_options(dir: &Path) {
    let path = dir.join("postmaster.opts");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let cleaned = text
            .replace(" \"-c\" \"logging_collector=off\"", "")
            .replace(" \"-c\" \"lc_messages=C\"", "");
        if cleaned != text {
            let _ = std::fs::write(&path, cleaned);
        }
    }
}

/// Writes the configuration files a base backup lacks when the cluster kept them outside
/// its data directory (Debian's `/etc/postgresql/<version>/<cluster>/`): a server cannot
/// start without them. The restored server gets defaults, with a comment naming where the
/// original was; its settings (memory, extensions) are the operator's to carry over.
/// Returns the names of the files written.
fn fill_missing_config(dir: &Path, phys: &PhysicalMeta) -> Result<Vec<String>> {
    let origin = phys
        .config_file
        .as_deref()
        .map(|f| format!(" (it was {f})"))
        .unwrap_or_default();
    let files = [
        (
            "postgresql.conf",
            format!(
                "# Written by `lifeboat restore`: the backed-up cluster kept its configuration outside\n\
                 # its data directory{origin}, so the base backup holds none. These are defaults:\n\
                 # carry the original's settings over (shared_buffers, shared_preload_libraries, ...).\n\
                 # Recovery settings are in postgresql.auto.conf.\n{}",
                original_settings(&phys.settings)
            ),
        ),
        (
            "pg_hba.conf",
            "# Written by `lifeboat restore` (the backup held none): local connections as the\n\
             # matching OS user, passwords over TCP on this host only. Carry the original's rules over.\n\
             local   all             all                                     peer\n\
             host    all             all             127.0.0.1/32            scram-sha-256\n\
             host    all             all             ::1/128                 scram-sha-256\n\
             local   replication     all                                     peer\n"
                .to_string(),
        ),
        (
            "pg_ident.conf",
            "# Written by `lifeboat restore` (the backup held none).\n".to_string(),
        ),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, text).map_err(|e| Error::io(path.display(), e))?;
            written.push(name.to_string());
        }
    }
    Ok(written)
}

/// The original's settings (see [`PhysicalMeta::settings`]) for the configuration a
/// restore writes: its port applied, as a configuration in the backup would have it (a
/// restore beside the original passes --port), the rest as comments, since the files,
/// directories and libraries they name may not exist on this host.
fn original_settings(settings: &[(String, String)]) -> String {
    if settings.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if let Some((_, port)) = settings.iter().find(|(n, _)| n == "port") {
        out.push_str(&format!("port = {}\n", conf_quote(port)));
    }
    out.push_str(
        "\n# What the original's configuration set when the backup was taken (settings that may\n\
         # hold passwords left out); uncomment what applies on this host:\n",
    );
    for (name, value) in settings.iter().filter(|(n, _)| n != "port") {
        out.push_str(&format!("#{name} = {}\n", conf_quote(value)));
    }
    out
}

/// The OS user that owns the restored files.
pub(crate) fn owner(opts: &RecoverOptions) -> Result<Option<nix::unistd::User>> {
    let name = opts.owner.clone().or_else(run_as);
    let Some(name) = name else { return Ok(None) };
    nix::unistd::User::from_name(&name)
        .ok()
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            Error::config(format!("user {name:?} does not exist"))
                .hint("pass --owner with the OS user that runs PostgreSQL")
        })
}

fn chown_tree(dir: &Path, user: &nix::unistd::User) -> Result<()> {
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid))
        .map_err(|e| Error::unavailable(format!("chown {}: {e}", dir.display())))?;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            chown_tree(&path, user)?;
        } else {
            // the link itself: chown follows a link, and a base backup may hold one to a
            // file outside (a `server.key` linked to /etc/ssl), which must keep its owner
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &path,
                Some(user.uid),
                Some(user.gid),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::unavailable(format!("chown {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// Streams the base backup out of the repository into `dir`, checking its hash.
fn unpack(repo: &Repo, backup: &SnapshotInfo, dir: &Path) -> Result<()> {
    let (reader, mut writer) =
        std::io::pipe().map_err(|e| Error::io("creating a pipe for the restore", e))?;
    {
        use std::os::fd::AsFd;
        // a 1 MiB pipe: far fewer hand-overs between the two threads than the 64 KiB default
        let _ = nix::fcntl::fcntl(writer.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    }
    std::thread::scope(|scope| {
        let dumper = scope.spawn(move || {
            let r = repo.with_indexed(|indexed| dump_checked(indexed, backup, &mut writer));
            drop(writer);
            r
        });
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, reader));
        let unpacked = unpack_entries(&mut archive, dir);
        // drain what tar did not read so the dumper can finish and check the hash
        let mut rest = archive.into_inner();
        let _ = std::io::copy(&mut rest, &mut std::io::sink());
        let dumped = dumper
            .join()
            .map_err(|_| Error::internal("the restore stream panicked"))?;
        dumped?;
        unpacked.map_err(|e| Error::io(format!("unpacking into {}", dir.display()), e))
    })?;
    Ok(())
}

/// Unpacks every member under `dir`. Regular files are copied with a 1 MiB buffer (the
/// tar crate's own copy moves 8 KiB per write, 180 000 writes for a 1.4 GB cluster);
/// everything else goes through the tar crate, which also refuses paths leaving `dir`.
fn unpack_entries<R: std::io::Read>(
    archive: &mut tar::Archive<R>,
    dir: &Path,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 1 << 20];
    // an interrupt removes the directory: writing on would refill it while it goes
    let stop = || {
        crate::sources::postgres::cluster::interrupted()
            .then(|| std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"))
    };
    // a link unpacked earlier could lead a later file's path out of `dir` (a base backup
    // has none, tablespaces are refused; a forged one could): from then on every member
    // goes through the tar crate's checks
    let mut linked = false;
    for entry in archive.entries()? {
        if let Some(e) = stop() {
            return Err(e);
        }
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let safe = path.is_relative()
            && path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        let kind = entry.header().entry_type();
        linked |= kind.is_symlink() || kind.is_hard_link();
        if !kind.is_file() || !safe || linked {
            entry.set_preserve_permissions(true);
            entry.unpack_in(dir)?;
            continue;
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(e) = stop() {
                return Err(e);
            }
            file.write_all(&buf[..n])?;
        }
        let mode = entry.header().mode().unwrap_or(0o600) & 0o7777;
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    Ok(())
}

/// `text` from the server's log with its time (the whole of it, or after its last
/// ", time ") in UTC as lifeboat prints times: the log writes them in `log_timezone`.
fn in_utc(text: &str) -> String {
    let utc = |t: &str| {
        t.trim()
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.to_string())
    };
    if let Some(t) = utc(text) {
        return t;
    }
    match text.rsplit_once(", time ") {
        Some((head, t)) => utc(t).map_or_else(|| text.to_string(), |t| format!("{head}, time {t}")),
        None => text.to_string(),
    }
}

/// The restored server's log, in its data directory.
pub(crate) const RECOVERY_LOG: &str = "recovery.log";

/// Restores a physical backup (see the module docs).
///
/// # Errors
///
/// [`ErrorKind::TargetNotEmpty`] for a non-empty directory, [`ErrorKind::NotFound`] when
/// no backup fits or the archive has a gap before the target, [`ErrorKind::Integrity`] for a
/// damaged backup, [`ErrorKind::Postgres`] when recovery fails or stops short.
pub fn recover(repo: &Repo, store: &WalStore, opts: &RecoverOptions) -> Result<RecoverReport> {
    let result = recover_inner(repo, store, opts);
    let details = match &result {
        Ok(r) => format!(
            "source {}: physical backup {} into {} up to {}{}{}; unpacked in {:.1}s{}",
            r.backup.meta.source,
            r.backup.short_id(),
            r.to_dir.display(),
            describe_target(&r.target),
            // read later as what was recovered: "up to transaction 990" must not pass for
            // "with it" when recovery stopped before it
            match (&r.target, opts.inclusive) {
                (
                    RecoveryTarget::Latest | RecoveryTarget::Immediate | RecoveryTarget::Name(_),
                    _,
                ) => "",
                (_, true) => " (inclusive)",
                (_, false) => " (exclusive: stopped before it)",
            },
            r.reached
                .as_ref()
                .map(|p| format!(
                    "{}{}{}",
                    p.lsn
                        .as_deref()
                        .map(|l| format!(", reached {l}"))
                        .unwrap_or_default(),
                    p.last_transaction
                        .as_deref()
                        .map(|t| format!(", last transaction committed {t}"))
                        .unwrap_or_default(),
                    p.stop_reason
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                ))
                .unwrap_or_default(),
            r.fetch_secs,
            match (r.replay_secs, &r.reached) {
                (Some(secs), Some(p)) => format!(
                    ", WAL replayed in {secs:.1}s ({} file(s) served by lifeboat)",
                    p.wal_served
                ),
                _ => ", not started".to_string(),
            }
        ),
        Err(e) => format!(
            "source {}: physical restore into {}: {e}",
            opts.source,
            opts.to_dir.display()
        ),
    };
    crate::repository::audit::record(repo, "restore", result, &details)
        .map_err(Error::or_interrupted)
}

/// What a physical restore would do, checked without writing anything.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RecoverPlan {
    /// The base backup it would use.
    pub backup: SnapshotInfo,
    /// The data directory it would write (new or empty).
    pub to_dir: PathBuf,
    /// The target.
    pub target: RecoveryTarget,
    /// The last point the archive can reach from this backup.
    pub reachable_lsn: String,
    /// When the last reachable segment was archived.
    pub reachable_time: Option<Timestamp>,
    /// The restored server's restore_command (tried once, as that server's user).
    pub restore_command: String,
    /// The OS user the files would belong to and the server would run as.
    pub owner: Option<String>,
    /// Whether the server would be started to replay WAL.
    pub start: bool,
    /// Its port, when given.
    pub port: Option<u16>,
}

/// Checks everything a physical restore needs before it writes: an empty target, a
/// fitting backup, an archive that reaches the target, a restore_command that works as
/// the server's user. Writes nothing and logs nothing (`restore --dry-run`).
///
/// # Errors
///
/// As [`recover`] before it writes anything.
pub fn plan_recovery(repo: &Repo, store: &WalStore, opts: &RecoverOptions) -> Result<RecoverPlan> {
    check_empty(&opts.to_dir)?;
    crate::sources::postgres::cluster::check_pg_ctl_path(&opts.to_dir, "the target directory")?;
    if let Some(d) = &opts.socket_dir {
        crate::sources::postgres::cluster::check_socket_dir(d, "the socket directory")?;
    }
    let (backup, phys, reach) = locate(repo, store, opts)?;
    let owner = owner(opts)?.map(|u| u.name);
    preflight(&opts.restore_command, owner.as_deref())?;
    Ok(RecoverPlan {
        backup,
        to_dir: opts.to_dir.clone(),
        target: opts.target.clone(),
        reachable_lsn: reach.until_lsn.to_string(),
        reachable_time: reach.until_time,
        // what the restored server will run, as `recover` writes it
        restore_command: following(&opts.restore_command, reach.timeline, phys.wal_segment_size),
        owner,
        start: opts.start,
        port: opts.port,
    })
}

/// The base backup for `opts` and how far the archive carries it.
fn locate(
    repo: &Repo,
    store: &WalStore,
    opts: &RecoverOptions,
) -> Result<(SnapshotInfo, PhysicalMeta, wal::Reachable)> {
    let backup = select(repo, opts)?;
    let phys = physical_of(&backup)?.clone();
    if !opts.skip_space_check {
        room_for(&opts.to_dir, &backup, phys.wal_segment_size)?;
    }
    let reach = check_archive(
        store,
        &backup,
        &phys,
        &opts.target,
        opts.timeline.as_deref(),
    )?;
    // the end of the archive lies past a tablespace's creation, which no recovery lifeboat
    // sets up replays: said before anything is unpacked (a drill goes on, to fail its
    // replay check naming the directory, as evidence)
    if opts.target == RecoveryTarget::Latest && !opts.isolate {
        if let Some(lsn) = wal::status::tablespace_creation_on_path(
            store,
            &reach,
            (phys.start_lsn, phys.timeline),
        )? {
            return Err(Error::config(format!(
                "the WAL archived after backup {} creates a tablespace at LSN {lsn}: recovery ends just before it (lifeboat backs up no tablespaces, and replaying the creation would use that directory, on this host possibly the live server's own), so the end of the archive cannot be reached",
                backup.short_id()
            ))
            .hint(format!(
                "restore everything before it with --target-lsn {lsn} --exclusive (or a --target-time before it); no point after it can be recovered from this backup"
            )));
        }
    }
    Ok((backup, phys, reach))
}

pub(crate) fn recover_inner(
    repo: &Repo,
    store: &WalStore,
    opts: &RecoverOptions,
) -> Result<RecoverReport> {
    check_empty(&opts.to_dir)?;
    crate::sources::postgres::cluster::check_pg_ctl_path(&opts.to_dir, "the target directory")?;
    if let Some(d) = &opts.socket_dir {
        crate::sources::postgres::cluster::check_socket_dir(d, "the socket directory")?;
    }
    // the restore_command probe (a process that opens the repository) runs while the backup
    // and the archive are looked up
    let user = owner(opts)?;
    let probe = {
        let command = opts.restore_command.clone();
        let name = user.as_ref().map(|u| u.name.clone());
        std::thread::spawn(move || preflight(&command, name.as_deref()))
    };
    let (backup, phys, reach) = locate(repo, store, opts)?;
    probe
        .join()
        .map_err(|_| Error::internal("the restore_command probe panicked"))??;
    let opts = &RecoverOptions {
        restore_command: following(&opts.restore_command, reach.timeline, phys.wal_segment_size),
        ..opts.clone()
    };
    let hooked = backup.clone();
    let hook = |name: &str, cmd: &Option<String>, listen: Option<&(PathBuf, u16)>| {
        let Some(cmd) = cmd else { return Ok(()) };
        let mut command = std::process::Command::new("sh");
        command.env("LIFEBOAT_TARGET_DIR", &opts.to_dir);
        if let Some((socket, port)) = listen {
            command.env(
                "LIFEBOAT_TARGET_CONNINFO",
                format!(
                    "host={} port={port} user={} dbname={}",
                    crate::sources::postgres::conn::conninfo_value(&socket.display().to_string()),
                    crate::sources::postgres::conn::conninfo_value(phys.login_role()),
                    crate::sources::postgres::conn::conninfo_value(phys.login_database())
                ),
            );
        }
        super::restore::run_hook_command(name, cmd, &hooked, command)
    };
    hook("pre-restore", &opts.hooks.pre_restore, None)?;
    let clock = Instant::now();
    let created = !opts.to_dir.exists();
    let mut written = Vec::new();
    let mut moved_socket = None;
    std::fs::create_dir_all(&opts.to_dir).map_err(|e| Error::io(opts.to_dir.display(), e))?;
    let filling = crate::sources::postgres::cluster::filling(&opts.to_dir, created);
    let unpacking = crate::status::doing("unpacking the base backup");
    let unpacked = unpack(repo, &backup, &opts.to_dir).and_then(|()| {
        std::fs::set_permissions(
            &opts.to_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| Error::io(opts.to_dir.display(), e))?;
        let auto = opts.to_dir.join("postgresql.auto.conf");
        // (a file that is not UTF-8, a setting written in LATIN1, was read as empty and
        // the restored server lost every ALTER SYSTEM setting)
        let old = match crate::sources::postgres::text::read_file(&auto) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(auto.display(), e)),
        };
        // the backup's own settings, without an earlier restore's (read below)
        let kept = without_recovery_settings(&old);
        crate::sources::postgres::text::write_file(&auto, &kept)
            .map_err(|e| Error::io(auto.display(), e))?;
        // restored on another host: the backup's socket directory may not exist here, and
        // the server would not start (at 03:00, after the whole unpack)
        let missing = if opts.socket_dir.is_none() {
            missing_socket_dirs(&opts.to_dir)
        } else {
            Vec::new()
        };
        let settings = if missing.is_empty() {
            recovery_settings(opts, phys.start_lsn, phys.stop_lsn)
        } else {
            let to = socket_dir_here(user.as_ref());
            let mut here = opts.clone();
            here.socket_dir = Some(to.clone());
            moved_socket = Some(MovedSocket { missing, to });
            recovery_settings(&here, phys.start_lsn, phys.stop_lsn)
        };
        let text = kept + &settings;
        crate::sources::postgres::text::write_file(&auto, &text)
            .map_err(|e| Error::io(auto.display(), e))?;
        std::fs::write(opts.to_dir.join("recovery.signal"), b"")
            .map_err(|e| Error::io(opts.to_dir.display(), e))?;
        // a standby.signal from the source would turn this into a replica
        let _ = std::fs::remove_file(opts.to_dir.join("standby.signal"));
        written = fill_missing_config(&opts.to_dir, &phys)?;
        if opts.isolate {
            let hba = opts.to_dir.join(ISOLATED_HBA);
            std::fs::write(&hba, "# lifeboat drill: local connections through the private socket only\nlocal all all trust\n")
                .map_err(|e| Error::io(hba.display(), e))?;
        }
        if let Some(u) = &user {
            chown_tree(&opts.to_dir, u)?;
        }
        Ok(())
    });
    drop((filling, unpacking));
    if let Err(e) = unpacked {
        crate::sources::postgres::cluster::clear_dir(&opts.to_dir, created);
        return Err(e);
    }
    let fetch_secs = clock.elapsed().as_secs_f64();
    let user_name = user.as_ref().map(|u| u.name.clone());
    let mut report = RecoverReport {
        backup,
        to_dir: opts.to_dir.clone(),
        target: opts.target.clone(),
        reachable_lsn: reach.until_lsn.to_string(),
        reachable_time: reach.until_time,
        fetch_secs,
        replay_secs: None,
        reached: None,
        log: None,
        port: opts.port,
        start_hint: None,
        owner: user_name.clone(),
        config_written: written,
        moved_socket,
        archive_command: conf_setting(&opts.to_dir, "archive_command")
            .filter(|c| !c.is_empty())
            .map(|c| redact_assignments(&c)),
    };
    if !opts.start {
        let prefix = user_name
            .as_deref()
            .map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default();
        let word =
            |p: &Path| crate::sources::postgres::cluster::shell_quote(&p.display().to_string());
        report.start_hint = Some(format!(
            "{prefix}{} -D {} -l {} start",
            word(&PgBin::new(opts.pg_bin_dir.as_deref()).program("pg_ctl")),
            word(&opts.to_dir),
            word(&opts.to_dir.join(RECOVERY_LOG))
        ));
        hook("post-restore", &opts.hooks.post_restore, None).map_err(post_hook_note)?;
        return Ok(report);
    }
    let replay = Instant::now();
    let log = opts.to_dir.join(RECOVERY_LOG);
    // the backup may hold the log of the restore it was taken from (a copy made primary):
    // only what this recovery writes counts
    let log_from = log_len(&log);
    let reached = start_and_wait(opts, user_name.as_deref(), &log, repo, &phys)?;
    report.replay_secs = Some(replay.elapsed().as_secs_f64());
    if opts.target == RecoveryTarget::Latest {
        short_of_archive_end(&reached, (&reach, store), &phys, (&log, log_from))?;
    }
    hook(
        "post-restore",
        &opts.hooks.post_restore,
        reached.listen.as_ref(),
    )
    .map_err(post_hook_note)?;
    report.reached = Some(reached);
    report.log = Some(log);
    Ok(report)
}

/// Whether recovery that stopped at `lsn` replayed the archive's last segment, which
/// ends at `end`: the last record replayed ends in it. Stopping at its very start is
/// short: every archived segment holds a record that ends past its start (a full one, or
/// the switch record that closed it), and a switch record in the segment before ends
/// exactly there, so a recovery that could not read the last segment at all (another
/// cluster's, a damaged first page) stops there too.
pub(crate) const fn reached_archive_end(lsn: Lsn, end: Lsn, segment_size: u64) -> bool {
    lsn.0 + segment_size > end.0
}

/// Refuses to call a recovery to the end of the archive done when PostgreSQL stopped
/// before the archive's last segment: it ends recovery, and promotes, at the first record
/// it cannot read (a damaged segment) or segment it is not given, so the copy lacks what
/// was written after that point while everything else says "restored". Recovery that
/// follows a timeline with no segment archived yet ends at its branch, as noted before.
fn short_of_archive_end(
    reached: &ReachedPoint,
    (reach, store): (&wal::Reachable, &WalStore),
    phys: &crate::sources::postgres::physical::PhysicalMeta,
    (log, log_from): (&Path, u64),
) -> Result<()> {
    let lsn = reached.lsn.as_deref().and_then(|l| Lsn::parse(l).ok());
    let text = log_since(log, log_from);
    if let Some((what, hint)) = tablespace_cut(&text) {
        return Err(Error::config(format!(
            "recovery ended at LSN {}, before the end of the archive (LSN {}): {what}",
            lsn.map_or_else(|| "?".to_string(), |l| l.to_string()),
            reach.until_lsn
        ))
        .hint(format!(
            "{}; the copy keeps running at the point it reached, and the post-restore hook was not run",
            hint.unwrap_or_else(|| format!("see {}", log.display()))
        )));
    }
    if SegmentName::parse(&reach.last_segment).is_some_and(|s| s.timeline < reach.timeline) {
        return Ok(());
    }
    let Some(lsn) = lsn else {
        return Ok(());
    };
    if reached_archive_end(lsn, reach.until_lsn, phys.wal_segment_size) {
        return Ok(());
    }
    // named only on the backup's own timeline: across a branch the name would guess
    let named = (reach.timeline == phys.timeline)
        .then(|| SegmentName::containing(phys.timeline, lsn, phys.wal_segment_size));
    let segment = named
        .as_ref()
        .map(|n| format!(" (segment {n})"))
        .unwrap_or_default();
    // wal-push keeps what it stored (a different copy under the same name is refused), so
    // the damaged one must go first
    let replace = named.map_or_else(
        || "move the damaged segment's object out of the repository's lifeboat-wal/ directory (on S3, delete it)".to_string(),
        |n| format!(
            "move {} out of the repository (on S3, delete that object: `wal-push` refuses a different copy under a stored name)",
            store.place_of(&wal::WalFile::Segment(n))
        ),
    );
    let at = reached
        .listen
        .as_ref()
        .map(|(socket, port)| format!(" (socket {}, port {port})", socket.display()))
        .unwrap_or_default();
    let foreign = foreign_wal_note(&text);
    Err(Error::integrity(format!(
        "recovery ended at LSN {lsn}{segment}, short of the end of the archive (LSN {}, end of {}): PostgreSQL stopped replaying there and promoted the copy, so what was written after that point is not in it{foreign}",
        reach.until_lsn, reach.last_segment
    ))
    .hint(format!(
        "the server log {} says why (`invalid record length`, `invalid magic number` or `incorrect resource manager data checksum`: that segment is damaged; nothing about it: the segment was not found while recovery ran); the copy keeps running at the point it reached{at}, and the post-restore hook was not run; to recover further, find an intact copy of that segment (the server's pg_wal, another copy of the archive), {replace}, push the intact copy with `lifeboat wal-push`, and restore again into an empty directory",
        log.display()
    )))
}

/// What the recovery's log `text` says when the archive handed it another cluster's
/// segment (an `archive_command` copied from another server, naming this source): said
/// with the stop short of the archive's end, which it explains.
pub(crate) fn foreign_wal_note(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("is from different database system"))
        .map(|l| {
            format!(
                "; the server log says: {} (another cluster's WAL is in this source's archive: check each server's archive_command names its own --source)",
                l.trim()
            )
        })
        .unwrap_or_default()
}

/// The note `wal-fetch` left in the server's log `text` when it cut a segment short of a
/// tablespace's creation ([`wal::cut_at_tablespace`]), and its hint.
pub(crate) fn tablespace_cut(text: &str) -> Option<(String, Option<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("lifeboat wal-fetch:") && l.contains(wal::TABLESPACE_CUT))?;
    let what = lines[i]
        .trim_start_matches("lifeboat wal-fetch:")
        .trim()
        .to_string();
    let hint = lines
        .get(i + 1)
        .and_then(|l| l.strip_prefix("lifeboat wal-fetch: hint: "))
        .map(str::to_string);
    Some((what, hint))
}

/// A failed post-restore hook's error says that the restore itself is done: the operator
/// must not restore again, only finish what the hook did not.
fn post_hook_note(e: Error) -> Error {
    e.with_note("the restore itself succeeded: the data directory is in place")
}

/// `restore_command`, when it is lifeboat's `wal-fetch`, told which timeline the recovery
/// follows (`--timeline`): it then withholds an older timeline's segment past the branch,
/// which PostgreSQL asks for when the followed timeline's copy is not archived yet (and
/// would replay the old timeline's writes after the branch). Another command is kept.
fn following(restore_command: &str, timeline: u32, segment_size: u64) -> String {
    let words: Vec<&str> = restore_command.split_whitespace().collect();
    if !words.contains(&"wal-fetch") || words.contains(&"--timeline") {
        return restore_command.to_string();
    }
    let size = if segment_size == wal::DEFAULT_SEGMENT_SIZE {
        String::new()
    } else {
        format!(" --segment-size {segment_size}")
    };
    format!("{restore_command} --timeline {timeline}{size}")
}

/// `command` with `%f` and `%p` replaced as PostgreSQL replaces them, `%%` read as `%`.
fn substitute(command: &str, f: &str, p: &str) -> String {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => out.push_str(f),
            Some('p') => out.push_str(p),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Runs the restore_command as the server will (same user) for a file that never exists:
/// it must answer "not in the archive" (exit 4). Anything else (an unreadable config or
/// password file, a wrong path) would stop recovery later, after the long unpack.
fn preflight(restore_command: &str, user: Option<&str>) -> Result<()> {
    let probe = substitute(
        restore_command,
        "00000000.history",
        "/nonexistent/lifeboat-probe",
    );
    let mut cmd = match user {
        Some(u) if nix::unistd::geteuid().is_root() => {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", u, "--", "sh", "-c", &probe]);
            c
        }
        _ => {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &probe]);
            c
        }
    };
    let out = cmd
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("running the restore_command", e))?;
    if out.status.code() == Some(ErrorKind::NotFound.exit_code()) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_string();
    // lifeboat's own hint, when the command is lifeboat and gave one, knows the cause
    let hint = stderr
        .lines()
        .map(str::trim)
        .find_map(|l| {
            l.strip_prefix("hint:")
                .or_else(|| l.strip_prefix("lifeboat wal-fetch: hint:"))
        })
        .map_or_else(
            || "the configuration, its password file and the repository must be readable by that user (or pass --owner)".to_string(),
            |h| h.trim().to_string(),
        );
    Err(Error::config(format!(
        "the restored server{} could not run its restore_command: {first}",
        user.map(|u| format!(" (running as {u})"))
            .unwrap_or_default()
    ))
    .hint(format!("{hint}; nothing was written")))
}

/// Whether the repository's password or S3 secret can come from this process's
/// environment alone (no file or command configured for it).
fn secrets_only_in_env(repo: &Repo) -> bool {
    let r = repo.config();
    let password = r.password_file.is_none() && r.password_command.is_none();
    let s3_secret = crate::repository::is_s3_url(repo.location())
        && r.secret_access_key_file.is_none()
        && r.secret_access_key_command.is_none();
    password || s3_secret
}

/// Starts the restored server and waits until recovery ends (or pauses at the target).
pub(crate) fn start_and_wait(
    opts: &RecoverOptions,
    user: Option<&str>,
    log: &Path,
    repo: &Repo,
    phys: &PhysicalMeta,
) -> Result<ReachedPoint> {
    let serving = serve_recovery(repo, opts, user, phys.wal_segment_size);
    // interrupted, the server must not replay on and promote itself unattended (it would
    // fetch alone once lifeboat is gone): stopped then, as a drill's is
    let pg_ctl = PgBin::new(opts.pg_bin_dir.as_deref()).program("pg_ctl");
    crate::sources::postgres::cluster::register(
        pg_ctl,
        opts.to_dir.clone(),
        user.map(str::to_string),
    );
    let _said = (!opts.isolate).then(|| {
        crate::sources::postgres::cluster::say_on_stop(format!(
            "stopped the restored server in {}, which was replaying WAL; the directory holds the restore, part-replayed: start it to go on (`pg_ctl start -D {}`, as its owner), or remove it and restore again",
            opts.to_dir.display(),
            opts.to_dir.display()
        ))
    });
    let reached = start_and_wait_inner(
        opts,
        user,
        log,
        repo,
        (serving.as_ref().map(wal::spool::Serving::socket), phys),
    );
    crate::sources::postgres::cluster::forget_registered(&opts.to_dir);
    reached.map(|mut r| {
        r.wal_served = serving.as_ref().map_or(0, wal::spool::Serving::served);
        r
    })
}

/// lifeboat itself serving the archive to the recovery it waits for: each `wal-fetch`
/// would otherwise derive the repository key and open the repository, about a second a
/// segment (a week of WAL, hours). `None` when it cannot (each `wal-fetch` then works
/// alone, as after lifeboat has gone).
fn serve_recovery(
    repo: &Repo,
    opts: &RecoverOptions,
    user: Option<&str>,
    segment_size: u64,
) -> Option<wal::spool::Serving> {
    // a server the operator named is the one the restored server inherits (a promoted
    // server keeps the socket given here in its environment: once it is gone, its
    // `wal-push` turns to the default socket of `wal serve`)
    if std::env::var("LIFEBOAT_WAL_SOCKET").is_ok_and(|s| std::path::Path::new(&s).exists()) {
        return None;
    }
    let store = WalStore::new(repo, &opts.source).ok()?;
    let guest = user
        .filter(|_| nix::unistd::geteuid().is_root())
        .and_then(|u| nix::unistd::User::from_name(u).ok().flatten())
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()));
    let key = wal::spool::archive_key(&opts.source, repo.location());
    wal::spool::Serving::start(store, &key, segment_size, guest).ok()
}

fn start_and_wait_inner(
    opts: &RecoverOptions,
    user: Option<&str>,
    log: &Path,
    repo: &Repo,
    (wal_socket, phys): (Option<&Path>, &PhysicalMeta),
) -> Result<ReachedPoint> {
    // the cluster's own superuser and a database it had: `postgres` may be neither
    let role = phys.login_role();
    // the database the backup connected to may have been dropped since: then the usual
    // ones, each tried once it is refused
    let mut homes = vec![phys.login_database(), "postgres", "template1"];
    homes.dedup();
    let mut home_at = 0;
    // a backup of a restored cluster holds the log of that earlier recovery: only what
    // this start appends is about this recovery
    let from = std::fs::metadata(log).map_or(0, |m| m.len());
    let bin = PgBin::new(opts.pg_bin_dir.as_deref());
    let pg_ctl = bin.program("pg_ctl");
    // the restored server runs `lifeboat wal-fetch`: it keeps lifeboat's secrets only when
    // that has no file or command to read them from
    let mut start =
        crate::sources::postgres::cluster::without_pg_env(if secrets_only_in_env(repo) {
            crate::sources::postgres::cluster::pg_ctl_cmd_with_secrets(&pg_ctl, user)
        } else {
            pg_ctl_cmd(&pg_ctl, user)
        });
    if let Some(s) = wal_socket {
        start.env("LIFEBOAT_WAL_SOCKET", s);
    }
    let out = start
        .args(["start", "-D"])
        .arg(&opts.to_dir)
        .arg("-l")
        .arg(log)
        .arg("-o")
        .arg(start_options(opts))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| missing_program(&pg_ctl, e))?;
    // interrupted while it started (a library caller goes on after `stop_all`): the
    // clean-up may have found no server to stop yet
    if crate::sources::postgres::cluster::interrupted() {
        crate::sources::postgres::cluster::stop_now(&pg_ctl, &opts.to_dir, user);
        return Err(Error::new(
            ErrorKind::Unavailable,
            "interrupted while the restored server started; it was stopped",
        ));
    }
    if !out.status.success() {
        return Err(recovery_failed(
            log,
            from,
            "the restored server did not start",
            opts,
        ));
    }
    if !opts.isolate {
        forget_start_options(&opts.to_dir);
    }
    let mut last_error: Option<String> = None;
    let replaying = crate::status::doing("starting the restored server to replay WAL");
    let deadline =
        (opts.timeout_secs > 0).then(|| Instant::now() + Duration::from_secs(opts.timeout_secs));
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let running = pg_ctl_cmd(&pg_ctl, user)
            .args(["status", "-D"])
            .arg(&opts.to_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let text = log_since(log, from);
        let stop_reason = text.lines().rev().find_map(|l| {
            l.split_once("LOG:  recovery stopping")
                .map(|(_, r)| in_utc(&format!("recovery stopping{r}")))
        });
        if !running {
            if opts.action == TargetAction::Shutdown && stop_reason.is_some() {
                return Ok(ReachedPoint {
                    stop_reason,
                    ..ReachedPoint::default()
                });
            }
            return Err(recovery_failed(
                log,
                from,
                "recovery failed and the server stopped",
                opts,
            ));
        }
        // where the server listens: its postmaster.pid says (port on line 4, socket
        // directory on line 5), whatever the restored configuration set
        let pid_file =
            std::fs::read_to_string(opts.to_dir.join("postmaster.pid")).unwrap_or_default();
        let lines: Vec<&str> = pid_file.lines().collect();
        let port = opts
            .port
            .or_else(|| lines.get(3).and_then(|l| l.trim().parse().ok()))
            .unwrap_or(5432);
        let socket = opts
            .socket_dir
            .clone()
            .or_else(|| {
                lines
                    .get(4)
                    .map(|l| PathBuf::from(l.trim()))
                    .filter(|p| !p.as_os_str().is_empty())
            })
            .unwrap_or_else(|| PathBuf::from("/var/run/postgresql"));
        // as the server's own OS user: a restored pg_hba.conf (Debian's `local all
        // postgres peer`) lets that one in
        let conn = crate::sources::postgres::conn::PgConn::local(&socket, port, role, bin.clone())
            .run_as(user.filter(|_| nix::unistd::geteuid().is_root()))
            // times in one form whatever the restored server's settings (a German
            // DateStyle, a New York zone): reports and the drill's check read them
            .with_options("-c TimeZone=UTC -c DateStyle=ISO");
        let home = homes[home_at];
        let state = conn.query(
            home,
            "select pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(), \
             case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() else '' end, (select timeline_id from pg_control_checkpoint())",
        );
        let row = match state {
            Ok(row) => Some(row),
            // the server answers, and refuses who lifeboat asks as: waiting changes nothing
            // (it used to wait for ever, silently)
            Err(e) if refused_database(&e.to_string()) && home_at + 1 < homes.len() => {
                home_at += 1;
                None
            }
            Err(e) if refused_role(&e.to_string()) => {
                return Err(Error::postgres(format!(
                    "the restored server runs, but refuses lifeboat's connection as role {role:?}: {}",
                    crate::error::headline(&e.to_string())
                ))
                .hint(format!(
                    "connect as a role its pg_hba.conf lets in (`psql -h {} -p {port} -U ROLE -d {home}`) to see where recovery stands, and stop it with pg_ctl when done; {} holds its log",
                    socket.display(),
                    log.display()
                )));
            }
            Err(e) => {
                last_error = Some(e.to_string());
                None
            }
        };
        if let Some(row) = row {
            let f: Vec<&str> = row.trim().split('|').collect();
            if let Some(lsn) = f.get(1).filter(|l| !l.is_empty()) {
                replaying.say(format!("replaying WAL: at {lsn}"));
            }
            if f.len() == 5 {
                let done = f[0] == "f" || f[3] == "paused";
                if done {
                    // after promotion the checkpoint may still show the old timeline
                    let timeline = text
                        .lines()
                        .rev()
                        .find_map(|l| {
                            l.split_once("selected new timeline ID: ")
                                .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
                        })
                        .or_else(|| f[4].parse().ok());
                    let in_recovery = f[0] == "t";
                    return Ok(ReachedPoint {
                        lsn: Some(f[1].to_string()).filter(|s| !s.is_empty()),
                        // RFC 3339 in UTC, as every other time lifeboat writes
                        last_transaction: Some(f[2]).filter(|s| !s.is_empty()).map(|s| {
                            s.parse::<jiff::Timestamp>()
                                .map_or_else(|_| s.to_string(), |t| t.to_string())
                        }),
                        stop_reason,
                        timeline,
                        in_recovery,
                        listen: Some((socket, port)),
                        locked: if in_recovery {
                            locked_by_replay(&conn, home)
                        } else {
                            Vec::new()
                        },
                        unlogged: unlogged_tables(&conn, home),
                        wal_served: 0,
                    });
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            return Err(Error::new(
                ErrorKind::Postgres,
                format!(
                    "recovery did not finish within {} s (last answer: {}; log: {})",
                    opts.timeout_secs,
                    last_error.as_deref().unwrap_or("still in recovery"),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            )
            .hint(format!(
                "the server is still replaying; follow {} and raise --timeout",
                log.display()
            )));
        }
    }
}

/// A connection refused for its database (dropped since the backup): another may do.
fn refused_database(error: &str) -> bool {
    error.contains("database \"") && error.contains("does not exist")
}

/// A connection refused for its role, which waiting does not change: a role the restored
/// cluster lacks, or one its pg_hba.conf does not let in.
fn refused_role(error: &str) -> bool {
    (error.contains("role \"") && error.contains("does not exist"))
        || error.contains("password authentication failed")
        || error.contains("Peer authentication failed")
        || error.contains("no pg_hba.conf entry")
}

/// `names` (one per line) of each database `databases` lists (one per line, run in
/// `home`), as `db: name`; a query that fails counts as none.
fn per_database(
    conn: &crate::sources::postgres::conn::PgConn,
    home: &str,
    databases: &str,
    names: &str,
) -> Vec<String> {
    conn.query(home, databases)
        .unwrap_or_default()
        .lines()
        .filter(|d| !d.is_empty())
        .flat_map(|db| {
            conn.query(db, names)
                .unwrap_or_default()
                .lines()
                .filter(|t| !t.is_empty())
                .map(|t| format!("{db}: {t}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The unlogged tables of every database the restored server holds (`db: schema.table`).
fn unlogged_tables(conn: &crate::sources::postgres::conn::PgConn, home: &str) -> Vec<String> {
    per_database(
        conn,
        home,
        "select datname from pg_database where datallowconn and not datistemplate order by 1",
        "select quote_ident(n.nspname) || '.' || quote_ident(c.relname) from pg_class c \
         join pg_namespace n on n.oid = c.relnamespace \
         where c.relpersistence = 'u' and c.relkind in ('r', 'p') order by 1",
    )
}

/// The tables, views and sequences that the transaction replay stopped in holds with an
/// ACCESS EXCLUSIVE lock (a `DROP TABLE` paused before its commit), as `db: name`. A query
/// on one waits until recovery resumes, which an operator inspecting a paused server
/// takes for a hang.
fn locked_by_replay(conn: &crate::sources::postgres::conn::PgConn, home: &str) -> Vec<String> {
    const BY_STARTUP: &str = "l.locktype = 'relation' and l.mode = 'AccessExclusiveLock' \
        and l.pid in (select pid from pg_stat_activity where backend_type = 'startup')";
    per_database(
        conn,
        home,
        &format!(
            "select distinct d.datname from pg_locks l join pg_database d on d.oid = l.database where {BY_STARTUP} order by 1"
        ),
        &format!(
            "select c.oid::regclass::text from pg_locks l join pg_class c on c.oid = l.relation \
             where l.database = (select oid from pg_database where datname = current_database()) \
             and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and {BY_STARTUP} order by 1"
        ),
    )
}

/// How long the server log `log` is now (0 when there is none yet): where what a
/// recovery started after this writes begins.
pub(crate) fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// What the server wrote to `log` after its first `from` bytes.
pub(crate) fn log_since(log: &Path, from: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// An error from the server log: the missing or damaged segment and the last one restored.
fn recovery_failed(log: &Path, from: u64, what: &str, opts: &RecoverOptions) -> Error {
    let target = &opts.target;
    let text = log_since(log, from);
    let last_restored = text.lines().rev().find_map(|l| {
        l.split_once("restored log file \"")
            .and_then(|(_, r)| r.split('"').next())
            .map(str::to_string)
    });
    // the line that says what failed, not the cause or hint lines printed after it
    let lifeboat_err = text
        .lines()
        .rev()
        .find(|l| {
            l.strip_prefix("lifeboat wal-fetch:")
                .is_some_and(|r| !r.starts_with(" hint:") && !r.starts_with("   caused by:"))
        })
        .map(str::to_string);
    // and what it advised (a refused tablespace: recover to a point before it)
    let fetch_hint = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("lifeboat wal-fetch: hint: "))
        .map(str::to_string);
    let fatal = text.lines().rev().find(|l| l.contains("FATAL:")).map(|l| {
        l.split_once("FATAL:")
            .map_or(l, |(_, r)| r)
            .trim()
            .to_string()
    });
    let ended_early = fatal
        .as_deref()
        .is_some_and(|f| f.contains("before configured recovery target"));
    let mut msg = what.to_string();
    if let Some(f) = &fatal {
        msg.push_str(&format!(": {f}"));
    }
    if let Some(l) = &last_restored {
        msg.push_str(&format!("; last segment restored: {l}"));
    }
    // wal-fetch's own line names the segment that was missing or damaged
    if let Some(e) = &lifeboat_err {
        msg.push_str(&format!("; {e}"));
    }
    // PostgreSQL says how far the WAL it had went
    let last_commit = text.lines().rev().find_map(|l| {
        l.split_once("last completed transaction was at log time ")
            .map(|(_, t)| in_utc(t.trim()))
    });
    let port_taken = text.contains("already exists") && text.contains("lock file")
        || text.contains("Address already in use");
    let cut = tablespace_cut(&text);
    if let Some((what, _)) = cut.as_ref().filter(|(w, _)| {
        ended_early
            && !lifeboat_err
                .as_deref()
                .is_some_and(|e| e.contains(w.as_str()))
    }) {
        msg.push_str(&format!("; {what}"));
    }
    let hint = if port_taken {
        "another server already listens on that port or socket (the original, most likely): pass --port (and --socket-dir) to run the restored one beside it".to_string()
    } else if let Some((_, Some(h))) = cut.filter(|_| ended_early) {
        format!("{h}; see {}", log.display())
    } else if ended_early && matches!(target, RecoveryTarget::Name(_) | RecoveryTarget::Xid(_)) {
        format!("the target may lie before this base backup: pass --before TIME (when the target was made) or an older backup id; see {}", log.display())
    } else if ended_early && matches!(target, RecoveryTarget::Time(_)) {
        // PostgreSQL stops at a time only on a transaction that ended after it: an archive
        // of a quiet database can reach past the target and still not stop there
        format!(
            "no transaction in the archived WAL ended after the target{}, and PostgreSQL stops at a time only on one that did: if nothing was written since, --latest restores the same data; if something was, it is not archived yet (on the server: select pg_switch_wal()); see {}",
            last_commit
                .map(|t| format!(" (the last committed at {t})"))
                .unwrap_or_default(),
            log.display()
        )
    } else if ended_early && matches!(target, RecoveryTarget::Lsn(_)) {
        format!(
            "the target lies past the newest WAL in the archive{}: nothing written after that was archived; pass --latest to recover all of it, or an earlier target; see {}",
            last_commit
                .map(|t| format!(" (its last transaction committed at {t})"))
                .unwrap_or_default(),
            log.display()
        )
    } else if let Some(h) = fetch_hint.filter(|_| lifeboat_err.is_some()) {
        format!("{h}; see {}", log.display())
    } else if let Some(dir) = log.parent().filter(|_| {
        !opts.isolate
            && !recovery_began(&text)
            && fatal.as_deref().is_some_and(names_a_missing_file)
    }) {
        // the server stopped at its configuration (a certificate, a library, an hba file
        // of the lost host): nothing was replayed, so the unpacked backup is good as it is
        let word =
            |p: &Path| crate::sources::postgres::cluster::shell_quote(&p.display().to_string());
        return Error::new(ErrorKind::Postgres, msg).hint(format!(
            "the server stopped before recovery began, at a file, directory or library its configuration names that this host lacks: change that setting in {}/postgresql.conf (or postgresql.auto.conf), then start it with `pg_ctl -D {} -l {} start` as its owner, from a shell with the environment this restore had (a repository password given only in LIFEBOAT_PASSWORD is needed by its restore_command); recovery then runs as configured, and the unpacked backup need not be restored again",
            dir.display(),
            word(dir),
            word(log)
        ));
    } else if fatal.as_deref().is_some_and(crate::error::says_disk_full) {
        format!(
            "the restored server's disk filled up while it replayed WAL: free space on the file system of {} (or restore onto a larger disk); see {}",
            log.parent().unwrap_or(log).display(),
            log.display()
        )
    } else {
        format!(
            "see {}; `lifeboat wal status` shows the archive's gaps",
            log.display()
        )
    };
    let retry = log.parent().map_or_else(String::new, |dir| {
        format!(
            "; {} holds the unpacked backup and the log: stop anything running there and empty it before a retry",
            dir.display()
        )
    });
    Error::new(ErrorKind::Postgres, msg).hint(format!("{hint}{retry}"))
}

/// Whether a server's FATAL message is about a file, directory or library its
/// configuration names (not, say, a data directory of another major version).
fn names_a_missing_file(fatal: &str) -> bool {
    let f = fatal.to_ascii_lowercase();
    [
        "could not load",
        "could not access file",
        "could not open",
        "no such file",
        "certificate",
        "private key",
        "hba",
        "ident",
        "configuration file",
    ]
    .iter()
    .any(|m| f.contains(m))
}

/// Whether the server's log `text` shows recovery under way (WAL was read).
fn recovery_began(text: &str) -> bool {
    [
        "starting point-in-time recovery",
        "starting archive recovery",
        "redo starts at",
        "restored log file",
    ]
    .iter()
    .any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stopping_at_the_last_segments_start_is_short_of_the_archive() {
        use super::{reached_archive_end, Lsn};
        let seg = 16 << 20;
        let end = Lsn(0x0C00_0000);
        assert!(!reached_archive_end(Lsn(0x0B00_0000), end, seg));
        assert!(reached_archive_end(Lsn(0x0B00_0028), end, seg));
        assert!(reached_archive_end(end, end, seg));
        assert!(!reached_archive_end(Lsn(0x0A00_0100), end, seg));
    }

    use super::*;

    #[test]
    fn the_originals_port_is_applied_and_the_rest_commented() {
        assert_eq!(original_settings(&[]), "");
        let text = original_settings(&[
            ("max_connections".into(), "300".into()),
            ("port".into(), "5433".into()),
            (
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            ),
        ]);
        assert!(text.starts_with("port = '5433'\n"), "{text}");
        assert!(
            text.contains("\n#max_connections = '300'\n")
                && text.contains("\n#shared_preload_libraries = 'pg_stat_statements'\n"),
            "{text}"
        );
        assert_eq!(text.matches("port =").count(), 1, "{text}");
    }

    #[test]
    fn a_timeline_is_a_decimal_number_without_leading_zeros() {
        assert_eq!(timeline_number("16").unwrap(), 16);
        for bad in ["00000010", "010", "0x10", "+3", "0", "-1", "ten"] {
            assert!(timeline_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn configuration_values_keep_quotes_and_backslashes() {
        assert_eq!(conf_quote(r"it's a\tb"), r"'it''s a\\tb'");
    }

    #[test]
    fn percent_signs_are_read_as_postgresql_reads_them() {
        assert_eq!(
            substitute("lb --config '/a/100%%f' wal-fetch %f %p %r", "F", "P"),
            "lb --config '/a/100%f' wal-fetch F P %r"
        );
    }

    #[test]
    fn a_member_behind_a_link_is_not_written_outside_the_directory() {
        let work = tempfile::tempdir().unwrap();
        let (dir, outside) = (work.path().join("data"), work.path().join("outside"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "base", &outside).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_size(4);
        file.set_mode(0o600);
        tar.append_data(&mut file, "base/PG_VERSION", &b"15\n\n"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let unpacked = unpack_entries(&mut tar::Archive::new(&bytes[..]), &dir);
        assert!(unpacked.is_err(), "{unpacked:?}");
        assert!(!outside.join("PG_VERSION").exists());
        // without the link the same member is written where it belongs
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_data(&mut file, "base/PG_VERSION", &b"15\n\n"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        unpack_entries(&mut tar::Archive::new(&bytes[..]), &dir).unwrap();
        assert_eq!(
            std::fs::read(dir.join("base/PG_VERSION")).unwrap(),
            b"15\n\n"
        );
    }

    #[test]
    fn times_from_the_server_log_are_printed_in_utc() {
        assert_eq!(
            super::in_utc("recovery stopping before commit of transaction 733, time 2026-12-06 15:31:42.442952-05"),
            "recovery stopping before commit of transaction 733, time 2026-12-06T20:31:42.442952Z"
        );
        assert_eq!(
            super::in_utc("2026-12-06 15:31:34.687976-05"),
            "2026-12-06T20:31:34.687976Z"
        );
        // what does not read as a time stays as the server wrote it
        assert_eq!(
            super::in_utc("recovery stopping at restore point \"x\", time EST"),
            "recovery stopping at restore point \"x\", time EST"
        );
    }

    #[test]
    fn configuration_lines_are_read_as_postgres_reads_them() {
        let v = |line: &str| conf_line(line, "unix_socket_directories");
        assert_eq!(
            v("unix_socket_directories = '/a, /b'  # two"),
            Some("/a, /b".into())
        );
        assert_eq!(
            v("  UNIX_SOCKET_DIRECTORIES='/it''s'"),
            Some("/it's".into())
        );
        assert_eq!(v(r"unix_socket_directories '/x\\y'"), Some(r"/x\y".into()));
        assert_eq!(
            v("unix_socket_directories = /bare # c"),
            Some("/bare".into())
        );
        assert_eq!(v("#unix_socket_directories = '/commented'"), None);
        assert_eq!(v("unix_socket_directories_x = '/other'"), None);
        assert_eq!(v("unix_socket_directories = ''"), Some(String::new()));
        assert_eq!(
            v(r"unix_socket_directories = 'a\tb\101\n'"),
            Some("a\tbA\n".into())
        );
        assert_eq!(
            redact_assignments("PGPASSWORD='s3 cret' AWS_SECRET_ACCESS_KEY=abc LIFEBOAT_CONFIG=/etc/lb.toml lifeboat wal-push %p"),
            "PGPASSWORD=… AWS_SECRET_ACCESS_KEY=… LIFEBOAT_CONFIG=/etc/lb.toml lifeboat wal-push %p"
        );
        assert_eq!(
            redact_assignments("sh -c 'PGPASSWORD=topsecret1 lifeboat wal-push \"$1\"' _ %p"),
            "sh -c 'PGPASSWORD=… lifeboat wal-push \"$1\"' _ %p"
        );
        assert_eq!(
            redact_assignments("test ! -f /x/%f && env TOKEN=\"a b\" cp %p /x/%f"),
            "test ! -f /x/%f && env TOKEN=… cp %p /x/%f"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let there = dir.path().join("sock");
        std::fs::create_dir(&there).expect("mkdir");
        std::fs::write(
            dir.path().join("postgresql.conf"),
            "unix_socket_directories = '/gone/with/the/host'\n",
        )
        .expect("conf");
        assert_eq!(
            missing_socket_dirs(dir.path()),
            vec![PathBuf::from("/gone/with/the/host")]
        );
        assert_eq!(
            directory_list(r#" /a , "/b, with ""comma""" ,/c"#),
            ["/a", r#"/b, with "comma""#, "/c"]
        );
        // postgresql.auto.conf overrides postgresql.conf, as ALTER SYSTEM writes a list
        std::fs::write(
            dir.path().join("postgresql.auto.conf"),
            format!(
                "unix_socket_directories = '\"{}\", \"/gone/too\"'\n",
                there.display()
            ),
        )
        .expect("auto");
        assert_eq!(
            missing_socket_dirs(dir.path()),
            vec![PathBuf::from("/gone/too")]
        );
    }

    #[test]
    fn settings_for_a_time_target() {
        let opts = RecoverOptions {
            source: "db".into(),
            backup: None,
            before: None,
            to_dir: PathBuf::from("/x"),
            target: RecoveryTarget::Time("2026-11-23T14:31:59Z".parse().expect("ts")),
            inclusive: false,
            timeline: None,
            action: TargetAction::Promote,
            restore_command: "lifeboat wal-fetch %f \"%p\" --config '/etc/l.toml'".into(),
            keep_archiving: false,
            start: false,
            port: Some(5499),
            socket_dir: None,
            owner: None,
            timeout_secs: 0,
            pg_bin_dir: None,
            isolate: false,
            hooks: crate::config::Hooks::default(),
            skip_space_check: false,
        };
        let s = recovery_settings(&opts, Lsn(0x300_0028), Lsn(0x300_0100));
        assert!(
            s.contains("# lifeboat: replay starts at LSN 0/3000028\n"),
            "{s}"
        );
        assert!(
            s.contains("recovery_target_time = '2026-11-23 14:31:59.000000+00'"),
            "{s}"
        );
        assert!(
            s.contains("restore_command = 'lifeboat wal-fetch %f \"%p\" --config ''/etc/l.toml'''"),
            "{s}"
        );
        assert!(s.contains("recovery_target_inclusive = false"));
        assert!(s.contains("archive_mode = off"));
        assert!(s.contains("port = 5499"));
        let again = without_recovery_settings(&format!(
            "max_connections = '20'\nrecovery_target_xid = '7'\n{s}"
        ));
        assert_eq!(again, "max_connections = '20'\n");
    }
}
