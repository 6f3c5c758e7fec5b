//! `kiln status PROJECT VERSION`: the stage matrix of a release.

use std::process::ExitCode;

use clap::Args;

use super::ClientArgs;
use kiln::api::BuildStateView;
use kiln::domain::IndexName;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The project.
    project: String,
    /// The version.
    #[arg(value_name = "VERSION")]
    release_version: String,
    /// The index to look from (its own files first, then its bases').
    #[arg(long, default_value = "root/master")]
    index: IndexName,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let status = client
        .show_release(&args.index, &args.project, &args.release_version)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let build = match &status.build.status {
        BuildStateView::Absent => "no build on this index".to_owned(),
        BuildStateView::Ready { .. } => "ready".to_owned(),
        BuildStateView::Claimed { .. } => "claimed".to_owned(),
        BuildStateView::Building {
            builder, attempt, ..
        } => {
            format!("building by {builder} (attempt {attempt})")
        }
        BuildStateView::Failed {
            builder, attempt, ..
        } => {
            format!("FAILED on {builder} (attempt {attempt})")
        }
    };
    println!(
        "{} {} on {}: build {build}",
        status.build.project, status.build.version, status.build.index
    );
    if status.files.is_empty() {
        println!("  no files");
    }
    for file in &status.files {
        println!(
            "  {}  sha256:{}  (from {})",
            file.file.filename, file.file.sha256, file.index
        );
        if file.stages.is_empty() {
            println!("    no stage results yet");
        }
        for (stage, result) in &file.stages {
            let junit = result.junit.map_or(String::new(), |j| {
                format!(
                    "  tests {} failures {} errors {} skipped {}",
                    j.tests, j.failures, j.errors, j.skipped
                )
            });
            println!(
                "    {stage:<16} {:<4}  {:>8.1}s  run {}  at {}{junit}",
                result.outcome.as_str(),
                // durations are shown to a tenth of a second
                f64::from(u32::try_from(result.duration_ms).unwrap_or(u32::MAX)) / 1000.0,
                result.run_id,
                result.reported_at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
