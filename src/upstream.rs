//! Talking to a mirror's upstream index over HTTP: project pages (PEP 691 JSON preferred,
//! HTML accepted) and file downloads.
//!
//! Where a mirror may connect (an upstream is untrusted: its pages choose the URLs):
//! only to its upstream's origin and the file origins its settings allow
//! ([`MirrorSettings::allowed_origins`]), every redirect hop checked again (redirects are
//! followed here, not by reqwest); and never to a loopback, private, link-local or other
//! non-public address unless the server's admin configured that very host — checked on
//! IP literals before the request and on every DNS answer at connect time
//! ([`GuardedResolver`]), so a name that later resolves elsewhere gains nothing.
//!
//! Traps:
//! - Credentials go only to the upstream's own origin. PyPI-like indexes serve files from
//!   another host (a CDN); sending them the index password would leak it. (reqwest drops
//!   `Authorization` on a cross-origin redirect by itself.)
//! - A page has a total deadline; a file download only an idle deadline per chunk, since a
//!   large wheel on a slow link legitimately takes minutes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::domain::upstream_page::{self, PageError, UpstreamPage};
use crate::domain::{MirrorSettings, ProjectName};

/// Largest project page read from an upstream (PyPI's largest JSON pages are tens of MB).
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// Why the upstream gave nothing usable. Every message names the upstream URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, DNS, TLS, a reset or a timeout.
    #[error("upstream `{url}` is unreachable: {cause}")]
    Unreachable {
        /// What was asked for.
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// An HTTP status that is neither success nor "no such project".
    #[error("upstream `{url}` answered HTTP {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// The status.
        status: u16,
    },
    /// Content that is not what was asked for; refused and not cached.
    #[error("upstream `{url}` sent garbage: {why}")]
    Garbage {
        /// What was asked for.
        url: String,
        /// What was wrong with it.
        why: String,
    },
    /// This server failed to keep what the upstream sent (disk, database).
    #[error("caching upstream data failed: {0}")]
    Local(String),
    /// A URL the mirror will not connect to (another origin, a private address, too
    /// many redirects).
    #[error("upstream link `{url}` was not followed: {why}")]
    Refused {
        /// What the upstream pointed at.
        url: String,
        /// Why not.
        why: String,
    },
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// True for addresses a mirror may reach without its admin having configured the host:
/// not loopback, private, link-local, shared (CGNAT), unspecified, multicast, broadcast
/// or documentation ranges, nor IPv6 unique-local or link-local (nor IPv4-mapped ones).
#[must_use]
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A DNS resolver that drops non-public addresses unless the host was configured by the
/// server's admin (a mirror's upstream or an explicit file origin), so a hostile upstream
/// cannot reach the network Kiln runs in through a name it controls.
#[derive(Debug, Default, Clone)]
pub struct GuardedResolver {
    trusted: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
}

impl GuardedResolver {
    fn trust(&self, host: &str) {
        let host = host.to_ascii_lowercase();
        let known = self
            .trusted
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&host);
        if !known {
            self.trusted
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(host);
        }
    }

    fn trusts(&self, host: &str) -> bool {
        self.trusted
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&host.to_ascii_lowercase())
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let trusted = self.trusts(&host);
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<std::net::SocketAddr> = found
                .into_iter()
                .filter(|a| trusted || is_public(a.ip()))
                .collect();
            if usable.is_empty() {
                return Err(format!(
                    "`{host}` resolves only to loopback, private or link-local addresses, which a mirror connects to only when its admin configured that host"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(usable.into_iter());
            Ok(addrs)
        })
    }
}

/// The answer to a page request.
#[derive(Debug)]
pub enum PageFetch {
    /// A checked page, with the upstream's `ETag` for the next conditional request.
    Page {
        /// The files.
        page: UpstreamPage,
        /// The validator to send next time.
        etag: Option<String>,
    },
    /// The cached copy is still current (HTTP 304).
    NotModified,
    /// The upstream has no such project (404/410).
    NotFound,
}

/// A shared HTTP client for every upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    timeout: Duration,
    resolver: GuardedResolver,
}

