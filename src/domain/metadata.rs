//! Core metadata (the `METADATA` file of a wheel; PEP 566 / PEP 643 / the
//! [core metadata spec](https://packaging.python.org/en/latest/specifications/core-metadata/)).
//!
//! Kiln reads only what it must agree with or serve: `Name`, `Version`,
//! `Requires-Python` and `Metadata-Version`. The whole file is also served verbatim per
//! PEP 658, so pip and uv can resolve without downloading the wheel.
//!
//! Traps:
//! - The format is RFC 822 headers: continuation lines start with whitespace, the body
//!   (long description) starts after the first empty line and is ignored here.
//! - Reading an archive member is bounded: a tiny zip can inflate to gigabytes, and a zip
//!   can hold millions of entries. Limits are explicit parameters, not hidden constants.

use std::io::{Read, Seek};
use std::str::FromStr;

use pep440_rs::Version;

use super::archive::{ArchiveError, ArchiveLimits, check_zip};
use super::dist_filename::DistFilename;
use super::project_name::ProjectName;

/// The fields of core metadata that Kiln uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMetadata {
    /// `Name`, as written.
    pub name: String,
    /// `Version`, as written.
    pub version: String,
    /// `Requires-Python`, if any.
    pub requires_python: Option<String>,
    /// Every `Requires-Dist`, as written (PEP 508 strings).
    pub requires_dist: Vec<String>,
}

/// Why core metadata could not be read or does not agree with the filename.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not valid UTF-8.
    #[error("METADATA is not valid UTF-8")]
    NotUtf8,
    /// A required header is absent.
    #[error("METADATA has no `{0}` field")]
    Missing(&'static str),
    /// A member or the archive as a whole breaks a rule or a limit.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// No `.dist-info/METADATA` for the wheel's own name and version.
    #[error("`{filename}` has no `{expected}` member")]
    NoMetadata {
        /// The wheel filename.
        filename: String,
        /// The member that was looked for.
        expected: String,
    },
    /// METADATA inflates beyond the limit.
    #[error("`{filename}`: METADATA is larger than {limit} bytes (`--max-metadata-size`)")]
    TooLarge {
        /// The wheel filename.
        filename: String,
        /// The configured limit.
        limit: u64,
    },
    /// METADATA disagrees with the filename.
    #[error("`{filename}`: METADATA says {field} `{found}`, but the filename says `{expected}`")]
    Disagrees {
        /// The wheel filename.
        filename: String,
        /// `Name` or `Version`.
        field: &'static str,
        /// What METADATA says.
        found: String,
        /// What the filename says.
        expected: String,
    },
}

/// Parses the headers of a core metadata file.
pub fn parse_core_metadata(bytes: &[u8]) -> Result<CoreMetadata, MetadataError> {
    let text = std::str::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)?;
    let mut name = None;
    let mut version = None;
    let mut requires_python = None;
    let mut requires_dist = Vec::new();
    let mut current: Option<(&str, String)> = None;
    let mut finish = |field: Option<(&str, String)>| {
        if let Some((key, value)) = field {
            let value = value.trim().to_owned();
            match key.to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(value),
                "version" if version.is_none() => version = Some(value),
                "requires-python" if requires_python.is_none() => requires_python = Some(value),
                "requires-dist" if !value.is_empty() => requires_dist.push(value),
                _ => {}
            }
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        finish(current.take());
        if let Some((key, value)) = line.split_once(':') {
            current = Some((key.trim(), value.to_owned()));
        }
    }
    finish(current.take());
    Ok(CoreMetadata {
        name: name.ok_or(MetadataError::Missing("Name"))?,
        version: version.ok_or(MetadataError::Missing("Version"))?,
        requires_python: requires_python.filter(|s| !s.is_empty()),
        requires_dist,
    })
}

