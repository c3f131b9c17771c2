//! Physical drills: a base backup restored into a throw-away directory, its files checked
//! against the backup manifest (`pg_verifybackup`), WAL replayed to the target (a time, or
//! the end of the archive), the point reached checked, then the user's hooks and SQL
//! assertions — timed, compared with the objectives, torn down, and sealed as evidence.

use jiff::Timestamp;

use super::{
    drill::{
        assertion, build_report, hook_timeout, hooks_after, hooks_before, rpo_secs, run_hooks,
        seal, Check, Clock, DrillOptions, DrillReport, HookGroups, Measured, Pick, RpoPoint,
    },
    list::{list, ListFilter},
    recover::{owner, recover_inner, start_and_wait, RecoverOptions, RecoveryTarget, TargetAction},
};
use crate::{
    config::SourceConfig,
    error::{Error, Result},
    repository::{Repo, SnapshotInfo},
    sources::postgres::{
        cluster::{free_port, register, stop_registered, ScratchDir},
        conn::{PgBin, PgConn},
        logical::BackupKind,
    },
    wal::{Lsn, WalStore},
};

fn pick(repo: &Repo, src: &SourceConfig, opts: &DrillOptions) -> Result<SnapshotInfo> {
    if let Pick::Id(id) = &opts.pick {
        return super::drill::by_id(repo, src, id, BackupKind::Physical, None);
    }
    let all: Vec<SnapshotInfo> = list(
        repo,
        &ListFilter {
            source: Some(src.name.clone()),
            kind: Some(BackupKind::Physical),
            ..ListFilter::default()
        },
    )?
    .into_iter()
    .filter(|b| opts.target_time.is_none_or(|t| b.meta.finished_at <= t))
    .collect();
    let all = super::drill::in_window(crate::repository::audit::logged_only(repo, all)?, opts);
    // as a restore: a backup the latest timeline's history does not contain cannot recover
    let store = crate::wal::WalStore::new(repo, &src.name)?;
    let (all, _) = crate::wal::status::LatestTimeline::new(&store)?.split(all)?;
    let chosen = match opts.pick {
        Pick::Random => {
            use rand::seq::IndexedRandom;
            all.choose(&mut rand::rng()).cloned()
        }
        _ => all.last().cloned(),
    };
    chosen.ok_or_else(|| {
        Error::not_found(format!(
            "source {:?} has no physical backup{}{} to drill",
            src.name,
            opts.target_time
                .map(|t| format!(" finished before {t}"))
                .unwrap_or_default(),
            super::drill::window_text(opts)
        ))
        .hint(format!(
            "take one with `lifeboat backup --source {} --kind physical`",
            src.name
        ))
    })
}

fn check(name: &str, r: std::result::Result<String, String>) -> Check {
    Check {
        name: name.to_string(),
        ok: r.is_ok(),
        detail: r.unwrap_or_else(|e| e),
    }
}

/// `pg_verifybackup` over the unpacked directory: every file's checksum against the
/// manifest the server wrote at backup time (recovery settings are ignored by design).
fn verify_manifest(
    bin: &PgBin,
    dir: &std::path::Path,
    written: &[String],
) -> std::result::Result<String, String> {
    let mut cmd = crate::sources::postgres::cluster::from_live_dir(std::process::Command::new(
        bin.program("pg_verifybackup"),
    ));
    crate::secret::remove_secret_env(&mut cmd);
    cmd.args(["--no-parse-wal", "--quiet"]);
    // the files the restore added, which the manifest rightly does not list
    for name in written
        .iter()
        .map(String::as_str)
        .chain([super::recover::ISOLATED_HBA])
    {
        cmd.arg("--ignore").arg(name);
    }
    let out = cmd
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run pg_verifybackup: {e}"))?;
    if out.status.success() {
        Ok("every file matches backup_manifest".into())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().take(3).collect::<Vec<_>>().join("; "))
    }
}

