//! Stores that already list the products: a campaign published by another system (here, a
//! second connection to the same store, whose records campaignd's connection does not share)
//! left half of the SKUs listed; the publish adopts them, creating none of them again, on all
//! four marketplaces.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, On};

/// `items` is how many remote products a product is listed as (one per variant on
/// MercadoLibre's User Products model).
async fn adopts_what_the_store_lists(on: On, user_products: bool) {
    let app = spawn_app().await;
    app.ml.with_api(|s| s.user_products = user_products);
    let items = if user_products { 2 } else { 1 };
    let old = on.connect(&app, "The old system").await;
    let ours = on.connect(&app, "campaignd").await;
    let products = app.products("AD", 10).await;
    let before = app.campaign(&[old], &products[..5]).await;
    let t = app.run(before, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    let listed_ids: Vec<Value> = app
        .campaign_products(before)
        .await
        .iter()
        .map(|cp| cp["marketplace_info"]["product_id"].clone())
        .collect();
    let (listed, log) = on.store(&app);
    assert_eq!(listed, 5 * items, "{on:?}");
    let sent_before = log.len();

    let campaign = app.campaign(&[ours], &products).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{on:?}: {t}");
    assert!(app.all_are(campaign, "published").await, "{on:?}");
    let (listed, log) = on.store(&app);
    assert_eq!(
        listed,
        10 * items,
        "{on:?}: five adopted, five created, none twice"
    );
    let rows = app.campaign_products(campaign).await;
    let adopted: Vec<Value> = rows[..5]
        .iter()
        .map(|cp| cp["marketplace_info"]["product_id"].clone())
        .collect();
    assert_eq!(
        adopted, listed_ids,
        "{on:?}: the listed products were adopted"
    );
    // The look-ups before the creates, and the reads of what they found.
    let look_ups = log[sent_before..]
        .iter()
        .filter(|l| l.reads_store())
        .count();
    println!("{on:?}: {look_ups} look-ups for 10 products, 5 of them listed");
    if user_products {
        let rows = app.campaign_products(campaign).await;
        for (theirs, ours) in app.campaign_products(before).await.iter().zip(&rows[..5]) {
            assert_eq!(
                theirs["marketplace_info"]["variant_ids"], ours["marketplace_info"]["variant_ids"],
                "every variant's item adopted"
            );
        }
    }
    let stats = match on {
        On::Ml => app.ml.stats(),
        _ => return,
    };
    assert!(stats.duplicate_skus().is_empty(), "{stats:?}");
}

#[tokio::test]
async fn jumpseller_adopts_the_products_its_store_already_lists() {
    adopts_what_the_store_lists(On::Jumpseller, false).await;
}

#[tokio::test]
async fn woocommerce_adopts_the_products_its_site_already_lists() {
    adopts_what_the_store_lists(On::Woo, false).await;
}

#[tokio::test]
async fn mercadolibre_adopts_the_items_its_seller_already_lists() {
    adopts_what_the_store_lists(On::Ml, false).await;
}

#[tokio::test]
async fn shopify_adopts_the_products_its_shop_already_lists() {
    adopts_what_the_store_lists(On::Shopify, false).await;
}

#[tokio::test]
async fn a_mercadolibre_user_products_seller_adopts_every_variants_item() {
    adopts_what_the_store_lists(On::Ml, true).await;
}
