//! Promotion records, events, file listings copied between indexes, and yanks.

use super::changes::Change;
use super::{Db, DbError, FileRecord, NewFile, WriteTx, decode, decode_json};
use crate::domain::{EventKind, IndexName, ProjectName, Sha256Digest};

/// A promotion as recorded, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRecord {
    /// The audit record's id.
    pub id: i64,
    /// Normalized project name.
    pub project: ProjectName,
    /// Canonical version.
    pub version: String,
    /// The index it was promoted from.
    pub source: IndexName,
    /// The index it was promoted to.
    pub target: IndexName,
    /// The policy rule that allowed it.
    pub policy: String,
    /// Who promoted (token name, or `auto` for automatic promotions).
    pub promoted_by: String,
    /// When (RFC 3339, UTC).
    pub promoted_at: String,
    /// The files listed on the target.
    pub files: serde_json::Value,
    /// The checks and stage results that justified it.
    pub evidence: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct PromotionRow {
    id: i64,
    project: String,
    version: String,
    source: String,
    target: String,
    policy: String,
    promoted_by: String,
    promoted_at: String,
    files: String,
    evidence: String,
}

impl TryFrom<PromotionRow> for PromotionRecord {
    type Error = DbError;

    fn try_from(row: PromotionRow) -> Result<Self, DbError> {
        const TABLE: &str = "promotions";
        Ok(Self {
            id: row.id,
            source: decode(TABLE, "source_index_id", &row.source)?,
            target: decode(TABLE, "target_index_id", &row.target)?,
            files: decode_json(TABLE, "files", &row.files)?,
            evidence: decode_json(TABLE, "evidence", &row.evidence)?,
            project: decode(TABLE, "project", &row.project)?,
            version: row.version,
            policy: row.policy,
            promoted_by: row.promoted_by,
            promoted_at: row.promoted_at,
        })
    }
}

/// A promotion to record.
#[derive(Debug, Clone)]
pub struct NewPromotion<'a> {
    /// Normalized project name.
    pub project: &'a str,
    /// Canonical version.
    pub version: &'a str,
    /// Source index id.
    pub source_index_id: i64,
    /// Target index id.
    pub target_index_id: i64,
    /// Policy rule name.
    pub policy: &'a str,
    /// The token (or `auto (<rule>)`) that acted.
    pub promoted_by: &'a str,
    /// When (RFC 3339, UTC).
    pub promoted_at: &'a str,
    /// The files listed on the target, as JSON.
    pub files: &'a str,
    /// The checks and stage results that justified it, as JSON.
    pub evidence: &'a str,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// What happened.
    pub kind: EventKind,
    /// The index it concerns (`None`: a server-wide event, e.g. a token's).
    pub index: Option<&'a IndexName>,
    /// Normalized project name, for a release's event.
    pub project: Option<&'a str>,
    /// Version as given, for a release's event.
    pub version: Option<&'a str>,
    /// The token (or `auto (<rule>)`) that acted.
    pub actor: &'a str,
    /// When (RFC 3339, UTC).
    pub at: &'a str,
    /// Kind-specific detail (policy and files, failed checks, yank reason).
    pub detail: serde_json::Value,
}

/// An event as recorded, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Row id; events are read in id order.
    pub id: i64,
    /// What happened.
    pub kind: EventKind,
    /// The index it concerns (`None`: a server-wide event, e.g. a token's).
    pub index: Option<IndexName>,
    /// Normalized project name, for a release's event.
    pub project: Option<ProjectName>,
    /// Version as given, for a release's event.
    pub version: Option<String>,
    /// The token (or `auto (<rule>)`) that acted.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Kind-specific detail (policy and files, failed checks, yank reason).
    pub detail: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    kind: String,
    index_name: Option<String>,
    project: Option<String>,
    version: Option<String>,
    actor: String,
    at: String,
    detail: String,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = DbError;

    fn try_from(row: EventRow) -> Result<Self, DbError> {
        const TABLE: &str = "events";
        Ok(Self {
            id: row.id,
            kind: decode(TABLE, "kind", &row.kind)?,
            index: row
                .index_name
                .as_deref()
                .map(|i| decode(TABLE, "index_name", i))
                .transpose()?,
            detail: decode_json(TABLE, "detail", &row.detail)?,
            project: row
                .project
                .as_deref()
                .map(|p| decode(TABLE, "project", p))
                .transpose()?,
            version: row.version,
            actor: row.actor,
            at: row.at,
        })
    }
}

