//! `lifeboat.toml`: the configuration types and their validation.
//!
//! Parsing rejects unknown keys and bad values with the key and the line; `Config::validate`
//! then checks what serde cannot (unique source names, durations, repository URLs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    secret::SecretSource,
};

/// Where lifeboat looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["lifeboat.toml", "/etc/lifeboat/lifeboat.toml"];

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The primary repository.
    #[serde(default)]
    pub repository: RepositoryConfig,
    /// Offsite copies of the repository.
    #[serde(default)]
    pub copies: Vec<RepositoryConfig>,
    /// What to back up.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Where the audit log's head is kept besides the repository.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// Places outside the repository that learn every new audit head, so that cutting off the
/// newest entries (which leaves a shorter, consistent chain) shows.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file that gets a line per new entry: `seq hash time action outcome` (append-only;
    /// put it where the repository's owner cannot rewrite it).
    pub head_file: Option<PathBuf>,
    /// An `http(s)://` URL each new head is POSTed to as JSON.
    pub head_url: Option<String>,
}

/// A repository: a local path or `s3://bucket/prefix`, and how to unlock it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local directory or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// File holding the repository password.
    pub password_file: Option<PathBuf>,
    /// Command printing the repository password.
    pub password_command: Option<String>,
    /// S3 endpoint URL (default: `AWS_ENDPOINT_URL`, then AWS).
    pub endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, then `us-east-1`).
    pub region: Option<String>,
    /// S3 access key id (default: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// File holding the S3 secret access key (default: `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key_file: Option<PathBuf>,
    /// Command printing the S3 secret access key.
    pub secret_access_key_command: Option<String>,
    /// AWS profile whose credentials to use when no access key id is given (default:
    /// `AWS_PROFILE`; read from `~/.aws/credentials` and `~/.aws/config`).
    pub profile: Option<String>,
}

impl RepositoryConfig {
    /// Where the repository password comes from: `LIFEBOAT_PASSWORD`, then the file, then the command.
    #[must_use]
    pub fn password_source(&self) -> SecretSource {
        SecretSource {
            env: Some("LIFEBOAT_PASSWORD".into()),
            file: self.password_file.clone(),
            command: self.password_command.clone(),
        }
    }
}

/// The kinds of source lifeboat knows.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A PostgreSQL server.
    Postgres,
}

/// One thing to back up.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name, used in snapshot tags (`app-db`).
    pub name: String,
    /// What it is.
    pub kind: SourceKind,
    /// libpq connection URI or key/value string; libpq environment variables fill the gaps.
    /// A password inside it is moved to the child's environment, never to argv.
    pub dsn: Option<String>,
    /// Databases to dump (default: the DSN's database, then `PGDATABASE`). An entry with
    /// `*` or `?` is a pattern matched against the server's databases at each backup
    /// (`["*"]`: every database that takes connections; `["cust_*"]`): a database made
    /// after the configuration was written is backed up without editing it. An entry
    /// that starts with `!` leaves databases out on purpose (`["*", "!scratch_*"]`).
    #[serde(default)]
    pub databases: Vec<String>,
    /// File holding the PostgreSQL password (default: libpq's `PGPASSWORD`/`.pgpass`).
    pub password_file: Option<PathBuf>,
    /// Command printing the PostgreSQL password.
    pub password_command: Option<String>,
    /// Directory holding pg_dump, pg_restore, psql (default: the newest under
    /// `/usr/lib/postgresql`, then `PATH`).
    pub pg_bin_dir: Option<PathBuf>,
    /// Commands run around a restore.
    #[serde(default)]
    pub hooks: Hooks,
    /// Cron schedules per kind (used by `lifeboat serve`).
    #[serde(default)]
    pub schedule: Schedule,
    /// How many backups to keep.
    #[serde(default)]
    pub retention: Retention,
    /// Recovery objectives drills are measured against.
    #[serde(default)]
    pub objectives: Objectives,
    /// Restore drills.
    #[serde(default)]
    pub drill: DrillConfig,
    /// How long a physical backup may wait for PostgreSQL to archive the WAL it needs
    /// (default `"5m"`); past it the backup fails, naming the failing archive_command.
    pub archive_timeout: Option<String>,
    /// How long pg_dump may wait for the locks it takes on every table (default `"5m"`;
    /// `"0s"` waits for ever): a session holding an exclusive lock (a long migration, a
    /// forgotten `LOCK TABLE`) makes the backup fail naming the table instead of hang.
    pub lock_wait_timeout: Option<String>,
    /// How a physical backup starts: `"fast"` (the default) asks PostgreSQL for an
    /// immediate checkpoint, a burst of writes that starts the backup at once; `"spread"`
    /// waits for a checkpoint paced like the server's own (`checkpoint_completion_target`),
    /// gentler on a busy server and slower to start.
    pub checkpoint: Option<Checkpoint>,
    /// Most a physical backup reads from the server per second (`"50M"`, `"800k"`: bytes
    /// per second, as pg_basebackup's `--max-rate`; 32k to 1024M); default no limit.
    pub max_rate: Option<String>,
}

/// The checkpoint a physical backup starts with (a source's `checkpoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checkpoint {
    /// An immediate checkpoint: the backup starts at once.
    #[default]
    Fast,
    /// A checkpoint paced as the server's own.
    Spread,
}

impl Checkpoint {
    /// pg_basebackup's `--checkpoint` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Spread => "spread",
        }
    }
}

/// Reads a source's `max_rate` (`"50M"`, `"800k"`) as kilobytes per second, within
/// pg_basebackup's range of 32 kB/s to 1 GB/s.
///
/// # Errors
///
/// A message saying what is wrong and what is accepted.
pub fn parse_max_rate(s: &str) -> std::result::Result<u32, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let per_kb = match unit.trim() {
        "k" | "K" | "kB" | "KB" => 1,
        "M" | "MB" => 1024,
        "G" | "GB" => 1024 * 1024,
        _ => {
            return Err(format!(
                "{s:?} is not a rate like \"50M\" (megabytes per second) or \"800k\" (kilobytes per second)"
            ))
        }
    };
    if digits.is_empty() {
        return Err(format!("{s:?} has no number; write e.g. \"50M\""));
    }
    // only digits: a number too long for u64 is out of range
    let kb = digits
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        .saturating_mul(per_kb);
    if !(32..=1024 * 1024).contains(&kb) {
        return Err(format!(
            "{s:?} is outside pg_basebackup's range of 32k to 1024M per second"
        ));
    }
    Ok(u32::try_from(kb).expect("at most 1048576"))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters and `?`
