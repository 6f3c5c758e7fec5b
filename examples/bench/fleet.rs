//! The busy-fleet figures: simple pages read while CI writes, and the write throughput of
//! two PostgreSQL replicas.
//!
//! Busy fleet (embedded default): `BRANCHES` branch indexes over a master holding
//! `PROJECTS` projects × 3 versions. wrk reads rotate over `PAGES` distinct project pages
//! (branch `k % BRANCHES`, project `k·7 % PROJECTS`), first as JSON, then as HTML, while
//! a writer mixes stage reports (6 in 10), lease heartbeats (2 in 10) and uploads of a new
//! version to a branch index (2 in 10) at a fixed rate.
//!
//! Write throughput (PostgreSQL + S3, two replicas): 32 concurrent clients, half on each
//! replica, post stage reports for a while, then lease claims of new releases.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kiln::api::{ClaimBuild, LeaseBody, StageReport};
use kiln::client::Client;
use kiln::domain::{IndexName, IndexSettings, Outcome};

use crate::dist::Dist;
use crate::{KILN_TOKEN, Load, spawn_kiln};

/// The size of a busy-fleet run.
#[derive(Debug, Clone, Copy)]
pub struct FleetSize {
    pub branches: usize,
    pub projects: usize,
    pub versions: usize,
    pub pages: usize,
}

impl FleetSize {
    pub const FULL: Self = Self {
        branches: 1_000,
        projects: 5_000,
        versions: 3,
        pages: 10_000,
    };
    pub const QUICK: Self = Self {
        branches: 100,
        projects: 500,
        versions: 3,
        pages: 1_000,
    };
}

/// One rate's figures.
pub struct FleetRow {
    pub format: &'static str,
    pub target_rate: u32,
    pub achieved_rate: f64,
    pub write_errors: u64,
    pub load: Load,
}

pub(crate) fn client(base: &str) -> anyhow::Result<Client> {
    Client::new(base, Some(KILN_TOKEN.to_owned())).context("client")
}

fn provenance(commit: &str) -> kiln::domain::Provenance {
    kiln::domain::Provenance {
        ci: Some("bench".into()),
        run_id: Some("bench-run".into()),
        ..kiln::domain::Provenance::of_commit(commit.parse().expect("a valid commit"))
    }
}

/// A passing `unit` report of `sha256` on `root/master` from CI run `run_id`.
pub(crate) fn passed(sha256: String, run_id: String) -> anyhow::Result<StageReport> {
    Ok(StageReport {
        index: "root/master".parse()?,
        cause: None,
        artifact: Some(kiln::domain::ArtifactCheck::Verified),
        sha256,
        stage: "unit".into(),
        run_id,
        outcome: Outcome::Pass,
        exit_code: Some(0),
        duration_ms: 1_000,
        environment: std::collections::BTreeMap::new(),
        log_tail: "ok".into(),
        junit: None,
    })
}

fn branch_name(n: usize) -> String {
    format!("acme/b{n:04}")
}

pub(crate) async fn upload(
    http: &reqwest::Client,
    base: &str,
    index: &str,
    dist: &Dist,
) -> anyhow::Result<()> {
    let response = http
        .post(format!("{base}{index}/"))
        .basic_auth("__token__", Some(KILN_TOKEN))
        .multipart(dist.form())
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "upload of {} to {index}: {}",
        dist.filename,
        response.status()
    );
    Ok(())
}

/// Uploads every master file (16 at a time) and creates the branch indexes; answers the
/// sha256 of each master file (what the writer reports results for).
async fn seed(base: &str, size: FleetSize) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let jobs: Vec<(usize, usize)> = (0..size.projects)
        .flat_map(|p| (0..size.versions).map(move |v| (p, v)))
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let jobs = Arc::new(jobs);
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (http, base, jobs, next) = (
            http.clone(),
            base.to_owned(),
            Arc::clone(&jobs),
            Arc::clone(&next),
        );
        workers.push(tokio::spawn(async move {
            let mut digests = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(p, v)) = jobs.get(n) else {
                    return anyhow::Ok(digests);
                };
                let dist = Dist::wheel(&format!("p{p:05}"), &format!("1.{v}"));
                upload(&http, &base, "root/master", &dist).await?;
                digests.push(dist.sha256());
            }
        }));
    }
    let mut digests = Vec::new();
    for worker in workers {
        digests.extend(worker.await??);
    }
    let admin = client(base)?;
    let settings = IndexSettings {
        bases: vec!["root/master".parse()?],
        volatile: true,
        ..IndexSettings::default()
    };
    for b in 0..size.branches {
        let name: IndexName = branch_name(b).parse()?;
        admin.create_index(&name, &settings).await?;
    }
    Ok(digests)
}

