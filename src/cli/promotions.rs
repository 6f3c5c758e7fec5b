//! `kiln promotions list`, `kiln yank`, `kiln unyank` and `kiln events`: the audit trail
//! and the way back from a bad release.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::ClientArgs;
use kiln::domain::IndexName;

#[derive(Debug, Subcommand)]
pub enum PromotionsCommand {
    /// The audit trail, newest first.
    List {
        /// Only promotions into this index.
        #[arg(long)]
        index: Option<IndexName>,
    },
}

pub async fn run_list(
    client: &ClientArgs,
    command: &PromotionsCommand,
) -> anyhow::Result<ExitCode> {
    let client = client.client()?;
    let PromotionsCommand::List { index } = command;
    for record in client.list_promotions(index.as_ref()).await? {
        let files: Vec<String> = record
            .files
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .map(|f| {
                        format!(
                            "{} sha256:{}",
                            f["filename"].as_str().unwrap_or("?"),
                            f["sha256"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "#{} {} {} {} -> {} by {} at {} (policy {})",
            record.id,
            record.project,
            record.version,
            record.source,
            record.target,
            record.promoted_by,
            record.promoted_at,
            record.policy
        );
        for file in files {
            println!("    {file}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct YankArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The project.
    project: String,
    /// The version.
    #[arg(value_name = "VERSION")]
    release_version: String,
    /// The index (e.g. `root/prod`).
    #[arg(long)]
    index: IndexName,
    /// Why (pip shows it to whoever installs the pinned version). Required to yank.
    #[arg(long)]
    reason: Option<String>,
}

pub async fn run_yank(args: YankArgs, yank: bool) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let reason = if yank {
        Some(args.reason.ok_or_else(|| {
            anyhow::anyhow!(
                "--reason is required: pip shows it to whoever installs the pinned version"
            )
        })?)
    } else {
        None
    };
    let view = client
        .yank(
            &args.index,
            &args.project,
            &args.release_version,
            reason.as_deref(),
        )
        .await?;
    for file in &view.files {
        println!(
            "{} {file} on {}",
            if view.yanked { "yanked" } else { "unyanked" },
            view.index
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only events of this index.
    #[arg(long)]
    index: Option<IndexName>,
    /// Only events after this id.
    #[arg(long, default_value_t = 0)]
    after: i64,
}

pub async fn run_events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    for event in client.list_events(args.index.as_ref(), args.after).await? {
        let release = match (&event.project, &event.version) {
            (Some(project), Some(version)) => format!(" {project} {version}"),
            _ => String::new(),
        };
        let index = event
            .index
            .as_ref()
            .map(|i| format!(" on {i}"))
            .unwrap_or_default();
        println!(
            "#{} {} {}{release}{index} by {}: {}",
            event.id, event.at, event.kind, event.actor, event.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}
