//! Stage verdicts: what a CI stage reports about an artifact, and the rules on stage
//! names. Pure types; the service stores and checks them.

use serde::{Deserialize, Serialize};

/// Whether a stage passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The stage command ran and exited 0.
    Pass,
    /// It ran and the tests failed.
    Fail,
    /// It could not run (command or interpreter not found, tox environment missing,
    /// killed by a signal, timed out): an infrastructure problem, not a verdict on the
    /// artifact. Blocks promotion like a fail.
    Error,
}

impl Outcome {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Error => "error",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pass" => Ok(Self::Pass),
            "fail" => Ok(Self::Fail),
            "error" => Ok(Self::Error),
            other => Err(format!(
                "`{}` is not an outcome (`pass`, `fail` or `error`)",
                other.escape_debug()
            )),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a stage proved it tested the artifact itself: after the command, a probe in
/// the stage's environment looks at which files the project's import packages resolve to
/// and whether the installed distribution is the wheel (its RECORD), not an editable or
/// source-tree copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactCheck {
    /// The wheel was installed and its files were the ones imported.
    Verified,
    /// The stage could not show it tested the wheel, and why.
    Unverified(String),
}

impl ArtifactCheck {
    /// True for [`ArtifactCheck::Verified`].
    #[must_use]
    pub fn is_verified(&self) -> bool {
        matches!(self, Self::Verified)
    }
}

impl std::fmt::Display for ArtifactCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified => f.write_str("verified"),
            Self::Unverified(reason) => write!(f, "unverified: {reason}"),
        }
    }
}

impl std::str::FromStr for ArtifactCheck {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            _ if text == "verified" => Ok(Self::Verified),
            Some(("unverified", reason)) if !reason.trim().is_empty() => {
                Ok(Self::Unverified(reason.trim().to_owned()))
            }
            _ => Err(format!(
                "`{}` is not an artifact check (`verified` or `unverified: <reason>`)",
                text.escape_debug()
            )),
        }
    }
}

impl Serialize for ArtifactCheck {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArtifactCheck {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Checks a stage name: 1–64 of letters, digits, `.`, `_`, `-`, starting alphanumeric.
pub fn check_stage_name(stage: &str) -> Result<(), String> {
    let ok = !stage.is_empty()
        && stage.len() <= 64
        && stage.starts_with(|c: char| c.is_ascii_alphanumeric())
        && stage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "stage name `{}` is not valid: use 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            stage.escape_debug()
        ))
    }
}

/// One rule checked against a release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// What was checked, e.g. `stage unit green for demo-1.0-py3-none-any.whl`.
    pub rule: String,
    /// Whether it holds.
    pub passed: bool,
    /// What the policy expects.
    pub expected: String,
    /// What was found.
    pub found: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_unknown_ones_are_errors() {
        for outcome in [Outcome::Pass, Outcome::Fail, Outcome::Error] {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert!(
            "passed"
                .parse::<Outcome>()
                .unwrap_err()
                .contains("`passed`")
        );
    }

    #[test]
    fn artifact_checks_round_trip() {
        for text in [
            "verified",
            "unverified: `import demo` resolves to ./demo/__init__.py",
        ] {
            assert_eq!(text.parse::<ArtifactCheck>().unwrap().to_string(), text);
        }
        for bad in ["", "unverified", "unverified:  ", "maybe"] {
            assert!(bad.parse::<ArtifactCheck>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stage_names() {
        assert!(check_stage_name("unit-3.12").is_ok());
        assert!(check_stage_name("-x").is_err());
        assert!(check_stage_name(&"a".repeat(65)).is_err());
    }
}
