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
    // a copy made with `restic copy` would hold no lifeboat backups: never recommended
    assert!(
        book.contains("not `restic copy`") && !book.contains("(e.g. `restic copy`"),
        "{book}"
    );
    // replacing the original uses the backup from before the damage, not the newest
    assert!(
        book.contains("restore --before \"YYYY-MM-DDTHH:MM:SSZ\" --source app-db --database app --clean --force")
            && !book.contains("--latest --source app-db --database app --clean"),
        "{book}"
    );
    assert!(book.contains("All times here are UTC"), "{book}");
    assert!(
        book.contains("every command below works as `lifeboat --repo "),
        "{book}"
    );
    // written from another repository (--repo), its commands act on that one
    let second = ws.path().join("second");
    ok(lb(&cfg).arg("--repo").arg(&second).arg("init"));
    let other = ok(lb(&cfg).arg("--repo").arg(&second).arg("runbook"));
    assert!(
        other.contains(&format!("--repo {} verify --all", second.display())),
        "{other}"
    );
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
    assert!(
        pack.contains("| app-db | 2h | 24h | 1 | 1 | 1 of 1 | 1 of 1 |"),
        "{pack}"
    );
    assert!(pack.contains("| app-db | logical | app | 1 |"), "{pack}");
    assert!(pack.contains("- backup: 1 ok, 1 failed"), "{pack}");
    assert!(
        pack.contains("**Failed operations** in the period:\n\n- failed backup:")
            && pack.contains("gone-db"),
        "{pack}"
    );
    assert!(pack.contains("- verify: 1 ok, 0 failed"), "{pack}");
    assert!(
        pack.lines()
            .any(|l| l.starts_with(&format!("| {drill_id} |"))
                && l.contains("| app-db | app | logical |")
                && l.contains("passed")),
        "{pack}"
    );
    assert!(
        pack.contains("matches the newest head kept outside the repository"),
        "{pack}"
    );

    // the objective is what the drill was judged against; a later change shows beside it
    let changed = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("rto = \"2h\"", "rto = \"1s\"");
    std::fs::write(&cfg, changed).unwrap();
    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.contains("| app-db | 2.0 h (now 1s) | 24h | 1 | 1 | 1 of 1 |"),
        "{pack}"
    );
    // a stretch without a logical backup longer than the RPO objective is marked
    assert!(!pack.contains("(RPO objective"), "{pack}");
    let changed = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("rpo = \"24h\"", "rpo = \"1s\"");
    std::fs::write(&cfg, changed).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.lines()
            .any(|l| l.starts_with("| app-db | logical | app | 1 |")
                && l.contains("** (RPO objective 1 s)")),
        "{pack}"
    );

    // a drill report removed from the repository: its audit entry still names it, and the
    // pack says so at the top and exits 6 (the drill report is the newest snapshot file)
    let snapshots = ws.repo_path().join("snapshots");
    let newest = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let aside = ws.path().join("drill-snapshot");
    std::fs::rename(&newest, &aside).unwrap();
    let (code, pack, _) = run(lb(&cfg).arg("report"));
    assert_eq!(code, 6, "{pack}");
    assert!(
        pack.starts_with("# Backup and recovery evidence")
            && pack.contains("**WARNING: this evidence does not verify**")
            && pack.contains(&format!(
                "records drill {drill_id} (ok), but its report is not in the repository"
            )),
        "{pack}"
    );
    std::fs::rename(&aside, &newest).unwrap();
    ok(lb(&cfg).arg("report"));
    // --json -o writes the JSON to the file
    let json_file = ws.path().join("pack.json");
    let said: serde_json::Value = serde_json::from_str(&ok(lb(&cfg)
        .args(["--json", "report", "-o"])
        .arg(&json_file)))
    .expect("stdout stays JSON");
    assert_eq!(said["written_to"], json_file.display().to_string().as_str());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert!(v["evidence_problems"].as_array().unwrap().is_empty(), "{v}");
    // --format belongs to --drill
    let (code, _, err) = run(lb(&cfg).args(["report", "--format", "html"]));
    assert_eq!(code, 2, "{err}");

    // a period before any of it holds nothing, and says so
    let empty = ok(lb(&cfg).args(["report", "--from", "2001-01-01", "--to", "2001-12-31"]));
    assert!(empty.contains("**no drill in this period**"), "{empty}");
    // dates without a zone are this machine's: the pack says how it was asked for
    assert!(
        empty.contains("Period as asked for: `--from 2001-01-01 --to 2001-12-31`, read in "),
        "{empty}"
    );
    let exact = ok(lb(&cfg).args([
        "report",
        "--from",
        "2001-01-01T00:00:00Z",
        "--to=2001-12-31T23:59:59Z",
    ]));
    assert!(!exact.contains("Period as asked for"), "{exact}");
    assert!(empty.contains("| — | — | **0** |"), "{empty}");
    assert!(
        pack.contains("This repository's audit log begins at")
            && empty.contains("This repository's audit log begins at"),
        "both periods start before the repository: {empty}"
    );

    // the kept head names an entry the repository's log no longer has (its newest entries
    // were cut off): the pack says the log does not verify
    let mut kept = std::fs::read_to_string(&head_file).unwrap();
    kept.push_str(&format!(
        "99 {} 2026-12-05T00:00:00Z drill ok\n",
        "ab".repeat(32)
    ));
    std::fs::write(&head_file, kept).unwrap();
    let (code, pack, _) = run(lb(&cfg).arg("report"));
    assert_eq!(code, 6, "{pack}");
    assert!(pack.contains("**does not verify**"), "{pack}");
    // and `audit verify` checks the configured head file without being told
    let (code, out, _) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}");
}

