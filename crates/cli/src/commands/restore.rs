//! `lifeboat restore`.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::{
    config::{Hooks, SourceConfig},
    ops::{
        list::{list, ListFilter},
        recover::{
            describe_target, plan_recovery, recover, RecoverOptions, RecoveryTarget, TargetAction,
        },
        restore::{on_target_server, plan, restore, RestoreOptions, Selector},
    },
    sources::postgres::logical::BackupKind,
    wal::{Lsn, WalStore},
    Error,
};

use super::parse_time;
use crate::{output, Ctx};

/// Restore a backup.
#[derive(Debug, Args)]
pub struct RestoreCmd {
    /// Snapshot id (a unique prefix is enough).
    id: Option<String>,
    /// List the backups that can be restored, then stop.
    #[arg(long)]
    list: bool,
    /// The newest backup of the source (of --kind and --database).
    #[arg(long, conflicts_with_all = ["id", "before"])]
    latest: bool,
    /// The newest backup finished (not started) at or before this time (a bare date means
    /// before that day starts: `--before 2026-12-05` skips the backups of 5 December).
    #[arg(long, value_parser = parse_time, conflicts_with = "id")]
    before: Option<jiff::Timestamp>,
    /// Source name (default: the only one; with an id: the backup's source).
    #[arg(long, short)]
    source: Option<String>,
    /// Kind: logical (the full dump) or schema (no data); physical: see below.
    /// [default: logical]
    #[arg(long, short)]
    kind: Option<BackupKind>,
    /// Which database of the source (required when its backups cover several).
    #[arg(long, short)]
    database: Option<String>,
    /// Restore into this database (created if missing; default: the original name).
    #[arg(long)]
    to_database: Option<String>,
    /// Restore onto another server (libpq DSN; its password from the DSN, PGPASSWORD or
    /// ~/.pgpass, never the source's password_file or password_command).
    #[arg(long)]
    target_dsn: Option<String>,
    /// Drop existing objects in the target first (needs --force).
    #[arg(long)]
    clean: bool,
    /// With --clean: restore over an existing, non-empty database (alone it does nothing).
    #[arg(long)]
    force: bool,
    /// Parallel pg_restore jobs and table checks, 1 to 64 (each takes a connection of the
    /// target server) [default: 2].
    #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: Option<u32>,
    /// Restore roles and tablespaces (the source's globals backup) first; they are never
    /// restored without this flag.
    #[arg(long)]
    globals: bool,
    /// Skip ownership and privileges (when the roles do not exist on the target).
    #[arg(long)]
    no_owner: bool,
    /// Put every table and index in the target's default tablespace, and leave the
    /// tablespaces out of --globals (when the target lacks the source's tablespaces, or
    /// their directories belong to the source on this host).
    #[arg(long)]
    no_tablespaces: bool,
    /// Go on past objects that fail to restore, as plain pg_restore does, and keep the
    /// new database with everything that loaded (the restore still fails, naming them);
    /// not with --clean.
    #[arg(long)]
    keep_going: bool,
    /// Do not compare the restored data with the backup-time truth.
    #[arg(long)]
    no_verify: bool,
    /// Shell command run before the restore (stop the application).
    #[arg(long)]
    pre_hook: Option<String>,
    /// Shell command run after a successful restore (migrations, start the application).
    #[arg(long)]
    post_hook: Option<String>,
    /// Directory for the staged dump [default: $LIFEBOAT_SCRATCH_DIR, else the system temp
    /// directory].
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Print the plan and change nothing (a refusal is not written to the audit log).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    physical: PhysicalArgs,
}

/// Flags of a physical restore (`--kind physical`, or implied by `--to-dir`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Physical restore and point-in-time recovery")]
struct PhysicalArgs {
    /// Empty or new directory to restore the cluster's data directory into.
    #[arg(long)]
    to_dir: Option<PathBuf>,
    /// Skip the check that --to-dir's file system has room for the unpacked backup (a
    /// compressing file system, ZFS or btrfs, holds more than its free space says).
    #[arg(long)]
    no_space_check: bool,
    /// Recover up to this time (RFC 3339 or local "2026-11-23 14:31:59").
    #[arg(long, value_parser = parse_time, group = "target")]
    target_time: Option<jiff::Timestamp>,
    /// Recover up to this WAL position (e.g. 0/3000060).
    #[arg(long, group = "target")]
    target_lsn: Option<String>,
    /// Recover up to this transaction id.
    #[arg(long, group = "target")]
    target_xid: Option<u64>,
    /// Recover up to this restore point (`pg_create_restore_point`).
    #[arg(long, group = "target")]
    target_name: Option<String>,
    /// Stop as soon as the backup is consistent (no further WAL).
    #[arg(long, group = "target")]
    target_immediate: bool,
    /// Stop just before the target instead of just after it.
    #[arg(long)]
    exclusive: bool,
    /// recovery_target_timeline: latest (default), current or a timeline id.
    #[arg(long)]
    target_timeline: Option<String>,
    /// At the target: promote (default), pause or shutdown.
    #[arg(long, default_value = "promote", value_parser = ["promote", "pause", "shutdown"])]
    target_action: String,
    /// Start the server, wait for recovery to finish and report the point reached.
    #[arg(long)]
    start: bool,
    /// Port for the restored server (default: the backed-up setting).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Unix socket directory for the restored server.
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// OS user owning the files and running the server (default when root: postgres).
    #[arg(long)]
    owner: Option<String>,
    /// Keep WAL archiving on in the restored server (off by default, so a copy never
    /// archives into the original's WAL).
    #[arg(long)]
    archive: bool,
    /// With --start, give up waiting for recovery after this many seconds (0: wait).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
}

