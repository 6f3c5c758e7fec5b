//! Removing a release or one file from an index, through the trash: the files are hidden
//! at once (pages, downloads, promotions no longer see them) and can be restored until
//! the entry expires; then garbage collection releases them (`service::gc`) and collects
//! the bytes nothing else names.
//!
//! Rules:
//! - Removing takes `upload` on the index; a promotion-only (production) index refuses:
//!   it is append-only, and yanking is the way back there.
//! - A release being built under a lease is not removed (its builder would upload into a
//!   release that was just taken away).
//! - While a file is in the trash, its filename cannot be uploaded again on that index: a
//!   restore must bring back exactly the bytes that were removed. The build records stay,
//!   so a version built from one commit is never rebuilt from another (see
//!   `service::builds`).
//! - Restoring takes `upload` on the index; a filename taken meanwhile refuses it.

use std::time::Duration;

use super::auth::{Caller, Principal};
use super::builds::now_ms;
use super::{ServiceError, indexes, now_rfc3339};
use crate::db::{BuildKey, BuildState, Db, DbError, Lock, NewEvent, NewTrash, TrashRecord};
use crate::domain::{EventKind, Index, IndexName, Permission, ProjectName, Release, TrashKind};

/// What to remove.
#[derive(Debug, Clone, Copy)]
pub struct Removal<'a> {
    /// The release.
    pub release: &'a Release,
    /// One file of it, or every file.
    pub file: Option<&'a str>,
    /// Why (shown in the trash and the event).
    pub reason: &'a str,
    /// How long it stays restorable.
    pub keep_for: Duration,
}

/// Moves a release's files (or one of them) on `name` into the trash, with an event, if
/// the caller may. Answers the trash entry.
pub async fn remove(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    removal: &Removal<'_>,
) -> Result<TrashRecord, ServiceError> {
    let principal = caller.require(Permission::Upload, name)?;
    let index = &indexes::get_index(db, name).await?;
    remove_as(db, principal, index, removal).await
}

/// [`remove`] for a caller already authorized (or the server's retention).
pub(super) async fn remove_as(
    db: &Db,
    principal: &Principal,
    index: &Index,
    removal: &Removal<'_>,
) -> Result<TrashRecord, ServiceError> {
    let name = &index.name;
    indexes::refuse_mirror(index, "removals")?;
    if index.settings.promotion_only {
        return Err(ServiceError::Conflict(format!(
            "`{name}` is promotion-only: what it lists stays (production is append-only); yank the release instead (`kiln yank`)"
        )));
    }
    let reason = removal.reason.trim();
    if reason.is_empty() {
        return Err(ServiceError::Invalid(
            "a removal needs a reason (it is shown in the trash and the events)".into(),
        ));
    }
    let release = removal.release;
    let project = release.project.as_str();
    let mut tx = db.begin_write().await?;
    tx.lock(Lock::Project(index.id, project)).await?;
    let files: Vec<String> = Db::own_project_files_tx(&mut tx, index.id, project)
        .await?
        .into_iter()
        .filter(|f| release.matches(&f.version))
        .filter(|f| removal.file.is_none_or(|name| name == f.filename))
        .map(|f| f.filename)
        .collect();
    let Some(first) = files.first() else {
        return Err(ServiceError::NotFound(match removal.file {
            Some(file) => format!("`{name}` has no file `{file}` of {release}"),
            None => format!("`{name}` has no files of {release}"),
        }));
    };
    let version = Db::find_file_tx(&mut tx, index.id, first)
        .await?
        .map(|f| f.version)
        .unwrap_or_default();
    let key = BuildKey {
        index_id: index.id,
        project,
        version: &version,
        target: None,
    };
    if let Some(build) = Db::find_build_tx(&mut tx, key).await?
        && build.state == BuildState::Building
    {
        return Err(ServiceError::Conflict(format!(
            "{release} on `{name}` is being built by {} under a lease; remove it once the build has finished or failed",
            build.builder
        )));
    }
    let now = now_ms();
    let keep_ms = i64::try_from(removal.keep_for.as_millis()).unwrap_or(i64::MAX);
    let new = NewTrash {
        index_id: index.id,
        project,
        version: &version,
        filename: removal.file,
        reason,
        removed_by: &principal.name,
        removed_at_ms: now,
        expires_at_ms: now.saturating_add(keep_ms),
    };
    let id = Db::trash_files_tx(&mut tx, &new, &files).await?;
    let entry = TrashRecord {
        id,
        index_id: index.id,
        kind: if removal.file.is_some() {
            TrashKind::File
        } else {
            TrashKind::Release
        },
        project: Some(release.project.clone()),
        version: Some(version.clone()),
        filename: removal.file.map(ToOwned::to_owned),
        reason: reason.to_owned(),
        removed_by: principal.name.clone(),
        removed_at_ms: now,
        expires_at_ms: new.expires_at_ms,
        files: files.clone(),
        bytes: 0,
    };
    trash_event(&mut tx, EventKind::Removed, index, principal, &entry).await?;
    tx.commit().await?;
    tracing::info!(index.name = %name, project.name = %project, release.version = %version, files = files.len(), trash.id = id, "removed into the trash");
    db.trash_entry(id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("trash entry {id} vanished")))
}

