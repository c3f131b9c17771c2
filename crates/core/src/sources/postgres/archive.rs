//! A streaming reader for pg_dump's custom archive format (`-Fc`, uncompressed).
//!
//! lifeboat never rewrites the dump: it reads a copy of the bytes as they flow into the
//! repository and records, from the dump's own COPY stream, what was true at backup time:
//! per-table row counts and order-independent content hashes, large objects, sequence
//! values and the database's own properties. Reaching the end of every data block the TOC
//! announces also proves the stream is complete.
//!
//! Layout (pg_backup_archiver.c / pg_backup_custom.c): a header, the TOC, then for each
//! entry with data a block `BLK_DATA id` of length-prefixed chunks ended by a zero length
//! (`BLK_BLOBS id` holds `oid` + chunks per large object, ended by oid 0). Integers are a
//! sign byte followed by `intsize` little-endian bytes.

use std::{collections::HashMap, io::Read};

use super::truth::{LineHasher, ObjectTruth, SequenceValue, TableTruth, Truth};

const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

/// What went wrong while reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The stream ended early or could not be read.
    #[error("the dump stream ended early or could not be read: {0}")]
    Io(#[from] std::io::Error),
    /// The stream is not a custom-format archive this reader understands.
    #[error("not a supported pg_dump custom archive: {0}")]
    Format(String),
}

type Res<T> = Result<T, ArchiveError>;

/// One TOC entry, reduced to what lifeboat needs.
#[derive(Debug, Clone)]
pub struct TocEntry {
    /// Dump id, referenced by data blocks.
    pub dump_id: i64,
    /// Whether a data block follows for this entry.
    pub has_data: bool,
    /// Object name.
    pub tag: String,
    /// Object kind (`TABLE DATA`, `SEQUENCE SET`, `DATABASE PROPERTIES`, ...).
    pub desc: String,
    /// Creation SQL.
    pub defn: String,
    /// `COPY ... FROM stdin;` for table data.
    pub copy_stmt: String,
    /// Schema.
    pub namespace: String,
    /// The role owning the object.
    pub owner: String,
}

/// Header fields of an archive.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Archive format version, e.g. (1, 14, 0) for PostgreSQL 15.
    pub version: (u8, u8, u8),
    /// Database name as dumped.
    pub dbname: String,
    /// Server version the dump was taken from.
    pub server_version: String,
    /// pg_dump version.
    pub dump_version: String,
}

struct Reader<R> {
    inner: R,
    int_size: usize,
    off_size: usize,
}

impl<R: Read> Reader<R> {
    fn byte(&mut self) -> Res<u8> {
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b)?;
        Ok(b[0])
    }

    /// Next byte, or `None` at a clean end of stream.
    fn byte_or_eof(&mut self) -> Res<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(b[0])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn int(&mut self) -> Res<i64> {
        let sign = self.byte()?;
        let mut v: i64 = 0;
        for i in 0..self.int_size {
            v |= i64::from(self.byte()?) << (8 * i);
        }
        Ok(if sign == 0 { v } else { -v })
    }

    fn string(&mut self) -> Res<Option<String>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| ArchiveError::Format("bad length".into()))?;
        if len > (1 << 30) {
            return Err(ArchiveError::Format(format!("string of {len} bytes")));
        }
        let mut buf = vec![0u8; len];
        self.inner.read_exact(&mut buf)?;
        // in the database's encoding: kept byte for byte (see `text`)
        Ok(Some(super::text::decode(&buf)))
    }

    fn skip(&mut self, n: usize) -> Res<()> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n as u64), &mut std::io::sink())?;
        if copied as usize == n {
            Ok(())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
        }
    }

    /// Reads length-prefixed chunks until a zero length, passing each to `f`.
    fn chunks(&mut self, mut f: impl FnMut(&[u8])) -> Res<()> {
        let mut buf = Vec::new();
        loop {
            let len = self.int()?;
            if len == 0 {
                return Ok(());
            }
            if len < 0 {
                return Err(ArchiveError::Format(
                    "compressed data blocks are not supported (dump with -Z0)".into(),
                ));
            }
            let len = usize::try_from(len).map_err(|_| ArchiveError::Format("bad chunk".into()))?;
            buf.resize(len, 0);
            self.inner.read_exact(&mut buf)?;
            f(&buf);
        }
    }
}

