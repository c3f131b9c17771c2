//! Physical base backups: `pg_basebackup -Ft -D -` streamed into the repository as one tar,
//! read in flight for its `backup_label` and `backup_manifest` (start/stop LSN, timeline).
//!
//! When the cluster archives its WAL, the backup carries no WAL (`-X none`) and PostgreSQL
//! returns only once the WAL the backup needs is archived, so the archive completes it.
//! Otherwise the WAL is fetched into the tar (`-X fetch`) and the backup stands alone.

use serde::{Deserialize, Serialize};

use super::{
    conn::PgConn,
    stream::{ChannelReader, ChildStream, OutputStream},
};
use crate::{
    error::{Error, Result},
    wal::Lsn,
};

/// What a physical backup records about the cluster (stored with the snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalMeta {
    /// Timeline at backup start.
    pub timeline: u32,
    /// WAL position where the backup starts (recovery begins here).
    pub start_lsn: Lsn,
    /// WAL position where the backup ends (recovery must reach it to be consistent).
    pub stop_lsn: Lsn,
    /// `pg_control_system().system_identifier`: which cluster this is.
    pub system_identifier: String,
    /// WAL segment size of the cluster.
    pub wal_segment_size: u64,
    /// Whether the WAL from start to stop is inside the tar (`-X fetch`).
    pub wal_included: bool,
    /// The backup label file as PostgreSQL wrote it.
    pub backup_label: String,
    /// Files in the tar.
    pub files: u64,
    /// The server's `config_file`, when the backup role could read it: a restore names it
    /// when the file lived outside the data directory and the backup holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// What the server's configuration files set (`name`, value with its unit), read at
    /// backup time: when they lay outside the data directory, the base backup holds none
    /// of them, and a restore carries these into the configuration it writes. Settings
    /// that hold connection strings or commands (and so possibly passwords) are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<(String, String)>,
    /// Of postgresql.conf, pg_hba.conf and pg_ident.conf, those the base backup does not
    /// hold (the cluster keeps them elsewhere, as Debian's packages do): the runbook says
    /// to keep copies. Empty for a backup that holds all three, or recorded none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_not_held: Vec<String>,
    /// The cluster's bootstrap superuser (the role `initdb` made, OID 10; `initdb -U dba`,
    /// a container's `POSTGRES_USER`): the role a restored copy can surely be reached as.
    /// `None` in backups taken before lifeboat recorded it: then `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser: Option<String>,
    /// The database the backup connected to, which the restored copy therefore has (a
    /// cluster need not keep one called `postgres`). `None` as for [`Self::superuser`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

impl PhysicalMeta {
    /// The role lifeboat connects to a restored copy as.
    #[must_use]
    pub fn login_role(&self) -> &str {
        self.superuser.as_deref().unwrap_or("postgres")
    }

    /// The database lifeboat connects to in a restored copy.
    #[must_use]
    pub fn login_database(&self) -> &str {
        self.database.as_deref().unwrap_or("postgres")
    }
}

/// The configuration files a data directory holds unless the cluster keeps them elsewhere.
pub const CONFIG_FILES: [&str; 3] = ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"];

/// What the in-flight reader learns from the tar.
#[derive(Debug, Clone, Default)]
pub struct TarFacts {
    /// Content of `backup_label`.
    pub backup_label: Option<String>,
    /// `(timeline, start, end)` from the manifest's `WAL-Ranges`.
    pub wal_range: Option<(u32, Lsn, Lsn)>,
    /// Regular files seen.
    pub files: u64,
    /// Which of [`CONFIG_FILES`] the tar holds at its top.
    pub config_held: Vec<String>,
}

/// Reads a tar stream to its end, keeping what lifeboat records.
///
/// # Errors
///
/// A description when the stream is not a complete tar.
pub fn inspect_tar(input: impl std::io::Read) -> std::result::Result<TarFacts, String> {
    let mut archive = tar::Archive::new(input);
    let mut facts = TarFacts::default();
    let mut saw_manifest = false;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("damaged tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type().is_file() {
            facts.files += 1;
        }
        match path.trim_start_matches("./") {
            "backup_label" => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).map_err(|e| e.to_string())?;
                facts.backup_label = Some(s);
            }
            name if CONFIG_FILES.contains(&name) => facts.config_held.push(name.to_string()),
            "backup_manifest" => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).map_err(|e| e.to_string())?;
                facts.wal_range = manifest_wal_range(&s);
                saw_manifest = true;
            }
            _ => {}
        }
    }
    // the tar crate stops quietly at a truncated end: the label and manifest are the
    // first and last members, so both must have been seen
    if facts.backup_label.is_none() {
        return Err("no backup_label in the base backup".into());
    }
    if !saw_manifest {
        return Err("the base backup ended before its backup_manifest".into());
    }
    Ok(facts)
}

