//! MercadoLibre, Shopify and WooCommerce end to end: each action leaves the right remote state in
//! the simulator and the right local status; lost answers, failures and a restart create
//! nothing twice; each marketplace's error shape reaches the product's error_message readably.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// The campaign's products' error messages, by SKU.
async fn errors(app: &TestApp, campaign: u64) -> Vec<(String, String)> {
    let mut out: Vec<_> = app
        .campaign_products(campaign)
        .await
        .iter()
        .filter(|p| p["status"] == "errored")
        .map(|p| {
            (
                p["sku"].as_str().unwrap_or("").to_string(),
                p["error_message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn completed(app: &TestApp, campaign: u64, action: &str) {
    let t = app.run(campaign, action, json!({})).await;
    assert_eq!(t["status"], "completed", "{action}: {t}");
}

/// Starts an action, restarts the service once it made progress, and waits for the resumed
/// run to end under the same tracker.
async fn cut_off_by_a_restart(app: &mut TestApp, campaign: u64, action: &str) -> Value {
    let tracker = app.action(campaign, action, json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.tracker(tracker).await["progress"]
        .as_f64()
        .unwrap_or(0.0)
        == 0.0
    {
        assert!(Instant::now() < deadline, "the run never progressed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.restart();
    app.wait(tracker).await
}

fn skus(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn mercadolibre_items_follow_publish_pause_publish_finish_and_delete() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("ML", 3).await;
    let campaign = app.campaign(&[ml], &p).await;
    let item = |sku: &str| {
        app.ml
            .with_api(|s| s.item_by_sku(sku).cloned())
            .unwrap_or_else(|| panic!("{sku} has no item"))
    };

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    for sku in skus("ML", 3) {
        let i = item(&sku);
        assert_eq!(
            (i.status.as_str(), i.currency_id.as_str()),
            ("active", "CLP")
        );
        assert_eq!(i.category_id, "MLC3530");
        assert_eq!(i.pictures.len(), 2);
        let variation_skus: Vec<_> = i.variations.iter().map(|v| v.seller_sku.clone()).collect();
        assert_eq!(variation_skus, vec![format!("{sku}-S"), format!("{sku}-M")]);
    }

    completed(&app, campaign, "pause").await;
    assert!(app.all_are(campaign, "paused").await);
    assert!(skus("ML", 3).iter().all(|s| item(s).status == "paused"));

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    assert!(skus("ML", 3).iter().all(|s| item(s).status == "active"));

    completed(&app, campaign, "finish").await;
    assert!(app.all_are(campaign, "finished").await);
    assert!(skus("ML", 3).iter().all(|s| item(s).status == "closed"));

    let t = app.delete_products(campaign, &p).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.campaign_products(campaign).await.is_empty());
    let items = app.ml.with_api(|s| s.items.clone());
    assert_eq!(items.len(), 3, "delete keeps closed items, marked deleted");
    assert!(items.values().all(|i| i.deleted && i.status == "closed"));
    assert!(app.ml.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn an_expired_mercadolibre_token_is_refreshed_once_and_the_new_tokens_are_stored() {
    let mut app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({"max_in_flight": 4})).await;
    let p = app.products("TK", 8).await;
    let campaign = app.campaign(&[ml], &p).await;
    app.ml.with_api(|s| s.expire_tokens());

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    // Four products in flight all met the expired token; one refresh served them all (the
    // refresh token is single-use, so a second refresh would have failed).
    assert_eq!(app.ml.with_api(|s| s.refreshes), 1);

    // The new tokens were saved: after a restart, with the access token expired again, the
    // stored refresh token (not the spent one given at creation) gets the next one.
    app.restart();
    app.ml.with_api(|s| s.expire_tokens());
    completed(&app, campaign, "pause").await;
    assert!(app.all_are(campaign, "paused").await);
    assert_eq!(app.ml.with_api(|s| s.refreshes), 2);
}

#[tokio::test]
async fn mercadolibre_refusals_and_closed_items_reach_the_product_readably() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("MR", 3).await;
    let long = json!([{"sku": "MR-LONG", "name": "A very long product title that MercadoLibre will not accept at all", "price": 10}]);
    let (status, v) = app.post("/api/products", long).await;
    assert_eq!(status, 200, "{v}");
    let long_id = v["products"][0]["id"].as_u64().expect("id");
    let mut all = p.clone();
    all.push(long_id);
    let campaign = app.campaign(&[ml], &all).await;
    app.ml.set_knobs(|k| {
        k.reject_skus
            .insert("MR-2".into(), "The category requires a brand".into());
    });

    completed(&app, campaign, "publish").await;
    assert_eq!(
        errors(&app, campaign).await,
        vec![
            (
                "MR-2".to_string(),
                "Validation error: The category requires a brand (item.attributes.invalid)"
                    .to_string()
            ),
            (
                "MR-LONG".to_string(),
                "Validation error: The title must have between 1 and 60 characters. (item.title.length.invalid)"
                    .to_string()
            ),
        ]
    );
    // Refusals of products are theirs: the connection itself is healthy.
    let (_, status) = app.get("/api/status").await;
    let health = status["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["marketplace_id"] == ml)
        .cloned()
        .expect("the connection's health");
    assert!(health["last_error"].is_null(), "{health}");

    // The seller closes MR-1 on MercadoLibre itself: closed is final, so pausing it is refused
    // with MercadoLibre's reason, and the other product pauses.
    app.ml.with_api(|s| {
        let id = s.item_by_sku("MR-1").expect("MR-1 listed").id.clone();
        s.items.get_mut(&id).expect("item").status = "closed".to_string();
    });
    app.ml.set_knobs(|k| k.reject_skus.clear());
    let t = app.run(campaign, "pause", json!({})).await;
    assert_eq!(t["status"], "completed");
    let refused = errors(&app, campaign).await;
    let mr1 = refused
        .iter()
        .find(|(s, _)| s == "MR-1")
        .expect("MR-1 errored");
    assert_eq!(
        mr1.1,
        "Item in status closed is not editable: A closed item cannot be modified or reactivated; relist it as a new item. (item.status.not_modifiable)"
    );
    let statuses = app.statuses(campaign).await;
    assert!(statuses.contains(&("MR-3".to_string(), ml, "paused".to_string())));

    // Publishing the errored MR-1 again is refused by campaignd itself, which now knows the item
    // is closed: nothing is sent for it.
    let sent_before = app.ml.stats().requests;
    let (status, v) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/publish"),
            json!({"product_ids": [p[0]]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    app.wait(v["tracker_id"].as_u64().expect("tracker")).await;
    let refused = errors(&app, campaign).await;
    let mr1 = refused
        .iter()
        .find(|(s, _)| s == "MR-1")
        .expect("MR-1 errored");
    assert!(
        mr1.1
            .contains("is closed, and MercadoLibre never reopens a closed item"),
        "{}",
        mr1.1
    );
    assert_eq!(app.ml.stats().requests, sent_before);
}

#[tokio::test]
async fn a_finished_mercadolibre_product_is_not_published_again() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("MF", 2).await;
    let campaign = app.campaign(&[ml], &p).await;
    completed(&app, campaign, "publish").await;
    completed(&app, campaign, "finish").await;
    let sent = app.ml.stats().requests;
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/publish"), json!({}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
    assert_eq!(v["message"], "cannot publish a campaign that is finished");
    let (status, v) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/publish"),
            json!({"product_ids": p}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
    assert_eq!(
        app.ml.stats().requests,
        sent,
        "nothing reached MercadoLibre"
    );
    assert!(app.all_are(campaign, "finished").await);
}

#[tokio::test]
async fn mercadolibre_lost_answers_failures_and_a_restart_create_no_duplicate() {
    let mut app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({"max_in_flight": 2})).await;
    let p = app.products("MD", 10).await;
    let campaign = app.campaign(&[ml], &p).await;
    app.ml.set_knobs(|k| {
        k.latency = Duration::from_millis(60);
        k.hang_next = 2;
        k.error_rate = 0.05;
    });
    let t = cut_off_by_a_restart(&mut app, campaign, "publish").await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.all_are(campaign, "published").await);
    let stats = app.ml.stats();
    assert!(stats.hung >= 2);
    assert!(
        stats.duplicate_skus().is_empty(),
        "{:?}",
        stats.duplicate_skus()
    );
    assert_eq!(app.ml.with_api(|s| s.items.len()), 10);
}

#[tokio::test]
async fn shopify_products_follow_publish_pause_publish_finish_and_delete() {
    let app = spawn_app().await;
    // A version out of support is refused with the reason: Shopify would answer it as another.
    let (status, refused) = app
        .post(
            "/api/marketplaces",
            json!({"system": "shopify", "name": "Old", "base_url": app.shopify.url(),
                   "credentials": {"access_token": "shpat_test"},
                   "settings": {"api_version": "2024-10"}}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("2024-10 is out of support")),
        "{refused}"
    );
    let shop = app
        .connect_shopify(json!({"settings": {"api_version": "2026-07"}}))
        .await;
    let p = app.products("SH", 3).await;
    let campaign = app.campaign(&[shop], &p).await;
    let product = |sku: &str| {
        app.shopify
            .with_api(|s| s.product_by_sku(&format!("{sku}-S")).cloned())
            .unwrap_or_else(|| panic!("{sku} is not in the shop"))
    };

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    for sku in skus("SH", 3) {
        let sp = product(&sku);
        assert_eq!(sp.status, "active");
        let variants: Vec<_> = sp
            .variants
            .iter()
            .map(|v| (v.sku.clone(), v.price.clone(), v.option1.clone()))
            .collect();
        assert_eq!(
            variants,
            vec![
                (
                    format!("{sku}-S"),
                    "1000.00".to_string(),
                    Some("S".to_string())
                ),
                (
                    format!("{sku}-M"),
                    "1000.00".to_string(),
                    Some("M".to_string())
                ),
            ]
        );
        assert_eq!(sp.images.len(), 2);
        // Published means visible: on the Online Store, each variant's stock tracked there.
        assert_eq!(sp.published_on.iter().collect::<Vec<_>>(), [&1], "{sku}");
        let stock: Vec<_> = sp.variants.iter().map(|v| v.inventory_quantity()).collect();
        assert_eq!(stock, [Some(1), Some(2)], "{sku}");
    }
    // Every request named the connection's API version.
    assert!(app
        .shopify
        .stats()
        .log
        .iter()
        .all(|r| r.path.starts_with("/admin/api/2026-07/")));
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");

    // Taken off the Online Store behind campaignd's back: the check says so, and a repair
    // puts it back.
    let sh1 = product("SH-1").id;
    app.shopify.with_api(|s| {
        if let Some(p) = s.products.get_mut(&sh1) {
            p.published_on.clear();
        }
    });
    let report = app.drift(campaign).await;
    let found: Vec<_> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["sku"].clone(), row["differences"].clone()))
        .collect();
    assert_eq!(
        found,
        [(
            json!("SH-1"),
            json!([{"kind": "status", "expected": "ACTIVE", "found": "ACTIVE, not on Online Store"}])
        )],
        "{report}"
    );
    let (status, repair) = app
        .post(&format!("/api/campaigns/{campaign}/reconcile"), json!({}))
        .await;
    assert_eq!(status, 200, "{repair}");
    let done = app.wait(repair["tracker_id"].as_u64().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(product("SH-1").published_on.len(), 1);

    completed(&app, campaign, "pause").await;
    assert!(skus("SH", 3).iter().all(|s| product(s).status == "draft"));
    assert!(app.all_are(campaign, "paused").await);
    completed(&app, campaign, "publish").await;
    assert!(skus("SH", 3).iter().all(|s| product(s).status == "active"));
    completed(&app, campaign, "finish").await;
    assert!(skus("SH", 3)
        .iter()
        .all(|s| product(s).status == "archived"));
    assert!(app.all_are(campaign, "finished").await);
    let t = app.delete_products(campaign, &p).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.shopify.with_api(|s| s.products.is_empty()));
    assert!(app.campaign_products(campaign).await.is_empty());
}

#[tokio::test]
async fn shopify_lost_answers_and_a_restart_are_reconciled_by_sku_and_errors_read_well() {
    lost_answers_on_shopify("graphql").await;
    lost_answers_on_shopify("rest").await;
}

/// Lost answers, 5xx, a refused SKU and a restart on a Shopify connection speaking `api`.
async fn lost_answers_on_shopify(api: &str) {
    let mut app = spawn_app().await;
    let shop = app
        .connect_shopify(json!({"max_in_flight": 2, "settings": {"api": api}}))
        .await;
    let p = app.products("SD", 10).await;
    let campaign = app.campaign(&[shop], &p).await;
    app.shopify.set_knobs(|k| {
        k.latency = Duration::from_millis(60);
        k.hang_next = 2;
        k.error_rate = 0.05;
        k.reject_skus
            .insert("SD-4-M".into(), "must be unique in the shop".into());
    });
    let t = cut_off_by_a_restart(&mut app, campaign, "publish").await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(
        errors(&app, campaign).await,
        vec![(
            "SD-4".to_string(),
            "variants must be unique in the shop".to_string()
        )]
    );
    let stats = app.shopify.stats();
    assert!(stats.hung >= 2);
    assert!(
        stats.duplicate_skus().is_empty(),
        "{:?}",
        stats.duplicate_skus()
    );
    assert_eq!(app.shopify.with_api(|s| s.products.len()), 9);
    // The lost creates were found through GraphQL (REST cannot search by SKU), and on REST
    // every product went by REST.
    let by_sku = |r: &&::marketplaces::sim::Logged| {
        r.body
            .as_ref()
            .and_then(|b| b["query"].as_str())
            .is_some_and(|q| q.contains("productVariants"))
    };
    assert!(stats.log.iter().any(|r| by_sku(&r)), "{api}");
    let rest_creates = stats
        .log
        .iter()
        .filter(|r| r.path.ends_with("/products.json"))
        .count();
    assert_eq!(
        rest_creates > 0,
        api == "rest",
        "{api}: {rest_creates} REST creates"
    );
}

/// How many GraphQL requests to the shop ran `operation`.
fn graphql_calls(app: &TestApp, operation: &str) -> usize {
    app.shopify
        .stats()
        .log
        .iter()
        .filter(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["query"].as_str())
                .is_some_and(|q| q.starts_with(&format!("mutation {operation}")))
        })
        .count()
}

#[tokio::test]
async fn shopify_on_graphql_waits_for_points_and_does_each_action_in_one_mutation() {
    let app = spawn_app().await;
    // A small bucket: 40 points, 400 back a second; a product of two variants costs 11 to set.
    app.shopify
        .with_api(|s| s.cost = ::marketplaces::sim::shopify::CostBucket::new(40.0, 400.0));
    let shop = app.connect_shopify(json!({"max_in_flight": 20})).await;
    let p = app.products("SG", 30).await;
    let campaign = app.campaign(&[shop], &p).await;
    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let stats = app.shopify.stats();
    assert_eq!(
        stats.throttled, 0,
        "it waited for points instead of meeting THROTTLED"
    );
    assert_eq!(
        graphql_calls(&app, "productSet"),
        30,
        "one productSet a product"
    );
    assert!(stats.log.iter().all(|r| r.path.ends_with("/graphql.json")));
    assert!(stats.duplicate_skus().is_empty());
    let product = app
        .shopify
        .with_api(|s| s.product_by_sku("SG-7-M").cloned())
        .expect("published");
    assert_eq!(
        (
            product.variants.len(),
            product.images.len(),
            product.status.as_str()
        ),
        (2, 2, "active")
    );

    completed(&app, campaign, "pause").await;
    assert_eq!(
        graphql_calls(&app, "productUpdate"),
        30,
        "throttled: {}, injected: {}, hung: {}",
        app.shopify.stats().throttled,
        app.shopify.stats().injected_errors,
        app.shopify.stats().hung
    );
    let statuses = || {
        app.shopify.with_api(|s| {
            s.products
                .values()
                .map(|p| p.status.clone())
                .collect::<std::collections::BTreeSet<_>>()
        })
    };
    assert_eq!(statuses(), ["draft".to_string()].into());
    completed(&app, campaign, "republish").await;
    assert_eq!(
        graphql_calls(&app, "productSet"),
        60,
        "a republish sets each product again"
    );
    assert_eq!(
        app.shopify.with_api(|s| s.products.len()),
        30,
        "the same products, found by their ids"
    );
    let again = app
        .shopify
        .with_api(|s| s.product_by_sku("SG-7-M").cloned())
        .expect("still there");
    assert_eq!(
        (again.id, again.variants[1].id, again.images[0].0),
        (product.id, product.variants[1].id, product.images[0].0),
        "variants and images kept by their ids"
    );
    completed(&app, campaign, "finish").await;
    assert_eq!(statuses(), ["archived".to_string()].into());
    let t = app.delete_products(campaign, &p[..5]).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(graphql_calls(&app, "productDelete"), 5);
    assert_eq!(app.shopify.with_api(|s| s.products.len()), 25);
    assert_eq!(app.shopify.stats().throttled, 0);
}

#[tokio::test]
async fn shopify_on_graphql_recovers_from_a_throttled_answer_and_then_waits_for_points() {
    let app = spawn_app_with(|c| {
        c.runs.retry_min_ms = 50;
        c.runs.retry_max_ms = 200;
    })
    .await;
    // Another caller left the bucket empty: the first call, before any answer told the
    // bucket, meets THROTTLED; its answer tells the bucket, and the rest wait for points.
    app.shopify.with_api(|s| {
        s.cost = ::marketplaces::sim::shopify::CostBucket::new(60.0, 100.0).spent();
    });
    let shop = app.connect_shopify(json!({})).await;
    let p = app.products("ST", 10).await;
    let campaign = app.campaign(&[shop], &p).await;
    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let stats = app.shopify.stats();
    assert_eq!(
        stats.throttled, 1,
        "only the first call, alone, met THROTTLED"
    );
    assert!(stats.duplicate_skus().is_empty());
    assert_eq!(app.shopify.with_api(|s| s.products.len()), 10);
}

#[tokio::test]
async fn shopify_on_rest_waits_on_its_announced_bucket_and_meets_no_429() {
    let app = spawn_app().await;
    // The standard plan's bucket of 40 leaking 2 a second, and 46 products on 20 requests in
    // flight: 40 go at once, the other 6 as the bucket leaks.
    app.shopify
        .with_api(|s| s.bucket = ::marketplaces::sim::shopify::Bucket::new(40, 2.0));
    let shop = app
        .connect_shopify(json!({"max_in_flight": 20, "settings": {"api": "rest"}}))
        .await;
    let p = app.products("SR", 46).await;
    let campaign = app.campaign(&[shop], &p).await;
    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let stats = app.shopify.stats();
    assert_eq!(
        stats.throttled, 0,
        "each request waited for a place in the bucket"
    );
    assert_eq!(app.shopify.with_api(|s| s.products.len()), 46);
}

#[tokio::test]
async fn a_full_shopify_bucket_pauses_the_connection_and_nothing_is_lost() {
    let app = spawn_app().await;
    // A bucket of 6 that the first 8 requests in flight at once overflow, however fast the
    // service gets to them, behind a proxy that strips the header announcing it.
    app.shopify
        .with_api(|s| s.bucket = ::marketplaces::sim::shopify::Bucket::new(6, 20.0).unannounced());
    let shop = app
        .connect_shopify(json!({"max_in_flight": 8, "settings": {"api": "rest"}}))
        .await;
    let p = app.products("SB", 40).await;
    let campaign = app.campaign(&[shop], &p).await;
    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let stats = app.shopify.stats();
    assert!(stats.duplicate_skus().is_empty());
    assert_eq!(app.shopify.with_api(|s| s.products.len()), 40);
    // The bucket did overflow: the 429s paused the connection and every product got through.
    assert!(stats.throttled > 0, "the bucket never filled");
}

#[tokio::test]
async fn woocommerce_publishes_in_batches_and_follows_every_action() {
    let app = spawn_app().await;
    let p = app.products("WB", 150).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let status_of = |sku: &str| {
        app.woo
            .with_api(|s| s.product_by_sku(sku).map(|p| p.status.clone()))
    };

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let stats = app.woo.stats();
    let product_batches: Vec<usize> = stats
        .log
        .iter()
        .filter(|r| r.path.ends_with("/products/batch"))
        .map(|r| {
            let b = r.body.as_ref().expect("a JSON body");
            ["create", "update", "delete"]
                .iter()
                .map(|k| b[*k].as_array().map_or(0, Vec::len))
                .sum()
        })
        .collect();
    println!("products per batch: {product_batches:?}");
    assert_eq!(product_batches.iter().sum::<usize>(), 150);
    assert!(product_batches.iter().all(|n| *n <= 100));
    // How many batches 150 products make depends on how fast the store hands them out: a
    // batch leaves after 10 ms without a new product, or 100 ms after its first. On a busy
    // machine that is more than the two a fast one sends, but never one request a product.
    assert!(
        product_batches.len() >= 2 && product_batches.len() <= 15,
        "{product_batches:?}"
    );
    assert!(
        !stats
            .log
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/products")),
        "no product was created one by one"
    );
    let woo_product = app
        .woo
        .with_api(|s| s.product_by_sku("WB-7").cloned())
        .expect("WB-7");
    assert_eq!(woo_product.kind, "variable");
    assert_eq!(woo_product.variations.len(), 2);
    assert_eq!(woo_product.variations[1].regular_price, "1000");
    assert!(stats.duplicate_skus().is_empty());

    completed(&app, campaign, "pause").await;
    assert!(app.all_are(campaign, "paused").await);
    assert_eq!(status_of("WB-150").as_deref(), Some("draft"));
    completed(&app, campaign, "publish").await;
    assert_eq!(status_of("WB-150").as_deref(), Some("publish"));
    completed(&app, campaign, "finish").await;
    assert!(app.all_are(campaign, "finished").await);
    assert!(app
        .woo
        .with_api(|s| s.products.values().all(|p| p.status == "trash")));
    let t = app.delete_products(campaign, &p).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.woo.with_api(|s| s.products.is_empty()));
    assert!(app.campaign_products(campaign).await.is_empty());
}

#[tokio::test]
async fn woocommerce_adopts_a_duplicate_sku_and_maps_each_batch_item_error_to_its_product() {
    let mut app = spawn_app().await;
    let p = app.products("WE", 12).await;
    // WE-1 is already in the shop (a create whose answer was lost): its duplicate-SKU answer
    // names it, and it is adopted instead of failing.
    let existing = app.woo.with_api(|s| s.products.len());
    assert_eq!(existing, 0);
    let campaign = app.campaign(&[app.wc], &p[..1]).await;
    completed(&app, campaign, "publish").await;
    let first_id = app
        .woo
        .with_api(|s| s.product_by_sku("WE-1").map(|p| p.id))
        .expect("WE-1");
    let other = app.campaign(&[app.wc], &p).await;
    app.woo.set_knobs(|k| {
        k.reject_skus
            .insert("WE-5".into(), "Image is not a valid type".into());
        k.latency = Duration::from_millis(40);
        k.hang_next = 1;
        k.error_rate = 0.05;
    });
    let t = cut_off_by_a_restart(&mut app, other, "publish").await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(
        errors(&app, other).await,
        vec![(
            "WE-5".to_string(),
            "Image is not a valid type (woocommerce_rest_invalid_product)".to_string()
        )]
    );
    let adopted = app
        .campaign_products(other)
        .await
        .into_iter()
        .find(|cp| cp["sku"] == "WE-1")
        .expect("WE-1 in the campaign");
    assert_eq!(adopted["status"], "published");
    assert_eq!(
        adopted["marketplace_info"]["product_id"],
        first_id.to_string()
    );
    let stats = app.woo.stats();
    assert!(
        stats.duplicate_skus().is_empty(),
        "{:?}",
        stats.duplicate_skus()
    );
    assert_eq!(app.woo.with_api(|s| s.products.len()), 11);
}

/// The items (create, update, delete) of each `variations/batch` request the store received.
fn variation_batches(app: &TestApp) -> Vec<(usize, usize)> {
    app.woo
        .stats()
        .log
        .iter()
        .filter(|r| r.path.ends_with("/variations/batch"))
        .map(|r| {
            let b = r.body.as_ref().expect("a JSON body");
            let n = |k: &str| b[k].as_array().map_or(0, Vec::len);
            (n("create"), n("update") + n("delete"))
        })
        .collect()
}

#[tokio::test]
async fn woocommerce_sends_150_variations_in_batches_of_100_and_reads_them_back_in_pages() {
    let app = spawn_app().await;
    let variants: Vec<Value> = (0..150)
        .map(|i| {
            json!({"sku": format!("BIG-{i}"), "price": 1000 + i, "stock": i % 7,
                   "options": {"Size": format!("S{i}")}})
        })
        .collect();
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "BIG", "name": "Big", "description": "d", "price": 1000,
                    "stock": 3, "variants": variants,
                    "images": [{"url": "https://img.example/big.jpg", "position": 1}]}]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let big = v["products"][0]["id"].as_u64().expect("an id");
    let campaign = app.campaign(&[app.wc], &[big]).await;

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let shown = app
        .woo
        .with_api(|s| s.product_by_sku("BIG").cloned())
        .expect("BIG");
    assert_eq!(
        shown.variations.len(),
        150,
        "every variation reached the store"
    );
    assert_eq!(
        variation_batches(&app),
        [(100, 0), (50, 0)],
        "WooCommerce takes 100 items a batch in all"
    );
    assert_eq!(shown.variations[149].regular_price, "1149");

    // A drift check reads every page of the variations and finds nothing.
    let before = app.woo.stats().log.len();
    let report = app.drift(campaign).await;
    assert_eq!(
        (&report["checked"], &report["differing"]),
        (&json!(1), &json!(0)),
        "{report}"
    );
    let pages: Vec<_> = app.woo.stats().log[before..]
        .iter()
        .filter(|r| r.path.ends_with("/variations"))
        .map(|r| r.query.get("page").cloned().unwrap_or_default())
        .collect();
    assert_eq!(pages, ["1", "2"]);

    // A republish updates them, 100 at a time, and the store ends as campaignd says.
    let before = variation_batches(&app).len();
    completed(&app, campaign, "republish").await;
    assert_eq!(variation_batches(&app)[before..], [(0, 100), (0, 50)]);
    completed(&app, campaign, "pause").await;
    assert_eq!(
        app.woo
            .with_api(|s| s.product_by_sku("BIG").map(|p| p.status.clone())),
        Some("draft".to_string())
    );
    assert!(app.woo.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn a_woocommerce_sku_held_by_another_products_variation_is_refused_saying_so() {
    let app = spawn_app().await;
    // The shop already sells a shirt whose variation has the SKU campaignd's product carries.
    let (shirt, held) = app.woo.with_api(|s| {
        use ::marketplaces::sim::woocommerce::{WooProduct, WooVariation};
        let shirt = WooProduct {
            id: 7000,
            name: "Shirt".into(),
            kind: "variable".into(),
            status: "publish".into(),
            sku: "SHIRT".into(),
            regular_price: String::new(),
            sale_price: String::new(),
            stock_quantity: None,
            description: String::new(),
            images: Vec::new(),
            attributes: Vec::new(),
            variations: vec![WooVariation {
                id: 7001,
                sku: "HV-1".into(),
                regular_price: "5".into(),
                sale_price: String::new(),
                stock_quantity: Some(4),
                attributes: Vec::new(),
                global_unique_id: String::new(),
            }],
            global_unique_id: String::new(),
        };
        s.insert(shirt);
        (7000u64, 7001u64)
    });
    let p = app.products("HV", 2).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    completed(&app, campaign, "publish").await;
    assert_eq!(
        errors(&app, campaign).await,
        vec![(
            "HV-1".to_string(),
            format!("the SKU HV-1 is held on WooCommerce by variation {held} of product {shirt}")
        )]
    );
    let untouched = app
        .woo
        .with_api(|s| s.products.get(&shirt).cloned())
        .expect("the shirt");
    assert_eq!(
        (
            untouched.name.as_str(),
            untouched.variations[0].regular_price.as_str()
        ),
        ("Shirt", "5"),
        "the shop's own product was not written"
    );
    let hv2 = app
        .woo
        .with_api(|s| s.product_by_sku("HV-2").map(|p| p.variations.len()));
    assert_eq!(hv2, Some(2), "the other product was published");
}

#[tokio::test]
async fn mercadolibre_prices_take_the_currencys_decimals_and_listing_types_are_the_sites() {
    let app = spawn_app().await;
    // The marketplace's listing types are free, gold_special and gold_pro; the older ids are
    // refused with the reason, and Uruguay has no gold_pro.
    let user_id = app.ml.with_api(|s| s.user_id).to_string();
    for (site, listing) in [
        ("MLC", "gold_premium"),
        ("MLC", "silver"),
        ("MLU", "gold_pro"),
    ] {
        let (status, refused) = app
            .post(
                "/api/marketplaces",
                json!({"system": "mercadolibre", "name": "Seller", "base_url": app.ml.url(),
                       "credentials": {"client_id": "a", "client_secret": "b",
                                       "access_token": "c", "refresh_token": "d"},
                       "settings": {"site_id": site, "user_id": user_id,
                                    "category_id": format!("{site}3530"),
                                    "listing_type_id": listing}}),
            )
            .await;
        assert_eq!(status, 422, "{site} {listing}: {refused}");
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("listing_type_id")),
            "{refused}"
        );
    }
    let ml = app
        .connect_mercadolibre(json!({"settings": {
            "site_id": "MLC", "user_id": user_id, "category_id": "MLC3530",
            "listing_type_id": "gold_pro"}}))
        .await;
    // Chilean pesos have no decimals (`GET /currencies/CLP`: "decimal_places": 0).
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "CLP-1", "name": "Decimal price", "description": "d",
                    "price": 19990.4, "stock": 3,
                    "variants": [
                        {"sku": "CLP-1-S", "price": 10500.5, "stock": 1, "options": {"Size": "S"}},
                        {"sku": "CLP-1-M", "price": 10500.5, "stock": 2, "options": {"Size": "M"}},
                    ],
                    "images": [{"url": "https://img.example/clp.jpg", "position": 1}]}]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["products"][0]["id"].as_u64().unwrap();
    let campaign = app.campaign(&[ml], &[id]).await;
    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    let item = app
        .ml
        .with_api(|s| s.item_by_sku("CLP-1").cloned())
        .expect("listed");
    let prices: Vec<f64> = std::iter::once(item.price)
        .chain(item.variations.iter().map(|v| v.price))
        .collect();
    assert_eq!(prices, [19990.0, 10501.0, 10501.0], "whole pesos");
    // Every read asks for the variations' attributes: a check right after finds nothing.
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");
}

