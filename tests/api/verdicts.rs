//! Verdict integrity, as an attacker and a careless pipeline would test it: verdicts that
//! belong to an index, builds that name their commit, only built bytes promoted, stages
//! that could not run recorded as `error`, red stages that block, untested sdists left
//! behind, production that stays installable and append-only, and events for every
//! change to an index or a token. Real server, real `kiln`, twine and pip.

use serde_json::{Value, json};

use crate::access::{call, mint};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail, python, show};
use crate::hooks::Runner;
use crate::promotions::{report, report_on, request};
use kiln::api::PromotionResult;
use kiln::domain::Outcome;

fn failing(outcome: &kiln::api::PromotionOutcome) -> Vec<(String, String)> {
    outcome
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.rule.clone(), c.found.clone()))
        .collect()
}

/// The dry run of promoting `demo` `version` from master.
async fn dry_run(app: &TestApp, version: &str) -> kiln::api::PromotionOutcome {
    app.client()
        .promote(&kiln::api::PromoteRequest {
            dry_run: true,
            ..request(version)
        })
        .await
        .unwrap()
}

fn auto_policy() -> kiln::policy::Policies {
    let text = kiln::policy::DEFAULT_POLICY.replace("auto = false", "auto = true");
    kiln::policy::Policies::parse("auto.toml", &text).unwrap()
}

/// Events of `kind`, as the admin sees them.
async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let all: Vec<Value> = call(app, "GET", "+api/v1/events", Some(ADMIN_TOKEN), None)
        .await
        .json()
        .await
        .unwrap();
    all.into_iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test]
