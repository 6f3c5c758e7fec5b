//! Kiln beside devpi-server (and nginx as a static reference), in one run on one machine.
//!
//! ```text
//! cargo run --release --example bench            # full run (a few minutes)
//! cargo run --release --example bench -- --quick # 3 s load phases instead of 10 s
//! cargo run --release --example bench -- --ci     # only the CI-hook figures (seconds)
//! cargo run --release --example bench -- --mirror # only the caching-proxy figures
//! cargo run --release --example bench -- --scale  # only the server table (no CI/mirror)
//! cargo run --release --example bench -- --fleet  # only the busy-fleet pages (see fleet.rs)
//! cargo run --release --example bench -- --writes # only the PostgreSQL write throughput
//! cargo run --release --example bench -- --big    # only the 100,000-project index (see big.rs)
//! cargo run --release --example bench -- --ui     # only the web UI's pages (see ui.rs)
//! cargo run --release --example bench -- --gc     # only garbage collection and retention
//! KILN_BENCH_BIN=/path/to/kiln cargo run …      # measure another build (before/after)
//! ```
//!
//! It installs devpi-server, devpi-client, twine, pip and uv into `target/bench-venv` (from
//! PyPI) on first use, builds the release `kiln` binary, generates a synthetic set (500
//! small wheels over 50 projects, one ~50 MB wheel, a 20-package dependency chain), and for
//! each server measures: start-up to healthy, idle RSS, twine upload files/s, simple-page
//! requests/s and p50/p99 latency with `wrk -t2 -c32` (HTML and JSON), large-file download
//! MB/s, cold `pip install` and `uv pip install` of the chain, and peak RSS. It prints a
//! Markdown table for `docs/benchmarks.md`. Everything binds to 127.0.0.1.
//!
//! The CI-hook part measures `kiln ensure` when the wheel is already on the branch index
//! (whole process, start to exit; beside `devpi list` answering the same question), and
//! how long a waiter long-polling a build takes to see it complete.
//!
//! The mirror part serves a 20-package dependency tree from a local upstream (an HTML
//! simple index on loopback that counts its requests) and times cold and warm
//! `pip install` and `uv pip install` of it through Kiln's mirror and devpi-server's
//! mirror of that same upstream, each server started fresh per client.
//!
//! The server table also has Kiln on PostgreSQL + S3: one replica, and two replicas behind
//! nginx (round robin), on a temporary PostgreSQL cluster and moto's S3 server on loopback
//! (started as the `api_pg_s3` tests start them; the rows are skipped with a reason when
//! PostgreSQL, moto or nginx are missing).
#![expect(
    clippy::cast_precision_loss,
    reason = "benchmark figures are printed with a few digits; f64 is plenty"
)]

#[path = "../tests/support/backends.rs"]
mod backends;
#[path = "bench/big.rs"]
mod big;
#[path = "../tests/support/dist.rs"]
mod dist;
#[path = "bench/fleet.rs"]
mod fleet;
#[path = "bench/gc.rs"]
mod gc;
#[path = "bench/retention.rs"]
mod retention;
#[path = "bench/ui.rs"]
mod ui;
#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dist::Dist;

const PROJECTS: usize = 50;
const VERSIONS: usize = 10;
const CHAIN: usize = 20;
const LARGE_BYTES: usize = 50 * 1024 * 1024;
const PAGE_PROJECT: &str = "bench-proj-00";
const JSON: &str = "application/vnd.pypi.simple.v1+json";
const DEVPI_PASSWORD: &str = "bench-password";

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let ci_only = std::env::args().any(|a| a == "--ci");
    let mirror_only = std::env::args().any(|a| a == "--mirror");
    let scale_only = std::env::args().any(|a| a == "--scale");
    let fleet_only = std::env::args().any(|a| a == "--fleet");
    let writes_only = std::env::args().any(|a| a == "--writes");
    let big_only = std::env::args().any(|a| a == "--big");
    let ui_only = std::env::args().any(|a| a == "--ui");
    let gc_only = std::env::args().any(|a| a == "--gc");
    let load_seconds = if quick { 3 } else { 10 };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if fleet_only || writes_only || big_only || ui_only || gc_only {
        let kiln_bin = build_kiln(&root)?;
        let work = tempfile::tempdir()?;
        if gc_only {
            gc::print_gc(&gc::gc_figures(&kiln_bin, work.path())?);
            retention::print_retention(&retention::retention_figures(&kiln_bin, work.path())?);
        }
        if ui_only {
            ui_figures(&kiln_bin, work.path())?;
        }
        if big_only {
            big_figures(&kiln_bin, work.path(), quick, load_seconds)?;
        }
        if fleet_only {
            busy_fleet_figures(&kiln_bin, work.path(), quick, load_seconds)?;
        }
        if writes_only {
            write_figures(&kiln_bin, work.path(), load_seconds);
        }
        return Ok(());
    }
    let venv = ensure_venv(&root)?;
    let kiln_bin = build_kiln(&root)?;
    let work = tempfile::tempdir()?;
    let (mirror, ci) = if scale_only {
        (Vec::new(), None)
    } else {
        let mirror = mirror_figures(&kiln_bin, &venv, work.path())?;
        if mirror_only {
            print_mirror(&mirror);
            return Ok(());
        }
        let ci = ci_hooks(&kiln_bin, &venv, work.path())?;
        if ci_only {
            print_ci(&ci);
            return Ok(());
        }
        (mirror, Some(ci))
    };
    let sets = generate(work.path())?;
    eprintln!(
        "generated {} small wheels, a {} MB wheel and a {CHAIN}-package chain",
        sets.small.len(),
        LARGE_BYTES / 1024 / 1024
    );

    let mut rows = Vec::new();
    let kiln = Target::start_kiln(&kiln_bin, &work.path().join("kiln"))?;
    rows.push(measure(&kiln, &venv, &sets, load_seconds, work.path())?);
    let page_html = http_get(&format!("{}{PAGE_PROJECT}/", kiln.simple), "text/html")?;
    drop(kiln);
    let devpi = Target::start_devpi(&venv, &work.path().join("devpi"))?;
    rows.push(measure(&devpi, &venv, &sets, load_seconds, work.path())?);
    drop(devpi);
    let peryx = Target::start_peryx(&venv, &work.path().join("peryx"))?;
    rows.push(measure(&peryx, &venv, &sets, load_seconds, work.path())?);
    drop(peryx);
    if let Some(row) = nginx_reference(work.path(), &page_html, &sets.large, load_seconds)? {
        rows.push(row);
    }
    match Target::start_kiln_accel(&kiln_bin, work.path()) {
        Ok(target) => rows.push(measure(&target, &venv, &sets, load_seconds, work.path())?),
        Err(why) => eprintln!("skipping Kiln behind nginx with --accel-redirect: {why:#}"),
    }
    for replicas in [1, 2] {
        match Target::start_kiln_shared(&kiln_bin, work.path(), replicas) {
            Ok(target) => rows.push(measure(&target, &venv, &sets, load_seconds, work.path())?),
            Err(why) => eprintln!("skipping Kiln on PostgreSQL + S3 ×{replicas}: {why:#}"),
        }
    }
    print_table(&rows, load_seconds);
    if let Some(ci) = &ci {
        print_ci(ci);
        print_mirror(&mirror);
    }
    busy_fleet_figures(&kiln_bin, work.path(), quick, load_seconds)?;
    write_figures(&kiln_bin, work.path(), load_seconds);
    big_figures(&kiln_bin, work.path(), quick, load_seconds)?;
    ui_figures(&kiln_bin, work.path())?;
    Ok(())
}

