//! `kiln export DIR`: a consistent copy of a running server's data (every row, and the
//! blobs they name), for `kiln import` into another backend.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use sha2::Digest as _;

use super::ClientArgs;
use kiln::api::paths::{self, fill};
use kiln::api::{EXPORT_FILE, blob_key, human_bytes};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// An empty (or new) directory to write the export to.
    dir: PathBuf,
}

pub async fn run_export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: export into a new directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    // It holds token hashes, webhook secrets and mirror passwords: the owner's only.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let client = args.client.client()?;
    let mut response = client.get_stream(paths::EXPORT).await?;
    let partial = dir.join(format!("{EXPORT_FILE}.partial"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    let mut pending: Vec<u8> = Vec::new();
    let mut blobs: Vec<String> = Vec::new();
    let mut last = serde_json::Value::Null;
    let mut rows = 0u64;
    while let Some(chunk) = response.chunk().await? {
        out.write_all(&chunk)?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let value: serde_json::Value = serde_json::from_slice(&line)
                .map_err(|e| anyhow::anyhow!("the server sent a line that is not JSON: {e}"))?;
            if value["table"] == "blobs"
                && value["row"]["collected_at_ms"].is_null()
                && let Some(sha) = value["row"]["sha256"].as_str()
            {
                blobs.push(sha.to_owned());
            }
            if value.get("row").is_some() {
                rows += 1;
            }
            last = value;
        }
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    if last["end"] != true || !pending.is_empty() {
        anyhow::bail!(
            "the export was cut short (the server failed or the connection dropped); nothing usable is in {}: run it again",
            dir.display()
        );
    }
    std::fs::rename(&partial, dir.join(EXPORT_FILE))?;
    let mut bytes = 0u64;
    for sha in &blobs {
        bytes += fetch_blob(&client, dir, sha).await?;
    }
    println!(
        "exported {rows} rows and {} blobs ({}) to {}",
        blobs.len(),
        human_bytes(bytes),
        dir.display()
    );
    println!(
        "import it with `kiln import {}` and the new backend's flags (e.g. --database-url, --storage)",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Downloads one blob into the export, checking it hashes to its name.
async fn fetch_blob(client: &kiln::client::Client, dir: &Path, sha: &str) -> anyhow::Result<u64> {
    let path = dir.join(blob_key(sha));
    std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
    let partial = path.with_extension("partial");
    let mut response = client
        .get_stream(&fill(paths::EXPORT_BLOB, &[("sha256", sha)]))
        .await?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await? {
        hasher.update(&chunk);
        out.write_all(&chunk)?;
        size += chunk.len() as u64;
    }
    out.flush()?;
    let got = hex::encode(hasher.finalize());
    if got != sha {
        anyhow::bail!("blob {sha} arrived with sha256 {got}: the store holds damaged bytes");
    }
    std::fs::rename(&partial, &path)?;
    Ok(size)
}
