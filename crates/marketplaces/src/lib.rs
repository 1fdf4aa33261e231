//! Marketplaces: the `Marketplace` trait every adapter implements (the seed's proposed
//! MarketplaceInterface), the error model of a marketplace call, and the registry that hands out
//! one adapter and one rate limiter per connection. Only this module builds HTTP clients.
//!
//! # Layout
//! - One folder per marketplace, holding its connection kind, protocol and simulator:
//!   `jumpseller`, `mercadolibre`, `shopify`, `woocommerce`; `noop` answers without a store.
//! - `kind`: the registry of connection kinds; `http`: the gate every request goes through;
//!   `session`: credentials that refresh; `retry`: retries of what may pass.
//! - `plan`: dry runs' recorder and planned answers; `listed`: look-ups of what a store already
//!   lists; `gather`: reads gathered into one request; `settle`: windows after unanswered writes.
//! - `sim`: the simulators' shared machinery, naming each folder's simulator.

pub mod gather;
pub use net::{limiter, turns};
pub mod http;
pub mod jumpseller;
pub mod kind;
pub mod listed;
pub mod mercadolibre;
pub mod noop;
pub mod plan;
pub mod retry;
pub mod session;
pub mod settle;
pub mod shopify;
pub mod sim;
pub mod woocommerce;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use domain::{Action, Connection, Id, MarketplaceInfo, Offer, Phase, Product, RateLimit, System};
pub use http::Gate;
pub use limiter::ConnLimiter;
pub use retry::{with_retries, RetryPolicy};
pub use session::{CredentialSaver, Session};
pub use settle::Settle;

/// Why a marketplace call failed, shaped by what the caller should do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MarketError {
    /// The marketplace refused this product (validation, not found): final for the product.
    #[error("{message}")]
    Rejected { status: u16, message: String },
    /// The account's credentials were refused: nothing more can be done on this connection.
    #[error("the marketplace refused the credentials ({status}): {message}")]
    Auth { status: u16, message: String },
    /// A failure that may pass, where the request was refused or never left: 408, 429, 500,
    /// 503, a connection that could not be made, a ban, a request stopped before it was sent.
    #[error("{0}")]
    Transient(String),
    /// A request that left without an answer to tell its end: a timeout, a connection cut
    /// while the request or its answer was under way, a gateway's 502 or 504 (the store behind
    /// it may still be working). The store may carry it out later, so nothing is written to
    /// the product again before its settle window has passed (`apply_once`).
    #[error("{0}")]
    Unanswered(String),
    /// The marketplace answered something we cannot understand.
    #[error("unexpected answer from the marketplace: {0}")]
    Protocol(String),
    /// A success answer whose body could not be read (cut short, not JSON): the call may well
    /// have taken effect, so it counts as an outcome unknown and is tried again.
    #[error("the marketplace's answer could not be read: {0}")]
    Garbled(String),
    /// Our own side failed (saving progress).
    #[error("{0}")]
    Local(String),
    /// The egress policy refused where the request would go (a private address, a redirect):
    /// nothing more can be sent on this connection until the operator or the tenant acts.
    #[error("refused by the egress policy: {0}")]
    Refused(String),
    /// Progress could not be saved because the store was out of reach when the work was asked
    /// to stop: nothing is decided for the product, whoever carries on reconciles it.
    #[error("stopped while the store was out of reach")]
    Held,
}

impl MarketError {
    /// Whether the same call may succeed if sent again later.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            MarketError::Transient(_) | MarketError::Unanswered(_) | MarketError::Garbled(_)
        )
    }

    /// Whether the request may still be carried out by the store after this failure.
    pub fn may_land_late(&self) -> bool {
        matches!(self, MarketError::Unanswered(_))
    }

    /// Whether the whole connection must stop, not only this product.
    pub fn stops_connection(&self) -> bool {
        matches!(self, MarketError::Auth { .. } | MarketError::Refused(_))
    }
}

/// What `apply` answers for a drift check or a reconcile, which workers carry out with
/// `drift` and with the ordinary calls of `drift::repairs` instead.
pub static READS_ONLY: std::sync::LazyLock<MarketError> = std::sync::LazyLock::new(|| {
    MarketError::Local(
        "a drift check or a reconcile is carried out by calls of its own; it is not applied"
            .to_string(),
    )
});

