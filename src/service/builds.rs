//! Build-once coordination: however many CI runners ask for the same release at once,
//! exactly one gets the lease and builds; the others wait for its upload.
//!
//! A release here is (index, project, version) on the index it is built into — the index's
//! *own* files, never inherited ones: a branch build is its own artifact even when master
//! happens to have a file of the same version.
//!
//! States, as a claimer sees them:
//! - `ready`: the index lists files for the release (built under a lease, uploaded by hand,
//!   or left by an earlier pipeline run with the same build number) — use them.
//! - `claimed`: the caller won the lease; it builds, heartbeats, uploads under the lease,
//!   and completes (or fails) it.
//! - `building`: someone else holds an unexpired lease — wait ([`wait`]) and claim again.
//! - `failed`: the holder reported a failed build; its output's tail comes back so every
//!   waiter fails fast with the real error. Nobody builds again unless a claim asks to
//!   `retry`, or comes from a later attempt of the same CI run than the failed build (a
//!   re-run: see [`is_rerun`]) — so the other stages of the failed attempt fail fast,
//!   and re-running the pipeline builds again by itself.
//!
//! A version names one source. Every claim carries the commit it builds from (its
//! [`Provenance`]); a claim for a release that is built, building or failed from another
//! commit is refused (409) with both commits, and a release uploaded by hand (no lease, so
//! no commit) cannot be claimed at all — otherwise a pipeline re-run with the same build
//! number after a code change would be handed the old wheel and test it as the new code.
//!
//! Traps:
//! - Every transition is a conditional write in the database (see `db::builds`), so the
//!   guarantee survives several replicas; nothing here relies on process memory except the
//!   wake-up of long polls, which also re-read on a short timer.
//! - A lease that lapsed is taken over by the next claimer; its old holder then learns at
//!   its next heartbeat, upload or completion that the lease is gone (409), and its upload
//!   is refused, so two builds of one release can never both be published.

use std::str::FromStr;
use std::time::Duration;

use pep440_rs::Version;

use super::auth::{Caller, Principal};
use super::{ServiceError, now_rfc3339};
use crate::api::{ClaimBuild, MAX_ERROR_TAIL, tail};
use crate::db::changes::Change;
use crate::db::{BuildKey, BuildRecord, BuildState, Db, FileRecord, LeaseHolder, Lock, WriteTx};
use crate::domain::release::canonical;
use crate::domain::{BuildTarget, Index, ProjectName, Provenance};
use crate::domain::{IndexName, Release, WebhookEvent};

/// Longest accepted long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a long poll re-reads the database while the change listener is down (then
/// another replica's commit does not wake this process).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often it re-reads anyway while the listener is up (every change wakes it).
const SAFETY_POLL: Duration = Duration::from_secs(5);
/// How much of a failed build's output its event keeps (the build row keeps more).
const FAILED_EVENT_TAIL: usize = 2048;
/// Longest builder description.
const MAX_BUILDER: usize = 200;

/// The files a build stands for: for the release's first build, every own file of the
/// release; for a per-target build, only the files uploaded under it.
fn build_files(
    version: &str,
    target: Option<&BuildTarget>,
    build: Option<&BuildRecord>,
    files: Vec<FileRecord>,
) -> Vec<FileRecord> {
    let files = own_files(version, files);
    match (target, build) {
        (None, _) => files,
        (Some(_), Some(b)) => files
            .into_iter()
            .filter(|f| f.build_id == Some(b.id))
            .collect(),
        (Some(_), None) => Vec::new(),
    }
}

/// The build key of `release` on `index`, for `target` (`None`: the first build).
fn key<'a>(release: &'a Release, index: &Index, target: Option<&'a BuildTarget>) -> BuildKey<'a> {
    BuildKey {
        index_id: index.id,
        project: release.project.as_str(),
        version: release.version_str(),
        target,
    }
}

