//! `lifeboat demo`.

use std::path::PathBuf;

use clap::Args;
use lifeboat_core::demo::{run, DemoOptions};

use crate::{output, Ctx};

/// Run the demo.
#[derive(Debug, Args)]
pub struct DemoCmd {
    /// Directory for the demo repository (replaced if an earlier demo made it).
    #[arg(long, default_value = "lifeboat-demo")]
    dir: PathBuf,
    /// Sample users (orders x3, events x10, attachments /5).
    #[arg(long, default_value_t = 20_000)]
    users: u64,
}

impl DemoCmd {
    /// Runs the demo and prints what it proved.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let dir = std::path::absolute(&self.dir)?;
        let mut spinner: Option<indicatif::ProgressBar> = None;
        let quiet = ctx.json;
        let bars = ctx.bars;
        let result = run(
            &DemoOptions {
                dir,
                users: self.users,
            },
            ctx.bars,
            |step| {
                if let Some(s) = spinner.take() {
                    s.finish_and_clear();
                }
                if bars.visible() {
                    spinner = bars.spinner(step);
                } else if !quiet {
                    eprintln!("- {step}");
                }
            },
        );
        if let Some(s) = spinner.take() {
            s.finish_and_clear();
        }
        let r = result?;
        if ctx.json {
            return output::json(&r);
        }
        let first = r
            .first
            .backups
            .iter()
            .find(|b| b.kind.as_str() == "logical")
            .expect("logical backup");
        let second = &r.second.backups[0];
        let cmp = r.restore.comparison.as_ref().expect("demo verifies");
        println!("lifeboat demo on PostgreSQL {}", r.server_version);
        println!();
        println!("proved:");
        println!(
            "  1. backup: {} of pg_dump output ({} tables, {} rows) stored as {} (zstd + dedup, encrypted)",
            output::bytes(first.logical_bytes), first.tables, first.rows, output::bytes(first.stored_bytes)
        );
        println!(
            "     plus a schema-only dump and the cluster's roles (globals), each its own snapshot"
        );
        println!(
            "  2. {}",
            dedup_line(
                second.logical_bytes,
                second.stored_bytes,
                first.stored_bytes
            )
        );
        println!(
            "  3. restore of the latest backup into a new database took {}; all {} tables, {} rows match the",
            output::secs(r.restore.total_secs), cmp.tables.len(), cmp.rows()
        );
        println!("     row counts and content hashes recorded at backup time; the database's search_path came back too");
        let d = &r.drill;
        println!(
            "  4. a drill restored it again into its own throw-away cluster: {} checks passed, achieved RTO {} (objective 2h), RPO {} (objective 24h)",
            d.checks.len(),
            output::secs(d.rto.achieved_secs),
            output::secs(d.rpo.achieved_secs)
        );
        println!(
            "     evidence: {}/{}.{{json,md,html}}",
            r.evidence_dir, d.id
        );
        println!();
        println!("repository: {}", r.repository);
        println!("password:   {} (mode 0600)", r.password_file);
        // this very binary: `lifeboat` may not be on PATH after `cargo run`
        let me = std::env::current_exe()
            .map_or_else(|_| "lifeboat".to_string(), |p| p.display().to_string());
        println!("look inside: {me} --config {} list", r.config_file);
        println!("the throw-away PostgreSQL has been stopped and removed");
        Ok(())
    }
}

/// The demo's deduplication sentence. `added` (what the second backup added to the
/// repository, compressed) is given as a share of that backup's pg_dump output and of what
/// the first backup added; each percentage says which of the two it is of.
fn dedup_line(second_logical: u64, added: u64, first_stored: u64) -> String {
    let pct = |part: u64, whole: u64| part as f64 * 100.0 / whole.max(1) as f64;
    format!(
        "after changing ~1% of the rows the next backup of {} added {} to the repository: {:.1}% of its size, {:.1}% of the {} the first backup added",
        output::bytes(second_logical),
        output::bytes(added),
        pct(added, second_logical),
        pct(added, first_stored),
        output::bytes(first_stored)
    )
}

#[cfg(test)]
mod tests {
    use super::dedup_line;

    #[test]
    fn the_dedup_sentence_names_what_each_percentage_is_of() {
        // the figures of the reviewer's run: 757.8 KiB is 16.4% of 4.5 MiB
        let line = dedup_line(4_718_592, 775_987, 1_068_852);
        assert_eq!(
            line,
            "after changing ~1% of the rows the next backup of 4.5 MiB added 757.8 KiB to the repository: 16.4% of its size, 72.6% of the 1.0 MiB the first backup added"
        );
        // an empty first backup divides by one, not zero
        assert!(dedup_line(0, 0, 0).contains("0.0% of its size"));
    }
}