/// Reads a wheel's `{name}-{version}.dist-info/METADATA`, checks that it agrees with the
/// filename and returns its bytes and parsed fields.
pub fn read_wheel_metadata<R: Read + Seek>(
    reader: R,
    dist: &DistFilename,
    limits: ArchiveLimits,
) -> Result<(Vec<u8>, CoreMetadata), MetadataError> {
    let filename = &dist.filename;
    let unreadable = |e: zip::result::ZipError| {
        MetadataError::Archive(ArchiveError::Unreadable {
            filename: filename.clone(),
            format: "zip archive",
            reason: e.to_string(),
        })
    };
    let mut reader = reader;
    let members = check_zip(&mut reader, filename, limits)?;
    let mut archive = zip::ZipArchive::new(reader).map_err(unreadable)?;
    // The walk and the zip crate must see the same members (the walk refused anything
    // on which readers could disagree; this guards the reader Kiln itself uses).
    if archive.len() != members.len() {
        return Err(MetadataError::Archive(ArchiveError::Malformed {
            filename: filename.clone(),
            member: "(central directory)".into(),
            reason: format!(
                "the zip reader lists {} members where the walk found {}",
                archive.len(),
                members.len()
            ),
        }));
    }
    // The dist-info directory name escapes the project name (PEP 427), and tools differ in
    // how they spell the version, so match on the normalized forms instead of a string.
    let member = archive
        .file_names()
        .find(|member| is_own_metadata(member, dist))
        .map(str::to_owned)
        .ok_or_else(|| MetadataError::NoMetadata {
            filename: filename.clone(),
            expected: format!(
                "{}-{}.dist-info/METADATA",
                dist.project.as_str().replace('-', "_"),
                dist.version
            ),
        })?;
    let entry = archive.by_name(&member).map_err(unreadable)?;
    let mut bytes = Vec::new();
    entry
        .take(limits.max_metadata_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.into()))?;
    if bytes.len() as u64 > limits.max_metadata_bytes {
        return Err(MetadataError::TooLarge {
            filename: filename.clone(),
            limit: limits.max_metadata_bytes,
        });
    }
    let metadata = parse_core_metadata(&bytes)?;
    check_agrees(&metadata, dist)?;
    Ok((bytes, metadata))
}

fn is_own_metadata(member: &str, dist: &DistFilename) -> bool {
    let Some(dir) = member.strip_suffix(".dist-info/METADATA") else {
        return false;
    };
    if dir.contains('/') {
        return false;
    }
    let Some((name, version)) = dir.rsplit_once('-') else {
        return false;
    };
    ProjectName::new(name).is_ok_and(|n| n == dist.project)
        && Version::from_str(version).is_ok_and(|v| v == dist.version)
}