/// What the writer needs: a lease to heartbeat and bytes to report on.
struct Writer {
    base: String,
    lease: (IndexName, String),
    digests: Vec<String>,
    branches: usize,
    projects: usize,
}

async fn claim_lease(base: &str) -> anyhow::Result<(IndexName, String)> {
    let index: IndexName = branch_name(0).parse()?;
    let claim = ClaimBuild {
        builder: "bench-builder".into(),
        retry: false,
        provenance: provenance("abcdef1"),
        target: None,
    };
    let view = client(base)?
        .claim_build(&index, "leased", "1.0", &claim)
        .await?;
    match view.status {
        kiln::api::BuildStateView::Claimed { lease_id, .. } => Ok((index, lease_id)),
        other => anyhow::bail!("no lease: {other:?}"),
    }
}

impl Writer {
    /// Write number `n` of the mix.
    async fn write(&self, http: &reqwest::Client, api: &Client, n: u64) -> anyhow::Result<()> {
        let n_usize = usize::try_from(n)?;
        match n % 10 {
            0..6 => {
                let sha = &self.digests[n_usize * 7919 % self.digests.len()];
                api.report_result(&passed(sha.clone(), format!("run-{n}"))?)
                    .await?;
            }
            6..8 => {
                let (index, lease_id) = &self.lease;
                api.lease_action(
                    index,
                    "leased",
                    "1.0",
                    "heartbeat",
                    &LeaseBody {
                        lease_id: lease_id.clone(),
                        error_tail: None,
                        target: None,
                    },
                )
                .await?;
            }
            _ => {
                let branch = branch_name(n_usize * 31 % self.branches);
                let project = format!("p{:05}", n_usize * 13 % self.projects);
                let dist = Dist::wheel(&project, &format!("2.0.dev{n}"));
                upload(http, &self.base, &branch, &dist).await?;
            }
        }
        Ok(())
    }

    /// Writes at `rate` per second until `stop`; answers (writes done, errors).
    async fn run(self: Arc<Self>, rate: u32, start: u64, stop: Arc<AtomicU64>) -> (u64, u64) {
        if rate == 0 {
            return (0, 0);
        }
        let http = reqwest::Client::new();
        let api = client(&self.base).expect("client");
        let every = Duration::from_secs_f64(1.0 / f64::from(rate));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut n = start;
        let mut tasks = tokio::task::JoinSet::new();
        while stop.load(Ordering::SeqCst) == 0 {
            ticks.tick().await;
            n += 1;
            let (writer, http, api, done, errors) = (
                Arc::clone(&self),
                http.clone(),
                api.clone(),
                Arc::clone(&done),
                Arc::clone(&errors),
            );
            tasks.spawn(async move {
                match writer.write(&http, &api, n).await {
                    Ok(()) => done.fetch_add(1, Ordering::SeqCst),
                    Err(err) => {
                        eprintln!("write {n}: {err:#}");
                        errors.fetch_add(1, Ordering::SeqCst)
                    }
                };
            });
        }
        while tasks.join_next().await.is_some() {}
        (done.load(Ordering::SeqCst), errors.load(Ordering::SeqCst))
    }
}

/// A wrk Lua script that rotates over `paths`.
pub fn rotation_script(dir: &Path, paths: &[String]) -> anyhow::Result<std::path::PathBuf> {
    let mut script = String::from("local paths = {\n");
    for path in paths {
        script.push_str("  \"");
        script.push_str(path);
        script.push_str("\",\n");
    }
    script.push_str(
        "}\nlocal i = math.random(#paths)\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n",
    );
    let file = dir.join("rotate.lua");
    std::fs::write(&file, script)?;
    Ok(file)
}

