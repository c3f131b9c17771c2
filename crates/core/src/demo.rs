//! `lifeboat demo`: the whole promise on the embedded default, in one run.
//!
//! Starts a throw-away PostgreSQL, fills it with a small shop application, backs it up to a
//! local repository, changes about 1% of the data, backs up again (showing dedup), restores
//! the latest backup into a new database, checks it against the backup-time truth, and
//! stops the server. The repository, its password file and a config stay in the demo
//! directory for the user to explore.

use std::{path::PathBuf, time::Instant};

use rustic_core::ProgressBars;
use serde::Serialize;

use crate::{
    config::{RepositoryConfig, SourceConfig},
    error::{Error, Result},
    ops::{
        backup::{backup, BackupOptions, BackupReport},
        restore::{self, RestoreOptions, RestoreReport, Selector},
    },
    repository::Repo,
    secret::{write_private_file, Secret},
    sources::postgres::{cluster::Cluster, conn::PgBin, logical::BackupKind},
};

/// The sample application's schema: the kinds of objects a restore must bring back.
pub const SAMPLE_SCHEMA: &str = r"
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'the sample shop';
CREATE TABLE shop.users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    profile jsonb NOT NULL,
    balance numeric(12,2) NOT NULL DEFAULT 0
);
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES shop.users(id),
    status text NOT NULL CHECK (status IN ('new','paid','shipped','returned')),
    total numeric(12,2) NOT NULL,
    items jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX orders_user_idx ON shop.orders(user_id);
CREATE TABLE shop.events (
    id bigserial PRIMARY KEY,
    user_id bigint,
    kind text NOT NULL,
    payload jsonb,
    occurred_at timestamptz NOT NULL
);
CREATE TABLE shop.attachments (
    id bigserial PRIMARY KEY,
    order_id bigint REFERENCES shop.orders(id),
    name text NOT NULL,
    data bytea NOT NULL
);
CREATE VIEW shop.revenue AS SELECT date_trunc('day', created_at) AS day, sum(total) AS total FROM shop.orders GROUP BY 1;
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.created_at := coalesce(NEW.created_at, now()); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch();
";

/// Inserts `users` users and proportional orders, events and attachments (random but
/// application-like: text with non-ASCII, jsonb, numbers, incompressible bytea).
#[must_use]
pub fn sample_data_sql(users: u64) -> String {
    let orders = users * 3;
    let events = users * 10;
    let attachments = users / 5;
    format!(
        r"
INSERT INTO shop.users (email, name, created_at, profile, balance)
SELECT 'user' || g || '@example.com',
       (ARRAY['Zoë','José','Łukasz','Aiko','Øyvind','Chloé','Mehmet','Ана'])[1 + g % 8] || ' ' || md5(g::text),
       timestamptz '2024-01-01' + g * interval '37 seconds',
       jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + g % 3], 'tags', jsonb_build_array('t' || g % 17, 't' || g % 5), 'newsletter', g % 2 = 0),
       round((random() * 1000)::numeric, 2)
FROM generate_series(1, {users}) g;
INSERT INTO shop.orders (user_id, status, total, items, created_at)
SELECT 1 + (g % {users}), (ARRAY['new','paid','shipped','returned'])[1 + g % 4], round((random() * 500)::numeric, 2),
       jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 997), 'qty', 1 + g % 5, 'note', repeat(md5(g::text), 1 + g % 3))),
       timestamptz '2024-02-01' + g * interval '13 seconds'
FROM generate_series(1, {orders}) g;
INSERT INTO shop.events (user_id, kind, payload, occurred_at)
SELECT 1 + (g % {users}), (ARRAY['login','view','cart','checkout','logout'])[1 + g % 5],
       jsonb_build_object('ip', '10.0.' || (g % 255) || '.' || (g % 13), 'ua', 'Mozilla/5.0 ' || md5((g % 101)::text), 'ms', g % 1000),
       timestamptz '2024-03-01' + g * interval '3 seconds'
FROM generate_series(1, {events}) g;
INSERT INTO shop.attachments (order_id, name, data)
SELECT 1 + (g % {orders}), 'receipt-' || g || '.bin',
       decode((SELECT string_agg(md5(random()::text || g::text || s::text), '') FROM generate_series(1, 64) s), 'hex')