/// for one.
#[must_use]
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // the classic two-pointer match, backtracking to the last `*`
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Whether the `databases` entry `entry` (a name or a pattern) names `db`.
fn name_matches(entry: &str, db: &str) -> bool {
    if is_pattern(entry) {
        glob_matches(entry, db)
    } else {
        entry == db
    }
}

/// Whether a `databases` entry is a pattern.
fn is_pattern(entry: &str) -> bool {
    entry.contains(['*', '?'])
}

impl SourceConfig {
    /// The entries of `databases` that name databases to dump (not `!` exclusions).
    fn included(&self) -> impl Iterator<Item = &String> {
        self.databases.iter().filter(|d| !d.starts_with('!'))
    }

    /// Whether `databases` holds a pattern (see [`SourceConfig::databases`]).
    #[must_use]
    pub fn has_database_patterns(&self) -> bool {
        self.included().any(|d| is_pattern(d))
    }

    /// The databases `databases` names outright (not by a pattern), each once, in order.
    #[must_use]
    pub fn named_databases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self
            .included()
            .filter(|d| !is_pattern(d) && !self.excludes_database(d))
        {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    /// Whether `databases` names `db` or has a pattern that matches it, and no `!`
    /// entry leaves it out.
    #[must_use]
    pub fn covers_database(&self, db: &str) -> bool {
        self.included().any(|d| name_matches(d, db)) && !self.excludes_database(db)
    }

    /// Whether a `!` entry of `databases` leaves `db` out on purpose (`"!cust_test"`,
    /// `"!dev_*"`).
    #[must_use]
    pub fn excludes_database(&self, db: &str) -> bool {
        self.databases
            .iter()
            .filter_map(|d| d.strip_prefix('!'))
            .any(|d| name_matches(d, db))
    }

    /// The same source pointed at another server (a restore onto a new host): `dsn`
    /// replaces its DSN, and its `password_file` / `password_command` are dropped. They
    /// hold the source server's password, which a restore would otherwise offer to the
    /// other server's owner; that server's password comes from `dsn`, `PGPASSWORD` or
    /// `~/.pgpass`. Change `dsn` by hand and the production password goes along.
    #[must_use]
    pub fn on_server(&self, dsn: &str) -> Self {
        Self {
            dsn: Some(dsn.to_string()),
            password_file: None,
            password_command: None,
            ..self.clone()
        }
    }

    /// A PostgreSQL source with defaults for everything but its name and DSN.
    #[must_use]
    pub fn postgres(name: &str, dsn: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: SourceKind::Postgres,
            dsn: Some(dsn.to_string()),
            databases: Vec::new(),
            password_file: None,
            password_command: None,
            pg_bin_dir: None,
            hooks: Hooks::default(),
            schedule: Schedule::default(),
            retention: Retention::default(),
            objectives: Objectives::default(),
            drill: DrillConfig::default(),
            archive_timeout: None,
            lock_wait_timeout: None,
            checkpoint: None,
            max_rate: None,
        }
    }

    /// A source known only by its name, without a connection: on a host without the
    /// configuration (after a host loss) its backups and WAL archive are found by the name,
    /// and a drill, a restore onto a given server or `wal status` need nothing more.
    #[must_use]
    pub fn named(name: &str) -> Self {
        Self {
            dsn: None,
            ..Self::postgres(name, "")
        }
    }

    /// Where the PostgreSQL password comes from, if configured.
    #[must_use]
    pub fn password_source(&self) -> Option<SecretSource> {
        (self.password_file.is_some() || self.password_command.is_some()).then(|| SecretSource {
            env: None,
            file: self.password_file.clone(),
            command: self.password_command.clone(),
        })
    }
}

/// Shell commands run around a restore; they get `LIFEBOAT_*` variables naming the snapshot
/// and the target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Before the restore starts (stop the application).
    pub pre_restore: Option<String>,
    /// After the restore succeeded (run migrations, start the application).
    pub post_restore: Option<String>,
}

/// Cron expressions per backup kind.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
// a plain `schedule = "0 2 * * *"` is the likely mistake: show the shape that is wanted
#[serde(
    deny_unknown_fields,
    expecting = "a table of cron expressions per kind, like { logical = \"0 2 * * *\", physical = \"0 1 * * 0\" } (keys: logical, schema, globals, physical)"
)]
pub struct Schedule {
    /// Full logical dump.
    pub logical: Option<String>,
    /// Schema-only dump.
    pub schema: Option<String>,
    /// Globals (roles, tablespaces).
    pub globals: Option<String>,
    /// Physical base backup.
    pub physical: Option<String>,
}

impl Schedule {
    /// Only physical base backups are scheduled: a source backed up by a role with
    /// REPLICATION alone, which may read no table.
    #[must_use]
    pub const fn physical_only(&self) -> bool {
        self.physical.is_some()
            && self.logical.is_none()
            && self.schema.is_none()
            && self.globals.is_none()
    }
}

/// Retention policy (the seeds: daily 30, monthly 12, yearly 7, schema-only 90 days).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of counts, like { daily = 30, monthly = 12 } (keys: last, hourly, daily, weekly, monthly, yearly, schema_days)"
)]
pub struct Retention {
    /// Keep the newest N.
    pub last: Option<u32>,
    /// Keep one per hour for N hours.
    pub hourly: Option<u32>,
    /// Keep one per day for N days.
    pub daily: Option<u32>,
    /// Keep one per week for N weeks.
    pub weekly: Option<u32>,
    /// Keep one per month for N months.
    pub monthly: Option<u32>,
    /// Keep one per year for N years.
    pub yearly: Option<u32>,
    /// Keep schema-only dumps this many days.
    pub schema_days: Option<u32>,
}

