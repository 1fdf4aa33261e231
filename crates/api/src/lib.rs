//! The HTTP API on warp. One catch-all filter hands each request to a small router, so that every
//! answer, errors included, has the same JSON shape and a bad request can never reach a handler
//! half-parsed. The API reads the store and sends messages to the supervisor; it never calls a
//! marketplace.
//!
//! # Layout
//! - `route`: the route table (`Route::parse`); `handlers`: `dispatch`, route → command → answer.
//! - `input`: request bodies and queries, and their checks; `answers`: the answers as types,
//!   built from domain values; `error`: `ApiError`, the one error shape.
//! - `openapi`: the OpenAPI document; `live`: the WebSocket and SSE feeds; `server`: the HTTP
//!   server under warp (limits per client, read timeouts).
//! - `admin`: tenants and tokens; `ops`: the operator's views (status, campaigns, trackers,
//!   failures, export, check), for the `/admin` pages and the CLI.
//! - `config`: the `[server]` settings.

pub mod admin;
pub mod answers;
pub mod config;
mod error;
mod handlers;
pub mod input;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod route;
pub mod server;

use std::sync::Arc;

use actix::Addr;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use domain::clock::Clock;
use domain::Id;
use engine::config::RunConfig;
use engine::supervisor::Supervisor;
pub use error::{ApiError, ErrorCode};
use store::SharedStore;

/// What one client may take of the server: connections and header time (`server::Limits`),
/// time to send a body, open live streams per token and requests per token.
pub struct ClientLimits {
    pub server: server::Limits,
    pub body_timeout: std::time::Duration,
    pub subscribers_per_token: usize,
    subscribers: server::Counts<[u8; 32]>,
    /// When each followed token was last read from the store, and whether it held.
    checked: std::sync::Mutex<std::collections::HashMap<[u8; 32], (std::time::Instant, bool)>>,
    requests: governor::DefaultKeyedRateLimiter<[u8; 32]>,
    metrics: Arc<metrics::Metrics>,
    /// The operator's token: `GET /metrics` from elsewhere than loopback, and `/admin`.
    operator_token: String,
}

impl ClientLimits {
    pub fn new(
        config: &crate::config::ServerConfig,
        metrics: Arc<metrics::Metrics>,
    ) -> ClientLimits {
        let per_minute = std::num::NonZeroU32::new(config.requests_per_token_per_minute.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        ClientLimits {
            server: server::Limits {
                header_timeout: std::time::Duration::from_secs(config.read_timeout_secs.max(1)),
                connections_per_client: config.connections_per_client,
            },
            body_timeout: std::time::Duration::from_secs(config.read_timeout_secs.max(1)),
            subscribers_per_token: config.subscribers_per_token,
            subscribers: Default::default(),
            checked: Default::default(),
            requests: governor::RateLimiter::hashmap(governor::Quota::per_minute(per_minute)),
            metrics,
            operator_token: config.operator_token.clone(),
        }
    }

    /// Counts a request of a token; refused with 429 and when to come back over its rate.
    fn admit(&self, token: &[u8; 32]) -> Result<(), ApiError> {
        use governor::clock::Clock as _;
        self.requests.check_key(token).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs().max(1))
        })
    }

    /// Takes a live-stream slot of a token, given back when the slot drops.
    pub fn subscribe(self: &Arc<Self>, token: [u8; 32]) -> Result<StreamSlot, ApiError> {
        let slot = self
            .subscribers
            .take(token, self.subscribers_per_token.max(1))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::TooManySubscribers,
                    format!(
                        "this token already has {} live streams open",
                        self.subscribers_per_token
                    ),
                )
            })?;
        self.metrics.subscribers.inc();
        Ok(StreamSlot {
            _slot: slot,
            metrics: Arc::clone(&self.metrics),
        })
    }

    /// The tokens that have live streams open.
    pub fn followed_tokens(&self) -> Vec<[u8; 32]> {
        self.subscribers.keys()
    }

    /// Whether a token still holds, read from the store at most once per `every` for all the
    /// streams of that token together.
    pub async fn token_holds(
        &self,
        state: &ApiState,
        token: &[u8; 32],
        every: std::time::Duration,
    ) -> store::Result<bool> {
        let now = std::time::Instant::now();
        let cached = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .filter(|(at, _)| now.duration_since(*at) < every)
            .map(|(_, live)| *live);
        if let Some(live) = cached {
            return Ok(live);
        }
        let live = state
            .store
            .token(token)
            .await?
            .is_some_and(|t| t.live(state.clock.now_ms()));
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        // Tokens no stream follows any more leave the cache.
        checked.retain(|_, (at, _)| now.duration_since(*at) < every * 4);
        checked.insert(*token, (now, live));
        Ok(live)
    }
}

