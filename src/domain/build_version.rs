//! The version of a CI build: a human part (`1.4`) combined with the build number (`57`)
//! by a scheme (`{base}.{build}` → `1.4.57`).
//!
//! The human part may be written the Python way (`1.4`, `2.0rc1`) or the semver way
//! (`1.4.0`, `1.4.0-rc.1`); semver pre-releases are mapped to their PEP 440 spelling
//! (`alpha.N` → `aN`, `beta.N` → `bN`, `rc.N` → `rcN`). Whatever the scheme, the result
//! must be a valid PEP 440 version — pip and uv see nothing else — and it is returned
//! normalized, the spelling that appears in the wheel's filename.
//!
//! Traps: a scheme that appends a release segment after a pre-release (`2.0rc1` +
//! `{base}.{build}`) is not PEP 440 and is refused with the reason; semver build metadata
//! (`+sha.abc`) has no PEP 440 equivalent that sorts, so it is refused too.

use std::str::FromStr;

use pep440_rs::Version;

/// A named or templated way to combine base version and build number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionScheme {
    template: String,
}

/// Why a version could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The human part is unusable.
    #[error(
        "base version `{0}` is not a PEP 440 or semver version (e.g. `1.4`, `1.4.0`, `2.0rc1`)"
    )]
    BadBase(String),
    /// A semver pre-release that has no PEP 440 form.
    #[error(
        "base version `{0}`: semver pre-release `{1}` has no PEP 440 form (use alpha.N, beta.N or rc.N)"
    )]
    BadPrerelease(String, String),
    /// Semver build metadata.
    #[error(
        "base version `{0}` has semver build metadata (`+…`), which PEP 440 versions cannot carry"
    )]
    BuildMetadata(String),
    /// A template without `{build}` (or `{base}`).
    #[error(
        "version scheme `{0}` must contain `{{base}}` and `{{build}}`, or be one of: build, dev, post, rc, local"
    )]
    BadScheme(String),
    /// The combination is not PEP 440.
    #[error(
        "version scheme `{scheme}` turns base `{base}` and build {build} into `{result}`, which is not a valid PEP 440 version; choose another scheme (e.g. `dev`: `{{base}}.dev{{build}}`)"
    )]
    NotPep440 {
        /// The scheme template.
        scheme: String,
        /// The base.
        base: String,
        /// The build number.
        build: u64,
        /// What it produced.
        result: String,
    },
}

impl VersionScheme {
    /// The default: `{base}.{build}`.
    #[must_use]
    pub fn default_scheme() -> Self {
        Self {
            template: "{base}.{build}".into(),
        }
    }

    /// The template, e.g. `{base}.dev{build}`.
    #[must_use]
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Combines a base version and a build number into a normalized PEP 440 version.
    pub fn apply(&self, base: &str, build: u64) -> Result<Version, VersionError> {
        let base_pep440 = base_to_pep440(base)?;
        let result = self
            .template
            .replace("{base}", &base_pep440)
            .replace("{build}", &build.to_string());
        Version::from_str(&result).map_err(|_| VersionError::NotPep440 {
            scheme: self.template.clone(),
            base: base.to_owned(),
            build,
            result,
        })
    }
}

/// The version of a build on a branch that is not a main branch: one no main-branch build
/// can produce, sorting just below the main build of the same number, and never matched
/// by a pin of a main version. `1.4.57` on `feature/login` is `1.4.57.dev0+feature.login`:
/// a dev release of it (so `==1.4.57` and `>=1.4.57` skip it, and production's 1.4.57 is
/// never shadowed on the branch's index) with the branch as its local label. A version that
/// already has a dev part only gains the label; one with a local part gains the branch
/// inside it.
pub fn branch_version(main: &Version, branch_slug: &str) -> Result<Version, VersionError> {
    let label: String = branch_slug
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '.'
            }
        })
        .collect::<String>()
        .split('.')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    let label: String = label.chars().take(48).collect();
    let label = label.trim_end_matches('.');
    let text = main.to_string();
    let (public, local) = match text.split_once('+') {
        Some((public, local)) => (public.to_owned(), Some(local.to_owned())),
        None => (text.clone(), None),
    };
    let public = if main.is_dev() {
        public
    } else {
        format!("{public}.dev0")
    };
    let result = match (local, label.is_empty()) {
        (Some(local), false) => format!("{public}+{local}.{label}"),
        (Some(local), true) => format!("{public}+{local}"),
        (None, false) => format!("{public}+{label}"),
        (None, true) => public,
    };
    Version::from_str(&result).map_err(|_| VersionError::NotPep440 {
        scheme: "branch builds: {version}.dev0+{branch}".into(),
        base: text,
        build: 0,
        result,
    })
}

impl Default for VersionScheme {
    fn default() -> Self {
        Self::default_scheme()
    }
}

impl FromStr for VersionScheme {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let template = match text.trim() {
            "build" => "{base}.{build}",
            "dev" => "{base}.dev{build}",
            "post" => "{base}.post{build}",
            "rc" => "{base}rc{build}",
            "local" => "{base}+build{build}",
            other if other.contains("{base}") && other.contains("{build}") => other,
            other => return Err(VersionError::BadScheme(other.to_owned())),
        };
        Ok(Self {
            template: template.to_owned(),
        })
    }
}