impl RestoreCmd {
    /// Plans, then restores (or prints the plan).
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if let (Some(kind), Some(_)) = (self.kind, &self.physical.to_dir) {
            if kind != BackupKind::Physical {
                // a cluster-sized directory written for a dump asked for: refused first
                return Err(lifeboat_core::Error::config(format!(
                    "--to-dir restores a physical backup, not a {kind} one"
                ))
                .hint(format!(
                    "a {kind} backup is restored into a database: --to-database NAME (or --target-dsn); for the whole cluster into a directory, --kind physical --to-dir DIR"
                ))
                .into());
            }
        }
        if self.list && (self.id.is_some() || self.latest || self.before.is_some()) {
            return Err(lifeboat_core::Error::config(
                "--list lists the backups a restore can take; it takes no backup id, --latest or --before",
            )
            .hint("leave --list out to restore that backup, or narrow the list with --source, --database and --kind")
            .into());
        }
        let physical = self.kind == Some(BackupKind::Physical) || self.physical.to_dir.is_some();
        if !self.list && !physical {
            // before the password is asked for: a usage mistake, not a restore
            self.refuse_physical_flags()?;
        }
        // a listing or a plan is not logged; a restore that could not even start is
        let repo = if self.list || self.dry_run {
            ctx.open()?
        } else {
            ctx.open_logged("restore", "restore")?
        };
        if self.list {
            let backups = list(
                &repo,
                &ListFilter {
                    source: self.source.clone(),
                    kind: Some(self.kind.unwrap_or(BackupKind::Logical)),
                    database: self.database.clone(),
                    ..ListFilter::default()
                },
            )?;
            if backups.is_empty() {
                if let Some(e) = super::list::unknown_name(
                    ctx,
                    &repo,
                    self.source.as_deref(),
                    self.database.as_deref(),
                )? {
                    return Err(e.into());
                }
            }
            output::warn_repository(&repo);
            if ctx.json {
                return output::json_counts(&backups);
            }
            // newest first: the one a restore most likely wants
            let mut rows = vec![vec![
                "ID".to_string(),
                "FINISHED".into(),
                "KIND".into(),
                "SOURCE".into(),
                "DATABASE".into(),
            ]];
            for b in backups.iter().rev() {
                rows.push(vec![
                    b.short_id().to_string(),
                    output::time(b.meta.finished_at),
                    b.meta.kind.to_string(),
                    b.meta.source.clone(),
                    b.meta.database.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            output::table(&rows);
            return Ok(());
        }
        if physical {
            return self.run_physical(ctx, &repo);
        }
        let selector = match (&self.id, self.latest, self.before) {
            (Some(id), _, _) => Selector::Id(id.clone()),
            (None, _, Some(t)) => Selector::Before(t),
            (None, true, None) => Selector::Latest,
            (None, false, None) => {
                return Err(
                    Error::config("which backup? give an id, --latest or --before TIME")
                        .hint("`lifeboat restore --list` shows what can be restored")
                        .into(),
                )
            }
        };
        if let (Some(kind), Selector::Id(id)) = (self.kind, &selector) {
            // a kind given with an id must be the backup's: it is not a filter here
            let b = repo.backup(id)?;
            if b.meta.kind != kind {
                return Err(Error::config(format!(
                    "backup {} is a {} backup, not {kind}",
                    b.short_id(),
                    b.meta.kind
                ))
                .hint("leave --kind out (the backup names its kind), or give a backup of that kind: `lifeboat restore --list --kind KIND`")
                .into());
            }
        }
        let source_name = match (&self.source, &selector) {
            (Some(s), _) => s.clone(),
            (None, Selector::Id(id)) => repo.backup(id)?.meta.source,
            (None, _) => ctx.source_in_repository(None, Some(&repo))?.name,
        };
        let src: SourceConfig = match ctx.config.source(&source_name) {
            Ok(s) => s.clone(),
            // disaster case: no config for the old server, only a target to restore onto
            Err(e) => match &self.target_dsn {
                Some(dsn) => SourceConfig::postgres(&source_name, dsn),
                None => {
                    return Err(anyhow::Error::from(
                        e.hint("pass --target-dsn to restore onto a server of your choice"),
                    ))
                }
            },
        };
        let src = match &self.target_dsn {
            Some(dsn) => src.on_server(dsn),
            None => src,
        };
        let opts = RestoreOptions {
            selector,
            source: Some(source_name),
            kind: self.kind.unwrap_or(BackupKind::Logical),
            database: self.database.clone(),
            to_database: self.to_database.clone(),
            clean: self.clean,
            force: self.force,
            jobs: self.jobs.unwrap_or(2),
            globals: self.globals,
            verify: !self.no_verify,
            no_owner: self.no_owner,
            no_tablespaces: self.no_tablespaces,
            keep_going: self.keep_going,
            hooks: Hooks {
                pre_restore: self.pre_hook.clone(),
                post_restore: self.post_hook.clone(),
            },
            scratch_dir: self.scratch_dir.clone(),
            dry_run: self.dry_run,
        };
        // a refused password on another server is about that server's password
        let on_target = |e: Error| {
            if self.target_dsn.is_some() {
                on_target_server(e)
            } else {
                e
            }
        };
        let p = plan(&repo, &src, &opts).map_err(on_target)?;
        Ctx::under_way_is(format!(
            "restore of backup {} ({} of {:?}, source {}) into database {:?}",
            p.backup.short_id(),
            p.backup.meta.kind,
            p.backup.meta.database.as_deref().unwrap_or("-"),
            p.backup.meta.source,
            p.target_database
        ));
        output::warn_repository(&repo);
        if let Some(w) = &p.lock_warning {
            eprintln!("warning: {w}");
        }
        if p.configured_hooks_skipped {
            eprintln!(
                "note: the configured restore hooks do not run for a copy under another name ({:?}): they are for restoring the application's own database; pass --pre-hook / --post-hook to run hooks for this copy",
                p.target_database
            );
        }
        // pg_restore --clean needs their locks and waits silently (forever, for a session
        // idle in a transaction): say so before it starts
        if p.clean && !p.sessions_on_target.is_empty() {
            eprintln!(
                "warning: {} other session(s) are connected to {:?} ({}): the restore waits for their locks{}",
                p.sessions_on_target.len(),
                p.target_database,
                p.sessions_on_target.join(", "),
                if p.pre_hook.is_some() {
                    " unless the pre-restore hook stops them"
                } else {
                    "; stop the application first (--pre-hook \"systemctl stop app\")"
                }
            );
        }
        if self.dry_run {
            if ctx.json {
                return output::json_slim(&p);
            }
            println!(
                "would restore backup {} (source {}, {} of {:?}, finished {})",
                p.backup.short_id(),
                p.backup.meta.source,
                p.backup.meta.kind,
                p.backup.meta.database.as_deref().unwrap_or("-"),
                output::time(p.backup.meta.finished_at)
            );
            println!(
                "  into database {:?} on {}{}",
                p.target_database,
                p.target_server,
                if p.create_database {
                    " (created)"
                } else {
                    " (exists)"
                }
            );
            if let Some(g) = &p.globals {
                println!("  roles and tablespaces first, from {}", g.short_id());
            }
            println!(
                "  pg_restore jobs: {}, clean first: {}, verify against backup-time truth: {}",
                // an overwrite is one transaction, in one job
                if p.clean { 1 } else { p.jobs },
                p.clean,
                p.verify
            );
            println!(
                "  pre-restore hook: {}",
                p.pre_hook.as_deref().unwrap_or("-")
            );
            println!(
                "  post-restore hook: {}",
                p.post_hook.as_deref().unwrap_or("-")
            );
            println!("dry run: nothing was changed");
            return Ok(());
        }
        let msg = format!(
            "restoring {} into {}",
            p.backup.short_id(),
            p.target_database
        );
        let report = ctx
            .bars
            .spinning(&msg, || {
                restore(&repo, &src, p, self.scratch_dir.as_deref())
            })
            .map_err(on_target)?;
        output::warn_repository(&repo);
        if ctx.json {
            return output::json_slim(&report);
        }
        println!(
            "restored backup {} (the data as of {}) into database {:?} in {} (fetch {}, restore {})",
            report.plan.backup.short_id(),
            // the dump's snapshot, taken as it started (or the standby's replay point)
            output::time(
                report
                    .plan
                    .backup
                    .meta
                    .data_as_of
                    .unwrap_or(report.plan.backup.meta.started_at)
            ),
            report.plan.target_database,
            output::secs(report.total_secs),
            output::secs(report.fetch_secs),
            output::secs(report.restore_secs)
        );
        if let Some(g) = &report.plan.globals {
            println!(
                "restored the globals ({}) first, from backup {}",
                if report.plan.no_tablespaces {
                    "roles; tablespaces left out"
                } else {
                    "roles, tablespaces"
                },
                g.short_id()
            );
        }
        for (name, hook) in [
            ("pre-restore", &report.plan.pre_hook),
            ("post-restore", &report.plan.post_hook),
        ] {
            if let Some(h) = hook {
                println!("ran the {name} hook: {h}");
            }
        }
        if let Some(role) = &report.kept_password_of {
            println!("note: role {role:?}, which this restore connects as, kept its password on the target; the globals backup's password for it was not applied");
        }
        if let Some(w) = &report.without_owners {
            println!(
                "note: --no-owner: everything belongs to the restoring role; the backup's {} grant(s) to roles were left out, and its {} revocation(s) from PUBLIC applied (nothing production kept from PUBLIC is open to it here)",
                w.grants_left_out, w.public_revocations_applied
            );
        }
        for p in &report.properties_not_applied {
            println!("note: not applied (a role this server lacks, or one the restoring role may not set; --globals, or a superuser, brings it): {p}");
        }
        if let Some(c) = &report.comparison {
            println!(
                "verified: {} tables, {} rows{} match the backup-time counts and hashes",
                c.tables.len(),
                c.rows(),
                c.also_compared()
            );
            if c.large_objects_left > 0 {
                println!(
                    "note: {} large object(s) the backup does not have (made since) were left in place, as tables made since are",
                    c.large_objects_left
                );
            }
        }
        Ok(())
    }

    fn run_physical(
        &self,
        ctx: &Ctx,
        repo: &lifeboat_core::repository::Repo,
    ) -> anyhow::Result<()> {
        let a = &self.physical;
        self.refuse_logical_flags()?;
        let to_dir = a.to_dir.clone().ok_or_else(|| {
            Error::config("a physical restore needs --to-dir DIR (a new or empty directory)")
                .hint("the whole cluster is unpacked there, e.g. --to-dir /var/lib/postgresql/15/restored; add --dry-run first to see the plan")
        })?;
        let to_dir = std::path::absolute(&to_dir).map_err(|e| {
            Error::io(format!("finding where --to-dir {} is", to_dir.display()), e)
                .hint("the working directory no longer exists: give --to-dir as an absolute path")
        })?;
        // each of these would be dropped without a word: a time, LSN or transaction picks
        // the newest backup before it (--latest names the newest backup, and with
        // --target-immediate or --target-name that is what it means)
        let targeted = a.target_time.is_some() || a.target_lsn.is_some() || a.target_xid.is_some();
        if targeted && self.latest {
            return Err(Error::config(
                "--latest recovers to the end of the archive, and --target-time, --target-lsn or --target-xid stops before it: give one of them",
            )
            .hint("to stop at the target, leave out --latest (the newest backup before the target is taken)")
            .into());
        }
        if a.exclusive && !targeted {
            return Err(Error::config(
                "--exclusive stops just before a --target-time, --target-lsn or --target-xid, and none is given",
            )
            .hint("leave out --exclusive, or give the target it should stop before")
            .into());
        }
        if a.target_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(Error::config("--target-name is empty")
                .hint("give the name the restore point was made with (`select pg_create_restore_point('name')`)")
                .into());
        }
        if let Some(d) = a.socket_dir.as_ref().filter(|d| !d.is_dir()) {
            return Err(
                Error::config(format!("--socket-dir {} is not a directory", d.display()))
                    .hint("create it (writable by the restored server's user), or leave it out")
                    .into(),
            );
        }
        let target = if let Some(t) = a.target_time {
            RecoveryTarget::Time(t)
        } else if let Some(l) = &a.target_lsn {
            RecoveryTarget::Lsn(Lsn::parse(l)?)
        } else if let Some(x) = a.target_xid {
            RecoveryTarget::Xid(x)
        } else if let Some(n) = &a.target_name {
            RecoveryTarget::Name(n.clone())
        } else if a.target_immediate {
            RecoveryTarget::Immediate
        } else if self.latest || self.id.is_some() || self.before.is_some() {
            RecoveryTarget::Latest
        } else {
            return Err(Error::config(
                "where should recovery stop? give --target-time, --target-lsn, --target-xid, --target-name, --target-immediate or --latest",
            )
            .hint("--latest replays all archived WAL")
            .into());
        };
        let source = match (&self.source, &self.id) {
            (Some(s), _) => s.clone(),
            (None, Some(id)) => repo.backup(id)?.meta.source,
            (None, None) => ctx.source_in_repository(None, Some(repo))?.name,
        };
        let store = WalStore::new(repo, &source)?;
        let opts = RecoverOptions {
            source: source.clone(),
            backup: self.id.clone(),
            before: self.before,
            to_dir,
            target,
            inclusive: !a.exclusive,
            timeline: a.target_timeline.clone(),
            action: match a.target_action.as_str() {
                "pause" => TargetAction::Pause,
                "shutdown" => TargetAction::Shutdown,
                _ => TargetAction::Promote,
            },
            restore_command: restore_command(ctx, &source)?,
            keep_archiving: a.archive,
            start: a.start,
            port: a.port,
            socket_dir: a.socket_dir.clone(),
            owner: a.owner.clone(),
            timeout_secs: a.timeout,
            pg_bin_dir: ctx
                .source(Some(&source))
                .ok()
                .and_then(|s| s.pg_bin_dir.clone()),
            isolate: false,
            hooks: Hooks {
                pre_restore: self.pre_hook.clone(),
                post_restore: self.post_hook.clone(),
            },
            skip_space_check: self.physical.no_space_check,
        };
        let configured = ctx
            .config
            .source(&source)
            .is_ok_and(|s| s.hooks.pre_restore.is_some() || s.hooks.post_restore.is_some());
        if configured && self.pre_hook.is_none() && self.post_hook.is_none() {
            eprintln!("note: the configured restore hooks do not run for a physical restore (a whole cluster, usually beside the original): stop the application by hand if it must be, or pass --pre-hook / --post-hook");
        }
        if self.dry_run {
            let p = plan_recovery(repo, &store, &opts)?;
            if ctx.json {
                // stdout is the plan; what the text adds as warnings goes to stderr
                for warning in env_only_secrets(ctx) {
                    eprintln!("warning: {warning}");
                }
                return output::json(&p);
            }
            println!(
                "would restore physical backup {} (finished {}) into {}{}",
                p.backup.short_id(),
                output::time(p.backup.meta.finished_at),
                p.to_dir.display(),
                p.owner
                    .as_deref()
                    .map(|u| format!(", owned by {u}"))
                    .unwrap_or_default()
            );
            println!(
                "  the archive reaches {}{}",
                p.reachable_lsn,
                p.reachable_time
                    .map(|t| format!(" (archived {})", output::time(t)))
                    .unwrap_or_default()
            );
            println!(
                "  recovery target: {}{}; the restore_command answered as the server will run it",
                describe_target(&p.target),
                inclusion(&p.target, self.physical.exclusive)
            );
            println!("  restore_command: {}", p.restore_command);
            if let (RecoveryTarget::Time(t), Some(archived)) = (&p.target, p.reachable_time) {
                if *t > archived {
                    println!(
                        "warning: the target is later than the newest archived WAL (archived {}): recovery will end before it and fail; push the current segment first (select pg_switch_wal() on the server; if `lifeboat wal status` names segments missing from the archive, they were archived and are gone) or pass --latest",
                        output::time(archived)
                    );
                }
            }
            println!(
                "  {}",
                if p.start {
                    "then start the server and replay WAL to the target"
                } else {
                    "then print how to start the server"
                }
            );
            self.port_note();
            // the probe may have been answered by this user's `wal serve`: the restored
            // server's own environment is what counts after a restart
            for warning in env_only_secrets(ctx) {
                println!("warning: {warning}");
            }
            println!("dry run: nothing was written");
            return Ok(());
        }
        Ctx::under_way_is(format!(
            "physical restore of source {} into {}",
            opts.source,
            opts.to_dir.display()
        ));
        let report = ctx
            .bars
            .spinning("restoring the base backup", || recover(repo, &store, &opts))?;
        output::warn_repository(repo);
        if ctx.json {
            if !opts.keep_archiving {
                eprintln!("note: WAL archiving is off in the restored server (archive_mode = off in its postgresql.auto.conf); when it becomes the primary, turn it on, push its timeline's history file and take a base backup (the restore without --json prints the commands)");
            }
            for warning in env_only_secrets(ctx) {
                eprintln!("warning: {warning}");
            }
            return output::json(&report);
        }
        println!(
            "restored physical backup {} (finished {}) into {} in {}",
            report.backup.short_id(),
            output::time(report.backup.meta.finished_at),
            report.to_dir.display(),
            output::secs(report.fetch_secs)
        );
        for (name, hook) in [
            ("pre-restore", &opts.hooks.pre_restore),
            ("post-restore", &opts.hooks.post_restore),
        ] {
            if let Some(h) = hook {
                println!("  ran the {name} hook: {h}");
            }
        }
        // the target as it was understood, in UTC: a local time read otherwise shows here
        println!(
            "  recovery target: {}{}",
            lifeboat_core::ops::recover::describe_target(&opts.target),
            inclusion(&opts.target, !opts.inclusive)
        );
        println!(
            "  the archive reaches {}{}",
            report.reachable_lsn,
            report
                .reachable_time
                .map(|t| format!(" (archived {})", output::time(t)))
                .unwrap_or_default()
        );
        if !report.config_written.is_empty() {
            println!(
                "  the backup held no {} (the cluster kept its configuration outside its data directory{}): wrote minimal ones; carry the original's settings over",
                report.config_written.join(", "),
                report
                    .backup
                    .meta
                    .physical
                    .as_ref()
                    .and_then(|p| p.config_file.as_deref())
                    .map(|f| format!(", in {f}"))
                    .unwrap_or_default()
            );
        }
        if let Some(m) = &report.moved_socket {
            println!(
                "  the backup's socket directory {} is not on this host: the server's socket is in {} instead (set in postgresql.auto.conf; --socket-dir chooses another)",
                m.missing
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                m.to.display()
            );
        }
        match (&report.reached, &report.start_hint) {
            (Some(r), _) => {
                println!(
                    "recovery finished in {}: reached LSN {}{}{}",
                    output::secs(report.replay_secs.unwrap_or_default()),
                    r.lsn.as_deref().unwrap_or("?"),
                    r.last_transaction
                        .as_deref()
                        .map(|t| format!(", last transaction committed {t}"))
                        .unwrap_or_default(),
                    r.timeline
                        .map(|t| format!(", timeline {t}"))
                        .unwrap_or_default()
                );
                if r.wal_served > 0 {
                    println!(
                        "  {} WAL file(s) served to the recovery by this lifeboat (the repository opened once)",
                        r.wal_served
                    );
                }
                if let Some(why) = &r.stop_reason {
                    println!("  {why}");
                }
                if r.last_transaction.is_none() {
                    // the first question after a loss is how recent the data is
                    println!(
                        "  no transaction committed after the base backup was replayed: the data is as of the backup's end ({}){}",
                        output::time(report.backup.meta.finished_at),
                        if matches!(report.target, RecoveryTarget::Latest) {
                            "; what was written after it never reached the archive"
                        } else {
                            ""
                        }
                    );
                }
                if r.in_recovery {
                    println!("  the server is paused at the target: inspect it, then `select pg_wal_replay_resume()` to promote");
                }
                if !r.locked.is_empty() {
                    println!(
                        "warning: the transaction replay paused in (not yet committed at the target) holds exclusive locks on {}: a query on them waits until recovery resumes; to read them, restore to just before that transaction (--exclusive) or with --target-action promote",
                        r.locked.join(", ")
                    );
                }
                if !r.unlogged.is_empty() {
                    println!(
                        "note: {} unlogged table(s) came back empty, as after a crash (PostgreSQL keeps their rows in no base backup and no WAL): {}",
                        r.unlogged.len(),
                        r.unlogged.join(", ")
                    );
                }
                if let Some(l) = &report.log {
                    println!("  server log: {}", l.display());
                }
                if let Some((socket, port)) = &r.listen {
                    // as the cluster's own superuser, into a database it had
                    let phys = report.backup.meta.physical.as_ref();
                    println!(
                        "  connect: psql -h {} -p {port} -U {} -d {}    stop: {}{} -D {} stop",
                        shell_quote(&socket.display().to_string()),
                        shell_quote(phys.map_or("postgres", |p| p.login_role())),
                        shell_quote(phys.map_or("postgres", |p| p.login_database())),
                        report
                            .owner
                            .as_deref()
                            .map(|u| format!("runuser -u {u} -- "))
                            .unwrap_or_default(),
                        shell_quote(
                            &lifeboat_core::sources::postgres::conn::PgBin::new(
                                opts.pg_bin_dir.as_deref()
                            )
                            .program("pg_ctl")
                            .display()
                            .to_string()
                        ),
                        shell_quote(&report.to_dir.display().to_string())
                    );
                }
            }
            (None, Some(hint)) => {
                println!("start it to replay WAL up to the target:");
                println!("  {hint}");
                self.port_note();
            }
            (None, None) => {}
        }
        if !opts.keep_archiving {
            let lb = invocation(ctx, "lifeboat")?;
            let source = shell_quote(&report.backup.meta.source);
            // paused, it still runs on the backup's timeline: the new one comes with the
            // promotion that resuming starts
            let timeline = report
                .reached
                .as_ref()
                .filter(|r| !r.in_recovery)
                .and_then(|r| r.timeline);
            let history = timeline.map_or_else(
                || "0000000N.history".to_string(),
                |t| format!("{t:08X}.history"),
            );
            let which = if timeline.is_some() {
                ""
            } else {
                "   (N: the timeline it promoted to, `select timeline_id from pg_control_checkpoint()` after the promotion)"
            };
            println!("note: WAL archiving is off in the restored server (archive_mode = off in its postgresql.auto.conf, which overrides postgresql.conf).");
            println!("  When it becomes the primary (and only then: the history file sends every later recovery onto its timeline):");
            // what to archive with here: this configuration, or one still to be written
            // PostgreSQL replaces `%x` in it: a `%` in a path is written `%%`
            // by its full path, as the restore_command names it: the server's PATH (a
            // service's) may not hold it, and a command not found stops the archiver
            let push = if ctx.config_path.is_some() {
                archive_command(ctx, &report.backup.meta.source)?
            } else {
                format!(
                    "{} --config FILE wal-push --source {source} %p",
                    shell_quote(&std::env::current_exe()?.display().to_string()).replace('%', "%%")
                )
            };
            let set_push = format!(
                "ALTER SYSTEM SET archive_command = '{}'",
                push.replace('\'', "''")
            );
            match report
                .archive_command
                .as_deref()
                .map(|c| lost_config(c, &report.to_dir))
            {
                Some(Some(path)) => println!(
                    "  1. its archive_command runs lifeboat with the configuration {path}, which is not on this host: write this host's configuration there, or in it: {set_push}; then ALTER SYSTEM SET archive_mode = on; then restart it"
                ),
                Some(None) => println!(
                    "  1. in it: ALTER SYSTEM SET archive_mode = on; then restart it   (its archive_command: {})",
                    report.archive_command.as_deref().unwrap_or_default()
                ),
                None => println!(
                    "  1. in it: {set_push} (the restored data directory sets none); ALTER SYSTEM SET archive_mode = on; then restart it"
                ),
            }
            println!(
                "  2. {lb} wal-push --source {source} {}   (PostgreSQL archives a new timeline's history only if archiving was on when it was promoted){which}",
                shell_quote(&report.to_dir.join("pg_wal").join(&history).display().to_string())
            );
            if ctx.config_path.is_some() {
                println!("  3. point source {source}'s dsn at it, then {lb} backup --source {source} --kind physical   (its first base backup: until then no recovery reaches past the promotion)");
            } else {
                println!("  3. write a lifeboat.toml with the [repository] and a [[source]] named {source} whose dsn reaches it (see the README), then lifeboat --config FILE backup --source {source} --kind physical   (its first base backup: until then no recovery reaches past the promotion)");
            }
        }
        for warning in env_only_secrets(ctx) {
            println!("warning: {warning}");
        }
        Ok(())
    }
}

impl RestoreCmd {
    /// A physical restore brings back a whole cluster into a directory: the flags that
    /// choose a database or a way of loading one would be ignored, which an operator
    /// must not find out afterwards.
    fn refuse_logical_flags(&self) -> anyhow::Result<()> {
        let given = flags_given(&[
            ("--to-database", self.to_database.is_some()),
            ("--target-dsn", self.target_dsn.is_some()),
            ("--database", self.database.is_some()),
            ("--clean", self.clean),
            ("--force", self.force),
            ("--jobs", self.jobs.is_some()),
            ("--globals", self.globals),
            ("--no-owner", self.no_owner),
            ("--no-tablespaces", self.no_tablespaces),
            ("--no-verify", self.no_verify),
            ("--keep-going", self.keep_going),
            ("--scratch-dir", self.scratch_dir.is_some()),
        ]);
        let Some(given) = given else {
            return Ok(());
        };
        Err(Error::config(format!(
            "{given} only {} to a logical restore; a physical restore brings back the whole cluster into --to-dir",
            agree(&given)
        ))
        .hint("leave them out, or restore a logical backup (--kind logical) to pick a database")
        .into())
    }

