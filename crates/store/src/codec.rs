//! The versioned envelope every sled value is stored in: one format-version byte, then the record
//! in postcard. postcard is positional, so a record that gains a field gets a new version and a
//! migration on read; golden-byte tests below fail when a format changes by accident.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Serialize};
use zeroize::Zeroize;

use super::StoreError;
use crate::secrets::{Keys, SecretError};
use domain::{
    ApiToken, Campaign, CampaignProduct, Connection, Delivery, Id, Lease, Lock, Millis, Node,
    Notification, Product, RateLimit, Schedule, System, Tenant, Tracker, Webhook, WorkItem,
};

/// A record stored in sled, with the version of its current encoding.
pub trait Record: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const VERSION: u8;

    /// Reads a value written in an older version of the record, if that version is known.
    fn upgrade(_version: u8, _body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        None
    }
}

macro_rules! record {
    ($($ty:ty => $kind:literal),* $(,)?) => {
        $(impl Record for $ty {
            const KIND: &'static str = $kind;
            const VERSION: u8 = 1;
        })*
    };
}

record! {
    Tenant => "tenant",
    Campaign => "campaign",
    Lock => "lock",
    Notification => "notification",
    Delivery => "delivery",
    WorkItem => "work_item",
    Lease => "lease",
    Node => "node",
}

impl Record for ApiToken {
    const KIND: &'static str = "api_token";
    /// 2: `name` and `expires_at`.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| {
            let (tenant_id, created_at): (Id, Millis) = postcard::from_bytes(body)?;
            Ok(ApiToken {
                tenant_id,
                created_at,
                name: String::new(),
                expires_at: None,
            })
        })
    }
}

impl Record for Product {
    const KIND: &'static str = "product";
    /// 2: `details` (brand, barcode, MercadoLibre's fields) and `Variant.barcode`.
    /// 3: MercadoLibre's `category_id` and `listing_type_id` per product.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match version {
            1 => Some(postcard::from_bytes::<old::ProductV1>(body).map(Product::from)),
            2 => Some(postcard::from_bytes::<old::ProductV2>(body).map(Product::from)),
            _ => None,
        }
    }
}

impl Record for Schedule {
    const KIND: &'static str = "schedule";
    /// 2: `drift`, the periodic drift check.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| postcard::from_bytes::<old::ScheduleV1>(body).map(Schedule::from))
    }
}

impl Record for CampaignProduct {
    const KIND: &'static str = "campaign_product";
    /// 2: `sale_price`, `presale_price` and `MarketplaceInfo.sent`; 3: `drift`;
    /// 4: `MarketplaceInfo.unsettled_at`; 5: `MarketplaceInfo.unanswered_creates`.
    const VERSION: u8 = 5;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match version {
            1 => Some(
                postcard::from_bytes::<old::CampaignProductV1>(body).map(CampaignProduct::from),
            ),
            2 => Some(
                postcard::from_bytes::<old::CampaignProductV2>(body).map(CampaignProduct::from),
            ),
            3 => Some(
                postcard::from_bytes::<old::CampaignProductV3<old::InfoV2>>(body)
                    .map(CampaignProduct::from),
            ),
            4 => Some(
                postcard::from_bytes::<old::CampaignProductV3<old::InfoV4>>(body)
                    .map(CampaignProduct::from),
            ),
            _ => None,
        }
    }
}

impl Record for Tracker {
    const KIND: &'static str = "tracker";
    /// 2: `TrackerMeta.retry`; 3: `TrackerMeta.notify`, `scheduled` and `prices`.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match version {
            1 => Some(postcard::from_bytes::<old::Tracker<old::MetaV1>>(body).map(Tracker::from)),
            2 => Some(postcard::from_bytes::<old::Tracker<old::MetaV2>>(body).map(Tracker::from)),
            _ => None,
        }
    }
}

/// Records as older versions wrote them, and how each reads today.
mod old {
    use serde::Deserialize;

    use domain::{
        drift::DriftCheck, Action, ConnProgress, Id, MarketplaceInfo, Millis, PriceMode,
        ProductStatus, RunMark, Sent, StepRecord, TrackerMeta, TrackerStatus,
    };

    /// `TrackerMeta` before `retry` (version 1).
    #[derive(Deserialize)]
    pub struct MetaV1 {
        campaign_name: String,
        total_products: u64,
        chunk_size: u32,
        fail_fast: bool,
        force: bool,
        product_level: bool,
        events: Vec<String>,
        product_ids: Vec<Id>,
    }

