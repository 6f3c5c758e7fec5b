//! Indexes and their settings.
//!
//! An index is a named list of files. Its ordered `bases` give inheritance: a project page
//! on an index shows its own files first, then those of its bases, transitively
//! (breadth-first, each index once — devpi's "stage resolution order"). Cycles are refused
//! when bases are set, so resolution always terminates.

use serde::{Deserialize, Serialize};

use super::IndexName;

/// What an index holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Holds uploaded or promoted files.
    #[default]
    Stage,
    /// A caching proxy of an upstream simple index; holds nothing of its own.
    Mirror,
}

impl IndexKind {
    /// The value stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stage => "stage",
            Self::Mirror => "mirror",
        }
    }

    /// Parses the stored value.
    #[must_use]
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "stage" => Some(Self::Stage),
            "mirror" => Some(Self::Mirror),
            _ => None,
        }
    }
}

/// The settings a user can choose for an index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSettings {
    /// What the index holds.
    pub kind: IndexKind,
    /// Indexes whose files this one inherits, in resolution order.
    pub bases: Vec<IndexName>,
    /// Files may be deleted (branch indexes). Never allows different bytes under one name.
    pub volatile: bool,
    /// No direct uploads; files arrive only by promotion (production).
    pub promotion_only: bool,
    /// Reading needs a token with `read` on this index; so does reading any index whose
    /// chain includes it.
    #[serde(default)]
    pub private: bool,
    /// Free text shown on the index page.
    pub description: String,
    /// The git branch this index was created for by `kiln ensure`, if it is a branch index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Mirrors only: the upstream and how long its pages are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSettings>,
    /// Stage indexes only: names of this index's own projects that mirrors further down
    /// the chain may still contribute to (`*` for every name). Everything else that this
    /// index has files of is hidden from mirrors: the dependency-confusion guard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_allow: Vec<String>,
}

/// Default time a mirrored project page is served before the upstream is asked again.
pub const DEFAULT_MIRROR_TTL_SECONDS: u64 = 30 * 60;

/// Where a mirror index fetches from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSettings {
    /// The upstream simple-API root, ending in `/` (e.g. `https://pypi.org/simple/`).
    pub url: String,
    /// HTTP basic user for the upstream, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// HTTP basic password; never shown by the API.
    #[serde(skip)]
    pub password: Option<String>,
    /// Seconds a fetched project page is served before the upstream is asked again.
    pub ttl_seconds: u64,
    /// Origins (`https://host[:port]`) the mirror may download files from besides the
    /// upstream's own; empty for the default (see [`MirrorSettings::allowed_origins`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_origins: Vec<String>,
}

impl MirrorSettings {
    /// Checks and normalizes an upstream URL: `http`/`https`, no credentials in it (they
    /// belong in `username`/`password`, which are never shown), no query or fragment, and
    /// a trailing `/` so that `<url><project>/` is the project page.
    pub fn normalize_url(raw: &str) -> Result<String, String> {
        let mut url = url::Url::parse(raw.trim())
            .map_err(|e| format!("mirror URL `{raw}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "mirror URL `{raw}` must be http:// or https://, like https://pypi.org/simple/"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "mirror URL `{}` carries credentials; pass them as the mirror username and password instead, so they are never shown",
                super::redact_url(raw)
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "mirror URL `{raw}` must not have a query or fragment"
            ));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url.to_string())
    }

    /// Checks and normalizes a file origin: http(s), a host, no credentials and nothing
    /// after it but `/`; answers `scheme://host[:port]`.
    pub fn normalize_origin(raw: &str) -> Result<String, String> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| format!("file origin `{raw}` is not a URL: {e}"))?;
        let plain = matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !plain {
            return Err(format!(
                "file origin `{}` must be just `https://host[:port]`, like https://files.pythonhosted.org",
                super::redact_url(raw)
            ));
        }
        Ok(url.origin().ascii_serialization())
    }

    /// The origins this mirror may connect to, and whether each was configured by the
    /// server's admin (such an origin may even be on a private address): the upstream's
    /// own, the configured file origins, and — when none are configured and the upstream
    /// is PyPI — PyPI's file host, which is not trusted with private addresses.
    #[must_use]
    pub fn allowed_origins(&self) -> Vec<(String, bool)> {
        let Ok(upstream) = url::Url::parse(&self.url) else {
            return Vec::new();
        };
        let mut origins = vec![(upstream.origin().ascii_serialization(), true)];
        origins.extend(self.file_origins.iter().map(|o| (o.clone(), true)));
        if self.file_origins.is_empty() && upstream.host_str() == Some("pypi.org") {
            origins.push(("https://files.pythonhosted.org".to_owned(), false));
        }
        origins
    }

    /// True if `project` (normalized) is on an allow list (`*` allows every name).
    #[must_use]
    pub fn allows(list: &[String], project: &str) -> bool {
        list.iter().any(|name| name == "*" || name == project)
    }
}

/// An index as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The database id (stable for the life of the index).
    #[serde(skip)]
    pub id: i64,
    /// `namespace/name`.
    pub name: IndexName,
    /// Its settings.
    #[serde(flatten)]
    pub settings: IndexSettings,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When its settings last changed (RFC 3339).
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_mirror_urls() {
        assert_eq!(
            MirrorSettings::normalize_url("https://pypi.org/simple").unwrap(),
            "https://pypi.org/simple/"
        );
        assert_eq!(
            MirrorSettings::normalize_url(" http://127.0.0.1:8080/root/pypi/+simple/ ").unwrap(),
            "http://127.0.0.1:8080/root/pypi/+simple/"
        );
        let with_password =
            MirrorSettings::normalize_url("https://u:secret@host/simple/").unwrap_err();
        assert!(with_password.contains("credentials"), "{with_password}");
        assert!(!with_password.contains("secret"), "{with_password}");
        assert!(MirrorSettings::normalize_url("ftp://host/simple/").is_err());
        assert!(MirrorSettings::normalize_url("not a url").is_err());
        assert!(MirrorSettings::normalize_url("https://host/simple/?x=1").is_err());
    }

    #[test]
    fn allow_lists() {
        let list = vec!["requests".to_owned()];
        assert!(MirrorSettings::allows(&list, "requests"));
        assert!(!MirrorSettings::allows(&list, "flask"));
        assert!(MirrorSettings::allows(&["*".to_owned()], "flask"));
        assert!(!MirrorSettings::allows(&[], "flask"));
    }
}
