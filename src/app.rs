//! Shared state and the router.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::api::paths;
use crate::config::ServeConfig;
use crate::db::Db;
use crate::domain::Permission;
use crate::http::{
    builds, files, health, indexes, mirrors, promotions, results, simple, tokens, trash, ui,
    upload, webhooks,
};
use crate::service::mirror::Mirrors;
use crate::storage::Storage;

/// Largest JSON API request body.
pub const MAX_API_BODY: usize = 64 * 1024;
/// Largest build and result body: they carry up to 64 KiB of log tail, JSON-escaped.
pub const MAX_REPORT_BODY: usize = 512 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The metadata database.
    pub db: Db,
    /// The blob store.
    pub storage: Storage,
    /// The resolved configuration.
    pub config: Arc<ServeConfig>,
    /// Compiled HTML templates.
    pub templates: Arc<minijinja::Environment<'static>>,
    /// Rendered simple pages.
    pub pages: Arc<crate::http::page_cache::PageCache>,
    /// What reading each index takes, until its chain's settings change.
    pub access: Arc<crate::service::auth::AccessCache>,
    /// Mirror indexes' upstream fetches and the flights in progress.
    pub mirrors: Arc<Mirrors>,
    /// Sends webhook deliveries (and checks where they may go).
    pub webhooks: crate::upstream::WebhookClient,
    /// Cancelled when the server starts shutting down: long polls answer at once and
    /// stalled upload bodies are cut, so in-flight work ends quickly.
    pub stopping: tokio_util::sync::CancellationToken,
    /// This replica's name among the fleet (host, process, a random tag): who holds a
    /// fleet lease.
    pub replica: Arc<str>,
}

/// `host:pid:tag`, unique per process across a fleet.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kiln".to_owned());
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

impl AppState {
    /// What a promotion (or an automatic one after a stage report) reads.
    #[must_use]
    pub fn promoter(&self) -> crate::service::promote::Promoter<'_> {
        crate::service::promote::Promoter {
            db: &self.db,
            storage: &self.storage,
            mirrors: &self.mirrors,
            policies: &self.config.policies,
        }
    }

    /// Builds the state, compiling the templates.
    pub fn new(db: Db, storage: Storage, config: ServeConfig) -> anyhow::Result<Self> {
        let mut templates = minijinja::Environment::new();
        templates.add_template("project.html", include_str!("http/templates/project.html"))?;
        templates.add_template(
            "projects.html",
            include_str!("http/templates/projects.html"),
        )?;
        crate::http::ui::register(&mut templates)?;
        let mirrors = Mirrors::new(
            config.upstream_timeout,
            config.max_upload_bytes,
            config.tmp_dir(),
        )?;
        let webhooks = crate::upstream::WebhookClient::new(
            crate::service::webhooks::DELIVERY_TIMEOUT,
            &config.webhooks.allow_hosts,
        )?;
        Ok(Self {
            db,
            storage,
            webhooks,
            stopping: tokio_util::sync::CancellationToken::new(),
            replica: replica_name().into(),
            mirrors: Arc::new(mirrors),
            templates: Arc::new(templates),
            pages: Arc::new(crate::http::page_cache::PageCache::with_capacity(
                config.page_cache_bytes,
            )),
            access: Arc::default(),
            config: Arc::new(config),
        })
    }
}

/// Percent-decodes `+` in the path before routing. pip quotes every path segment, so
/// `/+f/…` and `/+simple/…` arrive as `/%2Bf/…`; `+` in a path means itself, so the two
/// spellings are the same resource. Nothing else is decoded here (a decoded `%2F` would
/// change which route matches); extractors decode parameters themselves.
pub fn decode_plus<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let uri = request.uri();
    if uri.path().contains("%2B") || uri.path().contains("%2b") {
        let path = uri.path().replace("%2B", "+").replace("%2b", "+");
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(rewritten) = path_and_query.parse() {
            parts.path_and_query = Some(rewritten);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// Who may call a route: the access table of `docs/architecture.md`. The services
/// enforce it; `tests/api/routes.rs` walks [`routes`] and checks every entry against a
/// private index with an anonymous caller and one holding only unrelated scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; the answer says nothing about any index.
    Public,
    /// Anyone; a redirect that only adds a slash (its target checks).
    Redirect,
    /// Reading the index in the path: `read` on every private index in its chain.
    Read,
    /// This permission on the index in the path.
    Index(Permission),
    /// This permission on an index the request body names.
    Body(Permission),
    /// Any valid token; the answer holds only what that token may manage.
    Token,
    /// Anyone; the answer holds only what the caller may read.
    Filtered,
}

/// How large a request body a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// [`MAX_API_BODY`].
    Api,
    /// [`MAX_REPORT_BODY`]: build and result bodies carry log tails.
    Report,
    /// The upload handler enforces its own, configurable limits while streaming.
    Upload,
}

