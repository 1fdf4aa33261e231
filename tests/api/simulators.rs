//! The simulators themselves, spoken to directly as a marketplace client would: paths, auth,
//! error shapes and rate-limit headers.

use std::time::Duration;

use ::marketplaces::sim::jumpseller::{JumpsellerSim, Limits};
use ::marketplaces::sim::SimHandle;
use serde_json::{json, Value};

fn jumpseller(limits: Limits) -> SimHandle<JumpsellerSim> {
    let sim = SimHandle::start(
        JumpsellerSim::new("store", "token"),
        ([127, 0, 0, 1], 0).into(),
    )
    .expect("starts");
    sim.with_api(|s| s.limits = limits);
    sim
}

#[tokio::test]
async fn jumpseller_answers_with_and_without_v1_and_sends_its_quota_headers_every_time() {
    let sim = jumpseller(Limits::default());
    let client = reqwest::Client::new();
    for path in ["/v1/products/count.json", "/products/count.json"] {
        let res = client
            .get(format!("{}{path}", sim.url()))
            .basic_auth("store", Some("token"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["Jumpseller-PerMinuteRateLimit-Limit"], "800");
        assert_eq!(h["Jumpseller-PerSecondRateLimit-Limit"], "20");
        assert!(h.contains_key("Jumpseller-PerMinuteRateLimit-Remaining"));
        assert!(h.contains_key("Jumpseller-PerSecondRateLimit-Remaining"));
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"count": 0}));
    }
    let res = client
        .get(format!("{}/v1/products.json", sim.url()))
        .basic_auth("store", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res
        .headers()
        .contains_key("Jumpseller-PerMinuteRateLimit-Remaining"));
    assert!(res.json::<Value>().await.unwrap()["message"].is_string());
    let res = client
        .get(format!("{}/v1/products/99.json", sim.url()))
        .basic_auth("store", Some("token"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.json::<Value>().await.unwrap()),
        (404, json!({"message": "Not Found"}))
    );
    let res = client
        .post(format!("{}/v1/products.json", sim.url()))
        .basic_auth("store", Some("token"))
        .json(&json!({"product": {"price": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "a product needs a name");
}

#[tokio::test]
async fn jumpseller_throttles_over_its_limit_and_bans_with_a_403_after_repeated_violations() {
    let sim = jumpseller(Limits {
        per_second: 3,
        per_minute: 800,
        ban_after: 4,
        ban_for: Duration::from_secs(60),
    });
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut banned_reset = None;
    for _ in 0..9 {
        let res = client
            .get(format!("{}/v1/products/count.json", sim.url()))
            .basic_auth("store", Some("token"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        if let Some(v) = res.headers().get("Jumpseller-BannedByRateLimit-Reset") {
            banned_reset = Some(v.to_str().unwrap().to_string());
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    // Four throttled requests, the fourth of which starts the ban; a ban is answered 403.
    assert_eq!(
        &statuses[3..],
        [429, 429, 429, 429, 403, 403],
        "{statuses:?}"
    );
    let reset = banned_reset.expect("a ban was announced");
    let until = chrono::DateTime::parse_from_rfc3339(&reset).expect("a UTC time");
    assert!(
        until > chrono::Utc::now() + chrono::Duration::seconds(50),
        "{reset}"
    );
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.banned), (6, 2));
    assert!(stats.max_in_1s >= 9);
}

#[tokio::test]
async fn mercadolibre_tokens_expire_refresh_once_and_closed_items_stay_closed() {
    use ::marketplaces::sim::mercadolibre::MercadoLibreSim;
    let sim = SimHandle::start(
        MercadoLibreSim::new("app", "secret", "APP_USR-1", "TG-1"),
        ([127, 0, 0, 1], 0).into(),
    )
    .expect("starts");
    sim.with_api(|s| s.limit = ::marketplaces::sim::SlidingLimit::new(None));
    let client = reqwest::Client::new();
    let url = sim.url();
    let item = json!({"title": "Shirt", "category_id": "MLC3530", "price": 9990, "currency_id": "CLP",
        "available_quantity": 3, "buying_mode": "buy_it_now", "listing_type_id": "gold_special",
        "condition": "new", "pictures": [{"source": "https://img.example/1.jpg"}],
        "attributes": [{"id": "SELLER_SKU", "value_name": "S-1"}]});
    let send = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut r = client
            .request(method, format!("{url}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let res = r.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, created) = send(
        reqwest::Method::POST,
        "/items",
        "APP_USR-1",
        Some(item.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "active");

    // A price as a string is refused with the cause list.
    let mut bad = item.clone();
    bad["price"] = json!("9990");
    let (status, e) = send(reqwest::Method::POST, "/items", "APP_USR-1", Some(bad)).await;
    assert_eq!(status, 400);
    assert_eq!(e["cause"][0]["code"], "item.price.invalid");
    // Validation checks a body as a create would, and lists nothing.
    let mut long = item.clone();
    long["title"] = json!("x".repeat(61));
    let (status, e) = send(
        reqwest::Method::POST,
        "/items/validate",
        "APP_USR-1",
        Some(long),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["cause"][0]["code"], "item.title.length.invalid");
    let valid = client
        .post(format!("{url}/items/validate"))
        .bearer_auth("APP_USR-1")
        .json(&item)
        .send()
        .await
        .unwrap();
    assert_eq!(valid.status(), 204);
    // The multiget answers each id with its own code, up to 20 ids.
    let (status, many) = send(
        reqwest::Method::GET,
        &format!("/items?ids={id},MLC999"),
        "APP_USR-1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{many}");
    assert_eq!(many[0]["code"], 200);
    assert_eq!(many[0]["body"]["id"], json!(id));
    assert_eq!(many[1]["code"], 404);
    let ids = vec![id.as_str(); 21].join(",");
    let (status, _) = send(
        reqwest::Method::GET,
        &format!("/items?ids={ids}"),
        "APP_USR-1",
        None,
    )
    .await;
    assert_eq!(status, 400, "at most 20 ids");
    let (_, found) = send(
        reqwest::Method::GET,
        "/users/123456789/items/search",
        "APP_USR-1",
        None,
    )
    .await;
    assert_eq!(found["results"], json!([id]), "one item listed");

    sim.with_api(|s| s.expire_tokens());
    let (status, e) = send(
        reqwest::Method::GET,
        &format!("/items/{id}"),
        "APP_USR-1",
        None,
    )
    .await;
    assert_eq!(
        (status, e["message"].as_str()),
        (401, Some("invalid access token"))
    );
    let refresh = |token: &'static str| {
        client
            .post(format!("{url}/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "app"),
                ("client_secret", "secret"),
                ("refresh_token", token),
            ])
            .send()
    };
    let fresh: Value = refresh("TG-1").await.unwrap().json().await.unwrap();
    let access = fresh["access_token"].as_str().unwrap().to_string();
    assert_ne!(fresh["refresh_token"], "TG-1");
    // A refresh token works once.
    let again = refresh("TG-1").await.unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    let (status, found) = send(
        reqwest::Method::GET,
        "/users/123456789/items/search?seller_sku=S-1",
        &access,
        None,
    )
    .await;
    assert_eq!((status, found["results"].clone()), (200, json!([id])));
    let path = format!("/items/{id}");
    let (status, _) = send(
        reqwest::Method::PUT,
        &path,
        &access,
        Some(json!({"deleted": "true"})),
    )
    .await;
    assert_eq!(status, 400, "only closed items can be deleted");
    let (status, closed) = send(
        reqwest::Method::PUT,
        &path,
        &access,
        Some(json!({"status": "closed"})),
    )
    .await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")));
    let (status, e) = send(
        reqwest::Method::PUT,
        &path,
        &access,
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["cause"][0]["code"], "item.status.not_modifiable");
    let (status, _) = send(
        reqwest::Method::PUT,
        &path,
        &access,
        Some(json!({"deleted": "true"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, found) = send(
        reqwest::Method::GET,
        "/users/123456789/items/search?seller_sku=S-1",
        &access,
        None,
    )
    .await;
    assert_eq!(found["results"], json!([]));
}

#[tokio::test]
async fn shopify_reports_its_bucket_throttles_when_full_and_finds_variants_by_sku() {
    use ::marketplaces::sim::shopify::{Bucket, ShopifySim};
    let sim =
        SimHandle::start(ShopifySim::new("shpat_x"), ([127, 0, 0, 1], 0).into()).expect("starts");
    // A bucket that does not leak within the test.
    sim.with_api(|s| s.bucket = Bucket::new(3, 0.001));
    let client = reqwest::Client::new();
    let products = format!("{}/admin/api/2025-01/products.json", sim.url());
    let res = client
        .post(&products)
        .header("X-Shopify-Access-Token", "wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.json::<Value>().await.unwrap()["errors"].is_string());

    let post = |body: Value| {
        client
            .post(&products)
            .header("X-Shopify-Access-Token", "shpat_x")
            .json(&body)
            .send()
    };
    let res = post(
        json!({"product": {"title": "Shirt", "variants": [{"sku": "SH-1", "price": "10.00"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["X-Shopify-Shop-Api-Call-Limit"], "1/3");
    let res = post(json!({"product": {"title": ""}})).await.unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(res.headers()["X-Shopify-Shop-Api-Call-Limit"], "2/3");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"errors": {"title": ["can't be blank"]}})
    );
    let res = client
        .post(format!("{}/admin/api/2025-01/graphql.json", sim.url()))
        .header("X-Shopify-Access-Token", "shpat_x")
        .json(&json!({"query": "query($query: String!) { productVariants(first: 5, query: $query) { edges { node { id sku product { id } } } } }",
                      "variables": {"query": "sku:\"SH-1\""}}))
        .send()
        .await
        .unwrap();
    let found: Value = res.json().await.unwrap();
    let edges = found["data"]["productVariants"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(edges.len(), 1);
    assert!(edges[0]["node"]["product"]["id"]
        .as_str()
        .unwrap()
        .starts_with("gid://shopify/Product/"));
    // GraphQL answers with its cost (1 for the query, 2 + 5 for the connection) and the
    // points bucket, and takes no place in the REST bucket.
    assert_eq!(found["extensions"]["cost"]["requestedQueryCost"], 8.0);
    assert_eq!(
        found["extensions"]["cost"]["throttleStatus"]["maximumAvailable"],
        2000.0
    );
    let res = post(json!({"product": {"title": "More"}})).await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["X-Shopify-Shop-Api-Call-Limit"], "3/3");
    // The bucket is full now: 429 with Retry-After.
    let res = post(json!({"product": {"title": "More"}})).await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("Retry-After"));
    assert_eq!(sim.stats().throttled, 1);
}

#[tokio::test]
async fn shopify_lists_products_by_id_in_any_status_up_to_its_limit() {
    use ::marketplaces::sim::shopify::ShopifySim;
    let sim =
        SimHandle::start(ShopifySim::new("shpat_x"), ([127, 0, 0, 1], 0).into()).expect("starts");
    let client = reqwest::Client::new();
    let base = format!("{}/admin/api/2025-01", sim.url());
    let mut ids = Vec::new();
    for title in ["A", "B", "C"] {
        let res = client
            .post(format!("{base}/products.json"))
            .header("X-Shopify-Access-Token", "shpat_x")
            .json(&json!({"product": {"title": title, "status": "active"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        ids.push(v["product"]["id"].as_u64().unwrap());
    }
    let res = client
        .put(format!("{base}/products/{}.json", ids[2]))
        .header("X-Shopify-Access-Token", "shpat_x")
        .json(&json!({"product": {"id": ids[2], "status": "archived"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list = |query: String| {
        let client = &client;
        let url = format!("{base}/products.json{query}");
        async move {
            let res = client
                .get(url)
                .header("X-Shopify-Access-Token", "shpat_x")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let v: Value = res.json().await.unwrap();
            v["products"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["id"].as_u64().unwrap(),
                        p["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    // An archived product is listed too, and an id the shop does not have is left out.
    let (a, c) = (ids[0], ids[2]);
    assert_eq!(
        list(format!("?ids={a},{c},999&limit=3")).await,
        vec![(a, "active".to_string()), (c, "archived".to_string())]
    );
    assert_eq!(list(format!("?ids={a},{c}&limit=1")).await.len(), 1);
    assert_eq!(list(String::new()).await.len(), 3);
}

#[tokio::test]
async fn shopify_graphql_costs_points_and_answers_throttled_when_they_run_out() {
    use ::marketplaces::sim::shopify::{CostBucket, ShopifySim};
    let sim =
        SimHandle::start(ShopifySim::new("shpat_x"), ([127, 0, 0, 1], 0).into()).expect("starts");
    // 30 points restored at 0.001 a second: two productSets of 13 fit, a third does not.
    sim.with_api(|s| s.cost = CostBucket::new(30.0, 0.001));
    let client = reqwest::Client::new();
    let set = |sku: &str| {
        client
            .post(format!("{}/admin/api/2025-10/graphql.json", sim.url()))
            .header("X-Shopify-Access-Token", "shpat_x")
            .json(&json!({
                "query": "mutation productSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) { productSet(synchronous: true, input: $input, identifier: $identifier) { product { id } userErrors { field message code } } }",
                "variables": {"input": {
                    "title": "Shirt", "status": "ACTIVE",
                    "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
                    "variants": [
                        {"sku": format!("{sku}-S"), "price": "10.00", "optionValues": [{"optionName": "Size", "name": "S"}]},
                        {"sku": format!("{sku}-M"), "price": "12.00", "optionValues": [{"optionName": "Size", "name": "M"}]},
                    ],
                    "files": [{"originalSource": "https://img.example/1.jpg", "contentType": "IMAGE"}],
                }},
            }))
            .send()
    };
    let first = set("G-1").await.unwrap();
    // 2025-10 is out of support: Shopify serves the oldest supported version, and says so.
    assert_eq!(first.headers()["X-Shopify-API-Version"], "2026-01");
    let first: Value = first.json().await.unwrap();
    // 10 + 0.2 for each of two variants + 1.9 for one image, rounded up.
    assert_eq!(first["extensions"]["cost"]["requestedQueryCost"], 13.0);
    assert_eq!(
        first["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"],
        17.0
    );
    assert!(first["data"]["productSet"]["product"]["id"]
        .as_str()
        .unwrap()
        .starts_with("gid://shopify/Product/"));
    let second: Value = set("G-2").await.unwrap().json().await.unwrap();
    assert_eq!(second["data"]["productSet"]["userErrors"], json!([]));
    let res = set("G-3").await.unwrap();
    assert_eq!(res.status(), 200, "THROTTLED comes with HTTP 200");
    let third: Value = res.json().await.unwrap();
    assert_eq!(third["errors"][0]["extensions"]["code"], "THROTTLED");
    assert_eq!(sim.stats().throttled, 1);
    assert_eq!(sim.with_api(|s| s.products.len()), 2);
    let product = sim
        .with_api(|s| s.product_by_sku("G-1-M").cloned())
        .unwrap();
    assert_eq!(
        (
            product.variants[1].price.as_str(),
            product.variants[1].option1.as_deref(),
            product.images.len()
        ),
        ("12.00", Some("M"), 1)
    );
}

#[tokio::test]
async fn woocommerce_batches_answer_each_item_inline_and_refuse_more_than_100() {
    use ::marketplaces::sim::woocommerce::WooSim;
    let sim =
        SimHandle::start(WooSim::new("ck_a", "cs_b"), ([127, 0, 0, 1], 0).into()).expect("starts");
    let client = reqwest::Client::new();
    let batch = |body: Value| {
        client
            .post(woo_signed("POST", &sim.url(), "/products/batch"))
            .json(&body)
            .send()
    };
    let res = batch(json!({"create": [
        {"name": "A", "sku": "W-1", "regular_price": "10"},
        {"name": "B", "sku": "W-1", "regular_price": "10"},
        {"name": "C", "sku": "W-3", "regular_price": 10},
    ]}))
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let created = v["create"].as_array().unwrap();
    assert_eq!(created.len(), 3);
    let first = created[0]["id"].as_u64().unwrap();
    assert_eq!(created[1]["error"]["code"], "product_invalid_sku");
    assert_eq!(created[1]["error"]["data"]["resource_id"], first);
    assert_eq!(created[2]["error"]["code"], "rest_invalid_param");

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"name": "x", "sku": format!("M-{i}")}))
        .collect();
    let res = batch(json!({"create": too_many})).await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        sim.with_api(|s| s.products.len()),
        1,
        "a refused batch changes nothing"
    );

    let res = batch(json!({"delete": [first, 999]})).await.unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["delete"][0]["id"], first);
    assert_eq!(v["delete"][1]["error"]["data"]["status"], 404);
    assert!(sim.with_api(|s| s.products.is_empty()));
}

/// A WooCommerce URL signed with OAuth 1.0a for the simulator's keys (`ck_a`, `cs_b`) and a
/// fresh nonce.
fn woo_signed(method: &str, base: &str, path_and_query: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let mut url = url::Url::parse(&format!("{base}/wp-json/wc/v3{path_and_query}")).unwrap();
    let nonce = format!("nonce{}", NONCE.fetch_add(1, Ordering::SeqCst));
    let now = chrono::Utc::now().timestamp();
    ::marketplaces::woocommerce::sign_oauth(method, &mut url, "ck_a", "cs_b", now, &nonce);
    url.to_string()
}

#[tokio::test]
async fn woocommerce_over_plain_http_takes_oauth_and_ignores_basic_authentication() {
    use ::marketplaces::sim::woocommerce::WooSim;
    let sim =
        SimHandle::start(WooSim::new("ck_a", "cs_b"), ([127, 0, 0, 1], 0).into()).expect("starts");
    let client = reqwest::Client::new();
    let list = format!("{}/wp-json/wc/v3/products", sim.url());
    let basic = client
        .get(&list)
        .basic_auth("ck_a", Some("cs_b"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401, "Basic is read over HTTPS only");
    let body: Value = basic.json().await.unwrap();
    assert_eq!(body["code"], "woocommerce_rest_cannot_view");

    let signed = woo_signed("GET", &sim.url(), "/products?per_page=5");
    let res = client.get(&signed).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let replayed = client.get(&signed).send().await.unwrap();
    assert_eq!(replayed.status(), 401, "a nonce is taken once");
    let body: Value = replayed.json().await.unwrap();
    assert_eq!(
        body["message"],
        "Invalid nonce - nonce has already been used."
    );

    // A parameter added after signing breaks the signature.
    let tampered = format!(
        "{}&page=2",
        woo_signed("GET", &sim.url(), "/products?per_page=5")
    );
    let res = client.get(&tampered).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "woocommerce_rest_authentication_error");
}

#[tokio::test]
async fn woocommerce_pages_variations_and_finds_a_sku_held_by_a_variation() {
    use ::marketplaces::sim::woocommerce::WooSim;
    let sim =
        SimHandle::start(WooSim::new("ck_a", "cs_b"), ([127, 0, 0, 1], 0).into()).expect("starts");
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(woo_signed("POST", &sim.url(), path))
            .json(&body)
            .send()
    };
    let res = post(
        "/products",
        json!({"name": "Shirt", "type": "variable", "sku": "SHIRT"}),
    )
    .await
    .unwrap();
    let parent = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let variations: Vec<Value> = (0..100)
        .map(|i| json!({"sku": format!("SHIRT-{i}"), "regular_price": "10"}))
        .collect();
    let res = post(
        &format!("/products/{parent}/variations/batch"),
        json!({"create": variations}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "100 items in all are taken");
    let one_more: Vec<Value> = (100..150)
        .map(|i| json!({"sku": format!("SHIRT-{i}"), "regular_price": "10"}))
        .collect();
    let updates: Vec<Value> = (0..51).map(|i| json!({"id": parent + 1 + i})).collect();
    let res = post(
        &format!("/products/{parent}/variations/batch"),
        json!({"create": one_more, "update": updates}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 413, "creates and updates count together");

    let page = |q: &str| {
        client
            .get(woo_signed(
                "GET",
                &sim.url(),
                &format!("/products/{parent}/variations{q}"),
            ))
            .send()
    };
    let first = page("").await.unwrap();
    assert_eq!(first.headers()["X-WP-Total"], "100");
    assert_eq!(first.headers()["X-WP-TotalPages"], "10");
    assert_eq!(
        first.json::<Vec<Value>>().await.unwrap().len(),
        10,
        "10 a page unless asked"
    );
    let last = page("?per_page=30&page=4").await.unwrap();
    assert_eq!(last.json::<Vec<Value>>().await.unwrap().len(), 10);
    assert_eq!(page("?per_page=101").await.unwrap().status(), 400);

    // Another product's create with a variation's SKU names the variation; the SKU filter
    // lists it as a variation of its parent.
    let res = post("/products", json!({"name": "Other", "sku": "SHIRT-7"}))
        .await
        .unwrap();
    let refused: Value = res.json().await.unwrap();
    assert_eq!(refused["code"], "product_invalid_sku");
    let holder = refused["data"]["resource_id"].as_u64().unwrap();
    let found: Vec<Value> = client
        .get(woo_signed(
            "GET",
            &sim.url(),
            "/products?sku=SHIRT-7,SHIRT,NONE",
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown: Vec<(u64, &str, Option<u64>)> = found
        .iter()
        .map(|f| {
            (
                f["id"].as_u64().unwrap(),
                f["type"].as_str().unwrap(),
                f["parent_id"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (parent, "variable", None),
            (holder, "variation", Some(parent))
        ]
    );
}

/// What MercadoLibre and WooCommerce take without effect is kept apart from what they apply:
/// a description in an item's PUT, an unknown field, a combination named by no variation
/// attribute, WooCommerce's read-only `price` (in a batch item too).
#[tokio::test]
async fn the_simulators_tell_the_fields_their_apis_would_ignore() {
    use ::marketplaces::sim::mercadolibre::MercadoLibreSim;
    use ::marketplaces::sim::woocommerce::WooSim;
    let client = reqwest::Client::new();
    let ml = SimHandle::start(
        MercadoLibreSim::new("app", "secret", "APP_USR-1", "TG-1"),
        ([127, 0, 0, 1], 0).into(),
    )
    .expect("starts");
    let item = json!({"title": "Shirt", "category_id": "MLC3530", "price": 9990,
        "currency_id": "CLP", "available_quantity": 3, "buying_mode": "buy_it_now",
        "listing_type_id": "gold_special", "condition": "new", "colour": "red",
        "pictures": [{"source": "https://img.example/1.jpg"}],
        "variations": [{"price": 9990, "available_quantity": 3, "picture_ids": ["x"],
                        "attribute_combinations": [{"name": "Talla", "value_name": "M"}]}]});
    let created: Value = client
        .post(format!("{}/items", ml.url()))
        .bearer_auth("APP_USR-1")
        .json(&item)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("created").to_string();
    let put = client
        .put(format!("{}/items/{id}", ml.url()))
        .bearer_auth("APP_USR-1")
        .json(&json!({"price": 9000, "description": {"plain_text": "new"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(
        ml.stats().ignored,
        [
            "POST /items: colour".to_string(),
            "POST /items: variations.attribute_combinations \"\"".to_string(),
            format!("PUT /items/{id}: description"),
        ]
    );

    let woo =
        SimHandle::start(WooSim::new("ck_a", "cs_b"), ([127, 0, 0, 1], 0).into()).expect("starts");
    let batch = client
        .post(woo_signed("POST", &woo.url(), "/products/batch"))
        .json(
            &json!({"create": [{"name": "A", "sku": "A-1", "regular_price": "10",
                                  "price": "10"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    assert_eq!(
        woo.stats().ignored,
        ["POST /wp-json/wc/v3/products/batch: price".to_string()]
    );
}

/// The simulated shop upserts by a custom id only once its `id` definition exists (made once;
/// a second is `TAKEN`), and a product made so carries its custom id.
#[tokio::test]
async fn shopify_upserts_by_a_custom_id_once_its_definition_exists() {
    use ::marketplaces::sim::shopify::ShopifySim;
    let sim =
        SimHandle::start(ShopifySim::new("shpat_x"), ([127, 0, 0, 1], 0).into()).expect("starts");
    let client = reqwest::Client::new();
    let ask = async |query: &str, variables: Value| -> Value {
        let sent = client
            .post(format!("{}/admin/api/2026-10/graphql.json", sim.url()))
            .header("X-Shopify-Access-Token", "shpat_x")
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("the simulator answers");
        sent.json().await.expect("JSON")
    };
    let define = "mutation metafieldDefinitionCreate($definition: MetafieldDefinitionInput!) { metafieldDefinitionCreate(definition: $definition) { createdDefinition { id } userErrors { field message code } } }";
    let definition = json!({"definition": {"name": "SKU", "namespace": "$app", "key": "sku",
        "type": "id", "ownerType": "PRODUCT"}});
    let set = "mutation productSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) { productSet(synchronous: true, input: $input, identifier: $identifier) { product { id title } userErrors { field message code } } }";
    let upsert = |title: &str| {
        json!({
            "identifier": {"customId": {"namespace": "$app", "key": "sku", "value": "C-1"}},
            "input": {"title": title, "status": "ACTIVE",
                "metafields": [{"namespace": "$app", "key": "sku", "type": "id", "value": "C-1"}]},
        })
    };
    let answer = |v: Value| v["data"]["productSet"].clone();
    let refused = ask(set, upsert("Shirt")).await;
    assert_eq!(
        answer(refused)["userErrors"][0]["code"],
        "NOT_FOUND",
        "no definition yet"
    );
    let made = ask(define, definition.clone()).await;
    assert_eq!(
        made["data"]["metafieldDefinitionCreate"]["userErrors"],
        json!([])
    );
    let again = ask(define, definition).await;
    assert_eq!(
        again["data"]["metafieldDefinitionCreate"]["userErrors"][0]["code"],
        "TAKEN"
    );
    let first = answer(ask(set, upsert("Shirt")).await);
    let second = answer(ask(set, upsert("Shirt, renamed")).await);
    assert_eq!(first["product"]["id"], second["product"]["id"], "{second}");
    let titles: Vec<String> =
        sim.with_api(|s| s.products.values().map(|p| p.title.clone()).collect());
    assert_eq!(titles, ["Shirt, renamed"], "one product, updated");
}
