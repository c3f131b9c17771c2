//! Backup-time truth: what a database held when it was dumped, in a form a restored copy
//! can be compared with.
//!
//! A table's content hash is the wrapping sum of the 128-bit xxh3 hashes of its COPY text
//! rows, so it does not depend on row order; the same hasher reads `COPY ... TO STDOUT`
//! from a restored database, with pg_dump's session settings, to compare.

use serde::{Deserialize, Serialize};

/// Counts and hashes COPY text rows fed in arbitrary pieces.
#[derive(Default)]
pub struct LineHasher {
    partial: Vec<u8>,
    rows: u64,
    sum: u128,
    ended: bool,
}

impl LineHasher {
    /// Feeds the next bytes of a COPY text stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    if self.partial.is_empty() {
                        self.line(&data[..i]);
                    } else {
                        let mut line = std::mem::take(&mut self.partial);
                        line.extend_from_slice(&data[..i]);
                        self.line(&line);
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(data);
                    break;
                }
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        // pg_dump ends each table's data with "\." and blank lines; COPY TO STDOUT does not
        if self.ended || line == b"\\." {
            self.ended = true;
            return;
        }
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(line));
    }

    /// Row count and order-independent hash.
    #[must_use]
    pub fn finish(mut self) -> (u64, u128) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        (self.rows, self.sum)
    }
}

/// One table's rows as dumped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableTruth {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// The dump's `COPY schema.table (columns) FROM stdin;` statement.
    pub copy: String,
    /// Number of rows.
    pub rows: u64,
    /// Order-independent content hash (32 hex digits).
    pub hash: String,
}

impl TableTruth {
    /// `COPY ... TO STDOUT` reading the same columns back from a database.
    #[must_use]
    pub fn copy_out_sql(&self) -> String {
        format!("{} TO STDOUT", self.copy_head())
    }

    /// `COPY schema.table (columns)`, without its direction.
    #[must_use]
    pub fn copy_head(&self) -> String {
        let stmt = self.copy.trim_end().trim_end_matches(';');
        stmt.strip_suffix("FROM stdin")
            .or_else(|| stmt.strip_suffix("FROM STDIN"))
            .unwrap_or(stmt)
            .trim_end()
            .to_string()
    }

    /// The relation and the column list of the `COPY` statement, as pg_dump quoted them:
    /// `("public.t", "a, \"B\"")`. `None` for a table without columns.
    #[must_use]
    pub fn columns(&self) -> Option<(String, String)> {
        let head = self.copy_head();
        let rest = head.strip_prefix("COPY ")?;
        let inner = rest.strip_suffix(')')?;
        // the list's opening parenthesis is the last one outside double quotes (a quoted
        // name may hold parentheses; a doubled quote inside one toggles twice)
        let mut quoted = false;
        let open = inner.char_indices().rev().find_map(|(i, c)| match c {
            '"' => {
                quoted = !quoted;
                None
            }
            '(' if !quoted => Some(i),
            _ => None,
        })?;
        let relation = inner[..open].trim_end();
        (!relation.is_empty()).then(|| (relation.to_string(), inner[open + 1..].to_string()))
    }

    /// `schema.table` as printed in reports.
    #[must_use]
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// A sequence value as set by the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceValue {
    /// Schema name.
    pub schema: String,
    /// Sequence name.
    pub name: String,
    /// `last_value`.
    pub last_value: i64,
    /// `is_called`.
    pub is_called: bool,
}

impl SequenceValue {
    /// Parses `SELECT pg_catalog.setval('public.s', 42, true);`.
    #[must_use]
    pub fn from_setval(schema: &str, name: &str, defn: &str) -> Option<Self> {
        let args = defn.split_once("setval(")?.1;
        let args = args.rsplit_once(')')?.0;
        let mut parts = args.rsplitn(3, ',');
        let is_called = parts.next()?.trim() == "true";
        let last_value = parts.next()?.trim().parse().ok()?;
        Some(Self {
            schema: schema.to_string(),
            name: name.to_string(),
            last_value,
            is_called,
        })
    }
}

/// Count and order-independent hash of a set of objects (large objects).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectTruth {
    /// Number of objects.
    pub count: u64,
    /// Wrapping sum of per-object hashes (32 hex digits).
    pub hash: String,
}

