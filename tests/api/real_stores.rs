//! The real-stores trial: on each marketplace, against simulators that enforce what its
//! official documents say, a campaign goes publish → pause → publish → republish with sale
//! prices → finish. No request is refused, each product is on the store once, a drift check
//! right after each publish and after the sale finds nothing, and the remote state is what
//! each marketplace needs: MercadoLibre classic (Argentina) items with their category's
//! required attributes and one price; MercadoLibre User Products (Chile, whole pesos) one item
//! per variant; Shopify products active, on the Online Store, with each variant's stock;
//! WooCommerce with a product of 150 variations; Jumpseller.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, On, TestApp};

/// A GTIN-13 with its GS1 check digit.
fn gtin(n: usize) -> String {
    let body = format!("779{n:09}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// A product of `variants` variants (sizes V1…), with a brand, a GTIN per variant and a MODEL
/// for MercadoLibre's category.
fn product(sku: &str, variants: usize) -> Value {
    let barcode = gtin;
    let seed = sku.bytes().map(usize::from).sum::<usize>() * 1000;
    json!({
        "sku": sku, "name": format!("Product {sku}"), "description": "d", "price": 20000,
        "stock": 3, "brand": "Acme",
        "marketplaces": {"mercadolibre": {"attributes": [{"id": "MODEL", "value_name": "X1"}]}},
        "variants": (1..=variants).map(|i| json!({
            "sku": format!("{sku}-V{i}"), "price": 20000, "stock": (i % 5) as i64 + 1,
            "options": {"Size": format!("V{i}")}, "barcode": barcode(seed + i),
        })).collect::<Vec<_>>(),
        "images": [{"url": format!("https://img.example/{sku}/1.jpg"), "position": 1},
                   {"url": format!("https://img.example/{sku}/2.jpg"), "position": 2}],
    })
}

async fn completed(app: &TestApp, campaign: u64, action: &str) {
    let t = app.run(campaign, action, json!({})).await;
    assert_eq!(t["status"], "completed", "{action}: {t}");
    assert_eq!(t["has_failures"], false, "{action}: {t}");
}

async fn nothing_drifted(app: &TestApp, campaign: u64, after: &str) {
    let report = app.drift(campaign).await;
    assert_eq!(report["differing"], 0, "after {after}: {report}");
}

/// The trial on `connection` (of the simulator `on`) for `products` (as given to the API);
/// `check` looks at the store after the first publish.
async fn trial(app: &TestApp, on: On, connection: u64, products: Value, check: impl Fn(&TestApp)) {
    let ids = app.upload(products).await;
    let campaign = app.campaign(&[connection], &ids).await;
    completed(app, campaign, "publish").await;
    check(app);
    nothing_drifted(app, campaign, "the publish").await;
    completed(app, campaign, "pause").await;
    completed(app, campaign, "publish").await;
    nothing_drifted(app, campaign, "the second publish").await;
    let sale: Vec<Value> = ids
        .iter()
        .map(|id| json!({"product_id": id, "sale_price": 15000}))
        .collect();
    let (status, v) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/campaigns/{campaign}/products"),
            Some(Value::Array(sale)),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    completed(app, campaign, "republish").await;
    nothing_drifted(app, campaign, "the sale").await;
    completed(app, campaign, "finish").await;
    assert!(app.all_are(campaign, "finished").await, "{on:?}");
    let stats = on.stats(app);
    assert_eq!(
        stats.refused,
        Vec::<String>::new(),
        "{on:?}: nothing refused"
    );
    assert_eq!(
        stats.ignored,
        Vec::<String>::new(),
        "{on:?}: nothing the real API would ignore"
    );
    assert_eq!(stats.duplicate_skus(), Vec::<String>::new(), "{on:?}");
}

#[tokio::test]
async fn jumpseller_takes_every_action_as_its_api_documents() {
    let app = spawn_app().await;
    let products = json!([product("JS-1", 2), product("JS-2", 0)]);
    trial(&app, On::Jumpseller, app.js, products, |app| {
        assert_eq!(app.jumpseller.with_api(|s| s.products.len()), 2);
    })
    .await;
}

#[tokio::test]
async fn mercadolibre_classic_items_carry_their_categorys_attributes_and_one_price() {
    let app = spawn_app().await;
    app.ml.with_api(|s| {
        s.site_id = "MLA".to_string();
        s.currency_id = "ARS".to_string();
        s.required = vec!["BRAND", "MODEL"];
        s.gtin_required = true;
    });
    let user_id = app.ml.with_api(|s| s.user_id).to_string();
    let ml = app
        .connect_mercadolibre(json!({"settings": {
            "site_id": "MLA", "user_id": user_id, "category_id": "MLA3530"}}))
        .await;
    // One with a GTIN of its own; the other's variations carry theirs.
    let mut one = product("MLA-1", 2);
    one["barcode"] = json!(gtin(1));
    let products = json!([one, product("MLA-2", 3)]);
    trial(&app, On::Ml, ml, products, |app| {
        app.ml.with_api(|s| {
            assert_eq!(s.items.len(), 2);
            for item in s.items.values() {
                assert_eq!(item.currency_id, "ARS");
                for id in ["BRAND", "MODEL"] {
                    assert!(item.attributes.contains_key(id), "{id}: {item:?}");
                }
                let prices: Vec<f64> = item.variations.iter().map(|v| v.price).collect();
                assert!(prices.windows(2).all(|w| w[0] == w[1]), "{prices:?}");
            }
        })
    })
    .await;
}

#[tokio::test]
async fn mercadolibre_user_products_list_one_item_per_variant_in_whole_pesos() {
    let app = spawn_app().await;
    app.ml.with_api(|s| {
        s.user_products = true;
        s.required = vec!["BRAND", "MODEL"];
        s.gtin_required = true;
    });
    let ml = app.connect_mercadolibre(json!({})).await;
    let mut uneven = product("UP-1", 3);
    uneven["variants"][1]["price"] = json!(21990.5);
    let products = json!([uneven, product("UP-2", 2)]);
    trial(&app, On::Ml, ml, products, |app| {
        app.ml.with_api(|s| {
            assert_eq!(s.items.len(), 5, "one item per variant");
            for item in s.items.values() {
                assert!(item.variations.is_empty(), "{item:?}");
                let family = item.family_name.as_deref().expect("a family");
                assert!(item.seller_sku.starts_with(&family[8..]), "{item:?}");
                assert_eq!(item.price.fract(), 0.0, "whole pesos: {item:?}");
                assert!(item.attributes.contains_key("SIZE"), "{item:?}");
            }
        })
    })
    .await;
}

#[tokio::test]
async fn shopify_products_are_active_on_the_online_store_with_each_variants_stock() {
    let app = spawn_app().await;
    let shop = app.connect_shopify(json!({})).await;
    let products = json!([product("SH-1", 3), product("SH-2", 0)]);
    trial(&app, On::Shopify, shop, products, |app| {
        app.shopify.with_api(|s| {
            assert_eq!(s.products.len(), 2);
            let online = s
                .publications
                .iter()
                .find(|(_, name)| name == "Online Store")
                .map(|(id, _)| *id)
                .expect("an Online Store");
            let location = s.locations[0];
            for p in s.products.values() {
                assert_eq!(p.status, "active", "{p:?}");
                assert!(p.published_on.contains(&online), "{p:?}");
                for v in &p.variants {
                    assert!(v.tracked, "{v:?}");
                    assert!(v.available.get(&location).is_some_and(|n| *n > 0), "{v:?}");
                }
            }
        })
    })
    .await;
}

#[tokio::test]
async fn woocommerce_takes_a_product_of_150_variations() {
    let app = spawn_app().await;
    let products = json!([product("WC-1", 150), product("WC-2", 2)]);
    trial(&app, On::Woo, app.wc, products, |app| {
        app.woo.with_api(|s| {
            let variations: Vec<usize> = s.products.values().map(|p| p.variations.len()).collect();
            assert_eq!(variations.len(), 2);
            assert!(variations.contains(&150), "{variations:?}");
        })
    })
    .await;
}