/// Reads the header and TOC.
fn read_head<R: Read>(r: &mut Reader<R>) -> Res<(Header, Vec<TocEntry>)> {
    let mut magic = [0u8; 5];
    r.inner.read_exact(&mut magic)?;
    if &magic != b"PGDMP" {
        return Err(ArchiveError::Format("missing PGDMP magic".into()));
    }
    let version = (r.byte()?, r.byte()?, r.byte()?);
    if version.0 != 1 || !(12..=16).contains(&version.1) {
        return Err(ArchiveError::Format(format!(
            "archive version {}.{}.{} (this lifeboat reads 1.12 to 1.16)",
            version.0, version.1, version.2
        )));
    }
    r.int_size = r.byte()? as usize;
    r.off_size = r.byte()? as usize;
    if !(1..=8).contains(&r.int_size) || !(1..=8).contains(&r.off_size) {
        return Err(ArchiveError::Format("bad integer sizes".into()));
    }
    let format = r.byte()?;
    if format != 1 {
        return Err(ArchiveError::Format(format!(
            "format {format} is not custom (1)"
        )));
    }
    if version.1 >= 15 {
        let algorithm = r.byte()?;
        if algorithm != 0 {
            return Err(ArchiveError::Format(
                "compressed archive (dump with -Z0)".into(),
            ));
        }
    } else {
        let level = r.int()?;
        if level != 0 {
            return Err(ArchiveError::Format(
                "compressed archive (dump with -Z0)".into(),
            ));
        }
    }
    for _ in 0..7 {
        r.int()?; // creation time fields
    }
    let header = Header {
        version,
        dbname: r.string()?.unwrap_or_default(),
        server_version: r.string()?.unwrap_or_default(),
        dump_version: r.string()?.unwrap_or_default(),
    };
    let count = r.int()?;
    let mut toc = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20));
    for _ in 0..count {
        let dump_id = r.int()?;
        let has_data = r.int()? != 0;
        let _table_oid = r.string()?;
        let _oid = r.string()?;
        let tag = r.string()?.unwrap_or_default();
        let desc = r.string()?.unwrap_or_default();
        let _section = r.int()?;
        let defn = r.string()?.unwrap_or_default();
        let _drop = r.string()?;
        let copy_stmt = r.string()?.unwrap_or_default();
        let namespace = r.string()?.unwrap_or_default();
        let _tablespace = r.string()?;
        if version.1 >= 14 {
            let _tableam = r.string()?;
        }
        if version.1 >= 16 {
            let _relkind = r.int()?;
        }
        let owner = r.string()?.unwrap_or_default();
        let _with_oids = r.string()?;
        while r.string()?.is_some() {} // dependencies, ended by a NULL string
        let _flag = r.byte()?; // data offset: state byte + off_size bytes
        r.skip(r.off_size)?;
        toc.push(TocEntry {
            dump_id,
            has_data,
            tag,
            desc,
            defn,
            copy_stmt,
            namespace,
            owner,
        });
    }
    Ok((header, toc))
}

