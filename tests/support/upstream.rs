//! A small upstream simple index on loopback, for mirror tests and the benchmark: PEP 691
//! JSON or PEP 503 HTML pages, files, and PEP 658 metadata, with knobs to make it slow,
//! down, or send garbage, and a count of every request it served.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest as _;

use super::dist::Dist;

/// How the upstream writes project pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageStyle {
    /// PEP 691 JSON.
    Json,
    /// PEP 503 HTML.
    Html,
}

/// A page answer forced on one project.
#[derive(Clone, Debug)]
pub struct Garbage {
    /// The content type to send.
    pub content_type: &'static str,
    /// The body to send.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, Vec<Dist>>,
    page_garbage: HashMap<String, Garbage>,
    /// filename → bytes served instead of the real ones
    corrupt: HashMap<String, Vec<u8>>,
    requests: HashMap<String, usize>,
    credentials: Option<(String, String)>,
    /// project → where its page redirects
    redirects: HashMap<String, String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    style: PageStyle,
    down: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

/// The running upstream.
pub struct Upstream {
    /// `http://127.0.0.1:PORT/simple/`
    pub simple_url: String,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Upstream {
    /// Starts an upstream serving `dists` with pages in `style`.
    pub async fn start(style: PageStyle, dists: &[Dist]) -> Self {
        let shared = Shared {
            inner: Arc::default(),
            style,
            down: Arc::default(),
            delay_ms: Arc::default(),
        };
        for dist in dists {
            shared.add(dist.clone());
        }
        let app = Router::new()
            .route("/simple/", get(list))
            .route("/simple/{project}/", get(page))
            .route("/files/{filename}", get(file))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            simple_url: format!("http://{address}/simple/"),
            shared,
            shutdown: Some(tx),
        }
    }

    /// Adds a file.
    pub fn add(&self, dist: Dist) {
        self.shared.add(dist);
    }

    /// How many requests a path got, e.g. `/simple/demo/` or `/files/demo-1.0-py3-none-any.whl`.
    pub fn requests(&self, path: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner.requests.get(path).copied().unwrap_or(0)
    }

    /// Every request so far, by path.
    pub fn all_requests(&self) -> HashMap<String, usize> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Answer 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Wait this long before answering anything.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }

    /// Answer `project`'s page with `garbage`.
    pub fn set_page_garbage(&self, project: &str, garbage: Garbage) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.page_garbage.insert(project.to_owned(), garbage);
    }

    /// Serve `bytes` instead of the real bytes of `filename`.
    pub fn corrupt_file(&self, filename: &str, bytes: Vec<u8>) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.corrupt.insert(filename.to_owned(), bytes);
    }

    /// Answers `project`'s page with a 302 to `location`.
    pub fn set_redirect(&self, project: &str, location: &str) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .redirects
            .insert(project.to_owned(), location.to_owned());
    }

    /// Require HTTP basic credentials on pages.
    pub fn require_credentials(&self, user: &str, password: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.credentials = Some((user.to_owned(), password.to_owned()));
    }

    /// Stops listening: later requests are refused at the TCP level.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Let the server task drop its listener.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Shared {
    fn add(&self, dist: Dist) {
        let project = normalize(&dist.name);
        let mut inner = self.inner.lock().unwrap();
        inner.files.entry(project).or_default().push(dist);
    }

    async fn gate(&self, path: String) -> Option<Response> {
        self.inner
            .lock()
            .unwrap()
            .requests
            .entry(path)
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Some((StatusCode::SERVICE_UNAVAILABLE, "upstream is down").into_response());
        }
        None
    }
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The METADATA file of a wheel.
pub fn wheel_metadata(dist: &Dist) -> Option<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&dist.bytes)).ok()?;
    let name = archive
        .file_names()
        .find(|n| n.ends_with(".dist-info/METADATA"))?
        .to_owned();
    let mut out = Vec::new();
    archive.by_name(&name).ok()?.read_to_end(&mut out).ok()?;
    Some(out)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The project list (devpi reads it to learn which names exist upstream).
