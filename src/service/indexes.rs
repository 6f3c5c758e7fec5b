//! Creating, changing and deleting indexes, with the rules that keep inheritance sane:
//! bases must exist, no index may (transitively) inherit from itself, and an index that
//! others inherit from cannot be deleted from under them.

use std::collections::{HashMap, HashSet};

use super::{ServiceError, now_rfc3339};
use crate::db::{Db, DbError, WriteTx};
use crate::domain::{Index, IndexName, IndexSettings};

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
}

/// Looks an index up, or says it does not exist.
pub async fn get_index(db: &Db, name: &IndexName) -> Result<Index, ServiceError> {
    db.find_index(name).await?.ok_or_else(|| not_found(name))
}

fn not_found(name: &IndexName) -> ServiceError {
    ServiceError::NotFound(format!("index `{name}` does not exist"))
}

/// Creates an index.
pub async fn create_index(
    db: &Db,
    name: &IndexName,
    settings: &IndexSettings,
) -> Result<Index, ServiceError> {
    let mut tx = db.begin_write().await?;
    create_index_tx(&mut tx, name, settings).await?;
    tx.commit().await.map_err(DbError::from)?;
    get_index(db, name).await
}

/// Creates an index inside a caller's transaction (used by first-start bootstrap).
pub async fn create_index_tx(
    tx: &mut WriteTx,
    name: &IndexName,
    settings: &IndexSettings,
) -> Result<i64, ServiceError> {
    if Db::find_index_tx(tx, name).await?.is_some() {
        return Err(ServiceError::Conflict(format!(
            "index `{name}` already exists"
        )));
    }
    let base_ids = resolve_bases(tx, name, &settings.bases).await?;
    match Db::insert_index(tx, name, settings, &base_ids, &now_rfc3339()).await {
        Ok(id) => Ok(id),
        Err(DbError::Conflict) => Err(ServiceError::Conflict(format!(
            "index `{name}` already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Applies `patch` to an index.
pub async fn modify_index(
    db: &Db,
    name: &IndexName,
    patch: &IndexPatch,
) -> Result<Index, ServiceError> {
    let mut tx = db.begin_write().await?;
    let index = Db::find_index_tx(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
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
    let base_ids = resolve_bases(&mut tx, name, &settings.bases).await?;
    refuse_cycles(&mut tx, &index, &settings.bases, &base_ids).await?;
    Db::update_index(&mut tx, index.id, &settings, &base_ids, &now_rfc3339()).await?;
    tx.commit().await.map_err(DbError::from)?;
    get_index(db, name).await
}

/// Deletes an index that no other index inherits from.
pub async fn delete_index(db: &Db, name: &IndexName) -> Result<(), ServiceError> {
    let mut tx = db.begin_write().await?;
    let index = Db::find_index_tx(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let dependents = Db::dependents_tx(&mut tx, index.id).await?;
    if !dependents.is_empty() {
        let names: Vec<String> = dependents.iter().map(|d| format!("`{d}`")).collect();
        return Err(ServiceError::Conflict(format!(
            "index `{name}` is a base of {}; remove it from their bases first",
            names.join(", ")
        )));
    }
    if index.settings.promotion_only {
        return Err(ServiceError::Forbidden(format!(
            "index `{name}` is promotion-only, and production indexes are append-only: it cannot be deleted through the API"
        )));
    }
    Db::delete_index(&mut tx, index.id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
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
