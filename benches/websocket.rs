//! Live progress at scale: the service runs as its own process (`campaignd demo`: four simulated
//! marketplaces and a 200-product campaign), N WebSocket clients (BENCH_SUBSCRIBERS, 1000)
//! subscribe to the campaign, and the campaign is published. For BENCH_SECONDS (20) of the run
//! every client measures, for each tracker update, the delay from the tracker's `updated_at`
//! (stamped when the tracker actor writes it, just before publishing it) to the update's
//! arrival. Prints p50, p90, p99 and the largest delay, updates per client, and the service's
//! resident memory before the clients, with them connected, and at the end.
//!
//! Run: `cargo bench --bench websocket`. It opens N sockets on each side: `ulimit -n` must allow
//! about N + 100.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The tracker's `updated_at` in a tracker message, in Unix milliseconds.
fn updated_at(text: &str) -> Option<i64> {
    let key = r#""updated_at":""#;
    // The tracker's own field is the last one of that name in the message.
    let start = text.rfind(key)? + key.len();
    let end = start + text[start..].find('"')?;
    chrono::DateTime::parse_from_rfc3339(&text[start..end])
        .ok()
        .map(|t| t.timestamp_millis())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let subscribers = env_or("BENCH_SUBSCRIBERS", 1000) as usize;
    let seconds = env_or("BENCH_SECONDS", 20);
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_campaignd"))
        .args(["demo", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path().join("demo"))
        .env("CAMPAIGND_DEMO_TOKEN", "bench")
        .env("CAMPAIGND_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the service starts");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let api = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("API:").map(|u| u.trim().to_string()))
        .expect("the demo prints its address");
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let rss_before = rss_mib(pid);
        let delays: Arc<Mutex<Vec<i64>>> = Arc::default();
        let counts: Arc<Mutex<Vec<u64>>> = Arc::default();
        let ws_url = format!("{}/api/ws?token=bench&campaign_id=1", api.replace("http://", "ws://"));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
        let stop = tokio_util::sync::CancellationToken::new();
        let mut clients = Vec::new();
        for _ in 0..subscribers {
            let (url, delays, counts, ready, stop) = (
                ws_url.clone(),
                Arc::clone(&delays),
                Arc::clone(&counts),
                ready_tx.clone(),
                stop.clone(),
            );
            clients.push(tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connects");
                let mut mine = Vec::new();
                let mut updates = 0;
                loop {
                    let message = tokio::select! {
                        m = ws.next() => m,
                        _ = stop.cancelled() => break,
                    };
                    let Some(Ok(Message::Text(text))) = message else { break };
                    let arrived = now_ms();
                    // Only what the measure needs is read, so that a thousand clients sharing
                    // two threads do not delay each other's arrival times by parsing.
                    if text.starts_with(r#"{"seq""#) && text.contains(r#""type":"tracker""#) {
                        let at = updated_at(&text).expect("updated_at");
                        mine.push(arrived - at);
                        updates += 1;
                    } else if text.contains(r#""type":"snapshot""#) {
                        let _ = ready.send(()).await;
                    }
                }
                delays.lock().unwrap().extend(mine);
                counts.lock().unwrap().push(updates);
            }));
            // Let the accept queue drain now and then.
            if clients.len() % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for _ in 0..subscribers {
            ready_rx.recv().await.expect("every client got its snapshot");
        }
        let rss_connected = rss_mib(pid);
        let client = reqwest::Client::new();
        let started: Value = client
            .post(format!("{api}/api/campaigns/1/publish"))
            .bearer_auth("bench")
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        assert!(started["tracker_id"].is_u64(), "{started}");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let rss_running = rss_mib(pid);
        stop.cancel();
        for c in clients {
            let _ = c.await;
        }
        let mut delays = delays.lock().unwrap().clone();
        delays.sort_unstable();
        let counts = counts.lock().unwrap().clone();
        let min_updates = counts.iter().min().copied().unwrap_or(0);
        let max_updates = counts.iter().max().copied().unwrap_or(0);
        println!(
            "websocket fan-out: {subscribers} subscribers on one campaign (4 marketplaces), {seconds} s of a publish run"
        );
        println!(
            "updates received: {} ({min_updates}..{max_updates} per subscriber)",
            delays.len()
        );
        println!(
            "delay from tracker update to arrival: p50={} ms p90={} ms p99={} ms max={} ms",
            percentile(&delays, 0.50),
            percentile(&delays, 0.90),
            percentile(&delays, 0.99),
            delays.last().copied().unwrap_or(0)
        );
        println!(
            "service RSS: {rss_before:.1} MiB before the clients, {rss_connected:.1} MiB with {subscribers} connected, {rss_running:.1} MiB after {seconds} s of updates"
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
