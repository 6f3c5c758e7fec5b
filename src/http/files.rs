//! File downloads: `/{ns}/{name}/+f/{sha256}/{filename}` and its PEP 658 `.metadata`.
//!
//! A file is served through an index only if that index's chain lists it, so the URL of a
//! private index's file cannot be replayed through another index. A file a mirror lists
//! but has not stored yet is fetched from the upstream while it streams (see
//! [`crate::service::mirror`]). Bytes are immutable, so
//! responses carry `Cache-Control: immutable`, the digest as a strong ETag, and support a
//! single HTTP byte range (pip resumes interrupted downloads with one).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::IndexPath;
use super::simple::etag_matches;
use crate::app::AppState;
use crate::domain::Sha256Digest;
use crate::service::ServiceError;
use crate::service::auth::Caller;
use crate::service::mirror::{Located, Mirrors};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /{ns}/{name}/+f/{sha256}/{filename}`
pub async fn get_file(
    State(state): State<AppState>,
    IndexPath(index_name): IndexPath,
    caller: Caller,
    Path((_, _, digest, filename)): Path<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "file `{filename}` with sha256 `{digest}` is not on index `{index_name}` or its bases"
        ))
    };
    let sha256: Sha256Digest = digest.parse().map_err(|_| not_found())?;
    match Mirrors::find_file(&state.db, &caller, &index_name, &sha256, &filename).await? {
        None => Err(not_found()),
        Some(Located::Local(file)) if file.filename == filename => {
            stream_blob(&state, &method, &sha256, file.size, &headers).await
        }
        Some(Located::Local(file)) => {
            // PEP 658: `<file URL>.metadata` is the wheel's METADATA.
            let metadata_sha256 = file.metadata_sha256.ok_or_else(|| {
                ServiceError::Internal(format!("`{}` has no stored metadata", file.filename))
            })?;
            let bytes = state
                .storage
                .read_all(&metadata_sha256)
                .await
                .map_err(ServiceError::from)?;
            Ok(metadata_response(&metadata_sha256, bytes, &headers))
        }
        Some(Located::Mirror {
            mirror,
            file,
            metadata: true,
        }) => {
            let bytes = state
                .mirrors
                .metadata(&state.db, &state.storage, &mirror, &file)
                .await
                .map_err(ServiceError::from)?;
            let digest = Sha256Digest::of(&bytes);
            Ok(metadata_response(&digest, bytes, &headers))
        }
        Some(Located::Mirror { file, .. }) if file.cached_size.is_some() => {
            let size = file.cached_size.unwrap_or_default();
            stream_blob(&state, &method, &sha256, size, &headers).await
        }
        Some(Located::Mirror { mirror, file, .. }) => {
            let etag = format!("\"{sha256}\"");
            if if_none_match(&headers, &etag) {
                return Ok(not_modified(&etag));
            }
            // Not stored yet: stream it as it arrives from the upstream (whole, whatever
            // Range asked; the next request is served from storage with ranges).
            let download = state
                .mirrors
                .download(&state.db, &state.storage, &mirror, &file)
                .await
                .map_err(ServiceError::from)?;
            let mut response = Response::new(Body::from_stream(download.body));
            let out = response.headers_mut();
            set_immutable_headers(out, &etag, "application/octet-stream");
            if let Some(length) = download.length {
                out.insert(header::CONTENT_LENGTH, header_value(&length.to_string()));
            }
            Ok(response)
        }
    }
}

fn metadata_response(digest: &Sha256Digest, bytes: bytes::Bytes, headers: &HeaderMap) -> Response {
    let etag = format!("\"{digest}\"");
    if if_none_match(headers, &etag) {
        return not_modified(&etag);
    }
    let mut response = bytes.into_response();
    set_immutable_headers(response.headers_mut(), &etag, "text/plain; charset=utf-8");
    response
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, etag))
}

fn not_modified(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    response
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("generated header values are ASCII")
}

fn set_immutable_headers(headers: &mut HeaderMap, etag: &str, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ETAG, header_value(etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole blob (no range, an `If-Range` mismatch, or several ranges).
    Full,
    /// One satisfiable range, end exclusive.
    Partial(std::ops::Range<u64>),
    /// No satisfiable range: 416.
    Unsatisfiable,
}

/// Interprets `Range` (and `If-Range`) for a blob with `etag` and `size`.
#[must_use]
pub fn range_request(headers: &HeaderMap, etag: &str, size: u64) -> RangeRequest {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && if_range.trim() != etag
    {
        return RangeRequest::Full;
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        // A malformed Range header is ignored (RFC 9110 §14.2).
        return RangeRequest::Full;
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => {
            let r = &ranges[0];
            RangeRequest::Partial(*r.start()..*r.end() + 1)
        }
        Ok(_) => RangeRequest::Full,
        Err(_) => RangeRequest::Unsatisfiable,
    }
}

async fn stream_blob(
    state: &AppState,
    method: &Method,
    sha256: &Sha256Digest,
    size: u64,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha256}\"");
    if if_none_match(headers, &etag) {
        return Ok(not_modified(&etag));
    }
    // With presigned downloads on, the bytes come straight from the bucket (a presigned
    // URL is for GET only, so HEAD is answered here). The client re-sends any Range.
    if method == Method::GET
        && let Some(url) = state
            .storage
            .presigned_get(sha256)
            .await
            .map_err(ServiceError::from)?
    {
        let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
        let out = response.headers_mut();
        out.insert(header::LOCATION, header_value(url.as_str()));
        // The URL expires; a cache must not keep the redirect.
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        out.insert(header::ETAG, header_value(&etag));
        return Ok(response);
    }
    // Behind a proxy that sends local files itself (`--accel-redirect`): Kiln has
    // checked who may read what; the proxy sends the bytes (with `sendfile`) and answers
    // any Range itself.
    if let Some(path) = state.storage.accel_redirect(sha256) {
        let mut response = Response::new(Body::empty());
        let out = response.headers_mut();
        set_immutable_headers(out, &etag, "application/octet-stream");
        out.insert("x-accel-redirect", header_value(&path));
        return Ok(response);
    }
    let (status, range) = match range_request(headers, &etag, size) {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Partial(range) => (StatusCode::PARTIAL_CONTENT, Some(range)),
        RangeRequest::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the requested range is outside the file's {size} bytes"),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            return Ok(response);
        }
    };
    let stream = state
        .storage
        .stream(sha256, range.clone())
        .await
        .map_err(ServiceError::from)?;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let out = response.headers_mut();
    set_immutable_headers(out, &etag, "application/octet-stream");
    let length = match &range {
        Some(r) => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{size}", r.start, r.end - 1)),
            );
            r.end - r.start
        }
        None => size,
    };
    out.insert(header::CONTENT_LENGTH, header_value(&length.to_string()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn interprets_ranges() {
        let etag = "\"e\"";
        assert_eq!(range_request(&with(&[]), etag, 10), RangeRequest::Full);
        assert_eq!(
            range_request(&with(&[(header::RANGE, "bytes=2-4")]), etag, 10),
            RangeRequest::Partial(2..5)
        );
        assert_eq!(
            range_request(&with(&[(header::RANGE, "bytes=-3")]), etag, 10),
            RangeRequest::Partial(7..10)
        );
        assert_eq!(
            range_request(&with(&[(header::RANGE, "bytes=20-")]), etag, 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            range_request(&with(&[(header::RANGE, "bytes=0-1, 4-5")]), etag, 10),
            RangeRequest::Full
        );
        assert_eq!(
            range_request(
                &with(&[(header::RANGE, "bytes=2-4"), (header::IF_RANGE, "\"old\"")]),
                etag,
                10
            ),
            RangeRequest::Full
        );
        assert_eq!(
            range_request(&with(&[(header::RANGE, "pages=1")]), etag, 10),
            RangeRequest::Full
        );
    }
}
