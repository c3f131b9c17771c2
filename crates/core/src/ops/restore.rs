//! `restore`: bring a logical backup back into a database.
//!
//! Order matters for safety: the backup is fetched and its stream hash checked *before*
//! the target is touched, so a damaged backup never half-overwrites a database; an existing
//! non-empty target is refused unless `clean` and `force` are both given; hooks run around
//! the restore and a failing pre-hook stops everything.

use std::{io::Write, path::PathBuf, process::Stdio, time::Instant};

use jiff::Timestamp;
use rustic_core::repofile::SnapshotFile;
use serde::{Deserialize, Serialize};

use crate::{
    config::{Hooks, SourceConfig},
    error::{Error, ErrorKind, Result},
    ops::list::{list, ListFilter},
    repository::{Repo, SnapshotInfo},
    secret::remove_secret_env,
    sources::postgres::{
        archive::TocEntry,
        compare::{compare, ident, literal, Comparison},
        conn::{missing_program, sqlstate, PgConn, INSUFFICIENT_PRIVILEGE, UNDEFINED_OBJECT},
        logical::BackupKind,
        script,
        truth::Truth,
    },
};

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// The newest.
    Latest,
    /// By snapshot id (a unique prefix is enough).
    Id(String),
    /// The newest finished at or before this time.
    Before(Timestamp),
}

/// How to restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// Which backup.
    pub selector: Selector,
    /// Source name (needed for `Latest` and `Before`).
    pub source: Option<String>,
    /// Kind: logical (default) or schema.
    pub kind: BackupKind,
    /// Which database of the source; needed when the selected backups cover several.
    pub database: Option<String>,
    /// Target database name (default: the original name).
    pub to_database: Option<String>,
    /// Drop existing objects in the target first (needs `force`).
    pub clean: bool,
    /// Together with `clean`: allow writing into a non-empty existing database.
    pub force: bool,
    /// Parallel pg_restore jobs.
    pub jobs: u32,
    /// Also restore the source's globals (roles, tablespaces) first.
    pub globals: bool,
    /// Compare the restored database with the backup-time truth.
    pub verify: bool,
    /// Restore with `--no-owner --no-privileges` (when the roles do not exist).
    pub no_owner: bool,
    /// Put every table and index in the target's default tablespace, and leave the
    /// globals' tablespaces out (when the target lacks the source's tablespaces).
    #[serde(default)]
    pub no_tablespaces: bool,
    /// pg_restore goes on past objects that fail, as plain pg_restore does, and a new
    /// database is kept with everything that loaded (the restore still fails, naming the
    /// errors); not with `clean`, which is one transaction.
    #[serde(default)]
    pub keep_going: bool,
    /// Hooks (override the source's configured hooks).
    pub hooks: Hooks,
    /// Where the dump is staged (default: the system temp directory).
    pub scratch_dir: Option<PathBuf>,
    /// Only plan: a refusal is then not written to the audit log, since a dry run changes
    /// nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            selector: Selector::Latest,
            source: None,
            kind: BackupKind::Logical,
            database: None,
            to_database: None,
            clean: false,
            force: false,
            jobs: 2,
            globals: false,
            verify: true,
            no_owner: false,
            no_tablespaces: false,
            keep_going: false,
            hooks: Hooks::default(),
            scratch_dir: None,
            dry_run: false,
        }
    }
}

/// What a restore will do (printed by `--dry-run`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RestorePlan {
    /// The backup.
    pub backup: SnapshotInfo,
    /// Globals restored first, if asked.
    pub globals: Option<SnapshotInfo>,
    /// Target database.
    pub target_database: String,
    /// Target server (conninfo without password).
    pub target_server: String,
    /// Whether the target database will be created.
    pub create_database: bool,
    /// Whether existing objects are dropped first.
    pub clean: bool,
    /// pg_restore jobs.
    pub jobs: u32,
    /// Pre-restore hook.
    pub pre_hook: Option<String>,
    /// Post-restore hook.
    pub post_hook: Option<String>,
    /// The source's configured hooks, left out because this restore makes a copy under
    /// another name: they stop and start the application, which a side copy leaves alone.
    pub configured_hooks_skipped: bool,
    /// Compare with the backup-time truth afterwards.
    pub verify: bool,
    /// Skip ownership and privileges.
    pub no_owner: bool,
    /// Everything in the target's default tablespace; no tablespace from the globals.
    pub no_tablespaces: bool,
    /// pg_restore goes on past failing objects; the database is kept.
    pub keep_going: bool,
    /// Other sessions connected to an existing target database when the plan was made
    /// (`application_name` or user of each): `--clean` has to wait for their locks.
    pub sessions_on_target: Vec<String>,
    /// An overwrite (one transaction) that likely needs more locks than the target
    /// server's lock table holds, said before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_warning: Option<String>,
    /// Where the dump is staged ([`RestoreOptions::scratch_dir`]; `None`: the system's
    /// temporary directory). [`restore`]'s own `scratch_dir` argument wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_dir: Option<PathBuf>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RestoreReport {
    /// The plan carried out.
    pub plan: RestorePlan,
    /// Seconds fetching and checking the dump.
    pub fetch_secs: f64,
    /// Seconds in pg_restore (and globals).
    pub restore_secs: f64,
    /// The comparison with the backup-time truth, if run.
    pub comparison: Option<Comparison>,
    /// Whether roles and tablespaces (the globals backup `plan.globals`) were restored
    /// before the database.
    pub globals_restored: bool,
    /// The role the restore connected as, when the globals backup would have set its
    /// password: it kept the target's (see [`apply_globals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_password_of: Option<String>,
    /// Database properties (owner, grants, settings) that name a role the target server
    /// does not have, or that the restoring role may not set, with the reason: restore the
    /// globals first, or as a superuser, to get them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties_not_applied: Vec<String>,
    /// With `no_owner`: the backup's grants to roles, left out (see
    /// `--no-owner` in the README), and its revocations from PUBLIC, applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_owners: Option<WithoutOwners>,
    /// Total seconds.
    pub total_secs: f64,
}

/// What a `--no-owner` restore did with the backup's privileges.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct WithoutOwners {
    /// `GRANT` statements of the backup, not restored (they name roles).
    pub grants_left_out: usize,
    /// `REVOKE ... FROM PUBLIC` statements of the backup, applied.
    pub public_revocations_applied: usize,
}

/// With `--no-owner` pg_restore restores no privileges (their grants name roles the
/// target may lack), so every object gets PostgreSQL's defaults, and a function production
/// kept from PUBLIC (a SECURITY DEFINER one above all) would be anyone's to run on the
/// copy. Those revocations name no role: they are applied to `db`.
fn apply_public_revocations(conn: &PgConn, toc: &[TocEntry], db: &str) -> Result<WithoutOwners> {
    let mut revokes = Vec::new();
    let mut grants_left_out = 0;
    // the database's own ACL names the original database and is applied, renamed, with
    // its other properties (see `apply_database_properties`)
    for line in toc
        .iter()
        .filter(|e| e.desc == "ACL" && !e.tag.starts_with("DATABASE "))
        .flat_map(|e| e.defn.lines())
        .map(str::trim)
    {
        if line.starts_with("REVOKE ") && line.ends_with(" FROM PUBLIC;") {
            revokes.push(line);
        } else if line.starts_with("GRANT ") {
            grants_left_out += 1;
        }
    }
    if !revokes.is_empty() {
        // pg_restore creates event triggers last so that its own DDL fires none; these
        // statements come after, and an application's DDL-log trigger would log them (a
        // row production never had, and a comparison that fails)
        conn.quiet_for_event_triggers(db)
            .query(db, &revokes.join("\n"))?;
    }
    Ok(WithoutOwners {
        grants_left_out,
        public_revocations_applied: revokes.len(),
    })
}

/// A `--keep-going` restore that went past failing objects: it failed, and says what
/// failed, what the comparison found, and that the database stays.
fn kept_with_errors(db: &str, errors: &[String], comparison: Option<&Comparison>) -> Error {
    let listed = went_past(errors);
    let compared = match comparison {
        Some(c) if c.ok() => format!(
            "; every table matches the backup ({} tables, {} rows)",
            c.tables.len(),
            c.rows()
        ),
        Some(c) => format!("; differences from the backup: {}", c.describe_failures()),
        None => String::new(),
    };
    Error::postgres(format!(
        "restored into {db:?} with {} error(s) pg_restore went past (--keep-going): {listed}{compared}; the database is kept with everything that loaded",
        errors.len()
    ))
    .hint("fix what the errors name, in production (a function's search_path) or on the target (a missing role or extension, or a privilege the restoring role lacks: creating some extensions and event triggers needs a superuser), so that the backup restores whole")
}

/// The first of the `errors` pg_restore went past, for a message; each of the others is
/// a note of its own at the end of the command (none is lost to a long message).
fn went_past(errors: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut listed = errors[..errors.len().min(SHOWN)].join("; ");
    if errors.len() > SHOWN {
        listed.push_str(&format!(
            "; and {} more (each in a note below)",
            errors.len() - SHOWN
        ));
        for e in &errors[SHOWN..] {
            crate::sources::postgres::cluster::note(format!(
                "pg_restore went past (--keep-going): {e}"
            ));
        }
    }
    listed
}

