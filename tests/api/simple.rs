//! The simple API, inheritance and file downloads, seen over HTTP.

use crate::helpers::{Dist, TestApp, detail};

const JSON: &str = "application/vnd.pypi.simple.v1+json";

fn listed(page: &serde_json::Value) -> Vec<(String, String)> {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_owned(),
                f["hashes"]["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn branch_inherits_master_own_files_first_without_duplicates() {
    let app = TestApp::spawn().await;
    app.create_index("acme/feature-x", &["root/master"]).await;
    let master_old = Dist::wheel("demo", "0.9");
    let master_new = Dist::wheel_with("demo", "1.0", &[], "master build");
    let branch_new = Dist::wheel_with("demo", "1.0", &[], "branch build");
    let branch_only = Dist::wheel("demo", "1.1.dev3");
    for (index, dist) in [
        ("root/master", &master_old),
        ("root/master", &master_new),
        ("acme/feature-x", &branch_new),
        ("acme/feature-x", &branch_only),
    ] {
        assert_eq!(app.upload(index, dist).await.status(), 200);
    }
    let page = app.json_page("acme/feature-x", "demo").await;
    assert_eq!(
        listed(&page),
        vec![
            (branch_new.filename.clone(), branch_new.sha256()),
            (branch_only.filename.clone(), branch_only.sha256()),
            (master_old.filename.clone(), master_old.sha256()),
        ],
        "own files first, then the base's, and the branch's 1.0 shadows master's"
    );
    assert_eq!(
        page["versions"],
        serde_json::json!(["0.9", "1.0", "1.1.dev3"])
    );
    // Master does not see the branch's files.
    let master = app.json_page("root/master", "demo").await;
    assert_eq!(listed(&master).len(), 2);
    assert_eq!(
        listed(&master)[1],
        (master_new.filename.clone(), master_new.sha256())
    );

    // A diamond visits each base once.
    app.create_index("acme/diamond", &["acme/feature-x", "root/master"])
        .await;
    let diamond = app.json_page("acme/diamond", "demo").await;
    assert_eq!(listed(&diamond), listed(&page));

    // The project list merges the chain.
    let list = app
        .get("acme/feature-x/+simple/", &[("Accept", JSON)])
        .await;
    let list: serde_json::Value = list.json().await.unwrap();
    assert_eq!(list["projects"], serde_json::json!([{"name": "demo"}]));
    assert_eq!(list["meta"]["api-version"], "1.1");
}

#[tokio::test]
async fn json_and_html_carry_the_same_facts() {
    let app = TestApp::spawn().await;
    let dist = Dist::wheel_with("Demo_Pkg", "2.0", &["Requires-Python: >=3.8"], "");
    assert_eq!(app.upload("root/master", &dist).await.status(), 200);
    let page = app.json_page("root/master", "demo-pkg").await;
    let file = &page["files"][0];
    assert_eq!(page["name"], "demo-pkg");
    assert_eq!(file["requires-python"], ">=3.8");
    assert_eq!(file["size"], dist.bytes.len());
    assert_eq!(file["yanked"], false);
    assert!(file["upload-time"].as_str().unwrap().ends_with('Z'));
    let metadata_sha = file["core-metadata"]["sha256"].as_str().unwrap().to_owned();
    assert!(
        file.get("dist-info-metadata").is_none(),
        "the JSON key crashes older pip"
    );
    assert_eq!(
        file["url"],
        format!("../../+f/{}/{}", dist.sha256(), dist.filename)
    );

    let html = app
        .get("root/master/+simple/demo-pkg/", &[("Accept", "text/html")])
        .await;
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    let html = html.text().await.unwrap();
    assert!(
        html.contains(r#"<meta name="pypi:repository-version" content="1.1">"#),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            r#"href="../../+f/{sha}/{name}#sha256={sha}""#,
            sha = dist.sha256(),
            name = dist.filename
        )),
        "{html}"
    );
    assert!(
        html.contains(r#"data-requires-python="&gt;=3.8""#),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"data-core-metadata="sha256={metadata_sha}""#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            r#"data-dist-info-metadata="sha256={metadata_sha}""#
        )),
        "{html}"
    );

    // PEP 658: the METADATA file is served and hashes to what the page says.
    let metadata = app
        .get(
            &format!(
                "root/master/+f/{}/{}.metadata",
                dist.sha256(),
                dist.filename
            ),
            &[],
        )
        .await;
    assert_eq!(metadata.status(), 200);
    let bytes = metadata.bytes().await.unwrap();
    assert!(bytes.starts_with(b"Metadata-Version: 2.1\nName: Demo_Pkg"));
    assert_eq!(
        kiln::domain::Sha256Digest::of(&bytes).to_string(),
        metadata_sha
    );

    // Negotiation: ?format=, the versioned HTML type, and 406 when nothing fits.
    let forced = app
        .get(
            "root/master/+simple/demo-pkg/?format=json",
            &[("Accept", "text/html")],
        )
        .await;
    assert_eq!(forced.headers()["content-type"], JSON);
    let v1html = app
        .get(
            "root/master/+simple/demo-pkg/",
            &[("Accept", "application/vnd.pypi.simple.v1+html")],
        )
        .await;
    assert_eq!(
        v1html.headers()["content-type"],
        "application/vnd.pypi.simple.v1+html"
    );
    let refused = app
        .get(
            "root/master/+simple/demo-pkg/",
            &[("Accept", "application/xml")],
        )
        .await;
    assert_eq!(refused.status(), 406);
}

