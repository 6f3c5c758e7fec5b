//! Reading an upstream index's project page: PEP 691 JSON or PEP 503 HTML.
//!
//! The upstream is trusted to say which files exist and what their sha256 is, and nothing
//! more: every entry is checked on its own and dropped (counted in
//! [`UpstreamPage::skipped`]) when its filename is not a wheel or sdist *of the project
//! asked about*, when it carries no usable sha256 (the hash is how Kiln verifies, stores
//! and names the bytes), or when its URL is not `http(s)`. A page that is not a simple
//! page at all is refused as a whole ([`PageError`]), so garbage is never cached.
//!
//! Traps:
//! - Filenames come from the URL's last path segment (percent-decoded), as pip reads
//!   them; the anchor text is only a fallback.
//! - `core-metadata: true` without a hash cannot be verified, so it counts as absent.
//! - HTML attribute values arrive entity-decoded from the tokenizer (`&gt;=3.8`).

use std::collections::HashSet;

use serde::Deserialize;

use super::{DistFilename, DistKind, ProjectName};

/// One file an upstream page lists, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFile {
    /// The filename.
    pub filename: String,
    /// Absolute URL of the bytes.
    pub url: String,
    /// The normalized version from the filename.
    pub version: String,
    /// Wheel or sdist.
    pub kind: DistKind,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes, when the page says (JSON only).
    pub size: Option<u64>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
    /// SHA-256 of the PEP 658 core metadata file, when upstream serves one.
    pub metadata_sha256: Option<String>,
    /// `Some(reason)` when yanked (the reason may be empty).
    pub yanked: Option<String>,
    /// PEP 700 upload time, when the page says.
    pub upload_time: Option<String>,
}

/// A project page, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamPage {
    /// The usable files, first occurrence of each filename.
    pub files: Vec<UpstreamFile>,
    /// Entries that were dropped (other projects, no sha256, unknown file types, …).
    pub skipped: usize,
}

/// Why a page was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// JSON that is not a PEP 691 project page.
    #[error("malformed PEP 691 JSON: {0}")]
    Json(String),
    /// A PEP 691 major version this server does not speak.
    #[error("unsupported simple API version `{0}` (Kiln reads 1.x)")]
    ApiVersion(String),
    /// Not an HTML document.
    #[error("malformed HTML page: {0}")]
    Html(String),
}

