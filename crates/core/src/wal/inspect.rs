//! `wal inspect`: the transactions the archived WAL holds in a time window, with what each
//! deleted, truncated or dropped, so that the operator paged for "the orders are gone" finds
//! the transaction to stop before (`restore --target-xid N --exclusive`) without fetching
//! segments and reading `pg_waldump` by hand.
//!
//! The segments are fetched into a private scratch directory (they hold production's rows)
//! that is removed at the end, and read with PostgreSQL's own `pg_waldump`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::{name::WalFile, SegmentName, WalStore};
use crate::{
    error::{Error, Result},
    sources::postgres::{cluster::ScratchDir, conn::PgBin},
};

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Transactions that committed at or after this time.
    pub since: Option<Timestamp>,
    /// ... and at or before this one.
    pub until: Option<Timestamp>,
    /// At most this many segments are fetched (0: 64).
    pub max_segments: usize,
    /// Where `pg_waldump` is (default: the newest installed PostgreSQL).
    pub pg_bin_dir: Option<std::path::PathBuf>,
    /// Where the segments are staged (default: `LIFEBOAT_SCRATCH_DIR`, else the system's).
    pub scratch_dir: Option<std::path::PathBuf>,
}

/// One transaction that changed rows or relations.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Transaction {
    /// Transaction id: `restore --target-xid` takes it.
    pub xid: u64,
    /// Commit (or abort) time, as the WAL records it.
    pub time: Timestamp,
    /// Whether it committed (an aborted one changed nothing).
    pub committed: bool,
    /// LSN of its commit record.
    pub lsn: String,
    /// Rows deleted.
    pub deletes: u64,
    /// Rows updated.
    pub updates: u64,
    /// Rows inserted.
    pub inserts: u64,
    /// Relations truncated.
    pub truncates: u64,
    /// Relation files its commit dropped (`DROP TABLE`, `TRUNCATE`'s old files too).
    pub dropped_files: u64,
    /// The relations it changed, as `tablespace/database/filenode` (a table's file, which
    /// [`crate::sources::postgres::conn::PgConn`] can name with `pg_filenode_relation`).
    pub relations: Vec<String>,
}

/// What was read.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Inspection {
    /// The segments read, first and last.
    pub first_segment: String,
    /// ...
    pub last_segment: String,
    /// Segments that matched the window but were not read (over `max_segments`).
    pub left_out: usize,
    /// Transactions in the window that changed something, oldest first.
    pub transactions: Vec<Transaction>,
}

