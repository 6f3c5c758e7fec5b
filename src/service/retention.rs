//! Retention: what the policies' `[[retention]]` rules take away, through the trash (so
//! every removal is an event and restorable for `--trash-for`). It runs as the first step
//! of garbage collection (`service::gc`), and a dry run shows the same plan.
//!
//! Never touched, whatever a rule says:
//! - a promotion-only (production) index, or anything on it;
//! - an index another index inherits (its base of a kept index), or one that promotion
//!   records name (its audit trail stays);
//! - a release that was promoted from its index;
//! - a release being built under a lease, and an index with any build in progress.
//!
//! Of the rules' two kinds, `branch-idle-for` removes whole branch indexes (made by
//! `kiln ensure`) with no upload, build claim or heartbeat, or stage report for that
//! long; `keep-newest` removes, per project, the releases beyond the newest N (by PEP
//! 440 order) that are not younger than `keep-younger-than`. The first rule that
//! removes something wins; an index a rule removes is not weighed release by release.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use pep440_rs::Version;

use super::ServiceError;
use super::auth::Principal;
use super::trash::{Removal, remove_as, remove_index_as};
use crate::db::{Db, TrashRecord};
use crate::domain::{Index, IndexKind, IndexName, ProjectName, Release};
use crate::policy::RetentionRule;

/// One removal a rule asks for.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The rule's name.
    pub rule: String,
    /// The index (removed whole when `release` is `None`).
    pub index: Index,
    /// The release removed, as its files spell the version.
    pub release: Option<(ProjectName, String)>,
    /// The bytes it holds.
    pub bytes: u64,
    /// Why, in words the trash and the event show.
    pub why: String,
}

