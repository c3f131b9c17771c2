//! What PostgreSQL's archiver says about itself: `pg_stat_archiver` and the `.ready` files
//! waiting in `pg_wal/archive_status`. The repository shows what was archived; only the
//! server shows what was not — an archive_command failing right now, and how many segments
//! pile up in `pg_wal` (and towards a full disk) meanwhile.

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    error::{Error, Result},
    sources::postgres::conn::PgConn,
};

/// The archiver of a running server.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ArchiverState {
    /// `archive_mode` (`off`, `on`, `always`).
    pub archive_mode: String,
    /// Files archived since the statistics were reset.
    pub archived_count: u64,
    /// The newest file archive_command succeeded for.
    pub last_archived_wal: Option<String>,
    /// When.
    pub last_archived_at: Option<Timestamp>,
    /// Failed attempts since the statistics were reset.
    pub failed_count: u64,
    /// The file of the newest failed attempt.
    pub last_failed_wal: Option<String>,
    /// When.
    pub last_failed_at: Option<Timestamp>,
    /// WAL files waiting to be archived (`.ready`); `None` when this role may not list
    /// them (`pg_ls_archive_statusdir` needs `pg_monitor` or superuser).
    pub waiting: Option<u64>,
    /// When the oldest of the [`Self::waiting`] files was completed (its `.ready` mark's
    /// time): what it holds, and all WAL after it, is in no archive yet, so the live RPO is
    /// at least the time since then, however recent the last push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_waiting_since: Option<Timestamp>,
    /// How long the oldest of them has waited, by the server's own clock (a `wal status`
    /// on another host must not judge by its clock's skew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_waiting_secs: Option<u64>,
    /// The archiver's latest attempt failed: archive_command is failing now.
    pub failing: bool,
    /// The timeline the server writes WAL on now; `None` on a standby (in recovery).
    pub timeline: Option<u32>,
    /// The server's own tablespaces (`name (location)`): a base backup refuses a cluster
    /// with one, so each was created after the newest base backup, and recovery from it
    /// ends at that creation (see [`crate::wal::cut_at_tablespace`]).
    pub tablespaces: Vec<String>,
}

/// An empty field is no time; one that does not parse is an error, not a hidden failure.
fn timestamp(field: &str) -> Result<Option<Timestamp>> {
    if field.is_empty() {
        return Ok(None);
    }
    field.parse().map(Some).map_err(|e| {
        Error::postgres(format!(
            "unexpected time {field:?} in pg_stat_archiver: {e}"
        ))
    })
}

fn text(field: &str) -> Option<String> {
    (!field.is_empty()).then(|| field.to_string())
}

