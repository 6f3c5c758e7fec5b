//! Which CI system runs us, and the branch, build number and run it reports.
//!
//! Each provider is recognised by its own marker variable, then read from its documented
//! variables. The build number must be the same for every stage of one pipeline run (it is
//! half of the version every stage computes), so per-job counters are never used.
//!
//! Traps:
//! - GitLab and Woodpecker both export `CI_COMMIT_BRANCH`; only the marker (`GITLAB_CI`,
//!   `CI=woodpecker`) tells them apart, so markers are checked first.
//! - On a pull/merge request the checked-out ref is a merge ref; the *source* branch is
//!   the one whose index should hold the build.
//! - CircleCI's `CIRCLE_BUILD_NUM` is per job: parallel jobs of one workflow would each
//!   compute a different version and each build. The pipeline number is only available
//!   as `<< pipeline.number >>`, so it must be exported as `CIRCLE_PIPELINE_NUMBER`.
//! - Azure's `BUILD_SOURCEBRANCHNAME` is only the last path segment (`feature/x` → `x`);
//!   `BUILD_SOURCEBRANCH` minus `refs/heads/` is the branch.

use std::fmt;

use super::SourceCommit;

/// A CI system Kiln recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiProvider {
    /// GitHub Actions.
    GithubActions,
    /// GitLab CI.
    GitlabCi,
    /// Jenkins.
    Jenkins,
    /// Buildkite.
    Buildkite,
    /// CircleCI.
    CircleCi,
    /// Azure Pipelines.
    AzurePipelines,
    /// Bitbucket Pipelines.
    BitbucketPipelines,
    /// Woodpecker CI.
    Woodpecker,
    /// Drone CI.
    Drone,
    /// Atlassian Bamboo.
    Bamboo,
    /// `TeamCity` (`JetBrains`).
    TeamCity,
    /// Travis CI.
    Travis,
    /// `AppVeyor`.
    AppVeyor,
    /// Semaphore.
    Semaphore,
}

impl CiProvider {
    /// A short, stable identifier (`github-actions`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GithubActions => "github-actions",
            Self::GitlabCi => "gitlab-ci",
            Self::Jenkins => "jenkins",
            Self::Buildkite => "buildkite",
            Self::CircleCi => "circleci",
            Self::AzurePipelines => "azure-pipelines",
            Self::BitbucketPipelines => "bitbucket-pipelines",
            Self::Woodpecker => "woodpecker",
            Self::Drone => "drone",
            Self::Bamboo => "bamboo",
            Self::TeamCity => "teamcity",
            Self::Travis => "travis-ci",
            Self::AppVeyor => "appveyor",
            Self::Semaphore => "semaphore",
        }
    }
}

impl fmt::Display for CiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the CI environment says about this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiContext {
    /// The provider, if one was recognised.
    pub provider: Option<CiProvider>,
    /// The git branch being built.
    pub branch: String,
    /// The pipeline's build number (the same in every stage of one run).
    pub build_number: u64,
    /// Identifies this job's run, so a re-run replaces its own result only.
    pub run_id: String,
    /// A link to the run, if the provider gives one.
    pub run_url: Option<String>,
    /// The runner or agent name, if given.
    pub runner: Option<String>,
    /// The commit being built, from `--commit`/`KILN_COMMIT` or the provider (`None`:
    /// the hook asks git).
    pub commit: Option<SourceCommit>,
    /// Which attempt of the run this is (re-runs count up), if the provider says.
    pub attempt: Option<u32>,
}

/// Values given on the command line, which win over the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--branch`.
    pub branch: Option<String>,
    /// `--build-number`.
    pub build_number: Option<String>,
    /// `--run-id`.
    pub run_id: Option<String>,
    /// `--commit`.
    pub commit: Option<String>,
}

/// Why the context could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiContextError {
    /// No branch anywhere; says which provider was recognised and what it missed.
    #[error("cannot tell which branch this is: {0}; pass --branch or set KILN_BRANCH")]
    NoBranch(String),
    /// No build number anywhere; says which provider was recognised and what it missed.
    #[error("cannot tell the build number: {0}; pass --build-number or set KILN_BUILD_NUMBER")]
    NoBuildNumber(String),
    /// A build number that is not a whole number.
    #[error("build number `{value}` (from {source_name}) is not a whole number")]
    BadBuildNumber {
        /// The offending value.
        value: String,
        /// Where it came from.
        source_name: String,
    },
    /// A provider-specific gap, explained.
    #[error("{0}")]
    Provider(String),
    /// A commit given by hand that is not one.
    #[error("{source_name}: {reason}")]
    BadCommit {
        /// Where it came from.
        source_name: String,
        /// Why it is not a commit.
        reason: String,
    },
}

