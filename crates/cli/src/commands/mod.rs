//! One module per command: each parses its flags into lifeboat-core options, calls the
//! operation and shows the report.

pub mod audit;
pub mod backup;
pub mod config;
pub mod demo;
pub mod drill;
pub mod each;
pub mod init;
pub mod list;
pub mod repair;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod verify;
pub mod wal;
pub mod wal_inspect;

/// Parses a time given on the command line: RFC 3339 (`2026-11-23T02:00:00Z`), or a local
/// date and time (`2026-11-23 02:00`, `2026-11-23`). A bare date means the start of that day
/// (for `--since`, `--from`, `restore --before`).
pub fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    parse_time_here(s, DayEdge::Start)
}

/// Like [`parse_time`], and also a time ago (`1d`, `12h`, `30m`, `2w`, `1mo`, `90 days
/// ago`): for the start of a window to look at (`--since`, `--from`). Not for restore
/// targets, where "an hour ago" means a different moment each time the command is run.
pub fn parse_since(s: &str) -> Result<jiff::Timestamp, String> {
    ago(s).unwrap_or_else(|| parse_time(s).map_err(with_ago_forms))
}

/// Like [`parse_time_end`], and also a time ago as [`parse_since`] reads it (`--until 1d`:
/// up to a day ago).
pub fn parse_until(s: &str) -> Result<jiff::Timestamp, String> {
    ago(s).unwrap_or_else(|| parse_time_end(s).map_err(with_ago_forms))
}

/// `s` read as a span back from now (`1d` and `1d ago` alike), or `None` when it is no
/// span. Days, weeks and months count in this machine's time zone, so `1d` across a
/// clock change is the same time of day yesterday.
fn ago(s: &str) -> Option<Result<jiff::Timestamp, String>> {
    let span = s.trim().parse::<jiff::Span>().ok()?;
    // `+2m` reads as "in two minutes", `-1d` as either: a window bound is a time ago
    if s.trim().starts_with(['+', '-']) {
        return Some(Err(format!(
            "{s:?} has a sign: give a time ago without one (1d, 12h, 30m, \"2 weeks ago\")"
        )));
    }
    let now = jiff::Zoned::now().with_time_zone(local_zone().unwrap_or(jiff::tz::TimeZone::UTC));
    Some(
        now.checked_sub(span.abs())
            .map(|z| z.timestamp())
            .map_err(|e| format!("{s:?} reaches back too far: {e}")),
    )
}

/// A time error for a window bound, which also takes a time ago.
fn with_ago_forms(e: String) -> String {
    if e.contains(" is not a time: ") {
        format!("{e}, or a time ago: 1d, 12h, 30m, 2w, 1mo, \"90 days ago\"")
    } else {
        e
    }
}

/// [`parse_time_in`] this machine's time zone, which a time that names its own zone or
/// offset does not need (and a broken `TZ` then does not stop).
fn parse_time_here(s: &str, edge: DayEdge) -> Result<jiff::Timestamp, String> {
    match local_zone() {
        Ok(tz) => parse_time_in(s, &tz, edge),
        Err(e) => match read_in_two_zones(s, edge) {
            (Ok(a), Ok(b)) if a == b => Ok(a),
            _ => Err(e),
        },
    }
}

/// `s` read in UTC and at +05:00: the same instant when `s` names its own zone or offset.
fn read_in_two_zones(
    s: &str,
    edge: DayEdge,
) -> (
    Result<jiff::Timestamp, String>,
    Result<jiff::Timestamp, String>,
) {
    (
        parse_time_in(s, &jiff::tz::TimeZone::UTC, edge),
        parse_time_in(s, &jiff::tz::TimeZone::fixed(jiff::tz::offset(5)), edge),
    )
}

