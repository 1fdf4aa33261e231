//! The API's OpenAPI document against the API itself: real answers of a whole session checked
//! against the document's schemas, and schemathesis (PyPI; `.ci/run` installs it) generating
//! requests from the document against the service running as its own process.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, TestStore};
use crate::procs::{service, token};

/// The document as the service serves it: without a token, as integrators fetch it.
async fn document(app: &TestApp) -> Value {
    let res = app
        .client
        .get(format!("{}/api/openapi.json", app.url))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(res.status(), 200);
    res.json().await.expect("JSON")
}

/// Checks one answer against the schema the document gives for its operation and status.
fn conforms(doc: &Value, method: &Method, template: &str, status: u16, body: &Value) {
    let op = &doc["paths"][template][method.as_str().to_lowercase()];
    assert!(op.is_object(), "{method} {template} is not in the document");
    let responses = &op["responses"];
    let response = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))
        .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
    let schema = &response["content"]["application/json"]["schema"];
    let mut root = json!({"allOf": [schema.clone()]});
    root["components"] = doc["components"].clone();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .expect("the answer's schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} ({status}) does not match the document: {errors:?}\n{body}"
    );
}

/// Sends one request with the tenant's token and checks its answer against the document.
async fn checked(
    app: &TestApp,
    doc: &Value,
    method: Method,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, v) = app.call(method.clone(), path, body, Some(&app.token)).await;
    conforms(doc, &method, template, status, &v);
    (status, v)
}

