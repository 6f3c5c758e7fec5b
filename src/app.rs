//! Shared state and the router.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;
use crate::db::Db;
use crate::http::{
    builds, files, health, indexes, mirrors, promotions, results, simple, tokens, upload,
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
    /// What reading each index takes, per write generation.
    pub access: Arc<crate::service::auth::AccessCache>,
    /// Mirror indexes' upstream fetches and the flights in progress.
    pub mirrors: Arc<Mirrors>,
}

impl AppState {
    /// Builds the state, compiling the templates.
    pub fn new(db: Db, storage: Storage, config: ServeConfig) -> anyhow::Result<Self> {
        let mut templates = minijinja::Environment::new();
        templates.add_template("project.html", include_str!("http/templates/project.html"))?;
        templates.add_template(
            "projects.html",
            include_str!("http/templates/projects.html"),
        )?;
        let mirrors = Mirrors::new(
            config.upstream_timeout,
            config.max_upload_bytes,
            config.tmp_dir(),
        )?;
        Ok(Self {
            db,
            storage,
            mirrors: Arc::new(mirrors),
            config: Arc::new(config),
            templates: Arc::new(templates),
            pages: Arc::default(),
            access: Arc::default(),
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

/// All routes. Literal segments (`+api`, `+simple`, `+f`) win over `{ns}/{name}`, and index
/// names cannot start with `+`, so the two never collide.
pub fn router(state: AppState) -> Router {
    let uploads = Router::new()
        .route(
            "/{ns}/{name}",
            post(upload::upload_file).get(indexes::show_index),
        )
        .route(
            "/{ns}/{name}/",
            post(upload::upload_file).get(indexes::show_index),
        )
        // The upload handler enforces its own, configurable limits while streaming.
        .layer(DefaultBodyLimit::disable());
    let release = "/+api/v1/builds/{ns}/{name}/{project}/{version}";
    let reports = Router::new()
        .route(release, post(builds::claim_build).get(builds::show_build))
        .route(
            &format!("{release}/heartbeat"),
            post(builds::heartbeat_build),
        )
        .route(&format!("{release}/complete"), post(builds::complete_build))
        .route(&format!("{release}/fail"), post(builds::fail_build))
        .route("/+api/v1/results", post(results::report_result))
        .route("/+api/v1/results/{sha256}", get(results::show_results))
        .route(
            "/+api/v1/releases/{ns}/{name}/{project}/{version}",
            get(results::show_release),
        )
        .route(
            "/+api/v1/releases/{ns}/{name}/{project}/{version}/yank",
            post(promotions::yank_release),
        )
        .route(
            "/+api/v1/releases/{ns}/{name}/{project}/{version}/unyank",
            post(promotions::unyank_release),
        )
        .route(
            "/+api/v1/promotions",
            post(promotions::promote_release).get(promotions::list_promotions),
        )
        .route("/+api/v1/events", get(promotions::list_events))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BODY));
    Router::new()
        .route("/+health", get(health::health))
        .route(
            "/+api/v1/indexes",
            get(indexes::list_indexes).post(indexes::create_index),
        )
        .route(
            "/+api/v1/indexes/{ns}/{name}",
            get(indexes::show_index)
                .patch(indexes::modify_index)
                .delete(indexes::delete_index),
        )
        .route(
            "/+api/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route(
            "/+api/v1/tokens/{id}",
            axum::routing::delete(tokens::revoke_token),
        )
        .route("/+api/v1/mirrors/{ns}/{name}", get(mirrors::show_cache))
        .route(
            "/+api/v1/mirrors/{ns}/{name}/{project}",
            axum::routing::delete(mirrors::purge_project),
        )
        .route(
            "/+api/v1/mirrors/{ns}/{name}/{project}/refresh",
            post(mirrors::refresh_project),
        )
        .route("/{ns}/{name}/+simple", get(simple::add_trailing_slash))
        .route("/{ns}/{name}/+simple/", get(simple::list_projects))
        .route(
            "/{ns}/{name}/+simple/{project}",
            get(simple::add_trailing_slash),
        )
        .route("/{ns}/{name}/+simple/{project}/", get(simple::show_project))
        .route("/{ns}/{name}/+f/{sha256}/{filename}", get(files::get_file))
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .merge(uploads)
        .merge(reports)
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