/// Saves a product's remote ids; adapters call it right after every call that produced one,
/// and wait for it before going on.
pub type Checkpoint<'a> = &'a (dyn Fn(&MarketplaceInfo) -> futures::future::BoxFuture<'static, Result<(), MarketError>>
         + Send
         + Sync);

/// One product in one phase of one action.
pub struct PhaseCall<'a> {
    pub action: Action,
    pub phase: Phase,
    pub product: &'a Product,
    /// The prices to send: the product's own, or a campaign price with the regular price
    /// beside it (each adapter expresses a sale as its marketplace does).
    pub offer: Offer,
    /// A republish where only the prices changed since the product was last sent: adapters
    /// send the price fields alone.
    pub prices_only: bool,
    pub info: &'a mut MarketplaceInfo,
    pub checkpoint: Checkpoint<'a>,
}

/// The prices of one phase call, as the adapters send them: the offer, whether only prices
/// changed since the product was last sent, and whether a sale was shown then (so that its end
/// takes the compare-at price away).
#[derive(Debug, Clone, Copy)]
pub struct Sale {
    pub offer: Offer,
    pub prices_only: bool,
    pub was_on_sale: bool,
}

impl Sale {
    pub fn of(offer: Offer, prices_only: bool, info: &MarketplaceInfo) -> Sale {
        Sale {
            offer,
            prices_only,
            was_on_sale: info.sent.is_some_and(|s| s.on_sale),
        }
    }

    /// The price of the product (`None`) or of a variant, and its compare-at price to send:
    /// `Some(Some(regular))` during a sale, `Some(None)` to clear a sale shown before, `None`
    /// to leave the field out.
    pub fn shown(&self, v: Option<&domain::Variant>) -> (f64, Option<Option<f64>>) {
        let (amount, compare) = match v {
            Some(v) => self.offer.variant(v),
            None => (self.offer.price, self.offer.compare_at),
        };
        let compare = match compare {
            Some(c) => Some(Some(c)),
            None if self.was_on_sale => Some(None),
            None => None,
        };
        (amount, compare)
    }
}

