//! The trash: releases and files removed from an index, hidden at once and restorable
//! until they expire. A removal moves the file rows into `trash_files` (same ids); a
//! restore moves them back; an expired entry is released (its rows deleted, so garbage
//! collection may take the bytes nothing else names).

use super::{Db, DbError, WriteTx, changes::Change};
use crate::domain::{ProjectName, TrashKind};

/// A trash entry with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashRecord {
    /// Its id (`kiln trash restore ID`).
    pub id: i64,
    /// The index it was removed from (or the index removed).
    pub index_id: i64,
    /// What it holds.
    pub kind: TrashKind,
    /// The project (none for an index).
    pub project: Option<ProjectName>,
    /// The release's normalized version (none for an index).
    pub version: Option<String>,
    /// The one file removed, or `None` for the whole release.
    pub filename: Option<String>,
    /// Why, as the remover said.
    pub reason: String,
    /// The token that removed it.
    pub removed_by: String,
    /// When (unix milliseconds).
    pub removed_at_ms: i64,
    /// When it is released for good unless restored (unix milliseconds).
    pub expires_at_ms: i64,
    /// The files it holds.
    pub files: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
}

/// A removal to record.
#[derive(Debug, Clone, Copy)]
pub struct NewTrash<'a> {
    /// The index.
    pub index_id: i64,
    /// The project.
    pub project: &'a str,
    /// The normalized version.
    pub version: &'a str,
    /// `Some` for one file, `None` for the whole release.
    pub filename: Option<&'a str>,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub removed_by: &'a str,
    /// When (unix milliseconds).
    pub removed_at_ms: i64,
    /// Until when it may be restored (unix milliseconds).
    pub expires_at_ms: i64,
}

/// The columns a file row and its trashed copy share, in order.
const MOVED_COLUMNS: &str = "id, index_id, project, version, filename, kind, sha256, size, \
     requires_python, metadata_sha256, yanked, yanked_reason, uploaded_at, uploaded_by, build_id, provenance";

#[derive(sqlx::FromRow)]
struct TrashRow {
    id: i64,
    index_id: i64,
    kind: String,
    project: Option<String>,
    version: Option<String>,
    filename: Option<String>,
    reason: String,
    removed_by: String,
    removed_at_ms: i64,
    expires_at_ms: i64,
}
const TRASH_COLUMNS: &str = "id, index_id, kind, project, version, filename, reason, removed_by, removed_at_ms, expires_at_ms";

impl Db {
    /// Moves `filenames` of one index into a new trash entry; answers its id.
    pub async fn trash_files_tx(
        tx: &mut WriteTx,
        entry: &NewTrash<'_>,
        filenames: &[String],
    ) -> Result<i64, DbError> {
        let kind = if entry.filename.is_some() {
            TrashKind::File
        } else {
            TrashKind::Release
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO trash (index_id, project, version, filename, reason, removed_by, \
             removed_at_ms, expires_at_ms, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(entry.index_id)
        .bind(entry.project)
        .bind(entry.version)
        .bind(entry.filename)
        .bind(entry.reason)
        .bind(entry.removed_by)
        .bind(entry.removed_at_ms)
        .bind(entry.expires_at_ms)
        .bind(kind.as_str())
        .fetch_one(&mut **tx)
        .await?;
        for filename in filenames {
            sqlx::query(&format!(
                "INSERT INTO trash_files (trash_id, {MOVED_COLUMNS}) \
                 SELECT $1, {MOVED_COLUMNS} FROM files WHERE index_id = $2 AND filename = $3"
            ))
            .bind(id)
            .bind(entry.index_id)
            .bind(filename)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM files WHERE index_id = $1 AND filename = $2")
                .bind(entry.index_id)
                .bind(filename)
                .execute(&mut **tx)
                .await?;
        }
        tx.changed(Change::Files(entry.index_id, entry.project.to_owned()));
        tx.changed(Change::Projects(entry.index_id));
        Ok(id)
    }

    /// Moves a trash entry's files back onto their index (or shows a trashed index
    /// again) and forgets the entry. A file whose name was taken meanwhile is `Conflict`
    /// (the caller rolls back).
    pub async fn restore_trash_tx(tx: &mut WriteTx, entry: &TrashRecord) -> Result<(), DbError> {
        if entry.kind == TrashKind::Index {
            sqlx::query("UPDATE indexes SET removed_at_ms = NULL WHERE id = $1")
                .bind(entry.index_id)
                .execute(&mut **tx)
                .await?;
            Self::forget_trash_tx(tx, entry.id).await?;
            tx.changed(Change::Indexes);
            tx.changed(Change::Index(entry.index_id));
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO files ({MOVED_COLUMNS}) SELECT {MOVED_COLUMNS} FROM trash_files WHERE trash_id = $1"
        ))
        .bind(entry.id)
        .execute(&mut **tx)
        .await?;
        Self::forget_trash_tx(tx, entry.id).await?;
        let project = entry
            .project
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        tx.changed(Change::Files(entry.index_id, project));
        tx.changed(Change::Projects(entry.index_id));
        Ok(())
    }

    /// Hides an index (its pages, files and settings) in a new trash entry; answers its
    /// id. Its rows stay until the entry is released.
    pub async fn trash_index_tx(
        tx: &mut WriteTx,
        index_id: i64,
        reason: &str,
        removed_by: &str,
        removed_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<i64, DbError> {
        sqlx::query("UPDATE indexes SET removed_at_ms = $1 WHERE id = $2")
            .bind(removed_at_ms)
            .bind(index_id)
            .execute(&mut **tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO trash (index_id, kind, reason, removed_by, removed_at_ms, expires_at_ms) \
             VALUES ($1, 'index', $2, $3, $4, $5) RETURNING id",
        )
        .bind(index_id)
        .bind(reason)
        .bind(removed_by)
        .bind(removed_at_ms)
        .bind(expires_at_ms)
        .fetch_one(&mut **tx)
        .await?;
        tx.changed(Change::Indexes);
        tx.changed(Change::Index(index_id));
        Ok(id)
    }

    /// The trashed index named `namespace/name`, if one is: its id and trash entry.
    pub async fn trashed_index_tx(
        tx: &mut WriteTx,
        name: &crate::domain::IndexName,
    ) -> Result<Option<(i64, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT i.id, t.id FROM indexes i JOIN trash t ON t.index_id = i.id AND t.kind = 'index' \
             WHERE i.namespace = $1 AND i.name = $2 AND i.removed_at_ms IS NOT NULL",
        )
        .bind(name.namespace())
        .bind(name.name())
        .fetch_optional(&mut **tx)
        .await?)
    }

