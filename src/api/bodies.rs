//! Request and response bodies of the JSON API, grouped by resource. Field docs are the
//! API reference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::scope::Scope;
use crate::domain::{
    ArtifactCheck, Check, DEFAULT_MIRROR_TTL_SECONDS, DeliveryState, EventKind, Index, IndexKind,
    IndexName, IndexPattern, IndexSettings, MirrorSettings, Outcome, Provenance, WebhookEvent,
};

/// Whether the server can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The database answers.
    Ok,
    /// It does not (HTTP 503).
    Unavailable,
}

/// The answer to `GET /+health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// Whether the server can serve.
    pub status: HealthStatus,
    /// Kiln's version, when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The metadata database's engine (`sqlite`, `postgresql`), when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The object store's kind (`file`, `s3`, `memory`), when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// The rendered-page cache's counters, when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache: Option<PageCacheView>,
    /// Why not, when unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A replica's rendered-page cache, as `/+health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCacheView {
    /// Pages served from memory since start.
    pub hits: u64,
    /// Pages rendered since start (absent, expired, or stale after a change).
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes held now (bodies plus a fixed overhead per entry).
    pub bytes: u64,
    /// The bound on bytes held (`--page-cache-size`).
    pub capacity_bytes: u64,
}

/// The answer to an upload (`POST /{ns}/{name}/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAnswer {
    /// `created`, or `already-present` when the same bytes were listed already.
    pub result: String,
    /// The index.
    pub index: String,
    /// The stored filename.
    pub filename: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Server-relative download URL.
    pub url: String,
}

// Indexes.

/// An index as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct IndexView {
    /// The index and its settings.
    #[serde(flatten)]
    pub index: Index,
    /// Where pip and uv read it.
    pub simple_url: String,
    /// Where twine uploads to it.
    pub upload_url: String,
    /// Project names this index (or a stage index it inherits) has files of, which the
    /// mirrors in its chain therefore do not serve (the dependency-confusion guard; see
    /// `mirror_allow`). Shown by `GET` of one index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_shadowed: Vec<String>,
    /// What it holds: shown by `GET` of one index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<IndexUsage>,
}

/// What one index holds in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexUsage {
    /// Files it lists itself (a mirror: files it has cached).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The bytes of those files no other index lists: what removing it would free.
    pub own_bytes: u64,
}

impl From<Index> for IndexView {
    fn from(index: Index) -> Self {
        let name = index.name.clone();
        Self {
            index,
            simple_url: format!("/{name}/+simple/"),
            upload_url: format!("/{name}/"),
            mirror_shadowed: Vec::new(),
            usage: None,
        }
    }
}

/// Body of `POST /+api/v1/indexes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    pub name: IndexName,
    /// `stage` unless `mirror_url` is given.
    #[serde(default)]
    pub kind: Option<IndexKind>,
    #[serde(default)]
    pub bases: Vec<IndexName>,
    #[serde(default)]
    pub volatile: bool,
    #[serde(default)]
    pub promotion_only: bool,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub mirror_url: Option<String>,
    #[serde(default)]
    pub mirror_username: Option<String>,
    #[serde(default)]
    pub mirror_password: Option<String>,
    #[serde(default)]
    pub mirror_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub mirror_allow: Vec<String>,
    /// Mirrors: origins files may come from besides the upstream's (`https://host`).
    #[serde(default)]
    pub mirror_file_origins: Vec<String>,
}

/// Body of `PATCH /+api/v1/indexes/{ns}/{name}`; an absent field keeps its value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifyIndex {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bases: Option<Vec<IndexName>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volatile: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_file_origins: Option<Vec<String>>,
    /// Needed (with admin on `*`) to clear `promotion_only`: production is append-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Query of an index deletion.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeleteQuery {
    /// Needed (with admin on `*`) to delete a promotion-only index.
    #[serde(default)]
    pub force: bool,
}

// Build leases.

