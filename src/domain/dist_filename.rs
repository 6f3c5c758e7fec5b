//! Distribution filenames: wheels (PEP 427, PEP 491) and sdists (PEP 625 plus the legacy
//! `.tar.gz` / `.zip` forms PyPI still accepts).
//!
//! The filename is the only thing a client can't lie about consistently: pip resolves
//! versions from it without downloading. So it is parsed strictly, before any byte is
//! stored, and checked against the form fields and the wheel's own METADATA.
//!
//! Traps:
//! - A filename is also a storage and URL path segment: separators, `..`, NUL and control
//!   characters are refused outright, before grammar is even considered.
//! - Legacy sdists may contain `-` in the project part (`my-pkg-1.0.tar.gz`); the version
//!   is the part after the *last* `-`.
//! - The wheel's optional build tag must start with a digit; it is how a 6-part name is
//!   told apart from a malformed one.

use std::fmt;
use std::str::FromStr;

use pep440_rs::Version;

use super::project_name::{ProjectName, ProjectNameError};

/// The kind of a distribution file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistKind {
    /// A built distribution (`.whl`).
    Wheel,
    /// A source distribution (`.tar.gz`, or legacy `.zip`).
    Sdist,
}

impl DistKind {
    /// The `filetype` value twine and uv send in the upload form.
    #[must_use]
    pub fn form_filetype(self) -> &'static str {
        match self {
            Self::Wheel => "bdist_wheel",
            Self::Sdist => "sdist",
        }
    }

    /// The value stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wheel => "wheel",
            Self::Sdist => "sdist",
        }
    }
}

impl std::str::FromStr for DistKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "wheel" => Ok(Self::Wheel),
            "sdist" => Ok(Self::Sdist),
            other => Err(format!(
                "`{}` is not a distribution kind (`wheel` or `sdist`)",
                other.escape_debug()
            )),
        }
    }
}

impl fmt::Display for DistKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a filename is not a distribution filename.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilenameError {
    /// Empty or absurdly long.
    #[error("filename must be between 1 and {max} characters", max = DistFilename::MAX_LEN)]
    Length,
    /// Contains `/`, `\`, NUL, a control character or is a dot path.
    #[error(
        "filename `{0}` must be a plain file name: no path separators, `..`, or control characters"
    )]
    NotPlain(String),
    /// The extension is not one Kiln serves.
    #[error("filename `{0}` is neither a wheel (`.whl`) nor an sdist (`.tar.gz` or `.zip`)")]
    UnknownExtension(String),
    /// A wheel name with the wrong number of `-` separated parts.
    #[error(
        "wheel filename `{0}` must be `{{name}}-{{version}}(-{{build}})?-{{python}}-{{abi}}-{{platform}}.whl`"
    )]
    WheelShape(String),
    /// A wheel build tag that does not start with a digit.
    #[error("wheel filename `{filename}` has build tag `{tag}`, which must start with a digit")]
    BuildTag {
        /// The whole filename.
        filename: String,
        /// The offending tag.
        tag: String,
    },
    /// A compatibility tag with characters outside `[A-Za-z0-9_.]`.
    #[error("wheel filename `{filename}` has an invalid compatibility tag `{tag}`")]
    Tag {
        /// The whole filename.
        filename: String,
        /// The offending tag.
        tag: String,
    },
    /// An sdist name without a `-` before the version.
    #[error("sdist filename `{0}` must be `{{name}}-{{version}}.tar.gz`")]
    SdistShape(String),
    /// The name part is not a valid project name.
    #[error("filename `{filename}`: {source}")]
    Name {
        /// The whole filename.
        filename: String,
        /// What is wrong with the name part.
        source: ProjectNameError,
    },
    /// The version part is not PEP 440.
    #[error("filename `{filename}` has version `{version}`, which is not a valid PEP 440 version")]
    Version {
        /// The whole filename.
        filename: String,
        /// The version part.
        version: String,
    },
}

/// A parsed, validated distribution filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistFilename {
    /// The filename exactly as uploaded.
    pub filename: String,
    /// The project it belongs to (normalized).
    pub project: ProjectName,
    /// The version it carries.
    pub version: Version,
    /// Wheel or sdist.
    pub kind: DistKind,
}

