//! Promotion policies: which releases may move from which index to which, read from
//! `policies/*.toml`.
//!
//! A policy file holds `[[promotion]]` rules. Each names a source index, a target index,
//! the stages that must be green, and version rules. Parsing is strict: an unknown key, a
//! bad index or stage name, or an empty stage list fails with the file, the line and the
//! reason, because a typo in a gate must never silently open it.
//!
//! Evaluation ([`PromotionRule::evaluate`]) is pure: given the release's version, the
//! versions the target already has, and the latest stage results of each file, it returns
//! every check with what was expected and what was found, so a refusal can list all of
//! them at once.
//!
//! Traps: "green" is the *latest* result of each stage per sha256 *on the source index* —
//! a re-run that fails turns a release red again, and a stage that reported red blocks the
//! release even when the rule does not require it (`all-reported-stages-green`); an
//! `error` (the stage could not run) blocks like a fail. Only files built under a lease
//! move by default (`built-only`), and sdists move only when a stage tested them
//! (`sdists = "if-tested"`). "Newer than the target" compares PEP 440 versions, never
//! strings (`1.10` > `1.9`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pep440_rs::Version;
use serde::Deserialize;

use crate::domain::IndexName;
use crate::domain::{ArtifactCheck, Check, IndexPattern, Outcome, check_stage_name};
use std::time::Duration;

/// The built-in policy, the same text as the repository's `policies/default.toml`.
pub const DEFAULT_POLICY: &str = include_str!("../policies/default.toml");

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct PolicyError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// What to do with sdists of a release being promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SdistRule {
    /// Promote an sdist only if a stage tested it and it is green like a wheel must be;
    /// leave an untested one behind (the release still moves with its wheels).
    #[default]
    IfTested,
    /// Promote them along untested (an explicit choice: production then lists files no
    /// stage installed).
    Promote,
    /// Refuse the release unless its sdists, too, are green in every required stage.
    RequireGreen,
    /// Leave them behind.
    Skip,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    promotion: Vec<toml::Spanned<RawRule>>,
    #[serde(default)]
    retention: Vec<toml::Spanned<RawRetention>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRetention {
    name: toml::Spanned<String>,
    #[serde(default)]
    indexes: Option<toml::Spanned<String>>,
    #[serde(default)]
    branch_idle_for: Option<toml::Spanned<String>>,
    #[serde(default)]
    keep_newest: Option<toml::Spanned<i64>>,
    #[serde(default)]
    keep_younger_than: Option<toml::Spanned<String>>,
}

/// One retention rule (`[[retention]]`): what garbage collection removes, through the
/// trash. Never production (promotion-only indexes), an index another inherits, a
/// release that was promoted, or anything a build in progress is using.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// A name shown in the trash and the events.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// The indexes it applies to (`*`, `namespace/*` or `namespace/name`).
    pub indexes: IndexPattern,
    /// Branch indexes (made by `kiln ensure`) with no upload, build claim or stage
    /// report for this long are removed.
    pub branch_idle_for: Option<Duration>,
    /// On each matching index, per project, the newest this many releases stay.
    pub keep_newest: Option<usize>,
    /// ... and so does every release uploaded less than this long ago.
    pub keep_younger_than: Option<Duration>,
}

#[expect(
    clippy::struct_excessive_bools,
    reason = "each flag is an independent policy switch, named as in the TOML"
)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRule {
    name: toml::Spanned<String>,
    from: toml::Spanned<String>,
    to: toml::Spanned<String>,
    required_stages: toml::Spanned<Vec<String>>,
    #[serde(default = "yes")]
    final_releases_only: bool,
    #[serde(default)]
    allow_local_versions: bool,
    #[serde(default = "yes")]
    newer_than_target: bool,
    #[serde(default = "yes")]
    all_wheels_green: bool,
    #[serde(default)]
    sdists: SdistRule,
    #[serde(default)]
    auto: bool,
    #[serde(default = "yes")]
    built_only: bool,
    #[serde(default = "yes")]
    all_reported_stages_green: bool,
    #[serde(default)]
    target_pythons: Option<toml::Spanned<Vec<String>>>,
    #[serde(default = "yes")]
    verified_only: bool,
}

fn yes() -> bool {
    true
}