/// Checks that metadata `Name` and `Version` agree with the filename.
pub fn check_agrees(metadata: &CoreMetadata, dist: &DistFilename) -> Result<(), MetadataError> {
    if ProjectName::new(&metadata.name).ok().as_ref() != Some(&dist.project) {
        return Err(MetadataError::Disagrees {
            filename: dist.filename.clone(),
            field: "Name",
            found: metadata.name.clone(),
            expected: dist.project.to_string(),
        });
    }
    if Version::from_str(&metadata.version).ok().as_ref() != Some(&dist.version) {
        return Err(MetadataError::Disagrees {
            filename: dist.filename.clone(),
            field: "Version",
            found: metadata.version.clone(),
            expected: dist.version.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    const METADATA: &str = "Metadata-Version: 2.1\nName: My_Pkg\nVersion: 1.0\nRequires-Python: >=3.8\nSummary: a\n  continued\n\nName: ignored body\n";

    fn wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        for (name, data) in members {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn parses_headers_and_stops_at_body() {
        let m = parse_core_metadata(METADATA.as_bytes()).unwrap();
        assert_eq!(m.name, "My_Pkg");
        assert_eq!(m.version, "1.0");
        assert_eq!(m.requires_python.as_deref(), Some(">=3.8"));
    }

    #[test]
    fn refuses_broken_metadata() {
        insta::assert_snapshot!(parse_core_metadata(b"Name: x\n").unwrap_err(), @"METADATA has no `Version` field");
        insta::assert_snapshot!(parse_core_metadata(b"Name: \xff\n").unwrap_err(), @"METADATA is not valid UTF-8");
    }

    #[test]
    fn reads_wheel_metadata() {
        let dist = DistFilename::parse("my_pkg-1.0-py3-none-any.whl").unwrap();
        let bytes = wheel(&[
            ("my_pkg/__init__.py", b""),
            ("My_Pkg-1.0.dist-info/METADATA", METADATA.as_bytes()),
        ]);
        let (raw, m) =
            read_wheel_metadata(Cursor::new(bytes), &dist, ArchiveLimits::default()).unwrap();
        assert_eq!(raw, METADATA.as_bytes());
        assert_eq!(m.requires_python.as_deref(), Some(">=3.8"));
    }

    #[test]
    fn refuses_bad_wheels() {
        let dist = DistFilename::parse("my_pkg-1.0-py3-none-any.whl").unwrap();
        let read = |bytes: Vec<u8>, limits| {
            read_wheel_metadata(Cursor::new(bytes), &dist, limits)
                .unwrap_err()
                .to_string()
        };
        let good = wheel(&[("my_pkg-1.0.dist-info/METADATA", METADATA.as_bytes())]);
        insta::assert_snapshot!(
            read(good[..good.len() / 2].to_vec(), ArchiveLimits::default()),
            @"`my_pkg-1.0-py3-none-any.whl` is not a readable zip archive (no end-of-central-directory record ends the file); was the upload truncated?"
        );
        insta::assert_snapshot!(
            read(wheel(&[("other-1.0.dist-info/METADATA", b"")]), ArchiveLimits::default()),
            @"`my_pkg-1.0-py3-none-any.whl` has no `my_pkg-1.0.dist-info/METADATA` member"
        );
        insta::assert_snapshot!(
            read(wheel(&[("my_pkg-1.0.dist-info/METADATA", b"Name: my-pkg\nVersion: 2.0\n")]), ArchiveLimits::default()),
            @"`my_pkg-1.0-py3-none-any.whl`: METADATA says Version `2.0`, but the filename says `1.0`"
        );
        insta::assert_snapshot!(
            read(wheel(&[("my_pkg-1.0.dist-info/METADATA", b"Name: other\nVersion: 1.0\n")]), ArchiveLimits::default()),
            @"`my_pkg-1.0-py3-none-any.whl`: METADATA says Name `other`, but the filename says `my-pkg`"
        );
        let tight = ArchiveLimits {
            max_entries: 1,
            max_metadata_bytes: 10,
            max_unpacked_bytes: 1000,
        };
        insta::assert_snapshot!(
            read(wheel(&[("a", b""), ("b", b"")]), tight),
            @"`my_pkg-1.0-py3-none-any.whl` has more than 1 archive entries (`--max-archive-entries`)"
        );
        insta::assert_snapshot!(
            read(good.clone(), tight),
            @"`my_pkg-1.0-py3-none-any.whl`: METADATA is larger than 10 bytes (`--max-metadata-size`)"
        );
        let small = ArchiveLimits {
            max_unpacked_bytes: 10,
            ..ArchiveLimits::default()
        };
        insta::assert_snapshot!(
            read(good, small),
            @"`my_pkg-1.0-py3-none-any.whl` unpacks to more than 10 bytes (`--max-unpacked-size`)"
        );
        insta::assert_snapshot!(
            read(wheel(&[("../evil.py", b""), ("my_pkg-1.0.dist-info/METADATA", METADATA.as_bytes())]), ArchiveLimits::default()),
            @"`my_pkg-1.0-py3-none-any.whl` has an unsafe member `../evil.py`: it climbs out with `..`"
        );
    }
}
