//! The Shopify adapter: the Admin REST API under `/admin/api/{version}` with
//! `X-Shopify-Access-Token`. A product travels with its options, variants and images in one
//! body, so every action is one phase. Publish is status active, pause is draft, finish is
//! archived, delete removes the product. The leaky bucket is read from
//! `X-Shopify-Shop-Api-Call-Limit`: a nearly full bucket holds the connection, and a 429's
//! `Retry-After` pauses it. Remote ids are kept on every answer; since REST cannot search by
//! SKU, a create of unknown outcome is reconciled with the GraphQL query
//! `productVariants(query: "sku:...")`. A drift check reads its products a hundred at a time
//! (`GET /products.json?ids=`).

pub mod graphql;
pub mod sim;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use super::gather::{Fetch, Gatherer};
use super::http::{Auth, Endpoint, Gate, HoldFn};
use super::plan::{Operation, RemoteId, Request};
use super::{create_once, Checkpoint, MarketError, Marketplace, PhaseCall, Sale, READS_ONLY};
use domain::drift::{self, Difference, Shown, ShownVariant};
use domain::{
    Action, Connection, Credentials, MarketplaceInfo, Offer, Product, ProductStatus, Variant,
};

/// How long Shopify supports a stable API version after its release, in months (shopify.dev,
/// "API versioning": "Each stable version is supported for a minimum of 12 months").
const SUPPORTED_MONTHS: i32 = 12;

/// The newest stable API version released by `today`: Shopify releases one every quarter, on
/// the first day of January, April, July and October (2026-10 on 2026-12-07). A connection
/// that names none gets it, so it is supported for a year at least.
pub fn current_api_version(today: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    let month = (today.month0() / 3) * 3 + 1;
    format!("{:04}-{month:02}", today.year())
}

/// Why `version` cannot be spoken on `today`, if it cannot: not released yet, or out of
/// support (Shopify would answer as its oldest supported version, whose behaviour campaignd
/// was not written for).
pub fn unsupported(version: &str, today: chrono::NaiveDate) -> Option<String> {
    use chrono::Datelike;
    let (year, month) = version.split_once('-')?;
    let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
    let months = |y: i32, m: i32| y * 12 + m - 1;
    let asked = months(year, month);
    let now = months(today.year(), today.month() as i32);
    let current = current_api_version(today);
    if asked > now {
        Some(format!(
            "Shopify's API version {version} is not released yet (the newest is {current})"
        ))
    } else if now - asked >= SUPPORTED_MONTHS {
        Some(format!(
            "Shopify's API version {version} is out of support (a version is supported for {SUPPORTED_MONTHS} months; the newest is {current})"
        ))
    } else {
        None
    }
}

/// Today, as the connection's version is checked against Shopify's calendar.
fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

pub struct Shopify {
    api: Arc<Endpoint>,
    /// A drift check's reads, gathered into product lists by id.
    reads: Gatherer,
    /// The shop's product count, asked once a run before its first look-up.
    count: tokio::sync::Mutex<Option<u64>>,
}

#[derive(Deserialize, Default)]
struct ProductCount {
    count: u64,
}

/// The most products a drift check reads in one list (the API's `limit` goes to 250; a
/// hundred products of a hundred variants each is already a large answer).
const READ_AT_ONCE: usize = 100;

/// A list of products by id (`ids=`, any status): those the shop has, by id.
fn listed(api: Arc<Endpoint>) -> Fetch {
    Arc::new(move |ids: Vec<String>| {
        let api = Arc::clone(&api);
        Box::pin(async move {
            let request = api
                .request(Method::GET, "/products.json")
                .query(&[("ids", ids.join(",")), ("limit", ids.len().to_string())]);
            let list: ProductList = api.call_costing(request, 1.0).await?;
            Ok(list
                .products
                .into_iter()
                .filter_map(|p| Some((p.get("id")?.as_u64()?.to_string(), p)))
                .collect::<HashMap<_, _>>())
        })
    })
}

#[derive(Deserialize)]
struct ProductList {
    products: Vec<serde_json::Value>,
}

/// Shopify connections: an Admin API access token, and the API version requests go under.
pub struct Kind;

pub static KIND: Kind = Kind;

/// Shopify's most option names on a product.
pub const MAX_OPTIONS: usize = 3;
/// The most variants a Shopify product is read back with (`variants(first: 100)`).
pub const MAX_VARIANTS: usize = 100;

