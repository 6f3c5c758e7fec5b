//! Runners that fail for reasons other than the code: a CI re-run after a failed build,
//! and a runner that cannot build at all. Real `kiln ensure` processes in real clones.

use std::path::Path;
use std::process::Output;

use kiln::api::BuildStateView;

use crate::helpers::{TestApp, show};
use crate::hooks::{Runner, builds_in, counting_build, stdout_value};

/// `kiln ensure` on GitHub Actions (as its variables describe it): run 4242, `attempt`,
/// job `job`, building with `build`.
async fn on_github(runner: &Runner, app: &TestApp, attempt: u32, job: &str, build: &str) -> Output {
    let head = runner.git(&["rev-parse", "HEAD"]);
    runner
        .kiln(app, &["ensure", "--build-cmd", build])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REF_NAME", "feature/rerun")
        .env("GITHUB_RUN_NUMBER", "7")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_RUN_ATTEMPT", attempt.to_string())
        .env("GITHUB_JOB", job)
        .env("GITHUB_SHA", head)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ci_attempt_retries_a_failed_build_and_the_failed_attempts_jobs_fail_fast() {
    let app = TestApp::spawn().await;
    let counter = tempfile::tempdir().unwrap();
    let count = counter.path().join("builds");
    let broken = format!(
        "echo built >> '{}'; echo 'ModuleNotFoundError: flaky_mirror' >&2; exit 1",
        count.display()
    );
    let good = counting_build(&count, 0);

    let first = on_github(&Runner::new(), &app, 1, "unit", &broken).await;
    assert_eq!(first.status.code(), Some(2), "{}", show(&first));
    // Another job of the same attempt must not build again: it fails fast with the error.
    let sibling = on_github(&Runner::new(), &app, 1, "functional", &good).await;
    assert_eq!(sibling.status.code(), Some(2), "{}", show(&sibling));
    let said = String::from_utf8_lossy(&sibling.stderr);
    assert!(said.contains("flaky_mirror"), "{said}");
    assert!(said.contains("re-run the pipeline"), "{said}");
    assert_eq!(
        builds_in(&count),
        1,
        "the failed attempt's jobs do not rebuild"
    );

    // "Re-run failed jobs": attempt 2 builds again by itself, once for all its jobs.
    let (a, b) = (Runner::new(), Runner::new());
    let (a, b) = tokio::join!(
        on_github(&a, &app, 2, "unit", &good),
        on_github(&b, &app, 2, "functional", &good)
    );
    assert!(a.status.success(), "{}", show(&a));
    assert!(b.status.success(), "{}", show(&b));
    assert_eq!(
        stdout_value(&a, "KILN_SHA256"),
        stdout_value(&b, "KILN_SHA256")
    );
    assert_eq!(builds_in(&count), 2, "one rebuild for the new attempt");
}

/// A `python` that exists but has no PyPA `build`, as on a runner image without it.
fn python_without_build(dir: &Path) -> String {
    let path = dir.join("python-without-build");
    std::fs::write(
        &path,
        "#!/bin/sh\necho \"$0: No module named build\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_cannot_build_leaves_the_build_to_one_that_can() {
    let app = TestApp::spawn().await;
    let scratch = tempfile::tempdir().unwrap();
    let broken_python = python_without_build(scratch.path());
    let count = scratch.path().join("builds");
    let (unable, able) = (Runner::new(), Runner::new());
    let args = [
        "ensure",
        "--branch",
        "feature/handover",
        "--build-number",
        "3",
    ];
    let (unable, able) = tokio::join!(
        unable
            .kiln(&app, &args)
            .env("KILN_PYTHON", &broken_python)
            .output(),
        able.kiln(
            &app,
            &[&args[..], &["--build-cmd", &counting_build(&count, 1)]].concat()
        )
        .output()
    );
    let (unable, able) = (unable.unwrap(), able.unwrap());
    assert!(able.status.success(), "{}", show(&able));
    assert!(unable.status.success(), "{}", show(&unable));
    let said = String::from_utf8_lossy(&unable.stderr);
    assert!(
        said.contains("cannot build") && said.contains("No module named build"),
        "the runner says why it did not build:\n{said}"
    );
    assert_eq!(builds_in(&count), 1);
    assert_eq!(
        stdout_value(&unable, "KILN_SHA256"),
        stdout_value(&able, "KILN_SHA256"),
        "the runner that cannot build uses the other runner's wheel"
    );

    // Never claiming, it still never takes a wheel built from another commit.
    let elsewhere = Runner::new();
    std::fs::write(elsewhere.path().join("CHANGES"), "a change").unwrap();
    elsewhere.commit();
    let mismatched = elsewhere
        .kiln(&app, &args)
        .env("KILN_PYTHON", &broken_python)
        .output()
        .await
        .unwrap();
    assert_eq!(mismatched.status.code(), Some(2), "{}", show(&mismatched));
    assert!(
        String::from_utf8_lossy(&mismatched.stderr).contains("a version names one commit"),
        "{}",
        show(&mismatched)
    );

    // Alone, it fails with an environment error after a while and leaves the build
    // unclaimed, so the next runner that can build is not blocked.
    let alone = Runner::new()
        .kiln(
            &app,
            &[
                "ensure",
                "--branch",
                "feature/handover",
                "--build-number",
                "4",
                "--wait-timeout",
                "2s",
            ],
        )
        .env("KILN_PYTHON", &broken_python)
        .output()
        .await
        .unwrap();
    assert_eq!(alone.status.code(), Some(2), "{}", show(&alone));
    let said = String::from_utf8_lossy(&alone.stderr);
    assert!(
        said.contains("pip install build") && said.contains("no runner that can"),
        "{said}"
    );
    let view = app
        .client()
        .show_build(
            &"root/feature-handover".parse().unwrap(),
            "kiln-sample",
            "1.4.4.dev0+feature.handover",
            None,
        )
        .await
        .unwrap();
    assert!(
        matches!(view.status, BuildStateView::Absent),
        "nothing was claimed: {:?}",
        view.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_releases_are_reported_inspected_and_tested_without_building() {
    let app = TestApp::spawn().await;
    let scratch = tempfile::tempdir().unwrap();
    let count = scratch.path().join("builds");
    let master = Runner::new();
    let built = master
        .kiln(
            &app,
            &[
                "ensure",
                "--branch",
                "main",
                "--build-number",
                "5",
                "--build-cmd",
                &counting_build(&count, 0),
            ],
        )
        .output()
        .await
        .unwrap();
    assert!(built.status.success(), "{}", show(&built));
    let sha = stdout_value(&built, "KILN_SHA256");

    // No checkout, no CI variables: report by PROJECT==VERSION, then inspect.
    let nowhere = tempfile::tempdir().unwrap();
    let in_nowhere = |args: &[&str]| {
        let mut command = master.kiln(&app, args);
        command.current_dir(nowhere.path());
        command
    };
    let reported = in_nowhere(&[
        "report",
        "smoke",
        "--index",
        "root/master",
        "--artifact",
        "kiln-sample==1.4.5",
        "--run-id",
        "laptop-1",
        "--exit-code",
        "0",
    ])
    .output()
    .await
    .unwrap();
    assert!(reported.status.success(), "{}", show(&reported));
    let status = in_nowhere(&["status", "kiln-sample==1.4.5"])
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{}", show(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("smoke"));
    let listing = in_nowhere(&["status", "kiln-sample"])
        .output()
        .await
        .unwrap();
    assert!(listing.status.success(), "{}", show(&listing));
    let listed = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("1.4.5") && l.contains("smoke=pass")),
        "{listed}"
    );
    let unknown = in_nowhere(&["status", "kiln-sample==9.9"])
        .output()
        .await
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1), "{}", show(&unknown));

    a_branch_pipeline_tests_the_published_wheel(&app, &count, &sha).await;
}

