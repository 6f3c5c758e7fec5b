//! What the web UI, the badges and the feeds show: read-only assemblies of indexes,
//! releases, stage results, leases and events, each for one caller.
//!
//! Every function here takes the caller and checks `read` first, as the JSON API does;
//! nothing here writes. The pages are built from the same services and queries as the
//! API, so a page never shows what the API would refuse the same caller.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use pep440_rs::Version;

use super::auth::Caller;
use super::builds::{BuildStatus, now_ms};
use super::results::latest_of_files;
use super::{ServiceError, resolve};
use crate::api::{PromotionOutcome, PromotionView, ResultView};
use crate::db::{BuildInProgress, Db, EventRecord, EventWindow, FileBrief, FileRecord, IndexStats};
use crate::domain::{EventKind, Index, IndexName, Outcome, ProjectName, Release};
use crate::policy::Policies;

/// How many leases the home page's build queue shows.
const QUEUE_SHOWN: i64 = 200;
/// How many events the home page shows.
const HOME_EVENTS: i64 = 15;

/// The verdict of a release or a file: the latest outcome of each stage, worst first,
/// and the stages a promotion policy requires that have not reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Each stage's latest outcome (over the release's files: the worst of them).
    pub stages: BTreeMap<String, Outcome>,
    /// Stages a promotion from the index requires that have no result yet.
    pub missing: Vec<String>,
}

impl Verdict {
    /// The verdict of these latest-per-stage maps (one per file).
    #[must_use]
    pub fn of<'a>(latest: impl IntoIterator<Item = &'a BTreeMap<String, ResultView>>) -> Self {
        let mut stages: BTreeMap<String, Outcome> = BTreeMap::new();
        for file in latest {
            for (stage, result) in file {
                let worse = |seen: Outcome| rank(result.outcome) > rank(seen);
                if stages.get(stage).is_none_or(|seen| worse(*seen)) {
                    stages.insert(stage.clone(), result.outcome);
                }
            }
        }
        Self {
            stages,
            missing: Vec::new(),
        }
    }

    /// The same verdict, knowing which stages a promotion from its index requires: a
    /// release whose reported stages all passed is only incomplete while one of those
    /// has not reported (a green pill must never stand for an untested release).
    #[must_use]
    pub fn requiring(mut self, required: &[String]) -> Self {
        self.missing = required
            .iter()
            .filter(|stage| !self.stages.contains_key(*stage))
            .cloned()
            .collect();
        self
    }

    /// Passed, failed (or errored), or untested.
    #[must_use]
    pub fn state(&self) -> VerdictState {
        if self.stages.values().any(|o| *o != Outcome::Pass) {
            VerdictState::Failed
        } else if !self.missing.is_empty() {
            VerdictState::Incomplete
        } else if self.stages.is_empty() {
            VerdictState::Untested
        } else {
            VerdictState::Passed
        }
    }

    /// One line: `3 stages passed`, `unit failed`, `no stage results`.
    #[must_use]
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .stages
            .iter()
            .filter(|(_, o)| **o != Outcome::Pass)
            .map(|(s, _)| s.as_str())
            .collect();
        match (self.state(), self.stages.len()) {
            (VerdictState::Untested, _) => "no stage results".to_owned(),
            (VerdictState::Passed, 1) => "1 stage passed".to_owned(),
            (VerdictState::Passed, n) => format!("{n} stages passed"),
            (VerdictState::Failed, _) => format!("{} failed", failed.join(", ")),
            (VerdictState::Incomplete, _) => format!("{} not run yet", self.missing.join(", ")),
        }
    }
}

fn rank(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Pass => 0,
        Outcome::Error => 1,
        Outcome::Fail => 2,
    }
}

/// A verdict in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictState {
    /// Every reported stage passed.
    Passed,
    /// A stage failed or could not run.
    Failed,
    /// Every reported stage passed, but a required stage has not reported.
    Incomplete,
    /// No stage reported.
    Untested,
}

impl VerdictState {
    /// The word pages, badges and CSS classes use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::Untested => "untested",
        }
    }
}

/// The stages every promotion rule starting at `index` requires.
#[must_use]
pub fn required_stages(policies: &Policies, index: &IndexName) -> Vec<String> {
    let mut stages: Vec<String> = policies
        .rules
        .iter()
        .filter(|r| r.from == *index)
        .flat_map(|r| r.required_stages.iter().cloned())
        .collect();
    stages.sort();
    stages.dedup();
    stages
}

