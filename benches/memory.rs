//! The service's memory as the catalogue grows, with `campaignd serve` as its own process on a
//! fresh sled store (so the figures are the service's alone): import N products of two variants
//! and two images in requests of 5,000, add them to a campaign in requests of 5,000, and
//! publish them on a fast simulated WooCommerce site (no latency, limits far above the load,
//! the connection's default settings).
//! Prints the service's resident memory before, at 25, 50 and 75 % of the import and after it,
//! after adding, at 25, 50, 75 and 100 % of the publish, and its peak (VmHWM).
//!
//! Run: `cargo bench --bench memory` (BENCH_PRODUCTS=1000000 by default; 100000 is quicker).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ::marketplaces::sim::woocommerce::WooSim;
use ::marketplaces::sim::SimHandle;
use serde_json::{json, Value};
use support::service::{catalogue, peak_rss_mib, rss_mib, Service};

const BATCH: usize = 5000;

async fn run(products: usize) {
    let sim = SimHandle::start(
        WooSim::new("ck_bench", "cs_bench"),
        ([127, 0, 0, 1], 0).into(),
    )
    .expect("simulator");
    let service = Service::start();
    let pid = service.pid();
    println!(
        "memory benchmark: {products} products; service RSS at start {:.1} MiB",
        rss_mib(pid)
    );
    let conn = service
        .post(
            "/api/marketplaces",
            json!({"system": "woocommerce", "name": "site",
                   "base_url": format!("{}/wp-json/wc/v3", sim.url()),
                   "credentials": {"consumer_key": "ck_bench", "consumer_secret": "cs_bench"},
                   // The connection's defaults otherwise: 256 requests in flight for a limit of
                   // 5,000 a second, within the 1,024 products a worker holds at most.
                   "rate_limit": {"per_second": 5000, "per_minute": 300000}}),
        )
        .await["id"]
        .clone();
    let started = Instant::now();
    let mut ids: Vec<Value> = Vec::with_capacity(products);
    let mut marks = vec![25, 50, 75].into_iter().peekable();
    for start in (1..=products).step_by(BATCH) {
        while marks
            .peek()
            .is_some_and(|m| (start - 1) * 100 >= m * products)
        {
            let m = marks.next().unwrap_or_default();
            println!(
                "import at {m} %: RSS {:.1} MiB, peak {:.1} MiB",
                rss_mib(pid),
                peak_rss_mib(pid)
            );
        }
        let batch = catalogue("M", start..(start + BATCH).min(products + 1));
        let created = service.post("/api/products", Value::Array(batch)).await;
        ids.extend(
            created["products"]
                .as_array()
                .expect("products")
                .iter()
                .map(|p| p["id"].clone()),
        );
    }
    println!(
        "imported in {:.1} s: RSS {:.1} MiB, peak {:.1} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib(pid),
        peak_rss_mib(pid)
    );
    let campaign = service
        .post(
            "/api/campaigns",
            json!({"name": "memory", "marketplace_ids": [conn]}),
        )
        .await["id"]
        .clone();
    let started = Instant::now();
    for chunk in ids.chunks(BATCH) {
        service
            .post(
                &format!("/api/campaigns/{campaign}/products"),
                json!({"product_ids": chunk}),
            )
            .await;
    }
    drop(ids);
    println!(
        "added to the campaign in {:.1} s: RSS {:.1} MiB, peak {:.1} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib(pid),
        peak_rss_mib(pid)
    );
    let tracker = service.action(&campaign, "publish").await;
    let started = Instant::now();
    let mut marks = vec![25.0, 50.0, 75.0, 100.0].into_iter().peekable();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = service.tracker(&tracker).await;
        let progress = t["progress"].as_f64().unwrap_or(0.0);
        while marks.peek().is_some_and(|m| progress >= *m) {
            let m = marks.next().unwrap_or_default();
            println!(
                "publish at {m:.0} % ({:.1} s): RSS {:.1} MiB, peak {:.1} MiB",
                started.elapsed().as_secs_f64(),
                rss_mib(pid),
                peak_rss_mib(pid)
            );
        }
        if t["status"] != "active" {
            println!(
                "publish {} in {:.1} s ({} requests at the site): RSS {:.1} MiB, peak {:.1} MiB",
                t["status"],
                started.elapsed().as_secs_f64(),
                sim.stats().requests,
                rss_mib(pid),
                peak_rss_mib(pid)
            );
            break;
        }
    }
}

fn main() {
    let products: usize = std::env::var("BENCH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(products));
}
