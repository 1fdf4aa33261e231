//! The one outbound HTTP client (always with timeouts) and the `Gate` every adapter request goes
//! through: it takes the connection's limiter before sending, and turns transport failures and
//! HTTP statuses into `MarketError`s. Credentials are set on requests by adapters and never logged.

use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, Response, StatusCode};

use super::plan::{Operation, Recorder, Request};
use super::{ConnLimiter, MarketError, Session};
use domain::Credentials;
use net::egress::{check_resolved, Policy, Resolver};

/// Builds an HTTP client of the service (for marketplaces, or for webhooks): with timeouts,
/// never following a redirect, and resolving names to the addresses `policy` allows only.
pub fn client(
    timeout: Duration,
    connect_timeout: Duration,
    policy: Policy,
) -> reqwest::Result<Client> {
    let mut builder = Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("campaignd/", env!("CARGO_PKG_VERSION")));
    if !policy.allow_private {
        builder = builder.dns_resolver(Arc::new(Resolver { policy }));
    }
    builder.build()
}

/// A connection's way out: its limiter in front of the shared client, and its current
/// credentials.
#[derive(Clone)]
pub struct Gate {
    client: Client,
    limiter: Arc<ConnLimiter>,
    session: Arc<Session>,
    /// The run's token: once it is cancelled, requests still waiting for their turn at the
    /// limiter are not sent at all (those already sent finish).
    stop: tokio_util::sync::CancellationToken,
    /// Where requests may go; checked before each is sent.
    policy: Policy,
    /// The connection's counters.
    meter: Meter,
    /// Whose requests these are, for their turns at the limiter.
    turn: super::turns::Turn,
    /// Until when this node may send to the connection.
    fence: Arc<Fence>,
    /// The limiter of the application the connection speaks for, when the marketplace counts
    /// its limits per application as well (MercadoLibre's client id), shared by every
    /// connection of that application; a request waits for room in both.
    application: Option<Arc<ConnLimiter>>,
    /// A dry run's gate: the protocol's requests (`Endpoint::exchange`) are recorded here
    /// instead of sent; what leaves is what a plan must ask without effect (`Endpoint::call`:
    /// the account's model, MercadoLibre's validation).
    plan: Option<Arc<Recorder>>,
}

/// Who sends through a gate: the run, for its turns at the limiter, and the node, with until
/// when it may send to the connection.
pub struct Caller {
    pub turn: super::turns::Turn,
    pub fence: Arc<Fence>,
}

