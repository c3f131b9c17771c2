//! Secrets: a string type that never prints itself, and the ways to obtain one.
//!
//! A secret comes from an environment variable, a file or a command — never from argv —
//! and is passed to child processes only through their environment or stdin.

use std::{fmt, path::Path, process::Command};

use crate::error::{Error, ErrorKind, Result};

/// Environment variables that hold lifeboat's own secrets (the repository password, the S3
/// credentials). Children that never need them are started without them; see
/// [`remove_secret_env`].
pub const SECRET_ENV: [&str; 3] = [
    "LIFEBOAT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Keeps lifeboat's own secrets ([`SECRET_ENV`]) out of `cmd`'s inherited environment.
/// For hooks and PostgreSQL's client programs: they have no use for the repository's keys,
/// and a hook's script or log should not be able to leak them. Not for a restored server,
/// whose restore_command runs lifeboat itself.
pub fn remove_secret_env(cmd: &mut Command) -> &mut Command {
    for var in SECRET_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// A password or key. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; use it only to hand it to a library or a child's environment.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from, in order of precedence: an environment variable, a file, a
/// command whose stdout is the secret.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct SecretSource {
    /// Environment variable to read (e.g. `LIFEBOAT_PASSWORD`).
    pub env: Option<String>,
    /// File holding the secret (trailing newline removed).
    pub file: Option<std::path::PathBuf>,
    /// Shell command printing the secret on stdout.
    pub command: Option<String>,
}

impl SecretSource {
    /// Resolves the secret; `what` names it in errors ("repository password").
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when no source is set or a source yields nothing,
    /// [`ErrorKind::Unavailable`] when the file cannot be read or the command fails.
    pub fn resolve(&self, what: &str) -> Result<Secret> {
        if let Some(var) = &self.env {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    return Ok(Secret::new(v));
                }
            }
        }
        if let Some(path) = &self.file {
            return read_secret_file(path, what);
        }
        if let Some(cmd) = &self.command {
            return run_secret_command(cmd, what);
        }
        let env_hint = self
            .env
            .as_deref()
            .map(|v| format!("set {v}, or "))
            .unwrap_or_default();
        Err(Error::config(format!("no {what} given")).hint(format!(
            "{env_hint}set password_file or password_command in the configuration"
        )))
    }
}

fn read_secret_file(path: &Path, what: &str) -> Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let msg = format!("cannot read {what} file {}", path.display());
        match e.kind() {
            // a path in the configuration that leads nowhere is a configuration mistake
            std::io::ErrorKind::NotFound => Error::config(format!("{msg}: it does not exist"))
                .hint("fix the path in the configuration (a relative one is taken from the configuration file's directory, not the working directory), or create the file with the secret on one line (chmod 600)"),
            std::io::ErrorKind::PermissionDenied => Error::io(msg, e).hint(
                "make it readable by the user lifeboat runs as (for archive_command and restore_command: the PostgreSQL server's user), and by no one else",
            ),
            _ => Error::io(msg, e),
        }
    })?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(
            Error::config(format!("{what} file {} is empty", path.display()))
                .hint("write the secret into the file (one line)"),
        );
    }
    Ok(Secret::new(value))
}

/// The configured secret files every user of the host may read or change (a permission
/// bit for others), as `(key, path)`: `config check` names them. A group bit is how the
/// PostgreSQL user's archive_command is commonly let read them, and stays.
#[must_use]
pub fn readable_by_others(config: &crate::config::Config) -> Vec<(String, std::path::PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let r = &config.repository;
    let mut files: Vec<(String, &std::path::PathBuf)> = Vec::new();
    if let Some(f) = &r.password_file {
        files.push(("repository.password_file".into(), f));
    }
    if let Some(f) = &r.secret_access_key_file {
        files.push(("repository.secret_access_key_file".into(), f));
    }
    for src in &config.sources {
        if let Some(f) = &src.password_file {
            files.push((format!("source {}: password_file", src.name), f));
        }
    }
    files
        .into_iter()
        .filter(|(_, f)| std::fs::metadata(f).is_ok_and(|m| m.permissions().mode() & 0o007 != 0))
        .map(|(k, f)| (k, f.clone()))
        .collect()
}

/// How long a `password_command` (or a secret key's command) may take.
const SECRET_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn run_secret_command(cmd: &str, what: &str) -> Result<Secret> {
    let mut command = Command::new("sh");
    // the repository password is no business of a command that fetches another secret
    // (AWS_* stay: `aws secretsmanager …` is a common such command)
    command.arg("-c").arg(cmd).env_remove("LIFEBOAT_PASSWORD");
    // a command that waits for input nobody gives (a passphrase prompt, a hardware key)
    // would hang every run, an archive_command too, without a word
    let out = crate::sources::postgres::cluster::run_client_with(
        command,
        true,
        Some(SECRET_COMMAND_TIMEOUT),
    )
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Error::unavailable(format!(
                "the command for the {what} did not finish within {} s and was stopped",
                SECRET_COMMAND_TIMEOUT.as_secs()
            ))
            .hint("run it by hand: a command that asks for input (a passphrase, a touch of a hardware key) cannot run under lifeboat, which gives it no terminal")
        } else {
            Error::io(format!("cannot run the command for the {what}"), e)
        }
    })?;
    if !out.status.success() {
        // neither stream is shown: a secret helper's complaints often quote the token or
        // the secret itself (`set -x`, "token … expired"), and an error goes into the
        // audit log, which keeps it for good
        let said = String::from_utf8_lossy(&out.stderr).lines().count();
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "the command for the {what} failed ({}){}",
                out.status,
                match said {
                    0 => String::new(),
                    n => format!(
                        "; what it wrote to stderr ({n} line{}) is not shown, as it may hold a secret",
                        if n == 1 { "" } else { "s" }
                    ),
                }
            ),
        )
        .hint(format!("run the command for the {what} by hand, as this user, to see why it fails")));
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let value = printed.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(Error::config(format!("the command for the {what} printed nothing"))
            .hint(format!("make the command for the {what} print the secret on its standard output (run it by hand to see what it prints)")));
    }
    if value.contains(['\n', '\r']) {
        return Err(Error::config(format!(
            "the command for the {what} printed {} lines: the secret is its whole output, one line",
            value.lines().count()
        ))
        .hint(format!(
            "make the command for the {what} print the secret alone (send anything else it says to stderr)"
        )));
    }
    Ok(Secret::new(value.to_string()))
}

