//! Access control: the scope matrix, private indexes read by pip and uv, revocation and
//! expiry, token management rules, and no secret in the logs.

use serde_json::{Value, json};

use crate::clients::{pip_install, uv_install};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail, run, show};

/// Creates a token with `scopes` through the API (as the admin); returns its secret.
pub async fn mint(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let response = call(
        app,
        "POST",
        "+api/v1/tokens",
        Some(ADMIN_TOKEN),
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(response.status(), 201, "minting {name}");
    let body: Value = response.json().await.unwrap();
    body["secret"].as_str().unwrap().to_owned()
}

/// Creates a private index `name` (no bases) as the admin.
pub async fn private_index(app: &TestApp, name: &str) {
    let created = call(
        app,
        "POST",
        "+api/v1/indexes",
        Some(ADMIN_TOKEN),
        Some(json!({"name": name, "private": true})),
    )
    .await;
    assert_eq!(created.status(), 201, "creating private index {name}");
}

/// Any API call, with an optional bearer token and JSON body.
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let method: reqwest::Method = method.parse().unwrap();
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("API request")
}

/// A private index `root/secret` (inheriting nothing) with `hidden 1.0` on it.
async fn secret_index(app: &TestApp) -> Dist {
    private_index(app, "root/secret").await;
    let hidden = Dist::wheel("hidden", "1.0");
    assert_eq!(app.upload("root/secret", &hidden).await.status(), 200);
    hidden
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Read,
    Upload,
    Report,
    Promote,
    Admin,
}

impl Action {
    const ALL: [Self; 5] = [
        Self::Read,
        Self::Upload,
        Self::Report,
        Self::Promote,
        Self::Admin,
    ];

    fn permission(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Upload => "upload",
            Self::Report => "report",
            Self::Promote => "promote",
            Self::Admin => "admin",
        }
    }

    /// Performs the action as `token`; `n` keeps names unique per caller.
    async fn perform(
        self,
        app: &TestApp,
        token: Option<&str>,
        n: usize,
        sha: &str,
    ) -> reqwest::Response {
        match self {
            Self::Read => call(app, "GET", "root/secret/+simple/hidden/", token, None).await,
            Self::Upload => {
                let dist = Dist::wheel(&format!("matrix{n}"), "1.0");
                app.upload_form("root/master", dist.form(), token).await
            }
            Self::Report => {
                let body = json!({"index": "root/master", "sha256": sha, "stage": "unit", "run_id": format!("run-{n}"), "outcome": "fail", "duration_ms": 1});
                call(app, "POST", "+api/v1/results", token, Some(body)).await
            }
            Self::Promote => {
                let body = json!({"project": "demo", "version": "1.0", "dry_run": true});
                call(app, "POST", "+api/v1/promotions", token, Some(body)).await
            }
            Self::Admin => {
                let body = json!({"name": format!("root/made-{n}")});
                call(app, "POST", "+api/v1/indexes", token, Some(body)).await
            }
        }
    }

    /// The index the refusal must name.
    fn index(self, n: usize) -> String {
        match self {
            Self::Read => "root/secret".into(),
            Self::Upload | Self::Report => "root/master".into(),
            Self::Promote => "root/prod".into(),
            Self::Admin => format!("root/made-{n}"),
        }
    }
}