impl Upstream {
    /// A client whose page requests give up after `timeout`, and whose file downloads give
    /// up when no byte arrives for `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let resolver = GuardedResolver::default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .read_timeout(timeout)
            // Every hop is checked in `send`: reqwest would follow anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(resolver.clone()))
            .build()?;
        Ok(Self {
            http,
            timeout,
            resolver,
        })
    }

    /// Refuses a URL the mirror may not connect to (see the module documentation).
    fn check_target(&self, mirror: &MirrorSettings, url: &url::Url) -> Result<(), UpstreamError> {
        let refused = |why: String| UpstreamError::Refused {
            url: url.to_string(),
            why,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused("only http and https are followed".into()));
        }
        let origin = url.origin().ascii_serialization();
        let Some((_, configured)) = mirror
            .allowed_origins()
            .into_iter()
            .find(|(allowed, _)| *allowed == origin)
        else {
            return Err(refused(format!(
                "`{origin}` is neither this mirror's upstream nor one of its allowed file origins (the server's admin can add it with `kiln index modify --mirror-file-origin`)"
            )));
        };
        let host = url.host_str().unwrap_or_default();
        if configured {
            self.resolver.trust(host);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !is_public(ip)) && !configured {
            return Err(refused(format!(
                "`{host}` is a loopback, private or link-local address"
            )));
        }
        Ok(())
    }

    /// Sends the request `make` builds for `url`, following redirects by hand so that
    /// every hop passes [`Self::check_target`] (and credentials go only to the
    /// upstream's origin).
    async fn send(
        &self,
        mirror: &MirrorSettings,
        url: url::Url,
        make: impl Fn(&url::Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut current = url;
        for _ in 0..=MAX_REDIRECTS {
            self.check_target(mirror, &current)?;
            let request = Self::authorized(mirror, &current, make(&current));
            let response = request
                .send()
                .await
                .map_err(|e| unreachable(current.as_str(), &e))?;
            let moved = matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            let location = header_text(response.headers(), &header::LOCATION);
            match (moved, location) {
                (true, Some(location)) => {
                    current = current
                        .join(&location)
                        .map_err(|e| UpstreamError::Refused {
                            url: current.to_string(),
                            why: format!("its redirect is not a URL: {e}"),
                        })?;
                }
                _ => return Ok(response),
            }
        }
        Err(UpstreamError::Refused {
            url: current.to_string(),
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Fetches and checks `project`'s page; with `etag`, a conditional request.
    pub async fn fetch_page(
        &self,
        mirror: &MirrorSettings,
        project: &ProjectName,
        etag: Option<&str>,
    ) -> Result<PageFetch, UpstreamError> {
        let fetched = self.fetch_page_once(mirror, project, etag).await;
        count_upstream(match &fetched {
            Ok(PageFetch::Page { .. }) => "ok",
            Ok(PageFetch::NotModified) => "not-modified",
            Ok(PageFetch::NotFound) => "not-found",
            Err(_) => "error",
        });
        fetched
    }

    async fn fetch_page_once(
        &self,
        mirror: &MirrorSettings,
        project: &ProjectName,
        etag: Option<&str>,
    ) -> Result<PageFetch, UpstreamError> {
        let page_url = format!("{}{project}/", mirror.url);
        let parsed = url::Url::parse(&page_url).map_err(|e| UpstreamError::Garbage {
            url: page_url.clone(),
            why: format!("the page URL is invalid: {e}"),
        })?;
        let response = self
            .send(mirror, parsed, |url| {
                let request = self
                    .http
                    .get(url.clone())
                    .header(header::ACCEPT, PAGE_ACCEPT)
                    .timeout(self.timeout);
                match etag {
                    Some(etag) => request.header(header::IF_NONE_MATCH, etag),
                    None => request,
                }
            })
            .await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(PageFetch::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(PageFetch::NotFound),
            status if !status.is_success() => {
                return Err(UpstreamError::Status {
                    url: page_url,
                    status: status.as_u16(),
                });
            }
            _ => {}
        }
        // pip and PyPI redirect to the normalized name; parse relative to where we landed.
        let landed = response.url().clone();
        let etag = header_text(response.headers(), &header::ETAG);
        let content_type = header_text(response.headers(), &header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = read_limited(response, MAX_PAGE_BYTES, &page_url).await?;
        let garbage = |e: PageError| UpstreamError::Garbage {
            url: page_url.clone(),
            why: e.to_string(),
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        let page = match media {
            "application/vnd.pypi.simple.v1+json"
            | "application/vnd.pypi.simple.latest+json"
            | "application/json" => upstream_page::parse_json(&body, &landed, project),
            "text/html"
            | "application/vnd.pypi.simple.v1+html"
            | "application/vnd.pypi.simple.latest+html"
            | "application/xhtml+xml" => upstream_page::parse_html(&body, &landed, project),
            other => {
                return Err(UpstreamError::Garbage {
                    url: page_url,
                    why: format!(
                        "content type `{other}` is not a simple-API page (expected PEP 691 JSON or HTML)"
                    ),
                });
            }
        }
        .map_err(garbage)?;
        Ok(PageFetch::Page { page, etag })
    }

    /// Starts downloading `url`; the caller reads the body. Errors before the first byte
    /// (connection, status) come back here.
    pub async fn open_file(
        &self,
        mirror: &MirrorSettings,
        url: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let parsed = url::Url::parse(url).map_err(|e| UpstreamError::Garbage {
            url: url.to_owned(),
            why: format!("the file URL is invalid: {e}"),
        })?;
        let response = self
            .send(mirror, parsed, |url| self.http.get(url.clone()))
            .await
            .inspect_err(|_| count_upstream("error"))?;
        if !response.status().is_success() {
            count_upstream("error");
            return Err(UpstreamError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        count_upstream("ok");
        Ok(response)
    }

    /// Downloads a small file (core metadata) whole, up to `limit` bytes.
    pub async fn fetch_small(
        &self,
        mirror: &MirrorSettings,
        url: &str,
        limit: usize,
    ) -> Result<Bytes, UpstreamError> {
        let response = self.open_file(mirror, url).await?;
        read_limited(response, limit, url).await
    }

    fn authorized(
        mirror: &MirrorSettings,
        target: &url::Url,
        request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        let Some(user) = &mirror.username else {
            return request;
        };
        let same_origin =
            url::Url::parse(&mirror.url).is_ok_and(|upstream| upstream.origin() == target.origin());
        if same_origin {
            request.basic_auth(user, mirror.password.as_deref())
        } else {
            request
        }
    }
}

/// Sends webhook deliveries under the mirrors' address rules: no loopback, private or
/// link-local destination (an IP literal checked before sending, every DNS answer at
/// connect time) unless the server's admin allowed that host (`--webhook-allow-host`);
/// no redirect followed (a receiver that moved must be re-subscribed); a total deadline.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    allowed: std::sync::Arc<std::collections::HashSet<String>>,
}

impl WebhookClient {
    /// A client that gives up on a delivery after `timeout`, trusting `allowed_hosts`.
    pub fn new(timeout: Duration, allowed_hosts: &[String]) -> Result<Self, reqwest::Error> {
        let resolver = GuardedResolver::default();
        for host in allowed_hosts {
            resolver.trust(host);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION"), " (webhook)"))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(resolver))
            .build()?;
        Ok(Self {
            http,
            allowed: std::sync::Arc::new(
                allowed_hosts
                    .iter()
                    .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                    .collect(),
            ),
        })
    }

    /// Refuses a destination a delivery may not go to, saying why: not http(s), with
    /// credentials, or a non-public address the admin did not allow. A name is checked
    /// here when it resolves (so a mistake is caught when subscribing) and again on
    /// every delivery.
    pub async fn check_destination(&self, url: &str) -> Result<url::Url, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}`: a webhook URL must be http or https"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!(
                "`{}`: a webhook URL may not carry credentials (the receiver checks the signature instead)",
                crate::domain::redact_url(url)
            ));
        }
        let Some(host) = parsed.host_str() else {
            return Err(format!("`{url}` has no host"));
        };
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        if self.allowed.contains(&host) {
            return Ok(parsed);
        }
        let private = || {
            format!(
                "`{host}` is a loopback, private or link-local address; webhooks go there only when the server's admin allows the host (`kiln serve --webhook-allow-host {host}`)"
            )
        };
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !is_public(ip) => return Err(private()),
            Some(_) => {}
            None => {
                let port = parsed.port_or_known_default().unwrap_or(443);
                if let Ok(found) = tokio::net::lookup_host((host.as_str(), port)).await {
                    let found: Vec<_> = found.collect();
                    if !found.is_empty() && found.iter().all(|a| !is_public(a.ip())) {
                        return Err(private());
                    }
                }
            }
        }
        Ok(parsed)
    }

    /// POSTs `body` with `headers`; the receiver's status, or why nothing was heard.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<u16, String> {
        let parsed = self.check_destination(url).await?;
        let mut request = self
            .http
            .post(parsed)
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.body(body).send().await.map_err(|e| {
            let UpstreamError::Unreachable { cause, .. } = unreachable(url, &e) else {
                return e.to_string();
            };
            cause
        })?;
        Ok(response.status().as_u16())
    }
}

fn count_upstream(outcome: &str) {
    crate::metrics::Metrics::count(&crate::metrics::metrics().upstream_requests, outcome);
}

fn header_text(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned)
}

fn unreachable(url: &str, err: &reqwest::Error) -> UpstreamError {
    let mut cause = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    UpstreamError::Unreachable {
        url: url.to_owned(),
        cause,
    }
}

async fn read_limited(
    response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Garbage {
        url: url.to_owned(),
        why: format!("the response is over the {limit}-byte limit"),
    };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreachable(url, &e))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(url: &str, file_origins: &[&str]) -> MirrorSettings {
        MirrorSettings {
            url: url.into(),
            username: None,
            password: None,
            ttl_seconds: 60,
            file_origins: file_origins.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    fn check(upstream: &Upstream, mirror: &MirrorSettings, url: &str) -> Result<(), String> {
        upstream
            .check_target(mirror, &url::Url::parse(url).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["151.101.0.223", "2a04:4e42::223"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_mirror_reaches_only_its_origins() {
        let upstream = Upstream::new(Duration::from_secs(1)).unwrap();
        let pypi = mirror("https://pypi.org/simple/", &[]);
        assert!(check(&upstream, &pypi, "https://pypi.org/simple/x/").is_ok());
        assert!(
            check(
                &upstream,
                &pypi,
                "https://files.pythonhosted.org/packages/x.whl"
            )
            .is_ok()
        );
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:6379/",
            "https://evil.example/x.whl",
            "http://pypi.org/simple/x/",
            "file:///etc/passwd",
        ] {
            let said = check(&upstream, &pypi, bad).unwrap_err();
            assert!(said.contains("was not followed"), "{bad}: {said}");
        }
        // Configured by the admin on a private address: that host, and only it.
        let local = mirror(
            "http://127.0.0.1:3141/root/pypi/+simple/",
            &["http://10.0.0.5:8080"],
        );
        assert!(
            check(
                &upstream,
                &local,
                "http://127.0.0.1:3141/root/pypi/+f/x.whl"
            )
            .is_ok()
        );
        assert!(check(&upstream, &local, "http://10.0.0.5:8080/x.whl").is_ok());
        assert!(check(&upstream, &local, "http://127.0.0.1:22/").is_err());
        assert!(!upstream.resolver.trusts("files.pythonhosted.org"));
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_unless_configured() {
        use reqwest::dns::Resolve as _;
        let resolver = GuardedResolver::default();
        let name = |host: &str| host.parse::<reqwest::dns::Name>().unwrap();
        let refused = resolver.resolve(name("localhost")).await;
        assert!(refused.is_err(), "localhost is loopback");
        resolver.trust("localhost");
        let allowed = resolver.resolve(name("localhost")).await.unwrap();
        assert!(allowed.count() > 0);
    }
}
