//! Marketplace simulators: small HTTP servers on 127.0.0.1 that speak each marketplace's API
//! (paths, auth, bodies, statuses, error shapes, rate-limit headers) and record what they
//! received, so tests can assert that no SKU was created twice and that no limit was exceeded.
//! Each runs on its own thread and runtime, independent of whoever started it.
//!
//! Knobs common to all: latency, a hold gate (requests wait until released), a rate of 5xx
//! answers (sent before any effect) and a rate of hangs (sent after the effect, so the client
//! cannot know the outcome), writes that land late (the store carries them out after a delay
//! whether or not their client still waits, as a Rails or PHP store finishes a request whose
//! connection dropped), and per-SKU rejections with a message.

pub use crate::jumpseller::sim as jumpseller;
pub use crate::mercadolibre::sim as mercadolibre;
pub use crate::shopify::sim as shopify;
pub use crate::woocommerce::sim as woocommerce;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

/// A request as a simulator sees it.
pub struct SimRequest {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub arrived: Instant,
}

impl SimRequest {
    /// The `user:password` of HTTP Basic auth, if any.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        use base64::Engine;
        let header = self.headers.get("authorization")?.to_str().ok()?;
        let encoded = header.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some((user.to_string(), pass.to_string()))
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A whole number in the query string, or `default` when it is absent or not a number.
    pub fn number(&self, name: &str, default: usize) -> usize {
        self.query
            .get(name)
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    }
}

pub struct SimResponse {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl SimResponse {
    pub fn json(status: StatusCode, body: Value) -> SimResponse {
        SimResponse {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

/// A marketplace's behaviour behind the common harness.
pub trait SimApi: Send + 'static {
    fn handle(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse;

    /// The marketplace's products as `{sku, status, ...}`, for `GET /_sim/state`.
    fn dump(&self) -> Value;

    /// The fields of a request the real API would take without effect (unknown to it, or
    /// read-only), as "METHOD path: field"; asked of the requests it answered with success.
    fn ignored(&self, _req: &SimRequest) -> Vec<String> {
        Vec::new()
    }

    /// The answer an injected server error gets, in the marketplace's error shape.
    fn server_error(&self) -> SimResponse {
        SimResponse::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"message": "Internal Server Error"}),
        )
    }
}

/// Knobs a test may turn while the simulator runs.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    pub latency: Duration,
    /// Share of requests answered 503 before any effect.
    pub error_rate: f64,
    /// Share of requests that take effect and then never answer.
    pub hang_rate: f64,
    /// SKU → message: creating or updating this SKU is refused with the message.
    pub reject_skus: HashMap<String, String>,
    /// The next this many requests take effect and then hang (after any `error_rate` draw).
    pub hang_next: u32,
    /// The next this many requests are spared every fault above (a run's look-up of the
    /// store before its creates, say, so that the faults meet the creates).
    pub spare_next: u32,
    /// Share of requests that take effect and then have their connection cut mid-answer.
    pub reset_rate: f64,
    /// Share of requests that take effect and then get a 200 whose JSON is cut short.
    pub malformed_rate: f64,
    /// The next this many writes (not reads: see `Logged::reads_store`) take effect only
    /// `land_after` after they arrived, and are answered then. The effect happens even when
    /// the client gave up or went away meanwhile: a store does not notice a dropped connection
    /// until it writes its answer (PHP's `ignore_user_abort` aside, a request runs to its end;
    /// Rails and Puma likewise finish the action before writing to the socket).
    pub late_writes: u32,
    pub land_after: Duration,
}

/// What a simulator counted.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub requests: u64,
    /// Creations per SKU (products and variants): more than one is a duplicate.
    pub sku_creations: HashMap<String, u32>,
    /// The most requests that arrived within any 1 s and any 60 s.
    pub max_in_1s: u64,
    /// When (Unix milliseconds) the busiest second ended, for a test to place it.
    pub busiest_1s_at_ms: i64,
    pub max_in_60s: u64,
    pub throttled: u64,
    /// Of those, the requests refused because the account was banned (Jumpseller's 403).
    pub banned: u64,
    pub injected_errors: u64,
    pub hung: u64,
    /// Writes made to land late (`Knobs::late_writes`), and of those the ones not landed yet.
    pub late: u64,
    pub landing: u64,
    pub resets: u64,
    pub malformed: u64,
    /// Requests the store refused as invalid (a 4xx other than 401, 404 and 429), as
    /// "METHOD path → status body": what a real store would not have taken.
    pub refused: Vec<String>,
    /// Fields of the requests taken that the real API would ignore (see `SimApi::ignored`).
    pub ignored: Vec<String>,
    /// Batch requests received, and the items they carried.
    pub batches: u64,
    pub batch_items: u64,
    /// Every request received, in order.
    pub log: Vec<Logged>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    /// When it arrived.
    pub at: Instant,
}

