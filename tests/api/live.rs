//! Live progress over WebSocket and SSE, notifications and signed webhooks, spoken to as a
//! client would.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{open_ws, spawn_app, TestApp, Ws};

async fn connect(app: &TestApp, query: &str, token: &str) -> Ws {
    open_ws(app, query, token)
        .await
        .expect("the WebSocket opens")
}

/// The next JSON message, or None when nothing comes within `wait`.
async fn next_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, ws.next()).await.ok()??;
        match message.expect("a frame") {
            Message::Text(text) => return Some(serde_json::from_str(&text).expect("JSON")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn next(ws: &mut Ws) -> Value {
    next_within(ws, Duration::from_secs(30))
        .await
        .expect("a message within 30 s")
}

/// Reads tracker messages until `tracker` ended; answers them all.
async fn until_ended(ws: &mut Ws, tracker: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = next(ws).await;
        let ended = m["type"] == "tracker"
            && m["tracker"]["id"] == tracker
            && m["tracker"]["status"] != "active";
        seen.push(m);
        if ended {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_subscriber_gets_a_snapshot_then_ordered_updates_and_the_end_never_drops() {
    let app = spawn_app().await;
    let p = app.products("LV", 30).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    app.jumpseller
        .set_knobs(|k| k.latency = Duration::from_millis(5));
    let mut ws = connect(&app, &format!("campaign_id={campaign}"), &app.token).await;
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["reason"], "subscribed");
    assert_eq!(snapshot["trackers"], json!([]));
    let start = snapshot["seq"].as_u64().expect("seq");

    let tracker = app.action(campaign, "publish", json!({})).await;
    let seen = until_ended(&mut ws, tracker).await;
    let updates: Vec<&Value> = seen.iter().filter(|m| m["type"] == "tracker").collect();
    let seqs: Vec<u64> = updates.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(seqs[0] > start);
    let progress: Vec<f64> = updates
        .iter()
        .map(|m| m["tracker"]["progress"].as_f64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let last = updates.last().expect("updates");
    assert_eq!(last["tracker"]["status"], "completed");
    assert_eq!(last["tracker"]["progress"], 100.0);
    // The tracker's end is followed by its notification.
    let notice = next(&mut ws).await;
    assert_eq!(notice["type"], "notification");
    assert_eq!(notice["notification"]["tracker_id"], tracker);
    assert_eq!(
        notice["notification"]["title"],
        "Campaign publishing completed"
    );
}

#[tokio::test]
async fn updates_of_a_fast_run_are_coalesced_to_ten_a_second() {
    // Each worker reports every 100 ms and the tracker writes every 20 ms in tests: with five
    // connections in the run, the tracker changes up to five times per 100 ms.
    let app = spawn_app().await;
    let mut stores = vec![app.js, app.wc];
    for n in 0..3 {
        stores.push(
            app.connect_jumpseller(&format!("Store {n}"), "js-token")
                .await,
        );
    }
    let p = app.products("CO", 40).await;
    let campaign = app.campaign(&stores, &p).await;
    app.jumpseller
        .set_knobs(|k| k.latency = Duration::from_millis(20));
    app.woo.set_knobs(|k| k.latency = Duration::from_millis(20));
    let mut ws = connect(&app, &format!("campaign_id={campaign}"), &app.token).await;
    next(&mut ws).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    let mut arrivals = Vec::new();
    loop {
        let m = next(&mut ws).await;
        if m["type"] != "tracker" {
            continue;
        }
        arrivals.push(tokio::time::Instant::now());
        if m["tracker"]["status"] != "active" {
            break;
        }
    }
    let t = app.tracker(tracker).await;
    assert_eq!(t["status"], "completed");
    // The tracker wrote every 20 ms, but the subscriber got at most one update per 100 ms
    // (the end, which never waits, aside). Counted over the whole run, so that jitter in
    // arrival cannot blur it.
    let active = &arrivals[..arrivals.len() - 1];
    assert!(
        active.len() >= 2,
        "the run lasted long enough to send several updates"
    );
    let span = active[active.len() - 1].duration_since(active[0]);
    let most = span.as_millis() as usize / 100 + 2;
    assert!(
        active.len() <= most,
        "{} updates in {span:?}: more than one per 100 ms",
        active.len()
    );
}

#[tokio::test]
async fn a_client_that_reconnects_with_its_last_seq_gets_a_fresh_snapshot() {
    let app = spawn_app().await;
    let p = app.products("RC", 5).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let mut ws = connect(&app, &format!("campaign_id={campaign}"), &app.token).await;
    next(&mut ws).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    let seen = until_ended(&mut ws, tracker).await;
    let last_seq = seen
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .next_back()
        .unwrap();
    drop(ws);
    let mut again = connect(
        &app,
        &format!(
            "campaign_id={campaign}&since={}",
            last_seq.saturating_sub(3)
        ),
        &app.token,
    )
    .await;
    let snapshot = next(&mut again).await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["reason"].as_str()),
        (Some("snapshot"), Some("resync"))
    );
    assert_eq!(snapshot["trackers"][0]["id"], tracker);
    assert_eq!(snapshot["trackers"][0]["status"], "completed");
    assert_eq!(snapshot["trackers"][0]["progress"], 100.0);
    assert_eq!(snapshot["unread_notifications"], 1);
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_events() {
    let app = spawn_app().await;
    let other = app.created_token("globex");
    let p = app.products("TI", 5).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    // Another tenant's campaign is not found, as everywhere in the API.
    let url = format!(
        "{}/api/ws?campaign_id={campaign}&token={other}",
        app.url.replace("http://", "ws://")
    );
    let refused = tokio_tungstenite::connect_async(url).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected 404, got {other:?}"),
    }
    let mut theirs = connect(&app, "", &other).await;
    let snapshot = next(&mut theirs).await;
    assert_eq!(snapshot["trackers"], json!([]));
    let mut mine = connect(&app, "", &app.token).await;
    next(&mut mine).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    until_ended(&mut mine, tracker).await;
    assert_eq!(
        next_within(&mut theirs, Duration::from_millis(300)).await,
        None,
        "nothing of acme's run reached globex"
    );
}

#[tokio::test]
async fn server_sent_events_carry_the_same_messages() {
    let app = spawn_app().await;
    let p = app.products("SE", 5).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let mut response = app
        .client
        .get(format!("{}/api/events?campaign_id={campaign}", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let tracker = app.action(campaign, "publish", json!({})).await;
    let mut buffer = String::new();
    let mut events: Vec<(String, Value)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    'read: loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events within 30 s")
            .expect("a chunk")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let kind = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|k| k.trim().to_string());
            let data = block.lines().find_map(|l| l.strip_prefix("data:"));
            if let (Some(kind), Some(data)) = (kind, data) {
                let v: Value = serde_json::from_str(data.trim()).expect("JSON data");
                let done = kind == "notification";
                events.push((kind, v));
                if done {
                    break 'read;
                }
            }
        }
    }
    assert_eq!(events[0].0, "snapshot");
    let end = events
        .iter()
        .rev()
        .find(|(k, _)| k == "tracker")
        .expect("tracker events");
    assert_eq!(end.1["tracker"]["id"], tracker);
    assert_eq!(end.1["tracker"]["status"], "completed");
}

/// Reads `stream` into `buf` until `buf` holds `pattern`, within 30 s.
async fn read_until(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, pattern: &str) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(buf).contains(pattern) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {pattern:?} within 30 s: {}",
                    String::from_utf8_lossy(buf)
                )
            })
            .expect("reads");
        assert!(
            n > 0,
            "closed before {pattern:?}: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The SSE stream is served on the connection's bare socket when it is the connection's first
/// request (its body ends with the connection), through the HTTP stack when the connection
/// served other requests first (chunked); both carry the updates, and an unauthorized one is
/// answered like any other request.
#[tokio::test]
async fn server_sent_events_on_a_fresh_or_a_reused_connection_stream_until_the_token_is_revoked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let (_, made) = app.post("/api/tokens", json!({"name": "sse"})).await;
    let token = made["token"].as_str().expect("a token").to_string();
    let p = app.products("RS", 3).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let ask = |auth: &str| {
        format!("GET /api/events?campaign_id={campaign} HTTP/1.1\r\nHost: x\r\n{auth}\r\n")
    };

    let mut refused = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    refused.write_all(ask("").as_bytes()).await.expect("sent");
    let mut buf = Vec::new();
    read_until(&mut refused, &mut buf, "unauthorized").await;
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 401"));

    let mut fresh = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let auth = format!("Authorization: Bearer {token}\r\n");
    fresh.write_all(ask(&auth).as_bytes()).await.expect("sent");
    let mut fresh_buf = Vec::new();
    read_until(&mut fresh, &mut fresh_buf, "event:snapshot").await;
    let head = String::from_utf8_lossy(&fresh_buf).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    let mut reused = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    reused
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sent");
    let mut reused_buf = Vec::new();
    read_until(&mut reused, &mut reused_buf, "\r\n\r\n").await;
    reused.write_all(ask(&auth).as_bytes()).await.expect("sent");
    read_until(&mut reused, &mut reused_buf, "event:snapshot").await;
    let text = String::from_utf8_lossy(&reused_buf).to_lowercase();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");

    let tracker = app.action(campaign, "publish", json!({})).await;
    for (stream, buf) in [(&mut fresh, &mut fresh_buf), (&mut reused, &mut reused_buf)] {
        read_until(stream, buf, "event:notification").await;
        let text = String::from_utf8_lossy(buf).to_string();
        let last = text
            .split("\n\n")
            .filter_map(|block| {
                let data = block.lines().find_map(|l| l.strip_prefix("data:"))?;
                block.contains("event:tracker").then(|| data.to_string())
            })
            .last()
            .expect("tracker events");
        let last: Value = serde_json::from_str(&last).expect("JSON data");
        assert_eq!(last["tracker"]["id"], tracker);
        assert_eq!(last["tracker"]["status"], "completed");
    }

    let id = made["id"].as_str().expect("an id");
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/tokens/{id}"),
            None,
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), fresh.read_to_end(&mut rest))
        .await
        .expect("the stream closes within 10 s of the revocation")
        .expect("reads");
}

