//! Index names: `namespace/name`, e.g. `acme/feature-login-form`.
//!
//! Both parts appear in URL paths and in storage listings, so they are held to a strict,
//! lowercase grammar: a letter or digit first, then letters, digits, `.`, `_`, `-`. Parts
//! starting with `+` are reserved for Kiln's own routes (`/+api`, `/+simple`, `/+f`), and
//! the grammar rules those out together with `..` and anything that could escape a path.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid index name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexNameError {
    /// Not of the form `namespace/name`.
    #[error("index name `{0}` must be `namespace/name`, e.g. `acme/master`")]
    Shape(String),
    /// One part breaks the grammar.
    #[error(
        "index name part `{0}` must be 1-64 characters of lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit"
    )]
    Part(String),
}

/// A validated `namespace/name` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IndexName {
    namespace: String,
    name: String,
}

impl IndexName {
    /// Longest accepted part.
    pub const MAX_PART_LEN: usize = 64;

    /// Builds a name from its two parts, validating both.
    pub fn from_parts(namespace: &str, name: &str) -> Result<Self, IndexNameError> {
        validate_part(namespace)?;
        validate_part(name)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The namespace part (`acme` in `acme/master`).
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name part (`master` in `acme/master`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn validate_part(part: &str) -> Result<(), IndexNameError> {
    let bytes = part.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= IndexName::MAX_PART_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(IndexNameError::Part(
            part.chars()
                .take(80)
                .collect::<String>()
                .escape_debug()
                .to_string(),
        ))
    }
}

impl FromStr for IndexName {
    type Err = IndexNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| IndexNameError::Shape(s.escape_debug().to_string()))?;
        if name.contains('/') {
            return Err(IndexNameError::Shape(s.escape_debug().to_string()));
        }
        Self::from_parts(namespace, name)
    }
}

impl TryFrom<String> for IndexName {
    type Error = IndexNameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<IndexName> for String {
    fn from(value: IndexName) -> Self {
        value.to_string()
    }
}

impl fmt::Display for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_names() {
        let n: IndexName = "acme/feature-login-form".parse().unwrap();
        assert_eq!((n.namespace(), n.name()), ("acme", "feature-login-form"));
        assert_eq!(n.to_string(), "acme/feature-login-form");
    }

    #[test]
    fn refuses_invalid_names() {
        let err = |s: &str| s.parse::<IndexName>().unwrap_err().to_string();
        insta::assert_snapshot!(err("acme"), @"index name `acme` must be `namespace/name`, e.g. `acme/master`");
        insta::assert_snapshot!(err("a/b/c"), @"index name `a/b/c` must be `namespace/name`, e.g. `acme/master`");
        insta::assert_snapshot!(err("acme/.."), @"index name part `..` must be 1-64 characters of lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit");
        insta::assert_snapshot!(err("+api/v1"), @"index name part `+api` must be 1-64 characters of lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit");
        insta::assert_snapshot!(err("Acme/master"), @"index name part `Acme` must be 1-64 characters of lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit");
        insta::assert_snapshot!(err("acme/"), @"index name part `` must be 1-64 characters of lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit");
    }
}