/// Writes `contents` to a new file readable only by its owner (mode 0600).
///
/// # Errors
///
/// When the file cannot be created or written.
pub fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| Error::io(path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_time_is_stopped_with_what_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}; wait", pid_file.display()));
        let err = crate::sources::postgres::cluster::run_client_with(
            cmd,
            true,
            Some(std::time::Duration::from_secs(1)),
        )
        .expect_err("stopped");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let pid = std::fs::read_to_string(&pid_file).expect("pid");
        let proc_dir = Path::new("/proc").join(pid.trim());
        // reparented to init once its shell is gone, then reaped
        let gone = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::fs::read_to_string(proc_dir.join("stat")).map_or(true, |s| s.contains(") Z "))
        });
        assert!(gone, "the command's child still runs");

        // one that finishes in time hands over what it printed
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo s3cret");
        let out = crate::sources::postgres::cluster::run_client_with(
            cmd,
            true,
            Some(std::time::Duration::from_secs(30)),
        )
        .expect("ran");
        assert_eq!(out.stdout, b"s3cret\n");
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn a_missing_secret_file_is_a_configuration_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let src = SecretSource {
            file: Some(dir.path().join("nope.pass")),
            ..Default::default()
        };
        let e = src.resolve("repository password").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("nope.pass"), "{e}");
        assert!(
            e.hint_text().is_some_and(|h| h.contains("fix the path")),
            "{e:?}"
        );
    }

    #[test]
    fn file_then_command() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        write_private_file(&p, "s3cret\n").unwrap();
        let src = SecretSource {
            env: Some("LIFEBOAT_TEST_UNSET_VAR_X".into()),
            file: Some(p.clone()),
            command: None,
        };
        assert_eq!(src.resolve("password").unwrap().expose(), "s3cret");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cmd = SecretSource {
            command: Some("echo from-cmd".into()),
            ..Default::default()
        };
        assert_eq!(cmd.resolve("password").unwrap().expose(), "from-cmd");
        let failing = SecretSource {
            command: Some("echo secretvalue; exit 3".into()),
            ..Default::default()
        };
        let err = failing.resolve("password").unwrap_err();
        assert!(!err.to_string().contains("secretvalue"));
        // a helper's complaint may quote the secret: it never reaches the error (which the
        // audit log keeps)
        let loud = SecretSource {
            command: Some("echo token-Zq9 >&2; echo more >&2; exit 1".into()),
            ..Default::default()
        };
        let err = loud.resolve("S3 secret access key").unwrap_err();
        let said = format!("{err} {}", err.hint_text().unwrap_or_default());
        assert!(!said.contains("token-Zq9"), "{said}");
        assert!(said.contains("(2 lines) is not shown"), "{said}");
        assert!(
            said.contains("run the command for the S3 secret access key by hand"),
            "{said}"
        );
        for (printed, expect) in [
            ("echo pw; echo extra", "printed 2 lines"),
            ("echo; echo pw", "printed 2 lines"),
            ("printf ''", "printed nothing"),
        ] {
            let odd = SecretSource {
                command: Some(printed.into()),
                ..Default::default()
            };
            let err = odd.resolve("password").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{printed}");
            assert!(err.to_string().contains(expect), "{printed}: {err}");
            assert!(err.hint_text().is_some(), "{printed}");
        }
        // a trailing CRLF is the line's end, not a second line
        let crlf = SecretSource {
            command: Some("printf 'pw\\r\\n'".into()),
            ..Default::default()
        };
        assert_eq!(crlf.resolve("password").unwrap().expose(), "pw");
        // the repository password is not handed to a command fetching another secret
        let before = std::env::var_os("LIFEBOAT_PASSWORD");
        std::env::set_var("LIFEBOAT_PASSWORD", "repo-pw-in-env");
        let env_of = SecretSource {
            command: Some("echo \"x${LIFEBOAT_PASSWORD}x\"".into()),
            ..Default::default()
        };
        let seen = env_of.resolve("source password").unwrap();
        match before {
            Some(v) => std::env::set_var("LIFEBOAT_PASSWORD", v),
            None => std::env::remove_var("LIFEBOAT_PASSWORD"),
        }
        assert_eq!(seen.expose(), "xx");
        let none = SecretSource::default()
            .resolve("repository password")
            .unwrap_err();
        assert_eq!(none.kind(), ErrorKind::Config);
    }
}
