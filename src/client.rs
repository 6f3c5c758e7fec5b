//! A typed client for Kiln's JSON API, used by the CLI and by tests.

use serde::de::DeserializeOwned;

use crate::api::paths::{self, fill};
use crate::api::{
    ArtifactResults, BranchCleanupView, BranchesBody, BuildView, ClaimBuild, CreateIndex,
    CreatedToken, CreatedWebhook, DeliveryView, EventView, GcBody, GcReport, IndexView, LeaseBody,
    MirrorCacheView, ModifyIndex, PromoteRequest, PromotionOutcome, PromotionView, PurgeView,
    RefreshView, ReleaseStatus, RemoveBody, ResultView, StageReport, TokenRequest, TokenView,
    TrashView, WebhookRequest, WebhookView, YankBody, YankView,
};
use crate::domain::{IndexName, IndexSettings};

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
        "cannot reach Kiln at {url}: {}; is `kiln serve` running there, and is --server / KILN_SERVER right?",
        error_chain(cause)
    )]
    Unreachable {
        /// The URL that was tried.
        url: String,
        /// The transport error.
        cause: reqwest::Error,
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
        let (status, bytes) = self.exchange(request, url).await?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
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

    /// Sends a request with the token and reads the whole answer.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, bytes::Bytes), ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let unreachable = |cause| ClientError::Unreachable {
            url: url.to_owned(),
            cause,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        Ok((status, bytes))
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
        let url = self.url(paths::INDEXES);
        self.expect(self.http.get(&url), &url).await
    }

    /// One index.
    pub async fn get_index(&self, name: &IndexName) -> Result<IndexView, ClientError> {
        let url = self.url(&fill(paths::INDEX, &[("index", name.to_string())]));
        self.expect(self.http.get(&url), &url).await
    }

    /// Creates an index.
    pub async fn create_index(
        &self,
        name: &IndexName,
        settings: &IndexSettings,
    ) -> Result<IndexView, ClientError> {
        let url = self.url(paths::INDEXES);
        let body = CreateIndex::new(name, settings);
        self.expect(self.http.post(&url).json(&body), &url).await
    }

    /// Changes an index's settings.
    pub async fn modify_index(
        &self,
        name: &IndexName,
        patch: &ModifyIndex,
    ) -> Result<IndexView, ClientError> {
        let url = self.url(&fill(paths::INDEX, &[("index", name.to_string())]));
        self.expect(self.http.patch(&url).json(patch), &url).await
    }

    /// Deletes an index; `force` is needed (with admin on `*`) for a promotion-only one.
    pub async fn delete_index(&self, name: &IndexName, force: bool) -> Result<(), ClientError> {
        let mut url = self.url(&fill(paths::INDEX, &[("index", name.to_string())]));
        if force {
            url.push_str("?force=true");
        }
        self.send::<serde_json::Value>(self.http.delete(&url), &url)
            .await?;
        Ok(())
    }

    /// Creates a token; the answer holds the secret, shown this once.
    pub async fn create_token(&self, request: &TokenRequest) -> Result<CreatedToken, ClientError> {
        let url = self.url(paths::TOKENS);
        self.expect(self.http.post(&url).json(request), &url).await
    }

    /// The tokens this token may manage.
    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        let url = self.url(paths::TOKENS);
        self.expect(self.http.get(&url), &url).await
    }

    /// Revokes a token by id.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenView, ClientError> {
        let url = self.url(&fill(paths::TOKEN, &[("id", &id.to_string())]));
        self.expect(self.http.delete(&url), &url).await
    }

    /// Makes a webhook subscription (the answer holds its secret, shown once).
    pub async fn create_webhook(
        &self,
        request: &WebhookRequest,
    ) -> Result<CreatedWebhook, ClientError> {
        let url = self.url(paths::WEBHOOKS);
        self.expect(self.http.post(&url).json(request), &url).await
    }

    /// The webhook subscriptions this token may manage.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookView>, ClientError> {
        let url = self.url(paths::WEBHOOKS);
        self.expect(self.http.get(&url), &url).await
    }

    /// Removes a webhook subscription and its delivery log.
    pub async fn remove_webhook(&self, id: i64) -> Result<WebhookView, ClientError> {
        let url = self.url(&fill(paths::WEBHOOK, &[("id", &id.to_string())]));
        self.expect(self.http.delete(&url), &url).await
    }

    /// A webhook subscription's newest `limit` deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryView>, ClientError> {
        let url = self.url(&fill(paths::WEBHOOK_DELIVERIES, &[("id", &id.to_string())]));
        self.expect(self.http.get(&url).query(&[("limit", limit)]), &url)
            .await
    }

    fn build_url(&self, index: &IndexName, project: &str, version: &str, action: &str) -> String {
        let template = match action {
            "heartbeat" => paths::BUILD_HEARTBEAT,
            "complete" => paths::BUILD_COMPLETE,
            "fail" => paths::BUILD_FAIL,
            _ => paths::BUILD,
        };
        self.url(&fill(template, &release_params(index, project, version)))
    }

    /// Claims the build of a release (see `service::builds`).
    pub async fn claim_build(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
        claim: &ClaimBuild,
    ) -> Result<BuildView, ClientError> {
        let url = self.build_url(index, project, version, "");
        self.expect(self.http.post(&url).json(claim), &url).await
    }

    /// The build state of a release; with `wait`, long-polls while it is `building`.
    pub async fn show_build(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
        wait: Option<std::time::Duration>,
    ) -> Result<BuildView, ClientError> {
        self.show_build_for(index, project, version, None, wait)
            .await
    }

    /// [`Client::show_build`] of the build for `target` (`None`: the release's first).
    pub async fn show_build_for(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
        target: Option<&crate::domain::BuildTarget>,
        wait: Option<std::time::Duration>,
    ) -> Result<BuildView, ClientError> {
        let url = self.build_url(index, project, version, "");
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(wait) = wait {
            query.push(("wait", format!("{:.3}", wait.as_secs_f64())));
        }
        if let Some(target) = target {
            query.push(("target", target.to_string()));
        }
        self.expect(self.http.get(&url).query(&query), &url).await
    }

    /// Moves a lease the caller holds: `heartbeat`, `complete` or `fail`.
    pub async fn lease_action(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
        action: &str,
        body: &LeaseBody,
    ) -> Result<BuildView, ClientError> {
        let url = self.build_url(index, project, version, action);
        self.expect(self.http.post(&url).json(body), &url).await
    }

    /// Uploads a wheel or sdist with the legacy upload API, under a build lease if given.
    pub async fn upload_file(
        &self,
        index: &IndexName,
        path: &std::path::Path,
        project: &str,
        version: &str,
        lease_id: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        use sha2::Digest as _;
        let url = self.url(&fill(paths::UPLOAD, &[("index", index.to_string())]));
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| ClientError::Unexpected {
                url: url.clone(),
                reason: format!("reading `{}`: {e}", path.display()),
            })?;
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let filetype = if std::path::Path::new(&filename)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("whl"))
        {
            "bdist_wheel"
        } else {
            "sdist"
        };
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let form = reqwest::multipart::Form::new()
            .text(":action", "file_upload")
            .text("protocol_version", "1")
            .text("name", project.to_owned())
            .text("version", version.to_owned())
            .text("filetype", filetype)
            .text("sha256_digest", sha256)
            .part(
                "content",
                reqwest::multipart::Part::bytes(bytes).file_name(filename),
            );
        let mut request = self.http.post(&url).multipart(form);
        if let Some(lease) = lease_id {
            request = request.header(crate::api::LEASE_HEADER, lease);
        }
        self.expect(request, &url).await
    }

    /// Downloads a server-relative file URL into `dest`, checking its sha256.
    pub async fn download_file(
        &self,
        file_url: &str,
        sha256: &str,
        dest: &std::path::Path,
    ) -> Result<(), ClientError> {
        use futures_util::StreamExt as _;
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let url = self.url(file_url);
        let unexpected = |reason: String| ClientError::Unexpected {
            url: url.clone(),
            reason,
        };
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|cause| ClientError::Unreachable {
                    url: url.clone(),
                    cause,
                })?;
        if !response.status().is_success() {
            return Err(ClientError::Api {
                status: response.status().as_u16(),
                detail: format!("downloading {url}"),
            });
        }
        let partial = dest.with_extension("part");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| unexpected(format!("creating `{}`: {e}", partial.display())))?;
        let mut hasher = sha2::Sha256::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|cause| ClientError::Unreachable {
                url: url.clone(),
                cause,
            })?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| unexpected(format!("writing `{}`: {e}", partial.display())))?;
        }
        file.sync_all()
            .await
            .map_err(|e| unexpected(format!("writing `{}`: {e}", partial.display())))?;
        let got = hex::encode(hasher.finalize());
        if got != sha256 {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(unexpected(format!(
                "downloaded bytes have sha256 {got}, expected {sha256}"
            )));
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(|e| unexpected(format!("renaming to `{}`: {e}", dest.display())))
    }

    /// Records a stage result.
    pub async fn report_result(&self, report: &StageReport) -> Result<ResultView, ClientError> {
        let url = self.url(paths::RESULTS);
        self.expect(self.http.post(&url).json(report), &url).await
    }

    /// Every result of an artifact.
    pub async fn show_results(&self, sha256: &str) -> Result<ArtifactResults, ClientError> {
        let url = self.url(&fill(
            paths::ARTIFACT_RESULTS,
            &[("sha256", &encode_segment(sha256))],
        ));
        self.expect(self.http.get(&url), &url).await
    }

    /// The versions of `project` visible from `index`, oldest first (the simple API's
    /// PEP 700 `versions`). A project the index does not know is a 404 error.
    pub async fn project_versions(
        &self,
        index: &IndexName,
        project: &str,
    ) -> Result<Vec<String>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Page {
            versions: Vec<String>,
        }
        let url = self.url(&format!("{index}/+simple/{}/", encode_segment(project)));
        let request = self.http.get(&url).header(
            reqwest::header::ACCEPT,
            "application/vnd.pypi.simple.v1+json",
        );
        Ok(self.expect::<Page>(request, &url).await?.versions)
    }

    /// A release's build state, files and stage matrix, as seen from `index`.
    pub async fn show_release(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
    ) -> Result<ReleaseStatus, ClientError> {
        let url = self.url(&fill(
            paths::RELEASE,
            &release_params(index, project, version),
        ));
        self.expect(self.http.get(&url), &url).await
    }
}

