//! Server configuration: defaults, then an optional TOML file, then `KILN_*` environment
//! variables, then command-line flags — each later source wins.
//!
//! Secrets (the first-start admin token, passwords in URLs) never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of `kiln serve`, declared once: clap fills it from flags and `KILN_*`
/// variables, serde from the config file (whose keys are the flag names with `_`).
/// [`ServeSettings::over`] lays one source over another; [`ServeConfig::resolve`] turns
/// the result into the configuration, with the defaults for what no source set.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Where the default database, blobs and temporary files live [default: ./kiln-data].
    #[arg(long, env = "KILN_DATA_DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:3141].
    #[arg(long, env = "KILN_LISTEN")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Metadata database URL [default: sqlite://<data-dir>/kiln.db?mode=rwc].
    #[arg(long, env = "KILN_DATABASE_URL", hide_env_values = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Object store URL for artifact bytes: `file:///dir` or `s3://bucket/prefix`
    /// [default: file://<data-dir>/storage].
    #[arg(long, env = "KILN_STORAGE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// An object store setting, `KEY=VALUE`, repeatable, e.g.
    /// `aws_endpoint=https://minio:9000`; wins over the `AWS_*` variables. In the config
    /// file: a `[storage_options]` table.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    #[serde(default, with = "option_table", skip_serializing_if = "Vec::is_empty")]
    pub storage_options: Vec<StorageOption>,
    /// Redirect downloads to presigned object-store URLs valid this long, e.g. `5m` (S3
    /// only; clients must reach the store) [default: off, bytes go through Kiln].
    #[arg(long, env = "KILN_PRESIGN_DOWNLOADS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presign_downloads: Option<HumanDuration>,
    /// How long an object-store request may take, retries included, before the request
    /// that needed it answers 503, e.g. `10s` (S3 only; a download through Kiln must
    /// finish within it too: use --presign-downloads for very large files) [default: 30s].
    #[arg(long, env = "KILN_STORAGE_TIMEOUT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_timeout: Option<HumanDuration>,
    /// Behind nginx: answer downloads of local files with `X-Accel-Redirect: PREFIX<key>`
    /// and let nginx send them (an `internal` location mapping PREFIX to the storage
    /// directory; `file://` only), e.g. `/_kiln_storage/` [default: off].
    #[arg(long, env = "KILN_ACCEL_REDIRECT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel_redirect: Option<String>,
    /// Largest accepted upload, e.g. `1GiB` or `500MB` [default: 1GiB].
    #[arg(long, env = "KILN_MAX_UPLOAD_SIZE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_size: Option<ByteSize>,
    /// The most memory rendered simple pages may take, e.g. `64MiB`; `0` keeps none
    /// [default: 64MiB].
    #[arg(long, env = "KILN_PAGE_CACHE_SIZE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache_size: Option<ByteSize>,
    /// How long a build lease lasts without a heartbeat, e.g. `10m` or `90s` [default: 10m].
    #[arg(long, env = "KILN_BUILD_LEASE_TIMEOUT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_lease_timeout: Option<HumanDuration>,
    /// A directory of promotion policy files (`*.toml`) [default: the built-in policy,
    /// `policies/default.toml`].
    #[arg(long, env = "KILN_POLICIES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
    /// The simple index that `root/pypi` mirrors, created at first start (`off` for no
    /// mirror) [default: `https://pypi.org/simple/`].
    #[arg(long, env = "KILN_UPSTREAM")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// How long a mirror waits for its upstream before serving its cache instead (or
    /// answering 502), e.g. `20s` [default: 20s].
    #[arg(long, env = "KILN_UPSTREAM_TIMEOUT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<HumanDuration>,
    /// An upload that sends no bytes for this long is cut off with 408, e.g. `60s`
    /// [default: 60s].
    #[arg(long, env = "KILN_UPLOAD_IDLE_TIMEOUT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_idle_timeout: Option<HumanDuration>,
    /// The longest an upload body may take in all, e.g. `1h` [default: 1h].
    #[arg(long, env = "KILN_UPLOAD_TIMEOUT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_timeout: Option<HumanDuration>,
    /// Most fields an upload form may have [default: 1000].
    #[arg(long, env = "KILN_MAX_FORM_FIELDS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_form_fields: Option<usize>,
    /// Most members an uploaded archive may have [default: 100000].
    #[arg(long, env = "KILN_MAX_ARCHIVE_ENTRIES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_archive_entries: Option<usize>,
    /// Largest METADATA file a wheel may carry, inflated [default: 16MiB].
    #[arg(long, env = "KILN_MAX_METADATA_SIZE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_metadata_size: Option<ByteSize>,
    /// Most bytes an uploaded archive may unpack to [default: 16GiB].
    #[arg(long, env = "KILN_MAX_UNPACKED_SIZE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unpacked_size: Option<ByteSize>,
    /// A bearer token that `GET /metrics` then requires (and that sees every index's
    /// series) [default: none; anyone reads metrics of public indexes].
    #[arg(long, env = "KILN_METRICS_TOKEN", hide_env_values = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// A host webhooks may be delivered to although it is loopback, private or
    /// link-local (e.g. `hooks.internal` or `10.0.0.5`), repeatable or comma-separated
    /// [default: none; public addresses only].
    #[arg(
        long = "webhook-allow-host",
        env = "KILN_WEBHOOK_ALLOW_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_allow_hosts: Vec<String>,
    /// How long a failed webhook delivery waits before its first retry, doubling for
    /// each one after (at most an hour apart), e.g. `10s` [default: 10s].
    #[arg(long, env = "KILN_WEBHOOK_RETRY")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_retry: Option<HumanDuration>,
    /// How many times a webhook delivery is tried before it is given up [default: 12].
    #[arg(long, env = "KILN_WEBHOOK_ATTEMPTS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_attempts: Option<u32>,
    /// How long a removed release or file stays in the trash, restorable, before its
    /// files are released, e.g. `7d` [default: 7d].
    #[arg(long, env = "KILN_TRASH_FOR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash_for: Option<HumanDuration>,
    /// How often this server runs garbage collection (one replica of a fleet at a time),
    /// e.g. `1h`, or `off` [default: 1h].
    #[arg(long, env = "KILN_GC_INTERVAL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_interval: Option<String>,
    /// How old a stored object that no row names must be before garbage collection
    /// deletes it; longer than `--upload-timeout` [default: 2h].
    #[arg(long, env = "KILN_GC_GRACE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_grace: Option<HumanDuration>,
    /// Log format [default: text].
    #[arg(long, env = "KILN_LOG_FORMAT", value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl ServeSettings {
    /// Reads a config file, naming the file in any error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file `{}`", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file `{}`", path.display()))
    }

    /// `self` laid over `below`: every setting `self` has wins, the rest come from
    /// `below`; storage options merge by key.
    #[must_use]
    pub fn over(self, below: Self) -> Self {
        let mut options = below.storage_options;
        for option in &self.storage_options {
            options.retain(|o| o.key != option.key);
            options.push(option.clone());
        }
        let value = |s: &Self| serde_json::to_value(s).expect("settings serialize to JSON");
        let mut merged = value(&Self {
            storage_options: Vec::new(),
            ..below
        });
        if let (Some(into), serde_json::Value::Object(top)) = (merged.as_object_mut(), value(&self))
        {
            into.extend(top);
        }
        let mut merged: Self = serde_json::from_value(merged).expect("merged settings deserialize");
        merged.storage_options = options;
        merged
    }
}

