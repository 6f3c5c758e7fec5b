//! `kiln ensure`: make sure this build's wheel is on the branch index, building it only if
//! this runner wins the lease.
//!
//! The steps, each of which every runner computes identically and without talking to the
//! others: CI context → version → index name. Then the server decides who builds: a claim
//! answers `ready` (use it), `claimed` (build, heartbeat, upload under the lease,
//! complete), `building` (long-poll until it is ready or the lease lapses, then claim
//! again) or `failed` (stop, showing the builder's output).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pep440_rs::Version;
use sha2::{Digest as _, Sha256};

use super::HookError;
use super::build::{BuildConfig, build_wheel};
use super::progress::{StatusLine, transfer_summary};
use super::project::PyProject;
use super::target::RunnerTarget;
pub use super::target::pick_wheel;
use crate::api::{BuildStateView, ClaimBuild, LeaseBody, ReleaseFile, ReleaseRef};
use crate::client::{Client, ClientError};
use crate::domain::branch::branch_slug;
use crate::domain::build_version::{VersionScheme, branch_version};
use crate::domain::ci::{CiContext, Overrides, detect};
use crate::domain::{BuildTarget, IndexKind, IndexName, IndexSettings, Provenance, SourceCommit};

/// The master index when neither a flag nor `[tool.kiln]` names one.
pub const DEFAULT_MASTER_INDEX: &str = "root/master";
/// Branches that build into the master index by default.
pub const DEFAULT_MAIN_BRANCHES: &[&str] = &["master", "main"];
/// How long the builder retries an upload through server or storage blips.
const UPLOAD_RETRY: Duration = Duration::from_secs(120);
/// Longest single long poll; a waiter prints its progress after each.
const WAIT_SLICE: Duration = Duration::from_secs(10);
/// How long a runner that cannot build waits for one that can to start.
const HANDOVER_WAIT: Duration = Duration::from_secs(120);
/// How often it looks whether one has.
const HANDOVER_POLL: Duration = Duration::from_secs(1);

/// What `kiln ensure` was asked to do.
#[derive(Debug, Clone)]
pub struct EnsureOptions {
    /// The project root (holds `pyproject.toml`).
    pub project_dir: PathBuf,
    /// Overrides `[project].name`.
    pub project_name: Option<String>,
    /// `--branch`, `--build-number`, `--run-id`.
    pub overrides: Overrides,
    /// `--base-version`.
    pub base_version: Option<String>,
    /// `--version-scheme`.
    pub version_scheme: Option<String>,
    /// `--master-index`.
    pub master_index: Option<String>,
    /// `--main-branch` (empty: from `[tool.kiln]`, else master and main).
    pub main_branches: Vec<String>,
    /// How to build (the command falls back to `[tool.kiln] build-command`).
    pub build: BuildConfig,
    /// Build again if the last build of this version failed.
    pub retry_failed: bool,
    /// How long to wait for another runner's build.
    pub wait_timeout: Duration,
    /// `--artifact`: use this published release instead of building.
    pub artifact: Option<ReleaseRef>,
    /// `--index`: where to look for it (default: the plan's index).
    pub index: Option<IndexName>,
    /// `--target`: the wheel tag this runner installs and builds for (default: asked of
    /// its interpreter).
    pub target: Option<BuildTarget>,
}

/// Everything computed before talking to the server.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The CI run.
    pub ctx: CiContext,
    /// The project.
    pub project: PyProject,
    /// The computed version.
    pub version: Version,
    /// The index this build goes to.
    pub index: IndexName,
    /// The master index (the branch index's base).
    pub master: IndexName,
    /// True when the branch builds straight into the master index.
    pub is_main: bool,
    /// The build configuration, with `[tool.kiln]` applied.
    pub build: BuildConfig,
    /// `Some` while building for a target no wheel of the release serves (see
    /// [`super::target`]); `None` for the release's first build.
    pub target: Option<BuildTarget>,
}