impl super::kind::ConnectionKind for Kind {
    /// More option names than Shopify takes, or more variants than campaignd reads back.
    fn plan_problems(
        &self,
        _action: domain::Action,
        sends_data: bool,
        product: &domain::Product,
        _info: &domain::MarketplaceInfo,
    ) -> Vec<super::plan::Problem> {
        use super::plan::Problem;
        let mut found = Vec::new();
        if !sends_data {
            return found;
        }
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in product.variants.iter().flat_map(|v| &v.options) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        if names.len() > MAX_OPTIONS {
            found.push(Problem::new(
                "too_many_options",
                format!(
                    "Shopify takes at most {MAX_OPTIONS} options on a product; this one has {} ({})",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        if product.variants.len() > MAX_VARIANTS {
            found.push(Problem::new(
                "too_many_variants",
                format!(
                    "campaignd sends at most {MAX_VARIANTS} variants of a Shopify product; this \
                     one has {}",
                    product.variants.len()
                ),
            ));
        }
        found
    }

    /// A shop's own `SHOP.myshopify.com`, one label before the domain.
    fn official_host(&self, url: &reqwest::Url) -> Result<(), &'static str> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let shop = host.strip_suffix(".myshopify.com");
        match url.scheme() == "https" && shop.is_some_and(|s| !s.is_empty() && !s.contains('.')) {
            true => Ok(()),
            false => Err("https://SHOP.myshopify.com"),
        }
    }

    fn credential_keys(&self) -> &'static [&'static str] {
        &["access_token"]
    }

    fn credentials(&self, values: Vec<String>) -> Result<Credentials, String> {
        let [access_token] =
            <[String; 1]>::try_from(values).map_err(|_| "the access_token".to_string())?;
        Ok(Credentials::Shopify { access_token })
    }

    fn setting_keys(&self) -> &'static [&'static str] {
        &["api_version", "api", "publications", "location_id"]
    }

    fn settings(
        &self,
        given: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        let current = current_api_version(today());
        let version = given
            .entry("api_version".to_string())
            .or_insert_with(|| current.clone());
        if !is_api_version(version) {
            return Err(format!("settings.api_version {version:?} is not a Shopify API version (YYYY-MM with MM 01, 04, 07 or 10, such as {current})"));
        }
        if let Some(why) = unsupported(version, today()) {
            return Err(format!("settings.api_version: {why}"));
        }
        let api = given
            .entry("api".to_string())
            .or_insert_with(|| "graphql".to_string());
        if !matches!(api.as_str(), "graphql" | "rest") {
            return Err(format!(
                "settings.api {api:?} is not \"graphql\" (the default) or \"rest\""
            ));
        }
        if let Some(names) = given.get("publications") {
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            if names.len() > 10 || names.iter().any(|n| n.is_empty() || n.len() > 100) {
                return Err(
                    "settings.publications is a comma-separated list of 1 to 10 \
                            publication names (such as \"Online Store\")"
                        .to_string(),
                );
            }
        }
        if let Some(id) = given.get("location_id") {
            let number = id.strip_prefix("gid://shopify/Location/").unwrap_or(id);
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(
                    "settings.location_id is a Shopify location's id (a number, or \
                            gid://shopify/Location/N)"
                        .to_string(),
                );
            }
        }
        Ok(())
    }

    /// On GraphQL the cost bucket is what binds (waited for point by point), so the windows
    /// only bound a burst; on REST the leaky bucket of 40 requests leaking 2 a second
    /// (`System::default_rate_limit`).
    fn default_rate_limit(
        &self,
        system: domain::System,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> domain::RateLimit {
        if settings.get("api").map(String::as_str) == Some("rest") {
            system.default_rate_limit()
        } else {
            domain::RateLimit {
                per_second: 50,
                per_minute: 3000,
            }
        }
    }
}

/// Whether a stored connection speaks the GraphQL Admin API (the default) rather than REST.
pub fn uses_graphql(connection: &Connection) -> bool {
    connection.settings.get("api").map(String::as_str) != Some("rest")
}

/// A stored connection's API version.
pub fn api_version(connection: &Connection) -> String {
    connection
        .settings
        .get("api_version")
        .cloned()
        .unwrap_or_else(|| current_api_version(today()))
}

/// Shopify's stable API versions are quarterly, `YYYY-01`, `-04`, `-07` and `-10`.
pub fn is_api_version(v: &str) -> bool {
    let Some((year, month)) = v.split_once('-') else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && matches!(month, "01" | "04" | "07" | "10")
}

#[derive(Serialize)]
struct ProductBody<'a> {
    product: ProductFields<'a>,
}