impl Logged {
    /// Whether the request read the store rather than wrote to it: a GET, or a GraphQL query.
    pub fn reads_store(&self) -> bool {
        reads_store(&self.method, self.body.as_ref())
    }
}

fn reads_store(method: &str, body: Option<&Value>) -> bool {
    let graphql_query = body
        .and_then(|b| b["query"].as_str())
        .is_some_and(|q| q.starts_with("query"));
    method == "GET" || graphql_query
}

impl SimStats {
    /// Keeps a refusal of `req` (see `refused`), or the fields of it `api` would ignore.
    fn note(&mut self, req: &SimRequest, response: &SimResponse, api: &impl SimApi) {
        if response.status.is_success() {
            self.ignored.extend(api.ignored(req));
        }
        let status = response.status.as_u16();
        if (400..500).contains(&status) && !matches!(status, 401 | 404 | 429) {
            self.refused.push(format!(
                "{} {} → {status} {}",
                req.method, req.path, response.body
            ));
        }
    }

    /// SKUs created more than once.
    pub fn duplicate_skus(&self) -> Vec<String> {
        let mut d: Vec<_> = self
            .sku_creations
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| s.clone())
            .collect();
        d.sort();
        d
    }

    /// From the first request's arrival to the last one's.
    pub fn arrival_span(&self) -> Duration {
        match (self.log.first(), self.log.last()) {
            (Some(a), Some(b)) => b.at.duration_since(a.at),
            _ => Duration::ZERO,
        }
    }

    pub fn created(&mut self, sku: &str) {
        *self.sku_creations.entry(sku.to_string()).or_default() += 1;
    }
}

/// A marketplace-side limit of requests per second and per minute over sliding windows, for
/// simulators whose marketplace throttles without quota headers of its own.
#[derive(Debug, Default)]
pub struct SlidingLimit {
    /// None: no limit.
    pub limits: Option<(u64, u64)>,
    recent: VecDeque<Instant>,
}

impl SlidingLimit {
    pub fn new(limits: Option<(u64, u64)>) -> SlidingLimit {
        SlidingLimit {
            limits,
            recent: VecDeque::new(),
        }
    }

    /// Counts an arrival (throttled or not); false when it is over a limit.
    pub fn admit(&mut self, at: Instant, stats: &mut SimStats) -> bool {
        let Some((per_second, per_minute)) = self.limits else {
            return true;
        };
        let (in_second, in_minute) = self.arrive(at);
        let over = in_second >= per_second || in_minute >= per_minute;
        if over {
            stats.throttled += 1;
        }
        !over
    }

    /// Records an arrival; answers how many arrived in the second and the minute before it.
    pub fn arrive(&mut self, at: Instant) -> (u64, u64) {
        let counts = self.counts(at);
        self.recent.push_back(at);
        counts
    }

