//! `campaignd serve` as a service manager drives it: SIGHUP reopens the log file (after
//! logrotate moved it) without stopping anything, and SIGTERM stops it cleanly.

use std::time::{Duration, Instant};

use crate::helpers::TestStore;
use crate::procs::service;

#[tokio::test]
async fn sighup_reopens_the_log_file_and_sigterm_stops_the_service() {
    let store = TestStore::new();
    let log = store.dir.path().join("campaignd.log");
    let log_text = log.display().to_string();
    let (mut proc, url) = service(
        &store,
        &[
            ("CAMPAIGND_LOG_FILE", log_text.as_str()),
            ("CAMPAIGND_LOG", "info"),
        ],
    );
    let first = std::fs::read_to_string(&log).expect("the log file");
    assert!(first.contains("campaignd listening"), "{first}");
    // logrotate's move, then its signal.
    let rotated = store.dir.path().join("campaignd.log.1");
    std::fs::rename(&log, &rotated).expect("moved");
    let pid = proc.0.id() as i32;
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("log file reopened") {
            break;
        }
        assert!(Instant::now() < deadline, "the log file was not reopened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = reqwest::get(format!("{url}/health"))
        .await
        .expect("still serving");
    assert_eq!(health.status(), 200);
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap_or_default()
        .contains("reopened"));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = proc.0.wait().expect("exits");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn json_logs_carry_one_access_line_per_request_and_no_secrets() {
    let store = TestStore::new();
    let log = store.dir.path().join("campaignd.json.log");
    let log_text = log.display().to_string();
    let (_proc, url) = service(
        &store,
        &[
            ("CAMPAIGND_LOG_FILE", log_text.as_str()),
            ("CAMPAIGND_LOG_FORMAT", "json"),
            ("CAMPAIGND_LOG", "info"),
        ],
    );
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{url}/api/campaigns"))
        .bearer_auth("secret-bearer-xyz")
        .send()
        .await
        .expect("answers");
    assert_eq!(res.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["route"] == "ListCampaigns");
        if let Some(v) = found {
            assert!(
                !text.contains("secret-bearer-xyz"),
                "a token reached the log"
            );
            break v;
        }
        assert!(Instant::now() < deadline, "no access line: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(line["fields"]["status"], 401, "{line}");
    assert_eq!(line["fields"]["method"], "GET");
    assert!(line["fields"]["duration_ms"].is_number());
    assert_eq!(line["target"], "campaignd::access");
}
