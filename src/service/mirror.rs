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
    Db, FileRecord, ListedFile, MirrorCacheRow, MirrorFileRecord, MirrorProjectRecord,
    NewMirrorFile, PageStatus,
};
use crate::domain::upstream_page::UpstreamFile;
use crate::domain::{
    Index, IndexKind, IndexName, MirrorSettings, Permission, ProjectName, Sha256Digest,
};
use crate::storage::{ByteStream, Storage};
use crate::upstream::{PageFetch, Upstream, UpstreamError};

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

#[derive(Clone)]
enum FlightState {
    Connecting,
    Receiving {
        file: Arc<std::fs::File>,
        length: Option<u64>,
        written: u64,
    },
    Done {
        file: Arc<std::fs::File>,
        size: u64,
    },
    Failed(UpstreamError),
}

/// True if the mirror at `at` in `chain` may serve `project`: no stage index before it
/// has files of that name (`private` holds the chain positions that do), or one of the
/// stage indexes before it allows the name.
#[must_use]
pub fn mirror_may_serve(chain: &[Index], at: usize, private: &[usize], project: &str) -> bool {
    if !private.iter().any(|p| *p < at) {
        return true;
    }
    chain[..at].iter().any(|index| {
        index.settings.kind == IndexKind::Stage
            && MirrorSettings::allows(&index.settings.mirror_allow, project)
    })
}

/// The chain positions of the indexes that list any of `files` (the private ones).
fn private_positions(chain: &[Index], files: &[FileRecord]) -> Vec<usize> {
    chain
        .iter()
        .enumerate()
        .filter(|(_, index)| files.iter().any(|f| f.index_id == index.id))
        .map(|(at, _)| at)
        .collect()
}

