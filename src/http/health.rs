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

/// `GET /metrics`: Prometheus text. With `--metrics-token` only that bearer token may
/// read it (and sees every index); without, anyone may, and per-index series cover
/// public indexes only.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, super::error::ApiError> {
    let all_indexes = match &state.config.metrics_token {
        None => false,
        Some(token) => {
            use subtle::ConstantTimeEq as _;
            let sent = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let digest = |t: &str| crate::domain::Sha256Digest::of(t.as_bytes()).to_string();
            if !bool::from(digest(sent).as_bytes().ct_eq(digest(token).as_bytes())) {
                return Err(super::error::ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "reading /metrics needs the server's metrics token: `Authorization: Bearer <--metrics-token>`",
                ));
            }
            true
        }
    };
    let mut sampled = crate::service::overview::sample_metrics(&state.db, all_indexes).await?;
    let cache = state.pages.stats();
    sampled.page_cache = (cache.hits, cache.misses);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&sampled),
    )
        .into_response())
}
