//! Dry runs: an action's plan is answered at once, sends nothing to any marketplace and writes
//! nothing; the real run then sends what the plan listed, request for request.

use std::collections::BTreeMap;

use ::marketplaces::plan;
use ::marketplaces::sim::{Logged, SimApi, SimHandle};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// A request as the plan and the marketplace's log can both tell it: method, path with ids
/// left out, and the batch item or GraphQL operation it carries.
type Sent = (String, String, String);

/// A path with its ids (numbers, MercadoLibre's `MLC…`, a plan's `{new}`) made `:id`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let (stem, ext) = seg.split_once('.').unwrap_or((seg, ""));
            let id = stem == "{new}"
                || (!stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()))
                || (stem.starts_with("MLC") && stem[3..].chars().all(|c| c.is_ascii_digit()));
            match (id, ext) {
                (true, "") => ":id".to_string(),
                (true, ext) => format!(":id.{ext}"),
                (false, _) => seg.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A path the marketplace received, under its API's base (`/v1` on Jumpseller,
/// `/wp-json/wc/v3` on WooCommerce, `/admin/api/{version}` on Shopify), as plans give them.
fn relative(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/admin/api/") {
        return rest.find('/').map_or(rest, |at| &rest[at..]);
    }
    ["/v1", "/wp-json/wc/v3"]
        .iter()
        .find_map(|base| path.strip_prefix(base))
        .unwrap_or(path)
}

/// What the marketplace received, one entry per product item of a batch request.
fn received(log: &[Logged]) -> Vec<Sent> {
    let mut out = Vec::new();
    for l in log {
        // A token refresh is the connection's, not any product's.
        if l.path == "/oauth/token" {
            continue;
        }
        let path = shape(relative(&l.path));
        if path.ends_with("/products/batch") {
            for item in ["create", "update", "delete"] {
                let n = l
                    .body
                    .as_ref()
                    .and_then(|b| b[item].as_array())
                    .map_or(0, Vec::len);
                for _ in 0..n {
                    out.push((l.method.clone(), path.clone(), item.to_string()));
                }
            }
            continue;
        }
        let extra = if path.ends_with("graphql.json") {
            l.body.as_ref().map(plan::graphql_name).unwrap_or_default()
        } else {
            String::new()
        };
        out.push((l.method.clone(), path, extra));
    }
    out.sort();
    out
}