/// The ids of the chain's stage indexes (the ones with files of their own).
fn stage_ids(chain: &[Index]) -> Vec<i64> {
    chain
        .iter()
        .filter(|i| i.settings.kind == IndexKind::Stage)
        .map(|i| i.id)
        .collect()
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

/// SHA-256 over a canonical form of a listing, to notice an unchanged refresh.
fn listing_digest(files: &[NewMirrorFile]) -> String {
    let mut hasher = Sha256::new();
    for f in files {
        let fields = [
            f.filename.as_str(),
            f.url.as_str(),
            f.sha256.as_str(),
            &f.size.map(|s| s.to_string()).unwrap_or_default(),
            f.requires_python.as_deref().unwrap_or(""),
            f.metadata_sha256.as_deref().unwrap_or(""),
            f.yanked.as_deref().map_or("-", |r| r),
            f.upload_time.as_deref().unwrap_or(""),
        ];
        for field in fields {
            hasher.update(field.as_bytes());
            hasher.update([0]);
        }
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

fn to_new_file(file: UpstreamFile) -> NewMirrorFile {
    NewMirrorFile {
        version: file.version,
        filename: file.filename,
        kind: file.kind.as_str(),
        sha256: file.sha256,
        size: file.size.and_then(|s| i64::try_from(s).ok()),
        requires_python: file.requires_python,
        metadata_sha256: file.metadata_sha256,
        yanked: file.yanked,
        upload_time: file.upload_time,
        url: file.url,
    }
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
            UpstreamError::Garbage { .. } | UpstreamError::Local(_) => false,
        };
        if transient {
            self.down
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(mirror_id, (Instant::now() + DOWN_BACKOFF, err.clone()));
        }
    }

    /// The mirror's answer for `project`: stored and fresh, refreshed, or stored and
    /// stale because the upstream failed. `force` refreshes even a fresh page.
    pub async fn listing(
        self: &Arc<Self>,
        db: &Db,
        mirror: &Index,
        project: &ProjectName,
        force: bool,
    ) -> Result<Listing, UpstreamError> {
        let ttl = Duration::from_secs(settings(mirror)?.ttl_seconds);
        let stored = db
            .find_mirror_project(mirror.id, project.as_str())
            .await
            .map_err(|e| local("reading the mirror cache", e))?;
        if !force && let Some(fresh_for) = stored.as_ref().and_then(|s| remaining(s, ttl)) {
            return stored_listing(db, mirror.id, project, None, fresh_for).await;
        }
        // A forced refresh (an operator asking) tries the upstream even while it is
        // marked down; everything else waits out the back-off.
        if let Some(err) = self.down_error(mirror.id).filter(|_| !force) {
            return match stored {
                Some(_) => {
                    stored_listing(db, mirror.id, project, Some(err.to_string()), DOWN_BACKOFF)
                        .await
                }
                None => Err(err),
            };
        }
        let this = Arc::clone(self);
        let db = db.clone();
        let mirror = mirror.clone();
        let project = project.clone();
        let key = (mirror.id, project.as_str().to_owned());
        self.pages
            .run(key, move || async move {
                this.refresh(&db, &mirror, &project, force).await
            })
            .await
            .map_err(|e| local("refreshing the page", e))?
    }

    async fn refresh(
        &self,
        db: &Db,
        mirror: &Index,
        project: &ProjectName,
        force: bool,
    ) -> Result<Listing, UpstreamError> {
        let settings = settings(mirror)?;
        let ttl = Duration::from_secs(settings.ttl_seconds);
        // Another flight may have refreshed it while this one was being set up.
        let stored = db
            .find_mirror_project(mirror.id, project.as_str())
            .await
            .map_err(|e| local("reading the mirror cache", e))?;
        if !force && let Some(fresh_for) = stored.as_ref().and_then(|s| remaining(s, ttl)) {
            return stored_listing(db, mirror.id, project, None, fresh_for).await;
        }
        let etag = stored
            .as_ref()
            .filter(|s| s.status == PageStatus::Found)
            .and_then(|s| s.etag.as_deref());
        let fetched = self.upstream.fetch_page(settings, project, etag).await;
        let fetched = match fetched {
            Ok(fetched) => {
                self.down
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&mirror.id);
                fetched
            }
            Err(err) => {
                tracing::warn!(mirror = %mirror.name, project = %project, error = %err, "upstream page refresh failed");
                self.mark(mirror.id, &err);
                return match stored {
                    Some(_) => {
                        stored_listing(db, mirror.id, project, Some(err.to_string()), DOWN_BACKOFF)
                            .await
                    }
                    None => Err(err),
                };
            }
        };
        let (status, etag, files) = match fetched {
            PageFetch::NotModified if stored.is_some() => {
                db.touch_mirror_project(mirror.id, project.as_str(), now_ms(), None)
                    .await
                    .map_err(|e| local("updating the mirror cache", e))?;
                return stored_listing(db, mirror.id, project, None, ttl).await;
            }
            PageFetch::NotModified => {
                return Err(UpstreamError::Garbage {
                    url: format!("{}{project}/", settings.url),
                    why: "HTTP 304 to an unconditional request".into(),
                });
            }
            PageFetch::NotFound => (PageStatus::Missing, None, Vec::new()),
            PageFetch::Page { page, etag } => {
                if page.skipped > 0 {
                    tracing::debug!(mirror = %mirror.name, project = %project, skipped = page.skipped, "upstream entries skipped (other projects, no sha256, unknown file types)");
                }
                (
                    PageStatus::Found,
                    etag,
                    page.files.into_iter().map(to_new_file).collect(),
                )
            }
        };
        let record = MirrorProjectRecord {
            status,
            fetched_at_ms: now_ms(),
            etag,
            listing_sha256: listing_digest(&files),
        };
        let unchanged = stored.as_ref().is_some_and(|s| {
            s.status == record.status && s.listing_sha256 == record.listing_sha256
        });
        if unchanged {
            db.touch_mirror_project(
                mirror.id,
                project.as_str(),
                record.fetched_at_ms,
                record.etag.as_deref(),
            )
            .await
            .map_err(|e| local("updating the mirror cache", e))?;
        } else {
            let mut tx = db
                .begin_write()
                .await
                .map_err(|e| local("storing the page", e))?;
            Db::store_mirror_listing(&mut tx, mirror.id, project.as_str(), &record, &files)
                .await
                .map_err(|e| local("storing the page", e))?;
            tx.commit()
                .await
                .map_err(|e| local("storing the page", e))?;
            tracing::info!(mirror = %mirror.name, project = %project, status = %status, files = files.len(), "mirrored project page");
        }
        stored_listing(db, mirror.id, project, None, ttl).await
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
        let private = private_positions(chain, &own);
        let mut files: Vec<ListedFile> = own.into_iter().map(ListedFile::from).collect();
        let mut view = ProjectView::default();
        for (at, mirror) in chain.iter().enumerate() {
            if mirror.settings.kind != IndexKind::Mirror {
                continue;
            }
            if !mirror_may_serve(chain, at, &private, project.as_str()) {
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
        let chain = super::auth::readable_chain(db, caller, name).await?;
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
            let private_files = db
                .files_of_project(&stage_ids, file.project.as_str())
                .await?;
            let private = private_positions(chain, &private_files);
            if mirror_may_serve(chain, at, &private, file.project.as_str()) {
                return Ok(Some(Located::Mirror {
                    mirror: Box::new(chain[at].clone()),
                    file,
                    metadata,
                }));
            }
        }
        Ok(None)
    }

    /// Starts (or joins) the download of a mirrored file that is not stored yet.
    pub async fn download(
        self: &Arc<Self>,
        db: &Db,
        storage: &Storage,
        mirror: &Index,
        file: &MirrorFileRecord,
    ) -> Result<Download, UpstreamError> {
        let digest = file.sha256.clone();
        let settings = settings(mirror)?.clone();
        let pump = Pump {
            upstream: self.upstream.clone(),
            settings,
            mirror: mirror.name.clone(),
            file: file.clone(),
            digest: digest.clone(),
            db: db.clone(),
            storage: storage.clone(),
            tmp_dir: self.tmp_dir.clone(),
            max_bytes: self.max_file_bytes,
        };
        let mut state = self.files.join(
            digest.as_str().to_owned(),
            FlightState::Connecting,
            |sender| pump.run(sender),
        );
        let length = loop {
            match &*state.borrow_and_update() {
                FlightState::Connecting => {}
                FlightState::Receiving { length, .. } => break *length,
                FlightState::Done { size, .. } => break Some(*size),
                FlightState::Failed(err) => return Err(err.clone()),
            }
            if state.changed().await.is_err() {
                return Err(local("downloading", "the download task ended unexpectedly"));
            }
        };
        Ok(Download {
            length,
            body: tail(state),
        })
    }

    /// The core metadata of a mirrored file: stored, or fetched once, verified and stored.
    pub async fn metadata(
        self: &Arc<Self>,
        db: &Db,
        storage: &Storage,
        mirror: &Index,
        file: &MirrorFileRecord,
    ) -> Result<Bytes, UpstreamError> {
        let digest = file
            .metadata_sha256
            .clone()
            .ok_or_else(|| local("the listed metadata sha256", "the upstream lists none"))?;
        if db
            .blob_exists(digest.as_str())
            .await
            .map_err(|e| local("reading the cache", e))?
        {
            return storage
                .read_all(&digest)
                .await
                .map_err(|e| local("reading the cached metadata", e));
        }
        let upstream = self.upstream.clone();
        let settings = settings(mirror)?.clone();
        let url = format!("{}.metadata", file.url);
        let db = db.clone();
        let storage = storage.clone();
        let key = digest.as_str().to_owned();
        self.metadata
            .run(key, move || async move {
                let bytes = upstream
                    .fetch_small(&settings, &url, MAX_METADATA_BYTES)
                    .await?;
                let got = Sha256Digest::of(&bytes);
                if got != digest {
                    let err = UpstreamError::Garbage {
                        url,
                        why: format!("core metadata has sha256 {got}, but the page lists {digest}"),
                    };
                    tracing::warn!(error = %err, "refused upstream metadata");
                    return Err(err);
                }
                storage
                    .put_bytes(&digest, bytes.clone())
                    .await
                    .map_err(|e| local("storing metadata", e))?;
                db.record_blob(
                    digest.as_str(),
                    i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                    &now_rfc3339(),
                )
                .await
                .map_err(|e| local("recording metadata", e))?;
                Ok(bytes)
            })
            .await
            .map_err(|e| local("fetching metadata", e))?
    }

    /// The names the guard hides from the first mirror in `chain`: projects the stage
    /// indexes before it have files of, minus the names they allow. Empty without a mirror.
    pub async fn shadowed(db: &Db, chain: &[Index]) -> Result<Vec<String>, ServiceError> {
        let Some(first) = chain
            .iter()
            .position(|i| i.settings.kind == IndexKind::Mirror)
        else {
            return Ok(Vec::new());
        };
        let before = &chain[..first];
        let ids: Vec<i64> = before.iter().map(|i| i.id).collect();
        let names = db.projects_of(&ids).await?;
        Ok(names
            .into_iter()
            .filter(|name| {
                !before
                    .iter()
                    .any(|i| MirrorSettings::allows(&i.settings.mirror_allow, name))
            })
            .collect())
    }

    /// A mirror, its upstream settings and what it has cached, if the caller may read it.
    pub async fn cache(
        db: &Db,
        caller: &Caller,
        name: &IndexName,
    ) -> Result<(Index, MirrorSettings, Vec<MirrorCacheRow>), ServiceError> {
        let chain = super::auth::readable_chain(db, caller, name).await?;
        let mirror = mirror_index(chain.into_iter().next(), name)?;
        let settings = mirror.settings.mirror.clone().ok_or_else(|| {
            ServiceError::Internal(format!("mirror `{name}` has no upstream settings"))
        })?;
        let rows = db.mirror_cache(mirror.id).await?;
        Ok((mirror, settings, rows))
    }

    /// Asks the upstream for `project` now, whatever the TTL, if the caller holds
    /// `upload` on the mirror.
    pub async fn refresh_now(
        self: &Arc<Self>,
        db: &Db,
        caller: &Caller,
        name: &IndexName,
        project: &ProjectName,
    ) -> Result<Listing, ServiceError> {
        caller.require(Permission::Upload, name)?;
        let mirror = mirror_index(db.find_index(name).await?, name)?;
        Ok(self.listing(db, &mirror, project, true).await?)
    }

    /// Forgets a mirror's page of `project` and deletes cached bytes nothing else uses,
    /// if the caller holds `admin` on the mirror. Returns how many blobs were deleted;
    /// `NotFound` if nothing was cached.
    pub async fn purge(
        db: &Db,
        storage: &Storage,
        caller: &Caller,
        name: &IndexName,
        project: &ProjectName,
    ) -> Result<usize, ServiceError> {
        caller.require(Permission::Admin, name)?;
        let mirror = &mirror_index(db.find_index(name).await?, name)?;
        let mut tx = db.begin_write().await?;
        let Some(orphans) = Db::purge_mirror_project(&mut tx, mirror.id, project.as_str()).await?
        else {
            return Err(ServiceError::NotFound(format!(
                "mirror `{}` has nothing cached for `{project}`",
                mirror.name
            )));
        };
        tx.commit().await.map_err(crate::db::DbError::from)?;
        for sha in &orphans {
            if let Ok(digest) = sha.parse::<Sha256Digest>()
                && let Err(err) = storage.delete(&digest).await
            {
                tracing::warn!(sha256 = %sha, error = %err, "could not delete a purged blob; it stays as an orphan");
            }
        }
        Ok(orphans.len())
    }
}

/// The index, refused unless it exists and is a mirror.
fn mirror_index(found: Option<Index>, name: &IndexName) -> Result<Index, ServiceError> {
    let index =
        found.ok_or_else(|| ServiceError::NotFound(format!("index `{name}` does not exist")))?;
    if index.settings.kind != IndexKind::Mirror {
        return Err(ServiceError::Invalid(format!(
            "index `{name}` is a stage index, not a mirror; it has no upstream cache"
        )));
    }
    Ok(index)
}

fn remaining(stored: &MirrorProjectRecord, ttl: Duration) -> Option<Duration> {
    let age = now_ms() - stored.fetched_at_ms;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    (age >= 0 && age < ttl_ms)
        .then(|| Duration::from_millis(u64::try_from(ttl_ms - age).unwrap_or(0)))
}

async fn stored_listing(
    db: &Db,
    mirror_id: i64,
    project: &ProjectName,
    stale: Option<String>,
    fresh_for: Duration,
) -> Result<Listing, UpstreamError> {
    let files = db
        .mirror_files_of_project(mirror_id, project.as_str())
        .await
        .map_err(|e| local("reading the mirror cache", e))?;
    Ok(Listing {
        files,
        stale,
        fresh_for,
    })
}

/// Streams a download to one client by tailing the flight's temporary file.
fn tail(state: watch::Receiver<FlightState>) -> ByteStream {
    futures_util::stream::unfold(
        (state, 0u64, false),
        |(mut state, offset, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let snapshot = state.borrow_and_update().clone();
                let (file, available) = match snapshot {
                    // The last byte is held back until the whole file is verified (and
                    // stored): a client never holds a complete download of bytes that turn
                    // out not to match, and one that does can count on the cache.
                    FlightState::Receiving { file, written, .. } => {
                        (file, written.saturating_sub(1))
                    }
                    FlightState::Done { file, size } if size > offset => (file, size),
                    FlightState::Done { .. } => return None,
                    FlightState::Failed(err) => {
                        let err = std::io::Error::other(err.to_string());
                        return Some((Err(err), (state, offset, true)));
                    }
                    FlightState::Connecting => {
                        if state.changed().await.is_err() {
                            return None;
                        }
                        continue;
                    }
                };
                if available <= offset {
                    if state.changed().await.is_err() {
                        let err = std::io::Error::other("the download task ended unexpectedly");
                        return Some((Err(err), (state, offset, true)));
                    }
                    continue;
                }
                let want = usize::try_from((available - offset).min(TAIL_CHUNK as u64))
                    .unwrap_or(TAIL_CHUNK);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    let n = file.read_at(&mut buf, offset)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                return match read {
                    Ok(buf) if !buf.is_empty() => {
                        let next = offset + buf.len() as u64;
                        Some((Ok(Bytes::from(buf)), (state, next, false)))
                    }
                    Ok(_) => {
                        let err =
                            std::io::Error::other("the cached download is shorter than expected");
                        Some((Err(err), (state, offset, true)))
                    }
                    Err(err) => Some((Err(err), (state, offset, true))),
                };
            }
        },
    )
    .boxed()
}

