//! `kiln index …`

use std::process::ExitCode;

use clap::Subcommand;

use kiln::api::{IndexView, ModifyIndex};
use kiln::client::Client;
use kiln::config::parse_duration;
use kiln::domain::{
    DEFAULT_MIRROR_TTL_SECONDS, IndexKind, IndexName, IndexSettings, MirrorSettings,
};

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
        /// Reading needs a token with `read` on this index (and so does reading any index
        /// that inherits from it).
        #[arg(long)]
        private: bool,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Make a mirror (caching proxy) of this upstream simple index, e.g.
        /// `https://pypi.org/simple/`.
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        #[command(flatten)]
        upstream: MirrorArgs,
        /// Names of this (stage) index's own projects that mirrors further down the chain
        /// may still serve (comma-separated; `*` for all). Everything else this index has
        /// files of is hidden from mirrors (the dependency-confusion guard).
        #[arg(long, value_delimiter = ',')]
        mirror_allow: Vec<String>,
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
        /// Set the private flag (reading needs a token with `read`).
        #[arg(long)]
        private: Option<bool>,
        /// Replace the description.
        #[arg(long)]
        description: Option<String>,
        /// Mirrors: a new upstream simple-index URL.
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        #[command(flatten)]
        upstream: MirrorArgs,
        /// Stage indexes: replace the names mirrors may still serve (comma-separated; an
        /// empty string for none).
        #[arg(long, value_delimiter = ',')]
        mirror_allow: Option<Vec<String>>,
        /// Allow clearing `--promotion-only` (production is append-only); needs admin
        /// on `*`.
        #[arg(long)]
        force: bool,
    },
    /// Delete an index (refused while another index uses it as a base).
    Delete {
        /// `namespace/name`
        name: IndexName,
        /// Delete a promotion-only (production) index; needs admin on `*`.
        #[arg(long)]
        force: bool,
    },
}

/// Upstream options of a mirror.
#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// How long a mirrored project page is served before the upstream is asked again,
    /// e.g. `30m` [default: 30m].
    #[arg(long = "mirror-ttl", value_name = "DURATION")]
    ttl: Option<String>,
    /// HTTP basic user for the upstream.
    #[arg(long = "mirror-username")]
    username: Option<String>,
    /// HTTP basic password for the upstream (sent only to the upstream's host).
    #[arg(
        long = "mirror-password",
        env = "KILN_MIRROR_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// An origin (`https://host[:port]`) files may be downloaded from besides the
    /// upstream's own (repeatable; `--mirror-file-origin ''` clears the list). Default:
    /// only the upstream's origin, plus files.pythonhosted.org for pypi.org.
    #[arg(long = "mirror-file-origin", value_name = "ORIGIN")]
    file_origins: Option<Vec<String>>,
}

impl MirrorArgs {
    /// The file origins given, without empty ones (`''` clears).
    fn file_origins(&self) -> Option<Vec<String>> {
        self.file_origins
            .as_ref()
            .map(|list| list.iter().filter(|o| !o.is_empty()).cloned().collect())
    }

    fn ttl_seconds(&self) -> anyhow::Result<Option<u64>> {
        self.ttl
            .as_deref()
            .map(|t| {
                parse_duration(t)
                    .map(|d| d.as_secs())
                    .map_err(|e| anyhow::anyhow!("--mirror-ttl: {e}"))
            })
            .transpose()
    }
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
    if let Some(mirror) = &settings.mirror {
        println!("  upstream:       {}", mirror.url);
        println!("  page TTL:       {}s", mirror.ttl_seconds);
        if let Some(user) = &mirror.username {
            println!("  upstream user:  {user}");
        }
        let origins: Vec<String> = mirror
            .allowed_origins()
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        println!("  connects to:    {}", origins.join(", "));
    } else {
        println!("  volatile:       {}", settings.volatile);
        println!("  promotion_only: {}", settings.promotion_only);
    }
    if settings.private {
        println!("  private:        true (reading needs a token with `read`)");
    }
    if !settings.mirror_allow.is_empty() {
        println!("  mirror_allow:   {}", settings.mirror_allow.join(", "));
    }
    if let Some(usage) = &view.usage {
        println!(
            "  holds:          {} files, {} bytes ({} bytes no other index lists)",
            usage.files, usage.bytes, usage.own_bytes
        );
    }
    if !view.mirror_shadowed.is_empty() {
        println!(
            "  hidden from mirrors (private names): {}",
            view.mirror_shadowed.join(", ")
        );
    }
    if !settings.description.is_empty() {
        println!("  description:    {}", settings.description);
    }
    println!("  simple index:   {}", server.url(&view.simple_url));
    println!("  upload URL:     {}", server.url(&view.upload_url));
}

async fn print_list(client: &Client, json: bool) -> anyhow::Result<()> {
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
            if s.private {
                flags.push("private");
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
    Ok(())
}

pub async fn run(client: &Client, command: IndexCommand) -> anyhow::Result<ExitCode> {
    match command {
        IndexCommand::List { json } => {
            print_list(client, json).await?;
        }
        IndexCommand::Show { name } => print_index(&client.get_index(&name).await?, client),
        IndexCommand::Create {
            name,
            bases,
            volatile,
            promotion_only,
            private,
            description,
            mirror,
            upstream,
            mirror_allow,
        } => {
            let ttl_seconds = upstream.ttl_seconds()?;
            let mirror = mirror.map(|url| MirrorSettings {
                url,
                username: upstream.username.clone(),
                password: upstream.password.clone(),
                ttl_seconds: ttl_seconds.unwrap_or(DEFAULT_MIRROR_TTL_SECONDS),
                file_origins: upstream.file_origins().unwrap_or_default(),
            });
            let settings = IndexSettings {
                kind: if mirror.is_some() {
                    IndexKind::Mirror
                } else {
                    IndexKind::Stage
                },
                bases,
                volatile,
                promotion_only,
                private,
                description,
                branch: None,
                mirror,
                mirror_allow,
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
            private,
            description,
            mirror,
            upstream,
            mirror_allow,
            force,
        } => {
            let bases = bases
                .map(|list| {
                    list.iter()
                        .filter(|b| !b.is_empty())
                        .map(|b| b.parse::<IndexName>())
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            let patch = ModifyIndex {
                bases,
                volatile,
                promotion_only,
                private,
                description,
                mirror_url: mirror,
                mirror_username: upstream.username.clone(),
                mirror_password: upstream.password.clone(),
                mirror_ttl_seconds: upstream.ttl_seconds()?,
                mirror_allow: mirror_allow
                    .map(|names| names.into_iter().filter(|n| !n.is_empty()).collect()),
                mirror_file_origins: upstream.file_origins(),
                force,
            };
            let view = client.modify_index(&name, &patch).await?;
            println!("modified index {}", view.index.name);
            print_index(&view, client);
        }
        IndexCommand::Delete { name, force } => {
            client.delete_index(&name, force).await?;
            println!("deleted index {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
