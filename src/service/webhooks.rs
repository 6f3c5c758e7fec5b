//! Webhooks: subscriptions, the queue of deliveries, and the worker that sends them.
//!
//! A subscription hears about some events ([`WebhookEvent`]) on the indexes its pattern
//! matches. Making one takes `admin` on that pattern (it sends what happens there to
//! another host); its token owns it: the owner (or an admin over its pattern) lists it,
//! reads its delivery log and removes it, and deliveries stop when the owner's token is
//! revoked or expires.
//!
//! Data flow: the write that makes an event (a stage report, a finished or failed build,
//! a promotion or refusal, a yank) calls [`notify_tx`] inside its own transaction, which
//! queues one row per matching subscription (`webhook_deliveries`) — so a rolled-back
//! write queues nothing and a committed one cannot lose its deliveries to a crash. Every
//! replica runs a [`Deliverer`]: it claims due rows one at a time (a conditional update;
//! one replica wins each), signs and POSTs the body, and records the outcome; a failure
//! is retried with doubling waits until the attempts run out. The body is fixed when the
//! event happens, so a retry sends the same bytes with a fresh signature timestamp.
//!
//! Traps:
//! - Delivery is at least once: a replica that dies after the receiver answered but
//!   before recording it lets its claim lapse ([`HOLD`]) and another sends it again, with
//!   the same `X-Kiln-Delivery` id.
//! - Destinations obey the mirrors' address rules ([`WebhookClient`]), checked when the
//!   subscription is made and on every delivery (a name may change what it resolves to).
//! - Reports are the hottest write: with no subscription for `stage-result` on the index
//!   (the remembered list, [`Db::webhooks`]), a report stays one statement.

use std::time::Duration;

use super::auth::{self, Caller, Principal, admin_over};
use super::{ServiceError, now_rfc3339};
use crate::api::{
    CreatedWebhook, DeliveryView, WEBHOOK_DELIVERY_HEADER, WEBHOOK_EVENT_HEADER,
    WEBHOOK_SIGNATURE_HEADER, WebhookPayload, WebhookRequest, WebhookView,
};
use crate::config::WebhookConfig;
use crate::db::changes::Change;
use crate::db::{Attempted, ClaimedDelivery, Db, NewEvent, NewWebhook, WebhookRecord, WriteTx};
use crate::domain::scope;
use crate::domain::{DeliveryState, IndexName, WebhookEvent, webhook};
use crate::upstream::WebhookClient;

/// The longest a receiver may take to answer one delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery is held by its replica: past it, another may send it.
const HOLD: Duration = Duration::from_secs(60);
/// How often an idle worker looks for due deliveries (retries come due by time; other
/// replicas' new deliveries also wake it through the change feed).
const POLL: Duration = Duration::from_secs(1);
/// Deliveries one replica sends at a time.
const CONCURRENCY: usize = 8;
/// The longest wait between two attempts.
const MAX_RETRY_GAP: Duration = Duration::from_secs(3600);
const MAX_URL: usize = 2000;
const SECRET_LENGTHS: std::ops::RangeInclusive<usize> = 16..=256;
/// How long a finished delivery stays in its webhook's log.
pub const LOG_KEPT: Duration = Duration::from_secs(30 * 86_400);
/// How often each replica forgets finished deliveries older than [`LOG_KEPT`].
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Deliveries a log request shows by default, and at most.
pub const DEFAULT_LOG: u32 = 50;
const MAX_LOG: u32 = 500;

