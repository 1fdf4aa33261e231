//! `GET /metrics` from outside: Prometheus text whose counters follow what the service did.

use serde_json::json;

use crate::helpers::spawn_app;

/// The value of the sample whose line starts with `prefix`, if there is one.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(url: &str) -> String {
    let res = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("answers");
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(kind.starts_with("text/plain"), "{kind}");
    res.text().await.expect("text")
}

#[tokio::test]
async fn metrics_count_the_requests_runs_and_subscribers_of_the_service() {
    let app = spawn_app().await;
    let before = scrape(&app.url).await;
    let requests = format!(
        r#"campaignd_marketplace_requests_total{{system="jumpseller",connection="{}",status="200"}}"#,
        app.js
    );
    assert_eq!(sample(&before, &requests), None, "nothing sent yet");
    let p = app.products("M", 3).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed");
    let after = scrape(&app.url).await;
    // Each product: the product, two variants and two images.
    let sent = app.jumpseller.stats().requests as f64;
    assert_eq!(sample(&after, &requests), Some(sent), "{after}");
    assert!(sent >= 15.0);
    assert_eq!(
        sample(&after, r#"campaignd_runs_started_total{action="publish"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            r#"campaignd_runs_ended_total{action="publish",status="completed"}"#
        ),
        Some(1.0)
    );
    assert!(
        after.contains("campaignd_limiter_wait_seconds_total{"),
        "{after}"
    );
    assert!(!after.contains("js-token"), "no credential in a label");
    assert_eq!(sample(&after, "campaignd_live_subscribers "), Some(0.0));
}
