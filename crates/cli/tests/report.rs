//! `lifeboat report --from --to`: the evidence pack of a period, built from what really
//! happened in it, and checked against the audit head kept outside the repository; and
//! `lifeboat runbook`, the other document written from the configuration and the
//! repository: neither claims what lifeboat does not do.

mod common;

use common::{backed_up, lb, ok, run};
use lifeboat_testing::Workspace;

#[test]
fn the_pack_and_the_runbook_claim_no_pruning_and_no_copy_that_lifeboat_did_not_make() {
    // no PostgreSQL: both documents are written from the configuration and the repository
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", "host=/nonexistent dbname=app")]);
    let offsite = ws.path().join("offsite");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "retention = { last = 7, hourly = 24, daily = 30, weekly = 8, monthly = 12, yearly = 7, schema_days = 90 }\n",
    );
    text.push_str(&format!(
        "\n[[copies]]\nurl = {:?}\n",
        offsite.display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));

    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.contains(
            "- retention: app-db: configured: last 7, hourly 24, daily 30, weekly 8, monthly 12, \
             yearly 7, schema_days 90 — **not enforced**: lifeboat does not prune yet"
        ),
        "{pack}"
    );
    assert!(
        pack.contains(&format!(
            "- offsite copies: configured destination `{}` — no copy has been made by lifeboat",
            offsite.display()
        )),
        "{pack}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "report"]))).unwrap();
    assert_eq!(json["retention"][0]["enforced"], false, "{json}");
    assert_eq!(
        json["retention"][0]["configured"]["schema_days"], 90,
        "{json}"
    );
    assert_eq!(json["copies"][0]["copies_made"], 0, "{json}");

    // the runbook: --json is JSON, and region loss does not send anyone to a copy that is
    // not there
    let book: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "runbook"]))).unwrap();
    let markdown = book["markdown"].as_str().unwrap();
    assert!(
        markdown.starts_with("# Disaster-recovery runbook"),
        "{book}"
    );
    assert_eq!(book["sources"][0]["source"], "app-db", "{book}");
    assert_eq!(book["copies"][0]["holds_repository"], false, "{book}");
    assert!(!markdown.contains("Use an offsite copy"), "{markdown}");
    assert!(
        markdown.contains("Lifeboat does not write offsite copies yet")
            && markdown.contains(&format!(
                "configured destination `{}`: **there is no repository at that path now**",
                offsite.display()
            )),
        "{markdown}"
    );
    // something else put a repository there: the runbook says so
    std::fs::create_dir_all(&offsite).unwrap();
    std::fs::write(offsite.join("config"), "").unwrap();
    let book = ok(lb(&cfg).arg("runbook"));
    assert!(book.contains("a repository is there now"), "{book}");
}

#[test]
fn the_evidence_pack_counts_the_period_and_checks_the_log_against_the_kept_head() {
    let (_c, ws, cfg) = backed_up(60);
    let head_file = ws.path().join("audit.head");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "objectives = {{ rto = \"2h\", rpo = \"24h\" }}\n\n\
         [[source]]\nname = \"gone-db\"\nkind = \"postgres\"\ndsn = \"host=/nonexistent dbname=x\"\n\n\
         [audit]\nhead_file = {:?}\n",
        head_file.display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();

    // a failed backup, a verify and a drill, all in the period
    let (code, _, _) = run(lb(&cfg).args(["backup", "--source", "gone-db"]));
    assert_ne!(code, 0, "a backup of an unreachable server fails");
    ok(lb(&cfg).args(["verify", "--all"]));
    let drill: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "drill", "--source", "app-db"])))
            .unwrap();
    let drill_id = drill["id"].as_str().unwrap().to_string();

    let pack = ok(lb(&cfg).arg("report"));
    for section in [
        "## CC9.1",
        "## A1.2",
        "## A1.3",
        "## Integrity of this evidence",
    ] {
        assert!(pack.contains(section), "{section} missing:\n{pack}");
    }
    assert!(pack.contains("| app-db | 2h | 24h | 1 | 1 |"), "{pack}");
    assert!(pack.contains("| app-db | logical | 1 |"), "{pack}");
    assert!(pack.contains("- backup: 1 ok, 1 failed"), "{pack}");
    assert!(
        pack.contains("failed backup:") && pack.contains("gone-db"),
        "{pack}"
    );
    assert!(pack.contains("- verify: 1 ok, 0 failed"), "{pack}");
    assert!(
        pack.lines()
            .any(|l| l.starts_with(&format!("| {drill_id} |")) && l.contains("passed")),
        "{pack}"
    );
    assert!(
        pack.contains("matches the newest head kept outside the repository"),
        "{pack}"
    );

    // a period before any of it holds nothing, and says so
    let empty = ok(lb(&cfg).args(["report", "--from", "2001-01-01", "--to", "2001-12-31"]));
    assert!(empty.contains("**no drill in this period**"), "{empty}");
    assert!(empty.contains("| — | — | **0** |"), "{empty}");

    // the kept head names an entry the repository's log no longer has (its newest entries
    // were cut off): the pack says the log does not verify
    let mut kept = std::fs::read_to_string(&head_file).unwrap();
    kept.push_str(&format!(
        "99 {} 2026-12-05T00:00:00Z drill ok\n",
        "ab".repeat(32)
    ));
    std::fs::write(&head_file, kept).unwrap();
    let pack = ok(lb(&cfg).arg("report"));
    assert!(pack.contains("**does not verify**"), "{pack}");
    // and `audit verify` checks the configured head file without being told
    let (code, out, _) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}");
}