/// An index with what it holds.
#[derive(Debug, Clone)]
pub struct IndexCard {
    /// The index and its settings.
    pub index: Index,
    /// Its own files, their bytes, its last upload.
    pub stats: IndexStats,
}

/// A lease in progress on an index the caller may read.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// The index it builds into.
    pub index: IndexName,
    /// The lease.
    pub build: BuildInProgress,
    /// Milliseconds until it lapses without a heartbeat (negative: lapsed, the next
    /// claimer takes it over).
    pub expires_in_ms: i64,
}

/// The home page.
#[derive(Debug, Clone)]
pub struct Home {
    /// The indexes the caller may read.
    pub indexes: Vec<IndexCard>,
    /// Builds holding a lease on those indexes, oldest first.
    pub queue: Vec<QueueEntry>,
    /// The latest events the caller may see, newest first.
    pub events: Vec<EventRecord>,
}

/// The home page for `caller`.
pub async fn home(db: &Db, caller: &Caller) -> Result<Home, ServiceError> {
    let indexes = super::auth::readable_indexes(db, caller.principal()).await?;
    let stats = db.index_stats().await?;
    let names: HashMap<i64, IndexName> = indexes.iter().map(|i| (i.id, i.name.clone())).collect();
    let now = now_ms();
    let queue = db
        .builds_in_progress(QUEUE_SHOWN)
        .await?
        .into_iter()
        .filter_map(|build| {
            let index = names.get(&build.index_id)?.clone();
            Some(QueueEntry {
                index,
                expires_in_ms: build.build.expires_at_ms - now,
                build,
            })
        })
        .collect();
    let events = recent_events(db, caller, None, None, None, HOME_EVENTS).await?;
    Ok(Home {
        indexes: indexes
            .into_iter()
            .map(|index| IndexCard {
                stats: stats.get(&index.id).cloned().unwrap_or_default(),
                index,
            })
            .collect(),
        queue,
        events,
    })
}

/// Events newest first, of one index and one kind or all, before an id (the next
/// page), that the caller may see.
pub async fn recent_events(
    db: &Db,
    caller: &Caller,
    index: Option<&IndexName>,
    kind: Option<EventKind>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRecord>, ServiceError> {
    let window = EventWindow {
        before,
        kind,
        newest_first: true,
        ..EventWindow::default()
    };
    super::promote::events_page(db, caller, index, window, limit).await
}

/// A project's newest release on an index.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    /// The project.
    pub project: ProjectName,
    /// Its newest version there.
    pub newest: String,
    /// How many versions the index lists.
    pub versions: usize,
    /// The newest release's verdict.
    pub verdict: Verdict,
    /// True when every file of the newest release is yanked.
    pub yanked: bool,
}

/// An index's page.
#[derive(Debug, Clone)]
pub struct IndexPage {
    /// The index and what it holds.
    pub card: IndexCard,
    /// Its chain after itself (what it inherits), in order.
    pub inherits: Vec<IndexName>,
    /// Its own projects, by name: one page of them.
    pub projects: Vec<ProjectRow>,
    /// The project this page starts after (`None`: the first page).
    pub after: Option<String>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

/// Projects per index page.
pub const PROJECTS_PER_PAGE: i64 = 200;

/// The newest version of `files` (by PEP 440 order; an unparsable stored version sorts
/// first, so a real release wins).
fn newest_version<'a>(versions: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    versions.max_by(|a, b| {
        let parse = |v: &str| Version::from_str(v).ok();
        parse(a).cmp(&parse(b)).then_with(|| a.cmp(b))
    })
}

