//! `kiln token create|list|revoke`: scoped, expiring API tokens.

use std::process::ExitCode;

use clap::Subcommand;

use kiln::api::TokenRequest;
use kiln::client::Client;
use kiln::domain::Scope;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown once; Kiln keeps only a hash).
    ///
    /// Scopes are `permission:pattern`: permissions read, upload, report, promote, admin
    /// (admin implies the rest); patterns `*`, `namespace/*` or `namespace/name`. A CI
    /// token: `--scope upload:acme/* --scope report:acme/*`. A release token:
    /// `--scope promote:acme/prod`. You need `admin` on every pattern you grant.
    Create {
        /// A label, recorded as the uploader/reporter/promoter, e.g. `ci-acme`.
        name: String,
        /// A scope (repeat, or separate with commas).
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
        /// When it stops working: a duration from now (`90d`, `12h`) or a date or
        /// RFC 3339 time (`2027-06-30`).
        #[arg(long)]
        expires: Option<String>,
        /// Print JSON (with the secret) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the tokens this token may manage (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; the next request with it is refused.
    Revoke {
        /// The id `kiln token list` shows.
        id: i64,
    },
}

/// `90d`, `12h`, `30m` from now; anything else (a date, an RFC 3339 time) is passed
/// through for the server to read and check.
fn expiry(text: &str) -> String {
    let relative = text.ends_with(['d', 'h', 'm', 's']) && !text.contains('-');
    match kiln::config::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
    {
        Some(delta) if relative => (chrono::Utc::now() + delta)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        _ => text.to_owned(),
    }
}

pub async fn run(client: &Client, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
            json,
        } => {
            let expires_at = expires.as_deref().map(expiry);
            let created = client
                .create_token(&TokenRequest {
                    name,
                    scopes,
                    expires_at,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                let scopes: Vec<String> = created
                    .token
                    .scopes
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                eprintln!(
                    "created token {} `{}` with {}{} — the secret below is shown once:",
                    created.token.id,
                    created.token.name,
                    scopes.join(", "),
                    created
                        .token
                        .expires_at
                        .as_deref()
                        .map(|t| format!(", expiring {t}"))
                        .unwrap_or_default()
                );
                println!("{}", created.secret);
            }
        }
        TokenCommand::List { json } => {
            let tokens = client.list_tokens().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                for t in &tokens {
                    let scopes: Vec<String> = t.scopes.iter().map(ToString::to_string).collect();
                    println!(
                        "{:>4}  {:<24} {:<8} {:<40} expires {}",
                        t.id,
                        t.name,
                        t.state,
                        scopes.join(","),
                        t.expires_at.as_deref().unwrap_or("never")
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let token = client.revoke_token(id).await?;
            println!(
                "revoked token {} `{}` at {}",
                token.id,
                token.name,
                token.revoked_at.unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
