//! The egress policy from outside: a tenant cannot point webhooks or marketplace connections at
//! the service's own network (every spelling of loopback, private ranges, link-local metadata
//! services, a DNS name that resolves to loopback), URLs with userinfo are refused, redirects are
//! never followed, and an address refused after it was stored is refused again at send time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use campaignd::config::EgressConfig;
use serde_json::{json, Value};
use warp::Filter;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

async fn put_webhook(app: &TestApp, url: &str) -> (u16, Value) {
    app.call(
        reqwest::Method::PUT,
        "/api/webhook",
        Some(json!({ "url": url })),
        Some(&app.token),
    )
    .await
}

/// A receiver on loopback answering every POST with `status` (and `location`), counting them.
async fn receiver(status: u16, location: Option<String>) -> (String, Arc<Mutex<usize>>) {
    let got = Arc::new(Mutex::new(0usize));
    let g = Arc::clone(&got);
    let route = warp::post().map(move || {
        *g.lock().unwrap() += 1;
        let mut reply = warp::http::Response::builder().status(status);
        if let Some(l) = &location {
            reply = reply.header("location", l.as_str());
        }
        reply.body(String::new()).unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, got)
}

#[tokio::test]
async fn webhooks_cannot_point_inside_the_network() {
    let app = spawn_app_with(|c| c.egress.webhooks_allow_private = false).await;
    let own = app.url.clone();
    let cases = [
        own.clone(),
        "http://127.0.0.1:9/".to_string(),
        "http://localhost:9/hook".to_string(),
        "http://[::1]/".to_string(),
        "http://0.0.0.0/".to_string(),
        "http://10.0.0.5/".to_string(),
        "http://192.168.1.10/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://2130706433/".to_string(),
        "http://[::ffff:7f00:1]/".to_string(),
        "http://user:pass@hooks.example/".to_string(),
        "ftp://hooks.example/".to_string(),
    ];
    for url in &cases {
        let (status, v) = put_webhook(&app, url).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (422, Some("url_refused")),
            "{url}: {v}"
        );
        assert!(
            v["message"].as_str().is_some_and(|m| m.len() > 20),
            "a reason: {v}"
        );
    }
    let (status, _) = app.get("/api/webhook").await;
    assert_eq!(status, 404, "nothing was stored");
}

#[tokio::test]
async fn marketplace_urls_inside_the_network_or_off_their_official_host_are_refused() {
    let mut app = spawn_app().await;
    let p = app.products("E", 2).await;
    let campaign = app.campaign(&[app.js], &p).await;
    app.stop();
    app.config_mut().egress = EgressConfig::default();
    app.try_start().expect("starts strict");
    let connect = |system: &str, base_url: &str| {
        let mut body = json!({"system": system, "name": "x", "base_url": base_url,
                              "credentials": {"login": "l", "authtoken": "t"}});
        if system == "woocommerce" {
            body["credentials"] = json!({"consumer_key": "ck_1", "consumer_secret": "cs_1"});
        }
        body
    };
    for (system, url) in [
        ("woocommerce", app.jumpseller.url()),
        (
            "woocommerce",
            "http://169.254.169.254/wp-json/wc/v3".to_string(),
        ),
        (
            "woocommerce",
            "https://user:secret@shop.example/wp-json/wc/v3".to_string(),
        ),
        (
            "jumpseller",
            "https://api.jumpseller.com.attacker.example/v1".to_string(),
        ),
        ("jumpseller", "http://api.jumpseller.com/v1".to_string()),
    ] {
        let (status, v) = app.post("/api/marketplaces", connect(system, &url)).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (422, Some("url_refused")),
            "{url}: {v}"
        );
    }
    let (_, list) = app.get("/api/marketplaces").await;
    assert!(
        !list.to_string().contains("secret@"),
        "no password shown back"
    );

    // The connection stored before is refused at send time: nothing reaches the simulator.
    let before = app.jumpseller.stats().requests;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(app.jumpseller.stats().requests, before);
    let rows = app.campaign_products(campaign).await;
    assert!(rows.iter().all(|r| r["status"] == "errored"), "{rows:?}");
    assert!(
        rows[0]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("refused by the egress policy") && m.contains("loopback")),
        "{:?} {t}",
        rows[0]["error_message"]
    );
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_a_refused_address_is_refused_at_send_time() {
    let mut app = spawn_app().await;
    let (target, target_got) = receiver(204, None).await;
    let (redirector, redirector_got) = receiver(307, Some(target.clone())).await;
    let (status, v) = put_webhook(&app, &redirector).await;
    assert_eq!(status, 200, "{v}");
    let p = app.products("R", 1).await;
    let campaign = app.campaign(&[app.js], &p).await;
    app.run(campaign, "publish", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let (_, hook) = app.get("/api/webhook").await;
        let pending = hook["pending"].clone();
        if pending[0]["last_error"].is_string() {
            break pending;
        }
        assert!(Instant::now() < deadline, "no attempt recorded: {hook}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        pending[0]["last_error"].as_str().unwrap().contains("307"),
        "{pending}"
    );
    assert_eq!(*redirector_got.lock().unwrap(), 1);
    assert_eq!(
        *target_got.lock().unwrap(),
        0,
        "the redirect was not followed"
    );

    // Stored while allowed; once the operator forbids private addresses, the next delivery is
    // refused before anything is sent.
    app.stop();
    let sent = *redirector_got.lock().unwrap();
    app.config_mut().egress.webhooks_allow_private = false;
    app.try_start().expect("starts");
    let (status, v) = put_webhook(&app, &target).await;
    assert_eq!(status, 422, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, hook) = app.get("/api/webhook").await;
        let error = hook["pending"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if error.contains("egress") {
            assert!(error.contains("loopback"), "{error}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refused at send time: {hook}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *redirector_got.lock().unwrap(),
        sent,
        "nothing more was sent"
    );
}
