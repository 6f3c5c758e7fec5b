//! Project names as PEP 503 / PEP 508 define them.
//!
//! A [`ProjectName`] is always *normalized* (lowercase, runs of `-`, `_`, `.` collapsed to
//! one `-`), so two spellings of the same project can never be stored apart. The raw
//! spelling a user uploaded is kept separately where it is shown (the "display name").
//!
//! Traps: a wheel filename escapes `-` to `_` (PEP 427), so `my_pkg-1.0-...whl` and an sdist
//! `my-pkg-1.0.tar.gz` are the same project; names are ASCII only, so unicode look-alikes
//! are refused here rather than normalized into collisions.

use std::fmt;

/// Why a string is not a valid project name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectNameError {
    /// The name was empty.
    #[error("project name is empty")]
    Empty,
    /// The name is longer than [`ProjectName::MAX_LEN`].
    #[error("project name `{0}` is longer than {max} characters", max = ProjectName::MAX_LEN)]
    TooLong(String),
    /// The name contains a character outside ASCII letters, digits, `.`, `_` and `-`.
    #[error(
        "project name `{0}` may contain only ASCII letters, digits, `.`, `_` and `-`, and must start and end with a letter or digit"
    )]
    Invalid(String),
}

/// A normalized Python project name (PEP 503).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectName(String);

impl ProjectName {
    /// Longest name accepted; PyPI has no hard limit, but nothing real comes close.
    pub const MAX_LEN: usize = 200;

    /// Validates `raw` per PEP 508 and returns its normalized form.
    pub fn new(raw: &str) -> Result<Self, ProjectNameError> {
        if raw.is_empty() {
            return Err(ProjectNameError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ProjectNameError::TooLong(raw.chars().take(40).collect()));
        }
        let bytes = raw.as_bytes();
        let valid_inner = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let valid_ends =
            bytes[0].is_ascii_alphanumeric() && bytes[bytes.len() - 1].is_ascii_alphanumeric();
        if !valid_inner || !valid_ends {
            return Err(ProjectNameError::Invalid(raw.escape_debug().to_string()));
        }
        Ok(Self(normalize(raw)))
    }

    /// The normalized name, e.g. `my-pkg`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn normalize(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_separator_run = false;
    for c in raw.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_separator_run = false;
        }
    }
    out
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a name that must already be normalized (as stored): `Foo_Bar` is an error
/// here, where [`ProjectName::new`] would normalize it.
impl std::str::FromStr for ProjectName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = Self::new(text).map_err(|e| e.to_string())?;
        if name.as_str() == text {
            Ok(name)
        } else {
            Err(format!("`{text}` is not normalized (`{name}`)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_separator_runs() {
        assert_eq!(ProjectName::new("My_Pkg").unwrap().as_str(), "my-pkg");
        assert_eq!(ProjectName::new("a.-_b").unwrap().as_str(), "a-b");
        assert_eq!(ProjectName::new("Django").unwrap().as_str(), "django");
        assert_eq!(ProjectName::new("my-pkg").unwrap().as_str(), "my-pkg");
    }

    #[test]
    fn refuses_invalid_names() {
        insta::assert_snapshot!(ProjectName::new("").unwrap_err(), @"project name is empty");
        insta::assert_snapshot!(
            ProjectName::new("-pkg").unwrap_err(),
            @"project name `-pkg` may contain only ASCII letters, digits, `.`, `_` and `-`, and must start and end with a letter or digit"
        );
        insta::assert_snapshot!(
            ProjectName::new("pkg/../x").unwrap_err(),
            @"project name `pkg/../x` may contain only ASCII letters, digits, `.`, `_` and `-`, and must start and end with a letter or digit"
        );
        // A Cyrillic "а" looks like a Latin "a": refused, never normalized into a collision.
        assert!(matches!(
            ProjectName::new("pаckage"),
            Err(ProjectNameError::Invalid(_))
        ));
        insta::assert_snapshot!(
            ProjectName::new(&"a".repeat(201)).unwrap_err(),
            @"project name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is longer than 200 characters"
        );
    }
}
