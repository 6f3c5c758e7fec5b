//! Mirror caches: which project pages a mirror has fetched, and the files they list.
//!
//! A refresh that changed nothing (HTTP 304, or the same listing again) only moves
//! `fetched_at_ms`, and does it outside [`Db::begin_write`]: it names no change, so a
//! TTL expiry does not discard the project's rendered pages.

use super::changes::Change;
use super::{Db, DbError, WriteTx, decode, decode_flag, decode_u64, placeholders};
use crate::domain::{DistKind, ProjectName, Sha256Digest};

/// What an upstream answered for a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    /// It lists the project.
    Found,
    /// It has no such project (404 or 410).
    Missing,
}

impl PageStatus {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Found => "found",
            Self::Missing => "missing",
        }
    }
}

impl std::str::FromStr for PageStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "found" => Ok(Self::Found),
            "missing" => Ok(Self::Missing),
            other => Err(format!(
                "`{}` is not a page status (`found` or `missing`)",
                other.escape_debug()
            )),
        }
    }
}

impl std::fmt::Display for PageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mirror's cached answer for one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorProjectRecord {
    /// What the upstream answered.
    pub status: PageStatus,
    /// When the upstream last answered (ms since the epoch).
    pub fetched_at_ms: i64,
    /// The upstream's validator.
    pub etag: Option<String>,
    /// SHA-256 of the listing, to notice unchanged refreshes.
    pub listing_sha256: String,
}

#[derive(sqlx::FromRow)]
struct MirrorProjectRow {
    status: String,
    fetched_at_ms: i64,
    etag: Option<String>,
    listing_sha256: String,
}

impl TryFrom<MirrorProjectRow> for MirrorProjectRecord {
    type Error = DbError;

    fn try_from(row: MirrorProjectRow) -> Result<Self, DbError> {
        Ok(Self {
            status: decode("mirror_projects", "status", &row.status)?,
            fetched_at_ms: row.fetched_at_ms,
            etag: row.etag,
            listing_sha256: row.listing_sha256,
        })
    }
}

/// A file an upstream page listed, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorFileRecord {
    /// The mirror index.
    pub index_id: i64,
    /// Normalized project name.
    pub project: ProjectName,
    /// Normalized version.
    pub version: String,
    /// The filename.
    pub filename: String,
    /// Wheel or sdist.
    pub kind: DistKind,
    /// SHA-256 the upstream gave.
    pub sha256: Sha256Digest,
    /// Size, when the upstream said.
    pub size: Option<u64>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
    /// SHA-256 of the core metadata upstream serves.
    pub metadata_sha256: Option<Sha256Digest>,
    /// Yanked upstream.
    pub yanked: bool,
    /// Why the upstream yanked it, if it said.
    pub yanked_reason: Option<String>,
    /// PEP 700 upload time, when the upstream said.
    pub upload_time: Option<String>,
    /// Where the bytes are upstream.
    pub url: String,
    /// The stored size when the bytes are cached here; `None` until first downloaded.
    pub cached_size: Option<u64>,
}

#[derive(sqlx::FromRow)]
struct MirrorFileRow {
    index_id: i64,
    project: String,
    version: String,
    filename: String,
    kind: String,
    sha256: String,
    size: Option<i64>,
    requires_python: Option<String>,
    metadata_sha256: Option<String>,
    yanked: i64,
    yanked_reason: Option<String>,
    upload_time: Option<String>,
    url: String,
    cached_size: Option<i64>,
}

impl TryFrom<MirrorFileRow> for MirrorFileRecord {
    type Error = DbError;

    fn try_from(row: MirrorFileRow) -> Result<Self, DbError> {
        const TABLE: &str = "mirror_files";
        let size = |column, n: Option<i64>| n.map(|n| decode_u64(TABLE, column, n)).transpose();
        Ok(Self {
            index_id: row.index_id,
            project: decode(TABLE, "project", &row.project)?,
            kind: decode(TABLE, "kind", &row.kind)?,
            sha256: decode(TABLE, "sha256", &row.sha256)?,
            size: size("size", row.size)?,
            metadata_sha256: row
                .metadata_sha256
                .as_deref()
                .map(|m| decode(TABLE, "metadata_sha256", m))
                .transpose()?,
            yanked: decode_flag(TABLE, "yanked", row.yanked)?,
            cached_size: size("cached_size", row.cached_size)?,
            version: row.version,
            filename: row.filename,
            requires_python: row.requires_python,
            yanked_reason: row.yanked_reason,
            upload_time: row.upload_time,
            url: row.url,
        })
    }
}