/// One open live stream of a token.
pub struct StreamSlot {
    _slot: server::Slot<[u8; 32]>,
    metrics: Arc<metrics::Metrics>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.metrics.subscribers.dec();
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: SharedStore,
    pub supervisor: Addr<Supervisor>,
    pub clock: Arc<dyn Clock>,
    pub runs: RunConfig,
    pub body_limit: u64,
    /// Where tenant-given URLs may lead.
    pub egress: net::egress::EgressConfig,
    /// Hashes of tokens revoked here, for the open streams that came with them.
    pub revocations: tokio::sync::broadcast::Sender<[u8; 32]>,
    /// What one client may take of the server.
    pub limits: Arc<ClientLimits>,
    /// Live events, for WebSocket and SSE subscribers.
    pub hub: Arc<engine::events::Hub>,
    /// Cancelled when the service stops: live streams end, WebSockets close with a reason.
    pub closing: tokio_util::sync::CancellationToken,
    /// The WebSocket sessions, which outlive their HTTP request: the server waits for them to
    /// send their close frames before it stops.
    pub sockets: tokio_util::task::TaskTracker,
}

/// A request, read whole (body within the limit) before routing.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Bytes,
}

pub use domain::token_hash;

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let sockets = state.sockets.clone();
    let limits = state.limits.server;
    tokio::spawn(live::watch_tokens(state.clone()));
    let takeover = sse_takeover(state.clone());
    server::serve(listener, routes(state), limits, Some(takeover), shutdown).await;
    sockets.close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!("some WebSockets did not close within 5 s");
    }
}

/// `GET /api/events` served on its bare connection (see `server::Takeover`). A request it does
/// not serve (another path, no token, a bad query, too many streams) goes on untouched to the
/// `events` route, which answers it, error included; so does one on a connection that served
/// other requests first.
fn sse_takeover(state: ApiState) -> server::Takeover {
    server::Takeover {
        prefix: b"GET /api/events",
        serve: Arc::new(move |head, stream, _client| {
            let state = state.clone();
            Box::pin(async move {
                if head.path != "/api/events" {
                    return Some(stream);
                }
                let auth = head
                    .headers
                    .get(warp::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let Ok(mut who) = live::authorize(&state, auth, &head.query).await else {
                    return Some(stream);
                };
                // SSE's own way back: the Last-Event-ID header.
                who.resync |= head.headers.contains_key("last-event-id");
                live::sse_connection(state, who, stream, head.len).await;
                None
            })
        }),
    }
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    use warp::Reply;
    let websocket = websocket_route(state.clone());
    let sse_state = state.clone();
    let events = warp::path!("api" / "events")
        .and(warp::get())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("last-event-id"))
        .then(
            move |query: String, auth: Option<String>, last: Option<String>| {
                let state = sse_state.clone();
                async move {
                    match live::authorize(&state, auth.as_deref(), &query).await {
                        Err(e) => reply_error(e),
                        Ok(mut who) => {
                            // SSE's own way back: the Last-Event-ID header.
                            who.resync |= last.is_some();
                            let stream = live::sse(state, who);
                            warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
                        }
                    }
                }
            },
        );
    let metrics_limits = Arc::clone(&state.limits);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::ext::optional::<server::ClientAddr>())
        .and(warp::header::optional::<String>("authorization"))
        .map(
            move |client: Option<server::ClientAddr>, auth: Option<String>| {
                metrics_page(&metrics_limits, client, auth.as_deref())
            },
        );
    let admin_state = state.clone();
    let admin = warp::path("admin")
        .and(warp::get())
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .then(move |path: warp::path::FullPath, auth: Option<String>| {
            let state = admin_state.clone();
            async move {
                admin_page(&state, auth.as_deref(), path.as_str())
                    .await
                    .unwrap_or_else(reply_error)
            }
        });
    let dashboard = warp::path::end()
        .and(warp::get())
        .map(|| dashboard_page().into_response());
    let api = api_route(state);
    dashboard
        .or(metrics)
        .unify()
        .or(admin)
        .unify()
        .or(websocket)
        .unify()
        .or(events)
        .unify()
        .or(api)
        .unify()
}