/// Until when a node may send to a connection: a little before its lease may pass to another
/// node. Unset, nothing is fenced (a registry no supervisor leases for, in benchmarks).
#[derive(Debug, Default)]
pub struct Fence(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Fence {
    pub fn set(&self, until: tokio::time::Instant) {
        // A plain value: a panic elsewhere cannot leave it inconsistent.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    fn open(&self) -> bool {
        let until = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        until.is_none_or(|u| tokio::time::Instant::now() < u)
    }
}

/// A connection's metrics: where its requests are counted.
#[derive(Clone)]
pub struct Meter {
    pub metrics: Arc<metrics::Metrics>,
    pub labels: metrics::ConnLabels,
    /// The account's windows, shown beside what was sent in them.
    pub limit: domain::RateLimit,
}

impl Meter {
    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn failed(&self, message: String) {
        self.metrics.failed(&self.labels, message, Meter::now_ms());
    }

    fn paused(&self, wait: std::time::Duration) {
        let until =
            Meter::now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        self.metrics.paused(&self.labels, until);
    }

    fn answered(&self, status: &str) {
        self.metrics
            .requests
            .get_or_create(&metrics::RequestLabels {
                system: self.labels.system.clone(),
                connection: self.labels.connection.clone(),
                status: status.to_string(),
            })
            .inc();
    }
}

impl Gate {
    pub fn new(
        client: Client,
        limiter: Arc<ConnLimiter>,
        session: Arc<Session>,
        stop: tokio_util::sync::CancellationToken,
        policy: Policy,
        meter: Meter,
        caller: Caller,
    ) -> Gate {
        Gate {
            client,
            limiter,
            session,
            stop,
            policy,
            meter,
            turn: caller.turn,
            fence: caller.fence,
            application: None,
            plan: None,
        }
    }

    /// The same gate for a dry run: requests are recorded in `recorder`, not sent.
    pub fn planning(self, recorder: Arc<Recorder>) -> Gate {
        Gate {
            plan: Some(recorder),
            ..self
        }
    }

    /// Where a dry run's gate records, if this is one.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.plan.as_ref()
    }

    /// The same gate, whose requests also wait for room in the application's limiter.
    pub fn sharing(self, application: Option<Arc<ConnLimiter>>) -> Gate {
        Gate {
            application,
            ..self
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Sends one request under the connection's limits and reads its whole body. A 429 pauses
    /// the whole connection (for `Retry-After` when given), and so does whatever `hold_of`
    /// reads in the answer's headers (a ban, a spent quota).
    pub async fn send(
        &self,
        request: RequestBuilder,
        hold_of: HoldFn,
    ) -> Result<Reply, MarketError> {
        self.send_costing(request, hold_of, 0.0).await
    }

    /// As `send`, for a request that costs `cost` points of the connection's cost bucket
    /// (Shopify's GraphQL): it waits until that many are free.
    pub async fn send_costing(
        &self,
        request: RequestBuilder,
        hold_of: HoldFn,
        cost: f64,
    ) -> Result<Reply, MarketError> {
        self.send_signed(request, hold_of, cost, &|_| {}).await
    }

    /// As `send_costing`, with `sign` applied to the request as it leaves, after its wait for
    /// the limiter (a signature that carries a time, such as OAuth 1.0a's, is then as fresh as
    /// can be).
    pub async fn send_signed(
        &self,
        request: RequestBuilder,
        hold_of: HoldFn,
        cost: f64,
        sign: &(dyn Fn(&mut reqwest::Request) + Send + Sync),
    ) -> Result<Reply, MarketError> {
        let waited = std::time::Instant::now();
        // The connection's room first, then the application's: always in this order, so two
        // connections of one application never wait for each other's.
        let admitted = async {
            let permit = self.limiter.acquire_costing(self.turn, cost).await;
            let shared = match &self.application {
                Some(application) => Some(application.acquire(self.turn).await),
                None => None,
            };
            (permit, shared)
        };
        let (permit, shared) = tokio::select! {
            admitted = admitted => admitted,
            _ = self.stop.cancelled() => {
                return Err(MarketError::Transient(
                    "not sent: the run was stopped while the request waited for its turn".to_string(),
                ))
            }
        };
        let application = self.application.as_deref().zip(shared.as_ref());
        self.meter
            .metrics
            .limiter_wait
            .get_or_create(&self.meter.labels)
            .inc_by(waited.elapsed().as_secs_f64());
        let mut request = request
            .build()
            .map_err(|e| MarketError::Local(format!("could not build the request: {e}")))?;
        sign(&mut request);
        // Checked at send time, with the name resolved now: an address refused since the
        // connection was stored is refused here.
        if let Err(why) = check_resolved(request.url(), self.policy).await {
            return Err(MarketError::Refused(why));
        }
        // The last moment before it leaves: a node that could not renew its lease in time
        // sends nothing more, since another node may take the connection soon.
        if !self.fence.open() {
            return Err(MarketError::Transient(
                "not sent: this node's lease on the connection was not renewed in time".to_string(),
            ));
        }
        let in_flight = self
            .meter
            .metrics
            .in_flight
            .get_or_create(&self.meter.labels)
            .clone();
        in_flight.inc();
        self.meter.metrics.sent(
            &self.meter.labels,
            self.meter.limit.per_second,
            self.meter.limit.per_minute,
        );
        let sent = self.limiter.sending(permit.seq);
        if let Some((limiter, admission)) = application {
            limiter.sending(admission.seq);
        }
        let sent_at = std::time::Instant::now();
        let response = self.client.execute(request).await;
        if response.is_ok() {
            self.limiter.round_trip(sent_at.elapsed());
            if let Some((limiter, _)) = application {
                limiter.round_trip(sent_at.elapsed());
            }
            self.meter
                .metrics
                .limiter_margin
                .get_or_create(&self.meter.labels)
                .set(self.limiter.margin().as_secs_f64());
        }
        in_flight.dec();
        let response: Response = response.map_err(|e| {
            self.meter.answered("error");
            let error = transport_error(e);
            self.meter.failed(error.to_string());
            error
        })?;
        let status = response.status();
        self.meter.answered(status.as_str());
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.meter
                .metrics
                .throttled
                .get_or_create(&self.meter.labels)
                .inc();
        }
        // A connection's health shows what is wrong with the connection, not with a product:
        // a refusal of one product (400, 404, 422) is that product's failure, shown with it,
        // and a look-up that finds nothing is no failure at all.
        if connection_trouble(status) {
            self.meter.failed(format!("HTTP {status}"));
        }
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("elsewhere")
                .to_string();
            return Err(MarketError::Refused(format!(
                "the marketplace answered {status}, a redirect to {to}, which the service never follows"
            )));
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport_error)?;
        self.limiter.answered();
        if let Some((limiter, _)) = application {
            limiter.answered();
        }
        // The quota as the marketplace counts it, before this request's place is given back
        // (the first request's answer lets the others go).
        let quota = hold_of(&headers, &body);
        self.learn(&quota, status, &headers, sent, &permit, application);
        drop(permit);
        drop(shared);
        Ok(Reply {
            status,
            headers,
            body,
            held: quota.hold,
        })
    }
}

