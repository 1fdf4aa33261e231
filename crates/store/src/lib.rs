//! The store: the traits every backend implements, split by concern, and the one place a backend
//! is chosen. `SledStore` is the embedded default (one process, one data directory); `PgStore`
//! keeps the same records on a PostgreSQL server that several nodes share. Everything above this
//! module holds an `Arc<dyn Store>` and never names a backend.
//!
//! Filters are data (`CpFilter`, key ranges), never closures, so that a backend can run them
//! where the rows are. What must be atomic has one method of its own: a product upload
//! (`upsert_products`, unique per tenant and SKU) and the end of a run (`finish_run`).
//!
//! # Layout
//! - `sled` and `pg`: the two backends; `codec`: every record's versioned encoding.
//! - `secrets`: the key that seals credentials at rest; `config`: the `[store]` and `[secrets]`
//!   settings.
//! - `pg_server`: a private PostgreSQL server for tests (feature `test-support`); `contract`:
//!   the behaviours every backend shows, run on both.

pub mod codec;
pub mod config;
#[cfg(test)]
mod contract;
pub mod pg;
#[cfg(any(test, feature = "test-support"))]
pub mod pg_server;
pub mod secrets;
pub mod sled;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{StoreBackend, StoreConfig};
use domain::{
    ApiToken, Campaign, CampaignProduct, Connection, Delivery, Id, Lease, Lock, Node, Notification,
    Product, ProductStatus, Schedule, Tenant, Tracker, TrackerPatch, Webhook, WorkItem,
};

pub use self::pg::PgStore;
pub use self::sled::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] ::sled::Error),
    #[error("database error: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not encode a {kind}: {source}")]
    Encode {
        kind: &'static str,
        source: postcard::Error,
    },
    #[error("a stored {kind} could not be read: {source}")]
    Decode {
        kind: &'static str,
        source: postcard::Error,
    },
    #[error("no {kind} {id} in the store")]
    Missing { kind: &'static str, id: Id },
    #[error("a stored {kind} has an unknown format version {found:?}")]
    Version {
        kind: &'static str,
        found: Option<u8>,
    },
    #[error("the store is misconfigured: {0}")]
    Config(String),
    #[error("backup: {0}")]
    Backup(String),
    #[error("a stored {kind}'s secret cannot be read: {source}")]
    Secret {
        kind: &'static str,
        source: crate::secrets::SecretError,
    },
}

impl StoreError {
    /// Whether the failure is the database being out of reach (a restart, a network cut),
    /// which passes, rather than something wrong with the data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Postgres(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    // Class 57 (operator intervention: admin shutdown, crash shutdown, cannot
                    // connect now) and class 08 (connection exceptions).
                    .is_some_and(|c| c.starts_with("57") || c.starts_with("08"))
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A page of records and the total count behind it.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Which campaign products a listing wants.
#[derive(Debug, Default, Clone)]
pub struct CpFilter {
    pub status: Option<ProductStatus>,
    pub connection_id: Option<Id>,
    /// Only these products (sorted), as a SKU search found them.
    pub product_ids: Option<Vec<Id>>,
}

impl CpFilter {
    /// Whether a campaign product passes the filter's product list.
    pub fn takes_product(&self, product: Id) -> bool {
        self.product_ids
            .as_ref()
            .is_none_or(|ids| ids.binary_search(&product).is_ok())
    }
}

/// A product upload's outcome: every product with its id, and how many were new.
#[derive(Debug)]
pub struct Upserted {
    pub products: Vec<Product>,
    pub created: u64,
}

/// Ids, one sequence per kind of record.
#[async_trait]
pub trait Ids: Send + Sync {
    /// Allocates `n` consecutive ids of one kind, starting at 1 for the first.
    async fn next_ids(&self, kind: &'static str, n: u64) -> Result<Range<Id>>;

    async fn next_id(&self, kind: &'static str) -> Result<Id> {
        Ok(self.next_ids(kind, 1).await?.start)
    }
}

/// Tenants and their API tokens (kept as SHA-256 hashes).
#[async_trait]
pub trait Tenants: Send + Sync {
    /// The tenant of that name, created if it does not exist yet.
    async fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant>;
    async fn tenant(&self, id: Id) -> Result<Option<Tenant>>;
    /// Every tenant, by id.
    async fn tenants(&self) -> Result<Vec<Tenant>>;
    async fn put_token(&self, sha256: &[u8; 32], token: &ApiToken) -> Result<()>;
    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<ApiToken>>;
    /// Tokens with their hashes: a tenant's, or every tenant's.
    async fn tokens(&self, tenant: Option<Id>) -> Result<Vec<([u8; 32], ApiToken)>>;
    async fn remove_token(&self, sha256: &[u8; 32]) -> Result<()>;
}

/// A tenant's marketplace connections and products.
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn put_connection(&self, c: &Connection) -> Result<()>;
    async fn connection(&self, tenant: Id, id: Id) -> Result<Option<Connection>>;
    async fn connections(&self, tenant: Id) -> Result<Vec<Connection>>;