fn manifest_wal_range(text: &str) -> Option<(u32, Lsn, Lsn)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let ranges = v.get("WAL-Ranges")?.as_array()?;
    let first = ranges.first()?;
    let last = ranges.last()?;
    Some((
        u32::try_from(last.get("Timeline")?.as_u64()?).ok()?,
        Lsn::parse(first.get("Start-LSN")?.as_str()?).ok()?,
        Lsn::parse(last.get("End-LSN")?.as_str()?).ok()?,
    ))
}

/// Parses `START TIMELINE: n` and `START WAL LOCATION: X/Y` from a backup label.
#[must_use]
pub fn label_start(label: &str) -> Option<(u32, Lsn)> {
    let mut tli = None;
    let mut lsn = None;
    for line in label.lines() {
        if let Some(v) = line.strip_prefix("START TIMELINE:") {
            tli = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("START WAL LOCATION:") {
            lsn = v.split_whitespace().next().and_then(|l| Lsn::parse(l).ok());
        }
    }
    Some((tli?, lsn?))
}

/// Facts about the cluster gathered before the backup starts.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    /// `server_version_num`.
    pub server_version_num: u32,
    /// System identifier.
    pub system_identifier: String,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Whether WAL archiving is on.
    pub archiving: bool,
    /// `archive_mode` (`on`, `always` or `off`): a standby archives only with `always`.
    pub archive_mode: String,
    /// Whether the server is a standby (in recovery): its base backup does not wait for
    /// the WAL it needs to be archived.
    pub standby: bool,
    /// `config_file`, when the role may read it.
    pub config_file: Option<String>,
    /// See [`PhysicalMeta::settings`].
    pub settings: Vec<(String, String)>,
    /// See [`PhysicalMeta::superuser`].
    pub superuser: Option<String>,
    /// See [`PhysicalMeta::database`].
    pub database: String,
}

/// A setting that may hold a password (a connection string, a command's arguments, a
/// salt or key), or one an extension defines (`pglogical.extra_connection_options`,
/// `anon.salt`): what those hold is not known, so none is kept.
fn may_hold_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains('.')
        || [
            "conninfo",
            "command",
            "passphrase",
            "password",
            "secret",
            "token",
            "salt",
            "credential",
            "connection",
        ]
        .iter()
        .any(|w| name.contains(w))
}

/// What the configuration files of the server `conn` reaches set (see
/// [`PhysicalMeta::settings`]); empty when they cannot be read. Read whether or not the
/// files lie in the data directory: a cluster may keep them there and still lose them (a
/// deploy that rewrites them, an include outside), and a restore uses the list only when
/// the backup lacks postgresql.conf.
fn config_settings(conn: &PgConn, db: &str) -> Vec<(String, String)> {
    conn.query(
        db,
        "select name, current_setting(name) from pg_settings \
         where source = 'configuration file' order by name",
    )
    .map(|rows| {
        rows.lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(name, _)| !may_hold_secret(name))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    })
    .unwrap_or_default()
}

