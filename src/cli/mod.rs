//! Subcommands. Exit codes: 0 success, 2 usage or server error; `kiln stage` exits with
//! its command's status (2 if the command passed but its verdict was not recorded);
//! `kiln promote` exits 1 when the policy refuses.

mod ensure;
mod hook_args;
mod index;
mod mirror;
mod policy;
mod promote;
mod promotions;
mod report;
mod serve;
mod stage;
mod status;
mod token;
mod transfer;
mod trash;
mod webhook;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use kiln::client::{Client, DEFAULT_SERVER};

/// Kiln: a Python package index server for CI.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the index server.
    Serve(serve::ServeArgs),
    /// Create, show, list, modify and delete indexes.
    Index {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: index::IndexCommand,
    },
    /// Create, list and revoke scoped API tokens.
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: token::TokenCommand,
    },
    /// Subscribe URLs to signed notifications: builds, stage results, promotions, yanks.
    Webhook {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: webhook::WebhookCommand,
    },
    /// See what a mirror index has cached; refresh or purge one project.
    Mirror {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: mirror::MirrorCommand,
    },
    /// Make sure this CI build's wheel is on its branch index (building it only if this
    /// runner wins the build lease) and print where it is.
    Ensure(ensure::EnsureArgs),
    /// Run a CI stage against the build's exact wheel and record its verdict:
    /// `kiln stage unit -- tox -e unit`.
    Stage(stage::StageArgs),
    /// Record a stage verdict for this build's wheel without wrapping the command.
    Report(report::ReportArgs),
    /// Show a release's build state and stage matrix.
    Status(status::StatusArgs),
    /// Promote a green release to production, as the policy says.
    Promote(promote::PromoteArgs),
    /// The promotion audit trail.
    Promotions {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: promotions::PromotionsCommand,
    },
    /// Yank a release on an index (PEP 592): pip and uv skip it unless pinned exactly.
    Yank(promotions::YankArgs),
    /// Undo a yank.
    Unyank(promotions::YankArgs),
    /// Promotions, refusals and yanks, oldest first.
    Events(promotions::EventsArgs),
    /// Remove a release (or one file) from a non-production index, into the trash.
    Remove(trash::RemoveArgs),
    /// See removed releases and files, and restore them.
    Trash {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: trash::TrashCommand,
    },
    /// Release expired trash and delete the bytes nothing lists (`--dry-run` to see first).
    Gc(trash::GcArgs),
    /// Copy a running server's data (rows and blobs) into a directory, for `kiln import`.
    Export(transfer::ExportArgs),
    /// Load a `kiln export` directory into an empty database and store (any backend).
    Import(serve::ImportArgs),
    /// Tell Kiln about branches: `kiln branch gone NAME…` removes their branch indexes.
    Branch {
        #[command(subcommand)]
        action: BranchCommand,
    },
    /// Validate promotion policy files.
    Policy {
        #[command(subcommand)]
        action: policy::PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BranchCommand {
    /// These branches are gone: their branch indexes go into the trash.
    Gone(trash::BranchGoneArgs),
}

/// How client subcommands reach the server.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The Kiln server URL.
    #[arg(long, env = "KILN_SERVER", default_value = DEFAULT_SERVER, global = true)]
    server: String,
    /// API token (needed for changes, and for reading private indexes).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.server, self.token.clone())?)
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Index { client, action } => index::run(&client.client()?, action).await,
        Command::Mirror { client, action } => mirror::run(&client.client()?, action).await,
        Command::Token { client, action } => token::run(&client.client()?, action).await,
        Command::Webhook { client, action } => webhook::run(&client.client()?, action).await,
        Command::Ensure(args) => ensure::run(args).await,
        Command::Stage(args) => stage::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Policy { action } => policy::run(&action),
        Command::Promote(args) => promote::run(args).await,
        Command::Promotions { client, action } => promotions::run_list(&client, &action).await,
        Command::Yank(args) => promotions::run_yank(args, true).await,
        Command::Unyank(args) => promotions::run_yank(args, false).await,
        Command::Events(args) => promotions::run_events(args).await,
        Command::Remove(args) => trash::run_remove(args).await,
        Command::Trash { client, action } => trash::run_trash(&client.client()?, action).await,
        Command::Gc(args) => trash::run_gc(args).await,
        Command::Export(args) => transfer::run_export(args).await,
        Command::Import(args) => serve::run_import(args).await,
        Command::Branch {
            action: BranchCommand::Gone(args),
        } => trash::run_branch_gone(args).await,
    }
}
