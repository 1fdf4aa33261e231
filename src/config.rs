//! Configuration: the built-in `config/default.toml`, then an optional file, then environment
//! variables `CAMPAIGND_<SECTION>__<KEY>`. Unknown keys are refused so a typo is not ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use net::egress::EgressConfig;
pub use store::config::{SecretsConfig, StoreBackend, StoreConfig};

/// The defaults, compiled into the binary so it runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub runs: RunConfig,
    pub http: HttpConfig,
    pub webhooks: WebhookConfig,
    pub events: EventConfig,
    pub cluster: ClusterConfig,
    pub secrets: SecretsConfig,
    pub egress: EgressConfig,
}

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
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub body_limit_bytes: u64,
    /// A client must send its request's headers, and then its body, within this long.
    pub read_timeout_secs: u64,
    /// Open connections one client address may hold.
    pub connections_per_client: usize,
    /// Open WebSocket and SSE streams one token may hold.
    pub subscribers_per_token: usize,
    /// Requests one token may make in a minute (answered 429 with Retry-After beyond).
    pub requests_per_token_per_minute: u32,
    /// The operator's bearer token: it reads `GET /metrics` from other than loopback (loopback
    /// clients need none), and it alone opens the `/admin` pages, which show every tenant's
    /// records (empty: they are closed). Formerly `metrics_token`, still read under that name.
    #[serde(alias = "metrics_token")]
    pub operator_token: String,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
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

    pub fn retry(&self) -> crate::marketplaces::RetryPolicy {
        crate::marketplaces::RetryPolicy {
            attempts: self.retry_attempts.max(1),
            min_delay: Duration::from_millis(self.retry_min_ms),
            max_delay: Duration::from_millis(self.retry_max_ms.max(self.retry_min_ms)),
        }
    }
}

impl Config {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only nested keys are settings; CAMPAIGND_DEMO_TOKEN and friends are not.
        let env = Env::prefixed("CAMPAIGND_")
            .filter(|k| k.as_str().contains("__"))
            .split("__");
        figment.merge(env).extract().map_err(Box::new)
    }

    /// The defaults alone, with the store in `data_dir`: what tests and the demo start from.
    pub fn for_data_dir(data_dir: &Path) -> Config {
        let mut config: Config = Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            // The built-in defaults are checked by the test below; they always parse.
            .expect("the built-in configuration parses");
        config.store.data_dir = data_dir.to_path_buf();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_built_in_defaults_parse() {
        let c = Config::for_data_dir(Path::new("/tmp/x"));
        assert_eq!(c.runs.default_chunk_size, 50);
        assert_eq!(c.store.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_file_overrides_the_defaults_and_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[server]\naddr = \"127.0.0.1:9999\"\n").unwrap();
        let c = Config::load(Some(&good)).unwrap();
        assert_eq!(c.server.addr.port(), 9999);
        assert_eq!(c.runs.lease_secs, 60);
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[server]\nadress = \"x\"\n").unwrap();
        assert!(Config::load(Some(&bad)).is_err());
    }
}