#[derive(Serialize)]
struct ProductFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    title: &'a str,
    body_html: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    options: Vec<OptionBody<'a>>,
    variants: Vec<VariantBody<'a>>,
    images: Vec<ImageBody<'a>>,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    product: StatusFields<'a>,
}

#[derive(Serialize)]
struct StatusFields<'a> {
    id: u64,
    status: &'a str,
}

#[derive(Serialize)]
struct OptionBody<'a> {
    name: &'a str,
    values: Vec<&'a str>,
}

/// A price change alone: each variant's price and compare-at price.
#[derive(Serialize)]
struct PricesBody {
    product: PricesFields,
}

#[derive(Serialize)]
struct PricesFields {
    id: u64,
    variants: Vec<VariantPrice>,
}

#[derive(Serialize)]
struct VariantPrice {
    id: u64,
    price: String,
    compare_at_price: Option<String>,
}

#[derive(Serialize)]
struct VariantBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    sku: &'a str,
    price: String,
    /// The regular price during a sale; `null` takes an ended sale away.
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at_price: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    option1: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    option2: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    option3: Option<&'a str>,
}

#[derive(Serialize)]
struct ImageBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<&'a str>,
    position: u32,
}

#[derive(Deserialize, Default)]
struct ProductEnvelope {
    product: RemoteProduct,
}

impl ProductEnvelope {
    /// What a plan takes an answer about product `id` for: the product, as campaignd left it.
    fn planned(id: &str) -> ProductEnvelope {
        ProductEnvelope {
            product: RemoteProduct {
                id: RemoteId(id.to_string()),
                ..RemoteProduct::default()
            },
        }
    }
}

#[derive(Deserialize, Default)]
struct RemoteProduct {
    id: RemoteId,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    variants: Vec<RemoteVariant>,
    #[serde(default)]
    images: Vec<RemoteImage>,
}

#[derive(Deserialize, Default)]
struct RemoteVariant {
    id: RemoteId,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price: Option<String>,
}

#[derive(Deserialize, Default)]
struct RemoteImage {
    id: RemoteId,
    #[serde(default)]
    position: Option<u32>,
}

#[derive(Serialize)]
struct GraphQl<'a> {
    query: &'a str,
    variables: BTreeMap<&'a str, String>,
}

pub(super) const VARIANT_BY_SKU: &str = "query($query: String!) { productVariants(first: 5, query: $query) { edges { node { id sku product { id } } } } }";

