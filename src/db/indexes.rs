//! Index rows and their ordered bases.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::changes::Change;
use super::{Db, DbError, WriteTx};
use crate::domain::{
    DEFAULT_MIRROR_TTL_SECONDS, Index, IndexKind, IndexName, IndexSettings, MirrorSettings,
};

#[derive(sqlx::FromRow)]
struct IndexRow {
    id: i64,
    namespace: String,
    name: String,
    kind: String,
    volatile: i64,
    promotion_only: i64,
    private: i64,
    description: String,
    branch: Option<String>,
    mirror_url: Option<String>,
    mirror_username: Option<String>,
    mirror_password: Option<String>,
    mirror_ttl_seconds: Option<i64>,
    mirror_allow: String,
    mirror_file_origins: String,
    created_at: String,
    updated_at: String,
}

const INDEX_COLUMNS: &str = "id, namespace, name, kind, volatile, promotion_only, private, description, branch, mirror_url, mirror_username, mirror_password, mirror_ttl_seconds, mirror_allow, mirror_file_origins, created_at, updated_at";

/// A mirror's file origins as stored (a JSON list).
fn origins_json(mirror: Option<&MirrorSettings>) -> String {
    serde_json::to_string(
        &mirror
            .map(|m| m.file_origins.as_slice())
            .unwrap_or_default(),
    )
    .unwrap_or_else(|_| "[]".to_owned())
}

impl IndexRow {
    fn into_index(self, bases: Vec<IndexName>) -> Result<Index, DbError> {
        let corrupt = |what: &str| {
            DbError::Other(sqlx::Error::Decode(
                format!("index row {}: {what}", self.id).into(),
            ))
        };
        let name = IndexName::from_parts(&self.namespace, &self.name)
            .map_err(|e| corrupt(&e.to_string()))?;
        let kind = IndexKind::from_db(&self.kind).ok_or_else(|| corrupt("unknown kind"))?;
        let mirror = match (kind, self.mirror_url) {
            (IndexKind::Mirror, Some(url)) => Some(MirrorSettings {
                url,
                username: self.mirror_username,
                password: self.mirror_password,
                ttl_seconds: self
                    .mirror_ttl_seconds
                    .and_then(|t| u64::try_from(t).ok())
                    .unwrap_or(DEFAULT_MIRROR_TTL_SECONDS),
                file_origins: serde_json::from_str(&self.mirror_file_origins)
                    .map_err(|e| corrupt(&format!("mirror_file_origins: {e}")))?,
            }),
            (IndexKind::Mirror, None) => return Err(corrupt("mirror without an upstream URL")),
            (IndexKind::Stage, _) => None,
        };
        let mirror_allow: Vec<String> =
            serde_json::from_str(&self.mirror_allow).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Index {
            id: self.id,
            name,
            settings: IndexSettings {
                kind,
                bases,
                volatile: self.volatile != 0,
                promotion_only: self.promotion_only != 0,
                private: self.private != 0,
                description: self.description,
                branch: self.branch,
                mirror,
                mirror_allow,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Attaches `(index id, base namespace, base name)` edges, in order, to their rows.
fn with_bases(
    rows: Vec<IndexRow>,
    edges: Vec<(i64, String, String)>,
) -> Result<Vec<Index>, DbError> {
    let mut bases: HashMap<i64, Vec<IndexName>> = HashMap::new();
    for (id, ns, name) in edges {
        let base = super::decode_index_name(&ns, &name)?;
        bases.entry(id).or_default().push(base);
    }
    rows.into_iter()
        .map(|row| {
            let own = bases.remove(&row.id).unwrap_or_default();
            row.into_index(own)
        })
        .collect()
}

fn allow_json(names: &[String]) -> String {
    serde_json::to_string(names).expect("a list of strings serializes")
}

async fn bases_of(conn: &mut AnyConnection, id: i64) -> Result<Vec<IndexName>, DbError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.namespace, i.name FROM index_bases b JOIN indexes i ON i.id = b.base_id \
         WHERE b.index_id = $1 ORDER BY b.position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|(ns, name)| super::decode_index_name(ns, name))
        .collect()
}

async fn find_index(conn: &mut AnyConnection, name: &IndexName) -> Result<Option<Index>, DbError> {
    let row: Option<IndexRow> = sqlx::query_as(&format!(
        "SELECT {INDEX_COLUMNS} FROM indexes WHERE namespace = $1 AND name = $2 AND removed_at_ms IS NULL"
    ))
    .bind(name.namespace())
    .bind(name.name())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => {
            let bases = bases_of(conn, row.id).await?;
            Ok(Some(row.into_index(bases)?))
        }
        None => Ok(None),
    }
}

impl Db {
    /// Looks an index up by name (remembered until its settings change or it is deleted;
    /// an unknown name is asked again every time).
    pub async fn find_index(&self, name: &IndexName) -> Result<Option<Index>, DbError> {
        if let Some(index) = self.indexes.get(name, &self.stamps) {
            return Ok(Some(index));
        }
        let read_at = self.stamps.now();
        let mut conn = self.pool.acquire().await?;
        let found = find_index(&mut conn, name).await?;
        if let Some(index) = &found {
            self.indexes.put(
                name.clone(),
                read_at,
                vec![Change::Index(index.id)],
                index.clone(),
            );
        }
        Ok(found)
    }

