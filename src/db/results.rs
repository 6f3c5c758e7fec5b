//! Stage results: the verdicts CI reports against an artifact's sha256.
//!
//! One row per (sha256, stage, run id). A re-run of the same CI run replaces its row and
//! gets a new id, so "the latest result of a stage" is simply the highest id.

use super::{Db, DbError, placeholders};

/// A stage result as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ResultRecord {
    /// Row id; higher is newer.
    pub id: i64,
    /// The artifact's SHA-256.
    pub sha256: String,
    /// Stage name, e.g. `unit`.
    pub stage: String,
    /// The CI run that reported it.
    pub run_id: String,
    /// `pass` or `fail`.
    pub outcome: String,
    /// The stage command's exit status, if it ran.
    pub exit_code: Option<i64>,
    /// Wall time of the stage.
    pub duration_ms: i64,
    /// JSON object of allowlisted runner facts.
    pub environment: String,
    /// The last bytes of the stage's output.
    pub log_tail: String,
    /// JUnit test count.
    pub tests: Option<i64>,
    /// JUnit failures.
    pub failures: Option<i64>,
    /// JUnit errors.
    pub errors: Option<i64>,
    /// JUnit skipped.
    pub skipped: Option<i64>,
    /// Token name of the reporter.
    pub reported_by: String,
    /// When (RFC 3339).
    pub reported_at: String,
}

/// A stage result to store.
#[derive(Debug, Clone)]
pub struct NewResult<'a> {
    /// The artifact's SHA-256.
    pub sha256: &'a str,
    /// Stage name.
    pub stage: &'a str,
    /// CI run id.
    pub run_id: &'a str,
    /// `pass` or `fail`.
    pub outcome: &'a str,
    /// Exit status.
    pub exit_code: Option<i64>,
    /// Wall time.
    pub duration_ms: i64,
    /// JSON object.
    pub environment: &'a str,
    /// Output tail.
    pub log_tail: &'a str,
    /// JUnit counts: tests, failures, errors, skipped.
    pub junit: Option<[i64; 4]>,
    /// Reporter.
    pub reported_by: &'a str,
    /// When.
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
        let record: ResultRecord = sqlx::query_as(&format!(
            "INSERT INTO stage_results (sha256, stage, run_id, outcome, exit_code, duration_ms, environment, log_tail, tests, failures, errors, skipped, reported_by, reported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {RESULT_COLUMNS}"
        ))
        .bind(result.sha256)
        .bind(result.stage)
        .bind(result.run_id)
        .bind(result.outcome)
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
        let mut query = sqlx::query_as(&sql);
        for digest in digests {
            query = query.bind(*digest);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }
}