/// A file of a release, as build and status answers list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFile {
    /// The filename.
    pub filename: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Server-relative download URL.
    pub url: String,
    /// Where it was built (commit, CI run, runner, environment); absent for a file
    /// uploaded without a build lease (by hand, e.g. twine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A build's state as the API shows it; `state` names the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BuildStateView {
    /// Nothing built or uploaded yet.
    Absent,
    /// Use these files.
    Ready {
        /// The index's own files of the release.
        files: Vec<ReleaseFile>,
    },
    /// You hold the lease: build, heartbeat, upload with `X-Kiln-Lease`, complete.
    Claimed {
        /// The lease secret.
        lease_id: String,
        /// Milliseconds until the lease lapses without a heartbeat (relative, so runner
        /// clocks do not matter).
        expires_in_ms: i64,
        /// The server's lease length; heartbeat well within it.
        lease_ttl_ms: u64,
        /// Which attempt this is.
        attempt: i64,
    },
    /// Someone else builds; long-poll and claim again.
    Building {
        /// The token and runner that hold the lease, as shown to waiters.
        builder: String,
        /// Milliseconds until their lease lapses without a heartbeat.
        expires_in_ms: i64,
        /// Which attempt.
        attempt: i64,
    },
    /// The build failed.
    Failed {
        /// Who built it.
        builder: String,
        /// The tail of the build output.
        error_tail: String,
        /// Which attempt failed.
        attempt: i64,
    },
}

/// A build answer: the release and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildView {
    /// The index the release is built into.
    pub index: String,
    /// Normalized project name.
    pub project: String,
    /// Normalized version.
    pub version: String,
    /// Where the build stands.
    #[serde(flatten)]
    pub status: BuildStateView,
    /// The source and CI run of the build (of its current holder while building).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The target of a per-target build; absent for the release's first build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::domain::BuildTarget>,
}

/// Body of a claim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBuild {
    /// Who is asking (runner, CI job); shown to waiters.
    #[serde(default)]
    pub builder: String,
    /// Claim a failed build again instead of reporting its failure.
    #[serde(default)]
    pub retry: bool,
    /// The source commit and CI run the claimant builds from. A version is built from
    /// one commit: a claim from another commit than the release's build is refused (409).
    pub provenance: Provenance,
    /// Claim a build for this target (a wheel tag no file of the release serves) instead
    /// of the release's first build. Allowed once the first build is ready, and only from
    /// the same commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::domain::BuildTarget>,
}

/// Body of heartbeat and complete.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// The lease secret from the claim.
    pub lease_id: String,
    /// For `fail`: the tail of the build output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_tail: Option<String>,
    /// The target the lease was claimed for, if it was a per-target claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::domain::BuildTarget>,
}

/// Query of a long poll.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Seconds to wait for a `building` release to change (at most 60).
    #[serde(default)]
    pub wait: Option<f64>,
    /// The per-target build to look at (default: the release's first build).
    #[serde(default)]
    pub target: Option<crate::domain::BuildTarget>,
}

// Stage results.

/// JUnit counts from a stage's report file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JunitCounts {
    /// Test cases run.
    pub tests: u64,
    /// Assertion failures.
    pub failures: u64,
    /// Errors.
    pub errors: u64,
    /// Skipped.
    pub skipped: u64,
}

/// A stage result as CI sends it (`POST /+api/v1/results`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageReport {
    /// The index the stage installed the artifact from; the verdict counts for that
    /// index only, and the reporter needs `report` on it.
    pub index: IndexName,
    /// The tested artifact.
    pub sha256: String,
    /// Stage name, e.g. `unit`.
    pub stage: String,
    /// The CI run (pipeline id, attempt, job) that tested it.
    pub run_id: String,
    /// The verdict.
    pub outcome: Outcome,
    /// For `error`: why the stage could not run (required then, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Whether the stage proved it tested the artifact (`verified`, or `unverified:
    /// <reason>`); absent when nothing checked (`kiln report`). Promotion counts only
    /// verified passes unless the policy says `verified-only = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactCheck>,
    /// The command's exit status, when it ran and exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Wall time of the stage.
    pub duration_ms: u64,
    /// Allowlisted runner facts (OS, arch, Python, CI provider, runner).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The last bytes of the stage's output.
    #[serde(default)]
    pub log_tail: String,
    /// JUnit counts, when a report file was given.
    #[serde(default)]
    pub junit: Option<JunitCounts>,
}