/// Where a release's build stands, as one caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStatus {
    /// No files and no build yet.
    Absent,
    /// The files are on the index.
    Ready {
        /// The index's own files of the release.
        files: Vec<FileRecord>,
        /// The build's provenance (`None` for files uploaded by hand).
        provenance: Option<Provenance>,
    },
    /// The caller holds the lease and must build.
    Claimed {
        /// The lease secret to heartbeat, upload and complete with.
        lease_id: String,
        /// When the lease lapses without a heartbeat (ms since the epoch).
        expires_at_ms: i64,
        /// 1 for the first build, more after takeovers and retries.
        attempt: i64,
    },
    /// Someone else builds.
    Building {
        /// The token and runner that hold the lease.
        builder: String,
        /// When their lease lapses.
        expires_at_ms: i64,
        /// Which attempt.
        attempt: i64,
        /// What the holder builds from.
        provenance: Option<Provenance>,
    },
    /// The build failed.
    Failed {
        /// Who built it.
        builder: String,
        /// The tail of the build output.
        error_tail: String,
        /// Which attempt failed.
        attempt: i64,
        /// What it was built from.
        provenance: Option<Provenance>,
    },
}

/// The files of the release whose canonical version is `version`, by filename.
fn own_files(version: &str, files: Vec<FileRecord>) -> Vec<FileRecord> {
    let mut files: Vec<FileRecord> = files
        .into_iter()
        .filter(|f| Version::from_str(&f.version).is_ok_and(|v| canonical(&v) == version))
        .collect();
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    files
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn lease_expiry(ttl: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

fn new_lease_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn describe(principal: &Principal, builder: &str) -> String {
    let builder: String = builder
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_BUILDER)
        .collect();
    if builder.trim().is_empty() {
        principal.name.clone()
    } else {
        format!("{} ({})", builder.trim(), principal.name)
    }
}

/// What a read of the release shows, without changing anything.
pub(super) async fn observe(
    db: &Db,
    index: &Index,
    release: &Release,
    target: Option<&BuildTarget>,
) -> Result<BuildStatus, ServiceError> {
    let (build, files) = load(db, index, release, target).await?;
    Ok(status_of(build.as_ref(), files))
}

/// A build row and the files it stands for.
async fn load(
    db: &Db,
    index: &Index,
    release: &Release,
    target: Option<&BuildTarget>,
) -> Result<(Option<BuildRecord>, Vec<FileRecord>), ServiceError> {
    let key = key(release, index, target);
    let build = db.find_build(key).await?;
    let files = build_files(
        key.version,
        target,
        build.as_ref(),
        db.files_of_project(&[index.id], key.project).await?,
    );
    Ok((build, files))
}

fn status_of(build: Option<&BuildRecord>, files: Vec<FileRecord>) -> BuildStatus {
    match build {
        Some(b) if b.state == BuildState::Building => BuildStatus::Building {
            builder: b.builder.clone(),
            expires_at_ms: b.expires_at_ms,
            attempt: b.attempt,
            provenance: b.provenance.clone(),
        },
        _ if !files.is_empty() => BuildStatus::Ready {
            provenance: build.and_then(|b| b.provenance.clone()),
            files,
        },
        Some(b) if b.state == BuildState::Failed => BuildStatus::Failed {
            builder: b.builder.clone(),
            error_tail: b.error_tail.clone().unwrap_or_default(),
            attempt: b.attempt,
            provenance: b.provenance.clone(),
        },
        _ => BuildStatus::Absent,
    }
}

/// The build state of a release (its first build, or the build for `target`), for a
/// status page or a waiter, once the caller was found to may read the index. With
/// `wait`, waits up to that long for a `building` release to change (see [`wait`]), or
/// until the server starts shutting down.
pub async fn status(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    (release, target): (&Release, Option<&BuildTarget>),
    wait_for: Option<(Duration, &tokio_util::sync::CancellationToken)>,
) -> Result<BuildStatus, ServiceError> {
    let (index, _) = super::auth::readable_chain(db, caller, name).await?;
    match wait_for {
        Some((timeout, stopping)) => wait(db, &index, (release, target), timeout, stopping).await,
        None => observe(db, &index, release, target).await,
    }
}

/// The index a lease operation acts on, once the caller was found to hold `upload` on it.
async fn leased_index<'c>(
    db: &Db,
    caller: &'c Caller,
    name: &IndexName,
) -> Result<(Index, &'c Principal), ServiceError> {
    let principal = caller.require(crate::domain::Permission::Upload, name)?;
    Ok((super::indexes::get_index(db, name).await?, principal))
}

