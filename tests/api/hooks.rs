//! The CI hooks end to end: real `kiln ensure` / `kiln stage` processes, each in its own
//! work directory like separate CI runners, against a real server; real builds of the
//! sample project with PyPA build; real pip and tox installing from the branch index.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kiln::api::{BuildStateView, ClaimBuild, LeaseBody};
use kiln::domain::Outcome;

use crate::helpers::{ADMIN_TOKEN, Dist, TestApp, python, show};

/// Variables that would make the hooks think they run on some CI system (or change pip's
/// behaviour); the test runner itself may well be on one.
const FOREIGN_ENV: &[&str] = &[
    "CI",
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITLAB_CI",
    "JENKINS_URL",
    "JENKINS_HOME",
    "BUILDKITE",
    "CIRCLECI",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "DRONE",
    "KILN_SERVER",
    "KILN_TOKEN",
    "KILN_BRANCH",
    "KILN_BUILD_NUMBER",
    "KILN_COMMIT",
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_CONSTRAINT",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_CONSTRAINT",
];

/// One CI runner: its own copy of the sample project.
pub struct Runner {
    dir: tempfile::TempDir,
}

impl Runner {
    /// A checkout of the sample project: a git repository whose one commit is the same
    /// on every runner (fixed author, dates and content give the same commit id), as CI
    /// runners checking out one commit have.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&sample_project(), dir.path());
        let runner = Self { dir };
        runner.git(&["init", "--quiet"]);
        runner.commit();
        runner
    }

    fn with_pyproject(text: &str) -> Self {
        let runner = Self::new();
        std::fs::write(runner.path().join("pyproject.toml"), text).unwrap();
        runner.commit();
        runner
    }

    /// Runs git in the checkout with a fixed identity and clock.
    pub fn git(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("git")
            .args(["-c", "user.name=CI", "-c", "user.email=ci@example.com"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .expect("running git (the hook tests need it)");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Commits every change in the checkout; answers the new HEAD.
    pub fn commit(&self) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", "sample"]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kiln ARGS…` in this runner's directory, talking to `app`.
    pub fn kiln(&self, app: &TestApp, args: &[&str]) -> tokio::process::Command {
        let tools = python();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
        for var in FOREIGN_ENV {
            command.env_remove(var);
        }
        let path = format!(
            "{}:{}",
            tools.python_path().parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .args(args)
            .current_dir(self.path())
            .env("PATH", path)
            .env("KILN_SERVER", &app.base)
            .env("KILN_TOKEN", ADMIN_TOKEN)
            .env("KILN_PYTHON", tools.python_path())
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_CACHE_DIR", "1")
            .env("UV_NO_CONFIG", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true);
        command
    }
}

fn sample_project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample-project")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A build command that counts its invocations in `count`, optionally dawdles, then
/// builds the wheel with the venv's PyPA build (no isolation: the backend is installed).
pub fn counting_build(count: &Path, pause_secs: u32) -> String {
    format!(
        "echo built >> '{}'; sleep {pause_secs}; python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .",
        count.display()
    )
}

pub fn builds_in(count: &Path) -> usize {
    std::fs::read_to_string(count).map_or(0, |t| t.lines().count())
}

pub fn stdout_value(output: &Output, key: &str) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key}= line in\n{}", show(output)))
}

/// `kiln ensure` for `branch` and `build_number`, building with `build`.
async fn ensure_on(
    runner: &Runner,
    app: &TestApp,
    branch: &str,
    build_number: &str,
    build: &str,
) -> Output {
    runner
        .kiln(
            app,
            &[
                "ensure",
                "--branch",
                branch,
                "--build-number",
                build_number,
                "--build-cmd",
                build,
            ],
        )
        .output()
        .await
        .unwrap()
}

pub const BRANCH_ARGS: [&str; 4] = ["--branch", "feature/login-form", "--build-number", "57"];
/// The version `BRANCH_ARGS` build: a branch build never takes a main build's version.
pub const BRANCH_VERSION: &str = "1.4.57.dev0+feature.login.form";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_stages_build_once_and_test_the_same_bytes() {
    let app = TestApp::spawn().await;
    let counter = tempfile::tempdir().unwrap();
    let count = counter.path().join("builds");
    let build = counting_build(&count, 1);
    let runners: Vec<Runner> = (0..4).map(|_| Runner::new()).collect();
    // Three stages fetch the package from the branch index with pip (the pin comes from
    // PIP_CONSTRAINT, the index from PIP_INDEX_URL) and record what they got; the fourth
    // runs tox, which gets the wheel as --installpkg.
    let fetch = "python -m pip download --no-deps -d got kiln-sample && python -c \"import glob, hashlib; print(hashlib.sha256(open(glob.glob('got/*.whl')[0], 'rb').read()).hexdigest())\" > got.sha256";
    let stages: [(&str, Vec<&str>); 4] = [
        ("static", vec!["sh", "-c", fetch]),
        ("unit", vec!["sh", "-c", fetch]),
        ("system", vec!["sh", "-c", fetch]),
        ("functional", vec!["tox", "-e", "functional"]),
    ];
    let mut children = Vec::new();
    for (runner, (stage, command)) in runners.iter().zip(&stages) {
        let mut args = vec!["stage", stage];
        args.extend(BRANCH_ARGS);
        args.extend(["--build-cmd", &build, "--"]);
        args.extend(command.iter().copied());
        children.push(runner.kiln(&app, &args).output());
    }
    let outputs = futures_util::future::join_all(children).await;
    for ((stage, _), output) in stages.iter().zip(&outputs) {
        let output = output.as_ref().unwrap();
        assert!(output.status.success(), "stage {stage}:\n{}", show(output));
    }
    assert_eq!(builds_in(&count), 1, "exactly one runner builds");

    let status = app
        .client()
        .show_release(
            &"root/feature-login-form".parse().unwrap(),
            "kiln-sample",
            BRANCH_VERSION,
        )
        .await
        .unwrap();
    assert!(matches!(status.build.status, BuildStateView::Ready { .. }));
    let [file] = status.files.as_slice() else {
        panic!("one file expected: {status:?}")
    };
    assert_eq!(
        file.file.filename,
        "kiln_sample-1.4.57.dev0+feature.login.form-py3-none-any.whl"
    );
    for runner in &runners[..3] {
        let got = std::fs::read_to_string(runner.path().join("got.sha256")).unwrap();
        assert_eq!(got.trim(), file.file.sha256, "pip fetched the built bytes");
    }
    let tox_log = String::from_utf8_lossy(&outputs[3].as_ref().unwrap().stdout).into_owned();
    assert!(
        tox_log.contains("kiln_sample-1.4.57.dev0+feature.login.form-py3-none-any.whl")
            && tox_log.contains("OK"),
        "tox installed the built wheel and passed:\n{tox_log}"
    );
    let stages_seen: Vec<&str> = file.stages.keys().map(String::as_str).collect();
    assert_eq!(stages_seen, ["functional", "static", "system", "unit"]);
    assert!(file.stages.values().all(|r| r.outcome == Outcome::Pass));
    let env = &file.stages["unit"].environment;
    assert_eq!(env["branch"], "feature/login-form");
    assert!(
        env.contains_key("os") && env.contains_key("python"),
        "{env:?}"
    );

    // A second pipeline run with the same build number reuses the wheel.
    let again = Runner::new()
        .kiln(
            &app,
            &[&["ensure"][..], &BRANCH_ARGS, &["--build-cmd", &build]].concat(),
        )
        .output()
        .await
        .unwrap();
    assert!(again.status.success(), "{}", show(&again));
    assert_eq!(stdout_value(&again, "KILN_SHA256"), file.file.sha256);
    assert_eq!(builds_in(&count), 1, "no rebuild for a known version");
}

/// Starts a runner whose build hangs (in its own process group, so it can be lost
/// whole) and waits until, as `watcher` sees it, that runner holds the lease and its
/// build has started.
pub async fn hanging_builder(
    runner: &Runner,
    app: &TestApp,
    watcher: &kiln::client::Client,
    count: &Path,
) -> tokio::process::Child {
    let mut builder = runner.kiln(
        app,
        &[
            &["ensure"][..],
            &BRANCH_ARGS,
            &["--build-cmd", &counting_build(count, 600)],
        ]
        .concat(),
    );
    builder
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut builder = builder.spawn().unwrap();
    let index = "root/feature-login-form".parse().unwrap();
    // Generous: on a loaded machine the runner's start, index creation and claim can take
    // a while; a runner that gave up is reported at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        let view = watcher
            .show_build(&index, "kiln-sample", BRANCH_VERSION, None)
            .await;
        // The lease is taken a moment before the build command starts and counts itself.
        let leased =
            matches!(view, Ok(ref v) if matches!(v.status, BuildStateView::Building { .. }));
        if leased && builds_in(count) > 0 {
            assert_eq!(builds_in(count), 1, "one build started");
            return builder;
        }
        if let Some(status) = builder.try_wait().unwrap() {
            panic!("the hanging runner exited ({status}) before it took the lease");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the hanging runner did not take the lease within 120 s");
}

/// Kills a runner's whole process group, build included, like a lost CI machine.
pub fn kill_group(child: &tokio::process::Child) {
    let pgid = child.id().expect("the runner is still running");
    let killed = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// After a builder was lost, two runners `kiln ensure` through `app`: both succeed with
/// the same bytes, exactly one more build runs, and the takeover shows as attempt 2.
pub async fn two_runners_take_over(app: &TestApp, count: &Path) {
    let good = counting_build(count, 0);
    let waiters: Vec<Runner> = (0..2).map(|_| Runner::new()).collect();
    let runs = waiters.iter().map(|r| {
        r.kiln(
            app,
            &[&["ensure"][..], &BRANCH_ARGS, &["--build-cmd", &good]].concat(),
        )
        .output()
    });
    let outputs = futures_util::future::join_all(runs).await;
    let mut digests = Vec::new();
    for output in &outputs {
        let output = output.as_ref().unwrap();
        assert!(output.status.success(), "{}", show(output));
        digests.push(stdout_value(output, "KILN_SHA256"));
    }
    assert_eq!(digests[0], digests[1], "both use the one finished build");
    assert_eq!(builds_in(count), 2, "the lost build, then exactly one more");
    let stderr: String = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.as_ref().unwrap().stderr).into_owned())
        .collect();
    assert!(
        stderr.contains("attempt 2"),
        "the takeover is visible:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_builders_lease_expires_and_another_runner_builds() {
    let app = TestApp::spawn_with(|c| c.build_lease_ttl = Duration::from_secs(2)).await;
    let counter = tempfile::tempdir().unwrap();
    let count = counter.path().join("builds");
    let builder = hanging_builder(&Runner::new(), &app, &app.client(), &count).await;
    kill_group(&builder);
    two_runners_take_over(&app, &count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_fails_every_waiter_fast_and_only_a_retry_builds_again() {
    let app = TestApp::spawn().await;
    let counter = tempfile::tempdir().unwrap();
    let count = counter.path().join("builds");
    let broken = format!(
        "echo built >> '{}'; sleep 1; echo 'SyntaxError: invalid syntax in setup' >&2; exit 1",
        count.display()
    );
    let runners: Vec<Runner> = (0..3).map(|_| Runner::new()).collect();
    let runs = runners.iter().map(|r| {
        r.kiln(
            &app,
            &[&["ensure"][..], &BRANCH_ARGS, &["--build-cmd", &broken]].concat(),
        )
        .output()
    });
    for output in futures_util::future::join_all(runs).await {
        let output = output.unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", show(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("SyntaxError: invalid syntax in setup"),
            "every runner shows the builder's error:\n{stderr}"
        );
    }
    assert_eq!(builds_in(&count), 1, "waiters do not build after a failure");

    let later = Runner::new()
        .kiln(
            &app,
            &[&["ensure"][..], &BRANCH_ARGS, &["--build-cmd", &broken]].concat(),
        )
        .output()
        .await
        .unwrap();
    assert_eq!(later.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&later.stderr).contains("--retry-failed-build"));
    assert_eq!(builds_in(&count), 1);

    let retry = Runner::new()
        .kiln(
            &app,
            &[
                &["ensure", "--retry-failed-build"][..],
                &BRANCH_ARGS,
                &["--build-cmd", &counting_build(&count, 0)],
            ]
            .concat(),
        )
        .output()
        .await
        .unwrap();
    assert!(retry.status.success(), "{}", show(&retry));
    assert_eq!(builds_in(&count), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_exits_with_the_command_status_and_an_unrecorded_verdict_fails_the_stage() {
    let app = TestApp::spawn().await;
    let runner = Runner::new();
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let failing = runner
        .kiln(
            &app,
            &[
                &["stage", "lint"][..],
                &BRANCH_ARGS,
                &[
                    "--build-cmd",
                    build,
                    "--",
                    "sh",
                    "-c",
                    "echo 'E501 line too long'; exit 7",
                ],
            ]
            .concat(),
        )
        .output()
        .await
        .unwrap();
    assert_eq!(failing.status.code(), Some(7), "{}", show(&failing));
    let sha = {
        let index = "root/feature-login-form".parse().unwrap();
        let view = app
            .client()
            .show_build(&index, "kiln-sample", BRANCH_VERSION, None)
            .await
            .unwrap();
        let BuildStateView::Ready { files } = view.status else {
            panic!("{view:?}")
        };
        files[0].sha256.clone()
    };
    let results = app.client().show_results(&sha).await.unwrap();
    let lint = &results.latest["lint"];
    assert_eq!((lint.outcome, lint.exit_code), (Outcome::Fail, Some(7)));
    assert!(lint.log_tail.contains("E501 line too long"), "{lint:?}");

    // JUnit counts travel with the verdict.
    let junit =
        r#"<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1"/></testsuites>"#;
    let passing = runner
        .kiln(
            &app,
            &[
                &["stage", "unit", "--junit", "report.xml"][..],
                &BRANCH_ARGS,
                &["--", "sh", "-c", &format!("echo '{junit}' > report.xml")],
            ]
            .concat(),
        )
        .output()
        .await
        .unwrap();
    assert!(passing.status.success(), "{}", show(&passing));
    let unit = app.client().show_results(&sha).await.unwrap().latest["unit"].clone();
    assert_eq!(unit.junit.map(|j| (j.tests, j.skipped)), Some((3, 1)));

    lost_verdicts_are_kept_and_sent_again(app, &runner, &sha).await;
}

/// The server goes away while a stage runs: the command passes, the verdict cannot be
/// delivered, and the stage must not look green; the kept report is sent again later.
async fn lost_verdicts_are_kept_and_sent_again(mut app: TestApp, runner: &Runner, sha: &str) {
    let flag = runner.path().join("go");
    let wait = format!(
        "touch started; while [ ! -f '{}' ]; do sleep 0.05; done",
        flag.display()
    );
    let stage = runner
        .kiln(
            &app,
            &[
                &["stage", "system", "--report-timeout", "2s"][..],
                &BRANCH_ARGS,
                &["--", "sh", "-c", &wait],
            ]
            .concat(),
        )
        .output();
    let stage = tokio::spawn(stage);
    while !runner.path().join("started").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
    std::fs::write(&flag, b"").unwrap();
    let lost = stage.await.unwrap().unwrap();
    assert_eq!(lost.status.code(), Some(2), "{}", show(&lost));
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(stderr.contains("was NOT recorded"), "{stderr}");
    assert!(
        stderr.contains("retrying in"),
        "delivery was retried: {stderr}"
    );
    // The verdict was kept in the workspace; once the server is back, one command sends
    // it, without CI variables.
    let saved = runner.path().join("kiln-report-system-local-57.json");
    assert!(stderr.contains("kiln report --from"), "{stderr}");
    assert!(saved.exists(), "{stderr}");
    let app = app.restart().await;
    let resent = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["report", "--from"])
        .arg(&saved)
        .env("KILN_SERVER", &app.base)
        .env("KILN_TOKEN", crate::helpers::ADMIN_TOKEN)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(resent.status.success(), "{}", show(&resent));
    let system = &app.client().show_results(sha).await.unwrap().latest["system"];
    assert_eq!(system.outcome, Outcome::Pass);
    assert!(!saved.exists(), "a delivered report's file is removed");
}

#[tokio::test]
async fn uploads_are_tied_to_the_build_lease() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let index = "root/master".parse().unwrap();
    let claim = |builder: &str| ClaimBuild {
        builder: builder.into(),
        retry: false,
        provenance: crate::helpers::provenance("abcdef1"),
        target: None,
    };
    let first = client
        .claim_build(&index, "demo", "1.0", &claim("runner-a"))
        .await
        .unwrap();
    let BuildStateView::Claimed {
        lease_id, attempt, ..
    } = first.status
    else {
        panic!("{first:?}")
    };
    assert_eq!(attempt, 1);
    let second = client
        .claim_build(&index, "Demo", "1.0.0", &claim("runner-b"))
        .await
        .unwrap();
    assert!(
        matches!(&second.status, BuildStateView::Building { builder, .. } if builder.contains("runner-a")),
        "the same release, spelled differently, is the same build: {second:?}"
    );

    // A plain upload (twine, another runner) of the release being built is refused.
    let response = app.upload("root/master", &Dist::wheel("demo", "1.0")).await;
    assert_eq!(response.status(), 409);
    let detail = crate::helpers::detail(response).await.1;
    assert!(
        detail.contains("build lease") && detail.contains("runner-a"),
        "{detail}"
    );

    // Completing before uploading is refused; the holder's upload is accepted.
    let lease = LeaseBody {
        lease_id: lease_id.clone(),
        error_tail: None,
        target: None,
    };
    let early = client
        .lease_action(&index, "demo", "1.0", "complete", &lease)
        .await;
    assert!(
        matches!(
            early,
            Err(kiln::client::ClientError::Api { status: 400, .. })
        ),
        "{early:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let wheel = Dist::wheel("demo", "1.0").write_to(dir.path());
    client
        .upload_file(&index, &wheel, "demo", "1.0", Some("not-the-lease"))
        .await
        .expect_err("a wrong lease is refused");
    client
        .upload_file(&index, &wheel, "demo", "1.0", Some(&lease_id))
        .await
        .unwrap();
    let beat = client
        .lease_action(&index, "demo", "1.0", "heartbeat", &lease)
        .await
        .unwrap();
    assert!(
        matches!(beat.status, BuildStateView::Claimed { attempt: 1, expires_in_ms, .. } if expires_in_ms > 0),
        "a heartbeat answers the lease it extended: {beat:?}"
    );
    let done = client
        .lease_action(&index, "demo", "1.0", "complete", &lease)
        .await
        .unwrap();
    assert!(matches!(done.status, BuildStateView::Ready { ref files } if files.len() == 1));
    // The lease is over: heartbeats are refused, claims answer ready.
    let late = client
        .lease_action(&index, "demo", "1.0", "heartbeat", &lease)
        .await;
    assert!(
        matches!(
            late,
            Err(kiln::client::ClientError::Api { status: 409, .. })
        ),
        "{late:?}"
    );
    let ready = client
        .claim_build(&index, "demo", "1.0", &claim("runner-c"))
        .await
        .unwrap();
    assert!(matches!(ready.status, BuildStateView::Ready { .. }));
}

#[tokio::test]
async fn production_is_never_built_into_and_claims_need_a_token() {
    let app = TestApp::spawn().await;
    let claim = ClaimBuild {
        builder: "x".into(),
        retry: false,
        provenance: crate::helpers::provenance("abcdef1"),
        target: None,
    };
    let prod = app
        .client()
        .claim_build(&"root/prod".parse().unwrap(), "demo", "2.0", &claim)
        .await;
    assert!(
        matches!(
            prod,
            Err(kiln::client::ClientError::Api { status: 403, .. })
        ),
        "{prod:?}"
    );
    let anonymous = kiln::client::Client::new(&app.base, None).unwrap();
    let refused = anonymous
        .claim_build(&"root/master".parse().unwrap(), "demo", "3.0", &claim)
        .await;
    assert!(
        matches!(
            refused,
            Err(kiln::client::ClientError::Api { status: 401, .. })
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_long_polls_and_sees_the_upload() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let index: kiln::domain::IndexName = "root/master".parse().unwrap();
    let claimed = client
        .claim_build(
            &index,
            "demo",
            "2.0",
            &ClaimBuild {
                builder: String::new(),
                retry: false,
                provenance: crate::helpers::provenance("abcdef1"),
                target: None,
            },
        )
        .await
        .unwrap();
    let BuildStateView::Claimed { lease_id, .. } = claimed.status else {
        panic!("{claimed:?}")
    };
    let waiter = {
        let client = client.clone();
        let index = index.clone();
        tokio::spawn(async move {
            client
                .show_build(&index, "demo", "2.0", Some(Duration::from_secs(30)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter is parked while the build runs"
    );
    let dir = tempfile::tempdir().unwrap();
    let wheel = Dist::wheel("demo", "2.0").write_to(dir.path());
    client
        .upload_file(&index, &wheel, "demo", "2.0", Some(&lease_id))
        .await
        .unwrap();
    let lease = LeaseBody {
        lease_id,
        error_tail: None,
        target: None,
    };
    client
        .lease_action(&index, "demo", "2.0", "complete", &lease)
        .await
        .unwrap();
    let seen = waiter.await.unwrap().unwrap();
    assert!(
        matches!(seen.status, BuildStateView::Ready { .. }),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_indexes_are_created_once_and_slug_collisions_are_refused() {
    let app = TestApp::spawn().await;
    let runner = Runner::new();
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let first = ensure_on(&runner, &app, "feature/x", "1", build).await;
    assert!(first.status.success(), "{}", show(&first));
    let index = app
        .client()
        .get_index(&"root/feature-x".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(index.index.settings.branch.as_deref(), Some("feature/x"));
    assert_eq!(index.index.settings.bases, ["root/master".parse().unwrap()]);
    assert!(index.index.settings.volatile);

    let twin = ensure_on(&runner, &app, "feature-x", "1", build).await;
    assert_eq!(twin.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&twin.stderr).contains("created for branch `feature/x`"),
        "{}",
        show(&twin)
    );
    let prod = ensure_on(&runner, &app, "prod", "1", build).await;
    assert_eq!(prod.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&prod.stderr).contains("is not a branch index"),
        "{}",
        show(&prod)
    );
    // `main` builds straight into the master index.
    let main = ensure_on(&runner, &app, "main", "9", build).await;
    assert!(main.status.success(), "{}", show(&main));
    assert_eq!(stdout_value(&main, "KILN_INDEX"), "root/master");
    assert_eq!(stdout_value(&main, "KILN_VERSION"), "1.4.9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_versions_are_injected_and_mismatches_explained() {
    let app = TestApp::spawn().await;
    let scm = Runner::with_pyproject(
        "[build-system]\nrequires = [\"setuptools>=77\", \"setuptools-scm>=8\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"kiln-sample\"\ndynamic = [\"version\"]\n\n[tool.setuptools_scm]\n\n[tool.kiln]\nbase-version = \"2.1.0\"\nversion-scheme = \"dev\"\n",
    );
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let output = ensure_on(&scm, &app, "dyn", "5", build).await;
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(
        stdout_value(&output, "KILN_WHEEL_FILENAME"),
        "kiln_sample-2.1.0.dev5+dyn-py3-none-any.whl"
    );

    // A backend that ignores the injected version produces the wrong filename: refused,
    // with the reason, and every waiter sees it.
    let stubborn = Runner::new();
    // Builds the checkout (version 1.4) instead of the build tree (1.4.5.dev0+stubborn).
    let wrong = format!(
        "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" '{}'",
        stubborn.path().display()
    );
    let output = ensure_on(&stubborn, &app, "stubborn", "5", &wrong).await;
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("with version `1.4`, but this build's version is `1.4.5.dev0+stubborn`"),
        "{stderr}"
    );
    // The checkout itself was never modified.
    let text = std::fs::read_to_string(stubborn.path().join("pyproject.toml")).unwrap();
    assert!(text.contains("version = \"1.4\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_master_stages_promote_the_tested_bytes_to_prod_automatically() {
    let policy = kiln::policy::DEFAULT_POLICY
        .replace(
            "required-stages = [\"unit\"]",
            "required-stages = [\"unit\", \"functional\"]",
        )
        .replace("auto = false", "auto = true");
    let app = TestApp::spawn_with(|c| {
        c.policies = kiln::policy::Policies::parse("auto.toml", &policy).unwrap();
    })
    .await;
    let build = "python -m build --wheel --no-isolation --outdir \"$KILN_DIST_DIR\" .";
    let master = [
        "--branch",
        "main",
        "--build-number",
        "63",
        "--build-cmd",
        build,
    ];
    let runners: Vec<Runner> = (0..2).map(|_| Runner::new()).collect();
    let stages = ["unit", "functional"];
    let runs = runners.iter().zip(stages).map(|(runner, stage)| {
        runner
            .kiln(
                &app,
                &[&["stage", stage][..], &master, &["--", "tox", "-e", stage]].concat(),
            )
            .output()
    });
    for output in futures_util::future::join_all(runs).await {
        let output = output.unwrap();
        assert!(output.status.success(), "{}", show(&output));
    }
    let tested = app
        .client()
        .show_release(&"root/master".parse().unwrap(), "kiln-sample", "1.4.63")
        .await
        .unwrap();
    let sha = tested.files[0].file.sha256.clone();
    assert_eq!(tested.files[0].stages.len(), 2);
    let prod = app.json_page("root/prod", "kiln-sample").await;
    assert_eq!(
        prod["files"][0]["hashes"]["sha256"],
        sha.as_str(),
        "auto-promoted the tested bytes"
    );

    // pip installs exactly those bytes from prod.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let pip = crate::helpers::run(crate::clients::pip_install(
        &app.simple("root/prod"),
        &dir.path().join("site"),
        &report,
        "kiln-sample",
    ))
    .await;
    assert!(pip.status.success(), "{}", show(&pip));
    assert_eq!(
        crate::clients::installed_hashes(&report),
        [("kiln-sample".to_owned(), sha)]
    );
}
