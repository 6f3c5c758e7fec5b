//! API tokens. Only the SHA-256 of a secret is stored; the secret itself is shown once.

use super::changes::Change;
use super::{Db, DbError, WriteTx};

/// A stored token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    /// Database id, which `kiln token revoke` takes.
    pub id: i64,
    /// A human label, e.g. `admin` or `ci-acme`.
    pub name: String,
    /// The SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// JSON array of `permission:pattern` strings.
    pub scopes: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `None` never expires.
    pub expires_at: Option<String>,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
    /// The name of the token that created this one.
    pub created_by: Option<String>,
}

const TOKEN_COLUMNS: &str =
    "id, name, secret_sha256, scopes, created_at, expires_at, revoked_at, created_by";

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// The label it was created with.
    pub name: &'a str,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: &'a str,
    /// JSON array of scopes.
    pub scopes: &'a str,
    /// RFC 3339.
    pub created_at: &'a str,
    /// RFC 3339, if it expires.
    pub expires_at: Option<&'a str>,
    /// The creating token's name.
    pub created_by: Option<&'a str>,
}

impl Db {
    /// The token whose secret hashes to `secret_sha256`, if any (revoked ones too: the
    /// caller decides what a revoked token means).
    /// Remembered until any token is created or revoked (an unknown secret is asked again
    /// every time); expiry is checked by the caller on every use.
    pub async fn find_token(&self, secret_sha256: &str) -> Result<Option<TokenRecord>, DbError> {
        let key = secret_sha256.to_owned();
        if let Some(record) = self.tokens.get(&key, &self.stamps) {
            return Ok(Some(record));
        }
        let read_at = self.stamps.now();
        let found: Option<TokenRecord> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_sha256 = $1"
        ))
        .bind(secret_sha256)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(record) = &found {
            self.tokens
                .put(key, read_at, vec![Change::Tokens], record.clone());
        }
        Ok(found)
    }

    /// One token by id.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRecord>, DbError> {
        Ok(
            sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, DbError> {
        Ok(
            sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Stores a new token by the hash of its secret; returns its id.
    pub async fn insert_token_tx(tx: &mut WriteTx, token: &NewToken<'_>) -> Result<i64, DbError> {
        tx.changed(Change::Tokens);
        sqlx::query_scalar(
            "INSERT INTO tokens (name, secret_sha256, scopes, created_at, expires_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(token.name)
        .bind(token.secret_sha256)
        .bind(token.scopes)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.created_by)
        .fetch_one(&mut **tx)
        .await
        .map_err(DbError::from_write)
    }

    /// Marks a token revoked (once; a second revocation keeps the first time). Returns
    /// false when no token has that id.
    pub async fn revoke_token_tx(tx: &mut WriteTx, id: i64, now: &str) -> Result<bool, DbError> {
        tx.changed(Change::Tokens);
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}
