//! The Python project being built: its `pyproject.toml`, Kiln's `[tool.kiln]` table, and
//! how the computed version gets into the build.
//!
//! A static `[project].version` is rewritten in a temporary copy of the project (with
//! `toml_edit`, so comments and formatting survive), never in the checkout: a CI workspace
//! is shared by later steps, and a dirty tree confuses them. A dynamic version is handed
//! to setuptools-scm (and hatch-vcs, which uses it) through
//! `SETUPTOOLS_SCM_PRETEND_VERSION` and its per-distribution form, and the build runs in
//! place, because those backends read git to find the files to package.
//!
//! Traps: a dynamic version from another source (`attr:`, flit's `__version__`) ignores
//! those variables; the built wheel's filename is therefore always checked against the
//! computed version, and a mismatch explains this.

use std::path::{Path, PathBuf};

use toml_edit::DocumentMut;

use super::HookError;
use crate::domain::ProjectName;

/// Directories never copied into the temporary build tree: VCS data, virtualenvs, caches
/// and earlier build output (which could otherwise leak stale files into the wheel).
const SKIP_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    "build",
    "dist",
    ".kiln",
];

/// Where the project's version comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// `[project].version = "…"`.
    Static(String),
    /// `version` is listed in `[project].dynamic`.
    Dynamic,
}

/// Kiln's settings in `[tool.kiln]` (all optional; command-line flags win).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KilnTable {
    /// The human part of the version, e.g. `"1.4"`.
    pub base_version: Option<String>,
    /// `build`, `dev`, `post`, `rc`, `local` or a template with `{base}` and `{build}`.
    pub version_scheme: Option<String>,
    /// The index main-branch builds go to, e.g. `"acme/master"`.
    pub master_index: Option<String>,
    /// Branches that build straight into the master index.
    pub main_branches: Option<Vec<String>>,
    /// A shell command that builds the wheel into `$KILN_DIST_DIR`.
    pub build_command: Option<String>,
    /// What a non-tox stage installs besides the wheel, when the project has no `test`
    /// dependency group or extra (read by `hooks::verify::test_requirements`).
    pub test_requires: Option<Vec<String>>,
}

/// A parsed `pyproject.toml`.
#[derive(Debug, Clone)]
pub struct PyProject {
    /// The project directory.
    pub dir: PathBuf,
    /// The normalized project name.
    pub name: ProjectName,
    /// Where the version comes from.
    pub version: VersionSource,
    /// `[tool.kiln]`.
    pub kiln: KilnTable,
    text: String,
}

impl PyProject {
    /// Reads `<dir>/pyproject.toml`.
    pub fn read(dir: &Path, name_override: Option<&str>) -> Result<Self, HookError> {
        let path = dir.join("pyproject.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            HookError::Project(format!(
                "reading `{}`: {e} (run from the project root or pass --project-dir)",
                path.display()
            ))
        })?;
        Self::parse(dir, &text, name_override)
    }

    /// Parses the text of a `pyproject.toml` found in `dir`.
    pub fn parse(dir: &Path, text: &str, name_override: Option<&str>) -> Result<Self, HookError> {
        let bad = |what: String| {
            HookError::Project(format!(
                "`{}`: {what}",
                dir.join("pyproject.toml").display()
            ))
        };
        let doc: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let project = doc.get("project").and_then(toml::Value::as_table);
        let raw_name = name_override
            .map(str::to_owned)
            .or_else(|| {
                project
                    .and_then(|p| p.get("name"))
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| bad("no `[project].name`; add it or pass --project".into()))?;
        let name = ProjectName::new(&raw_name).map_err(|e| bad(format!("project name: {e}")))?;
        let dynamic = project
            .and_then(|p| p.get("dynamic"))
            .and_then(toml::Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v.as_str() == Some("version")));
        let version = match project
            .and_then(|p| p.get("version"))
            .and_then(toml::Value::as_str)
        {
            Some(v) => VersionSource::Static(v.to_owned()),
            None if dynamic => VersionSource::Dynamic,
            None => {
                return Err(bad(
                    "`[project]` has neither `version` nor `dynamic = [\"version\"]`".into(),
                ));
            }
        };
        let kiln = match doc.get("tool").and_then(|t| t.get("kiln")) {
            Some(table) => table
                .clone()
                .try_into()
                .map_err(|e| bad(format!("`[tool.kiln]`: {e}")))?,
            None => KilnTable::default(),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            name,
            version,
            kiln,
            text: text.to_owned(),
        })
    }

    /// The whole `pyproject.toml` as read (for tables Kiln reads on demand, like the test
    /// requirements), parsed again from the text kept at [`PyProject::read`].
    pub fn table(&self) -> Result<toml::Table, HookError> {
        toml::from_str(&self.text).map_err(|e| {
            HookError::Project(format!(
                "`{}`: {e}",
                self.dir.join("pyproject.toml").display()
            ))
        })
    }

    /// The human version part: the flag, else `[tool.kiln] base-version`, else a static
    /// `[project].version`.
    pub fn base_version(&self, flag: Option<&str>) -> Result<String, HookError> {
        flag.map(str::to_owned)
            .or_else(|| self.kiln.base_version.clone())
            .or_else(|| match &self.version {
                VersionSource::Static(v) => Some(v.clone()),
                VersionSource::Dynamic => None,
            })
            .ok_or_else(|| {
                HookError::Project(
                    "no base version: set `base-version = \"1.4\"` under `[tool.kiln]` in pyproject.toml, or pass --base-version".into(),
                )
            })
    }

    /// Prepares a tree to build `version` from, and the environment the build needs.
    pub fn prepare(&self, version: &str) -> Result<BuildSource, HookError> {
        match &self.version {
            VersionSource::Static(_) => {
                let temp = tempfile::Builder::new()
                    .prefix("kiln-build-")
                    .tempdir()
                    .map_err(|e| HookError::Io(format!("creating a temporary build tree: {e}")))?;
                copy_tree(&self.dir, temp.path())?;
                let rewritten = with_version(&self.text, version)?;
                std::fs::write(temp.path().join("pyproject.toml"), rewritten).map_err(|e| {
                    HookError::Io(format!("writing the build tree's pyproject.toml: {e}"))
                })?;
                Ok(BuildSource {
                    dir: temp.path().to_path_buf(),
                    env: Vec::new(),
                    _temp: Some(temp),
                })
            }
            VersionSource::Dynamic => {
                let per_dist = format!(
                    "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{}",
                    self.name.as_str().replace(['-', '.'], "_").to_uppercase()
                );
                Ok(BuildSource {
                    dir: self.dir.clone(),
                    env: vec![
                        ("SETUPTOOLS_SCM_PRETEND_VERSION".into(), version.to_owned()),
                        (per_dist, version.to_owned()),
                    ],
                    _temp: None,
                })
            }
        }
    }
}