/// Picks the backup `opts` selects.
///
/// # Errors
///
/// [`ErrorKind::NotFound`] when nothing matches; [`ErrorKind::Config`] when no database is
/// given and the matching backups are of several databases.
pub fn select(repo: &Repo, opts: &RestoreOptions) -> Result<SnapshotInfo> {
    if let Selector::Id(id) = &opts.selector {
        let b = of_source(repo.backup(id)?, opts.source.as_deref())?;
        if let Some(db) = opts
            .database
            .as_deref()
            .filter(|d| b.meta.database.as_deref() != Some(*d))
        {
            return Err(Error::config(format!(
                "backup {} is of database {}, not {db:?}",
                b.short_id(),
                b.meta
                    .database
                    .as_deref()
                    .map_or_else(|| "none (the cluster's roles)".to_string(), |d| format!("{d:?}"))
            ))
            .hint("leave --database out (the backup names its database), or give a backup of that database: `lifeboat restore --list --database NAME`"));
        }
        return Ok(b);
    }
    let source = opts.source.clone().ok_or_else(|| {
        Error::config("which source? --latest and --before need --source NAME")
            .hint("or give a snapshot id from `lifeboat list`")
    })?;
    let filter = ListFilter {
        source: Some(source.clone()),
        kind: Some(opts.kind),
        database: opts.database.clone(),
        until: match &opts.selector {
            Selector::Before(t) => Some(*t),
            _ => None,
        },
        ..ListFilter::default()
    };
    let mut matching = crate::repository::audit::logged_only(repo, list(repo, &filter)?)?;
    if opts.database.is_none() {
        // the newest backup of a multi-database source is of whichever database finished
        // last: restoring it unasked would bring back the wrong data
        let databases = super::list::databases_in(&matching);
        if databases.len() > 1 {
            return Err(Error::config(format!(
                "source {source:?} has {} backups of several databases: {}",
                opts.kind,
                quoted(&databases)
            ))
            .hint("pass --database NAME to choose one"));
        }
    }
    if let Some(found) = matching.pop() {
        return Ok(found);
    }
    let mut hint = "`lifeboat list` shows what the repository holds".to_string();
    if let Some(db) = &opts.database {
        // the usual reason is a mistyped or renamed database: say which ones have backups
        let others = list(
            repo,
            &ListFilter {
                source: Some(source.clone()),
                kind: Some(opts.kind),
                ..ListFilter::default()
            },
        )?;
        let names = super::list::databases_in(&others);
        if !names.is_empty() && !names.contains(&db.as_str()) {
            hint = format!(
                "source {source:?} has {} backups of: {}",
                opts.kind,
                quoted(&names)
            );
        }
    }
    Err(Error::not_found(format!(
        "no {} backup of source {source:?}{}{}",
        opts.kind,
        opts.database
            .as_ref()
            .map(|d| format!(" of database {d:?}"))
            .unwrap_or_default(),
        match &opts.selector {
            Selector::Before(t) => format!(" finished before {t}"),
            _ => String::new(),
        }
    ))
    .hint(hint))
}

/// `"a", "b"`: database names for a message.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|d| format!("{d:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `db` exists on the server, and whether it is a template database
/// (`template1`, `template0`, or one marked so): `None` when it does not exist.
fn database_state(conn: &PgConn, db: &str) -> Result<Option<bool>> {
    let row = conn.query(
        "postgres",
        &format!(
            "select datistemplate from pg_database where datname = {}",
            literal(db)
        ),
    )?;
    Ok(match row.trim() {
        "" => None,
        t => Some(t == "t"),
    })
}

/// Counts what a fresh `CREATE DATABASE` does not hold: relations, types, functions and a
/// few more objects in user schemas, user schemas other than `public`, extensions other
/// than plpgsql, large objects, event triggers, foreign servers and publications. A
/// database holding only functions or an empty schema is not empty: pg_restore would fail
/// on them halfway.
const USER_OBJECTS: &str = "\
with ns as (select oid, nspname from pg_namespace \
  where nspname not in ('pg_catalog', 'information_schema', 'pg_toast') \
  and nspname not like 'pg\\_temp\\_%' and nspname not like 'pg\\_toast\\_temp\\_%') \
select (select count(*) from pg_class where relnamespace in (select oid from ns)) \
 + (select count(*) from pg_type where typnamespace in (select oid from ns)) \
 + (select count(*) from pg_proc where pronamespace in (select oid from ns)) \
 + (select count(*) from pg_operator where oprnamespace in (select oid from ns)) \
 + (select count(*) from pg_collation where collnamespace in (select oid from ns)) \
 + (select count(*) from pg_ts_config where cfgnamespace in (select oid from ns)) \
 + (select count(*) from ns where nspname <> 'public') \
 + (select count(*) from pg_extension where extname <> 'plpgsql') \
 + (select count(*) from pg_largeobject_metadata) \
 + (select count(*) from pg_event_trigger) \
 + (select count(*) from pg_foreign_server) \
 + (select count(*) from pg_publication)";

fn database_is_empty(conn: &PgConn, db: &str) -> Result<bool> {
    Ok(conn.query(db, USER_OBJECTS)?.trim() == "0")
}

/// Computes the plan: which backup, which target, whether it may be written. A refusal
/// is written to the audit log, except for a dry run.
///
/// # Errors
///
/// [`ErrorKind::TargetNotEmpty`] for a non-empty target without `clean` + `force`, and the
/// errors of [`select`] and of reaching the target server.
pub fn plan(repo: &Repo, src: &SourceConfig, opts: &RestoreOptions) -> Result<RestorePlan> {
    // which backup, and flags that contradict each other: a usage mistake attempted
    // nothing, and is not a refused restore for the audit log
    let backup = select(repo, opts)?;
    if backup.meta.kind == BackupKind::Physical {
        // picked by id: its tar is no dump, and the pre-restore hook must not stop the
        // application for a restore that cannot run
        return Err(Error::config(format!(
            "backup {} is a physical backup: it restores the whole cluster into a directory",
            backup.short_id()
        ))
        .hint(format!(
            "lifeboat restore {} --kind physical --to-dir DIR (see the README's point-in-time recovery)",
            backup.short_id()
        )));
    }
    if backup.meta.kind == BackupKind::Globals {
        return Err(Error::config(
            "a globals backup is restored with --globals next to a database backup",
        )
        .hint("pick a logical or schema backup; add --globals to restore roles first"));
    }
    clean_needs_force(opts)?;
    target_name(opts)?;
    if let Some(fields) = backup
        .meta
        .truth
        .as_ref()
        .filter(|_| opts.verify && backup.meta.kind == BackupKind::Logical)
        .and_then(crate::sources::postgres::truth::Truth::unknown_fields)
    {
        // said before hours of loading, not after
        return Err(Error::config(format!(
            "backup {} was taken by a newer lifeboat ({}): its backup-time truth has fields this one ({}) does not know ({fields}), so the restore could not be checked",
            backup.short_id(),
            backup.meta.written_by.as_deref().unwrap_or("version not recorded"),
            crate::VERSION
        ))
        .hint("restore with a lifeboat at least as new as that one, or pass --no-verify to restore without the check"));
    }
    if opts.keep_going && opts.clean {
        return Err(Error::config(
            "--keep-going cannot go with --clean: an overwrite is one transaction, whole or nothing",
        )
        .hint("restore into a new database with --to-database NAME --keep-going, then swap it in"));
    }
    let planned = plan_inner(repo, src, opts, backup);
    if let Err(e) = &planned {
        // a refused restore is part of the record too; the refusal is what gets reported
        if !opts.dry_run {
            let _ =
                crate::repository::audit::append(repo, "restore", false, &format!("refused: {e}"));
        }
    }
    planned
}

/// Gives a refused password the hint for a restore onto another server (`--target-dsn`):
/// the generic hint names the source's password settings, which are never sent there.
/// A refused OS user (peer, ident) keeps its own hint: no password is involved.
#[must_use]
pub fn on_target_server(e: Error) -> Error {
    let os_user =
        crate::sources::postgres::conn::os_user_method(&e.message().to_lowercase()).is_some();
    if e.kind() == ErrorKind::Auth && !os_user {
        e.hint("the target server refused the password: give that server's password in PGPASSWORD or in ~/.pgpass for that server (in --target-dsn it would be on the command line, which every user of this host can read with ps); the source's password_file / password_command is never sent to another server")
    } else {
        e
    }
}

/// A `--to-database` PostgreSQL cannot take as given: empty, or longer than 63 bytes
/// (PostgreSQL would cut it and create another database than the one named, which a
/// second run then finds "not empty").
fn target_name(opts: &RestoreOptions) -> Result<()> {
    match &opts.to_database {
        Some(t) if t.is_empty() => {
            Err(Error::config("--to-database is empty").hint("give the new database's name"))
        }
        Some(t) if t.len() > 63 => Err(Error::config(format!(
            "database name {t:?} is {} bytes long; PostgreSQL allows 63",
            t.len()
        ))
        .hint("give a shorter --to-database")),
        _ => Ok(()),
    }
}

/// Refuses `jobs` connections (and lifeboat's own) that the target server has no free slots
/// for: pg_restore would take the last ones, and the application could not connect.
fn free_connections_for(conn: &PgConn, jobs: u32) -> Result<()> {
    match connections_short(conn, jobs)? {
        Some(short) => Err(Error::config(format!("--jobs {jobs} needs {short}"))
            .hint("give fewer --jobs; the application needs its connections too")),
        None => Ok(()),
    }
}