/// A listing row to store.
#[derive(Debug, Clone)]
pub struct NewMirrorFile {
    /// Normalized version.
    pub version: String,
    /// The filename.
    pub filename: String,
    /// `wheel` or `sdist`.
    pub kind: &'static str,
    /// SHA-256 the upstream gave.
    pub sha256: String,
    /// Size, when the upstream said.
    pub size: Option<i64>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
    /// SHA-256 of the core metadata.
    pub metadata_sha256: Option<String>,
    /// `Some(reason)` when yanked.
    pub yanked: Option<String>,
    /// PEP 700 upload time.
    pub upload_time: Option<String>,
    /// Where the bytes are upstream.
    pub url: String,
}

/// One row of a mirror's cache listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorCacheRow {
    /// Normalized project name.
    pub project: String,
    /// What the upstream answered.
    pub status: PageStatus,
    /// When the upstream last answered (ms since the epoch).
    pub fetched_at_ms: i64,
    /// Files the page lists.
    pub files: i64,
    /// Of those, files whose bytes are cached here.
    pub cached_files: i64,
    /// Bytes cached.
    pub cached_bytes: i64,
}

const MIRROR_FILE_COLUMNS: &str = "m.index_id, m.project, m.version, m.filename, m.kind, m.sha256, m.size, m.requires_python, m.metadata_sha256, m.yanked, m.yanked_reason, m.upload_time, m.url, b.size AS cached_size";

impl Db {
    /// The cached answer of mirror `index_id` for `project`.
    pub async fn find_mirror_project(
        &self,
        index_id: i64,
        project: &str,
    ) -> Result<Option<MirrorProjectRecord>, DbError> {
        let row: Option<MirrorProjectRow> = sqlx::query_as(
            "SELECT status, fetched_at_ms, etag, listing_sha256 FROM mirror_projects \
             WHERE index_id = $1 AND project = $2",
        )
        .bind(index_id)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        row.map(MirrorProjectRecord::try_from).transpose()
    }

    /// The listed files of `project` on mirror `index_id`.
    pub async fn mirror_files_of_project(
        &self,
        index_id: i64,
        project: &str,
    ) -> Result<Vec<MirrorFileRecord>, DbError> {
        let rows: Vec<MirrorFileRow> = sqlx::query_as(&format!(
            "SELECT {MIRROR_FILE_COLUMNS} FROM mirror_files m LEFT JOIN blobs b ON b.sha256 = m.sha256 AND b.collected_at_ms IS NULL \
             WHERE m.index_id = $1 AND m.project = $2 ORDER BY m.filename"
        ))
        .bind(index_id)
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(MirrorFileRecord::try_from).collect()
    }

    /// The listed files with `sha256` on any of the mirrors `index_ids`.
    pub async fn mirror_files_with_digest(
        &self,
        index_ids: &[i64],
        sha256: &str,
    ) -> Result<Vec<MirrorFileRecord>, DbError> {
        if index_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {MIRROR_FILE_COLUMNS} FROM mirror_files m LEFT JOIN blobs b ON b.sha256 = m.sha256 AND b.collected_at_ms IS NULL \
             WHERE m.sha256 = $1 AND m.index_id IN ({})",
            placeholders(2, index_ids.len())
        );
        let mut query = sqlx::query_as::<_, MirrorFileRow>(&sql).bind(sha256);
        for id in index_ids {
            query = query.bind(*id);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(MirrorFileRecord::try_from)
            .collect()
    }