impl DistFilename {
    /// Longest accepted filename (a common filesystem limit).
    pub const MAX_LEN: usize = 255;

    /// Parses and validates a filename.
    pub fn parse(filename: &str) -> Result<Self, FilenameError> {
        if filename.is_empty() || filename.len() > Self::MAX_LEN {
            return Err(FilenameError::Length);
        }
        let plain = !filename.contains(['/', '\\'])
            && !filename.chars().any(char::is_control)
            && !filename.starts_with('.')
            && !filename.contains("..");
        if !plain {
            return Err(FilenameError::NotPlain(filename.escape_debug().to_string()));
        }
        if let Some(stem) = filename.strip_suffix(".whl") {
            Self::parse_wheel(filename, stem)
        } else if let Some(stem) = filename
            .strip_suffix(".tar.gz")
            .or_else(|| filename.strip_suffix(".zip"))
        {
            Self::parse_sdist(filename, stem)
        } else {
            Err(FilenameError::UnknownExtension(filename.to_owned()))
        }
    }

    /// True when an installer could not tell the two files apart: the same normalized
    /// project, an equal version (PEP 440: `1.0` equals `1.0.0`) and, for wheels, the
    /// same build and compatibility tags. `Demo_Pkg-1.0.tar.gz` and `demo.pkg-1.0.0.tar.gz`
    /// are one distribution, so different bytes under the two would pose as one release.
    #[must_use]
    pub fn same_distribution(&self, other: &Self) -> bool {
        self.project == other.project
            && self.version == other.version
            && self.kind == other.kind
            && self.tags() == other.tags()
    }

    /// A wheel's `[build-]python-abi-platform` part, lowercased; empty for sdists.
    fn tags(&self) -> String {
        match self.kind {
            DistKind::Sdist => String::new(),
            DistKind::Wheel => {
                let stem = self.filename.strip_suffix(".whl").unwrap_or(&self.filename);
                let parts: Vec<&str> = stem.split('-').skip(2).collect();
                parts.join("-").to_ascii_lowercase()
            }
        }
    }

