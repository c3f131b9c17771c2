//! `drill`: prove a backup restores. Restore it into a throw-away cluster, compare every
//! table with the backup-time truth, run the user's SQL assertions and hook commands, time
//! every phase, measure the achieved RTO and RPO against the source's objectives, tear
//! everything down (also on failure), and keep the evidence.
//!
//! The production database is never touched: the only connection to it is an optional,
//! read-only size query used to extrapolate the restore time.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    config::{parse_duration, SourceConfig},
    error::{Error, ErrorKind, Result},
    ops::{
        list::{list, ListFilter},
        restore::{apply_globals, fetch, globals_for},
    },
    repository::{Repo, SnapshotInfo},
    sources::postgres::{
        cluster::Cluster,
        compare::{compare, ident, literal},
        conn::{PgBin, PgConn, Server},
        logical::BackupKind,
    },
};

/// Which backup a drill restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The newest logical backup.
    Latest,
    /// A random logical backup (the seeds' monthly "random backup" test).
    Random,
    /// A given snapshot id.
    Id(String),
}

/// How to drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillOptions {
    /// Which backup.
    pub pick: Pick,
    /// Extra SQL assertions (added to the source's `drill.checks`).
    pub checks: Vec<String>,
    /// Shell commands run against the restored database after its data was compared with
    /// the backup (migrations, an application smoke test), before the SQL assertions;
    /// added to the source's `drill.hooks`. They get `LIFEBOAT_DRILL_CONNINFO` and `PG*`
    /// variables.
    pub hooks: Vec<String>,
    /// Shell commands run against the restored copy before its data is compared with the
    /// backup (added to the source's `drill.hooks_before_checks`): what they change fails
    /// the drill.
    #[serde(default)]
    pub hooks_before_checks: Vec<String>,
    /// `Pick::Latest` and `Pick::Random` choose among the backups finished at or after
    /// this time.
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// ... and at or before this one.
    #[serde(default)]
    pub until: Option<Timestamp>,
    /// pg_restore jobs and parallel table checks.
    pub jobs: u32,
    /// Also write the report files here.
    pub report_dir: Option<PathBuf>,
    /// Logical (restore a dump) or physical (a base backup plus WAL replay).
    #[serde(default = "logical")]
    pub kind: BackupKind,
    /// Physical drills: recover to this time instead of the end of the archive.
    #[serde(default)]
    pub target_time: Option<Timestamp>,
    /// Physical drills: the restore_command the restored server runs (`lifeboat wal-fetch`
    /// for this source; the CLI fills it in).
    #[serde(default)]
    pub restore_command: Option<String>,
    /// Logical drills of a source with several databases: which one (each is its own dump);
    /// physical drills: the database the assertions and hooks run in.
    #[serde(default)]
    pub database: Option<String>,
    /// Where the throw-away cluster and the fetched backup go (it needs room for the
    /// restored database); `None`: `LIFEBOAT_SCRATCH_DIR`, else the system temp directory.
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
}

const fn logical() -> BackupKind {
    BackupKind::Logical
}

impl Default for DrillOptions {
    fn default() -> Self {
        Self {
            pick: Pick::Latest,
            checks: Vec::new(),
            hooks: Vec::new(),
            hooks_before_checks: Vec::new(),
            since: None,
            until: None,
            jobs: 2,
            report_dir: None,
            scratch_dir: None,
            kind: BackupKind::Logical,
            target_time: None,
            restore_command: None,
            database: None,
        }
    }
}

/// One timed phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    /// Name (`cluster`, `fetch`, `restore`, `hooks`, `checks`, `teardown`).
    pub name: String,
    /// Seconds from the drill's start to the phase's start.
    pub start_secs: f64,
    /// Duration in seconds.
    pub secs: f64,
}

/// One check and its verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// Numbers or the failure.
    pub detail: String,
}

/// One table of a logical drill compared with the backup-time truth, in numbers (the same
/// verdict as its `table …` [`Check`], for metrics without reading text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableResult {
    /// `schema.table`, quoted as needed.
    pub table: String,
    /// Rows in the restored copy.
    pub rows: u64,
    /// Rows the backup recorded.
    pub expected_rows: u64,
    /// The restored rows hash to what the backup recorded.
    pub hash_matches: bool,
}

/// An objective compared with what the drill achieved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Objective {
    /// Achieved, in seconds.
    pub achieved_secs: f64,
    /// Objective, in seconds (none configured: `None`).
    pub objective_secs: Option<f64>,
    /// Met (true when no objective is configured).
    pub met: bool,
    /// Objective minus achieved, in seconds (negative: missed by that much); `None`
    /// without an objective, or when nothing was achieved (`not_achieved`).
    pub margin_secs: Option<f64>,
    /// The restore did not complete, so nothing was achieved: the time measured is that of
    /// a failure (`met` is false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_achieved: bool,
}

impl Objective {
    pub(crate) fn new(achieved_secs: f64, objective: Option<&str>) -> Self {
        let objective_secs = objective
            .and_then(|o| parse_duration(o).ok())
            .map(|s| s as f64);
        Self {
            achieved_secs,
            objective_secs,
            met: objective_secs.is_none_or(|o| achieved_secs <= o),
            margin_secs: objective_secs.map(|o| o - achieved_secs),
            not_achieved: false,
        }
    }

    /// `met, 1.9 h to spare` or `MISSED by 3.0 s`, durations written by `secs`; `None`
    /// without an objective.
    pub fn verdict(&self, secs: impl Fn(f64) -> String) -> Option<String> {
        if self.not_achieved {
            return Some("NOT ACHIEVED: the restore did not complete".into());
        }
        let m = self.margin_secs?;
        Some(if self.met {
            format!("met, {} to spare", secs(m))
        } else {
            format!("MISSED by {}", secs(-m))
        })
    }
}

/// What a drill restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restored {
    /// One database, the report's `database` (a logical drill).
    #[default]
    Database,
    /// Every database of the cluster (a physical drill).
    WholeCluster,
}

/// The newest recoverable point a drill's RPO is measured to: what a disaster at the
/// drill's start would have fallen back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpoPoint {
    /// When that point was made (a backup's end, a WAL segment's archiving).
    pub at: Timestamp,
    /// Logical drills: the newest backup of the drilled database, of the drilled kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Physical drills: the end of the archived WAL the drilled backup reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// The point for people (`the newest logical backup of database "app", 46b788de`).
    pub what: String,
}

/// The evidence of one drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    /// Drill id (time-based).
    pub id: String,
    /// Source.
    pub source: String,
    /// The backup restored.
    pub backup_id: String,
    /// Logical drills: the database restored. Physical drills restore the whole cluster
    /// (see `restored`): the database hooks and assertions ran in.
    pub database: String,
    /// What was restored: one database (logical) or the whole cluster (physical).
    #[serde(default)]
    pub restored: Restored,
    /// When the backup finished.
    pub backup_finished_at: Timestamp,
    /// Dump size.
    pub backup_bytes: u64,
    /// When the drill started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// PostgreSQL version of the throw-away cluster.
    pub server_version: String,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// Checks in order.
    pub checks: Vec<Check>,
    /// Logical drills: every table compared, in numbers (absent in reports stored before
    /// lifeboat kept them, and in physical drills, which compare no table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableResult>,
    /// Achieved RTO: fetch + restore + checks + hooks + assertions on this path.
    pub rto: Objective,
    /// Achieved RPO: from the newest recoverable point (logical: the newest backup of the
    /// drilled database, whichever backup was drilled; physical: the newest archived WAL)
    /// to the drill's start.
    pub rpo: Objective,
    /// The point the RPO was measured to (none in reports stored before lifeboat kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_point: Option<RpoPoint>,
    /// Restore time extrapolated to the production database's current size, if known.
    pub extrapolated_rto_secs: Option<f64>,
    /// Production database size used for the extrapolation.
    pub production_bytes: Option<u64>,
    /// Size of the restored database.
    pub restored_bytes: Option<u64>,
    /// The extrapolation misses the RTO objective.
    pub extrapolation_misses_rto: bool,
    /// Every check passed and every objective was met.
    pub passed: bool,
    /// Hash of the audit log's newest entry (this drill's), to check the log against later.
    pub audit_head: Option<String>,
    /// Why the report could not be stored in the repository, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_error: Option<String>,
    /// Kind of backup drilled.
    #[serde(default = "logical")]
    pub kind: BackupKind,
    /// Physical drills: the recovery target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Physical drills: where recovery ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<super::recover::ReachedPoint>,
    /// A logical drill on the configured scratch server (`drill.server`): the restored
    /// database's connection there (no password). `None`: a throw-away cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_server: Option<String>,
    /// What this drill did not check, and why (a scratch server gets no roles; a physical
    /// drill without assertions reads no table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
    /// The lifeboat that ran the drill ([`crate::VERSION`]; absent in reports made before
    /// lifeboat recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}

impl DrillReport {
    /// The failed checks, one per line.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if self.rto.not_achieved {
            out.push("RTO and RPO not achieved: the restore did not complete".into());
            return out;
        }
        if !self.rto.met {
            out.push(format!(
                "RTO missed by {:.1}s",
                -self.rto.margin_secs.unwrap_or(0.0)
            ));
        }
        if !self.rpo.met {
            out.push(format!(
                "RPO missed by {:.1}s",
                -self.rpo.margin_secs.unwrap_or(0.0)
            ));
        }
        out
    }
}

/// Each database is its own dump: drilling one of several and calling the source proven
/// would hide the others.
fn several_databases(src: &SourceConfig, logical: &[SnapshotInfo]) -> Option<Error> {
    let dbs = super::list::databases_in(logical);
    (dbs.len() > 1).then(|| {
        Error::config(format!(
            "source {:?} backs up several databases ({}): a drill restores one",
            src.name,
            dbs.join(", ")
        ))
        .hint("give --database NAME, and drill each database, or --pick random, which picks a database at random too")
    })
}