/// Makes a subscription; answers it with its secret (shown this once).
pub async fn create(
    db: &Db,
    client: &WebhookClient,
    caller: &Caller,
    request: &WebhookRequest,
) -> Result<CreatedWebhook, ServiceError> {
    let principal = caller.authenticated()?;
    let Some(owner) = principal.token_id else {
        return Err(ServiceError::Forbidden(
            "a webhook is owned by the token that makes it; use a token".into(),
        ));
    };
    if !scope::covers(&principal.scopes, &admin_over(&request.pattern)) {
        return Err(ServiceError::Forbidden(format!(
            "making a webhook for `{pattern}` needs `admin:{pattern}` (it sends what happens there to another host)",
            pattern = request.pattern
        )));
    }
    let mut events = request.events.clone();
    events.sort_unstable();
    events.dedup();
    if events.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "name at least one event to hear about: {}",
            WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
        )));
    }
    let url = request.url.trim();
    if url.len() > MAX_URL {
        return Err(ServiceError::Invalid(format!(
            "a webhook URL may be at most {MAX_URL} characters"
        )));
    }
    client
        .check_destination(url)
        .await
        .map_err(ServiceError::Invalid)?;
    let secret = match &request.secret {
        Some(secret) => {
            let fits = SECRET_LENGTHS.contains(&secret.len())
                && secret.chars().all(|c| c.is_ascii_graphic());
            if !fits {
                return Err(ServiceError::Invalid(format!(
                    "a webhook secret must be {}-{} printable ASCII characters without spaces (leave it out and Kiln makes one)",
                    SECRET_LENGTHS.start(),
                    SECRET_LENGTHS.end()
                )));
            }
            secret.clone()
        }
        None => auth::random_secret("whsec_"),
    };
    let now = now_rfc3339();
    let mut tx = db.begin_write().await?;
    let id = Db::insert_webhook_tx(
        &mut tx,
        &NewWebhook {
            pattern: &request.pattern,
            url,
            events: &events,
            secret: &secret,
            owner_token_id: owner,
            created_by: &principal.name,
            created_at: &now,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(webhook.id = id, webhook.pattern = %request.pattern, webhook.url = %url, created_by = %principal.name, "webhook created");
    Ok(CreatedWebhook {
        webhook: WebhookView {
            id,
            pattern: request.pattern.clone(),
            url: url.to_owned(),
            events,
            created_by: principal.name.clone(),
            created_at: now,
        },
        secret,
    })
}

/// The subscriptions the caller may manage: its own, and those within its `admin` scopes.
pub async fn list(db: &Db, caller: &Caller) -> Result<Vec<WebhookView>, ServiceError> {
    let principal = caller.authenticated()?;
    Ok(db
        .webhooks()
        .await?
        .iter()
        .filter(|w| manages(principal, w))
        .map(view)
        .collect())
}

/// Removes a subscription and its log; one the caller may not manage is "not found".
pub async fn remove(db: &Db, caller: &Caller, id: i64) -> Result<WebhookView, ServiceError> {
    let principal = caller.authenticated()?;
    let record = managed(db, principal, id).await?;
    let mut tx = db.begin_write().await?;
    Db::delete_webhook_tx(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(webhook.id = id, removed_by = %principal.name, "webhook removed");
    Ok(view(&record))
}

/// A subscription's newest `limit` deliveries, newest first.
pub async fn deliveries(
    db: &Db,
    caller: &Caller,
    id: i64,
    limit: Option<u32>,
) -> Result<Vec<DeliveryView>, ServiceError> {
    let principal = caller.authenticated()?;
    managed(db, principal, id).await?;
    let limit = limit.unwrap_or(DEFAULT_LOG).clamp(1, MAX_LOG);
    Ok(db
        .deliveries(id, limit)
        .await?
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            webhook: d.webhook_id,
            event: d.event,
            index: d.index.to_string(),
            state: d.state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
            next_attempt_at: (d.state == DeliveryState::Pending)
                .then(|| chrono::DateTime::from_timestamp_millis(d.next_attempt_ms))
                .flatten()
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
        })
        .collect())
}

async fn managed(db: &Db, principal: &Principal, id: i64) -> Result<WebhookRecord, ServiceError> {
    db.webhooks()
        .await?
        .iter()
        .find(|w| w.id == id && manages(principal, w))
        .cloned()
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no webhook with id {id} that this token may manage (`kiln webhook list` shows those)"
            ))
        })
}

/// Its owner, or a token with `admin` over its whole pattern.
fn manages(principal: &Principal, webhook: &WebhookRecord) -> bool {
    principal.token_id == Some(webhook.owner_token_id)
        || scope::covers(&principal.scopes, &admin_over(&webhook.pattern))
}

fn view(record: &WebhookRecord) -> WebhookView {
    WebhookView {
        id: record.id,
        pattern: record.pattern.clone(),
        url: record.url.clone(),
        events: record.events.clone(),
        created_by: record.created_by.clone(),
        created_at: record.created_at.clone(),
    }
}

/// Something that happened to a release, as deliveries report it.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// What happened.
    pub event: WebhookEvent,
    /// Where.
    pub index: &'a IndexName,
    /// The normalized project name.
    pub project: &'a str,
    /// The version.
    pub version: &'a str,
    /// Who acted.
    pub actor: &'a str,
    /// When (RFC 3339).
    pub at: &'a str,
    /// The event's detail.
    pub detail: serde_json::Value,
}

