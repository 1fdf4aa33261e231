//! The rate limiter of one marketplace connection: a sliding log per window of the account
//! (the times of the requests admitted in the last second and the last minute), a bound on
//! requests in flight, and a pause that holds every request of the connection (after a 429, a
//! ban, or quota headers saying a window is spent). A request is admitted as soon as every
//! window has room for it, so a run uses the whole envelope the account allows: a burst of the
//! per-second limit at once, and the per-minute limit as early as the per-second one lets it,
//! instead of pacing at the slowest window's average rate. Each window is held for its length
//! plus `MARGIN`, which absorbs the jitter between admitting a request and its arrival. Quota
//! headers (another client's use of the same account) add to the logs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The least a request is counted beyond its window. Two requests sent one window plus the
/// margin apart arrive at least one window apart as long as their trips to the marketplace
/// differ by less than the margin; the margin follows the spread of the connection's round
/// trips (which holds the spread of those trips), and never goes below this: on loopback trips
/// differ by well under a millisecond, and across the internet by a few. Each window's cycle
/// costs the margin, so this floor bounds the envelope's use at 1 s / 1.015 s (the envelope
/// benchmark prints the margin it ran with, `campaignd_limiter_margin_seconds` shows it live).
pub const MARGIN: Duration = Duration::from_millis(15);

/// How long the first request's answer is awaited before the others go anyway.
const PROBE_WAIT: Duration = Duration::from_millis(250);

/// The margin until a few answers have come back.
const COLD_MARGIN: Duration = Duration::from_millis(60);

/// The most the margin grows to when answers come back unevenly.
pub const MAX_MARGIN: Duration = Duration::from_millis(250);

/// Round trips remembered for the margin: the spread of the last this many (a few windows'
/// worth at most accounts' rates, so that one slow moment keeps the margin wide for a while).
const ROUND_TRIPS: usize = 256;

/// The most requests a hand-over assumes the last holder left in one window.
const MAX_FILL: usize = 100_000;

/// The longest a connection waits after a 429 that names no time.
const MAX_THROTTLE_PAUSE: Duration = Duration::from_secs(60);

use domain::RateLimit;

/// How long past its window a request stays in the log: a quota header that comes back this
/// long after its request was sent is still compared with every request of ours the
/// marketplace may have counted when it arrived. Later ones are too old to read.
const REPORT_HORIZON: Duration = Duration::from_secs(10);

/// One window of the account: at most `count` requests in any `length` (plus the margin).
#[derive(Debug)]
struct Window {
    /// The window's own length; a request counts in it for this plus the margin.
    length: Duration,
    count: usize,
    /// When the requests of the window were admitted (or sent), oldest first, with the
    /// admission's number (`None`: a request of another client, seen in a quota header); kept
    /// `REPORT_HORIZON` longer than they count, for the quota headers.
    log: VecDeque<(Instant, Option<u64>)>,
}

impl Window {
    fn new(count: u32, length: Duration) -> Window {
        Window {
            length,
            count: count.max(1) as usize,
            log: VecDeque::new(),
        }
    }

