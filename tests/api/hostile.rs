//! The hostile-input catalogue: bytes and requests an attacker (or a broken tool) sends.
//! Every case asserts the status, a phrase of the reason, and that nothing was stored.
//! The core upload catalogue is in `uploads.rs`; these are beyond it.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::access::{call, mint};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail, form_of};
use crate::helpers::{TarMember, tar_gz};
use crate::uploads::stored_files;

/// A server with small limits, so each limit can be crossed cheaply.
async fn tight_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.archive_limits.max_entries = 1000;
        c.archive_limits.max_metadata_bytes = 64 * 1024;
        c.archive_limits.max_unpacked_bytes = 1024 * 1024;
        c.upload_limits.idle_timeout = Duration::from_secs(1);
        c.upload_limits.max_form_fields = 60;
    })
    .await
}

struct Case {
    what: String,
    status: u16,
    message: &'static str,
    response: reqwest::Response,
}

/// Asserts each case's status and reason, and that storage still holds `stored` files.
async fn check_stored(app: &TestApp, cases: Vec<Case>, stored: (usize, usize)) -> usize {
    let count = cases.len();
    for case in cases {
        let (status, message) = detail(case.response).await;
        assert_eq!(
            status, case.status,
            "{}: got {status} `{message}`",
            case.what
        );
        assert!(
            message.contains(case.message),
            "{}: `{message}` lacks `{}`",
            case.what,
            case.message
        );
        assert_eq!(
            stored_files(app).await,
            stored,
            "{}: storage changed",
            case.what
        );
    }
    count
}

async fn check(app: &TestApp, cases: Vec<Case>) -> usize {
    check_stored(app, cases, (0, 0)).await
}

/// Uploads `dist` with the admin token.
async fn upload(app: &TestApp, dist: &Dist) -> reqwest::Response {
    app.upload("root/master", dist).await
}

