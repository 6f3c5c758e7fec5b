//! `kiln status PROJECT==VERSION` (or `PROJECT VERSION`): the stage matrix of a release,
//! with the log tail of each red stage. Exit codes: 0 when the release exists, its build
//! did not fail and no stage's latest result is red; 1 otherwise (a failed build, a red
//! stage, or no such release); 2 on errors. Scripts can gate on it.
//!
//! `kiln status PROJECT`: the project's newest versions visible from the index, one line
//! each (build state and each stage's latest outcome); exit 1 when there are none. Needs
//! no checkout.

use std::process::ExitCode;

use clap::Args;

use super::ClientArgs;
use kiln::api::BuildStateView;
use kiln::domain::IndexName;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// `PROJECT==VERSION`, or a project alone to list its versions.
    #[arg(value_name = "PROJECT[==VERSION]")]
    project: String,
    /// The version, as a second word.
    #[arg(value_name = "VERSION")]
    release_version: Option<String>,
    /// How many of the newest versions a listing shows.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// The index to look from (its own files first, then its bases').
    #[arg(long, default_value = "root/master")]
    index: IndexName,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(mut args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    if args.release_version.is_none() {
        if args.project.contains("==") {
            let release: kiln::api::ReleaseRef =
                args.project.parse().map_err(anyhow::Error::msg)?;
            args.project = release.project;
            args.release_version = Some(release.version);
        } else {
            return list(&client, &args).await;
        }
    }
    let version = args.release_version.clone().unwrap_or_default();
    let status = client
        .show_release(&args.index, &args.project, &version)
        .await?;
    let failed_build = matches!(status.build.status, BuildStateView::Failed { .. });
    let unknown = status.files.is_empty() && matches!(status.build.status, BuildStateView::Absent);
    let red = status.files.iter().any(|f| {
        f.stages
            .values()
            .any(|r| r.outcome != kiln::domain::Outcome::Pass)
    });
    let code = if failed_build || unknown || red {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(code);
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
    if let Some(provenance) = &status.build.provenance {
        println!("  built from {}", describe(provenance));
    }
    if status.files.is_empty() {
        println!("  no files");
    }
    for file in &status.files {
        println!(
            "  {}  sha256:{}  (from {})",
            file.file.filename, file.file.sha256, file.index
        );
        match &file.file.provenance {
            Some(provenance) => println!("    built from {}", describe(provenance)),
            None => println!("    uploaded without a build lease: no provenance"),
        }
        print_stages(file);
    }
    if unknown {
        println!(
            "  {} {version} is not on `{}` or its bases; `kiln status {}` lists its versions",
            args.project, args.index, args.project
        );
    }
    if let BuildStateView::Failed { error_tail, .. } = &status.build.status {
        println!("  build output:");
        print_tail(error_tail);
    }
    Ok(code)
}

/// A file's stage results, with the log tail of each red one.
fn print_stages(file: &kiln::api::FileStatus) {
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
        let late = if result.after_promotion {
            "  (after promotion)"
        } else {
            ""
        };
        println!(
            "    {stage:<16} {:<5}  {:>8.1}s  run {}  at {}{junit}{late}",
            result.outcome.as_str(),
            // durations are shown to a tenth of a second
            f64::from(u32::try_from(result.duration_ms).unwrap_or(u32::MAX)) / 1000.0,
            result.run_id,
            result.reported_at
        );
        if let Some(cause) = &result.cause {
            println!("      could not run: {cause}");
        }
        if let Some(kiln::domain::ArtifactCheck::Unverified(reason)) = &result.artifact {
            println!("      unverified: {reason}");
        }
        if result.outcome != kiln::domain::Outcome::Pass {
            print_tail(&result.log_tail);
        }
    }
}

/// One line per version: `1.4.57  ready  unit=pass functional=fail`.
async fn list(client: &kiln::client::Client, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let versions = client.project_versions(&args.index, &args.project).await?;
    if versions.is_empty() {
        println!(
            "{} has no versions on `{}` or its bases",
            args.project, args.index
        );
        return Ok(ExitCode::from(1));
    }
    let newest: Vec<&String> = versions.iter().rev().take(args.limit.max(1)).collect();
    let mut rows = Vec::new();
    for version in &newest {
        let status = client
            .show_release(&args.index, &args.project, version)
            .await?;
        rows.push(((*version).clone(), status));
    }
    if args.json {
        let listing: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(v, s)| Ok((v.clone(), serde_json::to_value(s)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} on {} ({} of {} versions, newest first):",
        args.project,
        args.index,
        newest.len(),
        versions.len()
    );
    for (version, status) in &rows {
        let build = match &status.build.status {
            BuildStateView::Failed { .. } => "FAILED",
            BuildStateView::Building { .. } | BuildStateView::Claimed { .. } => "building",
            _ if status.files.is_empty() => "no files",
            _ => "ready",
        };
        let mut stages = std::collections::BTreeMap::new();
        for file in &status.files {
            for (stage, result) in &file.stages {
                stages.insert(stage.clone(), result.outcome.as_str());
            }
        }
        let stages: Vec<String> = stages.iter().map(|(s, o)| format!("{s}={o}")).collect();
        let from: std::collections::BTreeSet<String> =
            status.files.iter().map(|f| f.index.to_string()).collect();
        println!(
            "  {version:<28} {build:<9} from {:<20} {}",
            from.into_iter().collect::<Vec<_>>().join(","),
            if stages.is_empty() {
                "no stage results".to_owned()
            } else {
                stages.join(" ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The last lines of a log, indented.
fn print_tail(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    for line in &lines[start..] {
        println!("      | {line}");
    }
}

/// How many lines of a red stage's log `kiln status` shows.
const TAIL_LINES: usize = 20;

/// `commit abc1234 (github-actions https://…, attempt 2) on runner-3, CPython 3.12.1 linux-x86_64`.
fn describe(provenance: &kiln::domain::Provenance) -> String {
    let run: Vec<String> = [
        provenance.ci.clone(),
        provenance
            .run_url
            .clone()
            .or_else(|| provenance.run_id.clone()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut parts = vec![format!("commit {}", provenance.commit)];
    if !run.is_empty() {
        let attempt = provenance
            .attempt
            .map(|a| format!(", attempt {a}"))
            .unwrap_or_default();
        parts.push(format!("({}{attempt})", run.join(" ")));
    }
    if let Some(runner) = &provenance.runner {
        parts.push(format!("on {runner}"));
    }
    let env: Vec<&str> = [&provenance.python, &provenance.platform]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut text = parts.join(" ");
    if !env.is_empty() {
        text = format!("{text}, {}", env.join(" "));
    }
    text
}
