//! Test harness: `spawn_app()` starts the real service on port 0 with a fresh store (a temporary
//! sled directory, or a fresh database on the tests' own PostgreSQL server, as the test binary's
//! `BACKEND` says) and the marketplace simulators on loopback, creates a tenant token and one
//! connection per simulator, and returns a `TestApp` whose helpers speak HTTP to it.

use std::time::{Duration, Instant};

use std::sync::Arc;

use ::domain::clock::FakeClock;
use ::marketplaces::sim::jumpseller::{JumpsellerSim, Limits};
use ::marketplaces::sim::mercadolibre::MercadoLibreSim;
use ::marketplaces::sim::shopify::{Bucket, ShopifySim};
use ::marketplaces::sim::woocommerce::WooSim;
use ::marketplaces::sim::{SimHandle, SlidingLimit};
use campaignd::app::{App, AppOptions};
use campaignd::config::{Config, StoreBackend};
use reqwest::Method;
use serde_json::{json, Value};

/// Which store a test binary runs its tests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

/// What a `campaignd` process needs to reach simulators on loopback.
pub const LOOPBACK_EGRESS: [&str; 3] = [
    "CAMPAIGND_EGRESS__WEBHOOKS_ALLOW_PRIVATE",
    "CAMPAIGND_EGRESS__MARKETPLACES_ALLOW_PRIVATE",
    "CAMPAIGND_EGRESS__MARKETPLACES_ALLOW_CUSTOM_HOSTS",
];

/// The secrets key every node of a test's PostgreSQL cluster is given (on sled, each store makes
/// its own key file).
pub const CLUSTER_KEY: &str = "Y2FtcGFpZ25kLXRlc3RzLWNsdXN0ZXIta2V5LTMyYiE=";

/// A fresh store for one test: a temporary directory (sled's data, and anything else a test
/// keeps there) and, on PostgreSQL, a new database.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub url: Option<String>,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("a temp dir"),
            url: match crate::BACKEND {
                Backend::Sled => None,
                Backend::Postgres => Some(crate::pg_server::shared().fresh_database()),
            },
        }
    }

    /// A store in a database of the caller's (a server a test stops and starts).
    pub fn on(url: String) -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("a temp dir"),
            url: Some(url),
        }
    }

    /// Points a configuration at this store.
    pub fn apply(&self, c: &mut Config) {
        c.store.data_dir = self.dir.path().join("data");
        if let Some(url) = &self.url {
            c.store.backend = StoreBackend::Postgres;
            c.store.url = Some(url.clone());
            // The nodes of a cluster share one key.
            c.secrets.key = CLUSTER_KEY.to_string();
        }
    }

    /// The same, as the environment of a `campaignd` process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(
            "CAMPAIGND_STORE__DATA_DIR",
            self.dir.path().join("data").display().to_string(),
        )];
        env.extend(LOOPBACK_EGRESS.map(|k| (k, "true".to_string())));
        if let Some(url) = &self.url {
            env.push(("CAMPAIGND_STORE__BACKEND", "postgres".to_string()));
            env.push(("CAMPAIGND_STORE__URL", url.clone()));
            env.push(("CAMPAIGND_SECRETS__KEY", CLUSTER_KEY.to_string()));
        }
        env
    }
}

pub struct TestApp {
    app: Option<App>,
    config: Config,
    pub url: String,
    /// The store; held so it lives as long as the test.
    _store: TestStore,
    pub token: String,
    pub client: reqwest::Client,
    pub jumpseller: SimHandle<JumpsellerSim>,
    pub woo: SimHandle<WooSim>,
    /// MercadoLibre and Shopify: connected on demand (`connect_mercadolibre`, `connect_shopify`).
    pub ml: SimHandle<MercadoLibreSim>,
    pub shopify: SimHandle<ShopifySim>,
    /// Connection ids of the two simulated stores.
    pub js: u64,
    pub wc: u64,
    /// The clock the service reads, when a test moves time by hand.
    pub clock: Option<Arc<FakeClock>>,
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    // The simulators are on loopback.
    c.egress = campaignd::config::EgressConfig::loopback_trials();
    c.runs.progress_flush_ms = 20;
    c.store.cache_mb = 16;
    c.http.timeout_secs = 5;
    // The simulators carry a request out at once or never, unless a test makes them land late
    // (and then sets its own window).
    c.runs.settle_ms = 200;
    c.server.body_limit_bytes = 1 << 20;
    c
}