/// Reads a whole archive from `input` and returns the truth it holds.
///
/// # Errors
///
/// [`ArchiveError`] when the stream is cut short, malformed or compressed.
pub fn inspect(input: impl Read) -> Res<Truth> {
    let mut r = Reader {
        inner: std::io::BufReader::with_capacity(1 << 20, input),
        int_size: 4,
        off_size: 8,
    };
    let (header, toc) = read_head(&mut r)?;
    let by_id: HashMap<i64, usize> = toc
        .iter()
        .enumerate()
        .map(|(i, e)| (e.dump_id, i))
        .collect();
    let mut seen_data = vec![false; toc.len()];
    let mut tables = Vec::new();
    let mut large_objects = ObjectTruth::default();
    while let Some(block) = r.byte_or_eof()? {
        let id = r.int()?;
        let idx = *by_id
            .get(&id)
            .ok_or_else(|| ArchiveError::Format(format!("data block for unknown dump id {id}")))?;
        seen_data[idx] = true;
        match block {
            BLK_DATA => {
                let entry = &toc[idx];
                let mut hasher = LineHasher::default();
                r.chunks(|c| hasher.feed(c))?;
                let (rows, hash) = hasher.finish();
                if entry.desc == "TABLE DATA" {
                    tables.push(TableTruth {
                        schema: entry.namespace.clone(),
                        table: entry.tag.clone(),
                        copy: entry.copy_stmt.trim_end().to_string(),
                        rows,
                        hash: format!("{hash:032x}"),
                    });
                }
            }
            BLK_BLOBS => loop {
                let oid = r.int()?;
                if oid == 0 {
                    break;
                }
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(&oid.to_le_bytes());
                r.chunks(|c| h.update(c))?;
                large_objects.add(h.digest128());
            },
            other => {
                return Err(ArchiveError::Format(format!("unknown block type {other}")));
            }
        }
    }
    let missing: Vec<&str> = toc
        .iter()
        .zip(&seen_data)
        .filter(|(e, seen)| e.has_data && !**seen)
        .map(|(e, _)| e.tag.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(ArchiveError::Format(format!(
            "the stream ended before the data of {} object(s) (first: {})",
            missing.len(),
            missing[0]
        )));
    }
    tables.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
    let sequences = toc
        .iter()
        .filter(|e| e.desc == "SEQUENCE SET")
        .filter_map(|e| SequenceValue::from_setval(&e.namespace, &e.tag, &e.defn))
        .collect();
    let database_properties = toc
        .iter()
        .filter(|e| {
            e.desc == "DATABASE PROPERTIES"
                || ((e.desc == "COMMENT" || e.desc == "ACL" || e.desc == "SECURITY LABEL")
                    && e.tag.starts_with("DATABASE "))
        })
        .map(|e| e.defn.clone())
        .filter(|d| !d.trim().is_empty())
        // the owner, which pg_restore sets only with --create (from the entry's owner)
        .chain(
            toc.iter()
                .filter(|e| e.desc == "DATABASE" && !e.owner.is_empty())
                .map(|e| {
                    format!(
                        "ALTER DATABASE {} OWNER TO {};\n",
                        super::compare::ident(&e.tag),
                        super::compare::ident(&e.owner)
                    )
                }),
        )
        .collect();
    let encoding = toc
        .iter()
        .find(|e| e.desc == "ENCODING")
        .and_then(|e| e.defn.split('\'').nth(1).map(str::to_string));
    Ok(Truth {
        database: header.dbname,
        server_version: header.server_version,
        dump_version: header.dump_version,
        archive_version: format!(
            "{}.{}.{}",
            header.version.0, header.version.1, header.version.2
        ),
        encoding,
        tables,
        sequences,
        large_objects,
        database_properties,
        // set by the dump's caller, which chose the session
        session: None,
        lc_monetary: None,
        extra: Default::default(),
    })
}

/// The encoding and locale options of the dumped database's `CREATE DATABASE` (its
/// `DATABASE` entry), e.g. ` ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C'`: a
/// database created without them gets the server's default locale, which may refuse the
/// encoding (LATIN1 under a UTF-8 locale) or sort and compare text differently. The
/// template and tablespace are left to the restore; empty when the dump has no such entry.
#[must_use]
pub fn create_database_options(toc: &[TocEntry]) -> String {
    const KEPT: [&str; 8] = [
        "ENCODING",
        "LOCALE_PROVIDER",
        "LOCALE",
        "LC_COLLATE",
        "LC_CTYPE",
        "ICU_LOCALE",
        "ICU_RULES",
        "BUILTIN_LOCALE",
    ];
    let Some(defn) = toc.iter().find(|e| e.desc == "DATABASE").map(|e| &e.defn) else {
        return String::new();
    };
    // past the name, which may be quoted and hold anything, " WITH " included
    let Some(named) = defn.trim_start().strip_prefix("CREATE DATABASE ") else {
        return String::new();
    };
    let after_name = if let Some(quoted) = named.strip_prefix('"') {
        let mut rest = quoted;
        loop {
            match rest.find('"') {
                Some(i) if rest[i + 1..].starts_with('"') => rest = &rest[i + 2..],
                Some(i) => break &rest[i + 1..],
                None => return String::new(),
            }
        }
    } else {
        named.split_once(' ').map_or("", |(_, r)| r)
    };
    let Some(rest) = after_name.trim_start().strip_prefix("WITH ") else {
        return String::new();
    };
    let mut out = String::new();
    let mut chars = rest.trim_start().chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace() || *c == '=').is_some() {}
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            value.push(chars.next().unwrap_or('\''));
            while let Some(c) = chars.next() {
                value.push(c);
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        value.push(chars.next().unwrap_or('\''));
                    } else {
                        break;
                    }
                }
            }
        } else {
            value =
                std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != ';')).collect();
        }
        if KEPT.contains(&key.to_ascii_uppercase().as_str()) && !value.is_empty() {
            out.push_str(&format!(" {key} = {value}"));
        }
    }
    out
}

