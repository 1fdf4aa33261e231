//! The MercadoLibre adapter: OAuth 2 bearer tokens (a 401 refreshes them once through
//! `POST /oauth/token` and the request is sent again; the new tokens are saved on the
//! connection), and one phase per action on `/items`. An item carries its pictures, the
//! SELLER_SKU attribute and its variations in one body. Pause and publish switch between paused
//! and active; finish closes the item, which MercadoLibre makes final, so a later publish of a
//! finished product is refused with a clear error; delete closes, then marks deleted. A create of
//! unknown outcome is followed by a look-up by `seller_sku`.

pub mod sim;

mod user_products;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use super::gather::{Fetch, Gatherer};
use super::http::{classify, parse, Auth, Endpoint, Gate, Refresh};
use super::plan::{Operation, Problem, RemoteId, Request};
use super::{create_once, Checkpoint, MarketError, Marketplace, PhaseCall, READS_ONLY};
use domain::drift::{self, Difference, Shown, ShownVariant};
use domain::{
    Action, Connection, Credentials, MarketplaceInfo, Offer, Product, ProductStatus, Sent,
};

/// The connection settings MercadoLibre needs, checked when the connection is created.
pub const SETTINGS: &[&str] = &[
    "site_id",
    "currency_id",
    "user_id",
    "category_id",
    "listing_type_id",
    "condition",
    "attributes",
];

/// Whether an attribute id is shaped as MercadoLibre's are (`BRAND`, `MODEL`, `EMPTY_GTIN_REASON`):
/// capitals, digits and `_`, at most 60.
pub fn attribute_id_shaped(id: &str) -> bool {
    (1..=60).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Whether a category id is shaped as MercadoLibre's are: a site (`MLC`) and a number.
pub fn category_shaped(id: &str) -> bool {
    id.len() <= 18
        && id
            .get(..3)
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_uppercase()))
        && id
            .get(3..)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The connection's `attributes` setting: a JSON list of `{"id", "value_name"}` every item of
/// the connection carries unless the product names the attribute itself (a default MODEL, say).
pub fn default_attributes(setting: &str) -> Result<Vec<domain::Attribute>, String> {
    let attributes: Vec<domain::Attribute> = serde_json::from_str(setting).map_err(|e| {
        format!(
            "settings.attributes must be a JSON list such as [{{\"id\": \"MODEL\", \"value_name\": \"X1\"}}]: {e}"
        )
    })?;
    if attributes.len() > 100 {
        return Err("settings.attributes has more than 100 attributes".to_string());
    }
    for a in &attributes {
        if !attribute_id_shaped(&a.id) || a.value_name.trim().is_empty() {
            return Err(format!(
                "settings.attributes: {:?} is not a MercadoLibre attribute id with a value",
                a.id
            ));
        }
    }
    Ok(attributes)
}

/// Sites and the currency each lists in.
pub const SITES: &[(&str, &str)] = &[
    ("MLA", "ARS"),
    ("MLB", "BRL"),
    ("MLC", "CLP"),
    ("MCO", "COP"),
    ("MLM", "MXN"),
    ("MPE", "PEN"),
    ("MLU", "UYU"),
];

/// The listing types of the marketplace: "free, gold_special, gold_pro (puede variar según el
/// site)" (developers' "Tipos de publicación", 2026-06); Uruguay (MLU) lists without gold_pro.
/// The older ids (gold_premium, gold, silver, bronze) are not offered on the marketplace.
pub const LISTING_TYPES: &[&str] = &["free", "gold_special", "gold_pro"];

/// The listing types a site offers.
pub fn listing_types(site: &str) -> &'static [&'static str] {
    match site {
        "MLU" => &LISTING_TYPES[..2],
        _ => LISTING_TYPES,
    }
}

/// MercadoLibre connections: the application's id and secret with the seller's tokens, and
/// where and how the seller lists (site and its currency, user, category, listing type,
/// condition).
pub struct Kind;

pub static KIND: Kind = Kind;

/// MercadoLibre's longest title.
pub const TITLE: usize = 60;

impl super::kind::ConnectionKind for Kind {
    /// A title over 60 characters on a new listing or a republish, variants of different
    /// prices, a closed item (which MercadoLibre never reopens).
    fn plan_problems(
        &self,
        action: Action,
        sends_data: bool,
        product: &Product,
        info: &domain::MarketplaceInfo,
    ) -> Vec<super::plan::Problem> {
        use super::plan::Problem;
        let mut found = Vec::new();
        let length = product.name.chars().count();
        let listing = sends_data && info.product_id.is_none();
        if (listing || action == Action::Republish) && length > TITLE {
            found.push(Problem::new(
                "title_too_long",
                format!("MercadoLibre takes titles of at most {TITLE} characters; this one has {length}"),
            ));
        }
        if let Some(why) = sends_data.then(|| one_price(product)).flatten() {
            found.push(Problem::new("variant_prices_differ", why));
        }
        if info.remote_status.as_deref() == Some("closed") && action != Action::Delete {
            found.push(Problem::new(
                "closed_item",
                format!(
                    "MercadoLibre item {} is closed, and MercadoLibre never reopens a closed \
                     item; only a delete can still be done",
                    info.product_id.as_deref().unwrap_or("?")
                ),
            ));
        }
        found
    }