fn start(config: Config, clock: Option<Arc<FakeClock>>) -> App {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds port 0");
    let mut options = AppOptions::new(config);
    if let Some(clock) = clock {
        options.clock = clock;
    }
    App::start(options, listener).expect("the app starts")
}

/// Limits high enough that ordinary tests are not slowed down by pacing.
pub const FAST: (u32, u32) = (1000, 60_000);

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with the service's configuration adjusted first.
pub async fn spawn_app_with(adjust: impl Fn(&mut Config)) -> TestApp {
    spawn_app_on(TestStore::new(), adjust).await
}

/// Like `spawn_app_with`, on a given store.
pub async fn spawn_app_on(store: TestStore, adjust: impl Fn(&mut Config)) -> TestApp {
    spawn_app_timed(store, None, adjust).await
}

/// Like `spawn_app_on`, with the service reading `clock` (restarts keep it).
pub async fn spawn_app_timed(
    store: TestStore,
    clock: Option<Arc<FakeClock>>,
    adjust: impl Fn(&mut Config),
) -> TestApp {
    let loopback = "127.0.0.1:0".parse().expect("an address");
    let jumpseller = SimHandle::start(JumpsellerSim::new("store", "js-token"), loopback)
        .expect("jumpseller sim starts");
    jumpseller.with_api(|s| {
        s.limits = Limits {
            per_second: FAST.0 as u64,
            per_minute: FAST.1 as u64,
            ..Limits::default()
        }
    });
    let woo =
        SimHandle::start(WooSim::new("ck_test", "cs_test"), loopback).expect("woo sim starts");
    let ml = SimHandle::start(
        MercadoLibreSim::new("app-1", "app-secret", "APP_USR-first", "TG-first"),
        loopback,
    )
    .expect("mercadolibre sim starts");
    ml.with_api(|s| s.limit = SlidingLimit::new(Some((FAST.0 as u64, FAST.1 as u64))));
    let shopify =
        SimHandle::start(ShopifySim::new("shpat_test"), loopback).expect("shopify sim starts");
    shopify.with_api(|s| s.bucket = Bucket::new(FAST.0, FAST.0 as f64));
    let mut c = config(store.dir.path());
    store.apply(&mut c);
    adjust(&mut c);
    let app = start(c.clone(), clock.clone());
    let token = app.create_token("acme").expect("a token");
    let mut t = TestApp {
        url: app.url(),
        app: Some(app),
        config: c,
        _store: store,
        token,
        client: reqwest::Client::new(),
        jumpseller,
        woo,
        ml,
        shopify,
        js: 0,
        wc: 0,
        clock,
    };
    t.js = t.connect_jumpseller("Main store", "js-token").await;
    t.wc = t.connect_woocommerce("Woo site").await;
    t
}

impl TestApp {
    /// Adds a connection to the simulated WooCommerce site.
    pub async fn connect_woocommerce(&self, name: &str) -> u64 {
        self.created(
            "/api/marketplaces",
            json!({
                "system": "woocommerce", "name": name,
                "base_url": format!("{}/wp-json/wc/v3", self.woo.url()),
                "credentials": {"consumer_key": "ck_test", "consumer_secret": "cs_test"},
                "rate_limit": {"per_second": FAST.0, "per_minute": FAST.1},
            }),
        )
        .await
    }

    /// A token of another tenant.
    pub fn created_token(&self, tenant: &str) -> String {
        self.app
            .as_ref()
            .expect("running")
            .create_token(tenant)
            .expect("a token")
    }