#[tokio::test]
async fn stopping_the_service_closes_websockets_with_a_reason() {
    let mut app = spawn_app().await;
    let mut ws = connect(&app, "", &app.token).await;
    next(&mut ws).await;
    app.restart();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("closed within 30 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = closed.expect("a close frame with a reason");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "the service is stopping");
}

#[tokio::test]
async fn a_finished_run_leaves_a_notification_that_can_be_marked_read() {
    let app = spawn_app().await;
    let p = app.products("NT", 3).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    let (status, list) = app.get("/api/notifications").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["unread"], 1);
    let n = &list["data"][0];
    assert_eq!(n["tracker_id"], t["id"]);
    assert_eq!(n["status"], "completed");
    assert_eq!(
        n["message"],
        "Summer Sale: 3 of 3 products done on 1 marketplace"
    );
    let id = n["id"].as_u64().unwrap();

    let other = app.created_token("globex");
    let (_, theirs) = app
        .call(
            reqwest::Method::GET,
            "/api/notifications",
            None,
            Some(&other),
        )
        .await;
    assert_eq!(theirs["data"], json!([]));
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/notifications/{id}/read"),
            None,
            Some(&other),
        )
        .await;
    assert_eq!(status, 404, "another tenant cannot touch it");

    let (status, read) = app
        .post(&format!("/api/notifications/{id}/read"), json!({}))
        .await;
    assert_eq!((status, read["data"]["read"].as_bool()), (200, Some(true)));
    let (_, unread) = app.get("/api/notifications?unread=true").await;
    assert_eq!(
        (unread["data"].clone(), unread["unread"].clone()),
        (json!([]), json!(0))
    );
}