/// A stored result as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultView {
    /// The index the result counts for.
    pub index: String,
    /// The artifact.
    pub sha256: String,
    /// The stage, e.g. `unit` or `functional`.
    pub stage: String,
    /// The CI run (pipeline, attempt, job) that reported it; a re-run of the same id
    /// replaces its result.
    pub run_id: String,
    /// The verdict.
    pub outcome: Outcome,
    /// For `error`: why the stage could not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Whether the stage proved it tested the artifact; absent when nothing checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactCheck>,
    /// The stage command's exit status, when it ran and exited.
    pub exit_code: Option<i64>,
    /// How long the stage command ran, in milliseconds.
    pub duration_ms: u64,
    /// Allowlisted facts about the runner (OS, architecture, Python, CI provider).
    pub environment: BTreeMap<String, String>,
    /// The last 64 KiB of the stage's output.
    pub log_tail: String,
    /// Test counts from the stage's JUnit report, when it gave one.
    pub junit: Option<JunitCounts>,
    /// The name of the token that reported it.
    pub reported_by: String,
    /// When it was recorded (RFC 3339, UTC).
    pub reported_at: String,
    /// True when the release had already been promoted from this index when the result
    /// arrived: it is kept and shown, and changes nothing on the target.
    #[serde(default)]
    pub after_promotion: bool,
}

/// The results of one artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactResults {
    /// The artifact.
    pub sha256: String,
    /// The latest result of each stage.
    pub latest: BTreeMap<String, ResultView>,
    /// Every result, oldest first.
    pub history: Vec<ResultView>,
}

/// A file of a release with its stage matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileStatus {
    /// The file.
    #[serde(flatten)]
    pub file: ReleaseFile,
    /// The index that lists it.
    pub index: crate::domain::IndexName,
    /// The latest result of each stage.
    pub stages: BTreeMap<String, ResultView>,
}

/// A release as `kiln status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseStatus {
    /// The build of the release into the asked index.
    pub build: BuildView,
    /// The release's files visible from that index, with their verdicts.
    pub files: Vec<FileStatus>,
}

// Promotions, yanks, events.

/// A release named in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRef {
    /// The project.
    pub project: String,
    /// The version.
    pub version: String,
}

impl std::str::FromStr for ReleaseRef {
    type Err = String;

    /// `PROJECT==VERSION`, as pip writes a pin.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once("==") {
            Some((project, version))
                if !project.trim().is_empty()
                    && !version.trim().is_empty()
                    && !version.contains("==") =>
            {
                Ok(Self {
                    project: project.trim().to_owned(),
                    version: version.trim().to_owned(),
                })
            }
            _ => Err(format!(
                "`{}` is not a release: write `PROJECT==VERSION` (e.g. `acme-util==1.2`)",
                text.escape_debug()
            )),
        }
    }
}

impl std::fmt::Display for ReleaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=={}", self.project, self.version)
    }
}

/// What a promotion request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The project.
    pub project: String,
    /// The version.
    pub version: String,
    /// Further releases promoted in the same transaction (all or none), e.g. a library
    /// and the application that requires it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub together: Vec<ReleaseRef>,
    /// The source index (default: the source of the only rule that fits).
    #[serde(default)]
    pub from: Option<IndexName>,
    /// The target index (default: the target of the only rule that fits).
    #[serde(default)]
    pub to: Option<IndexName>,
    /// Evaluate and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// How a promotion request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromotionResult {
    /// The files are now on the target.
    Promoted,
    /// They were already; nothing changed.
    AlreadyPromoted,
    /// Every check passes; nothing was changed because it was a dry run.
    WouldPromote,
    /// At least one check fails.
    Refused,
}

