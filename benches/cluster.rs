//! The cluster on PostgreSQL: 40 campaigns, each on a connection of its own (40 Jumpseller
//! accounts on four fast simulators in processes of their own, limits far above the load, 1 ms
//! latency), published by 1, 2 and 3 `campaignd serve` nodes sharing one database of a private
//! server. Prints product-phase operations per second for each node count, how the connections
//! spread over the nodes, and, with three nodes, the time for a killed node's connections to be
//! taken over and their work to move again (leases of 2 s, heartbeats every 300 ms).
//!
//! Every process shares this machine's cores, the database server included, so the figures
//! show the cluster's overhead and its spread rather than capacity added by more machines.
//!
//! Run: `cargo bench --bench cluster` (BENCH_PRODUCTS=200 per campaign; needs Debian's
//! postgresql, as the tests do).

use ::store::pg_server;
#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::service::child::{spawn_with_line, Proc};
use support::{post, tracker};

const BIN: &str = env!("CARGO_BIN_EXE_campaignd");
const CONNECTIONS: usize = 40;
const SIMS: usize = 4;
const LEASE_MS: &str = "2000";

fn node(url: &str, id: &str) -> (Proc, String) {
    let dir = std::env::temp_dir().join(format!("campaignd-bench-{id}"));
    let (proc, line) = spawn_with_line(
        Command::new(BIN)
            .arg("serve")
            .env("CAMPAIGND_STORE__BACKEND", "postgres")
            .env("CAMPAIGND_STORE__URL", url)
            .env("CAMPAIGND_STORE__DATA_DIR", dir)
            .env("CAMPAIGND_SERVER__ADDR", "127.0.0.1:0")
            .env("CAMPAIGND_CLUSTER__NODE_ID", id)
            // The nodes share one secrets key, and reach the simulators on loopback.
            .env(
                "CAMPAIGND_SECRETS__KEY",
                "Y2FtcGFpZ25kLWJlbmNoLWNsdXN0ZXIta2V5LTMyYiE=",
            )
            .env("CAMPAIGND_EGRESS__WEBHOOKS_ALLOW_PRIVATE", "true")
            .env("CAMPAIGND_EGRESS__MARKETPLACES_ALLOW_PRIVATE", "true")
            .env("CAMPAIGND_EGRESS__MARKETPLACES_ALLOW_CUSTOM_HOSTS", "true")
            .env("CAMPAIGND_CLUSTER__LEASE_MS", LEASE_MS)
            .env("CAMPAIGND_CLUSTER__HEARTBEAT_MS", "300")
            .env("CAMPAIGND_LOG", "warn"),
    );
    let api = line
        .strip_prefix("campaignd listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim()
        .to_string();
    (proc, api)
}

fn token(url: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--tenant", "bench"])
        .env("CAMPAIGND_STORE__BACKEND", "postgres")
        .env("CAMPAIGND_STORE__URL", url)
        .env("CAMPAIGND_LOG", "warn")
        .output()
        .expect("token create runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn leases(db: &sqlx::PgPool) -> HashMap<i64, String> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT connection_id, owner FROM leases WHERE expires_at > $1")
            .bind(now_ms())
            .fetch_all(db)
            .await
            .expect("leases");
    rows.into_iter().collect()
}

struct Setup {
    db: sqlx::PgPool,
    token: String,
    nodes: Vec<(String, Proc, String)>,
    campaigns: Vec<u64>,
}

/// A fresh database, `n` nodes, 40 connections and 40 campaigns of `products` each.
async fn setup(server: &pg_server::PgServer, sims: &[String], n: usize, products: usize) -> Setup {
    let url = server.fresh_database();
    let db = sqlx::PgPool::connect(&url).await.expect("the database");
    let token = token(&url);
    let nodes: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("bench-{n}-{i}");
            let (proc, api) = node(&url, &id);
            (id, proc, api)
        })
        .collect();
    let client = reqwest::Client::new();
    let api = nodes[0].2.clone();
    let mut ids: Vec<u64> = Vec::new();
    // Uploads of at most 5,000 products, the API's limit.
    for chunk in (0..CONNECTIONS * products).collect::<Vec<_>>().chunks(5000) {
        let catalogue: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"sku": format!("B-{i}"), "name": format!("Bench {i}"), "price": 1000}))
            .collect();
        let uploaded = post(
            &client,
            format!("{api}/api/products"),
            &token,
            json!(catalogue),
        )
        .await;
        ids.extend(
            uploaded["products"]
                .as_array()
                .expect("products")
                .iter()
                .map(|p| p["id"].as_u64().expect("id")),
        );
    }
    let mut campaigns = Vec::new();
    for c in 0..CONNECTIONS {
        let sim = &sims[c % SIMS];
        let connection = post(
            &client,
            format!("{api}/api/marketplaces"),
            &token,
            json!({"system": "jumpseller", "name": format!("account {c}"),
                   "base_url": format!("{sim}/v1"),
                   "credentials": {"login": "demo-store", "authtoken": "demo-authtoken"},
                   "rate_limit": {"per_second": 100000, "per_minute": 6000000},
                   "max_in_flight": 8}),
        )
        .await["id"]
            .clone();
        let campaign = post(
            &client,
            format!("{api}/api/campaigns"),
            &token,
            json!({"name": format!("c{c}"), "marketplace_ids": [connection]}),
        )
        .await["id"]
            .as_u64()
            .expect("a campaign");
        post(
            &client,
            format!("{api}/api/campaigns/{campaign}/products"),
            &token,
            json!({"product_ids": ids[c * products..(c + 1) * products]}),
        )
        .await;
        campaigns.push(campaign);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes WHERE expires_at > $1")
            .bind(now_ms())
            .fetch_one(&db)
            .await
            .expect("nodes");
        if live as usize >= n {
            break;
        }
        assert!(Instant::now() < deadline, "the nodes never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup {
        db,
        token,
        nodes,
        campaigns,
    }
}

