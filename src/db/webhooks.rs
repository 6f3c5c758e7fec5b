//! Webhook subscriptions and their delivery queue.
//!
//! A delivery is a row written in the same transaction as what it reports (a promotion,
//! a stage result, a failed build…), so an event is queued exactly when it happened. Every
//! replica's worker takes due rows with a conditional claim ([`Db::claim_delivery`]): a
//! row is held by whoever set `claimed_until_ms` first, so one replica sends it; a replica
//! that dies holding it lets the claim lapse and another sends it again (a receiver that
//! must not act twice keys on `X-Kiln-Delivery`).

use std::sync::Arc;

use super::changes::Change;
use super::{Db, DbError, WriteTx, decode, decode_json};
use crate::domain::{DeliveryState, IndexName, IndexPattern, WebhookEvent};

/// A subscription as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Row id, which `kiln webhook remove` takes.
    pub id: i64,
    /// The indexes it hears about.
    pub pattern: IndexPattern,
    /// Where deliveries go.
    pub url: String,
    /// What it hears about.
    pub events: Vec<WebhookEvent>,
    /// The token that made it (reads its log; deliveries stop when it is revoked).
    pub owner_token_id: i64,
    /// That token's label and id.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
}

impl WebhookRecord {
    /// True when it asked to hear `event` on `index`.
    #[must_use]
    pub fn wants(&self, event: WebhookEvent, index: &IndexName) -> bool {
        self.events.contains(&event) && self.pattern.matches(index)
    }
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: i64,
    pattern: String,
    url: String,
    events: String,
    owner_token_id: i64,
    created_by: String,
    created_at: String,
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = DbError;

    fn try_from(row: WebhookRow) -> Result<Self, DbError> {
        const TABLE: &str = "webhooks";
        let events: Vec<String> = decode_json(TABLE, "events", &row.events)?;
        Ok(Self {
            id: row.id,
            pattern: decode(TABLE, "pattern", &row.pattern)?,
            url: row.url,
            events: events
                .iter()
                .map(|e| decode(TABLE, "events", e))
                .collect::<Result<_, _>>()?,
            owner_token_id: row.owner_token_id,
            created_by: row.created_by,
            created_at: row.created_at,
        })
    }
}

const WEBHOOK_COLUMNS: &str = "id, pattern, url, events, owner_token_id, created_by, created_at";

/// A subscription to store.
#[derive(Debug, Clone)]
pub struct NewWebhook<'a> {
    /// The indexes it hears about.
    pub pattern: &'a IndexPattern,
    /// Where deliveries go.
    pub url: &'a str,
    /// What it hears about.
    pub events: &'a [WebhookEvent],
    /// The HMAC key.
    pub secret: &'a str,
    /// The token that makes it.
    pub owner_token_id: i64,
    /// That token's label and id.
    pub created_by: &'a str,
    /// RFC 3339.
    pub created_at: &'a str,
}

/// One delivery as its log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Row id, sent as `X-Kiln-Delivery`.
    pub id: i64,
    /// The subscription.
    pub webhook_id: i64,
    /// What it reports.
    pub event: WebhookEvent,
    /// The index it concerns.
    pub index: IndexName,
    /// Where it stands.
    pub state: DeliveryState,
    /// How many times it was sent.
    pub attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened (RFC 3339).
    pub created_at: String,
    /// When it was delivered or given up (RFC 3339).
    pub finished_at: Option<String>,
    /// While pending: when the next attempt is due (unix milliseconds).
    pub next_attempt_ms: i64,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    webhook_id: i64,
    event: String,
    index_name: String,
    state: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    next_attempt_ms: i64,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = DbError;

    fn try_from(row: DeliveryRow) -> Result<Self, DbError> {
        const TABLE: &str = "webhook_deliveries";
        let number = |column: &'static str, value: i64| {
            super::corrupt(TABLE, column, &value.to_string(), &"out of range")
        };
        Ok(Self {
            id: row.id,
            webhook_id: row.webhook_id,
            event: decode(TABLE, "event", &row.event)?,
            index: decode(TABLE, "index_name", &row.index_name)?,
            state: decode(TABLE, "state", &row.state)?,
            attempts: u32::try_from(row.attempts).map_err(|_| number("attempts", row.attempts))?,
            last_status: row
                .last_status
                .map(|s| u16::try_from(s).map_err(|_| number("last_status", s)))
                .transpose()?,
            last_error: row.last_error,
            created_at: row.created_at,
            finished_at: row.finished_at,
            next_attempt_ms: row.next_attempt_ms,
        })
    }
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event, index_name, state, attempts, last_status, last_error, created_at, finished_at, next_attempt_ms";

/// A delivery this replica holds and must send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Row id.
    pub id: i64,
    /// What it reports.
    pub event: WebhookEvent,
    /// The JSON body.
    pub body: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Where it goes.
    pub url: String,
    /// The HMAC key.
    pub secret: String,
    /// The subscription's owner.
    pub owner_token_id: i64,
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub struct Attempted<'a> {
    /// Delivered, given up, or pending (to retry at `next_attempt_ms`).
    pub state: DeliveryState,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<&'a str>,
    /// When to retry (pending only).
    pub next_attempt_ms: i64,
    /// Now, RFC 3339 (recorded as `finished_at` unless pending).
    pub at: &'a str,
}

