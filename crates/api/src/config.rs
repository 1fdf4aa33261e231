//! The API server's settings (`[server]`): its address, and what one client may take of it.

use std::net::SocketAddr;

use serde::Deserialize;

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
