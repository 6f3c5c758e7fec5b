//! The web UI over HTTP: content negotiation, what each page shows, sign-in by cookie,
//! badges (parsed as XML) and feeds (parsed as Atom). The same pages in a real browser
//! are in `browser.rs`.

use std::collections::BTreeMap;

use kiln::api::StageReport;
use kiln::domain::Outcome;

use crate::access::{call, mint};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, no_redirect_client};

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8");

/// A failing stage's output, with colours, markup to escape and a progress line.
pub const FAILING_LOG: &str = "collected 2 items\n\u{1b}[1;31mFAILED\u{1b}[0m tests/test_a.py::test_b - assert <1> == 2\n10%\r100%\n";

/// Reports `outcome` for `stage` of `sha256` on `index` as the admin.
pub async fn report(
    app: &TestApp,
    index: &str,
    sha256: &str,
    stage: &str,
    outcome: Outcome,
    log: &str,
) {
    app.client()
        .report_result(&StageReport {
            index: index.parse().unwrap(),
            sha256: sha256.into(),
            stage: stage.into(),
            run_id: format!("{stage}-run-1"),
            outcome,
            cause: None,
            artifact: Some(kiln::domain::ArtifactCheck::Verified),
            exit_code: Some(i64::from(outcome != Outcome::Pass)),
            duration_ms: 12_400,
            environment: BTreeMap::from([("python".to_owned(), "3.12.1".to_owned())]),
            log_tail: log.into(),
            junit: Some(kiln::api::JunitCounts {
                tests: 2,
                failures: u64::from(outcome == Outcome::Fail),
                errors: 0,
                skipped: 0,
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("reporting {stage} on {index}: {e}"));
}

/// The text of HTML with its five escapes undone.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

async fn page(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = app.get(path, headers).await;
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8",
            "{path}"
        );
    }
    (status, response.text().await.unwrap())
}

/// `acme-util` 1.0 built on root/master from commit `c0ffee1`, its `unit` stage failing
/// with [`FAILING_LOG`] and its `lint` stage passing: the wheel and its sha256.
pub async fn failing_release(app: &TestApp) -> (Dist, String) {
    let wheel = Dist::wheel("acme-util", "1.0");
    let sha256 = app.build("root/master", "c0ffee1", &[&wheel]).await;
    report(
        app,
        "root/master",
        &sha256,
        "unit",
        Outcome::Fail,
        FAILING_LOG,
    )
    .await;
    let ok = "\u{1b}[32mok\u{1b}[0m";
    report(app, "root/master", &sha256, "lint", Outcome::Pass, ok).await;
    (wheel, sha256)
}

#[tokio::test]
async fn a_browser_gets_pages_and_an_api_client_keeps_its_json() {
    let app = TestApp::spawn().await;
    let (wheel, sha256) = failing_release(&app).await;

    let (status, home) = page(&app, "", &[HTML]).await;
    assert_eq!(status, 200, "{home}");
    for expected in [
        "<title>Indexes and builds · Kiln</title>",
        "root/master",
        "root/prod",
        "Build queue",
    ] {
        assert!(home.contains(expected), "home lacks {expected}: {home}");
    }

    // The index path answers a browser with the page and anyone else with JSON, as before.
    let (status, index) = page(&app, "root/master", &[HTML]).await;
    assert_eq!(status, 200);
    assert!(
        index.contains("acme-util") && index.contains("unit failed"),
        "{index}"
    );
    let json = app.get("root/master", &[]).await;
    assert_eq!(json.headers()["content-type"], "application/json");
    let view: serde_json::Value = json.json().await.unwrap();
    assert_eq!(view["name"], "root/master");
    let (_, simple) = page(&app, "root/master/+simple/acme-util/", &[]).await;
    assert!(simple.starts_with("<!DOCTYPE html>") && simple.contains("Links for acme-util"));

    let (status, project) = page(&app, "root/master/acme-util", &[HTML]).await;
    assert_eq!(status, 200, "{project}");
    assert!(
        project.contains("/root/master/acme-util/1.0")
            && project.contains("<span class=\"pill failed\">failed</span>"),
        "{project}"
    );
    assert!(
        project.contains("/+badge/root/master/acme-util"),
        "the badge snippet: {project}"
    );

    let (status, release) = page(&app, "root/master/acme-util/1.0", &[HTML]).await;
    assert_eq!(status, 200, "{release}");
    for expected in [
        sha256.as_str(),
        &wheel.filename,
        "c0ffee1",
        // the log tail: colours as classes, markup escaped, the progress line's last state
        "<span class=\"fg1 b\">FAILED</span>",
        "assert &lt;1&gt; == 2",
        "<span class=\"line\">100%</span>",
        // JUnit counts, the environment, who reported
        "2 tests, 1 failures",
        "3.12.1",
        // reproduce locally, with this server's address
        &format!(
            "pip install --index-url {}root/master/+simple/ acme-util==1.0",
            app.url("")
        ),
        &format!("echo '{sha256}  {}' | sha256sum -c", wheel.filename),
        // the policy's dry run: refused, because unit failed
        "root/master → root/prod",
        "<span class=\"pill refused\">refused</span>",
        "✘ fail</span> stage `unit` green",
    ] {
        assert!(
            release.contains(expected) || unescape(&release).contains(expected),
            "the release page lacks {expected:?}:\n{release}"
        );
    }
    assert!(
        !release.contains('\u{1b}'),
        "raw escape sequences on the page"
    );

    let (status, missing) = page(&app, "root/master/acme-util/9.9", &[HTML]).await;
    assert_eq!(status, 404, "{missing}");
    assert!(missing.contains("has no files and no build"), "{missing}");
    let (status, _) = page(&app, "root/master/no-such-project", &[HTML]).await;
    assert_eq!(status, 404);

    let icon = app.get("favicon.ico", &[]).await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn events_are_listed_newest_first_and_filter_by_index_and_kind() {
    let app = TestApp::spawn().await;
    app.create_index("acme/one", &["root/master"]).await;
    app.create_index("acme/two", &["root/master"]).await;
    let (status, all) = page(&app, "+events", &[HTML]).await;
    assert_eq!(status, 200);
    // The table, after the filter form (whose choices name every index).
    let rows = |html: &str| html[html.find("</form>").expect("the filter form")..].to_owned();
    let table = rows(&all);
    let (one, two) = (
        table.find(">acme/one<").unwrap(),
        table.find(">acme/two<").unwrap(),
    );
    assert!(two < one, "newest first: {all}");
    let (_, only_one) = page(&app, "+events?index=acme%2Fone&kind=", &[HTML]).await;
    let table = rows(&only_one);
    assert!(
        table.contains(">acme/one<") && !table.contains(">acme/two<"),
        "{only_one}"
    );
    let (_, yanks) = page(&app, "+events?index=&kind=yank", &[HTML]).await;
    assert!(yanks.contains("No events."), "{yanks}");
    let (status, bad) = page(&app, "+events?kind=explosion", &[HTML]).await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test]
async fn a_private_index_needs_a_sign_in_kept_in_a_strict_http_only_cookie() {
    let app = TestApp::spawn().await;
    crate::access::private_index(&app, "sec/priv").await;
    let reader = mint(&app, "reader", &["read:sec/*"]).await;

    let (status, refused) = page(&app, "sec/priv", &[HTML]).await;
    assert_eq!(status, 401, "{refused}");
    assert!(refused.contains("/+signin?next=%2Fsec%2Fpriv"), "{refused}");
    let (_, home) = page(&app, "", &[HTML]).await;
    assert!(
        !home.contains("sec/priv"),
        "the home page hides the private index: {home}"
    );

    let client = no_redirect_client();
    let wrong = client
        .post(app.url("+signin"))
        .form(&[("token", "kiln_wrong"), ("next", "/sec/priv")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    // A form posted from another site cannot sign this browser in, even with a real token.
    let forged = client
        .post(app.url("+signin"))
        .header("Origin", "https://evil.example")
        .form(&[("token", reader.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("set-cookie").is_none());
    // `next` only ever goes back to this server.
    let signed = client
        .post(app.url("+signin"))
        .form(&[("token", reader.as_str()), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/");
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();

    let (status, seen) = page(&app, "sec/priv", &[HTML, ("Cookie", &pair)]).await;
    assert_eq!(status, 200, "{seen}");
    assert!(seen.contains("Signed in as <strong>reader"), "{seen}");
    let (_, home) = page(&app, "", &[HTML, ("Cookie", &pair)]).await;
    assert!(home.contains("sec/priv"), "{home}");
    // Only the pages read the cookie: the JSON API and the simple API do not.
    let api = app
        .get("+api/v1/indexes/sec/priv", &[("Cookie", &pair)])
        .await;
    assert_eq!(api.status(), 401);
    let simple = app.get("sec/priv/+simple/", &[("Cookie", &pair)]).await;
    assert_eq!(simple.status(), 401);

    // A revoked token's cookie signs nobody in, and the page says so.
    let tokens: serde_json::Value = call(&app, "GET", "+api/v1/tokens", Some(ADMIN_TOKEN), None)
        .await
        .json()
        .await
        .unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "reader")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let revoked = call(
        &app,
        "DELETE",
        &format!("+api/v1/tokens/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let (status, stale) = page(&app, "", &[HTML, ("Cookie", &pair)]).await;
    assert_eq!(status, 200);
    assert!(
        stale.contains("no longer valid") && !stale.contains("sec/priv"),
        "{stale}"
    );

    let out = client.post(app.url("+signout")).send().await.unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

/// The text of every element named `name` in an XML document, which must parse.
pub fn xml_texts(xml: &str, name: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut inside, mut texts) = (false, Vec::new());
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{xml}"))
        {
            Event::Start(e) if e.local_name().as_ref() == name.as_bytes() => {
                inside = true;
                texts.push(String::new());
            }
            Event::End(e) if e.local_name().as_ref() == name.as_bytes() => inside = false,
            Event::Text(t) if inside => {
                texts.last_mut().unwrap().push_str(&t.decode().unwrap());
            }
            Event::GeneralRef(r) if inside => {
                let entity = r.decode().unwrap();
                let text = match entity.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" | "#39" => "'",
                    other => panic!("unexpected entity &{other};"),
                };
                texts.last_mut().unwrap().push_str(text);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    texts
}

#[tokio::test]
async fn badges_are_svg_with_etags_and_feeds_are_atom() {
    let app = TestApp::spawn().await;
    let sha256 = app
        .build(
            "root/master",
            "c0ffee1",
            &[&Dist::wheel("acme-util", "1.0")],
        )
        .await;
    report(&app, "root/master", &sha256, "unit", Outcome::Pass, "ok").await;

    let badge = app.get("+badge/root/master/acme-util", &[]).await;
    assert_eq!(badge.status(), 200);
    assert_eq!(
        badge.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    let etag = badge.headers()["etag"].to_str().unwrap().to_owned();
    let svg = badge.text().await.unwrap();
    assert_eq!(xml_texts(&svg, "title"), ["acme-util: 1.0 passed"], "{svg}");
    let again = app
        .get("+badge/root/master/acme-util", &[("If-None-Match", &etag)])
        .await;
    assert_eq!(again.status(), 304);

    let stage = app
        .get("+badge/root/master/acme-util/unit", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(xml_texts(&stage, "title"), ["acme-util unit: 1.0 pass"]);
    let unrun = app
        .get("+badge/root/master/acme-util/docs", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(xml_texts(&unrun, "title"), ["acme-util docs: 1.0 not run"]);
    let none = app
        .get("+badge/root/master/nothing-here", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(xml_texts(&none, "title"), ["nothing-here: no release"]);
    // A new failing result changes the badge, and so its ETag.
    report(&app, "root/master", &sha256, "unit", Outcome::Fail, "boom").await;
    let changed = app
        .get("+badge/root/master/acme-util", &[("If-None-Match", &etag)])
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(
        xml_texts(&changed.text().await.unwrap(), "title"),
        ["acme-util: 1.0 failed"]
    );

    app.create_index("acme/feature-x", &["root/master"]).await;
    let feed = app.get("+feed", &[]).await;
    assert_eq!(
        feed.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let atom = feed.text().await.unwrap();
    assert!(
        atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"),
        "{atom}"
    );
    let titles = xml_texts(&atom, "title");
    assert_eq!(titles[0], "Kiln events");
    assert!(
        titles
            .iter()
            .any(|t| t == "index-created on acme/feature-x"),
        "{titles:?}"
    );
    assert_eq!(xml_texts(&atom, "entry").len(), titles.len() - 1);
    let index_feed = app
        .get("acme/feature-x/+feed", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        xml_texts(&index_feed, "title"),
        [
            "Kiln events of acme/feature-x",
            "index-created on acme/feature-x"
        ]
    );
}

#[tokio::test]
async fn a_failed_build_is_an_event_and_its_release_page_shows_the_output() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let index: kiln::domain::IndexName = "root/master".parse().unwrap();
    let claim = kiln::api::ClaimBuild {
        builder: "runner-7".into(),
        retry: false,
        provenance: crate::helpers::provenance("badc0de"),
        target: None,
    };
    let claimed = client
        .claim_build(&index, "acme-util", "2.0", &claim)
        .await
        .unwrap();
    let kiln::api::BuildStateView::Claimed { lease_id, .. } = claimed.status else {
        panic!("expected to claim: {claimed:?}")
    };
    let body = kiln::api::LeaseBody {
        lease_id,
        error_tail: Some("running setup.py\n\u{1b}[31merror: <gcc> failed\u{1b}[0m\n".into()),
        target: None,
    };
    client
        .lease_action(&index, "acme-util", "2.0", "fail", &body)
        .await
        .unwrap();

    let (status, events) = page(&app, "+events?index=&kind=build-failed", &[HTML]).await;
    assert_eq!(status, 200);
    assert!(
        events.contains("build-failed") && events.contains("error: &lt;gcc&gt; failed"),
        "{events}"
    );
    let (status, release) = page(&app, "root/master/acme-util/2.0", &[HTML]).await;
    assert_eq!(status, 200, "{release}");
    assert!(
        release.contains("Build failure")
            && release.contains("<span class=\"fg1\">error: &lt;gcc&gt; failed</span>"),
        "{release}"
    );
    let feed = app
        .get("root/master/+feed", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        xml_texts(&feed, "title").contains(&"build-failed acme-util 2.0 on root/master".to_owned()),
        "{feed}"
    );
}

#[tokio::test]
async fn an_index_page_lists_its_projects_a_page_at_a_time() {
    use futures_util::StreamExt as _;
    let app = TestApp::spawn().await;
    let per_page = usize::try_from(kiln::service::overview::PROJECTS_PER_PAGE).unwrap();
    let uploads = futures_util::stream::iter(0..=per_page)
        .map(|n| {
            let app = &app;
            async move {
                let dist = Dist::wheel(&format!("many-{n:03}"), "1.0");
                let response = app.upload("root/master", &dist).await;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                assert!(status.is_success(), "uploading {n}: {status} {body}");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    uploads.await;
    let (status, first) = page(&app, "root/master", &[HTML]).await;
    assert_eq!(status, 200);
    let last_shown = format!("many-{:03}", per_page - 1);
    assert!(first.contains(&format!(">{last_shown}<")), "{first}");
    assert!(!first.contains(&format!(">many-{per_page:03}<")));
    let next = format!("/root/master?after={last_shown}");
    assert!(
        first.contains(&format!("href=\"{next}\"")),
        "a next link: {first}"
    );
    let (status, second) = page(&app, &next[1..], &[HTML]).await;
    assert_eq!(status, 200);
    assert!(
        second.contains(&format!(">many-{per_page:03}<")),
        "{second}"
    );
    assert!(!second.contains(">many-000<") && !second.contains("Next projects"));
}

#[tokio::test]
async fn a_badge_is_green_only_once_every_required_stage_passed() {
    let app = TestApp::spawn().await;
    // Only `lint` reported, but promotion from root/master requires `unit`: not green.
    let half = app
        .build(
            "root/master",
            "c0ffee1",
            &[&Dist::wheel("half-tested", "1.0")],
        )
        .await;
    report(&app, "root/master", &half, "lint", Outcome::Pass, "ok").await;
    let incomplete = app
        .get("+badge/root/master/half-tested", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        xml_texts(&incomplete, "title"),
        ["half-tested: 1.0 incomplete"]
    );
    let (_, index) = page(&app, "root/master", &[HTML]).await;
    assert!(index.contains("unit not run yet"), "{index}");
    report(&app, "root/master", &half, "unit", Outcome::Pass, "ok").await;
    let green = app
        .get("+badge/root/master/half-tested", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(xml_texts(&green, "title"), ["half-tested: 1.0 passed"]);
}
