//! `kiln remove`, `kiln trash list|restore` and `kiln gc`: taking releases off an index
//! (restorably), and freeing the bytes nothing lists.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::ClientArgs;
use kiln::api::{GcReport, TrashView, human_bytes};
use kiln::client::Client;
use kiln::domain::IndexName;

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The release, as `PROJECT==VERSION`.
    #[arg(value_name = "PROJECT==VERSION")]
    release: String,
    /// The index (e.g. `acme/feature-x`); never a promotion-only one.
    #[arg(long)]
    index: IndexName,
    /// Only this file of the release.
    #[arg(long)]
    file: Option<String>,
    /// Why (shown in the trash and the events).
    #[arg(long, default_value = "removed with kiln remove")]
    reason: String,
}

pub async fn run_remove(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let (project, version) = args
        .release
        .split_once("==")
        .filter(|(p, v)| !p.trim().is_empty() && !v.trim().is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{}` is not PROJECT==VERSION (e.g. `acme-lib==1.2.0`)",
                args.release
            )
        })?;
    let client = args.client.client()?;
    let entry = client
        .remove(
            &args.index,
            project.trim(),
            version.trim(),
            args.file.as_deref(),
            &args.reason,
        )
        .await?;
    for file in &entry.files {
        println!("removed {file} from {}", entry.index);
    }
    println!(
        "in the trash as entry {} until {}: `kiln trash restore {}` brings it back",
        entry.id, entry.expires_at, entry.id
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// Removed releases and files, newest first, and when each is released for good.
    List {
        /// Only this index's trash.
        #[arg(long)]
        index: Option<IndexName>,
    },
    /// Put a trash entry's files back on their index.
    Restore {
        /// The entry's id (`kiln trash list`).
        id: i64,
    },
}

pub async fn run_trash(client: &Client, action: TrashCommand) -> anyhow::Result<ExitCode> {
    match action {
        TrashCommand::List { index } => {
            let entries = client.trash(index.as_ref()).await?;
            if entries.is_empty() {
                println!("the trash is empty");
            }
            for entry in &entries {
                print_entry(entry);
            }
        }
        TrashCommand::Restore { id } => {
            let entry = client.restore(id).await?;
            for file in &entry.files {
                println!("restored {file} on {}", entry.index);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_entry(entry: &TrashView) {
    println!(
        "{:>5}  {} {}=={}  {} file(s), {}  removed by {} at {}: {}  (released {})",
        entry.id,
        entry.index,
        entry.project,
        entry.version,
        entry.files.len(),
        human_bytes(entry.bytes),
        entry.removed_by,
        entry.removed_at,
        entry.reason,
        entry.expires_at
    );
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only show what would go and how many bytes would be freed.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run_gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let report = client.gc(args.dry_run).await?;
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &GcReport) {
    let verb = if report.dry_run { "would" } else { "did" };
    for entry in &report.released {
        println!(
            "release trash entry {}: {} {}=={} ({} file(s))",
            entry.id,
            entry.index,
            entry.project,
            entry.version,
            entry.files.len()
        );
    }
    println!(
        "{verb} delete {} blob(s) nothing lists ({}), {} stored object(s) no row names ({}), {} leftover staging file(s) ({})",
        report.blobs,
        human_bytes(report.blob_bytes),
        report.orphans,
        human_bytes(report.orphan_bytes),
        report.leftovers,
        human_bytes(report.leftover_bytes)
    );
    println!(
        "{} freed in {:.1} s{}",
        human_bytes(report.freed_bytes),
        report.seconds,
        if report.dry_run {
            " (dry run: nothing deleted)"
        } else {
            ""
        }
    );
}
