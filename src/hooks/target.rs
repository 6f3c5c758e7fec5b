//! Which wheels this runner can install, and the target it builds for when none of a
//! release's wheels serves it.
//!
//! The runner's interpreter is asked for its supported tags (`packaging.tags.sys_tags()`,
//! or pip's vendored copy), most preferred first; the first is the runner's target. With
//! `--target TAG` the runner is taken at its word: it installs wheels tagged `TAG` or pure
//! ones. An interpreter that cannot answer leaves the old rule: the pure wheel if there is
//! one, else the first.

use crate::api::ReleaseFile;
use crate::domain::BuildTarget;
use crate::domain::target::wheel_tags;

/// Asks the interpreter for its tags; prints them one per line.
const TAGS_SCRIPT: &str = "\
try:
    from packaging import tags
except ImportError:
    from pip._vendor.packaging import tags
print('\\n'.join(str(t) for t in tags.sys_tags()))
";

/// What this runner installs.
#[derive(Debug, Clone)]
pub struct RunnerTarget {
    /// The tag a build for this runner is made for.
    pub key: BuildTarget,
    /// Every tag it installs, most preferred first (just `key` when declared).
    supported: Vec<String>,
    /// True when given by `--target` rather than asked of the interpreter.
    declared: bool,
}

impl RunnerTarget {
    /// `--target TAG`: installs `TAG` wheels and pure ones.
    #[must_use]
    pub fn declared(key: BuildTarget) -> Self {
        Self {
            supported: vec![key.as_str().to_owned()],
            key,
            declared: true,
        }
    }

    /// From the interpreter's supported tags, most preferred first.
    #[must_use]
    pub fn from_tags(tags: &[String]) -> Option<Self> {
        let key: BuildTarget = tags.first()?.parse().ok()?;
        Some(Self {
            key,
            supported: tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
            declared: false,
        })
    }

    /// Asks `python` (or takes `declared`); `Err` says why the interpreter could not tell.
    pub async fn detect(python: &str, declared: Option<BuildTarget>) -> Result<Self, String> {
        if let Some(key) = declared {
            return Ok(Self::declared(key));
        }
        let output = tokio::process::Command::new(python)
            .args(["-c", TAGS_SCRIPT])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("`{python}` could not start: {e}"))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "`{python}` could not list its wheel tags: {}",
                said.lines().last().unwrap_or("no output").trim()
            ));
        }
        let tags: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        Self::from_tags(&tags).ok_or_else(|| format!("`{python}` listed no usable wheel tag"))
    }

    /// What this runner installs, asked only when it matters for `files`: with
    /// `declared` (`--target`), that; when every wheel is pure, nothing (any runner
    /// installs them, and no Python is started); otherwise `python`'s tags. An
    /// interpreter that cannot tell is reported, and the old rule applies (`None`).
    pub async fn for_files(
        files: &[ReleaseFile],
        python: &str,
        declared: Option<BuildTarget>,
    ) -> Option<Self> {
        if declared.is_none()
            && files
                .iter()
                .filter(|f| !wheel_tags(&f.filename).is_empty())
                .all(|f| crate::domain::target::is_pure(&f.filename))
        {
            return None;
        }
        match Self::detect(python, declared).await {
            Ok(runner) => Some(runner),
            Err(why) => {
                eprintln!(
                    "kiln: {why}; this runner takes the release's pure wheel if there is one, else its first (pass --target to say which wheel tag it installs)"
                );
                None
            }
        }
    }

    /// How much this runner prefers the wheel (lower is better); `None` if it cannot
    /// install it.
    #[must_use]
    pub fn rank(&self, filename: &str) -> Option<usize> {
        let tags = wheel_tags(filename);
        let best = tags
            .iter()
            .filter_map(|t| self.supported.iter().position(|s| s == t))
            .min();
        match best {
            Some(rank) => Some(rank),
            None if self.declared && tags.iter().any(|t| t.ends_with("-none-any")) => {
                Some(self.supported.len())
            }
            None => None,
        }
    }
}

