//! Garbage collection at scale, on the embedded default: 100,000 stored blobs that must
//! go (50,000 blob rows nothing names any more, as after deleting branch indexes, and
//! 50,000 objects no row names, as refused uploads and crashes leave) beside 10,000 listed
//! files that must stay. The rows and files are written straight into the data directory
//! between two starts of the server (uploading 110,000 files would measure uploads); the
//! collection is then one `POST /+api/v1/gc`, timed from the client, with the server's
//! peak RSS. A dry run is timed first (the same lists, nothing deleted).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::Digest as _;

use crate::{KILN_TOKEN, spawn_kiln};

/// Blob rows nothing names.
pub const UNNAMED: usize = 50_000;
/// Objects no row names.
pub const ORPHANS: usize = 50_000;
/// Listed files that stay.
pub const LISTED: usize = 10_000;
const BLOB_BYTES: usize = 1000;

/// What the run measured.
pub struct GcFigures {
    pub dry_run_s: f64,
    pub collect_s: f64,
    pub deleted: u64,
    pub freed_bytes: u64,
    pub peak_rss_mb: f64,
}

fn digest_of(i: usize) -> String {
    format!("{:x}", sha2::Sha256::digest(format!("gc-bench-{i}")))
}

/// Blob contents whose digest is `digest_of(i)`: not real (the store never re-hashes a
/// blob it deletes), so the file is just `BLOB_BYTES` bytes at the digest's key.
fn write_objects(storage: &Path, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    let bytes = vec![7u8; BLOB_BYTES];
    for i in range {
        let hex = digest_of(i);
        let dir = storage.join(format!("blobs/sha256/{}/{}", &hex[..2], &hex[2..4]));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&hex), &bytes)?;
    }
    Ok(())
}

async fn insert_rows(database: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut db = sqlx::SqliteConnection::connect(database).await?;
    let master: i64 =
        sqlx::query_scalar("SELECT id FROM indexes WHERE namespace = 'root' AND name = 'master'")
            .fetch_one(&mut db)
            .await?;
    let mut tx = db.begin().await?;
    // Rows 0..UNNAMED are unnamed; UNNAMED..UNNAMED+LISTED are listed on root/master.
    for chunk in (0..UNNAMED + LISTED).collect::<Vec<_>>().chunks(100) {
        let values = vec!["(?, 1000, '2026-01-01T00:00:00Z')"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO blobs (sha256, size, created_at) VALUES {values}");
        let mut query = sqlx::query(&sql);
        for i in chunk {
            query = query.bind(digest_of(*i));
        }
        query.execute(&mut *tx).await?;
    }
    for chunk in (UNNAMED..UNNAMED + LISTED).collect::<Vec<_>>().chunks(100) {
        let values = vec![
            "(?, ?, '1.0', ?, 'wheel', ?, 1000, '2026-01-01T00:00:00Z', 'bench')";
            chunk.len()
        ]
        .join(", ");
        let sql = format!(
            "INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by) VALUES {values}"
        );
        let mut query = sqlx::query(&sql);
        for i in chunk {
            query = query
                .bind(master)
                .bind(format!("gc{i:06}"))
                .bind(format!("gc{i:06}-1.0-py3-none-any.whl"))
                .bind(digest_of(*i));
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub fn post_gc(base: &str, dry_run: bool) -> anyhow::Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let report = tokio::runtime::Runtime::new()?.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()?
            .post(format!("{base}+api/v1/gc"))
            .bearer_auth(KILN_TOKEN)
            .json(&serde_json::json!({ "dry_run": dry_run }))
            .send()
            .await?
            .error_for_status()?
            .json::<serde_json::Value>()
            .await
    })?;
    Ok((started.elapsed().as_secs_f64(), report))
}

/// Seeds, restarts and collects.
pub fn gc_figures(bin: &Path, work: &Path) -> anyhow::Result<GcFigures> {
    let data = work.join("gc");
    // The grace period must exceed the upload timeout; both are short here so the
    // planted objects qualify after a short wait.
    let flags = [
        "--upstream",
        "off",
        "--gc-interval",
        "off",
        "--upload-timeout",
        "1s",
        "--gc-grace",
        "2s",
    ];
    let (mut child, _) = spawn_kiln(bin, &data, &flags)?;
    let _ = child.kill();
    let _ = child.wait();
    let database = format!("sqlite://{}", data.join("kiln.db").display());
    tokio::runtime::Runtime::new()?
        .block_on(insert_rows(&database))
        .context("writing the rows")?;
    write_objects(&data.join("storage"), 0..UNNAMED + LISTED + ORPHANS)?;
    eprintln!("gc: planted {} objects", UNNAMED + LISTED + ORPHANS);
    std::thread::sleep(Duration::from_secs(3));
    let (mut child, base) = spawn_kiln(bin, &data, &flags)?;
    let (dry_run_s, plan) = post_gc(&base, true)?;
    let (collect_s, done) = post_gc(&base, false)?;
    let peak_rss_mb = crate::rss_mb(child.id(), "VmHWM")?;
    let _ = child.kill();
    let _ = child.wait();
    let count = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or_default();
    anyhow::ensure!(
        count(&plan, "blobs") == UNNAMED as u64 && count(&plan, "orphans") == ORPHANS as u64,
        "the dry run planned {plan}"
    );
    let deleted = count(&done, "blobs") + count(&done, "orphans");
    anyhow::ensure!(
        deleted == (UNNAMED + ORPHANS) as u64,
        "the collection did {done}"
    );
    let left = walk_count(&data.join("storage/blobs"))?;
    anyhow::ensure!(left == LISTED, "{left} objects left, {LISTED} expected");
    Ok(GcFigures {
        dry_run_s,
        collect_s,
        deleted,
        freed_bytes: count(&done, "freed_bytes"),
        peak_rss_mb,
    })
}

fn walk_count(dir: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += walk_count(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

pub fn print_gc(f: &GcFigures) {
    println!(
        "\n### Garbage collection: {} blobs to delete beside {LISTED} listed (embedded default)\n",
        UNNAMED + ORPHANS
    );
    println!(
        "| dry run (s) | collection (s) | blobs deleted/s | deleted | freed (MB) | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.0} | {} | {:.0} | {:.0} |",
        f.dry_run_s,
        f.collect_s,
        f.deleted as f64 / f.collect_s,
        f.deleted,
        f.freed_bytes as f64 / 1e6,
        f.peak_rss_mb
    );
}