/// One promotion rule.
#[expect(
    clippy::struct_excessive_bools,
    reason = "each flag is an independent policy switch, named as in the TOML"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRule {
    /// A name shown in audits and refusals.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// The source index.
    pub from: IndexName,
    /// The target index.
    pub to: IndexName,
    /// Stages whose latest result must be a pass.
    pub required_stages: Vec<String>,
    /// Refuse pre-releases and dev releases.
    pub final_releases_only: bool,
    /// Allow `+local` versions.
    pub allow_local_versions: bool,
    /// Refuse versions not strictly newer than every version on the target.
    pub newer_than_target: bool,
    /// Every wheel (not just one) must be green.
    pub all_wheels_green: bool,
    /// What happens to sdists.
    pub sdists: SdistRule,
    /// Promote as soon as the last required stage reports green.
    pub auto: bool,
    /// Only files uploaded under a completed build lease move (never hand uploads).
    pub built_only: bool,
    /// Every stage that reported for a file, required or not, must pass.
    pub all_reported_stages_green: bool,
    /// The Pythons the target serves, for the dependency check (empty: every
    /// environment).
    pub target_pythons: Vec<Version>,
    /// A pass counts only when the stage verified it tested the wheel.
    pub verified_only: bool,
}

/// Every rule of every policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    /// The promotion rules, in file then declaration order.
    pub rules: Vec<PromotionRule>,
    /// The retention rules, in file then declaration order.
    pub retention: Vec<RetentionRule>,
}

impl Policies {
    /// The built-in default policy.
    #[must_use]
    pub fn builtin() -> Self {
        Self::parse("<built-in default policy>", DEFAULT_POLICY)
            .expect("the built-in policy is valid (tested)")
    }

