//! `lifeboat wal inspect`: which transaction deleted, truncated or dropped what, read from
//! the archived WAL, and the restore that stops just before it.

use clap::Args;
use lifeboat_core::{
    sources::postgres::conn::PgConn,
    wal::inspect::{inspect, InspectOptions, Transaction},
};

use super::{parse_since, parse_until};
use crate::{output, Ctx};

/// Read the archived WAL of a time window: its transactions that deleted, updated,
/// inserted, truncated or dropped, with their commit times and ids.
#[derive(Debug, Args)]
pub struct WalInspectCmd {
    /// Source (default: the only one).
    #[arg(long, short)]
    source: Option<String>,
    /// Transactions committed at or after this time (a bare date: from the start of that
    /// day; or a time ago: 30m, 2h).
    #[arg(long, value_parser = parse_since)]
    since: Option<jiff::Timestamp>,
    /// ... and at or before this one (a bare date: to the end of that day; or a time ago).
    #[arg(long, value_parser = parse_until)]
    until: Option<jiff::Timestamp>,
    /// Only transactions that changed this table (`schema.table`, in --database), found by
    /// its file as the server has it now.
    #[arg(long)]
    table: Option<String>,
    /// The database --table is in (default: the source's DSN's).
    #[arg(long, short)]
    database: Option<String>,
    /// At most this many segments are fetched.
    #[arg(long, default_value_t = 64)]
    max_segments: usize,
    /// Where the segments are staged while they are read (default: LIFEBOAT_SCRATCH_DIR,
    /// else TMPDIR).
    #[arg(long)]
    scratch_dir: Option<std::path::PathBuf>,
}

impl WalInspectCmd {
    /// Prints the transactions, and the restore that stops just before the one that
    /// deleted most.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        super::since_before_until(self.since, self.until)?;
        let src = ctx.source_in_repository(self.source.as_deref(), None)?;
        let repo = ctx.open()?;
        let store = lifeboat_core::wal::WalStore::new(&repo, &src.name)?;
        // names for the relations, from the server as it is now (not needed for the rest)
        let conn = PgConn::from_source(&src).ok();
        let database = self
            .database
            .clone()
            .or_else(|| src.named_databases().first().cloned())
            .or_else(|| conn.as_ref().and_then(PgConn::default_database))
            .unwrap_or_else(|| "postgres".into());
        let table_file = match &self.table {
            Some(t) => Some(table_file(conn.as_ref(), &database, t)?),
            None => None,
        };
        let found = ctx.bars.spinning("reading the archived WAL", || {
            inspect(
                &store,
                &InspectOptions {
                    since: self.since,
                    until: self.until,
                    max_segments: self.max_segments,
                    pg_bin_dir: src.pg_bin_dir.clone(),
                    scratch_dir: self.scratch_dir.clone(),
                },
            )
        })?;
        let mut transactions: Vec<Transaction> = found.transactions.clone();
        if let Some(file) = &table_file {
            transactions.retain(|t| t.relations.iter().any(|r| r == file));
        }
        let names = conn
            .as_ref()
            .map(|c| relation_names(c, &database, &transactions))
            .unwrap_or_default();
        if ctx.json {
            return output::json(&serde_json::json!({
                "first_segment": found.first_segment,
                "last_segment": found.last_segment,
                "left_out_segments": found.left_out,
                "transactions": transactions,
                "relation_names": names,
            }));
        }
        let mut rows = vec![vec![
            "COMMITTED".into(),
            "XID".into(),
            "LSN".into(),
            "DELETES".into(),
            "UPDATES".into(),
            "INSERTS".into(),
            "TRUNCATES".into(),
            "DROPPED FILES".into(),
            "RELATIONS".into(),
        ]];
        for t in &transactions {
            rows.push(vec![
                format!(
                    "{}{}",
                    t.time.strftime("%Y-%m-%d %H:%M:%S%.6f UTC"),
                    if t.committed { "" } else { " (aborted)" }
                ),
                t.xid.to_string(),
                t.lsn.clone(),
                t.deletes.to_string(),
                t.updates.to_string(),
                t.inserts.to_string(),
                t.truncates.to_string(),
                t.dropped_files.to_string(),
                t.relations
                    .iter()
                    .map(|r| names.get(r).cloned().unwrap_or_else(|| r.clone()))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
        output::table(&rows);
        println!(
            "{} transaction(s) that changed rows or relations, read from segments {} to {}{}",
            transactions.len(),
            found.first_segment,
            found.last_segment,
            if found.left_out > 0 {
                format!(
                    "; {} more segment(s) of the window were not read (--max-segments, or a narrower --since/--until)",
                    found.left_out
                )
            } else {
                String::new()
            }
        );
        // the destructive one: most rows deleted, or a drop or truncate
        if let Some(t) = transactions
            .iter()
            .filter(|t| t.committed && t.deletes + t.truncates + t.dropped_files > 0)
            .max_by_key(|t| {
                (
                    t.deletes + t.truncates * 1_000_000 + t.dropped_files * 1_000_000,
                    t.xid,
                )
            })
        {
            println!(
                "to restore to just before transaction {} (committed {}): lifeboat restore --kind physical --source {} --target-xid {} --exclusive --to-dir DIR --start --port 5433",
                t.xid,
                output::time(t.time),
                src.name,
                t.xid
            );
        }
        Ok(())
    }
}

/// `tablespace/database/filenode` of `table` in `database` as the server has it now.
fn table_file(conn: Option<&PgConn>, database: &str, table: &str) -> anyhow::Result<String> {
    let conn = conn.ok_or_else(|| {
        lifeboat_core::Error::config("--table needs the source's server, to find the table's file")
            .hint("leave out --table and read the RELATIONS column, or give a source whose server answers")
    })?;
    let literal = lifeboat_core::sources::postgres::compare::literal(table);
    let row = conn.query(
        database,
        &format!(
            "select coalesce(nullif(c.reltablespace, 0), (select dattablespace from pg_database where datname = current_database())) || '/' || \
             (select oid from pg_database where datname = current_database()) || '/' || pg_relation_filenode(c.oid) \
             from pg_class c where c.oid = {literal}::regclass"
        ),
    )?;
    Ok(row.trim().to_string())
}

/// `tablespace/database/filenode` → `database: schema.table`, for the relations the
/// server still has under those files.
fn relation_names(
    conn: &PgConn,
    database: &str,
    transactions: &[Transaction],
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dbs) = conn.query(
        database,
        "select oid || '|' || datname from pg_database where datallowconn",
    ) else {
        return out;
    };
    for line in dbs.lines() {
        let Some((oid, name)) = line.trim().split_once('|') else {
            continue;
        };
        let files: Vec<&String> = transactions
            .iter()
            .flat_map(|t| &t.relations)
            .filter(|r| r.split('/').nth(1) == Some(oid))
            .collect();
        for file in files {
            let mut parts = file.split('/');
            let (Some(spc), Some(_), Some(node)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(spc), Ok(node)) = (spc.parse::<u32>(), node.parse::<u32>()) else {
                continue;
            };
            if let Ok(n) = conn.query(
                name,
                &format!(
                    "select pg_filenode_relation(case when {spc} = (select dattablespace from pg_database where datname = current_database()) then 0 else {spc} end, {node})::regclass"
                ),
            ) {
                let n = n.trim();
                if !n.is_empty() {
                    out.insert(file.clone(), format!("{name}: {n}"));
                }
            }
        }
    }
    out
}
