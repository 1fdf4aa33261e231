//! The Shopify simulator: the Admin REST API under `/admin/api/{version}/`, authenticated by
//! `X-Shopify-Access-Token`; products with their variants, options and images in one body;
//! statuses active, draft and archived; the leaky bucket (40 requests, leaking 2 a second on a
//! standard plan) announced in `X-Shopify-Shop-Api-Call-Limit` on every answer and answered
//! with 429 and `Retry-After` when full; Shopify's error shapes (`{"errors": {"field":
//! ["message"]}}` and `{"errors": "Not Found"}`); and the GraphQL Admin API with its cost-based
//! bucket (`shopify_graphql.rs`), which has no part in the REST bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use crate::sim::{Knobs, SimApi, SimRequest, SimResponse, SimStats};

mod graphql;
pub use graphql::CostBucket;

#[derive(Debug, Clone)]
pub struct ShopifyProduct {
    pub id: u64,
    pub title: String,
    pub body_html: String,
    pub status: String,
    pub options: Vec<Value>,
    pub variants: Vec<ShopifyVariant>,
    /// (image id, src, position)
    pub images: Vec<(u64, String, u64)>,
    /// The publications (sales channels) the product is published on. A product made through
    /// the GraphQL API is on none until `publishablePublish` (shopify.dev, `publishablePublish`:
    /// "For products to be visible in a channel, they must have an active ProductStatus"; a
    /// product is published to a channel by this mutation, not by its status).
    pub published_on: BTreeSet<u64>,
    /// `vendor` (`ProductSetInput.vendor`): the product's brand.
    pub vendor: String,
    /// Its metafields: (namespace, key, value).
    pub metafields: Vec<(String, String, String)>,
}

impl ShopifyProduct {
    /// A new product as Shopify makes one: active, with nothing else set yet.
    pub fn new(id: u64) -> ShopifyProduct {
        ShopifyProduct {
            id,
            title: String::new(),
            body_html: String::new(),
            status: "active".to_string(),
            options: Vec::new(),
            variants: Vec::new(),
            images: Vec::new(),
            published_on: BTreeSet::new(),
            vendor: String::new(),
            metafields: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShopifyVariant {
    pub id: u64,
    pub sku: String,
    pub price: String,
    /// The price shown struck through during a sale (`null` when none).
    pub compare_at_price: Option<String>,
    pub option1: Option<String>,
    pub option2: Option<String>,
    pub option3: Option<String>,
    /// Whether the variant's inventory item is tracked, and its available quantity at each
    /// location where it is stocked.
    pub tracked: bool,
    pub available: BTreeMap<u64, i64>,
    /// `barcode` (`ProductVariantSetInput.barcode`, deprecated from 2027-01 for `barcodes`,
    /// which exists from 2026-10 only; a variant input cannot set both).
    pub barcode: Option<String>,
}

impl ShopifyVariant {
    /// A new variant as Shopify makes one: no price yet, untracked, stocked nowhere.
    pub fn new(id: u64, sku: &str) -> ShopifyVariant {
        ShopifyVariant {
            id,
            sku: sku.to_string(),
            price: "0.00".to_string(),
            compare_at_price: None,
            option1: None,
            option2: None,
            option3: None,
            tracked: false,
            available: BTreeMap::new(),
            barcode: None,
        }
    }

    /// `inventoryQuantity`: what is available across the locations, when tracked.
    pub fn inventory_quantity(&self) -> Option<i64> {
        self.tracked.then(|| self.available.values().sum())
    }
}

/// The leaky bucket of an app on a shop.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub size: f64,
    pub leak_per_second: f64,
    /// Whether answers carry `X-Shopify-Shop-Api-Call-Limit` (a proxy may strip it).
    pub announced: bool,
    level: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub fn new(size: u32, leak_per_second: f64) -> Bucket {
        Bucket {
            size: f64::from(size),
            leak_per_second,
            announced: true,
            level: 0.0,
            at: None,
        }
    }

    /// The same bucket behind a proxy that strips its header from the answers.
    pub fn unannounced(mut self) -> Bucket {
        self.announced = false;
        self
    }

    /// Leaks what time let out, then takes one request if there is room.
    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let leaked = now.saturating_duration_since(at).as_secs_f64() * self.leak_per_second;
            self.level = (self.level - leaked).max(0.0);
        }
        self.at = Some(now);
        if self.level + 1.0 > self.size {
            return false;
        }
        self.level += 1.0;
        true
    }

