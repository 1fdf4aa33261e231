//! Requests that land late: the simulated store carries a write out two seconds after it
//! arrives, whether its client still waits or not (as a Rails or PHP store finishes a request
//! whose connection dropped). campaignd gives up on an answer after one second, so every such
//! write is of unknown outcome when it gives up. On each marketplace: the creates that land after
//! campaignd gave up are adopted, not made again, and a pause whose writes land late cannot
//! overtake the publish that follows it. A crash while creates hang (the service killed, started
//! again at once) is `crash::a_create_that_lands_after_a_kill_is_adopted_not_made_twice`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{sample, spawn_app_with, On};

/// When the simulator carries a late write out, after its arrival.
const LAND_AFTER: Duration = Duration::from_secs(2);

/// The simulator's counts once every late write has landed.
async fn landed(app: &crate::helpers::TestApp, on: On) -> ::marketplaces::sim::SimStats {
    let deadline = Instant::now() + LAND_AFTER * 5;
    loop {
        let stats = on.stats(app);
        if stats.landing == 0 {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{on:?}: late writes never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `user_products`: the MercadoLibre seller lists each variant as an item of its own.
async fn late_writes_leave_one_product_per_sku_and_the_statuses_campaignd_says(
    on: On,
    user_products: bool,
) {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.settle_ms = 2_000;
    })
    .await;
    app.ml.with_api(|s| s.user_products = user_products);
    let items = if user_products { 2 } else { 1 };
    let connection = on.connect(&app, "A slow store").await;
    let products = app.products("LATE", 3).await;
    let campaign = app.campaign(&[connection], &products).await;
    // The publish's first writes are its creates (WooCommerce's are one batch).
    let first = if matches!(on, On::Woo) { 1 } else { 3 };
    let late = |app: &crate::helpers::TestApp| {
        on.knobs(app, |k| {
            k.late_writes = first;
            k.land_after = LAND_AFTER;
        })
    };

    late(&app);
    let started = Instant::now();
    let t = app.run(campaign, "publish", json!({})).await;
    let publish_took = started.elapsed();
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    let labels = format!(r#"{{system="{}",connection="{connection}"}}"#, on.system());
    let creates_waited = sample(
        &app.metrics().await,
        &format!("campaignd_settle_waits_total{labels}"),
    )
    .unwrap_or(0.0);
    // WooCommerce refuses a second product of one SKU whenever it lands, and Shopify's creates
    // upsert by a custom id: their creates are sent again at once. The others wait for the
    // window.
    match on {
        On::Woo | On::Shopify => assert_eq!(creates_waited, 0.0, "{on:?}"),
        _ => assert!(creates_waited >= first as f64, "{on:?}: {creates_waited}"),
    }
    let stats = landed(&app, on).await;
    assert_eq!(
        stats.late, first as u64,
        "{on:?}: the creates were made late"
    );
    assert_eq!(stats.duplicate_skus(), Vec::<String>::new(), "{on:?}");
    let (listed, _) = on.store(&app);
    assert_eq!(listed, 3 * items, "{on:?}: one product per SKU");
    assert!(app.all_are(campaign, "published").await, "{on:?}");
    let published = on.statuses(&app);

    // A pause whose writes land late, and a publish right after it.
    late(&app);
    let t = app.run(campaign, "pause", json!({})).await;
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    let paused = on.statuses(&app);
    assert_ne!(paused, published, "{on:?}");
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    landed(&app, on).await;
    assert_eq!(
        on.statuses(&app),
        published,
        "{on:?}: the pause's late writes landed before the publish, not after it"
    );
    assert!(app.all_are(campaign, "published").await, "{on:?}");
    assert_eq!(on.stats(&app).duplicate_skus(), Vec::<String>::new());

    let metrics = app.metrics().await;
    let waits = sample(&metrics, &format!("campaignd_settle_waits_total{labels}"));
    let waited = sample(
        &metrics,
        &format!("campaignd_settle_wait_seconds_total{labels}"),
    );
    assert!(
        waits.is_some_and(|n| n >= first as f64),
        "{on:?}: {metrics}"
    );
    eprintln!(
        "late writes on {on:?}: the publish whose {first} create request(s) landed {} s late took \
         {:.1} s; {} write(s) waited {:.1} s in all for earlier ones to settle",
        LAND_AFTER.as_secs(),
        publish_took.as_secs_f64(),
        waits.unwrap_or(0.0),
        waited.unwrap_or(0.0)
    );
}

#[tokio::test]
async fn jumpseller_creates_and_updates_that_land_late_are_waited_out() {
    late_writes_leave_one_product_per_sku_and_the_statuses_campaignd_says(On::Jumpseller, false)
        .await;
}

#[tokio::test]
async fn woocommerce_creates_and_updates_that_land_late_are_waited_out() {
    late_writes_leave_one_product_per_sku_and_the_statuses_campaignd_says(On::Woo, false).await;
}

#[tokio::test]
async fn mercadolibre_creates_and_updates_that_land_late_are_waited_out() {
    late_writes_leave_one_product_per_sku_and_the_statuses_campaignd_says(On::Ml, false).await;
}

#[tokio::test]
async fn shopify_creates_and_updates_that_land_late_are_waited_out() {
    late_writes_leave_one_product_per_sku_and_the_statuses_campaignd_says(On::Shopify, false).await;
}

#[tokio::test]
async fn mercadolibre_user_products_creates_and_updates_that_land_late_are_waited_out() {
    late_writes_leave_one_product_per_sku_and_the_statuses_campaignd_says(On::Ml, true).await;
}

/// A product whose create went unanswered and whose retries ran out ends errored, marked; the
/// dry run of its retry says that nothing is sent to it until its window has passed.
#[tokio::test]
async fn a_dry_run_says_when_a_product_with_an_unsettled_request_will_be_written_again() {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.retry_attempts = 1;
        c.runs.settle_ms = 60_000;
    })
    .await;
    let products = app.products("UNSETTLED", 1).await;
    let campaign = app.campaign(&[app.js], &products).await;
    On::Jumpseller.knobs(&app, |k| {
        k.late_writes = 1;
        k.land_after = LAND_AFTER;
    });
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["has_failures"], true, "{t}");
    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/retry"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let row = &plan["marketplaces"][0]["plan"][0];
    let reason = row["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("may still be carried out") && reason.contains("s from now"),
        "{row}"
    );
}

