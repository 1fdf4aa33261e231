//! The store's settings (`[store]` and `[secrets]` of the service's configuration): which backend,
//! where its data lives, and where the key sealing credentials comes from.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sled` (embedded, the default) or `postgres` (shared by every node of a cluster).
    pub backend: StoreBackend,
    pub data_dir: PathBuf,
    pub cache_mb: u64,
    /// The PostgreSQL URL, for the `postgres` backend.
    #[serde(default)]
    pub url: Option<String>,
    /// Connections to PostgreSQL this node keeps open at most.
    pub pool_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Sled,
    Postgres,
}

/// Where the key sealing credentials at rest comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The key file; empty for `DATA_DIR.key`, beside the data directory.
    pub key_file: PathBuf,
    /// The key itself, base64 of 32 bytes (`CAMPAIGND_SECRETS__KEY`, for containers); wins
    /// over the key file.
    pub key: String,
    /// A previous key, still read during a rotation (`CAMPAIGND_SECRETS__OLD_KEY`).
    pub old_key: String,
}
