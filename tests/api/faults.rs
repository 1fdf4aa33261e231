//! Fault injection against the simulators: 5xx bursts, hangs beyond the client's timeout,
//! connections cut mid-answer, 429 storms, answers whose JSON is cut short, and a marketplace
//! that stays down. Every run ends, errors are readable, nothing is created twice.

use ::marketplaces::sim::Knobs;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

/// Publishes 20 products on Jumpseller (three phases) and WooCommerce (batches), with `faults`
/// applied to both simulators; quick retries, a 1 s client timeout.
async fn publish_through(faults: impl Fn(&mut Knobs)) -> (TestApp, u64, Value) {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.retry_min_ms = 10;
        c.runs.retry_max_ms = 100;
        // Generous: a 30 % error rate on every request of a phase call, on a loaded machine.
        c.runs.retry_attempts = 14;
    })
    .await;
    let p = app.products("F", 20).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.jumpseller.set_knobs(&faults);
    app.woo.set_knobs(&faults);
    let t = app.run(campaign, "publish", json!({})).await;
    (app, campaign, t)
}

/// The run completed, every product is published once on each marketplace.
async fn all_published_once(app: &TestApp, campaign: u64, t: &Value) {
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0);
    assert!(
        app.all_are(campaign, "published").await,
        "{:?}",
        app.statuses(campaign).await
    );
    assert!(
        app.jumpseller.stats().duplicate_skus().is_empty(),
        "Jumpseller duplicates"
    );
    assert!(
        app.woo.stats().duplicate_skus().is_empty(),
        "WooCommerce duplicates"
    );
    let js = app.jumpseller.with_api(|s| s.products.clone());
    assert_eq!(js.len(), 20);
    assert!(js
        .values()
        .all(|p| p.variants.len() == 2 && p.images.len() == 2));
    assert_eq!(app.woo.with_api(|s| s.products.len()), 20);
}

#[tokio::test]
async fn bursts_of_server_errors_are_retried_to_the_end() {
    let (app, campaign, t) = publish_through(|k| k.error_rate = 0.3).await;
    assert!(app.jumpseller.stats().injected_errors > 0);
    all_published_once(&app, campaign, &t).await;
}

#[tokio::test]
async fn calls_hanging_beyond_the_timeout_are_reconciled_not_repeated() {
    let (app, campaign, t) = publish_through(|k| k.hang_rate = 0.08).await;
    assert!(app.jumpseller.stats().hung > 0);
    all_published_once(&app, campaign, &t).await;
}

#[tokio::test]
async fn connections_cut_mid_answer_are_reconciled_not_repeated() {
    let (app, campaign, t) = publish_through(|k| k.reset_rate = 0.15).await;
    assert!(app.jumpseller.stats().resets > 0);
    all_published_once(&app, campaign, &t).await;
}

#[tokio::test]
async fn answers_cut_short_count_as_unknown_outcomes() {
    let (app, campaign, t) = publish_through(|k| k.malformed_rate = 0.15).await;
    assert!(app.jumpseller.stats().malformed > 0);
    assert!(app.woo.stats().malformed > 0);
    all_published_once(&app, campaign, &t).await;
}

#[tokio::test]
async fn a_storm_of_429s_pauses_the_connection_and_nothing_is_lost() {
    let app = spawn_app_with(|c| {
        c.runs.retry_min_ms = 10;
        c.runs.retry_max_ms = 200;
        c.runs.retry_attempts = 20;
    })
    .await;
    // The store allows 5 a second; the connection believes it may send 1000, and no quota
    // header says otherwise (a proxy strips them).
    app.jumpseller.with_api(|s| {
        s.limits.per_second = 5;
        s.limits.per_minute = 6000;
        s.quota_headers = false;
    });
    let p = app.products("S", 6).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.jumpseller.stats().throttled > 0, "the storm happened");
    assert!(app.all_are(campaign, "published").await);
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn a_marketplace_that_stays_down_ends_the_run_with_readable_errors() {
    let app = spawn_app_with(|c| {
        c.runs.retry_min_ms = 5;
        c.runs.retry_max_ms = 20;
        c.runs.retry_attempts = 3;
    })
    .await;
    let p = app.products("D", 5).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.woo.set_knobs(|k| k.error_rate = 1.0);
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0);
    assert_eq!(t["has_failures"], true);
    for (sku, marketplace, status) in app.statuses(campaign).await {
        let expected = if marketplace == app.wc {
            "errored"
        } else {
            "published"
        };
        assert_eq!(status, expected, "{sku} on {marketplace}");
    }
    let products = app.campaign_products(campaign).await;
    let woo_error = products
        .iter()
        .find(|p| p["marketplace_id"] == app.wc)
        .and_then(|p| p["error_message"].as_str())
        .unwrap();
    assert_eq!(
        woo_error,
        "HTTP 500: There has been a critical error on this website. (internal_server_error)"
    );
    assert!(app.woo.with_api(|s| s.products.is_empty()));
}
