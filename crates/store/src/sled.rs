//! The embedded backend: sled trees of tenants, tokens, connections, products, campaigns,
//! campaign products, trackers, locks, notifications, webhooks and the outbox. Every value goes
//! through the versioned envelope in `codec`. Keys are big-endian ids so that scans run in id
//! order and a campaign's products are one contiguous prefix. One process opens a data
//! directory, so what must be atomic across records is a sled transaction or a process lock.

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Tree};

use super::codec::{
    decode, decode_connection, decode_webhook, encode, encode_connection, encode_webhook, Record,
};
use super::{
    Backup, Campaigns, Catalog, Cluster, CpFilter, Durable, Ids, Outbox, Page, Result, Runs,
    Signal, StoreError, Tenants, Upserted,
};
use crate::secrets::Keys;
use domain::{
    ApiToken, Campaign, CampaignProduct, Connection, Delivery, Id, Lease, Lock, Node, Notification,
    Product, Schedule, Tenant, Tracker, TrackerPatch, Webhook, WorkItem,
};

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// Handle to the database; every clone sees the same trees.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    counters: Tree,
    tenants: Tree,
    tenant_names: Tree,
    tokens: Tree,
    connections: Tree,
    products: Tree,
    product_skus: Tree,
    campaigns: Tree,
    campaign_products: Tree,
    trackers: Tree,
    campaign_trackers: Tree,
    locks: Tree,
    /// (tenant, id) → Notification.
    notifications: Tree,
    /// tenant → Webhook.
    webhooks: Tree,
    /// delivery number → Delivery: webhook POSTs not yet accepted by their receiver.
    outbox: Tree,
    /// (tracker, connection) → WorkItem.
    work: Tree,
    /// connection → Lease.
    leases: Tree,
    /// node id → Node.
    nodes: Tree,
    /// campaign → Schedule.
    schedules: Tree,
    /// (next due time, campaign) → nothing: the schedules the scheduler looks at, soonest
    /// first.
    due: Tree,
    /// Held while an upload looks its SKUs up and writes them, so two uploads of one new SKU
    /// cannot both find it missing; only this process opens the data directory.
    uploads: std::sync::Arc<Mutex<()>>,
    /// Held by read-modify-writes of work items, leases and trackers, for the same reason.
    runs: std::sync::Arc<Mutex<()>>,
    /// Signals reach only this process: nothing else opens the store.
    signals: tokio::sync::broadcast::Sender<Signal>,
    /// Seals and opens credentials and webhook secrets.
    keys: std::sync::Arc<Keys>,
    flushes: std::sync::Arc<GroupFlush>,
}

/// Group commit of explicit flushes: a flush asked for after a write is served by any round of
/// flushing that starts after it, so a thousand tasks asking at once cost a round or two, not a
/// thousand (each marketplace write flushes its product's mark first).
#[derive(Default)]
struct GroupFlush {
    /// Rounds started, and the last round finished.
    started: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
    /// One round at a time.
    turn: tokio::sync::Mutex<()>,
}

fn key2(a: Id, b: Id) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

fn key3(a: Id, b: Id, c: Id) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..16].copy_from_slice(&b.to_be_bytes());
    k[16..].copy_from_slice(&c.to_be_bytes());
    k
}

fn sku_key(tenant: Id, sku: &str) -> Vec<u8> {
    let mut k = tenant.to_be_bytes().to_vec();
    k.extend_from_slice(sku.as_bytes());
    k
}

fn id_from(bytes: &[u8]) -> Id {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    Id::from_be_bytes(b)
}

fn get<R: Record>(tree: &Tree, key: &[u8]) -> Result<Option<R>> {
    tree.get(key)?.map(|v| decode(&v)).transpose()
}

fn put<R: Record>(tree: &Tree, key: &[u8], record: &R) -> Result<()> {
    tree.insert(key, encode(record)?)?;
    Ok(())
}

fn scan<R: Record>(tree: &Tree, prefix: &[u8]) -> Result<Vec<R>> {
    tree.scan_prefix(prefix).map(|kv| decode(&kv?.1)).collect()
}

/// The due index's key: due time (never negative in practice; clamped) then campaign.
fn due_key(at: i64, campaign: Id) -> [u8; 16] {
    key2(at.max(0) as u64, campaign)
}

/// The schedule as it is written: one version on from the one it was read at.
fn bump(s: &Schedule) -> Schedule {
    Schedule {
        version: s.version + 1,
        ..s.clone()
    }
}

