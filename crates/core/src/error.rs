//! The one public error type of lifeboat-core and the exit-code table.
//!
//! Every failure carries an [`ErrorKind`] (coarse enough to choose an exit code or an HTTP
//! status), a message naming the object that failed, an optional hint saying what to do,
//! and the underlying cause. Messages never contain secrets: callers build them from names,
//! never from connection strings or passwords.

use std::fmt;

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration or the command line is wrong.
    Config,
    /// A password or key was refused (repository or database).
    Auth,
    /// A snapshot, source or file does not exist.
    NotFound,
    /// The repository is locked or a target is in use.
    Locked,
    /// Data is damaged or does not match what was recorded.
    Integrity,
    /// A server, a backend or a program could not be reached or run.
    Unavailable,
    /// PostgreSQL or one of its programs reported an error.
    Postgres,
    /// A restore target already holds data and no override was given.
    TargetNotEmpty,
    /// A check (drill, verify) ran and failed.
    CheckFailed,
    /// A bug or an unexpected condition.
    Internal,
    /// The operation was stopped on purpose while it ran
    /// ([`crate::sources::postgres::cluster::stop_all`]: Ctrl-C in the CLI).
    Interrupted,
}

impl ErrorKind {
    /// The process exit code for this kind (documented in the README).
    #[must_use]
    pub const fn exit_code(self) -> i32 {
        match self {
            Self::Internal => 1,
            Self::Config => 2,
            Self::Auth => 3,
            Self::NotFound => 4,
            Self::Locked => 5,
            Self::Integrity => 6,
            Self::Unavailable => 7,
            Self::Postgres => 8,
            Self::TargetNotEmpty => 9,
            Self::CheckFailed => 10,
            Self::Interrupted => 130,
        }
    }

    /// The kind whose exit code is `code` ([`ErrorKind::Internal`] for unknown codes).
    #[must_use]
    pub fn from_exit_code(code: i32) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.exit_code() == code)
            .unwrap_or(Self::Internal)
    }

    /// All kinds, in exit-code order (for documentation and tests).
    pub const ALL: [Self; 11] = [
        Self::Internal,
        Self::Config,
        Self::Auth,
        Self::NotFound,
        Self::Locked,
        Self::Integrity,
        Self::Unavailable,
        Self::Postgres,
        Self::TargetNotEmpty,
        Self::CheckFailed,
        Self::Interrupted,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Config => "configuration error",
            Self::Auth => "authentication failed",
            Self::NotFound => "not found",
            Self::Locked => "locked",
            Self::Integrity => "integrity error",
            Self::Unavailable => "unavailable",
            Self::Postgres => "postgres error",
            Self::TargetNotEmpty => "target not empty",
            Self::CheckFailed => "check failed",
            Self::Internal => "internal error",
            Self::Interrupted => "interrupted",
        };
        f.write_str(s)
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every lifeboat-core operation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    #[source]
    source: Option<Source>,
}

/// Result alias used throughout lifeboat-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message naming what failed.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// This error as [`ErrorKind::Interrupted`] when the process was asked to stop
    /// ([`crate::sources::postgres::cluster::stop_all`]) while the operation ran: what broke
    /// then (an initdb killed midway, a connection closed) was the stop, not the setup, and
    /// its own hint ("install the PostgreSQL server") would mislead.
    #[must_use]
    pub fn or_interrupted(self) -> Self {
        if !crate::sources::postgres::cluster::interrupted() || self.kind == ErrorKind::Interrupted
        {
            return self;
        }
        Self {
            kind: ErrorKind::Interrupted,
            hint: Some("the operation was stopped while it ran (stop_all; the message says what it left): call resume_after_stop, then run it again".into()),
            ..self
        }
    }

    /// Adds advice: what the reader should do next.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error with `note` after its message (what else happened, where something
    /// went); kind, hint and cause stay.
    #[must_use]
    pub fn with_note(mut self, note: impl std::fmt::Display) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind, to branch on.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The advice attached to this error, if any.
    #[must_use]
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The message alone, without hint or cause.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand constructors, one per kind.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// See [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// See [`ErrorKind::Integrity`].
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    /// See [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// See [`ErrorKind::Postgres`].
    pub fn postgres(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Postgres, message)
    }
    /// See [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Wraps an I/O error on `what` (a path or an object name).
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            // a path given where a file (or a directory) belongs: the caller's mistake
            std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory => {
                ErrorKind::Config
            }
            _ => ErrorKind::Unavailable,
        };
        let hint = match err.kind() {
            std::io::ErrorKind::IsADirectory => Some("name a file, not a directory"),
            std::io::ErrorKind::NotADirectory => {
                Some("the path, or a part of it, is a file where a directory belongs")
            }
            std::io::ErrorKind::PermissionDenied => {
                Some("check the owner and mode of the path, or run lifeboat as a user that may write there")
            }
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Some("free disk space (or raise the quota) where the message says, and run the command again")
            }
            _ => None,
        };
        let mut e = Self::new(kind, format!("{what}: {err}")).source(err);
        if let Some(h) = hint {
            e = e.hint(h);
        }
        e
    }
}