    fn official_host(&self, url: &reqwest::Url) -> Result<(), &'static str> {
        match super::kind::https_on(url, "api.mercadolibre.com") {
            true => Ok(()),
            false => Err("https://api.mercadolibre.com"),
        }
    }

    fn credential_keys(&self) -> &'static [&'static str] {
        &[
            "client_id",
            "client_secret",
            "access_token",
            "refresh_token",
        ]
    }

    fn credentials(&self, values: Vec<String>) -> Result<Credentials, String> {
        let [client_id, client_secret, access_token, refresh_token] =
            <[String; 4]>::try_from(values).map_err(|_| "the four credentials".to_string())?;
        Ok(Credentials::Mercadolibre {
            client_id,
            client_secret,
            access_token,
            refresh_token,
        })
    }

    fn setting_keys(&self) -> &'static [&'static str] {
        SETTINGS
    }

    fn settings(
        &self,
        given: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        let Some(site) = given.get("site_id").cloned() else {
            return Err(
                "settings.site_id is required (the MercadoLibre site, such as MLC for Chile)"
                    .to_string(),
            );
        };
        let Some((_, currency)) = SITES.iter().find(|(s, _)| *s == site) else {
            let sites: Vec<&str> = SITES.iter().map(|(s, _)| *s).collect();
            return Err(format!(
                "settings.site_id {site:?} is not a MercadoLibre site ({})",
                sites.join(", ")
            ));
        };
        match given.get("currency_id") {
            Some(c) if c != currency => {
                return Err(format!("settings.currency_id {c:?} is not the currency of site {site} (it lists in {currency})"));
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
            return Err(
                "settings.user_id is required: the seller's numeric MercadoLibre user id"
                    .to_string(),
            );
        }
        let category_ok = given.get("category_id").is_some_and(|c| {
            c.strip_prefix(site.as_str())
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if !category_ok {
            return Err(format!(
                "settings.category_id is required: a category of site {site}, such as {site}1234"
            ));
        }
        let listing = given
            .entry("listing_type_id".to_string())
            .or_insert_with(|| DEFAULT_LISTING_TYPE.to_string());
        let offered = listing_types(&site);
        if !offered.contains(&listing.as_str()) {
            return Err(format!(
                "settings.listing_type_id must be one of {} on site {site}",
                offered.join(", ")
            ));
        }
        let condition = given
            .entry("condition".to_string())
            .or_insert_with(|| DEFAULT_CONDITION.to_string());
        if !matches!(condition.as_str(), "new" | "used" | "not_specified") {
            return Err("settings.condition must be new, used or not_specified".to_string());
        }
        if let Some(attributes) = given.get("attributes") {
            default_attributes(attributes)?;
        }
        Ok(())
    }
}

const DEFAULT_LISTING_TYPE: &str = "gold_special";
const DEFAULT_CONDITION: &str = "new";

/// A price in the currency's decimals (`decimal_places` of `GET /currencies/{id}`): none for
/// CLP and COP, two for the other sites' currencies. A price with more is refused.
pub fn in_currency(currency: &str, amount: f64) -> f64 {
    let scale = match currency {
        "CLP" | "COP" => 1.0,
        _ => 100.0,
    };
    (amount * scale).round() / scale
}

/// Why MercadoLibre cannot list `p` as it is, if it cannot: a classic item's variations share
/// one price ("El precio deberá ser el mismo para cada variación … en la VIP solo será visto el
/// precio más alto", developers' "Variaciones"), so a product whose variants differ in price
/// would be shown and charged at its highest.
pub fn one_price(p: &Product) -> Option<String> {
    let first = p.variants.first()?.price;
    if p.variants.iter().all(|v| (v.price - first).abs() < 0.005) {
        return None;
    }
    let prices: Vec<String> = p.variants.iter().map(|v| v.price.to_string()).collect();
    Some(format!(
        "MercadoLibre lists one price for all of an item's variations (it shows and charges the \
         highest); this product's variants have {}: give them one price, or list them as \
         products of their own",
        prices.join(", ")
    ))
}

/// A category's attributes as `GET /categories/{id}/attributes` answers them; `None` in a
/// plan, which reads nothing.
#[derive(Deserialize, Default)]
#[serde(transparent)]
struct CategoryAnswer(Option<Vec<CategoryAttribute>>);

/// An attribute of a category, as `GET /categories/{id}/attributes` lists it.
#[derive(Deserialize)]
struct CategoryAttribute {
    id: String,
    #[serde(default)]
    name: String,
    /// An object of flags (`{"allow_variations": true}`); some resources answer a list of names.
    #[serde(default)]
    tags: serde_json::Value,
}

impl CategoryAttribute {
    fn tagged(&self, tag: &str) -> bool {
        match &self.tags {
            serde_json::Value::Object(flags) => {
                flags.get(tag) == Some(&serde_json::Value::Bool(true))
            }
            serde_json::Value::Array(names) => names.iter().any(|n| n == tag),
            _ => false,
        }
    }
}

/// What a run reads of the connection's category once (`GET /categories/{id}/attributes`).
struct Category {
    /// A plan's category, not read: it requires nothing and names no attribute (the run reads
    /// it; a validating dry run reads it first, and the plan uses that).
    planned: bool,
    /// The attributes a variation is told by (`allow_variations`), as (id, name).
    variations: Vec<(String, String)>,
    /// The attributes a create must carry (`required`), as (id, name); GTIN when it is
    /// `conditional_required` (a GTIN, or EMPTY_GTIN_REASON when the product has none).
    required: Vec<(String, String)>,
}

impl Category {
    fn of(listed: Vec<CategoryAttribute>) -> Category {
        let pair = |a: &CategoryAttribute| (a.id.clone(), a.name.clone());
        Category {
            planned: false,
            variations: listed
                .iter()
                .filter(|a| a.tagged("allow_variations"))
                .map(pair)
                .collect(),
            required: listed
                .iter()
                .filter(|a| {
                    a.tagged("required") || (a.id == "GTIN" && a.tagged("conditional_required"))
                })
                .map(pair)
                .collect(),
        }
    }

    /// A plan's stand-in for a category no one read.
    fn planned() -> Category {
        Category {
            planned: true,
            variations: Vec::new(),
            required: Vec::new(),
        }
    }

    /// The required attributes a create body's attributes lack, as "ID (name)".
    fn missing(&self, sent: &[Attribute<'_>]) -> Vec<String> {
        let has = |id: &str| {
            sent.iter()
                .any(|a| a.id == id && !a.value_name.trim().is_empty())
        };
        self.required
            .iter()
            .filter(|(id, _)| !(has(id) || (id == "GTIN" && has("EMPTY_GTIN_REASON"))))
            .map(|(id, name)| format!("{id} ({name})"))
            .collect()
    }
}

/// The item's attributes: SELLER_SKU, BRAND from `brand`, GTIN from `barcode`, then the
/// product's own MercadoLibre attributes (which win over the first three when they name them),
/// then the connection's defaults for whatever none of those names.
fn item_attributes<'a>(p: &'a Product, defaults: &'a [domain::Attribute]) -> Vec<Attribute<'a>> {
    let own: &[domain::Attribute] = p
        .details
        .mercadolibre
        .as_ref()
        .map_or(&[], |m| m.attributes.as_slice());
    let named = |id: &str| own.iter().any(|a| a.id == id);
    let mut attributes = vec![Attribute {
        id: "SELLER_SKU".into(),
        value_name: &p.sku,
    }];
    for (id, value) in [("BRAND", &p.details.brand), ("GTIN", &p.details.barcode)] {
        if let (Some(value), false) = (value, named(id)) {
            attributes.push(Attribute {
                id: id.into(),
                value_name: value,
            });
        }
    }
    attributes.extend(
        own.iter()
            .filter(|a| a.id != "SELLER_SKU")
            .map(|a| Attribute {
                id: a.id.as_str().into(),
                value_name: &a.value_name,
            }),
    );
    for a in defaults {
        if !attributes.iter().any(|given| given.id == a.id) {
            attributes.push(Attribute {
                id: a.id.as_str().into(),
                value_name: &a.value_name,
            });
        }
    }
    attributes
}

/// The id of the attribute (id, name) an option names, by id or by name, in any case.
fn attribute_of<'a>(attrs: &'a [(String, String)], option: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(id, name)| id.eq_ignore_ascii_case(option) || name.eq_ignore_ascii_case(option))
        .map(|(id, _)| id.as_str())
}

/// One of the product's own MercadoLibre fields, if it has it.
fn own(
    p: &Product,
    field: impl Fn(&domain::MercadoLibreDetails) -> &Option<String>,
) -> Option<&str> {
    p.details
        .mercadolibre
        .as_ref()
        .and_then(|m| field(m).as_deref())
}

/// Whether MercadoLibre closed the product's item (one of its items, on the User Products
/// model): it never reopens, so nothing but a delete is sent to it.
/// Whether campaignd listed the product as a classic item with variations: its variants' ids
/// are variation ids (numbers), where a User Products seller's are item ids (`MLA…`). Such an
/// item is spoken to as classic even after its seller moved to User Products (the two models
/// coexist): taking its variation ids for items would find none, and list the product again
/// beside it. If MercadoLibre moved the item to the new model, a classic update is refused and
/// the product says so; nothing is listed twice.
fn classic_listing(info: &MarketplaceInfo) -> bool {
    info.variant_ids
        .iter()
        .any(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

fn is_closed(info: &MarketplaceInfo) -> bool {
    info.remote_status.as_deref() == Some("closed")
}

/// MercadoLibre's refusal of the product, said before anything is sent.
fn refused(why: String) -> MarketError {
    MarketError::Rejected {
        status: 400,
        message: why,
    }
}

/// A lock whose holder cannot leave its map half-changed: a poisoned one is used as it is.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The most items one multiget reads (`GET /items?ids=`).
const MULTIGET: usize = 20;

/// Every read asks for the variations' attributes, where their SELLER_SKU is: "Para ver la
/// propiedad attributes dentro de cada variación, debes agregar el parámetro
/// include_attributes=all" (developers' "Variaciones"). Without it every variation's SKU reads
/// empty, and its id cannot be matched.
const ALL_ATTRIBUTES: (&str, &str) = ("include_attributes", "all");

/// One item of a multiget's answer.
#[derive(Deserialize)]
struct MultigetAnswer {
    code: u16,
    body: serde_json::Value,
}

/// A multiget of up to `MULTIGET` items: the items found, by id.
fn multiget(api: Arc<Endpoint>) -> Fetch {
    Arc::new(move |ids: Vec<String>| {
        let api = Arc::clone(&api);
        Box::pin(async move { items(&api, &ids).await })
    })
}

/// Up to `MULTIGET` items read at once, with their variations' attributes: those found, by id.
async fn items(
    api: &Endpoint,
    ids: &[String],
) -> Result<std::collections::HashMap<String, serde_json::Value>, MarketError> {
    let request = api
        .request(Method::GET, "/items")
        .query(&[("ids", ids.join(",").as_str()), ALL_ATTRIBUTES]);
    let answers: Vec<MultigetAnswer> = api.exchange(Operation::Read, request).await?;
    Ok(answers
        .into_iter()
        .filter(|a| a.code == 200)
        .filter_map(|a| Some((a.body.get("id")?.as_str()?.to_string(), a.body)))
        .collect())
}

pub struct MercadoLibre {
    api: Arc<Endpoint>,
    /// A drift check's reads, gathered into multigets.
    reads: Gatherer,
    user_id: String,
    category_id: String,
    currency_id: String,
    listing_type_id: String,
    condition: String,
    /// The connection's `attributes` setting.
    default_attributes: Vec<domain::Attribute>,
    /// What this run learned of the seller's items, for finding those already listed.
    listing: tokio::sync::Mutex<Listing>,
    /// The attributes of each category the run met (the connection's, or a product's own):
    /// read once a run, before the first create or the first body with variations in it. One
    /// read at a time, so that two products of a new category read it once.
    categories: std::sync::Mutex<HashMap<String, Arc<Category>>>,
    reading_category: tokio::sync::Mutex<()>,
    site_id: String,
    /// Whether the seller is on the User Products model: asked once a run.
    seller: tokio::sync::OnceCell<bool>,
    /// A dry run's reads without effect, made before its plan: the seller's model
    /// (`prepare_plan`) and, when it validates, the categories it checked. The plan, which
    /// reads nothing, takes them for what its own reads would have answered.
    model_read: tokio::sync::OnceCell<bool>,
    checked_categories: std::sync::Mutex<HashMap<String, Arc<Category>>>,
}

/// Whether a category is read for the run's protocol (recorded by a dry run, like every
/// request of the protocol) or for a dry run's check (sent: a read without effect).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Protocol,
    Check,
}

/// The seller's items as a run learns them: how many, their first page, and, once read whole,
/// which item holds each SELLER_SKU.
#[derive(Default)]
struct Listing {
    first: Option<(u64, Vec<String>)>,
    skus: Option<std::collections::HashMap<String, String>>,
}

/// Items a page of the seller's item list holds (its `limit`'s default); the list reaches
/// 1,000 items by offset ("search_type=scan permite obtener más de 1000 items": beyond them a
/// seller is searched SKU by SKU).
const LIST_PAGE: u64 = 50;
const LIST_REACH: u64 = 1000;

/// A new item. A classic seller's has a title and variations; a User Products seller's item
/// is one variant, with a `family_name` instead of a title (see `user_products`).
#[derive(Serialize)]
struct ItemBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<&'a str>,
    category_id: &'a str,
    price: f64,
    currency_id: &'a str,
    available_quantity: i64,
    buying_mode: &'a str,
    listing_type_id: &'a str,
    condition: &'a str,
    description: Description<'a>,
    pictures: Vec<Picture<'a>>,
    attributes: Vec<Attribute<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variations: Vec<VariationBody<'a>>,
}

#[derive(Serialize)]
/// What an update may change (category, currency and listing type are fixed once listed). The
/// title is not among it: MercadoLibre keeps an item's title once it has sold, so a title goes
/// alone, and only when it differs from the item's and the item has no sales (`retitle`).
struct ItemUpdate<'a> {
    price: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_quantity: Option<i64>,
    pictures: Vec<Picture<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variations: Vec<VariationBody<'a>>,
}

