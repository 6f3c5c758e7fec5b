//! The upload API: what is accepted, and every way a bad upload is refused without
//! storing anything.

use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail, form_of};

/// Counts stored blobs and leftover temp files: a refused upload must leave neither.
pub async fn stored_files(app: &TestApp) -> (usize, usize) {
    let count = |dir: std::path::PathBuf| {
        fn walk(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        walk(&dir)
    };
    let blobs = match &app.backing {
        Some(backing) => backing.object_count().await,
        None => count(app.data_dir.path().join("storage/blobs")),
    };
    (blobs, count(app.data_dir.path().join("tmp")))
}

fn with_field(dist: &Dist, key: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = dist
        .fields()
        .into_iter()
        .filter(|(k, _)| k != key)
        .collect();
    if let Some(value) = value {
        fields.push((key.to_owned(), value.to_owned()));
    }
    fields
}

#[tokio::test]
async fn accepts_a_wheel_and_an_identical_retry() {
    let app = TestApp::spawn().await;
    let dist = Dist::wheel("demo-pkg", "1.0");
    let first = app.upload("root/master", &dist).await;
    assert_eq!(first.status(), 200);
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["result"], "created");
    assert_eq!(body["sha256"], dist.sha256());

    // twine re-sends after a 5xx and CI jobs are retried: same bytes again is success.
    let again = app.upload("root/master", &dist).await;
    assert_eq!(again.status(), 200);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["result"], "already-present");

    // The same bytes on another index are stored once.
    app.create_index("acme/feature", &["root/master"]).await;
    assert_eq!(app.upload("acme/feature", &dist).await.status(), 200);
    let (blobs, tmp) = stored_files(&app).await;
    assert_eq!(
        (blobs, tmp),
        (2, 0),
        "one wheel blob and one METADATA blob, no temp files"
    );
}

