//! Request bodies and their validation. Each body is parsed with unknown fields refused, then
//! turned into domain values here, at the edge, with messages that name the offending field.

use crate::error::ErrorCode;
use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::error::ApiError;
use domain::{
    Attribute, Credentials, Details, Id, Image, MercadoLibreDetails, Millis, PriceChange,
    RateLimit, System, Variant,
};
use marketplaces::kind;

/// The longest name accepted (campaigns, connections, products, tokens).
pub const MAX_NAME: usize = 255;
/// The longest credential value, option name or option value accepted.
pub const MAX_VALUE: usize = 1024;
/// Most variants one product may have.
pub const MAX_VARIANTS: usize = 250;

/// A text field as given, trimmed: at most `max` characters and no control characters. The
/// document states it as the pattern `^[^\u0000-\u001F\u007F-\u009F]*$` (Unicode's Cc), with
/// one character that is not white space where the text may not be blank; the test
/// `the_document_states_what_text_accepts` keeps the attributes in step.
/// `text`'s rule as a pattern, for what the document builds itself (a query's text).
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(ApiError::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(v.to_string())
}

/// The longest URL accepted (webhooks, base URLs, images).
pub const MAX_URL: usize = 2048;

/// Most products one upsert request may carry.
pub const MAX_PRODUCTS_PER_REQUEST: usize = 5000;

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    #[schema(pattern = "^(jumpseller|mercadolibre|shopify|woocommerce)$")]
    pub system: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    #[schema(format = "uri", max_length = 2048)]
    pub base_url: String,
    pub credentials: BTreeMap<String, String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitInput>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 256)]
    #[serde(deserialize_with = "whole::option")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    #[schema(value_type = u64, minimum = 1)]
    #[serde(deserialize_with = "whole::one")]
    pub per_second: u32,
    #[schema(value_type = u64, minimum = 1)]
    #[serde(deserialize_with = "whole::one")]
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
    non_empty(field, value, MAX_NAME)
}

/// A `text` that must not be empty.
fn non_empty(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = text(field, value, max)?;
    if v.is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    Ok(v)
}

/// Keys and values of a map (credentials, settings, options): bounded, no control characters.
fn check_map(field: &str, map: &BTreeMap<String, String>, max: usize) -> Result<(), ApiError> {
    if map.len() > 32 {
        return Err(ApiError::invalid(format!(
            "{field} has more than 32 entries"
        )));
    }
    for (k, v) in map {
        text(&format!("{field} key"), k, MAX_NAME)?;
        text(&format!("{field}.{k}"), v, max)?;
    }
    Ok(())
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
        check_map("credentials", &self.credentials, MAX_VALUE)?;
        check_map("settings", &self.settings, MAX_VALUE)?;
        if self.base_url.len() > MAX_URL {
            return Err(ApiError::invalid(format!(
                "base_url is longer than {MAX_URL} characters"
            )));
        }
        let url = reqwest::Url::parse(self.base_url.trim())
            .map_err(|e| ApiError::invalid(format!("base_url is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ApiError::invalid("base_url must be an http or https URL"));
        }
        // Each marketplace's module checks its own credentials and settings.
        let credentials =
            kind::credentials(system, &self.credentials).map_err(ApiError::invalid)?;
        let settings = kind::settings(system, self.settings)
            .map_err(|message| ApiError::new(ErrorCode::InvalidSettings, message))?;
        let rate_limit = match self.rate_limit {
            None => kind::default_rate_limit(system, &settings),
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

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub sku: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(minimum = 0)]
    pub price: f64,
    #[serde(default)]
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "whole::one")]
    pub stock: i64,
    #[serde(default)]
    pub variants: Vec<VariantInput>,
    #[serde(default)]
    pub images: Vec<ImageInput>,
    /// The brand: MercadoLibre's BRAND attribute, Shopify's vendor.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub brand: Option<String>,
    /// The GTIN (EAN, UPC, ISBN): 8, 12, 13 or 14 digits with a valid check digit; MercadoLibre's
    /// GTIN attribute, Shopify's and Jumpseller's barcode, WooCommerce's global unique id.
    #[serde(default)]
    #[schema(pattern = "^([0-9]{8}|[0-9]{12,14})$")]
    pub barcode: Option<String>,
    /// What one marketplace alone needs of this product.
    #[serde(default)]
    pub marketplaces: Option<MarketplacesInput>,
}