/// The oids of the archive's large objects: each `lo_create('OID')` of its `BLOB` entries
/// (one per object up to pg_dump 16) and `BLOB METADATA` entries (pg_dump 17 groups them).
#[must_use]
pub fn large_object_oids(toc: &[TocEntry]) -> std::collections::HashSet<i64> {
    toc.iter()
        .filter(|e| e.desc == "BLOB" || e.desc == "BLOB METADATA")
        .flat_map(|e| e.defn.split("lo_create('").skip(1))
        .filter_map(|rest| rest.split('\'').next()?.parse().ok())
        .collect()
}

/// Reads only the header and TOC (cheap: stops before the data).
///
/// # Errors
///
/// As [`inspect`].
pub fn read_toc(input: impl Read) -> Res<(Header, Vec<TocEntry>)> {
    let mut r = Reader {
        inner: std::io::BufReader::new(input),
        int_size: 4,
        off_size: 8,
    };
    read_head(&mut r)
}

#[cfg(test)]
mod tests {
    use super::{create_database_options, TocEntry};

    fn database(defn: &str) -> Vec<TocEntry> {
        vec![TocEntry {
            dump_id: 1,
            has_data: false,
            tag: "app".into(),
            desc: "DATABASE".into(),
            defn: defn.into(),
            copy_stmt: String::new(),
            namespace: String::new(),
            owner: "postgres".into(),
        }]
    }

    #[test]
    fn keeps_encoding_and_locale_and_leaves_template_and_tablespace() {
        assert_eq!(
            create_database_options(&database(
                "CREATE DATABASE \"we'ird\" WITH TEMPLATE = template0 ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C' TABLESPACE = fast;\n"
            )),
            " ENCODING = 'LATIN1' LOCALE_PROVIDER = libc LOCALE = 'C'"
        );
        assert_eq!(
            create_database_options(&database(
                "CREATE DATABASE de WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LC_COLLATE = 'de_DE.utf8' LC_CTYPE = 'it''s' ICU_LOCALE = 'de-DE';\n"
            )),
            " ENCODING = 'UTF8' LOCALE_PROVIDER = icu LC_COLLATE = 'de_DE.utf8' LC_CTYPE = 'it''s' ICU_LOCALE = 'de-DE'"
        );
        assert_eq!(create_database_options(&[]), "");
        // a quoted name holding what the options look like
        assert_eq!(
            create_database_options(&database(
                "CREATE DATABASE \"A WITH \"\"B\"\" = 'x'\" WITH TEMPLATE = template0 ENCODING = 'LATIN1' LOCALE = 'C';\n"
            )),
            " ENCODING = 'LATIN1' LOCALE = 'C'"
        );
    }

    #[test]
    fn large_objects_are_found_one_by_one_and_grouped() {
        let mut toc = database("");
        toc[0].desc = "BLOB".into();
        toc[0].defn = "SELECT pg_catalog.lo_create('17742');\n".into();
        let mut grouped = toc[0].clone();
        grouped.desc = "BLOB METADATA".into();
        grouped.defn =
            "SELECT pg_catalog.lo_create('20001');\nSELECT pg_catalog.lo_create('20002');\n".into();
        toc.push(grouped);
        let oids = super::large_object_oids(&toc);
        assert_eq!(oids, [17742, 20001, 20002].into_iter().collect());
    }
}