fn pick_backup(
    repo: &Repo,
    src: &SourceConfig,
    opts: &DrillOptions,
) -> Result<(SnapshotInfo, Vec<SnapshotInfo>)> {
    let (pick, database) = (&opts.pick, opts.database.as_deref());
    let mut all = list(
        repo,
        &ListFilter {
            source: Some(src.name.clone()),
            kind: Some(BackupKind::Logical),
            ..ListFilter::default()
        },
    )?;
    if let Some(db) = database {
        all.retain(|b| b.meta.database.as_deref() == Some(db));
        if all.is_empty() && !matches!(pick, Pick::Id(_)) {
            return Err(Error::not_found(format!(
                "source {:?} has no logical backup of database {db:?}",
                src.name
            ))
            .hint("`lifeboat list --kind logical` shows the databases backed up"));
        }
    } else if matches!(pick, Pick::Random) && super::list::databases_in(&all).len() > 1 {
        // the seeds' "restore a random backup": a random database first, each as likely
        // as the next however often it is backed up, then one of its backups
        let candidates = in_window(
            crate::repository::audit::logged_only(repo, all.clone())?,
            opts,
        );
        let dbs: Vec<String> = super::list::databases_in(&candidates)
            .into_iter()
            .map(str::to_string)
            .collect();
        // a database without tables (`postgres` under `databases = ["*"]`) proves
        // nothing when one with data could have been drilled
        let has_tables = |db: &str| {
            candidates
                .iter()
                .rev()
                .find(|b| b.meta.database.as_deref() == Some(db))
                .and_then(|b| b.meta.truth.as_ref())
                .is_some_and(|t| !t.tables.is_empty())
        };
        let with_data: Vec<String> = dbs.iter().filter(|d| has_tables(d)).cloned().collect();
        let dbs = if with_data.is_empty() { dbs } else { with_data };
        use rand::seq::IndexedRandom;
        if let Some(db) = dbs.choose(&mut rand::rng()) {
            all.retain(|b| b.meta.database.as_deref() == Some(db.as_str()));
        }
    } else if !matches!(pick, Pick::Id(_)) {
        if let Some(e) = several_databases(src, &all) {
            return Err(e);
        }
    }
    // `all` stays whole: the RPO is measured to the newest backup, whichever is drilled;
    // a backup written outside lifeboat is not picked
    let window = in_window(
        crate::repository::audit::logged_only(repo, all.clone())?,
        opts,
    );
    let missing = || {
        let e = no_backup(src);
        let hint = if opts.since.is_some() || opts.until.is_some() {
            "widen --since/--until (`lifeboat list --kind logical` shows when the backups were taken)".to_string()
        } else {
            e.hint_text().unwrap_or_default().to_string()
        };
        Error::not_found(format!("{}{}", e.message(), window_text(opts))).hint(hint)
    };
    let chosen = match &opts.pick {
        Pick::Id(id) => by_id(repo, src, id, BackupKind::Logical, database)?,
        Pick::Latest => window.last().cloned().ok_or_else(missing)?,
        Pick::Random => {
            use rand::seq::IndexedRandom;
            window
                .choose(&mut rand::rng())
                .cloned()
                .ok_or_else(missing)?
        }
    };
    Ok((chosen, all))
}

/// The backups of `all` finished within `opts.since` .. `opts.until`.
pub(crate) fn in_window(all: Vec<SnapshotInfo>, opts: &DrillOptions) -> Vec<SnapshotInfo> {
    all.into_iter()
        .filter(|b| {
            opts.since.is_none_or(|t| b.meta.finished_at >= t)
                && opts.until.is_none_or(|t| b.meta.finished_at <= t)
        })
        .collect()
}

/// ` finished between … and …` for an error, when a window was given.
pub(crate) fn window_text(opts: &DrillOptions) -> String {
    let t = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    match (opts.since, opts.until) {
        (None, None) => String::new(),
        (Some(a), None) => format!(" finished since {}", t(a)),
        (None, Some(b)) => format!(" finished by {}", t(b)),
        (Some(a), Some(b)) => format!(" finished between {} and {}", t(a), t(b)),
    }
}

/// The refusal of `--pick ID` naming a backup of `kind` for a drill of `drill_kind`, with
/// the flag that makes it work.
pub(crate) fn wrong_kind(
    short_id: &str,
    kind: BackupKind,
    drill_kind: BackupKind,
    source: &str,
) -> Error {
    let e = Error::config(format!(
        "backup {short_id} is a {kind} backup, not a {drill_kind} one"
    ));
    match (kind, drill_kind) {
        (BackupKind::Physical, _) => {
            e.hint(format!("add --kind physical to drill it (a base backup restored with WAL replay): `lifeboat drill --source {source} --kind physical --pick {short_id}`"))
        }
        (BackupKind::Logical, _) => e.hint(format!(
            "drop --kind physical to drill it: `lifeboat drill --source {source} --pick {short_id}`"
        )),
        // schema-only and globals backups hold no rows to restore and check
        (_, BackupKind::Physical) => {
            e.hint("pick a physical backup: `lifeboat list --kind physical`")
        }
        _ => e.hint("pick a logical backup (`lifeboat list --kind logical`), or a physical one with --kind physical; schema-only and globals backups hold no rows to check"),
    }
}

fn no_backup(src: &SourceConfig) -> Error {
    Error::not_found(format!(
        "source {:?} has no logical backup to drill",
        src.name
    ))
    .hint(format!(
        "take one with `lifeboat backup --source {} --kind logical`",
        src.name
    ))
}

/// Settings of a logical drill's throw-away cluster: those a bulk restore should run with
/// (the runbook recommends them for a restore target too). No WAL for index builds, no
/// autovacuum and few checkpoints competing with the load and the checks.
pub(crate) const BULK_LOAD: &str = "wal_level = minimal
max_wal_senders = 0
autovacuum = off
max_wal_size = 8GB
checkpoint_timeout = 30min
maintenance_work_mem = 256MB";

/// A lock table for the throw-away cluster that holds every table, index, sequence and
/// large object of the backup in one transaction (a migration hook may take them all, as
/// production allows): PostgreSQL's default fits about 6 400 locks, which a database of a
/// few thousand tables passes. The cluster runs with 50 connections.
fn lock_setting(truth: &crate::sources::postgres::truth::Truth) -> String {
    let objects =
        2 * truth.tables.len() as u64 + truth.sequences.len() as u64 + truth.large_objects.count;
    let per = objects.div_ceil(50).max(64);
    format!("max_locks_per_transaction = {per}")
}

/// Where a logical drill restores: its own throw-away cluster, or a new database on a
/// configured scratch server.
enum Target {
    Cluster(Cluster),
    Server(PgConn),
}

impl Target {
    fn start(
        src: &SourceConfig,
        bin: &PgBin,
        truth: &crate::sources::postgres::truth::Truth,
        (base, jobs): (Option<&std::path::Path>, u32),
        encoding: &str,
    ) -> Result<Self> {
        match &src.drill.server {
            Some(dsn) => {
                let conn = scratch_server(src, dsn, bin)?;
                // a shared server without the connections the restore needs: the drill
                // cannot be carried out, which proves nothing about the backup
                if let Some(short) = crate::ops::restore::connections_short(&conn, jobs)? {
                    return Err(Error::new(
                        crate::ErrorKind::Unavailable,
                        format!(
                            "drill.server of source {:?}: a drill with {jobs} job(s) needs {short}",
                            src.name
                        ),
                    )
                    .hint(if jobs > 1 {
                        "drill when the scratch server has connections to spare, with fewer --jobs, or raise the drill role's CONNECTION LIMIT there"
                    } else {
                        "drill when the scratch server has connections to spare, or raise the drill role's CONNECTION LIMIT there (a drill needs at least 2)"
                    }));
                }
                Ok(Self::Server(conn))
            }
            None => Ok(Self::Cluster(Cluster::start_encoded(
                bin,
                &format!(
                    "{BULK_LOAD}\n{}\n{}\nmax_logical_replication_workers = 0",
                    lock_setting(truth),
                    crate::sources::postgres::cluster::NO_TCP
                ),
                base,
                encoding,
            )?)),
        }
    }

    fn conn(&self) -> PgConn {
        match self {
            Self::Cluster(c) => c.conn(),
            Self::Server(c) => c.clone(),
        }
    }

    fn teardown(&mut self, db: &str) {
        match self {
            Self::Cluster(c) => c.discard(),
            Self::Server(c) => {
                if let Err(e) = crate::sources::postgres::cluster::drop_copy(c, db, true) {
                    crate::sources::postgres::cluster::note(format!(
                        "{db} on the drill server could not be dropped: {}; drop it there",
                        crate::error::headline(&e.to_string())
                    ));
                }
                // dropped: the interrupt handler has nothing left to drop
                crate::sources::postgres::cluster::unregister_drop(db);
            }
        }
    }
}

/// Tests `drill.server` of `src` as a drill reaches it: connects, and refuses the
/// production cluster. `None` without a drill server. For `config check`, so a scratch
/// server that refuses lifeboat shows before the first drill does.
///
/// # Errors
///
/// The connection's error (unreachable, refused credentials), or
/// [`crate::ErrorKind::Config`] when it is production.
pub fn check_scratch_server(src: &SourceConfig) -> Result<Option<String>> {
    let Some(dsn) = &src.drill.server else {
        return Ok(None);
    };
    let bin = PgBin::new(src.pg_bin_dir.as_deref());
    let conn = scratch_server(src, dsn, &bin)?;
    let version = conn.server_version_num(conn.maintenance_db())?;
    if let Some(short) = crate::ops::restore::connections_short(&conn, 1)? {
        return Err(Error::new(
            crate::ErrorKind::Unavailable,
            format!(
                "drills on drill.server of source {:?} cannot run now: one job needs {short}",
                src.name
            ),
        )
        .hint("raise the drill role's CONNECTION LIMIT there, or free connections on the scratch server"));
    }
    let needs = scratch_needs(src, &conn);
    if !needs.is_empty() {
        return Err(Error::config(format!(
            "drills on drill.server of source {:?} will fail: {}",
            src.name,
            needs.join("; ")
        ))
        .hint("a drill there restores without production's roles (they are cluster-wide): give its role what is named, on the scratch server, or drop drill.server to drill in a throw-away cluster, which gets the roles"));
    }
    Ok(Some(format!(
        "connected: server {}, not the production cluster",
        version / 10_000
    )))
}

/// What a drill on the scratch server `scratch` would lack for `src`'s databases, which a
/// restore there gets without production's roles: to bypass row-level security its tables
/// force (the checks read every row), and the roles their policies name (a policy `TO
/// app` is restored only where `app` exists). Empty when production cannot be asked.
fn scratch_needs(src: &SourceConfig, scratch: &PgConn) -> Vec<String> {
    let Ok(source) = PgConn::from_source(src) else {
        return Vec::new();
    };
    let Ok(databases) = crate::ops::backup::databases_of(src, &source) else {
        return Vec::new();
    };
    let me = scratch
        .query(
            scratch.maintenance_db(),
            "select (rolsuper or rolbypassrls)::text || '|' || quote_ident(current_user) from pg_roles where rolname = current_user",
        )
        .unwrap_or_default();
    let (bypasses, role) = me
        .trim()
        .split_once('|')
        .map_or((true, String::new()), |(b, r)| (b == "true", r.to_string()));
    let roles_there: std::collections::HashSet<String> = scratch
        .query(scratch.maintenance_db(), "select rolname from pg_roles")
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut needs = Vec::new();
    for db in databases {
        let Ok(row) = source.query(
            &db,
            "select (select count(*) from pg_class where relforcerowsecurity) || '|' || \
             coalesce((select string_agg(distinct r, ',' order by r) from pg_policies, unnest(roles) r where r <> 'public'), '')",
        ) else {
            continue;
        };
        let (forced, policy_roles) = row.trim().split_once('|').unwrap_or(("0", ""));
        if forced != "0" && !bypasses {
            needs.push(format!(
                "{forced} table(s) of database {db:?} force row-level security, which role {role} may not bypass there (ALTER ROLE {role} BYPASSRLS)"
            ));
        }
        let missing: Vec<&str> = policy_roles
            .split(',')
            .filter(|r| !r.is_empty() && !roles_there.contains(*r))
            .collect();
        if !missing.is_empty() {
            needs.push(format!(
                "policies of database {db:?} name role(s) the scratch server lacks: {} (CREATE ROLE ... NOLOGIN there)",
                missing.join(", ")
            ));
        }
    }
    needs
}

