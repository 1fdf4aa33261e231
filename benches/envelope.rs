//! The envelope of an account's limits, with `campaignd serve` as its own process (a fresh sled
//! store) publishing to a simulated Jumpseller store in this process (150 ms latency, the
//! store's windows enforced and reported in its quota headers). For each case it prints:
//!
//! - the requests the store received, its 429s, and the most it saw in any 1 s and any 60 s
//!   (which must stay within the windows);
//! - envelope efficiency: the shortest span the windows allow for that many requests (each
//!   one as early as both windows let it, with no margin) divided by the span from the first
//!   arrival to the last at the store;
//! - the service's CPU time per marketplace request (user + system of its process, from
//!   `/proc`, over the publish), and its peak resident memory.
//!
//! The cases are the issue's: 600 requests at 20 a second and 600 a minute, and 2,000 at 20 a
//! second and 800 a minute (products of one variant and one image: three requests each).
//!
//! Then Shopify at a Standard plan's limits, 400 products on REST and then on GraphQL, with the
//! products per second of each; and turns on one store (20/s + 800/min): while campaign A
//! publishes 1,500 requests, how long a 20-product campaign C's publish and campaign B's pause
//! take beside it.
//!
//! Run: `cargo bench --bench envelope` (BENCH_CASES=600:20:600,2000:20:800 to choose,
//! BENCH_SHOPIFY=0 or BENCH_TURNS=0 to leave those out, BENCH_SHOPIFY=N for N products).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use ::marketplaces::limiter::shortest_span;
use ::marketplaces::sim::jumpseller::{JumpsellerSim, Limits};
use ::marketplaces::sim::SimHandle;
use serde_json::{json, Value};
use support::service::{catalogue, cpu_of, peak_rss_mib, Service};
use support::wait_completed;
const LATENCY: Duration = Duration::from_millis(150);
const REQUESTS_PER_PRODUCT: usize = 3;

struct Case {
    requests: usize,
    per_second: u64,
    per_minute: u64,
}

/// The envelope's own requests of the service.
trait EnvelopeService {
    async fn connection(&self, sim: &SimHandle<JumpsellerSim>, case: &Case) -> Value;
    async fn campaign(&self, conn: &Value, prefix: &str, products: usize) -> Value;
}

impl EnvelopeService for Service {
    /// A Jumpseller connection to `sim` with these limits.
    async fn connection(&self, sim: &SimHandle<JumpsellerSim>, case: &Case) -> Value {
        self.post(
            "/api/marketplaces",
            json!({"system": "jumpseller", "name": "store", "base_url": format!("{}/v1", sim.url()),
                   "credentials": {"login": "store", "authtoken": "token"},
                   "rate_limit": {"per_second": case.per_second, "per_minute": case.per_minute}}),
        )
        .await["id"]
            .clone()
    }

    /// A campaign on `conn` of `products` products (SKUs `{prefix}-{i}`, one variant and one
    /// image each: three requests to publish).
    async fn campaign(&self, conn: &Value, prefix: &str, products: usize) -> Value {
        let catalogue: Vec<Value> = (1..=products)
            .map(|i| {
                let sku = format!("{prefix}-{i}");
                json!({"sku": sku, "name": format!("Product {i}"), "price": 9990, "stock": 5,
                       "variants": [{"sku": format!("{sku}-S"), "price": 9990, "stock": 2, "options": {"Size": "S"}}],
                       "images": [{"url": format!("https://img.example/{sku}/1.jpg")}]})
            })
            .collect();
        self.campaign_of(conn, prefix, catalogue).await
    }
}

/// The store of a case: its windows enforced, 150 ms latency.
fn store(case: &Case) -> SimHandle<JumpsellerSim> {
    let mut store = JumpsellerSim::new("store", "token");
    store.limits = Limits {
        per_second: case.per_second,
        per_minute: case.per_minute,
        ..Limits::default()
    };
    // BENCH_QUOTA_HEADERS=0: a store whose answers carry no quota headers (behind a proxy).
    store.quota_headers = std::env::var("BENCH_QUOTA_HEADERS").map_or(true, |v| v != "0");
    let sim = SimHandle::start(store, ([127, 0, 0, 1], 0).into()).expect("simulator");
    sim.set_knobs(|k| k.latency = LATENCY);
    sim
}

