//! Stage results: the verdicts CI reports against an artifact's sha256.
//!
//! One row per (sha256, stage, run id). A re-run of the same CI run replaces its row and
//! gets a new id, so "the latest result of a stage" is simply the highest id.

use std::collections::BTreeMap;

use super::{Db, DbError, decode, decode_json, decode_u64, placeholders};
use crate::domain::{Outcome, Sha256Digest};

/// A stage result as stored, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    /// Row id; higher is newer.
    pub id: i64,
    /// The artifact's SHA-256.
    pub sha256: Sha256Digest,
    /// Stage name, e.g. `unit`.
    pub stage: String,
    /// The CI run that reported it.
    pub run_id: String,
    /// The verdict.
    pub outcome: Outcome,
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
}

#[derive(sqlx::FromRow)]
struct ResultRow {
    id: i64,
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
    /// The artifact's SHA-256.
    pub sha256: &'a str,
    /// The stage, e.g. `unit`.
    pub stage: &'a str,
    /// The CI run that reported it.
    pub run_id: &'a str,
    /// The verdict.
    pub outcome: Outcome,
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
}

const RESULT_COLUMNS: &str = "id, sha256, stage, run_id, outcome, exit_code, duration_ms, environment, log_tail, tests, failures, errors, skipped, reported_by, reported_at";

impl Db {
    /// Stores a result, replacing the same run's earlier report of the same stage.
    pub async fn record_result(&self, result: &NewResult<'_>) -> Result<ResultRecord, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM stage_results WHERE sha256 = $1 AND stage = $2 AND run_id = $3")
            .bind(result.sha256)
            .bind(result.stage)
            .bind(result.run_id)
            .execute(&mut *tx)
            .await?;
        let junit = result
            .junit
            .map(|counts| counts.map(Some))
            .unwrap_or_default();
        let record: ResultRow = sqlx::query_as(&format!(
            "INSERT INTO stage_results (sha256, stage, run_id, outcome, exit_code, duration_ms, environment, log_tail, tests, failures, errors, skipped, reported_by, reported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {RESULT_COLUMNS}"
        ))
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
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::from_write)?;
        let record = ResultRecord::try_from(record)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every result reported for the given artifacts, oldest first.
    pub async fn results_of(&self, digests: &[&str]) -> Result<Vec<ResultRecord>, DbError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM stage_results WHERE sha256 IN ({}) ORDER BY id",
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
