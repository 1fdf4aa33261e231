//! The command line: `serve`, `demo`, `sim`, `token`, `secrets rotate`, and the operator's
//! commands (`status`, `campaigns`, `trackers`, `failed`, `retry`, `force-reset`, `import`,
//! `export`, `backup`, `restore`, `check`). Each command parses its arguments into a
//! configuration and hands over to the library; nothing here knows how a campaign runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;

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
        /// The first this many writes take effect only `--land-after-ms` after they arrive,
        /// even when their client is gone by then (a crash test's late-landing creates).
        #[arg(long, default_value_t = 0)]
        late_writes: u32,
        #[arg(long, default_value_t = 0)]
        land_after_ms: u64,
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
    /// Runs in progress with their locks, open work, pending webhook deliveries, live nodes and
    /// the store's size.
    Status(StoreArgs),
    /// Every tenant's campaigns with their products by status.
    Campaigns(StoreArgs),
    /// A campaign's runs, newest first.
    Trackers {
        campaign: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A campaign's errored products and their messages.
    Failed {
        campaign: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Retries a campaign's errored products, through the running service's API.
    Retry {
        campaign: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Clears a stuck campaign's lock and active runs, through the running service's API.
    ForceReset {
        campaign: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Imports records through the running service's API.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Every record of every tenant as JSON on stdout (never credentials).
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Writes a consistent copy of the store into DIR (sled: the service must be stopped;
    /// PostgreSQL: while it runs).
    Backup {
        dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Reads a backup into the configured store, which must be new (no tenant yet).
    Restore {
        dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Verifies the store's invariants; exits 1 when one is broken.
    Check(StoreArgs),
}

/// A command on the store itself, or through a running service's operator pages (`/admin`).
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
    /// Ask the running service at this address instead of opening its store (which sled lets
    /// one process at a time do).
    #[arg(long)]
    url: Option<String>,
    /// The operator's token (default: `server.operator_token` of the configuration).
    #[arg(long, env = "CAMPAIGND_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
}

/// What a store command reads: the running service's operator page `path` when `--url`
/// names a service, and otherwise `local` on the store itself.
fn read(
    args: &StoreArgs,
    path: &str,
    local: impl for<'a> FnOnce(
        &'a dyn store::Store,
    ) -> futures::future::BoxFuture<'a, store::Result<Value>>,
) -> anyhow::Result<Value> {
    let Some(url) = &args.url else {
        let store = admin_store(&load(args.config.clone())?)?;
        // The store's futures are driven by its own threads or are ready at once.
        return Ok(futures::executor::block_on(local(store.as_ref()))?);
    };
    let token = match &args.operator_token {
        Some(t) => t.clone(),
        None => load(args.config.clone())?.server.operator_token,
    };
    let client = client::Client::new(url, &token);
    block_on_api(client.page(path))
}

/// A command through the running service's API.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The service's address.
    #[arg(long, env = "CAMPAIGND_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A tenant's API token.
    #[arg(long, env = "CAMPAIGND_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Products from a JSON array (the API's product fields) or a CSV file (sku, name, price,
    /// and optionally description, stock), sent in batches with a progress bar.
    Products {
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
        /// Products per request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
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
fn admin_store(config: &Config) -> anyhow::Result<store::SharedStore> {
    crate::app::open_store(config).with_context(|| {
        format!(
            "could not open the store ({}); is a running service holding its data directory? \
             (then ask it: --url http://127.0.0.1:8080)",
            store::place(&config.store)
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
            late_writes,
            land_after_ms,
        } => {
            if !addr.ip().is_loopback() {
                anyhow::bail!("simulators listen on loopback only (got {addr})");
            }
            let knobs = marketplaces::sim::Knobs {
                latency: std::time::Duration::from_millis(latency_ms),
                late_writes,
                land_after: std::time::Duration::from_millis(land_after_ms),
                ..marketplaces::sim::Knobs::default()
            };
            demo::run_sim(&marketplace, addr, knobs, per_second.zip(per_minute))
        }
        Command::Secrets {
            command: SecretsCommand::Rotate { config },
        } => {
            let config = load(config)?;
            let rotated = crate::app::rotate_secrets(&config).with_context(|| {
                format!(
                    "could not rotate the secrets key ({}); is a running service holding its data directory?",
                    store::place(&config.store)
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
        command => operate(command),
    }
}

/// Prints rows of JSON objects as a table of `columns`.
fn table(rows: &Value, columns: &[&str]) {
    let cell = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(|r| {
            r.iter()
                .map(|row| columns.iter().map(|c| cell(&row[c])).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn show(json: bool, value: &Value, columns: &[&str]) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        table(value, columns);
    }
    Ok(())
}

/// The operator's commands.
fn operate(command: Command) -> anyhow::Result<()> {
    use futures::executor::block_on as block;
    let now = chrono::Utc::now().timestamp_millis();
    match command {
        Command::Status(args) => show_status(&args, now)?,
        Command::Campaigns(args) => {
            let list = read(&args, "/admin/campaigns", |s| {
                Box::pin(api::ops::campaigns(s))
            })?;
            show(
                args.json,
                &list,
                &["id", "tenant", "name", "status", "products", "updated_at"],
            )?;
        }
        Command::Trackers {
            campaign,
            store: args,
        } => {
            let list = read(
                &args,
                &format!("/admin/campaigns/{campaign}/trackers"),
                |s| Box::pin(api::ops::trackers(s, campaign)),
            )?;
            show(
                args.json,
                &list,
                &[
                    "id",
                    "action",
                    "status",
                    "progress",
                    "started_at",
                    "duration_secs",
                    "has_failures",
                ],
            )?;
        }
        Command::Failed {
            campaign,
            store: args,
        } => {
            let list = read(&args, &format!("/admin/campaigns/{campaign}/failed"), |s| {
                Box::pin(api::ops::failed(s, campaign))
            })?;
            show(
                args.json,
                &list,
                &["product_id", "sku", "marketplace_id", "error_message"],
            )?;
        }
        Command::Export { config } => {
            let store = admin_store(&load(config)?)?;
            let all = block(api::ops::export(store.as_ref()))?;
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        Command::Check(args) => check(&args)?,
        Command::Backup { dir, config } => {
            let store = admin_store(&load(config)?)?;
            let backup = block(store.backup(&dir))?;
            let records: u64 = backup.tables.values().sum();
            println!(
                "backed up {records} records of {} tables into {}",
                backup.tables.len(),
                dir.display()
            );
        }
        Command::Restore { dir, config } => {
            let store = admin_store(&load(config)?)?;
            let backup = block(async {
                let b = store.restore(&dir).await?;
                store.flush().await?;
                Ok::<_, store::StoreError>(b)
            })?;
            let records: u64 = backup.tables.values().sum();
            println!(
                "restored {records} records of the backup of {}",
                backup.created_at
            );
        }
        Command::Retry { campaign, api } => {
            let retry = api::input::RetryInput::default();
            let started = block_on_api(api.client().retry_failed_products(campaign, &retry))?;
            if api.json {
                println!("{}", serde_json::to_string(&started)?);
            } else {
                println!("{}\ntracker {}", started.message, started.tracker_id);
            }
        }
        Command::ForceReset { campaign, api } => {
            let reset = block_on_api(api.client().force_reset_campaign(campaign))?;
            if api.json {
                println!("{}", serde_json::to_string(&reset)?);
            } else {
                println!("{}", reset.message);
            }
        }
        Command::Import {
            what: ImportCommand::Products { file, api, batch },
        } => {
            import_products(&file, &api, batch.max(1))?;
        }
        Command::Serve { .. }
        | Command::Demo { .. }
        | Command::Sim { .. }
        | Command::Token { .. }
        | Command::Secrets { .. } => {
            unreachable!("handled by run")
        }
    }
    Ok(())
}

/// `campaignd status`: the service's counts and its running actions.
fn show_status(args: &StoreArgs, now: i64) -> anyhow::Result<()> {
    let status = read(args, "/admin/status", |s| {
        Box::pin(api::ops::status(s, now))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        for key in [
            "tenants",
            "campaigns",
            "open_work_items",
            "webhook_deliveries_pending",
            "live_nodes",
            "store_bytes",
        ] {
            println!("{key:<28} {}", status[key]);
        }
        println!();
        table(
            &status["running"],
            &[
                "campaign_id",
                "tracker_id",
                "action",
                "progress",
                "lock_owner",
                "lock_expires_at",
            ],
        );
    }
    Ok(())
}

/// `campaignd check`: the store's invariants; fails when any is broken.
fn check(args: &StoreArgs) -> anyhow::Result<()> {
    let report = read(args, "/admin/check", |s| {
        Box::pin(api::ops::check_report(s))
    })?;
    let problems: Vec<String> = serde_json::from_value(report["problems"].clone())?;
    if args.json {
        println!("{report}");
    } else if problems.is_empty() {
        println!("the store is consistent");
    } else {
        for p in &problems {
            println!("{p}");
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("{} problems found", problems.len());
    }
    Ok(())
}

impl ApiArgs {
    fn client(&self) -> client::Client {
        client::Client::new(&self.url, &self.token)
    }
}

/// Runs one call of the API's client to its end, on a runtime of this thread.
fn block_on_api<T>(
    call: impl std::future::Future<Output = Result<T, client::ClientError>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(call)?)
}

/// Sends a file's products in batches, with a progress bar on a terminal.
fn import_products(file: &std::path::Path, api: &ApiArgs, batch: usize) -> anyhow::Result<()> {
    let products = api::ops::read_products(file).map_err(|e| anyhow::anyhow!(e))?;
    let bar = indicatif::ProgressBar::new(products.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} products ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let client = api.client();
    let (mut created, mut updated) = (0u64, 0u64);
    // One runtime for every batch: the client's connections belong to the runtime they opened on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for chunk in products.chunks(batch.min(api::input::MAX_PRODUCTS_PER_REQUEST)) {
            let upserted = client
                .upsert_products(chunk)
                .await
                .with_context(|| format!("after {} products", bar.position()))?;
            created += upserted.created;
            updated += upserted.updated;
            bar.inc(chunk.len() as u64);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    bar.finish_and_clear();
    if api.json {
        println!(
            "{}",
            serde_json::json!({"created": created, "updated": updated})
        );
    } else {
        println!(
            "imported {} products: {created} created, {updated} updated",
            products.len()
        );
    }
    Ok(())
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
                let made = api::admin::new_token(
                    store.as_ref(),
                    tenant.id,
                    &name,
                    expires_in.map(|ms| now + ms),
                    now,
                )
                .await?;
                store.flush().await?;
                Ok::<_, store::StoreError>(made)
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
                    Some(at) if at <= now => format!("{} (expired)", domain::clock::rfc3339(at)),
                    Some(at) => domain::clock::rfc3339(at),
                };
                println!(
                    "{:<16}  {:<20}  {:<16}  {:<24}  {expires}",
                    domain::token_id(&hash),
                    tenant,
                    t.name,
                    domain::clock::rfc3339(t.created_at)
                );
            }
        }
        TokenCommand::Revoke { id, config } => {
            let store = admin_store(&load(config)?)?;
            let revoked = block(async {
                let revoked = api::admin::revoke_token(store.as_ref(), None, id.trim()).await?;
                store.flush().await?;
                Ok::<_, store::StoreError>(revoked)
            })?;
            match revoked {
                Some(_) => println!("token {id} revoked"),
                None => anyhow::bail!("no token {id} (see campaignd token list)"),
            }
        }
    }
    Ok(())
}