/// A marketplace account, as the workers see it.
#[async_trait]
pub trait Marketplace: Send + Sync {
    /// Carries out one phase of an action for one product, keeping `info` up to date and saving
    /// it through the checkpoint after every remote effect. Before calling it with
    /// `info.create_sent` set, callers must `reconcile` (see `apply_once`).
    async fn apply(&self, call: PhaseCall<'_>) -> Result<(), MarketError>;

    /// After a create of unknown outcome, before `action` goes on: finds what the marketplace
    /// has of this product (by SKU, or by its remote id) and adopts its ids. `apply_once`, its
    /// caller, then clears `create_sent`: only it and `create_once` do.
    async fn reconcile(
        &self,
        action: Action,
        product: &Product,
        info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError>;

    /// Whether the store itself refuses a second product of one SKU, even one whose create
    /// lands late (WooCommerce: "the SKU must be unique", answered `product_invalid_sku` with
    /// the holder's id, which is adopted): a create of unknown outcome is then sent again at
    /// once, with no settle window, since whichever lands second is refused.
    fn creates_are_idempotent(&self) -> bool {
        false
    }

    /// Whether `find_listed` asks the store anything: the worker reads a chunk's new products
    /// for it only then (WooCommerce, whose refusal of a held SKU names the holder, does not).
    fn finds_listed(&self) -> bool {
        false
    }

    /// Which of `products`, about to be created, the store already lists (by SKU): their
    /// remote ids by product id, asked in the fewest requests the marketplace's API allows.
    async fn find_listed(
        &self,
        _products: &[&Product],
    ) -> Result<HashMap<domain::Id, String>, MarketError> {
        Ok(HashMap::new())
    }

    /// Before a plan: reads, without effect, what the plan must know of the account
    /// (MercadoLibre: whether the seller lists on the User Products model). A plan made
    /// without it is the account's older model's.
    async fn prepare_plan(&self) -> Result<(), MarketError> {
        Ok(())
    }

    /// For a dry run that validates: what the marketplace itself finds wrong with what this
    /// action would send, asked without effect (MercadoLibre's `POST /items/validate`);
    /// marketplaces without such a check find nothing.
    async fn validate(
        &self,
        _action: Action,
        _product: &Product,
        _offer: Offer,
        _info: &MarketplaceInfo,
    ) -> Result<Vec<plan::Problem>, MarketError> {
        Ok(Vec::new())
    }

    /// For a drift check: how the product on the marketplace, read by its stored ids, differs
    /// from what campaignd left it as (its data, the prices in force, its status). A product
    /// missing under its id is looked up by SKU: found under another id, it is `Adopted`.
    async fn drift(
        &self,
        _product: &Product,
        _offer: Offer,
        _status: domain::ProductStatus,
        _info: &MarketplaceInfo,
    ) -> Result<Vec<domain::drift::Difference>, MarketError> {
        Err(MarketError::Local(
            "this marketplace cannot be checked for drift".to_string(),
        ))
    }

    /// How many products one request can carry (a batch endpoint); workers keep this many
    /// times the connection's `max_in_flight` products in flight.
    fn batch_size(&self) -> usize {
        1
    }

    /// How many products one read carries in a drift check (a multiget); workers keep this
    /// many times the connection's `max_in_flight` products in flight while checking.
    fn read_batch_size(&self) -> usize {
        1
    }

    /// The cost bucket a plan's time counts its requests' points with, for an API that
    /// charges points (`plan::Request::cost`): its size and how many come back a second.
    fn points_bucket(&self) -> Option<(f64, f64)> {
        None
    }
}

/// One phase call with the exactly-once rules in front. An earlier write to the product whose
/// outcome is unknown is waited out first (`Settle`): the store may still carry it out, and a
/// write sent before it lands could be overtaken by it. Then a create whose outcome is unknown
/// is reconciled before anything can be created again. The product is marked before the call
/// leaves, durably, so that after a crash whoever carries on knows to wait; the mark is cleared
/// when the call ends in an answer, and moved to the moment of failure when it ends in none.
pub async fn apply_once(
    marketplace: &dyn Marketplace,
    call: PhaseCall<'_>,
    settle: &Settle,
) -> Result<(), MarketError> {
    // A product not listed yet has nothing under way but its create.
    if !(call.info.product_id.is_none() && marketplace.creates_are_idempotent()) {
        settle.wait(call.info).await?;
    }
    if call.info.create_sent {
        marketplace
            .reconcile(call.action, call.product, call.info)
            .await?;
        call.info.create_outcome_known();
        (call.checkpoint)(call.info).await?;
    }
    call.info.unsettled_at = Some(settle.clock.now_ms());
    (call.checkpoint)(call.info).await?;
    settle.durable().await?;
    let result = marketplace
        .apply(PhaseCall {
            info: &mut *call.info,
            ..call
        })
        .await;
    call.info.unsettled_at = settle.after(&result);
    if result.is_err() {
        (call.checkpoint)(call.info).await?;
    }
    result
}

/// The exactly-once create: `create_sent` is saved before the request leaves, cleared once the
/// new ids are adopted, and cleared on a refusal (nothing was created). A failure of unknown
/// outcome (timeout, 5xx) leaves it set, so the next attempt reconciles before creating.
pub async fn create_once<T>(
    info: &mut MarketplaceInfo,
    checkpoint: Checkpoint<'_>,
    send: impl std::future::Future<Output = Result<T, MarketError>>,
    adopt: impl FnOnce(&mut MarketplaceInfo, T),
) -> Result<(), MarketError> {
    let adopt = |info: &mut MarketplaceInfo, made: T| {
        adopt(info, made);
        Ok(())
    };
    create_once_reading(info, checkpoint, send, adopt).await
}

/// As `create_once`, for an answer whose ids may fail to be read (`adopt` fails): something
/// was made that campaignd cannot name, so `create_sent` stays set and the next attempt looks
/// it up instead of creating it again. The one writer of `create_sent` besides `apply_once`.
pub async fn create_once_reading<T>(
    info: &mut MarketplaceInfo,
    checkpoint: Checkpoint<'_>,
    send: impl std::future::Future<Output = Result<T, MarketError>>,
    adopt: impl FnOnce(&mut MarketplaceInfo, T) -> Result<(), MarketError>,
) -> Result<(), MarketError> {
    // Counted as unanswered until an answer comes: a crash, a timeout or a 5xx leaves it
    // counted, since the store may have made (or may still make) the product.
    info.create_outcome_unknown();
    info.unanswered_creates = info.unanswered_creates.saturating_add(1);
    checkpoint(info).await?;
    let answered = |info: &mut MarketplaceInfo| {
        info.unanswered_creates = info.unanswered_creates.saturating_sub(1);
    };
    match send.await {
        Ok(created) => {
            answered(info);
            if let Err(e) = adopt(info, created) {
                checkpoint(info).await?;
                return Err(e);
            }
        }
        Err(e) => {
            if !e.is_retriable() {
                answered(info);
                info.create_outcome_known();
                checkpoint(info).await?;
            }
            return Err(e);
        }
    }
    info.create_outcome_known();
    checkpoint(info).await
}

/// A node's even share of `rate` among `nodes` (at least one request a window, which is more
/// than a share when an application allows fewer requests than there are nodes).
fn share_of(rate: RateLimit, nodes: usize) -> RateLimit {
    let nodes = nodes.max(1) as u32;
    RateLimit {
        per_second: (rate.per_second / nodes).max(1),
        per_minute: (rate.per_minute / nodes).max(1),
    }
}

/// Builds the adapter of a connection; tests and benchmarks may supply their own.
pub trait AdapterFactory: Send + Sync {
    fn build(&self, connection: &Connection, gate: Gate) -> Arc<dyn Marketplace>;
}

/// The real adapters, speaking each marketplace's HTTP API.
pub struct HttpAdapters;

impl AdapterFactory for HttpAdapters {
    fn build(&self, connection: &Connection, gate: Gate) -> Arc<dyn Marketplace> {
        match connection.system {
            System::Jumpseller => Arc::new(jumpseller::Jumpseller::new(connection, gate)),
            System::Woocommerce => Arc::new(woocommerce::WooCommerce::new(connection, gate)),
            System::Mercadolibre => Arc::new(mercadolibre::MercadoLibre::new(connection, gate)),
            System::Shopify if shopify::uses_graphql(connection) => {
                Arc::new(shopify::graphql::ShopifyGraphql::new(connection, gate))
            }
            System::Shopify => Arc::new(shopify::Shopify::new(connection, gate)),
        }
    }
}

/// Requests an application's limiter lets be under way at once: it bounds the rate alone,
/// each connection bounding its own requests in flight.
const APPLICATION_IN_FLIGHT: u32 = 4096;

/// The connection's `request_gap_ms` setting: a pause after every answer (checked by the API).
pub fn request_gap(connection: &Connection) -> Option<std::time::Duration> {
    connection
        .settings
        .get("request_gap_ms")
        .and_then(|ms| ms.parse().ok())
        .map(std::time::Duration::from_millis)
}

/// One limiter per connection, shared by every run on it, and the adapters built on them.
pub struct Registry {
    client: reqwest::Client,
    policy: net::egress::Policy,
    metrics: Arc<metrics::Metrics>,
    factory: Arc<dyn AdapterFactory>,
    /// Keyed by connection id: two campaigns on one store must share one limiter and one set
    /// of credentials, so entries live as long as the process, not as long as a run.
    shared: Mutex<HashMap<Id, Shared>>,
    /// Connections whose lease this node just took: their credentials are read again, and
    /// when another node held them until a moment ago (this long ago), their limiter counts
    /// the windows as that node may have left them.
    taken_over: Mutex<HashMap<Id, Option<Duration>>>,
    /// Until when this node may send to each connection (its lease, less a third).
    fences: Mutex<HashMap<Id, Arc<http::Fence>>>,
    /// One limiter per marketplace application whose limits count across its connections
    /// (MercadoLibre's client id), beside each connection's own, with the application's
    /// limits; each allows this node's share of them (`share_applications`).
    applications: Mutex<HashMap<String, (Arc<ConnLimiter>, RateLimit)>>,
    /// The live nodes of the cluster sharing every application's limits (1 on an appliance).
    nodes: std::sync::atomic::AtomicUsize,
    /// The least margin of every limiter (`runs.limiter_margin_ms`).
    margin_floor: Duration,
    save: Option<CredentialSaver>,
}

#[derive(Clone)]
struct Shared {
    limiter: Arc<ConnLimiter>,
    session: Arc<Session>,
}

impl Registry {
    pub fn new(
        client: reqwest::Client,
        policy: net::egress::Policy,
        factory: Arc<dyn AdapterFactory>,
    ) -> Registry {
        Registry {
            client,
            policy,
            metrics: Arc::default(),
            factory,
            shared: Mutex::new(HashMap::new()),
            taken_over: Mutex::default(),
            fences: Mutex::default(),
            applications: Mutex::default(),
            nodes: std::sync::atomic::AtomicUsize::new(1),
            margin_floor: limiter::MARGIN,
            save: None,
        }
    }

    /// Counts every connection's requests in `metrics`.
    /// Limiters count each request at least `floor` beyond its window.
    pub fn with_margin_floor(mut self, floor: Duration) -> Registry {
        self.margin_floor = floor;
        self
    }

    pub fn measured(mut self, metrics: Arc<metrics::Metrics>) -> Registry {
        self.metrics = metrics;
        self
    }

    /// Refreshed credentials (MercadoLibre's tokens) are saved with `save`.
    pub fn saving_credentials(mut self, save: CredentialSaver) -> Registry {
        self.save = Some(save);
        self
    }

    fn shared(&self, connection: &Connection) -> Shared {
        let session = || {
            Arc::new(Session::new(
                connection.tenant_id,
                connection.id,
                connection.credentials.clone(),
                self.save.clone(),
            ))
        };
        let taken = self
            .taken_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&connection.id);
        // A poisoned map only means another thread panicked while inserting; the map is
        // still consistent, so keep using it.
        let mut map = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(connection.id).or_insert_with(|| Shared {
            limiter: Arc::new(
                ConnLimiter::with_gap(
                    connection.rate_limit,
                    connection.max_in_flight,
                    request_gap(connection),
                )
                .with_floor(self.margin_floor),
            ),
            session: session(),
        });
        if let Some(another_ended) = taken {
            // The same limiter goes on (requests of this node's earlier runs may still be on
            // their way under it), counting what another holder may have sent; the
            // credentials are read afresh, since that holder may have refreshed them.
            if let Some(ago) = another_ended {
                // Jumpseller's answers tell the minute's count, Shopify's its bucket.
                let minute_reported = matches!(
                    connection.system,
                    domain::System::Jumpseller | domain::System::Shopify
                );
                entry.limiter.assume_windows_full(minute_reported, ago);
            }
            entry.session = session();
        }
        entry.clone()
    }

    /// This node took the connection's lease: the stored credentials are read again on its
    /// next use. When another node held it, until `another_ended` ago, the limiter counts the
    /// windows as full from then (as that node may have left them), so the account sees no
    /// more than its limits across the hand-over; a lease this node held last (or one free for
    /// longer than a minute) costs no wait.
    pub fn take_over(&self, connection_id: Id, another_ended: Option<Duration>) {
        self.taken_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection_id, another_ended);
    }

