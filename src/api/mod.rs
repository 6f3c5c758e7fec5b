//! The JSON API contract: every route path, header name and request and response body
//! that the server and its clients (the CLI, the CI hooks, the tests) exchange.
//!
//! The server's handlers and [`crate::client`] both use these types, so a change to the
//! contract is one change, checked by the compiler on both sides. This module depends
//! only on [`crate::domain`].

pub mod bodies;

pub use bodies::*;

/// The header a builder sends its build lease in, tying an upload to the lease.
pub const LEASE_HEADER: &str = "x-kiln-lease";
/// On a simple page: mirrors that served a stored copy because their upstream failed.
pub const MIRROR_STALE_HEADER: &str = "x-kiln-mirror-stale";
/// On a simple page: mirrors the dependency-confusion guard kept out of it.
pub const MIRROR_HIDDEN_HEADER: &str = "x-kiln-mirror-hidden";

/// On a webhook delivery: what happened (the payload's `event`).
pub const WEBHOOK_EVENT_HEADER: &str = "x-kiln-event";
/// On a webhook delivery: its id, the same on every retry (a receiver dedupes on it).
pub const WEBHOOK_DELIVERY_HEADER: &str = "x-kiln-delivery";
/// On a webhook delivery: `t=<unix seconds>,sha256=<hex>`, the HMAC-SHA256 of
/// `"{t}.{body}"` keyed by the subscription's secret (see [`crate::domain::webhook`]).
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-kiln-signature";

/// Longest output tail a stage result keeps (the server cuts longer ones).
pub const MAX_LOG_TAIL: usize = 64 * 1024;
/// Longest output tail a failed build keeps.
pub const MAX_ERROR_TAIL: usize = 64 * 1024;

/// Keeps the last `max` bytes of `text`, cut at a character boundary.
#[must_use]
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `1.2 MB` for a byte count.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The metadata file of an export directory (`kiln export`, `kiln import`).
pub const EXPORT_FILE: &str = "kiln-export.jsonl";

/// Where a blob lives, in the store and in an export directory:
/// `blobs/sha256/ab/cd/<hex digest>`.
#[must_use]
pub fn blob_key(hex: &str) -> String {
    let (a, b) = (
        hex.get(0..2).unwrap_or_default(),
        hex.get(2..4).unwrap_or_default(),
    );
    format!("blobs/sha256/{a}/{b}/{hex}")
}