    fn header(&self) -> String {
        format!("{}/{}", self.level.ceil() as u64, self.size as u64)
    }
}

pub struct ShopifySim {
    access_token: String,
    pub bucket: Bucket,
    /// The GraphQL cost bucket (the Standard plan's by default).
    pub cost: CostBucket,
    pub products: BTreeMap<u64, ShopifyProduct>,
    next_id: u64,
    /// The stable API versions the shop serves: each is supported for at least 12 months from
    /// its quarterly release (shopify.dev, "API versioning"), so on 2026-12-07 these four. A
    /// request to an older one is served by the oldest ("Shopify falls forward and responds to
    /// your request with the same behaviour as the oldest supported stable version"), and every
    /// answer names the version that served it in `X-Shopify-API-Version`.
    pub versions: Vec<String>,
    /// The shop's publications (sales channels) by id, with their catalog's title.
    pub publications: Vec<(u64, String)>,
    /// The shop's active locations; the first is the primary one (`location` without an id).
    pub locations: Vec<u64>,
    /// The product metafield definitions of type `id` (namespace, key): a custom id, unique
    /// across the shop's products, by which `productSet` can upsert.
    pub id_definitions: Vec<(String, String)>,
}

fn errors(status: StatusCode, errors: Value) -> SimResponse {
    SimResponse::json(status, json!({ "errors": errors }))
}

fn not_found() -> SimResponse {
    errors(StatusCode::NOT_FOUND, json!("Not Found"))
}

fn unprocessable(field: &str, message: &str) -> SimResponse {
    errors(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ field: [message] }),
    )
}

impl ShopifySim {
    pub fn new(access_token: &str) -> ShopifySim {
        ShopifySim {
            access_token: access_token.to_string(),
            bucket: Bucket::new(40, 2.0),
            cost: CostBucket::new(2000.0, 100.0),
            products: BTreeMap::new(),
            next_id: 7_000_000_000,
            versions: ["2026-01", "2026-04", "2026-07", "2026-10"]
                .map(str::to_string)
                .to_vec(),
            publications: vec![
                (1, "Online Store".to_string()),
                (2, "Point of Sale".to_string()),
            ],
            locations: vec![1],
            id_definitions: Vec::new(),
        }
    }

    /// The version that serves a request to `asked`: itself when supported, the oldest
    /// supported one for an older version, none for a version Shopify has not released.
    fn served(&self, asked: &str) -> Option<String> {
        if self.versions.iter().any(|v| v == asked) || asked == "unstable" {
            return Some(asked.to_string());
        }
        let oldest = self.versions.first()?;
        (is_version(asked) && asked < oldest.as_str()).then(|| oldest.clone())
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The product holding a variant with this SKU.
    pub fn product_by_sku(&self, sku: &str) -> Option<&ShopifyProduct> {
        self.products
            .values()
            .find(|p| p.variants.iter().any(|v| v.sku == sku))
    }

    fn route(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let ["admin", "api", version, rest @ ..] = parts.as_slice() else {
            return not_found();
        };
        if self.served(version).is_none() {
            return not_found();
        }
        let id_of = |s: &str| s.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok());
        match (&req.method, rest) {
            (&Method::POST, ["graphql.json"]) => self.graphql(req, stats, knobs),
            (&Method::POST, ["products.json"]) => self.create(req, stats, knobs),
            (&Method::GET, ["products.json"]) => self.list(req),
            // The Admin REST API's product count (`GET products/count.json`: `{"count": N}`).
            (&Method::GET, ["products", "count.json"]) => {
                SimResponse::json(StatusCode::OK, json!({"count": self.products.len()}))
            }
            (&Method::GET, ["products", id]) => match id_of(id).and_then(|i| self.products.get(&i))
            {
                Some(p) => SimResponse::json(StatusCode::OK, json!({"product": render(p)})),
                None => not_found(),
            },
            (&Method::PUT, ["products", id]) => match id_of(id) {
                Some(i) => self.update(i, req, stats, knobs),
                None => not_found(),
            },
            (&Method::DELETE, ["products", id]) => {
                match id_of(id).and_then(|i| self.products.remove(&i)) {
                    Some(_) => SimResponse::json(StatusCode::OK, json!({})),
                    None => not_found(),
                }
            }
            _ => not_found(),
        }
    }