    async fn product(&self, tenant: Id, id: Id) -> Result<Option<Product>>;
    async fn product_id_by_sku(&self, tenant: Id, sku: &str) -> Result<Option<Id>>;
    /// The ids (sorted) of the tenant's products whose SKU contains `text`, ignoring case;
    /// `None` when more than `most` do.
    async fn product_ids_with_sku_containing(
        &self,
        tenant: Id,
        text: &str,
        most: usize,
    ) -> Result<Option<Vec<Id>>>;
    async fn products_page(&self, tenant: Id, offset: u64, limit: u64) -> Result<Page<Product>>;
    /// Writes a tenant's products as one atomic upload: a SKU the tenant has keeps its product
    /// id and is updated, a new SKU gets a new id. Two uploads of one new SKU at once make one
    /// product. The `id` of each given product is ignored.
    async fn upsert_products(&self, tenant: Id, products: Vec<Product>) -> Result<Upserted>;

    /// Reads every connection and webhook (failing on a secret these keys cannot open) and,
    /// with `write`, writes again each whose secret is in the clear (written before secrets
    /// were sealed) or sealed under an older key; answers how many need it (or got it). Run at
    /// every start (the migration) and by `secrets rotate`.
    async fn reseal(&self, write: bool) -> Result<u64>;
}

/// Campaigns and their products.
#[async_trait]
pub trait Campaigns: Send + Sync {
    async fn put_campaign(&self, c: &Campaign) -> Result<()>;
    async fn campaign(&self, tenant: Id, id: Id) -> Result<Option<Campaign>>;
    async fn campaigns(&self, tenant: Id) -> Result<Vec<Campaign>>;

    /// A campaign's dates and the steps its scheduler took.
    async fn schedule(&self, campaign: Id) -> Result<Option<Schedule>>;
    /// Writes a schedule read at `s.version` (0: none was stored) as version `s.version + 1`,
    /// unless another write came in between: answers false then, writing nothing. Every change
    /// of a schedule goes through this check, so a step recorded by one node is never lost
    /// to, or taken again by, another.
    async fn put_schedule(&self, s: &Schedule) -> Result<bool>;
    /// The schedules with a step due at `now` or before, soonest first.
    async fn due_schedules(&self, now: i64) -> Result<Vec<Schedule>>;