/// A product whose every attempt went unanswered is read once its last request can no longer
/// land, and ends as the store then shows: creates that landed after the last attempt are
/// adopted (one item per SKU), and a pause that landed late leaves the products paused, not
/// errored. With the read left out, every product ended errored.
#[tokio::test]
async fn a_product_unanswered_to_the_end_is_read_once_settled_and_ends_as_the_store_shows() {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.retry_attempts = 1;
        c.runs.settle_ms = 2_000;
    })
    .await;
    let on = On::Ml;
    let connection = on.connect(&app, "A slow store").await;
    let products = app.products("VERIFY", 2).await;
    let campaign = app.campaign(&[connection], &products).await;
    let late = |n: u32| {
        on.knobs(&app, |k| {
            k.late_writes = n;
            k.land_after = LAND_AFTER;
        })
    };

    late(2);
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["has_failures"], false, "{t}");
    assert!(app.all_are(campaign, "published").await);
    let stats = landed(&app, on).await;
    assert_eq!(stats.late, 2);
    assert_eq!(stats.duplicate_skus(), Vec::<String>::new());
    assert_eq!(on.store(&app).0, 2, "one item per SKU");

    late(2);
    let t = app.run(campaign, "pause", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.all_are(campaign, "paused").await);
    landed(&app, on).await;
    assert_eq!(on.statuses(&app), ["paused", "paused"]);
}