#[tokio::test]
async fn under_mercadolibres_price_automation_a_price_not_applied_is_reported_with_its_reason() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("PA", 2).await;
    let campaign = app.campaign(&[ml], &p).await;
    completed(&app, campaign, "publish").await;
    // MercadoLibre's price automation takes both items over.
    let ids: Vec<String> = app.ml.with_api(|s| {
        let ids: Vec<String> = s.items.keys().cloned().collect();
        s.price_automated.extend(ids.iter().cloned());
        ids
    });
    assert_eq!(ids.len(), 2);
    // A sale on both; PA-1's name changes too, so its republish sends its data with the price.
    let (status, v) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/campaigns/{campaign}/products"),
            Some(json!([{"product_id": p[0], "sale_price": 900},
                        {"product_id": p[1], "sale_price": 950}])),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "PA-1", "name": "Renamed", "description": "d", "price": 1001,
            "stock": 3,
            "variants": [
                {"sku": "PA-1-S", "price": 1000, "stock": 1, "options": {"Size": "S"}},
                {"sku": "PA-1-M", "price": 1000, "stock": 2, "options": {"Size": "M"}},
            ],
            "images": [
                {"url": "https://img.example/PA-1/1.jpg", "position": 1},
                {"url": "https://img.example/PA-1/2.jpg", "position": 2},
            ]}]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let t = app.run(campaign, "republish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(
        errors(&app, campaign).await,
        vec![
            (
                "PA-1".to_string(),
                "MercadoLibre did not apply the price: Cannot modify price on items with \
                 dynamic pricing (item.price.not_modifiable); the item's other changes were \
                 applied"
                    .to_string()
            ),
            (
                "PA-2".to_string(),
                "Cannot modify price on items with dynamic pricing".to_string()
            ),
        ],
        "both prices were not applied, one ignored and one refused, and each says why"
    );
    let items = app.ml.with_api(|s| {
        ["PA-1", "PA-2"].map(|sku| {
            let item = s.item_by_sku(sku).expect("listed");
            (item.title.clone(), item.price)
        })
    });
    assert_eq!(
        items,
        [
            ("Renamed".to_string(), 1001.0),
            ("Product PA 2".to_string(), 1002.0)
        ],
        "the data changed, the prices did not"
    );
}

