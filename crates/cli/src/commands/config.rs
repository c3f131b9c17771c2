//! `lifeboat config check`: validate the file and test every connection.

use clap::Subcommand;
use lifeboat_core::ops::{backup::check_source, drill::check_scratch_server};

use crate::{output, Ctx};

/// Configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration, open the repository, connect to every source and drill
    /// server; notes name the settings nothing acts on yet.
    Check,
}

#[derive(serde::Serialize)]
struct CheckLine {
    what: String,
    ok: bool,
    detail: String,
    /// A valid setting that nothing acts on yet (a schedule without the daemon, ...): not
    /// a failure, but not working either.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    note: bool,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

impl CheckLine {
    fn of(what: String, r: &lifeboat_core::Result<String>) -> Self {
        let (ok, detail, hint) = match r {
            Ok(d) => (true, d.clone(), None),
            Err(e) => (false, e.to_string(), e.hint_text().map(str::to_string)),
        };
        Self {
            what,
            ok,
            detail,
            note: false,
            hint,
        }
    }
}

/// The exit status of a failed check: the kind of its first failure, so a refused
/// password still exits as one; every failure's message and hint are in the lines above.
fn failed(first: &anyhow::Error, count: usize) -> anyhow::Error {
    let kind = first
        .chain()
        .find_map(|e| e.downcast_ref::<lifeboat_core::Error>())
        .map_or(
            lifeboat_core::ErrorKind::Internal,
            lifeboat_core::Error::kind,
        );
    lifeboat_core::Error::new(
        kind,
        format!("{count} check(s) failed: see the FAIL lines above (with --json: the checks whose ok is false)"),
    )
    .into()
}

impl ConfigCmd {
    /// Runs the check; fails when any line fails.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        let path = ctx
            .config_path
            .as_ref()
            .map_or_else(|| "(no file)".to_string(), |p| p.display().to_string());
        lines.push(CheckLine::of(
            "configuration".into(),
            &Ok(format!("{path} is valid")),
        ));
        let repo = ctx.open();
        let mut first_err = None;
        match repo {
            Ok(r) => {
                lines.push(CheckLine::of(
                    "repository".into(),
                    &Ok(format!("opened {}", r.location())),
                ));
                // a configuration written anew (after a host loss) that names none of
                // the repository's sources, or another name for one
                if let Ok(backups) = r.backups() {
                    let mut unconfigured: Vec<String> = backups
                        .into_iter()
                        .map(|b| b.meta.source)
                        .filter(|n| !ctx.config.sources.iter().any(|s| &s.name == n))
                        .collect();
                    unconfigured.sort();
                    unconfigured.dedup();
                    if !unconfigured.is_empty() {
                        lines.push(CheckLine {
                            what: "repository".into(),
                            ok: true,
                            detail: format!(
                                "holds backups of source(s) not configured here: {}",
                                unconfigured.join(", ")
                            ),
                            note: true,
                            hint: Some("restore, drill and wal status take them by name (--source); a backup, and a wal-push with a configuration file, need a [[source]] of that name (a backup with its dsn)".into()),
                        });
                    }
                }
                let location = ctx.repo_location().unwrap_or_default();
                // under two WAL segments (of the usual size: the cluster's is not known
                // here), wal-push cannot store the next one
                if let Some(free) = lifeboat_core::repository::free_space(&location) {
                    let full = free < 2 * lifeboat_core::wal::DEFAULT_SEGMENT_SIZE;
                    lines.push(CheckLine {
                        what: "repository".into(),
                        ok: !full,
                        detail: format!(
                            "{} free on its file system",
                            crate::output::bytes(free)
                        ),
                        note: false,
                        hint: full.then(|| {
                            "free space there (or move the repository): backups and WAL pushes into it fail until then".to_string()
                        }),
                    });
                    if full && first_err.is_none() {
                        first_err = Some(
                            lifeboat_core::Error::unavailable(format!(
                                "the repository's file system at {location} is full"
                            ))
                            .into(),
                        );
                    }
                }
                if !lifeboat_core::repository::is_s3_url(&location) {
                    let root = std::path::Path::new(&location);
                    for (fails, detail, hint) in
                        lifeboat_core::repository::owner::access_problems(root)
                    {
                        lines.push(CheckLine {
                            what: "repository".into(),
                            ok: !fails,
                            detail,
                            note: !fails,
                            hint: Some(hint),
                        });
                        if fails && first_err.is_none() {
                            first_err = Some(
                                lifeboat_core::Error::unavailable(format!(
                                    "the repository at {} cannot be written by this user",
                                    root.display()
                                ))
                                .into(),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                let core = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<lifeboat_core::Error>());
                lines.push(CheckLine {
                    what: "repository".into(),
                    ok: false,
                    detail: e.to_string(),
                    note: false,
                    hint: core.and_then(|c| c.hint_text()).map(str::to_string),
                });
                first_err = Some(e);
            }
        }
        let mut privilege_notes = Vec::new();
        let mut record = |what: String, r: lifeboat_core::Result<String>| {
            lines.push(CheckLine::of(what, &r));
            if let Err(e) = r {
                first_err.get_or_insert(e.into());
            }
        };
        for src in &ctx.config.sources {
            let checked = check_source(src);
            let reachable = checked.as_ref().is_ok_and(|c| c.connected.is_some());
            match checked {
                Ok(c) => {
                    if let Some(d) = c.connected {
                        record(
                            format!("source {}", src.name),
                            Ok(format!("connected: {d}")),
                        );
                    }
                    for e in c.failed {
                        record(format!("source {}", src.name), Err(e));
                    }
                    // what the server's archive_command says of this lifeboat: the source
                    // it pushes as, and the binary it runs
                    let archiving = [
                        reachable
                            .then(|| {
                                lifeboat_core::ops::backup::archive_source_note(&ctx.config, src)
                            })
                            .flatten(),
                        std::env::current_exe()
                            .ok()
                            .filter(|_| reachable)
                            .and_then(|exe| {
                                lifeboat_core::ops::backup::other_archiving_binary(src, &exe)
                            }),
                        reachable
                            .then(|| lifeboat_core::ops::backup::statement_log_note(src))
                            .flatten(),
                    ];
                    match reachable
                        .then(|| lifeboat_core::ops::backup::archive_program_problem(src))
                        .flatten()
                    {
                        Some((true, what)) => record(
                            format!("source {}", src.name),
                            Err(lifeboat_core::Error::config(what).hint(format!(
                                "point archive_command at the lifeboat binary on this host: {}",
                                super::restore::archive_command(ctx, &src.name).unwrap_or_default()
                            ))),
                        ),
                        Some((false, what)) => privilege_notes.push(CheckLine {
                            what: format!("source {}", src.name),
                            ok: true,
                            detail: what,
                            note: true,
                            hint: None,
                        }),
                        None => {}
                    }
                    for other in archiving.into_iter().flatten() {
                        privilege_notes.push(CheckLine {
                            what: format!("source {}", src.name),
                            ok: true,
                            detail: other,
                            note: true,
                            hint: None,
                        });
                    }
                    if !c.uncovered.is_empty() {
                        privilege_notes.push(CheckLine {
                            what: format!("source {}", src.name),
                            ok: true,
                            detail: lifeboat_core::ops::backup::uncovered_note(src, &c.uncovered),
                            note: true,
                            hint: None,
                        });
                    }
                }
                Err(e) => record(format!("source {}", src.name), Err(e)),
            }
            // what the role may not do: a table it cannot read fails every night's backup
            let problems = if reachable {
                lifeboat_core::ops::backup::check_privileges(src).unwrap_or_default()
            } else {
                Vec::new()
            };
            // a source scheduled for physical backups only may use a role that reads no
            // table: what would stop a logical backup is a note for it, not a failure
            let physical_only = src.schedule.physical_only();
            for p in problems {
                if p.fails_logical && !physical_only {
                    record(
                        format!("role and settings of {}", src.name),
                        Err(lifeboat_core::Error::postgres(p.problem).hint(p.hint)),
                    );
                } else {
                    privilege_notes.push(CheckLine {
                        what: format!("role and settings of {}", src.name),
                        ok: true,
                        detail: if p.fails_logical {
                            format!("{} (a logical backup by hand would fail; the schedule takes physical backups only)", p.problem)
                        } else {
                            p.problem
                        },
                        note: true,
                        hint: Some(p.hint),
                    });
                }
            }
            // the scratch server is reached only by drills: a refusal shows here, not
            // halfway through the first drill
            if let Some(r) = check_scratch_server(src).transpose() {
                record(format!("drill.server of {}", src.name), r);
            }
        }
        for (what, r) in lifeboat_core::repository::head::check(&ctx.config.audit) {
            record(what, r);
        }
        // (one that must be refused never gets here: see `run` in main.rs)
        if let Some((_, why)) = ctx.config_path.as_deref().and_then(|p| {
            lifeboat_core::config::root_runs_what_others_control(&ctx.config, p, false)
        }) {
            privilege_notes.push(CheckLine {
                what: "configuration run as root".into(),
                ok: true,
                detail: why,
                note: true,
                hint: Some(crate::OTHERS_CONTROL_HINT.into()),
            });
        }
        lines.extend(privilege_notes);
        for (key, file) in lifeboat_core::secret::readable_by_others(&ctx.config) {
            lines.push(CheckLine {
                what: key,
                ok: true,
                detail: format!("{} is open to every user of this host", file.display()),
                note: true,
                hint: Some(format!(
                    "chmod o-rwx {} (600, or 640 with a group only lifeboat's users are in)",
                    file.display()
                )),
            });
        }
        if let Some(file) = ctx.config_path.as_ref().filter(|f| {
            std::fs::metadata(f).is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o007 != 0
            })
        }) {
            let has_password = lifeboat_core::sources::postgres::conn::dsn_has_password;
            for src in &ctx.config.sources {
                if src.dsn.as_deref().is_some_and(has_password) {
                    lines.push(CheckLine {
                        what: format!("source {}", src.name),
                        ok: true,
                        detail: format!(
                            "its dsn holds a password, and {} is open to every user of this host",
                            file.display()
                        ),
                        note: true,
                        hint: Some(format!(
                            "move the password into a password_file (600) and out of the dsn, or chmod o-rwx {}",
                            file.display()
                        )),
                    });
                }
                // the scratch server's own credentials, in the same file
                if src.drill.server.as_deref().is_some_and(has_password) {
                    lines.push(CheckLine {
                        what: format!("drill.server of source {}", src.name),
                        ok: true,
                        detail: format!(
                            "its DSN holds a password, and {} is open to every user of this host",
                            file.display()
                        ),
                        note: true,
                        hint: Some(format!(
                            "chmod o-rwx {}, or take the password out of the DSN and give it in ~/.pgpass (600) of the user drills run as",
                            file.display()
                        )),
                    });
                }
            }
        }
        // valid, and printed as such, but nothing acts on them yet: say so
        for d in ctx.config.dormant_settings() {
            lines.push(CheckLine {
                what: d.key,
                ok: true,
                detail: d.note,
                note: true,
                hint: None,
            });
        }
        if ctx.json {
            output::json(&lines)?;
        } else {
            for l in &lines {
                println!(
                    "{} {:<20} {}",
                    match (l.ok, l.note) {
                        (true, false) => "ok  ",
                        (true, true) => "note",
                        (false, _) => "FAIL",
                    },
                    l.what,
                    l.detail
                );
                if let Some(h) = &l.hint {
                    println!("     hint: {h}");
                }
            }
        }
        match first_err {
            Some(e) => Err(failed(&e, lines.iter().filter(|l| !l.ok).count())),
            None => Ok(()),
        }
    }
}
