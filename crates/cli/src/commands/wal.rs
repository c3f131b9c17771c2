//! `lifeboat wal-push` (archive_command), `lifeboat wal-fetch` (restore_command) and
//! `lifeboat wal status`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lifeboat_core::{
    ops::{
        backup::databases_of,
        list::{list, ListFilter},
    },
    sources::postgres::conn::PgConn,
    sources::postgres::logical::BackupKind,
    wal::{self, name::SegmentName, spool, ArchiverState, ChainStart, PutOutcome, WalStore},
    ErrorKind,
};

use crate::{output, Ctx};

/// Archive one WAL file: `archive_command = 'lifeboat wal-push %p'`.
#[derive(Debug, Args)]
pub struct WalPushCmd {
    /// Source the cluster is configured as (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Socket of `lifeboat wal serve` (default: /tmp/lifeboat-UID/wal-SOURCE-REPOHASH.sock); without
    /// a server there, the push opens the repository itself.
    #[arg(long, env = "LIFEBOAT_WAL_SOCKET")]
    socket: Option<PathBuf>,
    /// Path of the WAL file (`%p`).
    path: PathBuf,
}

/// Restore one WAL file: `restore_command = 'lifeboat wal-fetch %f %p'`.
#[derive(Debug, Args)]
pub struct WalFetchCmd {
    /// Source the cluster is configured as (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Socket of `lifeboat wal serve` (default: /tmp/lifeboat-UID/wal-SOURCE-REPOHASH.sock).
    #[arg(long, env = "LIFEBOAT_WAL_SOCKET")]
    socket: Option<PathBuf>,
    /// The timeline the recovery follows (what `restore --kind physical` writes): a
    /// segment of an older timeline at or past the point where this timeline's history
    /// left it is not handed out (PostgreSQL asks for one only when the newer timeline's
    /// copy is not archived yet, and would replay the old timeline's writes after the
    /// branch).
    #[arg(long, value_name = "N")]
    timeline: Option<u32>,
    /// The cluster's WAL segment size in bytes (with --timeline; default 16 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = wal::DEFAULT_SEGMENT_SIZE)]
    segment_size: u64,
    /// Name of the WAL file (`%f`).
    name: String,
    /// Where PostgreSQL wants it (`%p`).
    dest: PathBuf,
}

/// The WAL archive.
#[derive(Debug, Subcommand)]
pub enum WalCmd {
    /// Archived range per timeline, gaps, newest segment and its age, the live RPO; and
    /// from the server (when reachable) whether archive_command is failing now and how
    /// many segments wait. Exits 10 on a gap after the latest base backup, a latest backup
    /// that cannot be restored, a failing or switched-off archiver, a timeline without its
    /// history file, or the server's last archived segment missing from the archive.
    Status {
        /// Source (default: the only one).
        #[arg(long, short)]
        source: Option<String>,
        /// Every configured source, one after the other; one with logical backups only
        /// (nothing archived, no physical backup, archive_mode off) is named in one line,
        /// and the exit code says whether any archive failed its checks. Each source's
        /// `wal serve` is looked for on its default socket.
        #[arg(long, conflicts_with = "source")]
        all: bool,
        /// Socket of `lifeboat wal serve` to look for (default:
        /// /tmp/lifeboat-UID/wal-SOURCE-REPOHASH.sock).
        #[arg(long, env = "LIFEBOAT_WAL_SOCKET")]
        socket: Option<PathBuf>,
    },
    /// Which transactions of a time window deleted, updated, inserted, truncated or
    /// dropped what, read from the archived WAL (to find the --target-xid to stop before).
    Inspect(super::wal_inspect::WalInspectCmd),
    /// Keep the repository open and serve wal-push / wal-fetch over a Unix socket (fast
    /// archiving; run it as the PostgreSQL user, e.g. from systemd).
    Serve {
        /// Source (default: the only one).
        #[arg(long, short)]
        source: Option<String>,
        /// Socket path (default: /tmp/lifeboat-UID/wal-SOURCE-REPOHASH.sock).
        #[arg(long, env = "LIFEBOAT_WAL_SOCKET")]
        socket: Option<PathBuf>,
    },
}

fn store(
    ctx: &Ctx,
    source: Option<&str>,
    writing: bool,
) -> anyhow::Result<(lifeboat_core::repository::Repo, WalStore, String)> {
    // the repository names the source only when asked: it is opened once for both
    let (name, repo) = if source.is_none() && ctx.source_from_repository() {
        let repo = ctx.open()?;
        (ctx.source_in_repository(None, Some(&repo))?.name, repo)
    } else {
        let name = source_name(ctx, source, writing)?;
        (name, ctx.open()?)
    };
    let store = WalStore::new(&repo, &name)?;
    Ok((repo, store, name))
}

/// The archive of `name`, a source already found by [`source_name`].
fn store_named(
    ctx: &Ctx,
    name: &str,
) -> anyhow::Result<(lifeboat_core::repository::Repo, WalStore)> {
    let repo = ctx.open()?;
    let store = WalStore::new(&repo, name)?;
    Ok((repo, store))
}

/// The source whose WAL archive is meant. With `--repo` and no configuration (a restored
/// server's restore_command after a host loss) the name alone finds the archive. Reading
/// (fetch, status) also finds a source the configuration no longer names by its backups;
/// writing (push, serve) takes only a configured one: a name copied from another host's
/// archive_command must not fill that host's archive with this server's WAL.
fn source_name(ctx: &Ctx, source: Option<&str>, writing: bool) -> anyhow::Result<String> {
    match source {
        // a configuration file names what may be written to, also one with only its
        // [repository]: a name mistyped in an archive_command must not start an archive
        _ if writing && (ctx.config_path.is_some() || !ctx.source_from_repository()) => {
            Ok(ctx.source(source)?.name.clone())
        }
        Some(n) if ctx.source_from_repository() => Ok(n.to_string()),
        _ => Ok(ctx.source_in_repository(source, None)?.name),
    }
}