impl Schedule {
    /// The kinds that have a cron expression, with it, in the file's key names.
    #[must_use]
    pub fn configured(&self) -> Vec<(&'static str, &str)> {
        [
            ("logical", &self.logical),
            ("schema", &self.schema),
            ("globals", &self.globals),
            ("physical", &self.physical),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_deref()?)))
        .collect()
    }
}

impl Retention {
    /// Every key that is set, with its count, in the file's key names and order.
    #[must_use]
    pub fn configured(&self) -> Vec<(&'static str, u32)> {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
            ("schema_days", self.schema_days),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }

    /// The keys that are set as text: `daily 30, monthly 12` (empty when none is).
    #[must_use]
    pub fn describe(&self) -> String {
        self.configured()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A valid setting that nothing acts on yet: `config check` says so rather than let it
/// pass for working (the daemon, prune and copy are not built yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DormantSetting {
    /// The key, as `source.app-db.retention` or `copies.url`.
    pub key: String,
    /// What is (not) done with it.
    pub note: String,
}

/// Recovery objectives, as durations (`"1h"`, `"24h"`, `"30m"`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Recovery point objective.
    pub rpo: Option<String>,
    /// Recovery time objective.
    pub rto: Option<String>,
    /// The recovery point objective of the logical dumps alone, when it is another than
    /// `rpo` (a plan's "database: 24 h with daily dumps, transaction logs: 1 h with WAL
    /// archiving"): logical drills are judged against it, physical ones against `rpo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_rpo: Option<String>,
}

impl Objectives {
    /// The RPO objective a drill of `kind` is judged against.
    #[must_use]
    pub fn rpo_for(&self, kind: crate::sources::postgres::logical::BackupKind) -> Option<&str> {
        match kind {
            crate::sources::postgres::logical::BackupKind::Physical => self.rpo.as_deref(),
            _ => self.logical_rpo.as_deref().or(self.rpo.as_deref()),
        }
    }
}

/// Restore drill settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Cron expression.
    pub schedule: Option<String>,
    /// SQL assertions that must return true on the restored database: every database
    /// of the source, for a logical drill.
    #[serde(default)]
    pub checks: Vec<String>,
    /// SQL assertions per database, after `checks`, run only when that database is
    /// restored (a logical drill of it; a physical drill runs each in its database): a
    /// source with several databases whose tables differ.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub database_checks: std::collections::BTreeMap<String, Vec<String>>,
    /// A scratch server for logical drills (libpq DSN; password via PGPASSWORD or .pgpass)
    /// instead of a throw-away cluster: each drill restores into its own new database there
    /// and drops it afterwards. Never the production server.
    pub server: Option<String>,
    /// Shell commands run against the restored database once its data has been compared
    /// with the backup (migrations, starting the application, probing its health URL), then
    /// the SQL assertions; `--hook` adds more. A hook that fails stops the ones after it.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Shell commands run against the restored copy before its data is compared with the
    /// backup: what they change fails the drill (a fault injected on purpose, to show the
    /// drill catches it); `--hook-before-checks` adds more.
    #[serde(default)]
    pub hooks_before_checks: Vec<String>,
    /// How long one hook may run before it is killed and fails (default 10m).
    pub hook_timeout: Option<String>,
}

impl DrillConfig {
    /// The assertions of a logical drill of `database`: `checks`, then its own.
    pub fn checks_for<'a>(&'a self, database: &str) -> impl Iterator<Item = &'a String> {
        self.checks
            .iter()
            .chain(self.database_checks.get(database).into_iter().flatten())
    }
}

/// What a source name may be, said in a hint.
pub const SOURCE_NAME_RULE: &str =
    "use letters, digits, '-', '_' or '.', starting with a letter, digit or '_', at most 100 characters";

