//! Retention rules and branch clean-up, on both backends: what `[[retention]]` removes
//! (idle branch indexes, old releases), what it never touches (production, a promoted
//! release, an inherited base, a branch with a build running), `kiln branch gone` and
//! `kiln gc --branches`, and that everything removed comes back with `kiln trash restore`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::access::{call, mint};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, kiln_cli, show};
use crate::trash::gc;

/// `kiln ARGS…` against `app` with `token`.
async fn kiln(app: &TestApp, token: &str, args: &[&str]) -> std::process::Output {
    kiln_cli(&app.base, token, args).await
}

/// Creates a branch index as `kiln ensure` does (volatile, recording its branch).
async fn branch_index(app: &TestApp, name: &str, branch: &str) {
    let created = call(
        app,
        "POST",
        "+api/v1/indexes",
        Some(ADMIN_TOKEN),
        Some(json!({"name": name, "bases": ["root/master"], "volatile": true, "branch": branch})),
    )
    .await;
    assert_eq!(created.status(), 201, "creating {name}");
}

/// `index` or `index project==version` for each retention removal of a report.
fn removals(report: &Value) -> Vec<String> {
    let mut found: Vec<String> = report["retention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match (r["project"].as_str(), r["version"].as_str()) {
            (Some(p), Some(v)) => format!("{} {p}=={v}", r["index"].as_str().unwrap()),
            _ => r["index"].as_str().unwrap().to_owned(),
        })
        .collect();
    found.sort();
    found
}

