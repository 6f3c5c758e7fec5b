//! The simple repository API: PEP 503 HTML and PEP 691 JSON, chosen by `Accept` (or
//! `?format=`), with PEP 629 version meta, PEP 658/714 core metadata, PEP 592 yanks and
//! PEP 700 `versions`, `size` and `upload-time`.
//!
//! Traps:
//! - JSON carries only `core-metadata`; the older `dist-info-metadata` key crashes old pip.
//!   HTML carries both `data-core-metadata` and `data-dist-info-metadata`, as PyPI does.
//! - File URLs are relative (`../../+f/…`), so pages work behind a reverse proxy that
//!   mounts Kiln under a path prefix.
//! - Pages change whenever CI uploads, so they are `max-age=0, must-revalidate` with a
//!   strong ETag; a client with a fresh copy gets 304 and no body.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pep440_rs::Version;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::IndexPath;
use super::page_cache::{Page, PageKey};
use crate::app::AppState;
use crate::db::ListedFile;
use crate::db::changes::Change;
use crate::domain::IndexKind;
use crate::domain::{ProjectName, Sha256Digest};
use crate::service::auth::{Caller, Readable, chain_changes, check_read};
use crate::service::{ServiceError, indexes, resolve};

const API_VERSION: &str = "1.1";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
const HTML_V1_TYPE: &str = "application/vnd.pypi.simple.v1+html";
const HTML_TYPE: &str = "text/html; charset=utf-8";

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// PEP 691 JSON.
    Json,
    /// PEP 503 HTML, labelled with the versioned PEP 691 media type.
    HtmlV1,
    /// PEP 503 HTML, labelled `text/html`.
    Html,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON_TYPE,
            Self::HtmlV1 => HTML_V1_TYPE,
            Self::Html => HTML_TYPE,
        }
    }

    fn from_media_type(media: &str) -> Option<Self> {
        match media {
            "application/vnd.pypi.simple.v1+json" | "application/vnd.pypi.simple.latest+json" => {
                Some(Self::Json)
            }
            "application/vnd.pypi.simple.v1+html" | "application/vnd.pypi.simple.latest+html" => {
                Some(Self::HtmlV1)
            }
            "text/html" | "text/*" | "*/*" => Some(Self::Html),
            _ => None,
        }
    }
}

/// Picks a format from `?format=` or the `Accept` header (PEP 691): the acceptable type
/// with the highest q-value, earlier entries winning ties; HTML when nothing was asked.
/// `None` means nothing acceptable is offered (406).
#[must_use]
pub fn negotiate(query_format: Option<&str>, accept: Option<&str>) -> Option<Format> {
    if let Some(format) = query_format {
        return match format {
            "json" => Some(Format::Json),
            "html" => Some(Format::Html),
            other => Format::from_media_type(other),
        };
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::Html);
    };
    let mut best: Option<(f32, Format)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        if let Some(format) = Format::from_media_type(&media)
            && best.is_none_or(|(best_q, _)| q > best_q)
        {
            best = Some((q, format));
        }
    }
    best.map(|(_, format)| format)
}

/// `?format=` on simple pages.
#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    format: Option<String>,
}

#[derive(Serialize)]
struct JsonMeta {
    #[serde(rename = "api-version")]
    api_version: &'static str,
}

#[derive(Serialize)]
struct JsonProjectList {
    meta: JsonMeta,
    projects: Vec<JsonProjectEntry>,
}

#[derive(Serialize)]
struct JsonProjectEntry {
    name: String,
}

#[derive(Serialize)]
struct JsonProject<'a> {
    meta: JsonMeta,
    name: &'a str,
    versions: Vec<String>,
    files: Vec<JsonFile<'a>>,
    /// PEP 691 reserves underscore keys for the server: what Kiln's guard did.
    #[serde(rename = "_kiln", skip_serializing_if = "Option::is_none")]
    kiln: Option<JsonKiln<'a>>,
}

#[derive(Serialize)]
struct JsonKiln<'a> {
    /// Mirrors that did not contribute because the project is private.
    #[serde(rename = "mirror-hidden")]
    mirror_hidden: &'a [String],
}

#[derive(Serialize)]
struct JsonHashes<'a> {
    sha256: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonCoreMetadata<'a> {
    Hashes(JsonHashes<'a>),
    Absent(bool),
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonYanked<'a> {
    Reason(&'a str),
    Flag(bool),
}

#[derive(Serialize)]
struct JsonFile<'a> {
    filename: &'a str,
    url: String,
    hashes: JsonHashes<'a>,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    #[serde(rename = "core-metadata")]
    core_metadata: JsonCoreMetadata<'a>,
    yanked: JsonYanked<'a>,
    /// Unknown only for a mirrored file whose upstream page did not say (HTML upstreams)
    /// and that has not been downloaded yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(rename = "upload-time", skip_serializing_if = "Option::is_none")]
    upload_time: Option<&'a str>,
}