    /// A logical restore brings back a dump as it was when it was taken: a recovery target
    /// or a server flag would be ignored, and an operator who forgot `--kind physical` at
    /// 03:00 would get the last dump, reported as a success, instead of the point asked for.
    fn refuse_physical_flags(&self) -> anyhow::Result<()> {
        let a = &self.physical;
        let given = flags_given(&[
            ("--target-time", a.target_time.is_some()),
            ("--target-lsn", a.target_lsn.is_some()),
            ("--target-xid", a.target_xid.is_some()),
            ("--target-name", a.target_name.is_some()),
            ("--target-immediate", a.target_immediate),
            ("--exclusive", a.exclusive),
            ("--target-timeline", a.target_timeline.is_some()),
            ("--target-action", a.target_action != "promote"),
            ("--start", a.start),
            ("--port", a.port.is_some()),
            ("--socket-dir", a.socket_dir.is_some()),
            ("--owner", a.owner.is_some()),
            ("--archive", a.archive),
            ("--timeout", a.timeout != 0),
            ("--no-space-check", a.no_space_check),
        ]);
        let Some(given) = given else {
            return Ok(());
        };
        Err(Error::config(format!(
            "{given} only {} to a physical restore (point-in-time recovery); a logical restore brings back a dump as it was taken",
            agree(&given)
        ))
        .hint("add --kind physical and --to-dir DIR to recover the cluster to that point, or leave them out to restore a dump (`lifeboat restore --list` shows the dumps and when they were taken)")
        .into())
    }