/// Per-marketplace fields of a product.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketplacesInput {
    #[serde(default)]
    pub mercadolibre: Option<MercadoLibreInput>,
}

/// A MercadoLibre item's own fields: its category and listing type where they are not the
/// connection's, and its category's attributes.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MercadoLibreInput {
    /// The category's attributes by id, such as `{"id": "MODEL", "value_name": "X1"}`.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub attributes: Vec<AttributeInput>,
    /// A category of the connection's site, such as `MLC1234` (the connection's own when
    /// left out).
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}[0-9]{1,15}$")]
    pub category_id: Option<String>,
    /// `free`, `gold_special` or `gold_pro` (Uruguay: no `gold_pro`); the connection's own
    /// when left out.
    #[serde(default)]
    #[schema(pattern = "^(free|gold_special|gold_pro)$")]
    pub listing_type_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeInput {
    #[schema(pattern = "^[A-Z0-9_]{1,60}$")]
    pub id: String,
    #[schema(min_length = 1, max_length = 255)]
    pub value_name: String,
}

/// A variant's options in the document: one at least, each a name and its value.
fn options_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .min_properties(Some(1))
        .build()
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub sku: String,
    #[schema(minimum = 0)]
    pub price: f64,
    #[serde(default)]
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "whole::one")]
    pub stock: i64,
    #[serde(default)]
    #[schema(required = true, schema_with = options_schema)]
    pub options: BTreeMap<String, String>,
    /// The variant's own GTIN, as the product's `barcode`.
    #[serde(default)]
    #[schema(pattern = "^([0-9]{8}|[0-9]{12,14})$")]
    pub barcode: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    #[serde(deserialize_with = "whole::option")]
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
    pub details: Details,
}

/// A GTIN: 8, 12, 13 or 14 digits whose last is the GS1 check digit of the others (weights 3
/// and 1 from the right).
pub fn check_barcode(field: &str, code: &str) -> Result<String, ApiError> {
    let code = code.trim();
    let digits: Option<Vec<u32>> = code.chars().map(|c| c.to_digit(10)).collect();
    let Some(digits) = digits.filter(|d| matches!(d.len(), 8 | 12 | 13 | 14)) else {
        return Err(ApiError::invalid(format!(
            "{field} must be a GTIN: 8, 12, 13 or 14 digits (EAN-8, UPC-A, EAN-13, GTIN-14)"
        )));
    };
    let (body, check) = digits.split_at(digits.len() - 1);
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    if (10 - sum % 10) % 10 != check[0] {
        return Err(ApiError::invalid(format!(
            "{field} {code:?} has a wrong check digit: it is not a GTIN"
        )));
    }
    Ok(code.to_string())
}

/// A text field that, when given, is not blank and not longer than `max` characters.
fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    value.map(|v| non_empty(field, &v, max)).transpose()
}

