//! `backup`: dump a PostgreSQL source into the repository, one snapshot per database and kind.
//!
//! A snapshot becomes visible only after pg_dump exited 0, its stream was read to the end,
//! the archive inside was complete, and the repository stored exactly as many bytes as the
//! stream held. Anything else discards the pending snapshot and returns the cause.

use std::time::Instant;

use rustic_core::{BackupOptions as RusticBackupOptions, SnapshotOptions};
use serde::{Deserialize, Serialize};

use crate::{
    config::SourceConfig,
    error::{Error, ErrorKind, Result},
    repository::{BackupMeta, Repo, StreamSource, PENDING_TAG},
    sources::postgres::{
        conn::PgConn,
        logical::{snapshot_path, BackupKind, DumpProcess},
        physical::{self, PhysicalMeta},
    },
};

/// What to back up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupOptions {
    /// Kinds to take; empty means every logical kind (logical, schema, globals).
    #[serde(default)]
    pub kinds: Vec<BackupKind>,
    /// Databases to dump; empty means the source's configured databases.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Recovery-point id grouping these backups (default: a new one).
    pub recovery_point: Option<String>,
    /// The `archive_command` that archives into this repository for the source, as the
    /// caller would write it (its binary and configuration): named in hints.
    #[serde(default)]
    pub archive_command: Option<String>,
    /// How long a dump waits for another run on this host taking the same dump (two cron
    /// lines that collide) before it is left out as locked; `None` waits not at all (a
    /// service decides itself; the CLI waits [`OVERLAP_WAIT_SECS`]).
    #[serde(default)]
    pub overlap_wait_secs: Option<u64>,
}

/// How long `lifeboat backup` waits for an overlapping run's same dump by default.
pub const OVERLAP_WAIT_SECS: u64 = 3600;

/// A dump this run left to another run on this host that was taking it when this one
/// came to it, and that stored it meanwhile.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TakenByOtherRun {
    /// Kind.
    pub kind: BackupKind,
    /// Database (none for the cluster-wide kinds).
    pub database: Option<String>,
    /// The backup the other run stored.
    pub id: String,
    /// Who that was, as its lock file said (`pid N since TIME`).
    pub holder: String,
}

/// One snapshot written.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupSummary {
    /// Snapshot id.
    pub id: String,
    /// Kind.
    pub kind: BackupKind,
    /// Database (none for globals).
    pub database: Option<String>,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Bytes of the dump stream.
    pub logical_bytes: u64,
    /// New bytes after dedup (before compression).
    pub new_bytes: u64,
    /// Bytes added to the repository.
    pub stored_bytes: u64,
    /// logical / stored.
    pub dedup_ratio: f64,
    /// Tables recorded in the backup-time truth.
    pub tables: usize,
    /// Rows recorded in the backup-time truth.
    pub rows: u64,
}

/// Everything one `backup` call did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupReport {
    /// Source name.
    pub source: String,
    /// Recovery point shared by these backups.
    pub recovery_point: String,
    /// Snapshots written, in order.
    pub backups: Vec<BackupSummary>,
    /// Backups that failed while others were written: one database that cannot be dumped
    /// does not keep the others from their backup. Empty when everything was written.
    pub failed: Vec<FailedBackup>,
    /// The backups are stored, but their audit entry or head did not get where it belongs
    /// (a head URL that is down): the evidence outside the repository lags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_gap: Option<crate::repository::audit::EvidenceGap>,
    /// Dumps another run on this host was taking when this one came to them, and stored
    /// meanwhile: not taken again, and no failure of either run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_other_run: Vec<TakenByOtherRun>,
}

/// A backup of one database and kind that failed.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FailedBackup {
    /// Kind.
    pub kind: BackupKind,
    /// Database (none for globals).
    pub database: Option<String>,
    /// Why (as the error would say, with the first line of each cause: "No space left on
    /// device" is in the cause).
    pub error: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The error's kind, which chooses the exit code.
    pub error_kind: ErrorKind,
}

impl BackupReport {
    /// Whether every backup asked for was written.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// The first failure as an error (for an exit code), naming how many failed and how
    /// many were written.
    #[must_use]
    pub fn failure(&self) -> Option<Error> {
        let first = self.failed.first()?;
        let e = Error::new(
            first.error_kind,
            format!(
                "{} of {} backups of source {} failed, the others were written; first: {} {}: {}",
                self.failed.len(),
                self.failed.len() + self.backups.len(),
                self.source,
                first.kind,
                first.database.as_deref().unwrap_or("-"),
                first.error
            ),
        );
        Some(match &first.hint {
            Some(h) => e.hint(h.clone()),
            None => e,
        })
    }
}

/// The databases a source dumps.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] when none is configured or implied.
pub fn databases_of(src: &SourceConfig, conn: &PgConn) -> Result<Vec<String>> {
    if src.has_database_patterns() {
        let mut dbs: Vec<String> = server_databases(src, conn)?
            .into_iter()
            .filter(|d| src.covers_database(d))
            .collect();
        // one named outright and gone from the server still fails, by name
        for d in src.named_databases() {
            if !dbs.contains(&d) {
                dbs.push(d);
            }
        }
        if dbs.is_empty() {
            return Err(Error::config(format!(
                "source.databases of {:?} ({}) matches no database on the server",
                src.name,
                src.databases.join(", ")
            ))
            .hint("`psql -l` lists the server's databases; a pattern takes `*` (any run of characters) and `?` (one)"));
        }
        return Ok(dbs);
    }
    if !src.databases.is_empty() {
        let named = src.named_databases();
        if named.is_empty() {
            return Err(Error::config(format!(
                "source.databases of {:?} only leaves databases out (`!` entries): it names none to dump",
                src.name
            ))
            .hint("add the databases to dump, or a pattern such as \"*\" before the `!` entries"));
        }
        return Ok(named);
    }
    conn.default_database().map(|d| vec![d]).ok_or_else(|| {
        Error::config(format!("source {:?} names no database", src.name))
            .hint("set databases = [\"app\"] or put the database in the dsn")
    })
}

/// The databases of `src`'s server that take connections (templates left out), by name.
///
/// # Errors
///
/// The connection's error when no database the source may reach answers.
pub fn server_databases(src: &SourceConfig, conn: &PgConn) -> Result<Vec<String>> {
    // as bytes: a name may hold a newline, or bytes that are not UTF-8
    // (text to bytea reads backslashes as escapes: doubled, each is itself)
    let sql = "select encode(replace(datname::text, '\\', '\\\\')::bytea, 'hex') \
               from pg_database where datallowconn and not datistemplate order by datname";
    let mut first_error = None;
    let candidates = conn
        .default_database()
        .into_iter()
        .chain(src.named_databases())
        .chain(["postgres".to_string(), "template1".to_string()]);
    for db in candidates {
        match conn.query(&db, sql) {
            Ok(out) => {
                return Ok(out
                    .lines()
                    .filter_map(|l| from_hex(l.trim()))
                    .map(|b| crate::sources::postgres::text::decode(&b))
                    .collect())
            }
            // the server itself does not answer: every other database would wait as long
            Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Error::config("no database to ask for the list")))
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    (s.len().is_multiple_of(2) && !s.is_empty()).then_some(())?;
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The server's databases that `src`'s list (named or by pattern) leaves out, when it has
/// one: a database made after the list was written (a new customer's) is backed up by
/// nothing, and nothing else would say so. The cluster's own `postgres` is left out.
///
/// # Errors
///
/// As [`server_databases`].
pub fn uncovered_databases(src: &SourceConfig, conn: &PgConn) -> Result<Vec<String>> {
    if src.databases.is_empty() {
        return Ok(Vec::new());
    }
    Ok(server_databases(src, conn)?
        .into_iter()
        .filter(|d| d != "postgres" && !src.covers_database(d) && !src.excludes_database(d))
        .collect())
}

/// The lifeboat binary `archive_command` (a server setting, as `show archive_command`
/// prints it) runs for `wal-push`, when it names one by path: the first word before
/// `wal-push` whose file name starts with `lifeboat` (past `env`, `timeout`, `sudo` and
/// their options; not a `lifeboat.toml`). `None` for another archiver (WAL-G's own `wal-push`), or a lifeboat found on
/// the server's `PATH`.
#[must_use]
pub fn archive_program(archive_command: &str) -> Option<std::path::PathBuf> {
    let program = lifeboat_word(archive_command)?;
    program
        .starts_with('/')
        .then(|| std::path::PathBuf::from(program))
}

/// The word of a lifeboat `wal-push` command that names lifeboat, by path or bare: the
/// first before `wal-push` whose file name starts with `lifeboat` (not its configuration
/// file, `lifeboat.toml`, which may come before). `None` for another archiver.
fn lifeboat_word(archive_command: &str) -> Option<String> {
    let words = crate::sources::postgres::cluster::shell_words(archive_command);
    let push = words.iter().position(|w| w == "wal-push")?;
    words[..push]
        .iter()
        .find(|w| {
            std::path::Path::new(w.as_str())
                .file_name()
                .is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("lifeboat") && !n.ends_with(".toml")
                })
        })
        .cloned()
}