    /// Looks an index up by name inside a write transaction.
    pub async fn find_index_tx(
        tx: &mut WriteTx,
        name: &IndexName,
    ) -> Result<Option<Index>, DbError> {
        find_index(tx, name).await
    }

    /// Every index, ordered by name, with its bases.
    pub async fn list_indexes(&self) -> Result<Vec<Index>, DbError> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<IndexRow> = sqlx::query_as(&format!(
            "SELECT {INDEX_COLUMNS} FROM indexes WHERE removed_at_ms IS NULL ORDER BY namespace, name"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let edges: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT b.index_id, i.namespace, i.name FROM index_bases b \
             JOIN indexes i ON i.id = b.base_id ORDER BY b.index_id, b.position",
        )
        .fetch_all(&mut *conn)
        .await?;
        with_bases(rows, edges)
    }

    /// The indexes in the trash (hidden from every other lookup), with their bases.
    pub async fn trashed_indexes(&self) -> Result<Vec<Index>, DbError> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<IndexRow> = sqlx::query_as(&format!(
            "SELECT {INDEX_COLUMNS} FROM indexes WHERE removed_at_ms IS NOT NULL ORDER BY namespace, name"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let edges: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT b.index_id, i.namespace, i.name FROM index_bases b \
             JOIN indexes i ON i.id = b.base_id JOIN indexes t ON t.id = b.index_id \
             WHERE t.removed_at_ms IS NOT NULL ORDER BY b.index_id, b.position",
        )
        .fetch_all(&mut *conn)
        .await?;
        with_bases(rows, edges)
    }

    /// The indexes with these ids, with their bases, in no particular order. Two queries
    /// whatever the number of indexes on the server (a download resolves its chain).
    pub async fn indexes_with_ids(&self, ids: &[i64]) -> Result<Vec<Index>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        let list = super::placeholders(1, ids.len());
        let sql = format!(
            "SELECT {INDEX_COLUMNS} FROM indexes WHERE removed_at_ms IS NULL AND id IN ({list})"
        );
        let mut rows = sqlx::query_as::<_, IndexRow>(&sql);
        for id in ids {
            rows = rows.bind(*id);
        }
        let rows = rows.fetch_all(&mut *conn).await?;
        let sql = format!(
            "SELECT b.index_id, i.namespace, i.name FROM index_bases b \
             JOIN indexes i ON i.id = b.base_id WHERE b.index_id IN ({list}) \
             ORDER BY b.index_id, b.position"
        );
        let mut edges = sqlx::query_as::<_, (i64, String, String)>(&sql);
        for id in ids {
            edges = edges.bind(*id);
        }
        let edges = edges.fetch_all(&mut *conn).await?;
        with_bases(rows, edges)
    }

    /// The ids of an index's direct bases, in order.
    pub async fn base_ids(&self, id: i64) -> Result<Vec<i64>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT base_id FROM index_bases WHERE index_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// All `(index, base)` edges, for cycle detection inside a write transaction.
    pub async fn base_edges_tx(tx: &mut WriteTx) -> Result<Vec<(i64, i64)>, DbError> {
        Ok(sqlx::query_as("SELECT index_id, base_id FROM index_bases")
            .fetch_all(&mut **tx)
            .await?)
    }

