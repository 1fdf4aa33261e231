//! Configuration: the built-in `config/default.toml`, then an optional file, then environment
//! variables `CAMPAIGND_<SECTION>__<KEY>`. Unknown keys are refused so a typo is not ignored.

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use api::config::ServerConfig;
pub use engine::config::{ClusterConfig, EventConfig, RunConfig, WebhookConfig};
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
pub struct HttpConfig {
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
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