    fn fence(&self, connection_id: Id) -> Arc<http::Fence> {
        // A poisoned map is still consistent (see `shared`).
        let mut fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(fences.entry(connection_id).or_default())
    }

    /// This node holds the connection's lease: its requests may leave until `until`.
    pub fn send_until(&self, connection_id: Id, until: tokio::time::Instant) {
        self.fence(connection_id).set(until);
    }

    /// The limiter of the application a connection speaks for, when its marketplace counts
    /// limits per application: MercadoLibre's "control principal se aplica por Client ID
    /// (aplicación)" (developers' "Rate limit / Error 429"), so every seller connection of one
    /// client id shares it. It allows what the connection's own limits do (the application's
    /// quota, which the pages do not state, is what the operator gives its connections), and
    /// bounds no requests in flight of its own. The first connection of an application sets
    /// its limits.
    pub fn application(&self, connection: &Connection) -> Option<Arc<ConnLimiter>> {
        let domain::Credentials::Mercadolibre { client_id, .. } = &connection.credentials else {
            return None;
        };
        let key = format!("{}:{client_id}", connection.system.as_str());
        let nodes = self.nodes.load(std::sync::atomic::Ordering::Relaxed);
        // A poisoned map is still consistent (see `shared`).
        let mut map = self.applications.lock().unwrap_or_else(|p| p.into_inner());
        let (limiter, _) = map.entry(key).or_insert_with(|| {
            let share = share_of(connection.rate_limit, nodes);
            let limiter =
                ConnLimiter::new(share, APPLICATION_IN_FLIGHT).with_floor(self.margin_floor);
            (Arc::new(limiter), connection.rate_limit)
        });
        Some(Arc::clone(limiter))
    }