/// The fenced `sh` blocks of the runbook section that starts with `heading`, in order.
fn sh_blocks(book: &str, heading: &str) -> Vec<String> {
    let section = &book[book.find(heading).expect("section")..];
    let section = &section[..section[heading.len()..]
        .find("\n### ")
        .map_or(section.len(), |e| e + heading.len())];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b[..b.find("```").expect("closed block")].to_string())
        .collect()
}

/// Runs `script` with bash, the built lifeboat first in PATH; panics with its output
/// unless it succeeds.
fn bash(script: &str) {
    let bin = assert_cmd::cargo::cargo_bin("lifeboat");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", path)
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_runbooks_accidental_delete_commands_bring_rows_and_tables_back_as_written() {
    let (c, _ws, cfg) = backed_up(300);
    // a partitioned table: its rows are in the partitions, which the copy-back must reach
    c.sql(
        "app",
        "create table shop.parts (id int primary key, v text) partition by range (id); \
         create table shop.parts_low partition of shop.parts for values from (0) to (100); \
         create table shop.\"parts high\" partition of shop.parts for values from (100) to (1000); \
         insert into shop.parts select g, 'part ' || g from generate_series(1, 300) g",
    )
    .unwrap();
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let count = |t: &str| c.sql("app", &format!("select count(*) from {t}")).unwrap();
    let events = count("shop.events");
    let attachments = count("shop.attachments");
    let book = ok(lb(&cfg).arg("runbook"));
    let scenario = "### Scenario 5: accidental delete";
    // step 1 as printed, with a time after the backup
    let restore = book[book.find(scenario).unwrap()..]
        .lines()
        .find(|l| l.contains("--to-database app_before"))
        .expect("the side restore")
        .trim()
        .trim_matches('`')
        .replace(
            "YYYY-MM-DDTHH:MM:SSZ",
            // whole seconds: the next one, so that the backup finished before it
            &(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1))
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        );
    assert!(restore.starts_with("lifeboat --config "), "{restore}");

    // the accident: every tenth event deleted, then the application goes on writing
    c.sql("app", "delete from shop.events where id % 10 = 0")
        .unwrap();
    let next = c
        .sql(
            "app",
            "insert into shop.events (user_id, kind, payload, occurred_at) select user_id, kind, payload, occurred_at from shop.events limit 1 returning id",
        )
        .unwrap();
    bash(&restore);
    let blocks = sh_blocks(&book, scenario);
    assert_eq!(
        blocks.len(),
        4,
        "connections, dropped table, schema comparison, deleted rows: {book}"
    );
    let vars = |t: &str| blocks[0].replace("T=schema.table", &format!("T={t}"));
    bash(&format!("{}{}", vars("shop.events"), blocks[3]));
    assert_eq!(
        count("shop.events").parse::<u64>().unwrap(),
        events.parse::<u64>().unwrap() + 1,
        "every deleted row is back, the new one kept"
    );
    // the live sequence was not rewound: the next insert takes a new id
    let after = c
        .sql(
            "app",
            "insert into shop.events (user_id, kind, payload, occurred_at) select user_id, kind, payload, occurred_at from shop.events limit 1 returning id",
        )
        .unwrap();
    assert!(
        after.parse::<i64>().unwrap() > next.parse::<i64>().unwrap(),
        "{next} then {after}"
    );
    assert_eq!(
        c.sql(
            "app",
            "select count(*) from pg_namespace where nspname = 'lifeboat_recovered'"
        )
        .unwrap(),
        "0"
    );

    // the copy it was read from is as it was: it may be a read-only copy or a standby
    assert_eq!(
        c.sql(
            "app_before",
            "select count(*) from pg_namespace where nspname = 'lifeboat_recovered'"
        )
        .unwrap(),
        "0"
    );
    // a partitioned table's rows come back into its partitions, also when the first
    // command is run a second time after a failure
    c.sql("app", "delete from shop.parts where id % 3 = 0")
        .unwrap();
    let first = blocks[3].lines().next().unwrap().trim_end_matches(" &&");
    bash(&format!("{}{first}\n", vars("shop.parts")));
    bash(&format!("{}{}", vars("shop.parts"), blocks[3]));
    assert_eq!(count("shop.parts"), "300");
    assert_eq!(count("shop.\"parts high\""), "201");
    // and a dropped one with its partitions
    c.sql("app", "drop table shop.parts").unwrap();
    bash(&format!("{}{}", vars("shop.parts"), blocks[1]));
    assert_eq!(count("shop.parts"), "300");
    assert_eq!(
        c.sql(
            "app",
            "select count(*) from pg_inherits where inhparent = 'shop.parts'::regclass"
        )
        .unwrap(),
        "2"
    );

    // a dropped table comes back whole, while the application goes on trying to write to
    // it: no insert may land between the table's creation and its sequence's setval (ids
    // taken twice, no primary key, nothing rolled back)
    c.sql("app", "drop table shop.attachments").unwrap();
    let mut app = std::process::Command::new(
        lifeboat_core::sources::postgres::conn::PgBin::new(None).program("psql"),
    )
    .args(["-X", "-q", "-d", &c.dsn("app")])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut stdin = app.stdin.take().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = "insert into shop.attachments (order_id, name, data) values (1, 'live', '\\x00');\n".repeat(50);
                if stdin.write_all(batch.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    bash(&format!("{}{}", vars("shop.attachments"), blocks[1]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    app.wait().unwrap();
    let live: u64 = c
        .sql(
            "app",
            "select count(*) from shop.attachments where name = 'live'",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert!(live > 0, "the application never wrote after the copy-back");
    assert_eq!(
        count("shop.attachments").parse::<u64>().unwrap(),
        attachments.parse::<u64>().unwrap() + live
    );
    assert_eq!(
        c.sql(
            "app",
            "select count(*) from pg_constraint where conname = 'attachments_pkey'"
        )
        .unwrap(),
        "1"
    );
}

/// A backup stored by a run that could not log it (killed by the OOM killer in the field;
/// here, its entry parked because the log could not be written): the pack names it until
/// its entry is in the log.
#[test]
fn the_pack_names_backups_that_no_audit_entry_names() {
    let (_c, ws, cfg) = backed_up(10);
    let pack = || -> serde_json::Value {
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "report"]))).unwrap()
    };
    assert!(pack().get("unlogged_backups").is_none(), "all logged");
    // the audit lock cannot be made: the next backup's entry is parked on this host
    let lock = ws.repo_path().join("lifeboat-audit.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(ws.path().join("no/such/dir"), &lock).unwrap();
    let out = ok(lb(&cfg).args(["--json", "backup", "--kind", "logical"]));
    let stored: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = stored["backups"][0]["id"]
        .as_str()
        .expect("stored id")
        .to_string();
    let unlogged = pack();
    assert!(
        unlogged["unlogged_backups"]
            .as_array()
            .is_some_and(|u| u.len() == 1
                && u[0].as_str().unwrap().starts_with(&id[..8])
                && u[0]
                    .as_str()
                    .unwrap()
                    .contains("its entry is parked on this host")),
        "{unlogged}"
    );
    let md = ok(lb(&cfg).arg("report"));
    assert!(md.contains("**In no audit entry**: 1 backup(s)"), "{md}");
    // once the log can be written, the parked entry goes in and the pack is whole again
    std::fs::remove_file(&lock).unwrap();
    ok(lb(&cfg).args(["verify", "--all"]));
    assert!(pack().get("unlogged_backups").is_none(), "{}", pack());
}

/// The repository at `ws`, opened through the library.
fn open(ws: &Workspace) -> lifeboat_core::repository::Repo {
    let cfg = lifeboat_core::config::RepositoryConfig {
        url: Some(ws.repo_path().display().to_string()),
        ..lifeboat_core::config::RepositoryConfig::default()
    };
    lifeboat_core::repository::Repo::open(
        &cfg,
        &lifeboat_core::secret::Secret::new(lifeboat_testing::REPO_PASSWORD),
        rustic_core::NoProgressBars,
    )
    .unwrap()
}

/// Rewrites the audit log as someone with the repository password could: entry 1's
/// details changed, and every hash from there computed again, so the chain verifies.
fn rewrite_and_rehash(ws: &Workspace) {
    use lifeboat_core::repository::audit::{Entry, AUDIT_TAG};
    open(ws)
        .with_open(|r| {
            let mut snaps: Vec<(rustic_core::repofile::SnapshotFile, Entry)> = r
                .get_all_snapshots()?
                .into_iter()
                .filter(|s| s.tags.contains(AUDIT_TAG))
                .map(|s| {
                    let e: Entry = serde_json::from_str(s.description.as_deref().unwrap()).unwrap();
                    (s, e)
                })
                .collect();
            snaps.sort_by_key(|(_, e)| e.seq);
            let mut prev = lifeboat_core::repository::audit::GENESIS.to_string();
            for (snap, mut e) in snaps {
                if e.seq == 1 {
                    e.details = e.details.replace("(12 bytes)", "(13 bytes)");
                }
                e.prev.clone_from(&prev);
                e.hash = e.compute_hash();
                prev.clone_from(&e.hash);
                let mut forged = snap.clone();
                forged.description = Some(serde_json::to_string(&e).unwrap());
                r.save_snapshots(vec![forged])?;
                r.delete_snapshots(&[snap.id])?;
            }
            Ok(())
        })
        .unwrap();
}

/// What the pack and `audit verify` make of the log's own record (no PostgreSQL: the
/// entries and the drill report are written through the library): a backup completed and
/// deleted since is still counted, and said apart from the drill reports; a log rewritten
/// with its hashes computed again is caught by the drill report that names the old head.
#[test]
fn the_pack_counts_deleted_backups_and_a_rehashed_log_is_caught_by_its_drill_reports() {
    use lifeboat_core::repository::audit;
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app", "host=/nonexistent dbname=app")]);
    ok(lb(&cfg).arg("init"));
    let repo = open(&ws);
    let id = "ab".repeat(32);
    audit::append(
        &repo,
        "backup",
        true,
        &format!("source app recovery point 20261205T1000Z: {id} logical app (12 bytes)"),
    )
    .unwrap();
    // the log records a backup the repository does not hold: counted, and named under
    // its own heading, not the drill reports'
    let (code, pack, _) = run(lb(&cfg).arg("report"));
    assert_eq!(code, 6, "{pack}");
    assert!(
        pack.contains("| app | logical | app | 1 (1 no longer in the repository: 1 **gone without a record**) |"),
        "{pack}"
    );
    assert!(
        pack.contains("The repository **does not hold everything the audit log records**")
            && !pack.contains("do not match the audit log"),
        "{pack}"
    );
    ok(lb(&cfg).args(["audit", "deleted", &id[..8], "--reason", "erasure request"]));
    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.contains("| app | logical | app | 1 (1 no longer in the repository: 1 deleted on purpose (`audit deleted`)) |"),
        "{pack}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "report"]))).unwrap();
    assert_eq!(json["backups"][0]["count"], 1, "{json}");
    assert_eq!(json["backups"][0]["no_longer_held"], 1, "{json}");
    assert_eq!(json["backups"][0]["deleted_on_purpose"], 1, "{json}");

    // a drill, its entry and its report naming that entry's hash
    let drill_id = "drill-20261205T100000Z-0a0b";
    let entry = audit::append(
        &repo,
        "drill",
        true,
        &format!(
            "{drill_id} of logical backup {} (\"app\") of source app: passed",
            &id[..8]
        ),
    )
    .unwrap();
    let now = jiff::Timestamp::now().to_string();
    let objective = serde_json::json!({"achieved_secs": 1.0, "objective_secs": null, "met": true, "margin_secs": null});
    let report: lifeboat_core::ops::drill::DrillReport =
        serde_json::from_value(serde_json::json!({
            "id": drill_id, "source": "app", "backup_id": id, "database": "app",
            "backup_finished_at": now, "backup_bytes": 12, "started_at": now, "finished_at": now,
            "server_version": "17", "phases": [], "checks": [], "rto": objective, "rpo": objective,
            "extrapolated_rto_secs": null, "production_bytes": null, "restored_bytes": null,
            "extrapolation_misses_rto": false, "passed": true, "audit_head": entry.hash,
        }))
        .unwrap();
    lifeboat_core::ops::evidence::store(&repo, &report).unwrap();
    ok(lb(&cfg).args(["audit", "verify"]));
    let pack = ok(lb(&cfg).arg("report"));
    assert!(
        pack.contains("verifies (no entry edited, removed or reordered)"),
        "{pack}"
    );

    rewrite_and_rehash(&ws);
    let (code, out, err) = run(lb(&cfg).args(["audit", "verify"]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains(&format!("drill report {drill_id}"))
            && out.contains(&format!(
                "names audit head {}…, which is not in the log",
                &entry.hash[..16]
            )),
        "{out}"
    );
    // the nightly `verify --all` catches it too, not only `audit verify`
    let (code, out, err) = run(lb(&cfg).args(["verify", "--all"]));
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains(&format!("audit log: drill report {drill_id}")),
        "{out}"
    );
    let (code, pack, _) = run(lb(&cfg).arg("report"));
    assert_eq!(code, 6, "{pack}");
    assert!(
        !pack.contains("no entry edited")
            && pack.contains("is consistent in itself, but **1 drill report(s) name an audit head that is not in the log**"),
        "{pack}"
    );

    // a zone abbreviation is refused for what it is
    let (code, _, err) = run(lb(&cfg).args(["report", "--from", "2026-12-07 10:21 CET"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("abbreviations are refused because they are ambiguous")
            && err.contains("Europe/Berlin"),
        "{err}"
    );
}