fn sdist(members: &[TarMember<'_>]) -> Dist {
    Dist::raw("demo", "1.0", "demo-1.0.tar.gz", tar_gz(members))
}

/// A multipart body written byte for byte, with `filename` as the content's filename.
fn raw_form(dist: &Dist, filename: &[u8]) -> (String, Vec<u8>) {
    let mut disposition = b"; filename=\"".to_vec();
    disposition.extend_from_slice(filename);
    disposition.push(b'"');
    raw_form_disposed(dist, &disposition)
}

/// [`raw_form`] with `rest` after the content part's `name="content"` (its filename
/// parameters, or none).
fn raw_form_disposed(dist: &Dist, rest: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kilnboundary7d1";
    let mut body = Vec::new();
    for (key, value) in dist.fields() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"content\"").as_bytes(),
    );
    body.extend_from_slice(rest);
    body.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
    body.extend_from_slice(&dist.bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_raw(app: &TestApp, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("root/master/"))
        .basic_auth("__token__", Some(ADMIN_TOKEN))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn case(what: &str, status: u16, message: &'static str, response: reqwest::Response) -> Case {
    Case {
        what: what.to_owned(),
        status,
        message,
        response,
    }
}

/// A wheel whose local header names a member `demo/../../xy.py` while its central entry
/// says `demo/innocent.py`: a streaming extractor would write outside the target.
fn local_name_differs() -> Dist {
    let mut dist = Dist::wheel_plus("demo", "1.0", &[("demo/innocent.py", b"x")]);
    // The first occurrence is the local header's; the central entry's comes later.
    let at = dist
        .bytes
        .windows(16)
        .position(|w| w == b"demo/innocent.py")
        .unwrap();
    dist.bytes[at..at + 16].copy_from_slice(b"demo/../../xy.py");
    dist
}

/// A wheel whose archive comment carries a second end-of-central-directory record.
fn fake_end_record() -> Dist {
    let mut dist = Dist::wheel("demo", "1.0");
    let comment = b"PK\x05\x06 a second end record for another directory";
    let end = dist.bytes.len() - 22;
    assert_eq!(&dist.bytes[end..end + 4], b"PK\x05\x06");
    let len = u16::try_from(comment.len()).unwrap().to_le_bytes();
    dist.bytes[end + 20..end + 22].copy_from_slice(&len);
    dist.bytes.extend_from_slice(comment);
    dist
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one catalogue reads best in one place"
)]
async fn hostile_archives_are_refused_and_nothing_is_stored() {
    let app = tight_app().await;
    let metadata_bomb = {
        let mut text =
            String::from("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nDescription: ");
        text.push_str(&"a".repeat(300 * 1024));
        Dist::wheel_with_metadata("demo", "1.0", &text)
    };
    let many: Vec<(String, Vec<u8>)> = (0..1500)
        .map(|i| (format!("demo/m{i}.py"), Vec::new()))
        .collect();
    let many_refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let zeros = vec![0u8; 2 * 1024 * 1024];
    let invalid_utf8 = Dist::wheel_with_metadata_bytes(
        "demo",
        "1.0",
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nSummary: \xff\xfe\n",
    );
    let duplicate = {
        let dist = Dist::wheel_plus(
            "demo",
            "1.0",
            &[(
                "demo-1.0.dist-info/METADATB",
                b"Metadata-Version: 2.1\nName: demo\nVersion: 6.6\n",
            )],
        );
        let mut bytes = dist.bytes.clone();
        let from = b"dist-info/METADATB";
        let to = b"dist-info/METADATA";
        let mut i = 0;
        while i + from.len() <= bytes.len() {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
            }
            i += 1;
        }
        Dist::raw("demo", "1.0", &dist.filename, bytes)
    };

    let cases = vec![
        case(
            "wheel member climbs out",
            400,
            "unsafe member `../../evil.py`: it climbs out with `..`",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("../../evil.py", b"x")]),
            )
            .await,
        ),
        case(
            "wheel member absolute",
            400,
            "unsafe member `/etc/cron.d/evil`: it is an absolute path",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("/etc/cron.d/evil", b"x")]),
            )
            .await,
        ),
        case(
            "wheel member backslash",
            400,
            "its name contains a backslash",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("..\\evil.py", b"x")]),
            )
            .await,
        ),
        case(
            "wheel member drive letter",
            400,
            "it starts with a drive letter",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("C:/evil.py", b"x")]),
            )
            .await,
        ),
        case(
            "wheel member NUL",
            400,
            "control characters",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("demo/a\0.py", b"x")]),
            )
            .await,
        ),
        case(
            "wheel member nested climb",
            400,
            "it climbs out with `..`",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("demo/sub/../../../x.py", b"x")]),
            )
            .await,
        ),
        case(
            "wheel symlink",
            400,
            "it is a symbolic link",
            upload(
                &app,
                &Dist::wheel_with_symlink("demo", "1.0", "demo/passwd", "/etc/passwd"),
            )
            .await,
        ),
        case(
            "wheel duplicate METADATA",
            400,
            "the name appears twice",
            upload(&app, &duplicate).await,
        ),
        case(
            "wheel local header names another member",
            400,
            "its local header names it `demo/../../xy.py`",
            upload(&app, &local_name_differs()).await,
        ),
        case(
            "wheel fake end record in the comment",
            400,
            "the archive comment holds another end record",
            upload(&app, &fake_end_record()).await,
        ),
        case(
            "wheel data after the end record",
            400,
            "not a readable zip archive (no end-of-central-directory record ends the file)",
            upload(&app, &{
                let mut dist = Dist::wheel("demo", "1.0");
                dist.bytes
                    .extend_from_slice(b"PK\x03\x04 smuggled local record");
                dist
            })
            .await,
        ),
        case(
            "wheel with thousands of entries",
            413,
            "more than 1000 archive entries (`--max-archive-entries`)",
            upload(&app, &Dist::wheel_plus("demo", "1.0", &many_refs)).await,
        ),
        case(
            "METADATA zip bomb",
            413,
            "METADATA is larger than 65536 bytes (`--max-metadata-size`)",
            upload(&app, &metadata_bomb).await,
        ),
        case(
            "wheel unpacks too far",
            413,
            "unpacks to more than 1048576 bytes (`--max-unpacked-size`)",
            upload(
                &app,
                &Dist::wheel_plus("demo", "1.0", &[("demo/zeros.bin", &zeros)]),
            )
            .await,
        ),
        case(
            "METADATA not UTF-8",
            400,
            "METADATA is not valid UTF-8",
            upload(&app, &invalid_utf8).await,
        ),
        case(
            "sdist member climbs out",
            400,
            "unsafe member `demo-1.0/../../evil`",
            upload(
                &app,
                &sdist(&[TarMember::File(b"demo-1.0/../../evil", b"x")]),
            )
            .await,
        ),
        case(
            "sdist member absolute",
            400,
            "it is an absolute path",
            upload(&app, &sdist(&[TarMember::File(b"/etc/evil", b"x")])).await,
        ),
        case(
            "sdist symlink out",
            400,
            "it is a link pointing outside the archive",
            upload(
                &app,
                &sdist(&[TarMember::Symlink(b"demo-1.0/passwd", b"../../etc/passwd")]),
            )
            .await,
        ),
        case(
            "sdist chained symlinks",
            400,
            "it lies under a symbolic link",
            upload(
                &app,
                &sdist(&[
                    TarMember::Symlink(b"demo-1.0/here", b"."),
                    TarMember::Symlink(b"demo-1.0/here/up", b".."),
                    TarMember::File(b"demo-1.0/here/up/up/evil.pth", b"import os"),
                ]),
            )
            .await,
        ),
        case(
            "sdist link through a link",
            400,
            "whose target passes through another link",
            upload(
                &app,
                &sdist(&[
                    TarMember::Symlink(b"demo-1.0/here", b"."),
                    TarMember::Symlink(b"demo-1.0/up", b"here/../.."),
                ]),
            )
            .await,
        ),
        case(
            "sdist absolute symlink",
            400,
            "it is a link pointing outside the archive",
            upload(
                &app,
                &sdist(&[TarMember::Symlink(b"demo-1.0/passwd", b"/etc/passwd")]),
            )
            .await,
        ),
        case(
            "sdist hard link out",
            400,
            "it is a link pointing outside the archive",
            upload(
                &app,
                &sdist(&[TarMember::HardLink(b"demo-1.0/x", b"../outside")]),
            )
            .await,
        ),
        case(
            "sdist device file",
            400,
            "it is a device, FIFO or other special file",
            upload(&app, &sdist(&[TarMember::CharDevice(b"demo-1.0/tty")])).await,
        ),
        case(
            "sdist gzip bomb",
            413,
            "unpacks to more than 1048576 bytes",
            upload(&app, &sdist(&[TarMember::File(b"demo-1.0/zeros", &zeros)])).await,
        ),
        case(
            "sdist not a tar inside the gzip",
            400,
            "is not a readable gzip-compressed tar archive",
            {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut gz, &[7u8; 700]).unwrap();
                upload(
                    &app,
                    &Dist::raw("demo", "1.0", "demo-1.0.tar.gz", gz.finish().unwrap()),
                )
                .await
            },
        ),
    ];
    let n = check(&app, cases).await;
    assert_eq!(n, 25);
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one catalogue reads best in one place"
)]
async fn hostile_names_and_forms_are_refused_and_nothing_is_stored() {
    let app = tight_app().await;
    let good = Dist::wheel("demo", "1.0");
    let (ct, nul) = raw_form(&good, b"demo-1.0-py3-none-any.whl\0.sh");
    let (_, injected) = raw_form(&good, b"demo-1.0.tar.gz\r\nX-Injected: 1");
    let (_, control) = raw_form(&good, b"demo-1.0-py3-none-any\t\xc2\x85.whl");
    let (_, unnamed) = raw_form_disposed(&good, b"");
    let (_, rfc5987) = raw_form_disposed(&good, b"; filename*=UTF-8''demo-1.0-py3-none-any.whl");
    let (_, latin1) = raw_form(&good, b"d\xe9mo-1.0-py3-none-any.whl");
    let cyrillic = Dist::raw(
        "d\u{435}mo",
        "1.0",
        "d\u{435}mo-1.0-py3-none-any.whl",
        good.bytes.clone(),
    );
    let fullwidth = Dist::raw(
        "\u{ff44}emo",
        "1.0",
        "\u{ff44}emo-1.0-py3-none-any.whl",
        good.bytes.clone(),
    );
    let mut many_fields = good.fields();
    for i in 0..70 {
        many_fields.push(("classifiers".into(), format!("Topic :: {i}")));
    }
    let mut two_files = form_of(good.fields(), Some((&good.filename, good.bytes.clone())));
    two_files = two_files.part(
        "content",
        reqwest::multipart::Part::bytes(good.bytes.clone()).file_name(good.filename.clone()),
    );

    let cases = vec![
        case(
            "NUL in filename",
            400,
            "malformed multipart upload body",
            post_raw(&app, &ct, nul).await,
        ),
        case(
            "header injection in filename",
            400,
            "is never closed",
            post_raw(&app, &ct, injected).await,
        ),
        case(
            "no filename",
            400,
            "the `content` part has no `filename=`",
            post_raw(&app, &ct, unnamed).await,
        ),
        case(
            "RFC 5987 filename only",
            400,
            "names its file only with RFC 5987 `filename*=`",
            post_raw(&app, &ct, rfc5987).await,
        ),
        case(
            "non-UTF-8 filename",
            400,
            "filename is not UTF-8",
            post_raw(&app, &ct, latin1).await,
        ),
        case(
            "tab and NEL control characters in filename",
            400,
            "must be a plain file name",
            post_raw(&app, &ct, control).await,
        ),
        case(
            "cyrillic confusable name",
            400,
            "project name `d\u{435}mo` may contain only ASCII letters",
            upload(&app, &cyrillic).await,
        ),
        case(
            "fullwidth confusable name",
            400,
            "may contain only ASCII letters",
            upload(&app, &fullwidth).await,
        ),
        case(
            "too many form fields",
            413,
            "more than 60 fields (`--max-form-fields`)",
            app.upload_form(
                "root/master",
                form_of(many_fields, Some((&good.filename, good.bytes.clone()))),
                Some(ADMIN_TOKEN),
            )
            .await,
        ),
        case(
            "two content files",
            400,
            "has two `content` files",
            app.upload_form("root/master", two_files, Some(ADMIN_TOKEN))
                .await,
        ),
        case(
            "multipart without boundary",
            415,
            "multipart/form-data` with a boundary",
            post_raw(&app, "multipart/form-data", b"--x\r\n".to_vec()).await,
        ),
        case(
            "multipart/mixed",
            415,
            "multipart/form-data` with a boundary",
            post_raw(&app, "text/plain", b"name=demo".to_vec()).await,
        ),
        case(
            "body that stops mid-part",
            400,
            "malformed multipart upload body",
            post_raw(
                &app,
                &ct,
                b"--kilnboundary7d1\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ndemo"
                    .to_vec(),
            )
            .await,
        ),
    ];
    let n = check(&app, cases).await;
    assert_eq!(n, 13);
}