    async fn put_campaign_product(&self, cp: &CampaignProduct) -> Result<()>;
    async fn put_campaign_products(&self, cps: &[CampaignProduct]) -> Result<()>;
    async fn campaign_product(
        &self,
        campaign: Id,
        connection: Id,
        product: Id,
    ) -> Result<Option<CampaignProduct>>;
    async fn remove_campaign_product(
        &self,
        campaign: Id,
        connection: Id,
        product: Id,
    ) -> Result<()>;
    /// Up to `limit` products of a campaign after the (connection, product) key `after`, in
    /// key order: the keyset scan every walk over a campaign pages with.
    async fn campaign_products_from(
        &self,
        campaign: Id,
        after: Option<(Id, Id)>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>>;
    /// Up to `limit` products of one connection in a campaign with product id above `after`:
    /// the chunks workers stream their work from.
    async fn campaign_products_after(
        &self,
        campaign: Id,
        connection: Id,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>>;
    async fn campaign_products_page(
        &self,
        campaign: Id,
        filter: &CpFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<CampaignProduct>>;
}

/// Campaign locks and trackers: what a running action holds and reports.
#[async_trait]
pub trait Runs: Send + Sync {
    async fn lock(&self, campaign: Id) -> Result<Option<Lock>>;
    async fn all_locks(&self) -> Result<Vec<Lock>>;
    async fn put_lock(&self, lock: &Lock) -> Result<()>;
    async fn remove_lock(&self, campaign: Id) -> Result<()>;
    /// Moves a lock's expiry, if the lock is still held by `tracker`; answers whether it was.
    async fn renew_lock(&self, campaign: Id, tracker: Id, expires_at: i64) -> Result<bool>;

    async fn put_tracker(&self, t: &Tracker) -> Result<()>;
    async fn tracker(&self, id: Id) -> Result<Option<Tracker>>;
    /// A campaign's trackers, newest first.
    async fn campaign_trackers(&self, campaign: Id) -> Result<Vec<Tracker>>;
    /// Writes a run's final tracker, the campaign's new status, the release of its lock (if the
    /// run still holds it), the removal of its work items, the tenant's notification and its
    /// webhook delivery in one transaction, so no reader sees a completed tracker on a campaign
    /// that is still locked, and no run ends unannounced. Only an active tracker ends: answers
    /// false, writing nothing, when another node ended it first.
    async fn finish_run(
        &self,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        notification: Option<&Notification>,
        delivery: Option<(Id, &Delivery)>,
    ) -> Result<bool>;
}

/// Notifications, webhooks and the outbox of webhook deliveries.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// A tenant's notifications, newest first.
    async fn notifications(&self, tenant: Id) -> Result<Vec<Notification>>;
    async fn put_notification(&self, n: &Notification) -> Result<()>;
    async fn notification(&self, tenant: Id, id: Id) -> Result<Option<Notification>>;

    async fn webhook(&self, tenant: Id) -> Result<Option<Webhook>>;
    async fn put_webhook(&self, tenant: Id, w: &Webhook) -> Result<()>;
    async fn remove_webhook(&self, tenant: Id) -> Result<()>;

    /// Every delivery waiting in the outbox, with its number, oldest first.
    async fn outbox(&self) -> Result<Vec<(Id, Delivery)>>;
    async fn put_delivery(&self, id: Id, d: &Delivery) -> Result<()>;
    async fn remove_delivery(&self, id: Id) -> Result<()>;
}

/// A wake-up or a live event that crosses processes sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Work items changed (a run started, was asked to stop, or a node let go of its
    /// connections): nodes look at them again.
    Work,
    /// Node `origin` wrote a tracker of `tenant`.
    Tracker { origin: String, tenant: Id, id: Id },
    /// Node `origin` wrote a notification of `tenant`.
    Notification { origin: String, tenant: Id, id: Id },
}

impl Signal {
    /// The wire form, for PostgreSQL's NOTIFY.
    pub fn encode(&self) -> String {
        match self {
            Signal::Work => "w".to_string(),
            Signal::Tracker { origin, tenant, id } => format!("t {tenant} {id} {origin}"),
            Signal::Notification { origin, tenant, id } => format!("n {tenant} {id} {origin}"),
        }
    }

    pub fn decode(s: &str) -> Option<Signal> {
        let mut parts = s.splitn(4, ' ');
        let kind = parts.next()?;
        if kind == "w" {
            return Some(Signal::Work);
        }
        let tenant = parts.next()?.parse().ok()?;
        let id = parts.next()?.parse().ok()?;
        let origin = parts.next()?.to_string();
        match kind {
            "t" => Some(Signal::Tracker { origin, tenant, id }),
            "n" => Some(Signal::Notification { origin, tenant, id }),
            _ => None,
        }
    }
}

/// What nodes sharing a store need to divide the work: runs' work items, nodes' heartbeats,
/// connection leases, tracker patches and signals.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Whether other processes may share this store at the same time (PostgreSQL); with sled,
    /// every lease and lock found at start-up was left by a process that stopped.
    fn shared(&self) -> bool;

    /// Opens a run in one transaction: its lock, its tracker, one open work item per
    /// connection of the tracker, the campaign's new status if given, and the campaign's
    /// schedule with the step that started it (checked as `put_schedule` does). The campaign
    /// must hold no lock but `replacing`'s (a run just taken over). Answers false, writing
    /// nothing, when another start came first: the lock is someone else's, or the schedule
    /// moved on.
    async fn start_run(
        &self,
        lock: &Lock,
        replacing: Option<Id>,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        schedule: Option<&Schedule>,
    ) -> Result<bool>;
    /// Adds work items (runs written before work items existed).
    async fn put_work(&self, items: &[WorkItem]) -> Result<()>;
    /// A run's work items.
    async fn work(&self, tracker: Id) -> Result<Vec<WorkItem>>;
    /// Every work item not done yet, of every run.
    async fn open_work(&self) -> Result<Vec<WorkItem>>;
    /// Takes up an open item: counts the attempt and answers the item as it was before, or
    /// `None` when it is done or gone.
    async fn claim_work(&self, tracker: Id, connection: Id) -> Result<Option<WorkItem>>;
    /// Asks every open item of a run to stop, with the reason (the first reason stays), and
    /// logs `stopping: reason` on its tracker.
    async fn cancel_run(&self, tracker: Id, reason: &str, now: i64) -> Result<()>;
    /// Marks an item done (with the run's failure, if this part failed it) and answers all of
    /// the run's items as they are then. Ends of one run's items are serialized, so exactly one
    /// caller sees them all done.
    async fn end_work(
        &self,
        tracker: Id,
        connection: Id,
        failure: Option<String>,
    ) -> Result<Vec<WorkItem>>;
    /// Applies a node's patch to an active tracker, atomically; answers the tracker written.
    async fn patch_tracker(&self, id: Id, patch: &TrackerPatch) -> Result<Option<Tracker>>;