/// Reads the archived WAL of `store` for `opts`' window.
///
/// # Errors
///
/// [`crate::ErrorKind::NotFound`] when no archived segment can hold the window,
/// [`crate::ErrorKind::Unavailable`] when `pg_waldump` cannot run, the archive's errors.
pub fn inspect(store: &WalStore, opts: &InspectOptions) -> Result<Inspection> {
    let max = if opts.max_segments == 0 {
        64
    } else {
        opts.max_segments
    };
    let mut segments: Vec<(SegmentName, Option<Timestamp>)> = store
        .list()?
        .into_iter()
        .filter_map(|w| match w.file {
            WalFile::Segment(s) => Some((s, w.archived_at)),
            _ => None,
        })
        .collect();
    segments.sort_by_key(|(s, _)| (s.timeline, s.log, s.seg));
    // a commit is archived at or after it happened: the segments archived before `since`
    // hold none after it (one of them is read all the same: a store's clock and times are
    // coarser than the WAL's); past `until`, the first one archived after it (its records
    // may reach back before it) and one more, for an archiver running behind
    let from = segments
        .iter()
        .position(|(_, at)| opts.since.is_none_or(|s| at.is_none_or(|a| a >= s)))
        .ok_or_else(|| {
            Error::not_found("no archived WAL segment holds transactions after --since")
                .hint("`lifeboat wal status` shows what the archive holds and when it was archived")
        })?
        .saturating_sub(1);
    let to = match opts.until {
        Some(u) => segments[from..]
            .iter()
            .position(|(_, at)| at.is_some_and(|a| a > u))
            .map_or(segments.len(), |i| (from + i + 2).min(segments.len())),
        None => segments.len(),
    };
    let wanted = &segments[from..to];
    let left_out = wanted.len().saturating_sub(max);
    let wanted = &wanted[..wanted.len().min(max)];
    let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else {
        return Err(Error::not_found("no archived WAL segment in that window")
            .hint("`lifeboat wal status` shows what the archive holds"));
    };
    // production's rows: staged privately, and removed whatever happens
    let scratch = ScratchDir::new("lifeboat-wal-inspect-", opts.scratch_dir.as_deref())?;
    let mut fetched: Vec<SegmentName> = Vec::new();
    for (seg, _) in wanted {
        if super::fetch(
            store,
            &seg.to_string(),
            &scratch.path().join(seg.to_string()),
        )? {
            fetched.push(*seg);
        }
    }
    // the size the first staged segment's header says (not fetched a second time)
    let size = fetched
        .first()
        .and_then(|s| {
            let mut page = [0u8; 40];
            let mut f = std::fs::File::open(scratch.path().join(s.to_string())).ok()?;
            std::io::Read::read_exact(&mut f, &mut page).ok()?;
            super::long_header_segment_size(&page)
        })
        .unwrap_or(super::DEFAULT_SEGMENT_SIZE);
    let mut runs: Vec<Vec<SegmentName>> = Vec::new();
    for seg in &fetched {
        match runs.last_mut() {
            Some(run)
                if run.last().is_some_and(|p| {
                    p.timeline == seg.timeline && p.number(size) + 1 == seg.number(size)
                }) =>
            {
                run.push(*seg);
            }
            _ => runs.push(vec![*seg]),
        }
    }
    let waldump = PgBin::new(opts.pg_bin_dir.as_deref()).program("pg_waldump");
    let mut found: BTreeMap<u64, Transaction> = BTreeMap::new();
    for run in &runs {
        let out = std::process::Command::new(&waldump)
            .arg("-p")
            .arg(scratch.path())
            .arg(run[0].to_string())
            .arg(run[run.len() - 1].to_string())
            .env_remove("PGPASSWORD")
            .env_remove("LIFEBOAT_PASSWORD")
            .output()
            .map_err(|e| {
                Error::unavailable(format!("cannot run {}: {e}", waldump.display())).hint(
                    "install the PostgreSQL server package (it has pg_waldump) or set pg_bin_dir",
                )
            })?;
        // the end of the WAL reads as an invalid record: its exit status says nothing
        parse_waldump(&String::from_utf8_lossy(&out.stdout), &mut found);
    }
    let transactions = found
        .into_values()
        .filter(|t| {
            opts.since.is_none_or(|s| t.time >= s) && opts.until.is_none_or(|u| t.time <= u)
        })
        .filter(|t| t.deletes + t.updates + t.inserts + t.truncates + t.dropped_files > 0)
        .collect();
    Ok(Inspection {
        first_segment: first.0.to_string(),
        last_segment: last.0.to_string(),
        left_out,
        transactions,
    })
}

/// What `pg_waldump` printed, added to `found` per transaction: row changes as they come,
/// then the commit or abort record gives the time. Transactions without an end record
/// in the text (still running at its end) are left out.
fn parse_waldump(text: &str, found: &mut BTreeMap<u64, Transaction>) {
    let mut open: BTreeMap<u64, Transaction> = BTreeMap::new();
    for line in text.lines() {
        let Some(rmgr) = field(line, "rmgr: ") else {
            continue;
        };
        let Some(xid) = field(line, "tx: ")
            .map(|t| t.trim_end_matches(','))
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|x| *x != 0)
        else {
            continue;
        };
        let lsn = field(line, "lsn: ")
            .map(|l| l.trim_end_matches(',').to_string())
            .unwrap_or_default();
        let desc = line.split_once("desc: ").map_or("", |(_, d)| d);
        let t = open.entry(xid).or_insert_with(|| Transaction {
            xid,
            time: Timestamp::UNIX_EPOCH,
            committed: false,
            lsn: String::new(),
            deletes: 0,
            updates: 0,
            inserts: 0,
            truncates: 0,
            dropped_files: 0,
            relations: Vec::new(),
        });
        let op = desc.split_whitespace().next().unwrap_or_default();
        match (rmgr, op) {
            ("Heap", "DELETE") => t.deletes += 1,
            ("Heap", "UPDATE" | "HOT_UPDATE") => t.updates += 1,
            ("Heap", "INSERT" | "INSERT+INIT") => t.inserts += 1,
            ("Heap2", "MULTI_INSERT" | "MULTI_INSERT+INIT") => {
                t.inserts += desc
                    .split_once("ntuples: ")
                    .and_then(|(_, n)| n.split([',', ' ']).next()?.parse().ok())
                    .unwrap_or(1);
            }
            ("Heap", "TRUNCATE") => t.truncates += 1,
            ("Transaction", "COMMIT" | "ABORT") => {
                let Some(time) = commit_time(desc) else {
                    continue;
                };
                let mut t = open.remove(&xid).expect("entered above");
                t.time = time;
                t.committed = op == "COMMIT";
                t.lsn = lsn;
                t.dropped_files = desc.split_once("rels: ").map_or(0, |(_, r)| {
                    r.split(';')
                        .next()
                        .unwrap_or_default()
                        .split_whitespace()
                        .count() as u64
                });
                found.insert(xid, t);
                continue;
            }
            _ => continue,
        }
        if let Some(rel) = line
            .split_once("rel ")
            .and_then(|(_, r)| r.split_whitespace().next())
        {
            if !t.relations.iter().any(|r| r == rel) {
                t.relations.push(rel.to_string());
            }
        }
    }
}