    fn forget_before(&mut self, now: Instant, margin: Duration) {
        let kept = self.length + margin + REPORT_HORIZON;
        while self
            .log
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= kept)
        {
            self.log.pop_front();
        }
    }

    /// How many entries of the log were sent after `since`.
    fn since(&self, since: Instant) -> usize {
        self.log.len() - self.log.partition_point(|(t, _)| *t <= since)
    }

    /// When the window has room for one more request: now (`None`) or later.
    fn room_at(&mut self, now: Instant, margin: Duration) -> Option<Instant> {
        self.forget_before(now, margin);
        let counting = match now.checked_sub(self.length + margin) {
            Some(since) => self.since(since),
            None => self.log.len(),
        };
        if counting < self.count {
            return None;
        }
        // The request that must leave the window before another may enter it.
        let (leaving, _) = self.log[self.log.len() - self.count];
        Some(leaving + self.length + margin)
    }

    fn admit(&mut self, now: Instant, seq: u64) {
        self.log.push_back((now, Some(seq)));
    }

    /// Admission `seq` is being sent only now (it waited for its address, for the client):
    /// it counts from now, which is closer to when the marketplace sees it.
    fn sending(&mut self, seq: u64, now: Instant) {
        let Some(at) = self.log.iter().rposition(|(_, s)| *s == Some(seq)) else {
            return;
        };
        self.log.remove(at);
        // The log stays in order: after every entry up to now.
        let place = self
            .log
            .iter()
            .rposition(|(t, _)| *t <= now)
            .map_or(0, |i| i + 1);
        self.log.insert(place, (now, Some(seq)));
    }

    /// Adds what another client that sent as much as the account allows, as late as it
    /// allows, until `last`, would have left in the window at `now`: `per_burst` at once every
    /// `every`, back from `last`. This node's own requests stay counted beside them.
    fn fill(&mut self, last: Instant, now: Instant, per_burst: usize, every: Duration) {
        let mut added = 0;
        // Limits far above any real account's (a test's "unlimited" 100,000 a second) would
        // fill the log with millions: beyond `MAX_FILL` the worst case is not assumed.
        let count = self.count.min(MAX_FILL);
        let mut at = Some(last);
        while let Some(t) =
            at.filter(|t| now.saturating_duration_since(*t) < self.length + MAX_MARGIN)
        {
            if added >= count {
                break;
            }
            let burst = per_burst.min(count - added);
            self.log.extend(std::iter::repeat_n((t, None), burst));
            added += burst;
            at = t.checked_sub(every);
        }
        self.log.make_contiguous().sort_by_key(|(t, _)| *t);
    }

    /// The marketplace answered a request sent at `sent` saying `remaining` requests are left
    /// in this window. When it arrived, the marketplace had counted some of ours: at most
    /// those sent in the window before it, and any sent after it that overtook it (requests
    /// sent together arrive in any order), and any other client's. What it counted beyond all
    /// of those and the other client's requests already known is added as of now, so it
    /// leaves the log a whole window later, never sooner than it leaves the marketplace's
    /// count. Taking all of ours as counted can hide another client's use by at most our
    /// requests in flight, which the next answers then show; taking fewer would count ours as
    /// someone else's, again and again, and slow the connection down for nothing.
    fn reported(
        &mut self,
        limit: Option<usize>,
        remaining: usize,
        sent: Instant,
        now: Instant,
        margin: Duration,
    ) {
        self.forget_before(now, margin);
        // An account allowed less than the connection was told: the marketplace's word wins.
        if let Some(limit) = limit.filter(|l| *l >= 1 && *l < self.count) {
            self.count = limit;
        }
        if now.saturating_duration_since(sent) > REPORT_HORIZON {
            return;
        }
        let used = self.count.saturating_sub(remaining);
        let counted = match sent.checked_sub(self.length + margin) {
            Some(since) => self.since(since),
            None => self.log.len(),
        };
        for _ in counted..used {
            self.log.push_back((now, None));
        }
    }
}

/// Which of an account's windows a quota header speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Second,
    Minute,
}

pub struct ConnLimiter {
    /// The per-second and per-minute windows, checked and written together.
    windows: Mutex<[Window; 2]>,
    /// Bounds concurrent requests on the account; a permit is held for a request's whole life.
    in_flight: Semaphore,
    /// Until when every request of the connection waits; shared by all its runs.
    paused_until: Mutex<Option<Instant>>,
    /// 429s in a row, for the backoff of a 429 that names no time.
    throttled_in_a_row: AtomicU32,
    /// A pause after every answer (the connection's `request_gap_ms` setting).
    gap: Option<Duration>,
    /// Requests take turns at the windows (urgent ones first, then one per run in turn): only
    /// the head of the line waits for a place in flight and the next room, instead of every
    /// waiter waking for each.
    turns: crate::turns::Turns,
    /// Numbers the admissions, so that a quota header can be matched with the requests the
    /// marketplace had counted when it answered.
    seq: AtomicU64,
    /// Whether the first request's answer is in: until then it goes alone, so that an account
    /// another client already uses shows its quota headers before a burst is sent.
    calibrated: tokio::sync::watch::Sender<bool>,
    probing: AtomicBool,
    /// The last round trips (admission to answer), whose spread sets the margin.
    round_trips: Mutex<VecDeque<Duration>>,
    /// The margin, in nanoseconds, worked out from them at each answer.
    margin_ns: AtomicU64,
    /// The least margin (`MARGIN` unless the operator set `runs.limiter_margin_ms`).
    floor: Duration,
    /// The cost bucket, once an answer has told it.
    points: Mutex<Option<Bucket>>,
}