#[tokio::test]
async fn a_mercadolibre_product_whose_variants_differ_in_price_is_refused_before_anything_is_sent()
{
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "TWO-1", "name": "Two prices", "description": "d", "price": 1000,
                    "stock": 3,
                    "variants": [
                        {"sku": "TWO-1-S", "price": 1000, "stock": 1, "options": {"Size": "S"}},
                        {"sku": "TWO-1-M", "price": 1100, "stock": 2, "options": {"Size": "M"}},
                    ],
                    "images": [{"url": "https://img.example/two.jpg", "position": 1}]}]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["products"][0]["id"].as_u64().unwrap();
    let campaign = app.campaign(&[ml], &[id]).await;
    let why = "MercadoLibre lists one price for all of an item's variations (it shows and \
               charges the highest); this product's variants have 1000, 1100: give them one \
               price, or list them as products of their own";
    // The plan says so, and plans no request for the product but the run's look-ups of the
    // seller's model and of what the seller already lists (the first page of its items).
    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/publish"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let row = &plan["marketplaces"][0]["plan"][0];
    assert_eq!(row["operation"], "error", "{row}");
    let seller = format!("/users/{}", app.ml.with_api(|s| s.user_id));
    let look_up = format!("{seller}/items/search");
    assert_eq!(
        row["requests"],
        json!([{"method": "GET", "path": seller}, {"method": "GET", "path": look_up}]),
        "{row}"
    );
    assert!(
        row["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "variant_prices_differ" && p["message"] == why),
        "{row}"
    );
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(
        errors(&app, campaign).await,
        vec![("TWO-1".to_string(), why.to_string())]
    );
    // The dry run and the run each asked the seller's model.
    let sent: Vec<String> = app.ml.stats().log.iter().map(|l| l.path.clone()).collect();
    assert_eq!(
        sent,
        [seller.clone(), seller, look_up],
        "nothing was sent for the product"
    );
}

