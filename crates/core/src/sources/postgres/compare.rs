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
    conn::PgConn,
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
    /// Reads made: one per table, more when big tables were read in page ranges.
    pub reads: usize,
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
        return Err(conn.classify(
            &String::from_utf8_lossy(&out.stderr),
            &format!("reading {db:?}"),
        ));
    }
    Ok(())
}

/// A piece of one table read by one worker: the whole table, or the rows on a range of its
/// heap pages (`[from, to)`, open-ended when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    table: usize,
    pages: Option<(u64, Option<u64>)>,
    bytes: u64,
}

/// Per table (schema, name): bytes on disk (heap and TOAST) and heap pages.
type Sizes = std::collections::HashMap<(String, String), (u64, u64)>;

/// The sizes of the tables of `db`, and whether the server reads a page range without
/// scanning the whole table (PostgreSQL 14's TID range scan). `None` when the catalog
/// cannot be read.
fn table_sizes(conn: &PgConn, db: &str) -> Option<(Sizes, bool)> {
    // one catalog query whatever the number of tables (a list of names could outgrow argv)
    let out = conn
        .query(
            db,
            "select n.nspname || chr(9) || c.relname || chr(9) || pg_table_size(c.oid) \
             || chr(9) || pg_relation_size(c.oid, 'main') / current_setting('block_size')::int \
             || chr(9) || (current_setting('server_version_num')::int >= 140000) \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where c.relkind in ('r', 'p', 'm')",
        )
        .ok()?;
    let mut ranges = false;
    let sizes = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [schema, table, bytes, pages, tid_range] = f[..] else {
                return None;
            };
            ranges = tid_range == "true";
            Some((
                (schema.to_string(), table.to_string()),
                (bytes.parse().ok()?, pages.parse().ok()?),
            ))
        })
        .collect();
    Some((sizes, ranges))
}

/// What `jobs` workers read: every table, largest first so that the last piece to finish
/// is a small one, and a table larger than a worker's share of the whole cut into page
/// ranges, so that one big table does not leave the other workers idle. A range is read
/// once, like a table. Only such tables: a range costs more than a whole-table `COPY` (the
/// executor runs a query), which on two cores made a drill of the benchmark dataset's
/// checks 0.3-0.7 s slower when every table above an eighth of the whole was cut.
fn plan(
    tables: &[TableTruth],
    sizes: Option<(Sizes, bool)>,
    jobs: usize,
    min_piece: u64,
) -> Vec<Piece> {
    let (sizes, ranges) = sizes.unwrap_or_default();
    let size: Vec<(u64, u64)> = tables
        .iter()
        .map(|t| {
            sizes
                .get(&(t.schema.clone(), t.table.clone()))
                .copied()
                .unwrap_or((0, 0))
        })
        .collect();
    let total: u64 = size.iter().map(|s| s.0).sum();
    let piece = (total / jobs as u64).max(min_piece).max(1);
    let mut out = Vec::new();
    for (i, (t, &(bytes, pages))) in tables.iter().zip(&size).enumerate() {
        let n = if jobs > 1 && ranges && t.columns().is_some() {
            bytes.div_ceil(piece).min(pages).max(1)
        } else {
            1
        };
        if n == 1 {
            out.push(Piece {
                table: i,
                pages: None,
                bytes,
            });
            continue;
        }
        let step = pages.div_ceil(n);
        out.extend((0..n).map(|k| Piece {
            table: i,
            pages: Some((k * step, (k + 1 < n).then_some((k + 1) * step))),
            bytes: bytes / n,
        }));
    }
    // stable: the truth's order among equal sizes (all of them when sizes are unknown)
    out.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    out
}

/// The `COPY` head that reads `piece` of `t`.
fn piece_head(t: &TableTruth, piece: &Piece) -> String {
    let (Some((from, to)), Some((relation, columns))) = (piece.pages, t.columns()) else {
        return t.copy_head();
    };
    let mut filter = format!("ctid >= '({from},0)'::tid");
    if let Some(to) = to {
        filter.push_str(&format!(" AND ctid < '({to},0)'::tid"));
    }
    // ONLY: COPY of a table does not include its inheritance children, a SELECT would
    format!("COPY (SELECT {columns} FROM ONLY {relation} WHERE {filter})")
}