    /// How many arrived in the second and the minute before `at`.
    pub fn counts(&mut self, at: Instant) -> (u64, u64) {
        while self
            .recent
            .front()
            .is_some_and(|t| at.duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        let in_second = self
            .recent
            .iter()
            .rev()
            .take_while(|t| at.duration_since(**t) < Duration::from_secs(1))
            .count() as u64;
        let in_minute = self.recent.len() as u64;
        (in_second, in_minute)
    }
}

/// Arrival times of the last minute, to measure the busiest windows.
#[derive(Default)]
struct Window {
    arrivals: VecDeque<Instant>,
}

impl Window {
    fn arrive(&mut self, at: Instant, stats: &mut SimStats) {
        self.arrivals.push_back(at);
        while self
            .arrivals
            .front()
            .is_some_and(|t| at.duration_since(*t) >= Duration::from_secs(60))
        {
            self.arrivals.pop_front();
        }
        let in_1s = self
            .arrivals
            .iter()
            .rev()
            .take_while(|t| at.duration_since(**t) < Duration::from_secs(1))
            .count() as u64;
        if in_1s > stats.max_in_1s {
            stats.max_in_1s = in_1s;
            stats.busiest_1s_at_ms = chrono::Utc::now().timestamp_millis();
        }
        stats.max_in_60s = stats.max_in_60s.max(self.arrivals.len() as u64);
    }
}

struct Shared<S> {
    api: S,
    stats: SimStats,
    knobs: Knobs,
    window: Window,
    rng: StdRng,
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle<S: SimApi> {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared<S>>>,
    /// Requests waiting at the hold gate right now.
    waiting: Arc<std::sync::atomic::AtomicU64>,
    hold: watch::Sender<bool>,
    /// Set when the simulator stops, so hung requests end and the server can shut down.
    stopping: watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<S>(m: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    // A panic in a handler leaves the simulator's maps usable; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: SimApi> SimHandle<S> {
    /// Starts `api` on 127.0.0.1 with a free port.
    pub fn start(api: S, addr: SocketAddr) -> std::io::Result<SimHandle<S>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            api,
            stats: SimStats::default(),
            knobs: Knobs::default(),
            window: Window::default(),
            rng: StdRng::seed_from_u64(7),
        }));
        let (hold, held) = watch::channel(false);
        let (stopping, stopping_rx) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let route_shared = Arc::clone(&shared);
        let waiting = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let route_waiting = Arc::clone(&waiting);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sim-worker")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("sim-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(error) => {
                            tracing::error!(%error, "simulator could not listen");
                            return;
                        }
                    };
                    let route = routes(route_shared, held, stopping_rx, route_waiting);
                    warp::serve(route)
                        .incoming(listener)
                        .graceful(async {
                            let _ = stopped.await;
                        })
                        .run()
                        .await;
                });
                // Hung requests must not keep the thread alive after a stop.
                runtime.shutdown_background();
            })?;
        Ok(SimHandle {
            addr,
            shared,
            waiting,
            hold,
            stopping,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.shared).stats.clone()
    }

    pub fn set_knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut lock(&self.shared).knobs);
    }

    /// Reads or changes the marketplace's own state.
    pub fn with_api<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(&self.shared).api)
    }

    /// Makes every request wait until `release`.
    pub fn hold(&self) {
        let _ = self.hold.send(true);
    }

    pub fn release(&self) {
        let _ = self.hold.send(false);
    }

    /// How many requests are waiting at the hold gate now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<S: SimApi> Drop for SimHandle<S> {
    fn drop(&mut self) {
        self.release();
        let _ = self.stopping.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Plan {
    Answer(SimResponse, Duration),
    /// Carried out this long after arrival, whether or not the client still waits.
    Late(Duration),
    Hang,
    /// The connection is cut in the middle of the answer.
    Reset,
    /// A 200 whose JSON body is cut short.
    Malformed(SimResponse),
}

fn routes<S: SimApi>(
    shared: Arc<Mutex<Shared<S>>>,
    held: watch::Receiver<bool>,
    stopping: watch::Receiver<bool>,
    waiting: Arc<std::sync::atomic::AtomicU64>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes().or(warp::any().map(Bytes::new)).unify())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body: Bytes| {
                let shared = Arc::clone(&shared);
                let mut held = held.clone();
                let mut stopping = stopping.clone();
                let waiting = Arc::clone(&waiting);
                async move {
                    if path.as_str() == "/_sim/state" {
                        // The simulator's own window, for a test in another process; not part
                        // of the marketplace's API and not counted.
                        let s = lock(&shared);
                        return into_reply(SimResponse::json(
                            StatusCode::OK,
                            serde_json::json!({
                                "requests": s.stats.requests,
                                "creations": s.stats.sku_creations.values().map(|n| u64::from(*n)).sum::<u64>(),
                                "duplicate_skus": s.stats.duplicate_skus(),
                                "throttled": s.stats.throttled,
                                "max_in_1s": s.stats.max_in_1s,
                                "busiest_1s_at_ms": s.stats.busiest_1s_at_ms,
                                "max_in_60s": s.stats.max_in_60s,
                                "hung": s.stats.hung,
                                "late": s.stats.late,
                                "landing": s.stats.landing,
                                "injected_errors": s.stats.injected_errors,
                                "products": s.api.dump(),
                            }),
                        ));
                    }
                    // Waits while a test holds the gate.
                    waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = held.wait_for(|h| !*h).await;
                    waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    let req = SimRequest {
                        method,
                        path: path.as_str().to_string(),
                        query: serde_urlencoded::from_str(&query).unwrap_or_default(),
                        headers,
                        body,
                        arrived: Instant::now(),
                    };
                    let plan = {
                        let mut s = lock(&shared);
                        let Shared {
                            api,
                            stats,
                            knobs,
                            window,
                            rng,
                        } = &mut *s;
                        stats.requests += 1;
                        stats.log.push(Logged {
                            method: req.method.to_string(),
                            path: req.path.clone(),
                            query: req.query.clone(),
                            body: req.json(),
                            at: req.arrived,
                        });
                        window.arrive(req.arrived, stats);
                        let spared = knobs.spare_next > 0;
                        knobs.spare_next = knobs.spare_next.saturating_sub(1);
                        let late = knobs.late_writes > 0
                            && !reads_store(req.method.as_str(), req.json().as_ref());
                        if late {
                            knobs.late_writes -= 1;
                            stats.late += 1;
                            stats.landing += 1;
                            Plan::Late(knobs.land_after)
                        } else if spared {
                            let response = api.handle(&req, stats, knobs);
                            stats.note(&req, &response, api);
                            Plan::Answer(response, knobs.latency)
                        } else if knobs.error_rate > 0.0
                            && rng.random_bool(knobs.error_rate.min(1.0))
                        {
                            stats.injected_errors += 1;
                            Plan::Answer(api.server_error(), knobs.latency)
                        } else {
                            let response = api.handle(&req, stats, knobs);
                            stats.note(&req, &response, api);
                            let forced = knobs.hang_next > 0;
                            knobs.hang_next = knobs.hang_next.saturating_sub(1);
                            let draw = |rate: f64, rng: &mut StdRng| {
                                rate > 0.0 && rng.random_bool(rate.min(1.0))
                            };
                            if forced || draw(knobs.hang_rate, rng) {
                                stats.hung += 1;
                                Plan::Hang
                            } else if draw(knobs.reset_rate, rng) {
                                stats.resets += 1;
                                Plan::Reset
                            } else if draw(knobs.malformed_rate, rng) {
                                stats.malformed += 1;
                                Plan::Malformed(response)
                            } else {
                                Plan::Answer(response, knobs.latency)
                            }
                        }
                    };
                    match plan {
                        Plan::Late(after) => {
                            // A task of its own: a client that goes away drops this handler,
                            // not the store's work.
                            let shared = Arc::clone(&shared);
                            let landed = tokio::spawn(async move {
                                tokio::time::sleep(after).await;
                                let mut s = lock(&shared);
                                let Shared {
                                    api, stats, knobs, ..
                                } = &mut *s;
                                stats.landing -= 1;
                                let response = api.handle(&req, stats, knobs);
                                stats.note(&req, &response, api);
                                response
                            });
                            match landed.await {
                                Ok(response) => into_reply(response),
                                Err(_) => into_reply(SimResponse::json(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    Value::Null,
                                )),
                            }
                        }
                        Plan::Hang => {
                            // No answer until the simulator stops; the client's timeout ends
                            // the request long before.
                            let _ = stopping.wait_for(|s| *s).await;
                            into_reply(SimResponse::json(
                                StatusCode::SERVICE_UNAVAILABLE,
                                Value::Null,
                            ))
                        }
                        Plan::Answer(response, latency) => {
                            if !latency.is_zero() {
                                tokio::time::sleep(latency).await;
                            }
                            into_reply(response)
                        }
                        Plan::Reset => {
                            // The answer announces more bytes than it sends: the server gives
                            // up on the connection halfway, as a reset does to the client.
                            let mut r = warp::reply::Response::new(warp::hyper::body::Bytes::from_static(b"{\"prod").into());
                            r.headers_mut().insert(
                                warp::http::header::CONTENT_LENGTH,
                                warp::http::HeaderValue::from_static("4096"),
                            );
                            r
                        }
                        Plan::Malformed(response) => {
                            let text = response.body.to_string();
                            let cut: String = text.chars().take(text.chars().count() / 2).collect();
                            let mut r = warp::reply::Response::new(cut.into());
                            *r.status_mut() = response.status;
                            r.headers_mut().insert(
                                warp::http::header::CONTENT_TYPE,
                                warp::http::HeaderValue::from_static("application/json"),
                            );
                            r
                        }
                    }
                }
            },
        )
}

fn into_reply(r: SimResponse) -> warp::reply::Response {
    use warp::Reply;
    let mut response =
        warp::reply::with_status(warp::reply::json(&r.body), r.status).into_response();
    for (k, v) in r.headers {
        if let (Ok(name), Ok(value)) = (
            warp::http::header::HeaderName::from_bytes(k.as_bytes()),
            warp::http::HeaderValue::from_str(&v),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
