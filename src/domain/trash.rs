//! What a trash entry holds.

use serde::{Deserialize, Serialize};

/// What was removed into the trash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrashKind {
    /// A whole index: hidden from every lookup until restored or released.
    Index,
    /// Every file of one release on an index.
    Release,
    /// One file of a release.
    File,
}

impl TrashKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Index, Self::Release, Self::File];

    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Release => "release",
            Self::File => "file",
        }
    }
}

impl std::str::FromStr for TrashKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("`{}` is not a trash entry kind", text.escape_debug()))
    }
}

impl std::fmt::Display for TrashKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in TrashKind::ALL {
            assert_eq!(kind.as_str().parse::<TrashKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!("blob".parse::<TrashKind>().is_err());
    }
}
