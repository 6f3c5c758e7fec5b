//! Stage results: the verdicts CI reports against an artifact's sha256, for one index.
//!
//! One row per (index, sha256, stage, run id). A re-run of the same CI run replaces its
//! row and gets a new id, so "the latest result of a stage" on an index is simply the
//! highest id there.

use std::collections::BTreeMap;

use super::{
    Backend, Db, DbError, WriteTx, decode, decode_flag, decode_json, decode_u64, placeholders,
};
use crate::domain::{ArtifactCheck, IndexName, Outcome, Sha256Digest};

/// A stage result as stored, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    /// Row id; higher is newer.
    pub id: i64,
    /// The index the result counts for.
    pub index_id: i64,
    /// That index's name.
    pub index: IndexName,
    /// The artifact's SHA-256.
    pub sha256: Sha256Digest,
    /// Stage name, e.g. `unit`.
    pub stage: String,
    /// The CI run that reported it.
    pub run_id: String,
    /// The verdict.
    pub outcome: Outcome,
    /// Why an `error` stage could not run.
    pub cause: Option<String>,
    /// Whether the stage proved it tested the artifact.
    pub artifact: Option<ArtifactCheck>,
    /// The stage command's exit status, if it ran.
    pub exit_code: Option<i64>,
    /// Wall time of the stage.
    pub duration_ms: u64,
    /// Allowlisted runner facts.
    pub environment: BTreeMap<String, String>,
    /// The last bytes of the stage's output.
    pub log_tail: String,
    /// JUnit counts (tests, failures, errors, skipped), when a report file was given.
    pub junit: Option<[u64; 4]>,
    /// Token name of the reporter.
    pub reported_by: String,
    /// When (RFC 3339).
    pub reported_at: String,
    /// The release had already been promoted from the index when it arrived.
    pub after_promotion: bool,
}

#[derive(sqlx::FromRow)]
struct ResultRow {
    id: i64,
    index_id: i64,
    index_name: String,
    cause: Option<String>,
    artifact: Option<String>,
    after_promotion: i64,
    sha256: String,
    stage: String,
    run_id: String,
    outcome: String,
    exit_code: Option<i64>,
    duration_ms: i64,
    environment: String,
    log_tail: String,
    tests: Option<i64>,
    failures: Option<i64>,
    errors: Option<i64>,
    skipped: Option<i64>,
    reported_by: String,
    reported_at: String,
}

const TABLE: &str = "stage_results";

impl TryFrom<ResultRow> for ResultRecord {
    type Error = DbError;

    fn try_from(row: ResultRow) -> Result<Self, DbError> {
        let count = |column, n: Option<i64>| {
            n.map(|n| decode_u64(TABLE, column, n))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let junit = match row.tests {
            None => None,
            Some(_) => Some([
                count("tests", row.tests)?,
                count("failures", row.failures)?,
                count("errors", row.errors)?,
                count("skipped", row.skipped)?,
            ]),
        };
        Ok(Self {
            id: row.id,
            index_id: row.index_id,
            index: decode(TABLE, "index_id", &row.index_name)?,
            cause: row.cause,
            artifact: row
                .artifact
                .as_deref()
                .map(|a| decode(TABLE, "artifact", a))
                .transpose()?,
            after_promotion: decode_flag(TABLE, "after_promotion", row.after_promotion)?,
            sha256: decode(TABLE, "sha256", &row.sha256)?,
            outcome: decode(TABLE, "outcome", &row.outcome)?,
            environment: decode_json(TABLE, "environment", &row.environment)?,
            duration_ms: decode_u64(TABLE, "duration_ms", row.duration_ms)?,
            junit,
            stage: row.stage,
            run_id: row.run_id,
            exit_code: row.exit_code,
            log_tail: row.log_tail,
            reported_by: row.reported_by,
            reported_at: row.reported_at,
        })
    }
}

/// A stage result to store.
#[derive(Debug, Clone)]
pub struct NewResult<'a> {
    /// The index it counts for.
    pub index_id: i64,
    /// That index's name (as the stored record reads it back).
    pub index_name: &'a str,
    /// The artifact's SHA-256.
    pub sha256: &'a str,
    /// The stage, e.g. `unit`.
    pub stage: &'a str,
    /// The CI run that reported it.
    pub run_id: &'a str,
    /// The verdict.
    pub outcome: Outcome,
    /// Why an `error` stage could not run.
    pub cause: Option<&'a str>,
    /// Whether the stage proved it tested the artifact.
    pub artifact: Option<&'a ArtifactCheck>,
    /// The stage command's exit status, when it ran and exited.
    pub exit_code: Option<i64>,
    /// How long the stage command ran, in milliseconds.
    pub duration_ms: i64,
    /// JSON object.
    pub environment: &'a str,
    /// The last bytes of the stage's output.
    pub log_tail: &'a str,
    /// JUnit counts: tests, failures, errors, skipped.
    pub junit: Option<[i64; 4]>,
    /// Reporter.
    pub reported_by: &'a str,
    /// When it was recorded (RFC 3339, UTC).
    pub reported_at: &'a str,
    /// The release had already been promoted from the index.
    pub after_promotion: bool,
}