fn cluster_bytes(conn: &PgConn, home: &str) -> Option<u64> {
    conn.query(
        home,
        "select sum(pg_database_size(oid))::bigint from pg_database",
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
}

/// Runs a physical drill (see the module docs).
pub(crate) fn drill(repo: &Repo, src: &SourceConfig, opts: &DrillOptions) -> Result<DrillReport> {
    let started_at = Timestamp::now();
    let mut clock = Clock::new();
    let backup = pick(repo, src, opts)?;
    let phys = backup
        .meta
        .physical
        .clone()
        .expect("picked a physical backup");
    let restore_command = opts.restore_command.clone().ok_or_else(|| {
        Error::config("a physical drill needs the restore_command the restored server runs")
            .hint("the CLI sets it to `lifeboat wal-fetch`; library callers set DrillOptions::restore_command")
    })?;
    let store = WalStore::new(repo, &src.name)?;
    let bin = PgBin::new(src.pg_bin_dir.as_deref());
    let scratch = ScratchDir::new("lifeboat-drill-", opts.scratch_dir.as_deref())?;
    // a directory pg_ctl cannot be given is the configuration's fault, not the backup's:
    // refused here, before it could become a failed drill of a good backup
    crate::sources::postgres::cluster::check_pg_ctl_path(
        scratch.path(),
        "the drill's scratch directory",
    )?;
    crate::sources::postgres::cluster::check_socket_dir(
        scratch.path(),
        "the drill's scratch directory",
    )?;
    if src.drill.server.is_some() {
        // whoever set drill.server may have meant to keep drills off this host
        crate::sources::postgres::cluster::note(format!(
            "drill.server is for logical drills: this physical drill restores the whole cluster into a throw-away server on this host, in {}",
            scratch.path().display()
        ));
    }
    let target = opts
        .target_time
        .map_or(RecoveryTarget::Latest, RecoveryTarget::Time);
    let mut rec = RecoverOptions {
        source: src.name.clone(),
        backup: Some(backup.id.clone()),
        before: None,
        to_dir: scratch.path().join("data"),
        target: target.clone(),
        inclusive: true,
        timeline: None,
        action: TargetAction::Promote,
        restore_command,
        keep_archiving: false,
        start: false,
        port: Some(free_port()?),
        socket_dir: Some(scratch.path().to_path_buf()),
        owner: None,
        timeout_secs: 0,
        pg_bin_dir: src.pg_bin_dir.clone(),
        isolate: true,
        // a drill runs its own hooks against the copy, never the restore hooks that stop
        // and start production's application
        hooks: crate::config::Hooks::default(),
        skip_space_check: false,
    };
    let user = owner(&rec)?;
    if let Some(u) = &user {
        nix::unistd::chown(scratch.path(), Some(u.uid), Some(u.gid))
            .map_err(|e| Error::unavailable(format!("chown {}: {e}", scratch.path().display())))?;
    }
    let user_name = user.map(|u| u.name);
    let mut checks = Vec::new();
    let mut reached = None;
    let mut restored_bytes = None;
    // the backup's version until the recovered server can say its own
    // as `show server_version` says it (15.18), until the restored server says it itself
    let num = backup.meta.server_version_num;
    let mut server_version = format!("{}.{}", num / 10_000, num % 100);
    let mut reachable_time = None;
    // the database given (`--database`), else the one the source names (its list, else
    // its DSN), where assertions and hooks run; the cluster's own `postgres` only when
    // none is named
    let database = opts
        .database
        .clone()
        .or_else(|| src.named_databases().first().cloned())
        .or_else(|| PgConn::from_source(src).ok()?.default_database())
        .unwrap_or_else(|| phys.login_database().to_string());

    let mut groups = HookGroups::default();
    let restored = recover_inner(repo, &store, &rec);
    match &restored {
        Ok(r) => {
            clock.add("fetch", r.fetch_secs);
            reachable_time = r.reachable_time;
        }
        Err(_) => clock.add("fetch", clock.start.elapsed().as_secs_f64()),
    }
    let full =
        |e: &Error| super::drill::out_of_space(e, &scratch.path().display().to_string(), false);
    if let Some(e) = restored.as_ref().err().and_then(&full) {
        return Err(e);
    }
    checks.push(check(
        "base backup restored (stream hash, WAL chain to the target)",
        restored
            .as_ref()
            .map(|r| {
                format!(
                    "{} files unpacked; the archive reaches {}",
                    phys.files, r.reachable_lsn
                )
            })
            .map_err(ToString::to_string),
    ));
    if let Ok(report) = &restored {
        let manifest = clock.time("verify", || {
            verify_manifest(&bin, &rec.to_dir, &report.config_written)
        });
        checks.push(check(
            "files vs backup_manifest (pg_verifybackup)",
            manifest,
        ));
        rec.start = true;
        let log = rec.to_dir.join(super::recover::RECOVERY_LOG);
        let log_from = super::recover::log_len(&log);
        register(bin.program("pg_ctl"), rec.to_dir.clone(), user_name.clone());
        let replayed = clock.time("replay", || {
            start_and_wait(&rec, user_name.as_deref(), &log, repo, &phys)
        });
        if let Some(e) = replayed.as_ref().err().and_then(&full) {
            // what a finished drill's teardown does, before the scratch directory goes
            stop_registered(&rec.to_dir);
            drop(scratch);
            return Err(e);
        }
        let point = replayed
            .as_ref()
            .map_err(|e| {
                let text = e.to_string();
                // the archive ends before the time asked for: what is there was recoverable,
                // the point asked for is not (yet); a recovery cut at a tablespace's
                // creation says so itself
                if text.contains(crate::wal::TABLESPACE_CUT) {
                    return text;
                }
                match (&target, report.reachable_time) {
                    (RecoveryTarget::Time(t), Some(end))
                        if text.contains("recovery ended before configured recovery target")
                            && end < *t =>
                    {
                        format!(
                            "{text} (the archive ends at {}, LSN {}, before the target {t}: drill without --target-time to recover to the end of the archive, or with a time within it)",
                            end.strftime("%Y-%m-%d %H:%M:%S UTC"),
                            report.reachable_lsn
                        )
                    }
                    (RecoveryTarget::Time(t), _)
                        if text.contains("recovery ended before configured recovery target") =>
                    {
                        format!(
                            "{text} (PostgreSQL stops at a time only on a transaction that ended after it, and the archive holds none after {t}: nothing was written then; drill without --target-time to recover to the end of the archive)"
                        )
                    }
                    _ => text,
                }
            })
            .and_then(|p| {
                let lsn = p
                    .lsn
                    .as_deref()
                    .and_then(|l| Lsn::parse(l).ok())
                    .unwrap_or_default();
                let seg = phys.wal_segment_size;
                let at_target = match &target {
                    RecoveryTarget::Time(t) => {
                        // read in UTC and ISO form (see `recover`); a time that does not
                        // read is not taken as being before the target
                        p.stop_reason.is_some()
                            && p.last_transaction
                                .as_deref()
                                .is_none_or(|s| s.parse::<Timestamp>().is_ok_and(|last| last <= *t))
                    }
                    _ => Lsn::parse(&report.reachable_lsn)
                        .is_ok_and(|end| super::recover::reached_archive_end(lsn, end, seg)),
                };
                let text = format!(
                    "reached LSN {}{}{}; {} WAL file(s) served by the drill itself",
                    p.lsn.as_deref().unwrap_or("?"),
                    p.last_transaction
                        .as_deref()
                        .map(|t| format!(", last transaction {t}"))
                        .unwrap_or_default(),
                    p.stop_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    p.wal_served
                );
                // what this recovery wrote to the log, not a log the backup held
                let cut =
                    super::recover::tablespace_cut(&super::recover::log_since(&log, log_from));
                if lsn < phys.stop_lsn {
                    Err(format!("{text}: before the backup's end {}", phys.stop_lsn))
                } else if let Some((what, _)) = cut.filter(|_| {
                    // to a time before the creation, recovery stopped where asked (it read
                    // ahead into the cut); to the end of the archive it stopped short
                    !at_target || matches!(target, RecoveryTarget::Latest)
                }) {
                    Err(format!(
                        "{text}: {what}; a physical drill cannot get past it: drill a base backup taken after the tablespace is gone, and back up the databases that use it logically"
                    ))
                } else if at_target {
                    Ok(text)
                } else {
                    Err(format!(
                        "{text}: short of the target{}",
                        super::recover::foreign_wal_note(&super::recover::log_since(
                            &log, log_from
                        ))
                    ))
                }
            });
        checks.push(check("WAL replay reached the target", point));
        if let Ok(p) = replayed {
            reached = Some(p);
            let socket = scratch.path();
            let port = rec.port.unwrap_or_default();
            let conn = PgConn::local(socket, port, phys.login_role(), bin.clone());
            restored_bytes = cluster_bytes(&conn, phys.login_database());
            if let Ok(v) = conn.query(phys.login_database(), "show server_version") {
                server_version = v.trim().to_string();
            }
            // no table is compared with a truth here: the hooks before checks are only
            // the first hooks
            let hooks = clock.time("hooks", || {
                let mut hooks = hooks_before(src, opts);
                hooks.extend(hooks_after(src, opts));
                run_hooks(
                    &conn,
                    &database,
                    ("hook", &hooks),
                    hook_timeout(src),
                    &mut groups,
                )
            });
            checks.extend(hooks);
            clock.time("checks", || {
                for sql in src.drill.checks.iter().chain(&opts.checks) {
                    checks.push(assertion(&conn, &database, sql, hook_timeout(src)));
                }
                // the whole cluster is here: each database's own, in it
                for (db, sqls) in &src.drill.database_checks {
                    for sql in sqls {
                        let mut c = assertion(&conn, db, sql, hook_timeout(src));
                        c.name = format!("assert in {db}: {sql}");
                        checks.push(c);
                    }
                }
            });
        }
    }
    clock.time("teardown", || {
        drop(groups);
        stop_registered(&rec.to_dir);
        drop(scratch);
    });

    let rto_secs = clock.secs_of(&["fetch", "verify", "replay", "hooks", "checks"]);
    // physical RPO: what a disaster now would lose = the time since the newest
    // recoverable WAL was archived
    let rpo_point = match (reachable_time, &restored) {
        (Some(at), Ok(r)) => RpoPoint {
            at,
            backup_id: None,
            lsn: Some(r.reachable_lsn.clone()),
            what: format!(
                "the newest archived WAL, up to LSN {} (archived {at})",
                r.reachable_lsn
            ),
        },
        // no archiving time known: the backup's own end is the newest point proven
        _ => RpoPoint {
            at: backup.meta.finished_at,
            backup_id: Some(backup.id.clone()),
            lsn: None,
            what: format!(
                "the end of base backup {} (no archived WAL time known)",
                backup.short_id()
            ),
        },
    };
    let rpo_secs = rpo_secs(started_at, rpo_point.at);
    let production_bytes = PgConn::from_source(src).ok().and_then(|c| {
        cluster_bytes(
            &c,
            &c.default_database().unwrap_or_else(|| "postgres".into()),
        )
    });
    let not_checked = {
        let mut n: Vec<String> = Vec::new();
        if src.drill.checks.is_empty()
            && src.drill.database_checks.is_empty()
            && opts.checks.is_empty()
        {
            n.push("table contents: a physical drill proves the base backup and the WAL replay to the target; add --check assertions (or drill the logical backups, which compare every table) to check data".into());
        }
        let unlogged = reached.as_ref().map_or(&[][..], |r| &r.unlogged[..]);
        if !unlogged.is_empty() {
            n.push(format!(
                "the rows of {} unlogged table(s) ({}): PostgreSQL keeps them in no base backup and no WAL, so they come back empty, as after a crash",
                unlogged.len(),
                unlogged.join(", ")
            ));
        }
        n
    };
    let report = build_report(
        src,
        &backup,
        Measured {
            database,
            started_at,
            server_version,
            phases: clock.phases,
            checks,
            tables: Vec::new(),
            rto_secs,
            rpo_secs,
            rpo_point: Some(rpo_point),
            production_bytes,
            restored_bytes,
            kind: BackupKind::Physical,
            target: Some(match &target {
                RecoveryTarget::Time(t) => format!("time {t}"),
                _ => "end of the archive".to_string(),
            }),
            reached,
            scratch_server: None,
            not_checked,
        },
    );
    seal(repo, opts, report)
}
