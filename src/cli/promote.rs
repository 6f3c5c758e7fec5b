//! `kiln promote PROJECT VERSION`: move a green release to production, as the policy says.
//! Exit codes: 0 promoted (or already promoted, or a passing dry run), 1 refused by policy,
//! 2 usage or server error.

use std::process::ExitCode;

use clap::Args;

use super::ClientArgs;
use kiln::api::{PromoteRequest, PromotionResult};
use kiln::domain::IndexName;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The project.
    project: String,
    /// The version.
    #[arg(value_name = "VERSION")]
    release_version: String,
    /// The source index (default: the only policy's source).
    #[arg(long)]
    from: Option<IndexName>,
    /// The target index (default: the only policy's target).
    #[arg(long)]
    to: Option<IndexName>,
    /// Show every rule, pass or fail, and why; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let outcome = client
        .promote(&PromoteRequest {
            project: args.project,
            version: args.release_version,
            from: args.from,
            to: args.to,
            dry_run: args.dry_run,
        })
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        let what = format!(
            "{} {} from {} to {} (policy {})",
            outcome.project, outcome.version, outcome.from, outcome.to, outcome.policy
        );
        match outcome.result {
            PromotionResult::Promoted => println!("promoted {what}"),
            PromotionResult::AlreadyPromoted => println!("already promoted: {what}"),
            PromotionResult::WouldPromote => println!("would promote {what} (dry run)"),
            PromotionResult::Refused => println!("REFUSED: {what}"),
        }
        for check in &outcome.checks {
            println!(
                "  [{}] {}: expected {}, found {}",
                if check.passed { "pass" } else { "FAIL" },
                check.rule,
                check.expected,
                check.found
            );
        }
        if let Some(record) = &outcome.promotion {
            println!(
                "  audit record #{} by {} at {}",
                record.id, record.promoted_by, record.promoted_at
            );
        }
    }
    Ok(if outcome.result == PromotionResult::Refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
