//! The build lease API under `/+api/v1/builds/{ns}/{name}/{project}/{version}`.
//!
//! `POST` claims, `GET ?wait=SECS` long-polls, and `…/heartbeat`, `…/complete`, `…/fail`
//! move a lease the caller holds. The lease secret travels in bodies, never in URLs, so it
//! does not land in access logs.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::ReleasePath;
use super::indexes::ApiJson;
use crate::app::AppState;
use crate::db::FileRecord;
use crate::domain::IndexName;
use crate::service::auth::Caller;
use crate::service::builds::{self, BuildStatus, Release, now_ms};

/// A file of a release, as build and status answers list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFile {
    /// The filename.
    pub filename: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// Server-relative download URL.
    pub url: String,
}

impl ReleaseFile {
    /// The view of a file row listed on `index`.
    #[must_use]
    pub fn of(index: &IndexName, file: &FileRecord) -> Self {
        Self {
            url: format!("/{index}/+f/{}/{}", file.sha256, file.filename),
            filename: file.filename.clone(),
            sha256: file.sha256.clone(),
            size: file.size,
        }
    }
}

/// A build's state as the API shows it; `state` names the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BuildStateView {
    /// Nothing built or uploaded yet.
    Absent,
    /// Use these files.
    Ready {
        /// The index's own files of the release.
        files: Vec<ReleaseFile>,
    },
    /// You hold the lease: build, heartbeat, upload with `X-Kiln-Lease`, complete.
    Claimed {
        /// The lease secret.
        lease_id: String,
        /// Milliseconds until the lease lapses without a heartbeat (relative, so runner
        /// clocks do not matter).
        expires_in_ms: i64,
        /// The server's lease length; heartbeat well within it.
        lease_ttl_ms: u64,
        /// Which attempt this is.
        attempt: i64,
    },
    /// Someone else builds; long-poll and claim again.
    Building {
        /// Who.
        builder: String,
        /// Milliseconds until their lease lapses without a heartbeat.
        expires_in_ms: i64,
        /// Which attempt.
        attempt: i64,
    },
    /// The build failed.
    Failed {
        /// Who built it.
        builder: String,
        /// The tail of the build output.
        error_tail: String,
        /// Which attempt failed.
        attempt: i64,
    },
}

/// A build answer: the release and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildView {
    /// The index the release is built into.
    pub index: String,
    /// Normalized project name.
    pub project: String,
    /// Normalized version.
    pub version: String,
    /// Where the build stands.
    #[serde(flatten)]
    pub status: BuildStateView,
}

pub(crate) fn view(
    index: &IndexName,
    release: &Release,
    status: BuildStatus,
    ttl: Duration,
) -> BuildView {
    let status = match status {
        BuildStatus::Absent => BuildStateView::Absent,
        BuildStatus::Ready { files } => BuildStateView::Ready {
            files: files.iter().map(|f| ReleaseFile::of(index, f)).collect(),
        },
        BuildStatus::Claimed {
            lease_id,
            expires_at_ms,
            attempt,
        } => BuildStateView::Claimed {
            lease_id,
            expires_in_ms: expires_at_ms - now_ms(),
            lease_ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            attempt,
        },
        BuildStatus::Building {
            builder,
            expires_at_ms,
            attempt,
        } => BuildStateView::Building {
            builder,
            expires_in_ms: expires_at_ms - now_ms(),
            attempt,
        },
        BuildStatus::Failed {
            builder,
            error_tail,
            attempt,
        } => BuildStateView::Failed {
            builder,
            error_tail,
            attempt,
        },
    };
    BuildView {
        index: index.to_string(),
        project: release.project.to_string(),
        version: release.version.to_string(),
        status,
    }
}

/// Body of a claim.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBuild {
    /// Who is asking (runner, CI job); shown to waiters.
    #[serde(default)]
    pub builder: String,
    /// Claim a failed build again instead of reporting its failure.
    #[serde(default)]
    pub retry: bool,
}

/// Body of heartbeat and complete.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// The lease secret from the claim.
    pub lease_id: String,
    /// For `fail`: the tail of the build output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_tail: Option<String>,
}

/// Query of a long poll.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Seconds to wait for a `building` release to change (at most 60).
    #[serde(default)]
    wait: Option<f64>,
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}`
pub async fn claim_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<ClaimBuild>,
) -> Result<Response, ApiError> {
    let ttl = state.config.build_lease_ttl;
    let status = builds::claim(
        &state.db,
        &caller,
        &index_name,
        &release,
        &body.builder,
        body.retry,
        ttl,
    )
    .await?;
    Ok(Json(view(&index_name, &release, status, ttl)).into_response())
}

/// `GET /+api/v1/builds/{ns}/{name}/{project}/{version}[?wait=SECS]`
pub async fn show_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = query
        .wait
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .map(|secs| Duration::from_secs_f64(secs.min(builds::MAX_WAIT.as_secs_f64())));
    let status = builds::status(&state.db, &caller, &index_name, &release, wait).await?;
    let ttl = state.config.build_lease_ttl;
    Ok(Json(view(&index_name, &release, status, ttl)).into_response())
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}/heartbeat`
pub async fn heartbeat_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let ttl = state.config.build_lease_ttl;
    let status = builds::heartbeat(
        &state.db,
        &caller,
        &index_name,
        &release,
        &body.lease_id,
        ttl,
    )
    .await?;
    Ok(Json(view(&index_name, &release, status, ttl)).into_response())
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}/complete`
pub async fn complete_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let status =
        builds::complete(&state.db, &caller, &index_name, &release, &body.lease_id).await?;
    let ttl = state.config.build_lease_ttl;
    Ok(Json(view(&index_name, &release, status, ttl)).into_response())
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}/fail`
pub async fn fail_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let error_tail = body.error_tail.unwrap_or_default();
    let status = builds::fail(
        &state.db,
        &caller,
        &index_name,
        &release,
        &body.lease_id,
        &error_tail,
    )
    .await?;
    let ttl = state.config.build_lease_ttl;
    Ok(Json(view(&index_name, &release, status, ttl)).into_response())
}