/// Shopify's errors: `{"errors": "Not Found"}` or `{"errors": {"field": ["message", ...]}}`.
pub fn message_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.get("errors")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(fields) => Some(
            fields
                .iter()
                .map(|(field, messages)| {
                    let list: Vec<String> = match messages {
                        serde_json::Value::Array(a) => a
                            .iter()
                            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                            .collect(),
                        serde_json::Value::String(s) => vec![s.clone()],
                        other => vec![other.to_string()],
                    };
                    format!("{field} {}", list.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => Some(other.to_string()),
    }
}

/// REST's leaky bucket as Shopify reports it, `X-Shopify-Shop-Api-Call-Limit: 32/40`: a
/// bucket of points at one a request, leaking a twentieth of its size a second (40 and 2 on
/// the standard plans, 400 and 20 on Plus), which the limiter waits on request by request.
pub fn hold_of(headers: &HeaderMap, _: &[u8]) -> crate::http::Quota {
    let bucket = || {
        let value = headers
            .get("X-Shopify-Shop-Api-Call-Limit")?
            .to_str()
            .ok()?;
        let (used, size) = value.trim().split_once('/')?;
        let (used, size): (f64, f64) = (used.trim().parse().ok()?, size.trim().parse().ok()?);
        (size >= 1.0).then(|| crate::limiter::Points {
            max: size,
            available: (size - used).max(0.0),
            rate: size / 20.0,
        })
    };
    crate::http::Quota {
        points: bucket(),
        ..crate::http::Quota::default()
    }
}

/// GraphQL's cost bucket, from the answer's body (`extensions.cost.throttleStatus`).
pub fn hold_of_graphql(_: &HeaderMap, body: &[u8]) -> crate::http::Quota {
    crate::http::Quota {
        points: points_of(body),
        ..crate::http::Quota::default()
    }
}

/// GraphQL's `extensions.cost.throttleStatus`: the app's cost bucket on the shop.
fn points_of(body: &[u8]) -> Option<crate::limiter::Points> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Throttle {
        maximum_available: f64,
        currently_available: f64,
        restore_rate: f64,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Cost {
        throttle_status: Throttle,
    }
    #[derive(Deserialize)]
    struct Extensions {
        cost: Cost,
    }
    #[derive(Deserialize)]
    struct Answer {
        extensions: Extensions,
    }
    // REST answers never carry it: no need to read them twice.
    if !body.windows(14).any(|w| w == b"throttleStatus") {
        return None;
    }
    let t = serde_json::from_slice::<Answer>(body)
        .ok()?
        .extensions
        .cost
        .throttle_status;
    Some(crate::limiter::Points {
        max: t.maximum_available,
        available: t.currently_available,
        rate: t.restore_rate,
    })
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

/// The number at the end of a GraphQL global id (`gid://shopify/Product/123`).
pub(super) fn gid_number(gid: &str) -> Option<u64> {
    gid.rsplit('/').next()?.parse().ok()
}

fn price(p: f64) -> String {
    format!("{p:.2}")
}

/// A variant's price and compare-at price as Shopify takes them, strings (the product's own
/// for a product without variants).
pub(super) fn shown(sale: &Sale, v: Option<&Variant>) -> (String, Option<Option<String>>) {
    let (amount, compare) = sale.shown(v);
    (price(amount), compare.map(|c| c.map(price)))
}

/// The connection's Admin API under `/admin/api/{version}`, with its access token; `hold_of`
/// reads the bucket the API reports (REST's call limit, GraphQL's points).
pub(super) fn endpoint(connection: &Connection, gate: Gate, hold_of: HoldFn) -> Endpoint {
    let token = match &connection.credentials {
        Credentials::Shopify { access_token } => access_token.clone(),
        // The API only stores a Shopify token on Shopify connections.
        _ => String::new(),
    };
    let base = format!(
        "{}/admin/api/{}",
        connection.base_url.trim_end_matches('/'),
        api_version(connection)
    );
    Endpoint::new(
        &base,
        Auth::Header {
            name: "X-Shopify-Access-Token",
            value: token,
        },
        gate,
        message_of,
        hold_of,
    )
}

impl Shopify {
    pub fn new(connection: &Connection, gate: Gate) -> Shopify {
        let api = Arc::new(endpoint(connection, gate, hold_of));
        Shopify {
            reads: Gatherer::new(READ_AT_ONCE, listed(Arc::clone(&api))).planned(
                api.gate(),
                |_| Request::new("GET", "/products.json").batched("ids"),
                |id| serde_json::json!({ "id": id }),
            ),
            api,
            count: tokio::sync::Mutex::default(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    /// Every variant's new prices, for a republish where only they changed.
    fn prices_body(id: u64, p: &Product, pricing: &Sale, info: &MarketplaceInfo) -> PricesBody {
        let variants = if p.variants.is_empty() {
            vec![(p.sku.as_str(), shown(pricing, None))]
        } else {
            p.variants
                .iter()
                .map(|v| (v.sku.as_str(), shown(pricing, Some(v))))
                .collect()
        };
        PricesBody {
            product: PricesFields {
                id,
                variants: variants
                    .into_iter()
                    .filter_map(|(sku, (price, compare))| {
                        Some(VariantPrice {
                            id: info.variant_id(sku)?.parse().ok()?,
                            price,
                            compare_at_price: compare.flatten(),
                        })
                    })
                    .collect(),
            },
        }
    }

    fn body<'a>(
        p: &'a Product,
        pricing: &Sale,
        info: &MarketplaceInfo,
        status: &'a str,
    ) -> ProductBody<'a> {
        let mut names: Vec<&str> = Vec::new();
        let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for v in &p.variants {
            for (name, value) in &v.options {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
                let list = values.entry(name).or_default();
                if !list.contains(&value.as_str()) {
                    list.push(value);
                }
            }
        }
        names.truncate(3);
        let variants = if p.variants.is_empty() {
            let (price, compare_at_price) = shown(pricing, None);
            vec![VariantBody {
                id: info.variant_id(&p.sku).and_then(|id| id.parse().ok()),
                sku: &p.sku,
                price,
                compare_at_price,
                option1: None,
                option2: None,
                option3: None,
            }]
        } else {
            p.variants
                .iter()
                .map(|v| {
                    let option = |n: usize| {
                        names
                            .get(n)
                            .and_then(|name| v.options.get(*name))
                            .map(String::as_str)
                    };
                    let (price, compare_at_price) = shown(pricing, Some(v));
                    VariantBody {
                        id: info.variant_id(&v.sku).and_then(|id| id.parse().ok()),
                        sku: &v.sku,
                        price,
                        compare_at_price,
                        option1: option(0),
                        option2: option(1),
                        option3: option(2),
                    }
                })
                .collect()
        };
        let mut images: Vec<_> = p.images.iter().collect();
        images.sort_by_key(|i| i.position);
        ProductBody {
            product: ProductFields {
                id: info.remote_number(),
                title: &p.name,
                body_html: &p.description,
                status,
                options: names
                    .iter()
                    .map(|name| OptionBody {
                        name,
                        values: values.remove(name).unwrap_or_default(),
                    })
                    .collect(),
                variants,
                images: images
                    .into_iter()
                    .map(
                        |i| match info.image_id(&i.url).and_then(|id| id.parse().ok()) {
                            Some(id) => ImageBody {
                                id: Some(id),
                                src: None,
                                position: i.position,
                            },
                            None => ImageBody {
                                id: None,
                                src: Some(&i.url),
                                position: i.position,
                            },
                        },
                    )
                    .collect(),
            },
        }
    }

    /// Takes the remote ids: variants by SKU, images by position.
    fn adopt(p: &Product, info: &mut MarketplaceInfo, remote: &RemoteProduct) {
        info.product_id = Some(remote.id.to_string());
        if let Some(status) = &remote.status {
            info.remote_status = Some(status.clone());
        }
        for v in &remote.variants {
            let Some(sku) = v.sku.as_deref() else {
                continue;
            };
            let ours = sku == p.sku || p.variants.iter().any(|pv| pv.sku == sku);
            if ours {
                info.set_variant_id(sku, v.id.to_string());
            }
        }
        let mut theirs: Vec<_> = remote.images.iter().collect();
        theirs.sort_by_key(|i| i.position.unwrap_or(u32::MAX));
        info.images_by_position(p, theirs.into_iter().map(|i| Some(i.id.to_string())));
    }

    async fn create(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let request = self
            .request(Method::POST, "/products.json")
            .json(&Self::body(p, pricing, info, "active"));
        create_once(
            info,
            checkpoint,
            self.api
                .exchange_costing::<ProductEnvelope>(Operation::Create, request, 1.0),
            |info, remote| Self::adopt(p, info, &remote.product),
        )
        .await
    }

    /// PUTs `body` on the product (which does `operation` to it) and takes the ids of what
    /// the shop answers.
    async fn put<B: Serialize>(
        &self,
        operation: Operation,
        p: &Product,
        info: &mut MarketplaceInfo,
        body: &B,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(id) = info.product_id.clone() else {
            return Err(MarketError::Protocol(
                "the product has no Shopify id yet".to_string(),
            ));
        };
        let remote: ProductEnvelope = self
            .api
            .exchange_planned(
                operation,
                self.request(Method::PUT, &format!("/products/{id}.json"))
                    .json(body),
                1.0,
                ProductEnvelope::planned(&id),
            )
            .await?;
        Self::adopt(p, info, &remote.product);
        checkpoint(info).await
    }

    async fn publish(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        data: Data,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(id) = info.remote_number() else {
            return self.create(p, pricing, info, checkpoint).await;
        };
        let result = if data == Data::All {
            let body = Self::body(p, pricing, info, "active");
            self.put(Operation::Update, p, info, &body, checkpoint)
                .await
        } else if data == Data::Prices {
            let body = Self::prices_body(id, p, pricing, info);
            self.put(Operation::Update, p, info, &body, checkpoint)
                .await
        } else {
            let body = StatusBody {
                product: StatusFields {
                    id,
                    status: "active",
                },
            };
            self.put(Operation::Status, p, info, &body, checkpoint)
                .await
        };
        match result {
            Err(e) if is_gone(&e) => {
                // Deleted in the shop meanwhile: publishing means creating it again.
                *info = MarketplaceInfo::default();
                checkpoint(info).await?;
                self.create(p, pricing, info, checkpoint).await
            }
            other => other,
        }
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
                "the product has no Shopify id yet".to_string(),
            ));
        };
        let body = StatusBody {
            product: StatusFields { id, status },
        };
        self.put(Operation::Status, p, info, &body, checkpoint)
            .await
    }

    async fn delete(
        &self,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.product_id.clone() {
            let request = self.request(Method::DELETE, &format!("/products/{id}.json"));
            match self
                .api
                .exchange_costing::<serde_json::Value>(Operation::Delete, request, 1.0)
                .await
            {
                Ok(_) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        *info = MarketplaceInfo::default();
        info.remote_status = Some("deleted".to_string());
        checkpoint(info).await
    }

    /// Finds the product holding `sku` through GraphQL.
    async fn find_by_sku(&self, sku: &str) -> Result<Option<u64>, MarketError> {
        Ok(self.holders(sku).await?.into_iter().next())
    }

    /// Every product holding `sku`, found through GraphQL.
    async fn holders(&self, sku: &str) -> Result<Vec<u64>, MarketError> {
        let data = self
            .graphql(VARIANT_BY_SKU, format!("sku:\"{sku}\""))
            .await?;
        products_with_sku(&data, sku)
    }

    /// Runs a look-up through the GraphQL API (REST cannot search by SKU) and answers its data.
    async fn graphql(&self, query: &str, search: String) -> Result<serde_json::Value, MarketError> {
        let body = GraphQl {
            query,
            variables: BTreeMap::from([("query", search)]),
        };
        // A plan's look-up finds nothing.
        let nothing = serde_json::json!({"data": {"productVariants": {"edges": []}}});
        let answer: serde_json::Value = self
            .api
            .exchange_planned(
                Operation::Read,
                self.request(Method::POST, "/graphql.json").json(&body),
                0.0,
                nothing,
            )
            .await?;
        if let Some(errors) = answer.get("errors") {
            return Err(MarketError::Protocol(format!(
                "the SKU look-up failed: {errors}"
            )));
        }
        answer
            .get("data")
            .cloned()
            .ok_or_else(|| MarketError::Protocol("the SKU look-up answered no data".to_string()))
    }
}

/// How many products one batched look-up asks for: Shopify's search takes `OR`; the answer
/// lists a few more variants than SKUs asked (a SKU held twice shows twice), and an answer
/// that comes back full has its SKUs not found looked up one by one.
pub(super) const LISTED_AT_ONCE: usize = 25;

/// The variants a look-up of `n` SKUs asks for.
fn listed_first(n: usize) -> usize {
    (n + 5).clamp(1, 250)
}

/// The look-up of the products holding these SKUs (each product's by `naming_sku`): the
/// query, and its search string.
pub(super) fn listed_query(skus: &[&str]) -> (String, String) {
    let query = format!(
        "query listed($query: String!) {{ productVariants(first: {}, query: $query) {{ edges {{ \
         node {{ id sku product {{ id }} }} }} }} }}",
        listed_first(skus.len())
    );
    let search = skus
        .iter()
        .map(|sku| format!("sku:\"{sku}\""))
        .collect::<Vec<_>>()
        .join(" OR ");
    (query, search)
}

/// The SKUs that name `products` in a `listed_query`.
pub(super) fn naming_skus<'a>(products: &[&'a Product]) -> Vec<&'a str> {
    products.iter().map(|p| naming_sku(p)).collect()
}

