//! The web UI: server-rendered HTML pages (minijinja), SVG badges and Atom feeds.
//!
//! Read-only. Every page calls a [`crate::service::overview`] function with the caller,
//! so a page shows exactly what the JSON API would show the same token. A person signs
//! in by pasting a token: it is kept in an `HttpOnly`, `SameSite=Strict` cookie that only
//! these pages read (never the JSON API, the simple API or uploads, so no cross-site
//! request can write with it). An `Authorization` header wins over the cookie.

pub mod ansi;
pub mod badge;
mod feed;
mod views;

use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::{EventKind, IndexName, ProjectName, Release};
use crate::service::ServiceError;
use crate::service::auth::{Caller, authenticate};
use crate::service::overview;

pub use feed::{index_feed, server_feed};

/// The sign-in cookie.
const COOKIE: &str = "kiln_token";
/// How long a browser keeps it (a token's own expiry or revocation ends it sooner).
const COOKIE_MAX_AGE_S: u64 = 7 * 24 * 3600;

/// Registers the UI's templates and filters.
///
/// # Errors
/// A template that does not compile.
pub fn register(env: &mut minijinja::Environment<'static>) -> Result<(), minijinja::Error> {
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("error.html", include_str!("templates/error.html")),
        ("signin.html", include_str!("templates/signin.html")),
        ("home.html", include_str!("templates/home.html")),
        ("event_list.html", include_str!("templates/event_list.html")),
        ("events.html", include_str!("templates/events.html")),
        ("index.html", include_str!("templates/index.html")),
        (
            "project_page.html",
            include_str!("templates/project_page.html"),
        ),
        ("release.html", include_str!("templates/release.html")),
        ("feed.xml", include_str!("templates/feed.xml")),
    ] {
        env.add_template(name, source)?;
    }
    // Escape what HTML needs and nothing more: minijinja's default also writes `/` as
    // `&#x2f;`, which is harmless in a browser but makes every path in a page, a feed
    // or a test's expectation unreadable.
    env.set_formatter(
        |out, state, value| match (state.auto_escape(), value.as_str()) {
            (minijinja::AutoEscape::Html, Some(text)) if !value.is_safe() => out
                .write_str(&escape_html(text))
                .map_err(minijinja::Error::from),
            _ => minijinja::escape_formatter(out, state, value),
        },
    );
    env.add_filter("ansi", |log: String| {
        minijinja::Value::from_safe_string(ansi::to_html(&log))
    });
    env.add_filter("bytes", views::human_bytes);
    env.add_filter("ms", views::human_ms);
    env.add_filter("when", views::when);
    env.add_filter("urlencode", |text: String| {
        url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
    });
    Ok(())
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in HTML and XML text and in
/// quoted attributes.
#[must_use]
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who is looking: the caller (from `Authorization`, else the sign-in cookie), and what
/// every page's frame needs.
pub struct Viewer {
    /// The caller services check.
    pub caller: Caller,
    /// The signed-in token's name, shown in the header.
    signed_in: Option<String>,
    /// A cookie was sent whose token no longer authenticates.
    stale_cookie: bool,
    /// This page's path and query (where sign-in returns).
    here: String,
    /// `scheme://host` as the browser reached the server (for commands to copy).
    origin: String,
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// `scheme://host` of the request: `X-Forwarded-Proto` (a TLS proxy in front) or http,
/// and the `Host` header; only shown back to the same browser, escaped.
fn origin_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

impl<S> FromRequestParts<S> for Viewer
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        let origin = origin_of(&parts.headers);
        let mut stale_cookie = false;
        let caller = if parts.headers.contains_key(header::AUTHORIZATION) {
            Caller::from_request_parts(parts, state)
                .await
                .map_err(|e| UiError::new(e, &here))?
        } else if let Some(secret) = cookie_token(&parts.headers) {
            let state = AppState::from_ref(state);
            match authenticate(&state.db, &secret).await {
                Ok(principal) => Caller::from(principal),
                Err(ServiceError::Unauthenticated(_) | ServiceError::Forbidden(_)) => {
                    stale_cookie = true;
                    Caller::anonymous()
                }
                Err(other) => return Err(UiError::new(other.into(), &here)),
            }
        } else {
            Caller::anonymous()
        };
        Ok(Self {
            signed_in: caller.principal().map(|p| p.name.clone()),
            caller,
            stale_cookie,
            here,
            origin,
        })
    }
}