/// A webhook receiver on loopback: answers 500 while `failing` is set, records every attempt.
struct Receiver {
    url: String,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    got: std::sync::Arc<std::sync::Mutex<Vec<(warp::http::HeaderMap, String, u16)>>>,
}

async fn receiver(fail_first: usize) -> Receiver {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use warp::Filter;
    let failing = Arc::new(AtomicBool::new(false));
    let got: Arc<Mutex<Vec<(warp::http::HeaderMap, String, u16)>>> = Arc::default();
    let (f, g) = (Arc::clone(&failing), Arc::clone(&got));
    let route = warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(move |headers, body: bytes::Bytes| {
            let mut got = g.lock().unwrap();
            let status = if f.load(Ordering::SeqCst) || got.len() < fail_first {
                500
            } else {
                204
            };
            got.push((headers, String::from_utf8_lossy(&body).into_owned(), status));
            warp::reply::with_status(
                warp::reply(),
                warp::http::StatusCode::from_u16(status).unwrap(),
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/campaignd", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Receiver { url, failing, got }
}

/// Points the tenant's webhook at `url`; answers the signing secret.
async fn set_webhook(app: &TestApp, url: &str) -> String {
    let (status, set) = app
        .call(
            reqwest::Method::PUT,
            "/api/webhook",
            Some(json!({ "url": url })),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    set["secret"].as_str().expect("a secret").to_string()
}

fn verify(secret: &str, headers: &warp::http::HeaderMap, body: &str) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let header = |k: &str| headers[k].to_str().unwrap().to_string();
    let signed = format!(
        "{}.{}.{}",
        header("webhook-id"),
        header("webhook-timestamp"),
        body
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    header("webhook-signature") == expected
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_webhook_is_signed_and_retried_until_its_receiver_accepts_it() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.webhooks.retry_min_ms = 50;
        c.webhooks.retry_max_ms = 200;
    })
    .await;
    let hook = receiver(2).await;
    let secret = set_webhook(&app, &hook.url).await;
    assert!(secret.starts_with("whsec_"));
    let (_, shown) = app.get("/api/webhook").await;
    assert!(shown.get("secret").is_none(), "the secret is shown once");

    let p = app.products("WH", 2).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    let got = wait_for(|| {
        let got = hook.got.lock().unwrap();
        (got.len() >= 3).then(|| got.clone())
    })
    .await;
    assert_eq!(
        got.iter().map(|g| g.2).collect::<Vec<_>>(),
        vec![500, 500, 204],
        "failed twice, then delivered"
    );
    let ids: Vec<_> = got.iter().map(|g| g.0["webhook-id"].clone()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one id for every attempt"
    );
    for (headers, body, _) in &got {
        assert!(verify(&secret, headers, body), "a valid signature");
        assert!(!verify(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            headers,
            body
        ));
    }
    let body: Value = serde_json::from_str(&got[2].1).unwrap();
    assert_eq!(body["type"], "run.completed");
    assert_eq!(body["data"]["tracker_id"], t["id"]);
    // The delivery leaves the outbox once the 204 is in: soon after the receiver saw it.
    outbox_drained(&app).await;
    let metrics = app.metrics().await;
    for line in [
        r#"campaignd_webhook_deliveries_total{outcome="retried"} 2"#,
        r#"campaignd_webhook_deliveries_total{outcome="delivered"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

/// Waits until the tenant's webhook outbox is empty.
async fn outbox_drained(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, shown) = app.get("/api/webhook").await;
        if shown["pending"] == json!([]) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the outbox after 30 s: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_pending_webhook_is_delivered_after_a_restart() {
    use std::sync::atomic::Ordering;
    let mut app = crate::helpers::spawn_app_with(|c| {
        c.webhooks.retry_min_ms = 100;
        c.webhooks.retry_max_ms = 300;
    })
    .await;
    let hook = receiver(0).await;
    hook.failing.store(true, Ordering::SeqCst);
    set_webhook(&app, &hook.url).await;
    let p = app.products("WR", 2).await;
    let campaign = app.campaign(&[app.wc], &p).await;
    app.run(campaign, "publish", json!({})).await;
    wait_for(|| (!hook.got.lock().unwrap().is_empty()).then_some(())).await;
    let (_, shown) = app.get("/api/webhook").await;
    assert_eq!(
        shown["pending"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );

    app.restart();
    hook.failing.store(false, Ordering::SeqCst);
    let delivered = wait_for(|| {
        let got = hook.got.lock().unwrap();
        got.iter().find(|g| g.2 == 204).cloned()
    })
    .await;
    let body: Value = serde_json::from_str(&delivered.1).unwrap();
    assert_eq!(body["type"], "run.completed");
    outbox_drained(&app).await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_resynced_and_ends_with_the_right_totals() {
    // A buffer of one event, and eight runs writing progress every 20 ms: the subscriber cannot
    // keep up with the bursts and is sent fresh snapshots.
    let app = crate::helpers::spawn_app_with(|c| c.events.buffer = 1).await;
    let mut ws = connect(&app, "", &app.token).await;
    next(&mut ws).await;
    app.woo.set_knobs(|k| k.latency = Duration::from_millis(10));
    // Held until all eight have started, so that they write progress at the same time.
    app.woo.hold();
    let mut trackers = Vec::new();
    for i in 0..8 {
        let p = app.products(&format!("LG{i}"), 20).await;
        let campaign = app.campaign(&[app.wc], &p).await;
        trackers.push(app.action(campaign, "publish", json!({})).await);
    }
    app.woo.release();
    // The client's view: the latest state of each tracker, from snapshots and updates.
    let mut view: std::collections::HashMap<u64, Value> = Default::default();
    let mut resynced = 0;
    loop {
        let m = next(&mut ws).await;
        match m["type"].as_str() {
            Some("snapshot") => {
                assert_eq!(m["reason"], "lagged");
                resynced += 1;
                for t in m["trackers"].as_array().unwrap() {
                    view.insert(t["id"].as_u64().unwrap(), t.clone());
                }
            }
            Some("tracker") => {
                view.insert(m["tracker"]["id"].as_u64().unwrap(), m["tracker"].clone());
            }
            _ => {}
        }
        let all_ended = trackers
            .iter()
            .all(|t| view.get(t).is_some_and(|v| v["status"] != "active"));
        if all_ended {
            break;
        }
    }
    assert!(resynced > 0, "the subscriber never fell behind");
    for t in &trackers {
        let truth = app.tracker(*t).await;
        assert_eq!(view[t]["status"], "completed");
        assert_eq!(view[t]["progress"], truth["progress"]);
        assert_eq!(view[t]["phases_status"], truth["phases_status"]);
    }
}

/// `/api/ws` without a WebSocket handshake is a clear refusal, not a 404 or a hang; a client
/// speaking another version of the protocol is told which one is spoken.
#[tokio::test]
async fn a_request_to_the_websocket_without_a_handshake_is_refused_with_a_reason() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/ws?campaign_id=1").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "websocket_required");
    let answer = reqwest::Client::new()
        .get(format!("{}/api/ws", app.url))
        .bearer_auth(&app.token)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["error"], "websocket_required");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("13")),
        "{body}"
    );
}
