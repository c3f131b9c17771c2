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
    server_copy::{copy_command, copy_script_command, drain, Outcome, ServerCopy},
    truth::{LineHasher, ObjectTruth, TableTruth, Truth},
};
use crate::error::{Error, Result};

/// One table compared.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
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

/// A sequence's state as the comparison reports it.
fn sequence_state(last_value: i64, is_called: bool) -> String {
    if is_called {
        last_value.to_string()
    } else {
        format!("{last_value} (is_called false)")
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Comparison {
    /// Per table.
    pub tables: Vec<TableCheck>,
    /// Sequences compared.
    pub sequences: usize,
    /// Sequences whose state differs: (name, expected, actual), each `last_value`, with
    /// ` (is_called false)` when the next `nextval` returns `last_value` itself.
    pub sequence_mismatches: Vec<(String, String, String)>,
    /// Large objects at backup time.
    pub large_objects_expected: ObjectTruth,
    /// Large objects now (of the backup's, after an overwrite: see `large_objects_left`).
    pub large_objects_actual: ObjectTruth,
    /// Large objects an overwrite left in place because the backup does not have them
    /// (made since, as tables made since are left too): not compared.
    pub large_objects_left: u64,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Every table was read through a FIFO the server wrote, not through psql.
    pub read_by_server: bool,
    /// Reads made: one per table, more when big tables were read in page ranges, fewer
    /// when small tables were read in batches.
    pub reads: usize,
    /// Small tables read several to one psql (see `reads`).
    pub batched_tables: usize,
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

    /// What was compared besides tables: `, 12 sequences, 3 large objects` (empty when
    /// there were none).
    #[must_use]
    pub fn also_compared(&self) -> String {
        let mut s = String::new();
        if self.sequences > 0 {
            s.push_str(&format!(", {} sequences", self.sequences));
        }
        if self.large_objects_expected.count > 0 {
            s.push_str(&format!(
                ", {} large objects",
                self.large_objects_expected.count
            ));
        }
        s
    }

    /// A one-line description of the first differences (the first ten, and how many more:
    /// thousands of tables differing must not make a line of half a megabyte in the
    /// audit log).
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
        // `777` against `777 (is_called false)` reads as no difference: both said
        let explicit = |s: &str| {
            if s.contains("(is_called") {
                s.to_string()
            } else {
                format!("{s} (is_called true)")
            }
        };
        parts.extend(self.sequence_mismatches.iter().map(|(n, e, a)| {
            if e.contains("(is_called") == a.contains("(is_called") {
                format!("sequence {n}: {a}, expected {e}")
            } else {
                format!("sequence {n}: {}, expected {}", explicit(a), explicit(e))
            }
        }));
        let (now, then) = (&self.large_objects_actual, &self.large_objects_expected);
        if now != then {
            parts.push(if now.count == then.count {
                // one hash over all of them is recorded, so which one changed is not known
                format!(
                    "large objects: {} now as at backup time, but their content differs",
                    now.count
                )
            } else {
                format!(
                    "large objects: {} now, {} at backup time",
                    now.count, then.count
                )
            });
        }
        const SHOWN: usize = 10;
        let more = parts.len().saturating_sub(SHOWN);
        parts.truncate(SHOWN);
        let mut line = parts.join("; ");
        if more > 0 {
            line.push_str(&format!("; and {more} more (every check is in the report)"));
        }
        line
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
    psql_ended(conn, db, child)
}

/// Waits for a psql that read `db`; its error, classified, when it failed.
fn psql_ended(conn: &PgConn, db: &str, child: std::process::Child) -> Result<()> {
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
fn table_sizes(conn: &PgConn, db: &str, encoding: Option<&str>) -> Option<(Sizes, bool)> {
    // one catalog query whatever the number of tables (a list of names could outgrow argv)
    let out = conn
        .query_in(
            db,
            "select n.nspname || chr(9) || c.relname || chr(9) || pg_table_size(c.oid) \
             || chr(9) || pg_relation_size(c.oid, 'main') / current_setting('block_size')::int \
             || chr(9) || (current_setting('server_version_num')::int >= 140000) \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where c.relkind in ('r', 'p', 'm')",
            // the names as the truth holds them
            encoding,
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

/// Tables smaller than this are read several to one psql, when there are at least
/// [`BATCH_FROM`] of them: one psql (process, connection) per table took 20-25 ms, two
/// minutes of a drill for 4925 tables of a few rows each.
const SMALL_TABLE_BYTES: u64 = 1 << 20;
const BATCH_FROM: usize = 64;
const BATCH_TABLES: usize = 200;

/// What one worker reads at a time.
enum Work {
    One(Piece),
    /// Small whole tables, read by one psql.
    Batch(Vec<Piece>),
}

/// The pieces as work: many small tables in batches (as many batches as workers at least,
/// so that they still read in parallel), the rest one at a time.
fn work(pieces: Vec<Piece>, jobs: usize) -> Vec<Work> {
    let small = |p: &Piece| p.pages.is_none() && p.bytes < SMALL_TABLE_BYTES;
    if pieces.iter().filter(|p| small(p)).count() < BATCH_FROM {
        return pieces.into_iter().map(Work::One).collect();
    }
    let (small, big): (Vec<Piece>, Vec<Piece>) = pieces.into_iter().partition(small);
    let per_batch = small.len().div_ceil(jobs.max(1)).clamp(1, BATCH_TABLES);
    let mut out: Vec<Work> = big.into_iter().map(Work::One).collect();
    let mut small = small.into_iter().peekable();
    while small.peek().is_some() {
        out.push(Work::Batch(small.by_ref().take(per_batch).collect()));
    }
    out
}

/// A line psql prints between two tables of a batch: in `COPY` text output a backslash is
/// followed by `\\`, `N` or an escape letter, never by `l`, so no row reads like it.
const BOUNDARY: &[u8] = b"\\lifeboat-table ";

/// Row count and hash of each of `heads` (whole-table `COPY` heads), read by one psql
/// running them in turn, the rows of each after a [`BOUNDARY`] line naming it.
fn read_batch(
    conn: &PgConn,
    db: &str,
    encoding: Option<&str>,
    heads: &[String],
) -> Result<Vec<(u64, u128)>> {
    let mut script = String::new();
    for (i, head) in heads.iter().enumerate() {
        script.push_str(&format!(
            "\\echo '\\\\lifeboat-table {i}'\n{head} TO STDOUT;\n"
        ));
    }
    let mut child = copy_script_command(conn, db, encoding)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| super::conn::missing_program(&conn.bin().program("psql"), e))?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut hashers: Vec<LineHasher> = heads.iter().map(|_| LineHasher::default()).collect();
    let mut current: Option<usize> = None;
    let mut seen = vec![false; heads.len()];
    let mut line: Vec<u8> = Vec::new();
    let drained = std::thread::scope(|s| {
        // written while the output is read: psql blocks on a full stdout otherwise
        s.spawn(move || {
            let mut stdin = stdin;
            let _ = std::io::Write::write_all(&mut stdin, &super::text::encode(&script));
        });
        drain(stdout, &mut |b: &[u8]| {
            for piece in b.split_inclusive(|c| *c == b'\n') {
                line.extend_from_slice(piece);
                if !line.ends_with(b"\n") {
                    continue;
                }
                match line.strip_prefix(BOUNDARY) {
                    Some(n) => {
                        current = std::str::from_utf8(n)
                            .ok()
                            .and_then(|n| n.trim().parse().ok())
                            .filter(|i: &usize| *i < heads.len());
                        if let Some(i) = current {
                            seen[i] = true;
                        }
                    }
                    None => {
                        if let Some(i) = current {
                            hashers[i].feed(&line);
                        }
                    }
                }
                line.clear();
            }
        })
    });
    drained.map_err(|e| Error::io("reading COPY output", e))?;
    psql_ended(conn, db, child)?;
    // a table psql never got to must not pass for an empty one
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(Error::internal(format!(
            "psql ended before it read {} of {db:?}",
            heads[i]
        )));
    }
    Ok(hashers.into_iter().map(LineHasher::finish).collect())
}

/// The session a dump taken before lifeboat fixed its own (a truth without
/// [`Truth::session`]) was read in: the time zone and `bytea_output` of `db` on the
/// server `source` reaches (production's own, database settings included), as
/// `-c TimeZone=… -c bytea_output=…`. `None` when that server does not answer (after a
/// host loss) or the settings cannot be passed on: the comparison then reads in the
/// target's settings, which differ from the dump's only when the zones differ.
#[must_use]
pub fn session_of_old_dump(source: &PgConn, db: &str) -> Option<String> {
    let row = source
        .query(
            db,
            "select current_setting('TimeZone') || '|' || current_setting('bytea_output')",
        )
        .ok()?;
    let (zone, bytea) = row.trim().split_once('|')?;
    let plain = |v: &str| !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\\');
    (plain(zone) && plain(bytea)).then(|| format!("-c TimeZone={zone} -c bytea_output={bytea}"))
}

/// Compares database `db` reachable through `conn` with `truth`, `jobs` tables (or page
/// ranges of big tables) at a time.
///
/// # Errors
///
/// When the database cannot be read (a difference is not an error: see [`Comparison::ok`]).
pub fn compare(conn: &PgConn, db: &str, truth: &Truth, jobs: usize) -> Result<Comparison> {
    compare_in_pieces(conn, db, truth, jobs, MIN_PIECE_BYTES, None)
}

/// As [`compare`] after an overwrite, which leaves large objects the backup does not
/// have: only those in `backed_up` (oids) are compared, the others counted.
///
/// # Errors
///
/// As [`compare`].
pub fn compare_over(
    conn: &PgConn,
    db: &str,
    truth: &Truth,
    jobs: usize,
    backed_up: &std::collections::HashSet<i64>,
) -> Result<Comparison> {
    compare_in_pieces(conn, db, truth, jobs, MIN_PIECE_BYTES, Some(backed_up))
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
    backed_up: Option<&std::collections::HashSet<i64>>,
) -> Result<Comparison> {
    if let Some(fields) = truth.unknown_fields() {
        return Err(Error::config(format!(
            "the backup-time truth was recorded by a newer lifeboat: it has fields this one ({}) does not know ({fields}), which may change what its hashes mean",
            crate::VERSION,
        ))
        .hint("compare with a lifeboat at least as new as the one that took the backup (`lifeboat list --json` shows it as written_by)"));
    }
    let clock = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let encoding = truth.encoding.as_deref();
    // the dump's time zone and bytea format (see `Truth::session`), and its money format
    let options = [truth.session.clone(), truth.money_options()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let session_conn = (!options.is_empty()).then(|| conn.with_options(&options));
    let conn = session_conn.as_ref().unwrap_or(conn);
    let jobs = jobs.max(1);
    let pieces = work(
        plan(
            &truth.tables,
            table_sizes(conn, db, encoding),
            jobs,
            min_piece,
        ),
        jobs,
    );
    let all_by_server = std::sync::atomic::AtomicBool::new(true);
    let server = ServerCopy::probe(conn, db);
    let server_reaches_fifo = std::sync::atomic::AtomicBool::new(true);
    let results: Vec<Result<Vec<(usize, u64, u128)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(w) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                        match w {
                            Work::One(p) => {
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
                            Work::Batch(batch) => {
                                let heads: Vec<String> = batch
                                    .iter()
                                    .map(|p| piece_head(&truth.tables[p.table], p))
                                    .collect();
                                let read = read_batch(conn, db, encoding, &heads)?;
                                all_by_server.store(false, Ordering::Relaxed);
                                done.extend(
                                    batch.iter().zip(read).map(|(p, (r, h))| (p.table, r, h)),
                                );
                            }
                        }
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

    // a few hundred per query: one psql per sequence took 40 s for 3000 of them, and a
    // single argument may not exceed 128 KiB
    let mut sequence_mismatches = Vec::new();
    for batch in truth.sequences.chunks(400) {
        let sql = batch
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "select {i}, last_value, is_called from {}.{}",
                    ident(&s.schema),
                    ident(&s.name)
                )
            })
            .collect::<Vec<_>>()
            .join(" union all ");
        // is_called counts as much as the value: false means the next nextval returns
        // last_value itself, true the one after it (a value already handed out)
        let mut actual = vec![None; batch.len()];
        for line in conn.query_in(db, &sql, encoding)?.lines() {
            let mut f = line.split('|');
            if let (Some(i), Some(v), Some(called)) = (f.next(), f.next(), f.next()) {
                if let (Ok(i), Ok(v)) = (i.parse::<usize>(), v.trim().parse::<i64>()) {
                    if let Some(slot) = actual.get_mut(i) {
                        *slot = Some((v, called.trim() == "t"));
                    }
                }
            }
        }
        for (s, actual) in batch.iter().zip(actual) {
            if actual != Some((s.last_value, s.is_called)) {
                sequence_mismatches.push((
                    format!("{}.{}", s.schema, s.name),
                    sequence_state(s.last_value, s.is_called),
                    actual.map_or_else(|| "missing".to_string(), |(v, c)| sequence_state(v, c)),
                ));
            }
        }
    }

    let mut large_objects_actual = ObjectTruth::default();
    let mut large_objects_left = 0;
    if truth.large_objects.count > 0 || backed_up.is_some() {
        // in pieces, in order (a nested loop over each object's offsets): one value of a
        // large object over 512 MiB would pass PostgreSQL's 1 GB limit in hex, and whole
        // objects would be held in memory here
        let mut lo = LoCollector::default();
        copy_out(
            conn,
            db,
            encoding,
            &format!(
                "COPY (SELECT m.oid, g.off, lo_get(m.oid, g.off, {LO_PIECE}) \
                 FROM (SELECT oid, lo_lseek64(lo_open(oid, 262144), 0, 2) AS size \
                       FROM pg_catalog.pg_largeobject_metadata) m, \
                 LATERAL generate_series(0::bigint, greatest(m.size - 1, 0), {LO_PIECE}) AS g(off)) TO STDOUT"
            ),
            |b| lo.feed(b),
        )?;
        for (oid, h) in lo.finish()? {
            if backed_up.is_none_or(|b| b.contains(&oid)) {
                large_objects_actual.add(h);
            } else {
                large_objects_left += 1;
            }
        }
    }
    Ok(Comparison {
        tables,
        sequences: truth.sequences.len(),
        sequence_mismatches,
        large_objects_expected: truth.large_objects.clone(),
        large_objects_actual,
        large_objects_left,
        duration_secs: clock.elapsed().as_secs_f64(),
        read_by_server: all_by_server.into_inner() && !truth.tables.is_empty(),
        reads: pieces.len(),
        batched_tables: pieces
            .iter()
            .map(|w| match w {
                Work::Batch(b) => b.len(),
                Work::One(_) => 0,
            })
            .sum(),
    })
}

/// Bytes of a large object read per row: 16 MiB of hex text per line.
const LO_PIECE: i64 = 8 << 20;

/// Hashes `oid \t offset \t \\x<hex>` lines, an object's pieces in order, the way the
/// archive reader hashes large objects (xxh3-128 of the oid, then the bytes), decoding as
/// the text streams in: memory stays at one read buffer whatever the objects' sizes.
#[derive(Default)]
struct LoCollector {
    /// 0: the oid, 1: the offset, 2: the data of the current line.
    field: u8,
    oid: Vec<u8>,
    offset: Vec<u8>,
    /// Characters of the `\\x` prefix still to skip.
    prefix: u8,
    /// A hex digit waiting for the other half of its byte.
    half: Option<u8>,
    decoded: Vec<u8>,
    /// The object being hashed: oid, bytes so far, hasher.
    open: Option<(i64, i64, xxhash_rust::xxh3::Xxh3)>,
    out: Vec<(i64, u128)>,
    error: Option<String>,
}

impl LoCollector {
    fn feed(&mut self, b: &[u8]) {
        for &c in b {
            match self.field {
                0 if c == b'\t' => self.field = 1,
                0 => self.oid.push(c),
                1 if c == b'\t' => {
                    self.start_piece();
                    self.field = 2;
                    self.prefix = 3;
                }
                1 => self.offset.push(c),
                _ if c == b'\n' => {
                    self.end_piece();
                    self.field = 0;
                }
                _ if self.prefix > 0 => self.prefix -= 1,
                _ => {
                    let v = match c {
                        b'0'..=b'9' => c - b'0',
                        b'a'..=b'f' => c - b'a' + 10,
                        b'A'..=b'F' => c - b'A' + 10,
                        _ => {
                            self.fail("a large object's data is not hex");
                            continue;
                        }
                    };
                    match self.half.take() {
                        Some(h) => self.decoded.push(h << 4 | v),
                        None => self.half = Some(v),
                    }
                }
            }
        }
        self.flush();
    }

    fn fail(&mut self, what: &str) {
        self.error.get_or_insert_with(|| what.to_string());
    }

    fn flush(&mut self) {
        if let Some((_, n, h)) = &mut self.open {
            h.update(&self.decoded);
            *n += i64::try_from(self.decoded.len()).unwrap_or(i64::MAX);
        }
        self.decoded.clear();
    }

    fn start_piece(&mut self) {
        let number = |t: &[u8]| std::str::from_utf8(t).ok()?.parse::<i64>().ok();
        let (Some(oid), Some(offset)) = (number(&self.oid), number(&self.offset)) else {
            self.fail("unexpected large object listing");
            return;
        };
        self.oid.clear();
        self.offset.clear();
        if offset == 0 {
            self.close();
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&oid.to_le_bytes());
            self.open = Some((oid, 0, h));
        } else if !matches!(&self.open, Some((o, n, _)) if *o == oid && *n == offset) {
            self.fail("large object pieces out of order");
        }
    }

    fn end_piece(&mut self) {
        self.flush();
        if self.half.take().is_some() {
            self.fail("a large object's data has an odd number of hex digits");
        }
    }

    fn close(&mut self) {
        if let Some((oid, _, h)) = self.open.take() {
            self.out.push((oid, h.digest128()));
        }
    }

    fn finish(mut self) -> Result<Vec<(i64, u128)>> {
        self.close();
        match self.error {
            Some(e) => Err(Error::internal(e)),
            None => Ok(self.out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_dump_is_read_in_the_database_s_own_zone() {
        let c = crate::sources::postgres::cluster::Cluster::start(
            &crate::sources::postgres::conn::PgBin::new(None),
        )
        .expect("cluster");
        c.sql("postgres", "CREATE DATABASE berlin").expect("db");
        c.sql(
            "postgres",
            "ALTER DATABASE berlin SET timezone = 'Europe/Berlin'",
        )
        .expect("zone");
        let conn = c.conn();
        assert_eq!(
            session_of_old_dump(&conn, "berlin").as_deref(),
            Some("-c TimeZone=Europe/Berlin -c bytea_output=hex")
        );
        // read under it, a timestamptz is written as the dump wrote it
        let read = conn
            .with_options(&session_of_old_dump(&conn, "berlin").expect("session"))
            .query("berlin", "select '2026-07-01 12:00:00+00'::timestamptz")
            .expect("query");
        assert_eq!(read.trim(), "2026-07-01 14:00:00+02");
        // a server that does not answer: nothing to go on
        assert_eq!(session_of_old_dump(&conn, "no_such_db"), None);
    }

    #[test]
    fn a_truth_from_a_newer_lifeboat_is_not_judged() {
        let mut truth: Truth = serde_json::from_str(
            r#"{"database":"app","server_version":"15","dump_version":"15","archive_version":"1.14.0",
                "encoding":"UTF8","tables":[],"sequences":[],"large_objects":{"count":0,"hash":"0"},
                "database_properties":[],"session":"-c TimeZone=UTC","zone_of_dump":"Europe/Berlin"}"#,
        )
        .expect("truth");
        assert_eq!(truth.extra["zone_of_dump"], "Europe/Berlin");
        let conn = PgConn::local(
            std::path::Path::new("/nonexistent"),
            1,
            "nobody",
            crate::sources::postgres::conn::PgBin::new(None),
        );
        let err = compare(&conn, "app", &truth, 1).expect_err("refused");
        assert!(
            err.to_string().contains("newer lifeboat") && err.to_string().contains("zone_of_dump"),
            "{err}"
        );
        // what this version knows it goes on to compare (here with no server to read)
        truth.extra.clear();
        if let Err(e) = compare(&conn, "app", &truth, 1) {
            assert!(!e.to_string().contains("newer lifeboat"), "{e}");
        }
    }

    #[test]
    fn thousands_of_differing_tables_make_a_short_line() {
        let c = Comparison {
            tables: (0..4500)
                .map(|i| TableCheck {
                    table: format!("tenant_{i}.t"),
                    expected_rows: 2,
                    actual_rows: 1,
                    expected_hash: "a".into(),
                    actual_hash: "b".into(),
                    ok: false,
                })
                .collect(),
            sequences: 0,
            sequence_mismatches: Vec::new(),
            large_objects_expected: ObjectTruth::default(),
            large_objects_actual: ObjectTruth::default(),
            large_objects_left: 0,
            duration_secs: 0.0,
            read_by_server: false,
            reads: 4500,
            batched_tables: 0,
        };
        let line = c.describe_failures();
        assert!(
            line.starts_with("tenant_0.t: 1 rows, expected 2; "),
            "{line}"
        );
        assert!(
            line.ends_with("; and 4490 more (every check is in the report)"),
            "{line}"
        );
        assert!(line.len() < 600, "{line}");
    }

    #[test]
    fn differences_in_what_is_not_a_number_are_said_in_words() {
        let objects = |count, hash: &str| ObjectTruth {
            count,
            hash: hash.into(),
        };
        let mut c = Comparison {
            tables: Vec::new(),
            sequences: 1,
            sequence_mismatches: vec![(
                "public.s".into(),
                sequence_state(777, false),
                sequence_state(777, true),
            )],
            large_objects_expected: objects(4, "a"),
            large_objects_actual: objects(4, "b"),
            large_objects_left: 0,
            duration_secs: 0.0,
            read_by_server: false,
            reads: 0,
            batched_tables: 0,
        };
        assert_eq!(
            c.describe_failures(),
            "sequence public.s: 777 (is_called true), expected 777 (is_called false); \
             large objects: 4 now as at backup time, but their content differs"
        );
        c.large_objects_actual = objects(3, "b");
        c.sequence_mismatches[0].2 = sequence_state(778, true);
        c.sequence_mismatches[0].1 = sequence_state(777, true);
        assert_eq!(
            c.describe_failures(),
            "sequence public.s: 778, expected 777; large objects: 3 now, 4 at backup time"
        );
    }

    #[test]
    fn large_objects_hash_alike_whole_or_in_pieces_however_the_text_is_cut() {
        let whole = |oid: i64, data: &[u8]| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&oid.to_le_bytes());
            h.update(data);
            (oid, h.digest128())
        };
        // object 7 in two pieces, an empty object 9, object 12 in one
        let text = "7\t0\t\\\\x0102\n7\t2\t\\\\x03\n9\t0\t\\\\x\n12\t0\t\\\\xff\n";
        for cut in 1..text.len() {
            let mut c = LoCollector::default();
            c.feed(&text.as_bytes()[..cut]);
            c.feed(&text.as_bytes()[cut..]);
            assert_eq!(
                c.finish().unwrap(),
                vec![whole(7, &[1, 2, 3]), whole(9, &[]), whole(12, &[255])],
                "cut at {cut}"
            );
        }
        let mut c = LoCollector::default();
        c.feed(b"7\t0\t\\\\x01\n7\t5\t\\\\x02\n");
        assert!(c.finish().is_err(), "a gap between pieces");
    }

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
