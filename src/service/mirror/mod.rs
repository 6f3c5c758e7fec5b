//! Mirror indexes: a caching proxy of an upstream simple index, merged into chains like
//! any base.
//!
//! - **Pages** are fetched on demand, checked ([`crate::domain::upstream_page`]), stored
//!   (`mirror_projects`, `mirror_files`) and served for the mirror's TTL; after that the
//!   next request revalidates (conditional on the upstream's `ETag`). Concurrent requests
//!   for one page share one upstream request ([`Flights`]).
//! - **Files** are fetched on first download. The bytes stream to every waiting client
//!   from one upstream response, through a temporary file each reader tails, while they
//!   are hashed; when the hash matches the page's sha256 they are stored by digest and
//!   served from storage ever after. The last byte is held back until then, so a mismatch
//!   aborts every client's download before it is complete, and caches nothing.
//! - **Upstream trouble**: a failed refresh serves the stored page marked stale; nothing
//!   stored means [`UpstreamError`] (HTTP 502). After a connection failure or a 5xx the
//!   mirror is left alone for [`DOWN_BACKOFF`], so CI does not wait on a dead upstream for
//!   every name it resolves.
//! - **Dependency confusion**: when a stage index before the mirror in the chain has files
//!   of a project, the mirror contributes nothing for that name — it is not even asked —
//!   unless one of those stage indexes allows the name (`mirror_allow`, devpi's
//!   `mirror_whitelist`). See [`mirror_may_serve`].
//!
//! The jobs live in their own files: [`guard`] (which names a mirror may serve),
//! [`page`] (fetching and storing upstream pages), [`pump`] (streaming, verifying and
//! storing files) and [`cache`] (what an operator sees and purges).

mod cache;
mod guard;
mod page;
mod pump;

use std::collections::HashMap;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;

use super::auth::Caller;
use super::flight::{Flights, Streams};
use super::{ServiceError, now_rfc3339, resolve};
use crate::db::{
    Db, FileRecord, ListedFile, Lock, MirrorCacheRow, MirrorFileRecord, MirrorProjectRecord,
    NewMirrorFile, PageStatus,
};
use crate::domain::upstream_page::UpstreamFile;
use crate::domain::{
    Index, IndexKind, IndexName, MirrorSettings, Permission, ProjectName, Sha256Digest,
};
use crate::storage::{ByteStream, Storage};
use crate::upstream::{PageFetch, Upstream, UpstreamError};

pub use guard::mirror_may_serve;
use guard::stage_ids;
use pump::FlightState;

/// How long a mirror whose upstream is unreachable (or answering 5xx) is not asked again.
pub const DOWN_BACKOFF: Duration = Duration::from_secs(10);
/// Largest core-metadata file fetched from an upstream.
const MAX_METADATA_BYTES: usize = 16 * 1024 * 1024;
/// Read size when tailing a file that is still arriving.
const TAIL_CHUNK: usize = 256 * 1024;

/// A mirror's answer for one project.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The files the upstream lists (empty when it has no such project).
    pub files: Vec<MirrorFileRecord>,
    /// Set when this is a stored copy served because the upstream failed.
    pub stale: Option<String>,
    /// How long this answer may be reused before asking again.
    pub fresh_for: Duration,
}

/// A project's files through a chain, with what the mirrors in it did.
#[derive(Debug, Default)]
pub struct ProjectView {
    /// Own-first, one per filename.
    pub files: Vec<ListedFile>,
    /// Mirrors that were not asked because the name is private (the guard).
    pub hidden_from: Vec<IndexName>,
    /// Mirrors that answered from their stored copy, and why.
    pub stale: Vec<String>,
    /// Mirrors that failed with nothing stored.
    pub errors: Vec<UpstreamError>,
    /// How long the view may be reused; `None` when no mirror took part.
    pub fresh_for: Option<Duration>,
}

/// Where a download through a chain comes from.
#[derive(Debug)]
pub enum Located {
    /// A file a stage index lists.
    Local(FileRecord),
    /// A file a mirror lists; `metadata` for its PEP 658 `.metadata`.
    Mirror {
        /// The mirror.
        mirror: Box<Index>,
        /// The listing row.
        file: MirrorFileRecord,
        /// True for the core-metadata file.
        metadata: bool,
    },
}

/// A download that is arriving from the upstream.
pub struct Download {
    /// The length, when the upstream said.
    pub length: Option<u64>,
    /// The bytes; ends with an error if they turn out not to match.
    pub body: ByteStream,
}