#[tokio::test]
async fn every_answer_of_a_session_matches_the_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let products = app.products("doc", 3).await;
    let campaign = app.campaign(&[app.js, app.wc], &products).await;
    let c = campaign.to_string();
    let tracker = app.run(campaign, "publish", json!({})).await;
    let t = tracker["id"].as_u64().expect("a tracker id").to_string();
    assert_eq!(tracker["status"], "completed", "{tracker}");

    let body = json!({"name": "doc", "expires_in_days": 3});
    checked(
        &app,
        &doc,
        Method::POST,
        "/api/tokens",
        "/api/tokens",
        Some(body),
    )
    .await;
    let hook = json!({"url": format!("{}/hook", app.jumpseller.url())});
    checked(
        &app,
        &doc,
        Method::PUT,
        "/api/webhook",
        "/api/webhook",
        Some(hook),
    )
    .await;
    let dates = json!({"starts_at": "2099-01-01T00:00:00Z"});
    let campaign_path = format!("/api/campaigns/{c}");
    let (status, v) = checked(
        &app,
        &doc,
        Method::PATCH,
        "/api/campaigns/{id}",
        &campaign_path,
        Some(dates),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    let reads: &[(&str, String)] = &[
        ("/health", "/health".into()),
        ("/api/marketplaces", "/api/marketplaces".into()),
        ("/api/products", "/api/products?per_page=2".into()),
        ("/api/campaigns", "/api/campaigns".into()),
        ("/api/campaigns/{id}", format!("/api/campaigns/{c}")),
        (
            "/api/campaigns/{id}/products",
            format!("/api/campaigns/{c}/products"),
        ),
        (
            "/api/campaigns/{id}/trackers",
            format!("/api/campaigns/{c}/trackers"),
        ),
        (
            "/api/campaigns/{id}/progress",
            format!("/api/campaigns/{c}/progress"),
        ),
        (
            "/api/tracker/{id}/progress",
            format!("/api/tracker/{t}/progress"),
        ),
        (
            "/api/campaigns/{id}/failed-products",
            format!("/api/campaigns/{c}/failed-products"),
        ),
        ("/api/notifications", "/api/notifications".into()),
        ("/api/tokens", "/api/tokens".into()),
        ("/api/webhook", "/api/webhook".into()),
        ("/api/status", "/api/status".into()),
        ("/admin/status", "/admin/status".into()),
        ("/admin/check", "/admin/check".into()),
        // Errors have their documented shape too.
        ("/api/campaigns/{id}", "/api/campaigns/999999".into()),
        (
            "/api/tracker/{id}/progress",
            "/api/tracker/x/progress".into(),
        ),
    ];
    for (template, path) in reads {
        let (status, v) = app.get(path).await;
        conforms(&doc, &Method::GET, template, status, &v);
    }
    // The last page the document allows, far past the end, is empty (schemathesis found a page
    // this far a 500 on PostgreSQL, where the offset overflowed its bigint); one page further
    // is refused, as the document says.
    for path in [
        "/api/products?page=9007199254740991&per_page=500",
        "/api/campaigns/{c}/products?page=9007199254740991&per_page=500",
    ] {
        let path = path.replace("{c}", &c);
        let (status, v) = app.get(&path).await;
        assert_eq!((status, &v["data"]), (200, &json!([])), "{path}: {v}");
        let (status, v) = app.get(&path.replace("740991", "740992")).await;
        assert_eq!(
            (status, &v["error"]),
            (422, &json!("validation_failed")),
            "{v}"
        );
    }

    // The dashboard's view of the connections: what was just sent, beside the limits.
    let (_, status_view) = app.get("/api/status").await;
    let js = status_view["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["marketplace_id"] == app.js)
        .cloned()
        .expect("the Jumpseller connection");
    assert!(js["requests_last_minute"].as_u64().unwrap() >= 15, "{js}");
    assert_eq!(js["throttled"], 0);
    assert!(
        status_view["service"]["resident_memory_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    // The product table's SKU search: one product, on both of its marketplaces.
    let (status, v) = app
        .get(&format!(
            "/api/campaigns/{c}/products?sku=DOC-2&status=published"
        ))
        .await;
    conforms(
        &doc,
        &Method::GET,
        "/api/campaigns/{id}/products",
        status,
        &v,
    );
    assert_eq!(v["total"], 2, "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|cp| cp["sku"] == "doc-2"));
    let retry = format!("/api/campaigns/{c}/retry");
    let pause = format!("/api/campaigns/{c}/pause");
    let action = "/api/campaigns/{id}/pause";
    let (status, v) = checked(
        &app,
        &doc,
        Method::POST,
        "/api/campaigns/{id}/retry",
        &retry,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 409, "nothing failed, so nothing to retry: {v}");
    let zero = json!({"chunk_size": 0});
    let (status, v) = checked(&app, &doc, Method::POST, action, &pause, Some(zero)).await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = checked(&app, &doc, Method::POST, action, &pause, Some(json!({}))).await;
    assert_eq!(status, 200, "{v}");
}

/// The schemathesis command: `SCHEMATHESIS`, or `schemathesis` on the PATH.
fn schemathesis() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_string())
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let store = TestStore::new();
    let token = token(&store, "schemathesis");
    let (_proc, url) = service(&store, &[]);
    // The demo's four simulated marketplaces and its campaign, so that generated requests meet
    // real records (and runs that really publish).
    let stores = campaignd::demo::DemoMarketplaces::start(Duration::from_millis(2))
        .expect("the simulators start");
    campaignd::demo::seed(&url, &token, &stores.connections())
        .await
        .expect("the demo's campaign is created");

    let report = store.dir.path().join("schemathesis.json");
    // The settings and hooks of this test: the rules the document states in words only.
    let settings = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis");
    let output = Command::new(schemathesis())
        .args(["--config-file", &format!("{settings}/schemathesis.toml")])
        .args(["run", &format!("{url}/api/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--max-examples")
        .arg(std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "40".to_string()))
        .arg("--seed")
        .arg(std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".to_string()))
        // Revoking the one token it was given would leave the rest of the run at 401.
        .args(["--exclude-path-regex", "^/api/tokens/"])
        // A live event stream never ends, and a WebSocket needs an upgrade schemathesis's HTTP
        // client does not make; their own tests are in tests/api/live.rs.
        .args(["--exclude-path", "/api/events"])
        .args(["--exclude-path", "/api/ws"])
        // Every check, positive data acceptance included: a request valid by the document is
        // accepted.
        .args(["--checks", "all"])
        .arg("--report-json-path")
        .arg(&report)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "campaignd_hooks")
        .env("PYTHONPATH", settings)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run {} ({e}): install it with `pip install schemathesis` \
                 (.ci/run does) or set SCHEMATHESIS",
                schemathesis()
            )
        });
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_slice(&std::fs::read(&report).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no schemathesis report ({e}):\n{text}"));
    let cases = &summary["test_cases"];
    eprintln!(
        "schemathesis: {} operations, {} cases generated, {} with failures, {} errored, {:.1} s",
        summary["operations"]["tested"],
        cases["generated"],
        cases["with_failures"],
        cases["errored"],
        summary["running_time"].as_f64().unwrap_or_default()
    );
    assert!(
        output.status.success() && summary["failures"] == json!([]),
        "schemathesis found failures:\n{text}"
    );
    assert_eq!(summary["errors"], json!([]), "{text}");
    assert!(
        cases["generated"].as_u64().unwrap_or_default() >= 1000,
        "too few cases: {cases}"
    );
    assert_eq!(cases["errored"], 0, "{text}");
}
