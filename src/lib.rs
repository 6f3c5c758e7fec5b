//! Kiln: a Python package index server for CI.
//!
//! Each branch's wheel is built once and every later stage installs those exact bytes from
//! the branch's index, which inherits master and production. This crate is the server
//! (`serve`), its storage and its rules, the typed client the CLI uses, and the CI hooks
//! (`ensure`, `stage`, `report`) that run on build runners.
//!
//! Layers, top to bottom: [`http`] handlers → [`service`] use cases → [`db`],
//! [`storage`] and [`upstream`] (a mirror's upstream index); [`domain`] types are shared
//! by all and do no I/O.

pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod db;
pub mod domain;
pub mod env_vars;
pub mod hooks;
pub mod http;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod policy;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod upstream;

use std::future::Future;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::{AppState, router};
use crate::config::ServeConfig;
use crate::db::Db;
use crate::service::bootstrap::{Bootstrapped, bootstrap};
use crate::storage::Storage;
use axum::serve::ListenerExt as _;
use tower::Layer as _;

/// A server whose database and storage are open, ready to accept connections.
pub struct Server {
    state: AppState,
    /// Set on the very first start: the layout and admin token that were created.
    pub bootstrapped: Option<Bootstrapped>,
}

impl Server {
    /// Opens (and on first start, initializes) the data directory, database and storage.
    pub async fn open(config: ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory `{}`", config.data_dir.display()))?;
        let tmp = config.tmp_dir();
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating `{}`", tmp.display()))?;
        // Spooled bodies of uploads that were cut off by a crash are garbage. The
        // directory itself stays: it may be a mount point of its own.
        empty_dir(&tmp).with_context(|| format!("clearing `{}`", tmp.display()))?;
        let db = Db::connect(&config.database_url).await.with_context(|| {
            format!(
                "opening database `{}`",
                db::redact_url(&config.database_url)
            )
        })?;
        let storage = Storage::open(&config.storage_url, &config.storage_options)
            .with_context(|| format!("opening storage `{}`", config.storage_url))?;
        storage.check().await.with_context(|| {
            format!(
                "storage `{}` does not answer (does the bucket exist, and are the endpoint and AWS credentials right?)",
                config.storage_url
            )
        })?;
        let bootstrapped = bootstrap(
            &db,
            config.admin_token.as_deref(),
            config.upstream.as_deref(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping the first-start layout: {e}"))?;
        let state = AppState::new(db, storage, config)?;
        Ok(Self {
            state,
            bootstrapped,
        })
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let db = self.state.db.clone();
        let stopping = self.state.stopping.clone();
        // Every replica sends webhook deliveries from the shared queue.
        let deliverer = tokio::spawn(
            crate::service::webhooks::Deliverer::new(
                db.clone(),
                self.state.webhooks.clone(),
                self.state.config.webhooks.clone(),
            )
            .run(stopping.clone()),
        );
        // Every replica offers to collect garbage on a schedule; the fleet lease lets one
        // at a time.
        let collector = self.state.config.gc.interval.map(|every| {
            tokio::spawn(collect_garbage(self.state.clone(), every, stopping.clone()))
        });
        let address = listener.local_addr()?;
        tracing::info!(listen.address = %address, "kiln is serving");
        let app = tower::util::MapRequestLayer::new(app::decode_plus).layer(router(self.state));
        // Without TCP_NODELAY, small responses on a kept-alive connection can wait for the
        // peer's delayed ACK (Nagle), which adds tens of milliseconds to every pip request.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(error = %err, "could not set TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
        )
        .with_graceful_shutdown({
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                // Long polls answer now and stalled uploads are cut; the rest finish.
                stopping.cancel();
            }
        })
        .await
        .context("serving HTTP")?;
        stopping.cancel();
        if let Err(e) = deliverer.await {
            tracing::warn!(error = %e, "the webhook sender ended abnormally");
        }
        if let Some(collector) = collector
            && let Err(e) = collector.await
        {
            tracing::warn!(error = %e, "the garbage collector ended abnormally");
        }
        db.close().await;
        tracing::info!("kiln stopped");
        Ok(())
    }
}

/// Collects garbage every `every` until `stopping` (a collection in progress finishes
/// its current blob first: it stops at the next lease renewal at the latest).
async fn collect_garbage(
    state: AppState,
    every: std::time::Duration,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let run = crate::service::gc::collect(
            &state.db,
            &state.storage,
            crate::service::gc::GcSettings {
                grace: state.config.gc.grace,
                trash_for: state.config.gc.trash_for,
                retention: &state.config.policies.retention,
            },
            &state.replica,
        );
        tokio::select! {
            () = stopping.cancelled() => return,
            outcome = run => match outcome {
                Ok(_) => {}
                Err(crate::service::ServiceError::Conflict(why)) => {
                    tracing::debug!(reason = %why, "another replica is collecting garbage");
                }
                Err(err) => tracing::warn!(error = %err, "garbage collection failed; it runs again next time"),
            },
        }
    }
}

/// Removes everything inside `dir`, leaving the directory itself (which may be a mount
/// point, or owned by someone else).
fn empty_dir(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn emptying_tmp_keeps_the_directory_itself() {
        use std::os::unix::fs::MetadataExt as _;
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(tmp.join("upload-1/nested")).unwrap();
        std::fs::write(tmp.join("spool-2"), b"cut off").unwrap();
        std::fs::write(tmp.join("upload-1/nested/part"), b"x").unwrap();
        let inode = std::fs::metadata(&tmp).unwrap().ino();
        super::empty_dir(&tmp).unwrap();
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(
            std::fs::metadata(&tmp).unwrap().ino(),
            inode,
            "the same directory (a mount point stays mounted)"
        );
    }
}
