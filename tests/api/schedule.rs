//! Campaigns that run themselves: dates, presale and sale prices, and the scheduler, driven by a
//! fake clock the tests move by hand (the service reads it; nothing here sleeps for time to
//! pass). Each step is an ordinary run whose tracker says `scheduled`; the simulators show what
//! a shop's customers would see at each step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::domain::clock::FakeClock;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_timed, TestApp, TestStore};

/// 2027-01-01T00:00:00Z.
pub const T0: i64 = 1_798_761_600_000;
pub const HOUR: i64 = 3_600_000;

/// A date as a shop in Chile would write it (RFC 3339 with its offset).
pub fn at(ms: i64) -> String {
    let offset = chrono::FixedOffset::west_opt(3 * 3600).expect("an offset");
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a date")
        .with_timezone(&offset)
        .to_rfc3339()
}

pub fn ms(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a date"))
        .expect("RFC 3339")
        .timestamp_millis()
}

pub async fn timed_app() -> (TestApp, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new(T0));
    let app = spawn_app_timed(TestStore::new(), Some(Arc::clone(&clock)), |c| {
        c.cluster.heartbeat_ms = 50;
    })
    .await;
    (app, clock)
}

/// Variants follow their product's discount, to the cent.
fn cut(variant: f64, sale: f64, regular: f64) -> f64 {
    (variant * sale / regular * 100.0).round() / 100.0
}

/// The campaign's trackers, oldest first.
pub async fn trackers(app: &TestApp, campaign: u64) -> Vec<Value> {
    let (status, v) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    assert_eq!(status, 200, "{v}");
    let mut list = v["data"].as_array().expect("data").clone();
    list.reverse();
    list
}

