//! Promotion: listing a green release's very files (same sha256, no copy of bytes) on the
//! target index a policy names, in one transaction, with an audit record; and yanks.
//!
//! Order matters. An earlier promotion of a release answers first ("already promoted"),
//! before the policy is evaluated — otherwise "newer than the target" would refuse the
//! repeat of a promotion that already happened. Then every check of the rule is
//! evaluated for every release of the request, plus the dependency check: each
//! `Requires-Dist` of each promoted wheel must be satisfiable from the target's chain or
//! by another release of the same request. All failures are reported together, and one
//! refused release refuses the whole request. Only then, in one write transaction, the
//! file rows are listed on the target and the promotion rows are inserted with
//! `ON CONFLICT DO NOTHING` on (target, project, version): of two racing promotions, one
//! records and the other reads it back.
//!
//! Traps: the stage results are those reported *for the source index* (see
//! `service::results`); the same bytes tested elsewhere lend nothing. A target never gets
//! different bytes under a filename it lists (`Conflict`), and nothing here deletes —
//! yanking (PEP 592) is the way back.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use pep440_rs::Version;

use super::auth::{Caller, Principal};
use super::mirror::Mirrors;
use super::results::latest_of_files;
use super::{ServiceError, indexes, now_rfc3339};
use crate::api::{
    PromoteRequest, PromotionOutcome, PromotionResult, PromotionView, ReleaseRef, ResultView,
};
use crate::db::changes::Change;
use crate::db::{
    BuildState, Db, DbError, EventRecord, FileRecord, Lock, NewEvent, NewPromotion,
    PromotionRecord, WriteTx,
};
use crate::domain::Check;
use crate::domain::Release;
use crate::domain::metadata::parse_core_metadata;
use crate::domain::requirement::{Dependency, runtime_dependencies};
use crate::domain::scope::{IndexPattern, Permission, Scope};
use crate::domain::{DistKind, EventKind, Index, IndexName, ProjectName, WebhookEvent};
use crate::policy::{CandidateFile, Policies, PromotionRule, StageVerdict};
use crate::storage::Storage;

/// What a promotion reads besides the database: the policies, the metadata blobs of the
/// wheels (for their requirements) and the mirrors of the target's chain.
#[derive(Clone, Copy)]
pub struct Promoter<'a> {
    /// The metadata database.
    pub db: &'a Db,
    /// The blob store (wheel METADATA).
    pub storage: &'a Storage,
    /// The mirrors, for requirements the target's chain draws from an upstream.
    pub mirrors: &'a Arc<Mirrors>,
    /// The promotion rules.
    pub policies: &'a Policies,
}

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

/// One release of a request, evaluated: its own files on the source with their latest
/// verdicts there, and what the rule says.
struct Candidate {
    release: Release,
    files: Vec<FileRecord>,
    latest: Vec<BTreeMap<String, ResultView>>,
    checks: Vec<Check>,
    moving: Vec<usize>,
}

impl Candidate {
    fn refused(&self) -> bool {
        self.checks.iter().any(|c| !c.passed)
    }

    fn moving(&self) -> impl Iterator<Item = &FileRecord> {
        self.moving.iter().map(|&i| &self.files[i])
    }
}

/// The commit of the completed build each file was uploaded under, if any.
async fn built_from(db: &Db, files: &[FileRecord]) -> Result<Vec<Option<String>>, ServiceError> {
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let commit = match file.build_id {
            Some(id) => db
                .find_build_by_id(id)
                .await?
                .filter(|b| b.state == BuildState::Ready)
                .and_then(|b| b.source_commit)
                .map(|c| c.to_string()),
            None => None,
        };
        out.push(commit);
    }
    Ok(out)
}