/// Whether `text` (an error, a program's stderr, a server log line) says a disk is full:
/// the OS's words, or PostgreSQL's for a short write ("could not extend file …: wrote only
/// 4096 of 8192 bytes …; HINT: Check free disk space.").
pub(crate) fn says_disk_full(text: &str) -> bool {
    let text = text.to_lowercase();
    [
        "no space left on device",
        "disk quota exceeded",
        "check free disk space",
        "could not extend file",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// An error and the first line of each cause it does not already say, on one line
/// ("error sending request: connection refused"; "… buffer: No space left on device").
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let full = c.to_string();
        let line = headline(&full);
        if !line.is_empty() && !out.contains(line) {
            out.push_str(": ");
            out.push_str(line);
        }
        cause = c.source();
    }
    out
}

/// The text of an error and all its causes, lowercased, for classification; without
/// backtraces, whose frame names (`Mutex::lock`, `hashbrown`) would mislead it.
pub(crate) fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let own = e.to_string();
        for line in own.lines() {
            if line.trim_start().starts_with("Backtrace:") {
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        cur = e.source();
    }
    text.to_lowercase()
}

/// Whether `text` holds one of `words` as a whole word (so "lock" is not found in
/// "block" or "clock").
fn has_word(text: &str, words: &[&str]) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| words.contains(&w))
}