#[derive(Deserialize)]
struct JsonPage {
    meta: JsonMeta,
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonMeta {
    #[serde(rename = "api-version")]
    api_version: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonBoolOrHashes {
    Hashes(std::collections::HashMap<String, String>),
    /// `true`/`false`: nothing to verify with.
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonYanked {
    Flag(bool),
    Reason(String),
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    hashes: std::collections::HashMap<String, String>,
    #[serde(rename = "requires-python", default)]
    requires_python: Option<String>,
    #[serde(rename = "core-metadata", default)]
    core_metadata: Option<JsonBoolOrHashes>,
    #[serde(rename = "dist-info-metadata", default)]
    dist_info_metadata: Option<JsonBoolOrHashes>,
    #[serde(default)]
    yanked: Option<JsonYanked>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "upload-time", default)]
    upload_time: Option<String>,
}

/// An entry before it is checked.
struct RawEntry {
    href: String,
    text: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    requires_python: Option<String>,
    metadata_sha256: Option<String>,
    yanked: Option<String>,
    upload_time: Option<String>,
}

/// Where and how a page's JSON is wrong, without quoting it: serde's own messages quote
/// the offending values, and an upstream's body must never reach a client.
fn json_fault(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "not the shape of a PEP 691 project page",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Parses a PEP 691 JSON project page fetched from `page_url`.
pub fn parse_json(
    body: &[u8],
    page_url: &url::Url,
    project: &ProjectName,
) -> Result<UpstreamPage, PageError> {
    let page: JsonPage =
        serde_json::from_slice(body).map_err(|e| PageError::Json(json_fault(&e)))?;
    if !page.meta.api_version.starts_with("1.") && page.meta.api_version != "1" {
        // Shown to clients: a version number, or nothing of the upstream's text.
        let version = &page.meta.api_version;
        let looks_like_one = version.len() <= 16
            && !version.is_empty()
            && version.chars().all(|c| c.is_ascii_digit() || c == '.');
        return Err(PageError::ApiVersion(if looks_like_one {
            version.clone()
        } else {
            "(not a version number)".to_owned()
        }));
    }
    let entries = page.files.into_iter().map(|f| RawEntry {
        sha256: f.hashes.get("sha256").cloned(),
        metadata_sha256: f
            .core_metadata
            .or(f.dist_info_metadata)
            .and_then(|m| match m {
                JsonBoolOrHashes::Hashes(h) => h.get("sha256").cloned(),
                JsonBoolOrHashes::Other(_) => None,
            }),
        yanked: match f.yanked {
            Some(JsonYanked::Flag(true)) => Some(String::new()),
            Some(JsonYanked::Reason(reason)) => Some(reason),
            Some(JsonYanked::Flag(false)) | None => None,
        },
        href: f.url,
        text: Some(f.filename),
        size: f.size,
        requires_python: f.requires_python.filter(|r| !r.trim().is_empty()),
        upload_time: f.upload_time,
    });
    Ok(check_entries(entries, page_url, project))
}

/// Parses a PEP 503 HTML project page fetched from `page_url`.
pub fn parse_html(
    body: &[u8],
    page_url: &url::Url,
    project: &ProjectName,
) -> Result<UpstreamPage, PageError> {
    use html5gum::{Token, Tokenizer};
    let text =
        std::str::from_utf8(body).map_err(|e| PageError::Html(format!("not UTF-8 text ({e})")))?;
    let mut base = page_url.clone();
    let mut entries = Vec::new();
    let mut open: Option<RawEntry> = None;
    let mut saw_tag = false;
    let attribute = |tag: &html5gum::StartTag<()>, name: &str| {
        tag.attributes
            .get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    for token in Tokenizer::new(text) {
        let Ok(token) = token;
        match token {
            Token::StartTag(tag) => {
                saw_tag = true;
                match tag.name.as_slice() {
                    b"base" => {
                        if let Some(joined) =
                            attribute(&tag, "href").and_then(|href| page_url.join(&href).ok())
                        {
                            base = joined;
                        }
                    }
                    b"a" => {
                        if let Some(done) = open.take() {
                            entries.push(done);
                        }
                        let Some(href) = attribute(&tag, "href") else {
                            continue;
                        };
                        let metadata = attribute(&tag, "data-core-metadata")
                            .or_else(|| attribute(&tag, "data-dist-info-metadata"));
                        open = Some(RawEntry {
                            sha256: None,
                            size: None,
                            requires_python: attribute(&tag, "data-requires-python")
                                .filter(|r| !r.trim().is_empty()),
                            metadata_sha256: metadata
                                .and_then(|m| m.strip_prefix("sha256=").map(str::to_owned)),
                            yanked: attribute(&tag, "data-yanked"),
                            upload_time: None,
                            text: None,
                            href,
                        });
                    }
                    _ => {}
                }
            }
            Token::String(chunk) => {
                if let Some(entry) = open.as_mut() {
                    entry
                        .text
                        .get_or_insert_with(String::new)
                        .push_str(&String::from_utf8_lossy(&chunk));
                }
            }
            Token::EndTag(tag) if tag.name.as_slice() == b"a" => {
                if let Some(done) = open.take() {
                    entries.push(done);
                }
            }
            _ => {}
        }
    }
    if let Some(done) = open.take() {
        entries.push(done);
    }
    if !saw_tag {
        return Err(PageError::Html(
            "no HTML tags at all; this is not a simple-API page".into(),
        ));
    }
    for entry in &mut entries {
        // The hash travels in the URL fragment: `…whl#sha256=<hex>`.
        if let Ok(url) = base.join(&entry.href) {
            entry.sha256 = url.fragment().and_then(|f| {
                f.split('&')
                    .find_map(|kv| kv.strip_prefix("sha256=").map(str::to_owned))
            });
        }
    }
    Ok(check_entries(entries, &base, project))
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_entries(
    entries: impl IntoIterator<Item = RawEntry>,
    base: &url::Url,
    project: &ProjectName,
) -> UpstreamPage {
    let mut page = UpstreamPage::default();
    let mut seen = HashSet::new();
    for entry in entries {
        match check_entry(entry, base, project) {
            Some(file) if seen.insert(file.filename.clone()) => page.files.push(file),
            _ => page.skipped += 1,
        }
    }
    page
}

fn check_entry(entry: RawEntry, base: &url::Url, project: &ProjectName) -> Option<UpstreamFile> {
    let mut url = base.join(&entry.href).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    let from_url = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .map(|last| {
            percent_encoding::percent_decode_str(last)
                .decode_utf8_lossy()
                .into_owned()
        });
    let dist = from_url
        .as_deref()
        .and_then(|name| DistFilename::parse(name).ok())
        .or_else(|| {
            entry
                .text
                .as_deref()
                .and_then(|t| DistFilename::parse(t.trim()).ok())
        })?;
    if &dist.project != project {
        return None;
    }
    let sha256 = entry.sha256.filter(|h| is_sha256(h))?.to_ascii_lowercase();
    Some(UpstreamFile {
        filename: dist.filename,
        url: url.to_string(),
        version: dist.version.to_string(),
        kind: dist.kind,
        sha256,
        size: entry.size,
        requires_python: entry.requires_python,
        metadata_sha256: entry
            .metadata_sha256
            .filter(|h| is_sha256(h))
            .map(|h| h.to_ascii_lowercase()),
        yanked: entry.yanked,
        upload_time: entry.upload_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const META: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn page_url() -> url::Url {
        "https://pypi.example/simple/demo-pkg/".parse().unwrap()
    }

    fn demo() -> ProjectName {
        ProjectName::new("demo-pkg").unwrap()
    }

    #[test]
    fn reads_pep_691_json() {
        let body = serde_json::json!({
            "meta": {"api-version": "1.1"},
            "name": "demo-pkg",
            "files": [
                {"filename": "demo_pkg-1.0-py3-none-any.whl",
                 "url": "https://files.example/demo_pkg-1.0-py3-none-any.whl",
                 "hashes": {"sha256": SHA}, "requires-python": ">=3.8",
                 "core-metadata": {"sha256": META}, "yanked": "broken", "size": 42,
                 "upload-time": "2024-01-01T00:00:00.000000Z"},
                {"filename": "demo-pkg-1.0.tar.gz", "url": "../../packages/demo-pkg-1.0.tar.gz",
                 "hashes": {"sha256": SHA.to_uppercase()}, "core-metadata": true},
                {"filename": "other-1.0.tar.gz", "url": "other-1.0.tar.gz", "hashes": {"sha256": SHA}},
                {"filename": "demo-pkg-2.0.tar.gz", "url": "demo-pkg-2.0.tar.gz", "hashes": {"md5": "x"}},
                {"filename": "demo-pkg-1.0.exe", "url": "demo-pkg-1.0.exe", "hashes": {"sha256": SHA}}
            ]
        });
        let page = parse_json(body.to_string().as_bytes(), &page_url(), &demo()).unwrap();
        assert_eq!(page.skipped, 3, "other project, md5 only, .exe");
        let wheel = &page.files[0];
        assert_eq!(wheel.filename, "demo_pkg-1.0-py3-none-any.whl");
        assert_eq!(wheel.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(wheel.metadata_sha256.as_deref(), Some(META));
        assert_eq!(wheel.yanked.as_deref(), Some("broken"));
        assert_eq!(wheel.size, Some(42));
        let sdist = &page.files[1];
        assert_eq!(
            sdist.url,
            "https://pypi.example/packages/demo-pkg-1.0.tar.gz"
        );
        assert_eq!(sdist.sha256, SHA, "hashes are lowercased");
        assert_eq!(
            sdist.metadata_sha256, None,
            "`true` without a hash is unverifiable"
        );
        assert_eq!(sdist.kind, DistKind::Sdist);
    }

    #[test]
    fn refuses_json_garbage() {
        let project = demo();
        assert!(matches!(
            parse_json(b"{\"meta\": 42}", &page_url(), &project),
            Err(PageError::Json(_))
        ));
        assert!(matches!(
            parse_json(b"<html>", &page_url(), &project),
            Err(PageError::Json(_))
        ));
        assert!(matches!(
            parse_json(
                br#"{"meta": {"api-version": "2.0"}, "files": []}"#,
                &page_url(),
                &project
            ),
            Err(PageError::ApiVersion(v)) if v == "2.0"
        ));
    }

    #[test]
    fn json_faults_never_quote_the_upstream() {
        let project = demo();
        for body in [
            &br#"{"meta": {"api-version": "1.1"}, "files": "internal-secret-0xdeadbeef"}"#[..],
            br#"{"meta": {"api-version": "internal-secret-0xdeadbeef"}, "files": []}"#,
            br#"{"meta": {"api-version": "1.1"}, "files": [{"filename": {"internal-secret-0xdeadbeef": 1}}]}"#,
        ] {
            let said = parse_json(body, &page_url(), &project).unwrap_err().to_string();
            assert!(!said.contains("internal"), "{said}");
        }
        let said = parse_json(br#"{"meta": 1}"#, &page_url(), &project)
            .unwrap_err()
            .to_string();
        assert!(said.contains("line 1, column"), "{said}");
    }

    #[test]
    fn reads_pep_503_html() {
        let html = format!(
            r#"<!DOCTYPE html><html><body>
            <a href="https://files.example/demo_pkg-1.0-py3-none-any.whl#sha256={SHA}" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256={META}">demo_pkg-1.0-py3-none-any.whl</a><br/>
            <a href="../../packages/demo_pkg-0.9.tar.gz#md5=abc&amp;sha256={SHA}" data-yanked="">demo_pkg-0.9.tar.gz</a>
            <a href="demo_pkg-0.8.tar.gz">no hash</a>
            <a href="javascript:alert(1)#sha256={SHA}">demo_pkg-0.7.tar.gz</a>
            <a>no href</a>
            </body></html>"#
        );
        let page = parse_html(html.as_bytes(), &page_url(), &demo()).unwrap();
        assert_eq!(page.files.len(), 2, "{page:?}");
        assert_eq!(page.skipped, 2);
        let wheel = &page.files[0];
        assert_eq!(wheel.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(wheel.metadata_sha256.as_deref(), Some(META));
        assert_eq!(
            wheel.url,
            "https://files.example/demo_pkg-1.0-py3-none-any.whl"
        );
        let sdist = &page.files[1];
        assert_eq!(sdist.yanked.as_deref(), Some(""));
        assert_eq!(
            sdist.url,
            "https://pypi.example/packages/demo_pkg-0.9.tar.gz"
        );
        assert_eq!(sdist.version, "0.9");
    }

    #[test]
    fn honours_base_href_and_percent_encoding() {
        let html = format!(
            r#"<html><head><base href="https://mirror.example/files/"></head>
            <a href="demo_pkg-1.0%2Blocal-py3-none-any.whl#sha256={SHA}">x</a></html>"#
        );
        let page = parse_html(html.as_bytes(), &page_url(), &demo()).unwrap();
        assert_eq!(
            page.files[0].filename,
            "demo_pkg-1.0+local-py3-none-any.whl"
        );
        assert!(
            page.files[0]
                .url
                .starts_with("https://mirror.example/files/")
        );
    }

    #[test]
    fn refuses_html_garbage() {
        let project = demo();
        assert!(matches!(
            parse_html(b"\xff\xfe\x00binary", &page_url(), &project),
            Err(PageError::Html(_))
        ));
        assert!(matches!(
            parse_html(b"Service Unavailable", &page_url(), &project),
            Err(PageError::Html(_))
        ));
        // An empty but well-formed page is a project with no files.
        let empty = parse_html(b"<html><body></body></html>", &page_url(), &project).unwrap();
        assert!(empty.files.is_empty());
    }
}
