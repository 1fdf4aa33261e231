//! The WooCommerce adapter (REST v3 under `/wp-json/wc/v3`, HTTP Basic with the `ck_`/`cs_` keys).
//! Every action is one phase. A product with variants is a `variable` product whose variations
//! live under `products/{id}/variations`. Prices travel as strings. A create of unknown outcome
//! is followed by a look-up by SKU (`products?sku=`), and a duplicate-SKU refusal
//! (`product_invalid_sku` with `data.resource_id`) adopts the existing product.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use super::http::{Endpoint, Gate};
use super::{Checkpoint, MarketError, Marketplace, PhaseCall};
use crate::domain::{Action, Connection, Credentials, MarketplaceInfo, Product};

pub struct WooCommerce {
    api: Endpoint,
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
struct StatusBody<'a> {
    status: &'a str,
}

#[derive(Serialize)]
struct VariationBody<'a> {
    sku: &'a str,
    regular_price: String,
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
}

#[derive(Deserialize)]
struct RemoteImage {
    id: u64,
}

#[derive(Deserialize)]
struct RemoteVariation {
    id: u64,
    #[serde(default)]
    sku: String,
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

/// The id of the product that already holds a SKU, from a `product_invalid_sku` refusal.
fn duplicate_sku_owner(body: &[u8]) -> Option<u64> {
    let e: WooError = serde_json::from_slice(body).ok()?;
    if e.code != "product_invalid_sku" {
        return None;
    }
    e.data?.get("resource_id")?.as_u64()
}

/// WooCommerce takes prices as decimal strings.
pub fn price_string(price: f64) -> String {
    let s = format!("{price:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
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
        WooCommerce {
            // WooCommerce has no quota headers of its own; a host's 429 still pauses the
            // connection through the gate.
            api: Endpoint::new(&connection.base_url, key, secret, gate, message_of, |_| {
                None
            }),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    async fn call_raw<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<Result<T, (MarketError, bytes::Bytes)>, MarketError> {
        self.api.call_raw(request).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, MarketError> {
        self.api.call(request).await
    }

    fn body<'a>(p: &'a Product, info: &MarketplaceInfo, status: &'a str) -> ProductBody<'a> {
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
        ProductBody {
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
        }
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

    async fn publish(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.product_id.clone() {
            let put = self
                .call::<RemoteProduct>(
                    self.request(Method::PUT, &format!("/products/{id}"))
                        .json(&Self::body(p, info, "publish")),
                )
                .await;
            match put {
                Ok(remote) => Self::adopt(p, info, &remote),
                Err(e) if is_gone(&e) => {
                    *info = MarketplaceInfo::default();
                    checkpoint(info)?;
                    self.create(p, info, checkpoint).await?;
                }
                Err(e) => return Err(e),
            }
        } else {
            self.create(p, info, checkpoint).await?;
        }
        info.remote_status = Some("publish".to_string());
        checkpoint(info)?;
        self.upsert_variations(p, info, checkpoint).await
    }

    async fn create(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        info.create_sent = true;
        checkpoint(info)?;
        let created = self
            .call_raw::<RemoteProduct>(
                self.request(Method::POST, "/products")
                    .json(&Self::body(p, info, "publish")),
            )
            .await?;
        match created {
            Ok(remote) => Self::adopt(p, info, &remote),
            Err((e, body)) => {
                let Some(existing) = duplicate_sku_owner(&body) else {
                    if !e.is_retriable() {
                        info.create_sent = false;
                        checkpoint(info)?;
                    }
                    return Err(e);
                };
                // The SKU is already there (our own earlier create): adopt it and update it.
                info.product_id = Some(existing.to_string());
                let remote: RemoteProduct = self
                    .call(
                        self.request(Method::PUT, &format!("/products/{existing}"))
                            .json(&Self::body(p, info, "publish")),
                    )
                    .await?;
                Self::adopt(p, info, &remote);
            }
        }
        info.create_sent = false;
        checkpoint(info)
    }

    async fn upsert_variations(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(pid) = info.product_id.clone() else {
            return Ok(());
        };
        for v in &p.variants {
            let body = VariationBody {
                sku: &v.sku,
                regular_price: price_string(v.price),
                manage_stock: true,
                stock_quantity: v.stock,
                attributes: v
                    .options
                    .iter()
                    .map(|(name, option)| VariationAttribute { name, option })
                    .collect(),
            };
            if let Some(vid) = info.variant_id(&v.sku) {
                let path = format!("/products/{pid}/variations/{vid}");
                self.call::<RemoteVariation>(self.request(Method::PUT, &path).json(&body))
                    .await?;
                continue;
            }
            info.create_sent = true;
            checkpoint(info)?;
            let path = format!("/products/{pid}/variations");
            let created: RemoteVariation = self
                .call(self.request(Method::POST, &path).json(&body))
                .await?;
            info.set_variant_id(&v.sku, created.id.to_string());
            info.create_sent = false;
            checkpoint(info)?;
        }
        Ok(())
    }

    async fn set_status(
        &self,
        info: &mut MarketplaceInfo,
        status: &str,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(id) = info.product_id.clone() else {
            return Err(MarketError::Protocol(
                "the product has no WooCommerce id yet".to_string(),
            ));
        };
        self.call::<RemoteProduct>(
            self.request(Method::PUT, &format!("/products/{id}"))
                .json(&StatusBody { status }),
        )
        .await?;
        info.remote_status = Some(status.to_string());
        checkpoint(info)
    }

    /// Finish moves the product to the trash; delete removes it for good (`force=true`).
    async fn remove(
        &self,
        info: &mut MarketplaceInfo,
        force: bool,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.product_id.clone() {
            let mut request = self.request(Method::DELETE, &format!("/products/{id}"));
            if force {
                request = request.query(&[("force", "true")]);
            }
            match self.call::<serde_json::Value>(request).await {
                Ok(_) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if force {
            *info = MarketplaceInfo::default();
            info.remote_status = Some("deleted".to_string());
        } else {
            info.remote_status = Some("trash".to_string());
        }
        checkpoint(info)
    }
}

#[async_trait]
impl Marketplace for WooCommerce {
    /// After a create of unknown outcome: find the product by SKU (or re-read it by id) and its
    /// variations, and take their ids.
    async fn reconcile(&self, p: &Product, info: &mut MarketplaceInfo) -> Result<(), MarketError> {
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
        if let Some(pid) = info.product_id.clone() {
            if !p.variants.is_empty() {
                let path = format!("/products/{pid}/variations");
                let variations: Vec<RemoteVariation> = self
                    .call(
                        self.request(Method::GET, &path)
                            .query(&[("per_page", "100")]),
                    )
                    .await?;
                for v in variations {
                    if p.variants.iter().any(|pv| pv.sku == v.sku) {
                        info.set_variant_id(&v.sku, v.id.to_string());
                    }
                }
            }
        }
        info.create_sent = false;
        Ok(())
    }

    async fn apply(&self, call: PhaseCall<'_>) -> Result<(), MarketError> {
        let PhaseCall {
            action,
            product,
            info,
            checkpoint,
            ..
        } = call;
        match action {
            Action::Publish | Action::Republish => self.publish(product, info, checkpoint).await,
            Action::Pause => self.set_status(info, "draft", checkpoint).await,
            Action::Finish => self.remove(info, false, checkpoint).await,
            Action::Delete => self.remove(info, true, checkpoint).await,
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
    fn a_duplicate_sku_refusal_names_the_existing_product() {
        let body = br#"{"code":"product_invalid_sku","message":"Invalid or duplicated SKU.","data":{"status":400,"resource_id":42}}"#;
        assert_eq!(duplicate_sku_owner(body), Some(42));
        assert_eq!(
            duplicate_sku_owner(br#"{"code":"other","message":"x"}"#),
            None
        );
        assert_eq!(
            message_of(body).as_deref(),
            Some("Invalid or duplicated SKU. (product_invalid_sku)")
        );
    }
}
