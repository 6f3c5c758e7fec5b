//! The whole integration suite again, with every server on PostgreSQL + an S3 bucket
//! instead of SQLite + a local directory, plus the tests only several replicas can run.
//!
//! The modules are the files of `tests/api/` (the `modules_match_the_embedded_suite` test
//! keeps the two lists equal). `helpers::shared_backends()` tells the helpers which suite
//! they are in, by crate name. Without PostgreSQL or moto this binary says what is missing
//! and skips, unless `KILN_TEST_REQUIRE_BACKENDS=1` (set by `.ci/run`) makes it a failure.

#[path = "api/access.rs"]
mod access;
#[path = "api/browser.rs"]
mod browser;
#[path = "api/clients.rs"]
mod clients;
#[path = "api/faults.rs"]
mod faults;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/hooks.rs"]
mod hooks;
#[path = "api/hostile.rs"]
mod hostile;
#[path = "api/indexes.rs"]
mod indexes;
#[path = "api/lifecycle.rs"]
mod lifecycle;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/mirrors.rs"]
mod mirrors;
#[path = "api/policies.rs"]
mod policies;
#[path = "api/promotions.rs"]
mod promotions;
#[path = "api/retention.rs"]
mod retention;
#[path = "api/routes.rs"]
mod routes;
#[path = "api/runners.rs"]
mod runners;
#[path = "api/simple.rs"]
mod simple;
#[path = "api/trash.rs"]
mod trash;
#[path = "api/ui.rs"]
mod ui;
#[path = "api/uploads.rs"]
mod uploads;
#[path = "api/verdicts.rs"]
mod verdicts;
#[path = "api/webhooks.rs"]
mod webhooks;

/// Backends that stop answering (a proxy that freezes).
#[path = "api_pg_s3/outages.rs"]
mod outages;
/// Several `kiln serve` processes on one database and bucket.
#[path = "api_pg_s3/replicas.rs"]
mod replicas;
/// The S3 store itself, against the S3-compatible server.
#[path = "api_pg_s3/storage.rs"]
mod storage;
/// Moving from the embedded default to PostgreSQL + S3 (`kiln export`, `kiln import`).
#[path = "api_pg_s3/transfer.rs"]
mod transfer;

#[test]
fn modules_match_the_embedded_suite() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let embedded = std::fs::read_to_string(root.join("api/main.rs")).unwrap();
    let this = std::fs::read_to_string(root.join("api_pg_s3.rs")).unwrap();
    let declared = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
            .filter(|name| !matches!(*name, "outages" | "replicas" | "storage" | "transfer"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        declared(&embedded),
        declared(&this),
        "tests/api_pg_s3.rs must declare every module of tests/api/main.rs"
    );
}