#[tokio::test]
async fn redirects_to_normalized_names_and_trailing_slashes() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload("root/master", &Dist::wheel("demo-pkg", "1.0"))
            .await
            .status(),
        200
    );
    let response = app.get("root/master/+simple/Demo_Pkg/", &[]).await;
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "../demo-pkg/");
    let response = app.get("root/master/+simple/demo-pkg", &[]).await;
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "demo-pkg/");
    let response = app.get("root/master/+simple", &[]).await;
    assert_eq!(response.headers()["location"], "+simple/");
    // pip percent-encodes `+`.
    let response = app.get("root/master/%2Bsimple/demo-pkg/", &[]).await;
    assert_eq!(response.status(), 200);
    let (status, message) = detail(app.get("root/master/+simple/nothing-here/", &[]).await).await;
    assert_eq!(status, 404);
    assert_eq!(
        message,
        "project `nothing-here` is not on index `root/master` or its bases"
    );
    // The detail is also the HTTP reason phrase: the one line twine and requests print.
    let status_line = raw_status_line(&app, "/root/master/+simple/nothing-here/").await;
    assert_eq!(
        status_line,
        "HTTP/1.1 404 project `nothing-here` is not on index `root/master` or its bases"
    );
}

#[tokio::test]
async fn pages_revalidate_with_strong_etags() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload("root/master", &Dist::wheel("demo", "1.0"))
            .await
            .status(),
        200
    );
    let first = app
        .get("root/master/+simple/demo/", &[("Accept", JSON)])
        .await;
    assert_eq!(
        first.headers()["cache-control"],
        "max-age=0, must-revalidate"
    );
    assert_eq!(first.headers()["vary"], "Accept");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );
    let cached = app
        .get(
            "root/master/+simple/demo/",
            &[("Accept", JSON), ("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.unwrap().is_empty());
    // HTML is a different representation with a different tag.
    let html = app
        .get(
            "root/master/+simple/demo/",
            &[("Accept", "text/html"), ("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(html.status(), 200);
    // A new upload changes the page and its tag.
    assert_eq!(
        app.upload("root/master", &Dist::wheel("demo", "1.1"))
            .await
            .status(),
        200
    );
    let changed = app
        .get(
            "root/master/+simple/demo/",
            &[("Accept", JSON), ("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn files_support_ranges_etags_and_stay_inside_their_chain() {
    let app = TestApp::spawn().await;
    app.create_index("acme/private-branch", &["root/master"])
        .await;
    let dist = Dist::wheel("demo", "1.0");
    assert_eq!(app.upload("acme/private-branch", &dist).await.status(), 200);
    let path = format!("acme/private-branch/+f/{}/{}", dist.sha256(), dist.filename);

    let full = app.get(&path, &[]).await;
    assert_eq!(full.status(), 200);
    assert_eq!(
        full.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", dist.sha256()));
    assert_eq!(full.bytes().await.unwrap(), dist.bytes);

    let part = app.get(&path, &[("Range", "bytes=10-19")]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", dist.bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), dist.bytes[10..20]);
    let tail = app.get(&path, &[("Range", "bytes=-7")]).await;
    assert_eq!(
        tail.bytes().await.unwrap(),
        dist.bytes[dist.bytes.len() - 7..]
    );
    let beyond = app.get(&path, &[("Range", "bytes=999999-")]).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", dist.bytes.len()).as_str()
    );
    let stale = app
        .get(&path, &[("Range", "bytes=0-3"), ("If-Range", "\"other\"")])
        .await;
    assert_eq!(
        stale.status(),
        200,
        "a mismatched If-Range gets the whole file"
    );
    let cached = app.get(&path, &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status(), 304);

    // The branch's file is not reachable through master, nor under a wrong name.
    let through_master = app
        .get(
            &format!("root/master/+f/{}/{}", dist.sha256(), dist.filename),
            &[],
        )
        .await;
    assert_eq!(through_master.status(), 404);
    let renamed = app
        .get(
            &format!(
                "acme/private-branch/+f/{}/other-1.0-py3-none-any.whl",
                dist.sha256()
            ),
            &[],
        )
        .await;
    assert_eq!(renamed.status(), 404);
    let bad_digest = app
        .get("acme/private-branch/+f/not-a-digest/x.whl", &[])
        .await;
    assert_eq!(bad_digest.status(), 404);
}

/// The first line of a raw HTTP/1.1 response (reqwest does not expose the reason phrase).
/// Blocking I/O runs off the test's single runtime thread, which the server needs.
async fn raw_status_line(app: &TestApp, path: &str) -> String {
    let host = app.base.trim_start_matches("http://").to_owned();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || blocking_status_line(&host, &path))
        .await
        .unwrap()
}

fn blocking_status_line(host: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

/// The page cache's counters, from `/+health`.
async fn cache_counts(app: &TestApp) -> (u64, u64) {
    let health: serde_json::Value = app.get("+health", &[]).await.json().await.unwrap();
    let cache = &health["page_cache"];
    (
        cache["hits"].as_u64().unwrap(),
        cache["misses"].as_u64().unwrap(),
    )
}

/// Each page's ETag, and how many of the requests were cache hits.
async fn etags_and_hits(app: &TestApp, pages: &[&str]) -> (Vec<String>, u64) {
    let (hits_before, _) = cache_counts(app).await;
    let mut etags = Vec::new();
    for page in pages {
        let response = app.get(page, &[("accept", JSON)]).await;
        assert_eq!(response.status(), 200, "{page}");
        etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    let (hits_after, _) = cache_counts(app).await;
    (etags, hits_after - hits_before)
}

/// A write discards exactly the pages it can change: a stage report or a new index none,
/// an upload to a branch only that project's page on that branch (and the branch's
/// project list if the project is new there), a yank on master that project's pages on
/// master and on every branch inheriting it. The ETags say the same from outside.
#[tokio::test]
async fn a_write_discards_only_the_pages_it_changes() {
    let app = TestApp::spawn().await;
    app.create_index("acme/feature", &["root/master"]).await;
    let demo = Dist::wheel("demo", "1.0");
    for dist in [&demo, &Dist::wheel("other", "1.0")] {
        assert_eq!(app.upload("root/master", dist).await.status(), 200);
    }
    let pages = [
        "root/master/+simple/demo/",
        "acme/feature/+simple/demo/",
        "root/master/+simple/other/",
        "acme/feature/+simple/other/",
        "acme/feature/+simple/",
    ];
    let (first, _) = etags_and_hits(&app, &pages).await;

    crate::promotions::report(
        &app,
        &demo.sha256(),
        "unit",
        "run-1",
        kiln::domain::Outcome::Pass,
    )
    .await;
    app.create_index("acme/unrelated", &["root/master"]).await;
    let (etags, hits) = etags_and_hits(&app, &pages).await;
    assert_eq!(
        etags, first,
        "a stage report and a new index change no page"
    );
    assert_eq!(hits, 5, "and every page is still served from memory");

    let branch_other = Dist::wheel("other", "2.0");
    assert_eq!(
        app.upload("acme/feature", &branch_other).await.status(),
        200
    );
    let (etags, hits) = etags_and_hits(&app, &pages).await;
    assert_eq!(
        hits, 3,
        "only the branch's `other` page and its project list (a new own project) were rendered again"
    );
    assert_ne!(etags[3], first[3], "the branch's `other` page shows 2.0");
    assert_eq!(
        (&etags[..3], &etags[4]),
        (&first[..3], &first[4]),
        "the rest show what they showed"
    );

    let yanked = app
        .client()
        .yank(
            &"root/master".parse().unwrap(),
            "demo",
            "1.0",
            Some("broken"),
        )
        .await;
    assert!(yanked.is_ok(), "{yanked:?}");
    let (after_yank, hits) = etags_and_hits(&app, &pages).await;
    assert_eq!(
        hits, 3,
        "the yank re-rendered `demo` on master and on the branch"
    );
    assert_ne!(after_yank[0], etags[0]);
    assert_ne!(after_yank[1], etags[1]);
    assert_eq!(&after_yank[2..], &etags[2..]);
}

/// An nginx in front of `app` (one process, `master_process off`, so that killing it
/// leaves no worker behind holding the port and the test's output) whose internal location `/_kiln_storage/` maps to the
/// server's storage directory; `None` (said on stderr) when nginx is not installed and
/// the backends are not required (`.ci/run` installs it and requires them).
fn nginx_in_front(
    app: &TestApp,
    dir: &std::path::Path,
) -> Option<(crate::helpers::KillOnDrop, String)> {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            !crate::helpers::required(),
            "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        );
        eprintln!("SKIPPED the nginx part: nginx is not installed (apt-get install nginx-light)");
        return None;
    };
    let port = crate::helpers::free_port();
    let storage = app.data_dir.path().join("storage");
    let upstream = app.base.trim_start_matches("http://");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let conf = format!(
        "daemon off; master_process off; pid {root}/nginx.pid; error_log {root}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; sendfile on;\n\
           client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;\n\
           server {{ listen 127.0.0.1:{port};\n\
             location /_kiln_storage/ {{ internal; alias {storage}/; }}\n\
             location / {{ proxy_pass http://{upstream}; proxy_set_header Host $http_host; }} }} }}\n",
        root = dir.display(),
        storage = storage.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = std::process::Command::new(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Some((
        crate::helpers::KillOnDrop(child),
        format!("http://127.0.0.1:{port}"),
    ))
}

/// With `--accel-redirect`, Kiln still decides who may download what, and answers with
/// the blob's path and no bytes; nginx in front sends the file itself (with `sendfile`),
/// ranges included, and never serves the storage path to a client directly.
#[tokio::test]
async fn behind_nginx_kiln_authorizes_and_nginx_sends_the_file() {
    if crate::helpers::shared_backends() {
        // On S3 there is no file for nginx to send: the flag is refused, saying why.
        let refused = kiln::storage::Storage::open(
            "s3://bucket/prefix",
            &kiln::storage::StorageOptions {
                accel_redirect: Some("/_kiln_storage/".into()),
                ..kiln::storage::StorageOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("`file://` storage only"),
            "{refused}"
        );
        return;
    }
    let app = TestApp::spawn_with(|config| {
        config.storage_options.accel_redirect = Some("/_kiln_storage/".into());
    })
    .await;
    let public = Dist::wheel_with_data("bulky", "1.0", vec![7; 300_000]);
    assert_eq!(app.upload("root/master", &public).await.status(), 200);
    let secret_settings = kiln::domain::IndexSettings {
        private: true,
        ..kiln::domain::IndexSettings::default()
    };
    app.client()
        .create_index(&"acme/secret".parse().unwrap(), &secret_settings)
        .await
        .unwrap();
    let private = Dist::wheel("hidden", "1.0");
    assert_eq!(app.upload("acme/secret", &private).await.status(), 200);
    let path =
        |index: &str, dist: &Dist| format!("/{index}/+f/{}/{}", dist.sha256(), dist.filename);

    // Kiln alone: the blob's path under the prefix, and no bytes.
    let sha = public.sha256();
    let direct = app.get(&path("root/master", &public)[1..], &[]).await;
    assert_eq!(direct.status(), 200);
    let key = format!("blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]);
    assert_eq!(
        direct.headers()["x-accel-redirect"].to_str().unwrap(),
        format!("/_kiln_storage/{key}")
    );
    assert!(direct.bytes().await.unwrap().is_empty());
    assert!(app.data_dir.path().join("storage").join(&key).is_file());

    let dir = tempfile::tempdir().unwrap();
    let Some((_nginx, front)) = nginx_in_front(&app, dir.path()) else {
        return;
    };
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http.get(format!("{front}/+health")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let whole = http
        .get(format!("{front}{}", path("root/master", &public)))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert!(whole.headers().get("x-accel-redirect").is_none());
    assert_eq!(
        whole.bytes().await.unwrap().as_ref(),
        public.bytes.as_slice()
    );
    let part = http
        .get(format!("{front}{}", path("root/master", &public)))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &public.bytes[10..20]);
    // Kiln still says no: a private index's file needs a token, through nginx too.
    let refused = http
        .get(format!("{front}{}", path("acme/secret", &private)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // With a token that may read it, Kiln lets it through and nginx sends it.
    let allowed = http
        .get(format!("{front}{}", path("acme/secret", &private)))
        .basic_auth("__token__", Some(crate::helpers::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.bytes().await.unwrap().as_ref(),
        private.bytes.as_slice()
    );
    // And the storage location is not reachable from outside.
    let around = http
        .get(format!("{front}/_kiln_storage/{key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(around.status(), 404);
}