/// Route templates, in axum's `{param}` syntax. `{ns}/{name}` is an index name.
pub mod paths {
    /// `GET`: liveness and backends.
    pub const HEALTH: &str = "/+health";
    /// `GET`: Prometheus metrics.
    pub const METRICS: &str = "/metrics";
    /// `GET`: the web UI's home page (indexes, build queue, latest events).
    pub const HOME: &str = "/";
    /// `GET`: the icon browsers ask for.
    pub const FAVICON: &str = "/favicon.ico";
    /// `GET` the sign-in form, `POST` a token to it (sets the UI's cookie).
    pub const SIGN_IN: &str = "/+signin";
    /// `POST`: forget the UI's cookie.
    pub const SIGN_OUT: &str = "/+signout";
    /// `GET`: the events page (`?index=`, `?kind=`, `?before=`).
    pub const EVENTS_PAGE: &str = "/+events";
    /// `GET`: the Atom feed of every event the caller may see.
    pub const FEED: &str = "/+feed";
    /// `GET`: the badge of a project's newest release on an index.
    pub const BADGE: &str = "/+badge/{ns}/{name}/{project}";
    /// `GET`: the badge of one stage of a project's newest release on an index.
    pub const STAGE_BADGE: &str = "/+badge/{ns}/{name}/{project}/{stage}";
    /// `GET`: the page of one namespace's indexes.
    pub const NAMESPACE_PAGE: &str = "/{ns}";
    /// `GET`: the Atom feed of one index's events.
    pub const INDEX_FEED: &str = "/{ns}/{name}/+feed";
    /// `GET`: a project's page on an index.
    pub const PROJECT_PAGE: &str = "/{ns}/{name}/{project}";
    /// `GET`: a release's page on an index.
    pub const RELEASE_PAGE: &str = "/{ns}/{name}/{project}/{version}";
    /// `GET` list, `POST` create.
    pub const INDEXES: &str = "/+api/v1/indexes";
    /// `GET`, `PATCH`, `DELETE` one index.
    pub const INDEX: &str = "/+api/v1/indexes/{ns}/{name}";
    /// `GET` list, `POST` create.
    pub const TOKENS: &str = "/+api/v1/tokens";
    /// `DELETE`: revoke.
    pub const TOKEN: &str = "/+api/v1/tokens/{id}";
    /// `GET` list, `POST` create a webhook subscription.
    pub const WEBHOOKS: &str = "/+api/v1/webhooks";
    /// `DELETE`: remove a webhook subscription (and its delivery log).
    pub const WEBHOOK: &str = "/+api/v1/webhooks/{id}";
    /// `GET`: a webhook subscription's newest deliveries.
    pub const WEBHOOK_DELIVERIES: &str = "/+api/v1/webhooks/{id}/deliveries";
    /// `POST` claim, `GET` status (`?wait=SECS` long-polls).
    pub const BUILD: &str = "/+api/v1/builds/{ns}/{name}/{project}/{version}";
    /// `POST`: extend a lease.
    pub const BUILD_HEARTBEAT: &str = "/+api/v1/builds/{ns}/{name}/{project}/{version}/heartbeat";
    /// `POST`: the build is uploaded.
    pub const BUILD_COMPLETE: &str = "/+api/v1/builds/{ns}/{name}/{project}/{version}/complete";
    /// `POST`: the build failed.
    pub const BUILD_FAIL: &str = "/+api/v1/builds/{ns}/{name}/{project}/{version}/fail";
    /// `POST`: record a stage result.
    pub const RESULTS: &str = "/+api/v1/results";
    /// `GET`: the results of one artifact.
    pub const ARTIFACT_RESULTS: &str = "/+api/v1/results/{sha256}";
    /// `GET`: a release's build and stage matrix.
    pub const RELEASE: &str = "/+api/v1/releases/{ns}/{name}/{project}/{version}";
    /// `POST`: yank a release (PEP 592).
    pub const RELEASE_YANK: &str = "/+api/v1/releases/{ns}/{name}/{project}/{version}/yank";
    /// `POST`: un-yank a release.
    pub const RELEASE_UNYANK: &str = "/+api/v1/releases/{ns}/{name}/{project}/{version}/unyank";
    /// `POST`: remove a release (or one file of it) into the trash.
    pub const RELEASE_REMOVE: &str = "/+api/v1/releases/{ns}/{name}/{project}/{version}/remove";
    /// `GET`: trash entries (`?index=`, `?limit=`).
    pub const TRASH: &str = "/+api/v1/trash";
    /// `POST`: put a trash entry's files back.
    pub const TRASH_RESTORE: &str = "/+api/v1/trash/{id}/restore";
    /// `POST`: release a trash entry now, for good.
    pub const TRASH_RELEASE: &str = "/+api/v1/trash/{id}/release";
    /// `GET`: every row, as JSON lines (`kiln export`).
    pub const EXPORT: &str = "/+api/v1/export";
    /// `GET`: one blob's bytes, for an export.
    pub const EXPORT_BLOB: &str = "/+api/v1/export/blobs/{sha256}";
    /// `POST`: collect garbage now (or a dry run).
    pub const GC: &str = "/+api/v1/gc";
    /// `POST`: these branches are gone; their branch indexes go into the trash.
    pub const BRANCHES_GONE: &str = "/+api/v1/branches/{ns}/gone";
    /// `POST`: only these branches exist; every other branch index goes into the trash.
    pub const BRANCHES_KEEP: &str = "/+api/v1/branches/{ns}/keep";
    /// `POST` promote, `GET` the audit trail.
    pub const PROMOTIONS: &str = "/+api/v1/promotions";
    /// `GET`: promotions, refusals, yanks.
    pub const EVENTS: &str = "/+api/v1/events";
    /// `GET`: what a mirror has cached.
    pub const MIRROR: &str = "/+api/v1/mirrors/{ns}/{name}";
    /// `DELETE`: purge a project from a mirror's cache.
    pub const MIRROR_PROJECT: &str = "/+api/v1/mirrors/{ns}/{name}/{project}";
    /// `POST`: ask the upstream now.
    pub const MIRROR_REFRESH: &str = "/+api/v1/mirrors/{ns}/{name}/{project}/refresh";
    /// `POST` upload (legacy API, twine and `uv publish`); `GET` the index as JSON.
    pub const UPLOAD: &str = "/{ns}/{name}/";
    /// The same without the trailing slash.
    pub const UPLOAD_BARE: &str = "/{ns}/{name}";
    /// `GET`: redirects to [`SIMPLE`].
    pub const SIMPLE_BARE: &str = "/{ns}/{name}/+simple";
    /// `GET`: the project list (PEP 503/691).
    pub const SIMPLE: &str = "/{ns}/{name}/+simple/";
    /// `GET`: redirects to [`SIMPLE_PROJECT`].
    pub const SIMPLE_PROJECT_BARE: &str = "/{ns}/{name}/+simple/{project}";
    /// `GET`: a project page (PEP 503/691).
    pub const SIMPLE_PROJECT: &str = "/{ns}/{name}/+simple/{project}/";
    /// `GET`/`HEAD`: a file (and `<file>.metadata`, PEP 658).
    pub const FILE: &str = "/{ns}/{name}/+f/{sha256}/{filename}";

    /// `template` with each `{key}` replaced by its value; `index` fills `{ns}/{name}`.
    /// Values are inserted as given: percent-encode free text first. The leading `/` is
    /// dropped, so the result joins a server's base URL.
    #[must_use]
    pub fn fill<V: AsRef<str>>(template: &str, params: &[(&str, V)]) -> String {
        let mut path = template.trim_start_matches('/').to_owned();
        for (key, value) in params {
            let placeholder = if *key == "index" {
                "{ns}/{name}".to_owned()
            } else {
                format!("{{{key}}}")
            };
            path = path.replace(&placeholder, value.as_ref());
        }
        path
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn fills_templates() {
            assert_eq!(
                fill(
                    BUILD_FAIL,
                    &[("index", "a/b"), ("project", "p"), ("version", "1.0")]
                ),
                "+api/v1/builds/a/b/p/1.0/fail"
            );
            assert_eq!(fill(TOKEN, &[("id", "7")]), "+api/v1/tokens/7");
            assert_eq!(fill::<&str>(INDEXES, &[]), "+api/v1/indexes");
        }
    }
}
