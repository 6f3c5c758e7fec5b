//! Removal, the trash and garbage collection:
//! `POST /+api/v1/releases/{ns}/{name}/{project}/{version}/remove`, `GET /+api/v1/trash`,
//! `POST /+api/v1/trash/{id}/restore`, `POST /+api/v1/gc`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::ReleasePath;
use super::indexes::ApiJson;
use crate::api::{
    BranchCleanupView, BranchesBody, GcBody, GcReport, RemoveBody, RemovedBranchView,
    RetentionView, SkippedView, TrashView,
};
use crate::app::AppState;
use crate::db::TrashRecord;
use crate::domain::IndexName;
use crate::service::auth::Caller;
use crate::service::retention::{Branches, clean_branches};
use crate::service::{gc, trash};

/// `POST …/remove`: the trash entry the release (or file) went into.
pub async fn remove_release(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<RemoveBody>,
) -> Result<Response, ApiError> {
    let removal = trash::Removal {
        release: &release,
        file: body.file.as_deref(),
        reason: &body.reason,
        keep_for: state.config.gc.trash_for,
    };
    let entry = trash::remove(&state.db, &caller, &index_name, &removal).await?;
    Ok(Json(view(&index_name, &entry)).into_response())
}

/// Query of the trash list.
#[derive(Debug, Deserialize)]
pub struct TrashQuery {
    /// Only this index's trash.
    index: Option<IndexName>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /+api/v1/trash`: entries of the indexes the caller may read, newest first.
pub async fn list_trash(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TrashQuery>,
) -> Result<Response, ApiError> {
    let entries = trash::list(
        &state.db,
        &caller,
        query.index.as_ref(),
        query.limit.unwrap_or(100),
    )
    .await?;
    let views: Vec<TrashView> = entries.iter().map(|(name, e)| view(name, e)).collect();
    Ok(Json(views).into_response())
}

/// `POST /+api/v1/trash/{id}/restore`: the entry whose files are back.
pub async fn restore_trash(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (name, entry) = trash::restore(&state.db, &caller, trash_id(&id)?).await?;
    Ok(Json(view(&name, &entry)).into_response())
}

/// `POST /+api/v1/trash/{id}/release`: the entry, released for good.
pub async fn release_trash(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (name, entry) = trash::release_now(&state.db, &caller, trash_id(&id)?).await?;
    Ok(Json(view(&name, &entry)).into_response())
}

fn trash_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "trash entry id `{}` is not a number",
            id.escape_debug()
        ))
    })
}

/// `POST /+api/v1/gc`: collects now (or counts, with `dry_run`).
pub async fn collect_garbage(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<GcBody>,
) -> Result<Response, ApiError> {
    let outcome = gc::run_by_hand(
        &state.db,
        &state.storage,
        &caller,
        body.dry_run,
        gc::GcSettings {
            grace: state.config.gc.grace,
            trash_for: state.config.gc.trash_for,
            retention: &state.config.policies.retention,
        },
        &state.replica,
    )
    .await?;
    Ok(Json(GcReport {
        dry_run: outcome.dry_run,
        retention: outcome
            .retention
            .iter()
            .map(|p| RetentionView {
                rule: p.rule.clone(),
                index: p.index.name.to_string(),
                project: p.release.as_ref().map(|(project, _)| project.to_string()),
                version: p.release.as_ref().map(|(_, version)| version.clone()),
                bytes: p.bytes,
                reason: p.why.clone(),
            })
            .collect(),
        released: outcome
            .released
            .iter()
            .map(|(name, e)| view(name, e))
            .collect(),
        blobs: outcome.blobs,
        blob_bytes: outcome.blob_bytes,
        orphans: outcome.orphans,
        orphan_bytes: outcome.orphan_bytes,
        leftovers: outcome.leftovers,
        leftover_bytes: outcome.leftover_bytes,
        freed_bytes: outcome.freed_bytes(),
        seconds: outcome.elapsed.as_secs_f64(),
    })
    .into_response())
}

/// `POST /+api/v1/branches/{ns}/gone`: the branch indexes of these branches go.
pub async fn branches_gone(
    State(state): State<AppState>,
    caller: Caller,
    Path(namespace): Path<String>,
    ApiJson(body): ApiJson<BranchesBody>,
) -> Result<Response, ApiError> {
    cleanup(
        &state,
        &caller,
        &namespace,
        Branches::Gone(&body.branches),
        body.dry_run,
    )
    .await
}

/// `POST /+api/v1/branches/{ns}/keep`: every branch index of another branch goes.
pub async fn branches_keep(
    State(state): State<AppState>,
    caller: Caller,
    Path(namespace): Path<String>,
    ApiJson(body): ApiJson<BranchesBody>,
) -> Result<Response, ApiError> {
    cleanup(
        &state,
        &caller,
        &namespace,
        Branches::Only(&body.branches),
        body.dry_run,
    )
    .await
}

async fn cleanup(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
    branches: Branches<'_>,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let done = clean_branches(
        &state.db,
        caller,
        namespace,
        branches,
        state.config.gc.trash_for,
        dry_run,
    )
    .await?;
    Ok(Json(BranchCleanupView {
        dry_run: done.dry_run,
        removed: done
            .removed
            .iter()
            .map(|(index, entry)| RemovedBranchView {
                index: index.name.to_string(),
                branch: index.settings.branch.clone().unwrap_or_default(),
                trash: entry.as_ref().map(|e| e.id),
            })
            .collect(),
        skipped: done
            .skipped
            .iter()
            .map(|(index, reason)| SkippedView {
                index: index.to_string(),
                reason: reason.clone(),
            })
            .collect(),
    })
    .into_response())
}

/// `GET /+api/v1/export`: every row as JSON lines, from one snapshot.
pub async fn export(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let receiver = crate::service::transfer::export_lines(&state.db, &caller)?;
    let lines = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        let item = line
            .map(|l| bytes::Bytes::from(format!("{l}\n")))
            .map_err(std::io::Error::other);
        Some((item, receiver))
    });
    let mut response = Response::new(axum::body::Body::from_stream(lines));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/jsonl"),
    );
    Ok(response)
}

/// `GET /+api/v1/export/blobs/{sha256}`: one blob's bytes.
pub async fn export_blob(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    let digest: crate::domain::Sha256Digest = sha256.parse().map_err(|e| {
        ApiError::bad_request(format!("`{}` is not a sha256: {e}", sha256.escape_debug()))
    })?;
    let stream = crate::service::transfer::export_blob(&state.storage, &caller, &digest).await?;
    Ok(Response::new(axum::body::Body::from_stream(stream)))
}

fn view(index: &IndexName, e: &TrashRecord) -> TrashView {
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(
            || ms.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    };
    TrashView {
        id: e.id,
        index: index.to_string(),
        kind: e.kind,
        project: e.project.as_ref().map(ToString::to_string),
        version: e.version.clone(),
        file: e.filename.clone(),
        files: e.files.clone(),
        bytes: e.bytes,
        reason: e.reason.clone(),
        removed_by: e.removed_by.clone(),
        removed_at: at(e.removed_at_ms),
        expires_at: at(e.expires_at_ms),
    }
}
