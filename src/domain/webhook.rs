//! Webhooks: what a subscription can ask to hear about, the states of a delivery, and the
//! signature that lets a receiver trust a delivery came from this server, unaltered and
//! recently.
//!
//! The signature follows the major code hosts (Stripe's and GitHub's shape): HMAC-SHA256,
//! keyed by the subscription's secret, over `"{timestamp}.{body}"`, sent as
//! `X-Kiln-Signature: t=<unix seconds>,sha256=<hex>`. Signing the timestamp with the body
//! lets a receiver refuse a replayed delivery by its age; comparing in constant time is
//! the receiver's part ([`verify`] does both).

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a subscription hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookEvent {
    /// A build finished: its files are on the index, waiting stages may install them.
    BuildReady,
    /// A build failed (with the tail of its output).
    BuildFailed,
    /// A stage reported a result for an artifact.
    StageResult,
    /// A release was promoted.
    Promotion,
    /// A promotion was refused by the policy (with the failed checks).
    PromotionRefused,
    /// A release was yanked or un-yanked.
    Yank,
}

impl WebhookEvent {
    /// Every event, in the order `kiln webhook list` shows them.
    pub const ALL: [Self; 6] = [
        Self::BuildReady,
        Self::BuildFailed,
        Self::StageResult,
        Self::Promotion,
        Self::PromotionRefused,
        Self::Yank,
    ];

    /// The stored and sent spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BuildReady => "build-ready",
            Self::BuildFailed => "build-failed",
            Self::StageResult => "stage-result",
            Self::Promotion => "promotion",
            Self::PromotionRefused => "promotion-refused",
            Self::Yank => "yank",
        }
    }
}

impl std::str::FromStr for WebhookEvent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "`{}` is not a webhook event; use one of {}",
                    text.chars().take(60).collect::<String>().escape_debug(),
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its first attempt or a retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: every attempt failed, or the subscription's owner lost its token.
    Failed,
}

impl DeliveryState {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("`{}` is not a delivery state", text.escape_debug()))
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `X-Kiln-Signature` value for `body` sent at `timestamp` (unix seconds).
#[must_use]
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},sha256={}", hex::encode(digest))
}

/// The HMAC-SHA256 keyed by `secret`, fed `"{timestamp}.{body}"`.
fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<seconds>,sha256=<hex>`.
    #[error("the signature header is not `t=<unix seconds>,sha256=<64 hex digits>`")]
    Shape,
    /// The timestamp is further from now than the receiver allows (a replay, or a clock
    /// far off).
    #[error(
        "the signature is {age_seconds} s from now, more than the {tolerance_seconds} s allowed"
    )]
    Stale {
        /// How far from now.
        age_seconds: i64,
        /// How far is allowed.
        tolerance_seconds: i64,
    },
    /// The body or timestamp was altered, or the secret differs.
    #[error("the signature does not match the body (wrong secret, or the body was altered)")]
    Mismatch,
}

/// Checks a delivery as a receiver should: the header's shape, the timestamp within
/// `tolerance_seconds` of `now` (unix seconds), and the MAC in constant time.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut digest = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("sha256", value)) => digest = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(digest)) = (timestamp, digest) else {
        return Err(SignatureError::Shape);
    };
    if digest.len() != 32 {
        return Err(SignatureError::Shape);
    }
    let age_seconds = (now - timestamp).abs();
    if age_seconds > tolerance_seconds {
        return Err(SignatureError::Stale {
            age_seconds,
            tolerance_seconds,
        });
    }
    mac(secret, timestamp, body)
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_states_round_trip() {
        for event in WebhookEvent::ALL {
            assert_eq!(event.as_str().parse::<WebhookEvent>(), Ok(event));
            assert_eq!(serde_json::to_value(event).unwrap(), event.as_str());
        }
        let said = "refusal".parse::<WebhookEvent>().unwrap_err();
        assert!(said.contains("promotion-refused"), "{said}");
        for state in [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(state));
        }
        assert!("done".parse::<DeliveryState>().is_err());
    }

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_time() {
        // HMAC-SHA256("secret", "1700000000.{}"), computed independently:
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let header = sign("secret", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            "t=1700000000,sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        let now = 1_700_000_010;
        assert_eq!(verify("secret", &header, b"{}", now, 300), Ok(()));
        assert_eq!(
            verify("other", &header, b"{}", now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("secret", &header, b"{ }", now, 300),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace("t=1700000000", "t=1700000005");
        assert_eq!(
            verify("secret", &moved, b"{}", now, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify("secret", &header, b"{}", now + 1_000, 300),
            Err(SignatureError::Stale { .. })
        ));
        for bad in ["", "t=1", "sha256=00", "t=x,sha256=zz", "t=1,sha256=abcd"] {
            assert_eq!(
                verify("secret", bad, b"{}", now, 300),
                Err(SignatureError::Shape),
                "{bad}"
            );
        }
    }
}