/// The sockets a `wal serve` of `source` may answer on, in order: the one given, else the
/// default of this repository, then (without `--repo`) the name older versions used, so a
/// server still running from before an upgrade keeps serving; without any repository
/// location only that older name.
fn sockets(ctx: &Ctx, source: &str, given: Option<&Path>) -> Vec<PathBuf> {
    // one given that is gone (the restore that served a recovery has ended, its socket
    // still in the restored server's environment) leaves the default ones to try
    let mut first = Vec::new();
    if let Some(s) = given {
        if s.exists() {
            return vec![s.to_path_buf()];
        }
        first.push(s.to_path_buf());
    }
    first.extend(default_sockets(ctx, source));
    first
}

/// The default sockets of `source`'s `wal serve` (see [`sockets`]).
fn default_sockets(ctx: &Ctx, source: &str) -> Vec<PathBuf> {
    match ctx.repo_location() {
        Ok(location) => {
            let mut v = vec![spool::default_socket(source, &location)];
            if ctx.repo_override.is_none() {
                v.push(spool::legacy_socket(source));
            }
            v
        }
        Err(_) => vec![spool::legacy_socket(source)],
    }
}

/// What a request to a `wal serve` names (see [`spool::archive_key`]): the source and this
/// configuration's repository.
fn archive_key(ctx: &Ctx, source: &str) -> String {
    spool::archive_key(source, &ctx.repo_location().unwrap_or_default())
}

/// Says so when the server answered on the older socket name.
fn legacy_note(socket: &Path, source: &str) {
    if socket == spool::legacy_socket(source) {
        eprintln!(
            "lifeboat: the WAL server answered on the older socket {}; restart `lifeboat wal serve` to move it to this repository's own socket",
            socket.display()
        );
    }
}

impl WalPushCmd {
    /// Pushes and returns once the file is durable.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let name = source_name(ctx, self.source.as_deref(), true)?;
        let mut served = None;
        for socket in sockets(ctx, &name, self.socket.as_deref()) {
            served = spool::client_push(&socket, &archive_key(ctx, &name), &self.path)?;
            if served.is_some() {
                legacy_note(&socket, &name);
                break;
            }
        }
        let outcome = match served {
            Some(o) => o,
            None => {
                let (_repo, store) = store_named(ctx, &name)?;
                wal::push(&store, &self.path)?.1
            }
        };
        if outcome == PutOutcome::AlreadyPresent {
            eprintln!(
                "lifeboat wal-push: {} was already archived with the same content",
                self.path.display()
            );
        }
        Ok(())
    }
}

/// Exit status for a failed fetch that must stop recovery: PostgreSQL treats exit codes
/// above 125 as fatal, and anything lower as "not in the archive" (end of recovery).
pub const FETCH_FATAL_EXIT: i32 = 126;

impl WalFetchCmd {
    /// With `--timeline`: `(followed timeline, the segment's timeline, where the followed
    /// timeline's history left it)` when the asked-for segment lies past that point.
    fn past_branch(
        &self,
        fetch: &mut impl FnMut(&str, &Path) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Option<(u32, u32, wal::Lsn)>> {
        let (Some(follow), Some(seg)) = (self.timeline, SegmentName::parse(&self.name)) else {
            return Ok(None);
        };
        if seg.timeline >= follow {
            return Ok(None);
        }
        // beside where PostgreSQL wants the segment: a directory its user may write
        let tmp = self.dest.with_file_name(format!(
            ".lifeboat-fetch-{follow:08X}-{}.history",
            std::process::id()
        ));
        let found = fetch(&format!("{follow:08X}.history"), &tmp)?;
        // bytes, not text: a reason line may hold a restore point's name in LATIN1, and an
        // unread history would hand out the segment past the branch
        let history = found.then(|| std::fs::read(&tmp));
        let _ = std::fs::remove_file(&tmp);
        let history = match history {
            None => return Ok(None),
            Some(read) => String::from_utf8_lossy(
                &read.map_err(|e| lifeboat_core::Error::io(tmp.display(), e))?,
            )
            .into_owned(),
        };
        Ok(
            wal::status::past_branch(&history, follow, &seg, self.segment_size)
                .map(|switch| (follow, seg.timeline, switch)),
        )
    }

    /// Fetches; returns the process exit code.
    pub fn run(&self, ctx: &Ctx) -> i32 {
        let mut withheld = false;
        let result = source_name(ctx, self.source.as_deref(), false).and_then(|name| {
            // through a `wal serve` when one answers, else from the repository, opened once
            let mut opened = None;
            let mut fetch = |file: &str, dest: &Path| -> anyhow::Result<bool> {
                for socket in sockets(ctx, &name, self.socket.as_deref()) {
                    if let Some(found) =
                        spool::client_fetch(&socket, &archive_key(ctx, &name), file, dest)?
                    {
                        legacy_note(&socket, &name);
                        return Ok(found);
                    }
                }
                if opened.is_none() {
                    opened = Some(store_named(ctx, &name)?);
                }
                let (_repo, store) = opened.as_ref().expect("opened above");
                Ok(wal::fetch(store, file, dest)?)
            };
            if let Some((follow, tli, switch)) = self.past_branch(&mut fetch)? {
                eprintln!(
                    "lifeboat wal-fetch: {} is timeline {tli}'s, past LSN {switch} where timeline {follow} branched off it: not handed out, so that recovery does not replay timeline {tli}'s writes after the branch; timeline {follow}'s own copy is not in the archive yet (on the server promoted to timeline {follow}: archiving on, then select pg_switch_wal(); then restore again); recovery ends before the branch",
                    self.name
                );
                withheld = true;
                return Ok(false);
            }
            let found = fetch(&self.name, &self.dest)?;
            if found {
                if let Some(t) = wal::cut_at_tablespace(&self.name, &self.dest)? {
                    let [what, hint] = wal::tablespace_cut_lines(&self.name, &t);
                    eprintln!("lifeboat wal-fetch: {what}");
                    eprintln!("lifeboat wal-fetch: hint: {hint}");
                }
            }
            Ok(found)
        });
        match result {
            Ok(true) => 0,
            Ok(false) => {
                // history files are probed routinely; only a missing segment is news
                if !self.name.ends_with(".history") && !withheld {
                    eprintln!("lifeboat wal-fetch: {} is not in the archive", self.name);
                }
                ErrorKind::NotFound.exit_code()
            }
            Err(e) => {
                // this lands in the PostgreSQL log: first lines only, as `report` prints
                // errors, and the hint (a library's error text runs to pages)
                let text = e.to_string();
                let line = lifeboat_core::error::headline(&text);
                eprintln!("lifeboat wal-fetch: error fetching {}: {line}", self.name);
                let mut causes = Vec::new();
                for cause in e.chain().skip(1) {
                    let cause = cause.to_string();
                    let c = lifeboat_core::error::headline(&cause);
                    if !c.is_empty() && !text.contains(c) {
                        eprintln!("lifeboat wal-fetch:   caused by: {c}");
                        causes.push(c.to_string());
                    }
                }
                let core = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<lifeboat_core::Error>());
                let hint = core.and_then(lifeboat_core::Error::hint_text);
                if let Some(h) = hint {
                    eprintln!("lifeboat wal-fetch: hint: {h}");
                }
                if ctx.json {
                    let kind = core.map_or(ErrorKind::Internal, lifeboat_core::Error::kind);
                    crate::output::json_error(
                        &crate::kind_name(kind),
                        FETCH_FATAL_EXIT,
                        &format!("error fetching {}: {line}", self.name),
                        &causes,
                        hint,
                    );
                }
                FETCH_FATAL_EXIT
            }
        }
    }
}