/// The mirror machinery: one upstream client, the flights in progress, and which
/// upstreams are down.
pub struct Mirrors {
    upstream: Upstream,
    pages: Flights<(i64, String), Result<Listing, UpstreamError>>,
    metadata: Flights<String, Result<Bytes, UpstreamError>>,
    files: Streams<String, FlightState>,
    down: Mutex<HashMap<i64, (Instant, UpstreamError)>>,
    max_file_bytes: u64,
    tmp_dir: PathBuf,
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirrors")
            .field("max_file_bytes", &self.max_file_bytes)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn local(what: &str, err: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Local(format!("{what}: {err}"))
}

fn settings(mirror: &Index) -> Result<&MirrorSettings, UpstreamError> {
    mirror.settings.mirror.as_ref().ok_or_else(|| {
        local(
            "mirror settings",
            format!("index `{}` is not a mirror", mirror.name),
        )
    })
}

impl Mirrors {
    /// The machinery, with `timeout` for upstream requests, `max_file_bytes` for mirrored
    /// files, and `tmp_dir` for files on their way in.
    pub fn new(
        timeout: Duration,
        max_file_bytes: u64,
        tmp_dir: PathBuf,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            upstream: Upstream::new(timeout)?,
            pages: Flights::default(),
            metadata: Flights::default(),
            files: Streams::default(),
            down: Mutex::default(),
            max_file_bytes,
            tmp_dir,
        })
    }

    fn down_error(&self, mirror_id: i64) -> Option<UpstreamError> {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        match down.get(&mirror_id) {
            Some((until, err)) if *until > Instant::now() => Some(err.clone()),
            Some(_) => {
                down.remove(&mirror_id);
                None
            }
            None => None,
        }
    }

    fn mark(&self, mirror_id: i64, err: &UpstreamError) {
        let transient = match err {
            UpstreamError::Unreachable { .. } => true,
            UpstreamError::Status { status, .. } => *status >= 500 || *status == 429,
            UpstreamError::Garbage { .. }
            | UpstreamError::Local(_)
            | UpstreamError::Refused { .. } => false,
        };
        if transient {
            self.down
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(mirror_id, (Instant::now() + DOWN_BACKOFF, err.clone()));
        }
    }

    /// The files of `project` through `chain` (stage indexes' own files, then what each
    /// mirror may contribute), own-first.
    pub async fn project_view(
        self: &Arc<Self>,
        db: &Db,
        chain: &[Index],
        project: &ProjectName,
    ) -> Result<ProjectView, ServiceError> {
        let stage_ids = stage_ids(chain);
        let own = db.files_of_project(&stage_ids, project.as_str()).await?;
        let published = !own.is_empty() || db.published_anywhere(project.as_str()).await?;
        let mut files: Vec<ListedFile> = own.into_iter().map(ListedFile::from).collect();
        let mut view = ProjectView::default();
        for (at, mirror) in chain.iter().enumerate() {
            if mirror.settings.kind != IndexKind::Mirror {
                continue;
            }
            if !mirror_may_serve(chain, at, published, project.as_str()) {
                view.hidden_from.push(mirror.name.clone());
                continue;
            }
            match self.listing(db, mirror, project, false).await {
                Ok(listing) => {
                    if let Some(why) = &listing.stale {
                        view.stale.push(format!("{}: {why}", mirror.name));
                    }
                    view.fresh_for = Some(
                        view.fresh_for
                            .map_or(listing.fresh_for, |f| f.min(listing.fresh_for)),
                    );
                    files.extend(listing.files.iter().map(ListedFile::from));
                }
                Err(UpstreamError::Local(why)) => return Err(ServiceError::Internal(why)),
                Err(err) => {
                    view.fresh_for = Some(Duration::ZERO);
                    view.errors.push(err);
                }
            }
        }
        let ids: Vec<i64> = chain.iter().map(|i| i.id).collect();
        view.files = resolve::merge_own_first(&ids, files);
        Ok(view)
    }

    /// Finds the file `filename` with `sha256` through the chain of index `name`, once
    /// the caller was found to may read it (see [`Self::locate`]).
    pub async fn find_file(
        db: &Db,
        caller: &Caller,
        name: &IndexName,
        sha256: &Sha256Digest,
        filename: &str,
    ) -> Result<Option<Located>, ServiceError> {
        let (_, chain) = super::auth::readable_chain(db, caller, name).await?;
        Self::locate(db, &chain, sha256, filename).await
    }

    /// Finds the file `filename` with `sha256` through `chain`: a stage index's own file
    /// first, then a mirror's (one the guard lets serve that project).
    async fn locate(
        db: &Db,
        chain: &[Index],
        sha256: &Sha256Digest,
        filename: &str,
    ) -> Result<Option<Located>, ServiceError> {
        let stage_ids = stage_ids(chain);
        let mirror_ids: Vec<i64> = chain
            .iter()
            .filter(|i| i.settings.kind == IndexKind::Mirror)
            .map(|i| i.id)
            .collect();
        let listed = db.files_with_digest(&stage_ids, sha256.as_str()).await?;
        let ids: Vec<i64> = chain.iter().map(|i| i.id).collect();
        let listed = resolve::merge_own_first(&ids, listed);
        let wheel_of_metadata = filename.strip_suffix(".metadata");
        if let Some(file) = listed.iter().find(|f| {
            f.filename == filename
                || (Some(f.filename.as_str()) == wheel_of_metadata && f.metadata_sha256.is_some())
        }) {
            return Ok(Some(Located::Local(file.clone())));
        }
        let mirrored = db
            .mirror_files_with_digest(&mirror_ids, sha256.as_str())
            .await?;
        for file in mirrored {
            let metadata = if file.filename == filename {
                false
            } else if Some(file.filename.as_str()) == wheel_of_metadata
                && file.metadata_sha256.is_some()
            {
                true
            } else {
                continue;
            };
            let Some(at) = chain.iter().position(|i| i.id == file.index_id) else {
                continue;
            };
            let published = db.published_anywhere(file.project.as_str()).await?;
            if mirror_may_serve(chain, at, published, file.project.as_str()) {
                return Ok(Some(Located::Mirror {
                    mirror: Box::new(chain[at].clone()),
                    file,
                    metadata,
                }));
            }
        }
        Ok(None)
    }
}

/// The index, refused unless it is a mirror.
fn mirror_index(index: Index) -> Result<Index, ServiceError> {
    if index.settings.kind != IndexKind::Mirror {
        return Err(ServiceError::Invalid(format!(
            "index `{}` is a stage index, not a mirror; it has no upstream cache",
            index.name
        )));
    }
    Ok(index)
}
