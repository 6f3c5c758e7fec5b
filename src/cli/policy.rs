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
            Ok(ExitCode::SUCCESS)
        }
    }
}
