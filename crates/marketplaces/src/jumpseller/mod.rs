//! The Jumpseller adapter (API v1, every path ending in `.json`, HTTP Basic `login:authtoken`).
//! Publishing runs in three phases: product data, then variants, then images. Before any create
//! whose outcome is unknown (a create was sent and no id came back), the product is looked up by
//! SKU, or re-read by id, and what exists is adopted, so nothing is created twice.

pub mod sim;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use super::http::{Auth, Endpoint, Gate};
use super::plan::{Operation, RemoteId};
use super::{create_once, Checkpoint, MarketError, Marketplace, PhaseCall, Sale};
use super::{listed, READS_ONLY};
use domain::drift::{self, Difference, Shown, ShownVariant};
use domain::{
    Action, Connection, Credentials, MarketplaceInfo, Offer, Phase, Product, ProductStatus, Sent,
};

/// Jumpseller connections: a store's login and API token; no settings of their own.
pub struct Kind;

pub static KIND: Kind = Kind;

impl super::kind::ConnectionKind for Kind {
    fn official_host(&self, url: &reqwest::Url) -> Result<(), &'static str> {
        match super::kind::https_on(url, "api.jumpseller.com") {
            true => Ok(()),
            false => Err("https://api.jumpseller.com"),
        }
    }

    fn credential_keys(&self) -> &'static [&'static str] {
        &["login", "authtoken"]
    }

    fn credentials(&self, values: Vec<String>) -> Result<Credentials, String> {
        let [login, authtoken] = <[String; 2]>::try_from(values)
            .map_err(|_| "the login and the authtoken".to_string())?;
        Ok(Credentials::Jumpseller { login, authtoken })
    }
}

pub struct Jumpseller {
    api: Endpoint,
    /// What this run learned of the store's listing, for finding the products it already
    /// lists before creating them (`find_listed`).
    listing: tokio::sync::Mutex<Listing>,
}

/// The store's listing as a run learns it: how many products it holds, and, once read whole,
/// which product holds each SKU.
#[derive(Default)]
struct Listing {
    count: Option<u64>,
    skus: Option<std::collections::HashMap<String, String>>,
}

/// A page of the store's listing holds 100 products at most (the document's `LimitParam`:
/// "maximum: 100").
const PAGE: u64 = 100;

#[derive(Deserialize, Default)]
struct Count {
    count: u64,
}

#[derive(Serialize)]
struct ProductBody<'a> {
    product: ProductFields<'a>,
}

/// `ProductCreateFields` / `ProductEditFields`: `name` and `price` are required by both.
#[derive(Serialize)]
struct ProductFields<'a> {
    name: &'a str,
    price: f64,
    /// The regular price while a campaign price is in force; `null` takes a sale shown
    /// before away.
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at_price: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<i64>,
    status: &'a str,
    /// The product's GTIN (`ProductCreateFields.barcode`); Jumpseller's `brand` is read-only
    /// (in `ProductFields`, not in the create or edit fields), so the brand is not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    barcode: Option<&'a str>,
}

#[derive(Serialize)]
struct VariantBody<'a> {
    variant: VariantFields<'a>,
}

#[derive(Serialize)]
struct VariantFields<'a> {
    price: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at_price: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    options: Vec<VariantOption<'a>>,
    /// `VariantFields.barcode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    barcode: Option<&'a str>,
}

#[derive(Serialize)]
struct VariantOption<'a> {
    name: &'a str,
    value: &'a str,
    option_type: &'a str,
}

#[derive(Serialize)]
struct ImageBody<'a> {
    image: ImageFields<'a>,
}

#[derive(Serialize)]
struct ImageFields<'a> {
    url: &'a str,
    position: u32,
}

#[derive(Deserialize, Default)]
struct ProductEnvelope {
    product: RemoteProduct,
}

#[derive(Deserialize, Default)]
struct RemoteProduct {
    id: RemoteId,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    stock: Option<i64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    variants: Vec<RemoteVariant>,
    #[serde(default)]
    images: Vec<RemoteImage>,
}

#[derive(Deserialize, Default)]
struct VariantEnvelope {
    variant: RemoteVariant,
}

#[derive(Deserialize, Default)]
struct RemoteVariant {
    id: RemoteId,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    stock: Option<i64>,
}

#[derive(Deserialize, Default)]
struct ImageEnvelope {
    image: RemoteImage,
}

