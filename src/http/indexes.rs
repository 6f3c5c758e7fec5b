//! The index management API under `/+api/v1/indexes`.

use axum::Json;
use axum::extract::{FromRequest, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::IndexPath;
use crate::app::AppState;
use crate::domain::{
    DEFAULT_MIRROR_TTL_SECONDS, Index, IndexKind, IndexName, IndexSettings, MirrorSettings,
};
use crate::service::auth::Caller;
use crate::service::indexes::{self, IndexPatch};

/// JSON body extractor whose rejections are problem documents.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// An index as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct IndexView {
    /// The index and its settings.
    #[serde(flatten)]
    pub index: Index,
    /// Where pip and uv read it.
    pub simple_url: String,
    /// Where twine uploads to it.
    pub upload_url: String,
    /// Project names this index (or a stage index it inherits) has files of, which the
    /// mirrors in its chain therefore do not serve (the dependency-confusion guard; see
    /// `mirror_allow`). Shown by `GET` of one index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_shadowed: Vec<String>,
}

impl From<Index> for IndexView {
    fn from(index: Index) -> Self {
        let name = index.name.clone();
        Self {
            index,
            simple_url: format!("/{name}/+simple/"),
            upload_url: format!("/{name}/"),
            mirror_shadowed: Vec::new(),
        }
    }
}

/// Body of `POST /+api/v1/indexes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    name: IndexName,
    /// `stage` unless `mirror_url` is given.
    #[serde(default)]
    kind: Option<IndexKind>,
    #[serde(default)]
    bases: Vec<IndexName>,
    #[serde(default)]
    volatile: bool,
    #[serde(default)]
    promotion_only: bool,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    mirror_url: Option<String>,
    #[serde(default)]
    mirror_username: Option<String>,
    #[serde(default)]
    mirror_password: Option<String>,
    #[serde(default)]
    mirror_ttl_seconds: Option<u64>,
    #[serde(default)]
    mirror_allow: Vec<String>,
}

/// Body of `PATCH /+api/v1/indexes/{ns}/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifyIndex {
    bases: Option<Vec<IndexName>>,
    volatile: Option<bool>,
    promotion_only: Option<bool>,
    private: Option<bool>,
    description: Option<String>,
    mirror_url: Option<String>,
    mirror_username: Option<String>,
    mirror_password: Option<String>,
    mirror_ttl_seconds: Option<u64>,
    mirror_allow: Option<Vec<String>>,
}

/// `GET /+api/v1/indexes`
pub async fn list_indexes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let all = indexes::list_indexes(&state.db, &caller).await?;
    let views: Vec<IndexView> = all.into_iter().map(IndexView::from).collect();
    Ok(Json(views).into_response())
}

/// `POST /+api/v1/indexes`
pub async fn create_index(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateIndex>,
) -> Result<Response, ApiError> {
    let kind = body.kind.unwrap_or(if body.mirror_url.is_some() {
        IndexKind::Mirror
    } else {
        IndexKind::Stage
    });
    let mirror = body.mirror_url.map(|url| MirrorSettings {
        url,
        username: body.mirror_username,
        password: body.mirror_password,
        ttl_seconds: body
            .mirror_ttl_seconds
            .unwrap_or(DEFAULT_MIRROR_TTL_SECONDS),
    });
    let settings = IndexSettings {
        kind,
        bases: body.bases,
        volatile: body.volatile,
        promotion_only: body.promotion_only,
        private: body.private,
        description: body.description,
        branch: body.branch,
        mirror,
        mirror_allow: body.mirror_allow,
    };
    let index = indexes::create_index(&state.db, &caller, &body.name, &settings).await?;
    Ok((StatusCode::CREATED, Json(IndexView::from(index))).into_response())
}

/// `GET /+api/v1/indexes/{ns}/{name}` (and `GET /{ns}/{name}/`)
pub async fn show_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (index, shadowed) = indexes::show_index(&state.db, &caller, &name).await?;
    let mut view = IndexView::from(index);
    view.mirror_shadowed = shadowed;
    Ok(Json(view).into_response())
}

/// `PATCH /+api/v1/indexes/{ns}/{name}`
pub async fn modify_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    caller: Caller,
    ApiJson(body): ApiJson<ModifyIndex>,
) -> Result<Response, ApiError> {
    let patch = IndexPatch {
        bases: body.bases,
        volatile: body.volatile,
        promotion_only: body.promotion_only,
        private: body.private,
        description: body.description,
        mirror_url: body.mirror_url,
        mirror_username: body.mirror_username,
        mirror_password: body.mirror_password,
        mirror_ttl_seconds: body.mirror_ttl_seconds,
        mirror_allow: body.mirror_allow,
    };
    let index = indexes::modify_index(&state.db, &caller, &name, &patch).await?;
    Ok(Json(IndexView::from(index)).into_response())
}

/// `DELETE /+api/v1/indexes/{ns}/{name}`
pub async fn delete_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    indexes::delete_index(&state.db, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