/// Connects to the scratch server `dsn` for a drill of `src`: never production.
fn scratch_server(src: &SourceConfig, dsn: &str, bin: &PgBin) -> Result<PgConn> {
    // its errors name drill.server, and a refused login points at its own DSN
    let conn = PgConn::from_dsn(dsn, bin.clone())
        .map_err(|e| e.hint("fix drill.server in the configuration"))?
        .server(Server::DrillServer(src.name.clone()));
    // never drill on production: same system identifier = same cluster
    // production's address from its DSN alone: its password may not be resolvable
    // on the host that runs drills, which is no reason to refuse one
    let source = PgConn::from_source(src)
        .or_else(|e| PgConn::from_dsn(src.dsn.as_deref().ok_or(e)?, bin.clone()))?;
    // a scratch server at production's address whose identity cannot settle it
    let at_production = |why: &str, e: &Error, hint: &str| {
        Error::config(format!(
            "drill.server of source {:?} is at the production server's address{why} ({})",
            src.name,
            e.to_string().lines().next().unwrap_or_default()
        ))
        .hint(hint.to_string())
    };
    let scratch_id = match conn.system_identifier(&[]) {
        Ok(id) => id,
        // refused there: at production's address, that is said first (a hint to grant
        // the drill role more would be one to grant it on production)
        Err(e) if same_endpoint(&source, &conn) => {
            return Err(at_production(
                ", and refused lifeboat",
                &e,
                "point drill.server at a separate scratch server, or remove it to use a throw-away cluster",
            ));
        }
        Err(e) => return Err(e),
    };
    match source.system_identifier(&src.named_databases()) {
        Ok(id) if id == scratch_id => {
            return Err(Error::config(format!(
                "drill.server of source {:?} is the production cluster itself",
                src.name
            ))
            .hint("point drill.server at a separate scratch server, or remove it to use a throw-away cluster"));
        }
        Ok(_) => {}
        // production does not answer, so its identity cannot be compared: at least the
        // scratch server must not be where the source points
        Err(e) if same_endpoint(&source, &conn) => {
            return Err(at_production(
                ", and production's system identifier could not be read to tell them apart",
                &e,
                "point drill.server at a separate scratch server, or drill when production answers",
            ));
        }
        Err(_) => {}
    }
    // a drill restores into a new database there: without the right to create one it
    // would fail only after fetching the whole backup
    let may = conn.query(
        conn.maintenance_db(),
        "select (rolsuper or rolcreatedb)::text || '|' || current_user from pg_roles where rolname = current_user",
    )?;
    if let Some(("false", role)) = may.split_once('|') {
        return Err(Error::config(format!(
            "drill.server of source {:?} logs in as role {role:?}, which may not create databases: a drill restores into a new database there",
            src.name
        ))
        .hint(format!(
            "on the scratch server: ALTER ROLE {} CREATEDB; or use a role that may",
            ident(role)
        )));
    }
    Ok(conn)
}

/// Eight hex digits naming where this process's pid means something: the machine, this
/// boot of it and the pid namespace (cloned hosts share a hostname, containers on one host
/// a machine id): only there does a pid that is gone prove a drill was killed.
fn host_tag() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|l| l.display().to_string())
        .unwrap_or_default();
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let me = format!(
        "{}|{}|{pid_ns}|{host}",
        read("/etc/machine-id").trim(),
        read("/proc/sys/kernel/random/boot_id").trim()
    );
    format!("{:08x}", xxhash_rust::xxh3::xxh3_64(me.as_bytes()) as u32)
}

/// Drops the `lifeboat_drill_*` databases on the scratch server that a drill from this
/// host left when it was killed outright (its process is gone), and names the others
/// older than a day that no drill is using (another host's, or from before the names
/// said whose): a full copy of production left there is a finding, not clutter.
fn sweep_scratch_server(conn: &PgConn, mine: &str) {
    let Ok(rows) = conn.query(
        conn.maintenance_db(),
        "select datname || '|' || (pg_get_userbyid(datdba) = current_user) || '|' || \
         (select count(*) from pg_stat_activity a where a.datname = d.datname) \
         from pg_database d where datname like 'lifeboat\\_drill\\_%'",
    ) else {
        return;
    };
    let cutoff = Timestamp::now() - jiff::SignedDuration::from_hours(24);
    for row in rows.lines() {
        let Some((db, sessions)) = row.rsplit_once('|') else {
            continue;
        };
        let Some((db, ours)) = db.rsplit_once('|') else {
            continue;
        };
        let parts: Vec<&str> = db.split('_').collect();
        // lifeboat, drill, time, host, pid, random
        let (time, host, pid) = match parts.as_slice() {
            ["lifeboat", "drill", t, h, p, _] => (*t, Some(*h), p.parse::<i32>().ok()),
            ["lifeboat", "drill", t, _] => (*t, None, None),
            _ => continue,
        };
        let dead = |pid: i32| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .is_err_and(|e| e == nix::errno::Errno::ESRCH)
        };
        // no session on it either: a drill whose process is gone uses it no more (and a
        // plain DROP refuses one that is in use after all)
        // and still the drill role's: a copy someone took over (ALTER DATABASE ... OWNER
        // TO) to look into is theirs now
        if host == Some(mine) && pid.is_some_and(dead) && sessions.trim() == "0" && ours == "true" {
            let dropped = crate::sources::postgres::cluster::drop_copy(conn, db, false);
            crate::sources::postgres::cluster::note(match dropped {
                Ok(_) => format!("dropped {db} on the drill server, left by a drill from this host that was killed"),
                Err(e) => format!("{db} on the drill server was left by a drill from this host that was killed, and could not be dropped: {}", crate::error::headline(&e.to_string())),
            });
            continue;
        }
        let old = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", time)
            .ok()
            .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .is_some_and(|t| t.timestamp() < cutoff);
        if old && sessions.trim() == "0" {
            crate::sources::postgres::cluster::note(format!(
                "{db} on the drill server is more than a day old and unused: a copy of production left by a drill that was killed (on another host, before this host restarted, or by an older lifeboat), or taken over by someone; drop it there when nobody needs it"
            ));
        }
    }
}

pub(crate) struct Clock {
    pub(crate) start: Instant,
    pub(crate) phases: Vec<Phase>,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Records a phase measured elsewhere (it ended now).
    pub(crate) fn add(&mut self, name: &str, secs: f64) {
        let end = self.start.elapsed().as_secs_f64();
        self.phases.push(Phase {
            name: name.to_string(),
            start_secs: (end - secs).max(0.0),
            secs,
        });
    }

    /// Records a phase that ran from `begin` to `end`, beside others.
    pub(crate) fn add_span(&mut self, name: &str, begin: Instant, end: Instant) {
        self.phases.push(Phase {
            name: name.to_string(),
            start_secs: begin.saturating_duration_since(self.start).as_secs_f64(),
            secs: end.saturating_duration_since(begin).as_secs_f64(),
        });
    }

    pub(crate) fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let begin = Instant::now();
        let doing = crate::status::doing(phase_words(name));
        let out = f();
        drop(doing);
        self.phases.push(Phase {
            name: name.to_string(),
            start_secs: (begin - self.start).as_secs_f64(),
            secs: begin.elapsed().as_secs_f64(),
        });
        out
    }

    /// Wall time from the first to the end of the last of the named phases (they may overlap).
    pub(crate) fn span_of(&self, names: &[&str]) -> f64 {
        let picked = self
            .phases
            .iter()
            .filter(|p| names.contains(&p.name.as_str()));
        let first = picked
            .clone()
            .map(|p| p.start_secs)
            .fold(f64::INFINITY, f64::min);
        let last = picked
            .map(|p| p.start_secs + p.secs)
            .fold(0.0_f64, f64::max);
        if first.is_finite() {
            (last - first).max(0.0)
        } else {
            0.0
        }
    }

    pub(crate) fn secs_of(&self, names: &[&str]) -> f64 {
        self.phases
            .iter()
            .filter(|p| names.contains(&p.name.as_str()))
            .map(|p| p.secs)
            .sum()
    }
}

/// Whether two connections name the same server (host or socket directory, and port).
fn same_endpoint(a: &PgConn, b: &PgConn) -> bool {
    let port = |c: &PgConn| c.param("port").unwrap_or("5432").to_string();
    if port(a) != port(b) {
        return false;
    }
    // one server under several names: `localhost` and 127.0.0.1, a host name and its
    // address, a socket directory and the loopback address; any place in common counts as
    // the same server (this decides only when production cannot be asked who it is, and
    // then refusing a scratch server on this host is the safe side)
    let places = |c: &PgConn| -> Vec<String> {
        let host = c
            .param("hostaddr")
            .or_else(|| c.param("host"))
            .unwrap_or("")
            .to_string();
        if host.is_empty() || host.starts_with('/') || host.starts_with('@') {
            return vec!["(this host)".to_string(), host];
        }
        let mut out = vec![host.clone()];
        if let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0)) {
            for a in addrs {
                if a.ip().is_loopback() {
                    out.push("(this host)".to_string());
                }
                out.push(a.ip().to_string());
            }
        }
        out
    };
    let theirs = places(b);
    places(a).iter().any(|p| theirs.contains(p))
}

/// `b`, when it is a backup of `src`: a drill judges a backup by its source's objectives
/// and files the evidence under that source.
pub(crate) fn of_source(b: SnapshotInfo, src: &SourceConfig) -> Result<SnapshotInfo> {
    if b.meta.source == src.name {
        return Ok(b);
    }
    Err(Error::config(format!(
        "backup {} is a backup of source {:?}, not of {:?}",
        b.short_id(),
        b.meta.source,
        src.name
    ))
    .hint(format!("drill it with --source {}", b.meta.source)))
}

/// Runs a drill of `src`'s backups. Returns the report whether the drill passed or not;
/// an `Err` means the drill could not be carried out at all.
///
/// # Errors
///
/// When no backup exists, the throw-away cluster cannot start, or the backup cannot be
/// fetched (a damaged backup is a failed *check*, reported in the report).
pub fn drill(repo: &Repo, src: &SourceConfig, opts: &DrillOptions) -> Result<DrillReport> {
    if let Some(e) = usage_mistake(repo, src, opts) {
        return Err(e);
    }
    let result = carry_out(repo, src, opts);
    let interrupted = crate::sources::postgres::cluster::interrupted();
    if let (Err(e), false) = (&result, interrupted) {
        // a drill that could not even be carried out is evidence too (a finished one has
        // logged itself when it was sealed)
        let _ = crate::repository::audit::append(
            repo,
            "drill",
            false,
            &format!(
                "{} drill of source {}: not carried out: {e}",
                opts.kind, src.name
            ),
        );
    }
    result.map_err(Error::or_interrupted)
}

/// A drill whose own disk filled (the dump it stages, the throw-away cluster's files, its
/// WAL replay) proved nothing about the backup, as when initdb finds that disk full: it
/// was not carried out, and says where it ran out, rather than reporting a failed restore
/// of a backup that may well be intact. `None` for any other failure.
pub(super) fn out_of_space(e: &Error, place: &str, on_server: bool) -> Option<Error> {
    let text = crate::error::chain_text(e);
    // (the relcache init file is written at a server's first connection)
    if !(crate::error::says_disk_full(&text)
        || text.contains("could not write init file")
        || text.contains(super::recover::NO_ROOM))
    {
        return None;
    }
    Some(
        Error::unavailable(format!(
            "the drill ran out of disk space in {place}: {}",
            crate::error::one_line(e)
        ))
        .hint(if on_server {
            "free space on the scratch server (drill.server), or drill on this host without it; the backup itself was not judged (`lifeboat verify --read-data` checks it)"
        } else {
            "free space there, or point LIFEBOAT_SCRATCH_DIR (or --scratch-dir) at a disk with room for a restored copy of the database; the backup itself was not judged (`lifeboat verify --read-data` checks it)"
        }),
    )
}

