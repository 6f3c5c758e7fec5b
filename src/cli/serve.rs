//! `kiln serve`: resolve the configuration (defaults < file < env < flags), open the
//! data directory, print first-start instructions, serve until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use kiln::config::{ServeConfig, ServeSettings};
use kiln::service::bootstrap::{Bootstrapped, MASTER_INDEX};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file; its keys are the long flag names with `_` (e.g. `data_dir`).
    #[arg(long, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: ServeSettings,
}

/// Defaults < the config file < `KILN_*` variables and flags (clap reads both).
fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let file = match &args.config {
        Some(path) => ServeSettings::load(path)?,
        None => ServeSettings::default(),
    };
    ServeConfig::resolve(
        args.settings.over(file),
        std::env::var("KILN_ADMIN_TOKEN").ok(),
    )
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The directory `kiln export` wrote.
    dir: PathBuf,
    /// Where to import to: the same settings as `kiln serve` (e.g. `--database-url`,
    /// `--storage`, `--storage-option`, or `--data-dir` for the embedded default).
    #[command(flatten)]
    target: ServeArgs,
}

/// `kiln import DIR`: loads an export into an empty database and store, checking every
/// sha256 first (like `kiln serve`, it opens the backends itself).
pub async fn run_import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(args.target)?;
    kiln::telemetry::init(config.log_format);
    std::fs::create_dir_all(&config.data_dir)?;
    let db = kiln::db::Db::connect(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening database `{}`",
                kiln::db::redact_url(&config.database_url)
            )
        })?;
    let storage = kiln::storage::Storage::open(&config.storage_url, &config.storage_options)
        .with_context(|| format!("opening storage `{}`", config.storage_url))?;
    let imported = kiln::service::transfer::import(&db, &storage, &args.dir)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    db.close().await;
    println!(
        "imported {} rows and {} blobs ({}) from {}; start `kiln serve` with the same settings",
        imported.rows,
        imported.blobs,
        kiln::api::human_bytes(imported.bytes),
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
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
    let shutdown = shutdown_signal()?;
    let server = kiln::Server::open(config).await?;
    if let Some(created) = &server.bootstrapped {
        print_first_start(created, &data_dir, address)?;
    }
    server.run(listener, shutdown).await?;
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

/// Resolves on SIGTERM or SIGINT. The handlers are installed here, before the server
/// answers its first request: installed lazily (on the future's first poll, inside the
/// serve loop), a SIGTERM sent right after the first health check could still find the
/// default action and kill the process without a graceful stop.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; finishing in-flight requests");
    })
}