#[derive(Deserialize, Default)]
struct RemoteImage {
    id: RemoteId,
    #[serde(default)]
    url: Option<String>,
}

/// Jumpseller answers errors as `{"message": "..."}` (404) or with an undocumented shape; show
/// the message when there is one, else the body.
fn message_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.get("message").or_else(|| v.get("error")) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => v.get("errors").map(|e| e.to_string()),
    }
}

/// Jumpseller's quota headers: a ban (`Jumpseller-BannedByRateLimit-Reset`, a UTC time) holds
/// the connection until it ends; `Jumpseller-PerSecondRateLimit-Limit` and `-Remaining` (and
/// the per-minute pair) keep the limiter's windows in step with the store's own count and
/// limits (another client of the store included).
pub fn hold_of(headers: &reqwest::header::HeaderMap, _: &[u8]) -> crate::http::Quota {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let number = |name: &str| text(name).and_then(|v| v.trim().parse::<u32>().ok());
    let hold = text("Jumpseller-BannedByRateLimit-Reset").and_then(|reset| {
        let until = chrono::DateTime::parse_from_rfc3339(reset.trim())
            .or_else(|_| chrono::DateTime::parse_from_rfc2822(reset.trim()))
            .ok()?;
        let wait = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
        Some(wait.to_std().unwrap_or_default())
    });
    let window = |prefix: &str| {
        Some(crate::http::Window {
            limit: number(&format!("{prefix}-Limit")),
            remaining: number(&format!("{prefix}-Remaining"))?,
        })
    };
    crate::http::Quota {
        hold,
        second: window("Jumpseller-PerSecondRateLimit"),
        minute: window("Jumpseller-PerMinuteRateLimit"),
        points: None,
    }
}

fn is_not_found(e: &MarketError) -> bool {
    matches!(e, MarketError::Rejected { status: 404, .. })
}

impl Jumpseller {
    pub fn new(connection: &Connection, gate: Gate) -> Jumpseller {
        let (login, authtoken) = match &connection.credentials {
            Credentials::Jumpseller { login, authtoken } => (login.clone(), authtoken.clone()),
            // The API only stores Jumpseller credentials on Jumpseller connections; anything
            // else would be refused by the store as unauthenticated.
            _ => (String::new(), String::new()),
        };
        Jumpseller {
            api: Endpoint::new(
                &connection.base_url,
                Auth::Basic {
                    user: login,
                    password: authtoken,
                },
                gate,
                message_of,
                hold_of,
            ),
            listing: tokio::sync::Mutex::default(),
        }
    }

