//! A Kiln webhook receiver that turns Kiln's events into commit statuses on GitHub (or
//! GitHub Enterprise, or anything that speaks its statuses API), so a pull request shows
//! each stage's verdict on the exact wheel, the build, and the promotion.
//!
//! ```text
//! KILN_WEBHOOK_SECRET=whsec_…  GITHUB_TOKEN=…  GITHUB_REPOSITORY=acme/app \
//! KILN_URL=https://kiln.example.com  cargo run --example webhook_status -- 0.0.0.0:8099
//! kiln webhook add https://hooks.example.com:8099/kiln --pattern 'acme/*' \
//!     --event build-ready,build-failed,stage-result,promotion,promotion-refused
//! ```
//!
//! Every delivery's signature is checked (`kiln::domain::webhook::verify`, five minutes'
//! tolerance) before anything is trusted; a delivery seen before (`X-Kiln-Delivery`, kept
//! for the last 10,000) is answered 200 and not posted again. An event without a commit
//! (an upload by hand) is acknowledged and ignored. A failure to reach GitHub answers 502,
//! so Kiln retries the delivery later.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kiln::api::{
    WEBHOOK_DELIVERY_HEADER, WEBHOOK_EVENT_HEADER, WEBHOOK_SIGNATURE_HEADER, WebhookPayload,
};
use kiln::domain::WebhookEvent;
use serde_json::{Value, json};

/// How far a signature's timestamp may be from now.
const TOLERANCE_SECONDS: i64 = 300;
/// Delivery ids remembered to drop a redelivery.
const REMEMBERED: usize = 10_000;

/// What the receiver needs.
#[derive(Clone)]
struct Receiver {
    secret: String,
    github_api: String,
    repository: String,
    token: String,
    kiln_url: String,
    http: reqwest::Client,
    seen: Arc<Mutex<(HashSet<String>, VecDeque<String>)>>,
}

/// A commit status: which commit, and what to post.
#[derive(Debug, PartialEq)]
struct Status {
    commit: String,
    body: Value,
}

/// The commit status an event sets, if it names a commit.
fn status_for(payload: &WebhookPayload, kiln_url: &str) -> Option<Status> {
    let detail = &payload.detail;
    let commit = detail["commit"]
        .as_str()
        .or_else(|| detail["files"][0]["provenance"]["commit"].as_str())?
        .to_owned();
    let page = format!(
        "{kiln_url}/{}/{}/{}",
        payload.index, payload.project, payload.version
    );
    let (state, context, description) = match payload.event {
        WebhookEvent::StageResult => {
            let stage = detail["stage"].as_str().unwrap_or("stage");
            let (verdict, word) = match detail["outcome"].as_str() {
                Some("pass") => ("success", "passed"),
                Some("fail") => ("failure", "failed"),
                _ => ("error", "could not run"),
            };
            (
                verdict,
                format!("kiln/{stage}"),
                format!("{stage} {word} on {}", payload.index),
            )
        }
        WebhookEvent::BuildReady => (
            "success",
            "kiln/build".to_owned(),
            format!("built once, on {}", payload.index),
        ),
        WebhookEvent::BuildFailed => (
            "failure",
            "kiln/build".to_owned(),
            format!("the build failed on {}", payload.index),
        ),
        WebhookEvent::Promotion => (
            "success",
            "kiln/promotion".to_owned(),
            format!("promoted to {}", payload.index),
        ),
        WebhookEvent::PromotionRefused => (
            "failure",
            "kiln/promotion".to_owned(),
            format!(
                "refused by {}",
                detail["policy"].as_str().unwrap_or("the policy")
            ),
        ),
        WebhookEvent::Yank => return None,
    };
    Some(Status {
        commit,
        body: json!({
            "state": state,
            "context": context,
            // GitHub cuts descriptions at 140 characters.
            "description": description.chars().take(140).collect::<String>(),
            "target_url": page,
        }),
    })
}

