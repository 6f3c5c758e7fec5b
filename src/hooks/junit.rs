//! JUnit XML summaries: test, failure, error and skip counts from a report file.
//!
//! pytest, tox and most runners write `<testsuites>` with one or more `<testsuite>`
//! children, each carrying `tests`, `failures`, `errors` and `skipped` attributes; some
//! write a bare `<testsuite>`. Counts are summed over the outermost suites only, so a
//! `<testsuites>` total is not added to its children's. Nothing else is read.

use quick_xml::events::Event;

use crate::api::JunitCounts;

/// Sums the counts of the outermost `<testsuite>` elements (or takes `<testsuites>`'
/// own totals when it has them).
pub fn parse(xml: &[u8]) -> Result<JunitCounts, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut depth_in_suite = 0usize;
    let mut root_totals: Option<JunitCounts> = None;
    let mut summed = JunitCounts::default();
    let mut saw_suite = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not valid JUnit XML: {e}"))?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(event, Event::Empty(_));
                match e.name().as_ref() {
                    b"testsuites" => {
                        let counts = counts_of(e)?;
                        if counts.tests > 0 {
                            root_totals = Some(counts);
                        }
                    }
                    b"testsuite" => {
                        if depth_in_suite == 0 {
                            let counts = counts_of(e)?;
                            summed.tests += counts.tests;
                            summed.failures += counts.failures;
                            summed.errors += counts.errors;
                            summed.skipped += counts.skipped;
                            saw_suite = true;
                        }
                        if !empty {
                            depth_in_suite += 1;
                        }
                    }
                    _ => {}
                }
            }
            Event::End(e) if e.name().as_ref() == b"testsuite" => {
                depth_in_suite = depth_in_suite.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    match (root_totals, saw_suite) {
        (Some(totals), _) => Ok(totals),
        (None, true) => Ok(summed),
        (None, false) => Err("no <testsuite> or <testsuites> element found".into()),
    }
}

fn counts_of(element: &quick_xml::events::BytesStart<'_>) -> Result<JunitCounts, String> {
    let mut counts = JunitCounts::default();
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|e| format!("not valid JUnit XML: {e}"))?;
        let slot = match attribute.key.as_ref() {
            b"tests" => &mut counts.tests,
            b"failures" => &mut counts.failures,
            b"errors" => &mut counts.errors,
            b"skipped" | b"skips" => &mut counts.skipped,
            _ => continue,
        };
        let text = String::from_utf8_lossy(&attribute.value).into_owned();
        *slot = text.trim().parse().map_err(|_| {
            format!(
                "attribute `{}` is `{text}`, not a count",
                String::from_utf8_lossy(attribute.key.as_ref())
            )
        })?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_style_report() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="10" time="0.1"><testcase classname="t" name="a"/></testsuite></testsuites>"#;
        assert_eq!(
            parse(xml).unwrap(),
            JunitCounts {
                tests: 10,
                failures: 2,
                errors: 1,
                skipped: 3
            }
        );
    }

    #[test]
    fn root_totals_are_not_double_counted_and_suites_sum() {
        let totals = br#"<testsuites tests="5" failures="1"><testsuite tests="2" failures="1"/><testsuite tests="3"/></testsuites>"#;
        assert_eq!(parse(totals).unwrap().tests, 5);
        let sum = br#"<testsuites><testsuite tests="2" failures="1"/><testsuite tests="3"><testsuite tests="99"/></testsuite></testsuites>"#;
        assert_eq!(
            parse(sum).unwrap(),
            JunitCounts {
                tests: 5,
                failures: 1,
                errors: 0,
                skipped: 0
            }
        );
        let bare = br#"<testsuite tests="4" skipped="1"></testsuite>"#;
        assert_eq!(parse(bare).unwrap().skipped, 1);
    }

    #[test]
    fn rejects_what_is_not_junit() {
        assert!(
            parse(b"<html></html>")
                .unwrap_err()
                .contains("no <testsuite>")
        );
        assert!(
            parse(br#"<testsuite tests="many"/>"#)
                .unwrap_err()
                .contains("not a count")
        );
        assert!(parse(b"<testsuite tests=").is_err());
    }
}
