//! Promotion: listing a green release's very files (same sha256, no copy of bytes) on the
//! target index a policy names, in one transaction, with an audit record; and yanks.
//!
//! Order matters. An earlier promotion of the release answers first ("already promoted"),
//! before the policy is evaluated — otherwise "newer than the target" would refuse the
//! repeat of a promotion that already happened. Then every check of the rule is
//! evaluated and all failures are reported together. Only then, in one write
//! transaction, the file rows are listed on the target and the promotion row is inserted
//! with `ON CONFLICT DO NOTHING` on (target, project, version): of two racing promotions,
//! one records and the other reads it back.
//!
//! Traps: the stage results are read by sha256, so they are the bytes' results wherever
//! the bytes were tested; a target never gets different bytes under a filename it lists
//! (`Conflict`), and nothing here deletes — yanking (PEP 592) is the way back.

use std::collections::BTreeMap;
use std::str::FromStr;

use pep440_rs::Version;

use super::auth::{Caller, Principal};
use super::results::latest_of_files;
use super::{ServiceError, indexes, now_rfc3339};
use crate::api::{PromoteRequest, PromotionOutcome, PromotionResult, PromotionView, ResultView};
use crate::db::{Db, DbError, EventRecord, FileRecord, NewEvent, NewPromotion, PromotionRecord};
use crate::domain::Check;
use crate::domain::Release;
use crate::domain::scope::{IndexPattern, Permission, Scope};
use crate::domain::{DistKind, EventKind, Index, IndexName};
use crate::policy::{CandidateFile, Policies, PromotionRule, SdistRule};

impl From<PromotionRecord> for PromotionView {
    fn from(r: PromotionRecord) -> Self {
        Self {
            id: r.id,
            project: r.project.to_string(),
            version: r.version,
            source: r.source.to_string(),
            target: r.target.to_string(),
            policy: r.policy,
            promoted_by: r.promoted_by,
            promoted_at: r.promoted_at,
            files: r.files,
            evidence: r.evidence,
        }
    }
}

/// Picks the rule for a request: explicit indexes, or the only rule that fits.
fn choose_rule<'a>(
    policies: &'a Policies,
    from: Option<&IndexName>,
    to: Option<&IndexName>,
) -> Result<&'a PromotionRule, ServiceError> {
    let fits: Vec<&PromotionRule> = policies
        .rules
        .iter()
        .filter(|r| from.is_none_or(|f| r.from == *f) && to.is_none_or(|t| r.to == *t))
        .collect();
    match fits.as_slice() {
        [rule] => Ok(rule),
        [] => Err(ServiceError::Forbidden(format!(
            "no promotion policy allows promoting{}{}; the policies allow: {}",
            from.map(|f| format!(" from `{f}`")).unwrap_or_default(),
            to.map(|t| format!(" to `{t}`")).unwrap_or_default(),
            describe_rules(policies)
        ))),
        _ => Err(ServiceError::Invalid(format!(
            "several promotion policies fit ({}); name the source and target (--from, --to)",
            describe_rules(policies)
        ))),
    }
}

