//! Drill evidence: the report as JSON, Markdown and a self-contained HTML page (phase
//! timeline, checks, objectives vs achieved), written to a directory and stored in the
//! repository as a snapshot tagged `lifeboat-drill` (never listed as a backup).

use std::{fmt::Write as _, io::Cursor, path::Path};

use rustic_core::{BackupOptions as RusticBackupOptions, SnapshotOptions};

use super::drill::{DrillReport, Objective, Restored};
use crate::{
    error::{Error, Result},
    repository::{Repo, StreamSource, LABEL},
    sources::postgres::logical::BackupKind,
};

/// Tag of drill-report snapshots.
pub const DRILL_TAG: &str = "lifeboat-drill";

/// The key figures of a drill, kept in its snapshot's description.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DrillSummary {
    /// Drill id.
    pub drill: String,
    /// Source.
    pub source: String,
    /// Backup restored.
    pub backup_id: String,
    /// Passed.
    pub passed: bool,
    /// Achieved RTO.
    pub rto_secs: f64,
    /// Achieved RPO.
    pub rpo_secs: f64,
    /// When the drill ended.
    pub finished_at: jiff::Timestamp,
    /// Logical or physical (`None` in reports stored before lifeboat recorded it here:
    /// the drilled backup's kind says).
    #[serde(default)]
    pub kind: Option<BackupKind>,
    /// The database a logical drill restored (`None` for a physical drill, which restores
    /// the whole cluster, and in reports stored before lifeboat recorded it here: the
    /// evidence pack then takes it from the drilled backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The audit entry this drill appended (its hash): the evidence pack checks that every
    /// stored report belongs to the log. `None` in older reports, or when the entry could
    /// not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<String>,
    /// The RTO objective the drill was judged against, in seconds (as configured then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_objective_secs: Option<f64>,
    /// The RPO objective the drill was judged against, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_objective_secs: Option<f64>,
    /// Whether the achieved RTO met its objective (`None`: no objective, or an older report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_met: Option<bool>,
    /// Whether the achieved RPO met its objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_met: Option<bool>,
    /// Evidence that could not be published (the audit head outside the repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_error: Option<String>,
    /// The restore did not complete: its times are a failure's, not an achieved RTO/RPO.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_achieved: bool,
    /// Restored on a configured scratch server (`drill.server`), not into a throw-away
    /// cluster: without production's roles, owners and grants were not checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_scratch_server: bool,
    /// The restore time extrapolated to production's size misses the RTO objective (the
    /// drill itself may have passed: it measured a smaller database).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extrapolation_misses_rto: bool,
    /// The drill failed only in its comparisons with the backup (rows, definitions) after
    /// hooks before its checks (`drill.hooks_before_checks`, `--hook-before-checks`) ran
    /// and passed: a fault injected on purpose, which the drill caught.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fault_injected: bool,
}

impl DrillSummary {
    /// The achieved RTO in words, or `not achieved` for a restore that did not complete
    /// (its seconds are a failure's, not a recovery time).
    #[must_use]
    pub fn rto_words(&self) -> String {
        self.achieved(self.rto_secs)
    }

    /// The achieved RPO in words, as [`DrillSummary::rto_words`].
    #[must_use]
    pub fn rpo_words(&self) -> String {
        self.achieved(self.rpo_secs)
    }

    fn achieved(&self, secs: f64) -> String {
        if self.not_achieved {
            "not achieved".to_string()
        } else {
            pack_secs(secs)
        }
    }
}

