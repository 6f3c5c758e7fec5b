//! `kiln stage` and `kiln report`: run a stage against the exact wheel and record its
//! verdict against the wheel's sha256.
//!
//! The stage command sees the branch index and the pinned wheel through the variables pip,
//! uv and tox already read (`PIP_INDEX_URL`, `UV_DEFAULT_INDEX`, `PIP_CONSTRAINT`, …), so
//! existing `tox.ini` and test scripts need no change. A `tox` command also gets
//! `--installpkg <wheel>`, so tox installs the built artifact instead of packaging the
//! checkout again.
//!
//! Traps: a verdict that never reaches the server must not look like a pass, so delivery
//! retries transient failures and, when it still fails, the stage fails loudly. The
//! environment summary is an allowlist of facts — never a dump of the environment, which
//! holds CI secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::HookError;
use super::ensure::Ensured;
use super::run::Finished;
use crate::api::{ResultView, StageReport};
use crate::client::{Client, ClientError};
use crate::domain::Outcome;
use crate::domain::ci::CiContext;

/// Where the pinned wheel and constraints were put for the stage command.
#[derive(Debug, Clone)]
pub struct StageFiles {
    /// The downloaded wheel.
    pub wheel: PathBuf,
    /// A constraints file pinning the project to the built version.
    pub constraints: PathBuf,
}

/// Downloads the wheel into `dir` (checking its sha256) and writes a constraints file.
pub async fn fetch(
    client: &Client,
    ensured: &Ensured,
    dir: &Path,
) -> Result<StageFiles, HookError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| HookError::Io(format!("creating `{}`: {e}", dir.display())))?;
    let wheel = dir.join(&ensured.wheel.filename);
    let started = std::time::Instant::now();
    client
        .download_file(&ensured.wheel.url, &ensured.wheel.sha256, &wheel)
        .await?;
    if let Some(summary) = super::progress::transfer_summary(ensured.wheel.size, started.elapsed())
    {
        eprintln!("kiln: downloaded {}: {summary}", ensured.wheel.filename);
    }
    let constraints = dir.join("kiln-constraints.txt");
    std::fs::write(
        &constraints,
        format!("{}=={}\n", ensured.plan.project.name, ensured.plan.version),
    )
    .map_err(|e| HookError::Io(format!("writing `{}`: {e}", constraints.display())))?;
    Ok(StageFiles { wheel, constraints })
}

/// The `KEY=value` facts about an ensured build, as `kiln ensure` prints them and as the
/// stage command's environment carries them.
#[must_use]
pub fn build_facts(ensured: &Ensured, wheel_path: Option<&Path>) -> Vec<(String, String)> {
    let mut facts = vec![
        ("KILN_INDEX_URL".to_owned(), ensured.index_url.clone()),
        ("KILN_INDEX".to_owned(), ensured.plan.index.to_string()),
        (
            "KILN_PROJECT".to_owned(),
            ensured.plan.project.name.to_string(),
        ),
        ("KILN_VERSION".to_owned(), ensured.plan.version.to_string()),
        (
            "KILN_WHEEL_FILENAME".to_owned(),
            ensured.wheel.filename.clone(),
        ),
        ("KILN_SHA256".to_owned(), ensured.wheel.sha256.clone()),
    ];
    if let Some(path) = wheel_path {
        facts.push(("KILN_WHEEL".to_owned(), path.display().to_string()));
    }
    facts
}

/// The environment of the stage command: Kiln's facts plus pip's and uv's own variables.
#[must_use]
pub fn stage_env(ensured: &Ensured, files: &StageFiles) -> Vec<(String, String)> {
    let mut env = build_facts(ensured, Some(&files.wheel));
    let index = ensured.index_url.clone();
    let constraints = files.constraints.display().to_string();
    env.extend([
        ("PIP_INDEX_URL".to_owned(), index.clone()),
        ("UV_INDEX_URL".to_owned(), index.clone()),
        ("UV_DEFAULT_INDEX".to_owned(), index),
        ("PIP_CONSTRAINT".to_owned(), constraints.clone()),
        ("UV_CONSTRAINT".to_owned(), constraints),
    ]);
    env
}