/// Refuses a claim from `commit` for a release whose build (or hand upload) is from
/// another source: a version names one commit.
fn same_source(
    index: &Index,
    release: &Release,
    build: Option<&BuildRecord>,
    files: &[FileRecord],
    commit: &crate::domain::SourceCommit,
) -> Result<(), ServiceError> {
    let way_out = "a version names one commit: build the new commit under a new build number (a new pipeline run), or check out the commit that was built";
    match build {
        Some(b) => match &b.source_commit {
            Some(recorded) if recorded == commit => Ok(()),
            Some(recorded) => Err(ServiceError::Conflict(format!(
                "{release} on `{}` is {} from commit {recorded}, but this claim builds commit {commit}; {way_out}",
                index.name,
                match b.state {
                    BuildState::Building => "being built",
                    BuildState::Ready => "built",
                    BuildState::Failed => "a failed build",
                }
            ))),
            None => Err(ServiceError::Conflict(format!(
                "{release} on `{}` was built before Kiln recorded commits, so it cannot be shown to come from commit {commit}; {way_out}",
                index.name
            ))),
        },
        None if !files.is_empty() => Err(ServiceError::Conflict(format!(
            "{release} on `{}` was uploaded without a build lease (by hand), so Kiln cannot tell it comes from commit {commit}; {way_out}",
            index.name
        ))),
        None => Ok(()),
    }
}

/// Asks to build a release: answers `Ready`, `Claimed` (build it), `Building` (wait) or
/// `Failed`. With `retry`, a failed build is claimed again instead of reported. A release
/// built (or building) from another commit than the claim's is refused (see
/// [`same_source`]).
pub async fn claim(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    release: &Release,
    request: &ClaimBuild,
    ttl: Duration,
) -> Result<BuildStatus, ServiceError> {
    let (index, principal) = leased_index(db, caller, name).await?;
    request.provenance.check().map_err(ServiceError::Invalid)?;
    let commit = &request.provenance.commit;
    let index = &index;
    super::indexes::refuse_mirror(index, "builds")?;
    if index.settings.promotion_only {
        return Err(ServiceError::Forbidden(format!(
            "index `{}` is promotion-only: nothing is built into it; build into a branch or master index and promote",
            index.name
        )));
    }
    let builder = describe(principal, &request.builder);
    let target = request.target.as_ref();
    if let Some(target) = target {
        first_build_ready(db, index, release, target, commit).await?;
    }
    // Cheap read first: most claims find the release ready or someone building, and
    // answering those must not take the write lock.
    let key = key(release, index, target);
    let (build, files) = load(db, index, release, target).await?;
    same_source(index, release, build.as_ref(), &files, commit)?;
    let retry = request.retry || is_rerun(build.as_ref(), &request.provenance);
    match status_of(build.as_ref(), files) {
        BuildStatus::Building { expires_at_ms, .. } if expires_at_ms <= now_ms() => {}
        BuildStatus::Failed { .. } if retry => {}
        BuildStatus::Absent => {}
        seen => return Ok(seen),
    }
    // The conditional writes below decide; a lost race just reads again.
    for _ in 0..5 {
        let mut tx = db.begin_write().await?;
        let lease_id = new_lease_id();
        let holder = LeaseHolder {
            lease_id: &lease_id,
            builder: &builder,
            expires_at_ms: lease_expiry(ttl),
            provenance: &request.provenance,
        };
        tx.lock(Lock::Project(key.index_id, key.project)).await?;
        let outcome = claim_tx(&mut tx, (index, release), key, &holder, request.retry).await?;
        // A claim names no change: build waiters wait only while a lease is live, and a
        // claim only starts one where none was (absent, failed, gone, or lapsed, whose
        // waiters have already been answered), so there is nobody to wake and, on
        // PostgreSQL, no NOTIFY to send.
        tx.commit().await?;
        if let Some(status) = outcome {
            if let BuildStatus::Claimed { attempt, .. } = &status {
                tracing::info!(
                    index.name = %index.name,
                    project.name = %release.project,
                    release.version = %release.version_str(),
                    build.attempt = attempt,
                    build.builder = %builder,
                    "build lease claimed"
                );
            }
            return Ok(status);
        }
    }
    Err(ServiceError::Internal(format!(
        "claiming the build of {release} on `{}` kept racing",
        index.name
    )))
}

