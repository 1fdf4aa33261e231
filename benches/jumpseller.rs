//! Jumpseller at the store's speed: publish N products (two variants and two images each, five
//! requests a product) to one simulated store with 150 ms latency and Jumpseller's real limits
//! (20 a second, 800 a minute), with the connection's default settings, and print:
//! efficiency (requests per second achieved over the 800-a-minute ceiling), 429s, the most
//! requests the store saw in any 1 s and any 60 s, wall time, and the service's CPU time per
//! marketplace request. Then the same N the seed's way (one call at a time, 500 ms between
//! calls, through the connection setting `request_gap_ms`) for comparison.
//!
//! Run: `cargo bench --bench jumpseller` (BENCH_PRODUCTS=400, BENCH_MODES=campaignd,seed).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use ::marketplaces::sim::jumpseller::JumpsellerSim;
use ::marketplaces::sim::SimHandle;
use serde_json::{json, Value};
use support::{campaign_of, post, wait_completed};

const LATENCY: Duration = Duration::from_millis(150);
const CEILING_PER_SECOND: f64 = 800.0 / 60.0;

/// CPU time (user + system) of the service's threads so far: the actix system and worker
/// arbiters, sled's threads and governor's timer; not the simulator's nor this client's.
fn service_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        let service = [
            "campaignd",
            "actix-rt",
            "sled",
            "log flusher",
            "futures-timer",
        ]
        .iter()
        .any(|p| comm.starts_with(p));
        if !service {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    // Linux reports these in USER_HZ, which is 100 on every mainstream architecture.
    Duration::from_millis(ticks * 10)
}

struct Figures {
    requests: u64,
    wall: Duration,
    arrivals_span: Duration,
    throttled: u64,
    max_in_1s: u64,
    max_in_60s: u64,
    cpu: Duration,
    duplicates: usize,
}

async fn publish(products: usize, seed_way: bool) -> Figures {
    let sim = SimHandle::start(
        JumpsellerSim::new("store", "token"),
        ([127, 0, 0, 1], 0).into(),
    )
    .expect("simulator");
    sim.set_knobs(|k| k.latency = LATENCY);
    let service = support::InProcess::start();
    let (token, api) = (service.token.clone(), service.api.clone());
    let client = reqwest::Client::new();

    let mut connection = json!({
        "system": "jumpseller", "name": "store", "base_url": format!("{}/v1", sim.url()),
        "credentials": {"login": "store", "authtoken": "token"},
    });
    if seed_way {
        // The seed: one call at a time, usleep(500000) between calls.
        connection["max_in_flight"] = json!(1);
        connection["settings"] = json!({"request_gap_ms": "500"});
    }
    let conn = post(
        &client,
        format!("{api}/api/marketplaces"),
        &token,
        connection,
    )
    .await["id"]
        .clone();
    let catalogue: Vec<Value> = (1..=products)
        .map(|i| {
            let sku = format!("J-{i}");
            json!({"sku": sku, "name": format!("Product {i}"), "description": "A product", "price": 9990, "stock": 5,
                   "variants": [
                       {"sku": format!("{sku}-S"), "price": 9990, "stock": 2, "options": {"Size": "S"}},
                       {"sku": format!("{sku}-M"), "price": 9990, "stock": 3, "options": {"Size": "M"}}],
                   "images": [{"url": format!("https://img.example/{sku}/1.jpg")}, {"url": format!("https://img.example/{sku}/2.jpg")}]})
        })
        .collect();
    let campaign = campaign_of(&client, &api, &token, &conn, "bench", catalogue).await;

    let cpu_before = service_cpu();
    let tracker = post(
        &client,
        format!("{api}/api/campaigns/{campaign}/publish"),
        &token,
        json!({}),
    )
    .await["tracker_id"]
        .clone();
    // As often as the seed's front end polls.
    let (_, wall) = wait_completed(&client, &api, &token, &tracker, Duration::from_secs(2)).await;
    let cpu = service_cpu().saturating_sub(cpu_before);
    let stats = sim.stats();
    let span = stats.arrival_span();
    service.shutdown();
    Figures {
        requests: stats.requests,
        wall,
        arrivals_span: span,
        throttled: stats.throttled,
        max_in_1s: stats.max_in_1s,
        max_in_60s: stats.max_in_60s,
        cpu,
        duplicates: stats.duplicate_skus().len(),
    }
}

fn report(mode: &str, f: &Figures) {
    let rate = f.requests as f64 / f.wall.as_secs_f64();
    let arrival_rate =
        (f.requests.saturating_sub(1)) as f64 / f.arrivals_span.as_secs_f64().max(1e-9);
    println!(
        "mode={mode} requests={} wall_s={:.1} requests_per_s={:.2} efficiency={:.3} (first to last arrival: {:.3}) \
         throttled_429={} max_in_1s={} max_in_60s={} service_cpu_ms_per_request={:.3} duplicate_skus={}",
        f.requests,
        f.wall.as_secs_f64(),
        rate,
        rate / CEILING_PER_SECOND,
        arrival_rate / CEILING_PER_SECOND,
        f.throttled,
        f.max_in_1s,
        f.max_in_60s,
        f.cpu.as_secs_f64() * 1000.0 / f.requests.max(1) as f64,
        f.duplicates,
    );
}

fn main() {
    let products = support::bench_products(400);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "campaignd,seed".to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "jumpseller benchmark: {products} products (2 variants, 2 images: 5 requests each), {} ms latency, store limits 20/s and 800/min",
        LATENCY.as_millis()
    );
    let mut walls = Vec::new();
    for mode in modes.split(',').map(str::trim) {
        let seed_way = match mode {
            "campaignd" => false,
            "seed" => true,
            other => {
                eprintln!("unknown mode {other}; use campaignd or seed");
                continue;
            }
        };
        let f = runtime.block_on(publish(products, seed_way));
        report(mode, &f);
        walls.push((mode.to_string(), f.wall));
    }
    if let [(_, fast), (_, slow)] = walls.as_slice() {
        println!(
            "speed-up over the seed's way: {:.1}x",
            slow.as_secs_f64() / fast.as_secs_f64()
        );
    }
}
