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
use crate::api::{ResultView, StageReport};
use crate::client::{Client, ClientError};
use crate::domain::ci::CiContext;

/// How many times a report is sent before the stage gives up on it.
pub const REPORT_ATTEMPTS: u32 = 5;

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
    client
        .download_file(&ensured.wheel.url, &ensured.wheel.sha256, &wheel)
        .await?;
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
    let program = argv
        .first()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let runs_tox = program == "tox"
        || (program.starts_with("python")
            && argv.get(1).map(String::as_str) == Some("-m")
            && argv.get(2).map(String::as_str) == Some("tox"));
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

/// Allowlisted facts about the runner: never secrets.
#[must_use]
pub fn environment_summary(ctx: &CiContext, python: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("os".to_owned(), std::env::consts::OS.to_owned());
    env.insert("arch".to_owned(), std::env::consts::ARCH.to_owned());
    env.insert("kiln".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    env.insert(
        "ci".to_owned(),
        ctx.provider.map_or("local", |p| p.as_str()).to_owned(),
    );
    env.insert("branch".to_owned(), ctx.branch.clone());
    env.insert("build_number".to_owned(), ctx.build_number.to_string());
    if let Some(runner) = &ctx.runner {
        env.insert("runner".to_owned(), runner.clone());
    }
    if let Some(url) = &ctx.run_url {
        env.insert("run_url".to_owned(), url.clone());
    }
    if let Some(version) = python_version(python) {
        env.insert("python".to_owned(), version);
    }
    for value in env.values_mut() {
        value.truncate(200);
    }
    env
}

fn python_version(python: &str) -> Option<String> {
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

/// Sends a report, retrying transport errors and server errors with backoff. Client
/// errors (4xx) are not retried: sending the same report again cannot fix them.
pub async fn deliver(client: &Client, report: &StageReport) -> Result<ResultView, ClientError> {
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match client.report_result(report).await {
            Ok(view) => return Ok(view),
            Err(e @ ClientError::Api { status, .. }) if status < 500 => return Err(e),
            Err(e) if attempt >= REPORT_ATTEMPTS => return Err(e),
            Err(e) => {
                eprintln!(
                    "kiln: reporting the `{}` result failed (attempt {attempt} of {REPORT_ATTEMPTS}): {e}; retrying in {}ms",
                    report.stage,
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
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
