//! Stage results: CI's verdicts, recorded against the artifact's sha256 *for one index*.
//!
//! A result names the artifact by digest and the index the stage installed it from. It
//! counts for that index only: the reporter needs `report` there, the index must list the
//! bytes itself, and a promotion from an index reads only that index's results. The same
//! bytes uploaded to another namespace never lend their verdicts (that was a forgery: a
//! token scoped to `other/*` could copy master's public wheel and report it green). A
//! stage may be reported many times (re-runs); the latest report of each stage on the
//! index is the one that counts ([`latest_per_stage`]).
//!
//! Traps: the environment is an allowlisted summary the client builds, but the server still
//! bounds it (key count and sizes) and never interprets it; the log tail is cut to
//! [`crate::api::MAX_LOG_TAIL`] here too, so a client that sends more cannot bloat the database.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::auth::Caller;
use super::resolve;
use super::{ServiceError, now_rfc3339};
use crate::api::{JunitCounts, ResultView, StageReport};
use crate::api::{MAX_LOG_TAIL, tail};
use crate::db::{Db, FileRecord, NewResult, ResultRecord};
use crate::domain::Outcome;
use crate::domain::Release;
use crate::domain::release::canonical;
use crate::domain::{Index, IndexName, Permission, Sha256Digest, WebhookEvent};

const MAX_ENV_KEYS: usize = 32;
const MAX_ENV_VALUE: usize = 256;
const MAX_RUN_ID: usize = 200;
const MAX_CAUSE: usize = 500;

/// A stored result as the API shows it.
fn view(r: ResultRecord) -> ResultView {
    let junit = r
        .junit
        .map(|[tests, failures, errors, skipped]| JunitCounts {
            tests,
            failures,
            errors,
            skipped,
        });
    ResultView {
        index: r.index.to_string(),
        cause: r.cause,
        artifact: r.artifact,
        after_promotion: r.after_promotion,
        outcome: r.outcome,
        environment: r.environment,
        sha256: r.sha256.to_string(),
        stage: r.stage,
        run_id: r.run_id,
        exit_code: r.exit_code,
        duration_ms: r.duration_ms,
        log_tail: r.log_tail,
        junit,
        reported_by: r.reported_by,
        reported_at: r.reported_at,
    }
}

/// Checks a stage name (see [`crate::domain::check_stage_name`]).
pub fn check_stage_name(stage: &str) -> Result<(), ServiceError> {
    crate::domain::check_stage_name(stage).map_err(ServiceError::Invalid)
}

fn check_report(report: &StageReport) -> Result<Sha256Digest, ServiceError> {
    let digest = Sha256Digest::from_str(&report.sha256).map_err(|_| {
        ServiceError::Invalid(format!(
            "`sha256` `{}` is not 64 lowercase hex digits",
            report.sha256.escape_debug()
        ))
    })?;
    check_stage_name(&report.stage)?;
    if report.run_id.trim().is_empty()
        || report.run_id.len() > MAX_RUN_ID
        || report.run_id.chars().any(char::is_control)
    {
        return Err(ServiceError::Invalid(format!(
            "`run_id` must be 1-{MAX_RUN_ID} printable characters"
        )));
    }
    if report.environment.len() > MAX_ENV_KEYS
        || report
            .environment
            .iter()
            .any(|(k, v)| k.len() > 64 || v.len() > MAX_ENV_VALUE)
    {
        return Err(ServiceError::Invalid(format!(
            "`environment` may hold at most {MAX_ENV_KEYS} entries, keys up to 64 and values up to {MAX_ENV_VALUE} bytes"
        )));
    }
    if report.outcome == Outcome::Pass && report.exit_code.is_some_and(|code| code != 0) {
        return Err(ServiceError::Invalid(format!(
            "a `pass` cannot have exit code {}",
            report.exit_code.unwrap_or_default()
        )));
    }
    match (&report.outcome, report.cause.as_deref().map(str::trim)) {
        (Outcome::Error, None | Some("")) => {
            return Err(ServiceError::Invalid(
                "an `error` result needs a `cause`: why the stage could not run (command not found, killed by a signal, …)".into(),
            ));
        }
        (Outcome::Error, Some(cause))
            if cause.len() > MAX_CAUSE || cause.chars().any(char::is_control) =>
        {
            return Err(ServiceError::Invalid(format!(
                "`cause` must be at most {MAX_CAUSE} printable bytes"
            )));
        }
        (Outcome::Pass | Outcome::Fail, Some(_)) => {
            return Err(ServiceError::Invalid(format!(
                "only an `error` result has a `cause`; a `{}` is a verdict on the artifact",
                report.outcome
            )));
        }
        _ => {}
    }
    if let Some(crate::domain::ArtifactCheck::Unverified(reason)) = &report.artifact
        && (reason.len() > MAX_CAUSE || reason.chars().any(char::is_control))
    {
        return Err(ServiceError::Invalid(format!(
            "the `artifact` reason must be at most {MAX_CAUSE} printable bytes"
        )));
    }
    Ok(digest)
}