impl WalCmd {
    /// Runs the subcommand.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            Self::Status {
                all: true, socket, ..
            } => {
                if socket.is_some() {
                    eprintln!("lifeboat: note: --socket (or LIFEBOAT_WAL_SOCKET) is not used with --all: each source's wal serve is looked for on its default socket");
                }
                status_all(ctx)
            }
            Self::Status { source, socket, .. } => status(
                ctx,
                source.as_deref(),
                socket.as_deref(),
                &mut StatusRun::default(),
            ),
            Self::Serve { source, socket } => serve(ctx, source.as_deref(), socket.clone()),
            Self::Inspect(cmd) => cmd.run(ctx),
        }
    }
}

/// The physical backups of `source`, oldest first.
fn physical_backups(
    repo: &lifeboat_core::repository::Repo,
    source: &str,
) -> anyhow::Result<Vec<lifeboat_core::repository::SnapshotInfo>> {
    let filter = ListFilter {
        source: Some(source.to_string()),
        kind: Some(BackupKind::Physical),
        ..ListFilter::default()
    };
    Ok(list(repo, &filter)?)
}

/// The newest physical backup of `source`.
fn latest_physical(
    repo: &lifeboat_core::repository::Repo,
    source: &str,
) -> anyhow::Result<Option<lifeboat_core::repository::SnapshotInfo>> {
    Ok(physical_backups(repo, source)?.pop())
}

/// `wal status --json`: the repository's view, and the server's where it answered.
#[derive(serde::Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    archive: &'a wal::WalStatus,
    /// Older physical backups whose recovery stops at a gap (or cannot become consistent).
    cut_short: &'a [wal::Reachable],
    /// Timelines archived on past where a newer timeline branched off them (a server that
    /// kept writing after a promotion): those writes are in no restore to the latest.
    kept_writing: &'a [wal::status::KeptWriting],
    /// The server's archiver; `None` when the server did not answer.
    archiver: Option<&'a ArchiverState>,
    /// Why the server's archiver could not be read.
    archiver_error: Option<String>,
    /// How long the oldest segment has waited in `pg_wal` with no failure recorded, when
    /// that is over the bound (5 minutes, or the RPO objective): an archive_command that
    /// cannot be run stops the archiver without counting a failure.
    archiver_stalled_secs: Option<u64>,
    /// Whether a `lifeboat wal serve` answers on the socket pushes would use.
    wal_server: bool,
    /// That socket.
    wal_socket: PathBuf,
    /// Where archived WAL after the latest base backup creates a tablespace: recovery from
    /// it ends just before (`null` when none does).
    tablespace_created_at: Option<String>,
}

/// The server's archiver, read through the source's connection.
fn archiver(ctx: &Ctx, name: &str) -> lifeboat_core::Result<ArchiverState> {
    let src = ctx
        .source(Some(name))
        .map_err(|e| lifeboat_core::Error::config(e.to_string()))?;
    let conn = PgConn::from_source(src)?;
    let dbs = databases_of(src, &conn)?;
    wal::archiver_state(&conn, dbs.first().map_or("postgres", String::as_str))
}

/// How one `wal status` shows itself: alone, or as one source of `--all`.
#[derive(Default)]
struct StatusRun {
    all: bool,
    /// `--all --json`: each source's document, printed as one array at the end.
    json: Vec<serde_json::Value>,
}

impl StatusRun {
    /// Prints `doc` of source `name`, or keeps it for `--all`'s array.
    fn emit(&mut self, name: &str, doc: &impl serde::Serialize) -> anyhow::Result<()> {
        if !self.all {
            return output::json(doc);
        }
        let mut v = serde_json::to_value(doc)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("source".into(), name.into());
        }
        self.json.push(v);
        Ok(())
    }
}

