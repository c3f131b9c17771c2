//! Ownership of a local repository written by root. The repository usually belongs to the
//! PostgreSQL user (its archive_command writes the WAL archive); an operator running
//! lifeboat as root must not leave files or directories behind that this user can no
//! longer open or write into (a root-owned audit lock file, a timeline directory).

use std::{os::unix::fs::MetadataExt, path::Path};

use crate::{
    error::{Error, Result},
    wal::store::WAL_DIR,
};

/// The owner of `root` when this process runs as root and `root` belongs to someone else.
fn other_owner(root: &Path) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let meta = std::fs::metadata(root).ok()?;
    (meta.uid() != 0).then_some((meta.uid(), meta.gid()))
}

/// Refuses a local repository this user may not read: it would read as "no repository"
/// (its config file cannot even be seen), though it is there, and the fix is its mode.
///
/// # Errors
///
/// [`crate::error::ErrorKind::Unavailable`] naming the owner, the mode and the ways on.
pub fn readable(root: &Path) -> Result<()> {
    use nix::unistd::{access, AccessFlags};
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(root) else {
        return Ok(()); // missing: "no repository" says it
    };
    if !meta.is_dir() || access(root, AccessFlags::R_OK | AccessFlags::X_OK).is_ok() {
        return Ok(());
    }
    let owner = user_name(meta.uid());
    let me = user_name(nix::unistd::geteuid().as_raw());
    Err(Error::unavailable(format!(
        "the repository at {} belongs to {owner} (mode {:o}), and {me} may not read it",
        root.display(),
        meta.permissions().mode() & 0o777
    ))
    .hint(format!(
        "run lifeboat as {owner}, or give the repository to the user that must read it (chown -R {me} {0}), or share it with a group both are in (chgrp -R GROUP {0}; chmod -R g+rwX {0}; find {0} -type d -exec chmod g+s {{}} +, so that new files keep the group)",
        root.display()
    )))
}

/// The name of the user `uid`, else `uid N`.
pub(crate) fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// The mode of a file lifeboat writes into the local repository at `root`: the
/// directory's own decides (0700 gives 0600, 0750 for a group of its users 0640), as for
/// the files rustic_core writes there (the patched backend, vendor/rustic_backend).
#[must_use]
pub fn file_mode(root: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::metadata(root).map_or(0o700, |m| m.permissions().mode() & 0o777);
    // never writable by all, even in a directory that is (made under umask 000)
    (root | 0o600) & 0o664
}

/// What `config check` says of the local repository at `root` beyond opening it:
/// `(fails, detail, hint)` for a repository this user cannot write into (every backup and
/// WAL push would fail) and for one every user of the host may read.
#[must_use]
pub fn access_problems(root: &Path) -> Vec<(bool, String, String)> {
    use nix::unistd::{access, AccessFlags};
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let Ok(meta) = std::fs::metadata(root) else {
        return out;
    };
    let unwritable: Vec<String> = ["", "data", "snapshots", "index", WAL_DIR]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.exists() && access(d.as_path(), AccessFlags::W_OK).is_err())
        .map(|d| d.display().to_string())
        .collect();
    if !unwritable.is_empty() {
        let owner = user_name(meta.uid());
        out.push((
            true,
            format!(
                "this user cannot write into {}: backups, WAL pushes and audit entries would fail",
                unwritable.join(", ")
            ),
            format!(
                "run lifeboat as the repository's owner ({owner}), or give a group both share write access (chgrp -R GROUP {0}; chmod -R g+rwX {0}; find {0} -type d -exec chmod g+s {{}} +), then restart PostgreSQL if its user just joined the group: a running archiver keeps its old groups",
                root.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o005 != 0 {
        out.push((
            false,
            format!(
                "{} is open to every user of this host (mode {mode:o}): its key file holds the master key, encrypted with the repository password, which anyone could copy and attack offline",
                root.display()
            ),
            format!("chmod -R o-rwx {}", root.display()),
        ));
    }
    out
}

/// Run as root, gives `path` (inside the repository at `root`) to the repository's owner.
///
/// # Errors
///
/// [`crate::error::ErrorKind::Unavailable`] when the ownership cannot be changed.
pub fn give_to_owner(root: &Path, path: &Path) -> Result<()> {
    let Some((uid, gid)) = other_owner(root) else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| {
        Error::io(
            format!("giving {} to the repository's owner", path.display()),
            e,
        )
    })
}

/// Run as root, gives everything root owns in the local repository at `root` (apart from
/// the WAL archive, which does so itself) to the repository's owner; returns how many
/// entries changed hands. For after a command that wrote to the repository.
///
/// # Errors
///
/// [`crate::error::ErrorKind::Unavailable`] when a directory cannot be read or an ownership cannot
/// be changed.
pub fn hand_over(root: &Path) -> Result<usize> {
    if other_owner(root).is_none() {
        return Ok(0);
    }
    let mut changed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            let path = entry.path();
            // the WAL archive gives each file away as it writes it, and may hold far too
            // many files to walk after every command
            if dir == root && entry.file_name() == WAL_DIR {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue; // removed meanwhile
            };
            if meta.uid() == 0 {
                give_to_owner(root, &path)?;
                changed += 1;
            }
            if meta.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_root_everything_but_the_wal_archive_goes_to_the_owner() {
        if !nix::unistd::geteuid().is_root() {
            // only root can create root-owned files for someone else's repository
            return;
        }
        let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::os::unix::fs::chown(root, Some(pg.uid.as_raw()), Some(pg.gid.as_raw()))
            .expect("chown");
        std::fs::create_dir_all(root.join("data/ab")).expect("mkdir");
        std::fs::write(root.join("data/ab/pack"), b"x").expect("write");
        std::fs::write(root.join("lifeboat-audit.lock"), b"").expect("write");
        std::fs::create_dir_all(root.join("lifeboat-wal/main")).expect("mkdir");
        assert_eq!(hand_over(root).expect("hand over"), 4);
        for p in ["data", "data/ab", "data/ab/pack", "lifeboat-audit.lock"] {
            let m = std::fs::metadata(root.join(p)).expect("stat");
            assert_eq!(m.uid(), pg.uid.as_raw(), "{p}");
        }
        let wal = std::fs::metadata(root.join("lifeboat-wal")).expect("stat");
        assert_eq!(wal.uid(), 0, "the WAL archive is left to its own code");
        assert_eq!(hand_over(root).expect("again"), 0);
    }
}