/// Records a stage result (see [`record`]), then promotes under every `auto` rule the
/// releases it made green. The verdict is stored whatever happens next: an automatic
/// promotion that fails is logged, and can be retried with `kiln promote`.
pub async fn report(
    ctx: super::promote::Promoter<'_>,
    caller: &Caller,
    report: &StageReport,
) -> Result<ResultView, ServiceError> {
    let stored = record(ctx.db, caller, report).await?;
    if let Err(e) = super::promote::auto_promote(ctx, &report.index, &stored.sha256).await {
        tracing::error!(file.sha256 = %stored.sha256, error = %e, "automatic promotion failed");
    }
    Ok(stored)
}

/// Validates and stores a stage result, if the caller holds `report` on the index it is
/// reported for and that index itself lists the artifact.
async fn record(
    db: &Db,
    caller: &Caller,
    report: &StageReport,
) -> Result<ResultView, ServiceError> {
    let principal = caller.require(Permission::Report, &report.index)?;
    let digest = check_report(report)?;
    let index = super::indexes::get_index(db, &report.index).await?;
    let files = db.files_with_digest(&[index.id], digest.as_str()).await?;
    let Some(file) = files.first() else {
        return Err(ServiceError::NotFound(format!(
            "index `{}` does not list artifact `{digest}`; report the result for the index the stage installed it from (a verdict counts only where the bytes were built or promoted to)",
            index.name
        )));
    };
    let after_promotion = match pep440_rs::Version::from_str(&file.version) {
        Ok(version) => {
            db.promoted_from(index.id, file.project.as_str(), &canonical(&version))
                .await?
        }
        Err(_) => false,
    };
    let environment = serde_json::to_string(&report.environment)
        .map_err(|e| ServiceError::Internal(format!("encoding environment: {e}")))?;
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let now = now_rfc3339();
    // A report is one statement unless a webhook hears it: then the delivery is queued in
    // the same transaction as the result.
    let subscribers =
        super::webhooks::subscribers(db, WebhookEvent::StageResult, &index.name).await?;
    let mut tx = if subscribers.is_empty() {
        None
    } else {
        Some(db.begin_write().await?)
    };
    let record = db
        .record_result(
            &NewResult {
                index_id: index.id,
                index_name: &index.name.to_string(),
                cause: report.cause.as_deref().map(str::trim),
                artifact: report.artifact.as_ref(),
                after_promotion,
                sha256: digest.as_str(),
                stage: &report.stage,
                run_id: report.run_id.trim(),
                outcome: report.outcome,
                exit_code: report.exit_code,
                duration_ms: clamp(report.duration_ms),
                environment: &environment,
                log_tail: tail(&report.log_tail, MAX_LOG_TAIL),
                junit: report.junit.map(|j| {
                    [
                        clamp(j.tests),
                        clamp(j.failures),
                        clamp(j.errors),
                        clamp(j.skipped),
                    ]
                }),
                reported_by: &principal.name,
                reported_at: &now,
            },
            tx.as_mut(),
        )
        .await?;
    if let Some(mut tx) = tx {
        super::webhooks::queue_tx(
            &mut tx,
            &subscribers,
            super::webhooks::Notice {
                event: WebhookEvent::StageResult,
                index: &index.name,
                project: file.project.as_str(),
                version: &file.version,
                actor: &principal.name,
                at: &now,
                detail: webhook_detail(report, file, &record),
            },
        )
        .await?;
        tx.commit().await?;
    }
    crate::metrics::Metrics::count(
        &crate::metrics::metrics().stage_results,
        report.outcome.as_str(),
    );
    tracing::info!(
        index.name = %index.name,
        file.sha256 = %digest,
        stage.name = %report.stage,
        stage.run_id = %report.run_id,
        stage.outcome = report.outcome.as_str(),
        reported_by = %principal.name,
        "stage result recorded"
    );
    Ok(view(record))
}