impl MercadoLibreInput {
    fn validate(self, at: &str) -> Result<MercadoLibreDetails, ApiError> {
        if self.attributes.len() > 100 {
            return Err(ApiError::invalid(format!(
                "{at}.attributes has more than 100 attributes"
            )));
        }
        let mut seen = HashSet::new();
        let mut attributes = Vec::with_capacity(self.attributes.len());
        for (i, a) in self.attributes.into_iter().enumerate() {
            let field = format!("{at}.attributes[{i}]");
            let id = a.id.trim().to_string();
            if !marketplaces::mercadolibre::attribute_id_shaped(&id) {
                return Err(ApiError::invalid(format!(
                    "{field}.id {id:?} is not a MercadoLibre attribute id (capitals, digits and _, such as \"MODEL\")"
                )));
            }
            if !seen.insert(id.clone()) {
                return Err(ApiError::invalid(format!(
                    "{field}.id {id:?} appears twice"
                )));
            }
            let value_name = non_empty(&format!("{field}.value_name"), &a.value_name, 255)?;
            attributes.push(Attribute { id, value_name });
        }
        let category_id = self.category_id.map(|c| c.trim().to_string());
        if let Some(c) = &category_id {
            if !marketplaces::mercadolibre::category_shaped(c) {
                return Err(ApiError::invalid(format!(
                    "{at}.category_id {c:?} is not a MercadoLibre category (a site and a number, \
                     such as \"MLC1234\")"
                )));
            }
        }
        let listing_type_id = self.listing_type_id.map(|l| l.trim().to_string());
        if let Some(l) = &listing_type_id {
            if !marketplaces::mercadolibre::LISTING_TYPES.contains(&l.as_str()) {
                return Err(ApiError::invalid(format!(
                    "{at}.listing_type_id {l:?} must be one of {}",
                    marketplaces::mercadolibre::LISTING_TYPES.join(", ")
                )));
            }
        }
        Ok(MercadoLibreDetails {
            attributes,
            category_id,
            listing_type_id,
        })
    }
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

/// The longest SKU, in characters (the document's `maxLength` of each SKU).
pub const MAX_SKU: usize = 100;

fn check_sku(field: &str, s: &str) -> Result<String, ApiError> {
    let s = required(field, s)?;
    if s.chars().count() > MAX_SKU {
        return Err(ApiError::invalid(format!(
            "{field} is longer than {MAX_SKU} characters"
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
        if self.variants.len() > MAX_VARIANTS {
            return Err(ApiError::invalid(format!(
                "{at}.variants has more than {MAX_VARIANTS} variants"
            )));
        }
        if self.description.len() > 65_536 {
            return Err(ApiError::invalid(format!(
                "{at}.description is longer than 65536 bytes"
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
            check_map(&format!("{vat}.options"), &v.options, MAX_NAME)?;
            if v.options.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{vat}.options must name at least one option, such as {{\"Color\": \"Red\"}}"
                )));
            }
            let barcode = match &v.barcode {
                Some(b) => Some(check_barcode(&format!("{vat}.barcode"), b)?),
                None => None,
            };
            variants.push(Variant {
                sku: vsku,
                price: price(&format!("{vat}.price"), v.price)?,
                stock: stock(&format!("{vat}.stock"), v.stock)?,
                options: v.options,
                barcode,
            });
        }
        let mut urls = HashSet::new();
        let mut images = Vec::with_capacity(self.images.len());
        if self.images.len() > MAX_VARIANTS {
            return Err(ApiError::invalid(format!(
                "{at}.images has more than {MAX_VARIANTS} images"
            )));
        }
        for (i, img) in self.images.into_iter().enumerate() {
            let field = format!("{at}.images[{i}].url");
            if img.url.len() > MAX_URL {
                return Err(ApiError::invalid(format!(
                    "{field} is longer than {MAX_URL} characters"
                )));
            }
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
        let details = Details {
            brand: optional_text(&format!("{at}.brand"), self.brand, 100)?,
            barcode: match &self.barcode {
                Some(b) => Some(check_barcode(&format!("{at}.barcode"), b)?),
                None => None,
            },
            mercadolibre: match self.marketplaces.and_then(|m| m.mercadolibre) {
                Some(ml) => Some(ml.validate(&format!("{at}.marketplaces.mercadolibre"))?),
                None => None,
            },
        };
        Ok(ValidProduct {
            sku,
            name,
            description: self.description,
            price: price(&format!("{at}.price"), self.price)?,
            stock: stock(&format!("{at}.stock"), self.stock)?,
            variants,
            images,
            details,
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

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::list")]
    pub marketplace_ids: Vec<Id>,
    #[serde(default)]
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presale_at: Option<String>,
    #[serde(default)]
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default)]
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_scheduled: Option<bool>,
    /// A drift check every so many hours (1 to 8760), started by the scheduler; off when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 8760)]
    #[serde(deserialize_with = "whole::option")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_every_hours: Option<u32>,
}

impl CampaignInput {
    /// A campaign named `name` on `marketplace_ids`, with no dates and no drift check.
    pub fn new(name: &str, marketplace_ids: Vec<Id>) -> CampaignInput {
        CampaignInput {
            name: name.to_string(),
            marketplace_ids,
            presale_at: None,
            starts_at: None,
            ends_at: None,
            notify_scheduled: None,
            drift_every_hours: None,
        }
    }
}

/// Whole numbers as JSON Schema counts them: `466` and `466.0` alike (JSON has one number type,
/// and a client's encoder may write a whole float with its `.0`, as PHP's `json_encode` does).
/// The integer fields of the inputs read through these, with `deserialize_with`; a fraction or
/// a number out of the field's range is refused.
pub mod whole {
    use serde::de::{Deserialize, Deserializer, Error, Visitor};

    struct Whole<T>(T);

    impl<'de, T: TryFrom<i128>> Deserialize<'de> for Whole<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Of<T>(std::marker::PhantomData<T>);
            impl<T: TryFrom<i128>> Visitor<'_> for Of<T> {
                type Value = Whole<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a whole number in range")
                }
                fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
                    self.visit_i128(i128::from(v))
                }
                fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
                    self.visit_i128(i128::from(v))
                }
                fn visit_i128<E: Error>(self, v: i128) -> Result<Self::Value, E> {
                    T::try_from(v)
                        .map(Whole)
                        .map_err(|_| E::custom(format!("{v} is out of range")))
                }
                fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
                    // Whole and within ±2^63, where an f64 converts to i128 exactly.
                    if v.fract() == 0.0 && v.abs() < 9.2e18 {
                        self.visit_i128(v as i128)
                    } else {
                        Err(E::custom(format!("{v} is not a whole number")))
                    }
                }
            }
            d.deserialize_any(Of(std::marker::PhantomData))
        }
    }

