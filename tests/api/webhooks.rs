//! Webhooks over loopback: a real receiver checks every delivery's signature with its
//! own HMAC, answers 500 when told to and counts what arrives; subscriptions are made
//! with the real `kiln webhook` CLI; destinations and owners are checked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::Mac as _;
use kiln::api::{ClaimBuild, LeaseBody, PromotionResult, WebhookRequest};
use kiln::domain::Outcome;
use serde_json::Value;

use crate::access::mint;
use crate::helpers::{ADMIN_TOKEN, Deadline, Dist, TestApp, provenance, run, show};
use crate::promotions::{on_master, report, request};

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    /// `X-Kiln-Delivery`.
    pub delivery: String,
    /// `X-Kiln-Event`.
    pub event: String,
    /// `X-Kiln-Signature`.
    pub signature: String,
    /// The JSON body.
    pub body: Value,
    raw: Vec<u8>,
    /// The status it answered.
    pub answered: u16,
}

/// A webhook receiver on a free loopback port: answers 500 to the first `fail_first`
/// requests (and to every one while failing is switched on), 200 after.
pub struct Receiver {
    /// Where to subscribe.
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts one that answers 500 to its first `fail_first` requests.
    pub async fn start(fail_first: usize) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail_first = Arc::new(AtomicUsize::new(fail_first));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, left, down) = (got.clone(), fail_first.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (seen, left, down) = (seen.clone(), left.clone(), down.clone());
                    async move {
                        let fail = down.load(Ordering::SeqCst)
                            || left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                        let answered = if fail { 500 } else { 200 };
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        seen.lock().unwrap().push(Received {
                            delivery: header("x-kiln-delivery"),
                            event: header("x-kiln-event"),
                            signature: header("x-kiln-signature"),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            raw: body.to_vec(),
                            answered,
                        });
                        axum::http::StatusCode::from_u16(answered).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            got,
            fail_first,
            failing,
            _task: task,
        }
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Answers 500 to everything while `on`.
    pub fn fail_all(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
        self.fail_first.store(0, Ordering::SeqCst);
    }

    /// Waits (generously) until `done` holds for what was received.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Deadline::after(90);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                !deadline.passed(),
                "the receiver never saw {what}; it got: {:#?}",
                got.iter()
                    .map(|r| (&r.delivery, &r.event, r.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks a delivery's signature independently of Kiln's code: HMAC-SHA256 keyed by
/// `secret` over `"{t}.{body}"`, `t` within five minutes of now.
pub fn signed_by(secret: &str, received: &Received) -> Result<(), String> {
    let mut t = None;
    let mut sig = None;
    for part in received.signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("sha256", v)) => sig = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(sig)) = (t, sig) else {
        return Err(format!("malformed signature `{}`", received.signature));
    };
    let age = (chrono::Utc::now().timestamp() - t).abs();
    if age > 300 {
        return Err(format!("signature timestamp is {age} s off"));
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&received.raw);
    let expected = hex::encode(mac.finalize().into_bytes());
    if expected == sig {
        Ok(())
    } else {
        Err(format!(
            "signature {sig} is not the HMAC of the body ({expected})"
        ))
    }
}

/// How many requests the receiver answered 200, and for how many distinct deliveries.
pub fn answered_200(got: &[Received]) -> (usize, usize) {
    let mut delivered: Vec<&str> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.delivery.as_str())
        .collect();
    let answered = delivered.len();
    delivered.sort_unstable();
    delivered.dedup();
    (answered, delivered.len())
}

/// The server configuration webhooks to a loopback receiver need, with quick retries.
pub fn loopback_hooks(config: &mut kiln::config::ServeConfig) {
    config.webhooks.allow_hosts = vec!["127.0.0.1".into()];
    config.webhooks.first_retry = Duration::from_millis(200);
}

/// `kiln ARGS…` against `app` with `token`.
async fn cli_as(app: &TestApp, token: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env("KILN_SERVER", &app.base)
        .env("KILN_TOKEN", token)
        .env_remove("KILN_WEBHOOK_SECRET");
    run(command).await
}

