//! Every route of the real router against a private index: an anonymous caller and a
//! caller holding only unrelated scopes are refused wherever the access table says so,
//! and lists never show them what they may not read. The routes come from
//! `kiln::app::routes()`, which the router is built from, so a route added later without
//! a check fails here.

use kiln::app::{Access, RouteSpec};
use serde_json::{Value, json};

use crate::access::{call, mint};
use crate::helpers::{ADMIN_TOKEN, TestApp, no_redirect_client};
use kiln::api::paths;

/// What a request body needs to get past parsing to the service's check.
fn sample_body(spec: &RouteSpec, sha256: &str) -> Option<Value> {
    let body = match (spec.method.as_str(), spec.path) {
        ("POST", paths::INDEXES) => json!({"name": "sec/new"}),
        ("PATCH", paths::INDEX) => json!({"description": "changed"}),
        ("POST", paths::TOKENS) => json!({"name": "t", "scopes": ["read:sec/*"]}),
        ("POST", paths::WEBHOOKS) => json!({
            "pattern": "sec/*", "url": "https://hooks.example.com/kiln", "events": ["promotion"]
        }),
        ("POST", paths::BUILD) => json!({"builder": "walker", "provenance": {"commit": "abcdef1"}}),
        ("POST", paths::BUILD_HEARTBEAT | paths::BUILD_COMPLETE | paths::BUILD_FAIL) => {
            json!({"lease_id": "not-a-lease"})
        }
        ("POST", paths::RESULTS) => json!({
            "index": "sec/priv", "sha256": sha256, "stage": "unit", "run_id": "walk", "outcome": "pass",
            "duration_ms": 1
        }),
        ("POST", paths::RELEASE_YANK | paths::RELEASE_REMOVE) => {
            json!({"reason": "walking the routes"})
        }
        ("POST", paths::GC) => json!({"dry_run": true}),
        ("POST", paths::BRANCHES_GONE | paths::BRANCHES_KEEP) => {
            json!({"branches": ["main"], "dry_run": true})
        }
        ("POST", paths::PROMOTIONS) => json!({
            "project": "secret-pkg", "version": "1.0", "from": "sec/priv", "to": "sec/vault"
        }),
        // No body: the upload is refused before its body is read; the others take none
        // (sign-in takes a form, sent by the walk itself).
        (
            "POST",
            paths::UPLOAD
            | paths::UPLOAD_BARE
            | paths::MIRROR_REFRESH
            | paths::RELEASE_UNYANK
            | paths::TRASH_RESTORE
            | paths::TRASH_RELEASE
            | paths::SIGN_IN
            | paths::SIGN_OUT,
        ) => {
            return None;
        }
        ("POST" | "PATCH" | "PUT", _) => panic!(
            "route {} {} takes a body: give it a sample in tests/api/routes.rs `sample_body`",
            spec.method, spec.path
        ),
        _ => return None,
    };
    Some(body)
}

/// True when a response mentions what only a reader of `sec/priv` or `sec/vault` may see.
fn leaks(body: &str) -> bool {
    ["sec/priv", "sec/vault", "secret-pkg", "secret_pkg"]
        .iter()
        .any(|secret| body.contains(secret))
}

