//! Backends that stop answering, injected on loopback: a proxy between a `kiln serve`
//! process and PostgreSQL that can freeze (hold every byte, accept but not answer new
//! connections), as a stopped or wedged database server does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Deadline, Dist, backends};
use crate::replicas::Replica;

/// A TCP proxy to `target` on a free loopback port that can freeze.
struct Proxy {
    port: u16,
    frozen: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let gate = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let gate = gate.clone();
                tokio::spawn(async move {
                    // A frozen server accepts (the kernel does) and never answers.
                    while gate.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, gate.clone()),
                        pump(server_read, client_write, gate)
                    );
                });
            }
        });
        Self {
            port,
            frozen,
            _task: task,
        }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

/// Copies one direction, holding every byte while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_is_a_quick_503_with_retry_after_and_the_server_recovers() {
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let mut backing = backends::backing(services, &name).await;
    let mut url = url::Url::parse(&backing.database_url).unwrap();
    let target: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap();
    let proxy = Proxy::start(target).await;
    url.set_port(Some(proxy.port)).unwrap();
    backing.database_url = url.to_string();
    let replica = Replica::start_with(&backing, &[]).await;
    let dist = Dist::wheel("outage", "1.0");
    assert_eq!(replica.upload("root/master", &dist).await.status(), 200);

    proxy.freeze(true);
    let http = reqwest::Client::new();
    for (what, request) in [
        (
            "a project page",
            http.get(replica.url("root/master/+simple/outage/")),
        ),
        (
            "an API read",
            http.get(replica.url("+api/v1/indexes/root/master")),
        ),
    ] {
        let started = Instant::now();
        let response = request.send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 503, "{what}");
        assert_eq!(response.headers()["retry-after"], "5", "{what}");
        let body = response.text().await.unwrap();
        assert!(body.contains("database does not answer"), "{what}: {body}");
        assert!(
            took < Duration::from_secs(20),
            "{what} answered after {took:?}: a frozen database must not hold requests for long"
        );
    }
    let upload = replica
        .upload("root/master", &Dist::wheel("outage", "2.0"))
        .await;
    assert_eq!(upload.status(), 503, "an upload is refused, not half-kept");

    // Thawed: the same process serves again, and the refused upload left nothing.
    proxy.freeze(false);
    let deadline = Deadline::after(60);
    loop {
        let page = replica.get("root/master/+simple/outage/", &[]).await;
        if page.status() == 200 {
            let text = page.text().await.unwrap();
            assert!(text.contains("outage-1.0"), "{text}");
            assert!(!text.contains("outage-2.0"), "{text}");
            break;
        }
        assert!(
            !deadline.passed(),
            "the server did not recover: {}",
            page.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        replica
            .upload("root/master", &Dist::wheel("outage", "2.0"))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_object_store_is_a_503_naming_the_store_within_its_timeout() {
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let mut backing = backends::backing(services, &name).await;
    let endpoint = backing
        .storage_settings
        .iter_mut()
        .find(|(key, _)| key == "aws_endpoint")
        .expect("the bucket's endpoint");
    let mut url = url::Url::parse(&endpoint.1).unwrap();
    let target: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap();
    let proxy = Proxy::start(target).await;
    url.set_port(Some(proxy.port)).unwrap();
    endpoint.1 = url.as_str().trim_end_matches('/').to_owned();
    let replica = Replica::start_with(&backing, &["--storage-timeout", "3s"]).await;
    let kept = Dist::wheel("frozen", "1.0");
    assert_eq!(replica.upload("root/master", &kept).await.status(), 200);

    proxy.freeze(true);
    let started = Instant::now();
    let upload = replica
        .upload("root/master", &Dist::wheel("frozen", "2.0"))
        .await;
    let took = started.elapsed();
    let status = upload.status();
    let body = upload.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("object store"), "{body}");
    assert!(
        took < Duration::from_secs(20),
        "the upload answered after {took:?}, not within the 3 s storage timeout"
    );
    let started = Instant::now();
    let download = replica
        .get(
            &format!("root/master/+f/{}/{}", kept.sha256(), kept.filename),
            &[],
        )
        .await;
    assert_eq!(download.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(20));

    proxy.freeze(false);
    let deadline = Deadline::after(60);
    loop {
        let response = replica
            .upload("root/master", &Dist::wheel("frozen", "2.0"))
            .await;
        if response.status() == 200 {
            break;
        }
        assert!(
            !deadline.passed(),
            "uploads did not recover: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
