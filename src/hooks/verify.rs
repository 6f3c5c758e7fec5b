//! Proving a stage tested the wheel: the environment a non-tox stage command runs in, and
//! the probe that checks, after the command, which files the project's import packages
//! resolve to.
//!
//! A stage command that is not tox gets a fresh virtual environment (`venv`, with pip;
//! installed into by uv when it is on `PATH`, else by pip) with the exact wheel file installed (downloaded and checked
//! against its sha256) plus the project's test requirements, first on `PATH` with
//! `VIRTUAL_ENV` set. tox keeps `--installpkg` and is probed in its own environments.
//!
//! The probe runs the environment's Python from the command's working directory (so the
//! current directory is first on `sys.path`, as for `python -m pytest`) and answers
//! `verified` only when the distribution is installed from the wheel (it has a RECORD, is
//! not editable, has the tested version) and every top-level import package of the wheel
//! resolves to a file that RECORD lists. Otherwise it answers `unverified: <why>` — for a
//! flat-layout project run from its root, that the source tree shadows the wheel, and how
//! to fix it.
//!
//! Traps: the probe sees what a fresh import sees from that directory; a test runner that
//! rewrites `sys.path` differently (pytest's default `prepend` import mode inserts the
//! test files' root) is approximated by the same rule, which is why a flat layout is
//! reported even when a particular run happened to import the wheel.

use std::path::{Path, PathBuf};

use super::HookError;
use crate::domain::ArtifactCheck;

/// The probe, run with `python -c`; prints one JSON object `{"verified": bool, "reason": str}`.
const PROBE: &str = r#"
import json, os, sys, importlib.util, importlib.metadata as md
def check():
    name = os.environ["PROBE_DIST"]
    versions = set(os.environ["PROBE_VERSIONS"].split(","))
    modules = [m for m in os.environ["PROBE_MODULES"].split(",") if m]
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return False, "%s is not installed in %s" % (name, sys.prefix)
    if dist.version not in versions:
        return False, "%s has %s %s, not the tested %s" % (sys.prefix, name, dist.version, sorted(versions)[0])
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        return False, "%s is installed editable from %s, not from the wheel" % (name, json.loads(direct).get("url"))
    files = set()
    for f in dist.files or []:
        files.add(os.path.realpath(str(dist.locate_file(f))))
    if not files:
        return False, "%s has no RECORD in %s: it was not installed from a wheel" % (name, sys.prefix)
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except Exception as e:
            return False, "`import %s` failed: %s" % (module, e)
        if spec is None:
            return False, "`import %s` finds nothing in %s" % (module, sys.prefix)
        origin = spec.origin
        if origin in (None, "namespace") and spec.submodule_search_locations:
            found = [p for p in spec.submodule_search_locations]
            if any(os.path.realpath(p).startswith(os.path.realpath(os.getcwd()) + os.sep) and not os.path.realpath(p).startswith(os.path.realpath(sys.prefix)) for p in found):
                return False, "`import %s` resolves to the source tree (%s), which shadows the installed wheel" % (module, found[0])
            continue
        if os.path.realpath(origin) not in files:
            return False, ("`import %s` resolves to %s, not to the installed wheel: the source tree shadows it "
                           "(use a src layout, pytest --import-mode=importlib, or run the tests from another directory, e.g. tox changedir)") % (module, origin)
    return True, "%s %s imported from the wheel's files in %s" % (name, dist.version, sys.prefix)
ok, reason = check()
print(json.dumps({"verified": ok, "reason": reason}))
"#;

/// The environment a non-tox stage command runs in.
#[derive(Debug, Clone)]
pub struct StageEnv {
    /// The virtual environment.
    pub dir: PathBuf,
    /// Its `bin` directory, put first on `PATH`.
    pub bin: PathBuf,
    /// Its Python.
    pub python: PathBuf,
}

/// What the stage installs besides the wheel, and where the list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequirements {
    /// `[dependency-groups] test`, `[project.optional-dependencies] tests`, … or none.
    pub source: Option<String>,
    /// PEP 508 requirement strings.
    pub requirements: Vec<String>,
}

