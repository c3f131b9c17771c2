//! The `lifeboat` binary: parses arguments, calls lifeboat-core, prints results.

// `print!` and its kin without std's panic when the stream cannot be written (stdout into a
// cron log on a full disk): that output is lost, and the exit code still says how the
// operation went, instead of 101 for a backup that was stored
macro_rules! print {
    ($($arg:tt)*) => { $crate::output::write_out(format_args!($($arg)*)) };
}
macro_rules! println {
    () => { $crate::output::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprintln {
    () => { $crate::output::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

mod commands;
mod output;
mod progress;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lifeboat_core::{
    config::{Config, RepositoryConfig, SourceConfig},
    repository::Repo,
    Error, ErrorKind,
};

use crate::progress::Bars;

/// Disaster recovery for PostgreSQL that you can prove.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version = lifeboat_core::VERSION, about, long_about = None)]
struct Cli {
    /// Configuration file (default: ./lifeboat.toml, then /etc/lifeboat/lifeboat.toml).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LIFEBOAT_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Repository URL, overriding `[repository] url`: a directory or s3://bucket/prefix.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LIFEBOAT_REPOSITORY"
    )]
    repo: Option<String>,
    /// Print results as JSON (no progress display).
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    /// No progress display.
    #[arg(long, short, global = true, help_heading = "Global options")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole story on a throw-away PostgreSQL: back up, change, back up, restore, check.
    Demo(commands::demo::DemoCmd),
    /// Create a new repository (never touches an existing one).
    Init,
    /// Validate the configuration and test its connections.
    Config {
        #[command(subcommand)]
        cmd: commands::config::ConfigCmd,
    },
    /// Back up a source: logical dump, schema-only dump, globals, or a physical base backup.
    #[command(after_help = "Examples:
  lifeboat backup                                  every logical kind of the only source
  lifeboat backup --source app-db --kind logical   the full dump alone
  lifeboat backup --kind physical                  a base backup (with WAL archiving: PITR)")]
    Backup(commands::backup::BackupCmd),
    /// List backups.
    List(commands::list::ListCmd),
    /// Per-source statistics: count, last success, sizes, growth.
    Stats(commands::list::StatsCmd),
    /// Restore a backup into a database, or a physical backup (to a point in time) into a directory.
    ///
    /// Give one of: a backup ID, --latest, --before TIME, or --list to see the choices.
    #[command(after_help = "Examples:
  lifeboat restore --list                                     what can be restored
  lifeboat restore --latest --to-database app_check           a copy next to production
  lifeboat restore --latest --clean --force                   over the database itself
  lifeboat restore --before \"2026-11-23 14:00\" --to-database app_1400 --dry-run
  lifeboat restore --kind physical --to-dir /var/lib/postgresql/15/restored \\
      --target-time \"2026-11-23 14:31:59\" --start --port 5433   point in time")]
    Restore(Box<commands::restore::RestoreCmd>),
    /// Check that backups are intact.
    ///
    /// Give backup IDs or --all.
    #[command(after_help = "Examples:
  lifeboat verify --all                        every blob of every backup is there
  lifeboat verify --all --read-data            ... and decrypts and hashes correctly
  lifeboat verify --all --read-data-subset 1/4 a quarter of the packs (four runs read all)")]
    Verify(commands::verify::VerifyCmd),
    /// Restore a backup into a throw-away cluster, check it, measure RTO/RPO, keep evidence.
    #[command(after_help = "Examples:
  lifeboat drill                                     the newest logical backup
  lifeboat drill --pick random --since 2026-11-01 --until 2026-11-30 --report-dir /var/lib/lifeboat/evidence
  lifeboat drill --check \"select count(*) > 0 from users\" --hook \"alembic upgrade head\"
  lifeboat drill --kind physical --target-time \"2026-11-23 14:31:59\"")]
    Drill(commands::drill::DrillCmd),
    /// The evidence pack for an audit period (SOC 2 CC9.1 / A1.2 / A1.3).
    Report(commands::report::ReportCmd),
    /// Write the DR runbook (per scenario commands, latest backups, last measured RTO).
    Runbook(commands::runbook::RunbookCmd),
    /// Archive one WAL file (PostgreSQL's archive_command).
    #[command(name = "wal-push")]
    WalPush(commands::wal::WalPushCmd),
    /// Restore one WAL file (PostgreSQL's restore_command).
    #[command(name = "wal-fetch")]
    WalFetch(commands::wal::WalFetchCmd),
    /// The WAL archive: `wal status`, `wal serve`.
    Wal {
        #[command(subcommand)]
        cmd: commands::wal::WalCmd,
    },
    /// Repair the repository: `repair index` rebuilds the index from the pack files there are.
    Repair {
        #[command(subcommand)]
        cmd: commands::repair::RepairCmd,
    },
    /// The hash-chained audit log of every backup, verify, restore and drill.
    Audit {
        #[command(subcommand)]
        cmd: commands::audit::AuditCmd,
    },
}

