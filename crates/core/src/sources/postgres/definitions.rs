//! A restored database's definitions (tables, indexes, constraints, triggers, policies,
//! views, functions, grants, owners) against the backup's: the backup's table of contents
//! beside the one `pg_dump --schema-only` writes of the restored copy, object by object.
//! The data checks compare rows; this catches a policy, a key or a grant that did not
//! come back (or was changed on the copy).

use std::collections::BTreeMap;

use serde::Serialize;

use super::archive::{read_toc, TocEntry};
use super::conn::PgConn;
use crate::error::{Error, Result};

/// What a definition comparison leaves out of both sides.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// Production's roles were restored, and with them owners and grants (`ACL`,
    /// `DEFAULT ACL`): compare those.
    pub roles: bool,
    /// Event triggers and subscriptions were restored ([`SUPERUSER_ONLY`]).
    pub superuser_only: bool,
}

/// The outcome: objects compared, and those that differ (`KIND schema.name` each).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct DefinitionCheck {
    /// Objects compared.
    pub compared: usize,
    /// In the backup, not in the restored copy.
    pub missing: Vec<String>,
    /// In the restored copy, not in the backup.
    pub extra: Vec<String>,
    /// In both, defined (or owned) differently.
    pub changed: Vec<String>,
    /// For the first few of `changed`, where: the first line that differs on each side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub how: Vec<String>,
}

impl DefinitionCheck {
    /// Nothing differs.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }

    /// One line: the first few of each kind of difference, and how many in all.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.ok() {
            return format!(
                "{} objects (tables, indexes, constraints, triggers, policies, views, functions, ...) defined as in the backup",
                self.compared
            );
        }
        let mut parts = Vec::new();
        for (what, list) in [
            ("missing from the restored copy", &self.missing),
            ("not in the backup", &self.extra),
            ("defined differently", &self.changed),
        ] {
            if list.is_empty() {
                continue;
            }
            const SHOWN: usize = 5;
            let mut named = list[..list.len().min(SHOWN)].join(", ");
            if list.len() > SHOWN {
                named.push_str(&format!(" and {} more", list.len() - SHOWN));
            }
            parts.push(format!("{what}: {named}"));
        }
        if let Some(first) = self.how.first() {
            parts.push(format!("first difference: {first}"));
        }
        parts.join("; ")
    }
}

/// Kinds that are data, or the database itself (which the copy has under another name).
const NOT_DEFINITIONS: &[&str] = &[
    "TABLE DATA",
    "SEQUENCE SET",
    "BLOBS",
    "BLOB",
    "BLOB METADATA",
    "LARGE OBJECT",
    "MATERIALIZED VIEW DATA",
    "DATABASE",
    "DATABASE PROPERTIES",
    "ENCODING",
    "STDSTRINGS",
    "SEARCHPATH",
];

/// Kinds only a superuser may create: a restore by another role leaves them out.
pub const SUPERUSER_ONLY: &[&str] = &["EVENT TRIGGER", "SUBSCRIPTION"];

/// Kinds whose entry names the object they are on (`COMMENT` ... `TABLE people`).
const ON_ANOTHER: &[&str] = &[
    "COMMENT",
    "ACL",
    "SECURITY LABEL",
    "DEFAULT ACL",
    "PUBLICATION TABLE",
];

