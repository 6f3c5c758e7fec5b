//! Promotions, yanks and events: `POST /+api/v1/promotions`, `GET /+api/v1/promotions`,
//! `POST /+api/v1/releases/{ns}/{name}/{project}/{version}/yank` (and `/unyank`),
//! `GET /+api/v1/events`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::ReleasePath;
use super::indexes::ApiJson;
use crate::api::{
    EventView, EventsQuery, ListQuery, PromoteRequest, PromotionResult, YankBody, YankView,
};
use crate::app::AppState;
use crate::service::auth::Caller;
use crate::service::promote;

/// `POST /+api/v1/promotions`: 200 when promoted (or already, or a passing dry run), 409
/// with every failing check when the policy refuses.
pub async fn promote_release(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> Result<Response, ApiError> {
    let outcome = promote::promote(state.promoter(), &caller, &request).await?;
    let status = if outcome.result == PromotionResult::Refused {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome)).into_response())
}

/// `GET /+api/v1/promotions[?index=ns/name]`, newest first.
pub async fn list_promotions(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100);
    let views = promote::list_promotions(&state.db, &caller, query.index.as_ref(), limit).await?;
    Ok(Json(views).into_response())
}

/// `POST /+api/v1/releases/{ns}/{name}/{project}/{version}/yank`
pub async fn yank_release(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
    ApiJson(body): ApiJson<YankBody>,
) -> Result<Response, ApiError> {
    let files = promote::set_yank(
        &state.db,
        &caller,
        &index_name,
        &release,
        Some(&body.reason),
    )
    .await?;
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
    caller: Caller,
) -> Result<Response, ApiError> {
    let files = promote::set_yank(&state.db, &caller, &index_name, &release, None).await?;
    Ok(Json(YankView {
        index: index_name.to_string(),
        files,
        yanked: false,
    })
    .into_response())
}

/// `GET /+api/v1/events[?index=ns/name][&after=ID]`, oldest first.
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let rows = promote::list_events(
        &state.db,
        &caller,
        query.index.as_ref(),
        query.after.unwrap_or(0),
        query.limit.unwrap_or(100),
    )
    .await?;
    let views: Vec<EventView> = rows
        .into_iter()
        .map(|e| EventView {
            id: e.id,
            kind: e.kind,
            index: e.index.map(|i| i.to_string()),
            project: e.project.map(|p| p.to_string()),
            version: e.version,
            actor: e.actor,
            at: e.at,
            detail: e.detail,
        })
        .collect();
    Ok(Json(views).into_response())
}
