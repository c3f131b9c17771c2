//! How results are shown: aligned text for people, JSON with `--json`.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Whether a document went to stdout: a command that printed its result and then failed
/// (a verify that found damage) must not print a second document for the error.
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    document(&(serde_json::to_string_pretty(value)? + "\n"));
    Ok(())
}

/// Writes to stdout; a stream that cannot take it (a full disk) loses the text, nothing
/// else (see the `println!` of this crate).
pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    // only a terminal shares its screen with the bars: a pipe is written without holding
    // the display (a reader that stalls must not keep an interrupt from clearing it)
    let mut written = Ok(());
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let text = for_terminal(args);
        crate::progress::print_above(|| {
            written = std::io::stdout().lock().write_all(text.as_bytes());
        });
    } else {
        written = std::io::stdout().lock().write_fmt(args);
    }
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // `lifeboat wal status | head -3`: the reader left; stop quietly as a tool
            // killed by SIGPIPE does (141)
            let _ = lifeboat_core::sources::postgres::cluster::stop_all();
            crate::stopped_by_closed_pipe();
            std::process::exit(141);
        }
        OUTPUT_LOST.store(true, Ordering::Relaxed);
    }
}

/// Set when stdout refused some output (see [`write_out`]).
static OUTPUT_LOST: AtomicBool = AtomicBool::new(false);

/// Whether some output could not be written: `lifeboat list --json > file` on a full
/// disk must not exit 0 with a cut-off file.
pub fn output_lost() -> bool {
    // what is still buffered (a document without a final newline) goes out now
    if std::io::Write::flush(&mut std::io::stdout()).is_err() {
        OUTPUT_LOST.store(true, Ordering::Relaxed);
    }
    OUTPUT_LOST.load(Ordering::Relaxed)
}

/// [`write_out`] for stderr.
pub fn write_err(args: std::fmt::Arguments) {
    use std::io::Write;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let text = for_terminal(args);
        crate::progress::print_above(|| {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        });
    } else {
        crate::progress::print_above(|| {
            let _ = std::io::stderr().lock().write_fmt(args);
        });
    }
}

/// `args` as text a terminal shows as it is: control characters (other than the line
/// ends and tabs lifeboat writes itself) escaped. The names it prints come from the
/// databases it backs up, and a database named with escape sequences could clear the
/// screen or fake a line of output.
fn for_terminal(args: std::fmt::Arguments) -> String {
    let text = args.to_string();
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text;
    }
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Writes a document to the file `-o` named, whole or not at all (a full disk leaves the
/// file that was there as it was), saying which file failed and how (a missing
/// directory, no permission, a full disk) rather than a bare OS error.
pub fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    lifeboat_core::files::write_whole(path, text.as_bytes()).map_err(|e| {
        let full = matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        let hint = if full {
            "the disk holding it is full: free space there, or give -o a path on another disk; a file that was there is unchanged"
        } else {
            "give -o a path in an existing directory this user may write"
        };
        lifeboat_core::Error::io(format!("cannot write {}", path.display()), e)
            .hint(hint)
            .into()
    })
}

/// Prints a whole document (JSON, Markdown) on stdout.
pub fn document(text: &str) {
    PRINTED.store(true, Ordering::Relaxed);
    print!("{text}");
}

/// With `--json`, a failure before any document was printed is reported on stdout too,
/// so that a script reading stdout gets JSON either way:
/// `{"error": {"kind", "exit_code", "message", "causes", "hint"}}`. The text on stderr
/// stays for people and logs.
pub fn json_error(
    kind: &str,
    exit_code: i32,
    message: &str,
    causes: &[String],
    hint: Option<&str>,
) {
    if PRINTED.load(Ordering::Relaxed) {
        return;
    }
    let value = serde_json::json!({
        "error": {
            "kind": kind,
            "exit_code": exit_code,
            "message": message,
            "causes": causes,
            "hint": hint,
        }
    });
    if let Ok(text) = serde_json::to_string_pretty(&value) {
        document(&(text + "\n"));
    }
}