#[tokio::test]
async fn lookalike_filenames_of_one_distribution_conflict() {
    let app = TestApp::spawn().await;
    let first = Dist::raw(
        "Demo_Pkg",
        "1.0",
        "Demo_Pkg-1.0.tar.gz",
        Dist::sdist("demo-pkg", "1.0").bytes,
    );
    assert_eq!(upload(&app, &first).await.status(), 200);
    let before = stored_files(&app).await;
    let second = Dist::raw(
        "demo.pkg",
        "1.0.0",
        "demo.pkg-1.0.0.tar.gz",
        Dist::sdist("demo-pkg", "1.0.0").bytes,
    );
    let (status, message) = detail(upload(&app, &second).await).await;
    assert_eq!(status, 409, "{message}");
    assert!(
        message.contains("is the same distribution as `Demo_Pkg-1.0.tar.gz`"),
        "{message}"
    );
    assert_eq!(stored_files(&app).await, before, "nothing more was stored");
}

/// Writes `head` and `body` to a raw connection, then reads the answer's status line and
/// body (or nothing, if the server just closes).
async fn raw_exchange(
    app: &TestApp,
    head: &str,
    body: &[u8],
    pause_after: Option<usize>,
) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    if let Some(n) = pause_after {
        // Half the body, then nothing, as a slowloris client does.
        stream.write_all(&body[..n]).await.unwrap();
    } else {
        stream.write_all(body).await.unwrap();
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// What is stored once the server has finished with a connection the client gave up on:
/// the spooled temp file of a cut-off body is removed as the server notices, which may
/// be a moment after the client sees the connection close. (A stored blob would never go
/// away, so waiting hides nothing.)
async fn settled(app: &TestApp) -> (usize, usize) {
    let mut stored = stored_files(app).await;
    let deadline = crate::helpers::Deadline::after(30);
    while !deadline.passed() {
        if stored == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored = stored_files(app).await;
    }
    stored
}

#[tokio::test]
async fn lying_and_slow_bodies_are_cut_off_and_nothing_is_stored() {
    let app = tight_app().await;
    let good = Dist::wheel("demo", "1.0");
    let (ct, body) = raw_form(&good, good.filename.as_bytes());
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("__token__:{ADMIN_TOKEN}"))
    };
    let head = |length: usize| {
        format!(
            "POST /root/master/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: {ct}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    };
    // Announces more than it sends, then closes its side.
    let longer = raw_exchange(&app, &head(body.len() + 5000), &body, None).await;
    // The form inside is complete, but the body is read to its declared end before
    // anything is stored: the upload is refused, every time.
    assert!(longer.starts_with("HTTP/1.1 400"), "longer: {longer}");
    assert!(
        longer.contains("the upload body ended before the length it announced"),
        "{longer}"
    );
    assert_eq!(
        settled(&app).await,
        (0, 0),
        "a body shorter than announced stores nothing"
    );
    // Announces less than it sends: the form ends early.
    let shorter = raw_exchange(&app, &head(body.len() / 2), &body, None).await;
    assert!(shorter.starts_with("HTTP/1.1 400"), "shorter: {shorter}");
    assert!(
        shorter.contains("malformed multipart upload body"),
        "{shorter}"
    );
    assert_eq!(settled(&app).await, (0, 0));
    // Sends half, then stalls past the idle timeout.
    let slow = raw_exchange(&app, &head(body.len()), &body, Some(body.len() / 2)).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "slow: {slow}");
    assert!(
        slow.contains("the upload sent no data for 1s; cut off (`--upload-idle-timeout`)"),
        "{slow}"
    );
    assert_eq!(settled(&app).await, (0, 0), "the spooled half was removed");
    let page = app.get("root/master/+simple/demo/", &[]).await;
    assert_eq!(page.status(), 404);
    // An API request whose JSON body stalls is cut off the same way.
    let json = br#"{"name": "root/stalled", "bases": []}"#;
    let api_head = format!(
        "POST /+api/v1/indexes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        json.len()
    );
    let stalled = raw_exchange(&app, &api_head, json, Some(10)).await;
    assert!(stalled.starts_with("HTTP/1.1 408"), "stalled: {stalled}");
    assert!(stalled.contains("did not arrive within 1s"), "{stalled}");
}

