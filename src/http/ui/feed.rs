//! Atom feeds (RFC 4287) of events: the whole server's and one index's, each holding
//! what the caller may see.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::views;
use crate::app::AppState;
use crate::domain::IndexName;
use crate::http::error::ApiError;
use crate::service::ServiceError;
use crate::service::auth::Caller;
use crate::service::overview;

/// Entries per feed.
const FEED_ENTRIES: i64 = 50;

/// `GET /+feed`
pub async fn server_feed(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    feed(&state, &headers, &caller, None).await
}

/// `GET /{ns}/{name}/+feed`
pub async fn index_feed(
    State(state): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    let index: IndexName = format!("{ns}/{name}")
        .parse()
        .map_err(|e: crate::domain::IndexNameError| ApiError::not_found(e.to_string()))?;
    feed(&state, &headers, &caller, Some(&index)).await
}

async fn feed(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    index: Option<&IndexName>,
) -> Result<Response, ApiError> {
    let events =
        overview::recent_events(&state.db, caller, index, None, None, FEED_ENTRIES).await?;
    let origin = super::origin_of(headers);
    let (title, path, html) = match index {
        Some(name) => (
            format!("Kiln events of {name}"),
            format!("/{name}/+feed"),
            format!("/{name}"),
        ),
        None => (
            "Kiln events".to_owned(),
            "/+feed".to_owned(),
            "/+events".to_owned(),
        ),
    };
    let entries: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let what = match (&e.project, &e.version) {
                (Some(p), Some(v)) => format!(" {p} {v}"),
                _ => String::new(),
            };
            let on = e
                .index
                .as_ref()
                .map(|i| format!(" on {i}"))
                .unwrap_or_default();
            let link = match (&e.index, &e.project, &e.version) {
                (Some(i), Some(p), Some(v)) => Some(format!("{origin}/{i}/{p}/{v}")),
                (Some(i), _, _) => Some(format!("{origin}/{i}")),
                _ => None,
            };
            serde_json::json!({
                "id": e.id,
                "title": format!("{}{what}{on}", e.kind.as_str()),
                "at": e.at,
                "link": link,
                "actor": e.actor,
                "kind": e.kind.as_str(),
                "summary": views::event_summary(e),
            })
        })
        .collect();
    let updated = events
        .first()
        .map_or_else(|| "1970-01-01T00:00:00Z".to_owned(), |e| e.at.clone());
    let context = serde_json::json!({
        "title": title,
        "id": format!("{origin}{path}"),
        "self_url": format!("{origin}{path}"),
        "html_url": format!("{origin}{html}"),
        "updated": updated,
        "events": entries,
    });
    let xml = state
        .templates
        .get_template("feed.xml")
        .and_then(|t| t.render(&context))
        .map_err(|e| ServiceError::Internal(format!("rendering the feed: {e:#}")))?;
    let mut response = xml.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/atom+xml; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}
