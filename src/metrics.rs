//! Prometheus metrics (`GET /metrics`, the `OpenMetrics` text format through `prometheus-client`).
//!
//! Counters and histograms live in one process-wide [`Metrics`] ([`metrics()`]), bumped
//! where things happen: the HTTP layer counts requests by route template, method and
//! status; services count uploads, stage results, promotions and refusals, build waits,
//! mirror fetches and webhook deliveries. What is a state rather than an event (builds by
//! state, database pool use, page-cache counters, bytes per index) is read when scraped
//! and encoded as a second, per-scrape registry ([`Sampled`]).
//!
//! Traps: labels are bounded sets (route templates, never raw paths; outcomes and states;
//! index names only in the sampled per-index gauges), so a scanner hitting random URLs
//! cannot grow the series without bound.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's route template, method and status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template, e.g. `/{ns}/{name}/+simple/{project}/` (`unmatched` for 404s).
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// A route template and method (latency histograms, without the status).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
    /// The HTTP method.
    pub method: String,
}

/// One word of outcome: `pass`, `promoted`, `delivered`, …
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The outcome.
    pub outcome: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every counter and histogram of this process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency, seconds.
    pub request_seconds: Histograms<RouteLabels>,
    /// Files accepted by uploads (twine, `uv publish`, builds).
    pub upload_files: Counter,
    /// Bytes of files accepted by uploads.
    pub upload_bytes: Counter,
    /// Stage results recorded, by outcome.
    pub stage_results: Family<OutcomeLabels, Counter>,
    /// Promotion decisions by outcome (`promoted`, `refused`).
    pub promotions: Family<OutcomeLabels, Counter>,
    /// Build long polls, and how long they waited, seconds.
    pub build_wait_seconds: Histogram,
    /// Requests to mirror upstreams, by outcome (`ok`, `not-modified`, `not-found`, `error`).
    pub upstream_requests: Family<OutcomeLabels, Counter>,
    /// Bytes of files fetched from mirror upstreams.
    pub upstream_bytes: Counter,
    /// Webhook delivery attempts, by outcome (`delivered`, `retry`, `failed`).
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    /// Blobs garbage collection deleted (unnamed blobs, orphans and staging leftovers).
    pub gc_deleted: Counter,
    /// Bytes garbage collection freed.
    pub gc_freed_bytes: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("kiln");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let request_seconds: Histograms<RouteLabels> = Family::new_with_constructor(latency);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request (until the response head), by route template and method",
            request_seconds.clone(),
        );
        let upload_files = Counter::default();
        registry.register(
            "upload_files",
            "Files accepted by uploads",
            upload_files.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register(
            "upload_bytes",
            "Bytes of files accepted by uploads",
            upload_bytes.clone(),
        );
        let stage_results = Family::default();
        registry.register(
            "stage_results",
            "Stage results recorded, by outcome",
            stage_results.clone(),
        );
        let promotions = Family::default();
        registry.register(
            "promotions",
            "Promotion decisions, by outcome (promoted, refused)",
            promotions.clone(),
        );
        let build_wait_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "build_wait_seconds",
            "How long build long polls waited for another runner's build",
            build_wait_seconds.clone(),
        );
        let upstream_requests = Family::default();
        registry.register(
            "upstream_requests",
            "Requests to mirror upstreams, by outcome",
            upstream_requests.clone(),
        );
        let upstream_bytes = Counter::default();
        registry.register(
            "upstream_bytes",
            "Bytes of files fetched from mirror upstreams",
            upstream_bytes.clone(),
        );
        let webhook_deliveries = Family::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retry, failed)",
            webhook_deliveries.clone(),
        );
        let gc_deleted = Counter::default();
        registry.register(
            "gc_deleted_blobs",
            "Blobs garbage collection deleted (nothing named them, or a crash left them)",
            gc_deleted.clone(),
        );
        let gc_freed_bytes = Counter::default();
        registry.register(
            "gc_freed_bytes",
            "Bytes garbage collection freed",
            gc_freed_bytes.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            upload_files,
            upload_bytes,
            stage_results,
            promotions,
            build_wait_seconds,
            upstream_requests,
            upstream_bytes,
            webhook_deliveries,
            gc_deleted,
            gc_freed_bytes,
        }
    }

    /// Counts one `outcome` in `family`.
    pub fn count(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// The process's metrics.
#[must_use]
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// One index's files and bytes, as sampled for a scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IndexLabels {
    /// `namespace/name`.
    pub index: String,
}

