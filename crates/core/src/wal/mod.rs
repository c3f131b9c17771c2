//! Continuous WAL archiving: `wal-push` (PostgreSQL's archive_command), `wal-fetch`
//! (restore_command) and `wal status` (what is archived, the gaps, the live RPO).

pub mod archiver;
pub mod inspect;
pub mod name;
pub mod records;
mod seal;
pub mod spool;
pub mod status;
pub mod store;

use std::{io::Write, path::Path};

pub use self::{
    archiver::{archiver_state, ArchiverState},
    name::{Lsn, SegmentName, WalFile, DEFAULT_SEGMENT_SIZE},
    status::{cut_short, status, ChainStart, Reachable, TimelineRange, WalStatus},
    store::{PutOutcome, StoredWal, WalStore},
};
use crate::error::{Error, Result};

/// Archives the WAL file at `path` (`%p`); its name (`%f`) is the file name. Returns once
/// the file is durable in the repository.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] for a path that is not a WAL file, a read error, a storage
/// error, or [`crate::ErrorKind::Integrity`] when a different file of that name is archived.
pub fn push(store: &WalStore, path: &Path) -> Result<(WalFile, PutOutcome)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::config(format!("{} names no WAL file", path.display())))?;
    let file = WalFile::parse(name)?;
    let data = std::fs::read(path).map_err(|e| {
        let missing = e.kind() == std::io::ErrorKind::NotFound;
        let err = Error::io(format!("reading {}", path.display()), e);
        if missing {
            // archive_command runs in the data directory and gets %p relative to it
            err.hint("give the path as PostgreSQL's %p does (pg_wal/NAME, relative to the data directory it runs in), or an absolute path")
        } else {
            err
        }
    })?;
    let outcome = store.put(&file, &data)?;
    Ok((file, outcome))
}

/// Restores archived `name` (`%f`) to `dest` (`%p`). Returns `false` when it is not archived
/// (how recovery learns it reached the end of the archive).
///
/// # Errors
///
/// A storage error or [`crate::ErrorKind::Integrity`] for a damaged object: recovery must
/// then stop rather than treat the archive as ended.
pub fn fetch(store: &WalStore, name: &str, dest: &Path) -> Result<bool> {
    let file = WalFile::parse(name)?;
    let Some(data) = store.get(&file)? else {
        return Ok(false);
    };
    write_file(dest, &data)?;
    Ok(true)
}

/// Cuts a fetched segment (at `dest`, named `name`) short of the first record that creates
/// a tablespace with a directory of its own (see [`records`]) in a recovery lifeboat set
/// up: its bytes from that record on are zeroed, so PostgreSQL reads the archive as ending
/// just before it, as at any record it cannot read. Replaying the creation would have the
/// restored server use that directory, on the production host possibly the live server's
/// own. Recovery to any point before the creation goes on as usual: refusing the whole
/// segment stopped those too, since PostgreSQL reads ahead of what it replays. Returns
/// the creation it cut at, for the server's log.
///
/// # Errors
///
/// Reading or rewriting `dest`.
pub fn cut_at_tablespace(name: &str, dest: &Path) -> Result<Option<records::TablespaceCreation>> {
    if !matches!(WalFile::parse(name), Ok(WalFile::Segment(_))) {
        return Ok(None);
    }
    let mut data =
        std::fs::read(dest).map_err(|e| Error::io(format!("reading {}", dest.display()), e))?;
    // only a recovery lifeboat set up (a restore, a drill) is guarded: a standby someone
    // set up with this restore_command, its tablespace directories made for it, replays
    // the creation as PostgreSQL does
    let (Some(from), before) = replay_window(Path::new("postgresql.auto.conf")) else {
        return Ok(None);
    };
    // a creation before this recovery's start, or at or after where it stops, is read
    // but never applied
    let Some(t) = records::cut_before_creation(&mut data, |lsn| {
        lsn >= from && before.is_none_or(|b| lsn < b)
    }) else {
        return Ok(None);
    };
    std::fs::write(dest, &data).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    Ok(Some(t))
}

/// What `wal-fetch` writes into the server's log when it cut a segment at a tablespace's
/// creation (see [`cut_at_tablespace`]); a restore and a drill look for it.
pub const TABLESPACE_CUT: &str = "handed out only up to that record";

/// The server log's lines for a segment cut at a tablespace's creation: what happened,
/// then the hint.
#[must_use]
pub fn tablespace_cut_lines(name: &str, t: &records::TablespaceCreation) -> [String; 2] {
    [
        format!(
            "WAL segment {name} creates a tablespace in {} (at LSN {}): {TABLESPACE_CUT}, so recovery ends just before it (replaying it would have the restored server use that directory, on this host possibly the live server's own tablespace, and lifeboat backs up no tablespaces)",
            t.location, t.lsn
        ),
        format!(
            "a restore recovers any point before it, none after it: everything before it with restore --kind physical --target-lsn {} --exclusive, or a --target-time when a transaction committed after that time and before the creation (PostgreSQL stops at a time only on such a commit); back up the databases that use the tablespace logically, and take base backups once it is gone",
            t.lsn
        ),
    ]
}

/// The line of a restore's settings that says where its replay starts (the base backup's
/// start).
pub const REPLAY_FROM: &str = "# lifeboat: replay starts at LSN";
/// The line that says where it stops at the latest (`recovery_target = 'immediate'`: the
/// base backup's end).
pub const REPLAY_BEFORE: &str = "# lifeboat: replay stops at LSN";

