//! One campaign on four marketplaces at once: N products (two variants and two images each)
//! published to simulated Jumpseller, MercadoLibre, Shopify and WooCommerce accounts, each with
//! its real limits (Jumpseller 20/s and 800/min; MercadoLibre 10/s and 600/min, its connection's
//! default since it publishes none; Shopify's bucket of 40 leaking 2/s; WooCommerce behind a
//! host limit of 10/s and 600/min) and 100 ms of latency, through connections with default
//! settings. Each marketplace is first run alone, then all four together; the benchmark prints
//! each run's wall time, the together run against the slowest alone (goal: at most 1.05), and
//! each marketplace's request rate against its limit, its 429s and its duplicate SKUs. Before
//! each publish it asks for the dry run's plan and prints its requests and least time beside
//! what the run then took (the span of the requests at the marketplace, and the run's wall
//! time). After the run on all four, a drift check and a full republish of the same campaign
//! print their requests per marketplace and their wall time. `BENCH_ALONE=0` skips the runs
//! of each marketplace alone; `BENCH_SHOPIFY_API=rest` connects Shopify on its REST API (its
//! default here is GraphQL).
//!
//! Run: `cargo bench --bench marketplaces` (BENCH_PRODUCTS=120).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use ::marketplaces::sim::{SimStats, SlidingLimit};
use campaignd::demo::{demo_products, DemoMarketplaces};
use serde_json::{json, Value};
use support::{post, wait_completed};

const LATENCY: Duration = Duration::from_millis(100);
const NAMES: [&str; 4] = ["jumpseller", "mercadolibre", "shopify", "woocommerce"];

/// Each marketplace's sustained limit in requests per second.
fn limit_per_second(name: &str) -> f64 {
    match name {
        "jumpseller" => 800.0 / 60.0,
        "shopify" => 2.0,
        _ => 10.0,
    }
}

