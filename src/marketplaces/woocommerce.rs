//! The WooCommerce adapter (REST v3 under `/wp-json/wc/v3`, HTTP Basic with the `ck_`/`cs_` keys).
//! Every action is one phase. A product with variants is a `variable` product whose variations
//! live under `products/{id}/variations`. Prices travel as strings. A create of unknown outcome
//! is followed by a look-up by SKU (`products?sku=`), and a duplicate-SKU refusal
//! (`product_invalid_sku` with `data.resource_id`) adopts the existing product.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::gather::{Fetch, Gatherer};
use super::http::{classify, Auth, Endpoint, Gate};
use super::plan::{Operation, PlanCall, Planned, Request, AS_REPAIRS, NEW};
use super::{Checkpoint, MarketError, Marketplace, PhaseCall, Sale, READS_ONLY};
use crate::domain::drift::{self, Difference, Shown, ShownVariant};
use crate::domain::{
    Action, Connection, Credentials, MarketplaceInfo, Offer, Product, ProductStatus,
};

/// The most items WooCommerce takes in one batch request (413 over it).
pub const MAX_BATCH: usize = 100;

/// WooCommerce connections: a REST API key pair, and how many products a batch carries.
pub struct Kind;

pub static KIND: Kind = Kind;

impl super::kind::ConnectionKind for Kind {
    fn credential_keys(&self) -> &'static [&'static str] {
        &["consumer_key", "consumer_secret"]
    }

    fn credentials(&self, values: Vec<String>) -> Result<Credentials, String> {
        let [consumer_key, consumer_secret] = <[String; 2]>::try_from(values)
            .map_err(|_| "the consumer_key and the consumer_secret".to_string())?;
        if !consumer_key.starts_with("ck_") || !consumer_secret.starts_with("cs_") {
            return Err(
                "WooCommerce keys start with ck_ (consumer_key) and cs_ (consumer_secret)"
                    .to_string(),
            );
        }
        Ok(Credentials::Woocommerce {
            consumer_key,
            consumer_secret,
        })
    }

    fn setting_keys(&self) -> &'static [&'static str] {
        &["batch_size"]
    }

    fn settings(
        &self,
        given: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        match given.get("batch_size") {
            Some(size) if parse_batch_size(size).is_none() => Err(format!(
                "settings.batch_size must be a whole number from 1 to {MAX_BATCH} (WooCommerce's limit per batch)"
            )),
            _ => Ok(()),
        }
    }
}

fn parse_batch_size(s: &str) -> Option<usize> {
    s.parse().ok().filter(|n| (1..=MAX_BATCH).contains(n))
}

/// A stored connection's batch size.
pub fn batch_size(connection: &Connection) -> usize {
    connection
        .settings
        .get("batch_size")
        .and_then(|n| parse_batch_size(n))
        .unwrap_or(MAX_BATCH)
}

pub struct WooCommerce {
    api: Arc<Endpoint>,
    batch: Batcher,
    /// A drift check's reads, gathered into `GET /products?include=` lists.
    reads: Gatherer,
}

#[derive(Serialize)]
struct ProductBody<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    status: &'a str,
    sku: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    regular_price: Option<String>,
    description: &'a str,
    manage_stock: bool,
    stock_quantity: i64,
    images: Vec<ImageRef<'a>>,
    attributes: Vec<Attribute<'a>>,
}

#[derive(Serialize)]
struct ImageRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<&'a str>,
}

#[derive(Serialize)]
struct Attribute<'a> {
    name: &'a str,
    options: Vec<&'a str>,
    variation: bool,
    visible: bool,
}

#[derive(Serialize)]
struct VariationBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    sku: &'a str,
    regular_price: String,
    /// The campaign price while one is in force; `""` takes an ended sale away.
    #[serde(skip_serializing_if = "Option::is_none")]
    sale_price: Option<String>,
    manage_stock: bool,
    stock_quantity: i64,
    attributes: Vec<VariationAttribute<'a>>,
}

#[derive(Serialize)]
struct VariationAttribute<'a> {
    name: &'a str,
    option: &'a str,
}

#[derive(Deserialize)]
struct RemoteProduct {
    id: u64,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    images: Vec<RemoteImage>,
    #[serde(default)]
    status: Option<String>,
    /// The price in force (the sale price during a sale), as a string.
    #[serde(default)]
    price: Option<String>,
    #[serde(default)]
    stock_quantity: Option<i64>,
}