/// An object store setting, `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOption {
    /// The setting, e.g. `aws_endpoint`.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl std::str::FromStr for StorageOption {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))?;
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// Storage options as a TOML table (`[storage_options]`).
mod option_table {
    use std::collections::BTreeMap;

    use serde::{Deserialize as _, Deserializer, Serializer};

    use super::StorageOption;

    pub fn serialize<S: Serializer>(options: &[StorageOption], s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(options.iter().map(|o| (&o.key, &o.value)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StorageOption>, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(key, value)| StorageOption { key, value })
            .collect())
    }
}

/// A duration as people write it: `600`, `90s`, `10m`, `1h`, `2d` (see [`parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// A size as people write it: `1048576`, `512KiB`, `100MB`, `1GiB` (see [`parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A quantity written as text: parsed by `$parse`, shown by `$show`, and read from and
/// written to the config file as that text (`"10m"`, `"1GiB"`).
macro_rules! text_quantity {
    ($t:ident, $parse:path, $show:expr) => {
        impl std::str::FromStr for $t {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                $parse(text).map(Self)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let show: fn(&Self) -> String = $show;
                f.write_str(&show(self))
            }
        }

        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

text_quantity!(HumanDuration, parse_duration, |d| format!(
    "{}ms",
    d.0.as_millis()
));
text_quantity!(ByteSize, parse_size, |b| b.0.to_string());

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
    /// Most bytes of rendered pages kept in memory.
    pub page_cache_bytes: u64,
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
    /// Where and how webhooks are delivered.
    pub webhooks: WebhookConfig,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// The trash and garbage collection.
    pub gc: GcConfig,
}

