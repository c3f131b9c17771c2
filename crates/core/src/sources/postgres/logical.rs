//! Logical dumps: pg_dump (custom format, uncompressed) and pg_dumpall --globals-only,
//! streamed without a temporary file.
//!
//! The child's stdout is read by the repository archiver through [`OutputStream`] (see
//! [`super::stream`]), which counts and hashes every byte and hands a copy to an inspector
//! thread that reads the archive's TOC and COPY data (see [`super::archive`]).
//! [`DumpProcess::finish`] then
//! decides whether the stream is a complete, good dump: exit status, stderr, length and a
//! fully read archive. Compression happens after chunking, in the repository, so that
//! unchanged rows deduplicate.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    archive,
    conn::PgConn,
    stream::{ChannelReader, ChildStream, OutputStream},
    truth::Truth,
};
use crate::error::{Error, Result};

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Schema and data of one database (`pg_dump -Fc -Z0`).
    Logical,
    /// Schema only (`pg_dump -Fc -s`).
    Schema,
    /// Roles and tablespaces of the cluster (`pg_dumpall --globals-only`).
    Globals,
    /// The whole cluster as a base backup (`pg_basebackup`), restored with WAL.
    Physical,
}

impl BackupKind {
    /// All logical kinds, in backup order (what `backup` takes by default).
    pub const ALL: [Self; 3] = [Self::Logical, Self::Schema, Self::Globals];

    /// Name used in tags and on the command line.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Logical => "logical",
            Self::Schema => "schema",
            Self::Globals => "globals",
            Self::Physical => "physical",
        }
    }

    /// File name of the stream inside the snapshot.
    #[must_use]
    pub fn file_name(self, database: &str) -> String {
        match self {
            Self::Logical => format!("{}.pgdump", path_component(database)),
            Self::Schema => format!("{}.schema.pgdump", path_component(database)),
            Self::Globals => "globals.sql".to_string(),
            Self::Physical => "base.tar".to_string(),
        }
    }
}

impl std::str::FromStr for BackupKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logical" => Ok(Self::Logical),
            "schema" => Ok(Self::Schema),
            "globals" => Ok(Self::Globals),
            "physical" => Ok(Self::Physical),
            other => Err(Error::config(format!("unknown backup kind {other:?}"))
                .hint("use logical, schema, globals or physical")),
        }
    }
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running pg_dump / pg_dumpall and what is learned from its output.
pub struct DumpProcess {
    inner: ChildStream<Truth>,
    /// The session's `lc_monetary` when the database stores `money` (see
    /// [`Truth::lc_monetary`]).
    lc_monetary: Option<String>,
    /// Database (or `"globals"`) being dumped.
    pub database: String,
    /// Kind of dump.
    pub kind: BackupKind,
}

/// The result of a finished, successful dump.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    /// Bytes in the stream.
    pub bytes: u64,
    /// xxh3-128 of the whole stream (hex), checked again on restore.
    pub stream_hash: String,
    /// Backup-time truth (custom-format dumps only).
    pub truth: Option<Truth>,
}

fn inspect_archive(r: ChannelReader) -> std::result::Result<Truth, String> {
    archive::inspect(r).map_err(|e| e.to_string())
}

impl DumpProcess {
    /// Starts dumping `database` (ignored for globals) of `conn`.
    ///
    /// # Errors
    ///
    /// When the program cannot be started.
    pub fn start(conn: &PgConn, database: &str, kind: BackupKind) -> Result<Self> {
        Self::start_waiting(conn, database, kind, None)
    }

    /// As [`DumpProcess::start`]; pg_dump waits at most `lock_wait_secs` for each table's
    /// lock (`None` or 0: for ever).
    ///
    /// # Errors
    ///
    /// When the program cannot be started.
    pub fn start_waiting(
        conn: &PgConn,
        database: &str,
        kind: BackupKind,
        lock_wait_secs: Option<u64>,
    ) -> Result<Self> {
        let mut lc_monetary = None;
        let (program, cmd) = match kind {
            BackupKind::Globals => {
                let mut c = conn.command("pg_dumpall", database);
                c.args(["--globals-only", "--no-password"]);
                ("pg_dumpall", c)
            }
            BackupKind::Physical => {
                return Err(Error::internal(
                    "a physical backup is taken by pg_basebackup, not pg_dump",
                ))
            }
            BackupKind::Logical | BackupKind::Schema => {
                lc_monetary = money_locale(conn, database);
                let mut c = conn.with_options(DUMP_SESSION).command("pg_dump", database);
                // libpq would send it after the options, and it would win
                c.env_remove("PGTZ");
                c.args(["--format=custom", "--compress=0", "--no-password"]);
                if let Some(secs) = lock_wait_secs.filter(|s| *s > 0) {
                    c.arg(format!("--lock-wait-timeout={}", secs * 1000));
                }
                if kind == BackupKind::Schema {
                    c.arg("--schema-only");
                }
                ("pg_dump", c)
            }
        };
        let inspect: Option<fn(ChannelReader) -> std::result::Result<Truth, String>> =
            (kind != BackupKind::Globals).then_some(inspect_archive);
        let inner =
            ChildStream::spawn(cmd, program, format!("{program} of {database:?}"), inspect)?;
        Ok(Self {
            inner,
            lc_monetary,
            database: database.to_string(),
            kind,
        })
    }