impl Viewer {
    /// Renders `template` with `context` plus the frame's fields.
    fn render(
        &self,
        state: &AppState,
        template: &str,
        mut context: serde_json::Value,
    ) -> Result<Response, UiError> {
        if let Some(map) = context.as_object_mut() {
            map.insert("signed_in".into(), self.signed_in.clone().into());
            map.insert("stale_cookie".into(), self.stale_cookie.into());
            map.insert("here".into(), self.here.clone().into());
            map.insert("origin".into(), self.origin.clone().into());
        }
        let html = state
            .templates
            .get_template(template)
            .and_then(|t| t.render(&context))
            .map_err(|e| {
                UiError::new(
                    ServiceError::Internal(format!("rendering {template}: {e:#}")).into(),
                    &self.here,
                )
            })?;
        Ok(html_response(StatusCode::OK, html))
    }

    fn fail(&self, err: impl Into<ApiError>) -> UiError {
        let mut error = UiError::new(err.into(), &self.here);
        error.signed_in.clone_from(&self.signed_in);
        error
    }
}

/// The headers every page carries: HTML, never cached by a shared cache (a page may show
/// a private index), no framing, no sniffing.
fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// An error as a page: its status and one-line reason, and a sign-in link when a token
/// would help.
#[derive(Debug)]
pub struct UiError {
    error: ApiError,
    here: String,
    signed_in: Option<String>,
}

impl UiError {
    fn new(error: ApiError, here: &str) -> Self {
        Self {
            error,
            here: here.to_owned(),
            signed_in: None,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let context = serde_json::json!({
            "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")),
            "message": self.error.detail(),
            "needs_sign_in": matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "here": self.here,
            "signed_in": self.signed_in,
        });
        let html = ERROR_TEMPLATES
            .get_template("error.html")
            .and_then(|t| t.render(&context))
            .unwrap_or_else(|_| format!("<!DOCTYPE html><title>{status}</title><h1>{status}</h1>"));
        html_response(status, html)
    }
}

/// The templates an error page needs, for errors raised before the state is at hand.
static ERROR_TEMPLATES: std::sync::LazyLock<minijinja::Environment<'static>> =
    std::sync::LazyLock::new(|| {
        let mut env = minijinja::Environment::new();
        // The same templates as the state's; a failure here shows the bare fallback.
        let _ = register(&mut env);
        env
    });

/// True when the client asked for HTML (a browser); API clients (`*/*`, JSON) are not.
#[must_use]
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// `GET /`
pub async fn home(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let home = overview::home(&state.db, &viewer.caller)
        .await
        .map_err(|e| viewer.fail(e))?;
    viewer.render(
        &state,
        "home.html",
        views::home("Indexes and builds", &home, None),
    )
}

/// `GET /{ns}`: the home page's indexes of one namespace.
pub async fn namespace(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let home = overview::home(&state.db, &viewer.caller)
        .await
        .map_err(|e| viewer.fail(e))?;
    // A namespace with no index the caller may read shows an empty list, not a 404, so
    // the page says nothing about private indexes.
    let context = views::home(&format!("Namespace {ns}"), &home, Some(&ns));
    viewer.render(&state, "home.html", context)
}

/// The index page (`GET /{ns}/{name}` from a browser).
pub async fn index_page(
    state: &AppState,
    viewer: &Viewer,
    name: &IndexName,
    query: Option<&str>,
) -> Result<Response, UiError> {
    // `?after=PROJECT`: the next page of projects.
    let after: Option<String> = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "after")
            .map(|(_, v)| v.into_owned())
    });
    let page = overview::index_page(
        (&state.db, &state.config.policies),
        &viewer.caller,
        name,
        after.as_deref(),
    )
    .await
    .map_err(|e| viewer.fail(e))?;
    viewer.render(state, "index.html", views::index_page(&page))
}

fn index_name(viewer: &Viewer, ns: &str, name: &str) -> Result<IndexName, UiError> {
    format!("{ns}/{name}")
        .parse()
        .map_err(|e: crate::domain::IndexNameError| {
            viewer.fail(ServiceError::NotFound(e.to_string()))
        })
}

