//! `kiln webhook add|list|remove|deliveries`: signed notifications of builds, stage
//! results, promotions and yanks.

use std::process::ExitCode;

use clap::Subcommand;

use kiln::api::WebhookRequest;
use kiln::client::Client;
use kiln::domain::{IndexPattern, WebhookEvent};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Subscribe a URL to events on the indexes a pattern matches, and print the
    /// signing secret (shown once).
    ///
    /// Each delivery is a JSON POST signed in `X-Kiln-Signature: t=<unix seconds>,
    /// sha256=<hex>`: the HMAC-SHA256 of `"{t}.{body}"` keyed by the secret. Failed
    /// deliveries are retried with doubling waits. Needs `admin` on the pattern.
    Add {
        /// The receiver's URL (http or https).
        url: String,
        /// The indexes: `*`, `namespace/*` or `namespace/name`.
        #[arg(long)]
        pattern: IndexPattern,
        /// An event (repeat, or separate with commas): build-ready, build-failed,
        /// stage-result, promotion, promotion-refused, yank.
        #[arg(long = "event", value_delimiter = ',', required = true)]
        events: Vec<WebhookEvent>,
        /// The signing secret (16-256 characters) [default: Kiln makes one].
        #[arg(long, env = "KILN_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Print JSON (with the secret) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the webhooks this token owns or administers (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook and its delivery log.
    Remove {
        /// The id `kiln webhook list` shows.
        id: i64,
    },
    /// Show a webhook's newest deliveries: state, attempts, the receiver's last answer.
    Deliveries {
        /// The id `kiln webhook list` shows.
        id: i64,
        /// How many of the newest.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, command: WebhookCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Add {
            url,
            pattern,
            events,
            secret,
            json,
        } => {
            let created = client
                .create_webhook(&WebhookRequest {
                    pattern,
                    url,
                    events,
                    secret,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                let hook = &created.webhook;
                eprintln!(
                    "created webhook {} for {} on {} -> {}; its signing secret is below (shown once):",
                    hook.id,
                    events_text(&hook.events),
                    hook.pattern,
                    hook.url
                );
                println!("{}", created.secret);
            }
        }
        WebhookCommand::List { json } => {
            let hooks = client.list_webhooks().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hooks)?);
            } else {
                for h in &hooks {
                    println!(
                        "{:>4}  {:<20} {:<48} {}  (by {})",
                        h.id,
                        h.pattern.to_string(),
                        h.url,
                        events_text(&h.events),
                        h.created_by
                    );
                }
            }
        }
        WebhookCommand::Remove { id } => {
            let hook = client.remove_webhook(id).await?;
            println!(
                "removed webhook {} ({} -> {})",
                hook.id, hook.pattern, hook.url
            );
        }
        WebhookCommand::Deliveries { id, limit, json } => {
            let log = client.webhook_deliveries(id, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                for d in &log {
                    let answer = match (d.last_status, &d.last_error) {
                        (_, Some(error)) => error.clone(),
                        (Some(status), None) => format!("HTTP {status}"),
                        (None, None) => String::new(),
                    };
                    let when = d
                        .next_attempt_at
                        .as_deref()
                        .map(|t| format!(" next at {t}"))
                        .unwrap_or_default();
                    println!(
                        "{:>6}  {:<18} {:<24} {:<9} attempts {:<2} {answer}{when}",
                        d.id,
                        d.event.to_string(),
                        d.index,
                        d.state.to_string(),
                        d.attempts
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn events_text(events: &[WebhookEvent]) -> String {
    events
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