    pub fn one<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        Whole::<T>::deserialize(d).map(|w| w.0)
    }

    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<Whole<T>>::deserialize(d).map(|o| o.map(|w| w.0))
    }

    pub fn list<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Vec<T>, D::Error> {
        Vec::<Whole<T>>::deserialize(d).map(|v| v.into_iter().map(|w| w.0).collect())
    }

    pub fn option_list<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        Option::<Vec<Whole<T>>>::deserialize(d)
            .map(|o| o.map(|v| v.into_iter().map(|w| w.0).collect()))
    }

    /// A field of a PATCH body (see `present`).
    pub fn present<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        option(d).map(Some)
    }
}

/// A field of a PATCH body: absent leaves the value alone, `null` clears it.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/campaigns/{id}`: the campaign's dates, whether its steps notify, and its
/// periodic drift check.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub presale_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Option<String>>,
    #[serde(default)]
    pub notify_scheduled: Option<bool>,
    /// A drift check every so many hours (1 to 8760); `null` turns it off.
    #[serde(default, deserialize_with = "whole::present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 8760)]
    pub drift_every_hours: Option<Option<u32>>,
}

/// The period of a campaign's periodic drift check, when it is one the scheduler can keep.
pub fn drift_every_hours(hours: Option<u32>) -> Result<Option<u32>, ApiError> {
    use domain::schedule::MAX_DRIFT_EVERY_HOURS as MAX;
    match hours {
        Some(h) if !(1..=MAX).contains(&h) => Err(ApiError::invalid(format!(
            "drift_every_hours must be between 1 and {MAX} (a year), or null to turn the check off"
        ))),
        h => Ok(h),
    }
}

/// An RFC 3339 date with its offset, as milliseconds since the epoch.
pub fn date(field: &str, value: &str) -> Result<Millis, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            ApiError::invalid(format!(
                "{field} must be an RFC 3339 date with an offset, such as 2027-01-31T23:59:00-03:00"
            ))
        })
}

/// Inputs that name what they act on in exactly one of several ways (by their schema's name):
/// the handlers refuse none and two at once, and the document says so (`oneOf` of `required`).
pub const EXACTLY_ONE_OF: [(&str, &[&str]); 2] = [
    ("ProductPriceInput", &["product_id", "sku"]),
    ("AddProductsInput", &["product_ids", "skus", "products"]),
];

/// One product's campaign prices, named by id or SKU; in a PATCH, `null` clears a price.
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPriceInput {
    #[serde(default)]
    #[serde(deserialize_with = "whole::option")]
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Id>,
    #[serde(default)]
    #[schema(min_length = 1, nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Positive, and at most the product's own price.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_price: Option<Option<f64>>,
    /// Positive, and at most the product's own price.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presale_price: Option<Option<f64>>,
}