/// The products a `listed_query` answer found, by product id, and those it cannot say of:
/// not found in an answer that came back full (more variants may hold the SKUs asked).
pub(super) fn listed_of<'a>(
    data: &serde_json::Value,
    products: &[&'a Product],
) -> Result<(HashMap<domain::Id, String>, Vec<&'a Product>), MarketError> {
    let answered = data
        .pointer("/productVariants/edges")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    let full = answered >= listed_first(products.len());
    let mut found = HashMap::new();
    let mut unsure = Vec::new();
    for p in products {
        match product_with_sku(data, naming_sku(p))? {
            Some(id) => {
                found.insert(p.id, id.to_string());
            }
            None if full => unsure.push(*p),
            None => {}
        }
    }
    Ok((found, unsure))
}

/// The product holding `sku` in the `data` of a `VARIANT_BY_SKU` answer.
pub(super) fn product_with_sku(
    data: &serde_json::Value,
    sku: &str,
) -> Result<Option<u64>, MarketError> {
    Ok(products_with_sku(data, sku)?.into_iter().next())
}

/// Every product holding `sku` in the `data` of a `VARIANT_BY_SKU` answer, once each.
pub(super) fn products_with_sku(
    data: &serde_json::Value,
    sku: &str,
) -> Result<Vec<u64>, MarketError> {
    let edges = data
        .pointer("/productVariants/edges")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| MarketError::Protocol("the SKU look-up answered no data".to_string()))?;
    let mut held: Vec<u64> = Vec::new();
    for id in edges.iter().filter_map(|e| {
        let node = e.get("node")?;
        (node.get("sku")?.as_str()? == sku)
            .then(|| gid_number(node.pointer("/product/id")?.as_str()?))
            .flatten()
    }) {
        if !held.contains(&id) {
            held.push(id);
        }
    }
    Ok(held)
}

