//! Two `kiln serve` processes sharing one PostgreSQL database and one bucket, like replicas
//! behind a load balancer: every guarantee (one build per version, one promotion record,
//! leases that expire, nothing lost or half-written) must hold across them, because it
//! lives in the database.

use std::ops::Deref;
use std::process::Stdio;
use std::time::Duration;

use kiln::api::PromotionResult;
use kiln::api::{BuildStateView, ClaimBuild};
use kiln::domain::Outcome;
use sqlx::Connection as _;

use crate::helpers::{ADMIN_TOKEN, Backing, Dist, TestApp, backends, show};
use crate::hooks::{
    BRANCH_ARGS, Runner, builds_in, counting_build, hanging_builder, kill_group,
    two_runners_take_over,
};
use crate::promotions::{on_master, report, request};

/// The build lease of every replica here: short, so expiry is quick to wait for.
const LEASE: &str = "2s";

/// One `kiln serve` process; dereferences to a [`TestApp`] pointed at it.
pub struct Replica {
    app: TestApp,
    port: u16,
    /// Flags beyond the backing's, e.g. `--presign-downloads 1m`.
    extra: Vec<String>,
    child: Option<tokio::process::Child>,
}

impl Deref for Replica {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Replica {
    /// Starts a replica on `backing`, with its own data directory (temp files only).
    async fn start(backing: &Backing) -> Self {
        Self::start_with(backing, &[]).await
    }

