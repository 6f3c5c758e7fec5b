//! `kiln stage NAME -- CMD…`: ensure the wheel, run the stage against it, report the
//! verdict. Exits with the command's own status; if the verdict cannot be recorded the
//! stage fails even when the command passed (a lost verdict must not look like a pass).
//! A stage that could not run (command not found, tox environment missing, killed,
//! timed out) is recorded as `error` with its cause, not as a test failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::ClientArgs;
use super::hook_args::HookArgs;
use kiln::api::StageReport;
use kiln::domain::Outcome;
use kiln::hooks::ensure::ensure;
use kiln::hooks::junit;
use kiln::hooks::stage::{
    StageRun, deliver, environment_summary, fetch, keep_undelivered, reproduce_commands, run_stage,
};

#[derive(Debug, Args)]
pub struct StageArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    hook: HookArgs,
    /// A JUnit XML file the command writes; its counts go into the result.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Kill the command after this long (e.g. `30m`) and record the stage as `error`.
    #[arg(long, value_parser = parse_timeout)]
    timeout: Option<std::time::Duration>,
    /// How long to retry delivering the verdict through server blips, e.g. `5m`.
    #[arg(long, env = "KILN_REPORT_TIMEOUT", default_value = "5m", value_parser = parse_timeout)]
    report_timeout: std::time::Duration,
    /// The stage name, e.g. `unit`.
    name: String,
    /// The command to run, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The counts of a JUnit file; a file that cannot be used is noted in the log instead.
fn read_junit(path: &std::path::Path, log_tail: &mut String) -> Option<kiln::api::JunitCounts> {
    match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|xml| junit::parse(&xml))
    {
        Ok(counts) => Some(counts),
        Err(e) => {
            let note = format!("kiln: JUnit file `{}` not used: {e}", path.display());
            eprintln!("{note}");
            log_tail.push('\n');
            log_tail.push_str(&note);
            log_tail.push('\n');
            None
        }
    }
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    kiln::config::parse_duration(text)
}

pub async fn run(args: StageArgs) -> anyhow::Result<ExitCode> {
    kiln::domain::check_stage_name(&args.name).map_err(anyhow::Error::msg)?;
    let client = args.client.client()?;
    let started = Instant::now();
    let ensured = ensure(&client, &args.hook.options()).await?;
    let workdir = tempfile::Builder::new().prefix("kiln-stage-").tempdir()?;
    let files = fetch(&client, &ensured, workdir.path()).await?;
    eprintln!(
        "kiln: stage `{}` tests {} ({})",
        args.name, ensured.wheel.filename, ensured.wheel.sha256,
    );
    let StageRun {
        verdict,
        exit_code,
        mut log_tail,
        artifact,
    } = run_stage(
        &ensured,
        &files,
        &args.command,
        &args.hook.python,
        args.timeout,
    )
    .await;
    if let Some(cause) = &verdict.cause {
        eprintln!(
            "\nkiln: stage `{}` could not run: {cause}\nkiln: this is recorded as `error` (an infrastructure problem), not as a test failure; it blocks promotion until the stage runs.\n",
            args.name
        );
        log_tail.push_str("\nkiln: ");
        log_tail.push_str(cause);
        log_tail.push('\n');
    }
    let junit = args
        .junit
        .as_ref()
        .and_then(|path| read_junit(path, &mut log_tail));
    let report = StageReport {
        index: ensured.plan.index.clone(),
        sha256: ensured.wheel.sha256.clone(),
        stage: args.name.clone(),
        run_id: ensured.plan.ctx.run_id.clone(),
        outcome: verdict.outcome,
        cause: verdict.cause.clone(),
        artifact,
        exit_code: Some(i64::from(exit_code)),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        environment: environment_summary(Some(&ensured.plan.ctx), &args.hook.python),
        log_tail,
        junit,
    };
    if verdict.outcome != Outcome::Pass {
        eprintln!(
            "kiln: to reproduce `{}` locally against the same wheel:",
            args.name
        );
        for line in reproduce_commands(&ensured, &args.command) {
            eprintln!("    {line}");
        }
    }
    match deliver(&client, &report, args.report_timeout).await {
        Ok(_) => {
            eprintln!(
                "kiln: recorded `{}` = {} for {} ({})",
                args.name,
                report.outcome.as_str(),
                ensured.wheel.filename,
                ensured.wheel.sha256
            );
            Ok(ExitCode::from(if verdict.outcome == Outcome::Pass {
                0
            } else {
                u8::try_from(exit_code)
                    .ok()
                    .filter(|c| *c != 0)
                    .unwrap_or(1)
            }))
        }
        Err(e) => {
            let resend = keep_undelivered(&report).map_or_else(
                |e| format!("(the report could not be kept: {e}) re-run the stage"),
                |command| format!("send it again with `{command}`"),
            );
            eprintln!(
                "\nkiln: ERROR: the `{}` verdict ({}) for {} was NOT recorded on the server: {e}\n\
                 kiln: this stage fails so that an unrecorded result cannot pass as green; once the server is reachable, {resend}.\n",
                args.name,
                report.outcome.as_str(),
                ensured.wheel.sha256
            );
            Ok(ExitCode::from(if exit_code == 0 {
                2
            } else {
                u8::try_from(exit_code).unwrap_or(1)
            }))
        }
    }
}