#[tokio::test]
async fn a_variant_added_to_a_listed_mercadolibre_item_carries_its_pictures() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("NV", 1).await;
    let campaign = app.campaign(&[ml], &p).await;
    completed(&app, campaign, "publish").await;
    // The shop adds a third size: MercadoLibre takes a new variation only with its pictures.
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "NV-1", "name": "Product NV 1", "description": "d", "price": 1001,
            "stock": 3,
            "variants": [
                {"sku": "NV-1-S", "price": 1000, "stock": 1, "options": {"Size": "S"}},
                {"sku": "NV-1-M", "price": 1000, "stock": 2, "options": {"Size": "M"}},
                {"sku": "NV-1-L", "price": 1000, "stock": 4, "options": {"Size": "L"}},
            ],
            "images": [
                {"url": "https://img.example/NV-1/1.jpg", "position": 1},
                {"url": "https://img.example/NV-1/2.jpg", "position": 2},
            ]}]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    completed(&app, campaign, "republish").await;
    assert_eq!(errors(&app, campaign).await, vec![]);
    let item = app
        .ml
        .with_api(|s| s.item_by_sku("NV-1").cloned())
        .expect("listed");
    let skus: Vec<&str> = item
        .variations
        .iter()
        .map(|v| v.seller_sku.as_str())
        .collect();
    assert_eq!(skus, ["NV-1-S", "NV-1-M", "NV-1-L"]);
    let put = app
        .ml
        .stats()
        .log
        .iter()
        .rev()
        .find(|l| l.method == "PUT" && !l.path.ends_with("/description"))
        .and_then(|l| l.body.clone())
        .expect("the republish's PUT of the item");
    let pictures: Vec<Value> = put["variations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["picture_ids"].clone())
        .collect();
    let ids: Vec<String> = item.pictures.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        pictures,
        [Value::Null, Value::Null, json!(ids)],
        "the known variations keep theirs; the new one names the item's pictures by id"
    );
}