    /// Without --port the restored server takes the port of the original's configuration,
    /// which is taken while the original runs on this host.
    fn port_note(&self) {
        if self.physical.port.is_none() {
            println!("note: without --port the restored server listens on the original's port (as its configuration sets it; 5432 when the backup holds no postgresql.conf and recorded no port); pass --port to run it beside a running original");
        }
    }
}

/// "apply" for a list of flags, "applies" for one.
fn agree(flags: &str) -> &'static str {
    if flags.contains(", ") {
        "apply"
    } else {
        "applies"
    }
}

/// The flags of `flags` that were given, named in a list (none: `None`).
fn flags_given(flags: &[(&str, bool)]) -> Option<String> {
    let given: Vec<&str> = flags
        .iter()
        .filter_map(|(flag, set)| set.then_some(*flag))
        .collect();
    (!given.is_empty()).then(|| given.join(", "))
}

/// Secrets the restored server's restore_command finds only in this process's
/// environment: a server started without it (by systemd, after a restart) cannot fetch
/// WAL, and recovery stops there.
fn env_only_secrets(ctx: &Ctx) -> Vec<String> {
    let repo = ctx.repo_config();
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    // on a host without a configuration (after a host loss) there is no file to set it in
    let fix = |key: &str| {
        match &ctx.config_path {
        Some(_) => format!("set [repository] {key}"),
        None => format!("write a lifeboat.toml whose [repository] has the url and {key} (a file the server's OS user can read), and restore with --config FILE"),
    }
    };
    let mut out = Vec::new();
    if set("LIFEBOAT_PASSWORD") && repo.password_file.is_none() && repo.password_command.is_none() {
        out.push(format!("the restore_command reads the repository password from LIFEBOAT_PASSWORD in this environment only: a server started without it cannot fetch WAL; {}", fix("password_file")));
    }
    let s3 = repo
        .url
        .as_deref()
        .is_some_and(lifeboat_core::repository::is_s3_url);
    if s3
        && set("AWS_SECRET_ACCESS_KEY")
        && repo.secret_access_key_file.is_none()
        && repo.secret_access_key_command.is_none()
    {
        out.push(format!("the restore_command reads the S3 secret from AWS_SECRET_ACCESS_KEY in this environment only: a server started without it cannot fetch WAL; {}", fix("secret_access_key_file")));
    }
    out
}

