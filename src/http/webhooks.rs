//! Webhooks: `POST /+api/v1/webhooks`, `GET /+api/v1/webhooks`,
//! `DELETE /+api/v1/webhooks/{id}`, `GET /+api/v1/webhooks/{id}/deliveries`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::indexes::ApiJson;
use crate::api::WebhookRequest;
use crate::app::AppState;
use crate::service::auth::Caller;
use crate::service::webhooks;

/// `POST /+api/v1/webhooks`: 201 with the signing secret, which is never shown again.
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<WebhookRequest>,
) -> Result<Response, ApiError> {
    let created = webhooks::create(&state.db, &state.webhooks, &caller, &request).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /+api/v1/webhooks`: the subscriptions the caller may manage.
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    Ok(Json(webhooks::list(&state.db, &caller).await?).into_response())
}

/// `DELETE /+api/v1/webhooks/{id}`: removes it and its delivery log.
pub async fn remove_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(webhooks::remove(&state.db, &caller, parse_id(&id)?).await?).into_response())
}

/// Query of the delivery log.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// How many of the newest deliveries (default 50, at most 500).
    limit: Option<u32>,
}

/// `GET /+api/v1/webhooks/{id}/deliveries`: the newest deliveries, newest first.
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(webhooks::deliveries(&state.db, &caller, id, query.limit).await?).into_response())
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "webhook id `{}` is not a number",
            id.escape_debug()
        ))
    })
}
