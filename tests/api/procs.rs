//! Processes for the tests that kill them: simulators (`campaignd sim`), whose state outlives
//! the service, and the service itself (`campaignd serve`) on a test's store, with a small
//! client of its API.

use std::process::Command;

use serde_json::{json, Value};

pub use crate::child::{spawn_with_line, Proc};
use crate::helpers::TestStore;

pub const BIN: &str = env!("CARGO_BIN_EXE_campaignd");

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct Sim {
    _proc: Proc,
    pub url: String,
    pub connection: Value,
}

/// A simulator of `system` in a process of its own, with that account's limits.
pub fn sim(system: &str, per_second: u64, per_minute: u64) -> Sim {
    sim_with(system, per_second, per_minute, &[])
}

/// Like `sim`, with more of `campaignd sim`'s options.
pub fn sim_with(system: &str, per_second: u64, per_minute: u64, options: &[&str]) -> Sim {
    let (proc, line) = spawn_with_line(
        Command::new(BIN)
            .args([
                "sim",
                system,
                "--latency-ms",
                "3",
                "--per-second",
                &per_second.to_string(),
                "--per-minute",
                &per_minute.to_string(),
            ])
            .args(options),
    );
    let v: Value = serde_json::from_str(&line).expect("the simulator's JSON line");
    Sim {
        _proc: proc,
        url: v["url"].as_str().expect("url").to_string(),
        connection: v["connection"].clone(),
    }
}

pub async fn state(client: &reqwest::Client, sim: &Sim) -> Value {
    client
        .get(format!("{}/_sim/state", sim.url))
        .send()
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("JSON")
}

/// The store's state once every late write has landed (`--late-writes`), checked to hold
/// `products` products, one per SKU, each in the store's word `status`.
pub async fn landed_once_each(
    client: &reqwest::Client,
    sim: &Sim,
    products: usize,
    status: &str,
) -> Value {
    let system = &sim.connection["system"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let remote = loop {
        let remote = state(client, sim).await;
        if remote["landing"] == 0 {
            break remote;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{system}: the late creates never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(remote["duplicate_skus"], json!([]), "{system}: {remote}");
    let listed = remote["products"].as_array().expect("products");
    assert_eq!(
        listed.len(),
        products,
        "{system}: one product per SKU: {remote}"
    );
    assert!(
        listed.iter().all(|p| p["status"] == status),
        "{system}: {remote}"
    );
    remote
}

/// `campaignd serve` on `store` in a process of its own, with `env` on top; answers its URL.
pub fn service(store: &TestStore, env: &[(&str, &str)]) -> (Proc, String) {
    let (proc, line) = spawn_with_line(
        Command::new(BIN)
            .arg("serve")
            .envs(store.env())
            // On PostgreSQL a killed node's leases must expire before its successor takes its
            // connections: short leases keep the cycles short.
            .env("CAMPAIGND_CLUSTER__LEASE_MS", "1000")
            .env("CAMPAIGND_CLUSTER__HEARTBEAT_MS", "200")
            .env("CAMPAIGND_SERVER__ADDR", "127.0.0.1:0")
            .env("CAMPAIGND_RUNS__PROGRESS_FLUSH_MS", "20")
            .env("CAMPAIGND_HTTP__TIMEOUT_SECS", "5")
            // The simulators carry a request out before they answer, unless told otherwise.
            .env("CAMPAIGND_RUNS__SETTLE_MS", "200")
            .env("CAMPAIGND_LOG", "warn")
            .envs(env.iter().copied()),
    );
    let url = line
        .strip_prefix("campaignd listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim()
        .to_string();
    (proc, url)
}

pub struct Api {
    pub client: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.expect("the service answers");
        let status = res.status().as_u16();
        (status, res.json().await.expect("JSON"))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {status} {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    /// Uploads `n` products, two variants and two images each, with SKUs `{prefix}-1`, …;
    /// answers their ids.
    pub async fn upload_products(&self, prefix: &str, n: usize) -> Vec<Value> {
        let catalogue: Vec<Value> = (1..=n)
            .map(|i| {
                let sku = format!("{prefix}-{i}");
                json!({"sku": sku, "name": format!("{prefix} {i}"), "price": 1000 + i, "stock": 2,
                       "variants": [{"sku": format!("{sku}-A"), "price": 1000, "options": {"Size": "A"}},
                                    {"sku": format!("{sku}-B"), "price": 1000, "options": {"Size": "B"}}],
                       "images": [{"url": format!("https://img.example/{sku}/1.jpg")},
                                  {"url": format!("https://img.example/{sku}/2.jpg")}]})
            })
            .collect();
        let created = self.post("/api/products", Value::Array(catalogue)).await;
        created["products"]
            .as_array()
            .expect("products")
            .iter()
            .map(|p| p["id"].clone())
            .collect()
    }

    /// A campaign named `name` on `connections`, holding `products`.
    pub async fn campaign(&self, name: &str, connections: &[Value], products: &[Value]) -> u64 {
        let campaign = self
            .post(
                "/api/campaigns",
                json!({"name": name, "marketplace_ids": connections}),
            )
            .await["id"]
            .as_u64()
            .expect("a campaign");
        self.post(
            &format!("/api/campaigns/{campaign}/products"),
            json!({"product_ids": products}),
        )
        .await;
        campaign
    }

    /// Every product of a campaign, as the API lists them, page by page.
    pub async fn campaign_products(&self, campaign: u64) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let v = self
                .get(&format!(
                    "/api/campaigns/{campaign}/products?per_page=100&page={page}"
                ))
                .await;
            let data = v["data"].as_array().expect("data").clone();
            if data.is_empty() {
                break;
            }
            all.extend(data);
        }
        all
    }

    pub async fn tracker(&self, id: u64) -> Value {
        self.get(&format!("/api/tracker/{id}/progress")).await["data"].clone()
    }
}

/// A token of `tenant` on `store`, made by `campaignd token create`.
pub fn token(store: &TestStore, tenant: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--tenant", tenant])
        .envs(store.env())
        .env("CAMPAIGND_LOG", "warn")
        .output()
        .expect("token create runs");
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