/// One route: method, path template, who may call it, and its body limit.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The HTTP method.
    pub method: Method,
    /// The path template ([`crate::api::paths`]).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The exact rule, for the docs table.
    pub rule: &'static str,
    /// Its body limit.
    pub body: BodyLimit,
}

/// Every route of the server with its handler. The router is built from this list, so
/// a route exists only with an access entry.
#[allow(clippy::too_many_lines)]
pub fn routes() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Access::{Body, Filtered, Index, Public, Read, Redirect, Token};
    use BodyLimit::{Api, Report, Upload};
    use Permission::{Admin, Promote, Report as ReportPerm, Upload as UploadPerm};
    use axum::routing::{delete, patch};
    use paths as p;
    let r = |method: Method,
             path: &'static str,
             access: Access,
             rule: &'static str,
             body: BodyLimit,
             handler: MethodRouter<AppState>| {
        (
            RouteSpec {
                method,
                path,
                access,
                rule,
                body,
            },
            handler,
        )
    };
    vec![
        r(
            Method::GET,
            p::HEALTH,
            Public,
            "anyone",
            Api,
            get(health::health),
        ),
        r(
            Method::GET,
            p::METRICS,
            Public,
            "anyone (per-index series of public indexes only); with `--metrics-token`, only that bearer token, which sees every index",
            Api,
            get(health::metrics),
        ),
        r(
            Method::GET,
            p::INDEXES,
            Filtered,
            "anyone; lists the indexes the caller may read",
            Api,
            get(indexes::list_indexes),
        ),
        r(
            Method::POST,
            p::INDEXES,
            Body(Admin),
            "`admin` on the new index, or `upload` for a branch index (without `mirror_allow`); `read` on every base; a mirror needs `admin` on `*`",
            Api,
            post(indexes::create_index),
        ),
        r(
            Method::GET,
            p::INDEX,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(indexes::show_index),
        ),
        r(
            Method::PATCH,
            p::INDEX,
            Index(Admin),
            "`admin` on it; `read` on any new base; a mirror's URL or file origins need `admin` on `*`; clearing `promotion_only` needs `admin` on `*` and `force`",
            Api,
            patch(indexes::modify_index),
        ),
        r(
            Method::DELETE,
            p::INDEX,
            Index(Admin),
            "`admin` on it, or `upload` on a volatile index; a promotion-only one needs `admin` on `*` and `?force=true`",
            Api,
            delete(indexes::delete_index),
        ),
        r(
            Method::GET,
            p::TOKENS,
            Token,
            "any token; lists the tokens it may manage",
            Api,
            get(tokens::list_tokens),
        ),
        r(
            Method::POST,
            p::TOKENS,
            Token,
            "`admin` on every granted pattern",
            Api,
            post(tokens::create_token),
        ),
        r(
            Method::DELETE,
            p::TOKEN,
            Token,
            "its own token, or one within its `admin` scopes",
            Api,
            delete(tokens::revoke_token),
        ),
        r(
            Method::GET,
            p::WEBHOOKS,
            Token,
            "any token; lists the webhooks it owns or administers",
            Api,
            get(webhooks::list_webhooks),
        ),
        r(
            Method::POST,
            p::WEBHOOKS,
            Body(Admin),
            "`admin` on its index pattern; a loopback or private destination only if the server allows that host",
            Api,
            post(webhooks::create_webhook),
        ),
        r(
            Method::DELETE,
            p::WEBHOOK,
            Token,
            "its owner, or `admin` over its pattern",
            Api,
            delete(webhooks::remove_webhook),
        ),
        r(
            Method::GET,
            p::WEBHOOK_DELIVERIES,
            Token,
            "its owner, or `admin` over its pattern",
            Api,
            get(webhooks::list_deliveries),
        ),
        r(
            Method::GET,
            p::MIRROR,
            Read,
            "`read` on the mirror's chain",
            Api,
            get(mirrors::show_cache),
        ),
        r(
            Method::DELETE,
            p::MIRROR_PROJECT,
            Index(Admin),
            "`admin` on the mirror",
            Api,
            delete(mirrors::purge_project),
        ),
        r(
            Method::POST,
            p::MIRROR_REFRESH,
            Index(UploadPerm),
            "`upload` on the mirror",
            Api,
            post(mirrors::refresh_project),
        ),
        r(
            Method::GET,
            p::SIMPLE_BARE,
            Redirect,
            "anyone (adds the slash)",
            Api,
            get(simple::add_trailing_slash),
        ),
        r(
            Method::GET,
            p::SIMPLE,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(simple::list_projects),
        ),
        r(
            Method::GET,
            p::SIMPLE_PROJECT_BARE,
            Redirect,
            "anyone (adds the slash)",
            Api,
            get(simple::add_trailing_slash),
        ),
        r(
            Method::GET,
            p::SIMPLE_PROJECT,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(simple::show_project),
        ),
        r(
            Method::GET,
            p::FILE,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(files::get_file),
        ),
        r(
            Method::POST,
            p::UPLOAD_BARE,
            Index(UploadPerm),
            "`upload` on it (stage, not promotion-only)",
            Upload,
            post(upload::upload_file),
        ),
        r(
            Method::GET,
            p::UPLOAD_BARE,
            Read,
            "`read` on each private index in its chain",
            Upload,
            get(indexes::show_index_or_page),
        ),
        r(
            Method::POST,
            p::UPLOAD,
            Index(UploadPerm),
            "`upload` on it (stage, not promotion-only)",
            Upload,
            post(upload::upload_file),
        ),
        r(
            Method::GET,
            p::UPLOAD,
            Read,
            "`read` on each private index in its chain",
            Upload,
            get(indexes::show_index_or_page),
        ),
        r(
            Method::POST,
            p::BUILD,
            Index(UploadPerm),
            "`upload` on the index",
            Report,
            post(builds::claim_build),
        ),
        r(
            Method::GET,
            p::BUILD,
            Read,
            "`read` on each private index in its chain",
            Report,
            get(builds::show_build),
        ),
        r(
            Method::POST,
            p::BUILD_HEARTBEAT,
            Index(UploadPerm),
            "`upload` on the index, and the lease",
            Report,
            post(builds::heartbeat_build),
        ),
        r(
            Method::POST,
            p::BUILD_COMPLETE,
            Index(UploadPerm),
            "`upload` on the index, and the lease",
            Report,
            post(builds::complete_build),
        ),
        r(
            Method::POST,
            p::BUILD_FAIL,
            Index(UploadPerm),
            "`upload` on the index, and the lease",
            Report,
            post(builds::fail_build),
        ),
        r(
            Method::POST,
            p::RESULTS,
            Body(ReportPerm),
            "`report` on the index it names, which must list the artifact",
            Report,
            post(results::report_result),
        ),
        r(
            Method::GET,
            p::ARTIFACT_RESULTS,
            Read,
            "`read` on an index that lists the artifact; shows results of readable indexes",
            Report,
            get(results::show_results),
        ),
        r(
            Method::GET,
            p::RELEASE,
            Read,
            "`read` on each private index in its chain",
            Report,
            get(results::show_release),
        ),
        r(
            Method::POST,
            p::RELEASE_YANK,
            Index(UploadPerm),
            "`promote` on a promotion-only index, else `upload`",
            Report,
            post(promotions::yank_release),
        ),
        r(
            Method::POST,
            p::RELEASE_UNYANK,
            Index(UploadPerm),
            "`promote` on a promotion-only index, else `upload`",
            Report,
            post(promotions::unyank_release),
        ),
        r(
            Method::POST,
            p::RELEASE_REMOVE,
            Index(UploadPerm),
            "`upload` on the index (never a promotion-only one)",
            Api,
            post(trash::remove_release),
        ),
        r(
            Method::GET,
            p::TRASH,
            Filtered,
            "anyone; the trash of the indexes the caller may read",
            Api,
            get(trash::list_trash),
        ),
        r(
            Method::POST,
            p::TRASH_RESTORE,
            Token,
            "`upload` on the entry's index",
            Api,
            post(trash::restore_trash),
        ),
        r(
            Method::POST,
            p::BRANCHES_GONE,
            Token,
            "`upload` on each branch index it removes",
            Api,
            post(trash::branches_gone),
        ),
        r(
            Method::POST,
            p::BRANCHES_KEEP,
            Token,
            "`upload` on each branch index it removes",
            Api,
            post(trash::branches_keep),
        ),
        r(
            Method::GET,
            p::EXPORT,
            Token,
            "`admin` on `*`",
            Api,
            get(trash::export),
        ),
        r(
            Method::GET,
            p::EXPORT_BLOB,
            Token,
            "`admin` on `*`",
            Api,
            get(trash::export_blob),
        ),
        r(
            Method::POST,
            p::TRASH_RELEASE,
            Token,
            "`admin` on the entry's index",
            Api,
            post(trash::release_trash),
        ),
        r(
            Method::POST,
            p::GC,
            Token,
            "`admin` on `*`",
            Api,
            post(trash::collect_garbage),
        ),
        r(
            Method::POST,
            p::PROMOTIONS,
            Body(Promote),
            "`promote` on the target, `read` on a private source",
            Report,
            post(promotions::promote_release),
        ),
        r(
            Method::GET,
            p::PROMOTIONS,
            Filtered,
            "anyone; promotions into indexes the caller may read",
            Report,
            get(promotions::list_promotions),
        ),
        r(
            Method::GET,
            p::EVENTS,
            Filtered,
            "anyone; events of indexes the caller may read or administers, token events to their scopes' admins",
            Report,
            get(promotions::list_events),
        ),
        // The web UI (read-only; `http::ui`). Its pages also accept the sign-in cookie.
        r(
            Method::GET,
            p::HOME,
            Filtered,
            "anyone; shows the indexes, leases and events the caller may read",
            Api,
            get(ui::home),
        ),
        r(
            Method::GET,
            p::FAVICON,
            Public,
            "anyone",
            Api,
            get(ui::favicon),
        ),
        r(
            Method::GET,
            p::SIGN_IN,
            Public,
            "anyone",
            Api,
            get(ui::sign_in_form),
        ),
        r(
            Method::POST,
            p::SIGN_IN,
            Public,
            "anyone; sets the cookie only for a token Kiln knows",
            Api,
            post(ui::sign_in),
        ),
        r(
            Method::POST,
            p::SIGN_OUT,
            Public,
            "anyone (clears the cookie)",
            Api,
            post(ui::sign_out),
        ),
        r(
            Method::GET,
            p::EVENTS_PAGE,
            Filtered,
            "anyone; events the caller may see, as `GET /+api/v1/events`",
            Api,
            get(ui::events_page),
        ),
        r(
            Method::GET,
            p::FEED,
            Filtered,
            "anyone; events the caller may see, as `GET /+api/v1/events`",
            Api,
            get(ui::server_feed),
        ),
        r(
            Method::GET,
            p::BADGE,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(ui::project_badge),
        ),
        r(
            Method::GET,
            p::STAGE_BADGE,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(ui::stage_badge),
        ),
        r(
            Method::GET,
            p::NAMESPACE_PAGE,
            Filtered,
            "anyone; lists the namespace's indexes the caller may read",
            Api,
            get(ui::namespace),
        ),
        r(
            Method::GET,
            p::INDEX_FEED,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(ui::index_feed),
        ),
        r(
            Method::GET,
            p::PROJECT_PAGE,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(ui::project_page),
        ),
        r(
            Method::GET,
            p::RELEASE_PAGE,
            Read,
            "`read` on each private index in its chain",
            Api,
            get(ui::release_page),
        ),
    ]
}

