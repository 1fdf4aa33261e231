//! The embedded store: sled trees of tenants, tokens, connections, products, campaigns, campaign
//! products, trackers and locks. It knows nothing of HTTP or actors; every value goes through the
//! versioned envelope in `codec`. Keys are big-endian ids so that scans run in id order and a
//! campaign's products are one contiguous prefix.

pub mod codec;

use std::ops::Range;
use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Tree};

use crate::domain::{
    ApiToken, Campaign, CampaignProduct, Connection, Delivery, Id, Lock, Notification, Product,
    Tenant, Tracker, Webhook,
};
use codec::{decode, encode, Record};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
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
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Handle to the database; cheap to clone, every clone sees the same trees.
#[derive(Clone)]
pub struct Store {
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

/// A page of records and the total count behind it.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Which campaign products a listing wants.
#[derive(Debug, Default, Clone)]
pub struct CpFilter {
    pub status: Option<crate::domain::ProductStatus>,
    pub connection_id: Option<Id>,
}

impl Store {
    /// Opens (or creates) the database in `dir`, with a page cache of at most `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Group commit: sled writes its log in the background; we flush explicitly before a
            // run is reported complete and at shutdown, never per write.
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Store {
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
            db,
        })
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Makes every write so far durable, blocking the thread; for rare writes that must not be
    /// lost (refreshed credentials).
    pub fn flush_blocking(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Allocates `n` consecutive ids of one kind, starting at 1 for the first.
    pub fn next_ids(&self, kind: &str, n: u64) -> Result<Range<Id>> {
        let after = self.counters.update_and_fetch(kind, |old| {
            let cur = old.map(id_from).unwrap_or(0);
            Some(cur.saturating_add(n).to_be_bytes().to_vec())
        })?;
        let end = after.as_deref().map(id_from).unwrap_or(n) + 1;
        Ok(end - n..end)
    }

    pub fn next_id(&self, kind: &str) -> Result<Id> {
        Ok(self.next_ids(kind, 1)?.start)
    }

    // ----- tenants and tokens -----

    /// The tenant of that name, created if it does not exist yet.
    pub fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        if let Some(id) = self.tenant_names.get(name)? {
            if let Some(t) = get(&self.tenants, &id)? {
                return Ok(t);
            }
        }
        let tenant = Tenant {
            id: self.next_id("tenant")?,
            name: name.to_string(),
            created_at: now,
        };
        put(&self.tenants, &tenant.id.to_be_bytes(), &tenant)?;
        self.tenant_names.insert(name, &tenant.id.to_be_bytes())?;
        Ok(tenant)
    }

    pub fn tenant(&self, id: Id) -> Result<Option<Tenant>> {
        get(&self.tenants, &id.to_be_bytes())
    }

    pub fn put_token(&self, sha256: &[u8; 32], token: &ApiToken) -> Result<()> {
        put(&self.tokens, sha256, token)
    }

    pub fn token(&self, sha256: &[u8; 32]) -> Result<Option<ApiToken>> {
        get(&self.tokens, sha256)
    }

    // ----- connections -----

    pub fn put_connection(&self, c: &Connection) -> Result<()> {
        put(&self.connections, &key2(c.tenant_id, c.id), c)
    }

    pub fn connection(&self, tenant: Id, id: Id) -> Result<Option<Connection>> {
        get(&self.connections, &key2(tenant, id))
    }

    pub fn connections(&self, tenant: Id) -> Result<Vec<Connection>> {
        scan(&self.connections, &tenant.to_be_bytes())
    }

    // ----- products -----

    pub fn product_id_by_sku(&self, tenant: Id, sku: &str) -> Result<Option<Id>> {
        Ok(self
            .product_skus
            .get(sku_key(tenant, sku))?
            .map(|v| id_from(&v)))
    }

