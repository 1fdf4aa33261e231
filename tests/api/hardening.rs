//! The HTTP edge as an attacker or a careless client meets it: tokens that can be listed,
//! revoked (closing the streams they opened) and that expire; slow clients cut; array bodies,
//! malformed JSON, odd paths, over-long and control-character input refused; per-token request
//! rates, per-token streams and per-address connections bounded; the dashboard's headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::domain::clock::FakeClock;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    open_ws, spawn_app, spawn_app_timed, spawn_app_with, TestApp, TestStore, Ws, WsError,
};

async fn ws_connect(app: &TestApp, token: &str) -> Result<Ws, WsError> {
    open_ws(app, "", token).await
}

async fn revoke(app: &TestApp, id: &str) -> (u16, Value) {
    app.call(
        Method::DELETE,
        &format!("/api/tokens/{id}"),
        None,
        Some(&app.token),
    )
    .await
}

async fn raw(app: &TestApp, method: Method, path: &str, body: &str) -> (u16, Value) {
    let res = app
        .client
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("answers");
    let status = res.status().as_u16();
    let text = res.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")),
    )
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_its_open_stream_closes() {
    let app = spawn_app().await;
    let (status, made) = app
        .post("/api/tokens", json!({"name": "ci", "expires_in_days": 30}))
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().expect("shown once").to_string();
    let id = made["id"].as_str().expect("an id").to_string();
    assert!(made["expires_at"].is_string());

    let (status, list) = app.get("/api/tokens").await;
    assert_eq!(status, 200);
    assert!(
        !list.to_string().contains(&token),
        "a token is never shown again"
    );
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id && t["name"] == "ci"));

    let ok = app
        .call(Method::GET, "/api/campaigns", None, Some(&token))
        .await;
    assert_eq!(ok.0, 200);
    let mut ws = ws_connect(&app, &token).await.expect("the stream opens");
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(Message::Text(_))))),
        "a snapshot first"
    );

    let (status, v) = revoke(&app, &id).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .call(Method::GET, "/api/campaigns", None, Some(&token))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("unauthorized")),
        "{v}"
    );
    // The open stream ends with a policy close.
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        assert!(Instant::now() < deadline, "the stream stayed open");
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(
        ws_connect(&app, &token).await.is_err(),
        "no new stream either"
    );
    assert_eq!(revoke(&app, &id).await.0, 404, "revoked once");
}

#[tokio::test]
async fn a_token_stops_working_when_it_expires() {
    let clock = Arc::new(FakeClock::new(1_800_000_000_000));
    let app = spawn_app_timed(TestStore::new(), Some(Arc::clone(&clock)), |_| {}).await;
    let (_, made) = app.post("/api/tokens", json!({"expires_in_days": 1})).await;
    let token = made["token"].as_str().expect("a token").to_string();
    assert_eq!(
        app.call(Method::GET, "/api/tokens", None, Some(&token))
            .await
            .0,
        200
    );
    clock.advance(86_400_000);
    assert_eq!(
        app.call(Method::GET, "/api/tokens", None, Some(&token))
            .await
            .0,
        401
    );
    let (_, list) = app.get("/api/tokens").await;
    let entry = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == made["id"])
        .cloned()
        .expect("listed");
    assert_eq!(entry["expired"], true);
    let (status, _) = app.post("/api/tokens", json!({"expires_in_days": 0})).await;
    assert_eq!(status, 422);
}

/// A token that expires while its stream is open ends the stream, though nothing on this node
/// revoked it: the service reads the tokens of open streams again every two seconds.
#[tokio::test]
async fn a_stream_whose_token_expires_is_closed_with_a_policy_code() {
    let clock = Arc::new(FakeClock::new(1_800_000_000_000));
    let app = spawn_app_timed(TestStore::new(), Some(Arc::clone(&clock)), |_| {}).await;
    let (_, made) = app.post("/api/tokens", json!({"expires_in_days": 1})).await;
    let token = made["token"].as_str().expect("a token").to_string();
    let mut ws = ws_connect(&app, &token).await.expect("the stream opens");
    clock.advance(86_400_000);
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame within 10 s: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_or_its_body_is_cut() {
    let app = spawn_app_with(|c| c.server.read_timeout_secs = 1).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    // Headers never finished: the server closes the connection.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("sent");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was never cut");
    // A body that never arrives whole: 408, and the connection closes.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let head = format!(
        "POST /api/campaigns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"na",
        app.token
    );
    slow.write_all(head.as_bytes()).await.expect("sent");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was never cut");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    let (_, list) = app.get("/api/campaigns").await;
    assert_eq!(list["data"], json!([]), "nothing was created");
}

