//! Starting and stopping the whole service, in mini-redis's shape: `build(options)` opens and
//! checks everything the service is made of (store, secrets, clients, registry) and `run(listener,
//! shutdown)` runs it on the calling thread until `shutdown` resolves. `App::start` does both on
//! a thread of its own with an already-bound listener (tests bind port 0, `serve` binds the
//! configured address); `App::shutdown` stops it, after which the data directory can be opened
//! again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use tokio::sync::oneshot;

use crate::config::Config;
use api::admin;
use api::{self, ApiState};
use domain::clock::{Clock, SystemClock};
use engine::events::Hub;
use engine::notifier::Notifier;
use engine::scheduler::Scheduler;
use engine::supervisor::{Supervisor, SuspendAll};
use engine::tracker::TrackerActor;
use engine::{Deps, WorkerThreads};
use marketplaces::{http, AdapterFactory, HttpAdapters, Registry};
use net::egress::{Policy, Purpose};
use store::secrets;
use store::{self, SharedStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("could not open the store ({place}): {source}")]
    Store { place: String, source: StoreError },
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Admin(#[from] StoreError),
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
}

/// Opens the configured store with the secrets key (`secrets::load`), after checking that every
/// sealed secret in it opens with that key; a new key file is written only then, and secrets
/// still in the clear (an older version's records) are sealed.
pub fn open_store(config: &Config) -> Result<SharedStore, AppError> {
    let store_error = |source| AppError::Store {
        place: store::place(&config.store),
        source,
    };
    let (keys, origin) = secrets::load(&config.secrets, &config.store.data_dir)?;
    let keys = Arc::new(keys);
    let store = store::open(&config.store, Arc::clone(&keys)).map_err(store_error)?;
    let key_error = |source| {
        AppError::Key(match &origin {
            secrets::Origin::New(path) => format!(
                "the store holds sealed credentials but the key file {} does not exist: \
                 restore it, or give the key in CAMPAIGND_SECRETS__KEY ({source})",
                path.display()
            ),
            secrets::Origin::File(path) => format!(
                "the key in {} does not open the store's credentials: {source}",
                path.display()
            ),
            secrets::Origin::Config => {
                format!("CAMPAIGND_SECRETS__KEY does not open the store's credentials: {source}")
            }
        })
    };
    let reseal = |write: bool| match futures::executor::block_on(store.reseal(write)) {
        Ok(n) => Ok(n),
        Err(StoreError::Secret { source, .. }) => Err(key_error(source)),
        Err(e) => Err(store_error(e)),
    };
    if let secrets::Origin::New(path) = &origin {
        // A new key is written only once nothing stored was sealed under another one.
        reseal(false)?;
        secrets::write_key_file(path, &keys)?;
        tracing::info!(key_file = %path.display(), "created a secrets key file; back it up apart from the data");
    }
    // With a known key this one pass both checks and seals: it writes only under that key.
    let sealed = reseal(true)?;
    if sealed > 0 {
        tracing::info!(
            records = sealed,
            "sealed secrets that were stored in the clear or under an older key"
        );
    }
    Ok(store)
}

/// What a rotation of the secrets key did.
#[derive(Debug)]
pub struct Rotated {
    /// Records sealed again under the new key.
    pub resealed: u64,
    /// The new key's id.
    pub key_id: String,
    /// Where the new key is: the key file, or (key given in the configuration) the key itself,
    /// to be put in CAMPAIGND_SECRETS__KEY.
    pub new_key: Option<zeroize::Zeroizing<String>>,
}

