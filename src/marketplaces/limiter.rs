//! The rate limiter of one marketplace connection: a GCRA quota per window (governor) and a bound
//! on requests in flight. A GCRA with burst B and rate r admits up to B + r·W in a window W, so
//! each quota keeps its burst at one request: the account's per-second and per-minute limits are
//! then never exceeded, and the tighter of the two paces requests evenly.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::domain::RateLimit;

pub struct ConnLimiter {
    per_second: DefaultDirectRateLimiter,
    per_minute: DefaultDirectRateLimiter,
    /// Bounds concurrent requests on the account; a permit is held for a request's whole life.
    in_flight: Semaphore,
}

/// A quota of `count` requests per `window`, evenly spaced, with a burst of one.
fn paced(count: u32, window: Duration) -> Quota {
    let count = count.max(1);
    let period = window / count;
    // `with_period` only fails for a zero period, which `count.max(1)` over a non-zero window
    // cannot produce; fall back to the window itself just in case.
    Quota::with_period(period)
        .or_else(|| Quota::with_period(window))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN)
}

impl ConnLimiter {
    pub fn new(rate: RateLimit, max_in_flight: u32) -> ConnLimiter {
        ConnLimiter {
            per_second: RateLimiter::direct(paced(rate.per_second, Duration::from_secs(1))),
            per_minute: RateLimiter::direct(paced(rate.per_minute, Duration::from_secs(60))),
            in_flight: Semaphore::new(max_in_flight.max(1) as usize),
        }
    }

    /// Waits for a place among the requests in flight and for both quotas to admit one more.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .in_flight
            .acquire()
            .await
            // `in_flight` is private to the limiter and nothing ever calls `close()` on it.
            .expect("the in-flight semaphore is never closed");
        self.per_minute.until_ready().await;
        self.per_second.until_ready().await;
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumpseller_limits_pace_at_the_minute_rate() {
        let q = paced(800, Duration::from_secs(60));
        assert_eq!(q.replenish_interval(), Duration::from_millis(75));
        assert_eq!(q.burst_size().get(), 1);
        let s = paced(20, Duration::from_secs(1));
        assert_eq!(s.replenish_interval(), Duration::from_millis(50));
    }

    #[test]
    fn a_fresh_limiter_admits_one_request_then_makes_the_next_wait() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            4,
        );
        assert!(l.per_minute.check().is_ok());
        assert!(l.per_minute.check().is_err());
        assert!(l.per_second.check().is_ok());
        assert!(l.per_second.check().is_err());
    }
}