/// Waits until the campaign has `n` scheduled runs and the last one ended; returns it.
pub async fn scheduled_run(app: &TestApp, campaign: u64, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: Vec<_> = trackers(app, campaign)
            .await
            .into_iter()
            .filter(|t| t["metadata"]["scheduled"] == true)
            .collect();
        if list.len() == n && list[n - 1]["status"] != "active" {
            return list[n - 1].clone();
        }
        assert!(list.len() <= n, "more scheduled runs than steps: {list:?}");
        assert!(
            Instant::now() < deadline,
            "no scheduled run {n} ended: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn campaign_view(app: &TestApp, campaign: u64) -> Value {
    let (status, v) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A campaign created with `body` (name, marketplaces, dates), holding the products `add`
/// names (the body of `POST /api/campaigns/{id}/products`).
pub async fn dated_campaign(app: &TestApp, body: Value, add: Value) -> u64 {
    let campaign = app.created("/api/campaigns", body).await;
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/products"), add)
        .await;
    assert_eq!(status, 200, "{v}");
    campaign
}

pub async fn notifications(app: &TestApp) -> usize {
    let (status, v) = app.get("/api/notifications").await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_array().expect("data").len()
}

pub async fn patch(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.call(Method::PATCH, path, Some(body), Some(&app.token))
        .await
}

/// A price and the compare-at price beside it.
type Shown = (f64, Option<f64>);

/// The Jumpseller product of a SKU: (price, compare_at_price, each variant's).
fn jumpseller_prices(app: &TestApp, sku: &str) -> (f64, Option<f64>, Vec<Shown>) {
    app.jumpseller.with_api(|s| {
        let p = s
            .products
            .values()
            .find(|p| p.sku.as_deref() == Some(sku))
            .unwrap_or_else(|| panic!("{sku} is on Jumpseller"));
        let variants = p
            .variants
            .iter()
            .map(|v| (v.price, v.compare_at_price))
            .collect();
        (p.price, p.compare_at_price, variants)
    })
}

fn shopify_prices(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.shopify.with_api(|s| {
        let p = s.products.values().next().expect("a Shopify product");
        p.variants
            .iter()
            .map(|v| (v.price.clone(), v.compare_at_price.clone()))
            .collect()
    })
}

fn woo_prices(app: &TestApp) -> Vec<(String, String)> {
    app.woo.with_api(|s| {
        let p = s.products.values().next().expect("a WooCommerce product");
        p.variations
            .iter()
            .map(|v| (v.regular_price.clone(), v.sale_price.clone()))
            .collect()
    })
}

fn ml_prices(app: &TestApp) -> (f64, Vec<f64>, String) {
    app.ml.with_api(|s| {
        let item = s.items.values().next().expect("a MercadoLibre item");
        let variations = item.variations.iter().map(|v| v.price).collect();
        (item.price, variations, item.status.clone())
    })
}

#[tokio::test]
async fn a_campaign_goes_through_presale_sale_and_end_on_its_own_each_step_once() {
    let (app, clock) = timed_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let shop = app.connect_shopify(json!({})).await;
    // One product at 1001 with variants at 1000 and 1000.
    let p = app.products("S", 1).await;
    let (status, c) = app
        .post(
            "/api/campaigns",
            json!({"name": "Cyber", "marketplace_ids": [app.js, app.wc, ml, shop],
                   "presale_at": at(T0 + HOUR), "starts_at": at(T0 + 2 * HOUR),
                   "ends_at": at(T0 + 3 * HOUR)}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let campaign = c["id"].as_u64().expect("id");
    assert_eq!(ms(&c["starts_at"]), T0 + 2 * HOUR);
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/products"),
            json!({"products": [{"product_id": p[0], "sale_price": 800, "presale_price": 900}]}),
        )
        .await;
    assert_eq!((status, &v["added"]), (200, &json!(4)), "{v}");
    let view = campaign_view(&app, campaign).await;
    assert_eq!(view["next_scheduled"]["step"], "presale");
    assert_eq!(view["next_scheduled"]["action"], "publish");
    assert_eq!(ms(&view["next_scheduled"]["at"]), T0 + HOUR);
    assert_eq!(
        app.jumpseller.stats().requests,
        0,
        "nothing is sent before the presale"
    );

    // The presale: published at presale prices, the regular price shown beside them.
    clock.advance(HOUR);
    let presale = scheduled_run(&app, campaign, 1).await;
    assert_eq!(
        (
            &presale["action"],
            &presale["status"],
            &presale["metadata"]["step"]
        ),
        (&json!("publish"), &json!("completed"), &json!("presale"))
    );
    assert_eq!(presale["metadata"]["prices"], "presale");
    let (price, compare, variants) = jumpseller_prices(&app, "S-1");
    assert_eq!((price, compare), (900.0, Some(1001.0)));
    assert_eq!(
        variants,
        vec![
            (cut(1000.0, 900.0, 1001.0), Some(1000.0)),
            (cut(1000.0, 900.0, 1001.0), Some(1000.0))
        ]
    );
    assert_eq!(
        shopify_prices(&app),
        vec![
            (
                format!("{:.2}", cut(1000.0, 900.0, 1001.0)),
                Some("1000.00".into())
            ),
            (
                format!("{:.2}", cut(1000.0, 900.0, 1001.0)),
                Some("1000.00".into())
            )
        ]
    );
    let woo = woo_prices(&app);
    assert_eq!(
        woo[0],
        ("1000".to_string(), cut(1000.0, 900.0, 1001.0).to_string())
    );
    let (ml_price, ml_variations, ml_status) = ml_prices(&app);
    assert_eq!((ml_price, ml_status.as_str()), (900.0, "active"));
    // MercadoLibre's Chilean pesos have no decimals: the cut price in whole pesos.
    assert_eq!(ml_variations[1], cut(1000.0, 900.0, 1001.0).round());
    let js_log = app.jumpseller.stats().log.len();

    // The start: republished with sale prices, and on Jumpseller nothing but the prices.
    clock.advance(HOUR);
    let start = scheduled_run(&app, campaign, 2).await;
    assert_eq!(
        (
            &start["action"],
            &start["status"],
            &start["metadata"]["step"]
        ),
        (&json!("republish"), &json!("completed"), &json!("start"))
    );
    let (price, compare, variants) = jumpseller_prices(&app, "S-1");
    assert_eq!((price, compare), (800.0, Some(1001.0)));
    assert_eq!(variants[0], (cut(1000.0, 800.0, 1001.0), Some(1000.0)));
    let sent: Vec<_> = app.jumpseller.stats().log[js_log..].to_vec();
    assert!(!sent.is_empty());
    for r in &sent {
        assert_eq!(r.method, "PUT", "only updates: {} {}", r.method, r.path);
        let body = r.body.as_ref().expect("a body");
        let fields = body
            .get("product")
            .or_else(|| body.get("variant"))
            .and_then(Value::as_object)
            .expect("a product or a variant");
        let mut names: Vec<_> = fields.keys().map(String::as_str).collect();
        names.sort();
        let allowed = ["compare_at_price", "name", "price", "status"];
        assert!(
            names.iter().all(|n| allowed.contains(n)),
            "{} sent more than prices: {names:?}",
            r.path
        );
    }
    assert_eq!(shopify_prices(&app)[1].1.as_deref(), Some("1000.00"));
    assert_eq!(
        woo_prices(&app)[1].1,
        cut(1000.0, 800.0, 1001.0).to_string()
    );
    assert_eq!(ml_prices(&app).0, 800.0);

    // The end: finished everywhere, MercadoLibre's regular price restored before it closed.
    clock.advance(HOUR);
    let end = scheduled_run(&app, campaign, 3).await;
    assert_eq!(
        (&end["action"], &end["status"], &end["metadata"]["step"]),
        (&json!("finish"), &json!("completed"), &json!("end"))
    );
    let (ml_price, ml_variations, ml_status) = ml_prices(&app);
    assert_eq!((ml_price, ml_status.as_str()), (1001.0, "closed"));
    assert_eq!(ml_variations, vec![1000.0, 1000.0]);
    app.jumpseller
        .with_api(|s| assert!(s.products.is_empty(), "deleted on Jumpseller"));
    app.shopify.with_api(|s| {
        assert!(s.products.values().all(|p| p.status == "archived"));
    });
    let view = campaign_view(&app, campaign).await;
    assert_eq!(view["status"], "finished");
    assert_eq!(view["next_scheduled"], Value::Null);
    let steps = view["scheduled_steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert!(steps
        .iter()
        .all(|s| s["skipped"].is_null() && s["tracker_id"].is_u64()));
    // Each step notified, and each created nothing twice.
    assert_eq!(notifications(&app).await, 3);
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
    assert!(app.shopify.stats().duplicate_skus().is_empty());
    assert!(app.woo.stats().duplicate_skus().is_empty());
    assert!(app.ml.stats().duplicate_skus().is_empty());
    assert_eq!(trackers(&app, campaign).await.len(), 3);
}

#[tokio::test]
async fn a_step_due_while_the_service_was_down_runs_once_after_it() {
    let (mut app, clock) = timed_app().await;
    let p = app.products("D", 3).await;
    let campaign = dated_campaign(
        &app,
        json!({"name": "Night", "marketplace_ids": [app.js], "starts_at": at(T0 + HOUR),
                   "ends_at": at(T0 + 5 * HOUR)}),
        json!({"product_ids": p}),
    )
    .await;
    app.stop_in_background().join().expect("stopped");
    // Down across the start.
    clock.advance(2 * HOUR);
    app.start_again();
    let run = scheduled_run(&app, campaign, 1).await;
    assert_eq!(
        (&run["action"], &run["status"]),
        (&json!("publish"), &json!("completed"))
    );
    assert!(app.all_are(campaign, "published").await);
    app.restart();
    let view = campaign_view(&app, campaign).await;
    assert_eq!(view["next_scheduled"]["step"], "end");
    assert_eq!(view["scheduled_steps"].as_array().map(Vec::len), Some(1));
    assert_eq!(trackers(&app, campaign).await.len(), 1);
    assert_eq!(app.jumpseller.stats().sku_creations.get("D-1"), Some(&1));
}

#[tokio::test]
async fn a_service_down_through_presale_and_start_only_starts() {
    let (mut app, clock) = timed_app().await;
    app.products("W", 1).await;
    let campaign = dated_campaign(
        &app,
        json!({"name": "Late", "marketplace_ids": [app.js],
                   "presale_at": at(T0 + HOUR), "starts_at": at(T0 + 2 * HOUR)}),
        json!({"products": [{"sku": "W-1", "sale_price": 500, "presale_price": 700}]}),
    )
    .await;
    app.stop_in_background().join().expect("stopped");
    clock.advance(3 * HOUR);
    app.start_again();
    let run = scheduled_run(&app, campaign, 1).await;
    assert_eq!(run["metadata"]["step"], "start");
    assert_eq!(jumpseller_prices(&app, "W-1").0, 500.0);
    let view = campaign_view(&app, campaign).await;
    let steps = view["scheduled_steps"].as_array().expect("steps").clone();
    assert_eq!(steps[0]["step"], "presale");
    assert!(steps[0]["skipped"]
        .as_str()
        .is_some_and(|s| s.contains("start")));
    assert_eq!(steps[1]["step"], "start");
}

#[tokio::test]
async fn a_step_that_meets_a_running_action_waits_for_it() {
    let (app, clock) = timed_app().await;
    let p = app.products("H", 2).await;
    let campaign = dated_campaign(
        &app,
        json!({"name": "Busy", "marketplace_ids": [app.js], "starts_at": at(T0 + HOUR)}),
        json!({"products": [{"product_id": p[0], "sale_price": 600}, {"product_id": p[1], "sale_price": 650}]}),
    )
    .await;
    app.jumpseller.hold();
    // A manual publish before the start, at regular prices.
    let manual = app.action(campaign, "publish", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.jumpseller.waiting() == 0 {
        assert!(
            Instant::now() < deadline,
            "the publish never reached Jumpseller"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance(HOUR);
    // The scheduler says on the running tracker that the start waits for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = app.tracker(manual).await;
        let told = t["metadata"]["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e.as_str().is_some_and(|s| s.contains("waits")))
        });
        if told {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the start never met the run: {t}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let view = campaign_view(&app, campaign).await;
    assert_eq!(view["next_scheduled"]["waiting_for_tracker_id"], manual);
    app.jumpseller.release();
    let t = app.wait(manual).await;
    assert_eq!(
        t["status"], "completed",
        "the manual run was not forced: {t}"
    );
    let start = scheduled_run(&app, campaign, 1).await;
    assert_eq!(
        (&start["action"], &start["status"]),
        (&json!("republish"), &json!("completed"))
    );
    assert_eq!(jumpseller_prices(&app, "H-1").0, 600.0);
    assert_eq!(jumpseller_prices(&app, "H-2").0, 650.0);
}

#[tokio::test]
async fn bad_dates_and_prices_are_refused_and_change_nothing() {
    let (app, _clock) = timed_app().await;
    let p = app.products("B", 2).await;
    let refused = |body: Value| {
        let app = &app;
        async move {
            let (status, v) = app.post("/api/campaigns", body).await;
            assert_eq!(status, 422, "{v}");
            assert_eq!(v["error"], "validation_failed", "{v}");
            v["message"].as_str().unwrap_or("").to_string()
        }
    };
    let base = |extra: Value| {
        let mut b = json!({"name": "X", "marketplace_ids": [app.js]});
        if let (Some(b), Value::Object(e)) = (b.as_object_mut(), extra) {
            b.extend(e);
        }
        b
    };
    let m = refused(base(
        json!({"starts_at": at(T0 + 2 * HOUR), "ends_at": at(T0 + HOUR)}),
    ))
    .await;
    assert!(m.contains("starts_at must come before ends_at"), "{m}");
    let m = refused(base(json!({"starts_at": at(T0 - HOUR)}))).await;
    assert!(m.contains("in the past"), "{m}");
    let m = refused(base(json!({"presale_at": at(T0 + HOUR)}))).await;
    assert!(m.contains("presale_at needs a starts_at"), "{m}");
    let m = refused(base(json!({"starts_at": "2027-01-02 10:00"}))).await;
    assert!(m.contains("RFC 3339"), "{m}");
    let (_, list) = app.get("/api/campaigns").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));

    let campaign = app
        .created(
            "/api/campaigns",
            base(json!({"starts_at": at(T0 + HOUR), "ends_at": at(T0 + 2 * HOUR)})),
        )
        .await;
    let add = |body: Value| {
        let app = &app;
        async move {
            app.post(&format!("/api/campaigns/{campaign}/products"), body)
                .await
        }
    };
    // B-1 costs 1001.
    let (status, v) = add(json!({"products": [{"product_id": p[0], "sale_price": 1500}]})).await;
    assert_eq!(status, 422, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap_or("")
        .contains("above the product's price"));
    let (status, v) = add(json!({"products": [{"product_id": p[0], "sale_price": 500},
                                             {"product_id": 999, "sale_price": 1}]}))
    .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = add(json!({"products": [{"sku": "NOPE", "sale_price": 1}]})).await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = add(json!({"products": [{"product_id": p[0], "presale_price": -3}]})).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        app.campaign_products(campaign).await.is_empty(),
        "nothing was added"
    );

    let (status, _) = add(json!({"products": [{"product_id": p[0], "sale_price": 700}]})).await;
    assert_eq!(status, 200);
    let path = format!("/api/campaigns/{campaign}/products");
    let (status, v) = patch(&app, &path, json!([{"product_id": p[1], "sale_price": 10}])).await;
    assert_eq!(status, 422, "not in the campaign: {v}");
    let (status, v) = patch(
        &app,
        &path,
        json!([{"product_id": p[0], "sale_price": 5000}]),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let rows = app.campaign_products(campaign).await;
    assert_eq!(rows[0]["sale_price"], 700.0, "unchanged by refusals");
    let (status, v) = patch(
        &app,
        &path,
        json!([{"sku": "B-1", "sale_price": 650, "presale_price": 900}]),
    )
    .await;
    assert_eq!((status, &v["updated"]), (200, &json!(1)), "{v}");
    let rows = app.campaign_products(campaign).await;
    assert_eq!(
        (&rows[0]["sale_price"], &rows[0]["presale_price"]),
        (&json!(650.0), &json!(900.0))
    );

    // Dates: a PATCH in the wrong order changes nothing; a null clears one.
    let c = format!("/api/campaigns/{campaign}");
    let (status, v) = patch(&app, &c, json!({"ends_at": at(T0 + HOUR / 2)})).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        ms(&campaign_view(&app, campaign).await["ends_at"]),
        T0 + 2 * HOUR
    );
    let (status, v) = patch(
        &app,
        &c,
        json!({"ends_at": null, "starts_at": at(T0 + 3 * HOUR)}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ends_at"], Value::Null);
    assert_eq!(ms(&v["next_scheduled"]["at"]), T0 + 3 * HOUR);
    let (status, v) = patch(&app, &c, json!({"name": "renamed"})).await;
    assert_eq!(status, 422, "unknown field: {v}");
}

#[tokio::test]
async fn quiet_actions_and_quiet_schedules_write_no_notification() {
    let (app, clock) = timed_app().await;
    let p = app.products("Q", 2).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let t = app.run(campaign, "publish", json!({"notify": false})).await;
    assert_eq!(
        (&t["status"], &t["metadata"]["notify"]),
        (&json!("completed"), &json!(false))
    );
    assert_eq!(notifications(&app).await, 0);
    let t = app.run(campaign, "pause", json!({})).await;
    assert_eq!(t["status"], "completed");
    assert_eq!(notifications(&app).await, 1, "an ordinary action notifies");

    let quiet = app
        .created(
            "/api/campaigns",
            json!({"name": "Quiet", "marketplace_ids": [app.js], "starts_at": at(T0 + HOUR),
                   "notify_scheduled": false}),
        )
        .await;
    let more = app.products("R", 1).await;
    let (status, _) = app
        .post(
            &format!("/api/campaigns/{quiet}/products"),
            json!({"product_ids": more}),
        )
        .await;
    assert_eq!(status, 200);
    clock.advance(HOUR);
    let run = scheduled_run(&app, quiet, 1).await;
    assert_eq!(
        (&run["status"], &run["metadata"]["notify"]),
        (&json!("completed"), &json!(false))
    );
    assert_eq!(notifications(&app).await, 1);
}

#[tokio::test]
async fn a_republish_after_a_price_change_sends_only_the_prices_to_jumpseller() {
    let (app, _clock) = timed_app().await;
    let p = app.products("P", 2).await;
    // A campaign without dates: its sale prices apply whenever it is published.
    let campaign = dated_campaign(
        &app,
        json!({"name": "Plain", "marketplace_ids": [app.js, app.wc]}),
        json!({"products": [{"product_id": p[0], "sale_price": 900}, {"product_id": p[1]}]}),
    )
    .await;
    app.run(campaign, "publish", json!({})).await;
    assert_eq!(jumpseller_prices(&app, "P-1").1, Some(1001.0));
    assert_eq!(
        jumpseller_prices(&app, "P-2"),
        (1002.0, None, vec![(1000.0, None), (1000.0, None)])
    );
    let (status, _) = patch(
        &app,
        &format!("/api/campaigns/{campaign}/products"),
        json!([{"product_id": p[0], "sale_price": 850}]),
    )
    .await;
    assert_eq!(status, 200);
    let before = app.jumpseller.stats().log.len();
    let t = app.run(campaign, "republish", json!({})).await;
    assert_eq!(t["status"], "completed");
    let log = app.jumpseller.stats().log[before..].to_vec();
    let p1 = app.jumpseller.with_api(|s| {
        s.products
            .values()
            .find(|x| x.sku.as_deref() == Some("P-1"))
            .map(|x| x.id)
            .expect("P-1")
    });
    let mine: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with(&format!("/v1/products/{p1}")))
        .collect();
    // The product and its two variants, with prices alone; no image again.
    assert_eq!(
        mine.len(),
        3,
        "{:?}",
        mine.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for r in &mine {
        let body = r.body.as_ref().expect("a body").to_string();
        assert!(
            !body.contains("description") && !body.contains("\"sku\""),
            "{body}"
        );
        assert!(!r.path.contains("images"));
    }
    assert_eq!(jumpseller_prices(&app, "P-1").0, 850.0);
    // P-2 did not change: it is sent as a republish always was.
    let p2_full = log.iter().any(|r| {
        r.body
            .as_ref()
            .is_some_and(|b| b.to_string().contains("\"sku\":\"P-2\""))
    });
    assert!(p2_full, "an unchanged product is republished whole");
    let woo = app.woo.with_api(|s| {
        s.products
            .values()
            .find(|x| x.sku == "P-1")
            .map(|x| x.variations[0].sale_price.clone())
    });
    assert_eq!(woo, Some(cut(1000.0, 850.0, 1001.0).to_string()));
}

#[tokio::test]
async fn a_failed_step_is_reported_and_not_taken_again() {
    let (app, clock) = timed_app().await;
    app.jumpseller.set_knobs(|k| {
        k.reject_skus
            .insert("F-1".to_string(), "Name is reserved".to_string());
    });
    let p = app.products("F", 2).await;
    let campaign = dated_campaign(
        &app,
        json!({"name": "Flaky", "marketplace_ids": [app.js], "starts_at": at(T0 + HOUR)}),
        json!({"product_ids": p}),
    )
    .await;
    clock.advance(HOUR);
    let run = scheduled_run(&app, campaign, 1).await;
    assert_eq!(run["has_failures"], true, "{run}");
    let (_, n) = app.get("/api/notifications").await;
    let message = n["data"][0]["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("1 errored"), "{message}");
    let view = campaign_view(&app, campaign).await;
    assert_eq!(view["scheduled_steps"][0]["tracker_id"], run["id"]);
    // Nothing is due any more: the errored product waits for a retry by hand.
    assert_eq!(view["next_scheduled"], Value::Null);
    app.jumpseller.set_knobs(|k| k.reject_skus.clear());
    clock.advance(HOUR);
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let t = app.wait(v["tracker_id"].as_u64().expect("tracker")).await;
    assert_eq!(t["metadata"]["scheduled"], false);
    assert!(app.all_are(campaign, "published").await);
    assert_eq!(trackers(&app, campaign).await.len(), 2);
}