#[tokio::test]
async fn arrays_malformed_json_odd_paths_and_bad_text_are_refused() {
    let app = spawn_app().await;
    let (status, v) = raw(&app, Method::POST, "/api/campaigns", r#"["name",[1]]"#).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    let p = app.products("A", 1).await;
    let campaign = app.campaign(&[app.js], &p).await;
    let (status, v) = raw(
        &app,
        Method::POST,
        &format!("/api/campaigns/{campaign}/publish"),
        "[]",
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = raw(&app, Method::POST, "/api/products", r#"{"sku": "x"}"#).await;
    assert_eq!(status, 422, "a list is expected: {v}");
    for bad in ["{", "[1,", "nul", "{\"name\": \"x\",}"] {
        let (status, v) = raw(&app, Method::POST, "/api/campaigns", bad).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_json")),
            "{bad}: {v}"
        );
    }
    for path in [
        "//api/campaigns",
        "/api//campaigns",
        &format!("/api/campaigns/+{campaign}"),
        &format!("/api/campaigns/0{campaign}"),
    ] {
        let (status, v) = raw(&app, Method::GET, path, "").await;
        assert_eq!(status, 404, "{path}: {v}");
        assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    }
    let long = "x".repeat(300);
    for body in [
        json!([{"sku": "B\u{1}", "name": "n", "price": 1}]),
        json!([{"sku": "B", "name": "a\nb", "price": 1}]),
        json!([{"sku": "B", "name": long, "price": 1}]),
        json!([{"sku": "B", "name": "n", "price": 1, "variants": (0..300).map(|i| json!({"sku": format!("B-{i}"), "price": 1, "options": {"n": i.to_string()}})).collect::<Vec<_>>()}]),
        json!([{"sku": "B", "name": "n", "price": 1, "variants": [{"sku": "B-1", "price": 1, "options": {"Size": long}}]}]),
    ] {
        let (status, v) = app.post("/api/products", body).await;
        assert_eq!(status, 422, "{v}");
    }
    let (status, _) = app
        .post(
            "/api/campaigns",
            json!({"name": long, "marketplace_ids": [app.js]}),
        )
        .await;
    assert_eq!(status, 422);
    let (status, v) = app
        .post(
            "/api/marketplaces",
            json!({"system": "jumpseller", "name": "n", "base_url": app.jumpseller.url(),
                   "credentials": {"login": "l", "authtoken": "t".repeat(5000)}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let (_, products) = app.get("/api/products").await;
    assert_eq!(products["total"], 1, "nothing was written by the refusals");
}

#[tokio::test]
async fn requests_streams_and_connections_are_bounded_per_token_and_address() {
    let app = spawn_app_with(|c| {
        c.server.requests_per_token_per_minute = 200;
        c.server.subscribers_per_token = 2;
        c.server.connections_per_client = 64;
    })
    .await;
    // Streams per token.
    let _a = ws_connect(&app, &app.token).await.expect("first");
    let _b = ws_connect(&app, &app.token).await.expect("second");
    match ws_connect(&app, &app.token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("a third stream was not refused: {:?}", other.map(|_| ())),
    }
    // Requests per token: the fixture used some of the minute's 200 already.
    let mut limited = None;
    for _ in 0..300 {
        let res = app
            .client
            .get(format!("{}/api/campaigns", app.url))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("answers");
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("the token's rate was enforced");
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After");
    assert!(retry >= 1);
    let v: Value = res.json().await.expect("JSON");
    assert_eq!(v["error"], "rate_limited");
    // Another token of the tenant is not held back by this one.
    let other = app.created_token("acme");
    assert_eq!(
        app.call(Method::GET, "/api/campaigns", None, Some(&other))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn one_address_holds_a_bounded_number_of_connections() {
    let app = spawn_app_with(|c| c.server.connections_per_client = 3).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    // The fixture's client may keep a connection in its pool: of four more, at least one is
    // over the limit, and its answer is the first data any of them receives.
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connects"),
        );
    }
    let reads = streams.into_iter().map(|mut s| {
        Box::pin(async move {
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed without an answer"));
            }
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).to_string())
        })
    });
    let (text, _held) =
        tokio::time::timeout(Duration::from_secs(30), futures::future::select_ok(reads))
            .await
            .expect("a connection over the limit was answered")
            .expect("with data");
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("too_many_connections"),
        "{text}"
    );
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_security_headers() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/", app.url))
        .await
        .expect("answers");
    let h = res.headers().clone();
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(
        get("content-security-policy").contains("script-src 'sha256-"),
        "{h:?}"
    );
    assert!(get("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(get("x-frame-options"), "DENY");
    assert_eq!(get("x-content-type-options"), "nosniff");
    assert_eq!(get("referrer-policy"), "no-referrer");
    let page = res.text().await.expect("a page");
    assert!(
        page.contains("history.replaceState"),
        "the token leaves the address bar"
    );
}

/// `campaignd token ...` on the stopped service's store, answering stdout.
fn cli(app: &TestApp, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_campaignd"))
        .args(args)
        .envs(app.store_env())
        .env("CAMPAIGND_LOG", "warn")
        .output()
        .expect("campaignd runs");
    assert!(
        out.status.success(),
        "campaignd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn the_cli_creates_lists_and_revokes_tokens() {
    let mut app = spawn_app().await;
    app.stop();
    let token = cli(
        &app,
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "deploy",
            "--expires-in",
            "2h",
        ],
    );
    let token = token.trim().to_string();
    assert!(token.starts_with("cmpd_"), "{token}");
    let list = cli(&app, &["token", "list"]);
    let line = list
        .lines()
        .find(|l| l.contains("deploy"))
        .unwrap_or_else(|| panic!("listed: {list}"));
    assert!(!list.contains(&token), "the token itself is never listed");
    assert!(line.contains("acme"));
    let id = line.split_whitespace().next().expect("an id").to_string();
    app.try_start().expect("starts");
    assert_eq!(
        app.call(Method::GET, "/api/tokens", None, Some(&token))
            .await
            .0,
        200
    );
    app.stop();
    let revoked = cli(&app, &["token", "revoke", &id]);
    assert!(revoked.contains("revoked"), "{revoked}");
    app.try_start().expect("starts");
    assert_eq!(
        app.call(Method::GET, "/api/tokens", None, Some(&token))
            .await
            .0,
        401
    );
}