    /// `TrackerMeta` before `notify`, `scheduled` and `prices` (version 2). postcard is
    /// positional, so the fields are spelled out rather than nested.
    #[derive(Deserialize)]
    pub struct MetaV2 {
        campaign_name: String,
        total_products: u64,
        chunk_size: u32,
        fail_fast: bool,
        force: bool,
        product_level: bool,
        events: Vec<String>,
        product_ids: Vec<Id>,
        retry: bool,
    }

    impl From<MetaV1> for TrackerMeta {
        fn from(m: MetaV1) -> Self {
            TrackerMeta {
                campaign_name: m.campaign_name,
                total_products: m.total_products,
                chunk_size: m.chunk_size,
                fail_fast: m.fail_fast,
                force: m.force,
                product_level: m.product_level,
                events: m.events,
                product_ids: m.product_ids,
                retry: false,
                notify: true,
                scheduled: None,
                prices: PriceMode::Regular,
            }
        }
    }

    impl From<MetaV2> for TrackerMeta {
        fn from(m: MetaV2) -> Self {
            let retry = m.retry;
            TrackerMeta {
                retry,
                ..TrackerMeta::from(MetaV1 {
                    campaign_name: m.campaign_name,
                    total_products: m.total_products,
                    chunk_size: m.chunk_size,
                    fail_fast: m.fail_fast,
                    force: m.force,
                    product_level: m.product_level,
                    events: m.events,
                    product_ids: m.product_ids,
                })
            }
        }
    }

    #[derive(Deserialize)]
    pub struct Tracker<M> {
        id: Id,
        tenant_id: Id,
        campaign_id: Id,
        marketplace_id: Option<Id>,
        action: Action,
        status: TrackerStatus,
        connections: Vec<ConnProgress>,
        metadata: M,
        error_message: Option<String>,
        started_at: Millis,
        completed_at: Option<Millis>,
        updated_at: Millis,
    }

    impl<M: Into<TrackerMeta>> From<Tracker<M>> for domain::Tracker {
        fn from(t: Tracker<M>) -> Self {
            domain::Tracker {
                id: t.id,
                tenant_id: t.tenant_id,
                campaign_id: t.campaign_id,
                marketplace_id: t.marketplace_id,
                action: t.action,
                status: t.status,
                connections: t.connections,
                metadata: t.metadata.into(),
                error_message: t.error_message,
                started_at: t.started_at,
                completed_at: t.completed_at,
                updated_at: t.updated_at,
            }
        }
    }

    /// `MarketplaceInfo` before `sent` (campaign product version 1).
    #[derive(Deserialize)]
    pub struct InfoV1 {
        product_id: Option<String>,
        variant_ids: Vec<(String, String)>,
        image_ids: Vec<(String, String)>,
        create_sent: bool,
        remote_status: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct CampaignProductV1 {
        campaign_id: Id,
        connection_id: Id,
        product_id: Id,
        status: ProductStatus,
        marketplace_info: InfoV1,
        error_message: Option<String>,
        published_at: Option<Millis>,
        updated_at: Millis,
        run: Option<RunMark>,
    }

    impl From<CampaignProductV1> for domain::CampaignProduct {
        fn from(c: CampaignProductV1) -> Self {
            let i = c.marketplace_info;
            domain::CampaignProduct {
                campaign_id: c.campaign_id,
                connection_id: c.connection_id,
                product_id: c.product_id,
                status: c.status,
                marketplace_info: MarketplaceInfo {
                    product_id: i.product_id,
                    variant_ids: i.variant_ids,
                    image_ids: i.image_ids,
                    create_sent: i.create_sent,
                    remote_status: i.remote_status,
                    sent: None,
                    unsettled_at: None,
                    unanswered_creates: 0,
                },
                error_message: c.error_message,
                published_at: c.published_at,
                updated_at: c.updated_at,
                run: c.run,
                sale_price: None,
                presale_price: None,
                drift: None,
            }
        }
    }

    /// `MarketplaceInfo` before `unsettled_at` (campaign product versions 2 and 3).
    #[derive(Deserialize)]
    pub struct InfoV2 {
        product_id: Option<String>,
        variant_ids: Vec<(String, String)>,
        image_ids: Vec<(String, String)>,
        create_sent: bool,
        remote_status: Option<String>,
        sent: Option<Sent>,
    }

    impl From<InfoV2> for MarketplaceInfo {
        fn from(i: InfoV2) -> Self {
            MarketplaceInfo {
                product_id: i.product_id,
                variant_ids: i.variant_ids,
                image_ids: i.image_ids,
                create_sent: i.create_sent,
                remote_status: i.remote_status,
                sent: i.sent,
                unsettled_at: None,
                unanswered_creates: 0,
            }
        }
    }

