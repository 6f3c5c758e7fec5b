//! Build targets: which interpreter and platform a wheel is for.
//!
//! A pure wheel (`py3-none-any`) serves every runner, so a pure project is built once per
//! version. A platform-specific wheel (`cp312-cp312-manylinux_2_36_x86_64`) serves only
//! matching interpreters, so such a project is built once per *target*: the release's
//! first build, then one build per target no existing wheel serves. A target is one wheel
//! tag (PEP 425), `python-abi-platform`, lowercase.
//!
//! Traps: wheel filenames compress tag sets (`py2.py3-none-any`); [`wheel_tags`] expands
//! them. A target names one tag, never a set.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted target.
pub const MAX_TARGET: usize = 120;

/// One wheel tag a build is made for: `python-abi-platform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuildTarget(String);

impl BuildTarget {
    /// The tag as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BuildTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let lowered = text.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lowered.split('-').collect();
        let ok = lowered.len() <= MAX_TARGET
            && parts.len() == 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if ok {
            Ok(Self(lowered))
        } else {
            Err(format!(
                "`{}` is not a build target: expected one wheel tag `python-abi-platform`, e.g. `cp312-cp312-manylinux_2_36_x86_64`",
                text.escape_debug()
            ))
        }
    }
}

impl fmt::Display for BuildTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for BuildTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BuildTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The tags a wheel filename declares, expanded (`py2.py3-none-any` gives two), as
/// lowercase `python-abi-platform` strings; empty for anything that is not a wheel name.
#[must_use]
pub fn wheel_tags(filename: &str) -> Vec<String> {
    let Some(stem) = filename
        .strip_suffix(".whl")
        .or_else(|| filename.strip_suffix(".WHL"))
    else {
        return Vec::new();
    };
    let parts: Vec<&str> = stem.split('-').collect();
    // name-version[-build]-python-abi-platform
    if parts.len() < 5 {
        return Vec::new();
    }
    let [python, abi, platform] = [
        parts[parts.len() - 3],
        parts[parts.len() - 2],
        parts[parts.len() - 1],
    ];
    let mut tags = Vec::new();
    for p in python.split('.') {
        for a in abi.split('.') {
            for pl in platform.split('.') {
                tags.push(format!("{p}-{a}-{pl}").to_ascii_lowercase());
            }
        }
    }
    tags
}

/// True when the wheel serves every interpreter and platform (`none` ABI, `any`
/// platform).
#[must_use]
pub fn is_pure(filename: &str) -> bool {
    let tags = wheel_tags(filename);
    !tags.is_empty() && tags.iter().all(|t| t.ends_with("-none-any"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_one_lowercase_tag() {
        let t: BuildTarget = "CP312-cp312-manylinux_2_36_x86_64".parse().unwrap();
        assert_eq!(t.as_str(), "cp312-cp312-manylinux_2_36_x86_64");
        for bad in [
            "",
            "cp312",
            "cp312-cp312",
            "py2.py3-none-any",
            "cp312-cp312-linux x86",
            "a-b-c-d",
            "cp312--any",
        ] {
            assert!(bad.parse::<BuildTarget>().is_err(), "{bad}");
        }
        assert!("a-b-".repeat(40).parse::<BuildTarget>().is_err());
    }

    #[test]
    fn wheel_tags_expand_compressed_sets() {
        assert_eq!(
            wheel_tags("pkg-1.0-py2.py3-none-any.whl"),
            ["py2-none-any", "py3-none-any"]
        );
        assert_eq!(
            wheel_tags("pkg-1.0-1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            [
                "cp312-cp312-manylinux_2_17_x86_64",
                "cp312-cp312-manylinux2014_x86_64"
            ]
        );
        assert!(wheel_tags("pkg-1.0.tar.gz").is_empty());
        assert!(wheel_tags("pkg-1.0.whl").is_empty());
        assert!(is_pure("pkg-1.0-py3-none-any.whl"));
        assert!(!is_pure("pkg-1.0-cp311-cp311-linux_x86_64.whl"));
        assert!(!is_pure("pkg-1.0.tar.gz"));
    }
}
