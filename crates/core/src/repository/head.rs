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
#[derive(Debug, Serialize)]
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

/// The newest head in a head file: the hash on its last line (a file holding just a hash,
/// as older versions wrote, works too).
#[must_use]
pub fn newest_in(text: &str) -> Option<String> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    last.split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string)
}

/// Appends `entry`'s line to `path`, durably.
///
/// # Errors
///
/// When the file cannot be opened, written or synced.
pub fn append_line(path: &Path, entry: &Entry) -> Result<()> {
    let what = || format!("appending the audit head to {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(what(), e))?;
    f.write_all(line(entry).as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io(what(), e))
}

/// Sends `entry`'s head to every configured place.
///
/// # Errors
///
/// [`crate::ErrorKind::Unavailable`] naming the place that failed (a URL without its
/// credentials).
pub fn publish(cfg: &AuditConfig, repository: &str, entry: &Entry) -> Result<()> {
    if let Some(path) = &cfg.head_file {
        append_line(path, entry)?;
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
        post(url, body).map_err(|e| {
            Error::unavailable(format!(
                "the audit head could not be sent to {}: {e}",
                redact(url)
            ))
            .hint("check [audit] head_url and that the service is up; the entry itself is in the repository")
        })?;
    }
    Ok(())
}

fn post(url: &str, body: String) -> std::result::Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            // reqwest's errors name the URL, credentials included
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    })
}

/// `url` without user name, password and query.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            // a token may ride in the query
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "the configured URL".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_head_is_the_last_line() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let text = format!(
            "1 {a} 2026-11-24T01:00:00Z backup ok\n2 {b} 2026-11-24T02:00:00Z drill ok\n\n"
        );
        assert_eq!(newest_in(&text), Some(b.clone()));
        assert_eq!(newest_in(&format!("{a}\n")), Some(a));
        assert_eq!(newest_in("nothing here\n"), None);
    }

    #[test]
    fn credentials_never_leave_in_messages() {
        let r = redact("https://user:s3cret@evidence.example.com/head?x=1");
        assert!(
            !r.contains("s3cret") && !r.contains("user") && !r.contains("x=1"),
            "{r}"
        );
        assert!(r.contains("evidence.example.com/head"), "{r}");
    }
}
