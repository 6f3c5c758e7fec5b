//! Creating, changing and deleting indexes, with the rules that keep inheritance sane:
//! bases must exist, no index may (transitively) inherit from itself, and an index that
//! others inherit from cannot be deleted from under them.

use std::collections::{HashMap, HashSet};

use super::auth::{self, Caller, Principal};
use super::{ServiceError, now_rfc3339, resolve};
use crate::db::{Db, DbError, Lock, NewEvent, WriteTx};
use crate::domain::{EventKind, Permission};
use crate::domain::{Index, IndexKind, IndexName, IndexSettings, MirrorSettings, ProjectName};

/// Changes to an index's settings; `None` keeps the current value.
#[derive(Debug, Default, Clone)]
pub struct IndexPatch {
    /// New ordered bases.
    pub bases: Option<Vec<IndexName>>,
    /// New `volatile` flag.
    pub volatile: Option<bool>,
    /// New `promotion_only` flag.
    pub promotion_only: Option<bool>,
    /// New description.
    pub description: Option<String>,
    /// New `private` flag.
    pub private: Option<bool>,
    /// Mirrors: a new upstream URL.
    pub mirror_url: Option<String>,
    /// Mirrors: a new upstream user (empty to clear).
    pub mirror_username: Option<String>,
    /// Mirrors: a new upstream password (empty to clear).
    pub mirror_password: Option<String>,
    /// Mirrors: a new page TTL.
    pub mirror_ttl_seconds: Option<u64>,
    /// Stage indexes: a new list of names mirrors may still serve.
    pub mirror_allow: Option<Vec<String>>,
    /// Mirrors: new origins files may come from besides the upstream's.
    pub mirror_file_origins: Option<Vec<String>>,
    /// Confirms clearing `promotion_only` (with admin on `*`).
    pub force: bool,
}

/// Records an index event (created, changed, deleted) inside the change's transaction.
async fn index_event(
    tx: &mut WriteTx,
    kind: EventKind,
    name: &IndexName,
    actor: &Principal,
    detail: serde_json::Value,
) -> Result<(), ServiceError> {
    Db::insert_event_tx(
        tx,
        &NewEvent {
            kind,
            index: Some(name),
            project: None,
            version: None,
            actor: &actor.name,
            at: &now_rfc3339(),
            detail,
        },
    )
    .await?;
    Ok(())
}

/// The settings as an event shows them (the mirror password is never serialized).
fn shown(settings: &IndexSettings) -> serde_json::Value {
    serde_json::to_value(settings).unwrap_or_default()
}

/// Production is append-only: clearing `promotion_only` or deleting a promotion-only
/// index takes a server admin (`admin` on `*`) and an explicit `force`.
fn guard_production(
    principal: &Principal,
    index: &Index,
    what: &str,
    force: bool,
) -> Result<(), ServiceError> {
    if !principal.is_server_admin() {
        return Err(ServiceError::Forbidden(format!(
            "index `{}` is promotion-only (production is append-only): {what} needs `admin` on `*`, which this token lacks",
            index.name
        )));
    }
    if !force {
        return Err(ServiceError::Forbidden(format!(
            "index `{}` is promotion-only (production is append-only): {what} needs an explicit `--force` (`force: true` in the API); it is recorded in `kiln events`",
            index.name
        )));
    }
    Ok(())
}