#[tokio::test]
async fn mercadolibre_variations_are_told_apart_by_the_categorys_attributes_named_by_id() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("AC", 1).await;
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "MAT-1", "name": "Material", "description": "d", "price": 1000,
                    "stock": 3,
                    "variants": [
                        {"sku": "MAT-1-A", "price": 1000, "stock": 1, "options": {"Material": "Wool"}},
                        {"sku": "MAT-1-B", "price": 1000, "stock": 2, "options": {"Material": "Silk"}},
                    ],
                    "images": [{"url": "https://img.example/mat.jpg", "position": 1}]}]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let material = v["products"][0]["id"].as_u64().unwrap();
    let campaign = app.campaign(&[ml], &[p[0], material]).await;
    completed(&app, campaign, "publish").await;
    // "Size" names the category's SIZE (by id, in any case): the item keeps it.
    let item = app
        .ml
        .with_api(|s| s.item_by_sku("AC-1").cloned())
        .expect("listed");
    let combinations: Vec<Value> = item
        .variations
        .iter()
        .map(|v| json!(v.attribute_combinations))
        .collect();
    assert_eq!(
        combinations,
        [
            json!([{"id": "SIZE", "value_name": "S"}]),
            json!([{"id": "SIZE", "value_name": "M"}])
        ]
    );
    // "Material" is none of the category's variation attributes: refused, saying which are.
    assert_eq!(
        errors(&app, campaign).await,
        vec![(
            "MAT-1".to_string(),
            "MercadoLibre's category MLC3530 tells variations apart by COLOR, SIZE; the option \
             \"Material\" is none of them"
                .to_string()
        )]
    );
    let attribute_reads = app
        .ml
        .stats()
        .log
        .iter()
        .filter(|l| l.path.ends_with("/attributes"))
        .count();
    assert_eq!(attribute_reads, 1, "the category is read once a run");
}