#[derive(Serialize)]
struct Description<'a> {
    plain_text: &'a str,
}

#[derive(Serialize)]
struct Picture<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
}

#[derive(Serialize)]
struct Attribute<'a> {
    id: std::borrow::Cow<'a, str>,
    value_name: &'a str,
}

#[derive(Serialize)]
/// A variation's value of one of the category's `allow_variations` attributes, named by its id
/// (`{"id": "COLOR", "value_name": "Rojo"}`; an entry without the id is ignored by
/// MercadoLibre).
struct Combination<'a> {
    id: String,
    value_name: &'a str,
}

#[derive(Serialize)]
struct VariationBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    price: f64,
    available_quantity: i64,
    attribute_combinations: Vec<Combination<'a>>,
    attributes: Vec<Attribute<'a>>,
    /// Pictures of a variation MercadoLibre does not know yet (required for it): the item's
    /// pictures, by id where they have one, else by source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    picture_ids: Vec<String>,
}

/// A price change alone: the item's price and each listed variation's.
#[derive(Serialize)]
struct PriceUpdate {
    price: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variations: Vec<VariationPrice>,
}

#[derive(Serialize)]
struct VariationPrice {
    id: u64,
    price: f64,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    status: &'a str,
}

#[derive(Serialize)]
struct DeletedBody {
    deleted: &'static str,
}

#[derive(Deserialize, Default)]
struct RemoteItem {
    id: RemoteId,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    available_quantity: Option<i64>,
    #[serde(default)]
    sub_status: Vec<String>,
    #[serde(default)]
    pictures: Vec<RemotePicture>,
    #[serde(default)]
    variations: Vec<RemoteVariation>,
    /// The item's attributes: its SELLER_SKU (on a User Products seller, the variant's).
    #[serde(default)]
    attributes: Vec<RemoteAttribute>,
    /// Its name: a classic item's title, a User Products item's family name.
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    /// Units sold: an item that has sold keeps its name.
    #[serde(default)]
    sold_quantity: Option<u64>,
    /// What MercadoLibre took from the call but did not apply (a price its price automation
    /// manages: `item.price.not_modifiable`).
    #[serde(default)]
    warnings: Vec<Warning>,
}

#[derive(Deserialize)]
struct Warning {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl RemoteItem {
    /// What a plan takes an answer about item `id` for: the item, as campaignd left it.
    fn planned(id: &str) -> RemoteItem {
        RemoteItem {
            id: RemoteId(id.to_string()),
            ..RemoteItem::default()
        }
    }

