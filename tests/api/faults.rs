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
