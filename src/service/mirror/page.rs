//! Upstream pages: served from the store within the TTL, refreshed by one flight per
//! (mirror, project) after it (conditional on the upstream's `ETag`), served stale when the
//! upstream fails.

use super::*;

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

/// The files of a page the mirror may fetch: one on an origin it may not connect to is
/// not listed (pip would only be handed a 502 for it).
fn fetchable(
    mirror: &Index,
    project: &ProjectName,
    settings: &MirrorSettings,
    files: Vec<UpstreamFile>,
) -> Vec<UpstreamFile> {
    let origins: Vec<String> = settings
        .allowed_origins()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    let (usable, foreign): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| {
        url::Url::parse(&f.url).is_ok_and(|u| origins.contains(&u.origin().ascii_serialization()))
    });
    if !foreign.is_empty() {
        tracing::warn!(mirror = %mirror.name, project = %project, dropped = foreign.len(), "upstream page links files on origins this mirror may not fetch from; they are not listed");
    }
    usable
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
        let stored = match stored_unless_fresh(db, mirror, project, ttl, force).await? {
            Stored::Fresh(listing) => return Ok(listing),
            Stored::Due(stored) => stored,
        };
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
        let stored = match stored_unless_fresh(db, mirror, project, ttl, force).await? {
            Stored::Fresh(listing) => return Ok(listing),
            Stored::Due(stored) => stored,
        };
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
                let usable = fetchable(mirror, project, settings, page.files);
                (
                    PageStatus::Found,
                    etag,
                    usable.into_iter().map(to_new_file).collect(),
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
            tx.lock(Lock::Project(mirror.id, project.as_str()))
                .await
                .map_err(|e| local("storing the page", e))?;
            Db::store_mirror_listing_tx(&mut tx, mirror.id, project.as_str(), &record, &files)
                .await
                .map_err(|e| local("storing the page", e))?;
            tx.commit()
                .await
                .map_err(|e| local("storing the page", e))?;
            tracing::info!(mirror = %mirror.name, project = %project, status = %status, files = files.len(), "mirrored project page");
        }
        stored_listing(db, mirror.id, project, None, ttl).await
    }
}

/// What the store holds for a page: a fresh listing to serve, or a record (if any) that
/// is due for a refresh.
enum Stored {
    Fresh(Listing),
    Due(Option<MirrorProjectRecord>),
}

/// The stored page, served as is while fresh (unless `force`).
async fn stored_unless_fresh(
    db: &Db,
    mirror: &Index,
    project: &ProjectName,
    ttl: Duration,
    force: bool,
) -> Result<Stored, UpstreamError> {
    let stored = db
        .find_mirror_project(mirror.id, project.as_str())
        .await
        .map_err(|e| local("reading the mirror cache", e))?;
    if !force && let Some(fresh_for) = stored.as_ref().and_then(|s| remaining(s, ttl)) {
        return Ok(Stored::Fresh(
            stored_listing(db, mirror.id, project, None, fresh_for).await?,
        ));
    }
    Ok(Stored::Due(stored))
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

#[cfg(test)]
mod tests {
    use super::*;

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