/// A per-target claim needs the release's first build ready, from the same commit: the
/// target build adds a wheel for another interpreter to a release that exists, and a
/// version still names one source.
async fn first_build_ready(
    db: &Db,
    index: &Index,
    release: &Release,
    target: &BuildTarget,
    commit: &crate::domain::SourceCommit,
) -> Result<(), ServiceError> {
    let (first, files) = load(db, index, release, None).await?;
    same_source(index, release, first.as_ref(), &files, commit)?;
    match status_of(first.as_ref(), files) {
        BuildStatus::Ready { .. } => Ok(()),
        other => Err(ServiceError::Conflict(format!(
            "{release} on `{}` cannot be built for target `{target}` yet: its first build is {}; claim the release's build first and wait until it is ready",
            index.name,
            match other {
                BuildStatus::Absent => "not claimed",
                BuildStatus::Failed { .. } => "failed",
                _ => "in progress",
            }
        ))),
    }
}

/// True when `claimant` is a later attempt of the CI run whose build failed: same
/// provider, and an attempt number (`GITHUB_RUN_ATTEMPT`, `SYSTEM_JOBATTEMPT`,
/// `BUILDKITE_RETRY_COUNT`) above the failed build's. Providers that give no attempt
/// number never match; their users re-run with `--retry-failed-build` (or a new pipeline,
/// which is a new build number and so a new version anyway).
#[must_use]
pub fn is_rerun(failed: Option<&BuildRecord>, claimant: &Provenance) -> bool {
    let Some(build) = failed.filter(|b| b.state == BuildState::Failed) else {
        return false;
    };
    let Some(origin) = &build.provenance else {
        return false;
    };
    origin.ci.is_some()
        && origin.ci == claimant.ci
        && matches!((origin.attempt, claimant.attempt), (Some(then), Some(now)) if now > then)
}