#[derive(Deserialize)]
struct RemoteImage {
    id: u64,
}

#[derive(Deserialize)]
struct RemoteVariation {
    id: u64,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price: Option<String>,
    #[serde(default)]
    stock_quantity: Option<i64>,
}

/// WooCommerce (WordPress REST) errors: `{"code", "message", "data": {"status", ...}}`.
#[derive(Deserialize)]
struct WooError {
    code: String,
    message: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

fn message_of(body: &[u8]) -> Option<String> {
    let e: WooError = serde_json::from_slice(body).ok()?;
    Some(format!("{} ({})", e.message, e.code))
}

/// WooCommerce takes prices as decimal strings.
pub fn price_string(price: f64) -> String {
    let s = format!("{price:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `sale_price` of the product (`None`) or of a variation: WooCommerce shows a sale as
/// `sale_price` beside `regular_price`; `""` takes an ended sale away.
fn sale_price(sale: &Sale, v: Option<&crate::domain::Variant>) -> Option<String> {
    let (amount, compare) = sale.shown(v);
    compare.map(|c| c.map_or_else(String::new, |_| price_string(amount)))
}

fn is_gone(e: &MarketError) -> bool {
    matches!(
        e,
        MarketError::Rejected {
            status: 404 | 410,
            ..
        }
    )
}

impl WooCommerce {
    pub fn new(connection: &Connection, gate: Gate) -> WooCommerce {
        let (key, secret) = match &connection.credentials {
            Credentials::Woocommerce {
                consumer_key,
                consumer_secret,
            } => (consumer_key.clone(), consumer_secret.clone()),
            // The API only stores WooCommerce keys on WooCommerce connections.
            _ => (String::new(), String::new()),
        };
        let batch_size = batch_size(connection);
        // WooCommerce has no quota headers of its own; a host's 429 still pauses the
        // connection through the gate.
        let api = Arc::new(Endpoint::new(
            &connection.base_url,
            Auth::Basic {
                user: key,
                password: secret,
            },
            gate,
            message_of,
            crate::marketplaces::http::no_quota,
        ));
        WooCommerce {
            batch: Batcher::new(Arc::clone(&api), batch_size),
            reads: Gatherer::new(MAX_BATCH, listed(Arc::clone(&api))),
            api,
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, MarketError> {
        self.api.call(request).await
    }

    fn body(p: &Product, sale: &Sale, info: &MarketplaceInfo, status: &str) -> Value {
        let mut body = Self::fields(p, info, status);
        if p.variants.is_empty() {
            if let (Value::Object(fields), Some(price)) = (&mut body, sale_price(sale, None)) {
                fields.insert("sale_price".to_string(), Value::from(price));
            }
        }
        body
    }

    fn fields(p: &Product, info: &MarketplaceInfo, status: &str) -> Value {
        let mut images: Vec<_> = p.images.iter().collect();
        images.sort_by_key(|i| i.position);
        let mut options: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for v in &p.variants {
            for (name, value) in &v.options {
                let values = options.entry(name.as_str()).or_default();
                if !values.contains(&value.as_str()) {
                    values.push(value.as_str());
                }
            }
        }
        let body = ProductBody {
            name: &p.name,
            kind: if p.variants.is_empty() {
                "simple"
            } else {
                "variable"
            },
            status,
            sku: &p.sku,
            regular_price: p.variants.is_empty().then(|| price_string(p.price)),
            description: &p.description,
            manage_stock: p.variants.is_empty(),
            stock_quantity: p.stock,
            images: images
                .into_iter()
                .map(
                    |i| match info.image_id(&i.url).and_then(|id| id.parse().ok()) {
                        Some(id) => ImageRef {
                            id: Some(id),
                            src: None,
                        },
                        None => ImageRef {
                            id: None,
                            src: Some(&i.url),
                        },
                    },
                )
                .collect(),
            attributes: options
                .into_iter()
                .map(|(name, options)| Attribute {
                    name,
                    options,
                    variation: true,
                    visible: true,
                })
                .collect(),
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_value(body).unwrap_or(Value::Null)
    }

    /// The variations to create and to update in one batch, and the SKUs of those created.
    fn variations<'a>(
        p: &'a Product,
        sale: &Sale,
        info: &MarketplaceInfo,
    ) -> (Vec<Value>, Vec<Value>, Vec<&'a str>) {
        let body_of = |v: &crate::domain::Variant, id: Option<u64>| {
            let body = VariationBody {
                id,
                sku: &v.sku,
                regular_price: price_string(v.price),
                sale_price: sale_price(sale, Some(v)),
                manage_stock: true,
                stock_quantity: v.stock,
                attributes: v
                    .options
                    .iter()
                    .map(|(name, option)| VariationAttribute { name, option })
                    .collect(),
            };
            serde_json::to_value(body).unwrap_or(Value::Null)
        };
        let mut create = Vec::new();
        let mut create_skus = Vec::new();
        let mut update = Vec::new();
        for v in &p.variants {
            match info.variant_id(&v.sku).and_then(|id| id.parse().ok()) {
                Some(id) => update.push(body_of(v, Some(id))),
                None => {
                    create.push(body_of(v, None));
                    create_skus.push(v.sku.as_str());
                }
            }
        }
        (create, update, create_skus)
    }

    /// The plan of `publish`: the product's item of a batch, then its variations' batch.
    fn plan_publish(p: &Product, sale: &Sale, info: &mut MarketplaceInfo) -> Planned {
        let mut body = Self::body(p, sale, info, "publish");
        let (operation, item) = match info.remote_number() {
            Some(id) => {
                if let Value::Object(fields) = &mut body {
                    fields.insert("id".to_string(), Value::from(id));
                }
                (Operation::Update, "update")
            }
            None => {
                info.product_id = Some(NEW.to_string());
                (Operation::Create, "create")
            }
        };
        let mut requests = vec![Request::new("POST", "/products/batch")
            .batched(item)
            .with_body(&body)];
        if !p.variants.is_empty() {
            let (create, update, skus) = Self::variations(p, sale, info);
            let pid = info.product_id.clone().unwrap_or_default();
            requests.push(
                Request::new("POST", format!("/products/{pid}/variations/batch")).with_body(
                    &BatchBody {
                        create,
                        update,
                        delete: Vec::new(),
                    },
                ),
            );
            for sku in skus {
                info.set_variant_id(sku, NEW.to_string());
            }
        }
        info.remote_status = Some("publish".to_string());
        Planned::op(operation, requests)
    }

    fn adopt(p: &Product, info: &mut MarketplaceInfo, remote: &RemoteProduct) {
        info.product_id = Some(remote.id.to_string());
        // WooCommerce answers images in the order they were given, with `src` rewritten to its
        // own media URL, so they are matched by position.
        let mut ours: Vec<_> = p.images.iter().collect();
        ours.sort_by_key(|i| i.position);
        info.image_ids = ours
            .iter()
            .zip(&remote.images)
            .map(|(mine, theirs)| (mine.url.clone(), theirs.id.to_string()))
            .collect();
    }

    /// Updates the product through the batch, taking its ids from the answer.
    async fn update(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        id: u64,
        mut body: Value,
    ) -> Result<(), ItemError> {
        if let Value::Object(fields) = &mut body {
            fields.insert("id".to_string(), Value::from(id));
        }
        let answer = self.batch.submit(BatchOp::Update(body)).await?;
        let remote: RemoteProduct = parse_item(answer)?;
        Self::adopt(p, info, &remote);
        Ok(())
    }

    async fn publish(
        &self,
        p: &Product,
        sale: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        match info.remote_number() {
            Some(id) => match self
                .update(p, info, id, Self::body(p, sale, info, "publish"))
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_gone() => {
                    // Deleted in the shop meanwhile: publishing means creating it again.
                    *info = MarketplaceInfo::default();
                    checkpoint(info).await?;
                    self.create(p, sale, info, checkpoint).await?;
                }
                Err(e) => return Err(e.error),
            },
            None => self.create(p, sale, info, checkpoint).await?,
        }
        info.remote_status = Some("publish".to_string());
        checkpoint(info).await?;
        self.upsert_variations(p, sale, info, checkpoint).await
    }

    /// Creates the product in the next batch. A duplicate-SKU answer names the product that
    /// holds the SKU (our own create whose answer was lost, or the shop's): it is adopted and
    /// updated instead.
    async fn create(
        &self,
        p: &Product,
        sale: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        info.create_sent = true;
        checkpoint(info).await?;
        let created = self
            .batch
            .submit(BatchOp::Create(Self::body(p, sale, info, "publish")))
            .await
            .and_then(parse_item::<RemoteProduct>);
        match created {
            Ok(remote) => Self::adopt(p, info, &remote),
            Err(ItemError {
                resource_id: Some(existing),
                ..
            }) => {
                info.product_id = Some(existing.to_string());
                checkpoint(info).await?;
                self.update(p, info, existing, Self::body(p, sale, info, "publish"))
                    .await
                    .map_err(|e| e.error)?;
            }
            Err(e) => {
                if !e.error.is_retriable() {
                    // Refused: nothing was created.
                    info.create_sent = false;
                    checkpoint(info).await?;
                }
                return Err(e.error);
            }
        }
        info.create_sent = false;
        checkpoint(info).await
    }

    /// Creates and updates the variations of a variable product in one batch request; a
    /// variation whose SKU already exists (an earlier create whose answer was lost) is adopted.
    async fn upsert_variations(
        &self,
        p: &Product,
        sale: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(pid) = info.product_id.clone() else {
            return Ok(());
        };
        if p.variants.is_empty() {
            return Ok(());
        }
        let path = format!("/products/{pid}/variations/batch");
        // Two rounds at most: the second updates variations adopted in the first.
        for _ in 0..2 {
            let (create, update, create_skus) = Self::variations(p, sale, info);
            if !create.is_empty() {
                info.create_sent = true;
                checkpoint(info).await?;
            }
            let answer: BatchAnswer = self
                .call(self.request(Method::POST, &path).json(&BatchBody {
                    create,
                    update,
                    delete: Vec::new(),
                }))
                .await?;
            let mut adopted = false;
            let mut first_error = None;
            for (sku, item) in create_skus.iter().zip(answer.create) {
                match item_result(item) {
                    Ok(v) => {
                        let v: RemoteVariation = parse_item(v).map_err(|e| e.error)?;
                        info.set_variant_id(sku, v.id.to_string());
                    }
                    Err(ItemError {
                        resource_id: Some(existing),
                        ..
                    }) => {
                        info.set_variant_id(sku, existing.to_string());
                        adopted = true;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e.error);
                    }
                }
            }
            for item in answer.update {
                if let Err(e) = item_result(item) {
                    first_error.get_or_insert(e.error);
                }
            }
            info.create_sent = false;
            checkpoint(info).await?;
            if let Some(e) = first_error {
                return Err(e);
            }
            if !adopted {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn set_status(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        status: &str,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(id) = info.remote_number() else {
            return Err(MarketError::Protocol(
                "the product has no WooCommerce id yet".to_string(),
            ));
        };
        self.update(p, info, id, serde_json::json!({ "status": status }))
            .await
            .map_err(|e| e.error)?;
        info.remote_status = Some(status.to_string());
        checkpoint(info).await
    }

    /// Finish moves the product to the trash (a DELETE without force, which the batch cannot
    /// do: batch deletes are permanent); delete removes it for good in the next batch.
    async fn remove(
        &self,
        info: &mut MarketplaceInfo,
        force: bool,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.remote_number() {
            let result = if force {
                self.batch.submit(BatchOp::Delete(id)).await.map(|_| ())
            } else {
                let request = self.request(Method::DELETE, &format!("/products/{id}"));
                match self.call::<Value>(request).await {
                    Ok(_) => Ok(()),
                    Err(error) => Err(ItemError {
                        error,
                        resource_id: None,
                    }),
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e.error),
            }
        }
        if force {
            *info = MarketplaceInfo::default();
            info.remote_status = Some("deleted".to_string());
        } else {
            info.remote_status = Some("trash".to_string());
        }
        checkpoint(info).await
    }
}

#[async_trait]
impl Marketplace for WooCommerce {
    /// After a create of unknown outcome. Publishing needs no look-up: the create is sent
    /// again, and if the first one reached the shop its duplicate-SKU answer names the product,
    /// which is adopted (so a resumed publish costs no extra request). Other actions find the
    /// product by SKU, or re-read it by id, before going on.
    async fn reconcile(
        &self,
        action: Action,
        p: &Product,
        info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError> {
        if matches!(action, Action::Publish | Action::Republish) {
            info.create_sent = false;
            return Ok(());
        }
        if info.product_id.is_none() {
            let hits: Vec<RemoteProduct> = self
                .call(
                    self.request(Method::GET, "/products")
                        .query(&[("sku", p.sku.as_str())]),
                )
                .await?;
            if let Some(found) = hits.iter().find(|h| h.sku == p.sku) {
                Self::adopt(p, info, found);
            }
        }
        info.create_sent = false;
        Ok(())
    }

    /// A publish needs no look-up: its create goes by SKU, and WooCommerce refuses a SKU it
    /// holds (the refusal names the product, which is adopted).
    fn plan_lookup(&self, action: Action, _: &Product, info: &MarketplaceInfo) -> Vec<Request> {
        match (action, &info.product_id) {
            (Action::Publish | Action::Republish, _) | (_, Some(_)) => Vec::new(),
            (_, None) => vec![Request::new("GET", "/products")],
        }
    }

    fn plan(&self, call: PlanCall<'_>) -> Planned {
        let PlanCall {
            action,
            product,
            offer,
            prices_only,
            info,
            ..
        } = call;
        let sale = Sale::of(offer, prices_only, info);
        let id = info.remote_number();
        match (action, id) {
            (Action::Reconcile, _) => Planned::error(AS_REPAIRS),
            (Action::Drift, Some(id)) => {
                let mut reads = vec![Request::new("GET", "/products").batched("include")];
                if !product.variants.is_empty() {
                    reads.push(Request::new("GET", format!("/products/{id}/variations")));
                }
                Planned::op(Operation::Read, reads)
            }
            (Action::Drift, None) => {
                Planned::op(Operation::Read, vec![Request::new("GET", "/products")])
            }
            (Action::Publish | Action::Republish, _) => Self::plan_publish(product, &sale, info),
            (Action::Pause, Some(id)) => {
                info.remote_status = Some("draft".to_string());
                Planned::op(
                    Operation::Status,
                    vec![Request::new("POST", "/products/batch")
                        .batched("update")
                        .with_body(&serde_json::json!({"id": id, "status": "draft"}))],
                )
            }
            (Action::Pause, None) => Planned::error("the product has no WooCommerce id yet"),
            (Action::Finish, Some(id)) => {
                info.remote_status = Some("trash".to_string());
                Planned::op(
                    Operation::Delete,
                    vec![Request::new("DELETE", format!("/products/{id}"))],
                )
            }
            (Action::Delete, Some(id)) => {
                *info = MarketplaceInfo::default();
                Planned::op(
                    Operation::Delete,
                    vec![Request::new("POST", "/products/batch")
                        .batched("delete")
                        .with_body(&serde_json::json!({"id": id}))],
                )
            }
            (Action::Finish | Action::Delete, None) => {
                Planned::skip("not on WooCommerce: nothing to delete")
            }
        }
    }

    /// Finishing moves the product to the trash, where it is still read; a variable product's
    /// variations are read with it (a second request).
    async fn drift(
        &self,
        p: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        let stored = info.product_id.clone();
        if let Some(id) = info.remote_number() {
            // Read in a batch; one the list leaves out (trashed, or gone) is read alone, as
            // WordPress lists no trashed product.
            let read = match self.reads.get_as(id.to_string(), "a product").await? {
                Some(remote) => Ok(remote),
                None => {
                    self.call::<RemoteProduct>(
                        self.request(Method::GET, &format!("/products/{id}")),
                    )
                    .await
                }
            };
            match read {
                Ok(remote) => {
                    let simple = p.variants.is_empty();
                    let variations = if simple {
                        None
                    } else {
                        let path = format!("/products/{id}/variations");
                        let list: Vec<RemoteVariation> = self
                            .call(
                                self.request(Method::GET, &path)
                                    .query(&[("per_page", "100")]),
                            )
                            .await?;
                        Some(list)
                    };
                    let money = |s: &Option<String>| s.as_deref().and_then(|s| s.parse().ok());
                    let expected = Shown {
                        status: Some(
                            match status {
                                ProductStatus::Paused => "draft",
                                ProductStatus::Finished => "trash",
                                _ => "publish",
                            }
                            .to_string(),
                        ),
                        price: simple.then_some(offer.price),
                        stock: simple.then_some(p.stock),
                        variants: (!simple).then(|| drift::sent_variants(p, &offer)),
                        images: Some(p.images.len() as u32),
                    };
                    let shown = Shown {
                        status: remote.status.clone(),
                        price: money(&remote.price),
                        stock: remote.stock_quantity,
                        variants: variations.map(|list| {
                            list.iter()
                                .map(|v| ShownVariant {
                                    sku: v.sku.clone().unwrap_or_default(),
                                    price: money(&v.price),
                                    stock: v.stock_quantity,
                                })
                                .collect()
                        }),
                        images: Some(remote.images.len() as u32),
                    };
                    return Ok(drift::compare(&expected, &shown));
                }
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let hits: Vec<RemoteProduct> = self
            .call(
                self.request(Method::GET, "/products")
                    .query(&[("sku", p.sku.as_str())]),
            )
            .await?;
        let found = hits
            .iter()
            .find(|h| h.sku == p.sku)
            .map(|h| h.id.to_string());
        Ok(drift::absent(stored.as_deref(), found))
    }

    async fn apply(&self, call: PhaseCall<'_>) -> Result<(), MarketError> {
        let PhaseCall {
            action,
            product,
            offer,
            prices_only,
            info,
            checkpoint,
            ..
        } = call;
        let sale = Sale::of(offer, prices_only, info);
        match action {
            Action::Publish | Action::Republish => {
                self.publish(product, &sale, info, checkpoint).await
            }
            Action::Pause => self.set_status(product, info, "draft", checkpoint).await,
            Action::Finish => self.remove(info, false, checkpoint).await,
            Action::Delete => self.remove(info, true, checkpoint).await,
            Action::Drift | Action::Reconcile => Err(READS_ONLY.clone()),
        }
    }

    fn batch_size(&self) -> usize {
        self.batch.size
    }

    fn read_batch_size(&self) -> usize {
        self.reads.size()
    }
}

/// A list of up to 100 products by id (`include=`): those WordPress lists, by id.
fn listed(api: Arc<Endpoint>) -> Fetch {
    Arc::new(move |ids: Vec<String>| {
        let api = Arc::clone(&api);
        Box::pin(async move {
            let request = api.request(Method::GET, "/products").query(&[
                ("include", ids.join(",")),
                ("per_page", ids.len().to_string()),
            ]);
            let list: Vec<Value> = api.call(request).await?;
            Ok(list
                .into_iter()
                .filter_map(|p| Some((p.get("id")?.as_u64()?.to_string(), p)))
                .collect())
        })
    })
}

/// One product's part of a batch request.
enum BatchOp {
    Create(Value),
    Update(Value),
    Delete(u64),
}

#[derive(Serialize)]
struct BatchBody {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    create: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    update: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    delete: Vec<u64>,
}

#[derive(Deserialize, Default)]
struct BatchAnswer {
    #[serde(default)]
    create: Vec<Value>,
    #[serde(default)]
    update: Vec<Value>,
    #[serde(default)]
    delete: Vec<Value>,
}

/// Why one item of a batch failed: the error, and the product that holds its SKU when the
/// shop refused a duplicate.
#[derive(Debug, Clone)]
struct ItemError {
    error: MarketError,
    resource_id: Option<u64>,
}

impl ItemError {
    fn is_gone(&self) -> bool {
        is_gone(&self.error)
    }
}

impl From<MarketError> for ItemError {
    fn from(error: MarketError) -> ItemError {
        ItemError {
            error,
            resource_id: None,
        }
    }
}

fn parse_item<T: serde::de::DeserializeOwned>(item: Value) -> Result<T, ItemError> {
    serde_json::from_value(item)
        .map_err(|e| ItemError::from(MarketError::Protocol(format!("a batch item: {e}"))))
}

/// An item of a batch answer: the object, or its inline `{"id", "error": {...}}` mapped as if
/// the shop had answered that status for it alone.
fn item_result(item: Value) -> Result<Value, ItemError> {
    let Some(error) = item.get("error") else {
        return Ok(item);
    };
    let e: WooError = serde_json::from_value(error.clone()).map_err(|e| {
        ItemError::from(MarketError::Protocol(format!("a batch item's error: {e}")))
    })?;
    let data = e.data.unwrap_or(Value::Null);
    let status = data
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| reqwest::StatusCode::from_u16(s).ok())
        .unwrap_or(reqwest::StatusCode::BAD_REQUEST);
    let resource_id = (e.code == "product_invalid_sku")
        .then(|| data.get("resource_id").and_then(Value::as_u64))
        .flatten();
    let body = serde_json::json!({"code": e.code, "message": e.message}).to_string();
    Err(ItemError {
        error: classify(status, body.as_bytes(), message_of),
        resource_id,
    })
}

/// Gathers the products' operations into `products/batch` requests of up to `size` items:
/// a batch leaves as `gather::next_batch` says (full, quiet for `LINGER`, or `MAX_LINGER`
/// after its first item). Each product waits for its own item of the answer. The batcher's
/// task ends when the adapter is dropped.
struct Batcher {
    api: Arc<Endpoint>,
    size: usize,
    queue: std::sync::OnceLock<mpsc::UnboundedSender<Queued>>,
}

struct Queued {
    op: BatchOp,
    reply: oneshot::Sender<Result<Value, ItemError>>,
}

impl Batcher {
    fn new(api: Arc<Endpoint>, size: usize) -> Batcher {
        Batcher {
            api,
            size,
            queue: std::sync::OnceLock::new(),
        }
    }

    async fn submit(&self, op: BatchOp) -> Result<Value, ItemError> {
        // Started on first use, on the runtime of the worker that uses it.
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(gather(Arc::clone(&self.api), rx, self.size));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let lost = || ItemError::from(MarketError::Local("the batcher stopped".to_string()));
        queue.send(Queued { op, reply }).map_err(|_| lost())?;
        answer.await.map_err(|_| lost())?
    }
}

async fn gather(api: Arc<Endpoint>, mut queue: mpsc::UnboundedReceiver<Queued>, size: usize) {
    while let Some(items) = super::gather::next_batch(&mut queue, size).await {
        // Batches go out concurrently, as the connection's limiter allows.
        tokio::spawn(send_batch(Arc::clone(&api), items));
    }
}

async fn send_batch(api: Arc<Endpoint>, items: Vec<Queued>) {
    let mut body = BatchBody {
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
    };
    // Where each item's answer will be: (list, index in it).
    let mut places = Vec::with_capacity(items.len());
    let mut replies = Vec::with_capacity(items.len());
    for Queued { op, reply } in items {
        let place = match op {
            BatchOp::Create(v) => {
                body.create.push(v);
                (0, body.create.len() - 1)
            }
            BatchOp::Update(v) => {
                body.update.push(v);
                (1, body.update.len() - 1)
            }
            BatchOp::Delete(id) => {
                body.delete.push(id);
                (2, body.delete.len() - 1)
            }
        };
        places.push(place);
        replies.push(reply);
    }
    let answer = api
        .call::<BatchAnswer>(api.request(Method::POST, "/products/batch").json(&body))
        .await;
    match answer {
        Ok(mut answer) => {
            let mut lists = [
                std::mem::take(&mut answer.create),
                std::mem::take(&mut answer.update),
                std::mem::take(&mut answer.delete),
            ];
            for ((list, index), reply) in places.into_iter().zip(replies) {
                let item = lists[list].get_mut(index).map(Value::take).ok_or_else(|| {
                    ItemError::from(MarketError::Protocol(
                        "the batch answer is missing an item".to_string(),
                    ))
                });
                let _ = reply.send(item.and_then(item_result));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(ItemError::from(error.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_decimal_strings_without_trailing_zeros() {
        assert_eq!(price_string(19990.0), "19990");
        assert_eq!(price_string(10.5), "10.5");
        assert_eq!(price_string(0.99), "0.99");
    }

    #[test]
    fn a_batch_item_error_is_mapped_like_an_answer_of_its_own() {
        let dup = serde_json::json!({"id": 0, "error": {"code": "product_invalid_sku",
            "message": "Invalid or duplicated SKU.", "data": {"status": 400, "resource_id": 42}}});
        let e = item_result(dup).unwrap_err();
        assert_eq!(e.resource_id, Some(42));
        assert_eq!(
            e.error.to_string(),
            "Invalid or duplicated SKU. (product_invalid_sku)"
        );
        assert!(!e.error.is_retriable());
        let gone = serde_json::json!({"id": 9, "error": {"code": "woocommerce_rest_product_invalid_id",
            "message": "Invalid ID.", "data": {"status": 404}}});
        assert!(item_result(gone).unwrap_err().is_gone());
        let busy = serde_json::json!({"id": 9, "error": {"code": "db_error",
            "message": "Deadlock", "data": {"status": 503}}});
        assert!(item_result(busy).unwrap_err().error.is_retriable());
        let fine = serde_json::json!({"id": 9, "name": "x"});
        assert_eq!(item_result(fine.clone()).unwrap(), fine);
    }
}
