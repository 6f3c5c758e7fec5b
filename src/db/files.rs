//! File rows: which index lists which artifact under which filename.

use super::changes::Change;
use super::{Db, DbError, WriteTx, decode, decode_flag, decode_json, decode_u64, placeholders};
use crate::domain::{DistKind, IndexName, ProjectName, Provenance, Sha256Digest};

/// A file listed on an index, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// The index that lists it.
    pub index_id: i64,
    /// Normalized project name.
    pub project: ProjectName,
    /// Normalized PEP 440 version.
    pub version: String,
    /// The filename as uploaded.
    pub filename: String,
    /// Wheel or sdist.
    pub kind: DistKind,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
    /// `Requires-Python`, if any.
    pub requires_python: Option<String>,
    /// SHA-256 of the core metadata file, when it was extracted.
    pub metadata_sha256: Option<Sha256Digest>,
    /// Yanked (PEP 592).
    pub yanked: bool,
    /// Why it was yanked.
    pub yanked_reason: Option<String>,
    /// When it was uploaded (RFC 3339, UTC).
    pub uploaded_at: String,
    /// The build lease the file was uploaded under (copied along by promotions); `None`
    /// for a file uploaded by hand.
    pub build_id: Option<i64>,
    /// The provenance of that build when the file was uploaded.
    pub provenance: Option<Provenance>,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    index_id: i64,
    project: String,
    version: String,
    filename: String,
    kind: String,
    sha256: String,
    size: i64,
    requires_python: Option<String>,
    metadata_sha256: Option<String>,
    yanked: i64,
    yanked_reason: Option<String>,
    uploaded_at: String,
    build_id: Option<i64>,
    provenance: Option<String>,
}

impl TryFrom<FileRow> for FileRecord {
    type Error = DbError;

    fn try_from(row: FileRow) -> Result<Self, DbError> {
        const TABLE: &str = "files";
        Ok(Self {
            index_id: row.index_id,
            project: decode(TABLE, "project", &row.project)?,
            kind: decode(TABLE, "kind", &row.kind)?,
            sha256: decode(TABLE, "sha256", &row.sha256)?,
            size: decode_u64(TABLE, "size", row.size)?,
            metadata_sha256: row
                .metadata_sha256
                .as_deref()
                .map(|m| decode(TABLE, "metadata_sha256", m))
                .transpose()?,
            yanked: decode_flag(TABLE, "yanked", row.yanked)?,
            provenance: row
                .provenance
                .as_deref()
                .map(|p| decode_json(TABLE, "provenance", p))
                .transpose()?,
            build_id: row.build_id,
            version: row.version,
            filename: row.filename,
            requires_python: row.requires_python,
            yanked_reason: row.yanked_reason,
            uploaded_at: row.uploaded_at,
        })
    }
}

const FILE_COLUMNS: &str = "index_id, project, version, filename, kind, sha256, size, requires_python, metadata_sha256, yanked, yanked_reason, uploaded_at, build_id, provenance";

const FIND_FILE: &str = "SELECT index_id, project, version, filename, kind, sha256, size, requires_python, metadata_sha256, yanked, yanked_reason, uploaded_at, build_id, provenance FROM files WHERE index_id = $1 AND filename = $2";

/// A file as a simple page lists it: an index's own file, or one a mirror's upstream
/// lists (whose size and upload time the upstream may not have said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// The index that lists it.
    pub index_id: i64,
    /// Normalized version.
    pub version: String,
    /// The filename.
    pub filename: String,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// `Requires-Python`, if any.
    pub requires_python: Option<String>,
    /// SHA-256 of the core metadata file, when there is one.
    pub metadata_sha256: Option<Sha256Digest>,
    /// Yanked (PEP 592).
    pub yanked: bool,
    /// Why it was yanked.
    pub yanked_reason: Option<String>,
    /// When it was uploaded (RFC 3339), when known.
    pub uploaded_at: Option<String>,
}

impl From<FileRecord> for ListedFile {
    fn from(f: FileRecord) -> Self {
        Self {
            index_id: f.index_id,
            version: f.version,
            filename: f.filename,
            sha256: f.sha256,
            size: Some(f.size),
            requires_python: f.requires_python,
            metadata_sha256: f.metadata_sha256,
            yanked: f.yanked,
            yanked_reason: f.yanked_reason,
            uploaded_at: Some(f.uploaded_at),
        }
    }
}

