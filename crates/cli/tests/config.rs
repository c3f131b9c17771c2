//! `lifeboat config check`: every connection a later command makes is tried now, and a
//! setting nothing acts on yet is named rather than passed as working.

mod common;

use common::{lb, ok, run};
use lifeboat_testing::{cluster, Workspace};

#[test]
fn settings_nothing_acts_on_are_noted_not_passed_as_working() {
    let c = cluster();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("postgres"))]);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "schedule = { logical = \"0 2 * * *\", physical = \"0 1 * * 0\" }\n\
         retention = { last = 7, hourly = 24, daily = 30, weekly = 8, monthly = 12, yearly = 7, schema_days = 90 }\n\
         drill = { schedule = \"0 5 1 * *\" }\n",
    );
    text.push_str(&format!(
        "\n[[copies]]\nurl = {:?}\n",
        ws.path().join("offsite").display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();
    ok(lb(&cfg).arg("init"));
    let password_file = ws.path().join("repo.pass");
    let mode = |m: u32| {
        std::fs::set_permissions(
            &password_file,
            std::os::unix::fs::PermissionsExt::from_mode(m),
        )
        .unwrap();
    };
    mode(0o640);

    let out = ok(lb(&cfg).args(["config", "check"]));
    for (key, says) in [
        ("source.app-db.schedule", "nothing runs these backups"),
        ("source.app-db.drill.schedule", "nothing runs these drills"),
        (
            "source.app-db.retention",
            "last 7, hourly 24, daily 30, weekly 8, monthly 12, yearly 7, schema_days 90: not enforced yet",
        ),
        ("copies.url", "copies are not made yet"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("note") && l.contains(key) && l.contains(says)),
            "{key}: {out}"
        );
    }
    let lines: Vec<serde_json::Value> =
        serde_json::from_str(&ok(lb(&cfg).args(["--json", "config", "check"]))).unwrap();
    let notes: Vec<&str> = lines
        .iter()
        .filter(|l| l["note"] == true)
        .map(|l| l["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            // the test cluster logs no DELETE (log_statement = none)
            "source app-db",
            "source.app-db.schedule",
            "source.app-db.drill.schedule",
            "source.app-db.retention",
            "copies.url"
        ]
    );
    // a password file every user of the host may read is named
    mode(0o644);
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.lines().any(|l| l.starts_with("note")
            && l.contains("repository.password_file")
            && l.contains("open to every user")),
        "{out}"
    );
    // a password in the dsn, in a config file every user may read
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("user=postgres", "user=postgres password=pw-in-dsn");
    std::fs::write(&cfg, text).unwrap();
    let config_mode = |m: u32| {
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
    };
    config_mode(0o644);
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.lines().any(|l| l.starts_with("note")
            && l.contains("source app-db")
            && l.contains("its dsn holds a password")),
        "{out}"
    );
    assert!(!out.contains("pw-in-dsn"), "{out}");
    config_mode(0o600);
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(!out.contains("its dsn holds a password"), "{out}");
}

