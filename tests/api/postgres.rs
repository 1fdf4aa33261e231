//! What only a shared database has: a wrong or unreachable database at start-up, and a
//! database that goes away in the middle of a run.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{spawn_app_on, TestStore};
use crate::pg_server::{self, PgServer};
use crate::procs::{service, Proc, BIN};

/// `campaignd serve` on `url`: answers its exit status and what it printed on stderr.
fn serve_on(url: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = Command::new(BIN)
        .arg("serve")
        .env("CAMPAIGND_STORE__BACKEND", "postgres")
        .env("CAMPAIGND_STORE__URL", url)
        .env("CAMPAIGND_STORE__DATA_DIR", dir.path())
        .env("CAMPAIGND_SERVER__ADDR", "127.0.0.1:0")
        .env("CAMPAIGND_LOG", "warn")
        .output()
        .expect("campaignd runs");
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[tokio::test]
async fn a_wrong_or_unreachable_database_is_a_clear_error_and_a_non_zero_exit() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        l.local_addr().expect("an address").port()
    };
    let server = pg_server::shared();
    let cases = [
        (
            format!("postgres://postgres@127.0.0.1:{closed}/x"),
            "could not open the store",
        ),
        (
            "postgres//not a url".to_string(),
            "could not open the store",
        ),
        (server.url("no_such_database"), "no_such_database"),
        (String::new(), "store.url is empty"),
    ];
    for (url, expect) in cases {
        let (status, stderr) = serve_on(&url);
        assert!(!status.success(), "{url:?}: exited {status}");
        assert!(stderr.contains(expect), "{url:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url:?}: {stderr}");
        // The password of a URL never reaches the message.
        assert!(!stderr.contains("secret-pw"), "{stderr}");
    }
    let (_, stderr) = serve_on(&format!("postgres://u:secret-pw@127.0.0.1:{closed}/x"));
    assert!(
        !stderr.contains("secret-pw"),
        "the password was printed: {stderr}"
    );
}

#[tokio::test]
async fn a_database_restart_mid_run_holds_the_workers_and_the_run_completes() {
    let server = PgServer::start();
    let app = spawn_app_on(TestStore::on(server.fresh_database()), |_| {}).await;
    app.jumpseller
        .set_knobs(|k| k.latency = Duration::from_millis(15));
    let store = app
        .jumpseller_connection(
            "Store during an outage",
            "js-token",
            json!({"rate_limit": {"per_second": 1000, "per_minute": 60000}, "max_in_flight": 2}),
        )
        .await;
    let p = app.products("DB", 30).await;
    let campaign = app.campaign(&[store], &p).await;
    let tracker = app.action(campaign, "publish", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.tracker(tracker).await["progress"]
        .as_f64()
        .unwrap_or(0.0)
        < 20.0
    {
        assert!(Instant::now() < deadline, "the run never progressed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let requests_before = app.jumpseller.stats().requests;
    // The database goes away for a while (an immediate shutdown cuts every connection).
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.run();
    let t = app.wait(tracker).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["progress"], 100.0, "{t}");
    assert!(app.jumpseller.stats().requests > requests_before);
    let statuses = app.statuses(campaign).await;
    assert_eq!(statuses.len(), 30, "products lost");
    assert!(
        statuses.iter().all(|s| s.2 == "published"),
        "no product is errored for the outage: {statuses:?}"
    );
    assert!(app.jumpseller.stats().duplicate_skus().is_empty());
    assert_eq!(app.jumpseller.with_api(|s| s.products.len()), 30);
}

#[tokio::test]
async fn nodes_starting_together_on_a_new_database_migrate_it_once() {
    let store = TestStore::new();
    let url = store.url.clone().expect("a database");
    // Three nodes at once on the empty database: each runs the migrations, one at a time under
    // PostgreSQL's migration lock, and the later ones find them applied.
    let nodes: Vec<(Proc, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let store = &store;
                s.spawn(move || {
                    let id = format!("m{i}");
                    service(store, &[("CAMPAIGND_CLUSTER__NODE_ID", id.as_str())])
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a node starts"))
            .collect()
    });
    assert_eq!(nodes.len(), 3, "every node listens");
    let db = sqlx::PgPool::connect(&url).await.expect("the database");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db)
        .await
        .expect("the migrations table");
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/store/migrations"
    ))
    .expect("the migrations")
    .count() as i64;
    assert_eq!(applied, files, "each migration applied once");
}

#[tokio::test]
async fn a_lease_taken_on_postgresql_tells_who_held_it_last_and_until_when() {
    use ::domain::Lease;
    use ::store::Cluster;
    let url = pg_server::shared().fresh_database();
    let store = ::store::pg::PgStore::open(
        &url,
        2,
        std::sync::Arc::new(::store::secrets::Keys::generate()),
    )
    .expect("the database");
    let lease = |owner: &str, expires_at| Lease {
        connection_id: 3,
        owner: owner.into(),
        expires_at,
    };
    assert_eq!(
        store.acquire_lease(&lease("a", 100), 0).await.unwrap(),
        Some(None)
    );
    assert_eq!(
        store.acquire_lease(&lease("b", 150), 50).await.unwrap(),
        None,
        "a holds it"
    );
    store.release_leases("a", None, 60).await.unwrap();
    assert_eq!(
        store.acquire_lease(&lease("b", 200), 70).await.unwrap(),
        Some(Some(lease("a", 60))),
        "released at 60"
    );
    assert_eq!(
        store.acquire_lease(&lease("a", 400), 300).await.unwrap(),
        Some(Some(lease("b", 200))),
        "expired at 200"
    );
}
