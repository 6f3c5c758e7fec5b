//! Options shared by the CI hooks (`ensure`, `stage`, `report`). Every one can also come
//! from a `KILN_*` variable, so a pipeline can set them once for all its stages.

use std::path::PathBuf;

use clap::Args;

use kiln::api::ReleaseRef;
use kiln::domain::ci::Overrides;
use kiln::domain::{BuildTarget, IndexName};
use kiln::hooks::build::{BuildConfig, BuildTool};
use kiln::hooks::ensure::EnsureOptions;

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The project root, holding pyproject.toml.
    #[arg(long, env = "KILN_PROJECT_DIR", default_value = ".")]
    pub project_dir: PathBuf,
    /// The project name, if pyproject.toml has no `[project].name`.
    #[arg(long, env = "KILN_PROJECT")]
    pub project: Option<String>,
    /// The git branch (default: from the CI environment).
    #[arg(long, env = "KILN_BRANCH")]
    pub branch: Option<String>,
    /// The pipeline's build number (default: from the CI environment).
    #[arg(long, env = "KILN_BUILD_NUMBER")]
    pub build_number: Option<String>,
    /// This job's run id, for results (default: from the CI environment).
    #[arg(long, env = "KILN_RUN_ID")]
    pub run_id: Option<String>,
    /// The commit being built (default: the CI's commit variable, else git's HEAD in the
    /// project directory, marked dirty with a fingerprint of uncommitted changes).
    #[arg(long, env = "KILN_COMMIT")]
    pub commit: Option<String>,
    /// The human version part, e.g. `1.4` (default: `[tool.kiln] base-version`, else a
    /// static `[project].version`).
    #[arg(long, env = "KILN_BASE_VERSION")]
    pub base_version: Option<String>,
    /// `build` ({base}.{build}), `dev`, `post`, `rc`, `local`, or a template.
    #[arg(long, env = "KILN_VERSION_SCHEME")]
    pub version_scheme: Option<String>,
    /// The index main-branch builds go to; branch indexes are created beside it
    /// [default: `[tool.kiln] master-index`, else root/master].
    #[arg(long, env = "KILN_MASTER_INDEX")]
    pub master_index: Option<String>,
    /// A branch that builds straight into the master index (repeatable)
    /// [default: `[tool.kiln] main-branches`, else master and main].
    #[arg(
        long = "main-branch",
        env = "KILN_MAIN_BRANCHES",
        value_delimiter = ','
    )]
    pub main_branches: Vec<String>,
    /// A shell command that builds the wheel into `$KILN_DIST_DIR` (run in the build tree).
    #[arg(long, env = "KILN_BUILD_CMD")]
    pub build_cmd: Option<String>,
    /// The build frontend when no --build-cmd is given.
    #[arg(long, env = "KILN_BUILD_TOOL", value_enum, default_value_t = BuildTool::Build)]
    pub build_tool: BuildTool,
    /// The Python that runs `python -m build` and is reported in results.
    #[arg(long, env = "KILN_PYTHON", default_value = "python3")]
    pub python: String,
    /// Build again if this version's last build failed (otherwise its failure is reported).
    #[arg(long, env = "KILN_RETRY_FAILED_BUILD")]
    pub retry_failed_build: bool,
    /// How long to wait for another runner's build, e.g. `30m`.
    #[arg(long, env = "KILN_WAIT_TIMEOUT", default_value = "30m", value_parser = parse_wait)]
    pub wait_timeout: std::time::Duration,
    /// Use this published release, `PROJECT==VERSION`, instead of building this checkout
    /// (what `devpi test` does); it is looked up through --index.
    #[arg(long, env = "KILN_ARTIFACT")]
    pub artifact: Option<ReleaseRef>,
    /// The index to look on [default: this branch's index, which inherits master].
    #[arg(long, env = "KILN_INDEX")]
    pub index: Option<IndexName>,
    /// The wheel tag this runner installs and builds for when a release's wheels are
    /// platform-specific, e.g. `cp312-cp312-manylinux_2_36_x86_64` [default: asked of
    /// --python].
    #[arg(long, env = "KILN_TARGET")]
    pub target: Option<BuildTarget>,
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    kiln::config::parse_duration(text)
}

impl HookArgs {
    pub fn options(&self) -> EnsureOptions {
        EnsureOptions {
            project_dir: self.project_dir.clone(),
            project_name: self.project.clone(),
            overrides: Overrides {
                branch: self.branch.clone(),
                build_number: self.build_number.clone(),
                run_id: self.run_id.clone(),
                commit: self.commit.clone(),
            },
            base_version: self.base_version.clone(),
            version_scheme: self.version_scheme.clone(),
            master_index: self.master_index.clone(),
            main_branches: self.main_branches.clone(),
            build: BuildConfig {
                tool: self.build_tool,
                command: self.build_cmd.clone(),
                python: self.python.clone(),
            },
            retry_failed: self.retry_failed_build,
            wait_timeout: self.wait_timeout,
            artifact: self.artifact.clone(),
            index: self.index.clone(),
            target: self.target.clone(),
        }
    }
}
