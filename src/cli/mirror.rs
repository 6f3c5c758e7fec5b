//! `kiln mirror ls|refresh|purge`: what a mirror index has cached, and how to make it
//! ask its upstream again.

use std::process::ExitCode;

use clap::Subcommand;

use kiln::client::Client;
use kiln::domain::IndexName;

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// List the project pages a mirror has cached, with how many files are stored.
    Ls {
        /// The mirror, e.g. `root/pypi`.
        mirror: IndexName,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the upstream for a project's page now, whatever its TTL says.
    Refresh {
        /// The mirror, e.g. `root/pypi`.
        mirror: IndexName,
        /// The project.
        project: String,
    },
    /// Forget a project's cached page, and delete its cached files that nothing else uses.
    Purge {
        /// The mirror, e.g. `root/pypi`.
        mirror: IndexName,
        /// The project.
        project: String,
    },
}

pub async fn run(client: &Client, command: MirrorCommand) -> anyhow::Result<ExitCode> {
    match command {
        MirrorCommand::Ls { mirror, json } => {
            let view = client.mirror_cache(&mirror).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} mirrors {} (page TTL {}s); {} project page(s) cached",
                view.mirror,
                view.upstream,
                view.ttl_seconds,
                view.projects.len()
            );
            for p in &view.projects {
                println!(
                    "{:<40} {:<7} {:>4} file(s), {:>4} stored ({} bytes)  fetched {}{}",
                    p.project,
                    p.status,
                    p.files,
                    p.cached_files,
                    p.cached_bytes,
                    p.fetched_at,
                    if p.fresh { "" } else { " (due for refresh)" }
                );
            }
        }
        MirrorCommand::Refresh { mirror, project } => {
            let view = client.mirror_refresh(&mirror, &project).await?;
            match &view.stale {
                Some(why) => {
                    eprintln!(
                        "kiln: the upstream failed; {} keeps serving its stored page of {} ({} file(s)): {why}",
                        mirror, view.project, view.files
                    );
                    return Ok(ExitCode::from(2));
                }
                None => println!(
                    "refreshed {} on {}: {} file(s) upstream",
                    view.project, mirror, view.files
                ),
            }
        }
        MirrorCommand::Purge { mirror, project } => {
            let view = client.mirror_purge(&mirror, &project).await?;
            println!(
                "purged {} from {}: page forgotten, {} stored file(s) deleted",
                view.project, mirror, view.deleted_blobs
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
