//! Compares a (restored) database with the backup-time truth of a dump.
//!
//! Each table is read once with `COPY ... TO STDOUT` under pg_dump's own session settings
//! and hashed exactly as the dump's COPY data was, several tables at a time.

use std::{
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
};

use serde::Serialize;

use super::{
    conn::{classify, PgConn},
    server_copy::{copy_command, drain, Outcome, ServerCopy},
    truth::{LineHasher, ObjectTruth, TableTruth, Truth},
};
use crate::error::{Error, Result};

/// One table compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableCheck {
    /// `schema.table`.
    pub table: String,
    /// Rows at backup time.
    pub expected_rows: u64,
    /// Rows now.
    pub actual_rows: u64,
    /// Hash at backup time.
    pub expected_hash: String,
    /// Hash now.
    pub actual_hash: String,
    /// Both equal.
    pub ok: bool,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Per table.
    pub tables: Vec<TableCheck>,
    /// Sequences whose value differs: (name, expected, actual).
    pub sequence_mismatches: Vec<(String, i64, i64)>,
    /// Large objects at backup time.
    pub large_objects_expected: ObjectTruth,
    /// Large objects now.
    pub large_objects_actual: ObjectTruth,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Every table was read through a FIFO the server wrote, not through psql.
    pub read_by_server: bool,
}

impl Comparison {
    /// Everything matched.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.ok)
            && self.sequence_mismatches.is_empty()
            && self.large_objects_expected == self.large_objects_actual
    }

    /// Rows compared.
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.actual_rows).sum()
    }

    /// A one-line description of the first differences.
    #[must_use]
    pub fn describe_failures(&self) -> String {
        let mut parts: Vec<String> = self
            .tables
            .iter()
            .filter(|t| !t.ok)
            .map(|t| {
                if t.expected_rows == t.actual_rows {
                    format!("{}: content differs ({} rows)", t.table, t.actual_rows)
                } else {
                    format!(
                        "{}: {} rows, expected {}",
                        t.table, t.actual_rows, t.expected_rows
                    )
                }
            })
            .collect();
        parts.extend(
            self.sequence_mismatches
                .iter()
                .map(|(n, e, a)| format!("sequence {n}: {a}, expected {e}")),
        );
        if self.large_objects_expected != self.large_objects_actual {
            parts.push(format!(
                "large objects: {} now, {} at backup time (or content differs)",
                self.large_objects_actual.count, self.large_objects_expected.count
            ));
        }
        parts.join("; ")
    }
}

/// Quotes an SQL identifier.
#[must_use]
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
#[must_use]
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `sql` (a `COPY ... TO STDOUT`) on `db` and feeds its output to `sink`.
fn copy_out(
    conn: &PgConn,
    db: &str,
    encoding: Option<&str>,
    sql: &str,
    mut sink: impl FnMut(&[u8]) + Send,
) -> Result<()> {
    let mut child = copy_command(conn, db, encoding, sql)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| super::conn::missing_program(&conn.bin().program("psql"), e))?;
    let stdout = child.stdout.take().expect("piped");
    drain(stdout, &mut sink).map_err(|e| Error::io("reading COPY output", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for psql", e))?;
    if !out.status.success() {
        return Err(classify(
            &String::from_utf8_lossy(&out.stderr),
            &format!("reading {db:?}"),
        ));
    }
    Ok(())
}

/// Indexes of `tables`, largest table first, so that the last table to finish is a small
/// one; in the truth's order when the sizes cannot be read.
fn largest_first(conn: &PgConn, db: &str, tables: &[TableTruth]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tables.len()).collect();
    if tables.len() < 2 {
        return order;
    }
    // one catalog query whatever the number of tables (a list of names could outgrow argv)
    let Ok(out) = conn.query(
        db,
        "select n.nspname || chr(9) || c.relname || chr(9) || pg_table_size(c.oid) \
         from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p', 'm')",
    ) else {
        return order;
    };
    let sizes: std::collections::HashMap<(&str, &str), u64> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some(((f.next()?, f.next()?), f.next()?.parse().ok()?))
        })
        .collect();
    let size = |i: usize| {
        let t = &tables[i];
        sizes
            .get(&(t.schema.as_str(), t.table.as_str()))
            .copied()
            .unwrap_or(0)
    };
    order.sort_by_key(|&i| std::cmp::Reverse(size(i)));
    order
}