/// The web UI's render times (see `bench/ui.rs`).
fn ui_figures(bin: &Path, work: &Path) -> anyhow::Result<()> {
    let (populate_s, rows) = ui::ui_pages(bin, work)?;
    println!(
        "\n### Web UI — {}: {} projects × {} versions = {} releases on root/master, 2 stages each (populated in {populate_s:.0} s)\n\n| page | path | bytes | p50 ms | p99 ms |\n|---|---|---|---|---|",
        bin.display(),
        ui::PROJECTS,
        ui::VERSIONS,
        ui::PROJECTS * ui::VERSIONS
    );
    for row in rows {
        println!(
            "| {} | `{}` | {} | {:.2} | {:.2} |",
            row.page, row.path, row.bytes, row.p50_ms, row.p99_ms
        );
    }
    Ok(())
}

/// The 100,000-project table (see `bench/big.rs`); a tenth of it with `--quick`.
fn big_figures(bin: &Path, work: &Path, quick: bool, seconds: u32) -> anyhow::Result<()> {
    let projects = if quick {
        big::PROJECTS / 10
    } else {
        big::PROJECTS
    };
    let figures = big::big_index(bin, work, projects, seconds)?;
    big::print_big(&figures, projects);
    Ok(())
}

/// The busy-fleet table (see `bench/fleet.rs`).
fn busy_fleet_figures(bin: &Path, work: &Path, quick: bool, seconds: u32) -> anyhow::Result<()> {
    let size = if quick {
        fleet::FleetSize::QUICK
    } else {
        fleet::FleetSize::FULL
    };
    let (rows, rss) = fleet::busy_fleet(bin, work, size, &[0, 10, 50, 200], seconds)?;
    fleet::print_fleet(&bin.display().to_string(), &rows, rss, size);
    Ok(())
}

/// The write-throughput line (see `bench/fleet.rs`); skipped without PostgreSQL.
fn write_figures(bin: &Path, work: &Path, seconds: u32) {
    match fleet::write_throughput(bin, work, seconds) {
        Ok(rates) => println!(
            "\n### Write throughput — {}: PostgreSQL + S3, 2 replicas, 32 clients\n\n| stage reports/s | lease claims/s | ceiling: API reads from memory/s | reports/s with a webhook | its deliveries/s |\n|---|---|---|---|---|\n| {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            bin.display(),
            rates.reports,
            rates.claims,
            rates.ceiling,
            rates.hooked_reports,
            rates.deliveries
        ),
        Err(why) => eprintln!("skipping the write throughput: {why:#}"),
    }
}

/// Packages in the mirrored dependency tree.
const TREE: usize = 20;

/// Cold and warm installs of the tree through one server's mirror, with one client.
struct MirrorRow {
    server: &'static str,
    tool: &'static str,
    cold_s: f64,
    warm_s: f64,
    cold_upstream: usize,
    warm_upstream: usize,
}

/// `tree-00` needs `tree-01` and `tree-02`, `tree-01` needs `tree-03` and `tree-04`, …
fn mirror_tree() -> Vec<Dist> {
    (0..TREE)
        .map(|i| {
            let requires: Vec<String> = [2 * i + 1, 2 * i + 2]
                .into_iter()
                .filter(|c| *c < TREE)
                .map(|c| format!("Requires-Dist: tree-{c:02}"))
                .collect();
            let headers: Vec<&str> = requires.iter().map(String::as_str).collect();
            Dist::wheel_with(&format!("tree-{i:02}"), "1.0", &headers, "")
        })
        .collect()
}