/// Run as root, lifeboat runs, reads and writes what its configuration names as root: one
/// every user may change is refused before anything of it runs (`config check` too, which
/// runs the secret commands), one another user owns is warned about, and `config check`
/// names it.
#[test]
fn root_does_not_follow_a_configuration_others_may_write() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: nothing to check");
        return;
    }
    let c = cluster();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("postgres"))]);
    ok(lb(&cfg).arg("init"));
    let marker = ws.path().join("ran-as-root");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[[source]]\n",
        &format!(
            "[[source]]\npassword_command = \"touch {}; echo pw\"\n",
            marker.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let set_mode = |m: u32| {
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
    };
    set_mode(0o666);
    for args in [&["list"][..], &["config", "check"][..]] {
        let (code, out, err) = run(lb(&cfg).args(args));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("refused") && err.contains("every user of this host may change it"),
            "{err}"
        );
    }
    assert!(
        !marker.exists(),
        "the command of a file anyone may write ran as root"
    );
    // the PostgreSQL user's file (the README's simplest setup): followed, with a warning
    set_mode(0o600);
    let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    nix::unistd::chown(&cfg, Some(pg.uid), None).unwrap();
    let (code, _, err) = run(lb(&cfg).args(["list"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning:") && err.contains("it belongs to postgres"),
        "{err}"
    );
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("note") && l.contains("configuration run as root")),
        "{out}"
    );
    assert!(
        marker.exists(),
        "config check runs the source's password command"
    );
    // found in the working directory without --config, another user's file is refused
    // before anything of it runs
    std::fs::remove_file(&marker).unwrap();
    let here = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(["config", "check"])
        .current_dir(cfg.parent().unwrap())
        .env("LIFEBOAT_STATE_DIR", ws.path().join("state"))
        .env_remove("LIFEBOAT_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&here.stderr);
    assert_eq!(here.status.code(), Some(2), "{said}");
    assert!(
        said.contains("refused") && said.contains("it belongs to postgres"),
        "{said}"
    );
    assert!(!marker.exists(), "its password command ran as root");
    // root's own file: nothing to say
    nix::unistd::chown(&cfg, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let (_, _, err) = run(lb(&cfg).args(["list"]));
    assert!(!err.contains("warning:"), "{err}");

    // root's file whose password_command runs a script anyone may change (made 0777 "to
    // get it working"): refused before it runs, by its own path or given to sh
    let script = ws.path().join("get-pw.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\necho pw\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let plain = std::fs::read_to_string(&cfg).unwrap();
    for command in [
        script.display().to_string(),
        format!("sh {}", script.display()),
    ] {
        let text = plain.replace(&format!("touch {}; echo pw", marker.display()), &command);
        std::fs::write(&cfg, text).unwrap();
        let (code, out, err) = run(lb(&cfg).args(["config", "check"]));
        assert_eq!(code, 2, "{command}: {out}{err}");
        assert!(
            err.contains(&format!("{} holds what lifeboat runs", script.display()))
                && err.contains("every user of this host may change it"),
            "{err}"
        );
        assert!(!marker.exists(), "the script ran as root");
    }
    // another user's configuration (a note of its own) does not hide the script
    let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    nix::unistd::chown(&cfg, Some(pg.uid), None).unwrap();
    let (code, out, err) = run(lb(&cfg).args(["config", "check"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!("{} holds what lifeboat runs", script.display())),
        "{err}"
    );
    assert!(!marker.exists(), "the script ran as root");
    nix::unistd::chown(&cfg, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    // made root's alone, it runs
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    ok(lb(&cfg).args(["config", "check"]));
    assert!(
        marker.exists(),
        "config check runs the source's password command"
    );
}

#[test]
fn the_drill_server_is_connected_to_as_a_drill_would() {
    let prod = cluster();
    let scratch = cluster();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &prod.dsn("postgres"))]);
    ok(lb(&cfg).arg("init"));
    let base = std::fs::read_to_string(&cfg).unwrap();
    let with_server = |dsn: &str| {
        std::fs::write(&cfg, format!("{base}drill = {{ server = {dsn:?} }}\n")).unwrap();
    };

    with_server(&scratch.dsn("postgres"));
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.lines().any(|l| l.starts_with("ok")
            && l.contains("drill.server of app-db")
            && l.contains("not the production cluster")),
        "{out}"
    );

    // a scratch server that refuses lifeboat fails here, not in the first drill
    with_server(
        &scratch
            .dsn("postgres")
            .replace("user=postgres", "user=nobody_here"),
    );
    let (code, out, err) = run(lb(&cfg).args(["config", "check"]));
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("drill.server of app-db")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("source app-db")),
        "the source itself still checks out: {out}"
    );

    // a role that may log in but not create the drill's database: named, with the fix
    scratch
        .sql("postgres", "create role driller login")
        .unwrap();
    with_server(
        &scratch
            .dsn("postgres")
            .replace("user=postgres", "user=driller"),
    );
    let (code, out, _) = run(lb(&cfg).args(["config", "check"]));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("role \"driller\", which may not create databases")),
        "{out}"
    );
    assert!(
        out.contains("     hint: on the scratch server: ALTER ROLE \"driller\" CREATEDB"),
        "{out}"
    );
    let json = run(lb(&cfg).args(["--json", "config", "check"])).1;
    assert!(
        json.contains(r#""hint": "on the scratch server: ALTER ROLE \"driller\" CREATEDB"#),
        "{json}"
    );
    scratch
        .sql("postgres", "alter role driller createdb")
        .unwrap();
    ok(lb(&cfg).args(["config", "check"]));

    // production forces row-level security on a table and a policy names a role the
    // scratch server lacks: a drill there (without production's roles) would fail
    prod.sql(
        "postgres",
        "create role app_reader nologin; create table guarded (id int);
         alter table guarded enable row level security; alter table guarded force row level security;
         create policy readers on guarded to app_reader using (true)",
    )
    .unwrap();
    let (code, out, _) = run(lb(&cfg).args(["config", "check"]));
    assert_eq!(code, 2, "{out}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("drill.server of app-db"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        fail.contains("1 table(s) of database \"postgres\" force row-level security, which role driller may not bypass there (ALTER ROLE driller BYPASSRLS)")
            && fail.contains("name role(s) the scratch server lacks: app_reader"),
        "{fail}"
    );
    scratch
        .sql(
            "postgres",
            "alter role driller bypassrls; create role app_reader nologin",
        )
        .unwrap();
    ok(lb(&cfg).args(["config", "check"]));

    // production as the scratch server: refused as the drill refuses it
    with_server(&prod.dsn("postgres"));
    let (code, out, _) = run(lb(&cfg).args(["config", "check"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is the production cluster itself"), "{out}");
}

#[test]
fn a_backup_role_that_cannot_read_everything_fails_the_check_before_the_backup_does() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE app").unwrap();
    c.sql(
        "app",
        "CREATE ROLE backup LOGIN;
         CREATE TABLE public.open_t (id int); GRANT SELECT ON public.open_t TO backup;
         CREATE TABLE public.secret (id int);
         CREATE TABLE public.tenant (id int); GRANT SELECT ON public.tenant TO backup;
         ALTER TABLE public.tenant ENABLE ROW LEVEL SECURITY;
         CREATE ROLE bystander LOGIN;
         CREATE FUNCTION public.definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'select 1';
         REVOKE EXECUTE ON FUNCTION public.definer() FROM PUBLIC;",
    )
    .unwrap();
    let ws = Workspace::new();
    let dsn = c.dsn("app").replace("user=postgres", "user=backup");
    let cfg = ws.local_config(&[("app-db", &dsn)]);
    ok(lb(&cfg).arg("init"));

    let (code, out, _) = run(lb(&cfg).args(["config", "check"]));
    assert_ne!(code, 0, "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        fails
            .iter()
            .any(|l| l.contains("role and settings of app-db") && l.contains("public.secret")),
        "{out}"
    );
    assert!(
        fails
            .iter()
            .any(|l| l.contains("row-level security") && l.contains("public.tenant")),
        "{out}"
    );
    assert!(
        out.contains("pg_read_all_data") && out.contains("BYPASSRLS"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("note") && l.contains("the role backup may not read pg_authid")),
        "{out}"
    );
    assert!(out.contains("GRANT pg_read_all_data TO backup"), "{out}");
    // a source scheduled for physical backups only may read no table: notes, no failure
    let logical_cfg = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{logical_cfg}schedule = {{ physical = \"0 1 * * 0\" }}\n"),
    )
    .unwrap();
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.lines().any(|l| l.starts_with("note")
            && l.contains("public.secret")
            && l.contains("the schedule takes physical backups only")),
        "{out}"
    );
    std::fs::write(&cfg, logical_cfg).unwrap();

    // the backup fails as announced, with the same advice
    let (code, _, err) = run(lb(&cfg).args(["backup", "--kind", "logical"]));
    assert_eq!(code, 8, "{err}");
    // every kind failing: each is named, not the first alone
    let (code, _, both) = run(lb(&cfg).args(["backup", "--kind", "logical", "--kind", "globals"]));
    assert_ne!(code, 0, "{both}");
    assert!(both.contains("the globals backup failed too"), "{both}");
    assert!(
        err.contains("pg_read_all_data") || err.contains("BYPASSRLS"),
        "{err}"
    );

    // granted: the logical backup's blockers are gone, and pg_read_all_data reads
    // pg_authid too: the globals backup works without a superuser
    c.sql(
        "app",
        "GRANT pg_read_all_data TO backup; ALTER ROLE backup BYPASSRLS",
    )
    .unwrap();
    // a setting only a superuser may make: the restore below skips it with a note
    c.sql(
        "postgres",
        "ALTER DATABASE app SET log_min_duration_statement = '1s'",
    )
    .unwrap();
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(!out.contains("pg_authid"), "{out}");
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    ok(lb(&cfg).args(["backup", "--kind", "globals"]));

    // restoring as that role: the objects belong to postgres, so pg_restore fails; the
    // database the restore created goes again, so the retry is not "not empty"
    c.sql("app", "ALTER ROLE backup CREATEDB CREATEROLE")
        .unwrap();
    // roles need a superuser: refused before anything, no role half made
    let roles = || c.sql("postgres", "select count(*) from pg_roles").unwrap();
    let before = roles();
    let (code, _, err) =
        run(lb(&cfg).args(["restore", "--latest", "--to-database", "copy", "--globals"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "restoring roles (--globals) needs a superuser on the target, and backup is not one"
        ),
        "{err}"
    );
    assert_eq!(roles(), before);
    let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--to-database", "copy"]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("--no-owner") && err.contains("dropped again"),
        "{err}"
    );
    assert_eq!(
        c.sql(
            "postgres",
            "select count(*) from pg_database where datname = 'copy'"
        )
        .unwrap(),
        "0"
    );
    let out = ok(lb(&cfg).args(["restore", "--latest", "--to-database", "copy", "--no-owner"]));
    // no grants, but what production kept from PUBLIC stays kept: a SECURITY DEFINER
    // function of the restoring role must not be anyone's to run
    assert!(out.contains("revocation(s) from PUBLIC applied"), "{out}");
    assert_eq!(
        c.sql(
            "copy",
            "select has_function_privilege('bystander', 'public.definer()', 'EXECUTE')"
        )
        .unwrap(),
        "f"
    );
    assert!(
        out.contains("note: not applied") && out.contains("log_min_duration_statement"),
        "{out}"
    );
    // a name PostgreSQL would cut short is refused before anything is made
    let long = "x".repeat(64);
    let (code, _, err) = run(lb(&cfg).args(["restore", "--latest", "--to-database", &long]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("63"), "{err}");
}

/// A server whose lock table is small for the number of tables: `config check` says the
/// logical backup may run out of it, before a nightly backup does; an overwrite restore
/// that needs more locks than it holds is warned about, in its dry run too.
#[test]
fn a_lock_table_too_small_for_the_tables_is_named_before_it_runs_out() {
    let c = lifeboat_testing::Cluster::start_with(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        "max_locks_per_transaction = 10",
    )
    .unwrap();
    // 10 locks × 50 connections: about 500 slots
    for (db, tables) in [("many", 600), ("few", 200)] {
        c.sql("postgres", &format!("CREATE DATABASE {db}")).unwrap();
        for from in (1..=tables).step_by(100) {
            c.sql(
                db,
                &format!(
                    "DO $$ BEGIN FOR i IN {from}..{} LOOP EXECUTE format('CREATE TABLE t%s (id int)', i); END LOOP; END $$",
                    from + 99
                ),
            )
            .unwrap();
        }
    }
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("many", &c.dsn("many")), ("few", &c.dsn("few"))]);
    ok(lb(&cfg).arg("init"));
    let out = ok(lb(&cfg).args(["config", "check"]));
    let note = out
        .lines()
        .find(|l| l.contains("pg_dump locks its 600 tables and sequences"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(note.contains("about 500"), "{note}");
    assert!(
        out.contains("raise max_locks_per_transaction to at least 18"),
        "{out}"
    );
    assert!(!out.contains("locks its 200"), "{out}");

    ok(lb(&cfg).args(["backup", "--source", "few", "--kind", "logical"]));
    c.sql("few", "insert into t1 values (1)").unwrap();
    let (code, _, err) = run(lb(&cfg).args([
        "restore",
        "--latest",
        "--source",
        "few",
        "--clean",
        "--force",
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("needs roughly 600 locks") && err.contains("about 500"),
        "{err}"
    );
}

/// A repository directory made beforehand (`mkdir`, 0755) would give every user the key
/// file written into it: `init` takes away what it gives others, keeps the group's, and
/// says so; a group setup (setgid, 2770) keeps its mode.
#[test]
fn init_into_a_directory_every_user_may_read_makes_it_private() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    let ws = Workspace::new();
    let cfg = ws.local_config(&[]);
    std::fs::create_dir_all(ws.repo_path()).unwrap();
    std::fs::set_permissions(ws.repo_path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("init"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("was open to every user of this host (mode 755): made it 750"),
        "{err}"
    );
    assert_eq!(mode(&ws.repo_path()), 0o750);
    let keys: Vec<_> = std::fs::read_dir(ws.repo_path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(mode(&keys[0]) & 0o007, 0, "the key file is no one else's");
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        !out.contains(&format!(
            "{} is open to every user",
            ws.repo_path().display()
        )),
        "{out}"
    );
    // a group's repository keeps its mode
    let ws = Workspace::new();
    let cfg = ws.local_config(&[]);
    std::fs::create_dir_all(ws.repo_path()).unwrap();
    std::fs::set_permissions(ws.repo_path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
    let (code, _, err) = run(lb(&cfg).arg("init"));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("open to every user"), "{err}");
    assert_eq!(mode(&ws.repo_path()), 0o2770);
    // a private one: nothing to say
    let ws = Workspace::new();
    let cfg = ws.local_config(&[]);
    let (code, _, err) = run(lb(&cfg).arg("init"));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("open to every user"), "{err}");
}

/// A server that logs no DELETE leaves the on-call without the time of an accidental one:
/// `config check` notes it, and how to find the time all the same.
#[test]
fn config_check_notes_a_server_that_logs_no_deletes() {
    let c = cluster();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("app-db", &c.dsn("postgres"))]);
    ok(lb(&cfg).arg("init"));
    let note = "the server logs no DELETE or UPDATE (log_statement = none)";
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("note") && l.contains(note) && l.contains("wal inspect")),
        "{out}"
    );
    c.sql("postgres", "alter system set log_statement = 'mod'")
        .unwrap();
    c.sql("postgres", "select pg_reload_conf()").unwrap();
    let out = ok(lb(&cfg).args(["config", "check"]));
    assert!(!out.contains("logs no DELETE"), "{out}");
}