impl From<&super::MirrorFileRecord> for ListedFile {
    fn from(f: &super::MirrorFileRecord) -> Self {
        Self {
            index_id: f.index_id,
            version: f.version.clone(),
            filename: f.filename.clone(),
            sha256: f.sha256.clone(),
            size: f.size.or(f.cached_size),
            requires_python: f.requires_python.clone(),
            metadata_sha256: f.metadata_sha256.clone(),
            yanked: f.yanked,
            yanked_reason: f.yanked_reason.clone(),
            uploaded_at: f.upload_time.clone(),
        }
    }
}

/// A file on some index of a chain, for [`crate::service::resolve::merge_own_first`].
pub trait OnIndex {
    /// The index that lists it.
    fn index_id(&self) -> i64;
    /// Its filename.
    fn filename(&self) -> &str;
}

impl OnIndex for FileRecord {
    fn index_id(&self) -> i64 {
        self.index_id
    }
    fn filename(&self) -> &str {
        &self.filename
    }
}

impl OnIndex for ListedFile {
    fn index_id(&self) -> i64 {
        self.index_id
    }
    fn filename(&self) -> &str {
        &self.filename
    }
}

fn decode_rows(rows: Vec<FileRow>) -> Result<Vec<FileRecord>, DbError> {
    rows.into_iter().map(FileRecord::try_from).collect()
}

