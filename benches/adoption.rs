//! What adopting costs: the requests a publish sends to ask each store what it already lists,
//! per 1,000 products, on stores that list none of them and on stores where another system
//! already listed half. N products (two variants and two images each) go to simulated
//! Jumpseller, MercadoLibre, Shopify (GraphQL) and WooCommerce accounts at once; the
//! simulators' limits are lifted, since this counts requests, not time. For each marketplace
//! it prints the reads the publish sent (the look-ups, and the reads of what they found), all
//! its requests, and how many products each store holds afterwards (N: none twice).
//!
//! Run: `cargo bench --bench adoption` (BENCH_PRODUCTS=1000; BENCH_ML_USER_PRODUCTS=1 makes
//! the MercadoLibre seller one on the User Products model, whose products are an item per
//! variant).

#[path = "support/mod.rs"]
mod support;

use ::marketplaces::sim::Logged;
use campaignd::demo::{demo_products, DemoMarketplaces};
use serde_json::json;
use support::{post, wait_completed};

const NAMES: [&str; 4] = ["jumpseller", "mercadolibre", "shopify", "woocommerce"];

struct Stores(DemoMarketplaces);

impl Stores {
    fn start() -> Stores {
        let stores = DemoMarketplaces::start(std::time::Duration::ZERO).expect("simulators");
        stores.jumpseller.with_api(|s| {
            s.limits.per_second = 1_000_000;
            s.limits.per_minute = 1_000_000;
        });
        stores
            .shopify
            .with_api(|s| s.cost = ::marketplaces::sim::shopify::CostBucket::new(1e9, 1e9));
        let user_products = std::env::var("BENCH_ML_USER_PRODUCTS").is_ok_and(|v| v == "1");
        stores.mercadolibre.with_api(|s| {
            s.limit = ::marketplaces::sim::SlidingLimit::new(None);
            s.user_products = user_products;
        });
        Stores(stores)
    }

    /// Each store's log and product count, in `NAMES` order.
    fn state(&self) -> [(Vec<Logged>, usize); 4] {
        let s = &self.0;
        [
            (
                s.jumpseller.stats().log,
                s.jumpseller.with_api(|a| a.products.len()),
            ),
            (
                s.mercadolibre.stats().log,
                s.mercadolibre
                    .with_api(|a| a.items.values().filter(|i| !i.deleted).count()),
            ),
            (
                s.shopify.stats().log,
                s.shopify.with_api(|a| a.products.len()),
            ),
            (
                s.woocommerce.stats().log,
                s.woocommerce.with_api(|a| a.products.len()),
            ),
        ]
    }
}

/// Publishes products `1..=n` through new connections to `stores`; answers each marketplace's
/// (reads, requests, products held) for that publish.
async fn publish(api: &str, token: &str, stores: &Stores, n: usize) -> Vec<(u64, u64, usize)> {
    let client = reqwest::Client::new();
    let typed = ::client::Client::new(api, token);
    let mut ids = Vec::new();
    for mut connection in stores.0.connections() {
        connection.rate_limit = Some(::api::input::RateLimitInput {
            per_second: 1000,
            per_minute: 60000,
        });
        connection.max_in_flight = Some(32);
        let created = typed.create_connection(&connection).await;
        ids.push(created.expect("the connection is created").id);
    }
    let campaign = post(
        &client,
        format!("{api}/api/campaigns"),
        token,
        json!({"name": format!("bench {n}"), "marketplace_ids": ids}),
    )
    .await["id"]
        .clone();
    let skus: Vec<String> = (1..=n).map(|i| format!("DEMO-{i:04}")).collect();
    post(
        &client,
        format!("{api}/api/campaigns/{campaign}/products"),
        token,
        json!({ "skus": skus }),
    )
    .await;
    let before: Vec<usize> = stores.state().iter().map(|(log, _)| log.len()).collect();
    let tracker = post(
        &client,
        format!("{api}/api/campaigns/{campaign}/publish"),
        token,
        json!({}),
    )
    .await["tracker_id"]
        .clone();
    let (done, _) = wait_completed(
        &client,
        api,
        token,
        &tracker,
        std::time::Duration::from_millis(100),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    stores
        .state()
        .into_iter()
        .zip(before)
        .map(|((log, held), from)| {
            let sent = &log[from..];
            (
                sent.iter().filter(|l| l.reads_store()).count() as u64,
                sent.len() as u64,
                held,
            )
        })
        .collect()
}

fn report(label: &str, n: usize, figures: &[(u64, u64, usize)]) {
    println!("{label}");
    let per_1000 = |x: u64| x as f64 * 1000.0 / n as f64;
    for (name, (reads, requests, held)) in NAMES.iter().zip(figures) {
        println!(
            "  {name:<12} reads={reads} ({:.0} per 1,000 products) requests={requests} \
             ({:.0} per 1,000) products_held={held}",
            per_1000(*reads),
            per_1000(*requests)
        );
    }
}

fn main() {
    let n = support::bench_products(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let service = support::InProcess::start();
        let (token, api) = (service.token.clone(), service.api.clone());
        ::client::Client::new(&api, &token)
            .upsert_products(&demo_products(n))
            .await
            .expect("the products are stored");

        let empty = Stores::start();
        let fresh = publish(&api, &token, &empty, n).await;
        report(
            &format!("{n} products to stores that list none of them"),
            n,
            &fresh,
        );

        let half = Stores::start();
        // Another system (connections campaignd's new ones do not share records with)
        // listed the first half.
        publish(&api, &token, &half, n / 2).await;
        let adopted = publish(&api, &token, &half, n).await;
        report(
            &format!("{n} products to stores that already list {} of them", n / 2),
            n,
            &adopted,
        );
        service.shutdown();
    });
}
