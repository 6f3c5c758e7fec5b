//! API tokens. Only the SHA-256 of a secret is stored; the secret itself is shown once.

use super::{Db, DbError, WriteTx};

/// A stored token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    /// Database id.
    pub id: i64,
    /// A human label, e.g. `admin` or `ci-acme`.
    pub name: String,
    /// 1 for an admin token.
    pub is_admin: i64,
}

impl Db {
    /// The token whose secret hashes to `secret_sha256`, if any.
    pub async fn find_token(&self, secret_sha256: &str) -> Result<Option<TokenRecord>, DbError> {
        Ok(
            sqlx::query_as("SELECT id, name, is_admin FROM tokens WHERE secret_sha256 = $1")
                .bind(secret_sha256)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a new token by the hash of its secret.
    pub async fn insert_token(
        tx: &mut WriteTx,
        name: &str,
        secret_sha256: &str,
        is_admin: bool,
        now: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO tokens (name, secret_sha256, is_admin, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(secret_sha256)
        .bind(i64::from(is_admin))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from_write)?;
        Ok(())
    }
}
