//! Where a build came from: the source commit, the CI run, the runner and the build
//! environment. A claim for a build lease carries it; the build and every file uploaded
//! under the lease keep it; promotions copy it along with the bytes.
//!
//! Traps: provenance is what the claimant *says*. Kiln checks its shape (a commit is hex,
//! strings are short and printable, a run URL is http(s)) and holds a version number to
//! one commit, but it cannot prove a runner really checked that commit out; a token that
//! may upload may also claim. docs/security.md says what that means.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest text field of a provenance record.
pub const MAX_FIELD: usize = 200;

/// The commit a build was made from: 7 to 64 lowercase hex digits (a git SHA-1 or
/// SHA-256, possibly abbreviated), optionally followed by `+dirty.<hex>` when the
/// working tree had uncommitted changes (the hex fingerprints those changes, so the same
/// edits name the same source and different edits do not).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceCommit(String);

impl SourceCommit {
    /// The commit as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the tree had uncommitted changes.
    #[must_use]
    pub fn is_dirty(&self) -> bool {
        self.0.contains('+')
    }

    /// The same commit with a dirty-tree fingerprint.
    #[must_use]
    pub fn dirty(&self, fingerprint: &str) -> Self {
        let clean = self.0.split('+').next().unwrap_or_default();
        Self(format!("{clean}+dirty.{fingerprint}"))
    }
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FromStr for SourceCommit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let lowered = text.trim().to_ascii_lowercase();
        let (sha, dirty) = match lowered.split_once('+') {
            Some((sha, rest)) => (sha, Some(rest)),
            None => (lowered.as_str(), None),
        };
        let sha_ok = (7..=64).contains(&sha.len()) && is_hex(sha);
        let dirty_ok = dirty.is_none_or(|d| {
            d.strip_prefix("dirty.")
                .is_some_and(|f| (8..=64).contains(&f.len()) && is_hex(f))
        });
        if sha_ok && dirty_ok {
            Ok(Self(lowered))
        } else {
            Err(format!(
                "`{}` is not a commit: expected 7-64 hex digits (a git commit id), optionally followed by `+dirty.<hex>`",
                text.escape_debug()
            ))
        }
    }
}

impl fmt::Display for SourceCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SourceCommit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SourceCommit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a build came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The source commit.
    pub commit: SourceCommit,
    /// The CI provider (`github-actions`, `jenkins`, … or `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
    /// The CI run's id (pipeline, job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// A link to the CI run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    /// Which attempt of the CI run (re-runs of one pipeline count up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The runner or agent that built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// The Python that built (`CPython 3.12.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// The platform that built (`linux-x86_64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl Provenance {
    /// Provenance naming only a commit.
    #[must_use]
    pub fn of_commit(commit: SourceCommit) -> Self {
        Self {
            commit,
            ci: None,
            run_id: None,
            run_url: None,
            attempt: None,
            runner: None,
            python: None,
            platform: None,
        }
    }

    /// Checks the text fields: at most [`MAX_FIELD`] bytes, printable, and a run URL
    /// that is http(s). Names the offending field.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("ci", &self.ci),
            ("run_id", &self.run_id),
            ("run_url", &self.run_url),
            ("runner", &self.runner),
            ("python", &self.python),
            ("platform", &self.platform),
        ];
        for (name, value) in fields {
            if let Some(value) = value
                && (value.len() > MAX_FIELD || value.chars().any(char::is_control))
            {
                return Err(format!(
                    "`provenance.{name}` must be at most {MAX_FIELD} printable bytes"
                ));
            }
        }
        if let Some(url) = &self.run_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!(
                "`provenance.run_url` `{}` is not an http(s) URL",
                url.escape_debug()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_hex_and_normalized() {
        let c: SourceCommit = "ABCDEF1234567".parse().unwrap();
        assert_eq!(c.as_str(), "abcdef1234567");
        assert!(!c.is_dirty());
        let d = c.dirty("0123456789ab");
        assert_eq!(d.as_str(), "abcdef1234567+dirty.0123456789ab");
        assert!(d.is_dirty());
        assert_eq!(d.as_str().parse::<SourceCommit>(), Ok(d.clone()));
        for bad in [
            "",
            "abc",
            "xyz1234567",
            &"a".repeat(65),
            "abcdef1+clean",
            "abcdef1+dirty.",
            "abcdef1+dirty.zz",
        ] {
            assert!(bad.parse::<SourceCommit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn provenance_fields_are_bounded() {
        let base = Provenance::of_commit("abcdef1".parse().unwrap());
        assert!(base.check().is_ok());
        let long = Provenance {
            runner: Some("x".repeat(MAX_FIELD + 1)),
            ..base.clone()
        };
        assert!(long.check().unwrap_err().contains("provenance.runner"));
        let url = Provenance {
            run_url: Some("javascript:alert(1)".into()),
            ..base.clone()
        };
        assert!(url.check().unwrap_err().contains("run_url"));
        let control = Provenance {
            ci: Some("a\nb".into()),
            ..base
        };
        assert!(control.check().is_err());
    }
}
