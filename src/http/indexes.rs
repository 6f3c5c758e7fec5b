//! The index management API under `/+api/v1/indexes`.

use axum::Json;
use axum::extract::{FromRequest, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{IndexPath, User};
use crate::app::AppState;
use crate::domain::{Index, IndexKind, IndexName, IndexSettings};
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
}

impl From<Index> for IndexView {
    fn from(index: Index) -> Self {
        let name = index.name.clone();
        Self {
            index,
            simple_url: format!("/{name}/+simple/"),
            upload_url: format!("/{name}/"),
        }
    }
}

/// Body of `POST /+api/v1/indexes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    name: IndexName,
    #[serde(default = "default_kind")]
    kind: IndexKind,
    #[serde(default)]
    bases: Vec<IndexName>,
    #[serde(default)]
    volatile: bool,
    #[serde(default)]
    promotion_only: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    branch: Option<String>,
}

fn default_kind() -> IndexKind {
    IndexKind::Stage
}

/// Body of `PATCH /+api/v1/indexes/{ns}/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifyIndex {
    bases: Option<Vec<IndexName>>,
    volatile: Option<bool>,
    promotion_only: Option<bool>,
    description: Option<String>,
}

/// `GET /+api/v1/indexes`
pub async fn list_indexes(State(state): State<AppState>) -> Result<Response, ApiError> {
    let all = state
        .db
        .list_indexes()
        .await
        .map_err(crate::service::ServiceError::from)?;
    let views: Vec<IndexView> = all.into_iter().map(IndexView::from).collect();
    Ok(Json(views).into_response())
}

/// `POST /+api/v1/indexes`
pub async fn create_index(
    State(state): State<AppState>,
    User(_user): User,
    ApiJson(body): ApiJson<CreateIndex>,
) -> Result<Response, ApiError> {
    let settings = IndexSettings {
        kind: body.kind,
        bases: body.bases,
        volatile: body.volatile,
        promotion_only: body.promotion_only,
        description: body.description,
        branch: body.branch,
    };
    let index = indexes::create_index(&state.db, &body.name, &settings).await?;
    Ok((StatusCode::CREATED, Json(IndexView::from(index))).into_response())
}

/// `GET /+api/v1/indexes/{ns}/{name}` (and `GET /{ns}/{name}/`)
pub async fn show_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
) -> Result<Response, ApiError> {
    let index = indexes::get_index(&state.db, &name).await?;
    Ok(Json(IndexView::from(index)).into_response())
}

/// `PATCH /+api/v1/indexes/{ns}/{name}`
pub async fn modify_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    User(_user): User,
    ApiJson(body): ApiJson<ModifyIndex>,
) -> Result<Response, ApiError> {
    let patch = IndexPatch {
        bases: body.bases,
        volatile: body.volatile,
        promotion_only: body.promotion_only,
        description: body.description,
    };
    let index = indexes::modify_index(&state.db, &name, &patch).await?;
    Ok(Json(IndexView::from(index)).into_response())
}

/// `DELETE /+api/v1/indexes/{ns}/{name}`
pub async fn delete_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    User(_user): User,
) -> Result<Response, ApiError> {
    indexes::delete_index(&state.db, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