/// The page of index `name` (its projects after `after`, [`PROJECTS_PER_PAGE`] of
/// them), once the caller was found to may read it.
pub async fn index_page(
    (db, policies): (&Db, &Policies),
    caller: &Caller,
    name: &IndexName,
    after: Option<&str>,
) -> Result<IndexPage, ServiceError> {
    let required = required_stages(policies, name);
    let (index, chain) = super::auth::readable_chain(db, caller, name).await?;
    let stats = db
        .index_stats()
        .await?
        .get(&index.id)
        .cloned()
        .unwrap_or_default();
    let page = usize::try_from(PROJECTS_PER_PAGE).unwrap_or(usize::MAX);
    let mut names = db
        .own_projects_page(index.id, after.unwrap_or(""), PROJECTS_PER_PAGE + 1)
        .await?;
    let more = names.len() > page;
    names.truncate(page);
    let next = more
        .then(|| names.last().map(ToString::to_string))
        .flatten();
    let mut by_project: BTreeMap<ProjectName, Vec<FileBrief>> = BTreeMap::new();
    for file in db.own_file_briefs(index.id, &names).await? {
        by_project
            .entry(file.project.clone())
            .or_default()
            .push(file);
    }
    let mut rows: Vec<(ProjectName, String, usize, Vec<FileBrief>)> = Vec::new();
    for (project, files) in by_project {
        let versions: HashSet<&str> = files.iter().map(|f| f.version.as_str()).collect();
        let count = versions.len();
        let newest = newest_version(versions.into_iter())
            .unwrap_or_default()
            .to_owned();
        let newest_files = files.into_iter().filter(|f| f.version == newest).collect();
        rows.push((project, newest, count, newest_files));
    }
    // The verdicts reported for this index on the newest releases' files, in one query.
    let keys: Vec<(i64, &crate::domain::Sha256Digest)> = rows
        .iter()
        .flat_map(|(_, _, _, files)| files.iter().map(|f| (index.id, &f.sha256)))
        .collect();
    let mut histories = super::results::results_on(db, &keys).await?.into_iter();
    let projects = rows
        .into_iter()
        .map(|(project, newest, versions, files)| {
            let latest: Vec<BTreeMap<String, ResultView>> = histories
                .by_ref()
                .take(files.len())
                .map(|history| super::results::latest_per_stage(&history))
                .collect();
            ProjectRow {
                project,
                newest,
                versions,
                verdict: Verdict::of(&latest).requiring(&required),
                yanked: files.iter().all(|f| f.yanked),
            }
        })
        .collect();
    Ok(IndexPage {
        inherits: chain.iter().skip(1).map(|i| i.name.clone()).collect(),
        card: IndexCard { index, stats },
        projects,
        after: after.map(ToOwned::to_owned),
        next,
    })
}

/// A file with the latest result of each stage on it.
type FileLatest = (FileRecord, BTreeMap<String, ResultView>);

/// One version of a project as seen through an index's chain.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// The version.
    pub version: String,
    /// The chain index that lists it (the first one, as pip sees it).
    pub index: IndexName,
    /// True when the page's own index lists it.
    pub own: bool,
    /// Its files there.
    pub files: Vec<FileRecord>,
    /// Their verdict there.
    pub verdict: Verdict,
    /// The indexes it was promoted to (that the caller may read).
    pub promoted_to: Vec<String>,
}

/// A project's page on an index.
#[derive(Debug, Clone)]
pub struct ProjectPage {
    /// The index.
    pub index: Index,
    /// The project.
    pub project: ProjectName,
    /// Its versions through the chain, own index first, newest first within each.
    pub versions: Vec<VersionRow>,
}

/// The page of `project` on index `name`, once the caller was found to may read it.
pub async fn project_page(
    (db, policies): (&Db, &Policies),
    caller: &Caller,
    name: &IndexName,
    project: &ProjectName,
) -> Result<ProjectPage, ServiceError> {
    let (index, chain) = super::auth::readable_chain(db, caller, name).await?;
    let ids: Vec<i64> = chain.iter().map(|i| i.id).collect();
    let files = resolve::project_files(db, &ids, project).await?;
    if files.is_empty() {
        return Err(ServiceError::NotFound(format!(
            "`{project}` has no files on `{name}` or the indexes it inherits"
        )));
    }
    let latest = latest_of_files(db, &files).await?;
    let readable: HashSet<IndexName> = super::auth::readable_indexes(db, caller.principal())
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    let promotions = db.promotions_of_project(project.as_str()).await?;
    // Group by (chain position, version): the first index that lists a version is
    // where pip finds it.
    let mut groups: Vec<(usize, String, Vec<FileLatest>)> = Vec::new();
    for (file, latest) in files.into_iter().zip(latest) {
        let position = ids.iter().position(|id| *id == file.index_id).unwrap_or(0);
        match groups.iter_mut().find(|(_, v, _)| *v == file.version) {
            Some((_, _, members)) => members.push((file, latest)),
            None => groups.push((position, file.version.clone(), vec![(file, latest)])),
        }
    }
    groups.sort_by(|(pa, va, _), (pb, vb, _)| {
        let parse = |v: &str| Version::from_str(v).ok();
        pa.cmp(pb).then_with(|| parse(vb).cmp(&parse(va)))
    });
    let versions = groups
        .into_iter()
        .map(|(position, version, members)| {
            let listing = chain[position].name.clone();
            let verdict = Verdict::of(members.iter().map(|(_, l)| l))
                .requiring(&required_stages(policies, &listing));
            let promoted_to = promotions
                .iter()
                .filter(|p| {
                    p.version == version && p.source == listing && readable.contains(&p.target)
                })
                .map(|p| p.target.to_string())
                .collect();
            VersionRow {
                own: position == 0,
                index: listing,
                files: members.into_iter().map(|(f, _)| f).collect(),
                verdict,
                promoted_to,
                version,
            }
        })
        .collect();
    Ok(ProjectPage {
        index,
        project: project.clone(),
        versions,
    })
}

