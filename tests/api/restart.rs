//! The data directory is the truth: a restart keeps every campaign, product status and tracker.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_restart_on_the_same_data_keeps_campaigns_statuses_and_trackers() {
    let mut app = spawn_app().await;
    let p = app.products("K", 3).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.jumpseller.set_knobs(|k| {
        k.reject_skus.insert("K-3".into(), "refused".into());
    });
    app.run(campaign, "publish", json!({})).await;
    app.run(campaign, "pause", json!({})).await;

    let before_products = app.campaign_products(campaign).await;
    let (_, before_campaign) = app.get(&format!("/api/campaigns/{campaign}")).await;
    let (_, before_trackers) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    let (_, before_connections) = app.get("/api/marketplaces").await;

    app.restart();

    assert_eq!(app.campaign_products(campaign).await, before_products);
    assert_eq!(
        app.get(&format!("/api/campaigns/{campaign}")).await.1,
        before_campaign
    );
    assert_eq!(
        app.get(&format!("/api/campaigns/{campaign}/trackers"))
            .await
            .1,
        before_trackers
    );
    assert_eq!(app.get("/api/marketplaces").await.1, before_connections);
    assert_eq!(before_trackers["data"].as_array().unwrap().len(), 2);
    assert_eq!(before_campaign["status"], "paused");

    // The restarted service carries on from there: publishing again finds the paused products.
    app.jumpseller.set_knobs(|k| k.reject_skus.clear());
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed");
    assert_eq!(t["metadata"]["total_products"], 6);
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}
