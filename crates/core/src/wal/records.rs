//! Reading a WAL segment's records as far as a restore needs: finding the ones that create
//! a tablespace. Replaying `CREATE TABLESPACE ... LOCATION '/dir'` makes the restored server
//! use `/dir` itself; on the production host that is the live server's tablespace, which a
//! drill or a copy beside production then writes into (a walkthrough saw a drill corrupt a
//! production table this way). lifeboat backs up no tablespaces, so a restore's recovery is cut
//! just before such a record.
//!
//! Only the framing is read (page headers, record lengths, resource manager and info
//! bytes), as PostgreSQL lays it out since 9.5: 8 KiB pages, a long page header on a
//! segment's first page, records 8-byte aligned and free to cross pages.

use super::name::Lsn;

const PAGE: usize = 8192;
const SHORT_HEADER: usize = 24;
const LONG_HEADER: usize = 40;
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
const RECORD_HEADER: usize = 24;
const RM_XLOG_ID: u8 = 0;
const XLOG_SWITCH: u8 = 0x40;
const RM_TBLSPC_ID: u8 = 5;
const XLOG_TBLSPC_CREATE: u8 = 0x00;
const RMGR_INFO_MASK: u8 = 0xF0;

/// A `CREATE TABLESPACE` found in WAL: where its record starts, and the directory it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceCreation {
    /// The record's position.
    pub lsn: Lsn,
    /// The tablespace's directory (`LOCATION`).
    pub location: String,
}

/// A segment's record bytes without page headers, addressed from 0 (the first byte after
/// the segment's long header).
struct Payload<'a> {
    seg: &'a [u8],
    /// Pages whose header says they belong to this segment at their place.
    pages: usize,
}

impl Payload<'_> {
    const FIRST: usize = PAGE - LONG_HEADER;
    const OTHER: usize = PAGE - SHORT_HEADER;

    fn len(&self) -> usize {
        match self.pages {
            0 => 0,
            n => Self::FIRST + (n - 1) * Self::OTHER,
        }
    }

    /// The segment offset of payload byte `at`.
    fn physical(at: usize) -> usize {
        if at < Self::FIRST {
            LONG_HEADER + at
        } else {
            let rest = at - Self::FIRST;
            (1 + rest / Self::OTHER) * PAGE + SHORT_HEADER + rest % Self::OTHER
        }
    }

    /// `n` payload bytes from `at`: borrowed when no page header lies between them (most
    /// records), gathered across page headers otherwise.
    fn bytes(&self, at: usize, n: usize) -> Option<std::borrow::Cow<'_, [u8]>> {
        if n == 0 || at.checked_add(n)? > self.len() {
            return (n == 0).then_some(std::borrow::Cow::Borrowed(&[][..]));
        }
        let (first, last) = (Self::physical(at), Self::physical(at + n - 1));
        if last - first == n - 1 {
            return Some(std::borrow::Cow::Borrowed(&self.seg[first..=last]));
        }
        Some(std::borrow::Cow::Owned(
            (at..at + n).map(|i| self.seg[Self::physical(i)]).collect(),
        ))
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

const fn align(n: usize) -> usize {
    (n + 7) & !7
}

/// The tablespaces the records of `segment` (one whole WAL segment, as archived) create
/// with a directory of their own; in-place ones (an empty `LOCATION`) stay inside the data
/// directory and are left out. A creation this segment holds only part of is reported with
/// an unknown location: refusing it is safe, missing it is not. A segment whose first
/// page is not a WAL segment's gives none.
#[must_use]
pub fn tablespace_creations(segment: &[u8]) -> Vec<TablespaceCreation> {
    let mut found = Vec::new();
    each_record(segment, |payload, start, rec| match rec {
        Record::Continued(rest) => found.extend(split_creation(payload, rest, start)),
        Record::Whole {
            at,
            total,
            info,
            rmid,
        } => {
            if rmid == RM_TBLSPC_ID && info & RMGR_INFO_MASK == XLOG_TBLSPC_CREATE {
                let lsn = Lsn(start + Payload::physical(at) as u64);
                match payload.bytes(at, total) {
                    Some(r) => {
                        if let Some(location) = create_location(&r[RECORD_HEADER..]) {
                            if !location.is_empty() {
                                found.push(TablespaceCreation { lsn, location });
                            }
                        }
                    }
                    None => found.push(TablespaceCreation {
                        lsn,
                        location: UNKNOWN_LOCATION.into(),
                    }),
                }
            }
        }
    });
    found
}