#[derive(Serialize)]
struct HtmlFile<'a> {
    filename: &'a str,
    /// Pre-escaped (see [`escape_attribute`]) and marked safe for the template.
    url: minijinja::Value,
    sha256: &'a str,
    requires_python: Option<&'a str>,
    metadata_sha256: Option<&'a str>,
    yanked: bool,
    yanked_reason: Option<&'a str>,
}

fn file_url(file: &ListedFile) -> String {
    format!("../../+f/{}/{}", file.sha256, file.filename)
}

/// `GET /{ns}/{name}/+simple/{project}/`
pub async fn show_project(
    State(state): State<AppState>,
    IndexPath(index_name): IndexPath,
    caller: Caller,
    Path((_, _, raw_project)): Path<(String, String, String)>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let readable = check_read(&state.db, &state.access, &caller, &index_name).await?;
    let format = negotiated(&query, &headers)?;
    let project = ProjectName::new(&raw_project).map_err(|e| ApiError::not_found(e.to_string()))?;
    if project.as_str() != raw_project {
        return Ok(redirect_permanent(&format!("../{project}/")));
    }
    let key = PageKey {
        index: index_name,
        project: Some(project),
        format,
    };
    let page = cached_page(&state, readable, key, render_project).await?;
    Ok(page_response(format, page, &headers))
}

/// A rendered page, how long it may be reused (`None`: until something it shows
/// changes), and what it shows.
type Rendered = (Page, Option<Duration>, Vec<Change>);

/// Answers from the page cache, rendering (and remembering) on a miss.
/// A render's `NotFound` (no such index, no such project) is remembered as a 404 page.
///
/// `readable` is the caller's read check on the index, which also holds the change
/// counter read before rendering (see [`check_read`]): a change to what the page shows
/// that lands meanwhile leaves this entry already stale. A "no such index" page depends
/// on the set of indexes only.
async fn cached_page<F, Fut>(
    state: &AppState,
    readable: Readable,
    key: PageKey,
    render: F,
) -> Result<Page, ApiError>
where
    F: FnOnce(AppState, PageKey) -> Fut,
    Fut: Future<Output = Result<Rendered, ServiceError>>,
{
    let stamps = state.db.stamps();
    if let Some(page) = state.pages.get(&key, stamps) {
        return Ok(page);
    }
    let (page, fresh_for, depends_on) = match render(state.clone(), key.clone()).await {
        Ok(rendered) => rendered,
        Err(ServiceError::NotFound(message)) => {
            (Page::Missing(message), None, vec![Change::Indexes])
        }
        Err(err) => return Err(err.into()),
    };
    if stamps.is_live() {
        state.pages.put(
            key,
            (readable.read_at(), depends_on),
            page.clone(),
            fresh_for,
        );
    }
    Ok(page)
}

async fn render_project(state: AppState, key: PageKey) -> Result<Rendered, ServiceError> {
    let project = key.project.as_ref().expect("project pages have a project");
    let index = indexes::get_index(&state.db, &key.index).await?;
    let chain = resolve::chain_indexes(&state.db, &index).await?;
    let view = state
        .mirrors
        .project_view(&state.db, &chain, project)
        .await?;
    let mut depends_on = chain_changes(&chain);
    depends_on.extend(
        chain
            .iter()
            .map(|i| Change::Files(i.id, project.to_string())),
    );
    if chain.iter().any(|i| i.settings.kind == IndexKind::Mirror) {
        // The guard asks whether the name is published on any index.
        depends_on.push(Change::Project(project.to_string()));
    }
    let hidden_from: Vec<String> = view.hidden_from.iter().map(ToString::to_string).collect();
    if view.files.is_empty() {
        if let Some(err) = view.errors.first() {
            return Err(ServiceError::Upstream(format!(
                "project `{project}` is not on index `{}`'s own indexes, and its mirror has nothing cached: {err}",
                key.index
            )));
        }
        let hidden = if hidden_from.is_empty() {
            String::new()
        } else {
            format!(
                "; the name is published on this server, so the mirror {} is not asked for it (allow it with `mirror_allow` on an index before the mirror)",
                hidden_from.join(", ")
            )
        };
        let missing = Page::Missing(format!(
            "project `{project}` is not on index `{}` or its bases{hidden}",
            key.index
        ));
        return Ok((missing, view.fresh_for, depends_on));
    }
    let body = match key.format {
        Format::Json => render_project_json(project, &view.files, &hidden_from)?,
        Format::Html | Format::HtmlV1 => {
            render_project_html(&state, project, &view.files, &hidden_from)?
        }
    };
    let mut notes = view.stale;
    notes.extend(
        view.errors
            .iter()
            .map(|e| format!("nothing cached, not shown: {e}")),
    );
    Ok((found(body, notes, hidden_from), view.fresh_for, depends_on))
}

