//! SHA-256 digests, the identity of every artifact Kiln stores.

use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest, held as 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(String);

/// The string is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 digest (64 hex characters)")]
pub struct DigestError(pub String);

impl Sha256Digest {
    /// Wraps the output of a finished hasher.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }

    /// Hashes `data` in one go (used for small blobs such as METADATA).
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_bytes(&sha2::Sha256::digest(data).into())
    }

    /// The lowercase hex form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl PartialEq<str> for Sha256Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(DigestError(s.chars().take(80).collect()))
        }
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let d: Sha256Digest = "AB".repeat(32).parse().unwrap();
        assert_eq!(d.as_str(), "ab".repeat(32));
        assert!("xyz".parse::<Sha256Digest>().is_err());
        assert!("g".repeat(64).parse::<Sha256Digest>().is_err());
        assert_eq!(
            Sha256Digest::of(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