impl ProductPriceInput {
    /// The prices as a change, each checked against the product's own price.
    pub fn change(&self, at: &str, product_price: f64) -> Result<PriceChange, ApiError> {
        let check = |field: &str, p: Option<Option<f64>>| -> Result<(), ApiError> {
            if let Some(Some(p)) = p {
                if !p.is_finite() || p <= 0.0 {
                    return Err(ApiError::invalid(format!(
                        "{at}.{field} must be a positive number"
                    )));
                }
                if p > product_price {
                    return Err(ApiError::invalid(format!(
                        "{at}.{field} {p} is above the product's price {product_price}"
                    )));
                }
            }
            Ok(())
        };
        check("sale_price", self.sale_price)?;
        check("presale_price", self.presale_price)?;
        Ok(PriceChange {
            sale_price: self.sale_price,
            presale_price: self.presale_price,
        })
    }
}

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddProductsInput {
    #[serde(default)]
    #[schema(min_items = 1, nullable = false)]
    #[serde(deserialize_with = "whole::option_list")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_ids: Option<Vec<Id>>,
    #[serde(default)]
    #[schema(min_items = 1, nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
    /// Products with their campaign prices.
    #[serde(default)]
    #[schema(min_items = 1, nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub products: Option<Vec<ProductPriceInput>>,
    #[serde(default)]
    #[schema(min_items = 1, nullable = false)]
    #[serde(deserialize_with = "whole::option_list")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketplace_ids: Option<Vec<Id>>,
}

impl AddProductsInput {
    /// Products by id, on all of the campaign's marketplaces.
    pub fn ids(product_ids: Vec<Id>) -> AddProductsInput {
        AddProductsInput {
            product_ids: Some(product_ids),
            skus: None,
            products: None,
            marketplace_ids: None,
        }
    }

    /// Products by SKU, on all of the campaign's marketplaces.
    pub fn skus(skus: Vec<String>) -> AddProductsInput {
        AddProductsInput {
            product_ids: None,
            skus: Some(skus),
            products: None,
            marketplace_ids: None,
        }
    }
}

/// Options of an action on a whole campaign (the body is optional).
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    #[serde(default)]
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::option_list")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_ids: Option<Vec<Id>>,
    #[serde(default)]
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::option_list")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketplace_ids: Option<Vec<Id>>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "whole::option")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub force: bool,
    /// `false`: the run's end writes no notification and queues no webhook.
    #[serde(default = "yes")]
    pub notify: bool,
    #[serde(default)]
    pub dry_run: DryRunInput,
}

impl Default for ActionInput {
    fn default() -> Self {
        ActionInput {
            product_ids: None,
            marketplace_ids: None,
            chunk_size: None,
            fail_fast: false,
            force: false,
            notify: true,
            dry_run: DryRunInput::default(),
        }
    }
}

/// `true`: answer with the plan of the action instead of starting it (nothing is sent or
/// written); `"validate"`: the same, and marketplaces that check a body without effect
/// (MercadoLibre) are asked; `false` (the default): start it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DryRunInput {
    Flag(bool),
    Validate(ValidateWord),
}

impl Default for DryRunInput {
    fn default() -> Self {
        DryRunInput::Flag(false)
    }
}

impl DryRunInput {
    /// The dry run asked for, if one is.
    pub fn mode(self, detail: bool) -> Option<engine::dry_run::DryRun> {
        let validate = match self {
            DryRunInput::Flag(false) => return None,
            DryRunInput::Flag(true) => false,
            DryRunInput::Validate(_) => true,
        };
        Some(engine::dry_run::DryRun { validate, detail })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValidateWord {
    Validate,
}

pub fn yes() -> bool {
    true
}

/// An action on chosen products: `product_ids` is required.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductActionInput {
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::list")]
    pub product_ids: Vec<Id>,
    #[serde(default)]
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::option_list")]
    pub marketplace_ids: Option<Vec<Id>>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "whole::option")]
    pub chunk_size: Option<u32>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default = "yes")]
    pub notify: bool,
    #[serde(default)]
    pub dry_run: DryRunInput,
}

impl From<ProductActionInput> for ActionInput {
    fn from(p: ProductActionInput) -> Self {
        ActionInput {
            product_ids: Some(p.product_ids),
            marketplace_ids: p.marketplace_ids,
            chunk_size: p.chunk_size,
            fail_fast: p.fail_fast,
            force: p.force,
            notify: p.notify,
            dry_run: p.dry_run,
        }
    }
}