FROM generate_series(1, {attachments}) g;
ANALYZE;
"
    )
}

/// Changes about `percent`% of the rows the way an application does: the newest orders
/// change status, the oldest events expire, new events arrive.
#[must_use]
pub fn churn_sql(percent: f64) -> String {
    let f = percent / 100.0;
    format!(
        r"
UPDATE shop.orders SET status = 'shipped' WHERE id > (SELECT max(id) - (count(*) * {f})::bigint FROM shop.orders);
DELETE FROM shop.events WHERE id <= (SELECT min(id) + (count(*) * {f} / 2)::bigint FROM shop.events);
INSERT INTO shop.events (user_id, kind, payload, occurred_at)
SELECT user_id, 'refund', payload, occurred_at + interval '90 days'
FROM shop.events ORDER BY id DESC LIMIT (SELECT (count(*) * {f})::bigint FROM shop.events);
"
    )
}

/// Changes about `percent`% of the rows scattered over every table (the worst case for
/// deduplication: most chunks see a change).
#[must_use]
pub fn scattered_churn_sql(percent: f64) -> String {
    let m = (100.0 / percent).round().max(1.0) as u64;
    format!(
        r"
UPDATE shop.orders SET status = 'returned', total = total + 1 WHERE id % {m} = 0;
DELETE FROM shop.events WHERE id % {m} = 1;
INSERT INTO shop.events (user_id, kind, payload, occurred_at)
SELECT user_id, 'refund', payload, occurred_at + interval '1 day' FROM shop.events WHERE id % {m} = 2;
"
    )
}

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Directory for the repository, its password and a config (kept afterwards).
    pub dir: PathBuf,
    /// Number of sample users (orders x3, events x10).
    pub users: u64,
}

/// A step and how long it took.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DemoStep {
    /// What was done.
    pub what: String,
    /// Seconds.
    pub secs: f64,
}

/// What the demo proved.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DemoReport {
    /// Repository path.
    pub repository: String,
    /// Password file of the repository.
    pub password_file: String,
    /// A config file pointing at the repository.
    pub config_file: String,
    /// PostgreSQL version used.
    pub server_version: String,
    /// The first backup.
    pub first: BackupReport,
    /// The backup after the change.
    pub second: BackupReport,
    /// The restore of the latest backup.
    pub restore: RestoreReport,
    /// The drill that proved it again, in isolation.
    pub drill: crate::ops::drill::DrillReport,
    /// Where the drill's evidence files are.
    pub evidence_dir: String,
    /// Steps with durations.
    pub steps: Vec<DemoStep>,
}

