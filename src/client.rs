//! A typed client for Kiln's JSON API, used by the CLI and by tests.

use serde::de::DeserializeOwned;
use serde_json::json;

use crate::domain::{IndexName, IndexSettings};
use crate::http::indexes::IndexView;
use crate::service::indexes::IndexPatch;

/// Default server URL for client subcommands.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3141";

/// What went wrong talking to a Kiln server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error; `detail` is its one-line reason.
    #[error("{detail} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's reason.
        detail: String,
    },
    /// The server could not be reached.
    #[error(
        "cannot reach Kiln at {url}: {source}; is `kiln serve` running there, and is --server / KILN_SERVER right?"
    )]
    Unreachable {
        /// The URL that was tried.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The server URL is malformed.
    #[error("server URL `{0}` is not a valid http(s) URL")]
    BadServerUrl(String),
    /// The response was not what the API promises.
    #[error("unexpected response from {url}: {reason}")]
    Unexpected {
        /// The URL that was requested.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// A Kiln API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: url::Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `server` (e.g. `http://127.0.0.1:3141`).
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let mut base =
            url::Url::parse(server).map_err(|_| ClientError::BadServerUrl(server.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::BadServerUrl(server.to_owned()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Unexpected {
                url: server.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// The absolute URL of a server path such as `+api/v1/indexes`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        self.base
            .join(path.trim_start_matches('/'))
            .map_or_else(|_| format!("{}{path}", self.base), |u| u.to_string())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Option<T>, ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.to_owned(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.to_owned(),
                source,
            })?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
            return Err(ClientError::Api {
                status: status.as_u16(),
                detail,
            });
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Unexpected {
                url: url.to_owned(),
                reason: e.to_string(),
            })
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        self.send(request, url)
            .await?
            .ok_or_else(|| ClientError::Unexpected {
                url: url.to_owned(),
                reason: "empty body".into(),
            })
    }

    /// Every index.
    pub async fn list_indexes(&self) -> Result<Vec<IndexView>, ClientError> {
        let url = self.url("+api/v1/indexes");
        self.expect(self.http.get(&url), &url).await
    }

    /// One index.
    pub async fn get_index(&self, name: &IndexName) -> Result<IndexView, ClientError> {
        let url = self.url(&format!("+api/v1/indexes/{name}"));
        self.expect(self.http.get(&url), &url).await
    }

    /// Creates an index.
    pub async fn create_index(
        &self,
        name: &IndexName,
        settings: &IndexSettings,
    ) -> Result<IndexView, ClientError> {
        let url = self.url("+api/v1/indexes");
        let body = json!({
            "name": name,
            "kind": settings.kind,
            "bases": settings.bases,
            "volatile": settings.volatile,
            "promotion_only": settings.promotion_only,
            "description": settings.description,
        });
        self.expect(self.http.post(&url).json(&body), &url).await
    }

    /// Changes an index's settings.
    pub async fn modify_index(
        &self,
        name: &IndexName,
        patch: &IndexPatch,
    ) -> Result<IndexView, ClientError> {
        let url = self.url(&format!("+api/v1/indexes/{name}"));
        let mut body = serde_json::Map::new();
        if let Some(bases) = &patch.bases {
            body.insert("bases".into(), json!(bases));
        }
        if let Some(volatile) = patch.volatile {
            body.insert("volatile".into(), json!(volatile));
        }
        if let Some(promotion_only) = patch.promotion_only {
            body.insert("promotion_only".into(), json!(promotion_only));
        }
        if let Some(description) = &patch.description {
            body.insert("description".into(), json!(description));
        }
        self.expect(self.http.patch(&url).json(&body), &url).await
    }

    /// Deletes an index.
    pub async fn delete_index(&self, name: &IndexName) -> Result<(), ClientError> {
        let url = self.url(&format!("+api/v1/indexes/{name}"));
        self.send::<serde_json::Value>(self.http.delete(&url), &url)
            .await?;
        Ok(())
    }
}