/// The archive_command for source `source`'s server: this binary, this configuration
/// (what a hint shows, ready to paste into postgresql.conf between single quotes).
pub(crate) fn archive_command(ctx: &Ctx, source: &str) -> anyhow::Result<String> {
    this_lifeboat(
        ctx,
        &format!("wal-push --source {} %p", shell_quote(source)),
    )
}

/// Whether recovery stops after or before a target that has a position of its own.
fn inclusion(target: &RecoveryTarget, exclusive: bool) -> &'static str {
    match (target, exclusive) {
        (RecoveryTarget::Latest | RecoveryTarget::Immediate | RecoveryTarget::Name(_), _) => "",
        (_, false) => ", inclusive (stops just after it)",
        (_, true) => ", exclusive (stops just before it)",
    }
}

/// The restore_command for the restored server: this binary, this configuration.
pub(crate) fn restore_command(ctx: &Ctx, source: &str) -> anyhow::Result<String> {
    this_lifeboat(
        ctx,
        &format!("wal-fetch --source {} %f %p", shell_quote(source)),
    )
}

/// This binary with this configuration, then `args`: a command PostgreSQL runs, which
/// replaces `%f`, `%p` and `%r` in it, so a `%` in a path is written `%%`.
fn this_lifeboat(ctx: &Ctx, args: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    Ok(format!(
        "{} {args}",
        invocation(ctx, &shell_quote(&exe.display().to_string()))?.replace('%', "%%")
    ))
}