/// This machine's time zone. A `TZ` that names no zone is an error, not UTC: a time read
/// in the wrong zone restores the wrong hour.
fn local_zone() -> Result<jiff::tz::TimeZone, String> {
    match std::env::var("TZ") {
        Ok(v) if !v.is_empty() => jiff::tz::TimeZone::try_system().map_err(|e| {
            format!(
                "TZ={v:?} is not a time zone this machine knows ({e}): fix TZ (e.g. TZ=Europe/Berlin), or give the time with its offset (2026-11-23T02:00:00+01:00) or in UTC"
            )
        }),
        _ => Ok(jiff::tz::TimeZone::system()),
    }
}

/// `dt` in `tz`, refusing a local time that the zone skips (clocks going forward) or has
/// twice (clocks going back), with the readings there are: guessing one of two hours
/// restores the wrong one without a word.
fn zoned(
    dt: jiff::civil::DateTime,
    tz: &jiff::tz::TimeZone,
    given: &str,
) -> Result<jiff::Timestamp, String> {
    use jiff::tz::AmbiguousOffset;
    let zone = tz.iana_name().unwrap_or("this machine's time zone");
    let reading = |o: jiff::tz::Offset| {
        o.to_timestamp(dt)
            .map(|t| format!("\"{} {o}\" ({t})", dt.strftime("%Y-%m-%d %H:%M:%S%.f")))
            .unwrap_or_default()
    };
    match tz.to_ambiguous_zoned(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => {
            offset.to_timestamp(dt).map_err(|e| e.to_string())
        }
        AmbiguousOffset::Gap { before, after } => Err(format!(
            "{given:?} does not exist in {zone}: the clocks jumped from {before} to {after} over it; give the offset you mean: {} or {}",
            reading(before),
            reading(after)
        )),
        AmbiguousOffset::Fold { before, after } => Err(format!(
            "{given:?} happened twice in {zone}: the clocks went back from {before} to {after}; give the offset you mean: {} (the first) or {} (the second)",
            reading(before),
            reading(after)
        )),
    }
}

/// Refuses `--since` after `--until`: an empty result would read as "nothing then".
///
/// # Errors
///
/// A configuration error saying so.
pub fn since_before_until(
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
) -> anyhow::Result<()> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => Err(lifeboat_core::Error::config(format!(
            "--since ({}) is after --until ({})",
            since.strftime("%Y-%m-%d %H:%M:%S UTC"),
            until.strftime("%Y-%m-%d %H:%M:%S UTC")
        ))
        .hint("swap them")
        .into()),
        _ => Ok(()),
    }
}

/// Like [`parse_time`], for the end of a period (`--until`, `--to`): a bare date means the
/// end of that day (its last nanosecond, 23:59:59.999999999), because the bounds are compared
/// inclusively and `--until 2026-12-05` must keep the backups of 5 December.
pub fn parse_time_end(s: &str) -> Result<jiff::Timestamp, String> {
    parse_time_here(s, DayEdge::End)
}

/// Whether `s` is read in this machine's time zone (a bare date or a local time), not in
/// one it names.
pub fn reads_local(s: &str) -> bool {
    matches!(read_in_two_zones(s, DayEdge::Start), (Ok(a), Ok(b)) if a != b)
}

/// Which instant of its day a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayEdge {
    Start,
    End,
}