/// A drift check's copies of the product (`drift::copies`) among `held`, the products
/// holding its naming SKU.
pub(super) fn copies_of(p: &Product, info: &MarketplaceInfo, held: Vec<u64>) -> Vec<Difference> {
    let ids = held.into_iter().map(|id| id.to_string()).collect();
    drift::copies(naming_sku(p), info.product_id.as_deref(), ids)
}

/// What a Shopify product should show, in `status`'s word (`active`, `draft`, `archived`; in
/// capitals on GraphQL): its variants' SKUs and prices (a product without variants is its one
/// default variant, with its own SKU) and its images. Stock is Shopify's inventory, which
/// campaignd does not set.
pub(super) fn expected(p: &Product, offer: &domain::Offer, status: &str) -> Shown {
    let variants = if p.variants.is_empty() {
        vec![ShownVariant {
            sku: p.sku.clone(),
            price: Some(offer.price),
            stock: None,
        }]
    } else {
        // Stock is Shopify's inventory, not sent.
        drift::sent_variants(p, offer)
            .into_iter()
            .map(|v| ShownVariant { stock: None, ..v })
            .collect()
    };
    Shown {
        status: Some(status.to_string()),
        price: None,
        stock: None,
        variants: Some(variants),
        images: Some(p.images.len() as u32),
    }
}

