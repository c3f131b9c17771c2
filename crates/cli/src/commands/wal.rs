//! `lifeboat wal-push` (archive_command), `lifeboat wal-fetch` (restore_command) and
//! `lifeboat wal status`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lifeboat_core::{
    ops::list::{list, ListFilter},
    sources::postgres::logical::BackupKind,
    wal::{self, ChainStart, PutOutcome, WalStore},
    ErrorKind,
};

use crate::{output, Ctx};

/// Archive one WAL file: `archive_command = 'lifeboat wal-push %p'`.
#[derive(Debug, Args)]
pub struct WalPushCmd {
    /// Source the cluster is configured as (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Path of the WAL file (`%p`).
    path: PathBuf,
}

/// Restore one WAL file: `restore_command = 'lifeboat wal-fetch %f %p'`.
#[derive(Debug, Args)]
pub struct WalFetchCmd {
    /// Source the cluster is configured as (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Name of the WAL file (`%f`).
    name: String,
    /// Where PostgreSQL wants it (`%p`).
    dest: PathBuf,
}

/// The WAL archive.
#[derive(Debug, Subcommand)]
pub enum WalCmd {
    /// Archived range per timeline, gaps, newest segment and its age, the live RPO.
    Status {
        /// Source (default: the only one).
        #[arg(long, short)]
        source: Option<String>,
    },
}

fn store(ctx: &Ctx, source: Option<&str>) -> anyhow::Result<(lifeboat_core::repository::Repo, WalStore, String)> {
    let name = ctx.source(source)?.name.clone();
    let repo = ctx.open()?;
    let store = WalStore::new(&repo, &ctx.repo_config(), &name)?;
    Ok((repo, store, name))
}

impl WalPushCmd {
    /// Pushes and returns once the file is durable.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (_repo, store, _) = store(ctx, self.source.as_deref())?;
        let (file, outcome) = wal::push(&store, &self.path)?;
        if outcome == PutOutcome::AlreadyPresent {
            eprintln!("lifeboat wal-push: {file} was already archived with the same content");
        }
        Ok(())
    }
}

/// Exit status for a failed fetch that must stop recovery: PostgreSQL treats exit codes
/// above 125 as fatal, and anything lower as "not in the archive" (end of recovery).
pub const FETCH_FATAL_EXIT: i32 = 126;

impl WalFetchCmd {
    /// Fetches; returns the process exit code.
    pub fn run(&self, ctx: &Ctx) -> i32 {
        let result = store(ctx, self.source.as_deref())
            .and_then(|(_repo, store, _)| Ok(wal::fetch(&store, &self.name, &self.dest)?));
        match result {
            Ok(true) => 0,
            Ok(false) => {
                // history files are probed routinely; only a missing segment is news
                if !self.name.ends_with(".history") {
                    eprintln!("lifeboat wal-fetch: {} is not in the archive", self.name);
                }
                ErrorKind::NotFound.exit_code()
            }
            Err(e) => {
                let line = e.to_string();
                eprintln!("lifeboat wal-fetch: error fetching {}: {line}", self.name);
                for cause in e.chain().skip(1) {
                    eprintln!("lifeboat wal-fetch:   caused by: {cause}");
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
            Self::Status { source } => status(ctx, source.as_deref()),
        }
    }
}

fn status(ctx: &Ctx, source: Option<&str>) -> anyhow::Result<()> {
    let (repo, store, name) = store(ctx, source)?;
    let latest = list(
        &repo,
        &ListFilter {
            source: Some(name.clone()),
            kind: Some(BackupKind::Physical),
            ..ListFilter::default()
        },
    )?
    .pop();
    let phys = latest.as_ref().and_then(|b| b.meta.physical.clone());
    let start = latest.as_ref().zip(phys.as_ref()).map(|(b, p)| ChainStart {
        backup_id: b.id.clone(),
        timeline: p.timeline,
        start_lsn: p.start_lsn,
    });
    let seg_size = phys.as_ref().map_or(wal::DEFAULT_SEGMENT_SIZE, |p| p.wal_segment_size);
    let st = wal::status(&store, start.as_ref(), seg_size)?;
    if ctx.json {
        return output::json(&st);
    }
    println!("WAL archive of source {name} at {}", st.location);
    if st.timelines.is_empty() {
        println!("  nothing archived yet: set archive_command = 'lifeboat wal-push %p' (see the README)");
    }
    for t in &st.timelines {
        println!(
            "  timeline {}: {} .. {} ({} segments, {} stored){}",
            t.timeline,
            t.first,
            t.last,
            t.segments,
            output::bytes(t.stored_bytes),
            if t.gaps.is_empty() { String::new() } else { format!(", {} gap(s)", t.gaps.len()) }
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
        println!("  newest: {n}, archived {} ago", output::secs(age));
    }
    match &st.reachable {
        None => println!("  no physical backup yet: `lifeboat backup --kind physical` starts the chain"),
        Some(r) => {
            println!(
                "  from backup {}: recoverable up to {} (end of {}){}",
                &r.backup_id[..8],
                r.until_lsn,
                r.last_segment,
                st.rpo_secs
                    .map(|s| format!(", live RPO {}", output::secs(s)))
                    .unwrap_or_default()
            );
            if let Some(b) = &r.blocked_by {
                println!("  GAP: {b} is missing; later WAL cannot be replayed from this backup");
                println!("  hint: take a new physical backup now (`lifeboat backup --kind physical`) so the chain restarts after the gap");
            }
        }
    }
    if st.reachable.as_ref().is_some_and(|r| r.blocked_by.is_some()) {
        return Err(lifeboat_core::Error::new(
            ErrorKind::CheckFailed,
            "the WAL archive has a gap after the latest physical backup",
        )
        .into());
    }
    Ok(())
}