    /// Reads the whole store's listing, a page of 100 at a time: each product's SKU and its
    /// variants' SKUs, by the product that holds them.
    async fn list_all(
        &self,
        pages: u64,
    ) -> Result<std::collections::HashMap<String, String>, MarketError> {
        let mut skus = std::collections::HashMap::new();
        for page in 1..=pages {
            let listed: Vec<ProductEnvelope> = self
                .call(
                    Operation::Read,
                    self.request(Method::GET, "/products.json")
                        .query(&[("limit", PAGE), ("page", page)]),
                )
                .await?;
            for ProductEnvelope { product } in listed {
                let id = product.id.to_string();
                let held = product
                    .sku
                    .iter()
                    .chain(product.variants.iter().filter_map(|v| v.sku.as_ref()));
                for sku in held.filter(|s| !s.is_empty()) {
                    skus.entry(sku.clone()).or_insert_with(|| id.clone());
                }
            }
        }
        Ok(skus)
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

    fn product_body<'a>(
        p: &'a Product,
        sale: &Sale,
        status: &'a str,
        full: bool,
    ) -> ProductBody<'a> {
        ProductBody {
            product: ProductFields {
                name: &p.name,
                price: sale.offer.price,
                compare_at_price: sale.shown(None).1,
                description: full.then_some(p.description.as_str()),
                sku: full.then_some(p.sku.as_str()),
                stock: full.then_some(p.stock),
                status,
                barcode: p.details.barcode.as_deref().filter(|_| full),
            },
        }
    }

    fn variant_body<'a>(
        v: &'a domain::Variant,
        sale: &Sale,
        info: &MarketplaceInfo,
    ) -> VariantBody<'a> {
        let (price, compare_at_price) = sale.shown(Some(v));
        let known = info.variant_id(&v.sku).is_some();
        // An existing variant whose prices alone changed gets the price fields alone.
        let full = !(known && sale.prices_only);
        VariantBody {
            variant: VariantFields {
                price,
                compare_at_price,
                sku: full.then_some(v.sku.as_str()),
                stock: full.then_some(v.stock),
                options: if full {
                    v.options
                        .iter()
                        .map(|(name, value)| VariantOption {
                            name,
                            value,
                            option_type: "option",
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                barcode: v.barcode.as_deref().filter(|_| full),
            },
        }
    }

    fn image_body(img: &domain::Image) -> ImageBody<'_> {
        ImageBody {
            image: ImageFields {
                url: &img.url,
                position: img.position,
            },
        }
    }

    /// What the store should show of a product left in `status` at `offer`'s prices.
    fn expected(p: &Product, offer: &Offer, status: ProductStatus) -> Shown {
        Shown {
            status: Some(
                match status {
                    ProductStatus::Paused => "not-available",
                    _ => "available",
                }
                .to_string(),
            ),
            price: Some(offer.price),
            stock: Some(p.stock),
            variants: Some(drift::sent_variants(p, offer)),
            images: Some(p.images.len() as u32),
        }
    }

    fn shown(remote: &RemoteProduct) -> Shown {
        Shown {
            status: remote.status.clone(),
            price: remote.price,
            stock: remote.stock,
            variants: Some(
                remote
                    .variants
                    .iter()
                    .map(|v| ShownVariant {
                        sku: v.sku.clone().unwrap_or_default(),
                        price: v.price,
                        stock: v.stock,
                    })
                    .collect(),
            ),
            images: Some(remote.images.len() as u32),
        }
    }

    /// The store's product holding the SKU, if any. The search's one documented refusal,
    /// 404 "Invalid query." (`/products/search.json` in the OpenAPI document, which is silent on
    /// a search that matches nothing), finds nothing: it cannot mean the SKU is listed.
    async fn find_by_sku(&self, sku: &str) -> Result<Option<RemoteProduct>, MarketError> {
        Ok(self.holders(sku).await?.into_iter().next())
    }

    /// Every product of the store holding the SKU (see `find_by_sku`).
    async fn holders(&self, sku: &str) -> Result<Vec<RemoteProduct>, MarketError> {
        let searched = self
            .call::<Vec<ProductEnvelope>>(
                Operation::Read,
                self.request(Method::GET, "/products/search.json")
                    .query(&[("query", sku), ("fields", "sku")]),
            )
            .await;
        let hits = match searched {
            Ok(hits) => hits,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(hits
            .into_iter()
            .map(|h| h.product)
            .filter(|r| r.sku.as_deref() == Some(sku))
            .collect())
    }

    /// The other products holding the product's SKU, looked for when its creates went
    /// unanswered (see `drift::copies`).
    async fn copies(
        &self,
        p: &Product,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        if info.unanswered_creates == 0 {
            return Ok(Vec::new());
        }
        let held = self.holders(&p.sku).await?;
        let ids = held.into_iter().map(|r| r.id.to_string()).collect();
        Ok(drift::copies(&p.sku, info.product_id.as_deref(), ids))
    }

    fn remote_id(info: &MarketplaceInfo) -> Result<&str, MarketError> {
        info.product_id.as_deref().ok_or_else(|| {
            MarketError::Protocol("the product has no Jumpseller id yet".to_string())
        })
    }

    async fn upsert_product(
        &self,
        p: &Product,
        sale: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.product_id.clone() {
            // Only the prices changed: the price fields alone.
            let full = !sale.prices_only;
            let put = self
                .call::<ProductEnvelope>(
                    Operation::Update,
                    self.request(Method::PUT, &format!("/products/{id}.json"))
                        .json(&Self::product_body(p, sale, "available", full)),
                )
                .await;
            match put {
                Ok(_) => {
                    info.remote_status = Some("available".to_string());
                    return checkpoint(info).await;
                }
                // Deleted on the store behind our back: forget it and create it again.
                Err(e) if is_not_found(&e) => {
                    *info = MarketplaceInfo::default();
                    checkpoint(info).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let request = self
            .request(Method::POST, "/products.json")
            .json(&Self::product_body(p, sale, "available", true));
        create_once(
            info,
            checkpoint,
            self.call::<ProductEnvelope>(Operation::Create, request),
            |info, envelope| {
                info.product_id = Some(envelope.product.id.to_string());
                info.remote_status = Some("available".to_string());
            },
        )
        .await
    }

    async fn upsert_variants(
        &self,
        p: &Product,
        sale: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let pid = Self::remote_id(info)?.to_string();
        for v in &p.variants {
            let body = Self::variant_body(v, sale, info);
            if let Some(vid) = info.variant_id(&v.sku) {
                let path = format!("/products/{pid}/variants/{vid}.json");
                self.call::<VariantEnvelope>(
                    Operation::Update,
                    self.request(Method::PUT, &path).json(&body),
                )
                .await?;
                continue;
            }
            let path = format!("/products/{pid}/variants.json");
            let request = self.request(Method::POST, &path).json(&body);
            create_once(
                info,
                checkpoint,
                self.call::<VariantEnvelope>(Operation::Create, request),
                |info, created| info.set_variant_id(&v.sku, created.variant.id.to_string()),
            )
            .await?;
        }
        Ok(())
    }

    async fn add_images(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let pid = Self::remote_id(info)?.to_string();
        let mut images: Vec<_> = p.images.iter().collect();
        images.sort_by_key(|i| i.position);
        for img in images {
            if info.image_id(&img.url).is_some() {
                continue;
            }
            let body = Self::image_body(img);
            let path = format!("/products/{pid}/images.json");
            let request = self.request(Method::POST, &path).json(&body);
            create_once(
                info,
                checkpoint,
                self.call::<ImageEnvelope>(Operation::Create, request),
                |info, created| {
                    info.image_ids
                        .push((img.url.clone(), created.image.id.to_string()))
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn pause(
        &self,
        p: &Product,
        sale: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let id = Self::remote_id(info)?.to_string();
        // Jumpseller's edit needs the name and the price: the prices in force go with the new
        // status, and are remembered as sent.
        self.call::<ProductEnvelope>(
            Operation::Status,
            self.request(Method::PUT, &format!("/products/{id}.json"))
                .json(&Self::product_body(p, sale, "not-available", false)),
        )
        .await?;
        info.remote_status = Some("not-available".to_string());
        // Only the prices went out: the content last sent stays what it was.
        let content = info.sent.map_or(0, |s| s.content);
        info.sent = Some(Sent {
            content,
            ..Sent::of(p, &sale.offer)
        });
        checkpoint(info).await
    }

    /// Finish and delete both delete the product on Jumpseller (the seed's BatchFinishProductsJob).
    async fn delete(
        &self,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.product_id.clone() {
            let deleted = self
                .call::<serde_json::Value>(
                    Operation::Delete,
                    self.request(Method::DELETE, &format!("/products/{id}.json")),
                )
                .await;
            match deleted {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        *info = MarketplaceInfo {
            remote_status: Some("deleted".to_string()),
            ..MarketplaceInfo::default()
        };
        checkpoint(info).await
    }
}

#[async_trait]
impl Marketplace for Jumpseller {
    fn finds_listed(&self) -> bool {
        true
    }

    /// Jumpseller has no multiget: the store's size decides. Once a run it is counted; when
    /// reading the whole listing (100 a page) takes no more requests than searching this many
    /// SKUs one by one, it is read and kept for the rest of the run, else each SKU is searched.
    async fn find_listed(
        &self,
        products: &[&Product],
    ) -> Result<std::collections::HashMap<domain::Id, String>, MarketError> {
        let mut listing = self.listing.lock().await;
        if listing.skus.is_none() {
            let count = match listing.count {
                Some(count) => count,
                None => {
                    let counted: Count = self
                        .call(
                            Operation::Read,
                            self.request(Method::GET, "/products/count.json"),
                        )
                        .await?;
                    listing.count = Some(counted.count);
                    counted.count
                }
            };
            let pages = count.div_ceil(PAGE);
            if pages <= products.len() as u64 {
                listing.skus = Some(self.list_all(pages).await?);
            }
        }
        if let Some(skus) = &listing.skus {
            return Ok(listed::in_listing(skus, products));
        }
        drop(listing);
        listed::one_by_one(products, |sku| {
            Box::pin(async move { Ok(self.find_by_sku(&sku).await?.map(|r| r.id.to_string())) })
        })
        .await
    }

    /// Takes over what the store already has of this product after a create of unknown outcome.
    async fn reconcile(
        &self,
        _: Action,
        p: &Product,
        info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError> {
        let found = match info.product_id.clone() {
            Some(id) => {
                let read = self
                    .call::<ProductEnvelope>(
                        Operation::Read,
                        self.request(Method::GET, &format!("/products/{id}.json")),
                    )
                    .await;
                match read {
                    Ok(envelope) => Some(envelope.product),
                    Err(e) if is_not_found(&e) => {
                        *info = MarketplaceInfo::default();
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.find_by_sku(&p.sku).await?,
        };
        if let Some(remote) = found {
            info.product_id = Some(remote.id.to_string());
            for v in remote.variants {
                if let Some(sku) = v.sku.filter(|s| p.variants.iter().any(|pv| &pv.sku == s)) {
                    info.set_variant_id(&sku, v.id.to_string());
                }
            }
            for img in remote.images {
                if let Some(url) = img.url.filter(|u| info.image_id(u).is_none()) {
                    info.image_ids.push((url, img.id.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Finishing deletes the product on Jumpseller, so a finished product is expected absent.
    async fn drift(
        &self,
        p: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        let Some(id) = info.product_id.clone() else {
            if status == ProductStatus::Finished {
                return Ok(Vec::new());
            }
            let found = self.find_by_sku(&p.sku).await?;
            return Ok(drift::absent(None, found.map(|r| r.id.to_string())));
        };
        let read = self
            .call::<ProductEnvelope>(
                Operation::Read,
                self.request(Method::GET, &format!("/products/{id}.json")),
            )
            .await;
        match read {
            Ok(envelope) => {
                let mut found = drift::compare(
                    &Self::expected(p, &offer, status),
                    &Self::shown(&envelope.product),
                );
                found.extend(self.copies(p, info).await?);
                Ok(found)
            }
            Err(e) if is_not_found(&e) => {
                let found = self.find_by_sku(&p.sku).await?;
                Ok(drift::absent(Some(&id), found.map(|r| r.id.to_string())))
            }
            Err(e) => Err(e),
        }
    }

    async fn apply(&self, call: PhaseCall<'_>) -> Result<(), MarketError> {
        let PhaseCall {
            action,
            phase,
            product,
            offer,
            prices_only,
            info,
            checkpoint,
        } = call;
        let sale = Sale::of(offer, prices_only, info);
        match (action, phase) {
            (Action::Publish | Action::Republish, Phase::ProductData) => {
                self.upsert_product(product, &sale, info, checkpoint).await
            }
            (Action::Publish | Action::Republish, Phase::Variants) => {
                self.upsert_variants(product, &sale, info, checkpoint).await
            }
            (Action::Publish | Action::Republish, Phase::Images) => {
                self.add_images(product, info, checkpoint).await
            }
            (Action::Publish | Action::Republish, Phase::Processing) => {
                self.upsert_product(product, &sale, info, checkpoint)
                    .await?;
                self.upsert_variants(product, &sale, info, checkpoint)
                    .await?;
                self.add_images(product, info, checkpoint).await
            }
            (Action::Pause, _) => self.pause(product, &sale, info, checkpoint).await,
            (Action::Finish | Action::Delete, _) => self.delete(info, checkpoint).await,
            (Action::Drift | Action::Reconcile, _) => Err(READS_ONLY.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;
    use std::time::Duration;

    #[test]
    fn a_ban_holds_the_connection_until_its_reset_and_the_remaining_counts_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            "Jumpseller-PerMinuteRateLimit-Remaining",
            "12".parse().unwrap(),
        );
        h.insert(
            "Jumpseller-PerSecondRateLimit-Remaining",
            "0".parse().unwrap(),
        );
        h.insert(
            "Jumpseller-PerMinuteRateLimit-Limit",
            "800".parse().unwrap(),
        );
        let quota = hold_of(&h, b"");
        let w = |limit, remaining| Some(crate::http::Window { limit, remaining });
        assert_eq!(
            (quota.hold, quota.second, quota.minute),
            (None, w(None, 0), w(Some(800), 12)),
            "a spent window is the limiter's to wait for, not a pause"
        );
        let reset = (chrono::Utc::now() + chrono::Duration::seconds(90))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        h.insert("Jumpseller-BannedByRateLimit-Reset", reset.parse().unwrap());
        let hold = hold_of(&h, b"").hold.unwrap();
        assert!(
            hold > Duration::from_secs(85) && hold <= Duration::from_secs(90),
            "{hold:?}"
        );
    }
}