/// What a `stage-result` webhook says: the artifact, the verdict, and the commit and CI
/// run that built it (for a commit status).
fn webhook_detail(
    report: &StageReport,
    file: &FileRecord,
    record: &ResultRecord,
) -> serde_json::Value {
    serde_json::json!({
        "sha256": record.sha256,
        "filename": file.filename,
        "stage": report.stage,
        "outcome": report.outcome,
        "run_id": report.run_id.trim(),
        "cause": record.cause,
        "exit_code": report.exit_code,
        "duration_ms": report.duration_ms,
        "junit": report.junit,
        "commit": file.provenance.as_ref().map(|p| p.commit.to_string()),
        "build_run_url": file.provenance.as_ref().and_then(|p| p.run_url.as_deref()),
    })
}

/// Every result of one artifact on the indexes the caller may read, oldest first; an
/// artifact no readable index lists is refused (mirror-only artifacts are public).
pub async fn history(
    db: &Db,
    caller: &Caller,
    sha256: &str,
) -> Result<Vec<ResultView>, ServiceError> {
    let digest = Sha256Digest::from_str(sha256).map_err(|_| {
        ServiceError::Invalid(format!(
            "`{}` is not a sha256 (64 lowercase hex digits)",
            sha256.escape_debug()
        ))
    })?;
    let holders = db.indexes_holding(digest.as_str()).await?;
    let readable: std::collections::HashSet<IndexName> =
        super::auth::readable_indexes(db, caller.principal())
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
    if !holders.is_empty() && !holders.iter().any(|h| readable.contains(h)) {
        let message = format!(
            "artifact `{digest}` is only on private indexes you may not read: reading its results needs `read` on one of them"
        );
        return Err(match caller.principal() {
            Some(_) => ServiceError::Forbidden(message),
            None => ServiceError::Unauthenticated(message),
        });
    }
    Ok(db
        .results_of(&[digest.as_str()])
        .await?
        .into_iter()
        .filter(|r| readable.contains(&r.index))
        .map(view)
        .collect())
}

/// One file of a release with the latest verdict of each stage on its bytes.
#[derive(Debug, Clone)]
pub struct FileVerdicts {
    /// The index that lists the file (the first in the chain).
    pub index: IndexName,
    /// The file.
    pub file: FileRecord,
    /// The latest result of each stage reported against its sha256.
    pub latest: BTreeMap<String, ResultView>,
    /// Every result reported against it for that index, oldest first.
    pub history: Vec<ResultView>,
}

/// The build of a release on an index and its files visible from there (own first, then
/// inherited) with the latest stage results of each, if the caller may read the index.
pub async fn release_status(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    release: &Release,
) -> Result<(super::builds::BuildStatus, Vec<FileVerdicts>), ServiceError> {
    let (index, chain) = super::auth::readable_chain(db, caller, name).await?;
    let build = super::builds::observe(db, &index, release, None).await?;
    Ok((build, release_verdicts(db, &chain, release).await?))
}

/// The release's files through `chain` (own first) with their latest verdicts; each file
/// is named by the chain index that lists it.
async fn release_verdicts(
    db: &Db,
    chain: &[Index],
    release: &Release,
) -> Result<Vec<FileVerdicts>, ServiceError> {
    let ids: Vec<i64> = chain.iter().map(|i| i.id).collect();
    let files: Vec<FileRecord> = resolve::project_files(db, &ids, &release.project)
        .await?
        .into_iter()
        .filter(|f| release.matches(&f.version))
        .collect();
    let histories = results_of_files(db, &files).await?;
    files
        .into_iter()
        .zip(histories)
        .map(|(file, history)| {
            let index = chain
                .iter()
                .find(|i| i.id == file.index_id)
                .map(|i| i.name.clone())
                .ok_or_else(|| {
                    ServiceError::Internal(format!(
                        "`{}` came from index {} outside the chain",
                        file.filename, file.index_id
                    ))
                })?;
            Ok(FileVerdicts {
                index,
                file,
                latest: latest_per_stage(&history),
                history,
            })
        })
        .collect()
}

/// The latest result of each stage for each file, reported for the index that lists
/// the file (never another index's verdicts on the same bytes), in the files' order.
pub async fn latest_of_files(
    db: &Db,
    files: &[FileRecord],
) -> Result<Vec<BTreeMap<String, ResultView>>, ServiceError> {
    Ok(results_of_files(db, files)
        .await?
        .iter()
        .map(|history| latest_per_stage(history))
        .collect())
}

