//! The S3 backend of `kiln::storage::Storage` against a real S3-compatible server: the
//! same contract the local directory keeps (see the unit tests in `src/storage.rs`).

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use kiln::domain::Sha256Digest;
use kiln::storage::{Storage, StorageOptions};

use crate::helpers::backends;

async fn s3_storage(presign: Option<std::time::Duration>) -> (Storage, backends::Backing) {
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let backing = backends::backing(services, &name).await;
    let options = StorageOptions {
        settings: backing.storage_settings.clone(),
        presign_downloads: presign,
        ..StorageOptions::default()
    };
    let storage = Storage::open(&backing.storage_url, &options).unwrap();
    storage.check().await.unwrap();
    (storage, backing)
}

async fn read(
    storage: &Storage,
    digest: &Sha256Digest,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let chunks: Vec<Bytes> = storage
        .stream(digest, range)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

#[tokio::test]
async fn an_s3_bucket_keeps_the_storage_contract() {
    let (storage, backing) = s3_storage(None).await;
    let data = Bytes::from_static(b"hello wheel");
    let digest = Sha256Digest::of(&data);
    assert!(!storage.exists(&digest).await.unwrap());
    storage.put_bytes(&digest, data.clone()).await.unwrap();
    assert!(storage.exists(&digest).await.unwrap());
    assert_eq!(storage.read_all(&digest).await.unwrap(), data);
    assert_eq!(read(&storage, &digest, Some(6..11)).await, b"wheel");
    let keys = backing.object_keys().await;
    assert_eq!(
        keys,
        [
            format!(
                "kiln/blobs/sha256/{}/{}/{digest}",
                &digest.as_str()[..2],
                &digest.as_str()[2..4]
            ),
            "kiln/kiln-probe".to_owned()
        ],
        "the blob and the start-up probe, under the URL's prefix"
    );

    // A second write of the same bytes is a no-op; bytes of another digest never replace
    // a stored blob (a caller's bug is refused and the blob left alone)...
    storage.put_bytes(&digest, data.clone()).await.unwrap();
    let refused = storage
        .put_bytes(&digest, Bytes::from_static(b"something else"))
        .await;
    assert!(
        matches!(refused, Err(kiln::storage::StorageError::Mismatch(_))),
        "{refused:?}"
    );
    assert_eq!(
        storage.read_all(&digest).await.unwrap(),
        data,
        "never overwritten"
    );
    // ...but a torn one (what a crash can leave: the wrong size) is replaced by its own.
    let other = Bytes::from_static(b"another wheel");
    let other_digest = Sha256Digest::of(&other);
    storage
        .put_bytes(&other_digest, other.slice(..4))
        .await
        .unwrap();
    storage
        .put_bytes(&other_digest, other.clone())
        .await
        .unwrap();
    assert_eq!(storage.read_all(&other_digest).await.unwrap(), other);

    // Large files go up in parts.
    let big: Vec<u8> = (0..17 * 1024 * 1024)
        .map(|n: u32| (n % 251) as u8)
        .collect();
    let big_digest = Sha256Digest::of(&big);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &big).unwrap();
    storage
        .put_file(&big_digest, file.path(), big.len() as u64)
        .await
        .unwrap();
    assert_eq!(read(&storage, &big_digest, None).await, big);

    storage.delete(&digest).await.unwrap();
    assert!(!storage.exists(&digest).await.unwrap());
    storage.delete(&digest).await.unwrap();
    assert!(matches!(
        storage.read_all(&digest).await,
        Err(kiln::storage::StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn presigned_urls_fetch_the_blob_from_the_bucket_directly() {
    let (storage, _backing) = s3_storage(Some(std::time::Duration::from_secs(60))).await;
    let data = Bytes::from_static(b"presigned bytes");
    let digest = Sha256Digest::of(&data);
    storage.put_bytes(&digest, data.clone()).await.unwrap();
    let url = storage.presigned_get(&digest).await.unwrap().unwrap();
    let fetched = reqwest::get(url.as_str()).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn a_missing_bucket_stops_the_server_with_a_reason() {
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let backing = backends::backing(services, &name).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = kiln::config::ServeConfig::for_data_dir(data.path());
    config.database_url = backing.database_url.clone();
    config.storage_url = "s3://no-such-bucket/kiln".into();
    config.storage_options.settings = backing.storage_settings.clone();
    config.upstream = None;
    let err = kiln::Server::open(config).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("storage `s3://no-such-bucket/kiln` does not answer")
            && message.contains("does the bucket exist"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_install_through_presigned_redirects_to_the_bucket() {
    use crate::clients::{installed_hashes, pip_install, uv_install};
    use crate::helpers::{Dist, run, show};
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let backing = backends::backing(services, &name).await;
    let replica =
        crate::replicas::Replica::start_with(&backing, &["--presign-downloads", "1m"]).await;
    let demo = Dist::wheel("demo", "1.0");
    assert_eq!(replica.upload("root/master", &demo).await.status(), 200);

    // The file URL answers with a redirect into the bucket; HEAD stays with Kiln.
    let path = format!("root/master/+f/{}/{}", demo.sha256(), demo.filename);
    let redirect = replica.get(&path, &[]).await;
    assert_eq!(redirect.status(), 307);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!(
            "{}/{}/kiln/blobs/sha256/",
            backing.s3_endpoint, backing.bucket
        )) && location.contains("X-Amz-Signature="),
        "{location}"
    );
    assert_eq!(redirect.headers()["cache-control"], "no-store");
    let head = crate::helpers::no_redirect_client()
        .head(replica.url(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        demo.bytes.len().to_string().as_str()
    );

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = run(pip_install(
        &replica.simple("root/master"),
        &dir.path().join("site"),
        &report,
        "demo",
    ))
    .await;
    assert!(output.status.success(), "pip install: {}", show(&output));
    assert_eq!(
        installed_hashes(&report),
        [("demo".to_owned(), demo.sha256())]
    );

    let output = run(uv_install(
        &["--index-url", &replica.simple("root/master"), "demo"],
        &dir.path().join("uv-site"),
    ))
    .await;
    assert!(output.status.success(), "uv pip install: {}", show(&output));
    assert!(dir.path().join("uv-site/demo/__init__.py").exists());
}
