//! The WooCommerce adapter (REST v3 under `/wp-json/wc/v3`; HTTP Basic with the `ck_`/`cs_` keys
//! over HTTPS, OAuth 1.0a signed requests over plain HTTP, where WooCommerce ignores Basic).
//! Every action is one phase. A product with variants is a `variable` product whose variations
//! live under `products/{id}/variations`. Prices travel as strings. A create of unknown outcome
//! is followed by a look-up by SKU (`products?sku=`), and a duplicate-SKU refusal
//! (`product_invalid_sku` with `data.resource_id`) adopts the existing product.

pub mod sim;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::gather::{Fetch, Gatherer};
use super::http::{classify, Auth, Endpoint, Gate};
use super::plan::{Operation, RemoteId, Request, NEW};
use super::{create_once, Checkpoint, MarketError, Marketplace, PhaseCall, Sale, READS_ONLY};
use domain::drift::{self, Difference, Shown, ShownVariant};
use domain::{Action, Connection, Credentials, MarketplaceInfo, Offer, Product, ProductStatus};

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
    /// The GTIN, UPC, EAN or ISBN (WooCommerce 9.2+; an older site ignores it). The brand is
    /// not sent: WooCommerce's brands (9.6+) are terms named by id, which campaignd does not
    /// manage.
    #[serde(skip_serializing_if = "Option::is_none")]
    global_unique_id: Option<&'a str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    global_unique_id: Option<&'a str>,
}

#[derive(Serialize)]
struct VariationAttribute<'a> {
    name: &'a str,
    option: &'a str,
}

#[derive(Deserialize, Default)]
struct RemoteProduct {
    id: RemoteId,
    #[serde(default)]
    sku: String,
    /// `simple`, `variable`, ...; `variation` for a variation listed by the SKU filter.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// The product a listed variation belongs to.
    #[serde(default)]
    parent_id: Option<u64>,
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

impl RemoteProduct {
    /// Whether the SKU filter listed a variation (`products?sku=` lists variations too).
    fn is_variation(&self) -> bool {
        self.kind.as_deref() == Some("variation")
    }
}

#[derive(Deserialize, Default)]
struct RemoteImage {
    id: RemoteId,
}

#[derive(Deserialize, Default)]
struct RemoteVariation {
    id: RemoteId,
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

/// Signs each request to a site on plain HTTP with OAuth 1.0a, a fresh nonce and the time it
/// leaves.
fn oauth_signer(key: String, secret: String) -> super::http::Signer {
    Arc::new(move |request: &mut reqwest::Request| {
        use rand::Rng;
        let nonce: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let method = request.method().as_str().to_string();
        let now = chrono::Utc::now().timestamp();
        sign_oauth(&method, request.url_mut(), &key, &secret, now, &nonce);
    })
}

/// RFC 3986's encoding, as OAuth 1.0a asks: all but `A-Z a-z 0-9 - . _ ~`.
const OAUTH_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn oauth_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// WooCommerce's authentication over plain HTTP: OAuth 1.0a "one-legged" (the REST API docs,
/// "Authentication over HTTP": `oauth_consumer_key`, `oauth_timestamp`, `oauth_nonce`,
/// `oauth_signature` and `oauth_signature_method`, "`oauth_version` is not required and should
/// be omitted"; HMAC-SHA1 or HMAC-SHA256 keyed with the consumer secret and "&"; a timestamp
/// within 15 minutes; a nonce used once). The signature covers the method, the URL without its
/// query, and every query parameter, sorted; the parameters go in the query string.
pub fn sign_oauth(
    method: &str,
    url: &mut url::Url,
    key: &str,
    secret: &str,
    timestamp: i64,
    nonce: &str,
) {
    use base64::Engine;
    use hmac::Mac;
    let timestamp = timestamp.to_string();
    let oauth = [
        ("oauth_consumer_key", key),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", timestamp.as_str()),
    ];
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (oauth_encode(&k), oauth_encode(&v)))
        .chain(
            oauth
                .iter()
                .map(|(k, v)| (oauth_encode(k), oauth_encode(v))),
        )
        .collect();
    params.sort();
    let joined: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let to_sign = format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        oauth_encode(base.as_str()),
        oauth_encode(&joined.join("&"))
    );
    let Ok(mut mac) =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(format!("{}&", oauth_encode(secret)).as_bytes())
    else {
        // HMAC takes a key of any length; nothing to sign with otherwise.
        return;
    };
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut query = url.query_pairs_mut();
    for (k, v) in oauth {
        query.append_pair(k, v);
    }
    query.append_pair("oauth_signature", &signature);
}

