//! Mirror indexes against a local upstream on loopback: pip and uv through the chain,
//! the cache surviving the upstream, single flight, the dependency-confusion guard, and
//! upstream garbage and outages.

use std::sync::Arc;

use kiln::api::ModifyIndex;

use crate::clients::{installed_hashes, pip_install, uv_install};
use crate::helpers::upstream::{Garbage, PageStyle, Upstream};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail, run, show};

/// A private `app` (uploaded to master) that needs a public tree:
/// alpha → beta → delta, alpha → gamma.
fn public_tree() -> Vec<Dist> {
    vec![
        Dist::wheel_with(
            "alpha",
            "1.0",
            &["Requires-Dist: beta>=2", "Requires-Dist: gamma"],
            "",
        ),
        Dist::wheel_with("beta", "2.0", &["Requires-Dist: delta"], ""),
        Dist::wheel("gamma", "1.5"),
        Dist::wheel("delta", "0.3"),
    ]
}

/// A server whose first start mirrored `upstream` as `root/pypi` under `root/prod`, with
/// a branch index `root/feature` on top of `root/master`.
async fn kiln_over(upstream: &Upstream) -> TestApp {
    let url = upstream.simple_url.clone();
    let app = TestApp::spawn_with(move |c| c.upstream = Some(url)).await;
    app.create_index("root/feature", &["root/master"]).await;
    app
}

async fn set_ttl(app: &TestApp, seconds: u64) {
    app.client()
        .modify_index(
            &"root/pypi".parse().unwrap(),
            &ModifyIndex {
                mirror_ttl_seconds: Some(seconds),
                ..ModifyIndex::default()
            },
        )
        .await
        .unwrap();
}