async fn status_of(app: &TestApp, path: &str) -> u16 {
    app.get(path, &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))])
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn retention_removes_idle_branches_and_old_releases_and_never_what_it_must_keep() {
    let policy = format!(
        "{}\n[[retention]]\nname = \"idle-branches\"\nindexes = \"acme/*\"\nbranch-idle-for = \"300ms\"\n\n[[retention]]\nname = \"master-history\"\nindexes = \"*\"\nkeep-newest = 2\n",
        kiln::policy::DEFAULT_POLICY
    );
    let app = TestApp::spawn_with(|c| {
        c.policies = kiln::policy::Policies::parse("retention.toml", &policy).unwrap();
        c.gc.interval = None;
    })
    .await;
    // root/master: 1.0 promoted, then 1.1, 1.2, 1.3; keep-newest 2 keeps 1.3 and 1.2,
    // and 1.0 stays because it was promoted.
    let mut shas = Vec::new();
    for (n, version) in ["1.0", "1.1", "1.2", "1.3"].iter().enumerate() {
        let wheel = Dist::wheel("acme-lib", version);
        shas.push(
            app.build("root/master", &format!("abcdef{n}"), &[&wheel])
                .await,
        );
    }
    let reported = call(
        &app,
        "POST",
        "+api/v1/results",
        Some(ADMIN_TOKEN),
        Some(json!({"index": "root/master", "sha256": shas[0], "stage": "unit", "run_id": "r", "outcome": "pass", "artifact": "verified", "duration_ms": 1})),
    )
    .await;
    assert_eq!(reported.status(), 201);
    let promoted = kiln(&app, ADMIN_TOKEN, &["promote", "acme-lib==1.0"]).await;
    assert!(promoted.status.success(), "{}", show(&promoted));

    branch_index(&app, "acme/feat-idle", "feat/idle").await;
    branch_index(&app, "acme/feat-busy", "feat/busy").await;
    branch_index(&app, "acme/feat-base", "feat/base").await;
    app.create_index("acme/child", &["acme/feat-base"]).await;
    // A build that is running keeps its branch index.
    let claim = kiln::api::ClaimBuild {
        builder: "slow runner".into(),
        retry: false,
        provenance: crate::helpers::provenance("abcdef9"),
        target: None,
    };
    app.client()
        .claim_build(&"acme/feat-busy".parse().unwrap(), "busy", "1.0", &claim)
        .await
        .unwrap();

    // Wait (on the plan itself) until the idle branch has been idle long enough.
    let deadline = Instant::now() + Duration::from_secs(30);
    let plan = loop {
        let plan = gc(&app, true).await;
        if removals(&plan).contains(&"acme/feat-idle".to_owned()) || Instant::now() > deadline {
            break plan;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected = vec![
        "acme/feat-idle".to_owned(),
        "root/master acme-lib==1.1".to_owned(),
    ];
    assert_eq!(
        removals(&plan),
        expected,
        "only the idle branch and the old unpromoted release; never production, the promoted 1.0, the inherited base, the busy branch: {plan}"
    );
    assert_eq!(
        status_of(&app, "acme/feat-idle/+simple/").await,
        200,
        "a dry run removes nothing"
    );

    let done = gc(&app, false).await;
    assert_eq!(removals(&done), expected, "{done}");
    assert_eq!(status_of(&app, "acme/feat-idle/+simple/").await, 404);
    let master: Value = app.json_page("root/master", "acme-lib").await;
    let mut versions: Vec<&str> = master["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, ["1.0", "1.2", "1.3"], "{master}");
    for kept in [
        "acme/feat-busy",
        "acme/feat-base",
        "acme/child",
        "root/prod",
    ] {
        assert_eq!(
            status_of(&app, &format!("{kept}/+simple/")).await,
            200,
            "{kept} stays"
        );
    }
    let events: Vec<Value> = call(&app, "GET", "+api/v1/events", Some(ADMIN_TOKEN), None)
        .await
        .json()
        .await
        .unwrap();
    let actors: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "removed")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [
            "kiln retention (idle-branches)",
            "kiln retention (master-history)"
        ],
        "each removal is an event naming its rule"
    );

    // Everything retention removed comes back.
    let trash: Vec<Value> = call(&app, "GET", "+api/v1/trash", Some(ADMIN_TOKEN), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(trash.len(), 2, "{trash:?}");
    for entry in &trash {
        let id = entry["id"].to_string();
        let restored = kiln(&app, ADMIN_TOKEN, &["trash", "restore", &id]).await;
        assert!(restored.status.success(), "{}", show(&restored));
    }
    assert_eq!(status_of(&app, "acme/feat-idle/+simple/").await, 200);
    let master: Value = app.json_page("root/master", "acme-lib").await;
    assert_eq!(master["versions"].as_array().unwrap().len(), 4, "{master}");
}

#[tokio::test]
async fn branch_indexes_of_gone_branches_go_into_the_trash() {
    let app = TestApp::spawn().await;
    branch_index(&app, "acme/feature-a", "feature/a").await;
    branch_index(&app, "acme/feature-b", "feature/b").await;
    branch_index(&app, "acme/main", "main").await;
    branch_index(&app, "other/feature-a", "feature/a").await;
    let wheel = Dist::wheel("branchy", "1.0.dev1");
    app.build("acme/feature-a", "abcdef1", &[&wheel]).await;

    let reader = mint(&app, "reader", &["read:acme/*"]).await;
    let refused = kiln(
        &app,
        &reader,
        &["branch", "gone", "feature/a", "--namespace", "acme"],
    )
    .await;
    assert!(refused.status.success(), "{}", show(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("needs `upload`"),
        "a reader's request keeps the index and says why: {}",
        show(&refused)
    );
    assert_eq!(status_of(&app, "acme/feature-a/+simple/").await, 200);

    let gone = kiln(
        &app,
        ADMIN_TOKEN,
        &["branch", "gone", "feature/a", "--namespace", "acme"],
    )
    .await;
    assert!(gone.status.success(), "{}", show(&gone));
    assert!(
        String::from_utf8_lossy(&gone.stdout).contains("moved acme/feature-a"),
        "{}",
        show(&gone)
    );
    assert_eq!(status_of(&app, "acme/feature-a/+simple/").await, 404);
    assert_eq!(
        status_of(&app, "other/feature-a/+simple/").await,
        200,
        "another namespace's branch of the same name stays"
    );

    // `git ls-remote --heads` output: only main exists now.
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("heads.txt");
    std::fs::write(&heads, "3f2a9c1e\trefs/heads/main\n").unwrap();
    let heads = heads.to_str().unwrap();
    let dry = kiln(
        &app,
        ADMIN_TOKEN,
        &[
            "gc",
            "--branches",
            heads,
            "--namespace",
            "acme",
            "--dry-run",
        ],
    )
    .await;
    assert!(dry.status.success(), "{}", show(&dry));
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        said.contains("would move acme/feature-b") && !said.contains("acme/main"),
        "{said}"
    );
    assert_eq!(status_of(&app, "acme/feature-b/+simple/").await, 200);
    let kept = kiln(
        &app,
        ADMIN_TOKEN,
        &["gc", "--branches", heads, "--namespace", "acme"],
    )
    .await;
    assert!(kept.status.success(), "{}", show(&kept));
    assert_eq!(status_of(&app, "acme/feature-b/+simple/").await, 404);
    assert_eq!(status_of(&app, "acme/main/+simple/").await, 200);

    // The branch comes back: a new index takes the name, and the trashed one is released.
    branch_index(&app, "acme/feature-a", "feature/a").await;
    assert_eq!(
        status_of(&app, "acme/feature-a/+simple/branchy/").await,
        404,
        "the new index starts empty"
    );
    let listed = kiln(&app, ADMIN_TOKEN, &["trash", "list"]).await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("index acme/feature-b") && !listed.contains("index acme/feature-a"),
        "only feature-b is still in the trash: {listed}"
    );
}