/// Shopify's word for the status campaignd leaves a product in.
pub(super) fn status_word(status: ProductStatus) -> &'static str {
    match status {
        ProductStatus::Paused => "draft",
        ProductStatus::Finished => "archived",
        _ => "active",
    }
}

/// The SKU a product is looked up by: its first variant's (a product's SKUs are on its
/// variants), else its own.
pub(super) fn naming_sku(p: &Product) -> &str {
    p.variants
        .first()
        .map_or(p.sku.as_str(), |v| v.sku.as_str())
}

#[async_trait]
impl Marketplace for Shopify {
    fn finds_listed(&self) -> bool {
        true
    }

    /// The shop's product count first, once a run (a REST call, which also tells the limiter
    /// the REST bucket before anything else goes): an empty shop lists nothing. Then the SKUs
    /// through GraphQL, 25 a search.
    async fn find_listed(
        &self,
        products: &[&Product],
    ) -> Result<HashMap<domain::Id, String>, MarketError> {
        let count = {
            let mut count = self.count.lock().await;
            match *count {
                Some(n) => n,
                None => {
                    let request = self.request(Method::GET, "/products/count.json");
                    let counted: ProductCount = self
                        .api
                        .exchange_costing(Operation::Read, request, 1.0)
                        .await?;
                    *count = Some(counted.count);
                    counted.count
                }
            }
        };
        let mut found = HashMap::new();
        if count == 0 {
            return Ok(found);
        }
        for some in products.chunks(LISTED_AT_ONCE) {
            let (query, search) = listed_query(&naming_skus(some));
            let (listed, unsure) = listed_of(&self.graphql(&query, search).await?, some)?;
            found.extend(listed);
            for p in unsure {
                if let Some(id) = self.find_by_sku(naming_sku(p)).await? {
                    found.insert(p.id, id.to_string());
                }
            }
        }
        Ok(found)
    }