/// Bytes deflate cannot shrink (a xorshift sequence), so a wheel's size is what it carries.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn expected_hashes(dists: &[&Dist]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> =
        dists.iter().map(|d| (d.name.clone(), d.sha256())).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pip_and_uv_install_a_tree_through_the_mirror_and_keep_working_when_upstream_stops() {
    let tree = public_tree();
    let mut upstream = Upstream::start(PageStyle::Json, &tree).await;
    let app = kiln_over(&upstream).await;
    let private = Dist::wheel_with("app", "1.0", &["Requires-Dist: alpha"], "");
    assert_eq!(app.upload("root/master", &private).await.status(), 200);
    let mut everything: Vec<&Dist> = tree.iter().collect();
    everything.push(&private);
    let expected = expected_hashes(&everything);
    let index = app.simple("root/feature");
    let dir = tempfile::tempdir().unwrap();

    let install_all = |round: &'static str| {
        let dir = dir.path().to_owned();
        let index = index.clone();
        async move {
            let report = dir.join(format!("{round}-pip.json"));
            let output = run(pip_install(
                &index,
                &dir.join(format!("{round}-pip")),
                &report,
                "app",
            ))
            .await;
            assert!(output.status.success(), "{round}: pip: {}", show(&output));
            let output = run(uv_install(
                &["--index-url", &index, "app"],
                &dir.join(format!("{round}-uv")),
            ))
            .await;
            assert!(output.status.success(), "{round}: uv: {}", show(&output));
            for name in ["app", "alpha", "beta", "gamma", "delta"] {
                let module = dir.join(format!("{round}-uv/{name}/__init__.py"));
                assert!(module.exists(), "{round}: uv installed {name}");
            }
            report
        }
    };
    let report = install_all("cold").await;
    assert_eq!(
        installed_hashes(&report),
        expected,
        "pip got the upstream's exact bytes"
    );
    for dist in &tree {
        assert_eq!(
            upstream.requests(&format!("/files/{}", dist.filename)),
            1,
            "{} was fetched from upstream once for pip and uv together: {:?}",
            dist.filename,
            upstream.all_requests()
        );
    }
    assert_eq!(
        upstream.requests("/simple/app/"),
        0,
        "a private name is never asked of the upstream"
    );

    // Pages now always revalidate; the upstream goes away; the cache carries on.
    set_ttl(&app, 0).await;
    upstream.stop().await;
    let report = install_all("warm").await;
    assert_eq!(installed_hashes(&report), expected);
    let page = app
        .get(
            "root/feature/+simple/alpha/",
            &[("Accept", "application/vnd.pypi.simple.v1+json")],
        )
        .await;
    assert_eq!(page.status(), 200);
    let stale = page.headers()["x-kiln-mirror-stale"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        stale.contains("root/pypi") && stale.contains(&upstream.simple_url),
        "the stale header names the mirror and its upstream: {stale}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_upstream_works_too_and_core_metadata_is_mirrored() {
    let tree = public_tree();
    let upstream = Upstream::start(PageStyle::Html, &tree).await;
    let app = kiln_over(&upstream).await;
    let page = app.json_page("root/feature", "alpha").await;
    let file = &page["files"][0];
    assert_eq!(file["filename"], "alpha-1.0-py3-none-any.whl");
    assert_eq!(file["requires-python"], ">=3.8");
    assert!(
        file.get("size").is_none(),
        "HTML pages do not give sizes: {file}"
    );
    let metadata_sha = file["core-metadata"]["sha256"].as_str().unwrap().to_owned();
    let url = file["url"].as_str().unwrap();
    let metadata = app
        .get(&format!("root/feature/+simple/alpha/{url}.metadata"), &[])
        .await;
    assert_eq!(metadata.status(), 200);
    let bytes = metadata.bytes().await.unwrap();
    assert_eq!(
        kiln::domain::Sha256Digest::of(&bytes).as_str(),
        metadata_sha
    );
    assert!(String::from_utf8_lossy(&bytes).contains("Requires-Dist: beta>=2"));
    // Served from storage the second time.
    let again = app
        .get(&format!("root/feature/+simple/alpha/{url}.metadata"), &[])
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        upstream.requests("/files/alpha-1.0-py3-none-any.whl.metadata"),
        1
    );

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = run(pip_install(
        &app.simple("root/feature"),
        &dir.path().join("t"),
        &report,
        "alpha",
    ))
    .await;
    assert!(output.status.success(), "{}", show(&output));
    let alpha_tree: Vec<&Dist> = tree.iter().collect();
    assert_eq!(installed_hashes(&report), expected_hashes(&alpha_tree));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_cause_one_upstream_request() {
    let big = Dist::wheel_with_data("bulky", "1.0", incompressible(3 * 1024 * 1024));
    let upstream = Upstream::start(PageStyle::Json, std::slice::from_ref(&big)).await;
    let app = Arc::new(kiln_over(&upstream).await);
    // Slow enough that all fifty arrive while the first is still waiting.
    upstream.set_delay(std::time::Duration::from_millis(500));

    let pages: Vec<_> = (0..50)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                app.json_page("root/feature", "bulky").await["files"][0]["url"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut urls = Vec::new();
    for page in pages {
        urls.push(page.await.unwrap());
    }
    assert_eq!(upstream.requests("/simple/bulky/"), 1, "one page request");

    let downloads: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let response = app
                    .get(&format!("root/feature/+simple/bulky/{url}"), &[])
                    .await;
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap()
            })
        })
        .collect();
    for download in downloads {
        let bytes = download.await.unwrap();
        assert_eq!(
            kiln::domain::Sha256Digest::of(&bytes).as_str(),
            big.sha256(),
            "every client got every byte"
        );
    }
    assert_eq!(
        upstream.requests(&format!("/files/{}", big.filename)),
        1,
        "one upstream download for fifty clients"
    );
    let cache = app
        .client()
        .mirror_cache(&"root/pypi".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(cache.projects[0].cached_files, 1, "{cache:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_name_hides_the_upstream_unless_allowed() {
    let evil = Dist::wheel_with("internal-tool", "9.9", &[], "from the internet");
    let upstream = Upstream::start(PageStyle::Json, std::slice::from_ref(&evil)).await;
    let app = kiln_over(&upstream).await;
    let ours = Dist::wheel("internal-tool", "1.0");
    assert_eq!(app.upload("root/master", &ours).await.status(), 200);

    let response = app
        .get(
            "root/feature/+simple/internal-tool/",
            &[("Accept", "application/vnd.pypi.simple.v1+json")],
        )
        .await;
    assert_eq!(response.headers()["x-kiln-mirror-hidden"], "root/pypi");
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(page["versions"], serde_json::json!(["1.0"]), "{page}");
    assert_eq!(
        page["_kiln"]["mirror-hidden"],
        serde_json::json!(["root/pypi"])
    );
    let html = app.get("root/feature/+simple/internal-tool/", &[]).await;
    let html = html.text().await.unwrap();
    assert!(html.contains("kiln:mirror-hidden"), "{html}");
    assert!(!html.contains("9.9"), "{html}");
    assert_eq!(
        upstream.requests("/simple/internal-tool/"),
        0,
        "the upstream is not even asked about a private name"
    );
    // The upstream's file cannot be fetched through the chain by URL either.
    let sneaky = app
        .get(
            &format!("root/feature/+f/{}/{}", evil.sha256(), evil.filename),
            &[],
        )
        .await;
    assert_eq!(sneaky.status(), 404);
    let index = app
        .client()
        .get_index(&"root/feature".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(index.mirror_shadowed, ["internal-tool"]);
    // Production's chain (prod -> pypi) does not hold master, but the name is published
    // on this server: the upstream's `internal-tool` is not served there either.
    let prod = app
        .get(
            "root/prod/+simple/internal-tool/",
            &[("Accept", "application/vnd.pypi.simple.v1+json")],
        )
        .await;
    assert_eq!(prod.status(), 404, "the upstream's 9.9 is not served");
    let said = prod.text().await.unwrap();
    assert!(said.contains("mirror root/pypi is not asked"), "{said}");
    assert_eq!(upstream.requests("/simple/internal-tool/"), 0);

    // pip resolves the private one.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let output = run(pip_install(
        &app.simple("root/feature"),
        &dir.path().join("t"),
        &report,
        "internal-tool",
    ))
    .await;
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(
        installed_hashes(&report),
        [("internal-tool".to_owned(), ours.sha256())]
    );

    // Allowing the name on master lets the mirror contribute.
    app.client()
        .modify_index(
            &"root/master".parse().unwrap(),
            &ModifyIndex {
                mirror_allow: Some(vec!["Internal_Tool".into()]),
                ..ModifyIndex::default()
            },
        )
        .await
        .unwrap();
    let page = app.json_page("root/feature", "internal-tool").await;
    assert_eq!(
        page["versions"],
        serde_json::json!(["1.0", "9.9"]),
        "{page}"
    );
    assert!(page.get("_kiln").is_none());
    assert_eq!(upstream.requests("/simple/internal-tool/"), 1);
    let index = app
        .client()
        .get_index(&"root/master".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        index.index.settings.mirror_allow,
        ["internal-tool"],
        "normalized"
    );
    assert!(index.mirror_shadowed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_garbage_is_refused_and_never_cached() {
    let good = Dist::wheel("good", "1.0");
    let tampered = Dist::wheel("tampered", "1.0");
    let upstream = Upstream::start(PageStyle::Json, &[good.clone(), tampered.clone()]).await;
    let app = kiln_over(&upstream).await;
    let cases = [
        (
            "broken-json",
            "application/vnd.pypi.simple.v1+json",
            b"{\"meta\": ".to_vec(),
            "malformed PEP 691 JSON",
        ),
        (
            "future-api",
            "application/vnd.pypi.simple.v1+json",
            br#"{"meta": {"api-version": "2.0"}, "files": []}"#.to_vec(),
            "unsupported simple API version `2.0`",
        ),
        (
            "binary-html",
            "text/html",
            vec![0xff, 0xfe, 0x00, 0x81],
            "not UTF-8",
        ),
        (
            "not-a-page",
            "text/html",
            b"Service temporarily unavailable".to_vec(),
            "no HTML tags",
        ),
        (
            "octets",
            "application/octet-stream",
            b"PK\x03\x04".to_vec(),
            "content type `application/octet-stream`",
        ),
    ];
    for (project, content_type, body, why) in cases {
        upstream.set_page_garbage(project, Garbage { content_type, body });
        let (status, message) = detail(
            app.get(&format!("root/feature/+simple/{project}/"), &[])
                .await,
        )
        .await;
        assert_eq!(status, 502, "{project}: {message}");
        assert!(message.contains(why), "{project}: {message}");
        assert!(
            message.contains(&upstream.simple_url),
            "{project}: the reason names the upstream: {message}"
        );
    }
    let cache = app
        .client()
        .mirror_cache(&"root/pypi".parse().unwrap())
        .await
        .unwrap();
    assert!(
        cache.projects.is_empty(),
        "garbage is not cached: {cache:?}"
    );

    // A file whose bytes do not match the page's sha256: the download breaks off, and
    // nothing is cached, so the next request asks the upstream again.
    upstream.corrupt_file(&tampered.filename, b"not the wheel at all".to_vec());
    let page = app.json_page("root/feature", "tampered").await;
    let url = page["files"][0]["url"].as_str().unwrap().to_owned();
    for attempt in 1..=2 {
        let response = app
            .get(&format!("root/feature/+simple/tampered/{url}"), &[])
            .await;
        let outcome = match response.status().as_u16() {
            200 => response
                .bytes()
                .await
                .map(|b| b.len())
                .map_err(|e| e.to_string()),
            status => Err(format!("HTTP {status}")),
        };
        assert!(
            outcome.is_err(),
            "attempt {attempt}: a client must not receive mismatching bytes as a good download: {outcome:?}"
        );
    }
    assert_eq!(
        upstream.requests(&format!("/files/{}", tampered.filename)),
        2
    );
}

/// Over the size limit: refused before it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_file_over_the_size_limit_is_refused() {
    let huge = Dist::wheel_with_data("huge", "1.0", incompressible(200_000));
    let upstream_small = Upstream::start(PageStyle::Json, std::slice::from_ref(&huge)).await;
    let url = upstream_small.simple_url.clone();
    let limited = TestApp::spawn_with(move |c| {
        c.upstream = Some(url);
        c.max_upload_bytes = 100_000;
    })
    .await;
    let page = limited.json_page("root/prod", "huge").await;
    let url = page["files"][0]["url"].as_str().unwrap().to_owned();
    let (status, message) = detail(
        limited
            .get(&format!("root/prod/+simple/huge/{url}"), &[])
            .await,
    )
    .await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("100000-byte limit"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outages_serve_the_cache_or_a_clear_502() {
    let known = Dist::wheel("known", "1.0");
    let mut upstream = Upstream::start(PageStyle::Json, std::slice::from_ref(&known)).await;
    let app = kiln_over(&upstream).await;

    // 404 upstream is a 404 here, remembered for the TTL.
    let (status, message) = detail(app.get("root/feature/+simple/nowhere/", &[]).await).await;
    assert_eq!(status, 404, "{message}");
    let _ = app.get("root/feature/+simple/nowhere/", &[]).await;
    assert_eq!(upstream.requests("/simple/nowhere/"), 1);

    // Cache `known` (page and file), then make the upstream answer 503.
    let page = app.json_page("root/feature", "known").await;
    let url = page["files"][0]["url"].as_str().unwrap().to_owned();
    let file = app
        .get(&format!("root/feature/+simple/known/{url}"), &[])
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap(), known.bytes);
    set_ttl(&app, 0).await;
    upstream.set_down(true);
    let response = app
        .get(
            "root/feature/+simple/known/",
            &[("Accept", "application/vnd.pypi.simple.v1+json")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let stale = response.headers()["x-kiln-mirror-stale"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(stale.contains("HTTP 503"), "{stale}");
    let file = app
        .get(&format!("root/feature/+simple/known/{url}"), &[])
        .await;
    assert_eq!(
        file.status(),
        200,
        "cached files are served whatever the upstream does"
    );
    // Range works on a cached mirror file.
    let part = app
        .get(
            &format!("root/feature/+simple/known/{url}"),
            &[("Range", "bytes=0-3")],
        )
        .await;
    assert_eq!(part.status(), 206);

    // Nothing cached and the upstream gone: 502 naming it.
    upstream.stop().await;
    let (status, message) = detail(app.get("root/feature/+simple/unseen/", &[]).await).await;
    assert_eq!(status, 502, "{message}");
    assert!(
        message.contains("unreachable") || message.contains("HTTP 503"),
        "{message}"
    );
    assert!(message.contains(&upstream.simple_url), "{message}");
    // A private project still resolves while the upstream is down.
    assert_eq!(
        app.upload("root/master", &Dist::wheel("mine", "1.0"))
            .await
            .status(),
        200
    );
    let page = app.json_page("root/feature", "mine").await;
    assert_eq!(page["versions"], serde_json::json!(["1.0"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_can_be_listed_refreshed_and_purged() {
    let one = Dist::wheel("tool", "1.0");
    let upstream = Upstream::start(PageStyle::Json, std::slice::from_ref(&one)).await;
    let app = kiln_over(&upstream).await;
    let client = app.client();
    let mirror = "root/pypi".parse().unwrap();
    let page = app.json_page("root/feature", "tool").await;
    let url = page["files"][0]["url"].as_str().unwrap().to_owned();
    let download = app
        .get(&format!("root/feature/+simple/tool/{url}"), &[])
        .await;
    assert_eq!(download.status(), 200);
    // A client holding the complete download means the bytes are stored.
    assert_eq!(download.bytes().await.unwrap(), one.bytes);
    let cache = client.mirror_cache(&mirror).await.unwrap();
    assert_eq!(cache.projects.len(), 1);
    let row = &cache.projects[0];
    assert_eq!(
        (row.project.as_str(), row.files, row.cached_files),
        ("tool", 1, 1)
    );
    assert_eq!(row.cached_bytes, i64::try_from(one.bytes.len()).unwrap());
    assert!(row.fresh);

    // A new upstream release shows after a refresh, not before (the TTL is 30 minutes).
    upstream.add(Dist::wheel("tool", "2.0"));
    let page = app.json_page("root/feature", "tool").await;
    assert_eq!(page["versions"], serde_json::json!(["1.0"]));
    let refreshed = client.mirror_refresh(&mirror, "Tool").await.unwrap();
    assert_eq!((refreshed.project.as_str(), refreshed.files), ("tool", 2));
    let page = app.json_page("root/feature", "tool").await;
    assert_eq!(page["versions"], serde_json::json!(["1.0", "2.0"]));

    // Purge forgets the page and the bytes; the next download asks the upstream again.
    let purged = client.mirror_purge(&mirror, "tool").await.unwrap();
    assert_eq!(
        purged.deleted_blobs, 1,
        "one stored wheel (no metadata fetched)"
    );
    assert!(
        client
            .mirror_cache(&mirror)
            .await
            .unwrap()
            .projects
            .is_empty()
    );
    let forgotten = app
        .get(
            &format!("root/feature/+f/{}/{}", one.sha256(), one.filename),
            &[],
        )
        .await;
    assert_eq!(
        forgotten.status(),
        404,
        "a purged listing no longer vouches for the file"
    );
    assert_eq!(upstream.requests("/simple/tool/"), 2);
    let page = app.json_page("root/feature", "tool").await;
    assert_eq!(
        upstream.requests("/simple/tool/"),
        3,
        "the page is fetched again"
    );
    assert_eq!(page["versions"], serde_json::json!(["1.0", "2.0"]));
    let again = app
        .get(&format!("root/feature/+simple/tool/{url}"), &[])
        .await;
    assert_eq!(again.bytes().await.unwrap(), one.bytes);
    assert_eq!(upstream.requests(&format!("/files/{}", one.filename)), 2);
    let error = client
        .mirror_purge(&mirror, "never-seen")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nothing cached"), "{error}");
    let error = client
        .mirror_cache(&"root/master".parse().unwrap())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not a mirror"), "{error}");
}

#[tokio::test]
async fn mirrors_refuse_what_only_stage_indexes_do_and_hide_credentials() {
    let upstream = Upstream::start(PageStyle::Json, &[Dist::wheel("private-dep", "1.0")]).await;
    upstream.require_credentials("ci", "s3cret-password");
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(app.url("+api/v1/indexes"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let created = post(serde_json::json!({
        "name": "root/private",
        "mirror_url": upstream.simple_url.trim_end_matches('/'),
        "mirror_username": "ci",
        "mirror_password": "s3cret-password",
        "mirror_ttl_seconds": 60,
    }))
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(
        !text.contains("s3cret"),
        "the password is never shown: {text}"
    );
    let view: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["kind"], "mirror");
    assert_eq!(
        view["mirror"]["url"], upstream.simple_url,
        "normalized with a slash"
    );
    assert_eq!(view["mirror"]["username"], "ci");
    app.create_index("root/uses-private", &["root/private"])
        .await;
    let page = app.json_page("root/uses-private", "private-dep").await;
    assert_eq!(
        page["versions"],
        serde_json::json!(["1.0"]),
        "credentials were sent"
    );

    let refusals = [
        (
            serde_json::json!({"name": "root/m1", "mirror_url": "http://u:pw@host/simple/"}),
            "carries credentials",
        ),
        (
            serde_json::json!({"name": "root/m2", "mirror_url": "ftp://host/simple/"}),
            "must be http:// or https://",
        ),
        (
            serde_json::json!({"name": "root/m3", "mirror_url": "http://host/simple/", "bases": ["root/master"]}),
            "a mirror cannot have bases",
        ),
        (
            serde_json::json!({"name": "root/m4", "mirror_url": "http://host/simple/", "volatile": true}),
            "cannot be volatile",
        ),
        (
            serde_json::json!({"name": "root/m5", "kind": "stage", "mirror_url": "http://host/simple/"}),
            "need `kind` = `mirror`",
        ),
        (
            serde_json::json!({"name": "root/m6", "mirror_allow": ["not a name!"]}),
            "`mirror_allow` entry",
        ),
    ];
    for (body, why) in refusals {
        let (status, message) = detail(post(body.clone()).await.unwrap()).await;
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(why), "{body}: {message}");
        assert!(!message.contains("pw@"), "{message}");
    }

    // Uploads and builds go to stage indexes.
    let (status, message) =
        detail(app.upload("root/private", &Dist::wheel("x", "1.0")).await).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("is a mirror of"), "{message}");
    let claim = http
        .post(app.url("+api/v1/builds/root/private/x/1.0"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"provenance": {"commit": "abcdef1"}}))
        .send()
        .await
        .unwrap();
    let (status, message) = detail(claim).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("is a mirror of"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_refreshes_and_purges_a_mirror() {
    let upstream = Upstream::start(PageStyle::Json, &[Dist::wheel("six-ish", "1.0")]).await;
    let app = TestApp::spawn().await;
    let kiln = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .args(args)
            .env("KILN_SERVER", &app.base)
            .env("KILN_TOKEN", ADMIN_TOKEN);
        run(command)
    };
    let output = kiln(&[
        "index",
        "create",
        "acme/up",
        "--mirror",
        &upstream.simple_url,
        "--mirror-ttl",
        "5m",
    ])
    .await;
    assert!(output.status.success(), "{}", show(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("page TTL:       300s"), "{text}");
    let output = kiln(&["index", "create", "acme/dev", "--bases", "acme/up"]).await;
    assert!(output.status.success(), "{}", show(&output));
    let output = kiln(&["mirror", "refresh", "acme/up", "Six_Ish"]).await;
    assert!(output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("refreshed six-ish on acme/up: 1 file(s)"),
        "{}",
        show(&output)
    );
    let output = kiln(&["mirror", "ls", "acme/up"]).await;
    assert!(output.status.success(), "{}", show(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("six-ish") && text.contains("found"), "{text}");
    let output = kiln(&["mirror", "purge", "acme/up", "six-ish"]).await;
    assert!(output.status.success(), "{}", show(&output));
    let output = kiln(&["mirror", "purge", "acme/up", "six-ish"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nothing cached for `six-ish`"),
        "{}",
        show(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_into_the_cache_or_a_502() {
    let known = Dist::wheel("known", "1.0");
    let upstream = Upstream::start(PageStyle::Json, std::slice::from_ref(&known)).await;
    let url = upstream.simple_url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.upstream = Some(url);
        c.upstream_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    assert_eq!(
        app.json_page("root/prod", "known").await["versions"],
        serde_json::json!(["1.0"])
    );
    set_ttl(&app, 0).await;
    upstream.set_delay(std::time::Duration::from_secs(3));
    let response = app.get("root/prod/+simple/known/", &[]).await;
    assert_eq!(response.status(), 200);
    let stale = response.headers()["x-kiln-mirror-stale"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(stale.contains("timed out"), "{stale}");
    let (status, message) = detail(app.get("root/prod/+simple/other/", &[]).await).await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("timed out"), "{message}");
}

/// A server inside the network Kiln runs in: counts every connection it gets and answers
/// each with a secret.
async fn internal_service() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\nINTERNAL-SECRET-DATA")
                .await;
        }
    });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_connects_only_to_its_upstream_and_the_origins_it_allows() {
    let (port, hits) = internal_service().await;
    let upstream = Upstream::start(PageStyle::Json, &[Dist::wheel("victim", "1.0")]).await;
    let app = kiln_over(&upstream).await;
    let internal = format!("http://127.0.0.1:{port}");

    // A page that links a file on another origin: the file is not listed, nor fetched.
    let lure = serde_json::json!({
        "meta": {"api-version": "1.1"},
        "name": "lure",
        "files": [{
            "filename": "lure-1.0-py3-none-any.whl",
            "url": format!("{internal}/admin/lure-1.0-py3-none-any.whl"),
            "hashes": {"sha256": "ab".repeat(32)},
        }],
    });
    upstream.set_page_garbage(
        "lure",
        Garbage {
            content_type: "application/vnd.pypi.simple.v1+json",
            body: lure.to_string().into_bytes(),
        },
    );
    let page = app.get("root/prod/+simple/lure/", &[]).await;
    assert_eq!(page.status(), 404, "a file it may not fetch is not listed");
    let sneaky = app
        .get(
            &format!("root/prod/+f/{}/lure-1.0-py3-none-any.whl", "ab".repeat(32)),
            &[],
        )
        .await;
    assert_eq!(sneaky.status(), 404);

    // A page that redirects inside the network: refused at the hop, with a reason that
    // names the link and quotes nothing the other side said.
    upstream.set_redirect("victim", &format!("{internal}/simple/victim/"));
    let (status, message) = detail(app.get("root/prod/+simple/victim/", &[]).await).await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("was not followed"), "{message}");
    assert!(message.contains("allowed file origins"), "{message}");
    assert!(!message.contains("INTERNAL-SECRET"), "{message}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing connected to the internal service"
    );

    // The server's admin may allow that origin explicitly; then it is followed.
    app.client()
        .modify_index(
            &"root/pypi".parse().unwrap(),
            &ModifyIndex {
                mirror_file_origins: Some(vec![internal.clone()]),
                ..ModifyIndex::default()
            },
        )
        .await
        .unwrap();
    let index = app
        .client()
        .get_index(&"root/pypi".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        index.index.settings.mirror.unwrap().file_origins,
        [internal]
    );
    let (status, message) = detail(app.get("root/prod/+simple/victim/", &[]).await).await;
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the allowed origin is reached"
    );
    // What it answered is not a page: refused, and still not quoted.
    assert_eq!(status, 502, "{message}");
    assert!(!message.contains("INTERNAL-SECRET"), "{message}");
}
