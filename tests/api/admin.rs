//! The operator's commands, run as `campaignd` processes on a test's store: reads of a stopped
//! service's store (status, campaigns, trackers, failed, export, check), a backup restored into
//! a new store that then serves the same campaigns, products and trackers, and the commands that
//! go through the running service's API (import, retry, force-reset).

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_on, spawn_app_with, TestApp, TestStore};
use crate::procs::BIN;

fn cli(env: &[(&'static str, String)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CAMPAIGND_LOG", "warn")
        .output()
        .expect("campaignd runs")
}

/// Runs a command that must succeed and print JSON.
fn cli_json(env: &[(&'static str, String)], args: &[&str]) -> Value {
    let out = cli(env, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What a client reads of a campaign: the campaign, its products and its runs.
async fn reads(app: &TestApp, campaign: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        format!("/api/campaigns/{campaign}"),
        format!("/api/campaigns/{campaign}/products?per_page=500"),
        format!("/api/campaigns/{campaign}/trackers"),
        "/api/products?per_page=500".to_string(),
    ] {
        let (status, v) = app.get(&path).await;
        assert_eq!(status, 200, "{path}: {v}");
        out.push(v);
    }
    out
}

#[tokio::test]
async fn the_store_commands_read_a_stopped_service_and_a_backup_restores_it_whole() {
    let mut app = spawn_app().await;
    let p = app.products("ADM", 4).await;
    let campaign = app.campaign(&[app.js, app.wc], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed");
    let before = reads(&app, campaign).await;
    app.stop();
    let env = app.store_env();
    let c = campaign.to_string();

    let status = cli_json(&env, &["status", "--json"]);
    assert_eq!(status["campaigns"], 1, "{status}");
    assert_eq!(
        status["running"],
        json!([]),
        "nothing runs after a clean stop"
    );
    let campaigns = cli_json(&env, &["campaigns", "--json"]);
    assert_eq!(campaigns[0]["id"], campaign);
    assert_eq!(campaigns[0]["products"]["published"], 8, "{campaigns}");
    let trackers = cli_json(&env, &["trackers", &c, "--json"]);
    assert_eq!(trackers[0]["action"], "publish");
    assert_eq!(trackers[0]["status"], "completed");
    assert_eq!(cli_json(&env, &["failed", &c, "--json"]), json!([]));
    assert_eq!(cli_json(&env, &["check", "--json"])["ok"], true);
    let table = cli(&env, &["campaigns"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("ID") && text.contains("published"),
        "{text}"
    );
    let export = cli(&env, &["export"]);
    let dump = String::from_utf8_lossy(&export.stdout);
    assert!(dump.contains("ADM-1") || dump.contains("adm-1"), "{dump}");
    assert!(!dump.contains("js-token"), "no credential in an export");

    let backup = app.store_dir().join("backup");
    let b = backup.display().to_string();
    let out = cli(&env, &["backup", &b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !cli(&env, &["backup", &b]).status.success(),
        "a backup never writes over another"
    );

    // A new store, with the same secrets key (kept apart from the data, as the README says).
    let fresh = TestStore::new();
    if let Some(key) = app.key_file() {
        std::fs::copy(key, fresh.dir.path().join("data.key")).expect("the key copied");
    }
    let fresh_env = fresh.env();
    let out = cli(&fresh_env, &["restore", &b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = cli(&fresh_env, &["restore", &b]);
    assert!(
        !again.status.success(),
        "a restore goes into a new store only"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds tenants"));
    assert_eq!(cli_json(&fresh_env, &["check", "--json"])["ok"], true);
    let restored = spawn_app_on(fresh, |_| {}).await;
    let after = reads(&restored, campaign).await;
    // The restored service added its own test connections; the campaign's records are equal.
    assert_eq!(before, after);

    // `check` names a broken invariant and fails.
    drop(restored);
    let store = campaignd::app::open_store(app.config_mut()).expect("the store opens");
    futures::executor::block_on(store.put_lock(&::domain::Lock {
        campaign_id: campaign,
        tracker_id: 999_999,
        owner: "nobody".to_string(),
        expires_at: 0,
    }))
    .expect("a lock written");
    futures::executor::block_on(store.flush()).expect("flushed");
    drop(store);
    let out = cli(&env, &["check"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tracker 999999, which does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn import_retry_and_force_reset_go_through_the_running_service() {
    let app = spawn_app_with(|c| c.server.operator_token = "op-secret".to_string()).await;
    let api = [
        ("CAMPAIGND_URL", app.url.clone()),
        ("CAMPAIGND_TOKEN", app.token.clone()),
    ];
    let dir = tempfile::tempdir().expect("a temp dir");
    let csv = dir.path().join("products.csv");
    let mut text = "sku,name,price,stock,description\n".to_string();
    for i in 0..2500 {
        text.push_str(&format!(
            "CSV-{i},\"Shirt {i}, cotton\",{}.5,{},plain\n",
            10 + i % 7,
            i % 5
        ));
    }
    std::fs::write(&csv, text).expect("written");
    let out = cli(
        &api,
        &[
            "import",
            "products",
            &csv.display().to_string(),
            "--batch",
            "1000",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v, json!({"created": 2500, "updated": 0}));
    let (_, page) = app.get("/api/products?per_page=1").await;
    assert_eq!(page["total"], 2500);

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "sku,name,price\nX,Y,-3\n").expect("written");
    let out = cli(&api, &["import", "products", &bad.display().to_string()]);
    assert!(
        !out.status.success(),
        "a bad file is refused before anything is sent"
    );
    let (_, page) = app.get("/api/products?per_page=1").await;
    assert_eq!(page["total"], 2500);

    let p = app.products("RT", 2).await;
    let campaign = app.campaign(&[app.js], &p).await.to_string();
    let out = cli(&api, &["retry", &campaign]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing_to_do"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The store commands ask a running service (whose sled no other process may open).
    let url = app.url.clone();
    let refused = cli(&[], &["status", "--url", &url]);
    assert!(
        !refused.status.success(),
        "every tenant's records need the operator's token"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("forbidden"));
    let operator = [("CAMPAIGND_OPERATOR_TOKEN", "op-secret".to_string())];
    let status = cli_json(&operator, &["status", "--url", &url, "--json"]);
    assert_eq!(status["campaigns"], 1, "{status}");
    assert_eq!(status["tenants"], 1, "{status}");
    let listed = cli_json(&operator, &["campaigns", "--url", &url, "--json"]);
    assert_eq!(listed[0]["id"].to_string(), campaign);
    assert_eq!(listed[0]["products"]["pending"], 2, "{listed}");
    assert_eq!(
        cli_json(&operator, &["trackers", &campaign, "--url", &url, "--json"]),
        json!([])
    );
    assert_eq!(
        cli_json(&operator, &["check", "--url", &url, "--json"])["ok"],
        true
    );
    let missing = cli(&operator, &["failed", "424242", "--url", &url]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));

    let out = cli(&api, &["force-reset", &campaign, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["message"], "Campaign reset successfully");
}