/// A mistake on the command line, found before anything is attempted: a kind no drill
/// restores, `--pick` with an id that names no backup, or another source's, another
/// kind's or another database's backup, no `--database` for a source of several. Such a refusal is no failed drill, and the audit
/// log gets none; a drill that was due and could not run (no backup at all, a scratch
/// server that refuses) is logged by [`drill`].
fn usage_mistake(repo: &Repo, src: &SourceConfig, opts: &DrillOptions) -> Option<Error> {
    // a file's objectives were validated when it was read; a configuration built in code
    // was not, and an objective that is no duration would judge the drill against nothing
    for (key, value) in [
        ("rto", &src.objectives.rto),
        ("rpo", &src.objectives.rpo),
        ("logical_rpo", &src.objectives.logical_rpo),
    ] {
        if let Some(Err(e)) = value.as_deref().map(parse_duration) {
            return Some(
                Error::config(format!(
                    "objectives.{key} of source {:?}: {value:?} is not a duration: {e}",
                    src.name,
                    value = value.as_deref().unwrap_or_default()
                ))
                .hint("write a duration such as \"2h\", \"30m\" or \"1d\""),
            );
        }
    }
    // said now, not after an hour of restoring
    if let Some(e) = empty_command(src, opts).or_else(|| report_dir_unusable(opts)) {
        return Some(e);
    }
    if !matches!(opts.kind, BackupKind::Logical | BackupKind::Physical) {
        return Some(
            Error::config(format!(
                "a drill restores a logical or a physical backup, not a {} one",
                opts.kind
            ))
            .hint("--kind logical (the default) or --kind physical"),
        );
    }
    let Pick::Id(id) = &opts.pick else {
        // a random pick picks a database too (see `pick_backup`)
        if opts.kind != BackupKind::Logical
            || opts.database.is_some()
            || matches!(opts.pick, Pick::Random)
        {
            return None;
        }
        let logical = list(
            repo,
            &ListFilter {
                source: Some(src.name.clone()),
                kind: Some(BackupKind::Logical),
                ..ListFilter::default()
            },
        )
        .ok()?;
        return several_databases(src, &logical);
    };
    match by_id(repo, src, id, opts.kind, opts.database.as_deref()) {
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Config) => Some(e),
        // a repository that failed is the drill's own failure: it says so, and is logged
        _ => None,
    }
}

/// An empty assertion or hook (`--check ""`): it would fail the drill at its end.
fn empty_command(src: &SourceConfig, opts: &DrillOptions) -> Option<Error> {
    if src
        .drill
        .checks
        .iter()
        .chain(src.drill.database_checks.values().flatten())
        .chain(&opts.checks)
        .any(|c| c.trim().is_empty())
    {
        return Some(
            Error::config("an assertion is empty").hint(
                "give SQL that returns true, e.g. --check \"select count(*) > 0 from users\"",
            ),
        );
    }
    hooks_before(src, opts)
        .iter()
        .chain(&hooks_after(src, opts))
        .any(|h| h.trim().is_empty())
        .then(|| {
            Error::config("a hook is empty").hint("give the shell command to run, or leave it out")
        })
}

/// A `--report-dir` the report could not be written into (a file, a directory that
/// cannot be made): the drill would run to its end and then fail to keep its evidence.
fn report_dir_unusable(opts: &DrillOptions) -> Option<Error> {
    let dir = opts.report_dir.as_ref()?;
    if dir.exists() && !dir.is_dir() {
        return Some(
            Error::config(format!("--report-dir {} is not a directory", dir.display()))
                .hint("name a directory (it is created when missing)"),
        );
    }
    // the nearest existing ancestor must be a directory
    let mut up = dir.parent();
    while let Some(p) = up.filter(|p| !p.as_os_str().is_empty()) {
        if p.exists() {
            return (!p.is_dir()).then(|| {
                Error::config(format!(
                    "--report-dir {}: {} is not a directory",
                    dir.display(),
                    p.display()
                ))
                .hint("name a directory (it is created when missing)")
            });
        }
        up = p.parent();
    }
    None
}

/// The backup `--pick ID` names, when it fits a drill of `kind` of `src` (and, for a
/// logical drill, of `database`).
///
/// # Errors
///
/// [`ErrorKind::NotFound`] for an id that names no backup; [`ErrorKind::Config`] for
/// another source's, another kind's or another database's backup.
pub(crate) fn by_id(
    repo: &Repo,
    src: &SourceConfig,
    id: &str,
    kind: BackupKind,
    database: Option<&str>,
) -> Result<SnapshotInfo> {
    let b = of_source(repo.backup(id)?, src)?;
    let fits = match kind {
        BackupKind::Physical => b.meta.physical.is_some(),
        _ => b.meta.kind == BackupKind::Logical,
    };
    if !fits {
        return Err(wrong_kind(b.short_id(), b.meta.kind, kind, &b.meta.source));
    }
    if let Some(db) =
        database.filter(|db| kind == BackupKind::Logical && b.meta.database.as_deref() != Some(*db))
    {
        return Err(Error::config(format!(
            "backup {} is of database {:?}, not {db:?}",
            b.short_id(),
            b.meta.database.as_deref().unwrap_or("-")
        )));
    }
    Ok(b)
}

