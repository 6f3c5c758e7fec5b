//! Server configuration: defaults, then an optional TOML file, then `KILN_*` environment
//! variables, then command-line flags — each later source wins.
//!
//! Secrets (the first-start admin token, passwords in URLs) never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::ArchiveLimits;
use crate::policy::Policies;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3141";
/// The upstream `root/pypi` mirrors when a data directory is first used.
pub const DEFAULT_UPSTREAM: &str = "https://pypi.org/simple/";
/// Default wait for an upstream before serving the cache instead.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);
/// Default build lease: a builder that stops heartbeating for this long loses it.
pub const DEFAULT_BUILD_LEASE: Duration = Duration::from_secs(600);
/// Default largest upload: 1 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 1024 * 1024 * 1024;

/// Default: an upload that sends nothing for this long is cut off (slow-body attacks).
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default: the longest an upload body may take in all.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default: most fields an upload form may have (twine sends about 30, plus one per
/// classifier and dependency).
pub const DEFAULT_MAX_FORM_FIELDS: usize = 1000;

/// Bounds on one upload request, beyond its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Longest pause between two chunks of the body.
    pub idle_timeout: Duration,
    /// Longest time for the whole body.
    pub total_timeout: Duration,
    /// Most multipart fields.
    pub max_form_fields: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            total_timeout: DEFAULT_UPLOAD_TIMEOUT,
            max_form_fields: DEFAULT_MAX_FORM_FIELDS,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The keys a config file may set (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `listen = "127.0.0.1:3141"`
    pub listen: Option<SocketAddr>,
    /// `data_dir = "/var/lib/kiln"`
    pub data_dir: Option<PathBuf>,
    /// `database_url = "sqlite:///var/lib/kiln/kiln.db"`
    pub database_url: Option<String>,
    /// `storage = "file:///var/lib/kiln/storage"`
    pub storage: Option<String>,
    /// `[storage_options]` table, e.g. `aws_endpoint = "https://minio.internal:9000"`
    #[serde(default)]
    pub storage_options: std::collections::BTreeMap<String, String>,
    /// `presign_downloads = "5m"`
    pub presign_downloads: Option<String>,
    /// `max_upload_size = "1GiB"`
    pub max_upload_size: Option<String>,
    /// `log_format = "json"`
    pub log_format: Option<LogFormat>,
    /// `build_lease_timeout = "10m"`
    pub build_lease_timeout: Option<String>,
    /// `policies = "/etc/kiln/policies"`
    pub policies: Option<PathBuf>,
    /// See [`ServeConfig::upstream`]; `off` for none.
    pub upstream: Option<String>,
    /// See [`ServeConfig::upstream_timeout`].
    pub upstream_timeout: Option<String>,
    /// `upload_idle_timeout = "60s"`
    pub upload_idle_timeout: Option<String>,
    /// `upload_timeout = "1h"`
    pub upload_timeout: Option<String>,
    /// `max_form_fields = 1000`
    pub max_form_fields: Option<usize>,
    /// `max_archive_entries = 100000`
    pub max_archive_entries: Option<usize>,
    /// `max_metadata_size = "16MiB"`
    pub max_metadata_size: Option<String>,
    /// `max_unpacked_size = "16GiB"`
    pub max_unpacked_size: Option<String>,
}

impl ConfigFile {
    /// Reads and parses a config file, naming the file in any error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file `{}`", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file `{}`", path.display()))
    }
}

/// Everything `kiln serve` needs, fully resolved.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Where the default database and storage live, and upload temp files.
    pub data_dir: PathBuf,
    /// sqlx database URL.
    pub database_url: String,
    /// Object store URL.
    pub storage_url: String,
    /// Object store settings beyond the URL (S3 endpoint, presigned downloads).
    pub storage_options: crate::storage::StorageOptions,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Bounds on reading archives.
    pub archive_limits: ArchiveLimits,
    /// Bounds on upload requests.
    pub upload_limits: UploadLimits,
    /// Fixes the admin token at first start (`KILN_ADMIN_TOKEN`); ignored later.
    pub admin_token: Option<String>,
    /// Log output format.
    pub log_format: LogFormat,
    /// How long a build lease lasts without a heartbeat.
    pub build_lease_ttl: Duration,
    /// Promotion policies (the built-in default unless a directory was given).
    pub policies: Policies,
    /// The simple index `root/pypi` mirrors, created at first start; `None` for no mirror.
    pub upstream: Option<String>,
    /// How long a mirror waits for an upstream page, and for each chunk of a file, before
    /// it serves what it has cached (or answers 502).
    pub upstream_timeout: Duration,
}

