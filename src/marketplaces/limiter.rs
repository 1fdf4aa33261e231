//! The rate limiter of one marketplace connection: a GCRA quota per window (governor), a bound
//! on requests in flight, and a pause that holds every request of the connection (after a 429,
//! a ban, or quota headers saying a window is spent). A GCRA with burst B and rate r admits up
//! to B + r·W in a window W: each quota paces slightly under the limit (a margin per window),
//! and its burst only uses what that margin leaves, so neither window can ever be exceeded.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Requests are paced so that `count` of them span the window plus a margin: 0.3 % of the
/// window, and at least `MIN_MARGIN` (a minute gets 180 ms, a second 25 ms), more than the
/// jitter between sending a request and its arrival.
const HEADROOM: f64 = 0.003;
const MIN_MARGIN: Duration = Duration::from_millis(25);

/// The longest a connection waits after a 429 that names no time.
const MAX_THROTTLE_PAUSE: Duration = Duration::from_secs(60);

use crate::domain::RateLimit;

pub struct ConnLimiter {
    per_second: DefaultDirectRateLimiter,
    per_minute: DefaultDirectRateLimiter,
    /// Bounds concurrent requests on the account; a permit is held for a request's whole life.
    in_flight: Semaphore,
    /// Until when every request of the connection waits; shared by all its runs.
    paused_until: Mutex<Option<Instant>>,
    /// 429s in a row, for the backoff of a 429 that names no time.
    throttled_in_a_row: AtomicU32,
    /// A pause after every answer (the connection's `request_gap_ms` setting).
    gap: Option<Duration>,
    /// Requests take turns at the quotas, first come first served: only the head of the line
    /// sleeps until the next slot, instead of every waiter waking for each slot.
    turn: tokio::sync::Mutex<()>,
}

