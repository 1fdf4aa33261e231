//! Request bodies and their validation. Each body is parsed with unknown fields refused, then
//! turned into domain values here, at the edge, with messages that name the offending field.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::error::ApiError;
use crate::domain::{Credentials, Id, Image, RateLimit, System, Variant};

/// Most products one upsert request may carry.
pub const MAX_PRODUCTS_PER_REQUEST: usize = 5000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    pub system: String,
    pub name: String,
    pub base_url: String,
    pub credentials: BTreeMap<String, String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    pub per_second: u32,
    pub per_minute: u32,
}

/// A connection's checked fields.
pub struct ValidConnection {
    pub system: System,
    pub name: String,
    pub base_url: String,
    pub credentials: Credentials,
    pub rate_limit: RateLimit,
    pub max_in_flight: Option<u32>,
    pub settings: BTreeMap<String, String>,
}

fn required(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    Ok(v.to_string())
}

fn credential(map: &BTreeMap<String, String>, key: &str) -> Result<String, ApiError> {
    match map.get(key) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ApiError::invalid(format!("credentials.{key} is required"))),
    }
}

fn only_keys(map: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(format!(
            "credentials.{k} is not used by this marketplace (expected {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

impl ConnectionInput {
    pub fn validate(self) -> Result<ValidConnection, ApiError> {
        let system = System::parse(&self.system).ok_or_else(|| {
            ApiError::invalid(format!(
                "system must be one of jumpseller, mercadolibre, shopify, woocommerce (got {:?})",
                self.system
            ))
        })?;
        let name = required("name", &self.name)?;
        let url = reqwest::Url::parse(self.base_url.trim())
            .map_err(|e| ApiError::invalid(format!("base_url is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ApiError::invalid("base_url must be an http or https URL"));
        }
        let credentials = match system {
            System::Jumpseller => {
                only_keys(&self.credentials, &["login", "authtoken"])?;
                Credentials::Jumpseller {
                    login: credential(&self.credentials, "login")?,
                    authtoken: credential(&self.credentials, "authtoken")?,
                }
            }
            System::Woocommerce => {
                only_keys(&self.credentials, &["consumer_key", "consumer_secret"])?;
                let key = credential(&self.credentials, "consumer_key")?;
                let secret = credential(&self.credentials, "consumer_secret")?;
                if !key.starts_with("ck_") || !secret.starts_with("cs_") {
                    return Err(ApiError::invalid(
                        "WooCommerce keys start with ck_ (consumer_key) and cs_ (consumer_secret)",
                    ));
                }
                Credentials::Woocommerce {
                    consumer_key: key,
                    consumer_secret: secret,
                }
            }
            System::Mercadolibre => {
                let keys = [
                    "client_id",
                    "client_secret",
                    "access_token",
                    "refresh_token",
                ];
                only_keys(&self.credentials, &keys)?;
                Credentials::Mercadolibre {
                    client_id: credential(&self.credentials, "client_id")?,
                    client_secret: credential(&self.credentials, "client_secret")?,
                    access_token: credential(&self.credentials, "access_token")?,
                    refresh_token: credential(&self.credentials, "refresh_token")?,
                }
            }
            System::Shopify => {
                only_keys(&self.credentials, &["access_token"])?;
                Credentials::Shopify {
                    access_token: credential(&self.credentials, "access_token")?,
                }
            }
        };
        let rate_limit = match self.rate_limit {
            None => system.default_rate_limit(),
            Some(r) if r.per_second == 0 || r.per_minute == 0 => {
                return Err(ApiError::invalid(
                    "rate_limit.per_second and rate_limit.per_minute must be at least 1",
                ))
            }
            Some(r) => RateLimit {
                per_second: r.per_second,
                per_minute: r.per_minute,
            },
        };
        let settings = settings(system, self.settings)?;
        if self.max_in_flight == Some(0) || self.max_in_flight.is_some_and(|n| n > 256) {
            return Err(ApiError::invalid("max_in_flight must be between 1 and 256"));
        }
        Ok(ValidConnection {
            system,
            name,
            base_url: url.as_str().trim_end_matches('/').to_string(),
            credentials,
            rate_limit,
            max_in_flight: self.max_in_flight,
            settings,
        })
    }
}

fn setting_error(system: System, message: String) -> ApiError {
    ApiError::new(
        warp::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_settings",
        format!("{} connection: {message}", system.as_str()),
    )
}

/// Checks a connection's marketplace-specific settings and fills in their defaults.
fn settings(
    system: System,
    mut given: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    use crate::marketplaces::{mercadolibre, shopify, woocommerce};
    let allowed: &[&str] = match system {
        System::Jumpseller => &[],
        System::Mercadolibre => mercadolibre::SETTINGS,
        System::Shopify => &["api_version"],
        System::Woocommerce => &["batch_size"],
    };
    let bad = |m: String| Err(setting_error(system, m));
    for (key, value) in &given {
        if key != "request_gap_ms" && !allowed.contains(&key.as_str()) {
            let expected = if allowed.is_empty() {
                "only request_gap_ms".to_string()
            } else {
                format!("request_gap_ms, {}", allowed.join(", "))
            };
            return bad(format!(
                "settings.{key} is not a setting of {} connections (they take {expected})",
                system.as_str()
            ));
        }
        if value.trim() != value || value.is_empty() {
            return bad(format!(
                "settings.{key} must not be empty or padded with spaces"
            ));
        }
    }
    if let Some(gap) = given.get("request_gap_ms") {
        if !gap.parse::<u64>().is_ok_and(|ms| ms <= 60_000) {
            return bad(
                "settings.request_gap_ms must be a whole number of milliseconds up to 60000"
                    .to_string(),
            );
        }
    }
    match system {
        System::Jumpseller => {}
        System::Mercadolibre => {
            let Some(site) = given.get("site_id").cloned() else {
                return bad(
                    "settings.site_id is required (the MercadoLibre site, such as MLC for Chile)"
                        .to_string(),
                );
            };
            let Some((_, currency)) = mercadolibre::SITES.iter().find(|(s, _)| *s == site) else {
                let sites: Vec<&str> = mercadolibre::SITES.iter().map(|(s, _)| *s).collect();
                return bad(format!(
                    "settings.site_id {site:?} is not a MercadoLibre site ({})",
                    sites.join(", ")
                ));
            };
            match given.get("currency_id") {
                Some(c) if c != currency => {
                    return bad(format!("settings.currency_id {c:?} is not the currency of site {site} (it lists in {currency})"));
                }
                Some(_) => {}
                None => {
                    given.insert("currency_id".to_string(), currency.to_string());
                }
            }
            if given
                .get("user_id")
                .is_none_or(|u| u.parse::<u64>().is_err())
            {
                return bad(
                    "settings.user_id is required: the seller's numeric MercadoLibre user id"
                        .to_string(),
                );
            }
            let category_ok = given.get("category_id").is_some_and(|c| {
                c.strip_prefix(site.as_str())
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
            if !category_ok {
                return bad(format!("settings.category_id is required: a category of site {site}, such as {site}1234"));
            }
            let listing = given
                .entry("listing_type_id".to_string())
                .or_insert_with(|| "gold_special".to_string());
            if !mercadolibre::LISTING_TYPES.contains(&listing.as_str()) {
                return bad(format!(
                    "settings.listing_type_id must be one of {}",
                    mercadolibre::LISTING_TYPES.join(", ")
                ));
            }
            let condition = given
                .entry("condition".to_string())
                .or_insert_with(|| "new".to_string());
            if !matches!(condition.as_str(), "new" | "used" | "not_specified") {
                return bad("settings.condition must be new, used or not_specified".to_string());
            }
        }
        System::Shopify => {
            let version = given
                .entry("api_version".to_string())
                .or_insert_with(|| shopify::DEFAULT_API_VERSION.to_string());
            if !shopify::is_api_version(version) {
                return bad(format!("settings.api_version {version:?} is not a Shopify API version (YYYY-MM with MM 01, 04, 07 or 10, such as {})", shopify::DEFAULT_API_VERSION));
            }
        }
        System::Woocommerce => {
            if let Some(size) = given.get("batch_size") {
                if !size
                    .parse::<usize>()
                    .is_ok_and(|n| (1..=woocommerce::MAX_BATCH).contains(&n))
                {
                    return bad(format!("settings.batch_size must be a whole number from 1 to {} (WooCommerce's limit per batch)", woocommerce::MAX_BATCH));
                }
            }
        }
    }
    Ok(given)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: f64,
    #[serde(default)]
    pub stock: i64,
    #[serde(default)]
    pub variants: Vec<VariantInput>,
    #[serde(default)]
    pub images: Vec<ImageInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    pub sku: String,
    pub price: f64,
    #[serde(default)]
    pub stock: i64,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    pub url: String,
    #[serde(default)]
    pub position: Option<u32>,
}

/// A product's checked fields, before it has an id.
pub struct ValidProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub stock: i64,
    pub variants: Vec<Variant>,
    pub images: Vec<Image>,
}

fn price(field: &str, p: f64) -> Result<f64, ApiError> {
    if !p.is_finite() || p < 0.0 {
        return Err(ApiError::invalid(format!("{field} must be a number ≥ 0")));
    }
    Ok(p)
}

fn stock(field: &str, s: i64) -> Result<i64, ApiError> {
    if s < 0 {
        return Err(ApiError::invalid(format!("{field} must be ≥ 0")));
    }
    Ok(s)
}

fn check_sku(field: &str, s: &str) -> Result<String, ApiError> {
    let s = required(field, s)?;
    if s.len() > 100 {
        return Err(ApiError::invalid(format!(
            "{field} is longer than 100 characters"
        )));
    }
    Ok(s)
}

impl ProductInput {
    fn validate(self, at: &str) -> Result<ValidProduct, ApiError> {
        let sku = check_sku(&format!("{at}.sku"), &self.sku)?;
        let name = required(&format!("{at}.name"), &self.name)?;
        if name.chars().count() > 255 {
            return Err(ApiError::invalid(format!(
                "{at}.name is longer than 255 characters"
            )));
        }
        let mut seen = HashSet::new();
        let mut variants = Vec::with_capacity(self.variants.len());
        for (i, v) in self.variants.into_iter().enumerate() {
            let vat = format!("{at}.variants[{i}]");
            let vsku = check_sku(&format!("{vat}.sku"), &v.sku)?;
            if !seen.insert(vsku.clone()) {
                return Err(ApiError::invalid(format!(
                    "{vat}.sku {vsku:?} appears twice"
                )));
            }
            if v.options.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{vat}.options must name at least one option, such as {{\"Color\": \"Red\"}}"
                )));
            }
            variants.push(Variant {
                sku: vsku,
                price: price(&format!("{vat}.price"), v.price)?,
                stock: stock(&format!("{vat}.stock"), v.stock)?,
                options: v.options,
            });
        }
        let mut urls = HashSet::new();
        let mut images = Vec::with_capacity(self.images.len());
        for (i, img) in self.images.into_iter().enumerate() {
            let field = format!("{at}.images[{i}].url");
            let url = reqwest::Url::parse(img.url.trim())
                .map_err(|e| ApiError::invalid(format!("{field} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ApiError::invalid(format!(
                    "{field} must be an http or https URL"
                )));
            }
            if !urls.insert(url.to_string()) {
                return Err(ApiError::invalid(format!("{field} appears twice")));
            }
            images.push(Image {
                url: url.to_string(),
                position: img.position.unwrap_or(i as u32 + 1),
            });
        }
        Ok(ValidProduct {
            sku,
            name,
            description: self.description,
            price: price(&format!("{at}.price"), self.price)?,
            stock: stock(&format!("{at}.stock"), self.stock)?,
            variants,
            images,
        })
    }
}

/// Checks a bulk upsert: each product, and that no SKU appears twice.
pub fn validate_products(inputs: Vec<ProductInput>) -> Result<Vec<ValidProduct>, ApiError> {
    if inputs.is_empty() {
        return Err(ApiError::invalid("the list of products is empty"));
    }
    if inputs.len() > MAX_PRODUCTS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "at most {MAX_PRODUCTS_PER_REQUEST} products per request"
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(inputs.len());
    for (i, p) in inputs.into_iter().enumerate() {
        let v = p.validate(&format!("[{i}]"))?;
        if !seen.insert(v.sku.clone()) {
            return Err(ApiError::invalid(format!(
                "[{i}].sku {:?} appears twice",
                v.sku
            )));
        }
        out.push(v);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    pub name: String,
    pub marketplace_ids: Vec<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProductsInput {
    #[serde(default)]
    pub product_ids: Option<Vec<Id>>,
    #[serde(default)]
    pub skus: Option<Vec<String>>,
    #[serde(default)]
    pub marketplace_ids: Option<Vec<Id>>,
}

/// Options of an action on a whole campaign (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    #[serde(default)]
    pub product_ids: Option<Vec<Id>>,
    #[serde(default)]
    pub marketplace_ids: Option<Vec<Id>>,
    #[serde(default)]
    pub chunk_size: Option<u32>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub force: bool,
}

/// An action on chosen products: `product_ids` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductActionInput {
    pub product_ids: Vec<Id>,
    #[serde(default)]
    pub marketplace_ids: Option<Vec<Id>>,
    #[serde(default)]
    pub chunk_size: Option<u32>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub force: bool,
}

impl From<ProductActionInput> for ActionInput {
    fn from(p: ProductActionInput) -> Self {
        ActionInput {
            product_ids: Some(p.product_ids),
            marketplace_ids: p.marketplace_ids,
            chunk_size: p.chunk_size,
            fail_fast: p.fail_fast,
            force: p.force,
        }
    }
}

/// `?page=&per_page=` with the defaults and bounds every listing uses.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default = "first_page")]
    pub page: u64,
    #[serde(default = "default_per_page")]
    pub per_page: u64,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub marketplace_id: Option<Id>,
    #[serde(default)]
    pub action: Option<String>,
}

fn first_page() -> u64 {
    1
}

fn default_per_page() -> u64 {
    50
}

impl PageQuery {
    pub fn parse(raw: &str) -> Result<PageQuery, ApiError> {
        let q: PageQuery = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
        if q.page == 0 || q.per_page == 0 || q.per_page > 500 {
            return Err(ApiError::invalid(
                "page starts at 1 and per_page is between 1 and 500",
            ));
        }
        Ok(q)
    }

    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}