fn strings(value: Option<&toml::Value>) -> Option<Vec<String>> {
    value.and_then(toml::Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(toml::Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// A PEP 735 group's requirements, following `{include-group = "…"}` (each group once).
fn group(groups: &toml::Table, name: &str, seen: &mut Vec<String>) -> Vec<String> {
    if seen.iter().any(|s| s == name) {
        return Vec::new();
    }
    seen.push(name.to_owned());
    let mut out = Vec::new();
    for item in groups
        .get(name)
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(requirement) = item.as_str() {
            out.push(requirement.to_owned());
        } else if let Some(included) = item.get("include-group").and_then(toml::Value::as_str) {
            out.extend(group(groups, included, seen));
        }
    }
    out
}

/// The project's test requirements: a PEP 735 `test`/`tests` dependency group, else a
/// `test`/`tests` extra, else `[tool.kiln] test-requires`.
#[must_use]
pub fn test_requirements(doc: &toml::Table) -> TestRequirements {
    let groups = doc.get("dependency-groups").and_then(toml::Value::as_table);
    for name in ["test", "tests"] {
        if let Some(groups) = groups
            && groups.contains_key(name)
        {
            return TestRequirements {
                source: Some(format!("[dependency-groups] {name}")),
                requirements: group(groups, name, &mut Vec::new()),
            };
        }
    }
    let extras = doc
        .get("project")
        .and_then(|p| p.get("optional-dependencies"));
    for name in ["test", "tests"] {
        if let Some(list) = strings(extras.and_then(|e| e.get(name))) {
            return TestRequirements {
                source: Some(format!("[project.optional-dependencies] {name}")),
                requirements: list,
            };
        }
    }
    match strings(
        doc.get("tool")
            .and_then(|t| t.get("kiln"))
            .and_then(|k| k.get("test-requires")),
    ) {
        Some(list) => TestRequirements {
            source: Some("[tool.kiln] test-requires".into()),
            requirements: list,
        },
        None => TestRequirements {
            source: None,
            requirements: Vec::new(),
        },
    }
}

/// The top-level import names a wheel provides (its modules and packages outside
/// `.dist-info` and `.data`).
pub fn wheel_modules(wheel: &Path) -> Result<Vec<String>, HookError> {
    let unreadable =
        |e: &dyn std::fmt::Display| HookError::Io(format!("reading `{}`: {e}", wheel.display()));
    let file = std::fs::File::open(wheel).map_err(|e| unreadable(&e))?;
    let archive = zip::ZipArchive::new(file).map_err(|e| unreadable(&e))?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter_map(|path| {
            let (top, rest) = match path.split_once('/') {
                Some((top, rest)) => (top, Some(rest)),
                None => (path, None),
            };
            let extension = Path::new(top)
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            if matches!(extension.as_deref(), Some("dist-info" | "data")) || top == "__pycache__" {
                return None;
            }
            match rest {
                Some(_) => Some(top.to_owned()),
                None => top
                    .strip_suffix(".py")
                    .or_else(|| top.split_once('.').map(|(stem, _)| stem))
                    .filter(|stem| !stem.is_empty())
                    .map(str::to_owned),
            }
        })
        .filter(|name| name.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

async fn run_quiet(mut command: tokio::process::Command, what: &str) -> Result<String, String> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            crate::api::tail(stderr.trim(), 2000)
        ))
    }
}

async fn has_uv() -> bool {
    tokio::process::Command::new("uv")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Creates the stage environment in `dir` with `wheel` and the test requirements
/// installed, from the indexes and constraints in `env`. An `Err` is a reason the stage
/// could not run (an infrastructure problem, not a test failure).
pub async fn prepare(
    dir: &Path,
    base_python: &str,
    wheel: &Path,
    constraints: &Path,
    requirements: &TestRequirements,
    env: &[(String, String)],
) -> Result<StageEnv, String> {
    let bin = dir.join("bin");
    let python = bin.join("python");
    let uv = has_uv().await;
    // `venv` (not `uv venv`) so the environment has pip, as stage commands often expect;
    // ensurepip needs no index. uv, when present, only installs (fast).
    let mut create = tokio::process::Command::new(base_python);
    create.args(["-m", "venv"]).arg(dir);
    create.envs(env.iter().map(|(k, v)| (k, v)));
    run_quiet(create, "creating the stage environment").await?;
    let mut install = if uv {
        let mut c = tokio::process::Command::new("uv");
        c.args(["pip", "install", "--quiet", "--python"])
            .arg(&python);
        c
    } else {
        let mut c = tokio::process::Command::new(&python);
        c.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ]);
        c
    };
    install
        .arg(wheel)
        .args(&requirements.requirements)
        .arg("--constraint")
        .arg(constraints)
        .envs(env.iter().map(|(k, v)| (k, v)));
    run_quiet(
        install,
        &format!(
            "installing the wheel{} into the stage environment",
            requirements
                .source
                .as_ref()
                .map(|s| format!(" and the test requirements ({s})"))
                .unwrap_or_default()
        ),
    )
    .await?;
    Ok(StageEnv {
        dir: dir.to_path_buf(),
        bin,
        python,
    })
}

/// What the probe needs to know about the tested wheel.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The distribution name.
    pub project: String,
    /// Version spellings that count as the tested one (the computed version, the wheel
    /// filename's).
    pub versions: Vec<String>,
    /// The wheel's top-level import names.
    pub modules: Vec<String>,
}

