//! The simulators themselves, spoken to directly as a marketplace client would: paths, auth,
//! error shapes and rate-limit headers.

use std::time::Duration;

use campaignd::sim::jumpseller::{JumpsellerSim, Limits};
use campaignd::sim::SimHandle;
use serde_json::{json, Value};

fn jumpseller(limits: Limits) -> SimHandle<JumpsellerSim> {
    let sim = SimHandle::start(
        JumpsellerSim::new("store", "token"),
        ([127, 0, 0, 1], 0).into(),
    )
    .expect("starts");
    sim.with_api(|s| s.limits = limits);
    sim
}

#[tokio::test]
async fn jumpseller_answers_with_and_without_v1_and_sends_its_quota_headers_every_time() {
    let sim = jumpseller(Limits::default());
    let client = reqwest::Client::new();
    for path in ["/v1/products/count.json", "/products/count.json"] {
        let res = client
            .get(format!("{}{path}", sim.url()))
            .basic_auth("store", Some("token"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["Jumpseller-PerMinuteRateLimit-Limit"], "800");
        assert_eq!(h["Jumpseller-PerSecondRateLimit-Limit"], "20");
        assert!(h.contains_key("Jumpseller-PerMinuteRateLimit-Remaining"));
        assert!(h.contains_key("Jumpseller-PerSecondRateLimit-Remaining"));
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"count": 0}));
    }
    let res = client
        .get(format!("{}/v1/products.json", sim.url()))
        .basic_auth("store", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res
        .headers()
        .contains_key("Jumpseller-PerMinuteRateLimit-Remaining"));
    assert!(res.json::<Value>().await.unwrap()["message"].is_string());
    let res = client
        .get(format!("{}/v1/products/99.json", sim.url()))
        .basic_auth("store", Some("token"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.json::<Value>().await.unwrap()),
        (404, json!({"message": "Not Found"}))
    );
    let res = client
        .post(format!("{}/v1/products.json", sim.url()))
        .basic_auth("store", Some("token"))
        .json(&json!({"product": {"price": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "a product needs a name");
}

#[tokio::test]
async fn jumpseller_throttles_over_its_limit_and_bans_after_repeated_violations() {
    let sim = jumpseller(Limits {
        per_second: 3,
        per_minute: 800,
        ban_after: 4,
        ban_for: Duration::from_secs(60),
    });
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut banned_reset = None;
    for _ in 0..9 {
        let res = client
            .get(format!("{}/v1/products/count.json", sim.url()))
            .basic_auth("store", Some("token"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        if let Some(v) = res.headers().get("Jumpseller-BannedByRateLimit-Reset") {
            banned_reset = Some(v.to_str().unwrap().to_string());
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let reset = banned_reset.expect("a ban was announced");
    let until = chrono::DateTime::parse_from_rfc3339(&reset).expect("a UTC time");
    assert!(
        until > chrono::Utc::now() + chrono::Duration::seconds(50),
        "{reset}"
    );
    let stats = sim.stats();
    assert_eq!(stats.throttled, 6);
    assert!(stats.max_in_1s >= 9);
}
