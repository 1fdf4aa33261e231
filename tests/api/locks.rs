//! Campaign locks: conflicts answer 409 naming the running tracker, `force` takes over,
//! force-reset clears, and the campaign-state rules refuse actions without changing anything.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_conflicting_action_gets_409_naming_the_running_tracker_and_force_takes_over() {
    let app = spawn_app().await;
    let p = app.products("L", 3).await;
    let campaign = app.campaign(&[app.js], &p).await;
    app.jumpseller.hold();
    let first = app.action(campaign, "publish", json!({})).await;

    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/pause"), json!({}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "action_in_progress");
    assert_eq!(v["tracker_id"], first);
    let (status, _) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/publish"),
            json!({"product_ids": [p[0]]}),
        )
        .await;
    assert_eq!(status, 409, "product actions are refused too");
    let extra = app.products("LX", 1).await;
    let (status, v) = app
        .post(
            &format!("/api/campaigns/{campaign}/products"),
            json!({"product_ids": extra}),
        )
        .await;
    assert_eq!(
        (status, v["tracker_id"].as_u64()),
        (409, Some(first)),
        "no product joins a running campaign: {v}"
    );

    // The forced publish waits for the running one to stop between calls, which needs the
    // held store to answer the call in flight.
    let forced = {
        let url = format!("{}/api/campaigns/{campaign}/publish", app.url);
        let req = app
            .client
            .post(url)
            .bearer_auth(&app.token)
            .json(&json!({"force": true}));
        tokio::spawn(async move { req.send().await })
    };
    app.wait_stopping(first).await;
    app.jumpseller.release();
    let response = forced.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let second = response.json::<serde_json::Value>().await.unwrap()["tracker_id"]
        .as_u64()
        .unwrap();
    assert_ne!(second, first);

    let old = app.tracker(first).await;
    assert_eq!(old["status"], "failed");
    assert!(
        old["error_message"]
            .as_str()
            .unwrap()
            .contains("taken over"),
        "{old}"
    );
    // The stopped run recorded why it stopped and where.
    let events: Vec<&str> = old["metadata"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(events.iter().any(|e| e.starts_with("stopping: ")), "{old}");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("stopped at ") && e.contains("product phases done")),
        "{old}"
    );
    let new = app.wait(second).await;
    assert_eq!(new["status"], "completed", "{new}");
    assert_eq!(new["metadata"]["force"], true);
    assert!(
        new["metadata"]["events"][0]
            .as_str()
            .unwrap()
            .contains(&format!("tracker {first}")),
        "{new}"
    );
    assert!(app.all_are(campaign, "published").await);
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
}

#[tokio::test]
async fn force_reset_fails_open_trackers_and_frees_the_campaign() {
    let app = spawn_app().await;
    let p = app.products("F", 2).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/force-reset"), json!({}))
        .await;
    assert_eq!((status, v["cleared_trackers"].as_u64()), (200, Some(0)));

    app.jumpseller.hold();
    let running = app.action(campaign, "publish", json!({})).await;
    let reset = {
        let url = format!("{}/api/campaigns/{campaign}/force-reset", app.url);
        let req = app.client.post(url).bearer_auth(&app.token);
        tokio::spawn(async move { req.send().await })
    };
    app.wait_stopping(running).await;
    app.jumpseller.release();
    let v: serde_json::Value = reset.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(
        v,
        json!({"message": "Campaign reset successfully", "cleared_trackers": 1})
    );

    let t = app.tracker(running).await;
    assert_eq!(t["status"], "failed");
    let (_, c) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert!(c["running_tracker_id"].is_null(), "{c}");
    assert_ne!(c["status"], "publishing");
    let t = app
        .run(
            campaign,
            if c["status"] == "published" {
                "republish"
            } else {
                "publish"
            },
            json!({}),
        )
        .await;
    assert_eq!(t["status"], "completed");
}

#[tokio::test]
async fn actions_the_campaign_state_forbids_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let p = app.products("S", 2).await;
    let campaign = app.campaign(&[app.js], &p).await;

    for action in ["pause", "finish", "republish"] {
        let (status, v) = app
            .post(&format!("/api/campaigns/{campaign}/{action}"), json!({}))
            .await;
        assert_eq!(status, 409, "{action}: {v}");
        assert_eq!(v["error"], "invalid_state");
        assert_eq!(v["campaign_status"], "pending");
        assert!(v["message"].as_str().unwrap().contains("pending"));
    }
    let (_, trackers) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    assert_eq!(
        trackers["data"],
        json!([]),
        "refused actions leave no tracker"
    );

    app.run(campaign, "publish", json!({})).await;
    let (status, v) = app
        .post(&format!("/api/campaigns/{campaign}/publish"), json!({}))
        .await;
    assert_eq!((status, v["error"].as_str()), (409, Some("invalid_state")));

    let empty = app
        .created(
            "/api/campaigns",
            json!({"name": "Empty", "marketplace_ids": [app.js]}),
        )
        .await;
    let (status, v) = app
        .post(&format!("/api/campaigns/{empty}/publish"), json!({}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("nothing_to_do")),
        "{v}"
    );
    let (_, c) = app.get(&format!("/api/campaigns/{empty}")).await;
    assert_eq!(c["status"], "pending");

    app.run(campaign, "finish", json!({})).await;
    let (status, v) = app
        .post(
            &format!("/api/ecommerce/campaign/{campaign}/product/publish"),
            json!({"product_ids": [p[0]]}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
}