/// Chooses a kind and a hint for a repository (rustic_core) error from its whole chain.
/// Order matters: a refused S3 credential also reads "path `config` does not exist".
pub(crate) fn classify_repository(
    err: &(dyn std::error::Error + 'static),
) -> (ErrorKind, Option<&'static str>) {
    let lower = chain_text(err);
    if lower.contains("requesttimetooskewed") {
        (
            ErrorKind::Auth,
            Some("the storage refused the request because this host's clock differs from its own by more than S3 allows (15 minutes): set the clock right (NTP, `timedatectl`), not the credentials"),
        )
    } else if lower.contains("permissiondenied")
        || lower.contains("status: 403")
        || lower.contains("forbidden")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("accessdenied")
    {
        (
            ErrorKind::Auth,
            Some("the storage refused the credentials (403): check access_key_id and the S3 secret (secret_access_key_file, AWS_SECRET_ACCESS_KEY)"),
        )
    } else if lower.contains("nosuchbucket") {
        (
            ErrorKind::NotFound,
            Some("the bucket does not exist: create it in the store first (lifeboat creates its repository inside an existing bucket), or check the bucket in [repository] url"),
        )
    } else if lower.contains("authorizationheadermalformed")
        || lower.contains("invalidregion")
        || lower.contains("status: 400")
    {
        (
            ErrorKind::Config,
            Some("the storage rejected the request as malformed (400), most often a wrong region: check [repository] region (or AWS_REGION) and endpoint"),
        )
    } else if lower.contains("no suitable key")
        && lower.contains("could not be read")
        && lower.contains("permission denied")
    {
        (ErrorKind::Auth, Some("the password fits no key file this user can read: check LIFEBOAT_PASSWORD, password_file or password_command, and the key files under keys/ in the repository that belong to another user (`restic key add` run as root makes them root's, mode 0400): give them to the repository's owner (chown), or run as the user that owns them"))
    } else if lower.contains("wrong password")
        || lower.contains("no suitable key")
        || lower.contains("incorrect password")
    {
        (ErrorKind::Auth, Some("the repository password is wrong: check LIFEBOAT_PASSWORD, password_file or password_command (if it worked before and nothing changed here, someone may have changed the repository's keys: `restic -r REPO key list` with a password that still works, or an offsite copy)"))
    } else if lower.contains("permission denied") || lower.contains("read-only file system") {
        (
            ErrorKind::Unavailable,
            Some("this user may not read or write something in the repository: check the repository path, and files another user made there (`restic key add` or `restic` run as root leaves root's files, a key file among them): `find REPO ! -user OWNER` lists them; give them to the repository's owner (chown) or run as the user that owns them"),
        )
    } else if lower.contains("no space left") || lower.contains("quota") {
        (
            ErrorKind::Unavailable,
            Some(
                "free disk space (or raise the quota) on the repository's disk and run the command again; what it already held is intact",
            ),
        )
    } else if has_word(&lower, &["lock", "locked", "locks", "locking"]) {
        (ErrorKind::Locked, Some("another lifeboat process holds the repository; wait for it or check for a stale process"))
    } else if lower.contains("connection refused")
        || lower.contains("dns error")
        || lower.contains("timed out")
        || lower.contains("connect error")
    {
        (
            ErrorKind::Unavailable,
            Some("the storage cannot be reached: check the endpoint and the network"),
        )
    } else if lower.contains("deserialize") && lower.contains("for key") {
        // a key file that no longer parses: damage, not an outage to retry
        (
            ErrorKind::Integrity,
            Some("a key file under keys/ in the repository is damaged (changed or truncated): put it back from a copy of the repository (an offsite copy, a backup of its disk), or remove it if another key's password opens the repository (`restic -r REPO key list`)"),
        )
    } else if has_word(&lower, &["hash", "mac"])
        || lower.contains("decrypt")
        || lower.contains("corrupt")
    {
        (
            ErrorKind::Integrity,
            Some("run `lifeboat verify --all --read-data` to find every damaged snapshot"),
        )
    } else if lower.contains("not found")
        || lower.contains("no such file")
        || lower.contains("does not exist")
    {
        (ErrorKind::NotFound, None)
    } else {
        (ErrorKind::Unavailable, None)
    }
}

/// The line of an error's text that says what went wrong. rustic_core opens every error
/// with the same banner ("`rustic_core` experienced an error related to ..."), then its
/// message after a `Message:` line, then pages of context and an invitation to report a
/// bug: the message is the headline. Other texts give their first non-empty line.
#[must_use]
pub fn headline(text: &str) -> &str {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    if first.starts_with("`rustic_core` experienced an error") {
        let mut rest = text.lines().map(str::trim);
        if rest.any(|l| l == "Message:") {
            if let Some(message) = rest.find(|l| !l.is_empty()) {
                return message;
            }
        }
    }
    first
}

/// Convert a rustic_core error, choosing a kind from its whole chain.
impl From<Box<rustic_core::RusticError>> for Error {
    fn from(err: Box<rustic_core::RusticError>) -> Self {
        let (kind, hint) = classify_repository(err.as_ref());
        let text = err.to_string();
        // rustic's own text may invite a bug report for what is a plain refusal: keep its message
        let line = match headline(&text) {
            "" => "repository error",
            l => l,
        };
        let mut e = Self::new(kind, format!("repository: {line}")).source(err);
        if let Some(h) = hint {
            e = e.hint(h);
        }
        e
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn words_are_matched_whole() {
        assert!(super::has_word(
            "the repository is locked by pid 7",
            &["locked"]
        ));
        assert!(!super::has_word("a damaged block; clock skew", &["lock"]));
        assert!(!super::has_word("the machine", &["mac"]));
    }

    #[test]
    fn a_rustic_error_is_headed_by_its_message() {
        let text = "`rustic_core` experienced an error related to `Backend`.\n\nMessage:\nFailed to load the file.\n\nSome context:\n- path: x\n";
        assert_eq!(headline(text), "Failed to load the file.");
        assert_eq!(headline("\n plain error \nmore"), "plain error");
    }
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_nonzero() {
        let mut codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| k.exit_code()).collect();
        assert!(codes.iter().all(|c| *c > 0));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn a_key_file_that_does_not_parse_is_damage_not_an_outage() {
        let e = std::io::Error::other("Couldn't deserialize the data for key `5c3a19c8`.");
        let (kind, hint) = classify_repository(&e);
        assert_eq!(kind, ErrorKind::Integrity);
        assert!(hint.is_some_and(|h| h.contains("keys/")), "{hint:?}");
    }

    #[test]
    fn a_skewed_clock_is_not_called_a_wrong_secret() {
        let skewed = std::io::Error::other(
            "S3 error: status: 403, code: RequestTimeTooSkewed, the difference between the request time and the server's time is too large",
        );
        let (kind, hint) = classify_repository(&skewed);
        assert_eq!(kind, ErrorKind::Auth);
        assert!(hint.is_some_and(|h| h.contains("clock")), "{hint:?}");
        let refused = std::io::Error::other("S3 error: status: 403, code: SignatureDoesNotMatch");
        assert!(classify_repository(&refused)
            .1
            .is_some_and(|h| h.contains("access_key_id")));
    }

    #[test]
    fn io_permission_denied_gets_a_hint() {
        let e = Error::io(
            "/var/backups",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(
            e.hint_text().unwrap().contains("writable") || e.hint_text().unwrap().contains("write")
        );
        assert!(e.to_string().starts_with("/var/backups"));
    }
}
