//! `wal status`: the archived range per timeline, gaps, the newest segment and its age, and
//! how far a restore of the latest physical backup can get with the archive as it is now.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use super::{
    name::{Lsn, SegmentName, WalFile},
    parse_history,
    store::{StoredWal, WalStore},
};
use crate::error::Result;

/// Archived segments of one timeline.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TimelineRange {
    /// Timeline id.
    pub timeline: u32,
    /// First archived segment.
    pub first: String,
    /// Last archived segment.
    pub last: String,
    /// Segments archived.
    pub segments: u64,
    /// Bytes stored for them.
    pub stored_bytes: u64,
    /// Missing runs between first and last, as `(first missing, last missing)`.
    pub gaps: Vec<(String, String)>,
}

/// Where a restore of a base backup can get with the archive as it is.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Reachable {
    /// Base backup the chain starts from (snapshot id).
    pub backup_id: String,
    /// Last segment of the unbroken chain from the backup.
    pub last_segment: String,
    /// The end of that segment: recovery can replay up to here.
    pub until_lsn: Lsn,
    /// When that segment was archived: no transaction after this can be recovered.
    pub until_time: Option<Timestamp>,
    /// The first missing segment when later WAL exists (a gap recovery cannot cross).
    pub blocked_by: Option<String>,
    /// Whether the chain reaches the backup's end ([`ChainStart::stop_lsn`]): without
    /// that WAL the backup cannot be restored at all.
    pub consistent: bool,
    /// The timeline the chain ends on: the one a recovery from the backup follows.
    pub timeline: u32,
}

/// For a recovery following timeline `follow`, whose history file reads `history`: where
/// that history left the timeline of `segment`, when `segment` starts at or past that
/// point. PostgreSQL asks for such a file only when the newer timeline's copy of it is
/// not in the archive (not archived yet), and would then replay the old timeline's writes
/// after the branch as if they were the newer timeline's. `None` when the segment is on
/// the recovery's path.
#[must_use]
pub fn past_branch(
    history: &str,
    follow: u32,
    segment: &SegmentName,
    segment_size: u64,
) -> Option<Lsn> {
    if segment.timeline >= follow {
        return None;
    }
    parse_history(history)
        .into_iter()
        .find(|(tli, _)| *tli == segment.timeline)
        .map(|(_, switch)| switch)
        .filter(|switch| segment.number(segment_size) >= switch.0 / segment_size)
}

/// The state of the WAL archive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WalStatus {
    /// Where the archive is.
    pub location: String,
    /// Segment size assumed for the arithmetic.
    pub segment_size: u64,
    /// Per timeline, oldest first.
    pub timelines: Vec<TimelineRange>,
    /// Newest archived segment.
    pub newest: Option<String>,
    /// When it was archived.
    pub newest_archived_at: Option<Timestamp>,
    /// Its age in seconds.
    pub newest_age_secs: Option<f64>,
    /// Reach of the latest physical backup, when there is one.
    pub reachable: Option<Reachable>,
    /// Live RPO: seconds from the newest recoverable point to now.
    pub rpo_secs: Option<f64>,
    /// Timelines after the first with archived segments but no history file: recovery
    /// to the latest point cannot tell it should follow them (the server promoted to one
    /// did not archive its history, e.g. archiving was off at the promotion).
    pub without_history: Vec<u32>,
}

/// The base backup a recovery chain starts from.
#[derive(Debug, Clone)]
pub struct ChainStart {
    /// Snapshot id.
    pub backup_id: String,
    /// Timeline at backup start.
    pub timeline: u32,
    /// Backup start LSN.
    pub start_lsn: Lsn,
    /// The timeline recovery is to end on (`recovery_target_timeline`); `None`: the newest
    /// one that descends from the backup's (PostgreSQL's `latest`).
    pub target_timeline: Option<u32>,
    /// Where the backup ends, when its WAL is not inside it: recovery must replay at least
    /// this far to reach a consistent state.
    pub stop_lsn: Option<Lsn>,
    /// Where the WAL inside the backup ends, when it has its own (taken while archiving
    /// was off): the segments up to this one are in the backup, not needed from the
    /// archive (PostgreSQL switched segments as the backup ended, so the last is whole).
    pub wal_inside_to: Option<Lsn>,
}

