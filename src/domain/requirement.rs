//! Runtime requirements of a wheel (`Requires-Dist`, PEP 508) and whether a set of
//! available versions satisfies one — what a promotion checks so production stays
//! installable.
//!
//! Traps:
//! - A requirement that only applies with an extra (`; extra == "test"`) is not needed to
//!   install the wheel; every other one is checked whatever its environment markers say
//!   (`python_version < "3.9"` included): production serves every environment, unless the
//!   policy names the Pythons it serves (`target-pythons`), when a requirement whose
//!   markers exclude all of them is not needed.
//! - Pre-releases satisfy a specifier only when it names a pre-release itself, as pip and
//!   uv decide by default.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{MarkerTree, MarkerTreeKind, MarkerValueVersion, Requirement, VersionOrUrl};

use super::ProjectName;

/// One runtime requirement of a wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The required project, normalized.
    pub project: ProjectName,
    /// The version specifiers (empty: any version).
    pub specifiers: VersionSpecifiers,
    /// A direct URL reference (`name @ https://…`), which no index can satisfy.
    pub direct_url: bool,
    /// The requirement as written.
    pub text: String,
}

impl Dependency {
    /// True when one of `versions` satisfies it.
    #[must_use]
    pub fn satisfied_by<'v>(&self, versions: impl IntoIterator<Item = &'v Version>) -> bool {
        if self.direct_url {
            return false;
        }
        let allows_pre = self.specifiers.iter().any(|s| s.version().any_prerelease());
        versions
            .into_iter()
            .any(|v| (allows_pre || !(v.any_prerelease())) && self.specifiers.contains(v))
    }
}

/// True when some environment running one of `pythons`, with no extras, could satisfy
/// `marker` (every other marker may be anything). `pep508_rs` keeps `python_version` as
/// `python_full_version` ranges, so both keys are read.
fn possible(marker: &MarkerTree, pythons: &[Version]) -> bool {
    match marker.kind() {
        MarkerTreeKind::True => true,
        MarkerTreeKind::False => false,
        MarkerTreeKind::Version(tree) => tree.edges().any(|(range, child)| {
            let python = matches!(
                tree.key(),
                MarkerValueVersion::PythonVersion | MarkerValueVersion::PythonFullVersion
            );
            (!python || pythons.iter().any(|v| range.contains(v))) && possible(&child, pythons)
        }),
        MarkerTreeKind::String(tree) => tree.children().any(|(_, child)| possible(&child, pythons)),
        MarkerTreeKind::In(tree) => tree.children().any(|(_, child)| possible(&child, pythons)),
        MarkerTreeKind::Contains(tree) => {
            tree.children().any(|(_, child)| possible(&child, pythons))
        }
        MarkerTreeKind::Extra(tree) => possible(&tree.edge(false), pythons),
    }
}

/// The requirements needed to install a wheel without extras on any of `pythons` (empty:
/// any environment), from its `Requires-Dist` lines; a line that is not PEP 508 is an
/// error naming it.
pub fn runtime_dependencies(
    requires_dist: &[String],
    pythons: &[Version],
) -> Result<Vec<Dependency>, String> {
    let mut out = Vec::new();
    for line in requires_dist {
        let requirement = Requirement::<pep508_rs::VerbatimUrl>::from_str(line)
            .map_err(|e| format!("`Requires-Dist: {line}` is not a PEP 508 requirement: {e}"))?;
        let needed = if pythons.is_empty() {
            requirement.marker.evaluate_extras(&[])
        } else {
            possible(&requirement.marker, pythons)
        };
        if !needed {
            continue;
        }
        let project = ProjectName::new(requirement.name.as_ref())
            .map_err(|e| format!("`Requires-Dist: {line}`: {e}"))?;
        let (specifiers, direct_url) = match requirement.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => (specifiers, false),
            Some(VersionOrUrl::Url(_)) => (VersionSpecifiers::empty(), true),
            None => (VersionSpecifiers::empty(), false),
        };
        out.push(Dependency {
            project,
            specifiers,
            direct_url,
            text: line.trim().to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(lines: &[&str]) -> Vec<Dependency> {
        deps_for(lines, &[])
    }

    fn deps_for(lines: &[&str], pythons: &[Version]) -> Vec<Dependency> {
        runtime_dependencies(
            &lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(),
            pythons,
        )
        .unwrap()
    }

    fn v(text: &str) -> Version {
        Version::from_str(text).unwrap()
    }

    #[test]
    fn extras_only_requirements_are_not_needed() {
        let found = deps(&[
            "acme-util>=1.0",
            "pytest; extra == \"test\"",
            "tomli; python_version < \"3.11\"",
        ]);
        let names: Vec<&str> = found.iter().map(|d| d.project.as_str()).collect();
        assert_eq!(names, ["acme-util", "tomli"]);
        // Production serving only 3.12 and 3.13 does not need tomli.
        let narrowed = deps_for(
            &[
                "acme-util>=1.0",
                "tomli; python_version < \"3.11\"",
                "exceptiongroup; python_full_version < \"3.11\" and extra == \"x\"",
                "typing-extensions; python_version >= \"3.12\" and sys_platform == \"win32\"",
            ],
            &[v("3.12"), v("3.13")],
        );
        let names: Vec<&str> = narrowed.iter().map(|d| d.project.as_str()).collect();
        assert_eq!(names, ["acme-util", "typing-extensions"]);
    }

    #[test]
    fn specifiers_and_prereleases_decide_like_pip() {
        let dep = &deps(&["Acme_Util>=1.0,<2"])[0];
        assert_eq!(dep.project.as_str(), "acme-util");
        assert!(dep.satisfied_by(&[v("0.9"), v("1.4")]));
        assert!(!dep.satisfied_by(&[v("0.9"), v("2.0")]));
        assert!(!dep.satisfied_by(&[v("1.5rc1")]));
        let pre = &deps(&["acme-util>=1.5rc1"])[0];
        assert!(pre.satisfied_by(&[v("1.5rc2")]));
        let any = &deps(&["acme-util"])[0];
        assert!(any.satisfied_by(&[v("0.1")]));
        assert!(!any.satisfied_by(&[]));
        let url = &deps(&["acme-util @ https://example.com/a.whl"])[0];
        assert!(url.direct_url && !url.satisfied_by(&[v("1.0")]));
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = runtime_dependencies(&["not a requirement ((".to_owned()], &[]).unwrap_err();
        assert!(err.contains("not a requirement (("), "{err}");
    }
}