/// Every run of one stage against a release's files, newest first.
#[derive(Debug, Clone)]
pub struct StageRuns {
    /// The stage.
    pub stage: String,
    /// Its latest outcome (the worst over the files).
    pub outcome: Outcome,
    /// Every run, newest first.
    pub runs: Vec<ResultView>,
}

/// A release's page.
#[derive(Debug, Clone)]
pub struct ReleasePage {
    /// The index it is shown from.
    pub index: IndexName,
    /// The release.
    pub release: Release,
    /// Its build into that index.
    pub build: BuildStatus,
    /// Its files through the chain, own first, with the index listing each.
    pub files: Vec<(IndexName, FileRecord)>,
    /// The stage matrix: every stage reported against those files, by name.
    pub stages: Vec<StageRuns>,
    /// Its promotions (into indexes the caller may read), newest first.
    pub promotions: Vec<PromotionView>,
    /// What each policy starting at this index would say now (a dry run).
    pub previews: Vec<PromotionOutcome>,
    /// The release's verdict here, knowing the stages its promotion requires.
    pub verdict: Verdict,
}

/// The page of `release` on index `name`, once the caller was found to may read it.
pub async fn release_page(
    ctx: super::promote::Promoter<'_>,
    caller: &Caller,
    name: &IndexName,
    release: &Release,
) -> Result<ReleasePage, ServiceError> {
    let db = ctx.db;
    let (build, verdicts) = super::results::release_status(db, caller, name, release).await?;
    if verdicts.is_empty() && build == BuildStatus::Absent {
        return Err(ServiceError::NotFound(format!(
            "{release} has no files and no build on `{name}` or the indexes it inherits"
        )));
    }
    // Each file's history holds only the results reported for the index that lists it.
    let mut all: Vec<&ResultView> = verdicts.iter().flat_map(|v| &v.history).collect();
    all.sort_by(|a, b| a.reported_at.cmp(&b.reported_at));
    let mut runs: BTreeMap<String, Vec<ResultView>> = BTreeMap::new();
    for view in all {
        runs.entry(view.stage.clone())
            .or_default()
            .push(view.clone());
    }
    let verdict = Verdict::of(verdicts.iter().map(|v| &v.latest))
        .requiring(&required_stages(ctx.policies, name));
    let stages = runs
        .into_iter()
        .map(|(stage, mut runs)| {
            runs.reverse();
            StageRuns {
                outcome: verdict.stages.get(&stage).copied().unwrap_or(Outcome::Pass),
                stage,
                runs,
            }
        })
        .collect();
    let readable: HashSet<IndexName> = super::auth::readable_indexes(db, caller.principal())
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    let promotions = db
        .promotions_of_project(release.project.as_str())
        .await?
        .into_iter()
        .filter(|p| release.matches(&p.version) && readable.contains(&p.target))
        .map(PromotionView::from)
        .collect();
    let previews = super::promote::preview(ctx, caller, name, release).await?;
    Ok(ReleasePage {
        index: name.clone(),
        release: release.clone(),
        build,
        files: verdicts.into_iter().map(|v| (v.index, v.file)).collect(),
        stages,
        promotions,
        previews,
        verdict,
    })
}