fn carry_out(repo: &Repo, src: &SourceConfig, opts: &DrillOptions) -> Result<DrillReport> {
    match opts.kind {
        BackupKind::Physical => return super::drill_physical::drill(repo, src, opts),
        BackupKind::Logical => {}
        other => {
            return Err(Error::config(format!(
                "a drill restores a logical or a physical backup, not a {other} one"
            ))
            .hint("--kind logical (the default) or --kind physical"))
        }
    }
    let started_at = Timestamp::now();
    let mut clock = Clock::new();
    let (backup, all) = pick_backup(repo, src, opts)?;
    let database = backup.meta.database.clone().unwrap_or_default();
    let mut truth = backup.meta.truth.clone().unwrap_or_default();
    if truth.session.is_none() && !truth.tables.is_empty() {
        // taken by a lifeboat before the dump's session was fixed: read in production's
        // own settings, which only production can tell
        truth.session = PgConn::from_source(src)
            .ok()
            .and_then(|c| crate::sources::postgres::compare::session_of_old_dump(&c, &database));
    }
    let mut checks = Vec::new();
    let mut tables = Vec::new();
    let mut restored_bytes = None;

    let bin = PgBin::new(src.pg_bin_dir.as_deref());
    let on_server = src.drill.server.is_some();
    let scratch = crate::sources::postgres::cluster::ScratchDir::new(
        "lifeboat-drill-",
        opts.scratch_dir.as_deref(),
    )?;
    let dump = scratch.path().join("dump.pgdump");
    // production's roles come from its globals backup, fetched first (it is small): a
    // SQL_ASCII cluster's role names may be bytes a UTF-8 cluster refuses, so the drill's
    // cluster is then SQL_ASCII too (its database still gets the dump's own encoding)
    let encoding = if on_server {
        "UTF8"
    } else {
        clock.time("globals", || {
            globals_encoding(repo, &backup, scratch.path())
        })
    };
    // the dump is fetched while the throw-away cluster starts: one decrypts and decompresses,
    // the other mostly waits for initdb's and the server's files to be written
    let (target, fetched) = std::thread::scope(|s| {
        let fetching = s.spawn(|| {
            let begin = Instant::now();
            let _doing = crate::status::doing(phase_words("fetch"));
            (fetch(repo, &backup, &dump), begin, Instant::now())
        });
        let target = clock.time(if on_server { "connect" } else { "cluster" }, || {
            Target::start(
                src,
                &bin,
                &truth,
                (opts.scratch_dir.as_deref(), opts.jobs),
                encoding,
            )
        });
        let (fetched, begin, end) = fetching.join().expect("fetching the dump panicked");
        clock.add_span("fetch", begin, end);
        (target, fetched)
    });
    // where the copy is written: a full disk there is the drill host's, not the backup's
    let copy_place = if on_server {
        "the scratch server".to_string()
    } else {
        scratch.path().display().to_string()
    };
    let full = |e: &Error| out_of_space(e, &copy_place, on_server);
    // a disk too small for even initdb is one of them
    let mut target = target.map_err(|e| full(&e).unwrap_or(e))?;
    let mut groups = HookGroups::default();
    let server_version = target
        .conn()
        .query(target.conn().maintenance_db(), "show server_version")?
        .trim()
        .to_string();
    // on a shared scratch server the restored copy gets a name of its own, which says
    // which host and process made it (a run killed outright leaves it: the next drill
    // from this host drops it)
    let restored_db = if on_server {
        let tag = host_tag();
        sweep_scratch_server(&target.conn(), &tag);
        // the random part keeps two drills started in the same second apart
        format!(
            "lifeboat_drill_{}_{}_{}_{:06x}",
            started_at.strftime("%Y%m%d%H%M%S"),
            tag,
            std::process::id(),
            rand::random::<u32>() & 0xff_ffff
        )
    } else {
        database.clone()
    };
    let scratch_server = on_server.then(|| target.conn().conninfo(&restored_db));
    if let Target::Server(c) = &target {
        // an interrupt drops it too: it is this drill's, and only this drill's
        crate::sources::postgres::cluster::register_drop(c.clone(), restored_db.clone());
    }
    // the dump is staged here also for a scratch server
    if let Some(e) = fetched
        .as_ref()
        .err()
        .and_then(|e| out_of_space(e, &scratch.path().display().to_string(), false))
    {
        target.teardown(&restored_db);
        return Err(e);
    }
    checks.push(Check {
        name: "backup readable and intact".into(),
        ok: fetched.is_ok(),
        detail: match &fetched {
            Ok(n) => format!("{n} bytes, stream hash matches"),
            Err(e) => e.to_string(),
        },
    });
    let mut skipped_superuser_only = 0;
    let mut definitions_unchecked = None;
    let mut restored_with_roles = true;
    if fetched.is_ok() {
        // the dump's money values are read in the locale they were written in
        let money = super::restore::money_session(&target.conn(), backup.meta.truth.as_ref());
        let conn = money.as_ref().map_or_else(|_| target.conn(), Clone::clone);
        let restored = money.and_then(|_| {
            clock.time("restore", || {
                restore_into(
                    repo,
                    &backup,
                    &conn,
                    &dump,
                    &restored_db,
                    opts.jobs,
                    // roles are cluster-wide: a shared scratch server does not get production's
                    (!on_server).then(|| scratch.path()),
                )
            })
        });
        if let Some(e) = restored.as_ref().err().and_then(&full) {
            // the half-restored copy goes, on a scratch server too
            target.teardown(&restored_db);
            return Err(e);
        }
        match restored {
            Err(e) => checks.push(Check {
                name: "pg_restore".into(),
                ok: false,
                detail: restore_failure(&e, on_server),
            }),
            Ok(roles) => {
                // roles the globals backup could not give are a restore that would go
                // wrong the same way: owners and grants missing, said, not hidden
                let with_roles = matches!(roles, Some(Ok(())));
                restored_with_roles = with_roles;
                // only a superuser may create an event trigger: on a scratch server as
                // another role, they are left out (and said so) rather than failing
                skipped_superuser_only = if on_server && !conn.is_superuser(conn.maintenance_db()) {
                    super::restore::superuser_only_in(&dump)
                } else {
                    0
                };
                if let Some(applied) = &roles {
                    checks.push(Check {
                        name: "roles from the globals backup".into(),
                        ok: applied.is_ok(),
                        detail: match applied {
                            Ok(()) => "applied (tablespaces, if any, left out: the throw-away cluster keeps everything in its default one)".into(),
                            Err(e) => format!(
                                "{}; the database was restored without owners and grants{}",
                                crate::error::one_line(e),
                                e.hint_text().map(|h| format!(" ({h})")).unwrap_or_default()
                            ),
                        },
                    });
                }
                // indexes and constraints before hooks and checks: comparing while they build
                // was no faster on two cores (docs/benchmarks.md)
                let post = clock.time("indexes", || {
                    pg_restore(
                        &conn,
                        &dump,
                        &restored_db,
                        opts.jobs,
                        with_roles,
                        &["post-data"],
                        skipped_superuser_only == 0,
                    )?;
                    // the database's own settings (search_path for the checks and hooks)
                    // last, as a restore applies them: one such as
                    // default_transaction_read_only must not stop the restore itself
                    match &backup.meta.truth {
                        Some(truth) => super::restore::apply_database_properties(
                            &conn,
                            truth,
                            backup.meta.database.as_deref().unwrap_or_default(),
                            &restored_db,
                            !with_roles,
                        )
                        .map(drop),
                        None => Ok(()),
                    }
                });
                if let Some(e) = post.as_ref().err().and_then(&full) {
                    target.teardown(&restored_db);
                    return Err(e);
                }
                // hooks that change the copy on purpose before it is compared; the others
                // (a migration rewrites alembic_version, an application writes its
                // sessions) after, so that their changes are not taken for a bad backup
                let early = hooks_before(src, opts);
                checks.push(Check {
                    name: "pg_restore".into(),
                    ok: post.is_ok(),
                    detail: match &post {
                        Ok(()) => format!(
                            "database {restored_db:?} restored with {} jobs{}",
                            opts.jobs,
                            if on_server {
                                let c = target.conn();
                                format!(
                                    " on the scratch server (drill.server: host {}, port {})",
                                    c.param("host").unwrap_or("default"),
                                    c.param("port").unwrap_or("5432")
                                )
                            } else {
                                String::new()
                            }
                        ),
                        Err(e) => restore_failure(e, on_server),
                    },
                });
                let mut early_failed = false;
                if post.is_ok() && !early.is_empty() {
                    let mut hooks = clock.time("hooks before checks", || {
                        run_hooks(
                            &conn,
                            &restored_db,
                            (HOOK_BEFORE_CHECKS, &early),
                            hook_timeout(src),
                            &mut groups,
                        )
                    });
                    early_failed = hooks.iter().any(|c| !c.ok);
                    let later = hooks_after(src, opts).len();
                    if let (true, Some(last), true) = (early_failed, hooks.last_mut(), later > 0) {
                        last.detail = format!(
                            "{}\n(the {later} hook(s) after the checks were not run either)",
                            last.detail
                        );
                    }
                    checks.extend(hooks);
                }
                let scope = crate::sources::postgres::definitions::Scope {
                    roles: with_roles,
                    superuser_only: skipped_superuser_only == 0,
                };
                // the definitions beside the rows: pg_dump --schema-only is mostly the
                // server's catalog, light next to reading every table
                let ((compared, compared_tables), defined) = clock.time("checks", || {
                    std::thread::scope(|s| {
                        let defined = post.is_ok().then(|| {
                            s.spawn(|| {
                                definitions_check(
                                    &conn,
                                    &restored_db,
                                    &dump,
                                    &backup,
                                    scope,
                                    &server_version,
                                )
                            })
                        });
                        let mut compared = truth_checks(&conn, &restored_db, &truth, opts.jobs);
                        let defined = defined.map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err("definitions: the check stopped unexpectedly".into())
                            })
                        });
                        // pg_dump --schema-only locks every table while it runs: on a server
                        // whose lock table is small, the row checks' own connections found
                        // none left. Read again once it is done, alone
                        if defined.is_some()
                            && compared
                                .0
                                .iter()
                                .any(|c| !c.ok && c.detail.contains("out of shared memory"))
                        {
                            compared = truth_checks(&conn, &restored_db, &truth, opts.jobs);
                        }
                        (compared, defined)
                    })
                });
                let old_dump = backup
                    .meta
                    .truth
                    .as_ref()
                    .is_some_and(|t| t.session.is_none());
                checks.extend(compared.into_iter().map(|mut c| {
                    // (only when the rows were compared: a comparison that could not run
                    // says why itself)
                    if old_dump && !c.ok && c.name == TRUTH_CHECK && !compared_tables.is_empty() {
                        c.detail = format!(
                            "{}\n({})",
                            c.detail,
                            old_dump_note(
                                truth.session.as_deref(),
                                "as production reported them",
                                "the drill cluster's own settings, as production could not be asked"
                            )
                        );
                    }
                    c
                }));
                tables = compared_tables;
                match defined {
                    Some(Ok(check)) => checks.push(check),
                    Some(Err(why)) => definitions_unchecked = Some(why),
                    None => {}
                }
                if post.is_ok() {
                    // a failed hook stops the ones after it, whichever list they are in
                    let hooks = clock.time("hooks", || {
                        if early_failed {
                            Vec::new()
                        } else {
                            run_source_hooks(src, opts, &conn, &restored_db, &mut groups)
                        }
                    });
                    checks.extend(hooks);
                    restored_bytes = conn
                        .query(
                            &restored_db,
                            &format!("select pg_database_size({})", literal(&restored_db)),
                        )
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok());
                    clock.time("assertions", || {
                        for sql in src.drill.checks_for(&database).chain(&opts.checks) {
                            checks.push(assertion(&conn, &restored_db, sql, hook_timeout(src)));
                        }
                    });
                }
            }
        }
    }
    // removing the restored cluster's files takes longer than stopping it (1-1.8 s for
    // 1.4 GB here, the kernel still writing them back): both are teardown, as in the
    // physical drill
    clock.time("teardown", || {
        drop(groups);
        target.teardown(&restored_db);
        drop(target);
        drop(scratch);
    });

    // the fetch overlaps the throw-away cluster's start, which a real restore onto an
    // existing server does not wait for: count the fetch itself, then everything after it
    // (the globals, fetched first to pick the cluster's encoding, a restore fetches too)
    let rto_secs = clock.secs_of(&["globals", "fetch"])
        + clock.span_of(&["restore", "indexes", "hooks", "checks", "assertions"]);
    let newest = newest_of_database(&all, &backup);
    // the data's time, not the backup's end: a dump holds what was there when it started
    // (and a standby's, what it had replayed by then)
    let rpo_point = RpoPoint {
        at: newest.meta.data_point(),
        backup_id: Some(newest.id.clone()),
        lsn: None,
        what: format!(
            "the newest logical backup of database {database:?}, {}{}, data as of its {}",
            newest.short_id(),
            if newest.id == backup.id {
                " (the one drilled)"
            } else {
                ""
            },
            if newest.meta.data_as_of.is_some() {
                "standby's last replayed transaction"
            } else {
                "start"
            }
        ),
    };
    let rpo_secs = rpo_secs(started_at, rpo_point.at);
    let production_bytes = PgConn::from_source(src)
        .ok()
        .and_then(|c| {
            c.query(
                &database,
                &format!("select pg_database_size({})", literal(&database)),
            )
            .ok()
        })
        .and_then(|s| s.trim().parse::<u64>().ok());
    let report = build_report(
        src,
        &backup,
        Measured {
            database,
            started_at,
            server_version,
            phases: clock.phases,
            checks,
            tables,
            rto_secs,
            rpo_secs,
            rpo_point: Some(rpo_point),
            production_bytes,
            restored_bytes,
            kind: BackupKind::Logical,
            target: None,
            reached: None,
            not_checked: not_checked(
                scratch_server.is_some(),
                restored_with_roles,
                skipped_superuser_only,
                definitions_unchecked,
            ),
            scratch_server,
        },
    );
    seal(repo, opts, report)
}

/// A failed restore's check detail: the error, and for a role the restore lacked (a
/// policy or user mapping naming it) where a drill gets roles from: a globals backup, in
/// its own cluster only.
fn restore_failure(e: &Error, on_server: bool) -> String {
    let error = e.to_string();
    if !(error.contains("role \"") && error.contains("does not exist")) {
        return error;
    }
    let note = if on_server {
        "a drill on a scratch server restores without production's roles: create the roles its policies and user mappings name there (CREATE ROLE ... NOLOGIN), or drill in a throw-away cluster"
    } else {
        "the drill restores production's roles from the source's globals backup taken with the dump (within an hour of it): take a new backup of every kind (`lifeboat backup` without --kind), then drill again"
    };
    format!("{error} ({note})")
}

/// What a logical drill's checks did not cover, for its report.
fn not_checked(
    on_server: bool,
    with_roles: bool,
    skipped_superuser_only: usize,
    definitions_unchecked: Option<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if on_server {
        out.push("roles, owners and grants: roles are cluster-wide, so a drill on a scratch server restores without them (no owners, no grants, no policies' roles); a drill in its own throw-away cluster (no drill.server) restores them".into());
    } else if !with_roles {
        out.push("owners and grants: no roles from a globals backup were applied (take a backup of every kind: `lifeboat backup` without --kind), so the drill restored without production's roles and did not compare owners and grants".into());
    }
    if skipped_superuser_only > 0 {
        out.push(format!(
            "{skipped_superuser_only} event trigger(s) or subscription(s): only a superuser may create one, and the drill's role on the scratch server is not one, so they were left out of the restore"
        ));
    }
    if let Some(why) = definitions_unchecked {
        out.push(why);
    }
    out.push("the rows of materialized views (a restore refreshes them from the restored tables, as pg_restore does anywhere) and the owners, grants and comments of large objects (their contents are checked)".into());
    out
}

/// The restored copy's definitions against the backup's, as a check; `Err` says why they
/// were not compared (for the report's "not checked").
fn definitions_check(
    conn: &PgConn,
    db: &str,
    dump: &std::path::Path,
    backup: &SnapshotInfo,
    scope: crate::sources::postgres::definitions::Scope,
    server_version: &str,
) -> std::result::Result<Check, String> {
    // another pg_dump or server writes some definitions in other words (a view's text, a
    // function's options): compared only like with like
    let here = conn.bin().major_version().unwrap_or(0);
    let server = server_version
        .split(['.', ' '])
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    let (made_by, made_on) = (
        backup.meta.client_version,
        backup.meta.server_version_num / 10_000,
    );
    // dumped in production's own time zone and bytea format (lifeboat before it fixed
    // them): timestamptz and bytea constants would read as changes
    let Some(mut session) = backup.meta.truth.as_ref().and_then(|t| t.session.clone()) else {
        return Err("definitions: the backup was taken by an older lifeboat in production's own session settings (time zone, bytea format), which this drill cannot reproduce; the checks compared the data only".into());
    };
    if here != made_by || server != made_on {
        return Err(format!(
            "definitions: the backup was made by pg_dump {made_by} from PostgreSQL {made_on}, and this drill has pg_dump {here} and PostgreSQL {server}, which write some definitions in other words; the checks compared the data only"
        ));
    }
    // `money` defaults are written in the dump's lc_monetary
    if let Some(money) = backup
        .meta
        .truth
        .as_ref()
        .and_then(crate::sources::postgres::truth::Truth::money_options)
    {
        session = format!("{session} {money}");
    }
    let toc = crate::ops::restore::dump_toc(dump)
        .map_err(|e| format!("definitions: the backup's table of contents: {e}"))?;
    Ok(
        match crate::sources::postgres::definitions::compare(
            conn,
            db,
            &toc,
            scope,
            Some(&session),
        ) {
            Ok(d) => Check {
                name: DEFINITIONS_CHECK.into(),
                ok: d.ok(),
                detail: d.describe(),
            },
            // pg_dump locks every table: a scratch server's lock table may hold fewer than
            // production's, which says nothing about the backup
            Err(e)
                if e.message().contains("max_locks_per_transaction")
                    || e.message().contains("out of shared memory") =>
            {
                return Err(format!(
                    "definitions: pg_dump --schema-only of the copy ran out of the server's lock table ({}); raise max_locks_per_transaction there to have them compared",
                    crate::error::one_line(&e)
                ))
            }
            Err(e) => Check {
                name: DEFINITIONS_CHECK.into(),
                ok: false,
                detail: crate::error::one_line(&e),
            },
        },
    )
}

