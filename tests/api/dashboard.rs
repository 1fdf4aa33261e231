//! The dashboard in a real headless browser (Debian's chromium; `.ci/run` installs it), driven
//! over the Chrome DevTools Protocol: the page loads, a click on Publish starts a run, the
//! progress bar moves and reaches 100 %, and a screenshot is saved.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_app;

fn chromium_path() -> String {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return p;
    }
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("which")
            .arg(candidate)
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return candidate.to_string();
        }
    }
    panic!("no chromium found: install Debian's chromium (.ci/run does) or set CHROMIUM");
}

/// A headless chromium and its DevTools address; killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch() -> Browser {
    let profile = tempfile::tempdir().expect("a profile dir");
    let mut child = Command::new(chromium_path())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().expect("stderr");
    // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
    let devtools = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("DevTools listening on ")
                .nth(1)
                .map(|u| u.trim().to_string())
        })
        .expect("chromium announces its DevTools address");
    Browser {
        child,
        _profile: profile,
        devtools,
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools session on one page.
struct Page {
    ws: Ws,
    next_id: u64,
}

impl Page {
    async fn open(browser: &Browser) -> Page {
        let http = browser
            .devtools
            .replace("ws://", "http://")
            .split("/devtools/")
            .next()
            .expect("an address")
            .to_string();
        let targets: Value = reqwest::get(format!("{http}/json/list"))
            .await
            .expect("DevTools answers")
            .json()
            .await
            .expect("JSON");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"]
            .as_str()
            .expect("a page socket");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the page's DevTools socket opens");
        Page { ws, next_id: 0 }
    }

    /// Saves a PNG of the page as `target/tmp/NAME`, for a person to look at.
    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, &png).expect("the screenshot is saved");
        eprintln!("dashboard screenshot: {}", path.display());
    }

    /// Sends a command and waits for its answer (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .expect("sent");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("DevTools answers within 30 s")
                .expect("the socket is open")
                .expect("a frame");
            let Message::Text(text) = message else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true.
    async fn wait_until(&mut self, expression: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.eval(expression).await != json!(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never true: {expression}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn the_dashboard_publishes_a_campaign_and_shows_live_progress_to_100() {
    let app = spawn_app().await;
    // Slow enough that the bar is seen between 0 and 100.
    app.jumpseller
        .set_knobs(|k| k.latency = Duration::from_millis(40));
    let slow = app
        .jumpseller_connection(
            "Dashboard store",
            "js-token",
            json!({"rate_limit": {"per_second": 1000, "per_minute": 60000}, "max_in_flight": 2}),
        )
        .await;
    let p = app.products("DB", 12).await;
    let campaign = app.campaign(&[slow, app.wc], &p).await;

    let browser = launch();
    let mut page = Page::open(&browser).await;
    page.call(
        "Page.navigate",
        json!({"url": format!("{}/?token={}", app.url, app.token)}),
    )
    .await;
    page.wait_until(
        "document.querySelector('#publish') && !document.querySelector('#publish').disabled",
    )
    .await;
    page.wait_until("document.querySelector('#live').textContent === 'live'")
        .await;
    assert_eq!(
        page.eval("document.querySelector('#campaign-title').textContent")
            .await,
        json!("Summer Sale (pending)")
    );

    // Plan first: the dry run's summary shows, and nothing is sent or started.
    page.eval("document.querySelector('#plan').click()").await;
    page.wait_until(
        "!document.querySelector('#plan-view').hidden && \
         document.querySelector('#plan-summary').textContent.includes('24 products')",
    )
    .await;
    let markets = page
        .eval("[...document.querySelectorAll('.plan-market')].map(m => m.textContent)")
        .await;
    let markets: Vec<String> = serde_json::from_value(markets).expect("texts");
    assert_eq!(markets.len(), 2, "{markets:?}");
    assert!(
        markets.iter().all(|m| m.contains("create 12")),
        "{markets:?}"
    );
    assert_eq!(
        app.jumpseller.stats().requests + app.woo.stats().requests,
        0
    );
    let (_, trackers) = app
        .get(&format!("/api/campaigns/{campaign}/trackers"))
        .await;
    assert_eq!(trackers["data"], json!([]), "a plan starts no run");

    page.eval("document.querySelector('#publish').click()")
        .await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let p = page
            .eval("Number(document.querySelector('#progress').dataset.progress)")
            .await
            .as_f64()
            .expect("a number");
        if seen.last() != Some(&p) {
            seen.push(p);
        }
        if p >= 100.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bar stopped at {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.iter().any(|p| *p > 0.0 && *p < 100.0),
        "the bar moved through {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    page.wait_until(
        "document.querySelector('#tracker-status').textContent === 'publish completed'",
    )
    .await;
    // The products table and the notifications follow the end of the run.
    page.wait_until(
        "[...document.querySelectorAll('#products tr')].length === 24 && \
         [...document.querySelectorAll('#products tr')].every(r => r.children[2].textContent === 'published')",
    )
    .await;
    page.wait_until("document.querySelector('#notifications').textContent.includes('Campaign publishing completed')")
        .await;

    page.screenshot("dashboard.png").await;
    assert!(app.all_are(campaign, "published").await);

    // Drift: nothing differs; a product deleted on the store shows, and Repair puts it back.
    page.eval("document.querySelector('#drift-check').click()")
        .await;
    page.wait_until(
        "document.querySelector('#drift-summary') && \
         document.querySelector('#drift-summary').textContent === '24 checked, 0 differ, 0 repaired'",
    )
    .await;
    app.jumpseller.with_api(|s| {
        let first = *s.products.keys().next().expect("a product");
        s.products.remove(&first);
    });
    page.eval("document.querySelector('#drift-check').click()")
        .await;
    page.wait_until(
        "document.querySelector('#drift-summary').textContent === '24 checked, 1 differ, 0 repaired' && \
         document.querySelector('.drift-row').textContent.includes('missing on the marketplace') && \
         !document.querySelector('#repair').disabled",
    )
    .await;
    page.eval("document.querySelector('#repair').click()").await;
    page.wait_until(
        "document.querySelector('#drift-summary').textContent === '24 checked, 0 differ, 1 repaired'",
    )
    .await;
    assert_eq!(app.jumpseller.with_api(|s| s.products.len()), 12);
}

#[tokio::test]
async fn the_dashboard_shows_a_campaigns_timeline_and_prices_and_sets_its_dates() {
    let app = spawn_app().await;
    let p = app.products("TL", 2).await;
    let day = 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    let iso = |ms: i64| crate::schedule::at(ms);
    let campaign = crate::schedule::dated_campaign(
        &app,
        json!({"name": "Timeline", "marketplace_ids": [app.js],
               "starts_at": iso(now + day), "ends_at": iso(now + 2 * day)}),
        json!({"products": [{"product_id": p[0], "sale_price": 700, "presale_price": 800},
                            {"product_id": p[1]}]}),
    )
    .await;

    let browser = launch();
    let mut page = Page::open(&browser).await;
    page.call(
        "Page.navigate",
        json!({"url": format!("{}/?token={}", app.url, app.token)}),
    )
    .await;
    page.wait_until("document.querySelectorAll('#timeline .step').length === 3")
        .await;
    assert_eq!(
        page.eval("document.querySelector('#timeline .step.next').dataset.step")
            .await,
        json!("start")
    );
    assert_eq!(
        page.eval("document.querySelector('#timeline [data-step=presale] .when').textContent")
            .await,
        json!("not set")
    );
    // Prices in the product table: the product's own, the presale and the sale price.
    page.wait_until("document.querySelectorAll('#products tr').length === 2")
        .await;
    assert_eq!(
        page.eval(
            "[...document.querySelector('#products tr').children].slice(3, 6).map(c => c.textContent.trim())"
        )
        .await,
        json!(["1001", "800", "700"])
    );

    // Set a presale through the form: a day before the start, in the browser's own time.
    page.eval(
        "(() => { const s = new Date(document.querySelector('#starts_at').value); \
         const p = new Date(s.getTime() - 3600000); \
         document.querySelector('#presale_at').value = \
           new Date(p.getTime() - p.getTimezoneOffset() * 60000).toISOString().slice(0, 16); \
         document.querySelector('#drift_every_hours').value = '6'; \
         document.querySelector('#save-dates').click(); })()",
    )
    .await;
    page.wait_until("document.querySelector('#timeline .step.next').dataset.step === 'presale'")
        .await;
    let (status, v) = app.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(status, 200);
    let ms = |f: &str| {
        chrono::DateTime::parse_from_rfc3339(v[f].as_str().expect(f))
            .expect("a date")
            .timestamp_millis()
    };
    // datetime-local inputs keep minutes: the start, rounded to its minute, less an hour.
    assert_eq!(ms("presale_at"), (now + day) / 60_000 * 60_000 - 3_600_000);
    assert_eq!(ms("starts_at"), (now + day) / 60_000 * 60_000);
    assert_eq!(v["next_scheduled"]["step"], "presale");
    // And a drift check every six hours, counted from when it was set.
    assert_eq!(v["drift_every_hours"], 6);
    let next = ms("next_drift_check_at") - chrono::Utc::now().timestamp_millis();
    assert!(next > 5 * 3_600_000 && next <= 6 * 3_600_000, "{v}");
    page.wait_until(
        "document.querySelector('#drift-next').textContent.startsWith('checked every 6 h, next ')",
    )
    .await;
}

#[tokio::test]
async fn the_dashboard_shows_rates_eta_history_failures_by_message_and_retries_a_group() {
    let app = spawn_app().await;
    app.jumpseller
        .set_knobs(|k| k.latency = Duration::from_millis(40));
    let store = app
        .jumpseller_connection(
            "Watched store",
            "js-token",
            json!({"rate_limit": {"per_second": 25, "per_minute": 1500}, "max_in_flight": 2}),
        )
        .await;
    let p = app.products("DV", 30).await;
    let campaign = app.campaign(&[store], &p).await;
    app.jumpseller.set_knobs(|k| {
        for sku in ["DV-3", "DV-7"] {
            k.reject_skus
                .insert(sku.into(), "Name is too long for this store".into());
        }
        k.reject_skus
            .insert("DV-11".into(), "Price must be positive".into());
    });

    let browser = launch();
    let mut page = Page::open(&browser).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 1300, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.call(
        "Page.navigate",
        json!({"url": format!("{}/?token={}", app.url, app.token)}),
    )
    .await;
    page.wait_until("document.querySelector('#live').textContent === 'live'")
        .await;
    // Resource use of the service, and the connection's limit beside its use.
    page.wait_until("/MiB$/.test(document.querySelector('#svc-memory')?.textContent ?? '')")
        .await;
    page.wait_until(&format!(
        "document.querySelector('#connections .conn[data-id=\"{store}\"] .rate')?.textContent.includes('of 25/s')"
    ))
    .await;
    // Thirty products on pages of 25.
    page.wait_until(
        "document.querySelector('#page-info').textContent === 'page 1 of 2 (30 products)'",
    )
    .await;
    page.eval("document.querySelector('#next').click()").await;
    page.wait_until("document.querySelectorAll('#products tr').length === 5")
        .await;

    page.eval("document.querySelector('#publish').click()")
        .await;
    // While it runs: an ETA from the measured rate, and requests per second on the chart.
    page.wait_until("/^ETA \\d+:\\d\\d$/.test(document.querySelector('#eta').textContent)")
        .await;
    page.wait_until(&format!(
        "Number(document.querySelector('#connections .conn[data-id=\"{store}\"] .rate').textContent.split('/')[0]) > 0"
    ))
    .await;
    let rate = page
        .eval(&format!(
            "Number(document.querySelector('#connections .conn[data-id=\"{store}\"] .rate').textContent.split('/')[0])"
        ))
        .await;
    assert!(rate.as_f64().unwrap() <= 25.0, "{rate} a second");
    page.wait_until(
        "document.querySelector('#tracker-status').textContent === 'publish completed'",
    )
    .await;
    page.wait_until("/^took \\d+:\\d\\d$/.test(document.querySelector('#eta').textContent)")
        .await;
    page.wait_until(
        "document.querySelector('#history .outcome')?.textContent === 'completed with failures'",
    )
    .await;
    // The failures grouped by message, the largest group first.
    page.wait_until("document.querySelectorAll('#failed-groups .group').length === 2")
        .await;
    assert_eq!(
        page.eval("[...document.querySelectorAll('#failed-groups .group')].map(g => g.querySelector('.count').textContent + ' ' + g.querySelector('.msg').textContent)")
            .await,
        json!(["2 Name is too long for this store", "1 Price must be positive"])
    );
    // Filters: errored products only, then a SKU search.
    page.eval("(() => { const s = document.querySelector('#f-status'); s.value = 'errored'; s.dispatchEvent(new Event('change')); })()")
        .await;
    page.wait_until(
        "document.querySelector('#page-info').textContent === 'page 1 of 1 (3 products)'",
    )
    .await;
    page.eval("(() => { const s = document.querySelector('#f-sku'); s.value = 'dv-1'; s.dispatchEvent(new Event('input')); })()")
        .await;
    page.wait_until(
        "document.querySelector('#page-info').textContent === 'page 1 of 1 (1 products)'",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#products tr td').textContent")
            .await,
        json!("DV-11")
    );
    page.screenshot("dashboard-operations.png").await;

    // The marketplace accepts them now: Retry on the largest group retries its two products.
    app.jumpseller.set_knobs(|k| {
        k.reject_skus.remove("DV-3");
        k.reject_skus.remove("DV-7");
    });
    page.eval("document.querySelector('#failed-groups .group .retry').click()")
        .await;
    page.wait_until("document.querySelectorAll('#history tr').length === 2")
        .await;
    page.wait_until("document.querySelectorAll('#failed-groups .group').length === 1")
        .await;
    let (_, failed) = app
        .get(&format!("/api/campaigns/{campaign}/failed-products"))
        .await;
    let skus: Vec<&str> = failed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["sku"].as_str())
        .collect();
    assert_eq!(skus, ["DV-11"]);
}
