//! The metadata database: indexes, files, tokens, build leases, stage results, promotions
//! and events.
//!
//! One query layer serves every backend: queries go through sqlx's `Any` driver, written
//! in the SQL that SQLite and PostgreSQL share (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`, integers for flags, RFC 3339 text for times). Only the migrations and the
//! connection set-up differ per backend, so no service or handler knows which one runs.
//!
//! Conventions:
//! - A method on `&self` runs on the pool (one statement, or its own transaction). An
//!   associated function whose first argument is `tx: &mut WriteTx` runs inside the
//!   caller's write transaction, and its name ends in `_tx`.
//! - Rows are read into private `…Row` structs of stored text and integers, then decoded
//!   once into public `…Record` structs of domain types; a value that does not decode is
//!   [`DbError::Corrupt`] (table, column, value), never a default.
//!
//! Traps:
//! - Writers do not take turns fleet-wide. On SQLite a write transaction starts with a
//!   write (`kiln_meta.generation`), which takes SQLite's one write lock up front, so a
//!   transaction never has to upgrade a read snapshot (which fails with `SQLITE_BUSY`
//!   instead of waiting); SQLite serializes writers anyway. On PostgreSQL writers run in
//!   parallel under READ COMMITTED, and an invariant that is a check followed by a write
//!   holds by a unique constraint, a conditional write, or [`WriteTx::lock`] on just what
//!   it concerns (a transaction-scoped advisory lock; see `docs/architecture.md` for the
//!   list). A transaction takes at most one such lock per scope kind (blobs: a file and
//!   its METADATA, in digest order), in a fixed order: project, then blob.
//! - A write names what it changes ([`WriteTx::changed`]); caches and build waiters learn
//!   of it from there, on every replica ([`changes`]). A write that forgets to name a
//!   change leaves stale pages behind; one that names none (stage results, heartbeats,
//!   events) leaves every cache alone, by design.
//! - On PostgreSQL a failed statement aborts its transaction, so a unique violation is
//!   handled by rolling back (dropping the [`WriteTx`]) and reading afresh, never by
//!   carrying on in the same transaction.
//! - A row that points at a blob is written only after the blob is durable (see
//!   `service::publish`), under [`Lock::Blob`], and the writer checks after commit that
//!   the bytes are still there: garbage collection (`gc`) deletes a blob nothing names
//!   under the same lock. Purging a mirror's page deletes blob rows nothing else refers
//!   to (`mirrors::purge_mirror_project_tx`).

mod builds;
pub mod changes;
mod files;
mod gc;
mod indexes;
mod mirrors;
mod promotions;
mod results;
mod tokens;
pub mod transfer;
mod trash;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use builds::{BuildInProgress, BuildKey, BuildRecord, BuildState, LeaseHolder};
pub use files::{FileBrief, FileRecord, IndexStats, ListedFile, NewFile, OnIndex};
pub use gc::{ReleaseAge, Unnamed};
pub use mirrors::{
    MirrorCacheRow, MirrorFileRecord, MirrorProjectRecord, NewMirrorFile, PageStatus,
};
pub use promotions::{
    EventFilter, EventRecord, EventWindow, NewEvent, NewPromotion, PromotionRecord,
};
pub use results::{NewResult, ResultRecord};
pub use tokens::{NewToken, TokenRecord};
pub use trash::{NewTrash, TrashRecord};
pub use webhooks::{Attempted, ClaimedDelivery, DeliveryRecord, NewWebhook, WebhookRecord};

/// The longest a request waits for a PostgreSQL connection before it answers 503.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most indexes, and most tokens, remembered between requests.
const MAX_REMEMBERED_ROWS: usize = 10_000;

/// Which engine the database URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file, owned by one `kiln serve` process.
    Sqlite,
    /// A PostgreSQL server, shared by any number of replicas.
    Postgres,
}

