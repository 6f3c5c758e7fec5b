//! Retrying a call to the server through blips: transport errors, 5xx, 408 and 429 are
//! retried with exponential backoff (250 ms doubling to 5 s) until a time limit; any other
//! answer is final, because sending the same request again cannot change it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::client::ClientError;

/// True when the same request may succeed later.
#[must_use]
pub fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Api { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        ClientError::Unreachable { .. } => true,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or `limit` has passed; each retry is
/// announced on stderr with `what`.
pub async fn with_backoff<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if !transient(&e) || started.elapsed() + delay > limit => return Err(e),
            Err(e) => {
                eprintln!(
                    "kiln: {what} failed (attempt {attempt}, {}s of {}s): {e}; retrying in {}ms",
                    started.elapsed().as_secs(),
                    limit.as_secs(),
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_transient_errors_are_retried_and_only_until_the_limit() {
        let api = |status| ClientError::Api {
            status,
            detail: String::new(),
        };
        assert!(transient(&api(503)) && transient(&api(429)) && transient(&api(408)));
        assert!(!transient(&api(404)) && !transient(&api(409)));
        let mut calls = 0;
        let refused: Result<(), _> = with_backoff("x", Duration::from_secs(60), || {
            calls += 1;
            async { Err(api(409)) }
        })
        .await;
        assert!(refused.is_err());
        assert_eq!(calls, 1, "a final answer is not retried");
        let mut calls = 0;
        let recovered = with_backoff("x", Duration::from_secs(60), || {
            calls += 1;
            let answer = if calls < 3 { Err(api(503)) } else { Ok(calls) };
            async move { answer }
        })
        .await;
        assert_eq!(recovered.unwrap(), 3);
        let mut calls = 0;
        let gave_up: Result<(), _> = with_backoff("x", Duration::from_millis(300), || {
            calls += 1;
            async { Err(api(503)) }
        })
        .await;
        assert!(gave_up.is_err());
        assert!(calls <= 2, "{calls}");
    }
}
