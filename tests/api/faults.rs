//! Failing well: what a crash, a full disk or an unreachable backend leaves behind, and
//! how the server answers, on both backends.

use kiln::domain::Sha256Digest;
use kiln::storage::{Storage, StorageOptions};

use crate::helpers::{Dist, TestApp};

/// The store the app writes to, opened as a second handle (to plant what a crash leaves).
pub fn store_of(app: &TestApp) -> Storage {
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

/// `kiln serve` as a child process through `bash -c "{prefix}exec kiln serve …"` (the
/// prefix sets limits), logging to `serve.log` in its data directory, once healthy.
async fn spawn_served(prefix: &str, env: &[(&str, &str)]) -> (tokio::process::Child, TestApp) {
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
        .arg(format!("{prefix}exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .env("KILN_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let backing = crate::helpers::backing_for(data_dir.path()).await;
    let app = TestApp::attach(format!("http://127.0.0.1:{port}"), data_dir, backing);
    let deadline = crate::helpers::Deadline::after(60);
    loop {
        if let Ok(response) = reqwest::get(app.url("+health")).await
            && response.status() == 200
        {
            return (child, app);
        }
        assert!(
            !deadline.passed(),
            "kiln serve did not start:\n{}",
            served_log(&app)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn served_log(app: &TestApp) -> String {
    std::fs::read_to_string(app.data_dir.path().join("serve.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_507_that_keeps_nothing_and_smaller_uploads_still_work() {
    // The disk is "full" at 4 MiB per file: the shell's file-size limit, with SIGXFSZ
    // ignored so a write past it fails with EFBIG (what a full disk's ENOSPC is to the
    // server: a write that cannot be kept).
    let (child, app) = spawn_served("trap '' XFSZ; ulimit -f 4096; ", &[]).await;

    let big = Dist::wheel_with_data(
        "full",
        "1.0",
        crate::mirrors::incompressible(6 * 1024 * 1024),
    );
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
    let small = Dist::wheel_with_data("full", "1.1", crate::mirrors::incompressible(100_000));
    assert_eq!(app.upload("root/master", &small).await.status(), 200);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_long_polls_at_once_and_cuts_stalled_uploads() {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut child, app) = spawn_served("", &[("KILN_LOG", "info,tower_http=debug")]).await;
    let client = app.client();
    let master: kiln::domain::IndexName = "root/master".parse().unwrap();
    let claim = kiln::api::ClaimBuild {
        builder: "never finishes".into(),
        retry: false,
        provenance: crate::helpers::provenance("abc1234"),
        target: None,
    };
    let claimed = client
        .claim_build(&master, "demo", "1.0", &claim)
        .await
        .unwrap();
    assert!(matches!(
        claimed.status,
        kiln::api::BuildStateView::Claimed { .. }
    ));

    // A waiter long-polls the build (up to 60 s)...
    let poll = tokio::spawn({
        let url = app.url("+api/v1/builds/root/master/demo/1.0?wait=60");
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(crate::helpers::ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    // ...and an upload sends its first bytes, then stalls.
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("__token__:{}", crate::helpers::ADMIN_TOKEN));
    let head = format!(
        "POST /root/master/ HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"content\"; filename=\"demo-2.0-py3-none-any.whl\"\r\n\r\nPK"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();

    // Both are in the server's hands before it is told to stop.
    let deadline = crate::helpers::Deadline::after(60);
    loop {
        let log = served_log(&app);
        let started = |what: &str| {
            log.lines()
                .any(|l| l.contains(what) && l.contains("started processing request"))
        };
        if started("wait=60") && started("uri=/root/master/") {
            break;
        }
        assert!(
            !deadline.passed(),
            "the requests never reached the server:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let stopping = std::time::Instant::now();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());

    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(15), poll)
        .await
        .expect("the long poll answered when the server began to stop")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("building"),
        "it answers what it knows: {body}"
    );
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(15),
        stalled.read_to_string(&mut answer),
    )
    .await
    .expect("the stalled upload was cut off")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting down"), "{answer}");
    let exited = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .expect("kiln serve exited")
        .unwrap();
    assert!(exited.success(), "{exited}:\n{}", served_log(&app));
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(15),
        "stopping took {:?}",
        stopping.elapsed()
    );
}
