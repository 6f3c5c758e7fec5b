//! `kiln policy check DIR`: validate promotion policy files without starting a server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use kiln::policy::Policies;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse every `*.toml` in DIR and list the rules, or say what is wrong and where.
    Check {
        /// The policies directory.
        dir: PathBuf,
    },
}

pub fn run(command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { dir } => {
            let policies = Policies::load_dir(dir)?;
            if policies.rules.is_empty() {
                println!(
                    "{}: no promotion rules (nothing can reach a promotion-only index)",
                    dir.display()
                );
            }
            for rule in &policies.rules {
                println!(
                    "{} ({}): {} -> {} when {} green{}{}",
                    rule.name,
                    rule.file,
                    rule.from,
                    rule.to,
                    rule.required_stages.join(", "),
                    if rule.final_releases_only {
                        ", final releases only"
                    } else {
                        ""
                    },
                    if rule.auto { ", automatic" } else { ", manual" }
                );
            }
            for rule in &policies.retention {
                let mut keeps = Vec::new();
                if let Some(idle) = rule.branch_idle_for {
                    keeps.push(format!(
                        "branch indexes idle {} are removed",
                        humantime(idle)
                    ));
                }
                if let Some(n) = rule.keep_newest {
                    let younger = rule
                        .keep_younger_than
                        .map(|young| format!(", and any younger than {}", humantime(young)))
                        .unwrap_or_default();
                    let keep = format!("the newest {n} releases per project stay{younger}");
                    keeps.push(keep);
                }
                println!(
                    "retention {} ({}): on {}: {}",
                    rule.name,
                    rule.file,
                    rule.indexes,
                    keeps.join("; ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `30d`, `12h`, `90s`: the largest whole unit.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}
