//! `lifeboat audit list | verify | keygen | sign`.

use std::path::PathBuf;

use clap::Subcommand;
use lifeboat_core::{
    repository::{audit, head, signing},
    Error, ErrorKind,
};

use crate::{output, Ctx};

/// Audit-log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print the audit log, oldest first (filters narrow it; the chain is checked by
    /// `verify`, whole).
    List {
        /// Only the newest N entries (after the other filters).
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        /// Only entries of this action (backup, verify, restore, drill, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only failed entries.
        #[arg(long)]
        failed: bool,
        /// Only entries of operations at or after this time (an entry recorded late counts
        /// when it happened; a bare date: from the start of that day; or a time ago: 1d, 12h).
        #[arg(long, value_parser = super::parse_since)]
        since: Option<jiff::Timestamp>,
        /// Only entries of operations at or before this time (a bare date: to the end of
        /// that day; or a time ago).
        #[arg(long, value_parser = super::parse_until)]
        until: Option<jiff::Timestamp>,
    },
    /// Check the hash chain: names every edited, removed or reordered entry.
    Verify {
        /// Head hash recorded earlier (e.g. from a drill report), in full or its first 16 or
        /// more hex digits as `audit verify` prints it: detects removed newest entries.
        #[arg(long)]
        expected_head: Option<String>,
        /// File outside the repository holding the head: checked against, then updated.
        #[arg(long)]
        head_file: Option<PathBuf>,
        /// A statement from `audit sign`: its signature is checked with --public-key, then
        /// the log against its head.
        #[arg(long, requires = "public_key")]
        signed: Option<PathBuf>,
        /// The trusted public key (from `audit keygen`) for --signed.
        #[arg(long, requires = "signed")]
        public_key: Option<PathBuf>,
    },
    /// Create an Ed25519 key pair for signing audit heads: PREFIX.key (keep it outside the
    /// repository, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        prefix: PathBuf,
    },
    /// Check the log and sign its head with a key kept outside the repository.
    Sign {
        /// The secret key (from `audit keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Write the signed statement here (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write a note into the log: what was done by hand (rows copied back after a
    /// restore, a server promoted), kept with who and when like every other entry.
    Note {
        /// The note, one line.
        text: String,
    },
    /// Record that backups the log lists as gone (`audit verify` names them) were deleted
    /// on purpose: the checks stop naming them, and the entry keeps who and why.
    Deleted {
        /// Ids of the gone backups (8 hex digits or more).
        #[arg(required = true)]
        ids: Vec<String>,
        /// Why they were deleted (an erasure request, a backup taken by mistake).
        #[arg(long)]
        reason: String,
    },
    /// Record that backups no audit entry records (`verify --all` names them) were checked
    /// and are the repository's own: picks by time may take them again, the checks stop
    /// naming them, and the entry keeps who and why.
    Adopt {
        /// Ids of those backups (8 hex digits or more).
        #[arg(required = true)]
        ids: Vec<String>,
        /// How they were checked and why they are kept (e.g. `verify --read-data` passed,
        /// a run killed by the OOM killer).
        #[arg(long)]
        reason: String,
    },
}