impl ChainStart {
    /// The chain of the physical backup `backup_id`, ending on the newest timeline.
    #[must_use]
    pub fn of_backup(
        backup_id: &str,
        p: &crate::sources::postgres::physical::PhysicalMeta,
    ) -> Self {
        Self {
            backup_id: backup_id.to_string(),
            timeline: p.timeline,
            start_lsn: p.start_lsn,
            target_timeline: None,
            stop_lsn: (!p.wal_included).then_some(p.stop_lsn),
            wal_inside_to: p.wal_included.then_some(p.stop_lsn),
        }
    }
}

/// Which segments a recovery from `start` replays, timeline by timeline:
/// `(timeline, first segment number, first number of the next timeline)`.
fn timeline_path(
    start: &ChainStart,
    histories: &BTreeMap<u32, Vec<(u32, Lsn)>>,
    segment_size: u64,
) -> Vec<(u32, u64, Option<u64>)> {
    // a timeline descends from the backup's when its history branches off the backup's
    // timeline after the backup started: one that branched earlier does not contain the
    // backup, and PostgreSQL refuses to follow it
    let descends = |h: &Vec<(u32, Lsn)>| {
        h.iter()
            .any(|(p, switch)| *p == start.timeline && *switch >= start.start_lsn)
    };
    let target = match start.target_timeline {
        Some(t) if t == start.timeline => None,
        Some(t) => histories
            .get(&t)
            .filter(|h| descends(h))
            .map(|h| (t, h.clone())),
        // as PostgreSQL finds the latest: the timelines after the backup's, one by one, up
        // to the first without a history file
        None => {
            let mut newest = start.timeline;
            while histories.contains_key(&(newest + 1)) {
                newest += 1;
            }
            histories
                .get(&newest)
                .filter(|h| newest > start.timeline && descends(h))
                .map(|h| (newest, h.clone()))
        }
    };
    let first = start.start_lsn.0 / segment_size;
    let Some((target, history)) = target else {
        return vec![(start.timeline, first, None)];
    };
    let mut path = Vec::new();
    let mut begin = first;
    for (i, (tli, switch)) in history.iter().enumerate() {
        if *tli < start.timeline {
            continue;
        }
        let next_begin = switch.0 / segment_size;
        path.push((*tli, begin, Some(next_begin)));
        begin = next_begin;
        if i + 1 == history.len() {
            break;
        }
    }
    path.push((target, begin, None));
    path
}

/// Computes the status from the archive listing.
///
/// # Errors
///
/// When the archive cannot be listed or a timeline history file cannot be read.
pub fn status(
    store: &WalStore,
    start: Option<&ChainStart>,
    segment_size: u64,
) -> Result<WalStatus> {
    let listing = store.list()?;
    let (by_tl, history_tls) = index_listing(&listing, segment_size);
    let mut timelines = Vec::new();
    for (tli, segs) in &by_tl {
        let (Some((&lo, _)), Some((&hi, _))) = (segs.first_key_value(), segs.last_key_value())
        else {
            continue;
        };
        let mut gaps = Vec::new();
        let mut prev = lo;
        for &n in segs.keys().skip(1) {
            if n > prev + 1 {
                gaps.push((
                    SegmentName::from_number(*tli, prev + 1, segment_size).to_string(),
                    SegmentName::from_number(*tli, n - 1, segment_size).to_string(),
                ));
            }
            prev = n;
        }
        timelines.push(TimelineRange {
            timeline: *tli,
            first: SegmentName::from_number(*tli, lo, segment_size).to_string(),
            last: SegmentName::from_number(*tli, hi, segment_size).to_string(),
            segments: segs.len() as u64,
            stored_bytes: segs.values().map(|w| w.stored_bytes).sum(),
            gaps,
        });
    }
    let newest = listing
        .iter()
        .filter(|w| matches!(w.file, WalFile::Segment(_)))
        .max_by_key(|w| (w.archived_at, w.file));
    let now = Timestamp::now();
    let age = |t: Option<Timestamp>| {
        t.map(|t| (now.as_millisecond() - t.as_millisecond()) as f64 / 1000.0)
    };
    let reachable = match start {
        None => None,
        Some(start) => {
            let histories = read_histories(store, &history_tls)?;
            Some(reach(start, &by_tl, &histories, segment_size))
        }
    };
    Ok(WalStatus {
        location: store.location().to_string(),
        segment_size,
        timelines,
        newest: newest.map(|w| w.file.to_string()),
        newest_archived_at: newest.and_then(|w| w.archived_at),
        newest_age_secs: age(newest.and_then(|w| w.archived_at)),
        rpo_secs: reachable.as_ref().and_then(|r| age(r.until_time)),
        reachable,
        // timeline 1 has no history; any other begins with one
        without_history: by_tl
            .keys()
            .copied()
            .filter(|t| *t > 1 && !history_tls.contains(t))
            .collect(),
    })
}