/// Computes context, version and index, from `env` (`std::env::var` in real use).
pub fn plan(
    options: &EnsureOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Plan, HookError> {
    let ctx = detect(env, &options.overrides)?;
    let project = PyProject::read(&options.project_dir, options.project_name.as_deref())?;
    let base = project.base_version(options.base_version.as_deref())?;
    let scheme: VersionScheme = match options
        .version_scheme
        .as_deref()
        .or(project.kiln.version_scheme.as_deref())
    {
        Some(text) => text.parse()?,
        None => VersionScheme::default(),
    };
    let main_version = scheme.apply(&base, ctx.build_number)?;
    let master_text = options
        .master_index
        .clone()
        .or_else(|| project.kiln.master_index.clone())
        .unwrap_or_else(|| DEFAULT_MASTER_INDEX.into());
    let master: IndexName = master_text
        .parse()
        .map_err(|e| HookError::Project(format!("master index: {e}")))?;
    let main_branches: Vec<String> = if options.main_branches.is_empty() {
        project.kiln.main_branches.clone().unwrap_or_else(|| {
            DEFAULT_MAIN_BRANCHES
                .iter()
                .map(|b| (*b).to_owned())
                .collect()
        })
    } else {
        options.main_branches.clone()
    };
    let is_main = main_branches.contains(&ctx.branch);
    let (index, version) = if is_main {
        (master.clone(), main_version)
    } else {
        let slug = branch_slug(&ctx.branch).ok_or_else(|| {
            HookError::Project(format!(
                "branch `{}` has no letters or digits to name an index after; pass --branch",
                ctx.branch.escape_debug()
            ))
        })?;
        let index = IndexName::from_parts(master.namespace(), &slug)
            .map_err(|e| HookError::Project(format!("branch index for `{}`: {e}", ctx.branch)))?;
        // A branch build's version can never be a main build's (see `branch_version`).
        (index, branch_version(&main_version, &slug)?)
    };
    let mut build = options.build.clone();
    if build.command.is_none() {
        build.command.clone_from(&project.kiln.build_command);
    }
    Ok(Plan {
        ctx,
        project,
        version,
        index,
        master,
        is_main,
        build,
        target: None,
    })
}

/// The wheel this build tests, on its index.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// What was computed.
    pub plan: Plan,
    /// The index's simple URL, for pip and uv.
    pub index_url: String,
    /// The pinned wheel.
    pub wheel: ReleaseFile,
    /// True if this runner built it.
    pub built_here: bool,
}

/// Makes sure the index exists and the wheel is on it.
pub async fn ensure(client: &Client, options: &EnsureOptions) -> Result<Ensured, HookError> {
    let mut plan = plan(options, |k| std::env::var(k).ok())?;
    if let Some(release) = &options.artifact {
        return published(client, &mut plan, release, options).await;
    }
    eprintln!(
        "kiln: {} {} from branch `{}` build {} → index `{}`",
        plan.project.name, plan.version, plan.ctx.branch, plan.ctx.build_number, plan.index
    );
    ensure_index(client, &plan).await?;
    let (mut files, mut built_here) = obtain(client, &plan, options).await?;
    let runner = RunnerTarget::for_files(&files, &plan.build.python, options.target.clone()).await;
    if let Some(runner) = &runner
        && pick_wheel(&files, Some(runner)).is_none()
        && pick_wheel(&files, None).is_some()
    {
        // The wheels built so far are for other interpreters or platforms: this runner's
        // target gets a build of its own, from the same commit.
        eprintln!(
            "kiln: no wheel of {} {} installs here ({}); building one for target `{}`",
            plan.project.name,
            plan.version,
            names(&files),
            runner.key
        );
        let mut for_target = plan.clone();
        for_target.target = Some(runner.key.clone());
        (files, built_here) = obtain(client, &for_target, options).await?;
    }
    let wheel = pick_wheel(&files, runner.as_ref()).ok_or_else(|| {
        HookError::Project(format!(
            "{} {} on `{}` has no wheel this runner can install (only {}); Kiln pins wheels{}",
            plan.project.name,
            plan.version,
            plan.index,
            names(&files),
            runner
                .as_ref()
                .map(|r| format!(", and this runner installs `{}` or pure wheels", r.key))
                .unwrap_or_default()
        ))
    })?;
    Ok(Ensured {
        index_url: client.url(&format!("{}/+simple/", plan.index)),
        wheel,
        built_here,
        plan,
    })
}