    /// `MarketplaceInfo` before `unanswered_creates` (campaign product version 4).
    #[derive(Deserialize)]
    pub struct InfoV4 {
        product_id: Option<String>,
        variant_ids: Vec<(String, String)>,
        image_ids: Vec<(String, String)>,
        create_sent: bool,
        remote_status: Option<String>,
        sent: Option<Sent>,
        unsettled_at: Option<Millis>,
    }

    impl From<InfoV4> for MarketplaceInfo {
        fn from(i: InfoV4) -> Self {
            MarketplaceInfo {
                product_id: i.product_id,
                variant_ids: i.variant_ids,
                image_ids: i.image_ids,
                create_sent: i.create_sent,
                remote_status: i.remote_status,
                sent: i.sent,
                unsettled_at: i.unsettled_at,
                unanswered_creates: 0,
            }
        }
    }

    /// A campaign product of version 3 (`I`: `InfoV2`) or 4 (`InfoV4`), before
    /// `MarketplaceInfo` took `unsettled_at` and `unanswered_creates`.
    #[derive(Deserialize)]
    pub struct CampaignProductV3<I> {
        campaign_id: Id,
        connection_id: Id,
        product_id: Id,
        status: ProductStatus,
        marketplace_info: I,
        error_message: Option<String>,
        published_at: Option<Millis>,
        updated_at: Millis,
        run: Option<RunMark>,
        sale_price: Option<f64>,
        presale_price: Option<f64>,
        drift: Option<DriftCheck>,
    }

    impl<I: Into<MarketplaceInfo>> From<CampaignProductV3<I>> for domain::CampaignProduct {
        fn from(c: CampaignProductV3<I>) -> Self {
            domain::CampaignProduct {
                campaign_id: c.campaign_id,
                connection_id: c.connection_id,
                product_id: c.product_id,
                status: c.status,
                marketplace_info: c.marketplace_info.into(),
                error_message: c.error_message,
                published_at: c.published_at,
                updated_at: c.updated_at,
                run: c.run,
                sale_price: c.sale_price,
                presale_price: c.presale_price,
                drift: c.drift,
            }
        }
    }

    /// A campaign product before `drift` (version 2).
    #[derive(Deserialize)]
    pub struct CampaignProductV2 {
        campaign_id: Id,
        connection_id: Id,
        product_id: Id,
        status: ProductStatus,
        marketplace_info: InfoV2,
        error_message: Option<String>,
        published_at: Option<Millis>,
        updated_at: Millis,
        run: Option<RunMark>,
        sale_price: Option<f64>,
        presale_price: Option<f64>,
    }

    impl From<CampaignProductV2> for domain::CampaignProduct {
        fn from(c: CampaignProductV2) -> Self {
            domain::CampaignProduct {
                campaign_id: c.campaign_id,
                connection_id: c.connection_id,
                product_id: c.product_id,
                status: c.status,
                marketplace_info: c.marketplace_info.into(),
                error_message: c.error_message,
                published_at: c.published_at,
                updated_at: c.updated_at,
                run: c.run,
                sale_price: c.sale_price,
                presale_price: c.presale_price,
                drift: None,
            }
        }
    }

    /// A variant before `barcode` (product version 1).
    #[derive(Deserialize)]
    pub struct VariantV1 {
        sku: String,
        price: f64,
        stock: i64,
        options: std::collections::BTreeMap<String, String>,
    }

    /// MercadoLibre's fields before the category and listing type (product version 2).
    #[derive(Deserialize)]
    pub struct MercadoLibreDetailsV2 {
        attributes: Vec<domain::Attribute>,
    }

    #[derive(Deserialize)]
    pub struct DetailsV2 {
        brand: Option<String>,
        barcode: Option<String>,
        mercadolibre: Option<MercadoLibreDetailsV2>,
    }

    /// A product before MercadoLibre's category and listing type (version 2).
    #[derive(Deserialize)]
    pub struct ProductV2 {
        id: Id,
        tenant_id: Id,
        sku: String,
        name: String,
        description: String,
        price: f64,
        stock: i64,
        variants: Vec<domain::Variant>,
        images: Vec<domain::Image>,
        updated_at: Millis,
        details: DetailsV2,
    }

    impl From<ProductV2> for domain::Product {
        fn from(p: ProductV2) -> Self {
            domain::Product {
                id: p.id,
                tenant_id: p.tenant_id,
                sku: p.sku,
                name: p.name,
                description: p.description,
                price: p.price,
                stock: p.stock,
                variants: p.variants,
                images: p.images,
                updated_at: p.updated_at,
                details: domain::Details {
                    brand: p.details.brand,
                    barcode: p.details.barcode,
                    mercadolibre: p.details.mercadolibre.map(|m| domain::MercadoLibreDetails {
                        attributes: m.attributes,
                        category_id: None,
                        listing_type_id: None,
                    }),
                },
            }
        }
    }