/// The word after `key` in a pg_waldump line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_once(key)?.1.split_whitespace().next()
}

/// `COMMIT 2026-12-07 21:18:07.122702 UTC; ...` → the time.
fn commit_time(desc: &str) -> Option<Timestamp> {
    let rest = desc.split_once(' ')?.1;
    let text = rest.split(';').next()?.trim();
    let text = text.strip_suffix(" UTC")?;
    let (date, clock) = text.split_once(' ')?;
    format!("{date}T{clock}Z").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
rmgr: Heap        len (rec/tot):     59/    59, tx:        990, lsn: 0/06000148, prev 0/06000110, desc: DELETE off 3 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/16384/16409 blk 0
rmgr: Heap        len (rec/tot):     59/    59, tx:        990, lsn: 0/06000188, prev 0/06000148, desc: DELETE off 4 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/16384/16409 blk 0
rmgr: Heap        len (rec/tot):     79/    79, tx:        991, lsn: 0/060001C8, prev 0/06000188, desc: INSERT off 5 flags 0x00, blkref #0: rel 1663/16384/16420 blk 1
rmgr: Transaction len (rec/tot):     34/    34, tx:        990, lsn: 0/06068460, prev 0/06068428, desc: COMMIT 2026-12-07 21:18:07.122702 UTC
rmgr: Heap2       len (rec/tot):     90/    90, tx:        991, lsn: 0/06068480, prev 0/06068460, desc: MULTI_INSERT+INIT ntuples: 3, flags: 0x08, blkref #0: rel 1663/16384/16420 blk 2
rmgr: Transaction len (rec/tot):     34/    34, tx:        991, lsn: 0/060684E0, prev 0/06068480, desc: ABORT 2026-12-07 21:18:08.000001 UTC
rmgr: Transaction len (rec/tot):     66/    66, tx:        992, lsn: 0/06068520, prev 0/060684E0, desc: COMMIT 2026-12-07 21:19:00.5 UTC; rels: base/16384/16409 base/16384/16412; inval msgs: catcache 51
rmgr: Heap        len (rec/tot):     54/    54, tx:        993, lsn: 0/06068560, prev 0/06068520, desc: DELETE off 1 flags 0x00, blkref #0: rel 1663/16384/16420 blk 0
";

    #[test]
    fn transactions_are_counted_and_timed_by_their_end_record() {
        let mut found = BTreeMap::new();
        parse_waldump(DUMP, &mut found);
        let t = &found[&990];
        assert_eq!((t.deletes, t.inserts, t.committed), (2, 0, true));
        assert_eq!(t.time.to_string(), "2026-12-07T21:18:07.122702Z");
        assert_eq!(t.lsn, "0/06068460");
        assert_eq!(t.relations, ["1663/16384/16409"]);
        let aborted = &found[&991];
        assert_eq!((aborted.inserts, aborted.committed), (4, false));
        assert_eq!(found[&992].dropped_files, 2);
        // still running at the end of the text: no time, left out
        assert!(!found.contains_key(&993));
    }
}