/// Connects and checks that a base backup can be taken.
///
/// # Errors
///
/// A connection error, or [`crate::ErrorKind::Config`] for user tablespaces (a tar on
/// stdout holds one tablespace only) or a role without replication rights.
pub fn cluster_facts(conn: &PgConn, db: &str) -> Result<ClusterFacts> {
    let row = conn.query(
        db,
        "select current_setting('server_version_num'), (select system_identifier from pg_control_system()), \
         current_setting('wal_segment_size'), current_setting('archive_mode'), \
         (select count(*) from pg_tablespace where spcname not in ('pg_default', 'pg_global')), \
         (select rolreplication or rolsuper from pg_roles where rolname = current_user), \
         (select setting from pg_settings where name = 'config_file'), pg_is_in_recovery(), \
         (select rolname from pg_roles where oid = 10), current_database()",
    )?;
    // (the database's name last: a '|' in it stays in it)
    let f: Vec<&str> = row.trim().splitn(10, '|').collect();
    if f.len() != 10 {
        return Err(Error::postgres(format!(
            "unexpected answer {row:?} about the cluster"
        )));
    }
    if f[4] != "0" {
        return Err(tablespaces_refused(f[4]));
    }
    if f[5] != "t" {
        return Err(Error::config(
            "the source's role may not take base backups (no REPLICATION attribute)",
        )
        .hint(
            "ALTER ROLE … REPLICATION, and allow it in pg_hba.conf for `replication` connections",
        ));
    }
    let config_file = Some(f[6].to_string()).filter(|f| !f.is_empty());
    Ok(ClusterFacts {
        settings: config_settings(conn, db),
        config_file,
        server_version_num: f[0].parse().unwrap_or(0),
        system_identifier: f[1].to_string(),
        wal_segment_size: parse_size(f[2]).unwrap_or(crate::wal::DEFAULT_SEGMENT_SIZE),
        archiving: f[3] != "off",
        archive_mode: f[3].to_string(),
        standby: f[7] == "t",
        superuser: Some(f[8].to_string()).filter(|r| !r.is_empty()),
        database: f[9].to_string(),
    })
}

/// The refusal of a cluster with `count` user tablespaces.
fn tablespaces_refused(count: &str) -> Error {
    Error::config(format!(
        "the cluster has {count} tablespace(s) besides pg_default and pg_global; lifeboat's physical backup covers the main data directory only"
    ))
    .hint("move the objects to pg_default, or back these databases up logically (--kind logical)")
}

/// Refuses a base backup during which a tablespace was created: recovery from it would
/// have to replay the creation, which a restore's recovery ends before (see
/// [`crate::wal::cut_at_tablespace`]), so it could never be restored.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] as at the start; a connection error.
pub fn no_tablespaces_now(conn: &PgConn, db: &str) -> Result<()> {
    let n = conn.query(
        db,
        "select count(*) from pg_tablespace where spcname not in ('pg_default', 'pg_global')",
    )?;
    match n.trim() {
        "0" => Ok(()),
        n => Err(tablespaces_refused(n).with_note(
            "it was created while the backup ran, which could never be restored: no snapshot was kept",
        )),
    }
}

pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "" | "B" => n,
        "kB" => n << 10,
        "MB" => n << 20,
        "GB" => n << 30,
        _ => return None,
    })
}

fn inspect(r: ChannelReader) -> std::result::Result<TarFacts, String> {
    inspect_tar(r)
}

/// A running `pg_basebackup`.
pub struct BaseBackup {
    inner: ChildStream<TarFacts>,
    /// Whether WAL is fetched into the tar.
    pub wal_included: bool,
    watchdog: Option<Watchdog>,
    /// Taken from a standby: the WAL it waits for is closed by the primary.
    standby: bool,
}

/// What a backup stopped by the watchdog says: its WAL never reached the archive.
pub(crate) const WAITED_FOR_ARCHIVING: &str = "for the WAL this backup needs to be archived";