impl Backend {
    /// The engine's name, as `/+health` reports it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

/// What went wrong talking to the database, by outcome.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique key already holds a row.
    #[error("already exists")]
    Conflict,
    /// Another process already serves this SQLite database.
    #[error(
        "database `{0}` is in use by another `kiln serve` (SQLite allows one server process; use PostgreSQL to run several)"
    )]
    InUse(String),
    /// The database URL names an engine this build does not support.
    #[error("unsupported database URL `{0}`: use `sqlite://PATH` or `postgres://USER@HOST/DB`")]
    UnsupportedUrl(String),
    /// A stored value that is not what its column may hold (an unknown kind, state or
    /// outcome, a malformed digest or JSON document): never read as a default.
    #[error("corrupt row in table `{table}`: column `{column}` holds `{value}`: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The stored value (cut to 100 characters).
        value: String,
        /// Why it does not decode.
        reason: String,
    },
    /// Anything else: connection, I/O.
    #[error(transparent)]
    Other(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Decodes a stored text value into its domain type; a value that does not parse is
/// [`DbError::Corrupt`], naming the table, the column and the value.
pub(crate) fn decode<T>(
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<T, DbError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| corrupt(table, column, value, &e))
}

/// A [`DbError::Corrupt`] for `value` in `table`.`column`.
pub(crate) fn corrupt(
    table: &'static str,
    column: &'static str,
    value: &str,
    reason: &dyn std::fmt::Display,
) -> DbError {
    DbError::Corrupt {
        table,
        column,
        value: value.chars().take(100).collect(),
        reason: reason.to_string(),
    }
}

/// Decodes a stored integer that must not be negative (sizes, counts).
pub(crate) fn decode_u64(
    table: &'static str,
    column: &'static str,
    value: i64,
) -> Result<u64, DbError> {
    u64::try_from(value).map_err(|e| corrupt(table, column, &value.to_string(), &e))
}

/// Decodes a stored 0/1 flag.
pub(crate) fn decode_flag(
    table: &'static str,
    column: &'static str,
    value: i64,
) -> Result<bool, DbError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(corrupt(
            table,
            column,
            &other.to_string(),
            &"a flag is 0 or 1",
        )),
    }
}

/// Decodes a stored JSON document.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<T, DbError> {
    serde_json::from_str(value).map_err(|e| corrupt(table, column, value, &e))
}

impl DbError {
    /// True when the database did not answer (no connection within the pool's timeout, a
    /// dropped or refused connection, a server shutting down or starting up): the
    /// request may succeed if retried, and changed nothing.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Other(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // Class 08 (connection exception) and 57P0x (shutting down, starting up).
            Self::Other(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
            _ => false,
        }
    }

    fn from_write(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Other(err),
        }
    }
}