/// The newest backup in `all` (oldest first) of `drilled`'s database: the last point a
/// restore of that database could go back to. A newer dump of another database of the
/// source recovers nothing of this one, so it does not shorten the RPO.
fn newest_of_database<'a>(all: &'a [SnapshotInfo], drilled: &'a SnapshotInfo) -> &'a SnapshotInfo {
    all.iter()
        .filter(|b| b.meta.kind == drilled.meta.kind && b.meta.database == drilled.meta.database)
        .chain([drilled])
        .max_by_key(|b| b.meta.finished_at)
        .unwrap_or(drilled)
}

/// Seconds from `point` to `started_at` (never negative), to the millisecond.
pub(crate) fn rpo_secs(started_at: Timestamp, point: Timestamp) -> f64 {
    (started_at.as_millisecond() - point.as_millisecond()).max(0) as f64 / 1000.0
}

/// What a drill measured, before it is judged against the objectives.
pub(crate) struct Measured {
    pub(crate) database: String,
    pub(crate) started_at: Timestamp,
    pub(crate) server_version: String,
    pub(crate) phases: Vec<Phase>,
    pub(crate) checks: Vec<Check>,
    pub(crate) tables: Vec<TableResult>,
    pub(crate) rto_secs: f64,
    pub(crate) rpo_secs: f64,
    pub(crate) rpo_point: Option<RpoPoint>,
    pub(crate) production_bytes: Option<u64>,
    pub(crate) restored_bytes: Option<u64>,
    pub(crate) kind: BackupKind,
    pub(crate) target: Option<String>,
    pub(crate) reached: Option<super::recover::ReachedPoint>,
    pub(crate) scratch_server: Option<String>,
    pub(crate) not_checked: Vec<String>,
}

/// The checks of the restore itself, logical and physical: when one fails, the drill
/// recovered nothing.
pub(crate) const RESTORE_STEPS: [&str; 4] = [
    "backup readable and intact",
    "pg_restore",
    "base backup restored (stream hash, WAL chain to the target)",
    "WAL replay reached the target",
];

/// The RTO at production's size: restore work grows with the data, so it is scaled by
/// production / restored; hooks and assertions take what they take (a hook killed at its
/// 30 s timeout is no 32 s at production's size).
fn extrapolate(m: &Measured) -> Option<f64> {
    let (prod, here) = (m.production_bytes?, m.restored_bytes?);
    if here == 0 {
        return None;
    }
    let fixed: f64 = m
        .phases
        .iter()
        .filter(|p| {
            ["hooks", "hooks before checks", "assertions"].contains(&p.name.as_str())
                || (m.kind == BackupKind::Physical && p.name == "checks")
        })
        .map(|p| p.secs)
        .sum();
    let fixed = fixed.min(m.rto_secs);
    Some((m.rto_secs - fixed) * prod as f64 / here as f64 + fixed)
}