impl Gate {
    /// What one answer teaches the limiters: the points and windows the marketplace reports
    /// (`quota`), a 429's pause for the whole application, or an admission that passed.
    fn learn(
        &self,
        quota: &Quota,
        status: StatusCode,
        headers: &HeaderMap,
        sent: tokio::time::Instant,
        permit: &super::limiter::Admission<'_>,
        application: Option<(&ConnLimiter, &super::limiter::Admission<'_>)>,
    ) {
        if let Some(points) = quota.points {
            self.limiter.points_reported(points, permit);
        }
        for (kind, window) in [
            (super::limiter::WindowKind::Second, quota.second),
            (super::limiter::WindowKind::Minute, quota.minute),
        ] {
            if let Some(w) = window {
                self.limiter.reported(kind, w.limit, w.remaining, sent);
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // The whole application waits: its quota is what ran out.
            self.limiter.throttled(retry_after(headers));
            if let Some((limiter, _)) = application {
                limiter.throttled(retry_after(headers));
            }
            if let Some(until) = self.limiter.paused_until() {
                self.meter
                    .paused(until.saturating_duration_since(tokio::time::Instant::now()));
            }
        } else {
            self.limiter.admitted();
            if let Some((limiter, _)) = application {
                limiter.admitted();
            }
        }
        if let Some(hold) = quota.hold {
            self.limiter.pause_until(tokio::time::Instant::now() + hold);
            self.meter.paused(hold);
        }
    }
}

/// What a marketplace's answer says of the account's quota: a reason to hold the connection
/// (and for how long), what is left in each window by the marketplace's own count, and its
/// cost bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quota {
    pub hold: Option<Duration>,
    /// Each window's limit as the marketplace states it, and what it says is left.
    pub second: Option<Window>,
    pub minute: Option<Window>,
    pub points: Option<super::limiter::Points>,
}

/// One window of the account as the marketplace reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The window's limit, when the marketplace states it.
    pub limit: Option<u32>,
    pub remaining: u32,
}