/// `GET /api/ws`: live events over a WebSocket, after its handshake and the token's check.
fn websocket_route(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::path!("api" / "ws")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<server::Upgrade>())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            move |headers: warp::http::HeaderMap,
                  upgrade: Option<server::Upgrade>,
                  query: String| {
                let state = state.clone();
                async move {
                    let accept = match live::handshake(&headers, upgrade.as_ref()) {
                        Ok(accept) => accept,
                        Err(e) => return reply_error(e),
                    };
                    let auth = headers
                        .get(warp::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    match live::authorize(&state, auth, &query).await {
                        Err(e) => reply_error(e),
                        Ok(who) => {
                            // `handshake` found the connection there; it is taken only here.
                            let Some(on) = upgrade.and_then(|u| u.take()) else {
                                return reply_error(ApiError::internal("the connection was taken"));
                            };
                            let sockets = state.sockets.clone();
                            sockets.spawn(async move {
                                if let Some(socket) = live::upgraded(on).await {
                                    live::websocket(state, who, socket).await;
                                }
                            });
                            live::switching(&accept)
                        }
                    }
                }
            },
        )
}

/// Every route of `ROUTES`: the body read within its limits, then `handlers::dispatch`.
fn api_route(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("content-length"))
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  authorization: Option<String>,
                  length: Option<String>,
                  body| {
                let state = state.clone();
                async move {
                    let limit = state.body_limit;
                    let read = read_body(length, body, limit);
                    let body = match tokio::time::timeout(state.limits.body_timeout, read)
                        .await
                        .unwrap_or_else(|_| {
                            Err(ApiError::new(
                                ErrorCode::RequestTimeout,
                                "the request body did not arrive in time",
                            ))
                        }) {
                        Ok(b) => b,
                        Err(e) => return reply_error(e),
                    };
                    let request = Request {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        authorization,
                        body,
                    };
                    match handlers::dispatch(&state, request).await {
                        Ok(r) => r,
                        Err(e) => reply_error(e),
                    }
                }
            },
        )
        .recover(|_rejection: warp::Rejection| async move {
            Ok::<_, std::convert::Infallible>(reply_error(ApiError::new(
                ErrorCode::BadRequest,
                "the request could not be read",
            )))
        })
        .unify()
}

/// Whether the request carries the operator's token (`server.operator_token`; none is set
/// when it is empty).
fn operator_token(limits: &ClientLimits, authorization: Option<&str>) -> bool {
    let token = authorization.and_then(|a| a.strip_prefix("Bearer "));
    !limits.operator_token.is_empty() && token.is_some_and(|t| t.trim() == limits.operator_token)
}

/// Whether a request may read `/metrics`: loopback clients, or the operator's token.
fn operator(
    limits: &ClientLimits,
    client: Option<server::ClientAddr>,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    let local = client.is_some_and(|c| c.0.is_loopback());
    if local || operator_token(limits, authorization) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "metrics are served to loopback clients, or with server.operator_token",
        ))
    }
}