/// The task that downloads one file from the upstream for every client waiting on it.
struct Pump {
    upstream: Upstream,
    settings: MirrorSettings,
    mirror: IndexName,
    file: MirrorFileRecord,
    digest: Sha256Digest,
    db: Db,
    storage: Storage,
    tmp_dir: PathBuf,
    max_bytes: u64,
}

impl Pump {
    /// Runs the transfer; the flight is released when it ends (see [`Streams`]), so even
    /// a panicking transfer leaves the next request free to start afresh.
    async fn run(self, state: watch::Sender<FlightState>) {
        if let Err(err) = self.transfer(&state).await {
            tracing::warn!(mirror = %self.mirror, file = %self.file.filename, error = %err, "mirrored download failed; nothing cached");
            let _ = state.send(FlightState::Failed(err));
        }
    }

    fn garbage(&self, why: String) -> UpstreamError {
        UpstreamError::Garbage {
            url: self.file.url.clone(),
            why,
        }
    }

    async fn transfer(&self, state: &watch::Sender<FlightState>) -> Result<(), UpstreamError> {
        let response = self
            .upstream
            .open_file(&self.settings, &self.file.url)
            .await?;
        let length = self.announced_length(&response)?;
        tokio::fs::create_dir_all(&self.tmp_dir)
            .await
            .map_err(|e| local("creating the temp directory", e))?;
        let temp = tempfile::Builder::new()
            .prefix(".mirror-")
            .tempfile_in(&self.tmp_dir)
            .map_err(|e| local("creating a temp file", e))?;
        let reader = Arc::new(
            temp.reopen()
                .map_err(|e| local("opening the temp file", e))?,
        );
        let writer = tokio::fs::File::from_std(
            temp.as_file()
                .try_clone()
                .map_err(|e| local("opening the temp file", e))?,
        );
        let _ = state.send(FlightState::Receiving {
            file: Arc::clone(&reader),
            length,
            written: 0,
        });
        let written = self.receive(response, writer, length, state).await?;
        // Keep the bytes for good before the readers see the end, so a client that has a
        // complete download can count on the next one coming from storage. A failure to
        // store costs only the cache: the verified bytes still reach every client.
        let stored = self.keep(temp.path(), written).await;
        let _ = state.send(FlightState::Done {
            file: reader,
            size: written,
        });
        match stored {
            Ok(()) => {
                tracing::info!(mirror = %self.mirror, file = %self.file.filename, bytes = written, "mirrored file cached");
            }
            Err(err) => {
                tracing::error!(mirror = %self.mirror, file = %self.file.filename, error = %err, "verified mirrored file could not be cached; it was served anyway");
            }
        }
        Ok(())
    }

