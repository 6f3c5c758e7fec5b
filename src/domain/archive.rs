//! Archive member checks: every upload's members are listed, with bounded work, before it
//! is stored. Installers unpack these files on CI runners and developer machines, so a
//! member that could land outside the unpack directory (an absolute path, `..`, a
//! backslash, a link pointing out) or that is not what it claims is refused outright.
//!
//! Zip archives (wheels and zip sdists) are walked strictly (`zipwalk`: the one end record,
//! the whole central directory and every local header must agree), so nothing is
//! inflated and no reader can find a member Kiln did not check; tar sdists are read as a stream, counting members and inflated
//! bytes against the limits, and stop at the first breach.

use std::io::{Read, Seek};

use super::zipwalk::{self, WalkError, ZipMember};

/// Bounds on the work of reading one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most members an archive may have (`--max-archive-entries`).
    pub max_entries: usize,
    /// Largest METADATA file, inflated (`--max-metadata-size`).
    pub max_metadata_bytes: u64,
    /// Most bytes an archive may inflate to, in total (`--max-unpacked-size`).
    pub max_unpacked_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_metadata_bytes: 16 * 1024 * 1024,
            max_unpacked_bytes: 16 * 1024 * 1024 * 1024,
        }
    }
}

/// Why an archive's members are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The container cannot be read.
    #[error("`{filename}` is not a readable {format} ({reason}); was the upload truncated?")]
    Unreadable {
        /// The upload's filename.
        filename: String,
        /// `zip archive` or `gzip-compressed tar archive`.
        format: &'static str,
        /// What the reader said.
        reason: String,
    },
    /// More members than the limit.
    #[error("`{filename}` has more than {limit} archive entries (`--max-archive-entries`)")]
    TooManyEntries {
        /// The upload's filename.
        filename: String,
        /// The configured limit.
        limit: usize,
    },
    /// Inflates beyond the limit.
    #[error("`{filename}` unpacks to more than {limit} bytes (`--max-unpacked-size`)")]
    TooLarge {
        /// The upload's filename.
        filename: String,
        /// The configured limit.
        limit: u64,
    },
    /// The zip structure lets readers disagree about the members.
    #[error(
        "`{filename}` is a malformed zip archive at `{member}`: {reason}; rebuild it with a standard tool"
    )]
    Malformed {
        /// The upload's filename.
        filename: String,
        /// The member (or structure) concerned.
        member: String,
        /// What is wrong.
        reason: String,
    },
    /// A member whose path or kind is unsafe to unpack.
    #[error("`{filename}` has an unsafe member `{member}`: {reason}")]
    Unsafe {
        /// The upload's filename.
        filename: String,
        /// The member's name, escaped for display.
        member: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a member path is unsafe, if it is.
#[must_use]
pub fn unsafe_path(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("its name is empty");
    }
    if path.chars().any(char::is_control) {
        return Some("its name contains control characters");
    }
    if path.contains('\\') {
        return Some("its name contains a backslash");
    }
    if path.starts_with('/') {
        return Some("it is an absolute path");
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Some("it starts with a drive letter");
    }
    if path.split('/').any(|part| part == "..") {
        return Some("it climbs out with `..`");
    }
    None
}

/// True when a symbolic link at `member` pointing at `target` (relative to the link's
/// directory) stays inside the archive's root.
#[must_use]
pub fn link_stays_inside(member: &str, target: &str) -> bool {
    let bytes = target.as_bytes();
    let escapes_outright = target.is_empty()
        || target.starts_with('/')
        || target.contains('\\')
        || target.chars().any(char::is_control)
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic());
    if escapes_outright {
        return false;
    }
    // How many directories deep the link itself sits.
    let mut depth = member
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .count()
        .saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// What extraction does with links, tracked member by member: a lexical check of one
/// link's target is not enough when links chain (`a -> .` then `a/b -> ..` leaves the
/// tree although each looks inside). So no member may lie under a link, no link may
/// replace a directory earlier members used, and no link target may pass through
/// another link.
#[derive(Debug, Default)]
struct LinkGuard {
    links: std::collections::HashSet<String>,
    dirs: std::collections::HashSet<String>,
}

/// A member path's components, without `.` and empty ones.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

