//! `GET /metrics`: Prometheus text with request, upload, result, promotion and build
//! figures; private indexes only for the holder of the metrics token.

use crate::access::private_index;
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp};
use kiln::domain::Outcome;

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(app.url("metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        response.status().as_u16(),
        kind,
        response.text().await.unwrap(),
    )
}

#[tokio::test]
async fn metrics_count_what_happened_and_hide_private_indexes() {
    let app = TestApp::spawn().await;
    private_index(&app, "sec/hidden").await;
    let sha256 = app
        .build("root/master", "abc1234", &[&Dist::wheel("measured", "1.0")])
        .await;
    crate::promotions::report(&app, &sha256, "unit", "run-1", Outcome::Pass).await;
    assert_eq!(
        app.get("root/master/+simple/measured/", &[]).await.status(),
        200
    );

    let (status, kind, text) = scrape(&app, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(text.ends_with("# EOF\n"));
    // Process-wide counters (other tests in this process add to them): at least ours.
    for (series, at_least) in [
        (
            "kiln_http_requests_total{route=\"/{ns}/{name}/+simple/{project}/\",method=\"GET\",status=\"200\"}",
            1.0,
        ),
        ("kiln_upload_files_total", 1.0),
        ("kiln_stage_results_total{outcome=\"pass\"}", 1.0),
        (
            "kiln_http_request_duration_seconds_count{route=\"/+api/v1/results\",method=\"POST\"}",
            1.0,
        ),
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        assert!(value >= at_least, "{series} = {value}");
    }
    // Sampled from this server's database: exact.
    assert_eq!(
        sample(&text, "kiln_index_files{index=\"root/master\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "kiln_builds{state=\"ready\"}"), Some(1.0));
    assert!(sample(&text, "kiln_db_pool_connections").is_some_and(|n| n >= 1.0));
    assert!(
        !text.contains("sec/hidden"),
        "a private index's name is not public"
    );
    // Unknown paths are one series, not one per path.
    app.get("no/such/thing/at/all", &[]).await;
    let (_, _, text) = scrape(&app, None).await;
    assert!(!text.contains("no/such"), "raw paths never become labels");
}

#[tokio::test]
async fn with_a_metrics_token_only_its_holder_reads_metrics_and_sees_every_index() {
    let app = TestApp::spawn_with(|c| c.metrics_token = Some("m3trics-s3cret-t0ken".into())).await;
    private_index(&app, "sec/hidden").await;
    for token in [None, Some("wrong"), Some(ADMIN_TOKEN)] {
        let (status, _, text) = scrape(&app, token).await;
        assert_eq!(status, 401, "{token:?}: {text}");
        assert!(text.contains("metrics token"), "{text}");
    }
    let (status, _, text) = scrape(&app, Some("m3trics-s3cret-t0ken")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&text, "kiln_index_files{index=\"sec/hidden\"}"),
        Some(0.0)
    );
}
