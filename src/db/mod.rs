//! The metadata database: indexes, files, tokens.
//!
//! One query layer serves every backend: queries go through sqlx's `Any` driver, written
//! in the SQL that SQLite and PostgreSQL share (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`, integers for flags, RFC 3339 text for times). Only the migrations and the
//! connection set-up differ per backend, so no service or handler knows which one runs.
//!
//! Traps:
//! - Every write transaction starts by bumping `kiln_meta.generation` ([`Db::begin_write`]).
//!   On SQLite that takes the write lock up front, so a transaction never has to upgrade a
//!   read snapshot (which fails with `SQLITE_BUSY` instead of waiting); and the counter is
//!   what in-process caches compare against to notice any write, from any process.
//! - A row that points at a blob is written only after the blob is durable (see
//!   `service::publish`); nothing here deletes blobs.

mod files;
mod indexes;
mod tokens;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use files::{FileRecord, NewFile};
pub use tokens::TokenRecord;

/// Which engine the database URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
}

/// What went wrong talking to the database, by outcome.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique key already holds a row.
    #[error("already exists")]
    Conflict,
    /// The database URL names an engine this build does not support.
    #[error("unsupported database URL `{0}`: use `sqlite://PATH` (PostgreSQL support is planned)")]
    UnsupportedUrl(String),
    /// Anything else: connection, I/O, corrupt data.
    #[error(transparent)]
    Other(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl DbError {
    fn from_write(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Other(err),
        }
    }
}

/// A write transaction that already holds the write lock (see the module docs).
pub type WriteTx = sqlx::Transaction<'static, sqlx::Any>;

/// The database handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
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
        let db = Self { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
        }
        Ok(())
    }

    /// Which engine this is.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction, bumping the generation counter first.
    pub async fn begin_write(&self) -> Result<WriteTx, DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE kiln_meta SET generation = generation + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The current generation: it changes on every committed write.
    pub async fn generation(&self) -> Result<i64, DbError> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM kiln_meta WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
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
    pub async fn claim_bootstrap(tx: &mut WriteTx, at: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE kiln_meta SET bootstrapped_at = $1 WHERE id = 1 AND bootstrapped_at IS NULL",
        )
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A cheap liveness probe for `/+health`.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Builds `$first, $first+1, …` for an `IN (…)` list of `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hides a password in a database URL before it is shown.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_placeholders() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
