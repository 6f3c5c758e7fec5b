//! Garbage collection: releases the trash that expired, then deletes the bytes nothing
//! names any more, the objects no row names (a refused upload's, a crash's), and the
//! staging files of writes a crash cut short.
//!
//! Safety against a concurrent upload (or mirror fetch) of the same bytes: a writer that
//! names a blob takes the blob's lock when it inserts its row and, after commit, stores
//! the bytes again if they are gone; collecting takes the same lock, checks that nothing
//! names the blob, and deletes the bytes before letting go. Either the writer's row
//! comes first (collection sees it and keeps the blob) or the deletion does (the writer
//! sees the bytes gone and puts them back from its own copy). An object no row names
//! is only touched once older than the grace period (longer than the longest upload),
//! and a staging file likewise, so a write in progress is never cut.
//!
//! One replica of a fleet collects at a time: the `gc` fleet lease in the database.

use std::time::{Duration, SystemTime};

use super::ServiceError;
use super::auth::Caller;
use crate::db::{Db, TrashRecord};
use crate::domain::{IndexName, Sha256Digest};
use crate::storage::Storage;

/// The fleet lease's name.
const LEASE: &str = "gc";
/// How long a collection holds the lease between renewals.
const LEASE_TTL: Duration = Duration::from_secs(300);

/// How a collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcSettings<'a> {
    /// How old an object no row names must be before it is deleted.
    pub grace: Duration,
    /// How long what retention removes stays restorable.
    pub trash_for: Duration,
    /// The policies' retention rules.
    pub retention: &'a [crate::policy::RetentionRule],
}

/// What a collection did (or, for a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct GcOutcome {
    /// Only counted, nothing deleted.
    pub dry_run: bool,
    /// What retention rules removed into the trash (or would).
    pub retention: Vec<super::retention::Planned>,
    /// Trash entries released for good.
    pub released: Vec<(IndexName, TrashRecord)>,
    /// Blobs nothing names any more, deleted.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Stored objects no row named (older than the grace period), deleted.
    pub orphans: u64,
    /// Their bytes.
    pub orphan_bytes: u64,
    /// Staging files of cut-short writes (older than the grace period), deleted.
    pub leftovers: u64,
    /// Their bytes.
    pub leftover_bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl GcOutcome {
    /// Every byte freed (or that would be).
    #[must_use]
    pub fn freed_bytes(&self) -> u64 {
        self.blob_bytes + self.orphan_bytes + self.leftover_bytes
    }
}

/// `kiln gc`: a server admin's collection, or a dry run of one.
pub async fn run_by_hand(
    db: &Db,
    storage: &Storage,
    caller: &Caller,
    dry_run: bool,
    settings: GcSettings<'_>,
    holder: &str,
) -> Result<GcOutcome, ServiceError> {
    let principal = caller.authenticated()?;
    if !principal.is_server_admin() {
        return Err(ServiceError::Forbidden(
            "garbage collection needs `admin` on `*`: it deletes bytes any index may share".into(),
        ));
    }
    if dry_run {
        return sweep(db, storage, settings, None).await;
    }
    collect(db, storage, settings, holder).await
}

/// Collects under the fleet lease; `Conflict` naming the holder if another replica is
/// collecting.
pub async fn collect(
    db: &Db,
    storage: &Storage,
    settings: GcSettings<'_>,
    holder: &str,
) -> Result<GcOutcome, ServiceError> {
    let lease = Lease::take(db, holder).await?;
    let outcome = sweep(db, storage, settings, Some(&lease)).await;
    if let Err(err) = db.release_fleet_lease(LEASE, holder).await {
        tracing::warn!(error = %err, "could not let go of the gc lease; it lapses by itself");
    }
    let outcome = outcome?;
    let metrics = crate::metrics::metrics();
    metrics
        .gc_deleted
        .inc_by(outcome.blobs + outcome.orphans + outcome.leftovers);
    metrics.gc_freed_bytes.inc_by(outcome.freed_bytes());
    tracing::info!(
        retention = outcome.retention.len(),
        released = outcome.released.len(),
        blobs = outcome.blobs,
        orphans = outcome.orphans,
        leftovers = outcome.leftovers,
        freed_bytes = outcome.freed_bytes(),
        elapsed_ms = u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
        "garbage collected"
    );
    Ok(outcome)
}

