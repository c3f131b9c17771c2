//! A restore must be faithful. A rich schema is backed up and restored under a new name,
//! and both databases are compared with independent SQL queries (not lifeboat's hashing).

mod common;

use common::{lb, ok};
use lifeboat_testing::{cluster, Cluster, Workspace};

const RICH: &str = r#"
CREATE ROLE fid_reader NOLOGIN;
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'application schema — ünïcödé';
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.email AS text CHECK (VALUE LIKE '%@%');
CREATE SEQUENCE app.ticket_seq START 1000 INCREMENT 7;
CREATE TABLE app.people (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  email app.email,
  mood app.mood,
  tags text[],
  profile jsonb,
  big text,
  photo bytea,
  score numeric(20,6),
  ratio double precision,
  born date,
  seen timestamptz,
  span interval,
  upper_name text GENERATED ALWAYS AS (upper(name)) STORED,
  ticket int DEFAULT nextval('app.ticket_seq')
);
COMMENT ON TABLE app.people IS 'people — 人々';
COMMENT ON COLUMN app.people.big IS 'TOAST-sized values live here';
CREATE INDEX people_name_idx ON app.people (lower(name));
CREATE TABLE app.measurements (id bigint, at date NOT NULL, value real) PARTITION BY RANGE (at);
CREATE TABLE app.measurements_2024 PARTITION OF app.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.measurements_2025 PARTITION OF app.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.audit (id serial PRIMARY KEY, person int, what text, at timestamptz DEFAULT now());
CREATE FUNCTION app.log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO app.audit (person, what) VALUES (NEW.id, TG_OP); RETURN NEW; END $$;
CREATE TRIGGER people_audit AFTER INSERT OR UPDATE ON app.people FOR EACH ROW EXECUTE FUNCTION app.log_change();
-- printed schema-qualified or not depending on the session's search_path
CREATE TABLE app.refs (id int PRIMARY KEY, rc regclass, rt regtype, rp regproc, rcfg regconfig);
INSERT INTO app.refs VALUES (1, 'app.people', 'app.mood', 'app.log_change', 'english'),
  (2, 'pg_class', 'integer', 'now', 'simple'), (3, 'app.audit', 'app.email', 'app.log_change', NULL);
CREATE VIEW app.happy_people AS SELECT id, name FROM app.people WHERE mood = 'happy';
CREATE MATERIALIZED VIEW app.mood_counts AS SELECT mood, count(*) AS n FROM app.people GROUP BY mood;
ALTER TABLE app.people ENABLE ROW LEVEL SECURITY;
CREATE POLICY people_read ON app.people FOR SELECT TO fid_reader USING (mood <> 'sad');
GRANT USAGE ON SCHEMA app TO fid_reader;
GRANT SELECT ON app.people TO fid_reader;
INSERT INTO app.people (name, email, mood, tags, profile, big, photo, score, ratio, born, seen, span)
SELECT 'Zoë Ñoño ' || g || ' 日本語 🚀', 'p' || g || '@example.com',
       (ARRAY['sad','ok','happy']::app.mood[])[1 + g % 3],
       ARRAY['a' || g, 'b"q', 'c,d', NULL],
       jsonb_build_object('n', g, 'nested', jsonb_build_object('x', g * 1.5, 'arr', jsonb_build_array(1, 'two', null)), 'quote', E'it''s\ttab'),
       CASE WHEN g % 10 = 0 THEN (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 400) i) ELSE 'short ' || g END,
       decode(md5(g::text) || md5((g+1)::text), 'hex'),
       g * 3.141593, g / 7.0::float8, date '2000-01-01' + g, timestamptz '2024-05-05 12:00:00+02' + g * interval '1 hour',
       g * interval '1 min 3 sec'