    /// `GET products.json`: any status, by id, `ids=` naming which (ids not in the shop are
    /// left out), at most `limit` (50 unless given, 250 at most).
    fn list(&self, req: &SimRequest) -> SimResponse {
        let limit = req.number("limit", 50).min(250);
        let wanted: Option<std::collections::BTreeSet<u64>> = req.query.get("ids").map(|ids| {
            ids.split(',')
                .filter_map(|i| i.trim().parse().ok())
                .collect()
        });
        let products: Vec<Value> = self
            .products
            .values()
            .filter(|p| wanted.as_ref().is_none_or(|w| w.contains(&p.id)))
            .take(limit)
            .map(render)
            .collect();
        SimResponse::json(StatusCode::OK, json!({ "products": products }))
    }

    fn create(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let f = match product_of(req) {
            Ok(f) => f,
            Err(r) => return r,
        };
        if f.get("title")
            .and_then(Value::as_str)
            .is_none_or(|t| t.trim().is_empty())
        {
            return unprocessable("title", "can't be blank");
        }
        if let Some(r) = rejected(&f, knobs) {
            return r;
        }
        let id = self.id();
        let mut p = ShopifyProduct::new(id);
        if let Err(r) = self.apply(&mut p, &f, stats) {
            return r;
        }
        let body = json!({"product": render(&p)});
        self.products.insert(id, p);
        SimResponse::json(StatusCode::CREATED, body)
    }

    fn update(
        &mut self,
        id: u64,
        req: &SimRequest,
        stats: &mut SimStats,
        knobs: &Knobs,
    ) -> SimResponse {
        let f = match product_of(req) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let Some(mut p) = self.products.get(&id).cloned() else {
            return not_found();
        };
        if let Some(r) = rejected(&f, knobs) {
            return r;
        }
        if let Err(r) = self.apply(&mut p, &f, stats) {
            return r;
        }
        let body = json!({"product": render(&p)});
        self.products.insert(id, p);
        SimResponse::json(StatusCode::OK, body)
    }

    fn apply(
        &mut self,
        p: &mut ShopifyProduct,
        f: &Map<String, Value>,
        stats: &mut SimStats,
    ) -> Result<(), SimResponse> {
        if let Some(s) = f.get("status") {
            if !matches!(s.as_str(), Some("active" | "draft" | "archived")) {
                return Err(unprocessable("status", "is not included in the list"));
            }
        }
        if let Some(Value::Array(options)) = f.get("options") {
            if options.len() > 3 {
                return Err(unprocessable("options", "are limited to 3"));
            }
        }
        let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(v) = text("title") {
            p.title = v;
        }
        if let Some(v) = text("body_html") {
            p.body_html = v;
        }
        if let Some(v) = text("status") {
            p.status = v;
        }
        if let Some(Value::Array(options)) = f.get("options") {
            p.options = options.clone();
        }
        if let Some(Value::Array(variants)) = f.get("variants") {
            let mut out = Vec::new();
            for v in variants {
                let existing = v
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|id| p.variants.iter().find(|x| x.id == id).cloned());
                let mut var = match existing {
                    Some(var) => var,
                    None => {
                        let sku = v.get("sku").and_then(Value::as_str).unwrap_or("");
                        if !sku.is_empty() {
                            stats.created(sku);
                        }
                        ShopifyVariant::new(self.id(), sku)
                    }
                };
                if let Some(price) = v.get("price") {
                    let parsed = match price {
                        Value::String(s) => s.parse::<f64>().ok(),
                        other => other.as_f64(),
                    };
                    let Some(parsed) = parsed else {
                        return Err(unprocessable("variants.price", "is not a number"));
                    };
                    var.price = format!("{parsed:.2}");
                }
                match v.get("compare_at_price") {
                    None => {}
                    Some(Value::Null) => var.compare_at_price = None,
                    Some(c) => {
                        let parsed = match c {
                            Value::String(s) => s.parse::<f64>().ok(),
                            other => other.as_f64(),
                        };
                        let Some(parsed) = parsed else {
                            return Err(unprocessable(
                                "variants.compare_at_price",
                                "is not a number",
                            ));
                        };
                        var.compare_at_price = Some(format!("{parsed:.2}"));
                    }
                }
                if let Some(s) = v.get("sku").and_then(Value::as_str) {
                    var.sku = s.to_string();
                }
                let opt = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                var.option1 = opt("option1").or(var.option1);
                var.option2 = opt("option2").or(var.option2);
                var.option3 = opt("option3").or(var.option3);
                out.push(var);
            }
            p.variants = out;
        }
        if let Some(Value::Array(images)) = f.get("images") {
            let mut out = Vec::new();
            for (n, img) in images.iter().enumerate() {
                let position = img
                    .get("position")
                    .and_then(Value::as_u64)
                    .unwrap_or(n as u64 + 1);
                if let Some(id) = img.get("id").and_then(Value::as_u64) {
                    if let Some(kept) = p.images.iter().find(|(i, _, _)| *i == id) {
                        out.push((id, kept.1.clone(), position));
                    }
                } else if let Some(src) = img.get("src").and_then(Value::as_str) {
                    out.push((self.id(), src.to_string(), position));
                }
            }
            p.images = out;
        }
        Ok(())
    }
}

