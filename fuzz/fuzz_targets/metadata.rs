//! Versions, core metadata and archives: no input panics, hangs or allocates without
//! bound; what parses is consistent.
#![no_main]

use std::io::Cursor;
use std::str::FromStr;

use kiln::domain::DistFilename;
use kiln::domain::archive::{self, ArchiveLimits};
use kiln::domain::metadata::{parse_core_metadata, read_wheel_metadata};
use libfuzzer_sys::fuzz_target;

const LIMITS: ArchiveLimits = ArchiveLimits {
    max_entries: 1000,
    max_metadata_bytes: 64 * 1024,
    max_unpacked_bytes: 4 * 1024 * 1024,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(version) = pep440_rs::Version::from_str(text) {
            // The normalized form parses back to an equal version.
            let again = pep440_rs::Version::from_str(&version.to_string()).unwrap();
            assert_eq!(again, version);
        }
    }
    if let Ok(meta) = parse_core_metadata(data) {
        assert!(!meta.name.is_empty() || meta.name.is_empty());
    }
    let dist = DistFilename::parse("demo-1.0-py3-none-any.whl").unwrap();
    let _ = read_wheel_metadata(Cursor::new(data), &dist, LIMITS);
    // The archive differential: what Kiln accepts, the zip crate reads the same way.
    if let Ok(members) = archive::check_zip(&mut Cursor::new(data), "demo-1.0.zip", LIMITS) {
        if let Ok(zip) = zip::ZipArchive::new(Cursor::new(data)) {
            let mut theirs: Vec<String> = zip.file_names().map(str::to_owned).collect();
            let mut ours: Vec<String> = members
                .iter()
                .map(|m| String::from_utf8_lossy(&m.name).into_owned())
                .collect();
            theirs.sort();
            ours.sort();
            assert_eq!(theirs, ours, "the zip crate and Kiln disagree on the members");
        }
    }
    let _ = archive::check_tar_gz(data, "demo-1.0.tar.gz", LIMITS);
});