    async fn heartbeat(&self, node: &Node) -> Result<()>;
    /// How many nodes' heartbeats have not expired at `now`.
    async fn live_nodes(&self, now: i64) -> Result<usize>;
    /// Takes a connection's lease if it is free, expired, or already `lease.owner`'s; answers
    /// `None` when another owner holds it, else the lease it replaced (released or expired
    /// ones stay until taken again, so the next holder knows who sent to the connection
    /// last, and until when).
    async fn acquire_lease(&self, lease: &Lease, now: i64) -> Result<Option<Option<Lease>>>;
    /// Moves the expiry of `owner`'s leases on these connections; answers those it still held.
    async fn renew_leases(
        &self,
        owner: &str,
        connections: &[Id],
        expires_at: i64,
    ) -> Result<Vec<Id>>;
    /// Lets go of `owner`'s leases on these connections (all of them when `None`): they expire
    /// `now`, so anyone may take them.
    async fn release_leases(&self, owner: &str, connections: Option<&[Id]>, now: i64)
        -> Result<()>;

    /// Sends a signal to every process sharing the store (this one included).
    async fn signal(&self, signal: Signal) -> Result<()>;
    /// The signals sent from now on.
    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal>;
}

/// Durability: what was written so far survives a crash once `flush` returns.
#[async_trait]
pub trait Durable: Send + Sync {
    async fn flush(&self) -> Result<()>;
    /// The store's size: sled's files on disk, or the PostgreSQL database's size.
    async fn size_bytes(&self) -> Result<u64>;
    /// Writes a consistent copy of every record into `dir` (which must be empty or absent):
    /// one file per tree or table and a `manifest.json`.
    async fn backup(&self, dir: &std::path::Path) -> Result<Backup>;
    /// Reads a copy written by `backup` of the same backend into this store, which must hold no
    /// tenant yet.
    async fn restore(&self, dir: &std::path::Path) -> Result<Backup>;
}

/// What a backup holds: its backend and the records of each tree or table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backup {
    pub backend: String,
    pub created_at: String,
    pub tables: std::collections::BTreeMap<String, u64>,
}

impl Backup {
    /// Prepares `dir` for a new backup: created if absent, refused if it holds anything.
    pub fn prepare(dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backup(format!("{}: {e}", dir.display())))?;
        let used = std::fs::read_dir(dir)
            .map_err(|e| StoreError::Backup(format!("{}: {e}", dir.display())))?
            .next()
            .is_some();
        if used {
            return Err(StoreError::Backup(format!(
                "{} is not empty; a backup goes into a new directory",
                dir.display()
            )));
        }
        Ok(())
    }

    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| StoreError::Backup(format!("manifest: {e}")))?;
        std::fs::write(dir.join("manifest.json"), text)
            .map_err(|e| StoreError::Backup(format!("manifest: {e}")))
    }

    /// The manifest of a backup, checked to be of `backend`.
    pub fn read(dir: &std::path::Path, backend: &str) -> Result<Backup> {
        let text = std::fs::read(dir.join("manifest.json"))
            .map_err(|e| StoreError::Backup(format!("{}/manifest.json: {e}", dir.display())))?;
        let manifest: Backup = serde_json::from_slice(&text)
            .map_err(|e| StoreError::Backup(format!("manifest.json: {e}")))?;
        if manifest.backend != backend {
            return Err(StoreError::Backup(format!(
                "this is a {} backup; it restores into a {} store only",
                manifest.backend, manifest.backend
            )));
        }
        Ok(manifest)
    }

    /// A backup's file of one tree or table, named so that no name can leave `dir`.
    pub fn file(dir: &std::path::Path, table: &str) -> Result<std::path::PathBuf> {
        let safe = !table.is_empty()
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !safe {
            return Err(StoreError::Backup(format!("bad table name {table:?}")));
        }
        Ok(dir.join(format!("{table}.bin")))
    }
}