    fn parse_wheel(filename: &str, stem: &str) -> Result<Self, FilenameError> {
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, tags) = match parts.as_slice() {
            [name, version, py, abi, plat] => (*name, *version, [*py, *abi, *plat]),
            [name, version, build, py, abi, plat] => {
                if !build.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(FilenameError::BuildTag {
                        filename: filename.to_owned(),
                        tag: (*build).to_owned(),
                    });
                }
                (*name, *version, [*py, *abi, *plat])
            }
            _ => return Err(FilenameError::WheelShape(filename.to_owned())),
        };
        for tag in tags {
            let valid = !tag.is_empty()
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'));
            if !valid {
                return Err(FilenameError::Tag {
                    filename: filename.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        Self::build(filename, name, version, DistKind::Wheel)
    }

    fn parse_sdist(filename: &str, stem: &str) -> Result<Self, FilenameError> {
        let (name, version) = stem
            .rsplit_once('-')
            .ok_or_else(|| FilenameError::SdistShape(filename.to_owned()))?;
        Self::build(filename, name, version, DistKind::Sdist)
    }

    fn build(
        filename: &str,
        name: &str,
        version: &str,
        kind: DistKind,
    ) -> Result<Self, FilenameError> {
        let project = ProjectName::new(name).map_err(|source| FilenameError::Name {
            filename: filename.to_owned(),
            source,
        })?;
        let version = Version::from_str(version).map_err(|_| FilenameError::Version {
            filename: filename.to_owned(),
            version: version.to_owned(),
        })?;
        Ok(Self {
            filename: filename.to_owned(),
            project,
            version,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_spellings_are_one_distribution() {
        let parse = |f: &str| DistFilename::parse(f).unwrap();
        assert!(parse("Demo_Pkg-1.0.tar.gz").same_distribution(&parse("demo.pkg-1.0.0.tar.gz")));
        assert!(
            parse("demo_pkg-1.0-py3-none-any.whl")
                .same_distribution(&parse("Demo_Pkg-1.0.0-PY3-none-any.whl"))
        );
        assert!(
            !parse("demo-1.0-py3-none-any.whl")
                .same_distribution(&parse("demo-1.0-cp312-cp312-linux_x86_64.whl"))
        );
        assert!(!parse("demo-1.0-py3-none-any.whl").same_distribution(&parse("demo-1.0.tar.gz")));
        assert!(
            !parse("demo-1.0-1-py3-none-any.whl")
                .same_distribution(&parse("demo-1.0-py3-none-any.whl"))
        );
        assert!(!parse("demo-1.0.tar.gz").same_distribution(&parse("demo-1.0.post1.tar.gz")));
    }

    fn err(name: &str) -> String {
        DistFilename::parse(name).unwrap_err().to_string()
    }

    #[test]
    fn parses_wheels() {
        let f = DistFilename::parse("My_Pkg-1.4.57-py3-none-any.whl").unwrap();
        assert_eq!(f.project.as_str(), "my-pkg");
        assert_eq!(f.version.to_string(), "1.4.57");
        assert_eq!(f.kind, DistKind::Wheel);

        let f = DistFilename::parse("numpy-2.0.0-1-cp312-cp312-manylinux_2_17_x86_64.whl").unwrap();
        assert_eq!(f.project.as_str(), "numpy");
        let f = DistFilename::parse("pkg-1.0.dev3+local.7-py2.py3-none-any.whl").unwrap();
        assert_eq!(f.version.to_string(), "1.0.dev3+local.7");
    }

    #[test]
    fn parses_sdists() {
        let f = DistFilename::parse("my_pkg-1.0.tar.gz").unwrap();
        assert_eq!((f.project.as_str(), f.kind), ("my-pkg", DistKind::Sdist));
        let f = DistFilename::parse("legacy-name-2.0rc1.zip").unwrap();
        assert_eq!(f.project.as_str(), "legacy-name");
        assert_eq!(f.version.to_string(), "2.0rc1");
    }

    #[test]
    fn refuses_bad_filenames() {
        insta::assert_snapshot!(err(""), @"filename must be between 1 and 255 characters");
        insta::assert_snapshot!(err("../evil-1.0.tar.gz"), @"filename `../evil-1.0.tar.gz` must be a plain file name: no path separators, `..`, or control characters");
        insta::assert_snapshot!(err("a\\b-1.0.tar.gz"), @r"filename `a\\b-1.0.tar.gz` must be a plain file name: no path separators, `..`, or control characters");
        insta::assert_snapshot!(err("pkg-1.0\0.tar.gz"), @r"filename `pkg-1.0\0.tar.gz` must be a plain file name: no path separators, `..`, or control characters");
        insta::assert_snapshot!(err("pkg-1.0.exe"), @"filename `pkg-1.0.exe` is neither a wheel (`.whl`) nor an sdist (`.tar.gz` or `.zip`)");
        insta::assert_snapshot!(err("pkg-1.0-py3.whl"), @"wheel filename `pkg-1.0-py3.whl` must be `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`");
        insta::assert_snapshot!(err("pkg-1.0-b1-py3-none-any.whl"), @"wheel filename `pkg-1.0-b1-py3-none-any.whl` has build tag `b1`, which must start with a digit");
        insta::assert_snapshot!(err("pkg-1.0-py3-none-a$y.whl"), @"wheel filename `pkg-1.0-py3-none-a$y.whl` has an invalid compatibility tag `a$y`");
        insta::assert_snapshot!(err("pkg-not.a.version-py3-none-any.whl"), @"filename `pkg-not.a.version-py3-none-any.whl` has version `not.a.version`, which is not a valid PEP 440 version");
        insta::assert_snapshot!(err("pkg.tar.gz"), @"sdist filename `pkg.tar.gz` must be `{name}-{version}.tar.gz`");
        insta::assert_snapshot!(err("p@g-1.0.tar.gz"), @"filename `p@g-1.0.tar.gz`: project name `p@g` may contain only ASCII letters, digits, `.`, `_` and `-`, and must start and end with a letter or digit");
    }
}
