//! Jumpseller at the store's full speed: never over its limits, every product exactly once.

use std::time::Duration;

use ::marketplaces::sim::jumpseller::Limits;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

async fn jumpseller_connection(app: &TestApp, rate: Option<(u32, u32)>) -> u64 {
    let extra = match rate {
        Some((per_second, per_minute)) => {
            json!({"rate_limit": {"per_second": per_second, "per_minute": per_minute}})
        }
        None => json!({}),
    };
    app.jumpseller_connection("Limited store", "js-token", extra)
        .await
}

#[tokio::test]
async fn a_run_with_jumpsellers_default_limits_against_a_store_enforcing_them_gets_no_429() {
    let app = spawn_app().await;
    app.jumpseller.with_api(|s| s.limits = Limits::default());
    let store = jumpseller_connection(&app, None).await;
    let p = app.products("N", 8).await;
    let campaign = app.campaign(&[store], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;

    assert_eq!(t["status"], "completed", "{t}");
    let stats = app.jumpseller.stats();
    assert_eq!(
        stats.requests,
        1 + 8 * 5,
        "the store's count, then one create, two variants and two images per product"
    );
    assert_eq!(stats.throttled, 0, "no 429");
    // As many as the store's windows allow, and never more.
    assert!(
        stats.max_in_1s <= 20 && stats.max_in_60s <= 800,
        "{} requests in one second",
        stats.max_in_1s
    );
}

#[tokio::test]
async fn two_campaigns_on_one_store_stay_under_its_limit_together() {
    let app = spawn_app().await;
    app.jumpseller.with_api(|s| {
        s.limits = Limits {
            per_second: 10,
            per_minute: 6000,
            ..Limits::default()
        }
    });
    let store = jumpseller_connection(&app, Some((10, 6000))).await;
    let a = app.campaign(&[store], &app.products("TA", 4).await).await;
    let b = app.campaign(&[store], &app.products("TB", 4).await).await;
    let ta = app.action(a, "publish", json!({})).await;
    let tb = app.action(b, "publish", json!({})).await;
    assert_eq!(app.wait(ta).await["status"], "completed");
    assert_eq!(app.wait(tb).await["status"], "completed");

    let stats = app.jumpseller.stats();
    // Each run asked the store what it lists before its creates: its count, and its one page
    // when the other run had created some products by then.
    let look_ups = stats.log.iter().filter(|l| l.method == "GET").count() as u64;
    assert!((2..=4).contains(&look_ups), "{look_ups} look-ups");
    assert_eq!(stats.requests - look_ups, 40);
    assert_eq!(stats.throttled, 0, "the two runs shared one limiter");
    assert!(
        stats.max_in_1s <= 10,
        "{} requests in one second",
        stats.max_in_1s
    );
    assert!(
        stats.max_in_1s >= 8,
        "and used the limit: {} in the busiest second",
        stats.max_in_1s
    );
}

#[tokio::test]
async fn a_store_answering_5xx_and_hanging_still_gets_every_product_exactly_once() {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.retry_attempts = 10;
        c.runs.retry_min_ms = 10;
        c.runs.retry_max_ms = 200;
    })
    .await;
    app.jumpseller.set_knobs(|k| {
        k.error_rate = 0.05;
        k.hang_rate = 0.02;
    });
    app.woo.set_knobs(|k| {
        k.error_rate = 0.05;
        k.hang_rate = 0.02;
    });
    let p = app.products("Z", 40).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;

    assert_eq!(
        (t["status"].as_str(), t["has_failures"].as_bool()),
        (Some("completed"), Some(false)),
        "{t}"
    );
    assert!(app.all_are(campaign, "published").await);
    let (js, wc) = (app.jumpseller.stats(), app.woo.stats());
    assert!(
        js.injected_errors + wc.injected_errors > 0 && js.hung + wc.hung > 0,
        "faults happened"
    );
    assert_eq!(js.duplicate_skus(), Vec::<String>::new());
    assert_eq!(wc.duplicate_skus(), Vec::<String>::new());
    app.jumpseller.with_api(|s| {
        assert_eq!(s.products.len(), 40);
        for p in s.products.values() {
            assert_eq!((p.variants.len(), p.images.len()), (2, 2), "{p:?}");
        }
    });
    app.woo.with_api(|s| {
        assert_eq!(s.products.len(), 40);
        assert!(s.products.values().all(|p| p.variations.len() == 2));
    });
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_by_sku_and_adopted() {
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.retry_min_ms = 10;
    })
    .await;
    let p = app.products("U", 1).await;
    let campaign = app.campaign(&[app.js], &p).await;
    // The run's count of the store is answered; its create takes effect and hangs.
    app.jumpseller.set_knobs(|k| {
        k.spare_next = 1;
        k.hang_next = 1;
    });
    let t = app.run(campaign, "publish", json!({})).await;

    assert_eq!(t["status"], "completed", "{t}");
    let stats = app.jumpseller.stats();
    assert_eq!(stats.hung, 1);
    let paths: Vec<_> = stats
        .log
        .iter()
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    // The store's count before the run's first create (an empty store lists nothing), then
    // the create whose answer is lost, then its look-up by SKU.
    assert_eq!(paths[0], "GET /v1/products/count.json");
    assert_eq!(paths[1], "POST /v1/products.json");
    assert_eq!(paths[2], "GET /v1/products/search.json", "{paths:?}");
    assert_eq!(
        stats.log[2].query.get("fields").map(String::as_str),
        Some("sku")
    );
    assert!(
        paths[3].starts_with("PUT /v1/products/"),
        "the found product is updated: {paths:?}"
    );
    assert_eq!(stats.duplicate_skus(), Vec::<String>::new());
    assert_eq!(app.jumpseller.with_api(|s| s.products.len()), 1);
    let products = app.campaign_products(campaign).await;
    let id = app
        .jumpseller
        .with_api(|s| s.product_by_sku("U-1").map(|p| p.id.to_string()));
    assert_eq!(
        products[0]["marketplace_info"]["product_id"].as_str(),
        id.as_deref()
    );
}