    async fn reconcile(
        &self,
        _: Action,
        p: &Product,
        info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError> {
        let id = match info.remote_number() {
            Some(id) => Some(id),
            None => self.find_by_sku(naming_sku(p)).await?,
        };
        if let Some(id) = id {
            let request = self.request(Method::GET, &format!("/products/{id}.json"));
            let planned = ProductEnvelope::planned(&id.to_string());
            match self
                .api
                .exchange_planned(Operation::Read, request, 1.0, planned)
                .await
            {
                Ok(remote) => Self::adopt(p, info, &remote.product),
                Err(e) if is_gone(&e) => *info = MarketplaceInfo::default(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn drift(
        &self,
        p: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        let stored = info.product_id.clone();
        if let Some(id) = info.remote_number() {
            // Read in a list; one the list leaves out is not in the shop under its id.
            if let Some(r) = self
                .reads
                .get_as::<RemoteProduct>(id.to_string(), "a product")
                .await?
            {
                let shown = Shown {
                    status: r.status.clone(),
                    price: None,
                    stock: None,
                    variants: Some(
                        r.variants
                            .iter()
                            .map(|v| ShownVariant {
                                sku: v.sku.clone().unwrap_or_default(),
                                price: v.price.as_deref().and_then(|p| p.parse().ok()),
                                stock: None,
                            })
                            .collect(),
                    ),
                    images: Some(r.images.len() as u32),
                };
                let mut found = drift::compare(&expected(p, &offer, status_word(status)), &shown);
                // Products a create that went unanswered may have made beside this one.
                if info.unanswered_creates > 0 {
                    let held = self.holders(naming_sku(p)).await?;
                    found.extend(copies_of(p, info, held));
                }
                return Ok(found);
            }
        }
        let found = self.find_by_sku(naming_sku(p)).await?;
        Ok(drift::absent(
            stored.as_deref(),
            found.map(|id| id.to_string()),
        ))
    }

    fn read_batch_size(&self) -> usize {
        self.reads.size()
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
        let pricing = Sale::of(offer, prices_only, info);
        match action {
            Action::Publish => {
                self.publish(product, &pricing, info, Data::Status, checkpoint)
                    .await
            }
            Action::Republish => {
                let data = if prices_only { Data::Prices } else { Data::All };
                self.publish(product, &pricing, info, data, checkpoint)
                    .await
            }
            Action::Pause => self.set_status(product, info, "draft", checkpoint).await,
            Action::Finish => self.set_status(product, info, "archived", checkpoint).await,
            Action::Delete => self.delete(info, checkpoint).await,
            Action::Drift | Action::Reconcile => Err(READS_ONLY.clone()),
        }
    }
}

/// What a publish of a listed product sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    Status,
    Prices,
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_api_version_is_the_newest_released_and_a_year_old_one_is_refused() {
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(current_api_version(day(2026, 12, 7)), "2026-10");
        assert_eq!(current_api_version(day(2027, 1, 1)), "2027-01");
        assert_eq!(current_api_version(day(2026, 9, 30)), "2026-07");
        let today = day(2026, 12, 7);
        for fine in ["2026-01", "2026-04", "2026-07", "2026-10"] {
            assert_eq!(unsupported(fine, today), None, "{fine}");
        }
        let old = unsupported("2025-10", today).unwrap();
        assert!(
            old.contains("out of support") && old.contains("2026-10"),
            "{old}"
        );
        assert!(unsupported("2025-01", today).is_some());
        let early = unsupported("2027-01", today).unwrap();
        assert!(early.contains("not released yet"), "{early}");
    }

    #[test]
    fn errors_read_as_field_and_messages() {
        assert_eq!(
            message_of(
                br#"{"errors":{"title":["can't be blank"],"variants":["is invalid","too many"]}}"#
            )
            .as_deref(),
            Some("title can't be blank; variants is invalid, too many")
        );
        assert_eq!(
            message_of(br#"{"errors":"Not Found"}"#).as_deref(),
            Some("Not Found")
        );
    }

    #[test]
    fn the_call_limit_header_is_read_as_a_bucket_of_points() {
        use crate::limiter::Points;
        let mut h = HeaderMap::new();
        assert_eq!(hold_of(&h, b"{}").points, None);
        h.insert("X-Shopify-Shop-Api-Call-Limit", "32/40".parse().unwrap());
        assert_eq!(
            hold_of(&h, b"{}").points,
            Some(Points {
                max: 40.0,
                available: 8.0,
                rate: 2.0
            })
        );
        h.insert("X-Shopify-Shop-Api-Call-Limit", "390/400".parse().unwrap());
        assert_eq!(hold_of(&h, b"{}").points.map(|p| p.rate), Some(20.0));
        // GraphQL's bucket is in the body.
        let body = br#"{"data":{},"extensions":{"cost":{"requestedQueryCost":11,"actualQueryCost":11,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":1989,"restoreRate":100.0}}}}"#;
        assert_eq!(
            hold_of_graphql(&h, body).points,
            Some(Points {
                max: 2000.0,
                available: 1989.0,
                rate: 100.0
            })
        );
    }

    #[test]
    fn global_ids_end_in_the_rest_id() {
        assert_eq!(
            gid_number("gid://shopify/Product/632910392"),
            Some(632910392)
        );
        assert_eq!(gid_number("nonsense"), None);
    }
}
