//! Upload filenames: parsing never panics, and what parses is stable and self-consistent.
#![no_main]

use kiln::domain::{DistFilename, ProjectName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ProjectName::new(text);
    let _ = text.parse::<kiln::domain::Scope>();
    let _ = text.parse::<kiln::domain::IndexName>();
    let _ = kiln::domain::archive::unsafe_path(text);
    if let Ok(dist) = DistFilename::parse(text) {
        assert_eq!(dist.filename, text);
        assert!(!text.contains(['/', '\\']) && !text.contains(".."));
        // The normalized project name is a fixed point.
        assert_eq!(
            ProjectName::new(dist.project.as_str()).unwrap(),
            dist.project
        );
        assert!(dist.same_distribution(&dist));
        let again = DistFilename::parse(text).unwrap();
        assert_eq!(again, dist);
    }
});
