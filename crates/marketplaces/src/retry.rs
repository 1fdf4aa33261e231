//! Retrying a marketplace call: transient failures (429, 5xx, timeouts, resets) are tried again
//! after exponential backoff with jitter (backon's policy), up to a limit; anything else is
//! final at once. The whole phase call is retried, not the bare request, so a create whose
//! outcome was lost goes through the adapter's look-up before anything is created again.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use super::MarketError;

/// The retry policy of every marketplace call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.saturating_sub(1))
            .build()
    }
}

/// Runs `attempt` until it succeeds, fails for good, the policy gives up, or `cancel` fires
/// during a wait (the last error is returned then).
pub async fn with_retries<T>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    mut attempt: impl AsyncFnMut() -> Result<T, MarketError>,
) -> Result<T, MarketError> {
    let mut delays = policy.backoff();
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if !e.is_retriable() => return Err(e),
            Err(e) => e,
        };
        let Some(delay) = delays.next() else {
            return Err(error);
        };
        tracing::debug!(delay_ms = delay.as_millis() as u64, error = %error, "retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts: 4,
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_growing_delays_until_success() {
        let start = Instant::now();
        let mut calls = Vec::new();
        let result = with_retries(&POLICY, &CancellationToken::new(), async || {
            calls.push(start.elapsed());
            if calls.len() < 3 {
                Err(MarketError::Transient("503".into()))
            } else {
                Ok(calls.len())
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        let gap1 = calls[1] - calls[0];
        let gap2 = calls[2] - calls[1];
        assert!(
            gap1 >= Duration::from_secs(1) && gap1 < Duration::from_secs(2),
            "{gap1:?}"
        );
        assert!(
            gap2 >= Duration::from_secs(2) && gap2 < Duration::from_secs(4),
            "{gap2:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_after_the_policys_attempts_and_never_retries_a_refusal() {
        let mut n = 0;
        let r: Result<(), _> = with_retries(&POLICY, &CancellationToken::new(), async || {
            n += 1;
            Err(MarketError::Transient("timeout".into()))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 4);
        let mut m = 0;
        let r: Result<(), _> = with_retries(&POLICY, &CancellationToken::new(), async || {
            m += 1;
            Err(MarketError::Rejected {
                status: 422,
                message: "bad".into(),
            })
        })
        .await;
        assert!(matches!(r, Err(MarketError::Rejected { .. })));
        assert_eq!(m, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_stops_waiting() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut n = 0;
        let r: Result<(), _> = with_retries(&POLICY, &cancel, async || {
            n += 1;
            Err(MarketError::Transient("503".into()))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