/// `N connections to the target server, which has M free (...)` when `jobs` pg_restore
/// jobs and lifeboat's own session do not fit; `None` when they do.
///
/// # Errors
///
/// When the server cannot be asked.
pub(crate) fn connections_short(conn: &PgConn, jobs: u32) -> Result<Option<String>> {
    let free = conn.query(
        conn.maintenance_db(),
        // another role's sessions show without their backend_type to a role without
        // pg_read_all_stats: counted as the clients they most likely are; this one is
        // lifeboat's own, counted below; and the role's own connection limit
        "select least(\
           current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int \
             - (select count(*) from pg_stat_activity where coalesce(backend_type, 'client backend') = 'client backend' and pid <> pg_backend_pid()), \
           coalesce((select nullif(rolconnlimit, -1) from pg_roles where rolname = current_user and not rolsuper) \
             - (select count(*) from pg_stat_activity where usename = current_user and pid <> pg_backend_pid()), 2147483647))",
    )?;
    Ok(match free.trim().parse::<i64>() {
        Ok(free) if i64::from(jobs) + 1 > free => Some(format!(
            "{} connections to the target server, which has {} free (max_connections less those in use and reserved, or the role's CONNECTION LIMIT less its sessions)",
            jobs + 1,
            free.max(0)
        )),
        _ => None,
    })
}

/// `--clean` alone is refused: dropping objects in a database must be asked for twice.
fn clean_needs_force(opts: &RestoreOptions) -> Result<()> {
    if opts.clean && !opts.force {
        return Err(Error::config(
            "--clean drops objects in the target and needs --force as well",
        )
        .hint("add --force to restore over the existing database, or leave out --clean to restore into a new or empty one (--to-database NAME)"));
    }
    Ok(())
}

fn plan_inner(
    repo: &Repo,
    src: &SourceConfig,
    opts: &RestoreOptions,
    backup: SnapshotInfo,
) -> Result<RestorePlan> {
    let original = backup.meta.database.clone().unwrap_or_default();
    let target = opts.to_database.clone().unwrap_or_else(|| original.clone());
    let conn = PgConn::from_source(src)?;
    // a standby (or a server that makes every transaction read-only) takes no restore:
    // said in the plan, so that a dry run says it too
    let read_only = conn.query(
        "postgres",
        "select case when pg_is_in_recovery() then 'a standby (in recovery)' \
         when current_setting('default_transaction_read_only') = 'on' then 'read-only (default_transaction_read_only)' \
         else '' end",
    )?;
    if !read_only.trim().is_empty() {
        return Err(Error::config(format!(
            "the target server is {}: it takes no restore",
            read_only.trim()
        ))
        .hint("restore onto a writable server with --target-dsn, such as the primary"));
    }
    let state = database_state(&conn, &target)?;
    // every database created afterwards would be born with the restored tables
    if state == Some(true) {
        return Err(Error::config(format!(
            "database {target:?} is a template: every database created from it afterwards would hold what is restored into it"
        ))
        .hint("restore into a new database with --to-database NAME"));
    }
    // roles with their attributes and password hashes can only be made by a superuser: a
    // lesser role (CREATEROLE) would leave roles half made, without passwords or LOGIN
    if opts.globals {
        let me = conn.query(
            "postgres",
            "select rolsuper::text || '|' || quote_ident(current_user) from pg_roles where rolname = current_user",
        )?;
        if let Some((false, role)) = me
            .trim()
            .split_once('|')
            .map(|(sup, role)| (sup == "true", role.to_string()))
        {
            return Err(Error::config(format!(
                "restoring roles (--globals) needs a superuser on the target, and {role} is not one"
            ))
            .hint("restore the roles as a superuser (--target-dsn \"user=postgres ...\"), then the database as this role; or leave out --globals and add --no-owner so that everything belongs to this role"));
        }
    }
    free_connections_for(&conn, opts.jobs.max(1))?;
    let exists = state.is_some();
    if exists && !database_is_empty(&conn, &target)? && !(opts.clean && opts.force) {
        return Err(Error::new(
            ErrorKind::TargetNotEmpty,
            format!("database {target:?} exists and is not empty"),
        )
        .hint(if backup.meta.database.as_deref() == Some(target.as_str()) {
            "restore into a new database with --to-database NAME, or overwrite it with --clean --force".to_string()
        } else {
            // a copy under another name: most often what a killed restore left half-done
            format!("restore into a new database with --to-database NAME, or overwrite it with --clean --force; if it is what a restore that was killed left (kill -9, a lost session), drop it first: dropdb {}", crate::ops::runbook::sh(&target))
        }));
    }
    let sessions_on_target = if exists {
        sessions_on(&conn, &target)?
    } else {
        Vec::new()
    };
    let lock_warning = if exists && opts.clean {
        overwrite_lock_warning(&conn, &backup)?
    } else {
        None
    };
    let globals = if opts.globals {
        Some(globals_for(repo, &backup)?.ok_or_else(|| {
            Error::not_found(format!(
                "no globals backup of source {:?}",
                backup.meta.source
            ))
            .hint(format!(
                "take one with `lifeboat backup --source {} --kind globals`, or restore without --globals",
                backup.meta.source
            ))
        })?)
    } else {
        None
    };
    // the configured hooks stop and start the application: they belong to a restore of its
    // database under its own name (over it, or after it was lost), not to a side copy made
    // next to it (`--to-database`), which would take production down for nothing
    let side_copy = target != original;
    let configured = |hook: &Option<String>| hook.clone().filter(|_| !side_copy);
    let configured_hooks_skipped = side_copy
        && (src.hooks.pre_restore.is_some() && opts.hooks.pre_restore.is_none()
            || src.hooks.post_restore.is_some() && opts.hooks.post_restore.is_none());
    Ok(RestorePlan {
        scratch_dir: opts.scratch_dir.clone(),
        target_server: conn.conninfo(&target),
        create_database: !exists,
        clean: opts.clean,
        jobs: opts.jobs.max(1),
        pre_hook: opts
            .hooks
            .pre_restore
            .clone()
            .or_else(|| configured(&src.hooks.pre_restore)),
        post_hook: opts
            .hooks
            .post_restore
            .clone()
            .or_else(|| configured(&src.hooks.post_restore)),
        configured_hooks_skipped,
        verify: opts.verify && backup.meta.kind == BackupKind::Logical,
        no_owner: opts.no_owner,
        no_tablespaces: opts.no_tablespaces,
        keep_going: opts.keep_going,
        sessions_on_target,
        lock_warning,
        target_database: target,
        globals,
        backup,
    })
}

/// Whether an overwrite of `backup` (one transaction: every object dropped and made again,
/// each index and large object included, holds a lock until the end) likely exceeds the
/// lock table of the server `conn` reaches: a rough count from the backup-time truth
/// (tables three times, for their indexes; sequences and large objects twice) against
/// `max_locks_per_transaction × (max_connections + max_prepared_transactions)`.
fn overwrite_lock_warning(conn: &PgConn, backup: &SnapshotInfo) -> Result<Option<String>> {
    let Some(truth) = &backup.meta.truth else {
        return Ok(None);
    };
    let needed = 3 * truth.tables.len() as u64
        + 2 * truth.sequences.len() as u64
        + 2 * truth.large_objects.count;
    let row = conn.query(
        "postgres",
        "select current_setting('max_locks_per_transaction')::bigint, \
         current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint",
    )?;
    let Some((per, backends)) = row.trim().split_once('|') else {
        return Ok(None);
    };
    let (Ok(per), Ok(backends)) = (per.parse::<u64>(), backends.parse::<u64>()) else {
        return Ok(None);
    };
    let slots = per * backends.max(1);
    Ok((needed > slots).then(|| {
        format!(
            "this overwrite runs as one transaction and needs roughly {needed} locks ({} tables with their indexes, {} sequences, {} large objects), more than the target server's lock table holds (about {slots}: max_locks_per_transaction {per}); it will likely fail with \"out of shared memory\" and change nothing. Raise max_locks_per_transaction to at least {} (it needs a restart), or restore into a new database (--to-database NEW), which is not one transaction, and swap the names",
            truth.tables.len(),
            truth.sequences.len(),
            truth.large_objects.count,
            needed.div_ceil(backends.max(1)) * 3 / 2
        )
    }))
}

