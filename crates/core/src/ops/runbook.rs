//! `runbook`: the disaster-recovery runbook the seeds wrote by hand, generated from the
//! configuration and the repository's current state: per scenario the exact commands, the
//! latest good backups and the last measured RTO.

use std::{collections::BTreeMap, fmt::Write as _};

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    config::Config,
    error::Result,
    ops::{
        copies::{self, CopyDestination},
        evidence::{drills, DrillSummary},
    },
    repository::{Repo, SnapshotInfo},
    sources::postgres::{
        compare::ident,
        conn::{public_conninfo, PgConn},
        logical::BackupKind,
    },
};

fn fmt_secs(s: f64) -> String {
    super::evidence::human_secs(s, 0)
}

/// What verification and the drills say of backup `id`: found damaged, proven by a
/// passed drill, or failed in one.
fn proven(
    drills: &[super::evidence::DrillSummary],
    damaged: &BTreeMap<String, Timestamp>,
    id: &str,
) -> String {
    if let Some(t) = damaged.get(&id[..8.min(id.len())]) {
        return format!(
            " — **found DAMAGED by `verify` on {}: restore an older backup**",
            t.strftime("%Y-%m-%d %H:%M UTC")
        );
    }
    match drills.iter().rev().find(|d| d.backup_id == id) {
        Some(d) if d.passed => format!(" — proven by drill {}", d.drill),
        Some(d) => format!(" — **its drill {} FAILED**", d.drill),
        None => " — not drilled yet".to_string(),
    }
}

/// The databases a source's logical backups cover, most recently backed up first; else
/// the configured ones, else the DSN's, else a placeholder.
fn databases_of(src: &crate::config::SourceConfig, backups: &[SnapshotInfo]) -> Vec<String> {
    let mut dbs = meant_databases(src, backups);
    if dbs.is_empty() {
        dbs.push(
            src.dsn
                .as_deref()
                .and_then(dsn_database)
                .unwrap_or_else(|| "DB".into()),
        );
    }
    dbs
}

/// The databases of `src` meant now, sorted: those its `databases` names, those its
/// patterns cover, or (with none given) every one its logical backups hold. A database
/// taken out of a configured list was dropped on purpose and is not among them, though
/// old backups of it are kept (a drill of each, or a loop over "every database", would
/// bring it back or judge it for ever).
#[must_use]
pub fn meant_databases(src: &crate::config::SourceConfig, backups: &[SnapshotInfo]) -> Vec<String> {
    let mut dbs: Vec<String> = Vec::new();
    // a configured list is what is meant now: a database taken out of it was dropped on
    // purpose, and a loop over "every database" would create it again
    for d in backed_up_databases(src, backups) {
        // a pattern names whatever the server has: its backups say what that was
        let meant =
            src.databases.is_empty() || (src.has_database_patterns() && src.covers_database(&d));
        if meant && !dbs.contains(&d) {
            dbs.push(d);
        }
    }
    for d in src.named_databases() {
        if !dbs.contains(&d) {
            dbs.push(d);
        }
    }
    dbs.sort();
    dbs
}

/// The database a DSN names, if it names one.
fn dsn_database(dsn: &str) -> Option<String> {
    PgConn::from_dsn(dsn, crate::sources::postgres::conn::PgBin::default())
        .ok()?
        .default_database()
}