#[tokio::test]
async fn accepts_sdists_and_bearer_tokens() {
    let app = TestApp::spawn().await;
    let sdist = Dist::sdist("demo", "2.0");
    let response = reqwest::Client::new()
        .post(app.url("root/master/"))
        .bearer_auth(ADMIN_TOKEN)
        .multipart(sdist.form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = app.json_page("root/master", "demo").await;
    assert_eq!(page["files"][0]["filename"], "demo-2.0.tar.gz");
    assert_eq!(page["files"][0]["core-metadata"], false);
}

/// One refused upload: the status, a phrase the message must contain, and the request.
struct Case {
    what: &'static str,
    status: u16,
    message: &'static str,
    fields: Vec<(String, String)>,
    content: Option<(String, Vec<u8>)>,
    token: Option<&'static str>,
    index: &'static str,
}

fn case(what: &'static str, status: u16, message: &'static str, dist: &Dist) -> Case {
    Case {
        what,
        status,
        message,
        fields: dist.fields(),
        content: Some((dist.filename.clone(), dist.bytes.clone())),
        token: Some(ADMIN_TOKEN),
        index: "root/master",
    }
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of cases reads best in one place"
)]
async fn refuses_bad_uploads_with_a_reason_and_stores_nothing() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let good = Dist::wheel("demo", "1.0");
    let truncated = Dist::raw(
        "demo",
        "1.0",
        &good.filename,
        good.bytes[..good.bytes.len() / 2].to_vec(),
    );
    let disagreeing = Dist::wheel_with_metadata(
        "demo",
        "1.0",
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.1\n",
    );
    let wrong_name = Dist::wheel_with_metadata(
        "demo",
        "1.0",
        "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n",
    );
    let not_utf8 =
        Dist::wheel_with_metadata("demo", "1.0", "Metadata-Version: 2.1\nName: d\u{e9}mo\n");
    let no_metadata = Dist::raw("demo", "1.0", &good.filename, {
        let other = Dist::wheel("other", "1.0");
        other.bytes
    });
    let not_gzip = Dist::raw("demo", "1.0", "demo-1.0.tar.gz", b"plain text".to_vec());

    let mut cases = vec![
        case(
            "unknown extension",
            400,
            "is neither a wheel",
            &Dist::raw("demo", "1.0", "demo-1.0.exe", good.bytes.clone()),
        ),
        case(
            "bad wheel shape",
            400,
            "wheel filename `demo-1.0-any.whl` must be",
            &Dist::raw("demo", "1.0", "demo-1.0-any.whl", good.bytes.clone()),
        ),
        case(
            "path traversal",
            400,
            "must be a plain file name",
            &Dist::raw("demo", "1.0", "../demo-1.0.tar.gz", good.bytes.clone()),
        ),
        case(
            "dot-dot inside",
            400,
            "must be a plain file name",
            &Dist::raw("demo", "1.0", "demo..x-1.0.tar.gz", good.bytes.clone()),
        ),
        case(
            "backslash",
            400,
            "must be a plain file name",
            &Dist::raw("demo", "1.0", "a\\demo-1.0.tar.gz", good.bytes.clone()),
        ),
        case(
            "invalid version in filename",
            400,
            "is not a valid PEP 440 version",
            &Dist::raw(
                "demo",
                "x.y",
                "demo-x.y-py3-none-any.whl",
                good.bytes.clone(),
            ),
        ),
        case(
            "name mismatch",
            400,
            "form field `name` is `other`",
            &Dist {
                name: "other".into(),
                ..good.clone()
            },
        ),
        case(
            "version mismatch",
            400,
            "form field `version` is `2.0`",
            &Dist {
                version: "2.0".into(),
                ..good.clone()
            },
        ),
        case(
            "invalid form version",
            400,
            "form field `version` `1.0-what?` is not a valid PEP 440 version",
            &Dist {
                version: "1.0-what?".into(),
                ..good.clone()
            },
        ),
        case(
            "truncated zip",
            400,
            "is not a readable zip archive",
            &truncated,
        ),
        case(
            "METADATA disagrees",
            400,
            "METADATA says Version `1.1`, but the filename says `1.0`",
            &disagreeing,
        ),
        case(
            "METADATA names another project",
            400,
            "METADATA says Name `other`, but the filename says `demo`",
            &wrong_name,
        ),
        case(
            "METADATA without a version",
            400,
            "METADATA has no `Version` field",
            &not_utf8,
        ),
        case(
            "no METADATA",
            400,
            "has no `demo-1.0.dist-info/METADATA` member",
            &no_metadata,
        ),
        case(
            "sdist not gzip",
            400,
            "is not a gzip-compressed tar archive",
            &not_gzip,
        ),
        case(
            "empty file",
            400,
            "is empty",
            &Dist::raw("demo", "1.0", "demo-1.0.tar.gz", Vec::new()),
        ),
        case(
            "oversize",
            413,
            "larger than this server's upload limit of 65536 bytes",
            &Dist::raw("demo", "1.0", "demo-1.0.tar.gz", vec![0x1f; 70 * 1024]),
        ),
    ];
    let mut wrong_sha = case(
        "wrong sha256",
        400,
        "`sha256_digest` does not match the bytes received",
        &good,
    );
    wrong_sha.fields = with_field(&good, "sha256_digest", Some(&"0".repeat(64)));
    let mut wrong_md5 = case("wrong md5", 400, "`md5_digest` does not match", &good);
    wrong_md5.fields = with_field(
        &good,
        "md5_digest",
        Some("00000000000000000000000000000000"),
    );
    let mut md5_only = case("md5 only", 400, "without a strong digest", &good);
    md5_only.fields = with_field(&good, "sha256_digest", None);
    let mut no_digest = case("no digest", 400, "has no `sha256_digest` (nor", &good);
    no_digest.fields = good
        .fields()
        .into_iter()
        .filter(|(k, _)| k != "sha256_digest" && k != "md5_digest")
        .collect();
    let mut wrong_blake2 = case(
        "wrong blake2_256",
        400,
        "`blake2_256_digest` does not match",
        &good,
    );
    wrong_blake2.fields = with_field(&good, "blake2_256_digest", Some(&"0".repeat(64)));
    let mut bad_blake2 = case(
        "non-hex blake2_256",
        400,
        "`blake2_256_digest` is not 64 hex digits",
        &good,
    );
    bad_blake2.fields = with_field(&good, "blake2_256_digest", Some("zz-not-a-digest"));
    let sdist = Dist::sdist("demo", "1.1");
    let mut huge_requires = case(
        "4 MiB requires_python",
        400,
        "Requires-Python is 4194304 bytes long",
        &sdist,
    );
    let four_mib = ">=3.8,".repeat(4 * 1024 * 1024 / 6 + 1)[..4 * 1024 * 1024].to_owned();
    huge_requires.fields = with_field(&sdist, "requires_python", Some(&four_mib));
    let mut bad_requires = case(
        "requires_python not a specifier",
        400,
        "is not a PEP 440 specifier set",
        &sdist,
    );
    bad_requires.fields = with_field(&sdist, "requires_python", Some("<script>"));
    let mut unknown_action = case("unknown :action", 400, "unknown `:action` `submit`", &good);
    unknown_action.fields = with_field(&good, ":action", Some("submit"));
    let mut missing_name = case(
        "missing name",
        400,
        "the upload form has no `name` field",
        &good,
    );
    missing_name.fields = with_field(&good, "name", None);
    let mut missing_version = case(
        "missing version",
        400,
        "the upload form has no `version` field",
        &good,
    );
    missing_version.fields = with_field(&good, "version", None);
    let mut missing_content = case(
        "missing content",
        400,
        "the upload form has no `content` file",
        &good,
    );
    missing_content.content = None;
    let mut duplicate_field = case(
        "duplicate field",
        400,
        "form field `version` appears more than once",
        &good,
    );
    duplicate_field
        .fields
        .push(("version".into(), "9.9".into()));
    let mut wrong_filetype = case(
        "wrong filetype",
        400,
        "form field `filetype` is `sdist`",
        &good,
    );
    wrong_filetype.fields = with_field(&good, "filetype", Some("sdist"));
    let mut no_token = case("no token", 401, "this needs a token", &good);
    no_token.token = None;
    let mut wrong_token = case(
        "wrong token",
        403,
        "the token is not valid on this server",
        &good,
    );
    wrong_token.token = Some("kiln_not-a-real-token-at-all");
    let mut promotion_only = case(
        "promotion-only index",
        403,
        "is promotion-only: files reach it only by `kiln promote`",
        &good,
    );
    promotion_only.index = "root/prod";
    let mut missing_index = case(
        "missing index",
        404,
        "index `acme/nope` does not exist",
        &good,
    );
    missing_index.index = "acme/nope";
    cases.extend([
        wrong_sha,
        wrong_md5,
        wrong_blake2,
        bad_blake2,
        md5_only,
        huge_requires,
        bad_requires,
        no_digest,
        unknown_action,
        missing_name,
        missing_version,
        missing_content,
        duplicate_field,
        wrong_filetype,
        no_token,
        wrong_token,
        promotion_only,
        missing_index,
    ]);
    assert!(cases.len() >= 25);

    for case in cases {
        let form = form_of(
            case.fields,
            case.content.as_ref().map(|(f, b)| (f.as_str(), b.clone())),
        );
        let response = app.upload_form(case.index, form, case.token).await;
        let www_authenticate = response.headers().get("www-authenticate").cloned();
        let (status, message) = detail(response).await;
        assert_eq!(
            status, case.status,
            "{}: got {status} `{message}`",
            case.what
        );
        assert!(
            message.contains(case.message),
            "{}: message `{message}` lacks `{}`",
            case.what,
            case.message
        );
        if status == 401 {
            assert!(
                www_authenticate.is_some(),
                "401 must carry WWW-Authenticate"
            );
        }
        assert_eq!(
            stored_files(&app).await,
            (0, 0),
            "{}: something was stored",
            case.what
        );
    }
    let page = app.get("root/master/+simple/demo/", &[]).await;
    assert_eq!(
        page.status(),
        404,
        "no file row may exist after refused uploads"
    );
}