    /// A product before `details` (version 1).
    #[derive(Deserialize)]
    pub struct ProductV1 {
        id: Id,
        tenant_id: Id,
        sku: String,
        name: String,
        description: String,
        price: f64,
        stock: i64,
        variants: Vec<VariantV1>,
        images: Vec<domain::Image>,
        updated_at: Millis,
    }

    impl From<ProductV1> for domain::Product {
        fn from(p: ProductV1) -> Self {
            domain::Product {
                id: p.id,
                tenant_id: p.tenant_id,
                sku: p.sku,
                name: p.name,
                description: p.description,
                price: p.price,
                stock: p.stock,
                variants: p
                    .variants
                    .into_iter()
                    .map(|v| domain::Variant {
                        sku: v.sku,
                        price: v.price,
                        stock: v.stock,
                        options: v.options,
                        barcode: None,
                    })
                    .collect(),
                images: p.images,
                updated_at: p.updated_at,
                details: domain::Details::default(),
            }
        }
    }

    /// A schedule before the periodic drift check (version 1).
    #[derive(Deserialize)]
    pub struct ScheduleV1 {
        campaign_id: Id,
        tenant_id: Id,
        presale_at: Option<Millis>,
        starts_at: Option<Millis>,
        ends_at: Option<Millis>,
        notify: bool,
        steps: Vec<StepRecord>,
        version: u64,
    }

    impl From<ScheduleV1> for domain::Schedule {
        fn from(s: ScheduleV1) -> Self {
            domain::Schedule {
                campaign_id: s.campaign_id,
                tenant_id: s.tenant_id,
                presale_at: s.presale_at,
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                notify: s.notify,
                steps: s.steps,
                version: s.version,
                drift: None,
            }
        }
    }
}

/// A connection as written since version 2: its credentials sealed under the service's key,
/// bound to the tenant, the connection and the field.
#[derive(Serialize, serde::Deserialize)]
pub struct SealedConnection {
    id: Id,
    tenant_id: Id,
    system: System,
    name: String,
    base_url: String,
    credentials: Secret,
    rate_limit: RateLimit,
    max_in_flight: u32,
    settings: BTreeMap<String, String>,
    created_at: Millis,
}

/// A secret as stored: sealed, or (read from version 1 only, never written) in the clear.
#[derive(Serialize, serde::Deserialize)]
enum Secret {
    Plain(Vec<u8>),
    Sealed(Vec<u8>),
}

impl Drop for Secret {
    fn drop(&mut self) {
        if let Secret::Plain(bytes) = self {
            bytes.zeroize();
        }
    }
}

impl Record for SealedConnection {
    const KIND: &'static str = "connection";
    /// 2: credentials sealed.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| {
            let c: Connection = postcard::from_bytes(body)?;
            let plain = Secret::Plain(postcard::to_allocvec(&c.credentials)?);
            Ok(SealedConnection::of(&c, plain))
        })
    }
}

impl SealedConnection {
    /// The connection with its credentials as given.
    fn of(c: &Connection, credentials: Secret) -> SealedConnection {
        SealedConnection {
            id: c.id,
            tenant_id: c.tenant_id,
            system: c.system,
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            credentials,
            rate_limit: c.rate_limit,
            max_in_flight: c.max_in_flight,
            settings: c.settings.clone(),
            created_at: c.created_at,
        }
    }
}

/// A webhook as written since version 2: its signing secret sealed.
#[derive(Serialize, serde::Deserialize)]
pub struct SealedWebhook {
    url: String,
    secret: Secret,
    created_at: Millis,
}

impl Record for SealedWebhook {
    const KIND: &'static str = "webhook";
    /// 2: the secret sealed.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| {
            let w: Webhook = postcard::from_bytes(body)?;
            Ok(SealedWebhook {
                url: w.url.clone(),
                secret: Secret::Plain(w.secret.as_bytes().to_vec()),
                created_at: w.created_at,
            })
        })
    }
}

fn secret_error(kind: &'static str, e: SecretError) -> StoreError {
    StoreError::Secret { kind, source: e }
}

fn connection_context(tenant: Id, id: Id) -> String {
    format!("connection/{tenant}/{id}/credentials")
}

fn webhook_context(tenant: Id) -> String {
    format!("webhook/{tenant}/secret")
}

/// Whether a stored value still needs sealing under the current key (a version 1 record, or
/// one sealed under an older key).
fn stale(secret: &Secret, keys: &Keys) -> bool {
    match secret {
        Secret::Plain(_) => true,
        Secret::Sealed(bytes) => !keys.is_current(bytes),
    }
}