/// All routes ([`routes`]). Literal segments (`+api`, `+simple`, `+f`) win over
/// `{ns}/{name}`, and index names cannot start with `+`, so the two never collide.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (spec, handler) in routes() {
        let handler = match spec.body {
            BodyLimit::Api => handler.layer(DefaultBodyLimit::max(MAX_API_BODY)),
            BodyLimit::Report => handler.layer(DefaultBodyLimit::max(MAX_REPORT_BODY)),
            BodyLimit::Upload => handler.layer(DefaultBodyLimit::disable()),
        };
        router = router.route(spec.path, handler);
    }
    router
        .layer(axum::middleware::from_fn(count_request))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Counts a request by route template, method and status, and times it (until the
/// response head).
async fn count_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = crate::metrics::metrics();
    metrics
        .request_seconds
        .get_or_create(&crate::metrics::RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access table in docs/architecture.md is [`routes`], row for row.
    #[test]
    fn the_architecture_doc_lists_every_route_with_its_rule() {
        let doc = include_str!("../docs/architecture.md");
        let rows: Vec<String> = routes()
            .iter()
            .map(|(spec, _)| format!("| `{} {}` | {} |", spec.method, spec.path, spec.rule))
            .collect();
        let missing: Vec<&String> = rows
            .iter()
            .filter(|row| !doc.contains(row.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/architecture.md's access table lacks {} row(s); the whole table is:\n| route | who may call it |\n| --- | --- |\n{}",
            missing.len(),
            rows.join("\n")
        );
    }
}
