//! The build lease API under `/+api/v1/builds/{ns}/{name}/{project}/{version}`.
//!
//! `POST` claims, `GET ?wait=SECS` long-polls, and `…/heartbeat`, `…/complete`, `…/fail`
//! move a lease the caller holds. The lease secret travels in bodies, never in URLs, so it
//! does not land in access logs.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::ReleasePath;
use super::indexes::ApiJson;
use crate::api::{BuildStateView, BuildView, ClaimBuild, LeaseBody, ReleaseFile, WaitQuery};
use crate::app::AppState;
use crate::db::FileRecord;
use crate::domain::Release;
use crate::domain::{BuildTarget, IndexName};
use crate::service::auth::Caller;
use crate::service::builds::{self, BuildStatus, now_ms};

impl ReleaseFile {
    /// The view of a file row listed on `index`.
    #[must_use]
    pub fn of(index: &IndexName, file: &FileRecord) -> Self {
        Self {
            url: format!("/{index}/+f/{}/{}", file.sha256, file.filename),
            filename: file.filename.clone(),
            sha256: file.sha256.to_string(),
            size: file.size,
            provenance: file.provenance.clone(),
        }
    }
}

pub(crate) fn view(
    index: &IndexName,
    (release, target): (&Release, Option<&BuildTarget>),
    status: BuildStatus,
    ttl: Duration,
) -> BuildView {
    let mut shown = None;
    let status = match status {
        BuildStatus::Absent => BuildStateView::Absent,
        BuildStatus::Ready { files, provenance } => {
            shown = provenance;
            BuildStateView::Ready {
                files: files.iter().map(|f| ReleaseFile::of(index, f)).collect(),
            }
        }
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
            provenance,
        } => {
            shown = provenance;
            BuildStateView::Building {
                builder,
                expires_in_ms: expires_at_ms - now_ms(),
                attempt,
            }
        }
        BuildStatus::Failed {
            builder,
            error_tail,
            attempt,
            provenance,
        } => {
            shown = provenance;
            BuildStateView::Failed {
                builder,
                error_tail,
                attempt,
            }
        }
    };
    BuildView {
        index: index.to_string(),
        project: release.project.to_string(),
        version: release.version.to_string(),
        status,
        provenance: shown,
        target: target.cloned(),
    }
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}`
pub async fn claim_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<ClaimBuild>,
) -> Result<Response, ApiError> {
    let ttl = state.config.build_lease_ttl;
    let status = builds::claim(&state.db, &caller, &index_name, &release, &body, ttl).await?;
    let shown = (&release, body.target.as_ref());
    Ok(Json(view(&index_name, shown, status, ttl)).into_response())
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
    let shown = (&release, query.target.as_ref());
    let wait = wait.map(|timeout| (timeout, &state.stopping));
    let status = builds::status(&state.db, &caller, &index_name, shown, wait).await?;
    let ttl = state.config.build_lease_ttl;
    Ok(Json(view(&index_name, shown, status, ttl)).into_response())
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}/heartbeat`
pub async fn heartbeat_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let ttl = state.config.build_lease_ttl;
    let shown = (&release, body.target.as_ref());
    let status =
        builds::heartbeat(&state.db, &caller, &index_name, shown, &body.lease_id, ttl).await?;
    Ok(Json(view(&index_name, shown, status, ttl)).into_response())
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}/complete`
pub async fn complete_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let shown = (&release, body.target.as_ref());
    let status = builds::complete(&state.db, &caller, &index_name, shown, &body.lease_id).await?;
    let ttl = state.config.build_lease_ttl;
    Ok(Json(view(&index_name, shown, status, ttl)).into_response())
}

/// `POST /+api/v1/builds/{ns}/{name}/{project}/{version}/fail`
pub async fn fail_build(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<LeaseBody>,
) -> Result<Response, ApiError> {
    let error_tail = body.error_tail.unwrap_or_default();
    let shown = (&release, body.target.as_ref());
    let status = builds::fail(
        &state.db,
        &caller,
        &index_name,
        shown,
        &body.lease_id,
        &error_tail,
    )
    .await?;
    let ttl = state.config.build_lease_ttl;
    Ok(Json(view(&index_name, shown, status, ttl)).into_response())
}
