//! Garbage collection's queries: the blobs nothing names, collecting one under its lock,
//! and the fleet lease that lets one replica at a time collect.
//!
//! A blob is *named* while a file row (of a stage index, a mirror, or the trash) lists it
//! as its bytes or its METADATA. Collecting checks that under [`Lock::Blob`], which every
//! write that names a blob takes too, and deletes the bytes before the lock is let go:
//! a writer that names the blob afterwards finds it collected and stores its bytes again
//! (see `service::gc`).

use super::{Db, DbError, Lock, WriteTx};
use crate::domain::Sha256Digest;

/// Whether anything names the digest `$1`, one indexed probe per place.
pub(super) const NAMED: &str = "EXISTS (SELECT 1 FROM files WHERE sha256 = $1) \
     OR EXISTS (SELECT 1 FROM files WHERE metadata_sha256 = $1) \
     OR EXISTS (SELECT 1 FROM mirror_files WHERE sha256 = $1) \
     OR EXISTS (SELECT 1 FROM mirror_files WHERE metadata_sha256 = $1) \
     OR EXISTS (SELECT 1 FROM trash_files WHERE sha256 = $1) \
     OR EXISTS (SELECT 1 FROM trash_files WHERE metadata_sha256 = $1)";

/// A stored blob nothing names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unnamed {
    /// Its digest.
    pub sha256: Sha256Digest,
    /// Its size.
    pub size: u64,
}