/// The definitions of `toc` in `scope`, by kind, schema and name.
fn definitions(toc: &[TocEntry], scope: Scope) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in toc {
        let kept = !NOT_DEFINITIONS.contains(&e.desc.as_str())
            // a comment or grant on the database (named differently) or a large object
            // (their contents are the data checks')
            && !e.tag.starts_with("DATABASE ")
            && !e.tag.starts_with("LARGE OBJECT ")
            && (scope.roles || (e.desc != "ACL" && e.desc != "DEFAULT ACL"))
            && (scope.superuser_only
                || !SUPERUSER_ONLY
                    .iter()
                    .any(|k| e.desc == *k || e.tag.starts_with(&format!("{k} "))));
        // without owners compared, the public schema of a database upgraded from
        // PostgreSQL 14 (owned by its owner, not pg_database_owner) is an entry only for its
        // owner: it says only `-- *not* creating schema, since initdb creates it`
        let bare_public = e.desc == "SCHEMA"
            && e.tag == "public"
            && e.defn
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"));
        if !kept || (!scope.roles && bare_public) {
            continue;
        }
        let schema = (!e.namespace.is_empty() && e.namespace != "-").then_some(&e.namespace);
        // a comment's or grant's name says what it is on (`TABLE people`)
        let name = match schema {
            Some(ns) if ON_ANOTHER.contains(&e.desc.as_str()) => {
                format!("{} {} (schema {ns})", e.desc, e.tag)
            }
            Some(ns) => format!("{} {ns}.{}", e.desc, e.tag),
            None => format!("{} {}", e.desc, e.tag),
        };
        let mut value = e.defn.trim().to_string();
        if scope.roles && !e.owner.is_empty() {
            value.push_str(&format!("\n-- owner {}", e.owner));
        }
        out.entry(name).or_default().push(value);
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Compares `backup` (the dump's table of contents) with what `pg_dump --schema-only`
/// finds in `db` through `conn` now, in the session the backup's pg_dump had (`session`,
/// its `-c` options: a `timestamptz` or `bytea` constant in a partition bound, a default
/// or a check is written in that session's time zone and `bytea_output`).
///
/// # Errors
///
/// When pg_dump fails or its output cannot be read.
pub fn compare(
    conn: &PgConn,
    db: &str,
    backup: &[TocEntry],
    scope: Scope,
    session: Option<&str>,
) -> Result<DefinitionCheck> {
    let mut cmd = match session {
        Some(options) => conn.with_options(options).command("pg_dump", db),
        None => conn.command("pg_dump", db),
    };
    // libpq would send it after the options, and it would win
    cmd.env_remove("PGTZ");
    cmd.args([
        "--schema-only",
        "--format=custom",
        "--compress=0",
        "--no-password",
    ]);
    let out = super::cluster::run_client_with(cmd, true, None)
        .map_err(|e| Error::io(conn.bin().program("pg_dump").display(), e))?;
    if !out.status.success() {
        return Err(conn.classify(
            &String::from_utf8_lossy(&out.stderr),
            &format!("pg_dump --schema-only of {db:?}"),
        ));
    }
    let (_, restored) = read_toc(&out.stdout[..]).map_err(|e| {
        Error::integrity(format!(
            "the schema pg_dump wrote of {db:?} could not be read: {e}"
        ))
    })?;
    Ok(differences(
        &definitions(backup, scope),
        &definitions(&restored, scope),
    ))
}

fn differences(
    backup: &BTreeMap<String, Vec<String>>,
    restored: &BTreeMap<String, Vec<String>>,
) -> DefinitionCheck {
    let mut check = DefinitionCheck {
        compared: backup.values().map(Vec::len).sum(),
        ..DefinitionCheck::default()
    };
    for (name, defs) in backup {
        match restored.get(name) {
            None => check.missing.push(name.clone()),
            Some(r) if r != defs => {
                if check.how.len() < 3 {
                    check.how.push(first_difference(name, defs, r));
                }
                check.changed.push(name.clone());
            }
            Some(_) => {}
        }
    }
    check.extra = restored
        .keys()
        .filter(|k| !backup.contains_key(*k))
        .cloned()
        .collect();
    check
}

/// `NAME: the backup has `A`, the copy `B`` for the first line that differs.
fn first_difference(name: &str, backup: &[String], restored: &[String]) -> String {
    let (a, b) = (backup.join("\n"), restored.join("\n"));
    let mut lines = a.lines().zip(b.lines());
    let (x, y) = lines.find(|(x, y)| x != y).unwrap_or_else(|| {
        // one is longer: its next line
        let n = a.lines().count().min(b.lines().count());
        (
            a.lines().nth(n).unwrap_or(""),
            b.lines().nth(n).unwrap_or(""),
        )
    });
    let short = |s: &str| {
        let s = s.trim();
        match s.char_indices().nth(160) {
            Some((i, _)) => format!("{}...", &s[..i]),
            None => s.to_string(),
        }
    };
    format!(
        "{name}: the backup has `{}`, the copy `{}`",
        short(x),
        short(y)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(desc: &str, namespace: &str, tag: &str, defn: &str, owner: &str) -> TocEntry {
        TocEntry {
            dump_id: 1,
            has_data: false,
            tag: tag.into(),
            desc: desc.into(),
            defn: defn.into(),
            copy_stmt: String::new(),
            namespace: namespace.into(),
            owner: owner.into(),
        }
    }

    #[test]
    fn objects_are_matched_by_kind_and_name_and_data_is_left_out() {
        let all = Scope {
            roles: true,
            superuser_only: true,
        };
        let backup = vec![
            entry(
                "TABLE",
                "app",
                "people",
                "CREATE TABLE app.people (id int);",
                "app",
            ),
            entry(
                "POLICY",
                "app",
                "people readers",
                "CREATE POLICY readers ...;",
                "app",
            ),
            entry(
                "ACL",
                "app",
                "TABLE people",
                "GRANT SELECT ON TABLE app.people TO r;",
                "app",
            ),
            entry("TABLE DATA", "app", "people", "", "app"),
            entry(
                "COMMENT",
                "",
                "DATABASE prod",
                "COMMENT ON DATABASE prod IS 'x';",
                "app",
            ),
            entry(
                "EVENT TRIGGER",
                "",
                "log_ddl",
                "CREATE EVENT TRIGGER log_ddl ...;",
                "postgres",
            ),
        ];
        let mut restored = backup.clone();
        restored[4].tag = "DATABASE lifeboat_drill_1".into();
        restored[3].desc = "SEQUENCE SET".into();
        let same = differences(&definitions(&backup, all), &definitions(&restored, all));
        assert!(same.ok(), "{same:?}");
        assert_eq!(same.compared, 4);

        // a policy gone, a grant changed, an owner changed, an index added
        restored.remove(1);
        restored[1].defn = "GRANT SELECT ON TABLE app.people TO other;".into();
        restored[0].owner = "drill".into();
        restored.push(entry(
            "INDEX",
            "app",
            "people_idx",
            "CREATE INDEX ...;",
            "app",
        ));
        let d = differences(&definitions(&backup, all), &definitions(&restored, all));
        assert_eq!(d.missing, ["POLICY app.people readers"]);
        assert_eq!(d.extra, ["INDEX app.people_idx"]);
        assert_eq!(
            d.changed,
            ["ACL TABLE people (schema app)", "TABLE app.people"]
        );
        assert_eq!(
            d.how[0],
            "ACL TABLE people (schema app): the backup has `GRANT SELECT ON TABLE app.people TO r;`, the copy `GRANT SELECT ON TABLE app.people TO other;`"
        );
        assert_eq!(
            d.how[1],
            "TABLE app.people: the backup has `-- owner app`, the copy `-- owner drill`"
        );
        assert!(
            d.describe()
                .starts_with("missing from the restored copy: POLICY app.people readers; "),
            "{}",
            d.describe()
        );

        // without roles on the target: owners and grants are not compared, nor event
        // triggers a role that is not a superuser could not restore
        let bare = Scope {
            roles: false,
            superuser_only: false,
        };
        let mut backup = backup;
        // the public schema of a database upgraded from PostgreSQL 14, owned by its owner
        backup.push(entry(
            "SCHEMA",
            "",
            "public",
            "-- *not* creating schema, since initdb creates it\n",
            "app",
        ));
        let mut restored = backup.clone();
        restored.retain(|e| e.desc != "ACL" && e.desc != "EVENT TRIGGER" && e.desc != "SCHEMA");
        restored[0].owner = "drill".into();
        let d = differences(&definitions(&backup, bare), &definitions(&restored, bare));
        assert!(d.ok(), "{d:?}");
    }
}
