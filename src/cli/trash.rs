//! `kiln remove`, `kiln trash list|restore` and `kiln gc`: taking releases off an index
//! (restorably), and freeing the bytes nothing lists.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::ClientArgs;
use kiln::api::{BranchCleanupView, GcReport, TrashView, human_bytes};
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
    /// Release an entry now, for good (`admin` on its index); `kiln gc` then frees the
    /// bytes nothing else lists.
    Release {
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
            if entry.project.is_none() {
                println!("restored index {}", entry.index);
            }
            for file in &entry.files {
                println!("restored {file} on {}", entry.index);
            }
        }
        TrashCommand::Release { id } => {
            let entry = client.release(id).await?;
            println!(
                "released trash entry {id} ({}) for good; `kiln gc` frees the bytes nothing else lists",
                what(&entry)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `index acme/x`, or `acme/x acme-lib==1.0` (with ` (one file)`).
fn what(entry: &TrashView) -> String {
    match (&entry.project, &entry.version) {
        (Some(project), Some(version)) => format!(
            "{} {project}=={version}{}",
            entry.index,
            if entry.file.is_some() {
                " (one file)"
            } else {
                ""
            }
        ),
        _ => format!("index {}", entry.index),
    }
}

fn print_entry(entry: &TrashView) {
    println!(
        "{:>5}  {}  {} file(s), {}  removed by {} at {}: {}  (released {})",
        entry.id,
        what(entry),
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
    /// Instead: keep only the branch indexes of the branches FILE lists (one per line, or
    /// `git ls-remote --heads` output; `-` for stdin); the others go into the trash.
    #[arg(long, value_name = "FILE", requires = "namespace")]
    branches: Option<std::path::PathBuf>,
    /// The namespace whose branch indexes `--branches` weighs (e.g. `acme`).
    #[arg(long)]
    namespace: Option<String>,
}

pub async fn run_gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    if let (Some(file), Some(namespace)) = (&args.branches, &args.namespace) {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?
        };
        let branches = branch_list(&text);
        let done = client
            .clean_branches(namespace, &branches, true, args.dry_run)
            .await?;
        print_cleanup(&done);
        return Ok(ExitCode::SUCCESS);
    }
    let report = client.gc(args.dry_run).await?;
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

/// Branch names from a file: one per line, or `<sha>\trefs/heads/<name>` as
/// `git ls-remote --heads` prints them; blank lines and `#` comments are skipped.
fn branch_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once("refs/heads/") {
            Some((_, name)) => name.trim().to_owned(),
            None => l.to_owned(),
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct BranchGoneArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The branches that are gone (as git spells them, e.g. `feature/login`).
    #[arg(required = true)]
    branches: Vec<String>,
    /// The namespace of their branch indexes (e.g. `acme`).
    #[arg(long)]
    namespace: String,
    /// Only show what would go.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run_branch_gone(args: BranchGoneArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let done = client
        .clean_branches(&args.namespace, &args.branches, false, args.dry_run)
        .await?;
    print_cleanup(&done);
    Ok(ExitCode::SUCCESS)
}

fn print_cleanup(done: &BranchCleanupView) {
    for removed in &done.removed {
        match removed.trash {
            Some(id) => println!(
                "moved {} (branch {}) into the trash as entry {id}",
                removed.index, removed.branch
            ),
            None => println!(
                "would move {} (branch {}) into the trash",
                removed.index, removed.branch
            ),
        }
    }
    for skipped in &done.skipped {
        println!("kept {}: {}", skipped.index, skipped.reason);
    }
    if done.removed.is_empty() && done.skipped.is_empty() {
        println!("no branch index to remove");
    }
}

fn print_report(report: &GcReport) {
    let verb = if report.dry_run { "would" } else { "did" };
    for removal in &report.retention {
        let what = match (&removal.project, &removal.version) {
            (Some(project), Some(version)) => format!("{} {project}=={version}", removal.index),
            _ => format!("index {}", removal.index),
        };
        println!(
            "{} {what} ({}) into the trash: {}",
            if report.dry_run {
                "would move"
            } else {
                "moved"
            },
            human_bytes(removal.bytes),
            removal.reason
        );
    }
    for entry in &report.released {
        println!(
            "release trash entry {}: {} ({} file(s))",
            entry.id,
            what(entry),
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

#[cfg(test)]
mod tests {
    #[test]
    fn branch_lists_read_plain_names_and_ls_remote_output() {
        let text = "main\n# comment\n\n3f2a9c\trefs/heads/feature/login\n  release/2.0  \n";
        assert_eq!(
            super::branch_list(text),
            ["main", "feature/login", "release/2.0"]
        );
    }
}