/// A tree ready to build, and what the build's environment needs.
#[derive(Debug)]
pub struct BuildSource {
    /// The directory to build in.
    pub dir: PathBuf,
    /// Extra environment for the build.
    pub env: Vec<(String, String)>,
    _temp: Option<tempfile::TempDir>,
}

/// `text` with `[project].version` set to `version`, everything else kept as written.
pub fn with_version(text: &str, version: &str) -> Result<String, HookError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| HookError::Project(format!("pyproject.toml: {e}")))?;
    let project = doc
        .get_mut("project")
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| HookError::Project("pyproject.toml has no `[project]` table".into()))?;
    let decor = project
        .get("version")
        .and_then(toml_edit::Item::as_value)
        .map(|v| v.decor().clone());
    let mut value = toml_edit::Value::from(version);
    if let Some(decor) = decor {
        *value.decor_mut() = decor;
    }
    project.insert("version", toml_edit::Item::Value(value));
    Ok(doc.to_string())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), HookError> {
    let io = |what: &Path, e: std::io::Error| {
        HookError::Io(format!(
            "copying `{}` into the build tree: {e}",
            what.display()
        ))
    };
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        let target = to.join(&name);
        if kind.is_dir() {
            let name = name.to_string_lossy();
            if SKIP_DIRS.contains(&name.as_ref()) || name.ends_with(".egg-info") {
                continue;
            }
            std::fs::create_dir(&target).map_err(|e| io(&path, e))?;
            copy_tree(&path, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target).map_err(|e| io(&path, e))?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            #[cfg(unix)]
            std::os::unix::fs::symlink(link, &target).map_err(|e| io(&path, e))?;
            #[cfg(not(unix))]
            let _ = link;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATIC: &str = r#"# the demo project
[build-system]
requires = ["flit_core>=3.4"]
build-backend = "flit_core.buildapi"

[project]
name = "Demo_App"
version = "1.4"   # bumped by hand
description = "x"

[tool.kiln]
version-scheme = "dev"
"#;

    #[test]
    fn reads_static_projects_and_the_kiln_table() {
        let project = PyProject::parse(Path::new("/p"), STATIC, None).unwrap();
        assert_eq!(project.name.as_str(), "demo-app");
        assert_eq!(project.version, VersionSource::Static("1.4".into()));
        assert_eq!(project.kiln.version_scheme.as_deref(), Some("dev"));
        assert_eq!(project.base_version(None).unwrap(), "1.4");
        assert_eq!(project.base_version(Some("2.0")).unwrap(), "2.0");
    }

    #[test]
    fn rewrites_the_version_keeping_formatting() {
        let out = with_version(STATIC, "1.4.dev57").unwrap();
        assert!(
            out.contains("version = \"1.4.dev57\"   # bumped by hand"),
            "{out}"
        );
        assert!(out.starts_with("# the demo project\n"));
        assert_eq!(out.replace("1.4.dev57", "1.4"), STATIC);
    }

    #[test]
    fn dynamic_versions_use_pretend_variables() {
        let text = "[project]\nname = \"my.pkg\"\ndynamic = [\"version\"]\n[tool.kiln]\nbase-version = \"3.1\"\n";
        let project = PyProject::parse(Path::new("/p"), text, None).unwrap();
        assert_eq!(project.version, VersionSource::Dynamic);
        assert_eq!(project.base_version(None).unwrap(), "3.1");
        let source = project.prepare("3.1.9").unwrap();
        assert_eq!(source.dir, Path::new("/p"));
        assert!(source.env.contains(&(
            "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_MY_PKG".into(),
            "3.1.9".into()
        )));
    }

    #[test]
    fn explains_what_is_missing() {
        let no_version = PyProject::parse(Path::new("/p"), "[project]\nname = \"a\"\n", None);
        assert!(
            no_version
                .unwrap_err()
                .to_string()
                .contains("neither `version`")
        );
        let no_base = PyProject::parse(
            Path::new("/p"),
            "[project]\nname = \"a\"\ndynamic = [\"version\"]\n",
            None,
        )
        .unwrap();
        assert!(
            no_base
                .base_version(None)
                .unwrap_err()
                .to_string()
                .contains("--base-version")
        );
        let typo = PyProject::parse(
            Path::new("/p"),
            "[project]\nname = \"a\"\nversion = \"1\"\n[tool.kiln]\nbase-verison = \"1\"\n",
            None,
        );
        assert!(typo.unwrap_err().to_string().contains("base-verison"));
    }
}