/// One attempt at a claim inside a write transaction; `None` if a concurrent writer won
/// a race and the caller should look again.
async fn claim_tx(
    tx: &mut WriteTx,
    (index, release): (&Index, &Release),
    key: BuildKey<'_>,
    holder: &LeaseHolder<'_>,
    retry: bool,
) -> Result<Option<BuildStatus>, ServiceError> {
    let build = Db::find_build_tx(tx, key).await?;
    let files = build_files(
        key.version,
        key.target,
        build.as_ref(),
        Db::own_project_files_tx(tx, key.index_id, key.project).await?,
    );
    same_source(
        index,
        release,
        build.as_ref(),
        &files,
        &holder.provenance.commit,
    )?;
    let now = now_rfc3339();
    let claimed = |attempt| BuildStatus::Claimed {
        lease_id: holder.lease_id.to_owned(),
        expires_at_ms: holder.expires_at_ms,
        attempt,
    };
    let takeover = match &build {
        None if files.is_empty() => {
            let won = Db::insert_build_tx(tx, key, holder, &now).await?;
            return Ok(won.then(|| claimed(1)));
        }
        Some(b) if b.state == BuildState::Building && b.expires_at_ms <= now_ms() => b,
        // Decided again on what this transaction reads: a re-run's sibling that failed
        // the retry in the meantime is not retried once more.
        Some(b)
            if b.state == BuildState::Failed
                && (retry || is_rerun(Some(b), holder.provenance))
                && files.is_empty() =>
        {
            b
        }
        // Ready, but its files are gone from the index: build it again.
        Some(b) if b.state == BuildState::Ready && files.is_empty() => b,
        _ => return Ok(Some(status_of(build.as_ref(), files))),
    };
    let won = Db::reclaim_build_tx(tx, takeover.id, &takeover.lease_id, holder, &now).await?;
    if won && takeover.state == BuildState::Building {
        tracing::warn!(
            project.name = %key.project,
            release.version = %key.version,
            build.previous_builder = %takeover.builder,
            "build lease expired without a heartbeat; handing it to a new builder"
        );
    }
    Ok(won.then(|| claimed(takeover.attempt + 1)))
}

/// Waits up to `timeout` for a release's build to change from `building` (or for its
/// lease to lapse), then answers its state.
async fn wait(
    db: &Db,
    index: &Index,
    (release, target): (&Release, Option<&BuildTarget>),
    timeout: Duration,
    stopping: &tokio_util::sync::CancellationToken,
) -> Result<BuildStatus, ServiceError> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout.min(MAX_WAIT);
    let stamps = db.stamps();
    let waited = |status| {
        crate::metrics::metrics()
            .build_wait_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(status)
    };
    loop {
        // Registered before the read, so a commit between the read and the sleep still
        // wakes this poll (a commit here or, on PostgreSQL, on any other replica).
        let notified = stamps.woken().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let status = observe(db, index, release, target).await?;
        let lapses_in = match &status {
            BuildStatus::Building { expires_at_ms, .. } => {
                let left = expires_at_ms - now_ms();
                if left <= 0 {
                    return waited(status);
                }
                Duration::from_millis(u64::try_from(left).unwrap_or(0))
            }
            _ => return waited(status),
        };
        let now = tokio::time::Instant::now();
        // A server shutting down answers what it knows; the waiter polls again (another
        // replica, or this one restarted).
        if now >= deadline || stopping.is_cancelled() {
            return waited(status);
        }
        // Woken by the change; the timer only covers a listener that is down.
        let poll = if stamps.is_live() {
            SAFETY_POLL
        } else {
            POLL_INTERVAL
        };
        let nap = poll.min(deadline - now).min(lapses_in);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(nap) => {}
            () = stopping.cancelled() => {}
        }
    }
}

fn lease_lost(index: &Index, release: &Release, build: Option<&BuildRecord>) -> ServiceError {
    let now_held = match build {
        Some(b) if b.state == BuildState::Building => {
            format!("; it is now held by {} (attempt {})", b.builder, b.attempt)
        }
        Some(b) => format!("; the build is now `{}`", b.state.as_str()),
        None => String::new(),
    };
    ServiceError::Conflict(format!(
        "the build lease for {release} on `{}` is no longer yours (it expired without a heartbeat or was completed){now_held}",
        index.name
    ))
}

/// Extends the caller's lease by `ttl`, answering it as `Claimed`; `Conflict` if the lease
/// is no longer theirs.
pub async fn heartbeat(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    (release, target): (&Release, Option<&BuildTarget>),
    lease_id: &str,
    ttl: Duration,
) -> Result<BuildStatus, ServiceError> {
    let (index, _) = leased_index(db, caller, name).await?;
    let index = &index;
    let expires_at_ms = lease_expiry(ttl);
    let key = key(release, index, target);
    let Some(attempt) = db
        .extend_lease(key, lease_id, expires_at_ms, &now_rfc3339())
        .await?
    else {
        let build = db.find_build(key).await?;
        return Err(lease_lost(index, release, build.as_ref()));
    };
    Ok(BuildStatus::Claimed {
        lease_id: lease_id.to_owned(),
        expires_at_ms,
        attempt,
    })
}