/// The subscriptions that hear `event` on `index` (remembered: usually none, no query).
pub async fn subscribers(
    db: &Db,
    event: WebhookEvent,
    index: &IndexName,
) -> Result<Vec<i64>, ServiceError> {
    Ok(db
        .webhooks()
        .await?
        .iter()
        .filter(|w| w.wants(event, index))
        .map(|w| w.id)
        .collect())
}

/// Queues `notice` for every subscription that hears it, inside the write that made it.
pub async fn notify_tx(db: &Db, tx: &mut WriteTx, notice: Notice<'_>) -> Result<(), ServiceError> {
    let subscribers = subscribers(db, notice.event, notice.index).await?;
    queue_tx(tx, &subscribers, notice).await
}

/// Records `event` in the event log and queues it, with `extra` fields added to its
/// detail, for every subscription that hears `as_webhook`: in the caller's transaction.
pub async fn record_event_tx(
    db: &Db,
    tx: &mut WriteTx,
    event: &NewEvent<'_>,
    as_webhook: WebhookEvent,
    extra: serde_json::Value,
) -> Result<(), ServiceError> {
    Db::insert_event_tx(tx, event).await?;
    let (Some(index), Some(project), Some(version)) = (event.index, event.project, event.version)
    else {
        return Ok(());
    };
    let detail = super::merged(event.detail.clone(), extra);
    let notice = Notice {
        event: as_webhook,
        index,
        project,
        version,
        actor: event.actor,
        at: event.at,
        detail,
    };
    notify_tx(db, tx, notice).await
}