/// Every result of each file, oldest first (see [`results_on`]), in the files' order.
async fn results_of_files(
    db: &Db,
    files: &[FileRecord],
) -> Result<Vec<Vec<ResultView>>, ServiceError> {
    let keys: Vec<(i64, &Sha256Digest)> = files.iter().map(|f| (f.index_id, &f.sha256)).collect();
    results_on(db, &keys).await
}

/// Every result reported against each `(index id, digest)` for that index (never
/// another index's verdicts on the same bytes), oldest first, in the keys' order: one
/// query for them all.
pub async fn results_on(
    db: &Db,
    keys: &[(i64, &Sha256Digest)],
) -> Result<Vec<Vec<ResultView>>, ServiceError> {
    let digests: Vec<&str> = keys.iter().map(|(_, d)| d.as_str()).collect();
    let results = db.results_of(&digests).await?;
    Ok(keys
        .iter()
        .map(|(index_id, digest)| {
            results
                .iter()
                .filter(|r| r.index_id == *index_id && r.sha256 == **digest)
                .cloned()
                .map(view)
                .collect()
        })
        .collect())
}

/// The latest result of each stage (results must be oldest first, as stored).
#[must_use]
pub fn latest_per_stage(results: &[ResultView]) -> BTreeMap<String, ResultView> {
    let mut latest = BTreeMap::new();
    for result in results {
        latest.insert(result.stage.clone(), result.clone());
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StageReport {
        StageReport {
            index: "root/master".parse().unwrap(),
            cause: None,
            artifact: None,
            sha256: "a".repeat(64),
            stage: "unit".into(),
            run_id: "run-1".into(),
            outcome: Outcome::Pass,
            exit_code: Some(0),
            duration_ms: 5,
            environment: BTreeMap::new(),
            log_tail: String::new(),
            junit: None,
        }
    }

    #[test]
    fn stage_names() {
        for good in ["unit", "functional-py3.12", "a", "Sys_1"] {
            assert!(check_stage_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-unit", "unit test", "a/b", &"x".repeat(65)] {
            assert!(check_stage_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_are_checked() {
        assert!(check_report(&report()).is_ok());
        let bad_digest = StageReport {
            sha256: "xyz".into(),
            ..report()
        };
        insta::assert_snapshot!(check_report(&bad_digest).unwrap_err(), @"`sha256` `xyz` is not 64 lowercase hex digits");
        let lying = StageReport {
            exit_code: Some(1),
            ..report()
        };
        insta::assert_snapshot!(check_report(&lying).unwrap_err(), @"a `pass` cannot have exit code 1");
        let empty_run = StageReport {
            run_id: " ".into(),
            ..report()
        };
        assert!(check_report(&empty_run).is_err());
        let causeless = StageReport {
            outcome: Outcome::Error,
            ..report()
        };
        insta::assert_snapshot!(check_report(&causeless).unwrap_err(), @"an `error` result needs a `cause`: why the stage could not run (command not found, killed by a signal, …)");
        let caused_fail = StageReport {
            outcome: Outcome::Fail,
            cause: Some("flaky".into()),
            ..report()
        };
        assert!(check_report(&caused_fail).is_err());
        let error = StageReport {
            outcome: Outcome::Error,
            cause: Some("command `tox` not found".into()),
            exit_code: Some(127),
            ..report()
        };
        assert!(check_report(&error).is_ok());
    }

    #[test]
    fn latest_report_of_a_stage_wins() {
        let view = |stage: &str, outcome, run: &str| ResultView {
            index: "root/master".into(),
            cause: None,
            artifact: None,
            after_promotion: false,
            sha256: "a".repeat(64),
            stage: stage.into(),
            run_id: run.into(),
            outcome,
            exit_code: None,
            duration_ms: 0,
            environment: BTreeMap::new(),
            log_tail: String::new(),
            junit: None,
            reported_by: "ci".into(),
            reported_at: String::new(),
        };
        let results = [
            view("unit", Outcome::Fail, "1"),
            view("lint", Outcome::Pass, "1"),
            view("unit", Outcome::Pass, "2"),
        ];
        let latest = latest_per_stage(&results);
        assert_eq!(latest["unit"].outcome, Outcome::Pass);
        assert_eq!(latest["unit"].run_id, "2");
        assert_eq!(latest.len(), 2);
    }
}