/// `argv` with `--installpkg <wheel>` added when it runs tox and does not choose a
/// package itself.
#[must_use]
pub fn with_tox_package(argv: &[String], wheel: &Path) -> Vec<String> {
    let runs_tox = runs_tox(argv);
    let chooses = argv
        .iter()
        .any(|a| a == "--installpkg" || a.starts_with("--installpkg=") || a == "--develop");
    let mut out = argv.to_vec();
    if runs_tox && !chooses {
        // Options after `--` go to the test command, so insert before it.
        let at = out.iter().position(|a| a == "--").unwrap_or(out.len());
        out.splice(
            at..at,
            ["--installpkg".to_owned(), wheel.display().to_string()],
        );
    }
    out
}

/// What a stage's run says about the artifact: a verdict, or that it could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Pass, fail, or error (the stage could not run).
    pub outcome: Outcome,
    /// For `error`: why, and what to fix.
    pub cause: Option<String>,
}

impl Verdict {
    fn error(cause: String) -> Self {
        Self {
            outcome: Outcome::Error,
            cause: Some(cause),
        }
    }
}

/// The name a command line's program goes by (`/venv/bin/tox` → `tox`).
fn program_name(argv: &[String]) -> String {
    argv.first()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default()
}

/// True when `argv` runs tox (`tox …`, `python -m tox …`).
#[must_use]
pub fn runs_tox(argv: &[String]) -> bool {
    let program = program_name(argv);
    program == "tox"
        || (program.starts_with("python")
            && argv.get(1).map(String::as_str) == Some("-m")
            && argv.get(2).map(String::as_str) == Some("tox"))
}