fn open_secret(
    kind: &'static str,
    secret: &Secret,
    keys: &Keys,
    context: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
    match secret {
        Secret::Plain(bytes) => Ok(zeroize::Zeroizing::new(bytes.clone())),
        Secret::Sealed(bytes) => keys.open(context, bytes).map_err(|e| secret_error(kind, e)),
    }
}

pub fn encode_connection(c: &Connection, keys: &Keys) -> Result<Vec<u8>, StoreError> {
    let plain =
        zeroize::Zeroizing::new(postcard::to_allocvec(&c.credentials).map_err(|source| {
            StoreError::Encode {
                kind: "connection",
                source,
            }
        })?);
    let sealed = Secret::Sealed(keys.seal(&connection_context(c.tenant_id, c.id), &plain));
    encode(&SealedConnection::of(c, sealed))
}

/// A stored connection with its credentials opened, and whether it should be written again
/// (it was in the clear, or sealed under an older key).
pub fn decode_connection(bytes: &[u8], keys: &Keys) -> Result<(Connection, bool), StoreError> {
    let s: SealedConnection = decode(bytes)?;
    let plain = open_secret(
        "connection",
        &s.credentials,
        keys,
        &connection_context(s.tenant_id, s.id),
    )?;
    let credentials = postcard::from_bytes(&plain).map_err(|source| StoreError::Decode {
        kind: "connection",
        source,
    })?;
    let stale = stale(&s.credentials, keys);
    Ok((
        Connection {
            id: s.id,
            tenant_id: s.tenant_id,
            system: s.system,
            name: s.name.clone(),
            base_url: s.base_url.clone(),
            credentials,
            rate_limit: s.rate_limit,
            max_in_flight: s.max_in_flight,
            settings: s.settings.clone(),
            created_at: s.created_at,
        },
        stale,
    ))
}

pub fn encode_webhook(tenant: Id, w: &Webhook, keys: &Keys) -> Result<Vec<u8>, StoreError> {
    encode(&SealedWebhook {
        url: w.url.clone(),
        secret: Secret::Sealed(keys.seal(&webhook_context(tenant), w.secret.as_bytes())),
        created_at: w.created_at,
    })
}

pub fn decode_webhook(
    tenant: Id,
    bytes: &[u8],
    keys: &Keys,
) -> Result<(Webhook, bool), StoreError> {
    let s: SealedWebhook = decode(bytes)?;
    let plain = open_secret("webhook", &s.secret, keys, &webhook_context(tenant))?;
    let secret = String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Secret {
        kind: "webhook",
        source: SecretError::Format,
    })?;
    Ok((
        Webhook {
            url: s.url.clone(),
            secret,
            created_at: s.created_at,
        },
        stale(&s.secret, keys),
    ))
}

pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(record, vec![R::VERSION]).map_err(|source| StoreError::Encode {
        kind: R::KIND,
        source,
    })
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, StoreError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StoreError::Version {
            kind: R::KIND,
            found: None,
        });
    };
    if version != R::VERSION {
        return match R::upgrade(version, body) {
            Some(upgraded) => upgraded.map_err(|source| StoreError::Decode {
                kind: R::KIND,
                source,
            }),
            None => Err(StoreError::Version {
                kind: R::KIND,
                found: Some(version),
            }),
        };
    }
    postcard::from_bytes(body).map_err(|source| StoreError::Decode {
        kind: R::KIND,
        source,
    })
}

#[cfg(test)]
mod tests {
    //! Golden bytes: each record type encoded once and written down. A failing test here means
    //! stored data would no longer read back: add a record version and a migration instead.
    use std::collections::BTreeMap;

    use super::*;
    use domain::drift::{Difference, DriftCheck};
    use domain::*;

    fn check<R: Record + PartialEq + std::fmt::Debug>(record: R, golden: &str) {
        let bytes = encode(&record).expect("encodes");
        assert_eq!(hex::encode(&bytes), golden, "{} encoding changed", R::KIND);
        let back: R = decode(&bytes).expect("decodes");
        assert_eq!(back, record);
    }

    #[test]
    fn work_item() {
        check(
            WorkItem {
                tracker_id: 4,
                connection_id: 2,
                tenant_id: 1,
                campaign_id: 3,
                attempts: 1,
                done: false,
                failure: None,
                cancel: Some("x".into()),
            },
            "0104020103010000010178",
        );
    }

    #[test]
    fn lease_and_node() {
        check(
            Lease {
                connection_id: 2,
                owner: "n1".into(),
                expires_at: 10,
            },
            "0102026e3114",
        );
        check(
            Node {
                id: "n1".into(),
                expires_at: 10,
            },
            "01026e3114",
        );
    }

    #[test]
    fn tenant() {
        check(
            Tenant {
                id: 1,
                name: "acme".into(),
                created_at: 1_700_000_000_000,
            },
            "01010461636d6580a0abfef962",
        );
    }