/// A file row to insert.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    /// The index that lists it.
    pub index_id: i64,
    /// Normalized project name.
    pub project: &'a str,
    /// Normalized version.
    pub version: &'a str,
    /// The filename.
    pub filename: &'a str,
    /// `wheel` or `sdist`.
    pub kind: &'a str,
    /// SHA-256 of the bytes.
    pub sha256: &'a str,
    /// Size in bytes.
    pub size: i64,
    /// `Requires-Python`.
    pub requires_python: Option<&'a str>,
    /// SHA-256 and size of the core metadata blob.
    pub metadata: Option<(&'a str, i64)>,
    /// Who uploaded it (token name).
    pub uploaded_by: &'a str,
    /// When (RFC 3339).
    pub uploaded_at: &'a str,
    /// The build lease it was uploaded under and that build's provenance (JSON).
    pub build: Option<(i64, &'a str)>,
}

impl Db {
    /// The file an index itself lists under `filename`, if any.
    pub async fn find_file_tx(
        tx: &mut WriteTx,
        index_id: i64,
        filename: &str,
    ) -> Result<Option<FileRecord>, DbError> {
        let row: Option<FileRow> = sqlx::query_as(FIND_FILE)
            .bind(index_id)
            .bind(filename)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(FileRecord::try_from).transpose()
    }

    /// Same as [`Db::find_file_tx`], outside a transaction (a cheap pre-check).
    pub async fn find_file(
        &self,
        index_id: i64,
        filename: &str,
    ) -> Result<Option<FileRecord>, DbError> {
        let row: Option<FileRow> = sqlx::query_as(FIND_FILE)
            .bind(index_id)
            .bind(filename)
            .fetch_optional(&self.pool)
            .await?;
        row.map(FileRecord::try_from).transpose()
    }

    /// Inserts a file row and the blob rows it points at. Call only once the blobs are
    /// durable in storage. A concurrent insert of the same filename yields `Conflict`.
    pub async fn insert_file_tx(tx: &mut WriteTx, file: &NewFile<'_>) -> Result<(), DbError> {
        tx.changed(Change::Files(file.index_id, file.project.to_owned()));
        let blobs = std::iter::once((file.sha256, file.size)).chain(file.metadata);
        for (sha256, size) in blobs {
            sqlx::query(
                "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256) DO UPDATE SET collected_at_ms = NULL",
            )
            .bind(sha256)
            .bind(size)
            .bind(file.uploaded_at)
            .execute(&mut **tx)
            .await?;
        }
        Self::insert_file_row_tx(tx, file).await
    }

    /// Inserts just the file row (its blobs exist: an upload inserted them, or the file
    /// is being listed on a second index). The one `INSERT INTO files`.
    pub(super) async fn insert_file_row_tx(
        tx: &mut WriteTx,
        file: &NewFile<'_>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO files (index_id, project, version, filename, kind, sha256, size, \
             requires_python, metadata_sha256, uploaded_at, uploaded_by, build_id, provenance) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(file.index_id)
        .bind(file.project)
        .bind(file.version)
        .bind(file.filename)
        .bind(file.kind)
        .bind(file.sha256)
        .bind(file.size)
        .bind(file.requires_python)
        .bind(file.metadata.map(|(sha, _)| sha))
        .bind(file.uploaded_at)
        .bind(file.uploaded_by)
        .bind(file.build.map(|(id, _)| id))
        .bind(file.build.map(|(_, provenance)| provenance))
        .execute(&mut **tx)
        .await
        .map_err(DbError::from_write)?;
        Ok(())
    }

    /// Every file of `project` listed on any of `index_ids`. Cost: O(files of that project
    /// on those indexes), through the `files_by_project` index.
    pub async fn files_of_project(
        &self,
        index_ids: &[i64],
        project: &str,
    ) -> Result<Vec<FileRecord>, DbError> {
        self.files_where("project", project, index_ids).await
    }

    /// The files whose `column` is `value`, listed on any of `index_ids`.
    async fn files_where(
        &self,
        column: &'static str,
        value: &str,
        index_ids: &[i64],
    ) -> Result<Vec<FileRecord>, DbError> {
        if index_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE {column} = $1 AND index_id IN ({})",
            placeholders(2, index_ids.len())
        );
        let mut query = sqlx::query_as::<_, FileRow>(&sql).bind(value);
        for id in index_ids {
            query = query.bind(*id);
        }
        decode_rows(query.fetch_all(&self.pool).await?)
    }

    /// The distinct projects listed on any of `index_ids`, sorted.
    pub async fn projects_of(&self, index_ids: &[i64]) -> Result<Vec<String>, DbError> {
        if index_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT project FROM files WHERE index_id IN ({}) ORDER BY project",
            placeholders(1, index_ids.len())
        );
        let mut query = sqlx::query_scalar(&sql);
        for id in index_ids {
            query = query.bind(*id);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// True when any file row (of a stage index, a mirror or the trash) names `sha256` as
    /// its bytes or its METADATA: the blob is in use and must stay.
    pub async fn blob_listed(&self, sha256: &str) -> Result<bool, DbError> {
        let listed: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 WHERE {}", super::gc::NAMED))
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(listed.is_some())
    }

    /// True when any stage index of the server lists a file of `project` (mirrored files
    /// live elsewhere): the dependency-confusion guard's question.
    pub async fn published_anywhere(&self, project: &str) -> Result<bool, DbError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT index_id FROM files WHERE project = $1 LIMIT 1")
                .bind(project)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// The projects published on the server's stage indexes, at most `limit`, by name.
    pub async fn published_projects(&self, limit: i64) -> Result<Vec<String>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT project FROM files ORDER BY project LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The files with `sha256` listed on any of `index_ids` (to authorize a download).
    pub async fn files_with_digest(
        &self,
        index_ids: &[i64],
        sha256: &str,
    ) -> Result<Vec<FileRecord>, DbError> {
        self.files_where("sha256", sha256, index_ids).await
    }
}

/// A file in brief (see [`Db::own_file_briefs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBrief {
    /// Normalized project name.
    pub project: ProjectName,
    /// Normalized version.
    pub version: String,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// Yanked (PEP 592).
    pub yanked: bool,
}

/// How stale the home page's [`IndexStats`] may be.
pub const INDEX_STATS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The last reading of every index's [`IndexStats`], and when it was read.
pub type StatsSnapshot = (
    std::time::Instant,
    std::sync::Arc<std::collections::HashMap<i64, IndexStats>>,
);

/// What one index holds, for the home page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Files it lists itself.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the newest of them was uploaded or promoted there (RFC 3339).
    pub last_upload: Option<String>,
}

