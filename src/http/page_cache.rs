//! Rendered simple pages, kept until the database's write generation moves on.
//!
//! A project page depends on every index in its chain, so instead of tracking which write
//! touches which page, any committed write invalidates every entry: CI reads pages far
//! more often than it uploads, and re-rendering one page costs one indexed query. "Not
//! found" answers are cached too (pip asks for many names that live elsewhere). The cache
//! holds at most [`MAX_ENTRIES`] pages and starts over when full.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::simple::Format;
use crate::domain::{IndexName, ProjectName};

/// Most pages kept at once.
pub const MAX_ENTRIES: usize = 20_000;

/// Which page: the project list (`project: None`) or one project's page, in one format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The index the page belongs to.
    pub index: IndexName,
    /// The project, or `None` for the index's project list.
    pub project: Option<ProjectName>,
    /// The representation.
    pub format: Format,
}

/// A rendered page or a remembered "not found".
#[derive(Debug, Clone)]
pub enum Page {
    /// A page body and its strong ETag (quoted).
    Found {
        /// The body.
        body: Bytes,
        /// The ETag header value.
        etag: String,
    },
    /// The 404 reason.
    Missing(String),
}

/// The cache.
#[derive(Debug, Default)]
pub struct PageCache {
    entries: Mutex<HashMap<PageKey, (i64, Page)>>,
}

impl PageCache {
    /// The page rendered at `generation`, if there is one.
    pub fn get(&self, key: &PageKey, generation: i64) -> Option<Page> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(stored, _)| *stored == generation)
            .map(|(_, page)| page.clone())
    }

    /// Remembers a page rendered at `generation`.
    pub fn put(&self, key: PageKey, generation: i64, page: Page) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (generation, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_with_the_generation() {
        let cache = PageCache::default();
        let key = PageKey {
            index: "a/b".parse().unwrap(),
            project: None,
            format: Format::Json,
        };
        cache.put(key.clone(), 7, Page::Missing("gone".into()));
        assert!(matches!(cache.get(&key, 7), Some(Page::Missing(m)) if m == "gone"));
        assert!(cache.get(&key, 8).is_none());
    }
}