/// The largest number a query may give (2^53 - 1, which every JSON reader holds exactly; ids
/// are allocated from 1 and never come near it). The document states it as each integer
/// parameter's maximum.
pub const MAX_QUERY_INTEGER: u64 = (1 << 53) - 1;

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
    /// Campaign products whose SKU contains this text.
    #[serde(default)]
    pub sku: Option<String>,
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
        if q.page == 0 || q.page > MAX_QUERY_INTEGER || q.per_page == 0 || q.per_page > 500 {
            return Err(ApiError::invalid(format!(
                "page is between 1 and {MAX_QUERY_INTEGER}, and per_page between 1 and 500"
            )));
        }
        if q.marketplace_id.is_some_and(|m| m > MAX_QUERY_INTEGER) {
            return Err(ApiError::invalid(format!(
                "marketplace_id is at most {MAX_QUERY_INTEGER}"
            )));
        }
        Ok(q)
    }

    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

/// `PUT /api/webhook`: where the tenant's notifications are POSTed.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
}

/// `POST /api/campaigns/{id}/retry`: which errored products to retry (all by default), and
/// the run's options (the body is optional).
#[derive(serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryInput {
    #[serde(default)]
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::option_list")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_ids: Option<Vec<Id>>,
    #[serde(default)]
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "whole::option_list")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketplace_ids: Option<Vec<Id>>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "whole::option")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default = "yes")]
    pub notify: bool,
    #[serde(default)]
    pub dry_run: DryRunInput,
}

impl Default for RetryInput {
    /// Every errored product, as an empty body asks.
    fn default() -> Self {
        RetryInput {
            product_ids: None,
            marketplace_ids: None,
            chunk_size: None,
            fail_fast: false,
            notify: true,
            dry_run: DryRunInput::default(),
        }
    }
}

