//! Promotions, yanks and events: `POST /+api/v1/promotions`, `GET /+api/v1/promotions`,
//! `POST /+api/v1/releases/{ns}/{name}/{project}/{version}/yank` (and `/unyank`),
//! `GET /+api/v1/events`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Caller, ReleasePath, User, check_read};
use super::indexes::ApiJson;
use crate::app::AppState;
use crate::domain::IndexName;
use crate::service::promote::{self, PromoteRequest, PromotionResult, PromotionView};
use crate::service::{ServiceError, indexes};

/// `POST /+api/v1/promotions`: 200 when promoted (or already, or a passing dry run), 409
/// with every failing check when the policy refuses.
pub async fn promote_release(
    State(state): State<AppState>,
    User(principal): User,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> Result<Response, ApiError> {
    let outcome = promote::promote(&state.db, &state.config.policies, &principal, &request).await?;
    let status = if outcome.result == PromotionResult::Refused {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome)).into_response())
}

/// Query of the promotions list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only promotions into this index.
    index: Option<IndexName>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /+api/v1/promotions[?index=ns/name]`, newest first.
pub async fn list_promotions(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let target = match &query.index {
        Some(name) => {
            check_read(&state, caller.principal(), name).await?;
            Some(indexes::get_index(&state.db, name).await?.id)
        }
        None => None,
    };
    let readable = readable_names(&state, caller.principal()).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .db
        .list_promotions(target, limit)
        .await
        .map_err(ServiceError::from)?;
    let views: Vec<PromotionView> = rows
        .into_iter()
        .filter(|p| readable.contains(&p.target))
        .map(PromotionView::from)
        .collect();
    Ok(Json(views).into_response())
}

/// The names of the indexes the caller may read.
async fn readable_names(
    state: &AppState,
    caller: Option<&crate::service::auth::Principal>,
) -> Result<std::collections::HashSet<String>, ApiError> {
    Ok(crate::service::auth::readable_indexes(&state.db, caller)
        .await?
        .into_iter()
        .map(|i| i.name.to_string())
        .collect())
}

/// Body of a yank.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YankBody {
    /// Why (shown by pip to whoever installs the pinned version).
    pub reason: String,
}

/// The answer to a yank or unyank.
#[derive(Debug, Serialize, Deserialize)]
pub struct YankView {
    /// The index.
    pub index: String,
    /// The files whose flag changed.
    pub files: Vec<String>,
    /// True after a yank, false after an unyank.
    pub yanked: bool,
}

/// `POST /+api/v1/releases/{ns}/{name}/{project}/{version}/yank`
pub async fn yank_release(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    User(principal): User,
    ApiJson(body): ApiJson<YankBody>,
) -> Result<Response, ApiError> {
    let index = indexes::get_index(&state.db, &index_name).await?;
    promote::authorize_yank(&index, &principal)?;
    let files =
        promote::set_yank(&state.db, &index, &release, &principal, Some(&body.reason)).await?;
    Ok(Json(YankView {
        index: index_name.to_string(),
        files,
        yanked: true,
    })
    .into_response())
}

/// `POST /+api/v1/releases/{ns}/{name}/{project}/{version}/unyank`
pub async fn unyank_release(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    User(principal): User,
) -> Result<Response, ApiError> {
    let index = indexes::get_index(&state.db, &index_name).await?;
    promote::authorize_yank(&index, &principal)?;
    let files = promote::set_yank(&state.db, &index, &release, &principal, None).await?;
    Ok(Json(YankView {
        index: index_name.to_string(),
        files,
        yanked: false,
    })
    .into_response())
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    /// Read events after this id to follow the stream.
    pub id: i64,
    /// `promotion`, `refusal`, `yank` or `unyank`.
    pub kind: String,
    /// The index concerned.
    pub index: String,
    /// Project.
    pub project: String,
    /// Version.
    pub version: String,
    /// Who.
    pub actor: String,
    /// When.
    pub at: String,
    /// What happened.
    pub detail: serde_json::Value,
}

/// Query of the events list.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events of this index.
    index: Option<IndexName>,
    /// Only events after this id.
    after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /+api/v1/events[?index=ns/name][&after=ID]`, oldest first.
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    if let Some(index) = &query.index {
        check_read(&state, caller.principal(), index).await?;
    }
    let index = query.index.as_ref().map(ToString::to_string);
    let readable = readable_names(&state, caller.principal()).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut after = query.after.unwrap_or(0);
    let mut rows = Vec::new();
    // Skip what the caller may not read without ending the page early: a follower that
    // saw a short page would think it had caught up.
    loop {
        let batch = state
            .db
            .list_events(index.as_deref(), after, limit)
            .await
            .map_err(ServiceError::from)?;
        let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) == limit;
        after = batch.last().map_or(after, |e| e.id);
        rows.extend(
            batch
                .into_iter()
                .filter(|e| readable.contains(&e.index_name)),
        );
        if !full || i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit {
            break;
        }
    }
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let views: Vec<EventView> = rows
        .into_iter()
        .map(|e| EventView {
            id: e.id,
            kind: e.kind,
            index: e.index_name,
            project: e.project,
            version: e.version,
            actor: e.actor,
            at: e.at,
            detail: serde_json::from_str(&e.detail).unwrap_or_default(),
        })
        .collect();
    Ok(Json(views).into_response())
}
