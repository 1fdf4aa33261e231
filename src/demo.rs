//! `campaignd demo`: simulated Jumpseller, MercadoLibre, Shopify and WooCommerce accounts on
//! loopback, the service on the given address with its own data directory, a demo tenant and
//! token, and a campaign of 200 products with variants and images on all four, created through
//! the public API as a user would. Everything stays on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde_json::json;

use crate::app::{App, AppOptions};
use crate::config::Config;
use api::input::{
    AddProductsInput, CampaignInput, ConnectionInput, ImageInput, ProductInput, VariantInput,
};
use marketplaces::sim::jumpseller::JumpsellerSim;
use marketplaces::sim::mercadolibre::MercadoLibreSim;
use marketplaces::sim::shopify::ShopifySim;
use marketplaces::sim::woocommerce::WooSim;
use marketplaces::sim::SimHandle;

/// Products in the demo campaign.
pub const DEMO_PRODUCTS: usize = 200;

/// The file that marks a directory as the demo's own, so that it may be wiped on the next run.
const MARKER: &str = ".campaignd-demo";

pub struct DemoOptions {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub token: Option<String>,
}

/// The demo's catalogue: product `i` (1-based) with two colour variants and two images.
pub fn demo_products(count: usize) -> Vec<ProductInput> {
    (1..=count)
        .map(|i| {
            let sku = format!("DEMO-{i:04}");
            let variant = |colour: &str| VariantInput {
                sku: format!("{sku}-{}", colour.to_uppercase()),
                price: 9990.0,
                stock: 5,
                options: [("Color".to_string(), colour.to_string())].into(),
                barcode: None,
            };
            let image = |side: &str, position: u32| ImageInput {
                url: format!("https://images.example.com/demo/{i:04}-{side}.jpg"),
                position: Some(position),
            };
            ProductInput {
                name: format!("Demo T-shirt {i}"),
                description: format!("A cotton T-shirt, model {i}."),
                price: (9990 + (i as u64 % 10) * 1000) as f64,
                stock: 10 + (i % 7) as i64,
                variants: vec![variant("Red"), variant("Blue")],
                images: vec![image("front", 1), image("back", 2)],
                brand: None,
                barcode: None,
                marketplaces: None,
                sku,
            }
        })
        .collect()
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a demo directory; give --data an empty or new directory",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("could not clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        "campaignd demo data; wiped by the next `campaignd demo`\n",
    )?;
    Ok(())
}

/// The four simulated marketplaces of the demo, each speaking its marketplace's API on
/// loopback with its real limits, and the credentials the demo's connections use.
pub struct DemoMarketplaces {
    pub jumpseller: SimHandle<JumpsellerSim>,
    pub mercadolibre: SimHandle<MercadoLibreSim>,
    pub shopify: SimHandle<ShopifySim>,
    pub woocommerce: SimHandle<WooSim>,
}

impl DemoMarketplaces {
    /// Starts the four simulators on 127.0.0.1, each answering after `latency`.
    pub fn start(latency: Duration) -> std::io::Result<DemoMarketplaces> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let m = DemoMarketplaces {
            jumpseller: SimHandle::start(
                JumpsellerSim::new("demo-store", "demo-authtoken"),
                loopback,
            )?,
            mercadolibre: SimHandle::start(
                MercadoLibreSim::new("demo-app", "demo-secret", "APP_USR-demo", "TG-demo"),
                loopback,
            )?,
            shopify: SimHandle::start(ShopifySim::new("shpat_demo"), loopback)?,
            woocommerce: SimHandle::start(WooSim::new("ck_demo", "cs_demo"), loopback)?,
        };
        m.jumpseller.set_knobs(|k| k.latency = latency);
        m.mercadolibre.set_knobs(|k| k.latency = latency);
        m.shopify.set_knobs(|k| k.latency = latency);
        m.woocommerce.set_knobs(|k| k.latency = latency);
        Ok(m)
    }

    /// The bodies of `POST /api/marketplaces` that connect to the four, with each
    /// marketplace's default limits.
    pub fn connections(&self) -> Vec<ConnectionInput> {
        let user_id = self.mercadolibre.with_api(|s| s.user_id);
        vec![
            connection_body("jumpseller", &self.jumpseller.url(), user_id),
            connection_body("mercadolibre", &self.mercadolibre.url(), user_id),
            connection_body("shopify", &self.shopify.url(), user_id),
            connection_body("woocommerce", &self.woocommerce.url(), user_id),
        ]
    }
}