/// `GET /{ns}/{name}/{project}`
pub async fn project_page(
    State(state): State<AppState>,
    Path((ns, name, project)): Path<(String, String, String)>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let index = index_name(&viewer, &ns, &name)?;
    let project: ProjectName = project
        .parse()
        .map_err(|e: String| viewer.fail(ServiceError::NotFound(e)))?;
    let page = overview::project_page(
        (&state.db, &state.config.policies),
        &viewer.caller,
        &index,
        &project,
    )
    .await
    .map_err(|e| viewer.fail(e))?;
    viewer.render(&state, "project_page.html", views::project_page(&page))
}

/// `GET /{ns}/{name}/{project}/{version}`
pub async fn release_page(
    State(state): State<AppState>,
    Path((ns, name, project, version)): Path<(String, String, String, String)>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let index = index_name(&viewer, &ns, &name)?;
    let release =
        Release::parse(&project, &version).map_err(|e| viewer.fail(ServiceError::NotFound(e)))?;
    let page = overview::release_page(state.promoter(), &viewer.caller, &index, &release)
        .await
        .map_err(|e| viewer.fail(e))?;
    let context = views::release_page(&page, &viewer.origin);
    viewer.render(&state, "release.html", context)
}

/// Query of the events page.
#[derive(Debug, Deserialize)]
pub struct EventsPageQuery {
    /// Only this index (empty: all).
    #[serde(default)]
    index: String,
    /// Only this kind (empty: all).
    #[serde(default)]
    kind: String,
    /// Only events older than this id (the next page).
    before: Option<i64>,
}

/// Events per page.
const EVENTS_PER_PAGE: i64 = 50;

/// `GET /+events`
pub async fn events_page(
    State(state): State<AppState>,
    Query(query): Query<EventsPageQuery>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let index: Option<IndexName> = match query.index.as_str() {
        "" => None,
        name => Some(name.parse().map_err(|e: crate::domain::IndexNameError| {
            viewer.fail(ServiceError::Invalid(e.to_string()))
        })?),
    };
    let kind: Option<EventKind> = match query.kind.as_str() {
        "" => None,
        kind => Some(
            kind.parse()
                .map_err(|e: String| viewer.fail(ServiceError::Invalid(e)))?,
        ),
    };
    let events = overview::recent_events(
        &state.db,
        &viewer.caller,
        index.as_ref(),
        kind,
        query.before,
        EVENTS_PER_PAGE,
    )
    .await
    .map_err(|e| viewer.fail(e))?;
    let names = crate::service::indexes::list_indexes(&state.db, &viewer.caller)
        .await
        .map_err(|e| viewer.fail(e))?;
    let older = (i64::try_from(events.len()).unwrap_or(0) == EVENTS_PER_PAGE)
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|before| {
            format!(
                "/+events?index={}&kind={}&before={before}",
                query.index, query.kind
            )
        });
    let feed = match &index {
        Some(name) => format!("/{name}/+feed"),
        None => "/+feed".to_owned(),
    };
    let context = serde_json::json!({
        "events": events.iter().map(views::event).collect::<Vec<_>>(),
        "index_names": names.iter().map(|i| i.name.to_string()).collect::<Vec<_>>(),
        "index": query.index,
        "kinds": EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "kind": query.kind,
        "older": older,
        "feed": feed,
    });
    viewer.render(&state, "events.html", context)
}

/// Query of the sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    /// Where to go back to.
    #[serde(default)]
    next: String,
}

/// A local path to return to after signing in: only a path on this server (no
/// `//host` or scheme), else `/`.
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

/// `GET /+signin`
pub async fn sign_in_form(
    State(state): State<AppState>,
    Query(query): Query<SignInQuery>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let context = serde_json::json!({ "next": local_path(&query.next), "error": null });
    viewer.render(&state, "signin.html", context)
}

/// Body of the sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    /// The pasted token.
    token: String,
    /// Where to go back to.
    #[serde(default)]
    next: String,
}

/// True unless the request carries an `Origin` that is not this server (a form posted
/// from another site; browsers send `Origin` with every form `POST`).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    // The host the browser reached: `Host`, or what a proxy in front passed on.
    let hosts: Vec<&str> = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|h| h.to_str().ok()))
        .collect();
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, authority)| hosts.contains(&authority))
}

fn cross_site() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "signing in or out from another site is refused: use this server's own sign-in page",
    )
}