/// `kiln webhook deliveries ID --json` as `token`, until `done` holds for the log.
async fn log_until(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Deadline::after(90);
    loop {
        let out = cli_as(app, token, &["webhook", "deliveries", id, "--json"]).await;
        assert!(out.status.success(), "{}", show(&out));
        let log: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        if done(&log) {
            return log;
        }
        assert!(
            !deadline.passed(),
            "the delivery log never showed {what}: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events_of(received: &[Received]) -> std::collections::BTreeSet<String> {
    received
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.event.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_of_every_event_are_retried_after_a_500_and_logged() {
    let receiver = Receiver::start(1).await;
    let app = TestApp::spawn_with(loopback_hooks).await;
    let owner = mint(&app, "hooks", &["admin:root/*"]).await;
    let added = cli_as(
        &app,
        &owner,
        &[
            "webhook",
            "add",
            &receiver.url,
            "--pattern",
            "root/*",
            "--event",
            "build-ready,build-failed,stage-result,promotion,promotion-refused,yank",
        ],
    )
    .await;
    assert!(added.status.success(), "{}", show(&added));
    let secret = String::from_utf8(added.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{}", show(&added));
    let listed = cli_as(&app, &owner, &["webhook", "list", "--json"]).await;
    let hooks: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(hooks.len(), 1, "{}", show(&listed));
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&secret),
        "a list never shows the secret"
    );
    let id = hooks[0]["id"].to_string();

    // Every kind of event, as CI makes them.
    let sha256 = on_master(&app, "1.0").await; // build-ready
    let refused = app.client().promote(&request("1.0")).await.unwrap(); // unit not reported
    assert_eq!(refused.result, PromotionResult::Refused, "{refused:?}");
    report(&app, &sha256, "unit", "run-1", Outcome::Pass).await; // stage-result
    let promoted = app.client().promote(&request("1.0")).await.unwrap(); // promotion
    assert_eq!(promoted.result, PromotionResult::Promoted, "{promoted:?}");
    app.client()
        .yank(
            &"root/master".parse().unwrap(),
            "demo",
            "1.0",
            Some("broken"),
        )
        .await
        .unwrap(); // yank
    let client = app.client();
    let master = "root/master".parse().unwrap();
    let claimed = client
        .claim_build(
            &master,
            "demo",
            "2.0",
            &ClaimBuild {
                builder: "runner-7".into(),
                retry: false,
                provenance: provenance("beef123"),
                target: None,
            },
        )
        .await
        .unwrap();
    let kiln::api::BuildStateView::Claimed { lease_id, .. } = claimed.status else {
        panic!("{claimed:?}")
    };
    client
        .lease_action(
            &master,
            "demo",
            "2.0",
            "fail",
            &LeaseBody {
                lease_id,
                error_tail: Some("error: could not compile".into()),
                target: None,
            },
        )
        .await
        .unwrap(); // build-failed

    let all = [
        "build-ready",
        "build-failed",
        "stage-result",
        "promotion",
        "promotion-refused",
        "yank",
    ];
    let got = receiver
        .wait_for("every event delivered", |got| {
            events_of(got).len() == all.len()
        })
        .await;
    assert_eq!(
        events_of(&got),
        all.iter().map(|e| (*e).to_owned()).collect(),
        "one of each"
    );
    for r in &got {
        signed_by(&secret, r).unwrap_or_else(|e| panic!("delivery {}: {e}", r.delivery));
        assert_eq!(r.body["event"], r.event.as_str(), "header and body agree");
    }
    // The first delivery got a 500 and came again, with the same id and body.
    let first = &got[0];
    assert_eq!(first.answered, 500);
    let again: Vec<&Received> = got
        .iter()
        .filter(|r| r.delivery == first.delivery)
        .collect();
    assert_eq!(again.len(), 2, "retried once: {again:#?}");
    assert_eq!(again[1].answered, 200);
    assert_eq!(again[0].raw, again[1].raw, "a retry sends the same bytes");
    let (answered, distinct) = answered_200(&got);
    assert_eq!(answered, distinct, "no delivery arrived twice");

    // What each event says.
    let body = |event: &str| got.iter().find(|r| r.event == event).unwrap().body.clone();
    let result = body("stage-result");
    assert_eq!(result["index"], "root/master");
    assert_eq!(result["project"], "demo");
    assert_eq!(result["version"], "1.0");
    assert_eq!(result["detail"]["sha256"], sha256.as_str());
    assert_eq!(result["detail"]["stage"], "unit");
    assert_eq!(result["detail"]["outcome"], "pass");
    assert_eq!(result["detail"]["commit"], "c0ffee1");
    let promotion = body("promotion");
    assert_eq!(promotion["index"], "root/prod");
    assert_eq!(promotion["detail"]["from"], "root/master");
    assert_eq!(promotion["detail"]["files"][0]["sha256"], sha256.as_str());
    let refusal = body("promotion-refused");
    assert!(
        refusal["detail"]["failed"].to_string().contains("unit"),
        "{refusal}"
    );
    assert_eq!(body("yank")["detail"]["yanked"], true);
    assert_eq!(body("yank")["detail"]["reason"], "broken");
    let failed = body("build-failed");
    assert_eq!(failed["version"], "2.0");
    assert_eq!(failed["detail"]["commit"], "beef123");
    assert!(
        failed["detail"]["error_tail"]
            .as_str()
            .unwrap()
            .contains("could not compile")
    );
    assert_eq!(
        body("build-ready")["detail"]["files"][0]["sha256"],
        sha256.as_str()
    );

    // The owner's log: each delivered, the first after two attempts.
    let log = log_until(&app, &owner, &id, "every delivery settled", |log| {
        log.len() == all.len() && log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    let retried = log
        .iter()
        .find(|d| {
            d["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(first.delivery.as_str())
        })
        .unwrap();
    assert_eq!(retried["attempts"], 2, "{retried}");
    assert_eq!(retried["last_status"], 200, "{retried}");

    // Nobody else reads it; the server's admin does.
    let stranger = mint(&app, "stranger", &["admin:other/*"]).await;
    let theirs = cli_as(&app, &stranger, &["webhook", "list", "--json"]).await;
    assert_eq!(String::from_utf8_lossy(&theirs.stdout).trim(), "[]");
    let peek = cli_as(&app, &stranger, &["webhook", "deliveries", &id]).await;
    assert!(!peek.status.success());
    assert!(
        String::from_utf8_lossy(&peek.stderr).contains("no webhook with id"),
        "{}",
        show(&peek)
    );

    // Once its owner's token is revoked, a webhook sends nothing more, and says why.
    let owner_id = app
        .client()
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "hooks")
        .unwrap()
        .id;
    app.client().revoke_token(owner_id).await.unwrap();
    app.client()
        .yank(&"root/master".parse().unwrap(), "demo", "1.0", None)
        .await
        .unwrap();
    let log = log_until(&app, ADMIN_TOKEN, &id, "the unyank given up", |log| {
        log.len() == all.len() + 1 && log[0]["state"] == "failed"
    })
    .await;
    assert!(
        log[0]["last_error"].as_str().unwrap().contains("revoked"),
        "{:#}",
        log[0]
    );
    assert_eq!(receiver.received().len(), got.len(), "nothing was sent");

    // Removing it removes its log.
    let removed = cli_as(&app, ADMIN_TOKEN, &["webhook", "remove", &id]).await;
    assert!(removed.status.success(), "{}", show(&removed));
    let gone = cli_as(&app, ADMIN_TOKEN, &["webhook", "deliveries", &id]).await;
    assert!(!gone.status.success());
}

#[tokio::test]
async fn queued_deliveries_survive_a_restart() {
    let receiver = Receiver::start(0).await;
    receiver.fail_all(true);
    let app = TestApp::spawn_with(loopback_hooks).await;
    let created = app
        .client()
        .create_webhook(&WebhookRequest {
            pattern: "root/master".parse().unwrap(),
            url: receiver.url.clone(),
            events: vec![kiln::domain::WebhookEvent::Yank],
            secret: Some("a-secret-of-twenty-chars".into()),
        })
        .await
        .unwrap();
    assert_eq!(created.secret, "a-secret-of-twenty-chars");
    app.upload("root/master", &Dist::wheel("demo", "1.0")).await;
    app.client()
        .yank(&"root/master".parse().unwrap(), "demo", "1.0", Some("oops"))
        .await
        .unwrap();
    let failed = receiver
        .wait_for("a first attempt", |got| !got.is_empty())
        .await;
    let app = app.restart_with(loopback_hooks).await;
    receiver.fail_all(false);
    let got = receiver
        .wait_for("the delivery after the restart", |got| {
            got.iter().any(|r| r.answered == 200)
        })
        .await;
    let delivered = got.iter().find(|r| r.answered == 200).unwrap();
    assert_eq!(delivered.delivery, failed[0].delivery, "the same delivery");
    signed_by("a-secret-of-twenty-chars", delivered).unwrap();
    drop(app);
}

#[tokio::test]
async fn destinations_secrets_and_scopes_are_checked_when_subscribing() {
    let app = TestApp::spawn().await;
    let hook = |url: &str, pattern: &str, secret: Option<&str>| WebhookRequest {
        pattern: pattern.parse().unwrap(),
        url: url.into(),
        events: vec![kiln::domain::WebhookEvent::Promotion],
        secret: secret.map(str::to_owned),
    };
    let refused = |result: Result<kiln::api::CreatedWebhook, kiln::client::ClientError>| {
        result.expect_err("refused").to_string()
    };
    for private in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/hook",
    ] {
        let said = refused(
            app.client()
                .create_webhook(&hook(private, "root/*", None))
                .await,
        );
        assert!(
            said.contains("400") && said.contains("--webhook-allow-host"),
            "{private}: {said}"
        );
    }
    for (bad, why) in [
        ("ftp://hooks.example.com/x", "http or https"),
        ("https://user:hunter2@hooks.example.com/x", "credentials"),
        ("not a url", "not a URL"),
    ] {
        let said = refused(
            app.client()
                .create_webhook(&hook(bad, "root/*", None))
                .await,
        );
        assert!(said.contains(why), "{bad}: {said}");
        assert!(
            !said.contains("hunter2"),
            "the password is not echoed: {said}"
        );
    }
    let said = refused(
        app.client()
            .create_webhook(&hook(
                "https://hooks.example.com/x",
                "root/*",
                Some("short"),
            ))
            .await,
    );
    assert!(said.contains("secret must be"), "{said}");
    let mut none = hook("https://hooks.example.com/x", "root/*", None);
    none.events.clear();
    let said = refused(app.client().create_webhook(&none).await);
    assert!(said.contains("at least one event"), "{said}");

    // `admin` on the pattern, not elsewhere.
    let team = mint(&app, "team", &["admin:team/*", "upload:root/*"]).await;
    let as_team = kiln::client::Client::new(&app.base, Some(team)).unwrap();
    let said = refused(
        as_team
            .create_webhook(&hook("https://hooks.example.com/x", "root/*", None))
            .await,
    );
    assert!(
        said.contains("403") && said.contains("admin:root/*"),
        "{said}"
    );
    let made = as_team
        .create_webhook(&hook("https://hooks.example.com/x", "team/*", None))
        .await
        .unwrap();
    assert_eq!(as_team.list_webhooks().await.unwrap().len(), 1);
    assert_eq!(
        app.client().list_webhooks().await.unwrap().len(),
        1,
        "the admin sees it"
    );
    let other = mint(&app, "other", &["admin:other/*"]).await;
    let as_other = kiln::client::Client::new(&app.base, Some(other)).unwrap();
    assert!(as_other.list_webhooks().await.unwrap().is_empty());
    assert!(as_other.remove_webhook(made.webhook.id).await.is_err());
    as_team.remove_webhook(made.webhook.id).await.unwrap();
    assert!(as_team.list_webhooks().await.unwrap().is_empty());
}
