//! Talking to a mirror's upstream index over HTTP: project pages (PEP 691 JSON preferred,
//! HTML accepted) and file downloads.
//!
//! Traps:
//! - Credentials go only to the upstream's own origin. PyPI-like indexes serve files from
//!   another host (a CDN); sending them the index password would leak it. (reqwest drops
//!   `Authorization` on a cross-origin redirect by itself.)
//! - A page has a total deadline; a file download only an idle deadline per chunk, since a
//!   large wheel on a slow link legitimately takes minutes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::domain::upstream_page::{self, PageError, UpstreamPage};
use crate::domain::{MirrorSettings, ProjectName};

/// Largest project page read from an upstream (PyPI's largest JSON pages are tens of MB).
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// Why the upstream gave nothing usable. Every message names the upstream URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, DNS, TLS, a reset or a timeout.
    #[error("upstream `{url}` is unreachable: {cause}")]
    Unreachable {
        /// What was asked for.
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// An HTTP status that is neither success nor "no such project".
    #[error("upstream `{url}` answered HTTP {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// The status.
        status: u16,
    },
    /// Content that is not what was asked for; refused and not cached.
    #[error("upstream `{url}` sent garbage: {why}")]
    Garbage {
        /// What was asked for.
        url: String,
        /// What was wrong with it.
        why: String,
    },
    /// This server failed to keep what the upstream sent (disk, database).
    #[error("caching upstream data failed: {0}")]
    Local(String),
}

/// The answer to a page request.
#[derive(Debug)]
pub enum PageFetch {
    /// A checked page, with the upstream's `ETag` for the next conditional request.
    Page {
        /// The files.
        page: UpstreamPage,
        /// The validator to send next time.
        etag: Option<String>,
    },
    /// The cached copy is still current (HTTP 304).
    NotModified,
    /// The upstream has no such project (404/410).
    NotFound,
}

/// A shared HTTP client for every upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    timeout: Duration,
}

impl Upstream {
    /// A client whose page requests give up after `timeout`, and whose file downloads give
    /// up when no byte arrives for `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .read_timeout(timeout)
            .build()?;
        Ok(Self { http, timeout })
    }

    /// Fetches and checks `project`'s page; with `etag`, a conditional request.
    pub async fn fetch_page(
        &self,
        mirror: &MirrorSettings,
        project: &ProjectName,
        etag: Option<&str>,
    ) -> Result<PageFetch, UpstreamError> {
        let page_url = format!("{}{project}/", mirror.url);
        let parsed = url::Url::parse(&page_url).map_err(|e| UpstreamError::Garbage {
            url: page_url.clone(),
            why: format!("the page URL is invalid: {e}"),
        })?;
        let mut request = Self::authorized(mirror, &parsed, self.http.get(parsed.clone()))
            .header(header::ACCEPT, PAGE_ACCEPT)
            .timeout(self.timeout);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&page_url, &e))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(PageFetch::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(PageFetch::NotFound),
            status if !status.is_success() => {
                return Err(UpstreamError::Status {
                    url: page_url,
                    status: status.as_u16(),
                });
            }
            _ => {}
        }
        // pip and PyPI redirect to the normalized name; parse relative to where we landed.
        let landed = response.url().clone();
        let etag = header_text(response.headers(), &header::ETAG);
        let content_type = header_text(response.headers(), &header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = read_limited(response, MAX_PAGE_BYTES, &page_url).await?;
        let garbage = |e: PageError| UpstreamError::Garbage {
            url: page_url.clone(),
            why: e.to_string(),
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        let page = match media {
            "application/vnd.pypi.simple.v1+json"
            | "application/vnd.pypi.simple.latest+json"
            | "application/json" => upstream_page::parse_json(&body, &landed, project),
            "text/html"
            | "application/vnd.pypi.simple.v1+html"
            | "application/vnd.pypi.simple.latest+html"
            | "application/xhtml+xml" => upstream_page::parse_html(&body, &landed, project),
            other => {
                return Err(UpstreamError::Garbage {
                    url: page_url,
                    why: format!(
                        "content type `{other}` is not a simple-API page (expected PEP 691 JSON or HTML)"
                    ),
                });
            }
        }
        .map_err(garbage)?;
        Ok(PageFetch::Page { page, etag })
    }

    /// Starts downloading `url`; the caller reads the body. Errors before the first byte
    /// (connection, status) come back here.
    pub async fn open_file(
        &self,
        mirror: &MirrorSettings,
        url: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let parsed = url::Url::parse(url).map_err(|e| UpstreamError::Garbage {
            url: url.to_owned(),
            why: format!("the file URL is invalid: {e}"),
        })?;
        let response = Self::authorized(mirror, &parsed, self.http.get(parsed.clone()))
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        if !response.status().is_success() {
            return Err(UpstreamError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        Ok(response)
    }

    /// Downloads a small file (core metadata) whole, up to `limit` bytes.
    pub async fn fetch_small(
        &self,
        mirror: &MirrorSettings,
        url: &str,
        limit: usize,
    ) -> Result<Bytes, UpstreamError> {
        let response = self.open_file(mirror, url).await?;
        read_limited(response, limit, url).await
    }

    fn authorized(
        mirror: &MirrorSettings,
        target: &url::Url,
        request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        let Some(user) = &mirror.username else {
            return request;
        };
        let same_origin =
            url::Url::parse(&mirror.url).is_ok_and(|upstream| upstream.origin() == target.origin());
        if same_origin {
            request.basic_auth(user, mirror.password.as_deref())
        } else {
            request
        }
    }
}

fn header_text(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned)
}

fn unreachable(url: &str, err: &reqwest::Error) -> UpstreamError {
    let mut cause = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    UpstreamError::Unreachable {
        url: url.to_owned(),
        cause,
    }
}

async fn read_limited(
    response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Garbage {
        url: url.to_owned(),
        why: format!("the response is over the {limit}-byte limit"),
    };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreachable(url, &e))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}
