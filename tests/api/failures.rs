//! A product the marketplace refuses ends errored with the marketplace's own message; the run
//! goes on, unless it was asked to fail fast.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_rejected_product_ends_errored_with_the_stores_message_while_the_run_completes() {
    let app = spawn_app().await;
    let p = app.products("E", 3).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.jumpseller.set_knobs(|k| {
        k.reject_skus.insert(
            "E-2".into(),
            "Sku has already been taken by a deleted product".into(),
        );
    });
    let t = app.run(campaign, "publish", json!({})).await;

    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["has_failures"], true);
    assert_eq!(t["progress"], 100.0);
    let js = t["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["system"] == "jumpseller")
        .unwrap()
        .clone();
    let phases = &js["phases_status"];
    assert_eq!(
        (
            phases["product_data"]["successful"].as_u64(),
            phases["product_data"]["failed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        phases["variants"]["skipped"], 1,
        "a product that failed does not enter later phases"
    );
    assert_eq!(phases["images"]["processed"], 3);

    let products = app.campaign_products(campaign).await;
    let failed: Vec<_> = products
        .iter()
        .filter(|p| p["status"] == "errored")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["sku"], "E-2");
    assert_eq!(failed[0]["marketplace_id"], app.js);
    assert_eq!(
        failed[0]["error_message"],
        "Sku has already been taken by a deleted product"
    );
    assert_eq!(
        products
            .iter()
            .filter(|p| p["status"] == "published")
            .count(),
        5
    );
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(
        (c["status"].as_str(), c["error"].as_bool()),
        (Some("published"), Some(true))
    );
    assert_eq!(c["product_counts"]["errored"], 1);
}

#[tokio::test]
async fn a_woocommerce_refusal_reaches_the_product_readably() {
    let app = spawn_app().await;
    let p = app.products("Q", 1).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    app.woo.set_knobs(|k| {
        k.reject_skus.insert(
            "Q-1".into(),
            "Product name contains a forbidden word".into(),
        );
    });
    app.run(campaign, "publish", json!({})).await;
    let products = app.campaign_products(campaign).await;
    assert_eq!(
        products[0]["error_message"],
        "Product name contains a forbidden word (woocommerce_rest_invalid_product)"
    );
}

#[tokio::test]
async fn fail_fast_fails_the_run_at_the_first_refusal() {
    let app = spawn_app().await;
    let p = app.products("X", 6).await;
    let campaign = app.campaign(&[app.js], &p).await;
    app.jumpseller.set_knobs(|k| {
        k.reject_skus
            .insert("X-1".into(), "Price is not valid".into());
    });
    let t = app
        .run(
            campaign,
            "publish",
            json!({"fail_fast": true, "chunk_size": 1}),
        )
        .await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(
        t["error_message"]
            .as_str()
            .unwrap()
            .contains("Price is not valid"),
        "{t}"
    );
    assert_eq!(t["metadata"]["fail_fast"], true);
    let statuses = app.statuses(campaign).await;
    assert_eq!(statuses.iter().find(|s| s.0 == "X-1").unwrap().2, "errored");
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(c["error"], true);
    assert!(
        c["running_tracker_id"].is_null(),
        "a failed run releases its lock"
    );
}

#[tokio::test]
async fn a_store_refusing_the_credentials_stops_that_connection_while_the_other_completes() {
    let app = spawn_app().await;
    let bad = app.connect_jumpseller("Revoked store", "wrong-token").await;
    let p = app.products("A", 3).await;
    let campaign = app.campaign(&[bad, app.wc], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;

    assert_eq!(t["progress"], 100.0, "{t}");
    let by_system = |s: &str| {
        t["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["system"] == s)
            .unwrap()
            .clone()
    };
    let js = by_system("jumpseller");
    assert!(
        js["error"]
            .as_str()
            .unwrap()
            .contains("refused the credentials"),
        "{js}"
    );
    assert!(
        t["error_message"]
            .as_str()
            .unwrap()
            .contains("Revoked store"),
        "{t}"
    );
    assert_eq!(
        by_system("woocommerce")["phases_status"]["processing"]["successful"],
        3
    );
    let statuses = app.statuses(campaign).await;
    assert!(
        statuses
            .iter()
            .filter(|s| s.1 == bad)
            .all(|s| s.2 == "errored"),
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .filter(|s| s.1 == app.wc)
        .all(|s| s.2 == "published"));
    let requests = app.jumpseller.stats().requests;
    assert!(
        requests <= 8,
        "the refused store was not hammered: {requests} requests"
    );
}

#[tokio::test]
async fn a_run_that_stops_progressing_is_failed_by_the_watchdog_with_a_clear_message() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.runs.stall_ms = 400;
        c.http.timeout_secs = 1;
    })
    .await;
    let p = app.products("WD", 4).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    // The site stops answering: every call waits at the gate.
    app.woo.hold();
    let tracker = app.action(campaign, "publish", json!({})).await;
    let t = app.wait(tracker).await;
    app.woo.release();
    assert_eq!(t["status"], "failed", "{t}");
    let message = t["error_message"].as_str().unwrap();
    assert!(
        message.starts_with("no progress for ") && message.contains("watchdog"),
        "{message}"
    );
    // The campaign is free again, and nothing was left half-done: a new publish completes.
    let again = app.run(campaign, "publish", json!({})).await;
    assert_eq!(again["status"], "completed", "{again}");
    assert!(app.all_are(campaign, "published").await);
    assert!(app.woo.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn errored_products_are_listed_with_their_errors_and_retried_as_a_new_run() {
    let app = crate::helpers::spawn_app().await;
    let p = app.products("RT", 5).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/retry"), json!({}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("nothing_to_do")),
        "{v}"
    );

    app.jumpseller.set_knobs(|k| {
        k.reject_skus
            .insert("RT-2".into(), "Price is too low".into());
        k.reject_skus.insert("RT-4".into(), "Name is taken".into());
    });
    let first = app.run(campaign, "publish", json!({})).await;
    let (status, failed) = app
        .get(&format!("/api/campaigns/{campaign}/failed-products"))
        .await;
    assert_eq!(status, 200, "{failed}");
    let mut listed: Vec<(String, String, String, u64)> = failed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["sku"].as_str().unwrap().to_string(),
                f["error_message"].as_str().unwrap().to_string(),
                f["action"].as_str().unwrap().to_string(),
                f["tracker_id"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    let first_id = first["id"].as_u64().unwrap();
    assert_eq!(
        listed,
        vec![
            (
                "RT-2".into(),
                "Price is too low".into(),
                "publish".into(),
                first_id
            ),
            (
                "RT-4".into(),
                "Name is taken".into(),
                "publish".into(),
                first_id
            ),
        ]
    );

    // The store accepts them now; a retry of RT-2 alone, then of the rest.
    app.jumpseller.set_knobs(|k| k.reject_skus.clear());
    let sent_before = app.woo.stats().requests;
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/retry"),
            json!({"product_ids": [p[1]]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["action"].as_str(), v["total_products"].as_u64()),
        (Some("publish"), Some(1))
    );
    let t = app.wait(v["tracker_id"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "completed");
    let (_, v) = app
        .post(&format!("/api/campaigns/{campaign}/retry"), json!({}))
        .await;
    assert_eq!(v["total_products"], 1, "{v}");
    app.wait(v["tracker_id"].as_u64().unwrap()).await;
    assert!(app.all_are(campaign, "published").await);
    assert_eq!(
        app.woo.stats().requests,
        sent_before,
        "nothing was sent for products that had not failed"
    );
    let (_, failed) = app
        .get(&format!("/api/campaigns/{campaign}/failed-products"))
        .await;
    assert_eq!(failed["data"], json!([]));
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}