/// Row count and hash of table `t` in `db`: through a FIFO the server writes when it can,
/// else through psql.
fn read_table(
    conn: &PgConn,
    db: &str,
    encoding: Option<&str>,
    t: &TableTruth,
    server: Option<&ServerCopy>,
    server_reaches_fifo: &std::sync::atomic::AtomicBool,
) -> Result<(u64, u128, bool)> {
    if let Some(server) = server.filter(|_| server_reaches_fifo.load(Ordering::Relaxed)) {
        let mut h = LineHasher::default();
        match server.copy_out(conn, db, encoding, &t.copy_head(), &mut |b| h.feed(b))? {
            Outcome::Done => {
                let (rows, hash) = h.finish();
                return Ok((rows, hash, true));
            }
            // no use trying the other tables that way
            Outcome::Unreachable => server_reaches_fifo.store(false, Ordering::Relaxed),
        }
    }
    let mut h = LineHasher::default();
    copy_out(conn, db, encoding, &t.copy_out_sql(), |b| h.feed(b))?;
    let (rows, hash) = h.finish();
    Ok((rows, hash, false))
}

/// Compares database `db` reachable through `conn` with `truth`, `jobs` tables at a time.
///
/// # Errors
///
/// When the database cannot be read (a difference is not an error: see [`Comparison::ok`]).
pub fn compare(conn: &PgConn, db: &str, truth: &Truth, jobs: usize) -> Result<Comparison> {
    let clock = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let encoding = truth.encoding.as_deref();
    let order = largest_first(conn, db, &truth.tables);
    let all_by_server = std::sync::atomic::AtomicBool::new(true);
    let server = ServerCopy::probe(conn, db);
    let server_reaches_fifo = std::sync::atomic::AtomicBool::new(true);
    let results: Vec<Result<Vec<(usize, TableCheck)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let t = &truth.tables[i];
                        let (rows, hash, by_server) = read_table(
                            conn,
                            db,
                            encoding,
                            t,
                            server.as_ref(),
                            &server_reaches_fifo,
                        )?;
                        if !by_server {
                            all_by_server.store(false, Ordering::Relaxed);
                        }
                        let actual_hash = format!("{hash:032x}");
                        done.push((
                            i,
                            TableCheck {
                                table: t.qualified(),
                                expected_rows: t.rows,
                                actual_rows: rows,
                                ok: rows == t.rows && actual_hash == t.hash,
                                expected_hash: t.hash.clone(),
                                actual_hash,
                            },
                        ));
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("compare worker panicked"))
            .collect()
    });
    let mut tables: Vec<(usize, TableCheck)> = Vec::new();
    for r in results {
        tables.extend(r?);
    }
    tables.sort_by_key(|(i, _)| *i);

    let mut sequence_mismatches = Vec::new();
    for s in &truth.sequences {
        let name = format!("{}.{}", ident(&s.schema), ident(&s.name));
        let v = conn.query(db, &format!("select last_value from {name}"))?;
        let actual: i64 = v.trim().parse().unwrap_or(i64::MIN);
        if actual != s.last_value {
            sequence_mismatches.push((format!("{}.{}", s.schema, s.name), s.last_value, actual));
        }
    }

    let mut large_objects_actual = ObjectTruth::default();
    if truth.large_objects.count > 0 {
        let mut lines = LoCollector::default();
        copy_out(
            conn,
            db,
            encoding,
            "COPY (SELECT oid, lo_get(oid) FROM pg_catalog.pg_largeobject_metadata) TO STDOUT",
            |b| lines.feed(b),
        )?;
        for h in lines.finish()? {
            large_objects_actual.add(h);
        }
    }
    Ok(Comparison {
        tables: tables.into_iter().map(|(_, t)| t).collect(),
        sequence_mismatches,
        large_objects_expected: truth.large_objects.clone(),
        large_objects_actual,
        duration_secs: clock.elapsed().as_secs_f64(),
        read_by_server: all_by_server.into_inner() && !truth.tables.is_empty(),
    })
}

/// Hashes `oid \t \\x<hex>` lines the way the archive reader hashes large objects.
#[derive(Default)]
struct LoCollector {
    buf: Vec<u8>,
}

impl LoCollector {
    fn feed(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn finish(self) -> Result<Vec<u128>> {
        let text = String::from_utf8_lossy(&self.buf);
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (oid, data) = line
                .split_once('\t')
                .ok_or_else(|| Error::internal("unexpected large object listing"))?;
            let oid: i64 = oid
                .parse()
                .map_err(|_| Error::internal("bad large object oid"))?;
            let hex = data.trim_start_matches("\\\\x");
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect();
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&oid.to_le_bytes());
            h.update(&bytes);
            out.push(h.digest128());
        }
        Ok(out)
    }
}
