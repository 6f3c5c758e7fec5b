//! Moving from the embedded default to PostgreSQL + S3: a server on SQLite and a local
//! directory, with a branch build, stage results, a promotion, tokens and a private
//! index, is exported while it runs (`kiln export`) and imported into an empty
//! PostgreSQL database and bucket (`kiln import`); a server started there serves the
//! same bytes to pip and uv, honours the same tokens, and shows the same history.

use serde_json::json;

use crate::access::{call, mint};
use crate::clients::{installed_hashes, pip_install, uv_install};
use crate::helpers::upstream::{PageStyle, Upstream};
use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, backing_for, kiln_cli, run, show};

/// `kiln ARGS…` against `base` with `token`.
async fn kiln(base: &str, token: &str, args: &[&str]) -> std::process::Output {
    kiln_cli(base, token, args).await
}

/// What a user sees of the history: `kiln status` and `kiln events`.
async fn history(base: &str) -> (String, String) {
    let status = kiln(
        base,
        ADMIN_TOKEN,
        &["status", "acme-lib==1.0", "--index", "root/master"],
    )
    .await;
    assert!(status.status.success(), "{}", show(&status));
    let events = kiln(base, ADMIN_TOKEN, &["events"]).await;
    assert!(events.status.success(), "{}", show(&events));
    (
        String::from_utf8_lossy(&status.stdout).into_owned(),
        String::from_utf8_lossy(&events.stdout).into_owned(),
    )
}

#[tokio::test]
async fn an_embedded_server_moves_to_postgres_and_s3_with_its_bytes_tokens_and_history() {
    // The source: the embedded default, even in this suite, mirroring an upstream.
    let mirrored = Dist::wheel("mirrored-dep", "3.0");
    let upstream = Upstream::start(PageStyle::Json, std::slice::from_ref(&mirrored)).await;
    let upstream_url = upstream.simple_url.clone();
    let source = TestApp::spawn_with(|c| {
        c.database_url = kiln::config::default_database_url(&c.data_dir);
        c.storage_url = kiln::config::default_storage_url(&c.data_dir);
        c.storage_options.settings.clear();
        c.upstream = Some(upstream_url);
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let cached = run(pip_install(
        &source.simple("root/master"),
        &work.path().join("cache"),
        &work.path().join("cache.json"),
        "mirrored-dep",
    ))
    .await;
    assert!(
        cached.status.success(),
        "pip through the mirror: {}",
        show(&cached)
    );
    let wheel = Dist::wheel("acme-lib", "1.0");
    let sha = source.build("root/master", "abcdef1", &[&wheel]).await;
    let reported = call(
        &source,
        "POST",
        "+api/v1/results",
        Some(ADMIN_TOKEN),
        Some(json!({"index": "root/master", "sha256": sha, "stage": "unit", "run_id": "r1", "outcome": "pass", "artifact": "verified", "duration_ms": 5})),
    )
    .await;
    assert_eq!(reported.status(), 201);
    let promoted = kiln(&source.base, ADMIN_TOKEN, &["promote", "acme-lib==1.0"]).await;
    assert!(promoted.status.success(), "{}", show(&promoted));
    source
        .create_index("acme/feature-x", &["root/master"])
        .await;
    let branch_wheel = Dist::wheel("acme-app", "2.0.dev1");
    let branch_sha = source
        .build("acme/feature-x", "abcdef2", &[&branch_wheel])
        .await;
    let secret = call(
        &source,
        "POST",
        "+api/v1/indexes",
        Some(ADMIN_TOKEN),
        Some(json!({"name": "acme/secret", "private": true})),
    )
    .await;
    assert_eq!(secret.status(), 201);
    let reader = mint(&source, "reader", &["read:acme/*"]).await;
    let before = history(&source.base).await;

    // Exported while it runs.
    let export = tempfile::tempdir().unwrap();
    let dir = export.path().join("snapshot");
    let dir_arg = dir.to_str().unwrap();
    let refused = kiln(&source.base, &reader, &["export", dir_arg]).await;
    assert!(!refused.status.success(), "a reader cannot export");
    let exported = kiln(&source.base, ADMIN_TOKEN, &["export", dir_arg]).await;
    assert!(exported.status.success(), "{}", show(&exported));
    drop(source);

    // Imported into an empty PostgreSQL database and bucket.
    let target_dir = tempfile::tempdir().unwrap();
    let backing = backing_for(target_dir.path())
        .await
        .expect("this suite runs on PostgreSQL + S3");
    let mut args = vec!["import".to_owned(), dir_arg.to_owned()];
    args.extend(backing.args());
    args.extend([
        "--data-dir".to_owned(),
        target_dir.path().display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let imported = kiln("http://127.0.0.1:9", ADMIN_TOKEN, &args).await;
    assert!(imported.status.success(), "{}", show(&imported));
    let again = kiln("http://127.0.0.1:9", ADMIN_TOKEN, &args).await;
    assert!(
        !again.status.success(),
        "a second import into the same database is refused"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        show(&again)
    );

    let target = TestApp::spawn_with(|c| {
        c.database_url.clone_from(&backing.database_url);
        c.storage_url.clone_from(&backing.storage_url);
        c.storage_options
            .settings
            .clone_from(&backing.storage_settings);
        // The admin token is the imported one; none is made anew.
        c.admin_token = None;
    })
    .await;
    assert_eq!(
        history(&target.base).await,
        before,
        "the same status and events"
    );

    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("pip.json");
    let pip = run(pip_install(
        &target.simple("root/prod"),
        &work.path().join("pip"),
        &report,
        "acme-lib==1.0",
    ))
    .await;
    assert!(pip.status.success(), "{}", show(&pip));
    assert_eq!(
        installed_hashes(&report),
        vec![("acme-lib".to_owned(), sha)]
    );
    let uv = run(uv_install(
        &[
            "--index-url",
            &target.simple("acme/feature-x"),
            "acme-app==2.0.dev1",
        ],
        &work.path().join("uv"),
    ))
    .await;
    assert!(uv.status.success(), "{}", show(&uv));
    let installed = work.path().join("uv/acme_app-2.0.dev1.dist-info/RECORD");
    assert!(
        installed.exists(),
        "uv installed the branch wheel: {}",
        show(&uv)
    );
    let download = target
        .get(
            &format!("acme/feature-x/+f/{branch_sha}/{}", branch_wheel.filename),
            &[],
        )
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        download.as_ref(),
        branch_wheel.bytes.as_slice(),
        "the same bytes"
    );

    // The tokens came along: the reader still reads the private index, others do not.
    let private = "acme/secret/+simple/";
    assert_eq!(
        target
            .get(private, &[("Authorization", &format!("Bearer {reader}"))])
            .await
            .status(),
        200
    );
    assert_eq!(target.get(private, &[]).await.status(), 401);
    // New rows get new ids (the sequences moved past the imported ones).
    let more = mint(&target, "after-import", &["read:acme/*"]).await;
    assert_ne!(more, reader);
}