async fn candidate(
    db: &Db,
    rule: &PromotionRule,
    source: &Index,
    target: &Index,
    release: Release,
) -> Result<Candidate, ServiceError> {
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
    let built = built_from(db, &files).await?;
    let candidates: Vec<CandidateFile> = files
        .iter()
        .zip(&latest)
        .zip(built)
        .map(|((f, latest), built_from)| CandidateFile {
            filename: f.filename.clone(),
            sha256: f.sha256.to_string(),
            is_wheel: f.kind == DistKind::Wheel,
            latest: latest
                .iter()
                .map(|(s, r)| {
                    (
                        s.clone(),
                        StageVerdict {
                            outcome: r.outcome,
                            cause: r.cause.clone(),
                            artifact: r.artifact.clone(),
                        },
                    )
                })
                .collect(),
            built_from,
        })
        .collect();
    let evaluation = rule.evaluate(
        &release.version,
        &target_versions(db, target, &release).await?,
        &candidates,
    );
    Ok(Candidate {
        release,
        files,
        latest,
        checks: evaluation.checks,
        moving: evaluation.moving,
    })
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

/// The releases a request names, parsed, each once.
fn requested(request: &PromoteRequest) -> Result<Vec<Release>, ServiceError> {
    let first = ReleaseRef {
        project: request.project.clone(),
        version: request.version.clone(),
    };
    let mut releases: Vec<Release> = Vec::new();
    for r in std::iter::once(&first).chain(&request.together) {
        let release = Release::parse(&r.project, &r.version).map_err(ServiceError::Invalid)?;
        if releases.iter().any(|seen| seen.project == release.project) {
            return Err(ServiceError::Invalid(format!(
                "`{}` is named twice in one promotion; promote one version of a project at a time",
                release.project
            )));
        }
        releases.push(release);
    }
    Ok(releases)
}

/// Promotes one or several releases as the policies allow (see the module docs for the
/// order).
pub async fn promote(
    ctx: Promoter<'_>,
    caller: &Caller,
    request: &PromoteRequest,
) -> Result<PromotionOutcome, ServiceError> {
    let db = ctx.db;
    let principal = caller.authenticated()?;
    let rule = choose_rule(ctx.policies, request.from.as_ref(), request.to.as_ref())?;
    let releases = requested(request)?;
    principal.require(Permission::Promote, &rule.to)?;
    let source = indexes::get_index(db, &rule.from).await?;
    if source.settings.private {
        principal.require(Permission::Read, &rule.from)?;
    }
    let target = indexes::get_index(db, &rule.to).await?;
    indexes::refuse_mirror(&target, "promotions")?;
    let outcome = |release: &Release, result, checks, promotion: Option<PromotionRecord>| {
        outcome_of(rule, release, result, checks, promotion)
    };
    let (done, candidates) = evaluate(ctx, rule, (&source, &target), &releases).await?;
    let refused = candidates.iter().any(|(_, c)| c.refused());
    let mut result = match (refused, request.dry_run, candidates.is_empty()) {
        (_, _, true) => PromotionResult::AlreadyPromoted,
        (true, _, _) => PromotionResult::Refused,
        (false, true, _) => PromotionResult::WouldPromote,
        (false, false, _) => PromotionResult::Promoted,
    };
    let mut records: BTreeMap<usize, PromotionRecord> = done.into_iter().collect();
    if !candidates.is_empty() && !request.dry_run {
        if refused {
            // A racing promotion of the same releases may have committed since the first
            // look; their files on the target would now fail "newer than the target".
            let mut all_done = true;
            for (position, candidate) in &candidates {
                match promotion_of(db, &target, &candidate.release).await? {
                    Some(record) => {
                        records.insert(*position, record);
                    }
                    None => all_done = false,
                }
            }
            if all_done {
                return Ok(assemble(
                    &releases,
                    &records,
                    &[],
                    PromotionResult::AlreadyPromoted,
                    &outcome,
                ));
            }
            record_refusals(db, &target, principal, rule, &candidates).await?;
        } else {
            let (raced, listed) =
                list_on_target(db, rule, &source, &target, principal, &candidates).await?;
            if raced {
                result = PromotionResult::AlreadyPromoted;
            }
            records.extend(listed);
        }
    }
    let checks: Vec<(usize, Vec<Check>)> = candidates
        .into_iter()
        .map(|(position, candidate)| (position, candidate.checks))
        .collect();
    Ok(assemble(&releases, &records, &checks, result, &outcome))
}

/// One release's answer under `rule`.
fn outcome_of(
    rule: &PromotionRule,
    release: &Release,
    result: PromotionResult,
    checks: Vec<Check>,
    promotion: Option<PromotionRecord>,
) -> PromotionOutcome {
    PromotionOutcome {
        result,
        policy: rule.name.clone(),
        from: rule.from.to_string(),
        to: rule.to.to_string(),
        project: release.project.to_string(),
        version: release.version.to_string(),
        checks,
        promotion: promotion.map(PromotionView::from),
        together: Vec::new(),
    }
}

/// Each release of a request under `rule`, by its position: already promoted to the
/// target (its record), or a candidate with every check of the rule evaluated,
/// dependencies included. Reads only; `promote` and `preview` both start here.
async fn evaluate(
    ctx: Promoter<'_>,
    rule: &PromotionRule,
    (source, target): (&Index, &Index),
    releases: &[Release],
) -> Result<(Vec<(usize, PromotionRecord)>, Vec<(usize, Candidate)>), ServiceError> {
    let db = ctx.db;
    let mut done: Vec<(usize, PromotionRecord)> = Vec::new();
    let mut candidates: Vec<(usize, Candidate)> = Vec::new();
    for (position, release) in releases.iter().enumerate() {
        match promotion_of(db, target, release).await? {
            Some(record) => done.push((position, record)),
            None => candidates.push((
                position,
                candidate(db, rule, source, target, release.clone()).await?,
            )),
        }
    }
    let dependencies = dependency_checks(ctx, rule, target, releases, &candidates).await?;
    for ((_, candidate), checks) in candidates.iter_mut().zip(dependencies) {
        candidate.checks.extend(checks);
    }
    Ok((done, candidates))
}

/// What promoting `release` from `index` would do under each rule that starts there: a
/// dry run for a caller who may read the source and the target (the web UI shows it
/// beside the stage matrix). Writes nothing, needs no `promote` permission; a rule whose
/// target does not exist or is not readable is left out.
pub async fn preview(
    ctx: Promoter<'_>,
    caller: &Caller,
    index: &IndexName,
    release: &Release,
) -> Result<Vec<PromotionOutcome>, ServiceError> {
    let db = ctx.db;
    let (source, _) = super::auth::readable_chain(db, caller, index).await?;
    let mut previews = Vec::new();
    for rule in ctx.policies.rules.iter().filter(|r| r.from == *index) {
        let Some(target) = db.find_index(&rule.to).await? else {
            continue;
        };
        let chain = super::resolve::chain_indexes(db, &target).await?;
        if !super::auth::can_read(caller.principal(), &chain) {
            continue;
        }
        // A release with no files of its own on the source (a failed or running build,
        // an inherited release) has nothing to promote from here.
        let (mut done, mut candidates) =
            match evaluate(ctx, rule, (&source, &target), std::slice::from_ref(release)).await {
                Err(ServiceError::NotFound(_)) => continue,
                other => other?,
            };
        previews.push(match (done.pop(), candidates.pop()) {
            (Some((_, record)), _) => outcome_of(
                rule,
                release,
                PromotionResult::AlreadyPromoted,
                Vec::new(),
                Some(record),
            ),
            (None, Some((_, candidate))) => {
                let result = if candidate.refused() {
                    PromotionResult::Refused
                } else {
                    PromotionResult::WouldPromote
                };
                outcome_of(rule, release, result, candidate.checks, None)
            }
            (None, None) => continue,
        });
    }
    Ok(previews)
}

/// The answer: the first release at the top with the request's overall `result`, the
/// others in `together`, each with its own result.
fn assemble(
    releases: &[Release],
    records: &BTreeMap<usize, PromotionRecord>,
    checks: &[(usize, Vec<Check>)],
    overall: PromotionResult,
    outcome: &impl Fn(
        &Release,
        PromotionResult,
        Vec<Check>,
        Option<PromotionRecord>,
    ) -> PromotionOutcome,
) -> PromotionOutcome {
    let mut answers: Vec<PromotionOutcome> = releases
        .iter()
        .enumerate()
        .map(|(position, release)| {
            let own_checks = checks
                .iter()
                .find(|(p, _)| *p == position)
                .map(|(_, c)| c.clone());
            let record = records.get(&position).cloned();
            let result = if own_checks.is_none() {
                PromotionResult::AlreadyPromoted
            } else {
                overall
            };
            outcome(release, result, own_checks.unwrap_or_default(), record)
        })
        .collect();
    let mut first = answers.remove(0);
    first.result = overall;
    first.together = answers;
    first
}

/// The dependency check of every candidate: each runtime `Requires-Dist` of each wheel
/// that would move must be satisfiable from the target's chain or by a release of the
/// same request.
async fn dependency_checks(
    ctx: Promoter<'_>,
    rule: &PromotionRule,
    target: &Index,
    releases: &[Release],
    candidates: &[(usize, Candidate)],
) -> Result<Vec<Vec<Check>>, ServiceError> {
    let chain = super::resolve::chain_indexes(ctx.db, target).await?;
    let mut available: BTreeMap<ProjectName, (Vec<Version>, Vec<String>)> = BTreeMap::new();
    let mut out = Vec::with_capacity(candidates.len());
    for (_, candidate) in candidates {
        let mut checks = Vec::new();
        for file in candidate.moving().filter(|f| f.kind == DistKind::Wheel) {
            let dependencies =
                match wheel_dependencies(ctx.storage, file, &rule.target_pythons).await {
                    Ok(dependencies) => dependencies,
                    Err(why) => {
                        checks.push(Check {
                            rule: format!("requirements of `{}` readable", file.filename),
                            passed: false,
                            expected: "its METADATA's `Requires-Dist` lines, PEP 508".into(),
                            found: why,
                        });
                        continue;
                    }
                };
            for dependency in dependencies {
                let check = dependency_check(
                    ctx,
                    &chain,
                    target,
                    releases,
                    &mut available,
                    file,
                    &dependency,
                )
                .await?;
                checks.push(check);
            }
        }
        out.push(checks);
    }
    Ok(out)
}

async fn wheel_dependencies(
    storage: &Storage,
    file: &FileRecord,
    pythons: &[Version],
) -> Result<Vec<Dependency>, String> {
    let Some(digest) = &file.metadata_sha256 else {
        return Err("no METADATA is stored for this wheel".into());
    };
    let bytes = storage
        .read_all(digest)
        .await
        .map_err(|e| format!("reading its METADATA: {e}"))?;
    let metadata = parse_core_metadata(&bytes).map_err(|e| e.to_string())?;
    runtime_dependencies(&metadata.requires_dist, pythons)
}

async fn dependency_check(
    ctx: Promoter<'_>,
    chain: &[Index],
    target: &Index,
    releases: &[Release],
    available: &mut BTreeMap<ProjectName, (Vec<Version>, Vec<String>)>,
    file: &FileRecord,
    dependency: &Dependency,
) -> Result<Check, ServiceError> {
    let rule = format!(
        "`{}` requirement `{}` installable from `{}`",
        file.filename, dependency.text, target.name
    );
    let expected = format!(
        "a version on `{}`'s chain or promoted in the same request (`kiln promote A==1 B==2`)",
        target.name
    );
    if dependency.direct_url {
        return Ok(Check {
            rule,
            passed: false,
            expected,
            found: "a direct URL reference, which no index serves".into(),
        });
    }
    if let Some(partner) = releases.iter().find(|r| r.project == dependency.project)
        && dependency.satisfied_by([&partner.version])
    {
        return Ok(Check {
            rule,
            passed: true,
            expected,
            found: format!("{partner}, promoted in this request"),
        });
    }
    if !available.contains_key(&dependency.project) {
        let view = ctx
            .mirrors
            .project_view(ctx.db, chain, &dependency.project)
            .await?;
        let versions: Vec<Version> = view
            .files
            .iter()
            .filter(|f| !f.yanked)
            .filter_map(|f| Version::from_str(&f.version).ok())
            .collect();
        let errors: Vec<String> = view.errors.iter().map(ToString::to_string).collect();
        available.insert(dependency.project.clone(), (versions, errors));
    }
    let (versions, errors) = &available[&dependency.project];
    let passed = dependency.satisfied_by(versions);
    let found = if passed {
        let best = versions
            .iter()
            .filter(|v| dependency.satisfied_by([*v]))
            .max()
            .map(ToString::to_string)
            .unwrap_or_default();
        format!("`{}` {best}", dependency.project)
    } else if !errors.is_empty() {
        format!(
            "could not be checked: {}; production must stay installable, so this refuses until the upstream answers",
            errors.join("; ")
        )
    } else if versions.is_empty() {
        format!(
            "`{}` is not on `{}`'s chain: promote it first, or together (`kiln promote {}==… {}==…`)",
            dependency.project, target.name, dependency.project, file.project
        )
    } else {
        let mut listed: Vec<String> = versions.iter().map(ToString::to_string).collect();
        listed.sort();
        listed.dedup();
        format!(
            "no matching version; `{}` has {}",
            dependency.project,
            listed.join(", ")
        )
    };
    Ok(Check {
        rule,
        passed,
        expected,
        found,
    })
}

async fn record_refusals(
    db: &Db,
    target: &Index,
    principal: &Principal,
    rule: &PromotionRule,
    candidates: &[(usize, Candidate)],
) -> Result<(), ServiceError> {
    let now = now_rfc3339();
    let mut tx = db.begin_write().await?;
    for (_, candidate) in candidates {
        let failing: Vec<&Check> = candidate.checks.iter().filter(|c| !c.passed).collect();
        let partners: Vec<String> = candidates
            .iter()
            .filter(|(_, other)| other.release.project != candidate.release.project)
            .map(|(_, other)| other.release.to_string())
            .collect();
        super::webhooks::record_event_tx(
            db,
            &mut tx,
            &NewEvent {
                kind: EventKind::Refusal,
                index: Some(&target.name),
                project: Some(candidate.release.project.as_str()),
                version: Some(&candidate.release.version.to_string()),
                actor: &principal.name,
                at: &now,
                detail: serde_json::json!({ "policy": rule.name, "failed": failing, "together": partners }),
            },
            WebhookEvent::PromotionRefused,
            serde_json::json!({
                "files": candidate.files.iter().map(|f| serde_json::json!({ "filename": f.filename, "sha256": f.sha256, "provenance": f.provenance })).collect::<Vec<_>>(),
            }),
        )
        .await?;
        tracing::info!(
            index.name = %target.name,
            project.name = %candidate.release.project,
            release.version = %candidate.release.version,
            policy = %rule.name,
            failed = failing.len(),
            "promotion refused"
        );
    }
    tx.commit().await?;
    for _ in candidates {
        crate::metrics::Metrics::count(&crate::metrics::metrics().promotions, "refused");
    }
    Ok(())
}

/// Lists every candidate's moving files on the target and records each promotion, in one
/// transaction; answers whether a racing promotion recorded them first (nothing changed
/// here) and each release's record by its position in the request.
async fn list_on_target(
    db: &Db,
    rule: &PromotionRule,
    source: &Index,
    target: &Index,
    principal: &Principal,
    candidates: &[(usize, Candidate)],
) -> Result<(bool, Vec<(usize, PromotionRecord)>), ServiceError> {
    let now = now_rfc3339();
    let mut tx = db.begin_write().await?;
    lock_targets(&mut tx, rule, target, candidates).await?;
    let mut raced = false;
    for (_, candidate) in candidates {
        let release = &candidate.release;
        let moving: Vec<&FileRecord> = candidate.moving().collect();
        let files_json = serde_json::json!(
            moving
                .iter()
                .map(|f| serde_json::json!({ "filename": f.filename, "sha256": f.sha256, "provenance": f.provenance }))
                .collect::<Vec<_>>()
        );
        let evidence = serde_json::json!({
            "checks": candidate.checks,
            "results": candidate
                .files
                .iter()
                .zip(&candidate.latest)
                .map(|(f, latest)| serde_json::json!({ "filename": f.filename, "sha256": f.sha256, "stages": latest }))
                .collect::<Vec<_>>(),
        });
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
                files: &files_json.to_string(),
                evidence: &evidence.to_string(),
            },
        )
        .await?;
        if !inserted {
            raced = true;
            break;
        }
        super::webhooks::record_event_tx(
            db,
            &mut tx,
            &NewEvent {
                kind: EventKind::Promotion,
                index: Some(&target.name),
                project: Some(release.project.as_str()),
                version: Some(&release.version.to_string()),
                actor: &principal.name,
                at: &now,
                detail: serde_json::json!({ "policy": rule.name, "from": source.name, "files": files_json }),
            },
            WebhookEvent::Promotion,
            serde_json::json!({}),
        )
        .await?;
    }
    if raced {
        // A racing promotion recorded one of these releases first: this transaction
        // changes nothing, and every release answers with what is recorded now.
        drop(tx);
    } else {
        tx.commit().await?;
        for (_, candidate) in candidates {
            crate::metrics::Metrics::count(&crate::metrics::metrics().promotions, "promoted");
            tracing::info!(
                index.name = %target.name,
                project.name = %candidate.release.project,
                release.version = %candidate.release.version,
                policy = %rule.name,
                promoted_by = %principal.name,
                "release promoted"
            );
        }
    }
    let mut records = Vec::new();
    for (position, candidate) in candidates {
        let record = promotion_of(db, target, &candidate.release)
            .await?
            .ok_or_else(|| {
                ServiceError::Conflict(format!(
                    "a concurrent promotion into `{}` changed the target while this one ran; run the promotion again",
                    target.name
                ))
            })?;
        records.push((*position, record));
    }
    Ok((raced, records))
}