#[tokio::test]
async fn every_permission_is_allowed_exactly_where_its_scope_says() {
    let app = TestApp::spawn().await;
    secret_index(&app).await;
    let demo = Dist::wheel("demo", "1.0");
    assert_eq!(app.upload("root/master", &demo).await.status(), 200);
    let sha = demo.sha256();

    // One token per permission on root/*, one admin of another namespace, and nobody.
    let mut callers: Vec<(String, Option<String>, Option<&str>)> = Vec::new();
    for action in Action::ALL {
        let permission = action.permission();
        let scope = format!("{permission}:root/*");
        let secret = mint(&app, &format!("only-{permission}"), &[&scope]).await;
        callers.push((scope, Some(secret), Some(permission)));
    }
    let elsewhere = mint(&app, "acme-admin", &["admin:acme/*"]).await;
    callers.push(("admin:acme/*".into(), Some(elsewhere), None));
    callers.push(("anonymous".into(), None, None));

    let mut checked = 0;
    for (n, (label, secret, held)) in callers.iter().enumerate() {
        for action in Action::ALL {
            let wanted = action.permission();
            let allowed = held.is_some_and(|h| h == wanted || h == "admin");
            let response = action.perform(&app, secret.as_deref(), n, &sha).await;
            let (status, message) = detail(response).await;
            let case = format!("{label} doing {wanted}: {status} `{message}`");
            if allowed {
                // The dry run of an untested release is allowed and then refused by policy.
                let expected = match action {
                    Action::Read | Action::Upload => 200,
                    Action::Report | Action::Admin => 201,
                    Action::Promote => 409,
                };
                assert_eq!(status, expected, "must be allowed and succeed: {case}");
            } else if secret.is_none() {
                // Public reads are not the question here: root/secret is private.
                assert_eq!(status, 401, "{case}");
            } else {
                assert_eq!(status, 403, "{case}");
                let index = format!("`{}`", action.index(n));
                assert!(
                    message.contains(&format!("lacks `{wanted}` on")) && message.contains(&index),
                    "{case}: must name `{wanted}` and {index}"
                );
                assert!(
                    !message.contains("only-"),
                    "a refusal names no token: {case}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 35);
}

#[tokio::test]
async fn ci_and_release_tokens_do_exactly_their_jobs() {
    let app = TestApp::spawn().await;
    let ci = mint(&app, "ci", &["upload:root/*", "report:root/*"]).await;
    let release = mint(&app, "release", &["promote:root/prod"]).await;
    let demo = Dist::wheel("demo", "1.0");
    let ci_client = kiln::client::Client::new(&app.base, Some(ci.clone())).unwrap();
    app.build_with(&ci_client, "root/master", "abcdef1", &[&demo])
        .await;
    let report = json!({"index": "root/master", "sha256": demo.sha256(), "stage": "unit", "run_id": "r1", "outcome": "pass", "artifact": "verified", "duration_ms": 5});
    let response = call(&app, "POST", "+api/v1/results", Some(&ci), Some(report)).await;
    assert_eq!(response.status(), 201);

    // The CI token cannot promote, the release token can (and cannot upload).
    let promote = json!({"project": "demo", "version": "1.0"});
    let (status, message) = detail(
        call(
            &app,
            "POST",
            "+api/v1/promotions",
            Some(&ci),
            Some(promote.clone()),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, message.contains("lacks `promote` on `root/prod`")),
        (403, true),
        "{message}"
    );
    let response = call(
        &app,
        "POST",
        "+api/v1/promotions",
        Some(&release),
        Some(promote),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"], "promoted");
    let by = body["promotion"]["promoted_by"].as_str().unwrap();
    assert!(
        by.starts_with("release#"),
        "recorded with the token's id: {by}"
    );
    let other = Dist::wheel("other", "1.0");
    let (status, message) = detail(
        app.upload_form("root/master", other.form(), Some(&release))
            .await,
    )
    .await;
    assert_eq!(
        (status, message.contains("lacks `upload` on `root/master`")),
        (403, true),
        "{message}"
    );

    // The CI token creates branch indexes (what `kiln ensure` does) but not other indexes,
    // and cannot yank on prod.
    let branch = json!({"name": "root/feature-x", "bases": ["root/master"], "volatile": true, "branch": "feature/x"});
    assert_eq!(
        call(&app, "POST", "+api/v1/indexes", Some(&ci), Some(branch))
            .await
            .status(),
        201
    );
    let plain = json!({"name": "root/plain", "bases": ["root/master"]});
    let (status, message) =
        detail(call(&app, "POST", "+api/v1/indexes", Some(&ci), Some(plain)).await).await;
    assert_eq!(
        (status, message.contains("lacks `admin` on `root/plain`")),
        (403, true),
        "{message}"
    );
    let yank = json!({"reason": "oops"});
    let (status, message) = detail(
        call(
            &app,
            "POST",
            "+api/v1/releases/root/prod/demo/1.0/yank",
            Some(&ci),
            Some(yank.clone()),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, message.contains("lacks `promote` on `root/prod`")),
        (403, true),
        "{message}"
    );
    let response = call(
        &app,
        "POST",
        "+api/v1/releases/root/master/demo/1.0/yank",
        Some(&ci),
        Some(yank),
    )
    .await;
    assert_eq!(
        response.status(),
        200,
        "yanking on a stage index needs upload"
    );
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let ci = mint(&app, "ci", &["upload:root/*"]).await;
    let first = Dist::wheel("before", "1.0");
    assert_eq!(
        app.upload_form("root/master", first.form(), Some(&ci))
            .await
            .status(),
        200
    );

    let listed: Vec<Value> = call(&app, "GET", "+api/v1/tokens", Some(ADMIN_TOKEN), None)
        .await
        .json()
        .await
        .unwrap();
    let id = listed.iter().find(|t| t["name"] == "ci").unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(
        listed
            .iter()
            .all(|t| t.get("secret").is_none() && !t.to_string().contains(&ci))
    );
    let response = call(
        &app,
        "DELETE",
        &format!("+api/v1/tokens/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);

    let second = Dist::wheel("after", "1.0");
    let (status, message) = detail(
        app.upload_form("root/master", second.form(), Some(&ci))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert!(message.contains("the token was revoked at"), "{message}");
    let (status, _) = detail(app.get("root/master/+simple/after/", &[]).await).await;
    assert_eq!(status, 404, "nothing was stored");
    let listed: Vec<Value> = call(&app, "GET", "+api/v1/tokens", Some(ADMIN_TOKEN), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.iter().find(|t| t["id"] == id).unwrap()["state"],
        "revoked"
    );
}

#[tokio::test]
async fn expired_tokens_are_refused_with_the_time() {
    let app = TestApp::spawn().await;
    // Far enough ahead that a slow machine still creates it before it expires.
    let expiry = chrono::Utc::now() + chrono::Duration::seconds(4);
    let soon = expiry.to_rfc3339();
    let response = call(
        &app,
        "POST",
        "+api/v1/tokens",
        Some(ADMIN_TOKEN),
        Some(json!({"name": "brief", "scopes": ["upload:root/*"], "expires_at": soon})),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_owned();
    // Waits for the expiry itself (server and test share the clock), not a fixed time.
    while chrono::Utc::now() <= expiry + chrono::Duration::milliseconds(100) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, message) = detail(
        app.upload_form(
            "root/master",
            Dist::wheel("late", "1.0").form(),
            Some(&secret),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    assert!(message.contains("the token expired at"), "{message}");

    let past = json!({"name": "past", "scopes": ["read:*"], "expires_at": "2001-01-01"});
    let (status, message) = detail(
        call(
            &app,
            "POST",
            "+api/v1/tokens",
            Some(ADMIN_TOKEN),
            Some(past),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, message.contains("is in the past")),
        (400, true),
        "{message}"
    );
}

#[tokio::test]
async fn tokens_grant_only_what_their_creator_administers() {
    let app = TestApp::spawn().await;
    let acme_admin = mint(&app, "acme-admin", &["admin:acme/*"]).await;
    let ci = mint(&app, "ci", &["upload:root/*"]).await;
    let create = |scopes: Value| json!({"name": "minted", "scopes": scopes});
    for reserved in ["admin", "Auto (rule)", "ci#2"] {
        let response = call(
            &app,
            "POST",
            "+api/v1/tokens",
            Some(&acme_admin),
            Some(json!({"name": reserved, "scopes": ["upload:acme/*"]})),
        )
        .await;
        let (status, message) = detail(response).await;
        assert_eq!(status, 400, "{reserved}: {message}");
    }

    let response = call(
        &app,
        "POST",
        "+api/v1/tokens",
        Some(&acme_admin),
        Some(create(json!(["upload:acme/*", "promote:acme/prod"]))),
    )
    .await;
    assert_eq!(response.status(), 201, "a namespace admin mints inside it");
    let cases = [
        (
            &acme_admin,
            json!(["upload:root/*"]),
            403,
            "granting `upload:root/*` needs `admin` on `root/*`",
        ),
        (
            &acme_admin,
            json!(["admin:*"]),
            403,
            "granting `admin:*` needs `admin` on `*`",
        ),
        (
            &ci,
            json!(["upload:root/*"]),
            403,
            "granting `upload:root/*` needs `admin` on `root/*`",
        ),
        (&acme_admin, json!([]), 400, "at least one scope"),
        (
            &acme_admin,
            json!(["write:acme/*"]),
            400,
            "must be one of read, upload",
        ),
        (
            &acme_admin,
            json!(["upload:acme/../root"]),
            400,
            "pattern must be",
        ),
    ];
    for (token, scopes, status, needle) in cases {
        let (got, message) = detail(
            call(
                &app,
                "POST",
                "+api/v1/tokens",
                Some(token),
                Some(create(scopes.clone())),
            )
            .await,
        )
        .await;
        assert_eq!(got, status, "{scopes}: {message}");
        assert!(
            message.contains(needle),
            "{scopes}: `{message}` lacks `{needle}`"
        );
    }

    // Each sees what it manages: the namespace admin its own and what it minted, the CI
    // token only itself; the rest is indistinguishable from not existing.
    let listed: Vec<Value> = call(&app, "GET", "+api/v1/tokens", Some(&acme_admin), None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme-admin", "minted"]);
    let listed: Vec<Value> = call(&app, "GET", "+api/v1/tokens", Some(&ci), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let admin_id = 1;
    let (status, message) = detail(
        call(
            &app,
            "DELETE",
            &format!("+api/v1/tokens/{admin_id}"),
            Some(&ci),
            None,
        )
        .await,
    )
    .await;
    let (status_missing, message_missing) =
        detail(call(&app, "DELETE", "+api/v1/tokens/999", Some(&ci), None).await).await;
    assert_eq!((status, status_missing), (404, 404));
    assert_eq!(
        message.replace(&admin_id.to_string(), "N"),
        message_missing.replace("999", "N")
    );
    // A token may revoke itself.
    let own = listed[0]["id"].as_i64().unwrap();
    assert_eq!(
        call(
            &app,
            "DELETE",
            &format!("+api/v1/tokens/{own}"),
            Some(&ci),
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(&app, "GET", "+api/v1/tokens", Some(&ci), None)
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn private_indexes_need_read_everywhere_they_show() {
    let app = TestApp::spawn().await;
    let hidden = secret_index(&app).await;
    let reader = mint(&app, "reader", &["read:root/secret"]).await;
    let stranger = mint(&app, "stranger", &["read:acme/*"]).await;
    // A public index inheriting the private one is as private as its chain.
    app.create_index("root/front", &["root/secret"]).await;
    let file = format!("+f/{}/{}", hidden.sha256(), hidden.filename);
    let paths = [
        "root/secret/+simple/".to_owned(),
        "root/secret/+simple/hidden/".to_owned(),
        format!("root/secret/{file}"),
        "root/front/+simple/hidden/".to_owned(),
        format!("root/front/{file}"),
        "+api/v1/indexes/root/secret".to_owned(),
        "+api/v1/releases/root/secret/hidden/1.0".to_owned(),
        format!("+api/v1/results/{}", hidden.sha256()),
        "+api/v1/events?index=root/secret".to_owned(),
    ];
    for path in &paths {
        let response = call(&app, "GET", path, None, None).await;
        let challenge = response.headers().get("www-authenticate").cloned();
        let (status, message) = detail(response).await;
        assert_eq!(status, 401, "anonymous {path}: {message}");
        assert!(
            challenge.is_some(),
            "{path}: a 401 carries WWW-Authenticate for pip's netrc retry"
        );
        assert!(message.contains("private"), "{path}: {message}");
        let (status, message) = detail(call(&app, "GET", path, Some(&stranger), None).await).await;
        assert_eq!(status, 403, "stranger {path}: {message}");
        assert!(message.contains("`read` on"), "{path}: {message}");
        let status = call(&app, "GET", path, Some(&reader), None).await.status();
        assert_eq!(status, 200, "reader {path}");
    }
    // A public index that does not inherit it never serves its files.
    let status = call(
        &app,
        "GET",
        &format!("root/master/{file}"),
        Some(&reader),
        None,
    )
    .await
    .status();
    assert_eq!(status, 404);
    // Lists leave it out for those who cannot read it.
    let names = |list: Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let anonymous = names(
        call(&app, "GET", "+api/v1/indexes", None, None)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert!(
        !anonymous.contains(&"root/secret".to_owned())
            && !anonymous.contains(&"root/front".to_owned()),
        "{anonymous:?}"
    );
    assert!(anonymous.contains(&"root/master".to_owned()));
    let readable = names(
        call(&app, "GET", "+api/v1/indexes", Some(&reader), None)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert!(
        readable.contains(&"root/secret".to_owned()) && readable.contains(&"root/front".to_owned())
    );

    // Nobody can build an index on a base they cannot read.
    let acme_admin = mint(&app, "acme-admin", &["admin:acme/*"]).await;
    let sneaky = json!({"name": "acme/peek", "bases": ["root/secret"]});
    let (status, message) = detail(
        call(
            &app,
            "POST",
            "+api/v1/indexes",
            Some(&acme_admin),
            Some(sneaky),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, message.contains("lacks `read` on `root/secret`")),
        (403, true),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_read_a_private_index_with_url_credentials_and_netrc() {
    let app = TestApp::spawn().await;
    let hidden = secret_index(&app).await;
    let reader = mint(&app, "reader", &["read:root/secret"]).await;
    let host = app.base.trim_start_matches("http://");
    let with_credentials = format!("http://__token__:{reader}@{host}/root/secret/+simple/");
    let plain = app.simple("root/secret");
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    let hostname = host.split(':').next().unwrap();
    std::fs::write(
        &netrc,
        format!("machine {hostname}\nlogin __token__\npassword {reader}\n"),
    )
    .unwrap();
    let empty_netrc = dir.path().join("empty-netrc");
    std::fs::write(&empty_netrc, "").unwrap();

    // Without credentials both fail, saying why.
    let mut pip = pip_install(
        &plain,
        &dir.path().join("anon"),
        &dir.path().join("anon.json"),
        "hidden",
    );
    pip.env("NETRC", &empty_netrc);
    let output = run(pip).await;
    assert!(!output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{}",
        show(&output)
    );

    for (how, url, netrc_file) in [
        ("URL credentials", &with_credentials, &empty_netrc),
        ("netrc", &plain, &netrc),
    ] {
        let report = dir.path().join(format!("{how}.json"));
        let mut pip = pip_install(
            url,
            &dir.path().join(format!("pip-{how}")),
            &report,
            "hidden",
        );
        pip.env("NETRC", netrc_file);
        let output = run(pip).await;
        assert!(output.status.success(), "pip with {how}: {}", show(&output));
        assert_eq!(
            crate::clients::installed_hashes(&report),
            vec![("hidden".to_owned(), hidden.sha256())],
            "pip with {how}"
        );
        let target = dir.path().join(format!("uv-{how}"));
        let mut uv = uv_install(&["--index-url", url, "hidden"], &target);
        uv.env("NETRC", netrc_file);
        let output = run(uv).await;
        assert!(output.status.success(), "uv with {how}: {}", show(&output));
        assert!(
            target.join("hidden").exists()
                || std::fs::read_dir(&target).unwrap().any(|e| e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("hidden")),
            "uv with {how} installed nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_ever_reaches_the_logs() {
    use std::process::Stdio;
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = data.path().join("server.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--upstream", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .args(crate::helpers::serve_args(&data.path().join("data")).await)
        .env("KILN_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KILN_LOG", "trace")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = crate::helpers::Deadline::after(60);
    while http.get(format!("{base}/+health")).send().await.is_err() {
        assert!(!deadline.passed(), "kiln serve did not start within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Create a token, use it every way a client can, and fail with a wrong one.
    let created: Value = http
        .post(format!("{base}/+api/v1/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "ci", "scopes": ["upload:root/*", "read:root/*"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let wheel = Dist::wheel("logged", "1.0");
    let response = http
        .post(format!("{base}/root/master/"))
        .basic_auth("__token__", Some(&secret))
        .multipart(wheel.form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let host = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let output = run(pip_install(
        &format!("http://__token__:{secret}@{host}/root/master/+simple/"),
        &dir.path().join("t"),
        &dir.path().join("r.json"),
        "logged",
    ))
    .await;
    assert!(output.status.success(), "{}", show(&output));
    let wrong = format!("{secret}x");
    let response = http
        .get(format!("{base}/root/master/+simple/"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["token", "list"])
        .env("KILN_SERVER", &base)
        .env("KILN_TOKEN", &secret)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", show(&cli));

    server.kill().unwrap();
    server.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("token created"),
        "the log was captured:\n{text}"
    );
    assert!(text.lines().count() > 20, "trace logging was on");
    assert!(
        !text.contains('\u{1b}'),
        "a log written to a file has no ANSI colour codes"
    );
    for (what, value) in [
        ("admin token", ADMIN_TOKEN),
        ("new token", secret.as_str()),
        ("wrong token", wrong.as_str()),
    ] {
        let body = value.trim_start_matches("kiln_");
        assert!(!text.contains(body), "the {what} appears in the server log");
    }
    let cli_text = format!(
        "{}{}",
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        !cli_text.contains(secret.trim_start_matches("kiln_")),
        "`kiln token list` printed the secret"
    );
}

#[tokio::test]
async fn only_the_servers_admin_points_mirrors_and_only_admins_switch_the_guard_off() {
    let app = TestApp::spawn().await;
    let acme_admin = mint(&app, "acme-admin", &["admin:acme/*"]).await;
    let ci = mint(&app, "ci", &["upload:acme/*"]).await;
    let indexes = "+api/v1/indexes";
    let mirror = json!({"name": "acme/up", "mirror_url": "http://127.0.0.1:9/simple/"});
    let refused = call(&app, "POST", indexes, Some(&acme_admin), Some(mirror)).await;
    let (status, message) = detail(refused).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("needs admin on `*`"), "{message}");

    // The server's admin makes it, with a login; a namespace admin may not re-point it.
    let with_login = json!({"name": "acme/up", "mirror_url": "http://127.0.0.1:9/simple/",
        "mirror_username": "ci", "mirror_password": "s3cret"});
    let made = call(&app, "POST", indexes, Some(ADMIN_TOKEN), Some(with_login)).await;
    assert_eq!(made.status(), 201);
    let repoint = json!({"mirror_url": "http://127.0.0.1:10/simple/"});
    let path = "+api/v1/indexes/acme/up";
    let refused = call(
        &app,
        "PATCH",
        path,
        Some(&acme_admin),
        Some(repoint.clone()),
    )
    .await;
    assert_eq!(refused.status(), 403);
    // Re-pointed by the server's admin, the old upstream's login is dropped.
    let moved = call(&app, "PATCH", path, Some(ADMIN_TOKEN), Some(repoint)).await;
    assert_eq!(moved.status(), 200);
    let view: Value = moved.json().await.unwrap();
    assert!(view["mirror"]["username"].is_null(), "{view}");
    assert_eq!(view["mirror"]["url"], "http://127.0.0.1:10/simple/");

    // A CI token may create its branch index, but not one that switches the guard off.
    let branch = |allow: Value| {
        json!({"name": "acme/feature-x", "bases": [], "volatile": true,
            "branch": "feature/x", "mirror_allow": allow})
    };
    let refused = call(&app, "POST", indexes, Some(&ci), Some(branch(json!(["*"])))).await;
    assert_eq!(refused.status(), 403);
    let made = call(&app, "POST", indexes, Some(&ci), Some(branch(json!([])))).await;
    assert_eq!(made.status(), 201);
}
