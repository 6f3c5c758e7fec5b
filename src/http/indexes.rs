//! The index management API under `/+api/v1/indexes`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::IndexPath;
use crate::api::{CreateIndex, DeleteQuery, IndexView, ModifyIndex};
use crate::app::AppState;
use crate::service::auth::Caller;
use crate::service::indexes::{self, IndexPatch};

/// JSON body extractor whose rejections are problem documents, and whose body must
/// arrive within the upload idle timeout (`--upload-idle-timeout`): a client that stalls
/// its body gets a 408 instead of holding a connection and a task forever.
pub struct ApiJson<T>(pub T);

impl<T> axum::extract::FromRequest<AppState> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let deadline = state.config.upload_limits.idle_timeout;
        match tokio::time::timeout(deadline, axum::Json::<T>::from_request(request, state)).await {
            Ok(Ok(axum::Json(value))) => Ok(Self(value)),
            Ok(Err(rejection)) => Err(rejection.into()),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}s (`--upload-idle-timeout`); send it whole",
                    deadline.as_secs()
                ),
            )),
        }
    }
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
    let (name, settings) = body.settings();
    let index = indexes::create_index(&state.db, &caller, &name, &settings).await?;
    Ok((StatusCode::CREATED, Json(IndexView::from(index))).into_response())
}

/// `GET /+api/v1/indexes/{ns}/{name}` (and `GET /{ns}/{name}/`)
pub async fn show_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (index, shadowed, usage) = indexes::show_index(&state.db, &caller, &name).await?;
    let mut view = IndexView::from(index);
    view.mirror_shadowed = shadowed;
    view.usage = Some(usage);
    Ok(Json(view).into_response())
}

/// `GET /{ns}/{name}` and `GET /{ns}/{name}/`: the index page for a browser (`Accept:
/// text/html`), the JSON view for everyone else (see [`show_index`]).
pub async fn show_index_or_page(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    request: axum::extract::Request,
) -> Response {
    use axum::extract::FromRequestParts as _;
    let (mut parts, _) = request.into_parts();
    if super::ui::wants_html(&parts.headers) {
        return match super::ui::Viewer::from_request_parts(&mut parts, &state).await {
            Ok(viewer) => super::ui::index_page(&state, &viewer, &name, parts.uri.query())
                .await
                .into_response(),
            Err(refused) => refused.into_response(),
        };
    }
    match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => show_index(State(state), IndexPath(name), caller)
            .await
            .into_response(),
        Err(refused) => refused.into_response(),
    }
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
        mirror_file_origins: body.mirror_file_origins,
        force: body.force,
    };
    let index = indexes::modify_index(&state.db, &caller, &name, &patch).await?;
    Ok(Json(IndexView::from(index)).into_response())
}

/// `DELETE /+api/v1/indexes/{ns}/{name}`
pub async fn delete_index(
    State(state): State<AppState>,
    IndexPath(name): IndexPath,
    caller: Caller,
    Query(query): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    indexes::delete_index(
        &state.db,
        &caller,
        &name,
        query.force,
        state.config.gc.trash_for,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