/// Whether `name` can name a source everywhere it goes: a snapshot tag, a directory of the
/// WAL archive (no `.`/`..`, not too long for a file name), and a word in an
/// `archive_command` (no leading `-`, which would read as an option).
#[must_use]
pub fn valid_source_name(name: &str) -> bool {
    name.len() <= 100
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Config {
    /// Parses TOML text; `origin` names the file in errors.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the key and line for syntax errors, unknown keys,
    /// wrong types and failed validation.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let cfg = Self::parse_unchecked(text, origin)?;
        cfg.validate(text, origin)?;
        Ok(cfg)
    }

    /// Validates a configuration built in code as [`Config::parse`] validates a file's
    /// (schedules, durations, URLs, names): operations take such values as given, and a
    /// drill, say, judged against an objective that is no duration would have none.
    /// Errors name the line of the configuration written as TOML.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for the first invalid value.
    pub fn check(&self) -> Result<()> {
        let text = toml::to_string(self).map_err(|e| {
            Error::config(format!("the configuration cannot be written as TOML: {e}"))
        })?;
        self.validate(&text, "configuration built in code")
    }

    /// As [`Config::parse`], but a value that parses and fails validation (a schedule, a
    /// duration, a URL) is returned beside the configuration instead of failing it. For
    /// PostgreSQL's archive_command and restore_command: a mistake in a setting they do
    /// not use must not stop archiving or end a recovery.
    ///
    /// # Errors
    ///
    /// Syntax errors, unknown keys and wrong types, as [`Config::parse`].
    pub fn parse_lenient(text: &str, origin: &str) -> Result<(Self, Option<Error>)> {
        let cfg = Self::parse_unchecked(text, origin)?;
        let problem = cfg.validate(text, origin).err();
        Ok((cfg, problem))
    }

    fn parse_unchecked(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let msg = e.message().trim_end_matches('\n').to_string();
            // a wrong value's message names the value, not the key: say which key it is
            let key = e
                .span()
                .and_then(|s| key_at(text, s.start))
                .filter(|_| !msg.contains("field `"));
            let msg = match key {
                Some(k) => format!("{k}: {msg}"),
                None => msg,
            };
            Error::config(format!("{origin}:{line}:{col}: {msg}"))
                .hint("fix the key at that line; `lifeboat config check` validates the file")
        })?;
        Ok(cfg)
    }

    /// The settings this version of lifeboat validates but does not act on: schedules
    /// (backup and drill; the daemon that would run them does not exist yet), retention
    /// (nothing prunes) and copies (nothing copies).
    #[must_use]
    pub fn dormant_settings(&self) -> Vec<DormantSetting> {
        let mut out = Vec::new();
        for src in &self.sources {
            let at = |key: &str| format!("source.{}.{key}", src.name);
            let kinds = src.schedule.configured();
            if !kinds.is_empty() {
                let list = kinds
                    .iter()
                    .map(|(k, cron)| format!("{k} \"{cron}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(DormantSetting {
                    key: at("schedule"),
                    note: format!(
                        "{list}: schedules are run by the daemon, which lifeboat does not have yet: \
                         nothing runs these backups; run `lifeboat backup` from cron or a systemd timer"
                    ),
                });
            }
            if let Some(cron) = &src.drill.schedule {
                out.push(DormantSetting {
                    key: at("drill.schedule"),
                    note: format!(
                        "\"{cron}\": schedules are run by the daemon, which lifeboat does not have yet: \
                         nothing runs these drills; run `lifeboat drill` from cron or a systemd timer"
                    ),
                });
            }
            let kept = src.retention.describe();
            if !kept.is_empty() {
                out.push(DormantSetting {
                    key: at("retention"),
                    note: format!(
                        "{kept}: not enforced yet: lifeboat does not prune, it keeps every backup"
                    ),
                });
            }
        }
        for url in self.copies.iter().filter_map(|c| c.url.as_deref()) {
            out.push(DormantSetting {
                key: "copies.url".to_string(),
                note: format!(
                    "{url}: copies are not made yet: lifeboat has no copy command, so nothing \
                     copies the repository there"
                ),
            });
        }
        out
    }

    /// Loads the file at `path`, or the first of [`DEFAULT_CONFIG_PATHS`] that exists.
    /// Returns `None` when no path was given and no default file exists.
    ///
    /// # Errors
    ///
    /// When the given file is missing or unreadable, or does not parse.
    pub fn load(path: Option<&Path>) -> Result<Option<(Self, PathBuf)>> {
        Self::load_with(path, false).map(|o| o.map(|(c, p, _)| (c, p)))
    }

    /// As [`Config::load`]; with `lenient`, validation problems come back beside the
    /// configuration (see [`Config::parse_lenient`]).
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_with(
        path: Option<&Path>,
        lenient: bool,
    ) -> Result<Option<(Self, PathBuf, Option<Error>)>> {
        let chosen = match path {
            Some(p) => Some(p.to_path_buf()),
            None => DEFAULT_CONFIG_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        };
        let Some(p) = chosen else { return Ok(None) };
        let text = std::fs::read_to_string(&p).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                // there, but not for this user: the PostgreSQL user running archive_command,
                // most often, on a file only root may read
                format!(
                    "make {} readable by this user (chmod 640 and a group it is in, or chown it to that user); archive_command and restore_command run as the PostgreSQL user",
                    p.display()
                )
            } else {
                "pass --config PATH or create lifeboat.toml (see the README)".to_string()
            };
            Error::config(format!("cannot read configuration {}: {e}", p.display()))
                .hint(hint)
                .source(e)
        })?;
        let origin = p.display().to_string();
        // relative paths in the file mean the file's directory, not wherever cron or a
        // service manager starts the process
        let dir = std::path::absolute(&p)
            .ok()
            .and_then(|a| a.parent().map(Path::to_path_buf));
        let anchored = |mut cfg: Self| {
            if let Some(d) = &dir {
                cfg.anchor(d);
            }
            cfg
        };
        if lenient {
            let (cfg, problem) = Self::parse_lenient(&text, &origin)?;
            return Ok(Some((anchored(cfg), p, problem)));
        }
        Ok(Some((anchored(Self::parse(&text, &origin)?), p, None)))
    }

    /// Makes every relative file path in the configuration relative to `dir`: repository
    /// and copy directories, password and key files, the audit head file, `pg_bin_dir`.
    pub fn anchor(&mut self, dir: &Path) {
        let file = |f: &mut Option<PathBuf>| {
            if let Some(p) = f.as_mut().filter(|p| p.is_relative()) {
                *p = dir.join(&*p);
            }
        };
        for r in std::iter::once(&mut self.repository).chain(self.copies.iter_mut()) {
            if let Some(u) = r.url.as_mut().filter(|u| {
                !u.contains("://") && !u.is_empty() && Path::new(u.as_str()).is_relative()
            }) {
                *u = dir.join(&*u).display().to_string();
            }
            file(&mut r.password_file);
            file(&mut r.secret_access_key_file);
        }
        for s in &mut self.sources {
            file(&mut s.password_file);
            file(&mut s.pg_bin_dir);
        }
        file(&mut self.audit.head_file);
    }

    /// The source called `name`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::NotFound`] listing the configured names.
    pub fn source(&self, name: &str) -> Result<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
            Error::not_found(format!("no source named {name:?} in the configuration")).hint(
                if names.is_empty() {
                    "add a [[source]] section to lifeboat.toml".to_string()
                } else {
                    format!("configured sources: {}", names.join(", "))
                },
            )
        })
    }

    fn validate(&self, text: &str, origin: &str) -> Result<()> {
        let at = |needle: &str| text.find(needle).map(|i| line_col(text, i).0).unwrap_or(0);
        // one of them would be used without a word: which one is meant?
        let both = |file: &Option<PathBuf>, command: &Option<String>, line: usize, what: &str| {
            if file.is_some() && command.is_some() {
                Err(Error::config(format!(
                    "{origin}:{line}: {what} has both password_file and password_command"
                ))
                .hint("keep the one that gives the password, and remove the other"))
            } else {
                Ok(())
            }
        };
        both(
            &self.repository.password_file,
            &self.repository.password_command,
            key_line(text, "[repository]", 0, "password_command"),
            "[repository]",
        )?;
        for (i, s) in self.sources.iter().enumerate() {
            both(
                &s.password_file,
                &s.password_command,
                key_line(text, "[[source]]", i, "password_command"),
                &format!("source {:?}", s.name),
            )?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key_line = |key: &str| key_line(text, "[[source]]", i, key);
            let line = key_line("name");
            if !valid_source_name(&s.name) {
                return Err(Error::config(format!(
                    "{origin}:{line}: source.name {:?} is not valid",
                    s.name
                ))
                .hint(format!("{SOURCE_NAME_RULE}; a source renamed keeps its backups and WAL under the old name (`restore`, `drill`, `wal-fetch` and `wal status` take it with --source)")));
            }
            if !seen.insert(&s.name) {
                return Err(Error::config(format!(
                    "{origin}:{line}: source.name {:?} is used twice",
                    s.name
                )));
            }
            for (key, value) in [
                ("schedule.logical", &s.schedule.logical),
                ("schedule.schema", &s.schedule.schema),
                ("schedule.globals", &s.schedule.globals),
                ("schedule.physical", &s.schedule.physical),
                ("drill.schedule", &s.drill.schedule),
            ] {
                if let Some(v) = value {
                    v.parse::<croner::Cron>().map_err(|e| {
                        Error::config(format!(
                            "{origin}:{}: {key} of source {:?}: {v:?} is not a cron expression: {e}",
                            key_line(key.rsplit('.').next().unwrap_or(key)),
                            s.name
                        ))
                        .hint("five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\" (02:00 daily)")
                    })?;
                }
            }
            for (key, value) in [
                ("objectives.rpo", &s.objectives.rpo),
                ("objectives.rto", &s.objectives.rto),
                ("objectives.logical_rpo", &s.objectives.logical_rpo),
                ("archive_timeout", &s.archive_timeout),
                ("lock_wait_timeout", &s.lock_wait_timeout),
                ("drill.hook_timeout", &s.drill.hook_timeout),
            ] {
                if let Some(v) = value {
                    // PostgreSQL takes a timeout in milliseconds as a 32-bit integer
                    let fits =
                        |secs: u64| key != "lock_wait_timeout" || secs <= i32::MAX as u64 / 1000;
                    parse_duration(v).and_then(|secs| {
                        if !fits(secs) {
                            Err(format!("{v:?} is longer than PostgreSQL's limit of 24 days; use \"0s\" to wait for ever"))
                        } else if secs == 0 && key.starts_with("objectives.") {
                            // no restore takes no time, and no backup is taken this instant:
                            // every drill would fail
                            Err(format!("{v:?} is an objective no drill can meet; give the longest loss (rpo) or outage (rto) you accept, e.g. \"1h\""))
                        } else {
                            Ok(secs)
                        }
                    }).map_err(|e| {
                        Error::config(format!(
                            "{origin}:{}: {key} of source {:?}: {e}",
                            key_line(key.rsplit('.').next().unwrap_or(key)),
                            s.name
                        ))
                    })?;
                }
            }
            if let Some(v) = &s.max_rate {
                parse_max_rate(v).map_err(|e| {
                    Error::config(format!(
                        "{origin}:{}: max_rate of source {:?}: {e}",
                        key_line("max_rate"),
                        s.name
                    ))
                    .hint("bytes per second as pg_basebackup's --max-rate takes them: \"50M\" (megabytes) or \"800k\" (kilobytes), from 32k to 1024M; leave it out for no limit")
                })?;
            }
        }
        if let Some(u) = &self.audit.head_url {
            let parsed = url::Url::parse(u).ok();
            if !parsed.is_some_and(|p| matches!(p.scheme(), "http" | "https") && p.has_host()) {
                return Err(Error::config(format!(
                    "{origin}:{}: audit.head_url is not an http(s) URL",
                    at("head_url")
                ))
                .hint("e.g. head_url = \"https://evidence.example.com/lifeboat/head\""));
            }
        }
        for (i, r) in std::iter::once(&self.repository)
            .chain(&self.copies)
            .enumerate()
        {
            if let Some(url) = &r.url {
                let (key, line) = if i == 0 {
                    ("repository.url", key_line(text, "[repository]", 0, "url"))
                } else {
                    ("copies.url", key_line(text, "[[copies]]", i - 1, "url"))
                };
                if url.trim().is_empty() {
                    return Err(Error::config(format!("{origin}:{line}: {key} is empty")));
                }
                if crate::repository::backend::holds_credentials(url) {
                    return Err(credentials_in_url(&format!("{origin}:{line}: {key}")));
                }
                if let Some(rest) = url.strip_prefix("s3://") {
                    if rest.split('/').next().unwrap_or("").is_empty() {
                        return Err(Error::config(format!(
                            "{origin}:{line}: {key} {url:?} names no bucket"
                        ))
                        .hint("write s3://BUCKET or s3://BUCKET/PREFIX"));
                    }
                } else if url.contains("://") {
                    return Err(Error::config(format!(
                        "{origin}:{line}: {key} {url:?} is neither a directory nor an s3:// URL"
                    ))
                    .hint("a local path (the default backend) or s3://BUCKET/PREFIX"));
                }
            }
        }
        Ok(())
    }
}

