//! The engine's settings: runs (`[runs]`), the cluster's leases and heartbeats (`[cluster]`),
//! webhook deliveries (`[webhooks]`) and the live events' buffer (`[events]`).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name on its leases and heartbeats; empty for host name, process id and
    /// start time.
    pub node_id: String,
    /// A node's lease on a connection, and its heartbeat, expire this long after they were
    /// last renewed.
    pub lease_ms: u64,
    /// How often a node renews its leases and looks for work nobody carries.
    pub heartbeat_ms: u64,
}

impl ClusterConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(100))
    }

    /// Renewals come at least three times a lease, so one missed renewal loses nothing.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.clamp(10, (self.lease_ms / 3).max(10)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    pub buffer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub default_chunk_size: u32,
    pub max_chunk_size: u32,
    pub lease_secs: u64,
    pub progress_flush_ms: u64,
    pub default_max_in_flight: u32,
    /// The least time a limiter counts a request beyond its window, in milliseconds.
    pub limiter_margin_ms: u64,
    pub retry_attempts: usize,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub shutdown_grace_secs: u64,
    pub stall_ms: u64,
    /// How long after a request of unknown outcome nothing is written to its product again
    /// (`marketplaces::settle`).
    pub settle_ms: u64,
    /// How long a dry run with `validate` asks the marketplaces, in all.
    pub dry_run_validate_ms: u64,
}

impl RunConfig {
    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    /// How long a run may make no progress before the watchdog fails it.
    pub fn stall(&self) -> Duration {
        Duration::from_millis(self.stall_ms.max(100))
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    pub fn dry_run_validate(&self) -> Duration {
        Duration::from_millis(self.dry_run_validate_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn retry(&self) -> marketplaces::RetryPolicy {
        marketplaces::RetryPolicy {
            attempts: self.retry_attempts.max(1),
            min_delay: Duration::from_millis(self.retry_min_ms),
            max_delay: Duration::from_millis(self.retry_max_ms.max(self.retry_min_ms)),
        }
    }
}