/// The answer to a promotion request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionOutcome {
    /// How it ended.
    pub result: PromotionResult,
    /// The policy rule applied.
    pub policy: String,
    /// The index the release is promoted from.
    pub from: String,
    /// The index it is promoted to.
    pub to: String,
    /// Normalized project.
    pub project: String,
    /// The version as asked.
    pub version: String,
    /// Every check, passed or not (empty for `already-promoted`).
    pub checks: Vec<Check>,
    /// The audit record, when promoted or already promoted.
    pub promotion: Option<PromotionView>,
    /// The outcomes of the request's `together` releases, in order. With them, `result`
    /// is the whole request's: one refused release refuses them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub together: Vec<PromotionOutcome>,
}

/// A promotion audit record as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionView {
    /// The audit record's id.
    pub id: i64,
    /// The normalized project name.
    pub project: String,
    /// Version (canonical).
    pub version: String,
    /// The index it was promoted from.
    pub source: String,
    /// The index it was promoted to.
    pub target: String,
    /// The policy rule that allowed it.
    pub policy: String,
    /// The token that promoted it, or `auto (<rule>)` for an automatic promotion.
    pub promoted_by: String,
    /// When (RFC 3339, UTC).
    pub promoted_at: String,
    /// The files listed on the target, with their sha256.
    pub files: serde_json::Value,
    /// Checks and stage results that justified it.
    pub evidence: serde_json::Value,
}

/// Query of the promotions list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only promotions into this index.
    pub index: Option<IndexName>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Body of a yank.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YankBody {
    /// Why (shown by pip to whoever installs the pinned version).
    pub reason: String,
}

/// The answer to a yank or unyank.
#[derive(Debug, Serialize, Deserialize)]
pub struct YankView {
    /// The index.
    pub index: String,
    /// The files whose flag changed.
    pub files: Vec<String>,
    /// True after a yank, false after an unyank.
    pub yanked: bool,
}

/// Body of a removal (`kiln remove`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    /// Why (shown in the trash and the events).
    pub reason: String,
    /// One file of the release; every file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A trash entry: a removed release or file, restorable until it expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrashView {
    /// Its id (`kiln trash restore ID`).
    pub id: i64,
    /// The index it was removed from (or the index removed).
    pub index: String,
    /// What it holds: `index`, `release` or `file`.
    pub kind: crate::domain::TrashKind,
    /// The project (absent for an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The release's version (absent for an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The one file removed, or absent for the whole release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The files it holds.
    pub files: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// Why.
    pub reason: String,
    /// The token that removed it.
    pub removed_by: String,
    /// When (RFC 3339).
    pub removed_at: String,
    /// When it is released for good unless restored (RFC 3339).
    pub expires_at: String,
}

/// Body of `POST /+api/v1/branches/{ns}/gone` and `…/keep`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchesBody {
    /// Branch names, as git spells them (`feature/login`).
    pub branches: Vec<String>,
    /// Only say what would go.
    #[serde(default)]
    pub dry_run: bool,
}

/// A branch index a clean-up removed (or would).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemovedBranchView {
    /// The index.
    pub index: String,
    /// Its branch.
    pub branch: String,
    /// Its trash entry (absent in a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash: Option<i64>,
}

/// A branch index that stays although it was asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedView {
    /// The index.
    pub index: String,
    /// Why it stays.
    pub reason: String,
}

/// What a branch clean-up did (or would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BranchCleanupView {
    /// Only weighed, nothing removed.
    pub dry_run: bool,
    /// Removed into the trash (or that would be).
    pub removed: Vec<RemovedBranchView>,
    /// Asked for, but staying.
    pub skipped: Vec<SkippedView>,
}

/// Body of `POST /+api/v1/gc`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcBody {
    /// Only count what would go.
    #[serde(default)]
    pub dry_run: bool,
}

/// One removal a retention rule made (or would make), into the trash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionView {
    /// The rule.
    pub rule: String,
    /// The index (removed whole when there is no project).
    pub index: String,
    /// The release's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The release's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The bytes it holds.
    pub bytes: u64,
    /// Why.
    pub reason: String,
}