/// When root would follow a configuration that another user can change: what it names is
/// run (`password_command`, `secret_access_key_command`, hooks), read (password files)
/// and written (`[audit] head_file`, the repository) as root. `Some((refuse, why))` when
/// the file, its directory or a source's `pg_bin_dir` belongs to another user or may be
/// written by its group or everyone. `refuse` when everyone may write it, or when it was
/// found by the implicit search of the working directory (`found`) and is not root's:
/// whoever can edit it then runs what they like as root. `None` when not run as root.
#[must_use]
pub fn root_runs_what_others_control(
    config: &Config,
    path: &Path,
    found: bool,
) -> Option<(bool, String)> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let ran = programs_run(config);
    let places = [path, dir]
        .into_iter()
        .chain(
            config
                .sources
                .iter()
                .filter_map(|s| s.pg_bin_dir.as_deref()),
        )
        .chain(ran.iter().map(PathBuf::as_path));
    // found in the working directory, a link there is someone's choice of file too
    if found && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Some((
            true,
            format!(
                "{} is a symbolic link found in the working directory: whoever made it chose what root follows",
                path.display()
            ),
        ));
    }
    let mut first_note = None;
    for place in places {
        let Ok(m) = std::fs::metadata(place) else {
            continue;
        };
        // the file or its directory, found in the working directory: whoever controls
        // either chose what root runs
        let chosen_here = found && (place == path || place == dir);
        // a sticky directory (/tmp) lets no one replace another's file
        let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0;
        let who = if m.mode() & 0o002 != 0 && !sticky_dir {
            Some((true, "every user of this host may change it".to_string()))
        } else if m.uid() != 0 {
            let owner = crate::repository::owner::user_name(m.uid());
            Some((chosen_here, format!("it belongs to {owner}")))
        } else if m.mode() & 0o020 != 0 && !sticky_dir {
            Some((chosen_here, "its group may change it".to_string()))
        } else {
            None
        };
        if let Some((refuse, who)) = who {
            let said = format!(
                "{} holds what lifeboat runs, reads and writes, and {who}: run as root, lifeboat follows what they write there as root",
                place.display()
            );
            // a refusal anywhere outranks a note on an earlier place (another user's
            // configuration file must not hide a script every user may change)
            if refuse {
                return Some((true, said));
            }
            first_note.get_or_insert((false, said));
        }
    }
    first_note
}

