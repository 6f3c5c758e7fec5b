//! The index API: bootstrap layout, create/show/list/modify/delete and its rules.

use kiln::api::ModifyIndex;
use kiln::client::ClientError;
use kiln::domain::{IndexKind, IndexSettings};

use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail};

fn api_error(err: ClientError) -> (u16, String) {
    match err {
        ClientError::Api { status, detail } => (status, detail),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn first_start_creates_prod_and_master() {
    let app = TestApp::spawn().await;
    // The suite runs on the backends it says it does.
    let health: serde_json::Value = app.get("+health", &[]).await.json().await.unwrap();
    let expected = if crate::helpers::shared_backends() {
        ("postgresql", "s3")
    } else {
        ("sqlite", "file")
    };
    assert_eq!(
        (health["database"].as_str(), health["storage"].as_str()),
        (Some(expected.0), Some(expected.1)),
        "{health}"
    );
    let all = app.client().list_indexes().await.unwrap();
    let names: Vec<String> = all.iter().map(|v| v.index.name.to_string()).collect();
    assert_eq!(names, ["root/master", "root/prod"]);
    let master = &all[0].index.settings;
    assert_eq!(
        master
            .bases
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["root/prod"]
    );
    assert!(!master.promotion_only);
    let prod = &all[1].index.settings;
    assert!(prod.promotion_only && !prod.volatile);
    assert_eq!(all[0].simple_url, "/root/master/+simple/");
}

#[tokio::test]
async fn creates_shows_modifies_and_deletes() {
    let app = TestApp::spawn().await;
    let client = app.client();
    app.create_index("acme/feature-x", &["root/master"]).await;
    let shown = client
        .get_index(&"acme/feature-x".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(shown.index.settings.kind, IndexKind::Stage);
    assert_eq!(shown.upload_url, "/acme/feature-x/");

    let patch = ModifyIndex {
        volatile: Some(true),
        description: Some("login form".into()),
        ..ModifyIndex::default()
    };
    let modified = client
        .modify_index(&"acme/feature-x".parse().unwrap(), &patch)
        .await
        .unwrap();
    assert!(modified.index.settings.volatile);
    assert_eq!(modified.index.settings.description, "login form");
    assert_eq!(
        modified.index.settings.bases.len(),
        1,
        "unpatched fields are kept"
    );

    // Deleting removes the index and its listings; the name can be reused.
    assert_eq!(
        app.upload("acme/feature-x", &Dist::wheel("demo", "1.0"))
            .await
            .status(),
        200
    );
    client
        .delete_index(&"acme/feature-x".parse().unwrap(), false)
        .await
        .unwrap();
    let (status, message) = api_error(
        client
            .get_index(&"acme/feature-x".parse().unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (404, "index `acme/feature-x` does not exist")
    );
    app.create_index("acme/feature-x", &[]).await;
    assert_eq!(
        app.get("acme/feature-x/+simple/demo/", &[]).await.status(),
        404
    );
}

#[tokio::test]
async fn refuses_cycles_missing_bases_and_duplicates() {
    let app = TestApp::spawn().await;
    let client = app.client();
    app.create_index("acme/a", &["root/master"]).await;
    app.create_index("acme/b", &["acme/a"]).await;

    let cycle = ModifyIndex {
        bases: Some(vec!["acme/b".parse().unwrap()]),
        ..ModifyIndex::default()
    };
    let (status, message) = api_error(
        client
            .modify_index(&"acme/a".parse().unwrap(), &cycle)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "bases of `acme/a` would form a cycle: `acme/b` already inherits from `acme/a`"
    );
    let own = ModifyIndex {
        bases: Some(vec!["acme/a".parse().unwrap()]),
        ..ModifyIndex::default()
    };
    let (status, message) = api_error(
        client
            .modify_index(&"acme/a".parse().unwrap(), &own)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (400, "index `acme/a` cannot be its own base")
    );
    // Transitive: prod → b would close prod → b → a → master → prod.
    let transitive = ModifyIndex {
        bases: Some(vec!["acme/b".parse().unwrap()]),
        ..ModifyIndex::default()
    };
    let (status, _) = api_error(
        client
            .modify_index(&"root/prod".parse().unwrap(), &transitive)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);

    let settings = |bases: &[&str]| IndexSettings {
        kind: IndexKind::Stage,
        bases: bases.iter().map(|b| b.parse().unwrap()).collect(),
        volatile: false,
        promotion_only: false,
        ..IndexSettings::default()
    };
    let (status, message) = api_error(
        client
            .create_index(&"acme/c".parse().unwrap(), &settings(&["acme/nope"]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            400,
            "base index `acme/nope` of `acme/c` does not exist; create it first"
        )
    );
    let (status, message) = api_error(
        client
            .create_index(&"acme/c".parse().unwrap(), &settings(&["acme/a", "acme/a"]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (400, "base `acme/a` is listed twice for index `acme/c`")
    );
    let (status, message) = api_error(
        client
            .create_index(&"acme/a".parse().unwrap(), &settings(&[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (409, "index `acme/a` already exists")
    );
}

#[tokio::test]
async fn refuses_deleting_a_base_or_production() {
    let app = TestApp::spawn().await;
    let client = app.client();
    app.create_index("acme/feature-y", &["root/master"]).await;
    let (status, message) = api_error(
        client
            .delete_index(&"root/master".parse().unwrap(), false)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert_eq!(
        message,
        "index `root/master` is a base of `acme/feature-y`; remove it from their bases first"
    );
    let no_bases = ModifyIndex {
        bases: Some(Vec::new()),
        ..ModifyIndex::default()
    };
    client
        .modify_index(&"root/master".parse().unwrap(), &no_bases)
        .await
        .unwrap();
    let (status, message) = api_error(
        client
            .delete_index(&"root/prod".parse().unwrap(), false)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);
    assert!(message.contains("append-only"), "{message}");
}

#[tokio::test]
async fn api_refuses_bad_requests_clearly() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let post = |body: &'static str, token: Option<&'static str>| {
        let mut request = http
            .post(app.url("+api/v1/indexes"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let (status, message) = detail(post(r#"{"name":"acme/x"}"#, None).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(message.contains("this needs a token"), "{message}");
    let (status, message) = detail(
        post(r#"{"name":"acme/../x"}"#, Some(ADMIN_TOKEN))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.contains("index name `acme/../x` must be `namespace/name`"),
        "{message}"
    );
    let (status, message) = detail(
        post(r#"{"name":"acme/x","kind":"mirror"}"#, Some(ADMIN_TOKEN))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.contains("a mirror needs an upstream URL (`mirror_url`)"),
        "{message}"
    );
    let (status, message) = detail(
        post(r#"{"name":"acme/x","kind":"warehouse"}"#, Some(ADMIN_TOKEN))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown variant `warehouse`"), "{message}");
    let (status, message) = detail(
        post(r#"{"name":"acme/x","colour":"red"}"#, Some(ADMIN_TOKEN))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown field `colour`"), "{message}");
    let (status, _) = detail(post("{not json", Some(ADMIN_TOKEN)).await.unwrap()).await;
    assert_eq!(status, 400);
    let huge = Box::leak(
        format!(
            r#"{{"name":"acme/x","description":"{}"}}"#,
            "x".repeat(100_000)
        )
        .into_boxed_str(),
    );
    let (status, _) = detail(post(huge, Some(ADMIN_TOKEN)).await.unwrap()).await;
    assert_eq!(status, 413);
    let health = app.get("+health", &[]).await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_index_shows_its_files_bytes_and_the_bytes_only_it_holds() {
    let app = TestApp::spawn().await;
    app.create_index("acme/feature-x", &["root/master"]).await;
    let shared = Dist::wheel("shared", "1.0");
    let own = Dist::wheel_with_data("own", "1.0", vec![3u8; 5000]);
    for (index, dist) in [
        ("root/master", &shared),
        ("acme/feature-x", &shared),
        ("acme/feature-x", &own),
    ] {
        assert_eq!(app.upload(index, dist).await.status(), 200, "{index}");
    }
    let view = app
        .client()
        .get_index(&"acme/feature-x".parse().unwrap())
        .await
        .unwrap();
    let usage = view.usage.expect("one index shows what it holds");
    assert_eq!(usage.files, 2);
    assert_eq!(usage.bytes, (shared.bytes.len() + own.bytes.len()) as u64);
    assert_eq!(
        usage.own_bytes,
        own.bytes.len() as u64,
        "the shared wheel is also on root/master"
    );
    let listed = app.client().list_indexes().await.unwrap();
    assert!(listed.iter().all(|v| v.usage.is_none()), "lists stay cheap");
}