    /// Takes the stream for the archiver (once).
    pub fn take_stream(&mut self) -> Option<OutputStream> {
        self.inner.take_stream()
    }

    /// Waits for the program and decides whether the dump is complete and good.
    ///
    /// # Errors
    ///
    /// A classified error when the program failed or was killed, or
    /// [`crate::ErrorKind::Integrity`] when the stream is incomplete or malformed.
    pub fn finish(self) -> Result<DumpOutcome> {
        let out = self.inner.finish()?;
        Ok(DumpOutcome {
            bytes: out.bytes,
            stream_hash: out.stream_hash,
            truth: out.inspected.map(|mut t| {
                t.session = Some(DUMP_SESSION.to_string());
                t.lc_monetary = self.lc_monetary;
                t
            }),
        })
    }
}

/// `money` in a column of a table, a materialized view or a composite type: directly, or
/// under any nesting of domains, arrays, ranges and multiranges (`rngmultitypid` read
/// through `to_jsonb`: the column is there from PostgreSQL 14 on, and the query must
/// also run on older servers).
const MONEY_SQL: &str = "with recursive m(oid) as (
  select 'money'::regtype::oid
  union
  select t.oid from pg_type t
    left join pg_range r on r.rngtypid = t.oid
    left join pg_range mr on (to_jsonb(mr) ->> 'rngmultitypid')::oid = t.oid
    join m on m.oid in (t.typbasetype, t.typelem, r.rngsubtype, mr.rngtypid)
)
select current_setting('lc_monetary') where exists (
  select 1 from pg_attribute a join pg_class c on c.oid = a.attrelid
  where a.attnum > 0 and not a.attisdropped and c.relkind in ('r', 'p', 'm', 'c')
    and a.atttypid in (select oid from m))";

/// The `lc_monetary` pg_dump will write `database`'s money values in, when it has any.
/// The setting may come from the server's configuration or the role, which the dump does
/// not record. A failed query leaves it unrecorded, said in a note (pg_dump reports a
/// connection that fails).
fn money_locale(conn: &PgConn, database: &str) -> Option<String> {
    match conn.with_options(DUMP_SESSION).query(database, MONEY_SQL) {
        Ok(out) => {
            let lc = out.trim();
            (!lc.is_empty()).then(|| lc.to_string())
        }
        Err(e) => {
            super::cluster::note(format!(
                "could not ask whether database {database:?} stores money values ({}): the backup does not record the lc_monetary they are written in, and a server with another one would read them wrongly",
                crate::error::one_line(&e)
            ));
            None
        }
    }
}

/// Settings of every dump session besides pg_dump's own. The text of a `timestamptz` and
/// of a `bytea` depends on the session's time zone and `bytea_output`, which a database, a
/// role or the client's `PGTZ` may set to anything; the backup-time truth is a hash of that
/// text, so a comparison must read the rows with the same settings, and these are ones it
/// can always use. The dump restores the same values either way (times carry their offset,
/// hex is read by every server).
pub const DUMP_SESSION: &str = "-c TimeZone=UTC -c bytea_output=hex";

/// A path inside a snapshot: `/lifeboat/<source>/<file>`.
#[must_use]
pub fn snapshot_path(source: &str, file: &str) -> PathBuf {
    PathBuf::from(format!("/lifeboat/{}/{file}", path_component(source)))
}

/// `name` as one component of a path inside a snapshot: a database may be called `a/b` or
/// `..`, which as a path would nest or climb out (restic then stores a path it cannot
/// restore). `%` and `/` are percent-encoded, and a name of only dots gets its dots
/// encoded; every other name stays as it is.
#[must_use]
pub fn path_component(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b == b'.') {
        return name.replace('.', "%2E");
    }
    name.replace('%', "%25").replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_one_path_component_are_encoded() {
        assert_eq!(path_component("app"), "app");
        assert_eq!(path_component("Café \"prod\""), "Café \"prod\"");
        assert_eq!(path_component("../owner/x"), "..%2Fowner%2Fx");
        assert_eq!(path_component(".."), "%2E%2E");
        assert_eq!(path_component("50%/a"), "50%25%2Fa");
        assert_eq!(
            snapshot_path("src/x", &BackupKind::Logical.file_name("..")),
            PathBuf::from("/lifeboat/src%2Fx/%2E%2E.pgdump")
        );
    }
}