/// Reads the archiver's state through `conn` (database `db`).
///
/// # Errors
///
/// A connection error, or [`crate::ErrorKind::Postgres`] for an answer it cannot read.
pub fn archiver_state(conn: &PgConn, db: &str) -> Result<ArchiverState> {
    const UTC: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;
    let row = conn.query(
        db,
        &format!(
            "select current_setting('archive_mode'), archived_count, \
             coalesce(last_archived_wal, ''), \
             coalesce(to_char(last_archived_time at time zone 'UTC', {UTC}), ''), \
             failed_count, coalesce(last_failed_wal, ''), \
             coalesce(to_char(last_failed_time at time zone 'UTC', {UTC}), ''), \
             case when pg_is_in_recovery() then '' \
             else pg_walfile_name(pg_current_wal_lsn()) end \
             from pg_stat_archiver"
        ),
    )?;
    let f: Vec<&str> = row.trim().split('|').collect();
    let [mode, archived, last_ok, last_ok_at, failed, last_bad, last_bad_at, current] = f[..]
    else {
        return Err(Error::postgres(format!(
            "unexpected answer from pg_stat_archiver: {row:?}"
        )));
    };
    let count = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| Error::postgres(format!("unexpected count {s:?} in pg_stat_archiver")))
    };
    // only a role with pg_monitor may list archive_status: without it, say nothing
    // asked first, in a query of its own (the executor checks a function's privilege even
    // in a branch never taken), so that a role without it leaves no ERROR in the server's log
    let may_list = conn
        .query(
            db,
            "select has_function_privilege('pg_ls_archive_statusdir()', 'execute')",
        )
        .is_ok_and(|t| t.trim() == "t");
    let listed = may_list
        .then(|| {
            conn.query(
                db,
                "select count(*), coalesce(to_char(min(modification) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''), \
                 coalesce(floor(extract(epoch from now() - min(modification)))::bigint::text, '') \
                 from pg_ls_archive_statusdir() where name like '%.ready'",
            )
            .ok()
        })
        .flatten();
    let (waiting, oldest_waiting_since, oldest_waiting_secs) =
        listed.as_deref().map_or((None, None, None), |row| {
            let mut f = row.trim().split('|');
            let mut next = || f.next().unwrap_or_default();
            let (n, oldest, age) = (next(), next(), next());
            (n.parse().ok(), oldest.parse().ok(), age.parse::<i64>().ok())
        });
    let oldest_waiting_secs = oldest_waiting_secs.map(|s| s.max(0).unsigned_abs());
    // a question of its own: a server that cannot answer it still reports its archiver
    let tablespaces = conn
        .query(
            db,
            "select spcname || ' (' || pg_tablespace_location(oid) || ')' from pg_tablespace \
             where spcname not in ('pg_default', 'pg_global') order by oid",
        )
        .map(|t| {
            t.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let last_archived_at = timestamp(last_ok_at)?;
    let last_failed_at = timestamp(last_bad_at)?;
    Ok(ArchiverState {
        archive_mode: mode.to_string(),
        archived_count: count(archived)?,
        last_archived_wal: text(last_ok),
        // statistics outlive a restart: with archiving off, an old failure is history
        failing: mode != "off" && is_failing(last_archived_at, last_failed_at),
        last_archived_at,
        failed_count: count(failed)?,
        last_failed_wal: text(last_bad),
        last_failed_at,
        waiting,
        oldest_waiting_since,
        oldest_waiting_secs,
        // the first eight hex digits of a WAL file's name are its timeline
        timeline: current
            .get(..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok()),
        tablespaces,
    })
}

/// How long a completed segment may wait in `pg_wal` before the archiver counts as
/// stalled: an archiver that keeps up takes each segment within seconds.
pub const STALLED_AFTER_SECS: u64 = 300;

/// How long a segment may wait before the archiver of a source with `objectives` counts
/// as stalled: [`STALLED_AFTER_SECS`], or the RPO objective when that is shorter.
#[must_use]
pub fn stall_bound(objectives: &crate::config::Objectives) -> u64 {
    objectives
        .rpo
        .as_deref()
        .and_then(|r| crate::config::parse_duration(r).ok())
        .map_or(STALLED_AFTER_SECS, |r| r.min(STALLED_AFTER_SECS))
}

impl ArchiverState {
    /// How long the oldest waiting segment has waited, when that is over `bound_secs` and
    /// no failure is recorded now: an `archive_command` that cannot be found or run (exit
    /// 126 or 127, `sh: lifeboat: not found`) stops the archiver process with FATAL and
    /// counts no failure in `pg_stat_archiver`, so only the waiting segments show that
    /// nothing is archived. `None` on a server that archives nothing itself (archive_mode
    /// off, a standby without `always`), or without the right to list `archive_status`.
    #[must_use]
    pub fn stalled_secs(&self, now: Timestamp, bound_secs: u64) -> Option<u64> {
        let archives =
            self.archive_mode == "always" || (self.archive_mode == "on" && self.timeline.is_some());
        if !archives || self.failing || self.waiting.is_none_or(|n| n == 0) {
            return None;
        }
        // the server's own count first; this host's clock only for an older answer
        let waited = self.oldest_waiting_secs.or_else(|| {
            self.oldest_waiting_since
                .map(|t| now.duration_since(t).as_secs().max(0).unsigned_abs())
        })?;
        (waited > bound_secs).then_some(waited)
    }
}

/// The latest attempt failed: a failure newer than the newest success (or no success).
fn is_failing(ok_at: Option<Timestamp>, failed_at: Option<Timestamp>) -> bool {
    match (ok_at, failed_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(ok), Some(bad)) => bad > ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_waiting_long_without_a_failure_are_a_stalled_archiver() {
        let now: Timestamp = "2026-12-08T01:00:00Z".parse().unwrap();
        let mut a = ArchiverState {
            archive_mode: "on".into(),
            archived_count: 3,
            last_archived_wal: None,
            last_archived_at: None,
            failed_count: 0,
            last_failed_wal: None,
            last_failed_at: None,
            waiting: Some(2),
            oldest_waiting_since: Some("2026-12-08T00:54:00Z".parse().unwrap()),
            oldest_waiting_secs: None,
            failing: false,
            timeline: Some(1),
            tablespaces: Vec::new(),
        };
        assert_eq!(a.stalled_secs(now, STALLED_AFTER_SECS), Some(360));
        // within the bound it keeps up
        assert_eq!(a.stalled_secs(now, 600), None);
        // a failing command is said as failing, a standby archives nothing itself
        a.failing = true;
        assert_eq!(a.stalled_secs(now, 60), None);
        a.failing = false;
        a.timeline = None;
        assert_eq!(a.stalled_secs(now, 60), None);
        a.archive_mode = "always".into();
        assert_eq!(a.stalled_secs(now, 60), Some(360));
        // the server's own count wins over this host's clock
        a.oldest_waiting_secs = Some(30);
        assert_eq!(a.stalled_secs(now, 60), None);
        a.oldest_waiting_secs = Some(90);
        assert_eq!(a.stalled_secs(now, 60), Some(90));
        a.waiting = Some(0);
        assert_eq!(a.stalled_secs(now, 60), None);
    }

    #[test]
    fn only_a_failure_after_the_last_success_is_failing() {
        let t = |s: &str| Some(s.parse::<Timestamp>().expect("time"));
        assert!(!is_failing(None, None));
        assert!(!is_failing(t("2026-12-05T10:00:00Z"), None));
        assert!(is_failing(None, t("2026-12-05T10:00:00Z")));
        assert!(is_failing(
            t("2026-12-05T10:00:00Z"),
            t("2026-12-05T10:00:01Z")
        ));
        // a transient failure, then success: archiving works again
        assert!(!is_failing(
            t("2026-12-05T10:00:02Z"),
            t("2026-12-05T10:00:01Z")
        ));
    }

    #[test]
    fn timestamps_as_the_query_formats_them() {
        assert_eq!(
            timestamp("2026-12-05T16:04:04.123456Z")
                .expect("parses")
                .map(|t| t.as_microsecond()),
            Some(
                "2026-12-05T16:04:04.123456Z"
                    .parse::<Timestamp>()
                    .expect("time")
                    .as_microsecond()
            )
        );
        assert_eq!(timestamp("").expect("empty"), None);
        assert!(timestamp("yesterday").is_err());
    }
}
