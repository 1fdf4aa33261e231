//! Live progress at scale: the service runs as its own process (`campaignd demo`: four simulated
//! marketplaces and a 200-product campaign), N clients (BENCH_SUBSCRIBERS, 10,000) subscribe to
//! the campaign over WebSocket (or Server-Sent Events with BENCH_LIVE=sse), and the campaign is
//! published. For BENCH_SECONDS (20) of the run every client measures, for each tracker update,
//! the delay from the tracker's `updated_at` (stamped when the tracker actor writes it, just
//! before publishing it) to the update's arrival. Prints p50, p90, p99 and the largest delay,
//! updates per client, the service's own share of the delay (its delivery histogram, from an
//! event's publication to the socket), the service's resident memory before the clients, with
//! them connected and at the end, and what each subscriber costs it.
//!
//! Run: `cargo bench --bench websocket`. It opens N sockets on each side: `ulimit -n` must allow
//! about N + 100.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::Value;
use support::service::{cpu_of, rss_mib};
use tokio_tungstenite::tungstenite::Message;

/// How the clients subscribe.
#[derive(Clone, Copy, PartialEq)]
enum Live {
    WebSocket,
    Sse,
}

/// A subscriber's stream of message texts, whichever way it subscribed.
enum Feed {
    WebSocket(
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ),
    Sse(reqwest::Response, String),
}

impl Feed {
    async fn open(live: Live, api: &str) -> Feed {
        match live {
            Live::WebSocket => {
                let url = format!(
                    "{}/api/ws?token=bench&campaign_id=1",
                    api.replace("http://", "ws://")
                );
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connects");
                Feed::WebSocket(ws)
            }
            Live::Sse => {
                let answer = reqwest::Client::new()
                    .get(format!("{api}/api/events?campaign_id=1"))
                    .bearer_auth("bench")
                    .send()
                    .await
                    .expect("connects");
                assert_eq!(answer.status(), 200);
                Feed::Sse(answer, String::new())
            }
        }
    }

    /// The next message's JSON text, or None when the stream ends.
    async fn next(&mut self) -> Option<String> {
        match self {
            Feed::WebSocket(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(text)) => return Some(text.to_string()),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => continue,
                }
            },
            Feed::Sse(answer, buffer) => loop {
                if let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let data: Vec<&str> = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Some(data.join("\n"));
                }
                let chunk = answer.chunk().await.ok()??;
                buffer.push_str(&String::from_utf8_lossy(&chunk));
            },
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// The upper bound, in ms, of the histogram bucket that holds the `p` quantile of
/// `campaignd_live_delivery_seconds` in a `/metrics` text, and the number of observations.
fn delivery_quantile(metrics: &str, p: f64) -> (Option<f64>, f64) {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("campaignd_live_delivery_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once('"')?;
            let count = rest.rsplit(' ').next()?.parse().ok()?;
            Some((le.parse().unwrap_or(f64::INFINITY), count))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let bound = buckets
        .iter()
        .find(|(_, n)| *n >= p * total)
        .map(|(le, _)| le * 1000.0);
    (bound, total)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let subscribers = env_or("BENCH_SUBSCRIBERS", 10_000) as usize;
    let live = match std::env::var("BENCH_LIVE").as_deref() {
        Ok("sse") => Live::Sse,
        _ => Live::WebSocket,
    };
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
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
        let stop = tokio_util::sync::CancellationToken::new();
        let mut clients = Vec::new();
        for _ in 0..subscribers {
            let (api, delays, counts, ready, stop) = (
                api.clone(),
                Arc::clone(&delays),
                Arc::clone(&counts),
                ready_tx.clone(),
                stop.clone(),
            );
            clients.push(tokio::spawn(async move {
                let mut feed = Feed::open(live, &api).await;
                let mut mine = Vec::new();
                let mut updates = 0;
                loop {
                    let message = tokio::select! {
                        m = feed.next() => m,
                        _ = stop.cancelled() => break,
                    };
                    let Some(text) = message else { break };
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
        let (cpu_before, clients_before) = (cpu_of(pid), cpu_of(std::process::id()));
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cpu = cpu_of(pid).saturating_sub(cpu_before);
        let clients_cpu = cpu_of(std::process::id()).saturating_sub(clients_before);
        let rss_running = rss_mib(pid);
        let metrics = reqwest::get(format!("{api}/metrics"))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        stop.cancel();
        for c in clients {
            let _ = c.await;
        }
        let mut delays = delays.lock().unwrap().clone();
        delays.sort_unstable();
        let counts = counts.lock().unwrap().clone();
        let min_updates = counts.iter().min().copied().unwrap_or(0);
        let max_updates = counts.iter().max().copied().unwrap_or(0);
        let way = match live {
            Live::WebSocket => "WebSocket",
            Live::Sse => "SSE",
        };
        println!(
            "{way} fan-out: {subscribers} subscribers on one campaign (4 marketplaces), {seconds} s of a publish run"
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
        let (p50, delivered) = delivery_quantile(&metrics, 0.50);
        let (p99, _) = delivery_quantile(&metrics, 0.99);
        let ms = |b: Option<f64>| b.map_or("?".to_string(), |b| format!("{b:.1}"));
        println!(
            "the service's own side (publication to the socket, campaignd_live_delivery_seconds): p50 <= {} ms, p99 <= {} ms over {delivered} deliveries",
            ms(p50),
            ms(p99)
        );
        println!(
            "service RSS: {rss_before:.1} MiB before the clients, {rss_connected:.1} MiB with {subscribers} connected, {rss_running:.1} MiB after {seconds} s of updates"
        );
        let per = |mib: f64| (mib - rss_before) * 1024.0 / subscribers.max(1) as f64;
        println!(
            "per subscriber: {:.1} KiB connected, {:.1} KiB after the updates",
            per(rss_connected),
            per(rss_running)
        );
        println!(
            "service CPU during the updates: {:.2} s in {seconds} s ({:.1} µs per update delivered)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / delays.len().max(1) as f64
        );
        // On one machine the clients' reading competes with the service for the same cores, and
        // each delay includes the client's own wait to be scheduled.
        println!(
            "the clients' CPU in the same time: {:.2} s (this process, on the same machine)",
            clients_cpu.as_secs_f64()
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