/// Tells a test failure from a stage that could not run. `error` when: the command could
/// not be started (not found, not executable), it ran past `--timeout`, a signal killed
/// it, a shell reported a missing or unusable command (127, 126), or tox said the
/// environment or its interpreter does not exist. Anything else that exits non-zero is
/// a `fail`: the tests ran and said no.
#[must_use]
pub fn classify(
    argv: &[String],
    started: Result<&Finished, &std::io::Error>,
    limit: Option<Duration>,
) -> Verdict {
    let program = argv.first().map_or("", String::as_str);
    let finished = match started {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Verdict::error(format!(
                "command `{program}` not found on this runner's PATH; install it there (or fix the stage's command) and re-run the stage"
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Verdict::error(format!(
                "`{program}` is not executable on this runner; fix its permissions and re-run the stage"
            ));
        }
        Err(e) => {
            return Verdict::error(format!(
                "could not start `{program}`: {e}; fix the runner and re-run the stage"
            ));
        }
        Ok(finished) => finished,
    };
    if finished.timed_out {
        return Verdict::error(format!(
            "timed out after {}s (--timeout) and was killed; look for a hang, or raise the limit",
            limit.unwrap_or_default().as_secs()
        ));
    }
    if let Some(signal) = finished.signal() {
        return Verdict::error(format!(
            "killed by signal {signal}{} before it finished (the runner was stopped, ran out of memory, or the job was cancelled); re-run the stage",
            match signal {
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                2 => " (SIGINT)",
                _ => "",
            }
        ));
    }
    let code = finished.exit_code();
    if code == 0 {
        return Verdict {
            outcome: Outcome::Pass,
            cause: None,
        };
    }
    if runs_tox(argv) {
        if finished
            .tail
            .contains("provided environments not found in configuration file")
        {
            return Verdict::error(format!(
                "tox environment not found in the configuration (tox exit {code}); fix the `-e` name or the tox configuration"
            ));
        }
        if finished.tail.contains("could not find python interpreter") {
            return Verdict::error(format!(
                "tox could not find the Python interpreter the environment asks for (tox exit {code}); install it on this runner or skip that environment here"
            ));
        }
    }
    match code {
        127 => Verdict::error(
            "a command was not found (exit 127, the shell's \"command not found\"); install it on this runner and re-run the stage".into(),
        ),
        126 => Verdict::error(
            "a command could not be executed (exit 126, the shell's \"not executable\"); fix its permissions and re-run the stage".into(),
        ),
        _ => Verdict {
            outcome: Outcome::Fail,
            cause: None,
        },
    }
}

/// How a stage ran: its verdict, exit status, output tail, and whether it proved it
/// tested the wheel.
#[derive(Debug)]
pub struct StageRun {
    /// Pass, fail, or error with its cause.
    pub verdict: Verdict,
    /// The exit status the stage ends with (124 after `--timeout`, 127 if it could not
    /// start).
    pub exit_code: i32,
    /// The last bytes of its output, with Kiln's notes.
    pub log_tail: String,
    /// The probe's answer (`None` when the command could not run).
    pub artifact: Option<crate::domain::ArtifactCheck>,
}

/// Runs a stage command against the wheel: tox with `--installpkg`, anything else in a
/// fresh environment with the wheel installed (see [`super::verify`]); then probes what it
/// imported.
pub async fn run_stage(
    ensured: &Ensured,
    files: &StageFiles,
    argv: &[String],
    base_python: &str,
    limit: Option<Duration>,
) -> StageRun {
    use super::verify;
    let command_line = with_tox_package(argv, &files.wheel);
    let tox = runs_tox(&command_line);
    let mut env = stage_env(ensured, files);
    let expected = verify::Expected {
        project: ensured.plan.project.name.to_string(),
        versions: vec![
            ensured.plan.version.to_string(),
            crate::domain::DistFilename::parse(&ensured.wheel.filename)
                .map(|d| d.version.to_string())
                .unwrap_or_default(),
        ],
        modules: verify::wheel_modules(&files.wheel).unwrap_or_default(),
    };
    let stage_env = if tox {
        None
    } else {
        match prepare_environment(ensured, files, base_python, &env).await {
            Ok(prepared) => Some(prepared),
            Err(why) => {
                let cause = format!("could not prepare the stage environment: {why}");
                return StageRun {
                    log_tail: format!("kiln: {cause}\n"),
                    verdict: Verdict::error(cause),
                    exit_code: 1,
                    artifact: None,
                };
            }
        }
    };
    if let Some(prepared) = &stage_env {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![prepared.bin.clone()];
        paths.extend(std::env::split_paths(&path));
        env.push((
            "PATH".to_owned(),
            std::env::join_paths(paths)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ));
        env.push(("VIRTUAL_ENV".to_owned(), prepared.dir.display().to_string()));
        // `uv run` uses this environment as is, instead of syncing the project into a
        // `.venv` of its own (an editable install of the checkout).
        env.push((
            "UV_PROJECT_ENVIRONMENT".to_owned(),
            prepared.dir.display().to_string(),
        ));
        env.push(("UV_NO_SYNC".to_owned(), "1".to_owned()));
        eprintln!(
            "kiln: the stage runs in `{}` with {} installed from the wheel",
            prepared.dir.display(),
            ensured.wheel.filename
        );
    }
    eprintln!("kiln: running: {}", command_line.join(" "));
    let mut command = tokio::process::Command::new(&command_line[0]);
    command
        .args(&command_line[1..])
        .envs(env)
        .env_remove("PYTHONHOME");
    let started = super::run::run_teed(command, crate::api::MAX_LOG_TAIL, limit).await;
    let verdict = classify(&command_line, started.as_ref(), limit);
    let exit_code = match &started {
        Ok(finished) if finished.timed_out => 124,
        Ok(finished) => finished.exit_code(),
        Err(_) => 127,
    };
    let mut log_tail = match started {
        Ok(finished) => finished.tail,
        Err(e) => format!("could not start `{}`: {e}", command_line[0]),
    };
    let artifact = if verdict.outcome == Outcome::Error {
        None
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        Some(match &stage_env {
            Some(prepared) => verify::probe(&prepared.python, &cwd, &expected).await,
            None => verify::probe_tox(&command_line, &cwd, &expected).await,
        })
    };
    tell_artifact(ensured, artifact.as_ref(), &mut log_tail);
    StageRun {
        verdict,
        exit_code,
        log_tail,
        artifact,
    }
}

/// A fresh environment with the wheel and the project's test requirements installed.
async fn prepare_environment(
    ensured: &Ensured,
    files: &StageFiles,
    base_python: &str,
    env: &[(String, String)],
) -> Result<super::verify::StageEnv, String> {
    use super::verify;
    let requirements = ensured.plan.project.table().map_or_else(
        |_| verify::TestRequirements {
            source: None,
            requirements: Vec::new(),
        },
        |doc| verify::test_requirements(&doc),
    );
    let dir = files.wheel.with_file_name("stage-env");
    verify::prepare(
        &dir,
        base_python,
        &files.wheel,
        &files.constraints,
        &requirements,
        env,
    )
    .await
}

/// Says what the probe found, on stderr and in the log tail.
fn tell_artifact(
    ensured: &Ensured,
    artifact: Option<&crate::domain::ArtifactCheck>,
    log_tail: &mut String,
) {
    match artifact {
        Some(crate::domain::ArtifactCheck::Verified) => {
            eprintln!(
                "kiln: verified: the stage imported {} from the tested wheel",
                ensured.plan.project.name
            );
        }
        Some(crate::domain::ArtifactCheck::Unverified(reason)) => {
            let note =
                format!("kiln: UNVERIFIED: {reason}; promotion does not count an unverified pass");
            eprintln!("\n{note}\n");
            log_tail.push('\n');
            log_tail.push_str(&note);
            log_tail.push('\n');
        }
        None => {}
    }
}

/// `text` quoted for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+@,%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The commands that re-run a stage on a developer's machine against the very wheel it
/// tested: a fresh environment, the wheel pinned by version from the index it came from,
/// then the command.
#[must_use]
pub fn reproduce_commands(ensured: &Ensured, argv: &[String]) -> Vec<String> {
    let pin = format!("{}=={}", ensured.plan.project.name, ensured.plan.version);
    let command = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    if runs_tox(argv) {
        vec![
            format!(
                "pip download --no-deps --index-url {} {} -d kiln-wheel",
                shell_quote(&ensured.index_url),
                shell_quote(&pin)
            ),
            format!(
                "{command} --installpkg kiln-wheel/{}",
                ensured.wheel.filename
            ),
        ]
    } else {
        vec![
            "python -m venv .kiln-stage && . .kiln-stage/bin/activate".to_owned(),
            format!(
                "pip install --index-url {} {}",
                shell_quote(&ensured.index_url),
                shell_quote(&pin)
            ),
            command,
        ]
    }
}

/// Allowlisted facts about the runner: never secrets.
#[must_use]
pub fn environment_summary(ctx: Option<&CiContext>, python: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("os".to_owned(), std::env::consts::OS.to_owned());
    env.insert("arch".to_owned(), std::env::consts::ARCH.to_owned());
    env.insert("kiln".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    env.insert(
        "ci".to_owned(),
        ctx.and_then(|c| c.provider)
            .map_or("local", |p| p.as_str())
            .to_owned(),
    );
    if let Some(ctx) = ctx {
        env.insert("branch".to_owned(), ctx.branch.clone());
        env.insert("build_number".to_owned(), ctx.build_number.to_string());
        if let Some(runner) = &ctx.runner {
            env.insert("runner".to_owned(), runner.clone());
        }
        if let Some(url) = &ctx.run_url {
            env.insert("run_url".to_owned(), url.clone());
        }
    }
    if let Some(version) = python_version(python) {
        env.insert("python".to_owned(), version);
    }
    for value in env.values_mut() {
        value.truncate(200);
    }
    env
}

/// `CPython 3.12.1` for the interpreter `python`, if it runs.
pub(crate) fn python_version(python: &str) -> Option<String> {
    let output = std::process::Command::new(python)
        .args([
            "-c",
            "import platform; print(platform.python_implementation(), platform.python_version())",
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Sends a report, retrying transport errors and server errors with backoff for up to
/// `limit` (`--report-timeout`), so a server restart during a stage does not lose its
/// verdict. Other refusals are final: sending the same report again cannot fix them.
pub async fn deliver(
    client: &Client,
    report: &StageReport,
    limit: Duration,
) -> Result<ResultView, ClientError> {
    super::retry::with_backoff(
        &format!("reporting the `{}` result", report.stage),
        limit,
        || client.report_result(report),
    )
    .await
}

/// Keeps an undelivered report in the workspace and answers the command that sends it
/// again (`kiln report --from FILE`).
pub fn keep_undelivered(report: &StageReport) -> Result<String, HookError> {
    let safe: String = format!("{}-{}", report.stage, report.run_id)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = std::env::current_dir()
        .unwrap_or_default()
        .join(format!("kiln-report-{safe}.json"));
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| HookError::Io(format!("encoding the report: {e}")))?;
    std::fs::write(&path, text)
        .map_err(|e| HookError::Io(format!("writing `{}`: {e}", path.display())))?;
    Ok(format!("kiln report --from '{}'", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn finished(code: i32, tail: &str) -> Finished {
        use std::os::unix::process::ExitStatusExt as _;
        Finished {
            status: std::process::ExitStatus::from_raw(code << 8),
            tail: tail.to_owned(),
            timed_out: false,
        }
    }

    #[test]
    fn infrastructure_problems_are_errors_and_test_failures_are_fails() {
        let tox = args(&["tox", "-e", "unit"]);
        let outcome = |argv: &[String], f: &Finished| classify(argv, Ok(f), None).outcome;
        assert_eq!(outcome(&tox, &finished(0, "")), Outcome::Pass);
        assert_eq!(outcome(&tox, &finished(1, "1 failed")), Outcome::Fail);
        let missing_env = finished(
            254,
            "ROOT: HandledError| provided environments not found in configuration file:\nunti",
        );
        let verdict = classify(&tox, Ok(&missing_env), None);
        assert_eq!(verdict.outcome, Outcome::Error);
        assert!(verdict.cause.unwrap().contains("tox environment not found"));
        let no_python = finished(
            1,
            "py27: failed with could not find python interpreter matching any of the specs python2.7",
        );
        assert_eq!(outcome(&tox, &no_python), Outcome::Error);
        // the same words from a test command that is not tox are its own output
        assert_eq!(outcome(&args(&["pytest"]), &no_python), Outcome::Fail);
        assert_eq!(
            outcome(&args(&["sh", "-c", "nosuch"]), &finished(127, "")),
            Outcome::Error
        );
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
        let verdict = classify(&tox, Err(&not_found), None);
        assert_eq!(verdict.outcome, Outcome::Error);
        assert!(
            verdict
                .cause
                .unwrap()
                .starts_with("command `tox` not found")
        );
        let killed = Finished {
            status: {
                use std::os::unix::process::ExitStatusExt as _;
                std::process::ExitStatus::from_raw(9)
            },
            tail: String::new(),
            timed_out: false,
        };
        assert!(
            classify(&tox, Ok(&killed), None)
                .cause
                .unwrap()
                .contains("signal 9 (SIGKILL)")
        );
        let slow = Finished {
            timed_out: true,
            ..finished(0, "")
        };
        assert!(
            classify(&tox, Ok(&slow), Some(Duration::from_secs(60)))
                .cause
                .unwrap()
                .contains("timed out after 60s")
        );
    }

    #[test]
    fn shell_quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("demo==1.4.57"), "demo==1.4.57");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn tox_gets_the_built_wheel() {
        let wheel = Path::new("/w/demo-1.0-py3-none-any.whl");
        assert_eq!(
            with_tox_package(&args(&["tox", "-e", "unit"]), wheel),
            args(&[
                "tox",
                "-e",
                "unit",
                "--installpkg",
                "/w/demo-1.0-py3-none-any.whl"
            ])
        );
        assert_eq!(
            with_tox_package(
                &args(&["/venv/bin/tox", "-e", "unit", "--", "-k", "x"]),
                wheel
            ),
            args(&[
                "/venv/bin/tox",
                "-e",
                "unit",
                "--installpkg",
                "/w/demo-1.0-py3-none-any.whl",
                "--",
                "-k",
                "x"
            ])
        );
        assert_eq!(
            with_tox_package(&args(&["python3", "-m", "tox"]), wheel).len(),
            5
        );
        let chosen = args(&["tox", "--installpkg", "other.whl"]);
        assert_eq!(with_tox_package(&chosen, wheel), chosen);
        let pytest = args(&["pytest", "tests"]);
        assert_eq!(with_tox_package(&pytest, wheel), pytest);
    }
}
