//! The service's Prometheus metrics (prometheus-client, one registry per running service, no
//! global state): marketplace requests by connection and status, 429s, time waited at the
//! limiter and requests in flight; runs started and ended by action; webhook deliveries by
//! outcome; live subscribers. Labels are the marketplace, the connection id and the like,
//! never a credential. Rendered in the text exposition format at `GET /metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

/// Every metric of the service, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub throttled: Family<ConnLabels, Counter>,
    pub limiter_wait: Family<ConnLabels, Counter<f64, AtomicU64>>,
    pub in_flight: Family<ConnLabels, Gauge>,
    pub runs_started: Family<RunLabels, Counter>,
    pub runs_ended: Family<RunEndLabels, Counter>,
    pub webhooks: Family<OutcomeLabels, Counter>,
    pub subscribers: Gauge,
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
            in_flight: Family::default(),
            runs_started: Family::default(),
            runs_ended: Family::default(),
            webhooks: Family::default(),
            subscribers: Gauge::default(),
            registry: Registry::default(),
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
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
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
}