/// The body of `POST /api/marketplaces` for a simulator of `system` at `url`, with the
/// credentials the demo's simulators accept (`ml_user_id`: the MercadoLibre seller's id).
pub fn connection_body(system: &str, url: &str, ml_user_id: u64) -> ConnectionInput {
    let pairs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (system, name, base_url, credentials, settings) = match system {
        "jumpseller" => (
            "jumpseller",
            "Demo Jumpseller store",
            format!("{url}/v1"),
            pairs(&[("login", "demo-store"), ("authtoken", "demo-authtoken")]),
            BTreeMap::new(),
        ),
        "mercadolibre" => (
            "mercadolibre",
            "Demo MercadoLibre seller",
            url.to_string(),
            pairs(&[
                ("client_id", "demo-app"),
                ("client_secret", "demo-secret"),
                ("access_token", "APP_USR-demo"),
                ("refresh_token", "TG-demo"),
            ]),
            pairs(&[
                ("site_id", "MLC"),
                ("user_id", &ml_user_id.to_string()),
                ("category_id", "MLC3530"),
            ]),
        ),
        "shopify" => (
            "shopify",
            "Demo Shopify shop",
            url.to_string(),
            pairs(&[("access_token", "shpat_demo")]),
            BTreeMap::new(),
        ),
        _ => (
            "woocommerce",
            "Demo WooCommerce site",
            format!("{url}/wp-json/wc/v3"),
            pairs(&[("consumer_key", "ck_demo"), ("consumer_secret", "cs_demo")]),
            BTreeMap::new(),
        ),
    };
    ConnectionInput {
        system: system.to_string(),
        name: name.to_string(),
        base_url,
        credentials,
        rate_limit: None,
        max_in_flight: None,
        settings,
    }
}

/// `campaignd sim MARKETPLACE`: one simulator in a process of its own (its state outlives the
/// service's restarts), with the demo's credentials. Prints one JSON line: its `url`, and the
/// `connection` body that connects to it. `GET /_sim/state` shows its counters and products.
/// `limits` (per second, per minute) replaces the marketplace's own: Jumpseller's windows,
/// MercadoLibre's limit, WooCommerce's host limit, or Shopify's leak rate (bucket of 20 s' worth).
pub fn run_sim(
    system: &str,
    addr: SocketAddr,
    knobs: marketplaces::sim::Knobs,
    limits: Option<(u64, u64)>,
) -> anyhow::Result<()> {
    fn serve<S: marketplaces::sim::SimApi>(
        api: S,
        addr: SocketAddr,
        knobs: marketplaces::sim::Knobs,
        system: &str,
        user_id: u64,
    ) -> anyhow::Result<()> {
        let sim = SimHandle::start(api, addr)?;
        sim.set_knobs(|k| *k = knobs);
        let line =
            json!({"url": sim.url(), "connection": connection_body(system, &sim.url(), user_id)});
        println!("{line}");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::app::stop_requested());
        Ok(())
    }
    let mut ml = MercadoLibreSim::new("demo-app", "demo-secret", "APP_USR-demo", "TG-demo");
    let user_id = ml.user_id;
    match system {
        "jumpseller" => {
            let mut sim = JumpsellerSim::new("demo-store", "demo-authtoken");
            if let Some((per_second, per_minute)) = limits {
                sim.limits.per_second = per_second;
                sim.limits.per_minute = per_minute;
            }
            serve(sim, addr, knobs, system, user_id)
        }
        "mercadolibre" => {
            if limits.is_some() {
                ml.limit = marketplaces::sim::SlidingLimit::new(limits);
            }
            serve(ml, addr, knobs, system, user_id)
        }
        "shopify" => {
            let mut sim = ShopifySim::new("shpat_demo");
            if let Some((per_second, _)) = limits {
                let size = u32::try_from(per_second.saturating_mul(20)).unwrap_or(u32::MAX);
                sim.bucket = marketplaces::sim::shopify::Bucket::new(size, per_second as f64);
            }
            serve(sim, addr, knobs, system, user_id)
        }
        "woocommerce" => {
            let mut sim = WooSim::new("ck_demo", "cs_demo");
            sim.limit = marketplaces::sim::SlidingLimit::new(limits);
            serve(sim, addr, knobs, system, user_id)
        }
        other => bail!(
            "no simulator for {other:?}: use jumpseller, mercadolibre, shopify or woocommerce"
        ),
    }
}

