//! The data directory is the truth: a restart keeps every campaign, product status and tracker.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_restart_on_the_same_data_keeps_campaigns_statuses_and_trackers() {
    let mut app = spawn_app().await;
    let p = app.products("K", 3).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.jumpseller.set_knobs(|k| {
        k.reject_skus.insert("K-3".into(), "refused".into());
    });
    app.run(campaign, "publish", json!({})).await;
    app.run(campaign, "pause", json!({})).await;

    let before_products = app.campaign_products(campaign).await;
    let (_, before_campaign) = app.get(&format!("/api/campaigns/{campaign}")).await;
    let (_, before_trackers) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    let (_, before_connections) = app.get("/api/marketplaces").await;

    app.restart();

    assert_eq!(app.campaign_products(campaign).await, before_products);
    assert_eq!(
        app.get(&format!("/api/campaigns/{campaign}")).await.1,
        before_campaign
    );
    assert_eq!(
        app.get(&format!("/api/campaigns/{campaign}/trackers"))
            .await
            .1,
        before_trackers
    );
    assert_eq!(app.get("/api/marketplaces").await.1, before_connections);
    assert_eq!(before_trackers["data"].as_array().unwrap().len(), 2);
    assert_eq!(before_campaign["status"], "paused");

    // The restarted service carries on from there: publishing again finds the paused products.
    app.jumpseller.set_knobs(|k| k.reject_skus.clear());
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed");
    assert_eq!(t["metadata"]["total_products"], 6);
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn an_action_cut_off_by_a_restart_resumes_under_its_tracker_and_creates_nothing_twice() {
    let mut app = crate::helpers::spawn_app().await;
    // Slow enough that the run is cut off midway: 6 products, 5 calls each, 2 at a time.
    app.jumpseller
        .set_knobs(|k| k.latency = std::time::Duration::from_millis(150));
    let store = app
        .jumpseller_connection(
            "Slow store",
            "js-token",
            json!({"rate_limit": {"per_second": 1000, "per_minute": 60000}, "max_in_flight": 2}),
        )
        .await;
    let p = app.products("M", 6).await;
    let campaign = app.campaign(&[store], &p).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.tracker(tracker).await["progress"]
        .as_f64()
        .unwrap_or(0.0)
        == 0.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never progressed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    app.restart();

    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    let t = app.wait(tracker).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0);
    assert!(
        t["metadata"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("resumed "))),
        "{t}"
    );
    assert!(
        c["running_tracker_id"] == tracker || c["status"] == "published",
        "{c}"
    );
    let (_, trackers) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    assert_eq!(
        trackers["data"].as_array().unwrap().len(),
        1,
        "the same tracker, not a new one"
    );
    assert!(app.all_are(campaign, "published").await);
    assert_eq!(
        app.jumpseller.stats().duplicate_skus(),
        Vec::<String>::new()
    );
    app.jumpseller.with_api(|s| {
        assert_eq!(s.products.len(), 6);
        for p in s.products.values() {
            assert_eq!((p.variants.len(), p.images.len()), (2, 2), "{p:?}");
        }
    });
}

#[tokio::test]
async fn a_stop_lets_the_calls_in_flight_finish_and_the_next_start_resumes_the_rest() {
    use std::time::{Duration, Instant};
    let mut app = crate::helpers::spawn_app().await;
    let store = app
        .jumpseller_connection(
            "Held store",
            "js-token",
            json!({"rate_limit": {"per_second": 1000, "per_minute": 60000}, "max_in_flight": 2}),
        )
        .await;
    // The connection's first request goes alone (its answer's quota headers come first): a
    // small run has it answered, so that two calls are then in flight at once.
    let warm = app.products("W", 1).await;
    let warm_up = app.campaign(&[store], &warm).await;
    assert_eq!(
        app.run(warm_up, "publish", json!({})).await["status"],
        "completed"
    );
    let p = app.products("G", 8).await;
    let campaign = app.campaign(&[store], &p).await;
    // Before its creates the run reads what the store lists (its count, then its one page,
    // the warm-up's product): that answer is slowed down so the store can be held behind it,
    // for the creates.
    app.jumpseller
        .set_knobs(|k| k.latency = Duration::from_millis(300));
    let listed_before = listings(&app);
    let tracker = app.action(campaign, "publish", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while listings(&app) == listed_before {
        assert!(
            Instant::now() < deadline,
            "the run never read the store's listing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.jumpseller.hold();
    app.jumpseller.set_knobs(|k| k.latency = Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.jumpseller.waiting() < 2 {
        assert!(
            Instant::now() < deadline,
            "the calls never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answered_before = app.jumpseller.stats().requests;

    // The stop waits for the two calls held at the store...
    let stopping = app.stop_in_background();
    let watch_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < watch_until {
        assert!(
            !stopping.is_finished(),
            "the stop did not wait for the calls in flight"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...which finish once the store answers; then the service stops, and nothing more is sent.
    app.jumpseller.release();
    stopping.join().expect("the stop completes");
    let answered = app.jumpseller.stats().requests;
    assert_eq!(
        answered,
        answered_before + 2,
        "both calls in flight were answered, no new one sent"
    );

    app.start_again();
    let t = app.wait(tracker).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0);
    let events: Vec<String> = t["metadata"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(
        events.iter().any(|e| e.starts_with("suspended")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("resumed")),
        "{events:?}"
    );
    assert!(app.all_are(campaign, "published").await);
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn a_stop_sends_nothing_that_was_still_waiting_for_its_turn() {
    use std::time::{Duration, Instant};
    let mut app = crate::helpers::spawn_app().await;
    // One request a second, four products in flight: three always wait for their turn.
    let store = app
        .jumpseller_connection(
            "Slow store",
            "js-token",
            json!({"rate_limit": {"per_second": 1, "per_minute": 60}, "max_in_flight": 4}),
        )
        .await;
    let p = app.products("Q", 6).await;
    let campaign = app.campaign(&[store], &p).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.jumpseller.stats().requests < 2 {
        assert!(Instant::now() < deadline, "the run never started sending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at_stop = app.jumpseller.stats().requests;
    app.stop_in_background().join().expect("the stop completes");
    let after = app.jumpseller.stats().requests;
    assert!(
        after <= at_stop + 1,
        "only a call already sent may finish: {at_stop} before the stop, {after} after"
    );
    // The run is left to resume (the test above follows a resume to its end).
    app.start_again();
    let t = app.tracker(tracker).await;
    assert_eq!(t["status"], "active", "{t}");
    assert!(t["metadata"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().is_some_and(|e| e.starts_with("suspended"))));
}

/// How many times the Jumpseller store was asked for a page of its listing.
fn listings(app: &crate::helpers::TestApp) -> usize {
    app.jumpseller
        .stats()
        .log
        .iter()
        .filter(|l| l.method == "GET" && l.path.ends_with("/products.json"))
        .count()
}