/// Runs the demo. `on_step` is told what starts next (for a progress display).
///
/// # Errors
///
/// Any failing step's error; the throw-away server is stopped in every case.
pub fn run<P: ProgressBars + Clone>(
    opts: &DemoOptions,
    pb: P,
    mut on_step: impl FnMut(&str),
) -> Result<DemoReport> {
    let mut steps = Vec::new();
    let step = |what: &str, clock: Instant, steps: &mut Vec<DemoStep>| {
        steps.push(DemoStep {
            what: what.to_string(),
            secs: clock.elapsed().as_secs_f64(),
        });
    };
    prepare_dir(&opts.dir)?;
    on_step("starting a throw-away PostgreSQL");
    let t = Instant::now();
    let bin = PgBin::new(None);
    let cluster = Cluster::start(&bin)?;
    let server_version = cluster.sql("postgres", "show server_version")?;
    step("start PostgreSQL", t, &mut steps);

    on_step("creating the sample shop database");
    let t = Instant::now();
    cluster.sql("postgres", "CREATE DATABASE shop")?;
    cluster.sql("shop", SAMPLE_SCHEMA)?;
    cluster.sql("shop", &sample_data_sql(opts.users))?;
    cluster.sql(
        "shop",
        "ALTER DATABASE shop SET search_path TO shop, public",
    )?;
    cluster.sql(
        "shop",
        "SELECT lo_from_bytea(0, convert_to('a large object', 'UTF8'))",
    )?;
    step("create sample data", t, &mut steps);

    let repo_dir = opts.dir.join("repo");
    let password_file = opts.dir.join("password");
    let password = Secret::new(random_password());
    write_private_file(&password_file, password.expose())?;
    let repo_cfg = RepositoryConfig {
        url: Some(repo_dir.display().to_string()),
        password_file: Some(password_file.clone()),
        ..RepositoryConfig::default()
    };
    let config_file = opts.dir.join("lifeboat.toml");
    write_private_file(
        &config_file,
        &format!(
            "# written by `lifeboat demo`; the demo's PostgreSQL is gone, the repository stays\n[repository]\nurl = {:?}\npassword_file = {:?}\n",
            repo_dir.display().to_string(),
            password_file.display().to_string()
        ),
    )?;
    on_step("initialising the repository");
    Repo::init(&repo_cfg, &password, pb.clone())?;
    let repo = Repo::open(&repo_cfg, &password, pb.clone())?;
    let src = SourceConfig::postgres("shop-db", &cluster.dsn("shop"));

    on_step("backing up (logical, schema-only, globals)");
    let t = Instant::now();
    let first = backup(&repo, &src, &BackupOptions::default())?;
    if let Some(e) = first.failure() {
        return Err(e);
    }
    step("first backup", t, &mut steps);

    on_step("changing about 1% of the rows");
    cluster.sql("shop", &churn_sql(1.0))?;
    on_step("backing up again");
    let t = Instant::now();
    let second = backup(
        &repo,
        &src,
        &BackupOptions {
            kinds: vec![BackupKind::Logical],
            ..BackupOptions::default()
        },
    )?;
    if let Some(e) = second.failure() {
        return Err(e);
    }
    step("second backup", t, &mut steps);

    on_step("restoring the latest backup into a new database and checking it");
    let t = Instant::now();
    let ropts = RestoreOptions {
        selector: Selector::Latest,
        source: Some("shop-db".into()),
        to_database: Some("shop_restored".into()),
        ..RestoreOptions::default()
    };
    let plan = restore::plan(&repo, &src, &ropts)?;
    let restored = restore::restore(&repo, &src, plan, None)?;
    let search_path = cluster.sql("shop_restored", "show search_path")?;
    if !search_path.contains("shop") {
        return Err(Error::integrity(format!(
            "the restored database lost its search_path setting (now {search_path:?})"
        )));
    }
    step("restore and check", t, &mut steps);

    on_step("drilling: restoring the latest backup into a second throw-away cluster");
    let t = Instant::now();
    let mut drill_src = src.clone();
    drill_src.objectives.rto = Some("2h".into());
    drill_src.objectives.rpo = Some("24h".into());
    drill_src.drill.checks = vec!["select count(*) > 0 from shop.users".into()];
    let drill = crate::ops::drill::drill(
        &repo,
        &drill_src,
        &crate::ops::drill::DrillOptions {
            report_dir: Some(opts.dir.join("evidence")),
            ..crate::ops::drill::DrillOptions::default()
        },
    )?;
    crate::ops::drill::ensure_passed(&drill)?;
    step("drill", t, &mut steps);
    drop(cluster);
    Ok(DemoReport {
        repository: repo_dir.display().to_string(),
        password_file: password_file.display().to_string(),
        config_file: config_file.display().to_string(),
        server_version,
        first,
        second,
        restore: restored,
        drill,
        evidence_dir: opts.dir.join("evidence").display().to_string(),
        steps,
    })
}

const MARKER: &str = ".lifeboat-demo";

/// Creates the demo directory; reuses one left by an earlier demo, refuses anything else.
fn prepare_dir(dir: &std::path::Path) -> Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            let empty = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir.display(), e))?
                .next()
                .is_none();
            if !empty {
                return Err(Error::new(
                    crate::ErrorKind::TargetNotEmpty,
                    format!("{} exists and was not made by lifeboat demo", dir.display()),
                )
                .hint("pass --dir with a new or empty directory"));
            }
        } else {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    std::fs::write(
        dir.join(MARKER),
        "made by lifeboat demo; the next demo replaces this directory\n",
    )
    .map_err(|e| Error::io(dir.display(), e))?;
    Ok(())
}

fn random_password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| {
            char::from(
                b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
                    [rng.random_range(0..56)],
            )
        })
        .collect()
}
