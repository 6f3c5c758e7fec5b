//! Use cases: publish a file, resolve an index chain, manage indexes, authenticate.
//!
//! Every service takes the [`Db`](crate::db::Db) and [`Storage`](crate::storage::Storage)
//! it needs explicitly and returns a [`ServiceError`] that says what the caller did wrong
//! (or that the server failed), in words a user can act on.

pub mod auth;
pub mod bootstrap;
pub mod builds;
pub mod flight;
pub mod indexes;
pub mod mirror;
pub mod overview;
pub mod promote;
pub mod publish;
pub mod resolve;
pub mod results;
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
    /// The server failed; the detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for ServiceError {
    fn from(err: DbError) -> Self {
        Self::Internal(format!("database: {err}"))
    }
}

impl From<StorageError> for ServiceError {
    fn from(err: StorageError) -> Self {
        Self::Internal(err.to_string())
    }
}

impl From<std::io::Error> for ServiceError {
    fn from(err: std::io::Error) -> Self {
        Self::Internal(format!("I/O: {err}"))
    }
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