#[tokio::test]
async fn hostile_api_requests_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let demo = Dist::wheel("demo", "1.0");
    assert_eq!(upload(&app, &demo).await.status(), 200);
    let before = stored_files(&app).await;
    let ci = mint(&app, "ci", &["upload:acme/*", "report:acme/*"]).await;
    let index = |name: &str| json!({ "name": name });
    let big = json!({"name": "root/x", "description": "x".repeat(100 * 1024)});
    let cases = vec![
        case("index name climbing out", 400, "must be `namespace/name`",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(index("../root/prod"))).await),
        case("index name with three parts", 400, "must be `namespace/name`",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(index("acme/../root"))).await),
        case("index name dot-dot part", 400, "must be 1-64 characters",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(index("acme/.."))).await),
        case("index name reserved +", 400, "must be 1-64 characters",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(index("acme/+simple"))).await),
        case("index name unicode", 400, "must be 1-64 characters",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(index("acme/m\u{430}ster"))).await),
        case("encoded traversal in an index path", 404, "no index",
            call(&app, "GET", "%2e%2e/root/+simple/", None, None).await),
        case("encoded slash in a project path", 404, "may contain only ASCII letters",
            call(&app, "GET", "root/master/+simple/..%2f..%2fetc%2fpasswd/", None, None).await),
        case("traversal in a file path", 404, "is not on index `root/master`",
            call(&app, "GET", &format!("root/master/+f/{}/..%2f..%2fkiln.db", demo.sha256()), None, None).await),
        case("oversized JSON API body", 413, "over this endpoint's limit (64 KiB for API calls",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(big)).await),
        case("unknown JSON field", 400, "unknown field `is_admin`",
            call(&app, "POST", "+api/v1/indexes", Some(ADMIN_TOKEN), Some(json!({"name": "root/y", "is_admin": true}))).await),
        case("report for an artifact on an index the token cannot write", 403, "lacks `report` on `root/master`",
            call(&app, "POST", "+api/v1/results", Some(&ci), Some(json!({"index": "root/master", "sha256": demo.sha256(), "stage": "unit", "run_id": "r", "outcome": "pass", "duration_ms": 1}))).await),
        case("promotion with an upload-only token", 403, "lacks `promote` on `root/prod`",
            call(&app, "POST", "+api/v1/promotions", Some(&ci), Some(json!({"project": "demo", "version": "1.0"}))).await),
        case("build claim outside the token's namespace", 403, "lacks `upload` on `root/master`",
            call(&app, "POST", "+api/v1/builds/root/master/demo/2.0", Some(&ci), Some(json!({"builder": "x", "provenance": {"commit": "abcdef1"}}))).await),
        case("yank outside the token's namespace", 403, "lacks `upload` on `root/master`",
            call(&app, "POST", "+api/v1/releases/root/master/demo/1.0/yank", Some(&ci), Some(json!({"reason": "x"}))).await),
        case("mirror purge without admin", 403, "lacks `admin` on `root/pypi`",
            call(&app, "DELETE", "+api/v1/mirrors/root/pypi/demo", Some(&ci), None).await),
        case("Basic auth with another user name", 403, "use the username `__token__`", {
            reqwest::Client::new().get(app.url("+api/v1/tokens")).basic_auth("admin", Some(ADMIN_TOKEN)).send().await.unwrap()
        }),
        case("Basic auth that is not base64", 403, "not valid base64", {
            reqwest::Client::new().get(app.url("+api/v1/tokens")).header("authorization", "Basic %%%").send().await.unwrap()
        }),
        case("a token guessed by prefix", 403, "not valid on this server",
            call(&app, "GET", "+api/v1/tokens", Some("kiln_"), None).await),
        case("bad sha256 in a report", 400, "sha256",
            call(&app, "POST", "+api/v1/results", Some(ADMIN_TOKEN), Some(json!({"index": "root/master", "sha256": "../../etc", "stage": "unit", "run_id": "r", "outcome": "pass", "duration_ms": 1}))).await),
    ];
    assert_eq!(check_stored(&app, cases, before).await, 19);
    let listed: Vec<serde_json::Value> = call(&app, "GET", "+api/v1/indexes", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "no index was created: {listed:?}");
    let events: Vec<serde_json::Value> = call(&app, "GET", "+api/v1/events", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        events.is_empty(),
        "no yank or promotion happened: {events:?}"
    );
}

