//! The store's contract: one suite of behaviours every backend shows, run on sled and on
//! PostgreSQL (a private server of the tests' own, `pg_server`). Each backend is reached only
//! through `store::open`, as the service reaches it, so a behaviour is written once and a
//! backend that differs fails here, not first in the black-box suite.

use std::sync::Arc;

use domain::*;

use crate::config::{StoreBackend, StoreConfig};
use crate::secrets::Keys;
use crate::{SharedStore, Store};

/// A fresh, empty store of one backend, with what must live as long as it.
struct Fresh {
    store: SharedStore,
    _dir: tempfile::TempDir,
}

fn fresh(backend: StoreBackend) -> Fresh {
    let dir = tempfile::tempdir().expect("a directory");
    let url = match backend {
        StoreBackend::Sled => None,
        StoreBackend::Postgres => Some(crate::pg_server::shared().fresh_database()),
    };
    let config = StoreConfig {
        backend,
        data_dir: dir.path().join("db"),
        cache_mb: 8,
        url,
        pool_size: 4,
    };
    let store = crate::open(&config, Arc::new(Keys::generate())).expect("the store opens");
    Fresh { store, _dir: dir }
}

/// One `#[tokio::test]` per behaviour and backend: `on_sled::x` and `on_postgres::x`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test]
                async fn $name() {
                    let fresh = super::fresh(crate::config::StoreBackend::Sled);
                    super::$name(&*fresh.store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let fresh = super::fresh(crate::config::StoreBackend::Postgres);
                    super::$name(&*fresh.store).await;
                }
            )*
        }
    };
}

contract!(
    a_schedule_write_from_a_stale_read_is_refused_and_the_due_index_follows,
    a_lease_taken_tells_who_held_it_last_and_until_when,
    ids_are_allocated_per_kind_from_one,
    a_chunked_scan_stays_inside_one_connection_and_resumes_after_a_key,
    an_upload_keeps_the_ids_of_known_skus_and_numbers_new_ones,
    finishing_a_run_releases_only_its_own_lock,
    renewing_a_lock_held_by_another_run_does_nothing,
);

pub(super) async fn a_schedule_write_from_a_stale_read_is_refused_and_the_due_index_follows(
    store: &dyn Store,
) {
    let s = Schedule {
        starts_at: Some(100),
        ends_at: Some(200),
        ..Schedule::new(1, 5)
    };
    assert!(store.put_schedule(&s).await.expect("writes"));
    assert!(
        !store.put_schedule(&s).await.expect("answers"),
        "read at 0, stored at 1"
    );
    let read = store.schedule(5).await.expect("reads").expect("stored");
    assert_eq!(read.version, 1);
    assert!(store.due_schedules(99).await.expect("scans").is_empty());
    assert_eq!(store.due_schedules(100).await.expect("scans").len(), 1);
    let mut taken = read.clone();
    taken.steps.push(StepRecord {
        step: Step::Start,
        due_at: 100,
        at: 100,
        action: Some(Action::Publish),
        tracker_id: Some(1),
        skipped: None,
    });
    assert!(store.put_schedule(&taken).await.expect("writes"));
    // Due next at the end only: the start's entry left the index.
    assert!(store.due_schedules(150).await.expect("scans").is_empty());
    assert_eq!(store.due_schedules(200).await.expect("scans")[0].version, 2);
    assert!(
        !store.put_schedule(&read).await.expect("answers"),
        "a stale read loses"
    );
}

pub(super) async fn a_lease_taken_tells_who_held_it_last_and_until_when(s: &dyn Store) {
    let lease = |owner: &str, expires_at| domain::Lease {
        connection_id: 3,
        owner: owner.into(),
        expires_at,
    };
    assert_eq!(
        s.acquire_lease(&lease("a", 100), 0).await.unwrap(),
        Some(None)
    );
    assert_eq!(
        s.acquire_lease(&lease("b", 150), 50).await.unwrap(),
        None,
        "a holds it"
    );
    s.release_leases("a", None, 60).await.unwrap();
    assert_eq!(
        s.acquire_lease(&lease("b", 200), 70).await.unwrap(),
        Some(Some(lease("a", 60))),
        "released at 60"
    );
    assert_eq!(
        s.acquire_lease(&lease("a", 400), 300).await.unwrap(),
        Some(Some(lease("b", 200))),
        "expired at 200"
    );
}