/// Zeroes `segment` (one whole WAL segment) from the first tablespace creation that
/// `applies` (recovery would replay it): from its record's start, so that PostgreSQL reads
/// the WAL as ending just before it; the whole segment when the record began in the
/// segment before (its header cut there), since this segment's first bytes complete it.
/// Returns the creation cut at.
pub fn cut_before_creation(
    segment: &mut [u8],
    applies: impl Fn(Lsn) -> bool,
) -> Option<TablespaceCreation> {
    let t = tablespace_creations(segment)
        .into_iter()
        .find(|t| applies(t.lsn))?;
    let start = u64_at(segment, 8);
    let at = t
        .lsn
        .0
        .checked_sub(start)
        .and_then(|o| usize::try_from(o).ok())
        .map_or(0, |o| o.min(segment.len()));
    segment[at..].fill(0);
    Some(t)
}

/// Where the last record that starts and ends in `segment` (one whole WAL segment, as
/// archived) starts: a recovery target (`--target-lsn`, inclusive) that the segment alone
/// lets recovery reach, when the next segment is missing (a segment's end is not one: no
/// record starts there). `None` when no record does.
#[must_use]
pub fn last_whole_record(segment: &[u8]) -> Option<Lsn> {
    let mut last = None;
    each_record(segment, |payload, start, rec| {
        if let Record::Whole { at, total, .. } = rec {
            if payload.bytes(at, total).is_some() {
                last = Some(Lsn(start + Payload::physical(at) as u64));
            }
        }
    });
    last
}

/// What [`each_record`] shows of a record.
enum Record {
    /// The segment begins with the rest (this many bytes) of a record begun before it.
    Continued(usize),
    /// A record beginning at payload byte `at`, `total` bytes long (it may run on into the
    /// next segment), of resource manager `rmid` with `info`.
    Whole {
        at: usize,
        total: usize,
        info: u8,
        rmid: u8,
    },
}

/// Walks the records of `segment` in order, with the segment's payload and start LSN.
fn each_record(segment: &[u8], mut visit: impl FnMut(&Payload<'_>, u64, Record)) {
    if segment.len() < PAGE || !segment.len().is_multiple_of(PAGE) {
        return;
    }
    let info = u16_at(segment, 2);
    if info & XLP_LONG_HEADER == 0 {
        return;
    }
    let start = u64_at(segment, 8);
    // a page written for another place (a recycled file's old contents) ends the records
    let pages = (0..segment.len() / PAGE)
        .take_while(|&p| u64_at(segment, p * PAGE + 8) == start + (p * PAGE) as u64)
        .count();
    let payload = Payload {
        seg: segment,
        pages,
    };
    let mut at = 0;
    if info & XLP_FIRST_IS_CONTRECORD != 0 {
        let rest = u32_at(segment, 16) as usize;
        visit(&payload, start, Record::Continued(rest));
        at = align(rest);
    }
    while at < payload.len() {
        // a header cut by the segment's end is read from the next segment's first page
        let Some(header) = payload.bytes(at, RECORD_HEADER) else {
            break;
        };
        let total = u32_at(&header, 0) as usize;
        // checked first: a header read across into such a page is not this record's
        if let Some(resume) = abandoned(&payload, at, total.max(RECORD_HEADER)) {
            at = resume;
            continue;
        }
        if total < RECORD_HEADER {
            break; // zeros: the end of the WAL written so far
        }
        let (info, rmid) = (header[16], header[17]);
        visit(
            &payload,
            start,
            Record::Whole {
                at,
                total,
                info,
                rmid,
            },
        );
        if rmid == RM_XLOG_ID && info & RMGR_INFO_MASK == XLOG_SWITCH {
            break; // the rest of the segment is unused
        }
        at += align(total);
    }
}

/// The location of a creation whose record this segment holds only the start of.
pub const UNKNOWN_LOCATION: &str = "(a directory named in the next segment)";

/// Where to read on when the record at payload byte `at`, `total` bytes long, runs into a
/// page that does not continue it: the record was abandoned (a crash in its middle) and
/// that page starts afresh (PostgreSQL marks it `XLP_FIRST_IS_OVERWRITE_CONTRECORD`).
fn abandoned(payload: &Payload<'_>, at: usize, total: usize) -> Option<usize> {
    let first = Payload::physical(at) / PAGE;
    let last = Payload::physical((at + total - 1).min(payload.len().max(1) - 1)) / PAGE;
    if last == first || first + 1 >= payload.pages {
        return None;
    }
    let next = first + 1;
    let continues = u16_at(payload.seg, next * PAGE + 2) & XLP_FIRST_IS_CONTRECORD != 0;
    (!continues).then_some(Payload::FIRST + (next - 1) * Payload::OTHER)
}

/// A creation whose record began in the previous segment with its header cut there: a
/// header starts 8-byte aligned, so 8 or 16 of its 24 bytes were there, and its resource
/// manager and info bytes are in the `rest` bytes this segment begins with.
fn split_creation(payload: &Payload<'_>, rest: usize, start: u64) -> Option<TablespaceCreation> {
    let cont = payload.bytes(0, rest.min(payload.len()))?;
    [8usize, 16].into_iter().find_map(|before| {
        let (info, rmid) = (*cont.get(16 - before)?, *cont.get(17 - before)?);
        if rmid != RM_TBLSPC_ID || info & RMGR_INFO_MASK != XLOG_TBLSPC_CREATE {
            return None;
        }
        let location = create_location(cont.get(RECORD_HEADER - before..)?)?;
        location.starts_with('/').then(|| TablespaceCreation {
            lsn: Lsn(start - before as u64),
            location,
        })
    })
}

/// The directory in a tablespace creation's main data (`Oid ts_id; char ts_path[]`),
/// after the block headers that may precede it.
fn create_location(mut r: &[u8]) -> Option<String> {
    let data = loop {
        let (&id, rest) = r.split_first()?;
        r = match id {
            // XLR_BLOCK_ID_DATA_SHORT: a one-byte length, then the data
            255 => {
                let (&n, rest) = rest.split_first()?;
                break rest.get(..usize::from(n))?;
            }
            // XLR_BLOCK_ID_DATA_LONG: a four-byte length
            254 => {
                let n = u32_at(rest.get(..4)?, 0) as usize;
                break rest.get(4..4 + n)?;
            }
            // the replication origin, the top-level transaction
            253 => rest.get(2..)?,
            252 => rest.get(4..)?,
            _ => return None, // block references: not a tablespace creation
        };
    };
    let path = data.get(4..)?;
    let end = path.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&path[..end]).into_owned())
}