impl From<&DrillReport> for DrillSummary {
    fn from(r: &DrillReport) -> Self {
        Self {
            kind: Some(r.kind),
            database: (r.restored == super::drill::Restored::Database).then(|| r.database.clone()),
            drill: r.id.clone(),
            source: r.source.clone(),
            backup_id: r.backup_id.clone(),
            passed: r.passed,
            rto_secs: r.rto.achieved_secs,
            rpo_secs: r.rpo.achieved_secs,
            finished_at: r.finished_at,
            audit_head: r.audit_head.clone(),
            rto_objective_secs: r.rto.objective_secs,
            rpo_objective_secs: r.rpo.objective_secs,
            rto_met: r.rto.objective_secs.map(|_| r.rto.met),
            rpo_met: r.rpo.objective_secs.map(|_| r.rpo.met),
            evidence_error: r.evidence_error.clone(),
            not_achieved: r.rto.not_achieved,
            on_scratch_server: r.scratch_server.is_some(),
            extrapolation_misses_rto: r.extrapolation_misses_rto,
            // hooks changed the copy before its comparison, and only the comparison found
            // it: an assertion, a hook or a restore that failed is a failure of its own
            fault_injected: !r.passed
                && r.checks
                    .iter()
                    .any(|c| c.ok && c.name.starts_with(super::drill::HOOK_BEFORE_CHECKS))
                && r.checks.iter().filter(|c| !c.ok).all(|c| {
                    c.name == super::drill::TRUTH_CHECK
                        || c.name == super::drill::DEFINITIONS_CHECK
                        || c.name.starts_with("table ")
                })
                && r.checks.iter().any(|c| !c.ok),
        }
    }
}

/// Summaries of every stored drill, oldest first (snapshot files only).
///
/// # Errors
///
/// When snapshot files cannot be read.
pub fn drills(repo: &Repo) -> Result<Vec<DrillSummary>> {
    let mut out: Vec<DrillSummary> = repo
        .all_snapshots()?
        .into_iter()
        .filter(|s| s.tags.contains(DRILL_TAG))
        .filter_map(|s| serde_json::from_str(s.description.as_deref()?).ok())
        .collect();
    out.sort_by_key(|d| d.finished_at);
    Ok(out)
}

fn secs(s: f64) -> String {
    human_secs(s, 1)
}