/// What every command needs: configuration, output mode, progress.
pub struct Ctx {
    config: Config,
    config_path: Option<PathBuf>,
    repo_override: Option<String>,
    json: bool,
    bars: Bars,
}

impl Ctx {
    /// The repository settings with `--repo` applied.
    fn repo_config(&self) -> RepositoryConfig {
        let mut cfg = self.config.repository.clone();
        if let Some(url) = &self.repo_override {
            cfg.url = Some(url.clone());
        }
        cfg
    }

    /// The repository's URL or path with `--repo` applied, without opening it.
    fn repo_location(&self) -> anyhow::Result<String> {
        let cfg = self.repo_config();
        Ok(lifeboat_core::repository::repo_url_from(&cfg, self.config_path.is_some())?.to_string())
    }

    /// Opens the repository.
    fn open(&self) -> anyhow::Result<Repo> {
        let cfg = self.repo_config();
        // say "no repository" (or "no configuration file") before asking for its password
        self.repo_location()?;
        let password = cfg.password_source().resolve("repository password")?;
        Ok(Repo::open(&cfg, &password, self.bars)?.with_audit(self.audit_config()))
    }

    /// `[audit]` when the repository used is the configured one. The head file and URL
    /// keep that repository's heads: another's (`--repo` to an offsite copy during an
    /// incident) would put lines there that disagree with its log, which `audit verify`
    /// takes for a log that went back.
    fn audit_config(&self) -> lifeboat_core::config::AuditConfig {
        let configured = lifeboat_core::repository::repo_url_from(&self.config.repository, true)
            .map(|u| u.trim_end_matches('/').to_string());
        let used = self
            .repo_location()
            .map(|u| u.trim_end_matches('/').to_string());
        // (dropped only when the configuration names a repository and this is another:
        // one given only by LIFEBOAT_REPOSITORY or --repo is the one [audit] is for)
        let canonical = |u: &str| {
            std::fs::canonicalize(u).map_or_else(|_| u.to_string(), |p| p.display().to_string())
        };
        match (configured, used) {
            (Ok(c), Ok(u)) if self.repo_override.is_some() && canonical(&c) != canonical(&u) => {
                if self.config.audit.head_file.is_some() || self.config.audit.head_url.is_some() {
                    eprintln!(
                        "note: [audit] head_file/head_url keep the heads of {c}, not of this repository ({u}): its heads are not published there"
                    );
                }
                lifeboat_core::config::AuditConfig::default()
            }
            _ => self.config.audit.clone(),
        }
    }

    /// Opens the repository for an operation the audit log records. When it cannot be
    /// opened (the store is down, the password was refused, the disk failed), the failure
    /// cannot be logged there either: it is parked on this host and added to the log by the
    /// next operation that can write to it. A wrong configuration or a repository that does
    /// not exist is not parked (there is no log to add it to).
    fn open_logged(&self, action: &str, what: &str) -> anyhow::Result<Repo> {
        let opened = self.open();
        if let Ok(repo) = &opened {
            Self::logged(repo, action, what);
        }
        opened.inspect_err(|e| {
            let kind = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map(Error::kind);
            if matches!(kind, None | Some(ErrorKind::Config | ErrorKind::NotFound)) {
                return;
            }
            let Ok(location) = self.repo_location() else {
                return;
            };
            let cause = lifeboat_core::error::headline(&e.to_string()).to_string();
            let details = format!("{what}: the repository could not be opened: {cause}");
            match lifeboat_core::repository::parked::park(&location, action, false, &details) {
                Ok(p) => eprintln!(
                    "lifeboat: this failure is parked in {} and goes into the audit log with the next operation that can write to the repository",
                    p.display()
                ),
                Err(pe) => eprintln!("lifeboat: warning: this failure could not be parked for the audit log either: {pe}"),
            }
        })
    }