/// `GET /metrics`: the Prometheus text, for the operator.
fn metrics_page(
    limits: &ClientLimits,
    client: Option<server::ClientAddr>,
    authorization: Option<&str>,
) -> Response {
    if let Err(e) = operator(limits, client, authorization) {
        return reply_error(e);
    }
    let mut r = Response::new(limits.metrics.render().into());
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /admin/...`: the operator's reads of the whole store, as `campaignd status`,
/// `campaigns`, `trackers`, `failed` and `check` give them on a stopped service.
async fn admin_page(
    state: &ApiState,
    authorization: Option<&str>,
    path: &str,
) -> Result<Response, ApiError> {
    // Every tenant's records: the operator's token even on loopback, where a reverse proxy
    // would make every client local.
    if !operator_token(&state.limits, authorization) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the /admin pages need the operator's token (server.operator_token)",
        ));
    }
    let store = state.store.as_ref();
    let now = state.clock.now_ms();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let campaign = |s: &str| route::id(s, "campaign");
    let missing = |e: store::StoreError| match e {
        store::StoreError::Missing { kind, .. } => ApiError::not_found(kind),
        e => ApiError::from(e),
    };
    let body = match segments.as_slice() {
        ["admin", "status"] => crate::ops::status(store, now).await?,
        ["admin", "campaigns"] => crate::ops::campaigns(store).await?,
        ["admin", "campaigns", c, "trackers"] => crate::ops::trackers(store, campaign(c)?)
            .await
            .map_err(missing)?,
        ["admin", "campaigns", c, "failed"] => crate::ops::failed(store, campaign(c)?)
            .await
            .map_err(missing)?,
        ["admin", "check"] => crate::ops::check_report(store).await?,
        _ => return Err(route::not_found(&Method::GET, path)),
    };
    Ok(reply_json(StatusCode::OK, &body))
}

/// The dashboard: one page, no build step.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The dashboard's Content-Security-Policy: its one inline script by hash, nothing from
/// elsewhere, no framing.
fn dashboard_csp() -> String {
    use base64::Engine;
    let script = DASHBOARD
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(s, _)| s);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The dashboard page with its security headers.
fn dashboard_page() -> Response {
    use warp::Reply;
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(dashboard_csp);
    let mut page = warp::reply::html(DASHBOARD).into_response();
    let headers = page.headers_mut();
    let set = |headers: &mut warp::http::HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = warp::http::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(headers, "content-security-policy", &CSP);
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cache-control", "no-store");
    page
}

async fn read_body<S, B>(length: Option<String>, body: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = body;
    if let Some(n) = length.and_then(|l| l.trim().parse::<u64>().ok()) {
        if n > limit {
            // Read what was sent (up to a bound) before answering, so that a client still
            // sending sees the 413 rather than a connection reset.
            discard(&mut body, limit.saturating_mul(16).max(64 << 20)).await;
            return Err(ApiError::too_large(limit));
        }
    }
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("could not read the body: {e}"),
            )
        })?;
        if (out.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// Reads and drops up to `most` bytes of a body nobody will use.
async fn discard<S, B>(body: &mut S, most: u64)
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut read = 0u64;
    while read < most {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.remaining() as u64,
            _ => return,
        }
    }
}

pub fn reply_json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    use warp::Reply;
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn reply_error(e: ApiError) -> Response {
    let body = e.body();
    let mut response = reply_json(e.status(), &body);
    if let Some(secs) = body.retry_after_secs {
        if let Ok(v) = warp::http::HeaderValue::from_str(&secs.to_string()) {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, v);
        }
    }
    if let Some(allow) = &body.allow {
        if let Ok(v) = warp::http::HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(warp::http::header::ALLOW, v);
        }
    }
    if matches!(
        e.code,
        ErrorCode::PayloadTooLarge | ErrorCode::RequestTimeout
    ) {
        // The rest of the body was not read: the connection cannot carry another request.
        response.headers_mut().insert(
            warp::http::header::CONNECTION,
            warp::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The tenant a request's bearer token belongs to.
async fn authenticate(state: &ApiState, request: &Request) -> Result<Id, ApiError> {
    let header = request
        .authorization
        .as_deref()
        .ok_or_else(ApiError::unauthorized)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let hash = token_hash(token);
    match state.store.token(&hash).await? {
        Some(t) if t.live(state.clock.now_ms()) => {
            state.limits.admit(&hash)?;
            Ok(t.tenant_id)
        }
        _ => Err(ApiError::unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(token: &str) -> ClientLimits {
        let config = crate::config::ServerConfig {
            addr: "127.0.0.1:0".parse().expect("an address"),
            body_limit_bytes: 1 << 20,
            read_timeout_secs: 10,
            connections_per_client: 8,
            subscribers_per_token: 8,
            requests_per_token_per_minute: 600,
            operator_token: token.to_string(),
        };
        ClientLimits::new(&config, Arc::default())
    }

    #[test]
    fn metrics_are_served_to_loopback_or_with_the_operators_token_only() {
        let local = Some(server::ClientAddr("127.0.0.1".parse().unwrap()));
        let remote = Some(server::ClientAddr("203.0.113.9".parse().unwrap()));
        let open = limits("");
        assert_eq!(metrics_page(&open, local, None).status(), StatusCode::OK);
        assert_eq!(
            metrics_page(&open, remote, None).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            metrics_page(&open, remote, Some("Bearer ")).status(),
            StatusCode::FORBIDDEN,
            "an empty operator token opens nothing"
        );
        let guarded = limits("m-secret");
        assert_eq!(
            metrics_page(&guarded, remote, Some("Bearer m-secret")).status(),
            StatusCode::OK
        );
        assert_eq!(
            metrics_page(&guarded, remote, Some("Bearer other")).status(),
            StatusCode::FORBIDDEN
        );
    }
}