/// `wal status --all`: each configured source's archive in turn (see [`super::each`]).
fn status_all(ctx: &Ctx) -> anyhow::Result<()> {
    let mut each = super::each::Each::new(ctx, "sources", "passed the archive checks")?;
    let mut run = StatusRun {
        all: true,
        json: Vec::new(),
    };
    for src in each.sources() {
        each.heading(&src.name);
        if let Err(e) = status(ctx, Some(&src.name), None, &mut run) {
            if ctx.json {
                let error = serde_json::Value::from(format!("{e:#}"));
                match run.json.last_mut().and_then(|v| v.as_object_mut()) {
                    Some(o) if o.get("source").and_then(|s| s.as_str()) == Some(&src.name) => {
                        o.insert("error".into(), error);
                    }
                    _ => run
                        .json
                        .push(serde_json::json!({"source": src.name, "error": error})),
                }
            }
            each.failed(&src.name, e)?;
        }
    }
    if ctx.json {
        output::json(&run.json)?;
    }
    each.finish()
}

fn status(
    ctx: &Ctx,
    source: Option<&str>,
    socket: Option<&Path>,
    run: &mut StatusRun,
) -> anyhow::Result<()> {
    let (repo, store, name) = match store(ctx, source, false) {
        Ok(opened) => opened,
        Err(e) => {
            // the repository does not answer: what the server says is what the operator
            // needs now (is archiving failing, how much WAL waits in pg_wal)
            if !ctx.json {
                if let Ok(name) = source_name(ctx, source, false) {
                    if let Ok(a) = archiver(ctx, &name) {
                        println!(
                            "WAL archive of source {name}: the repository cannot be read (below)"
                        );
                        print_archiver(&a, stall_bound(ctx, &name));
                    }
                }
            }
            return Err(e);
        }
    };
    // --json asks the server first, so that what it says was archived is in the listing
    // read after it; text prints the repository's part first (see below)
    let mut early_server = ctx.json.then(|| archiver(ctx, &name));
    // a backup the newest timeline's history does not contain (an old primary's, taken
    // after a failover) is no start for a restore to the latest timeline
    let latest_timeline = wal::status::LatestTimeline::new(&store)?;
    let (mut backups, off) = latest_timeline.split(physical_backups(&repo, &name)?)?;
    if !ctx.json {
        for b in &off {
            eprintln!(
                "warning: physical backup {} is on a timeline the latest timeline left before the backup ended (a backup of an old primary after a failover): no restore to the latest timeline starts from it",
                b.short_id()
            );
        }
    }
    let latest = backups.pop();
    let phys = latest.as_ref().and_then(|b| b.meta.physical.clone());
    let start = latest
        .as_ref()
        .zip(phys.as_ref())
        .map(|(b, p)| ChainStart::of_backup(&b.id, p));
    let mut seg_size = phys
        .as_ref()
        .map_or(wal::DEFAULT_SEGMENT_SIZE, |p| p.wal_segment_size);
    let mut st = wal::status(&store, start.as_ref(), seg_size)?;
    let pitr_meant = pitr_meant(ctx, &name);
    if run.all
        && latest.is_none()
        && off.is_empty()
        && st.timelines.is_empty()
        && pitr_meant.is_none()
    {
        // one of several sources, with logical backups only: nothing of its own to check
        let server = early_server.take().unwrap_or_else(|| archiver(ctx, &name));
        if server.as_ref().map_or(true, |a| a.archive_mode == "off") {
            if ctx.json {
                run.emit(
                    &name,
                    &serde_json::json!({
                        "archiving": false,
                        "archiver": server.as_ref().ok(),
                        "archiver_error": server.as_ref().err().map(ToString::to_string),
                    }),
                )?;
            } else {
                println!(
                    "WAL archive of source {name}: none (nothing archived, no physical backup, {}): logical backups only, nothing to check",
                    match &server {
                        Ok(_) => "archive_mode = off".to_string(),
                        Err(e) => format!(
                            "the server did not answer: {}",
                            e.to_string().lines().next().unwrap_or_default()
                        ),
                    }
                );
            }
            return refused_login(&server);
        }
        early_server = Some(server);
    }
    // no base backup to say the segment size (archiving began before the first one): the
    // newest segment says it, else a cluster with 64 MiB segments shows gaps that are none
    if phys.is_none() {
        // a segment that cannot be read is for the status to report, not a reason to fail
        if let Some(size) = st
            .newest
            .as_deref()
            .and_then(|n| wal::segment_size_of(&store, n).ok().flatten())
            .filter(|s| *s != seg_size)
        {
            seg_size = size;
            st = wal::status(&store, start.as_ref(), seg_size)?;
        }
    }
    // a tablespace's creation in the WAL after the latest base backup ends every recovery
    // from it there, also when the tablespace is gone from the server since
    let tablespace_created_at = match (&st.reachable, phys.as_ref()) {
        (Some(r), Some(p)) => {
            wal::status::tablespace_creation_on_path(&store, r, (p.start_lsn, p.timeline))?
        }
        _ => None,
    };
    let kept_writing = latest_timeline.kept_writing(&st.timelines, seg_size)?;
    if !ctx.json {
        for k in &kept_writing {
            eprintln!(
                "warning: timeline {} has WAL archived up to {}, past LSN {} where timeline {} branched off it: a server kept writing on timeline {} after the promotion (the old primary after a failover, or production while a restored copy promoted on timeline {} archives here); its writes after the branch are in no restore to the latest timeline",
                k.timeline, k.last, k.switch, k.child, k.timeline, k.child
            );
        }
    }
    // a gap also ends the recovery window of the backups taken before it
    let cut_short = if st.timelines.iter().any(|t| !t.gaps.is_empty()) {
        let older: Vec<ChainStart> = backups
            .iter()
            .filter_map(|b| {
                b.meta
                    .physical
                    .as_ref()
                    .map(|p| ChainStart::of_backup(&b.id, p))
            })
            .collect();
        wal::cut_short(&store, &older, seg_size)?
    } else {
        Vec::new()
    };
    let candidates = sockets(ctx, &name, socket);
    let answering = candidates
        .iter()
        .find(|s| std::os::unix::net::UnixStream::connect(s).is_ok());
    let wal_server = answering.is_some();
    let socket = answering.unwrap_or(&candidates[0]).clone();
    if let Some(server) = ctx.json.then(|| early_server.take()).flatten() {
        run.emit(
            &name,
            &StatusJson {
                archive: &st,
                cut_short: &cut_short,
                kept_writing: &kept_writing,
                archiver: server.as_ref().ok(),
                archiver_error: server.as_ref().err().map(ToString::to_string),
                archiver_stalled_secs: server
                    .as_ref()
                    .ok()
                    .and_then(|a| a.stalled_secs(jiff::Timestamp::now(), stall_bound(ctx, &name))),
                wal_server,
                wal_socket: socket,
                tablespace_created_at: tablespace_created_at.map(|l| l.to_string()),
            },
        )?;
        let refused = refused_login(&server)
            .and(not_asked(&server, &st, &name))
            .and(not_archived(pitr_meant.as_deref(), &st, &name));
        return verdict(
            (&st, tablespace_created_at),
            &store,
            &latest_timeline,
            server.ok().as_ref(),
            (
                &name,
                &super::restore::archive_command(ctx, &name)?,
                stall_bound(ctx, &name),
            ),
        )
        .and(refused);
    }
    println!("WAL archive of source {name} at {}", st.location);
    if st.timelines.is_empty() {
        println!(
            "  nothing archived yet: the server must archive with archive_mode = on and archive_command = {} (see the README; when both are set, the archiver line below says why nothing arrives)",
            lifeboat_core::ops::recover::conf_quote(&super::restore::archive_command(ctx, &name)?)
        );
    }
    for t in &st.timelines {
        println!(
            "  timeline {}: {} .. {} ({} segment{}, {} stored){}",
            t.timeline,
            t.first,
            t.last,
            t.segments,
            if t.segments == 1 { "" } else { "s" },
            output::bytes(t.stored_bytes),
            if t.gaps.is_empty() {
                String::new()
            } else {
                format!(", {} gap(s)", t.gaps.len())
            }
        );
        for (a, b) in &t.gaps {
            if a == b {
                println!("    missing {a}");
            } else {
                println!("    missing {a} .. {b}");
            }
        }
    }
    if let (Some(n), Some(age)) = (&st.newest, st.newest_age_secs) {
        println!("  last archived: {n}, {} ago", output::secs(age));
    }
    match &st.reachable {
        None => {
            println!("  no physical backup yet: `lifeboat backup --source {name} --kind physical` starts the chain")
        }
        Some(r) if !r.consistent => {
            let p = phys
                .as_ref()
                .expect("a chain start comes from a physical backup");
            println!(
                "  from backup {}: NOT RESTORABLE: it needs the WAL up to {} to be consistent, and {} is not in the archive",
                &r.backup_id[..8],
                p.stop_lsn,
                SegmentName::containing(p.timeline, r.until_lsn, p.wal_segment_size)
            );
            println!("  hint: take a new physical backup now (`lifeboat backup --kind physical`), and check that archive_command runs `lifeboat wal-push`");
        }
        Some(r) => {
            match tablespace_created_at {
                // the archive reaches further than any recovery from this backup can
                Some(l) => {
                    println!(
                        "  from backup {}: recoverable only up to LSN {l}, just before a tablespace's creation (the archive holds WAL up to {}, end of {}, which no recovery from this backup reaches)",
                        &r.backup_id[..8],
                        r.until_lsn,
                        r.last_segment
                    );
                    println!("  TABLESPACE: the WAL at LSN {l} creates a tablespace: recovery from this backup ends just before it (lifeboat backs up no tablespaces)");
                }
                None => println!(
                    "  from backup {}: recoverable up to {} (end of {}{}){}",
                    &r.backup_id[..8],
                    r.until_lsn,
                    r.last_segment,
                    r.until_time
                        .map(|t| format!(", archived {}", output::time(t)))
                        .unwrap_or_default(),
                    st.rpo_secs
                        .map(|s| format!(", live RPO {}", output::secs(s)))
                        .unwrap_or_default()
                ),
            }
            if let Some(b) = &r.blocked_by {
                println!("  GAP: {b} is missing; later WAL cannot be replayed from this backup");
                println!("  hint: take a new physical backup now (`lifeboat backup --kind physical`) so the chain restarts after the gap");
            }
        }
    }
    for t in &st.without_history {
        println!(
            "  timeline {t} has segments but no {t:08X}.history in the archive: recovery to the latest point does not follow it, and what was written on it is not restorable"
        );
        println!("  hint: on the server that was promoted to timeline {t}: `lifeboat wal-push --source {name} PGDATA/pg_wal/{t:08X}.history`, then `lifeboat backup --source {name} --kind physical`");
    }
    if !cut_short.is_empty() {
        println!("  older backups cut short by a gap (the missing WAL cannot be brought back; a point after a gap needs a backup taken after it):");
        for r in &cut_short {
            let id = &r.backup_id[..8.min(r.backup_id.len())];
            match (&r.blocked_by, r.consistent) {
                (_, false) => println!(
                    "    backup {id}: NOT RESTORABLE: WAL it needs to be consistent is missing"
                ),
                (Some(b), true) => println!(
                    "    backup {id}: recovers only up to {} (end of {}); {b} is missing",
                    r.until_lsn, r.last_segment
                ),
                (None, true) => {}
            }
        }
    }
    // the repository's part is out before the server is asked: when the server is down,
    // the connection attempt may take its connect timeout
    let server = early_server.unwrap_or_else(|| archiver(ctx, &name));
    match &server {
        Ok(a) => print_archiver(a, stall_bound(ctx, &name)),
        Err(e) => println!(
            "archiver (server): not reachable ({}); the lines above are what the repository holds",
            e.to_string().lines().next().unwrap_or_default()
        ),
    }
    if wal_server {
        println!("wal serve: answering on {}", socket.display());
    } else {
        println!(
            "wal serve: none answers on {}, this user's socket (a server run by another user, such as PostgreSQL's, has its own; without one each wal-push opens the repository itself, ~0.3 s a segment)",
            socket.display()
        );
    }
    let refused = refused_login(&server)
        .and(not_asked(&server, &st, &name))
        .and(not_archived(pitr_meant.as_deref(), &st, &name));
    verdict(
        (&st, tablespace_created_at),
        &store,
        &latest_timeline,
        server.ok().as_ref(),
        (
            &name,
            &super::restore::archive_command(ctx, &name)?,
            stall_bound(ctx, &name),
        ),
    )
    .and(refused)
}