#[tokio::test]
async fn a_store_throttling_below_the_configured_rate_pauses_the_connection_and_the_run_completes()
{
    let app = spawn_app_with(|c| c.runs.retry_min_ms = 10).await;
    // A store whose per-second limit is far below what the connection was told, behind a proxy
    // that strips the quota headers: only its 429s say so.
    app.jumpseller.with_api(|s| {
        s.limits = Limits {
            per_second: 3,
            per_minute: 6000,
            ..Limits::default()
        };
        s.quota_headers = false;
    });
    let store = jumpseller_connection(&app, Some((50, 6000))).await;
    let p = app.products("Y", 3).await;
    let campaign = app.campaign(&[store], &p).await;
    let started = std::time::Instant::now();
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    let stats = app.jumpseller.stats();
    assert!(stats.throttled > 0, "the store throttled");
    assert!(
        stats.throttled < 15,
        "but the connection backed off as a whole: {} 429s",
        stats.throttled
    );
    // The metrics and the dashboard's status count the same 429s.
    let metrics = app.metrics().await;
    let line = format!(
        r#"campaignd_marketplace_throttled_total{{system="jumpseller",connection="{store}"}} {}"#,
        stats.throttled
    );
    assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    let (_, status) = app.get("/api/status").await;
    let seen = status["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["marketplace_id"] == store)
        .cloned()
        .unwrap();
    assert_eq!(seen["throttled"], stats.throttled, "{seen}");
    assert!(
        seen["last_error"].as_str().unwrap_or("").contains("429"),
        "{seen}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "after a 429 the connection paused"
    );
    assert_eq!(stats.duplicate_skus(), Vec::<String>::new());
}

#[tokio::test]
async fn the_stores_quota_headers_teach_its_lower_limit_and_another_clients_use_so_no_429_is_met() {
    let app = spawn_app().await;
    // The store allows 5 a second and 60 a minute, though the connection was told 50 and 6000;
    // another client of the store already sent 40 requests this minute.
    app.jumpseller.with_api(|s| {
        s.limits = Limits {
            per_second: 5,
            per_minute: 60,
            ..Limits::default()
        };
        s.used_by_another_client(40);
    });
    let store = jumpseller_connection(&app, Some((50, 6000))).await;
    let p = app.products("Q", 3).await;
    let campaign = app.campaign(&[store], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    let stats = app.jumpseller.stats();
    assert_eq!(stats.requests, 1 + 15);
    assert_eq!(
        stats.throttled, 0,
        "the first answer's headers told the limiter everything"
    );
    assert!(stats.max_in_1s <= 5, "{} in a second", stats.max_in_1s);
}

/// Waits until the store has received `n` requests in all.
async fn until_received(app: &TestApp, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.jumpseller.stats().requests < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the store saw too little"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_small_campaign_takes_turns_with_a_large_one_and_a_pause_goes_ahead_of_both() {
    let app = spawn_app().await;
    app.jumpseller.with_api(|s| {
        s.limits = Limits {
            per_second: 10,
            per_minute: 6000,
            ..Limits::default()
        }
    });
    // Many in flight: the large campaign keeps a long line of requests at the limiter.
    let store = app
        .jumpseller_connection(
            "Shared store",
            "js-token",
            json!({"rate_limit": {"per_second": 10, "per_minute": 6000}, "max_in_flight": 40}),
        )
        .await;
    let large = app.campaign(&[store], &app.products("L", 60).await).await;
    let small = app.campaign(&[store], &app.products("S", 8).await).await;
    let tl = app.action(large, "publish", json!({})).await;
    until_received(&app, 20).await;

    // The small campaign's requests take turns with the large one's 40 waiting: its first
    // create goes after its count of the store's products, each after what the large one had
    // at the head or sent meanwhile (a second's burst at most, twice), where first come, first
    // served would put it behind all 40.
    let before = app.jumpseller.stats().log.len();
    let ts = app.action(small, "publish", json!({})).await;
    assert_eq!(app.wait(ts).await["status"], "completed");
    let log = app.jumpseller.stats().log;
    let small_ones = |l: &::marketplaces::sim::Logged| {
        l.body
            .as_ref()
            .and_then(|b| b["product"]["sku"].as_str())
            .is_some_and(|s| s.starts_with("S-"))
    };
    let after = &log[before..];
    let large_before_first = after
        .iter()
        .position(small_ones)
        .expect("the small one's create");
    assert!(
        large_before_first <= 24,
        "{large_before_first} of the large campaign's went before the small one's first"
    );
    assert_eq!(
        app.tracker(tl).await["status"],
        "active",
        "the large publish still runs"
    );

    // A pause goes ahead of all publishing work on the store: once it starts, the large
    // campaign sends only what was at the head or sent while the pause run started (a
    // second's burst at most), then waits until the pause is done.
    let before = app.jumpseller.stats().log.len();
    let tp = app.action(small, "pause", json!({})).await;
    assert_eq!(app.wait(tp).await["status"], "completed");
    let log = app.jumpseller.stats().log;
    let after = &log[before..];
    let pauses: Vec<usize> = after
        .iter()
        .enumerate()
        .filter(|(_, l)| l.method == "PUT")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pauses.len(), 8, "one status change per product");
    let last = pauses[pauses.len() - 1];
    let large_meanwhile = last + 1 - pauses.len();
    assert!(
        large_meanwhile <= 12,
        "{large_meanwhile} of the publish's requests went before the pause was done"
    );
    // Taking turns alone would let the publish send one between each two of the pause's (7);
    // a request of the publish admitted just before the pause's may still arrive after one.
    let between = last - pauses[0] + 1 - pauses.len();
    assert!(
        between <= 3,
        "{between} of the publish's requests went between the pause's first and last"
    );
    assert_eq!(
        app.tracker(tl).await["status"],
        "active",
        "the pause finished while the large publish still runs"
    );
    let stats = app.jumpseller.stats();
    assert_eq!(stats.throttled, 0);
    assert!(stats.max_in_1s <= 10, "{} in one second", stats.max_in_1s);
}

#[tokio::test]
async fn a_run_through_a_jumpseller_ban_answered_403_waits_for_its_reset_and_completes() {
    let app = spawn_app_with(|c| c.runs.retry_min_ms = 10).await;
    let store = jumpseller_connection(&app, None).await;
    let p = app.products("BAN", 3).await;
    let campaign = app.campaign(&[store], &p).await;
    // Another client's 2,000 throttled requests got the store banned for two seconds: the
    // store answers 403 with the ban's end in `Jumpseller-BannedByRateLimit-Reset`.
    app.jumpseller.with_api(|s| s.ban(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let t = app.run(campaign, "publish", json!({})).await;

    assert_eq!(
        t["status"], "completed",
        "a ban is not refused credentials: {t}"
    );
    assert!(app.all_are(campaign, "published").await);
    let stats = app.jumpseller.stats();
    assert!(stats.banned >= 1, "the run met the ban");
    // The first 403 held the whole connection until the reset: only requests already on their
    // way met the ban, and none was sent again before it ended.
    assert!(
        stats.banned <= 3,
        "{} requests were answered 403 during the ban",
        stats.banned
    );
    // Each banned request was sent once more after the reset, a create after its SKU's
    // look-up (a create of unknown outcome is looked up before it is sent again).
    assert!(
        stats.requests <= 15 + 2 * stats.banned,
        "{} requests for 15 calls and {} bans",
        stats.requests,
        stats.banned
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the run waited"
    );
    assert_eq!(stats.duplicate_skus(), Vec::<String>::new());
}

/// MercadoLibre counts its limits per application (client id): two seller connections of one
/// application, each given the application's 5 a second, share them, and together stay under
/// them.
#[tokio::test]
async fn two_mercadolibre_sellers_of_one_application_share_its_limits() {
    let app = spawn_app().await;
    app.ml.with_api(|s| {
        s.limit = ::marketplaces::sim::SlidingLimit::new(Some((5, 300)));
    });
    let rate = json!({"rate_limit": {"per_second": 5, "per_minute": 300}});
    let (first, second) = (
        app.connect_mercadolibre(rate.clone()).await,
        app.connect_mercadolibre(rate).await,
    );
    let a = app.campaign(&[first], &app.products("APPA", 6).await).await;
    let b = app
        .campaign(&[second], &app.products("APPB", 6).await)
        .await;
    let ta = app.action(a, "publish", json!({})).await;
    let tb = app.action(b, "publish", json!({})).await;
    assert_eq!(app.wait(ta).await["status"], "completed");
    assert_eq!(app.wait(tb).await["status"], "completed");

    let stats = app.ml.stats();
    assert_eq!(stats.throttled, 0, "the two sellers shared one limiter");
    assert!(
        stats.max_in_1s <= 5,
        "{} requests in one second",
        stats.max_in_1s
    );
    assert!(
        stats.max_in_1s >= 4,
        "and used the limit: {} in the busiest second",
        stats.max_in_1s
    );
    assert!(stats.duplicate_skus().is_empty());
}
