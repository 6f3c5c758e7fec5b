//! `kiln report NAME`: record a stage verdict without wrapping the command, for CI systems
//! that run the tests themselves and report afterwards.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::ClientArgs;
use super::hook_args::HookArgs;
use kiln::api::BuildStateView;
use kiln::api::{MAX_LOG_TAIL, StageReport};
use kiln::domain::ci::detect;
use kiln::domain::{Outcome, check_stage_name};
use kiln::hooks::ensure::plan;
use kiln::hooks::junit;
use kiln::hooks::stage::{deliver, environment_summary};
use kiln::hooks::target::{RunnerTarget, pick_wheel};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    hook: HookArgs,
    /// The stage name, e.g. `unit`.
    #[arg(required_unless_present = "from")]
    name: Option<String>,
    /// The stage command's exit status (0 = pass).
    #[arg(
        long,
        conflicts_with = "outcome",
        required_unless_present_any = ["outcome", "from"]
    )]
    exit_code: Option<i32>,
    /// The verdict, when there is no exit status to give.
    #[arg(long, value_enum)]
    outcome: Option<OutcomeArg>,
    /// How long the stage took, in seconds.
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// A log file whose last 64 KiB are kept with the result.
    #[arg(long)]
    log: Option<PathBuf>,
    /// A JUnit XML file whose counts go into the result.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// The tested artifact's sha256 (default: the wheel of this build on its index). With
    /// --index, no checkout is needed.
    #[arg(long)]
    sha256: Option<String>,
    /// For `--outcome error`: why the stage could not run.
    #[arg(long, required_if_eq("outcome", "error"))]
    cause: Option<String>,
    /// Send again a report `kiln stage` could not deliver (the file it names); needs no
    /// checkout and no CI variables.
    #[arg(long, conflicts_with_all = ["name", "exit_code", "outcome", "sha256", "artifact"])]
    from: Option<PathBuf>,
    /// How long to retry delivery through server blips, e.g. `5m`.
    #[arg(long, env = "KILN_REPORT_TIMEOUT", default_value = "5m", value_parser = parse_timeout)]
    report_timeout: std::time::Duration,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    kiln::config::parse_duration(text)
}