/// A request's place at the connection: held until its answer is read, numbered for quota
/// headers.
pub struct Admission<'a> {
    _permit: SemaphorePermit<'a>,
    pub seq: u64,
    /// Set on the first request: its end lets the others go.
    probe: Option<&'a ConnLimiter>,
    /// The points this request holds in the connection's cost bucket until its answer.
    points: Option<(&'a ConnLimiter, f64)>,
}

impl Admission<'_> {
    /// The points the request was admitted with (0 when the connection has no cost bucket).
    pub fn cost(&self) -> f64 {
        self.points.map_or(0.0, |(_, c)| c)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(limiter) = self.probe {
            limiter.calibrated.send_replace(true);
        }
        if let Some((limiter, _)) = self.points {
            if let Some(bucket) = limiter.bucket().as_mut() {
                bucket.out = bucket.out.saturating_sub(1);
            }
        }
    }
}

/// A marketplace's cost bucket (Shopify's GraphQL: points restored at `rate` a second up to
/// `max`): what we believe is available as of `at`, with our own calls' costs taken as they
/// are admitted.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    max: f64,
    rate: f64,
    available: f64,
    at: Instant,
    /// Calls admitted under the bucket and not answered yet.
    out: usize,
    /// The last call admitted under it.
    last: u64,
    /// An earlier call was answered after the last one was admitted: the two may have passed
    /// each other on the way, so the last one's report need not count the earlier call.
    overtaken: bool,
}

impl Bucket {
    /// Points free for a new request at `now`.
    fn free(&self, now: Instant) -> f64 {
        let restored = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        (self.available + restored).min(self.max)
    }
}

/// What an answer said of the cost bucket (Shopify's `extensions.cost.throttleStatus`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Points {
    pub max: f64,
    pub available: f64,
    pub rate: f64,
}

/// The shortest span in which `n` requests fit an account's windows: each one as early as both
/// let it (at most `per_second` in any second and `per_minute` in any minute), from the first
/// request to the last.
pub fn shortest_span(n: usize, per_second: usize, per_minute: usize) -> Duration {
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = times.last().copied().unwrap_or_default();
        if per_second > 0 && i >= per_second {
            t = t.max(times[i - per_second] + Duration::from_secs(1));
        }
        if per_minute > 0 && i >= per_minute {
            t = t.max(times[i - per_minute] + Duration::from_secs(60));
        }
        times.push(t);
    }
    times.last().copied().unwrap_or_default()
}

impl ConnLimiter {
    /// A limiter that also waits `gap` after every answer before the next request.
    pub fn with_gap(rate: RateLimit, max_in_flight: u32, gap: Option<Duration>) -> ConnLimiter {
        ConnLimiter {
            gap: gap.filter(|g| !g.is_zero()),
            ..ConnLimiter::new(rate, max_in_flight)
        }
    }

    /// The same limiter with a margin of at least `floor` (at most `MAX_MARGIN`), for a
    /// machine or a network whose delays vary more than its round trips show.
    pub fn with_floor(self, floor: Duration) -> ConnLimiter {
        let floor = floor.clamp(Duration::from_millis(1), MAX_MARGIN);
        self.margin_ns
            .store(COLD_MARGIN.max(floor).as_nanos() as u64, Ordering::Relaxed);
        ConnLimiter { floor, ..self }
    }