/// A server that answers and refuses lifeboat's login is not a server that is down: the
/// checks that need it (a failing archive_command, the segment it archived last) did not
/// run, and monitoring must hear of that (exit 3), or a forgotten password rotation
/// would switch them off silently.
fn refused_login(server: &lifeboat_core::Result<ArchiverState>) -> anyhow::Result<()> {
    match server {
        Err(e) if e.kind() == ErrorKind::Auth => Err(anyhow::Error::from(
            lifeboat_core::Error::new(
                ErrorKind::Auth,
                format!(
                    "the server refused lifeboat's login, so the checks that ask it (a failing archive_command, the segment it archived last) did not run: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            )
            .hint(e.hint_text().unwrap_or(
                "check the source's password (password_file, password_command or its dsn)",
            )),
        )),
        _ => Ok(()),
    }
}

/// How long a segment may wait in `pg_wal` before `wal status` calls the archiver
/// stalled (see [`wal::archiver::stall_bound`]).
fn stall_bound(ctx: &Ctx, name: &str) -> u64 {
    ctx.source(Some(name))
        .map_or(wal::archiver::STALLED_AFTER_SECS, |s| {
            wal::archiver::stall_bound(&s.objectives)
        })
}

/// What in the configuration of source `name` says it is meant to be recoverable to a
/// point in time (a schedule of base backups, an RPO objective of its own beside the
/// logical one); `None` when nothing does.
fn pitr_meant(ctx: &Ctx, name: &str) -> Option<String> {
    let src = ctx.source(Some(name)).ok()?;
    if src.schedule.physical.is_some() {
        return Some("its schedule takes physical backups".into());
    }
    match (&src.objectives.rpo, &src.objectives.logical_rpo) {
        (Some(r), Some(l)) if r != l => Some(format!(
            "its RPO objective ({r}) is not its logical one ({l})"
        )),
        _ => None,
    }
}

/// A source configured for point-in-time recovery (see [`pitr_meant`]) whose archive
/// holds nothing: no point in time can be recovered, which is no "logical backups only".
fn not_archived(meant: Option<&str>, st: &wal::WalStatus, name: &str) -> anyhow::Result<()> {
    match meant {
        Some(why) if st.timelines.is_empty() => Err(anyhow::Error::from(
            lifeboat_core::Error::new(
                ErrorKind::CheckFailed,
                format!(
                    "source {name} is configured for point-in-time recovery ({why}), and its WAL archive holds nothing: no point in time can be recovered"
                ),
            )
            .hint("turn archiving on in the server (archive_mode = on, archive_command as the line above says; see the README), then take a physical backup"),
        )),
        _ => Ok(()),
    }
}

/// A server that did not answer, for a source whose archive is in use: the checks that
/// ask it (a failing or stalled archiver, segments waiting in `pg_wal`) did not run, and
/// monitoring must not read "passed" (exit 7). A source without a connection (`--repo`
/// alone) or whose archive holds nothing is not judged here.
fn not_asked(
    server: &lifeboat_core::Result<ArchiverState>,
    st: &wal::WalStatus,
    name: &str,
) -> anyhow::Result<()> {
    match server {
        Err(e)
            if !matches!(e.kind(), ErrorKind::Auth | ErrorKind::Config)
                && !st.timelines.is_empty() =>
        {
            Err(anyhow::Error::from(
                lifeboat_core::Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the server of source {name} did not answer, so the checks that ask it (a failing or stalled archiver, segments waiting in pg_wal) did not run{}: {}",
                        st.rpo_secs
                            .map(|s| format!("; from the repository alone the live RPO is {}", output::secs(s)))
                            .unwrap_or_default(),
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                )
                .hint("start the server, or fix the source's dsn; the lines above are what the repository holds"),
            ))
        }
        _ => Ok(()),
    }
}

fn print_archiver(a: &ArchiverState, stall_bound: u64) {
    let ago = |t: &jiff::Timestamp| {
        output::secs(
            jiff::Timestamp::now()
                .duration_since(*t)
                .as_secs_f64()
                .max(0.0),
        )
    };
    // a standby archives only with `always`; its statistics would say nothing happens
    if a.timeline.is_none() && a.archive_mode != "always" {
        println!(
            "archiver (server): a standby with archive_mode = {}: it archives nothing itself; the primary's archive_command fills this archive (`lifeboat wal status` against the primary shows its archiver)",
            a.archive_mode
        );
        return;
    }
    if a.archive_mode == "off" {
        println!("archiver (server): archive_mode is off: nothing is being archived");
        return;
    }
    let last_ok = match (&a.last_archived_wal, &a.last_archived_at) {
        (Some(w), Some(t)) => format!("last archived {w} {} ago", ago(t)),
        _ => "nothing archived since the statistics were reset".to_string(),
    };
    let waiting = match (a.waiting, &a.oldest_waiting_since) {
        // what waits is in no archive: a host lost now loses it, however recent the
        // newest push above
        (Some(n), Some(t)) if n > 0 => format!(
            ", {n} segment(s) waiting in pg_wal, the oldest since {} ago: the live RPO is at least that",
            ago(t)
        ),
        (Some(n), _) => format!(", {n} segment(s) waiting in pg_wal"),
        (None, _) => String::new(),
    };
    if let Some(waited) = a.stalled_secs(jiff::Timestamp::now(), stall_bound) {
        // archiving on, only slower than the WAL comes: not "nothing archived"
        let behind = a.last_archived_at.is_some_and(|t| {
            jiff::Timestamp::now()
                .duration_since(t)
                .as_secs()
                .unsigned_abs()
                < waited
        });
        println!(
            "archiver (server): STALLED: {} {}, no failure recorded; {last_ok}{waiting}",
            if behind {
                "falling behind: the oldest segment waiting has waited"
            } else {
                "nothing archived for"
            },
            output::secs(waited as f64)
        );
    } else if a.failing {
        println!(
            "archiver (server): FAILING: {} failed {} ago ({} failures); {last_ok}{waiting}",
            a.last_failed_wal.as_deref().unwrap_or("?"),
            a.last_failed_at.as_ref().map(ago).unwrap_or_default(),
            a.failed_count
        );
    } else {
        // a count since the statistics were reset says nothing of now: when was the last
        let failures = match (a.failed_count, &a.last_failed_at) {
            (0, _) => "no failures".to_string(),
            (n, Some(t)) => format!(
                "not failing now ({n} failure(s) since the statistics were reset, the last {} ago)",
                ago(t)
            ),
            (n, None) => {
                format!("not failing now ({n} failure(s) since the statistics were reset)")
            }
        };
        println!(
            "archiver (server): archive_mode {}, {last_ok}, {failures}{waiting}",
            a.archive_mode
        );
    }
}

/// Exit status: a gap after the latest backup, a timeline without its history, an archiver
/// failing now or switched off on a source with physical backups, is an error.
fn verdict(
    (st, tablespace_created_at): (&wal::WalStatus, Option<wal::Lsn>),
    store: &WalStore,
    latest_timeline: &wal::status::LatestTimeline,
    archiver: Option<&ArchiverState>,
    (name, archive_command, stall_bound): (&str, &str, u64),
) -> anyhow::Result<()> {
    // the archive's newest timeline is not the server's: what the lines above call
    // recoverable is another server's history (said first: a gap or backup hint above is
    // about that other history, and a base backup of this server would be refused)
    if let Some(server_tl) = archiver.and_then(|a| a.timeline) {
        if let Some((newest, switch)) = latest_timeline.left(server_tl, wal::Lsn(u64::MAX))? {
            return Err(lifeboat_core::Error::new(
                ErrorKind::CheckFailed,
                if switch.0 == 0 {
                    format!(
                        "the server of source {name} writes on timeline {server_tl}, but the archive's newest timeline {newest} does not descend from it: a restore to the latest point follows timeline {newest}, not this server's writes"
                    )
                } else {
                    format!(
                        "the server of source {name} writes on timeline {server_tl}, but the archive's newest timeline {newest} left timeline {server_tl} at LSN {switch}: a restore to the latest point follows timeline {newest}, not this server's writes since then"
                    )
                },
            )
            .hint(format!(
                "if this server is the primary, a restored copy promoted on timeline {newest} archives into this repository: stop its archiving (on the copy: ALTER SYSTEM SET archive_mode = off; then restart it), and restore this server's history with `--target-timeline {server_tl}`; if a failover promoted another server, point source {name} at it and stop this one"
            ))
            .into());
        }
    }
    if st.reachable.as_ref().is_some_and(|r| !r.consistent) {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            "the latest physical backup cannot be restored: WAL it needs is missing from the archive",
        )
        .into());
    }
    if st
        .reachable
        .as_ref()
        .is_some_and(|r| r.blocked_by.is_some())
    {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            "the WAL archive has a gap after the latest physical backup",
        )
        .into());
    }
    if let Some(t) = st.without_history.first() {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            format!("timeline {t} is archived without its history file {t:08X}.history"),
        )
        .hint("push the history file from the promoted server's pg_wal with `lifeboat wal-push`, then take a physical backup")
        .into());
    }
    // archiving was set up (the archive holds WAL) and the server no longer does it; a
    // source that takes standalone base backups only never archived, and is not alarmed
    // (a standby archives nothing itself with it on either: the primary fills the archive)
    if archiver.is_some_and(|a| a.archive_mode == "off" && a.timeline.is_some())
        && st.reachable.is_some()
        && !st.timelines.is_empty()
    {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            "the server does not archive WAL (archive_mode = off), and this source has physical backups: nothing after the newest archived segment can be recovered",
        )
        .hint(format!("in the server: ALTER SYSTEM SET archive_mode = on; ALTER SYSTEM SET archive_command = '{}'; and, if `SHOW wal_level` says minimal, ALTER SYSTEM SET wal_level = replica (a server set to archive with wal_level minimal refuses to start); then restart it and take a physical backup (see the README)", archive_command.replace('\'', "''")))
        .into());
    }
    // (for a source that archives here: one with logical backups only, or a second source
    // on a cluster that archives elsewhere, is not this archive's)
    if let Some(e) = archiver
        .filter(|_| st.reachable.is_some() && !st.timelines.is_empty())
        .and_then(|a| archived_elsewhere(store, st, a))
    {
        return Err(e.into());
    }
    if let Some(a) = archiver.filter(|a| a.failing) {
        let failing = lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            format!(
                "PostgreSQL's archive_command is failing: {} could not be archived ({} failures)",
                a.last_failed_wal.as_deref().unwrap_or("a segment"),
                a.failed_count
            ),
        );
        // the likeliest cause that the server's log alone would say
        if let Some(note) =
            lifeboat_core::repository::wal_room_note(store.location(), st.segment_size)
        {
            return Err(failing
                .with_note(note)
                .hint("free space on the repository's file system (or move the repository): PostgreSQL retries the waiting segments by itself, and `lifeboat wal status` shows when archiving has caught up; segments wait in pg_wal until then, and that disk fills meanwhile")
                .into());
        }
        return Err(failing
            .hint("the server log says why; run the archive_command by hand as the PostgreSQL user (`lifeboat wal-push` must read the config and password and write the repository); segments wait in pg_wal until it works, and the disk fills meanwhile")
            .into());
    }
    if let Some(waited) = archiver.and_then(|a| a.stalled_secs(jiff::Timestamp::now(), stall_bound))
    {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            format!(
                "PostgreSQL's archiver has archived nothing for {}: a segment has waited in pg_wal longer than {} ({}) and no failure is recorded, as when archive_command cannot be found or run (exit 126 or 127 stops the archiver without counting a failure), or when it cannot keep up",
                output::secs(waited as f64),
                output::secs(stall_bound as f64),
                if stall_bound < wal::archiver::STALLED_AFTER_SECS {
                    "the RPO objective"
                } else {
                    "an archiver that keeps up takes each segment within seconds"
                }
            ),
        )
        .hint(format!("the server log says why (`archive command failed with exit code 127`, `not found`); archive_command must name lifeboat by its full path, as the PostgreSQL user can run it: {}", lifeboat_core::ops::recover::conf_quote(archive_command)))
        .into());
    }
    // a tablespace made after the latest base backup (one before it would have refused
    // the backup): recovery ends at its creation, and the recoverable point above is not.
    // Checked after the archiver's own troubles: its fix, a new base backup, needs a
    // working archiver first
    if let Some(a) = archiver.filter(|a| !a.tablespaces.is_empty() && st.reachable.is_some()) {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            format!(
                "the server has tablespace(s) {}, created after the latest physical backup: recovery from it ends where the first was created (lifeboat backs up no tablespaces), so no point after that can be recovered, whatever the archive holds",
                a.tablespaces.join(", ")
            ),
        )
        .hint(format!("move their tables and indexes to pg_default (ALTER TABLE ... SET TABLESPACE pg_default), drop them, then take a physical backup at once (`lifeboat backup --source {name} --kind physical`); until then, back the databases that use them up logically"))
        .into());
    }
    // the tablespace may be gone from the server since: its creation is still in the WAL
    if let Some(lsn) = tablespace_created_at {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            format!(
                "the WAL archived after the latest physical backup creates a tablespace at LSN {lsn}: recovery from that backup ends just before it (lifeboat backs up no tablespaces), so no point after it can be recovered, whatever the archive holds"
            ),
        )
        .hint(format!("once no tablespace is left on the server, take a physical backup at once (`lifeboat backup --source {name} --kind physical`): recovery from it starts after the creation"))
        .into());
    }
    Ok(())
}

