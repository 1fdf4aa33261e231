//! Authentication, tenant isolation and bad input: every refusal is JSON with a stable code and
//! leaves the stored state as it was.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let app = spawn_app().await;
    for token in [None, Some("not-a-token"), Some("")] {
        let (status, v) = app.call(Method::GET, "/api/campaigns", None, token).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(v["error"], "unauthorized");
        assert!(v["message"].is_string());
    }
    let (status, _) = app
        .call(Method::POST, "/api/campaigns/1/publish", None, None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn another_tenants_campaigns_trackers_and_marketplaces_answer_404() {
    let app = spawn_app().await;
    let p = app.products("T", 1).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let tracker = app.run(campaign, "publish", json!({})).await["id"]
        .as_u64()
        .unwrap();

    let other = app.created_token("globex");
    let paths = [
        (Method::GET, format!("/api/campaigns/{campaign}")),
        (Method::GET, format!("/api/campaigns/{campaign}/products")),
        (Method::POST, format!("/api/campaigns/{campaign}/pause")),
        (
            Method::POST,
            format!("/api/campaigns/{campaign}/force-reset"),
        ),
        (Method::GET, format!("/api/tracker/{tracker}/progress")),
    ];
    for (method, path) in paths {
        let (status, v) = app.call(method, &path, None, Some(&other)).await;
        assert_eq!(status, 404, "{path}: {v}");
        assert_eq!(v["error"], "not_found");
    }
    let (_, list) = app
        .call(Method::GET, "/api/campaigns", None, Some(&other))
        .await;
    assert_eq!(list["data"], json!([]));
    let (_, list) = app
        .call(Method::GET, "/api/marketplaces", None, Some(&other))
        .await;
    assert_eq!(list["data"], json!([]));
    let (status, v) = app
        .call(
            Method::POST,
            "/api/campaigns",
            Some(json!({"name": "x", "marketplace_ids": [app.wc]})),
            Some(&other),
        )
        .await;
    // Another tenant's marketplace is not found, as its path would be.
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(c["status"], "published", "the owner still sees it");
}

async fn product_count(app: &crate::helpers::TestApp) -> u64 {
    app.get("/api/products").await.1["total"].as_u64().unwrap()
}

#[tokio::test]
async fn malformed_wrong_and_oversized_bodies_are_refused_without_changes() {
    let app = spawn_app().await;
    app.products("B", 2).await;
    let before = product_count(&app).await;
    let raw = |body: &'static str| {
        app.client
            .post(format!("{}/api/products", app.url))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = raw("[{\"sku\": \"X\",").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_json");

    let cases = [
        (
            json!([{"sku": "X", "name": "n", "price": 1, "colour": "red"}]),
            "unknown field",
        ),
        (
            json!([{"sku": "X", "name": "n", "price": "1"}]),
            "invalid type",
        ),
        (json!([{"sku": "X", "name": "n", "price": -1}]), "price"),
        (json!([{"sku": "X", "name": " ", "price": 1}]), "name"),
        (
            json!([{"sku": "X", "name": "n", "price": 1}, {"sku": "X", "name": "m", "price": 2}]),
            "twice",
        ),
        (
            json!([{"sku": "X", "name": "n", "price": 1, "images": [{"url": "ftp://x/y.jpg"}]}]),
            "http",
        ),
        (
            json!([{"sku": "B-1", "name": "n", "price": 1, "variants": [{"sku": "V", "price": 1}]}]),
            "option",
        ),
        (json!([]), "empty"),
    ];
    for (body, expect) in cases {
        let (status, v) = app.post("/api/products", body.clone()).await;
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["error"], "validation_failed");
        assert!(
            v["message"].as_str().unwrap().contains(expect),
            "{body}: {v}"
        );
    }

    let huge = format!(
        "[{{\"sku\":\"H\",\"name\":\"{}\",\"price\":1}}]",
        "x".repeat(2 << 20)
    );
    let res = app
        .client
        .post(format!("{}/api/products", app.url))
        .bearer_auth(&app.token)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );

    assert_eq!(product_count(&app).await, before, "nothing was written");
    let (_, list) = app.get("/api/products").await;
    assert_eq!(
        list["data"][0]["name"], "Product B 1",
        "B-1 was not changed by the refused upsert"
    );
}