/// The other sessions connected to `db`, each as its application name or else its user.
fn sessions_on(conn: &PgConn, db: &str) -> Result<Vec<String>> {
    let sql = format!(
        // a role without pg_read_all_stats sees other roles' sessions without their
        // backend_type; background workers have no user
        "select coalesce(nullif(application_name, ''), usename, '?') from pg_stat_activity \
         where datname = {} and pid <> pg_backend_pid() and usesysid is not null \
         and coalesce(backend_type, 'client backend') = 'client backend' \
         order by 1",
        literal(db)
    );
    Ok(conn
        .query("postgres", &sql)?
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// `b`, when it is a backup of `source` (or no source was named): a backup picked by id
/// restored with another source's connection and hooks would overwrite that source's
/// database with this one's data.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the backup's own source.
pub(crate) fn of_source(b: SnapshotInfo, source: Option<&str>) -> Result<SnapshotInfo> {
    match source {
        Some(s) if s != b.meta.source => Err(Error::config(format!(
            "backup {} is a backup of source {:?}, not of {s:?}",
            b.short_id(),
            b.meta.source
        ))
        .hint(format!(
            "leave --source out (the backup names its source, {0}), or give a backup of {s}: `lifeboat restore --list --source {s}`",
            b.meta.source
        ))),
        _ => Ok(b),
    }
}

/// The globals (roles, tablespaces) backup that goes with `backup`: the one of the same
/// recovery point, else the newest taken up to an hour after it.
///
/// # Errors
///
/// When the repository cannot be listed.
pub fn globals_for(repo: &Repo, backup: &SnapshotInfo) -> Result<Option<SnapshotInfo>> {
    // a roles script written into the repository outside lifeboat would run as superuser
    let candidates = crate::repository::audit::logged_only(
        repo,
        list(
            repo,
            &ListFilter {
                source: Some(backup.meta.source.clone()),
                kind: Some(BackupKind::Globals),
                until: Some(
                    backup
                        .meta
                        .finished_at
                        .checked_add(jiff::SignedDuration::from_hours(1))
                        .unwrap_or(backup.meta.finished_at),
                ),
                ..ListFilter::default()
            },
        )?,
    )?;
    let same_point = candidates
        .iter()
        .rev()
        .find(|g| {
            g.meta.recovery_point.is_some() && g.meta.recovery_point == backup.meta.recovery_point
        })
        .cloned();
    Ok(same_point.or_else(|| candidates.last().cloned()))
}

/// Runs a `pg_dumpall --globals-only` script. Roles that already exist (the superuser
/// always does) are expected errors; any other error is reported. The role the restore
/// connects as keeps its password on the target: the backup's (production's) would lock
/// the restore out of the server it is writing to, and after a host loss that password
/// may be gone with the host. With `no_tablespaces` the script's tablespaces are left out
/// (their directories are the source host's). Returns that role's name when the script
/// would have set its password.
///
/// # Errors
///
/// [`ErrorKind::Postgres`] naming the unexpected errors.
pub fn apply_globals(
    conn: &PgConn,
    file: &std::path::Path,
    no_tablespaces: bool,
) -> Result<Option<String>> {
    let me = conn.query("postgres", "select current_user")?;
    // in the encoding pg_dumpall names at its top: any bytes (a SQL_ASCII role name)
    let script = std::fs::read(file)
        .map(|b| crate::sources::postgres::text::decode(&b))
        .map_err(|e| Error::io(file.display(), e))?;
    let (script, kept) = keep_password_of(&script, &me);
    let script = if no_tablespaces {
        without_tablespaces(&script)
    } else {
        script
    };
    // the script's ALTER ROLE … PASSWORD statements carry production's password hashes:
    // not into a target that logs statements (a superuser's session may say so; another's
    // runs the script as it is)
    let script = format!("{QUIET_LOG}\n{script}");
    let file = file.with_extension("applied.sql");
    std::fs::write(&file, crate::sources::postgres::text::encode(&script))
        .map_err(|e| Error::io(file.display(), e))?;
    let out = conn
        .command("psql", "postgres")
        // the SQLSTATE with each error: a server answering in German writes FEHLER
        .args(["-X", "-q", "-w", "-v", "VERBOSITY=verbose", "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_program(&conn.bin().program("psql"), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // a role or tablespace the server has already (42710 duplicate_object) is expected
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| sqlstate(l).is_some_and(|c| c != "42710"))
        .collect();
    if !out.status.success() || !unexpected.is_empty() {
        let err = Error::postgres(format!(
            "restoring globals: {}",
            if unexpected.is_empty() {
                stderr.trim().to_string()
            } else {
                unexpected.join("; ")
            }
        ));
        // a tablespace's directory is this host's: taken by the source's own tablespace
        // (55006) or missing on another host (58P01)
        // 22021 invalid byte sequence: role names in bytes that are not UTF-8 (a SQL_ASCII
        // cluster's, written by a Latin-1 client) cannot go into a UTF-8 server
        let not_utf8 = unexpected.iter().any(|l| sqlstate(l) == Some("22021"));
        // psql went on past the error (the script cannot run as one transaction: CREATE
        // TABLESPACE refuses one), so the target has changed
        let err = if out.status.success() {
            err.with_note(
                "the rest of the globals script ran: the roles it could create or alter are on the target now (restoring the globals again is safe: roles that exist are expected)",
            )
        } else {
            err
        };
        return Err(
            if stderr.contains("TABLESPACE") || stderr.contains("tablespace") {
                err.hint("the target cannot have the source's tablespaces: restore with --no-tablespaces (tables and indexes go to the default tablespace), or create them on the target first")
            } else if not_utf8 {
                err.hint("the backup's role names are not UTF-8 (a SQL_ASCII cluster) and this server's encoding is UTF-8: restore the globals onto a server created with `initdb -E SQL_ASCII`, or rename those roles in production")
            } else {
                err.hint("see the lines above; the globals script is pg_dumpall's, restore it by hand with psql to go on")
            },
        );
    }
    Ok(kept.then_some(me))
}

/// Keeps the session's statements out of the server log when its role is a superuser.
const QUIET_LOG: &str = "DO $lifeboat$BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN PERFORM set_config('log_statement', 'none', false); PERFORM set_config('log_min_duration_statement', '-1', false); PERFORM set_config('log_min_error_statement', 'panic', false); END IF; END$lifeboat$;";

/// A `pg_dumpall --globals-only` script without its tablespaces. A statement starts on a
/// line of its own; only a string literal (a comment's text) goes on over more lines, so a
/// statement ends at the first line end outside quotes.
fn without_tablespaces(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut in_literal = false;
    let mut dropping = false;
    for l in script.lines() {
        if !in_literal {
            let on = l.contains(" ON TABLESPACE ");
            dropping = l.starts_with("CREATE TABLESPACE ")
                || l.starts_with("ALTER TABLESPACE ")
                || l.starts_with("COMMENT ON TABLESPACE ")
                || (on
                    && (l.starts_with("GRANT ")
                        || l.starts_with("REVOKE ")
                        || l.starts_with("SECURITY LABEL ")));
        }
        // a quote inside a literal is doubled, so an odd count opens or closes one
        if l.matches('\'').count() % 2 == 1 {
            in_literal = !in_literal;
        }
        if !dropping {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `script` without the `PASSWORD '…'` of role `me`'s `ALTER ROLE` line (pg_dumpall writes
/// one line per role, the name quoted only when it must be), and whether there was one.
fn keep_password_of(script: &str, me: &str) -> (String, bool) {
    let prefixes = [
        format!("ALTER ROLE {me} WITH "),
        format!("ALTER ROLE {} WITH ", ident(me)),
    ];
    const CLAUSE: &str = " PASSWORD '";
    let mut kept = false;
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let own = prefixes.iter().any(|p| line.starts_with(p.as_str()));
        match line.find(CLAUSE).filter(|_| own) {
            Some(at) => {
                // a stored hash (SCRAM or md5) has no quote in it
                let value = at + CLAUSE.len();
                let end = line[value..]
                    .find('\'')
                    .map_or(line.len(), |e| value + e + 1);
                out.push_str(&line[..at]);
                out.push_str(&line[end..]);
                kept = true;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    (out, kept)
}

/// Writes the stream of `backup` to `dest`, checking its hash.
///
/// # Errors
///
/// [`ErrorKind::Integrity`] when a blob is damaged or the stream hash differs.
pub fn fetch(repo: &Repo, backup: &SnapshotInfo, dest: &std::path::Path) -> Result<u64> {
    repo.with_indexed(|indexed| fetch_indexed(indexed, backup, dest))
}

fn fetch_indexed(
    indexed: &rustic_core::Repository<rustic_core::IndexedFullStatus>,
    backup: &SnapshotInfo,
    dest: &std::path::Path,
) -> Result<u64> {
    let file = std::fs::File::create(dest).map_err(|e| Error::io(dest.display(), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let bytes = dump_checked(indexed, backup, &mut out).map_err(|e| {
        // which disk is full is what the operator must know
        if crate::error::says_disk_full(&e.to_string()) {
            e.with_note(format!("it was being written to {}", dest.display()))
        } else {
            e
        }
    })?;
    out.flush().map_err(|e| Error::io(dest.display(), e))?;
    Ok(bytes)
}

/// Writes the stream of `backup` into `out` and checks its length and hash at the end.
///
/// # Errors
///
/// [`ErrorKind::Integrity`] when a blob is damaged or the stream differs from what was
/// stored; a write error from `out` as [`ErrorKind::Unavailable`].
pub fn dump_checked(
    indexed: &rustic_core::Repository<rustic_core::IndexedFullStatus>,
    backup: &SnapshotInfo,
    out: &mut dyn Write,
) -> Result<u64> {
    let snap: SnapshotFile = indexed
        .get_snapshots(&[backup.id.as_str()])?
        .pop()
        .ok_or_else(|| Error::not_found(format!("snapshot {} disappeared", backup.short_id())))?;
    let node = indexed.node_from_snapshot_and_path(&snap, &backup.meta.path)?;
    let mut w = HashingWriter {
        inner: out,
        hasher: xxhash_rust::xxh3::Xxh3::new(),
        bytes: 0,
        write_error: None,
    };
    let damaged = || {
        // --before takes a backup finished at or before the time: a second earlier leaves
        // this one out
        let earlier = backup
            .meta
            .finished_at
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .unwrap_or(backup.meta.finished_at)
            .strftime("%Y-%m-%dT%H:%M:%SZ");
        // the same kind of backup, of the same source and database: a physical one is
        // replaced by an older physical one (a point in time still reaches past it)
        let same = match (backup.meta.kind, backup.meta.database.as_deref()) {
            (BackupKind::Physical, _) => " --kind physical --to-dir DIR".to_string(),
            (kind, Some(db)) => {
                format!(" --kind {kind} --database {}", crate::ops::runbook::sh(db))
            }
            (kind, None) => format!(" --kind {kind}"),
        };
        format!(
            "the repository is damaged: `lifeboat verify --all --read-data` names every damaged backup; restore an older one (`lifeboat restore --source {}{same} --before \"{earlier}\"`, with your other options but not --latest or an id) or from an offsite copy",
            crate::ops::runbook::sh(&backup.meta.source)
        )
    };
    indexed.dump(&node, &mut w).map_err(|e| {
        if let Some(w) = w.write_error.take() {
            return Error::new(
                ErrorKind::Unavailable,
                format!(
                    "writing backup {} where it is staged failed: {w}",
                    backup.short_id()
                ),
            )
            .hint("the backup itself is fine: free space in the scratch directory (--scratch-dir, LIFEBOAT_SCRATCH_DIR or TMPDIR; it needs room for one dump) and run the command again");
        }
        // rustic's text runs to dozens of lines (context, a bug-report invitation, a
        // backtrace): its first line says what is wrong
        let text = e.to_string();
        Error::integrity(format!(
            "backup {} cannot be read: {}",
            backup.short_id(),
            crate::error::headline(&text)
        ))
        .hint(damaged())
    })?;
    let hash = format!("{:032x}", w.hasher.digest128());
    if hash != backup.meta.stream_hash || w.bytes != backup.meta.logical_bytes {
        return Err(Error::integrity(format!(
            "backup {} does not match what was stored (hash or length differs)",
            backup.short_id()
        ))
        .hint(damaged()));
    }
    Ok(w.bytes)
}

struct HashingWriter<W> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
    /// The first write error of `inner` (a full scratch disk): the repository's reader
    /// reports it as its own failure, which is not what went wrong.
    write_error: Option<std::io::Error>,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.inner.write(buf) {
            Ok(n) => n,
            Err(e) => {
                let again = std::io::Error::new(e.kind(), e.to_string());
                self.write_error.get_or_insert(e);
                return Err(again);
            }
        };
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.write_error
                .get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        })
    }
}

/// What a restore leaves out of the backup.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Skip {
    /// Owners and grants (`--no-owner --no-privileges`): the roles are not there.
    pub owner: bool,
    /// Tablespaces (`--no-tablespaces`): everything goes to the default one.
    pub tablespaces: bool,
    /// Objects that fail to restore: pg_restore goes on past them (`--keep-going`).
    pub failing: bool,
    /// Event triggers and subscriptions (only a superuser may create one): left out of
    /// the restore's list.
    pub superuser_only: bool,
}

/// How many event triggers and subscriptions the dump at `dump` holds.
pub(crate) fn superuser_only_in(dump: &std::path::Path) -> usize {
    use crate::sources::postgres::definitions::SUPERUSER_ONLY;
    dump_toc(dump).map_or(0, |toc| {
        toc.iter()
            .filter(|e| SUPERUSER_ONLY.contains(&e.desc.as_str()))
            .count()
    })
}

/// `pg_restore -l` of `dump` without its event triggers and subscriptions, written to a
/// file next to it for `pg_restore -L`.
fn list_without_superuser_only(
    conn: &PgConn,
    db: &str,
    dump: &std::path::Path,
) -> Result<tempfile::NamedTempFile> {
    let mut cmd = conn.command("pg_restore", db);
    cmd.arg("--list").arg(dump);
    let out = crate::sources::postgres::cluster::run_client_with(cmd, true, None)
        .map_err(|e| missing_program(&conn.bin().program("pg_restore"), e))?;
    if !out.status.success() {
        return Err(conn.classify(
            &String::from_utf8_lossy(&out.stderr),
            "listing the dump's contents",
        ));
    }
    // `ID; TABLEOID OID DESC SCHEMA NAME OWNER`: the description follows the two numbers
    if out.stdout.is_empty() {
        // an empty list would restore nothing, and say nothing
        return Err(Error::internal(
            "pg_restore --list printed no table of contents",
        ));
    }
    // the object, and its comment or security label (which pg_restore -L would apply to
    // an object that is not there, and fail)
    let left_out: Vec<String> = crate::sources::postgres::definitions::SUPERUSER_ONLY
        .iter()
        .flat_map(|kind| {
            [
                format!("{kind} "),
                format!("COMMENT - {kind} "),
                format!("SECURITY LABEL - {kind} "),
            ]
        })
        .collect();
    let kept: Vec<&[u8]> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| {
            l.starts_with(b";")
                || !l
                    .splitn(4, |b| *b == b' ')
                    .nth(3)
                    .is_some_and(|rest| left_out.iter().any(|p| rest.starts_with(p.as_bytes())))
        })
        .collect();
    let dir = dump.parent().unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".lifeboat-list-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir.display(), e))?;
    std::io::Write::write_all(&mut file, &kept.join(&b'\n'))
        .map_err(|e| Error::io(file.path().display(), e))?;
    Ok(file)
}

/// The table of contents of the fetched dump at `dump` (header and TOC only: cheap).
///
/// # Errors
///
/// [`ErrorKind::Integrity`] when it cannot be read.
pub(crate) fn dump_toc(dump: &std::path::Path) -> Result<Vec<TocEntry>> {
    let file = std::fs::File::open(dump).map_err(|e| Error::io(dump.display(), e))?;
    crate::sources::postgres::archive::read_toc(file)
        .map(|(_, toc)| toc)
        .map_err(|e| Error::integrity(format!("reading the dump's table of contents: {e}")))
}

/// The encoding and locale clause of a `CREATE DATABASE` for the dump whose table of
/// contents is `toc`: as the dumped database had them (its `DATABASE` entry), else the
/// encoding the backup recorded.
pub(crate) fn create_options(
    toc: Option<&[TocEntry]>,
    truth: &crate::sources::postgres::truth::Truth,
) -> String {
    let from_archive = toc
        .map(crate::sources::postgres::archive::create_database_options)
        .unwrap_or_default();
    if from_archive.is_empty() {
        format!(
            " ENCODING = {}",
            literal(truth.encoding.as_deref().unwrap_or("UTF8"))
        )
    } else {
        from_archive
    }
}

/// A `CREATE DATABASE` of `target` the server refused: said as such (not as a fault of
/// the `postgres` database the statement ran in), and for the backup's locale with the
/// ways on.
pub(crate) fn create_refused(e: &Error, target: &str, options: &str) -> Error {
    let detail = e
        .message()
        .strip_prefix("database \"postgres\": ")
        .unwrap_or(e.message());
    let out = Error::new(e.kind(), format!("creating database {target:?}: {detail}"));
    let m = detail.to_ascii_lowercase();
    if !(m.contains("locale") || m.contains("collation") || m.contains("encoding")) {
        return match e.hint_text() {
            Some(h) => out.hint(h),
            None => out,
        };
    }
    out.hint(format!(
        "the backed-up database was created with{options}, which this server cannot give a new database: install that locale on the server's host (Debian: dpkg-reconfigure locales, then restart PostgreSQL), or create the database yourself with a locale the server has (createdb -T template0 -E ENCODING --locale=LOCALE NAME) and restore into it with --to-database NAME"
    ))
}

/// `pg_restore` of `sections` (all when empty) of `dump` into `db`; with `skip.failing`,
/// the errors it went past (the first line of each).
///
/// # Errors
///
/// The classified pg_restore error.
pub(crate) fn run_pg_restore(
    conn: &PgConn,
    dump: &std::path::Path,
    db: &str,
    jobs: u32,
    clean: bool,
    skip: Skip,
    sections: &[&str],
) -> Result<Vec<String>> {
    let conn = &conn.with_english_messages(db);
    // pg_restore creates event triggers near the end, and then refreshes materialized
    // views, which fires them: an application's DDL-log trigger would log a row
    // production never had (and the comparison would fail); tables get their own
    // triggers after their data, so a replica session changes nothing else
    let conn = &if !skip.superuser_only && superuser_only_in(dump) > 0 {
        conn.quiet_for_event_triggers(db)
    } else {
        conn.clone()
    };
    let mut cmd = conn.command("pg_restore", db);
    cmd.arg("--no-password");
    if !skip.failing {
        cmd.arg("--exit-on-error");
    }
    if !clean {
        cmd.arg(format!("--jobs={}", jobs.max(1)));
    }
    for s in sections {
        cmd.arg(format!("--section={s}"));
    }
    if clean {
        // drops and loads stand or fall together (see `restore`)
        cmd.args(["--clean", "--if-exists", "--single-transaction"]);
    }
    if skip.owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    if skip.tablespaces {
        cmd.arg("--no-tablespaces");
    }
    let list = if skip.superuser_only {
        Some(list_without_superuser_only(conn, db, dump)?)
    } else {
        None
    };
    if let Some(l) = &list {
        cmd.arg("--use-list").arg(l.path());
    }
    cmd.arg(dump);
    let out = crate::sources::postgres::cluster::run_client(cmd)
        .map_err(|e| missing_program(&conn.bin().program("pg_restore"), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(Vec::new());
    }
    // gone past: each failure's first line, if pg_restore got to the end ("errors ignored")
    if skip.failing && stderr.contains("errors ignored on restore") {
        return Ok(stderr
            .lines()
            .filter(|l| l.contains("error:") && !l.contains("errors ignored on restore"))
            .map(|l| {
                l.trim()
                    .trim_start_matches("pg_restore: error: ")
                    .to_string()
            })
            .collect());
    }
    Err(conn.classify(&stderr, &format!("pg_restore into {db:?}")))
}

/// Runs a restore hook; `passfile` is a password file for the target server (see
/// [`PgConn::write_passfile`]) handed over in `PGPASSFILE`.
fn run_hook(
    name: &str,
    cmd: &str,
    plan: &RestorePlan,
    passfile: Option<&std::path::Path>,
) -> Result<()> {
    let mut command = std::process::Command::new("sh");
    if let Some(p) = passfile {
        command.env("PGPASSFILE", p);
    }
    command
        .env("LIFEBOAT_TARGET_DATABASE", &plan.target_database)
        .env("LIFEBOAT_TARGET_CONNINFO", &plan.target_server);
    run_hook_command(name, cmd, &plan.backup, command)
}

/// Runs hook `cmd` (`name`: pre-restore, post-restore) with `sh -c` through `command`
/// (a `sh` command carrying the target's variables), adding the backup's; fails when it
/// does.
pub(crate) fn run_hook_command(
    name: &str,
    cmd: &str,
    backup: &SnapshotInfo,
    mut command: std::process::Command,
) -> Result<()> {
    use std::io::IsTerminal;
    use std::os::{fd::AsFd, unix::process::CommandExt};
    remove_secret_env(&mut command)
        .arg("-c")
        .arg(cmd)
        .env("LIFEBOAT_HOOK", name)
        .env("LIFEBOAT_SNAPSHOT_ID", &backup.id)
        .env(
            "LIFEBOAT_SNAPSHOT_TIME",
            backup.meta.finished_at.to_string(),
        )
        .env("LIFEBOAT_SOURCE", &backup.meta.source)
        .env("LIFEBOAT_KIND", backup.meta.kind.as_str())
        .env(
            "LIFEBOAT_DATABASE",
            backup.meta.database.clone().unwrap_or_default(),
        )
        .stdin(Stdio::null())
        // its output on stderr: stdout is lifeboat's, one JSON document with --json
        .stdout(
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_or_else(|_| Stdio::null(), Stdio::from),
        );
    // without a terminal (cron, a service, automation), in its own group, stopped with
    // lifeboat when a SIGTERM interrupts it while the hook runs (a migration must not go
    // on unsupervised); what it leaves running once done (the application it started)
    // stays. At a terminal it stays in lifeboat's group: Ctrl-C reaches it directly, and
    // a prompt (sudo) can read the terminal, which a background group could not
    let own_group = !(std::io::stdin().is_terminal() || std::io::stderr().is_terminal());
    if own_group {
        command.process_group(0);
    }
    // its output goes to the terminal: no progress display is drawn over it meanwhile
    let status = crate::status::others_writing(|| {
        let _doing = crate::status::doing(format!("running the {name} hook"));
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("running the {name} hook"), e))?;
        let pgid = child.id() as i32;
        if own_group {
            crate::sources::postgres::cluster::register_group(pgid);
            // an interrupt just before it was registered has already cleaned up
            if crate::sources::postgres::cluster::interrupted() {
                crate::sources::postgres::cluster::kill_group(pgid);
            }
        }
        let status = child.wait();
        if own_group {
            crate::sources::postgres::cluster::forget_group(pgid);
        }
        status.map_err(|e| Error::io(format!("running the {name} hook"), e))
    })?;
    if !status.success() {
        return Err(Error::new(
            ErrorKind::CheckFailed,
            // not its command line: it may hold a token, and this message goes into the
            // audit log, which keeps everything for ever
            format!("the {name} hook failed ({status})"),
        )
        .hint(format!("its output, if any, is above; fix the {name} hook (the configuration's, or the one given on the command line) or run it by hand")));
    }
    Ok(())
}

/// Statements recreating the database's own properties under `target`: settings (also per
/// role), comment, grants, security labels and, unless `no_owner`, the owner.
fn database_properties(
    statements: &[String],
    original: &str,
    target: &str,
    no_owner: bool,
) -> Vec<String> {
    statements
        .iter()
        .flat_map(|s| script::statements(s))
        .filter(|s| !(no_owner && s.starts_with("ALTER DATABASE ") && s.contains(" OWNER TO ")))
        .map(|s| script::rename_database(&s, original, target))
        .collect()
}

/// Applies the database's `lc_monetary` setting to the new database `target` before its
/// data is loaded: `money` values are dumped as that locale writes them (`1.234,50 €`) and
/// read back only under it, as `pg_restore --create` does by setting it first. The other
/// properties wait until the data is in (see [`apply_database_properties`]), which also
/// reports this one if it fails here.
pub(crate) fn apply_input_settings(conn: &PgConn, truth: &Truth, original: &str, target: &str) {
    for stmt in database_properties(&truth.database_properties, original, target, true) {
        let lower = stmt.to_ascii_lowercase();
        if lower.starts_with("alter database ") && lower.contains(" set lc_monetary ") {
            let _ = conn.query_in(target, &stmt, truth.encoding.as_deref());
        }
    }
}

/// `conn` in the session a dump's `money` values need ([`Truth::lc_monetary`]), tried on
/// the server once.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] when the server lacks that locale (it would refuse or
/// misread the values), naming it; the server's own error when it cannot be reached.
pub(crate) fn money_session(conn: &PgConn, truth: Option<&Truth>) -> Result<PgConn> {
    let (Some(options), Some(lc)) = (
        truth.and_then(Truth::money_options),
        truth.and_then(|t| t.lc_monetary.as_deref()),
    ) else {
        return Ok(conn.clone());
    };
    let with = conn.with_options(&options);
    match with.query(conn.maintenance_db(), "select 1") {
        Ok(_) => Ok(with),
        Err(e) if e.message().contains("lc_monetary") => Err(Error::config(format!(
            "the backup's money values are written as locale {lc:?} writes them (the source's lc_monetary), and this server cannot use that locale: {}",
            crate::error::one_line(&e)
        ))
        .hint(format!(
            "install locale {lc:?} on the server's host (Debian: dpkg-reconfigure locales), restart PostgreSQL, and run this again"
        ))),
        Err(e) => Err(e),
    }
}

/// Applies the database's own properties (see [`database_properties`]) to `target`, one
/// statement at a time. A statement naming a role this server does not have (a restore onto
/// a new server without the globals, a drill's throw-away cluster), or one the restoring
/// role may not run (a superuser-only setting), is skipped and returned with the reason;
/// any other failure stops the restore.
///
/// # Errors
///
/// The first statement that fails for another reason.
pub(crate) fn apply_database_properties(
    conn: &PgConn,
    truth: &Truth,
    original: &str,
    target: &str,
    no_owner: bool,
) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    // a `default_transaction_read_only = on` applied first must not stop the rest
    let conn = conn.with_options("-c default_transaction_read_only=off -c statement_timeout=0");
    for stmt in database_properties(&truth.database_properties, original, target, no_owner) {
        // in the dump's encoding: its names and values as the dump holds them
        if let Err(e) = conn.query_in(target, &stmt, truth.encoding.as_deref()) {
            let text = e.to_string();
            let state = sqlstate(&text);
            let missing_role = state == Some(UNDEFINED_OBJECT)
                || (text.contains("role ") && text.contains("does not exist"));
            // a superuser-only setting, a setting for a superuser role: the restoring role
            // may not, which is no reason to throw the restored data away
            let not_allowed = state == Some(INSUFFICIENT_PRIVILEGE)
                || text.contains("permission denied")
                || text.contains("must be ");
            if !(missing_role || not_allowed) {
                return Err(e);
            }
            let shown: String = stmt.chars().take(80).collect();
            skipped.push(format!(
                "{shown}{}: {}",
                if shown.len() < stmt.len() { "…" } else { "" },
                crate::error::headline(&text)
            ));
        }
    }
    Ok(skipped)
}

/// Carries out `plan`.
///
/// # Errors
///
/// Hook failures ([`ErrorKind::CheckFailed`]), a damaged backup ([`ErrorKind::Integrity`],
/// before the target is touched), pg_restore errors ([`ErrorKind::Postgres`]), or a
/// restored database that differs from the backup-time truth ([`ErrorKind::Integrity`]).
pub fn restore(
    repo: &Repo,
    src: &SourceConfig,
    plan: RestorePlan,
    scratch_dir: Option<&std::path::Path>,
) -> Result<RestoreReport> {
    let details = format!(
        "source {}: backup {} of {:?} into database {:?} ({})",
        plan.backup.meta.source,
        plan.backup.short_id(),
        plan.backup.meta.database.as_deref().unwrap_or("-"),
        plan.target_database,
        plan.target_server
    );
    let scratch_dir = scratch_dir
        .map(std::path::Path::to_path_buf)
        .or_else(|| plan.scratch_dir.clone());
    // which ran, not their command lines: those may hold a token, and the log keeps
    // everything for ever
    let hooks = [("pre-hook", &plan.pre_hook), ("post-hook", &plan.post_hook)]
        .iter()
        .filter_map(|(what, h)| h.as_ref().map(|_| (*what).to_string()))
        .collect::<Vec<_>>();
    let hooks = if hooks.is_empty() {
        String::new()
    } else {
        format!("; with its {}", hooks.join(" and "))
    };
    let result = restore_inner(repo, src, plan, scratch_dir.as_deref());
    // what an incident record needs: how long it took, and whether it was checked; a
    // failed restore's entry says why, as a failed backup's does
    let details = match &result {
        Ok(r) => format!(
            "{details}: restored in {:.1}s (fetch {:.1}s, restore {:.1}s); {}{}{hooks}",
            r.total_secs,
            r.fetch_secs,
            r.restore_secs,
            match &r.comparison {
                Some(c) => format!(
                    "verified against the backup-time truth: {} tables, {} sequences",
                    c.tables.len(),
                    c.sequences
                ),
                None => "not compared with a backup-time truth".to_string(),
            },
            if r.globals_restored {
                "; roles restored first (--globals)"
            } else {
                ""
            }
        ),
        // stopped by an interrupt, whatever failed then is the stop's: the entry says so
        // whether this thread or the interrupt handler logs first
        Err(e) if crate::sources::postgres::cluster::interrupted() => format!(
            "{details}: interrupted (Ctrl-C, SIGTERM, or stop_all) before it finished: {}{hooks}",
            e.message()
        ),
        Err(e) => format!("{details}: {}{hooks}", e.message()),
    };
    crate::repository::audit::record(repo, "restore", result, &details)
        .map_err(Error::or_interrupted)
}

fn restore_inner(
    repo: &Repo,
    src: &SourceConfig,
    plan: RestorePlan,
    scratch_dir: Option<&std::path::Path>,
) -> Result<RestoreReport> {
    let clock = Instant::now();
    // before the pre-hook stops anything: a server that cannot read the dump's money
    // values is known now
    let conn = money_session(&PgConn::from_source(src)?, plan.backup.meta.truth.as_ref())?;
    let scratch =
        crate::sources::postgres::cluster::ScratchDir::new("lifeboat-restore-", scratch_dir)?;
    let dump = scratch.path().join("dump.pgdump");
    let doing = crate::status::doing("fetching the backup");
    fetch(repo, &plan.backup, &dump)?;
    drop(doing);
    let globals_file = match &plan.globals {
        Some(g) => {
            let p = scratch.path().join("globals.sql");
            fetch(repo, g, &p)?;
            Some(p)
        }
        None => None,
    };
    let fetch_secs = clock.elapsed().as_secs_f64();
    // hooks connect to the target too (migrations, a health check): they get its password
    // in a file only libpq reads, never in their environment
    let passfile = scratch.path().join("hooks.pgpass");
    let passfile = if plan.pre_hook.is_some() || plan.post_hook.is_some() {
        conn.write_passfile(&passfile)?.then_some(passfile)
    } else {
        None
    };
    if let Some(h) = &plan.pre_hook {
        run_hook("pre-restore", h, &plan, passfile.as_deref())?;
    }
    let restore_clock = Instant::now();
    let restoring = crate::status::doing(format!(
        "restoring into {:?} (pg_restore{})",
        plan.target_database,
        if plan.clean { ", one transaction" } else { "" }
    ));
    let kept_password_of = match &globals_file {
        Some(g) => apply_globals(&conn, g, plan.no_tablespaces)?,
        None => None,
    };
    let mut truth = plan.backup.meta.truth.clone().unwrap_or_default();
    if truth.session.is_none() && !truth.tables.is_empty() {
        // taken by a lifeboat before the dump's session was fixed: read in the server's
        // own settings, which the server the source names still has
        truth.session = PgConn::from_source(src).ok().and_then(|c| {
            crate::sources::postgres::compare::session_of_old_dump(
                &c,
                plan.backup.meta.database.as_deref().unwrap_or("postgres"),
            )
        });
    }
    // read once: the new database's locale, an overwrite's large objects and a
    // --no-owner restore's revocations come from it
    let toc = dump_toc(&dump);
    let toc_or_err = || {
        toc.as_deref()
            .map_err(|e| Error::new(e.kind(), e.message()))
    };
    if plan.create_database {
        let options = create_options(toc.as_deref().ok(), &truth);
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE template0{options}",
            ident(&plan.target_database),
        );
        conn.query("postgres", &sql)
            .map_err(|e| create_refused(&e, &plan.target_database, &options))?;
        // an interrupt (Ctrl-C, SIGTERM) drops it again: half a database under the name
        // asked for would block the retry
        crate::sources::postgres::cluster::register_drop(
            conn.clone(),
            plan.target_database.clone(),
        );
    }
    // a new database, or an empty one made for this restore: its money values are read
    // under its lc_monetary (an overwrite's database has its own settings already)
    if !plan.clean {
        apply_input_settings(
            &conn,
            &truth,
            plan.backup.meta.database.as_deref().unwrap_or_default(),
            &plan.target_database,
        );
    }
    let original = plan.backup.meta.database.clone().unwrap_or_default();
    // over an existing database, drops, objects and rows go in one transaction: a drop
    // that something made since the backup blocks, a failure midway or an interrupt leaves
    // the database as it was (one transaction cannot use parallel jobs)
    let as_it_was = plan.clean.then(|| {
        crate::sources::postgres::cluster::say_on_stop(format!(
            "database {:?} is as it was: the overwrite ran as one transaction, and stopping it rolled that back",
            plan.target_database
        ))
    });
    let loaded = run_pg_restore(
        &conn,
        &dump,
        &plan.target_database,
        if plan.clean { 1 } else { plan.jobs },
        plan.clean,
        Skip {
            owner: plan.no_owner,
            tablespaces: plan.no_tablespaces,
            failing: plan.keep_going,
            superuser_only: false,
        },
        &[],
    )
    .map_err(|e| {
        if !plan.clean {
            return e;
        }
        // pg_restore's --clean drops each partition's copy of a partitioned table's
        // primary key on its own, which PostgreSQL refuses (PostgreSQL 15 and 16)
        let partitions = e.message().contains("cannot drop inherited constraint");
        let e = e.with_note(format!(
            "the restore ran as one transaction, so database {:?} is as it was",
            plan.target_database
        ));
        if partitions {
            e.hint(format!(
                "pg_restore --clean cannot replace a partitioned table whose partitions inherit its key; restore into a new database instead (--to-database {0}_restored), check it, then swap the names (ALTER DATABASE {0} RENAME TO {0}_old; ALTER DATABASE {0}_restored RENAME TO {0}) while the application is stopped",
                plan.target_database
            ))
        } else {
            e
        }
    });
    // pg_restore has ended: committed, or rolled back
    drop(as_it_was);
    let loaded = loaded.and_then(|gone_past| {
        apply_database_properties(
            &conn,
            &truth,
            &original,
            &plan.target_database,
            plan.no_owner,
        )
        .map(|skipped| (skipped, gone_past))
        .map_err(|e| {
            if plan.clean {
                // the one transaction has committed by now
                e.with_note(format!("the backup's data is restored into {:?}, but its database settings were not all applied", plan.target_database))
            } else {
                e
            }
        })
    })
    .and_then(|(skipped, gone_past)| {
        let without_owners = if plan.no_owner {
            Some(
                toc_or_err().and_then(|toc| apply_public_revocations(&conn, toc, &plan.target_database)).map_err(|e| {
                    e.with_note("the backup's revocations from PUBLIC could not be applied: objects production kept from PUBLIC may be open to it on this copy")
                })?,
            )
        } else {
            None
        };
        Ok((skipped, without_owners, gone_past))
    });
    // the interrupt's clean-up keeps the drop until the database is whole, or dropped here:
    // an interrupt kills pg_restore, and this failure path then races the clean-up (its
    // query is refused once the clean-up began, and the process exits under it)
    let (properties_not_applied, without_owners, gone_past) = match loaded {
        Ok(done) => {
            crate::sources::postgres::cluster::unregister_drop(&plan.target_database);
            // a dump holds a materialized view's query, not its rows: a view production
            // had not refreshed lately differs on the copy
            let refreshed = toc.as_deref().map_or(0, |t| {
                t.iter()
                    .filter(|e| e.desc == "MATERIALIZED VIEW DATA")
                    .count()
            });
            // with --keep-going, a view that failed to refresh is among the errors and
            // stays unpopulated: the server says how many were
            let refreshed = if refreshed > 0 && !done.2.is_empty() {
                conn.query(
                    &plan.target_database,
                    "select count(*) from pg_matviews where ispopulated",
                )
                .ok()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
            } else {
                refreshed
            };
            if refreshed > 0 {
                crate::sources::postgres::cluster::note(format!(
                    "{refreshed} materialized view(s) were refreshed from the restored tables: their rows are as of now, which differs from production's where production had not refreshed them since their tables changed (they are not compared)"
                ));
            }
            done
        }
        Err(e) if plan.create_database => {
            // half a database under the name asked for would block the retry ("not
            // empty"): the one this restore created goes again
            // (a subscription restored into it is detached from production's slot first)
            let dropped = crate::sources::postgres::cluster::drop_copy_from(
                &conn,
                "postgres",
                &plan.target_database,
                true,
            );
            if dropped.is_ok() {
                crate::sources::postgres::cluster::unregister_drop(&plan.target_database);
            }
            let note = match dropped {
                Ok(_) => format!("the database {:?} this restore created was dropped again", plan.target_database),
                Err(d) => format!("the database {:?} this restore created is left half restored (dropping it failed: {d}); drop it before retrying", plan.target_database),
            };
            return Err(e.with_note(note));
        }
        Err(e) => {
            crate::sources::postgres::cluster::unregister_drop(&plan.target_database);
            return Err(e);
        }
    };
    let restore_secs = restore_clock.elapsed().as_secs_f64();
    // a failure from here on comes after the data is in: say so, and that the post-restore
    // hook (starting the application, say) did not run
    let after_load = |e: Error| match &plan.post_hook {
        Some(h) => e.with_note(format!("the post-restore hook did not run: {h}")),
        None => e,
    };
    drop(restoring);
    let _comparing = plan
        .verify
        .then(|| crate::status::doing(super::drill::phase_words("checks")));
    let comparison = if plan.verify {
        // an overwrite drops and restores the backup's large objects only (pg_restore
        // --clean): the others are compared no more than tables made since are
        let c = if plan.create_database {
            compare(&conn, &plan.target_database, &truth, plan.jobs as usize)
        } else {
            toc_or_err().and_then(|toc| {
                crate::sources::postgres::compare::compare_over(
                    &conn,
                    &plan.target_database,
                    &truth,
                    plan.jobs as usize,
                    &crate::sources::postgres::archive::large_object_oids(toc),
                )
            })
        }
        .map_err(|e| {
            let e = e.with_note(format!(
                "the backup is restored into {:?}, but its comparison with the backup-time truth could not run",
                plan.target_database
            ));
            // what pg_restore went past is said all the same
            after_load(if gone_past.is_empty() {
                e
            } else {
                e.with_note(format!(
                    "pg_restore went past {} error(s) (--keep-going): {}",
                    gone_past.len(),
                    went_past(&gone_past)
                ))
            })
        })?;
        if !gone_past.is_empty() {
            return Err(after_load(kept_with_errors(
                &plan.target_database,
                &gone_past,
                Some(&c),
            )));
        }
        if !c.ok() {
            let old_dump = plan
                .backup
                .meta
                .truth
                .as_ref()
                .is_some_and(|t| t.session.is_none());
            let old_hint = format!(
                "{}; compare a few rows by hand, or restore with --no-verify",
                super::drill::old_dump_note(
                    truth.session.as_deref(),
                    "as the server the restore reached reported them (with --target-dsn, the target's)",
                    "the target's own settings, as the server the restore reached did not say"
                )
            );
            let hint = if old_dump {
                old_hint.as_str()
            } else if plan.create_database {
                "the restore ran but the data is not what was backed up; keep the original database and report this"
            } else {
                // over an existing database the original is gone; writes that reached it
                // during or after the load are the likeliest difference
                "the database was replaced: if anything wrote to it during or after the restore (the application, with no pre-restore hook stopping it), the differences are those writes; stop it and restore again. Otherwise the data is not what was backed up: report this"
            };
            return Err(after_load(
                Error::integrity(format!(
                    "the restored database {:?} differs from the backup: {}",
                    plan.target_database,
                    c.describe_failures()
                ))
                .hint(hint),
            ));
        }
        Some(c)
    } else {
        None
    };
    if !gone_past.is_empty() {
        return Err(after_load(kept_with_errors(
            &plan.target_database,
            &gone_past,
            None,
        )));
    }
    if let Some(h) = &plan.post_hook {
        // the data is in place by now: the error must say so, or the operator cannot
        // tell a failed restore from a failed hook
        run_hook("post-restore", h, &plan, passfile.as_deref()).map_err(|e| {
            let done = match &comparison {
                Some(c) => format!(
                    "backup {} was restored into database {:?} and verified ({} tables, {} rows match the backup)",
                    plan.backup.short_id(),
                    plan.target_database,
                    c.tables.len(),
                    c.rows()
                ),
                None => format!(
                    "backup {} was restored into database {:?} (not verified: --no-verify)",
                    plan.backup.short_id(),
                    plan.target_database
                ),
            };
            Error::new(e.kind(), format!("{done}, but then {}", e.message())).hint(
                "the data is in place; fix the hook and run it by hand (its output is above)",
            )
        })?;
    }
    Ok(RestoreReport {
        properties_not_applied,
        without_owners,
        fetch_secs,
        restore_secs,
        comparison,
        globals_restored: plan.globals.is_some(),
        kept_password_of,
        total_secs: clock.elapsed().as_secs_f64(),
        plan,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tablespace_statement_is_left_out_with_all_its_lines() {
        let script = "CREATE ROLE app;\n\
            CREATE TABLESPACE fast OWNER app LOCATION '/srv/fast';\n\
            COMMENT ON TABLESPACE fast IS 'SSDs;\n\
            it''s the\n\
            CREATE TABLESPACE x';\n\
            COMMENT ON ROLE app IS 'two\n\
            lines';\n\
            GRANT CREATE ON TABLESPACE fast TO app;\n\
            ALTER ROLE app SET search_path = 'a';\n";
        assert_eq!(
            super::without_tablespaces(script),
            "CREATE ROLE app;\nCOMMENT ON ROLE app IS 'two\nlines';\nALTER ROLE app SET search_path = 'a';\n"
        );
    }

    use super::*;

    #[test]
    fn a_refused_create_database_names_the_database_and_for_a_locale_the_ways_on() {
        let e = Error::postgres(
            "database \"postgres\": ERROR:  22023: encoding \"LATIN1\" does not match locale \"C.UTF-8\"",
        );
        let r = create_refused(&e, "latin_r", " ENCODING = 'LATIN1' LOCALE = 'C'");
        assert!(
            r.message()
                .starts_with("creating database \"latin_r\": ERROR:  22023"),
            "{r}"
        );
        assert!(
            r.hint_text()
                .is_some_and(|h| h.contains("install that locale")
                    && h.contains("ENCODING = 'LATIN1' LOCALE = 'C'")),
            "{r:?}"
        );
        let other =
            Error::postgres("database \"postgres\": ERROR:  permission denied to create database")
                .hint("the restoring role needs CREATEDB");
        let r = create_refused(&other, "x", "");
        assert_eq!(r.hint_text(), Some("the restoring role needs CREATEDB"));
    }

    #[test]
    fn the_connecting_role_keeps_its_password() {
        let script = "CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc=';\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'md5x';\n";
        let (out, kept) = keep_password_of(script, "postgres");
        assert!(kept);
        assert!(
            out.contains("ALTER ROLE postgres WITH SUPERUSER LOGIN;\n"),
            "{out}"
        );
        assert!(
            out.contains("ALTER ROLE app WITH LOGIN PASSWORD 'md5x';"),
            "{out}"
        );
        let (out, kept) = keep_password_of(script, "nobody");
        assert!(!kept);
        assert_eq!(out, script);
        let quoted = "ALTER ROLE \"Ops Lead\" WITH LOGIN PASSWORD 'x';\n";
        let (out, kept) = keep_password_of(quoted, "Ops Lead");
        assert!(
            kept && out == "ALTER ROLE \"Ops Lead\" WITH LOGIN;\n",
            "{out}"
        );
    }

    #[test]
    fn a_refused_password_on_another_server_names_that_servers_password() {
        let e = on_target_server(crate::sources::postgres::conn::classify(
            "psql: error: connection to server at \"10.0.0.9\", port 5432 failed: FATAL:  password authentication failed for user \"postgres\"",
            "connecting",
        ));
        assert_eq!(e.kind(), ErrorKind::Auth);
        let h = e.hint_text().unwrap();
        assert!(
            h.contains("target server") && h.contains("PGPASSWORD") && h.contains("~/.pgpass"),
            "{h}"
        );
        assert!(!h.contains("check password_file"), "{h}");
        // a refused OS user is no password matter: it keeps its own hint
        let e = on_target_server(crate::sources::postgres::conn::classify(
            "psql: error: connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  Peer authentication failed for user \"postgres\"",
            "connecting",
        ));
        let h = e.hint_text().unwrap();
        assert!(h.starts_with("peer authentication"), "{h}");
        // other errors keep their own hint
        let e = on_target_server(Error::config("x").hint("y"));
        assert_eq!(e.hint_text(), Some("y"));
    }

    #[test]
    fn clean_without_force_is_refused_with_a_hint() {
        let opts = RestoreOptions {
            clean: true,
            ..RestoreOptions::default()
        };
        let e = clean_needs_force(&opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.hint_text().is_some_and(|h| h.contains("add --force")),
            "{e:?}"
        );
        let opts = RestoreOptions {
            clean: true,
            force: true,
            ..RestoreOptions::default()
        };
        assert!(clean_needs_force(&opts).is_ok());
        assert!(clean_needs_force(&RestoreOptions::default()).is_ok());
    }

    #[test]
    fn properties_are_renamed_exactly() {
        let s = vec!["ALTER DATABASE app SET search_path TO 'app', 'public';\n\\connect app\n\nALTER ROLE bob IN DATABASE app SET work_mem TO '8MB';\n".to_string(),
            "COMMENT ON DATABASE app IS 'the app;\n-- not a comment';".to_string(),
            "ALTER DATABASE app OWNER TO \"App Owner\";\n".to_string()];
        let out = database_properties(&s, "app", "app_copy", false);
        assert_eq!(
            out,
            vec![
                "ALTER DATABASE \"app_copy\" SET search_path TO 'app', 'public'".to_string(),
                "ALTER ROLE bob IN DATABASE \"app_copy\" SET work_mem TO '8MB'".to_string(),
                "COMMENT ON DATABASE \"app_copy\" IS 'the app;\n-- not a comment'".to_string(),
                "ALTER DATABASE \"app_copy\" OWNER TO \"App Owner\"".to_string(),
            ]
        );
        assert_eq!(database_properties(&s, "app", "app_copy", true).len(), 3);
        let out = database_properties(
            &["ALTER DATABASE app2 SET x TO 1;".to_string()],
            "app",
            "z",
            false,
        );
        assert_eq!(out, vec!["ALTER DATABASE app2 SET x TO 1".to_string()]);
    }
}