const RESULT_COLUMNS: &str = "r.id, r.index_id, i.namespace || '/' || i.name AS index_name, r.sha256, r.stage, r.run_id, r.outcome, r.cause, r.artifact, r.exit_code, r.duration_ms, r.environment, r.log_tail, r.tests, r.failures, r.errors, r.skipped, r.reported_by, r.reported_at, r.after_promotion";
const RESULT_FROM: &str = "stage_results r JOIN indexes i ON i.id = r.index_id";

impl Db {
    /// Stores a result, replacing the same run's earlier report of the same stage with a
    /// new, higher id (so the replacement is the newest result). One statement: the
    /// unique key finds the earlier row (an index lookup whatever the table's size or
    /// statistics), and two identical reports at once simply apply one after the other.
    /// With `tx`, inside that write transaction (with what else it writes: webhook
    /// deliveries); without, on its own.
    pub async fn record_result(
        &self,
        result: &NewResult<'_>,
        tx: Option<&mut WriteTx>,
    ) -> Result<ResultRecord, DbError> {
        // The replacement's id: the sequence on PostgreSQL; on SQLite (one writer at a
        // time) one past the highest, read from the primary key.
        let next_id = match self.backend {
            Backend::Postgres => "nextval(pg_get_serial_sequence('stage_results', 'id'))",
            Backend::Sqlite => "(SELECT MAX(id) + 1 FROM stage_results)",
        };
        let junit = result
            .junit
            .map(|counts| counts.map(Some))
            .unwrap_or_default();
        let artifact = result.artifact.map(ToString::to_string);
        let sql = format!(
            "INSERT INTO stage_results (sha256, stage, run_id, outcome, exit_code, duration_ms, environment, log_tail, tests, failures, errors, skipped, reported_by, reported_at, index_id, cause, after_promotion, artifact) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (index_id, sha256, stage, run_id) DO UPDATE SET id = {next_id}, \
             outcome = excluded.outcome, exit_code = excluded.exit_code, duration_ms = excluded.duration_ms, \
             environment = excluded.environment, log_tail = excluded.log_tail, tests = excluded.tests, \
             failures = excluded.failures, errors = excluded.errors, skipped = excluded.skipped, \
             reported_by = excluded.reported_by, reported_at = excluded.reported_at, cause = excluded.cause, \
             after_promotion = excluded.after_promotion, artifact = excluded.artifact \
             RETURNING id"
        );
        let query = sqlx::query_scalar(&sql)
            .bind(result.sha256)
            .bind(result.stage)
            .bind(result.run_id)
            .bind(result.outcome.as_str())
            .bind(result.exit_code)
            .bind(result.duration_ms)
            .bind(result.environment)
            .bind(result.log_tail)
            .bind(junit[0])
            .bind(junit[1])
            .bind(junit[2])
            .bind(junit[3])
            .bind(result.reported_by)
            .bind(result.reported_at)
            .bind(result.index_id)
            .bind(result.cause)
            .bind(i64::from(result.after_promotion))
            .bind(artifact.as_deref());
        let id: i64 = match tx {
            Some(tx) => query.fetch_one(&mut **tx).await,
            None => query.fetch_one(&self.pool).await,
        }
        .map_err(DbError::from_write)?;
        // What was written, read back through the same decoding as a stored row.
        ResultRecord::try_from(ResultRow {
            id,
            index_id: result.index_id,
            index_name: result.index_name.to_owned(),
            cause: result.cause.map(str::to_owned),
            artifact,
            after_promotion: i64::from(result.after_promotion),
            sha256: result.sha256.to_owned(),
            stage: result.stage.to_owned(),
            run_id: result.run_id.to_owned(),
            outcome: result.outcome.as_str().to_owned(),
            exit_code: result.exit_code,
            duration_ms: result.duration_ms,
            environment: result.environment.to_owned(),
            log_tail: result.log_tail.to_owned(),
            tests: junit[0],
            failures: junit[1],
            errors: junit[2],
            skipped: junit[3],
            reported_by: result.reported_by.to_owned(),
            reported_at: result.reported_at.to_owned(),
        })
    }

    /// Every result reported for the given artifacts, oldest first.
    pub async fn results_of(&self, digests: &[&str]) -> Result<Vec<ResultRecord>, DbError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM {RESULT_FROM} WHERE r.sha256 IN ({}) ORDER BY r.id",
            placeholders(1, digests.len())
        );
        let mut query = sqlx::query_as::<_, ResultRow>(&sql);
        for digest in digests {
            query = query.bind(*digest);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(ResultRecord::try_from)
            .collect()
    }
}
