//! Branch index names: a git branch becomes `<namespace>/<slug>`.
//!
//! The slug is deterministic, so every runner of every stage computes the same index
//! without talking to the others: lowercase, every run of characters outside `[a-z0-9._]`
//! becomes one `-`, leading and trailing separators are dropped. Long names are cut and
//! get a short hash of the full branch name, so two long branches that share a prefix
//! still get different indexes.
//!
//! Traps: slugging is lossy (`feature/a` and `feature-a` share a slug). The branch index
//! records the branch it was created for, and `kiln ensure` refuses to use an index
//! created for another branch — or one that is not a branch index at all (`master`,
//! `prod`) — rather than mix two branches' builds.

use sha2::{Digest as _, Sha256};

/// Longest slug; longer ones are cut and suffixed with a hash.
pub const MAX_SLUG: usize = 48;
const HASH_CHARS: usize = 8;

/// The index name part for a git branch, or `None` if nothing usable remains.
#[must_use]
pub fn branch_slug(branch: &str) -> Option<String> {
    let mut slug = String::with_capacity(branch.len());
    for c in branch.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches(['-', '.', '_']);
    if slug.is_empty() {
        return None;
    }
    if slug.len() <= MAX_SLUG {
        return Some(slug.to_owned());
    }
    let digest = hex::encode(Sha256::digest(branch.as_bytes()));
    let keep = MAX_SLUG - HASH_CHARS - 1;
    let head = slug[..keep].trim_end_matches(['-', '.', '_']);
    Some(format!("{head}-{}", &digest[..HASH_CHARS]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            branch_slug("feature/login-form").as_deref(),
            Some("feature-login-form")
        );
        assert_eq!(branch_slug("Fix_Bug#12").as_deref(), Some("fix_bug-12"));
        assert_eq!(branch_slug("--x--").as_deref(), Some("x"));
        assert_eq!(branch_slug("release/2.0").as_deref(), Some("release-2.0"));
        assert_eq!(branch_slug("///"), None);
        assert_eq!(branch_slug("ünïcode").as_deref(), Some("n-code"));
    }

    #[test]
    fn long_slugs_are_cut_with_a_hash() {
        let a = format!("feature/{}", "x".repeat(80));
        let b = format!("feature/{}y", "x".repeat(80));
        let (sa, sb) = (branch_slug(&a).unwrap(), branch_slug(&b).unwrap());
        assert!(sa.len() <= MAX_SLUG && sb.len() <= MAX_SLUG, "{sa}");
        assert_ne!(sa, sb);
        assert_eq!(branch_slug(&a).unwrap(), sa, "deterministic");
        crate::domain::IndexName::from_parts("acme", &sa).unwrap();
    }
}