    /// Deletes a trashed index for good, with its rows (files, builds, results, trash).
    pub async fn release_index_tx(tx: &mut WriteTx, index_id: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM trash_files WHERE index_id = $1")
            .bind(index_id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM trash WHERE index_id = $1")
            .bind(index_id)
            .execute(&mut **tx)
            .await?;
        Self::delete_index_tx(tx, index_id).await
    }

    /// Deletes a trash entry and its file rows (restored, or released for good).
    pub async fn forget_trash_tx(tx: &mut WriteTx, id: i64) -> Result<bool, DbError> {
        sqlx::query("DELETE FROM trash_files WHERE trash_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        let done = sqlx::query("DELETE FROM trash WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The trash entry that holds `filename` of index `index_id`, if any.
    pub async fn trashed_file_tx(
        tx: &mut WriteTx,
        index_id: i64,
        filename: &str,
    ) -> Result<Option<(i64, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.expires_at_ms FROM trash_files f JOIN trash t ON t.id = f.trash_id \
             WHERE f.index_id = $1 AND f.filename = $2",
        )
        .bind(index_id)
        .bind(filename)
        .fetch_optional(&mut **tx)
        .await?)
    }

    /// One trash entry.
    pub async fn trash_entry(&self, id: i64) -> Result<Option<TrashRecord>, DbError> {
        let rows: Vec<TrashRow> =
            sqlx::query_as(&format!("SELECT {TRASH_COLUMNS} FROM trash WHERE id = $1"))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(self.trash_records(rows).await?.pop())
    }

    /// Trash entries, newest first: of the indexes `index_ids` (every index for `None`),
    /// or those expired by `expired_by` (unix milliseconds); at most `limit`.
    pub async fn trash_entries(
        &self,
        index_ids: Option<&[i64]>,
        expired_by: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TrashRecord>, DbError> {
        let mut sql = format!("SELECT {TRASH_COLUMNS} FROM trash WHERE 1 = 1");
        if expired_by.is_some() {
            sql.push_str(" AND expires_at_ms <= $2");
        } else {
            sql.push_str(" AND $2 = $2");
        }
        if let Some(ids) = index_ids {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND index_id IN (");
            sql.push_str(&super::placeholders(3, ids.len()));
            sql.push(')');
        }
        sql.push_str(" ORDER BY id DESC LIMIT $1");
        let mut query = sqlx::query_as::<_, TrashRow>(&sql)
            .bind(limit)
            .bind(expired_by.unwrap_or(0));
        for id in index_ids.unwrap_or_default() {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        self.trash_records(rows).await
    }

    async fn trash_records(&self, rows: Vec<TrashRow>) -> Result<Vec<TrashRecord>, DbError> {
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let files: Vec<(String, i64)> = sqlx::query_as(
                "SELECT filename, size FROM trash_files WHERE trash_id = $1 ORDER BY filename",
            )
            .bind(row.id)
            .fetch_all(&self.pool)
            .await?;
            let mut bytes = 0u64;
            for (_, size) in &files {
                bytes += super::decode_u64("trash_files", "size", *size)?;
            }
            if row.kind == TrashKind::Index.as_str() {
                bytes = self.index_usage(row.index_id).await?.1;
            }
            records.push(TrashRecord {
                id: row.id,
                index_id: row.index_id,
                kind: super::decode("trash", "kind", &row.kind)?,
                project: row
                    .project
                    .as_deref()
                    .map(|p| super::decode("trash", "project", p))
                    .transpose()?,
                version: row.version,
                filename: row.filename,
                reason: row.reason,
                removed_by: row.removed_by,
                removed_at_ms: row.removed_at_ms,
                expires_at_ms: row.expires_at_ms,
                files: files.into_iter().map(|(name, _)| name).collect(),
                bytes,
            });
        }
        Ok(records)
    }
}
