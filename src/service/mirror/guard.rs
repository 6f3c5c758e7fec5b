//! The dependency-confusion guard: a name published on a stage index of the chain is not
//! asked of, nor served from, a mirror further down unless explicitly allowed.

use super::{Db, FileRecord, Index, IndexKind, MirrorSettings, Mirrors, ServiceError};

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
pub(super) fn private_positions(chain: &[Index], files: &[FileRecord]) -> Vec<usize> {
    chain
        .iter()
        .enumerate()
        .filter(|(_, index)| files.iter().any(|f| f.index_id == index.id))
        .map(|(at, _)| at)
        .collect()
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
}