fn found(body: Vec<u8>, stale: Vec<String>, hidden_from: Vec<String>) -> Page {
    let digest = crate::domain::Sha256Digest::of(&body);
    Page::Found {
        etag: format!("\"{}\"", &digest.as_str()[..32]),
        body: body.into(),
        stale,
        hidden_from,
    }
}

fn render_project_json(
    project: &ProjectName,
    files: &[ListedFile],
    hidden_from: &[String],
) -> Result<Vec<u8>, ServiceError> {
    let mut versions: Vec<(Option<Version>, &str)> = files
        .iter()
        .map(|f| (Version::from_str(&f.version).ok(), f.version.as_str()))
        .collect();
    versions.sort();
    versions.dedup_by(|a, b| a.1 == b.1);
    let page = JsonProject {
        meta: JsonMeta {
            api_version: API_VERSION,
        },
        name: project.as_str(),
        versions: versions.into_iter().map(|(_, v)| v.to_owned()).collect(),
        files: files
            .iter()
            .map(|f| JsonFile {
                filename: &f.filename,
                url: file_url(f),
                hashes: JsonHashes {
                    sha256: f.sha256.as_str(),
                },
                requires_python: f.requires_python.as_deref(),
                core_metadata: match &f.metadata_sha256 {
                    Some(sha) => JsonCoreMetadata::Hashes(JsonHashes {
                        sha256: sha.as_str(),
                    }),
                    None => JsonCoreMetadata::Absent(false),
                },
                yanked: match (f.yanked, &f.yanked_reason) {
                    (true, Some(reason)) if !reason.is_empty() => JsonYanked::Reason(reason),
                    (yanked, _) => JsonYanked::Flag(yanked),
                },
                size: f.size,
                upload_time: f.uploaded_at.as_deref(),
            })
            .collect(),
        kiln: (!hidden_from.is_empty()).then_some(JsonKiln {
            mirror_hidden: hidden_from,
        }),
    };
    serde_json::to_vec(&page).map_err(|e| internal(&e))
}

fn render_project_html(
    state: &AppState,
    project: &ProjectName,
    files: &[ListedFile],
    hidden_from: &[String],
) -> Result<Vec<u8>, ServiceError> {
    let files: Vec<HtmlFile<'_>> = files
        .iter()
        .map(|f| HtmlFile {
            filename: &f.filename,
            url: minijinja::Value::from_safe_string(super::ui::escape_html(&file_url(f))),
            sha256: f.sha256.as_str(),
            requires_python: f.requires_python.as_deref(),
            metadata_sha256: f.metadata_sha256.as_ref().map(Sha256Digest::as_str),
            yanked: f.yanked,
            yanked_reason: f.yanked_reason.as_deref(),
        })
        .collect();
    let template = state
        .templates
        .get_template("project.html")
        .map_err(|e| internal(&e))?;
    template
        .render(minijinja::context! {
            api_version => API_VERSION, name => project.as_str(), files, hidden_from
        })
        .map(String::into_bytes)
        .map_err(|e| internal(&e))
}

/// `GET /{ns}/{name}/+simple/`
pub async fn list_projects(
    State(state): State<AppState>,
    IndexPath(index_name): IndexPath,
    caller: Caller,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let readable = check_read(&state.db, &state.access, &caller, &index_name).await?;
    let format = negotiated(&query, &headers)?;
    let key = PageKey {
        index: index_name,
        project: None,
        format,
    };
    let page = cached_page(&state, readable, key, render_project_list).await?;
    Ok(page_response(format, page, &headers))
}

