//! The dependency-confusion guard: a name published on **any** stage index of the server
//! is not asked of, nor served from, a mirror through any chain, unless a stage index
//! before that mirror in the chain explicitly allows it. Per chain is not enough: a name
//! that exists only on `root/master` would otherwise be fetched from the upstream through
//! `root/prod`'s chain (prod → pypi) and served as the upstream's.

/// How many names `kiln index show` lists as hidden from a mirror.
const SHOWN_SHADOWED: i64 = 1000;

use super::{Db, Index, IndexKind, MirrorSettings, Mirrors, ServiceError};

/// True if the mirror at `at` in `chain` may serve `project`: the name is not published
/// on any stage index of the server (`published`), or one of the stage indexes before
/// the mirror allows it.
#[must_use]
pub fn mirror_may_serve(chain: &[Index], at: usize, published: bool, project: &str) -> bool {
    if !published {
        return true;
    }
    chain[..at].iter().any(|index| {
        index.settings.kind == IndexKind::Stage
            && MirrorSettings::allows(&index.settings.mirror_allow, project)
    })
}

/// The ids of the chain's stage indexes (the ones with files of their own).
pub(super) fn stage_ids(chain: &[Index]) -> Vec<i64> {
    chain
        .iter()
        .filter(|i| i.settings.kind == IndexKind::Stage)
        .map(|i| i.id)
        .collect()
}

impl Mirrors {
    /// The names the guard hides from the first mirror in `chain`: projects published on
    /// the server's stage indexes (the first [`SHOWN_SHADOWED`]), minus the names the
    /// indexes before the mirror allow. Empty without a mirror.
    pub async fn shadowed(db: &Db, chain: &[Index]) -> Result<Vec<String>, ServiceError> {
        let Some(first) = chain
            .iter()
            .position(|i| i.settings.kind == IndexKind::Mirror)
        else {
            return Ok(Vec::new());
        };
        let before = &chain[..first];
        let names = db.published_projects(SHOWN_SHADOWED).await?;
        Ok(names
            .into_iter()
            .filter(|name| {
                !before
                    .iter()
                    .any(|i| MirrorSettings::allows(&i.settings.mirror_allow, name))
            })
            .collect())
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
        // Nobody publishes it on this server: the mirror serves it.
        assert!(mirror_may_serve(&chain, 2, false, "flask"));
        // Published on some stage index (in this chain or any other): hidden.
        assert!(!mirror_may_serve(&chain, 2, true, "flask"));
        // Allowed by an index before the mirror.
        assert!(mirror_may_serve(&chain, 2, true, "requests"));
        // An allowance after the mirror does not count.
        let late = [
            index(1, IndexKind::Mirror, &[]),
            index(2, IndexKind::Stage, &["flask"]),
        ];
        assert!(!mirror_may_serve(&late, 0, true, "flask"));
        let everything = [
            index(1, IndexKind::Stage, &["*"]),
            index(2, IndexKind::Mirror, &[]),
        ];
        assert!(mirror_may_serve(&everything, 1, true, "anything"));
    }
}