fn describe_rules(policies: &Policies) -> String {
    if policies.rules.is_empty() {
        return "none".into();
    }
    policies
        .rules
        .iter()
        .map(|r| format!("{} ({} -> {})", r.name, r.from, r.to))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The release's own files on the source with their latest verdicts.
struct Candidate {
    files: Vec<FileRecord>,
    latest: Vec<BTreeMap<String, ResultView>>,
}

async fn candidate(db: &Db, source: &Index, release: &Release) -> Result<Candidate, ServiceError> {
    let files: Vec<FileRecord> = db
        .files_of_project(&[source.id], release.project.as_str())
        .await?
        .into_iter()
        .filter(|f| release.matches(&f.version))
        .collect();
    if files.is_empty() {
        return Err(ServiceError::NotFound(format!(
            "`{source}` has no files of {release}",
            source = source.name
        )));
    }
    let latest = latest_of_files(db, &files).await?;
    Ok(Candidate { files, latest })
}

async fn target_versions(
    db: &Db,
    target: &Index,
    release: &Release,
) -> Result<Vec<Version>, ServiceError> {
    Ok(db
        .files_of_project(&[target.id], release.project.as_str())
        .await?
        .iter()
        .filter_map(|f| Version::from_str(&f.version).ok())
        .collect())
}

/// The recorded promotion of `release` into `target`, if any.
async fn promotion_of(
    db: &Db,
    target: &Index,
    release: &Release,
) -> Result<Option<PromotionRecord>, DbError> {
    db.find_promotion(target.id, release.project.as_str(), release.version_str())
        .await
}

/// Promotes a release as the policies allow (see the module docs for the order).
pub async fn promote(
    db: &Db,
    policies: &Policies,
    caller: &Caller,
    request: &PromoteRequest,
) -> Result<PromotionOutcome, ServiceError> {
    let principal = caller.authenticated()?;
    let rule = choose_rule(policies, request.from.as_ref(), request.to.as_ref())?;
    let release =
        Release::parse(&request.project, &request.version).map_err(ServiceError::Invalid)?;
    principal.require(Permission::Promote, &rule.to)?;
    let source = indexes::get_index(db, &rule.from).await?;
    if source.settings.private {
        principal.require(Permission::Read, &rule.from)?;
    }
    let target = indexes::get_index(db, &rule.to).await?;
    indexes::refuse_mirror(&target, "promotions")?;
    let outcome = |result, checks, promotion: Option<PromotionRecord>| PromotionOutcome {
        result,
        policy: rule.name.clone(),
        from: rule.from.to_string(),
        to: rule.to.to_string(),
        project: release.project.to_string(),
        version: release.version.to_string(),
        checks,
        promotion: promotion.map(PromotionView::from),
    };
    if let Some(done) = promotion_of(db, &target, &release).await? {
        return Ok(outcome(
            PromotionResult::AlreadyPromoted,
            Vec::new(),
            Some(done),
        ));
    }
    let candidate = candidate(db, &source, &release).await?;
    let files: Vec<CandidateFile> = candidate
        .files
        .iter()
        .zip(&candidate.latest)
        .map(|(f, latest)| CandidateFile {
            filename: f.filename.clone(),
            sha256: f.sha256.to_string(),
            is_wheel: f.kind == DistKind::Wheel,
            latest: latest.iter().map(|(s, r)| (s.clone(), r.outcome)).collect(),
        })
        .collect();
    let checks = rule.evaluate(
        &release.version,
        &target_versions(db, &target, &release).await?,
        &files,
    );
    let refused = checks.iter().any(|c| !c.passed);
    if request.dry_run {
        let result = if refused {
            PromotionResult::Refused
        } else {
            PromotionResult::WouldPromote
        };
        return Ok(outcome(result, checks, None));
    }
    if refused {
        // A racing promotion of the same release may have committed since the first
        // look; its files on the target would now fail "newer than the target".
        if let Some(done) = promotion_of(db, &target, &release).await? {
            return Ok(outcome(
                PromotionResult::AlreadyPromoted,
                Vec::new(),
                Some(done),
            ));
        }
        record_refusal(db, &target, &release, principal, rule, &checks).await?;
        return Ok(outcome(PromotionResult::Refused, checks, None));
    }
    let (result, record) = list_on_target(
        db, rule, &source, &target, &release, principal, &candidate, &checks,
    )
    .await?;
    Ok(outcome(result, checks, Some(record)))
}

async fn record_refusal(
    db: &Db,
    target: &Index,
    release: &Release,
    principal: &Principal,
    rule: &PromotionRule,
    checks: &[Check],
) -> Result<(), ServiceError> {
    let failing: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
    let mut tx = db.begin_write().await?;
    Db::insert_event_tx(
        &mut tx,
        &NewEvent {
            kind: EventKind::Refusal,
            index: &target.name,
            project: release.project.as_str(),
            version: &release.version.to_string(),
            actor: &principal.name,
            at: &now_rfc3339(),
            detail: serde_json::json!({ "policy": rule.name, "failed": failing }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        index.name = %target.name,
        project.name = %release.project,
        release.version = %release.version,
        policy = %rule.name,
        failed = failing.len(),
        "promotion refused"
    );
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one transaction's inputs, all needed"
)]
async fn list_on_target(
    db: &Db,
    rule: &PromotionRule,
    source: &Index,
    target: &Index,
    release: &Release,
    principal: &Principal,
    candidate: &Candidate,
    checks: &[Check],
) -> Result<(PromotionResult, PromotionRecord), ServiceError> {
    let moving: Vec<&FileRecord> = candidate
        .files
        .iter()
        .filter(|f| f.kind == DistKind::Wheel || rule.sdists != SdistRule::Skip)
        .collect();
    let now = now_rfc3339();
    let files_json = serde_json::json!(
        moving
            .iter()
            .map(|f| serde_json::json!({ "filename": f.filename, "sha256": f.sha256 }))
            .collect::<Vec<_>>()
    );
    let evidence = serde_json::json!({
        "checks": checks,
        "results": candidate
            .files
            .iter()
            .zip(&candidate.latest)
            .map(|(f, latest)| serde_json::json!({ "filename": f.filename, "sha256": f.sha256, "stages": latest }))
            .collect::<Vec<_>>(),
    });
    let mut tx = db.begin_write().await?;
    for file in &moving {
        Db::list_file_on_tx(&mut tx, file, target.id, &principal.name, &now)
            .await
            .map_err(|e| match e {
                DbError::Conflict => ServiceError::Conflict(format!(
                    "`{}` already lists `{}` with different bytes; a promotion never overwrites",
                    target.name, file.filename
                )),
                other => other.into(),
            })?;
    }
    let files_text = files_json.to_string();
    let evidence_text = evidence.to_string();
    let inserted = Db::insert_promotion_tx(
        &mut tx,
        &NewPromotion {
            project: release.project.as_str(),
            version: release.version_str(),
            source_index_id: source.id,
            target_index_id: target.id,
            policy: &rule.name,
            promoted_by: &principal.name,
            promoted_at: &now,
            files: &files_text,
            evidence: &evidence_text,
        },
    )
    .await?;
    if !inserted {
        drop(tx);
        let done = promotion_of(db, target, release).await?.ok_or_else(|| {
            ServiceError::Internal("promotion row vanished after a conflict".into())
        })?;
        return Ok((PromotionResult::AlreadyPromoted, done));
    }
    Db::insert_event_tx(
        &mut tx,
        &NewEvent {
            kind: EventKind::Promotion,
            index: &target.name,
            project: release.project.as_str(),
            version: &release.version.to_string(),
            actor: &principal.name,
            at: &now,
            detail: serde_json::json!({ "policy": rule.name, "from": source.name, "files": files_json }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        index.name = %target.name,
        project.name = %release.project,
        release.version = %release.version,
        policy = %rule.name,
        promoted_by = %principal.name,
        "release promoted"
    );
    let record = promotion_of(db, target, release)
        .await?
        .ok_or_else(|| ServiceError::Internal("promotion row not found after commit".into()))?;
    Ok((PromotionResult::Promoted, record))
}

/// After a stage result for `sha256`: promotes, under every `auto` rule, the releases on
/// the rule's source that list those bytes, if they are now green. Refusals are not
/// recorded here (most results arrive before the last required stage is in).
pub async fn auto_promote(
    db: &Db,
    policies: &Policies,
    sha256: &str,
) -> Result<Vec<PromotionOutcome>, ServiceError> {
    let mut done = Vec::new();
    for rule in policies.rules.iter().filter(|r| r.auto) {
        let Some(source) = db.find_index(&rule.from).await? else {
            continue;
        };
        for file in db.files_with_digest(&[source.id], sha256).await? {
            let request = PromoteRequest {
                project: file.project.to_string(),
                version: file.version.clone(),
                from: Some(rule.from.clone()),
                to: Some(rule.to.clone()),
                dry_run: true,
            };
            // The policy is the authority here, so the server acts with exactly what
            // the rule needs, whoever reported the result.
            let auto: Caller = Principal::system(
                format!("auto ({})", rule.name),
                vec![
                    Scope {
                        permission: Permission::Promote,
                        pattern: IndexPattern::Exact(rule.to.clone()),
                    },
                    Scope {
                        permission: Permission::Read,
                        pattern: IndexPattern::Exact(rule.from.clone()),
                    },
                ],
            )
            .into();
            let trial = promote(db, policies, &auto, &request).await?;
            if trial.result == PromotionResult::WouldPromote {
                let real = PromoteRequest {
                    dry_run: false,
                    ..request
                };
                done.push(promote(db, policies, &auto, &real).await?);
            }
        }
    }
    Ok(done)
}

/// What a yank or un-yank takes: `promote` on a promotion-only index (nobody uploads
/// there), `upload` on any other.
fn authorize_yank<'c>(index: &Index, caller: &'c Caller) -> Result<&'c Principal, ServiceError> {
    let needed = if index.settings.promotion_only {
        Permission::Promote
    } else {
        Permission::Upload
    };
    caller.require(needed, &index.name)
}

/// Yanks (with a reason) or un-yanks (`reason = None`) a release's files on one index
/// (PEP 592), with an event, if the caller may (see [`authorize_yank`]). Returns the
/// files changed.
pub async fn set_yank(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    release: &Release,
    reason: Option<&str>,
) -> Result<Vec<String>, ServiceError> {
    caller.authenticated()?;
    let index = &indexes::get_index(db, name).await?;
    let principal = authorize_yank(index, caller)?;
    indexes::refuse_mirror(index, "yanks")?;
    let files: Vec<String> = db
        .files_of_project(&[index.id], release.project.as_str())
        .await?
        .into_iter()
        .filter(|f| release.matches(&f.version))
        .map(|f| f.filename)
        .collect();
    if files.is_empty() {
        return Err(ServiceError::NotFound(format!(
            "`{}` has no files of {release}",
            index.name
        )));
    }
    let reason = reason.map(str::trim);
    if reason.is_some_and(str::is_empty) {
        return Err(ServiceError::Invalid(
            "a yank needs a reason (pip shows it to whoever installs the pinned version)".into(),
        ));
    }
    let mut tx = db.begin_write().await?;
    Db::set_yanked_tx(&mut tx, index.id, &files, reason).await?;
    Db::insert_event_tx(
        &mut tx,
        &NewEvent {
            kind: if reason.is_some() {
                EventKind::Yank
            } else {
                EventKind::Unyank
            },
            index: &index.name,
            project: release.project.as_str(),
            version: &release.version.to_string(),
            actor: &principal.name,
            at: &now_rfc3339(),
            detail: serde_json::json!({ "reason": reason, "files": files }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(files)
}
/// The names of the indexes the caller may read.
async fn readable_names(
    db: &Db,
    caller: &Caller,
) -> Result<std::collections::HashSet<IndexName>, ServiceError> {
    Ok(super::auth::readable_indexes(db, caller.principal())
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect())
}

/// Promotions into `target` (or every index), newest first, at most `limit` (1-1000),
/// of the indexes the caller may read.
pub async fn list_promotions(
    db: &Db,
    caller: &Caller,
    target: Option<&IndexName>,
    limit: i64,
) -> Result<Vec<PromotionView>, ServiceError> {
    let target_id = match target {
        Some(name) => Some(super::auth::readable_chain(db, caller, name).await?.0.id),
        None => None,
    };
    let readable = readable_names(db, caller).await?;
    Ok(db
        .list_promotions(target_id, limit.clamp(1, 1000))
        .await?
        .into_iter()
        .filter(|p| readable.contains(&p.target))
        .map(PromotionView::from)
        .collect())
}

/// Events of `index` (or every index) after id `after`, oldest first, at most `limit`
/// (1-1000), of the indexes the caller may read.
pub async fn list_events(
    db: &Db,
    caller: &Caller,
    index: Option<&IndexName>,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRecord>, ServiceError> {
    if let Some(name) = index {
        super::auth::readable_chain(db, caller, name).await?;
    }
    let index = index.map(ToString::to_string);
    let readable = readable_names(db, caller).await?;
    let limit = limit.clamp(1, 1000);
    let mut after = after;
    let mut rows = Vec::new();
    // Skip what the caller may not read without ending the page early: a follower that
    // saw a short page would think it had caught up.
    loop {
        let batch = db.list_events(index.as_deref(), after, limit).await?;
        let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) == limit;
        after = batch.last().map_or(after, |e| e.id);
        rows.extend(batch.into_iter().filter(|e| readable.contains(&e.index)));
        if !full || i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit {
            break;
        }
    }
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows)
}