#[tokio::test]
async fn bad_connections_campaigns_and_action_options_are_refused() {
    let app = spawn_app().await;
    let p = app.products("O", 1).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let connection = |system: &str, credentials: Value| json!({"system": system, "name": "n", "base_url": "http://127.0.0.1:9/v1", "credentials": credentials});
    let with_settings = |mut body: Value, settings: Value| {
        body["settings"] = settings;
        body
    };
    let ml_connection = |settings: Value| {
        with_settings(
            connection(
                "mercadolibre",
                json!({"client_id": "1", "client_secret": "s", "access_token": "a", "refresh_token": "r"}),
            ),
            settings,
        )
    };
    let cases = [
        (
            "/api/marketplaces",
            connection("amazon", json!({})),
            "system",
        ),
        (
            "/api/marketplaces",
            connection("jumpseller", json!({"login": "x"})),
            "authtoken",
        ),
        (
            "/api/marketplaces",
            connection(
                "woocommerce",
                json!({"consumer_key": "a", "consumer_secret": "b"}),
            ),
            "ck_",
        ),
        (
            "/api/marketplaces",
            connection("shopify", json!({"token": "x"})),
            "credentials.token",
        ),
        (
            "/api/marketplaces",
            ml_connection(json!({"currency_id": "CLP", "user_id": "1", "category_id": "MLC1"})),
            "site_id is required",
        ),
        (
            "/api/marketplaces",
            ml_connection(
                json!({"site_id": "MLC", "currency_id": "USD", "user_id": "1", "category_id": "MLC1"}),
            ),
            "not the currency of site MLC",
        ),
        (
            "/api/marketplaces",
            ml_connection(json!({"site_id": "MLC", "user_id": "1", "category_id": "MLA1"})),
            "category_id",
        ),
        (
            "/api/marketplaces",
            ml_connection(json!({"site_id": "MLC", "category_id": "MLC1"})),
            "user_id",
        ),
        (
            "/api/marketplaces",
            with_settings(
                connection("shopify", json!({"access_token": "shpat_x"})),
                json!({"api_version": "2024-13"}),
            ),
            "api_version",
        ),
        (
            "/api/marketplaces",
            with_settings(
                connection(
                    "woocommerce",
                    json!({"consumer_key": "ck_a", "consumer_secret": "cs_b"}),
                ),
                json!({"batch_size": "500"}),
            ),
            "batch_size",
        ),
        (
            "/api/marketplaces",
            with_settings(
                connection("jumpseller", json!({"login": "a", "authtoken": "b"})),
                json!({"site_id": "MLC"}),
            ),
            "not a setting of jumpseller",
        ),
        (
            "/api/campaigns",
            json!({"name": "c", "marketplace_ids": []}),
            "at least one",
        ),
    ];
    // A marketplace that does not exist is not found (404), as its path would be.
    let unknown = json!({"name": "c", "marketplace_ids": [999]});
    let (status, v) = app.post("/api/campaigns", unknown).await;
    assert_eq!(
        (status, v["message"].as_str()),
        (404, Some("marketplace 999 not found"))
    );
    for (path, body, expect) in cases {
        let (status, v) = app.post(path, body.clone()).await;
        assert_eq!(status, 422, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(expect),
            "{body}: {v}"
        );
    }
    let (_, list) = app.get("/api/marketplaces").await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(2),
        "no refused connection was stored: {list}"
    );

    for (body, expected) in [
        (json!({"chunk_size": 0}), 422),
        // A marketplace of the tenant that is not one of the campaign's conflicts with the
        // campaign's marketplaces.
        (json!({"marketplace_ids": [app.wc]}), 409),
        (json!({"forse": true}), 422),
    ] {
        let (status, v) = app
            .post(&format!("/api/campaigns/{campaign}/publish"), body.clone())
            .await;
        assert_eq!(status, expected, "{body}: {v}");
    }
    let (status, v) = app
        .call(
            Method::DELETE,
            &format!("/api/ecommerce/campaign/{campaign}/product?action=explode"),
            Some(json!({"product_ids": [p[0]]})),
            Some(&app.token),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("validation_failed"))
    );
    let (status, v) = app.get("/api/nowhere").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("route_not_found"))
    );
    // A path the API has, with a method it does not answer: 405 and the methods it does.
    let wrong = app
        .client
        .put(format!("{}/api/campaigns", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET, POST");
    let v: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    let (status, _) = app.get("/api/campaigns/abc").await;
    assert_eq!(status, 404);
    let (_, trackers) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    assert_eq!(trackers["data"], json!([]));
    let (_, list) = app.get("/api/marketplaces").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        2,
        "no connection was added"
    );
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("credentials").is_none()),
        "credentials are never shown"
    );
}

#[tokio::test]
async fn uploads_of_the_same_new_skus_at_once_make_each_product_once() {
    let app = spawn_app().await;
    const SKUS: usize = 400;
    const UPLOADS: usize = 4;
    let body: Vec<Value> = (1..=SKUS)
        .map(|i| json!({"sku": format!("RACE-{i}"), "name": format!("Race {i}"), "price": i}))
        .collect();
    let body = Value::Array(body);
    let answers =
        futures::future::join_all((0..UPLOADS).map(|_| app.post("/api/products", body.clone())))
            .await;
    let mut created = 0;
    let mut ids: Option<Vec<Value>> = None;
    for (status, v) in &answers {
        assert_eq!(*status, 200, "{v}");
        created += v["created"].as_u64().expect("created");
        let these = v["products"].as_array().expect("products").clone();
        match &ids {
            None => ids = Some(these),
            Some(first) => assert_eq!(first, &these, "every upload names the same products"),
        }
    }
    assert_eq!(
        created, SKUS as u64,
        "each new SKU is created by exactly one upload"
    );
    let (_, listed) = app.get("/api/products?per_page=100").await;
    assert_eq!(listed["total"], SKUS as u64, "one product per SKU");
}