/// What a check-then-write invariant concerns: two transactions that take the same
/// lock run one after the other (on PostgreSQL; SQLite runs writers one at a time anyway).
#[derive(Debug, Clone, Copy)]
pub enum Lock<'a> {
    /// One project on one index: its uploads, builds, promotions into it, yanks and a
    /// mirror's listing of it.
    Project(i64, &'a str),
    /// The index graph: creating, changing or deleting an index (base cycles, dependents).
    Indexes,
    /// One blob, by digest: naming it in a row (an upload, a mirror fetch) and collecting
    /// it (garbage collection) take turns. Taken after any project lock.
    Blob(&'a str),
}

impl Lock<'_> {
    /// The advisory lock's 64-bit key: the first 8 bytes of SHA-256 over the scope.
    fn key(self) -> i64 {
        let text = match self {
            Self::Project(index, project) => format!("project\0{index}\0{project}"),
            Self::Indexes => "indexes".to_owned(),
            Self::Blob(digest) => format!("blob\0{digest}"),
        };
        let digest = sha2::Sha256::digest(text.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// A write transaction (see the module docs). It dereferences to the connection, so
/// queries run on `&mut **tx`.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    changes: Vec<changes::Change>,
    stamps: Arc<changes::Stamps>,
    fleet: Option<Arc<changes::Fleet>>,
}

impl WriteTx {
    /// Waits for, then holds until commit or rollback, the lock on `scope` (PostgreSQL's
    /// `pg_advisory_xact_lock`; SQLite already holds its one write lock).
    pub async fn lock(&mut self, scope: Lock<'_>) -> Result<(), DbError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT CAST(pg_advisory_xact_lock($1) AS TEXT)")
                .bind(scope.key())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Records that this transaction changes `change` (announced once it commits).
    pub fn changed(&mut self, change: changes::Change) {
        self.changes.push(change);
    }

    /// Commits, then lets caches and waiters know what changed: this process's at once,
    /// and on PostgreSQL every other replica's, waiting (boundedly) until those that show
    /// pages have applied it, so that the caller's acknowledgement holds on any replica.
    pub async fn commit(mut self) -> Result<(), DbError> {
        let mut seen = std::collections::HashSet::new();
        self.changes.retain(|c| seen.insert(c.clone()));
        let announced = match (&self.fleet, self.changes.is_empty()) {
            (Some(fleet), false) => {
                let (n, payload) = fleet.announce(&self.changes);
                sqlx::query("SELECT CAST(pg_notify('kiln_changes', $1) AS TEXT)")
                    .bind(payload)
                    .execute(&mut *self.tx)
                    .await?;
                Some((Arc::clone(fleet), n))
            }
            _ => None,
        };
        self.tx.commit().await?;
        self.stamps.apply(&self.changes);
        if let Some((fleet, n)) = announced
            && self.changes.iter().any(changes::Change::needs_acks)
        {
            fleet.await_acks(n).await;
        }
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The database handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// When each change last happened, as far as this process knows.
    stamps: Arc<changes::Stamps>,
    /// On PostgreSQL: hearing and telling the other replicas.
    fleet: Option<Arc<changes::Fleet>>,
    /// Indexes by name, kept until their settings change.
    indexes: Arc<changes::Remembered<crate::domain::IndexName, crate::domain::Index>>,
    /// Tokens by the SHA-256 of their secret, kept until any token changes.
    tokens: Arc<changes::Remembered<String, TokenRecord>>,
    /// Every webhook subscription, kept until one is added or removed.
    webhooks: Arc<changes::Remembered<(), Arc<Vec<WebhookRecord>>>>,
    /// What each index holds, read at most every [`INDEX_STATS_TTL`] (a count over every
    /// file of the server, for the home page).
    index_stats: Arc<std::sync::Mutex<Option<files::StatsSnapshot>>>,
    /// Held for the life of the handle: the SQLite file's single-owner lock.
    _owner_lock: Option<Arc<std::fs::File>>,
}

impl Db {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let owner_lock = match backend {
            Backend::Sqlite => sqlite_owner_lock(url)?,
            Backend::Postgres => None,
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .min_connections(1)
            // A database that does not answer is a 503 within seconds (pip retries it),
            // not a request that hangs. SQLite's waits are only contention: longer.
            .acquire_timeout(match backend {
                Backend::Sqlite => Duration::from_secs(30),
                Backend::Postgres => POSTGRES_ACQUIRE_TIMEOUT,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; FULL makes a commit
                        // durable before the client hears "200 OK".
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        // On PostgreSQL the migrator holds an advisory lock while it runs, so replicas
        // starting together apply each migration once and the others wait for it.
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await?,
        }
        let stamps = Arc::new(changes::Stamps::default());
        let fleet = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(changes::Fleet::start(url, pool.clone(), Arc::clone(&stamps)).await)
            }
        };
        Ok(Self {
            pool,
            backend,
            stamps,
            fleet,
            indexes: Arc::new(changes::Remembered::new(MAX_REMEMBERED_ROWS)),
            index_stats: Arc::default(),
            tokens: Arc::new(changes::Remembered::new(MAX_REMEMBERED_ROWS)),
            webhooks: Arc::new(changes::Remembered::new(1)),
            _owner_lock: owner_lock,
        })
    }

    /// Starts a write transaction (on SQLite, taking the write lock first).
    pub async fn begin_write(&self) -> Result<WriteTx, DbError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Sqlite {
            sqlx::query("UPDATE kiln_meta SET generation = generation + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        Ok(WriteTx {
            tx,
            backend: self.backend,
            changes: Vec::new(),
            stamps: Arc::clone(&self.stamps),
            fleet: self.fleet.clone(),
        })
    }

    /// When each change last happened: what caches check their entries against, and
    /// what build waiters wait on (woken by this replica's commits and, on PostgreSQL,
    /// by every other replica's).
    #[must_use]
    pub fn stamps(&self) -> &changes::Stamps {
        &self.stamps
    }

    /// Which engine this handle talks to (for `/+health` and logs, never for queries).
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True once the first-start layout has been created.
    pub async fn is_bootstrapped(&self) -> Result<bool, DbError> {
        let at: Option<String> =
            sqlx::query_scalar("SELECT bootstrapped_at FROM kiln_meta WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(at.is_some())
    }

    /// Claims the first start: true if this transaction is the one that bootstraps (a
    /// second replica starting at the same moment gets false and leaves the layout alone).
    pub async fn claim_bootstrap_tx(tx: &mut WriteTx, at: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE kiln_meta SET bootstrapped_at = $1 WHERE id = 1 AND bootstrapped_at IS NULL",
        )
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many builds are in each state (for `/metrics`).
    pub async fn builds_by_state(&self) -> Result<Vec<(String, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT state, CAST(COUNT(*) AS BIGINT) FROM builds GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Connections the pool holds, and how many of them are idle.
    #[must_use]
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// A cheap liveness probe for `/+health`.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned (on PostgreSQL, after
    /// telling the other replicas not to wait for this one).
    pub async fn close(&self) {
        if let Some(fleet) = &self.fleet {
            fleet.leave().await;
        }
        self.pool.close().await;
    }
}

/// Takes the exclusive lock that makes this process the SQLite file's only server.
fn sqlite_owner_lock(url: &str) -> Result<Option<Arc<std::fs::File>>, DbError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| DbError::Other(sqlx::Error::Io(e)))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Arc::new(file))),
        Err(std::fs::TryLockError::WouldBlock) => Err(DbError::InUse(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(DbError::Other(sqlx::Error::Io(e))),
    }
}

/// Builds `$first, $first+1, …` for an `IN (…)` list of `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub use crate::domain::redact_url;

/// Decodes a stored `(namespace, name)` pair; a row that breaks the grammar is corrupt.
fn decode_index_name(namespace: &str, name: &str) -> Result<crate::domain::IndexName, DbError> {
    crate::domain::IndexName::from_parts(namespace, name)
        .map_err(|e| DbError::Other(sqlx::Error::Decode(e.to_string().into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finished webhook deliveries are forgotten after the cutoff; pending ones never.
    #[tokio::test]
    async fn old_finished_deliveries_are_pruned_and_pending_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let token: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (name, secret_sha256, scopes, created_at) VALUES ('o', 'x', '[]', 'now') RETURNING id",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let hook: i64 = sqlx::query_scalar(
            "INSERT INTO webhooks (pattern, url, events, secret, owner_token_id, created_by, created_at) \
             VALUES ('*', 'https://h.example/', '[\"yank\"]', 's', $1, 'o#1', 'now') RETURNING id",
        )
        .bind(token)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        for (state, finished) in [
            ("delivered", Some("2026-01-01T00:00:00.000000Z")),
            ("failed", Some("2026-01-02T00:00:00.000000Z")),
            ("delivered", Some("2026-03-01T00:00:00.000000Z")),
            ("pending", None),
        ] {
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, event, index_name, body, state, next_attempt_ms, created_at, finished_at) \
                 VALUES ($1, 'yank', 'root/master', '{}', $2, 0, '2026-01-01T00:00:00.000000Z', $3)",
            )
            .bind(hook)
            .bind(state)
            .bind(finished)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let gone = db
            .prune_deliveries("2026-02-01T00:00:00.000000Z")
            .await
            .unwrap();
        assert_eq!(gone, 2, "the two finished before the cutoff");
        let left: Vec<String> = db
            .deliveries(hook, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.state.to_string())
            .collect();
        assert_eq!(left, ["pending", "delivered"]);
    }

    /// One holder at a time; the holder renews; a lapsed lease goes to the next taker.
    #[tokio::test]
    async fn a_fleet_lease_has_one_holder_until_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        assert_eq!(
            db.take_fleet_lease("gc", "a", 1000, 2000).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            db.take_fleet_lease("gc", "b", 1500, 2500).await.unwrap(),
            Err(("a".to_owned(), 2000)),
            "b is told who holds it and until when"
        );
        assert_eq!(
            db.take_fleet_lease("gc", "a", 1900, 2900).await.unwrap(),
            Ok(()),
            "the holder renews"
        );
        assert_eq!(
            db.take_fleet_lease("other", "b", 1900, 2900).await.unwrap(),
            Ok(()),
            "leases are per name"
        );
        assert_eq!(
            db.take_fleet_lease("gc", "b", 2900, 3900).await.unwrap(),
            Ok(()),
            "lapsed"
        );
        db.release_fleet_lease("gc", "a").await.unwrap();
        assert!(
            db.take_fleet_lease("gc", "a", 3000, 4000)
                .await
                .unwrap()
                .is_err(),
            "a stale holder's release does not free another's lease"
        );
        db.release_fleet_lease("gc", "b").await.unwrap();
        assert_eq!(
            db.take_fleet_lease("gc", "a", 3000, 4000).await.unwrap(),
            Ok(())
        );
    }

    /// What names a blob keeps it: a file, a file's METADATA, a mirror file, unexpired
    /// trash; a blob named only by expired trash is collectable.
    #[tokio::test]
    async fn unnamed_blobs_are_those_no_row_lists() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let digest = |c: char| c.to_string().repeat(64);
        for c in ['a', 'b', 'c', 'd', 'e', 'f'] {
            sqlx::query("INSERT INTO blobs (sha256, size, created_at) VALUES ($1, 10, 'now')")
                .bind(digest(c))
                .execute(&db.pool)
                .await
                .unwrap();
        }
        let index: i64 = sqlx::query_scalar(
            "INSERT INTO indexes (namespace, name, kind, volatile, promotion_only, created_at, updated_at) \
             VALUES ('root', 't', 'stage', 0, 0, 'now', 'now') RETURNING id",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        // a: a file's bytes; b: its METADATA
        sqlx::query(
            "INSERT INTO files (index_id, project, version, filename, kind, sha256, size, metadata_sha256, uploaded_at, uploaded_by) \
             VALUES ($1, 'p', '1', 'p-1-py3-none-any.whl', 'wheel', $2, 10, $3, 'now', 't')",
        )
        .bind(index)
        .bind(digest('a'))
        .bind(digest('b'))
        .execute(&db.pool)
        .await
        .unwrap();
        // c: a mirror file
        sqlx::query(
            "INSERT INTO mirror_files (index_id, project, version, filename, kind, sha256, url) \
             VALUES ($1, 'm', '1', 'm-1.tar.gz', 'sdist', $2, 'https://x.example/m-1.tar.gz')",
        )
        .bind(index)
        .bind(digest('c'))
        .execute(&db.pool)
        .await
        .unwrap();
        // d: trash that expires at 5000; e: trash that expired at 500; f: nothing
        for (c, expires, id) in [('d', 5000, 1), ('e', 500, 2)] {
            sqlx::query(
                "INSERT INTO trash (id, index_id, kind, project, version, reason, removed_by, removed_at_ms, expires_at_ms) \
                 VALUES ($1, $2, 'release', 'q', '1', 'r', 't', 0, $3)",
            )
            .bind(id)
            .bind(index)
            .bind(expires)
            .execute(&db.pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO trash_files (id, trash_id, index_id, project, version, filename, kind, sha256, size, yanked, uploaded_at, uploaded_by) \
                 VALUES ($5, $1, $2, 'q', '1', $3, 'sdist', $4, 10, 0, 'now', 't')",
            )
            .bind(id)
            .bind(index)
            .bind(format!("q-{c}.tar.gz"))
            .bind(digest(c))
            .bind(id + 100)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let unnamed: Vec<String> = db
            .unnamed_blobs(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.sha256.to_string())
            .collect();
        assert_eq!(unnamed, [digest('e'), digest('f')]);
        assert!(
            db.blob_listed(&digest('e')).await.unwrap(),
            "until released, trash names it"
        );
        assert!(!db.blob_listed(&digest('f')).await.unwrap());
    }

    /// A stored value no code path writes is an error naming table, column and value,
    /// never read as some default (unparsable environments used to read as empty).
    #[tokio::test]
    async fn unknown_stored_values_are_errors_not_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let good = "a".repeat(64);
        let index_id: i64 = sqlx::query_scalar(
            "INSERT INTO indexes (namespace, name, kind, volatile, promotion_only, created_at, updated_at) \
             VALUES ('root', 't', 'stage', 0, 0, 'now', 'now') RETURNING id",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        // (`outcome` has a CHECK constraint on both engines; these columns do not.)
        for (column, value) in [("sha256", "not-a-digest"), ("environment", "{not json")] {
            sqlx::query("DELETE FROM stage_results")
                .execute(&db.pool)
                .await
                .unwrap();
            let (digest, environment) = match column {
                "sha256" => (value.to_owned(), "{}"),
                _ => (good.clone(), value),
            };
            sqlx::query("INSERT INTO blobs (sha256, size, created_at) VALUES ($1, 1, 'now') ON CONFLICT (sha256) DO NOTHING")
                .bind(&digest)
                .execute(&db.pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO stage_results (sha256, stage, run_id, outcome, exit_code, duration_ms, environment, log_tail, reported_by, reported_at, index_id) \
                 VALUES ($1, 'unit', 'r', 'pass', 0, 1, $2, '', 'ci', '2026-01-01T00:00:00Z', $3)",
            )
            .bind(&digest)
            .bind(environment)
            .bind(index_id)
            .execute(&db.pool)
            .await
            .unwrap();
            let err = db.results_of(&[digest.as_str()]).await.unwrap_err();
            match err {
                DbError::Corrupt {
                    table,
                    column: found,
                    value: stored,
                    ..
                } => {
                    assert_eq!(
                        (table, found, stored.as_str()),
                        ("stage_results", column, value)
                    );
                }
                other => panic!("{column}: expected Corrupt, got {other:?}"),
            }
        }
    }

    /// A database at migration 5 (results per sha256, four event kinds) upgrades in
    /// place: each result goes to the index the bytes were first uploaded to, results of
    /// bytes no index lists are dropped, and events keep their rows.
    #[tokio::test]
    async fn the_events_query_filters_what_a_caller_may_see_in_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let names: Vec<crate::domain::IndexName> = ["secret/a", "ac_me/x", "acxme/y", "open/b"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let mut tx = db.begin_write().await.unwrap();
        for (i, name) in names.iter().enumerate() {
            for _ in 0..if i == 0 { 50 } else { 1 } {
                let event = NewEvent {
                    kind: crate::domain::EventKind::IndexChanged,
                    index: Some(name),
                    project: None,
                    version: None,
                    actor: "t",
                    at: "t",
                    detail: serde_json::json!({}),
                };
                Db::insert_event_tx(&mut tx, &event).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        let only = |names: &[&str], namespaces: &[&str]| EventFilter {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            ..EventFilter::default()
        };
        let shown = |events: Vec<EventRecord>| -> Vec<String> {
            events
                .iter()
                .filter_map(|e| e.index.as_ref().map(ToString::to_string))
                .collect()
        };
        let open = db
            .list_events(None, &EventWindow::default(), 1, &only(&["open/b"], &[]))
            .await
            .unwrap();
        assert_eq!(
            shown(open),
            ["open/b"],
            "fifty hidden events are skipped in the query"
        );
        // `_` in a namespace is literal, not a LIKE wildcard.
        let admin = db
            .list_events(None, &EventWindow::default(), 10, &only(&[], &["ac_me"]))
            .await
            .unwrap();
        assert_eq!(shown(admin), ["ac_me/x"]);
        assert!(
            db.list_events(None, &EventWindow::default(), 10, &only(&[], &[]))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn builds_and_their_files_survive_the_build_target_migration() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&pool)
            .await
            .unwrap();
        let mut before = sqlx::migrate!("migrations/sqlite");
        before.migrations = std::borrow::Cow::Owned(before.migrations[..7].to_vec());
        before.run(&pool).await.unwrap();
        let a = "a".repeat(64);
        for statement in [
            "INSERT INTO indexes (id, namespace, name, kind, volatile, promotion_only, created_at, updated_at) VALUES (1, 'root', 'master', 'stage', 0, 0, 't', 't')".to_owned(),
            format!("INSERT INTO blobs (sha256, size, created_at) VALUES ('{a}', 1, 't')"),
            "INSERT INTO builds (id, index_id, project, version, state, lease_id, attempt, builder, expires_at_ms, created_at, updated_at, source_commit) VALUES (7, 1, 'demo', '1', 'ready', 'l', 1, 'ci', 0, 't', 't', 'abcdef0')".to_owned(),
            format!("INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by, build_id) VALUES (1, 'demo', '1', 'demo-1-py3-none-any.whl', 'wheel', '{a}', 1, 't', 'ci', 7)"),
        ] {
            sqlx::query(&statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let db = Db::connect(&url).await.unwrap();
        let files = db.files_of_project(&[1], "demo").await.unwrap();
        assert_eq!(files[0].build_id, Some(7), "the file still names its build");
        let key = BuildKey {
            index_id: 1,
            project: "demo",
            version: "1",
            target: None,
        };
        let build = db.find_build(key).await.unwrap().unwrap();
        assert_eq!((build.id, build.target), (7, None));
    }

    #[tokio::test]
    async fn results_and_events_survive_the_verdict_migration() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.path().display());
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let mut before = sqlx::migrate!("migrations/sqlite");
        before.migrations = std::borrow::Cow::Owned(before.migrations[..5].to_vec());
        before.run(&pool).await.unwrap();
        let a = "a".repeat(64);
        let orphan = "b".repeat(64);
        for statement in [
            "INSERT INTO indexes (id, namespace, name, kind, volatile, promotion_only, created_at, updated_at) VALUES (1, 'root', 'master', 'stage', 0, 0, 't', 't')".to_owned(),
            "INSERT INTO indexes (id, namespace, name, kind, volatile, promotion_only, created_at, updated_at) VALUES (2, 'other', 'x', 'stage', 0, 0, 't', 't')".to_owned(),
            format!("INSERT INTO blobs (sha256, size, created_at) VALUES ('{a}', 1, 't'), ('{orphan}', 1, 't')"),
            format!("INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by) VALUES (1, 'demo', '1.0', 'demo-1.0-py3-none-any.whl', 'wheel', '{a}', 1, 't', 'ci')"),
            format!("INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by) VALUES (2, 'demo', '1.0', 'demo-1.0-py3-none-any.whl', 'wheel', '{a}', 1, 't', 'ci')"),
            format!("INSERT INTO stage_results (sha256, stage, run_id, outcome, duration_ms, environment, log_tail, reported_by, reported_at) VALUES ('{a}', 'unit', 'r', 'pass', 1, '{{}}', '', 'ci', 't')"),
            format!("INSERT INTO stage_results (sha256, stage, run_id, outcome, duration_ms, environment, log_tail, reported_by, reported_at) VALUES ('{orphan}', 'unit', 'r', 'fail', 1, '{{}}', '', 'ci', 't')"),
            "INSERT INTO events (kind, index_name, project, version, actor, at, detail) VALUES ('yank', 'root/master', 'demo', '1.0', 'ci', 't', '{}')".to_owned(),
        ] {
            sqlx::query(&statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let db = Db::connect(&url).await.unwrap();
        let results = db.results_of(&[a.as_str(), orphan.as_str()]).await.unwrap();
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!(results[0].index.to_string(), "root/master");
        assert_eq!(results[0].index_id, 1);
        let everything = EventFilter {
            everything: true,
            ..EventFilter::default()
        };
        let events = db
            .list_events(None, &EventWindow::default(), 10, &everything)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, crate::domain::EventKind::Yank);
        assert_eq!(
            events[0]
                .project
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("demo")
        );
    }

    #[test]
    fn builds_placeholders() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