/// The repository as plain restic names it (with options): S3 as
/// `s3:ENDPOINT/BUCKET/PREFIX`, since restic reads `s3://bucket` as a host name and ignores
/// `AWS_ENDPOINT_URL`. Each word shell-quoted, ready to paste.
fn restic_repository(location: &str, r: &crate::config::RepositoryConfig) -> String {
    let Some(rest) = location.strip_prefix("s3://") else {
        return sh(location);
    };
    let endpoint = r
        .endpoint
        .clone()
        .or_else(|| env_setting(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]))
        .unwrap_or_else(|| "https://s3.amazonaws.com".to_string());
    let mut out = sh(&format!(
        "s3:{}/{}",
        endpoint.trim_end_matches('/'),
        rest.trim_matches('/')
    ));
    if let Some(region) = r
        .region
        .clone()
        .or_else(|| env_setting(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
    {
        out.push_str(&format!(" -o {}", sh(&format!("s3.region={region}"))));
    }
    out
}

/// The first of the environment variables `names` that is set and not empty (S3 endpoint
/// and region are no secrets).
fn env_setting(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// What the reader needs that this host may not have: the repository, its password,
/// and what the configuration held, so the steps work without it (`--repo`).
fn what_you_need(
    config: &Config,
    sources: &[crate::config::SourceConfig],
    repo: &Repo,
    config_hint: &str,
    backups: &[crate::repository::SnapshotInfo],
) -> String {
    let mut m = String::from("## What you need\n\n");
    let _ = writeln!(m, "- the repository: `{}`", repo.location());
    let r = &config.repository;
    if crate::repository::is_s3_url(repo.location()) {
        let _ = writeln!(
            m,
            "  - S3 endpoint `{}`, region `{}`, access key id `{}`, and the secret key ({})",
            r.endpoint
                .clone()
                .or_else(|| env_setting(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]))
                .unwrap_or_else(|| "AWS's own".to_string()),
            r.region
                .clone()
                .or_else(|| env_setting(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
                .unwrap_or_else(|| "us-east-1".to_string()),
            r.access_key_id.as_deref().unwrap_or("AWS_ACCESS_KEY_ID"),
            r.secret_access_key_file.as_ref().map_or_else(
                || "`AWS_SECRET_ACCESS_KEY`".to_string(),
                |f| format!("file `{}`", f.display())
            )
        );
    }
    let _ = writeln!(
        m,
        "- its password: `LIFEBOAT_PASSWORD`{}",
        match (&r.password_file, &r.password_command) {
            (Some(f), _) => format!(", or the file `{}`", f.display()),
            (None, Some(_)) => ", or the configured `password_command`".to_string(),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        m,
        "- lifeboat and the PostgreSQL programs of the cluster's major version{}",
        if config_hint.is_empty() {
            String::new()
        } else {
            format!("; the configuration (`{config_hint}`)")
        }
    );
    for src in sources {
        let configured = config.sources.iter().any(|c| c.name == src.name);
        let _ = writeln!(
            m,
            "- source `{}`: connection `{}`{}{}",
            src.name,
            src.dsn
                .as_deref()
                .and_then(|d| {
                    public_conninfo(d, &dsn_database(d).unwrap_or_else(|| "postgres".into()))
                })
                .unwrap_or_else(|| if configured {
                    "from the PG* environment variables".to_string()
                } else {
                    "unknown here (not configured where this runbook was written)".to_string()
                }),
            if src.databases.is_empty() {
                String::new()
            } else {
                format!(", databases {}", src.databases.join(", "))
            },
            src.password_file
                .as_ref()
                .map(|f| format!(", password file `{}`", f.display()))
                .unwrap_or_default()
        );
        // the newest base backup says whether the cluster's configuration is in it
        let newest_physical = backups
            .iter()
            .filter(|b| b.meta.source == src.name && b.meta.kind == BackupKind::Physical)
            .max_by_key(|b| b.meta.finished_at)
            .and_then(|b| b.meta.physical.as_ref());
        if let Some(p) = newest_physical.filter(|p| !p.config_not_held.is_empty()) {
            let _ = writeln!(
                m,
                "  - its cluster's {}{}: in no backup (kept outside the data directory); keep copies elsewhere, with any SSL certificates they name. A physical restore writes minimal ones, the original's settings as comments",
                p.config_not_held.join(", "),
                p.config_file
                    .as_deref()
                    .map(|f| format!(" (postgresql.conf was `{f}`)"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        m,
        "\nWithout the configuration file (lost with the host): every command below works as \
         `lifeboat --repo {} …` with `--source NAME`, the repository password in `LIFEBOAT_PASSWORD`{}; \
         only a new backup needs a configuration again (a `lifeboat.toml` with the `[repository]` and the source's `dsn`, see lifeboat's README).\n",
        sh(repo.location()),
        if crate::repository::is_s3_url(repo.location()) {
            " and the S3 credentials in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (endpoint `AWS_ENDPOINT_URL`, region `AWS_REGION`)"
        } else {
            ""
        }
    );
    m.push_str(
        "All times here are UTC. Give times to lifeboat the same way, with the zone: \
         `2026-12-06T03:03:00Z`; a time without a zone is read in this machine's local time.\n\n",
    );
    m
}

/// Scenario 4's steps: lifeboat makes no copies yet, so a configured destination is only
/// where one should be; the operator must know whether something else copies there.
fn region_loss(copies: &[CopyDestination], lb: &str) -> String {
    if copies.is_empty() {
        return "1. **No offsite copy is configured**, and lifeboat does not make copies yet: \
                the repository is lost with the region unless something else copies it elsewhere. \
                Set that up with a file-level copy of the whole repository directory or bucket \
                (`rclone sync`, `aws s3 sync`, `rsync -a`, bucket replication) and add its destination as \
                `[[copies]]` to the configuration. Not `restic copy`: it drops the snapshot \
                descriptions that hold lifeboat's metadata and audit log, and leaves out the \
                WAL archive (`lifeboat-wal/`), so lifeboat finds no backups in such a copy."
            .to_string();
    }
    let mut m = String::from(
        "1. Lifeboat does not write offsite copies yet (it has no copy command): a destination \
         below holds a repository only if something else copies the whole repository there, file by \
         file (rclone, `aws s3 sync`, rsync, bucket replication; not `restic copy`, which drops \
         lifeboat's metadata and the WAL archive). Know which one does before you need it.\n",
    );
    for c in copies {
        let d = &sh(&c.destination);
        let there = match c.holds_repository {
            Some(true) => format!(
                "a repository is there now; `{lb} --repo {d} list` shows how recent its backups are"
            ),
            Some(false) => {
                "**there is no repository at that path now**: no offsite copy to recover from"
                    .to_string()
            }
            None => {
                format!("not checked here: `{lb} --repo {d} list` shows whether it holds backups")
            }
        };
        let _ = writeln!(m, "   - configured destination `{d}`: {there}");
    }
    m.push_str(
        "2. With a copy that holds recent backups: run the host-loss steps with `--repo URL-OF-THE-COPY`.",
    );
    m
}

/// The runbook: its Markdown, and the state it was written from as data (`--json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Runbook {
    /// When it was generated.
    pub generated_at: Timestamp,
    /// The repository it was generated from.
    pub repository: String,
    /// Per source: its newest backups and last drill.
    pub sources: Vec<SourceState>,
    /// The configured offsite copy destinations (lifeboat makes no copies yet).
    pub copies: Vec<CopyDestination>,
    /// The runbook itself.
    pub markdown: String,
}

/// What the runbook found for one source.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SourceState {
    /// Source.
    pub source: String,
    /// The newest backup's id per kind that has one (of any database).
    pub latest: BTreeMap<String, String>,
    /// The newest logical backup's id per database, when the source has several.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latest_logical_by_database: BTreeMap<String, String>,
    /// The newest drill, if any.
    pub last_drill: Option<DrillSummary>,
}

/// Writes the runbook. `config_hint` is how the reader passes the config
/// (e.g. `--config /etc/lifeboat/lifeboat.toml`).
///
/// # Errors
///
/// When the repository cannot be read.
pub fn runbook(repo: &Repo, config: &Config, config_hint: &str) -> Result<Runbook> {
    let backups = repo.backups()?;
    let log = crate::repository::audit::entries(repo)?;
    let damaged = super::report::damaged_backups(&log);
    let mut drills = drills(repo)?;
    // reports stored before the summary carried the kind: the drilled backup has it
    for d in &mut drills {
        if d.kind.is_none() {
            d.kind = backups
                .iter()
                .find(|b| b.id == d.backup_id)
                .map(|b| b.meta.kind);
        }
    }
    let lb = if config_hint.is_empty() {
        "lifeboat".to_string()
    } else {
        format!("lifeboat {config_hint}")
    };
    // the head as of now, printed with the runbook: a copy that lives off the systems;
    // only from a log that verifies (a broken one would be checked against itself)
    let head_now = log
        .last()
        .filter(|_| crate::repository::audit::verify_entries(&log, None).ok())
        .map(|e| {
            format!(
                "`{lb} audit verify --expected-head {}` (the head when this runbook was written, when the log verified intact: entry {}, {}; a newer head, from your newest evidence report, also covers what came after)",
                e.hash.get(..16).unwrap_or(&e.hash),
                e.seq,
                e.time.strftime("%Y-%m-%d %H:%M UTC"),
            )
        });
    // looked at once: a local destination's contents are read from disk
    let destinations = copies::destinations(config);
    let generated_at = Timestamp::now();
    let mut states = Vec::new();
    let mut m = String::new();
    let _ = writeln!(m, "# Disaster-recovery runbook\n");
    let _ = writeln!(
        m,
        "Generated by `lifeboat runbook` at {} from the configuration and the repository `{}`. \
         Regenerate it after every change; print it and keep a copy outside the systems it recovers.\n",
        generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        repo.location()
    );
    // the configured sources; without any (a runbook written where the configuration is
    // lost), those the repository's backups name
    let mut sources = config.sources.clone();
    if sources.is_empty() {
        for b in &backups {
            if !sources.iter().any(|s| s.name == b.meta.source) {
                sources.push(crate::config::SourceConfig::named(&b.meta.source));
            }
        }
    }
    m.push_str(&what_you_need(
        config,
        &sources,
        repo,
        config_hint,
        &backups,
    ));
    for src in &sources {
        let mut state = SourceState {
            source: src.name.clone(),
            latest: BTreeMap::new(),
            latest_logical_by_database: BTreeMap::new(),
            last_drill: None,
        };
        let _ = writeln!(m, "## Source `{}`\n", src.name);
        let objectives = format!(
            "objectives: RTO {}, RPO {}{}",
            src.objectives.rto.as_deref().unwrap_or("not set"),
            src.objectives.rpo.as_deref().unwrap_or("not set"),
            src.objectives
                .logical_rpo
                .as_deref()
                .map(|r| format!(" (logical dumps: {r})"))
                .unwrap_or_default()
        );
        let _ = writeln!(m, "- {objectives}");
        // the newest passed drill of this source and kind
        let last_passed = |kind: BackupKind| {
            drills
                .iter()
                .rev()
                .find(|d| d.source == src.name && d.kind == Some(kind) && d.passed)
        };
        // per database for the kinds that are per database: a multi-database source's
        // newest backup is of whichever database finished last
        let dbs = databases_of(src, &backups);
        let dropped: Vec<String> = backed_up_databases(src, &backups)
            .into_iter()
            .filter(|d| !dbs.contains(d))
            .collect();
        if !dropped.is_empty() {
            let _ = writeln!(
                m,
                "- backups of databases no longer in its `databases` (left out of the steps below; restore one by name with `--database`): {}",
                dropped.iter().map(|d| code(d)).collect::<Vec<_>>().join(", ")
            );
        }
        let mut rows: Vec<(BackupKind, Option<&str>)> = Vec::new();
        for kind in BackupKind::ALL.into_iter().chain([BackupKind::Physical]) {
            let per_db = matches!(kind, BackupKind::Logical | BackupKind::Schema);
            // one database configured and others backed up before: its own, by name
            if per_db && (dbs.len() > 1 || !dropped.is_empty()) {
                rows.extend(dbs.iter().map(|d| (kind, Some(d.as_str()))));
            } else {
                rows.push((kind, None));
            }
        }
        let of_db = |b: &SnapshotInfo, db: Option<&str>| {
            db.is_none_or(|d| b.meta.database.as_deref() == Some(d))
        };
        for (kind, db) in rows {
            let last = backups
                .iter()
                .rev()
                .find(|b| b.meta.source == src.name && b.meta.kind == kind && of_db(b, db));
            if let Some(b) = last {
                state
                    .latest
                    .entry(kind.to_string())
                    .or_insert_with(|| b.id.clone());
                if let (Some(d), BackupKind::Logical) = (db, kind) {
                    state
                        .latest_logical_by_database
                        .insert(d.to_string(), b.id.clone());
                }
            }
            let _ = match last {
                Some(b) => writeln!(
                    m,
                    "- latest {kind} backup: `{}` of {}, finished {} ({} bytes){}",
                    b.short_id(),
                    b.meta
                        .database
                        .as_deref()
                        .map_or_else(|| "the whole cluster".to_string(), code),
                    b.meta.finished_at.strftime("%Y-%m-%d %H:%M UTC"),
                    b.meta.logical_bytes,
                    proven(&drills, &damaged, &b.id)
                ),
                None => writeln!(
                    m,
                    "- latest {kind} backup{}: **none** — take one: `{lb} backup --source {} --kind {kind}`",
                    db.map(|d| format!(" of {}", code(d))).unwrap_or_default(),
                    src.name
                ),
            };
            // the newest backup of the same database a drill restored and checked: the one
            // to trust when the newest has not been proven (or failed its drill)
            let passed_here = drills.iter().rev().find(|d| {
                d.source == src.name
                    && d.kind == Some(kind)
                    && d.passed
                    && !damaged.contains_key(&d.backup_id[..8.min(d.backup_id.len())])
                    && backups
                        .iter()
                        .find(|b| b.id == d.backup_id)
                        .is_some_and(|b| of_db(b, db))
            });
            if let Some(d) = passed_here.filter(|d| last.is_some_and(|b| b.id != d.backup_id)) {
                let _ = writeln!(
                    m,
                    "- newest {kind} backup{} proven by a passed drill: `{}` (drill {} on {})",
                    db.map(|d| format!(" of {}", code(d))).unwrap_or_default(),
                    &d.backup_id[..8.min(d.backup_id.len())],
                    d.drill,
                    d.finished_at.strftime("%Y-%m-%d")
                );
            }
        }
        let has_physical = backups
            .iter()
            .any(|b| b.meta.source == src.name && b.meta.kind == BackupKind::Physical);
        for kind in [BackupKind::Logical, BackupKind::Physical] {
            if kind == BackupKind::Logical && (dbs.len() > 1 || !dropped.is_empty()) {
                // one database's drill says nothing of another's restore time: each its
                // own, and the ones never drilled named
                let mut never = Vec::new();
                let mut total = 0.0;
                for db in &dbs {
                    let drilled = drills.iter().rev().find(|d| {
                        d.source == src.name
                            && d.kind == Some(kind)
                            && d.passed
                            && backups
                                .iter()
                                .find(|b| b.id == d.backup_id)
                                .is_some_and(|b| of_db(b, Some(db)))
                    });
                    match drilled {
                        Some(d) => {
                            total += d.rto_secs;
                            let _ = writeln!(
                                m,
                                "- last measured RTO of a {kind} restore of {}: {} (drill {} on {}, passed)",
                                code(db),
                                fmt_secs(d.rto_secs),
                                d.drill,
                                d.finished_at.strftime("%Y-%m-%d")
                            );
                        }
                        None => never.push(code(db)),
                    }
                }
                // a host loss restores them one after the other: their times add up
                if dbs.len() > 1 && never.len() < dbs.len() {
                    let _ = writeln!(
                        m,
                        "- all databases one after the other (a host loss): {}{}",
                        fmt_secs(total),
                        if never.is_empty() {
                            String::new()
                        } else {
                            " and the databases never drilled".to_string()
                        }
                    );
                }
                if !never.is_empty() {
                    let _ = writeln!(
                        m,
                        "- no passed {kind} drill, so no measured RTO, for {}: `{lb} drill --source {} --database NAME`",
                        never.join(", "),
                        src.name
                    );
                }
            } else if let Some(d) = last_passed(kind) {
                let _ = writeln!(
                    m,
                    "- last measured RTO of a {kind} restore: {} (drill {} on {}, passed)",
                    fmt_secs(d.rto_secs),
                    d.drill,
                    d.finished_at.strftime("%Y-%m-%d")
                );
            }
        }
        let last_drill = drills.iter().rev().find(|d| d.source == src.name);
        state.last_drill = last_drill.cloned();
        states.push(state);
        let _ = match last_drill {
            Some(d) => writeln!(
                m,
                "- last drill: {} on {} — {}, measured RTO {}, RPO {}",
                d.drill,
                d.finished_at.strftime("%Y-%m-%d"),
                if d.passed { "passed" } else { "**FAILED**" },
                d.rto_words(),
                d.rpo_words()
            ),
            None => writeln!(
                m,
                "- last drill: **never** — run `{lb} drill --source {}` to measure the RTO",
                src.name
            ),
        };
        let s = &src.name;
        // the database the source's DSN names is the application's, most likely: the
        // single-database examples are written for it
        let dsn_db = src.dsn.as_deref().and_then(dsn_database);
        let db = dsn_db
            .as_deref()
            .filter(|d| dbs.iter().any(|x| x == d))
            .unwrap_or(dbs[0].as_str());
        let conn = |d: &str| {
            src.dsn
                .as_deref()
                .and_then(|dsn| public_conninfo(dsn, d))
                .unwrap_or_else(|| format!("dbname={d}"))
        };
        // a physical restore and a side copy run no configured hook: the steps say what to
        // run by hand; a logical restore over the database runs them by itself
        let pre = src.hooks.pre_restore.as_deref().map_or_else(
            || "stop the application".to_string(),
            |h| {
                format!(
                    "stop the application (by hand, as the configured pre-restore hook does: {})",
                    code(h)
                )
            },
        );
        let in_place_hooks = match (&src.hooks.pre_restore, &src.hooks.post_restore) {
            (None, None) => "No restore hooks are configured: stop the application before it, and run migrations and start it after it (or pass `--pre-hook` / `--post-hook`).".to_string(),
            (pre, post) => format!(
                "It runs the configured hooks around itself (pre-restore: {}; post-restore: {}).",
                pre.as_deref().map_or_else(|| "none, stop the application first".to_string(), code),
                post.as_deref().map_or_else(|| "none, start the application after it".to_string(), code),
            ),
        };
        // many databases get one shell loop per step instead of a line each (25 databases
        // made a 100-line runbook); a name the side copy would have to cut keeps its lines
        let as_loop = dbs.len() > LOOP_FROM
            && dbs
                .iter()
                .all(|d| side_name(d, "_restored") == format!("{d}_restored"));
        let each_db = |f: &dyn Fn(&str, &str) -> String| -> String {
            if as_loop {
                let words = dbs.iter().map(|d| sh(d)).collect::<Vec<_>>().join(" ");
                let cmd = f(r#"--database="$db""#, r#"--to-database="${db}_restored""#);
                format!(
                    "   {}\n",
                    code(&format!(
                        "for db in {words}; do {cmd} || echo \"FAILED: $db\" >&2; done"
                    ))
                )
            } else {
                dbs.iter()
                    .map(|d| {
                        let cmd = f(
                            &flag("--database", d),
                            &flag("--to-database", &side_name(d, "_restored")),
                        );
                        format!("   {}\n", code(&cmd))
                    })
                    .collect::<String>()
            }
        };
        // damage is to one database, mostly: the in-place restore names it, and never loops (replacing an undamaged database loses what it has had written since)
        let damaged_db = |f: &dyn Fn(&str, &str) -> String| -> String {
            if dbs.len() > 1 {
                format!(
                    "   `{}` (DB: the damaged database; repeat for each one damaged, and only for those)\n",
                    f("--database DB", "")
                )
            } else {
                each_db(f)
            }
        };
        // the side copy too: restoring forty databases to get one back costs the night
        let damaged_side = |f: &dyn Fn(&str, &str) -> String| -> String {
            if dbs.len() > 1 {
                format!(
                    "   `{}` (DB: the damaged database; repeat for each one damaged)\n   Or all of the source's databases, when the damage is in every one:\n{}",
                    f("--database DB", "--to-database DB_restored"),
                    each_db(f)
                )
            } else {
                each_db(f)
            }
        };
        let _ = writeln!(m);
        if dbs.len() > 1 {
            let _ = writeln!(
                m,
                "This source backs up {} databases ({}): the logical steps below {} (but Scenario 1, which names the damaged database).\n",
                dbs.len(),
                dbs.iter()
                    .map(|d| code(d))
                    .collect::<Vec<_>>()
                    .join(", "),
                if as_loop {
                    "loop over all of them (a database that fails is named and the loop goes on)"
                } else {
                    "come once per database"
                }
            );
        }
        let primary_steps = format!(
            "in it `ALTER SYSTEM SET archive_mode = on` and restart it; \
             push its new timeline's history file (`{lb} wal-push --source {s} DIR/pg_wal/0000000N.history`, \
             N as the restore printed it: PostgreSQL archived it only if archiving was on at the promotion); \
             point the `dsn` of source `{s}` at it; take a base backup at once (`{lb} backup --source {s} --kind physical`). \
             The restore prints these commands with the right paths."
        );
        // Scenario 1
        let _ = writeln!(
            m,
            "### Scenario 1: database corruption or a bad migration\n"
        );
        if has_physical {
            let _ = writeln!(
                m,
                r#"Point in time (loses least: every transaction up to the second before the damage), from the physical backups and the WAL archive:

1. Stop writes: {pre}. If the damaged server still runs, push its current WAL segment out so the archive covers the last minutes (as a superuser, on the primary: a standby cannot switch segments, so if this connection reaches a standby, run it on its primary): `psql {c} -c "select pg_switch_wal()"`. Then `{lb} wal status --source {s}`: no gap, the archiver is not failing, and "recoverable up to … archived T" lies past the target time (PostgreSQL stops at a time only on a transaction that ended after it: if the database wrote nothing since the target, restore with `--latest` instead).
2. `{lb} restore --kind physical --source {s} --to-dir /var/lib/postgresql/RESTORED --target-time "YYYY-MM-DDTHH:MM:SSZ" --exclusive --start --port 5433`
3. Check the data on port 5433 (the restore prints how to connect). Then copy the rows back (Scenario 5, with `FROM` the restored server), or make it the primary: stop the damaged server (`systemctl stop postgresql`), then either point the application at port 5433, or stop the restored server, move the damaged data directory aside, move `/var/lib/postgresql/RESTORED` into its place and start the server as before; {primary_steps}

From a logical backup (loses what was written after it):
"#,
                c = sh(&conn(db)),
            );
        }
        let _ = writeln!(
            m,
            r#"1. Restore a backup from before the damage next to the damaged database, checked against the backup-time truth (a copy under another name: the application keeps running, no configured hook runs). Pick the time: `{lb} restore --list --source {s}` shows each backup's finish time (UTC); `--latest` would bring back a backup taken after the damage.
{}2. Check the copy. Then point the application at it, or replace the original with the same backup, in one transaction (a failure leaves the original as it was):
{}   {in_place_hooks}
"#,
            damaged_side(&|d, side| {
                format!("{lb} restore --before \"YYYY-MM-DDTHH:MM:SSZ\" --source {s} {d} {side}")
            }),
            damaged_db(&|d, _| {
                format!("{lb} restore --before \"YYYY-MM-DDTHH:MM:SSZ\" --source {s} {d} --clean --force")
            }),
        );
        // Scenario 2
        let _ = writeln!(
            m,
            r#"### Scenario 2: host loss

1. Provision a new PostgreSQL server and install lifeboat; put this runbook's configuration on it (see "What you need" above), or use `--repo` as described there.
2. Check the repository: `{lb} verify --all`"#
        );
        if has_physical {
            let _ = writeln!(
                m,
                "3. Restore the whole cluster (every database, roles included) up to the newest archived WAL into an empty data directory (a freshly installed Debian server has its own cluster in `/var/lib/postgresql/15/main`: `pg_dropcluster --stop 15 main` first, or pick another directory):\n   `{lb} restore --kind physical --source {s} --to-dir /var/lib/postgresql/15/main --latest --start`\n   The restore prints the newest transaction it replayed: what was written after it is lost. Once it is the primary: {primary_steps}\n   Or, logically (each database as of its last dump; the drills measured the RTO with bulk-load settings: for the same speed, start the new server with `wal_level = minimal`, `archive_mode = off`, `max_wal_senders = 0`, `autovacuum = off`, `max_wal_size = 8GB`, `maintenance_work_mem = 256MB`, and set them back, and restart, once the restore is done, before the first base backup):"
            );
        } else {
            let _ = writeln!(m, "3. Restore roles and each database onto the new server (the drills measured the RTO with bulk-load settings: for the same speed, start the new server with `wal_level = minimal`, `archive_mode = off`, `max_wal_senders = 0`, `autovacuum = off`, `max_wal_size = 8GB`, `maintenance_work_mem = 256MB`, and set them back, and restart, once the restore is done, before the first backup):");
        }
        // written without a configuration: a backup needs one, which step 4 writes
        let lb_then = if config.sources.is_empty() {
            "lifeboat --config FILE".to_string()
        } else {
            lb.to_string()
        };
        let _ = writeln!(
            m,
            "{}   (`--globals` restores the roles first; the role you connect as keeps the new server's password.)\n4. {}. Turn archiving on in the new server (`archive_mode = on`, `archive_command` as in the README) and take new backups at once: `{lb_then} backup --source {s}`{}. `{lb_then} wal status --source {s}` exits 0 only once WAL is archived again.\n",
            each_db(&|d, _| format!(
                "{lb} restore --latest --source {s} {d} --globals --target-dsn \"host=NEW-HOST port=5432 user=postgres\""
            )),
            if config.sources.is_empty() {
                // written without a configuration: the commands after this need one
                format!(
                    "Write a `lifeboat.toml` (FILE) with the `[repository]` and a `[[source]]` named `{s}` whose `dsn` reaches the new server (see lifeboat's README), for instance:\n\n   ```toml\n{}   ```\n\n   then `lifeboat --config FILE config check`, and run the commands below with `--config FILE` instead of `--repo`",
                    starter_config(repo.location(), &src.name, &dbs)
                        .lines()
                        .map(|l| format!("   {l}\n"))
                        .collect::<String>()
                )
            } else {
                format!("Update the `dsn` of source `{s}`, then `{lb} config check`")
            },
            if has_physical {
                format!(" and, after the physical restore, `{lb} backup --source {s} --kind physical` (a server rebuilt logically is another cluster, whose WAL starts over: lifeboat refuses its base backups under `{s}`; give it a `[[source]]` of its own, and its archive_command that name, for physical backups and WAL)")
            } else {
                String::new()
            },
        );
        // Scenario 3
        // the repository's own audit settings: `--repo` to another one has no head file
        let audit_step = match &repo.audit_config().head_file {
            Some(f) => format!(
                "`{lb} audit verify` (compares the log with the head file `{}` kept outside the repository: newest entries removed or the log replaced shows as BROKEN; from a machine without that file, pass a copy of it with `--head-file`, or run {})",
                f.display(),
                head_now.as_deref().unwrap_or("it with `--expected-head H`, H the audit head printed in the newest evidence report you kept")
            ),
            None => match &head_now {
                Some(h) => format!(
                    "{h}; no `[audit] head_file` is configured, so without a head kept off the systems removed newest entries cannot be seen"
                ),
                None => format!(
                    "`{lb} audit verify --expected-head H` with H the audit head printed in the newest evidence report you kept outside the repository (no `[audit] head_file` is configured, so without H removed newest entries cannot be seen)"
                ),
            },
        };
        let _ = writeln!(
            m,
            r#"### Scenario 3: ransomware or a compromised host

1. Isolate the systems; do not run lifeboat from a compromised host. Keep a copy of the repository as it is now (`cp -a`, or a copy of the bucket), and of the audit head file: evidence, and what to go back to (`verify` appends an audit entry).
2. From a clean machine: {audit_step}; if you sign heads, also `{lb} audit verify --signed STATEMENT --public-key KEY` with the newest signed head you kept (everything up to it is authentic). Then `{lb} verify --all --read-data`: every backup's data decrypts and hashes correctly, every pack is read (also those no backup uses, which the next backup would reuse), and it names backups the log records that are gone, and (NOTE) backups no entry records (written into the repository outside lifeboat: a restore by --latest or --before leaves them out; do not restore one by its id unless you know where it came from).{wal_step}
3. Restore from before the compromise onto clean infrastructure:"#,
            wal_step = if has_physical {
                format!(" `{lb} wal status --source {s}` names WAL deleted from the archive (the last point reachable before it).")
            } else {
                String::new()
            }
        );
        if has_physical {
            let _ = writeln!(
                m,
                "   `{lb} restore --kind physical --source {s} --to-dir /var/lib/postgresql/15/main --target-time \"YYYY-MM-DDTHH:MM:SSZ\" --exclusive --start` (every database, up to the compromise; if `verify` named the base backup it picks damaged, give an older physical backup's id from `{lb} list --source {s} --kind physical` before `--to-dir`), or logically:"
            );
        }
        let _ = writeln!(
            m,
            "{}4. Rotate every secret: database passwords, S3 keys, and the repository: a new password on the same repository (`restic key passwd`) does not lock out whoever read the old one (every key opens the same master key), so start a new repository (`lifeboat init` elsewhere) for the backups from now on and keep this one read-only.\n",
            each_db(&|d, _| format!(
                "{lb} restore --before \"YYYY-MM-DDTHH:MM:SSZ\" --source {s} {d} --globals --target-dsn \"host=CLEAN-HOST port=5432 user=postgres\""
            )),
        );
        // Scenario 4
        let _ = writeln!(
            m,
            "### Scenario 4: region loss\n\n{}\n",
            region_loss(&destinations, &lb)
        );
        // Scenario 5
        let others = if dbs.len() > 1 {
            format!(
                " (for another database, put its name in place of {})",
                code(db)
            )
        } else {
            String::new()
        };
        let dump_path = sh(&crate::sources::postgres::logical::snapshot_path(
            s,
            &crate::sources::postgres::logical::BackupKind::Logical.file_name(db),
        )
        .display()
        .to_string());
        // `./`: a name starting with `-` would be read as an option
        let dump_file = sh(&if db.starts_with('-') {
            format!("./{db}.pgdump")
        } else {
            format!("{db}.pgdump")
        });
        let restic_repo = restic_repository(repo.location(), &config.repository);
        let _ = writeln!(
            m,
            r#"### Scenario 5: accidental delete of rows or a table

1. Find the time of the delete: the application's log, or PostgreSQL's (with `log_statement = 'mod'` it logs every `DELETE` and `DROP` with its time); else, with WAL archiving, `{lb} wal inspect --source {s} --since "YYYY-MM-DD HH:MM" --table schema.table` lists the transactions that changed the table, with their commit times and ids, and the restore that stops just before one. Then restore from before it, beside production{others}:{pitr5}
   {before_cmd}
2. Copy back what was lost, in bash (the commands below use its `pipefail`, `mapfile` and `<(…)`). Set the two connections and the table (as `schema.table`); `psql` and `pg_dump` ask for the password unless `~/.pgpass` or `PGPASSWORD` has it:

```sh
FROM={from}   # the copy from before the delete
TO={to}   # the damaged database
T=schema.table
set -o pipefail   # a failing pg_dump fails the pipeline, not only psql
export PGCLIENTENCODING=UTF8   # names as typed here, whatever the database's encoding
```

`-E UTF8` and `PGCLIENTENCODING`: the table's name is matched and the rows are written in UTF-8 whatever the database's encoding (a LATIN1 database's `Größe` typed in a UTF-8 terminal matches nothing otherwise, also in a script or over ssh, where psql does not take the terminal's encoding).

A dropped table comes back whole (definition, rows, indexes, constraints, and the partitions of a partitioned table), in one transaction: the application sees no table until it is complete, and a failure leaves nothing behind:

```sh
mapfile -t parts < <(psql -X -At -v ON_ERROR_STOP=1 -d "$FROM" -c "select '--table=' || relid::text from pg_partition_tree('$T') where relid <> '$T'::regclass")
pg_dump -E UTF8 -d "$FROM" -t "$T" "${{parts[@]}}" | psql -X -v ON_ERROR_STOP=1 --single-transaction -d "$TO"
```

A `DROP TABLE … CASCADE` also dropped the views and the foreign keys of other tables that depended on it, which this does not bring back: compare the two schemas and recreate what is missing:

```sh
diff <(pg_dump -E UTF8 -s -d "$FROM") <(pg_dump -E UTF8 -s -d "$TO")
```

Deleted rows (the table is still there): copy the old rows into a scratch table beside it (`FROM` is only read: a restored copy paused read-only or a standby will do), add back every row whose key is gone (rows still there are left as they are), then drop the scratch table:

```sh
psql -X -v ON_ERROR_STOP=1 -d "$TO" -c "create schema if not exists lifeboat_recovered; drop table if exists lifeboat_recovered.${{T#*.}}; create table lifeboat_recovered.${{T#*.}} (like $T)" &&
psql -X -v ON_ERROR_STOP=1 -d "$FROM" -c "\copy (select * from $T) to pstdout" | psql -X -v ON_ERROR_STOP=1 -d "$TO" -c "\copy lifeboat_recovered.${{T#*.}} from pstdin" &&
psql -X -v ON_ERROR_STOP=1 -d "$TO" -c "insert into $T overriding system value select * from lifeboat_recovered.${{T#*.}} on conflict do nothing" &&
psql -X -v ON_ERROR_STOP=1 -d "$TO" -c "drop schema lifeboat_recovered cascade"
```

   `COPY N` says how many rows the old table had, `INSERT 0 N` how many came back: keep both for the incident record (`{lb} audit note "…"` writes it into the audit log). `INSERT 0 0` means no key was missing: check `T` and that `FROM` is from before the delete. Each command is one transaction, and a failing one (a `FROM` that cannot be read, with `pipefail` set above) stops the ones after it; they can be run again after a failure, and none touches the live sequences. The application may keep running. Tables a delete cascaded to: parents first. The insert needs a primary key or unique constraint on the table and the same columns in both (list them instead of `*` if a migration changed them or the table has generated columns).
3. Drop {before_name} when done: {drop_cmd}.

### Emergency: lifeboat itself is unavailable

With the repository password in a file: `export RESTIC_PASSWORD_FILE=/path/to/password`{s3_env}. `restic -r {repo} snapshots --tag source={s}` lists the backups; {restic_dump}, then `createdb NEWDB` and {pg_restore_cmd}.
"#,
            repo = restic_repo,
            s3_env = if crate::repository::is_s3_url(repo.location()) {
                " and the S3 keys: `export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…`"
            } else {
                ""
            },
            from = sh(&conn(&side_name(db, "_before"))),
            to = sh(&conn(db)),
            before_cmd = code(&format!(
                "{lb} restore --before \"YYYY-MM-DDTHH:MM:SSZ\" --source {s} {} {}",
                flag("--database", db),
                flag("--to-database", &side_name(db, "_before"))
            )),
            drop_cmd = code(&format!(
                "psql {} -c {}",
                sh(&conn("postgres")),
                sh(&format!(
                    "drop database {}",
                    ident(&side_name(db, "_before"))
                ))
            )),
            before_name = code(&side_name(db, "_before")),
            restic_dump = code(&format!(
                "restic -r {restic_repo} dump ID {dump_path} > {dump_file}"
            )),
            pg_restore_cmd = code(&format!("pg_restore -j 2 -d NEWDB {dump_file}")),
            pitr5 = if has_physical {
                format!("\n   Point in time first: it loses nothing written before the delete. `{lb} restore --kind physical --source {s} --to-dir /var/lib/postgresql/BEFORE --target-time \"YYYY-MM-DDTHH:MM:SSZ\" --exclusive --start --port 5433`; `FROM` below is then `port=5433`, the socket directory the restore printed, and the database's own name (a physical restore keeps it). Stop it when done (`pg_ctl -D /var/lib/postgresql/BEFORE stop`, as the restore printed) and delete the directory: it holds production's data.\n   Or from the last logical backup (rows written after it that the delete took stay lost):")
            } else {
                String::new()
            },
        );
    }
    m.push_str(&unconfigured_sources(&backups, &sources, &lb));
    if sources.is_empty() {
        let _ = writeln!(
            m,
            "No `[[source]]` is configured: add one to get per-source procedures."
        );
    } else if config.sources.is_empty() {
        let _ = writeln!(
            m,
            "Written without a configuration: the procedures come from the repository's backups; connections, objectives and hooks were not known."
        );
    }
    Ok(Runbook {
        generated_at,
        repository: repo.location().to_string(),
        sources: states,
        copies: destinations,
        markdown: m,
    })
}

/// More databases than this in one source get their runbook commands as a shell loop.
const LOOP_FROM: usize = 3;

/// `db` with `suffix`, its name cut so that the whole stays within PostgreSQL's 63 bytes
/// (a restore refuses a longer name rather than have the server cut it).
fn side_name(db: &str, suffix: &str) -> String {
    let mut keep = 63usize.saturating_sub(suffix.len()).min(db.len());
    while !db.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &db[..keep])
}

/// The databases `src`'s logical backups name, newest first.
fn backed_up_databases(src: &crate::config::SourceConfig, backups: &[SnapshotInfo]) -> Vec<String> {
    let mut dbs: Vec<String> = Vec::new();
    for b in backups.iter().rev() {
        if b.meta.source == src.name && b.meta.kind == BackupKind::Logical {
            if let Some(d) = &b.meta.database {
                if !dbs.contains(d) {
                    dbs.push(d.clone());
                }
            }
        }
    }
    dbs
}

/// Backups of sources the configuration no longer names (renamed, removed): the only
/// copies of what those servers held, which a runbook must not leave out.
fn unconfigured_sources(
    backups: &[crate::repository::SnapshotInfo],
    sources: &[crate::config::SourceConfig],
    lb: &str,
) -> String {
    let mut by_source: BTreeMap<&str, Vec<&crate::repository::SnapshotInfo>> = BTreeMap::new();
    for b in backups {
        if !sources.iter().any(|s| s.name == b.meta.source) {
            by_source.entry(&b.meta.source).or_default().push(b);
        }
    }
    if by_source.is_empty() {
        return String::new();
    }
    let mut m = String::from("## Backups of sources not in the configuration

The repository holds backups of sources the configuration no longer names (renamed or removed): lifeboat restores and drills them by name, without a connection, objectives or hooks from the configuration.

");
    for (name, list) in by_source {
        let s = sh(name);
        let newest = list.iter().map(|b| b.meta.finished_at).max();
        let _ = writeln!(
            m,
            "- `{name}`: {} backup(s), the newest {}. List them: `{lb} restore --list --source {s}`; restore a database onto a server of your choice: `{lb} restore --latest --source {s} --database DB --target-dsn \"host=HOST port=5432 user=postgres\"`{}; drill: `{lb} drill --source {s} --database DB`.",
            list.len(),
            newest.map_or_else(String::new, |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string()),
            if list.iter().any(|b| b.meta.kind == BackupKind::Physical) {
                format!("; the whole cluster: `{lb} restore --kind physical --source {s} --to-dir DIR --latest`")
            } else {
                String::new()
            }
        );
    }
    m.push('\n');
    m
}

/// `v` as one shell word: as it is when only safe characters, else in single quotes.
#[must_use]
pub fn sh(v: &str) -> String {
    crate::sources::postgres::cluster::shell_quote(v)
}

/// `--flag value` for the shell; `--flag=value` when the value starts with `-`, which a
/// parser would take for another flag.
fn flag(name: &str, v: &str) -> String {
    if v.starts_with('-') {
        format!("{name}={}", sh(v))
    } else {
        format!("{name} {}", sh(v))
    }
}

/// A configuration for source `name` of the repository at `location` after a host loss:
/// what the repository knows (its place, the source's name and databases), with the
/// connection and the password file left for the operator.
fn starter_config(location: &str, name: &str, dbs: &[String]) -> String {
    let toml_str = |v: &str| toml::Value::String(v.to_string()).to_string();
    let s3 = location.starts_with("s3://");
    format!(
        "[repository]\nurl = {}\npassword_file = \"/etc/lifeboat/repository.pass\"   # the repository password, mode 0600\n{}\n[[source]]\nname = {}\nkind = \"postgres\"\ndsn = \"host=NEW-HOST port=5432 user=postgres\"\ndatabases = [{}]\n",
        toml_str(location),
        if s3 {
            "# S3: also endpoint, region, access_key_id and secret_access_key_file (see the README)\n"
        } else {
            ""
        },
        toml_str(name),
        dbs.iter().map(|d| toml_str(d)).collect::<Vec<_>>().join(", ")
    )
}

/// `s` as a Markdown code span: fenced with one backtick more than its longest run of
/// them, so that a name or command holding one (a database called `` a`b ``) stays one span.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    if longest == 0 {
        return format!("`{s}`");
    }
    let fence = "`".repeat(longest + 1);
    format!("{fence} {s} {fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_backticks_stays_one_code_span() {
        assert_eq!(code("app"), "`app`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("x``y`"), "``` x``y` ```");
        // `sh` quoting inside a command is kept as it is
        let cmd = format!("lifeboat restore --database {}", sh("`touch /tmp/x`"));
        assert_eq!(
            code(&cmd),
            "`` lifeboat restore --database '`touch /tmp/x`' ``"
        );
    }

    #[test]
    fn the_restic_repository_pastes_as_words_of_its_own() {
        let r = crate::config::RepositoryConfig {
            endpoint: Some("http://127.0.0.1:3900".into()),
            region: Some("garage".into()),
            ..Default::default()
        };
        assert_eq!(
            restic_repository("s3://dr/app", &r),
            "s3:http://127.0.0.1:3900/dr/app -o s3.region=garage"
        );
        assert_eq!(
            restic_repository("/srv/rp$(touch x) it's", &r),
            r"'/srv/rp$(touch x) it'\''s'"
        );
    }

    #[test]
    fn side_databases_keep_within_63_bytes() {
        assert_eq!(side_name("app", "_before"), "app_before");
        let long = "é".repeat(31); // 62 bytes
        let side = side_name(&long, "_restored");
        assert!(side.len() <= 63 && side.ends_with("_restored"), "{side}");
        assert_eq!(side, format!("{}_restored", "é".repeat(27)));
        // a cut inside a character moves back to its start
        assert_eq!(
            side_name(&"é".repeat(31), "_x"),
            format!("{}_x", "é".repeat(30))
        );
    }

    #[test]
    fn names_become_one_shell_word_and_never_a_flag() {
        assert_eq!(sh("app"), "app");
        assert_eq!(sh("host=/run/pg dbname=app"), "'host=/run/pg dbname=app'");
        assert_eq!(flag("--database", "app"), "--database app");
        assert_eq!(flag("--database", "-dash DB"), "--database='-dash DB'");
        let odd = "Café \"prod\" 'x' $HOME `id` \\";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh(odd)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), odd);
    }

    #[test]
    fn region_loss_never_assumes_a_copy_exists() {
        let dest = |d: &str, there| CopyDestination {
            destination: d.to_string(),
            copies_made: 0,
            holds_repository: there,
        };
        let steps = region_loss(&[dest("/var/tmp/walk/offsite", Some(false))], "lifeboat");
        assert!(
            steps.contains("Lifeboat does not write offsite copies yet")
                && steps.contains(
                    "configured destination `/var/tmp/walk/offsite`: **there is no repository at that path now**"
                ),
            "{steps}"
        );
        assert!(!steps.contains("Use an offsite copy"), "{steps}");
        let steps = region_loss(&[dest("s3://dr/app", None)], "lifeboat");
        assert!(
            steps.contains("`lifeboat --repo s3://dr/app list` shows whether it holds backups"),
            "{steps}"
        );
        assert!(region_loss(&[], "lifeboat").contains("**No offsite copy is configured**"));
    }
}
