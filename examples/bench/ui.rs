//! The web UI's render time: an index with `PROJECTS × VERSIONS` = 1,000 releases, each
//! built (uploaded) and reported by two stages (one of them failing on every tenth
//! release, with a coloured log), on the embedded default. Each page is fetched
//! sequentially by one browser-like client (`Accept: text/html`); the times are the
//! server's whole answer as the client sees it over loopback.

use std::path::Path;
use std::time::Instant;

use futures_util::StreamExt as _;
use kiln::domain::Outcome;

use crate::dist::Dist;
use crate::fleet::{client, passed, upload};
use crate::spawn_kiln;

pub const PROJECTS: usize = 20;
pub const VERSIONS: usize = 50;
/// Requests per page.
const REQUESTS: usize = 200;

/// One page's timings.
pub struct UiRow {
    pub page: &'static str,
    pub path: String,
    pub bytes: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

async fn populate(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let api = client(base)?;
    let releases: Vec<(usize, usize)> = (0..PROJECTS)
        .flat_map(|p| (0..VERSIONS).map(move |v| (p, v)))
        .collect();
    let mut work = futures_util::stream::iter(releases)
        .map(|(p, v)| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let dist = Dist::wheel(&format!("ui-proj-{p:02}"), &format!("1.{v}"));
                upload(&http, base, "root/master", &dist).await?;
                let sha = dist.sha256();
                api.report_result(&passed(sha.clone(), format!("unit-{p}-{v}"))?)
                    .await?;
                let mut lint = passed(sha, format!("lint-{p}-{v}"))?;
                lint.stage = "lint".into();
                if v % 10 == 9 {
                    lint.outcome = Outcome::Fail;
                    lint.exit_code = Some(1);
                    lint.log_tail = "\u{1b}[1;31mE501\u{1b}[0m line too long\n".repeat(200);
                }
                api.report_result(&lint).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8);
    while let Some(done) = work.next().await {
        done?;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

/// Populates a fresh server and times each page.
pub fn ui_pages(bin: &Path, work: &Path) -> anyhow::Result<(f64, Vec<UiRow>)> {
    let (mut child, base) = spawn_kiln(bin, &work.join("ui"), &["--upstream", "off"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let populated = runtime.block_on(populate(&base));
    let populate_s = started.elapsed().as_secs_f64();
    let result = populated.and_then(|()| {
        let pages: [(&'static str, String); 6] = [
            ("home", String::new()),
            ("index (1,000 releases)", "root/master".into()),
            ("project (50 versions)", "root/master/ui-proj-07".into()),
            ("release (green)", "root/master/ui-proj-07/1.0".into()),
            (
                "release (failing, 10 kB log)",
                "root/master/ui-proj-07/1.9".into(),
            ),
            ("events", "+events".into()),
        ];
        pages
            .into_iter()
            .map(|(page, path)| {
                let url = format!("{base}{path}");
                let mut times = Vec::with_capacity(REQUESTS);
                let mut bytes = 0;
                for _ in 0..REQUESTS {
                    let started = Instant::now();
                    let body = crate::http_get(&url, "text/html")?;
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                    bytes = body.len();
                }
                times.sort_by(f64::total_cmp);
                Ok(UiRow {
                    page,
                    path: format!("/{path}"),
                    bytes,
                    p50_ms: percentile(&times, 0.5),
                    p99_ms: percentile(&times, 0.99),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
    });
    let _ = child.kill();
    let _ = child.wait();
    Ok((populate_s, result?))
}