/// One build state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StateLabels {
    /// `building`, `ready` or `failed`.
    pub state: String,
}

/// What a scrape reads at that moment.
#[derive(Debug, Default)]
pub struct Sampled {
    /// Builds by state.
    pub builds: Vec<(String, i64)>,
    /// Connections the database pool holds, and how many are idle.
    pub pool: (i64, i64),
    /// Rendered-page cache hits and misses since start.
    pub page_cache: (u64, u64),
    /// Files and bytes per index.
    pub indexes: Vec<(String, i64, i64)>,
}

/// The `OpenMetrics` text of every metric, and of `sampled`.
#[must_use]
pub fn render(sampled: &Sampled) -> String {
    let mut extra = Registry::with_prefix("kiln");
    let builds: Family<StateLabels, Gauge> = Family::default();
    for (state, n) in &sampled.builds {
        builds
            .get_or_create(&StateLabels {
                state: state.clone(),
            })
            .set(*n);
    }
    extra.register("builds", "Builds by state (sampled)", builds);
    let (size, idle) = sampled.pool;
    let pool_size: Gauge = Gauge::default();
    pool_size.set(size);
    extra.register(
        "db_pool_connections",
        "Connections the database pool holds (sampled)",
        pool_size,
    );
    let pool_idle: Gauge = Gauge::default();
    pool_idle.set(idle);
    extra.register(
        "db_pool_idle_connections",
        "Idle connections in the database pool (sampled)",
        pool_idle,
    );
    let (hits, misses) = sampled.page_cache;
    let cache: Family<OutcomeLabels, Counter> = Family::default();
    cache
        .get_or_create(&OutcomeLabels {
            outcome: "hit".into(),
        })
        .inc_by(hits);
    cache
        .get_or_create(&OutcomeLabels {
            outcome: "miss".into(),
        })
        .inc_by(misses);
    extra.register(
        "page_cache_lookups",
        "Rendered simple pages served from memory (hit) or rendered (miss)",
        cache,
    );
    let files: Family<IndexLabels, Gauge> = Family::default();
    let bytes: Family<IndexLabels, Gauge> = Family::default();
    for (index, n, size) in &sampled.indexes {
        let labels = IndexLabels {
            index: index.clone(),
        };
        files.get_or_create(&labels).set(*n);
        bytes.get_or_create(&labels).set(*size);
    }
    extra.register("index_files", "Files each index lists (sampled)", files);
    extra.register(
        "index_bytes",
        "Bytes of the files each index lists (sampled)",
        bytes,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &metrics().registry);
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &extra);
    let _ = prometheus_client::encoding::text::encode_eof(&mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_samples_render_as_openmetrics() {
        Metrics::count(&metrics().stage_results, "pass");
        let text = render(&Sampled {
            builds: vec![("building".into(), 2)],
            pool: (4, 3),
            page_cache: (10, 1),
            indexes: vec![("root/master".into(), 5, 1234)],
        });
        for line in [
            "kiln_stage_results_total{outcome=\"pass\"}",
            "kiln_builds{state=\"building\"} 2",
            "kiln_db_pool_connections 4",
            "kiln_page_cache_lookups_total{outcome=\"hit\"} 10",
            "kiln_index_bytes{index=\"root/master\"} 1234",
            "# TYPE kiln_upload_files counter",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