/// Creates the connections, the demo's products and a campaign on every connection through the
/// API, as a user's client would; returns the campaign id.
pub async fn seed(api: &str, token: &str, connections: &[ConnectionInput]) -> anyhow::Result<u64> {
    let client = client::Client::new(api, token);
    let mut ids = Vec::new();
    for connection in connections {
        ids.push(client.create_connection(connection).await?.id);
    }
    client
        .upsert_products(&demo_products(DEMO_PRODUCTS))
        .await?;
    let campaign = client
        .create_campaign(&CampaignInput::new("Demo campaign", ids))
        .await?;
    let skus = (1..=DEMO_PRODUCTS)
        .map(|i| format!("DEMO-{i:04}"))
        .collect();
    client
        .add_campaign_products(campaign.id, &AddProductsInput::skus(skus))
        .await?;
    Ok(campaign.id)
}

pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    prepare_dir(&options.data)?;
    let stores = DemoMarketplaces::start(Duration::from_millis(40))?;

    let mut config = Config::for_data_dir(&options.data);
    // The demo's marketplaces are simulators on loopback, and its one user (or the live
    // benchmark's ten thousand clients, on one token and one address) may open many streams.
    config.egress = crate::config::EgressConfig::loopback_trials();
    config.server.connections_per_client = 20_000;
    config.server.subscribers_per_token = 20_000;
    config.server.addr = options.addr;
    let listener = std::net::TcpListener::bind(options.addr)
        .with_context(|| format!("could not listen on {}", options.addr))?;
    let app = App::start(AppOptions::new(config), listener)?;
    let token = match options.token {
        Some(t) => {
            app.add_token("demo", &t)?;
            t
        }
        None => app.create_token("demo")?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let campaign_id = runtime.block_on(seed(&app.url(), &token, &stores.connections()))?;
    println!(
        "campaignd demo is running (data in {})",
        options.data.display()
    );
    println!("  API:       {}", app.url());
    println!("  token:     {token}");
    println!("  campaign:  {campaign_id} (\"Demo campaign\", {DEMO_PRODUCTS} products on four marketplaces)");
    println!(
        "  simulated Jumpseller:    {}/v1 (800 requests/min, 20/s)",
        stores.jumpseller.url()
    );
    println!(
        "  simulated MercadoLibre:  {} (site MLC, 600 requests/min, 10/s; tokens refresh)",
        stores.mercadolibre.url()
    );
    println!(
        "  simulated Shopify:       {}/admin/api/{} (GraphQL: 2,000 points, 100 back a second; REST: bucket of 40, leaking 2/s)",
        stores.shopify.url(),
        marketplaces::shopify::current_api_version(chrono::Utc::now().date_naive())
    );
    println!(
        "  simulated WooCommerce:   {}/wp-json/wc/v3 (batches of 100)",
        stores.woocommerce.url()
    );
    println!();
    println!("Try:");
    println!("  curl -s -X POST -H 'Authorization: Bearer {token}' {}/api/campaigns/{campaign_id}/publish", app.url());
    println!("Press Ctrl-C to stop.");
    runtime.block_on(crate::app::stop_requested());
    println!("stopping");
    app.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The README keeps its two promises in the commands it names: "Run it" starts this demo,
    /// and "Test it" names the one test command, which `.ci/run` calls as its last step.
    #[test]
    fn the_readme_names_the_demo_and_the_test_command_that_ci_runs() {
        let read = |file: &str| {
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let readme = read("README.md");
        let section = |title: &str| {
            let start = readme
                .find(&format!("\n## {title}\n"))
                .unwrap_or_else(|| panic!("the README has no section {title:?}"));
            let rest = &readme[start + 1..];
            let end = rest[3..].find("\n## ").map_or(rest.len(), |at| at + 3);
            rest[..end].to_string()
        };
        let test_command = "cargo xtask test";
        assert!(section("Run it").contains("cargo run --release -- demo"));
        assert!(section("Test it").contains(&format!("\n{test_command}\n")));
        let ci = read(".ci/run");
        let last = ci.lines().rev().find(|l| !l.trim().is_empty());
        assert_eq!(
            last,
            Some(test_command),
            ".ci/run ends with the README's command"
        );
    }
}