/// Reads a marketplace's quota from an answer's headers and body.
pub type HoldFn = fn(&HeaderMap, &[u8]) -> Quota;

/// For marketplaces whose answers say nothing of their quota.
pub fn no_quota(_: &HeaderMap, _: &[u8]) -> Quota {
    Quota::default()
}

/// What a marketplace answered.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How long the answer said to hold the connection (a ban), when it said so.
    pub held: Option<Duration>,
}

impl Reply {
    /// The error a non-success answer stands for. An answer that holds the connection (a
    /// rate-limit ban, which Jumpseller may answer 403) is a failure that passes once the hold
    /// ends, whatever its status: the limiter waits it out, so the retry goes after it.
    pub fn error(&self, message_of: fn(&[u8]) -> Option<String>) -> MarketError {
        match self.held {
            Some(hold) if !self.status.is_success() => MarketError::Transient(format!(
                "HTTP {}: the marketplace holds the connection for {} s (a rate-limit ban)",
                self.status.as_u16(),
                hold.as_secs()
            )),
            _ => classify(self.status, &self.body, message_of),
        }
    }
}

/// `Retry-After` in seconds (the form marketplaces use; an HTTP date is read as no value).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// A request that failed on the way: one that could not connect never left; any other may have
/// reached the store, which may still be carrying it out.
fn transport_error(e: reqwest::Error) -> MarketError {
    if e.is_connect() {
        MarketError::Transient("could not connect to the marketplace".to_string())
    } else if e.is_timeout() {
        MarketError::Unanswered("the marketplace did not answer in time".to_string())
    } else {
        MarketError::Unanswered(format!("the connection to the marketplace failed: {e}"))
    }
}

/// What a non-success status is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    /// The account's credentials: 401, 403.
    Auth,
    /// A failure that may pass: 408, 429, 500, 503, and 5xx a gateway did not send.
    Passing,
    /// A gateway gave up on the store (502 Bad Gateway, 504 Gateway Timeout): the store behind
    /// it may still carry the request out (RFC 9110, 15.6.3 and 15.6.5).
    Gateway,
    /// The request itself, mostly one product: any other.
    Request,
}

fn class_of(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        401 | 403 => StatusClass::Auth,
        502 | 504 => StatusClass::Gateway,
        408 | 429 | 500..=599 => StatusClass::Passing,
        _ => StatusClass::Request,
    }
}

/// Whether an answer's status says something about the connection (its credentials, its
/// limits, the marketplace's health, a redirect it must not follow) rather than one product.
fn connection_trouble(status: StatusCode) -> bool {
    status.is_redirection()
        || ((status.is_client_error() || status.is_server_error())
            && class_of(status) != StatusClass::Request)
}

/// Maps a non-success status to the error its class calls for, with the marketplace's own
/// message (extracted by `message_of`, or the body's text) so the user can read it.
pub fn classify(
    status: StatusCode,
    body: &[u8],
    message_of: fn(&[u8]) -> Option<String>,
) -> MarketError {
    let message = message_of(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text.chars().take(500).collect()
        }
    });
    let code = status.as_u16();
    match class_of(status) {
        StatusClass::Auth => MarketError::Auth {
            status: code,
            message,
        },
        StatusClass::Passing => MarketError::Transient(format!("HTTP {code}: {message}")),
        StatusClass::Gateway => MarketError::Unanswered(format!("HTTP {code}: {message}")),
        StatusClass::Request => MarketError::Rejected {
            status: code,
            message,
        },
    }
}

