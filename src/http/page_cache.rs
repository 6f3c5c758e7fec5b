//! Rendered simple pages, kept until something they show changes.
//!
//! Each entry remembers the change counter read before it was rendered and the changes it
//! depends on ([`crate::db::changes`]): its chain's index settings and the project's files
//! on each index of the chain (or each index's project set, for a project list). It is
//! served while none of those happened since, so writes elsewhere — other projects, other
//! branches, stage results, leases — leave it alone. "Not found" answers are cached too
//! (pip asks for many names that live elsewhere). A page with a mirror's contribution
//! also expires when the mirror's copy is due for a refresh.
//!
//! The cache is bounded by bytes (bodies plus a fixed overhead per entry), evicting the
//! entries least worth keeping (`quick_cache`'s CLOCK-Pro: recently and often read pages
//! stay); hits and misses are counted for `/+health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::simple::Format;
use crate::db::changes::{Change, Stamps};
use crate::domain::{IndexName, ProjectName};

/// The default bound on the bytes the cache holds.
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// What an entry costs beyond its body: key, ETag, dependencies, bookkeeping.
const ENTRY_OVERHEAD: u64 = 256;

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

impl Page {
    fn weight(&self) -> u64 {
        let bytes = match self {
            Self::Found {
                body,
                etag,
                stale,
                hidden_from,
            } => {
                body.len()
                    + etag.len()
                    + stale
                        .iter()
                        .chain(hidden_from)
                        .map(String::len)
                        .sum::<usize>()
            }
            Self::Missing(reason) => reason.len(),
        };
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

#[derive(Debug)]
struct Entry {
    /// The change counter read before rendering.
    read_at: u64,
    /// What the page shows.
    depends_on: Vec<Change>,
    /// When a mirror's contribution is due for a refresh.
    expires: Option<Instant>,
    page: Page,
}

#[derive(Debug, Clone)]
struct Weight;

impl quick_cache::Weighter<PageKey, Arc<Entry>> for Weight {
    fn weight(&self, _key: &PageKey, entry: &Arc<Entry>) -> u64 {
        ENTRY_OVERHEAD + entry.page.weight()
    }
}

/// The cache's counters, for `/+health`.
pub type PageCacheStats = crate::api::PageCacheView;

/// The cache.
#[derive(Debug)]
pub struct PageCache {
    entries: quick_cache::sync::Cache<PageKey, Arc<Entry>, Weight>,
    capacity_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for PageCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY_BYTES)
    }
}

impl PageCache {
    /// A cache holding at most `capacity_bytes` (0 keeps nothing).
    #[must_use]
    pub fn with_capacity(capacity_bytes: u64) -> Self {
        let estimated_items = usize::try_from(capacity_bytes / 2_048)
            .unwrap_or(usize::MAX)
            .max(16);
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                estimated_items,
                capacity_bytes,
                Weight,
            ),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The page, if one is held that nothing it shows has changed since.
    pub fn get(&self, key: &PageKey, stamps: &Stamps) -> Option<Page> {
        let fresh = self.entries.get(key).filter(|e| {
            e.expires.is_none_or(|at| at > Instant::now())
                && stamps.unchanged_since(e.read_at, &e.depends_on)
        });
        let counter = if fresh.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        fresh.map(|e| e.page.clone())
    }

    /// Remembers a page rendered from reads made after the counter read `read_at`, showing
    /// `depends_on`, for at most `fresh_for` if given.
    pub fn put(
        &self,
        key: PageKey,
        (read_at, depends_on): (u64, Vec<Change>),
        page: Page,
        fresh_for: Option<Duration>,
    ) {
        let expires = fresh_for.map(|f| Instant::now() + f);
        self.entries.insert(
            key,
            Arc::new(Entry {
                read_at,
                depends_on,
                expires,
                page,
            }),
        );
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> PageCacheStats {
        PageCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: u64::try_from(self.entries.len()).unwrap_or(u64::MAX),
            bytes: self.entries.weight(),
            capacity_bytes: self.capacity_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(project: &str) -> PageKey {
        PageKey {
            index: "a/b".parse().unwrap(),
            project: Some(project.parse().unwrap()),
            format: Format::Json,
        }
    }

    #[test]
    fn entries_go_stale_only_with_what_they_show() {
        let cache = PageCache::default();
        let stamps = Stamps::default();
        let demo = Change::Files(1, "demo".into());
        cache.put(
            key("demo"),
            (stamps.now(), vec![Change::Index(1), demo.clone()]),
            Page::Missing("gone".into()),
            None,
        );
        stamps.apply(&[
            Change::Files(1, "other".into()),
            Change::Builds(1, "demo".into()),
        ]);
        assert!(matches!(cache.get(&key("demo"), &stamps), Some(Page::Missing(m)) if m == "gone"));
        stamps.apply(&[demo]);
        assert!(cache.get(&key("demo"), &stamps).is_none());
        cache.put(
            key("demo"),
            (stamps.now(), Vec::new()),
            Page::Missing("brief".into()),
            Some(Duration::ZERO),
        );
        assert!(
            cache.get(&key("demo"), &stamps).is_none(),
            "expired with the mirror's copy"
        );
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 2));
    }

    #[test]
    fn the_cache_holds_no_more_bytes_than_its_bound() {
        let cache = PageCache::with_capacity(64 * 1024);
        let stamps = Stamps::default();
        for i in 0..1_000 {
            let page = Page::Found {
                body: Bytes::from(vec![b'x'; 1_000]),
                etag: "\"e\"".into(),
                stale: Vec::new(),
                hidden_from: Vec::new(),
            };
            cache.put(
                key(&format!("p{i}")),
                (stamps.now(), Vec::new()),
                page,
                None,
            );
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 64 * 1024, "{stats:?}");
        assert!(stats.entries >= 40, "it still holds what fits: {stats:?}");
        assert!(
            cache.get(&key("p999"), &stamps).is_some(),
            "the newest page is held"
        );
    }
}