/// The busy-fleet rows for `bin` (one format per pass, each rate in turn).
pub fn busy_fleet(
    bin: &Path,
    work: &Path,
    size: FleetSize,
    rates: &[u32],
    seconds: u32,
) -> anyhow::Result<(Vec<FleetRow>, f64)> {
    let data = work.join("fleet");
    let (mut child, base) = spawn_kiln(bin, &data, &["--upstream", "off"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let seeded = Instant::now();
    let digests = runtime.block_on(seed(&base, size))?;
    eprintln!(
        "busy fleet: seeded {} files and {} branches in {:.0} s",
        digests.len(),
        size.branches,
        seeded.elapsed().as_secs_f64()
    );
    let lease = runtime.block_on(claim_lease(&base))?;
    let writer = Arc::new(Writer {
        base: base.clone(),
        lease,
        digests,
        branches: size.branches,
        projects: size.projects,
    });
    let paths: Vec<String> = (0..size.pages)
        .map(|k| {
            format!(
                "/{}/+simple/p{:05}/",
                branch_name(k % size.branches),
                k * 7 % size.projects
            )
        })
        .collect();
    let script = rotation_script(work, &paths)?;
    let mut rows = Vec::new();
    let mut n = 0;
    for (format, accept) in [("JSON", crate::JSON), ("HTML", "text/html")] {
        crate::warm(&base, accept, &script)?;
        for &rate in rates {
            let stop = Arc::new(AtomicU64::new(0));
            let handle = runtime.spawn(Arc::clone(&writer).run(rate, n, Arc::clone(&stop)));
            let started = Instant::now();
            let load = crate::wrk_script(&base, accept, &script, seconds)?;
            stop.store(1, Ordering::SeqCst);
            let elapsed = started.elapsed().as_secs_f64();
            let (done, errors) = runtime.block_on(handle)?;
            n += done + errors + 1;
            eprintln!(
                "busy fleet {format} at {rate} writes/s: {:.0} req/s, p99 {:.2} ms ({done} writes, {errors} errors)",
                load.rps, load.p99_ms
            );
            rows.push(FleetRow {
                format,
                target_rate: rate,
                achieved_rate: done as f64 / elapsed,
                write_errors: errors,
                load,
            });
        }
    }
    let rss = crate::rss_mb(child.id(), "VmHWM")?;
    let _ = child.kill();
    let _ = child.wait();
    Ok((rows, rss))
}

pub fn print_fleet(label: &str, rows: &[FleetRow], rss: f64, size: FleetSize) {
    println!(
        "\n### Busy fleet — {label}: {} branch indexes over master ({} projects × {} versions), wrk over {} distinct project pages\n",
        size.branches, size.projects, size.versions, size.pages
    );
    println!("| pages | writes/s asked | writes/s done | req/s | p50 ms | p99 ms | vs no writes |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        let quiet = rows
            .iter()
            .find(|r| r.format == row.format && r.target_rate == 0)
            .map_or(row.load.rps, |r| r.load.rps);
        println!(
            "| {} | {} | {:.0}{} | {:.0} | {:.2} | {:.2} | {:.2} |",
            row.format,
            row.target_rate,
            row.achieved_rate,
            if row.write_errors > 0 {
                format!(" ({} errors)", row.write_errors)
            } else {
                String::new()
            },
            row.load.rps,
            row.load.p50_ms,
            row.load.p99_ms,
            row.load.rps / quiet
        );
    }
    println!("\nPeak server RSS: {rss:.0} MB");
}

/// Write throughput of two replicas on PostgreSQL + S3, and the same clients' ceiling.
pub struct WriteRates {
    /// Stage reports of one artifact, a new CI run id each.
    pub reports: f64,
    /// First claims of new releases.
    pub claims: f64,
    /// An authenticated API read answered from the replica's memory (the index view):
    /// what these clients, HTTP and token checks reach with no database work at all.
    pub ceiling: f64,
    /// Stage reports while a webhook hears every one (each report's transaction also
    /// queues a delivery).
    pub hooked_reports: f64,
    /// Those deliveries received per second, from the first report until the queue
    /// drained, by a receiver on loopback.
    pub deliveries: f64,
}

/// A webhook receiver on loopback that answers 200 and counts; answers its URL, the
/// count, and when the last delivery arrived.
async fn counting_receiver()
-> anyhow::Result<(String, Arc<AtomicU64>, Arc<std::sync::Mutex<Instant>>)> {
    let count = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (seen, at) = (count.clone(), last.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (seen, at) = (seen.clone(), at.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                *at.lock().unwrap() = Instant::now();
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, count, last))
}

/// Write throughput of two replicas on PostgreSQL + S3 (see [`WriteRates`]).
pub fn write_throughput(bin: &Path, work: &Path, seconds: u32) -> anyhow::Result<WriteRates> {
    let services = crate::backends::services().map_err(|e| anyhow::anyhow!(e))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let name = format!("bench_writes_{}", std::process::id());
    let backing = runtime.block_on(crate::backends::backing(services, &name));
    let mut args = vec![
        "--upstream".to_owned(),
        "off".to_owned(),
        "--webhook-allow-host".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    args.extend(backing.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut a, base_a) = spawn_kiln(bin, &work.join("writes-a"), &args)?;
    let (mut b, base_b) = spawn_kiln(bin, &work.join("writes-b"), &args)?;
    let bases = [base_a, base_b];
    let result = runtime.block_on(async {
        let http = reqwest::Client::new();
        let dist = Dist::wheel("reported", "1.0");
        upload(&http, &bases[0], "root/master", &dist).await?;
        let sha = dist.sha256();
        let reports = hammer(&bases, seconds, move |api, task, n| {
            let sha = sha.clone();
            async move {
                api.report_result(&passed(sha, format!("run-{task}-{n}"))?)
                    .await?;
                Ok(())
            }
        })
        .await?;
        let claims = hammer(&bases, seconds, |api, task, n| async move {
            let claim = ClaimBuild {
                builder: format!("bench-{task}"),
                retry: false,
                provenance: provenance("abcdef1"),
                target: None,
            };
            let view = api
                .claim_build(
                    &"root/master".parse()?,
                    &format!("claimed-{task}"),
                    &format!("1.{n}"),
                    &claim,
                )
                .await?;
            anyhow::ensure!(
                matches!(view.status, kiln::api::BuildStateView::Claimed { .. }),
                "{:?}",
                view.status
            );
            Ok(())
        })
        .await?;
        let ceiling = hammer(&bases, seconds, |api, _, _| async move {
            api.get_index(&"root/master".parse()?).await?;
            Ok(())
        })
        .await?;
        let (hooked_reports, deliveries) = hooked(&bases, seconds, dist.sha256()).await?;
        anyhow::Ok(WriteRates {
            reports,
            claims,
            ceiling,
            hooked_reports,
            deliveries,
        })
    });
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Stage reports while a webhook hears each (what queueing costs a report), and how fast
/// two replicas' senders deliver them while reports keep coming: (reports/s, deliveries/s).
async fn hooked(bases: &[String; 2], seconds: u32, sha: String) -> anyhow::Result<(f64, f64)> {
    let (url, received, last) = counting_receiver().await?;
    client(&bases[0])?
        .create_webhook(&kiln::api::WebhookRequest {
            pattern: kiln::domain::IndexPattern::Namespace("root".into()),
            url,
            events: vec![kiln::domain::WebhookEvent::StageResult],
            secret: None,
        })
        .await?;
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    let hooked_reports = hammer(bases, seconds, move |api, task, n| {
        let (sha, counted) = (sha.clone(), counted.clone());
        async move {
            api.report_result(&passed(sha, format!("hooked-{task}-{n}"))?)
                .await?;
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
    .await?;
    let queued = sent.load(Ordering::SeqCst);
    let drained = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::SeqCst) < queued {
        anyhow::ensure!(
            Instant::now() < drained,
            "only {} of {queued} deliveries arrived in 5 minutes",
            received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = last.lock().unwrap().duration_since(started);
    Ok((hooked_reports, queued as f64 / took.as_secs_f64()))
}

/// Runs `op` from 32 tasks (alternating replicas) for `seconds`; answers successes/s.
async fn hammer<F, Fut>(bases: &[String; 2], seconds: u32, op: F) -> anyhow::Result<f64>
where
    F: Fn(Client, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for task in 0..32 {
        let api = client(&bases[task % 2])?;
        let op = op.clone();
        tasks.spawn(async move {
            let mut done = 0_u64;
            while Instant::now() < deadline {
                op(api.clone(), task, done).await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
