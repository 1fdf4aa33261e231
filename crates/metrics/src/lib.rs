//! The service's Prometheus metrics (prometheus-client, one registry per running service, no
//! global state): marketplace requests by connection and status, 429s, time waited at the
//! limiter, requests in flight, and requests sent in the last second and minute beside each
//! window's limit; runs started and ended, and run duration, by action; products by outcome;
//! webhook deliveries by outcome; live subscribers; the store's size and flush time; the
//! process's resident memory. Labels are the marketplace, the connection id and the like, never
//! a credential. Rendered in the text exposition format at `GET /metrics`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// A histogram that many tasks observe at once: an atomic counter per bucket. prometheus-client's
/// `Histogram` takes a write lock for every observation, and the ten thousand deliveries of one
/// live update queued on it: with 1,000 subscribers the p99 of their delay went from 20 to
/// 99 ms.
#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<AtomicBuckets>);

#[derive(Debug)]
struct AtomicBuckets {
    /// Upper bounds, increasing; one more count holds what is above the last.
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: impl Iterator<Item = f64>) -> AtomicHistogram {
        let bounds: Vec<f64> = bounds.collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram(Arc::new(AtomicBuckets {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Counts one observation of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let b = &self.0;
        // The first bucket whose bound holds the value; past the last bound, the last count.
        let i = b.bounds.partition_point(|bound| *bound < seconds);
        if let Some(count) = b.counts.get(i) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        b.sum_nanos
            .fetch_add((seconds.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let b = &self.0;
        // prometheus-client's own histogram ends with `f64::MAX`, which it writes as +Inf.
        let buckets: Vec<(f64, u64)> = b
            .bounds
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(b.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = b.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub system: String,
    pub connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub system: String,
    pub connection: String,
    /// The HTTP status, or `error` when no answer came.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunEndLabels {
    pub action: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProductLabels {
    pub action: String,
    pub system: String,
    /// `successful` (through the action's last phase) or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub system: String,
    pub connection: String,
    /// `1s` or `1m`.
    pub window: String,
}

/// When a connection's recent requests were sent, and its account's limits.
struct Sends {
    per_second: u32,
    per_minute: u32,
    at: VecDeque<Instant>,
}

/// A connection's use of its windows just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowUse {
    pub labels: ConnLabels,
    pub last_second: u32,
    pub last_minute: u32,
    pub per_second: u32,
    pub per_minute: u32,
}

/// What this node last saw go wrong on a connection, and until when it holds its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub paused_until: Option<i64>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn run_buckets() -> Histogram {
    // 0.5 s to about 4.5 hours.
    Histogram::new(exponential_buckets(0.5, 2.0, 16))
}

/// Every metric of the service, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub run_duration: HistogramFamily<RunLabels>,
    pub products: Family<ProductLabels, Counter>,
    rate_used: Family<WindowLabels, Gauge>,
    rate_limit: Family<WindowLabels, Gauge>,
    sends: Mutex<HashMap<ConnLabels, Sends>>,
    pub store_bytes: Gauge,
    pub store_flush: Histogram,
    resident_memory: Gauge,
    health: Mutex<HashMap<ConnLabels, Health>>,
    pub requests: Family<RequestLabels, Counter>,
    pub throttled: Family<ConnLabels, Counter>,
    pub limiter_wait: Family<ConnLabels, Counter<f64, AtomicU64>>,
    /// Writes held back until an earlier request of unknown outcome could no longer land, and
    /// how long they waited (`marketplaces::settle`).
    pub settle_waits: Family<ConnLabels, Counter>,
    pub settle_wait: Family<ConnLabels, Counter<f64, AtomicU64>>,
    pub limiter_margin: Family<ConnLabels, Gauge<f64, AtomicU64>>,
    pub in_flight: Family<ConnLabels, Gauge>,
    pub runs_started: Family<RunLabels, Counter>,
    pub runs_ended: Family<RunEndLabels, Counter>,
    pub webhooks: Family<OutcomeLabels, Counter>,
    pub subscribers: Gauge,
    pub live_delivery: AtomicHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("campaignd");
        let m = Metrics {
            requests: Family::default(),
            throttled: Family::default(),
            limiter_wait: Family::default(),
            settle_waits: Family::default(),
            settle_wait: Family::default(),
            limiter_margin: Family::default(),
            in_flight: Family::default(),
            runs_started: Family::default(),
            runs_ended: Family::default(),
            webhooks: Family::default(),
            subscribers: Gauge::default(),
            // 0.5 ms to about 2.5 s, each bound half again the one before.
            live_delivery: AtomicHistogram::new(exponential_buckets(0.0005, 1.5, 22)),
            registry: Registry::default(),
            run_duration: Family::new_with_constructor(run_buckets),
            products: Family::default(),
            rate_used: Family::default(),
            rate_limit: Family::default(),
            sends: Mutex::default(),
            store_bytes: Gauge::default(),
            // 0.1 ms to about 3 s.
            store_flush: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            resident_memory: Gauge::default(),
            health: Mutex::default(),
        };
        registry.register(
            "marketplace_requests",
            "Requests sent to marketplaces, by connection and HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "marketplace_throttled",
            "Answers 429 (too many requests) from marketplaces",
            m.throttled.clone(),
        );
        registry.register(
            "limiter_wait_seconds",
            "Time requests waited for their turn at their connection's rate limiter",
            m.limiter_wait.clone(),
        );
        registry.register(
            "settle_waits",
            "Writes held back until an earlier request of unknown outcome to the same product \
             could no longer be carried out by the store (its settle window)",
            m.settle_waits.clone(),
        );
        registry.register(
            "settle_wait_seconds",
            "Time writes waited for an earlier request of unknown outcome to settle",
            m.settle_wait.clone(),
        );
        registry.register(
            "limiter_margin_seconds",
            "How much longer than its window the limiter counts a request: the spread of the \
             connection's last round trips, 15 ms to 250 ms",
            m.limiter_margin.clone(),
        );
        registry.register(
            "marketplace_in_flight",
            "Requests sent to a connection and not answered yet",
            m.in_flight.clone(),
        );
        registry.register(
            "runs_started",
            "Actions started, by action",
            m.runs_started.clone(),
        );
        registry.register(
            "runs_ended",
            "Actions ended, by action and tracker status",
            m.runs_ended.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retried, given_up)",
            m.webhooks.clone(),
        );
        registry.register(
            "live_subscribers",
            "Open WebSocket and SSE streams",
            m.subscribers.clone(),
        );
        registry.register(
            "live_delivery_seconds",
            "Time from an event's publication on this node to its hand-over to each live \
             subscriber (a WebSocket's: written to its socket)",
            m.live_delivery.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "How long actions took from start to end, by action",
            m.run_duration.clone(),
        );
        registry.register(
            "products",
            "Products done by actions, by action, marketplace and outcome",
            m.products.clone(),
        );
        registry.register(
            "rate_used",
            "Requests sent to a connection in its last window (1s, 1m)",
            m.rate_used.clone(),
        );
        registry.register(
            "rate_limit",
            "The connection's limit for that window",
            m.rate_limit.clone(),
        );
        registry.register(
            "store_size_bytes",
            "The store's size on disk (sled) or the database's size (PostgreSQL)",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_flush_seconds",
            "How long the store took to make a run's end durable",
            m.store_flush.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "The service's resident memory",
            m.resident_memory.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Notes a request sent on a connection whose account allows `per_second` and `per_minute`.
    pub fn sent(&self, labels: &ConnLabels, per_second: u32, per_minute: u32) {
        let now = Instant::now();
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        // The labels are cloned once per connection, not once per request.
        if !sends.contains_key(labels) {
            sends.insert(
                labels.clone(),
                Sends {
                    per_second,
                    per_minute,
                    at: VecDeque::new(),
                },
            );
        }
        let Some(entry) = sends.get_mut(labels) else {
            return;
        };
        entry.per_second = per_second;
        entry.per_minute = per_minute;
        entry.at.push_back(now);
        while entry
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            entry.at.pop_front();
        }
    }

    /// Every connection's use of its windows at `now`.
    pub fn windows(&self) -> Vec<WindowUse> {
        let now = Instant::now();
        let sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        let within = |s: &Sends, d: Duration| {
            s.at.iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < d)
                .count() as u32
        };
        let mut out: Vec<WindowUse> = sends
            .iter()
            .map(|(labels, s)| WindowUse {
                labels: labels.clone(),
                last_second: within(s, Duration::from_secs(1)),
                last_minute: within(s, Duration::from_secs(60)),
                per_second: s.per_second,
                per_minute: s.per_minute,
            })
            .collect();
        out.sort_by(|a, b| a.labels.connection.cmp(&b.labels.connection));
        out
    }

    /// Notes what went wrong on a connection at `at_ms` (an answer's status, a transport
    /// error), for the dashboard's connection health.
    pub fn failed(&self, labels: &ConnLabels, message: String, at_ms: i64) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = health.entry(labels.clone()).or_default();
        h.last_error = Some(message);
        h.last_error_at = Some(at_ms);
    }

    /// Notes that a connection's requests wait until `until_ms` (a 429, a spent quota).
    pub fn paused(&self, labels: &ConnLabels, until_ms: i64) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.entry(labels.clone()).or_default().paused_until = Some(until_ms);
    }

    /// A connection's health as this node saw it.
    pub fn health_of(&self, labels: &ConnLabels) -> Health {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.get(labels).cloned().unwrap_or_default()
    }

    /// The 429s a connection met since the service started.
    pub fn throttled_of(&self, labels: &ConnLabels) -> u64 {
        self.throttled.get_or_create(labels).get()
    }

    /// The service's resident memory in bytes (Linux; 0 elsewhere).
    pub fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        for w in self.windows() {
            for (window, used, limit) in [
                ("1s", w.last_second, w.per_second),
                ("1m", w.last_minute, w.per_minute),
            ] {
                let labels = WindowLabels {
                    system: w.labels.system.clone(),
                    connection: w.labels.connection.clone(),
                    window: window.to_string(),
                };
                self.rate_used.get_or_create(&labels).set(i64::from(used));
                self.rate_limit.get_or_create(&labels).set(i64::from(limit));
            }
        }
        self.resident_memory
            .set(i64::try_from(Metrics::resident_bytes()).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn conn(system: &str, connection: u64) -> ConnLabels {
        ConnLabels {
            system: system.to_string(),
            connection: connection.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_labels() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                system: "jumpseller".into(),
                connection: "3".into(),
                status: "200".into(),
            })
            .inc_by(2);
        m.subscribers.set(4);
        let text = m.render();
        assert!(
            text.contains(
                r#"campaignd_marketplace_requests_total{system="jumpseller",connection="3",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("campaignd_live_subscribers 4"), "{text}");
    }

    #[test]
    fn an_atomic_histogram_renders_cumulative_buckets_its_count_and_sum() {
        let m = Metrics::new();
        for seconds in [0.0001, 0.0007, 0.0007, 0.003, 100.0] {
            m.live_delivery.observe(seconds);
        }
        let text = m.render();
        let line = |l: &str| assert!(text.lines().any(|t| t == l), "{l} in {text}");
        line("campaignd_live_delivery_seconds_count 5");
        line("campaignd_live_delivery_seconds_sum 100.0045");
        line(r#"campaignd_live_delivery_seconds_bucket{le="0.0005"} 1"#);
        line(r#"campaignd_live_delivery_seconds_bucket{le="0.00075"} 3"#);
        line(r#"campaignd_live_delivery_seconds_bucket{le="0.0016875"} 3"#);
        line(r#"campaignd_live_delivery_seconds_bucket{le="0.003796875"} 4"#);
        line(r#"campaignd_live_delivery_seconds_bucket{le="+Inf"} 5"#);
    }

    #[test]
    fn window_use_counts_the_last_second_and_minute_beside_the_limits() {
        let m = Metrics::new();
        let js = Metrics::conn("jumpseller", 3);
        for _ in 0..5 {
            m.sent(&js, 20, 600);
        }
        assert_eq!(
            m.windows(),
            vec![WindowUse {
                labels: js,
                last_second: 5,
                last_minute: 5,
                per_second: 20,
                per_minute: 600
            }]
        );
        let text = m.render();
        assert!(
            text.contains(
                r#"campaignd_rate_used{system="jumpseller",connection="3",window="1m"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"campaignd_rate_limit{system="jumpseller",connection="3",window="1s"} 20"#
            ),
            "{text}"
        );
        assert!(text.contains("campaignd_resident_memory_bytes "), "{text}");
    }
}
