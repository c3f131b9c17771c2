//! What a killed lifeboat left behind: scratch directories (a throw-away cluster still
//! running, a staged dump: copies of production's data) whose creator no longer runs. Each
//! scratch directory names its creator; the next run that makes one removes the others'
//! leftovers and says so.

use std::path::Path;

/// The file in each scratch directory naming the process that made it.
const OWNER_FILE: &str = ".lifeboat-owner";

/// This process as `pid start-time` (start time in clock ticks since boot: a pid reused
/// by another process does not pass for the creator).
fn me() -> Option<String> {
    let pid = std::process::id();
    Some(format!("{pid} {}", start_time(pid)?))
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parentheses: fields count from the last `)`
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Marks `dir` as made by this process.
pub(crate) fn mark(dir: &Path) {
    if let Some(me) = me() {
        let _ = std::fs::write(dir.join(OWNER_FILE), me);
    }
}

/// Whether the process named in `dir`'s mark is gone (no mark: not ours, left alone).
fn orphaned(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
        return false;
    };
    let mut f = text.split_whitespace();
    let (Some(pid), Some(started)) = (
        f.next().and_then(|p| p.parse::<u32>().ok()),
        f.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return false;
    };
    if Path::new(&format!("/proc/{pid}")).exists() {
        // there, but maybe another process under a reused pid; unreadable (hidepid):
        // assume it is the creator
        start_time(pid).is_some_and(|t| t != started)
    } else {
        true
    }
}

/// Removes the scratch directories in `base` whose creator is gone, stopping a server still
/// running in one first; returns a line for each.
pub(crate) fn sweep(base: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut said = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("lifeboat-"));
        if !ours || !dir.is_dir() || !orphaned(&dir) {
            continue;
        }
        let data = dir.join("data");
        let mut stopped = "";
        if data.join("postmaster.pid").exists() {
            // as the server's own user (initdb and postgres refuse root)
            let user = std::fs::metadata(&data).ok().and_then(|m| {
                let uid = std::os::unix::fs::MetadataExt::uid(&m);
                (uid != nix::unistd::geteuid().as_raw())
                    .then(|| nix::unistd::User::from_uid(uid.into()).ok().flatten())
                    .flatten()
                    .map(|u| u.name)
            });
            let _ = super::cluster::pg_ctl_cmd(
                &super::conn::PgBin::new(None).program("pg_ctl"),
                user.as_deref(),
            )
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
            stopped = " (its throw-away server stopped)";
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            said.push(format!(
                "removed {}{stopped}, left by a lifeboat run that was killed",
                dir.display()
            ));
        }
    }
    said
}