fn mirror_figures(kiln_bin: &Path, venv: &Path, work: &Path) -> anyhow::Result<Vec<MirrorRow>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let upstream = runtime.block_on(upstream::Upstream::start(
        upstream::PageStyle::Html,
        &mirror_tree(),
    ));
    let total = || upstream.all_requests().values().sum::<usize>();
    let mut rows = Vec::new();
    for tool in ["pip", "uv"] {
        // One untimed install straight from the upstream, so neither server's cold run
        // pays for loading the tool's own files from disk.
        install(venv, tool, &upstream.simple_url, work, "tree-00")?;
        for server in ["Kiln", "devpi-server"] {
            let dir = work.join(format!("mirror-{server}-{tool}"));
            let (target, index) = if server == "Kiln" {
                let target =
                    Target::start_kiln_with(kiln_bin, &dir, &["--upstream", &upstream.simple_url])?;
                let index = target.simple.clone();
                (target, index)
            } else {
                let target = Target::start_devpi_mirror(venv, &dir, &upstream.simple_url)?;
                let index = target.simple.clone();
                (target, index)
            };
            let before = total();
            let cold_s = install(venv, tool, &index, work, "tree-00")?;
            let after_cold = total();
            // Warm: best of three, each into a fresh target with no client cache.
            let warm_s = (0..3).try_fold(f64::INFINITY, |best, _| {
                install(venv, tool, &index, work, "tree-00").map(|s| best.min(s))
            })?;
            rows.push(MirrorRow {
                server,
                tool,
                cold_s,
                warm_s,
                cold_upstream: after_cold - before,
                warm_upstream: total() - after_cold,
            });
            drop(target);
        }
    }
    Ok(rows)
}

fn print_mirror(rows: &[MirrorRow]) {
    println!(
        "\n| {TREE}-package tree through a mirror | client | cold install (s) | warm install, best of 3 (s) | upstream requests cold / warm |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {:.2} | {} / {} |",
            r.server, r.tool, r.cold_s, r.warm_s, r.cold_upstream, r.warm_upstream
        );
    }
}

/// CI-hook figures, in milliseconds.
struct CiFigures {
    ensure: Vec<f64>,
    devpi_list: Vec<f64>,
    waiter: Vec<f64>,
}

const ENSURE_RUNS: usize = 30;
const WAIT_ROUNDS: usize = 20;

fn ci_hooks(kiln_bin: &Path, venv: &Path, work: &Path) -> anyhow::Result<CiFigures> {
    let kiln = Target::start_kiln(kiln_bin, &work.join("kiln-ci"))?;
    let base = kiln.upload.trim_end_matches("root/master/").to_owned();
    // A project whose "build" copies a prepared wheel, so only Kiln's own work is timed.
    let project = work.join("ci-project");
    std::fs::create_dir_all(&project)?;
    std::fs::write(
        project.join("pyproject.toml"),
        "[project]\nname = \"kiln-sample\"\nversion = \"1.4\"\n",
    )?;
    let wheel = Dist::wheel("kiln-sample", "1.4.57.dev0+feature.bench").write_to(&project);
    let ensure = || {
        let mut command = Command::new(kiln_bin);
        command
            .args([
                "ensure",
                "--branch",
                "feature/bench",
                "--build-number",
                "57",
            ])
            .arg("--build-cmd")
            .arg(format!("cp '{}' \"$KILN_DIST_DIR\"/", wheel.display()))
            .current_dir(&project)
            .env("KILN_SERVER", &base)
            .env("KILN_TOKEN", &kiln.password)
            // The project is no git checkout: name the commit, as a CI variable would.
            .env("KILN_COMMIT", "abcdef1234567")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI");
        command
    };
    run_ok(&mut ensure(), "kiln ensure (first run builds)")?;
    let mut ensure_ms = Vec::new();
    for _ in 0..ENSURE_RUNS {
        let started = Instant::now();
        run_ok(&mut ensure(), "kiln ensure")?;
        ensure_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let waiter_ms = waiter_latency(&base, &kiln.password, &project)?;
    drop(kiln);

    let devpi = Target::start_devpi(venv, &work.join("devpi-ci"))?;
    twine(venv, &devpi, std::slice::from_ref(&wheel))?;
    let client_dir = work.join("devpi-ci/client");
    let mut devpi_list_ms = Vec::new();
    for _ in 0..ENSURE_RUNS {
        let started = Instant::now();
        run_ok(
            Command::new(venv.join("bin/devpi"))
                .arg("--clientdir")
                .arg(&client_dir)
                .args(["list", "kiln-sample==1.4.57", "--index", "root/bench"]),
            "devpi list",
        )?;
        devpi_list_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(CiFigures {
        ensure: ensure_ms,
        devpi_list: devpi_list_ms,
        waiter: waiter_ms,
    })
}

/// Claims a build, parks a waiter on the long poll, completes the build, and times how
/// long after `complete` returns the waiter has its answer.
fn waiter_latency(base: &str, token: &str, dir: &Path) -> anyhow::Result<Vec<f64>> {
    use kiln::api::{BuildStateView, ClaimBuild, LeaseBody};
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = kiln::client::Client::new(base, Some(token.to_owned()))?;
        let index: kiln::domain::IndexName = "root/master".parse()?;
        let mut figures = Vec::new();
        for round in 0..WAIT_ROUNDS {
            let version = format!("9.0.{round}");
            let view = client
                .claim_build(
                    &index,
                    "bench-wait",
                    &version,
                    &ClaimBuild {
                        builder: "bench".into(),
                        retry: false,
                        provenance: kiln::domain::Provenance::of_commit(
                            "b0b0b0b".parse().map_err(anyhow::Error::msg)?,
                        ),
                        target: None,
                    },
                )
                .await?;
            let BuildStateView::Claimed { lease_id, .. } = view.status else {
                bail!("expected to claim bench-wait {version}, got {view:?}");
            };
            let waiter = {
                let (client, index, version) = (client.clone(), index.clone(), version.clone());
                tokio::spawn(async move {
                    let view = client
                        .show_build(
                            &index,
                            "bench-wait",
                            &version,
                            Some(Duration::from_secs(30)),
                        )
                        .await;
                    (Instant::now(), view)
                })
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let wheel = Dist::wheel("bench-wait", &version).write_to(dir);
            client
                .upload_file(&index, &wheel, "bench-wait", &version, Some(&lease_id))
                .await?;
            let lease = LeaseBody {
                lease_id,
                error_tail: None,
                target: None,
            };
            let started = Instant::now();
            client
                .lease_action(&index, "bench-wait", &version, "complete", &lease)
                .await?;
            let (seen, view) = waiter.await?;
            if !matches!(view?.status, BuildStateView::Ready { .. }) {
                bail!("the waiter did not see bench-wait {version} ready");
            }
            figures.push(seen.saturating_duration_since(started).as_secs_f64() * 1000.0);
        }
        Ok(figures)
    })
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 - 1.0) * p).round();
    // the rank is within 0..len by construction
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "0 <= rank < len"
    )]
    sorted[rank as usize]
}

