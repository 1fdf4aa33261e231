//! The PostgreSQL backend: the same records as sled, one table per kind, keyed by the same ids.
//! A record's body is the versioned postcard envelope of `codec`; the columns beside it are what
//! queries filter on (keys, SKU, status, a lock's owner and expiry). The schema is created by the
//! migrations in `migrations/`, embedded in the binary and run once per database under
//! PostgreSQL's migration lock, so several nodes starting together migrate it once.
//!
//! The pool lives on a small runtime of its own: the actors run on several single-threaded
//! runtimes that come and go, and a connection must stay on the runtime that drives its socket.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

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
    Product, Schedule, Tenant, Tracker, TrackerPatch, TrackerStatus, Webhook, WorkItem,
};

/// The NOTIFY channel every node listens on.
const CHANNEL: &str = "campaignd";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle to one PostgreSQL database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Seals and opens credentials and webhook secrets.
    keys: std::sync::Arc<Keys>,
    rt: std::sync::Arc<Runtime>,
    /// What the LISTEN connection receives, for every part of this process that follows it.
    signals: tokio::sync::broadcast::Sender<Signal>,
}

/// The store's own runtime, shut down without waiting when the last handle goes (which may
/// happen inside another runtime, where a blocking shutdown is not allowed).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Ids are u64 in the domain and bigint in PostgreSQL; no id comes near 2^63.
fn db(id: Id) -> i64 {
    id as i64
}

fn id_of(v: i64) -> Id {
    v as Id
}

/// Writes a schedule read at `s.version` as the next version, if no other write came in
/// between (see `Campaigns::put_schedule`).
async fn write_schedule<'e, E>(exec: E, s: &Schedule) -> Result<bool>
where
    E: sqlx::PgExecutor<'e>,
{
    let written = Schedule {
        version: s.version + 1,
        ..s.clone()
    };
    let bytes = encode(&written)?;
    let due = written.next_due_at();
    let done = if s.version == 0 {
        sqlx::query(
            "INSERT INTO schedules (campaign_id, tenant_id, version, next_due_at, body)
             VALUES ($1, $2, 1, $3, $4) ON CONFLICT (campaign_id) DO NOTHING",
        )
        .bind(db(s.campaign_id))
        .bind(db(s.tenant_id))
        .bind(due)
        .bind(bytes)
        .execute(exec)
        .await?
    } else {
        sqlx::query(
            "UPDATE schedules SET version = $2 + 1, next_due_at = $3, body = $4
             WHERE campaign_id = $1 AND version = $2",
        )
        .bind(db(s.campaign_id))
        .bind(s.version as i64)
        .bind(due)
        .bind(bytes)
        .execute(exec)
        .await?
    };
    Ok(done.rows_affected() == 1)
}

fn tracker_status(s: TrackerStatus) -> &'static str {
    match s {
        TrackerStatus::Active => "active",
        TrackerStatus::Completed => "completed",
        TrackerStatus::Failed => "failed",
    }
}

fn body<R: Record>(row: &sqlx::postgres::PgRow) -> Result<R> {
    let bytes: Vec<u8> = row.try_get("body")?;
    decode(&bytes)
}

fn bodies<R: Record>(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<R>> {
    rows.iter().map(body).collect()
}

fn lock_of(row: &sqlx::postgres::PgRow) -> Result<Lock> {
    Ok(Lock {
        campaign_id: id_of(row.try_get("campaign_id")?),
        tracker_id: id_of(row.try_get("tracker_id")?),
        owner: row.try_get("owner")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl PgStore {
    /// Connects to the database at `url` and brings its schema up to date. A URL that does not
    /// parse, a server that does not answer and a refused login are errors, never a panic.
    pub fn open(url: &str, pool_size: u32, keys: std::sync::Arc<Keys>) -> Result<PgStore> {
        let options: PgConnectOptions = url.parse()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("campaignd-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("could not start the store's threads: {e}")))?;
        let pools = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(5));
        // Run on the store's runtime and wait on a plain channel, so that opening works from
        // inside another runtime (tests) as well as from plain threads.
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let opened = async {
                let pool = pools.connect_with(options).await?;
                MIGRATOR.run(&pool).await?;
                Ok::<_, StoreError>(pool)
            }
            .await;
            let _ = tx.send(opened);
        });
        let pool = rx
            .recv()
            .map_err(|_| StoreError::Config("the store's threads stopped".to_string()))??;
        let signals = tokio::sync::broadcast::channel(1024).0;
        rt.spawn(listen(pool.clone(), signals.clone()));
        Ok(PgStore {
            pool,
            keys,
            rt: std::sync::Arc::new(Runtime(Some(rt))),
            signals,
        })
    }

    /// Runs a query on the store's runtime.
    async fn on<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let Some(rt) = self.rt.0.as_ref() else {
            return Err(StoreError::Config("the store is closed".to_string()));
        };
        rt.spawn(f(self.pool.clone()))
            .await
            .map_err(|e| StoreError::Config(format!("a store task failed: {e}")))?
    }

    /// One record by its key columns.
    async fn get_one<R: Record + Send + 'static>(
        &self,
        sql: &'static str,
        keys: Vec<i64>,
    ) -> Result<Option<R>> {
        self.on(move |pool| async move {
            let mut q = sqlx::query(sql);
            for k in keys {
                q = q.bind(k);
            }
            q.fetch_optional(&pool).await?.map(|r| body(&r)).transpose()
        })
        .await
    }

    /// Every record a query returns, in its order.
    async fn get_all<R: Record + Send + 'static>(
        &self,
        sql: &'static str,
        keys: Vec<i64>,
    ) -> Result<Vec<R>> {
        self.on(move |pool| async move {
            let mut q = sqlx::query(sql);
            for k in keys {
                q = q.bind(k);
            }
            bodies(&q.fetch_all(&pool).await?)
        })
        .await
    }

    /// A statement with key columns and then the body.
    /// The `body` column of the rows a query answers, undecoded.
    async fn raw(&self, sql: &'static str, keys: Vec<i64>) -> Result<Vec<Vec<u8>>> {
        self.on(move |pool| async move {
            let mut q = sqlx::query(sql);
            for k in keys {
                q = q.bind(k);
            }
            q.fetch_all(&pool)
                .await?
                .iter()
                .map(|r| Ok(r.try_get("body")?))
                .collect()
        })
        .await
    }

    async fn write(&self, sql: &'static str, keys: Vec<i64>, body: Vec<u8>) -> Result<()> {
        self.on(move |pool| async move {
            let mut q = sqlx::query(sql);
            for k in keys {
                q = q.bind(k);
            }
            q.bind(body).execute(&pool).await?;
            Ok(())
        })
        .await
    }

    async fn exec(&self, sql: &'static str, keys: Vec<i64>) -> Result<()> {
        self.on(move |pool| async move {
            let mut q = sqlx::query(sql);
            for k in keys {
                q = q.bind(k);
            }
            q.execute(&pool).await?;
            Ok(())
        })
        .await
    }
}