/// Runs the probe with `python` from `cwd`.
pub async fn probe(python: &Path, cwd: &Path, expected: &Expected) -> ArtifactCheck {
    let mut command = tokio::process::Command::new(python);
    command
        .args(["-c", PROBE])
        .current_dir(cwd)
        .env("PROBE_DIST", &expected.project)
        .env("PROBE_VERSIONS", expected.versions.join(","))
        .env("PROBE_MODULES", expected.modules.join(","))
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    match run_quiet(command, "checking what the stage imported").await {
        Ok(stdout) => match serde_json::from_str::<serde_json::Value>(stdout.trim()) {
            Ok(answer) if answer["verified"] == true => ArtifactCheck::Verified,
            Ok(answer) => ArtifactCheck::Unverified(
                answer["reason"]
                    .as_str()
                    .unwrap_or("the probe gave no reason")
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(480)
                    .collect(),
            ),
            Err(e) => ArtifactCheck::Unverified(format!("the probe answered no JSON: {e}")),
        },
        Err(why) => {
            ArtifactCheck::Unverified(why.chars().filter(|c| !c.is_control()).take(480).collect())
        }
    }
}

/// The environments a tox command ran in: its `-e` list, else every environment under
/// `.tox` (tox's packaging environments aside).
#[must_use]
pub fn tox_pythons(argv: &[String], cwd: &Path) -> Vec<(String, PathBuf)> {
    let work = cwd.join(".tox");
    let mut names: Vec<String> = Vec::new();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        let list = if arg == "-e" || arg == "--env" {
            rest.next().cloned()
        } else {
            arg.strip_prefix("-e")
                .or_else(|| arg.strip_prefix("--env="))
                .filter(|rest| !rest.is_empty())
                .map(str::to_owned)
        };
        if let Some(list) = list {
            names.extend(
                list.split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty()),
            );
        }
    }
    if names.is_empty() {
        names = std::fs::read_dir(&work)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
    }
    names
        .into_iter()
        .map(|name| {
            let python = work.join(&name).join("bin").join("python");
            (name, python)
        })
        .collect()
}

/// Probes every tox environment the command ran in; verified only when each is.
pub async fn probe_tox(argv: &[String], cwd: &Path, expected: &Expected) -> ArtifactCheck {
    let envs = tox_pythons(argv, cwd);
    if envs.is_empty() {
        return ArtifactCheck::Unverified(format!(
            "no tox environment found under `{}` to check",
            cwd.join(".tox").display()
        ));
    }
    for (name, python) in envs {
        if !python.exists() {
            return ArtifactCheck::Unverified(format!(
                "tox environment `{name}` has no Python at `{}` to check",
                python.display()
            ));
        }
        if let ArtifactCheck::Unverified(reason) = probe(&python, cwd, expected).await {
            return ArtifactCheck::Unverified(format!("tox environment `{name}`: {reason}"));
        }
    }
    ArtifactCheck::Verified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn test_requirements_come_from_groups_then_extras_then_kiln() {
        let groups = table(
            "[dependency-groups]\nlint = [\"ruff\"]\ntest = [\"pytest\", {include-group = \"lint\"}]\n[project.optional-dependencies]\ntest = [\"nose\"]\n",
        );
        assert_eq!(
            test_requirements(&groups),
            TestRequirements {
                source: Some("[dependency-groups] test".into()),
                requirements: vec!["pytest".into(), "ruff".into()],
            }
        );
        let extras = table(
            "[project.optional-dependencies]\ntests = [\"pytest>=8\"]\n[tool.kiln]\ntest-requires = [\"x\"]\n",
        );
        assert_eq!(
            extras_source(&extras),
            "[project.optional-dependencies] tests"
        );
        let kiln = table("[tool.kiln]\ntest-requires = [\"hypothesis\"]\n");
        assert_eq!(test_requirements(&kiln).requirements, ["hypothesis"]);
        // ...and `[tool.kiln]` accepts the key (its other keys are checked strictly).
        let project = crate::hooks::project::PyProject::parse(
            Path::new("/p"),
            "[project]\nname = \"p\"\nversion = \"1.0\"\n[tool.kiln]\ntest-requires = [\"hypothesis\"]\n",
            None,
        )
        .unwrap();
        assert_eq!(project.kiln.test_requires.unwrap(), ["hypothesis"]);
        assert_eq!(test_requirements(&table("")).source, None);
        // a group including itself is read once
        let cyclic = table("[dependency-groups]\ntest = [\"a\", {include-group = \"test\"}]\n");
        assert_eq!(test_requirements(&cyclic).requirements, ["a"]);
    }

    fn extras_source(doc: &toml::Table) -> String {
        test_requirements(doc).source.unwrap()
    }

    #[test]
    fn tox_environments_come_from_the_command_line() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cwd = Path::new("/w");
        let names = |argv: &[String]| {
            tox_pythons(argv, cwd)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&args(&["tox", "-e", "unit,functional"])),
            ["unit", "functional"]
        );
        assert_eq!(names(&args(&["tox", "-eunit"])), ["unit"]);
        assert_eq!(
            names(&args(&["tox", "--env=lint", "--", "-e", "x"])),
            ["lint"]
        );
        assert_eq!(
            tox_pythons(&args(&["tox", "-e", "unit"]), cwd)[0].1,
            Path::new("/w/.tox/unit/bin/python")
        );
    }
}