fn print_ci(ci: &CiFigures) {
    println!("\n| CI hook | p50 (ms) | p90 (ms) | max (ms) | runs |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, values: &[f64]| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} |",
            percentile(values, 0.5),
            percentile(values, 0.9),
            percentile(values, 1.0),
            values.len()
        );
    };
    row(
        "`kiln ensure`, wheel already on the branch index (whole process)",
        &ci.ensure,
    );
    row(
        "`devpi list pkg==ver` on devpi-server (whole process; the nearest devpi question)",
        &ci.devpi_list,
    );
    row(
        "waiter sees a completed build (after `complete` returns, long poll)",
        &ci.waiter,
    );
}

/// One server under test.
struct Target {
    name: &'static str,
    child: Child,
    /// More processes of this target: a second replica, the load balancer.
    others: Vec<Child>,
    /// The server processes whose memory is reported (summed).
    server_pids: Vec<u32>,
    /// Simple index URL of the benchmark index.
    simple: String,
    /// Upload URL and credentials for twine.
    upload: String,
    user: &'static str,
    password: String,
    startup: Duration,
    idle_rss_mb: f64,
}

impl Drop for Target {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(&mut self.others) {
            stop(child);
        }
    }
}

impl Target {
    fn start_kiln(bin: &Path, data: &Path) -> anyhow::Result<Self> {
        Self::start_kiln_with(bin, data, &["--upstream", "off"])
    }

    fn start_kiln_with(bin: &Path, data: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let started = Instant::now();
        let (child, base) = spawn_kiln(bin, data, extra)?;
        let startup = started.elapsed();
        let idle_rss_mb = rss_mb(child.id(), "VmRSS")?;
        Ok(Self {
            name: "Kiln (SQLite + local dir)",
            server_pids: vec![child.id()],
            child,
            others: Vec::new(),
            simple: format!("{base}root/master/+simple/"),
            upload: format!("{base}root/master/"),
            user: "__token__",
            password: KILN_TOKEN.to_owned(),
            startup,
            idle_rss_mb,
        })
    }