/// The segment the server last archived, when the archive does not hold it: WAL
/// archived since is gone from the repository (deleted, the repository replaced by an
/// older copy), or the server archives into another repository. Listed once more before
/// saying so: the server may have archived it after the listing.
fn archived_elsewhere(
    store: &WalStore,
    st: &wal::WalStatus,
    a: &ArchiverState,
) -> Option<lifeboat_core::Error> {
    let last = a.last_archived_wal.as_deref()?;
    // segments only: not a history or backup label file
    if last.len() != 24 || !last.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // in the listing `st` was made from: within its timeline's range and in no gap
    let listed = st.timelines.iter().any(|t| {
        last.get(..8) == t.first.get(..8)
            && t.first.as_str() <= last
            && last <= t.last.as_str()
            && !t
                .gaps
                .iter()
                .any(|(a, b)| a.as_str() <= last && last <= b.as_str())
    });
    if listed
        || store
            .list()
            .ok()?
            .iter()
            .any(|w| w.file.to_string() == last)
    {
        return None;
    }
    Some(
        lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            format!(
                "the server says it archived {last}, but the archive at {} does not hold it (its newest: {}): WAL archived since was deleted from the repository, the repository was replaced by an older copy, or the server archives into another repository",
                st.location,
                st.newest.as_deref().unwrap_or("none")
            ),
        )
        .hint("compare the server's archive_command with this configuration (`SHOW archive_command`); `lifeboat audit verify` shows a repository that was rolled back or replaced; then take a physical backup (`lifeboat backup --kind physical`) so the chain restarts"),
    )
}

fn serve(ctx: &Ctx, source: Option<&str>, socket: Option<PathBuf>) -> anyhow::Result<()> {
    let (repo, store, name) = store(ctx, source, true)?;
    let seg_size = latest_physical(&repo, &name)?
        .and_then(|b| b.meta.physical.map(|p| p.wal_segment_size))
        .unwrap_or(wal::DEFAULT_SEGMENT_SIZE);
    let socket = match socket {
        Some(s) => s,
        None => sockets(ctx, &name, None).remove(0),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::on_stop(std::sync::Arc::clone(&stop));
    let said = format!(
        "serving the WAL archive of source {name} ({}) on {}",
        store.location(),
        socket.display()
    );
    let quiet = ctx.json;
    spool::serve(
        store,
        &archive_key(ctx, &name),
        &socket,
        seg_size,
        &stop,
        || {
            if !quiet {
                eprintln!("{said}");
            }
        },
    )?;
    Ok(())
}