async fn list(State(shared): State<Shared>) -> Response {
    if let Some(refused) = shared.gate("/simple/".to_owned()).await {
        return refused;
    }
    let mut names: Vec<String> = shared.inner.lock().unwrap().files.keys().cloned().collect();
    names.sort();
    match shared.style {
        PageStyle::Json => {
            let projects: Vec<serde_json::Value> = names
                .iter()
                .map(|n| serde_json::json!({ "name": n }))
                .collect();
            (
                [(header::CONTENT_TYPE, "application/vnd.pypi.simple.v1+json")],
                serde_json::json!({"meta": {"api-version": "1.1"}, "projects": projects})
                    .to_string(),
            )
                .into_response()
        }
        PageStyle::Html => {
            let mut body = String::from("<!DOCTYPE html><html><body>\n");
            for name in &names {
                let _ = writeln!(body, "<a href=\"{name}/\">{name}</a><br>");
            }
            body.push_str("</body></html>\n");
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
        }
    }
}

async fn page(
    State(shared): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = shared.gate(format!("/simple/{project}/")).await {
        return refused;
    }
    let (dists, garbage, credentials, redirect) = {
        let inner = shared.inner.lock().unwrap();
        (
            inner.files.get(&normalize(&project)).cloned(),
            inner.page_garbage.get(&project).cloned(),
            inner.credentials.clone(),
            inner.redirects.get(&project).cloned(),
        )
    };
    if let Some(location) = redirect {
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    if let Some((user, password)) = credentials {
        use base64::Engine as _;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return (StatusCode::UNAUTHORIZED, "credentials required").into_response();
        }
    }
    if let Some(garbage) = garbage {
        return ([(header::CONTENT_TYPE, garbage.content_type)], garbage.body).into_response();
    }
    let Some(dists) = dists else {
        return (StatusCode::NOT_FOUND, "no such project").into_response();
    };
    match shared.style {
        PageStyle::Json => {
            let files: Vec<serde_json::Value> = dists
                .iter()
                .map(|d| {
                    let mut file = serde_json::json!({
                        "filename": d.filename,
                        "url": format!("../../files/{}", d.filename),
                        "hashes": {"sha256": sha256(&d.bytes)},
                        "requires-python": ">=3.8",
                        "size": d.bytes.len(),
                        "upload-time": "2026-01-01T00:00:00.000000Z",
                    });
                    if let Some(metadata) = wheel_metadata(d) {
                        file["core-metadata"] = serde_json::json!({"sha256": sha256(&metadata)});
                    }
                    file
                })
                .collect();
            let body = serde_json::json!({
                "meta": {"api-version": "1.1"},
                "name": normalize(&project),
                "files": files,
            });
            (
                [
                    (header::CONTENT_TYPE, "application/vnd.pypi.simple.v1+json"),
                    (header::ETAG, "\"json-page\""),
                ],
                body.to_string(),
            )
                .into_response()
        }
        PageStyle::Html => {
            let mut body = String::from("<!DOCTYPE html><html><body>\n");
            for d in &dists {
                let metadata = wheel_metadata(d)
                    .map(|m| format!(" data-dist-info-metadata=\"sha256={}\"", sha256(&m)))
                    .unwrap_or_default();
                let _ = writeln!(
                    body,
                    "<a href=\"../../files/{f}#sha256={h}\" data-requires-python=\"&gt;=3.8\"{metadata}>{f}</a><br>",
                    f = d.filename,
                    h = sha256(&d.bytes)
                );
            }
            body.push_str("</body></html>\n");
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
        }
    }
}

async fn file(State(shared): State<Shared>, Path(filename): Path<String>) -> Response {
    if let Some(refused) = shared.gate(format!("/files/{filename}")).await {
        return refused;
    }
    let inner = shared.inner.lock().unwrap();
    if let Some(bytes) = inner.corrupt.get(&filename) {
        return Body::from(bytes.clone()).into_response();
    }
    let wheel = filename.strip_suffix(".metadata");
    for dist in inner.files.values().flatten() {
        if dist.filename == filename {
            return Body::from(dist.bytes.clone()).into_response();
        }
        if Some(dist.filename.as_str()) == wheel
            && let Some(metadata) = wheel_metadata(dist)
        {
            return Body::from(metadata).into_response();
        }
    }
    (StatusCode::NOT_FOUND, "no such file").into_response()
}