/// The configuration file the lifeboat in an `archive_command` reads (`--config PATH`,
/// `LIFEBOAT_CONFIG=PATH`, else the default places), when it is not on this host: a
/// cluster restored after a host loss archives with the lost host's command. The archiver
/// runs in the data directory `data_dir`, against which a relative path counts.
fn lost_config(command: &str, data_dir: &std::path::Path) -> Option<String> {
    let words = lifeboat_core::sources::postgres::cluster::shell_words(command);
    if !words.iter().any(|w| {
        std::path::Path::new(w)
            .file_name()
            .is_some_and(|n| n == "lifeboat")
    }) {
        return None;
    }
    let given = words.iter().enumerate().find_map(|(i, w)| {
        w.strip_prefix("--config=")
            .or_else(|| w.strip_prefix("LIFEBOAT_CONFIG="))
            .or_else(|| {
                (w == "--config")
                    .then(|| words.get(i + 1).map(String::as_str))
                    .flatten()
            })
    });
    let repo_given = words.iter().any(|w| {
        w == "--repo" || w.starts_with("--repo=") || w.starts_with("LIFEBOAT_REPOSITORY=")
    });
    // PostgreSQL reads `%%` in the command as `%`
    let given = given.map(|p| p.replace("%%", "%"));
    let candidates: Vec<std::path::PathBuf> = match &given {
        Some(p) => vec![data_dir.join(p)],
        None if repo_given => return None,
        None => lifeboat_core::config::DEFAULT_CONFIG_PATHS
            .iter()
            .map(|p| data_dir.join(p))
            .collect(),
    };
    if candidates.iter().any(|c| c.exists()) {
        return None;
    }
    Some(match given {
        Some(p) => p,
        None => format!(
            "{} (its default; none of {} is here)",
            lifeboat_core::config::DEFAULT_CONFIG_PATHS[1],
            lifeboat_core::config::DEFAULT_CONFIG_PATHS.join(", ")
        ),
    })
}