    /// Marks `repo`, opened with [`Ctx::open`], as used by an operation the audit log
    /// records (what [`Ctx::open_logged`] does once it has opened it).
    fn logged(repo: &Repo, action: &str, what: &str) {
        if let Ok(mut u) = UNDER_WAY.lock() {
            *u = Some((repo.location().to_string(), action.into(), what.into()));
        }
        if let Ok(mut p) = PENDING.lock() {
            if let Some(earlier) = p.take() {
                earlier.finish();
            }
            *p = lifeboat_core::repository::parked::Pending::start(repo.location(), action, what)
                .unwrap_or_else(|e| {
                    output::write_err(format_args!(
                        "lifeboat: warning: {}; the {action} goes on, but if it is killed outright (kill -9, the OOM killer) no log will say so\n",
                        lifeboat_core::error::one_line(&e)
                    ));
                    None
                });
        }
        lifeboat_core::repository::audit::outcome_pending();
    }

    /// Names the operation under way more closely once it is known (which backup, where
    /// to), for the entry an interrupt parks.
    fn under_way_is(what: String) {
        if let Ok(mut p) = PENDING.lock() {
            if let Some(pending) = p.as_mut() {
                pending.now_doing(&what);
            }
        }
        if let Ok(mut u) = UNDER_WAY.lock() {
            if let Some(under_way) = u.as_mut() {
                under_way.2 = what;
            }
        }
    }

    /// Whether sources come from the repository's backups: no source configured, and the
    /// repository given by `--repo` or by a configuration with only its `[repository]`
    /// (a new host after a host loss, as a restore's dry-run advises writing one).
    fn source_from_repository(&self) -> bool {
        self.config.sources.is_empty()
            && (self.repo_override.is_some() || self.config_path.is_some())
    }

    /// The source and the repository, opened once by `open` (given the source's name, or
    /// what stands for it when only the repository can name it).
    fn source_and_repo(
        &self,
        name: Option<&str>,
        open: impl FnOnce(&str) -> anyhow::Result<Repo>,
    ) -> anyhow::Result<(SourceConfig, Repo)> {
        if self.source_from_repository() {
            let repo = open(name.unwrap_or("named by the repository's backups"))?;
            let src = self.source_in_repository(name, Some(&repo))?;
            return Ok((src, repo));
        }
        match (self.source(name), name) {
            (Ok(src), _) => {
                let src = src.clone();
                let repo = open(&src.name)?;
                Ok((src, repo))
            }
            (Err(e), Some(n)) => {
                let repo = open(n)?;
                let src = self.unconfigured(n, &repo).ok_or(e)?;
                Ok((src, repo))
            }
            (Err(e), None) => Err(e),
        }
    }

    /// A source the configuration no longer names (renamed, removed) whose backups the
    /// repository still holds: it is drilled, restored and its WAL read by name, without
    /// a connection, objectives, checks or hooks, and said so.
    fn unconfigured(&self, name: &str, repo: &Repo) -> Option<SourceConfig> {
        if self.config.sources.iter().any(|s| s.name == name) {
            return None;
        }
        let backups = repo.backups().ok()?;
        backups.iter().any(|b| b.meta.source == name).then(|| {
            eprintln!(
                "lifeboat: note: source {name:?} is not in the configuration; using its backups in the repository (no connection, objectives, checks or hooks from the configuration)"
            );
            SourceConfig::named(name)
        })
    }