/// Moves a whole index into the trash as the server's retention (`principal`), unless
/// another index inherits it now. Answers the entry.
pub(super) async fn remove_index_as(
    db: &Db,
    principal: &Principal,
    index: &Index,
    reason: &str,
    keep_for: Duration,
) -> Result<TrashRecord, ServiceError> {
    let mut tx = db.begin_write().await?;
    tx.lock(Lock::Indexes).await?;
    let dependents = Db::dependents_tx(&mut tx, index.id).await?;
    if !dependents.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "`{}` is a base of other indexes; it stays",
            index.name
        )));
    }
    let now = now_ms();
    let keep_ms = i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX);
    let id = Db::trash_index_tx(
        &mut tx,
        index.id,
        reason,
        &principal.name,
        now,
        now.saturating_add(keep_ms),
    )
    .await?;
    let entry = TrashRecord {
        id,
        index_id: index.id,
        kind: TrashKind::Index,
        project: None,
        version: None,
        filename: None,
        reason: reason.to_owned(),
        removed_by: principal.name.clone(),
        removed_at_ms: now,
        expires_at_ms: now.saturating_add(keep_ms),
        files: Vec::new(),
        bytes: 0,
    };
    trash_event(&mut tx, EventKind::Removed, index, principal, &entry).await?;
    tx.commit().await?;
    tracing::info!(index.name = %index.name, trash.id = id, reason, "index removed into the trash");
    db.trash_entry(id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("trash entry {id} vanished")))
}

/// Puts a trash entry's files back on their index, with an event, if the caller holds
/// `upload` there. Answers the entry as it was, with its index.
pub async fn restore(
    db: &Db,
    caller: &Caller,
    id: i64,
) -> Result<(IndexName, TrashRecord), ServiceError> {
    let (principal, index, entry) = entry_for(db, caller, id, Permission::Upload).await?;
    let mut tx = db.begin_write().await?;
    match &entry.project {
        Some(project) => tx.lock(Lock::Project(index.id, project.as_str())).await?,
        None => tx.lock(Lock::Indexes).await?,
    }
    match Db::restore_trash_tx(&mut tx, &entry).await {
        Ok(()) => {}
        Err(DbError::Conflict) => {
            drop(tx);
            return Err(ServiceError::Conflict(format!(
                "trash entry {id} cannot be restored: `{}` lists a file of the same name again ({})",
                index.name,
                entry.files.join(", ")
            )));
        }
        Err(other) => return Err(other.into()),
    }
    trash_event(&mut tx, EventKind::Restored, &index, principal, &entry).await?;
    tx.commit().await?;
    Ok((index.name, entry))
}

/// The trash entries of the indexes the caller may read (or of one), newest first.
pub async fn list(
    db: &Db,
    caller: &Caller,
    index: Option<&IndexName>,
    limit: i64,
) -> Result<Vec<(IndexName, TrashRecord)>, ServiceError> {
    let mut readable = super::auth::readable_indexes(db, caller.principal()).await?;
    // A trashed index is shown to whoever may read it by its own settings.
    readable.extend(db.trashed_indexes().await?.into_iter().filter(|i| {
        caller
            .principal()
            .map_or(!i.settings.private, |p| may_see(p, i))
    }));
    if let Some(name) = index
        && !readable.iter().any(|i| &i.name == name)
    {
        // Unknown or unreadable: the same answer, so names do not leak.
        return Err(indexes::not_found(name));
    }
    let chosen: Vec<&Index> = readable
        .iter()
        .filter(|i| index.is_none_or(|name| &i.name == name))
        .collect();
    let ids: Vec<i64> = chosen.iter().map(|i| i.id).collect();
    let entries = db
        .trash_entries(Some(&ids), None, limit.clamp(1, 1000))
        .await?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let name = chosen.iter().find(|i| i.id == e.index_id)?.name.clone();
            Some((name, e))
        })
        .collect())
}