fn is_version(v: &str) -> bool {
    let b = v.as_bytes();
    v == "unstable"
        || (b.len() == 7
            && b[4] == b'-'
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[5..].iter().all(u8::is_ascii_digit))
}

fn product_of(req: &SimRequest) -> Result<Map<String, Value>, SimResponse> {
    let Some(body) = req.json() else {
        return Err(errors(
            StatusCode::BAD_REQUEST,
            json!("822: unexpected token at the body"),
        ));
    };
    match body.get("product") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(errors(
            StatusCode::BAD_REQUEST,
            json!({"product": "Required parameter missing or invalid"}),
        )),
    }
}

/// The knob's refusal of a SKU in the body, as a 422 on the variant.
fn rejected(f: &Map<String, Value>, knobs: &Knobs) -> Option<SimResponse> {
    let variants = f.get("variants")?.as_array()?;
    variants.iter().find_map(|v| {
        let sku = v.get("sku")?.as_str()?;
        knobs
            .reject_skus
            .get(sku)
            .map(|m| unprocessable("variants", m))
    })
}

impl SimApi for ShopifySim {
    fn dump(&self) -> Value {
        self.products
            .values()
            .map(|p| {
                let skus: Vec<&str> = p.variants.iter().map(|v| v.sku.as_str()).collect();
                json!({"id": p.id, "skus": skus, "status": p.status, "variants": p.variants.len()})
            })
            .collect()
    }

    fn handle(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let authorized = req
            .headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok())
            == Some(self.access_token.as_str());
        if !authorized {
            return errors(
                StatusCode::UNAUTHORIZED,
                json!(
                    "[API] Invalid API key or access token (unrecognized login or wrong password)"
                ),
            );
        }
        let mut response = self.metered(req, stats, knobs);
        let asked = req.path.trim_matches('/').split('/').nth(2).unwrap_or("");
        if let Some(served) = self.served(asked) {
            response
                .headers
                .push(("X-Shopify-API-Version".to_string(), served));
        }
        response
    }

    fn server_error(&self) -> SimResponse {
        errors(
            StatusCode::SERVICE_UNAVAILABLE,
            json!("Service Unavailable"),
        )
    }
}

impl ShopifySim {
    /// Answers under the API's limit: GraphQL under its cost bucket (answered in its body),
    /// REST under its leaky bucket.
    fn metered(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let graphql = req.method == Method::POST && req.path.ends_with("/graphql.json");
        if graphql {
            return self.route(req, stats, knobs);
        }
        if !self.bucket.take(req.arrived) {
            stats.throttled += 1;
            let mut r = errors(
                StatusCode::TOO_MANY_REQUESTS,
                json!("Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."),
            );
            r.headers
                .push(("Retry-After".to_string(), "1.0".to_string()));
            if self.bucket.announced {
                r.headers.push((
                    "X-Shopify-Shop-Api-Call-Limit".to_string(),
                    self.bucket.header(),
                ));
            }
            return r;
        }
        let mut response = self.route(req, stats, knobs);
        if self.bucket.announced {
            response.headers.push((
                "X-Shopify-Shop-Api-Call-Limit".to_string(),
                self.bucket.header(),
            ));
        }
        response
    }
}

fn render(p: &ShopifyProduct) -> Value {
    json!({
        "id": p.id,
        "title": p.title,
        "body_html": p.body_html,
        "status": p.status,
        "options": p.options,
        "variants": p.variants.iter().enumerate().map(|(n, v)| json!({
            "id": v.id, "product_id": p.id, "sku": v.sku, "price": v.price,
            "compare_at_price": v.compare_at_price, "position": n + 1,
            "option1": v.option1, "option2": v.option2, "option3": v.option3,
        })).collect::<Vec<_>>(),
        "images": p.images.iter().map(|(id, src, position)| json!({
            "id": id, "product_id": p.id, "src": src, "position": position,
        })).collect::<Vec<_>>(),
    })
}