/// How an endpoint authenticates its requests.
pub enum Auth {
    /// HTTP Basic (Jumpseller's `login:authtoken`, WooCommerce's `ck_:cs_`).
    Basic { user: String, password: String },
    /// A fixed header (Shopify's `X-Shopify-Access-Token`).
    Header { name: &'static str, value: String },
    /// A signature of each request as it leaves (WooCommerce's OAuth 1.0a over plain HTTP).
    Signed(Signer),
    /// An OAuth 2 bearer token from the connection's session (MercadoLibre). A 401 refreshes
    /// the token once (`refresh`) and sends the request once more.
    Bearer {
        token_of: fn(&Credentials) -> Option<String>,
        refresh: Arc<dyn Refresh>,
    },
}

/// Signs a request as it leaves (its URL, method and time are final then).
pub type Signer = Arc<dyn Fn(&mut reqwest::Request) + Send + Sync>;

/// Obtains new credentials for a session whose access token was refused.
#[async_trait::async_trait]
pub trait Refresh: Send + Sync {
    async fn refresh(&self, gate: &Gate, current: Credentials) -> Result<Credentials, MarketError>;
}

/// A marketplace API under a base URL, reached through a connection's gate.
pub struct Endpoint {
    base: String,
    auth: Auth,
    gate: Gate,
    /// Extracts the marketplace's own error message from an error body.
    message_of: fn(&[u8]) -> Option<String>,
    /// Reads the marketplace's quota headers.
    hold_of: HoldFn,
}

impl Endpoint {
    pub fn new(
        base_url: &str,
        auth: Auth,
        gate: Gate,
        message_of: fn(&[u8]) -> Option<String>,
        hold_of: HoldFn,
    ) -> Endpoint {
        Endpoint {
            base: base_url.trim_end_matches('/').to_string(),
            auth,
            gate,
            message_of,
            hold_of,
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let request = self.gate.client().request(method, self.url(path));
        match &self.auth {
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Header { name, value } => request.header(*name, value),
            Auth::Bearer { .. } | Auth::Signed(_) => request,
        }
    }

    /// Sends a request costing `cost` points of the connection's bucket (with the session's
    /// bearer token, refreshed once on a 401).
    async fn send(&self, request: RequestBuilder, cost: f64) -> Result<Reply, MarketError> {
        let (token_of, refresh) = match &self.auth {
            Auth::Bearer { token_of, refresh } => (token_of, refresh),
            Auth::Signed(sign) => {
                return self
                    .gate
                    .send_signed(request, self.hold_of, cost, sign.as_ref())
                    .await
            }
            Auth::Basic { .. } | Auth::Header { .. } => {
                return self.gate.send_costing(request, self.hold_of, cost).await
            }
        };
        let session = self.gate.session();
        let used = session.current().await;
        let again = request.try_clone();
        let token = token_of(&used).unwrap_or_default();
        let reply = self
            .gate
            .send_costing(request.bearer_auth(token), self.hold_of, cost)
            .await?;
        let (StatusCode::UNAUTHORIZED, Some(again)) = (reply.status, again) else {
            return Ok(reply);
        };
        let fresh = session
            .refresh(&used, |current| refresh.refresh(&self.gate, current))
            .await?;
        let token = token_of(&fresh).unwrap_or_default();
        self.gate
            .send_costing(again.bearer_auth(token), self.hold_of, cost)
            .await
    }

    /// Sends a request; a non-success status gives the classified error and the raw body.
    pub async fn call_raw<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<Result<T, (MarketError, Bytes)>, MarketError> {
        self.call_raw_costing(request, 0.0).await
    }

    async fn call_raw_costing<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
        cost: f64,
    ) -> Result<Result<T, (MarketError, Bytes)>, MarketError> {
        let reply = self.send(request, cost).await?;
        if reply.status.is_success() {
            return parse(&reply.body).map(Ok);
        }
        let error = reply.error(self.message_of);
        Ok(Err((error, reply.body)))
    }

    /// Sends a request that costs `cost` points of the connection's cost bucket and parses a
    /// success body as `T`.
    pub async fn call_costing<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
        cost: f64,
    ) -> Result<T, MarketError> {
        self.call_raw_costing(request, cost)
            .await?
            .map_err(|(e, _)| e)
    }