/// What the rules would remove at `now`.
pub async fn plan(
    db: &Db,
    rules: &[RetentionRule],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Planned>, ServiceError> {
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let indexes = db.list_indexes().await?;
    let inherited: HashSet<&IndexName> = indexes.iter().flat_map(|i| &i.settings.bases).collect();
    let building: Vec<(i64, ProjectName, String)> = db
        .builds_in_progress(100_000)
        .await?
        .into_iter()
        .map(|b| (b.index_id, b.project, b.version))
        .collect();
    let last_active: HashMap<i64, chrono::DateTime<chrono::Utc>> = db
        .index_activity()
        .await?
        .into_iter()
        .filter_map(|(id, times)| {
            let newest = times
                .iter()
                .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .max()?;
            Some((id, newest))
        })
        .collect();
    let mut planned = Vec::new();
    let mut whole = HashSet::new();
    let mut seen_releases = HashSet::new();
    // Each index's promotions, read once however many rules weigh it.
    let mut promotions: HashMap<i64, (Vec<(String, String)>, bool)> = HashMap::new();
    for rule in rules {
        for index in indexes.iter().filter(|i| rule.indexes.matches(&i.name)) {
            if index.settings.promotion_only
                || index.settings.kind != IndexKind::Stage
                || whole.contains(&index.id)
            {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = promotions.entry(index.id) {
                slot.insert(db.promotions_touching(index.id).await?);
            }
            let (promoted, named_by_promotions) = &promotions[&index.id];
            let named_by_promotions = *named_by_promotions;
            if let Some(idle) = rule.branch_idle_for
                && super::indexes::is_branch_index(&index.settings)
                && !inherited.contains(&index.name)
                && !named_by_promotions
                && !building.iter().any(|(id, ..)| *id == index.id)
                && let Some(last) = last_active.get(&index.id)
                && now
                    .signed_duration_since(*last)
                    .to_std()
                    .is_ok_and(|age| age > idle)
            {
                whole.insert(index.id);
                planned.push(Planned {
                    rule: rule.name.clone(),
                    index: index.clone(),
                    release: None,
                    bytes: db.index_usage(index.id).await?.1,
                    why: format!(
                        "retention rule `{}`: branch `{}` idle since {}",
                        rule.name,
                        index.settings.branch.as_deref().unwrap_or_default(),
                        last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                });
                continue;
            }
            if let Some(keep) = rule.keep_newest {
                let weighing = Weighing {
                    rule,
                    keep,
                    index,
                    promoted,
                    building: &building,
                    now,
                };
                planned.extend(weighing.old_releases(db, &mut seen_releases).await?);
            }
        }
    }
    Ok(planned)
}

/// What `keep-newest` weighs on one index.
struct Weighing<'a> {
    rule: &'a RetentionRule,
    keep: usize,
    index: &'a Index,
    promoted: &'a [(String, String)],
    building: &'a [(i64, ProjectName, String)],
    now: chrono::DateTime<chrono::Utc>,
}

impl Weighing<'_> {
    /// The releases beyond the newest `keep` per project that nothing protects.
    async fn old_releases(
        &self,
        db: &Db,
        seen: &mut HashSet<(i64, ProjectName, String)>,
    ) -> Result<Vec<Planned>, ServiceError> {
        let (rule, index, keep) = (self.rule, self.index, self.keep);
        let releases = db.release_ages(index.id).await?;
        let mut by_project: HashMap<&ProjectName, Vec<_>> = HashMap::new();
        for release in &releases {
            let Ok(version) = Version::from_str(&release.version) else {
                continue; // never weigh what cannot be ordered
            };
            by_project
                .entry(&release.project)
                .or_default()
                .push((version, release));
        }
        let mut planned = Vec::new();
        for (project, mut versions) in by_project {
            versions.sort_by(|a, b| b.0.cmp(&a.0));
            for (_, release) in versions.into_iter().skip(keep) {
                let building = self.building.iter().any(|(id, p, v)| {
                    *id == index.id
                        && p == project
                        && Release::parse(p.as_str(), v).is_ok_and(|r| r.matches(&release.version))
                });
                if young(rule.keep_younger_than, &release.uploaded_at, self.now)
                    || is_promoted(self.promoted, project, &release.version)
                    || building
                    || !seen.insert((index.id, project.clone(), release.version.clone()))
                {
                    continue;
                }
                planned.push(Planned {
                    rule: rule.name.clone(),
                    index: index.clone(),
                    release: Some((project.clone(), release.version.clone())),
                    bytes: release.bytes,
                    why: format!(
                        "retention rule `{}`: older than the newest {keep} releases of `{project}`",
                        rule.name
                    ),
                });
            }
        }
        Ok(planned)
    }
}

/// True when `uploaded_at` is younger than `keep` (and `keep` is set).
fn young(keep: Option<Duration>, uploaded_at: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(keep) = keep else {
        return false;
    };
    chrono::DateTime::parse_from_rfc3339(uploaded_at).map_or(true, |at| {
        now.signed_duration_since(at.with_timezone(&chrono::Utc))
            .to_std()
            .map_or(true, |age| age < keep)
    })
}

fn is_promoted(promoted: &[(String, String)], project: &ProjectName, version: &str) -> bool {
    promoted.iter().any(|(p, v)| {
        p == project.as_str() && Release::parse(p, v).is_ok_and(|r| r.matches(version))
    })
}

/// Carries out a plan, each removal through the trash with its rule as the actor, and
/// answers the removals made. A removal whose grounds changed since the plan (a build
/// started, an index became a base, the release was promoted) is skipped with a log
/// line; the next pass weighs it again.
pub async fn apply(
    db: &Db,
    planned: Vec<Planned>,
    keep_for: Duration,
) -> Result<Vec<Planned>, ServiceError> {
    let mut removed = Vec::new();
    for item in planned {
        let actor = Principal::system(format!("kiln retention ({})", item.rule), Vec::new());
        let done = match &item.release {
            None => remove_index_as(db, &actor, &item.index, &item.why, keep_for).await,
            Some((project, version)) => {
                let release = Release::parse(project.as_str(), version)
                    .map_err(|e| ServiceError::Internal(format!("stored version: {e}")))?;
                // Promoted since the plan was made: it stays.
                if db
                    .promoted_from(item.index.id, project.as_str(), release.version_str())
                    .await?
                {
                    continue;
                }
                let removal = Removal {
                    release: &release,
                    file: None,
                    reason: &item.why,
                    keep_for,
                };
                remove_as(db, &actor, &item.index, &removal).await
            }
        };
        match done {
            Ok(_) => removed.push(item),
            Err(err @ (ServiceError::Conflict(_) | ServiceError::NotFound(_))) => {
                tracing::info!(index.name = %item.index.name, reason = %err, "retention skipped a removal; the next pass weighs it again");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

/// What a branch clean-up did (or would do).
#[derive(Debug, Clone, Default)]
pub struct BranchCleanup {
    /// Only weighed, nothing removed.
    pub dry_run: bool,
    /// The branch indexes removed into the trash (or that would be), with their trash
    /// entry (none in a dry run).
    pub removed: Vec<(Index, Option<TrashRecord>)>,
    /// Branch indexes that stay although they were asked for, and why.
    pub skipped: Vec<(IndexName, String)>,
}

/// Which branches a clean-up concerns.
#[derive(Debug, Clone, Copy)]
pub enum Branches<'a> {
    /// These branches are gone (`kiln branch gone`, a code host's delete hook).
    Gone(&'a [String]),
    /// Only these branches exist (`kiln gc --branches FILE`): every other goes.
    Only(&'a [String]),
}

/// Removes, through the trash, the branch indexes of `namespace` whose branch is gone:
/// each needs `upload` on it (as deleting a branch index does); one another index
/// inherits, one a build is running on, or one promotion records name stays.
pub async fn clean_branches(
    db: &Db,
    caller: &super::auth::Caller,
    namespace: &str,
    branches: Branches<'_>,
    keep_for: Duration,
    dry_run: bool,
) -> Result<BranchCleanup, ServiceError> {
    let principal = caller.authenticated()?;
    format!("{namespace}/x")
        .parse::<IndexName>()
        .map_err(|e| ServiceError::Invalid(format!("namespace `{namespace}`: {e}")))?;
    let (listed, why) = match branches {
        Branches::Gone(list) => (list, "its branch is gone"),
        Branches::Only(list) => (list, "its branch is not among the branches that exist"),
    };
    if let Branches::Only(list) = branches
        && list.is_empty()
    {
        return Err(ServiceError::Invalid(
            "the list of branches that exist is empty: that would remove every branch index of the namespace; pass at least the default branch".into(),
        ));
    }
    let indexes = db.list_indexes().await?;
    let inherited: HashSet<&IndexName> = indexes.iter().flat_map(|i| &i.settings.bases).collect();
    let building: HashSet<i64> = db
        .builds_in_progress(100_000)
        .await?
        .into_iter()
        .map(|b| b.index_id)
        .collect();
    let mut cleanup = BranchCleanup {
        dry_run,
        ..BranchCleanup::default()
    };
    for index in indexes.iter().filter(|i| i.name.namespace() == namespace) {
        let Some(branch) = index.settings.branch.as_deref() else {
            continue;
        };
        let asked = listed.iter().any(|b| b.trim() == branch);
        let chosen = match branches {
            Branches::Gone(_) => asked,
            Branches::Only(_) => !asked,
        };
        if !chosen || !super::indexes::is_branch_index(&index.settings) {
            continue;
        }
        let stays = if !principal.allows(crate::domain::Permission::Upload, &index.name) {
            Some("removing it needs `upload` on it".to_owned())
        } else if inherited.contains(&index.name) {
            Some("another index inherits it".to_owned())
        } else if building.contains(&index.id) {
            Some("a build is running on it".to_owned())
        } else if db.promotions_touching(index.id).await?.1 {
            Some("promotion records name it".to_owned())
        } else {
            None
        };
        if let Some(reason) = stays {
            cleanup.skipped.push((index.name.clone(), reason));
            continue;
        }
        if dry_run {
            cleanup.removed.push((index.clone(), None));
            continue;
        }
        let reason = format!("branch `{branch}`: {why}");
        match remove_index_as(db, principal, index, &reason, keep_for).await {
            Ok(entry) => cleanup.removed.push((index.clone(), Some(entry))),
            Err(ServiceError::Conflict(reason)) => {
                cleanup.skipped.push((index.name.clone(), reason));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(cleanup)
}