/// Locks the target's projects of the request (in name order, so two requests never
/// wait for each other), names them as changed, and checks "newer than the target" again
/// on what the target lists now: a racing promotion of a newer version of the same
/// project may have committed since the policy was evaluated.
async fn lock_targets(
    tx: &mut WriteTx,
    rule: &PromotionRule,
    target: &Index,
    candidates: &[(usize, Candidate)],
) -> Result<(), ServiceError> {
    let mut projects: Vec<&ProjectName> =
        candidates.iter().map(|(_, c)| &c.release.project).collect();
    projects.sort();
    projects.dedup();
    for project in projects {
        tx.lock(Lock::Project(target.id, project.as_str())).await?;
        let listed = Db::own_project_files_tx(tx, target.id, project.as_str()).await?;
        if listed.is_empty() {
            tx.changed(Change::Projects(target.id));
        }
        if !rule.newer_than_target {
            continue;
        }
        let newest = listed
            .iter()
            .filter_map(|f| Version::from_str(&f.version).ok())
            .max();
        for (_, candidate) in candidates
            .iter()
            .filter(|(_, c)| &c.release.project == project)
        {
            if let Some(newest) = newest.as_ref().filter(|n| **n > candidate.release.version) {
                return Err(ServiceError::Conflict(format!(
                    "a concurrent promotion listed `{project}` {newest} on `{}` while this one ran, so {} is no longer newer than the target; nothing was promoted",
                    target.name, candidate.release
                )));
            }
        }
    }
    Ok(())
}