FROM generate_series(1, 500) g;
UPDATE app.people SET mood = 'happy' WHERE id % 11 = 0;
INSERT INTO app.measurements SELECT g, date '2024-06-01' + (g % 400), g * 0.5 FROM generate_series(1, 2000) g;
REFRESH MATERIALIZED VIEW app.mood_counts;
SELECT setval('app.ticket_seq', 5000);
SELECT lo_from_bytea(0, convert_to(repeat('large object ä ', 5000), 'UTF8'));
SELECT lo_from_bytea(0, '\x00ff00ff'::bytea);
-- larger than the comparison's 8 MiB pieces, and an empty one
SELECT lo_from_bytea(0, convert_to(repeat('lifeboat piece ', 1400000), 'UTF8'));
SELECT lo_create(0);
-- a function production keeps from PUBLIC (a --no-owner restore applies that itself), and
-- a DDL log written by an event trigger: a restore's own statements must not add to it
CREATE FUNCTION app.definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'select 1';
REVOKE EXECUTE ON FUNCTION app.definer() FROM PUBLIC;
CREATE TABLE app.ddl_log (id serial PRIMARY KEY, tag text);
CREATE FUNCTION app.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO app.ddl_log (tag) VALUES (tg_tag); END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION app.log_ddl();
CREATE TABLE app.after_the_trigger (id int);
"#;