/// The files root runs for `config`, besides the configuration itself: each program (and
/// each file named by an absolute path, a script given to `sh`) of its commands
/// (`password_command`, `secret_access_key_command`, hooks) with the directory that holds
/// it, and every file in a source's `pg_bin_dir` (pg_dump, psql, ...): a script made
/// writable by all "to get it working" would run as root whatever anyone writes into it.
fn programs_run(config: &Config) -> Vec<PathBuf> {
    let commands = [
        config.repository.password_command.as_deref(),
        config.repository.secret_access_key_command.as_deref(),
    ]
    .into_iter()
    .flatten()
    .chain(config.sources.iter().flat_map(|s| {
        [
            s.password_command.as_deref(),
            s.hooks.pre_restore.as_deref(),
            s.hooks.post_restore.as_deref(),
        ]
        .into_iter()
        .flatten()
        .chain(s.drill.hooks.iter().map(String::as_str))
        .chain(s.drill.hooks_before_checks.iter().map(String::as_str))
    }));
    let mut out = Vec::new();
    for command in commands {
        let words = crate::sources::postgres::cluster::shell_words(command);
        let program = words.first().and_then(|w| {
            if w.contains('/') {
                Some(PathBuf::from(w))
            } else {
                std::env::var_os("PATH").and_then(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(w))
                        .find(|c| c.is_file())
                })
            }
        });
        // a later word that is a program (`runuser -u app -- /opt/start.sh`) or what an
        // interpreter runs (`sh /opt/get-pw`); not a file a command merely reads or writes
        let interpreter = program
            .as_deref()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .is_some_and(|n| {
                ["sh", "bash", "dash", "zsh", "ksh"].contains(&n)
                    || ["python", "perl", "ruby", "node"]
                        .iter()
                        .any(|i| n.starts_with(i))
            });
        let scripts = words
            .iter()
            .skip(1)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .filter(|p| {
                std::fs::metadata(p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && (interpreter || m.permissions().mode() & 0o111 != 0)
                })
            })
            .collect::<Vec<_>>();
        for file in program.into_iter().chain(scripts) {
            if let Some(d) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                out.push(d.to_path_buf());
            }
            out.push(file);
        }
    }
    for dir in config
        .sources
        .iter()
        .filter_map(|s| s.pg_bin_dir.as_deref())
    {
        if let Ok(entries) = std::fs::read_dir(dir) {
            out.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

/// The error for a repository URL with `user:secret@` in it (`what` names where it was
/// given); the URL itself is not repeated.
pub(crate) fn credentials_in_url(what: &str) -> Error {
    Error::config(format!(
        "{what} holds credentials (`KEY:SECRET@` before the bucket or host): lifeboat takes none from a URL, and the URL is not repeated here"
    ))
    .hint("write the URL without them (s3://BUCKET/PREFIX) and give the key as access_key_id with secret_access_key_file or secret_access_key_command in [repository], or as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; then change that secret, as it has been written in a URL")
}

/// The 1-based line of `key = ...` in the `index`-th table headed `header` (`[[source]]`,
/// `[repository]`), inline tables included; the header's line when the key is not written
/// there, 0 when the table is not found.
fn key_line(text: &str, header: &str, index: usize, key: &str) -> usize {
    let mut tables = 0;
    let mut inside = false;
    let mut header_line = 0;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == header && {
                tables += 1;
                tables == index + 1
            };
            if inside {
                header_line = n + 1;
            }
            continue;
        }
        if inside && assigns(t, key) {
            return n + 1;
        }
    }
    header_line
}

/// Whether `line` (or an inline table on it) assigns `key`.
fn assigns(line: &str, key: &str) -> bool {
    let line = line.split('#').next().unwrap_or("");
    line.match_indices(key).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + key.len()..].trim_start();
        before.is_none_or(|c| c == '{' || c == ',' || c.is_whitespace()) && after.starts_with('=')
    })
}