/// The requests of a drift check and of a full republish per marketplace, and their wall
/// times.
struct After {
    per: Vec<(&'static str, u64, u64)>,
    drift_wall: Duration,
    republish_wall: Duration,
}

struct Run {
    wall: Duration,
    /// After the publish (the run on all four only).
    after: Option<After>,
    /// The dry run's plan of the publish, asked just before it.
    plan: Value,
    /// Per marketplace run: (name, stats).
    stats: Vec<(&'static str, SimStats)>,
}

async fn publish(products: usize, which: &[&'static str]) -> Run {
    let stores = DemoMarketplaces::start(LATENCY).expect("simulators");
    stores
        .woocommerce
        .with_api(|s| s.limit = SlidingLimit::new(Some((10, 600))));
    let service = support::InProcess::start();
    let (token, api) = (service.token.clone(), service.api.clone());
    let client = reqwest::Client::new();

    let typed = ::client::Client::new(&api, &token);
    let connections: Vec<_> = stores
        .connections()
        .into_iter()
        .filter(|c| which.iter().any(|w| c.system == *w))
        .collect();
    let mut ids = Vec::new();
    let shopify_api = std::env::var("BENCH_SHOPIFY_API").ok();
    for mut connection in connections {
        if let (true, Some(api)) = (connection.system == "shopify", &shopify_api) {
            connection.settings.insert("api".to_string(), api.clone());
        }
        let created = typed.create_connection(&connection).await;
        ids.push(created.expect("the connection is created").id);
    }
    typed
        .upsert_products(&demo_products(products))
        .await
        .expect("the products are stored");
    let campaign = post(
        &client,
        format!("{api}/api/campaigns"),
        &token,
        json!({"name": "bench", "marketplace_ids": ids}),
    )
    .await["id"]
        .clone();
    let skus: Vec<String> = (1..=products).map(|i| format!("DEMO-{i:04}")).collect();
    post(
        &client,
        format!("{api}/api/campaigns/{campaign}/products"),
        &token,
        json!({ "skus": skus }),
    )
    .await;
    let plan = post(
        &client,
        format!("{api}/api/campaigns/{campaign}/publish"),
        &token,
        json!({"dry_run": true}),
    )
    .await;
    // Starts an action of the campaign and waits for its end; answers its wall time.
    let run = async |path: &str| {
        let tracker = post(
            &client,
            format!("{api}/api/campaigns/{campaign}/{path}"),
            &token,
            json!({}),
        )
        .await["tracker_id"]
            .clone();
        wait_completed(&client, &api, &token, &tracker, Duration::from_millis(200))
            .await
            .1
    };
    let wall = run("publish").await;
    // The publish's own requests, before the drift check and the republish add theirs.
    let stats = which
        .iter()
        .map(|name| {
            let s = match *name {
                "jumpseller" => stores.jumpseller.stats(),
                "mercadolibre" => stores.mercadolibre.stats(),
                "shopify" => stores.shopify.stats(),
                _ => stores.woocommerce.stats(),
            };
            (*name, s)
        })
        .collect();
    let counts = || {
        [
            stores.jumpseller.stats().requests,
            stores.mercadolibre.stats().requests,
            stores.shopify.stats().requests,
            stores.woocommerce.stats().requests,
        ]
    };
    let mut after = None;
    if which.len() == NAMES.len() {
        let run_of = async |path: &str| {
            let before = counts();
            let wall = run(path).await;
            let sent: Vec<u64> = counts().iter().zip(before).map(|(a, b)| a - b).collect();
            (sent, wall)
        };
        let (drift, drift_wall) = run_of("drift").await;
        let (republish, republish_wall) = run_of("republish").await;
        let per: Vec<(&'static str, u64, u64)> = NAMES
            .iter()
            .zip(drift.iter().zip(&republish))
            .map(|(name, (d, r))| (*name, *d, *r))
            .collect();
        after = Some(After {
            per,
            drift_wall,
            republish_wall,
        });
    }
    service.shutdown();

    Run {
        wall,
        after,
        plan,
        stats,
    }
}

fn report(label: &str, run: &Run) {
    if let Some(After {
        per,
        drift_wall,
        republish_wall,
    }) = &run.after
    {
        println!(
            "{label}, then: drift check wall_s={:.1}, full republish wall_s={:.1}",
            drift_wall.as_secs_f64(),
            republish_wall.as_secs_f64()
        );
        for (name, drift, republish) in per {
            println!("  {name:<12} drift_requests={drift} republish_requests={republish}");
        }
    }
    println!(
        "{label}: wall_s={:.1} planned_requests={} planned_least_s={:.1}",
        run.wall.as_secs_f64(),
        run.plan["requests"],
        run.plan["estimated_seconds"].as_f64().unwrap_or_default(),
    );
    for (name, s) in &run.stats {
        let planned = run.plan["marketplaces"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["system"] == *name))
            .cloned()
            .unwrap_or_default();
        println!(
            "  {name:<12} plan: requests={} least_s={:.1}; run: requests={} span_s={:.1} \
             span/least={:.3}",
            planned["requests"],
            planned["estimated_seconds"].as_f64().unwrap_or_default(),
            s.requests,
            s.arrival_span().as_secs_f64(),
            s.arrival_span().as_secs_f64()
                / planned["estimated_seconds"]
                    .as_f64()
                    .unwrap_or_default()
                    .max(1e-9),
        );
        let span = s.arrival_span().as_secs_f64();
        let rate = s.requests.saturating_sub(1) as f64 / span.max(1e-9);
        let limit = limit_per_second(name);
        println!(
            "  {name:<12} requests={:<5} rate_per_s={rate:.2} limit_per_s={limit:.2} rate/limit={:.3} \
             max_in_1s={} max_in_60s={} throttled_429={} batches={} duplicate_skus={}",
            s.requests,
            rate / limit,
            s.max_in_1s,
            s.max_in_60s,
            s.throttled,
            s.batches,
            s.duplicate_skus().len(),
        );
    }
}

fn main() {
    let products = support::bench_products(120);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "four marketplaces: {products} products (2 variants, 2 images), {} ms latency, real limits",
        LATENCY.as_millis()
    );
    let mut slowest = Duration::ZERO;
    let mut slowest_name = "";
    let alone = std::env::var("BENCH_ALONE").map_or(true, |v| v != "0");
    for name in NAMES.iter().filter(|_| alone) {
        let name = *name;
        let run = runtime.block_on(publish(products, &[name]));
        report(&format!("{name} alone"), &run);
        if run.wall > slowest {
            slowest = run.wall;
            slowest_name = name;
        }
    }
    let together = runtime.block_on(publish(products, &NAMES));
    report("all four at once", &together);
    if alone {
        println!(
            "all four at once / slowest alone ({slowest_name}): {:.3} (goal: at most 1.05)",
            together.wall.as_secs_f64() / slowest.as_secs_f64()
        );
    }
}
