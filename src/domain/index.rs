//! Indexes and their settings.
//!
//! An index is a named list of files. Its ordered `bases` give inheritance: a project page
//! on an index shows its own files first, then those of its bases, transitively
//! (breadth-first, each index once — devpi's "stage resolution order"). Cycles are refused
//! when bases are set, so resolution always terminates.

use serde::{Deserialize, Serialize};

use super::IndexName;

/// What an index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Holds uploaded or promoted files.
    Stage,
}

impl IndexKind {
    /// The value stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stage => "stage",
        }
    }

    /// Parses the stored value.
    #[must_use]
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "stage" => Some(Self::Stage),
            _ => None,
        }
    }
}

/// The settings a user can choose for an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSettings {
    /// What the index holds.
    pub kind: IndexKind,
    /// Indexes whose files this one inherits, in resolution order.
    pub bases: Vec<IndexName>,
    /// Files may be deleted (branch indexes). Never allows different bytes under one name.
    pub volatile: bool,
    /// No direct uploads; files arrive only by promotion (production).
    pub promotion_only: bool,
    /// Free text shown on the index page.
    pub description: String,
    /// The git branch this index was created for by `kiln ensure`, if it is a branch index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
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
