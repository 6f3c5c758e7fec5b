//! `kiln index …`

use std::process::ExitCode;

use clap::Subcommand;

use kiln::client::Client;
use kiln::domain::{IndexKind, IndexName, IndexSettings};
use kiln::http::indexes::IndexView;
use kiln::service::indexes::IndexPatch;

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// List every index.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one index.
    Show {
        /// `namespace/name`
        name: IndexName,
    },
    /// Create an index.
    Create {
        /// `namespace/name`
        name: IndexName,
        /// Comma-separated bases, in resolution order, e.g. `root/master`.
        #[arg(long, value_delimiter = ',')]
        bases: Vec<IndexName>,
        /// Allow deleting files (branch indexes).
        #[arg(long)]
        volatile: bool,
        /// Refuse direct uploads; files arrive only by promotion.
        #[arg(long)]
        promotion_only: bool,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change an index's settings.
    Modify {
        /// `namespace/name`
        name: IndexName,
        /// Replace the bases (comma-separated; pass an empty string for none).
        #[arg(long, value_delimiter = ',')]
        bases: Option<Vec<String>>,
        /// Set the volatile flag.
        #[arg(long)]
        volatile: Option<bool>,
        /// Set the promotion-only flag.
        #[arg(long)]
        promotion_only: Option<bool>,
        /// Replace the description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an index (refused while another index uses it as a base).
    Delete {
        /// `namespace/name`
        name: IndexName,
    },
}

fn print_index(view: &IndexView, server: &Client) {
    let settings = &view.index.settings;
    let bases: Vec<String> = settings.bases.iter().map(ToString::to_string).collect();
    println!("{}", view.index.name);
    println!("  kind:           {}", settings.kind.as_str());
    println!(
        "  bases:          {}",
        if bases.is_empty() {
            "(none)".into()
        } else {
            bases.join(", ")
        }
    );
    println!("  volatile:       {}", settings.volatile);
    println!("  promotion_only: {}", settings.promotion_only);
    if !settings.description.is_empty() {
        println!("  description:    {}", settings.description);
    }
    println!("  simple index:   {}", server.url(&view.simple_url));
    println!("  upload URL:     {}", server.url(&view.upload_url));
}

pub async fn run(client: &Client, command: IndexCommand) -> anyhow::Result<ExitCode> {
    match command {
        IndexCommand::List { json } => {
            let all = client.list_indexes().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for view in &all {
                    let s = &view.index.settings;
                    let mut flags = Vec::new();
                    if s.volatile {
                        flags.push("volatile");
                    }
                    if s.promotion_only {
                        flags.push("promotion-only");
                    }
                    let bases: Vec<String> = s.bases.iter().map(ToString::to_string).collect();
                    println!(
                        "{:<40} {:<6} bases=[{}] {}",
                        view.index.name.to_string(),
                        s.kind.as_str(),
                        bases.join(","),
                        flags.join(" ")
                    );
                }
            }
        }
        IndexCommand::Show { name } => print_index(&client.get_index(&name).await?, client),
        IndexCommand::Create {
            name,
            bases,
            volatile,
            promotion_only,
            description,
        } => {
            let settings = IndexSettings {
                kind: IndexKind::Stage,
                bases,
                volatile,
                promotion_only,
                description,
                branch: None,
            };
            let view = client.create_index(&name, &settings).await?;
            println!("created index {}", view.index.name);
            print_index(&view, client);
        }
        IndexCommand::Modify {
            name,
            bases,
            volatile,
            promotion_only,
            description,
        } => {
            let bases = bases
                .map(|list| {
                    list.iter()
                        .filter(|b| !b.is_empty())
                        .map(|b| b.parse::<IndexName>())
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            let patch = IndexPatch {
                bases,
                volatile,
                promotion_only,
                description,
            };
            let view = client.modify_index(&name, &patch).await?;
            println!("modified index {}", view.index.name);
            print_index(&view, client);
        }
        IndexCommand::Delete { name } => {
            client.delete_index(&name).await?;
            println!("deleted index {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