impl Client {
    /// Asks for a promotion. A policy refusal (HTTP 409) is an answer, not an error: it
    /// comes back as an outcome whose result is `refused`, with every failing check.
    pub async fn promote(&self, request: &PromoteRequest) -> Result<PromotionOutcome, ClientError> {
        let url = self.url(paths::PROMOTIONS);
        let (status, bytes) = self
            .exchange(self.http.post(&url).json(request), &url)
            .await?;
        if (status == 200 || status == 409)
            && let Ok(outcome) = serde_json::from_slice(&bytes)
        {
            return Ok(outcome);
        }
        Err(api_error(status, &bytes))
    }

    /// Promotion audit records, newest first.
    pub async fn list_promotions(
        &self,
        index: Option<&IndexName>,
    ) -> Result<Vec<PromotionView>, ClientError> {
        let mut url = self.url(paths::PROMOTIONS);
        if let Some(index) = index {
            url = format!("{url}?index={index}");
        }
        self.expect(self.http.get(&url), &url).await
    }

    /// Yanks a release on an index with a reason, or un-yanks it (`reason = None`).
    pub async fn yank(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
        reason: Option<&str>,
    ) -> Result<YankView, ClientError> {
        let params = release_params(index, project, version);
        if let Some(reason) = reason {
            let url = self.url(&fill(paths::RELEASE_YANK, &params));
            let body = YankBody {
                reason: reason.to_owned(),
            };
            self.expect(self.http.post(&url).json(&body), &url).await
        } else {
            let url = self.url(&fill(paths::RELEASE_UNYANK, &params));
            self.expect(self.http.post(&url), &url).await
        }
    }