/// [`parse_time`] and [`parse_time_end`] in a given time zone (for tests).
fn parse_time_in(
    s: &str,
    tz: &jiff::tz::TimeZone,
    edge: DayEdge,
) -> Result<jiff::Timestamp, String> {
    let given = s;
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    // as PostgreSQL writes times in its log (`2026-12-06 08:22:46.303 UTC`, log_timezone
    // UTC) or with a zone name: the time an operator copies from the log at 03:00
    if let Some((local, zone)) = s.rsplit_once(' ') {
        // an offset after a space (`2026-12-06 20:17:50 +01:00`)
        if zone.starts_with(['+', '-']) {
            if let Ok(t) = format!("{}{zone}", local.trim()).parse::<jiff::Timestamp>() {
                return Ok(t);
            }
        }
        let zone = match zone {
            z if ["UTC", "GMT", "Z"]
                .iter()
                .any(|u| z.eq_ignore_ascii_case(u)) =>
            {
                Some(jiff::tz::TimeZone::UTC)
            }
            name if name.contains('/') => jiff::tz::TimeZone::get(name).ok(),
            _ => None,
        };
        if let Some(zone) = zone {
            if let Ok(dt) = local
                .trim()
                .replace(' ', "T")
                .parse::<jiff::civil::DateTime>()
            {
                return zoned(dt, &zone, given);
            }
        }
    }
    // a bare date first: jiff also reads "2026-11-23" as a DateTime (at midnight), which
    // would make every date the start of its day
    let bare = !s.contains(['T', 't', ' ', ':']);
    if let Some(d) = bare.then(|| s.parse::<jiff::civil::Date>().ok()).flatten() {
        let start = d.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
        let z = match edge {
            DayEdge::Start => Ok(start),
            DayEdge::End => start.end_of_day(),
        };
        return z.map(|z| z.timestamp()).map_err(|e| e.to_string());
    }
    if let Ok(dt) = s.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        return zoned(dt, tz, given);
    }
    // a zone abbreviation (`CET`, `EST`, `IST`): several zones share most of them
    if let Some((local, abbr)) = s.rsplit_once(' ') {
        if (2..=5).contains(&abbr.len())
            && abbr.bytes().all(|b| b.is_ascii_alphabetic())
            && !["AM", "PM"].iter().any(|h| abbr.eq_ignore_ascii_case(h))
            && local
                .trim()
                .replace(' ', "T")
                .parse::<jiff::civil::DateTime>()
                .is_ok()
        {
            // a bare date takes an offset only after a time of day: its day's first or
            // last moment, as the bound it was given for means it; without a zone it
            // stays a bare date
            let local = local.trim();
            let (timed, plain) = if local.contains(':') {
                (local.to_string(), local.to_string())
            } else {
                let time = match edge {
                    DayEdge::Start => "00:00",
                    DayEdge::End => "23:59:59.999999",
                };
                (format!("{local} {time}"), local.to_string())
            };
            return Err(format!(
                "{given:?} names a time zone by {abbr:?}, an abbreviation or none lifeboat knows, and abbreviations are refused because they are ambiguous (CST is US Central, China and Cuba time; IST India, Ireland and Israel): give the zone's name (\"{timed} Europe/Berlin\"), its offset (\"{timed}+01\"), UTC (\"{timed} UTC\"), or no zone for this machine's own time zone (\"{plain}\")"
            ));
        }
    }
    Err(format!(
        "{given:?} is not a time: use 2026-11-23T02:00:00Z, \"2026-11-23 02:00:00.123+01\", \"2026-11-23 02:00 UTC\", \"2026-11-23 02:00 Europe/Berlin\", \"2026-11-23 02:00\" (this machine's time zone) or 2026-11-23"
    ))
}

#[cfg(test)]
mod tests {
    use jiff::{tz::TimeZone, Timestamp};

