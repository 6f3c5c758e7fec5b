//! What a mirror has cached, as an operator sees it: listed, refreshed now, purged.

use super::*;

impl Mirrors {
    /// A mirror, its upstream settings and what it has cached, if the caller may read it.
    pub async fn cache(
        db: &Db,
        caller: &Caller,
        name: &IndexName,
    ) -> Result<(Index, MirrorSettings, Vec<MirrorCacheRow>), ServiceError> {
        let (index, _) = crate::service::auth::readable_chain(db, caller, name).await?;
        let mirror = mirror_index(index)?;
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
        let mirror = mirror_index(crate::service::indexes::get_index(db, name).await?)?;
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
        let mirror = &mirror_index(crate::service::indexes::get_index(db, name).await?)?;
        let mut tx = db.begin_write().await?;
        tx.lock(Lock::Project(mirror.id, project.as_str())).await?;
        let Some(orphans) =
            Db::purge_mirror_project_tx(&mut tx, mirror.id, project.as_str()).await?
        else {
            return Err(ServiceError::NotFound(format!(
                "mirror `{}` has nothing cached for `{project}`",
                mirror.name
            )));
        };
        tx.commit().await?;
        let mut deleted = 0;
        for sha in &orphans {
            let Ok(digest) = sha.parse::<Sha256Digest>() else {
                continue;
            };
            // Listed but never fetched: there are no bytes to delete.
            if !db.blob_exists(sha).await? {
                continue;
            }
            match crate::service::gc::collect_one(db, storage, &digest).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(sha256 = %sha, error = %err, "could not delete a purged blob; garbage collection will");
                }
            }
        }
        Ok(deleted)
    }
}