/// Every variable consulted, for error messages.
const LOOKED_FOR: &str = "GITHUB_HEAD_REF/GITHUB_REF_NAME/GITHUB_RUN_NUMBER, CI_COMMIT_BRANCH/CI_MERGE_REQUEST_SOURCE_BRANCH_NAME/CI_COMMIT_REF_NAME/CI_PIPELINE_IID (GitLab), BRANCH_NAME/GIT_BRANCH/BUILD_NUMBER (Jenkins), BUILDKITE_BRANCH/BUILDKITE_BUILD_NUMBER, CIRCLE_BRANCH/CIRCLE_PIPELINE_NUMBER, BUILD_SOURCEBRANCH/BUILD_BUILDID (Azure), BITBUCKET_BRANCH/BITBUCKET_BUILD_NUMBER, CI_COMMIT_BRANCH/CI_PIPELINE_NUMBER (Woodpecker), DRONE_BRANCH/DRONE_BUILD_NUMBER, bamboo_planRepository_branchName/bamboo_buildNumber (Bamboo), BUILD_NUMBER (TeamCity), TRAVIS_BRANCH/TRAVIS_BUILD_NUMBER, APPVEYOR_REPO_BRANCH/APPVEYOR_BUILD_NUMBER, SEMAPHORE_GIT_BRANCH/SEMAPHORE_WORKFLOW_NUMBER";

/// What a missing value's error says: the provider recognised and the variables it read,
/// or every provider's variables when none was recognised.
fn missing(provider: Option<CiProvider>, vars: &str) -> String {
    match provider {
        Some(p) => format!("{p} was recognised, but none of {vars} is set"),
        None => format!("no CI provider variables found (looked for {LOOKED_FOR})"),
    }
}

