//! Promotion by policy, the audit trail, yanks and events, over the real API.

use std::collections::BTreeMap;

use kiln::api::{PromoteRequest, PromotionOutcome, PromotionResult, StageReport};
use kiln::domain::Outcome;
use kiln::policy::Policies;

use crate::helpers::{Dist, TestApp};

pub fn request(version: &str) -> PromoteRequest {
    PromoteRequest {
        project: "demo".into(),
        version: version.into(),
        together: Vec::new(),
        from: None,
        to: None,
        dry_run: false,
    }
}

/// Reports a result for `sha256` on `root/master`.
pub async fn report(app: &TestApp, sha256: &str, stage: &str, run: &str, outcome: Outcome) {
    report_on(app, "root/master", sha256, stage, run, outcome).await;
}

/// Reports a result for `sha256` on `index`, with the admin token.
pub async fn report_on(
    app: &TestApp,
    index: &str,
    sha256: &str,
    stage: &str,
    run: &str,
    outcome: Outcome,
) {
    app.client()
        .report_result(&StageReport {
            index: index.parse().unwrap(),
            cause: (outcome == Outcome::Error).then(|| "command `tox` not found".into()),
            // what `kiln stage` reports when its probe saw the wheel imported
            artifact: (outcome != Outcome::Error).then_some(kiln::domain::ArtifactCheck::Verified),
            sha256: sha256.into(),
            stage: stage.into(),
            run_id: run.into(),
            outcome,
            exit_code: Some(i64::from(outcome != Outcome::Pass)),
            duration_ms: 10,
            environment: BTreeMap::new(),
            log_tail: format!("{stage} {run}"),
            junit: None,
        })
        .await
        .unwrap();
}

/// Builds `demo` `version` into master under a lease (as `kiln ensure` does) and returns
/// its sha256.
pub async fn on_master(app: &TestApp, version: &str) -> String {
    app.build("root/master", "c0ffee1", &[&Dist::wheel("demo", version)])
        .await
}

fn failed(outcome: &PromotionOutcome) -> Vec<(String, String)> {
    outcome
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.rule.clone(), c.found.clone()))
        .collect()
}