/// `POST /+signin`: checks the token, then keeps it in the cookie and returns to `next`.
/// A form posted from another site is refused (it would sign the browser in as someone
/// else's token).
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    axum::Form(form): axum::Form<SignInForm>,
) -> Result<Response, UiError> {
    if !same_origin(&headers) {
        return Err(viewer.fail(cross_site()));
    }
    let token = form.token.trim();
    let next = local_path(&form.next);
    let valid = !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ';' && c != ',');
    let refused = |message: &str| {
        let context = serde_json::json!({ "next": next, "error": message });
        viewer.render(&state, "signin.html", context).map(|mut r| {
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        })
    };
    if !valid {
        return refused(
            "That is not a Kiln token: paste the whole secret `kiln token create` printed.",
        );
    }
    match authenticate(&state.db, token).await {
        Ok(_) => {}
        Err(ServiceError::Unauthenticated(_) | ServiceError::Forbidden(_)) => {
            return refused("Kiln does not know this token (mistyped, revoked or expired).");
        }
        Err(other) => return Err(viewer.fail(other)),
    }
    let cookie =
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_S}");
    let mut response = Redirect::to(next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /+signout` (from this server's pages only).
pub async fn sign_out(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return UiError::new(cross_site(), "/").into_response();
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("kiln_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// The icon: an SVG kiln flame.
const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\"><rect width=\"32\" height=\"32\" rx=\"6\" fill=\"#1f2328\"/><path d=\"M16 5c2 5 8 8 8 15a8 8 0 0 1-16 0c0-4 2-6 4-8 0 3 1 5 3 5 0-4-1-8 1-12z\" fill=\"#f0883e\"/></svg>";

/// `GET /favicon.ico`
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

/// `GET /+badge/{ns}/{name}/{project}`: the newest version there and its verdict.
pub async fn project_badge(
    State(state): State<AppState>,
    Path((ns, name, project)): Path<(String, String, String)>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    badge_response(&state, &headers, &caller, (&ns, &name, &project), None).await
}

/// `GET /+badge/{ns}/{name}/{project}/{stage}`: that stage's latest outcome on the
/// newest version.
pub async fn stage_badge(
    State(state): State<AppState>,
    Path((ns, name, project, stage_name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    badge_response(
        &state,
        &headers,
        &caller,
        (&ns, &name, &project),
        Some(&stage_name),
    )
    .await
}

async fn badge_response(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    (ns, name, project): (&str, &str, &str),
    stage_name: Option<&str>,
) -> Result<Response, ApiError> {
    let index: IndexName = format!("{ns}/{name}")
        .parse()
        .map_err(|e: crate::domain::IndexNameError| ApiError::not_found(e.to_string()))?;
    let project: ProjectName = project
        .parse()
        .map_err(|e: String| ApiError::not_found(e))?;
    let newest = overview::newest_release(
        (&state.db, &state.config.policies),
        caller,
        &index,
        &project,
    )
    .await?;
    let (label, message, tone) = views::badge_text(&project, stage_name, newest.as_ref());
    let svg = badge::render(&label, &message, tone);
    let etag = format!(
        "\"{}\"",
        &crate::domain::Sha256Digest::of(svg.as_bytes()).as_str()[..32]
    );
    let cache = "no-cache, max-age=0";
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_owned()),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "image/svg+xml; charset=utf-8".to_owned(),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_owned()),
        ],
        svg,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_a_local_path() {
        assert_eq!(local_path("/root/master?x=1"), "/root/master?x=1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "javascript:1",
        ] {
            assert_eq!(local_path(hostile), "/", "{hostile}");
        }
    }

    #[test]
    fn only_this_server_may_post_the_sign_in_form() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("kiln.example:8080"));
        assert!(same_origin(&headers), "no Origin: curl, old browsers");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://kiln.example:8080"),
        );
        assert!(same_origin(&headers));
        for other in [
            "https://evil.example",
            "null",
            "https://kiln.example:8080.evil",
        ] {
            headers.insert(header::ORIGIN, HeaderValue::from_str(other).unwrap());
            assert!(!same_origin(&headers), "{other}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; kiln_token=s3cret ; c=d"),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("s3cret"));
        headers.insert(header::COOKIE, HeaderValue::from_static("kiln_token="));
        assert_eq!(cookie_token(&headers), None);
    }

    #[test]
    fn only_a_browser_asking_for_html_gets_it() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&headers));
    }

    #[test]
    fn an_odd_host_header_is_not_echoed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("kiln.example:8080"));
        assert_eq!(origin_of(&headers), "http://kiln.example:8080");
        headers.insert(header::HOST, HeaderValue::from_static("a\"><script>"));
        assert_eq!(origin_of(&headers), "http://localhost");
    }
}