/// A quota of `count` requests per `window`: evenly spaced so that `count` of them span the
/// window plus its margin, with the largest burst B that keeps B + window / period ≤ count, so no
/// window can ever hold more than `count`. The burst (2 for 800 a minute, 1 for 20 a second)
/// lets a request that was woken a little late be followed on time, instead of losing the slot.
fn paced(count: u32, window: Duration) -> Quota {
    let count = count.max(1);
    let margin = window.mul_f64(HEADROOM).max(MIN_MARGIN);
    let period = (window + margin) / count;
    let spare = f64::from(count) - window.as_secs_f64() / period.as_secs_f64();
    let burst = NonZeroU32::new(spare.floor().max(1.0) as u32).unwrap_or(NonZeroU32::MIN);
    // `with_period` only fails for a zero period, which a non-zero window cannot give; fall
    // back to the window itself just in case.
    Quota::with_period(period)
        .or_else(|| Quota::with_period(window))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl ConnLimiter {
    /// A limiter that also waits `gap` after every answer before the next request.
    pub fn with_gap(rate: RateLimit, max_in_flight: u32, gap: Option<Duration>) -> ConnLimiter {
        ConnLimiter {
            gap: gap.filter(|g| !g.is_zero()),
            ..ConnLimiter::new(rate, max_in_flight)
        }
    }

    pub fn new(rate: RateLimit, max_in_flight: u32) -> ConnLimiter {
        ConnLimiter {
            per_second: RateLimiter::direct(paced(rate.per_second, Duration::from_secs(1))),
            per_minute: RateLimiter::direct(paced(rate.per_minute, Duration::from_secs(60))),
            in_flight: Semaphore::new(max_in_flight.max(1) as usize),
            paused_until: Mutex::new(None),
            throttled_in_a_row: AtomicU32::new(0),
            gap: None,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn pause_slot(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The slot holds a plain value; a panic elsewhere cannot leave it inconsistent.
        self.paused_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds every request of the connection until `until` (a later pause wins).
    pub fn pause_until(&self, until: Instant) {
        let mut slot = self.pause_slot();
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }

    /// The connection was answered 429: pause it for `retry_after`, or, when the marketplace
    /// named no time, for 1 s doubling with each 429 in a row (at most a minute).
    pub fn throttled(&self, retry_after: Option<Duration>) {
        if retry_after.is_none() && self.paused_until().is_some() {
            // Another request of the same burst was throttled and paused the connection
            // already: one burst is one 429 of the streak, not many.
            return;
        }
        let streak = self
            .throttled_in_a_row
            .fetch_add(1, Ordering::Relaxed)
            .min(6);
        let pause = match retry_after {
            Some(named) => named,
            None => Duration::from_secs(1 << streak).min(MAX_THROTTLE_PAUSE),
        };
        tracing::warn!(
            pause_ms = pause.as_millis() as u64,
            "marketplace throttled the connection"
        );
        self.pause_until(Instant::now() + pause);
    }

    /// A request was not throttled: the 429 streak is over.
    pub fn admitted(&self) {
        self.throttled_in_a_row.store(0, Ordering::Relaxed);
    }

    /// An answer arrived: hold the connection for its gap, if it has one.
    pub fn answered(&self) {
        if let Some(gap) = self.gap {
            self.pause_until(Instant::now() + gap);
        }
    }

    /// When the connection is paused until, if it is.
    pub fn paused_until(&self) -> Option<Instant> {
        (*self.pause_slot()).filter(|t| *t > Instant::now())
    }

    /// Waits for a place among the requests in flight and for both quotas to admit one more.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .in_flight
            .acquire()
            .await
            // `in_flight` is private to the limiter and nothing ever calls `close()` on it.
            .expect("the in-flight semaphore is never closed");
        let _turn = self.turn.lock().await;
        // A pause may be extended while we wait: check again after each sleep.
        while let Some(until) = self.paused_until() {
            tokio::time::sleep_until(until).await;
        }
        ready(&self.per_minute).await;
        ready(&self.per_second).await;
        permit
    }
}

/// Waits until the quota admits one more request, sleeping on tokio's timer for the time the
/// quota names (governor's own `until_ready` keeps a timer thread of its own).
async fn ready(quota: &DefaultDirectRateLimiter) {
    while let Err(not_until) = quota.check() {
        tokio::time::sleep(not_until.wait_time_from(quota.clock().now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumpseller_limits_pace_just_under_the_minute_rate() {
        let q = paced(800, Duration::from_secs(60));
        assert_eq!(q.replenish_interval(), Duration::from_micros(75_225));
        assert_eq!(q.burst_size().get(), 2);
        let s = paced(20, Duration::from_secs(1));
        assert_eq!(s.replenish_interval(), Duration::from_micros(51_250));
        assert_eq!(s.burst_size().get(), 1);
        // GCRA admits at most B + ceil(W / T) - 1 requests in any window W: 799 a minute (one
        // to spare for jitter in arrival) and 20 a second.
        for (quota, window, most) in [(q, 60.0, 799.0), (s, 1.0, 20.0)] {
            let admitted = f64::from(quota.burst_size().get())
                + (window / quota.replenish_interval().as_secs_f64()).ceil()
                - 1.0;
            assert_eq!(admitted, most);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_whole_connection_and_backs_off_while_it_repeats() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 1000,
                per_minute: 60_000,
            },
            4,
        );
        let start = Instant::now();
        l.throttled(None);
        assert_eq!(l.paused_until(), Some(start + Duration::from_secs(1)));
        // Another 429 of the same burst, while paused: the same pause.
        l.throttled(None);
        assert_eq!(l.paused_until(), Some(start + Duration::from_secs(1)));
        // A 429 again after the pause: twice as long.
        tokio::time::advance(Duration::from_secs(1)).await;
        let later = Instant::now();
        l.throttled(None);
        assert_eq!(l.paused_until(), Some(later + Duration::from_secs(2)));
        l.throttled(Some(Duration::from_secs(30)));
        assert_eq!(l.paused_until(), Some(later + Duration::from_secs(30)));
        drop(l.acquire().await);
        assert!(
            Instant::now() >= later + Duration::from_secs(30),
            "requests waited for the pause"
        );
        l.admitted();
        l.throttled(None);
        assert_eq!(
            l.paused_until(),
            Some(Instant::now() + Duration::from_secs(1)),
            "the streak restarted"
        );
    }

    #[test]
    fn a_fresh_limiter_admits_its_burst_then_makes_the_next_wait() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            4,
        );
        assert!(l.per_minute.check().is_ok());
        assert!(l.per_minute.check().is_ok());
        assert!(l.per_minute.check().is_err());
        assert!(l.per_second.check().is_ok());
        assert!(l.per_second.check().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_holds_the_connection_after_every_answer() {
        let rate = RateLimit {
            per_second: 1000,
            per_minute: 60_000,
        };
        let l = ConnLimiter::with_gap(rate, 1, Some(Duration::from_millis(500)));
        let start = Instant::now();
        drop(l.acquire().await);
        l.answered();
        drop(l.acquire().await);
        assert!(Instant::now() >= start + Duration::from_millis(500));
        let none = ConnLimiter::with_gap(rate, 1, Some(Duration::ZERO));
        none.answered();
        assert_eq!(none.paused_until(), None);
    }
}