#[tokio::test]
async fn only_green_new_final_releases_reach_prod_as_the_same_bytes() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let sha = on_master(&app, "1.4.63").await;

    // No result yet: refused, and the refusal says what is missing.
    let missing = client.promote(&request("1.4.63")).await.unwrap();
    assert_eq!(missing.result, PromotionResult::Refused);
    assert_eq!(
        failed(&missing),
        [(
            "stage `unit` green for `demo-1.4.63-py3-none-any.whl`".to_owned(),
            "no result".to_owned()
        )]
    );
    // Red, then green on a re-run, then red again on another re-run: the latest counts.
    report(&app, &sha, "unit", "run-1", Outcome::Fail).await;
    let red = client.promote(&request("1.4.63")).await.unwrap();
    assert_eq!(
        failed(&red)[0].1,
        format!("fail (latest result; log tail at /+api/v1/results/{sha})")
    );
    report(&app, &sha, "unit", "run-2", Outcome::Pass).await;
    report(&app, &sha, "unit", "run-3", Outcome::Fail).await;
    assert_eq!(
        client.promote(&request("1.4.63")).await.unwrap().result,
        PromotionResult::Refused
    );
    report(&app, &sha, "unit", "run-4", Outcome::Pass).await;

    let dry = client
        .promote(&PromoteRequest {
            dry_run: true,
            ..request("1.4.63")
        })
        .await
        .unwrap();
    assert_eq!(dry.result, PromotionResult::WouldPromote, "{dry:?}");
    assert!(app.get("root/prod/+simple/demo/", &[]).await.status() == 404);

    let done = client.promote(&request("1.4.63")).await.unwrap();
    assert_eq!(done.result, PromotionResult::Promoted, "{done:?}");
    let record = done.promotion.unwrap();
    assert_eq!(
        (record.source.as_str(), record.target.as_str()),
        ("root/master", "root/prod")
    );
    assert_eq!(record.files[0]["sha256"], sha.as_str());
    assert_eq!(
        record.evidence["results"][0]["stages"]["unit"]["run_id"],
        "run-4"
    );
    let prod = app.json_page("root/prod", "demo").await;
    assert_eq!(
        prod["files"][0]["hashes"]["sha256"],
        sha.as_str(),
        "the same bytes"
    );

    let again = client.promote(&request("1.4.63")).await.unwrap();
    assert_eq!(again.result, PromotionResult::AlreadyPromoted);
    assert_eq!(again.promotion.unwrap().id, record.id);

    // Older than prod's newest, a dev release, a local version: each refused with why.
    let old = on_master(&app, "1.4.9").await;
    report(&app, &old, "unit", "r", Outcome::Pass).await;
    let older = client.promote(&request("1.4.9")).await.unwrap();
    assert_eq!(
        failed(&older),
        [(
            "newer than `root/prod`".to_owned(),
            "`1.4.9`, and `root/prod` already has `1.4.63`".to_owned()
        )]
    );
    for version in ["1.5.dev1", "1.5rc1", "1.5+local"] {
        let sha = on_master(&app, version).await;
        report(&app, &sha, "unit", "r", Outcome::Pass).await;
        let refused = client.promote(&request(version)).await.unwrap();
        assert_eq!(refused.result, PromotionResult::Refused, "{version}");
    }

    let history = client
        .list_promotions(Some(&"root/prod".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    let events = client.list_events(None, 0).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "promotion").count(), 1);
    assert!(
        kinds.iter().filter(|k| **k == "refusal").count() >= 5,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_promotions_record_once() {
    let app = TestApp::spawn().await;
    let sha = on_master(&app, "2.0").await;
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    let client = app.client();
    let runs = (0..4).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.promote(&request("2.0")).await.unwrap() })
    });
    let outcomes = futures_util::future::join_all(runs).await;
    let promoted = outcomes
        .iter()
        .filter(|o| o.as_ref().unwrap().result == PromotionResult::Promoted)
        .count();
    assert_eq!(promoted, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o.as_ref().unwrap().result,
        PromotionResult::Promoted | PromotionResult::AlreadyPromoted
    )));
    assert_eq!(client.list_promotions(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn branches_and_unknown_routes_have_no_policy() {
    let app = TestApp::spawn().await;
    app.create_index("root/feature", &["root/master"]).await;
    let refused = app
        .client()
        .promote(&PromoteRequest {
            from: Some("root/feature".parse().unwrap()),
            ..request("1.0")
        })
        .await
        .unwrap_err();
    let kiln::client::ClientError::Api { status, detail } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(status, 403);
    assert!(
        detail.contains("no promotion policy allows promoting from `root/feature`")
            && detail.contains("master-to-prod (root/master -> root/prod)"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_yank_is_audited_and_reversible() {
    let app = TestApp::spawn().await;
    let sha = on_master(&app, "3.0").await;
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    let client = app.client();
    client.promote(&request("3.0")).await.unwrap();
    let prod = "root/prod".parse().unwrap();
    let yanked = client
        .yank(&prod, "demo", "3.0", Some("breaks py3.9"))
        .await
        .unwrap();
    assert_eq!(yanked.files, ["demo-3.0-py3-none-any.whl"]);
    let page = app.json_page("root/prod", "demo").await;
    assert_eq!(page["files"][0]["yanked"], "breaks py3.9");
    let empty = client
        .yank(&prod, "demo", "3.0", Some("  "))
        .await
        .unwrap_err();
    assert!(matches!(
        empty,
        kiln::client::ClientError::Api { status: 400, .. }
    ));
    client.yank(&prod, "demo", "3.0", None).await.unwrap();
    let page = app.json_page("root/prod", "demo").await;
    assert_eq!(page["files"][0]["yanked"], false);
    let events = client.list_events(Some(&prod), 0).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["promotion", "yank", "unyank"]);
    assert_eq!(events[1].detail["reason"], "breaks py3.9");
}

#[tokio::test]
async fn an_auto_policy_promotes_when_the_last_stage_turns_green() {
    let policy = kiln::policy::DEFAULT_POLICY
        .replace(
            "required-stages = [\"unit\"]",
            "required-stages = [\"unit\", \"functional\"]",
        )
        .replace("auto = false", "auto = true");
    let app =
        TestApp::spawn_with(|c| c.policies = Policies::parse("auto.toml", &policy).unwrap()).await;
    let sha = on_master(&app, "4.0").await;
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    assert!(
        app.get("root/prod/+simple/demo/", &[]).await.status() == 404,
        "one of two stages is not enough"
    );
    report(&app, &sha, "functional", "r", Outcome::Pass).await;
    let prod = app.json_page("root/prod", "demo").await;
    assert_eq!(prod["files"][0]["hashes"]["sha256"], sha.as_str());
    let record = &app.client().list_promotions(None).await.unwrap()[0];
    assert!(record.promoted_by.starts_with("auto"), "{record:?}");
}

/// `kiln ARGS…` against `app` with the admin token.
pub async fn kiln_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env("KILN_SERVER", &app.base)
        .env("KILN_TOKEN", crate::helpers::ADMIN_TOKEN);
    crate::helpers::run(command).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promote_cli_and_pip_and_uv_installing_from_prod() {
    use crate::clients::{installed_hashes, pip_install, uv_install};
    use crate::helpers::show;
    let app = TestApp::spawn().await;
    let sha = on_master(&app, "5.0").await;
    let refused = kiln_cli(&app, &["promote", "demo", "5.0"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.contains("REFUSED")
            && text.contains("[FAIL] stage `unit` green")
            && text.contains("found no result"),
        "{text}"
    );
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    let dry = kiln_cli(&app, &["promote", "demo", "5.0", "--dry-run"]).await;
    assert!(
        dry.status.success() && String::from_utf8_lossy(&dry.stdout).contains("would promote"),
        "{}",
        show(&dry)
    );
    let done = kiln_cli(&app, &["promote", "demo", "5.0"]).await;
    assert!(
        done.status.success()
            && String::from_utf8_lossy(&done.stdout).contains("promoted demo 5.0"),
        "{}",
        show(&done)
    );
    let again = kiln_cli(&app, &["promote", "demo", "5.0"]).await;
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stdout).contains("already promoted"),
        "{}",
        show(&again)
    );
    let trail = kiln_cli(&app, &["promotions", "list", "--index", "root/prod"]).await;
    assert!(
        String::from_utf8_lossy(&trail.stdout).contains(&format!("sha256:{sha}")),
        "{}",
        show(&trail)
    );

    // pip and uv install the tested bytes from prod.
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let pip = crate::helpers::run(pip_install(
        &app.simple("root/prod"),
        &dir.path().join("pip"),
        &report_file,
        "demo",
    ))
    .await;
    assert!(pip.status.success(), "{}", show(&pip));
    assert_eq!(
        installed_hashes(&report_file),
        [("demo".to_owned(), sha.clone())]
    );
    let prod = app.simple("root/prod");
    let uv = crate::helpers::run(uv_install(
        &[
            "--index-url",
            &prod,
            "--require-hashes",
            "demo==5.0",
            "--no-deps",
        ],
        &dir.path().join("uv"),
    ))
    .await;
    // --require-hashes needs the hash on the command line; check it refuses without, then
    // accepts the right one.
    assert!(!uv.status.success());
    let pinned = dir.path().join("req.txt");
    std::fs::write(&pinned, format!("demo==5.0 --hash=sha256:{sha}\n")).unwrap();
    let uv = crate::helpers::run(uv_install(
        &[
            "--index-url",
            &prod,
            "--require-hashes",
            "-r",
            pinned.to_str().unwrap(),
        ],
        &dir.path().join("uv"),
    ))
    .await;
    assert!(uv.status.success(), "{}", show(&uv));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yanked_releases_are_skipped_unless_pinned_exactly() {
    use crate::clients::{installed_hashes, pip_install};
    use crate::helpers::show;
    let app = TestApp::spawn().await;
    let sha = on_master(&app, "5.0").await;
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    assert!(
        kiln_cli(&app, &["promote", "demo", "5.0"])
            .await
            .status
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let prod = app.simple("root/prod");
    // A yanked release is skipped by resolution; an exact pin still installs it.
    let newer = on_master(&app, "5.1").await;
    report(&app, &newer, "unit", "r", Outcome::Pass).await;
    assert!(
        kiln_cli(&app, &["promote", "demo", "5.1"])
            .await
            .status
            .success()
    );
    let yank = kiln_cli(
        &app,
        &[
            "yank",
            "demo",
            "5.1",
            "--index",
            "root/prod",
            "--reason",
            "breaks py3.9",
        ],
    )
    .await;
    assert!(yank.status.success(), "{}", show(&yank));
    let floating = dir.path().join("floating.json");
    let pip =
        crate::helpers::run(pip_install(&prod, &dir.path().join("f"), &floating, "demo")).await;
    assert!(pip.status.success(), "{}", show(&pip));
    assert_eq!(
        installed_hashes(&floating),
        [("demo".to_owned(), sha.clone())],
        "5.1 is yanked"
    );
    let exact = dir.path().join("exact.json");
    let pip = crate::helpers::run(pip_install(
        &prod,
        &dir.path().join("e"),
        &exact,
        "demo==5.1",
    ))
    .await;
    assert!(pip.status.success(), "{}", show(&pip));
    assert_eq!(installed_hashes(&exact), [("demo".to_owned(), newer)]);
    let events = kiln_cli(&app, &["events", "--index", "root/prod"]).await;
    assert!(
        String::from_utf8_lossy(&events.stdout).contains("yank demo 5.1"),
        "{}",
        show(&events)
    );
}

#[tokio::test]
async fn prod_is_append_only() {
    let app = TestApp::spawn().await;
    let dist = Dist::wheel("demo", "6.0");
    app.build("root/master", "c0ffee1", &[&dist]).await;
    report(&app, &dist.sha256(), "unit", "r", Outcome::Pass).await;
    app.client().promote(&request("6.0")).await.unwrap();
    // No upload, no overwrite: files arrive only by promotion.
    let upload = app.upload("root/prod", &dist).await;
    assert_eq!(upload.status(), 403);
    assert!(
        crate::helpers::detail(upload)
            .await
            .1
            .contains("kiln promote")
    );
    // No delete of a file, nor of the index.
    let file = app.url(&format!(
        "root/prod/+f/{}/{}",
        dist.sha256(),
        "demo-6.0-py3-none-any.whl"
    ));
    let delete = reqwest::Client::new()
        .delete(&file)
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 405);
    let index = app
        .client()
        .delete_index(&"root/prod".parse().unwrap(), false)
        .await;
    assert!(
        matches!(
            index,
            Err(kiln::client::ClientError::Api {
                status: 409 | 403,
                ..
            })
        ),
        "{index:?}"
    );
    assert_eq!(
        app.json_page("root/prod", "demo").await["files"][0]["hashes"]["sha256"],
        dist.sha256().as_str()
    );
}

/// A CI run that reports the same stage again (a re-run of one run id) replaces its
/// earlier result, and the replacement is the newest result of the stage, whichever run
/// reported before it.
#[tokio::test]
async fn a_rerun_replaces_its_own_result_and_becomes_the_latest() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let sha = on_master(&app, "2.0.0").await;
    let dry = || PromoteRequest {
        dry_run: true,
        ..request("2.0.0")
    };
    report(&app, &sha, "unit", "run-1", Outcome::Pass).await;
    report(&app, &sha, "unit", "run-2", Outcome::Fail).await;
    assert_eq!(
        client.promote(&dry()).await.unwrap().result,
        PromotionResult::Refused
    );
    // run-2 is re-run and passes: its red row is replaced, not kept beside the green one.
    report(&app, &sha, "unit", "run-2", Outcome::Pass).await;
    assert_eq!(
        client.promote(&dry()).await.unwrap().result,
        PromotionResult::WouldPromote
    );
    // run-1 reports again, red: the older run's report is now the newest, so it counts.
    report(&app, &sha, "unit", "run-1", Outcome::Fail).await;
    assert_eq!(
        client.promote(&dry()).await.unwrap().result,
        PromotionResult::Refused
    );
    let results = client.show_results(&sha).await.unwrap();
    let runs: Vec<(&str, Outcome)> = results
        .history
        .iter()
        .map(|r| (r.run_id.as_str(), r.outcome))
        .collect();
    assert_eq!(
        runs,
        [("run-2", Outcome::Pass), ("run-1", Outcome::Fail)],
        "one row per run, oldest first"
    );
    assert_eq!(results.latest["unit"].run_id, "run-1");
}