    use super::{parse_time_in, DayEdge};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn times_as_postgresql_writes_them_are_read_in_their_zone() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        for (text, want) in [
            ("2026-12-06 08:22:46 UTC", "2026-12-06T08:22:46Z"),
            (
                "2026-12-06 08:22:46.303744 UTC",
                "2026-12-06T08:22:46.303744Z",
            ),
            (
                "2026-12-06 08:22:45.854505+00",
                "2026-12-06T08:22:45.854505Z",
            ),
            ("2026-12-06 09:22:46+01", "2026-12-06T08:22:46Z"),
            (
                "2026-12-06 03:22:46 America/New_York",
                "2026-12-06T08:22:46Z",
            ),
            ("2026-12-06 08:22:46.5 GMT", "2026-12-06T08:22:46.5Z"),
        ] {
            // the machine's own zone must not matter when the text names one
            let t = parse_time_in(text, &berlin, DayEdge::Start).unwrap();
            assert_eq!(t, ts(want), "{text}");
        }
        let e = parse_time_in("2026-12-06 08:22:46 CET", &berlin, DayEdge::Start).unwrap_err();
        assert!(e.contains("Europe/Berlin"), "{e}");
    }

    #[test]
    fn a_bare_date_starts_its_day_as_a_start_bound() {
        let t = parse_time_in("2026-12-05", &TimeZone::UTC, DayEdge::Start).unwrap();
        assert_eq!(t, ts("2026-12-05T00:00:00Z"));
    }

    #[test]
    fn a_bare_date_ends_its_day_as_an_end_bound() {
        let t = parse_time_in("2026-12-05", &TimeZone::UTC, DayEdge::End).unwrap();
        assert_eq!(t, ts("2026-12-05T23:59:59.999999999Z"));
        // A backup finished in the last second of the day is inside, the next midnight is not.
        assert!(ts("2026-12-05T23:59:59Z") <= t);
        assert!(ts("2026-12-06T00:00:00Z") > t);
    }

    #[test]
    fn a_bare_date_end_is_in_the_local_time_zone() {
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        let t = parse_time_in("2026-09-30", &tz, DayEdge::End).unwrap();
        assert_eq!(t, ts("2026-09-30T21:59:59.999999999Z"));
    }

    #[test]
    fn a_time_of_day_is_taken_as_given_for_both_bounds() {
        for edge in [DayEdge::Start, DayEdge::End] {
            assert_eq!(
                parse_time_in("2026-12-05 00:00", &TimeZone::UTC, edge).unwrap(),
                ts("2026-12-05T00:00:00Z")
            );
            assert_eq!(
                parse_time_in("2026-12-05T00:00", &TimeZone::UTC, edge).unwrap(),
                ts("2026-12-05T00:00:00Z")
            );
            assert_eq!(
                parse_time_in("2026-12-05 14:30", &TimeZone::UTC, edge).unwrap(),
                ts("2026-12-05T14:30:00Z")
            );
            assert_eq!(
                parse_time_in("2026-12-05T00:00:00Z", &TimeZone::UTC, edge).unwrap(),
                ts("2026-12-05T00:00:00Z")
            );
        }
    }

    #[test]
    fn a_local_time_the_clocks_skip_or_repeat_is_refused_with_both_readings() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let e = parse_time_in("2026-10-25 02:30", &berlin, DayEdge::Start).unwrap_err();
        assert!(
            e.contains("happened twice in Europe/Berlin")
                && e.contains("\"2026-10-25 02:30:00 +02\" (2026-10-25T00:30:00Z)")
                && e.contains("\"2026-10-25 02:30:00 +01\" (2026-10-25T01:30:00Z)"),
            "{e}"
        );
        let e = parse_time_in(
            "2026-03-29 02:30 Europe/Berlin",
            &TimeZone::UTC,
            DayEdge::Start,
        )
        .unwrap_err();
        assert!(e.contains("does not exist in Europe/Berlin"), "{e}");
        // each reading it offers is accepted as given
        assert_eq!(
            parse_time_in("2026-10-25 02:30:00 +01", &berlin, DayEdge::Start).unwrap(),
            ts("2026-10-25T01:30:00Z")
        );
        // the hour after is not in doubt
        assert_eq!(
            parse_time_in("2026-10-25 03:30", &berlin, DayEdge::Start).unwrap(),
            ts("2026-10-25T02:30:00Z")
        );
    }

    #[test]
    fn spaces_and_case_as_people_type_them() {
        for (text, want) in [
            ("2026-12-06 19:17 ", "2026-12-06T19:17:00Z"),
            ("2026-12-06 19:17 utc", "2026-12-06T19:17:00Z"),
            ("2026-12-06 20:17:50 +01:00", "2026-12-06T19:17:50Z"),
        ] {
            assert_eq!(
                parse_time_in(text, &TimeZone::UTC, DayEdge::Start).unwrap(),
                ts(want),
                "{text}"
            );
        }
    }

    #[test]
    fn a_window_bound_takes_a_time_ago() {
        let before = Timestamp::now();
        for (text, secs) in [
            ("12h", 12 * 3600),
            ("12h ago", 12 * 3600),
            ("30m", 1800),
            ("90 minutes", 5400),
        ] {
            let since = super::parse_since(text).unwrap();
            let until = super::parse_until(text).unwrap();
            let back = before.as_second() - since.as_second();
            // the clock moves on between `before` and the parse
            assert!((secs - 5..=secs + 1).contains(&back), "{text}: {back}");
            assert!((since.as_second() - until.as_second()).abs() <= 1, "{text}");
        }
        // a day is the same time of day yesterday, 23 to 25 hours back across a clock change
        let day = before.as_second() - super::parse_since("1d").unwrap().as_second();
        assert!((23 * 3600 - 5..=25 * 3600 + 1).contains(&day), "{day}");
        // dates and times still read as before, and the error names the new forms
        assert!(super::parse_since("2026-12-05").is_ok());
        let e = super::parse_since("yesterday").unwrap_err();
        assert!(
            e.contains("is not a time") && e.contains("a time ago: 1d"),
            "{e}"
        );
        // restore targets take no time ago, and a sign is refused
        assert!(super::parse_time("1h").is_err());
        for signed in ["+2m", "-1d"] {
            let e = super::parse_since(signed).unwrap_err();
            assert!(e.contains("has a sign"), "{e}");
        }
    }

    #[test]
    fn times_without_a_zone_are_read_locally() {
        for (text, local) in [
            ("2026-12-01", true),
            ("2026-12-01 02:00", true),
            ("2026-12-01T02:00:00Z", false),
            ("2026-12-01 02:00 UTC", false),
            ("2026-12-01 02:00:00+01", false),
            ("2026-12-01 02:00 Europe/Berlin", false),
            ("yesterday", false),
        ] {
            assert_eq!(super::reads_local(text), local, "{text}");
        }
    }

    #[test]
    fn a_zone_abbreviation_is_refused_as_ambiguous_with_the_forms_that_work() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        for text in ["2026-12-07 10:21 CET", "2026-12-07 10:21:00 est"] {
            let e = parse_time_in(text, &berlin, DayEdge::Start).unwrap_err();
            assert!(
                e.contains("abbreviations are refused because they are ambiguous")
                    && e.contains(" Europe/Berlin\"")
                    && e.contains("+01\"")
                    && !e.contains("is not a time"),
                "{e}"
            );
        }
        // each form the message offers is read, a bare date's too, and as an end bound
        // each means the end of that day in Berlin
        // the quoted forms after "give"
        let offered = |e: &str| -> Vec<String> {
            e.split_once("give ")
                .unwrap()
                .1
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        for text in ["2026-12-07 10:21 CET", "2026-12-07 CET"] {
            let e = parse_time_in(text, &berlin, DayEdge::Start).unwrap_err();
            if !text.contains(':') {
                let e = parse_time_in(text, &berlin, DayEdge::End).unwrap_err();
                let ends: Vec<i64> = offered(&e)
                    .iter()
                    .filter(|f| !f.ends_with(" UTC"))
                    .map(|f| parse_time_in(f, &berlin, DayEdge::End).unwrap().as_second())
                    .collect();
                assert_eq!(ends.len(), 3, "{e}");
                assert!(
                    ends.iter()
                        .all(|s| *s == ts("2026-12-07T22:59:59Z").as_second()),
                    "{e}: {ends:?}"
                );
            }
            let forms = offered(&e);
            assert_eq!(forms.len(), 4, "{e}");
            for form in &forms {
                assert!(
                    parse_time_in(form, &berlin, DayEdge::Start).is_ok(),
                    "{form}: {e}"
                );
            }
        }
        for text in [
            "2026-12-07 10:21 Europe/Berlin",
            "2026-12-07 10:21+01",
            "2026-12-07 09:21 UTC",
        ] {
            assert_eq!(
                parse_time_in(text, &TimeZone::UTC, DayEdge::Start).unwrap(),
                ts("2026-12-07T09:21:00Z"),
                "{text}"
            );
        }
    }

    #[test]
    fn not_a_time_is_refused() {
        let e = parse_time_in("yesterday", &TimeZone::UTC, DayEdge::End).unwrap_err();
        assert!(e.contains("is not a time"), "{e}");
    }
}