impl AuditCmd {
    /// Runs the command; `verify` exits 6 when the chain is broken.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if let Self::Keygen { prefix } = self {
            let (key, public) = signing::generate(prefix)?;
            if ctx.json {
                return output::json(&serde_json::json!({
                    "secret_key": key,
                    "public_key": public,
                }));
            }
            println!(
                "secret key {} (keep it outside the repository), public key {}",
                key.display(),
                public.display()
            );
            return Ok(());
        }
        if let Self::Verify {
            expected_head: Some(h),
            ..
        } = self
        {
            // before the log is read: a head too short to name one entry is a usage error,
            // not evidence of tampering
            audit::check_head(h)?;
        }
        let repo = ctx.open()?;
        match self {
            Self::Keygen { .. } => unreachable!("handled above"),
            Self::Deleted { ids, reason } | Self::Adopt { ids, reason } => {
                let entry = if matches!(self, Self::Adopt { .. }) {
                    audit::record_adopted(&repo, ids, reason)?
                } else {
                    audit::record_deleted(&repo, ids, reason)?
                };
                if ctx.json {
                    return output::json(&entry);
                }
                println!("recorded as entry {}: {}", entry.seq, entry.details);
                Ok(())
            }
            Self::Note { text } => {
                let entry = audit::record_note(&repo, text)?;
                if ctx.json {
                    return output::json(&entry);
                }
                println!("recorded as entry {}", entry.seq);
                Ok(())
            }
            Self::Sign { key, output } => {
                let statement = signing::sign(&repo, key)?;
                // (a key others may read is said)
                output::warn_repository(&repo);
                let text = serde_json::to_string_pretty(&statement)?;
                match output {
                    Some(p) => {
                        output::write_file(p, &format!("{text}\n"))?;
                        if ctx.json {
                            return output::json(&serde_json::json!({
                                "written_to": p,
                                "head": statement.head,
                                "entries": statement.entries,
                            }));
                        }
                        println!(
                            "signed head {} ({} entries) into {}",
                            &statement.head[..16.min(statement.head.len())],
                            statement.entries,
                            p.display()
                        );
                    }
                    None => println!("{text}"),
                }
                Ok(())
            }
            Self::List {
                last,
                action,
                failed,
                since,
                until,
            } => {
                super::since_before_until(*since, *until)?;
                let all = audit::entries(&repo)?;
                if let Some(a) = action
                    .as_ref()
                    .filter(|a| !all.iter().any(|e| &e.action == *a))
                {
                    // a typo must not read as "none of those"
                    let mut known: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
                    known.sort_unstable();
                    known.dedup();
                    return Err(
                        Error::not_found(format!("the audit log has no {a:?} entries"))
                            .hint(format!("its actions: {}", known.join(", ")))
                            .into(),
                    );
                }
                let mut entries: Vec<audit::Entry> = all
                    .into_iter()
                    .filter(|e| action.as_ref().is_none_or(|a| &e.action == a))
                    .filter(|e| !failed || e.outcome != "ok")
                    // by when it happened: a failure parked on this host and recorded late
                    // belongs to the hour it failed in
                    .filter(|e| since.is_none_or(|t| e.happened_at() >= t))
                    .filter(|e| until.is_none_or(|t| e.happened_at() <= t))
                    .collect();
                if let Some(n) = last {
                    entries.drain(..entries.len().saturating_sub(*n));
                }
                if ctx.json {
                    return output::json(&entries);
                }
                for e in &entries {
                    // entries from before lifeboat recorded who ran them say nothing of it
                    let by = match e.actor().as_str() {
                        "-" => String::new(),
                        who => format!("  (by {who})"),
                    };
                    println!(
                        "{:>5}  {}  {:<8} {:<6} {}{by}",
                        e.seq,
                        output::time(e.time),
                        e.action,
                        e.outcome,
                        e.details,
                    );
                }
                // entries this host could not write to the repository yet are in no list
                // above: say that they wait, and what adds them
                let waiting = lifeboat_core::repository::parked::for_repository(repo.location())
                    .map_or(0, |p| p.len());
                if waiting > 0 {
                    println!(
                        "note: {waiting} {} parked on this host, waiting to be added to the log (in {}); the next backup, verify, restore or drill that can write to the repository adds them first",
                        if waiting == 1 { "entry is" } else { "entries are" },
                        lifeboat_core::repository::parked::dir()
                            .map_or_else(|| "the state directory".to_string(), |d| d.display().to_string())
                    );
                }
                Ok(())
            }
            Self::Verify {
                expected_head,
                head_file,
                signed,
                public_key,
            } => {
                // the head file named here and the configured one, both: comparing with a
                // head kept outside the repository is what catches entries cut off the end,
                // and naming another file must not skip the one the configuration keeps
                // (the repository's own settings: `Ctx::open` chose them, and said so)
                let configured = repo.audit_config().head_file.clone();
                let mut files: Vec<(std::path::PathBuf, bool)> = Vec::new();
                if let Some(f) = head_file {
                    files.push((f.clone(), true));
                }
                if let Some(f) = configured.filter(|c| head_file.as_ref() != Some(c)) {
                    files.push((f, false));
                }
                let mut heads: Vec<(String, std::path::PathBuf)> = Vec::new();
                // every line of each file is checked against the log, not only the newest
                let mut texts: Vec<String> = Vec::new();
                // the newest head in the file named here, to append only what is new
                let mut from_given = None;
                for (f, given) in &files {
                    if f.exists() {
                        let text = std::fs::read_to_string(f)
                            .map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
                        let h = head::newest_in(&text).ok_or_else(|| {
                            Error::config(format!("{} holds no audit head", f.display()))
                                .hint("it should end with a line `SEQ HASH TIME ACTION OUTCOME` or a bare hash (at least its first 16 hex digits)")
                        })?;
                        if *given {
                            from_given = Some(h.clone());
                        }
                        heads.push((h, f.clone()));
                        texts.push(text);
                    } else if *given {
                        // say when the file will get its first head: this verify writes
                        // one only into a file named on the command line
                        eprintln!(
                            "note: {} does not exist yet: nothing to compare with; it is created with the current head once the chain checks out",
                            f.display()
                        );
                    } else if f
                        .parent()
                        .is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir())
                    {
                        // the next entry could not create it: said now, not by a failing backup
                        eprintln!(
                            "warning: {} (audit.head_file) does not exist, and neither does its directory: the next audit entry cannot create it (and its operation will exit 7); create the directory, writable by the user lifeboat runs as",
                            f.display()
                        );
                    } else {
                        eprintln!(
                            "note: {} (audit.head_file) does not exist yet: nothing to compare with; `audit verify` does not write it: \
                             the next audit entry (the next backup, restore, `lifeboat verify` or drill) creates it with its head",
                            f.display()
                        );
                    }
                }
                // one reading of the log: what is checked is what gets appended to the file;
                // each head given (on the command line, in the file) is checked
                let head_texts: Vec<(&str, &std::path::Path)> = texts
                    .iter()
                    .zip(&heads)
                    .map(|(t, (_, f))| (t.as_str(), f.as_path()))
                    .collect();
                let (mut v, entries) =
                    audit::check_log(&repo, expected_head.as_deref(), &head_texts)?;
                let unlogged = audit::unlogged_backups(&repo, &entries, &repo.backups()?)?;
                let mut unpublished: Vec<u64> = texts
                    .iter()
                    .flat_map(|t| head::unpublished_between(t, &entries))
                    .collect();
                unpublished.sort_unstable();
                unpublished.dedup();
                if let (Some(statement), Some(key)) = (signed, public_key) {
                    let text = std::fs::read_to_string(statement).map_err(|e| {
                        Error::io(
                            format!("reading the signed head {}", statement.display()),
                            e,
                        )
                    })?;
                    let statement: signing::SignedHead =
                        serde_json::from_str(&text).map_err(|e| {
                            Error::config(format!(
                                "{} is not a signed head: {e}",
                                statement.display()
                            ))
                        })?;
                    // it checks the chain too: each problem is reported once
                    let checked = signing::verify_signed(&repo, &statement, key)?;
                    v.signed_heads_verified += checked.signed_heads_verified;
                    for p in checked.problems {
                        if !v.problems.contains(&p) {
                            v.problems.push(p);
                        }
                    }
                }
                // what the end of the log was compared with: without it, entries cut off
                // the end cannot be seen
                let last = entries.last().map_or(0, |e| e.seq);
                // (`None`: its head is not in the log, cut off or rewritten, said above)
                let compared: Vec<(&std::path::PathBuf, Option<u64>)> = heads
                    .iter()
                    .map(|(h, f)| {
                        let e = entries.iter().find(|e| e.hash.starts_with(h.as_str()));
                        (f, e.map(|e| e.seq))
                    })
                    .collect();
                // the head given on the command line, and the entry it names
                let expected = expected_head.as_deref().and_then(|h| {
                    entries
                        .iter()
                        .find(|e| e.hash.starts_with(h))
                        .map(|e| (h, e.seq))
                });
                if ctx.json {
                    let mut value = serde_json::to_value(&v)?;
                    let mut with: Vec<serde_json::Value> = compared
                        .iter()
                        .map(|(f, seq)| match seq {
                            Some(seq) => serde_json::json!({
                                "file": f,
                                "entry": seq,
                                "log_head_entry": last,
                                // entries after it were never published there
                                "unpublished": last - seq,
                            }),
                            None => serde_json::json!({
                                "file": f,
                                "entry": null,
                                "log_head_entry": last,
                                "head_not_in_log": true,
                            }),
                        })
                        .collect();
                    if let Some((h, seq)) = expected {
                        with.push(serde_json::json!({
                            "expected_head": h,
                            "entry": seq,
                            "log_head_entry": last,
                            "newer_entries": last - seq,
                        }));
                    }
                    value["compared_with"] = with.into();
                    value["unlogged_backups"] = unlogged.clone().into();
                    value["unpublished_entries"] = unpublished.clone().into();
                    output::json(&value)?;
                } else {
                    for p in &v.problems {
                        println!("BROKEN  {p}");
                    }
                    println!(
                        "{} entries, head {}{}",
                        v.entries,
                        v.head.as_deref().map_or("-", |h| &h[..16]),
                        match (v.ok(), v.signed_heads_verified) {
                            (false, 0) => String::new(),
                            (false, 1) => {
                                ": 1 signed head verified: the log up to that entry is authentic"
                                    .to_string()
                            }
                            (false, n) => format!(
                                ": {n} signed heads verified: the log up to the newest of them is authentic"
                            ),
                            (true, 0) => ": chain intact".to_string(),
                            (true, 1) => {
                                ": chain intact, 1 signed head verified (signature checked with the public key)"
                                    .to_string()
                            }
                            (true, n) => format!(
                                ": chain intact, {n} signed heads verified (signatures checked with the public key)"
                            ),
                        }
                    );
                    // backups the checks no longer name because an entry says they were
                    // deleted on purpose: shown, since anyone with the password can write one
                    for d in audit::recorded_deletions(&entries) {
                        println!("  recorded as deleted on purpose: {d}");
                    }
                    for a in audit::recorded_adoptions(&entries) {
                        println!("  adopted without a backup entry: {a}");
                    }
                    if let Some(note) = audit::unlogged_note(&unlogged) {
                        println!("  note: {note}");
                    }
                    if !unpublished.is_empty() {
                        println!(
                            "  note: entr{} {} of the log {} no line in the head file, between lines it has: written by a run configured without it (`--repo`, another host's configuration) or by someone else with the password; `lifeboat audit list` shows what {} recorded",
                            if unpublished.len() == 1 { "y" } else { "ies" },
                            unpublished
                                .iter()
                                .map(u64::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                            if unpublished.len() == 1 { "has" } else { "have" },
                            if unpublished.len() == 1 { "it" } else { "they" }
                        );
                    }
                    for (f, seq) in &compared {
                        let Some(seq) = seq else {
                            println!(
                                "  compared with {}: its newest head is not in the log (see above)",
                                f.display()
                            );
                            continue;
                        };
                        if *seq < last {
                            println!(
                                "  compared with {}: its newest head is entry {seq} of {last}; entries {} to {last} were never published there",
                                f.display(),
                                seq + 1
                            );
                        } else {
                            println!(
                                "  compared with {}: its newest head is entry {seq}, the log's head",
                                f.display()
                            );
                        }
                    }
                    if let Some((h, seq)) = expected {
                        if seq < last {
                            println!(
                                "  compared with the expected head {h}: it is entry {seq} of {last}; the {} newer entr{} came after it",
                                last - seq,
                                if last - seq == 1 { "y" } else { "ies" }
                            );
                        } else {
                            println!("  compared with the expected head {h}: it is entry {seq}, the log's head");
                        }
                    }
                    if heads.is_empty() && expected_head.is_none() && signed.is_none() {
                        println!("  compared with no head kept outside the repository: entries cut off the end cannot be seen (configure [audit] head_file, or pass --head-file / --expected-head)");
                    }
                }
                if !v.ok() {
                    return Err(Error::new(ErrorKind::Integrity, format!("the audit log is not intact: {}", v.problems.join("; ")))
                        .hint("someone with access to the repository changed its history: keep a copy and investigate")
                        .into());
                }
                // a file named on the command line keeps its history: the newest head is
                // appended (the configured one gets every head as it is written, and may be
                // read-only for whoever verifies)
                if let (Some(f), Some(last)) = (head_file, entries.last()) {
                    if from_given.as_deref() != Some(last.hash.as_str()) {
                        head::append_line(f, last)?;
                    }
                }
                Ok(())
            }
        }
    }
}
