//! Removal through the trash, restore, and garbage collection of bytes, on both backends:
//! `kiln remove`, `kiln trash list|restore` and `kiln gc` as users run them, pip as the
//! installer, and the store itself checked for what is left.

use std::time::Duration;

use kiln::domain::Sha256Digest;
use serde_json::{Value, json};

use crate::access::{call, mint};
use crate::clients::{installed_hashes, pip_install};
use crate::faults::store_of;
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, detail, kiln_cli, run, show};
use crate::mirrors::incompressible;

/// `kiln ARGS…` against `app` with `token`.
async fn kiln(app: &TestApp, token: &str, args: &[&str]) -> std::process::Output {
    kiln_cli(&app.base, token, args).await
}

/// The filenames the index's JSON page lists for `project`.
async fn listed(app: &TestApp, index: &str, project: &str) -> Vec<String> {
    let page = app
        .get(
            &format!("{index}/+simple/{project}/"),
            &[("Accept", "application/vnd.pypi.simple.v1+json")],
        )
        .await;
    if page.status() == 404 {
        return Vec::new();
    }
    let page: Value = page.json().await.unwrap();
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event's kind on `index`, oldest first.
async fn event_kinds(app: &TestApp, index: &str) -> Vec<String> {
    let events: Vec<Value> = call(
        app,
        "GET",
        &format!("+api/v1/events?index={index}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_removed_release_is_hidden_at_once_and_a_restore_brings_back_the_same_bytes() {
    let app = TestApp::spawn().await;
    app.create_index("acme/feature-x", &["root/master"]).await;
    let old = Dist::wheel("acme-lib", "1.0");
    let sdist = Dist::sdist("acme-lib", "1.0");
    let new = Dist::wheel("acme-lib", "1.1");
    app.build("acme/feature-x", "abcdef1", &[&old, &sdist])
        .await;
    app.build("acme/feature-x", "abcdef2", &[&new]).await;

    let removed = kiln(
        &app,
        ADMIN_TOKEN,
        &[
            "remove",
            "acme-lib==1.0",
            "--index",
            "acme/feature-x",
            "--reason",
            "built from a bad lock file",
        ],
    )
    .await;
    assert!(removed.status.success(), "kiln remove: {}", show(&removed));
    let said = String::from_utf8_lossy(&removed.stdout).into_owned();
    assert!(
        said.contains(&old.filename) && said.contains("kiln trash restore"),
        "kiln remove says what went and how to restore it: {said}"
    );
    assert_eq!(
        listed(&app, "acme/feature-x", "acme-lib").await,
        vec![new.filename.clone()],
        "the page lists only the release that stayed"
    );
    let download = app
        .get(
            &format!("acme/feature-x/+f/{}/{}", old.sha256(), old.filename),
            &[],
        )
        .await;
    assert_eq!(
        download.status(),
        404,
        "a removed file is not served from the index"
    );

    // The filename is held by the trash: no other bytes may take it meanwhile.
    let reupload = app.upload("acme/feature-x", &old).await;
    let (status, reason) = detail(reupload).await;
    assert_eq!(status, 409, "{reason}");
    assert!(reason.contains("trash"), "the refusal says why: {reason}");

    let listing = kiln(
        &app,
        ADMIN_TOKEN,
        &["trash", "list", "--index", "acme/feature-x"],
    )
    .await;
    assert!(listing.status.success(), "{}", show(&listing));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("acme-lib==1") && listing.contains("built from a bad lock file"),
        "the trash lists the release and why: {listing}"
    );
    let entries: Vec<Value> = call(
        &app,
        "GET",
        "+api/v1/trash?index=acme/feature-x",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["files"].as_array().unwrap().len(), 2);
    assert_eq!(
        entries[0]["bytes"].as_u64().unwrap(),
        (old.bytes.len() + sdist.bytes.len()) as u64
    );
    let id = entries[0]["id"].as_i64().unwrap().to_string();

    // Someone who may only read the index can see the trash but not restore from it.
    let reader = mint(&app, "reader", &["read:acme/*"]).await;
    let refused = kiln(&app, &reader, &["trash", "restore", &id]).await;
    assert!(!refused.status.success(), "a reader cannot restore");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("upload"),
        "the refusal names the permission: {}",
        show(&refused)
    );

    let restored = kiln(&app, ADMIN_TOKEN, &["trash", "restore", &id]).await;
    assert!(restored.status.success(), "{}", show(&restored));
    let mut files = listed(&app, "acme/feature-x", "acme-lib").await;
    files.sort();
    let mut expected = vec![
        old.filename.clone(),
        sdist.filename.clone(),
        new.filename.clone(),
    ];
    expected.sort();
    assert_eq!(files, expected, "the restore brings back both files");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let pip = run(pip_install(
        &app.simple("acme/feature-x"),
        &dir.path().join("site"),
        &report,
        "acme-lib==1.0",
    ))
    .await;
    assert!(pip.status.success(), "pip install: {}", show(&pip));
    assert_eq!(
        installed_hashes(&report),
        vec![("acme-lib".to_owned(), old.sha256())],
        "pip installs the very bytes that were removed"
    );
    let kinds = event_kinds(&app, "acme/feature-x").await;
    assert!(
        kinds.contains(&"removed".to_owned()) && kinds.contains(&"restored".to_owned()),
        "removal and restore are events: {kinds:?}"
    );
    let empty = call(&app, "GET", "+api/v1/trash", Some(ADMIN_TOKEN), None)
        .await
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert!(empty.is_empty(), "a restored entry leaves the trash");

    // One file of a release.
    let one = kiln(
        &app,
        ADMIN_TOKEN,
        &[
            "remove",
            "acme-lib==1.0",
            "--file",
            &sdist.filename,
            "--index",
            "acme/feature-x",
        ],
    )
    .await;
    assert!(one.status.success(), "{}", show(&one));
    let files = listed(&app, "acme/feature-x", "acme-lib").await;
    assert!(
        files.contains(&old.filename) && !files.contains(&sdist.filename),
        "only the named file went: {files:?}"
    );
}

#[tokio::test]
async fn removal_is_refused_on_production_without_upload_and_for_what_is_not_there() {
    let app = TestApp::spawn().await;
    let dist = Dist::wheel("prod-lib", "1.0");
    assert_eq!(app.upload("root/master", &dist).await.status(), 200);
    let remove = |index: &'static str, version: &'static str, token: String| {
        let app = &app;
        async move {
            detail(
                call(
                    app,
                    "POST",
                    &format!("+api/v1/releases/{index}/prod-lib/{version}/remove"),
                    Some(&token),
                    Some(json!({"reason": "testing refusals"})),
                )
                .await,
            )
            .await
        }
    };
    let (status, reason) = remove("root/prod", "1.0", ADMIN_TOKEN.to_owned()).await;
    assert_eq!(status, 409, "{reason}");
    assert!(
        reason.contains("promotion-only") && reason.contains("yank"),
        "production refuses and says what to do instead: {reason}"
    );
    let (status, reason) = remove("root/master", "2.0", ADMIN_TOKEN.to_owned()).await;
    assert_eq!(status, 404, "{reason}");
    assert!(reason.contains("no files of"), "{reason}");
    let reader = mint(&app, "reader", &["read:root/*"]).await;
    let (status, reason) = remove("root/master", "1.0", reader).await;
    assert_eq!(status, 403, "{reason}");
    let (status, reason) = detail(
        call(
            &app,
            "POST",
            "+api/v1/releases/root/master/prod-lib/1.0/remove",
            Some(ADMIN_TOKEN),
            Some(json!({"reason": "  "})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "a removal needs a reason: {reason}");
    assert_eq!(
        listed(&app, "root/master", "prod-lib").await,
        vec![dist.filename.clone()],
        "every refusal left the release in place"
    );
    let (status, reason) = detail(
        call(
            &app,
            "POST",
            "+api/v1/trash/999/restore",
            Some(ADMIN_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "{reason}");
    let gc_by_reader = mint(&app, "master-admin", &["admin:root/master"]).await;
    let (status, reason) = detail(
        call(
            &app,
            "POST",
            "+api/v1/gc",
            Some(&gc_by_reader),
            Some(json!({"dry_run": true})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "gc needs admin on *: {reason}");
}

/// Garbage collection with expired trash and no grace period, so everything unlisted goes.
async fn collecting_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.gc.trash_for = Duration::from_millis(1);
        c.gc.grace = Duration::ZERO;
        c.gc.interval = None;
    })
    .await
}

/// `POST /+api/v1/gc` as the admin; the report.
pub async fn gc(app: &TestApp, dry_run: bool) -> Value {
    let response = call(
        app,
        "POST",
        "+api/v1/gc",
        Some(ADMIN_TOKEN),
        Some(json!({ "dry_run": dry_run })),
    )
    .await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "gc: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Downloads `dist` from `index` and checks every byte.
async fn assert_served(app: &TestApp, index: &str, dist: &Dist, what: &str) {
    let response = app
        .get(
            &format!("{index}/+f/{}/{}", dist.sha256(), dist.filename),
            &[],
        )
        .await;
    assert_eq!(response.status(), 200, "{what}: the download");
    let body = response.bytes().await.unwrap();
    assert_eq!(
        body.as_ref(),
        dist.bytes.as_slice(),
        "{what}: the bytes are whole"
    );
}

/// The `kind` of each entry of a JSON list.
fn kinds_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

/// `kiln_gc_freed_bytes_total` as `/metrics` shows it.
async fn freed_counter(app: &TestApp) -> u64 {
    let metrics = app.get("metrics", &[]).await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("kiln_gc_freed_bytes_total "))
        .unwrap_or_else(|| panic!("no gc metric in:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn gc_frees_what_a_deleted_index_and_expired_trash_held_and_nothing_listed() {
    let app = collecting_app().await;
    let store = store_of(&app);
    app.create_index("acme/gone", &["root/master"]).await;
    app.create_index("acme/kept", &["root/master"]).await;
    let deleted = Dist::wheel_with_data("big-lib", "1.0", incompressible(300_000));
    let trashed = Dist::wheel_with_data("big-lib", "2.0", incompressible(200_000));
    let shared = Dist::wheel("shared-lib", "1.0");
    let kept = Dist::wheel("kept-lib", "1.0");
    assert_eq!(app.upload("acme/gone", &deleted).await.status(), 200);
    assert_eq!(app.upload("acme/gone", &shared).await.status(), 200);
    assert_eq!(app.upload("acme/kept", &shared).await.status(), 200);
    assert_eq!(app.upload("acme/kept", &trashed).await.status(), 200);
    assert_eq!(app.upload("acme/kept", &kept).await.status(), 200);
    let digest = |d: &Dist| d.sha256().parse::<Sha256Digest>().unwrap();

    app.client()
        .delete_index(&"acme/gone".parse().unwrap(), false)
        .await
        .unwrap();
    let removed = kiln(
        &app,
        ADMIN_TOKEN,
        &["remove", "big-lib==2.0", "--index", "acme/kept"],
    )
    .await;
    assert!(removed.status.success(), "{}", show(&removed));
    // The trash expires in a millisecond; make sure it has.
    tokio::time::sleep(Duration::from_millis(5)).await;

    let dry = kiln(&app, ADMIN_TOKEN, &["gc", "--dry-run"]).await;
    assert!(dry.status.success(), "{}", show(&dry));
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        said.contains("would delete 4 blob(s)") && said.contains("dry run"),
        "the dry run says what would go: {said}"
    );
    let plan = gc(&app, true).await;
    assert_eq!(plan["blobs"], 4, "two wheels and their METADATA: {plan}");
    let wheels = (deleted.bytes.len() + trashed.bytes.len()) as u64;
    let planned = plan["blob_bytes"].as_u64().unwrap();
    assert!(
        planned > wheels && planned < wheels + 1000,
        "the wheels' bytes and their small METADATA: {plan}"
    );
    assert_eq!(
        kinds_of(&plan["released"]),
        ["release", "index"],
        "the removed release and the deleted index leave the trash: {plan}"
    );
    assert!(
        store.exists(&digest(&deleted)).await.unwrap(),
        "a dry run deletes nothing"
    );

    let done = gc(&app, false).await;
    assert_eq!(done["blobs"], 4, "{done}");
    assert_eq!(done["freed_bytes"], plan["blob_bytes"], "{done}");
    for (dist, stays) in [
        (&deleted, false),
        (&trashed, false),
        (&shared, true),
        (&kept, true),
    ] {
        assert_eq!(
            store.exists(&digest(dist)).await.unwrap(),
            stays,
            "{} {}",
            dist.filename,
            if stays {
                "is still listed"
            } else {
                "was collected"
            }
        );
    }
    let kinds = event_kinds(&app, "acme/kept").await;
    assert!(
        kinds.contains(&"released".to_owned()),
        "the trash's release is an event: {kinds:?}"
    );
    assert_eq!(
        gc(&app, false).await["freed_bytes"],
        0,
        "a second pass finds nothing"
    );

    // The same bytes uploaded again are stored again, and served whole.
    app.create_index("acme/again", &["root/master"]).await;
    assert_eq!(app.upload("acme/again", &deleted).await.status(), 200);
    assert_served(
        &app,
        "acme/again",
        &deleted,
        "collected bytes come back whole",
    )
    .await;
    assert!(
        freed_counter(&app).await >= planned,
        "the freed bytes are counted (other tests of this process add theirs)"
    );
}

#[tokio::test]
async fn gc_deletes_orphans_and_crash_leftovers_but_not_what_it_does_not_know() {
    let app = collecting_app().await;
    let store = store_of(&app);
    // An object no row names: what a refused upload or a database failure leaves.
    let orphan = incompressible(50_000);
    let orphan_digest = Sha256Digest::of(&orphan);
    store
        .put_bytes(&orphan_digest, orphan.clone().into())
        .await
        .unwrap();
    let listed_dist = Dist::wheel("listed-lib", "1.0");
    assert_eq!(app.upload("root/master", &listed_dist).await.status(), 200);
    let mut planted = Vec::new();
    if app.backing.is_none() {
        // Local staging files a crash cut short, and a file Kiln did not write.
        let dir = app
            .data_dir
            .path()
            .join("storage/blobs/sha256")
            .join(&orphan_digest.as_str()[..2])
            .join(&orphan_digest.as_str()[2..4]);
        for name in [
            format!("{orphan_digest}.kiln-partial-00000000deadbeef"),
            format!("{orphan_digest}#3"),
            "NOTES.txt".to_owned(),
        ] {
            std::fs::write(dir.join(&name), b"partial").unwrap();
            planted.push(dir.join(name));
        }
    }
    let done = gc(&app, false).await;
    assert_eq!(done["orphans"], 1, "{done}");
    assert_eq!(done["orphan_bytes"], 50_000, "{done}");
    assert!(!store.exists(&orphan_digest).await.unwrap());
    assert!(
        store
            .exists(&listed_dist.sha256().parse().unwrap())
            .await
            .unwrap(),
        "a listed blob stays"
    );
    if !planted.is_empty() {
        assert_eq!(done["leftovers"], 2, "{done}");
        assert!(!planted[0].exists() && !planted[1].exists());
        assert!(planted[2].exists(), "a file Kiln did not write stays");
    }
}

#[tokio::test]
async fn an_upload_of_the_same_bytes_racing_gc_is_never_left_without_its_bytes() {
    let app = collecting_app().await;
    let store = store_of(&app);
    let dist = Dist::wheel_with_data("racer", "1.0", incompressible(400_000));
    let digest: Sha256Digest = dist.sha256().parse().unwrap();
    for round in 0..12 {
        // The bytes are stored and nothing lists them: a candidate for collection.
        let old = format!("race/old-{round}");
        let new = format!("race/new-{round}");
        app.create_index(&old, &[]).await;
        app.create_index(&new, &[]).await;
        assert_eq!(app.upload(&old, &dist).await.status(), 200);
        app.client()
            .delete_index(&old.parse().unwrap(), false)
            .await
            .unwrap();
        // Some rounds let the collection start first, some the upload.
        let head_start = Duration::from_millis(round % 4 * 3);
        let (uploaded, _) = tokio::join!(
            async {
                if round % 2 == 0 {
                    tokio::time::sleep(head_start).await;
                }
                app.upload(&new, &dist).await.status()
            },
            async {
                if round % 2 == 1 {
                    tokio::time::sleep(head_start).await;
                }
                call(
                    &app,
                    "POST",
                    "+api/v1/gc",
                    Some(ADMIN_TOKEN),
                    Some(json!({})),
                )
                .await
                .status()
            }
        );
        assert_eq!(uploaded, 200, "round {round}: the upload");
        assert!(
            store.exists(&digest).await.unwrap(),
            "round {round}: a listed file's bytes are stored"
        );
        assert_served(&app, &new, &dist, &format!("round {round}")).await;
    }
}

#[tokio::test]
async fn an_entry_released_early_is_gone_for_good_and_gc_frees_its_bytes() {
    let app = TestApp::spawn().await;
    let store = store_of(&app);
    app.create_index("acme/feature-y", &["root/master"]).await;
    let dist = Dist::wheel_with_data("early", "1.0", incompressible(100_000));
    assert_eq!(app.upload("acme/feature-y", &dist).await.status(), 200);
    let removed = kiln(
        &app,
        ADMIN_TOKEN,
        &["remove", "early==1.0", "--index", "acme/feature-y"],
    )
    .await;
    assert!(removed.status.success(), "{}", show(&removed));
    let id = app.client().trash(None).await.unwrap()[0].id.to_string();
    let uploader = mint(&app, "uploader", &["upload:acme/*"]).await;
    let refused = kiln(&app, &uploader, &["trash", "release", &id]).await;
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("admin"),
        "releasing for good needs admin: {}",
        show(&refused)
    );
    let released = kiln(&app, ADMIN_TOKEN, &["trash", "release", &id]).await;
    assert!(released.status.success(), "{}", show(&released));
    assert!(app.client().trash(None).await.unwrap().is_empty());
    let restore = kiln(&app, ADMIN_TOKEN, &["trash", "restore", &id]).await;
    assert!(
        !restore.status.success(),
        "a released entry cannot be restored"
    );
    // Its bytes are no longer named: collection takes them at once (no grace needed for
    // a blob with a row).
    let digest: Sha256Digest = dist.sha256().parse().unwrap();
    assert!(store.exists(&digest).await.unwrap());
    let done = gc(&app, false).await;
    assert!(done["blobs"].as_u64().unwrap() >= 1, "{done}");
    assert!(!store.exists(&digest).await.unwrap(), "the bytes are freed");
    assert!(
        event_kinds(&app, "acme/feature-y")
            .await
            .contains(&"released".to_owned()),
        "the early release is an event"
    );
}