    /// Waits until a running tracker logged that it is being stopped (it stops between calls,
    /// so a held store must then be released for it to end).
    pub async fn wait_stopping(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.tracker(id).await;
            let stopping = t["metadata"]["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e.as_str().is_some_and(|s| s.starts_with("stopping")))
            });
            if stopping {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tracker {id} was never asked to stop: {t}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Adds a connection to the simulated MercadoLibre seller (site MLC, in CLP).
    pub async fn connect_mercadolibre(&self, extra: Value) -> u64 {
        let user_id = self.ml.with_api(|s| s.user_id).to_string();
        let mut body = json!({
            "system": "mercadolibre", "name": "ML seller",
            "base_url": self.ml.url(),
            "credentials": {"client_id": "app-1", "client_secret": "app-secret",
                            "access_token": "APP_USR-first", "refresh_token": "TG-first"},
            "settings": {"site_id": "MLC", "user_id": user_id, "category_id": "MLC3530"},
            "rate_limit": {"per_second": FAST.0, "per_minute": FAST.1},
        });
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        self.created("/api/marketplaces", body).await
    }

    /// Adds a connection to the simulated Shopify shop.
    pub async fn connect_shopify(&self, extra: Value) -> u64 {
        let mut body = json!({
            "system": "shopify", "name": "Shopify shop",
            "base_url": self.shopify.url(),
            "credentials": {"access_token": "shpat_test"},
            "rate_limit": {"per_second": FAST.0, "per_minute": FAST.1},
        });
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        self.created("/api/marketplaces", body).await
    }

    /// Adds a Jumpseller connection to the simulated store with the given auth token.
    pub async fn connect_jumpseller(&self, name: &str, authtoken: &str) -> u64 {
        let fast = json!({"rate_limit": {"per_second": FAST.0, "per_minute": FAST.1}});
        self.jumpseller_connection(name, authtoken, fast).await
    }

    /// Adds a Jumpseller connection to the simulated store, with `extra` fields of the body
    /// (`rate_limit`, `max_in_flight`, ...); the store's own limits apply when none is given.
    pub async fn jumpseller_connection(&self, name: &str, authtoken: &str, extra: Value) -> u64 {
        let mut body = json!({
            "system": "jumpseller", "name": name,
            "base_url": format!("{}/v1", self.jumpseller.url()),
            "credentials": {"login": "store", "authtoken": authtoken},
        });
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        self.created("/api/marketplaces", body).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("the service answers");
        let status = res.status().as_u16();
        let text = res.text().await.expect("a body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer to {path} is not JSON ({e}): {text}"));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None, Some(&self.token)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body), Some(&self.token))
            .await
    }

    /// The API's typed client, with this app's token: what the helpers below that set up and
    /// run campaigns speak through, so that every answer they read is read as its type.
    pub fn api(&self) -> ::client::Client {
        ::client::Client::new(&self.url, &self.token)
    }

    /// POSTs and expects 200 or 201; returns the `id` of what was created.
    pub async fn created(&self, path: &str, body: Value) -> u64 {
        let (status, v) = self.post(path, body).await;
        assert!(status == 201 || status == 200, "{path}: {status} {v}");
        v["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path} gave no id: {v}"))
    }

    /// Runs a drift check of `campaign` to its end and answers the report (100 rows a page).
    pub async fn drift(&self, campaign: u64) -> Value {
        let (status, started) = self
            .post(&format!("/api/campaigns/{campaign}/drift"), json!({}))
            .await;
        assert_eq!(status, 200, "{started}");
        let tracker = started["tracker_id"].as_u64().expect("a tracker");
        let done = self.wait(tracker).await;
        assert_eq!(done["status"], "completed", "{done}");
        let (status, report) = self
            .get(&format!("/api/campaigns/{campaign}/drift?per_page=100"))
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["tracker"]["id"], tracker, "{report}");
        report
    }

    /// Creates `n` products SKU `{prefix}-{i}` with two variants of one price (MercadoLibre lists
    /// one price for all of an item's variations) and two images.
    pub async fn products(&self, prefix: &str, n: usize) -> Vec<u64> {
        let list: Vec<Value> = (1..=n)
            .map(|i| {
                let sku = format!("{prefix}-{i}");
                json!({
                    "sku": sku, "name": format!("Product {prefix} {i}"), "description": "d",
                    "price": 1000 + i, "stock": 3,
                    "variants": [
                        {"sku": format!("{sku}-S"), "price": 1000, "stock": 1, "options": {"Size": "S"}},
                        {"sku": format!("{sku}-M"), "price": 1000, "stock": 2, "options": {"Size": "M"}},
                    ],
                    "images": [
                        {"url": format!("https://img.example/{sku}/1.jpg"), "position": 1},
                        {"url": format!("https://img.example/{sku}/2.jpg"), "position": 2},
                    ],
                })
            })
            .collect();
        self.upload(Value::Array(list)).await
    }

    /// Uploads `products` (a JSON list of the API's products, which must be accepted); answers
    /// their ids in order.
    pub async fn upload(&self, products: Value) -> Vec<u64> {
        let products: Vec<::api::input::ProductInput> =
            serde_json::from_value(products).expect("the API's products");
        let upserted = self.api().upsert_products(&products).await;
        let upserted = upserted.unwrap_or_else(|e| panic!("the upload is refused: {e}"));
        upserted.products.iter().map(|p| p.id).collect()
    }

    /// A campaign on `marketplaces` holding `products`.
    pub async fn campaign(&self, marketplaces: &[u64], products: &[u64]) -> u64 {
        use ::api::input::{AddProductsInput, CampaignInput};
        let api = self.api();
        let campaign = api
            .create_campaign(&CampaignInput::new("Summer Sale", marketplaces.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("the campaign is refused: {e}"));
        let products = AddProductsInput::ids(products.to_vec());
        api.add_campaign_products(campaign.id, &products)
            .await
            .unwrap_or_else(|e| panic!("the products are refused: {e}"));
        campaign.id
    }

    /// Starts a campaign action (`publish`, ..., `reconcile`) with `body`'s options and returns
    /// its tracker id.
    pub async fn action(&self, campaign: u64, action: &str, body: Value) -> u64 {
        let kind = ::domain::Action::parse(action).expect("an action");
        let options: ::api::input::ActionInput =
            serde_json::from_value(body).expect("an action's options");
        let started = self.api().start(campaign, kind, &options).await;
        started
            .unwrap_or_else(|e| panic!("{action} is refused: {e}"))
            .tracker_id
    }

    /// A run's tracker, read as the API's answer type (and given as JSON to the tests).
    pub async fn tracker(&self, id: u64) -> Value {
        let answer = self.api().tracker_progress(id).await;
        let answer = answer.unwrap_or_else(|e| panic!("tracker {id}: {e}"));
        assert!(answer.success);
        serde_json::to_value(answer.data).expect("an answer serializes")
    }

    /// Polls the seed's progress endpoint until the tracker is completed or failed.
    pub async fn wait(&self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.tracker(id).await;
            if t["status"] != "active" {
                return t;
            }
            assert!(Instant::now() < deadline, "tracker {id} still active: {t}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs an action to its end.
    pub async fn run(&self, campaign: u64, action: &str, body: Value) -> Value {
        let id = self.action(campaign, action, body).await;
        self.wait(id).await
    }

    /// Deletes products from the campaign on every marketplace (the seed's product DELETE),
    /// and waits for the run to end.
    pub async fn delete_products(&self, campaign: u64, products: &[u64]) -> Value {
        let (status, v) = self
            .call(
                Method::DELETE,
                &format!("/api/ecommerce/campaign/{campaign}/product?action=delete"),
                Some(json!({ "product_ids": products })),
                Some(&self.token),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        self.wait(v["tracker_id"].as_u64().expect("tracker_id"))
            .await
    }

    /// Every campaign product, all pages.
    pub async fn campaign_products(&self, campaign: u64) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1.. {
            let (status, v) = self
                .get(&format!(
                    "/api/campaigns/{campaign}/products?per_page=100&page={page}"
                ))
                .await;
            assert_eq!(status, 200, "{v}");
            let data = v["data"].as_array().expect("data").clone();
            if data.is_empty() {
                break;
            }
            out.extend(data);
        }
        out
    }

    /// Statuses of the campaign's products as (sku, marketplace id, status), sorted.
    pub async fn statuses(&self, campaign: u64) -> Vec<(String, u64, String)> {
        let mut s: Vec<_> = self
            .campaign_products(campaign)
            .await
            .iter()
            .map(|p| {
                (
                    p["sku"].as_str().unwrap_or("").to_string(),
                    p["marketplace_id"].as_u64().unwrap_or(0),
                    p["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        s.sort();
        s
    }

    /// Whether every product of the campaign, on every marketplace, has `status`.
    pub async fn all_are(&self, campaign: u64, status: &str) -> bool {
        self.statuses(campaign).await.iter().all(|s| s.2 == status)
    }

    /// Stops the service on a thread of its own (a stop waits for the calls in flight), so the
    /// test can watch it; `start_again` starts it on the same data directory.
    pub fn stop_in_background(&mut self) -> std::thread::JoinHandle<()> {
        let app = self.app.take();
        std::thread::spawn(move || {
            if let Some(app) = app {
                app.shutdown();
            }
        })
    }

    pub fn start_again(&mut self) {
        let app = start(self.config.clone(), self.clock.clone());
        self.url = app.url();
        self.app = Some(app);
    }

    /// The environment a `campaignd` process needs to open this test's store.
    pub fn store_env(&self) -> Vec<(&'static str, String)> {
        self._store.env()
    }

    /// `GET /metrics` as Prometheus would read it: 200, text, from loopback.
    pub async fn metrics(&self) -> String {
        let res = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("answers");
        assert_eq!(res.status(), 200);
        let kind = res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .to_string();
        assert!(kind.starts_with("text/plain"), "{kind}");
        res.text().await.expect("text")
    }

    /// The test's own directory (the sled data and its key live there).
    pub fn store_dir(&self) -> &std::path::Path {
        self._store.dir.path()
    }

    /// The secrets key file of a sled store (PostgreSQL tests give the key by environment).
    pub fn key_file(&self) -> Option<std::path::PathBuf> {
        let key = self._store.dir.path().join("data.key");
        key.exists().then_some(key)
    }

    /// The PostgreSQL database of this test, if it runs on one.
    pub fn database_url(&self) -> Option<String> {
        self._store.url.clone()
    }

    /// The configuration the service (re)starts with.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Stops the service and waits for it.
    pub fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }

    /// Starts the stopped service again, answering why it would not start.
    pub fn try_start(&mut self) -> Result<(), campaignd::app::AppError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds port 0");
        let mut options = AppOptions::new(self.config.clone());
        if let Some(clock) = &self.clock {
            options.clock = clock.clone();
        }
        let app = App::start(options, listener)?;
        self.url = app.url();
        self.app = Some(app);
        Ok(())
    }

    /// Stops the service and starts it again on the same data directory.
    pub fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
        let app = start(self.config.clone(), self.clock.clone());
        self.url = app.url();
        self.app = Some(app);
    }
}

/// A WebSocket client of the service.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
pub type WsError = tokio_tungstenite::tungstenite::Error;

/// Opens `GET /api/ws?{query}` with the token in the Authorization header.
pub async fn open_ws(app: &TestApp, query: &str, token: &str) -> Result<Ws, WsError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/api/ws?{query}", app.url.replace("http://", "ws://"));
    let mut request = url.into_client_request()?;
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.headers_mut().insert("authorization", value);
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

/// The four marketplaces, for tests that run on each: how to connect to its simulator (again,
/// as a second connection to the same store), and what its store holds.
#[derive(Debug, Clone, Copy)]
pub enum On {
    Jumpseller,
    Woo,
    Ml,
    Shopify,
}

impl On {
    /// The `system` label of its metrics.
    pub fn system(self) -> &'static str {
        match self {
            On::Jumpseller => "jumpseller",
            On::Woo => "woocommerce",
            On::Ml => "mercadolibre",
            On::Shopify => "shopify",
        }
    }

    /// Turns the knobs of this marketplace's simulator.
    pub fn knobs(self, app: &TestApp, f: impl FnOnce(&mut ::marketplaces::sim::Knobs)) {
        match self {
            On::Jumpseller => app.jumpseller.set_knobs(f),
            On::Woo => app.woo.set_knobs(f),
            On::Ml => app.ml.set_knobs(f),
            On::Shopify => app.shopify.set_knobs(f),
        }
    }

    pub fn stats(self, app: &TestApp) -> ::marketplaces::sim::SimStats {
        match self {
            On::Jumpseller => app.jumpseller.stats(),
            On::Woo => app.woo.stats(),
            On::Ml => app.ml.stats(),
            On::Shopify => app.shopify.stats(),
        }
    }

    /// Each product's status in the store (`GET /_sim/state`'s `status`), sorted.
    pub fn statuses(self, app: &TestApp) -> Vec<String> {
        use ::marketplaces::sim::SimApi;
        let dump = match self {
            On::Jumpseller => app.jumpseller.with_api(|s| s.dump()),
            On::Woo => app.woo.with_api(|s| s.dump()),
            On::Ml => app.ml.with_api(|s| s.dump()),
            On::Shopify => app.shopify.with_api(|s| s.dump()),
        };
        let mut statuses: Vec<String> = dump
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["status"].as_str().unwrap_or("").to_string())
            .collect();
        statuses.sort();
        statuses
    }

    pub async fn connect(self, app: &TestApp, name: &str) -> u64 {
        match self {
            On::Jumpseller => app.connect_jumpseller(name, "js-token").await,
            On::Woo => app.connect_woocommerce(name).await,
            On::Ml => app.connect_mercadolibre(json!({"name": name})).await,
            On::Shopify => app.connect_shopify(json!({"name": name})).await,
        }
    }

    /// The store's products, and the requests it received, in order.
    pub fn store(self, app: &TestApp) -> (usize, Vec<::marketplaces::sim::Logged>) {
        match self {
            On::Jumpseller => (
                app.jumpseller.with_api(|s| s.products.len()),
                app.jumpseller.stats().log,
            ),
            On::Woo => (app.woo.with_api(|s| s.products.len()), app.woo.stats().log),
            On::Ml => (
                app.ml
                    .with_api(|s| s.items.values().filter(|i| !i.deleted).count()),
                app.ml.stats().log,
            ),
            On::Shopify => (
                app.shopify.with_api(|s| s.products.len()),
                app.shopify.stats().log,
            ),
        }
    }
}

/// The value of the sample whose line starts with `prefix`, if there is one.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
