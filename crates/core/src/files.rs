//! Documents written whole: a report, runbook or evidence file replaces the one before it
//! in one rename, so a full disk or a kill leaves the old file as it was, never a cut one
//! that still reads as a whole document.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced, then
/// renamed over it. A file that was there keeps its permissions and, when root writes it,
/// its owner; a new one is readable by the owner's group as the umask allows, and never
/// by others (a drill report can quote production rows, a failed check's result), nor
/// writable by the group or others (evidence others could edit is none), whatever the
/// umask of a program embedding lifeboat. A symbolic link is followed (the file it names is replaced, the link stays);
/// what is not a regular file (`/dev/null`, a pipe, `/dev/stdout`) is written to as it
/// is. On failure the temporary file is removed and `path` is untouched.
///
/// # Errors
///
/// When the directory cannot take the temporary file, the bytes do not fit, or the rename
/// fails.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // the file a link names is the one replaced: renaming over the link would cut it
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    };
    let existing = std::fs::metadata(&target).ok();
    if existing.as_ref().is_some_and(|m| !m.file_type().is_file()) {
        // a device or a pipe: a rename would put a plain file in its place
        return std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&target)?
            .write_all(bytes);
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map_or_else(|| "lifeboat".into(), |n| n.to_string_lossy());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .permissions(std::fs::Permissions::from_mode(0o640))
        .tempfile_in(dir)?;
    if let Some(m) = &existing {
        // as it was, not as this process's umask would make it
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        if nix::unistd::geteuid().is_root() {
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
        }
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    // the rename itself on disk
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_replaces_the_old_one_whole_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("runbook.md");
        write_whole(&p, b"first").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"first");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_whole(&p, b"second, longer").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"second, longer");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // nothing else is left in the directory
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_what_was_there_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        // a directory where the file should go: the write fails
        let d = dir.path().join("sub");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("x"), b"x").expect("x");
        assert!(write_whole(&d, b"new").is_err());
        assert_eq!(std::fs::read(d.join("x")).expect("read"), b"x");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["sub"], "no temporary file is left");
    }

    #[test]
    fn a_link_is_followed_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let real = dir.path().join("2026-12.md");
        std::fs::write(&real, b"old").expect("write");
        let link = dir.path().join("current.md");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        write_whole(&link, b"new").expect("write through the link");
        assert!(std::fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).expect("read"), b"new");
    }
}
