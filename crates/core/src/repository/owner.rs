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