/// `--artifact`: the wheel of a published release, seen through `index` (default: this
/// branch's index, created if needed, which inherits master). Nothing is built; the
/// plan is re-aimed at the release, so the stage probes and reports that artifact.
async fn published(
    client: &Client,
    plan: &mut Plan,
    release: &ReleaseRef,
    options: &EnsureOptions,
) -> Result<Ensured, HookError> {
    let bad =
        |what: &str, e: String| HookError::Project(format!("--artifact `{release}`: {what}: {e}"));
    plan.project.name = release
        .project
        .parse()
        .map_err(|e: String| bad("project", e))?;
    plan.version = release
        .version
        .parse()
        .map_err(|e: pep440_rs::VersionParseError| bad("version", e.to_string()))?;
    match &options.index {
        Some(index) => plan.index = index.clone(),
        None => ensure_index(client, plan).await?,
    }
    eprintln!(
        "kiln: testing the published {release} as seen from `{}` (nothing is built)",
        plan.index
    );
    let status = client
        .show_release(&plan.index, &release.project, &release.version)
        .await?;
    let owners: Vec<(IndexName, String)> = status
        .files
        .iter()
        .map(|f| (f.index.clone(), f.file.filename.clone()))
        .collect();
    let files: Vec<ReleaseFile> = status.files.into_iter().map(|f| f.file).collect();
    let runner = RunnerTarget::for_files(&files, &plan.build.python, options.target.clone()).await;
    let wheel = pick_wheel(&files, runner.as_ref()).ok_or_else(|| {
        HookError::Project(format!(
            "{release} has no wheel this runner can install on `{}` or its bases{}; check the name and version with `kiln status {} --index {}`",
            plan.index,
            if files.is_empty() { "" } else { " (only sdists)" },
            release.project,
            plan.index
        ))
    })?;
    let index_url = client.url(&format!("{}/+simple/", plan.index));
    // The verdict is recorded where the bytes live (a result counts only on an index that
    // lists the artifact); installs still go through the looked-up index's chain.
    if let Some((owner, _)) = owners.iter().find(|(_, f)| *f == wheel.filename) {
        plan.index = owner.clone();
    }
    Ok(Ensured {
        index_url,
        wheel,
        built_here: false,
        plan: plan.clone(),
    })
}

