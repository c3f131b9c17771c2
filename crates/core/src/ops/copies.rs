//! What can be said of the configured offsite copies (`[[copies]]`): where they are meant
//! to go, and that lifeboat has not made one. There is no copy command yet, so the report
//! and the runbook must not speak of copies as if they existed; for a local destination
//! they say whether something else has put a repository there.

use serde::Serialize;

use crate::{config::Config, repository::is_s3_url};

/// One configured copy destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CopyDestination {
    /// The `url` of the `[[copies]]` entry.
    pub destination: String,
    /// Copies lifeboat has made there: always 0, as it has no copy command yet.
    pub copies_made: u64,
    /// For a local path: whether a repository is there (its `config` file), which only
    /// something other than lifeboat can have put there. `None` for S3: not looked at.
    pub holds_repository: Option<bool>,
}

impl CopyDestination {
    /// One line for people: the destination, that lifeboat made no copy, and what is there.
    #[must_use]
    pub fn describe(&self) -> String {
        let there = match self.holds_repository {
            Some(true) => "a repository is there, copied by something other than lifeboat: check how recent it is",
            Some(false) => "there is no repository at that path",
            None => "whether a repository is there was not checked (S3)",
        };
        format!(
            "configured destination `{}` — no copy has been made by lifeboat (it has no copy command yet); {there}",
            self.destination
        )
    }
}

/// The configured copy destinations, each looked at where that is cheap (local paths).
#[must_use]
pub fn destinations(config: &Config) -> Vec<CopyDestination> {
    config
        .copies
        .iter()
        .filter_map(|c| c.url.clone())
        .map(|url| CopyDestination {
            holds_repository: (!is_s3_url(&url))
                .then(|| std::path::Path::new(&url).join("config").is_file()),
            destination: url,
            copies_made: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepositoryConfig;

    #[test]
    fn a_destination_is_never_called_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("offsite");
        let filled = dir.path().join("filled");
        std::fs::create_dir_all(&filled).unwrap();
        std::fs::write(filled.join("config"), "x").unwrap();
        let config = Config {
            copies: [
                empty.display().to_string(),
                filled.display().to_string(),
                "s3://dr/app".into(),
            ]
            .into_iter()
            .map(|u| RepositoryConfig {
                url: Some(u),
                ..RepositoryConfig::default()
            })
            .collect(),
            ..Config::default()
        };
        let d = destinations(&config);
        assert_eq!(
            d.iter().map(|c| c.holds_repository).collect::<Vec<_>>(),
            [Some(false), Some(true), None]
        );
        assert!(d.iter().all(|c| c.copies_made == 0));
        let line = d[0].describe();
        assert!(
            line.contains("no copy has been made by lifeboat")
                && line.contains("no repository at that path"),
            "{line}"
        );
    }
}
