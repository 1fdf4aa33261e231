//! Secrets at rest: credentials and webhook secrets are sealed in the store (nothing of them
//! can be found in the data directory or the database), the data directory is its owner's
//! alone, the key survives restarts and rotations, and a lost key stops the start with a clear
//! message rather than a panic or a silent new key.

use serde_json::json;

use crate::helpers::{spawn_app, Backend, TestApp};

/// A credential no other bytes of the store could contain by chance.
const AUTHTOKEN: &str = "js-secret-authtoken-7f3a9c";

async fn app_with_secret() -> (TestApp, u64) {
    let mut app = spawn_app().await;
    app.jumpseller
        .with_api(|s| s.authtoken = AUTHTOKEN.to_string());
    let js = app.connect_jumpseller("Sealed store", AUTHTOKEN).await;
    let (status, hook) = app
        .call(
            reqwest::Method::PUT,
            "/api/webhook",
            Some(json!({"url": "https://hooks.example/campaignd"})),
            Some(&app.token.clone()),
        )
        .await;
    assert_eq!(status, 200, "{hook}");
    app.stop();
    (app, js)
}

/// Every file under `dir`, read whole.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).expect("readable")));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_credential_can_be_found_in_the_stored_data() {
    let (mut app, _) = app_with_secret().await;
    // Every webhook secret starts so.
    let secret = "whsec_";
    match crate::BACKEND {
        Backend::Sled => {
            let dir = app.config_mut().store.data_dir.clone();
            let all = files(&dir);
            assert!(!all.is_empty());
            for (path, bytes) in &all {
                assert!(
                    !contains(bytes, AUTHTOKEN),
                    "{} holds the authtoken",
                    path.display()
                );
                assert!(
                    !contains(bytes, secret),
                    "{} holds a webhook secret",
                    path.display()
                );
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&dir)
                    .expect("exists")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o700, "the data directory is its owner's");
                for (path, _) in &all {
                    let mode = std::fs::metadata(path)
                        .expect("exists")
                        .permissions()
                        .mode();
                    assert_eq!(mode & 0o077, 0, "{} is private", path.display());
                }
            }
        }
        Backend::Postgres => {
            let url = app.database_url().expect("a database");
            let db = sqlx::PgPool::connect(&url).await.expect("connects");
            for table in ["connections", "webhooks"] {
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(&format!("SELECT body FROM {table}"))
                    .fetch_all(&db)
                    .await
                    .expect("reads");
                assert!(!rows.is_empty(), "{table} has rows");
                for (body,) in rows {
                    assert!(
                        !contains(&body, AUTHTOKEN) && !contains(&body, secret),
                        "{table}"
                    );
                }
            }
        }
    }
    // Sealed, and still what the service uses.
    app.try_start().expect("starts again");
    let p = app.products("S", 2).await;
    let js = app.connect_jumpseller("Another", AUTHTOKEN).await;
    let campaign = app.campaign(&[js], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(t["status"], "completed", "{t}");
    assert!(app.all_are(campaign, "published").await);
}

#[tokio::test]
async fn the_key_survives_a_rotation_and_a_lost_key_stops_the_start_clearly() {
    let (mut app, js) = app_with_secret().await;
    let config = app.config_mut().clone();
    let key_file = ::store::secrets::key_file(&config.secrets, &config.store.data_dir);
    let before = std::fs::read_to_string(&key_file).ok();
    let rotated = campaignd::app::rotate_secrets(&config).expect("rotates");
    assert!(
        rotated.resealed >= 3,
        "two connections and a webhook: {rotated:?}"
    );
    match crate::BACKEND {
        Backend::Sled => {
            let after = std::fs::read_to_string(&key_file).expect("the key file");
            assert_ne!(Some(after), before, "a new key replaced the old one");
            assert!(!::store::secrets::pending_file(&key_file).exists());
        }
        Backend::Postgres => {
            // The key lives in the configuration: the operator sets the new one.
            let new = rotated.new_key.expect("the new key is given");
            app.config_mut().secrets.key = new.to_string();
        }
    }
    app.try_start().expect("starts under the new key");
    let p = app.products("R", 2).await;
    let campaign = app.campaign(&[js], &p).await;
    let t = app.run(campaign, "publish", json!({})).await;
    assert_eq!(
        t["status"], "completed",
        "the rotated credentials work: {t}"
    );
    app.stop();

    // The key is lost: the start fails, saying why, and writes no new key over the data.
    match crate::BACKEND {
        Backend::Sled => std::fs::remove_file(&key_file).expect("removed"),
        Backend::Postgres => {
            app.config_mut().secrets.key = ::store::secrets::Keys::generate().encoded().to_string()
        }
    }
    let err = app.try_start().expect_err("no key, no start").to_string();
    match crate::BACKEND {
        Backend::Sled => {
            assert!(err.contains("does not exist"), "{err}");
            assert!(!key_file.exists(), "no new key was written");
        }
        Backend::Postgres => assert!(err.contains("does not open"), "{err}"),
    }
}
