//! Publishes each new audit head outside the repository (`[audit] head_file`, `head_url`).
//!
//! Someone holding the repository can cut the newest audit entries off and leave a shorter,
//! self-consistent chain. A head kept where that person cannot write (an append-only
//! file on other storage, an evidence service) shows the cut: `lifeboat audit verify
//! --head-file` compares the chain with the newest line.

use std::{io::Write, path::Path, time::Duration};

use serde::Serialize;

use super::audit::Entry;
use crate::{
    config::AuditConfig,
    error::{Error, Result},
};

/// What is published for one entry.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Published<'a> {
    repository: &'a str,
    seq: u64,
    hash: &'a str,
    time: String,
    action: &'a str,
    outcome: &'a str,
}

/// The line `head_file` gets for `entry`.
#[must_use]
pub fn line(entry: &Entry) -> String {
    format!(
        "{} {} {} {} {}\n",
        entry.seq, entry.hash, entry.time, entry.action, entry.outcome
    )
}

/// The newest head in a head file: of the lines lifeboat writes (`seq hash ...`), the
/// highest place's hash, as runs publish in the order they finish; a bare hash on the last
/// line (written by hand, or by older versions) counts as it is. A head is what `--expected-head`
/// takes ([`super::audit::check_head`]): the full hash, or at least the 16 digits `audit
/// verify` prints, so a head copied from its output by hand counts the same.
#[must_use]
pub fn newest_in(text: &str) -> Option<String> {
    // a last line cut short by a crash is skipped for the one before, unless enough of
    // its hash was written to name the entry
    let last = text.lines().rev().find(|l| {
        l.split_whitespace()
            .any(|w| super::audit::check_head(w).is_ok())
    })?;
    if numbered_in(last).is_empty() {
        // a bare head, written down by hand or by an older version
        return last
            .split_whitespace()
            .find(|w| super::audit::check_head(w).is_ok())
            .map(str::to_string);
    }
    // the highest place, not the last line: two runs publish in the order they finish,
    // not the order they appended
    numbered_in(text)
        .into_iter()
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, hash)| hash)
}

/// Every `seq hash` line lifeboat wrote in a head file, in file order.
#[must_use]
pub fn numbered_in(text: &str) -> Vec<(u64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let seq = words.next()?.parse::<u64>().ok()?;
            let hash = words
                .next()
                .filter(|w| super::audit::check_head(w).is_ok())?;
            Some((seq, hash.to_string()))
        })
        .collect()
}

/// What the head file's lines say against the log `entries` beyond its newest head: a
/// line whose entry the log holds with another hash. The newest line alone let a log
/// replaced by an older copy (or another repository) pass once it had grown back to that
/// entry: its runs append their own lines, and the highest number was theirs.
#[must_use]
pub fn rewritten(text: &str, entries: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    let mut first: Option<(u64, String, String)> = None;
    let mut count = 0;
    // the entries are in seq order: each line's are found by halving, not a scan (a head
    // file of years has as many lines as the log entries)
    for (seq, hash) in numbered_in(text) {
        let from = entries.partition_point(|e| e.seq < seq);
        let at: Vec<&Entry> = entries[from..]
            .iter()
            .take_while(|e| e.seq == seq)
            .collect();
        let Some(e) = at.first() else {
            continue;
        };
        // a fork leaves two entries at one place: either may be the line's
        if !at.iter().any(|e| same_head(&e.hash, &hash)) {
            count += 1;
            first.get_or_insert((seq, hash, e.hash.clone()));
        }
    }
    if let Some((seq, kept, log)) = first {
        out.push(format!(
            "the audit head file recorded entry {seq} as {}, but the log's entry {seq} is {}{}: the log was replaced or rewritten after that line was written (an older copy of the repository, or another one)",
            &kept[..16.min(kept.len())],
            &log[..16.min(log.len())],
            if count > 1 {
                format!(" ({count} lines of the file disagree with the log)")
            } else {
                String::new()
            }
        ));
    }
    out
}

