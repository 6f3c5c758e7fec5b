//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! The one-line detail also becomes the HTTP *reason phrase*: twine (through requests)
//! prints `409 Client Error: <reason> for url: …`, and warehouse-compatible clients look for
//! "File already exists" there. uv shows the problem document's `detail`. A 5xx says only
//! "internal error"; its cause is logged once, with the request's span.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    /// Seconds, for a 503.
    retry_after: Option<u32>,
}

/// What a 503 asks the client to wait before retrying.
pub const RETRY_AFTER_SECONDS: u32 = 5;

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl ApiError {
    /// An error with an explicit status.
    #[must_use]
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The status it answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its one-line reason.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// 404 with a reason.
    #[must_use]
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 400 with a reason.
    #[must_use]
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let status = match &err {
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ServiceError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ServiceError::Unavailable(detail) => {
                tracing::warn!(error.detail = %detail, "unavailable");
                return Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    detail: detail.clone(),
                    retry_after: Some(RETRY_AFTER_SECONDS),
                };
            }
            ServiceError::Full(detail) => {
                tracing::error!(error.detail = %detail, "storage full");
                StatusCode::INSUFFICIENT_STORAGE
            }
            ServiceError::Internal(detail) => {
                tracing::error!(error.detail = %detail, "internal error");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        Self::new(status, err.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => {
                return Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body: over this endpoint's limit ({} KiB for API calls, {} KiB for build and result reports)",
                        crate::app::MAX_API_BODY / 1024,
                        crate::app::MAX_REPORT_BODY / 1024
                    ),
                );
            }
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, format!("request body: {}", rejection.body_text()))
    }
}

/// Makes `detail` usable as an HTTP/1.1 reason phrase: one line of visible ASCII.
fn reason_phrase(detail: &str) -> String {
    let mut out: String = detail
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(400)
        .collect();
    if out.is_empty() {
        out.push_str("error");
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("error");
        let body = Problem {
            kind: "about:blank",
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kiln\""),
            );
        }
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason_phrase(&self.detail)) {
            response.extensions_mut().insert(reason);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_phrases_are_single_line_ascii() {
        assert_eq!(reason_phrase("a\r\nb — c"), "a??b ? c");
        assert_eq!(reason_phrase(""), "error");
        assert!(hyper::ext::ReasonPhrase::try_from(reason_phrase("x\u{0}y\n")).is_ok());
    }
}
