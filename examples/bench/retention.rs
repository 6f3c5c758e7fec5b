//! Retention at scale, on the embedded default: 1,000 idle branch indexes (each
//! inheriting root/master, each with 5 releases of its own) and root/master with 100
//! projects × 30 releases, under two rules: branch indexes idle for 30 days go, and
//! root/master keeps the newest 5 releases per project. The rows are written straight
//! into the SQLite file between two starts of the server; the plan (a dry run) and the
//! pass itself are one `POST /+api/v1/gc` each, timed from the client, with the server's
//! peak RSS.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use sha2::Digest as _;

use crate::spawn_kiln;

pub const BRANCHES: usize = 1_000;
const BRANCH_RELEASES: usize = 5;
const PROJECTS: usize = 100;
const RELEASES: usize = 30;
const KEEP: usize = 5;

const POLICY: &str = "[[retention]]\nname = \"idle-branches\"\nindexes = \"acme/*\"\nbranch-idle-for = \"30d\"\n\n[[retention]]\nname = \"master-history\"\nindexes = \"root/master\"\nkeep-newest = 5\n";

/// What the run measured.
pub struct RetentionFigures {
    pub plan_s: f64,
    pub apply_s: f64,
    pub indexes_removed: usize,
    pub releases_removed: usize,
    pub peak_rss_mb: f64,
}

async fn insert_rows(database: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut db = sqlx::SqliteConnection::connect(database).await?;
    let master: i64 =
        sqlx::query_scalar("SELECT id FROM indexes WHERE namespace = 'root' AND name = 'master'")
            .fetch_one(&mut db)
            .await?;
    let mut tx = db.begin().await?;
    let old = "2026-01-01T00:00:00.000000Z";
    let mut n = 0usize;
    let mut file = async |tx: &mut sqlx::SqliteConnection,
                          index: i64,
                          project: &str,
                          version: &str| {
        n += 1;
        let digest = format!("{:x}", sha2::Sha256::digest(format!("retention-{n}")));
        sqlx::query("INSERT INTO blobs (sha256, size, created_at) VALUES (?, 1000, ?)")
            .bind(&digest)
            .bind(old)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by) \
             VALUES (?, ?, ?, ?, 'wheel', ?, 1000, ?, 'bench')",
        )
        .bind(index)
        .bind(project)
        .bind(version)
        .bind(format!("{project}-{version}-py3-none-any.whl"))
        .bind(&digest)
        .bind(old)
        .execute(&mut *tx)
        .await?;
        anyhow::Ok(())
    };
    for p in 0..PROJECTS {
        for v in 0..RELEASES {
            file(&mut tx, master, &format!("lib{p:03}"), &format!("1.{v}")).await?;
        }
    }
    for b in 0..BRANCHES {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO indexes (namespace, name, kind, volatile, promotion_only, description, branch, \
             mirror_allow, private, created_at, updated_at, mirror_file_origins) \
             VALUES ('acme', ?, 'stage', 1, 0, '', ?, '[]', 0, ?, ?, '[]') RETURNING id",
        )
        .bind(format!("feature-{b:04}"))
        .bind(format!("feature/{b:04}"))
        .bind(old)
        .bind(old)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO index_bases (index_id, position, base_id) VALUES (?, 0, ?)")
            .bind(id)
            .bind(master)
            .execute(&mut *tx)
            .await?;
        for v in 0..BRANCH_RELEASES {
            file(&mut tx, id, &format!("app{b:04}"), &format!("2.0.dev{v}")).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn post_gc(base: &str, dry_run: bool) -> anyhow::Result<(f64, serde_json::Value)> {
    crate::gc::post_gc(base, dry_run)
}

/// Seeds, restarts and runs retention.
pub fn retention_figures(bin: &Path, work: &Path) -> anyhow::Result<RetentionFigures> {
    let data = work.join("retention");
    let policies = work.join("retention-policies");
    std::fs::create_dir_all(&policies)?;
    std::fs::write(policies.join("retention.toml"), POLICY)?;
    let policies = policies.to_str().context("a UTF-8 temp path")?.to_owned();
    let flags = [
        "--upstream",
        "off",
        "--gc-interval",
        "off",
        "--policies",
        &policies,
    ];
    let (mut child, _) = spawn_kiln(bin, &data, &flags)?;
    let _ = child.kill();
    let _ = child.wait();
    let database = format!("sqlite://{}", data.join("kiln.db").display());
    let started = Instant::now();
    tokio::runtime::Runtime::new()?
        .block_on(insert_rows(&database))
        .context("writing the rows")?;
    eprintln!(
        "retention: wrote {BRANCHES} branch indexes and {} releases in {:.0} s",
        PROJECTS * RELEASES + BRANCHES * BRANCH_RELEASES,
        started.elapsed().as_secs_f64()
    );
    let (mut child, base) = spawn_kiln(bin, &data, &flags)?;
    let (plan_s, plan) = post_gc(&base, true)?;
    let (apply_s, done) = post_gc(&base, false)?;
    let peak_rss_mb = crate::rss_mb(child.id(), "VmHWM")?;
    let _ = child.kill();
    let _ = child.wait();
    let count = |report: &serde_json::Value, whole: bool| {
        report["retention"].as_array().map_or(0, |list| {
            list.iter()
                .filter(|r| r["project"].is_null() == whole)
                .count()
        })
    };
    let (indexes_removed, releases_removed) = (count(&done, true), count(&done, false));
    anyhow::ensure!(
        count(&plan, true) == BRANCHES && count(&plan, false) == PROJECTS * (RELEASES - KEEP),
        "the plan: {} indexes, {} releases",
        count(&plan, true),
        count(&plan, false)
    );
    anyhow::ensure!(
        indexes_removed == BRANCHES && releases_removed == PROJECTS * (RELEASES - KEEP),
        "the pass removed {indexes_removed} indexes and {releases_removed} releases"
    );
    Ok(RetentionFigures {
        plan_s,
        apply_s,
        indexes_removed,
        releases_removed,
        peak_rss_mb,
    })
}

pub fn print_retention(f: &RetentionFigures) {
    println!(
        "\n### Retention: {BRANCHES} idle branch indexes, {PROJECTS} projects × {RELEASES} releases on master keeping {KEEP} (embedded default)\n"
    );
    println!(
        "| plan, dry run (s) | pass (s) | indexes into the trash | releases into the trash | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {} | {} | {:.0} |",
        f.plan_s, f.apply_s, f.indexes_removed, f.releases_removed, f.peak_rss_mb
    );
}
