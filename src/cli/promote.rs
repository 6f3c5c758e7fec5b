//! `kiln promote PROJECT==VERSION…`: move green releases to production, as the policy says.
//! Several releases go in one transaction (a library and the application that needs it);
//! `kiln promote PROJECT VERSION` is the one-release spelling.
//! Exit codes: 0 promoted (or already promoted, or a passing dry run), 1 refused by policy,
//! 2 usage or server error.

use std::process::ExitCode;

use clap::Args;

use super::ClientArgs;
use kiln::api::{PromoteRequest, PromotionOutcome, PromotionResult, ReleaseRef};
use kiln::domain::IndexName;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The releases, as `PROJECT==VERSION` (several are promoted together, all or none),
    /// or one release as `PROJECT VERSION`.
    #[arg(value_name = "RELEASE", required = true)]
    releases: Vec<String>,
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

/// The releases named on the command line.
fn parse_releases(args: &[String]) -> anyhow::Result<Vec<ReleaseRef>> {
    if let [project, version] = args
        && !project.contains("==")
        && !version.contains("==")
    {
        return Ok(vec![ReleaseRef {
            project: project.clone(),
            version: version.clone(),
        }]);
    }
    args.iter()
        .map(|arg| {
            arg.parse::<ReleaseRef>().map_err(|e| {
                anyhow::anyhow!("{e}, or `kiln promote PROJECT VERSION` for one release")
            })
        })
        .collect()
}

fn print_outcome(outcome: &PromotionOutcome) {
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

pub async fn run(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let mut releases = parse_releases(&args.releases)?.into_iter();
    let first = releases
        .next()
        .ok_or_else(|| anyhow::anyhow!("name at least one release"))?;
    let client = args.client.client()?;
    let outcome = client
        .promote(&PromoteRequest {
            project: first.project,
            version: first.version,
            together: releases.collect(),
            from: args.from,
            to: args.to,
            dry_run: args.dry_run,
        })
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_outcome(&outcome);
        for partner in &outcome.together {
            print_outcome(partner);
        }
        if outcome.result == PromotionResult::Refused && !outcome.together.is_empty() {
            println!("nothing was promoted: releases promoted together go all or none");
        }
    }
    Ok(if outcome.result == PromotionResult::Refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn releases_are_pairs_or_pins() {
        let one = parse_releases(&args(&["demo", "1.0"])).unwrap();
        assert_eq!(
            (one[0].project.as_str(), one[0].version.as_str()),
            ("demo", "1.0")
        );
        let two = parse_releases(&args(&["lib==1.2", "app==3.4"])).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].version, "3.4");
        assert!(parse_releases(&args(&["demo"])).is_err());
        assert!(parse_releases(&args(&["lib==1.2", "app"])).is_err());
    }
}
