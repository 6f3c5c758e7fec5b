//! Build leases: which runner builds a release, until when, and how it ended.
//!
//! Every state change is a conditional write — an `INSERT … ON CONFLICT DO NOTHING` that
//! only one claimer wins, or an `UPDATE … WHERE lease_id = $old` that only the holder (or
//! one taker-over of an expired lease) can make — so "one build per release" holds across
//! replicas sharing the database, not just inside one process.

use super::{Db, DbError, WriteTx, decode, decode_json};
use crate::domain::{BuildTarget, Provenance, SourceCommit};

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildState {
    /// A runner holds the lease and is building.
    Building,
    /// The build finished and its files are on the index.
    Ready,
    /// The build failed; nobody builds again unless asked to retry.
    Failed,
}

impl BuildState {
    /// The database spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    fn from_db(value: &str) -> Result<Self, DbError> {
        match value {
            "building" => Ok(Self::Building),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
            other => Err(DbError::Other(sqlx::Error::Decode(
                format!("unknown build state `{other}`").into(),
            ))),
        }
    }
}

/// A build lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    /// The lease row's id (a takeover updates it in place).
    pub id: i64,
    /// Where it builds.
    pub state: BuildState,
    /// The target of a per-target build; `None` for the release's first build.
    pub target: Option<BuildTarget>,
    /// The holder's secret.
    pub lease_id: String,
    /// 1 for the first claim, +1 per takeover or retry.
    pub attempt: i64,
    /// Who builds (token name and runner).
    pub builder: String,
    /// When the lease lapses without a heartbeat, ms since the epoch.
    pub expires_at_ms: i64,
    /// The tail of a failed build's output.
    pub error_tail: Option<String>,
    /// First claimed (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
    /// The commit the build is made from (`None` only for builds claimed before Kiln
    /// recorded commits).
    pub source_commit: Option<SourceCommit>,
    /// The holder's CI run, runner and environment.
    pub provenance: Option<Provenance>,
}

#[derive(sqlx::FromRow)]
struct BuildRow {
    id: i64,
    target: String,
    state: String,
    lease_id: String,
    attempt: i64,
    builder: String,
    expires_at_ms: i64,
    error_tail: Option<String>,
    created_at: String,
    updated_at: String,
    source_commit: Option<String>,
    provenance: Option<String>,
}

impl TryFrom<BuildRow> for BuildRecord {
    type Error = DbError;