/// `kiln report --from FILE`: the saved report, delivered as it was.
async fn resend(args: &ReportArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the saved report `{}`", path.display()))?;
    let report: StageReport = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a saved stage report", path.display()))?;
    let stored = deliver(&client, &report, args.report_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("the `{}` verdict was NOT recorded: {e}", report.stage))?;
    eprintln!(
        "kiln: recorded `{}` = {} for {} on `{}`",
        stored.stage,
        stored.outcome.as_str(),
        stored.sha256,
        stored.index
    );
    std::fs::remove_file(path).ok();
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OutcomeArg {
    Pass,
    Fail,
    /// The stage could not run (needs --cause).
    Error,
}

/// What a report is about and from where: the index, the artifact, the run, and the
/// environment it ran in.
struct Target {
    index: kiln::domain::IndexName,
    sha256: String,
    run_id: String,
    environment: std::collections::BTreeMap<String, String>,
}

/// `--index` with `--sha256` or `--artifact`: no checkout and no pyproject needed; the
/// run id comes from the CI variables when there are some, else from `--run-id`.
async fn without_checkout(
    client: &kiln::client::Client,
    args: &ReportArgs,
    index: &kiln::domain::IndexName,
) -> anyhow::Result<Target> {
    let sha256 = match (&args.sha256, &args.hook.artifact) {
        (Some(sha), _) => sha.clone(),
        (None, Some(release)) => {
            let status = client
                .show_release(index, &release.project, &release.version)
                .await?;
            let files: Vec<_> = status.files.into_iter().map(|f| f.file).collect();
            let runner = runner(args, &files).await;
            pick_wheel(&files, runner.as_ref())
                .with_context(|| {
                    format!("{release} has no wheel this runner installs on `{index}` or its bases")
                })?
                .sha256
        }
        (None, None) => anyhow::bail!("pass --sha256 or --artifact with --index"),
    };
    let options = args.hook.options();
    let (run_id, ctx) = match detect(|k| std::env::var(k).ok(), &options.overrides) {
        Ok(ctx) => (ctx.run_id.clone(), Some(ctx)),
        Err(e) => (
            options.overrides.run_id.clone().with_context(|| {
                format!("pass --run-id to name this run (no CI run to take it from: {e})")
            })?,
            None,
        ),
    };
    Ok(Target {
        index: index.clone(),
        sha256,
        run_id,
        environment: environment_summary(ctx.as_ref(), &args.hook.python),
    })
}

/// What this runner installs, when it matters for `files` (see
/// [`RunnerTarget::for_files`]).
async fn runner(args: &ReportArgs, files: &[kiln::api::ReleaseFile]) -> Option<RunnerTarget> {
    RunnerTarget::for_files(files, &args.hook.python, args.hook.target.clone()).await
}

/// In a checkout: the wheel of this build (or `--sha256`) on the build's index.
async fn from_checkout(client: &kiln::client::Client, args: &ReportArgs) -> anyhow::Result<Target> {
    let plan = plan(&args.hook.options(), |k| std::env::var(k).ok())?;
    let sha256 = if let Some(sha) = &args.sha256 {
        sha.clone()
    } else {
        let version = plan.version.to_string();
        let show = |target| {
            client.show_build_for(
                &plan.index,
                plan.project.name.as_str(),
                &version,
                target,
                None,
            )
        };
        let mut view = show(None).await?;
        let runner = match &view.status {
            BuildStateView::Ready { files } => runner(args, files).await,
            _ => None,
        };
        // A platform-specific release may have a build for this runner's target.
        if let (BuildStateView::Ready { files }, Some(runner)) = (&view.status, &runner)
            && pick_wheel(files, Some(runner)).is_none()
        {
            view = show(Some(&runner.key)).await?;
        }
        match view.status {
            BuildStateView::Ready { files } => {
                pick_wheel(&files, runner.as_ref())
                    .with_context(|| {
                        format!(
                            "{} {} on `{}` has no wheel",
                            plan.project.name, plan.version, plan.index
                        )
                    })?
                    .sha256
            }
            other => anyhow::bail!(
                "{} {} is not built on `{}` (state: {}); run `kiln ensure` first, or pass --index with --sha256 or --artifact",
                plan.project.name,
                plan.version,
                plan.index,
                serde_json::to_value(&other)
                    .ok()
                    .and_then(|v| v["state"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        }
    };
    Ok(Target {
        environment: environment_summary(Some(&plan.ctx), &args.hook.python),
        index: plan.index,
        sha256,
        run_id: plan.ctx.run_id,
    })
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.from {
        return resend(&args, path).await;
    }
    let name = args.name.clone().unwrap_or_default();
    check_stage_name(&name).map_err(anyhow::Error::msg)?;
    let client = args.client.client()?;
    let target = match &args.hook.index {
        Some(index) if args.sha256.is_some() || args.hook.artifact.is_some() => {
            without_checkout(&client, &args, index).await?
        }
        _ => from_checkout(&client, &args).await?,
    };
    let outcome = match (args.exit_code, args.outcome) {
        (Some(0), _) | (None, Some(OutcomeArg::Pass)) => Outcome::Pass,
        (None, Some(OutcomeArg::Error)) => Outcome::Error,
        _ => Outcome::Fail,
    };
    let log_tail = match &args.log {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading log `{}`", path.display()))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            kiln::api::tail(&text, MAX_LOG_TAIL).to_owned()
        }
        None => String::new(),
    };
    let junit = match &args.junit {
        Some(path) => {
            let xml = std::fs::read(path)
                .with_context(|| format!("reading JUnit file `{}`", path.display()))?;
            Some(
                junit::parse(&xml)
                    .map_err(|e| anyhow::anyhow!("JUnit file `{}`: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let report = StageReport {
        index: target.index,
        cause: args.cause.clone().filter(|_| outcome == Outcome::Error),
        // Nothing here saw what the tests imported.
        artifact: None,
        sha256: target.sha256,
        stage: name.clone(),
        run_id: target.run_id,
        outcome,
        exit_code: args.exit_code.map(i64::from),
        duration_ms: std::time::Duration::try_from_secs_f64(args.duration.max(0.0))
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        environment: target.environment,
        log_tail,
        junit,
    };
    let stored = deliver(&client, &report, args.report_timeout).await.map_err(|e| {
        anyhow::anyhow!("the `{name}` verdict was NOT recorded: {e}; re-run `kiln report` once the server is reachable")
    })?;
    eprintln!(
        "kiln: recorded `{}` = {} for {}",
        stored.stage,
        stored.outcome.as_str(),
        stored.sha256
    );
    Ok(ExitCode::SUCCESS)
}