/// Watches a base backup that waits for WAL archiving: PostgreSQL waits for ever when the
/// archive_command fails, so past the timeout the backup is stopped with the reason. It
/// also says when the backup waits for a spread checkpoint, which can take minutes.
struct Watchdog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    verdict: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(
        conn: PgConn,
        db: String,
        pid: u32,
        timeout: std::time::Duration,
        checkpoint: crate::config::Checkpoint,
    ) -> Self {
        use std::sync::{atomic::Ordering, Arc, Mutex};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let verdict = Arc::new(Mutex::new(None));
        let (stop2, verdict2) = (Arc::clone(&stop), Arc::clone(&verdict));
        let handle = std::thread::spawn(move || {
            let mut waiting_since: Option<std::time::Instant> = None;
            // said while PostgreSQL waits: a bar whose rate falls to nothing reads as hung
            let mut doing: Option<crate::status::Doing> = None;
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Ok(row) = conn.query(
                    &db,
                    "select coalesce((select phase from pg_stat_progress_basebackup limit 1), ''), \
                     coalesce(last_failed_wal, ''), coalesce(last_failed_time::text, ''), failed_count \
                     from pg_stat_archiver",
                ) else {
                    continue;
                };
                let f: Vec<&str> = row.trim().split('|').collect();
                let phase = f
                    .first()
                    .map(|p| p.to_ascii_lowercase())
                    .unwrap_or_default();
                if checkpoint == crate::config::Checkpoint::Spread
                    && phase.starts_with("waiting for checkpoint")
                {
                    if doing.is_none() {
                        doing = Some(crate::status::doing(
                            "spread checkpoint (checkpoint = \"fast\" starts at once)",
                        ));
                    }
                    continue;
                }
                // PostgreSQL 15 reports "waiting for wal archiving to finish"
                if !phase.starts_with("waiting for wal archiving") {
                    waiting_since = None;
                    doing = None;
                    continue;
                }
                let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
                let words = format!(
                    "waiting for PostgreSQL to archive the WAL this backup needs ({}s of {}s{})",
                    since.elapsed().as_secs(),
                    timeout.as_secs(),
                    match f.get(3).and_then(|n| n.trim().parse::<u64>().ok()) {
                        Some(n) if n > 0 && f.get(1).is_some_and(|w| !w.is_empty()) =>
                            format!("; pg_stat_archiver counts {n} failures"),
                        _ => String::new(),
                    }
                );
                match &doing {
                    Some(d) => d.say(words),
                    None => doing = Some(crate::status::doing(words)),
                }
                if since.elapsed() >= timeout {
                    let why = if f.get(1).is_some_and(|w| !w.is_empty()) {
                        format!(
                            "PostgreSQL waited {}s {WAITED_FOR_ARCHIVING}; archive_command keeps failing (last failed: {} at {}, {} failures)",
                            timeout.as_secs(),
                            f[1],
                            f.get(2).unwrap_or(&"?"),
                            f.get(3).unwrap_or(&"?")
                        )
                    } else {
                        format!(
                            "PostgreSQL waited {}s {WAITED_FOR_ARCHIVING}, and archiving did not catch up",
                            timeout.as_secs()
                        )
                    };
                    if let Ok(mut v) = verdict2.lock() {
                        *v = Some(why);
                    }
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                    return;
                }
            }
        });
        Self {
            stop,
            verdict,
            handle: Some(handle),
        }
    }

    /// Stops watching; returns why the backup was stopped, if it was.
    fn finish(mut self) -> Option<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.verdict.lock().ok().and_then(|mut v| v.take())
    }
}

/// How hard a base backup may press on the server: its start checkpoint and read rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pace {
    /// The checkpoint it starts with.
    pub checkpoint: crate::config::Checkpoint,
    /// Most kilobytes per second it reads (none: no limit).
    pub max_rate_kb: Option<u32>,
}

/// pg_basebackup's arguments for a tar stream on stdout; `archiving` says whether the
/// cluster's WAL archive completes the backup (else the WAL is fetched into the stream).
fn basebackup_args(archiving: bool, label: &str, pace: Pace) -> Vec<String> {
    let mut args = vec![
        "--pgdata=-".to_string(),
        "--format=tar".to_string(),
        format!("--checkpoint={}", pace.checkpoint.as_str()),
        "--no-password".to_string(),
        "--verbose".to_string(),
        "--label".to_string(),
        label.to_string(),
        (if archiving {
            "--wal-method=none"
        } else {
            "--wal-method=fetch"
        })
        .to_string(),
    ];
    if let Some(kb) = pace.max_rate_kb {
        args.push(format!("--max-rate={kb}k"));
    }
    args
}

impl BaseBackup {
    /// Starts `pg_basebackup` on `conn` at `pace`; `archiving` says whether the cluster's
    /// WAL archive completes the backup.
    ///
    /// # Errors
    ///
    /// When pg_basebackup cannot be started.
    pub fn start(
        conn: &PgConn,
        db: &str,
        (archiving, standby): (bool, bool),
        label: &str,
        pace: Pace,
        archive_timeout: std::time::Duration,
    ) -> Result<Self> {
        let mut cmd = conn.command("pg_basebackup", db);
        cmd.args(basebackup_args(archiving, label, pace));
        let inner = ChildStream::spawn(
            cmd,
            "pg_basebackup",
            "pg_basebackup".to_string(),
            Some(inspect),
        )?;
        let watchdog =
            (archiving || pace.checkpoint == crate::config::Checkpoint::Spread).then(|| {
                Watchdog::start(
                    conn.clone(),
                    db.to_string(),
                    inner.pid(),
                    archive_timeout,
                    pace.checkpoint,
                )
            });
        Ok(Self {
            inner,
            wal_included: !archiving,
            watchdog,
            standby,
        })
    }