/// Writes a schedule (already bumped) if the stored one is still at the version it was read
/// at, keeping the due index in step; answers false, writing nothing, when it moved on.
fn write_schedule(
    schedules: &sled::transaction::TransactionalTree,
    due: &sled::transaction::TransactionalTree,
    written: &Schedule,
    bytes: &[u8],
) -> std::result::Result<bool, ConflictableTransactionError<StoreError>> {
    let key = written.campaign_id.to_be_bytes();
    let stored: Option<Schedule> = match schedules.get(key)? {
        Some(v) => Some(decode(&v).map_err(ConflictableTransactionError::Abort)?),
        None => None,
    };
    if stored.as_ref().map_or(0, |s| s.version) + 1 != written.version {
        return Ok(false);
    }
    if let Some(at) = stored.as_ref().and_then(Schedule::next_due_at) {
        due.remove(&due_key(at, written.campaign_id))?;
    }
    if let Some(at) = written.next_due_at() {
        due.insert(&due_key(at, written.campaign_id), &[])?;
    }
    schedules.insert(&key, bytes)?;
    Ok(true)
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with a page cache of at most `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64, keys: std::sync::Arc<Keys>) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Group commit: sled writes its log in the background; we flush explicitly before a
            // run is reported complete and at shutdown, never per write.
            .flush_every_ms(Some(500))
            .open()?;
        Ok(SledStore {
            counters: db.open_tree("counters")?,
            tenants: db.open_tree("tenants")?,
            tenant_names: db.open_tree("tenant_names")?,
            tokens: db.open_tree("tokens")?,
            connections: db.open_tree("connections")?,
            products: db.open_tree("products")?,
            product_skus: db.open_tree("product_skus")?,
            campaigns: db.open_tree("campaigns")?,
            campaign_products: db.open_tree("campaign_products")?,
            trackers: db.open_tree("trackers")?,
            campaign_trackers: db.open_tree("campaign_trackers")?,
            locks: db.open_tree("locks")?,
            notifications: db.open_tree("notifications")?,
            webhooks: db.open_tree("webhooks")?,
            outbox: db.open_tree("outbox")?,
            work: db.open_tree("work")?,
            leases: db.open_tree("leases")?,
            nodes: db.open_tree("nodes")?,
            schedules: db.open_tree("schedules")?,
            due: db.open_tree("due")?,
            uploads: Default::default(),
            runs: Default::default(),
            signals: tokio::sync::broadcast::channel(256).0,
            keys,
            flushes: Default::default(),
            db,
        })
    }

    fn allocate(&self, kind: &str, n: u64) -> Result<Range<Id>> {
        let after = self.counters.update_and_fetch(kind, |old| {
            let cur = old.map(id_from).unwrap_or(0);
            Some(cur.saturating_add(n).to_be_bytes().to_vec())
        })?;
        let end = after.as_deref().map(id_from).unwrap_or(n) + 1;
        Ok(end - n..end)
    }

    fn sku_id(&self, tenant: Id, sku: &str) -> Result<Option<Id>> {
        Ok(self
            .product_skus
            .get(sku_key(tenant, sku))?
            .map(|v| id_from(&v)))
    }

    fn scan_range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>> {
        self.campaign_products
            .range(start..=end)
            .take(limit)
            .map(|kv| decode(&kv?.1))
            .collect()
    }
}

#[async_trait]
impl Durable for SledStore {
    /// sled's blocking flush on a blocking thread: its `flush_async` futures, polled by several
    /// tasks at once, may never be woken (spacejam/sled#1241, #1308), and every write to a
    /// marketplace now flushes its product's mark first, from many tasks at once.
    /// Outside a tokio runtime (the CLI's commands), the flush runs where it is called.
    async fn flush(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let db = self.db.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            db.flush()?;
            return Ok(());
        }
        // Every round started after this moment covers what this task wrote before it.
        let needed = self.flushes.started.load(SeqCst) + 1;
        let _turn = self.flushes.turn.lock().await;
        if self.flushes.done.load(SeqCst) >= needed {
            return Ok(());
        }
        let round = self.flushes.started.fetch_add(1, SeqCst) + 1;
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Sled(::sled::Error::Io(std::io::Error::other(e))))??;
        self.flushes.done.store(round, SeqCst);
        Ok(())
    }

    async fn size_bytes(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Every tree, entry by entry: `u32` length and key, `u32` length and value (big-endian).
    /// The service holds the directory's lock while it runs, so a backup is of a stopped store
    /// and nothing moves under it.
    async fn backup(&self, dir: &Path) -> Result<Backup> {
        use std::io::Write;
        Backup::prepare(dir)?;
        let io = |e: std::io::Error| StoreError::Backup(e.to_string());
        let mut tables = std::collections::BTreeMap::new();
        for name in self.db.tree_names() {
            let table = String::from_utf8_lossy(&name).to_string();
            if table == "__sled__default" {
                continue;
            }
            let tree = self.db.open_tree(&name)?;
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(Backup::file(dir, &table)?).map_err(io)?,
            );
            let mut n = 0u64;
            for kv in tree.iter() {
                let (k, v) = kv?;
                for part in [&k[..], &v[..]] {
                    out.write_all(&(part.len() as u32).to_be_bytes())
                        .map_err(io)?;
                    out.write_all(part).map_err(io)?;
                }
                n += 1;
            }
            out.into_inner()
                .map_err(|e| io(e.into_error()))?
                .sync_all()
                .map_err(io)?;
            tables.insert(table, n);
        }
        let backup = Backup {
            backend: "sled".to_string(),
            created_at: domain::clock::rfc3339(chrono::Utc::now().timestamp_millis()),
            tables,
        };
        backup.write(dir)?;
        Ok(backup)
    }

    async fn restore(&self, dir: &Path) -> Result<Backup> {
        use std::io::Read;
        let backup = Backup::read(dir, "sled")?;
        if !self.tenants.is_empty() {
            return Err(StoreError::Backup(
                "the store already holds tenants; restore into a new data directory".to_string(),
            ));
        }
        let io = |e: std::io::Error| StoreError::Backup(e.to_string());
        for (table, count) in &backup.tables {
            let tree = self.db.open_tree(table.as_bytes())?;
            let mut input = std::io::BufReader::new(
                std::fs::File::open(Backup::file(dir, table)?).map_err(io)?,
            );
            let read = |input: &mut std::io::BufReader<std::fs::File>| -> Result<Option<Vec<u8>>> {
                let mut len = [0u8; 4];
                match input.read_exact(&mut len) {
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                    other => other.map_err(io)?,
                }
                let mut part = vec![0u8; u32::from_be_bytes(len) as usize];
                input.read_exact(&mut part).map_err(io)?;
                Ok(Some(part))
            };
            let mut n = 0u64;
            while let Some(k) = read(&mut input)? {
                let v = read(&mut input)?.ok_or_else(|| {
                    StoreError::Backup(format!("{table}: a key without its value"))
                })?;
                tree.insert(k, v)?;
                n += 1;
            }
            if n != *count {
                return Err(StoreError::Backup(format!(
                    "{table}: {n} records where the manifest says {count}"
                )));
            }
        }
        self.flush().await?;
        Ok(backup)
    }
}

#[async_trait]
impl Ids for SledStore {
    async fn next_ids(&self, kind: &'static str, n: u64) -> Result<Range<Id>> {
        self.allocate(kind, n)
    }
}

#[async_trait]
impl Tenants for SledStore {
    async fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        if let Some(id) = self.tenant_names.get(name)? {
            if let Some(t) = get(&self.tenants, &id)? {
                return Ok(t);
            }
        }
        let tenant = Tenant {
            id: self.allocate("tenant", 1)?.start,
            name: name.to_string(),
            created_at: now,
        };
        put(&self.tenants, &tenant.id.to_be_bytes(), &tenant)?;
        self.tenant_names.insert(name, &tenant.id.to_be_bytes())?;
        Ok(tenant)
    }

    async fn tenant(&self, id: Id) -> Result<Option<Tenant>> {
        get(&self.tenants, &id.to_be_bytes())
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        scan(&self.tenants, &[])
    }

    async fn put_token(&self, sha256: &[u8; 32], token: &ApiToken) -> Result<()> {
        put(&self.tokens, sha256, token)
    }

    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<ApiToken>> {
        get(&self.tokens, sha256)
    }

    async fn tokens(&self, tenant: Option<Id>) -> Result<Vec<([u8; 32], ApiToken)>> {
        let mut out = Vec::new();
        for kv in self.tokens.iter() {
            let (key, value) = kv?;
            let token: ApiToken = decode(&value)?;
            let Ok(hash) = <[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            if tenant.is_none_or(|t| t == token.tenant_id) {
                out.push((hash, token));
            }
        }
        Ok(out)
    }

    async fn remove_token(&self, sha256: &[u8; 32]) -> Result<()> {
        self.tokens.remove(sha256)?;
        Ok(())
    }
}

#[async_trait]
impl Catalog for SledStore {
    async fn put_connection(&self, c: &Connection) -> Result<()> {
        self.connections
            .insert(key2(c.tenant_id, c.id), encode_connection(c, &self.keys)?)?;
        Ok(())
    }

    async fn connection(&self, tenant: Id, id: Id) -> Result<Option<Connection>> {
        self.connections
            .get(key2(tenant, id))?
            .map(|v| decode_connection(&v, &self.keys).map(|(c, _)| c))
            .transpose()
    }

    async fn connections(&self, tenant: Id) -> Result<Vec<Connection>> {
        self.connections
            .scan_prefix(tenant.to_be_bytes())
            .map(|kv| decode_connection(&kv?.1, &self.keys).map(|(c, _)| c))
            .collect()
    }

    async fn reseal(&self, write: bool) -> Result<u64> {
        let mut n = 0;
        for kv in self.connections.iter() {
            let (c, stale) = decode_connection(&kv?.1, &self.keys)?;
            if stale {
                if write {
                    self.put_connection(&c).await?;
                }
                n += 1;
            }
        }
        for kv in self.webhooks.iter() {
            let (key, value) = kv?;
            let tenant = id_from(&key);
            let (w, stale) = decode_webhook(tenant, &value, &self.keys)?;
            if stale {
                if write {
                    self.put_webhook(tenant, &w).await?;
                }
                n += 1;
            }
        }
        Ok(n)
    }

    async fn product(&self, tenant: Id, id: Id) -> Result<Option<Product>> {
        get(&self.products, &key2(tenant, id))
    }

    async fn product_id_by_sku(&self, tenant: Id, sku: &str) -> Result<Option<Id>> {
        self.sku_id(tenant, sku)
    }

    /// A walk of the SKU index's keys: no product is read.
    async fn product_ids_with_sku_containing(
        &self,
        tenant: Id,
        text: &str,
        most: usize,
    ) -> Result<Option<Vec<Id>>> {
        let needle = text.to_lowercase();
        let mut ids = Vec::new();
        for kv in self.product_skus.scan_prefix(tenant.to_be_bytes()) {
            let (k, v) = kv?;
            let sku = String::from_utf8_lossy(&k[8..]);
            if sku.to_lowercase().contains(&needle) {
                if ids.len() == most {
                    return Ok(None);
                }
                ids.push(id_from(&v));
            }
        }
        ids.sort_unstable();
        Ok(Some(ids))
    }

    async fn products_page(&self, tenant: Id, offset: u64, limit: u64) -> Result<Page<Product>> {
        let prefix = tenant.to_be_bytes();
        let total = self.products.scan_prefix(prefix).count() as u64;
        let items = self
            .products
            .scan_prefix(prefix)
            .skip(offset as usize)
            .take(limit as usize)
            .map(|kv| decode(&kv?.1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    async fn upsert_products(&self, tenant: Id, mut products: Vec<Product>) -> Result<Upserted> {
        // Poisoning only means another upload panicked; the trees are still consistent.
        let _one_upload = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = Vec::new();
        for (i, p) in products.iter_mut().enumerate() {
            p.tenant_id = tenant;
            match self.sku_id(tenant, &p.sku)? {
                Some(id) => p.id = id,
                None => new.push(i),
            }
        }
        let mut fresh = self.allocate("product", new.len() as u64)?;
        for i in &new {
            // `fresh` holds exactly one id per new product.
            if let (Some(p), Some(id)) = (products.get_mut(*i), fresh.next()) {
                p.id = id;
            }
        }
        let mut rows = Batch::default();
        let mut skus = Batch::default();
        for p in &products {
            rows.insert(&key2(p.tenant_id, p.id), encode(p)?);
            skus.insert(sku_key(p.tenant_id, &p.sku), &p.id.to_be_bytes());
        }
        self.products.apply_batch(rows)?;
        self.product_skus.apply_batch(skus)?;
        Ok(Upserted {
            created: new.len() as u64,
            products,
        })
    }
}

#[async_trait]
impl Campaigns for SledStore {
    async fn put_campaign(&self, c: &Campaign) -> Result<()> {
        put(&self.campaigns, &key2(c.tenant_id, c.id), c)
    }

    async fn campaign(&self, tenant: Id, id: Id) -> Result<Option<Campaign>> {
        get(&self.campaigns, &key2(tenant, id))
    }

    async fn campaigns(&self, tenant: Id) -> Result<Vec<Campaign>> {
        scan(&self.campaigns, &tenant.to_be_bytes())
    }

    async fn schedule(&self, campaign: Id) -> Result<Option<Schedule>> {
        get(&self.schedules, &campaign.to_be_bytes())
    }

    async fn put_schedule(&self, s: &Schedule) -> Result<bool> {
        let written = bump(s);
        let bytes = encode(&written)?;
        let _held = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let done = (&self.schedules, &self.due)
            .transaction(|(schedules, due)| write_schedule(schedules, due, &written, &bytes))?;
        Ok(done)
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<Schedule>> {
        let end = due_key(now.saturating_add(1), 0);
        let mut out = Vec::new();
        for kv in self.due.range(..end.as_slice()) {
            let (key, _) = kv?;
            if let Some(s) = get(&self.schedules, &key[8..16])? {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn put_campaign_product(&self, cp: &CampaignProduct) -> Result<()> {
        put(
            &self.campaign_products,
            &key3(cp.campaign_id, cp.connection_id, cp.product_id),
            cp,
        )
    }

    async fn put_campaign_products(&self, cps: &[CampaignProduct]) -> Result<()> {
        let mut batch = Batch::default();
        for cp in cps {
            batch.insert(
                &key3(cp.campaign_id, cp.connection_id, cp.product_id),
                encode(cp)?,
            );
        }
        self.campaign_products.apply_batch(batch)?;
        Ok(())
    }

    async fn campaign_product(
        &self,
        campaign: Id,
        connection: Id,
        product: Id,
    ) -> Result<Option<CampaignProduct>> {
        get(
            &self.campaign_products,
            &key3(campaign, connection, product),
        )
    }

    async fn remove_campaign_product(
        &self,
        campaign: Id,
        connection: Id,
        product: Id,
    ) -> Result<()> {
        self.campaign_products
            .remove(key3(campaign, connection, product))?;
        Ok(())
    }

    async fn campaign_products_from(
        &self,
        campaign: Id,
        after: Option<(Id, Id)>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>> {
        let start = match after {
            None => key3(campaign, 0, 0).to_vec(),
            // The smallest key above `after`: the same bytes with one more byte.
            Some((conn, product)) => {
                let mut k = key3(campaign, conn, product).to_vec();
                k.push(0);
                k
            }
        };
        self.scan_range(start, key3(campaign, Id::MAX, Id::MAX).to_vec(), limit)
    }

    async fn campaign_products_after(
        &self,
        campaign: Id,
        connection: Id,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>> {
        let start = match after {
            Some(id) => match id.checked_add(1) {
                Some(next) => key3(campaign, connection, next),
                None => return Ok(Vec::new()),
            },
            None => key3(campaign, connection, 0),
        };
        let end = key3(campaign, connection, Id::MAX);
        self.scan_range(start.to_vec(), end.to_vec(), limit)
    }

    async fn campaign_products_page(
        &self,
        campaign: Id,
        filter: &CpFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<CampaignProduct>> {
        let prefix: Vec<u8> = match filter.connection_id {
            Some(conn) => key2(campaign, conn).to_vec(),
            None => campaign.to_be_bytes().to_vec(),
        };
        let mut total = 0u64;
        let mut items = Vec::new();
        for kv in self.campaign_products.scan_prefix(prefix) {
            let cp: CampaignProduct = decode(&kv?.1)?;
            if filter.status.is_some_and(|s| s != cp.status) || !filter.takes_product(cp.product_id)
            {
                continue;
            }
            if total >= offset && (items.len() as u64) < limit {
                items.push(cp);
            }
            total += 1;
        }
        Ok(Page { items, total })
    }
}

#[async_trait]
impl Runs for SledStore {
    async fn lock(&self, campaign: Id) -> Result<Option<Lock>> {
        get(&self.locks, &campaign.to_be_bytes())
    }

    async fn all_locks(&self) -> Result<Vec<Lock>> {
        scan(&self.locks, &[])
    }

    async fn put_lock(&self, lock: &Lock) -> Result<()> {
        put(&self.locks, &lock.campaign_id.to_be_bytes(), lock)
    }

    async fn remove_lock(&self, campaign: Id) -> Result<()> {
        self.locks.remove(campaign.to_be_bytes())?;
        Ok(())
    }

    async fn renew_lock(&self, campaign: Id, tracker: Id, expires_at: i64) -> Result<bool> {
        let key = campaign.to_be_bytes();
        let Some(current) = self.locks.get(key)? else {
            return Ok(false);
        };
        let mut lock: Lock = decode(&current)?;
        if lock.tracker_id != tracker {
            return Ok(false);
        }
        lock.expires_at = expires_at;
        let swapped = self
            .locks
            .compare_and_swap(key, Some(current), Some(encode(&lock)?))?;
        Ok(swapped.is_ok())
    }

    async fn put_tracker(&self, t: &Tracker) -> Result<()> {
        put(&self.trackers, &t.id.to_be_bytes(), t)?;
        self.campaign_trackers
            .insert(key2(t.campaign_id, t.id), &[])?;
        Ok(())
    }

    async fn tracker(&self, id: Id) -> Result<Option<Tracker>> {
        get(&self.trackers, &id.to_be_bytes())
    }

    async fn campaign_trackers(&self, campaign: Id) -> Result<Vec<Tracker>> {
        let mut out = Vec::new();
        for kv in self
            .campaign_trackers
            .scan_prefix(campaign.to_be_bytes())
            .rev()
        {
            let (k, _) = kv?;
            if let Some(t) = get(&self.trackers, &k[8..])? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn finish_run(
        &self,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        notification: Option<&Notification>,
        delivery: Option<(Id, &Delivery)>,
    ) -> Result<bool> {
        let _one = self.one_process();
        let still_active = get::<Tracker>(&self.trackers, &tracker.id.to_be_bytes())?
            .is_some_and(|t| t.status == domain::TrackerStatus::Active);
        if !still_active {
            return Ok(false);
        }
        let tracker_bytes = encode(tracker)?;
        let campaign_bytes = campaign.map(encode).transpose()?;
        let notification_bytes = notification.map(encode).transpose()?;
        let delivery_bytes = delivery.map(|(_, d)| encode(d)).transpose()?;
        let lock_key = tracker.campaign_id.to_be_bytes();
        let work_keys: Vec<[u8; 16]> = self
            .work
            .scan_prefix(tracker.id.to_be_bytes())
            .keys()
            .map(|k| k.map(|k| key2(tracker.id, id_from(&k[8..]))))
            .collect::<std::result::Result<_, _>>()?;
        (
            &self.trackers,
            &self.campaigns,
            &self.locks,
            &self.notifications,
            &self.outbox,
            &self.work,
        )
            .transaction(
                |(trackers, campaigns, locks, notifications, outbox, work)| {
                    trackers.insert(&tracker.id.to_be_bytes(), tracker_bytes.clone())?;
                    for key in &work_keys {
                        work.remove(key)?;
                    }
                    if let (Some(n), Some(bytes)) = (notification, &notification_bytes) {
                        notifications.insert(&key2(n.tenant_id, n.id), bytes.clone())?;
                    }
                    if let (Some((id, _)), Some(bytes)) = (delivery, &delivery_bytes) {
                        outbox.insert(&id.to_be_bytes(), bytes.clone())?;
                    }
                    if let (Some(c), Some(bytes)) = (campaign, &campaign_bytes) {
                        campaigns.insert(&key2(c.tenant_id, c.id), bytes.clone())?;
                    }
                    if let Some(raw) = locks.get(lock_key)? {
                        let lock: Lock =
                            decode(&raw).map_err(ConflictableTransactionError::Abort)?;
                        if lock.tracker_id == tracker.id {
                            locks.remove(&lock_key)?;
                        }
                    }
                    Ok(())
                },
            )?;
        Ok(true)
    }
}

impl SledStore {
    fn one_process(&self) -> std::sync::MutexGuard<'_, ()> {
        // Poisoning only means another call panicked; the trees are still consistent.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn items(&self, tracker: Id) -> Result<Vec<WorkItem>> {
        scan(&self.work, &tracker.to_be_bytes())
    }
}

#[async_trait]
impl Cluster for SledStore {
    fn shared(&self) -> bool {
        false
    }

    async fn start_run(
        &self,
        lock: &Lock,
        replacing: Option<Id>,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        schedule: Option<&Schedule>,
    ) -> Result<bool> {
        let lock_bytes = encode(lock)?;
        let tracker_bytes = encode(tracker)?;
        let campaign_bytes = campaign.map(encode).transpose()?;
        let schedule = schedule.map(bump);
        let schedule_bytes = schedule.as_ref().map(encode).transpose()?;
        let items = tracker
            .connections
            .iter()
            .map(|c| {
                let item = WorkItem::new(tracker, c.connection_id);
                Ok((key2(tracker.id, c.connection_id), encode(&item)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let _held = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let started = (
            &self.locks,
            &self.trackers,
            &self.campaign_trackers,
            &self.work,
            &self.campaigns,
            &self.schedules,
            &self.due,
        )
            .transaction(
                |(locks, trackers, campaign_trackers, work, campaigns, schedules, due)| {
                    let key = lock.campaign_id.to_be_bytes();
                    if let Some(held) = locks.get(key)? {
                        let held: Lock =
                            decode(&held).map_err(ConflictableTransactionError::Abort)?;
                        if Some(held.tracker_id) != replacing {
                            return Ok(false);
                        }
                    }
                    if let (Some(s), Some(bytes)) = (&schedule, &schedule_bytes) {
                        if !write_schedule(schedules, due, s, bytes)? {
                            return Ok(false);
                        }
                    }
                    locks.insert(&key, lock_bytes.clone())?;
                    trackers.insert(&tracker.id.to_be_bytes(), tracker_bytes.clone())?;
                    campaign_trackers.insert(&key2(tracker.campaign_id, tracker.id), &[])?;
                    for (key, bytes) in &items {
                        work.insert(key, bytes.clone())?;
                    }
                    if let (Some(c), Some(bytes)) = (campaign, &campaign_bytes) {
                        campaigns.insert(&key2(c.tenant_id, c.id), bytes.clone())?;
                    }
                    Ok(true)
                },
            )?;
        Ok(started)
    }

    async fn put_work(&self, items: &[WorkItem]) -> Result<()> {
        for item in items {
            put(&self.work, &key2(item.tracker_id, item.connection_id), item)?;
        }
        Ok(())
    }

    async fn work(&self, tracker: Id) -> Result<Vec<WorkItem>> {
        self.items(tracker)
    }

    async fn open_work(&self) -> Result<Vec<WorkItem>> {
        let all: Vec<WorkItem> = scan(&self.work, &[])?;
        Ok(all.into_iter().filter(|w| !w.done).collect())
    }

    async fn claim_work(&self, tracker: Id, connection: Id) -> Result<Option<WorkItem>> {
        let _one = self.one_process();
        let key = key2(tracker, connection);
        let Some(mut item) = get::<WorkItem>(&self.work, &key)?.filter(|w| !w.done) else {
            return Ok(None);
        };
        let before = item.clone();
        item.attempts += 1;
        put(&self.work, &key, &item)?;
        Ok(Some(before))
    }

    async fn cancel_run(&self, tracker: Id, reason: &str, now: i64) -> Result<()> {
        let _one = self.one_process();
        for mut item in self.items(tracker)? {
            if !item.done && item.cancel.is_none() {
                item.cancel = Some(reason.to_string());
                put(&self.work, &key2(tracker, item.connection_id), &item)?;
            }
        }
        if let Some(mut t) = get::<Tracker>(&self.trackers, &tracker.to_be_bytes())? {
            let patch = TrackerPatch {
                events: vec![format!("stopping: {reason}")],
                updated_at: now,
                ..TrackerPatch::default()
            };
            if t.apply(&patch) {
                put(&self.trackers, &tracker.to_be_bytes(), &t)?;
            }
        }
        Ok(())
    }

    async fn end_work(
        &self,
        tracker: Id,
        connection: Id,
        failure: Option<String>,
    ) -> Result<Vec<WorkItem>> {
        let _one = self.one_process();
        let key = key2(tracker, connection);
        if let Some(mut item) = get::<WorkItem>(&self.work, &key)? {
            item.done = true;
            item.failure = item.failure.or(failure);
            put(&self.work, &key, &item)?;
        }
        self.items(tracker)
    }

    async fn patch_tracker(&self, id: Id, patch: &TrackerPatch) -> Result<Option<Tracker>> {
        let _one = self.one_process();
        let Some(mut t) = get::<Tracker>(&self.trackers, &id.to_be_bytes())? else {
            return Ok(None);
        };
        if !t.apply(patch) {
            return Ok(None);
        }
        put(&self.trackers, &id.to_be_bytes(), &t)?;
        Ok(Some(t))
    }

    async fn heartbeat(&self, node: &Node) -> Result<()> {
        put(&self.nodes, node.id.as_bytes(), node)
    }

    async fn live_nodes(&self, now: i64) -> Result<usize> {
        let nodes: Vec<Node> = scan(&self.nodes, &[])?;
        Ok(nodes.iter().filter(|n| n.expires_at > now).count())
    }

    async fn acquire_lease(&self, lease: &Lease, now: i64) -> Result<Option<Option<Lease>>> {
        let _one = self.one_process();
        let key = lease.connection_id.to_be_bytes();
        let before = get::<Lease>(&self.leases, &key)?;
        if before
            .as_ref()
            .is_some_and(|l| l.owner != lease.owner && l.expires_at > now)
        {
            return Ok(None);
        }
        put(&self.leases, &key, lease)?;
        Ok(Some(before))
    }

    async fn renew_leases(
        &self,
        owner: &str,
        connections: &[Id],
        expires_at: i64,
    ) -> Result<Vec<Id>> {
        let _one = self.one_process();
        let mut renewed = Vec::new();
        for &c in connections {
            let key = c.to_be_bytes();
            if let Some(mut l) = get::<Lease>(&self.leases, &key)?.filter(|l| l.owner == owner) {
                l.expires_at = expires_at;
                put(&self.leases, &key, &l)?;
                renewed.push(c);
            }
        }
        Ok(renewed)
    }

    async fn release_leases(
        &self,
        owner: &str,
        connections: Option<&[Id]>,
        now: i64,
    ) -> Result<()> {
        let _one = self.one_process();
        for mut lease in scan::<Lease>(&self.leases, &[])? {
            let chosen = connections.is_none_or(|cs| cs.contains(&lease.connection_id));
            if lease.owner == owner && chosen && lease.expires_at > now {
                lease.expires_at = now;
                put(&self.leases, &lease.connection_id.to_be_bytes(), &lease)?;
            }
        }
        Ok(())
    }

    async fn signal(&self, signal: Signal) -> Result<()> {
        // No receiver is fine: nobody is listening yet.
        let _ = self.signals.send(signal);
        Ok(())
    }

    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }
}

#[async_trait]
impl Outbox for SledStore {
    async fn notifications(&self, tenant: Id) -> Result<Vec<Notification>> {
        let mut list: Vec<Notification> = scan(&self.notifications, &tenant.to_be_bytes())?;
        list.reverse();
        Ok(list)
    }

    async fn put_notification(&self, n: &Notification) -> Result<()> {
        put(&self.notifications, &key2(n.tenant_id, n.id), n)
    }

    async fn notification(&self, tenant: Id, id: Id) -> Result<Option<Notification>> {
        get(&self.notifications, &key2(tenant, id))
    }

    async fn webhook(&self, tenant: Id) -> Result<Option<Webhook>> {
        self.webhooks
            .get(tenant.to_be_bytes())?
            .map(|v| decode_webhook(tenant, &v, &self.keys).map(|(w, _)| w))
            .transpose()
    }

    async fn put_webhook(&self, tenant: Id, w: &Webhook) -> Result<()> {
        self.webhooks
            .insert(tenant.to_be_bytes(), encode_webhook(tenant, w, &self.keys)?)?;
        Ok(())
    }

    async fn remove_webhook(&self, tenant: Id) -> Result<()> {
        self.webhooks.remove(tenant.to_be_bytes())?;
        Ok(())
    }

    async fn outbox(&self) -> Result<Vec<(Id, Delivery)>> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((id_from(&k), decode(&v)?))
            })
            .collect()
    }

    async fn put_delivery(&self, id: Id, d: &Delivery) -> Result<()> {
        put(&self.outbox, &id.to_be_bytes(), d)
    }

    async fn remove_delivery(&self, id: Id) -> Result<()> {
        self.outbox.remove(id.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::*;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), 8 << 20, std::sync::Arc::new(Keys::generate()))
            .expect("opens");
        (dir, store)
    }

    #[tokio::test]
    async fn credentials_stored_in_the_clear_by_an_older_version_are_sealed_by_reseal() {
        let (_dir, store) = store();
        let c = Connection {
            id: 2,
            tenant_id: 1,
            system: System::Jumpseller,
            name: "s".into(),
            base_url: "http://x".into(),
            credentials: Credentials::Jumpseller {
                login: "l".into(),
                authtoken: "plain-token-x".into(),
            },
            rate_limit: RateLimit {
                per_second: 1,
                per_minute: 1,
            },
            max_in_flight: 1,
            settings: Default::default(),
            created_at: 0,
        };
        // Version 1's bytes: the version byte, then the record as it is, in the clear.
        let v1 = postcard::to_extend(&c, vec![1u8]).expect("encodes");
        store.connections.insert(key2(1, 2), v1).expect("written");
        assert_eq!(store.reseal(false).await.expect("reads"), 1);
        assert_eq!(store.reseal(true).await.expect("seals"), 1);
        assert_eq!(
            store.reseal(false).await.expect("reads"),
            0,
            "nothing left to seal"
        );
        let raw = store
            .connections
            .get(key2(1, 2))
            .expect("reads")
            .expect("stored");
        assert!(!raw.windows(13).any(|w| w == b"plain-token-x"));
        assert_eq!(store.connection(1, 2).await.expect("reads"), Some(c));
    }
}
