//! The crash test, in the style of sled's: simulators run in processes of their own (`campaignd
//! sim`), so their state outlives the service; the service runs as a child process on one data
//! directory and is killed with SIGKILL at a random moment of publish, pause and finish runs,
//! then started again. At the end every product must be in its final status locally and
//! remotely, no SKU created twice, every tracker ended with progress matching the products, and
//! no lock left. CRASH_CYCLES (20), CRASH_PRODUCTS (20) and CRASH_SEED choose the run's size.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::helpers::TestStore;

use crate::procs::{env_or, landed_once_each, service, sim, sim_with, state, token, Api};

#[tokio::test]
async fn killed_at_random_moments_the_service_loses_nothing_and_creates_nothing_twice() {
    let cycles = env_or("CRASH_CYCLES", 20);
    let products = env_or("CRASH_PRODUCTS", 20) as usize;
    let seed = env_or("CRASH_SEED", 42);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let client = reqwest::Client::new();
    // Limits far above the load, and flat (a minute's worth is 60 seconds' worth): a restarted
    // node on PostgreSQL (a new name) counts its killed predecessor's windows as full, which
    // costs a second here, where 100,000 a second against 1,000,000 a minute would assume a
    // minute filled in 10 s and wait 50.
    let jumpseller = sim("jumpseller", 1_000, 60_000);
    let woo = sim("woocommerce", 1_000, 60_000);
    let store = TestStore::new();
    let token = token(&store, "crash");
    let (mut proc, url) = service(&store, &[]);
    let mut api = Api {
        client: client.clone(),
        url,
        token,
    };

    let mut ids = Vec::new();
    for s in [&jumpseller, &woo] {
        let mut body = s.connection.clone();
        body["rate_limit"] = json!({"per_second": 100000, "per_minute": 1000000});
        body["max_in_flight"] = json!(4);
        ids.push(api.post("/api/marketplaces", body).await["id"].clone());
    }
    let product_ids = api.upload_products("K", products).await;
    let campaign = api.campaign("Crash", &ids, &product_ids).await;

    let mut kills = 0;
    let mut longest_resume = Duration::ZERO;
    let mut trackers = Vec::new();
    for cycle in 0..cycles {
        let action = if cycle + 1 == cycles {
            "finish"
        } else if cycle % 2 == 0 {
            "publish"
        } else {
            "pause"
        };
        let started = api
            .post(&format!("/api/campaigns/{campaign}/{action}"), json!({}))
            .await;
        let tracker = started["tracker_id"].as_u64().expect("tracker_id");
        trackers.push(tracker);
        // A random moment of the run (which takes a few hundred milliseconds).
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        let before = api.tracker(tracker).await;
        drop(proc);
        kills += 1;
        let restarted = Instant::now();
        let (next, url) = service(&store, &[]);
        proc = next;
        api.url = url;
        // Until the tracker moves past where it was killed, or ends.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut resumed_at = None;
        loop {
            let t = api.tracker(tracker).await;
            let moved = t["progress"].as_f64() > before["progress"].as_f64();
            if resumed_at.is_none()
                && before["status"] == "active"
                && (moved || t["status"] != "active")
            {
                resumed_at = Some(restarted.elapsed());
            }
            if t["status"] != "active" {
                assert_eq!(t["status"], "completed", "cycle {cycle} ({action}): {t}");
                assert_eq!(t["progress"], 100.0, "{t}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: the run never ended: {t}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(r) = resumed_at {
            longest_resume = longest_resume.max(r);
        }
    }

    // Locally: every product finished on both marketplaces, none lost.
    let local = api.campaign_products(campaign).await;
    assert_eq!(local.len(), 2 * products, "products lost");
    assert!(
        local.iter().all(|p| p["status"] == "finished"),
        "{:?}",
        local
            .iter()
            .map(|p| (&p["sku"], &p["status"]))
            .collect::<Vec<_>>()
    );
    // Remotely: finish deletes on Jumpseller and trashes on WooCommerce; nothing twice.
    let js = state(&client, &jumpseller).await;
    let wc = state(&client, &woo).await;
    assert_eq!(js["duplicate_skus"], json!([]), "Jumpseller duplicates");
    assert_eq!(wc["duplicate_skus"], json!([]), "WooCommerce duplicates");
    assert_eq!(
        js["products"],
        json!([]),
        "every Jumpseller product deleted"
    );
    let woo_products = wc["products"].as_array().unwrap();
    assert_eq!(woo_products.len(), products);
    assert!(woo_products
        .iter()
        .all(|p| p["status"] == "trash" && p["variants"] == 2));
    // Every tracker ended, and the last one counts every product on both marketplaces.
    for t in &trackers {
        let t = api.tracker(*t).await;
        assert_eq!(t["status"], "completed", "{t}");
    }
    let last = api.tracker(*trackers.last().unwrap()).await;
    for c in last["connections"].as_array().unwrap() {
        let phase = &c["phases_status"]["processing"];
        assert_eq!(phase["successful"], products as u64, "{last}");
    }
    // No lock left: the campaign is at rest and takes a new action at once.
    let c = api.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(c["status"], "finished");
    let (status, v) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/ecommerce/campaign/{campaign}/product?action=delete"),
            Some(json!({"product_ids": [product_ids[0]]})),
        )
        .await;
    assert_eq!(status, 200, "no lock was left: {v}");

    eprintln!(
        "crash test: {kills} kill cycles, {} campaign products checked on 2 marketplaces, \
         duplicates 0, products lost 0, longest restart to resumed progress {} ms (seed {seed})",
        2 * products,
        longest_resume.as_millis()
    );
}

/// The trial: a store whose creates take effect 3 s after they arrive; the service is
/// killed while 4 of them are under way and started again at once (on PostgreSQL, as a new
/// node taking the connection over). It must wait for them to land and adopt them: one product
/// per SKU. Before the settle window, the restarted service looked the SKUs up, found nothing
/// yet, and created all 4 again. The campaign's two other products do not wait for them: they
/// are created before the late ones land.
#[tokio::test]
async fn a_create_that_lands_after_a_kill_is_adopted_not_made_twice() {
    let (js, took) = creates_landing_after_a_kill("jumpseller", 4, "available").await;
    let listed = js["products"].as_array().expect("products");
    assert!(listed.iter().all(|p| p["variants"] == 2), "{js}");
    // The store numbers products as it makes them.
    let id = |sku: &str| {
        listed
            .iter()
            .find(|p| p["sku"] == sku)
            .and_then(|p| p["id"].as_u64())
            .expect("listed")
    };
    let first_late = (1..=4).map(|i| id(&format!("LATE-{i}"))).min();
    let last_other = (5..=6).map(|i| id(&format!("LATE-{i}"))).max();
    assert!(
        last_other < first_late,
        "the products that had nothing under way went first: {js}"
    );
    eprintln!(
        "late creates after a kill: 4 creates landing 3 s after they arrived; the restarted \
         service finished the run {} ms after it started, with 6 products for 6 SKUs",
        took.as_millis()
    );
}

/// The trial on `system`: `late` create requests (WooCommerce's six products go in one batch)
/// hang at the store, which carries them out 3 s after they arrived; the service is killed
/// meanwhile and started again at once. The store ends with one product per SKU, each
/// `published` as the store says it (`status`), whichever node took the run over. Answers the
/// store's state and how long after its start the restarted service ended the run.
async fn creates_landing_after_a_kill(
    system: &str,
    late: u32,
    published: &str,
) -> (serde_json::Value, Duration) {
    let client = reqwest::Client::new();
    let store_sim = sim_with(
        system,
        1_000,
        60_000,
        &[
            "--late-writes",
            &late.to_string(),
            "--land-after-ms",
            "3000",
        ],
    );
    let store = TestStore::new();
    let token = token(&store, "late");
    let settle = [("CAMPAIGND_RUNS__SETTLE_MS", "3000")];
    let (proc, url) = service(&store, &settle);
    let mut api = Api {
        client: client.clone(),
        url,
        token,
    };
    // Four at a time: the four late creates take every place, as a busy run's would.
    let mut body = store_sim.connection.clone();
    body["max_in_flight"] = json!(4);
    let connection = api.post("/api/marketplaces", body).await["id"].clone();
    let product_ids = api.upload_products("LATE", 6).await;
    let campaign = api.campaign("Late", &[connection], &product_ids).await;
    let started = api
        .post(&format!("/api/campaigns/{campaign}/publish"), json!({}))
        .await;
    let tracker = started["tracker_id"].as_u64().expect("tracker_id");
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&client, &store_sim).await["late"] != late {
        assert!(
            Instant::now() < deadline,
            "{system}: the creates never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(proc);
    let restarted = Instant::now();
    let (_proc, url) = service(&store, &settle);
    api.url = url;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = api.tracker(tracker).await;
        if t["status"] != "active" {
            assert_eq!(t["status"], "completed", "{system}: {t}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{system}: the run never ended: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = restarted.elapsed();
    let remote = landed_once_each(&client, &store_sim, 6, published).await;
    let local = api.campaign_products(campaign).await;
    assert!(
        local.iter().all(|p| p["status"] == "published"),
        "{system}: {local:?}"
    );
    (remote, took)
}

#[tokio::test]
async fn mercadolibre_creates_that_land_after_a_kill_are_adopted_not_made_twice() {
    creates_landing_after_a_kill("mercadolibre", 4, "active").await;
}

#[tokio::test]
async fn shopify_creates_that_land_after_a_kill_are_adopted_not_made_twice() {
    creates_landing_after_a_kill("shopify", 4, "active").await;
}

#[tokio::test]
async fn woocommerce_creates_that_land_after_a_kill_are_adopted_not_made_twice() {
    creates_landing_after_a_kill("woocommerce", 1, "publish").await;
}