    /// Kiln on a fresh PostgreSQL database and S3 bucket: one replica, or `replicas`
    /// behind nginx (round robin), like a deployment behind a load balancer.
    fn start_kiln_shared(bin: &Path, work: &Path, replicas: usize) -> anyhow::Result<Self> {
        let services = backends::services().map_err(|e| anyhow::anyhow!(e))?;
        if replicas > 1 {
            which("nginx")?;
        }
        let name = format!("bench_shared_{replicas}");
        let backing = tokio::runtime::Runtime::new()?.block_on(backends::backing(services, &name));
        let mut args = vec!["--upstream".to_owned(), "off".to_owned()];
        args.extend(backing.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let mut first = Self::start_kiln_with(bin, &work.join(format!("{name}-0")), &args)?;
        first.name = if replicas == 1 {
            "Kiln (PostgreSQL + S3, 1 replica)"
        } else {
            "Kiln (PostgreSQL + S3, 2 replicas behind nginx)"
        };
        if replicas == 1 {
            first.startup = started.elapsed();
            return Ok(first);
        }
        let mut upstreams = vec![first.upload.clone()];
        for n in 1..replicas {
            let (child, base) = spawn_kiln(bin, &work.join(format!("{name}-{n}")), &args)?;
            upstreams.push(base);
            first.server_pids.push(child.id());
            first.idle_rss_mb += rss_mb(child.id(), "VmRSS")?;
            first.others.push(child);
        }
        let mut hosts = String::new();
        for upstream in &upstreams {
            hosts.push_str("server ");
            hosts.push_str(host_of(upstream));
            hosts.push_str("; ");
        }
        let (lb, base) = start_nginx(
            &work.join(format!("{name}-nginx")),
            &format!("upstream kiln {{ {hosts} keepalive 64; }}"),
            "",
        )?;
        first.others.push(lb);
        first.startup = started.elapsed();
        first.simple = format!("{base}root/master/+simple/");
        first.upload = format!("{base}root/master/");
        Ok(first)
    }

    /// Kiln on the embedded default behind nginx, with `--accel-redirect`: Kiln answers
    /// who may download what, nginx sends the file from the storage directory.
    fn start_kiln_accel(bin: &Path, work: &Path) -> anyhow::Result<Self> {
        let data = work.join("kiln-accel");
        let started = Instant::now();
        let mut target = Self::start_kiln_with(
            bin,
            &data,
            &["--upstream", "off", "--accel-redirect", "/_kiln_storage/"],
        )?;
        target.name = "Kiln (SQLite + local dir) behind nginx, --accel-redirect";
        let (lb, base) = start_nginx(
            &work.join("kiln-accel-nginx"),
            &format!(
                "upstream kiln {{ server {}; keepalive 64; }}",
                host_of(&target.upload)
            ),
            &format!(
                "location /_kiln_storage/ {{ internal; alias {}/; }}",
                data.join("storage").display()
            ),
        )?;
        target.others.push(lb);
        target.startup = started.elapsed();
        target.simple = format!("{base}root/master/+simple/");
        target.upload = format!("{base}root/master/");
        Ok(target)
    }

    /// peryx (a Rust index, `pip install peryx`) with one hosted PyPI index that takes
    /// twine uploads with a token, logging warnings only (as Kiln runs here).
    fn start_peryx(venv: &Path, dir: &Path) -> anyhow::Result<Self> {
        let bin = venv.join("bin/peryx");
        std::fs::create_dir_all(dir)?;
        let config = dir.join("peryx.toml");
        std::fs::write(
            &config,
            format!(
                "[[index]]\nname = \"hosted\"\necosystem = \"pypi\"\nhosted = true\nanonymous_read = true\n\n\
                 [[index.access_token]]\nname = \"bench\"\nsecret = \"{PERYX_SECRET}\"\nactions = [\"read\", \"write\"]\n"
            ),
        )?;
        let data = dir.join("data");
        run_ok(
            Command::new(&bin)
                .arg("init")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(&data),
            "peryx init",
        )?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}/");
        let started = Instant::now();
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_healthy(&format!("{base}hosted/simple/"))?;
        let startup = started.elapsed();
        let idle_rss_mb = rss_mb(child.id(), "VmRSS")?;
        Ok(Self {
            name: "peryx (hosted index)",
            server_pids: vec![child.id()],
            child,
            others: Vec::new(),
            simple: format!("{base}hosted/simple/"),
            upload: format!("{base}hosted/"),
            user: "__token__",
            password: PERYX_SECRET.to_owned(),
            startup,
            idle_rss_mb,
        })
    }

    fn start_devpi(venv: &Path, dir: &Path) -> anyhow::Result<Self> {
        let mut target = Self::start_devpi_server(venv, dir, true)?;
        let base = target.upload.clone();
        devpi_client(
            venv,
            dir,
            &["index", "-c", "root/bench", "bases=", "volatile=False"],
        )?;
        target.simple = format!("{base}root/bench/+simple/");
        target.upload = format!("{base}root/bench/");
        Ok(target)
    }

    /// devpi-server with `root/up` mirroring `upstream` and `root/dev` on top of it.
    fn start_devpi_mirror(venv: &Path, dir: &Path, upstream: &str) -> anyhow::Result<Self> {
        let mut target = Self::start_devpi_server(venv, dir, false)?;
        let base = target.upload.clone();
        devpi_client(
            venv,
            dir,
            &[
                "index",
                "-c",
                "root/up",
                "type=mirror",
                &format!("mirror_url={upstream}"),
            ],
        )?;
        devpi_client(venv, dir, &["index", "-c", "root/dev", "bases=root/up"])?;
        target.simple = format!("{base}root/dev/+simple/");
        target.upload = format!("{base}root/dev/");
        Ok(target)
    }

    /// A logged-in devpi-server; `upload` holds its base URL until the caller sets it.
    fn start_devpi_server(venv: &Path, dir: &Path, offline: bool) -> anyhow::Result<Self> {
        let server_dir = dir.join("server");
        run_ok(
            Command::new(venv.join("bin/devpi-init"))
                .arg("--serverdir")
                .arg(&server_dir)
                .args(["--root-passwd", DEVPI_PASSWORD, "--no-root-pypi"]),
            "devpi-init",
        )?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}/");
        let started = Instant::now();
        let mut server = Command::new(venv.join("bin/devpi-server"));
        server.arg("--serverdir").arg(&server_dir).args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ]);
        if offline {
            server.arg("--offline-mode");
        }
        let child = server.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        wait_healthy(&format!("{base}+api"))?;
        let startup = started.elapsed();
        let idle_rss_mb = rss_mb(child.id(), "VmRSS")?;
        devpi_client(venv, dir, &["use", &base])?;
        devpi_client(venv, dir, &["login", "root", "--password", DEVPI_PASSWORD])?;
        Ok(Self {
            name: "devpi-server",
            server_pids: vec![child.id()],
            child,
            others: Vec::new(),
            simple: String::new(),
            upload: base,
            user: "root",
            password: DEVPI_PASSWORD.to_owned(),
            startup,
            idle_rss_mb,
        })
    }
}

/// The upload token of the peryx the benchmark starts.
const PERYX_SECRET: &str = "bench-peryx-secret-0123456789";