    /// Inserts an index and its bases (given as ids, in order); returns its id.
    pub async fn insert_index_tx(
        tx: &mut WriteTx,
        name: &IndexName,
        settings: &IndexSettings,
        base_ids: &[i64],
        now: &str,
    ) -> Result<i64, DbError> {
        tx.changed(Change::Indexes);
        let mirror = settings.mirror.as_ref();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO indexes (namespace, name, kind, volatile, promotion_only, description, branch, \
             mirror_url, mirror_username, mirror_password, mirror_ttl_seconds, mirror_allow, private, created_at, updated_at, mirror_file_origins) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15) RETURNING id",
        )
        .bind(name.namespace())
        .bind(name.name())
        .bind(settings.kind.as_str())
        .bind(i64::from(settings.volatile))
        .bind(i64::from(settings.promotion_only))
        .bind(&settings.description)
        .bind(settings.branch.as_deref())
        .bind(mirror.map(|m| m.url.as_str()))
        .bind(mirror.and_then(|m| m.username.as_deref()))
        .bind(mirror.and_then(|m| m.password.as_deref()))
        .bind(mirror.map(|m| i64::try_from(m.ttl_seconds).unwrap_or(i64::MAX)))
        .bind(allow_json(&settings.mirror_allow))
        .bind(i64::from(settings.private))
        .bind(now)
        .bind(origins_json(mirror))
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::from_write)?;
        Self::set_bases(tx, id, base_ids).await?;
        Ok(id)
    }

    /// Replaces an index's settings and bases.
    pub async fn update_index_tx(
        tx: &mut WriteTx,
        id: i64,
        settings: &IndexSettings,
        base_ids: &[i64],
        now: &str,
    ) -> Result<(), DbError> {
        tx.changed(Change::Index(id));
        let mirror = settings.mirror.as_ref();
        sqlx::query(
            "UPDATE indexes SET volatile = $1, promotion_only = $2, description = $3, updated_at = $4, \
             mirror_url = $5, mirror_username = $6, mirror_password = $7, mirror_ttl_seconds = $8, \
             mirror_allow = $9, private = $10, mirror_file_origins = $12 WHERE id = $11",
        )
        .bind(i64::from(settings.volatile))
        .bind(i64::from(settings.promotion_only))
        .bind(&settings.description)
        .bind(now)
        .bind(mirror.map(|m| m.url.as_str()))
        .bind(mirror.and_then(|m| m.username.as_deref()))
        .bind(mirror.and_then(|m| m.password.as_deref()))
        .bind(mirror.map(|m| i64::try_from(m.ttl_seconds).unwrap_or(i64::MAX)))
        .bind(allow_json(&settings.mirror_allow))
        .bind(i64::from(settings.private))
        .bind(id)
        .bind(origins_json(mirror))
        .execute(&mut **tx)
        .await?;
        Self::set_bases(tx, id, base_ids).await
    }

    async fn set_bases(tx: &mut WriteTx, id: i64, base_ids: &[i64]) -> Result<(), DbError> {
        sqlx::query("DELETE FROM index_bases WHERE index_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        for (position, base_id) in base_ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO index_bases (index_id, position, base_id) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(*base_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Names of the indexes that list `id` among their bases.
    pub async fn dependents_tx(tx: &mut WriteTx, id: i64) -> Result<Vec<IndexName>, DbError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.namespace, i.name FROM index_bases b JOIN indexes i ON i.id = b.index_id \
             WHERE b.base_id = $1 ORDER BY i.namespace, i.name",
        )
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|(ns, name)| super::decode_index_name(ns, name))
            .collect()
    }

    /// Deletes an index, its bases and its file rows (blobs stay).
    pub async fn delete_index_tx(tx: &mut WriteTx, id: i64) -> Result<(), DbError> {
        tx.changed(Change::Indexes);
        tx.changed(Change::Index(id));
        // Its projects are no longer published here: the mirror guard may answer
        // differently for them on every other index.
        let projects: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT project FROM files WHERE index_id = $1")
                .bind(id)
                .fetch_all(&mut **tx)
                .await?;
        for project in projects {
            tx.changed(Change::Files(id, project));
        }
        sqlx::query("DELETE FROM files WHERE index_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM index_bases WHERE index_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM indexes WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