/// The filenames, for messages.
fn names(files: &[ReleaseFile]) -> String {
    if files.is_empty() {
        return "no files".to_owned();
    }
    files
        .iter()
        .map(|f| f.filename.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the branch index on first use; checks an existing one belongs to this branch.
async fn ensure_index(client: &Client, plan: &Plan) -> Result<(), HookError> {
    let not_found = |e: &ClientError| matches!(e, ClientError::Api { status: 404, .. });
    if plan.is_main {
        return match client.get_index(&plan.index).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(HookError::Project(format!(
                "the master index `{}` does not exist; create it (`kiln index create {}`) or pass --master-index",
                plan.index, plan.index
            ))),
            Err(e) => Err(e.into()),
        };
    }
    let existing = match client.get_index(&plan.index).await {
        Ok(view) => view,
        Err(e) if not_found(&e) => {
            let settings = IndexSettings {
                kind: IndexKind::Stage,
                bases: vec![plan.master.clone()],
                volatile: true,
                promotion_only: false,
                description: format!("Builds of branch `{}`.", plan.ctx.branch),
                branch: Some(plan.ctx.branch.clone()),
                ..IndexSettings::default()
            };
            match client.create_index(&plan.index, &settings).await {
                Ok(_) => {
                    eprintln!(
                        "kiln: created branch index `{}` (bases `{}`)",
                        plan.index, plan.master
                    );
                    return Ok(());
                }
                // Another runner created it a moment ago: check it like any existing one.
                Err(ClientError::Api { status: 409, .. }) => client.get_index(&plan.index).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    match existing.index.settings.branch.as_deref() {
        Some(branch) if branch == plan.ctx.branch => Ok(()),
        Some(other) => Err(HookError::Project(format!(
            "branch `{}` maps to index `{}`, which was created for branch `{other}`; the two names slug alike — rename one branch (or delete the index if `{other}` is gone)",
            plan.ctx.branch, plan.index
        ))),
        None => Err(HookError::Project(format!(
            "branch `{}` maps to index `{}`, which exists and is not a branch index; Kiln will not build a branch into it — rename the branch",
            plan.ctx.branch, plan.index
        ))),
    }
}

/// The commit this runner builds: the CI's (or `--commit`), else git's `HEAD` in the
/// project, marked dirty with a fingerprint of uncommitted changes to tracked files (the
/// same edits name the same source; other edits are another source).
pub fn source_commit(ctx: &CiContext, project_dir: &Path) -> Result<SourceCommit, HookError> {
    if let Some(commit) = &ctx.commit {
        return Ok(commit.clone());
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(project_dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    let head = git(&["rev-parse", "HEAD"])
        .and_then(|out| String::from_utf8(out).ok())
        .and_then(|text| text.trim().parse::<SourceCommit>().ok())
        .ok_or_else(|| {
            HookError::Project(format!(
                "cannot tell which commit this builds: no CI commit variable is set and `{}` is not a git checkout; pass --commit or set KILN_COMMIT (a version names one commit)",
                project_dir.display()
            ))
        })?;
    // Uncommitted changes to tracked files. Untracked files do not count: a build leaves
    // `dist/`, `build/` and `*.egg-info` behind, and a later `kiln stage` on the same
    // checkout must name the same source as the `kiln ensure` before it.
    let diff = git(&["diff", "HEAD", "--binary"]).unwrap_or_default();
    if diff.is_empty() {
        return Ok(head);
    }
    let fingerprint = hex::encode(&Sha256::digest(&diff)[..6]);
    Ok(head.dirty(&fingerprint))
}

/// The provenance a claim carries: commit, CI run, runner and build environment.
fn provenance(plan: &Plan, project_dir: &Path) -> Result<Provenance, HookError> {
    let ctx = &plan.ctx;
    let clip = |text: String| -> String { text.chars().take(200).collect() };
    Ok(Provenance {
        commit: source_commit(ctx, project_dir)?,
        ci: Some(ctx.provider.map_or("local", |p| p.as_str()).to_owned()),
        run_id: Some(clip(ctx.run_id.clone())),
        run_url: ctx
            .run_url
            .clone()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .map(clip),
        attempt: ctx.attempt,
        runner: ctx.runner.clone().map(clip),
        // Asked only when this runner claims (a Python start; see `obtain`).
        python: None,
        platform: Some(format!(
            "{}-{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
    })
}

fn builder_description(ctx: &CiContext) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into());
    let runner = ctx.runner.as_deref().unwrap_or(&host);
    let provider = ctx.provider.map_or("local", |p| p.as_str());
    let run = ctx.run_url.as_deref().unwrap_or(&ctx.run_id);
    format!("{runner} pid {} ({provider} {run})", std::process::id())
}

/// Claims, waits or builds until the release is ready; returns its files and whether this
/// runner built them.
async fn obtain(
    client: &Client,
    plan: &Plan,
    options: &EnsureOptions,
) -> Result<(Vec<ReleaseFile>, bool), HookError> {
    let project = plan.project.name.as_str();
    let version = plan.version.to_string();
    let started = Instant::now();
    let mut ours = provenance(plan, &options.project_dir)?;
    // Most stages find the wheel built from their commit: answer them before spending a
    // Python start on checking this runner could build. Anything else goes to the claim,
    // where the server holds a version to one commit.
    let view = look(client, plan, None).await?;
    if let BuildStateView::Ready { files } = &view.status
        && built_from(&view, &ours)
    {
        return Ok((files.clone(), false));
    }
    if let Err(reason) = super::build::preflight(&plan.build).await {
        eprintln!(
            "kiln: this runner cannot build {project} {version}: {reason}. It does not claim the build: a runner that can builds it, and this one uses that wheel."
        );
        return Ok((
            observe(client, plan, options, (&reason, &ours), started).await?,
            false,
        ));
    }
    ours.python =
        super::stage::python_version(&plan.build.python).map(|v| v.chars().take(200).collect());
    let mut claim = ClaimBuild {
        builder: builder_description(&plan.ctx),
        retry: options.retry_failed,
        provenance: ours,
        target: plan.target.clone(),
    };
    loop {
        let view = client
            .claim_build(&plan.index, project, &version, &claim)
            .await?;
        // Only the first claim asks to retry a failure: a retry that then fails must
        // not be retried again by the same runner's later claims.
        claim.retry = false;
        match view.status {
            BuildStateView::Ready { files } => return Ok((files, false)),
            BuildStateView::Claimed {
                lease_id,
                lease_ttl_ms,
                attempt,
                ..
            } => {
                if attempt > 1 {
                    eprintln!("kiln: this runner builds (attempt {attempt})");
                }
                let files = build_under_lease(client, plan, &lease_id, lease_ttl_ms).await?;
                return Ok((files, true));
            }
            BuildStateView::Building {
                builder,
                expires_in_ms,
                ..
            } => {
                eprintln!(
                    "kiln: waiting for {builder} to build {project} {version} (its lease lapses in {}s without a heartbeat)",
                    expires_in_ms.max(0) / 1000
                );
                if let Some(files) = wait_for(client, plan, started, options.wait_timeout).await? {
                    return Ok((files, false));
                }
            }
            BuildStateView::Failed {
                builder,
                error_tail,
                attempt,
            } => return Err(failed(plan, &builder, &error_tail, attempt)),
            BuildStateView::Absent => {}
        }
        if started.elapsed() > options.wait_timeout {
            return Err(timeout(plan, options.wait_timeout));
        }
    }
}

fn failed(plan: &Plan, builder: &str, error_tail: &str, attempt: i64) -> HookError {
    HookError::BuildFailed(format!(
        "the build of {} {} for `{}` failed on {builder} (attempt {attempt}); fix it and push, or re-run the pipeline (a new attempt on GitHub Actions, Azure Pipelines or Buildkite builds again by itself; elsewhere pass --retry-failed-build)\n--- last build output ---\n{}",
        plan.project.name,
        plan.version,
        plan.index,
        error_tail.trim_end()
    ))
}

/// For a runner that cannot build: never claims; uses the wheel another runner builds.
/// Fails with an environment error when no runner has started building within
/// [`HANDOVER_WAIT`] (or `--wait-timeout`, if shorter).
async fn observe(
    client: &Client,
    plan: &Plan,
    options: &EnsureOptions,
    (reason, ours): (&str, &Provenance),
    started: Instant,
) -> Result<Vec<ReleaseFile>, HookError> {
    let version = plan.version.to_string();
    let patience = HANDOVER_WAIT.min(options.wait_timeout);
    let mut said = None::<Instant>;
    let mut line = StatusLine::stderr();
    loop {
        let view = look(client, plan, None).await?;
        let ours_built = built_from(&view, ours);
        match view.status {
            // The server checks a version's commit on claims, and this runner never
            // claims: it checks the commit itself.
            BuildStateView::Ready { files } if ours_built => return Ok(files),
            BuildStateView::Ready { .. } => {
                return Err(HookError::Project(format!(
                    "{} {version} on `{}` was built from {}, not from this runner's commit {}: a version names one commit; start a new pipeline run (a new build number)",
                    plan.project.name,
                    plan.index,
                    view.provenance.as_ref().map_or(
                        "an unrecorded commit (uploaded by hand)".to_owned(),
                        |p| format!("commit {}", p.commit)
                    ),
                    ours.commit
                )));
            }
            BuildStateView::Failed {
                builder,
                error_tail,
                attempt,
            } => return Err(failed(plan, &builder, &error_tail, attempt)),
            BuildStateView::Building { expires_in_ms, .. } if expires_in_ms > 0 => {
                // Looked at again above, commit and all, once it is ready.
                wait_for(client, plan, started, options.wait_timeout).await?;
                continue;
            }
            _ => {}
        }
        let waited = started.elapsed();
        if waited >= patience {
            return Err(HookError::Environment(format!(
                "this runner cannot build {} {version} ({reason}), and no runner that can started building it within {}s; fix this runner, or let a runner that can build run `kiln ensure` first",
                plan.project.name,
                patience.as_secs()
            )));
        }
        if said.is_none_or(|t| t.elapsed() >= WAIT_SLICE) {
            line.update(&format!(
                "kiln: no runner builds {} {version} yet; waiting up to {}s more for one that can",
                plan.project.name,
                patience.saturating_sub(waited).as_secs()
            ));
            said = Some(Instant::now());
        }
        tokio::time::sleep(HANDOVER_POLL).await;
    }
}

/// True when the build `view` shows was made from this runner's commit.
fn built_from(view: &crate::api::BuildView, ours: &Provenance) -> bool {
    view.provenance
        .as_ref()
        .is_some_and(|p| p.commit == ours.commit)
}

/// The build the plan is about (its target's, if any); with `wait`, a long poll.
async fn look(
    client: &Client,
    plan: &Plan,
    wait: Option<Duration>,
) -> Result<crate::api::BuildView, ClientError> {
    client
        .show_build_for(
            &plan.index,
            plan.project.name.as_str(),
            &plan.version.to_string(),
            plan.target.as_ref(),
            wait,
        )
        .await
}

fn timeout(plan: &Plan, limit: Duration) -> HookError {
    HookError::Timeout(format!(
        "gave up after {}s waiting for another runner to build {} {} on `{}` (--wait-timeout); its builder is still heartbeating",
        limit.as_secs(),
        plan.project.name,
        plan.version,
        plan.index
    ))
}

/// Long-polls until the release is ready (`Some(files)`), or until the caller should claim
/// again (`None`: the lease lapsed, the build failed, or it vanished).
async fn wait_for(
    client: &Client,
    plan: &Plan,
    started: Instant,
    limit: Duration,
) -> Result<Option<Vec<ReleaseFile>>, HookError> {
    let version = plan.version.to_string();
    let mut line = StatusLine::stderr();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(timeout(plan, limit));
        }
        let view = look(client, plan, Some(left.min(WAIT_SLICE))).await?;
        match view.status {
            BuildStateView::Ready { files } => return Ok(Some(files)),
            BuildStateView::Building {
                expires_in_ms,
                builder,
                attempt,
            } if expires_in_ms > 0 => {
                // One line per update in a CI log, in place on a terminal.
                line.update(&format!(
                    "kiln: still waiting for {builder} to build {} {version} (attempt {attempt}): {}s so far, its lease lapses in {}s without a heartbeat, giving up in {}s",
                    plan.project.name,
                    started.elapsed().as_secs(),
                    expires_in_ms / 1000,
                    limit.saturating_sub(started.elapsed()).as_secs()
                ));
            }
            _ => return Ok(None),
        }
    }
}

/// Builds, uploads under the lease and completes it; on failure, fails the lease so every
/// waiter sees why.
async fn build_under_lease(
    client: &Client,
    plan: &Plan,
    lease_id: &str,
    lease_ttl_ms: u64,
) -> Result<Vec<ReleaseFile>, HookError> {
    let project = plan.project.name.as_str().to_owned();
    let version = plan.version.to_string();
    let lost = Arc::new(AtomicBool::new(false));
    let lease = |error_tail: Option<String>| LeaseBody {
        lease_id: lease_id.to_owned(),
        error_tail,
        target: plan.target.clone(),
    };
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        plan.clone(),
        lease(None),
        Duration::from_millis(lease_ttl_ms / 3).max(Duration::from_millis(500)),
        Arc::clone(&lost),
    ));
    let result = build_and_upload(client, plan, lease_id).await;
    heartbeat.abort();
    match result {
        Ok(()) => {
            let view = client
                .lease_action(&plan.index, &project, &version, "complete", &lease(None))
                .await?;
            match view.status {
                BuildStateView::Ready { files } => Ok(files),
                other => Err(HookError::Project(format!(
                    "completing the build answered `{other:?}` instead of ready"
                ))),
            }
        }
        Err(failure) => {
            let text = failure.to_string();
            if !lost.load(Ordering::SeqCst) {
                let tail = crate::api::tail(&text, crate::api::MAX_ERROR_TAIL);
                if let Err(e) = client
                    .lease_action(
                        &plan.index,
                        &project,
                        &version,
                        "fail",
                        &lease(Some(tail.to_owned())),
                    )
                    .await
                {
                    eprintln!("kiln: could not record the failed build on the server: {e}");
                }
            }
            Err(failure)
        }
    }
}

async fn build_and_upload(client: &Client, plan: &Plan, lease_id: &str) -> Result<(), HookError> {
    let out = tempfile::Builder::new()
        .prefix("kiln-dist-")
        .tempdir()
        .map_err(|e| HookError::Io(format!("creating the build output directory: {e}")))?;
    let wheels = build_wheel(
        &plan.project,
        (&plan.version, plan.target.as_ref()),
        &plan.build,
        out.path(),
    )
    .await
    .map_err(|f| HookError::BuildFailed(f.report()))?;
    let version = plan.version.to_string();
    for wheel in &wheels {
        let started = Instant::now();
        // An object-store or server blip must not fail the build for every waiter: the
        // lease is still heartbeaten while the upload retries, and an upload that did
        // land answers `already-present` the second time.
        super::retry::with_backoff(
            &format!("uploading {}", wheel.display()),
            UPLOAD_RETRY,
            || {
                client.upload_file(
                    &plan.index,
                    wheel,
                    plan.project.name.as_str(),
                    &version,
                    Some(lease_id),
                )
            },
        )
        .await?;
        let size = std::fs::metadata(wheel).map_or(0, |m| m.len());
        eprintln!(
            "kiln: uploaded {} to `{}`{}",
            wheel.file_name().unwrap_or_default().to_string_lossy(),
            plan.index,
            transfer_summary(size, started.elapsed())
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn heartbeat_loop(
    client: Client,
    plan: Plan,
    body: LeaseBody,
    every: Duration,
    lost: Arc<AtomicBool>,
) {
    let (index, project, version) = (
        plan.index,
        plan.project.name.to_string(),
        plan.version.to_string(),
    );
    loop {
        tokio::time::sleep(every).await;
        match client
            .lease_action(&index, &project, &version, "heartbeat", &body)
            .await
        {
            Ok(_) => {}
            Err(ClientError::Api {
                status: 409,
                detail,
            }) => {
                eprintln!("kiln: lost the build lease: {detail}");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A blip must not end the build; the lease survives a few missed beats.
            Err(e) => eprintln!("kiln: heartbeat failed (will retry): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path) -> EnsureOptions {
        EnsureOptions {
            project_dir: dir.to_path_buf(),
            project_name: None,
            overrides: Overrides::default(),
            base_version: None,
            version_scheme: None,
            master_index: None,
            main_branches: Vec::new(),
            build: BuildConfig {
                tool: super::super::build::BuildTool::Build,
                command: None,
                python: "python3".into(),
            },
            retry_failed: false,
            wait_timeout: Duration::from_secs(1),
            artifact: None,
            index: None,
            target: None,
        }
    }

    fn plan_for(pyproject: &str, vars: &[(&str, &str)]) -> Result<Plan, HookError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        plan(&options(dir.path()), |k| vars.get(k).cloned())
    }

    const PROJECT: &str = "[project]\nname = \"demo\"\nversion = \"1.4\"\n";

    #[test]
    fn branches_get_their_own_index_under_the_master_namespace() {
        let gh = |branch: &'static str| {
            [
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_REF_NAME", branch),
                ("GITHUB_RUN_NUMBER", "57"),
            ]
        };
        let feature = plan_for(
            &format!("{PROJECT}[tool.kiln]\nmaster-index = \"acme/master\"\n"),
            &gh("feature/login-form"),
        )
        .unwrap();
        assert_eq!(feature.index.to_string(), "acme/feature-login-form");
        assert_eq!(
            feature.version.to_string(),
            "1.4.57.dev0+feature.login.form",
            "a branch build never takes a main build's version"
        );
        assert!(!feature.is_main);
        let main = plan_for(PROJECT, &gh("main")).unwrap();
        assert_eq!(main.index.to_string(), "root/master");
        assert_eq!(main.version.to_string(), "1.4.57");
        assert!(main.is_main);
        let trunk = plan_for(
            &format!(
                "{PROJECT}[tool.kiln]\nmain-branches = [\"trunk\"]\nversion-scheme = \"dev\"\n"
            ),
            &gh("trunk"),
        )
        .unwrap();
        assert!(trunk.is_main);
        assert_eq!(trunk.version.to_string(), "1.4.dev57");
    }

    #[test]
    fn unusable_branches_are_explained() {
        let err = plan_for(
            PROJECT,
            &[("KILN_BRANCH", "///"), ("KILN_BUILD_NUMBER", "1")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("no letters or digits"), "{err}");
    }
}