    /// The cluster has `nodes` live nodes: each application's limiter allows this node an
    /// even share of the application's limits, since the application's connections may be
    /// leased to every node at once and MercadoLibre counts them together.
    pub fn share_applications(&self, nodes: usize) {
        let nodes = nodes.max(1);
        let before = self.nodes.swap(nodes, std::sync::atomic::Ordering::Relaxed);
        if before == nodes {
            return;
        }
        let map = self.applications.lock().unwrap_or_else(|p| p.into_inner());
        for (limiter, rate) in map.values() {
            limiter.set_rate(share_of(*rate, nodes));
        }
    }

    pub fn limiter(&self, connection: &Connection) -> Arc<ConnLimiter> {
        self.shared(connection).limiter
    }

    /// The adapter of a connection for one run (`turn` says which, and whether it is urgent):
    /// requests still waiting for their turn when `stop` is cancelled are not sent.
    /// A dry run's adapter of `connection`: its protocol's requests are recorded in
    /// `recorder`, not sent.
    pub fn planning(
        &self,
        connection: &Connection,
        turn: turns::Turn,
        recorder: Arc<plan::Recorder>,
    ) -> Arc<dyn Marketplace> {
        let gate = self
            .gate(connection, tokio_util::sync::CancellationToken::new(), turn)
            .planning(recorder);
        self.factory.build(connection, gate)
    }