/// What one provider's variables say, before overrides.
#[derive(Debug, Default)]
struct Found {
    branch: Option<String>,
    build_number: Option<(String, &'static str)>,
    run_id: Option<String>,
    run_url: Option<String>,
    runner: Option<String>,
    commit: Option<String>,
    attempt: Option<String>,
    /// The variables the branch was read from, for errors.
    branch_vars: &'static str,
    /// The variables the build number was read from, for errors.
    number_vars: &'static str,
}

/// Reads the context from an environment lookup (`std::env::var` in real use), with
/// command-line overrides winning.
pub fn detect(
    env: impl Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<CiContext, CiContextError> {
    let get = |key: &str| {
        env(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let provider = recognise(&get);
    let found = match provider {
        Some(p) => read_provider(p, &get)?,
        None => Found::default(),
    };
    let branch = overrides
        .branch
        .clone()
        .or_else(|| get("KILN_BRANCH"))
        .or(found.branch)
        .ok_or_else(|| CiContextError::NoBranch(missing(provider, found.branch_vars)))?;
    let (number_text, number_source) = match (&overrides.build_number, get("KILN_BUILD_NUMBER")) {
        (Some(n), _) => (n.clone(), "--build-number"),
        (None, Some(n)) => (n, "KILN_BUILD_NUMBER"),
        (None, None) => found
            .build_number
            .ok_or_else(|| CiContextError::NoBuildNumber(missing(provider, found.number_vars)))?,
    };
    let build_number = number_text
        .parse::<u64>()
        .map_err(|_| CiContextError::BadBuildNumber {
            value: number_text.clone(),
            source_name: number_source.into(),
        })?;
    let run_id = overrides
        .run_id
        .clone()
        .or_else(|| get("KILN_RUN_ID"))
        .or(found.run_id)
        .unwrap_or_else(|| format!("local-{build_number}"));
    let commit = match (&overrides.commit, get("KILN_COMMIT")) {
        (Some(text), _) => Some(given_commit(text, "--commit")?),
        (None, Some(text)) => Some(given_commit(&text, "KILN_COMMIT")?),
        // A provider value that is not a commit id (Buildkite may say `HEAD`) is left
        // to git.
        (None, None) => found.commit.and_then(|c| c.parse().ok()),
    };
    Ok(CiContext {
        provider,
        branch,
        build_number,
        run_id,
        run_url: found.run_url,
        runner: found.runner,
        commit,
        attempt: found.attempt.and_then(|a| a.parse().ok()),
    })
}

fn given_commit(text: &str, source_name: &str) -> Result<SourceCommit, CiContextError> {
    text.parse().map_err(|reason| CiContextError::BadCommit {
        source_name: source_name.into(),
        reason,
    })
}

fn recognise(get: &impl Fn(&str) -> Option<String>) -> Option<CiProvider> {
    let is = |key: &str, value: &str| get(key).is_some_and(|v| v.eq_ignore_ascii_case(value));
    if is("GITHUB_ACTIONS", "true") {
        Some(CiProvider::GithubActions)
    } else if is("GITLAB_CI", "true") {
        Some(CiProvider::GitlabCi)
    } else if is("BUILDKITE", "true") {
        Some(CiProvider::Buildkite)
    } else if is("CIRCLECI", "true") {
        Some(CiProvider::CircleCi)
    } else if is("TF_BUILD", "true") {
        Some(CiProvider::AzurePipelines)
    } else if get("BITBUCKET_BUILD_NUMBER").is_some() {
        Some(CiProvider::BitbucketPipelines)
    } else if is("CI", "woodpecker") {
        Some(CiProvider::Woodpecker)
    } else if is("DRONE", "true") {
        Some(CiProvider::Drone)
    } else if get("bamboo_buildKey").is_some() || get("bamboo_buildNumber").is_some() {
        Some(CiProvider::Bamboo)
    } else if get("TEAMCITY_VERSION").is_some() {
        Some(CiProvider::TeamCity)
    } else if is("TRAVIS", "true") {
        Some(CiProvider::Travis)
    } else if is("APPVEYOR", "true") {
        Some(CiProvider::AppVeyor)
    } else if is("SEMAPHORE", "true") {
        Some(CiProvider::Semaphore)
    } else if get("JENKINS_URL").is_some() || get("JENKINS_HOME").is_some() {
        Some(CiProvider::Jenkins)
    } else {
        None
    }
}

fn joined(parts: &[Option<String>], sep: &str) -> Option<String> {
    let present: Vec<&str> = parts.iter().flatten().map(String::as_str).collect();
    (!present.is_empty()).then(|| present.join(sep))
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per provider, each a flat table of its variables"
)]
fn read_provider(
    provider: CiProvider,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Found, CiContextError> {
    let number = |key: &'static str| get(key).map(|n| (n, key));
    Ok(match provider {
        CiProvider::GithubActions => Found {
            // GITHUB_HEAD_REF is set only on pull requests: the source branch.
            branch: get("GITHUB_HEAD_REF").or_else(|| match get("GITHUB_REF_TYPE").as_deref() {
                Some("tag") => None,
                _ => get("GITHUB_REF_NAME"),
            }),
            build_number: number("GITHUB_RUN_NUMBER"),
            run_id: joined(
                &[
                    get("GITHUB_RUN_ID"),
                    get("GITHUB_RUN_ATTEMPT"),
                    get("GITHUB_JOB"),
                ],
                "-",
            ),
            run_url: match (
                get("GITHUB_SERVER_URL"),
                get("GITHUB_REPOSITORY"),
                get("GITHUB_RUN_ID"),
            ) {
                (Some(server), Some(repo), Some(run)) => {
                    Some(format!("{server}/{repo}/actions/runs/{run}"))
                }
                _ => None,
            },
            runner: get("RUNNER_NAME"),
            commit: get("GITHUB_SHA"),
            attempt: get("GITHUB_RUN_ATTEMPT"),
            branch_vars: "GITHUB_HEAD_REF, GITHUB_REF_NAME (a tag has no branch)",
            number_vars: "GITHUB_RUN_NUMBER",
        },
        CiProvider::GitlabCi => Found {
            // A tag pipeline has no CI_COMMIT_BRANCH; CI_COMMIT_REF_NAME is then the tag.
            branch: get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
                .or_else(|| get("CI_COMMIT_BRANCH"))
                .or_else(|| get("CI_COMMIT_REF_NAME")),
            build_number: number("CI_PIPELINE_IID"),
            run_id: joined(&[get("CI_PIPELINE_ID"), get("CI_JOB_ID")], "-"),
            run_url: get("CI_JOB_URL").or_else(|| get("CI_PIPELINE_URL")),
            runner: get("CI_RUNNER_DESCRIPTION"),
            commit: get("CI_COMMIT_SHA"),
            attempt: None,
            branch_vars: "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME, CI_COMMIT_BRANCH, CI_COMMIT_REF_NAME",
            number_vars: "CI_PIPELINE_IID",
        },
        CiProvider::Jenkins => Found {
            // Multibranch pipelines set BRANCH_NAME; the git plugin sets GIT_BRANCH as
            // `origin/<branch>`.
            branch: get("BRANCH_NAME").or_else(|| {
                get("GIT_BRANCH").map(|b| b.strip_prefix("origin/").unwrap_or(&b).to_owned())
            }),
            build_number: number("BUILD_NUMBER"),
            run_id: get("BUILD_TAG"),
            run_url: get("BUILD_URL"),
            runner: get("NODE_NAME"),
            commit: get("GIT_COMMIT"),
            attempt: None,
            branch_vars: "BRANCH_NAME, GIT_BRANCH",
            number_vars: "BUILD_NUMBER",
        },
        CiProvider::Buildkite => Found {
            branch: get("BUILDKITE_BRANCH"),
            build_number: number("BUILDKITE_BUILD_NUMBER"),
            run_id: joined(&[get("BUILDKITE_BUILD_ID"), get("BUILDKITE_JOB_ID")], "-"),
            run_url: get("BUILDKITE_BUILD_URL"),
            runner: get("BUILDKITE_AGENT_NAME"),
            commit: get("BUILDKITE_COMMIT"),
            attempt: get("BUILDKITE_RETRY_COUNT")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| (n + 1).to_string()),
            branch_vars: "BUILDKITE_BRANCH",
            number_vars: "BUILDKITE_BUILD_NUMBER",
        },
        CiProvider::CircleCi => {
            if get("CIRCLE_PIPELINE_NUMBER").is_none()
                && get("KILN_BUILD_NUMBER").is_none()
                && get("CIRCLE_BUILD_NUM").is_some()
            {
                return Err(CiContextError::Provider(
                    "CircleCI: CIRCLE_BUILD_NUM differs per job, so parallel jobs would each build; export the pipeline number with `environment: { CIRCLE_PIPELINE_NUMBER: << pipeline.number >> }` or pass --build-number".into(),
                ));
            }
            Found {
                branch: get("CIRCLE_BRANCH"),
                build_number: number("CIRCLE_PIPELINE_NUMBER"),
                run_id: joined(
                    &[
                        get("CIRCLE_WORKFLOW_ID"),
                        get("CIRCLE_JOB"),
                        get("CIRCLE_NODE_INDEX"),
                    ],
                    "-",
                ),
                run_url: get("CIRCLE_BUILD_URL"),
                runner: get("HOSTNAME"),
                commit: get("CIRCLE_SHA1"),
                attempt: None,
                branch_vars: "CIRCLE_BRANCH",
                number_vars: "CIRCLE_PIPELINE_NUMBER",
            }
        }
        CiProvider::AzurePipelines => Found {
            branch: get("SYSTEM_PULLREQUEST_SOURCEBRANCH")
                .or_else(|| get("BUILD_SOURCEBRANCH"))
                .map(|b| b.strip_prefix("refs/heads/").unwrap_or(&b).to_owned()),
            build_number: number("BUILD_BUILDID"),
            run_id: joined(
                &[
                    get("BUILD_BUILDID"),
                    get("SYSTEM_JOBATTEMPT"),
                    get("SYSTEM_JOBID"),
                ],
                "-",
            ),
            run_url: match (
                get("SYSTEM_COLLECTIONURI"),
                get("SYSTEM_TEAMPROJECT"),
                get("BUILD_BUILDID"),
            ) {
                (Some(base), Some(project), Some(id)) => Some(format!(
                    "{}/{project}/_build/results?buildId={id}",
                    base.trim_end_matches('/')
                )),
                _ => None,
            },
            runner: get("AGENT_NAME"),
            commit: get("BUILD_SOURCEVERSION"),
            attempt: get("SYSTEM_JOBATTEMPT"),
            branch_vars: "SYSTEM_PULLREQUEST_SOURCEBRANCH, BUILD_SOURCEBRANCH",
            number_vars: "BUILD_BUILDID",
        },
        CiProvider::BitbucketPipelines => Found {
            branch: get("BITBUCKET_BRANCH"),
            build_number: number("BITBUCKET_BUILD_NUMBER"),
            run_id: joined(
                &[get("BITBUCKET_PIPELINE_UUID"), get("BITBUCKET_STEP_UUID")],
                "-",
            ),
            run_url: match (
                get("BITBUCKET_GIT_HTTP_ORIGIN"),
                get("BITBUCKET_BUILD_NUMBER"),
            ) {
                (Some(origin), Some(n)) => Some(format!("{origin}/pipelines/results/{n}")),
                _ => None,
            },
            runner: None,
            commit: get("BITBUCKET_COMMIT"),
            attempt: None,
            branch_vars: "BITBUCKET_BRANCH",
            number_vars: "BITBUCKET_BUILD_NUMBER",
        },
        CiProvider::Woodpecker => Found {
            branch: get("CI_COMMIT_SOURCE_BRANCH").or_else(|| get("CI_COMMIT_BRANCH")),
            build_number: number("CI_PIPELINE_NUMBER"),
            run_id: joined(
                &[
                    get("CI_PIPELINE_NUMBER"),
                    get("CI_WORKFLOW_NAME"),
                    get("CI_STEP_NAME"),
                ],
                "-",
            ),
            run_url: get("CI_PIPELINE_URL"),
            runner: get("CI_MACHINE"),
            commit: get("CI_COMMIT_SHA"),
            attempt: None,
            branch_vars: "CI_COMMIT_SOURCE_BRANCH, CI_COMMIT_BRANCH",
            number_vars: "CI_PIPELINE_NUMBER",
        },
        CiProvider::Drone => Found {
            branch: get("DRONE_SOURCE_BRANCH").or_else(|| get("DRONE_BRANCH")),
            build_number: number("DRONE_BUILD_NUMBER"),
            run_id: joined(
                &[
                    get("DRONE_BUILD_NUMBER"),
                    get("DRONE_STAGE_NAME"),
                    get("DRONE_STEP_NAME"),
                ],
                "-",
            ),
            run_url: get("DRONE_BUILD_LINK"),
            runner: get("DRONE_STAGE_MACHINE"),
            commit: get("DRONE_COMMIT_SHA").or_else(|| get("DRONE_COMMIT")),
            attempt: None,
            branch_vars: "DRONE_SOURCE_BRANCH, DRONE_BRANCH",
            number_vars: "DRONE_BUILD_NUMBER",
        },
        CiProvider::Bamboo => Found {
            // Bamboo exports its variables with a `bamboo_` prefix; the plan branch's name
            // comes from the plan's repository.
            branch: get("bamboo_planRepository_branchName")
                .or_else(|| get("bamboo_repository_branch_name")),
            build_number: number("bamboo_buildNumber"),
            run_id: get("bamboo_buildResultKey"),
            run_url: get("bamboo_buildResultsUrl"),
            runner: get("bamboo_agentId").map(|id| format!("agent {id}")),
            commit: get("bamboo_planRepository_revision")
                .or_else(|| get("bamboo_repository_revision_number")),
            attempt: None,
            branch_vars: "bamboo_planRepository_branchName, bamboo_repository_branch_name",
            number_vars: "bamboo_buildNumber",
        },
        CiProvider::TeamCity => Found {
            // TeamCity keeps the branch in a parameter, not the environment: a build
            // configuration exports it with `env.KILN_BRANCH = %teamcity.build.branch%`.
            branch: None,
            build_number: number("BUILD_NUMBER"),
            run_id: get("BUILD_NUMBER").map(|n| format!("teamcity-{n}")),
            run_url: None,
            runner: get("AGENT_NAME"),
            commit: get("BUILD_VCS_NUMBER"),
            attempt: None,
            branch_vars: "KILN_BRANCH (export it as `env.KILN_BRANCH = %teamcity.build.branch%`)",
            number_vars: "BUILD_NUMBER",
        },
        CiProvider::Travis => Found {
            branch: get("TRAVIS_PULL_REQUEST_BRANCH").or_else(|| get("TRAVIS_BRANCH")),
            build_number: number("TRAVIS_BUILD_NUMBER"),
            run_id: get("TRAVIS_JOB_ID"),
            run_url: get("TRAVIS_JOB_WEB_URL").or_else(|| get("TRAVIS_BUILD_WEB_URL")),
            runner: None,
            commit: get("TRAVIS_PULL_REQUEST_SHA").or_else(|| get("TRAVIS_COMMIT")),
            attempt: None,
            branch_vars: "TRAVIS_PULL_REQUEST_BRANCH, TRAVIS_BRANCH",
            number_vars: "TRAVIS_BUILD_NUMBER",
        },
        CiProvider::AppVeyor => Found {
            branch: get("APPVEYOR_PULL_REQUEST_HEAD_REPO_BRANCH")
                .or_else(|| get("APPVEYOR_REPO_BRANCH")),
            build_number: number("APPVEYOR_BUILD_NUMBER"),
            run_id: get("APPVEYOR_JOB_ID"),
            run_url: match (
                get("APPVEYOR_URL"),
                get("APPVEYOR_ACCOUNT_NAME"),
                get("APPVEYOR_PROJECT_SLUG"),
                get("APPVEYOR_BUILD_ID"),
            ) {
                (Some(base), Some(account), Some(project), Some(build)) => Some(format!(
                    "{}/project/{account}/{project}/builds/{build}",
                    base.trim_end_matches('/')
                )),
                _ => None,
            },
            runner: None,
            commit: get("APPVEYOR_PULL_REQUEST_HEAD_COMMIT")
                .or_else(|| get("APPVEYOR_REPO_COMMIT")),
            attempt: None,
            branch_vars: "APPVEYOR_PULL_REQUEST_HEAD_REPO_BRANCH, APPVEYOR_REPO_BRANCH",
            number_vars: "APPVEYOR_BUILD_NUMBER",
        },
        CiProvider::Semaphore => Found {
            branch: get("SEMAPHORE_GIT_PR_BRANCH").or_else(|| get("SEMAPHORE_GIT_BRANCH")),
            build_number: number("SEMAPHORE_WORKFLOW_NUMBER"),
            run_id: get("SEMAPHORE_JOB_ID"),
            run_url: match (get("SEMAPHORE_ORGANIZATION_URL"), get("SEMAPHORE_JOB_ID")) {
                (Some(org), Some(job)) => Some(format!("{}/jobs/{job}", org.trim_end_matches('/'))),
                _ => None,
            },
            runner: get("SEMAPHORE_AGENT_MACHINE_TYPE"),
            commit: get("SEMAPHORE_GIT_PR_SHA").or_else(|| get("SEMAPHORE_GIT_SHA")),
            attempt: None,
            branch_vars: "SEMAPHORE_GIT_PR_BRANCH, SEMAPHORE_GIT_BRANCH",
            number_vars: "SEMAPHORE_WORKFLOW_NUMBER",
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn detect_in(vars: &[(&str, &str)]) -> Result<CiContext, CiContextError> {
        detect_with(vars, &Overrides::default())
    }

    fn detect_with(
        vars: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<CiContext, CiContextError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        detect(|k| env.get(k).cloned(), overrides)
    }

    fn summary(ctx: &CiContext) -> (Option<CiProvider>, &str, u64, &str) {
        (ctx.provider, &ctx.branch, ctx.build_number, &ctx.run_id)
    }

    #[test]
    fn github_actions_push_and_pull_request() {
        let push = detect_in(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "feature/login-form"),
            ("GITHUB_REF_TYPE", "branch"),
            ("GITHUB_RUN_NUMBER", "57"),
            ("GITHUB_RUN_ID", "9001"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "unit"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/app"),
        ])
        .unwrap();
        assert_eq!(
            summary(&push),
            (
                Some(CiProvider::GithubActions),
                "feature/login-form",
                57,
                "9001-2-unit"
            )
        );
        assert_eq!(
            push.run_url.as_deref(),
            Some("https://github.com/acme/app/actions/runs/9001")
        );
        let pr = detect_in(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_HEAD_REF", "fix-typo"),
            ("GITHUB_REF_NAME", "12/merge"),
            ("GITHUB_RUN_NUMBER", "58"),
        ])
        .unwrap();
        assert_eq!(pr.branch, "fix-typo");
    }

    #[test]
    fn gitlab_prefers_the_merge_request_source_branch() {
        let ctx = detect_in(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feature/x"),
            ("CI_PIPELINE_IID", "12"),
            ("CI_PIPELINE_ID", "777"),
            ("CI_JOB_ID", "4242"),
            ("CI_JOB_URL", "https://gitlab.example/jobs/4242"),
            ("CI_RUNNER_DESCRIPTION", "shared-1"),
        ])
        .unwrap();
        assert_eq!(
            summary(&ctx),
            (Some(CiProvider::GitlabCi), "feature/x", 12, "777-4242")
        );
        assert_eq!(ctx.runner.as_deref(), Some("shared-1"));
    }

    #[test]
    fn jenkins_multibranch_and_git_plugin() {
        let multibranch = detect_in(&[
            ("JENKINS_URL", "https://ci.example/"),
            ("BRANCH_NAME", "release-2"),
            ("BUILD_NUMBER", "31"),
            ("BUILD_TAG", "jenkins-app-release-2-31"),
        ])
        .unwrap();
        assert_eq!(
            summary(&multibranch),
            (
                Some(CiProvider::Jenkins),
                "release-2",
                31,
                "jenkins-app-release-2-31"
            )
        );
        let plugin = detect_in(&[
            ("JENKINS_URL", "https://ci.example/"),
            ("GIT_BRANCH", "origin/feature/y"),
            ("BUILD_NUMBER", "4"),
        ])
        .unwrap();
        assert_eq!(plugin.branch, "feature/y");
    }

    #[test]
    fn buildkite_circleci_azure_bitbucket_woodpecker_drone() {
        type Case<'a> = (&'a [(&'a str, &'a str)], CiProvider, &'a str, u64);
        let cases: &[Case] = &[
            (
                &[
                    ("BUILDKITE", "true"),
                    ("BUILDKITE_BRANCH", "bk"),
                    ("BUILDKITE_BUILD_NUMBER", "5"),
                ],
                CiProvider::Buildkite,
                "bk",
                5,
            ),
            (
                &[
                    ("CIRCLECI", "true"),
                    ("CIRCLE_BRANCH", "cc"),
                    ("CIRCLE_PIPELINE_NUMBER", "6"),
                    ("CIRCLE_BUILD_NUM", "600"),
                ],
                CiProvider::CircleCi,
                "cc",
                6,
            ),
            (
                &[
                    ("TF_BUILD", "True"),
                    ("BUILD_SOURCEBRANCH", "refs/heads/feature/az"),
                    ("BUILD_SOURCEBRANCHNAME", "az"),
                    ("BUILD_BUILDID", "7"),
                ],
                CiProvider::AzurePipelines,
                "feature/az",
                7,
            ),
            (
                &[("BITBUCKET_BUILD_NUMBER", "8"), ("BITBUCKET_BRANCH", "bb")],
                CiProvider::BitbucketPipelines,
                "bb",
                8,
            ),
            (
                &[
                    ("CI", "woodpecker"),
                    ("CI_COMMIT_BRANCH", "wp"),
                    ("CI_PIPELINE_NUMBER", "9"),
                ],
                CiProvider::Woodpecker,
                "wp",
                9,
            ),
            (
                &[
                    ("DRONE", "true"),
                    ("DRONE_BRANCH", "dr"),
                    ("DRONE_BUILD_NUMBER", "10"),
                ],
                CiProvider::Drone,
                "dr",
                10,
            ),
        ];
        for (vars, provider, branch, number) in cases {
            let ctx = detect_in(vars).unwrap_or_else(|e| panic!("{provider}: {e}"));
            assert_eq!(ctx.provider, Some(*provider));
            assert_eq!(ctx.branch, *branch, "{provider}");
            assert_eq!(ctx.build_number, *number, "{provider}");
        }
    }

    #[test]
    fn circleci_per_job_number_is_refused() {
        let err = detect_in(&[
            ("CIRCLECI", "true"),
            ("CIRCLE_BRANCH", "cc"),
            ("CIRCLE_BUILD_NUM", "600"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("pipeline.number"), "{err}");
    }

    #[test]
    fn commits_come_from_the_provider_or_the_override() {
        let github = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "x"),
            ("GITHUB_RUN_NUMBER", "1"),
            ("GITHUB_SHA", "ABCDEF0123456789abcdef0123456789abcdef01"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ];
        let ctx = detect_in(&github).unwrap();
        assert_eq!(
            ctx.commit.unwrap().as_str(),
            "abcdef0123456789abcdef0123456789abcdef01"
        );
        assert_eq!(ctx.attempt, Some(2));
        let mut with_override = github.to_vec();
        with_override.push(("KILN_COMMIT", "1234567"));
        assert_eq!(
            detect_in(&with_override).unwrap().commit.unwrap().as_str(),
            "1234567"
        );
        with_override.push(("KILN_COMMIT", "not-a-commit"));
        let bad = [
            ("KILN_BRANCH", "x"),
            ("KILN_BUILD_NUMBER", "1"),
            ("KILN_COMMIT", "not-a-commit"),
        ];
        assert!(
            detect_in(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("KILN_COMMIT:")
        );
        // Buildkite may say HEAD: left to git
        let buildkite = [
            ("BUILDKITE", "true"),
            ("BUILDKITE_BRANCH", "main"),
            ("BUILDKITE_BUILD_NUMBER", "4"),
            ("BUILDKITE_COMMIT", "HEAD"),
        ];
        assert_eq!(detect_in(&buildkite).unwrap().commit, None);
    }

    #[test]
    fn overrides_win_and_missing_context_names_the_variables() {
        let ctx = detect_with(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_REF_NAME", "x"),
                ("GITHUB_RUN_NUMBER", "1"),
            ],
            &Overrides {
                branch: Some("y".into()),
                build_number: Some("2".into()),
                run_id: None,
                commit: None,
            },
        )
        .unwrap();
        assert_eq!((ctx.branch.as_str(), ctx.build_number), ("y", 2));
        let err = detect_in(&[]).unwrap_err();
        assert!(matches!(err, CiContextError::NoBranch(_)));
        assert!(
            err.to_string().contains("GITHUB_REF_NAME") && err.to_string().contains("--branch")
        );
        let err = detect_in(&[("KILN_BRANCH", "z")]).unwrap_err();
        assert!(err.to_string().contains("--build-number"), "{err}");
        let err = detect_with(
            &[],
            &Overrides {
                branch: Some("z".into()),
                build_number: Some("12a".into()),
                run_id: None,
                commit: None,
            },
        )
        .unwrap_err();
        insta::assert_snapshot!(err, @"build number `12a` (from --build-number) is not a whole number");
    }

    #[test]
    fn bamboo_teamcity_travis_appveyor_and_semaphore() {
        let bamboo = detect_in(&[
            ("bamboo_buildKey", "ACME-PLAN-JOB1"),
            ("bamboo_planRepository_branchName", "feature/x"),
            ("bamboo_buildNumber", "42"),
            ("bamboo_buildResultKey", "ACME-PLAN-JOB1-42"),
            (
                "bamboo_buildResultsUrl",
                "https://bamboo.example/browse/ACME-PLAN-42",
            ),
            (
                "bamboo_planRepository_revision",
                "0123456789abcdef0123456789abcdef01234567",
            ),
        ])
        .unwrap();
        assert_eq!(
            summary(&bamboo),
            (
                Some(CiProvider::Bamboo),
                "feature/x",
                42,
                "ACME-PLAN-JOB1-42"
            )
        );
        assert!(bamboo.commit.is_some());
        // TeamCity (which also sets BUILD_NUMBER, like Jenkins) needs the branch exported.
        let teamcity = detect_in(&[("TEAMCITY_VERSION", "2024.1"), ("BUILD_NUMBER", "7")]);
        let err = teamcity.unwrap_err().to_string();
        assert!(
            err.contains("teamcity was recognised") && err.contains("%teamcity.build.branch%"),
            "{err}"
        );
        let teamcity = detect_in(&[
            ("TEAMCITY_VERSION", "2024.1"),
            ("BUILD_NUMBER", "7"),
            ("KILN_BRANCH", "main"),
        ])
        .unwrap();
        assert_eq!(teamcity.provider, Some(CiProvider::TeamCity));
        let travis = detect_in(&[
            ("TRAVIS", "true"),
            ("TRAVIS_BRANCH", "main"),
            ("TRAVIS_PULL_REQUEST_BRANCH", "feature/y"),
            ("TRAVIS_BUILD_NUMBER", "9"),
            ("TRAVIS_JOB_ID", "123"),
        ])
        .unwrap();
        assert_eq!(
            summary(&travis),
            (Some(CiProvider::Travis), "feature/y", 9, "123")
        );
        let appveyor = detect_in(&[
            ("APPVEYOR", "True"),
            ("APPVEYOR_REPO_BRANCH", "main"),
            ("APPVEYOR_BUILD_NUMBER", "11"),
            ("APPVEYOR_JOB_ID", "j1"),
            ("APPVEYOR_URL", "https://ci.appveyor.com"),
            ("APPVEYOR_ACCOUNT_NAME", "acme"),
            ("APPVEYOR_PROJECT_SLUG", "billing"),
            ("APPVEYOR_BUILD_ID", "555"),
        ])
        .unwrap();
        assert_eq!(
            appveyor.run_url.as_deref(),
            Some("https://ci.appveyor.com/project/acme/billing/builds/555")
        );
        let semaphore = detect_in(&[
            ("SEMAPHORE", "true"),
            ("SEMAPHORE_GIT_BRANCH", "main"),
            ("SEMAPHORE_WORKFLOW_NUMBER", "3"),
            ("SEMAPHORE_JOB_ID", "abc"),
        ])
        .unwrap();
        assert_eq!(
            summary(&semaphore),
            (Some(CiProvider::Semaphore), "main", 3, "abc")
        );
    }

    #[test]
    fn gitlab_tag_pipelines_and_missing_variables_are_named() {
        let tag = detect_in(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_REF_NAME", "v1.2.0"),
            ("CI_COMMIT_TAG", "v1.2.0"),
            ("CI_PIPELINE_IID", "5"),
        ])
        .unwrap();
        assert_eq!(tag.branch, "v1.2.0");
        let err = detect_in(&[("GITLAB_CI", "true"), ("CI_PIPELINE_IID", "5")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "gitlab-ci was recognised, but none of CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"
            ),
            "{err}"
        );
        assert!(!err.contains("no CI provider variables found"), "{err}");
    }

    #[test]
    fn github_tag_builds_have_no_branch() {
        let err = detect_in(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "v1.0"),
            ("GITHUB_REF_TYPE", "tag"),
            ("GITHUB_RUN_NUMBER", "3"),
        ])
        .unwrap_err();
        assert!(matches!(err, CiContextError::NoBranch(_)));
    }
}
