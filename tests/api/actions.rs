//! Which products each action takes, what it leaves them as, and what the marketplaces hold.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn publish_runs_jumpseller_in_three_phases_and_reaches_100() {
    let app = spawn_app().await;
    let products = app.products("P", 4).await;
    let campaign = app.campaign(&[app.js, app.wc], &products).await;

    let (status, body) = app
        .post(&format!("/api/campaigns/{campaign}/publish"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Campaign publishing started");
    let t = app.wait(body["tracker_id"].as_u64().unwrap()).await;

    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0);
    assert_eq!(t["has_failures"], false);
    assert_eq!(t["metadata"]["total_products"], 8);
    for phase in ["product_data", "variants", "images", "processing"] {
        let p = &t["phases_status"][phase];
        assert_eq!(p["processed"], 4, "{phase}: {p}");
        assert_eq!(p["successful"], 4, "{phase}: {p}");
    }
    let js = t["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["system"] == "jumpseller")
        .unwrap()
        .clone();
    assert_eq!(js["phases_status"].as_object().unwrap().len(), 3);

    for p in app.campaign_products(campaign).await {
        assert_eq!(p["status"], "published", "{p}");
        assert!(p["marketplace_info"]["product_id"].is_string(), "{p}");
        assert_eq!(
            p["marketplace_info"]["variant_ids"]
                .as_object()
                .unwrap()
                .len(),
            2,
            "{p}"
        );
        assert!(p["published_at"].is_string());
    }
    app.jumpseller.with_api(|s| {
        assert_eq!(s.products.len(), 4);
        let p = s.product_by_sku("P-1").expect("P-1 on Jumpseller");
        assert_eq!(p.status, "available");
        assert_eq!(p.variants.len(), 2);
        assert_eq!(p.images.len(), 2);
        assert_eq!(p.price, 1001.0);
    });
    app.woo.with_api(|s| {
        let p = s.product_by_sku("P-2").expect("P-2 on WooCommerce");
        assert_eq!(
            (p.status.as_str(), p.kind.as_str()),
            ("publish", "variable")
        );
        assert_eq!(p.variations.len(), 2);
        assert_eq!(p.images.len(), 2);
    });
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(
        (c["status"].as_str(), c["error"].as_bool()),
        (Some("published"), Some(false))
    );
}

#[tokio::test]
async fn pause_publish_and_finish_walk_a_campaign_through_its_statuses_without_duplicates() {
    let app = spawn_app().await;
    let products = app.products("W", 3).await;
    let campaign = app.campaign(&[app.js, app.wc], &products).await;
    app.run(campaign, "publish", json!({})).await;

    let t = app.run(campaign, "pause", json!({})).await;
    assert_eq!(
        (t["status"].as_str(), t["progress"].as_f64()),
        (Some("completed"), Some(100.0))
    );
    assert_eq!(
        t["phases_status"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["processing"]
    );
    assert!(app.all_are(campaign, "paused").await);
    app.jumpseller
        .with_api(|s| assert!(s.products.values().all(|p| p.status == "not-available")));
    app.woo
        .with_api(|s| assert!(s.products.values().all(|p| p.status == "draft")));

    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed");
    assert!(app.all_are(campaign, "published").await);
    app.jumpseller
        .with_api(|s| assert!(s.products.values().all(|p| p.status == "available")));
    assert!(
        app.jumpseller.stats().duplicate_skus().is_empty(),
        "a paused product was created again"
    );
    assert!(app.woo.stats().duplicate_skus().is_empty());

    let t = app.run(campaign, "finish", json!({})).await;
    assert_eq!(t["status"], "completed");
    assert!(app.all_are(campaign, "finished").await);
    app.jumpseller
        .with_api(|s| assert!(s.products.is_empty(), "finish deletes on Jumpseller"));
    app.woo
        .with_api(|s| assert!(s.products.values().all(|p| p.status == "trash")));
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(c["status"], "finished");
}

#[tokio::test]
async fn republish_takes_published_paused_and_errored_products() {
    let app = spawn_app().await;
    let products = app.products("R", 3).await;
    let campaign = app.campaign(&[app.js, app.wc], &products).await;
    app.woo.set_knobs(|k| {
        k.reject_skus
            .insert("R-2".into(), "Image is too small".into());
    });
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(
        (t["status"].as_str(), t["has_failures"].as_bool()),
        (Some("completed"), Some(true))
    );
    let errored: Vec<_> = app
        .statuses(campaign)
        .await
        .into_iter()
        .filter(|s| s.2 == "errored")
        .collect();
    assert_eq!(
        errored,
        [("R-2".to_string(), app.wc, "errored".to_string())]
    );

    app.woo.set_knobs(|k| k.reject_skus.clear());
    app.jumpseller.with_api(|s| {
        if let Some(p) = s
            .products
            .values_mut()
            .find(|p| p.sku.as_deref() == Some("R-1"))
        {
            p.name = "changed on the store".into();
        }
    });
    let t = app.run(campaign, "republish", json!({})).await;
    assert_eq!(
        t["metadata"]["total_products"], 6,
        "5 published and 1 errored"
    );
    assert_eq!(t["status"], "completed");
    assert!(app.all_are(campaign, "published").await);
    app.jumpseller.with_api(|s| {
        assert_eq!(
            s.product_by_sku("R-1").unwrap().name,
            "Product R 1",
            "republish re-sends data"
        );
    });
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
    assert!(app.woo.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn product_actions_touch_only_the_chosen_products() {
    let app = spawn_app().await;
    let p = app.products("C", 4).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.run(campaign, "publish", json!({})).await;

    let (status, v) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/pause"),
            json!({"product_ids": [p[0]]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"], "Se notificará al finalizar.");
    assert_eq!(v["total_products"], 2);
    app.wait(v["tracker_id"].as_u64().unwrap()).await;
    let paused: Vec<_> = app
        .statuses(campaign)
        .await
        .into_iter()
        .filter(|s| s.2 == "paused")
        .map(|s| s.0)
        .collect();
    assert_eq!(paused, ["C-1", "C-1"]);

    // Publishing C-1 and C-2 takes only C-1: C-2 is already published.
    let (_, v) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/publish"),
            json!({"product_ids": [p[0], p[1]], "marketplace_ids": [app.js]}),
        )
        .await;
    assert_eq!(v["total_products"], 1, "{v}");
    app.wait(v["tracker_id"].as_u64().unwrap()).await;

    let (status, v) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/ecommerce/campaign/{campaign}/product?action=delete"),
            Some(json!({"product_ids": [p[2]]})),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"], "Se notificará al finalizar la eliminación.");
    assert_eq!(v["total_products"], 2);
    let t = app.wait(v["tracker_id"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "completed");

    let (_, v) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/ecommerce/campaign/{campaign}/product?action=finish"),
            Some(json!({"product_ids": [p[3]]})),
            Some(&app.token),
        )
        .await;
    app.wait(v["tracker_id"].as_u64().unwrap()).await;

    let statuses = app.statuses(campaign).await;
    assert!(
        statuses.iter().all(|(sku, _, _)| sku != "C-3"),
        "C-3 left the campaign: {statuses:?}"
    );
    let of = |sku: &str| {
        statuses
            .iter()
            .filter(|s| s.0 == sku)
            .map(|s| s.2.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("C-1"),
        ["published", "paused"],
        "published on Jumpseller only"
    );
    assert_eq!(of("C-2"), ["published", "published"]);
    assert_eq!(of("C-4"), ["finished", "finished"]);
    app.jumpseller.with_api(|s| {
        assert!(s.product_by_sku("C-3").is_none());
        assert!(s.product_by_sku("C-4").is_none());
        assert!(s.product_by_sku("C-2").is_some());
    });
    app.woo.with_api(|s| {
        assert!(s.product_by_sku("C-3").is_none(), "delete removes for good");
        assert_eq!(s.product_by_sku("C-4").unwrap().status, "trash");
    });
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(
        c["status"], "published",
        "product actions leave the campaign's status alone"
    );
}

#[tokio::test]
async fn progress_endpoints_answer_in_the_seeds_shapes() {
    let app = spawn_app().await;
    let p = app.products("G", 2).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let tracker = app.run(campaign, "publish", json!({})).await;

    let (status, v) = app
        .get(&format!(
            "/api/campaigns/{campaign}/progress?action=publish"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["progress"], 100.0);
    assert_eq!(v["data"]["status"], "completed");
    assert_eq!(v["data"]["tracker_id"], tracker["id"]);
    let (status, v) = app
        .get(&format!("/api/campaigns/{campaign}/progress?action=pause"))
        .await;
    assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));

    assert_eq!(tracker["marketplace_id"], app.wc);
    assert_eq!(tracker["metadata"]["campaign_name"], "Summer Sale");
    assert!(tracker["completed_at"].is_string());
    let (_, list) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let (_, page) = app
        .get(&format!(
            "/api/campaigns/{campaign}/products?status=published&per_page=1"
        ))
        .await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["data"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    let (_, page) = app
        .get(&format!(
            "/api/campaigns/{campaign}/products?status=errored"
        ))
        .await;
    assert_eq!(page["total"], 0);
}