#[tokio::test]
async fn different_bytes_under_a_published_name_conflict() {
    let app = TestApp::spawn().await;
    let first = Dist::wheel_with("demo", "1.0", &[], "build one");
    let second = Dist::wheel_with("demo", "1.0", &[], "build two");
    assert_ne!(first.sha256(), second.sha256());
    assert_eq!(app.upload("root/master", &first).await.status(), 200);
    let response = app.upload("root/master", &second).await;
    let (status, message) = detail(response).await;
    assert_eq!(status, 409);
    assert!(message.starts_with("File already exists"), "{message}");
    assert!(message.contains("Builds must be reproducible"), "{message}");
    assert!(message.contains(&first.sha256()), "{message}");
    // The first file is untouched.
    let page = app.json_page("root/master", "demo").await;
    assert_eq!(page["files"][0]["hashes"]["sha256"], first.sha256());
}

#[tokio::test]
async fn refuses_non_multipart_bodies() {
    let app = TestApp::spawn().await;
    let response = reqwest::Client::new()
        .post(app.url("root/master/"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "demo"}))
        .send()
        .await
        .unwrap();
    let (status, message) = detail(response).await;
    assert_eq!(status, 415);
    assert!(message.contains("multipart/form-data"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_leave_no_blob_and_never_take_a_concurrent_uploads_blob() {
    let app = TestApp::spawn().await;
    app.create_index("root/other", &[]).await;
    let first = Dist::wheel_with("demo", "1.0", &[], "first");
    assert_eq!(app.upload("root/master", &first).await.status(), 200);
    let baseline = stored_files(&app).await.0;

    // Eight uploads of different bytes racing for one free filename: one wins, seven are
    // refused after storing their bytes, and none of those leaves its blob behind (the
    // METADATA, the same in all eight, is the winner's).
    let racers: Vec<Dist> = (0..8)
        .map(|i| Dist::wheel_with("demo", "2.0", &[], &format!("racer {i}")))
        .collect();
    let race = racers.iter().map(|d| app.upload("root/master", d));
    let statuses: Vec<u16> = futures_util::future::join_all(race)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        stored_files(&app).await.0,
        baseline + 2,
        "the winner's wheel and METADATA, and no orphan"
    );

    // The same bytes refused on one index while published on another, all at once: the
    // refused ones' cleanup must not take the published blob.
    let shared = Dist::wheel_with("demo", "1.0", &[], "shared");
    let racing = (0..8).map(|i| {
        let index = if i % 2 == 0 {
            "root/master"
        } else {
            "root/other"
        };
        app.upload(index, &shared)
    });
    let statuses: Vec<u16> = futures_util::future::join_all(racing)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        4,
        "{statuses:?}"
    );
    let got = app
        .get(
            &format!("root/other/+f/{}/{}", shared.sha256(), shared.filename),
            &[],
        )
        .await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), shared.bytes);
}