impl Db {
    /// Stores a subscription; returns its id.
    pub async fn insert_webhook_tx(
        tx: &mut WriteTx,
        webhook: &NewWebhook<'_>,
    ) -> Result<i64, DbError> {
        tx.changed(Change::Webhooks);
        let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
        let events = serde_json::json!(events).to_string();
        sqlx::query_scalar(
            "INSERT INTO webhooks (pattern, url, events, secret, owner_token_id, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(webhook.pattern.to_string())
        .bind(webhook.url)
        .bind(events)
        .bind(webhook.secret)
        .bind(webhook.owner_token_id)
        .bind(webhook.created_by)
        .bind(webhook.created_at)
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::from_write)
    }

    /// Removes a subscription and its delivery log; false when there was none.
    pub async fn delete_webhook_tx(tx: &mut WriteTx, id: i64) -> Result<bool, DbError> {
        tx.changed(Change::Webhooks);
        // Explicitly, not only by the cascade: SQLite enforces it only with the pragma on.
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every subscription, oldest first: remembered until one is added or removed (every
    /// upload, report, promotion and yank asks, and the answer is almost always "none").
    pub async fn webhooks(&self) -> Result<Arc<Vec<WebhookRecord>>, DbError> {
        if let Some(all) = self.webhooks.get(&(), &self.stamps) {
            return Ok(all);
        }
        let read_at = self.stamps.now();
        let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let all: Arc<Vec<WebhookRecord>> = Arc::new(
            rows.into_iter()
                .map(WebhookRecord::try_from)
                .collect::<Result<_, _>>()?,
        );
        self.webhooks
            .put((), read_at, vec![Change::Webhooks], Arc::clone(&all));
        Ok(all)
    }

    /// Queues one delivery of `body` to each of `webhooks`, due at once.
    pub async fn enqueue_deliveries_tx(
        tx: &mut WriteTx,
        webhooks: &[i64],
        event: WebhookEvent,
        index: &IndexName,
        body: &str,
        (now_ms, at): (i64, &str),
    ) -> Result<(), DbError> {
        for webhook in webhooks {
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, event, index_name, body, state, next_attempt_ms, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
            )
            .bind(webhook)
            .bind(event.as_str())
            .bind(index.to_string())
            .bind(body)
            .bind(now_ms)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Takes the most overdue pending delivery no replica holds, holding it until
    /// `hold_until_ms` and counting the attempt; `None` when nothing is due (or another
    /// replica took it first).
    pub async fn claim_delivery(
        &self,
        now_ms: i64,
        hold_until_ms: i64,
    ) -> Result<Option<ClaimedDelivery>, DbError> {
        const TABLE: &str = "webhook_deliveries";
        // Looked for first with a read: on SQLite an UPDATE takes the write lock even
        // when it matches nothing, and idle replicas look every second.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_ms <= $1 AND claimed_until_ms <= $1 LIMIT 1",
        )
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(None);
        }
        // The conditions are repeated outside the subquery: on PostgreSQL a replica that
        // loses the race re-checks them on the row the winner wrote, and updates nothing.
        let claimed: Option<(i64, i64, String, String, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET claimed_until_ms = $1, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM webhook_deliveries \
                 WHERE state = 'pending' AND next_attempt_ms <= $2 AND claimed_until_ms <= $2 \
                 ORDER BY next_attempt_ms, id LIMIT 1) \
             AND state = 'pending' AND claimed_until_ms <= $2 \
             RETURNING id, webhook_id, event, body, attempts",
        )
        .bind(hold_until_ms)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, webhook_id, event, body, attempts)) = claimed else {
            return Ok(None);
        };
        let target: Option<(String, String, i64)> =
            sqlx::query_as("SELECT url, secret, owner_token_id FROM webhooks WHERE id = $1")
                .bind(webhook_id)
                .fetch_optional(&self.pool)
                .await?;
        // Removed in between: its deliveries went with it.
        let Some((url, secret, owner_token_id)) = target else {
            return Ok(None);
        };
        Ok(Some(ClaimedDelivery {
            id,
            event: decode(TABLE, "event", &event)?,
            body,
            attempt: u32::try_from(attempts).map_err(|_| {
                super::corrupt(TABLE, "attempts", &attempts.to_string(), &"out of range")
            })?,
            url,
            secret,
            owner_token_id,
        }))
    }

    /// Records how an attempt of a held delivery ended (releasing the hold).
    pub async fn settle_delivery(&self, id: i64, attempt: &Attempted<'_>) -> Result<(), DbError> {
        let finished = (attempt.state != DeliveryState::Pending).then_some(attempt.at);
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, last_status = $2, last_error = $3, \
             next_attempt_ms = $4, claimed_until_ms = 0, finished_at = $5 \
             WHERE id = $6 AND state = 'pending'",
        )
        .bind(attempt.state.as_str())
        .bind(attempt.status.map(i64::from))
        .bind(attempt.error)
        .bind(attempt.next_attempt_ms)
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets deliveries that finished (delivered or given up) before `cutoff` (RFC 3339,
    /// the form every `finished_at` is written in, so text order is time order); pending
    /// ones are never forgotten. Answers how many went.
    pub async fn prune_deliveries(&self, cutoff: &str) -> Result<u64, DbError> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND finished_at < $1",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The newest `limit` deliveries of one subscription, newest first.
    pub async fn deliveries(
        &self,
        webhook: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, DbError> {
        sqlx::query_as::<_, DeliveryRow>(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY id DESC LIMIT {limit}"
        ))
        .bind(webhook)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(DeliveryRecord::try_from)
        .collect()
    }
}
