//! The cluster test: three `campaignd serve` processes on one PostgreSQL database, six simulated
//! accounts in processes of their own (`campaignd sim`, four Jumpseller stores with Jumpseller's
//! real limits and two WooCommerce sites behind a host limit), and one campaign on all six. In
//! each cycle a run starts, and once it is under way the node holding the most connections is
//! killed with SIGKILL; the others take its connections over and the run completes. Checked:
//! every product is in its final status and counted by the tracker, nothing is created twice,
//! no simulator saw its limits exceeded, and a WebSocket subscriber on a surviving node saw
//! each run end. CLUSTER_CYCLES (2) and CLUSTER_PRODUCTS (30) choose the size. A second test runs
//! three nodes in this process on a shared fake clock, to show each scheduled step runs once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use std::sync::Arc;

use ::domain::clock::FakeClock;

use crate::helpers::{spawn_app_timed, TestStore};
use crate::procs::{
    env_or, landed_once_each, service, sim, sim_with, state, token, Api, Proc, Sim,
};
use crate::schedule::{at, campaign_view, scheduled_run, trackers, HOUR, T0};

/// Jumpseller's limits, which its simulators enforce.
const JS_LIMITS: (u64, u64) = (20, 800);
/// The WooCommerce sites' host limit.
const WOO_LIMITS: (u64, u64) = (10, 600);

struct Cluster {
    store: TestStore,
    db: sqlx::PgPool,
    nodes: HashMap<String, (Proc, String)>,
    started: usize,
}

impl Cluster {
    /// Three nodes on a fresh PostgreSQL database, with `more` of the service's settings, and
    /// a token of `tenant`.
    async fn of_three(tenant: &str, more: &[(&str, &str)]) -> (Cluster, String) {
        let store = TestStore::new();
        let url = store
            .url
            .clone()
            .expect("the cluster test runs on PostgreSQL");
        let db = sqlx::PgPool::connect(&url).await.expect("the database");
        let token = token(&store, tenant);
        let mut cluster = Cluster {
            store,
            db,
            nodes: HashMap::new(),
            started: 0,
        };
        for _ in 0..3 {
            cluster.start_node_with(more);
        }
        (cluster, token)
    }

    /// Waits until all three nodes say they are alive.
    async fn all_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.live_nodes().await < 3 {
            assert!(Instant::now() < deadline, "three nodes never came up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn start_node(&mut self) -> String {
        self.start_node_with(&[])
    }

    /// A node with `more` of the service's settings beside the cluster's.
    fn start_node_with(&mut self, more: &[(&str, &str)]) -> String {
        let id = format!("node-{}", self.started);
        self.started += 1;
        let mut env = vec![
            ("CAMPAIGND_CLUSTER__NODE_ID", id.as_str()),
            ("CAMPAIGND_CLUSTER__LEASE_MS", "1000"),
            ("CAMPAIGND_CLUSTER__HEARTBEAT_MS", "200"),
            // Three nodes, PostgreSQL and six simulators share two cores with the rest of
            // the suite: a request can reach a simulator tens of milliseconds later than
            // the one sent after it, more than round trips show (seen: 5 over 20 in a
            // second at the default 15 ms). The operator's setting for such a machine.
            ("CAMPAIGND_RUNS__LIMITER_MARGIN_MS", "100"),
        ];
        env.extend_from_slice(more);
        let node = service(&self.store, &env);
        self.nodes.insert(id.clone(), node);
        id
    }

    fn url(&self, node: &str) -> String {
        self.nodes[node].1.clone()
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    async fn live_nodes(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM nodes WHERE expires_at > $1")
            .bind(Self::now_ms())
            .fetch_one(&self.db)
            .await
            .expect("nodes")
    }

    /// Connection → the node holding its lease now.
    async fn leases(&self) -> HashMap<i64, String> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT connection_id, owner FROM leases WHERE expires_at > $1")
                .bind(Self::now_ms())
                .fetch_all(&self.db)
                .await
                .expect("leases");
        rows.into_iter().collect()
    }
}

/// Follows a campaign's trackers over a WebSocket and records the ones seen ending.
fn subscribe(url: &str, token: &str, campaign: u64) -> tokio::sync::watch::Receiver<Vec<Value>> {
    let url = format!(
        "{}/api/ws?campaign_id={campaign}",
        url.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("a request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header"),
    );
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    tokio::spawn(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket opens");
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).expect("JSON");
            let mut ended: Vec<Value> = Vec::new();
            if v["type"] == "tracker" {
                ended.push(v["tracker"].clone());
            } else if v["type"] == "snapshot" {
                ended.extend(v["trackers"].as_array().cloned().unwrap_or_default());
            }
            ended.retain(|t| t["status"] != "active");
            if !ended.is_empty() {
                tx.send_modify(|seen| seen.extend(ended));
            }
        }
    });
    rx
}