    /// Replaces mirror `index_id`'s listing of `project` (a changed page, or a first fetch).
    pub async fn store_mirror_listing_tx(
        tx: &mut WriteTx,
        index_id: i64,
        project: &str,
        record: &MirrorProjectRecord,
        files: &[NewMirrorFile],
    ) -> Result<(), DbError> {
        tx.changed(Change::Files(index_id, project.to_owned()));
        sqlx::query("DELETE FROM mirror_files WHERE index_id = $1 AND project = $2")
            .bind(index_id)
            .bind(project)
            .execute(&mut **tx)
            .await?;
        for file in files {
            sqlx::query(
                "INSERT INTO mirror_files (index_id, project, version, filename, kind, sha256, size, \
                 requires_python, metadata_sha256, yanked, yanked_reason, upload_time, url) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(index_id)
            .bind(project)
            .bind(&file.version)
            .bind(&file.filename)
            .bind(file.kind)
            .bind(&file.sha256)
            .bind(file.size)
            .bind(file.requires_python.as_deref())
            .bind(file.metadata_sha256.as_deref())
            .bind(i64::from(file.yanked.is_some()))
            .bind(file.yanked.as_deref().filter(|r| !r.is_empty()))
            .bind(file.upload_time.as_deref())
            .bind(&file.url)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO mirror_projects (index_id, project, status, fetched_at_ms, etag, listing_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (index_id, project) DO UPDATE SET status = excluded.status, \
             fetched_at_ms = excluded.fetched_at_ms, etag = excluded.etag, \
             listing_sha256 = excluded.listing_sha256",
        )
        .bind(index_id)
        .bind(project)
        .bind(record.status.as_str())
        .bind(record.fetched_at_ms)
        .bind(record.etag.as_deref())
        .bind(&record.listing_sha256)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Marks an unchanged listing as fresh again (names no change; see the module docs).
    pub async fn touch_mirror_project(
        &self,
        index_id: i64,
        project: &str,
        fetched_at_ms: i64,
        etag: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE mirror_projects SET fetched_at_ms = $1, etag = COALESCE($2, etag) \
             WHERE index_id = $3 AND project = $4",
        )
        .bind(fetched_at_ms)
        .bind(etag)
        .bind(index_id)
        .bind(project)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a mirrored blob is now stored (call once the bytes are durable), under
    /// the blob's lock: the caller then checks the bytes are still there, since garbage
    /// collection may have deleted them between the write and this row.
    pub async fn record_blob(&self, sha256: &str, size: i64, at: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        tx.lock(super::Lock::Blob(sha256)).await?;
        sqlx::query(
            "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sha256) DO UPDATE SET collected_at_ms = NULL",
        )
        .bind(sha256)
        .bind(size)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What mirror `index_id` has cached, by project.
    pub async fn mirror_cache(&self, index_id: i64) -> Result<Vec<MirrorCacheRow>, DbError> {
        let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT p.project, p.status, p.fetched_at_ms, \
             COUNT(m.filename) AS files, COUNT(b.sha256) AS cached_files, \
             CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS cached_bytes \
             FROM mirror_projects p \
             LEFT JOIN mirror_files m ON m.index_id = p.index_id AND m.project = p.project \
             LEFT JOIN blobs b ON b.sha256 = m.sha256 AND b.collected_at_ms IS NULL \
             WHERE p.index_id = $1 GROUP BY p.project, p.status, p.fetched_at_ms ORDER BY p.project",
        )
        .bind(index_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(project, status, fetched_at_ms, files, cached_files, cached_bytes)| {
                    Ok(MirrorCacheRow {
                        status: decode("mirror_projects", "status", &status)?,
                        project,
                        fetched_at_ms,
                        files,
                        cached_files,
                        cached_bytes,
                    })
                },
            )
            .collect()
    }

    /// Forgets mirror `index_id`'s page of `project`. Returns the digests (files and core
    /// metadata) it listed: after the commit, the caller collects those nothing else
    /// names (`service::gc`).
    pub async fn purge_mirror_project_tx(
        tx: &mut WriteTx,
        index_id: i64,
        project: &str,
    ) -> Result<Option<Vec<String>>, DbError> {
        tx.changed(Change::Files(index_id, project.to_owned()));
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM mirror_projects WHERE index_id = $1 AND project = $2",
        )
        .bind(index_id)
        .bind(project)
        .fetch_optional(&mut **tx)
        .await?;
        if known.is_none() {
            return Ok(None);
        }
        let listed: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT sha256, metadata_sha256 FROM mirror_files WHERE index_id = $1 AND project = $2",
        )
        .bind(index_id)
        .bind(project)
        .fetch_all(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM mirror_files WHERE index_id = $1 AND project = $2")
            .bind(index_id)
            .bind(project)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM mirror_projects WHERE index_id = $1 AND project = $2")
            .bind(index_id)
            .bind(project)
            .execute(&mut **tx)
            .await?;
        Ok(Some(
            listed
                .into_iter()
                .flat_map(|(sha, metadata)| std::iter::once(sha).chain(metadata))
                .collect(),
        ))
    }
}