    /// Loads every `*.toml` in `dir`, in filename order.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let unreadable = |path: &Path, e: std::io::Error| PolicyError {
            file: path.display().to_string(),
            line: 0,
            reason: format!("cannot read: {e}"),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| unreadable(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut all = Self::default();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
            let parsed = Self::parse(&path.display().to_string(), &text)?;
            all.rules.extend(parsed.rules);
            all.retention.extend(parsed.retention);
        }
        let mut names = std::collections::HashSet::new();
        for rule in &all.rules {
            if !names.insert(rule.name.clone()) {
                return Err(PolicyError {
                    file: rule.file.clone(),
                    line: 0,
                    reason: format!("promotion rule name `{}` is used twice", rule.name),
                });
            }
        }
        let mut names = std::collections::HashSet::new();
        for rule in &all.retention {
            if !names.insert(rule.name.clone()) {
                return Err(PolicyError {
                    file: rule.file.clone(),
                    line: 0,
                    reason: format!("retention rule name `{}` is used twice", rule.name),
                });
            }
        }
        Ok(all)
    }

    /// Parses one policy file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let error = |span: Option<Range<usize>>, reason: String| PolicyError {
            file: file.to_owned(),
            line: span.map_or(0, |s| line_of(text, s.start)),
            reason,
        };
        let parsed: PolicyFile = toml::from_str(text).map_err(|e| {
            let reason = e.message().to_owned();
            error(e.span(), reason)
        })?;
        let mut rules = Vec::new();
        for spanned in parsed.promotion {
            let rule_span = spanned.span();
            let raw = spanned.into_inner();
            let index = |field: &toml::Spanned<String>, key: &str| {
                field
                    .get_ref()
                    .parse::<IndexName>()
                    .map_err(|e| error(Some(field.span()), format!("`{key}`: {e}")))
            };
            let from = index(&raw.from, "from")?;
            let to = index(&raw.to, "to")?;
            if from == to {
                return Err(error(
                    Some(raw.to.span()),
                    format!("`from` and `to` are both `{from}`"),
                ));
            }
            let stages = raw.required_stages.get_ref();
            if stages.is_empty() {
                return Err(error(
                    Some(raw.required_stages.span()),
                    "`required-stages` is empty: a promotion needs at least one green stage".into(),
                ));
            }
            for stage in stages {
                check_stage_name(stage).map_err(|e| error(Some(raw.required_stages.span()), e))?;
            }
            let name = raw.name.get_ref().trim().to_owned();
            if name.is_empty() {
                return Err(error(Some(rule_span), "`name` is empty".into()));
            }
            if raw.auto && !raw.built_only {
                return Err(error(
                    Some(rule_span),
                    "`auto = true` needs `built-only = true`: automatic promotion never promotes a file without build provenance; promote hand uploads with `kiln promote` under a rule without `auto`".into(),
                ));
            }
            let target_pythons = match &raw.target_pythons {
                None => Vec::new(),
                Some(list) => list
                    .get_ref()
                    .iter()
                    .map(|text| {
                        text.parse::<Version>().map_err(|e| {
                            error(
                                Some(list.span()),
                                format!("`target-pythons`: `{text}` is not a version: {e}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            rules.push(PromotionRule {
                name,
                file: file.to_owned(),
                from,
                to,
                required_stages: stages.clone(),
                final_releases_only: raw.final_releases_only,
                allow_local_versions: raw.allow_local_versions,
                newer_than_target: raw.newer_than_target,
                all_wheels_green: raw.all_wheels_green,
                sdists: raw.sdists,
                auto: raw.auto,
                built_only: raw.built_only,
                all_reported_stages_green: raw.all_reported_stages_green,
                target_pythons,
                verified_only: raw.verified_only,
            });
        }
        let retention = parsed
            .retention
            .into_iter()
            .map(|raw| retention_rule(file, raw, &error))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules, retention })
    }
}

fn retention_rule(
    file: &str,
    spanned: toml::Spanned<RawRetention>,
    error: &dyn Fn(Option<Range<usize>>, String) -> PolicyError,
) -> Result<RetentionRule, PolicyError> {
    let rule_span = spanned.span();
    let raw = spanned.into_inner();
    let name = raw.name.get_ref().trim().to_owned();
    if name.is_empty() {
        return Err(error(Some(raw.name.span()), "`name` is empty".into()));
    }
    let indexes = match &raw.indexes {
        None => IndexPattern::Any,
        Some(text) => text
            .get_ref()
            .parse()
            .map_err(|e| error(Some(text.span()), format!("`indexes`: {e}")))?,
    };
    let duration = |field: &Option<toml::Spanned<String>>, key: &str| {
        field
            .as_ref()
            .map(|text| {
                crate::config::parse_duration(text.get_ref())
                    .map_err(|e| error(Some(text.span()), format!("`{key}`: {e}")))
            })
            .transpose()
    };
    let branch_idle_for = duration(&raw.branch_idle_for, "branch-idle-for")?;
    let keep_younger_than = duration(&raw.keep_younger_than, "keep-younger-than")?;
    let keep_newest = raw
        .keep_newest
        .as_ref()
        .map(|n| {
            usize::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    error(
                        Some(n.span()),
                        "`keep-newest` must be at least 1 (remove a whole index with `branch-idle-for` or `kiln branch gone`)".into(),
                    )
                })
        })
        .transpose()?;
    if keep_younger_than.is_some() && keep_newest.is_none() {
        return Err(error(
            Some(rule_span.clone()),
            "`keep-younger-than` only keeps releases `keep-newest` would remove: set `keep-newest` too".into(),
        ));
    }
    if branch_idle_for.is_none() && keep_newest.is_none() {
        return Err(error(
            Some(rule_span),
            "a retention rule needs `branch-idle-for` (remove idle branch indexes) or `keep-newest` (remove old releases), or both".into(),
        ));
    }
    Ok(RetentionRule {
        name,
        file: file.to_owned(),
        indexes,
        branch_idle_for,
        keep_newest,
        keep_younger_than,
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The latest result of one stage on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageVerdict {
    /// Pass, fail or error.
    pub outcome: Outcome,
    /// Why an `error` stage could not run.
    pub cause: Option<String>,
    /// Whether the stage proved it tested the wheel (`None`: nothing checked).
    pub artifact: Option<ArtifactCheck>,
}

impl StageVerdict {
    /// True for a pass that counts: verified, unless the rule accepts unverified passes.
    fn green(&self, verified_only: bool) -> bool {
        self.outcome == Outcome::Pass
            && (!verified_only
                || self
                    .artifact
                    .as_ref()
                    .is_some_and(ArtifactCheck::is_verified))
    }

    fn found(&self, sha256: &str) -> String {
        match self.outcome {
            Outcome::Pass => match &self.artifact {
                Some(ArtifactCheck::Verified) => "pass (verified: it tested the wheel)".to_owned(),
                Some(ArtifactCheck::Unverified(reason)) => {
                    format!("pass, but unverified: {reason}")
                }
                None => "pass, but unverified: nothing checked that the stage tested the wheel (reported with `kiln report`?)".to_owned(),
            },
            Outcome::Fail => format!("fail (latest result; log tail at /+api/v1/results/{sha256})"),
            Outcome::Error => format!(
                "error: the stage could not run ({}); fix the runner and re-run the stage",
                self.cause.as_deref().unwrap_or("no cause given")
            ),
        }
    }
}

/// A file of the release being promoted, with its latest stage verdicts on the source.
#[derive(Debug, Clone)]
pub struct CandidateFile {
    /// The filename.
    pub filename: String,
    /// Its sha256 (a refusal links to its results).
    pub sha256: String,
    /// True for wheels.
    pub is_wheel: bool,
    /// The latest verdict of each stage reported for its sha256 on the source index.
    pub latest: BTreeMap<String, StageVerdict>,
    /// The commit of the completed build lease it was uploaded under; `None` for a file
    /// uploaded by hand (or whose build is not complete).
    pub built_from: Option<String>,
}

/// What a rule says about a release: every check, and which files would move.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Every check, passed or not, in a stable order.
    pub checks: Vec<Check>,
    /// Indexes (into the candidate files) of the files that would be listed on the target.
    pub moving: Vec<usize>,
}

impl PromotionRule {
    /// Every check of this rule against a release: its version, the versions the target
    /// already lists, and its files.
    #[must_use]
    pub fn evaluate(
        &self,
        version: &Version,
        target_versions: &[Version],
        files: &[CandidateFile],
    ) -> Evaluation {
        let mut checks = Vec::new();
        let mut check = |rule: String, passed: bool, expected: String, found: String| {
            checks.push(Check {
                rule,
                passed,
                expected,
                found,
            });
        };
        if self.final_releases_only {
            let pre = version.is_pre() || version.is_dev();
            check(
                "final release".into(),
                !pre,
                "a final release (no a/b/rc/dev part)".into(),
                format!("`{version}`"),
            );
        }
        if !self.allow_local_versions {
            check(
                "no local version".into(),
                version.local().is_empty(),
                "no `+local` part".into(),
                format!("`{version}`"),
            );
        }
        if self.newer_than_target {
            let newest = target_versions.iter().max();
            check(
                format!("newer than `{}`", self.to),
                newest.is_none_or(|n| version > n),
                format!("a version above `{}`'s newest", self.to),
                newest.map_or_else(
                    || format!("`{version}`; `{}` has no release yet", self.to),
                    |n| format!("`{version}`, and `{}` already has `{n}`", self.to),
                ),
            );
        }
        let wheels: Vec<&CandidateFile> = files.iter().filter(|f| f.is_wheel).collect();
        check(
            "has a wheel".into(),
            !wheels.is_empty(),
            "at least one wheel".into(),
            format!("{} wheel(s)", wheels.len()),
        );
        let (moving, left_behind) = self.moving(files);
        checks.extend(left_behind);
        if self.built_only {
            checks.extend(moving.iter().map(|&position| built_check(&files[position])));
        }
        let gated: Vec<&CandidateFile> = files
            .iter()
            .filter(|f| f.is_wheel || self.sdists == SdistRule::RequireGreen)
            .collect();
        checks.extend(self.stage_checks(&gated));
        Evaluation { checks, moving }
    }

    fn green(&self, file: &CandidateFile, stage: &str) -> bool {
        file.latest
            .get(stage)
            .is_some_and(|v| v.green(self.verified_only))
    }

    /// Which files move (positions), and a note for each sdist left behind.
    fn moving(&self, files: &[CandidateFile]) -> (Vec<usize>, Vec<Check>) {
        let mut moving = Vec::new();
        let mut notes = Vec::new();
        for (position, file) in files.iter().enumerate() {
            let tested = || {
                self.required_stages
                    .iter()
                    .all(|stage| self.green(file, stage))
                    && (!self.all_reported_stages_green
                        || file.latest.values().all(|v| v.green(self.verified_only)))
                    && (!self.built_only || file.built_from.is_some())
            };
            let moves = file.is_wheel
                || match self.sdists {
                    SdistRule::Skip => false,
                    SdistRule::Promote | SdistRule::RequireGreen => true,
                    SdistRule::IfTested => tested(),
                };
            if moves {
                moving.push(position);
            } else if self.sdists == SdistRule::IfTested {
                notes.push(Check {
                    rule: format!("sdist `{}` left behind", file.filename),
                    passed: true,
                    expected:
                        "an sdist moves only when every required stage installed it and passed"
                            .into(),
                    found: if file.latest.is_empty() {
                        "no stage reported for it; the release moves with its wheels".into()
                    } else {
                        "not green in every stage; the release moves with its wheels".into()
                    },
                });
            }
        }
        (moving, notes)
    }

    /// The required stages of every gated file (or of some wheel, when not every wheel
    /// must be green), then every other stage that reported: listed always, blocking
    /// when red unless the rule opts out.
    fn stage_checks(&self, gated: &[&CandidateFile]) -> Vec<Check> {
        let mut checks = Vec::new();
        if self.all_wheels_green || gated.len() <= 1 {
            for file in gated {
                for stage in &self.required_stages {
                    checks.push(Check {
                        rule: format!("stage `{stage}` green for `{}`", file.filename),
                        passed: self.green(file, stage),
                        expected: "pass".into(),
                        found: file
                            .latest
                            .get(stage)
                            .map_or_else(|| "no result".to_owned(), |v| v.found(&file.sha256)),
                    });
                }
            }
        } else {
            for stage in &self.required_stages {
                let any = gated.iter().any(|f| self.green(f, stage));
                checks.push(Check {
                    rule: format!("stage `{stage}` green for some wheel"),
                    passed: any,
                    expected: "pass on at least one wheel".into(),
                    found: if any { "pass" } else { "no passing wheel" }.into(),
                });
            }
        }
        for file in gated {
            for (stage, verdict) in &file.latest {
                if self.required_stages.contains(stage) {
                    continue;
                }
                checks.push(Check {
                    rule: format!(
                        "stage `{stage}` (reported, not required) green for `{}`",
                        file.filename
                    ),
                    passed: verdict.green(self.verified_only) || !self.all_reported_stages_green,
                    expected: if self.all_reported_stages_green {
                        "pass: every stage that reported must pass".into()
                    } else {
                        "anything (`all-reported-stages-green = false`)".into()
                    },
                    found: verdict.found(&file.sha256),
                });
            }
        }
        checks
    }
}

/// The provenance check of a file that would move.
fn built_check(file: &CandidateFile) -> Check {
    Check {
        rule: format!("`{}` built under a lease", file.filename),
        passed: file.built_from.is_some(),
        expected: "uploaded under a completed build lease (`kiln ensure`), with provenance".into(),
        found: file.built_from.as_ref().map_or_else(
            || "uploaded without a build lease (by hand), so nothing says what source it was built from; rebuild it with `kiln ensure`, or promote it under a rule with `built-only = false`".into(),
            |commit| format!("built from commit {commit}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn rule() -> PromotionRule {
        Policies::builtin().rules[0].clone()
    }

    fn v(text: &str) -> Version {
        Version::from_str(text).unwrap()
    }

    fn wheel(results: &[(&str, Outcome)]) -> CandidateFile {
        CandidateFile {
            filename: "demo-1.4.63-py3-none-any.whl".into(),
            sha256: "ab".repeat(32),
            is_wheel: true,
            latest: results
                .iter()
                .map(|(s, o)| {
                    let cause =
                        (*o == Outcome::Error).then(|| "command `tox` not found".to_owned());
                    let verdict = StageVerdict {
                        outcome: *o,
                        cause,
                        artifact: Some(ArtifactCheck::Verified),
                    };
                    ((*s).to_owned(), verdict)
                })
                .collect(),
            built_from: Some("abcdef1".into()),
        }
    }

    fn sdist(results: &[(&str, Outcome)]) -> CandidateFile {
        CandidateFile {
            filename: "demo-1.4.63.tar.gz".into(),
            is_wheel: false,
            ..wheel(results)
        }
    }

    fn failing(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.rule.clone())
            .collect()
    }

    #[test]
    fn the_builtin_policy_is_master_to_prod_on_unit() {
        let rule = rule();
        assert_eq!(
            (rule.from.to_string(), rule.to.to_string()),
            ("root/master".into(), "root/prod".into())
        );
        assert_eq!(rule.required_stages, ["unit"]);
        assert!(rule.final_releases_only && rule.newer_than_target && !rule.auto);
    }

    #[test]
    fn green_new_final_releases_pass() {
        let checks = rule()
            .evaluate(
                &v("1.4.63"),
                &[v("1.4.9")],
                &[wheel(&[("unit", Outcome::Pass)])],
            )
            .checks;
        assert!(failing(&checks).is_empty(), "{checks:?}");
    }

    #[test]
    fn every_failing_rule_is_reported() {
        let checks = rule()
            .evaluate(
                &v("1.4.dev3+local"),
                &[v("1.10")],
                &[wheel(&[("unit", Outcome::Fail)])],
            )
            .checks;
        assert_eq!(
            failing(&checks),
            [
                "final release",
                "no local version",
                "newer than `root/prod`",
                "stage `unit` green for `demo-1.4.63-py3-none-any.whl`"
            ]
        );
        let missing = rule().evaluate(&v("2.0"), &[], &[wheel(&[])]).checks;
        let check = missing.iter().find(|c| !c.passed).unwrap();
        assert_eq!(check.found, "no result");
        let no_wheel = rule().evaluate(&v("2.0"), &[], &[]).checks;
        assert_eq!(failing(&no_wheel), ["has a wheel"]);
    }

    #[test]
    fn a_red_stage_blocks_even_when_not_required() {
        let file = wheel(&[("unit", Outcome::Pass), ("static", Outcome::Fail)]);
        let checks = rule()
            .evaluate(&v("2.0"), &[], std::slice::from_ref(&file))
            .checks;
        assert_eq!(
            failing(&checks),
            ["stage `static` (reported, not required) green for `demo-1.4.63-py3-none-any.whl`"]
        );
        let lenient = PromotionRule {
            all_reported_stages_green: false,
            ..rule()
        };
        let listed = lenient.evaluate(&v("2.0"), &[], &[file]).checks;
        assert!(failing(&listed).is_empty(), "{listed:?}");
        assert!(
            listed.iter().any(|c| c.rule.contains("`static`")),
            "the dry run still lists every stage that reported: {listed:?}"
        );
    }

    #[test]
    fn an_error_blocks_and_says_it_could_not_run() {
        let checks = rule()
            .evaluate(&v("2.0"), &[], &[wheel(&[("unit", Outcome::Error)])])
            .checks;
        let check = checks.iter().find(|c| !c.passed).unwrap();
        assert!(
            check
                .found
                .starts_with("error: the stage could not run (command `tox` not found)"),
            "{check:?}"
        );
    }

    #[test]
    fn hand_uploads_do_not_move_unless_allowed() {
        let hand = CandidateFile {
            built_from: None,
            ..wheel(&[("unit", Outcome::Pass)])
        };
        let checks = rule()
            .evaluate(&v("2.0"), &[], std::slice::from_ref(&hand))
            .checks;
        assert_eq!(
            failing(&checks),
            ["`demo-1.4.63-py3-none-any.whl` built under a lease"]
        );
        let allowed = PromotionRule {
            built_only: false,
            ..rule()
        };
        assert!(failing(&allowed.evaluate(&v("2.0"), &[], &[hand]).checks).is_empty());
        let auto_hand = DEFAULT_POLICY
            .replace("auto = false", "auto = true")
            .replace("built-only = true", "built-only = false");
        let err = Policies::parse("p.toml", &auto_hand).unwrap_err();
        assert!(
            err.reason.contains("automatic promotion never promotes"),
            "{err}"
        );
    }

    #[test]
    fn untested_sdists_are_left_behind() {
        let files = [wheel(&[("unit", Outcome::Pass)]), sdist(&[])];
        let evaluation = rule().evaluate(&v("2.0"), &[], &files);
        assert!(
            failing(&evaluation.checks).is_empty(),
            "{:?}",
            evaluation.checks
        );
        assert_eq!(evaluation.moving, [0]);
        assert!(
            evaluation
                .checks
                .iter()
                .any(|c| c.rule == "sdist `demo-1.4.63.tar.gz` left behind")
        );
        let tested = [
            wheel(&[("unit", Outcome::Pass)]),
            sdist(&[("unit", Outcome::Pass)]),
        ];
        assert_eq!(rule().evaluate(&v("2.0"), &[], &tested).moving, [0, 1]);
    }

    #[test]
    fn retention_rules_parse_with_their_defaults() {
        let text = "[[retention]]\nname = \"branches\"\nindexes = \"acme/*\"\nbranch-idle-for = \"30d\"\nkeep-newest = 20\nkeep-younger-than = \"14d\"\n\n[[retention]]\nname = \"all\"\nkeep-newest = 3\n";
        let policies = Policies::parse("r.toml", text).unwrap();
        assert!(policies.rules.is_empty());
        let day = Duration::from_secs(86_400);
        assert_eq!(
            policies.retention[0],
            RetentionRule {
                name: "branches".into(),
                file: "r.toml".into(),
                indexes: "acme/*".parse().unwrap(),
                branch_idle_for: Some(30 * day),
                keep_newest: Some(20),
                keep_younger_than: Some(14 * day),
            }
        );
        assert_eq!(policies.retention[1].indexes, IndexPattern::Any);
        assert_eq!(policies.retention[1].branch_idle_for, None);
    }

    #[test]
    fn policy_mistakes_name_file_line_and_reason() {
        let cases = [
            (
                "[[promotion]]\nname = \"a\"\nfrom = \"root/master\"\nto = \"root/prod\"\nrequired-stages = [\"unit\"]\nauto = \"yes\"\n",
                6,
                "invalid type",
            ),
            (
                "[[promotion]]\nname = \"a\"\nfrom = \"root/master\"\nto = \"Root/Prod\"\nrequired-stages = [\"unit\"]\n",
                4,
                "`to`",
            ),
            (
                "[[promotion]]\nname = \"a\"\nfrom = \"root/master\"\nto = \"root/prod\"\nrequired-stages = []\n",
                5,
                "is empty",
            ),
            (
                "[[promotion]]\nname = \"a\"\nfrom = \"root/master\"\nto = \"root/prod\"\nrequired-stages = [\"unit\"]\nrequired-stage = [\"x\"]\n",
                6,
                "unknown field `required-stage`",
            ),
            (
                "[[promotion]]\nname = \"a\"\nfrom = \"root/master\"\nto = \"root/master\"\nrequired-stages = [\"unit\"]\n",
                4,
                "both",
            ),
            (
                "[[promotion]]\nname = \"a\"\nfrom = \"root/master\"\nto = \"root/prod\"\nrequired-stages = [\"unit\"]\ntarget-pythons = [\"three\"]\n",
                6,
                "`target-pythons`: `three` is not a version",
            ),
            ("[[promotion]\n", 1, ""),
            (
                "[[retention]]\nname = \"r\"\nkeep-newest = 0\n",
                3,
                "at least 1",
            ),
            (
                "[[retention]]\nname = \"r\"\nbranch-idle-for = \"30 days\"\n",
                3,
                "`branch-idle-for`",
            ),
            (
                "[[retention]]\nname = \"r\"\nindexes = \"Acme/*\"\nkeep-newest = 5\n",
                3,
                "`indexes`",
            ),
            (
                "[[retention]]\nname = \"r\"\n",
                1,
                "needs `branch-idle-for`",
            ),
            (
                "[[retention]]\nname = \"r\"\nkeep-younger-than = \"7d\"\n",
                1,
                "set `keep-newest` too",
            ),
        ];
        for (text, line, reason) in cases {
            let err = Policies::parse("p.toml", text).unwrap_err();
            assert_eq!((err.file.as_str(), err.line), ("p.toml", line), "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn directories_load_in_order_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            DEFAULT_POLICY.replace("master-to-prod", "b"),
        )
        .unwrap();
        std::fs::write(dir.path().join("a.toml"), DEFAULT_POLICY).unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let loaded = Policies::load_dir(dir.path()).unwrap();
        assert_eq!(
            loaded
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["master-to-prod", "b"]
        );
        std::fs::write(dir.path().join("c.toml"), DEFAULT_POLICY).unwrap();
        let err = Policies::load_dir(dir.path()).unwrap_err();
        assert!(err.reason.contains("used twice"), "{err}");
    }
}