impl Db {
    /// The stored blobs nothing will name once the trash expired by `now_ms` is released:
    /// what a collection at `now_ms` deletes.
    pub async fn unnamed_blobs(&self, now_ms: i64) -> Result<Vec<Unnamed>, DbError> {
        // A trashed index whose entry has expired names nothing: it is released first.
        const EXPIRED: &str =
            "SELECT t.index_id FROM trash t WHERE t.kind = 'index' AND t.expires_at_ms <= $1";
        let live_f = format!("AND f.index_id NOT IN ({EXPIRED})");
        let live_m = format!("AND m.index_id NOT IN ({EXPIRED})");
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT b.sha256, b.size FROM blobs b WHERE b.collected_at_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256 {live_f}) \
             AND NOT EXISTS (SELECT 1 FROM files f WHERE f.metadata_sha256 = b.sha256 {live_f}) \
             AND NOT EXISTS (SELECT 1 FROM mirror_files m WHERE m.sha256 = b.sha256 {live_m}) \
             AND NOT EXISTS (SELECT 1 FROM mirror_files m WHERE m.metadata_sha256 = b.sha256 {live_m}) \
             AND NOT EXISTS (SELECT 1 FROM trash_files t JOIN trash e ON e.id = t.trash_id \
                 WHERE t.sha256 = b.sha256 AND e.expires_at_ms > $1) \
             AND NOT EXISTS (SELECT 1 FROM trash_files t JOIN trash e ON e.id = t.trash_id \
                 WHERE t.metadata_sha256 = b.sha256 AND e.expires_at_ms > $1) \
             ORDER BY b.sha256"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(sha, size)| {
                Ok(Unnamed {
                    sha256: super::decode("blobs", "sha256", &sha)?,
                    size: super::decode_u64("blobs", "size", size)?,
                })
            })
            .collect()
    }

    /// Every digest with a stored blob row (bytes not collected): what the store may hold.
    pub async fn stored_blob_digests(&self) -> Result<std::collections::HashSet<String>, DbError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT sha256 FROM blobs WHERE collected_at_ms IS NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Begins collecting one blob: takes its lock and answers the transaction if nothing
    /// names it (and its row, if any, says it is stored), `None` otherwise. The caller
    /// deletes the bytes, then [`Db::blob_collected_tx`] and commits.
    pub async fn begin_collect(&self, sha256: &Sha256Digest) -> Result<Option<WriteTx>, DbError> {
        let mut tx = self.begin_write().await?;
        tx.lock(Lock::Blob(sha256.as_str())).await?;
        let named: Option<i64> = sqlx::query_scalar(&format!("SELECT 1 WHERE {NAMED}"))
            .bind(sha256.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        Ok(named.is_none().then_some(tx))
    }

    /// Records that a blob's bytes are gone: its row is deleted, or kept and marked
    /// collected while stage results name the digest (they keep their history).
    pub async fn blob_collected_tx(
        tx: &mut WriteTx,
        sha256: &Sha256Digest,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let deleted = sqlx::query(
            "DELETE FROM blobs WHERE sha256 = $1 \
             AND NOT EXISTS (SELECT 1 FROM stage_results WHERE sha256 = $1)",
        )
        .bind(sha256.as_str())
        .execute(&mut **tx)
        .await?;
        if deleted.rows_affected() == 0 {
            sqlx::query("UPDATE blobs SET collected_at_ms = $2 WHERE sha256 = $1")
                .bind(sha256.as_str())
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Takes (or renews) the fleet lease `name` for `holder` until `until_ms`, if it is
    /// free, lapsed, or already the holder's. Otherwise answers who holds it and until when.
    pub async fn take_fleet_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Result<(), (String, i64)>, DbError> {
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO fleet_leases (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at_ms = excluded.expires_at_ms \
             WHERE fleet_leases.expires_at_ms <= $4 OR fleet_leases.holder = $2 \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let held: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, expires_at_ms FROM fleet_leases WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        // Let go of between the two reads: free now, but another taker may be faster.
        Ok(Err(held.unwrap_or_else(|| {
            (String::from("another replica"), now_ms)
        })))
    }

    /// Lets go of the fleet lease `name` if `holder` holds it.
    pub async fn release_fleet_lease(&self, name: &str, holder: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM fleet_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One release on an index, as retention weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseAge {
    /// The project.
    pub project: crate::domain::ProjectName,
    /// The version, as the files spell it.
    pub version: String,
    /// When its newest file was uploaded (RFC 3339).
    pub uploaded_at: String,
    /// Its files' bytes.
    pub bytes: u64,
}

impl Db {
    /// When each live index last saw activity: its creation, its newest upload, build
    /// claim or heartbeat, and stage report (RFC 3339 texts; the caller takes the
    /// newest).
    pub async fn index_activity(&self) -> Result<Vec<(i64, Vec<String>)>, DbError> {
        type Row = (i64, String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT i.id, i.created_at, \
                 (SELECT MAX(f.uploaded_at) FROM files f WHERE f.index_id = i.id), \
                 (SELECT MAX(b.updated_at) FROM builds b WHERE b.index_id = i.id), \
                 (SELECT MAX(r.reported_at) FROM stage_results r WHERE r.index_id = i.id) \
                 FROM indexes i WHERE i.removed_at_ms IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, created, upload, build, report)| {
                let times = std::iter::once(created)
                    .chain(upload)
                    .chain(build)
                    .chain(report)
                    .collect();
                (id, times)
            })
            .collect())
    }

    /// The releases an index lists, each with its newest upload time and its bytes.
    pub async fn release_ages(&self, index_id: i64) -> Result<Vec<ReleaseAge>, DbError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT project, version, MAX(uploaded_at), CAST(SUM(size) AS BIGINT) FROM files \
             WHERE index_id = $1 GROUP BY project, version",
        )
        .bind(index_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(project, version, uploaded_at, bytes)| {
                Ok(ReleaseAge {
                    project: super::decode("files", "project", &project)?,
                    version,
                    uploaded_at,
                    bytes: super::decode_u64("files", "size", bytes)?,
                })
            })
            .collect()
    }

    /// The releases promoted from an index (project, canonical version), and whether any
    /// promotion names it as source or target.
    pub async fn promotions_touching(
        &self,
        index_id: i64,
    ) -> Result<(Vec<(String, String)>, bool), DbError> {
        let from: Vec<(String, String)> =
            sqlx::query_as("SELECT project, version FROM promotions WHERE source_index_id = $1")
                .bind(index_id)
                .fetch_all(&self.pool)
                .await?;
        let into: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM promotions WHERE target_index_id = $1 LIMIT 1")
                .bind(index_id)
                .fetch_optional(&self.pool)
                .await?;
        let touched = !from.is_empty() || into.is_some();
        Ok((from, touched))
    }
}