    /// Removes a release (or one file of it) from an index into the trash.
    pub async fn remove(
        &self,
        index: &IndexName,
        project: &str,
        version: &str,
        file: Option<&str>,
        reason: &str,
    ) -> Result<TrashView, ClientError> {
        let params = release_params(index, project, version);
        let url = self.url(&fill(paths::RELEASE_REMOVE, &params));
        let body = RemoveBody {
            reason: reason.to_owned(),
            file: file.map(ToOwned::to_owned),
        };
        self.expect(self.http.post(&url).json(&body), &url).await
    }

    /// Trash entries (of one index), newest first.
    pub async fn trash(&self, index: Option<&IndexName>) -> Result<Vec<TrashView>, ClientError> {
        let mut url = self.url(paths::TRASH);
        if let Some(index) = index {
            url = format!("{url}?index={index}");
        }
        self.expect(self.http.get(&url), &url).await
    }

    /// Puts a trash entry's files back on their index.
    pub async fn restore(&self, id: i64) -> Result<TrashView, ClientError> {
        let url = self.url(&fill(paths::TRASH_RESTORE, &[("id", id.to_string())]));
        self.expect(self.http.post(&url), &url).await
    }

    /// Removes the branch indexes of `namespace` whose branch is gone (`only = false`), or
    /// of every branch not in `branches` (`only = true`).
    pub async fn clean_branches(
        &self,
        namespace: &str,
        branches: &[String],
        only: bool,
        dry_run: bool,
    ) -> Result<BranchCleanupView, ClientError> {
        let template = if only {
            paths::BRANCHES_KEEP
        } else {
            paths::BRANCHES_GONE
        };
        let url = self.url(&fill(template, &[("ns", namespace)]));
        let body = BranchesBody {
            branches: branches.to_vec(),
            dry_run,
        };
        self.expect(self.http.post(&url).json(&body), &url).await
    }