/// The project list: every project the chain's stage indexes have. Mirrors are not
/// listed (PyPI alone has over half a million names); their projects resolve by name.
async fn render_project_list(state: AppState, key: PageKey) -> Result<Rendered, ServiceError> {
    let index = indexes::get_index(&state.db, &key.index).await?;
    let chain = resolve::chain_indexes(&state.db, &index).await?;
    let mut depends_on = chain_changes(&chain);
    depends_on.extend(chain.iter().map(|i| Change::Projects(i.id)));
    let ids: Vec<i64> = chain.iter().map(|i| i.id).collect();
    let projects = state
        .db
        .projects_of(&ids)
        .await
        .map_err(ServiceError::from)?;
    let body = match key.format {
        Format::Json => serde_json::to_vec(&JsonProjectList {
            meta: JsonMeta {
                api_version: API_VERSION,
            },
            projects: projects
                .into_iter()
                .map(|name| JsonProjectEntry { name })
                .collect(),
        })
        .map_err(|e| internal(&e))?,
        Format::Html | Format::HtmlV1 => {
            let template = state
                .templates
                .get_template("projects.html")
                .map_err(|e| internal(&e))?;
            template
                .render(minijinja::context! {
                    api_version => API_VERSION, index => key.index.to_string(), projects
                })
                .map(String::into_bytes)
                .map_err(|e| internal(&e))?
        }
    };
    Ok((found(body, Vec::new(), Vec::new()), None, depends_on))
}

/// `GET /{ns}/{name}/+simple` and `…/+simple/{project}`: add the trailing slash pip expects.
pub async fn add_trailing_slash(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let last = path.rsplit('/').next().unwrap_or_default();
    let target = match uri.query() {
        Some(q) => format!("{last}/?{q}"),
        None => format!("{last}/"),
    };
    redirect_permanent(&target)
}

fn negotiated(query: &FormatQuery, headers: &HeaderMap) -> Result<Format, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    negotiate(query.format.as_deref(), accept).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "none of the requested media types is offered; use `{JSON_TYPE}` or `text/html`"
            ),
        )
    })
}

/// 301, as PyPI answers for non-normalized names and missing slashes. The location is
/// relative, so it survives a reverse proxy's path prefix.
fn redirect_permanent(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [
                (header::LOCATION, location),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=0, must-revalidate"),
                ),
            ],
        )
            .into_response(),
        Err(_) => ApiError::not_found("no such page").into_response(),
    }
}

/// Wraps a page with its content type, its strong ETag and revalidation headers,
/// answering `If-None-Match` with 304; a cached "not found" becomes a 404.
fn page_response(format: Format, page: Page, request: &HeaderMap) -> Response {
    let (body, etag, stale, hidden_from) = match page {
        Page::Found {
            body,
            etag,
            stale,
            hidden_from,
        } => (body, etag, stale, hidden_from),
        Page::Missing(message) => return ApiError::not_found(message).into_response(),
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag is a valid header"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, must-revalidate"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    let notes = [
        (crate::api::MIRROR_STALE_HEADER, stale.join("; ")),
        (crate::api::MIRROR_HIDDEN_HEADER, hidden_from.join(", ")),
    ];
    for (name, value) in notes {
        if !value.is_empty()
            && let Ok(value) = HeaderValue::from_str(&value.replace(['\r', '\n'], " "))
        {
            headers.insert(name, value);
        }
    }
    response
}

/// `If-None-Match` comparison (weak, per RFC 9110 §13.1.2): any listed tag, or `*`.
#[must_use]
pub fn etag_matches(header_value: &str, etag: &str) -> bool {
    header_value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn internal(err: &dyn std::fmt::Display) -> ServiceError {
    ServiceError::Internal(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_pep_691() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        assert_eq!(negotiate(None, Some(pip)), Some(Format::Json));
        assert_eq!(negotiate(None, None), Some(Format::Html));
        assert_eq!(negotiate(None, Some("text/html")), Some(Format::Html));
        assert_eq!(negotiate(None, Some("*/*")), Some(Format::Html));
        assert_eq!(
            negotiate(None, Some("application/vnd.pypi.simple.v1+html")),
            Some(Format::HtmlV1)
        );
        assert_eq!(
            negotiate(
                None,
                Some("text/html;q=0.2, application/vnd.pypi.simple.latest+json;q=0.9")
            ),
            Some(Format::Json)
        );
        assert_eq!(negotiate(None, Some("application/xml")), None);
        assert_eq!(
            negotiate(None, Some("application/vnd.pypi.simple.v1+json;q=0")),
            None
        );
        assert_eq!(
            negotiate(Some("json"), Some("text/html")),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/vnd.pypi.simple.v1+json"), None),
            Some(Format::Json)
        );
        assert_eq!(negotiate(Some("yaml"), None), None);
    }

    #[test]
    fn compares_etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\", \"x\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
