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