/// Longest page TTL a mirror accepts (a year): longer is a typo, not a cache policy.
const MAX_MIRROR_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// Checks the rules that tie an index's kind to its settings, normalizing what it can
/// (the upstream URL, allowed project names).
pub fn validate_settings(
    name: &IndexName,
    settings: &IndexSettings,
) -> Result<IndexSettings, ServiceError> {
    let invalid = |why: String| Err(ServiceError::Invalid(format!("index `{name}`: {why}")));
    let mut settings = settings.clone();
    match settings.kind {
        IndexKind::Mirror => {
            let Some(mirror) = settings.mirror.as_mut() else {
                return invalid("a mirror needs an upstream URL (`mirror_url`)".into());
            };
            mirror.url = MirrorSettings::normalize_url(&mirror.url)
                .map_err(|e| ServiceError::Invalid(format!("index `{name}`: {e}")))?;
            if mirror.ttl_seconds > MAX_MIRROR_TTL_SECONDS {
                return invalid(format!(
                    "mirror TTL {}s is over a year; pick something like 1800 (30 minutes)",
                    mirror.ttl_seconds
                ));
            }
            mirror.username = mirror.username.take().filter(|u| !u.is_empty());
            let mut origins = Vec::with_capacity(mirror.file_origins.len());
            for raw in &mirror.file_origins {
                let origin = MirrorSettings::normalize_origin(raw)
                    .map_err(|e| ServiceError::Invalid(format!("index `{name}`: {e}")))?;
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
            mirror.file_origins = origins;
            mirror.password = mirror.password.take().filter(|p| !p.is_empty());
            if !settings.bases.is_empty() {
                return invalid(
                    "a mirror cannot have bases; make the mirror a base of a stage index instead"
                        .into(),
                );
            }
            if settings.volatile || settings.promotion_only {
                return invalid(
                    "a mirror holds no files of its own, so it cannot be volatile or promotion-only"
                        .into(),
                );
            }
            if !settings.mirror_allow.is_empty() {
                return invalid(
                    "`mirror_allow` belongs on the stage index that has the private project, not on the mirror"
                        .into(),
                );
            }
            if settings.branch.is_some() {
                return invalid("a mirror cannot be a branch index".into());
            }
        }
        IndexKind::Stage => {
            if settings.mirror.is_some() {
                return invalid(
                    "mirror settings need `kind` = `mirror`; a stage index holds its own files"
                        .into(),
                );
            }
            let mut allow = Vec::with_capacity(settings.mirror_allow.len());
            for raw in &settings.mirror_allow {
                let normalized = if raw.trim() == "*" {
                    "*".to_owned()
                } else {
                    ProjectName::new(raw)
                        .map_err(|e| {
                            ServiceError::Invalid(format!(
                                "index `{name}`: `mirror_allow` entry `{raw}`: {e}"
                            ))
                        })?
                        .as_str()
                        .to_owned()
                };
                if !allow.contains(&normalized) {
                    allow.push(normalized);
                }
            }
            settings.mirror_allow = allow;
        }
    }
    Ok(settings)
}

/// Refuses `what` (uploads, builds, promotions) on a mirror: it holds only what its
/// upstream lists.
pub fn refuse_mirror(index: &Index, what: &str) -> Result<(), ServiceError> {
    match &index.settings.mirror {
        Some(mirror) => Err(ServiceError::Forbidden(format!(
            "index `{}` is a mirror of {}: it holds only what its upstream lists, so {what} go to a stage index (e.g. root/master or a branch index)",
            index.name, mirror.url
        ))),
        None => Ok(()),
    }
}

/// Looks an index up, or says it does not exist.
pub async fn get_index(db: &Db, name: &IndexName) -> Result<Index, ServiceError> {
    db.find_index(name).await?.ok_or_else(|| not_found(name))
}

pub(super) fn not_found(name: &IndexName) -> ServiceError {
    ServiceError::NotFound(format!("index `{name}` does not exist"))
}

/// Every index the caller may read.
pub async fn list_indexes(db: &Db, caller: &Caller) -> Result<Vec<Index>, ServiceError> {
    auth::readable_indexes(db, caller.principal()).await
}

/// One index, once the caller was found to may read it and everything it inherits, with
/// the names its chain's mirrors do not serve.
pub async fn show_index(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
) -> Result<(Index, Vec<String>, crate::api::IndexUsage), ServiceError> {
    let (index, chain) = auth::readable_chain(db, caller, name).await?;
    let shadowed = super::mirror::Mirrors::shadowed(db, &chain).await?;
    let (files, bytes, own_bytes) = db.index_usage(index.id).await?;
    let usage = crate::api::IndexUsage {
        files,
        bytes,
        own_bytes,
    };
    Ok((index, shadowed, usage))
}

/// Creates an index, if the caller may (see [`authorize_create`]).
pub async fn create_index(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    settings: &IndexSettings,
) -> Result<Index, ServiceError> {
    let principal = caller.authenticated()?;
    authorize_create(db, principal, name, settings).await?;
    let mut tx = db.begin_write().await?;
    create_index_tx(&mut tx, name, settings).await?;
    index_event(
        &mut tx,
        EventKind::IndexCreated,
        name,
        principal,
        serde_json::json!({ "settings": shown(settings) }),
    )
    .await?;
    tx.commit().await?;
    get_index(db, name).await
}

/// Creates an index inside a caller's transaction (used by first-start bootstrap).
pub async fn create_index_tx(
    tx: &mut WriteTx,
    name: &IndexName,
    settings: &IndexSettings,
) -> Result<i64, ServiceError> {
    // Its bases must still exist when it is inserted.
    tx.lock(Lock::Indexes).await?;
    if Db::find_index_tx(tx, name).await?.is_some() {
        return Err(ServiceError::Conflict(format!(
            "index `{name}` already exists"
        )));
    }
    // A new index of a trashed one's name replaces it: the old one is released for good.
    if let Some((old, entry)) = Db::trashed_index_tx(tx, name).await? {
        Db::release_index_tx(tx, old).await?;
        Db::insert_event_tx(
            tx,
            &NewEvent {
                kind: EventKind::Released,
                index: Some(name),
                project: None,
                version: None,
                actor: "kiln",
                at: &now_rfc3339(),
                detail: serde_json::json!({
                    "trash": entry,
                    "kind": "index",
                    "reason": "a new index took its name",
                }),
            },
        )
        .await?;
    }
    let settings = validate_settings(name, settings)?;
    let base_ids = resolve_bases(tx, name, &settings.bases).await?;
    match Db::insert_index_tx(tx, name, &settings, &base_ids, &now_rfc3339()).await {
        Ok(id) => Ok(id),
        Err(DbError::Conflict) => Err(ServiceError::Conflict(format!(
            "index `{name}` already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// True for the indexes `kiln ensure` creates: volatile stage indexes of one branch.
pub(super) fn is_branch_index(settings: &IndexSettings) -> bool {
    settings.kind == IndexKind::Stage
        && settings.volatile
        && !settings.promotion_only
        && settings.branch.is_some()
}

/// Refuses unless `principal` may read every base (and what they inherit): nobody can
/// make an index that inherits what they could not read themselves.
async fn authorize_bases(
    db: &Db,
    principal: &Principal,
    bases: &[IndexName],
) -> Result<(), ServiceError> {
    for base in bases {
        let Some(index) = db.find_index(base).await? else {
            continue; // `resolve_bases` reports it
        };
        let chain = resolve::chain_indexes(db, &index).await?;
        auth::require_read_chain(Some(principal), &chain)?;
    }
    Ok(())
}

/// What creating an index takes: `admin` on its name, or `upload` for a branch index (so
/// CI tokens can create them on demand), and read access to every base.
async fn authorize_create(
    db: &Db,
    principal: &Principal,
    name: &IndexName,
    settings: &IndexSettings,
) -> Result<(), ServiceError> {
    if !(is_branch_index(settings) && principal.allows(Permission::Upload, name)) {
        principal.require(Permission::Admin, name)?;
    }
    if settings.kind == IndexKind::Mirror {
        require_server_admin(principal, name, "creating a mirror")?;
    }
    if !settings.mirror_allow.is_empty() {
        // Switching the dependency-confusion guard off is an admin's decision, not a CI
        // token's that may create branch indexes.
        principal.require(Permission::Admin, name)?;
    }
    authorize_bases(db, principal, &settings.bases).await
}

/// Refuses unless `principal` is the server's admin (admin on `*`): what makes this
/// server connect somewhere new is not a namespace admin's to decide.
fn require_server_admin(
    principal: &Principal,
    name: &IndexName,
    what: &str,
) -> Result<(), ServiceError> {
    if principal.is_server_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "{what} (`{name}`) needs admin on `*`: a mirror makes this server connect to the network, which only the server's admin may point anywhere"
        )))
    }
}

/// What changing an index takes: `admin` on it, and read access to any new bases.
async fn authorize_modify(
    db: &Db,
    principal: &Principal,
    name: &IndexName,
    patch: &IndexPatch,
) -> Result<(), ServiceError> {
    principal.require(Permission::Admin, name)?;
    if patch.mirror_url.is_some() || patch.mirror_file_origins.is_some() {
        require_server_admin(principal, name, "changing where a mirror connects")?;
    }
    authorize_bases(db, principal, patch.bases.as_deref().unwrap_or_default()).await
}

/// What deleting an index takes: `admin` on it, or `upload` for a volatile index (CI
/// cleans up merged branches' indexes).
async fn authorize_delete(
    db: &Db,
    principal: &Principal,
    name: &IndexName,
) -> Result<(), ServiceError> {
    let index = get_index(db, name).await?;
    if !(index.settings.volatile && principal.allows(Permission::Upload, name)) {
        principal.require(Permission::Admin, name)?;
    }
    Ok(())
}

/// Applies `patch` to an index, if the caller may (see [`authorize_modify`]).
pub async fn modify_index(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    patch: &IndexPatch,
) -> Result<Index, ServiceError> {
    let principal = caller.authenticated()?;
    authorize_modify(db, principal, name, patch).await?;
    let mut tx = db.begin_write().await?;
    // New bases are checked for cycles against the graph as it is now.
    tx.lock(Lock::Indexes).await?;
    let index = Db::find_index_tx(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if index.settings.promotion_only && patch.promotion_only == Some(false) {
        guard_production(principal, &index, "clearing `promotion_only`", patch.force)?;
    }
    let mut settings = index.settings.clone();
    if let Some(bases) = &patch.bases {
        settings.bases.clone_from(bases);
    }
    if let Some(volatile) = patch.volatile {
        settings.volatile = volatile;
    }
    if let Some(promotion_only) = patch.promotion_only {
        settings.promotion_only = promotion_only;
    }
    if let Some(description) = &patch.description {
        settings.description.clone_from(description);
    }
    if let Some(private) = patch.private {
        settings.private = private;
    }
    apply_mirror_patch(name, &mut settings, patch)?;
    let settings = validate_settings(name, &settings)?;
    let base_ids = resolve_bases(&mut tx, name, &settings.bases).await?;
    refuse_cycles(&mut tx, &index, &settings.bases, &base_ids).await?;
    Db::update_index_tx(&mut tx, index.id, &settings, &base_ids, &now_rfc3339()).await?;
    index_event(
        &mut tx,
        EventKind::IndexChanged,
        name,
        principal,
        serde_json::json!({
            "before": shown(&index.settings),
            "after": shown(&settings),
            "mirror_password_changed": patch.mirror_password.is_some(),
            "forced": patch.force,
        }),
    )
    .await?;
    tx.commit().await?;
    get_index(db, name).await
}

fn apply_mirror_patch(
    name: &IndexName,
    settings: &mut IndexSettings,
    patch: &IndexPatch,
) -> Result<(), ServiceError> {
    if let Some(allow) = &patch.mirror_allow {
        settings.mirror_allow.clone_from(allow);
    }
    let touches_mirror = patch.mirror_url.is_some()
        || patch.mirror_username.is_some()
        || patch.mirror_password.is_some()
        || patch.mirror_ttl_seconds.is_some()
        || patch.mirror_file_origins.is_some();
    if !touches_mirror {
        return Ok(());
    }
    let Some(mirror) = settings.mirror.as_mut() else {
        return Err(ServiceError::Invalid(format!(
            "index `{name}` is a stage index; mirror settings apply only to mirrors (an index's kind cannot change)"
        )));
    };
    if let Some(url) = &patch.mirror_url
        && url.trim_end_matches('/') != mirror.url.trim_end_matches('/')
    {
        // The stored credentials were for the old upstream: never send them to the new
        // one unless they are given again with the change.
        mirror.url.clone_from(url);
        mirror.username = None;
        mirror.password = None;
    }
    if let Some(username) = &patch.mirror_username {
        mirror.username = Some(username.clone());
    }
    if let Some(password) = &patch.mirror_password {
        mirror.password = Some(password.clone());
    }
    if let Some(ttl) = patch.mirror_ttl_seconds {
        mirror.ttl_seconds = ttl;
    }
    if let Some(origins) = &patch.mirror_file_origins {
        mirror.file_origins.clone_from(origins);
    }
    Ok(())
}

/// Deletes an index that no other index inherits from, if the caller may (see
/// [`authorize_delete`]); a promotion-only one only with `force` (see
/// [`guard_production`]).
pub async fn delete_index(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
    force: bool,
    keep_for: std::time::Duration,
) -> Result<i64, ServiceError> {
    let principal = caller.authenticated()?;
    authorize_delete(db, principal, name).await?;
    let mut tx = db.begin_write().await?;
    // No index may take it as a base between the check for dependents and the delete.
    tx.lock(Lock::Indexes).await?;
    let index = Db::find_index_tx(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if index.settings.promotion_only {
        guard_production(principal, &index, "deleting it", force)?;
    }
    let dependents = Db::dependents_tx(&mut tx, index.id).await?;
    if !dependents.is_empty() {
        let names: Vec<String> = dependents.iter().map(|d| format!("`{d}`")).collect();
        return Err(ServiceError::Conflict(format!(
            "index `{name}` is a base of {}; remove it from their bases first",
            names.join(", ")
        )));
    }
    // Into the trash: hidden at once, restorable until the entry expires.
    let now = super::builds::now_ms();
    let keep_ms = i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX);
    let trash = Db::trash_index_tx(
        &mut tx,
        index.id,
        "deleted",
        &principal.name,
        now,
        now.saturating_add(keep_ms),
    )
    .await?;
    index_event(
        &mut tx,
        EventKind::IndexDeleted,
        name,
        principal,
        serde_json::json!({ "settings": shown(&index.settings), "forced": force, "trash": trash }),
    )
    .await?;
    tx.commit().await?;
    Ok(trash)
}

async fn resolve_bases(
    tx: &mut WriteTx,
    name: &IndexName,
    bases: &[IndexName],
) -> Result<Vec<i64>, ServiceError> {
    let mut ids = Vec::with_capacity(bases.len());
    let mut seen = HashSet::new();
    for base in bases {
        if base == name {
            return Err(ServiceError::Invalid(format!(
                "index `{name}` cannot be its own base"
            )));
        }
        if !seen.insert(base) {
            return Err(ServiceError::Invalid(format!(
                "base `{base}` is listed twice for index `{name}`"
            )));
        }
        let found = Db::find_index_tx(tx, base).await?.ok_or_else(|| {
            ServiceError::Invalid(format!(
                "base index `{base}` of `{name}` does not exist; create it first"
            ))
        })?;
        ids.push(found.id);
    }
    Ok(ids)
}

/// Refuses new bases from which `index` is reachable: that would make a cycle.
async fn refuse_cycles(
    tx: &mut WriteTx,
    index: &Index,
    bases: &[IndexName],
    base_ids: &[i64],
) -> Result<(), ServiceError> {
    let mut graph: HashMap<i64, Vec<i64>> = HashMap::new();
    for (from, to) in Db::base_edges_tx(tx).await? {
        if from != index.id {
            graph.entry(from).or_default().push(to);
        }
    }
    for (base, base_id) in bases.iter().zip(base_ids) {
        if reaches(&graph, *base_id, index.id) {
            return Err(ServiceError::Invalid(format!(
                "bases of `{}` would form a cycle: `{base}` already inherits from `{}`",
                index.name, index.name
            )));
        }
    }
    Ok(())
}

fn reaches(graph: &HashMap<i64, Vec<i64>>, from: i64, target: i64) -> bool {
    let mut stack = vec![from];
    let mut seen = HashSet::new();
    while let Some(node) = stack.pop() {
        if node == target {
            return true;
        }
        if seen.insert(node) {
            stack.extend(graph.get(&node).into_iter().flatten().copied());
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_transitive_paths() {
        let graph = HashMap::from([(1, vec![2]), (2, vec![3]), (3, vec![])]);
        assert!(reaches(&graph, 1, 3));
        assert!(!reaches(&graph, 3, 1));
        let cyclic = HashMap::from([(1, vec![2]), (2, vec![1])]);
        assert!(!reaches(&cyclic, 1, 9));
    }
}
