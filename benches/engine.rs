//! Engine throughput: campaigns driven through the real API, actors and sled store against an
//! in-process no-op marketplace (no HTTP, no rate limit), so that what is measured is the
//! engine itself. For 10,000 and 100,000 products on two connections (one with Jumpseller's
//! three publish phases, one with a single phase) it prints product-phase operations per
//! second and the process's resident memory as the run progresses.
//!
//! Run: `cargo bench --bench engine` (BENCH_SIZES=1000,5000 to choose sizes).

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::domain::clock::SystemClock;
use ::marketplaces::noop::NoopAdapters;
use campaignd::app::{App, AppOptions};
use campaignd::config::Config;
use serde_json::{json, Value};
use support::post;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

struct Figures {
    products: usize,
    ops: u64,
    seconds: f64,
    /// Of `seconds`, the time the publish request took to select and mark the products.
    start_seconds: f64,
    rss_before: u64,
    rss_peak: u64,
    rss_at: Vec<(f64, u64)>,
}

async fn run(products: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_data_dir(dir.path());
    config.egress = campaignd::config::EgressConfig::loopback_trials();
    config.store.cache_mb = 64;
    config.runs.max_chunk_size = 1000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let options = AppOptions {
        config,
        adapters: Arc::new(NoopAdapters),
        clock: Arc::new(SystemClock),
    };
    let app = App::start(options, listener).expect("starts");
    let token = app.create_token("bench").expect("token");
    let api = app.url();
    let client = reqwest::Client::new();

    let mut connections = Vec::new();
    for (system, credentials) in [
        ("jumpseller", json!({"login": "l", "authtoken": "t"})),
        (
            "woocommerce",
            json!({"consumer_key": "ck_x", "consumer_secret": "cs_x"}),
        ),
    ] {
        let c = post(
            &client,
            format!("{api}/api/marketplaces"),
            &token,
            json!({"system": system, "name": system, "base_url": "http://127.0.0.1:9",
                   "credentials": credentials, "max_in_flight": 64}),
        )
        .await;
        connections.push(c["id"].as_u64().expect("id"));
    }
    let mut ids = Vec::with_capacity(products);
    for start in (0..products).step_by(5000) {
        let batch: Vec<Value> = (start..(start + 5000).min(products))
            .map(|i| {
                json!({"sku": format!("B-{i}"), "name": format!("Bench {i}"), "price": 1000, "stock": 1,
                       "variants": [{"sku": format!("B-{i}-V"), "price": 1000, "stock": 1, "options": {"Size": "M"}}],
                       "images": [{"url": format!("https://img.example/{i}.jpg")}]})
            })
            .collect();
        let v = post(
            &client,
            format!("{api}/api/products"),
            &token,
            Value::Array(batch),
        )
        .await;
        ids.extend(
            v["products"]
                .as_array()
                .expect("products")
                .iter()
                .map(|p| p["id"].as_u64().expect("id")),
        );
    }
    let campaign = post(
        &client,
        format!("{api}/api/campaigns"),
        &token,
        json!({"name": "bench", "marketplace_ids": connections}),
    )
    .await["id"]
        .as_u64()
        .expect("id");
    for chunk in ids.chunks(20_000) {
        post(
            &client,
            format!("{api}/api/campaigns/{campaign}/products"),
            &token,
            json!({"product_ids": chunk}),
        )
        .await;
    }

    let rss_before = rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let tracker = post(
        &client,
        format!("{api}/api/campaigns/{campaign}/publish"),
        &token,
        json!({"chunk_size": 500}),
    )
    .await["tracker_id"]
        .as_u64()
        .expect("tracker");
    let start_seconds = started.elapsed().as_secs_f64();
    let mut rss_at = Vec::new();
    let mut next_mark = 25.0;
    let t = loop {
        let t: Value = client
            .get(format!("{api}/api/tracker/{tracker}/progress"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        let progress = t["data"]["progress"].as_f64().unwrap_or(0.0);
        while progress >= next_mark && next_mark <= 100.0 {
            rss_at.push((next_mark, rss_kib()));
            next_mark += 25.0;
        }
        if t["data"]["status"] != "active" {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    assert_eq!(t["data"]["status"], "completed", "{t}");
    let ops: u64 = t["data"]["phases_status"]
        .as_object()
        .expect("phases")
        .values()
        .map(|p| p["successful"].as_u64().unwrap_or(0))
        .sum();
    app.shutdown();
    Figures {
        products,
        ops,
        seconds,
        start_seconds,
        rss_before,
        rss_peak: peak.load(Ordering::Relaxed),
        rss_at,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a `cargo test --benches` run passes nothing we need.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "engine benchmark: publish on 2 no-op connections (3 phases + 1 phase), chunk_size 500"
    );
    for n in sizes {
        let f = runtime.block_on(run(n));
        let marks: Vec<String> = f
            .rss_at
            .iter()
            .map(|(p, kib)| format!("{p:.0}%: {:.1} MiB", *kib as f64 / 1024.0))
            .collect();
        println!(
            "products={} product_phase_ops={} seconds={:.2} (start {:.2}) ops_per_second={:.0} rss_before_run={:.1} MiB rss_peak={:.1} MiB rss_during_run=[{}]",
            f.products,
            f.ops,
            f.seconds,
            f.start_seconds,
            f.ops as f64 / f.seconds,
            f.rss_before as f64 / 1024.0,
            f.rss_peak as f64 / 1024.0,
            marks.join(", ")
        );
    }
}