/// The admin token of every Kiln the benchmark starts.
const KILN_TOKEN: &str = "kiln_bench-admin-token-0123456789abcdef";

/// `host:port` of an `http://host:port/…` URL.
fn host_of(url: &str) -> &str {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Stops a server: SIGTERM first, so that nginx's master stops its workers (killed
/// outright, it leaves them running, holding the port and our output pipes), then
/// SIGKILL if it is still there after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg(child.id().to_string())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// nginx in front of the upstream block `upstream` (named `kiln`), with `locations` beside
/// the proxying `location /`; returns the process and its base URL once Kiln answers
/// through it.
fn start_nginx(root: &Path, upstream: &str, locations: &str) -> anyhow::Result<(Child, String)> {
    let nginx = which("nginx")?;
    std::fs::create_dir_all(root.join("tmp"))?;
    let port = free_port()?;
    let conf = format!(
        "daemon off; worker_processes 2; pid {root}/nginx.pid; error_log {root}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; tcp_nopush on; client_max_body_size 0; proxy_request_buffering off; proxy_buffering off;\n\
           client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;\n\
           {upstream}\n\
           server {{ listen 127.0.0.1:{port}; {locations} location / {{ proxy_pass http://kiln; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $http_host; }} }} }}\n",
        root = root.display()
    );
    std::fs::write(root.join("nginx.conf"), conf)?;
    let mut lb = Command::new(nginx)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-p")
        .arg(root)
        .stderr(Stdio::inherit())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}/");
    if let Err(e) = wait_healthy(&format!("{base}+health")) {
        stop(&mut lb);
        return Err(e);
    }
    Ok((lb, base))
}

/// Starts `kiln serve` on a free port and waits until it is healthy; returns its base URL.
fn spawn_kiln(bin: &Path, data: &Path, extra: &[&str]) -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}/");
    let child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .env("KILN_ADMIN_TOKEN", KILN_TOKEN)
        .env("KILN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    wait_healthy(&format!("{base}+health"))?;
    Ok((child, base))
}

/// Runs the devpi client with its state in `dir/client`.
fn devpi_client(venv: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    run_ok(
        Command::new(venv.join("bin/devpi"))
            .arg("--clientdir")
            .arg(dir.join("client"))
            .args(args),
        "devpi client",
    )
}

struct Sets {
    small: Vec<PathBuf>,
    large: Dist,
    large_path: PathBuf,
    chain: Vec<PathBuf>,
}

fn generate(dir: &Path) -> anyhow::Result<Sets> {
    let small_dir = dir.join("small");
    let chain_dir = dir.join("chain");
    let large_dir = dir.join("large");
    for d in [&small_dir, &chain_dir, &large_dir] {
        std::fs::create_dir_all(d)?;
    }
    let mut small = Vec::new();
    for p in 0..PROJECTS {
        for v in 0..VERSIONS {
            small.push(
                Dist::wheel(&format!("bench-proj-{p:02}"), &format!("1.{v}")).write_to(&small_dir),
            );
        }
    }
    let chain = (0..CHAIN)
        .map(|i| {
            let requires = format!("Requires-Dist: chain-{:02}", i + 1);
            let headers: Vec<&str> = if i + 1 < CHAIN {
                vec![requires.as_str()]
            } else {
                vec![]
            };
            Dist::wheel_with(&format!("chain-{i:02}"), "1.0", &headers, "").write_to(&chain_dir)
        })
        .collect();
    // Pseudo-random (xorshift) bytes: incompressible, so no transfer gets a free ride.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..LARGE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let large = Dist::wheel_with_data("bench-large", "1.0", data);
    let large_path = large.write_to(&large_dir);
    Ok(Sets {
        small,
        large,
        large_path,
        chain,
    })
}

#[derive(Default)]
struct Row {
    name: String,
    startup_ms: Option<f64>,
    idle_rss_mb: Option<f64>,
    peak_rss_mb: Option<f64>,
    uploads_per_s: Option<f64>,
    html: Option<Load>,
    json: Option<Load>,
    download_mb_s: Option<f64>,
    pip_s: Option<f64>,
    uv_s: Option<f64>,
}

#[derive(Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn measure(
    target: &Target,
    venv: &Path,
    sets: &Sets,
    seconds: u32,
    work: &Path,
) -> anyhow::Result<Row> {
    eprintln!("== {}", target.name);
    let started = Instant::now();
    twine(venv, target, &sets.small)?;
    let uploads_per_s = sets.small.len() as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "uploaded {} files: {uploads_per_s:.1} files/s",
        sets.small.len()
    );
    twine(venv, target, std::slice::from_ref(&sets.large_path))?;
    twine(venv, target, &sets.chain)?;

    let page = format!("{}{PAGE_PROJECT}/", target.simple);
    let html = wrk(&page, "text/html", seconds)?;
    let json = wrk(&page, JSON, seconds)?;
    let large_url = file_url(&target.simple, &sets.large)?;
    let download_mb_s = download(&large_url, sets.large.bytes.len())?;
    // Best of two cold installs (no client cache either time): the first run of a Python
    // tool also pays for loading the interpreter's own files from disk.
    let chain = |tool| install(venv, tool, &target.simple, work, "chain-00");
    let pip_s = chain("pip")?.min(chain("pip")?);
    let uv_s = chain("uv")?.min(chain("uv")?);
    Ok(Row {
        name: target.name.to_owned(),
        startup_ms: Some(target.startup.as_secs_f64() * 1000.0),
        idle_rss_mb: Some(target.idle_rss_mb),
        peak_rss_mb: Some(
            target
                .server_pids
                .iter()
                .map(|pid| rss_mb(*pid, "VmHWM"))
                .sum::<anyhow::Result<f64>>()?,
        ),
        uploads_per_s: Some(uploads_per_s),
        html: Some(html),
        json: Some(json),
        download_mb_s: Some(download_mb_s),
        pip_s: Some(pip_s),
        uv_s: Some(uv_s),
    })
}

