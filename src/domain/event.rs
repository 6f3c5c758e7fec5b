//! What the event log records.

use serde::{Deserialize, Serialize};

/// The kind of an event in `kiln events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A release was promoted.
    Promotion,
    /// A promotion was refused by the policy.
    Refusal,
    /// A release was yanked.
    Yank,
    /// A yank was undone.
    Unyank,
    /// An index was created.
    IndexCreated,
    /// An index's settings changed (the detail holds before and after).
    IndexChanged,
    /// An index was deleted.
    IndexDeleted,
    /// A token was created.
    TokenCreated,
    /// A token was revoked.
    TokenRevoked,
    /// A build failed (its builder reported the failure and its output's tail).
    BuildFailed,
    /// A release or file was removed from an index (into the trash).
    Removed,
    /// A trash entry was restored.
    Restored,
    /// A trash entry expired (or was emptied): its files are gone for good.
    Released,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 13] = [
        Self::Promotion,
        Self::Refusal,
        Self::Yank,
        Self::Unyank,
        Self::IndexCreated,
        Self::IndexChanged,
        Self::IndexDeleted,
        Self::TokenCreated,
        Self::TokenRevoked,
        Self::BuildFailed,
        Self::Removed,
        Self::Restored,
        Self::Released,
    ];
}

impl EventKind {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promotion => "promotion",
            Self::Refusal => "refusal",
            Self::Yank => "yank",
            Self::Unyank => "unyank",
            Self::IndexCreated => "index-created",
            Self::IndexChanged => "index-changed",
            Self::IndexDeleted => "index-deleted",
            Self::TokenCreated => "token-created",
            Self::TokenRevoked => "token-revoked",
            Self::BuildFailed => "build-failed",
            Self::Removed => "removed",
            Self::Restored => "restored",
            Self::Released => "released",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("`{}` is not an event kind", text.escape_debug()))
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!("deleted".parse::<EventKind>().is_err());
    }
}