impl ObjectTruth {
    /// Adds one object's hash.
    pub fn add(&mut self, h: u128) {
        let sum = u128::from_str_radix(&self.hash, 16)
            .unwrap_or(0)
            .wrapping_add(h);
        self.count += 1;
        self.hash = format!("{sum:032x}");
    }
}

/// Everything recorded about one logical dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// Database name as dumped.
    pub database: String,
    /// Server version.
    pub server_version: String,
    /// pg_dump version.
    pub dump_version: String,
    /// Custom archive format version.
    pub archive_version: String,
    /// Client encoding of the COPY data.
    pub encoding: Option<String>,
    /// Per-table rows and hashes, sorted by schema and name.
    pub tables: Vec<TableTruth>,
    /// Sequence values.
    pub sequences: Vec<SequenceValue>,
    /// Large objects.
    pub large_objects: ObjectTruth,
    /// `ALTER DATABASE ... SET`, comment, ACL: what pg_restore recreates only with --create.
    pub database_properties: Vec<String>,
    /// Session settings the dump ran with besides pg_dump's own (`-c TimeZone=UTC -c
    /// bytea_output=hex`, see [`super::logical::DUMP_SESSION`]); a comparison reads the
    /// rows with them too. Absent in backups taken before lifeboat fixed them: those were
    /// dumped with the database's own time zone and bytea format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The dump session's `lc_monetary`, recorded when the database stores `money`: pg_dump
    /// writes those values (and `money` defaults) as that locale does (`1.234,50 €`) and
    /// records the setting only when the database itself sets it, not when the server's
    /// configuration or the dumping role does. A restore, a drill and a comparison read
    /// them under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_monetary: Option<String>,
    /// Fields a newer lifeboat recorded that this one does not know. They may change what
    /// the hashes mean (as `session` did), so a comparison refuses to judge such a truth
    /// rather than call a faithful restore different.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Truth {
    /// The fields a newer lifeboat recorded that this one does not know, named in a list.
    #[must_use]
    pub fn unknown_fields(&self) -> Option<String> {
        (!self.extra.is_empty()).then(|| self.extra.keys().cloned().collect::<Vec<_>>().join(", "))
    }

    /// `-c lc_monetary=...` for a session that reads or writes the dump's `money` values.
    #[must_use]
    pub fn money_options(&self) -> Option<String> {
        self.lc_monetary
            .as_deref()
            .map(|lc| format!("-c lc_monetary={}", super::conn::option_value(lc)))
    }

    /// Total rows over all tables.
    #[must_use]
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_order_and_split_points() {
        let mut a = LineHasher::default();
        a.feed(b"1\tx\n2\ty\n");
        a.feed(b"3\tz\n\\.\n\n\n");
        let mut b = LineHasher::default();
        for piece in [&b"3\t"[..], b"z\n2\ty", b"\n1\tx\n"] {
            b.feed(piece);
        }
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn hash_sees_a_changed_row() {
        let mut a = LineHasher::default();
        a.feed(b"1\tx\n2\ty\n");
        let mut b = LineHasher::default();
        b.feed(b"1\tx\n2\tY\n");
        let (ra, ha) = a.finish();
        let (rb, hb) = b.finish();
        assert_eq!(ra, rb);
        assert_ne!(ha, hb);
    }

    #[test]
    fn setval_and_copy_out() {
        let s = SequenceValue::from_setval(
            "public",
            "s",
            "SELECT pg_catalog.setval('public.s', 42, true);\n",
        )
        .unwrap();
        assert_eq!((s.last_value, s.is_called), (42, true));
        let t = TableTruth {
            schema: "public".into(),
            table: "t".into(),
            copy: "COPY public.t (a, b) FROM stdin;".into(),
            rows: 0,
            hash: String::new(),
        };
        assert_eq!(t.copy_out_sql(), "COPY public.t (a, b) TO STDOUT");
        assert_eq!(t.columns(), Some(("public.t".into(), "a, b".into())));
    }

    #[test]
    fn columns_of_quoted_names() {
        let t = |copy: &str| TableTruth {
            schema: String::new(),
            table: String::new(),
            copy: copy.into(),
            rows: 0,
            hash: String::new(),
        };
        assert_eq!(
            t(r#"COPY "we(ird"."t (x)" (id, "a)""(b", c) FROM stdin;"#).columns(),
            Some((r#""we(ird"."t (x)""#.into(), r#"id, "a)""(b", c"#.into()))
        );
        // a table without columns has no list
        assert_eq!(t("COPY public.empty  FROM stdin;").columns(), None);
    }
}
