//! `kiln ensure`: make sure this build's wheel is on the branch index and say where.
//!
//! Prints `KEY=value` lines on stdout (index URL, project, version, wheel filename,
//! sha256, and the local path with --download); progress goes to stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::ClientArgs;
use super::hook_args::HookArgs;
use kiln::hooks::ensure::ensure;
use kiln::hooks::progress::transfer_summary;
use kiln::hooks::stage::build_facts;

#[derive(Debug, Args)]
pub struct EnsureArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    hook: HookArgs,
    /// Save the wheel into this directory (for `tox --installpkg`).
    #[arg(long)]
    download: Option<PathBuf>,
    /// Also write the `KEY=value` lines to this dotenv file.
    #[arg(long)]
    env_file: Option<PathBuf>,
}

pub async fn run(args: EnsureArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let ensured = ensure(&client, &args.hook.options()).await?;
    let wheel_path = match &args.download {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            let path = std::path::absolute(dir.join(&ensured.wheel.filename))?;
            let started = std::time::Instant::now();
            client
                .download_file(&ensured.wheel.url, &ensured.wheel.sha256, &path)
                .await?;
            if let Some(summary) = transfer_summary(ensured.wheel.size, started.elapsed()) {
                eprintln!("kiln: downloaded {}: {summary}", ensured.wheel.filename);
            }
            Some(path)
        }
        None => None,
    };
    let facts = build_facts(&ensured, wheel_path.as_deref());
    let lines: String = facts
        .iter()
        .flat_map(|(k, v)| [k.as_str(), "=", v.as_str(), "\n"])
        .collect();
    print!("{lines}");
    if let Some(path) = &args.env_file {
        std::fs::write(path, &lines).with_context(|| format!("writing `{}`", path.display()))?;
    }
    // On GitHub Actions, later steps read these as `steps.<id>.outputs.<name>`.
    if let Some(output) = std::env::var_os("GITHUB_OUTPUT").filter(|o| !o.is_empty()) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&output)
            .with_context(|| format!("opening $GITHUB_OUTPUT `{}`", output.display()))?;
        for (key, value) in &facts {
            let name = key.trim_start_matches("KILN_").to_ascii_lowercase();
            writeln!(file, "{name}={value}")?;
        }
    }
    eprintln!(
        "kiln: {} ({}) {} on {}",
        ensured.wheel.filename,
        ensured.wheel.sha256,
        if ensured.built_here {
            "built here"
        } else {
            "already built"
        },
        ensured.index_url
    );
    Ok(ExitCode::SUCCESS)
}
