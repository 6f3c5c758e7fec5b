//! `kiln serve`: resolve the configuration (defaults < file < env < flags), open the
//! data directory, print first-start instructions, serve until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use kiln::config::{ConfigFile, LogFormat, ServeConfig, parse_duration, parse_size};
use kiln::service::bootstrap::{Bootstrapped, MASTER_INDEX};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file; its keys are the long flag names with `_` (e.g. `data_dir`).
    #[arg(long, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
    /// Where the default database, blobs and temporary files live [default: ./kiln-data].
    #[arg(long, env = "KILN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:3141].
    #[arg(long, env = "KILN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Metadata database URL [default: sqlite://<data-dir>/kiln.db?mode=rwc].
    #[arg(long, env = "KILN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Object store URL for artifact bytes: `file:///dir` or `s3://bucket/prefix`
    /// [default: file://<data-dir>/storage].
    #[arg(long, env = "KILN_STORAGE")]
    storage: Option<String>,
    /// An object store setting, `KEY=VALUE`, repeatable, e.g.
    /// `aws_endpoint=https://minio:9000`; wins over the `AWS_*` variables.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    storage_options: Vec<String>,
    /// Redirect downloads to presigned object-store URLs valid this long, e.g. `5m` (S3
    /// only; clients must reach the store) [default: off, bytes go through Kiln].
    #[arg(long, env = "KILN_PRESIGN_DOWNLOADS")]
    presign_downloads: Option<String>,
    /// Largest accepted upload, e.g. `1GiB` or `500MB` [default: 1GiB].
    #[arg(long, env = "KILN_MAX_UPLOAD_SIZE")]
    max_upload_size: Option<String>,
    /// How long a build lease lasts without a heartbeat, e.g. `10m` or `90s` [default: 10m].
    #[arg(long, env = "KILN_BUILD_LEASE_TIMEOUT")]
    build_lease_timeout: Option<String>,
    /// A directory of promotion policy files (`*.toml`) [default: the built-in policy,
    /// `policies/default.toml`].
    #[arg(long, env = "KILN_POLICIES")]
    policies: Option<PathBuf>,
    /// The simple index that `root/pypi` mirrors, created at first start (`off` for no
    /// mirror) [default: `https://pypi.org/simple/`].
    #[arg(long, env = "KILN_UPSTREAM")]
    upstream: Option<String>,
    /// How long a mirror waits for its upstream before serving its cache instead (or
    /// answering 502), e.g. `20s` [default: 20s].
    #[arg(long, env = "KILN_UPSTREAM_TIMEOUT")]
    upstream_timeout: Option<String>,
    /// An upload that sends no bytes for this long is cut off with 408, e.g. `60s`
    /// [default: 60s].
    #[arg(long, env = "KILN_UPLOAD_IDLE_TIMEOUT")]
    upload_idle_timeout: Option<String>,
    /// The longest an upload body may take in all, e.g. `1h` [default: 1h].
    #[arg(long, env = "KILN_UPLOAD_TIMEOUT")]
    upload_timeout: Option<String>,
    /// Most fields an upload form may have [default: 1000].
    #[arg(long, env = "KILN_MAX_FORM_FIELDS")]
    max_form_fields: Option<usize>,
    /// Most members an uploaded archive may have [default: 100000].
    #[arg(long, env = "KILN_MAX_ARCHIVE_ENTRIES")]
    max_archive_entries: Option<usize>,
    /// Largest METADATA file a wheel may carry, inflated [default: 16MiB].
    #[arg(long, env = "KILN_MAX_METADATA_SIZE")]
    max_metadata_size: Option<String>,
    /// Most bytes an uploaded archive may unpack to [default: 16GiB].
    #[arg(long, env = "KILN_MAX_UNPACKED_SIZE")]
    max_unpacked_size: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "KILN_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("kiln-data"));
    let data_dir = std::path::absolute(&data_dir)
        .with_context(|| format!("resolving data directory `{}`", data_dir.display()))?;
    let mut config = ServeConfig::for_data_dir(&data_dir);
    resolve_limits(&mut config, &args, &file)?;
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    if let Some(url) = args.database_url.or(file.database_url) {
        config.database_url = url;
    }
    if let Some(url) = args.storage.or(file.storage) {
        config.storage_url = url;
    }
    config.storage_options.settings = file.storage_options.into_iter().collect();
    for option in &args.storage_options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--storage-option `{option}`: expected KEY=VALUE"))?;
        config.storage_options.settings.retain(|(k, _)| k != key);
        config
            .storage_options
            .settings
            .push((key.to_owned(), value.to_owned()));
    }
    if let Some(ttl) = args.presign_downloads.or(file.presign_downloads) {
        config.storage_options.presign_downloads =
            Some(parse_duration(&ttl).map_err(|e| anyhow::anyhow!("--presign-downloads: {e}"))?);
    }
    if let Some(size) = args.max_upload_size.or(file.max_upload_size) {
        config.max_upload_bytes =
            parse_size(&size).map_err(|e| anyhow::anyhow!("--max-upload-size: {e}"))?;
    }
    if let Some(timeout) = args.build_lease_timeout.or(file.build_lease_timeout) {
        config.build_lease_ttl =
            parse_duration(&timeout).map_err(|e| anyhow::anyhow!("--build-lease-timeout: {e}"))?;
    }
    if let Some(dir) = args.policies.or(file.policies) {
        config.policies = kiln::policy::Policies::load_dir(&dir)
            .map_err(|e| anyhow::anyhow!("loading promotion policies: {e}"))?;
    }
    if let Some(upstream) = args.upstream.or(file.upstream) {
        config.upstream = if upstream == "off" {
            None
        } else {
            Some(
                kiln::domain::MirrorSettings::normalize_url(&upstream)
                    .map_err(|e| anyhow::anyhow!("--upstream: {e}"))?,
            )
        };
    }
    if let Some(timeout) = args.upstream_timeout.or(file.upstream_timeout) {
        config.upstream_timeout =
            parse_duration(&timeout).map_err(|e| anyhow::anyhow!("--upstream-timeout: {e}"))?;
    }
    if let Some(format) = args.log_format.or(file.log_format) {
        config.log_format = format;
    }
    config.admin_token = std::env::var("KILN_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    Ok(config)
}