/// The WAL a recovery applies, `[from, before)`, as far as the server's settings
/// (`auto_conf`, read in the data directory a `restore_command` runs in) say: lifeboat's
/// own lines, and `recovery_target_lsn` with `recovery_target_inclusive = false`. The last
/// setting of each counts, as for PostgreSQL.
fn replay_window(auto_conf: &Path) -> (Option<Lsn>, Option<Lsn>) {
    let text = crate::sources::postgres::text::read_file(auto_conf).unwrap_or_default();
    let marked = |prefix: &str| {
        text.lines()
            .filter_map(|l| Lsn::parse(l.strip_prefix(prefix)?).ok())
            .next_back()
    };
    let stops = [stop_before_lsn(&text), marked(REPLAY_BEFORE)]
        .into_iter()
        .flatten()
        .min();
    (marked(REPLAY_FROM), stops)
}

/// `recovery_target_lsn`, when recovery stops before it (`recovery_target_inclusive =
/// false`), from the settings `text`.
fn stop_before_lsn(text: &str) -> Option<Lsn> {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('\'').to_string())
            })
            .next_back()
    };
    let exclusive = value("recovery_target_inclusive")
        .is_some_and(|v| ["false", "off", "no", "0"].contains(&v.to_ascii_lowercase().as_str()));
    exclusive
        .then(|| value("recovery_target_lsn"))
        .flatten()
        .and_then(|v| Lsn::parse(&v).ok())
}

/// Writes `data` to `dest` through a temporary file in the same directory, so that
/// PostgreSQL never sees a partial segment.
pub(crate) fn write_file(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-fetch-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("writing in {}", dir.display()), e))?;
    tmp.write_all(data)
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    tmp.persist(dest)
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e.error))?;
    Ok(())
}

/// The WAL segment size the archived segment `name` was written with, read from its first
/// page's long header (`xlp_seg_size`): what `wal status` goes by when no base backup
/// says it (archiving turned on before the first one). `None` when the file
/// is not there or not a segment with such a header.
///
/// # Errors
///
/// When the archive cannot be read.
pub fn segment_size_of(store: &WalStore, name: &str) -> Result<Option<u64>> {
    let Ok(file) = WalFile::parse(name) else {
        return Ok(None);
    };
    if !matches!(file, WalFile::Segment(_)) {
        return Ok(None);
    }
    Ok(store
        .get(&file)?
        .and_then(|bytes| long_header_segment_size(&bytes)))
}

/// `xlp_seg_size` of a segment's first page when it has the long header
/// (`XLP_LONG_HEADER` in `xlp_info`) and names a size PostgreSQL allows (1 MiB..1 GiB, a
/// power of two).
pub(crate) fn long_header_segment_size(page: &[u8]) -> Option<u64> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_le_bytes(page.get(2..4)?.try_into().ok()?);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let size = u64::from(u32::from_le_bytes(page.get(32..36)?.try_into().ok()?));
    ((1 << 20..=1 << 30).contains(&size) && size.is_power_of_two()).then_some(size)
}

/// `xlp_sysid` of a segment's first page when it has the long header: which cluster
/// wrote it.
pub(crate) fn segment_system_identifier(page: &[u8]) -> Option<u64> {
    long_header_segment_size(page)?;
    Some(u64::from_le_bytes(page.get(24..32)?.try_into().ok()?))
}

/// Parses a timeline history file: `(parent timeline, switch LSN)` per line.
#[must_use]
pub fn parse_history(text: &str) -> Vec<(u32, Lsn)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let tli = parts.next()?.parse().ok()?;
            let lsn = Lsn::parse(parts.next()?).ok()?;
            Some((tli, lsn))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segments_long_header_names_its_size() {
        let mut page = vec![0u8; 64];
        page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        page[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
        page[32..36].copy_from_slice(&(64u32 << 20).to_le_bytes());
        assert_eq!(long_header_segment_size(&page), Some(64 << 20));
        // a continuation page, a size PostgreSQL does not allow, a short file
        let mut short = page.clone();
        short[2..4].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(long_header_segment_size(&short), None);
        page[32..36].copy_from_slice(&(3u32 << 20).to_le_bytes());
        assert_eq!(long_header_segment_size(&page), None);
        assert_eq!(long_header_segment_size(&page[..20]), None);
    }

    #[test]
    fn the_replay_window_comes_from_the_last_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("postgresql.auto.conf");
        assert_eq!(replay_window(&conf), (None, None));
        std::fs::write(
            &conf,
            format!(
                "recovery_target_lsn = '0/5000000'\n{REPLAY_FROM} 0/2000028\n\
                 recovery_target_lsn = '0/4000000'\nrecovery_target_inclusive = false\n"
            ),
        )
        .expect("write");
        assert_eq!(
            replay_window(&conf),
            (Some(Lsn(0x200_0028)), Some(Lsn(0x400_0000)))
        );
        // an inclusive target replays the record at it: no bound; an immediate one ends at
        // the backup's end
        std::fs::write(
            &conf,
            format!("recovery_target_lsn = '0/4000000'\n{REPLAY_BEFORE} 0/3000100\n"),
        )
        .expect("write");
        assert_eq!(replay_window(&conf), (None, Some(Lsn(0x300_0100))));
    }
}