/// Follows the NOTIFY channel for as long as the store lives, connecting again after the
/// database went away (signals sent meanwhile are lost; nodes also look at the work on a timer).
async fn listen(pool: PgPool, signals: tokio::sync::broadcast::Sender<Signal>) {
    loop {
        let listened = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            // A reconnection may have missed some: tell everyone to look again.
            let _ = signals.send(Signal::Work);
            loop {
                let n = listener.recv().await?;
                if let Some(signal) = Signal::decode(n.payload()) {
                    let _ = signals.send(signal);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if let Err(error) = listened {
            tracing::warn!(%error, "lost the database's notifications; connecting again");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn item_of(row: &sqlx::postgres::PgRow) -> Result<WorkItem> {
    body(row)
}

/// An offset or a limit as PostgreSQL's bigint: one beyond it is as good as the largest (a
/// page past the end is empty either way), where a cast would turn it negative.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The service's tables (not sqlx's record of migrations), by name.
async fn table_names(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> std::result::Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations'
         ORDER BY tablename",
    )
    .fetch_all(&mut **tx)
    .await
}

async fn allocate(
    exec: impl sqlx::PgExecutor<'_>,
    kind: &str,
    n: u64,
) -> std::result::Result<Range<Id>, sqlx::Error> {
    let end: i64 = sqlx::query_scalar(
        "INSERT INTO counters (kind, value) VALUES ($1, $2)
         ON CONFLICT (kind) DO UPDATE SET value = counters.value + EXCLUDED.value
         RETURNING value",
    )
    .bind(kind)
    .bind(n as i64)
    .fetch_one(exec)
    .await?;
    let end = id_of(end) + 1;
    Ok(end - n..end)
}

#[async_trait]
impl Durable for PgStore {
    /// Every statement commits durably when it returns; nothing is held back.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Every table in one REPEATABLE READ transaction (so the copy is of one moment while the
    /// nodes go on), in PostgreSQL's binary COPY format.
    async fn backup(&self, dir: &std::path::Path) -> Result<Backup> {
        Backup::prepare(dir)?;
        let dir = dir.to_path_buf();
        self.on(move |pool| async move {
            use futures::StreamExt;
            use std::io::Write;
            let io = |e: std::io::Error| StoreError::Backup(e.to_string());
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
            let mut tables = std::collections::BTreeMap::new();
            for table in table_names(&mut tx).await? {
                let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
                    .fetch_one(&mut *tx)
                    .await?;
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(Backup::file(&dir, &table)?).map_err(io)?,
                );
                let mut rows = tx
                    .copy_out_raw(&format!("COPY \"{table}\" TO STDOUT (FORMAT binary)"))
                    .await?;
                while let Some(chunk) = rows.next().await {
                    out.write_all(&chunk?).map_err(io)?;
                }
                drop(rows);
                out.into_inner()
                    .map_err(|e| io(e.into_error()))?
                    .sync_all()
                    .map_err(io)?;
                tables.insert(table, count.max(0) as u64);
            }
            tx.commit().await?;
            let backup = Backup {
                backend: "postgres".to_string(),
                created_at: domain::clock::rfc3339(chrono::Utc::now().timestamp_millis()),
                tables,
            };
            backup.write(&dir)?;
            Ok(backup)
        })
        .await
    }

    async fn restore(&self, dir: &std::path::Path) -> Result<Backup> {
        let backup = Backup::read(dir, "postgres")?;
        let dir = dir.to_path_buf();
        let manifest = backup.clone();
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
                .fetch_one(&mut *tx)
                .await?;
            if tenants > 0 {
                return Err(StoreError::Backup(
                    "the database already holds tenants; restore into a new database".to_string(),
                ));
            }
            let known = table_names(&mut tx).await?;
            for (table, count) in &manifest.tables {
                if !known.contains(table) {
                    return Err(StoreError::Backup(format!(
                        "the backup has a table {table} this version does not know"
                    )));
                }
                let bytes = std::fs::read(Backup::file(&dir, table)?)
                    .map_err(|e| StoreError::Backup(format!("{table}: {e}")))?;
                // The migrations may have seeded rows (such as counters): the copy replaces them.
                sqlx::query(&format!("DELETE FROM \"{table}\""))
                    .execute(&mut *tx)
                    .await?;
                let mut copy = tx
                    .copy_in_raw(&format!("COPY \"{table}\" FROM STDIN (FORMAT binary)"))
                    .await?;
                copy.send(bytes).await?;
                let n = copy.finish().await?;
                if n != *count {
                    return Err(StoreError::Backup(format!(
                        "{table}: {n} records where the manifest says {count}"
                    )));
                }
            }
            tx.commit().await?;
            Ok(manifest)
        })
        .await?;
        Ok(backup)
    }

    async fn size_bytes(&self) -> Result<u64> {
        self.on(move |pool| async move {
            let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&pool)
                .await?;
            Ok(n.max(0) as u64)
        })
        .await
    }
}