fn twine(venv: &Path, target: &Target, files: &[PathBuf]) -> anyhow::Result<()> {
    run_ok(
        Command::new(venv.join("bin/twine"))
            .args([
                "upload",
                "--non-interactive",
                "--disable-progress-bar",
                "--repository-url",
                &target.upload,
            ])
            .args(["-u", target.user, "-p", &target.password])
            .args(files),
        "twine upload",
    )
}

/// The URL of the large wheel, read from the server's own JSON page.
fn file_url(simple: &str, dist: &Dist) -> anyhow::Result<String> {
    let page_url = format!("{simple}{}/", dist.name);
    let body = http_get(&page_url, JSON)?;
    let page: serde_json::Value =
        serde_json::from_str(&body).context("parsing a JSON simple page")?;
    let relative = page["files"]
        .as_array()
        .and_then(|files| {
            files
                .iter()
                .find(|f| f["filename"] == dist.filename.as_str())
        })
        .and_then(|f| f["url"].as_str())
        .context("large wheel missing from its page")?;
    let url = url::Url::parse(&page_url)?.join(relative)?;
    let mut url = url.to_string();
    if let Some(hash) = url.find('#') {
        url.truncate(hash);
    }
    Ok(url)
}

fn wrk(url: &str, accept: &str, seconds: u32) -> anyhow::Result<Load> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Accept: {accept}"),
            url,
        ])
        .output()
        .context("running wrk (apt-get install wrk)")?;
    parse_wrk(&String::from_utf8_lossy(&output.stdout), url)
}

fn parse_wrk(text: &str, url: &str) -> anyhow::Result<Load> {
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:")
        .context("wrk printed no Requests/sec")?
        .parse()?;
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx responses from {url}:\n{text}");
    }
    Ok(Load {
        rps,
        p50_ms: parse_ms(field("50%").context("no p50")?)?,
        p99_ms: parse_ms(field("99%").context("no p99")?)?,
    })
}

/// wrk with a Lua script choosing each request's path, against `base`.
fn wrk_script(base: &str, accept: &str, script: &Path, seconds: u32) -> anyhow::Result<Load> {
    let output = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg("-s")
        .arg(script)
        .arg(base.trim_end_matches('/'))
        .output()
        .context("running wrk (apt-get install wrk)")?;
    parse_wrk(&String::from_utf8_lossy(&output.stdout), base)
}

fn parse_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        other => bail!("unknown wrk unit `{other}`"),
    })
}

/// Best of three downloads with curl, in MB/s.
fn download(url: &str, expected: usize) -> anyhow::Result<f64> {
    let mut best = 0.0_f64;
    for _ in 0..3 {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{time_total}",
                url,
            ])
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut parts = text.split_whitespace();
        let size: usize = parts.next().context("curl size")?.parse()?;
        let secs: f64 = parts.next().context("curl time")?.parse()?;
        if size != expected {
            bail!("downloaded {size} bytes from {url}, expected {expected}");
        }
        best = best.max(size as f64 / secs / 1e6);
    }
    Ok(best)
}

fn install(venv: &Path, tool: &str, index: &str, work: &Path, root: &str) -> anyhow::Result<f64> {
    let target = work.join(format!("install-{tool}-{}", free_port()?));
    let mut command = Command::new(venv.join(format!("bin/{tool}")));
    if tool == "pip" {
        command.args(["install", "--no-cache-dir", "--quiet"]);
    } else {
        command
            .args(["pip", "install", "--no-cache", "--quiet", "--python"])
            .arg(venv.join("bin/python"));
    }
    command
        .arg("--target")
        .arg(&target)
        .args(["--index-url", index, root]);
    for var in ["PIP_FIND_LINKS", "PIP_INDEX_URL", "UV_INDEX_URL"] {
        command.env_remove(var);
    }
    command
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("UV_NO_CONFIG", "1");
    let started = Instant::now();
    run_ok(&mut command, &format!("{tool} install"))?;
    Ok(started.elapsed().as_secs_f64())
}

/// nginx serving the same project page and large file as static files.
fn nginx_reference(
    work: &Path,
    page_html: &str,
    large: &Dist,
    seconds: u32,
) -> anyhow::Result<Option<Row>> {
    let Ok(nginx) = which("nginx") else {
        eprintln!("nginx not installed: skipping the static reference row");
        return Ok(None);
    };
    let root = work.join("nginx");
    std::fs::create_dir_all(root.join("www/page"))?;
    std::fs::write(root.join("www/page/index.html"), page_html)?;
    std::fs::write(root.join("www/large.whl"), &large.bytes)?;
    let port = free_port()?;
    let conf = format!(
        "daemon off; worker_processes 2; pid {root}/nginx.pid; error_log {root}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; tcp_nopush on;\n\
           client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;\n\
           server {{ listen 127.0.0.1:{port}; root {root}/www; }} }}\n",
        root = root.display()
    );
    std::fs::write(root.join("nginx.conf"), conf)?;
    let mut child = Command::new(nginx)
        .args(["-c"])
        .arg(root.join("nginx.conf"))
        .args(["-p"])
        .arg(&root)
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}/");
    let result = (|| -> anyhow::Result<Row> {
        wait_healthy(&format!("{base}page/"))?;
        let html = wrk(&format!("{base}page/"), "text/html", seconds)?;
        let download_mb_s = download(&format!("{base}large.whl"), large.bytes.len())?;
        Ok(Row {
            name: "nginx (static files, reference)".into(),
            html: Some(html),
            download_mb_s: Some(download_mb_s),
            ..Row::default()
        })
    })();
    stop(&mut child);
    result.map(Some)
}