/// Seals every secret of a stopped service's store under a new key. With a key file: the new
/// key is written beside it (`KEY_FILE.new`) first, the store is sealed again while both keys
/// read, then the new file replaces the old one; a rotation cut short is finished by running it
/// again (both keys are read meanwhile). With the key in the configuration, the new key is
/// answered for the operator to set, the old one staying readable as `secrets.old_key`.
pub fn rotate_secrets(config: &Config) -> Result<Rotated, AppError> {
    let store_error = |source| AppError::Store {
        place: store::place(&config.store),
        source,
    };
    let (old, origin) = secrets::load(&config.secrets, &config.store.data_dir)?;
    let path = match &origin {
        secrets::Origin::New(path) => {
            return Err(AppError::Key(format!(
                "there is no key to rotate: {} does not exist",
                path.display()
            )))
        }
        secrets::Origin::File(path) => Some(path.clone()),
        secrets::Origin::Config => None,
    };
    let new = match &path {
        Some(path) => {
            let pending = secrets::pending_file(path);
            if !pending.exists() {
                secrets::write_key_file(&pending, &secrets::Keys::generate())?;
            }
            let (pending_keys, _) = secrets::load(
                &crate::config::SecretsConfig {
                    key_file: pending,
                    ..Default::default()
                },
                &config.store.data_dir,
            )?;
            pending_keys
        }
        None => secrets::Keys::generate(),
    };
    let new_key = path.is_none().then(|| new.encoded());
    let key_id = new.id();
    let keys = Arc::new(new.reading(old));
    let store = store::open(&config.store, keys).map_err(store_error)?;
    let resealed = futures::executor::block_on(store.reseal(true)).map_err(store_error)?;
    futures::executor::block_on(store.flush()).map_err(store_error)?;
    drop(store);
    if let Some(path) = &path {
        std::fs::rename(secrets::pending_file(path), path).map_err(|source| {
            secrets::SecretError::Io {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(Rotated {
        resealed,
        key_id,
        new_key,
    })
}

/// What to start the service with; tests and benchmarks replace the adapters or the clock.
pub struct AppOptions {
    pub config: Config,
    pub adapters: Arc<dyn AdapterFactory>,
    pub clock: Arc<dyn Clock>,
}

impl AppOptions {
    pub fn new(config: Config) -> AppOptions {
        AppOptions {
            config,
            adapters: Arc::new(HttpAdapters),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The service, built and not yet running (mini-redis's shape: `build`, then `run`): its store
/// opened and its secrets checked, its HTTP clients and the marketplaces' registry made, its node
/// named. Everything that can refuse to start has been tried; nothing runs and nothing listens.
pub struct Service {
    config: Config,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    metrics: Arc<metrics::Metrics>,
    registry: Arc<Registry>,
    webhook_client: reqwest::Client,
    webhooks: Policy,
    instance: String,
}

/// Builds the service from its options.
pub fn build(options: AppOptions) -> Result<Service, AppError> {
    let AppOptions {
        config,
        adapters,
        clock,
    } = options;
    let store = open_store(&config)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let marketplaces = Policy::of(&config.egress, Purpose::Marketplaces);
    let webhooks = Policy::of(&config.egress, Purpose::Webhooks);
    let connect_timeout = Duration::from_secs(config.http.connect_timeout_secs);
    let client = http::client(
        Duration::from_secs(config.http.timeout_secs),
        connect_timeout,
        marketplaces,
    )?;
    let webhook_client = http::client(
        Duration::from_secs(config.webhooks.timeout_secs.max(1)),
        connect_timeout,
        webhooks,
    )?;
    let token_store = store.clone();
    let registry = Arc::new(
        Registry::new(client, marketplaces, adapters)
            .with_margin_floor(Duration::from_millis(config.runs.limiter_margin_ms))
            .measured(Arc::clone(&metrics))
            .saving_credentials(Arc::new(move |tenant, connection, credentials| {
                let store = Arc::clone(&token_store);
                Box::pin(async move {
                    save_credentials(store.as_ref(), tenant, connection, credentials)
                        .await
                        .map_err(|e| e.to_string())
                })
            })),
    );
    let instance = node_name(&config.cluster, store.shared(), clock.now_ms());
    Ok(Service {
        config,
        store,
        clock,
        metrics,
        registry,
        webhook_client,
        webhooks,
        instance,
    })
}

/// The actors of one running service, and the hub they publish live events to.
struct Actors {
    hub: Arc<Hub>,
    supervisor: actix::Addr<Supervisor>,
}

impl Service {
    /// Runs the service on `listener` until `shutdown` resolves, on the calling thread: the
    /// actors in an actix System here and on worker threads, the API on threads of its own.
    /// Then no new action starts, the runs' calls in flight finish within the grace period and
    /// their progress is written (their locks stay, so the next start resumes them), the API
    /// stops, and the store is flushed. When this returns, every thread it started has ended
    /// and the data directory can be opened again.
    pub fn run(
        self,
        listener: std::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + 'static,
    ) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let system = actix::System::new();
        let api_runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.clamp(1, 4))
            .thread_name("campaignd-api")
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(%error, "could not start the API's threads");
                return;
            }
        };
        let arbiters: Vec<actix::Arbiter> = (0..threads).map(|_| actix::Arbiter::new()).collect();
        let api = api_runtime.handle().clone();
        let workers = WorkerThreads::new(arbiters.iter().map(actix::Arbiter::handle).collect());
        system.block_on(self.serve(listener, api, workers, shutdown));
        api_runtime.shutdown_timeout(Duration::from_secs(5));
        // Workers hold store handles: their threads must end before the data directory can be
        // opened again.
        for arbiter in arbiters {
            arbiter.stop();
            if arbiter.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }

    /// Inside the actix System: starts the actors and the API, waits for `shutdown`, stops.
    async fn serve(
        self,
        listener: std::net::TcpListener,
        api: tokio::runtime::Handle,
        workers: WorkerThreads,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let grace = self.config.runs.shutdown_grace();
        let deps = Deps {
            store: self.store.clone(),
            registry: Arc::clone(&self.registry),
            clock: Arc::clone(&self.clock),
            runs: self.config.runs.clone(),
            cluster: self.config.cluster.clone(),
            instance: self.instance.clone(),
            worker_threads: Arc::new(workers),
            metrics: Arc::clone(&self.metrics),
        };
        let actors = self.start_actors(&deps, &api);
        let state = ApiState {
            store: deps.store.clone(),
            supervisor: actors.supervisor.clone(),
            clock: Arc::clone(&deps.clock),
            runs: deps.runs.clone(),
            body_limit: self.config.server.body_limit_bytes,
            egress: self.config.egress.clone(),
            revocations: tokio::sync::broadcast::channel(64).0,
            limits: Arc::new(api::ClientLimits::new(
                &self.config.server,
                Arc::clone(&deps.metrics),
            )),
            hub: actors.hub,
            closing: tokio_util::sync::CancellationToken::new(),
            sockets: tokio_util::task::TaskTracker::new(),
        };
        let closing = state.closing.clone();
        let (api_stop, api_stopped) = oneshot::channel::<()>();
        // The API, WebSockets included, has threads of its own, so that fanning progress out to
        // many subscribers never waits on the actors' thread.
        let served = api.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(error) => {
                    tracing::error!(%error, "could not listen");
                    return;
                }
            };
            api::serve(listener, state, async move {
                let _ = api_stopped.await;
                // Live streams end first, or the server would wait for them.
                closing.cancel();
            })
            .await;
        });
        shutdown.await;
        match actors.supervisor.send(SuspendAll { grace }).await {
            Ok(n) => tracing::info!(suspended_runs = n, "runs suspended"),
            Err(error) => tracing::error!(%error, "could not suspend the runs"),
        }
        let _ = api_stop.send(());
        if served.await.is_err() {
            tracing::error!("the API server panicked");
        }
        if let Err(error) = deps.store.flush().await {
            tracing::error!(%error, "could not flush the store at shutdown");
        }
    }

    /// Starts the tracker, the notifier, the supervisor and the scheduler, and (on the API's
    /// threads) the relay of other nodes' events and the store's measurement.
    fn start_actors(&self, deps: &Deps, api: &tokio::runtime::Handle) -> Actors {
        let flush_every = Duration::from_millis(deps.runs.progress_flush_ms.max(10));
        let hub = Arc::new(Hub::new(self.config.events.buffer));
        let outbox = Arc::new(tokio::sync::Notify::new());
        let tracker = TrackerActor::new(
            deps.store.clone(),
            Arc::clone(&deps.clock),
            flush_every,
            Arc::clone(&hub),
            Arc::clone(&outbox),
            deps.instance.clone(),
            api::answers::webhook_body,
        )
        .measured(Arc::clone(&deps.metrics))
        .start();
        actix::spawn(
            Notifier {
                store: deps.store.clone(),
                clock: Arc::clone(&deps.clock),
                config: self.config.webhooks.clone(),
                client: self.webhook_client.clone(),
                policy: self.webhooks,
                metrics: Arc::clone(&deps.metrics),
                wake: outbox,
            }
            .run(),
        );
        if deps.store.shared() {
            api.spawn(relay(
                Arc::clone(&deps.store),
                Arc::clone(&hub),
                deps.instance.clone(),
            ));
        }
        api.spawn(measure_store(
            Arc::clone(&deps.store),
            Arc::clone(&deps.metrics),
        ));
        let supervisor = Supervisor::new(deps.clone(), tracker.clone()).start();
        Scheduler::new(deps.clone(), supervisor.clone(), tracker).start();
        Actors { hub, supervisor }
    }
}

/// A running service.
pub struct App {
    pub addr: SocketAddr,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl App {
    /// Builds the service and runs it on `listener` on a thread of its own, until `shutdown`.
    pub fn start(options: AppOptions, listener: std::net::TcpListener) -> Result<App, AppError> {
        let service = build(options)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let store = service.store.clone();
        let clock = Arc::clone(&service.clock);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("campaignd".to_string())
            .spawn(move || {
                service.run(listener, async move {
                    let _ = stopped.await;
                })
            })?;
        tracing::info!(%addr, "campaignd listening");
        Ok(App {
            addr,
            store,
            clock,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a token for the tenant (created if needed) and returns it; only its hash is kept.
    pub fn create_token(&self, tenant: &str) -> Result<String, AppError> {
        // The store's futures are driven by its own threads (or are ready at once), so
        // waiting on them here needs no runtime.
        Ok(futures::executor::block_on(admin::create_token(
            self.store.as_ref(),
            tenant,
            self.clock.now_ms(),
        ))?)
    }

    /// Makes `token` a valid token of the tenant.
    pub fn add_token(&self, tenant: &str, token: &str) -> Result<(), AppError> {
        Ok(futures::executor::block_on(admin::add_token(
            self.store.as_ref(),
            tenant,
            token,
            self.clock.now_ms(),
        ))?)
    }

    /// Stops the server and the actors, flushes the store and waits for all of it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the service thread panicked");
            }
        }
    }
}

/// The signals that stop the service (SIGINT, SIGTERM) and reopen its log file (SIGHUP),
/// listened for from the moment this is made: make it before telling anyone the service runs,
/// so that no early signal meets the default action.
pub struct StopSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Must run inside a tokio runtime.
    pub fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(hup)) => Some((term, hup)),
                _ => {
                    tracing::warn!(
                        "cannot listen for SIGTERM or SIGHUP; only Ctrl-C stops the service"
                    );
                    None
                }
            };
            StopSignals { unix }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves when the process is asked to stop; a SIGHUP meanwhile reopens the log file
    /// (after a rotation) and stops nothing.
    pub async fn stopped(self) {
        #[cfg(unix)]
        if let Some((mut term, mut hup)) = self.unix {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return,
                    _ = term.recv() => return,
                    _ = hup.recv() => crate::logs::reopen(),
                }
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when the process is asked to stop (see `StopSignals`).
pub async fn stop_requested() {
    StopSignals::listen().stopped().await
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Stores a connection's refreshed credentials at once and durably: MercadoLibre's old refresh
/// token is spent, so losing the new one would cut the connection off.
async fn save_credentials(
    store: &dyn Store,
    tenant: domain::Id,
    connection: domain::Id,
    credentials: domain::Credentials,
) -> Result<(), StoreError> {
    if let Some(mut c) = store.connection(tenant, connection).await? {
        c.credentials = credentials;
        store.put_connection(&c).await?;
        store.flush().await?;
    }
    Ok(())
}

/// Carries the other nodes' tracker and notification writes to this node's subscribers: each
/// signal is followed by a read, so what is published is at least as new as what was
/// signalled, and numbered after any snapshot read before it.
async fn relay(store: SharedStore, hub: Arc<Hub>, me: String) {
    use engine::events::Payload;
    use store::Signal;
    let mut signals = store.signals();
    loop {
        let signal = match signals.recv().await {
            Ok(s) => s,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "live events of other nodes were missed");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        match signal {
            Signal::Tracker { origin, tenant, id } if origin != me => {
                match store.tracker(id).await {
                    Ok(Some(t)) => hub.publish(tenant, Payload::Tracker(Arc::new(t))),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(tracker_id = id, %error, "could not relay"),
                }
            }
            Signal::Notification { origin, tenant, id } if origin != me => {
                match store.notification(tenant, id).await {
                    Ok(Some(n)) => hub.publish(tenant, Payload::Notification(Arc::new(n))),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(notification_id = id, %error, "could not relay"),
                }
            }
            _ => {}
        }
    }
}

/// This node's name: the configured one, else `local` for a store only this process opens
/// (its leases, found at start-up, are then its own), else host, process and start time.
fn node_name(cluster: &crate::config::ClusterConfig, shared: bool, now: i64) -> String {
    if !cluster.node_id.trim().is_empty() {
        return cluster.node_id.trim().to_string();
    }
    if !shared {
        return "local".to_string();
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{}-{now}", std::process::id())
}

/// Keeps the store's size in the metrics, read every 5 s (a database query on PostgreSQL, a
/// walk of the files on sled).
async fn measure_store(store: SharedStore, metrics: Arc<metrics::Metrics>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        match store.size_bytes().await {
            Ok(n) => {
                metrics
                    .store_bytes
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(error) => tracing::debug!(%error, "could not read the store's size"),
        }
    }
}
