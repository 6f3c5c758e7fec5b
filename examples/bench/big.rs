//! The scale figures: one index with `PROJECTS` projects and `PROJECTS × FILES_PER`
//! files on the embedded default. The rows are written straight into the SQLite file
//! between two starts of the server (uploading a million files through HTTP would take
//! the better part of an hour and measure uploads, not reads); the server then serves
//! them as it would serve uploads (same tables, same indexes).

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use sha2::Digest as _;

use crate::{KILN_TOKEN, Load, spawn_kiln};

pub const PROJECTS: usize = 100_000;
pub const FILES_PER: usize = 10;

/// What the scale run measured.
pub struct BigFigures {
    pub insert_s: f64,
    pub page: Load,
    pub list_cold_ms: f64,
    pub list_warm_ms: f64,
    pub list_bytes: usize,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    /// Page-cache hits and misses over the measured phase.
    pub hits_misses: (u64, u64),
}

async fn insert_rows(database: &str, projects: usize) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut db = sqlx::SqliteConnection::connect(database).await?;
    let master: i64 =
        sqlx::query_scalar("SELECT id FROM indexes WHERE namespace = 'root' AND name = 'master'")
            .fetch_one(&mut db)
            .await?;
    let mut tx = db.begin().await?;
    let rows_per_statement = 100;
    let total = projects * FILES_PER;
    let mut n = 0;
    while n < total {
        let batch = rows_per_statement.min(total - n);
        let blobs = vec!["(?, 1000, '2026-01-01T00:00:00Z')"; batch].join(", ");
        let files = vec!["(?, ?, ?, ?, 'wheel', ?, 1000, '2026-01-01T00:00:00Z', 'bench')"; batch]
            .join(", ");
        let digests: Vec<String> = (n..n + batch)
            .map(|i| format!("{:x}", sha2::Sha256::digest(i.to_le_bytes())))
            .collect();
        let blob_sql = format!("INSERT INTO blobs (sha256, size, created_at) VALUES {blobs}");
        let mut query = sqlx::query(&blob_sql);
        for digest in &digests {
            query = query.bind(digest);
        }
        query.execute(&mut *tx).await?;
        let file_sql = format!(
            "INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by) VALUES {files}"
        );
        let mut query = sqlx::query(&file_sql);
        for (i, digest) in (n..n + batch).zip(&digests) {
            let project = format!("p{:06}", i / FILES_PER);
            let version = format!("1.{}", i % FILES_PER);
            query = query
                .bind(master)
                .bind(project.clone())
                .bind(version.clone())
                .bind(format!("{project}-{version}-py3-none-any.whl"))
                .bind(digest);
        }
        query.execute(&mut *tx).await?;
        n += batch;
    }
    tx.commit().await?;
    Ok(())
}

fn timed_get(url: &str, accept: &str) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let body = crate::http_get(url, accept)?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, body.len()))
}

/// Seeds, restarts and measures.
pub fn big_index(
    bin: &Path,
    work: &Path,
    projects: usize,
    seconds: u32,
) -> anyhow::Result<BigFigures> {
    let data = work.join("big");
    let (mut child, _) = spawn_kiln(bin, &data, &["--upstream", "off"])?;
    let _ = child.kill();
    let _ = child.wait();
    let database = format!("sqlite://{}", data.join("kiln.db").display());
    let started = Instant::now();
    tokio::runtime::Runtime::new()?
        .block_on(insert_rows(&database, projects))
        .context("writing the rows")?;
    let insert_s = started.elapsed().as_secs_f64();
    eprintln!(
        "scale: wrote {} files of {projects} projects in {insert_s:.0} s",
        projects * FILES_PER
    );
    let (mut child, base) = spawn_kiln(bin, &data, &["--upstream", "off"])?;
    let _ = KILN_TOKEN;
    let list = format!("{base}root/master/+simple/");
    let (list_cold_ms, list_bytes) = timed_get(&list, crate::JSON)?;
    let (list_warm_ms, _) = timed_get(&list, crate::JSON)?;
    let paths: Vec<String> = (0..10_000)
        .map(|k| format!("/root/master/+simple/p{:06}/", k * 7 % projects))
        .collect();
    let script = crate::fleet::rotation_script(work, &paths)?;
    crate::warm(&base, crate::JSON, &script)?;
    let before = crate::cache_counts(&base)?;
    let page = crate::wrk_script(&base, crate::JSON, &script, seconds)?;
    let after = crate::cache_counts(&base)?;
    let rss_mb = crate::rss_mb(child.id(), "VmRSS")?;
    let peak_rss_mb = crate::rss_mb(child.id(), "VmHWM")?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(BigFigures {
        insert_s,
        page,
        list_cold_ms,
        list_warm_ms,
        list_bytes,
        rss_mb,
        peak_rss_mb,
        hits_misses: (after.0 - before.0, after.1 - before.1),
    })
}

pub fn print_big(figures: &BigFigures, projects: usize) {
    println!(
        "\n### Scale: {projects} projects, {} files on one index (embedded default)\n",
        projects * FILES_PER
    );
    println!(
        "| project page req/s | p50 ms | p99 ms | project list, first (ms) | project list, cached (ms) | list size (KB) | RSS after (MB) | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {:.0} | {:.0} |",
        figures.page.rps,
        figures.page.p50_ms,
        figures.page.p99_ms,
        figures.list_cold_ms,
        figures.list_warm_ms,
        figures.list_bytes / 1024,
        figures.rss_mb,
        figures.peak_rss_mb
    );
    println!(
        "\n(rows written in {:.0} s; wrk over 10,000 distinct project pages; page cache {} hits, {} misses while measured)",
        figures.insert_s, figures.hits_misses.0, figures.hits_misses.1
    );
}