/// The trash and garbage collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    /// How long a removal stays restorable.
    pub trash_for: Duration,
    /// How often the server collects (`None`: only `kiln gc`).
    pub interval: Option<Duration>,
    /// How old an object no row names must be before it is deleted.
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            trash_for: Duration::from_secs(7 * 24 * 3600),
            interval: Some(Duration::from_secs(3600)),
            grace: Duration::from_secs(2 * 3600),
        }
    }
}

/// Where and how webhooks are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Non-public hosts deliveries may go to.
    pub allow_hosts: Vec<String>,
    /// The wait before the first retry (doubling after).
    pub first_retry: Duration,
    /// Attempts before a delivery is given up.
    pub attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            first_retry: Duration::from_secs(10),
            attempts: 12,
        }
    }
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
            page_cache_bytes: crate::http::page_cache::DEFAULT_CAPACITY_BYTES,
            archive_limits: ArchiveLimits::default(),
            upload_limits: UploadLimits::default(),
            admin_token: None,
            log_format: LogFormat::Text,
            build_lease_ttl: DEFAULT_BUILD_LEASE,
            policies: Policies::builtin(),
            upstream: Some(DEFAULT_UPSTREAM.to_owned()),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            webhooks: WebhookConfig::default(),
            metrics_token: None,
            gc: GcConfig::default(),
        }
    }

    /// The configuration `settings` ask for, with the defaults for what they leave out.
    /// `admin_token` comes from `KILN_ADMIN_TOKEN` (never a flag or a file: it is a
    /// secret for the first start only).
    pub fn resolve(settings: ServeSettings, admin_token: Option<String>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let data_dir = settings
            .data_dir
            .unwrap_or_else(|| PathBuf::from("kiln-data"));
        let data_dir = std::path::absolute(&data_dir)
            .with_context(|| format!("resolving data directory `{}`", data_dir.display()))?;
        let mut config = Self::for_data_dir(&data_dir);
        let duration =
            |value: Option<HumanDuration>, default: Duration| value.map_or(default, |d| d.0);
        let size = |value: Option<ByteSize>, default: u64| value.map_or(default, |b| b.0);
        config.build_lease_ttl = duration(settings.build_lease_timeout, config.build_lease_ttl);
        config.upstream_timeout = duration(settings.upstream_timeout, config.upstream_timeout);
        let limits = &mut config.upload_limits;
        limits.idle_timeout = duration(settings.upload_idle_timeout, limits.idle_timeout);
        limits.total_timeout = duration(settings.upload_timeout, limits.total_timeout);
        config.max_upload_bytes = size(settings.max_upload_size, config.max_upload_bytes);
        config.page_cache_bytes = size(settings.page_cache_size, config.page_cache_bytes);
        let archive = &mut config.archive_limits;
        archive.max_metadata_bytes = size(settings.max_metadata_size, archive.max_metadata_bytes);
        archive.max_unpacked_bytes = size(settings.max_unpacked_size, archive.max_unpacked_bytes);
        config.listen = settings.listen.unwrap_or(config.listen);
        config.database_url = settings.database_url.unwrap_or(config.database_url);
        config.storage_url = settings.storage.unwrap_or(config.storage_url);
        config.storage_options.settings = settings
            .storage_options
            .into_iter()
            .map(|o| (o.key, o.value))
            .collect();
        config.storage_options.presign_downloads = settings.presign_downloads.map(|d| d.0);
        config.storage_options.timeout =
            duration(settings.storage_timeout, config.storage_options.timeout);
        config.storage_options.accel_redirect = settings.accel_redirect;
        config.upload_limits.max_form_fields = settings
            .max_form_fields
            .unwrap_or(config.upload_limits.max_form_fields);
        config.archive_limits.max_entries = settings
            .max_archive_entries
            .unwrap_or(config.archive_limits.max_entries);
        config.log_format = settings.log_format.unwrap_or(config.log_format);
        if let Some(dir) = settings.policies {
            config.policies = Policies::load_dir(&dir)
                .map_err(|e| anyhow::anyhow!("loading promotion policies: {e}"))?;
        }
        if let Some(upstream) = settings.upstream {
            config.upstream = if upstream == "off" {
                None
            } else {
                Some(
                    crate::domain::MirrorSettings::normalize_url(&upstream)
                        .map_err(|e| anyhow::anyhow!("--upstream: {e}"))?,
                )
            };
        }
        config.metrics_token = settings.metrics_token.filter(|t| !t.is_empty());
        config.webhooks.allow_hosts = settings.webhook_allow_hosts;
        config.webhooks.first_retry = duration(settings.webhook_retry, config.webhooks.first_retry);
        if let Some(attempts) = settings.webhook_attempts {
            anyhow::ensure!(
                attempts >= 1,
                "--webhook-attempts must be at least 1 (the first try)"
            );
            config.webhooks.attempts = attempts;
        }
        config.gc.trash_for = duration(settings.trash_for, config.gc.trash_for);
        config.gc.grace = duration(settings.gc_grace, config.gc.grace);
        if let Some(interval) = settings.gc_interval {
            config.gc.interval = if interval == "off" {
                None
            } else {
                Some(parse_duration(&interval).map_err(|e| anyhow::anyhow!("--gc-interval: {e}"))?)
            };
        }
        anyhow::ensure!(
            config.gc.grace > config.upload_limits.total_timeout,
            "--gc-grace ({:?}) must be longer than --upload-timeout ({:?}): an upload still sending may have stored its bytes without a row naming them yet",
            config.gc.grace,
            config.upload_limits.total_timeout
        );
        config.admin_token = admin_token.filter(|t| !t.is_empty());
        Ok(config)
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
            .field("storage_timeout", &self.storage_options.timeout)
            .field("accel_redirect", &self.storage_options.accel_redirect)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("page_cache_bytes", &self.page_cache_bytes)
            .field("archive_limits", &self.archive_limits)
            .field("upload_limits", &self.upload_limits)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("log_format", &self.log_format)
            .field("build_lease_ttl", &self.build_lease_ttl)
            .field("upstream", &self.upstream)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("webhooks", &self.webhooks)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("gc", &self.gc)
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
    let millis: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "duration `{text}` has unknown unit `{other}` (use ms, s, m, h or d)"
            ));
        }
    };
    let total = number
        .checked_mul(millis)
        .ok_or_else(|| format!("duration `{text}` is too large"))?;
    if total == 0 {
        return Err(format!("duration `{text}` must be more than zero"));
    }
    Ok(Duration::from_millis(total))
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
        insta::assert_snapshot!(parse_duration("5w").unwrap_err(), @"duration `5w` has unknown unit `w` (use ms, s, m, h or d)");
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
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
        let err = toml::from_str::<ServeSettings>("listne = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `listne`"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file_and_storage_options_merge_by_key() {
        let file: ServeSettings = toml::from_str(
            "listen = \"127.0.0.1:9\"\nmax_upload_size = \"2MiB\"\nbuild_lease_timeout = \"5m\"\n[storage_options]\naws_region = \"eu\"\naws_endpoint = \"http://a\"\n",
        )
        .unwrap();
        let flags = ServeSettings {
            max_upload_size: Some(ByteSize(10)),
            storage_options: vec!["aws_endpoint=http://b".parse().unwrap()],
            ..ServeSettings::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.listen, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(merged.max_upload_size, Some(ByteSize(10)));
        assert_eq!(
            merged.build_lease_timeout,
            Some(HumanDuration(Duration::from_secs(300)))
        );
        let options: Vec<(&str, &str)> = merged
            .storage_options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            options,
            [("aws_region", "eu"), ("aws_endpoint", "http://b")]
        );
        let config = ServeConfig::resolve(merged, None).unwrap();
        assert_eq!(config.max_upload_bytes, 10);
        assert_eq!(config.build_lease_ttl, Duration::from_secs(300));
        assert_eq!(
            config.upload_limits.idle_timeout,
            DEFAULT_UPLOAD_IDLE_TIMEOUT
        );
    }

    #[test]
    fn a_bad_value_in_the_file_names_its_key() {
        let err = toml::from_str::<ServeSettings>("upload_timeout = \"5w\"").unwrap_err();
        assert!(
            err.to_string().contains("upload_timeout")
                && err.to_string().contains("unknown unit `w`"),
            "{err}"
        );
    }
}