#[tokio::test]
async fn every_route_refuses_callers_the_access_table_refuses() {
    // A private index with a promotion-only private target, so the lists the walk reads
    // (promotions, events) really hold private records to filter.
    let policy = format!(
        "{}\n[[promotion]]\nname = \"sec\"\nfrom = \"sec/priv\"\nto = \"sec/vault\"\nrequired-stages = [\"unit\"]\n",
        kiln::policy::DEFAULT_POLICY
    );
    let app = TestApp::spawn_with(|c| {
        c.policies = kiln::policy::Policies::parse("routes.toml", &policy).unwrap();
    })
    .await;
    for body in [
        json!({"name": "sec/vault", "private": true, "promotion_only": true}),
        json!({"name": "sec/priv", "private": true, "bases": ["sec/vault"]}),
    ] {
        let created = call(
            &app,
            "POST",
            "+api/v1/indexes",
            Some(ADMIN_TOKEN),
            Some(body),
        )
        .await;
        assert_eq!(created.status(), 201, "creating the private indexes");
    }
    let wheel = crate::helpers::Dist::wheel("secret-pkg", "1.0");
    let sha256 = app.build("sec/priv", "abcdef1", &[&wheel]).await;
    let admin = |method: &'static str, path: &'static str, body: Option<Value>| {
        call(&app, method, path, Some(ADMIN_TOKEN), body)
    };
    let reported = admin(
        "POST",
        "+api/v1/results",
        Some(json!({"index": "sec/priv", "sha256": sha256, "stage": "unit", "run_id": "setup", "outcome": "pass", "artifact": "verified", "duration_ms": 1})),
    )
    .await;
    assert_eq!(
        reported.status(),
        201,
        "reporting the private release green"
    );
    let promoted = admin(
        "POST",
        "+api/v1/promotions",
        Some(json!({"project": "secret-pkg", "version": "1.0", "from": "sec/priv", "to": "sec/vault"})),
    )
    .await;
    assert_eq!(promoted.status(), 200, "promoting into the private target");
    let hooked = admin(
        "POST",
        "+api/v1/webhooks",
        Some(json!({"pattern": "sec/priv", "url": "https://hooks.example.com/kiln", "events": ["promotion"]})),
    )
    .await;
    assert_eq!(hooked.status(), 201, "a webhook on the private index");
    // A private release in the trash, so the trash list holds a private entry to filter.
    let removed_wheel = crate::helpers::Dist::wheel("secret-pkg", "0.9");
    app.build("sec/priv", "abcdef0", &[&removed_wheel]).await;
    let removed = admin(
        "POST",
        "+api/v1/releases/sec/priv/secret-pkg/0.9/remove",
        Some(json!({"reason": "the trash holds a private entry"})),
    )
    .await;
    assert_eq!(removed.status(), 200, "removing a private release");
    for list in [
        "+api/v1/promotions",
        "+api/v1/events",
        "+api/v1/webhooks",
        "+api/v1/trash",
    ] {
        let seen = admin("GET", list, None).await.text().await.unwrap();
        assert!(
            leaks(&seen),
            "the admin sees the private records in {list}: {seen}"
        );
    }
    let unrelated = mint(&app, "unrelated", &["admin:other/*"]).await;
    let params = [
        ("ns", "sec"),
        ("name", "priv"),
        ("project", "secret-pkg"),
        ("version", "1.0"),
        ("sha256", sha256.as_str()),
        ("filename", wheel.filename.as_str()),
        ("id", "1"),
        ("stage", "unit"),
    ];

    let mut failures = Vec::new();
    let routes: Vec<RouteSpec> = kiln::app::routes().into_iter().map(|(s, _)| s).collect();
    assert!(routes.len() >= 30, "the router has {} routes", routes.len());
    for spec in &routes {
        let path = paths::fill(spec.path, &params);
        for (who, token) in [("anonymous", None), ("unrelated", Some(unrelated.as_str()))] {
            // Redirects are not followed: each route answers for itself.
            let mut request = no_redirect_client().request(spec.method.clone(), app.url(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = sample_body(spec, &sha256) {
                request = request.json(&body);
            }
            let signing_in = spec.method == "POST" && spec.path == paths::SIGN_IN;
            if signing_in {
                request = request.form(&[("token", "not-a-token-kiln-knows"), ("next", "/")]);
            }
            let response = request.send().await.expect("route request");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let refused_as = if token.is_none() { 401 } else { 403 };
            let ok = match spec.access {
                Access::Read | Access::Index(_) | Access::Body(_) => status == refused_as,
                Access::Token if token.is_none() => status == 401,
                Access::Token => status < 500 && !leaks(&body),
                Access::Filtered => status == 200 && !leaks(&body),
                // A sign-in with a token Kiln does not know answers 401 with the form.
                Access::Public if signing_in => status == 401 && !leaks(&body),
                Access::Public | Access::Redirect => status < 400 && !leaks(&body),
            };
            if !ok {
                failures.push(format!(
                    "{} {} ({:?}: {}) as {who}: {status} {}",
                    spec.method,
                    spec.path,
                    spec.access,
                    spec.rule,
                    body.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} route(s) do not hold the access table:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The walk refused for the right reason: the owner reads the same paths.
    let page = app
        .get(
            "sec/priv/+simple/secret-pkg/",
            &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        )
        .await;
    assert_eq!(page.status(), 200, "the admin reads the private page");
}