/// The source a lifeboat `archive_command` pushes as (`--source NAME`, `--source=NAME`,
/// `-s NAME` before `wal-push` or after it); `None` when it names none or is no lifeboat
/// `wal-push`.
#[must_use]
pub fn archive_source(archive_command: &str) -> Option<String> {
    let words = crate::sources::postgres::cluster::shell_words(archive_command);
    words.iter().position(|w| w == "wal-push")?;
    words.iter().enumerate().find_map(|(i, w)| {
        if let Some(v) = w.strip_prefix("--source=") {
            return Some(v.to_string());
        }
        (w == "--source" || w == "-s")
            .then(|| words.get(i + 1).cloned())
            .flatten()
    })
}

/// The `archive_command` of the server `src` reaches, as `show` prints it; `None` when it
/// does not answer or the role may not read it (no `pg_read_all_settings`).
fn archive_setting(src: &SourceConfig) -> Option<String> {
    server_setting(src, "archive_command")
}

/// `SHOW name` on the server `src` reaches; `None` when it cannot be asked.
fn server_setting(src: &SourceConfig, name: &str) -> Option<String> {
    let conn = PgConn::from_source(src).ok()?;
    let db = src
        .named_databases()
        .first()
        .cloned()
        .or_else(|| conn.default_database())
        .unwrap_or_else(|| "postgres".into());
    conn.query(&db, &format!("show {name}"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// When the server `src` reaches logs no `DELETE` (`log_statement` is `none` or `ddl`):
/// after an accidental delete the on-call needs its time for a point-in-time restore, and
/// no log has it. `None` when it logs them (`mod`, `all`) or cannot be asked.
#[must_use]
pub fn statement_log_note(src: &SourceConfig) -> Option<String> {
    let level = server_setting(src, "log_statement")?;
    matches!(level.as_str(), "none" | "ddl").then(|| {
        format!(
            "source {:?}: the server logs no DELETE or UPDATE (log_statement = {level}): after an accidental one, its time is in no log; with WAL archiving `lifeboat wal inspect --source {}` finds it in the archived WAL, else set log_statement = 'mod' (it logs every data change: weigh the log volume)",
            src.name, src.name
        )
    })
}

/// When the server `src` reaches pushes its WAL as another source (`wal-push --source
/// OTHER`, an `archive_command` copied from another server) whose server is another
/// cluster, or is no source of `config`: its segments go to that archive, where `wal-push`
/// refuses them once they are not that cluster's. Sources that share one cluster (one per
/// database) share its `archive_command` rightly. The setting itself is not repeated: it
/// may carry a secret (`env VAR=…`).
#[must_use]
pub fn archive_source_note(config: &crate::config::Config, src: &SourceConfig) -> Option<String> {
    let setting = archive_setting(src)?;
    let other = archive_source(setting.trim()).filter(|s| *s != src.name)?;
    if let Some(theirs) = config.sources.iter().find(|s| s.name == other) {
        let system = |s: &SourceConfig| {
            PgConn::from_source(s)
                .ok()?
                .system_identifier(&s.named_databases())
                .ok()
        };
        let (mine, of_other) = (system(src), system(theirs));
        // the same cluster, or one that cannot be told apart now: nothing to say
        if mine.is_none() || of_other.is_none() || mine == of_other {
            return None;
        }
    }
    Some(format!(
        "source {:?}: PostgreSQL archives its WAL as source {other:?} (its archive_command names `--source {other}`), another cluster's or no configured source: its segments go to that source's archive, where wal-push refuses them once they are not that cluster's; name this source there (`wal-push --source {} %p`)",
        src.name, src.name,
    ))
}

/// When the server `src` reaches archives its WAL with another lifeboat than `this` (the
/// running binary): after an upgrade, the old one may still run there (see the README's
/// Upgrading section). `None` when it is the same file, or the setting cannot be read (a
/// role without `pg_read_all_settings`).
#[must_use]
pub fn other_archiving_binary(src: &SourceConfig, this: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let setting = archive_setting(src)?;
    let program = archive_program(setting.trim())?;
    let same = |a: &std::path::Path, b: &std::path::Path| match (
        std::fs::metadata(a),
        std::fs::metadata(b),
    ) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    // one that is not on this host is another host's (a server elsewhere): no judgement
    (program.exists() && !same(&program, this)).then(|| {
        format!(
            "source {:?}: PostgreSQL archives its WAL with {}, not with this lifeboat ({}): after an upgrade, point archive_command at the new binary (or install it in the old one's place), as older builds push WAL differently (README, Upgrading)",
            src.name,
            program.display(),
            this.display(),
        )
    })
}

/// What is wrong with the program the server's lifeboat `archive_command` runs, as
/// `(fails, what)`: one named by a bare name (`fails` false: the archiver finds it only on
/// the server's PATH, which a service's often lacks), or one that does not exist while the
/// server is on this host (reached through a Unix socket): the archiver then dies at the
/// first segment with exit 127 and counts no failure. `None` when archiving is off, the
/// command runs no lifeboat, or the setting cannot be read.
#[must_use]
pub fn archive_program_problem(src: &SourceConfig) -> Option<(bool, String)> {
    if server_setting(src, "archive_mode")? == "off" {
        return None;
    }
    let program = lifeboat_word(&archive_setting(src)?)?;
    if !program.starts_with('/') {
        return Some((
            false,
            format!(
                "source {:?}: archive_command names {program:?} without its path: PostgreSQL's archiver finds it only if the server's PATH holds it (a service's often does not), and a command not found stops archiving with no failure counted; give its full path",
                src.name
            ),
        ));
    }
    let conn = PgConn::from_source(src).ok()?;
    let here = match conn.param("host") {
        Some(h) => h.is_empty() || h.starts_with('/'),
        None => std::env::var("PGHOST").map_or(true, |h| h.is_empty() || h.starts_with('/')),
    };
    (here && !std::path::Path::new(&program).exists()).then(|| {
        (
            true,
            format!(
                "source {:?}: archive_command runs {program}, which does not exist on this host (where the server is: it is reached through a Unix socket): PostgreSQL's archiver stops at the first segment (exit 127) and counts no failure, so nothing is archived",
                src.name
            ),
        )
    })
}

/// What a backup and `config check` say about [`uncovered_databases`].
#[must_use]
pub fn uncovered_note(src: &SourceConfig, uncovered: &[String]) -> String {
    format!(
        "source {:?}: the server has {} database(s) that source.databases does not name, which no backup of it covers: {} (add them, or a pattern such as \"*\", to its databases; a \"!NAME\" entry leaves one out on purpose, and silences this)",
        src.name,
        uncovered.len(),
        uncovered.join(", ")
    )
}

/// What [`check_source`] found: the databases that answered, summed up in one line
/// (`None` when none did), and an error per database that did not.
#[derive(Debug)]
pub struct SourceCheck {
    /// `db (server N, pg_dump M)` per database that answered, or `N databases (…): a, b`.
    pub connected: Option<String>,
    /// One per database that could not be reached or dumped (each names its database).
    pub failed: Vec<Error>,
    /// The server's databases that the source's `databases` leaves out (see
    /// [`uncovered_databases`]), when that could be asked.
    pub uncovered: Vec<String>,
}

/// Connects to every database of `src` as a backup would and checks that the local
/// pg_dump can dump its server. Every database is tried: with forty, fixing one per run
/// of `config check` is slow.
///
/// # Errors
///
/// When the source names no database, or its patterns cannot be matched (the server does
/// not answer at all).
pub fn check_source(src: &SourceConfig) -> Result<SourceCheck> {
    let conn = PgConn::from_source(src)?;
    let mut versions: Vec<(String, String)> = Vec::new();
    let mut failed: Vec<Error> = Vec::new();
    for db in databases_of(src, &conn)? {
        match conn
            .server_version_num(&db)
            .and_then(|v| Ok((v, conn.check_client_version(v)?)))
        {
            Ok((v, client)) => {
                versions.push((db, format!("server {}, pg_dump {client}", v / 10_000)));
            }
            // the server does not answer: said once, not after a wait per database
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                failed.push(e);
                break;
            }
            Err(e) => failed.push(e),
        }
    }
    let uncovered = if versions.is_empty() {
        Vec::new()
    } else {
        uncovered_databases(src, &conn).unwrap_or_default()
    };
    // one server, one pg_dump: said once, not after each of 25 databases
    let same = versions.windows(2).all(|w| w[0].1 == w[1].1);
    let connected = match versions.as_slice() {
        [] => None,
        [(db, v)] => Some(format!("{db} ({v})")),
        [(_, v), ..] if same => Some(format!(
            "{} databases ({v}): {}",
            versions.len(),
            versions
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Some(
            versions
                .iter()
                .map(|(d, v)| format!("{d} ({v})"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    };
    Ok(SourceCheck {
        connected,
        failed,
        uncovered,
    })
}

/// Something the source's role may not do that some backup needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PrivilegeProblem {
    /// Whether the logical backup itself fails (a table it cannot read), rather than one
    /// kind only (the globals, a physical backup).
    pub fails_logical: bool,
    /// What is missing, naming the database and examples.
    pub problem: String,
    /// What to grant.
    pub hint: String,
}

/// What the source's role may not do, per database: tables it cannot read (the logical
/// backup fails), row-level security it does not bypass (likewise), no superuser (the
/// globals backup fails), no REPLICATION (a physical backup fails). `config check` runs it,
/// so that a backup role is found wanting before the first night's backup.
///
/// # Errors
///
/// When the server cannot be queried.
pub fn check_privileges(src: &SourceConfig) -> Result<Vec<PrivilegeProblem>> {
    let conn = PgConn::from_source(src)?;
    let mut out = Vec::new();
    let mut role_checked = false;
    for db in databases_of(src, &conn)? {
        // one that cannot be reached is `check_source`'s to name: the others are checked
        let Ok(row) = conn.query(&db, PRIVILEGES_SQL) else {
            continue;
        };
        // the role's name last: a '|' in it stays in it
        let f: Vec<&str> = row.trim_end_matches('\n').splitn(17, '|').collect();
        let [superuser, replication, unreadable, examples, rls, rls_examples, relations, lock_slots, backends, archive_mode, archive_timeout, tablespaces, reads_authid, wal_level, wal_senders, segment, role] =
            f[..]
        else {
            return Err(Error::internal(format!(
                "unexpected privilege check output: {row}"
            )));
        };
        let n: u64 = unreadable.parse().unwrap_or(0);
        if n > 0 {
            out.push(PrivilegeProblem {
                fails_logical: true,
                problem: format!("database {db:?}: the role cannot read {n} table(s) or sequence(s), e.g. {examples}"),
                hint: format!("GRANT pg_read_all_data TO {role} (PostgreSQL 14 and later), grant SELECT on them, or connect as a superuser"),
            });
        }
        let n: u64 = rls.parse().unwrap_or(0);
        if n > 0 {
            out.push(PrivilegeProblem {
                fails_logical: true,
                problem: format!("database {db:?}: row-level security would filter {n} table(s) for the role, e.g. {rls_examples}"),
                hint: format!("ALTER ROLE {role} BYPASSRLS, or connect as a superuser (never switch the tables' policies off for a backup)"),
            });
        }
        // pg_dump holds a lock on every table and sequence until it ends: past the
        // server's lock table it fails with "out of shared memory" (the table borrows from
        // spare shared memory, so this is a warning, not a certainty)
        let (relations, slots, backends): (u64, u64, u64) = (
            relations.parse().unwrap_or(0),
            lock_slots.parse().unwrap_or(u64::MAX),
            backends.parse().unwrap_or(1).max(1),
        );
        if relations > slots {
            out.push(PrivilegeProblem {
                fails_logical: false,
                problem: format!("database {db:?}: pg_dump locks its {relations} tables and sequences in one transaction, more than the server's lock table holds (about {slots}: max_locks_per_transaction × (max_connections + max_prepared_transactions)); the logical backup may fail with \"out of shared memory\""),
                hint: format!(
                    "raise max_locks_per_transaction to at least {} in postgresql.conf (it needs a restart)",
                    (relations * 3 / 2).div_ceil(backends)
                ),
            });
        }
        if !role_checked {
            role_checked = true;
            let segment = crate::sources::postgres::physical::parse_size(segment)
                .unwrap_or(crate::wal::DEFAULT_SEGMENT_SIZE);
            if let Some(p) = archive_timeout_problem(src, archive_mode, (archive_timeout, segment))
            {
                out.push(p);
            }
            if let Some(p) = wal_settings_problem(wal_level, wal_senders) {
                out.push(p);
            }
            if reads_authid != "t" {
                out.push(PrivilegeProblem {
                    fails_logical: false,
                    problem: format!("the role {role} may not read pg_authid: the globals backup (roles with their password hashes, part of a backup without --kind) will fail"),
                    hint: format!("GRANT pg_read_all_data TO {role} (PostgreSQL 14 and later) or connect as a superuser; or back up with --kind logical --kind schema and keep the roles another way"),
                });
            }
            if !tablespaces.is_empty() {
                out.push(PrivilegeProblem {
                    fails_logical: false,
                    problem: format!("the cluster has tablespaces besides pg_default and pg_global ({tablespaces}): a physical backup (--kind physical) is refused, since lifeboat backs up no tablespaces"),
                    hint: "back up the databases logically; restore them with --no-tablespaces where the target lacks the tablespaces".into(),
                });
            }
            if replication != "t" && superuser != "t" {
                out.push(PrivilegeProblem {
                    fails_logical: false,
                    problem: "the role has no REPLICATION: a physical backup (--kind physical) will fail".into(),
                    hint: format!("ALTER ROLE {role} REPLICATION (and a replication line in pg_hba.conf), if physical backups are wanted"),
                });
            }
        }
    }
    Ok(out)
}

/// The role's superuser and replication flags, tables it cannot read, and tables whose
/// row-level security it does not bypass (pg_dump refuses those rather than dump them
/// filtered), each with up to three examples.
const PRIVILEGES_SQL: &str = "with me as (select rolsuper, rolreplication, rolbypassrls from pg_roles where rolname = current_user), \
rels as (select c.oid, c.relowner, c.relrowsecurity, c.relforcerowsecurity, quote_ident(n.nspname) || '.' || quote_ident(c.relname) as name \
  from pg_class c join pg_namespace n on n.oid = c.relnamespace \
  where c.relkind in ('r', 'p', 'S') and n.nspname not in ('pg_catalog', 'information_schema') \
  and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'), \
unreadable as (select name from rels where not has_table_privilege(oid, 'SELECT')), \
filtered as (select name from rels, me where relrowsecurity and not (me.rolsuper or me.rolbypassrls) \
  and (relforcerowsecurity or not pg_has_role(relowner, 'USAGE'))) \
select me.rolsuper, me.rolreplication, \
  (select count(*) from unreadable), coalesce((select string_agg(name, ', ') from (select name from unreadable order by name limit 3) u), ''), \
  (select count(*) from filtered), coalesce((select string_agg(name, ', ') from (select name from filtered order by name limit 3) f), ''), \
  (select count(*) from rels), \
  current_setting('max_locks_per_transaction')::bigint * (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint), \
  current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint, \
  current_setting('archive_mode') || case when pg_is_in_recovery() then ' standby' else '' end, (select setting from pg_settings where name = 'archive_timeout'), \
  coalesce((select string_agg(quote_ident(spcname), ', ' order by spcname) from pg_tablespace where spcname not in ('pg_default', 'pg_global')), ''), \
  me.rolsuper or has_table_privilege('pg_catalog.pg_authid', 'SELECT'), \
  current_setting('wal_level'), current_setting('max_wal_senders'), current_setting('wal_segment_size'), \
  quote_ident(current_user) \
from me";

/// Settings that rule physical backups and WAL archiving out: `wal_level = minimal` (no
/// base backup, no archiving: PostgreSQL refuses to start with archive_mode on), no WAL
/// sender for pg_basebackup. A note, not a failure: a source may take logical backups only.
fn wal_settings_problem(wal_level: &str, senders: &str) -> Option<PrivilegeProblem> {
    if wal_level == "minimal" {
        return Some(PrivilegeProblem {
            fails_logical: false,
            problem: "wal_level is minimal: no physical backup can be taken and no WAL archived, so there is no point-in-time recovery (a server set to archive_mode = on would refuse to start)".into(),
            hint: "for physical backups and WAL archiving: wal_level = replica, max_wal_senders = 10 and archive_mode = on in postgresql.conf, then restart the server (all three need it)".into(),
        });
    }
    (senders.trim() == "0").then(|| PrivilegeProblem {
        fails_logical: false,
        problem: "max_wal_senders is 0: pg_basebackup has no WAL sender to connect to, so a physical backup (--kind physical) fails".into(),
        hint: "set max_wal_senders = 10 in postgresql.conf and restart the server, if physical backups are wanted".into(),
    })
}

/// A server that archives WAL but closes a segment only when it is full (16 MiB) leaves the
/// last minutes of a quiet server in no archive: after a host loss they are gone, whatever
/// the RPO objective says. `timeout` is `archive_timeout` in seconds.
fn archive_timeout_problem(
    src: &SourceConfig,
    mode: &str,
    (timeout, segment_size): (&str, u64),
) -> Option<PrivilegeProblem> {
    if mode == "off" {
        return None;
    }
    // a standby closes a segment when the primary does: its own archive_timeout does
    // nothing, and the primary's is not visible from here
    if mode.ends_with(" standby") {
        return Some(PrivilegeProblem {
            fails_logical: false,
            problem: "the server is a standby: WAL segments are closed by the primary, whose archive_timeout bounds how long the newest writes wait for the archive, when the primary archives for this source (this one's does nothing, and the primary's cannot be read through this connection)".to_string(),
            hint: format!(
                "on the primary, set archive_timeout to at most the RPO objective ({})",
                src.objectives.rpo.as_deref().unwrap_or("e.g. '60s'")
            ),
        });
    }
    let timeout: u64 = timeout.trim().parse().ok()?;
    let rpo = src
        .objectives
        .rpo
        .as_deref()
        .and_then(|r| crate::config::parse_duration(r).ok());
    let problem = match (timeout, rpo) {
        (0, _) => format!(
            "the server archives WAL but archive_timeout is 0: a segment is archived only when {} of WAL fill it, so on a quiet server the last minutes (or hours) before a host loss are in no archive",
            bytesize::ByteSize::b(segment_size)
        ),
        (t, Some(r)) if t > r => format!(
            "archive_timeout is {t} s, longer than the RPO objective ({r} s): a quiet server's last writes can wait that long before they are archived"
        ),
        _ => return None,
    };
    Some(PrivilegeProblem {
        fails_logical: false,
        problem,
        hint: format!(
            "ALTER SYSTEM SET archive_timeout = '{}s'; SELECT pg_reload_conf(); (or set it where the server's configuration sets it now: `select sourcefile from pg_settings where name = 'archive_timeout'`); each forced switch archives a segment that compresses to almost nothing",
            rpo.map_or(60, |r| r.clamp(30, 300))
        ),
    })
}

/// How long pg_dump waits for each table's lock when the source does not say
/// (`lock_wait_timeout`). While it waits it holds the tables it has locked, and a
/// migration queued behind those stalls the application's queries on them: a backup that
/// fails after five minutes, says why, and runs again at the next schedule costs less
/// than half an hour of a stalled application.
pub const DEFAULT_LOCK_WAIT_SECS: u64 = 5 * 60;

/// Backs up `src` into `repo`.
///
/// # Example
///
/// Not run here: it needs the PostgreSQL server the source's `dsn` reaches.
///
/// ```no_run
/// use lifeboat_core::{
///     config::Config,
///     ops::backup::{backup, BackupOptions},
///     repository::Repo,
///     secret::Secret,
/// };
/// use lifeboat_core::rustic_core::NoProgressBars;
///
/// let (config, _) = Config::load(Some("lifeboat.toml".as_ref()))?.expect("a config file");
/// let password = config.repository.password_source().resolve("repository password")?;
/// let repo = Repo::open(&config.repository, &password, NoProgressBars)?;
/// // logical, schema-only and globals, as `lifeboat backup` without --kind
/// let report = backup(&repo, config.source("app-db")?, &BackupOptions::default())?;
/// for b in &report.backups {
///     println!("{} {:?}: {} bytes", b.id, b.kind, b.logical_bytes);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The first failing dump's error when nothing could be written. When some backups were
/// written and others failed, the report lists the failures (`failed`, [`BackupReport::ok`]).
pub fn backup(repo: &Repo, src: &SourceConfig, opts: &BackupOptions) -> Result<BackupReport> {
    let result = backup_inner(repo, src, opts);
    let details = match &result {
        Ok(r) => format!(
            "source {} recovery point {}: {}",
            r.source,
            r.recovery_point,
            r.backups
                .iter()
                // whole ids: 8 digits could be forged to fit (see `audit::LoggedIds`)
                .map(|b| format!(
                    "{} {} {} ({} bytes)",
                    b.id,
                    b.kind,
                    b.database.as_deref().unwrap_or("-"),
                    b.logical_bytes
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // the kind and the cause ("No space left on device") are what the log is read for
        Err(e) => format!(
            "source {} ({}): {}",
            src.name,
            kinds_named(&opts.kinds),
            crate::error::one_line(e)
        ),
    };
    let details = match &result {
        // what failed first, then what was stored: with forty databases the stored ids
        // fill a screen, and the failures are what the entry is read for
        Ok(r) if !r.ok() => {
            let (head, stored) = details.split_once(": ").unwrap_or((&details, ""));
            format!(
                "{head}: {} of {} backups failed: {}; stored: {}",
                r.failed.len(),
                r.failed.len() + r.backups.len(),
                r.failed
                    .iter()
                    .map(|f| format!(
                        "{} {}: {}",
                        f.kind,
                        f.database.as_deref().unwrap_or("-"),
                        f.error
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                if stored.is_empty() { "none" } else { stored }
            )
        }
        _ => details,
    };
    // dumps an overlapping run took: named, so the log says why this run did not; not by
    // their ids, which that run's own entry records (read here, they would count as this
    // run's backups: twice in the evidence pack)
    let details = match &result {
        Ok(r) if !r.by_other_run.is_empty() => format!(
            "{details}; left to an overlapping run on this host, which stored them: {}",
            r.by_other_run
                .iter()
                .map(|o| format!(
                    "the {} dump of {} ({})",
                    o.kind,
                    o.database.as_deref().unwrap_or("the cluster"),
                    o.holder
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => details,
    };
    let ok = result.as_ref().is_ok_and(BackupReport::ok);
    let (mut report, gap) =
        crate::repository::audit::record_outcome_kept(repo, "backup", result, ok, &details)
            .map_err(Error::or_interrupted)?;
    // stopped midway, some kinds stored and the rest killed: a cancellation, as
    // `or_interrupted` makes of one that stored nothing, naming what was kept
    if crate::sources::postgres::cluster::interrupted() && !report.failed.is_empty() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!(
                "the backup of source {} was stopped while it ran; stored before that: {}",
                report.source,
                report
                    .backups
                    .iter()
                    .map(|b| format!(
                        "{} {} {}",
                        b.id,
                        b.kind,
                        b.database.as_deref().unwrap_or("-")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .hint(
            "what was stored is complete; call resume_after_stop, then back up again for the rest",
        ));
    }
    report.evidence_gap = gap;
    Ok(report)
}

fn backup_inner(repo: &Repo, src: &SourceConfig, opts: &BackupOptions) -> Result<BackupReport> {
    // deduplication trusts the index: with a pack gone, every backup from now on would
    // reference its data, say "backed up", and not restore
    let missing = repo.missing_packs()?;
    if !missing.is_empty() {
        return Err(Error::integrity(format!(
            "the repository's index names {} pack file(s) that are gone (e.g. {}): a backup now would reference their data without storing it",
            missing.len(),
            missing[..missing.len().min(3)].join(", ")
        ))
        .hint("run `lifeboat repair index` (it drops the lost packs from the index, so the next backup stores that data again), then `lifeboat verify --all` to see which backups lost data"));
    }
    let kinds = if opts.kinds.is_empty() {
        BackupKind::ALL.to_vec()
    } else {
        opts.kinds.clone()
    };
    let conn = PgConn::from_source(src)?;
    let databases = if opts.databases.is_empty() {
        if kinds
            .iter()
            .any(|k| matches!(k, BackupKind::Logical | BackupKind::Schema))
        {
            if let Ok(uncovered) = uncovered_databases(src, &conn) {
                if !uncovered.is_empty() {
                    crate::sources::postgres::cluster::note(uncovered_note(src, &uncovered));
                }
            }
        }
        databases_of(src, &conn)?
    } else {
        opts.databases.clone()
    };
    // the old primary after a failover, or production beside a promoted copy that archives
    // here: which one is production only the operator knows, so the dumps are taken with a
    // note (the base backup, which could not be restored, is refused after it is taken);
    // a WAL archive that cannot be read now is no reason to skip them either
    if let Some(why) = match databases.first() {
        Some(db) if kinds.iter().any(|k| *k != BackupKind::Physical) => {
            left_behind(repo, src, &conn, db).unwrap_or_else(|e| {
                Some(format!(
                    "whether another server was promoted from this one could not be told from the WAL archive: {}",
                    crate::error::headline(&e.to_string())
                ))
            })
        }
        _ => None,
    } {
        crate::sources::postgres::cluster::note(why);
    }
    if let Some(failing) = databases
        .first()
        .filter(|_| kinds.iter().any(|k| *k != BackupKind::Physical))
        .and_then(|db| archiving_failing(src, &conn, db))
    {
        crate::sources::postgres::cluster::note(failing);
    }
    // a standby that is behind its primary dumps older data than its clock says
    let data_as_of = match (
        databases.first(),
        kinds.iter().any(|k| *k != BackupKind::Physical),
    ) {
        (Some(db), true) => standby_lag(&conn, db),
        _ => None,
    };
    // to the millisecond: two runs started within one second (a job and a retry, a
    // small database) are two runs, not one
    let recovery_point = opts.recovery_point.clone().unwrap_or_else(|| {
        let now = jiff::Timestamp::now();
        format!(
            "{}.{:03}Z",
            now.strftime("%Y%m%dT%H%M%S"),
            now.subsec_millisecond()
        )
    });
    let mut report = BackupReport {
        source: src.name.clone(),
        recovery_point: recovery_point.clone(),
        backups: Vec::new(),
        failed: Vec::new(),
        evidence_gap: None,
        by_other_run: Vec::new(),
    };
    let mut first_error = None;
    // the cluster-wide kinds need one database to connect to: one a dump of this run
    // reached, so that a dropped or misspelled first database does not cost the roles too
    let mut reached: Option<String> = None;
    // databases whose dump could not get its locks in time: a second dump of one would
    // wait as long again, holding the tables it has already locked (a migration queued
    // behind them stalls the application for all that time)
    let mut lock_waited: Vec<(String, BackupKind)> = Vec::new();
    for kind in kinds {
        let dbs: Vec<String> = if kind == BackupKind::Globals || kind == BackupKind::Physical {
            reached
                .clone()
                .or_else(|| databases.first().cloned())
                .into_iter()
                .collect()
        } else {
            databases.clone()
        };
        for db in &dbs {
            let _doing = crate::status::doing(match kind {
                BackupKind::Physical => "base backup of the whole cluster".to_string(),
                BackupKind::Globals => "roles and tablespaces (globals)".to_string(),
                BackupKind::Schema => format!("schema of {db:?}"),
                BackupKind::Logical => format!("dump of {db:?}"),
            });
            let waited = lock_waited
                .iter()
                .find(|(d, _)| d == db)
                .map(|(_, k)| *k)
                .filter(|_| matches!(kind, BackupKind::Logical | BackupKind::Schema));
            // a run cron started while another still dumps this waits for it, and does
            // not dump it again when that run stored it (see `running`); held until this
            // dump is stored
            let per_db = matches!(kind, BackupKind::Logical | BackupKind::Schema);
            let (refused, _claimed) =
                match claim_or_wait(repo, src, kind, per_db.then_some(db.as_str()), opts) {
                    Ok(Claim::Ours(held)) => (None, held),
                    Ok(Claim::Done(other)) => {
                        report.by_other_run.push(other);
                        continue;
                    }
                    Err(e) => (Some(e), None),
                };
            let overlapped = refused.is_some();
            let one = if let Some(e) = refused {
                Err(e)
            } else if let Some(earlier) = waited {
                Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "not tried: the {earlier} dump of {db:?} could not get its table locks within lock_wait_timeout, and this one would wait as long again while holding the tables it had locked"
                    ),
                ))
            } else if kind == BackupKind::Physical {
                physical_one(
                    repo,
                    src,
                    &conn,
                    db,
                    (&recovery_point, opts.archive_command.as_deref()),
                )
            } else {
                dump_one(repo, src, &conn, db, kind, (&recovery_point, data_as_of))
            };
            match one {
                Ok(summary) => {
                    reached.get_or_insert_with(|| db.clone());
                    report.backups.push(summary);
                }
                Err(e) => {
                    // a table lock pg_dump waited for (not a repository lock, not a run
                    // of this dump elsewhere): its hint names the setting
                    let table_lock = e.kind() == ErrorKind::Locked
                        && e.hint_text()
                            .is_some_and(|h| h.contains("lock_wait_timeout"));
                    if table_lock && waited.is_none() && !overlapped {
                        lock_waited.push((db.clone(), kind));
                    }
                    report.failed.push(FailedBackup {
                        kind,
                        database: (kind != BackupKind::Globals && kind != BackupKind::Physical)
                            .then(|| db.clone()),
                        error: crate::error::one_line(&e),
                        hint: e.hint_text().map(str::to_string),
                        error_kind: e.kind(),
                    });
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        // nothing written: the error as it is, with its hint (an unreachable server, a
        // refused password)
        // (the others named too: the audit log and --json keep only this error)
        Some(e) if report.backups.is_empty() => {
            // with its causes in the message ("No space left on device"), as the others'
            // below and in the audit entry
            let mut first = Error::new(e.kind(), crate::error::one_line(&e));
            if let Some(h) = e.hint_text() {
                first = first.hint(h.to_string());
            }
            Err(report.failed.iter().skip(1).fold(first, |e, f| {
                e.with_note(format!(
                    "the {} backup{} failed too: {}",
                    f.kind,
                    f.database
                        .as_deref()
                        .map(|d| format!(" of {d:?}"))
                        .unwrap_or_default(),
                    f.error
                ))
            }))
        }
        _ => Ok(report),
    }
}

/// Archives `stream` as `path` under a pending snapshot; `finish` then judges the producer.
/// Returns the pending snapshot and the producer's outcome, or discards and fails.
fn archive_stream<R, T>(
    repo: &Repo,
    path: &std::path::Path,
    stream: R,
    finish: impl FnOnce() -> Result<T>,
    stream_bytes: impl Fn(&T) -> u64,
    what: &str,
) -> Result<(rustic_core::repofile::SnapshotFile, T)>
where
    R: std::io::Read + Send + 'static,
{
    let snap = SnapshotOptions::default()
        .label(crate::repository::LABEL.to_string())
        .add_tags(PENDING_TAG)?
        .to_snapshot()?;
    let mut opts = RusticBackupOptions::default();
    // no parent: a stream has no mtime to compare, and dedup works through the index anyway
    opts.parent_opts.force = true;
    let source = StreamSource::new(path.to_path_buf(), stream);
    let archived = repo.with_indexed_ids(|indexed| {
        Ok(indexed.archive(&opts, &source, snap, &[path.to_path_buf()])?)
    });
    drop(source);
    let outcome = finish();
    let (snap, outcome) = match (archived, outcome) {
        (Ok(snap), Ok(outcome)) => (snap, outcome),
        (Ok(snap), Err(e)) => {
            repo.discard(&snap)?;
            return Err(e);
        }
        // the producer's verdict is about the stream itself (cut short by the archiver,
        // incomplete, empty) and the repository failed: the repository's error is the cause
        (Err(e), Err(p)) if p.kind() == ErrorKind::Integrity => return Err(e),
        // the store went away or its disk filled: whatever the producer then said (a base
        // backup waiting minutes for WAL that could not be archived there either) follows
        // from it
        (Err(e), Err(_)) if e.kind() == ErrorKind::Unavailable => return Err(e),
        // otherwise the producer's own error explains a repository failure best
        (Err(_), Err(e)) => return Err(e),
        (Err(e), Ok(_)) => return Err(e),
    };
    let processed = snap.summary.as_ref().map_or(0, |s| s.total_bytes_processed);
    if processed != stream_bytes(&outcome) {
        repo.discard(&snap)?;
        return Err(Error::integrity(format!(
            "the repository stored {processed} of the {} bytes {what} wrote",
            stream_bytes(&outcome)
        ))
        .hint("no snapshot was kept; check the repository (disk space, permissions) and run the backup again"));
    }
    Ok((snap, outcome))
}

/// A base backup that waited in vain for its WAL, on a local repository whose file system
/// is full: wal-push's "No space left on device" reached only the server's log, and the
/// backup said only that archiving kept failing.
fn with_wal_space(repo: &Repo, e: Error, segment_size: u64) -> Error {
    if e.kind() != ErrorKind::Postgres || !e.message().contains(physical::WAITED_FOR_ARCHIVING) {
        return e;
    }
    let Some(note) = crate::repository::wal_room_note(repo.location(), segment_size) else {
        return e;
    };
    e.with_note(note).hint("free space on the repository's file system (or move the repository), then run the backup again; `lifeboat wal status` shows when archiving has caught up")
}

fn dump_one(
    repo: &Repo,
    src: &SourceConfig,
    conn: &PgConn,
    db: &str,
    kind: BackupKind,
    (recovery_point, data_as_of): (&str, Option<jiff::Timestamp>),
) -> Result<BackupSummary> {
    // connect first: a wrong password or a down server is reported before anything starts
    let server_version_num = conn.server_version_num(db)?;
    let client_version = conn.check_client_version(server_version_num)?;
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let path = snapshot_path(&src.name, &kind.file_name(db));
    let lock_wait = src
        .lock_wait_timeout
        .as_deref()
        .map_or(Ok(DEFAULT_LOCK_WAIT_SECS), crate::config::parse_duration)
        .map_err(|e| Error::config(format!("lock_wait_timeout of source {:?}: {e}", src.name)))?;
    let conn = &conn.with_english_messages(db);
    let mut process = DumpProcess::start_waiting(conn, db, kind, Some(lock_wait))?;
    let stream = process.take_stream().expect("fresh process has its stream");
    let (snap, outcome) = archive_stream(
        repo,
        &path,
        stream,
        move || process.finish(),
        |o| o.bytes,
        &format!("pg_dump for {db:?}"),
    )?;
    let summary = snap.summary.clone().unwrap_or_default();
    let meta = BackupMeta {
        lifeboat: crate::repository::meta::META_VERSION,
        source: src.name.clone(),
        kind,
        database: (kind != BackupKind::Globals).then(|| db.to_string()),
        server_version_num,
        client_version,
        path: path.display().to_string(),
        started_at,
        finished_at: jiff::Timestamp::now(),
        duration_secs: clock.elapsed().as_secs_f64(),
        logical_bytes: outcome.bytes,
        new_bytes: summary.data_added,
        stored_bytes: summary.data_added_packed,
        stream_hash: outcome.stream_hash,
        truth: outcome.truth,
        recovery_point: Some(recovery_point.to_string()),
        physical: None,
        written_by: Some(crate::VERSION.to_string()),
        data_as_of,
    };
    confirm(repo, &snap, &meta, clock)
}

fn confirm(
    repo: &Repo,
    snap: &rustic_core::repofile::SnapshotFile,
    meta: &BackupMeta,
    clock: Instant,
) -> Result<BackupSummary> {
    let id = repo.confirm(snap, meta)?;
    Ok(BackupSummary {
        id,
        kind: meta.kind,
        database: meta.database.clone(),
        duration_secs: clock.elapsed().as_secs_f64(),
        logical_bytes: meta.logical_bytes,
        new_bytes: meta.new_bytes,
        stored_bytes: meta.stored_bytes,
        dedup_ratio: meta.dedup_ratio(),
        tables: meta.truth.as_ref().map_or(0, |t| t.tables.len()),
        rows: meta.truth.as_ref().map_or(0, |t| t.total_rows()),
    })
}

/// Checks that the WAL a base backup taken without its own WAL needs has reached this
/// source's archive: a cluster whose archive_command sends WAL elsewhere (another
/// repository or source, `/bin/true`) would otherwise leave a snapshot that looks good
/// and cannot be restored. PostgreSQL has archived that WAL when pg_basebackup returns.
fn wal_reaches_store(
    store: &crate::wal::WalStore,
    src: &SourceConfig,
    timeline: u32,
    stop_lsn: crate::wal::Lsn,
    facts: &physical::ClusterFacts,
    archive_timeout: std::time::Duration,
    archive_command: Option<&str>,
) -> Result<()> {
    use crate::wal::{name::SegmentName, WalFile};
    let last = SegmentName::containing(
        timeline,
        crate::wal::Lsn(stop_lsn.0.saturating_sub(1)),
        facts.wal_segment_size,
    );
    let wanted = WalFile::Segment(last);
    // a standby's base backup does not wait for archiving: the segment is archived once it
    // is complete (by the primary, or by the standby itself with archive_mode = always)
    let deadline = std::time::Instant::now() + archive_timeout;
    loop {
        if store.contains(&wanted)? {
            return Ok(());
        }
        if !facts.standby || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    if facts.standby {
        return Err(Error::unavailable(format!(
            "the base backup was taken from a standby, and the WAL it needs ({last}) did not reach source {:?} of this repository within archive_timeout ({} s){}",
            src.name,
            archive_timeout.as_secs(),
            if facts.archive_mode == "always" {
                ""
            } else {
                "; this standby has archive_mode = on, so it archives nothing itself: the primary must push that segment into the same source"
            }
        ))
        .hint("set archive_mode = always on the standby with the same archive_command (the README's), or give the primary an archive_timeout shorter than this source's (it closes a segment that often); no snapshot was kept"));
    }
    Err(Error::config(format!(
        "the cluster archived the WAL this base backup needs ({last}), but not into source {:?} of this repository: the backup could not be restored",
        src.name
    ))
    .hint(format!(
        "set archive_command = {} in postgresql.conf and reload (as this host runs lifeboat: on another database host, its own lifeboat binary and configuration path; see the README), or back up without WAL archiving; no snapshot was kept",
        crate::ops::recover::conf_quote(&archive_command.map_or_else(
            || format!("lifeboat --config /etc/lifeboat/lifeboat.toml wal-push --source {} %p", src.name),
            str::to_string
        ))
    )))
}

/// Refuses a base backup of another cluster than the source's newest one (a second host's
/// configuration reusing the source's name): it would become the source's newest backup,
/// and a restore of it would replay the other cluster's WAL archive and fail.
fn same_cluster_as_before(repo: &Repo, src: &SourceConfig, system_identifier: &str) -> Result<()> {
    let earlier = super::list::list(
        repo,
        &super::list::ListFilter {
            source: Some(src.name.clone()),
            kind: Some(BackupKind::Physical),
            ..super::list::ListFilter::default()
        },
    )?;
    let Some((id, theirs)) = earlier.iter().rev().find_map(|b| {
        b.meta
            .physical
            .as_ref()
            .map(|p| (b.short_id(), p.system_identifier.clone()))
    }) else {
        return Ok(());
    };
    if theirs == system_identifier {
        return Ok(());
    }
    Err(Error::config(format!(
        "this server is another cluster (system identifier {system_identifier}) than the one source {:?}'s base backups are of ({theirs}, newest {id}): its backup would become the source's newest, and a restore of it would replay the other cluster's WAL",
        src.name
    ))
    .hint("give this server a source name of its own (and its archive_command that name); a cluster made anew (initdb, pg_upgrade) needs a new source name too, since its WAL file names start over"))
}

/// Refuses the first base backup of a source whose WAL archive holds another cluster's
/// WAL (its pushes marked which): a restore of it could not replay that archive.
fn same_cluster_as_archive(repo: &Repo, src: &SourceConfig, system_identifier: &str) -> Result<()> {
    let marked = crate::wal::WalStore::new(repo, &src.name)?.marked_systems()?;
    if marked.is_empty() || marked.iter().any(|m| m.to_string() == system_identifier) {
        return Ok(());
    }
    Err(Error::config(format!(
        "this server is another cluster (system identifier {system_identifier}) than the one whose WAL source {:?}'s archive holds ({}): a restore of its base backup could not replay that archive",
        src.name,
        marked.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    ))
    .hint("give this server a source name of its own (and its archive_command that name); a cluster made anew (initdb, pg_upgrade) needs a new source name too, since its WAL file names start over"))
}

/// Refuses a base backup that the archive's newest timeline does not contain: a promoted
/// standby archived its history file, and this server (the old primary) kept writing on
/// the timeline that history left. A restore to the latest timeline could not start
/// from it, and one along this timeline would bring back writes production never had.
fn on_newest_timeline(
    store: &crate::wal::WalStore,
    src: &SourceConfig,
    timeline: u32,
    stop_lsn: crate::wal::Lsn,
) -> Result<()> {
    match crate::wal::status::LatestTimeline::new(store)?.left(timeline, stop_lsn)? {
        None => Ok(()),
        Some((newest, switch)) => Err(Error::config(format!(
            "this server is on timeline {timeline}, which the archive's newest timeline {newest} left at LSN {switch} (its history file {newest:08X}.history), before this backup ended at {stop_lsn}: a standby was promoted and this server kept writing after it; the backup could not be restored along timeline {newest}, no snapshot was kept"
        ))
        .hint(format!(
            "point source {:?} at the current primary (the promoted server, on timeline {newest}) and take the base backups there; stop the old primary's writes and its archiving",
            src.name
        ))),
    }
}

/// The kinds a backup was asked for, as its audit entry names them (`logical, schema,
/// globals` when none was named: the configured default).
#[must_use]
pub fn kinds_named(kinds: &[BackupKind]) -> String {
    if kinds.is_empty() {
        BackupKind::ALL.as_slice()
    } else {
        kinds
    }
    .iter()
    .map(ToString::to_string)
    .collect::<Vec<_>>()
    .join(", ")
}

/// For a standby that has not replayed everything its primary wrote: the commit time of
/// the last transaction it replayed (the newest data a dump of it holds), said in a note
/// with how far behind it is. `None` for a primary, for a standby that is current (it
/// streams from its primary and has replayed all it received: an idle primary's last
/// commit may be old, and the standby is still current), and for one that has replayed
/// no transaction since it started (how old its data is cannot be told; the note says so).
/// A log-shipping standby (no `primary_conninfo`, a `restore_command`) streams nothing by
/// design: it is noted only when its last replayed commit is over a minute old, and
/// without the advice to mend a replication it does not have.
fn standby_lag(conn: &PgConn, db: &str) -> Option<jiff::Timestamp> {
    let ask = || -> Option<(String, bool, Option<jiff::Timestamp>, String)> {
        let row = conn
            .query(
                db,
                // a role without pg_read_all_stats sees the receiver's pid only; one
                // without pg_read_all_settings sees neither setting (feed is then empty),
                // and only whether they are set leaves the server (a conninfo may hold a
                // password)
                "select pg_is_in_recovery(), \
                 coalesce((select coalesce(status, case when pid is not null then 'streaming' end) from pg_stat_wal_receiver), ''), \
                 coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false), \
                 coalesce(to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''), \
                 coalesce((select case when setting <> '' then 'stream' \
                   when (select setting from pg_settings where name = 'restore_command') <> '' then 'archive' \
                   else 'none' end from pg_settings where name = 'primary_conninfo'), '')",
            )
            .ok()?;
        let f: Vec<&str> = row.trim().split('|').collect();
        let [in_recovery, receiver, caught_up, last, feed] = f[..] else {
            return None;
        };
        (in_recovery == "t").then(|| {
            (
                receiver.to_string(),
                caught_up == "t",
                last.parse().ok(),
                feed.to_string(),
            )
        })
    };
    let (mut receiver, mut caught_up, mut last, feed) = ask()?;
    // an idle primary's last commit may be hours old while its standby is current, and
    // even an idle primary writes a little WAL now and then: a standby that is streaming
    // gets two seconds to replay what it received
    for _ in 0..5 {
        let lag =
            last.map(|l: jiff::Timestamp| jiff::Timestamp::now().duration_since(l).as_secs_f64());
        // a busy standby is always a little behind what it received: only a minute counts
        if receiver != "streaming" || caught_up || lag.is_some_and(|l| l < 60.0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(400));
        (receiver, caught_up, last, _) = ask()?;
    }
    let lag = last.map(|l| jiff::Timestamp::now().duration_since(l).as_secs_f64());
    if receiver == "streaming" && (caught_up || lag.is_some_and(|l| l < 60.0)) {
        return None;
    }
    let log_shipping = receiver.is_empty() && feed == "archive";
    if log_shipping && lag.is_some_and(|l| l < 60.0) {
        return None;
    }
    let receiver = receiver.as_str();
    let behind = last.map_or_else(
        || "it has replayed no transaction since it started, so how old its data is cannot be told".to_string(),
        |l| {
            format!(
                "its last replayed transaction committed at {} ({} ago); these dumps hold the data as of then, and are recorded so (drills count their RPO from it)",
                l.strftime("%Y-%m-%d %H:%M:%S UTC"),
                super::evidence::human_secs(lag.unwrap_or_default(), 0)
            )
        },
    );
    crate::sources::postgres::cluster::note(if receiver == "streaming" {
        format!("the server is a standby whose replay is behind what it received from its primary: {behind}")
    } else if log_shipping {
        format!(
            "the server is a log-shipping standby (a restore_command, no primary_conninfo): it holds what the primary's archive has shipped to it: {behind}; what the primary wrote since then, if anything, is not in them (its archive_timeout sets how far behind such a standby runs)"
        )
    } else {
        format!(
            "the server is a standby that receives no WAL from its primary now (pg_stat_wal_receiver shows {}): {behind}; check the standby's replication (primary_conninfo, the primary's pg_hba.conf, its replication slot){}",
            if receiver.is_empty() { "no receiver" } else { receiver },
            if feed.is_empty() {
                " — unless it is a log-shipping standby, which streams nothing (this role may not read primary_conninfo to tell)"
            } else {
                ""
            }
        )
    });
    // nothing replayed since it started: how old its data is cannot be told
    last
}

/// Says when the source's WAL archive shows this server was left behind: a newer
/// timeline's history says it branched off this server's timeline before the point this
/// server writes at now (the old primary after a failover, still taking writes; or
/// production while a restored copy promoted with `--archive` archives here). Its dumps
/// become the source's latest backups, the ones `restore --latest` takes. `None` for a
/// source without a WAL archive (it cannot tell) and for a standby.
fn left_behind(repo: &Repo, src: &SourceConfig, conn: &PgConn, db: &str) -> Result<Option<String>> {
    let Ok(store) = crate::wal::WalStore::new(repo, &src.name) else {
        return Ok(None);
    };
    let Some(&newest) = store.timelines()?.last() else {
        return Ok(None);
    };
    // a server that does not answer fails the dumps, which say so: nothing to add here
    let Ok(row) = conn.query(
        db,
        "select case when pg_is_in_recovery() then '' else pg_walfile_name(pg_current_wal_lsn()) || '|' || pg_current_wal_lsn() end",
    ) else {
        return Ok(None);
    };
    let Some((file, lsn)) = row.trim().split_once('|') else {
        return Ok(None);
    };
    let (Some(timeline), Ok(lsn)) = (
        file.get(..8).and_then(|t| u32::from_str_radix(t, 16).ok()),
        crate::wal::Lsn::parse(lsn),
    ) else {
        return Ok(None);
    };
    if newest <= timeline {
        return Ok(None);
    }
    Ok(crate::wal::status::LatestTimeline::new(&store)?
        .left(timeline, lsn)?
        .map(|(newest, switch)| {
            format!(
                "this server writes on timeline {timeline}, which the archive's newest timeline {newest} left at LSN {switch} ({newest:08X}.history): another server was promoted from it. These dumps become source {:?}'s latest backups, the ones `restore --latest` takes: if the promoted server is production now, point the source at it (this server's writes since are not production's); if a restored copy archives here by mistake, stop its archiving (`lifeboat wal status` says more)",
                src.name
            )
        }))
}

/// What became of a claim on one dump.
enum Claim {
    /// This run takes it.
    Ours(Option<super::running::Running>),
    /// Another run on this host took it while this one waited.
    Done(TakenByOtherRun),
}

/// Claims the `kind` dump of `database` (none for the cluster-wide kinds) for this run,
/// waiting for another run on this host that is taking it (see [`super::running`]); when
/// that run stored it meanwhile, it is that run's, and this one does not dump it again.
fn claim_or_wait(
    repo: &Repo,
    src: &SourceConfig,
    kind: BackupKind,
    database: Option<&str>,
    opts: &BackupOptions,
) -> Result<Claim> {
    let work = super::running::Work {
        location: repo.location(),
        source: &src.name,
        kind,
        database,
    };
    let patience = opts.overlap_wait_secs.unwrap_or(0);
    let asked = jiff::Timestamp::now();
    let mut doing = None;
    let claimed = super::running::claim_waiting(
        work,
        std::time::Duration::from_secs(patience),
        |holder| {
            crate::sources::postgres::cluster::note(format!(
                "another run on this host takes this {kind} backup{} of source {} now ({holder}): waiting for it (up to {}) rather than dump it a second time at once",
                database.map(|d| format!(" of {d:?}")).unwrap_or_default(),
                src.name,
                super::evidence::human_secs(patience as f64, 0)
            ));
            doing = Some(crate::status::doing(format!(
                "waiting for the other run's {kind} backup ({holder})"
            )));
        },
    )?;
    drop(doing);
    let (held, holder) = match claimed {
        super::running::Claimed::Now(held) => return Ok(Claim::Ours(held)),
        super::running::Claimed::After(held, holder) => (held, holder),
    };
    // what the other run stored: a backup of this very dump that finished after that run
    // claimed it (its lock file says when: `pid N since TIME`), else after this one asked,
    // and not in the future (a snapshot dated ahead is no run's of now)
    let claimed_at = holder
        .split_once(" since ")
        .and_then(|(_, t)| jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S UTC", t.trim()).ok())
        .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map_or(asked, |z| z.timestamp().min(asked));
    let now = jiff::Timestamp::now();
    let stored = repo.backups()?.into_iter().find(|b| {
        b.meta.source == src.name
            && b.meta.kind == kind
            && (database.is_none() || b.meta.database.as_deref() == database)
            && b.meta.finished_at >= claimed_at
            && b.meta.finished_at <= now
    });
    Ok(match stored {
        Some(b) => Claim::Done(TakenByOtherRun {
            kind,
            database: database.map(str::to_string),
            id: b.id,
            holder,
        }),
        // it failed or was stopped: this run takes it
        None => Claim::Ours(held),
    })
}

/// What a backup says when the server's WAL archiving fails now (its newest attempt failed
/// after its newest success), or has stalled (segments waiting for minutes with no failure
/// recorded: an archive_command that cannot be run): a nightly dump succeeding beside it
/// would otherwise hide that no point-in-time recovery reaches past the last archived
/// segment. `None` when archiving is off, works, or cannot be asked about.
fn archiving_failing(src: &SourceConfig, conn: &PgConn, db: &str) -> Option<String> {
    let a = crate::wal::archiver_state(conn, db).ok()?;
    let time =
        |t: Option<jiff::Timestamp>| t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
    let since_archived = match time(a.last_archived_at) {
        None => "and no segment was archived since the statistics were reset".to_string(),
        Some(at) => format!("the last segment archived at {at}"),
    };
    let what = if let Some(waited) = a.stalled_secs(
        jiff::Timestamp::now(),
        crate::wal::archiver::stall_bound(&src.objectives),
    ) {
        format!(
            "has stalled: {} segment(s) wait in pg_wal, the oldest for {}, and no failure is recorded (an archive_command that cannot be found or run stops the archiver without counting one), {since_archived}",
            a.waiting.unwrap_or(0),
            crate::ops::evidence::human_secs(waited as f64, 0)
        )
    } else if a.failing && a.archive_mode != "off" {
        format!(
            "is failing: {} failed at {}, {since_archived}",
            a.last_failed_wal.as_deref().unwrap_or("a segment"),
            time(a.last_failed_at).unwrap_or_default()
        )
    } else {
        return None;
    };
    Some(format!(
        "source {:?}: the server's WAL archiving {what}: no point-in-time recovery reaches past that, and pg_wal grows until it is fixed (`lifeboat wal status --source {}` says why)",
        src.name, src.name
    ))
}

/// Takes a base backup of the cluster `conn` reaches (through database `db`).
fn physical_one(
    repo: &Repo,
    src: &SourceConfig,
    conn: &PgConn,
    db: &str,
    (recovery_point, archive_command): (&str, Option<&str>),
) -> Result<BackupSummary> {
    let facts = physical::cluster_facts(conn, db)?;
    same_cluster_as_before(repo, src, &facts.system_identifier)?;
    same_cluster_as_archive(repo, src, &facts.system_identifier)?;
    let client_version = conn.check_client_version(facts.server_version_num)?;
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let path = snapshot_path(&src.name, &BackupKind::Physical.file_name(db));
    let label = format!("lifeboat {} {recovery_point}", src.name);
    let archive_timeout = src
        .archive_timeout
        .as_deref()
        .map_or(Ok(300), crate::config::parse_duration)
        .map_err(|e| Error::config(format!("archive_timeout of source {:?}: {e}", src.name)))?;
    let pace = physical::Pace {
        checkpoint: src.checkpoint.unwrap_or_default(),
        max_rate_kb: src
            .max_rate
            .as_deref()
            .map(crate::config::parse_max_rate)
            .transpose()
            .map_err(|e| Error::config(format!("max_rate of source {:?}: {e}", src.name)))?,
    };
    let mut process = physical::BaseBackup::start(
        conn,
        db,
        (facts.archiving, facts.standby),
        &label,
        pace,
        std::time::Duration::from_secs(archive_timeout),
    )?;
    let wal_included = process.wal_included;
    let stream = process.take_stream().expect("fresh process has its stream");
    let (snap, (bytes, stream_hash, tar)) = archive_stream(
        repo,
        &path,
        stream,
        move || process.finish(),
        |o| o.0,
        "pg_basebackup",
    )
    .map_err(|e| with_wal_space(repo, e, facts.wal_segment_size))?;
    let label_text = tar.backup_label.clone().unwrap_or_default();
    let (timeline, start_lsn, stop_lsn) = tar.wal_range.expect("checked by finish");
    // the backup is kept only if it can be restored: its WAL archived here, on the latest
    // timeline, no tablespace made while it ran
    let restorable = crate::wal::WalStore::new(repo, &src.name).and_then(|store| {
        if !wal_included {
            wal_reaches_store(
                &store,
                src,
                timeline,
                stop_lsn,
                &facts,
                std::time::Duration::from_secs(archive_timeout),
                archive_command,
            )?;
        }
        on_newest_timeline(&store, src, timeline, stop_lsn)?;
        physical::no_tablespaces_now(conn, db)
    });
    if let Err(e) = restorable {
        repo.discard(&snap)?;
        return Err(e);
    }
    let timeline = physical::label_start(&label_text).map_or(timeline, |(t, _)| t);
    let summary = snap.summary.clone().unwrap_or_default();
    let meta = BackupMeta {
        lifeboat: crate::repository::meta::META_VERSION,
        source: src.name.clone(),
        kind: BackupKind::Physical,
        database: None,
        server_version_num: facts.server_version_num,
        client_version,
        path: path.display().to_string(),
        started_at,
        finished_at: jiff::Timestamp::now(),
        duration_secs: clock.elapsed().as_secs_f64(),
        logical_bytes: bytes,
        new_bytes: summary.data_added,
        stored_bytes: summary.data_added_packed,
        stream_hash,
        truth: None,
        recovery_point: Some(recovery_point.to_string()),
        physical: Some(PhysicalMeta {
            timeline,
            start_lsn,
            stop_lsn,
            system_identifier: facts.system_identifier,
            wal_segment_size: facts.wal_segment_size,
            wal_included,
            backup_label: label_text,
            files: tar.files,
            config_file: facts.config_file.clone(),
            settings: facts.settings.clone(),
            config_not_held: physical::CONFIG_FILES
                .iter()
                .filter(|f| !tar.config_held.iter().any(|h| h == *f))
                .map(|f| (*f).to_string())
                .collect(),
            superuser: facts.superuser.clone(),
            database: Some(facts.database.clone()),
        }),
        written_by: Some(crate::VERSION.to_string()),
        data_as_of: None,
    };
    confirm(repo, &snap, &meta, clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_an_archive_command_pushes_as_is_read() {
        for (cmd, source) in [
            (
                "/usr/bin/lifeboat --config /etc/l.toml wal-push --source c1 %p",
                Some("c1"),
            ),
            ("lifeboat wal-push --source='db two' %p", Some("db two")),
            ("lifeboat -s c2 wal-push %p", Some("c2")),
            ("lifeboat wal-push %p", None),
            ("wal-g wal-push %p", None),
            ("cp %p /archive/%f", None),
        ] {
            assert_eq!(archive_source(cmd).as_deref(), source, "{cmd}");
        }
    }

    #[test]
    fn the_program_an_archive_command_runs_is_found_past_env() {
        let p = |c: &str| archive_program(c).map(|p| p.display().to_string());
        assert_eq!(
            p("/usr/local/bin/lifeboat --config /etc/lifeboat/lifeboat.toml wal-push --source app %p").as_deref(),
            Some("/usr/local/bin/lifeboat")
        );
        assert_eq!(
            p("env LIFEBOAT_STATE_DIR=/x '/opt/lb new/lifeboat' wal-push %p").as_deref(),
            Some("/opt/lb new/lifeboat")
        );
        assert_eq!(
            p("'/opt/lifeboat' wal-push %p").as_deref(),
            Some("/opt/lifeboat")
        );
        assert_eq!(
            p(r#"/opt/lb\ 2/lifeboat "wal-push" %p"#).as_deref(),
            Some("/opt/lb 2/lifeboat")
        );
        assert_eq!(p("lifeboat wal-push %p"), None);
        assert_eq!(p("cp %p /archive/%f"), None);
        // another archiver's wal-push, and wrappers, are not lifeboat
        assert_eq!(p("/usr/local/bin/wal-g wal-push %p"), None);
        assert_eq!(
            p("/usr/bin/timeout 60 /usr/local/bin/lifeboat wal-push %p").as_deref(),
            Some("/usr/local/bin/lifeboat")
        );
    }

    #[test]
    fn settings_that_rule_out_physical_backups_are_named() {
        let minimal = wal_settings_problem("minimal", "10").expect("minimal");
        assert!(
            minimal.problem.contains("wal_level is minimal")
                && minimal.hint.contains("wal_level = replica")
        );
        let senders = wal_settings_problem("replica", "0").expect("no senders");
        assert!(senders.problem.contains("max_wal_senders is 0"));
        assert!(wal_settings_problem("replica", "10").is_none());
        assert!(wal_settings_problem("logical", "4").is_none());
    }

    #[test]
    fn a_zero_archive_timeout_names_the_cluster_s_own_segment_size() {
        let config = crate::config::Config::parse(
            "[[source]]\nname = \"c64\"\nkind = \"postgres\"\ndsn = \"dbname=x\"\n",
            "c",
        )
        .expect("config");
        let src = &config.sources[0];
        let p = archive_timeout_problem(src, "on", ("0", 64 << 20)).expect("a note");
        assert!(
            p.problem.contains("when 64.0 MiB of WAL fill it"),
            "{}",
            p.problem
        );
        assert!(archive_timeout_problem(src, "off", ("0", 64 << 20)).is_none());
    }
}