fn resolve_limits(
    config: &mut ServeConfig,
    args: &ServeArgs,
    file: &ConfigFile,
) -> anyhow::Result<()> {
    let pick = |flag: &Option<String>, key: &Option<String>| flag.clone().or_else(|| key.clone());
    if let Some(t) = pick(&args.upload_idle_timeout, &file.upload_idle_timeout) {
        config.upload_limits.idle_timeout =
            parse_duration(&t).map_err(|e| anyhow::anyhow!("--upload-idle-timeout: {e}"))?;
    }
    if let Some(t) = pick(&args.upload_timeout, &file.upload_timeout) {
        config.upload_limits.total_timeout =
            parse_duration(&t).map_err(|e| anyhow::anyhow!("--upload-timeout: {e}"))?;
    }
    if let Some(n) = args.max_form_fields.or(file.max_form_fields) {
        config.upload_limits.max_form_fields = n;
    }
    if let Some(n) = args.max_archive_entries.or(file.max_archive_entries) {
        config.archive_limits.max_entries = n;
    }
    if let Some(size) = pick(&args.max_metadata_size, &file.max_metadata_size) {
        config.archive_limits.max_metadata_bytes =
            parse_size(&size).map_err(|e| anyhow::anyhow!("--max-metadata-size: {e}"))?;
    }
    if let Some(size) = pick(&args.max_unpacked_size, &file.max_unpacked_size) {
        config.archive_limits.max_unpacked_bytes =
            parse_size(&size).map_err(|e| anyhow::anyhow!("--max-unpacked-size: {e}"))?;
    }
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(args)?;
    kiln::telemetry::init(config.log_format);
    tracing::info!(config = ?config, "starting kiln");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another server using the port? try --listen)",
                config.listen
            )
        })?;
    let address = listener.local_addr()?;
    let data_dir = config.data_dir.clone();
    let server = kiln::Server::open(config).await?;
    if let Some(created) = &server.bootstrapped {
        print_first_start(created, &data_dir, address)?;
    }
    server.run(listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_first_start(
    created: &Bootstrapped,
    data_dir: &Path,
    address: SocketAddr,
) -> anyhow::Result<()> {
    let base = format!("http://{address}");
    let token_line = if created.generated {
        let path = data_dir.join("admin-token");
        write_private(&path, &created.admin_token)?;
        format!(
            "admin token (shown once; also in {}):\n    {}",
            path.display(),
            created.admin_token
        )
    } else {
        "admin token: the value of KILN_ADMIN_TOKEN".to_owned()
    };
    let token = if created.generated {
        created.admin_token.as_str()
    } else {
        "$KILN_ADMIN_TOKEN"
    };
    // Printed, not logged: the token must not end up in log aggregation.
    println!(
        "\nKiln initialized {dir}\n  indexes: root/prod (promotion-only, append-only), {MASTER_INDEX} (bases: root/prod)\n  {token_line}\n\n\
         Install:  pip install --index-url {base}/{MASTER_INDEX}/+simple/ PACKAGE\n\
         \x20         uv pip install --index-url {base}/{MASTER_INDEX}/+simple/ PACKAGE\n\
         Upload:   twine upload --repository-url {base}/{MASTER_INDEX}/ -u __token__ -p {token} dist/*\n\
         \x20         uv publish --publish-url {base}/{MASTER_INDEX}/ -u __token__ -p {token} dist/*\n\
         CLI:      export KILN_SERVER={base} KILN_TOKEN={token}\n\
         \x20         kiln index create acme/feature-x --bases {MASTER_INDEX}\n",
        dir = data_dir.display()
    );
    Ok(())
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing `{}`", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