/// After a stage result for `sha256` on `index`: promotes, under every `auto` rule whose
/// source is that index, the releases there that list those bytes, if they are now green.
/// Refusals are not recorded here (most results arrive before the last required stage is
/// in).
pub async fn auto_promote(
    ctx: Promoter<'_>,
    index: &IndexName,
    sha256: &str,
) -> Result<Vec<PromotionOutcome>, ServiceError> {
    let mut done = Vec::new();
    for rule in ctx
        .policies
        .rules
        .iter()
        .filter(|r| r.auto && r.from == *index)
    {
        let Some(source) = ctx.db.find_index(&rule.from).await? else {
            continue;
        };
        for file in ctx.db.files_with_digest(&[source.id], sha256).await? {
            let request = PromoteRequest {
                project: file.project.to_string(),
                version: file.version.clone(),
                together: Vec::new(),
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
            let trial = promote(ctx, &auto, &request).await?;
            if trial.result == PromotionResult::WouldPromote {
                let real = PromoteRequest {
                    dry_run: false,
                    ..request
                };
                done.push(promote(ctx, &auto, &real).await?);
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
    tx.changed(Change::Files(index.id, release.project.to_string()));
    Db::set_yanked_tx(&mut tx, index.id, &files, reason).await?;
    super::webhooks::record_event_tx(
        db,
        &mut tx,
        &NewEvent {
            kind: if reason.is_some() {
                EventKind::Yank
            } else {
                EventKind::Unyank
            },
            index: Some(&index.name),
            project: Some(release.project.as_str()),
            version: Some(&release.version.to_string()),
            actor: &principal.name,
            at: &now_rfc3339(),
            detail: serde_json::json!({ "reason": reason, "files": files }),
        },
        WebhookEvent::Yank,
        serde_json::json!({ "yanked": reason.is_some() }),
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

/// True when `caller` may see `event`: one about an index it may read or administers
/// (a deleted index's events stay visible to its admins), or a token event about scopes
/// it administers.
fn sees(
    caller: &Caller,
    readable: &std::collections::HashSet<IndexName>,
    event: &EventRecord,
) -> bool {
    match (&event.index, caller.principal()) {
        (Some(index), _) if readable.contains(index) => true,
        (Some(index), Some(principal)) => principal.allows(Permission::Admin, index),
        (None, Some(principal)) => {
            let scopes: Option<Vec<Scope>> =
                serde_json::from_value(event.detail["scopes"].clone()).ok();
            scopes.is_some_and(|s| super::auth::administers(principal, &s))
        }
        (_, None) => false,
    }
}

/// Most queries one events page makes (see [`list_events`]).
const MAX_EVENT_ROUNDS: usize = 8;

/// The events query's filter for `caller`: the indexes it reads, the indexes and
/// namespaces it administers, and token events for any signed-in caller.
fn event_filter(
    caller: &Caller,
    readable: &std::collections::HashSet<IndexName>,
) -> crate::db::EventFilter {
    let mut filter = crate::db::EventFilter {
        names: readable.iter().map(ToString::to_string).collect(),
        ..crate::db::EventFilter::default()
    };
    let Some(principal) = caller.principal() else {
        return filter;
    };
    filter.token_events = true;
    for scope in &principal.scopes {
        if scope.permission != Permission::Admin {
            continue;
        }
        match &scope.pattern {
            crate::domain::IndexPattern::Any => filter.everything = true,
            crate::domain::IndexPattern::Namespace(ns) => filter.namespaces.push(ns.clone()),
            crate::domain::IndexPattern::Exact(name) => filter.names.push(name.to_string()),
        }
    }
    filter
}

/// Events of `index` (or every index) after id `after`, oldest first, at most `limit`
/// (1-1000), of those the caller may see (see [`sees`]).
pub async fn list_events(
    db: &Db,
    caller: &Caller,
    index: Option<&IndexName>,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRecord>, ServiceError> {
    let window = crate::db::EventWindow {
        after,
        ..crate::db::EventWindow::default()
    };
    events_page(db, caller, index, window, limit).await
}

/// Events of `index` (or every index) in `window`, at most `limit` (1-1000), of those
/// the caller may see (see [`sees`]), once the caller was found to may read `index`.
pub async fn events_page(
    db: &Db,
    caller: &Caller,
    index: Option<&IndexName>,
    mut window: crate::db::EventWindow,
    limit: i64,
) -> Result<Vec<EventRecord>, ServiceError> {
    if let Some(name) = index
        && !caller.allows(Permission::Admin, name)
    {
        super::auth::readable_chain(db, caller, name).await?;
    }
    let index = index.map(ToString::to_string);
    let readable = readable_names(db, caller).await?;
    let visible = event_filter(caller, &readable);
    let limit = limit.clamp(1, 1000);
    let mut rows = Vec::new();
    // The query already keeps only what the caller may see, but for token events whose
    // scopes are checked here; a page thinned by those is topped up (a follower that saw
    // a short page would think it had caught up), a bounded number of times.
    for _ in 0..MAX_EVENT_ROUNDS {
        let batch = db
            .list_events(index.as_deref(), &window, limit, &visible)
            .await?;
        let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) == limit;
        if let Some(last) = batch.last() {
            if window.newest_first {
                window.before = Some(last.id);
            } else {
                window.after = last.id;
            }
        }
        rows.extend(batch.into_iter().filter(|e| sees(caller, &readable, e)));
        if !full || i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit {
            break;
        }
    }
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows)
}
