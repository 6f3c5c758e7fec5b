//! Mirror caches: `GET /+api/v1/mirrors/{ns}/{name}` (what is cached),
//! `POST …/{project}/refresh` (ask the upstream now) and `DELETE …/{project}` (purge).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::IndexPath;
use crate::api::{CachedProject, MirrorCacheView, PurgeView, RefreshView};
use crate::app::AppState;
use crate::domain::ProjectName;
use crate::service::auth::Caller;
use crate::service::mirror::Mirrors;

fn project_param(raw: &str) -> Result<ProjectName, ApiError> {
    ProjectName::new(raw).map_err(|e| ApiError::bad_request(format!("project `{raw}`: {e}")))
}

/// `GET /+api/v1/mirrors/{ns}/{name}`
pub async fn show_cache(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (index, settings, rows) = Mirrors::cache(&state.db, &caller, &name).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let ttl_ms = i64::try_from(settings.ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let projects = rows
        .into_iter()
        .map(|row| CachedProject {
            fresh: now - row.fetched_at_ms < ttl_ms,
            fetched_at: chrono::DateTime::from_timestamp_millis(row.fetched_at_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            project: row.project,
            status: row.status.to_string(),
            files: row.files,
            cached_files: row.cached_files,
            cached_bytes: row.cached_bytes,
        })
        .collect();
    Ok(Json(MirrorCacheView {
        mirror: index.name.to_string(),
        upstream: settings.url,
        ttl_seconds: settings.ttl_seconds,
        projects,
    })
    .into_response())
}

/// `POST /+api/v1/mirrors/{ns}/{name}/{project}/refresh`
pub async fn refresh_project(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    Path((_, _, raw_project)): Path<(String, String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let project = project_param(&raw_project)?;
    let listing = state
        .mirrors
        .refresh_now(&state.db, &caller, &name, &project)
        .await?;
    Ok(Json(RefreshView {
        project: project.to_string(),
        files: listing.files.len(),
        stale: listing.stale,
    })
    .into_response())
}

/// `DELETE /+api/v1/mirrors/{ns}/{name}/{project}`
pub async fn purge_project(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    Path((_, _, raw_project)): Path<(String, String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let project = project_param(&raw_project)?;
    let deleted_blobs = Mirrors::purge(&state.db, &state.storage, &caller, &name, &project).await?;
    Ok(Json(PurgeView {
        project: project.to_string(),
        deleted_blobs,
    })
    .into_response())
}