/// MercadoLibre's category requires BRAND and MODEL, and a GTIN or the reason there is none
/// (the simulator's `required`, from the category's `required` and `conditional_required` tags):
/// a product that carries them (its brand, its barcode, its own MODEL attribute) is created with
/// them; one that lacks some is refused before anything is sent, naming what it lacks, and a
/// validating dry run says so too. A barcode that is not a GTIN is refused at the door.
#[tokio::test]
async fn mercadolibre_creates_carry_what_the_category_requires_and_lacking_it_sends_nothing() {
    let app = spawn_app().await;
    app.ml.with_api(|s| {
        s.required = vec!["BRAND", "MODEL"];
        s.gtin_required = true;
    });
    let ml = app.connect_mercadolibre(json!({})).await;
    let (status, v) = app
        .post(
            "/api/products",
            json!([{"sku": "BAD-GTIN", "name": "x", "price": 10, "barcode": "4006381333932"}]),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap_or("").contains("check digit"),
        "{v}"
    );
    let ids = app
        .upload(json!([
            {"sku": "REQ-1", "name": "Drill", "price": 1000, "stock": 2, "brand": "Acme",
             "barcode": "4006381333931",
             "marketplaces": {"mercadolibre": {"attributes": [{"id": "MODEL", "value_name": "X1"}]}}},
            {"sku": "REQ-2", "name": "Saw", "price": 1000, "stock": 2, "brand": "Acme"},
        ]))
        .await;
    let (_, listed) = app.get("/api/products?per_page=100").await;
    let product = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["sku"] == "REQ-1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(product["brand"], "Acme", "{product}");
    assert_eq!(product["barcode"], "4006381333931", "{product}");
    assert_eq!(
        product["marketplaces"]["mercadolibre"]["attributes"][0]["id"],
        "MODEL"
    );
    let campaign = app.campaign(&[ml], &ids).await;

    let (status, checked) = app
        .post(
            &format!("/api/campaigns/{campaign}/publish"),
            json!({"dry_run": "validate"}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    let rows = checked["marketplaces"]
        .as_array()
        .and_then(|c| c.first())
        .map(|c| c["plan"].clone())
        .unwrap_or_default();
    let row = |sku: &str| {
        rows.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["sku"] == sku)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(row("REQ-1")["problems"], json!([]), "{checked}");
    assert_eq!(
        row("REQ-2")["problems"][0]["code"],
        "category_attributes",
        "{checked}"
    );

    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    let errored = errors(&app, campaign).await;
    assert_eq!(errored.len(), 1, "{errored:?}");
    assert_eq!(errored[0].0, "REQ-2");
    assert!(
        errored[0].1.contains("MODEL (Modelo)") && errored[0].1.contains("GTIN"),
        "{errored:?}"
    );
    let creates: Vec<_> = app
        .ml
        .stats()
        .log
        .into_iter()
        .filter(|l| l.method == "POST" && l.path == "/items")
        .collect();
    assert_eq!(creates.len(), 1, "nothing was sent for REQ-2");
    app.ml.with_api(|s| {
        let item = s
            .items
            .values()
            .find(|i| i.seller_sku == "REQ-1")
            .expect("REQ-1");
        let attribute = |id: &str| item.attributes.get(id).map(String::as_str);
        assert_eq!(
            (attribute("BRAND"), attribute("MODEL"), attribute("GTIN")),
            (Some("Acme"), Some("X1"), Some("4006381333931"))
        );
    });
}

/// A product's brand and GTIN reach each marketplace's own field: Jumpseller's product and
/// variant `barcode` (its brand is read-only there), WooCommerce's `global_unique_id` on the
/// product and its variations (a GTIN another product holds is refused, as WooCommerce refuses
/// it), Shopify's `vendor` and each variant's `barcode`.
#[tokio::test]
async fn a_products_brand_and_barcodes_reach_each_marketplaces_own_fields() {
    let app = spawn_app().await;
    let shopify = app.connect_shopify(json!({})).await;
    let ids = app
        .upload(json!([
            {"sku": "GT-1", "name": "Drill", "price": 10, "stock": 1, "brand": "Acme",
             "barcode": "4006381333931"},
            {"sku": "GT-2", "name": "Shirt", "price": 10, "stock": 1, "brand": "Acme",
             "variants": [
                 {"sku": "GT-2-S", "price": 10, "stock": 1, "options": {"Size": "S"},
                  "barcode": "012345678905"},
                 {"sku": "GT-2-M", "price": 10, "stock": 1, "options": {"Size": "M"},
                  "barcode": "96385074"}]},
            {"sku": "GT-3", "name": "Same code", "price": 10, "stock": 1,
             "barcode": "4006381333931"},
        ]))
        .await;
    let variant_codes = vec![
        Some("012345678905".to_string()),
        Some("96385074".to_string()),
    ];
    let campaign = app.campaign(&[app.js, app.wc, shopify], &ids).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");

    app.jumpseller.with_api(|s| {
        let by_sku = |sku: &str| {
            s.products
                .values()
                .find(|p| p.sku.as_deref() == Some(sku))
                .cloned()
                .expect("listed")
        };
        assert_eq!(by_sku("GT-1").barcode.as_deref(), Some("4006381333931"));
        let shirt = by_sku("GT-2");
        let codes: Vec<_> = shirt.variants.iter().map(|v| v.barcode.clone()).collect();
        assert_eq!(codes, variant_codes);
    });
    // GT-1 and GT-3 share a GTIN: whichever WooCommerce makes first holds it (they may share a
    // batch, in either order), and the other is refused.
    let woo_holder = app.woo.with_api(|s| {
        let by_sku = |sku: &str| s.products.values().find(|p| p.sku == sku).cloned();
        let held: Vec<_> = ["GT-1", "GT-3"]
            .into_iter()
            .filter_map(|sku| by_sku(sku).map(|p| (sku, p.global_unique_id)))
            .collect();
        assert_eq!(held.len(), 1, "one of the two holds the GTIN: {held:?}");
        assert_eq!(held[0].1, "4006381333931");
        let shirt = by_sku("GT-2").expect("GT-2");
        let codes: Vec<_> = shirt
            .variations
            .iter()
            .map(|v| v.global_unique_id.as_str())
            .collect();
        assert_eq!(codes, vec!["012345678905", "96385074"]);
        held[0].0
    });
    app.shopify.with_api(|s| {
        let by_sku = |sku: &str| {
            s.products
                .values()
                .find(|p| p.variants.iter().any(|v| v.sku == sku))
                .cloned()
                .expect("listed")
        };
        let drill = by_sku("GT-1");
        assert_eq!(drill.vendor, "Acme");
        assert_eq!(drill.variants[0].barcode.as_deref(), Some("4006381333931"));
        let shirt = by_sku("GT-2-S");
        assert_eq!(shirt.vendor, "Acme");
        let codes: Vec<_> = shirt.variants.iter().map(|v| v.barcode.clone()).collect();
        assert_eq!(codes, variant_codes);
    });
    let errored = errors(&app, campaign).await;
    assert_eq!(errored.len(), 1, "{errored:?}");
    let refused = if woo_holder == "GT-1" { "GT-3" } else { "GT-1" };
    assert_eq!(errored[0].0, refused);
    assert!(
        errored[0].1.contains("Invalid or duplicated GTIN"),
        "{errored:?}"
    );
}

/// A MercadoLibre item's description changes only through its own resource: a republish of a
/// product whose description changed replaces it there (the simulator, like MercadoLibre, does
/// not apply a description sent in the item's PUT).
#[tokio::test]
async fn a_republish_replaces_a_mercadolibre_items_description_through_its_own_resource() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let product = |description: &str| {
        json!([{"sku": "DESC-1", "name": "Lamp", "description": description, "price": 1000,
                "stock": 3}])
    };
    let ids = app.upload(product("A lamp.")).await;
    let campaign = app.campaign(&[ml], &ids).await;
    completed(&app, campaign, "publish").await;
    let description = || {
        app.ml
            .with_api(|s| s.item_by_sku("DESC-1").and_then(|i| i.description.clone()))
    };
    assert_eq!(description().as_deref(), Some("A lamp."));
    app.upload(product("A brighter lamp.")).await;
    completed(&app, campaign, "republish").await;
    assert_eq!(description().as_deref(), Some("A brighter lamp."));
    let sent = app
        .ml
        .stats()
        .log
        .into_iter()
        .filter(|l| l.method == "PUT" && l.path.ends_with("/description"))
        .map(|l| l.query.get("api_version").cloned())
        .collect::<Vec<_>>();
    assert_eq!(sent, vec![Some("2".to_string())]);
}

/// A MercadoLibre connection may hold default attributes (`settings.attributes`, a JSON list)
/// that every item carries unless its product names the attribute itself; a setting that is
/// not such a list is refused when the connection is made.
#[tokio::test]
async fn a_mercadolibre_connections_default_attributes_fill_what_a_product_does_not_name() {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.required = vec!["BRAND", "MODEL"]);
    let user_id = app.ml.with_api(|s| s.user_id).to_string();
    let settings = |attributes: &str| {
        json!({"settings": {"site_id": "MLC", "user_id": user_id, "category_id": "MLC3530",
                            "attributes": attributes}})
    };
    let mut refused = settings("MODEL=Generic");
    refused["system"] = json!("mercadolibre");
    refused["name"] = json!("Refused");
    refused["base_url"] = json!(app.ml.url());
    refused["credentials"] = json!({"client_id": "app-1", "client_secret": "app-secret",
                                    "access_token": "APP_USR-first", "refresh_token": "TG-first"});
    let (status, v) = app.post("/api/marketplaces", refused).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("settings.attributes"),
        "{v}"
    );
    let ml = app
        .connect_mercadolibre(settings(
            r#"[{"id": "MODEL", "value_name": "Generic"}, {"id": "BRAND", "value_name": "House"}]"#,
        ))
        .await;
    let ids = app
        .upload(json!([
            {"sku": "DEF-1", "name": "Bulb", "price": 1000, "stock": 1, "brand": "Acme"},
            {"sku": "DEF-2", "name": "Fan", "price": 1000, "stock": 1,
             "marketplaces": {"mercadolibre": {"attributes": [{"id": "MODEL", "value_name": "F2"}]}}},
        ]))
        .await;
    let campaign = app.campaign(&[ml], &ids).await;
    completed(&app, campaign, "publish").await;
    assert_eq!(errors(&app, campaign).await, vec![]);
    let attributes = |sku: &str| {
        app.ml.with_api(|s| {
            let item = s.item_by_sku(sku).expect("listed");
            (
                item.attributes.get("BRAND").cloned(),
                item.attributes.get("MODEL").cloned(),
            )
        })
    };
    let named = |b: &str, m: &str| (Some(b.to_string()), Some(m.to_string()));
    assert_eq!(attributes("DEF-1"), named("Acme", "Generic"));
    assert_eq!(attributes("DEF-2"), named("House", "F2"));
}

