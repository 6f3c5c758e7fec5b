//! What the event log records.

use serde::{Deserialize, Serialize};

/// The kind of an event in `kiln events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A release was promoted.
    Promotion,
    /// A promotion was refused by the policy.
    Refusal,
    /// A release was yanked.
    Yank,
    /// A yank was undone.
    Unyank,
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
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Promotion, Self::Refusal, Self::Yank, Self::Unyank]
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
        for kind in [
            EventKind::Promotion,
            EventKind::Refusal,
            EventKind::Yank,
            EventKind::Unyank,
        ] {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!("deleted".parse::<EventKind>().is_err());
    }
}