/// The wheel to pin: for a known target, the one this runner prefers among those it can
/// install (`None` if it can install none); without one, the pure wheel if there is one,
/// else the first.
#[must_use]
pub fn pick_wheel(files: &[ReleaseFile], target: Option<&RunnerTarget>) -> Option<ReleaseFile> {
    let wheels = files
        .iter()
        .filter(|f| f.filename.to_ascii_lowercase().ends_with(".whl"));
    if let Some(target) = target {
        return wheels
            .filter_map(|f| target.rank(&f.filename).map(|r| (r, f)))
            .min_by_key(|(r, f)| (*r, f.filename.clone()))
            .map(|(_, f)| f.clone());
    }
    let wheels: Vec<&ReleaseFile> = wheels.collect();
    wheels
        .iter()
        .find(|f| crate::domain::target::is_pure(&f.filename))
        .or_else(|| wheels.first())
        .map(|f| (*f).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> ReleaseFile {
        ReleaseFile {
            filename: name.into(),
            url: format!("/x/{name}"),
            sha256: "0".repeat(64),
            size: 1,
            provenance: None,
        }
    }

    #[test]
    fn without_a_target_the_pure_wheel_wins() {
        let files = [
            file("p-1.0.tar.gz"),
            file("p-1.0-cp312-cp312-linux_x86_64.whl"),
            file("p-1.0-py3-none-any.whl"),
        ];
        assert_eq!(
            pick_wheel(&files, None).unwrap().filename,
            "p-1.0-py3-none-any.whl"
        );
        assert!(pick_wheel(&files[..1], None).is_none());
    }

    #[test]
    fn a_runner_gets_the_wheel_for_its_interpreter_or_none() {
        let tags: Vec<String> = [
            "cp311-cp311-manylinux_2_36_x86_64",
            "cp311-cp311-linux_x86_64",
            "cp311-abi3-linux_x86_64",
            "py3-none-any",
        ]
        .map(String::from)
        .to_vec();
        let runner = RunnerTarget::from_tags(&tags).unwrap();
        assert_eq!(runner.key.as_str(), "cp311-cp311-manylinux_2_36_x86_64");
        let files = [
            file("p-1.0-cp312-cp312-linux_x86_64.whl"),
            file("p-1.0-cp311-cp311-linux_x86_64.whl"),
        ];
        assert_eq!(
            pick_wheel(&files, Some(&runner)).unwrap().filename,
            "p-1.0-cp311-cp311-linux_x86_64.whl"
        );
        assert!(pick_wheel(&files[..1], Some(&runner)).is_none());
        let pure = [file("p-1.0-py2.py3-none-any.whl")];
        assert!(pick_wheel(&pure, Some(&runner)).is_some());
    }

    #[tokio::test]
    async fn the_interpreter_is_asked_only_when_a_wheel_is_not_pure() {
        let missing = "/nonexistent/python";
        let pure = [file("p-1.0-py3-none-any.whl"), file("p-1.0.tar.gz")];
        assert!(
            RunnerTarget::for_files(&pure, missing, None)
                .await
                .is_none()
        );
        let native = [file("p-1.0-cp311-cp311-linux_x86_64.whl")];
        // Asked, and it cannot answer: the old rule (no target) applies.
        assert!(
            RunnerTarget::for_files(&native, missing, None)
                .await
                .is_none()
        );
        let declared = "cp311-cp311-linux_x86_64".parse().unwrap();
        let runner = RunnerTarget::for_files(&native, missing, Some(declared)).await;
        assert_eq!(runner.unwrap().key.as_str(), "cp311-cp311-linux_x86_64");
    }

    #[test]
    fn a_declared_target_takes_its_tag_or_pure_wheels() {
        let runner = RunnerTarget::declared("cp312-cp312-linux_x86_64".parse().unwrap());
        let files = [
            file("p-1.0-cp311-cp311-linux_x86_64.whl"),
            file("p-1.0-cp312-cp312-linux_x86_64.whl"),
        ];
        assert_eq!(
            pick_wheel(&files, Some(&runner)).unwrap().filename,
            "p-1.0-cp312-cp312-linux_x86_64.whl"
        );
        assert!(pick_wheel(&files[..1], Some(&runner)).is_none());
        assert!(pick_wheel(&[file("p-1.0-py3-none-any.whl")], Some(&runner)).is_some());
    }
}