/// `1234567` -> `1.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds as `1.2s`, `3m04s` or `2h05m`.
pub fn secs(s: f64) -> String {
    let whole = s as u64;
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

/// A timestamp in UTC, to the second.
pub fn time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Prints rows as columns separated by two spaces, the first row being the header.
pub fn table(rows: &[Vec<String>]) {
    for line in table_lines(rows) {
        println!("{line}");
    }
}

/// The lines [`table`] prints: columns as wide as a terminal shows them (an emoji or a
/// CJK character takes two cells, a combining mark none).
fn table_lines(rows: &[Vec<String>]) -> Vec<String> {
    use unicode_width::UnicodeWidthStr;
    // a cell is one line: a line end or tab in a name (a database's) would break the rows
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| {
                    c.chars()
                        .map(|ch| {
                            if ch.is_control() {
                                ch.escape_debug().to_string()
                            } else {
                                ch.to_string()
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let widths: Vec<usize> = (0..first.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.width()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c}{}", " ".repeat(widths[i].saturating_sub(c.width()))))
                .collect();
            line.join("  ").trim_end().to_string()
        })
        .collect()
}

/// Warns on stderr about snapshot files the repository could not read (the listing goes on
/// without them; `verify` reports them as damage), and prints the operations' notices (an
/// audit entry parked on this host).
pub fn warn_repository(repo: &lifeboat_core::repository::Repo) {
    for n in repo.take_notices() {
        eprintln!("lifeboat: warning: {n}");
    }
    for (id, why) in repo.unreadable_snapshots() {
        eprintln!(
            "lifeboat: warning: snapshot file {} cannot be read and is left out ({why}); `lifeboat verify --all` reports it",
            &id[..8.min(id.len())]
        );
    }
}

/// `value` as `--json` output, each backup-time truth in it with its per-table rows and
/// hash but without the `COPY` statement of every table and the database's own statements:
/// for a database with thousands of tables those made megabytes per backup (a listing, a
/// restore's plan and report).
pub fn json_slim<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(value)?;
    slim(&mut v, true);
    json(&v)
}

/// [`json_slim`] without the tables themselves: each truth keeps `table_count` and
/// `total_rows` instead of its `tables`. A listing of 600 backups of a database with 3000
/// tables was 300 MB with them; `list --tables` asks for them.
pub fn json_counts<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(value)?;
    slim(&mut v, false);
    json(&v)
}

fn slim(v: &mut serde_json::Value, per_table: bool) {
    match v {
        serde_json::Value::Object(o) => {
            if let Some(truth) = o
                .get_mut("truth")
                .and_then(serde_json::Value::as_object_mut)
            {
                truth.remove("database_properties");
                if !per_table {
                    let tables = truth.remove("tables");
                    let tables = tables
                        .as_ref()
                        .and_then(serde_json::Value::as_array)
                        .map_or(&[][..], Vec::as_slice);
                    let rows: u64 = tables
                        .iter()
                        .filter_map(|t| t.get("rows").and_then(serde_json::Value::as_u64))
                        .sum();
                    truth.insert("table_count".into(), tables.len().into());
                    truth.insert("total_rows".into(), rows.into());
                }
                for t in truth
                    .get_mut("tables")
                    .and_then(serde_json::Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = t.as_object_mut() {
                        t.remove("copy");
                    }
                }
            }
            o.values_mut().for_each(|v| slim(v, per_table));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| slim(v, per_table)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_keep_the_columns_straight() {
        let rows = vec![
            vec!["db".to_string(), "kind".to_string()],
            vec!["🚀 launch".to_string(), "logical".to_string()],
            vec!["shop".to_string(), "schema".to_string()],
        ];
        let lines = table_lines(&rows);
        let column = |l: &str| {
            use unicode_width::UnicodeWidthStr;
            l[..l
                .find("  k")
                .or_else(|| l.find("  l"))
                .or_else(|| l.find("  s"))
                .unwrap()]
                .width()
        };
        assert_eq!(column(&lines[0]), column(&lines[1]), "{lines:?}");
        assert_eq!(column(&lines[1]), column(&lines[2]), "{lines:?}");
        // a name with a line end stays on its row
        let odd = table_lines(&[
            vec!["db".to_string(), "kind".to_string()],
            vec!["evil\nFAKE".to_string(), "logical".to_string()],
        ]);
        assert_eq!(odd.len(), 2, "{odd:?}");
        assert!(odd[1].starts_with("evil\\nFAKE"), "{odd:?}");
        // quotes and backslashes are a name's own
        let quoted = table_lines(&[vec![r#"o'dd\"x"#.to_string()]]);
        assert_eq!(quoted, [r#"o'dd\"x"#]);
    }

    #[test]
    fn escape_sequences_reach_no_terminal() {
        let name = "ansi\u{1b}[2J\u{1b}[31mFAKE OK\u{7}\r";
        let shown = for_terminal(format_args!("backup of {name}\n\tdone\n"));
        assert_eq!(
            shown,
            "backup of ansi\\u{1b}[2J\\u{1b}[31mFAKE OK\\u{7}\\u{d}\n\tdone\n"
        );
        assert!(!shown.contains('\u{1b}'));
        assert_eq!(for_terminal(format_args!("plain ✓\n")), "plain ✓\n");
    }
}
