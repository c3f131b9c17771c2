//! `lifeboat init`.

use lifeboat_core::repository::Repo;

use crate::{output, Ctx};

/// Creates the repository.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.repo_config();
    ctx.repo_location()?;
    let password = cfg.password_source().resolve("repository password")?;
    let repo = Repo::init(&cfg, &password, ctx.bars)?;
    if ctx.json {
        output::json(&serde_json::json!({ "initialized": repo.location() }))
    } else {
        println!("created repository at {}", repo.location());
        println!("keep the password safe: without it no backup can be read");
        Ok(())
    }
}