impl LinkGuard {
    /// Any member: refused when a directory it lies in is a link.
    fn member(&mut self, name: &str) -> Result<(), &'static str> {
        let parts = components(name);
        for end in 1..parts.len() {
            let prefix = parts[..end].join("/");
            if self.links.contains(&prefix) {
                return Err("it lies under a symbolic link, so extracting it follows the link");
            }
            self.dirs.insert(prefix);
        }
        Ok(())
    }

    /// Walks `target` from `start` (components), refusing a climb out of the root and a
    /// step through a link; `Ok` with the final path.
    fn resolve(&self, mut at: Vec<String>, target: &str) -> Result<String, &'static str> {
        let mut moved = false;
        for part in target.split('/') {
            if part.is_empty() || part == "." {
                continue;
            }
            // Stepping on from a link follows it: the lexical path is no longer the real one.
            if moved && self.links.contains(&at.join("/")) {
                return Err("it is a link whose target passes through another link");
            }
            moved = true;
            if part == ".." {
                if at.pop().is_none() {
                    return Err("it is a link pointing outside the archive");
                }
            } else {
                at.push(part.to_owned());
            }
        }
        Ok(at.join("/"))
    }

    /// A symbolic link at `name` to `target` (relative to its directory).
    fn symlink(&mut self, name: &str, target: &str) -> Result<(), &'static str> {
        if !link_stays_inside(name, target) {
            return Err("it is a link pointing outside the archive");
        }
        let parts = components(name);
        let path = parts.join("/");
        if self.dirs.contains(&path) {
            return Err("it is a link replacing a directory that earlier members are in");
        }
        let dir: Vec<String> = parts[..parts.len().saturating_sub(1)]
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        self.resolve(dir, target)?;
        self.links.insert(path);
        Ok(())
    }

    /// A hard link at `name` to the member `target` (relative to the archive root).
    fn hardlink(&self, target: &str) -> Result<(), &'static str> {
        if unsafe_path(target).is_some() {
            return Err("it is a link pointing outside the archive");
        }
        let end = self.resolve(Vec::new(), target)?;
        if self.links.contains(&end) {
            return Err("it is a hard link to a symbolic link");
        }
        Ok(())
    }
}

fn shown(name: &str) -> String {
    name.chars()
        .take(200)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Checks a zip archive's structure strictly ([`super::zipwalk`]: one end record, the
/// whole central directory, every local header, no hidden or overlapping data) and then
/// every member: count, paths, duplicates, links and the declared inflated total. On
/// success the archive's members are exactly the ones any zip reader extracts.
pub fn check_zip<R: Read + Seek>(
    reader: &mut R,
    filename: &str,
    limits: ArchiveLimits,
) -> Result<Vec<ZipMember>, ArchiveError> {
    let members = match zipwalk::walk(reader, limits.max_entries) {
        Ok(members) => members,
        Err(WalkError::TooMany) => {
            return Err(ArchiveError::TooManyEntries {
                filename: filename.to_owned(),
                limit: limits.max_entries,
            });
        }
        Err(WalkError::NotZip(why)) => {
            return Err(ArchiveError::Unreadable {
                filename: filename.to_owned(),
                format: "zip archive",
                reason: why.to_owned(),
            });
        }
        Err(WalkError::Io(e)) => {
            return Err(ArchiveError::Unreadable {
                filename: filename.to_owned(),
                format: "zip archive",
                reason: e.to_string(),
            });
        }
        Err(WalkError::Fault(fault)) => {
            return Err(ArchiveError::Malformed {
                filename: filename.to_owned(),
                member: fault.member,
                reason: fault.reason,
            });
        }
    };
    let unsafe_member = |member: &str, reason| ArchiveError::Unsafe {
        filename: filename.to_owned(),
        member: shown(member),
        reason,
    };
    let mut seen = std::collections::HashSet::new();
    let mut total: u64 = 0;
    for entry in &members {
        let Ok(name) = std::str::from_utf8(&entry.name) else {
            return Err(unsafe_member(
                &String::from_utf8_lossy(&entry.name),
                "its name is not UTF-8",
            ));
        };
        if let Some(reason) = unsafe_path(name) {
            return Err(unsafe_member(name, reason));
        }
        if entry
            .unix_mode
            .is_some_and(|mode| mode & 0o170_000 == 0o120_000)
        {
            return Err(unsafe_member(name, "it is a symbolic link"));
        }
        if !seen.insert(name.trim_end_matches('/').to_owned()) {
            // Two members of one name: Kiln would read one, an installer the other.
            return Err(unsafe_member(name, "the name appears twice"));
        }
        total = total.saturating_add(entry.size);
        if total > limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge {
                filename: filename.to_owned(),
                limit: limits.max_unpacked_bytes,
            });
        }
    }
    Ok(members)
}

/// Reads a zip sdist's members (see [`check_zip`]).
pub fn check_zip_sdist<R: Read + Seek>(
    reader: R,
    filename: &str,
    limits: ArchiveLimits,
) -> Result<(), ArchiveError> {
    let mut reader = reader;
    check_zip(&mut reader, filename, limits).map(|_| ())
}