/// `program` with the `--config` and `--repo` this command was given, to print or write
/// as a later command line.
fn invocation(ctx: &Ctx, program: &str) -> anyhow::Result<String> {
    let mut cmd = program.to_string();
    if let Some(p) = &ctx.config_path {
        cmd.push_str(&format!(
            " --config {}",
            shell_quote(&std::path::absolute(p)?.display().to_string())
        ));
    }
    if let Some(r) = &ctx.repo_override {
        // the server runs it in its data directory: a relative path would name another
        let r = if lifeboat_core::repository::is_s3_url(r) {
            r.clone()
        } else {
            std::path::absolute(r)?.display().to_string()
        };
        cmd.push_str(&format!(" --repo {}", shell_quote(&r)));
    }
    Ok(cmd)
}

use lifeboat_core::sources::postgres::cluster::shell_quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_configuration_is_found_in_every_form_of_archive_command() {
        let here = tempfile::tempdir().expect("tempdir");
        let data = here.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let kept = here.path().join("kept lifeboat.toml");
        std::fs::write(&kept, "").expect("config");
        let lost = |cmd: &str| lost_config(cmd, &data);
        assert_eq!(
            lost("/usr/bin/lifeboat --config /gone/lifeboat.toml wal-push %p"),
            Some("/gone/lifeboat.toml".into())
        );
        assert_eq!(
            lost("lifeboat --config=/gone/x.toml wal-push %p"),
            Some("/gone/x.toml".into())
        );
        assert_eq!(
            lost("LIFEBOAT_CONFIG=/gone/y.toml lifeboat wal-push %p"),
            Some("/gone/y.toml".into())
        );
        // quoted, with a space, and present: nothing to say
        assert_eq!(
            lost(&format!(
                "lifeboat --config '{}' wal-push %p",
                kept.display()
            )),
            None
        );
        // a `%` in its path, written `%%` for PostgreSQL
        std::fs::write(here.path().join("100%f.toml"), "").expect("config");
        assert_eq!(
            lost(&format!(
                "lifeboat --config {}/100%%f.toml wal-push %p",
                here.path().display()
            )),
            None
        );
        // relative to the data directory, where the archiver runs
        std::fs::write(data.join("here.toml"), "").expect("config");
        assert_eq!(lost("lifeboat --config here.toml wal-push %p"), None);
        assert_eq!(
            lost("lifeboat --config there.toml wal-push %p"),
            Some("there.toml".into())
        );
        // no --config: the default places
        if !std::path::Path::new("/etc/lifeboat/lifeboat.toml").exists() {
            assert!(lost("lifeboat wal-push %p")
                .is_some_and(|m| m.contains("/etc/lifeboat/lifeboat.toml (its default")));
        }
        // --repo needs no file; another program is none of lifeboat's business
        assert_eq!(lost("lifeboat --repo s3://b/p wal-push %p"), None);
        assert_eq!(lost("cp %p /archive/%f"), None);
        assert_eq!(
            lifeboat_core::sources::postgres::cluster::shell_words(r#"a 'b c' "d \"e\"" f\ g"#),
            ["a", "b c", r#"d "e""#, "f g"]
        );
    }
}