const PROMOTION_SELECT: &str = "SELECT p.id, p.project, p.version, s.namespace || '/' || s.name AS source, \
     t.namespace || '/' || t.name AS target, p.policy, p.promoted_by, p.promoted_at, p.files, p.evidence \
     FROM promotions p JOIN indexes s ON s.id = p.source_index_id JOIN indexes t ON t.id = p.target_index_id";

/// Which events a caller may see, as the events query filters them.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Every event (the server's admin).
    pub everything: bool,
    /// Events of these indexes (readable or administered).
    pub names: Vec<String>,
    /// Events of every index in these namespaces (administered).
    pub namespaces: Vec<String>,
    /// Token events (no index); the caller still checks their scopes.
    pub token_events: bool,
}

/// Which events a page of the list holds: ids after `after` (and before `before`), of
/// one kind or all, oldest or newest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventWindow {
    /// Only ids above this (0: from the start).
    pub after: i64,
    /// Only ids below this.
    pub before: Option<i64>,
    /// Only this kind.
    pub kind: Option<crate::domain::EventKind>,
    /// Newest first (a page to read), instead of oldest first (a stream to follow).
    pub newest_first: bool,
}

impl Db {
    /// The promotion of a release into a target index, if it happened.
    pub async fn find_promotion(
        &self,
        target_index_id: i64,
        project: &str,
        version: &str,
    ) -> Result<Option<PromotionRecord>, DbError> {
        let row: Option<PromotionRow> = sqlx::query_as(&format!(
            "{PROMOTION_SELECT} WHERE p.target_index_id = $1 AND p.project = $2 AND p.version = $3"
        ))
        .bind(target_index_id)
        .bind(project)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(PromotionRecord::try_from).transpose()
    }