/// Where the WAL a recovery from a base backup replays (starting at `backup_start` on
/// `backup_timeline`, along the chain `reach` to its end) creates a tablespace, as pushes
/// marked it ([`WalStore::tablespace_marks`]): recovery lifeboat sets up ends just before
/// it. A mark on an older timeline past where the newest one left it (an old primary's,
/// after a failover) is on no such path.
///
/// # Errors
///
/// A storage error, or a history file that cannot be read.
pub fn tablespace_creation_on_path(
    store: &WalStore,
    reach: &Reachable,
    (backup_start, backup_timeline): (Lsn, u32),
) -> Result<Option<Lsn>> {
    let marks: Vec<(u32, Lsn)> = store
        .tablespace_marks()?
        .into_iter()
        .filter(|(tl, lsn)| {
            *lsn >= backup_start
                && *lsn < reach.until_lsn
                && (backup_timeline..=reach.timeline).contains(tl)
        })
        .collect();
    if marks.is_empty() {
        return Ok(None);
    }
    let latest = LatestTimeline::new(store)?;
    let mut on_path = None;
    for (tl, lsn) in marks {
        if tl != reach.timeline && latest.left(tl, lsn)?.is_some() {
            continue;
        }
        on_path = Some(on_path.map_or(lsn, |o: Lsn| o.min(lsn)));
    }
    Ok(on_path)
}

/// The reach of each of `starts` (older base backups) whose recovery stops at a gap or
/// cannot become consistent: what a gap before the latest backup costs. A gap cannot be
/// repaired (the WAL is gone), so it is not an error the way a gap after the latest backup
/// is; but restoring a point after it needs a backup taken after it, and the operator has
/// to know which backups stop where.
///
/// # Errors
///
/// When the archive cannot be listed or a timeline history file cannot be read.
pub fn cut_short(
    store: &WalStore,
    starts: &[ChainStart],
    segment_size: u64,
) -> Result<Vec<Reachable>> {
    let listing = store.list()?;
    let (by_tl, history_tls) = index_listing(&listing, segment_size);
    let histories = read_histories(store, &history_tls)?;
    Ok(starts
        .iter()
        .map(|s| reach(s, &by_tl, &histories, segment_size))
        .filter(|r| r.blocked_by.is_some() || !r.consistent)
        .collect())
}

/// A timeline's history: each ancestor timeline and the LSN where the next one began.
pub type History = Vec<(u32, Lsn)>;

/// The timeline a recovery to `recovery_target_timeline = 'latest'` ends on, and whether a
/// base backup lies on its history. PostgreSQL probes the timelines after the backup's one
/// by one and stops at the first without a history file; it then fails when that
/// timeline's history left the backup's timeline before the backup ended.
pub struct LatestTimeline<'a> {
    store: &'a WalStore,
    listed: BTreeSet<u32>,
    read: std::cell::RefCell<BTreeMap<u32, History>>,
}

impl<'a> LatestTimeline<'a> {
    /// Reads which history files the archive holds.
    ///
    /// # Errors
    ///
    /// When the archive cannot be listed.
    pub fn new(store: &'a WalStore) -> Result<Self> {
        Ok(Self {
            store,
            listed: history_timelines(store)?,
            read: std::cell::RefCell::default(),
        })
    }