/// The head file's lines for entries the log no longer holds (removed from the middle or
/// cut off its end), with what each line recorded: when, which operation, its outcome.
/// What the chain says ("entries 5 to 5 are missing") does not say what they were.
#[must_use]
pub fn gone_from_log(text: &str, entries: &[Entry]) -> Vec<String> {
    let held: std::collections::HashSet<u64> = entries.iter().map(|e| e.seq).collect();
    let mut seen = std::collections::HashSet::new();
    let gone: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let seq = words.first()?.parse::<u64>().ok()?;
            (words.len() >= 5 && !held.contains(&seq) && seen.insert(seq))
                .then(|| format!("{seq} ({} {} {})", words[2], words[3], words[4]))
        })
        .collect();
    match gone.len() {
        0 => Vec::new(),
        n => vec![format!(
            "the audit head file recorded {n} entr{} the log no longer holds: {}{}",
            if n == 1 { "y" } else { "ies" },
            gone.iter().take(8).cloned().collect::<Vec<_>>().join(", "),
            if n > 8 {
                format!(" and {} more", n - 8)
            } else {
                String::new()
            }
        )],
    }
}

/// Entries of the log between the head file's first and newest lines that the file has no
/// line for: written by a run configured without the file (`--repo`, another host's
/// configuration), or by someone with the repository's password. Not damage; worth a look
/// (`lifeboat audit list`).
#[must_use]
pub fn unpublished_between(text: &str, entries: &[Entry]) -> Vec<u64> {
    let lines: std::collections::HashSet<u64> =
        numbered_in(text).into_iter().map(|(seq, _)| seq).collect();
    let (Some(first), Some(last)) = (lines.iter().min(), lines.iter().max()) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| e.seq)
        .filter(|s| s > first && s < last && !lines.contains(s))
        .collect()
}

/// Whether two heads name one entry: the same hash, or one the start of the other (a line
/// may hold the 16 digits `audit verify` prints), in any case.
fn same_head(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a.starts_with(&b) || b.starts_with(&a)
}

/// Appends `entry`'s line to `path`, durably.
///
/// # Errors
///
/// When the file cannot be opened, written or synced.
pub fn append_line(path: &Path, entry: &Entry) -> Result<()> {
    let what = || format!("appending the audit head to {}", path.display());
    let new = !path.exists();
    // a trust anchor: every user may read it, and no one else write it, whatever the
    // umask (000 would let all rewrite it to match a forged log); the group only in a
    // directory its group shares (a setgid or group-writable one: postgres and the
    // operators appending alike)
    let mode = {
        use std::os::unix::fs::MetadataExt;
        let shared = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .and_then(|d| std::fs::metadata(d).ok())
            .is_some_and(|m| m.mode() & 0o2020 != 0);
        if shared {
            0o664
        } else {
            0o644
        }
    };
    let mut f = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).append(true),
        mode,
    )
    .open(path)
    .map_err(|e| Error::io(what(), e))?;
    if new {
        use std::os::unix::fs::PermissionsExt;
        let _ = f.set_permissions(std::fs::Permissions::from_mode(mode));
    }
    // created by root (a backup run by hand): it belongs to whoever owns its directory,
    // usually the user lifeboat runs as from archive_command and cron, which must go on
    // appending to it; best effort, as the head itself is what matters here
    if new {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = super::owner::give_to_owner(dir, path);
        }
    }
    // a line torn by a crash is ended first, so the new one stands on its own (only the
    // last byte is read: the file grows with every entry)
    let torn = last_byte(path).is_some_and(|b| b != b'\n');
    let text = if torn {
        format!("\n{}", line(entry))
    } else {
        line(entry)
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io(what(), e))?;
    // a file made now is on disk only once its directory is
    if new {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::wal::store::sync_dir(dir)?;
    }
    Ok(())
}

/// A line near the end of the head file that records `entry`'s place with another hash:
/// the log went back (an older copy of the repository, another repository) and this run
/// wrote its entry in a place the file already holds. Only the last 64 KiB are read (the
/// file grows with every entry); `audit verify` reads it all.
fn recorded_otherwise(path: &Path, entry: &Entry) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 << 10;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    // a first line cut by the seek is no line
    let text = match text.split_once('\n') {
        Some((_, rest)) if len > TAIL => rest,
        _ => &text,
    };
    let lines = numbered_in(text);
    let short = |h: &str| h[..16.min(h.len())].to_string();
    if let Some((_, other)) = lines
        .iter()
        .find(|(seq, hash)| *seq == entry.seq && !same_head(&entry.hash, hash))
    {
        return Some(format!(
            "the audit head file {} already records entry {} as {}, and this run wrote entry {} as {}: the repository's audit log went back (an older copy of the repository was put in place, or this is another repository), or two runs wrote the same place (a fork, which `audit verify` names)",
            path.display(),
            entry.seq,
            short(other),
            entry.seq,
            short(&entry.hash)
        ));
    }
    // and later runs, once the log has grown past the file's newest line: the places it
    // records twice (the earlier runs' lines beside the original ones) stay in the tail
    let mut first: std::collections::HashMap<u64, &str> = std::collections::HashMap::new();
    for (seq, hash) in &lines {
        match first.get(seq) {
            Some(h) if !same_head(h, hash) => {
                return Some(format!(
                    "the audit head file {} records entry {seq} twice, as {} and as {}: the repository's audit log went back since (an older copy of the repository was put in place, or this is another repository), or two runs wrote the same place (a fork, which `audit verify` names)",
                    path.display(),
                    short(h),
                    short(hash)
                ))
            }
            Some(_) => {}
            None => {
                first.insert(*seq, hash);
            }
        }
    }
    None
}