/// A one-page WAL segment at `start` whose first record creates a tablespace in
/// `location` (for tests elsewhere), and that record's LSN.
#[cfg(test)]
pub(crate) fn segment_creating(start: u64, location: &str) -> (Vec<u8>, Lsn) {
    let mut w = tests::Wal::default();
    let at = w.push(tests::create(location));
    (
        w.segment(start, 1),
        Lsn(start + Payload::physical(at) as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payload laid out as PostgreSQL does: records back to back, each page after the first
    /// marked as continuing the record that runs into it.
    #[derive(Default)]
    pub(super) struct Wal {
        payload: Vec<u8>,
        /// (start, length) of each record.
        records: Vec<(usize, usize)>,
    }

    impl Wal {
        pub(super) fn push(&mut self, r: Vec<u8>) -> usize {
            let at = self.payload.len();
            let total = u32_at(&r, 0) as usize;
            self.records.push((at, total));
            self.payload.extend(r);
            at
        }

        pub(super) fn segment(&self, start: u64, pages: usize) -> Vec<u8> {
            let mut seg = vec![0u8; pages * PAGE];
            for p in 0..pages {
                let h = p * PAGE;
                seg[h..h + 2].copy_from_slice(&0xD110u16.to_le_bytes());
                let mut info: u16 = if p == 0 { XLP_LONG_HEADER } else { 0 };
                if p > 0 {
                    let b = Payload::FIRST + (p - 1) * Payload::OTHER;
                    if let Some((s, t)) = self.records.iter().find(|(s, t)| *s < b && b < s + t) {
                        info |= XLP_FIRST_IS_CONTRECORD;
                        seg[h + 16..h + 20].copy_from_slice(&((s + t - b) as u32).to_le_bytes());
                    }
                }
                seg[h + 2..h + 4].copy_from_slice(&info.to_le_bytes());
                seg[h + 8..h + 16].copy_from_slice(&(start + (p * PAGE) as u64).to_le_bytes());
            }
            for (i, b) in self.payload.iter().enumerate() {
                if let Some(at) = seg.get_mut(Payload::physical(i)) {
                    *at = *b;
                }
            }
            seg
        }
    }

    fn record(rmid: u8, info: u8, data: &[u8]) -> Vec<u8> {
        let mut main = vec![];
        if data.len() < 256 {
            main.push(255);
            main.push(data.len() as u8);
        } else {
            main.push(254);
            main.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        main.extend_from_slice(data);
        let total = RECORD_HEADER + main.len();
        let mut r = vec![0u8; RECORD_HEADER];
        r[0..4].copy_from_slice(&(total as u32).to_le_bytes());
        r[16] = info;
        r[17] = rmid;
        r.extend_from_slice(&main);
        r.resize(align(total), 0);
        r
    }

    pub(super) fn create(path: &str) -> Vec<u8> {
        let mut d = 16_385u32.to_le_bytes().to_vec();
        d.extend_from_slice(path.as_bytes());
        d.push(0);
        record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, &d)
    }

    /// Other records up to `at` in the payload (a multiple of 8, at least 32 past the
    /// current end).
    fn fill_to(w: &mut Wal, at: usize) {
        while w.payload.len() + 72 + 32 <= at {
            w.push(record(10, 0x00, &[7u8; 40]));
        }
        let rest = at - w.payload.len();
        w.push(record(10, 0x00, &vec![7u8; rest - RECORD_HEADER - 2]));
        assert_eq!(w.payload.len(), at);
    }

    /// A one-page segment at `start` that begins with the rest of `rec`, whose first
    /// `before` bytes (8 or 16: part of its header) ended the segment before.
    fn begun_before(rec: &[u8], before: usize, start: u64) -> Vec<u8> {
        let total = u32_at(rec, 0) as usize;
        let mut w = Wal {
            payload: rec[before..].to_vec(),
            ..Wal::default()
        };
        w.payload.resize(align(total - before), 0);
        w.records.push((0, total - before));
        w.push(record(10, 0, &[1u8; 8]));
        let mut seg = w.segment(start, 1);
        seg[2..4].copy_from_slice(&(XLP_LONG_HEADER | XLP_FIRST_IS_CONTRECORD).to_le_bytes());
        seg[16..20].copy_from_slice(&((total - before) as u32).to_le_bytes());
        seg
    }

    #[test]
    fn finds_a_creation_across_a_page_boundary_and_not_other_records() {
        let start = 0x0300_0000u64;
        let mut w = Wal::default();
        // a drop (info 0x10) is not a creation
        w.push(record(RM_TBLSPC_ID, 0x10, &16_385u32.to_le_bytes()));
        // the creation's header is split by the second page's header
        fill_to(&mut w, Payload::FIRST - 16);
        let at = w.push(create("/srv/pg/ts1"));
        // an in-place tablespace stays in the data directory
        w.push(create(""));
        let found = tablespace_creations(&w.segment(start, 4));
        assert_eq!(
            found,
            vec![TablespaceCreation {
                lsn: Lsn(start + Payload::physical(at) as u64),
                location: "/srv/pg/ts1".into()
            }]
        );
        assert!(Payload::physical(at) < PAGE && Payload::physical(at + 40) > PAGE);
    }

    #[test]
    fn the_last_whole_record_is_a_target_the_segment_reaches() {
        let start = 0x1300_0000u64;
        let mut w = Wal::default();
        w.push(record(10, 0x00, &[7u8; 40]));
        let switch = w.push(record(RM_XLOG_ID, XLOG_SWITCH, &[]));
        w.push(record(10, 0x00, &[7u8; 40]));
        assert_eq!(
            last_whole_record(&w.segment(start, 2)),
            Some(Lsn(start + Payload::physical(switch) as u64)),
            "the switch ends the segment's records"
        );
        // without a switch: the last record that ends in the segment, not one running on
        let mut w = Wal::default();
        let whole = w.push(record(10, 0x00, &[7u8; 40]));
        fill_to(&mut w, Payload::FIRST + Payload::OTHER - 104);
        let before_last = w.payload.len();
        w.push(record(10, 0x00, &[7u8; 200]));
        let seg = w.segment(start, 2);
        let last = last_whole_record(&seg).expect("a record");
        assert!(last.0 < start + Payload::physical(before_last) as u64);
        assert!(last.0 > start + Payload::physical(whole) as u64);
        assert_eq!(last_whole_record(&[0u8; PAGE]), None);
    }

    #[test]
    fn stops_at_a_switch_a_stale_page_and_zeros() {
        let start = 0x0500_0000u64;
        let mut w = Wal::default();
        w.push(record(RM_XLOG_ID, XLOG_SWITCH, &[]));
        w.push(create("/after/switch"));
        assert!(tablespace_creations(&w.segment(start, 2)).is_empty());

        // a creation on a page left from the file's earlier use is not this segment's
        let mut w = Wal::default();
        fill_to(&mut w, Payload::FIRST);
        w.push(create("/stale"));
        let mut seg = w.segment(start, 2);
        assert_eq!(
            tablespace_creations(&seg).len(),
            1,
            "the second page is read"
        );
        seg[PAGE + 8..PAGE + 16].copy_from_slice(&(start - 0x100_0000).to_le_bytes());
        assert!(tablespace_creations(&seg).is_empty());

        assert!(tablespace_creations(&[0u8; PAGE]).is_empty());
        assert!(tablespace_creations(&[1u8; 100]).is_empty());
    }

    #[test]
    fn a_segment_starting_inside_a_record_skips_its_rest() {
        let start = 0x0700_0000u64;
        // 100 bytes of the previous segment's last record, then a creation
        let mut w = Wal {
            payload: vec![9u8; 104],
            ..Wal::default()
        };
        w.push(create("/srv/ts2"));
        let mut seg = w.segment(start, 2);
        seg[2..4].copy_from_slice(&(XLP_LONG_HEADER | XLP_FIRST_IS_CONTRECORD).to_le_bytes());
        seg[16..20].copy_from_slice(&100u32.to_le_bytes());
        let found = tablespace_creations(&seg);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].location, "/srv/ts2");
        assert_eq!(found[0].lsn, Lsn(start + (LONG_HEADER + 104) as u64));
    }

    #[test]
    fn a_creation_split_between_two_segments_is_found_in_either() {
        let start = 0x0900_0000u64;
        let rec = create("/srv/ts3");
        // header and data begun at the segment's end, the rest in the next one: the first
        // segment holds the header, and reports a creation it cannot read whole
        let mut w = Wal::default();
        fill_to(&mut w, Payload::FIRST + Payload::OTHER - 32);
        w.push(rec.clone());
        let found = tablespace_creations(&w.segment(start, 2));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].location, UNKNOWN_LOCATION);

        // only 8 or 16 bytes of the header in the previous segment: the next one, which
        // begins with the rest, finds it
        for before in [8usize, 16] {
            let found = tablespace_creations(&begun_before(&rec, before, start));
            assert_eq!(
                found,
                vec![TablespaceCreation {
                    lsn: Lsn(start - before as u64),
                    location: "/srv/ts3".into()
                }],
                "{before} bytes before"
            );
        }
    }

    #[test]
    fn a_segment_is_cut_just_before_the_creation_or_whole_when_it_began_before() {
        let start = 0x0D00_0000u64;
        let mut w = Wal::default();
        let kept = w.push(record(10, 0x00, &[7u8; 40]));
        fill_to(&mut w, Payload::FIRST + 200);
        let at = w.push(create("/srv/ts4"));
        let mut seg = w.segment(start, 3);
        let original = seg.clone();
        // a creation recovery does not replay is left alone
        assert_eq!(cut_before_creation(&mut seg, |_| false), None);
        assert_eq!(seg, original);
        let cut = cut_before_creation(&mut seg, |_| true).expect("cut");
        let offset = Payload::physical(at);
        assert_eq!(cut.lsn, Lsn(start + offset as u64));
        assert_eq!(seg[..offset], original[..offset], "what comes before stays");
        assert!(seg[offset..].iter().all(|b| *b == 0));
        assert!(Payload::physical(kept) < offset);
        assert!(
            tablespace_creations(&seg).is_empty(),
            "nothing left to replay"
        );

        // the record's header began in the segment before: this one is cut whole
        let rec = create("/srv/ts5");
        for before in [8usize, 16] {
            let mut seg = begun_before(&rec, before, start);
            let cut = cut_before_creation(&mut seg, |_| true).expect("cut");
            assert_eq!(cut.lsn, Lsn(start - before as u64));
            assert!(seg.iter().all(|b| *b == 0), "{before} bytes before: whole");
        }
    }

    #[test]
    fn a_record_abandoned_by_a_crash_does_not_hide_what_follows() {
        let start = 0x0B00_0000u64;
        let mut w = Wal::default();
        fill_to(&mut w, Payload::FIRST - 48);
        // a record said to be 4000 bytes long, of which only its start was written
        let mut broken = record(10, 0, &[3u8; 16]);
        broken[0..4].copy_from_slice(&4000u32.to_le_bytes());
        w.payload.extend(broken);
        w.payload.resize(Payload::FIRST, 0);
        // after the crash the next page starts afresh (no continuation flag)
        w.push(create("/srv/after-crash"));
        let found = tablespace_creations(&w.segment(start, 2));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].location, "/srv/after-crash");
    }
}