/// Every concern of the store in one handle.
pub trait Store: Ids + Tenants + Catalog + Campaigns + Runs + Outbox + Cluster + Durable {}

impl<T: Ids + Tenants + Catalog + Campaigns + Runs + Outbox + Cluster + Durable> Store for T {}

/// The store handle the service passes around.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured backend: sled in `data_dir`, or the PostgreSQL database at `url`
/// (running its migrations first).
pub fn open(config: &StoreConfig, keys: Arc<crate::secrets::Keys>) -> Result<SharedStore> {
    match config.backend {
        StoreBackend::Sled => {
            let store = SledStore::open(&config.data_dir, config.cache_mb << 20, keys)?;
            // The data directory is the owner's alone.
            crate::secrets::restrict(&config.data_dir).map_err(|e| {
                StoreError::Config(format!(
                    "could not restrict {} to its owner: {e}",
                    config.data_dir.display()
                ))
            })?;
            Ok(Arc::new(store))
        }
        StoreBackend::Postgres => {
            let url = config.url.as_deref().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
                StoreError::Config(
                    "store.backend is postgres but store.url is empty (set CAMPAIGND_STORE__URL=postgres://…)"
                        .to_string(),
                )
            })?;
            Ok(Arc::new(PgStore::open(url, config.pool_size, keys)?))
        }
    }
}

/// Where the store is, for messages: the data directory, or the database without its password.
pub fn place(config: &StoreConfig) -> String {
    match config.backend {
        StoreBackend::Sled => format!("sled in {}", config.data_dir.display()),
        StoreBackend::Postgres => {
            let url = config.url.as_deref().unwrap_or_default();
            match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    format!("postgres at {u}")
                }
                Err(_) => "postgres at an invalid url".to_string(),
            }
        }
    }
}

/// Calls `f` on every product of a campaign, in (connection, product) order, reading the
/// store a page at a time.
pub async fn for_each_campaign_product(
    store: &dyn Store,
    campaign: Id,
    mut f: impl FnMut(CampaignProduct),
) -> Result<()> {
    const PAGE: usize = 1000;
    let mut after = None;
    loop {
        let rows = store.campaign_products_from(campaign, after, PAGE).await?;
        let full = rows.len() == PAGE;
        after = rows.last().map(|cp| (cp.connection_id, cp.product_id));
        rows.into_iter().for_each(&mut f);
        if !full {
            return Ok(());
        }
    }
}

/// How a store call that waited out the database's absence ended without an answer.
#[derive(Debug)]
pub enum Patience {
    /// The work was asked to stop while the store was out of reach.
    Stopped,
    /// The store answered with an error that waiting does not cure.
    Failed(StoreError),
}

impl std::fmt::Display for Patience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Patience::Stopped => f.write_str("stopped while the store was out of reach"),
            Patience::Failed(e) => e.fmt(f),
        }
    }
}

/// Runs a store call, waiting out the database's absence (a restart, a network cut): an
/// unavailable store is asked again, every 50 ms doubling to 2 s, until it answers or `stop`
/// is cancelled. Nothing is failed for the database being away.
pub async fn patiently<T, Fut>(
    stop: &tokio_util::sync::CancellationToken,
    mut op: impl FnMut() -> Fut,
) -> std::result::Result<T, Patience>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = std::time::Duration::from_millis(50);
    let mut warned = false;
    loop {
        match op().await {
            Ok(v) => {
                if warned {
                    tracing::info!("the store answers again");
                }
                return Ok(v);
            }
            Err(e) if e.is_unavailable() => {
                if stop.is_cancelled() {
                    return Err(Patience::Stopped);
                }
                if !warned {
                    tracing::warn!(error = %e, "the store is out of reach; waiting for it");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(Patience::Failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_cross_the_wire_unchanged_and_garbage_is_dropped() {
        let signals = [
            Signal::Work,
            Signal::Tracker {
                origin: "host-1-2 with spaces".into(),
                tenant: 3,
                id: 9,
            },
            Signal::Notification {
                origin: "n".into(),
                tenant: 1,
                id: 2,
            },
        ];
        for s in signals {
            assert_eq!(Signal::decode(&s.encode()), Some(s.clone()), "{s:?}");
        }
        for garbage in ["", "x", "t 1", "t a 2 n", "n 1 2"] {
            assert_eq!(Signal::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn only_a_database_out_of_reach_counts_as_unavailable() {
        assert!(StoreError::Postgres(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::Postgres(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )))
        .is_unavailable());
        assert!(!StoreError::Postgres(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Config("x".into()).is_unavailable());
    }
}