    /// Timelines whose archived WAL (`timelines`) goes on past where a newer timeline
    /// branched off them (by more than the segment holding the branch point): a server kept
    /// writing on the old timeline after a promotion, the old primary after a failover most
    /// often. Its writes after the branch are in no restore to the latest timeline.
    ///
    /// # Errors
    ///
    /// When a history file cannot be read.
    pub fn kept_writing(
        &self,
        timelines: &[TimelineRange],
        segment_size: u64,
    ) -> Result<Vec<KeptWriting>> {
        let mut out = Vec::new();
        for (child, history) in read_histories(self.store, &self.listed)? {
            let Some(&(parent, switch)) = history.last() else {
                continue;
            };
            let Some(range) = timelines.iter().find(|r| r.timeline == parent) else {
                continue;
            };
            let Some(last) = SegmentName::parse(&range.last) else {
                continue;
            };
            if last.number(segment_size) > switch.0 / segment_size {
                out.push(KeptWriting {
                    timeline: parent,
                    child,
                    switch,
                    last: range.last.clone(),
                });
            }
        }
        Ok(out)
    }

    /// `backups` split into those a recovery to the latest timeline can start from and
    /// those it cannot (see [`LatestTimeline::left`]); a backup without physical metadata
    /// counts as the former.
    ///
    /// # Errors
    ///
    /// When a history file cannot be read.
    pub fn split(
        &self,
        backups: Vec<crate::repository::SnapshotInfo>,
    ) -> Result<(
        Vec<crate::repository::SnapshotInfo>,
        Vec<crate::repository::SnapshotInfo>,
    )> {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for b in backups {
            let left = match &b.meta.physical {
                Some(p) => self.left(p.timeline, p.stop_lsn)?.is_some(),
                None => false,
            };
            if left {
                off.push(b);
            } else {
                on.push(b);
            }
        }
        Ok((on, off))
    }

    /// For a base backup on `timeline` that ended at `stop`: `None` when recovery to the
    /// latest timeline can start from it, else that timeline and where it left the
    /// backup's (an old primary's backup, taken after a failover).
    ///
    /// # Errors
    ///
    /// When a history file cannot be read.
    pub fn left(&self, timeline: u32, stop: Lsn) -> Result<Option<(u32, Lsn)>> {
        let mut newest = timeline;
        while self.listed.contains(&(newest + 1)) {
            newest += 1;
        }
        if newest == timeline {
            return Ok(None);
        }
        if !self.read.borrow().contains_key(&newest) {
            let h = read_histories(self.store, &BTreeSet::from([newest]))?
                .remove(&newest)
                .unwrap_or_default();
            self.read.borrow_mut().insert(newest, h);
        }
        let read = self.read.borrow();
        let history = read.get(&newest).map_or(&[][..], Vec::as_slice);
        Ok(left_before(newest, history, timeline, stop).map(|s| (newest, s)))
    }
}

/// The timelines whose history file the archive holds.
fn history_timelines(store: &WalStore) -> Result<BTreeSet<u32>> {
    Ok(store
        .list()?
        .iter()
        .filter_map(|w| match w.file {
            WalFile::TimelineHistory(t) => Some(t),
            _ => None,
        })
        .collect())
}

/// A timeline that kept receiving WAL past the point where a newer one branched off it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KeptWriting {
    /// The timeline left.
    pub timeline: u32,
    /// The timeline that branched off it.
    pub child: u32,
    /// Where it branched.
    pub switch: Lsn,
    /// The newest segment archived on the timeline left.
    pub last: String,
}

/// Where the newest timeline (`newest`, with its `history`) left `timeline`, when that was
/// before `stop`: a base backup on `timeline` that ended at `stop` is then not on the
/// newest timeline's history, and recovery to the latest timeline cannot start from it (a
/// backup of an old primary that kept writing after a failover). `None` when the backup
/// lies on it.
#[must_use]
fn left_before(newest: u32, history: &[(u32, Lsn)], timeline: u32, stop: Lsn) -> Option<Lsn> {
    if timeline >= newest {
        return None;
    }
    match history.iter().find(|(p, _)| *p == timeline) {
        Some((_, switch)) if *switch >= stop => None,
        Some((_, switch)) => Some(*switch),
        None => Some(Lsn(0)),
    }
}