    /// The length the upstream announced (or the page listed), checked against the page
    /// and the size limit.
    fn announced_length(&self, response: &reqwest::Response) -> Result<Option<u64>, UpstreamError> {
        let listed = self.file.size;
        if let (Some(sent), Some(listed)) = (response.content_length(), listed)
            && sent != listed
        {
            return Err(self.garbage(format!(
                "the file is {sent} bytes, but the page lists {listed}"
            )));
        }
        let length = response.content_length().or(listed);
        if let Some(length) = length
            && length > self.max_bytes
        {
            return Err(self.garbage(format!(
                "the file is {length} bytes, over this server's {}-byte limit (--max-upload-size)",
                self.max_bytes
            )));
        }
        Ok(length)
    }

    /// Copies the body into the temp file, announcing progress, and verifies it.
    async fn receive(
        &self,
        response: reqwest::Response,
        mut writer: tokio::fs::File,
        length: Option<u64>,
        state: &watch::Sender<FlightState>,
    ) -> Result<u64, UpstreamError> {
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UpstreamError::Unreachable {
                url: self.file.url.clone(),
                cause: format!("the download broke off after {written} bytes: {e}"),
            })?;
            written += chunk.len() as u64;
            if written > self.max_bytes {
                return Err(self.garbage(format!(
                    "the file is over this server's {}-byte limit (--max-upload-size)",
                    self.max_bytes
                )));
            }
            hasher.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| local("writing the temp file", e))?;
            writer
                .flush()
                .await
                .map_err(|e| local("writing the temp file", e))?;
            state.send_modify(|s| {
                if let FlightState::Receiving { written: w, .. } = s {
                    *w = written;
                }
            });
        }
        let got = hex::encode(hasher.finalize());
        if got != self.digest.as_str() {
            return Err(self.garbage(format!(
                "the bytes have sha256 {got}, but the page lists {}",
                self.digest
            )));
        }
        if let Some(length) = length
            && length != written
        {
            return Err(self.garbage(format!(
                "the file is {written} bytes, but {length} were announced"
            )));
        }
        Ok(written)
    }

    /// Stores verified bytes by digest and records the blob.
    async fn keep(&self, path: &std::path::Path, size: u64) -> Result<(), UpstreamError> {
        self.storage
            .put_file(&self.digest, path, size)
            .await
            .map_err(|e| local("storing the file", e))?;
        self.db
            .record_blob(
                self.digest.as_str(),
                i64::try_from(size).unwrap_or(i64::MAX),
                &now_rfc3339(),
            )
            .await
            .map_err(|e| local("recording the file", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IndexSettings;

    fn index(id: i64, kind: IndexKind, allow: &[&str]) -> Index {
        Index {
            id,
            name: format!("root/i{id}").parse().unwrap(),
            settings: IndexSettings {
                kind,
                mirror_allow: allow.iter().map(|s| (*s).to_owned()).collect(),
                ..IndexSettings::default()
            },
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn the_guard_hides_private_names_unless_allowed() {
        let chain = [
            index(1, IndexKind::Stage, &[]),
            index(2, IndexKind::Stage, &["requests"]),
            index(3, IndexKind::Mirror, &[]),
        ];
        // Nobody has it privately: the mirror serves it.
        assert!(mirror_may_serve(&chain, 2, &[], "flask"));
        // The branch index has it: hidden.
        assert!(!mirror_may_serve(&chain, 2, &[0], "flask"));
        // Allowed by an index before the mirror.
        assert!(mirror_may_serve(&chain, 2, &[0], "requests"));
        // Private files after the mirror do not hide it.
        assert!(mirror_may_serve(&chain, 1, &[2], "flask"));
        let everything = [
            index(1, IndexKind::Stage, &["*"]),
            index(2, IndexKind::Mirror, &[]),
        ];
        assert!(mirror_may_serve(&everything, 1, &[0], "anything"));
    }

    #[test]
    fn listing_digest_notices_changes() {
        let file = NewMirrorFile {
            version: "1.0".into(),
            filename: "a-1.0.tar.gz".into(),
            kind: "sdist",
            sha256: "ab".into(),
            size: None,
            requires_python: None,
            metadata_sha256: None,
            yanked: None,
            upload_time: None,
            url: "https://x/a-1.0.tar.gz".into(),
        };
        let mut yanked = file.clone();
        yanked.yanked = Some(String::new());
        assert_eq!(
            listing_digest(std::slice::from_ref(&file)),
            listing_digest(std::slice::from_ref(&file))
        );
        assert_ne!(listing_digest(&[file]), listing_digest(&[yanked]));
    }
}