    /// The source an operation that needs no connection to it is about (a drill, `wal
    /// status`): the configured one, or on a host without a configuration (`--repo` after a
    /// host loss) one that the repository's backups name, known by its name only.
    fn source_in_repository(
        &self,
        name: Option<&str>,
        repo: Option<&Repo>,
    ) -> anyhow::Result<SourceConfig> {
        if !self.source_from_repository() {
            return match (self.source(name), name) {
                (Ok(src), _) => Ok(src.clone()),
                (Err(e), Some(n)) => self
                    .with_repo(repo, |r| Ok(self.unconfigured(n, r)))?
                    .ok_or(e),
                (Err(e), None) => Err(e),
            };
        }
        self.with_repo(repo, |repo| {
            let names: std::collections::BTreeSet<String> =
                repo.backups()?.into_iter().map(|b| b.meta.source).collect();
            let listed = || names.iter().cloned().collect::<Vec<_>>().join(", ");
            match name {
                Some(n) if names.contains(n) => Ok(SourceConfig::named(n)),
                Some(n) => Err(Error::not_found(format!(
                    "no [[source]] is configured here, and the repository has no backups of a source named {n:?}"
                ))
                .hint(if names.is_empty() {
                    "the repository holds no backups".to_string()
                } else {
                    format!("its backups name: {}", listed())
                })
                .into()),
                None => match names.len() {
                    1 => Ok(SourceConfig::named(names.iter().next().map_or("", String::as_str))),
                    0 => Err(Error::not_found("the repository holds no backups").into()),
                    _ => Err(Error::config(
                        "no [[source]] is configured here, and the repository holds backups of several sources: which one?",
                    )
                    .hint(format!("pass --source with one of: {}", listed()))
                    .into()),
                },
            }
        })
    }

    /// `f` on `repo`, or on the repository opened now when none is given.
    fn with_repo<T>(
        &self,
        repo: Option<&Repo>,
        f: impl FnOnce(&Repo) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match repo {
            Some(r) => f(r),
            None => f(&self.open()?),
        }
    }

