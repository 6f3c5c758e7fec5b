//! Tokens: `POST /+api/v1/tokens`, `GET /+api/v1/tokens`, `DELETE /+api/v1/tokens/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::indexes::ApiJson;
use crate::api::TokenRequest;
use crate::app::AppState;
use crate::service::auth::{self, Caller};

/// `POST /+api/v1/tokens`: 201 with the secret, which is never shown again.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let created = auth::create_token(&state.db, &caller, &request).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /+api/v1/tokens`: the tokens the caller may manage.
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    Ok(Json(auth::list_tokens(&state.db, &caller).await?).into_response())
}

/// `DELETE /+api/v1/tokens/{id}`: revokes at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("token id `{}` is not a number", id.escape_debug()))
    })?;
    Ok(Json(auth::revoke_token(&state.db, &caller, id).await?).into_response())
}