/// A store slower than the settle window: creates time out (1 s), the window (200 ms) passes
/// before they land (2 s), the SKU looks unlisted, and each product is created again; then the
/// first creates land, a copy each. A drift check reports the copies of the products whose
/// creates went unanswered, a reconcile deletes them (each copy campaignd made, by the
/// marketplace's own delete), and the store is left with one product per SKU, each as
/// campaignd says. Without the record of unanswered creates nothing looks for them.
async fn copies_made_after_the_window_are_reported_and_removed(on: On, user_products: bool) {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.settle_ms = 200;
    })
    .await;
    app.ml.with_api(|s| s.user_products = user_products);
    // A User Products seller lists each of a product's two variants as an item.
    let items = if user_products { 2 } else { 1 };
    // Shopify's GraphQL creates upsert by a custom id and make no copy (see
    // `shopify_creates_sent_again_upsert_by_their_custom_id_and_make_no_copy`); its REST API,
    // which has none, can.
    let name = "A store slower than the window";
    let connection = match on {
        On::Shopify => {
            let rest = json!({"name": name, "settings": {"api": "rest"}});
            app.connect_shopify(rest).await
        }
        _ => on.connect(&app, name).await,
    };
    let products = app.products("COPY", 3).await;
    let campaign = app.campaign(&[connection], &products).await;
    on.knobs(&app, |k| {
        k.late_writes = 3;
        k.land_after = LAND_AFTER;
    });
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    landed(&app, on).await;
    let (listed, _) = on.store(&app);
    assert_eq!(
        listed,
        3 * items + 3,
        "{on:?}: three made twice, the window being too short"
    );

    let report = app.drift(campaign).await;
    let copies: Vec<&serde_json::Value> = report["data"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row["differences"].as_array().into_iter().flatten())
        .filter(|d| d["kind"] == "copies")
        .collect();
    assert_eq!(copies.len(), 3, "{on:?}: {report}");
    assert!(
        copies
            .iter()
            .all(|d| d["ids"].as_array().map(Vec::len) == Some(1)),
        "{report}"
    );

    let t = app.run(campaign, "reconcile", json!({})).await;
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    let (listed, _) = on.store(&app);
    assert_eq!(listed, 3 * items, "{on:?}: one product per SKU");
    assert!(app.all_are(campaign, "published").await, "{on:?}");
    // (MercadoLibre keeps a deleted item, as "deleted".)
    let statuses = on.statuses(&app);
    let published: Vec<&String> = statuses.iter().filter(|s| *s != "deleted").collect();
    assert_eq!(published.len(), 3 * items, "{statuses:?}");
    assert!(published.iter().all(|s| *s == published[0]), "{statuses:?}");
    let after = app.drift(campaign).await;
    assert_eq!(after["differing"], 0, "{on:?}: {after}");
}

#[tokio::test]
async fn jumpseller_copies_made_after_the_window_are_reported_and_removed() {
    copies_made_after_the_window_are_reported_and_removed(On::Jumpseller, false).await;
}

#[tokio::test]
async fn mercadolibre_copies_made_after_the_window_are_reported_and_removed() {
    copies_made_after_the_window_are_reported_and_removed(On::Ml, false).await;
}

/// Shopify's GraphQL creates name the product by a custom id (its SKU, a metafield of type
/// `id`, which Shopify keeps unique): a create that timed out and is sent again while the
/// first is still being made upserts, so the store ends with one product per SKU even with a
/// settle window shorter than the store, and no create waits for one.
#[tokio::test]
async fn shopify_creates_sent_again_upsert_by_their_custom_id_and_make_no_copy() {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.settle_ms = 200;
    })
    .await;
    let connection = On::Shopify.connect(&app, "A slow shop").await;
    let products = app.products("CID", 3).await;
    let campaign = app.campaign(&[connection], &products).await;
    On::Shopify.knobs(&app, |k| {
        k.late_writes = 3;
        k.land_after = LAND_AFTER;
    });
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    landed(&app, On::Shopify).await;
    let (listed, _) = On::Shopify.store(&app);
    assert_eq!(listed, 3, "one product per SKU");
    let ids: Vec<Vec<(String, String, String)>> = app
        .shopify
        .with_api(|s| s.products.values().map(|p| p.metafields.clone()).collect());
    assert!(
        ids.iter()
            .all(|m| m.len() == 1 && m[0].0 == "$app" && m[0].1 == "sku"),
        "each product carries its custom id: {ids:?}"
    );
    assert!(app.all_are(campaign, "published").await);
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");
    assert_eq!(app.shopify.stats().refused, Vec::<String>::new());
}

#[tokio::test]
async fn mercadolibre_user_products_copies_made_after_the_window_are_reported_and_removed() {
    copies_made_after_the_window_are_reported_and_removed(On::Ml, true).await;
}

#[tokio::test]
async fn shopify_copies_made_after_the_window_are_reported_and_removed() {
    copies_made_after_the_window_are_reported_and_removed(On::Shopify, false).await;
}