/// WooCommerce takes prices as decimal strings.
pub fn price_string(price: f64) -> String {
    let s = format!("{price:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `sale_price` of the product (`None`) or of a variation: WooCommerce shows a sale as
/// `sale_price` beside `regular_price`; `""` takes an ended sale away.
fn sale_price(sale: &Sale, v: Option<&domain::Variant>) -> Option<String> {
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
        // WooCommerce reads HTTP Basic only over HTTPS; a site on plain HTTP ignores it and
        // takes OAuth 1.0a instead (see `sign_oauth`).
        let auth = if connection.base_url.starts_with("http://") {
            Auth::Signed(oauth_signer(key, secret))
        } else {
            Auth::Basic {
                user: key,
                password: secret,
            }
        };
        // WooCommerce has no quota headers of its own; a host's 429 still pauses the
        // connection through the gate.
        let api = Arc::new(Endpoint::new(
            &connection.base_url,
            auth,
            gate,
            message_of,
            crate::http::no_quota,
        ));
        WooCommerce {
            batch: Batcher::new(Arc::clone(&api), batch_size),
            reads: Gatherer::new(MAX_BATCH, listed(Arc::clone(&api))).planned(
                api.gate(),
                |_| Request::new("GET", "/products").batched("include"),
                |id| serde_json::json!({ "id": id }),
            ),
            api,
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    /// The protocol's one way out (see `Endpoint::exchange`): sent by a run, recorded by a
    /// dry run.
    async fn call<T: serde::de::DeserializeOwned + Default>(
        &self,
        operation: Operation,
        request: RequestBuilder,
    ) -> Result<T, MarketError> {
        self.api.exchange(operation, request).await
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
            global_unique_id: p.details.barcode.as_deref(),
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
        let body_of = |v: &domain::Variant, id: Option<u64>| {
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
                global_unique_id: v.barcode.as_deref(),
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

    fn adopt(p: &Product, info: &mut MarketplaceInfo, remote: &RemoteProduct) {
        info.product_id = Some(remote.id.to_string());
        // WooCommerce answers images in the order they were given, with `src` rewritten to its
        // own media URL, so they are matched by position.
        info.images_by_position(p, remote.images.iter().map(|i| Some(i.id.to_string())));
    }

    /// Updates the product through the batch (`operation` says what the update does to
    /// it), taking its ids from the answer.
    async fn update(
        &self,
        operation: Operation,
        p: &Product,
        info: &mut MarketplaceInfo,
        id: u64,
        mut body: Value,
    ) -> Result<(), ItemError> {
        if let Value::Object(fields) = &mut body {
            fields.insert("id".to_string(), Value::from(id));
        }
        let answer = self.batch.submit(BatchOp::Update(body), operation).await?;
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
                .update(
                    Operation::Update,
                    p,
                    info,
                    id,
                    Self::body(p, sale, info, "publish"),
                )
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
        // The batch answers the product it made, or names what holds the SKU (then nothing
        // was made, and the holder is looked at below).
        let body = BatchOp::Create(Self::body(p, sale, info, "publish"));
        let send = async {
            match self
                .batch
                .submit(body, Operation::Create)
                .await
                .and_then(parse_item::<RemoteProduct>)
            {
                Ok(remote) => Ok(Ok(remote)),
                Err(ItemError {
                    resource_id: Some(existing),
                    error,
                }) => Ok(Err((existing, error))),
                Err(e) => Err(e.error),
            }
        };
        let mut held = None;
        create_once(info, checkpoint, send, |info, made| match made {
            Ok(remote) => Self::adopt(p, info, &remote),
            Err(holder) => held = Some(holder),
        })
        .await?;
        let Some((existing, error)) = held else {
            return Ok(());
        };
        // The SKU's holder may be a variation of another product (WooCommerce's SKUs are one
        // space for both, and `resource_id` names the variation itself): only a product is
        // adopted, anything else is the product's refusal.
        let holders = self.holders(&[p.sku.as_str()]).await?;
        adoptable(&p.sku, existing, None, &holders, &error)?;
        info.product_id = Some(existing.to_string());
        checkpoint(info).await?;
        let body = Self::body(p, sale, info, "publish");
        self.update(Operation::Update, p, info, existing, body)
            .await
            .map_err(|e| e.error)
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
        let parent = info.remote_number();
        // Two rounds at most: the second updates variations adopted in the first.
        for _ in 0..2 {
            let (create, update, create_skus) = Self::variations(p, sale, info);
            let mut adopted = false;
            let mut first_error = None;
            for (body, skus) in variation_batches(create, update, create_skus) {
                let request = self.request(Method::POST, &path).json(&body);
                // SKUs refused as held elsewhere: (SKU, holder, refusal).
                let mut held = Vec::new();
                // The variations made are kept as the answer is read, before the create is
                // cleared; the rest of the answer is read after.
                let mut took = |info: &mut MarketplaceInfo, answer: BatchAnswer| {
                    for (sku, item) in skus.iter().zip(answer.create) {
                        match item_result(item).and_then(parse_item::<RemoteVariation>) {
                            Ok(v) => info.set_variant_id(sku, v.id.to_string()),
                            Err(ItemError {
                                resource_id: Some(existing),
                                error,
                            }) => held.push((*sku, existing, error)),
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
                };
                match body.create.is_empty() {
                    true => took(info, self.call(Operation::Update, request).await?),
                    false => {
                        create_once(
                            info,
                            checkpoint,
                            self.call(Operation::Create, request),
                            took,
                        )
                        .await?
                    }
                }
                if !held.is_empty() {
                    // One look-up for all of them: a variation of this product (an earlier
                    // create whose answer was lost) is adopted; a SKU held by another product
                    // or its variation is this product's refusal.
                    let wanted: Vec<&str> = held.iter().map(|(sku, _, _)| *sku).collect();
                    let holders = self.holders(&wanted).await?;
                    for (sku, existing, error) in held {
                        match adoptable(sku, existing, parent, &holders, &error) {
                            Ok(()) => {
                                info.set_variant_id(sku, existing.to_string());
                                adopted = true;
                            }
                            Err(refusal) => {
                                first_error.get_or_insert(refusal);
                            }
                        }
                    }
                }
                checkpoint(info).await?;
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            if !adopted {
                return Ok(());
            }
        }
        Ok(())
    }

    /// What holds each of `skus` on the site, products and variations alike (the SKU filter
    /// takes a comma-separated list; 100 at most a request).
    async fn holders(&self, skus: &[&str]) -> Result<Vec<RemoteProduct>, MarketError> {
        let mut found = Vec::new();
        for some in skus.chunks(MAX_BATCH) {
            let list: Vec<RemoteProduct> = self
                .call(
                    Operation::Read,
                    self.request(Method::GET, "/products")
                        .query(&[("sku", some.join(",")), ("per_page", MAX_BATCH.to_string())]),
                )
                .await?;
            found.extend(list);
        }
        Ok(found)
    }

    /// Every variation of a product: the list is paged (10 unless asked, 100 at most), so it
    /// is read 100 a page, as many pages as the first answer's `X-WP-TotalPages` says.
    async fn variations_of(&self, id: u64) -> Result<Vec<RemoteVariation>, MarketError> {
        let path = format!("/products/{id}/variations");
        let mut all = Vec::new();
        // Unknown until the first answer; a site that leaves the header out is read until a
        // page comes back short.
        let mut pages: Option<usize> = None;
        let mut page = 1;
        while pages.is_none_or(|n| page <= n) {
            let (list, headers): (Vec<RemoteVariation>, _) = self
                .api
                .exchange_with_headers(
                    Operation::Read,
                    self.request(Method::GET, &path).query(&[
                        ("per_page", MAX_BATCH.to_string()),
                        ("page", page.to_string()),
                    ]),
                    0.0,
                    Vec::new(),
                )
                .await?;
            if page == 1 {
                pages = headers
                    .get("X-WP-TotalPages")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
            }
            let short = list.len() < MAX_BATCH;
            all.extend(list);
            if short {
                break;
            }
            page += 1;
        }
        Ok(all)
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
        let body = serde_json::json!({ "status": status });
        self.update(Operation::Status, p, info, id, body)
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
                let delete = BatchOp::Delete(id);
                self.batch
                    .submit(delete, Operation::Delete)
                    .await
                    .map(|_| ())
            } else {
                let request = self.request(Method::DELETE, &format!("/products/{id}"));
                match self.call::<Value>(Operation::Delete, request).await {
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
    /// A product's SKU is unique on the site (`woocommerce_rest_product_not_created`,
    /// `product_invalid_sku`, naming the holder): a create sent again while the first may still
    /// land leaves one product, whichever lands first, and the other is refused and adopted.
    fn creates_are_idempotent(&self) -> bool {
        true
    }

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
            return Ok(());
        }
        if info.product_id.is_none() {
            let hits: Vec<RemoteProduct> = self
                .call(
                    Operation::Read,
                    self.request(Method::GET, "/products")
                        .query(&[("sku", p.sku.as_str())]),
                )
                .await?;
            if let Some(found) = hits.iter().find(|h| h.sku == p.sku && !h.is_variation()) {
                Self::adopt(p, info, found);
            }
        }
        Ok(())
    }

    // No look-up before the creates (`find_listed`): WooCommerce refuses a SKU it already
    // holds and names the holder, which is adopted (after `holders` says it is a product), so a
    // store that lists none of a run's products costs no request more, where a look-up of
    // each chunk would cost one and cut the batches it goes between.

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
                        Operation::Read,
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
                        Some(self.variations_of(id).await?)
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
                Operation::Read,
                self.request(Method::GET, "/products")
                    .query(&[("sku", p.sku.as_str())]),
            )
            .await?;
        let found = hits
            .iter()
            .find(|h| h.sku == p.sku && !h.is_variation())
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

/// Splits a variable product's variations into `variations/batch` bodies of at most
/// `MAX_BATCH` items in all (WooCommerce's `check_batch_limit` counts create, update and delete
/// together; 413 above it), updates first, each with the SKUs of the creates it carries.
fn variation_batches<'a>(
    create: Vec<Value>,
    update: Vec<Value>,
    create_skus: Vec<&'a str>,
) -> Vec<(BatchBody, Vec<&'a str>)> {
    let mut batches: Vec<(BatchBody, Vec<&'a str>)> = Vec::new();
    let fresh = || BatchBody {
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
    };
    let room = |batches: &mut Vec<(BatchBody, Vec<&'a str>)>| {
        let full = batches
            .last()
            .is_none_or(|(b, _)| b.create.len() + b.update.len() >= MAX_BATCH);
        if full {
            batches.push((fresh(), Vec::new()));
        }
    };
    for item in update {
        room(&mut batches);
        if let Some((body, _)) = batches.last_mut() {
            body.update.push(item);
        }
    }
    let mut skus = create_skus.into_iter();
    for item in create {
        room(&mut batches);
        if let Some((body, batch_skus)) = batches.last_mut() {
            body.create.push(item);
            batch_skus.extend(skus.next());
        }
    }
    batches
}

/// Whether the item WooCommerce named as the holder of `sku` (`resource_id` of a duplicate-SKU
/// refusal) may be adopted: a product when `parent` is `None`, a variation of `parent`
/// otherwise, as the SKU filter lists it. Anything else holds the SKU for someone else, and the
/// product is refused saying who.
fn adoptable(
    sku: &str,
    holder: u64,
    parent: Option<u64>,
    holders: &[RemoteProduct],
    refusal: &MarketError,
) -> Result<(), MarketError> {
    let listed = holders
        .iter()
        .find(|h| h.id.0 == holder.to_string() && h.sku == sku);
    let why = match (listed, parent) {
        (Some(h), None) if !h.is_variation() => return Ok(()),
        (Some(h), Some(parent)) if h.is_variation() && h.parent_id == Some(parent) => return Ok(()),
        (Some(h), _) if h.is_variation() => format!(
            "the SKU {sku} is held on WooCommerce by variation {holder} of product {}",
            h.parent_id
                .map_or_else(|| "?".to_string(), |p| p.to_string())
        ),
        (Some(_), _) => format!("the SKU {sku} is held on WooCommerce by product {holder}"),
        (None, _) => format!("the SKU {sku} is held on WooCommerce by item {holder} ({refusal})"),
    };
    Err(MarketError::Rejected {
        status: 400,
        message: why,
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

    /// Sends `op` in the next batch, and answers its item of the answer. A dry run records
    /// it as this product's item of a batch (`operation` says what it does to the product),
    /// answered as planned: the product's id, `plan::NEW` for a create.
    async fn submit(&self, op: BatchOp, operation: Operation) -> Result<Value, ItemError> {
        if let Some(recorder) = self.api.gate().recorder() {
            let (item, body, id) = match &op {
                BatchOp::Create(v) => ("create", v.clone(), Value::from(NEW)),
                BatchOp::Update(v) => ("update", v.clone(), v["id"].clone()),
                BatchOp::Delete(id) => ("delete", serde_json::json!({"id": id}), Value::from(*id)),
            };
            let request = Request::new("POST", "/products/batch").batched(item);
            recorder.record(operation, request.with_body(&body));
            return Ok(serde_json::json!({ "id": id }));
        }
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

    /// The expected signature was computed apart from this code (Python's `hmac` over the
    /// RFC 5849 base string).
    #[test]
    fn a_request_over_plain_http_is_signed_with_oauth_over_its_sorted_query() {
        let mut url = url::Url::parse(
            "http://127.0.0.1:8080/wp-json/wc/v3/products?sku=A-1%2CB+2&per_page=100",
        )
        .unwrap();
        let nonce = "abcdefghijklmnopqrstuvwxyz012345";
        sign_oauth(
            "GET",
            &mut url,
            "ck_test",
            "cs_secret",
            1_765_000_000,
            nonce,
        );
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(
            q["oauth_signature"],
            "FW8vC1UPNM4lGTEufwBKLRPSuK9e0exw+xDJnbf7Fts="
        );
        assert_eq!(q["oauth_consumer_key"], "ck_test");
        assert_eq!(q["oauth_signature_method"], "HMAC-SHA256");
        assert_eq!(q["sku"], "A-1,B 2", "the query itself is kept");
        assert!(!q.contains_key("oauth_version"), "omitted, as the docs ask");
    }

    #[test]
    fn variations_go_in_batches_of_at_most_100_items_in_all_updates_first() {
        let items = |n: usize| {
            (0..n)
                .map(|i| serde_json::json!({"n": i}))
                .collect::<Vec<_>>()
        };
        let skus: Vec<String> = (0..150).map(|i| format!("V-{i}")).collect();
        let check = |updates: usize, creates: usize| {
            let batches = variation_batches(
                items(creates),
                items(updates),
                skus[..creates].iter().map(String::as_str).collect(),
            );
            batches
                .iter()
                .map(|(b, s)| {
                    assert_eq!(b.create.len(), s.len(), "each create keeps its SKU");
                    (b.update.len(), b.create.len())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(check(0, 150), [(0, 100), (0, 50)]);
        assert_eq!(check(30, 120), [(30, 70), (0, 50)]);
        assert_eq!(check(150, 0), [(100, 0), (50, 0)]);
        assert_eq!(check(0, 100), [(0, 100)]);
        assert_eq!(check(0, 0), []);
        let batches = variation_batches(
            items(101),
            Vec::new(),
            skus[..101].iter().map(String::as_str).collect(),
        );
        assert_eq!(batches[1].1, ["V-100"], "the SKUs follow their creates");
    }

    #[test]
    fn only_a_product_or_a_variation_of_the_same_parent_is_adopted_for_a_held_sku() {
        let listed = |id: u64, sku: &str, kind: &str, parent: Option<u64>| RemoteProduct {
            id: RemoteId(id.to_string()),
            sku: sku.to_string(),
            kind: Some(kind.to_string()),
            parent_id: parent,
            images: Vec::new(),
            status: None,
            price: None,
            stock_quantity: None,
        };
        let holders = [
            listed(10, "P", "simple", None),
            listed(21, "V", "variation", Some(20)),
            listed(31, "W", "variation", Some(30)),
        ];
        let dup = MarketError::Rejected {
            status: 400,
            message: "Invalid or duplicated SKU. (product_invalid_sku)".to_string(),
        };
        let check = |sku, holder, parent| adoptable(sku, holder, parent, &holders, &dup);
        assert!(check("P", 10, None).is_ok(), "our own lost create");
        assert!(check("V", 21, Some(20)).is_ok(), "our own lost variation");
        let refusal = check("V", 21, None).unwrap_err().to_string();
        assert_eq!(
            refusal,
            "the SKU V is held on WooCommerce by variation 21 of product 20"
        );
        let refusal = check("W", 31, Some(20)).unwrap_err().to_string();
        assert_eq!(
            refusal,
            "the SKU W is held on WooCommerce by variation 31 of product 30"
        );
        let refusal = check("P", 10, Some(20)).unwrap_err().to_string();
        assert_eq!(refusal, "the SKU P is held on WooCommerce by product 10");
        assert!(
            check("X", 99, None).is_err(),
            "a holder the filter does not list"
        );
    }

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