/// The newest release of `project` on `name` (own files first, as pip sees them) and
/// its verdict, with each stage's latest outcome: what a badge shows. `None` when the
/// chain lists no file of it.
pub async fn newest_release(
    (db, policies): (&Db, &Policies),
    caller: &Caller,
    name: &IndexName,
    project: &ProjectName,
) -> Result<Option<(String, Verdict)>, ServiceError> {
    let (_, chain) = super::auth::readable_chain(db, caller, name).await?;
    let ids: Vec<i64> = chain.iter().map(|i| i.id).collect();
    let files = resolve::project_files(db, &ids, project).await?;
    let Some(newest) = newest_version(files.iter().map(|f| f.version.as_str())) else {
        return Ok(None);
    };
    let newest = newest.to_owned();
    let files: Vec<FileRecord> = files.into_iter().filter(|f| f.version == newest).collect();
    let latest = latest_of_files(db, &files).await?;
    let listing = chain
        .iter()
        .find(|i| files.first().is_some_and(|f| f.index_id == i.id))
        .map_or(name, |i| &i.name);
    let required = required_stages(policies, listing);
    Ok(Some((newest, Verdict::of(&latest).requiring(&required))))
}

/// What `/metrics` reads at scrape time: builds by state, the database pool, and files and
/// bytes per index — of every index with `all_indexes` (a scraper holding the metrics
/// token), else of public indexes only (index names are not public otherwise).
pub async fn sample_metrics(
    db: &Db,
    all_indexes: bool,
) -> Result<crate::metrics::Sampled, ServiceError> {
    let stats = db.index_stats().await?;
    let indexes = db
        .list_indexes()
        .await?
        .into_iter()
        .filter(|index| all_indexes || !index.settings.private)
        .map(|index| {
            let kept = stats.get(&index.id);
            let count = |n: Option<u64>| i64::try_from(n.unwrap_or(0)).unwrap_or(i64::MAX);
            (
                index.name.to_string(),
                count(kept.map(|k| k.files)),
                count(kept.map(|k| k.bytes)),
            )
        })
        .collect();
    let (size, idle) = db.pool_stats();
    Ok(crate::metrics::Sampled {
        builds: db.builds_by_state().await?,
        pool: (i64::from(size), i64::try_from(idle).unwrap_or(i64::MAX)),
        page_cache: (0, 0),
        indexes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(stage: &str, outcome: Outcome) -> (String, ResultView) {
        (
            stage.to_owned(),
            ResultView {
                index: "root/master".into(),
                sha256: "0".repeat(64),
                stage: stage.into(),
                run_id: "r".into(),
                outcome,
                cause: None,
                artifact: None,
                exit_code: None,
                duration_ms: 0,
                environment: BTreeMap::new(),
                log_tail: String::new(),
                junit: None,
                reported_by: "ci".into(),
                reported_at: String::new(),
                after_promotion: false,
            },
        )
    }

    #[test]
    fn the_worst_file_decides_a_stage_and_any_failure_fails_the_release() {
        let wheel: BTreeMap<_, _> = [result("unit", Outcome::Pass), result("lint", Outcome::Pass)]
            .into_iter()
            .collect();
        let sdist: BTreeMap<_, _> = [result("unit", Outcome::Fail)].into_iter().collect();
        let verdict = Verdict::of([&wheel, &sdist]);
        assert_eq!(verdict.stages["unit"], Outcome::Fail);
        assert_eq!(verdict.state(), VerdictState::Failed);
        assert_eq!(verdict.summary(), "unit failed");
        let green = Verdict::of([&wheel]);
        assert_eq!(green.state(), VerdictState::Passed);
        assert_eq!(green.summary(), "2 stages passed");
        assert_eq!(Verdict::of([]).summary(), "no stage results");
        // A required stage that has not reported keeps a green-so-far release incomplete,
        // and a failure still wins.
        let required = ["unit".to_owned(), "e2e".to_owned()];
        let waiting = Verdict::of([&wheel]).requiring(&required);
        assert_eq!(waiting.state(), VerdictState::Incomplete);
        assert_eq!(waiting.summary(), "e2e not run yet");
        assert_eq!(
            Verdict::of([&wheel, &sdist]).requiring(&required).state(),
            VerdictState::Failed
        );
        assert_eq!(
            Verdict::of([]).requiring(&required).summary(),
            "unit, e2e not run yet"
        );
    }

    #[test]
    fn the_newest_version_is_pep_440_order_not_text_order() {
        assert_eq!(
            newest_version(["1.9", "1.10", "1.10rc1"].into_iter()),
            Some("1.10")
        );
    }
}