/// What a garbage collection did (or would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcReport {
    /// Only counted, nothing deleted.
    pub dry_run: bool,
    /// What retention rules moved into the trash (or would).
    pub retention: Vec<RetentionView>,
    /// Trash entries released for good.
    pub released: Vec<TrashView>,
    /// Blobs nothing named any more.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Stored objects no row named, older than the grace period.
    pub orphans: u64,
    /// Their bytes.
    pub orphan_bytes: u64,
    /// Staging files of writes a crash cut short, older than the grace period.
    pub leftovers: u64,
    /// Their bytes.
    pub leftover_bytes: u64,
    /// Every byte freed (or that would be).
    pub freed_bytes: u64,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    /// Read events after this id to follow the stream.
    pub id: i64,
    /// What happened.
    pub kind: EventKind,
    /// The index concerned (absent for a server-wide event, e.g. a token's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The normalized project name, for a release's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The version concerned, for a release's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The token (or `auto (<rule>)`) that acted.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Kind-specific detail: the policy and files of a promotion, the failed checks
    /// of a refusal, the reason of a yank.
    pub detail: serde_json::Value,
}

/// Query of the events list.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events of this index.
    pub index: Option<IndexName>,
    /// Only events after this id.
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

// Mirrors.

/// One cached project page.
#[derive(Debug, Serialize, Deserialize)]
pub struct CachedProject {
    /// Normalized name.
    pub project: String,
    /// `found`, or `missing` (the upstream has no such project).
    pub status: String,
    /// When the upstream last answered (RFC 3339).
    pub fetched_at: String,
    /// False once the TTL has passed: the next request asks the upstream again.
    pub fresh: bool,
    /// Files the page lists.
    pub files: i64,
    /// Of those, files whose bytes are stored here.
    pub cached_files: i64,
    /// Bytes stored.
    pub cached_bytes: i64,
}

/// `GET /+api/v1/mirrors/{ns}/{name}`
#[derive(Debug, Serialize, Deserialize)]
pub struct MirrorCacheView {
    /// The mirror.
    pub mirror: String,
    /// Its upstream.
    pub upstream: String,
    /// Its page TTL.
    pub ttl_seconds: u64,
    /// The cached pages, by name.
    pub projects: Vec<CachedProject>,
}

/// The answer to a refresh.
#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshView {
    /// Normalized name.
    pub project: String,
    /// Files the upstream lists now.
    pub files: usize,
    /// Set when the upstream failed and the stored copy stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// The answer to a purge.
#[derive(Debug, Serialize, Deserialize)]
pub struct PurgeView {
    /// Normalized name.
    pub project: String,
    /// Cached files (and metadata files) whose bytes were deleted.
    pub deleted_blobs: usize,
}

// Tokens.

/// A token as the API shows it: never the secret, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// What `kiln token revoke` takes.
    pub id: i64,
    /// The label it was created with, recorded as `uploaded_by`, `reported_by`, …
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when it stops working.
    pub expires_at: Option<String>,
    /// RFC 3339, when it was revoked.
    pub revoked_at: Option<String>,
    /// The token that created it.
    pub created_by: Option<String>,
    /// Whether it still works.
    pub state: TokenState,
}

/// A token that was just created, with its secret (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The stored token.
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret. Kiln cannot show it again.
    pub secret: String,
}

/// Whether a token still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// It authenticates.
    Active,
    /// Its expiry has passed.
    Expired,
    /// It was revoked.
    Revoked,
}

impl std::fmt::Display for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        })
    }
}

