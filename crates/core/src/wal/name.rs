//! PostgreSQL's WAL file names: segments, partial segments, backup history files and
//! timeline history files, and the arithmetic that turns segment names into positions.

use serde::Serialize;

use crate::error::{Error, Result};

/// Bytes in a WAL segment unless the cluster was initialised otherwise.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A file PostgreSQL hands to `archive_command` or asks `restore_command` for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum WalFile {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: a full segment.
    Segment(SegmentName),
    /// `….partial`: the last, incomplete segment of a timeline that was left by a promotion.
    Partial(SegmentName),
    /// `….OOOOOOOO.backup`: the history file a base backup leaves.
    BackupHistory(SegmentName, u32),
    /// `TTTTTTTT.history`: how a timeline branched off its parent.
    TimelineHistory(u32),
}

/// The three numbers in a segment name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct SegmentName {
    /// Timeline.
    pub timeline: u32,
    /// High 32 bits of the segment's position ("log").
    pub log: u32,
    /// Segment within the log.
    pub seg: u32,
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl SegmentName {
    /// Parses exactly 24 hex digits.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 24 {
            return None;
        }
        Some(Self {
            timeline: hex8(&s[0..8])?,
            log: hex8(&s[8..16])?,
            seg: hex8(&s[16..24])?,
        })
    }

    /// Segments per "log" for a segment size.
    #[must_use]
    pub const fn per_log(segment_size: u64) -> u64 {
        0x1_0000_0000 / segment_size
    }

    /// The segment's number counted from LSN 0.
    #[must_use]
    pub const fn number(&self, segment_size: u64) -> u64 {
        self.log as u64 * Self::per_log(segment_size) + self.seg as u64
    }

    /// The segment with number `n` on `timeline`.
    #[must_use]
    pub const fn from_number(timeline: u32, n: u64, segment_size: u64) -> Self {
        let per = Self::per_log(segment_size);
        Self {
            timeline,
            log: (n / per) as u32,
            seg: (n % per) as u32,
        }
    }

    /// The segment holding `lsn`.
    #[must_use]
    pub const fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Self {
        Self::from_number(timeline, lsn.0 / segment_size, segment_size)
    }

    /// First LSN of the segment.
    #[must_use]
    pub const fn start_lsn(&self, segment_size: u64) -> Lsn {
        Lsn(self.number(segment_size) * segment_size)
    }

    /// First LSN after the segment.
    #[must_use]
    pub const fn end_lsn(&self, segment_size: u64) -> Lsn {
        Lsn((self.number(segment_size) + 1) * segment_size)
    }
}

impl std::fmt::Display for SegmentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

impl WalFile {
    /// Parses a file name as PostgreSQL writes it (`%f`).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the expected forms.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = || {
            Error::config(format!("{name:?} is not a WAL file name"))
                .hint("pass %f / %p as PostgreSQL gives them: a 24-hex-digit segment, SEGMENT.partial, SEGMENT.OFFSET.backup or TIMELINE.history")
        };
        if let Some(seg) = SegmentName::parse(name) {
            return Ok(Self::Segment(seg));
        }
        if let Some(stem) = name.strip_suffix(".partial") {
            return SegmentName::parse(stem).map(Self::Partial).ok_or_else(bad);
        }
        if let Some(stem) = name.strip_suffix(".history") {
            return hex8(stem).map(Self::TimelineHistory).ok_or_else(bad);
        }
        if let Some(stem) = name.strip_suffix(".backup") {
            let (seg, off) = stem.split_once('.').ok_or_else(bad)?;
            return match (SegmentName::parse(seg), hex8(off)) {
                (Some(s), Some(o)) => Ok(Self::BackupHistory(s, o)),
                _ => Err(bad()),
            };
        }
        Err(bad())
    }

    /// The timeline the file belongs to.
    #[must_use]
    pub const fn timeline(&self) -> u32 {
        match self {
            Self::Segment(s) | Self::Partial(s) | Self::BackupHistory(s, _) => s.timeline,
            Self::TimelineHistory(t) => *t,
        }
    }

    /// The segment, for segment-like files.
    #[must_use]
    pub const fn segment(&self) -> Option<SegmentName> {
        match self {
            Self::Segment(s) => Some(*s),
            _ => None,
        }
    }
}

impl std::fmt::Display for WalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Segment(s) => write!(f, "{s}"),
            Self::Partial(s) => write!(f, "{s}.partial"),
            Self::BackupHistory(s, o) => write!(f, "{s}.{o:08X}.backup"),
            Self::TimelineHistory(t) => write!(f, "{t:08X}.history"),
        }
    }
}

/// A WAL position, printed as PostgreSQL does (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let parsed = s.split_once('/').and_then(|(hi, lo)| {
            let hi = u64::from_str_radix(hi, 16).ok()?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
        });
        parsed.map(Self).ok_or_else(|| {
            Error::config(format!("{s:?} is not an LSN"))
                .hint("write it as PostgreSQL prints it, e.g. 0/3000060")
        })
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in [
            "000000010000000A000000FE",
            "000000020000000000000003.partial",
            "000000010000000000000002.00000028.backup",
            "00000003.history",
        ] {
            assert_eq!(WalFile::parse(n).expect(n).to_string(), n);
        }
        for bad in [
            "",
            "0000000100000000000000",
            "00000001.history.x",
            "../etc/passwd",
            "00000001000000000000000G",
        ] {
            assert!(WalFile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_arithmetic() {
        let s = SegmentName::parse("000000010000000A000000FF").expect("name");
        let n = s.number(DEFAULT_SEGMENT_SIZE);
        assert_eq!(n, 10 * 256 + 255);
        let next = SegmentName::from_number(1, n + 1, DEFAULT_SEGMENT_SIZE);
        assert_eq!(next.to_string(), "000000010000000B00000000");
        let lsn = Lsn::parse("A/FF000028").expect("lsn");
        assert_eq!(SegmentName::containing(1, lsn, DEFAULT_SEGMENT_SIZE), s);
        assert_eq!(s.end_lsn(DEFAULT_SEGMENT_SIZE).to_string(), "B/0");
        assert!(Lsn::parse("nope").is_err());
    }
}
