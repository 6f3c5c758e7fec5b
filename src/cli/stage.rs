//! `kiln stage NAME -- CMD…`: ensure the wheel, run the stage against it, report the
//! verdict. Exits with the command's own status; if the verdict cannot be recorded the
//! stage fails even when the command passed (a lost verdict must not look like a pass).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::ClientArgs;
use super::hook_args::HookArgs;
use kiln::api::{MAX_LOG_TAIL, StageReport};
use kiln::domain::Outcome;
use kiln::hooks::ensure::ensure;
use kiln::hooks::junit;
use kiln::hooks::run::run_teed;
use kiln::hooks::stage::{deliver, environment_summary, fetch, stage_env, with_tox_package};

#[derive(Debug, Args)]
pub struct StageArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    hook: HookArgs,
    /// A JUnit XML file the command writes; its counts go into the result.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// The stage name, e.g. `unit`.
    name: String,
    /// The command to run, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(args: StageArgs) -> anyhow::Result<ExitCode> {
    kiln::domain::check_stage_name(&args.name).map_err(anyhow::Error::msg)?;
    let client = args.client.client()?;
    let started = Instant::now();
    let ensured = ensure(&client, &args.hook.options()).await?;
    let workdir = tempfile::Builder::new().prefix("kiln-stage-").tempdir()?;
    let files = fetch(&client, &ensured, workdir.path()).await?;
    let command_line = with_tox_package(&args.command, &files.wheel);
    eprintln!(
        "kiln: stage `{}` tests {} ({}) — running: {}",
        args.name,
        ensured.wheel.filename,
        ensured.wheel.sha256,
        command_line.join(" ")
    );
    let mut command = tokio::process::Command::new(&command_line[0]);
    command
        .args(&command_line[1..])
        .envs(stage_env(&ensured, &files));
    let finished = match run_teed(command, MAX_LOG_TAIL).await {
        Ok(finished) => Some(finished),
        Err(e) => {
            eprintln!("kiln: could not start `{}`: {e}", command_line[0]);
            None
        }
    };
    let exit_code = finished
        .as_ref()
        .map_or(127, kiln::hooks::run::Finished::exit_code);
    let mut log_tail = finished.map_or_else(
        || format!("could not start `{}`", command_line[0]),
        |f| f.tail,
    );
    let junit = args.junit.as_ref().and_then(|path| {
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
    });
    let report = StageReport {
        sha256: ensured.wheel.sha256.clone(),
        stage: args.name.clone(),
        run_id: ensured.plan.ctx.run_id.clone(),
        outcome: if exit_code == 0 {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        exit_code: Some(i64::from(exit_code)),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        environment: environment_summary(&ensured.plan.ctx, &args.hook.python),
        log_tail,
        junit,
    };
    match deliver(&client, &report).await {
        Ok(_) => {
            eprintln!(
                "kiln: recorded `{}` = {} for {} ({})",
                args.name,
                report.outcome.as_str(),
                ensured.wheel.filename,
                ensured.wheel.sha256
            );
            Ok(ExitCode::from(u8::try_from(exit_code).unwrap_or(1)))
        }
        Err(e) => {
            eprintln!(
                "\nkiln: ERROR: the `{}` verdict ({}) for {} was NOT recorded on the server: {e}\n\
                 kiln: this stage fails so that an unrecorded result cannot pass as green; re-run it once the server is reachable.\n",
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