    /// Sends a request and parses a success body as `T`, with the answer's headers (a page's
    /// count of pages, say).
    pub async fn call_with_headers<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<(T, HeaderMap), MarketError> {
        self.call_costing_with_headers(request, 0.0).await
    }

    /// As `call_with_headers`, for a request that costs `cost` points of the bucket.
    pub async fn call_costing_with_headers<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
        cost: f64,
    ) -> Result<(T, HeaderMap), MarketError> {
        let reply = self.send(request, cost).await?;
        if !reply.status.is_success() {
            return Err(reply.error(self.message_of));
        }
        Ok((parse(&reply.body)?, reply.headers))
    }

    /// Sends a request whose success answer has nothing to read (a 204, say).
    pub async fn call_ignoring(&self, request: RequestBuilder) -> Result<(), MarketError> {
        let reply = self.send(request, 0.0).await?;
        if reply.status.is_success() {
            return Ok(());
        }
        Err(reply.error(self.message_of))
    }

    /// A protocol's request, which does `operation` to the product: on a dry run's gate it is
    /// recorded (with the `cost` it asks for) and answered as planned, by `None`; elsewhere it
    /// is given back to be sent.
    fn planned(
        &self,
        operation: Operation,
        request: RequestBuilder,
        cost: f64,
    ) -> Result<Option<RequestBuilder>, MarketError> {
        let Some(recorder) = self.gate.recorder() else {
            return Ok(Some(request));
        };
        let built = request
            .build()
            .map_err(|e| MarketError::Local(e.to_string()))?;
        let base = reqwest::Url::parse(&self.base)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        // Paths are shown as the adapter wrote them (a planned `{new}`, not `%7Bnew%7D`).
        let path = percent_encoding::percent_decode_str(built.url().path()).decode_utf8_lossy();
        let path = path
            .strip_prefix(base.as_str())
            .unwrap_or(&path)
            .to_string();
        let body: Option<serde_json::Value> = built
            .body()
            .and_then(|b| b.as_bytes())
            .and_then(|b| serde_json::from_slice(b).ok());
        let method = match *built.method() {
            reqwest::Method::GET => "GET",
            reqwest::Method::POST => "POST",
            reqwest::Method::PUT => "PUT",
            reqwest::Method::PATCH => "PATCH",
            reqwest::Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        let mut planned = Request::new(method, path);
        if planned.path.ends_with("graphql.json") {
            planned.graphql = body.as_ref().map(super::plan::graphql_name);
            planned.cost = Some(cost);
        }
        planned.body = body;
        recorder.record(operation, planned);
        Ok(None)
    }

    /// A protocol's request, which does `operation` to the product: sent, and its success
    /// body parsed as `T`; on a dry run's gate, recorded and answered `T::default()` (what a
    /// create makes has the id `plan::NEW`).
    pub async fn exchange<T: serde::de::DeserializeOwned + Default>(
        &self,
        operation: Operation,
        request: RequestBuilder,
    ) -> Result<T, MarketError> {
        match self.planned(operation, request, 0.0)? {
            Some(request) => self.call(request).await,
            None => Ok(T::default()),
        }
    }

    /// As `exchange_costing`, answered `planned` in a plan (an update's answer names what it
    /// updated).
    pub async fn exchange_planned<T: serde::de::DeserializeOwned>(
        &self,
        operation: Operation,
        request: RequestBuilder,
        cost: f64,
        planned: T,
    ) -> Result<T, MarketError> {
        match self.planned(operation, request, cost)? {
            Some(request) => self.call_costing(request, cost).await,
            None => Ok(planned),
        }
    }

    /// As `exchange_planned`, with the answer's raw refusal (see `call_raw`).
    pub async fn exchange_raw<T: serde::de::DeserializeOwned>(
        &self,
        operation: Operation,
        request: RequestBuilder,
        planned: T,
    ) -> Result<Result<T, (MarketError, Bytes)>, MarketError> {
        match self.planned(operation, request, 0.0)? {
            Some(request) => self.call_raw(request).await,
            None => Ok(Ok(planned)),
        }
    }

    /// As `exchange`, for a request costing `cost` points of the connection's bucket.
    pub async fn exchange_costing<T: serde::de::DeserializeOwned + Default>(
        &self,
        operation: Operation,
        request: RequestBuilder,
        cost: f64,
    ) -> Result<T, MarketError> {
        match self.planned(operation, request, cost)? {
            Some(request) => self.call_costing(request, cost).await,
            None => Ok(T::default()),
        }
    }

    /// As `exchange_planned`, with the answer's headers (none in a plan).
    pub async fn exchange_with_headers<T: serde::de::DeserializeOwned>(
        &self,
        operation: Operation,
        request: RequestBuilder,
        cost: f64,
        planned: T,
    ) -> Result<(T, HeaderMap), MarketError> {
        match self.planned(operation, request, cost)? {
            Some(request) => self.call_costing_with_headers(request, cost).await,
            None => Ok((planned, HeaderMap::new())),
        }
    }

    /// As `exchange`, for an answer with nothing to read.
    pub async fn exchange_ignoring(
        &self,
        operation: Operation,
        request: RequestBuilder,
    ) -> Result<(), MarketError> {
        match self.planned(operation, request, 0.0)? {
            Some(request) => self.call_ignoring(request).await,
            None => Ok(()),
        }
    }

    /// Sends a request and parses a success body as `T`.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, MarketError> {
        self.call_raw(request).await?.map_err(|(e, _)| e)
    }
}