    pub fn adapter(
        &self,
        connection: &Connection,
        stop: tokio_util::sync::CancellationToken,
        turn: turns::Turn,
    ) -> Arc<dyn Marketplace> {
        let gate = self.gate(connection, stop, turn);
        self.factory.build(connection, gate)
    }

    fn gate(
        &self,
        connection: &Connection,
        stop: tokio_util::sync::CancellationToken,
        turn: turns::Turn,
    ) -> Gate {
        let shared = self.shared(connection);
        Gate::new(
            self.client.clone(),
            shared.limiter,
            shared.session,
            stop,
            self.policy,
            http::Meter {
                metrics: Arc::clone(&self.metrics),
                labels: metrics::Metrics::conn(connection.system.as_str(), connection.id),
                limit: connection.rate_limit,
            },
            http::Caller {
                turn,
                fence: self.fence(connection.id),
            },
        )
        .sharing(self.application(connection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_allows_an_even_share_of_an_applications_limits_and_never_nothing() {
        let rate = |per_second, per_minute| RateLimit {
            per_second,
            per_minute,
        };
        for (nodes, share) in [
            (0, rate(10, 600)),
            (1, rate(10, 600)),
            (3, rate(3, 200)),
            (20, rate(1, 30)),
        ] {
            assert_eq!(share_of(rate(10, 600), nodes), share, "{nodes} nodes");
        }
    }

    /// What each outcome of an exactly-once create leaves marked: a create the store refused
    /// made nothing; one without an answer, or whose answer cannot be read, may have made
    /// something, which the next attempt looks up; one without an answer stays counted, for
    /// a drift check to look for a copy it made.
    #[tokio::test]
    async fn a_create_stays_marked_unless_it_was_refused_or_its_ids_were_taken() {
        let saved = std::sync::Mutex::new(Vec::new());
        let checkpoint: Checkpoint<'_> = &|info: &MarketplaceInfo| {
            saved.lock().unwrap().push(info.create_sent);
            Box::pin(async { Ok(()) })
        };
        let unreadable = || MarketError::Protocol("a product without an id".into());
        let refused = || MarketError::Rejected {
            status: 422,
            message: "refused".into(),
        };
        let cases: [(Result<&str, MarketError>, bool, bool); 4] = [
            (Ok("7"), true, false),
            (Ok("7"), false, true),
            (Err(MarketError::Transient("timeout".into())), true, true),
            (Err(refused()), true, false),
        ];
        for (answer, readable, marked) in cases {
            let mut info = MarketplaceInfo::default();
            let unanswered = matches!(answer, Err(MarketError::Transient(_)));
            saved.lock().unwrap().clear();
            let outcome = create_once_reading(&mut info, checkpoint, async { answer }, |i, id| {
                i.product_id = readable.then(|| id.to_string());
                i.product_id.as_ref().map(|_| ()).ok_or_else(unreadable)
            })
            .await;
            assert_eq!(info.create_sent, marked, "{outcome:?}");
            assert_eq!(
                info.unanswered_creates,
                u32::from(unanswered),
                "{outcome:?}"
            );
            assert_eq!(
                saved.lock().unwrap().first(),
                Some(&true),
                "marked before it left"
            );
            assert_eq!(
                saved.lock().unwrap().last(),
                Some(&marked),
                "saved as it ends"
            );
        }
    }
}
