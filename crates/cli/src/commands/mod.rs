//! One module per command: each parses its flags into lifeboat-core options, calls the
//! operation and shows the report.

pub mod audit;
pub mod backup;
pub mod config;
pub mod demo;
pub mod drill;
pub mod init;
pub mod list;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod verify;
pub mod wal;

/// Parses a time given on the command line: RFC 3339 (`2026-11-23T02:00:00Z`), or a local
/// date and time (`2026-11-23 02:00`, `2026-11-23`).
pub fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = s.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(tz)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(tz)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "{s:?} is not a time: use 2026-11-23T02:00:00Z, \"2026-11-23 02:00\" or 2026-11-23"
    ))
}