/// Queues `notice` for `subscribers` (from [`subscribers`]) inside the write that made it.
pub async fn queue_tx(
    tx: &mut WriteTx,
    subscribers: &[i64],
    notice: Notice<'_>,
) -> Result<(), ServiceError> {
    if subscribers.is_empty() {
        return Ok(());
    }
    let payload = WebhookPayload {
        event: notice.event,
        index: notice.index.to_string(),
        project: notice.project.to_owned(),
        version: notice.version.to_owned(),
        actor: notice.actor.to_owned(),
        at: notice.at.to_owned(),
        detail: notice.detail,
    };
    let body = serde_json::to_string(&payload)
        .map_err(|e| ServiceError::Internal(format!("encoding a webhook body: {e}")))?;
    Db::enqueue_deliveries_tx(
        tx,
        subscribers,
        notice.event,
        notice.index,
        &body,
        (now_ms(), notice.at),
    )
    .await?;
    tx.changed(Change::Deliveries);
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The wait after failed attempt `attempt` (1 for the first): `first`, doubling, capped.
#[must_use]
pub fn retry_after(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(MAX_RETRY_GAP)
}

/// Sends the queued deliveries, on every replica; see the module documentation.
#[derive(Debug, Clone)]
pub struct Deliverer {
    db: Db,
    client: WebhookClient,
    config: WebhookConfig,
}

impl Deliverer {
    /// A worker over `db`'s queue.
    #[must_use]
    pub fn new(db: Db, client: WebhookClient, config: WebhookConfig) -> Self {
        Self { db, client, config }
    }

    /// Runs until `stop` is cancelled, then lets the deliveries in flight finish (each is
    /// bounded by [`DELIVERY_TIMEOUT`]).
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let mut in_flight = tokio::task::JoinSet::new();
        let mut pruned = tokio::time::Instant::now();
        self.prune().await;
        while !stop.is_cancelled() {
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                self.prune().await;
            }
            // Read before looking, so a delivery queued while looking still wakes us.
            let seen = self.db.stamps().now();
            // No subscription, no delivery (removing one removes its queue): no query.
            let idle = self.db.webhooks().await.is_ok_and(|all| all.is_empty());
            while !idle && in_flight.len() < CONCURRENCY {
                let now = now_ms();
                match self.db.claim_delivery(now, now + millis(HOLD)).await {
                    Ok(Some(delivery)) => {
                        let worker = self.clone();
                        in_flight.spawn(async move { worker.deliver(delivery).await });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the webhook queue; trying again shortly");
                        break;
                    }
                }
            }
            tokio::select! {
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = self.queued_since(seen) => {}
                () = tokio::time::sleep(POLL) => {}
                () = stop.cancelled() => {}
            }
        }
        let _ = tokio::time::timeout(DELIVERY_TIMEOUT + Duration::from_secs(1), async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    }

    /// Forgets finished deliveries older than [`LOG_KEPT`] (every replica does, hourly:
    /// deleting what is already gone is a no-op).
    async fn prune(&self) {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(LOG_KEPT).unwrap_or(chrono::Duration::days(30));
        let cutoff = cutoff.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        match self.db.prune_deliveries(&cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "forgot webhook deliveries older than 30 days"
            ),
            Err(e) => tracing::warn!(error = %e, "could not prune the webhook delivery log"),
        }
    }

    /// Resolves once a delivery was queued (here or, on PostgreSQL, on another replica)
    /// after the counter read `seen`.
    async fn queued_since(&self, seen: u64) {
        let stamps = self.db.stamps();
        loop {
            let woken = stamps.woken().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // While other replicas' changes may be missed, only the poll finds work.
            if stamps.is_live() && !stamps.unchanged_since(seen, &[Change::Deliveries]) {
                return;
            }
            woken.await;
        }
    }

    /// One attempt of a claimed delivery, and its outcome recorded.
    async fn deliver(&self, delivery: ClaimedDelivery) {
        let (state, status, error) = self.attempt(&delivery).await;
        let next_attempt_ms = match state {
            DeliveryState::Pending => {
                now_ms() + millis(retry_after(self.config.first_retry, delivery.attempt))
            }
            _ => 0,
        };
        crate::metrics::Metrics::count(
            &crate::metrics::metrics().webhook_deliveries,
            match state {
                DeliveryState::Delivered => "delivered",
                DeliveryState::Pending => "retry",
                DeliveryState::Failed => "failed",
            },
        );
        if state == DeliveryState::Delivered {
            tracing::info!(
                webhook.delivery = delivery.id, webhook.event = %delivery.event,
                attempt = delivery.attempt, status, "webhook delivered"
            );
        } else {
            tracing::warn!(
                webhook.delivery = delivery.id, webhook.event = %delivery.event,
                attempt = delivery.attempt, state = %state, error = error.as_deref().unwrap_or(""),
                "webhook delivery failed"
            );
        }
        let at = now_rfc3339();
        let settled = self
            .db
            .settle_delivery(
                delivery.id,
                &Attempted {
                    state,
                    status,
                    error: error.as_deref(),
                    next_attempt_ms,
                    at: &at,
                },
            )
            .await;
        if let Err(e) = settled {
            // The claim lapses and the delivery is tried again.
            tracing::warn!(webhook.delivery = delivery.id, error = %e, "could not record a webhook attempt");
        }
    }

    /// Sends it once: its new state, the receiver's status and why it failed.
    async fn attempt(
        &self,
        delivery: &ClaimedDelivery,
    ) -> (DeliveryState, Option<u16>, Option<String>) {
        match auth::why_inactive(&self.db, delivery.owner_token_id).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                return (
                    DeliveryState::Failed,
                    None,
                    Some(format!("not sent: {why}")),
                );
            }
            Err(e) => return (self.retry_or_fail(delivery), None, Some(e.to_string())),
        }
        let timestamp = chrono::Utc::now().timestamp();
        let headers = [
            (WEBHOOK_EVENT_HEADER, delivery.event.to_string()),
            (WEBHOOK_DELIVERY_HEADER, delivery.id.to_string()),
            (
                WEBHOOK_SIGNATURE_HEADER,
                webhook::sign(&delivery.secret, timestamp, delivery.body.as_bytes()),
            ),
        ];
        match self
            .client
            .post(&delivery.url, &headers, delivery.body.clone())
            .await
        {
            Ok(status) if (200..300).contains(&status) => {
                (DeliveryState::Delivered, Some(status), None)
            }
            Ok(status) => (
                self.retry_or_fail(delivery),
                Some(status),
                Some(format!("the receiver answered HTTP {status}")),
            ),
            Err(why) => (self.retry_or_fail(delivery), None, Some(why)),
        }
    }

    fn retry_or_fail(&self, delivery: &ClaimedDelivery) -> DeliveryState {
        if delivery.attempt >= self.config.attempts {
            DeliveryState::Failed
        } else {
            DeliveryState::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_an_hour() {
        let first = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=12).map(|n| retry_after(first, n).as_secs()).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
        );
        assert_eq!(retry_after(first, 0), first);
        assert_eq!(retry_after(first, u32::MAX), MAX_RETRY_GAP);
        assert_eq!(
            retry_after(Duration::from_millis(200), 2),
            Duration::from_millis(400)
        );
    }
}