fn last_byte(path: &Path) -> Option<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::End(-1)).ok()?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

/// Sends `entry`'s head to every configured place.
///
/// # Errors
///
/// [`crate::ErrorKind::Unavailable`] naming the place that failed (a URL without its
/// credentials).
pub fn publish(cfg: &AuditConfig, repository: &str, entry: &Entry) -> Result<()> {
    // every place is tried: one that is down must not keep the head from the others
    let mut failed = Vec::new();
    let mut conflict = None;
    if let Some(path) = &cfg.head_file {
        match append_line(path, entry) {
            Ok(()) => conflict = recorded_otherwise(path, entry),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if let Some(url) = &cfg.head_url {
        let body = serde_json::to_string(&Published {
            repository,
            seq: entry.seq,
            hash: &entry.hash,
            time: entry.time.to_string(),
            action: &entry.action,
            outcome: &entry.outcome,
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        if let Err(e) = post(url, body) {
            failed.push(format!(
                "the audit head could not be sent to {}: {e}",
                redact(url)
            ));
        }
    }
    if let Some(c) = conflict {
        failed.insert(0, c);
        return Err(Error::integrity(failed.join("; ")).hint(
            "run `lifeboat audit verify` (it checks every line of the head file against the log); a repository rolled back or replaced needs the incident runbook, not another backup. Once understood (a repository put back from a copy on purpose, a fork), move the head file aside as evidence: the next entry starts a new one",
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::unavailable(failed.join("; ")).hint(
            "check [audit] head_file / head_url (`lifeboat config check`); the entry itself is \
             in the repository, and the next entry publishes the head that includes it",
        ))
    }
}

/// Checks, without writing anything, that each configured place could take a head: the
/// file (or its directory) is writable, the URL's host accepts connections. One line per
/// place: what, and the outcome.
#[must_use]
pub fn check(cfg: &AuditConfig) -> Vec<(String, Result<String>)> {
    let mut out = Vec::new();
    if let Some(path) = &cfg.head_file {
        out.push(("audit head file".to_string(), check_file(path)));
    }
    let proxy = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if let (Some(url), Some(var)) = (&cfg.head_url, proxy) {
        // the POST goes through the proxy: a direct connection would prove nothing
        out.push((
            "audit head URL".to_string(),
            Ok(format!(
                "{} is reached through the proxy in ${var}: not checked",
                redact(url)
            )),
        ));
    } else if let Some(url) = &cfg.head_url {
        let r = url::Url::parse(url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
            .ok_or_else(|| Error::config("audit.head_url has no host"))
            .and_then(|(host, port)| {
                let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map_err(|e| {
                        Error::unavailable(format!("audit.head_url: {}: {e}", redact(url)))
                            .hint("check the host name in [audit] head_url")
                    })?;
                let reached = addrs.into_iter().any(|a| {
                    std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok()
                });
                if reached {
                    Ok(format!("{} accepts connections", redact(url)))
                } else {
                    Err(Error::unavailable(format!(
                        "audit.head_url: {} does not accept connections",
                        redact(url)
                    ))
                    .hint("start the evidence service or fix [audit] head_url; until then every audit entry's head fails to publish (exit 7 after the work is done)"))
                }
            });
        out.push(("audit head URL".to_string(), r));
    }
    out
}

/// Whether `path` can take a head line, naming the file itself either way (a file not
/// there yet is created by the next audit entry, so its directory is what must be writable).
fn check_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let access = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK);
    // the head file is what catches a forged log: one every user may write (or replace,
    // in a directory all may write without the sticky bit) anchors nothing
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let open_to_all = [
        (
            path,
            std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o002 != 0),
        ),
        (
            dir,
            std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0),
        ),
    ];
    if let Some((p, _)) = open_to_all.iter().find(|(_, open)| *open) {
        return Err(Error::config(format!(
            "audit.head_file: every user of this host may change {}: the head file is what shows a rewritten audit log, and anyone could rewrite it to match",
            p.display()
        ))
        .hint(format!("chmod o-w {}", p.display())));
    }
    if path.exists() {
        return access(path)
            .map(|()| format!("{} is writable", path.display()))
            .map_err(|e| {
                Error::unavailable(format!(
                    "audit.head_file: {} is not writable: {e}",
                    path.display()
                ))
                .hint("make it writable for the user lifeboat runs as (each new audit entry appends a line), or point [audit] head_file at another file")
            });
    }
    access(dir)
        .map(|()| {
            format!(
                "{} does not exist yet; {} is writable, so the next audit entry creates it",
                path.display(),
                dir.display()
            )
        })
        .map_err(|e| {
            Error::unavailable(format!(
                "audit.head_file: {} cannot be created: {} is not writable: {e}",
                path.display(),
                dir.display()
            ))
            .hint("create the directory, writable by the user lifeboat runs as, or point [audit] head_file elsewhere")
        })
}

fn post(url: &str, body: String) -> std::result::Result<(), String> {
    // a program embedding lifeboat may call it from inside its own async runtime, where
    // starting another one on the same thread panics: the request gets a thread of its own
    std::thread::scope(|s| {
        s.spawn(|| post_here(url, body))
            .join()
            .unwrap_or_else(|_| Err("the request panicked".to_string()))
    })
}

fn post_here(url: &str, body: String) -> std::result::Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // a redirect would turn the POST into a GET that "succeeds" without the head
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            // reqwest's errors name the URL, credentials included
            .map_err(|e| crate::error::one_line(&e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    })
}

/// `url` as scheme, host and port only: user name, password, a token in the path or the
/// query never reach a message.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/…", u.scheme()),
            (Some(h), None) => format!("{}://{h}/…", u.scheme()),
            _ => "the configured URL".to_string(),
        },
        Err(_) => "the configured URL".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_head_is_posted_also_from_inside_a_host_program_s_runtime() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // it used to panic: "Cannot start a runtime from within a runtime"
        let sent = rt
            .block_on(async { super::post(&format!("http://127.0.0.1:{port}/head"), "{}".into()) });
        assert!(sent.is_err(), "nothing listens there: {sent:?}");
    }

    use super::*;

    #[test]
    fn entries_the_file_never_got_between_its_lines_are_named() {
        let chain = super::super::audit::test_chain(6);
        let text: String = chain
            .iter()
            .filter(|e| e.seq != 3 && e.seq != 6)
            .map(line)
            .collect();
        // 3 lies between the file's lines; 6 is after its newest (said elsewhere)
        assert_eq!(unpublished_between(&text, &chain), vec![3]);
        assert!(unpublished_between("", &chain).is_empty());
    }

    #[test]
    fn the_file_says_what_entries_removed_from_the_log_were() {
        let chain = super::super::audit::test_chain(8);
        let text: String = chain.iter().map(line).collect();
        assert!(gone_from_log(&text, &chain).is_empty());
        let kept: Vec<Entry> = chain
            .iter()
            .filter(|e| e.seq != 5 && e.seq != 8)
            .cloned()
            .collect();
        let said = gone_from_log(&text, &kept);
        assert_eq!(said.len(), 1, "{said:?}");
        let e5 = &chain[4];
        assert!(
            said[0].contains("recorded 2 entries the log no longer holds")
                && said[0].contains(&format!("5 ({} {} {})", e5.time, e5.action, e5.outcome))
                && said[0].contains("8 ("),
            "{said:?}"
        );
    }

    #[test]
    fn a_log_grown_back_over_a_rollback_disagrees_with_the_file() {
        let old = super::super::audit::test_chain(8);
        // the log rolled back to entry 4, then four new runs: entries 5..8 again, others
        let mut new: Vec<Entry> = old[..4].to_vec();
        for seq in 5..=8 {
            let mut e = old[seq - 1].clone();
            e.details = format!("after the rollback {seq}");
            e.prev = new.last().expect("entry").hash.clone();
            e.hash = e.compute_hash();
            new.push(e);
        }
        let text: String = old.iter().chain(&new[4..]).map(line).collect();
        // the newest line is the new log's own: alone it found nothing
        assert_eq!(newest_in(&text).as_deref(), Some(new[7].hash.as_str()));
        let found = rewritten(&text, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("entry 5 as"), "{found:?}");
        assert!(found[0].contains("4 lines"), "{found:?}");
        // a file written by the log itself agrees, with short heads too
        let own: String = new
            .iter()
            .map(|e| format!("{} {}\n", e.seq, &e.hash[..16]))
            .collect();
        assert!(rewritten(&own, &new).is_empty());
        assert!(rewritten(&text, &old).len() == 1);
    }

    #[test]
    fn every_run_after_a_rollback_finds_the_file_disagreeing() {
        let old = super::super::audit::test_chain(4);
        let mut new: Vec<Entry> = old[..2].to_vec();
        for seq in 3..=6 {
            let mut e = old[0].clone();
            e.seq = seq;
            e.details = format!("after the rollback {seq}");
            e.prev = new.last().expect("entry").hash.clone();
            e.hash = e.compute_hash();
            new.push(e);
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("heads");
        std::fs::write(&path, old.iter().map(line).collect::<String>()).expect("write");
        // each later run appends its line and must still see the disagreement, also once
        // the log has passed the file's newest original line (entry 4)
        for e in &new[2..] {
            append_line(&path, e).expect("append");
            let found = recorded_otherwise(&path, e);
            assert!(found.is_some(), "entry {} passed", e.seq);
        }
        // a file that agrees with its log says nothing, also with a line repeated
        let clean = dir.path().join("clean");
        for e in old.iter().chain(&old[3..]) {
            append_line(&clean, e).expect("append");
            assert_eq!(recorded_otherwise(&clean, e), None);
        }
    }

    #[test]
    fn newest_head_is_the_last_line() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let text = format!(
            "1 {a} 2026-11-24T01:00:00Z backup ok\n2 {b} 2026-11-24T02:00:00Z drill ok\n\n"
        );
        assert_eq!(newest_in(&text), Some(b.clone()));
        assert_eq!(newest_in(&format!("{a}\n")), Some(a.clone()));
        assert_eq!(newest_in("nothing here\n"), None);
        // a head as `audit verify` prints it, written down by hand
        assert_eq!(
            newest_in(&format!("{text}6aedbc05d906b694\n")),
            Some("6aedbc05d906b694".to_string())
        );
        // a torn last line: the one before counts
        assert_eq!(newest_in(&format!("{text}3 bbbb")), Some(b.clone()));
        // published out of order (a run paused between its append and its publishing):
        // the highest place counts
        let c = "c".repeat(64);
        assert_eq!(
            newest_in(&format!(
                "1 {a} 2026-11-24T01:00:00Z backup ok\n3 {c} 2026-11-24T03:00:00Z verify ok\n2 {b} 2026-11-24T02:00:00Z drill ok\n"
            )),
            Some(c)
        );
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        // a crash cut the last line inside its hash
        std::fs::write(
            &path,
            format!(
                "1 {} 2026-11-24T01:00:00Z backup ok\n2 {}",
                "a".repeat(64),
                "b".repeat(62)
            ),
        )
        .unwrap();
        let entry = Entry {
            seq: 3,
            time: "2026-11-24T03:00:00Z".parse().unwrap(),
            action: "verify".into(),
            outcome: "ok".into(),
            details: String::new(),
            user: None,
            host: None,
            prev: "a".repeat(64),
            hash: "c".repeat(64),
            extra: Default::default(),
        };
        append_line(&path, &entry).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().last().unwrap(), line(&entry).trim_end());
        assert_eq!(newest_in(&text), Some("c".repeat(64)));
    }

    #[test]
    fn the_head_file_check_names_the_file_before_and_after_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.heads");
        let before = check_file(&path).unwrap();
        assert!(
            before.starts_with(&format!("{} does not exist yet", path.display()))
                && before.contains("the next audit entry creates it"),
            "{before}"
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            check_file(&path).unwrap(),
            format!("{} is writable", path.display())
        );
    }

    #[test]
    fn credentials_never_leave_in_messages() {
        let r = redact("https://user:s3cret@evidence.example.com/t0ken/head?x=1");
        assert!(
            !r.contains("s3cret")
                && !r.contains("user")
                && !r.contains("x=1")
                && !r.contains("t0ken"),
            "{r}"
        );
        assert_eq!(r, "https://evidence.example.com/…");
    }
}
