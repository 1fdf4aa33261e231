//! What the benchmarks share: speaking to the service's API as a client.

use std::time::Duration;

use serde_json::Value;

// Each benchmark compiles this module on its own and uses part of it.
#[allow(dead_code)]
pub mod service;

// Each benchmark compiles this module on its own and uses part of it.
#[allow(dead_code)]
/// A configuration in `dir` that may reach the simulators on loopback.
pub fn loopback_config(dir: &std::path::Path) -> campaignd::config::Config {
    let mut config = campaignd::config::Config::for_data_dir(dir);
    config.egress = campaignd::config::EgressConfig::loopback_trials();
    config
}

/// POSTs `body` with the bearer token and returns the JSON answer, which must be a success.
pub async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let res = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the service answers");
    let status = res.status();
    let v: Value = res.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

// Each benchmark compiles this module on its own and uses part of it.
#[allow(dead_code)]
/// Uploads `catalogue` and answers a new campaign named `name` on `conn` holding it, through
/// the API's typed client.
pub async fn campaign_of(
    _client: &reqwest::Client,
    api: &str,
    token: &str,
    conn: &Value,
    name: &str,
    catalogue: Vec<Value>,
) -> Value {
    use ::api::input::{AddProductsInput, CampaignInput, ProductInput};
    let typed = ::client::Client::new(api, token);
    let catalogue: Vec<ProductInput> =
        serde_json::from_value(Value::Array(catalogue)).expect("the API's products");
    let upserted = typed.upsert_products(&catalogue).await.expect("uploaded");
    let connection = conn.as_u64().expect("a connection id");
    let campaign = typed
        .create_campaign(&CampaignInput::new(name, vec![connection]))
        .await
        .expect("a campaign");
    let products = AddProductsInput::ids(upserted.products.iter().map(|p| p.id).collect());
    typed
        .add_campaign_products(campaign.id, &products)
        .await
        .expect("the products join the campaign");
    Value::from(campaign.id)
}

// Each benchmark compiles this module on its own and uses part of it.
#[allow(dead_code)]
/// A tracker's progress (`data` of the seed's progress endpoint), read as the API's answer type.
pub async fn tracker(
    _client: &reqwest::Client,
    api: &str,
    token: &str,
    id: impl std::fmt::Display,
) -> Value {
    let id: u64 = id.to_string().parse().expect("a tracker id");
    let answer = ::client::Client::new(api, token)
        .tracker_progress(id)
        .await
        .expect("the tracker answers");
    serde_json::to_value(answer.data).expect("an answer serializes")
}

// Each benchmark compiles this module on its own; the engine benchmark samples memory while it
// polls, so it keeps its own loop.
#[allow(dead_code)]
/// Polls a tracker every `every` until it ends, which must be completed; answers the tracker and
/// the run's own wall time, from its recorded start to its completion (polling lags behind).
pub async fn wait_completed(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    tracker_id: &Value,
    every: Duration,
) -> (Value, Duration) {
    let finished = loop {
        tokio::time::sleep(every).await;
        let t = tracker(client, api, token, tracker_id).await;
        if t["status"] != "active" {
            assert_eq!(t["status"], "completed", "{t}");
            break t;
        }
    };
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(finished[field].as_str().expect(field)).expect(field)
    };
    let wall = (at("completed_at") - at("started_at"))
        .to_std()
        .expect("ends after it starts");
    (finished, wall)
}

// Each benchmark compiles this module on its own and uses part of it.
#[allow(dead_code)]
/// The service started in this process on a fresh sled store in a temporary directory (kept
/// as long as it runs), with a tenant's token.
pub struct InProcess {
    pub app: campaignd::app::App,
    pub token: String,
    pub api: String,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl InProcess {
    pub fn start() -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let app = campaignd::app::App::start(
            campaignd::app::AppOptions::new(loopback_config(dir.path())),
            listener,
        )
        .expect("starts");
        let token = app.create_token("bench").expect("token");
        let api = app.url();
        InProcess {
            app,
            token,
            api,
            _dir: dir,
        }
    }

    pub fn shutdown(self) {
        self.app.shutdown();
    }
}

// Each benchmark compiles this module on its own and uses part of it.
#[allow(dead_code)]
/// How many products a benchmark uses: `BENCH_PRODUCTS`, or `default`.
pub fn bench_products(default: usize) -> usize {
    std::env::var("BENCH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