async fn a_verdict_on_copied_bytes_never_counts_for_the_original_index() {
    let app = TestApp::spawn_with(|c| c.policies = auto_policy()).await;
    // master's wheel, built under a lease and public.
    let wheel = Dist::wheel("demo", "2.0");
    let sha = app.build("root/master", "c0ffee1", &[&wheel]).await;
    // An attacker's CI token, scoped to its own namespace only.
    app.create_index("other/x", &[]).await;
    let attacker = mint(&app, "attacker", &["upload:other/*", "report:other/*"]).await;
    let downloaded = reqwest::get(app.url(&format!("root/master/+f/{sha}/{}", wheel.filename)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(downloaded.as_ref(), wheel.bytes.as_slice());
    let copy = app
        .upload_form("other/x", wheel.form(), Some(&attacker))
        .await;
    assert_eq!(copy.status(), 200, "the same bytes on its own index");
    let pass = |index: &str| json!({"index": index, "sha256": sha, "stage": "unit", "run_id": "forged", "outcome": "pass", "duration_ms": 1});
    let on_own = call(
        &app,
        "POST",
        "+api/v1/results",
        Some(&attacker),
        Some(pass("other/x")),
    )
    .await;
    assert_eq!(on_own.status(), 201, "its own index takes its verdict");
    let (status, message) = detail(
        call(
            &app,
            "POST",
            "+api/v1/results",
            Some(&attacker),
            Some(pass("root/master")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("lacks `report` on `root/master`"),
        "{message}"
    );

    // master's release is not green, and auto promotion did nothing.
    let dry = dry_run(&app, "2.0").await;
    assert_eq!(dry.result, PromotionResult::Refused);
    assert_eq!(
        failing(&dry),
        [(
            "stage `unit` green for `demo-2.0-py3-none-any.whl`".to_owned(),
            "no result".to_owned()
        )],
        "the dry run names the missing verdict"
    );
    let prod = call(&app, "GET", "root/prod/+simple/demo/", None, None).await;
    assert_eq!(prod.status(), 404, "nothing reached production");

    // A report for bytes an index does not list is a 404.
    app.create_index("root/empty", &[]).await;
    let (status, message) = detail(
        call(
            &app,
            "POST",
            "+api/v1/results",
            Some(ADMIN_TOKEN),
            Some(pass("root/empty")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("does not list artifact"), "{message}");

    // The real verdict, for master, promotes.
    report(&app, &sha, "unit", "real", Outcome::Pass).await;
    let prod = app.json_page("root/prod", "demo").await;
    assert_eq!(prod["files"][0]["hashes"]["sha256"], sha.as_str());
}

#[tokio::test]
async fn hand_uploaded_bytes_never_reach_production_automatically() {
    let app = TestApp::spawn_with(|c| c.policies = auto_policy()).await;
    // What the README recommends a CI token holds.
    let ci = mint(&app, "ci", &["upload:root/*", "report:root/*"]).await;
    let dir = tempfile::tempdir().unwrap();
    let wheel = Dist::wheel("demo", "2.3.99");
    let path = wheel.write_to(dir.path());
    let twine = crate::helpers::run({
        let mut twine = python().command("twine");
        twine
            .args(["upload", "--non-interactive", "--disable-progress-bar"])
            .arg("--repository-url")
            .arg(app.url("root/master/"))
            .args(["-u", "__token__", "-p", &ci])
            .arg(&path);
        twine
    })
    .await;
    assert!(twine.status.success(), "{}", show(&twine));
    for stage in ["unit", "static", "system", "functional"] {
        let body = json!({"index": "root/master", "sha256": wheel.sha256(), "stage": stage, "run_id": "r", "outcome": "pass", "artifact": "verified", "duration_ms": 1});
        let reported = call(&app, "POST", "+api/v1/results", Some(&ci), Some(body)).await;
        assert_eq!(reported.status(), 201);
    }
    let prod = call(&app, "GET", "root/prod/+simple/demo/", None, None).await;
    assert_eq!(
        prod.status(),
        404,
        "auto promotion never takes a hand upload"
    );
    let dry = dry_run(&app, "2.3.99").await;
    let refusal = failing(&dry);
    assert_eq!(refusal.len(), 1, "{refusal:?}");
    assert_eq!(
        refusal[0].0,
        "`demo-2.3.99-py3-none-any.whl` built under a lease"
    );
    assert!(
        refusal[0].1.contains("without a build lease"),
        "{refusal:?}"
    );
    // A hand upload cannot join a built release either.
    let built = Dist::wheel("lib", "1.0");
    app.build("root/master", "c0ffee1", &[&built]).await;
    let extra = Dist::raw(
        "lib",
        "1.0",
        "lib-1.0-py2-none-any.whl",
        Dist::wheel("lib", "1.0").bytes,
    );
    let (status, message) = detail(app.upload("root/master", &extra).await).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("comes from a build lease"), "{message}");
}

#[tokio::test]
async fn a_build_number_names_one_commit() {
    let app = TestApp::spawn().await;
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let args = [
        "ensure",
        "--branch",
        "feature/x",
        "--build-number",
        "7",
        "--build-cmd",
        build,
    ];
    let first = Runner::new();
    let built_from = first.git(&["rev-parse", "HEAD"]);
    let output = first.kiln(&app, &args).output().await.unwrap();
    assert!(output.status.success(), "{}", show(&output));

    // The build records its commit, and the JSON API shows it.
    let status = app
        .client()
        .show_release(
            &"root/feature-x".parse().unwrap(),
            "kiln-sample",
            "1.4.7.dev0+feature.x",
        )
        .await
        .unwrap();
    let provenance = status.files[0].file.provenance.clone().expect("provenance");
    assert_eq!(provenance.commit.as_str(), built_from);
    assert_eq!(provenance.ci.as_deref(), Some("local"));
    assert!(provenance.platform.is_some() && provenance.python.is_some());
    let shown = crate::promotions::kiln_cli(
        &app,
        &[
            "status",
            "kiln-sample",
            "1.4.7.dev0+feature.x",
            "--index",
            "root/feature-x",
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&format!("built from commit {built_from} (local")),
        "kiln status shows the provenance: {text}"
    );
    // Another runner on the same commit reuses the build.
    let again = Runner::new().kiln(&app, &args).output().await.unwrap();
    assert!(again.status.success(), "{}", show(&again));

    // Edited code under the same build number: refused, naming both commits.
    let edited = Runner::new();
    std::fs::write(edited.path().join("CHANGES.txt"), "a change\n").unwrap();
    let changed = edited.commit();
    assert_ne!(changed, built_from);
    let refused = edited.kiln(&app, &args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{}", show(&refused));
    assert!(
        stderr.contains(&built_from) && stderr.contains(&changed),
        "both commits named: {stderr}"
    );
    assert!(stderr.contains("new build number"), "the way out: {stderr}");
    // Uncommitted edits to tracked files are another source too.
    let dirty = Runner::new();
    std::fs::write(dirty.path().join("tox.ini"), "[tox]\n").unwrap();
    let refused = dirty.kiln(&app, &args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{}", show(&refused));
    assert!(stderr.contains("+dirty."), "{stderr}");
}

/// `kiln stage unit` with `command` on master, build 5, as `runner`.
async fn stage(
    app: &TestApp,
    runner: &Runner,
    extra: &[&str],
    command: &[&str],
) -> std::process::Output {
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let mut args = vec![
        "stage",
        "unit",
        "--branch",
        "main",
        "--build-number",
        "5",
        "--build-cmd",
        build,
    ];
    args.extend(extra);
    args.push("--");
    args.extend(command);
    runner.kiln(app, &args).output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_that_could_not_run_are_errors_with_their_cause() {
    let app = TestApp::spawn().await;
    let runner = Runner::new();
    let cases: [(&[&str], &[&str], &str); 7] = [
        (
            &[],
            &["no-such-command-here"],
            "command `no-such-command-here` not found",
        ),
        (&[], &["sh", "-c", "no-such-command-here"], "exit 127"),
        (&[], &["tox", "-e", "unti"], "tox environment not found"),
        (
            &[],
            &["tox", "-e", "py27"],
            "could not find the Python interpreter",
        ),
        (&[], &["sh", "-c", "kill -9 $$"], "killed by signal 9"),
        (&["--timeout", "1s"], &["sleep", "30"], "timed out after 1s"),
        (
            &[],
            &["python", "-c", "print('boom'); import sys; sys.exit(3)"],
            "",
        ),
    ];
    for (extra, command, cause) in cases {
        let output = stage(&app, &runner, extra, command).await;
        assert!(!output.status.success(), "{command:?}: {}", show(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let results = app
            .client()
            .show_release(&"root/master".parse().unwrap(), "kiln-sample", "1.4.5")
            .await
            .unwrap();
        let unit = &results.files[0].stages["unit"];
        assert!(
            stderr.contains("to reproduce `unit` locally") && stderr.contains("kiln-sample==1.4.5"),
            "a red stage says how to re-run it: {stderr}"
        );
        if cause.is_empty() {
            assert_eq!(unit.outcome, Outcome::Fail, "a test failure stays a fail");
            assert_eq!(unit.cause, None);
            assert_eq!(output.status.code(), Some(3));
        } else {
            assert_eq!(unit.outcome, Outcome::Error, "{command:?}: {unit:?}");
            let recorded = unit.cause.clone().unwrap_or_default();
            assert!(recorded.contains(cause), "{command:?}: {recorded}");
            assert!(
                stderr.contains("could not run") && stderr.contains("not as a test failure"),
                "the CLI says what kind of problem it is: {stderr}"
            );
        }
    }
    // `kiln status` shows the red stage with its cause and log tail, and exits 1; an
    // unknown release exits 1 too.
    let status = crate::promotions::kiln_cli(&app, &["status", "kiln-sample", "1.4.5"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(
        text.contains("fail") && text.contains("      | boom"),
        "{text}"
    );
    let unknown = crate::promotions::kiln_cli(&app, &["status", "kiln-sample", "9.9"]).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", show(&unknown));
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("is not on `root/master`"));
    // An error blocks promotion and says why.
    let dry = app
        .client()
        .promote(&kiln::api::PromoteRequest {
            project: "kiln-sample".into(),
            dry_run: true,
            ..request("1.4.5")
        })
        .await
        .unwrap();
    assert_eq!(dry.result, PromotionResult::Refused);
}

#[tokio::test]
async fn results_after_promotion_are_kept_and_change_nothing() {
    let app = TestApp::spawn().await;
    let sha = crate::promotions::on_master(&app, "3.0").await;
    report(&app, &sha, "unit", "r1", Outcome::Pass).await;
    let done = app.client().promote(&request("3.0")).await.unwrap();
    assert_eq!(done.result, PromotionResult::Promoted);
    report_on(&app, "root/master", &sha, "unit", "r2", Outcome::Error).await;
    let history = app.client().show_results(&sha).await.unwrap();
    let late = history.history.last().unwrap();
    assert!(late.after_promotion, "{late:?}");
    assert_eq!(late.outcome, Outcome::Error);
    let prod = app.json_page("root/prod", "demo").await;
    assert_eq!(prod["files"][0]["hashes"]["sha256"], sha.as_str());
    let again = app.client().promote(&request("3.0")).await.unwrap();
    assert_eq!(again.result, PromotionResult::AlreadyPromoted);
}

#[tokio::test]
async fn a_red_stage_blocks_even_when_the_policy_does_not_require_it() {
    let app = TestApp::spawn().await;
    let sha = crate::promotions::on_master(&app, "4.0").await;
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    report(&app, &sha, "static", "r", Outcome::Fail).await;
    let refused = app.client().promote(&request("4.0")).await.unwrap();
    assert_eq!(refused.result, PromotionResult::Refused);
    let failed = failing(&refused);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0].0,
        "stage `static` (reported, not required) green for `demo-4.0-py3-none-any.whl`"
    );
    // Green again once the stage passes on a re-run.
    report(&app, &sha, "static", "r2", Outcome::Pass).await;
    let dry = dry_run(&app, "4.0").await;
    assert_eq!(dry.result, PromotionResult::WouldPromote);
    assert!(
        dry.checks.iter().any(|c| c.rule.contains("`static`")),
        "the dry run lists every stage that reported: {:?}",
        dry.checks
    );
}

#[tokio::test]
async fn an_untested_sdist_is_left_behind() {
    let app = TestApp::spawn().await;
    let wheel = Dist::wheel("demo", "5.0");
    let sdist = Dist::sdist("demo", "5.0");
    let sha = app.build("root/master", "c0ffee1", &[&wheel, &sdist]).await;
    report(&app, &sha, "unit", "r", Outcome::Pass).await;
    let done = app.client().promote(&request("5.0")).await.unwrap();
    assert_eq!(done.result, PromotionResult::Promoted, "{:?}", done.checks);
    assert!(
        done.checks
            .iter()
            .any(|c| c.rule == "sdist `demo-5.0.tar.gz` left behind"),
        "{:?}",
        done.checks
    );
    let prod = app.json_page("root/prod", "demo").await;
    let files: Vec<&str> = prod["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["demo-5.0-py3-none-any.whl"]);
    // The provenance travelled with the bytes.
    let record = done.promotion.unwrap();
    assert_eq!(record.files[0]["provenance"]["commit"], "c0ffee1");
}

#[tokio::test]
async fn production_stays_installable_and_dependencies_promote_together() {
    let app = TestApp::spawn().await;
    let util = Dist::wheel("acme-util", "1.0");
    let util_sha = app.build("root/master", "c0ffee1", &[&util]).await;
    let billing = Dist::wheel_with(
        "acme-billing",
        "2.0",
        &[
            "Requires-Dist: acme-util>=1.0",
            "Requires-Dist: pytest; extra == \"test\"",
        ],
        "",
    );
    let billing_sha = app.build("root/master", "c0ffee1", &[&billing]).await;
    report(&app, &util_sha, "unit", "r", Outcome::Pass).await;
    report(&app, &billing_sha, "unit", "r", Outcome::Pass).await;

    // Alone, the application would leave production uninstallable.
    let alone = crate::promotions::kiln_cli(&app, &["promote", "acme-billing==2.0"]).await;
    assert_eq!(alone.status.code(), Some(1), "{}", show(&alone));
    let said = String::from_utf8_lossy(&alone.stdout);
    assert!(
        said.contains("[FAIL] `acme_billing-2.0-py3-none-any.whl` requirement `acme-util>=1.0` installable from `root/prod`"),
        "{said}"
    );
    assert!(
        said.contains("`acme-util` is not on `root/prod`'s chain"),
        "{said}"
    );
    assert!(
        !said.contains("pytest"),
        "extras are not needed to install: {said}"
    );

    // Together, both go in one transaction.
    let both =
        crate::promotions::kiln_cli(&app, &["promote", "acme-util==1.0", "acme-billing==2.0"])
            .await;
    assert!(both.status.success(), "{}", show(&both));
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let pip = crate::helpers::run(crate::clients::pip_install(
        &app.simple("root/prod"),
        &dir.path().join("site"),
        &report_file,
        "acme-billing",
    ))
    .await;
    assert!(
        pip.status.success(),
        "pip installs from prod: {}",
        show(&pip)
    );
    let mut installed = crate::clients::installed_hashes(&report_file);
    installed.sort();
    assert_eq!(
        installed,
        [
            ("acme-billing".to_owned(), billing_sha),
            ("acme-util".to_owned(), util_sha)
        ]
    );
}

#[tokio::test]
async fn production_is_append_only_and_every_change_is_an_event() {
    let app = TestApp::spawn().await;
    let root_admin = mint(&app, "root-admin", &["admin:root/*"]).await;
    let patch = |force: bool| json!({"promotion_only": false, "force": force});
    let (status, message) = detail(
        call(
            &app,
            "PATCH",
            "+api/v1/indexes/root/prod",
            Some(&root_admin),
            Some(patch(true)),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("needs `admin` on `*`"), "{message}");
    let (status, message) = detail(
        call(
            &app,
            "DELETE",
            "+api/v1/indexes/root/prod?force=true",
            Some(&root_admin),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{message}");
    let (status, message) = detail(
        call(
            &app,
            "PATCH",
            "+api/v1/indexes/root/prod",
            Some(ADMIN_TOKEN),
            Some(patch(false)),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("--force"), "{message}");
    // The root admin may change other settings, and that is recorded too.
    let described = call(
        &app,
        "PATCH",
        "+api/v1/indexes/root/prod",
        Some(&root_admin),
        Some(json!({"description": "production"})),
    )
    .await;
    assert_eq!(described.status(), 200);
    let changed = events_of(&app, "index-changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    let actor = changed[0]["actor"].as_str().unwrap();
    assert!(actor.starts_with("root-admin#"), "{actor}");
    assert_eq!(changed[0]["index"], "root/prod");
    assert_eq!(changed[0]["detail"]["after"]["description"], "production");
    assert_eq!(changed[0]["detail"]["before"]["promotion_only"], true);

    // The server admin, with --force, through the CLI.
    let cleared = crate::promotions::kiln_cli(
        &app,
        &[
            "index",
            "modify",
            "root/prod",
            "--promotion-only",
            "false",
            "--force",
        ],
    )
    .await;
    assert!(cleared.status.success(), "{}", show(&cleared));
    app.create_index("root/scratch", &[]).await;
    let deleted = crate::promotions::kiln_cli(&app, &["index", "delete", "root/scratch"]).await;
    assert!(deleted.status.success(), "{}", show(&deleted));
    let forced = events_of(&app, "index-changed").await;
    assert_eq!(forced.len(), 2);
    assert_eq!(forced[1]["detail"]["forced"], true);
    assert_eq!(forced[1]["detail"]["after"]["promotion_only"], false);
    assert_eq!(events_of(&app, "index-created").await.len(), 1);
    let gone = events_of(&app, "index-deleted").await;
    assert_eq!(gone[0]["index"], "root/scratch");

    // Tokens: created and revoked, never with the secret, shown to who administers them.
    let ci = app
        .client()
        .create_token(&kiln::api::TokenRequest {
            name: "ci".into(),
            scopes: vec!["upload:root/*".parse().unwrap()],
            expires_at: None,
        })
        .await
        .unwrap();
    app.client().revoke_token(ci.token.id).await.unwrap();
    let created = events_of(&app, "token-created").await;
    let revoked = events_of(&app, "token-revoked").await;
    assert!(
        created.iter().any(|e| e["detail"]["name"] == "ci"),
        "{created:?}"
    );
    assert_eq!(revoked.len(), 1);
    assert!(
        !serde_json::to_string(&created)
            .unwrap()
            .contains(&ci.secret)
    );
    let log = crate::promotions::kiln_cli(&app, &["events"]).await;
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        text.contains("token-revoked") && text.contains("index-deleted on root/scratch"),
        "{text}"
    );
    // An anonymous reader sees none of the token events.
    let public: Vec<Value> = call(&app, "GET", "+api/v1/events", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(public.iter().all(|e| e["index"].is_string()), "{public:?}");
}

/// The artifact check of the latest `name` result of kiln-sample `version` on `index`.
async fn artifact_of(
    app: &TestApp,
    index: &str,
    version: &str,
    name: &str,
) -> kiln::api::ResultView {
    let status = app
        .client()
        .show_release(&index.parse().unwrap(), "kiln-sample", version)
        .await
        .unwrap();
    status.files[0].stages[name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_tests_the_wheel_whatever_the_command_and_proves_it() {
    let app = TestApp::spawn().await;
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let main = [
        "--branch",
        "main",
        "--build-number",
        "8",
        "--build-cmd",
        build,
    ];
    let runner = Runner::new();
    // Plain commands, a shell and `uv run` all run in the stage environment, with the wheel.
    let commands: [(&str, &[&str]); 3] = [
        ("unit", &["python", "-m", "unittest", "tests.test_unit"]),
        (
            "shell",
            &["bash", "-c", "python -m unittest tests.test_unit"],
        ),
        (
            "uv",
            &["uv", "run", "python", "-m", "unittest", "tests.test_unit"],
        ),
    ];
    for (stage, command) in commands {
        let args = [&["stage", stage][..], &main, &["--"], command].concat();
        let output = runner.kiln(&app, &args).output().await.unwrap();
        assert!(output.status.success(), "{stage}: {}", show(&output));
        let result = artifact_of(&app, "root/master", "1.4.8", stage).await;
        assert_eq!(result.outcome, Outcome::Pass, "{stage}");
        assert_eq!(
            result.artifact,
            Some(kiln::domain::ArtifactCheck::Verified),
            "{stage}: {}",
            show(&output)
        );
    }
    // tox is probed in its own environment.
    let tox = runner
        .kiln(
            &app,
            &[
                &["stage", "functional"][..],
                &main,
                &["--", "tox", "-e", "functional"],
            ]
            .concat(),
        )
        .output()
        .await
        .unwrap();
    assert!(tox.status.success(), "{}", show(&tox));
    assert_eq!(
        artifact_of(&app, "root/master", "1.4.8", "functional")
            .await
            .artifact,
        Some(kiln::domain::ArtifactCheck::Verified),
        "{}",
        show(&tox)
    );

    // The src-layout release is green.
    let green = sample_dry_run(&app, "1.4.8").await;
    assert_eq!(
        green.result,
        PromotionResult::WouldPromote,
        "{:?}",
        green.checks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_layout_run_from_the_checkout_is_unverified_and_does_not_count() {
    let app = TestApp::spawn().await;
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    // A flat layout run from the checkout imports the source tree, not the wheel.
    let flat = Runner::new();
    std::fs::rename(
        flat.path().join("src/kiln_sample"),
        flat.path().join("kiln_sample"),
    )
    .unwrap();
    flat.commit();
    let flat_main = [
        "--branch",
        "main",
        "--build-number",
        "9",
        "--build-cmd",
        build,
    ];
    let output = flat
        .kiln(
            &app,
            &[
                &["stage", "unit"][..],
                &flat_main,
                &["--", "python", "-m", "unittest", "tests.test_unit"],
            ]
            .concat(),
        )
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "the tests pass: {}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("UNVERIFIED") && stderr.contains("shadows"),
        "{stderr}"
    );
    let result = artifact_of(&app, "root/master", "1.4.9", "unit").await;
    let Some(kiln::domain::ArtifactCheck::Unverified(reason)) = &result.artifact else {
        panic!("{result:?}")
    };
    assert!(
        reason.contains("kiln_sample/__init__.py") && reason.contains("src layout"),
        "{reason}"
    );
    // ...and that pass does not count for promotion.
    let dry = sample_dry_run(&app, "1.4.9").await;
    let failed = failing(&dry);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].1.starts_with("pass, but unverified:"),
        "{failed:?}"
    );
}

/// The dry run of promoting kiln-sample `version` from master.
async fn sample_dry_run(app: &TestApp, version: &str) -> kiln::api::PromotionOutcome {
    app.client()
        .promote(&kiln::api::PromoteRequest {
            project: "kiln-sample".into(),
            dry_run: true,
            ..request(version)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_closed_pipe_ends_the_cli_quietly() {
    let app = TestApp::spawn().await;
    app.create_index("root/one", &[]).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["index", "list"])
        .env("KILN_SERVER", &app.base)
        .env("KILN_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the CLI has its answer to print (`kiln … | head -0`).
    drop(child.stdout.take());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(output.status.code(), Some(141 | 0)),
        "{:?} {stderr}",
        output.status
    );
}
