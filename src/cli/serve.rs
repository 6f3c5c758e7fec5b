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