    /// Writes products (their ids already assigned) and their SKU index in two batches.
    pub fn put_products(&self, products: &[Product]) -> Result<()> {
        let mut rows = Batch::default();
        let mut skus = Batch::default();
        for p in products {
            rows.insert(&key2(p.tenant_id, p.id), encode(p)?);
            skus.insert(sku_key(p.tenant_id, &p.sku), &p.id.to_be_bytes());
        }
        self.products.apply_batch(rows)?;
        self.product_skus.apply_batch(skus)?;
        Ok(())
    }

    pub fn product(&self, tenant: Id, id: Id) -> Result<Option<Product>> {
        get(&self.products, &key2(tenant, id))
    }

    pub fn products_page(&self, tenant: Id, offset: u64, limit: u64) -> Result<Page<Product>> {
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

    // ----- campaigns -----

    pub fn put_campaign(&self, c: &Campaign) -> Result<()> {
        put(&self.campaigns, &key2(c.tenant_id, c.id), c)
    }

    pub fn campaign(&self, tenant: Id, id: Id) -> Result<Option<Campaign>> {
        get(&self.campaigns, &key2(tenant, id))
    }

    pub fn campaigns(&self, tenant: Id) -> Result<Vec<Campaign>> {
        scan(&self.campaigns, &tenant.to_be_bytes())
    }

    // ----- campaign products -----

    pub fn put_campaign_product(&self, cp: &CampaignProduct) -> Result<()> {
        put(
            &self.campaign_products,
            &key3(cp.campaign_id, cp.connection_id, cp.product_id),
            cp,
        )
    }

    pub fn put_campaign_products(&self, cps: &[CampaignProduct]) -> Result<()> {
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

    pub fn campaign_product(
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

    pub fn remove_campaign_product(&self, campaign: Id, connection: Id, product: Id) -> Result<()> {
        self.campaign_products
            .remove(key3(campaign, connection, product))?;
        Ok(())
    }

    /// Calls `f` on every product of a campaign, in (connection, product) order.
    pub fn for_each_campaign_product(
        &self,
        campaign: Id,
        mut f: impl FnMut(CampaignProduct) -> Result<()>,
    ) -> Result<()> {
        for kv in self.campaign_products.scan_prefix(campaign.to_be_bytes()) {
            f(decode(&kv?.1)?)?;
        }
        Ok(())
    }

    /// Up to `limit` products of one connection in a campaign with product id above `after`
    /// that `keep` accepts: the chunked scan workers stream their work from.
    pub fn campaign_products_after(
        &self,
        campaign: Id,
        connection: Id,
        after: Option<Id>,
        limit: usize,
        keep: impl Fn(&CampaignProduct) -> bool,
    ) -> Result<Vec<CampaignProduct>> {
        let start = match after {
            Some(id) => match id.checked_add(1) {
                Some(next) => key3(campaign, connection, next),
                None => return Ok(Vec::new()),
            },
            None => key3(campaign, connection, 0),
        };
        let end = key3(campaign, connection, Id::MAX);
        let mut out = Vec::new();
        for kv in self.campaign_products.range(start..=end) {
            let cp: CampaignProduct = decode(&kv?.1)?;
            if keep(&cp) {
                out.push(cp);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn campaign_products_page(
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
            if filter.status.is_some_and(|s| s != cp.status) {
                continue;
            }
            if total >= offset && (items.len() as u64) < limit {
                items.push(cp);
            }
            total += 1;
        }
        Ok(Page { items, total })
    }

    // ----- trackers -----

    pub fn put_tracker(&self, t: &Tracker) -> Result<()> {
        put(&self.trackers, &t.id.to_be_bytes(), t)?;
        self.campaign_trackers
            .insert(key2(t.campaign_id, t.id), &[])?;
        Ok(())
    }

    pub fn tracker(&self, id: Id) -> Result<Option<Tracker>> {
        get(&self.trackers, &id.to_be_bytes())
    }

    /// A campaign's trackers, newest first.
    pub fn campaign_trackers(&self, campaign: Id) -> Result<Vec<Tracker>> {
        let mut out = Vec::new();
        for kv in self
            .campaign_trackers
            .scan_prefix(campaign.to_be_bytes())
            .rev()
        {
            let (k, _) = kv?;
            if let Some(t) = self.tracker(id_from(&k[8..]))? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Writes a run's final tracker, the campaign's new status, the release of its lock, the
    /// tenant's notification and its webhook delivery in one transaction, so no reader sees a
    /// completed tracker on a campaign that is still locked, and no run ends unannounced.
    pub fn finish_run(
        &self,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        notification: Option<&Notification>,
        delivery: Option<(Id, &Delivery)>,
    ) -> Result<()> {
        let tracker_bytes = encode(tracker)?;
        let campaign_bytes = campaign.map(encode).transpose()?;
        let notification_bytes = notification.map(encode).transpose()?;
        let delivery_bytes = delivery.map(|(_, d)| encode(d)).transpose()?;
        let lock_key = tracker.campaign_id.to_be_bytes();
        (
            &self.trackers,
            &self.campaigns,
            &self.locks,
            &self.notifications,
            &self.outbox,
        )
            .transaction(|(trackers, campaigns, locks, notifications, outbox)| {
                trackers.insert(&tracker.id.to_be_bytes(), tracker_bytes.clone())?;
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
                    let lock: Lock = decode(&raw).map_err(ConflictableTransactionError::Abort)?;
                    if lock.tracker_id == tracker.id {
                        locks.remove(&lock_key)?;
                    }
                }
                Ok(())
            })?;
        Ok(())
    }

    // ----- notifications, webhooks and their outbox -----

    /// A tenant's notifications, newest first.
    pub fn notifications(&self, tenant: Id) -> Result<Vec<Notification>> {
        let mut list: Vec<Notification> = scan(&self.notifications, &tenant.to_be_bytes())?;
        list.reverse();
        Ok(list)
    }

    pub fn put_notification(&self, n: &Notification) -> Result<()> {
        put(&self.notifications, &key2(n.tenant_id, n.id), n)
    }

    pub fn notification(&self, tenant: Id, id: Id) -> Result<Option<Notification>> {
        get(&self.notifications, &key2(tenant, id))
    }

    pub fn webhook(&self, tenant: Id) -> Result<Option<Webhook>> {
        get(&self.webhooks, &tenant.to_be_bytes())
    }

    pub fn put_webhook(&self, tenant: Id, w: &Webhook) -> Result<()> {
        put(&self.webhooks, &tenant.to_be_bytes(), w)
    }

    pub fn remove_webhook(&self, tenant: Id) -> Result<()> {
        self.webhooks.remove(tenant.to_be_bytes())?;
        Ok(())
    }

    /// Every delivery waiting in the outbox, with its number.
    pub fn outbox(&self) -> Result<Vec<(Id, Delivery)>> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((id_from(&k), decode(&v)?))
            })
            .collect()
    }

    pub fn put_delivery(&self, id: Id, d: &Delivery) -> Result<()> {
        put(&self.outbox, &id.to_be_bytes(), d)
    }

    pub fn remove_delivery(&self, id: Id) -> Result<()> {
        self.outbox.remove(id.to_be_bytes())?;
        Ok(())
    }

    // ----- locks -----

    pub fn lock(&self, campaign: Id) -> Result<Option<Lock>> {
        get(&self.locks, &campaign.to_be_bytes())
    }

    pub fn put_lock(&self, lock: &Lock) -> Result<()> {
        put(&self.locks, &lock.campaign_id.to_be_bytes(), lock)
    }

    pub fn remove_lock(&self, campaign: Id) -> Result<()> {
        self.locks.remove(campaign.to_be_bytes())?;
        Ok(())
    }

    /// Moves a lock's expiry, if the lock is still held by `tracker`; answers whether it was.
    pub fn renew_lock(&self, campaign: Id, tracker: Id, expires_at: i64) -> Result<bool> {
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

    pub fn all_locks(&self) -> Result<Vec<Lock>> {
        scan(&self.locks, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), 8 << 20).expect("opens");
        (dir, store)
    }

    #[test]
    fn ids_are_allocated_per_kind_from_one() {
        let (_d, s) = store();
        assert_eq!(s.next_id("campaign").unwrap(), 1);
        assert_eq!(s.next_ids("product", 3).unwrap(), 1..4);
        assert_eq!(s.next_id("product").unwrap(), 4);
        assert_eq!(s.next_id("campaign").unwrap(), 2);
    }

    fn cp(campaign: Id, conn: Id, product: Id, status: ProductStatus) -> CampaignProduct {
        CampaignProduct {
            campaign_id: campaign,
            connection_id: conn,
            product_id: product,
            status,
            marketplace_info: MarketplaceInfo::default(),
            error_message: None,
            published_at: None,
            updated_at: 0,
            run: None,
        }
    }

    #[test]
    fn a_chunked_scan_stays_inside_one_connection_and_resumes_after_a_key() {
        let (_d, s) = store();
        let rows: Vec<_> = (1..=5)
            .map(|p| cp(1, 2, p, ProductStatus::Pending))
            .chain([
                cp(1, 3, 1, ProductStatus::Pending),
                cp(2, 2, 1, ProductStatus::Pending),
            ])
            .collect();
        s.put_campaign_products(&rows).unwrap();
        let first = s.campaign_products_after(1, 2, None, 2, |_| true).unwrap();
        assert_eq!(
            first.iter().map(|c| c.product_id).collect::<Vec<_>>(),
            [1, 2]
        );
        let rest = s
            .campaign_products_after(1, 2, Some(2), 10, |_| true)
            .unwrap();
        assert_eq!(
            rest.iter().map(|c| c.product_id).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let odd = s
            .campaign_products_after(1, 2, None, 10, |c| c.product_id % 2 == 1)
            .unwrap();
        assert_eq!(odd.len(), 3);
    }

    #[test]
    fn finishing_a_run_releases_only_its_own_lock() {
        let (_d, s) = store();
        let lock = Lock {
            campaign_id: 1,
            tracker_id: 5,
            owner: "me".into(),
            expires_at: 10,
        };
        s.put_lock(&lock).unwrap();
        let mut t = Tracker {
            id: 4,
            tenant_id: 1,
            campaign_id: 1,
            marketplace_id: None,
            action: Action::Pause,
            status: TrackerStatus::Completed,
            connections: vec![],
            metadata: TrackerMeta {
                campaign_name: "c".into(),
                total_products: 0,
                chunk_size: 1,
                fail_fast: false,
                force: false,
                product_level: false,
                events: vec![],
                product_ids: vec![],
                retry: false,
            },
            error_message: None,
            started_at: 0,
            completed_at: None,
            updated_at: 0,
        };
        s.put_tracker(&t).unwrap();
        s.finish_run(&t, None, None, None).unwrap();
        assert_eq!(s.lock(1).unwrap(), Some(lock));
        t.id = 5;
        s.finish_run(&t, None, None, None).unwrap();
        assert_eq!(s.lock(1).unwrap(), None);
        assert_eq!(s.campaign_trackers(1).unwrap().len(), 1);
    }

    #[test]
    fn renewing_a_lock_held_by_another_run_does_nothing() {
        let (_d, s) = store();
        s.put_lock(&Lock {
            campaign_id: 1,
            tracker_id: 5,
            owner: "me".into(),
            expires_at: 10,
        })
        .unwrap();
        assert!(!s.renew_lock(1, 6, 99).unwrap());
        assert!(s.renew_lock(1, 5, 99).unwrap());
        assert_eq!(s.lock(1).unwrap().unwrap().expires_at, 99);
    }
}
