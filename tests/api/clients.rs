//! The real clients users run — pip, uv, twine, `uv publish` — against a real server.

use std::process::Command;

use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, python, run, show};

/// Sets up master with `demo 1.0` (depending on `helper`) and a branch that inherits it.
async fn master_and_branch() -> (TestApp, Dist, Dist) {
    let app = TestApp::spawn().await;
    app.create_index("acme/feature-x", &["root/master"]).await;
    let demo = Dist::wheel_with("demo", "1.0", &["Requires-Dist: helper>=2"], "");
    let helper = Dist::wheel("helper", "2.1");
    assert_eq!(app.upload("root/master", &demo).await.status(), 200);
    assert_eq!(app.upload("root/master", &helper).await.status(), 200);
    (app, demo, helper)
}

pub fn pip_install(
    index_url: &str,
    target: &std::path::Path,
    report: &std::path::Path,
    what: &str,
) -> Command {
    let mut pip = python().command("pip");
    pip.args(["install", "--no-cache-dir", "--quiet", "--target"])
        .arg(target)
        .arg("--report")
        .arg(report)
        .args(["--index-url", index_url, what]);
    pip
}

pub fn installed_hashes(report: &std::path::Path) -> Vec<(String, String)> {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    let mut found: Vec<(String, String)> = report["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["metadata"]["name"].as_str().unwrap().to_owned(),
                item["download_info"]["archive_info"]["hashes"]["sha256"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn pip_installs_from_a_branch_that_inherits_master() {
    let (app, demo, helper) = master_and_branch().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = run(pip_install(
        &app.simple("acme/feature-x"),
        &dir.path().join("site"),
        &report,
        "demo",
    ))
    .await;
    assert!(output.status.success(), "pip install: {}", show(&output));
    assert_eq!(
        installed_hashes(&report),
        vec![
            ("demo".to_owned(), demo.sha256()),
            ("helper".to_owned(), helper.sha256())
        ],
        "pip must install exactly the uploaded bytes"
    );
    assert!(dir.path().join("site/demo/__init__.py").exists());
}

/// A proxy that asks Kiln for HTML only, so pip takes its PEP 503 HTML code path.
async fn html_only_proxy(upstream: String) -> String {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move |request: Request| {
        let upstream = upstream.clone();
        async move {
            let url = format!("{upstream}{}", request.uri());
            let response = reqwest::Client::new()
                .get(url)
                .header("Accept", "text/html")
                .send()
                .await
                .unwrap();
            let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = response.bytes().await.unwrap();
            (status, [("content-type", content_type)], body).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn pip_installs_through_the_html_api_too() {
    let (app, demo, helper) = master_and_branch().await;
    let proxy = html_only_proxy(app.base.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let index_url = format!("{proxy}/acme/feature-x/+simple/");
    let output = run(pip_install(
        &index_url,
        &dir.path().join("site"),
        &report,
        "demo==1.0",
    ))
    .await;
    assert!(
        output.status.success(),
        "pip install via HTML: {}",
        show(&output)
    );
    assert_eq!(
        installed_hashes(&report),
        vec![
            ("demo".to_owned(), demo.sha256()),
            ("helper".to_owned(), helper.sha256())
        ]
    );
}

pub fn uv_install(args: &[&str], target: &std::path::Path) -> Command {
    let mut uv = python().command("uv");
    uv.args(["pip", "install", "--no-cache", "--python"])
        .arg(python().python_path())
        .arg("--target")
        .arg(target)
        .args(args);
    uv
}

#[tokio::test]
async fn uv_installs_exact_bytes_through_json_and_html() {
    let (app, demo, helper) = master_and_branch().await;
    let dir = tempfile::tempdir().unwrap();
    let index = app.simple("acme/feature-x");

    // --require-hashes makes uv verify the downloaded bytes against the uploaded digests.
    let requirements = dir.path().join("requirements.txt");
    std::fs::write(
        &requirements,
        format!(
            "demo==1.0 --hash=sha256:{}\nhelper==2.1 --hash=sha256:{}\n",
            demo.sha256(),
            helper.sha256()
        ),
    )
    .unwrap();
    let req = requirements.to_str().unwrap();
    let output = run(uv_install(
        &["--index-url", &index, "--require-hashes", "-r", req],
        &dir.path().join("json"),
    ))
    .await;
    assert!(output.status.success(), "uv via JSON: {}", show(&output));
    assert!(dir.path().join("json/demo/__init__.py").exists());

    // The check has teeth: a wrong digest fails.
    std::fs::write(
        &requirements,
        format!(
            "demo==1.0 --hash=sha256:{}\nhelper==2.1 --hash=sha256:{}\n",
            "0".repeat(64),
            helper.sha256()
        ),
    )
    .unwrap();
    let output = run(uv_install(
        &["--index-url", &index, "--require-hashes", "-r", req],
        &dir.path().join("wrong"),
    ))
    .await;
    assert!(
        !output.status.success(),
        "uv must refuse a hash mismatch: {}",
        show(&output)
    );

    // uv reads `--find-links` pages as HTML.
    std::fs::write(
        &requirements,
        format!("demo==1.0 --hash=sha256:{}\n", demo.sha256()),
    )
    .unwrap();
    let links = format!("{index}demo/");
    let output = run(uv_install(
        &[
            "--no-index",
            "--no-deps",
            "--find-links",
            &links,
            "--require-hashes",
            "-r",
            req,
        ],
        &dir.path().join("html"),
    ))
    .await;
    assert!(output.status.success(), "uv via HTML: {}", show(&output));
    assert!(dir.path().join("html/demo/__init__.py").exists());
}

fn twine_upload(app: &TestApp, index: &str, files: &[std::path::PathBuf]) -> Command {
    let mut twine = python().command("twine");
    twine
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
        ])
        .arg(app.url(&format!("{index}/")))
        .args(["-u", "__token__", "-p", ADMIN_TOKEN])
        .args(files);
    twine
}

#[tokio::test]
async fn twine_uploads_retries_and_shows_the_conflict_reason() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let wheel = Dist::wheel_with("demo", "3.0", &["Requires-Python: >=3.8"], "first");
    let path = wheel.write_to(dir.path());
    let output = run(twine_upload(
        &app,
        "root/master",
        std::slice::from_ref(&path),
    ))
    .await;
    assert!(output.status.success(), "twine upload: {}", show(&output));
    let output = run(twine_upload(&app, "root/master", &[path])).await;
    assert!(
        output.status.success(),
        "identical re-upload: {}",
        show(&output)
    );

    let other_dir = tempfile::tempdir().unwrap();
    let changed = Dist::wheel_with("demo", "3.0", &["Requires-Python: >=3.8"], "rebuilt");
    let output = run(twine_upload(
        &app,
        "root/master",
        &[changed.write_to(other_dir.path())],
    ))
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(stderr.contains("409"), "{}", show(&output));
    assert!(
        stderr.contains("File already exists"),
        "twine must show the reason: {}",
        show(&output)
    );

    // And a refusal of a different kind shows its reason too.
    let output = run(twine_upload(
        &app,
        "root/prod",
        &[wheel.write_to(dir.path())],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(
        stderr.contains("403") && stderr.contains("promotion-only"),
        "{}",
        show(&output)
    );

    let page = app.json_page("root/master", "demo").await;
    assert_eq!(page["files"][0]["hashes"]["sha256"], wheel.sha256());
    assert_eq!(page["files"][0]["requires-python"], ">=3.8");
}

#[tokio::test]
async fn uv_publish_uploads() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let wheel = Dist::wheel("published-by-uv", "0.1.0");
    let path = wheel.write_to(dir.path());
    let publish = || {
        let mut uv = python().command("uv");
        uv.args(["publish", "--no-cache", "--publish-url"])
            .arg(app.url("root/master/"))
            .args(["-u", "__token__", "-p", ADMIN_TOKEN])
            .arg(&path);
        uv
    };
    let output = run(publish()).await;
    assert!(output.status.success(), "uv publish: {}", show(&output));
    let output = run(publish()).await;
    assert!(
        output.status.success(),
        "uv publish again: {}",
        show(&output)
    );
    let page = app.json_page("root/master", "published-by-uv").await;
    assert_eq!(page["files"][0]["hashes"]["sha256"], wheel.sha256());
}