/// `POST /api/tokens`: the new token's name and lifetime (the body is optional).
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    #[serde(default)]
    #[schema(max_length = 255, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub name: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(deserialize_with = "whole::option")]
    pub expires_in_days: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Integer fields take whole numbers however they are written (JSON Schema counts `2.0` as
    /// an integer, and the document says integer), and refuse fractions and numbers out of
    /// their range.
    #[test]
    fn integer_fields_take_whole_numbers_written_either_way() {
        let action = |body: serde_json::Value| {
            crate::error::parse_json::<ActionInput>(body.to_string().as_bytes())
                .map(|a| (a.product_ids, a.marketplace_ids, a.chunk_size))
                .map_err(|e| e.message)
        };
        /// A body, and the ids and chunk size read, or the refusal's words.
        type Case = (
            serde_json::Value,
            Result<(Vec<Id>, Option<u32>), &'static str>,
        );
        let cases: &[Case] = &[
            (
                json!({"product_ids": [1, 2.0], "chunk_size": 10.0}),
                Ok((vec![1, 2], Some(10))),
            ),
            (json!({"product_ids": [466.0]}), Ok((vec![466], None))),
            (
                json!({"product_ids": [1.5]}),
                Err("1.5 is not a whole number"),
            ),
            (json!({"product_ids": [-1]}), Err("-1 is out of range")),
            (
                json!({"chunk_size": 4294967296.0}),
                Err("4294967296 is out of range"),
            ),
            (
                json!({"product_ids": ["1"]}),
                Err("expected a whole number in range"),
            ),
        ];
        for (body, expected) in cases {
            let got = action(body.clone());
            match expected {
                Ok((ids, chunk)) => {
                    let (got_ids, _, got_chunk) = got.expect("accepted");
                    assert_eq!(got_ids.as_ref(), Some(ids), "{body}");
                    assert_eq!(got_chunk, *chunk, "{body}");
                }
                Err(message) => {
                    let refused = got.expect_err("refused");
                    assert!(refused.contains(message), "{body}: {refused}");
                }
            }
        }
        let product: ProductInput = serde_json::from_value(json!({
            "sku": "S", "name": "n", "price": 1.0, "stock": -3.0
        }))
        .expect("a whole negative stock");
        assert_eq!(product.stock, -3);
    }

    /// A bulk upsert of `list`, as its JSON body: the valid products' SKUs, or the refusal's
    /// code and message.
    fn upsert(list: serde_json::Value) -> Result<Vec<String>, (ErrorCode, String)> {
        let inputs: Vec<ProductInput> = serde_json::from_value(list).expect("the body's shape");
        validate_products(inputs)
            .map(|valid| valid.into_iter().map(|p| p.sku).collect())
            .map_err(|e| (e.code, e.message))
    }

    #[test]
    fn a_product_list_is_checked_field_by_field_and_each_refusal_names_its_place() {
        let shirt = json!({"sku": "S-1", "name": "Shirt", "price": 10.0, "stock": 2,
            "variants": [{"sku": "S-1-M", "price": 10.0, "stock": 1, "options": {"Size": "M"}}],
            "images": [{"url": "https://img.example/s-1.jpg"}],
            "barcode": "4006381333931", "brand": "Acme"});
        assert_eq!(upsert(json!([shirt])), Ok(vec!["S-1".to_string()]));
        let with = |path: &str, value: serde_json::Value| {
            let mut p = shirt.clone();
            *p.pointer_mut(path).expect("a field of the shirt") = value;
            json!([p])
        };
        // (body, what the refusal says)
        let refused = [
            (json!([]), "the list of products is empty"),
            (json!([shirt, shirt]), "[1].sku \"S-1\" appears twice"),
            (with("/sku", json!(" ")), "[0].sku"),
            (
                with("/sku", json!("x".repeat(101))),
                "[0].sku is longer than 100",
            ),
            (with("/name", json!("")), "[0].name"),
            (with("/price", json!(-1.0)), "[0].price"),
            (with("/stock", json!(-1)), "[0].stock"),
            (
                with("/barcode", json!("4006381333932")),
                "wrong check digit",
            ),
            (with("/barcode", json!("12345")), "must be a GTIN"),
            (
                with("/variants/0/options", json!({})),
                "[0].variants[0].options",
            ),
            (with("/variants/0/sku", json!("")), "[0].variants[0].sku"),
            (
                with("/images/0/url", json!("ftp://img.example/a.jpg")),
                "http or https",
            ),
            (
                with("/images/0/url", json!("not a url")),
                "[0].images[0].url is not a URL",
            ),
        ];
        for (body, says) in refused {
            let (code, message) = upsert(body.clone()).expect_err(&body.to_string());
            assert_eq!(code, ErrorCode::ValidationFailed, "{body}");
            assert!(message.contains(says), "{body}: {message:?} lacks {says:?}");
        }
        let twice = with(
            "/variants",
            json!([{"sku": "V", "price": 1.0, "options": {"Size": "M"}},
                   {"sku": "V", "price": 1.0, "options": {"Size": "L"}}]),
        );
        assert!(upsert(twice)
            .unwrap_err()
            .1
            .contains("[0].variants[1].sku \"V\" appears twice"));
    }

    #[test]
    fn pages_dates_and_drift_periods_take_what_the_document_says_and_refuse_the_rest() {
        for (raw, page) in [
            ("", Some((1, 50, 0))),
            ("page=3&per_page=20", Some((3, 20, 40))),
            ("per_page=500", Some((1, 500, 0))),
            ("page=0", None),
            ("per_page=0", None),
            ("per_page=501", None),
            ("page=x", None),
            (
                "page=9007199254740991&per_page=1",
                Some((MAX_QUERY_INTEGER, 1, MAX_QUERY_INTEGER - 1)),
            ),
            ("page=9007199254740992", None),
            ("marketplace_id=9007199254740991", Some((1, 50, 0))),
            ("marketplace_id=9007199254740992", None),
        ] {
            let parsed = PageQuery::parse(raw).ok();
            assert_eq!(
                parsed.map(|q| (q.page, q.per_page, q.offset())),
                page,
                "{raw:?}"
            );
        }
        assert_eq!(
            date("ends_at", "2027-01-31T23:59:00-03:00").ok(),
            Some(1_801_450_740_000)
        );
        for bad in ["2027-01-31", "2027-01-31T23:59:00", "tomorrow"] {
            let refused = date("ends_at", bad).expect_err(bad);
            assert!(refused.message.starts_with("ends_at must be"), "{bad}");
        }
        assert_eq!(drift_every_hours(None).ok(), Some(None));
        assert_eq!(drift_every_hours(Some(24)).ok(), Some(Some(24)));
        assert!(drift_every_hours(Some(0)).is_err());
        assert!(drift_every_hours(Some(8761)).is_err());
    }

    #[test]
    fn a_gtin_is_its_digits_with_a_right_check_digit() {
        for (code, valid) in [
            ("4006381333931", true),
            ("96385074", true),
            ("036000291452", true),
            ("10036000291459", true),
            ("4006381333930", false),
            ("400638133393", false),
            ("40063813339a1", false),
            ("", false),
        ] {
            assert_eq!(check_barcode("barcode", code).is_ok(), valid, "{code}");
        }
    }
}
