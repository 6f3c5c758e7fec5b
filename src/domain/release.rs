//! A release: one project's one version, as builds, results and promotions name it.

use std::str::FromStr;

use pep440_rs::Version;

use super::ProjectName;

/// A release on one index: what a build produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Normalized project name.
    pub project: ProjectName,
    /// The version, normalized.
    pub version: Version,
    version_text: String,
}

impl Release {
    /// Parses the project and version from a request, naming the bad part.
    pub fn parse(project: &str, version: &str) -> Result<Self, String> {
        let project = ProjectName::new(project).map_err(|e| format!("project `{project}`: {e}"))?;
        let version = Version::from_str(version).map_err(|_| {
            format!(
                "`{}` is not a valid PEP 440 version",
                version.escape_debug()
            )
        })?;
        let version_text = canonical(&version);
        Ok(Self {
            project,
            version,
            version_text,
        })
    }

    /// True if a stored file version is this release's (PEP 440 equality: `1.0 == 1.0.0`).
    #[must_use]
    pub fn matches(&self, file_version: &str) -> bool {
        Version::from_str(file_version).is_ok_and(|v| v == self.version)
    }

    /// The version as the build key stores it: normalized, trailing `.0`s dropped, so
    /// `1.0` and `1.0.0` (equal under PEP 440) are one build.
    #[must_use]
    pub fn version_str(&self) -> &str {
        &self.version_text
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.project, self.version_text)
    }
}

/// The normalized spelling of `version` without trailing zero release segments.
#[must_use]
pub fn canonical(version: &Version) -> String {
    let release = version.release();
    let keep = release.iter().rposition(|n| *n != 0).map_or(1, |i| i + 1);
    version
        .clone()
        .with_release(release[..keep].to_vec())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_versions_are_one_release() {
        let a = Release::parse("Demo_Pkg", "1.0").unwrap();
        let b = Release::parse("demo-pkg", "1.0.0").unwrap();
        assert_eq!(a.version_str(), b.version_str());
        assert!(a.matches("1.0.0"));
        assert!(Release::parse("demo", "one").unwrap_err().contains("`one`"));
    }
}