    /// The price the call sent that MercadoLibre did not apply, said as the product's error:
    /// since 2026-03-18 a PUT of the price beside other fields of an item whose price
    /// automation manages answers 200, changes the other fields and ignores the price, saying
    /// so only in `warnings` (developers' "Automatizaciones de precios").
    fn price_not_applied(&self) -> Option<MarketError> {
        let w = self
            .warnings
            .iter()
            .find(|w| w.code == "item.price.not_modifiable")?;
        Some(MarketError::Rejected {
            status: 400,
            message: format!(
                "MercadoLibre did not apply the price: {} ({}); the item's other changes were \
                 applied",
                w.message, w.code
            ),
        })
    }
}

#[derive(Deserialize)]
struct RemotePicture {
    id: String,
}

#[derive(Deserialize)]
struct RemoteVariation {
    id: u64,
    #[serde(default)]
    attributes: Vec<RemoteAttribute>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    available_quantity: Option<i64>,
}

#[derive(Deserialize)]
struct RemoteAttribute {
    id: String,
    #[serde(default)]
    value_name: Option<String>,
}

/// An item as a listing reads it: its id and its SELLER_SKU attribute.
#[derive(Deserialize)]
struct ListedItem {
    id: String,
    #[serde(default)]
    attributes: Vec<RemoteAttribute>,
}

#[derive(Deserialize, Default)]
struct Paging {
    #[serde(default)]
    total: u64,
}

#[derive(Deserialize, Default)]
struct SearchResult {
    #[serde(default)]
    paging: Paging,
    results: Vec<String>,
}

/// The seller, as `GET /users/{id}` answers it: its tags tell its listing model.
#[derive(Deserialize, Default)]
struct User {
    #[serde(default)]
    tags: Vec<String>,
}

/// The tag of a seller on the User Products model.
const USER_PRODUCT_SELLER: &str = "user_product_seller";

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: String,
}

/// MercadoLibre's errors: `{"message", "error", "status", "cause": [{"code", "message"}]}`.
#[derive(Deserialize)]
struct MlError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    cause: Vec<MlCause>,
}