/// The items of a User Products seller's family, by SKU: (status, price, stock, title).
fn family(app: &TestApp, name: &str) -> Vec<(String, String, f64, i64, String)> {
    let mut items: Vec<_> = app.ml.with_api(|s| {
        s.items
            .values()
            .filter(|i| !i.deleted && i.family_name.as_deref() == Some(name))
            .map(|i| {
                assert!(i.variations.is_empty(), "{i:?}");
                (
                    i.seller_sku.clone(),
                    i.status.clone(),
                    i.price,
                    i.available_quantity,
                    i.title.clone(),
                )
            })
            .collect()
    });
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

/// A seller on MercadoLibre's User Products model (Chile, whole pesos) lists each variant as an
/// item of its own, grouped by `family_name`, with no title and no variations; every action
/// reaches every item of a product, a check right after each publish finds nothing, and no
/// request is refused.
#[tokio::test]
async fn a_user_products_seller_gets_one_item_per_variant_grouped_by_family_through_every_action() {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = true);
    let ml = app.connect_mercadolibre(json!({})).await;
    // Variants of one product may differ in price on this model: each is its own item.
    let p = app
        .upload(json!([
            {"sku": "UP-1", "name": "Camisa Lino", "description": "d", "price": 20000,
             "stock": 3,
             "variants": [
                 {"sku": "UP-1-S", "price": 10500.5, "stock": 1,
                  "options": {"Size": "S", "Color": "Rojo"}},
                 {"sku": "UP-1-M", "price": 12990, "stock": 2,
                  "options": {"Size": "M", "Color": "Azul"}}],
             "images": [{"url": "https://img.example/up-1/1.jpg", "position": 1},
                        {"url": "https://img.example/up-1/2.jpg", "position": 2}]},
            {"sku": "UP-2", "name": "Gorro", "description": "d", "price": 5990, "stock": 4,
             "images": [{"url": "https://img.example/up-2/1.jpg", "position": 1}]}
        ]))
        .await;
    let campaign = app.campaign(&[ml], &p).await;
    let item = |sku: &str, status: &str, price: f64, stock: i64, title: &str| {
        (
            sku.to_string(),
            status.to_string(),
            price,
            stock,
            title.to_string(),
        )
    };
    let expect = |status: &str, prices: [f64; 3]| {
        (
            vec![
                item("UP-1-M", status, prices[0], 2, "Camisa Lino Azul M"),
                item("UP-1-S", status, prices[1], 1, "Camisa Lino Rojo S"),
            ],
            vec![item("UP-2", status, prices[2], 4, "Gorro")],
        )
    };
    let families = || (family(&app, "Camisa Lino"), family(&app, "Gorro"));
    let regular = [12990.0, 10501.0, 5990.0];

    completed(&app, campaign, "publish").await;
    assert!(app.all_are(campaign, "published").await);
    assert_eq!(
        families(),
        expect("active", regular),
        "one item per variant"
    );
    assert_eq!(
        app.ml.with_api(|s| s.items.len()),
        3,
        "and none for UP-1 itself"
    );
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");

    completed(&app, campaign, "pause").await;
    assert_eq!(families(), expect("paused", regular));
    completed(&app, campaign, "publish").await;
    assert_eq!(families(), expect("active", regular));
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");

    // A sale of a quarter off UP-1 (each variant's price cut alike, to whole pesos) and of
    // 1,000 off UP-2.
    let (status, v) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/campaigns/{campaign}/products"),
            Some(json!([{"product_id": p[0], "sale_price": 15000},
                        {"product_id": p[1], "sale_price": 4990}])),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    completed(&app, campaign, "republish").await;
    assert_eq!(families(), expect("active", [9743.0, 7875.0, 4990.0]));
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");

    // Finishing a sale puts the regular prices back before the items close for good.
    completed(&app, campaign, "finish").await;
    assert!(app.all_are(campaign, "finished").await);
    assert_eq!(families(), expect("closed", regular));

    let stats = app.ml.stats();
    assert!(stats.duplicate_skus().is_empty(), "{stats:?}");
    assert_eq!(stats.refused, Vec::<String>::new(), "nothing refused");
}

/// A product may name its own MercadoLibre category and listing type: its item is listed there,
/// with that category's attributes read once; one whose category is of another site, or whose
/// listing type the site does not offer, is refused before anything is sent for it.
#[tokio::test]
async fn a_product_may_have_its_own_mercadolibre_category_and_listing_type() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let own = |sku: &str, category: &str, listing: &str| {
        json!({"sku": sku, "name": format!("Own {sku}"), "description": "d", "price": 1000,
               "stock": 2, "images": [{"url": "https://img.example/own.jpg", "position": 1}],
               "marketplaces": {"mercadolibre": {"category_id": category,
                                                 "listing_type_id": listing}}})
    };
    // The shape is checked when the product is given.
    let (status, refused) = app
        .post("/api/products", json!([own("BAD-1", "shoes", "gold_pro")]))
        .await;
    assert_eq!(status, 422, "{refused}");
    let (status, refused) = app
        .post("/api/products", json!([own("BAD-2", "MLC1", "silver")]))
        .await;
    assert_eq!(status, 422, "{refused}");
    let ids = app
        .upload(json!([
            own("OWN-1", "MLC5678", "gold_pro"),
            own("OWN-2", "MLC5678", "free"),
            own("OWN-3", "MLA1234", "gold_pro"),
        ]))
        .await;
    let (_, page) = app.get("/api/products").await;
    let shown = page["data"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["sku"] == "OWN-1"))
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(
        shown["marketplaces"]["mercadolibre"]["category_id"], "MLC5678",
        "{shown}"
    );
    let mut products = ids.clone();
    products.extend(app.products("CONN", 1).await);
    let campaign = app.campaign(&[ml], &products).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    let listed = |sku: &str| {
        app.ml
            .with_api(|s| s.item_by_sku(sku).cloned())
            .map(|i| (i.category_id, i.listing_type_id))
    };
    assert_eq!(
        listed("OWN-1"),
        Some(("MLC5678".to_string(), "gold_pro".to_string()))
    );
    assert_eq!(
        listed("OWN-2"),
        Some(("MLC5678".to_string(), "free".to_string()))
    );
    assert_eq!(
        listed("CONN-1"),
        Some(("MLC3530".to_string(), "gold_special".to_string())),
        "the connection's own"
    );
    assert_eq!(listed("OWN-3"), None);
    assert_eq!(
        errors(&app, campaign).await,
        vec![(
            "OWN-3".to_string(),
            "the MercadoLibre category MLA1234 is not of site MLC, where this connection lists"
                .to_string()
        )]
    );
    let reads: Vec<String> = app
        .ml
        .stats()
        .log
        .iter()
        .filter(|l| l.path.starts_with("/categories/"))
        .map(|l| l.path.clone())
        .collect();
    let mut sorted = reads.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "/categories/MLC3530/attributes",
            "/categories/MLC5678/attributes"
        ],
        "each category read once: {reads:?}"
    );
    assert_eq!(app.ml.stats().refused, Vec::<String>::new());
}