/// A branch pipeline tests master's published wheel without building anything; the
/// verdict is recorded where the bytes live.
async fn a_branch_pipeline_tests_the_published_wheel(app: &TestApp, count: &Path, sha: &str) {
    let tester = Runner::new();
    let staged = tester
        .kiln(
            app,
            &[
                "stage",
                "--artifact",
                "kiln-sample==1.4.5",
                "--branch",
                "feature/compat",
                "--build-number",
                "1",
                "--build-cmd",
                &counting_build(count, 0),
                "compat",
                "--",
                "python",
                "-c",
                "import kiln_sample, sys; print(kiln_sample.__file__)",
            ],
        )
        .output()
        .await
        .unwrap();
    assert!(staged.status.success(), "{}", show(&staged));
    assert_eq!(
        builds_in(count),
        1,
        "nothing was built for the artifact stage"
    );
    let results = app.client().show_results(sha).await.unwrap();
    let compat = &results.latest["compat"];
    assert_eq!(compat.index, "root/master", "recorded where the bytes live");
    assert_eq!(
        compat.artifact,
        Some(kiln::domain::ArtifactCheck::Verified),
        "{}",
        show(&staged)
    );
    assert_eq!(results.latest["smoke"].run_id, "laptop-1");
}

/// Rewrites the wheel in `$1` (a directory) for the tag `$KILN_TARGET` (or `$2`) into
/// `$KILN_DIST_DIR`: a platform-specific wheel of the sample project, as an extension
/// module's build would make, without needing a compiler or a second interpreter.
const RETAG: &str = r#"
import base64, glob, hashlib, os, sys, zipfile
tag = os.environ.get("KILN_TARGET") or sys.argv[2]
src = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
dist, version = os.path.basename(src).split("-")[:2]
out = os.path.join(os.environ["KILN_DIST_DIR"], f"{dist}-{version}-{tag}.whl")
records, record = [], None
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        data = zin.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            record = info.filename
            continue
        if info.filename.endswith(".dist-info/WHEEL"):
            keep = [l for l in data.decode().splitlines() if not l.startswith(("Tag:", "Root-Is-Purelib:"))]
            data = ("\n".join(keep + ["Root-Is-Purelib: false", "Tag: " + tag]) + "\n").encode()
        zout.writestr(info.filename, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{info.filename},sha256={digest},{len(data)}")
    zout.writestr(record, "\n".join(records + [f"{record},,"]) + "\n")
"#;

/// The most specific wheel tag the test interpreter installs.
fn native_tag() -> String {
    let output = std::process::Command::new(crate::helpers::python().python_path())
        .args([
            "-c",
            "from packaging import tags; print(next(iter(tags.sys_tags())))",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_specific_wheel_is_built_once_per_target() {
    let app = TestApp::spawn().await;
    let scratch = tempfile::tempdir().unwrap();
    let count = scratch.path().join("builds");
    let retag = scratch.path().join("retag.py");
    std::fs::write(&retag, RETAG).unwrap();
    let native = native_tag();
    let build = format!(
        "echo built >> '{}'; pure=$(mktemp -d) && python -m build --wheel --no-isolation --outdir \"$pure\" . && python '{}' \"$pure\" '{native}'",
        count.display(),
        retag.display()
    );
    let other = "cp399-cp399-linux_x86_64";
    let ensure = |runner: &Runner, target: Option<&str>| {
        let mut args = vec![
            "ensure",
            "--branch",
            "main",
            "--build-number",
            "11",
            "--build-cmd",
            &build,
        ];
        args.extend(target.map(|t| ["--target", t]).into_iter().flatten());
        let mut command = runner.kiln(&app, &args);
        async move { command.output().await.unwrap() }
    };
    let first = ensure(&Runner::new(), None).await;
    assert!(first.status.success(), "{}", show(&first));
    assert!(stdout_value(&first, "KILN_WHEEL_FILENAME").contains(&native));

    // A runner for another interpreter gets a build of its own, once.
    let elsewhere = ensure(&Runner::new(), Some(other)).await;
    assert!(elsewhere.status.success(), "{}", show(&elsewhere));
    assert!(
        stdout_value(&elsewhere, "KILN_WHEEL_FILENAME").contains(other),
        "{}",
        show(&elsewhere)
    );
    assert_eq!(builds_in(&count), 2);
    let again = ensure(&Runner::new(), Some(other)).await;
    assert!(again.status.success(), "{}", show(&again));
    assert_eq!(
        stdout_value(&again, "KILN_SHA256"),
        stdout_value(&elsewhere, "KILN_SHA256")
    );

    // A stage on this interpreter installs the wheel for it, not the other target's.
    let staged = Runner::new()
        .kiln(
            &app,
            &[
                "stage",
                "--branch",
                "main",
                "--build-number",
                "11",
                "--build-cmd",
                &build,
                "unit",
                "--",
                "python",
                "-c",
                "import kiln_sample",
            ],
        )
        .output()
        .await
        .unwrap();
    assert!(staged.status.success(), "{}", show(&staged));
    assert_eq!(builds_in(&count), 2, "nothing more was built");
    let sha = stdout_value(&first, "KILN_SHA256");
    let results = app.client().show_results(&sha).await.unwrap();
    assert_eq!(
        results.latest["unit"].artifact,
        Some(kiln::domain::ArtifactCheck::Verified)
    );
    target_claims_need_the_first_build_from_the_same_commit(&app).await;
}

/// A target build joins a release that exists, from its commit; it cannot start one.
async fn target_claims_need_the_first_build_from_the_same_commit(app: &TestApp) {
    let claim = |commit: &str| kiln::api::ClaimBuild {
        builder: "api".into(),
        retry: false,
        provenance: crate::helpers::provenance(commit),
        target: Some("cp399-cp399-linux_x86_64".parse().unwrap()),
    };
    let master: kiln::domain::IndexName = "root/master".parse().unwrap();
    let client = app.client();
    let early = client
        .claim_build(&master, "kiln-sample", "1.4.12", &claim(&"a".repeat(40)))
        .await
        .unwrap_err();
    assert!(early.to_string().contains("first build"), "{early}");
    let foreign = client
        .claim_build(&master, "kiln-sample", "1.4.11", &claim(&"b".repeat(40)))
        .await
        .unwrap_err();
    assert!(foreign.to_string().contains("409"), "{foreign}");
}

/// The stage commands of the sample project's Bamboo plan, as its jobs run them.
fn bamboo_plan_stages() -> Vec<Vec<String>> {
    let plan = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample-project/ci/bamboo.yml"),
    )
    .unwrap();
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix("- ./kiln "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_bamboo_plan_builds_once_and_records_both_jobs() {
    let app = TestApp::spawn().await;
    let scratch = tempfile::tempdir().unwrap();
    let count = scratch.path().join("builds");
    let stages = bamboo_plan_stages();
    assert_eq!(stages.len(), 2, "the plan has a Unit and a Functional job");
    let runners: Vec<Runner> = stages.iter().map(|_| Runner::new()).collect();
    let head = runners[0].git(&["rev-parse", "HEAD"]);
    let jobs = runners
        .iter()
        .zip(&stages)
        .zip(["UNIT", "FUNC"])
        .map(|((runner, args), job)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut command = runner.kiln(&app, &args);
            command
                .env("bamboo_planRepository_branchName", "feature/bamboo")
                .env("bamboo_buildNumber", "21")
                .env("bamboo_buildResultKey", format!("ACME-SAMPLE-{job}-21"))
                .env(
                    "bamboo_buildResultsUrl",
                    format!("https://bamboo.example.com/browse/ACME-SAMPLE-{job}-21"),
                )
                .env("bamboo_agentId", job)
                .env("bamboo_planRepository_revision", &head)
                // The test's stand-in for the agents' `python -m build` (no downloads).
                .env("KILN_BUILD_CMD", counting_build(&count, 1));
            async move { command.output().await.unwrap() }
        });
    let outputs = futures_util::future::join_all(jobs).await;
    for output in &outputs {
        assert!(output.status.success(), "{}", show(output));
    }
    assert_eq!(builds_in(&count), 1, "one agent builds");
    let status = app
        .client()
        .show_release(
            &"root/feature-bamboo".parse().unwrap(),
            "kiln-sample",
            "1.4.21.dev0+feature.bamboo",
        )
        .await
        .unwrap();
    let [file] = status.files.as_slice() else {
        panic!("one wheel expected: {status:?}")
    };
    let provenance = file.file.provenance.as_ref().unwrap();
    assert_eq!(provenance.commit.as_str(), head);
    assert_eq!(provenance.ci.as_deref(), Some("bamboo"));
    assert_eq!(
        file.stages.keys().map(String::as_str).collect::<Vec<_>>(),
        ["functional", "unit"]
    );
    for (stage, job) in [("unit", "UNIT"), ("functional", "FUNC")] {
        let result = &file.stages[stage];
        assert_eq!(result.outcome, kiln::domain::Outcome::Pass);
        assert_eq!(result.run_id, format!("ACME-SAMPLE-{job}-21"));
        assert_eq!(result.environment["ci"], "bamboo");
        assert_eq!(result.environment["branch"], "feature/bamboo");
    }
}