/// Releases the trash entries expired by `now_ms` for good (each with an event): their
/// file rows go, and garbage collection may then take the bytes. Answers what went.
pub async fn release_expired(
    db: &Db,
    now_ms: i64,
) -> Result<Vec<(IndexName, TrashRecord)>, ServiceError> {
    let system = Principal::system("kiln gc".into(), Vec::new());
    let mut released = Vec::new();
    let indexes = all_indexes(db).await?;
    for entry in db.trash_entries(None, Some(now_ms), 10_000).await? {
        let Some(index) = indexes.get(&entry.index_id).cloned() else {
            continue;
        };
        match release_one(db, &system, &index, &entry).await {
            Ok(true) => released.push((index.name, entry)),
            Ok(false) => {}
            Err(ServiceError::Conflict(why)) => {
                tracing::warn!(index.name = %index.name, reason = %why, "a trash entry cannot be released; it stays hidden in the trash");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(released)
}

/// Releases one trash entry now, before it expires, if the caller holds `admin` on its
/// index (it cannot be undone): `kiln trash release ID`, then `kiln gc` frees the bytes.
pub async fn release_now(
    db: &Db,
    caller: &Caller,
    id: i64,
) -> Result<(IndexName, TrashRecord), ServiceError> {
    let (principal, index, entry) = entry_for(db, caller, id, Permission::Admin).await?;
    if !release_one(db, principal, &index, &entry).await? {
        return Err(no_entry(id));
    }
    Ok((index.name, entry))
}

/// Deletes a trash entry for good, with a `released` event: its file rows (or its
/// index's rows) go. `Conflict` when promotion records name a trashed index (its audit
/// trail stays, so the index stays hidden in the trash).
async fn release_one(
    db: &Db,
    actor: &Principal,
    index: &Index,
    entry: &TrashRecord,
) -> Result<bool, ServiceError> {
    let mut tx = db.begin_write().await?;
    if entry.kind == TrashKind::Index {
        tx.lock(Lock::Indexes).await?;
        if db.promotions_touching(index.id).await?.1 {
            return Err(ServiceError::Conflict(format!(
                "index `{}` cannot be released: promotion records name it, and the audit trail stays",
                index.name
            )));
        }
        Db::release_index_tx(&mut tx, entry.index_id).await?;
    } else if !Db::forget_trash_tx(&mut tx, entry.id).await? {
        return Ok(false);
    }
    trash_event(&mut tx, EventKind::Released, index, actor, entry).await?;
    tx.commit().await?;
    Ok(true)
}

/// The trash entries expired by `now_ms`, not released yet (what a dry run shows).
pub async fn expired(db: &Db, now_ms: i64) -> Result<Vec<(IndexName, TrashRecord)>, ServiceError> {
    let mut expired = Vec::new();
    let indexes = all_indexes(db).await?;
    for entry in db.trash_entries(None, Some(now_ms), 10_000).await? {
        if let Some(index) = indexes.get(&entry.index_id).cloned() {
            expired.push((index.name, entry));
        }
    }
    Ok(expired)
}

/// A trash entry and its index, for a caller who holds `needed` there; an entry the
/// caller may not know of is "no trash entry", like one that does not exist.
async fn entry_for<'c>(
    db: &Db,
    caller: &'c Caller,
    id: i64,
    needed: Permission,
) -> Result<(&'c Principal, Index, TrashRecord), ServiceError> {
    let principal = caller.authenticated()?;
    let entry = db.trash_entry(id).await?.ok_or_else(|| no_entry(id))?;
    let index = index_of(db, entry.index_id)
        .await?
        .ok_or_else(|| no_entry(id))?;
    if !may_see(principal, &index) {
        return Err(no_entry(id));
    }
    principal.require(needed, &index.name)?;
    Ok((principal, index, entry))
}

fn no_entry(id: i64) -> ServiceError {
    ServiceError::NotFound(format!(
        "no trash entry {id} (it was restored, released, or never existed; see `kiln trash list`)"
    ))
}

/// True when the caller may know of `index`'s trash: it is public, or the caller holds
/// any permission on it (an upload-only CI token restores what it removed).
fn may_see(principal: &Principal, index: &Index) -> bool {
    !index.settings.private
        || [Permission::Read, Permission::Upload, Permission::Admin]
            .into_iter()
            .any(|p| principal.allows(p, &index.name))
}

/// The index with this id, live or in the trash.
async fn index_of(db: &Db, id: i64) -> Result<Option<Index>, ServiceError> {
    Ok(all_indexes(db).await?.remove(&id))
}

/// Every index, live or in the trash, by id.
async fn all_indexes(db: &Db) -> Result<std::collections::HashMap<i64, Index>, ServiceError> {
    let live = db.list_indexes().await?;
    let trashed = db.trashed_indexes().await?;
    Ok(live.into_iter().chain(trashed).map(|i| (i.id, i)).collect())
}

async fn trash_event(
    tx: &mut crate::db::WriteTx,
    kind: EventKind,
    index: &Index,
    actor: &Principal,
    entry: &TrashRecord,
) -> Result<(), ServiceError> {
    Db::insert_event_tx(
        tx,
        &NewEvent {
            kind,
            index: Some(&index.name),
            project: entry.project.as_ref().map(ProjectName::as_str),
            version: entry.version.as_deref(),
            actor: &actor.name,
            at: &now_rfc3339(),
            detail: serde_json::json!({
                "trash": entry.id,
                "kind": entry.kind,
                "file": entry.filename,
                "files": entry.files,
                "reason": entry.reason,
            }),
        },
    )
    .await?;
    Ok(())
}