    /// Takes the stream for the archiver (once).
    pub fn take_stream(&mut self) -> Option<OutputStream> {
        self.inner.take_stream()
    }

    /// Waits for pg_basebackup and checks the tar; returns (bytes, stream hash, facts).
    ///
    /// # Errors
    ///
    /// As [`ChildStream::finish`], or [`crate::ErrorKind::Integrity`] when the label or the
    /// manifest's WAL range is missing.
    pub fn finish(mut self) -> Result<(u64, String, TarFacts)> {
        let out = self.inner.finish();
        if let Some(why) = self.watchdog.take().and_then(Watchdog::finish) {
            return Err(Error::postgres(why).hint(if self.standby {
                // its archiver may be fine: the segment is not closed until the primary
                // switches, and not here until it is replicated
                "the server is a standby: the segment this backup ends in closes when the primary switches to the next one, which its archive_timeout paces (set it shorter than the source's archive_timeout), and reaches the standby only while it streams (pg_stat_wal_receiver); else check the archive_command of whichever server archives (pg_stat_archiver, its log); no snapshot was kept"
            } else {
                "check archive_command (`lifeboat wal-push` must run as the PostgreSQL user and reach the repository), pg_stat_archiver and the server log; raise archive_timeout for a slow archive; no snapshot was kept"
            }));
        }
        let out = out?;
        let facts = out
            .inspected
            .ok_or_else(|| Error::internal("the base backup was not inspected"))?;
        if facts.wal_range.is_none() {
            return Err(Error::integrity(
                "the base backup's manifest names no WAL range",
            ));
        }
        Ok((out.bytes, out.stream_hash, facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_may_hold_a_password_are_not_kept() {
        for name in [
            "primary_conninfo",
            "archive_command",
            "restore_command",
            "ssl_passphrase_command",
            "pglogical.extra_connection_options",
            "anon.salt",
            "My.Password",
        ] {
            assert!(may_hold_secret(name), "{name}");
        }
        for name in [
            "port",
            "shared_buffers",
            "shared_preload_libraries",
            "ssl_cert_file",
        ] {
            assert!(!may_hold_secret(name), "{name}");
        }
    }

    #[test]
    fn pace_reaches_pg_basebackup() {
        let fast = basebackup_args(true, "l", Pace::default());
        assert!(fast.contains(&"--checkpoint=fast".to_string()), "{fast:?}");
        assert!(
            !fast.iter().any(|a| a.starts_with("--max-rate")),
            "{fast:?}"
        );
        let gentle = basebackup_args(
            false,
            "l",
            Pace {
                checkpoint: crate::config::Checkpoint::Spread,
                max_rate_kb: Some(51_200),
            },
        );
        assert!(
            gentle.contains(&"--checkpoint=spread".to_string()),
            "{gentle:?}"
        );
        assert!(
            gentle.contains(&"--max-rate=51200k".to_string()),
            "{gentle:?}"
        );
        assert!(
            gentle.contains(&"--wal-method=fetch".to_string()),
            "{gentle:?}"
        );
    }

    #[test]
    fn reads_label_and_manifest() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n";
        assert_eq!(label_start(label), Some((1, Lsn(0x200_0028))));
        let m = r#"{"PostgreSQL-Backup-Manifest-Version": 1, "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100"}]}"#;
        assert_eq!(
            manifest_wal_range(m),
            Some((1, Lsn(0x200_0028), Lsn(0x200_0100)))
        );
        assert_eq!(parse_size("16MB"), Some(16 << 20));
    }

    #[test]
    fn a_truncated_tar_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_cksum();
        b.append_data(&mut h, "backup_label", &b"START"[..])
            .expect("append");
        let full = b.into_inner().expect("tar");
        assert!(inspect_tar(&full[..])
            .unwrap_err()
            .contains("backup_manifest"));
        assert!(inspect_tar(&full[..100]).is_err());
    }
}
