//! Extractors: they turn raw request parts into domain values before a handler runs.

use axum::extract::{FromRef, FromRequestParts, Path};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::IndexName;
use crate::service::ServiceError;
use crate::service::auth::{Caller, authenticate, needs_token};

/// The caller of any request: a token if the request carries one, else anonymous. A
/// token that is present but invalid is refused rather than ignored, so a typo is seen at
/// once. What the caller may do is decided by the service it calls, never here.
///
/// Accepted forms: `Authorization: Bearer <token>`, and HTTP Basic with user `__token__`
/// and the token as password (what twine, `uv publish` and pip send).
impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(Self::anonymous());
        }
        let state = AppState::from_ref(state);
        let secret = token_from_headers(parts)?;
        let principal = authenticate(&state.db, &secret).await?;
        Ok(Self::from(principal))
    }
}

fn token_from_headers(parts: &Parts) -> Result<String, ServiceError> {
    let missing = needs_token;
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| ServiceError::Forbidden("the Authorization header is not ASCII".into()))?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(missing)?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    ServiceError::Forbidden("the Basic credentials are not valid base64".into())
                })?;
            let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            if user != "__token__" {
                return Err(ServiceError::Forbidden(
                    "Kiln authenticates by token: use the username `__token__` and the token as the password".into(),
                ));
            }
            if password.is_empty() {
                return Err(missing());
            }
            Ok(password.to_owned())
        }
        _ => Err(missing()),
    }
}

/// The decoded path parameters of a route, by name.
struct PathParams(Vec<(String, String)>);

impl PathParams {
    async fn from_request_parts<S: Send + Sync>(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(Self(params))
    }

    /// The parameter `key`, or `""` if the route has none.
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }
}

/// The index named by the `{ns}/{name}` path segments.
#[derive(Debug, Clone)]
pub struct IndexPath(pub IndexName);

impl<S: Send + Sync> FromRequestParts<S> for IndexPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = PathParams::from_request_parts(parts, state).await?;
        let (ns, name) = (params.get("ns"), params.get("name"));
        IndexName::from_parts(ns, name)
            .map(Self)
            .map_err(|e| ApiError::not_found(format!("no index `{ns}/{name}`: {e}")))
    }
}

/// A release named by `{ns}/{name}/{project}/{version}` path segments.
#[derive(Debug, Clone)]
pub struct ReleasePath(pub IndexName, pub crate::domain::Release);

impl<S: Send + Sync> FromRequestParts<S> for ReleasePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let IndexPath(index) = IndexPath::from_request_parts(parts, state).await?;
        let params = PathParams::from_request_parts(parts, state).await?;
        let release = crate::domain::Release::parse(params.get("project"), params.get("version"))
            .map_err(ServiceError::Invalid)?;
        Ok(Self(index, release))
    }
}
