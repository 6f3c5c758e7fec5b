//! Tokens: generation, hashing and authentication.
//!
//! A secret is `kiln_` followed by 43 URL-safe base64 characters (256 random bits). Only
//! its SHA-256 is stored, so a database leak does not leak working tokens; lookups are by
//! that hash, which also means no secret is ever compared byte by byte in a way whose
//! timing depends on the secret.

use base64::Engine as _;
use rand::RngCore as _;

use super::ServiceError;
use crate::db::{Db, WriteTx};
use crate::domain::Sha256Digest;

/// Every token secret starts with this, so secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "kiln_";

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's label, recorded as `uploaded_by`.
    pub name: String,
    /// Admin tokens may manage indexes.
    pub is_admin: bool,
}

/// A fresh random secret.
#[must_use]
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn hash_secret(secret: &str) -> String {
    Sha256Digest::of(secret.as_bytes()).to_string()
}

/// Stores a token for `secret` (which the caller shows to the user once).
pub async fn create_token(
    tx: &mut WriteTx,
    name: &str,
    secret: &str,
    is_admin: bool,
) -> Result<(), ServiceError> {
    if secret.len() < 16 {
        return Err(ServiceError::Invalid(
            "a token must be at least 16 characters long".into(),
        ));
    }
    Db::insert_token(
        tx,
        name,
        &hash_secret(secret),
        is_admin,
        &super::now_rfc3339(),
    )
    .await?;
    Ok(())
}

/// Finds the principal a secret belongs to.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Principal, ServiceError> {
    match db.find_token(&hash_secret(secret)).await? {
        Some(token) => Ok(Principal {
            name: token.name,
            is_admin: token.is_admin != 0,
        }),
        None => Err(ServiceError::Forbidden(
            "the token is not valid on this server (mistyped, revoked, or issued by another Kiln)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_secret(&a).len(), 64);
    }
}
