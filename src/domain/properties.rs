//! Property tests of the parsers that read untrusted input: whatever the bytes, they
//! answer instead of panicking, and what they accept is consistent. The same parsers
//! have cargo-fuzz targets in `fuzz/` (see docs/security.md).

use std::io::Cursor;

use proptest::prelude::*;

use super::archive::{self, ArchiveLimits, link_stays_inside, unsafe_path};
use super::metadata::{parse_core_metadata, read_wheel_metadata};
use super::{DistFilename, DistKind, IndexName, ProjectName, Scope};

fn name() -> impl Strategy<Value = String> {
    // Runs of punctuation are legal project names, but `..` is never a legal filename.
    "[A-Za-z0-9]{1,8}([._-][A-Za-z0-9]{1,8}){0,3}"
}

fn version() -> impl Strategy<Value = String> {
    "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}((a|b|rc)[0-9]{1,2}|\\.post[0-9]|\\.dev[0-9])?"
}

/// Respells a project name the ways users and tools do: case, and `-` `_` `.` swapped.
fn respell(name: &str, seed: u8) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            '-' | '_' | '.' => ['-', '_', '.'][(usize::from(seed) + i) % 3],
            c if (usize::from(seed) + i) % 2 == 0 => c.to_ascii_uppercase(),
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn filenames_never_panic_and_accepted_ones_are_plain(text in "\\PC{0,80}") {
        if let Ok(dist) = DistFilename::parse(&text) {
            prop_assert_eq!(&dist.filename, &text);
            prop_assert!(!text.contains(['/', '\\']) && !text.contains(".."));
            prop_assert!(!text.chars().any(char::is_control));
        }
    }

    #[test]
    fn generated_wheels_and_sdists_parse_to_their_parts(name in name(), version in version()) {
        let project = ProjectName::new(&name).unwrap();
        let escaped = name.replace(['-', '.'], "_");
        let wheel = DistFilename::parse(&format!("{escaped}-{version}-py3-none-any.whl")).unwrap();
        prop_assert_eq!(&wheel.project, &project);
        prop_assert_eq!(wheel.kind, DistKind::Wheel);
        prop_assert_eq!(wheel.version.to_string(), version.parse::<pep440_rs::Version>().unwrap().to_string());
        let sdist = DistFilename::parse(&format!("{name}-{version}.tar.gz")).unwrap();
        prop_assert_eq!(&sdist.project, &project);
        prop_assert!(!sdist.same_distribution(&wheel));
    }

    #[test]
    fn respelled_names_are_the_same_distribution(name in name(), version in version(), seed in any::<u8>()) {
        let a = DistFilename::parse(&format!("{name}-{version}.tar.gz")).unwrap();
        let other = respell(&name, seed);
        if let Ok(b) = DistFilename::parse(&format!("{other}-{version}.tar.gz")) {
            prop_assert!(a.same_distribution(&b), "{} vs {}", a.filename, b.filename);
        }
    }

    #[test]
    fn project_names_normalize_to_a_fixed_point(text in "\\PC{0,40}") {
        if let Ok(project) = ProjectName::new(&text) {
            prop_assert_eq!(ProjectName::new(project.as_str()).unwrap(), project);
        }
    }

    #[test]
    fn metadata_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_core_metadata(&bytes);
    }

    #[test]
    fn metadata_reads_back_what_was_written(name in name(), version in version(), extra in "[A-Za-z]{1,10}: [ -~]{0,30}") {
        let text = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\n\nbody\nName: other\n");
        let parsed = parse_core_metadata(text.as_bytes()).unwrap();
        if !extra.starts_with("Name:") && !extra.starts_with("Version:") {
            prop_assert_eq!(parsed.name, name);
            prop_assert_eq!(parsed.version, version);
        }
    }

    #[test]
    fn archives_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = ArchiveLimits { max_entries: 50, max_metadata_bytes: 1024, max_unpacked_bytes: 64 * 1024 };
        let dist = DistFilename::parse("demo-1.0-py3-none-any.whl").unwrap();
        let _ = read_wheel_metadata(Cursor::new(&bytes), &dist, limits);
        let _ = archive::check_zip_sdist(Cursor::new(&bytes), "demo-1.0.zip", limits);
        let _ = archive::check_tar_gz(bytes.as_slice(), "demo-1.0.tar.gz", limits);
    }

    /// The archive differential: whatever an archive's layout (prefix, gaps, comment,
    /// shared headers, a lying count, repeated names) or however its bytes are damaged,
    /// when Kiln accepts it, the zip crate lists exactly the members Kiln checked.
    #[test]
    fn accepted_archives_show_every_reader_the_same_members(
        names in proptest::collection::vec("[ab]{1,2}(/[ab]{1,2}){0,1}", 0..6),
        prefix in prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 1..8)],
        gap in prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 1..8)],
        comment in proptest::collection::vec(any::<u8>(), 0..24),
        share_first_header in any::<bool>(),
        declared in proptest::option::of(0u16..8),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
    ) {
        use super::zipwalk::tests::{Layout, Raw, raw_zip};
        let members: Vec<Raw<'_>> = names.iter().map(|n| Raw::new(n, n.as_bytes())).collect();
        let layout = Layout { prefix: &prefix, gap: &gap, comment: &comment, share_first_header, declared };
        let mut bytes = raw_zip(&members, &layout);
        for (at, value) in flips {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = value;
            }
        }
        let limits = ArchiveLimits { max_entries: 50, max_metadata_bytes: 1024, max_unpacked_bytes: 64 * 1024 };
        if let Ok(walked) = archive::check_zip(&mut Cursor::new(&bytes), "demo-1.0.zip", limits) {
            let archive = zip::ZipArchive::new(Cursor::new(&bytes));
            if let Ok(archive) = archive {
                let mut theirs: Vec<&str> = archive.file_names().collect();
                let mut ours: Vec<String> = walked.iter().map(|m| String::from_utf8_lossy(&m.name).into_owned()).collect();
                theirs.sort_unstable();
                ours.sort();
                prop_assert_eq!(theirs, ours);
            }
        }
    }

    #[test]
    fn climbing_paths_are_always_unsafe(parts in proptest::collection::vec("[a-z.]{1,5}", 0..4), at in 0usize..4) {
        let mut parts = parts;
        let at = at.min(parts.len());
        parts.insert(at, "..".into());
        let path = parts.join("/");
        prop_assert!(unsafe_path(&path).is_some(), "{}", path);
        let up = format!("../{path}");
        let absolute = format!("/{path}");
        prop_assert!(!link_stays_inside("x", &up));
        prop_assert!(!link_stays_inside("a/b", &absolute));
    }

    #[test]
    fn scopes_round_trip(permission in "(read|upload|report|promote|admin)", ns in "[a-z0-9][a-z0-9._-]{0,10}", name in "[a-z0-9][a-z0-9._-]{0,10}", form in 0u8..3) {
        let pattern = match form {
            0 => "*".to_owned(),
            1 => format!("{ns}/*"),
            _ => format!("{ns}/{name}"),
        };
        let text = format!("{permission}:{pattern}");
        let scope: Scope = text.parse().unwrap();
        prop_assert_eq!(scope.to_string(), text);
        if form == 2 {
            let index: IndexName = pattern.parse().unwrap();
            prop_assert!(scope.allows(scope.permission, &index));
        }
    }

    #[test]
    fn scope_and_index_parsing_never_panic(text in "\\PC{0,60}") {
        let _ = text.parse::<Scope>();
        let _ = text.parse::<IndexName>();
    }
}