impl Db {
    /// What index `id` holds: its files (a mirror's cached ones), their bytes, and the
    /// bytes of those no other index lists.
    pub async fn index_usage(&self, id: i64) -> Result<(u64, u64, u64), DbError> {
        let (files, bytes, own): (i64, i64, i64) = sqlx::query_as(
            "WITH mine AS ( \
                 SELECT sha256, size FROM files WHERE index_id = $1 \
                 UNION ALL \
                 SELECT m.sha256, b.size FROM mirror_files m JOIN blobs b ON b.sha256 = m.sha256 AND b.collected_at_ms IS NULL \
                 WHERE m.index_id = $1) \
             SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(size), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN \
                     EXISTS (SELECT 1 FROM files o WHERE o.sha256 = mine.sha256 AND o.index_id <> $1) \
                     OR EXISTS (SELECT 1 FROM mirror_files o WHERE o.sha256 = mine.sha256 AND o.index_id <> $1) \
                 THEN 0 ELSE size END), 0) AS BIGINT) \
             FROM mine",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let count = |column: &'static str, n: i64| super::decode_u64("files", column, n);
        Ok((
            count("count", files)?,
            count("size", bytes)?,
            count("size", own)?,
        ))
    }

    /// [`IndexStats`] of every index that lists a file, by index id, as read at most
    /// [`INDEX_STATS_TTL`] ago: the query counts every file of the server, so the home
    /// page must not run it per request.
    pub async fn index_stats(
        &self,
    ) -> Result<std::sync::Arc<std::collections::HashMap<i64, IndexStats>>, DbError> {
        let lock = || {
            self.index_stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((read, stats)) = lock().as_ref()
            && read.elapsed() < INDEX_STATS_TTL
        {
            return Ok(std::sync::Arc::clone(stats));
        }
        let stats = std::sync::Arc::new(self.read_index_stats().await?);
        *lock() = Some((std::time::Instant::now(), std::sync::Arc::clone(&stats)));
        Ok(stats)
    }

    async fn read_index_stats(
        &self,
    ) -> Result<std::collections::HashMap<i64, IndexStats>, DbError> {
        let rows: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT index_id, COUNT(*), CAST(SUM(size) AS BIGINT), MAX(uploaded_at) FROM files GROUP BY index_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, files, bytes, last_upload)| {
                Ok((
                    id,
                    IndexStats {
                        files: decode_u64("files", "count", files)?,
                        bytes: decode_u64("files", "size", bytes.unwrap_or(0))?,
                        last_upload,
                    },
                ))
            })
            .collect()
    }

    /// The projects one index lists itself, by name, after `after`, at most `limit`.
    pub async fn own_projects_page(
        &self,
        index_id: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ProjectName>, DbError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT project FROM files WHERE index_id = $1 AND project > $2 ORDER BY project LIMIT $3",
        )
        .bind(index_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        names
            .iter()
            .map(|n| decode("files", "project", n))
            .collect()
    }

    /// The files one index lists itself of `projects`, in brief: project, version,
    /// digest, yanked (what an index page needs of each).
    pub async fn own_file_briefs(
        &self,
        index_id: i64,
        projects: &[ProjectName],
    ) -> Result<Vec<FileBrief>, DbError> {
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT project, version, sha256, yanked FROM files WHERE index_id = $1 AND project IN ({})",
            placeholders(2, projects.len())
        );
        let mut query = sqlx::query_as::<_, (String, String, String, i64)>(&sql).bind(index_id);
        for project in projects {
            query = query.bind(project.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(project, version, sha256, yanked)| {
                Ok(FileBrief {
                    project: decode("files", "project", &project)?,
                    version,
                    sha256: decode("files", "sha256", &sha256)?,
                    yanked: decode_flag("files", "yanked", yanked)?,
                })
            })
            .collect()
    }

    /// Every file of `project` one index itself lists, inside a write transaction.
    pub async fn own_project_files_tx(
        tx: &mut WriteTx,
        index_id: i64,
        project: &str,
    ) -> Result<Vec<FileRecord>, DbError> {
        let rows: Vec<FileRow> = sqlx::query_as(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE index_id = $1 AND project = $2"
        ))
        .bind(index_id)
        .bind(project)
        .fetch_all(&mut **tx)
        .await?;
        decode_rows(rows)
    }

    /// The stage indexes that list a file with this digest, by name.
    pub async fn indexes_holding(&self, sha256: &str) -> Result<Vec<IndexName>, DbError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT i.namespace, i.name FROM files f JOIN indexes i ON i.id = f.index_id \
             WHERE f.sha256 = $1 ORDER BY i.namespace, i.name",
        )
        .bind(sha256)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|(ns, name)| super::decode_index_name(ns, name))
            .collect()
    }

    /// True if a blob with this digest is stored (its bytes not collected).
    pub async fn blob_exists(&self, sha256: &str) -> Result<bool, DbError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM blobs WHERE sha256 = $1 AND collected_at_ms IS NULL")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}