#[derive(Deserialize)]
struct MlCause {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Turns MercadoLibre's error body into one readable line: the message, then each cause's
/// message with its code.
pub fn message_of(body: &[u8]) -> Option<String> {
    let e: MlError = serde_json::from_slice(body).ok()?;
    let head = e
        .message
        .or(e.error_description)
        .or_else(|| e.error.clone())?;
    let causes: Vec<String> = e
        .cause
        .iter()
        .filter_map(|c| match (&c.message, &c.code) {
            (Some(m), Some(code)) => Some(format!("{m} ({code})")),
            (Some(m), None) => Some(m.clone()),
            (None, Some(code)) => Some(code.clone()),
            (None, None) => None,
        })
        .collect();
    Some(if causes.is_empty() {
        head
    } else {
        format!("{head}: {}", causes.join("; "))
    })
}

/// Whether MercadoLibre refused a change because the item is closed.
fn is_closed_refusal(body: &[u8]) -> bool {
    serde_json::from_slice::<MlError>(body).is_ok_and(|e| {
        e.cause
            .iter()
            .any(|c| c.code.as_deref() == Some("item.status.not_modifiable"))
    })
}

fn variation_sku(v: &RemoteVariation) -> Option<&str> {
    seller_sku(&v.attributes)
}

/// The SELLER_SKU among an item's or a variation's attributes.
fn seller_sku(attributes: &[RemoteAttribute]) -> Option<&str> {
    attributes
        .iter()
        .find(|a| a.id == "SELLER_SKU")
        .and_then(|a| a.value_name.as_deref())
}

fn access_token(c: &Credentials) -> Option<String> {
    match c {
        Credentials::Mercadolibre { access_token, .. } => Some(access_token.clone()),
        _ => None,
    }
}

/// The refresh grant: a new access token and a new refresh token for the old refresh token.
struct RefreshGrant {
    url: String,
}

#[async_trait]
impl Refresh for RefreshGrant {
    async fn refresh(&self, gate: &Gate, current: Credentials) -> Result<Credentials, MarketError> {
        let Credentials::Mercadolibre {
            client_id,
            client_secret,
            refresh_token,
            ..
        } = &current
        else {
            return Err(MarketError::Local(
                "the connection has no MercadoLibre credentials".to_string(),
            ));
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("refresh_token", refresh_token.as_str()),
        ];
        let request = gate
            .client()
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = gate.send(request, crate::http::no_quota).await?;
        if !reply.status.is_success() {
            // A refused grant means the seller must authorize the app again: the connection
            // cannot go on, whatever the status code.
            return Err(match classify(reply.status, &reply.body, message_of) {
                e @ MarketError::Transient(_) => e,
                e => MarketError::Auth {
                    status: reply.status.as_u16(),
                    message: format!("the token could not be refreshed: {e}"),
                },
            });
        }
        let answer: TokenAnswer = parse(&reply.body)?;
        Ok(Credentials::Mercadolibre {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
        })
    }
}

impl MercadoLibre {
    pub fn new(connection: &Connection, gate: Gate) -> MercadoLibre {
        let setting = |k: &str, default: &str| {
            connection
                .settings
                .get(k)
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        let base = connection.base_url.trim_end_matches('/').to_string();
        let api = Arc::new(Endpoint::new(
            &base,
            Auth::Bearer {
                token_of: access_token,
                refresh: Arc::new(RefreshGrant {
                    url: format!("{base}/oauth/token"),
                }),
            },
            gate,
            message_of,
            crate::http::no_quota,
        ));
        MercadoLibre {
            reads: Gatherer::new(MULTIGET, multiget(Arc::clone(&api))).planned(
                api.gate(),
                |_| Request::new("GET", "/items").batched("ids"),
                |id| serde_json::json!({ "id": id }),
            ),
            api,
            user_id: setting("user_id", ""),
            category_id: setting("category_id", ""),
            currency_id: setting("currency_id", ""),
            listing_type_id: setting("listing_type_id", DEFAULT_LISTING_TYPE),
            condition: setting("condition", DEFAULT_CONDITION),
            // Checked when the connection was stored.
            default_attributes: connection
                .settings
                .get("attributes")
                .and_then(|a| default_attributes(a).ok())
                .unwrap_or_default(),
            listing: tokio::sync::Mutex::default(),
            categories: std::sync::Mutex::default(),
            reading_category: tokio::sync::Mutex::default(),
            site_id: setting("site_id", ""),
            seller: tokio::sync::OnceCell::new(),
            model_read: tokio::sync::OnceCell::new(),
            checked_categories: std::sync::Mutex::default(),
        }
    }

    /// A category's attributes, read once a run (`GET /categories/{id}/attributes`, each
    /// with its `tags`).
    async fn category(&self, id: &str, via: Via) -> Result<Arc<Category>, MarketError> {
        let _one_at_a_time = self.reading_category.lock().await;
        let path = format!("/categories/{id}/attributes");
        if via == Via::Check {
            if let Some(known) = lock(&self.checked_categories).get(id).cloned() {
                return Ok(known);
            }
            let listed: Vec<CategoryAttribute> =
                self.api.call(self.request(Method::GET, &path)).await?;
            let category = Arc::new(Category::of(listed));
            lock(&self.checked_categories).insert(id.to_string(), Arc::clone(&category));
            return Ok(category);
        }
        if let Some(known) = self.known_category(id) {
            return Ok(known);
        }
        let answer: CategoryAnswer = self
            .api
            .exchange(Operation::Read, self.request(Method::GET, &path))
            .await?;
        let category = match answer.0 {
            Some(listed) => Arc::new(Category::of(listed)),
            None => lock(&self.checked_categories)
                .get(id)
                .cloned()
                .unwrap_or_else(|| Arc::new(Category::planned())),
        };
        lock(&self.categories).insert(id.to_string(), Arc::clone(&category));
        Ok(category)
    }

    /// A category read already this run.
    fn known_category(&self, id: &str) -> Option<Arc<Category>> {
        lock(&self.categories).get(id).cloned()
    }

    /// The product's category: its own, else the connection's.
    fn category_of<'a>(&'a self, p: &'a Product) -> &'a str {
        own(p, |m| &m.category_id).unwrap_or(&self.category_id)
    }

    /// The product's listing type: its own, else the connection's.
    fn listing_type_of<'a>(&'a self, p: &'a Product) -> &'a str {
        own(p, |m| &m.listing_type_id).unwrap_or(&self.listing_type_id)
    }

    /// Why the product's own category or listing type cannot be used on the connection's site,
    /// if it cannot (a category of another site, Uruguay's missing gold_pro): said before
    /// anything is created.
    fn listing_refusal(&self, p: &Product) -> Option<String> {
        let category = self.category_of(p);
        if !category.starts_with(self.site_id.as_str()) {
            return Some(format!(
                "the MercadoLibre category {category} is not of site {}, where this connection \
                 lists",
                self.site_id
            ));
        }
        let listing = self.listing_type_of(p);
        let offered = listing_types(&self.site_id);
        if !offered.contains(&listing) {
            return Some(format!(
                "the listing type {listing} is not offered on site {} (it offers {})",
                self.site_id,
                offered.join(", ")
            ));
        }
        None
    }

    /// What a classic item carries of its category's attributes: its own, and GTIN when every
    /// variation carries one ("Check the attribute is present in the attributes list or in all
    /// variation's attributes_combination or attributes", MercadoLibre's
    /// `item.attributes.missing_required`).
    fn classic_attributes<'a>(&'a self, p: &'a Product) -> Vec<Attribute<'a>> {
        let mut attributes = item_attributes(p, &self.default_attributes);
        // Every variant's barcode, when each has one (none for a product without variants).
        let codes: Option<Vec<&str>> = p.variants.iter().map(|v| v.barcode.as_deref()).collect();
        if let Some([first, ..]) = codes.as_deref() {
            if !attributes.iter().any(|a| a.id == "GTIN") {
                attributes.push(Attribute {
                    id: "GTIN".into(),
                    value_name: first,
                });
            }
        }
        attributes
    }

    /// Reads the category's attributes when a product is about to be created or has variants.
    /// A create missing an attribute the category requires is refused before it is sent,
    /// naming what is missing (MercadoLibre would answer `item.attributes.missing_required`);
    /// `creates` are the attributes of each item the product would be created as. A product
    /// with an option none of the `allow_variations` attributes names (by id or name, in any
    /// case) is refused, since MercadoLibre would ignore it and could find two variations
    /// alike.
    async fn know_category(
        &self,
        p: &Product,
        creates: &[Vec<Attribute<'_>>],
        via: Via,
    ) -> Result<(), MarketError> {
        if p.variants.is_empty() && creates.is_empty() {
            return Ok(());
        }
        let category = self.category(self.category_of(p), via).await?;
        if category.planned {
            return Ok(());
        }
        let mut missing: Vec<String> = Vec::new();
        for attributes in creates {
            for m in category.missing(attributes) {
                if !missing.contains(&m) {
                    missing.push(m);
                }
            }
        }
        if !missing.is_empty() {
            return Err(MarketError::Rejected {
                status: 400,
                message: format!(
                    "MercadoLibre's category {} requires {}: give the product a brand, a \
                     barcode, or marketplaces.mercadolibre.attributes (nothing was sent)",
                    self.category_of(p),
                    missing.join(", ")
                ),
            });
        }
        let attrs = &category.variations;
        let options = p.variants.iter().flat_map(|v| v.options.keys());
        for option in options {
            if attribute_of(attrs, option).is_none() {
                let ids: Vec<&str> = attrs.iter().map(|(id, _)| id.as_str()).collect();
                return Err(MarketError::Rejected {
                    status: 400,
                    message: format!(
                        "MercadoLibre's category {} tells variations apart by {}; the option \
                         {option:?} is none of them",
                        self.category_of(p),
                        if ids.is_empty() {
                            "no attribute (it takes no variations)".to_string()
                        } else {
                            ids.join(", ")
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether the seller is on the User Products model, asked once a run (`GET /users/{id}`,
    /// tag `user_product_seller`: "Dichos sellers podrás identificarlo a través del tag
    /// user_product_seller en el API de users", developers' "Precio por variación"). Sites
    /// move sellers to it progressively, so it is asked again by each run, not kept.
    async fn user_products(&self) -> Result<bool, MarketError> {
        let path = format!("/users/{}", self.user_id);
        self.seller
            .get_or_try_init(|| async {
                let request = self.request(Method::GET, &path);
                let user: User = self.api.exchange(Operation::Read, request).await?;
                let tagged = user.tags.iter().any(|t| t == USER_PRODUCT_SELLER);
                // A plan's read answers nothing: the model is what `prepare_plan` read (a plan
                // made without it is a classic seller's).
                Ok::<_, MarketError>(self.model_read.get().copied().unwrap_or(tagged))
            })
            .await
            .copied()
    }

    /// The id of the attribute of the product's category an option names, once the category
    /// was read; a plan, which reads nothing, names it by a placeholder.
    fn attribute_id(&self, p: &Product, option: &str) -> String {
        match self
            .known_category(self.category_of(p))
            .filter(|c| !c.planned)
        {
            Some(category) => attribute_of(&category.variations, option)
                .unwrap_or(option)
                .to_string(),
            None => format!("{{attribute {option}}}"),
        }
    }

    /// A page of the seller's items (ids only), and how many there are in all.
    async fn list_page(&self, offset: u64) -> Result<SearchResult, MarketError> {
        let path = format!("/users/{}/items/search", self.user_id);
        self.api
            .exchange(
                Operation::Read,
                self.request(Method::GET, &path)
                    .query(&[("limit", LIST_PAGE), ("offset", offset)]),
            )
            .await
    }

    /// The seller's whole item list read (after its first page), then its items 20 at a time
    /// by multiget: each item's SELLER_SKU, by the item holding it.
    async fn list_all(
        &self,
        total: u64,
        first: &[String],
    ) -> Result<std::collections::HashMap<String, String>, MarketError> {
        let mut ids = first.to_vec();
        let mut offset = LIST_PAGE;
        while offset < total.min(LIST_REACH) {
            ids.extend(self.list_page(offset).await?.results);
            offset += LIST_PAGE;
        }
        let mut skus = std::collections::HashMap::new();
        for some in ids.chunks(MULTIGET) {
            for body in items(&self.api, some).await?.into_values() {
                let Ok(item) = serde_json::from_value::<ListedItem>(body) else {
                    continue;
                };
                if let Some(sku) = seller_sku(&item.attributes).filter(|s| !s.is_empty()) {
                    skus.entry(sku.to_string()).or_insert(item.id);
                }
            }
        }
        Ok(skus)
    }

    /// The item holding `sku` in the seller's listing, when the run read it whole.
    async fn listed_item(&self, sku: &str) -> Option<String> {
        let listing = self.listing.lock().await;
        listing.skus.as_ref()?.get(sku).cloned()
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    /// The id of the seller's item holding `sku`, if one does.
    async fn find_by_sku(&self, sku: &str) -> Result<Option<String>, MarketError> {
        Ok(self.holders(sku).await?.into_iter().next())
    }

    /// Every item of the seller holding `sku` (its search by `seller_sku`).
    async fn holders(&self, sku: &str) -> Result<Vec<String>, MarketError> {
        let path = format!("/users/{}/items/search", self.user_id);
        let found: SearchResult = self
            .api
            .exchange(
                Operation::Read,
                self.request(Method::GET, &path)
                    .query(&[("seller_sku", sku)]),
            )
            .await?;
        Ok(found.results)
    }

    fn pictures<'a>(p: &'a Product, info: &MarketplaceInfo) -> Vec<Picture<'a>> {
        let mut images: Vec<_> = p.images.iter().collect();
        images.sort_by_key(|i| i.position);
        images
            .into_iter()
            .map(|i| match info.image_id(&i.url) {
                Some(id) => Picture {
                    id: Some(id.to_string()),
                    source: None,
                },
                None => Picture {
                    id: None,
                    source: Some(&i.url),
                },
            })
            .collect()
    }

    fn variations<'a>(
        &self,
        p: &'a Product,
        offer: &Offer,
        info: &MarketplaceInfo,
        creating: bool,
    ) -> Vec<VariationBody<'a>> {
        let currency = self.currency_id.as_str();
        let mut images: Vec<_> = p.images.iter().collect();
        images.sort_by_key(|i| i.position);
        p.variants
            .iter()
            .map(|v| (v, info.variant_id(&v.sku).and_then(|id| id.parse().ok())))
            .map(|(v, id)| VariationBody {
                id,
                price: in_currency(currency, offer.variant(v).0),
                available_quantity: v.stock,
                attribute_combinations: v
                    .options
                    .iter()
                    .map(|(name, value)| Combination {
                        id: self.attribute_id(p, name),
                        value_name: value,
                    })
                    .collect(),
                attributes: std::iter::once(Attribute {
                    id: "SELLER_SKU".into(),
                    value_name: &v.sku,
                })
                .chain(v.barcode.as_deref().map(|code| Attribute {
                    id: "GTIN".into(),
                    value_name: code,
                }))
                .collect(),
                picture_ids: if creating || id.is_none() {
                    images
                        .iter()
                        .map(|i| info.image_id(&i.url).unwrap_or(&i.url).to_string())
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    fn adopt(p: &Product, info: &mut MarketplaceInfo, remote: &RemoteItem) {
        info.product_id = Some(remote.id.to_string());
        if let Some(status) = &remote.status {
            info.remote_status = Some(status.clone());
        }
        // Pictures come back in the order they were given.
        info.images_by_position(p, remote.pictures.iter().map(|i| Some(i.id.clone())));
        for v in &remote.variations {
            if let Some(sku) = variation_sku(v) {
                if p.variants.iter().any(|pv| pv.sku == sku) {
                    info.set_variant_id(sku, v.id.to_string());
                }
            }
        }
    }

    /// MercadoLibre has no compare-at price: a sale is the item's price itself.
    fn price_update(
        p: &Product,
        offer: &Offer,
        info: &MarketplaceInfo,
        currency: &str,
    ) -> PriceUpdate {
        PriceUpdate {
            price: in_currency(currency, offer.price),
            variations: p
                .variants
                .iter()
                .filter_map(|v| {
                    let id = info.variant_id(&v.sku)?.parse().ok()?;
                    Some(VariationPrice {
                        id,
                        price: in_currency(currency, offer.variant(v).0),
                    })
                })
                .collect(),
        }
    }

    fn item_body<'a>(
        &'a self,
        p: &'a Product,
        offer: &Offer,
        info: &MarketplaceInfo,
    ) -> ItemBody<'a> {
        ItemBody {
            title: Some(&p.name),
            price: in_currency(&self.currency_id, offer.price),
            available_quantity: p.stock,
            variations: self.variations(p, offer, info, true),
            ..self.new_item(p, info)
        }
    }

    /// What every new item of the connection carries: where and how it is listed, the
    /// product's description, pictures and attributes; no title, price or stock yet.
    fn new_item<'a>(&'a self, p: &'a Product, info: &MarketplaceInfo) -> ItemBody<'a> {
        ItemBody {
            title: None,
            family_name: None,
            category_id: self.category_of(p),
            price: 0.0,
            currency_id: &self.currency_id,
            available_quantity: 0,
            buying_mode: "buy_it_now",
            listing_type_id: self.listing_type_of(p),
            condition: &self.condition,
            description: Description {
                plain_text: &p.description,
            },
            pictures: Self::pictures(p, info),
            attributes: item_attributes(p, &self.default_attributes),
            variations: Vec::new(),
        }
    }

    fn item_update<'a>(
        &self,
        p: &'a Product,
        offer: &Offer,
        info: &MarketplaceInfo,
    ) -> ItemUpdate<'a> {
        ItemUpdate {
            price: in_currency(&self.currency_id, offer.price),
            available_quantity: p.variants.is_empty().then_some(p.stock),
            pictures: Self::pictures(p, info),
            variations: self.variations(p, offer, info, false),
        }
    }

    async fn create(
        &self,
        p: &Product,
        offer: &Offer,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let body = self.item_body(p, offer, info);
        let request = self.request(Method::POST, "/items").json(&body);
        create_once(
            info,
            checkpoint,
            self.api.exchange::<RemoteItem>(Operation::Create, request),
            |info, remote| Self::adopt(p, info, &remote),
        )
        .await
    }

    /// The item's PUT, which does `operation` to the product.
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
                "the product has no MercadoLibre item yet".to_string(),
            ));
        };
        let remote = self
            .put_item(operation, &id, body, info, checkpoint)
            .await?;
        Self::adopt(p, info, &remote);
        if let Some(refused) = remote.price_not_applied() {
            checkpoint(info).await?;
            return Err(refused);
        }
        checkpoint(info).await
    }

    /// One item's PUT, answered by the item. An item MercadoLibre refuses as closed (by the
    /// seller, or a delete cut short) is remembered as closed, so that no later action sends
    /// it anything but a delete.
    /// (`operation` says what the PUT does to the product; a plan takes its answer for the
    /// item, unchanged.)
    async fn put_item<B: Serialize>(
        &self,
        operation: Operation,
        id: &str,
        body: &B,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<RemoteItem, MarketError> {
        let answer = self
            .api
            .exchange_raw(
                operation,
                self.request(Method::PUT, &format!("/items/{id}"))
                    .json(body),
                RemoteItem::planned(id),
            )
            .await?;
        match answer {
            Ok(remote) => Ok(remote),
            Err((e, body)) => {
                if is_closed_refusal(&body) {
                    info.remote_status = Some("closed".to_string());
                    checkpoint(info).await?;
                }
                Err(e)
            }
        }
    }

    fn closed_error(info: &MarketplaceInfo) -> MarketError {
        MarketError::Rejected {
            status: 400,
            message: format!(
                "MercadoLibre item {} is closed, and MercadoLibre never reopens a closed \
                 item; relist it as a new item",
                info.product_id.as_deref().unwrap_or("?")
            ),
        }
    }

    /// Publish (`data` false) reactivates a listed item; republish (`data` true) sends its data
    /// again. Either creates the item when it is not listed yet, and neither touches a closed
    /// item, which MercadoLibre never reopens.
    async fn publish(
        &self,
        p: &Product,
        offer: &Offer,
        info: &mut MarketplaceInfo,
        data: Data,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        // A create, or a republish, sends the prices (a publish of a listed item, its status).
        if info.product_id.is_none() || !matches!(data, Data::Status) {
            if let Some(why) = one_price(p) {
                return Err(refused(why));
            }
        }
        // A create carries the category's required attributes; a create, or a republish of
        // the data, tells its variations by the category's ids. (A closed item was refused by
        // `apply` before anything else.)
        if info.product_id.is_none() {
            if let Some(why) = self.listing_refusal(p) {
                return Err(refused(why));
            }
            let creates = [self.classic_attributes(p)];
            self.know_category(p, &creates, Via::Protocol).await?;
            return self.create(p, offer, info, checkpoint).await;
        }
        if matches!(data, Data::All) {
            self.know_category(p, &[], Via::Protocol).await?;
        }
        match data {
            Data::Status => {
                let active = StatusBody { status: "active" };
                self.put(Operation::Status, p, info, &active, checkpoint)
                    .await
            }
            Data::Prices => {
                let body = Self::price_update(p, offer, info, &self.currency_id);
                self.put(Operation::Update, p, info, &body, checkpoint)
                    .await
            }
            Data::All => {
                let Some(id) = info.product_id.clone() else {
                    return Ok(());
                };
                let body = self.item_update(p, offer, info);
                let remote = self
                    .put_item(Operation::Update, &id, &body, info, checkpoint)
                    .await?;
                Self::adopt(p, info, &remote);
                checkpoint(info).await?;
                let renamed = self.retitle(&id, p, &remote, Naming::Title).await;
                self.replace_description(p, &id).await?;
                match remote.price_not_applied() {
                    Some(refused) => Err(refused),
                    None => renamed,
                }
            }
        }
    }

    /// Gives a listed item the product's name, when it has another and no sales: MercadoLibre
    /// keeps the title of an item that has sold ("you will not be able to change the title if
    /// you have already made a sale", developers' "Best practices for listing items"), and a
    /// User Products item's family name likewise ("únicamente cuando ninguna de las
    /// condiciones de venta asociadas al User Product tenga ventas"). An item that has sold
    /// keeps its name, and the product says so; its other changes stand.
    async fn retitle(
        &self,
        id: &str,
        p: &Product,
        remote: &RemoteItem,
        naming: Naming,
    ) -> Result<(), MarketError> {
        let (field, shown) = match naming {
            Naming::Title => ("title", &remote.title),
            Naming::Family => ("family_name", &remote.family_name),
        };
        if shown.as_deref().is_none_or(|name| name == p.name) {
            return Ok(());
        }
        let sold = remote.sold_quantity.unwrap_or(0);
        if sold > 0 {
            return Err(MarketError::Rejected {
                status: 400,
                message: format!(
                    "MercadoLibre keeps the {} of an item that has sold ({id} sold {sold}): it \
                     still shows {:?}; the item's other changes were applied",
                    field.replace('_', " "),
                    shown.as_deref().unwrap_or_default()
                ),
            });
        }
        let body = serde_json::json!({ field: p.name });
        let request = self
            .request(Method::PUT, &format!("/items/{id}"))
            .json(&body);
        self.api.exchange_ignoring(Operation::Update, request).await
    }

    /// An item's description changes only through its own resource ("Descripción de
    /// artículos": `PUT /items/{id}/description?api_version=2` replaces an existing one; the
    /// item's PUT does not change it), so a republish of the data sends it there after the
    /// item.
    async fn replace_description(&self, p: &Product, id: &str) -> Result<(), MarketError> {
        let request = self
            .request(Method::PUT, &format!("/items/{id}/description"))
            .query(&[("api_version", "2")])
            .json(&Description {
                plain_text: &p.description,
            });
        self.api.exchange_ignoring(Operation::Update, request).await
    }

    async fn delete(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if info.product_id.is_some() {
            if !is_closed(info) {
                let closed = StatusBody { status: "closed" };
                self.put(Operation::Delete, p, info, &closed, checkpoint)
                    .await?;
            }
            let deleted = DeletedBody { deleted: "true" };
            match self
                .put(Operation::Delete, p, info, &deleted, checkpoint)
                .await
            {
                Ok(()) | Err(MarketError::Rejected { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        *info = MarketplaceInfo::default();
        info.remote_status = Some("deleted".to_string());
        checkpoint(info).await
    }
}

/// Which name of an item carries the product's name: a classic item's title, a User Products
/// item's family name (MercadoLibre makes its title from it).
#[derive(Clone, Copy)]
enum Naming {
    Title,
    Family,
}

/// What a publish of a listed item sends.
#[derive(Clone, Copy)]
enum Data {
    /// Its status alone (a paused item goes back on sale).
    Status,
    /// Its prices alone (a republish where nothing else changed).
    Prices,
    /// Everything that can change once listed.
    All,
}

#[async_trait]
impl Marketplace for MercadoLibre {
    fn finds_listed(&self) -> bool {
        true
    }

    async fn reconcile(
        &self,
        _: Action,
        p: &Product,
        info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError> {
        if !classic_listing(info) && self.user_products().await? {
            return self.up_reconcile(p, info).await;
        }
        let id = match info.product_id.clone() {
            Some(id) => Some(id),
            None => self.find_by_sku(&p.sku).await?,
        };
        if let Some(id) = id {
            let remote: RemoteItem = self
                .api
                .exchange_planned(
                    Operation::Read,
                    self.request(Method::GET, &format!("/items/{id}"))
                        .query(&[ALL_ATTRIBUTES]),
                    0.0,
                    RemoteItem::planned(&id),
                )
                .await?;
            Self::adopt(p, info, &remote);
        }
        Ok(())
    }

    /// A finished product is a closed item; a sale shows as the item's price itself.
    async fn drift(
        &self,
        p: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        if !classic_listing(info) && self.user_products().await? {
            return self.up_drift(p, offer, status, info).await;
        }
        let found_by_sku = || self.find_by_sku(&p.sku);
        let Some(id) = info.product_id.clone() else {
            return Ok(drift::absent(None, found_by_sku().await?));
        };
        let item = match self
            .reads
            .get_as::<RemoteItem>(id.clone(), "a multiget item")
            .await?
        {
            Some(item) => item,
            None => return Ok(drift::absent(Some(&id), found_by_sku().await?)),
        };
        if item.sub_status.iter().any(|s| s == "deleted") {
            return Ok(drift::absent(Some(&id), found_by_sku().await?));
        }
        let expected = Shown {
            status: Some(
                match status {
                    ProductStatus::Paused => "paused",
                    ProductStatus::Finished => "closed",
                    _ => "active",
                }
                .to_string(),
            ),
            price: Some(in_currency(&self.currency_id, offer.price)),
            stock: p.variants.is_empty().then_some(p.stock),
            variants: Some(
                drift::sent_variants(p, &offer)
                    .into_iter()
                    .map(|v| ShownVariant {
                        price: v.price.map(|x| in_currency(&self.currency_id, x)),
                        ..v
                    })
                    .collect(),
            ),
            images: Some(p.images.len() as u32),
        };
        let shown = Shown {
            status: item.status.clone(),
            price: item.price,
            stock: if p.variants.is_empty() {
                item.available_quantity
            } else {
                None
            },
            variants: Some(
                item.variations
                    .iter()
                    .map(|v| ShownVariant {
                        sku: variation_sku(v).unwrap_or_default().to_string(),
                        price: v.price,
                        stock: v.available_quantity,
                    })
                    .collect(),
            ),
            images: Some(item.pictures.len() as u32),
        };
        let mut found = drift::compare(&expected, &shown);
        // Items a create that went unanswered may have made beside this one.
        if info.unanswered_creates > 0 {
            let held = self.holders(&p.sku).await?;
            found.extend(drift::copies(&p.sku, Some(&id), held));
        }
        Ok(found)
    }

    /// MercadoLibre checks a new item's body without listing it; an item already listed has
    /// nothing to check there (its updates have no such endpoint).
    async fn validate(
        &self,
        action: Action,
        p: &Product,
        offer: Offer,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Problem>, MarketError> {
        if !matches!(action, Action::Publish | Action::Republish) {
            return Ok(Vec::new());
        }
        if self.user_products().await? {
            return self.up_validate(p, &offer, info).await;
        }
        if info.product_id.is_some() {
            return Ok(Vec::new());
        }
        let creates = [self.classic_attributes(p)];
        let checked = self.know_category(p, &creates, Via::Check).await;
        if let Err(MarketError::Rejected { message, .. }) = checked {
            return Ok(vec![Problem::new("category_attributes", message)]);
        }
        let body = self.item_body(p, &offer, info);
        let request = self.request(Method::POST, "/items/validate").json(&body);
        match self.api.call_ignoring(request).await {
            Ok(()) => Ok(Vec::new()),
            Err(MarketError::Rejected { message, .. }) => {
                Ok(vec![Problem::new("marketplace_refused", message)])
            }
            Err(e) => Err(e),
        }
    }

    fn read_batch_size(&self) -> usize {
        self.reads.size()
    }

    /// MercadoLibre's item search takes one `seller_sku` a request, and a seller's item list
    /// gives ids without SKUs (read again 20 at a time by multiget). The list's first page, once
    /// a run, tells how many items the seller has: none, and nothing is listed; few enough that
    /// reading them all takes no more requests than searching this chunk's SKUs, and they are
    /// read and kept for the run; else each SKU is searched.
    async fn find_listed(
        &self,
        products: &[&Product],
    ) -> Result<std::collections::HashMap<domain::Id, String>, MarketError> {
        let user_products = self.user_products().await?;
        let mut listing = self.listing.lock().await;
        if listing.skus.is_none() {
            let (total, first) = match &listing.first {
                Some(first) => first.clone(),
                None => {
                    let page = self.list_page(0).await?;
                    let first = (page.paging.total, page.results);
                    listing.first = Some(first.clone());
                    first
                }
            };
            let reads = total.saturating_sub(LIST_PAGE).div_ceil(LIST_PAGE)
                + total.div_ceil(MULTIGET as u64);
            // What searching costs instead: a SKU each, a User Products seller's product an
            // item's SKU each.
            let searches: usize = match user_products {
                true => products
                    .iter()
                    .map(|p| user_products::Item::of(p).len())
                    .sum(),
                false => products.len(),
            };
            if total == 0 || (total <= LIST_REACH && reads <= searches as u64) {
                listing.skus = Some(self.list_all(total, &first).await?);
            }
        }
        if let Some(skus) = &listing.skus {
            return Ok(match user_products {
                true => Self::up_in_listing(skus, products),
                false => super::listed::in_listing(skus, products),
            });
        }
        drop(listing);
        if user_products {
            return self.up_one_by_one(products).await;
        }
        super::listed::one_by_one(products, |sku| {
            Box::pin(async move { self.find_by_sku(&sku).await })
        })
        .await
    }

    /// A dry run's read of the seller's model, sent (a read without effect): the plan's own
    /// read of it answers nothing.
    async fn prepare_plan(&self) -> Result<(), MarketError> {
        let path = format!("/users/{}", self.user_id);
        let user: User = self.api.call(self.request(Method::GET, &path)).await?;
        let tagged = user.tags.iter().any(|t| t == USER_PRODUCT_SELLER);
        self.model_read.set(tagged).ok();
        Ok(())
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
        let closed = is_closed(info);
        if closed
            && info.product_id.is_some()
            && matches!(action, Action::Publish | Action::Republish)
        {
            // Whatever the seller's model: MercadoLibre never reopens a closed item.
            return Err(Self::closed_error(info));
        }
        let sends =
            info.product_id.is_some() || matches!(action, Action::Publish | Action::Republish);
        if sends && !classic_listing(info) && self.user_products().await? {
            return match action {
                Action::Publish => {
                    self.up_publish(product, &offer, info, Data::Status, checkpoint)
                        .await
                }
                Action::Republish => {
                    let data = if prices_only { Data::Prices } else { Data::All };
                    self.up_publish(product, &offer, info, data, checkpoint)
                        .await
                }
                Action::Pause => self.up_pause(product, info, checkpoint).await,
                Action::Finish => self.up_finish(product, info, checkpoint).await,
                Action::Delete => self.up_delete(product, info, checkpoint).await,
                Action::Drift | Action::Reconcile => Err(READS_ONLY.clone()),
            };
        }
        match action {
            Action::Publish => {
                self.publish(product, &offer, info, Data::Status, checkpoint)
                    .await
            }
            Action::Republish => {
                let data = if prices_only { Data::Prices } else { Data::All };
                self.publish(product, &offer, info, data, checkpoint).await
            }
            Action::Pause => {
                let paused = StatusBody { status: "paused" };
                self.put(Operation::Status, product, info, &paused, checkpoint)
                    .await
            }
            Action::Finish => {
                // A sale shown as the item's own price: the regular price comes back first,
                // since a closed item can no longer be changed.
                let on_sale = info.sent.is_some_and(|s| s.on_sale);
                let open = !is_closed(info);
                if on_sale && open && info.product_id.is_some() {
                    let regular = Offer::regular(product);
                    let body = Self::price_update(product, &regular, info, &self.currency_id);
                    self.put(Operation::Status, product, info, &body, checkpoint)
                        .await?;
                    info.sent = Some(Sent::of(product, &regular));
                    checkpoint(info).await?;
                }
                let closed = StatusBody { status: "closed" };
                self.put(Operation::Status, product, info, &closed, checkpoint)
                    .await
            }
            Action::Delete => self.delete(product, info, checkpoint).await,
            Action::Drift | Action::Reconcile => Err(READS_ONLY.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_classic_when_its_variants_are_variations_not_items() {
        let listing = |ids: &[&str]| MarketplaceInfo {
            product_id: Some("MLA1".into()),
            variant_ids: ids
                .iter()
                .enumerate()
                .map(|(n, id)| (format!("V-{n}"), id.to_string()))
                .collect(),
            ..MarketplaceInfo::default()
        };
        assert!(classic_listing(&listing(&["174120000", "174120001"])));
        assert!(
            !classic_listing(&listing(&["MLA2", "MLA3"])),
            "user products"
        );
        assert!(
            !classic_listing(&listing(&[])),
            "no variants: one item either way"
        );
    }

    #[test]
    fn the_cause_list_becomes_one_readable_line() {
        let body = br#"{"message":"Validation error","error":"validation_error","status":400,
            "cause":[{"code":"item.title.length.invalid","message":"Title too long"},
                     {"code":"item.price.invalid","message":"Bad price"}]}"#;
        assert_eq!(
            message_of(body).as_deref(),
            Some("Validation error: Title too long (item.title.length.invalid); Bad price (item.price.invalid)")
        );
        assert_eq!(
            message_of(br#"{"message":"invalid access token","error":"unauthorized","status":401,"cause":[]}"#).as_deref(),
            Some("invalid access token")
        );
        assert_eq!(
            message_of(br#"{"error":"invalid_grant","error_description":"it was already used"}"#)
                .as_deref(),
            Some("it was already used")
        );
    }
}