    /// A streamed GET of a server path with the token: the response, once it is a 2xx.
    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|cause| ClientError::Unreachable {
                url: url.clone(),
                cause,
            })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(api_error(status, &bytes));
        }
        Ok(response)
    }

    /// Releases a trash entry now, for good.
    pub async fn release(&self, id: i64) -> Result<TrashView, ClientError> {
        let url = self.url(&fill(paths::TRASH_RELEASE, &[("id", id.to_string())]));
        self.expect(self.http.post(&url), &url).await
    }

    /// Collects garbage now, or counts what would go (`dry_run`).
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport, ClientError> {
        let url = self.url(paths::GC);
        let body = GcBody { dry_run };
        self.expect(self.http.post(&url).json(&body), &url).await
    }

    /// What a mirror has cached.
    pub async fn mirror_cache(&self, mirror: &IndexName) -> Result<MirrorCacheView, ClientError> {
        let url = self.url(&fill(paths::MIRROR, &[("index", mirror.to_string())]));
        self.expect(self.http.get(&url), &url).await
    }

    /// Asks a mirror to refresh one project page from its upstream now.
    pub async fn mirror_refresh(
        &self,
        mirror: &IndexName,
        project: &str,
    ) -> Result<RefreshView, ClientError> {
        let url = self.url(&fill(
            paths::MIRROR_REFRESH,
            &[
                ("index", mirror.to_string()),
                ("project", project.to_string()),
            ],
        ));
        self.expect(self.http.post(&url), &url).await
    }

    /// Forgets a mirror's page of one project and the bytes only it used.
    pub async fn mirror_purge(
        &self,
        mirror: &IndexName,
        project: &str,
    ) -> Result<PurgeView, ClientError> {
        let url = self.url(&fill(
            paths::MIRROR_PROJECT,
            &[
                ("index", mirror.to_string()),
                ("project", project.to_string()),
            ],
        ));
        self.expect(self.http.delete(&url), &url).await
    }

    /// Events after `after` (optionally of one index), oldest first.
    pub async fn list_events(
        &self,
        index: Option<&IndexName>,
        after: i64,
    ) -> Result<Vec<EventView>, ClientError> {
        let mut url = format!("{}?after={after}", self.url(paths::EVENTS));
        if let Some(index) = index {
            url = format!("{url}&index={index}");
        }
        self.expect(self.http.get(&url), &url).await
    }
}

/// The error of a non-2xx answer: its problem document's `detail`, else its text.
fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    let detail = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_owned());
    ClientError::Api { status, detail }
}

/// An error and its causes on one line (reqwest's own message omits the cause, which is
/// where "connection refused" lives).
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// Percent-encodes one path segment (versions may hold `+`, names anything a user typed).
/// The path parameters of a release, percent-encoded.
fn release_params(index: &IndexName, project: &str, version: &str) -> [(&'static str, String); 3] {
    [
        ("index", index.to_string()),
        ("project", encode_segment(project)),
        ("version", encode_segment(version)),
    ]
}

fn encode_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