/// Reads each zip named on the command line with Python's `zipfile`, as pip does, and
/// prints one JSON line per archive: its member names and its METADATA, base64.
const PY_ZIP_READER: &str = r#"
import base64, json, sys, zipfile
for path in sys.argv[1:]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            meta = [n for n in names if n.endswith(".dist-info/METADATA")]
            data = base64.b64encode(z.read(meta[0])).decode() if len(meta) == 1 else None
            print(json.dumps({"path": path, "names": names, "metadata": data}))
    except Exception as e:
        print(json.dumps({"path": path, "error": f"{type(e).__name__}: {e}"}))
"#;

/// The archive differential against the installer: wheels damaged at random (and laid
/// out in hostile ways) that Kiln accepts are read by Python's `zipfile` with the same
/// single METADATA, byte for byte, and no repeated member.
#[test]
fn what_kiln_accepts_python_reads_the_same_way() {
    use std::io::Cursor;
    let good = Dist::wheel_with("demo", "1.0", &["Summary: the real one"], "x");
    let dist = kiln::domain::DistFilename::parse(&good.filename).unwrap();
    let limits = kiln::domain::ArchiveLimits::default();
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = std::collections::HashMap::new();
    for i in 0..600 {
        let mut bytes = good.bytes.clone();
        for _ in 0..=(next() % 3) {
            let at = usize::try_from(next()).unwrap() % bytes.len();
            bytes[at] = u8::try_from(next() & 0xff).unwrap();
        }
        if i % 50 == 0 {
            bytes.extend_from_slice(b"trailing");
        }
        let read = kiln::domain::metadata::read_wheel_metadata(Cursor::new(&bytes), &dist, limits);
        if let Ok((metadata, _)) = read {
            let path = dir.path().join(format!("{i}.whl"));
            std::fs::write(&path, &bytes).unwrap();
            accepted.insert(path.display().to_string(), metadata);
        }
    }
    assert!(
        accepted.len() > 50,
        "enough survivors to compare: {}",
        accepted.len()
    );
    let output = std::process::Command::new(crate::helpers::python().python_path())
        .arg("-c")
        .arg(PY_ZIP_READER)
        .args(accepted.keys())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(lines.lines().count(), accepted.len());
    for line in lines.lines() {
        use base64::Engine as _;
        let seen: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = seen["path"].as_str().unwrap();
        let names: Vec<&str> = seen["names"]
            .as_array()
            .unwrap_or_else(|| panic!("Python could not read what Kiln accepted: {line}"))
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let unique: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "repeated member: {line}");
        let metadata = base64::engine::general_purpose::STANDARD
            .decode(seen["metadata"].as_str().unwrap_or_default())
            .unwrap();
        assert_eq!(
            metadata, accepted[path],
            "pip would install another METADATA than Kiln serves: {path}"
        );
    }
}