/// Body of `POST /+api/v1/tokens`: what to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Label, e.g. `ci-acme`.
    pub name: String,
    /// At least one scope.
    pub scopes: Vec<Scope>,
    /// RFC 3339 time or `YYYY-MM-DD` (midnight UTC) when it stops working.
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl CreateIndex {
    /// The request that creates `name` with `settings`.
    #[must_use]
    pub fn new(name: &IndexName, settings: &IndexSettings) -> Self {
        let mirror = settings.mirror.as_ref();
        Self {
            name: name.clone(),
            kind: Some(settings.kind),
            bases: settings.bases.clone(),
            volatile: settings.volatile,
            promotion_only: settings.promotion_only,
            private: settings.private,
            description: settings.description.clone(),
            branch: settings.branch.clone(),
            mirror_url: mirror.map(|m| m.url.clone()),
            mirror_username: mirror.and_then(|m| m.username.clone()),
            mirror_password: mirror.and_then(|m| m.password.clone()),
            mirror_ttl_seconds: mirror.map(|m| m.ttl_seconds),
            mirror_allow: settings.mirror_allow.clone(),
            mirror_file_origins: mirror.map(|m| m.file_origins.clone()).unwrap_or_default(),
        }
    }

    /// The settings it asks for: `stage` unless a mirror URL is given.
    #[must_use]
    pub fn settings(self) -> (IndexName, IndexSettings) {
        let kind = self.kind.unwrap_or(if self.mirror_url.is_some() {
            IndexKind::Mirror
        } else {
            IndexKind::Stage
        });
        let mirror = self.mirror_url.map(|url| MirrorSettings {
            url,
            username: self.mirror_username,
            password: self.mirror_password,
            ttl_seconds: self
                .mirror_ttl_seconds
                .unwrap_or(DEFAULT_MIRROR_TTL_SECONDS),
            file_origins: self.mirror_file_origins,
        });
        let settings = IndexSettings {
            kind,
            bases: self.bases,
            volatile: self.volatile,
            promotion_only: self.promotion_only,
            private: self.private,
            description: self.description,
            branch: self.branch,
            mirror,
            mirror_allow: self.mirror_allow,
        };
        (self.name, settings)
    }
}

/// Body of `POST /+api/v1/webhooks`: a subscription to make.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// The indexes it hears about: `*`, `namespace/*` or `namespace/name`.
    pub pattern: IndexPattern,
    /// Where deliveries are sent (`http` or `https`).
    pub url: String,
    /// What it hears about (at least one).
    pub events: Vec<WebhookEvent>,
    /// The HMAC key deliveries are signed with (16 to 256 characters); absent, the
    /// server makes one and answers it this once.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A subscription as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookView {
    /// What `kiln webhook remove` takes.
    pub id: i64,
    /// The indexes it hears about.
    pub pattern: IndexPattern,
    /// Where deliveries go.
    pub url: String,
    /// What it hears about.
    pub events: Vec<WebhookEvent>,
    /// The token that made it (`label#id`); it reads the delivery log, and deliveries
    /// stop when it is revoked or expires.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A subscription that was just made, with its secret (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedWebhook {
    /// The stored subscription.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret. Kiln does not show it again.
    pub secret: String,
}

/// One delivery in a subscription's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// Sent as `X-Kiln-Delivery`; a retry keeps it.
    pub id: i64,
    /// The subscription.
    pub webhook: i64,
    /// What it reports.
    pub event: WebhookEvent,
    /// The index it concerns.
    pub index: String,
    /// Pending (due or waiting to retry), delivered or failed (given up).
    pub state: DeliveryState,
    /// How many times it was sent.
    pub attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the event happened (RFC 3339).
    pub created_at: String,
    /// When it was delivered or given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// While pending: when the next attempt is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

/// The body of every webhook delivery (`Content-Type: application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// What happened (also in `X-Kiln-Event`).
    pub event: WebhookEvent,
    /// The index it happened on.
    pub index: String,
    /// The normalized project name.
    pub project: String,
    /// The version.
    pub version: String,
    /// The token (or `auto (<rule>)`) that acted.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// What the event carries: for `stage-result` the artifact (`sha256`, `filename`),
    /// `stage`, `outcome`, `run_id`, `commit`; for `build-ready` the `files` and
    /// `commit`; for `build-failed` the `builder`, `attempt`, `commit` and `error_tail`;
    /// for `promotion` the `policy`, `from` and `files`; for `promotion-refused` the
    /// `policy` and the `failed` checks; for `yank` `yanked`, `reason` and `files`.
    pub detail: serde_json::Value,
}
