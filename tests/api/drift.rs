//! Drift reports: a read-only run reads each product's remote state by its stored ids and lists
//! what differs from campaignd's state, after products were changed behind its back directly
//! in the simulators. It changes nothing, neither at the marketplaces nor in the campaign.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Runs a drift check of `campaign` to its end and answers the report.
async fn drift(app: &TestApp, campaign: u64) -> Value {
    app.drift(campaign).await
}

/// The report's differences as (sku, marketplace, kind, detail).
fn differences(report: &Value) -> Vec<(String, u64, String, Value)> {
    let mut out = Vec::new();
    for row in report["data"].as_array().expect("rows") {
        for d in row["differences"].as_array().expect("differences") {
            let mut detail = d.clone();
            detail.as_object_mut().expect("an object").remove("kind");
            out.push((
                row["sku"].as_str().expect("a sku").to_string(),
                row["marketplace_id"].as_u64().expect("an id"),
                d["kind"].as_str().expect("a kind").to_string(),
                detail,
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    out
}

fn logs(app: &TestApp) -> [Vec<::marketplaces::sim::Logged>; 4] {
    [
        app.jumpseller.stats().log,
        app.woo.stats().log,
        app.ml.stats().log,
        app.shopify.stats().log,
    ]
}

/// The requests a plan says each connection's run sends.
fn planned(plan: &Value, connections: &[u64]) -> Vec<u64> {
    connections
        .iter()
        .map(|c| {
            plan["marketplaces"]
                .as_array()
                .expect("marketplaces")
                .iter()
                .find(|m| m["marketplace_id"] == *c)
                .and_then(|m| m["requests"].as_u64())
                .unwrap_or_else(|| panic!("connection {c} in {plan}"))
        })
        .collect()
}

/// The requests each simulator received since `before`.
fn since(app: &TestApp, before: [u64; 4]) -> Vec<u64> {
    requests(app)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .collect()
}

fn requests(app: &TestApp) -> [u64; 4] {
    [
        app.jumpseller.stats().requests,
        app.woo.stats().requests,
        app.ml.stats().requests,
        app.shopify.stats().requests,
    ]
}

#[tokio::test]
async fn a_drift_report_lists_exactly_what_was_changed_behind_campaignds_back() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let sh = app.connect_shopify(json!({})).await;
    let products = app.products("DR", 3).await;
    let campaign = app.campaign(&[app.js, app.wc, ml, sh], &products).await;
    let before = requests(&app);
    let done = app.run(campaign, "publish", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let publish: Vec<u64> = requests(&app)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .collect();

    // Nothing changed yet: every product is read, nothing differs, and the plan said so.
    let (_, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/drift"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(plan["dry_run"], true, "{plan}");
    let before = requests(&app);
    let clean = drift(&app, campaign).await;
    assert_eq!(
        (clean["checked"].as_u64(), clean["differing"].as_u64()),
        (Some(12), Some(0)),
        "{clean}"
    );
    let connections = [app.js, app.wc, ml, sh];
    let sent = since(&app, before);
    let foretold = planned(&plan, &connections);
    println!("clean drift check: planned {foretold:?}, sent {sent:?}");
    for ((c, planned), sent) in connections.iter().zip(&foretold).zip(&sent) {
        // A batch that did not fill before it left makes one request more.
        assert!(
            planned <= sent && *sent <= 3 + 3,
            "{c}: planned {planned}, sent {sent}"
        );
    }
    assert_eq!(foretold[0], sent[0], "Jumpseller reads alone");

    // Behind campaignd's back: a product deleted on Jumpseller, a variation's price changed and
    // a product trashed on WooCommerce, an item closed on MercadoLibre, a product deleted on
    // Shopify.
    let rows = app.campaign_products(campaign).await;
    let remote_id = |sku: &str, connection: u64| {
        rows.iter()
            .find(|r| r["sku"] == sku && r["marketplace_id"] == connection)
            .and_then(|r| {
                r["marketplace_info"]["product_id"]
                    .as_str()
                    .map(str::to_string)
            })
            .expect("a remote id")
    };
    let js_1: u64 = remote_id("DR-1", app.js).parse().unwrap();
    app.jumpseller.with_api(|s| s.products.remove(&js_1));
    let wc_2: u64 = remote_id("DR-2", app.wc).parse().unwrap();
    let wc_3: u64 = remote_id("DR-3", app.wc).parse().unwrap();
    app.woo.with_api(|s| {
        let p = s.products.get_mut(&wc_2).expect("DR-2");
        let v = p
            .variations
            .iter_mut()
            .find(|v| v.sku == "DR-2-S")
            .expect("DR-2-S");
        v.regular_price = "999".into();
        s.products.get_mut(&wc_3).expect("DR-3").status = "trash".into();
    });
    let ml_1 = remote_id("DR-1", ml);
    app.ml
        .with_api(|s| s.items.get_mut(&ml_1).expect("DR-1").status = "closed".into());
    let sh_2: u64 = remote_id("DR-2", sh).parse().unwrap();
    app.shopify.with_api(|s| s.products.remove(&sh_2));

    let before = requests(&app);
    let marks = logs(&app).map(|l| l.len());
    let report = drift(&app, campaign).await;
    let check: Vec<u64> = requests(&app)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(
        differences(&report),
        vec![
            ("DR-1".into(), app.js, "missing".into(), json!({})),
            (
                "DR-1".into(),
                ml,
                "status".into(),
                json!({"expected": "active", "found": "closed"})
            ),
            (
                "DR-2".into(),
                app.wc,
                "price".into(),
                json!({"sku": "DR-2-S", "expected": 1000.0, "found": 999.0})
            ),
            ("DR-2".into(), sh, "missing".into(), json!({})),
            (
                "DR-3".into(),
                app.wc,
                "status".into(),
                json!({"expected": "publish", "found": "trash"})
            ),
        ],
        "{report}"
    );
    let counts: BTreeMap<String, u64> = serde_json::from_value(report["counts"].clone()).unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("missing".into(), 2),
            ("price".into(), 1),
            ("status".into(), 2)
        ])
    );
    assert_eq!(report["differing"], 5);
    assert_eq!(report["checked"], 12);

    // It changed nothing: every product is still published, nothing was created or written.
    assert!(app.all_are(campaign, "published").await);
    for (log, mark) in logs(&app).iter().zip(marks) {
        for l in &log[mark..] {
            let query = l
                .body
                .as_ref()
                .and_then(|b| b["query"].as_str())
                .unwrap_or("");
            assert!(
                l.method == "GET" || query.starts_with("query"),
                "a drift check only reads: {} {} {query}",
                l.method,
                l.path
            );
        }
    }
    for stats in [
        app.jumpseller.stats(),
        app.woo.stats(),
        app.ml.stats(),
        app.shopify.stats(),
    ] {
        assert!(stats.duplicate_skus().is_empty());
    }
    println!("requests: publish {publish:?}, drift check {check:?}");
    // Jumpseller reads one product a request (it has no multiget), and looks the missing one
    // up by SKU.
    assert_eq!(check[0], 3 + 1, "{check:?}");
    // WooCommerce lists the products by id in one request (the trashed one is not listed, and
    // is read alone), then each one's variations.
    assert!((1 + 1 + 3..=3 + 1 + 3).contains(&check[1]), "{check:?}");
    // MercadoLibre's multiget and Shopify's `nodes` read several products a request (and
    // Shopify looks the missing one up by SKU).
    assert!(check[2] < 3, "{check:?}");
    assert!(check[3] < 3 + 1, "{check:?}");

    // Reconcile: its plan first, then the repairs.
    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/reconcile"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["total_products"], 5, "{plan}");
    let before = requests(&app);
    let (status, started) = app
        .post(&format!("/api/campaigns/{campaign}/reconcile"), json!({}))
        .await;
    assert_eq!(status, 200, "{started}");
    let done = app.wait(started["tracker_id"].as_u64().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let sent = since(&app, before);
    let foretold = planned(&plan, &connections);
    println!("reconcile: planned {foretold:?}, sent {sent:?}");
    // Each repair as planned, the SKU look-ups of the missing products first (Jumpseller's
    // and Shopify's), and WooCommerce's batches at the least.
    assert_eq!(
        (foretold[0], foretold[2], foretold[3]),
        (sent[0], sent[2], sent[3]),
        "planned {foretold:?}, sent {sent:?}"
    );
    assert!(
        foretold[1] <= sent[1],
        "planned {foretold:?}, sent {sent:?}"
    );
    // What could be fixed is: the deleted products are there again (found by SKU first, then
    // created once), the price and the trashed product are back. The closed MercadoLibre item
    // cannot be: the product is errored with MercadoLibre's reason.
    let statuses = app.statuses(campaign).await;
    let errored: Vec<_> = statuses.iter().filter(|s| s.2 != "published").collect();
    assert_eq!(
        errored,
        vec![&("DR-1".to_string(), ml, "errored".to_string())],
        "{statuses:?}"
    );
    let rows = app.campaign_products(campaign).await;
    let closed = rows
        .iter()
        .find(|r| r["sku"] == "DR-1" && r["marketplace_id"] == ml)
        .unwrap();
    assert!(
        closed["error_message"].as_str().unwrap().contains("closed"),
        "{closed}"
    );
    let one_each = |skus: Vec<String>| {
        for sku in ["DR-1", "DR-2", "DR-3"] {
            assert_eq!(
                skus.iter().filter(|s| *s == sku).count(),
                1,
                "{sku} in {skus:?}"
            );
        }
    };
    one_each(app.jumpseller.with_api(|s| {
        s.products
            .values()
            .map(|p| p.sku.clone().unwrap_or_default())
            .collect()
    }));
    one_each(app.shopify.with_api(|s| {
        s.products
            .values()
            .filter_map(|p| {
                p.variants
                    .first()
                    .map(|v| v.sku.trim_end_matches("-S").to_string())
            })
            .collect()
    }));
    let (_, after) = app.get(&format!("/api/campaigns/{campaign}/drift")).await;
    assert_eq!(after["repaired"], 4, "{after}");
    // Checked again, the repaired products match; the errored one is campaignd's to retry
    // or delete, and is not checked.
    let again = drift(&app, campaign).await;
    assert_eq!(differences(&again), vec![], "{again}");
    assert_eq!(again["checked"], 11, "{again}");
}

/// The notifications' messages, newest first.
async fn messages(app: &TestApp) -> Vec<String> {
    let (status, v) = app.get("/api/notifications").await;
    assert_eq!(status, 200, "{v}");
    let mut list: Vec<_> = v["data"].as_array().expect("data").clone();
    list.sort_by_key(|n| std::cmp::Reverse(n["id"].as_u64()));
    list.iter()
        .map(|n| n["message"].as_str().expect("a message").to_string())
        .collect()
}

#[tokio::test]
async fn a_periodic_drift_check_runs_every_so_many_hours_and_tells_only_what_it_finds() {
    use crate::schedule::{at, campaign_view, ms, patch, scheduled_run, timed_app, trackers};
    use crate::schedule::{HOUR, T0};
    let (app, clock) = timed_app().await;
    let products = app.products("PD", 2).await;

    // Out of range or not a number: refused, and nothing is created.
    for every in [json!(0), json!(8761), json!("6"), json!(-1)] {
        let (status, v) = app
            .post(
                "/api/campaigns",
                json!({"name": "W", "marketplace_ids": [app.js], "drift_every_hours": every}),
            )
            .await;
        assert_eq!(
            (status, &v["error"]),
            (422, &json!("validation_failed")),
            "{every}: {v}"
        );
    }
    let (_, list) = app.get("/api/campaigns").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0), "{list}");

    let (status, c) = app
        .post(
            "/api/campaigns",
            json!({"name": "Watched", "marketplace_ids": [app.js], "drift_every_hours": 6}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let campaign = c["id"].as_u64().expect("id");
    assert_eq!(c["drift_every_hours"], 6);
    assert_eq!(ms(&c["next_drift_check_at"]), T0 + 6 * HOUR);
    assert_eq!(c["last_periodic_drift_check"], Value::Null);
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/products"),
            json!({"product_ids": products}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let done = app.run(campaign, "publish", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let told = messages(&app).await.len();
    let sent = app.jumpseller.stats().log.len();

    // Six hours on: a drift check of its own, which reads and finds nothing to tell.
    clock.advance(6 * HOUR);
    let first = scheduled_run(&app, campaign, 1).await;
    assert_eq!(
        (
            &first["action"],
            &first["status"],
            &first["metadata"]["step"]
        ),
        (&json!("drift"), &json!("completed"), &json!("drift")),
        "{first}"
    );
    let log = app.jumpseller.stats().log;
    assert_eq!(log.len() - sent, 2, "one read per product on Jumpseller");
    assert!(
        log[sent..].iter().all(|r| r.method == "GET"),
        "it only reads"
    );
    assert_eq!(
        messages(&app).await.len(),
        told,
        "nothing differs, nothing to tell"
    );
    let view = campaign_view(&app, campaign).await;
    assert_eq!(view["last_periodic_drift_check"]["tracker_id"], first["id"]);
    assert_eq!(view["last_periodic_drift_check"]["step"], "drift");
    assert_eq!(ms(&view["next_drift_check_at"]), T0 + 12 * HOUR);

    // A product deleted behind campaignd's back: the next check finds it and says so.
    let rows = app.campaign_products(campaign).await;
    let gone: u64 = rows
        .iter()
        .find(|r| r["sku"] == "PD-1")
        .and_then(|r| r["marketplace_info"]["product_id"].as_str())
        .expect("PD-1's remote id")
        .parse()
        .expect("a number");
    app.jumpseller.with_api(|s| s.products.remove(&gone));
    clock.advance(6 * HOUR);
    let second = scheduled_run(&app, campaign, 2).await;
    assert_eq!(second["status"], "completed", "{second}");
    let said = messages(&app).await;
    assert_eq!(said.len(), told + 1, "{said:?}");
    assert_eq!(
        said[0],
        "Watched: 2 products checked, 1 differs (1 missing) on 1 marketplace",
    );
    let (status, report) = app.get(&format!("/api/campaigns/{campaign}/drift")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["tracker"]["id"], &report["differing"]),
        (&second["id"], &json!(1)),
        "{report}"
    );
    assert_eq!(
        ms(&campaign_view(&app, campaign).await["next_drift_check_at"]),
        T0 + 18 * HOUR
    );

    // A bad period changes nothing; null turns the check off.
    let path = format!("/api/campaigns/{campaign}");
    for every in [json!(0), json!(9000), json!("x")] {
        let (status, v) = patch(&app, &path, json!({"drift_every_hours": every})).await;
        assert_eq!(status, 422, "{every}: {v}");
    }
    assert_eq!(campaign_view(&app, campaign).await["drift_every_hours"], 6);
    let (status, v) = patch(&app, &path, json!({"drift_every_hours": null})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["drift_every_hours"], &v["next_drift_check_at"]),
        (&Value::Null, &Value::Null),
        "{v}"
    );

    // Another campaign's check, due just after this one's would have been: the look that takes
    // it looked at this campaign first. Nothing was sent for it, so it is passed over.
    clock.advance(5 * HOUR + HOUR / 2);
    let (status, other) = app
        .post(
            "/api/campaigns",
            json!({"name": "Empty", "marketplace_ids": [app.js], "drift_every_hours": 1,
                   "ends_at": at(T0 + 100 * HOUR)}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_u64().expect("id");
    clock.advance(HOUR + HOUR / 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let passed = loop {
        let view = campaign_view(&app, other).await;
        if !view["last_periodic_drift_check"].is_null() {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no check was taken: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let last = &passed["last_periodic_drift_check"];
    assert_eq!(
        (&last["tracker_id"], last["skipped"].as_str()),
        (
            &Value::Null,
            Some("no product of this campaign can be checked for drift in its current status")
        ),
        "{passed}"
    );
    assert_eq!(ms(&passed["next_drift_check_at"]), T0 + 20 * HOUR);
    assert_eq!(
        passed["next_scheduled"]["step"], "end",
        "the dated steps are its own"
    );
    assert!(trackers(&app, other).await.is_empty());
    let runs = trackers(&app, campaign).await;
    assert_eq!(runs.len(), 3, "the publish and two checks: {runs:?}");
}

#[tokio::test]
async fn a_drift_check_on_shopifys_rest_api_plans_one_list_and_reads_each_product_once_in_lists() {
    let app = spawn_app().await;
    let sh = app
        .connect_shopify(json!({"settings": {"api": "rest"}}))
        .await;
    let products = app.products("SR", 3).await;
    let campaign = app.campaign(&[sh], &products).await;
    let done = app.run(campaign, "publish", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let rows = app.campaign_products(campaign).await;
    let mut remote: Vec<String> = rows
        .iter()
        .map(|r| {
            r["marketplace_info"]["product_id"]
                .as_str()
                .expect("an id")
                .to_string()
        })
        .collect();
    remote.sort();

    // The plan says one request, and the check sends exactly that one.
    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/drift"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["marketplaces"][0]["requests"], 1, "{plan}");
    let before = app.shopify.stats().log.len();
    let report = drift(&app, campaign).await;
    assert_eq!(
        (&report["checked"], &report["differing"]),
        (&json!(3), &json!(0)),
        "{report}"
    );
    // Reads are gathered into lists as they come; how many lists a machine this busy sends
    // depends on its speed, so the check is that each product is read once, in a list.
    let sent = app.shopify.stats().log[before..].to_vec();
    let mut asked: Vec<String> = Vec::new();
    for read in &sent {
        assert!(
            read.method == "GET" && read.path.ends_with("/products.json"),
            "only list reads: {sent:?}"
        );
        asked.extend(read.query["ids"].split(',').map(str::to_string));
    }
    asked.sort();
    assert_eq!(asked, remote, "each product read once: {sent:?}");

    // One product deleted in the shop: the list leaves it out, and its SKU is looked up.
    let gone: u64 = remote[1].parse().expect("a number");
    app.shopify.with_api(|s| s.products.remove(&gone));
    let before = app.shopify.stats().log.len();
    let report = drift(&app, campaign).await;
    let found = differences(&report);
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!((found[0].1, found[0].2.as_str()), (sh, "missing"));
    let sent = app.shopify.stats().log[before..].to_vec();
    let (lists, others): (Vec<_>, Vec<_>) = sent
        .iter()
        .map(|l| (l.method.as_str(), l.path.rsplit('/').next().unwrap_or("")))
        .partition(|p| *p == ("GET", "products.json"));
    assert!(!lists.is_empty(), "{sent:?}");
    assert_eq!(others, [("POST", "graphql.json")], "one look-up: {sent:?}");
}

/// On MercadoLibre's User Products model a product is an item per variant: a check reads each
/// item and says which variant's item is gone, which price and which status differ; a
/// reconcile lists the gone one again (looked up by its SKU first) and puts the rest back.
#[tokio::test]
async fn a_user_products_sellers_items_are_checked_and_repaired_one_by_one() {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = true);
    let ml = app.connect_mercadolibre(json!({})).await;
    let products = app.products("UD", 2).await;
    let campaign = app.campaign(&[ml], &products).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(drift(&app, campaign).await["differing"], 0);

    // Behind campaignd's back: UD-1-S's item deleted, UD-1-M's price cut, UD-2-S paused.
    app.ml.with_api(|s| {
        let id = |s: &::marketplaces::sim::mercadolibre::MercadoLibreSim, sku: &str| {
            s.item_by_sku(sku).expect("listed").id.clone()
        };
        let (gone, cut, paused) = (id(s, "UD-1-S"), id(s, "UD-1-M"), id(s, "UD-2-S"));
        s.items.get_mut(&gone).expect("an item").status = "closed".to_string();
        s.items.get_mut(&gone).expect("an item").deleted = true;
        s.items.get_mut(&cut).expect("an item").price = 1.0;
        s.items.get_mut(&paused).expect("an item").status = "paused".to_string();
    });
    let report = drift(&app, campaign).await;
    assert_eq!(
        differences(&report),
        vec![
            (
                "UD-1".to_string(),
                ml,
                "price".to_string(),
                json!({"sku": "UD-1-M", "expected": 1000.0, "found": 1.0})
            ),
            (
                "UD-1".to_string(),
                ml,
                "variants".to_string(),
                json!({"missing": ["UD-1-S"], "unknown": []})
            ),
            (
                "UD-2".to_string(),
                ml,
                "status".to_string(),
                json!({"expected": "active", "found": "paused"})
            ),
        ],
        "{report}"
    );

    let (status, started) = app
        .post(&format!("/api/campaigns/{campaign}/reconcile"), json!({}))
        .await;
    assert_eq!(status, 200, "{started}");
    let done = app.wait(started["tracker_id"].as_u64().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let again = drift(&app, campaign).await;
    assert_eq!(differences(&again), vec![], "{again}");
    let live: Vec<(String, String, f64)> = app.ml.with_api(|s| {
        let mut live: Vec<_> = s
            .items
            .values()
            .filter(|i| !i.deleted)
            .map(|i| (i.seller_sku.clone(), i.status.clone(), i.price))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        live
    });
    let active = |sku: &str| (sku.to_string(), "active".to_string(), 1000.0);
    assert_eq!(
        live,
        vec![
            active("UD-1-M"),
            active("UD-1-S"),
            active("UD-2-M"),
            active("UD-2-S")
        ]
    );
    assert_eq!(app.ml.stats().refused, Vec::<String>::new());
}