/// Parses a success body as JSON of the expected shape.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MarketError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            MarketError::Garbled(e.to_string())
        } else {
            MarketError::Protocol(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(_: &[u8]) -> Option<String> {
        None
    }

    #[test]
    fn statuses_map_to_what_the_caller_should_do() {
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, b"", msg),
            MarketError::Auth { status: 401, .. }
        ));
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, b"", msg).is_retriable());
        assert!(classify(StatusCode::BAD_GATEWAY, b"", msg).is_retriable());
        let e = classify(StatusCode::UNPROCESSABLE_ENTITY, b"Name is too long", msg);
        assert!(!e.is_retriable());
        assert_eq!(e.to_string(), "Name is too long");
    }

    /// Which failures leave a request that the store may still carry out: only a gateway's
    /// giving up; a refusal or the store's own error answer ends the request there.
    #[test]
    fn only_a_gateways_502_or_504_may_still_land_among_the_statuses() {
        let table = [
            (408, false),
            (429, false),
            (500, false),
            (502, true),
            (503, false),
            (504, true),
            (422, false),
        ];
        for (status, late) in table {
            let status = StatusCode::from_u16(status).expect("a status");
            let e = classify(status, b"", msg);
            assert_eq!(e.may_land_late(), late, "{status}");
        }
    }

    /// Jumpseller may answer a rate-limit ban 403: with the ban's reset it is a wait, without
    /// it the credentials were refused.
    #[test]
    fn a_refusal_that_holds_the_connection_is_waited_out_not_taken_for_refused_credentials() {
        let reply = |status, held| Reply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"message": "Banned by rate limit"}"#),
            held,
        };
        let banned = reply(StatusCode::FORBIDDEN, Some(Duration::from_secs(60))).error(msg);
        assert!(
            banned.is_retriable() && !banned.stops_connection(),
            "{banned:?}"
        );
        let refused = reply(StatusCode::FORBIDDEN, None).error(msg);
        assert!(
            refused.stops_connection() && !refused.is_retriable(),
            "{refused:?}"
        );
        let throttled = reply(StatusCode::TOO_MANY_REQUESTS, None).error(msg);
        assert!(throttled.is_retriable());
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
