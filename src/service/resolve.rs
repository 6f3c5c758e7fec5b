//! Index resolution: which indexes a page draws from, and which files it shows.
//!
//! The chain of an index is itself, then its bases breadth-first, each index once (devpi's
//! `sro()`): a diamond (`branch → master → prod`, `branch → prod`) visits `prod` once, after
//! `master`. Files are merged own-first: when two indexes in the chain list the same
//! filename, the one nearer the start of the chain wins.

use std::collections::{HashSet, VecDeque};

use super::{ServiceError, indexes};
use crate::db::{Db, FileRecord, OnIndex};
use crate::domain::{Index, IndexName, ProjectName};

/// The ids of the indexes an index draws from, in resolution order (itself first).
pub async fn chain(db: &Db, index: &Index) -> Result<Vec<i64>, ServiceError> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([index.id]);
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        order.push(id);
        queue.extend(db.base_ids(id).await?);
    }
    Ok(order)
}

/// The indexes `index` draws from, in resolution order (itself first), with their
/// settings: what a page needs to tell stage indexes from mirrors.
pub async fn chain_indexes(db: &Db, index: &Index) -> Result<Vec<Index>, ServiceError> {
    let ids = chain(db, index).await?;
    if ids.len() == 1 {
        return Ok(vec![index.clone()]);
    }
    let mut all: std::collections::HashMap<i64, Index> = db
        .indexes_with_ids(&ids)
        .await?
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
    Ok(ids.iter().filter_map(|id| all.remove(id)).collect())
}

/// The chain of the index called `name`; `NotFound` if there is no such index.
pub async fn chain_of(db: &Db, name: &IndexName) -> Result<Vec<i64>, ServiceError> {
    let index = indexes::get_index(db, name).await?;
    chain(db, &index).await
}

/// The files of `project` visible through `chain`, own-first and de-duplicated by filename.
pub async fn project_files(
    db: &Db,
    chain: &[i64],
    project: &ProjectName,
) -> Result<Vec<FileRecord>, ServiceError> {
    let files = db.files_of_project(chain, project.as_str()).await?;
    Ok(merge_own_first(chain, files))
}

/// Orders files by their index's position in `chain` (then by filename) and keeps the
/// first file of each filename.
#[must_use]
pub fn merge_own_first<F: OnIndex>(chain: &[i64], mut files: Vec<F>) -> Vec<F> {
    let position = |id: i64| chain.iter().position(|c| *c == id).unwrap_or(usize::MAX);
    files.sort_by(|a, b| {
        position(a.index_id())
            .cmp(&position(b.index_id()))
            .then_with(|| a.filename().cmp(b.filename()))
    });
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(f.filename().to_owned()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(index_id: i64, filename: &str, sha: &str) -> FileRecord {
        FileRecord {
            index_id,
            project: "p".parse().unwrap(),
            version: "1.0".into(),
            filename: filename.into(),
            kind: crate::domain::DistKind::Wheel,
            sha256: crate::domain::Sha256Digest::of(sha.as_bytes()),
            size: 1,
            requires_python: None,
            metadata_sha256: None,
            yanked: false,
            yanked_reason: None,
            uploaded_at: String::new(),
            build_id: None,
            provenance: None,
        }
    }

    #[test]
    fn own_files_win_and_duplicates_go() {
        let merged = merge_own_first(
            &[7, 3],
            vec![
                file(3, "p-1.0-py3-none-any.whl", "base"),
                file(3, "p-0.9-py3-none-any.whl", "base"),
                file(7, "p-1.0-py3-none-any.whl", "own"),
            ],
        );
        let got: Vec<_> = merged
            .iter()
            .map(|f| (f.filename.as_str(), f.sha256.clone()))
            .collect();
        let digest = |tag: &str| crate::domain::Sha256Digest::of(tag.as_bytes());
        assert_eq!(
            got,
            [
                ("p-1.0-py3-none-any.whl", digest("own")),
                ("p-0.9-py3-none-any.whl", digest("base"))
            ]
        );
    }
}