    fn try_from(row: BuildRow) -> Result<Self, DbError> {
        const TABLE: &str = "builds";
        Ok(Self {
            id: row.id,
            state: BuildState::from_db(&row.state)?,
            target: if row.target.is_empty() {
                None
            } else {
                Some(decode(TABLE, "target", &row.target)?)
            },
            source_commit: row
                .source_commit
                .as_deref()
                .map(|c| decode(TABLE, "source_commit", c))
                .transpose()?,
            provenance: row
                .provenance
                .as_deref()
                .map(|p| decode_json(TABLE, "provenance", p))
                .transpose()?,
            lease_id: row.lease_id,
            attempt: row.attempt,
            builder: row.builder,
            expires_at_ms: row.expires_at_ms,
            error_tail: row.error_tail,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const BUILD_COLUMNS: &str = "id, target, state, lease_id, attempt, builder, expires_at_ms, error_tail, created_at, updated_at, source_commit, provenance";

fn provenance_json(provenance: &Provenance) -> Result<String, DbError> {
    serde_json::to_string(provenance).map_err(|e| {
        DbError::Other(sqlx::Error::Encode(
            format!("encoding provenance: {e}").into(),
        ))
    })
}

/// The key of a build: a release on one index.
#[derive(Debug, Clone, Copy)]
pub struct BuildKey<'a> {
    /// The index it is built into.
    pub index_id: i64,
    /// Normalized project name.
    pub project: &'a str,
    /// Normalized version.
    pub version: &'a str,
    /// The target of a per-target build; `None` for the release's first build.
    pub target: Option<&'a BuildTarget>,
}

impl BuildKey<'_> {
    /// The target column's value: '' for the release's first build.
    fn target(&self) -> &str {
        self.target.map_or("", BuildTarget::as_str)
    }
}

/// Who takes a lease: its secret, the holder's description, its expiry and the
/// provenance of what it builds.
#[derive(Debug, Clone, Copy)]
pub struct LeaseHolder<'a> {
    /// The new lease secret.
    pub lease_id: &'a str,
    /// Token name and runner, shown to waiters.
    pub builder: &'a str,
    /// When the lease lapses without a heartbeat (ms since the epoch).
    pub expires_at_ms: i64,
    /// The commit and CI run it builds from.
    pub provenance: &'a Provenance,
}

/// A lease in progress somewhere on the server: what the build queue shows.
#[derive(Debug, Clone)]
pub struct BuildInProgress {
    /// The index it builds into.
    pub index_id: i64,
    /// Normalized project name.
    pub project: crate::domain::ProjectName,
    /// The version.
    pub version: String,
    /// The build.
    pub build: BuildRecord,
}

impl Db {
    /// Builds holding a lease (live or lapsed, not yet taken over), oldest first, at
    /// most `limit`.
    pub async fn builds_in_progress(&self, limit: i64) -> Result<Vec<BuildInProgress>, DbError> {
        #[derive(sqlx::FromRow)]
        struct QueueRow {
            index_id: i64,
            project: String,
            version: String,
            #[sqlx(flatten)]
            build: BuildRow,
        }
        let rows: Vec<QueueRow> = sqlx::query_as(&format!(
            "SELECT index_id, project, version, {BUILD_COLUMNS} FROM builds WHERE state = 'building' ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(BuildInProgress {
                    index_id: row.index_id,
                    project: super::decode("builds", "project", &row.project)?,
                    version: row.version,
                    build: row.build.try_into()?,
                })
            })
            .collect()
    }

    /// The build row of a release, if any.
    pub async fn find_build(&self, key: BuildKey<'_>) -> Result<Option<BuildRecord>, DbError> {
        let row: Option<BuildRow> = sqlx::query_as(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE index_id = $1 AND project = $2 AND version = $3 AND target = $4"
        ))
        .bind(key.index_id)
        .bind(key.project)
        .bind(key.version)
        .bind(key.target())
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The build row with `id`, if it still exists.
    pub async fn find_build_by_id(&self, id: i64) -> Result<Option<BuildRecord>, DbError> {
        let row: Option<BuildRow> =
            sqlx::query_as(&format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Same as [`Db::find_build`], inside a write transaction.
    pub async fn find_build_tx(
        tx: &mut WriteTx,
        key: BuildKey<'_>,
    ) -> Result<Option<BuildRecord>, DbError> {
        let row: Option<BuildRow> = sqlx::query_as(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE index_id = $1 AND project = $2 AND version = $3 AND target = $4"
        ))
        .bind(key.index_id)
        .bind(key.project)
        .bind(key.version)
        .bind(key.target())
        .fetch_optional(&mut **tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The build of a release (any target) whose lease secret is `lease_id`, inside a
    /// write transaction: the build an upload under that lease belongs to.
    pub async fn find_build_by_lease_tx(
        tx: &mut WriteTx,
        key: BuildKey<'_>,
        lease_id: &str,
    ) -> Result<Option<BuildRecord>, DbError> {
        let row: Option<BuildRow> = sqlx::query_as(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE index_id = $1 AND project = $2 AND version = $3 AND lease_id = $4"
        ))
        .bind(key.index_id)
        .bind(key.project)
        .bind(key.version)
        .bind(lease_id)
        .fetch_optional(&mut **tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Inserts a `building` row unless one exists; true if this call created it.
    pub async fn insert_build_tx(
        tx: &mut WriteTx,
        key: BuildKey<'_>,
        holder: &LeaseHolder<'_>,
        now: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO builds (index_id, project, version, state, lease_id, attempt, builder, expires_at_ms, created_at, updated_at, source_commit, provenance, target) \
             VALUES ($1, $2, $3, 'building', $4, 1, $5, $6, $7, $7, $8, $9, $10) \
             ON CONFLICT (index_id, project, version, target) DO NOTHING",
        )
        .bind(key.index_id)
        .bind(key.project)
        .bind(key.version)
        .bind(holder.lease_id)
        .bind(holder.builder)
        .bind(holder.expires_at_ms)
        .bind(now)
        .bind(holder.provenance.commit.as_str())
        .bind(provenance_json(holder.provenance)?)
        .bind(key.target())
        .execute(&mut **tx)
        .await
        .map_err(DbError::from_write)?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands the build to a new holder, if `old_lease` still holds it (a takeover of an
    /// expired lease, a retry of a failed build, or a rebuild). True if this call won.
    pub async fn reclaim_build_tx(
        tx: &mut WriteTx,
        id: i64,
        old_lease: &str,
        holder: &LeaseHolder<'_>,
        now: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE builds SET state = 'building', lease_id = $1, attempt = attempt + 1, builder = $2, \
             expires_at_ms = $3, error_tail = NULL, updated_at = $4, source_commit = $7, provenance = $8 \
             WHERE id = $5 AND lease_id = $6",
        )
        .bind(holder.lease_id)
        .bind(holder.builder)
        .bind(holder.expires_at_ms)
        .bind(now)
        .bind(id)
        .bind(old_lease)
        .bind(holder.provenance.commit.as_str())
        .bind(provenance_json(holder.provenance)?)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends a lease the caller still holds, answering the build's attempt; `None` if
    /// the lease is no longer theirs.
    pub async fn extend_lease(
        &self,
        key: BuildKey<'_>,
        lease_id: &str,
        expires_at_ms: i64,
        now: &str,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.begin_write().await?;
        let attempt: Option<i64> = sqlx::query_scalar(
            "UPDATE builds SET expires_at_ms = $1, updated_at = $2 WHERE index_id = $3 AND project = $4 AND version = $5 AND lease_id = $6 AND state = 'building' AND target = $7 RETURNING attempt",
        )
        .bind(expires_at_ms)
        .bind(now)
        .bind(key.index_id)
        .bind(key.project)
        .bind(key.version)
        .bind(lease_id)
        .bind(key.target())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attempt)
    }

    /// Ends a build the caller holds: `Ready`, or `Failed` with the output's tail.
    pub async fn finish_build_tx(
        tx: &mut WriteTx,
        key: BuildKey<'_>,
        lease_id: &str,
        state: BuildState,
        error_tail: Option<&str>,
        now: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE builds SET state = $1, error_tail = $2, updated_at = $3 WHERE index_id = $4 AND project = $5 AND version = $6 AND lease_id = $7 AND state = 'building' AND target = $8",
        )
        .bind(state.as_str())
        .bind(error_tail)
        .bind(now)
        .bind(key.index_id)
        .bind(key.project)
        .bind(key.version)
        .bind(lease_id)
        .bind(key.target())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
