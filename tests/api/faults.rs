//! Failing well: what a crash, a full disk or an unreachable backend leaves behind, and
//! how the server answers, on both backends.

use kiln::domain::Sha256Digest;
use kiln::storage::{Storage, StorageOptions};

use crate::helpers::{Dist, TestApp};

/// The store the app writes to, opened as a second handle (to plant what a crash leaves).
fn store_of(app: &TestApp) -> Storage {
    let (url, settings) = match &app.backing {
        Some(backing) => (
            backing.storage_url.clone(),
            backing.storage_settings.clone(),
        ),
        None => (
            url::Url::from_directory_path(app.data_dir.path().join("storage"))
                .unwrap()
                .to_string(),
            Vec::new(),
        ),
    };
    Storage::open(
        &url,
        &StorageOptions {
            settings,
            ..StorageOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn an_upload_over_a_torn_blob_replaces_it_and_downloads_serve_the_right_bytes() {
    let app = TestApp::spawn().await;
    let dist = Dist::wheel_with_data("torn", "1.0", vec![7u8; 200_000]);
    let digest: Sha256Digest = dist.sha256().parse().unwrap();
    // What a crash mid-write can leave at the blob's final key: its first bytes only.
    store_of(&app)
        .put_bytes(&digest, dist.bytes[..1000].to_vec().into())
        .await
        .unwrap();
    let response = app.upload("root/master", &dist).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let download = app
        .get(
            &format!("root/master/+f/{}/{}", dist.sha256(), dist.filename),
            &[],
        )
        .await;
    assert_eq!(download.status(), 200);
    let served = download.bytes().await.unwrap();
    assert_eq!(
        Sha256Digest::of(&served),
        digest,
        "the download is the uploaded bytes, not the torn blob ({} bytes served)",
        served.len()
    );
}

/// `n` bytes that do not compress (a wheel of them is as large as they are).
fn noise(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_507_that_keeps_nothing_and_smaller_uploads_still_work() {
    // The disk is "full" at 4 MiB per file: the shell's file-size limit, with SIGXFSZ
    // ignored so a write past it fails with EFBIG (what a full disk's ENOSPC is to the
    // server: a write that cannot be kept).
    let data_dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--upstream".to_owned(),
        "off".to_owned(),
        "--data-dir".to_owned(),
        data_dir.path().display().to_string(),
    ];
    args.extend(crate::helpers::serve_args(data_dir.path()).await);
    let log = std::fs::File::create(data_dir.path().join("serve.log")).unwrap();
    let child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 4096; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .env("KILN_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let backing = crate::helpers::backing_for(data_dir.path()).await;
    let app = TestApp::attach(format!("http://127.0.0.1:{port}"), data_dir, backing);
    let deadline = crate::helpers::Deadline::after(60);
    while app.get("+health", &[]).await.status() != 200 {
        assert!(!deadline.passed(), "kiln serve did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let big = Dist::wheel_with_data("full", "1.0", noise(6 * 1024 * 1024));
    let response = app.upload("root/master", &big).await;
    let status = response.status();
    let reason = response.text().await.unwrap();
    assert_eq!(status, 507, "{reason}");
    assert!(reason.contains("disk is full"), "{reason}");
    let spooled: Vec<_> = std::fs::read_dir(app.data_dir.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(spooled.is_empty(), "the spooled body is gone: {spooled:?}");
    assert_eq!(
        app.get("root/master/+simple/full/", &[]).await.status(),
        404,
        "no row"
    );
    let small = Dist::wheel_with_data("full", "1.1", noise(100_000));
    assert_eq!(app.upload("root/master", &small).await.status(), 200);
    drop(child);
}