/// Independent fingerprints of everything a restore must bring back.
fn fingerprint(c: &Cluster, db: &str) -> Vec<(String, String)> {
    let q = |sql: &str| c.sql(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let tables = [
        "app.people",
        "app.measurements_2024",
        "app.measurements_2025",
        "app.audit",
        "app.mood_counts",
        "app.refs",
        "app.ddl_log",
    ];
    let mut out: Vec<(String, String)> = tables
        .iter()
        .map(|t| {
            (
                (*t).to_string(),
                q(&format!("select count(*) || ':' || coalesce(md5(string_agg(x::text, '|' order by x::text)), '') from {t} x")),
            )
        })
        .collect();
    for (name, sql) in [
        ("view", "select pg_get_viewdef('app.happy_people'::regclass)"),
        ("function", "select md5(pg_get_functiondef('app.log_change'::regproc))"),
        ("trigger", "select pg_get_triggerdef(oid) from pg_trigger where tgname = 'people_audit'"),
        ("policy", "select string_agg(policyname || ' ' || qual || ' ' || roles::text, ',') from pg_policies where schemaname = 'app'"),
        ("rls", "select relrowsecurity from pg_class where oid = 'app.people'::regclass"),
        ("comments", "select string_agg(coalesce(obj_description('app.people'::regclass), '') || col_description('app.people'::regclass, 7) || obj_description(oid, 'pg_namespace'), '') from pg_namespace where nspname = 'app'"),
        ("partitions", "select string_agg(c.relname || pg_get_expr(c.relpartbound, c.oid), ',' order by c.relname) from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'app.measurements'::regclass"),
        ("sequence", "select last_value || '/' || is_called from app.ticket_seq"),
        ("identity", "select last_value from app.people_id_seq"),
        ("enum", "select string_agg(enumlabel, ',' order by enumsortorder) from pg_enum where enumtypid = 'app.mood'::regtype"),
        ("domain", "select pg_get_constraintdef(oid) from pg_constraint where contypid = 'app.email'::regtype"),
        ("indexes", "select string_agg(indexdef, ';' order by indexname) from pg_indexes where schemaname = 'app'"),
        ("grants", "select has_table_privilege('fid_reader', 'app.people', 'select')::text"),
        ("large_objects", "select count(*) || ':' || md5(string_agg(md5(lo_get(oid)), ',' order by md5(lo_get(oid)))) from pg_largeobject_metadata"),
        ("toast", "select sum(length(big)) || ':' || md5(string_agg(big, ',' order by id)) from app.people"),
        // 12.8 kB of random hex does not compress: stored out of line, in the TOAST table
        ("toast_out_of_line", "select count(*) from app.people where pg_column_size(big) > 8000"),
        ("search_path", "select coalesce((select array_to_string(setconfig, ',') from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase where d.datname = current_database() and s.setrole = 0), '')"),
        ("role_setting", "select coalesce((select array_to_string(setconfig, ',') from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase where d.datname = current_database() and s.setrole = 'fid_reader'::regrole), '')"),
        ("db_comment", "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = current_database()"),
    ] {
        out.push((name.to_string(), q(sql)));
    }
    out
}

#[test]
fn rich_schema_round_trips_under_a_new_name() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE rich").unwrap();
    c.sql("rich", RICH).unwrap();
    c.sql("rich", "ALTER DATABASE rich SET search_path TO app, public")
        .unwrap();
    c.sql(
        "rich",
        "ALTER ROLE fid_reader IN DATABASE rich SET work_mem TO '8MB'",
    )
    .unwrap();
    c.sql("rich", "COMMENT ON DATABASE rich IS 'the rich database'")
        .unwrap();
    let before = fingerprint(&c, "rich");
    assert!(
        before
            .iter()
            .any(|(k, v)| k == "toast_out_of_line" && v.trim() == "50"),
        "the fixture stores 50 values out of line: {before:?}"
    );
    assert!(
        before
            .iter()
            .any(|(k, v)| k == "search_path" && v.contains("app")),
        "{before:?}"
    );

    let ws = Workspace::new();
    let cfg = ws.local_config(&[("rich-db", &c.dsn("rich"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let (code, out, err) = common::run(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "rich_copy",
        "--jobs",
        "2",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified"), "{out}");
    // the materialized view's rows are the restore's own refresh: said, not hidden
    assert!(
        err.contains("note: 1 materialized view(s) were refreshed from the restored tables"),
        "{err}"
    );
    let after = fingerprint(&c, "rich_copy");
    for ((k, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{k} differs after restore");
    }
    // without owners, lifeboat applies production's revocations from PUBLIC itself after
    // pg_restore, when the event trigger exists: they must not fire it
    let out = ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "rich_bare",
        "--no-owner",
        // serial: pg_restore creates the event trigger, then refreshes the materialized
        // view, which fires it unless the restore keeps it from firing
        "--jobs",
        "1",
    ]));
    assert!(out.contains("revocation(s) from PUBLIC applied"), "{out}");
    assert_eq!(
        c.sql("rich_bare", "select count(*) from app.ddl_log")
            .unwrap(),
        c.sql("rich", "select count(*) from app.ddl_log").unwrap()
    );
    assert_eq!(
        c.sql(
            "rich_bare",
            "select has_function_privilege('fid_reader', 'app.definer()', 'EXECUTE')"
        )
        .unwrap(),
        "f"
    );
}

/// A database comes back with its encoding and locale: one created without them gets the
/// server's defaults, which sort and compare text differently (or refuse the encoding), and
/// a drill must create it as a restore does.
#[test]
fn a_database_keeps_its_encoding_and_locale() {
    let c = cluster();
    c.sql(
        "postgres",
        "CREATE DATABASE utf TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'",
    )
    .unwrap();
    c.sql(
        "utf",
        "CREATE TABLE w (t text); INSERT INTO w VALUES ('b'), ('A'), ('a'), ('B'), ('Ä')",
    )
    .unwrap();
    c.sql(
        "postgres",
        "CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'",
    )
    .unwrap();
    c.sql(
        "latin",
        "CREATE TABLE n (t text); INSERT INTO n VALUES ('Müller'), ('ñandú ß ÿ')",
    )
    .unwrap();
    // names and settings in LATIN1 (sent as UTF-8, stored as Latin-1 bytes): read as
    // UTF-8 with replacement characters, the two tables were one name, neither could be
    // read back, and the restored database's search_path named a schema that is not there
    let in_utf8 = |db: &str, q: &str| c.conn().query_in(db, q, Some("UTF8")).unwrap();
    in_utf8(
        "latin",
        "CREATE SCHEMA \"Größe\";
         CREATE TABLE \"Größe\".\"Bestellungen_Größe\" AS SELECT generate_series(1, 5) AS n;
         CREATE TABLE \"Größe\".\"Bestellungen_Gräße\" AS SELECT generate_series(1, 2) AS n;
         ALTER DATABASE latin SET search_path TO \"Größe\", public;
         COMMENT ON DATABASE latin IS 'Änderung à la carte'",
    );
    let properties = |db: &str| {
        in_utf8(
            db,
            "select s.setconfig::text || ' ' || shobj_description(d.oid, 'pg_database') \
             from pg_database d join pg_db_role_setting s on s.setdatabase = d.oid \
             where d.datname = current_database()",
        )
    };
    assert_eq!(
        properties("latin"),
        "{\"search_path=\\\"Größe\\\", public\"} Änderung à la carte"
    );
    let facts = |db: &str| {
        c.sql(
            db,
            "select pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype from pg_database where datname = current_database()",
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(facts("utf"), "UTF8 C.UTF-8 C.UTF-8");
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("utf-db", &c.dsn("utf")), ("latin-db", &c.dsn("latin"))]);
    ok(lb(&cfg).arg("init"));
    for (source, db) in [("utf-db", "utf"), ("latin-db", "latin")] {
        ok(lb(&cfg).args(["backup", "--kind", "logical", "--source", source]));
        let copy = format!("{db}_copy");
        ok(lb(&cfg).args([
            "restore",
            "--latest",
            "--source",
            source,
            "--to-database",
            &copy,
        ]));
        assert_eq!(facts(&copy), facts(db), "{db}");
        if db == "latin" {
            assert_eq!(properties(&copy), properties(db));
            // the restored search_path finds the schema
            assert_eq!(
                in_utf8(&copy, "select count(*) from \"Bestellungen_Größe\""),
                "5"
            );
        }
        if db == "utf" {
            let sorted = |d: &str| {
                c.sql(d, "select string_agg(t, ',' order by t) from w")
                    .unwrap()
            };
            assert_eq!(sorted(&copy), sorted(db), "text sorts as in the original");
        }
        let check = format!(
            "select pg_encoding_to_char(encoding) || ' ' || datcollate = '{}' from pg_database where datname = current_database()",
            facts(db).rsplit_once(' ').unwrap().0
        );
        let out = ok(lb(&cfg).args(["drill", "--source", source, "--check", &check]));
        assert!(out.contains("PASSED"), "{out}");
    }
}

/// `money` is dumped as the database's `lc_monetary` writes it (`1.234,50 €` under
/// de_DE) and read back only under it: a restore sets it before the data, as
/// `pg_restore --create` does (the German locale is generated by scripts/setup.sh --tests).
#[test]
fn money_restores_under_the_databases_own_lc_monetary() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE till").unwrap();
    c.sql("till", "ALTER DATABASE till SET lc_monetary = 'de_DE.utf8'")
        .unwrap();
    c.sql(
        "till",
        "CREATE TABLE sales (id int, amount money); INSERT INTO sales VALUES (1, 1234.5), (2, 0.99)",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("till-db", &c.dsn("till"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "till_copy"]));
    let sum = |db: &str| {
        c.sql(db, "select sum(amount)::numeric from sales")
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(sum("till_copy"), "1235.49");
    let out = ok(lb(&cfg).arg("drill"));
    assert!(out.contains("PASSED"), "{out}");
}

/// The same with `lc_monetary` set for the whole cluster (postgresql.conf), where pg_dump
/// records nothing: the backup records it beside the truth, and a drill's throw-away
/// cluster and a restore onto another server (whose own setting is C) read the money
/// values under it, default expressions included.
#[test]
fn money_restores_under_the_clusters_lc_monetary() {
    let c = Cluster::start_with(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        "lc_monetary = 'de_DE.utf8'",
    )
    .unwrap();
    c.sql("postgres", "CREATE DATABASE till").unwrap();
    c.sql(
        "till",
        "CREATE TABLE sales (id int, amount money DEFAULT 12.5, history money[]);
         INSERT INTO sales VALUES (1, 1234.5, ARRAY[1.5::numeric::money, 2::numeric::money]), (2, 0.99, NULL);
         INSERT INTO sales (id) VALUES (3)",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("till-db", &c.dsn("till"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let out = ok(lb(&cfg).arg("drill"));
    assert!(out.contains("PASSED"), "{out}");

    let other = cluster();
    ok(lb(&cfg).args([
        "restore",
        "--latest",
        "--target-dsn",
        &other.dsn("postgres"),
        "--to-database",
        "till_copy",
    ]));
    let sum = |c: &Cluster, db: &str| {
        c.sql(
            db,
            "select sum(amount)::numeric, sum(history[1])::numeric from sales",
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(sum(&other, "till_copy"), sum(&c, "till"));
    assert_eq!(sum(&other, "till_copy"), "1247.99|1.50");

    // money only under a domain over an array of it: found all the same
    c.sql("postgres", "CREATE DATABASE till2").unwrap();
    c.sql(
        "till2",
        "CREATE DOMAIN prices AS money[]; CREATE TABLE quotes (p prices);
         INSERT INTO quotes VALUES (ARRAY[7.25::numeric::money])",
    )
    .unwrap();
    let cfg2 = ws.local_config(&[("till2-db", &c.dsn("till2"))]);
    ok(lb(&cfg2).args(["backup", "--kind", "logical"]));
    let listed = ok(lb(&cfg2).args(["--json", "list", "--source", "till2-db"]));
    assert!(
        listed.contains("\"lc_monetary\": \"de_DE.utf8\""),
        "{listed}"
    );
}

/// pg_dump's classic trap: a materialized view over a function that names its table
/// without a schema cannot be refreshed under the restore's empty search_path. The restore
/// fails naming the view and the cause, and drops what it created; with `--keep-going` it
/// goes past it, keeps the database with every table (compared and matching), and still
/// fails, naming the error.
#[test]
fn a_view_that_cannot_be_refreshed_fails_the_restore_unless_it_keeps_going() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE zoo").unwrap();
    c.sql(
        "zoo",
        "CREATE TABLE animals (id int); INSERT INTO animals SELECT generate_series(1, 40);
         CREATE FUNCTION animal_count() RETURNS int LANGUAGE sql AS 'select count(*)::int from animals';
         CREATE MATERIALIZED VIEW census AS SELECT animal_count() AS n;
         CREATE MATERIALIZED VIEW census_2 AS SELECT animal_count() AS n;
         CREATE MATERIALIZED VIEW census_3 AS SELECT animal_count() AS n;
         CREATE MATERIALIZED VIEW census_4 AS SELECT animal_count() AS n;
         CREATE MATERIALIZED VIEW census_5 AS SELECT animal_count() AS n;
         CREATE MATERIALIZED VIEW census_6 AS SELECT animal_count() AS n;
         CREATE MATERIALIZED VIEW headcount AS SELECT count(*) AS n FROM public.animals;
         CREATE TABLE keepers (id int); INSERT INTO keepers VALUES (1);
         ALTER TABLE keepers ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
         CREATE POLICY everyone ON keepers USING (true);
         CREATE ROLE restorer LOGIN CREATEDB;",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("zoo-db", &c.dsn("zoo"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    let exists = |db: &str| {
        c.sql(
            "postgres",
            &format!("select count(*) from pg_database where datname = '{db}'"),
        )
        .unwrap()
        .trim()
            == "1"
    };

    // one job: with six views failing, parallel workers' errors would race for the message
    let (code, _, err) = common::run(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "zoo_a",
        "--jobs",
        "1",
    ]));
    assert_eq!(code, 8, "{err}");
    assert!(
        // one of them, whichever pg_restore's jobs refreshed first
        err.contains("materialized view public.census")
            && err.contains("could not be refreshed")
            && err.contains("search_path"),
        "{err}"
    );
    assert!(!exists("zoo_a"), "the half restore is dropped");

    // one job here too: two workers' errors written at once run into one line
    let (code, _, err) = common::run(lb(&cfg).args([
        "restore",
        "--latest",
        "--to-database",
        "zoo_b",
        "--keep-going",
        "--jobs",
        "1",
    ]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("with 6 error(s) pg_restore went past (--keep-going)")
            && err.contains("animals")
            && err.contains("every table matches the backup")
            && err.contains("the database is kept"),
        "{err}"
    );
    // the views that failed were not refreshed, and the note counts only the one that was
    assert!(
        err.contains("note: 1 materialized view(s) were refreshed"),
        "{err}"
    );
    // the sixth is not cut off: a note of its own
    assert!(
        err.contains("and 1 more (each in a note below)")
            && err.contains("lifeboat: note: pg_restore went past (--keep-going): "),
        "{err}"
    );
    // a role that may not read past the forced row-level security: the comparison cannot
    // run, and what pg_restore went past is still said
    let (code, _, err) = common::run(lb(&cfg).args([
        "restore",
        "--latest",
        "--target-dsn",
        &c.dsn("postgres").replace("user=postgres", "user=restorer"),
        "--to-database",
        "zoo_c",
        "--no-owner",
        "--keep-going",
    ]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("could not run") && err.contains("pg_restore went past 6 error(s)"),
        "{err}"
    );
    assert!(exists("zoo_b"));
    assert_eq!(
        c.sql("zoo_b", "select count(*) from animals")
            .unwrap()
            .trim(),
        "40"
    );

    // an overwrite is one transaction: whole or nothing
    let (code, _, err) =
        common::run(lb(&cfg).args(["restore", "--latest", "--clean", "--force", "--keep-going"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--keep-going cannot go with --clean"), "{err}");
}

/// A SQL_ASCII cluster whose roles were named by a Latin-1 client (`Jürgen` as the bytes
/// 4a fc 72 67 65 6e): its drill restores them into a cluster of its own encoding, and the
/// restored table keeps its owner. A UTF-8 throw-away cluster refused the role names, and
/// every drill of such a cluster failed its roles check.
#[test]
fn a_sql_ascii_cluster_with_roles_named_in_latin1_is_drilled_with_its_roles() {
    let c = Cluster::start_encoded(
        &lifeboat_core::sources::postgres::conn::PgBin::new(None),
        "",
        None,
        "SQL_ASCII",
    )
    .unwrap();
    // U+F7FC is how lifeboat keeps the byte 0xFC: sent back, it is that byte
    let role = "J\u{f7fc}rgen";
    c.sql("postgres", &format!("CREATE ROLE \"{role}\""))
        .unwrap();
    c.sql("postgres", "CREATE DATABASE app").unwrap();
    c.sql(
        "app",
        &format!(
            "CREATE TABLE t AS SELECT generate_series(1, 10) AS n; ALTER TABLE t OWNER TO \"{role}\""
        ),
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("old", &c.dsn("app"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).arg("backup"));
    let out = ok(lb(&cfg).args([
        "drill",
        "--check",
        "select pg_get_userbyid(relowner)::bytea = '\\x4afc7267656e'::bytea from pg_class where relname = 't'",
    ]));
    assert!(out.contains("PASSED"), "{out}");
    assert!(out.contains("ok   roles from the globals backup"), "{out}");
    // a restore of those roles onto a UTF-8 server cannot hold them, and says what to do
    let utf8 = cluster();
    let (code, _, err) = common::run(lb(&cfg).args([
        "restore",
        "--latest",
        "--globals",
        "--to-database",
        "app",
        "--target-dsn",
        &utf8.dsn("postgres"),
    ]));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("initdb -E SQL_ASCII"), "{err}");
}

/// pg_restore's `--clean` cannot drop a partition's inherited primary key: the overwrite
/// fails, changes nothing, and says how to restore such a database instead.
#[test]
fn an_overwrite_of_partitions_with_a_key_says_how_to_restore_instead() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE parts").unwrap();
    c.sql(
        "parts",
        "CREATE TABLE events (id int PRIMARY KEY) PARTITION BY RANGE (id);
         CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100);
         INSERT INTO events SELECT generate_series(0, 99);",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.local_config(&[("parts-db", &c.dsn("parts"))]);
    ok(lb(&cfg).arg("init"));
    ok(lb(&cfg).args(["backup", "--kind", "logical"]));
    c.sql("parts", "DELETE FROM events WHERE id < 10").unwrap();
    let (code, _, err) = common::run(lb(&cfg).args(["restore", "--latest", "--clean", "--force"]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("is as it was") && err.contains("--to-database parts_restored"),
        "{err}"
    );
    assert_eq!(c.sql("parts", "select count(*) from events").unwrap(), "90");
    // the way the hint gives
    ok(lb(&cfg).args(["restore", "--latest", "--to-database", "parts_restored"]));
    assert_eq!(
        c.sql("parts_restored", "select count(*) from events")
            .unwrap(),
        "100"
    );
}