    #[test]
    fn api_token() {
        check(
            ApiToken {
                tenant_id: 3,
                created_at: 2,
                name: "ci".into(),
                expires_at: Some(9),
            },
            "0203040263690112",
        );
        let v1: ApiToken = decode(&hex::decode("010304").unwrap()).expect("version 1 reads");
        assert_eq!(
            (v1.tenant_id, v1.expires_at, v1.name.as_str()),
            (3, None, "")
        );
    }

    fn a_connection() -> Connection {
        let mut settings = BTreeMap::new();
        settings.insert("site".to_string(), "MLC".to_string());
        Connection {
            id: 2,
            tenant_id: 1,
            system: System::Jumpseller,
            name: "s".into(),
            base_url: "http://x".into(),
            credentials: Credentials::Jumpseller {
                login: "l".into(),
                authtoken: "t".into(),
            },
            rate_limit: RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            max_in_flight: 8,
            settings,
            created_at: 5,
        }
    }

    #[test]
    fn a_version_1_connection_reads_in_the_clear_and_asks_to_be_sealed() {
        // Version 1 kept the credentials as they were.
        let v1 =
            hex::decode("01020100017308687474703a2f2f7800016c017414a00608010473697465034d4c430a")
                .unwrap();
        let keys = Keys::generate();
        let (c, stale) = decode_connection(&v1, &keys).expect("version 1 still reads");
        assert_eq!(c, a_connection());
        assert!(stale);
    }