impl ServeConfig {
    /// Defaults for a data directory: SQLite file and blob directory inside it.
    #[must_use]
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address is valid"),
            data_dir: data_dir.to_path_buf(),
            database_url: default_database_url(data_dir),
            storage_url: default_storage_url(data_dir),
            storage_options: crate::storage::StorageOptions::default(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD,
            archive_limits: ArchiveLimits::default(),
            upload_limits: UploadLimits::default(),
            admin_token: None,
            log_format: LogFormat::Text,
            build_lease_ttl: DEFAULT_BUILD_LEASE,
            policies: Policies::builtin(),
            upstream: Some(DEFAULT_UPSTREAM.to_owned()),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }

    /// Where upload bodies are spooled while they are verified.
    #[must_use]
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &crate::db::redact_url(&self.database_url))
            .field("storage_url", &self.storage_url)
            .field(
                "storage_options",
                &self
                    .storage_options
                    .settings
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("presign_downloads", &self.storage_options.presign_downloads)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("archive_limits", &self.archive_limits)
            .field("upload_limits", &self.upload_limits)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("log_format", &self.log_format)
            .field("build_lease_ttl", &self.build_lease_ttl)
            .field("upstream", &self.upstream)
            .field("upstream_timeout", &self.upstream_timeout)
            .field(
                "policies",
                &self
                    .policies
                    .rules
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `sqlite://<data_dir>/kiln.db?mode=rwc`
#[must_use]
pub fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("kiln.db").display())
}

/// `file://<data_dir>/storage`
#[must_use]
pub fn default_storage_url(data_dir: &Path) -> String {
    format!("file://{}", data_dir.join("storage").display())
}

/// Splits `42KiB` into the trimmed text, `42` and `KiB`; `what` names the quantity in
/// the error.
fn split_quantity<'a>(text: &'a str, what: &str) -> Result<(&'a str, u64, &'a str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse()
        .map_err(|_| format!("{what} `{text}` must start with a whole number"))?;
    Ok((text, number, unit))
}

/// Parses a size such as `1048576`, `512KiB`, `100MB` or `1GiB` (binary and decimal units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (text, number, unit) = split_quantity(text, "size")?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("size `{text}` has unknown unit `{other}`")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Parses a duration such as `600`, `90s`, `10m` or `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (text, number, unit) = split_quantity(text, "duration")?;
    let seconds = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "duration `{text}` has unknown unit `{other}` (use s, m, h or d)"
            ));
        }
    };
    let total = number
        .checked_mul(seconds)
        .ok_or_else(|| format!("duration `{text}` is too large"))?;
    if total == 0 {
        return Err(format!("duration `{text}` must be more than zero"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert_eq!(parse_size("2 kib"), Ok(2048));
        insta::assert_snapshot!(parse_size("lots").unwrap_err(), @"size `lots` must start with a whole number");
        insta::assert_snapshot!(parse_size("3XB").unwrap_err(), @"size `3XB` has unknown unit `xb`");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        insta::assert_snapshot!(parse_duration("0s").unwrap_err(), @"duration `0s` must be more than zero");
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(5 * 86_400)));
        insta::assert_snapshot!(parse_duration("5w").unwrap_err(), @"duration `5w` has unknown unit `w` (use s, m, h or d)");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut config = ServeConfig::for_data_dir(Path::new("/d"));
        config.admin_token = Some("kiln_secret".into());
        config.database_url = "postgres://u:pw@h/db".into();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("kiln_secret") && !shown.contains("pw@"),
            "{shown}"
        );
    }

    #[test]
    fn config_file_refuses_unknown_keys() {
        let err = toml::from_str::<ConfigFile>("listne = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `listne`"), "{err}");
    }
}