#[tokio::test]
async fn three_nodes_share_a_campaign_and_a_node_killed_mid_run_loses_nothing() {
    let cycles = env_or("CLUSTER_CYCLES", 2);
    let products = env_or("CLUSTER_PRODUCTS", 30) as usize;
    let (mut cluster, token) = Cluster::of_three("cluster", &[]).await;
    // The subscriber's node is never killed.
    let watcher = "node-0".to_string();
    let client = reqwest::Client::new();
    let mut api = Api {
        client: client.clone(),
        url: cluster.url(&watcher),
        token: token.clone(),
    };

    let sims: Vec<(Sim, (u64, u64))> = (0..4)
        .map(|_| (sim("jumpseller", JS_LIMITS.0, JS_LIMITS.1), JS_LIMITS))
        .chain((0..2).map(|_| (sim("woocommerce", WOO_LIMITS.0, WOO_LIMITS.1), WOO_LIMITS)))
        .collect();
    let mut connections = Vec::new();
    for (i, (s, limits)) in sims.iter().enumerate() {
        let mut body = s.connection.clone();
        body["name"] = json!(format!("account {i}"));
        if body["system"] == "woocommerce" {
            body["rate_limit"] = json!({"per_second": limits.0, "per_minute": limits.1});
        }
        connections.push(api.post("/api/marketplaces", body).await["id"].clone());
    }
    let product_ids = api.upload_products("N", products).await;
    let campaign = api.campaign("Cluster", &connections, &product_ids).await;
    cluster.all_up().await;
    let ended = subscribe(&cluster.url(&watcher), &token, campaign);

    let mut takeovers = Vec::new();
    let mut kills = 0;
    for cycle in 0..cycles {
        let action = if cycle == 0 { "publish" } else { "republish" };
        // Any node takes the action: this cycle, one that will survive it.
        let entry = cluster
            .nodes
            .keys()
            .filter(|n| **n != watcher)
            .min()
            .cloned()
            .unwrap_or_else(|| watcher.clone());
        api.url = cluster.url(&entry);
        let tracker = api
            .post(&format!("/api/campaigns/{campaign}/{action}"), json!({}))
            .await["tracker_id"]
            .as_u64()
            .expect("tracker_id");
        api.url = cluster.url(&watcher);
        // Under way: some progress, and the work spread over the nodes.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = api.tracker(tracker).await;
            if t["progress"].as_f64().unwrap_or(0.0) >= 20.0 {
                break;
            }
            assert_eq!(
                t["status"], "active",
                "cycle {cycle}: ended before the kill: {t}"
            );
            assert!(Instant::now() < deadline, "cycle {cycle}: no progress: {t}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leases = cluster.leases().await;
        let mut held: HashMap<String, Vec<i64>> = HashMap::new();
        for (connection, owner) in &leases {
            held.entry(owner.clone()).or_default().push(*connection);
        }
        let (victim, theirs) = held
            .iter()
            .filter(|(n, _)| **n != watcher)
            .max_by_key(|(n, c)| (c.len(), (*n).clone()))
            .map(|(n, c)| (n.clone(), c.clone()))
            .expect("a node other than the watcher holds connections");
        let before = api.tracker(tracker).await;
        let (proc, _) = cluster.nodes.remove(&victim).expect("the victim runs");
        drop(proc);
        kills += 1;
        let killed = Instant::now();
        let killed_at_ms = chrono::Utc::now().timestamp_millis();
        // Its connections go to the survivors once its leases expire.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = cluster.leases().await;
            let taken = theirs
                .iter()
                .all(|c| now.get(c).is_some_and(|owner| *owner != victim));
            let ended = api.tracker(tracker).await["status"] != "active";
            if taken || ended {
                takeovers.push(killed.elapsed());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: nobody took {theirs:?} over"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A new node joins, as an operator would replace the dead one.
        cluster.start_node();
        let deadline = Instant::now() + Duration::from_secs(120);
        let t = loop {
            let t = api.tracker(tracker).await;
            if t["status"] != "active" {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: the run never ended: {t}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(t["status"], "completed", "cycle {cycle} ({action}): {t}");
        assert_eq!(t["progress"], 100.0, "{t}");
        assert!(
            t["progress"].as_f64() > before["progress"].as_f64(),
            "the run moved after the kill"
        );
        // The tracker's totals are the products' stored states.
        let local = api.campaign_products(campaign).await;
        assert_eq!(local.len(), connections.len() * products, "products lost");
        for c in t["connections"].as_array().expect("connections") {
            let id = &c["marketplace_id"];
            let published = local
                .iter()
                .filter(|p| p["marketplace_id"] == *id && p["status"] == "published")
                .count() as u64;
            assert_eq!(published, products as u64, "connection {id}: {local:?}");
            let last = c["phases_status"]
                .as_object()
                .and_then(|phases| phases.values().map(|p| p["successful"].as_u64()).min())
                .flatten();
            assert_eq!(last, Some(published), "{c}");
        }
        // The subscriber on a surviving node saw the run end.
        let mut seen = ended.clone();
        let wait = tokio::time::timeout(
            Duration::from_secs(30),
            seen.wait_for(|s| s.iter().any(|e| e["id"] == tracker)),
        )
        .await;
        assert!(
            wait.is_ok(),
            "the subscriber never saw tracker {tracker} end"
        );
        eprintln!(
            "cluster cycle {cycle} ({action}): killed {victim} holding {} connections {theirs:?} at \
             {:.1} %, at {killed_at_ms} (Unix ms), taken over in {} ms",
            theirs.len(),
            before["progress"].as_f64().unwrap_or(0.0),
            takeovers.last().map_or(0, Duration::as_millis)
        );
    }

    let mut windows = Vec::new();
    for (i, (s, (per_second, per_minute))) in sims.iter().enumerate() {
        let st = state(&client, s).await;
        assert_eq!(st["duplicate_skus"], json!([]), "account {i}: duplicates");
        assert_eq!(
            st["products"].as_array().map(Vec::len),
            Some(products),
            "account {i}: one product per SKU"
        );
        let (in_1s, in_60s) = (
            st["max_in_1s"].as_u64().expect("max_in_1s"),
            st["max_in_60s"].as_u64().expect("max_in_60s"),
        );
        assert!(
            in_1s <= *per_second && in_60s <= *per_minute,
            "account {i}: {in_1s} in 1 s, {in_60s} in 60 s, over {per_second}/s {per_minute}/min; \
             busiest second ended at {} (Unix ms)",
            st["busiest_1s_at_ms"]
        );
        assert_eq!(st["throttled"], 0, "account {i} answered 429s");
        windows.push(format!(
            "{in_1s}/{per_second} in 1 s, {in_60s}/{per_minute} in 60 s"
        ));
    }
    eprintln!(
        "cluster test: {kills} kills over {cycles} cycles, {} campaign products checked per cycle \
         on {} accounts, duplicates 0, lost 0, takeover {:?} ms, busiest windows [{}]",
        connections.len() * products,
        connections.len(),
        takeovers
            .iter()
            .map(Duration::as_millis)
            .collect::<Vec<_>>(),
        windows.join("; ")
    );
}

/// The late-landing trial in the cluster's take-over: one store of each marketplace whose first
/// creates take effect 3 s after they arrive, even when their client is gone by then. Three
/// nodes run a publish; once every store holds its late creates, the node holding the most
/// connections is killed, and the survivors take its connections over when its leases expire
/// (1 s), before those creates land. Each new owner must wait out the settle window of the
/// killed node's sends, then look the SKUs up and adopt what landed: every store ends with one
/// product per SKU, each published as campaignd says. Before the settle window a take-over
/// looked the SKUs up at once, found nothing yet and created them again.
#[tokio::test]
async fn creates_that_land_after_their_node_was_killed_are_adopted_by_the_survivors() {
    const PRODUCTS: usize = 6;
    let settle = [("CAMPAIGND_RUNS__SETTLE_MS", "3000")];
    let (mut cluster, token) = Cluster::of_three("cluster-late", &settle).await;
    let client = reqwest::Client::new();
    let mut api = Api {
        client: client.clone(),
        url: cluster.url("node-0"),
        token,
    };
    // WooCommerce's six creates go in one batch: one late write holds them all.
    let stores: Vec<(Sim, u64, &str)> = [
        ("jumpseller", 4, "available"),
        ("mercadolibre", 4, "active"),
        ("shopify", 4, "active"),
        ("woocommerce", 1, "publish"),
    ]
    .into_iter()
    .map(|(system, late, published)| {
        let options = [
            "--late-writes",
            &late.to_string(),
            "--land-after-ms",
            "3000",
        ];
        (sim_with(system, 1_000, 60_000, &options), late, published)
    })
    .collect();
    let mut connections = Vec::new();
    for (s, _, _) in &stores {
        let mut body = s.connection.clone();
        body["max_in_flight"] = json!(4);
        connections.push(api.post("/api/marketplaces", body).await["id"].clone());
    }
    let product_ids = api.upload_products("LAND", PRODUCTS).await;
    let campaign = api.campaign("Late", &connections, &product_ids).await;
    cluster.all_up().await;
    let tracker = api
        .post(&format!("/api/campaigns/{campaign}/publish"), json!({}))
        .await["tracker_id"]
        .as_u64()
        .expect("tracker_id");
    let deadline = Instant::now() + Duration::from_secs(30);
    for (s, late, _) in &stores {
        while state(&client, s).await["late"] != *late {
            assert!(
                Instant::now() < deadline,
                "the late creates never reached {}",
                s.url
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut held: HashMap<String, Vec<i64>> = HashMap::new();
    for (connection, owner) in cluster.leases().await {
        held.entry(owner).or_default().push(connection);
    }
    let (victim, theirs) = held
        .into_iter()
        .max_by_key(|(n, c)| (c.len(), n.clone()))
        .expect("a node holds the run's connections");
    let (proc, _) = cluster.nodes.remove(&victim).expect("the victim runs");
    drop(proc);
    let killed = Instant::now();
    // Ask a survivor from now on.
    let survivor = cluster.nodes.keys().min().cloned().expect("two survive");
    api.url = cluster.url(&survivor);
    let deadline = Instant::now() + Duration::from_secs(90);
    let t = loop {
        let t = api.tracker(tracker).await;
        if t["status"] != "active" {
            break t;
        }
        assert!(Instant::now() < deadline, "the run never ended: {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = killed.elapsed();
    assert_eq!(t["status"], "completed", "{t}");
    for (s, _, published) in &stores {
        landed_once_each(&client, s, PRODUCTS, published).await;
    }
    let local = api.campaign_products(campaign).await;
    assert_eq!(local.len(), connections.len() * PRODUCTS, "{local:?}");
    assert!(
        local.iter().all(|p| p["status"] == "published"),
        "{local:?}"
    );
    eprintln!(
        "cluster late creates: killed {victim} holding connections {theirs:?} while every store \
         held its late creates; the survivors ended the run {} ms later, one product per SKU on \
         {} stores",
        took.as_millis(),
        stores.len()
    );
}

/// Three nodes in one process share a fake clock and look at four due campaigns together;
/// exactly one runs each step and each periodic drift check (the start's transaction checks the
/// schedule's version).
#[tokio::test]
async fn in_a_cluster_exactly_one_node_runs_a_step() {
    let clock = Arc::new(FakeClock::new(T0));
    let store = TestStore::new();
    let url = store.url.clone().expect("a database");
    let a = spawn_app_timed(store, Some(Arc::clone(&clock)), |c| {
        c.cluster.heartbeat_ms = 20;
        c.cluster.node_id = "a".into();
    })
    .await;
    let mut others = Vec::new();
    for name in ["b", "c"] {
        others.push(
            spawn_app_timed(TestStore::on(url.clone()), Some(Arc::clone(&clock)), |c| {
                c.cluster.heartbeat_ms = 20;
                c.cluster.node_id = name.into();
            })
            .await,
        );
    }
    let mut campaigns = Vec::new();
    for i in 0..4 {
        let p = a.products(&format!("K{i}"), 2).await;
        let id = a
            .created(
                "/api/campaigns",
                json!({"name": format!("K{i}"), "marketplace_ids": [a.js],
                       "starts_at": at(T0 + HOUR + i), "drift_every_hours": 3}),
            )
            .await;
        let (status, _) = a
            .post(
                &format!("/api/campaigns/{id}/products"),
                json!({"product_ids": p}),
            )
            .await;
        assert_eq!(status, 200);
        campaigns.push(id);
    }
    clock.advance(2 * HOUR);
    for &c in &campaigns {
        let run = scheduled_run(&a, c, 1).await;
        assert_eq!(run["status"], "completed", "{run}");
        let view = campaign_view(&a, c).await;
        assert_eq!(view["scheduled_steps"].as_array().map(Vec::len), Some(1));
    }
    for &c in &campaigns {
        assert_eq!(
            trackers(&a, c).await.len(),
            1,
            "campaign {c} ran its step once"
        );
    }
    // The periodic drift check, due on every node at once, runs once too.
    clock.advance(2 * HOUR);
    for &c in &campaigns {
        let run = scheduled_run(&a, c, 2).await;
        assert_eq!(
            (&run["action"], &run["status"]),
            (&json!("drift"), &json!("completed")),
            "{run}"
        );
    }
    for &c in &campaigns {
        assert_eq!(trackers(&a, c).await.len(), 2, "campaign {c} checked once");
    }
    assert!(a.jumpseller.stats().duplicate_skus().is_empty());
    drop(others);
}
