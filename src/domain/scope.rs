//! Token scopes: a permission on a pattern of index names, written `permission:pattern`.
//!
//! Permissions are `read`, `upload`, `report`, `promote` and `admin`; `admin` implies the
//! other four on the same pattern. Patterns are deliberately few, so "does scope A cover
//! scope B" has an exact answer: `*` (every index), `acme/*` (every index of namespace
//! `acme`) and `acme/prod` (one index).
//!
//! ```text
//! upload:acme/*     report:acme/*     promote:acme/prod     admin:*
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::IndexName;

/// What a scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read private indexes (public ones need no token).
    Read,
    /// Upload files, claim and finish builds, create branch indexes.
    Upload,
    /// Record stage results for artifacts on the index.
    Report,
    /// Promote releases into the index; yank on promotion-only indexes.
    Promote,
    /// Everything above, plus managing indexes, mirrors and tokens.
    Admin,
}

impl Permission {
    /// Every permission, weakest first.
    pub const ALL: [Self; 5] = [
        Self::Read,
        Self::Upload,
        Self::Report,
        Self::Promote,
        Self::Admin,
    ];

    /// The name used in scopes and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Upload => "upload",
            Self::Report => "report",
            Self::Promote => "promote",
            Self::Admin => "admin",
        }
    }

    /// True when holding `self` grants `wanted`.
    #[must_use]
    pub fn implies(self, wanted: Self) -> bool {
        self == wanted || self == Self::Admin
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which index names a scope applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexPattern {
    /// `*`: every index.
    Any,
    /// `acme/*`: every index of one namespace.
    Namespace(String),
    /// `acme/prod`: one index.
    Exact(IndexName),
}

impl IndexPattern {
    /// True when `index` matches.
    #[must_use]
    pub fn matches(&self, index: &IndexName) -> bool {
        match self {
            Self::Any => true,
            Self::Namespace(ns) => index.namespace() == ns,
            Self::Exact(name) => name == index,
        }
    }

    /// True when every index `other` matches is matched by `self`.
    #[must_use]
    pub fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (Self::Namespace(a), Self::Namespace(b)) => a == b,
            (Self::Namespace(a), Self::Exact(name)) => name.namespace() == a,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for IndexPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Namespace(ns) => write!(f, "{ns}/*"),
            Self::Exact(name) => write!(f, "{name}"),
        }
    }
}

/// Reads `*`, `namespace/*` or `namespace/name`; the error says what was wrong.
fn parse_pattern(pattern: &str) -> Result<IndexPattern, String> {
    match pattern.split_once('/') {
        _ if pattern == "*" => Ok(IndexPattern::Any),
        Some((ns, "*")) => {
            // Validate the namespace with the index-name grammar.
            IndexName::from_parts(ns, "x").map_err(|e| e.to_string())?;
            Ok(IndexPattern::Namespace(ns.to_owned()))
        }
        Some(_) => pattern
            .parse()
            .map(IndexPattern::Exact)
            .map_err(|e: super::IndexNameError| e.to_string()),
        None => Err("no `/`".into()),
    }
}

impl FromStr for IndexPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_pattern(text).map_err(|reason| {
            format!(
                "index pattern `{}` must be `*`, `namespace/*` or `namespace/name` ({reason})",
                text.chars().take(120).collect::<String>().escape_debug()
            )
        })
    }
}

impl Serialize for IndexPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IndexPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No `:` between permission and pattern.
    #[error(
        "scope `{0}` must be `permission:pattern`, e.g. `upload:acme/*` or `promote:acme/prod`"
    )]
    Shape(String),
    /// An unknown permission.
    #[error("scope `{0}`: the permission must be one of read, upload, report, promote, admin")]
    Permission(String),
    /// A pattern outside the three accepted forms.
    #[error(
        "scope `{scope}`: the index pattern must be `*`, `namespace/*` or `namespace/name` ({reason})"
    )]
    Pattern {
        /// The whole scope.
        scope: String,
        /// What was wrong with the pattern.
        reason: String,
    },
}

/// One grant: a permission on a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope {
    /// What is allowed.
    pub permission: Permission,
    /// The indexes it is allowed on.
    pub pattern: IndexPattern,
}