    #[test]
    fn a_connection_is_written_with_its_credentials_sealed() {
        let keys = Keys::generate();
        let mut c = a_connection();
        c.credentials = Credentials::Jumpseller {
            login: "store-login".into(),
            authtoken: "secret-authtoken-123".into(),
        };
        let bytes = encode_connection(&c, &keys).expect("encodes");
        assert_eq!(bytes[0], 2, "version 2");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("secret-authtoken-123") && !text.contains("store-login"));
        assert!(
            text.contains("http://x"),
            "the rest stays readable for queries"
        );
        let (back, stale) = decode_connection(&bytes, &keys).expect("decodes");
        assert_eq!((back, stale), (c, false));
        assert!(
            decode_connection(&bytes, &Keys::generate()).is_err(),
            "another key"
        );
        // The sealed credentials of one connection do not open as another's.
        let mut moved = bytes.clone();
        moved[1] = 3;
        assert!(decode_connection(&moved, &keys).is_err());
    }

    #[test]
    fn a_webhook_secret_is_sealed_and_bound_to_its_tenant() {
        let keys = Keys::generate();
        let w = Webhook {
            url: "https://hooks.example/x".into(),
            secret: "whsec_abcdef".into(),
            created_at: 1,
        };
        let bytes = encode_webhook(4, &w, &keys).expect("encodes");
        assert!(!String::from_utf8_lossy(&bytes).contains("whsec_abcdef"));
        assert_eq!(decode_webhook(4, &bytes, &keys).expect("opens").0, w);
        assert!(decode_webhook(5, &bytes, &keys).is_err());
    }

    #[test]
    fn product() {
        let mut options = BTreeMap::new();
        options.insert("Color".to_string(), "Red".to_string());
        check(
            Product {
                id: 9,
                tenant_id: 1,
                sku: "A-1".into(),
                name: "Shirt".into(),
                description: "d".into(),
                price: 10.5,
                stock: 3,
                variants: vec![Variant {
                    sku: "A-1-R".into(),
                    price: 11.0,
                    stock: -1,
                    options,
                    barcode: Some("12345670".into()),
                }],
                images: vec![Image {
                    url: "u".into(),
                    position: 1,
                }],
                updated_at: 4,
                details: Details {
                    brand: Some("Acme".into()),
                    barcode: None,
                    mercadolibre: Some(MercadoLibreDetails {
                        attributes: vec![Attribute {
                            id: "MODEL".into(),
                            value_name: "X1".into(),
                        }],
                        category_id: Some("MLC1234".into()),
                        listing_type_id: Some("gold_pro".into()),
                    }),
                },
            },
            "03090103412d3105536869727401640000000000002540060105412d312d5200000000000026400101\
             05436f6c6f7203526564010831323334353637300101750108010441636d65000101054d4f44454c02583101074d4c43313233340108676f6c645f70726f",
        );
    }

    #[test]
    fn a_version_2_product_reads_with_the_connections_category() {
        let v2 = hex::decode(
            "02090103412d3105536869727401640000000000002540060105412d312d5200000000000026400101\
             05436f6c6f7203526564010831323334353637300101750108010441636d65000101054d4f44454c025831",
        )
        .unwrap();
        let p: Product = decode(&v2).expect("version 2 still reads");
        let ml = p.details.mercadolibre.expect("MercadoLibre's fields");
        assert_eq!(ml.attributes[0].value_name, "X1");
        assert_eq!((ml.category_id, ml.listing_type_id), (None, None));
        assert_eq!(p.variants[0].barcode.as_deref(), Some("12345670"));
    }

    #[test]
    fn a_version_1_product_reads_with_no_details() {
        let v1 = hex::decode(
            "01090103412d3105536869727401640000000000002540060105412d312d5200000000000026400101\
             05436f6c6f72035265640101750108",
        )
        .unwrap();
        let p: Product = decode(&v1).expect("version 1 still reads");
        assert_eq!(p.details, Details::default());
        assert_eq!(p.variants[0].barcode, None);
        assert_eq!(p.variants[0].options["Color"], "Red");
        assert_eq!(p.updated_at, 4);
    }

    #[test]
    fn campaign() {
        check(
            Campaign {
                id: 4,
                tenant_id: 1,
                name: "Summer".into(),
                status: CampaignStatus::Paused,
                error: true,
                marketplace_ids: vec![2, 3],
                status_before_run: Some(CampaignStatus::Published),
                created_at: 1,
                updated_at: 2,
            },
            "0104010653756d6d6572040102020301020204",
        );
    }

    #[test]
    fn campaign_product() {
        check(
            CampaignProduct {
                campaign_id: 4,
                connection_id: 2,
                product_id: 9,
                status: ProductStatus::Errored,
                marketplace_info: MarketplaceInfo {
                    product_id: Some("77".into()),
                    variant_ids: vec![("A-1-R".into(), "5".into())],
                    image_ids: vec![],
                    create_sent: true,
                    remote_status: Some("available".into()),
                    sent: Some(Sent {
                        content: 1,
                        prices: 2,
                        on_sale: true,
                    }),
                    unsettled_at: Some(5),
                    unanswered_creates: 2,
                },
                error_message: Some("bad".into()),
                published_at: None,
                updated_at: 6,
                run: Some(RunMark {
                    tracker_id: 8,
                    phases_done: 1,
                    failed_phase: Some(1),
                }),
                sale_price: Some(7.5),
                presale_price: None,
                drift: Some(DriftCheck {
                    tracker_id: 9,
                    checked_at: 10,
                    differences: vec![Difference::Price {
                        sku: None,
                        expected: 2.0,
                        found: 1.0,
                    }],
                    error: None,
                    repaired: vec![Difference::Missing],
                }),
            },
            "0504020903010237370105412d312d52013500010109617661696c61626c6501010201010a02010362\
             6164000c0108010101010000000000001e40000109140103000000000000000040000000000000f03f\
             000100",
        );
    }

    #[test]
    fn a_version_4_campaign_product_reads_with_no_create_left_unanswered() {
        let v4 = hex::decode(
            "0404020903010237370105412d312d52013500010109617661696c61626c6501010201010a0103626164\
             000c0108010101010000000000001e40000109140103000000000000000040000000000000f03f0001\
             00",
        )
        .unwrap();
        let cp: CampaignProduct = decode(&v4).expect("version 4 still reads");
        assert_eq!(cp.marketplace_info.unanswered_creates, 0);
        assert_eq!(cp.marketplace_info.unsettled_at, Some(5));
        assert_eq!(cp.marketplace_info.product_id.as_deref(), Some("77"));
    }

    #[test]
    fn a_version_3_campaign_product_reads_with_every_write_settled() {
        let v3 = hex::decode(
            "0304020903010237370105412d312d52013500010109617661696c61626c65010102010103626164\
             000c0108010101010000000000001e40000109140103000000000000000040000000000000f03f0001\
             00",
        )
        .unwrap();
        let cp: CampaignProduct = decode(&v3).expect("version 3 still reads");
        assert_eq!(cp.marketplace_info.unsettled_at, None);
        assert!(cp.marketplace_info.create_sent);
        assert_eq!(
            cp.drift.map(|d| d.repaired),
            Some(vec![Difference::Missing])
        );
    }

    #[test]
    fn tracker() {
        let mut conn = ConnProgress::new(2, System::Jumpseller, &[Phase::ProductData], 3);
        conn.record(0, 1, 0);
        check(
            Tracker {
                id: 8,
                tenant_id: 1,
                campaign_id: 4,
                marketplace_id: None,
                action: Action::Publish,
                status: TrackerStatus::Active,
                connections: vec![conn],
                metadata: TrackerMeta {
                    campaign_name: "Summer".into(),
                    total_products: 3,
                    chunk_size: 50,
                    fail_fast: false,
                    force: true,
                    product_level: false,
                    events: vec!["x".into()],
                    product_ids: vec![9],
                    retry: true,
                    notify: false,
                    scheduled: Some(Step::Start),
                    prices: PriceMode::Sale,
                },
                error_message: None,
                started_at: 1,
                completed_at: Some(2),
                updated_at: 3,
            },
            "03080104000000010200010003010000000653756d6d65720332000100010178010901000101020002010406",
        );
    }

    #[test]
    fn a_version_2_tracker_reads_as_notifying_at_regular_prices() {
        let v2 = hex::decode(
            "02080104000000010200010003010000000653756d6d657203320001000101780109010002010406",
        )
        .unwrap();
        let t: Tracker = decode(&v2).expect("version 2 still reads");
        let m = &t.metadata;
        assert_eq!(
            (m.retry, m.notify, m.scheduled, m.prices),
            (true, true, None, PriceMode::Regular)
        );
        assert_eq!(t.completed_at, Some(2));
    }

    #[test]
    fn a_version_2_campaign_product_reads_without_a_drift_check() {
        let v2 = hex::decode(
            "0204020903010237370105412d312d52013500010109617661696c61626c65010102010103626164\
             000c0108010101010000000000001e4000",
        )
        .unwrap();
        let cp: CampaignProduct = decode(&v2).expect("version 2 still reads");
        assert_eq!(cp.drift, None);
        assert_eq!(cp.sale_price, Some(7.5));
        assert_eq!(cp.marketplace_info.sent.map(|s| s.on_sale), Some(true));
    }

    #[test]
    fn a_version_1_campaign_product_reads_without_prices() {
        let v1 = hex::decode(
            "0104020903010237370105412d312d52013500010109617661696c61626c650103626164000c0108010101",
        )
        .unwrap();
        let cp: CampaignProduct = decode(&v1).expect("version 1 still reads");
        assert_eq!(
            (cp.sale_price, cp.presale_price, cp.marketplace_info.sent),
            (None, None, None)
        );
        assert_eq!(cp.marketplace_info.product_id.as_deref(), Some("77"));
        assert_eq!(cp.error_message.as_deref(), Some("bad"));
        assert_eq!(cp.run.map(|r| r.failed_phase), Some(Some(1)));
    }

    #[test]
    fn schedule() {
        check(
            Schedule {
                campaign_id: 4,
                tenant_id: 1,
                presale_at: None,
                starts_at: Some(10),
                ends_at: Some(20),
                notify: false,
                steps: vec![StepRecord {
                    step: Step::Start,
                    due_at: 10,
                    at: 11,
                    action: Some(Action::Republish),
                    tracker_id: Some(8),
                    skipped: None,
                }],
                version: 3,
                drift: Some(PeriodicDrift {
                    every_hours: 6,
                    next_at: 40,
                    last: Some(StepRecord {
                        step: Step::Drift,
                        due_at: 30,
                        at: 34,
                        action: Some(Action::Drift),
                        tracker_id: Some(9),
                        skipped: None,
                    }),
                }),
            },
            "0204010001140128000101141601010108000301065001033c440105010900",
        );
    }

    #[test]
    fn a_version_1_schedule_reads_without_a_periodic_drift_check() {
        let v1 = hex::decode("01040100011401280001011416010101080003").unwrap();
        let s: Schedule = decode(&v1).expect("version 1 still reads");
        assert_eq!(
            (s.starts_at, s.ends_at, s.notify, s.version, s.drift),
            (Some(10), Some(20), false, 3, None)
        );
        assert_eq!(s.steps[0].tracker_id, Some(8));
    }

    #[test]
    fn a_version_1_tracker_reads_as_no_retry() {
        let v1 = hex::decode(
            "01080104000000010200010003010000000653756d6d6572033200010001017801090002010406",
        )
        .unwrap();
        let t: Tracker = decode(&v1).expect("version 1 still reads");
        assert_eq!(
            (t.id, t.metadata.product_ids.clone(), t.metadata.retry),
            (8, vec![9], false)
        );
        assert_eq!(t.metadata.events, vec!["x".to_string()]);
    }

    #[test]
    fn lock() {
        check(
            Lock {
                campaign_id: 4,
                tracker_id: 8,
                owner: "p1".into(),
                expires_at: 10,
            },
            "01040802703114",
        );
    }

    #[test]
    fn a_value_of_another_version_is_refused_not_misread() {
        let mut bytes = encode(&Tenant {
            id: 3,
            name: "t".into(),
            created_at: 2,
        })
        .expect("encodes");
        bytes[0] = 2;
        let err = decode::<Tenant>(&bytes).expect_err("version 2 is unknown");
        assert!(matches!(err, StoreError::Version { found: Some(2), .. }));
    }
}