/// Streams a `.tar.gz` sdist, checking each member's path and kind, and stopping as soon
/// as the member count or the inflated size passes its limit.
pub fn check_tar_gz<R: Read>(
    reader: R,
    filename: &str,
    limits: ArchiveLimits,
) -> Result<(), ArchiveError> {
    let unreadable = |reason: String| ArchiveError::Unreadable {
        filename: filename.to_owned(),
        format: "gzip-compressed tar archive",
        reason,
    };
    let too_large = || ArchiveError::TooLarge {
        filename: filename.to_owned(),
        limit: limits.max_unpacked_bytes,
    };
    // One byte over the limit is enough to know it was passed.
    let inflated = flate2::read::GzDecoder::new(reader).take(limits.max_unpacked_bytes + 1);
    let mut archive = tar::Archive::new(inflated);
    let entries = archive.entries().map_err(|e| unreadable(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    let mut guard = LinkGuard::default();
    for (count, entry) in entries.enumerate() {
        if count >= limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                filename: filename.to_owned(),
                limit: limits.max_entries,
            });
        }
        let entry = entry.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                unreadable("it ends early (or passes the unpacked-size limit)".into())
            } else {
                unreadable(e.to_string())
            }
        })?;
        if entry.raw_file_position() > limits.max_unpacked_bytes {
            return Err(too_large());
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_member = |reason| ArchiveError::Unsafe {
            filename: filename.to_owned(),
            member: shown(&name),
            reason,
        };
        if let Some(reason) = unsafe_path(&name) {
            return Err(unsafe_member(reason));
        }
        let kind = entry.header().entry_type();
        guard.member(&name).map_err(unsafe_member)?;
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            // A hard link's target is relative to the archive root, a symlink's to its
            // own directory.
            if kind.is_hard_link() {
                guard.hardlink(&target)
            } else {
                guard.symlink(&name, &target)
            }
            .map_err(unsafe_member)?;
        } else if !(kind.is_file()
            || kind.is_dir()
            || kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink())
        {
            return Err(unsafe_member("it is a device, FIFO or other special file"));
        }
        if !kind.is_dir() && !seen.insert(name.clone()) {
            return Err(unsafe_member("the name appears twice"));
        }
        if entry.raw_file_position().saturating_add(entry.size()) > limits.max_unpacked_bytes {
            return Err(too_large());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_links_cannot_leave_the_tree() {
        let mut guard = LinkGuard::default();
        guard.member("pkg/a").unwrap();
        guard.symlink("pkg/here", ".").unwrap();
        // Each looks inside on its own; through `here`, `..` is the parent of the root.
        assert_eq!(
            guard.symlink("pkg/up", "here/../.."),
            Err("it is a link whose target passes through another link")
        );
        assert_eq!(
            guard.member("pkg/here/evil.pth"),
            Err("it lies under a symbolic link, so extracting it follows the link")
        );
        assert_eq!(
            guard.symlink("pkg", "elsewhere"),
            Err("it is a link replacing a directory that earlier members are in")
        );
        assert_eq!(
            guard.hardlink("pkg/here"),
            Err("it is a hard link to a symbolic link")
        );
        assert_eq!(
            guard.hardlink("pkg/here/x"),
            Err("it is a link whose target passes through another link")
        );
        guard.symlink("pkg/docs", "a").unwrap();
        guard.hardlink("pkg/a").unwrap();
    }

    #[test]
    fn unsafe_paths_are_named() {
        for (path, reason) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("a/../../etc", "`..`"),
            ("..", "`..`"),
            ("a\\b", "backslash"),
            ("C:/x", "drive letter"),
            ("a\u{0}b", "control"),
            ("a\nb", "control"),
        ] {
            assert!(
                unsafe_path(path).is_some_and(|r| r.contains(reason)),
                "{path:?}: {:?}",
                unsafe_path(path)
            );
        }
        for path in [
            "demo/__init__.py",
            "demo-1.0.dist-info/METADATA",
            "a/./b",
            "dir/",
        ] {
            assert_eq!(unsafe_path(path), None, "{path}");
        }
    }

    #[test]
    fn links_must_stay_inside() {
        assert!(link_stays_inside("pkg/a/link", "../b"));
        assert!(link_stays_inside("pkg/link", "data/file"));
        assert!(!link_stays_inside("pkg/link", "../../etc/passwd"));
        assert!(!link_stays_inside("link", "../x"));
        assert!(!link_stays_inside("pkg/link", "/etc/passwd"));
    }
}