/// Deletes one blob's bytes if nothing names it, under its lock (see the module docs).
/// Answers whether it did.
pub async fn collect_one(
    db: &Db,
    storage: &Storage,
    digest: &Sha256Digest,
) -> Result<bool, ServiceError> {
    let Some(mut tx) = db.begin_collect(digest).await? else {
        return Ok(false);
    };
    storage.delete(digest).await?;
    Db::blob_collected_tx(&mut tx, digest, super::builds::now_ms()).await?;
    tx.commit().await?;
    Ok(true)
}

/// The fleet lease, renewed as a long collection goes on.
struct Lease<'a> {
    db: &'a Db,
    holder: &'a str,
    renewed: std::sync::Mutex<std::time::Instant>,
}

impl<'a> Lease<'a> {
    async fn take(db: &'a Db, holder: &'a str) -> Result<Self, ServiceError> {
        let now = super::builds::now_ms();
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        match db.take_fleet_lease(LEASE, holder, now, now + ttl).await? {
            Ok(()) => Ok(Self {
                db,
                holder,
                renewed: std::sync::Mutex::new(std::time::Instant::now()),
            }),
            Err((other, until)) => Err(ServiceError::Conflict(format!(
                "garbage collection is already running on {other} (its lease lasts until {}); try again once it has finished",
                chrono::DateTime::from_timestamp_millis(until)
                    .map_or_else(|| until.to_string(), |t| t.to_rfc3339())
            ))),
        }
    }

    /// Renews the lease once a third of it has passed.
    async fn keep(&self) -> Result<(), ServiceError> {
        let due = self
            .renewed
            .lock()
            .map_or(true, |at| at.elapsed() > LEASE_TTL / 3);
        if due {
            let now = super::builds::now_ms();
            let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
            if let Err((other, _)) = self
                .db
                .take_fleet_lease(LEASE, self.holder, now, now + ttl)
                .await?
            {
                return Err(ServiceError::Conflict(format!(
                    "the gc lease lapsed and {other} took it; this collection stopped"
                )));
            }
            if let Ok(mut at) = self.renewed.lock() {
                *at = std::time::Instant::now();
            }
        }
        Ok(())
    }
}

/// One pass. Without a lease it only counts (a dry run): the same lists, nothing deleted.
async fn sweep(
    db: &Db,
    storage: &Storage,
    settings: GcSettings<'_>,
    lease: Option<&Lease<'_>>,
) -> Result<GcOutcome, ServiceError> {
    let started = std::time::Instant::now();
    let mut outcome = GcOutcome {
        dry_run: lease.is_none(),
        ..GcOutcome::default()
    };
    // Retention first: what it removes goes into the trash (restorable), not away.
    let planned = super::retention::plan(db, settings.retention, chrono::Utc::now()).await?;
    outcome.retention = if lease.is_some() {
        super::retention::apply(db, planned, settings.trash_for).await?
    } else {
        planned
    };
    let grace = settings.grace;
    let now = super::builds::now_ms();
    outcome.released = match lease {
        Some(_) => super::trash::release_expired(db, now).await?,
        None => super::trash::expired(db, now).await?,
    };
    for blob in db.unnamed_blobs(now).await? {
        if let Some(lease) = lease {
            lease.keep().await?;
            if !collect_one(db, storage, &blob.sha256).await? {
                continue;
            }
        }
        outcome.blobs += 1;
        outcome.blob_bytes += blob.size;
    }
    // Read after the blobs above were collected, so none of them counts twice.
    let stored = db.stored_blob_digests().await?;
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for object in storage.list_blobs().await? {
        if object.modified > cutoff {
            continue;
        }
        match &object.digest {
            Some(digest) if stored.contains(digest.as_str()) => {}
            Some(digest) => {
                if let Some(lease) = lease {
                    lease.keep().await?;
                    if !collect_one(db, storage, digest).await? {
                        continue;
                    }
                }
                outcome.orphans += 1;
                outcome.orphan_bytes += object.size;
            }
            None => {
                if lease.is_some() {
                    storage.delete_object(&object).await?;
                }
                outcome.leftovers += 1;
                outcome.leftover_bytes += object.size;
            }
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}