    /// True when the release (canonical version) was promoted from `source_index_id`
    /// to any target.
    pub async fn promoted_from(
        &self,
        source_index_id: i64,
        project: &str,
        version: &str,
    ) -> Result<bool, DbError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM promotions WHERE source_index_id = $1 AND project = $2 AND version = $3 LIMIT 1",
        )
        .bind(source_index_id)
        .bind(project)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Every promotion of `project`, from any index to any, newest first.
    pub async fn promotions_of_project(
        &self,
        project: &str,
    ) -> Result<Vec<PromotionRecord>, DbError> {
        let rows: Vec<PromotionRow> = sqlx::query_as(&format!(
            "{PROMOTION_SELECT} WHERE p.project = $1 ORDER BY p.id DESC"
        ))
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(PromotionRecord::try_from).collect()
    }

    /// Promotions into `target_index_id` (or all), newest first.
    pub async fn list_promotions(
        &self,
        target_index_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<PromotionRecord>, DbError> {
        let rows: Vec<PromotionRow> =
            match target_index_id {
                Some(id) => sqlx::query_as(&format!(
                    "{PROMOTION_SELECT} WHERE p.target_index_id = $1 ORDER BY p.id DESC LIMIT $2"
                ))
                .bind(id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query_as(&format!("{PROMOTION_SELECT} ORDER BY p.id DESC LIMIT $1"))
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?
                }
            };
        rows.into_iter().map(PromotionRecord::try_from).collect()
    }

    /// Records a promotion unless one exists for the release on the target; true if this
    /// call recorded it.
    pub async fn insert_promotion_tx(
        tx: &mut WriteTx,
        promotion: &NewPromotion<'_>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO promotions (project, version, source_index_id, target_index_id, policy, promoted_by, promoted_at, files, evidence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (target_index_id, project, version) DO NOTHING",
        )
        .bind(promotion.project)
        .bind(promotion.version)
        .bind(promotion.source_index_id)
        .bind(promotion.target_index_id)
        .bind(promotion.policy)
        .bind(promotion.promoted_by)
        .bind(promotion.promoted_at)
        .bind(promotion.files)
        .bind(promotion.evidence)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from_write)?;
        Ok(done.rows_affected() == 1)
    }

    /// Lists an existing file (same blob, same metadata) on another index. A filename the
    /// target already lists with the same bytes is left alone; with other bytes it is a
    /// `Conflict` (targets are never overwritten).
    pub async fn list_file_on_tx(
        tx: &mut WriteTx,
        file: &FileRecord,
        target_index_id: i64,
        by: &str,
        at: &str,
    ) -> Result<(), DbError> {
        tx.changed(Change::Files(target_index_id, file.project.to_string()));
        if let Some(existing) = Self::find_file_tx(tx, target_index_id, &file.filename).await? {
            return if existing.sha256 == file.sha256 {
                Ok(())
            } else {
                Err(DbError::Conflict)
            };
        }
        let metadata = file.metadata_sha256.as_ref().map(Sha256Digest::to_string);
        let provenance = file
            .provenance
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| {
                DbError::Other(sqlx::Error::Encode(
                    format!("encoding provenance: {e}").into(),
                ))
            })?;
        let new = NewFile {
            index_id: target_index_id,
            project: file.project.as_str(),
            version: &file.version,
            filename: &file.filename,
            kind: file.kind.as_str(),
            sha256: file.sha256.as_str(),
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            requires_python: file.requires_python.as_deref(),
            // The blobs are listed already; only the digest goes into the row.
            metadata: metadata.as_deref().map(|m| (m, 0)),
            uploaded_by: by,
            uploaded_at: at,
            // The provenance travels with the bytes, so production shows where they
            // were built.
            build: file.build_id.zip(provenance.as_deref()),
        };
        Self::insert_file_row_tx(tx, &new).await
    }

    /// Sets or clears the yank flag of files on one index; returns how many changed.
    pub async fn set_yanked_tx(
        tx: &mut WriteTx,
        index_id: i64,
        filenames: &[String],
        reason: Option<&str>,
    ) -> Result<u64, DbError> {
        let mut changed = 0;
        for filename in filenames {
            let done = sqlx::query(
                "UPDATE files SET yanked = $1, yanked_reason = $2 WHERE index_id = $3 AND filename = $4",
            )
            .bind(i64::from(reason.is_some()))
            .bind(reason)
            .bind(index_id)
            .bind(filename)
            .execute(&mut **tx)
            .await?;
            changed += done.rows_affected();
        }
        Ok(changed)
    }

    /// Appends an event.
    pub async fn insert_event_tx(tx: &mut WriteTx, event: &NewEvent<'_>) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO events (kind, index_name, project, version, actor, at, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.kind.as_str())
        .bind(event.index.map(ToString::to_string))
        .bind(event.project)
        .bind(event.version)
        .bind(event.actor)
        .bind(event.at)
        .bind(event.detail.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Events in `window` (optionally of one index), at most `limit`, of those `visible`
    /// lets through — filtered in the query, so a caller who may see
    /// few of many events costs one round trip, not one per hidden event.
    pub async fn list_events(
        &self,
        index_name: Option<&str>,
        window: &EventWindow,
        limit: i64,
        visible: &EventFilter,
    ) -> Result<Vec<EventRecord>, DbError> {
        use std::fmt::Write as _;
        let columns = "id, kind, index_name, project, version, actor, at, detail";
        let mut sql = format!("SELECT {columns} FROM events WHERE id > $1");
        let mut next = 2;
        if index_name.is_some() {
            let _ = write!(sql, " AND index_name = ${next}");
            next += 1;
        }
        if window.before.is_some() {
            let _ = write!(sql, " AND id < ${next}");
            next += 1;
        }
        if window.kind.is_some() {
            let _ = write!(sql, " AND kind = ${next}");
            next += 1;
        }
        if !visible.everything {
            let mut any: Vec<String> = Vec::new();
            if !visible.names.is_empty() {
                any.push(format!(
                    "index_name IN ({})",
                    super::placeholders(next, visible.names.len())
                ));
                next += visible.names.len();
            }
            for _ in &visible.namespaces {
                any.push(format!("index_name LIKE ${next} ESCAPE '\\'"));
                next += 1;
            }
            if visible.token_events {
                any.push("index_name IS NULL".to_owned());
            }
            if any.is_empty() {
                return Ok(Vec::new());
            }
            let _ = write!(sql, " AND ({})", any.join(" OR "));
        }
        let order = if window.newest_first { "DESC" } else { "ASC" };
        let _ = write!(sql, " ORDER BY id {order} LIMIT ${next}");
        let mut query = sqlx::query_as::<_, EventRow>(&sql).bind(window.after);
        if let Some(index) = index_name {
            query = query.bind(index);
        }
        if let Some(before) = window.before {
            query = query.bind(before);
        }
        if let Some(kind) = window.kind {
            query = query.bind(kind.as_str());
        }
        if !visible.everything {
            for name in &visible.names {
                query = query.bind(name);
            }
            for namespace in &visible.namespaces {
                let escaped = namespace
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                query = query.bind(format!("{escaped}/%"));
            }
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter().map(EventRecord::try_from).collect()
    }
}
