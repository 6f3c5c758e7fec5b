//! Building the wheel on the runner that holds the lease.
//!
//! The default is `python -m build --wheel` (PyPA build, isolated); `uv build --wheel`
//! when configured; or any shell command that leaves wheels in `$KILN_DIST_DIR`. Output
//! streams live and its tail is kept, because when a build fails every waiting runner
//! shows that tail instead of building again.

use std::path::{Path, PathBuf};

use pep440_rs::Version;

use super::project::{PyProject, VersionSource};
use super::run::run_teed;
use crate::api::MAX_ERROR_TAIL;
use crate::domain::{DistFilename, DistKind};

/// Which build frontend runs by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BuildTool {
    /// `python -m build --wheel` (PyPA build).
    #[default]
    Build,
    /// `uv build --wheel`.
    Uv,
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The frontend, when no command is given.
    pub tool: BuildTool,
    /// A shell command that writes wheels into `$KILN_DIST_DIR`, replacing the frontend.
    pub command: Option<String>,
    /// The Python that runs PyPA build.
    pub python: String,
}

/// A build that did not produce a usable wheel.
#[derive(Debug, Clone)]
pub struct BuildFailure {
    /// What went wrong, in one paragraph.
    pub message: String,
    /// The tail of the build output.
    pub tail: String,
}

impl BuildFailure {
    /// The message and the tail, as waiters should see them.
    #[must_use]
    pub fn report(&self) -> String {
        if self.tail.trim().is_empty() {
            self.message.clone()
        } else {
            format!(
                "{}\n--- last build output ---\n{}",
                self.message,
                self.tail.trim_end()
            )
        }
    }
}

/// How long the preflight may take (`python -m build --version` imports little).
const PREFLIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks that this runner can build at all, before it claims the lease: the interpreter
/// starts and has PyPA `build` (or `uv` runs). A runner that cannot build must leave the
/// lease to one that can rather than fail the version for everyone. A custom build
/// command is not checked (Kiln cannot tell what it needs). `Err` says what is missing
/// and how to fix it.
pub async fn preflight(config: &BuildConfig) -> Result<(), String> {
    let (program, args, fix): (&str, &[&str], String) = match (&config.command, config.tool) {
        (Some(_), _) => return Ok(()),
        (None, BuildTool::Build) => (
            &config.python,
            &["-m", "build", "--version"],
            format!(
                "install it on this runner (`{} -m pip install build`), or point --python/KILN_PYTHON at an interpreter that has it",
                config.python
            ),
        ),
        (None, BuildTool::Uv) => (
            "uv",
            &["--version"],
            "install uv on this runner, or build with `--build-tool build`".to_owned(),
        ),
    };
    let shown = format!("`{program} {}`", args.join(" "));
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(PREFLIGHT_TIMEOUT, run).await {
        Err(_) => {
            return Err(format!(
                "{shown} did not answer within {}s; {fix}",
                PREFLIGHT_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("{shown} could not start ({e}); {fix}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    Err(format!("{shown} failed ({}); {fix}", said.trim()))
}

/// Builds `project` at `version` into `out`, returning the wheels it produced. For a
/// per-target build, `KILN_TARGET` tells a `--build-cmd` which wheel tag to make.
pub async fn build_wheel(
    project: &PyProject,
    (version, target): (&Version, Option<&crate::domain::BuildTarget>),
    config: &BuildConfig,
    out: &Path,
) -> Result<Vec<PathBuf>, BuildFailure> {
    let failure = |message: String| BuildFailure {
        message,
        tail: String::new(),
    };
    let version_text = version.to_string();
    let source = project
        .prepare(&version_text)
        .map_err(|e| failure(e.to_string()))?;
    let mut command = match (&config.command, config.tool) {
        (Some(shell), _) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(shell);
            c
        }
        (None, BuildTool::Build) => {
            let mut c = tokio::process::Command::new(&config.python);
            c.args(["-m", "build", "--wheel", "--outdir"])
                .arg(out)
                .arg(&source.dir);
            c
        }
        (None, BuildTool::Uv) => {
            let mut c = tokio::process::Command::new("uv");
            c.args(["build", "--wheel", "--out-dir"])
                .arg(out)
                .arg(&source.dir);
            c
        }
    };
    command
        .current_dir(&source.dir)
        .env("KILN_DIST_DIR", out)
        .env("KILN_VERSION", &version_text)
        .env(
            "KILN_TARGET",
            target.map(ToString::to_string).unwrap_or_default(),
        )
        .envs(source.env.iter().map(|(k, v)| (k, v)));
    eprintln!(
        "kiln: building {} {version_text} in {}",
        project.name,
        source.dir.display()
    );
    let finished = run_teed(command, MAX_ERROR_TAIL, None)
        .await
        .map_err(|e| failure(format!("could not start the build command: {e}")))?;
    if !finished.status.success() {
        return Err(BuildFailure {
            message: format!(
                "building {} {version_text} failed (exit status {})",
                project.name,
                finished.exit_code()
            ),
            tail: finished.tail,
        });
    }
    let wheels = find_wheels(out).map_err(|e| BuildFailure {
        message: e,
        tail: finished.tail.clone(),
    })?;
    check_wheels(project, version, &wheels).map_err(|message| BuildFailure {
        message,
        tail: finished.tail,
    })?;
    Ok(wheels)
}

fn find_wheels(out: &Path) -> Result<Vec<PathBuf>, String> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| {
            format!(
                "reading the build output directory `{}`: {e}",
                out.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("whl")))
        .collect();
    wheels.sort();
    if wheels.is_empty() {
        return Err(format!(
            "the build succeeded but left no wheel in `{}` (a --build-cmd must write its wheels to $KILN_DIST_DIR)",
            out.display()
        ));
    }
    Ok(wheels)
}

/// Every wheel must be of this project at exactly the computed version.
fn check_wheels(project: &PyProject, version: &Version, wheels: &[PathBuf]) -> Result<(), String> {
    for wheel in wheels {
        let filename = wheel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dist = DistFilename::parse(&filename).map_err(|e| format!("built file: {e}"))?;
        if dist.kind != DistKind::Wheel || dist.project != project.name {
            return Err(format!(
                "the build produced `{filename}`, which is not a wheel of `{}`",
                project.name
            ));
        }
        if dist.version != *version {
            let hint = match project.version {
                VersionSource::Dynamic => {
                    " The project's version is dynamic: Kiln sets SETUPTOOLS_SCM_PRETEND_VERSION (read by setuptools-scm and hatch-vcs); a backend that reads its version elsewhere (`attr:`, `__version__`) must be given a static version or a scm-based one."
                }
                VersionSource::Static(_) => {
                    " The static `[project].version` was rewritten in the build tree; a custom --build-cmd must build that tree (its working directory), not the checkout."
                }
            };
            return Err(format!(
                "the build produced `{filename}` with version `{}`, but this build's version is `{version}`.{hint}",
                dist.version
            ));
        }
    }
    Ok(())
}