/// A duration for people: seconds below two minutes, minutes below two hours, else hours;
/// `digits` decimals for seconds and minutes.
pub(crate) fn human_secs(s: f64, digits: usize) -> String {
    if s < 120.0 {
        format!("{s:.digits$} s")
    } else if s < 7200.0 {
        format!("{:.digits$} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A duration in the evidence pack: as [`human_secs`] in whole units, but with one
/// decimal under 10 s (as the drill's own report has it), so that a 0.4 s RTO does not
/// read as "0 s"; a whole number of seconds (an objective) stays whole.
pub(crate) fn pack_secs(s: f64) -> String {
    if s < 10.0 && s.fract() != 0.0 {
        format!("{s:.1} s")
    } else {
        human_secs(s, 0)
    }
}

/// A margin to the second: rounded like the figures it separates, 597 s would read as
/// "10.0 min" beside a 10 min objective.
fn margin(s: f64) -> String {
    let s = s.abs();
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        let whole = s.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        let whole = (s / 60.0).round() as u64;
        format!("{} h {:02} min", whole / 60, whole % 60)
    }
}

fn objective_line(name: &str, o: &Objective) -> String {
    if o.not_achieved {
        return if name == "RTO" {
            format!(
                "{name}: **not achieved**: the restore did not complete (it failed after {})",
                secs(o.achieved_secs)
            )
        } else {
            format!("{name}: **not achieved**: the restore did not complete")
        };
    }
    match (o.objective_secs, o.margin_secs) {
        (Some(obj), Some(m)) => format!(
            "{name}: achieved {} vs objective {} — {} (margin {})",
            secs(o.achieved_secs),
            secs(obj),
            if o.met { "met" } else { "MISSED" },
            margin(m)
        ),
        _ => format!(
            "{name}: achieved {} (no objective configured)",
            secs(o.achieved_secs)
        ),
    }
}

/// What the drill restored, for people: a logical drill one database, a physical one the
/// whole cluster (its `database` is only where hooks and assertions ran). `quote` renders
/// a database name.
fn restored(r: &DrillReport, quote: impl Fn(&str) -> String) -> String {
    if r.restored == Restored::WholeCluster || r.kind == BackupKind::Physical {
        format!(
            "the whole cluster (hooks and assertions ran in database {})",
            quote(&r.database)
        )
    } else {
        format!("database {}", quote(&r.database))
    }
}

/// The report as Markdown.
#[must_use]
pub fn markdown(r: &DrillReport) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Restore drill {} — {}\n",
        r.id,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(
        m,
        "- source: `{}`, {}",
        r.source,
        restored(r, |d| format!("`{d}`"))
    );
    let _ = writeln!(
        m,
        "- backup: `{}` finished {} ({} bytes)",
        r.backup_id, r.backup_finished_at, r.backup_bytes
    );
    let _ = writeln!(
        m,
        "- drill: {} to {}, {}",
        r.started_at,
        r.finished_at,
        ran_on(r, |s| format!("`{s}`"))
    );
    if let Some(t) = &r.target {
        let _ = writeln!(m, "- recovery target: {t}");
    }
    if let Some(e) = &r.evidence_error {
        let _ = writeln!(m, "- **evidence warning**: {e}");
    }
    let _ = writeln!(m, "- {}", objective_line("RTO", &r.rto));
    let _ = writeln!(m, "- {}", objective_line("RPO", &r.rpo));
    if let Some(p) = &r.rpo_point {
        let _ = writeln!(m, "  - measured to {}", md_text(&rpo_point_text(p)));
    }
    if let (Some(e), Some(p)) = (r.extrapolated_rto_secs, r.production_bytes) {
        let _ = writeln!(
            m,
            "- extrapolated restore time at the production size ({p} bytes): {}{}",
            secs(e),
            if r.extrapolation_misses_rto {
                " — MISSES the RTO objective"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        m,
        "\n## Phases\n\n| phase | start | duration |\n| --- | ---: | ---: |"
    );
    for p in &r.phases {
        let _ = writeln!(
            m,
            "| {} | {} | {} |",
            p.name,
            secs(p.start_secs),
            secs(p.secs)
        );
    }
    let _ = writeln!(
        m,
        "\n## Checks\n\n| check | result | detail |\n| --- | --- | --- |"
    );
    for c in &r.checks {
        let _ = writeln!(
            m,
            "| {} | {} | {} |",
            md_cell(&c.name),
            if c.ok { "pass" } else { "FAIL" },
            md_cell(&c.detail)
        );
    }
    // the limits of checks that never ran are no finding
    for n in r.not_checked.iter().filter(|_| restore_completed(r)) {
        let _ = writeln!(m, "\nNot checked: {n}.");
    }
    let _ = writeln!(m, "\n{}", md_text(&evidence_statement(r)));
    if let Some(h) = &r.audit_head {
        let _ = writeln!(m, "\nAudit log head after this drill: `{h}` (`lifeboat audit verify --expected-head {h}` checks that the log still holds every entry up to this drill).");
    }
    m
}

/// Where the drill restored: its throw-away cluster, or a new database on the scratch
/// server (`code` formats its connection).
fn ran_on(r: &DrillReport, code: impl Fn(&str) -> String) -> String {
    let by = r
        .written_by
        .as_deref()
        .map_or_else(String::new, |v| format!(", run by lifeboat {v}"));
    let place = match &r.scratch_server {
        Some(s) => format!(
            "in a new database on the scratch server {} (PostgreSQL {}), dropped afterwards",
            code(s),
            r.server_version
        ),
        None => format!("on a throw-away PostgreSQL {}", r.server_version),
    };
    format!("{place}{by}")
}

/// Whether the restore itself completed. One that did not (the backup could not be read,
/// pg_restore or the WAL replay failed) compared and checked nothing: its report must not
/// claim the comparison, nor list the limits of checks that never ran.
#[must_use]
pub fn restore_completed(r: &DrillReport) -> bool {
    !r.rto.not_achieved
        && !r
            .checks
            .iter()
            .any(|c| !c.ok && super::drill::RESTORE_STEPS.contains(&c.name.as_str()))
}

/// The report's closing sentence: what the drill is evidence of. A failed drill is
/// evidence too, of a failed restore test, and claims only what ran.
fn evidence_statement(r: &DrillReport) -> String {
    if r.passed {
        format!("Evidence for SOC 2 CC9.1 / A1.3: {}.", what_was_proven(r))
    } else if restore_completed(r) {
        format!(
            "Evidence for SOC 2 CC9.1 / A1.3 of a failed restore test: {}; the failures above are what it found.",
            what_was_proven(r)
        )
    } else {
        "Evidence for SOC 2 CC9.1 / A1.3 of a failed restore test: the restore did not complete (the failed check above says why), so nothing was compared with the backup or checked, and no recovery time was achieved.".to_string()
    }
}

/// What the drill's checks proved, by kind: only a logical drill compares every table
/// with the truth recorded at backup time.
fn what_was_proven(r: &DrillReport) -> &'static str {
    if r.scratch_server.is_some() {
        "a backup restored into a new database on a scratch server (without production's roles, so without owners and grants) and every table compared with the row counts and content hashes recorded at backup time"
    } else if r.kind == BackupKind::Physical {
        "a physical backup restored into an isolated cluster, its WAL replayed to the recovery target, and the checks above run on the recovered cluster"
    } else {
        "a backup restored into an isolated cluster and every table compared with the row counts and content hashes recorded at backup time"
    }
}

/// Where the RPO was measured to, with its time unless the description already has it.
fn rpo_point_text(p: &super::drill::RpoPoint) -> String {
    let at = p.at.to_string();
    if p.what.contains(&at) {
        p.what.clone()
    } else {
        format!("{}, {at}", p.what)
    }
}

/// Text as one Markdown table cell: a table named `<img src=x onerror=…>` is shown, not
/// rendered, and a `|` or a line break does not end the cell.
pub(crate) fn md_cell(s: &str) -> String {
    md_text(s).replace('|', "\\|").replace('\n', "<br>")
}

/// Text for Markdown prose: what would be taken for HTML is shown as written.
pub(crate) fn md_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one self-contained HTML page (inline CSS and SVG, no scripts).
#[must_use]
pub fn html(r: &DrillReport) -> String {
    let total = r
        .phases
        .iter()
        .map(|p| p.start_secs + p.secs)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let mut bars = String::new();
    for (i, p) in r.phases.iter().enumerate() {
        let x = 120.0 + 560.0 * p.start_secs / total;
        let w = (560.0 * p.secs / total).max(1.0);
        let y = 10 + i * 26;
        let _ = write!(
            bars,
            r##"<text x="0" y="{ty}" class="l">{name}</text><rect x="{x:.1}" y="{y}" width="{w:.1}" height="18" fill="#3b82f6"/><text x="{tx:.1}" y="{ty}" class="v">{d}</text>"##,
            ty = y + 14,
            name = esc(&p.name),
            tx = (x + w + 4.0).min(690.0),
            d = esc(&secs(p.secs)),
        );
    }
    let height = 20 + r.phases.len() * 26;
    let mut rows = String::new();
    for c in &r.checks {
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.ok { "ok" } else { "bad" },
            esc(&c.name),
            if c.ok { "pass" } else { "FAIL" },
            esc(&c.detail).replace('\n', "<br>")
        );
    }
    let objective = |name: &str, o: &Objective| {
        format!(
            "<tr class=\"{}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if o.met { "ok" } else { "bad" },
            // a failure's seconds are no recovery time
            if o.not_achieved {
                "not achieved".to_string()
            } else {
                esc(&secs(o.achieved_secs))
            },
            o.objective_secs
                .map_or_else(|| "—".to_string(), |s| esc(&secs(s))),
            esc(&o
                .verdict(margin)
                .unwrap_or_else(|| "no objective".to_string()))
        )
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lifeboat drill {id}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
tr.ok td:nth-child(2){{color:#15803d}}tr.bad td{{background:#fee2e2}}.verdict{{font-size:1.4em;font-weight:bold;color:{color}}}svg text{{font-size:12px}}</style></head>
<body><h1>Restore drill {id}</h1><p class="verdict" id="verdict">{verdict}</p>
<p>Source <code>{source}</code>, {restored}; backup <code>{backup}</code> finished {bt} ({bytes} bytes).<br>
Drill ran {st} to {ft}, {ran_on}.{target}</p>{warning}
<h2>Objectives</h2><table id="objectives"><tr><th>objective</th><th>achieved</th><th>target</th><th>verdict (margin)</th></tr>{rto}{rpo}</table>{rpo_point}{extra}
<h2>Phases</h2><svg width="780" height="{height}" role="img" aria-label="phase timeline">{bars}</svg>
<h2>Checks</h2><table id="checks"><tr><th>check</th><th>result</th><th>detail</th></tr>{rows}</table>{not_checked}
<p id="evidence">{proven}</p>{head}</body></html>
"#,
        head = r
            .audit_head
            .as_deref()
            .map_or_else(String::new, |h| format!(
                "<p id=\"audit-head\">Audit log head after this drill: <code>{h}</code> (<code>lifeboat audit verify --expected-head {h}</code> checks that the log still holds every entry up to this drill)</p>",
                h = esc(h)
            )),
        proven = esc(&evidence_statement(r)),
        not_checked = r
            .not_checked
            .iter()
            .filter(|_| restore_completed(r))
            .map(|n| format!("<p class=\"not-checked\">Not checked: {}.</p>", esc(n)))
            .collect::<String>(),
        ran_on = ran_on(r, |s| format!("<code>{}</code>", esc(s))),
        target = r.target.as_deref().map_or_else(String::new, |t| format!("<br>Recovery target: {}.", esc(t))),
        warning = r.evidence_error.as_deref().map_or_else(String::new, |e| format!(
            "<p id=\"evidence-warning\" class=\"verdict\" style=\"color:#b91c1c;font-size:1em\">Evidence warning: {}</p>",
            esc(e)
        )),
        id = esc(&r.id),
        color = if r.passed { "#15803d" } else { "#b91c1c" },
        verdict = if r.passed { "PASSED" } else { "FAILED" },
        source = esc(&r.source),
        restored = restored(r, |d| format!("<code>{}</code>", esc(d))),
        backup = esc(&r.backup_id),
        bt = r.backup_finished_at,
        bytes = r.backup_bytes,
        st = r.started_at,
        ft = r.finished_at,
        rto = objective("RTO", &r.rto),
        rpo = objective("RPO", &r.rpo),
        rpo_point = r.rpo_point.as_ref().map_or_else(String::new, |p| format!(
            "<p id=\"rpo-point\">RPO measured to {}.</p>",
            esc(&rpo_point_text(p))
        )),
        extra = match r.extrapolated_rto_secs {
            Some(e) => format!(
                "<p>Extrapolated to the production size: {}{}</p>",
                esc(&secs(e)),
                if r.extrapolation_misses_rto {
                    " — <b>misses the RTO objective</b>"
                } else {
                    ""
                }
            ),
            None => String::new(),
        },
    )
}

/// Writes `<id>.json`, `<id>.md` and `<id>.html` into `dir`.
///
/// # Errors
///
/// When the directory or files cannot be written.
pub fn write_files(r: &DrillReport, dir: &Path) -> Result<()> {
    // as private as its files (see `files::write_whole`); one made beforehand stays as made
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o750)
        .create(dir)
        .map_err(|e| Error::io(dir.display(), e))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| Error::internal(e.to_string()))?;
    for (ext, text) in [("json", json), ("md", markdown(r)), ("html", html(r))] {
        let p = dir.join(format!("{}.{ext}", r.id));
        crate::files::write_whole(&p, text.as_bytes()).map_err(|e| Error::io(p.display(), e))?;
    }
    Ok(())
}

/// The stored report of drill `id` (the whole id, e.g. `drill-20261205T182838Z-3f2a`), read
/// back from the repository: what `report --drill` renders again as Markdown or HTML.
///
/// # Errors
///
/// [`crate::ErrorKind::NotFound`] when no stored report has that id; an integrity error
/// when its data cannot be read.
pub fn load(repo: &Repo, id: &str) -> Result<DrillReport> {
    let (snap, summary) = repo
        .all_snapshots()?
        .into_iter()
        .filter(|s| s.tags.contains(DRILL_TAG))
        .find_map(|s| {
            let d: DrillSummary = serde_json::from_str(s.description.as_deref()?).ok()?;
            (d.drill == id).then_some((s, d))
        })
        .ok_or_else(|| {
            Error::not_found(format!("no stored drill report {id:?}"))
                .hint("`lifeboat report` lists the drills of a period with their ids")
        })?;
    let path = std::path::PathBuf::from(format!("/lifeboat/drills/{}/{id}.json", summary.source));
    let mut json = Vec::new();
    repo.with_indexed(|indexed| {
        let node = indexed.node_from_snapshot_and_path(&snap, &path.display().to_string())?;
        indexed.dump(&node, &mut json)?;
        Ok(())
    })?;
    let mut report: DrillReport = serde_json::from_slice(&json)
        .map_err(|e| Error::integrity(format!("drill report {id} does not parse: {e}")))?;
    // reports stored before `restored` was kept say it by their kind
    if report.kind == BackupKind::Physical {
        report.restored = Restored::WholeCluster;
    }
    Ok(report)
}

/// Stores the JSON report in the repository.
///
/// # Errors
///
/// When the snapshot cannot be written.
pub fn store(repo: &Repo, r: &DrillReport) -> Result<()> {
    let json = serde_json::to_vec_pretty(r).map_err(|e| Error::internal(e.to_string()))?;
    let path = std::path::PathBuf::from(format!("/lifeboat/drills/{}/{}.json", r.source, r.id));
    let mut snap = SnapshotOptions::default()
        .label(LABEL.to_string())
        .add_tags(&format!("{DRILL_TAG},source={}", r.source))?
        .to_snapshot()?;
    // the summary rides in the snapshot file, so runbooks and reports need no data pack
    snap.description = Some(
        serde_json::to_string(&DrillSummary::from(r))
            .map_err(|e| Error::internal(e.to_string()))?,
    );
    let mut opts = RusticBackupOptions::default();
    opts.parent_opts.force = true;
    let source = StreamSource::new(path.clone(), Cursor::new(json));
    repo.with_indexed_ids(|idx| {
        Ok(idx.archive(&opts, &source, snap, std::slice::from_ref(&path))?)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{html, markdown, BackupKind, DrillReport, Objective, Restored};
    use crate::ops::drill::{Check, RpoPoint};

    fn report(kind: BackupKind) -> DrillReport {
        let at: jiff::Timestamp = "2026-12-05T18:28:38Z".parse().unwrap();
        DrillReport {
            id: "drill-20261205T182838Z".into(),
            source: "app-db".into(),
            backup_id: "46b788de".repeat(8),
            database: "app".into(),
            restored: if kind == BackupKind::Physical {
                Restored::WholeCluster
            } else {
                Restored::Database
            },
            backup_finished_at: at,
            backup_bytes: 1000,
            started_at: at,
            finished_at: at,
            server_version: "17.2".into(),
            phases: Vec::new(),
            checks: vec![Check {
                name: "hook: psql -Atc \"select count(*) from marker\"".into(),
                ok: true,
                detail: "exit 0; the lines of its output:\n2".into(),
            }],
            tables: Vec::new(),
            rto: Objective::new(10.0, Some("2h")),
            rpo: Objective::new(20.0, Some("1h")),
            rpo_point: Some(RpoPoint {
                at,
                backup_id: Some("9c0ffee1".repeat(8)),
                lsn: None,
                what: "the newest logical backup of database \"app\", 9c0ffee1".into(),
            }),
            extrapolated_rto_secs: None,
            production_bytes: None,
            restored_bytes: None,
            extrapolation_misses_rto: false,
            passed: true,
            audit_head: None,
            evidence_error: None,
            kind,
            target: None,
            reached: None,
            scratch_server: None,
            not_checked: Vec::new(),
            written_by: Some("0.1.0 (0123456789 2026-12-06)".into()),
        }
    }

    #[test]
    fn only_a_comparison_failing_after_hooks_before_checks_is_a_fault_injected() {
        let check = |name: &str, ok: bool| Check {
            name: name.into(),
            ok,
            detail: String::new(),
        };
        let mut r = report(BackupKind::Logical);
        r.passed = false;
        r.checks = vec![
            check("hook before checks: psql -c 'delete from t'", true),
            check(crate::ops::drill::TRUTH_CHECK, false),
            check("table public.t", false),
        ];
        assert!(crate::ops::evidence::DrillSummary::from(&r).fault_injected);
        // an assertion that failed too is a failure of its own
        // a schema change the definitions check found is the fault too
        r.checks
            .push(check(crate::ops::drill::DEFINITIONS_CHECK, false));
        assert!(crate::ops::evidence::DrillSummary::from(&r).fault_injected);
        r.checks.push(check("assertion: select false", false));
        assert!(!crate::ops::evidence::DrillSummary::from(&r).fault_injected);
        // no hook before the checks: a real difference
        r.checks = vec![check(crate::ops::drill::TRUTH_CHECK, false)];
        assert!(!crate::ops::evidence::DrillSummary::from(&r).fault_injected);
        // a passed drill injected nothing that was found
        r.passed = true;
        r.checks = vec![check("hook before checks: true", true)];
        assert!(!crate::ops::evidence::DrillSummary::from(&r).fault_injected);
    }

    #[test]
    fn a_physical_drill_is_of_the_whole_cluster_in_every_rendering() {
        let r = report(BackupKind::Physical);
        let md = markdown(&r);
        assert!(
            md.contains("- source: `app-db`, the whole cluster (hooks and assertions ran in database `app`)"),
            "{md}"
        );
        assert!(!md.contains(", database `app`\n"), "{md}");
        let page = html(&r);
        assert!(
            page.contains("Source <code>app-db</code>, the whole cluster (hooks and assertions ran in database <code>app</code>)"),
            "{page}"
        );
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["restored"], "whole_cluster", "{json}");
        // a logical drill restored that one database
        let r = report(BackupKind::Logical);
        assert!(markdown(&r).contains("- source: `app-db`, database `app`\n"));
        assert!(html(&r).contains("Source <code>app-db</code>, database <code>app</code>;"));
        assert_eq!(serde_json::to_value(&r).unwrap()["restored"], "database");
    }

    #[test]
    fn names_in_the_markdown_are_shown_never_rendered() {
        let mut r = report(BackupKind::Logical);
        r.checks.push(Check {
            name: "table public.<img src=x onerror=alert(1)>".into(),
            ok: true,
            detail: "a | b\nc".into(),
        });
        let md = markdown(&r);
        assert!(
            md.contains(
                "| table public.&lt;img src=x onerror=alert(1)&gt; | pass | a \\| b<br>c |"
            ),
            "{md}"
        );
        assert!(!md.contains("<img"), "{md}");
    }

    #[test]
    fn a_margin_is_shown_to_the_second() {
        assert_eq!(super::margin(597.4), "9 min 57 s");
        assert_eq!(super::margin(-1.44), "1.4 s");
        assert_eq!(super::margin(7260.0), "2 h 01 min");
        let mut r = report(BackupKind::Logical);
        r.rto = Objective::new(3.0, Some("10m"));
        assert!(
            markdown(&r).contains("met (margin 9 min 57 s)"),
            "{}",
            markdown(&r)
        );
    }

    #[test]
    fn a_report_claims_only_what_its_kind_checked_and_shows_target_and_warnings() {
        let mut r = report(BackupKind::Physical);
        r.target = Some("time 2026-12-05T18:00:00Z".into());
        r.evidence_error = Some("appending the audit head to /h: Permission denied".into());
        let md = markdown(&r);
        assert!(
            md.contains("- recovery target: time 2026-12-05T18:00:00Z"),
            "{md}"
        );
        assert!(
            md.contains(
                "- **evidence warning**: appending the audit head to /h: Permission denied"
            ),
            "{md}"
        );
        assert!(
            md.contains("its WAL replayed to the recovery target"),
            "{md}"
        );
        assert!(!md.contains("content hashes"), "{md}");
        let page = html(&r);
        assert!(
            page.contains("Recovery target: time 2026-12-05T18:00:00Z."),
            "{page}"
        );
        assert!(
            page.contains("Evidence warning: appending the audit head"),
            "{page}"
        );
        assert!(page.contains(&r.backup_id), "the whole backup id: {page}");
        let md = markdown(&report(BackupKind::Logical));
        assert!(
            md.contains("row counts and content hashes recorded at backup time"),
            "{md}"
        );
        assert!(!md.contains("evidence warning"), "{md}");
    }

    #[test]
    fn a_failed_drill_is_evidence_of_a_failed_test_and_claims_no_check_that_did_not_run() {
        // the backup could not be read: nothing was restored, compared or achieved
        let mut r = report(BackupKind::Logical);
        r.passed = false;
        r.checks = vec![Check {
            name: "backup readable and intact".into(),
            ok: false,
            detail: "pack 1234 is damaged".into(),
        }];
        for o in [&mut r.rto, &mut r.rpo] {
            o.not_achieved = true;
            o.met = false;
            o.margin_secs = None;
        }
        r.not_checked = vec!["the rows of materialized views (their contents are checked)".into()];
        let md = markdown(&r);
        let page = html(&r);
        for text in [&md, &page] {
            assert!(
                text.contains("Evidence for SOC 2 CC9.1 / A1.3 of a failed restore test: the restore did not complete"),
                "{text}"
            );
            assert!(!text.contains("content hashes"), "{text}");
            assert!(!text.contains("Not checked"), "{text}");
        }
        // the objectives table shows no failure's seconds as an achieved time
        assert!(page.contains("<td>RTO</td><td>not achieved</td>"), "{page}");
        // a restore that completed and then failed a check: the comparison ran
        let mut r = report(BackupKind::Logical);
        r.passed = false;
        r.checks[0].ok = false;
        r.not_checked = vec!["owners and grants".into()];
        let md = markdown(&r);
        assert!(
            md.contains("of a failed restore test: a backup restored into an isolated cluster and every table compared")
                && md.contains("Not checked: owners and grants."),
            "{md}"
        );
        // a passed one says what it proved, as before
        assert!(markdown(&report(BackupKind::Logical)).contains(
            "Evidence for SOC 2 CC9.1 / A1.3: a backup restored into an isolated cluster"
        ));
    }

    #[test]
    fn the_rpo_says_what_it_was_measured_to_and_a_hooks_output_is_kept() {
        let r = report(BackupKind::Logical);
        let md = markdown(&r);
        assert!(
            md.contains("  - measured to the newest logical backup of database \"app\", 9c0ffee1, 2026-12-05T18:28:38Z"),
            "{md}"
        );
        assert!(
            md.contains("| pass | exit 0; the lines of its output:<br>2 |"),
            "{md}"
        );
        let page = html(&r);
        assert!(
            page.contains(
                "RPO measured to the newest logical backup of database &quot;app&quot;, 9c0ffee1"
            ),
            "{page}"
        );
        assert!(
            page.contains("exit 0; the lines of its output:<br>2</td>"),
            "{page}"
        );
    }
}