/// What a plan says one marketplace will receive.
fn planned(marketplace: &Value) -> Vec<Sent> {
    let mut out: Vec<Sent> = marketplace["plan"]
        .as_array()
        .expect("a plan")
        .iter()
        .flat_map(|p| p["requests"].as_array().expect("requests").clone())
        .map(|r| {
            let extra = r["item"]
                .as_str()
                .or(r["graphql"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                r["method"].as_str().expect("a method").to_string(),
                shape(r["path"].as_str().expect("a path")),
                extra,
            )
        })
        .collect();
    out.sort();
    out
}

fn log_len<S: SimApi>(sim: &SimHandle<S>) -> usize {
    sim.stats().log.len()
}

/// The plan's view of one connection.
fn of(plan: &Value, connection: u64) -> &Value {
    plan["marketplaces"]
        .as_array()
        .expect("marketplaces")
        .iter()
        .find(|m| m["marketplace_id"] == connection)
        .unwrap_or_else(|| panic!("connection {connection} in {plan}"))
}

fn operations(marketplace: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(marketplace["operations"].clone()).expect("operation counts")
}

/// Asks for the plan of `action` and checks that nothing was sent or written for it.
async fn dry_run(app: &TestApp, campaign: u64, action: &str, body: Value) -> Value {
    let path = format!("/api/campaigns/{campaign}/{action}?detail=true");
    dry_run_at(app, campaign, Method::POST, &path, body).await
}

/// `dry_run` of a request to `path`.
async fn dry_run_at(
    app: &TestApp,
    campaign: u64,
    method: Method,
    path: &str,
    body: Value,
) -> Value {
    let before = (
        log_len(&app.jumpseller),
        log_len(&app.woo),
        log_len(&app.ml),
        log_len(&app.shopify),
    );
    let (_, trackers_before) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    let (_, campaign_before) = app.get(&format!("/api/campaigns/{campaign}")).await;
    let (status, plan) = app.call(method, path, Some(body), Some(&app.token)).await;
    assert_eq!(status, 200, "{path}: {plan}");
    assert_eq!(plan["dry_run"], true, "{plan}");
    let action = plan["action"].as_str().expect("an action").to_string();
    assert!(plan.get("tracker_id").is_none(), "a plan starts nothing");
    // Nothing is sent but MercadoLibre's look-up of the seller's model (a read), which decides
    // what a plan for it holds.
    assert_eq!(
        (
            log_len(&app.jumpseller),
            log_len(&app.woo),
            log_len(&app.shopify)
        ),
        (before.0, before.1, before.3),
        "a dry run of {action} sent nothing"
    );
    let ml: Vec<String> = app.ml.stats().log[before.2..]
        .iter()
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    let seller = format!("GET /users/{}", app.ml.with_api(|s| s.user_id));
    assert!(
        ml.iter().all(|r| *r == seller) && ml.len() <= 1,
        "a dry run of {action} sent MercadoLibre nothing but the seller's look-up: {ml:?}"
    );
    let (_, trackers_after) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    let (_, campaign_after) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(trackers_before, trackers_after, "no run was recorded");
    assert_eq!(campaign_before, campaign_after, "the campaign is as it was");
    plan
}

/// Which simulator a connection of `each_action_as_planned` is on.
#[derive(Clone, Copy)]
enum On {
    Jumpseller,
    Woo,
    Ml,
    Shopify,
}

fn log_of(app: &TestApp, on: On) -> Vec<Logged> {
    match on {
        On::Jumpseller => app.jumpseller.stats().log,
        On::Woo => app.woo.stats().log,
        On::Ml => app.ml.stats().log,
        On::Shopify => app.shopify.stats().log,
    }
}

/// Plans, then runs, each action in turn on `campaign` (publish; a change of PL-1's price and
/// a republish; pause; publish again; finish; delete), checking that each plan sent nothing and
/// lists what each marketplace then received; answers the plans.
async fn each_action_as_planned(
    app: &TestApp,
    campaign: u64,
    products: &[u64],
    connections: &[(u64, On)],
) -> Vec<Value> {
    let steps: Vec<(&str, Value)> = vec![
        ("publish", json!({"dry_run": true})),
        ("republish", json!({"dry_run": true})),
        ("pause", json!({"dry_run": true})),
        ("publish", json!({"dry_run": true})),
        ("finish", json!({"dry_run": true})),
        ("delete", json!({"dry_run": true, "product_ids": products})),
    ];
    let mut plans = Vec::new();
    for (i, (action, body)) in steps.into_iter().enumerate() {
        if i == 1 {
            // A change of price alone: the republish sends the prices alone.
            let (status, v) = app
                .post(
                    "/api/products",
                    json!([{"sku": "PL-1", "name": "Product PL 1", "description": "d",
                            "price": 2001, "stock": 3,
                            "variants": [
                                {"sku": "PL-1-S", "price": 1000, "stock": 1, "options": {"Size": "S"}},
                                {"sku": "PL-1-M", "price": 1000, "stock": 2, "options": {"Size": "M"}}],
                            "images": [
                                {"url": "https://img.example/PL-1/1.jpg", "position": 1},
                                {"url": "https://img.example/PL-1/2.jpg", "position": 2}]}]),
                )
                .await;
            assert_eq!(status, 200, "{v}");
        }
        // Deleting is done to chosen products (the seed's product DELETE).
        let removal =
            format!("/api/ecommerce/campaign/{campaign}/product?action=delete&detail=true");
        let plan = match action {
            "delete" => dry_run_at(app, campaign, Method::DELETE, &removal, body).await,
            _ => dry_run(app, campaign, action, body).await,
        };
        assert_eq!(plan["action"], action);
        let marks: Vec<usize> = connections
            .iter()
            .map(|(_, on)| log_of(app, *on).len())
            .collect();
        let done = match action {
            "delete" => app.delete_products(campaign, products).await,
            _ => app.run(campaign, action, json!({})).await,
        };
        assert_eq!(done["status"], "completed", "{action}: {done}");
        for ((connection, on), mark) in connections.iter().zip(marks) {
            let m = of(&plan, *connection);
            assert_eq!(
                planned(m),
                received(&log_of(app, *on)[mark..]),
                "step {i} ({action}) on {}: the plan against what the marketplace received",
                m["system"]
            );
            let counted: u64 = operations(m).values().sum();
            assert_eq!(
                counted,
                products.len() as u64,
                "{action} on {}: every product has an operation",
                m["system"]
            );
        }
        plans.push(plan);
    }
    for (_, on) in connections {
        let dups = match on {
            On::Jumpseller => app.jumpseller.stats().duplicate_skus(),
            On::Woo => app.woo.stats().duplicate_skus(),
            On::Ml => app.ml.stats().duplicate_skus(),
            On::Shopify => app.shopify.stats().duplicate_skus(),
        };
        assert!(dups.is_empty(), "{dups:?}");
    }
    plans
}

#[tokio::test]
async fn a_dry_run_of_each_action_sends_nothing_and_lists_what_the_run_then_sends() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let sh = app.connect_shopify(json!({})).await;
    let products = app.products("PL", 3).await;
    let campaign = app.campaign(&[app.js, app.wc, ml, sh], &products).await;
    let connections = [
        (app.js, On::Jumpseller),
        (app.wc, On::Woo),
        (ml, On::Ml),
        (sh, On::Shopify),
    ];
    let plans = each_action_as_planned(&app, campaign, &products, &connections).await;
    for (c, _) in connections {
        assert_eq!(
            operations(of(&plans[0], c)),
            BTreeMap::from([("create".into(), 3)])
        );
    }
    // Jumpseller: the store's count (what it already lists is adopted), then three phases:
    // the product, its two variants, its two images.
    assert_eq!(of(&plans[0], app.js)["requests"], 1 + 15);
    // WooCommerce: one batch for the three products, one variations batch each (no look-up:
    // its refusal of a SKU it holds names the product to adopt).
    assert_eq!(of(&plans[0], app.wc)["requests"], 4);
    let look_up = &of(&plans[0], app.js)["plan"][0]["requests"][0];
    assert_eq!(look_up["path"], "/products/count.json");
    let first = &of(&plans[0], app.js)["plan"][0]["requests"][1];
    assert_eq!(first["path"], "/products.json");
    assert_eq!(
        first["body"]["product"]["sku"], "PL-1",
        "bodies with detail=true"
    );
    let republished = of(&plans[1], ml)["plan"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == "PL-1")
        .expect("PL-1")
        .clone();
    let put = republished["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == "PUT")
        .expect("a PUT")
        .clone();
    let body = &put["body"];
    assert!(
        body.get("title").is_none() && body["price"] == 2001.0,
        "a change of price alone sends the prices alone: {body}"
    );
    assert_eq!(
        operations(of(&plans[2], sh)),
        BTreeMap::from([("status".into(), 3)]),
        "a pause changes the status alone"
    );
}

#[tokio::test]
async fn a_dry_run_on_shopifys_rest_api_lists_what_the_run_then_sends() {
    let app = spawn_app().await;
    let sh = app
        .connect_shopify(json!({"settings": {"api": "rest"}}))
        .await;
    let products = app.products("PL", 2).await;
    let campaign = app.campaign(&[sh], &products).await;
    let plans = each_action_as_planned(&app, campaign, &products, &[(sh, On::Shopify)]).await;
    // The shop's count (an empty shop lists nothing to adopt), then the create.
    let first = &of(&plans[0], sh)["plan"][0]["requests"];
    assert_eq!(first[0]["path"], "/products/count.json");
    assert_eq!(first[1]["path"], "/products.json");
}

#[tokio::test]
async fn a_plan_names_the_problems_and_validate_asks_mercadolibre_without_listing_anything() {
    let app = spawn_app().await;
    let ml = app.connect_mercadolibre(json!({})).await;
    let (status, v) = app
        .post(
            "/api/products",
            json!([
                {"sku": "LONG-1", "name": "x".repeat(61), "description": "d", "price": 10, "stock": 1},
                {"sku": "FINE-1", "name": "A fine title", "description": "d", "price": 10, "stock": 1},
            ]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ids: Vec<u64> = v["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    let campaign = app.campaign(&[ml], &ids).await;
    let plan = dry_run(&app, campaign, "publish", json!({"dry_run": true})).await;
    assert_eq!(plan["mode"], "plan");
    assert_eq!(plan["problems"], 1, "{plan}");
    let rows = of(&plan, ml)["plan"].as_array().unwrap().clone();
    let long = rows.iter().find(|r| r["sku"] == "LONG-1").expect("LONG-1");
    assert_eq!(long["problems"][0]["code"], "title_too_long", "{long}");
    let fine = rows.iter().find(|r| r["sku"] == "FINE-1").expect("FINE-1");
    assert_eq!(fine["problems"], json!([]));
    assert!(fine["requests"][0]["body"]["title"].is_string());

    let before = log_len(&app.ml);
    let (status, checked) = app
        .post(
            &format!("/api/campaigns/{campaign}/publish"),
            json!({"dry_run": "validate"}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["mode"], "validate");
    let asked = &app.ml.stats().log[before..];
    assert_eq!(
        asked.len(),
        4,
        "the seller's model and the category's attributes once, then one validation a \
         product, nothing else"
    );
    assert!(asked[0].method == "GET" && asked[0].path.starts_with("/users/"));
    assert!(asked[1].method == "GET" && asked[1].path.ends_with("/attributes"));
    assert!(asked[2..]
        .iter()
        .all(|l| l.method == "POST" && l.path == "/items/validate"));
    let rows = of(&checked, ml)["plan"].as_array().unwrap().clone();
    assert!(
        rows.iter().all(|r| r["requests"][0].get("body").is_none()),
        "bodies only with detail=true"
    );
    let long = rows.iter().find(|r| r["sku"] == "LONG-1").expect("LONG-1");
    let codes: Vec<&str> = long["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["title_too_long", "marketplace_refused"], "{long}");
    assert!(long["problems"][1]["message"]
        .as_str()
        .unwrap()
        .contains("item.title.length.invalid"));
    let (_, items) = app
        .get(&format!("/api/campaigns/{campaign}/products"))
        .await;
    assert!(
        items.to_string().contains("pending"),
        "validation published nothing: {items}"
    );
    assert!(app.ml.stats().duplicate_skus().is_empty());
    assert_eq!(app.ml.stats().sku_creations.len(), 0, "nothing was created");

    // The run then meets the refusal the plan foretold.
    let done = app.run(campaign, "publish", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let statuses = app.statuses(campaign).await;
    assert!(
        statuses
            .iter()
            .any(|(sku, _, status)| sku == "LONG-1" && status == "errored"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_dry_run_refuses_what_the_action_would_refuse_and_plans_a_retry() {
    let app = spawn_app().await;
    let products = app.products("RF", 2).await;
    let campaign = app.campaign(&[app.js], &products).await;
    // Pausing a campaign that is not published is refused, dry or not.
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/pause"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/publish?detail=maybe"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/publish"),
            json!({"dry_run": "sometimes"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");

    // One product refused by the store: a retry's plan takes it alone.
    app.jumpseller
        .set_knobs(|k| drop(k.reject_skus.insert("RF-2".into(), "no".into())));
    let done = app.run(campaign, "publish", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    app.jumpseller.set_knobs(|k| k.reject_skus.clear());
    let before = log_len(&app.jumpseller);
    // Publishing both again takes the errored product and leaves the published one, saying
    // why.
    let (status, plan) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/publish"),
            json!({"dry_run": true, "product_ids": products}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let js = of(&plan, app.js);
    assert_eq!(
        (plan["total_products"].as_u64(), js["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    let rows = js["plan"].as_array().unwrap();
    let skipped = rows
        .iter()
        .find(|r| r["operation"] == "skip")
        .expect("a skip");
    assert_eq!(
        skipped["reason"],
        "publish takes pending, paused, errored products; this one is published"
    );
    let retried = rows.iter().find(|r| r["sku"] == "RF-2").expect("RF-2");
    assert_eq!(retried["operation"], "create", "{retried}");
    // A retry's plan takes the errored product alone.
    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/retry"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(log_len(&app.jumpseller), before, "no dry run sent anything");
    let js = of(&plan, app.js);
    assert_eq!(plan["total_products"], 1, "{plan}");
    assert_eq!(js["plan"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(js["plan"][0]["sku"], "RF-2");
    assert_eq!(js["operations"], json!({"create": 1}));
    // The store's count, then the product's create, two variants and two images.
    assert_eq!(js["requests"], 1 + 5);
}

#[tokio::test]
async fn a_plan_of_a_create_of_unknown_outcome_lists_its_look_up_first() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.runs.retry_attempts = 2;
        c.runs.retry_min_ms = 1;
        c.runs.retry_max_ms = 2;
    })
    .await;
    let products = app.products("UN", 1).await;
    let campaign = app.campaign(&[app.js], &products).await;
    // The run's count of the store is answered; the create takes effect and its answer is
    // cut; so is the look-up after it.
    app.jumpseller.set_knobs(|k| {
        k.spare_next = 1;
        k.reset_rate = 1.0;
    });
    let done = app.run(campaign, "publish", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    app.jumpseller.set_knobs(|k| k.reset_rate = 0.0);
    let rows = app.campaign_products(campaign).await;
    assert_eq!(rows[0]["status"], "errored", "{rows:?}");
    assert_eq!(
        app.jumpseller.with_api(|s| s.products.len()),
        1,
        "created once"
    );

    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/retry?detail=true"),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let row = &of(&plan, app.js)["plan"][0];
    let requests: Vec<(String, String)> = row["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().into(),
                r["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        requests[..2],
        [
            ("GET".to_string(), "/products/search.json".to_string()),
            ("POST".to_string(), "/products.json".to_string())
        ],
        "{row}"
    );
    assert!(
        row["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("looked up by its SKU"),
        "{row}"
    );

    // The run sends the look-up the plan put first, and what it finds spares the create.
    let before = log_len(&app.jumpseller);
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let done = app.wait(v["tracker_id"].as_u64().expect("a tracker")).await;
    assert_eq!(done["status"], "completed", "{done}");
    let sent = app.jumpseller.stats().log[before..].to_vec();
    assert_eq!(
        (sent[0].method.as_str(), relative(&sent[0].path)),
        ("GET", "/products/search.json")
    );
    assert!(
        !sent
            .iter()
            .any(|l| l.method == "POST" && relative(&l.path) == "/products.json"),
        "adopted, not created again"
    );
    assert_eq!(
        app.campaign_products(campaign).await[0]["status"],
        "published"
    );
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn a_validating_dry_run_answers_in_its_time_and_says_what_its_limits_left_unchecked() {
    // Long enough for two validations however busy the machine, far short of a minute.
    let app = crate::helpers::spawn_app_with(|c| c.runs.dry_run_validate_ms = 2000).await;
    // Three requests a minute: the fourth would wait for most of one.
    let ml = app
        .connect_mercadolibre(json!({"rate_limit": {"per_second": 3, "per_minute": 3}}))
        .await;
    let products = app.products("VT", 4).await;
    let campaign = app.campaign(&[ml], &products).await;
    let before = log_len(&app.ml);
    let (status, plan) = app
        .post(
            &format!("/api/campaigns/{campaign}/publish"),
            json!({"dry_run": "validate"}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    // Had it waited for the limits, all four would have been asked. The three requests the
    // minute allows went to the seller's model (what a plan for it holds), the category's
    // attributes (read once, to name the variations' attributes by id) and one validation.
    let asked: Vec<String> = app.ml.stats().log[before..]
        .iter()
        .map(|l| l.path.clone())
        .collect();
    assert_eq!(
        asked,
        [
            format!("/users/{}", app.ml.with_api(|s| s.user_id)),
            "/categories/MLC3530/attributes".to_string(),
            "/items/validate".to_string()
        ],
        "{asked:?}"
    );
    let rows = of(&plan, ml)["plan"].as_array().expect("rows").clone();
    let unchecked: Vec<&Value> = rows
        .iter()
        .filter(|r| r["problems"].to_string().contains("not_validated"))
        .collect();
    assert_eq!(unchecked.len(), 3, "{plan}");
    assert!(
        unchecked[0]["problems"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("left no room"),
        "{plan}"
    );
    assert_eq!(plan["problems"], 3, "{plan}");
}

/// On MercadoLibre's User Products model each variant is an item of its own: a plan lists a
/// create, a status, a price or an update for each item, and the run sends just that.
#[tokio::test]
async fn a_dry_run_for_a_user_products_seller_lists_each_items_requests() {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = true);
    let ml = app.connect_mercadolibre(json!({})).await;
    let products = app.products("PL", 2).await;
    let campaign = app.campaign(&[ml], &products).await;
    let plans = each_action_as_planned(&app, campaign, &products, &[(ml, On::Ml)]).await;
    // The seller's model and the category are asked once; the store's first page of items
    // once; then one create per variant.
    let publish = of(&plans[0], ml);
    assert_eq!(operations(publish), BTreeMap::from([("create".into(), 2)]));
    assert_eq!(publish["requests"], 3 + 4, "{publish}");
    let first = publish["plan"][0]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == "POST")
        .expect("a create")
        .clone();
    assert!(
        first["body"].get("title").is_none() && first["body"]["family_name"] == "Product PL 1",
        "{first}"
    );
}
