//! Use cases: publish a file, resolve an index chain, manage indexes, authenticate.
//!
//! Every service takes the [`Db`](crate::db::Db) and [`Storage`](crate::storage::Storage)
//! it needs explicitly and returns a [`ServiceError`] that says what the caller did wrong
//! (or that the server failed), in words a user can act on.

pub mod auth;
pub mod bootstrap;
pub mod builds;
pub mod flight;
pub mod gc;
pub mod indexes;
pub mod mirror;
pub mod overview;
pub mod promote;
pub mod publish;
pub mod resolve;
pub mod results;
pub mod retention;
pub mod transfer;
pub mod trash;
pub mod webhooks;

use crate::db::DbError;
use crate::storage::StorageError;

/// The outcome of a use case that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// No credentials were given where they are required.
    #[error("{0}")]
    Unauthenticated(String),
    /// Credentials were given but do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The request body is over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The client took too long to send its request (408).
    #[error("{0}")]
    Timeout(String),
    /// A mirror's upstream failed and nothing was cached to serve instead (502).
    #[error("{0}")]
    Upstream(String),
    /// A backend (the database, the object store) does not answer, or the server is
    /// shutting down: nothing was changed, retry shortly (503 with `Retry-After`).
    #[error("{0}")]
    Unavailable(String),
    /// The disk or store is full: nothing was kept; retry once space is freed (507).
    #[error("{0}")]
    Full(String),
    /// The server failed; the detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for ServiceError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            return Self::Unavailable(format!(
                "the metadata database does not answer ({err}); nothing was changed, retry shortly"
            ));
        }
        Self::Internal(format!("database: {err}"))
    }
}

impl From<StorageError> for ServiceError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Io(io) => io.into(),
            StorageError::Store(store)
                if !matches!(store, object_store::Error::NotFound { .. }) =>
            {
                Self::Unavailable(format!(
                    "the object store failed ({store}); nothing was kept, retry shortly"
                ))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ServiceError {
    fn from(err: std::io::Error) -> Self {
        if is_full(&err) {
            return Self::Full(format!(
                "the server's disk is full ({err}); nothing was kept, retry once space is freed"
            ));
        }
        Self::Internal(format!("I/O: {err}"))
    }
}

/// `base` (a JSON object) with the fields of `extra` (an object) added or replaced.
#[must_use]
pub fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(into), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
        into.extend(extra);
    }
    base
}

/// True for "no space left", "file too large" and "quota exceeded".
fn is_full(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded
    )
}

/// The current time as RFC 3339 with microseconds, UTC — the PEP 700 `upload-time` form.
#[must_use]
pub fn now_rfc3339() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl From<crate::upstream::UpstreamError> for ServiceError {
    fn from(err: crate::upstream::UpstreamError) -> Self {
        match err {
            crate::upstream::UpstreamError::Local(detail) => Self::Internal(detail),
            other => Self::Upstream(other.to_string()),
        }
    }
}