    /// The named source, or the only one.
    fn source(&self, name: Option<&str>) -> anyhow::Result<&SourceConfig> {
        match name {
            Some(n) if self.config_path.is_none() && self.config.sources.is_empty() => {
                Err(Error::not_found(format!(
                    "no configuration file here, so no source named {n:?} with a connection"
                ))
                .hint(format!(
                    "write a lifeboat.toml with the [repository] and a [[source]] named {n:?} with its dsn (see the README's Configuration), then pass --config FILE"
                ))
                .into())
            }
            Some(n) => Ok(self.config.source(n)?),
            None => match self.config.sources.as_slice() {
                [only] => Ok(only),
                [] => Err(Error::config("no [[source]] in the configuration")
                    .hint(match &self.config_path {
                        Some(p) => format!("add a [[source]] section to {}", p.display()),
                        None => {
                            "create lifeboat.toml (see the README) or pass --config".to_string()
                        }
                    })
                    .into()),
                many => Err(Error::config("several sources are configured: which one?")
                    .hint(format!(
                        "pass --source with one of: {}",
                        many.iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into()),
            },
        }
    }
}

/// What to do when root would run commands another user can change.
pub(crate) const OTHERS_CONTROL_HINT: &str = "make it root's and not writable by others (`chown root: FILE; chmod go-w FILE`), or run lifeboat as the user it belongs to (a file found in the working directory is taken, with a warning, when named with --config)";

/// Runs the command; returns the exit code of a command that chooses its own.
fn run(cli: Cli) -> anyhow::Result<i32> {
    // archive_command and restore_command carry on past a mistake in settings they do not
    // use (a schedule, a drill timeout): PostgreSQL's log gets a warning instead
    let wal = matches!(cli.command, Command::WalPush(_) | Command::WalFetch(_));
    let loaded = Config::load_with(cli.config.as_deref(), wal)?;
    let (config, config_path) = match loaded {
        Some((c, p, problem)) => {
            if let Some(e) = problem {
                eprintln!("lifeboat: warning: {e} (WAL archiving goes on; `lifeboat config check` shows it)");
            }
            (c, Some(p))
        }
        None => (Config::default(), None),
    };
    // refused before anything of it runs (`config check` too: it runs the secret
    // commands); a warning `config check` shows among its findings instead
    if let Some((refuse, why)) = config_path.as_deref().and_then(|p| {
        // found in the working directory (not /etc/lifeboat, not named): whoever made it
        // there chose what root runs
        let found_here = cli.config.is_none()
            && p.is_relative()
            && std::fs::canonicalize(p).ok()
                != std::fs::canonicalize(lifeboat_core::config::DEFAULT_CONFIG_PATHS[1]).ok();
        lifeboat_core::config::root_runs_what_others_control(&config, p, found_here)
    }) {
        if refuse {
            return Err(lifeboat_core::Error::config(format!("refused: {why}"))
                .hint(OTHERS_CONTROL_HINT)
                .into());
        }
        if !matches!(cli.command, Command::Config { .. }) {
            eprintln!("lifeboat: warning: {why} ({OTHERS_CONTROL_HINT})");
        }
    }
    let ctx = Ctx {
        config,
        config_path,
        repo_override: cli.repo,
        json: cli.json,
        bars: Bars::new(cli.quiet || cli.json),
    };
    if let Command::WalFetch(c) = &cli.command {
        return Ok(c.run(&ctx));
    }
    let writes = matches!(
        cli.command,
        Command::Init
            | Command::Backup(_)
            | Command::Restore(_)
            | Command::Verify(_)
            | Command::Drill(_)
            | Command::Audit { .. }
            | Command::Report(_)
            | Command::Repair { .. }
    );
    lifeboat_core::repository::audit::on_lock_wait(|m| eprintln!("lifeboat: {m}"));
    let result = dispatch(cli.command, &ctx);
    if writes {
        hand_over_repository(&ctx);
    }
    for note in lifeboat_core::sources::postgres::cluster::take_notes() {
        eprintln!("lifeboat: note: {note}");
    }
    result
}

/// Run as root on a local repository that belongs to another user (the PostgreSQL user,
/// whose archive_command writes into it), gives what this command created to that user:
/// a root-owned audit lock file would stop that user's next backup.
fn hand_over_repository(ctx: &Ctx) {
    let Ok(location) = ctx.repo_location() else {
        return;
    };
    if lifeboat_core::repository::is_s3_url(&location) {
        return;
    }
    if let Err(e) = lifeboat_core::repository::owner::hand_over(std::path::Path::new(&location)) {
        eprintln!("lifeboat: warning: {e}");
    }
}

/// Runs one command.
fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<i32> {
    match command {
        Command::WalFetch(c) => return Ok(c.run(ctx)),
        Command::WalPush(c) => c.run(ctx),
        Command::Wal { cmd } => cmd.run(ctx),
        Command::Demo(c) => c.run(ctx),
        Command::Init => commands::init::run(ctx),
        Command::Config { cmd } => cmd.run(ctx),
        Command::Backup(c) => c.run(ctx),
        Command::List(c) => c.run(ctx),
        Command::Stats(cmd) => cmd.run(ctx),
        Command::Restore(c) => c.run(ctx),
        Command::Verify(c) => c.run(ctx),
        Command::Drill(c) => c.run(ctx),
        Command::Audit { cmd } => cmd.run(ctx),
        Command::Repair { cmd } => cmd.run(ctx),
        Command::Runbook(c) => c.run(ctx),
        Command::Report(c) => c.run(ctx),
    }
    .map(|()| 0)
}

/// Prints an error with its causes and hint (also as JSON on stdout with `--json`);
/// returns the exit code.
fn report(err: &anyhow::Error, json: bool, exit_code: Option<i32>) -> i32 {
    let core = err.chain().find_map(|e| e.downcast_ref::<Error>());
    let message = err.to_string();
    eprintln!("error: {message}");
    let mut causes = Vec::new();
    for cause in err.chain().skip(1) {
        // first lines only: library messages can run to pages (and invite bug reports for
        // what is a refused credential)
        let text = cause.to_string();
        let line = lifeboat_core::error::headline(&text);
        if !line.is_empty() && !message.contains(line) && !causes.iter().any(|c| c == line) {
            eprintln!("  caused by: {line}");
            causes.push(line.to_string());
        }
    }
    let hint = core.and_then(Error::hint_text);
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
    let kind = core.map_or(ErrorKind::Internal, Error::kind);
    let code = exit_code.unwrap_or_else(|| kind.exit_code());
    if json {
        output::json_error(&kind_name(kind), code, &message, &causes, hint);
    }
    code
}

/// The error kind as it appears in JSON (`not_found`, `check_failed`, ...).
pub(crate) fn kind_name(kind: ErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "internal".into())
}

/// The operation under way that the audit log records: (repository, action, what), set
/// once its repository is open, so that an interrupted one is logged too.
static UNDER_WAY: std::sync::Mutex<Option<(String, String, String)>> = std::sync::Mutex::new(None);

/// The mark of the operation under way that a process killed outright leaves for the
/// next one to log (see [`lifeboat_core::repository::parked::Pending`]); removed once the
/// outcome or the interruption is recorded.
static PENDING: std::sync::Mutex<Option<lifeboat_core::repository::parked::Pending>> =
    std::sync::Mutex::new(None);

/// The operation under way has its outcome recorded: its mark goes.
fn finish_pending() {
    if let Some(p) = PENDING.lock().ok().and_then(|mut p| p.take()) {
        p.finish();
    }
}

/// Parks an audit entry for the operation an interrupt cut short (see
/// [`lifeboat_core::repository::parked`]): the next operation adds it to the log.
fn park_interrupted() {
    park_interrupted_entry("interrupted (Ctrl-C, SIGTERM, or SIGHUP from a closed terminal)");
    finish_pending();
}

/// Stdout's reader went away (`lifeboat ... | head`): the operation under way ends here.
/// One that logged its outcome already is done (its mark goes); one that did not is
/// recorded as cut short, not later as killed outright.
pub(crate) fn stopped_by_closed_pipe() {
    park_interrupted_entry("stopped: the reader of its output went away (a closed pipe)");
    finish_pending();
}

fn park_interrupted_entry(why: &str) {
    let Some((location, action, what)) = UNDER_WAY.lock().ok().and_then(|mut u| u.take()) else {
        return;
    };
    // an operation logging its outcome finishes that first: logged as done, it is not
    // logged again as interrupted
    let logged =
        match lifeboat_core::repository::audit::outcome_logged(std::time::Duration::from_secs(1)) {
            Some(logged) => logged,
            None => {
                eprintln!("lifeboat: finishing the audit entry before stopping");
                lifeboat_core::repository::audit::outcome_logged(std::time::Duration::from_secs(60))
                    .unwrap_or(false)
            }
        };
    if logged {
        return;
    }
    let stored = lifeboat_core::repository::confirmed_in_this_process();
    let details = if stored.is_empty() {
        format!("{what}: {why} before it finished")
    } else {
        // what is listed as a backup must be in the log, or the log hides a backup
        format!(
            "{what}: {why} before it finished; stored before the interruption: {}",
            stored
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    // the terminal hears it too: the backups already stored are kept, and usable
    for b in &stored {
        eprintln!("lifeboat: stored before the interruption: {b}");
    }
    match lifeboat_core::repository::parked::park(&location, &action, false, &details) {
        Ok(_) => eprintln!("lifeboat: the interruption is recorded for the audit log"),
        Err(e) => eprintln!("lifeboat: warning: the interruption could not be recorded: {e}"),
    }
}

/// Set by the signal handler when it is about to clean up and exit 130.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A long-running command's stop flag: the first Ctrl-C / SIGTERM sets it instead of
/// exiting, so the command can finish what it is doing and clean up.
static STOP: std::sync::Mutex<Option<std::sync::Arc<std::sync::atomic::AtomicBool>>> =
    std::sync::Mutex::new(None);

/// Asks the signal handler to set `flag` rather than exit.
pub fn on_stop(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    if let Ok(mut s) = STOP.lock() {
        *s = Some(flag);
    }
}

fn main() {
    // a working directory that was removed (a deploy replaced the release directory under
    // a systemd unit): PostgreSQL's programs run from / (they refuse a removed one), and a
    // relative path given here still fails instead of meaning one under /
    if std::env::current_dir().is_err() {
        eprintln!(
            "lifeboat: note: the working directory no longer exists; PostgreSQL's programs run from /"
        );
    }
    // never make a file or directory others may write (umask 000 under some service
    // managers): the audit head file and the public key are trust anchors outside the
    // repository; a group may still write where the umask lets it (a shared repository)
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    nix::sys::stat::umask(umask | nix::sys::stat::Mode::S_IWOTH);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // a restore_command with a typo or a renamed flag must stop recovery: clap's
            // usage exit (2) would read to PostgreSQL as "not archived" and end it early
            // args_os: a non-UTF-8 argument must not panic here (exit 101 = "not archived")
            let fetching = std::env::args_os().any(|a| a == "wal-fetch");
            let _ = e.print();
            let code = if fetching && e.use_stderr() {
                commands::wal::FETCH_FATAL_EXIT
            } else {
                e.exit_code()
            };
            if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
                // the whole message up to the usage line: "required arguments were not
                // provided:" alone does not say which
                let text = e.to_string();
                let message = text
                    .lines()
                    .take_while(|l| !l.starts_with("Usage:"))
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                output::json_error(
                    &kind_name(ErrorKind::Config),
                    code,
                    message.trim_start_matches("error: "),
                    &[],
                    Some("see `lifeboat --help`, or `lifeboat COMMAND --help`"),
                );
            }
            std::process::exit(code);
        }
    };
    // Ctrl-C: stop throw-away servers this process started, then leave
    let json_wanted = cli.json;
    let _ = ctrlc::set_handler(move || {
        if let Some(flag) = STOP.lock().ok().and_then(|s| s.clone()) {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        progress::clear_for_exit();
        for line in lifeboat_core::sources::postgres::cluster::stop_all() {
            eprintln!("lifeboat: {line}");
        }
        park_interrupted();
        eprintln!("interrupted");
        if json_wanted {
            // a script reading stdout gets its one document on this path too
            output::json_error(
                "interrupted",
                130,
                "interrupted by a signal (SIGINT, SIGTERM or SIGHUP)",
                &[],
                Some("what it had started is stopped; run it again (an interrupted operation is in the audit log)"),
            );
        }
        std::process::exit(130);
    });
    let fetching = matches!(cli.command, Command::WalFetch(_));
    let json = cli.json;
    if fetching {
        // a panic exits 101, which PostgreSQL would take for "not archived" and end
        // recovery early: stop recovery instead
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            eprintln!("lifeboat wal-fetch: internal error; stopping recovery");
            std::process::exit(commands::wal::FETCH_FATAL_EXIT);
        }));
    }
    let result = run(cli);
    // finished (and logged): a late signal interrupts nothing; but an operation that an
    // interrupt cut short stays under way for the handler to park, however long the
    // handler's clean-up (stopping servers, removing a restored cluster) takes
    if !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        if let Ok(mut u) = UNDER_WAY.lock() {
            u.take();
        }
        finish_pending();
    }
    // an interrupt's clean-up may still be removing what the command started
    lifeboat_core::sources::postgres::cluster::wait_for_stop_all();
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        // the command failed because the interrupt stopped its servers: the handler says
        // so and exits 130; exiting here first would give the failure's own code instead
        std::thread::sleep(std::time::Duration::from_secs(30));
        std::process::exit(130);
    }
    match result {
        Ok(0) if output::output_lost() => {
            // the operation succeeded; what it printed did not arrive whole
            eprintln!("lifeboat: the output could not be written in full (the operation itself succeeded)");
            std::process::exit(ErrorKind::Unavailable.exit_code());
        }
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // restore_command: a low exit code means "not in the archive" and ends recovery
            // early; any failure to even look must stop recovery instead
            let code = report(
                &e,
                json,
                fetching.then_some(commands::wal::FETCH_FATAL_EXIT),
            );
            if fetching {
                // the error is above; this line says what it means for recovery
                eprintln!("lifeboat wal-fetch: stopping recovery (exit {code})");
            }
            std::process::exit(code);
        }
    }
}