fn print_table(rows: &[Row], seconds: u32) {
    let f = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
    };
    println!(
        "\n| server | start-up to healthy (ms) | idle RSS (MB) | peak RSS (MB) | twine uploads (files/s) | HTML page req/s | HTML p50 / p99 (ms) | JSON page req/s | JSON p50 / p99 (ms) | 50 MB download (MB/s) | pip install chain (s) | uv pip install chain (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let load = |l: Option<Load>| {
            l.map_or(("—".to_owned(), "—".to_owned()), |l| {
                (
                    format!("{:.0}", l.rps),
                    format!("{:.2} / {:.2}", l.p50_ms, l.p99_ms),
                )
            })
        };
        let (hr, hl) = load(r.html);
        let (jr, jl) = load(r.json);
        println!(
            "| {} | {} | {} | {} | {} | {hr} | {hl} | {jr} | {jl} | {} | {} | {} |",
            r.name,
            f(r.startup_ms, 0),
            f(r.idle_rss_mb, 1),
            f(r.peak_rss_mb, 1),
            f(r.uploads_per_s, 1),
            f(r.download_mb_s, 0),
            f(r.pip_s, 2),
            f(r.uv_s, 2),
        );
    }
    let named = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    if let Some(kiln) = named("Kiln (SQLite") {
        for peer in ["devpi-server", "peryx", "nginx"] {
            let Some(other) = named(peer) else { continue };
            println!(
                "\nKiln / {peer}: HTML req/s {}, JSON req/s {}, uploads {}, downloads {}, pip install {}, uv install {} (times: below 1× is faster).",
                ratio(kiln.html.map(|l| l.rps), other.html.map(|l| l.rps)),
                ratio(kiln.json.map(|l| l.rps), other.json.map(|l| l.rps)),
                ratio(kiln.uploads_per_s, other.uploads_per_s),
                ratio(kiln.download_mb_s, other.download_mb_s),
                ratio(kiln.pip_s, other.pip_s),
                ratio(kiln.uv_s, other.uv_s),
            );
        }
    }
    println!(
        "(wrk -t2 -c32 -d{seconds}s --latency; {} cores)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
}

fn ensure_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/bench-venv");
    let marker = venv.join(".kiln-bench-ready-2");
    if !marker.exists() {
        eprintln!(
            "installing devpi-server, devpi-client, peryx, twine, pip and uv into {}",
            venv.display()
        );
        run_ok(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
        run_ok(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "devpi-server",
                "devpi-client",
                "peryx==2026.1010.0",
                "twine==7.0.0",
                "uv==0.13.9",
                "pip==26.3",
            ]),
            "pip install devpi-server …",
        )?;
        std::fs::write(&marker, b"")?;
    }
    Ok(venv)
}

fn build_kiln(root: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("KILN_BENCH_BIN") {
        // Another build of Kiln (e.g. the commit before a change), for before/after rows.
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        Command::new(cargo).current_dir(root).args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "kiln",
        ]),
        "cargo build --release --bin kiln",
    )?;
    Ok(root.join("target/release/kiln"))
}

fn run_ok(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("{name} not found")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_healthy(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_status(url).is_ok_and(|s| s == 200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("{url} did not answer 200 within 60 s")
}

fn rss_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .context("no such field in /proc/PID/status")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// A minimal HTTP/1.1 GET over loopback (no client library needed for a benchmark probe).
fn http_request(url: &str, accept: &str) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("http URLs only")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).context("short response")?.parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    let chunked = text.split_once("\r\n\r\n").is_some_and(|(h, _)| {
        h.to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    });
    Ok((status, if chunked { dechunk(&body) } else { body }))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// Reads every page of `script` until a 2 s pass renders none (every page is in the
/// cache), at most ten passes; five passes for a Kiln that does not count (older builds).
fn warm(base: &str, accept: &str, script: &Path) -> anyhow::Result<()> {
    for pass in 0..10 {
        let before = cache_counts(base).ok();
        wrk_script(base, accept, script, 2)?;
        match (before, cache_counts(base).ok()) {
            (Some((_, before)), Some((_, after))) if after == before => return Ok(()),
            (None, _) if pass == 4 => return Ok(()),
            _ => {}
        }
    }
    eprintln!("warning: {base} still renders pages after ten warm-up passes");
    Ok(())
}

/// The page cache's hits and misses, from Kiln's `/+health`.
fn cache_counts(base: &str) -> anyhow::Result<(u64, u64)> {
    let health: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}+health"), "application/json")?)?;
    let count = |field: &str| {
        health["page_cache"][field]
            .as_u64()
            .context("no page_cache in /+health")
    };
    Ok((count("hits")?, count("misses")?))
}

fn http_status(url: &str) -> anyhow::Result<u16> {
    Ok(http_request(url, "*/*")?.0)
}

fn http_get(url: &str, accept: &str) -> anyhow::Result<String> {
    let (status, body) = http_request(url, accept)?;
    if status != 200 {
        bail!("GET {url} answered {status}");
    }
    Ok(body)
}