/// A renamed product's item takes the new name while it has no sales, in a request of its own
/// (a classic item's title, a User Products item's family name); once it has sold, MercadoLibre
/// keeps the name, and the product says so while its other changes stand.
async fn an_item_is_renamed_only_while_it_has_no_sales(user_products: bool) {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = user_products);
    let ml = app.connect_mercadolibre(json!({})).await;
    let product = |name: &str, price: u32| {
        json!([{"sku": "RN-1", "name": name, "description": "d", "price": price, "stock": 2,
                "images": [{"url": "https://img.example/rn.jpg", "position": 1}]}])
    };
    let ids = app.upload(product("First name", 1000)).await;
    let campaign = app.campaign(&[ml], &ids).await;
    completed(&app, campaign, "publish").await;
    let shown = || {
        app.ml.with_api(|s| {
            let i = s.item_by_sku("RN-1").expect("listed");
            (
                i.family_name.clone().unwrap_or_else(|| i.title.clone()),
                i.price,
            )
        })
    };
    assert_eq!(shown(), ("First name".to_string(), 1000.0));

    app.upload(product("Second name", 1100)).await;
    completed(&app, campaign, "republish").await;
    assert_eq!(shown(), ("Second name".to_string(), 1100.0));

    app.ml.with_api(|s| {
        let id = s.item_by_sku("RN-1").expect("listed").id.clone();
        s.items.get_mut(&id).expect("an item").sold_quantity = 3;
    });
    app.upload(product("Third name", 1200)).await;
    let t = app.run(campaign, "republish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(
        shown(),
        ("Second name".to_string(), 1200.0),
        "the price changed, the name did not"
    );
    let field = if user_products {
        "family name"
    } else {
        "title"
    };
    let errors = errors(&app, campaign).await;
    assert!(
        errors.len() == 1
            && errors[0].1.starts_with(&format!(
                "MercadoLibre keeps the {field} of an item that has sold"
            ))
            && errors[0].1.contains("\"Second name\""),
        "{errors:?}"
    );
    assert_eq!(
        app.ml.stats().refused,
        Vec::<String>::new(),
        "nothing MercadoLibre would refuse was sent"
    );
}

#[tokio::test]
async fn a_mercadolibre_item_is_renamed_only_while_it_has_no_sales() {
    an_item_is_renamed_only_while_it_has_no_sales(false).await;
}

/// A User Products product that loses its variants, then gains them back, is listed as
/// exactly its items each time: a pause still reaches the variants' items, the next publish
/// closes them (MercadoLibre never reopens one) and gives the product an item of its own; a
/// republish after it gains variants closes that item and gives each variant a new one.
/// Before, the product kept its first variant's item as its own (sending the whole product's
/// price and stock to it) and the other variant stayed on sale; and a product that gained
/// variants kept its old item on sale beside theirs.
#[tokio::test]
async fn a_user_products_product_that_loses_or_gains_variants_is_listed_as_exactly_its_items() {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = true);
    let ml = app.connect_mercadolibre(json!({})).await;
    let with_variants = json!([{"sku": "UPV-1", "name": "Camisa", "description": "d",
        "price": 20000, "stock": 3,
        "variants": [
            {"sku": "UPV-1-S", "price": 20000, "stock": 1, "options": {"Size": "S"}},
            {"sku": "UPV-1-M", "price": 20000, "stock": 2, "options": {"Size": "M"}}],
        "images": [{"url": "https://img.example/upv-1/1.jpg", "position": 1}]}]);
    let mut alone = with_variants.clone();
    alone[0]["variants"] = json!([]);
    let p = app.upload(with_variants.clone()).await;
    let campaign = app.campaign(&[ml], &p).await;
    // The items on sale and the closed ones, by SELLER_SKU.
    let items = |status: &str| {
        let mut skus: Vec<String> = app.ml.with_api(|s| {
            s.items
                .values()
                .filter(|i| !i.deleted && i.status == status)
                .map(|i| i.seller_sku.clone())
                .collect()
        });
        skus.sort();
        skus
    };
    completed(&app, campaign, "publish").await;
    assert_eq!(items("active"), ["UPV-1-M", "UPV-1-S"]);

    // Its variants gone, a pause still reaches their items; the publish after it lists the
    // product as one item and closes theirs.
    app.upload(alone).await;
    completed(&app, campaign, "pause").await;
    assert_eq!(
        items("active"),
        Vec::<String>::new(),
        "nothing left on sale"
    );
    assert_eq!(items("paused"), ["UPV-1-M", "UPV-1-S"]);
    completed(&app, campaign, "publish").await;
    assert_eq!(items("active"), ["UPV-1"], "the product is one item now");
    assert_eq!(items("closed"), ["UPV-1-M", "UPV-1-S"]);
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");

    app.upload(with_variants).await;
    completed(&app, campaign, "republish").await;
    assert_eq!(
        items("active"),
        ["UPV-1-M", "UPV-1-S"],
        "an item per variant again"
    );
    assert_eq!(items("closed"), ["UPV-1", "UPV-1-M", "UPV-1-S"]);
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");
    assert_eq!(
        app.ml.stats().refused,
        Vec::<String>::new(),
        "nothing refused"
    );
}

#[tokio::test]
async fn a_user_products_item_is_renamed_only_while_it_has_no_sales() {
    an_item_is_renamed_only_while_it_has_no_sales(true).await;
}

/// On MercadoLibre's User Products model a variant taken out of a product takes its item off
/// sale: a republish closes it (as a classic item's variation left out of a republish is
/// deleted by MercadoLibre) and forgets it; the other variants' items stay as they are.
#[tokio::test]
async fn a_variant_taken_out_of_a_user_products_product_closes_its_item() {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = true);
    let ml = app.connect_mercadolibre(json!({})).await;
    let p = app.products("OUT", 1).await;
    let campaign = app.campaign(&[ml], &p).await;
    completed(&app, campaign, "publish").await;
    app.upload(
        json!([{"sku": "OUT-1", "name": "Product OUT 1", "description": "d",
        "price": 1001, "stock": 3,
        "variants": [{"sku": "OUT-1-M", "price": 1000, "stock": 2, "options": {"Size": "M"}}],
        "images": [{"url": "https://img.example/OUT-1/1.jpg", "position": 1},
                   {"url": "https://img.example/OUT-1/2.jpg", "position": 2}]}]),
    )
    .await;
    completed(&app, campaign, "republish").await;
    let statuses = app.ml.with_api(|s| {
        ["OUT-1-S", "OUT-1-M"].map(|sku| s.item_by_sku(sku).map(|i| i.status.clone()))
    });
    assert_eq!(
        statuses,
        [Some("closed".to_string()), Some("active".to_string())]
    );
    let rows = app.campaign_products(campaign).await;
    assert_eq!(
        rows[0]["marketplace_info"]["variant_ids"]
            .as_object()
            .map(|ids| ids.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["OUT-1-M".to_string()]),
        "{}",
        rows[0]
    );
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");
    assert_eq!(app.ml.stats().refused, Vec::<String>::new());
}

/// A seller moved to User Products keeps the classic items it had (the two models coexist):
/// campaignd goes on speaking classic to the product it listed so (its variants' ids are
/// variation ids, not items), through pause, publish, republish and a drift check, and lists a
/// new product one item per variant. Before, the classic item's variation ids were taken for
/// items: none was found, and the product would have been listed again beside it.
#[tokio::test]
async fn a_seller_moved_to_user_products_keeps_its_classic_items_as_they_are() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let old = app.products("MOVED", 1).await;
    let campaign = app.campaign(&[ml], &old).await;
    completed(&app, campaign, "publish").await;
    let listed = || {
        app.ml.with_api(|s| {
            let mut items: Vec<(String, usize, String)> = s
                .items
                .values()
                .filter(|i| !i.deleted)
                .map(|i| (i.seller_sku.clone(), i.variations.len(), i.status.clone()))
                .collect();
            items.sort();
            items
        })
    };
    let classic = listed();
    assert_eq!(classic.len(), 1, "one classic item: {classic:?}");
    assert_eq!(classic[0].1, 2, "with its two variations");

    app.ml.with_api(|s| s.user_products = true);
    for action in ["pause", "publish", "republish"] {
        completed(&app, campaign, action).await;
    }
    assert_eq!(listed(), classic, "the same classic item, active again");
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "{report}");

    let new = app.products("AFTER", 1).await;
    let second = app.campaign(&[ml], &new).await;
    completed(&app, second, "publish").await;
    let after: Vec<_> = listed()
        .into_iter()
        .filter(|(sku, _, _)| sku.starts_with("AFTER"))
        .collect();
    assert_eq!(after.len(), 2, "an item per variant: {after:?}");
    assert!(after.iter().all(|(_, variations, _)| *variations == 0));
    assert_eq!(
        app.ml.stats().refused,
        Vec::<String>::new(),
        "nothing refused"
    );
}