#[async_trait]
impl Ids for PgStore {
    async fn next_ids(&self, kind: &'static str, n: u64) -> Result<Range<Id>> {
        self.on(move |pool| async move { Ok(allocate(&pool, kind, n).await?) })
            .await
    }
}

#[async_trait]
impl Tenants for PgStore {
    async fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        let name = name.to_string();
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            // One creator per name: the unique name decides between two at once.
            let existing = sqlx::query("SELECT body FROM tenants WHERE name = $1")
                .bind(&name)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                return body(&row);
            }
            let id = allocate(&mut *tx, "tenant", 1).await?.start;
            let tenant = Tenant {
                id,
                name: name.clone(),
                created_at: now,
            };
            let inserted = sqlx::query(
                "INSERT INTO tenants (id, name, body) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(db(id))
            .bind(&name)
            .bind(encode(&tenant)?)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if inserted.rows_affected() == 1 {
                return Ok(tenant);
            }
            let row = sqlx::query("SELECT body FROM tenants WHERE name = $1")
                .bind(&name)
                .fetch_one(&pool)
                .await?;
            body(&row)
        })
        .await
    }

    async fn tenant(&self, id: Id) -> Result<Option<Tenant>> {
        self.get_one("SELECT body FROM tenants WHERE id = $1", vec![db(id)])
            .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.get_all("SELECT body FROM tenants ORDER BY id", vec![])
            .await
    }

    async fn put_token(&self, sha256: &[u8; 32], token: &ApiToken) -> Result<()> {
        let (hash, tenant, bytes) = (sha256.to_vec(), token.tenant_id, encode(token)?);
        self.on(move |pool| async move {
            sqlx::query(
                "INSERT INTO tokens (sha256, tenant_id, body) VALUES ($1, $2, $3)
                 ON CONFLICT (sha256) DO UPDATE SET tenant_id = $2, body = $3",
            )
            .bind(hash)
            .bind(db(tenant))
            .bind(bytes)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn tokens(&self, tenant: Option<Id>) -> Result<Vec<([u8; 32], ApiToken)>> {
        let tenant = tenant.map(db);
        self.on(move |pool| async move {
            let rows = sqlx::query(
                "SELECT sha256, body FROM tokens WHERE $1::bigint IS NULL OR tenant_id = $1
                 ORDER BY sha256",
            )
            .bind(tenant)
            .fetch_all(&pool)
            .await?;
            let mut out = Vec::new();
            for r in &rows {
                let hash: Vec<u8> = r.try_get("sha256")?;
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    out.push((hash, body(r)?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn remove_token(&self, sha256: &[u8; 32]) -> Result<()> {
        let hash = sha256.to_vec();
        self.on(move |pool| async move {
            sqlx::query("DELETE FROM tokens WHERE sha256 = $1")
                .bind(hash)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<ApiToken>> {
        let hash = sha256.to_vec();
        self.on(move |pool| async move {
            sqlx::query("SELECT body FROM tokens WHERE sha256 = $1")
                .bind(hash)
                .fetch_optional(&pool)
                .await?
                .map(|r| body(&r))
                .transpose()
        })
        .await
    }
}

#[async_trait]
impl Catalog for PgStore {
    async fn put_connection(&self, c: &Connection) -> Result<()> {
        self.write(
            "INSERT INTO connections (tenant_id, id, body) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, id) DO UPDATE SET body = EXCLUDED.body",
            vec![db(c.tenant_id), db(c.id)],
            encode_connection(c, &self.keys)?,
        )
        .await
    }

    async fn connection(&self, tenant: Id, id: Id) -> Result<Option<Connection>> {
        let rows = self
            .raw(
                "SELECT body FROM connections WHERE tenant_id = $1 AND id = $2",
                vec![db(tenant), db(id)],
            )
            .await?;
        rows.first()
            .map(|b| decode_connection(b, &self.keys).map(|(c, _)| c))
            .transpose()
    }

    async fn connections(&self, tenant: Id) -> Result<Vec<Connection>> {
        let rows = self
            .raw(
                "SELECT body FROM connections WHERE tenant_id = $1 ORDER BY id",
                vec![db(tenant)],
            )
            .await?;
        rows.iter()
            .map(|b| decode_connection(b, &self.keys).map(|(c, _)| c))
            .collect()
    }

    async fn reseal(&self, write: bool) -> Result<u64> {
        let mut n = 0;
        let rows = self.raw("SELECT body FROM connections", vec![]).await?;
        for bytes in &rows {
            let (c, stale) = decode_connection(bytes, &self.keys)?;
            if stale {
                if write {
                    self.put_connection(&c).await?;
                }
                n += 1;
            }
        }
        let rows = self
            .on(move |pool| async move {
                let rows = sqlx::query("SELECT tenant_id, body FROM webhooks")
                    .fetch_all(&pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((id_of(r.try_get("tenant_id")?), r.try_get("body")?)))
                    .collect::<Result<Vec<(Id, Vec<u8>)>>>()
            })
            .await?;
        for (tenant, bytes) in &rows {
            let (w, stale) = decode_webhook(*tenant, bytes, &self.keys)?;
            if stale {
                if write {
                    self.put_webhook(*tenant, &w).await?;
                }
                n += 1;
            }
        }
        Ok(n)
    }

    async fn product(&self, tenant: Id, id: Id) -> Result<Option<Product>> {
        self.get_one(
            "SELECT body FROM products WHERE tenant_id = $1 AND id = $2",
            vec![db(tenant), db(id)],
        )
        .await
    }

    async fn product_ids_with_sku_containing(
        &self,
        tenant: Id,
        text: &str,
        most: usize,
    ) -> Result<Option<Vec<Id>>> {
        let needle = text.to_lowercase();
        self.on(move |pool| async move {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM products WHERE tenant_id = $1 AND strpos(lower(sku), $2) > 0
                 ORDER BY id LIMIT $3",
            )
            .bind(db(tenant))
            .bind(needle)
            .bind(count(most as u64 + 1))
            .fetch_all(&pool)
            .await?;
            Ok((ids.len() <= most).then(|| ids.into_iter().map(id_of).collect()))
        })
        .await
    }

    async fn product_id_by_sku(&self, tenant: Id, sku: &str) -> Result<Option<Id>> {
        let sku = sku.to_string();
        self.on(move |pool| async move {
            let id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM products WHERE tenant_id = $1 AND sku = $2")
                    .bind(db(tenant))
                    .bind(sku)
                    .fetch_optional(&pool)
                    .await?;
            Ok(id.map(id_of))
        })
        .await
    }

    async fn products_page(&self, tenant: Id, offset: u64, limit: u64) -> Result<Page<Product>> {
        self.on(move |pool| async move {
            let total: i64 =
                sqlx::query_scalar("SELECT count(*) FROM products WHERE tenant_id = $1")
                    .bind(db(tenant))
                    .fetch_one(&pool)
                    .await?;
            let rows = sqlx::query(
                "SELECT body FROM products WHERE tenant_id = $1 ORDER BY id OFFSET $2 LIMIT $3",
            )
            .bind(db(tenant))
            .bind(count(offset))
            .bind(count(limit))
            .fetch_all(&pool)
            .await?;
            Ok(Page {
                items: bodies(&rows)?,
                total: total as u64,
            })
        })
        .await
    }

    async fn upsert_products(&self, tenant: Id, mut products: Vec<Product>) -> Result<Upserted> {
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            // Uploads of one tenant take turns, so that the SKUs one finds missing are still
            // missing when it inserts them; other tenants' uploads do not wait.
            sqlx::query("SELECT pg_advisory_xact_lock(1, $1::int)")
                .bind((tenant % (i32::MAX as u64)) as i32)
                .execute(&mut *tx)
                .await?;
            let skus: Vec<String> = products.iter().map(|p| p.sku.clone()).collect();
            let known: Vec<(String, i64)> = sqlx::query_as(
                "SELECT sku, id FROM products WHERE tenant_id = $1 AND sku = ANY($2)",
            )
            .bind(db(tenant))
            .bind(&skus)
            .fetch_all(&mut *tx)
            .await?;
            let known: std::collections::HashMap<String, Id> =
                known.into_iter().map(|(s, id)| (s, id_of(id))).collect();
            let created = products.iter().filter(|p| !known.contains_key(&p.sku)).count() as u64;
            let mut fresh = allocate(&mut *tx, "product", created).await?;
            for p in &mut products {
                p.tenant_id = tenant;
                p.id = match known.get(&p.sku) {
                    Some(id) => *id,
                    // `fresh` holds exactly one id per new product.
                    None => fresh.next().unwrap_or(0),
                };
            }
            let mut ids = Vec::with_capacity(products.len());
            let mut bodies = Vec::with_capacity(products.len());
            for p in &products {
                ids.push(db(p.id));
                bodies.push(encode(p)?);
            }
            sqlx::query(
                "INSERT INTO products (tenant_id, id, sku, body)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::bytea[])
                 ON CONFLICT (tenant_id, id) DO UPDATE SET sku = EXCLUDED.sku, body = EXCLUDED.body",
            )
            .bind(db(tenant))
            .bind(&ids)
            .bind(&skus)
            .bind(&bodies)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Upserted { products, created })
        })
        .await
    }
}

fn cp_columns(cps: &[CampaignProduct]) -> [Vec<i64>; 3] {
    let mut cols = [Vec::new(), Vec::new(), Vec::new()];
    for cp in cps {
        cols[0].push(db(cp.campaign_id));
        cols[1].push(db(cp.connection_id));
        cols[2].push(db(cp.product_id));
    }
    cols
}

#[async_trait]
impl Campaigns for PgStore {
    async fn put_campaign(&self, c: &Campaign) -> Result<()> {
        self.write(
            "INSERT INTO campaigns (tenant_id, id, body) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, id) DO UPDATE SET body = EXCLUDED.body",
            vec![db(c.tenant_id), db(c.id)],
            encode(c)?,
        )
        .await
    }

    async fn campaign(&self, tenant: Id, id: Id) -> Result<Option<Campaign>> {
        self.get_one(
            "SELECT body FROM campaigns WHERE tenant_id = $1 AND id = $2",
            vec![db(tenant), db(id)],
        )
        .await
    }

    async fn campaigns(&self, tenant: Id) -> Result<Vec<Campaign>> {
        self.get_all(
            "SELECT body FROM campaigns WHERE tenant_id = $1 ORDER BY id",
            vec![db(tenant)],
        )
        .await
    }

    async fn schedule(&self, campaign: Id) -> Result<Option<Schedule>> {
        self.get_one(
            "SELECT body FROM schedules WHERE campaign_id = $1",
            vec![db(campaign)],
        )
        .await
    }

    async fn put_schedule(&self, s: &Schedule) -> Result<bool> {
        let s = s.clone();
        self.on(move |pool| async move { write_schedule(&pool, &s).await })
            .await
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<Schedule>> {
        self.get_all(
            "SELECT body FROM schedules WHERE next_due_at <= $1 ORDER BY next_due_at, campaign_id",
            vec![now],
        )
        .await
    }

    async fn put_campaign_product(&self, cp: &CampaignProduct) -> Result<()> {
        self.put_campaign_products(std::slice::from_ref(cp)).await
    }

    async fn put_campaign_products(&self, cps: &[CampaignProduct]) -> Result<()> {
        if cps.is_empty() {
            return Ok(());
        }
        let [campaigns, connections, products] = cp_columns(cps);
        let statuses: Vec<&'static str> = cps.iter().map(|c| c.status.as_str()).collect();
        let bodies = cps.iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.on(move |pool| async move {
            sqlx::query(
                "INSERT INTO campaign_products (campaign_id, connection_id, product_id, status, body)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[])
                 ON CONFLICT (campaign_id, connection_id, product_id)
                 DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body",
            )
            .bind(campaigns)
            .bind(connections)
            .bind(products)
            .bind(statuses)
            .bind(bodies)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn campaign_product(
        &self,
        campaign: Id,
        connection: Id,
        product: Id,
    ) -> Result<Option<CampaignProduct>> {
        self.get_one(
            "SELECT body FROM campaign_products
             WHERE campaign_id = $1 AND connection_id = $2 AND product_id = $3",
            vec![db(campaign), db(connection), db(product)],
        )
        .await
    }

    async fn remove_campaign_product(
        &self,
        campaign: Id,
        connection: Id,
        product: Id,
    ) -> Result<()> {
        self.exec(
            "DELETE FROM campaign_products
             WHERE campaign_id = $1 AND connection_id = $2 AND product_id = $3",
            vec![db(campaign), db(connection), db(product)],
        )
        .await
    }

    async fn campaign_products_from(
        &self,
        campaign: Id,
        after: Option<(Id, Id)>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>> {
        let (conn, product) = after.map_or((-1, -1), |(c, p)| (db(c), db(p)));
        self.get_all(
            "SELECT body FROM campaign_products
             WHERE campaign_id = $1 AND (connection_id, product_id) > ($2, $3)
             ORDER BY connection_id, product_id LIMIT $4",
            vec![db(campaign), conn, product, count(limit as u64)],
        )
        .await
    }

    async fn campaign_products_after(
        &self,
        campaign: Id,
        connection: Id,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<CampaignProduct>> {
        self.get_all(
            "SELECT body FROM campaign_products
             WHERE campaign_id = $1 AND connection_id = $2 AND product_id > $3
             ORDER BY product_id LIMIT $4",
            vec![
                db(campaign),
                db(connection),
                after.map_or(-1, db),
                count(limit as u64),
            ],
        )
        .await
    }

    async fn campaign_products_page(
        &self,
        campaign: Id,
        filter: &CpFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<CampaignProduct>> {
        let status = filter.status.map(|s| s.as_str());
        let connection = filter.connection_id.map(db);
        let products: Option<Vec<i64>> = filter
            .product_ids
            .as_ref()
            .map(|ids| ids.iter().copied().map(db).collect());
        self.on(move |pool| async move {
            const WHERE: &str = "WHERE campaign_id = $1
                 AND ($2::bigint IS NULL OR connection_id = $2)
                 AND ($3::text IS NULL OR status = $3)
                 AND ($4::bigint[] IS NULL OR product_id = ANY($4))";
            let total: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM campaign_products {WHERE}"))
                    .bind(db(campaign))
                    .bind(connection)
                    .bind(status)
                    .bind(products.clone())
                    .fetch_one(&pool)
                    .await?;
            let rows = sqlx::query(&format!(
                "SELECT body FROM campaign_products {WHERE}
                 ORDER BY connection_id, product_id OFFSET $5 LIMIT $6"
            ))
            .bind(db(campaign))
            .bind(connection)
            .bind(status)
            .bind(products)
            .bind(count(offset))
            .bind(count(limit))
            .fetch_all(&pool)
            .await?;
            Ok(Page {
                items: bodies(&rows)?,
                total: total as u64,
            })
        })
        .await
    }
}

#[async_trait]
impl Runs for PgStore {
    async fn lock(&self, campaign: Id) -> Result<Option<Lock>> {
        self.on(move |pool| async move {
            sqlx::query("SELECT * FROM locks WHERE campaign_id = $1")
                .bind(db(campaign))
                .fetch_optional(&pool)
                .await?
                .map(|r| lock_of(&r))
                .transpose()
        })
        .await
    }

    async fn all_locks(&self) -> Result<Vec<Lock>> {
        self.on(move |pool| async move {
            sqlx::query("SELECT * FROM locks ORDER BY campaign_id")
                .fetch_all(&pool)
                .await?
                .iter()
                .map(lock_of)
                .collect()
        })
        .await
    }

    async fn put_lock(&self, lock: &Lock) -> Result<()> {
        let lock = lock.clone();
        self.on(move |pool| async move {
            sqlx::query(
                "INSERT INTO locks (campaign_id, tracker_id, owner, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (campaign_id) DO UPDATE
                 SET tracker_id = $2, owner = $3, expires_at = $4",
            )
            .bind(db(lock.campaign_id))
            .bind(db(lock.tracker_id))
            .bind(lock.owner)
            .bind(lock.expires_at)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn remove_lock(&self, campaign: Id) -> Result<()> {
        self.exec(
            "DELETE FROM locks WHERE campaign_id = $1",
            vec![db(campaign)],
        )
        .await
    }

    async fn renew_lock(&self, campaign: Id, tracker: Id, expires_at: i64) -> Result<bool> {
        self.on(move |pool| async move {
            let done = sqlx::query(
                "UPDATE locks SET expires_at = $3 WHERE campaign_id = $1 AND tracker_id = $2",
            )
            .bind(db(campaign))
            .bind(db(tracker))
            .bind(expires_at)
            .execute(&pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn put_tracker(&self, t: &Tracker) -> Result<()> {
        let t = t.clone();
        self.on(move |pool| async move { upsert_tracker(&pool, &t).await })
            .await
    }

    async fn tracker(&self, id: Id) -> Result<Option<Tracker>> {
        self.get_one("SELECT body FROM trackers WHERE id = $1", vec![db(id)])
            .await
    }

    async fn campaign_trackers(&self, campaign: Id) -> Result<Vec<Tracker>> {
        self.get_all(
            "SELECT body FROM trackers WHERE campaign_id = $1 ORDER BY id DESC",
            vec![db(campaign)],
        )
        .await
    }

    async fn finish_run(
        &self,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        notification: Option<&Notification>,
        delivery: Option<(Id, &Delivery)>,
    ) -> Result<bool> {
        let tracker = tracker.clone();
        let campaign = campaign
            .map(|c| Ok::<_, StoreError>((db(c.tenant_id), db(c.id), encode(c)?)))
            .transpose()?;
        let notification = notification
            .map(|n| Ok::<_, StoreError>((db(n.tenant_id), db(n.id), encode(n)?)))
            .transpose()?;
        let delivery = delivery
            .map(|(id, d)| Ok::<_, StoreError>((db(id), db(d.tenant_id), encode(d)?)))
            .transpose()?;
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            let still_active = locked_tracker(&mut tx, tracker.id)
                .await?
                .is_some_and(|t| t.status == TrackerStatus::Active);
            if !still_active {
                return Ok(false);
            }
            upsert_tracker(&mut *tx, &tracker).await?;
            if let Some((tenant, id, bytes)) = campaign {
                sqlx::query(
                    "INSERT INTO campaigns (tenant_id, id, body) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, id) DO UPDATE SET body = EXCLUDED.body",
                )
                .bind(tenant)
                .bind(id)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
            }
            if let Some((tenant, id, bytes)) = notification {
                sqlx::query(
                    "INSERT INTO notifications (tenant_id, id, body) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, id) DO UPDATE SET body = EXCLUDED.body",
                )
                .bind(tenant)
                .bind(id)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
            }
            if let Some((id, tenant, bytes)) = delivery {
                sqlx::query(
                    "INSERT INTO outbox (id, tenant_id, body) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                )
                .bind(id)
                .bind(tenant)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM locks WHERE campaign_id = $1 AND tracker_id = $2")
                .bind(db(tracker.campaign_id))
                .bind(db(tracker.id))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM work_items WHERE tracker_id = $1")
                .bind(db(tracker.id))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}

async fn upsert_tracker(exec: impl sqlx::PgExecutor<'_>, t: &Tracker) -> Result<()> {
    sqlx::query(
        "INSERT INTO trackers (id, tenant_id, campaign_id, status, body)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body",
    )
    .bind(db(t.id))
    .bind(db(t.tenant_id))
    .bind(db(t.campaign_id))
    .bind(tracker_status(t.status))
    .bind(encode(t)?)
    .execute(exec)
    .await?;
    Ok(())
}

async fn put_item(exec: impl sqlx::PgExecutor<'_>, item: &WorkItem) -> Result<()> {
    sqlx::query(
        "INSERT INTO work_items (tracker_id, connection_id, done, body) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tracker_id, connection_id) DO UPDATE SET done = $3, body = $4",
    )
    .bind(db(item.tracker_id))
    .bind(db(item.connection_id))
    .bind(item.done)
    .bind(encode(item)?)
    .execute(exec)
    .await?;
    Ok(())
}

/// Locks a tracker's row for the rest of the transaction and reads it: what serializes the
/// changes of one run's items and tracker between nodes.
async fn locked_tracker(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Id,
) -> Result<Option<Tracker>> {
    sqlx::query("SELECT body FROM trackers WHERE id = $1 FOR UPDATE")
        .bind(db(id))
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| body(&r))
        .transpose()
}

#[async_trait]
impl Cluster for PgStore {
    fn shared(&self) -> bool {
        true
    }

    async fn start_run(
        &self,
        lock: &Lock,
        replacing: Option<Id>,
        tracker: &Tracker,
        campaign: Option<&Campaign>,
        schedule: Option<&Schedule>,
    ) -> Result<bool> {
        let lock = lock.clone();
        let tracker = tracker.clone();
        let schedule = schedule.cloned();
        let campaign = campaign
            .map(|c| Ok::<_, StoreError>((db(c.tenant_id), db(c.id), encode(c)?)))
            .transpose()?;
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            // The lock is taken only if it is free or held by the run just taken over; two
            // nodes starting one campaign at once meet here, and one of them gets nothing.
            // `tracker_id = NULL` is never true: without a run to replace, a held lock stays.
            let taken = sqlx::query(
                "INSERT INTO locks (campaign_id, tracker_id, owner, expires_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (campaign_id) DO UPDATE
                 SET tracker_id = $2, owner = $3, expires_at = $4
                 WHERE locks.tracker_id = $5",
            )
            .bind(db(lock.campaign_id))
            .bind(db(lock.tracker_id))
            .bind(&lock.owner)
            .bind(lock.expires_at)
            .bind(replacing.map(db))
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            if let Some(s) = &schedule {
                if !write_schedule(&mut *tx, s).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
            }
            upsert_tracker(&mut *tx, &tracker).await?;
            for c in &tracker.connections {
                put_item(&mut *tx, &WorkItem::new(&tracker, c.connection_id)).await?;
            }
            if let Some((tenant, id, bytes)) = campaign {
                sqlx::query(
                    "INSERT INTO campaigns (tenant_id, id, body) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, id) DO UPDATE SET body = EXCLUDED.body",
                )
                .bind(tenant)
                .bind(id)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn put_work(&self, items: &[WorkItem]) -> Result<()> {
        let items = items.to_vec();
        self.on(move |pool| async move {
            for item in &items {
                put_item(&pool, item).await?;
            }
            Ok(())
        })
        .await
    }

    async fn work(&self, tracker: Id) -> Result<Vec<WorkItem>> {
        self.get_all(
            "SELECT body FROM work_items WHERE tracker_id = $1 ORDER BY connection_id",
            vec![db(tracker)],
        )
        .await
    }

    async fn open_work(&self) -> Result<Vec<WorkItem>> {
        self.get_all(
            "SELECT body FROM work_items WHERE NOT done ORDER BY tracker_id, connection_id",
            vec![],
        )
        .await
    }

    async fn claim_work(&self, tracker: Id, connection: Id) -> Result<Option<WorkItem>> {
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "SELECT body FROM work_items
                 WHERE tracker_id = $1 AND connection_id = $2 AND NOT done FOR UPDATE",
            )
            .bind(db(tracker))
            .bind(db(connection))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let before = item_of(&row)?;
            let mut item = before.clone();
            item.attempts += 1;
            put_item(&mut *tx, &item).await?;
            tx.commit().await?;
            Ok(Some(before))
        })
        .await
    }

    async fn cancel_run(&self, tracker: Id, reason: &str, now: i64) -> Result<()> {
        let reason = reason.to_string();
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            let t = locked_tracker(&mut tx, tracker).await?;
            let rows =
                sqlx::query("SELECT body FROM work_items WHERE tracker_id = $1 AND NOT done")
                    .bind(db(tracker))
                    .fetch_all(&mut *tx)
                    .await?;
            for row in &rows {
                let mut item = item_of(row)?;
                if item.cancel.is_none() {
                    item.cancel = Some(reason.clone());
                    put_item(&mut *tx, &item).await?;
                }
            }
            if let Some(mut t) = t {
                let patch = TrackerPatch {
                    events: vec![format!("stopping: {reason}")],
                    updated_at: now,
                    ..TrackerPatch::default()
                };
                if t.apply(&patch) {
                    upsert_tracker(&mut *tx, &t).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn end_work(
        &self,
        tracker: Id,
        connection: Id,
        failure: Option<String>,
    ) -> Result<Vec<WorkItem>> {
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            locked_tracker(&mut tx, tracker).await?;
            let rows = sqlx::query(
                "SELECT body FROM work_items WHERE tracker_id = $1 ORDER BY connection_id",
            )
            .bind(db(tracker))
            .fetch_all(&mut *tx)
            .await?;
            let mut items = rows.iter().map(item_of).collect::<Result<Vec<_>>>()?;
            if let Some(item) = items.iter_mut().find(|i| i.connection_id == connection) {
                item.done = true;
                item.failure = item.failure.take().or(failure);
                put_item(&mut *tx, item).await?;
            }
            tx.commit().await?;
            Ok(items)
        })
        .await
    }

    async fn patch_tracker(&self, id: Id, patch: &TrackerPatch) -> Result<Option<Tracker>> {
        let patch = patch.clone();
        self.on(move |pool| async move {
            let mut tx = pool.begin().await?;
            let Some(mut t) = locked_tracker(&mut tx, id).await? else {
                return Ok(None);
            };
            if !t.apply(&patch) {
                return Ok(None);
            }
            upsert_tracker(&mut *tx, &t).await?;
            tx.commit().await?;
            Ok(Some(t))
        })
        .await
    }

    async fn heartbeat(&self, node: &Node) -> Result<()> {
        let node = node.clone();
        self.on(move |pool| async move {
            sqlx::query(
                "INSERT INTO nodes (id, expires_at) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET expires_at = $2",
            )
            .bind(node.id)
            .bind(node.expires_at)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn live_nodes(&self, now: i64) -> Result<usize> {
        self.on(move |pool| async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes WHERE expires_at > $1")
                .bind(now)
                .fetch_one(&pool)
                .await?;
            Ok(n as usize)
        })
        .await
    }

    async fn acquire_lease(&self, lease: &Lease, now: i64) -> Result<Option<Option<Lease>>> {
        let lease = lease.clone();
        self.on(move |pool| async move {
            // The row as it was, locked until the take commits, so that what comes back is who
            // held the lease just before us. (One statement cannot tell it: a CTE reading the
            // row FOR UPDATE sees nothing once the same statement has updated it.)
            let mut tx = pool.begin().await?;
            let before: Option<(String, i64)> = sqlx::query_as(
                "SELECT owner, expires_at FROM leases WHERE connection_id = $1 FOR UPDATE",
            )
            .bind(db(lease.connection_id))
            .fetch_optional(&mut *tx)
            .await?;
            // A row inserted meanwhile by another node conflicts, and the condition decides.
            let taken: Option<i64> = sqlx::query_scalar(
                "INSERT INTO leases (connection_id, owner, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (connection_id) DO UPDATE SET owner = $2, expires_at = $3
                 WHERE leases.owner = $2 OR leases.expires_at <= $4
                 RETURNING connection_id",
            )
            .bind(db(lease.connection_id))
            .bind(&lease.owner)
            .bind(lease.expires_at)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(taken.map(|_| {
                before.map(|(owner, expires_at)| Lease {
                    connection_id: lease.connection_id,
                    owner,
                    expires_at,
                })
            }))
        })
        .await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        connections: &[Id],
        expires_at: i64,
    ) -> Result<Vec<Id>> {
        let owner = owner.to_string();
        let ids: Vec<i64> = connections.iter().map(|c| db(*c)).collect();
        self.on(move |pool| async move {
            let renewed: Vec<i64> = sqlx::query_scalar(
                "UPDATE leases SET expires_at = $3
                 WHERE owner = $1 AND connection_id = ANY($2) RETURNING connection_id",
            )
            .bind(owner)
            .bind(ids)
            .bind(expires_at)
            .fetch_all(&pool)
            .await?;
            Ok(renewed.into_iter().map(id_of).collect())
        })
        .await
    }

    async fn release_leases(
        &self,
        owner: &str,
        connections: Option<&[Id]>,
        now: i64,
    ) -> Result<()> {
        let owner = owner.to_string();
        let ids: Option<Vec<i64>> = connections.map(|cs| cs.iter().map(|c| db(*c)).collect());
        self.on(move |pool| async move {
            sqlx::query(
                "UPDATE leases SET expires_at = $3
                 WHERE owner = $1 AND ($2::bigint[] IS NULL OR connection_id = ANY($2))
                   AND expires_at > $3",
            )
            .bind(owner)
            .bind(ids)
            .bind(now)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn signal(&self, signal: Signal) -> Result<()> {
        let payload = signal.encode();
        self.on(move |pool| async move {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }
}

#[async_trait]
impl Outbox for PgStore {
    async fn notifications(&self, tenant: Id) -> Result<Vec<Notification>> {
        self.get_all(
            "SELECT body FROM notifications WHERE tenant_id = $1 ORDER BY id DESC",
            vec![db(tenant)],
        )
        .await
    }

    async fn put_notification(&self, n: &Notification) -> Result<()> {
        self.write(
            "INSERT INTO notifications (tenant_id, id, body) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, id) DO UPDATE SET body = EXCLUDED.body",
            vec![db(n.tenant_id), db(n.id)],
            encode(n)?,
        )
        .await
    }

    async fn notification(&self, tenant: Id, id: Id) -> Result<Option<Notification>> {
        self.get_one(
            "SELECT body FROM notifications WHERE tenant_id = $1 AND id = $2",
            vec![db(tenant), db(id)],
        )
        .await
    }

    async fn webhook(&self, tenant: Id) -> Result<Option<Webhook>> {
        let rows = self
            .raw(
                "SELECT body FROM webhooks WHERE tenant_id = $1",
                vec![db(tenant)],
            )
            .await?;
        rows.first()
            .map(|b| decode_webhook(tenant, b, &self.keys).map(|(w, _)| w))
            .transpose()
    }

    async fn put_webhook(&self, tenant: Id, w: &Webhook) -> Result<()> {
        self.write(
            "INSERT INTO webhooks (tenant_id, body) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET body = EXCLUDED.body",
            vec![db(tenant)],
            encode_webhook(tenant, w, &self.keys)?,
        )
        .await
    }

    async fn remove_webhook(&self, tenant: Id) -> Result<()> {
        self.exec(
            "DELETE FROM webhooks WHERE tenant_id = $1",
            vec![db(tenant)],
        )
        .await
    }

    async fn outbox(&self) -> Result<Vec<(Id, Delivery)>> {
        self.on(move |pool| async move {
            let rows = sqlx::query("SELECT id, body FROM outbox ORDER BY id")
                .fetch_all(&pool)
                .await?;
            rows.iter()
                .map(|r| Ok((id_of(r.try_get("id")?), body(r)?)))
                .collect()
        })
        .await
    }

    async fn put_delivery(&self, id: Id, d: &Delivery) -> Result<()> {
        self.write(
            "INSERT INTO outbox (id, tenant_id, body) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            vec![db(id), db(d.tenant_id)],
            encode(d)?,
        )
        .await
    }

    async fn remove_delivery(&self, id: Id) -> Result<()> {
        self.exec("DELETE FROM outbox WHERE id = $1", vec![db(id)])
            .await
    }
}