/// Segments by timeline and number, and the timelines that have a history file.
fn index_listing(
    listing: &[StoredWal],
    segment_size: u64,
) -> (BTreeMap<u32, BTreeMap<u64, &StoredWal>>, BTreeSet<u32>) {
    let mut by_tl: BTreeMap<u32, BTreeMap<u64, &StoredWal>> = BTreeMap::new();
    let mut history_tls = BTreeSet::new();
    for w in listing {
        match w.file {
            WalFile::Segment(s) => {
                by_tl
                    .entry(s.timeline)
                    .or_default()
                    .insert(s.number(segment_size), w);
            }
            WalFile::TimelineHistory(t) => {
                history_tls.insert(t);
            }
            _ => {}
        }
    }
    (by_tl, history_tls)
}

fn read_histories(
    store: &WalStore,
    timelines: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, Vec<(u32, Lsn)>>> {
    let mut histories = BTreeMap::new();
    for t in timelines {
        if let Some(bytes) = store.get(&WalFile::TimelineHistory(*t))? {
            histories.insert(*t, parse_history(&String::from_utf8_lossy(&bytes)));
        }
    }
    Ok(histories)
}

fn reach(
    start: &ChainStart,
    by_tl: &BTreeMap<u32, BTreeMap<u64, &StoredWal>>,
    histories: &BTreeMap<u32, Vec<(u32, Lsn)>>,
    segment_size: u64,
) -> Reachable {
    let path = timeline_path(start, histories, segment_size);
    let timeline = path.last().map_or(start.timeline, |(tli, _, _)| *tli);
    let mut last: Option<(u32, u64)> = None;
    let mut blocked = None;
    // segments the backup carries itself
    let inside = |tli: u32, n: u64| {
        tli == start.timeline
            && start
                .wal_inside_to
                // the last byte before the stop position: a stop on a segment boundary
                // does not bring the next segment with it
                .is_some_and(|end| n <= end.0.saturating_sub(1) / segment_size)
    };
    'walk: for (tli, begin, next) in &path {
        let segs = by_tl.get(tli);
        let mut n = *begin;
        while next.is_none_or(|nb| n < nb) {
            if segs.is_some_and(|s| s.contains_key(&n)) || inside(*tli, n) {
                last = Some((*tli, n));
                n += 1;
            } else {
                blocked = Some((*tli, n));
                break 'walk;
            }
        }
    }
    let later_exists = blocked.is_some_and(|(tli, n)| {
        by_tl
            .iter()
            .any(|(t, segs)| *t >= tli && segs.keys().any(|k| *k > n))
    });
    let (last_segment, until_lsn, until_time) = match last {
        Some((tli, n)) => {
            let seg = SegmentName::from_number(tli, n, segment_size);
            (
                seg.to_string(),
                seg.end_lsn(segment_size),
                by_tl
                    .get(&tli)
                    .and_then(|s| s.get(&n))
                    .and_then(|w| w.archived_at),
            )
        }
        None => (String::new(), start.start_lsn, None),
    };
    Reachable {
        backup_id: start.backup_id.clone(),
        last_segment,
        until_lsn,
        until_time,
        blocked_by: blocked
            .filter(|_| later_exists)
            .map(|(tli, n)| SegmentName::from_number(tli, n, segment_size).to_string()),
        consistent: start.stop_lsn.is_none_or(|s| until_lsn >= s),
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::DEFAULT_SEGMENT_SIZE as SZ;

    #[test]
    fn an_older_timeline_s_segment_past_the_branch_is_not_on_the_path() {
        // timeline 3 branched from 2 at 0/30000100, which branched from 1 at 0/170053C0
        let history =
            "1\t0/170053C0\tno recovery target specified\n2\t0/30000100\tbefore 2000-01-01\n";
        let seg = |tli: u32, n: u64| SegmentName::from_number(tli, n, SZ);
        let past = |tli, n| past_branch(history, 3, &seg(tli, n), SZ);
        assert_eq!(past(1, 0x16), None, "before the branch");
        assert_eq!(past(1, 0x17), Some(Lsn(0x1700_53C0)), "holds the branch");
        assert_eq!(past(1, 0x18), Some(Lsn(0x1700_53C0)));
        assert_eq!(past(2, 0x2F), None);
        assert_eq!(past(2, 0x30), Some(Lsn(0x3000_0100)));
        assert_eq!(past(3, 0x90), None, "the followed timeline itself");
        assert_eq!(past(4, 0x90), None, "a newer one");
        // recovery following timeline 1 takes all of it
        assert_eq!(past_branch("", 1, &seg(1, 0x90), SZ), None);
    }

    #[test]
    fn a_backup_after_its_timeline_was_left_is_off_the_newest_history() {
        // timeline 3 branched from 2 at 0/30000000, which branched from 1 at 0/12000000
        let h = [(1, Lsn(0x1200_0000)), (2, Lsn(0x3000_0000))];
        assert_eq!(left_before(3, &h, 1, Lsn(0x1100_0000)), None);
        assert_eq!(left_before(3, &h, 1, Lsn(0x1200_0000)), None);
        // the old primary kept writing on timeline 1 after the promotion
        assert_eq!(
            left_before(3, &h, 1, Lsn(0x1500_0000)),
            Some(Lsn(0x1200_0000))
        );
        assert_eq!(left_before(3, &h, 2, Lsn(0x2000_0000)), None);
        assert_eq!(left_before(3, &h, 3, Lsn(0x9000_0000)), None);
        // a timeline the newest does not descend from at all
        assert_eq!(
            left_before(5, &[(1, Lsn(0x100))], 4, Lsn(0x50)),
            Some(Lsn(0))
        );
    }

    fn stored(tli: u32, n: u64) -> StoredWal {
        StoredWal {
            file: WalFile::Segment(SegmentName::from_number(tli, n, SZ)),
            stored_bytes: 1,
            archived_at: Some(Timestamp::from_second(1_000 + n as i64).expect("ts")),
        }
    }

    fn index(list: &[StoredWal]) -> BTreeMap<u32, BTreeMap<u64, &StoredWal>> {
        let mut m: BTreeMap<u32, BTreeMap<u64, &StoredWal>> = BTreeMap::new();
        for w in list {
            let s = w.file.segment().expect("segment");
            m.entry(s.timeline).or_default().insert(s.number(SZ), w);
        }
        m
    }

    fn start(tli: u32, seg: u64) -> ChainStart {
        ChainStart {
            backup_id: "b".into(),
            timeline: tli,
            start_lsn: Lsn(seg * SZ + 40),
            target_timeline: None,
            stop_lsn: None,
            wal_inside_to: None,
        }
    }

    #[test]
    fn a_backup_with_its_own_wal_needs_the_archive_only_after_it() {
        // taken while archiving was off: segments 2 and 3 are in the backup, the archive
        // begins at 4 (archiving was switched on later)
        let own = ChainStart {
            wal_inside_to: Some(Lsn(3 * SZ + 500)),
            ..start(1, 2)
        };
        let h = BTreeMap::new();
        let later: Vec<_> = (4..=6).map(|n| stored(1, n)).collect();
        let r = reach(&own, &index(&later), &h, SZ);
        assert!(r.consistent);
        assert_eq!(r.blocked_by, None);
        assert_eq!(r.last_segment, "000000010000000000000006");
        // a hole after the backup's own WAL is still a gap
        let holed = [stored(1, 5), stored(1, 6)];
        let r = reach(&own, &index(&holed), &h, SZ);
        assert_eq!(r.blocked_by.as_deref(), Some("000000010000000000000004"));
        assert_eq!(r.last_segment, "000000010000000000000003");
    }

    #[test]
    fn a_backup_without_its_own_wal_is_not_consistent() {
        // the backup runs from segment 5 to segment 6; segment 5 is missing, later WAL is there
        let ends_in_6 = ChainStart {
            stop_lsn: Some(Lsn(6 * SZ + 300)),
            ..start(1, 5)
        };
        let h = BTreeMap::new();
        let gap: Vec<_> = (6..=8).map(|n| stored(1, n)).collect();
        let r = reach(&ends_in_6, &index(&gap), &h, SZ);
        assert!(!r.consistent);
        assert_eq!(r.blocked_by.as_deref(), Some("000000010000000000000005"));
        // only segment 5: the backup's end in segment 6 is not reached either
        let short = [stored(1, 5)];
        assert!(!reach(&ends_in_6, &index(&short), &h, SZ).consistent);
        let whole: Vec<_> = (5..=6).map(|n| stored(1, n)).collect();
        assert!(reach(&ends_in_6, &index(&whole), &h, SZ).consistent);
        // WAL inside the backup (no stop_lsn to reach): consistent whatever is archived
        assert!(reach(&start(1, 5), &index(&gap), &h, SZ).consistent);
    }

    #[test]
    fn a_timeline_that_branched_before_the_backup_is_not_followed() {
        // timeline 2 branched at segment 3 of timeline 1; the backup started at segment 5
        // of timeline 1 (taken on the old primary after the branch)
        let mut list: Vec<_> = (5..=7).map(|n| stored(1, n)).collect();
        list.extend((3..=9).map(|n| stored(2, n)));
        let mut h = BTreeMap::new();
        h.insert(2, vec![(1, Lsn(3 * SZ + 100))]);
        let r = reach(&start(1, 5), &index(&list), &h, SZ);
        assert_eq!(r.last_segment, "000000010000000000000007");
    }

    #[test]
    fn an_asked_for_timeline_is_followed_and_current_stays() {
        // timelines 2 and 3 both branch off timeline 1 after the backup
        let mut list: Vec<_> = (2..=8).map(|n| stored(1, n)).collect();
        list.extend((5..=6).map(|n| stored(2, n)));
        list.extend((6..=9).map(|n| stored(3, n)));
        let mut h = BTreeMap::new();
        h.insert(2, vec![(1, Lsn(5 * SZ + 100))]);
        h.insert(3, vec![(1, Lsn(6 * SZ + 100))]);
        let latest = reach(&start(1, 2), &index(&list), &h, SZ);
        assert_eq!(latest.last_segment, "000000030000000000000009");
        let two = ChainStart {
            target_timeline: Some(2),
            ..start(1, 2)
        };
        assert_eq!(
            reach(&two, &index(&list), &h, SZ).last_segment,
            "000000020000000000000006"
        );
        let current = ChainStart {
            target_timeline: Some(1),
            ..start(1, 2)
        };
        assert_eq!(
            reach(&current, &index(&list), &h, SZ).last_segment,
            "000000010000000000000008"
        );
    }

    #[test]
    fn chain_stops_at_a_gap_and_names_it() {
        let list: Vec<_> = [2, 3, 4, 6, 7].iter().map(|n| stored(1, *n)).collect();
        let r = reach(&start(1, 2), &index(&list), &BTreeMap::new(), SZ);
        assert_eq!(r.last_segment, "000000010000000000000004");
        assert_eq!(r.blocked_by.as_deref(), Some("000000010000000000000005"));
        assert_eq!(r.until_lsn, Lsn(5 * SZ));
    }

    #[test]
    fn chain_follows_a_new_timeline() {
        // timeline 2 branched at segment 5 of timeline 1
        let mut list: Vec<_> = (2..=6).map(|n| stored(1, n)).collect();
        list.extend((5..=8).map(|n| stored(2, n)));
        let mut h = BTreeMap::new();
        h.insert(2, vec![(1, Lsn(5 * SZ + 100))]);
        let r = reach(&start(1, 2), &index(&list), &h, SZ);
        assert_eq!(r.last_segment, "000000020000000000000008");
        assert!(r.blocked_by.is_none());
    }

    #[test]
    fn end_of_archive_is_not_a_gap() {
        let list: Vec<_> = (2..=4).map(|n| stored(1, n)).collect();
        let r = reach(&start(1, 2), &index(&list), &BTreeMap::new(), SZ);
        assert!(r.blocked_by.is_none());
        assert_eq!(r.last_segment, "000000010000000000000004");
    }
}
