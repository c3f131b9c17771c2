//! `lifeboat init`.

use lifeboat_core::repository::Repo;

use crate::{output, Ctx};

/// Creates the repository.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.repo_config();
    let location = ctx.repo_location()?;
    let password = cfg.password_source().resolve("repository password")?;
    let repo = Repo::init(&cfg, &password, ctx.bars)?;
    output::warn_repository(&repo);
    // a directory made beforehand keeps its mode (0755 from mkdir): the key file in it is
    // then readable by every user, which `config check` notes, and init should say now
    if !location.contains("://") {
        for (_, detail, hint) in
            lifeboat_core::repository::owner::access_problems(std::path::Path::new(&location))
        {
            eprintln!("warning: {detail}\nhint: {hint}");
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({ "initialized": repo.location() }))
    } else {
        println!("created repository at {}", repo.location());
        println!("keep the password safe: without it no backup can be read");
        Ok(())
    }
}