impl Receiver {
    /// True the first time a delivery id is seen.
    fn first_time(&self, delivery: &str) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *seen;
        if !set.insert(delivery.to_owned()) {
            return false;
        }
        order.push_back(delivery.to_owned());
        if order.len() > REMEMBERED
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        true
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = kiln::domain::webhook::verify(
        &receiver.secret,
        header(WEBHOOK_SIGNATURE_HEADER),
        &body,
        now,
        TOLERANCE_SECONDS,
    ) {
        return (StatusCode::UNAUTHORIZED, e.to_string());
    }
    let payload: WebhookPayload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a Kiln event: {e}")),
    };
    if header(WEBHOOK_EVENT_HEADER) != payload.event.as_str() {
        return (
            StatusCode::BAD_REQUEST,
            "the event header and body differ".into(),
        );
    }
    let Some(status) = status_for(&payload, &receiver.kiln_url) else {
        return (StatusCode::OK, "nothing to post".into());
    };
    let delivery = header(WEBHOOK_DELIVERY_HEADER).to_owned();
    if !receiver.first_time(&delivery) {
        return (StatusCode::OK, "already posted".into());
    }
    let url = format!(
        "{}/repos/{}/statuses/{}",
        receiver.github_api, receiver.repository, status.commit
    );
    let posted = receiver
        .http
        .post(&url)
        .bearer_auth(&receiver.token)
        .header("Accept", "application/vnd.github+json")
        .json(&status.body)
        .send()
        .await;
    match posted {
        Ok(response) if response.status().is_success() => (StatusCode::OK, "posted".into()),
        failed => {
            // Forget it, so Kiln's retry posts it.
            receiver
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .remove(&delivery);
            let why = match failed {
                Ok(response) => format!("GitHub answered {}", response.status()),
                Err(e) => format!("GitHub is unreachable: {e}"),
            };
            (StatusCode::BAD_GATEWAY, why)
        }
    }
}

fn router(receiver: Receiver) -> axum::Router {
    axum::Router::new()
        .route("/kiln", axum::routing::post(receive))
        .with_state(receiver)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let need = |name: &str| {
        std::env::var(name).map_err(|_| anyhow::anyhow!("set {name} (see the example's header)"))
    };
    let receiver = Receiver {
        secret: need("KILN_WEBHOOK_SECRET")?,
        token: need("GITHUB_TOKEN")?,
        repository: need("GITHUB_REPOSITORY")?,
        github_api: std::env::var("GITHUB_API_URL")
            .unwrap_or_else(|_| "https://api.github.com".into()),
        kiln_url: need("KILN_URL")?.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        seen: Arc::default(),
    };
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("receiving Kiln webhooks on http://{listen}/kiln");
    axum::serve(listener, router(receiver)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signed delivery through the real router to a fake statuses API on loopback.
    #[tokio::test]
    async fn a_signed_stage_result_becomes_one_commit_status() {
        let posted: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let kept = posted.clone();
        let github = axum::Router::new().route(
            "/repos/{owner}/{repo}/statuses/{sha}",
            axum::routing::post(
                move |axum::extract::Path((owner, repo, sha)): axum::extract::Path<(
                    String,
                    String,
                    String,
                )>,
                      axum::Json(body): axum::Json<Value>| async move {
                    kept.lock()
                        .unwrap()
                        .push((format!("{owner}/{repo}@{sha}"), body));
                    StatusCode::CREATED
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let github_api = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, github).await.unwrap() });
        let receiver = Receiver {
            secret: "s3cret-s3cret-s3cret".into(),
            github_api,
            repository: "acme/app".into(),
            token: "gh-token".into(),
            kiln_url: "https://kiln.example.com".into(),
            http: reqwest::Client::new(),
            seen: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/kiln", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(receiver)).await.unwrap() });

        let body = serde_json::to_vec(&json!({
            "event": "stage-result", "index": "acme/feature-x", "project": "app",
            "version": "1.0.dev3", "actor": "ci#3", "at": "2026-12-03T10:00:00Z",
            "detail": {"stage": "unit", "outcome": "fail", "commit": "abc1234", "sha256": "00"}
        }))
        .unwrap();
        let send = |signature: String| {
            reqwest::Client::new()
                .post(&url)
                .header(WEBHOOK_EVENT_HEADER, "stage-result")
                .header(WEBHOOK_DELIVERY_HEADER, "17")
                .header(WEBHOOK_SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
        };
        let now = chrono::Utc::now().timestamp();
        let forged = send(kiln::domain::webhook::sign("guess", now, &body))
            .await
            .unwrap();
        assert_eq!(forged.status(), 401, "a wrong secret is refused");
        for _ in 0..2 {
            let answer = send(kiln::domain::webhook::sign(
                "s3cret-s3cret-s3cret",
                now,
                &body,
            ))
            .await
            .unwrap();
            assert_eq!(answer.status(), 200);
        }
        let posted = posted.lock().unwrap().clone();
        assert_eq!(
            posted.len(),
            1,
            "a redelivery is not posted twice: {posted:?}"
        );
        assert_eq!(posted[0].0, "acme/app@abc1234");
        assert_eq!(posted[0].1["state"], "failure");
        assert_eq!(posted[0].1["context"], "kiln/unit");
        assert_eq!(
            posted[0].1["target_url"],
            "https://kiln.example.com/acme/feature-x/app/1.0.dev3"
        );
    }
}
