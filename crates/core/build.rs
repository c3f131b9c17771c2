//! Records which commit lifeboat was built from, for `lifeboat --version` and what it
//! writes (backups, drill reports): a rescue host can then tell whether it runs an older
//! build than the one that wrote the repository.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    // a new commit moves HEAD or the branch it names; in a worktree the branches live in
    // the common directory (given relative to here by older git)
    if let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--git-common-dir"]).and_then(|c| std::fs::canonicalize(c).ok()),
    ) {
        let head = Path::new(&dir).join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Some(branch) = std::fs::read_to_string(&head)
            .ok()
            .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
        {
            // a path that does not exist would rebuild on every run
            for file in [common.join(branch), common.join("packed-refs")] {
                if file.exists() {
                    println!("cargo:rerun-if-changed={}", file.display());
                }
            }
        }
    }
    // built from a source package without git: the version number alone
    // %cd with a short date: %cs needs git 2.25
    let commit = git(&[
        "log",
        "-1",
        "--format=%h %cd",
        "--date=short",
        "--abbrev=10",
    ])
    .map_or_else(String::new, |c| format!(" ({c})"));
    println!("cargo:rustc-env=LIFEBOAT_BUILD={commit}");
}