/// Marks a leased build finished: `Ready` with the files uploaded under it.
pub async fn complete(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    (release, target): (&Release, Option<&BuildTarget>),
    lease_id: &str,
) -> Result<BuildStatus, ServiceError> {
    let (index, principal) = leased_index(db, caller, name).await?;
    let index = &index;
    let key = key(release, index, target);
    let mut tx = db.begin_write().await?;
    // The files uploaded under the lease are read, then the build is marked ready: no
    // upload of the project lands in between.
    tx.lock(Lock::Project(key.index_id, key.project)).await?;
    tx.changed(Change::Builds(key.index_id, key.project.to_owned()));
    let build = Db::find_build_tx(&mut tx, key).await?;
    let Some(held) = build
        .as_ref()
        .filter(|b| b.lease_id == lease_id && b.state == BuildState::Building)
    else {
        return Err(lease_lost(index, release, build.as_ref()));
    };
    // Only what was uploaded under this lease makes a per-target build ready.
    let files = build_files(
        key.version,
        target,
        Some(held),
        Db::own_project_files_tx(&mut tx, key.index_id, key.project).await?,
    );
    if files.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "cannot complete the build of {release} on `{}`: no file of that release was uploaded under the lease",
            index.name
        )));
    }
    if !Db::finish_build_tx(
        &mut tx,
        key,
        lease_id,
        BuildState::Ready,
        None,
        &now_rfc3339(),
    )
    .await?
    {
        let build = Db::find_build_tx(&mut tx, key).await?;
        return Err(lease_lost(index, release, build.as_ref()));
    }
    let build = Db::find_build_tx(&mut tx, key).await?;
    let now = now_rfc3339();
    super::webhooks::notify_tx(
        db,
        &mut tx,
        super::webhooks::Notice {
            event: WebhookEvent::BuildReady,
            index: &index.name,
            project: key.project,
            version: &release.version.to_string(),
            actor: &principal.name,
            at: &now,
            detail: build_detail(
                build.as_ref(),
                target,
                serde_json::json!({
                    "files": files.iter().map(|f| serde_json::json!({ "filename": f.filename, "sha256": f.sha256 })).collect::<Vec<_>>(),
                }),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        index.name = %index.name,
        project.name = %release.project,
        release.version = %release.version_str(),
        files = files.len(),
        "build ready"
    );
    Ok(BuildStatus::Ready {
        files,
        provenance: build.and_then(|b| b.provenance),
    })
}

/// Marks a leased build failed, keeping the tail of its output for every waiter, and
/// answers the release's state.
pub async fn fail(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    (release, target): (&Release, Option<&BuildTarget>),
    lease_id: &str,
    error_tail: &str,
) -> Result<BuildStatus, ServiceError> {
    let (index, principal) = leased_index(db, caller, name).await?;
    let index = &index;
    let key = key(release, index, target);
    let kept = tail(error_tail, MAX_ERROR_TAIL);
    let now = now_rfc3339();
    let mut tx = db.begin_write().await?;
    tx.changed(Change::Builds(key.index_id, key.project.to_owned()));
    if !Db::finish_build_tx(&mut tx, key, lease_id, BuildState::Failed, Some(kept), &now).await? {
        let build = Db::find_build_tx(&mut tx, key).await?;
        return Err(lease_lost(index, release, build.as_ref()));
    }
    // The event, in the same transaction: the events page, the feeds and (later)
    // webhooks show a failed build with the end of its output.
    let build = Db::find_build_tx(&mut tx, key).await?;
    let version = release.version.to_string();
    super::webhooks::record_event_tx(
        db,
        &mut tx,
        &crate::db::NewEvent {
            kind: crate::domain::EventKind::BuildFailed,
            index: Some(&index.name),
            project: Some(key.project),
            version: Some(&version),
            actor: &principal.name,
            at: &now,
            detail: build_detail(
                build.as_ref(),
                target,
                serde_json::json!({ "error_tail": tail(kept, FAILED_EVENT_TAIL) }),
            ),
        },
        WebhookEvent::BuildFailed,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(
        index.name = %index.name,
        project.name = %release.project,
        release.version = %release.version_str(),
        "build failed"
    );
    observe(db, index, release, target).await
}

/// What a build's event and webhook say of it: who built which attempt from which
/// commit for which target, and `extra`.
fn build_detail(
    build: Option<&BuildRecord>,
    target: Option<&BuildTarget>,
    extra: serde_json::Value,
) -> serde_json::Value {
    let detail = serde_json::json!({
        "builder": build.map(|b| b.builder.as_str()),
        "attempt": build.map(|b| b.attempt),
        "commit": build.and_then(|b| b.source_commit.as_ref()).map(ToString::to_string),
        "target": target.map(ToString::to_string),
    });
    super::merged(detail, extra)
}

/// Refuses an upload that would race or mix with a leased build: while a release is
/// `building`, only the lease holder may upload its files, and a release that has a build
/// (ready or failed) takes no hand-uploaded files — a version names one source. Runs
/// inside the upload's write transaction; answers the build the upload belongs to.
pub async fn check_upload_lease(
    tx: &mut WriteTx,
    index: &Index,
    project: &ProjectName,
    version: &Version,
    lease_id: Option<&str>,
) -> Result<Option<BuildRecord>, ServiceError> {
    let canonical = canonical(version);
    let key = BuildKey {
        index_id: index.id,
        project: project.as_str(),
        version: &canonical,
        target: None,
    };
    // The lease names its build, whichever target it is for; a hand upload is judged by
    // the release's first build (a per-target build exists only after it).
    let build = match lease_id {
        Some(lease) => Db::find_build_by_lease_tx(tx, key, lease).await?,
        None => Db::find_build_tx(tx, key).await?,
    };
    match (build, lease_id) {
        (Some(b), Some(lease)) if b.state == BuildState::Building && b.lease_id == lease => {
            Ok(Some(b))
        }
        (Some(b), None) if b.state == BuildState::Building => Err(ServiceError::Conflict(format!(
            "`{project} {version}` is being built for `{}` by {} under a build lease; only that build may upload it",
            index.name, b.builder
        ))),
        (Some(b), None) => Err(ServiceError::Conflict(format!(
            "`{project} {version}` on `{}` comes from a build lease ({}{}); a hand upload cannot add files to it, because a version names one source: upload under a new version",
            index.name,
            b.state.as_str(),
            b.source_commit
                .as_ref()
                .map(|c| format!(", commit {c}"))
                .unwrap_or_default()
        ))),
        (None, None) => Ok(None),
        (_, Some(_)) => Err(ServiceError::Conflict(format!(
            "the build lease for `{project} {version}` on `{}` is no longer yours (it expired without a heartbeat, was taken over, or was completed); this upload was refused so two builds of one release cannot both be published",
            index.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_at_a_char_boundary() {
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 3), "llo");
        // 'é' is two bytes; cutting inside it moves forward
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }

    #[test]
    fn releases_normalize() {
        let release = Release::parse("My_Pkg", "1.04.0057").unwrap();
        assert_eq!(release.project.as_str(), "my-pkg");
        assert_eq!(release.version_str(), "1.4.57");
        assert_eq!(Release::parse("p", "1.0.0").unwrap().version_str(), "1");
        assert_eq!(
            Release::parse("p", "2.0.0rc1").unwrap().version_str(),
            "2rc1"
        );
        assert!(Release::parse("p", "1.0").unwrap().matches("1.0.0"));
        assert!(Release::parse("pkg", "not a version").is_err());
    }
}
