//! The web UI in a real browser: Debian's Chromium driven through chromedriver (W3C
//! `WebDriver`) against a real server with real builds and stage results. A person's
//! path — home, index, project, release, the failing stage's log, signing in to a
//! private index — and on every page: a title, one `h1`, alt text on every image, no
//! console errors, and no horizontal scroll at a 390-pixel-wide viewport. Screenshots of
//! each page go to `target/ui-screenshots/` so a failing run can be looked at.
//!
//! Without Chromium and chromedriver this says so and skips, unless
//! `KILN_TEST_REQUIRE_BACKENDS=1` (set by `.ci/run`, which installs them) makes it fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::access::{call, mint};
use crate::helpers::{ADMIN_TOKEN, Deadline, Dist, KillOnDrop, TestApp, required};
use crate::ui::failing_release;

/// A phone's width: no page may scroll sideways at it.
const NARROW: u32 = 390;

/// chromedriver on a free port, and the browser profile directory it runs Chromium with.
struct Driver {
    /// Held for its `Drop`: stops chromedriver when the test ends.
    _process: KillOnDrop,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A panicking test never closed its session: stop the Chromium it left running
        // (found by its profile directory, which no other process uses).
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(self.profile.path())
            .status();
    }
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Starts chromedriver, or `None` (said on stderr) when Chromium is not installed and CI
/// does not require it.
async fn driver() -> Option<Driver> {
    let tools = (
        find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]),
        find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]),
    );
    let (Some(chromedriver), Some(_)) = tools else {
        assert!(
            !required(),
            "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver; .ci/run does)"
        );
        eprintln!(
            "SKIPPED the browser test: Chromium is not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = crate::helpers::free_port();
    let process = std::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver {
        _process: KillOnDrop(process),
        url,
        profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Deadline::after(60);
    loop {
        let ready = reqwest::get(format!("{}/status", driver.url)).await;
        if let Ok(response) = ready
            && let Ok(status) = response.json::<serde_json::Value>().await
            && status["value"]["ready"] == true
        {
            break;
        }
        assert!(
            !deadline.passed(),
            "chromedriver did not become ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]).unwrap(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                format!("--user-data-dir={}", driver.profile.path().display()),
            ],
        }),
    );
    capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The browser console's entries since the last call, as `LEVEL message`.
async fn console(driver: &Driver, browser: &Client) -> Vec<String> {
    let session = browser.session_id().await.unwrap().expect("a session id");
    let logs: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/session/{session}/se/log", driver.url))
        .json(&json!({ "type": "browser" }))
        .send()
        .await
        .expect("reading the console")
        .json()
        .await
        .unwrap();
    logs["value"]
        .as_array()
        .expect("log entries")
        .iter()
        .map(|e| format!("{} {}", e["level"], e["message"]))
        .collect()
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The suite this runs in, for the screenshots' names.
fn suite() -> &'static str {
    if crate::helpers::shared_backends() {
        "pg-s3"
    } else {
        "embedded"
    }
}

/// Checks the page the browser shows, at full width and at [`NARROW`], and saves both
/// screenshots as `NAME-wide.png` and `NAME-narrow.png`.
async fn check_page(driver: &Driver, browser: &Client, name: &str) {
    let url = browser.current_url().await.unwrap();
    let title = browser.title().await.unwrap();
    assert!(
        title.ends_with("· Kiln") && title.len() > "· Kiln".len(),
        "{url}: title {title:?}"
    );
    let headings = browser.find_all(Locator::Css("h1")).await.unwrap();
    assert_eq!(headings.len(), 1, "{url}: one h1");
    assert!(
        !headings[0].text().await.unwrap().trim().is_empty(),
        "{url}: an empty h1"
    );
    for image in browser.find_all(Locator::Css("img")).await.unwrap() {
        let alt = image.attr("alt").await.unwrap().unwrap_or_default();
        assert!(!alt.trim().is_empty(), "{url}: an image without alt text");
        let loaded = browser
            .execute(
                "return arguments[0].complete && arguments[0].naturalWidth > 0;",
                vec![serde_json::to_value(&image).unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(loaded, true, "{url}: image {alt:?} did not load");
    }
    let errors: Vec<String> = console(driver, browser)
        .await
        .into_iter()
        .filter(|e| e.starts_with("\"SEVERE\""))
        .collect();
    assert!(errors.is_empty(), "{url}: console errors: {errors:?}");
    let dir = screenshots();
    let wide = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{}-{name}-wide.png", suite())), wide).unwrap();
    browser.set_window_size(NARROW, 844).await.unwrap();
    let sideways = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, inner) = (sideways[0].as_u64().unwrap(), sideways[1].as_u64().unwrap());
    assert!(
        scroll <= inner,
        "{url}: scrolls sideways at {NARROW} px (content {scroll} px wide, viewport {inner} px)"
    );
    let narrow = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{}-{name}-narrow.png", suite())), narrow).unwrap();
    browser.set_window_size(1280, 900).await.unwrap();
}

/// Follows the link whose text is `text`, and waits until the browser left `from` and
/// the new page finished loading.
async fn follow(browser: &Client, text: &str) {
    let from = browser.current_url().await.unwrap();
    browser
        .find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("{from}: no link {text:?}: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = Deadline::after(30);
    while browser.current_url().await.unwrap() == from {
        assert!(
            !deadline.passed(),
            "{from}: following {text:?} went nowhere"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loaded(browser).await;
}

/// Waits until the browser's document has finished loading (a navigation can commit its
/// URL before its document is parsed).
async fn loaded(browser: &Client) {
    let deadline = Deadline::after(30);
    loop {
        let state = browser
            .execute("return document.readyState;", vec![])
            .await
            .unwrap();
        if state == "complete" {
            return;
        }
        assert!(
            !deadline.passed(),
            "the page did not finish loading: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page's source contains `text`, and answers it.
async fn source_with(browser: &Client, text: &str) -> String {
    let deadline = Deadline::after(30);
    loop {
        let source = browser.source().await.unwrap();
        if source.contains(text) {
            return source;
        }
        assert!(
            !deadline.passed(),
            "the page never showed {text:?}:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_person_follows_a_release_to_its_failing_log_and_signs_in() {
    let Some(driver) = driver().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let (_, sha256) = failing_release(&app).await;
    let created = call(
        &app,
        "POST",
        "+api/v1/indexes",
        Some(ADMIN_TOKEN),
        Some(json!({"name": "sec/priv", "private": true, "bases": ["root/master"]})),
    )
    .await;
    assert_eq!(created.status(), 201);
    app.build("sec/priv", "5ec2e71", &[&Dist::wheel("secret-pkg", "2.0")])
        .await;
    let reader = mint(&app, "reader", &["read:sec/*"]).await;

    let browser = browser(&driver).await;
    browser.goto(&app.url("")).await.unwrap();
    loaded(&browser).await;
    check_page(&driver, &browser, "home").await;
    let home = browser.source().await.unwrap();
    assert!(!home.contains("sec/priv"), "the private index is hidden");

    follow(&browser, "root/master").await;
    check_page(&driver, &browser, "index").await;
    follow(&browser, "acme-util").await;
    check_page(&driver, &browser, "project").await;
    follow(&browser, "1.0").await;
    check_page(&driver, &browser, "release").await;

    // The failing stage is open, its log shows the failure in colour, and the filter
    // box hides the lines that do not match.
    let failed = browser
        .find(Locator::Css("#log-unit-1 .fg1"))
        .await
        .expect("the failing stage's log, with the FAILED in red");
    assert!(
        failed.is_displayed().await.unwrap(),
        "the failing stage is open"
    );
    assert_eq!(failed.text().await.unwrap(), "FAILED");
    let filter = browser
        .find(Locator::Css("input[data-log=\"log-unit-1\"]"))
        .await
        .unwrap();
    filter.send_keys("FAILED").await.unwrap();
    let deadline = Deadline::after(30);
    loop {
        let hidden = browser
            .find_all(Locator::Css("#log-unit-1 .line.hidden"))
            .await
            .unwrap()
            .len();
        if hidden == 3 {
            break;
        }
        assert!(
            !deadline.passed(),
            "the filter hid {hidden} of the 3 other lines"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let release = browser.source().await.unwrap();
    assert!(release.contains(&sha256) && release.contains("c0ffee1"));

    browser.goto(&app.url("+events")).await.unwrap();
    loaded(&browser).await;
    check_page(&driver, &browser, "events").await;

    // A private index: refused, then readable once signed in with a token.
    browser.goto(&app.url("sec/priv")).await.unwrap();
    source_with(&browser, "401 Unauthorized").await;
    loaded(&browser).await;
    console(&driver, &browser).await; // the 401 itself is logged; that one is expected
    follow(&browser, "Sign in with a token").await;
    check_page(&driver, &browser, "signin").await;
    browser
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&reader)
        .await
        .unwrap();
    browser
        .find(Locator::Css("form[action=\"/+signin\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Deadline::after(30);
    while !browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/sec/priv")
    {
        assert!(
            !deadline.passed(),
            "signing in did not return to the private index"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let private = source_with(&browser, "Signed in as").await;
    assert!(private.contains("secret-pkg"), "{private}");
    loaded(&browser).await;
    check_page(&driver, &browser, "private-index").await;
    // The cookie is HttpOnly: page scripts cannot read the token.
    let visible = browser
        .execute("return document.cookie;", vec![])
        .await
        .unwrap();
    assert_eq!(visible, "", "the token is not visible to scripts");
    browser.close().await.unwrap();
}
