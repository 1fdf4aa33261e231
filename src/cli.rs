//! The command line: `serve`, `demo`, `sim`, `token` and `secrets rotate`. Each command parses its arguments into a
//! configuration and hands over to the library; nothing here knows how a campaign runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{App, AppOptions};
use crate::config::Config;
use crate::demo::{self, DemoOptions};

#[derive(Debug, Parser)]
#[command(
    name = "campaignd",
    version,
    about = "Publishes campaign products on marketplaces, with live progress"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the service (config/default.toml, then --config FILE, then CAMPAIGND_<SECTION>__<KEY>).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Runs the service with simulated marketplaces and a sample campaign, all on loopback.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// The demo's data directory; wiped at the start of each demo run.
        #[arg(long, default_value = "campaignd-demo-data")]
        data: PathBuf,
    },
    /// Runs one marketplace simulator on loopback until stopped (for crash tests and trials).
    Sim {
        /// jumpseller, mercadolibre, shopify or woocommerce.
        marketplace: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// How long it takes to answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Replaces the marketplace's limits: requests per second.
        #[arg(long, requires = "per_minute")]
        per_second: Option<u64>,
        /// Replaces the marketplace's limits: requests per minute.
        #[arg(long, requires = "per_second")]
        per_minute: Option<u64>,
    },
    /// Manages API tokens (the service must not be running on the same data directory).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manages the key that seals credentials at rest (the service must be stopped).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seals every credential and webhook secret under a new key, then retires the old one.
    Rotate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Prints a new token for the tenant, creating the tenant if needed.
    Create {
        #[arg(long)]
        tenant: String,
        /// A name for the token, shown by `token list`.
        #[arg(long, default_value = "")]
        name: String,
        /// The token stops working after this long: `90d`, `12h` or `30m`.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<i64>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Lists every tenant's tokens (their ids, never the tokens).
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revokes a token by its id (from `token list`).
    Revoke {
        id: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `90d`, `12h`, `30m` as milliseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a duration such as 90d, 12h or 30m"))?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        _ => return Err(format!("{s:?}: the unit must be d, h or m")),
    };
    Ok(n.saturating_mul(ms))
}

/// Opens a stopped service's store for an administrative command.
fn admin_store(config: &Config) -> anyhow::Result<crate::store::SharedStore> {
    crate::app::open_store(config).with_context(|| {
        format!(
            "could not open the store ({}); is a running service holding its data directory?",
            crate::store::place(&config.store)
        )
    })
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Config> {
    Config::load(config.as_deref()).context("could not load the configuration")
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = load(config)?;
            let addr = config.server.addr;
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("could not listen on {addr}"))?;
            let app = App::start(AppOptions::new(config), listener)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Listening for the signals before saying the service runs: a supervisor may
            // signal it as soon as it reads the line.
            let signals = runtime.block_on(async { crate::app::StopSignals::listen() });
            println!("campaignd listening on {}", app.url());
            runtime.block_on(signals.stopped());
            tracing::info!("stopping");
            app.shutdown();
            Ok(())
        }
        Command::Demo { addr, data } => demo::run(DemoOptions {
            addr,
            data,
            token: std::env::var("CAMPAIGND_DEMO_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        }),
        Command::Sim {
            marketplace,
            addr,
            latency_ms,
            per_second,
            per_minute,
        } => {
            if !addr.ip().is_loopback() {
                anyhow::bail!("simulators listen on loopback only (got {addr})");
            }
            demo::run_sim(
                &marketplace,
                addr,
                std::time::Duration::from_millis(latency_ms),
                per_second.zip(per_minute),
            )
        }
        Command::Secrets {
            command: SecretsCommand::Rotate { config },
        } => {
            let config = load(config)?;
            let rotated = crate::app::rotate_secrets(&config).with_context(|| {
                format!(
                    "could not rotate the secrets key ({}); is a running service holding its data directory?",
                    crate::store::place(&config.store)
                )
            })?;
            println!(
                "sealed {} records again under key {}",
                rotated.resealed, rotated.key_id
            );
            if let Some(key) = rotated.new_key {
                println!("set CAMPAIGND_SECRETS__KEY={} (and CAMPAIGND_SECRETS__OLD_KEY to the previous key until every node has it)", key.as_str());
            }
            Ok(())
        }
        Command::Token { command } => token_command(command),
    }
}

fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    // The store's futures are driven by its own threads or are ready at once.
    use futures::executor::block_on as block;
    match command {
        TokenCommand::Create {
            tenant,
            name,
            expires_in,
            config,
        } => {
            let store = admin_store(&load(config)?)?;
            let made = block(async {
                let tenant = store.ensure_tenant(&tenant, now).await?;
                let made = crate::admin::new_token(
                    store.as_ref(),
                    tenant.id,
                    &name,
                    expires_in.map(|ms| now + ms),
                    now,
                )
                .await?;
                store.flush().await?;
                Ok::<_, crate::store::StoreError>(made)
            })?;
            eprintln!("token {} created; it is shown this once", made.id);
            println!("{}", made.token);
        }
        TokenCommand::List { config } => {
            let store = admin_store(&load(config)?)?;
            let mut tokens = block(store.tokens(None))?;
            tokens.sort_by_key(|(_, t)| (t.tenant_id, t.created_at));
            println!(
                "{:<16}  {:<20}  {:<16}  {:<24}  EXPIRES",
                "ID", "TENANT", "NAME", "CREATED"
            );
            for (hash, t) in tokens {
                let tenant = block(store.tenant(t.tenant_id))?
                    .map_or_else(|| t.tenant_id.to_string(), |t| t.name);
                let expires = match t.expires_at {
                    None => "never".to_string(),
                    Some(at) if at <= now => format!("{} (expired)", crate::clock::rfc3339(at)),
                    Some(at) => crate::clock::rfc3339(at),
                };
                println!(
                    "{:<16}  {:<20}  {:<16}  {:<24}  {expires}",
                    crate::domain::token_id(&hash),
                    tenant,
                    t.name,
                    crate::clock::rfc3339(t.created_at)
                );
            }
        }
        TokenCommand::Revoke { id, config } => {
            let store = admin_store(&load(config)?)?;
            let revoked = block(async {
                let revoked = crate::admin::revoke_token(store.as_ref(), None, id.trim()).await?;
                store.flush().await?;
                Ok::<_, crate::store::StoreError>(revoked)
            })?;
            match revoked {
                Some(_) => println!("token {id} revoked"),
                None => anyhow::bail!("no token {id} (see campaignd token list)"),
            }
        }
    }
    Ok(())
}