/// Starts `action` on every campaign, spread over the nodes' APIs; answers the trackers.
async fn start_all(client: &reqwest::Client, s: &Setup, action: &str) -> Vec<u64> {
    let mut trackers = Vec::new();
    for (i, c) in s.campaigns.iter().enumerate() {
        let api = &s.nodes[i % s.nodes.len()].2;
        let t = post(
            client,
            format!("{api}/api/campaigns/{c}/{action}"),
            &s.token,
            json!({}),
        )
        .await["tracker_id"]
            .as_u64()
            .expect("tracker_id");
        trackers.push(t);
    }
    trackers
}

/// Waits until every tracker ended (completed); answers the product-phases they processed.
async fn wait_all(client: &reqwest::Client, api: &str, token: &str, trackers: &[u64]) -> u64 {
    let mut ops = 0;
    for t in trackers {
        loop {
            let v = tracker(client, api, token, *t).await;
            if v["status"] != "active" {
                assert_eq!(v["status"], "completed", "{v}");
                for c in v["connections"].as_array().expect("connections") {
                    for p in c["phases_status"].as_object().expect("phases").values() {
                        ops += p["processed"].as_u64().expect("processed");
                    }
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ops
}

fn main() {
    let products: usize = std::env::var("BENCH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let server = pg_server::PgServer::start();
    let sim_procs: Vec<(Proc, String)> = (0..SIMS)
        .map(|_| {
            let (proc, line) = spawn_with_line(Command::new(BIN).args([
                "sim",
                "jumpseller",
                "--latency-ms",
                "1",
                "--per-second",
                "10000000",
                "--per-minute",
                "600000000",
            ]));
            let v: Value = serde_json::from_str(&line).expect("the simulator's line");
            (proc, v["url"].as_str().expect("url").to_string())
        })
        .collect();
    let sims: Vec<String> = sim_procs.iter().map(|(_, u)| u.clone()).collect();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        println!(
            "cluster benchmark: {CONNECTIONS} connections, {products} products each (3 phases), \
             1 ms latency, one PostgreSQL server, all on this machine's {} cores",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        for n in 1..=3 {
            let s = setup(&server, &sims, n, products).await;
            let started = Instant::now();
            // The spread: the most connections each node held at once during the run.
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = {
                let (db, done) = (s.db.clone(), std::sync::Arc::clone(&done));
                tokio::spawn(async move {
                    let mut most: HashMap<String, usize> = HashMap::new();
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut now: HashMap<String, usize> = HashMap::new();
                        for owner in leases(&db).await.into_values() {
                            *now.entry(owner).or_default() += 1;
                        }
                        for (owner, n) in now {
                            let m = most.entry(owner).or_default();
                            *m = (*m).max(n);
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    most
                })
            };
            let trackers = start_all(&client, &s, "publish").await;
            let ops = wait_all(&client, &s.nodes[0].2, &s.token, &trackers).await;
            let secs = started.elapsed().as_secs_f64();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut spread: Vec<usize> = sampler.await.expect("the sampler").into_values().collect();
            spread.sort_unstable();
            println!(
                "{n} node(s): {ops} product-phases in {secs:.2} s = {:.0} ops/s; most connections held at once per node {spread:?}",
                ops as f64 / secs
            );
            if n == 3 {
                takeover(&client, s).await;
            }
        }
    });
    drop(sim_procs);
}

/// Republishes with three nodes, kills the one holding the most connections once the work is
/// under way, and measures until its connections are leased by the others, and until every
/// run ended.
async fn takeover(client: &reqwest::Client, mut s: Setup) {
    let trackers = start_all(client, &s, "republish").await;
    let survivor = s.nodes[0].2.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = tracker(client, &survivor, &s.token, trackers[0]).await;
        if t["progress"].as_f64().unwrap_or(0.0) > 0.0 || t["status"] != "active" {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = leases(&s.db).await;
    let mut count: HashMap<String, Vec<i64>> = HashMap::new();
    for (c, owner) in &held {
        count.entry(owner.clone()).or_default().push(*c);
    }
    let (victim, theirs) = count
        .into_iter()
        .filter(|(owner, _)| *owner != s.nodes[0].0)
        .max_by_key(|(_, c)| c.len())
        .expect("a node holding connections");
    let at = s
        .nodes
        .iter()
        .position(|(id, _, _)| *id == victim)
        .expect("the victim is a node");
    let killed = Instant::now();
    drop(s.nodes.remove(at));
    // Taken over: each of its connections leased by another node, or its work done.
    loop {
        let now = leases(&s.db).await;
        let open: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT connection_id FROM work_items WHERE NOT done")
                .fetch_all(&s.db)
                .await
                .expect("work");
        if theirs
            .iter()
            .all(|c| now.get(c).is_some_and(|o| *o != victim) || !open.contains(c))
        {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "no takeover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let taken = killed.elapsed();
    let _ = wait_all(client, &survivor, &s.token, &trackers).await;
    println!(
        "takeover: {victim} killed holding {} connections; leased by the others {} ms later \
         (lease {LEASE_MS} ms); every run completed {:.2} s after the kill",
        theirs.len(),
        taken.as_millis(),
        killed.elapsed().as_secs_f64()
    );
}