/// Judges `m` against `src`'s objectives: the report before it is sealed.
pub(crate) fn build_report(src: &SourceConfig, backup: &SnapshotInfo, m: Measured) -> DrillReport {
    let mut rto = Objective::new(m.rto_secs, src.objectives.rto.as_deref());
    let mut rpo = Objective::new(m.rpo_secs, src.objectives.rpo_for(m.kind));
    // a restore that failed achieved no recovery time and recovered no point in time:
    // its seconds are those of a failure, not a measured RTO to compare
    if m.checks
        .iter()
        .any(|c| !c.ok && RESTORE_STEPS.contains(&c.name.as_str()))
    {
        for o in [&mut rto, &mut rpo] {
            o.not_achieved = true;
            o.met = false;
            // no recovery time to compare with the objective: no margin either
            o.margin_secs = None;
        }
    }
    let extrapolated_rto_secs = extrapolate(&m);
    let extrapolation_misses_rto = match (extrapolated_rto_secs, rto.objective_secs) {
        (Some(e), Some(o)) => e > o,
        _ => false,
    };
    let passed = m.checks.iter().all(|c| c.ok) && rto.met && rpo.met;
    DrillReport {
        // the second it started, and a random part: two drills may start in the same second
        // (two sources, a scheduled and a manual one), and each needs its own report
        id: format!(
            "{}-{:04x}",
            m.started_at.strftime("drill-%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        ),
        source: src.name.clone(),
        backup_id: backup.id.clone(),
        database: m.database,
        restored: if m.kind == BackupKind::Physical {
            Restored::WholeCluster
        } else {
            Restored::Database
        },
        backup_finished_at: backup.meta.finished_at,
        backup_bytes: backup.meta.logical_bytes,
        started_at: m.started_at,
        finished_at: Timestamp::now(),
        server_version: m.server_version,
        phases: m.phases,
        checks: m.checks,
        tables: m.tables,
        rto,
        rpo,
        rpo_point: m.rpo_point,
        extrapolated_rto_secs,
        production_bytes: m.production_bytes,
        restored_bytes: m.restored_bytes,
        extrapolation_misses_rto,
        passed,
        audit_head: None,
        evidence_error: None,
        kind: m.kind,
        target: m.target,
        reached: m.reached,
        scratch_server: m.scratch_server,
        not_checked: m.not_checked,
        written_by: Some(crate::VERSION.to_string()),
    }
}

/// Appends the drill to the audit log, writes and stores the evidence.
pub(crate) fn seal(repo: &Repo, opts: &DrillOptions, report: DrillReport) -> Result<DrillReport> {
    let _doing = crate::status::doing("storing the report and its audit entry");
    // a drill an operator stopped proved nothing either way: no failed drill in the
    // evidence (the CLI's interrupt handler logs the interruption itself)
    if crate::sources::postgres::cluster::interrupted() {
        return Err(Error::unavailable(format!(
            "drill {} was interrupted: not stored as evidence",
            report.id
        )));
    }
    // the id first (the evidence pack finds the entry by it), then the source: two
    // sources may both have a database "app"
    // one line per entry: a hook's output is several
    let details = format!(
        "{} of {} backup {} ({:?}) of source {}: {}{}",
        report.id,
        report.kind,
        &report.backup_id[..8],
        report.database,
        report.source,
        if report.passed {
            "passed".to_string()
        } else {
            format!("failed: {}", report.failures().join("; ")).replace('\n', " | ")
        },
        if report.rto.not_achieved {
            String::new()
        } else {
            format!(
                "; RTO {:.1}s, RPO {:.0}s",
                report.rto.achieved_secs, report.rpo.achieved_secs
            )
        }
    );
    // the entry and the report it names are one step for an interrupt (see
    // audit::logging_outcome): never a logged drill without its report
    crate::repository::audit::logging_outcome(|| seal_logged(repo, opts, report, &details))
}

/// [`seal`]'s logging: the entry, the head, the report.
fn seal_logged(
    repo: &Repo,
    opts: &DrillOptions,
    mut report: DrillReport,
    details: &str,
) -> Result<DrillReport> {
    // the report carries the log's head, so cutting the newest entries off is detectable
    match crate::repository::audit::write(repo, "drill", report.passed, details) {
        Ok(entry) => {
            if let Err(e) = crate::repository::audit::publish_head(repo, &entry) {
                report.evidence_error = Some(e.to_string());
            }
            report.audit_head = Some(entry.hash);
        }
        Err(e) => report.evidence_error = Some(e.to_string()),
    }
    // neither a damaged repository nor an unwritable report directory may hide the
    // drill's verdict, nor keep the evidence from the other place: each failure is reported
    if let Err(e) = super::evidence::store(repo, &report) {
        add_evidence_error(
            &mut report,
            format!("the report could not be stored in the repository: {e}"),
        );
    }
    if let Some(dir) = &opts.report_dir {
        if let Err(e) = super::evidence::write_files(&report, dir) {
            add_evidence_error(
                &mut report,
                format!("the report files could not be written: {e}"),
            );
        }
    }
    Ok(report)
}

fn add_evidence_error(report: &mut DrillReport, error: String) {
    report.evidence_error = Some(match report.evidence_error.take() {
        Some(earlier) => format!("{earlier}; {error}"),
        None => error,
    });
}

/// Where a logical drill keeps the globals backup it applies, in its scratch directory.
const GLOBALS_FILE: &str = "globals.sql";

/// The encoding the drill's cluster is initialised in: `SQL_ASCII` when the globals backup
/// of `backup` was written by a SQL_ASCII cluster (pg_dumpall's `SET client_encoding`),
/// else UTF-8. The globals are fetched into `scratch` on the way; any failure leaves the
/// choice at UTF-8 (the restore then fetches them itself, and says what went wrong).
fn globals_encoding(repo: &Repo, backup: &SnapshotInfo, scratch: &std::path::Path) -> &'static str {
    let file = scratch.join(GLOBALS_FILE);
    let fetched = globals_for(repo, backup)
        .ok()
        .flatten()
        .is_some_and(|g| fetch(repo, &g, &file).is_ok());
    if !fetched {
        let _ = std::fs::remove_file(&file);
        return "UTF8";
    }
    let text = std::fs::read(&file).unwrap_or_default();
    let head = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    // or a script that is not UTF-8 whatever it says (dumped with PGCLIENTENCODING set
    // through a UTF-8 database of such a cluster)
    let sql_ascii = std::str::from_utf8(&text).is_err()
        || head.lines().any(|l| {
            l.trim()
                .eq_ignore_ascii_case("SET client_encoding = 'SQL_ASCII';")
        });
    if sql_ascii {
        "SQL_ASCII"
    } else {
        "UTF8"
    }
}

/// Creates `database` through `conn` and restores the dump's schema and data into it;
/// `globals_dir` is the drill's scratch directory when the drill restores into its own
/// cluster (which gets production's roles), `None` on a shared scratch server. Returns
/// whether the roles were applied (`None`: none to apply).
fn restore_into(
    repo: &Repo,
    backup: &SnapshotInfo,
    conn: &PgConn,
    dump: &std::path::Path,
    database: &str,
    jobs: u32,
    globals_dir: Option<&std::path::Path>,
) -> Result<Option<Result<()>>> {
    // roles first, so ownership and grants restore as in production; without them the
    // objects are restored without owners and grants rather than failing
    // the throw-away cluster has none of production's tablespaces (and their directories
    // are production's): everything goes to its default one
    let roles = match globals_dir {
        Some(dir) => {
            let file = dir.join(GLOBALS_FILE);
            // fetched before the cluster started (see `globals_encoding`), else now
            let have = file.exists()
                || match globals_for(repo, backup)? {
                    Some(g) => {
                        fetch(repo, &g, &file)?;
                        true
                    }
                    None => false,
                };
            have.then(|| apply_globals(conn, &file, true).map(drop))
        }
        None => None,
    };
    let with_roles = matches!(roles, Some(Ok(())));
    // with production's encoding and locale, as a restore creates it: a database a
    // restore could not create must not pass its drill
    let toc = crate::ops::restore::dump_toc(dump).ok();
    let options = crate::ops::restore::create_options(
        toc.as_deref(),
        &backup.meta.truth.clone().unwrap_or_default(),
    );
    // initdb made a `postgres` database, and applications (pgbench's tables, say) keep
    // their data there too: in the drill's own cluster (the one given the globals) the
    // backup replaces it, created as production's was
    let own_cluster = globals_dir.is_some();
    let maintenance = if own_cluster && database == "postgres" {
        conn.query("template1", "DROP DATABASE postgres WITH (FORCE)")?;
        "template1"
    } else {
        conn.maintenance_db()
    };
    conn.query(
        maintenance,
        &format!(
            "CREATE DATABASE {} TEMPLATE template0{options}",
            ident(database)
        ),
    )
    .map_err(|e| crate::ops::restore::create_refused(&e, database, &options))?;
    if let Some(truth) = &backup.meta.truth {
        crate::ops::restore::apply_input_settings(
            conn,
            truth,
            backup.meta.database.as_deref().unwrap_or_default(),
            database,
        );
    }
    pg_restore(
        conn,
        dump,
        database,
        jobs,
        with_roles,
        &["pre-data", "data"],
        true,
    )?;
    Ok(roles)
}

/// Every table's row count and content hash against the backup-time truth: one summary
/// check, then one per table; and the tables' numbers.
fn truth_checks(
    conn: &PgConn,
    db: &str,
    truth: &crate::sources::postgres::truth::Truth,
    jobs: u32,
) -> (Vec<Check>, Vec<TableResult>) {
    let name = TRUTH_CHECK;
    match compare(conn, db, truth, jobs as usize) {
        Err(e) => (
            vec![Check {
                name: name.into(),
                ok: false,
                detail: e.to_string(),
            }],
            Vec::new(),
        ),
        Ok(c) => {
            let mut out = vec![Check {
                name: name.into(),
                ok: c.ok(),
                detail: if c.ok() {
                    format!(
                        "{} tables, {} rows{} match ({}{})",
                        c.tables.len(),
                        c.rows(),
                        c.also_compared(),
                        if c.read_by_server {
                            "written by the server into a FIFO"
                        } else {
                            "read through psql"
                        },
                        if c.batched_tables > 0 {
                            format!(
                                "; {} small tables several to a read, {} reads",
                                c.batched_tables, c.reads
                            )
                        } else if c.reads > c.tables.len() {
                            format!("; big tables in page ranges, {} reads", c.reads)
                        } else {
                            String::new()
                        }
                    )
                } else {
                    c.describe_failures()
                },
            }];
            out.extend(c.tables.iter().map(|t| Check {
                name: format!("table {}", t.table),
                ok: t.ok,
                detail: format!(
                    "{} rows (expected {}), hash {}",
                    t.actual_rows,
                    t.expected_rows,
                    if t.actual_hash == t.expected_hash {
                        "matches"
                    } else {
                        "differs"
                    }
                ),
            }));
            let tables = c
                .tables
                .iter()
                .map(|t| TableResult {
                    table: t.table.clone(),
                    rows: t.actual_rows,
                    expected_rows: t.expected_rows,
                    hash_matches: t.actual_hash == t.expected_hash,
                })
                .collect();
            (out, tables)
        }
    }
}

/// Runs `pg_restore` for `sections` of `dump` into the drill database, with the objects
/// only a superuser may create when `with_superuser_only`.
fn pg_restore(
    conn: &PgConn,
    dump: &std::path::Path,
    database: &str,
    jobs: u32,
    with_roles: bool,
    sections: &[&str],
    with_superuser_only: bool,
) -> Result<()> {
    super::restore::run_pg_restore(
        conn,
        dump,
        database,
        jobs,
        false,
        super::restore::Skip {
            owner: !with_roles,
            tablespaces: true,
            failing: false,
            superuser_only: !with_superuser_only,
        },
        sections,
    )
    .map(drop)
}

/// Environment variables a hook must not inherit: lifeboat's secrets, and libpq's that
/// would win over the drill's `PGHOST` and point the hook elsewhere, at production perhaps
/// (`PGSERVICE`, `PGSERVICEFILE`, `PGHOSTADDR`). For a throw-away cluster every `PG*`
/// variable goes ([`PgConn::apply_env`] of a local connection); for a scratch server the
/// rest (`PGPASSWORD`, `PGSSLMODE`, ...) stays, as lifeboat's own connection uses it.
fn scrub(cmd: &mut std::process::Command) {
    crate::secret::remove_secret_env(cmd);
    for var in ["PGSERVICE", "PGSERVICEFILE", "PGHOSTADDR"] {
        cmd.env_remove(var);
    }
}

/// The hooks of a drill, each the leader of its own process group. Dropping it kills the
/// groups, then reaps the leaders: an application a hook started in the background lives
/// until the drill's checks are done, not longer. A leader is reaped only here, so its
/// exited (zombie) process keeps the group's id from being reused by an unrelated process
/// group until the kill.
#[derive(Default)]
pub(crate) struct HookGroups(Vec<std::process::Child>);

impl Drop for HookGroups {
    fn drop(&mut self) {
        for mut child in self.0.drain(..) {
            crate::sources::postgres::cluster::kill_group(child.id() as i32);
            let _ = child.wait();
        }
    }
}

/// What a failed comparison of a backup taken before lifeboat fixed its dump session says:
/// rows of another time zone read differently without any change to the data.
/// `session` is what the rows were read in; `unasked` says in what when none was known.
pub(crate) fn old_dump_note(session: Option<&str>, asked: &str, unasked: &str) -> String {
    format!(
        "this backup was taken by an older lifeboat, which dumped in the source database's own time zone and bytea format; the rows were read here in {}: where production's differed, timestamptz and bytea columns read differently without any change to the data",
        session.map_or_else(|| unasked.to_string(), |s| format!("`{s}`, {asked}"))
    )
}

/// The check of the restored schema against the backup's.
pub(crate) const DEFINITIONS_CHECK: &str = "definitions vs the backup";

/// The check of every table against the backup-time truth; each table's own is `table …`.
pub(crate) const TRUTH_CHECK: &str = "row counts and content hashes vs backup-time truth";

/// What the checks of hooks run before the data is compared are named after.
pub(crate) const HOOK_BEFORE_CHECKS: &str = "hook before checks";

/// How long a hook may run, unless the source's `drill.hook_timeout` says otherwise.
const HOOK_TIMEOUT_SECS: u64 = 600;

/// A phase's name as a progress display says it.
pub(crate) fn phase_words(name: &str) -> String {
    match name {
        "globals" => "fetching the globals backup",
        "cluster" => "starting the throw-away cluster",
        "fetch" => "fetching the backup",
        "restore" => "restoring schema and data (pg_restore)",
        "indexes" => "building indexes and constraints",
        "checks" => "comparing every table with the backup-time truth",
        "hooks before checks" | "hooks" => "running hooks",
        "assertions" => "running assertions",
        "verify" => "checking every file against backup_manifest",
        "replay" => "replaying WAL",
        "teardown" => "removing the throw-away cluster",
        other => other,
    }
    .to_string()
}

/// The hooks run before the comparison with the backup: the source's
/// `drill.hooks_before_checks`, then the drill's own.
pub(crate) fn hooks_before(src: &SourceConfig, opts: &DrillOptions) -> Vec<String> {
    (src.drill.hooks_before_checks.iter())
        .chain(&opts.hooks_before_checks)
        .cloned()
        .collect()
}

/// The hooks run after it: the source's `drill.hooks`, then the drill's own.
pub(crate) fn hooks_after(src: &SourceConfig, opts: &DrillOptions) -> Vec<String> {
    src.drill.hooks.iter().chain(&opts.hooks).cloned().collect()
}

/// Runs [`hooks_after`] (see [`run_hooks`]).
pub(crate) fn run_source_hooks(
    src: &SourceConfig,
    opts: &DrillOptions,
    conn: &PgConn,
    database: &str,
    groups: &mut HookGroups,
) -> Vec<Check> {
    let hooks = hooks_after(src, opts);
    run_hooks(conn, database, ("hook", &hooks), hook_timeout(src), groups)
}

/// How long one of `src`'s drill hooks may run (`drill.hook_timeout`).
pub(crate) fn hook_timeout(src: &SourceConfig) -> u64 {
    src.drill
        .hook_timeout
        .as_deref()
        .and_then(|t| crate::config::parse_duration(t).ok())
        .unwrap_or(HOOK_TIMEOUT_SECS)
}

/// Runs `hooks` (each check named `<label>: <command>`) one after the other against
/// `database` on the server `conn` reaches, each
/// in a process group of its own, with `PGHOST`, `PGPORT`, `PGUSER` (those `conn` names),
/// `PGDATABASE` and the scratch server's password set, and libpq's environment scrubbed
/// (see [`scrub`]); a hook still running after `timeout_secs` is killed and fails.
pub(crate) fn run_hooks(
    conn: &PgConn,
    database: &str,
    (label, hooks): (&str, &[String]),
    timeout_secs: u64,
    groups: &mut HookGroups,
) -> Vec<Check> {
    use std::os::unix::process::CommandExt;
    let mut run_one = |h: &String| {
        let name = format!("{label}: {h}");
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(h);
        scrub(&mut cmd);
        conn.apply_env(&mut cmd);
        // what the connection names; the rest is libpq's default, as for lifeboat
        for (var, param) in [("PGHOST", "host"), ("PGPORT", "port"), ("PGUSER", "user")] {
            if let Some(v) = conn.param(param) {
                cmd.env(var, v);
            }
        }
        // stdout and stderr in one pipe, in the order written: a failing migration's
        // story is often on stdout
        let pipe = std::io::pipe().and_then(|(r, w)| Ok((r, w.try_clone()?, w)));
        let (out_reader, out_writer, err_writer) = match pipe {
            Ok(p) => p,
            Err(e) => {
                return Check {
                    name,
                    ok: false,
                    detail: format!("cannot make a pipe: {e}"),
                }
            }
        };
        cmd.env("LIFEBOAT_DRILL_CONNINFO", conn.conninfo(database))
            .env("PGDATABASE", database)
            .stdin(Stdio::null())
            .stdout(out_writer)
            .stderr(err_writer)
            .process_group(0);
        let spawned = cmd.spawn();
        // the command holds the pipe's write ends: only the hook may keep it open
        drop(cmd);
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                return Check {
                    name,
                    ok: false,
                    detail: format!("cannot run sh: {e}"),
                }
            }
        };
        crate::sources::postgres::cluster::register_group(child.id() as i32);
        let output = OutputTail::read(out_reader);
        let waited = wait_with_timeout(&child, Duration::from_secs(timeout_secs));
        groups.0.push(child);
        match waited {
            // what a probe said is evidence too (a count, a health answer), not only
            // what a failing hook said
            Ok(None) => Check {
                name,
                ok: true,
                detail: format!("exit 0{}", last_lines(&output.text())),
            },
            Ok(Some(status)) => Check {
                name,
                ok: false,
                detail: format!("{status}{}", last_lines(&output.text())),
            },
            // what it said before it hung tells where it hangs
            Err(detail) => Check {
                name,
                ok: false,
                detail: format!("{detail}{}", last_lines(&output.text())),
            },
        }
    };
    // as a script with `set -e`: the application is not started on a failed migration
    let mut checks = Vec::new();
    for (i, h) in hooks.iter().enumerate() {
        let mut check = run_one(h);
        let failed = !check.ok;
        let left = hooks.len() - i - 1;
        if failed && left > 0 {
            check.detail = format!(
                "{}\n({left} later hook(s) not run after this one failed)",
                check.detail
            );
        }
        checks.push(check);
        if failed {
            break;
        }
    }
    checks
}