/// The key whose value starts at byte `pos`: the `[table]` it is in and the name before
/// the nearest `=` on its line (`source.kind`, `source.objectives.rto`).
fn key_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..pos];
    let eq = before.rfind('=')?;
    let name = before[..eq]
        .rsplit(['{', ','])
        .next()?
        .trim()
        .trim_matches('"');
    if name.is_empty() {
        return None;
    }
    // an inline table on the line: `objectives = { rto = ... }`
    let outer = before[..eq]
        .rfind('{')
        .and_then(|b| before[..b].rfind('='))
        .map(|e| before[..e].trim().trim_matches('"'));
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let mut path: Vec<String> = table.into_iter().collect();
    path.extend(outer.map(str::to_string));
    path.push(name.to_string());
    Some(path.join("."))
}

/// 1-based line and column of byte offset `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Parses `"90s"`, `"30m"`, `"2h"`, `"7d"`, `"1h30m"` into seconds.
///
/// # Errors
///
/// A message saying what is wrong with the text.
pub fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.ends_with("ms") && s[..s.len() - 2].bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?}: durations count whole seconds, not milliseconds; write \"1s\" or more"
        ));
    }
    if s.contains(['.', ',']) {
        return Err(format!(
            "{s:?}: durations take whole numbers, and count whole seconds; write a fraction with a smaller unit, like \"1h30m\" for an hour and a half, and at least \"1s\""
        ));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"30m\", \"2h\" or \"7d\""))?;
        num.clear();
        let mult = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => {
                return Err(format!(
                    "{s:?} is not a duration: write a number and a unit (s, m, h, d or w), without spaces, like \"90s\", \"10m\", \"1h30m\" or \"7d\""
                ))
            }
        };
        total += n * mult;
    }
    if !num.is_empty() {
        return Err(format!("{s:?} needs a unit, e.g. \"{num}h\""));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_the_config_file_s_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lifeboat.toml");
        std::fs::write(
            &path,
            "[repository]\nurl = \"repo\"\npassword_file = \"secrets/repo.pass\"\n\
             [audit]\nhead_file = \"/abs/audit.heads\"\n\
             [[copies]]\nurl = \"s3://bucket/p\"\nsecret_access_key_file = \"s3.key\"\n\
             [[source]]\nname = \"db\"\nkind = \"postgres\"\ndsn = \"dbname=app\"\npassword_file = \"pg.pass\"\n",
        )
        .unwrap();
        let (cfg, _) = Config::load(Some(&path)).unwrap().unwrap();
        let d = std::path::absolute(dir.path()).unwrap();
        assert_eq!(
            cfg.repository.url,
            Some(d.join("repo").display().to_string())
        );
        assert_eq!(
            cfg.repository.password_file,
            Some(d.join("secrets/repo.pass"))
        );
        assert_eq!(cfg.audit.head_file, Some(PathBuf::from("/abs/audit.heads")));
        assert_eq!(cfg.copies[0].url.as_deref(), Some("s3://bucket/p"));
        assert_eq!(cfg.copies[0].secret_access_key_file, Some(d.join("s3.key")));
        assert_eq!(cfg.sources[0].password_file, Some(d.join("pg.pass")));
    }

    const EXAMPLE: &str = r#"
[repository]            # primary; a local path or s3://bucket/prefix
url = "/var/backups/lifeboat"
password_file = "/etc/lifeboat/repo.pass"

[[copies]]              # offsite
url = "s3://dr-bucket/app"
endpoint = "https://s3.example.net"

