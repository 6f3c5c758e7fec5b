//! `GET /+health`: 200 when the database answers, 503 when it does not.

use crate::api::{HealthStatus, HealthView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// `GET /+health`
pub async fn health(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => Json(HealthView {
            status: HealthStatus::Ok,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            database: Some(state.db.backend().name().to_owned()),
            storage: Some(state.storage.kind().to_owned()),
            page_cache: Some(state.pages.stats()),
            reason: None,
        })
        .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthView {
                    status: HealthStatus::Unavailable,
                    version: None,
                    database: None,
                    storage: None,
                    page_cache: None,
                    reason: Some("database unavailable".to_owned()),
                }),
            )
                .into_response()
        }
    }
}