impl Scope {
    /// `admin:*`, the bootstrap token's only scope.
    #[must_use]
    pub fn admin_all() -> Self {
        Self {
            permission: Permission::Admin,
            pattern: IndexPattern::Any,
        }
    }

    /// True when this scope grants `permission` on `index`.
    #[must_use]
    pub fn allows(&self, permission: Permission, index: &IndexName) -> bool {
        self.permission.implies(permission) && self.pattern.matches(index)
    }

    /// True when this scope grants everything `other` grants.
    #[must_use]
    pub fn covers(&self, other: &Self) -> bool {
        self.permission.implies(other.permission) && self.pattern.covers(&other.pattern)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.permission, self.pattern)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shown = || {
            text.chars()
                .take(120)
                .collect::<String>()
                .escape_debug()
                .to_string()
        };
        let (permission, pattern) = text
            .split_once(':')
            .ok_or_else(|| ScopeError::Shape(shown()))?;
        let permission = Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == permission)
            .ok_or_else(|| ScopeError::Permission(shown()))?;
        let pattern = parse_pattern(pattern).map_err(|reason| ScopeError::Pattern {
            scope: shown(),
            reason,
        })?;
        Ok(Self {
            permission,
            pattern,
        })
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> Self {
        scope.to_string()
    }
}

/// True when some scope in `scopes` grants `permission` on `index`.
#[must_use]
pub fn any_allows(scopes: &[Scope], permission: Permission, index: &IndexName) -> bool {
    scopes.iter().any(|s| s.allows(permission, index))
}

/// True when `scopes` grant everything `wanted` grants.
#[must_use]
pub fn covers(scopes: &[Scope], wanted: &Scope) -> bool {
    scopes.iter().any(|s| s.covers(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        text.parse().unwrap()
    }

    fn index(text: &str) -> IndexName {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_the_three_pattern_forms() {
        for text in [
            "upload:acme/*",
            "promote:acme/prod",
            "admin:*",
            "read:root/pypi",
        ] {
            assert_eq!(scope(text).to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_scopes_with_the_reason() {
        let cases = [
            ("upload", "must be `permission:pattern`"),
            ("write:acme/*", "must be one of read, upload"),
            ("upload:acme", "no `/`"),
            ("upload:*/*", "pattern must be"),
            ("upload:acme/pro*", "pattern must be"),
            ("upload:../root", "pattern must be"),
            ("upload:Acme/*", "pattern must be"),
            ("upload:acme/x/y", "pattern must be"),
            ("upload:", "no `/`"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Scope>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn admin_implies_everything_and_nothing_else_implies_more() {
        for p in Permission::ALL {
            assert!(Permission::Admin.implies(p));
            assert!(p.implies(p));
        }
        assert!(!Permission::Upload.implies(Permission::Promote));
        assert!(!Permission::Promote.implies(Permission::Read));
        assert!(!Permission::Report.implies(Permission::Upload));
    }

    #[test]
    fn patterns_match_their_indexes_only() {
        let ci = [scope("upload:acme/*"), scope("report:acme/*")];
        assert!(any_allows(
            &ci,
            Permission::Upload,
            &index("acme/feature-x")
        ));
        assert!(any_allows(&ci, Permission::Report, &index("acme/master")));
        assert!(!any_allows(&ci, Permission::Promote, &index("acme/prod")));
        assert!(!any_allows(&ci, Permission::Upload, &index("acmex/master")));
        let release = [scope("promote:acme/prod")];
        assert!(any_allows(
            &release,
            Permission::Promote,
            &index("acme/prod")
        ));
        assert!(!any_allows(
            &release,
            Permission::Promote,
            &index("acme/prod2")
        ));
        assert!(!any_allows(
            &release,
            Permission::Upload,
            &index("acme/prod")
        ));
    }

    #[test]
    fn coverage_is_exact() {
        assert!(scope("admin:*").covers(&scope("read:acme/prod")));
        assert!(scope("admin:acme/*").covers(&scope("upload:acme/*")));
        assert!(scope("admin:acme/*").covers(&scope("promote:acme/prod")));
        assert!(!scope("admin:acme/*").covers(&scope("upload:*")));
        assert!(!scope("admin:acme/prod").covers(&scope("upload:acme/*")));
        assert!(!scope("upload:acme/*").covers(&scope("admin:acme/x")));
        assert!(!scope("admin:acme/*").covers(&scope("read:other/x")));
    }
}