/// The last lines a hook wrote, for its check's detail (one line per line).
fn last_lines(text: &str) -> String {
    const LINES: usize = 20;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return "; no output".into();
    }
    let from = lines.len().saturating_sub(LINES);
    let shown: Vec<String> = lines[from..]
        .iter()
        .map(|l| l.chars().take(300).collect())
        .collect();
    format!(
        "; {} of its output:\n{}",
        if from > 0 {
            format!("the last {LINES} lines")
        } else {
            "the lines".to_string()
        },
        shown.join("\n")
    )
}

/// The end of a hook's output, read on the side until the pipe closes: a chatty hook (or
/// the application it started, which inherits the pipe) never blocks on a full pipe nor
/// dies of a closed one. The last 64 KiB are kept.
struct OutputTail {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl OutputTail {
    const KEEP: usize = 64 << 10;

    fn read(mut pipe: impl std::io::Read + Send + 'static) -> Self {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = std::sync::Arc::clone(&buf);
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = shared.lock() {
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > 2 * Self::KEEP {
                        let cut = b.len() - Self::KEEP;
                        b.drain(..cut);
                    }
                }
            }
        });
        Self { buf, reader }
    }

    /// What was read so far, once the hook's own output ended: the pipe closed, or (a
    /// background process may keep it open for the rest of the drill) nothing new came
    /// for 100 ms, at most a second. The hook has exited, so what it wrote is already in
    /// the pipe and read at once; a successful hook's check waits no longer than that,
    /// as the wait counts in the RTO.
    fn text(&self) -> String {
        let settle = Instant::now() + Duration::from_secs(1);
        let len = || self.buf.lock().map(|b| b.len()).unwrap_or(0);
        let (mut seen, mut quiet_since) = (len(), Instant::now());
        while !self.reader.is_finished()
            && Instant::now() < settle
            && quiet_since.elapsed() < Duration::from_millis(100)
        {
            std::thread::sleep(Duration::from_millis(10));
            let now = len();
            if now != seen {
                (seen, quiet_since) = (now, Instant::now());
            }
        }
        let b = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&b[b.len().saturating_sub(Self::KEEP)..]).into_owned()
    }
}

/// Waits for hook `child` to exit, without reaping it (see [`HookGroups`]); kills its
/// process group after `timeout`. `Ok(None)`: exit 0; `Ok(Some(status))`: it failed so.
fn wait_with_timeout(
    child: &std::process::Child,
    timeout: Duration,
) -> std::result::Result<Option<String>, String> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let exited = |block: bool| {
        let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        if !block {
            flags |= WaitPidFlag::WNOHANG;
        }
        waitid(Id::Pid(pid), flags)
    };
    let deadline = Instant::now() + timeout;
    loop {
        match exited(false) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(None),
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(format!("exit status: {code}"))),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(Some(format!("killed by signal {sig:?}")))
            }
            Ok(_) if Instant::now() >= deadline => {
                crate::sources::postgres::cluster::kill_group(child.id() as i32);
                let _ = exited(true);
                return Err(format!(
                    "still running after {}s: killed (a hook that starts an application must start it in the background)",
                    timeout.as_secs()
                ));
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for the hook: {e}")),
        }
    }
}

/// Runs assertion `sql` in `database`; one still running after `timeout_secs` (waiting
/// for a lock a hook's application holds, a query too slow) is cancelled and fails.
pub(crate) fn assertion(conn: &PgConn, database: &str, sql: &str, timeout_secs: u64) -> Check {
    let name = format!("assert: {sql}");
    // the session's setting, not a statement before it: the assertion runs as written
    let timed = conn.with_options(&format!("-c statement_timeout={timeout_secs}s"));
    match timed.query(database, sql) {
        Ok(v) if v.trim() == "t" => Check {
            name,
            ok: true,
            detail: "true".into(),
        },
        Ok(v) => Check {
            name,
            ok: false,
            detail: format!("returned {}, expected true", returned(v.trim())),
        },
        Err(e) => Check {
            name,
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// What an assertion returned, as much as a report holds: a mistaken `delete ...
/// returning` returns a line per row.
fn returned(v: &str) -> String {
    const LINES: usize = 5;
    let lines: Vec<&str> = v.lines().collect();
    if lines.len() <= LINES {
        return format!("{:?}", v.chars().take(500).collect::<String>());
    }
    format!(
        "{} rows ({} ...)",
        lines.len(),
        lines[..LINES]
            .iter()
            .map(|l| format!("{:?}", l.chars().take(100).collect::<String>()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Turns a failed drill into an error carrying its failures (for exit codes).
///
/// # Errors
///
/// [`ErrorKind::CheckFailed`] when `report` did not pass.
pub fn ensure_passed(report: &DrillReport) -> Result<()> {
    if report.passed {
        return Ok(());
    }
    Err(Error::new(ErrorKind::CheckFailed, format!("drill {} failed: {}", report.id, report.failures().join("; ")))
        .hint("the backup did not prove restorable as configured: read the report and fix the first failing check"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn one_server_under_two_names_is_one_endpoint() {
        use crate::sources::postgres::conn::{PgBin, PgConn};
        let at = |dsn: &str| PgConn::from_dsn(dsn, PgBin::default()).unwrap();
        let same = |a: &str, b: &str| super::same_endpoint(&at(a), &at(b));
        assert!(same("host=localhost port=5433", "host=127.0.0.1 port=5433"));
        assert!(same(
            "host=127.0.0.1 port=5433 dbname=a",
            "hostaddr=127.0.0.1 port=5433"
        ));
        assert!(same("host=/var/run/postgresql", "port=5432"));
        assert!(same("host=/var/run/postgresql", "host=localhost"));
        assert!(!same(
            "host=localhost port=5433",
            "host=localhost port=5434"
        ));
        assert!(!same(
            "host=192.0.2.2 port=5432",
            "host=192.0.2.1 port=5432"
        ));
        assert!(!same(
            "host=192.0.2.1 port=5432",
            "host=127.0.0.1 port=5432"
        ));
    }

    #[test]
    fn only_the_restore_work_is_scaled_to_production_s_size() {
        let phase = |name: &str, secs: f64| super::Phase {
            name: name.into(),
            start_secs: 0.0,
            secs,
        };
        let m = super::Measured {
            database: "app".into(),
            started_at: jiff::Timestamp::now(),
            server_version: String::new(),
            phases: vec![
                phase("fetch", 1.0),
                phase("restore", 2.0),
                phase("checks", 1.0),
                phase("hooks", 30.0),
                phase("assertions", 0.5),
            ],
            checks: Vec::new(),
            tables: Vec::new(),
            rto_secs: 34.5,
            rpo_secs: 0.0,
            rpo_point: None,
            production_bytes: Some(10_000),
            restored_bytes: Some(1_000),
            kind: BackupKind::Logical,
            target: None,
            reached: None,
            scratch_server: None,
            not_checked: Vec::new(),
        };
        // 4 s of restore work ten times over, 30.5 s of hooks and assertions once
        let e = super::extrapolate(&m).unwrap();
        assert!((e - 70.5).abs() < 1e-9, "{e}");
        let unknown = super::Measured {
            production_bytes: None,
            ..m
        };
        assert!(super::extrapolate(&unknown).is_none());
    }

    #[test]
    fn an_assertion_returning_many_rows_is_shown_in_short() {
        let many = vec!["t"; 4380].join("\n");
        let shown = super::returned(&many);
        assert!(shown.starts_with("4380 rows (\"t\", \"t\""), "{shown}");
        assert!(shown.len() < 100, "{shown}");
        assert_eq!(super::returned("f"), "\"f\"");
    }

    #[test]
    fn the_drill_cluster_locks_every_object_of_a_big_schema_in_one_transaction() {
        use crate::sources::postgres::truth::{TableTruth, Truth};
        let mut truth = Truth::default();
        assert_eq!(lock_setting(&truth), "max_locks_per_transaction = 64");
        let table = TableTruth {
            schema: "s".into(),
            table: "t".into(),
            copy: String::new(),
            rows: 0,
            hash: String::new(),
        };
        truth.tables = vec![table; 4925];
        // 4925 tables with an index each: 9850 locks over 50 connections
        assert_eq!(lock_setting(&truth), "max_locks_per_transaction = 197");
    }
    use super::{lock_setting, run_hooks, wrong_kind, BackupKind, HookGroups};
    use crate::sources::postgres::conn::{PgBin, PgConn};

    #[test]
    fn a_successful_hook_keeps_the_end_of_its_output() {
        // the hooks never connect: a connection's parameters are only handed to them
        let conn = PgConn::local(
            std::path::Path::new("/nonexistent"),
            1,
            "postgres",
            PgBin::default(),
        );
        let mut groups = HookGroups::default();
        let checks = run_hooks(
            &conn,
            "app",
            (
                "hook",
                &[
                    "echo 2".to_string(),
                    "seq 1 25; echo done >&2".to_string(),
                    "true".to_string(),
                ],
            ),
            10,
            &mut groups,
        );
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert_eq!(checks[0].detail, "exit 0; the lines of its output:\n2");
        // the same limit as a failing hook's: the last 20 lines, stderr too, in order
        let lines: Vec<&str> = checks[1].detail.lines().collect();
        assert_eq!(lines[0], "exit 0; the last 20 lines of its output:");
        assert_eq!(lines[1], "7");
        assert_eq!(lines[20], "done");
        assert_eq!(lines.len(), 21);
        assert_eq!(checks[2].detail, "exit 0; no output");
    }

    #[test]
    fn picking_a_backup_of_another_kind_names_the_flag() {
        let e = wrong_kind("3f2a9c1e", BackupKind::Physical, BackupKind::Logical, "app");
        assert_eq!(
            e.message(),
            "backup 3f2a9c1e is a physical backup, not a logical one"
        );
        assert!(
            e.hint_text()
                .is_some_and(|h| h.contains("add --kind physical")
                    && h.contains("`lifeboat drill --source app --kind physical --pick 3f2a9c1e`")),
            "{e:?}"
        );
        let e = wrong_kind("3f2a9c1e", BackupKind::Logical, BackupKind::Physical, "app");
        assert!(
            e.hint_text()
                .is_some_and(|h| h.contains("drop --kind physical")),
            "{e:?}"
        );
        for kind in [BackupKind::Schema, BackupKind::Globals] {
            for drill in [BackupKind::Logical, BackupKind::Physical] {
                let e = wrong_kind("3f2a9c1e", kind, drill, "app");
                assert!(
                    e.hint_text().is_some_and(|h| h.contains("pick a")),
                    "{kind} in a {drill} drill: {e:?}"
                );
            }
        }
    }
}