/// Row count and hash of the rows `head` (a `COPY ...` without its direction) reads from
/// `db`: through a FIFO the server writes when it can, else through psql.
fn read_piece(
    conn: &PgConn,
    db: &str,
    encoding: Option<&str>,
    head: &str,
    server: Option<&ServerCopy>,
    server_reaches_fifo: &std::sync::atomic::AtomicBool,
) -> Result<(u64, u128, bool)> {
    if let Some(server) = server.filter(|_| server_reaches_fifo.load(Ordering::Relaxed)) {
        let mut h = LineHasher::default();
        match server.copy_out(conn, db, encoding, head, &mut |b| h.feed(b))? {
            Outcome::Done => {
                let (rows, hash) = h.finish();
                return Ok((rows, hash, true));
            }
            // no use trying the other tables that way
            Outcome::Unreachable => server_reaches_fifo.store(false, Ordering::Relaxed),
        }
    }
    let mut h = LineHasher::default();
    copy_out(conn, db, encoding, &format!("{head} TO STDOUT"), |b| {
        h.feed(b);
    })?;
    let (rows, hash) = h.finish();
    Ok((rows, hash, false))
}

/// Tables smaller than this are never cut into page ranges.
const MIN_PIECE_BYTES: u64 = 64 << 20;

/// Compares database `db` reachable through `conn` with `truth`, `jobs` tables (or page
/// ranges of big tables) at a time.
///
/// # Errors
///
/// When the database cannot be read (a difference is not an error: see [`Comparison::ok`]).
pub fn compare(conn: &PgConn, db: &str, truth: &Truth, jobs: usize) -> Result<Comparison> {
    compare_in_pieces(conn, db, truth, jobs, MIN_PIECE_BYTES)
}