async fn run(case: &Case) {
    let sim = store(case);
    let service = Service::start();
    let pid = service.pid();
    let conn = service.connection(&sim, case).await;
    let campaign = service
        .campaign(&conn, "E", case.requests / REQUESTS_PER_PRODUCT)
        .await;
    let (client, api, token) = (&service.client, &service.api, &service.token);
    let cpu_before = cpu_of(pid);
    let tracker = service.action(&campaign, "publish").await;
    let (_, wall) = wait_completed(client, api, token, &tracker, Duration::from_secs(1)).await;
    let cpu = cpu_of(pid).saturating_sub(cpu_before);
    let rss = peak_rss_mib(pid);
    let metrics = client
        .get(format!("{api}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let margin_ms = metrics
        .lines()
        .find(|l| l.starts_with("campaignd_limiter_margin_seconds"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |s| s * 1000.0);
    drop(service);

    let stats = sim.stats();
    let span = stats.arrival_span();
    if std::env::var("BENCH_TRACE").is_ok() {
        let first = stats.log.first().map(|l| l.at);
        let line: Vec<String> = stats
            .log
            .iter()
            .map(|l| format!("{}", (l.at - first.unwrap_or(l.at)).as_millis()))
            .collect();
        println!("arrivals_ms {}", line.join(" "));
    }
    let shortest = shortest_span(
        stats.requests as usize,
        case.per_second as usize,
        case.per_minute as usize,
    );
    println!(
        "case requests={} limits={}/s+{}/min: received={} throttled_429={} max_in_1s={} max_in_60s={} \
         span_s={:.3} shortest_span_s={:.3} envelope_efficiency={:.3} wall_s={:.1} \
         margin_ms={:.1} service_cpu_ms_per_request={:.3} service_peak_rss_mib={:.1} duplicate_skus={}",
        case.requests,
        case.per_second,
        case.per_minute,
        stats.requests,
        stats.throttled,
        stats.max_in_1s,
        stats.max_in_60s,
        span.as_secs_f64(),
        shortest.as_secs_f64(),
        shortest.as_secs_f64() / span.as_secs_f64().max(1e-9),
        wall.as_secs_f64(),
        margin_ms,
        cpu.as_secs_f64() * 1000.0 / stats.requests.max(1) as f64,
        rss,
        stats.duplicate_skus().len(),
    );
}

/// Turns on one store: campaign A's long publish runs; 5 s into it a 20-product campaign C is
/// published, then campaign B (20 products, published before A) is paused. Prints how long C
/// and B took, and how far A was.
async fn turns(case: &Case) {
    let sim = store(case);
    let service = Service::start();
    let conn = service.connection(&sim, case).await;
    let every = Duration::from_millis(20);
    let (client, api, token) = (&service.client, &service.api, &service.token);
    let b = service.campaign(&conn, "B", 20).await;
    let tb = service.action(&b, "publish").await;
    let (_, b_alone) = wait_completed(client, api, token, &tb, every).await;
    let a = service
        .campaign(&conn, "A", case.requests / REQUESTS_PER_PRODUCT)
        .await;
    let c = service.campaign(&conn, "C", 20).await;
    let ta = service.action(&a, "publish").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tc = service.action(&c, "publish").await;
    let (_, c_wall) = wait_completed(client, api, token, &tc, every).await;
    let tp = service.action(&b, "pause").await;
    let (_, pause_wall) = wait_completed(client, api, token, &tp, every).await;
    let a_then = service.tracker(&ta).await;
    println!(
        "turns limits={}/s+{}/min: campaign A publishing {} requests; campaign C's publish of 20 products \
         (60 requests) beside it took {:.2} s (B's alone, before A: {:.2} s); then B's pause of 20 products \
         took {:.2} s; A was then {} at {:.1} %; throttled_429={} max_in_1s={}",
        case.per_second,
        case.per_minute,
        case.requests,
        c_wall.as_secs_f64(),
        b_alone.as_secs_f64(),
        pause_wall.as_secs_f64(),
        a_then["status"].as_str().unwrap_or("?"),
        a_then["progress"].as_f64().unwrap_or(0.0),
        sim.stats().throttled,
        sim.stats().max_in_1s,
    );
}

/// Shopify at a Standard plan's limits, on REST (a bucket of 40 requests leaking 2 a second)
/// and on GraphQL (2,000 points restored at 100 a second), with each API's default connection
/// settings: `products` products of two variants and two images, 100 ms latency. Prints each
/// API's products per second, calls, 429s or THROTTLED answers, and the ratio.
async fn shopify(products: usize) {
    use ::marketplaces::sim::shopify::ShopifySim;
    let mut rates = Vec::new();
    // BENCH_SHOPIFY_APIS=graphql runs one of the two.
    let apis = std::env::var("BENCH_SHOPIFY_APIS").unwrap_or_else(|_| "rest,graphql".to_string());
    for api in apis.split(',').map(str::trim) {
        let sim = SimHandle::start(ShopifySim::new("shpat_bench"), ([127, 0, 0, 1], 0).into())
            .expect("simulator");
        sim.set_knobs(|k| k.latency = Duration::from_millis(100));
        let service = Service::start();
        let conn = service
            .post(
                "/api/marketplaces",
                json!({"system": "shopify", "name": "shop", "base_url": sim.url(),
                       "credentials": {"access_token": "shpat_bench"}, "settings": {"api": api}}),
            )
            .await["id"]
            .clone();
        let campaign = service
            .campaign_of(&conn, "shopify", catalogue("S", 1..products + 1))
            .await;
        let tracker = service.action(&campaign, "publish").await;
        let (_, wall) = wait_completed(
            &service.client,
            &service.api,
            &service.token,
            &tracker,
            Duration::from_millis(50),
        )
        .await;
        let stats = sim.stats();
        let rate = products as f64 / wall.as_secs_f64();
        println!(
            "shopify api={api} products={products} calls={} wall_s={:.1} products_per_s={rate:.2} throttled={} duplicate_skus={}",
            stats.requests,
            wall.as_secs_f64(),
            stats.throttled,
            stats.duplicate_skus().len(),
        );
        rates.push(rate);
    }
    if let [rest, graphql] = rates.as_slice() {
        println!(
            "shopify graphql over rest: {:.1}x the products per second",
            graphql / rest
        );
    }
}

fn main() {
    let cases: Vec<Case> = std::env::var("BENCH_CASES")
        .unwrap_or_else(|_| "600:20:600,2000:20:800".to_string())
        .split(',')
        .filter_map(|c| {
            let parts: Vec<u64> = c.split(':').filter_map(|p| p.trim().parse().ok()).collect();
            match parts.as_slice() {
                [n, s, m] => Some(Case {
                    requests: *n as usize,
                    per_second: *s,
                    per_minute: *m,
                }),
                _ => {
                    eprintln!("skipping case {c:?}: use requests:per_second:per_minute");
                    None
                }
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "envelope benchmark: campaignd serve as its own process, a Jumpseller simulator with {} ms latency, {REQUESTS_PER_PRODUCT} requests a product",
        LATENCY.as_millis()
    );
    for case in &cases {
        runtime.block_on(run(case));
    }
    // BENCH_SHOPIFY=0 leaves Shopify out; BENCH_SHOPIFY=N publishes N products (400).
    let shopify_products = std::env::var("BENCH_SHOPIFY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(400);
    if shopify_products > 0 {
        runtime.block_on(shopify(shopify_products));
    }
    // BENCH_TURNS=0 leaves the turns out.
    if std::env::var("BENCH_TURNS").map_or(true, |v| v != "0") {
        runtime.block_on(turns(&Case {
            requests: 1500,
            per_second: 20,
            per_minute: 800,
        }));
    }
}