pub(super) async fn ids_are_allocated_per_kind_from_one(s: &dyn Store) {
    assert_eq!(s.next_id("campaign").await.unwrap(), 1);
    assert_eq!(s.next_ids("product", 3).await.unwrap(), 1..4);
    assert_eq!(s.next_id("product").await.unwrap(), 4);
    assert_eq!(s.next_id("campaign").await.unwrap(), 2);
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
        sale_price: None,
        presale_price: None,
        drift: None,
    }
}

pub(super) async fn a_chunked_scan_stays_inside_one_connection_and_resumes_after_a_key(
    s: &dyn Store,
) {
    let rows: Vec<_> = (1..=5)
        .map(|p| cp(1, 2, p, ProductStatus::Pending))
        .chain([
            cp(1, 3, 1, ProductStatus::Pending),
            cp(2, 2, 1, ProductStatus::Pending),
        ])
        .collect();
    s.put_campaign_products(&rows).await.unwrap();
    let first = s.campaign_products_after(1, 2, None, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|c| c.product_id).collect::<Vec<_>>(),
        [1, 2]
    );
    let rest = s.campaign_products_after(1, 2, Some(2), 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|c| c.product_id).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    // The whole campaign, a page at a time, crosses connections and stops at its end.
    let first = s.campaign_products_from(1, None, 4).await.unwrap();
    let keys = |rows: &[CampaignProduct]| {
        rows.iter()
            .map(|c| (c.connection_id, c.product_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), [(2, 1), (2, 2), (2, 3), (2, 4)]);
    let next = s.campaign_products_from(1, Some((2, 4)), 4).await.unwrap();
    assert_eq!(keys(&next), [(2, 5), (3, 1)]);
}

pub(super) async fn an_upload_keeps_the_ids_of_known_skus_and_numbers_new_ones(s: &dyn Store) {
    let product = |sku: &str, name: &str| Product {
        id: 0,
        tenant_id: 0,
        sku: sku.into(),
        name: name.into(),
        description: String::new(),
        price: 1.0,
        stock: 1,
        variants: vec![],
        images: vec![],
        updated_at: 0,
        details: Default::default(),
    };
    let first = s
        .upsert_products(7, vec![product("A", "a"), product("B", "b")])
        .await
        .unwrap();
    assert_eq!(first.created, 2);
    let second = s
        .upsert_products(7, vec![product("B", "b2"), product("C", "c")])
        .await
        .unwrap();
    assert_eq!(second.created, 1);
    let ids: Vec<_> = second
        .products
        .iter()
        .map(|p| (p.sku.as_str(), p.id))
        .collect();
    assert_eq!(ids, [("B", first.products[1].id), ("C", 3)]);
    assert_eq!(
        s.product(7, first.products[1].id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "b2"
    );
    assert_eq!(s.product_id_by_sku(8, "A").await.unwrap(), None);
}

pub(super) async fn finishing_a_run_releases_only_its_own_lock(s: &dyn Store) {
    let lock = Lock {
        campaign_id: 1,
        tracker_id: 5,
        owner: "me".into(),
        expires_at: 10,
    };
    s.put_lock(&lock).await.unwrap();
    let mut t = Tracker {
        id: 4,
        tenant_id: 1,
        campaign_id: 1,
        marketplace_id: None,
        action: Action::Pause,
        status: TrackerStatus::Active,
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
            notify: true,
            scheduled: None,
            prices: domain::PriceMode::Regular,
        },
        error_message: None,
        started_at: 0,
        completed_at: None,
        updated_at: 0,
    };
    s.put_tracker(&t).await.unwrap();
    t.id = 5;
    s.put_tracker(&t).await.unwrap();
    t.status = TrackerStatus::Completed;
    t.id = 4;
    assert!(s.finish_run(&t, None, None, None).await.unwrap());
    assert_eq!(s.lock(1).await.unwrap(), Some(lock));
    // A tracker ends once: a second end writes nothing.
    assert!(!s.finish_run(&t, None, None, None).await.unwrap());
    t.id = 5;
    assert!(s.finish_run(&t, None, None, None).await.unwrap());
    assert_eq!(s.lock(1).await.unwrap(), None);
    assert_eq!(s.campaign_trackers(1).await.unwrap().len(), 2);
}

pub(super) async fn renewing_a_lock_held_by_another_run_does_nothing(s: &dyn Store) {
    s.put_lock(&Lock {
        campaign_id: 1,
        tracker_id: 5,
        owner: "me".into(),
        expires_at: 10,
    })
    .await
    .unwrap();
    assert!(!s.renew_lock(1, 6, 99).await.unwrap());
    assert!(s.renew_lock(1, 5, 99).await.unwrap());
    assert_eq!(s.lock(1).await.unwrap().unwrap().expires_at, 99);
}