/// As [`compare`], cutting tables larger than `min_piece` bytes (and larger than a share of
/// the whole) into page ranges read in parallel.
///
/// # Errors
///
/// As [`compare`].
pub fn compare_in_pieces(
    conn: &PgConn,
    db: &str,
    truth: &Truth,
    jobs: usize,
    min_piece: u64,
) -> Result<Comparison> {
    let clock = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let encoding = truth.encoding.as_deref();
    // the dump's time zone and bytea format (see `Truth::session`)
    let session_conn = truth.session.as_deref().map(|s| conn.with_options(s));
    let conn = session_conn.as_ref().unwrap_or(conn);
    let jobs = jobs.max(1);
    let pieces = plan(&truth.tables, table_sizes(conn, db), jobs, min_piece);
    let all_by_server = std::sync::atomic::AtomicBool::new(true);
    let server = ServerCopy::probe(conn, db);
    let server_reaches_fifo = std::sync::atomic::AtomicBool::new(true);
    let results: Vec<Result<Vec<(usize, u64, u128)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(p) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let t = &truth.tables[p.table];
                        let (rows, hash, by_server) = read_piece(
                            conn,
                            db,
                            encoding,
                            &piece_head(t, p),
                            server.as_ref(),
                            &server_reaches_fifo,
                        )?;
                        if !by_server {
                            all_by_server.store(false, Ordering::Relaxed);
                        }
                        done.push((p.table, rows, hash));
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
    // the hash is a sum over rows, so the pieces of a table add up to the whole table's
    let mut read = vec![(0_u64, 0_u128); truth.tables.len()];
    for r in results {
        for (i, rows, hash) in r? {
            read[i].0 += rows;
            read[i].1 = read[i].1.wrapping_add(hash);
        }
    }
    let tables: Vec<TableCheck> = truth
        .tables
        .iter()
        .zip(read)
        .map(|(t, (rows, hash))| {
            let actual_hash = format!("{hash:032x}");
            TableCheck {
                table: t.qualified(),
                expected_rows: t.rows,
                actual_rows: rows,
                ok: rows == t.rows && actual_hash == t.hash,
                expected_hash: t.hash.clone(),
                actual_hash,
            }
        })
        .collect();

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
        tables,
        sequence_mismatches,
        large_objects_expected: truth.large_objects.clone(),
        large_objects_actual,
        duration_secs: clock.elapsed().as_secs_f64(),
        read_by_server: all_by_server.into_inner() && !truth.tables.is_empty(),
        reads: pieces.len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableTruth {
        TableTruth {
            schema: "public".into(),
            table: name.into(),
            copy: format!("COPY public.{name} (id, v) FROM stdin;"),
            rows: 0,
            hash: String::new(),
        }
    }

    fn sizes(list: &[(&str, u64, u64)], ranges: bool) -> Option<(Sizes, bool)> {
        let map = list
            .iter()
            .map(|&(n, bytes, pages)| (("public".to_string(), n.to_string()), (bytes, pages)))
            .collect();
        Some((map, ranges))
    }

    #[test]
    fn a_big_table_is_cut_into_ranges_that_cover_every_page() {
        let tables = [table("small"), table("big")];
        let p = plan(
            &tables,
            sizes(
                &[("small", 10 << 20, 1280), ("big", 800 << 20, 100_001)],
                true,
            ),
            8,
            64 << 20,
        );
        let ranges: Vec<_> = p.iter().filter(|x| x.table == 1).map(|x| x.pages).collect();
        // a worker's share is 810 MiB / 8: the big table in 8 ranges
        assert_eq!(ranges.len(), 8);
        let mut sorted: Vec<_> = ranges.into_iter().flatten().collect();
        sorted.sort();
        assert_eq!(sorted[0].0, 0);
        for w in sorted.windows(2) {
            assert_eq!(w[0].1, Some(w[1].0), "ranges must meet: {sorted:?}");
        }
        assert_eq!(sorted.last().unwrap().1, None, "the last range is open");
        // largest first: the small table comes last
        assert_eq!(p.last().unwrap().table, 0);
        assert_eq!(p.last().unwrap().pages, None);
    }

    #[test]
    fn tables_stay_whole_without_range_scans_one_job_or_small_sizes() {
        let tables = [table("big")];
        let whole = |p: Vec<Piece>| p.len() == 1 && p[0].pages.is_none();
        let big = [("big", 800 << 20, 100_000)];
        assert!(whole(plan(&tables, sizes(&big, false), 2, 64 << 20)));
        assert!(whole(plan(&tables, sizes(&big, true), 1, 64 << 20)));
        assert!(whole(plan(
            &tables,
            sizes(&[("big", 60 << 20, 7_000)], true),
            4,
            64 << 20
        )));
        assert!(whole(plan(&tables, None, 4, 64 << 20)));
        // no bigger than a worker's share: largest first balances it already
        let two = [table("a"), table("b")];
        let p = plan(
            &two,
            sizes(&[("a", 400 << 20, 50_000), ("b", 600 << 20, 75_000)], true),
            2,
            64 << 20,
        );
        assert_eq!(p.len(), 3, "only b is cut: {p:?}");
        assert!(p.iter().all(|x| (x.table == 0) == x.pages.is_none()));
    }

    #[test]
    fn piece_heads_read_a_page_range_of_only_that_table() {
        let t = table("t");
        let whole = Piece {
            table: 0,
            pages: None,
            bytes: 0,
        };
        assert_eq!(piece_head(&t, &whole), "COPY public.t (id, v)");
        let mid = Piece {
            table: 0,
            pages: Some((10, Some(20))),
            bytes: 0,
        };
        assert_eq!(
            piece_head(&t, &mid),
            "COPY (SELECT id, v FROM ONLY public.t WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid)"
        );
        let last = Piece {
            table: 0,
            pages: Some((20, None)),
            bytes: 0,
        };
        assert!(piece_head(&t, &last).ends_with("WHERE ctid >= '(20,0)'::tid)"));
    }
}