[[source]]
name = "app-db"
kind = "postgres"
dsn = "postgresql://backup@db:5432/app"
schedule = { logical = "0 2 * * *", schema = "0 3 * * 0", physical = "0 1 * * 0" }
retention = { daily = 30, monthly = 12, yearly = 7, schema_days = 90 }
objectives = { rpo = "1h", rto = "2h" }
drill = { schedule = "0 5 1 * *", checks = ["select count(*) > 0 from users"] }
"#;

    #[test]
    fn design_example_parses() {
        let c = Config::parse(EXAMPLE, "lifeboat.toml").unwrap();
        assert_eq!(c.sources[0].name, "app-db");
        assert_eq!(c.sources[0].retention.daily, Some(30));
        assert_eq!(c.copies.len(), 1);
    }

    #[test]
    fn settings_nothing_acts_on_are_named() {
        let c = Config::parse(EXAMPLE, "lifeboat.toml").unwrap();
        let notes = c.dormant_settings();
        let keys: Vec<&str> = notes.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source.app-db.schedule",
                "source.app-db.drill.schedule",
                "source.app-db.retention",
                "copies.url"
            ]
        );
        assert!(
            notes[0].note.contains("physical \"0 1 * * 0\"")
                && notes[0].note.contains("nothing runs these backups"),
            "{notes:?}"
        );
        assert!(
            notes[1].note.contains("nothing runs these drills"),
            "{notes:?}"
        );
        // every configured key, not just some
        assert!(
            notes[2]
                .note
                .starts_with("daily 30, monthly 12, yearly 7, schema_days 90: not enforced yet"),
            "{notes:?}"
        );
        assert!(
            notes[3]
                .note
                .starts_with("s3://dr-bucket/app: copies are not made yet"),
            "{notes:?}"
        );
        let plain = "[[source]]\nname = \"a\"\nkind = \"postgres\"\n";
        assert!(Config::parse(plain, "x")
            .unwrap()
            .dormant_settings()
            .is_empty());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[repository]\nurl = \"/x\"\npasword_file = \"/p\"\n";
        let e = Config::parse(text, "lb.toml").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("lb.toml:3"), "{m}");
        assert!(m.contains("pasword_file"), "{m}");
    }

    #[test]
    fn source_names_fit_everywhere_they_go() {
        for ok in ["main", "app-db_2.eu", "_x", "9"] {
            assert!(valid_source_name(ok), "{ok}");
        }
        let long = "a".repeat(101);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-lead",
            "a/b",
            "a b",
            "ünï",
            long.as_str(),
        ] {
            assert!(!valid_source_name(bad), "{bad}");
        }
    }

    #[test]
    fn bad_kind_and_duplicate_name() {
        let text = "[[source]]\nname = \"a\"\nkind = \"mysql\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("c:3") && m.contains("mysql"), "{m}");
        assert!(m.contains("source.kind:"), "the key is named: {m}");
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\n[[source]]\nname = \"a\"\nkind = \"postgres\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("used twice") && m.contains("c:5"),
            "the duplicate's line: {m}"
        );
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\ndatabases = \"app\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("c:4") && m.contains("source.databases:"), "{m}");
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\nretention = { daily = \"x\" }\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("source.retention.daily:"), "{m}");
    }

    #[test]
    fn schedules_are_cron_expressions() {
        let text =
            "[[source]]\nname = \"a\"\nkind = \"postgres\"\nschedule = { logical = \"banana\" }\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("c:4: schedule.logical") && m.contains("banana"),
            "{m}"
        );
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\ndrill = { schedule = \"0 5 1 * *\" }\nschedule = { physical = \"0 1 * * 0\" }\n";
        Config::parse(text, "c").expect("valid schedules");
    }

    #[test]
    fn a_plain_schedule_or_retention_string_shows_the_table_wanted() {
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\nschedule = \"0 2 * * *\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("c:4") && m.contains("schedule") && m.contains("{ logical = \"0 2 * * *\""),
            "{m}"
        );
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\nretention = 30\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("c:4") && m.contains("{ daily = 30, monthly = 12 }"),
            "{m}"
        );
    }

    #[test]
    fn lenient_parsing_returns_a_bad_value_beside_the_configuration() {
        let text = "[repository]\nurl = \"/r\"\n[[source]]\nname = \"a\"\nkind = \"postgres\"\nschedule = { logical = \"@reboot\" }\n";
        assert!(Config::parse(text, "c").is_err());
        let (cfg, problem) = Config::parse_lenient(text, "c").expect("parses");
        assert_eq!(cfg.sources[0].name, "a");
        assert!(problem
            .expect("the problem")
            .to_string()
            .contains("schedule.logical"));
        assert!(
            Config::parse_lenient("[repository]\nurl = 3\n", "c").is_err(),
            "wrong types stay fatal"
        );
    }

    #[test]
    fn a_duration_is_found_on_its_own_line() {
        // the value "2" also appears in the dsn's port, on an earlier line
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\ndsn = \"port=5432\"\narchive_timeout = \"2\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("c:5: archive_timeout"), "{m}");
    }

    #[test]
    fn a_base_backups_pace_is_checked_when_loaded() {
        let src = "[[source]]\nname = \"a\"\nkind = \"postgres\"\n";
        let ok = Config::parse(
            &format!("{src}checkpoint = \"spread\"\nmax_rate = \"50M\"\n"),
            "c",
        )
        .expect("valid");
        assert_eq!(ok.sources[0].checkpoint, Some(Checkpoint::Spread));
        assert_eq!(parse_max_rate("50M"), Ok(51_200));
        assert_eq!(parse_max_rate("800k"), Ok(800));
        for (bad, says) in [
            ("50", "not a rate"),
            ("50 MB/s", "not a rate"),
            ("M", "no number"),
            ("16k", "outside"),
            ("2048M", "outside"),
            ("2G", "outside"),
            ("99999999999999999999M", "outside"),
        ] {
            let m = Config::parse(&format!("{src}max_rate = {bad:?}\n"), "c")
                .unwrap_err()
                .to_string();
            assert!(
                m.contains("c:4: max_rate") && m.contains(says),
                "{bad}: {m}"
            );
        }
        let m = Config::parse(&format!("{src}checkpoint = \"slow\"\n"), "c")
            .unwrap_err()
            .to_string();
        assert!(m.contains("checkpoint") && m.contains("spread"), "{m}");
    }

    #[test]
    fn repository_urls_are_checked_when_loaded() {
        let text = "[repository]\nurl = \"/r\"\n[[copies]]\nurl = \"ftp://x/y\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("c:4: copies.url"), "{m}");
        let text = "[repository]\nurl = \"s3:///prefix\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("c:2: repository.url") && m.contains("no bucket"),
            "{m}"
        );
    }

    #[test]
    fn a_password_file_and_command_together_are_refused() {
        let text =
            "[repository]\nurl = \"/r\"\npassword_file = \"/p\"\npassword_command = \"pass x\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("c:4") && m.contains("both password_file and password_command"),
            "{m}"
        );
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\npassword_file = \"/p\"\npassword_command = \"x\"\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("source \"a\" has both"), "{m}");
    }

    #[test]
    fn bad_objective_duration() {
        let text =
            "[[source]]\nname = \"a\"\nkind = \"postgres\"\nobjectives = { rpo = \"soon\" }\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(m.contains("objectives.rpo") && m.contains("c:4"), "{m}");
        let text = "[[source]]\nname = \"a\"\nkind = \"postgres\"\nobjectives = { rto = \"0s\" }\n";
        let m = Config::parse(text, "c").unwrap_err().to_string();
        assert!(
            m.contains("objectives.rto") && m.contains("no drill can meet"),
            "{m}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86400);
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("500ms")
            .unwrap_err()
            .contains("not milliseconds"));
        assert!(parse_duration("0ms")
            .unwrap_err()
            .contains("not milliseconds"));
        assert!(parse_duration("1.5h").unwrap_err().contains("\"1h30m\""));
        // the message shows the form, not a puzzle about a space character
        let e = parse_duration("10 minutes").unwrap_err();
        assert!(e.contains("\"10m\"") && e.contains("without spaces"), "{e}");
    }

    #[test]
    fn another_server_gets_none_of_the_sources_password_settings() {
        let mut src = SourceConfig::postgres("app", "host=prod user=app");
        src.password_file = Some("/etc/lifeboat/prod.pass".into());
        src.password_command = Some("vault read prod".into());
        src.databases = vec!["app".into()];
        let other = src.on_server("host=new-db user=postgres");
        assert_eq!(other.dsn.as_deref(), Some("host=new-db user=postgres"));
        assert_eq!((other.password_file, other.password_command), (None, None));
        assert_eq!(other.databases, src.databases);
    }
}
