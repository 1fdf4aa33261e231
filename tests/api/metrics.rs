//! `GET /metrics` from outside: Prometheus text whose counters follow what the service did.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{open_ws, sample, spawn_app};

/// The sum of the samples whose lines start with `prefix` (every status of a counter).
fn sum(text: &str, prefix: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test]
async fn metrics_count_the_requests_runs_and_subscribers_of_the_service() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    let requests = format!(
        r#"campaignd_marketplace_requests_total{{system="jumpseller",connection="{}",status="200"}}"#,
        app.js
    );
    assert_eq!(sample(&before, &requests), None, "nothing sent yet");
    let p = app.products("M", 3).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed");
    let after = app.metrics().await;
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

#[tokio::test]
async fn during_a_run_the_request_counter_rises_and_the_rate_stays_under_its_limit() {
    let app = spawn_app().await;
    // 12 products of 5 requests each at 20 a second: about three seconds of requests.
    let js = app
        .jumpseller_connection(
            "paced",
            "js-token",
            json!({"rate_limit": {"per_second": 20, "per_minute": 1200}}),
        )
        .await;
    let p = app.products("R", 12).await;
    let campaign = app.campaign(&[js], &p).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    let requests =
        format!(r#"campaignd_marketplace_requests_total{{system="jumpseller",connection="{js}","#);
    let used = |w: &str| {
        format!(r#"campaignd_rate_used{{system="jumpseller",connection="{js}",window="{w}"}}"#)
    };
    let limit = |w: &str| {
        format!(r#"campaignd_rate_limit{{system="jumpseller",connection="{js}",window="{w}"}}"#)
    };
    let mut seen = Vec::new();
    loop {
        let text = app.metrics().await;
        let active = app.tracker(tracker).await["status"] == "active";
        if let Some(n) = sum(&text, &requests) {
            assert_eq!(sample(&text, &limit("1s")), Some(20.0), "{text}");
            assert_eq!(sample(&text, &limit("1m")), Some(1200.0), "{text}");
            let second = sample(&text, &used("1s")).expect("the last second's use");
            assert!(second <= 20.0, "{second} requests in one second: {text}");
            assert!(sample(&text, &used("1m")).unwrap_or_default() <= 1200.0);
            if seen.last() != Some(&n) {
                seen.push(n);
            }
        }
        if !active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        seen.len() >= 3,
        "the counter rose while the run went on: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let text = app.metrics().await;
    assert_eq!(
        sample(
            &text,
            r#"campaignd_products_total{action="publish",system="jumpseller",outcome="successful"}"#
        ),
        Some(12.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"campaignd_run_duration_seconds_count{action="publish"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("campaignd_store_flush_seconds_count"),
        "{text}"
    );
    assert!(text.contains("campaignd_store_size_bytes"), "{text}");
}

/// Every update a live subscriber was sent is counted once in the delivery histogram, whose
/// delays are real (each between publication and the socket).
#[tokio::test]
async fn each_update_a_subscriber_is_sent_counts_once_in_the_delivery_histogram() {
    let app = spawn_app().await;
    let p = app.products("LD", 3).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let mut ws = open_ws(&app, &format!("campaign_id={campaign}"), &app.token)
        .await
        .expect("the WebSocket opens");
    let mut received = 0.0;
    let mut started = false;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s")
            .expect("the stream is open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).expect("JSON");
        match v["type"].as_str() {
            Some("snapshot") if !started => {
                started = true;
                app.action(campaign, "publish", json!({})).await;
            }
            Some("tracker") => received += 1.0,
            Some("notification") => {
                received += 1.0;
                break;
            }
            _ => {}
        }
    }
    ws.send(Message::Close(None)).await.expect("close sent");
    // The service counts a delivery once it was written: wait until its side has ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = app.metrics().await;
        if sample(&text, "campaignd_live_subscribers ") == Some(0.0) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber ended within 10 s"
        );
        tokio::task::yield_now().await;
    };
    assert!(received >= 2.0, "at least one update and the notification");
    assert_eq!(
        sample(&text, "campaignd_live_delivery_seconds_count "),
        Some(received),
        "{text}"
    );
    let total = sample(&text, "campaignd_live_delivery_seconds_sum ").expect("a sum");
    assert!(total > 0.0 && total < received * 5.0, "{total} s in all");
}
