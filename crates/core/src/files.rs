//! Documents written whole: a report, runbook or evidence file replaces the one before it
//! in one rename, so a full disk or a kill leaves the old file as it was, never a cut one
//! that still reads as a whole document.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced, then
/// renamed over it. A file that was there keeps its permissions; a new one is readable by
/// others as the umask allows, and never writable by them (evidence others could edit is
/// none), whatever the umask of a program embedding lifeboat. On failure the temporary
/// file is removed and `path` is untouched.
///
/// # Errors
///
/// When the directory cannot take the temporary file, the bytes do not fit, or the rename
/// fails.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "lifeboat".into(), |n| n.to_string_lossy());
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
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
    fn a_failed_write_leaves_the_old_document_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("pack.md");
        write_whole(&p, b"the good pack").expect("write");
        // a directory where the file should go: the rename fails after the bytes were
        // written, as late as a failure can come
        let d = dir.path().join("sub");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("x"), b"x").expect("x");
        assert!(write_whole(&d, b"new").is_err());
        assert_eq!(std::fs::read(&p).expect("read"), b"the good pack");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