/// The PEP 440 spelling of a human version part given either way.
fn base_to_pep440(base: &str) -> Result<String, VersionError> {
    let trimmed = base.trim();
    let text = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    if let Ok(semver) = semver::Version::parse(text) {
        if !semver.build.is_empty() {
            return Err(VersionError::BuildMetadata(base.to_owned()));
        }
        let release = format!("{}.{}.{}", semver.major, semver.minor, semver.patch);
        if semver.pre.is_empty() {
            return Ok(release);
        }
        let pre = semver.pre.as_str();
        let (label, number) = pre.split_once('.').unwrap_or((pre, "0"));
        let short = match label {
            "alpha" | "a" => "a",
            "beta" | "b" => "b",
            "rc" | "c" => "rc",
            _ => return Err(VersionError::BadPrerelease(base.to_owned(), pre.to_owned())),
        };
        if number.parse::<u64>().is_err() {
            return Err(VersionError::BadPrerelease(base.to_owned(), pre.to_owned()));
        }
        return Ok(format!("{release}{short}{number}"));
    }
    Version::from_str(text)
        .map(|v| v.to_string())
        .map_err(|_| VersionError::BadBase(base.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_versions_never_collide_with_main_ones() {
        let v = |text: &str| Version::from_str(text).unwrap();
        let branch = |main: &str, slug: &str| branch_version(&v(main), slug).unwrap().to_string();
        assert_eq!(
            branch("1.4.57", "feature-login-form"),
            "1.4.57.dev0+feature.login.form"
        );
        assert!(v(&branch("2.3.3", "jenk")) < v("2.3.3"));
        assert!(v(&branch("2.3.3", "jenk")) > v("2.3.2"));
        // a pin of the main version never matches the branch build
        let pinned = pep440_rs::VersionSpecifiers::from_str("==2.3.3").unwrap();
        assert!(!pinned.contains(&v(&branch("2.3.3", "jenk"))));
        assert_eq!(branch("1.4.dev57", "x"), "1.4.dev57+x");
        assert_eq!(branch("1.4rc57", "x"), "1.4rc57.dev0+x");
        assert_eq!(branch("1.4+build57", "fix-1"), "1.4.dev0+build57.fix.1");
        assert_eq!(branch("1.4.57", "--"), "1.4.57.dev0");
    }

    fn compute(scheme: &str, base: &str, build: u64) -> Result<String, VersionError> {
        scheme
            .parse::<VersionScheme>()
            .and_then(|s| s.apply(base, build))
            .map(|v| v.to_string())
    }

    #[test]
    fn schemes() {
        assert_eq!(compute("build", "1.4", 57).unwrap(), "1.4.57");
        assert_eq!(compute("dev", "1.4", 57).unwrap(), "1.4.dev57");
        assert_eq!(compute("post", "1.4", 57).unwrap(), "1.4.post57");
        assert_eq!(compute("rc", "2.0", 3).unwrap(), "2.0rc3");
        assert_eq!(compute("local", "1.4", 57).unwrap(), "1.4+build57");
        assert_eq!(compute("{base}.0.{build}", "1", 5).unwrap(), "1.0.5");
        assert_eq!(
            VersionScheme::default()
                .apply("1.4", 57)
                .unwrap()
                .to_string(),
            "1.4.57"
        );
    }

    #[test]
    fn semver_bases_map_to_pep440() {
        assert_eq!(compute("build", "1.4.0", 7).unwrap(), "1.4.0.7");
        assert_eq!(compute("dev", "v1.4.0-rc.1", 7).unwrap(), "1.4.0rc1.dev7");
        assert_eq!(compute("dev", "2.0.0-beta.2", 1).unwrap(), "2.0.0b2.dev1");
        insta::assert_snapshot!(compute("dev", "1.0.0-snapshot", 1).unwrap_err(), @"base version `1.0.0-snapshot`: semver pre-release `snapshot` has no PEP 440 form (use alpha.N, beta.N or rc.N)");
        insta::assert_snapshot!(compute("dev", "1.0.0+abc", 1).unwrap_err(), @"base version `1.0.0+abc` has semver build metadata (`+…`), which PEP 440 versions cannot carry");
    }

    #[test]
    fn invalid_combinations_explain_themselves() {
        insta::assert_snapshot!(compute("build", "2.0rc1", 5).unwrap_err(), @"version scheme `{base}.{build}` turns base `2.0rc1` and build 5 into `2.0rc1.5`, which is not a valid PEP 440 version; choose another scheme (e.g. `dev`: `{base}.dev{build}`)");
        insta::assert_snapshot!(compute("nightly", "1", 1).unwrap_err(), @"version scheme `nightly` must contain `{base}` and `{build}`, or be one of: build, dev, post, rc, local");
        insta::assert_snapshot!(compute("build", "one.two", 1).unwrap_err(), @"base version `one.two` is not a PEP 440 or semver version (e.g. `1.4`, `1.4.0`, `2.0rc1`)");
    }
}