    pub fn new(rate: RateLimit, max_in_flight: u32) -> ConnLimiter {
        ConnLimiter {
            windows: Mutex::new([
                Window::new(rate.per_second, Duration::from_secs(1)),
                Window::new(rate.per_minute, Duration::from_secs(60)),
            ]),
            in_flight: Semaphore::new(max_in_flight.max(1) as usize),
            paused_until: Mutex::new(None),
            throttled_in_a_row: AtomicU32::new(0),
            gap: None,
            turns: crate::turns::Turns::default(),
            seq: AtomicU64::new(0),
            calibrated: tokio::sync::watch::Sender::new(false),
            probing: AtomicBool::new(false),
            round_trips: Mutex::new(VecDeque::with_capacity(ROUND_TRIPS)),
            margin_ns: AtomicU64::new(COLD_MARGIN.as_nanos() as u64),
            floor: MARGIN,
            points: Mutex::new(None),
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

    fn windows(&self) -> std::sync::MutexGuard<'_, [Window; 2]> {
        // The logs hold plain values; a panic elsewhere cannot leave them inconsistent.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long beyond its window a request is counted: the spread of the last round trips
    /// (an answer that came back later than another says its request may also have arrived
    /// later), at least `MARGIN` and at most `MAX_MARGIN`. Until a few answers are in,
    /// `COLD_MARGIN`.
    pub fn margin(&self) -> Duration {
        Duration::from_nanos(self.margin_ns.load(Ordering::Relaxed))
    }

    /// A request came back `took` after it was sent: the margin is worked out again.
    pub fn round_trip(&self, took: Duration) {
        let mut trips = self.round_trips.lock().unwrap_or_else(|p| p.into_inner());
        if trips.len() == ROUND_TRIPS {
            trips.pop_front();
        }
        trips.push_back(took);
        if trips.len() < 8 {
            return;
        }
        let (least, most) = trips
            .iter()
            .fold((Duration::MAX, Duration::ZERO), |(l, m), t| {
                (l.min(*t), m.max(*t))
            });
        let margin = (most - least).clamp(self.floor, MAX_MARGIN);
        self.margin_ns
            .store(margin.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Allows `rate` from now on (a share of an application's limits that changed with the
    /// number of nodes sharing it): what the windows hold stays counted.
    pub fn set_rate(&self, rate: RateLimit) {
        let mut windows = self.windows();
        windows[0].count = rate.per_second.max(1) as usize;
        windows[1].count = rate.per_minute.max(1) as usize;
    }

    /// The marketplace's own count of what is left in a window (a quota header) in its answer
    /// to a request sent at `sent`, which takes in any other client of the same account.
    pub fn reported(&self, window: WindowKind, limit: Option<u32>, remaining: u32, sent: Instant) {
        let now = Instant::now();
        let i = match window {
            WindowKind::Second => 0,
            WindowKind::Minute => 1,
        };
        let margin = self.margin();
        self.windows()[i].reported(
            limit.map(|l| l as usize),
            remaining as usize,
            sent,
            now,
            margin,
        );
    }

    /// Counts in the windows what another node that held the connection until `ended_ago` may
    /// have left in them at worst: the per-second limit sent at its end, and (unless the
    /// marketplace reports its minute, which the first answer then tells) the minute filled by
    /// bursts at that limit every second back from then. Requests wait for those to leave the
    /// windows; a holder that ended more than a minute ago leaves nothing.
    pub fn assume_windows_full(&self, minute_reported: bool, ended_ago: Duration) {
        let now = Instant::now();
        let last = now.checked_sub(ended_ago).unwrap_or(now);
        let mut windows = self.windows();
        let (burst, every) = (windows[0].count, windows[0].length + MARGIN);
        windows[0].fill(last, now, burst, every);
        if !minute_reported {
            windows[1].fill(last, now, burst, every);
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Option<Bucket>> {
        // The bucket is a plain value; a panic elsewhere cannot leave it inconsistent.
        self.points.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An answer reported the cost bucket after the request `admission` ran. It is taken as it
    /// is when it answers the last call admitted and no other is out: it then counts every
    /// call of ours, and brings back what the marketplace refunded. Otherwise it may be older
    /// than what we know (another call ran after it, or its answer overtook a later one's):
    /// it can only lower what we believe is available, never raise it.
    pub fn points_reported(&self, points: Points, admission: &Admission<'_>) {
        let now = Instant::now();
        let mut bucket = self.bucket();
        let (available, out, last, overtaken) = match *bucket {
            Some(b) if !(b.last == admission.seq && b.out <= 1 && !b.overtaken) => (
                b.free(now).min(points.available),
                b.out,
                b.last,
                b.overtaken || b.last != admission.seq,
            ),
            Some(b) => (points.available, b.out, b.last, false),
            None => (points.available, 1, admission.seq, false),
        };
        *bucket = Some(Bucket {
            max: points.max.max(1.0),
            rate: points.rate.max(0.001),
            available,
            at: now,
            out,
            last,
            overtaken,
        });
    }

    /// The request of admission `seq` leaves now: it counts in the windows from this moment,
    /// which is answered.
    pub fn sending(&self, seq: u64) -> Instant {
        let now = Instant::now();
        for w in self.windows().iter_mut() {
            w.sending(seq, now);
        }
        now
    }

    /// Waits for its turn (`turn` says whose request it is), then for a place among the
    /// requests in flight and for every window to have room for one more; the request counts
    /// in the windows from the moment it is admitted. The very first request goes alone, and
    /// the others follow its answer.
    pub async fn acquire(&self, turn: crate::turns::Turn) -> Admission<'_> {
        self.acquire_costing(turn, 0.0).await
    }

    /// As `acquire`, for a request that costs `cost` points of the connection's cost bucket:
    /// once an answer has told the bucket, it also waits until that many are free.
    pub async fn acquire_costing(&self, turn: crate::turns::Turn, cost: f64) -> Admission<'_> {
        let _head = self.turns.head(turn).await;
        let permit = self
            .in_flight
            .acquire()
            .await
            // `in_flight` is private to the limiter and nothing ever calls `close()` on it.
            .expect("the in-flight semaphore is never closed");
        let probe = loop {
            if *self.calibrated.borrow() {
                break None;
            }
            if !self.probing.swap(true, Ordering::AcqRel) {
                break Some(self);
            }
            let mut calibrated = self.calibrated.subscribe();
            // The first answer is awaited for a while only: a marketplace holding it (or a
            // hung call) must not hold every other request until the client's timeout.
            // The sender lives as long as the limiter: `wait_for` cannot fail while we wait.
            let answered = tokio::time::timeout(PROBE_WAIT, calibrated.wait_for(|done| *done));
            if answered.await.is_err() {
                self.calibrated.send_replace(true);
            }
        };
        loop {
            // A pause may be extended while we wait: check again after each sleep.
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let now = Instant::now();
            let margin = self.margin();
            let wait = {
                let mut windows = self.windows();
                let wait = windows
                    .iter_mut()
                    .filter_map(|w| w.room_at(now, margin))
                    .max();
                // Only a request with a cost looks at the bucket.
                let mut guard = (cost > 0.0).then(|| self.bucket());
                let bucket = guard.as_deref_mut().and_then(Option::as_mut);
                let wait = wait.or_else(|| {
                    let b = bucket.as_deref()?;
                    // A request can never cost more than the whole bucket holds.
                    let short = cost.min(b.max) - b.free(now);
                    (short > 0.0).then(|| now + Duration::from_secs_f64(short / b.rate))
                });
                if wait.is_none() {
                    let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                    for w in windows.iter_mut() {
                        w.admit(now, seq);
                    }
                    if let Some(b) = bucket {
                        // Spent now, as the marketplace will take it.
                        b.available = b.free(now) - cost.min(b.max);
                        b.at = now;
                        b.out += 1;
                        b.last = seq;
                        b.overtaken = false;
                    }
                    let points = (cost > 0.0).then_some((self, cost));
                    return Admission {
                        _permit: permit,
                        seq,
                        probe,
                        points,
                    };
                }
                wait
            };
            if let Some(at) = wait {
                tokio::time::sleep_until(at).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_shortest_span_fills_each_second_until_the_minute_binds() {
        assert_eq!(shortest_span(0, 20, 600), Duration::ZERO);
        assert_eq!(shortest_span(20, 20, 600), Duration::ZERO);
        assert_eq!(shortest_span(21, 20, 600), Duration::from_secs(1));
        assert_eq!(shortest_span(600, 20, 600), Duration::from_secs(29));
        // 800 in the first 40 s, the next 800 a minute after each of those, the last 400 a
        // minute after those.
        assert_eq!(shortest_span(2000, 20, 800), Duration::from_secs(139));
    }
    use super::*;
    use crate::turns::Turn;

    /// Answers that all took 150 ms: the margin is its least.
    fn calm(l: &ConnLimiter) {
        for _ in 0..8 {
            l.round_trip(Duration::from_millis(150));
        }
    }

    /// A limiter whose windows never bind (1,000 a second), its margin settled.
    fn unbound(max_in_flight: u32) -> ConnLimiter {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 1000,
                per_minute: 60_000,
            },
            max_in_flight,
        );
        calm(&l);
        l
    }

    /// Whether any `length` of `times` holds more than `count`.
    fn most_in_any(times: &[Instant], length: Duration) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < length)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_uses_the_whole_envelope_and_never_more_than_a_window_allows() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 600,
            },
            1000,
        );
        calm(&l);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..1300 {
            drop(l.acquire(Turn::ALONE).await);
            times.push(Instant::now());
        }
        // Never more than either window allows, counted over exact windows.
        assert_eq!(most_in_any(&times, Duration::from_secs(1)), 20);
        assert_eq!(most_in_any(&times, Duration::from_secs(60)), 600);
        // 20 at once each second: the 600th in the 30th second, as early as the windows allow
        // (29 seconds and 29 margins after the first).
        assert_eq!(times[19], start);
        assert_eq!(times[20], start + Duration::from_secs(1) + MARGIN);
        assert_eq!(times[599] - start, (Duration::from_secs(1) + MARGIN) * 29);
        // The 601st waits for the first to leave the minute.
        assert_eq!(times[600] - start, Duration::from_secs(60) + MARGIN);
        let shortest = Duration::from_secs(29);
        let efficiency = shortest.as_secs_f64() / (times[599] - start).as_secs_f64();
        assert!(efficiency > 0.97, "{efficiency}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_holds_from_the_next_request_and_keeps_what_was_sent() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 10,
                per_minute: 600,
            },
            100,
        );
        calm(&l);
        let start = Instant::now();
        for _ in 0..4 {
            drop(l.acquire(Turn::ALONE).await);
        }
        // A share of half: the four sent count, one more fits in this second.
        l.set_rate(RateLimit {
            per_second: 5,
            per_minute: 300,
        });
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(Instant::now(), start);
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(Instant::now(), start + Duration::from_secs(1) + MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_arriving_at_random_never_overfill_a_window() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let l = std::sync::Arc::new(ConnLimiter::new(
            RateLimit {
                per_second: 7,
                per_minute: 90,
            },
            3,
        ));
        calm(&l);
        let times = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..400 {
            let delay = Duration::from_millis(rng.random_range(0..240_000));
            let hold = Duration::from_millis(rng.random_range(0..400));
            let (l, times) = (l.clone(), times.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let permit = l.acquire(Turn::ALONE).await;
                times.lock().unwrap().push(Instant::now());
                tokio::time::sleep(hold).await;
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort();
        assert_eq!(times.len(), 400);
        assert!(most_in_any(&times, Duration::from_secs(1)) <= 7);
        assert!(most_in_any(&times, Duration::from_secs(60)) <= 90);
    }

    #[tokio::test(start_paused = true)]
    async fn another_clients_use_reported_by_the_marketplace_takes_its_share_of_the_window() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            100,
        );
        calm(&l);
        let start = Instant::now();
        // Our first request's answer says 5 are left this minute: another client used 794.
        let first = l.acquire(Turn::ALONE).await;
        l.reported(WindowKind::Minute, Some(800), 5, Instant::now());
        drop(first);
        for _ in 0..5 {
            drop(l.acquire(Turn::ALONE).await);
        }
        assert_eq!(Instant::now(), start, "the five that are left go at once");
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(60) + MARGIN,
            "the sixth waits until the other client's requests have left the window"
        );
        // A report of more room than we count changes nothing: our own count stands.
        let one = l.acquire(Turn::ALONE).await;
        l.reported(WindowKind::Second, Some(20), 20, Instant::now());
        drop(one);
        let before = Instant::now();
        // The sixth and that one are in this second: 18 more fit.
        for _ in 0..18 {
            drop(l.acquire(Turn::ALONE).await);
        }
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_counts_only_what_the_marketplace_saw_beyond_our_own_requests() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            100,
        );
        calm(&l);
        let probe = l.acquire(Turn::ALONE).await;
        drop(probe);
        // Ten at once. The last one's answer comes first and says 9 are left this second: the
        // marketplace had seen all eleven of ours, in whatever order they arrived. The first
        // one's answer then says 18 are left: it had seen our probe and that one, and the
        // nine others were ours on their way.
        let burst: Vec<_> =
            futures::future::join_all((0..10).map(|_| l.acquire(Turn::ALONE))).await;
        l.reported(WindowKind::Second, None, 9, Instant::now());
        l.reported(WindowKind::Second, None, 18, Instant::now());
        drop(burst);
        let start = Instant::now();
        for _ in 0..9 {
            drop(l.acquire(Turn::ALONE).await);
        }
        assert_eq!(
            Instant::now(),
            start,
            "20 in the second, all ours: no one else's"
        );
        drop(l.acquire(Turn::ALONE).await);
        assert!(Instant::now() > start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_counts_as_ours_what_left_our_window_between_its_request_and_its_answer() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            100,
        );
        calm(&l);
        for _ in 0..10 {
            drop(l.acquire(Turn::ALONE).await);
        }
        tokio::time::advance(Duration::from_millis(900)).await;
        let second: Vec<_> =
            futures::future::join_all((0..10).map(|_| l.acquire(Turn::ALONE))).await;
        let sent = Instant::now();
        // The last of them arrived with all twenty of ours in the store's second; its answer
        // comes 200 ms later, when the first ten have left our window.
        tokio::time::advance(Duration::from_millis(200)).await;
        l.reported(WindowKind::Second, None, 0, sent);
        drop(second);
        let start = Instant::now();
        for _ in 0..10 {
            drop(l.acquire(Turn::ALONE).await);
        }
        assert_eq!(
            Instant::now(),
            start,
            "the twenty the store counted were all ours: ten have left, ten places are free"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_until_its_points_are_free_in_the_reported_bucket() {
        let l = unbound(100);
        let start = Instant::now();
        // Before any answer told the bucket, nothing is waited for.
        let first = l.acquire_costing(Turn::ALONE, 11.0).await;
        // Its answer: 30 of 50 points left, 10 back a second.
        l.points_reported(
            Points {
                max: 50.0,
                available: 30.0,
                rate: 10.0,
            },
            &first,
        );
        drop(first);
        // Two of 11 fit in 30; a third waits for 3 more points, 0.3 s.
        let held: Vec<_> =
            futures::future::join_all((0..2).map(|_| l.acquire_costing(Turn::ALONE, 11.0))).await;
        assert_eq!(Instant::now(), start);
        let third = l.acquire_costing(Turn::ALONE, 11.0).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
        // Points held by calls on their way are not free: with all three out, a fourth waits
        // for 11 more (1.1 s), even as time restores them.
        let fourth = l.acquire_costing(Turn::ALONE, 11.0).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(1400));
        drop((held, third, fourth));
        // A call never waits for more than the whole bucket.
        tokio::time::advance(Duration::from_secs(10)).await;
        let before = Instant::now();
        drop(l.acquire_costing(Turn::ALONE, 500.0).await);
        assert_eq!(Instant::now(), before);
    }

    /// A bucket of 50 points, 10 back a second, with `available` left.
    fn bucket_of_50(available: f64) -> Points {
        Points {
            max: 50.0,
            available,
            rate: 10.0,
        }
    }

    /// Two calls of 10 points, answered 30 and 40 left (a's answer read first when
    /// `a_read_first`); checks that 30 are believed left, not 40.
    async fn thirty_left_after_two_answers(a_read_first: bool, why: &str) {
        let l = unbound(100);
        let (a, b) = (
            l.acquire_costing(Turn::ALONE, 10.0).await,
            l.acquire_costing(Turn::ALONE, 10.0).await,
        );
        let (first, second) = if a_read_first { (a, b) } else { (b, a) };
        l.points_reported(bucket_of_50(30.0), &first);
        drop(first);
        l.points_reported(bucket_of_50(40.0), &second);
        drop(second);
        let start = Instant::now();
        let big = l.acquire_costing(Turn::ALONE, 30.0).await;
        assert_eq!(
            Instant::now(),
            start,
            "30 are left, as the first answer read said"
        );
        drop(l.acquire_costing(Turn::ALONE, 10.0).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(1), "{why}");
        drop(big);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_read_after_a_later_ones_does_not_bring_back_spent_points() {
        // The shop answered a (40 left), then b (30 left); b's answer is read first.
        thirty_left_after_two_answers(
            false,
            "none left while the 30 are on their way: a's older count did not bring 10 back",
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_calls_answer_does_not_bring_back_points_of_an_earlier_call_it_overtook() {
        // b reached the shop first (40 left), then a (30 left); a's answer is read first, then
        // b's, which no longer counts a.
        thirty_left_after_two_answers(
            true,
            "none left while the 30 are on their way: b's count did not bring a's 10 back",
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_limit_stated_by_the_marketplace_replaces_the_configured_one() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 50,
                per_minute: 6000,
            },
            100,
        );
        calm(&l);
        let first = l.acquire(Turn::ALONE).await;
        l.reported(WindowKind::Second, Some(3), 2, Instant::now());
        drop(first);
        let start = Instant::now();
        drop(l.acquire(Turn::ALONE).await);
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(Instant::now(), start);
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(1) + MARGIN);
        // A higher one never raises the configured limit.
        let one = l.acquire(Turn::ALONE).await;
        l.reported(WindowKind::Second, Some(500), 499, Instant::now());
        drop(one);
        let windows = l.windows();
        assert_eq!((windows[0].count, windows[1].count), (3, 6000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_sent_late_counts_from_when_it_was_sent() {
        let l = ConnLimiter::new(
            RateLimit {
                per_second: 2,
                per_minute: 100,
            },
            10,
        );
        calm(&l);
        let start = Instant::now();
        drop(l.acquire(Turn::ALONE).await);
        let late = l.acquire(Turn::ALONE).await;
        // It waited 300 ms between its admission and its sending.
        tokio::time::advance(Duration::from_millis(300)).await;
        l.sending(late.seq);
        drop(late);
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(1) + MARGIN,
            "the first one leaves the second first"
        );
        drop(l.acquire(Turn::ALONE).await);
        assert_eq!(
            Instant::now() - start,
            Duration::from_millis(1300) + MARGIN,
            "the late one leaves it a window after it was sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_taken_over_never_overfills_a_window_with_what_its_last_holder_sent() {
        let rate = RateLimit {
            per_second: 20,
            per_minute: 600,
        };
        // The last holder sent at the limits, as fast as allowed, until the hand-over.
        let before = ConnLimiter::new(rate, 1000);
        calm(&before);
        let mut times = Vec::new();
        for _ in 0..700 {
            drop(before.acquire(Turn::ALONE).await);
            times.push(Instant::now());
        }
        // Its lease ran out 300 ms after its last request, and this node took it then.
        tokio::time::advance(Duration::from_millis(300)).await;
        let after = ConnLimiter::new(rate, 1000);
        calm(&after);
        after.assume_windows_full(false, Duration::ZERO);
        for _ in 0..700 {
            drop(after.acquire(Turn::ALONE).await);
            times.push(Instant::now());
        }
        assert!(most_in_any(&times, Duration::from_secs(1)) <= 20);
        assert!(most_in_any(&times, Duration::from_secs(60)) <= 600);

        // A holder whose lease ended a minute and more ago left nothing to wait for; one that
        // ended 10 s ago may have sent 600 in the 30 s before, the first of which leaves the
        // minute 20 s from now.
        let later = ConnLimiter::new(rate, 1000);
        calm(&later);
        later.assume_windows_full(false, Duration::from_secs(61));
        let start = Instant::now();
        drop(later.acquire(Turn::ALONE).await);
        assert_eq!(Instant::now(), start, "nothing left of a minute ago");
        let ended_10s_ago = ConnLimiter::new(rate, 1000);
        calm(&ended_10s_ago);
        ended_10s_ago.assume_windows_full(false, Duration::from_secs(10));
        drop(ended_10s_ago.acquire(Turn::ALONE).await);
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_secs(20) && waited <= Duration::from_secs(21),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn uneven_answers_widen_the_margin_and_a_cold_limiter_starts_at_the_widest() {
        let rate = RateLimit {
            per_second: 2,
            per_minute: 100,
        };
        let l = ConnLimiter::new(rate, 10);
        assert_eq!(l.margin(), COLD_MARGIN, "nothing measured yet");
        calm(&l);
        assert_eq!(l.margin(), MARGIN);
        l.round_trip(Duration::from_millis(230));
        assert_eq!(
            l.margin(),
            Duration::from_millis(80),
            "the spread of the round trips"
        );
        l.round_trip(Duration::from_secs(3));
        assert_eq!(l.margin(), MAX_MARGIN, "at most");
        // The margin holds requests that much longer in the window.
        let start = Instant::now();
        for _ in 0..3 {
            drop(l.acquire(Turn::ALONE).await);
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(1) + MAX_MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_goes_alone_and_the_others_follow_its_answer() {
        let l = std::sync::Arc::new(ConnLimiter::new(
            RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            10,
        ));
        calm(&l);
        let first = l.acquire(Turn::ALONE).await;
        let l2 = l.clone();
        let second = tokio::spawn(async move {
            drop(l2.acquire(Turn::ALONE).await);
            Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            !second.is_finished(),
            "no second request before the first is answered"
        );
        let answered = Instant::now();
        drop(first);
        assert_eq!(second.await.unwrap(), answered);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_whole_connection_and_backs_off_while_it_repeats() {
        let l = unbound(4);
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
        drop(l.acquire(Turn::ALONE).await);
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

    #[tokio::test(start_paused = true)]
    async fn a_gap_holds_the_connection_after_every_answer() {
        let rate = RateLimit {
            per_second: 1000,
            per_minute: 60_000,
        };
        let l = ConnLimiter::with_gap(rate, 1, Some(Duration::from_millis(500)));
        let start = Instant::now();
        drop(l.acquire(Turn::ALONE).await);
        l.answered();
        drop(l.acquire(Turn::ALONE).await);
        assert!(Instant::now() >= start + Duration::from_millis(500));
        let none = ConnLimiter::with_gap(rate, 1, Some(Duration::ZERO));
        none.answered();
        assert_eq!(none.paused_until(), None);
    }
}
