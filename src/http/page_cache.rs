//! Rendered simple pages, kept until the database's write generation moves on.
//!
//! A project page depends on every index in its chain, so instead of tracking which write
//! touches which page, any committed write invalidates every entry: CI reads pages far
//! more often than it uploads, and re-rendering one page costs one indexed query. "Not
//! found" answers are cached too (pip asks for many names that live elsewhere). A page
//! with a mirror's contribution also expires when the mirror's copy is due for a refresh.
//! The cache holds at most [`MAX_ENTRIES`] pages and starts over when full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        /// Mirrors that served a stored copy because their upstream failed, and why.
        stale: Vec<String>,
        /// Mirrors the dependency-confusion guard kept out of this page.
        hidden_from: Vec<String>,
    },
    /// The 404 reason.
    Missing(String),
}

/// The cache.
#[derive(Debug, Default)]
pub struct PageCache {
    entries: Mutex<HashMap<PageKey, Entry>>,
}

#[derive(Debug)]
struct Entry {
    generation: i64,
    expires: Option<Instant>,
    page: Page,
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
            .filter(|e| e.generation == generation)
            .filter(|e| e.expires.is_none_or(|at| at > Instant::now()))
            .map(|e| e.page.clone())
    }

    /// Remembers a page rendered at `generation`, for at most `fresh_for` if given.
    pub fn put(&self, key: PageKey, generation: i64, page: Page, fresh_for: Option<Duration>) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let expires = fresh_for.map(|f| Instant::now() + f);
        entries.insert(
            key,
            Entry {
                generation,
                expires,
                page,
            },
        );
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
        cache.put(key.clone(), 7, Page::Missing("gone".into()), None);
        assert!(matches!(cache.get(&key, 7), Some(Page::Missing(m)) if m == "gone"));
        assert!(cache.get(&key, 8).is_none());
        cache.put(
            key.clone(),
            8,
            Page::Missing("brief".into()),
            Some(Duration::ZERO),
        );
        assert!(
            cache.get(&key, 8).is_none(),
            "expired with the mirror's copy"
        );
    }
}