    /// Starts a replica on `backing` with extra `kiln serve` flags.
    pub async fn start_with(backing: &Backing, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let app = TestApp::attach(
            format!("http://127.0.0.1:{port}"),
            tempfile::tempdir().unwrap(),
            Some(backing.clone()),
        );
        let mut replica = Self {
            app,
            port,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        replica.boot().await;
        replica
    }

    /// Starts (or restarts) the process on this replica's port and waits until healthy.
    async fn boot(&mut self) {
        let backing = self.app.backing.clone().unwrap();
        let log = std::fs::File::create(self.app.data_dir.path().join("serve.log")).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
        for var in [
            "KILN_CONFIG",
            "KILN_DATABASE_URL",
            "KILN_STORAGE",
            "KILN_LISTEN",
        ] {
            command.env_remove(var);
        }
        command
            .args(["serve", "--upstream", "off", "--build-lease-timeout", LEASE])
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.app.data_dir.path())
            .args(backing.args())
            .args(&self.extra)
            .env("KILN_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(command.spawn().expect("spawning kiln serve"));
        let http = reqwest::Client::new();
        let deadline = crate::helpers::Deadline::after(60);
        while !deadline.passed() {
            if let Ok(response) = http.get(self.app.url("+health")).send().await
                && response.status() == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(tokio::process::Child::try_wait)
            {
                panic!(
                    "replica on port {} exited ({status}) before it was healthy; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "replica on port {} did not become healthy; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// Kills the process without warning (a lost machine).
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.app.data_dir.path().join("serve.log")).unwrap_or_default()
    }
}

/// A fresh database and bucket, and `n` replicas on them, started at the same moment (so
/// migrations and the first-start layout race, as when a fleet is first deployed).
async fn fleet(n: usize) -> (Backing, Vec<Replica>) {
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let backing = backends::backing(services, &name).await;
    let replicas = futures_util::future::join_all((0..n).map(|_| Replica::start(&backing))).await;
    (backing, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_share_one_layout_and_see_each_others_writes_at_once() {
    let (_backing, replicas) = fleet(2).await;
    let [a, b] = replicas.as_slice() else {
        unreachable!()
    };
    for replica in [a, b] {
        let names: Vec<String> = replica
            .client()
            .list_indexes()
            .await
            .unwrap()
            .iter()
            .map(|v| v.index.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["root/master", "root/prod"],
            "one first-start layout, not two"
        );
    }

    // An upload through one replica is on the other's simple page at once, although the
    // other had just rendered (and cached) the page without it.
    for round in 0..10 {
        let (writer, reader) = if round % 2 == 0 { (a, b) } else { (b, a) };
        let before = reader.get("root/master/+simple/demo/", &[]).await;
        let dist = Dist::wheel("demo", &format!("1.{round}"));
        let response = writer.upload("root/master", &dist).await;
        assert_eq!(response.status(), 200, "round {round}");
        let page = reader.json_page("root/master", "demo").await;
        let files: Vec<&str> = page["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].as_str().unwrap())
            .collect();
        assert!(
            files.contains(&dist.filename.as_str()),
            "round {round}: {} is not yet on the other replica's page (before: {}): {files:?}",
            dist.filename,
            before.status()
        );
        assert_eq!(files.len(), round + 1);
    }

    // Indexes and tokens made on one replica work on the other.
    b.create_index("acme/feature", &["root/master"]).await;
    let page = a.json_page("acme/feature", "demo").await;
    assert_eq!(page["files"].as_array().unwrap().len(), 10, "inherited");
    let minted = a
        .client()
        .create_token(&kiln::api::TokenRequest {
            name: "ci".into(),
            scopes: vec!["upload:acme/*".parse().unwrap()],
            expires_at: None,
        })
        .await
        .unwrap();
    let response = b
        .upload_form(
            "acme/feature",
            Dist::wheel("other", "1.0").form(),
            Some(&minted.secret),
        )
        .await;
    assert_eq!(response.status(), 200);
    let revoked = a.client().revoke_token(minted.token.id).await;
    assert!(revoked.is_ok(), "{revoked:?}");
    let response = b
        .upload_form(
            "acme/feature",
            Dist::wheel("other", "2.0").form(),
            Some(&minted.secret),
        )
        .await;
    let (status, message) = crate::helpers::detail(response).await;
    assert_eq!(
        (status, message.contains("revoked")),
        (403, true),
        "revoked on A is revoked on B: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_stage_hooks_split_across_two_replicas_build_once() {
    let (_backing, replicas) = fleet(2).await;
    let counter = tempfile::tempdir().unwrap();
    let count = counter.path().join("builds");
    let build = counting_build(&count, 1);
    let runners: Vec<Runner> = (0..8).map(|_| Runner::new()).collect();
    let fetch = "python -m pip download --no-deps -d got kiln-sample && python -c \"import glob, hashlib; print(hashlib.sha256(open(glob.glob('got/*.whl')[0], 'rb').read()).hexdigest())\" > got.sha256";
    let stages: Vec<String> = (0..8).map(|n| format!("stage{n}")).collect();
    let runs = runners
        .iter()
        .zip(&stages)
        .enumerate()
        .map(|(n, (runner, stage))| {
            let mut args = vec!["stage", stage.as_str()];
            args.extend(BRANCH_ARGS);
            args.extend(["--build-cmd", &build, "--", "sh", "-c", fetch]);
            runner.kiln(&replicas[n % 2], &args).output()
        });
    let outputs = futures_util::future::join_all(runs).await;
    for (stage, output) in stages.iter().zip(&outputs) {
        let output = output.as_ref().unwrap();
        assert!(output.status.success(), "{stage}:\n{}", show(output));
    }
    assert_eq!(builds_in(&count), 1, "exactly one runner of eight builds");

    let release = replicas[1]
        .client()
        .show_release(
            &"root/feature-login-form".parse().unwrap(),
            "kiln-sample",
            crate::hooks::BRANCH_VERSION,
        )
        .await
        .unwrap();
    let [file] = release.files.as_slice() else {
        panic!("one file expected: {release:?}")
    };
    for runner in &runners {
        let got = std::fs::read_to_string(runner.path().join("got.sha256")).unwrap();
        assert_eq!(
            got.trim(),
            file.file.sha256,
            "every stage tested the same bytes"
        );
    }
    assert_eq!(file.stages.len(), 8, "{:?}", file.stages.keys());
    assert!(file.stages.values().all(|r| r.outcome == Outcome::Pass));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promotions_through_both_replicas_record_once() {
    let (_backing, replicas) = fleet(2).await;
    let sha = on_master(&replicas[0], "2.0").await;
    report(&replicas[1], &sha, "unit", "r1", Outcome::Pass).await;
    let runs = (0..8).map(|n| {
        let client = replicas[n % 2].client();
        tokio::spawn(async move { client.promote(&request("2.0")).await })
    });
    let outcomes: Vec<_> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap().result)
        .collect();
    let promoted = outcomes
        .iter()
        .filter(|r| **r == PromotionResult::Promoted)
        .count();
    assert_eq!(promoted, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|r| matches!(
            r,
            PromotionResult::Promoted | PromotionResult::AlreadyPromoted
        )),
        "{outcomes:?}"
    );
    for replica in &replicas {
        assert_eq!(
            replica.client().list_promotions(None).await.unwrap().len(),
            1
        );
        let prod = replica.json_page("root/prod", "demo").await;
        assert_eq!(prod["files"][0]["hashes"]["sha256"], sha.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_build_leaves_a_lease_that_expires_and_the_other_finishes() {
    let (_backing, mut replicas) = fleet(2).await;
    let counter = tempfile::tempdir().unwrap();
    let count = counter.path().join("builds");
    // The first runner takes the lease through replica A (as B sees it).
    let builder =
        hanging_builder(&Runner::new(), &replicas[0], &replicas[1].client(), &count).await;
    // Replica A dies while its runner builds; the runner's heartbeats go nowhere.
    replicas[0].kill().await;
    two_runners_take_over(&replicas[1], &count).await;
    // The lost runner (and its endless build) goes too.
    kill_group(&builder);
}

/// Uploads through the replica at `base`, retrying connection failures and 5xx like a
/// client behind a load balancer; returns the final status and how many tries it took.
async fn upload_with_retries(base: &str, dist: &Dist) -> (u16, usize) {
    let http = reqwest::Client::new();
    for attempt in 1..=200 {
        let sent = http
            .post(format!("{base}/root/master/"))
            .basic_auth("__token__", Some(ADMIN_TOKEN))
            .multipart(dist.form())
            .send()
            .await;
        match sent {
            Ok(response) if !response.status().is_server_error() => {
                return (response.status().as_u16(), attempt);
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{} never went through", dist.filename);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_replica_mid_traffic_loses_nothing_and_leaves_no_half_rows() {
    let (backing, mut replicas) = fleet(2).await;
    let index = "root/master".parse().unwrap();
    // A lease taken through A, never heartbeaten: A is about to die with it.
    let claim = ClaimBuild {
        builder: "runner-on-a".into(),
        retry: false,
        provenance: crate::helpers::provenance("abcdef1"),
        target: None,
    };
    let held = replicas[0]
        .client()
        .claim_build(&index, "leased", "1.0", &claim)
        .await
        .unwrap();
    assert!(matches!(
        held.status,
        BuildStateView::Claimed { attempt: 1, .. }
    ));

    // Traffic: 40 uploads alternating between the replicas, each retried until it lands.
    let dists: Vec<Dist> = (0..40)
        .map(|n| Dist::wheel("traffic", &format!("0.{n}")))
        .collect();
    let bases = [replicas[0].base.clone(), replicas[1].base.clone()];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let traffic = {
        let dists = dists.clone();
        let done = std::sync::Arc::clone(&done);
        tokio::spawn(async move {
            let mut results = Vec::new();
            for (n, dist) in dists.iter().enumerate() {
                results.push(upload_with_retries(&bases[n % 2], dist).await);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            results
        })
    };
    // A quarter of the way in, replica A is killed and comes back on the same address.
    while done.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replicas[0].kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicas[0].boot().await;
    let results = traffic.await.unwrap();
    assert!(
        results.iter().all(|(status, _)| *status == 200),
        "{results:?}\nA's log:\n{}",
        replicas[0].log()
    );
    let retried = results.iter().filter(|(_, attempts)| *attempts > 1).count();
    assert!(retried > 0, "the restart happened mid-traffic: {results:?}");

    // Everything is listed on both replicas, and every file's bytes are whole.
    for replica in &replicas {
        let page = replica.json_page("root/master", "traffic").await;
        assert_eq!(page["files"].as_array().unwrap().len(), dists.len());
    }
    for dist in &dists {
        let path = format!("root/master/+f/{}/{}", dist.sha256(), dist.filename);
        let bytes = replicas[1].get(&path, &[]).await.bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), dist.bytes.as_slice(), "{}", dist.filename);
    }

    // No half rows: every blob row has its object in the bucket, every file row its blob.
    let mut db = sqlx::PgConnection::connect(&backing.database_url)
        .await
        .unwrap();
    let files: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE project = 'traffic'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(files, 40);
    let blobs: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM blobs")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let objects = backing.object_keys().await;
    for sha in &blobs {
        assert!(
            objects.iter().any(|key| key.ends_with(sha.as_str())),
            "blob row {sha} has no object in the bucket"
        );
    }
    let dangling: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM files f LEFT JOIN blobs b ON b.sha256 = f.sha256 WHERE b.sha256 IS NULL",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(dangling, 0);

    // No orphaned lease: once A's lease lapses, a claim through B takes it over.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let taken = replicas[1]
        .client()
        .claim_build(&index, "leased", "1.0", &claim)
        .await
        .unwrap();
    assert!(
        matches!(taken.status, BuildStateView::Claimed { attempt: 2, .. }),
        "{taken:?}"
    );
}

/// Replicas hear each other's changes without asking the database per request: a build
/// completed through A wakes a waiter long-polling on B at once (by A's notification; a
/// waiter's own timer would take 5 s), and a stage report through A leaves B's cached
/// page in place (same ETag, served from memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_replica_wakes_when_the_build_completes_on_the_other() {
    let (_backing, replicas) = fleet(2).await;
    let [a, b] = replicas.as_slice() else {
        unreachable!()
    };
    let index: kiln::domain::IndexName = "root/master".parse().unwrap();
    let claim = ClaimBuild {
        builder: "runner-on-a".into(),
        retry: false,
        provenance: crate::helpers::provenance("abcdef1"),
        target: None,
    };
    let held = a
        .client()
        .claim_build(&index, "woken", "1.0", &claim)
        .await
        .unwrap();
    let BuildStateView::Claimed { lease_id, .. } = held.status else {
        panic!("{:?}", held.status)
    };
    let waiter = {
        let client = b.client();
        let index = index.clone();
        tokio::spawn(async move {
            client
                .show_build(&index, "woken", "1.0", Some(Duration::from_secs(60)))
                .await
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::wheel("woken", "1.0");
    let path = dir.path().join(&dist.filename);
    std::fs::write(&path, &dist.bytes).unwrap();
    a.client()
        .upload_file(&index, &path, "woken", "1.0", Some(&lease_id))
        .await
        .unwrap();
    // Give the waiter time to reach its long poll on B (if it has not, it answers at
    // once and this proves less, but never fails).
    let spawned = std::time::Instant::now();
    while spawned.elapsed() < Duration::from_millis(500) && !waiter.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiter.is_finished(), "the build is still in progress");
    let completed = std::time::Instant::now();
    a.client()
        .lease_action(
            &index,
            "woken",
            "1.0",
            "complete",
            &kiln::api::LeaseBody {
                lease_id,
                error_tail: None,
                target: None,
            },
        )
        .await
        .unwrap();
    let seen = waiter.await.unwrap().unwrap();
    let woke_after = completed.elapsed();
    assert!(
        matches!(seen.status, BuildStateView::Ready { .. }),
        "{:?}",
        seen.status
    );
    assert!(
        woke_after < Duration::from_secs(3),
        "B's waiter saw A's completion after {woke_after:?}: woken by its timer, not by the notification"
    );

    // B's cached page survives a stage report made through A.
    let first = b.get("root/master/+simple/woken/", &[]).await;
    let etag = first.headers()["etag"].clone();
    let hits = |health: serde_json::Value| health["page_cache"]["hits"].as_u64().unwrap();
    let before = hits(b.get("+health", &[]).await.json().await.unwrap());
    crate::promotions::report(a, &dist.sha256(), "unit", "run-1", Outcome::Pass).await;
    let again = b.get("root/master/+simple/woken/", &[]).await;
    assert_eq!(again.headers()["etag"], etag);
    let after = hits(b.get("+health", &[]).await.json().await.unwrap());
    assert_eq!(after, before + 1, "served from B's memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_webhook_event_once_and_retry_after_a_500() {
    const REPORTS: usize = 40;
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let backing = backends::backing(services, &name).await;
    let flags = [
        "--webhook-allow-host",
        "127.0.0.1",
        "--webhook-retry",
        "200ms",
    ];
    let (a, b) = tokio::join!(
        Replica::start_with(&backing, &flags),
        Replica::start_with(&backing, &flags)
    );
    // The first five answers are 500s: their retries may be taken by either replica.
    let receiver = crate::webhooks::Receiver::start(5).await;
    let created = a
        .client()
        .create_webhook(&kiln::api::WebhookRequest {
            pattern: "root/*".parse().unwrap(),
            url: receiver.url.clone(),
            events: vec![kiln::domain::WebhookEvent::StageResult],
            secret: None,
        })
        .await
        .unwrap();
    let sha256 = on_master(&a, "1.0").await;
    // Forty reports through both replicas at once: every replica's sender sees every
    // one queued (each wakes on the change feed), and each is sent once.
    let reports = (0..REPORTS).map(|n| {
        let (replica, sha256) = (if n % 2 == 0 { &a } else { &b }, sha256.clone());
        async move {
            report(replica, &sha256, "unit", &format!("run-{n}"), Outcome::Pass).await;
        }
    });
    futures_util::future::join_all(reports).await;
    let client = b.client();
    let deadline = crate::helpers::Deadline::after(90);
    let log = loop {
        let log = client
            .webhook_deliveries(created.webhook.id, 500)
            .await
            .unwrap();
        if log.len() == REPORTS
            && log
                .iter()
                .all(|d| d.state == kiln::domain::DeliveryState::Delivered)
        {
            break log;
        }
        assert!(
            !deadline.passed(),
            "not every delivery was delivered: {log:#?}\n--- A's log:\n{}\n--- B's log:\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = receiver.received();
    let (answered, distinct) = crate::webhooks::answered_200(&got);
    assert_eq!(answered, REPORTS, "each event answered 200 exactly once");
    assert_eq!(distinct, REPORTS, "no event was delivered twice");
    assert_eq!(got.len(), REPORTS + 5, "each of the five 500s was retried");
    // Every attempt the log counts reached the receiver, once.
    for delivery in &log {
        let arrived = got
            .iter()
            .filter(|r| r.delivery == delivery.id.to_string())
            .count();
        assert_eq!(
            arrived, delivery.attempts as usize,
            "delivery {} was tried {} times and arrived {arrived} times",
            delivery.id, delivery.attempts
        );
    }
    let runs: std::collections::BTreeSet<String> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.body["detail"]["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(runs.len(), REPORTS, "one delivery per report");
}

#[tokio::test]
async fn two_replicas_collecting_on_a_schedule_apply_retention_once() {
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    let name = backends::name_for(tempfile::tempdir().unwrap().path());
    let backing = backends::backing(services, &name).await;
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("policy.toml"),
        format!(
            "{}\n[[retention]]\nname = \"newest-only\"\nindexes = \"root/master\"\nkeep-newest = 1\n",
            kiln::policy::DEFAULT_POLICY
        ),
    )
    .unwrap();
    let policies = policies.path().to_str().unwrap().to_owned();
    let flags = [
        "--policies",
        policies.as_str(),
        "--gc-interval",
        "200ms",
        "--upload-timeout",
        "1s",
        "--gc-grace",
        "2s",
    ];
    let (a, b) = tokio::join!(
        Replica::start_with(&backing, &flags),
        Replica::start_with(&backing, &flags)
    );
    for version in ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"] {
        a.build("root/master", "c0ffee1", &[&Dist::wheel("demo", version)])
            .await;
    }
    // Wait until the old releases are in the trash, then for several more passes on both
    // replicas' schedules (a second removal would show up as a second entry).
    let deadline = crate::helpers::Deadline::after(60);
    let passes = || {
        a.log().matches("garbage collected").count() + b.log().matches("garbage collected").count()
    };
    while a.client().trash(None).await.unwrap().len() < 5 && !deadline.passed() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = passes();
    while passes() < seen + 4 && !deadline.passed() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        passes() >= seen + 4,
        "the collectors kept running: {}\n{}",
        a.log(),
        b.log()
    );
    let trash = a.client().trash(None).await.unwrap();
    let mut versions: Vec<String> = trash
        .iter()
        .map(|e| e.version.clone().unwrap_or_default())
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        ["1.0", "1.1", "1.2", "1.3", "1.4"],
        "every old release went into the trash exactly once"
    );
    let removed = a
        .client()
        .list_events(Some(&"root/master".parse().unwrap()), 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kiln::domain::EventKind::Removed)
        .count();
    assert_eq!(removed, 5, "one removal event each");
    for replica in [&a, &b] {
        assert!(
            !replica.log().contains("garbage collection failed"),
            "{}",
            replica.log()
        );
    }
}
