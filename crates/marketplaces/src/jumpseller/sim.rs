//! The Jumpseller simulator: API v1 paths (with or without the `/v1` prefix, always `.json`),
//! HTTP Basic `login:authtoken`, wrapped bodies (`{"product": ...}`), the product, variant and
//! image resources and the SKU search. It enforces 20 requests a second and 800 a minute per
//! store, answers 429 beyond them, sends the `Jumpseller-PerMinuteRateLimit-*` and
//! `Jumpseller-PerSecondRateLimit-*` headers on every answer, and bans the store for a while
//! (a 403 announcing its end in `Jumpseller-BannedByRateLimit-Reset`) after too many throttled
//! requests. A search that finds nothing answers 404 "Invalid query.".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use crate::sim::{Knobs, SimApi, SimRequest, SimResponse, SimStats, SlidingLimit};

#[derive(Debug, Clone)]
pub struct SimProduct {
    pub id: u64,
    pub name: String,
    pub sku: Option<String>,
    pub price: f64,
    /// `compare_at_price`: the price shown struck through during a sale.
    pub compare_at_price: Option<f64>,
    pub stock: i64,
    pub description: String,
    pub status: String,
    pub variants: Vec<SimVariant>,
    pub images: Vec<SimImage>,
    /// `barcode`, writable on create and edit (`ProductCreateFields`, `ProductEditFields`);
    /// `brand` is in `ProductFields` alone, what the store answers.
    pub barcode: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimVariant {
    pub id: u64,
    pub sku: Option<String>,
    pub price: f64,
    pub compare_at_price: Option<f64>,
    pub stock: i64,
    pub options: Vec<Value>,
    /// `VariantFields.barcode`.
    pub barcode: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimImage {
    pub id: u64,
    pub url: String,
    pub position: u64,
}

/// The store's limits and ban policy.
#[derive(Debug, Clone)]
pub struct Limits {
    pub per_second: u64,
    pub per_minute: u64,
    /// Throttled requests after which the store is banned.
    pub ban_after: u64,
    pub ban_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_second: 20,
            per_minute: 800,
            ban_after: 2000,
            ban_for: Duration::from_secs(60),
        }
    }
}

pub struct JumpsellerSim {
    login: String,
    pub authtoken: String,
    pub products: BTreeMap<u64, SimProduct>,
    next_id: u64,
    pub limits: Limits,
    /// Arrivals of the last minute, for the limits.
    recent: SlidingLimit,
    throttled_total: u64,
    banned_until: Option<(Instant, chrono::DateTime<chrono::Utc>)>,
    /// Whether answers carry the quota headers (a proxy in front of a store may strip them).
    pub quota_headers: bool,
}

fn message(status: StatusCode, text: &str) -> SimResponse {
    SimResponse::json(status, json!({"message": text}))
}

/// When a ban of `ban_for` from now ends: at the whole second its header can say (the header
/// has no fractions), as an instant of the simulator's clock and as the UTC time announced.
fn ban_until(ban_for: Duration) -> (Instant, chrono::DateTime<chrono::Utc>) {
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::from_std(ban_for).unwrap_or_default();
    let whole = chrono::DateTime::from_timestamp(end.timestamp() + 1, 0).unwrap_or(end);
    let left = (whole - now).to_std().unwrap_or(ban_for);
    (Instant::now() + left, whole)
}

fn not_found() -> SimResponse {
    message(StatusCode::NOT_FOUND, "Not Found")
}

impl JumpsellerSim {
    pub fn new(login: &str, authtoken: &str) -> JumpsellerSim {
        JumpsellerSim {
            login: login.to_string(),
            authtoken: authtoken.to_string(),
            products: BTreeMap::new(),
            next_id: 1000,
            limits: Limits::default(),
            recent: SlidingLimit::default(),
            throttled_total: 0,
            banned_until: None,
            quota_headers: true,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Another client of the same store sent `n` requests two seconds ago (before any of
    /// ours): they count in the store's minute as ours do.
    pub fn used_by_another_client(&mut self, n: u64) {
        let then = Instant::now()
            .checked_sub(Duration::from_secs(2))
            .unwrap_or_else(Instant::now);
        for _ in 0..n {
            self.recent.arrive(then);
        }
    }

    /// The store is banned for `ban_for` from now, as after another client's 2,000 throttled
    /// requests.
    pub fn ban(&mut self, ban_for: Duration) {
        self.banned_until = Some(ban_until(ban_for));
    }

    pub fn product_by_sku(&self, sku: &str) -> Option<&SimProduct> {
        self.products
            .values()
            .find(|p| p.sku.as_deref() == Some(sku))
    }

    /// Counts the arrival against both windows; answers the throttle response when over.
    fn admit(
        &mut self,
        at: Instant,
        stats: &mut SimStats,
    ) -> Result<[(String, String); 4], SimResponse> {
        let (in_second, in_minute) = self.recent.counts(at);
        let headers = |sec: u64, min: u64| {
            [
                (
                    "Jumpseller-PerMinuteRateLimit-Limit".to_string(),
                    self.limits.per_minute.to_string(),
                ),
                (
                    "Jumpseller-PerMinuteRateLimit-Remaining".to_string(),
                    self.limits.per_minute.saturating_sub(min).to_string(),
                ),
                (
                    "Jumpseller-PerSecondRateLimit-Limit".to_string(),
                    self.limits.per_second.to_string(),
                ),
                (
                    "Jumpseller-PerSecondRateLimit-Remaining".to_string(),
                    self.limits.per_second.saturating_sub(sec).to_string(),
                ),
            ]
        };
        if let Some((until, utc)) = self.banned_until {
            if at < until {
                stats.throttled += 1;
                stats.banned += 1;
                // A ban is answered 403 (the OpenAPI document's "Rate Limit" section: its Ruby
                // example retries on `rescue # 403 response`, and its earlier text said "you'll
                // get a 403 Forbidden (Rate Limit Exceeded) response"), with the reset as an
                // RFC 3339 time ("Jumpseller-BannedByRateLimit-Reset: 2024-05-23T16:13:47+00:00").
                let mut r = message(StatusCode::FORBIDDEN, "Banned by rate limit");
                r.headers.extend(headers(in_second, in_minute));
                r.headers.push((
                    "Jumpseller-BannedByRateLimit-Reset".to_string(),
                    utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                ));
                return Err(r);
            }
            self.banned_until = None;
        }
        // Every request counts against the windows, throttled or not.
        self.recent.arrive(at);
        if in_second >= self.limits.per_second || in_minute >= self.limits.per_minute {
            stats.throttled += 1;
            self.throttled_total += 1;
            if self.throttled_total >= self.limits.ban_after {
                self.throttled_total = 0;
                self.banned_until = Some(ban_until(self.limits.ban_for));
            }
            let mut r = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            r.headers.extend(headers(in_second + 1, in_minute + 1));
            return Err(r);
        }
        Ok(headers(in_second + 1, in_minute + 1))
    }

    fn route(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let path = req.path.strip_prefix("/v1").unwrap_or(&req.path);
        let Some(path) = path.strip_suffix(".json") else {
            return not_found();
        };
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let num = |s: &str| s.parse::<u64>().ok();
        match (&req.method, parts.as_slice()) {
            (&Method::GET, ["products"]) => self.list(req),
            (&Method::GET, ["products", "count"]) => {
                SimResponse::json(StatusCode::OK, json!({"count": self.products.len()}))
            }
            (&Method::GET, ["products", "search"]) => self.search(req),
            (&Method::POST, ["products"]) => self.create(req, stats, knobs),
            (&Method::GET, ["products", id]) => match num(id).and_then(|i| self.products.get(&i)) {
                Some(p) => SimResponse::json(StatusCode::OK, render(p)),
                None => not_found(),
            },
            (&Method::PUT, ["products", id]) => match num(id) {
                Some(i) => self.update(i, req, knobs),
                None => not_found(),
            },
            (&Method::DELETE, ["products", id]) => {
                match num(id).and_then(|i| self.products.remove(&i)) {
                    Some(_) => message(StatusCode::OK, "Product deleted"),
                    None => not_found(),
                }
            }
            (&Method::GET, ["products", id, "variants"]) => {
                match num(id).and_then(|i| self.products.get(&i)) {
                    Some(p) => SimResponse::json(
                        StatusCode::OK,
                        Value::Array(p.variants.iter().map(render_variant).collect()),
                    ),
                    None => not_found(),
                }
            }
            (&Method::POST, ["products", id, "variants"]) => match num(id) {
                Some(i) => self.create_variant(i, req, stats),
                None => not_found(),
            },
            (&Method::PUT, ["products", id, "variants", vid]) => match (num(id), num(vid)) {
                (Some(i), Some(v)) => self.update_variant(i, v, req),
                _ => not_found(),
            },
            (&Method::GET, ["products", id, "images"]) => {
                match num(id).and_then(|i| self.products.get(&i)) {
                    Some(p) => SimResponse::json(
                        StatusCode::OK,
                        Value::Array(p.images.iter().map(render_image).collect()),
                    ),
                    None => not_found(),
                }
            }
            (&Method::POST, ["products", id, "images"]) => match num(id) {
                Some(i) => self.create_image(i, req),
                None => not_found(),
            },
            (&Method::DELETE, ["products", id, "images", iid]) => match (num(id), num(iid)) {
                (Some(i), Some(img)) => match self.products.get_mut(&i) {
                    Some(p) if p.images.iter().any(|x| x.id == img) => {
                        p.images.retain(|x| x.id != img);
                        message(StatusCode::OK, "Image deleted")
                    }
                    _ => not_found(),
                },
                _ => not_found(),
            },
            _ => not_found(),
        }
    }

    fn list(&self, req: &SimRequest) -> SimResponse {
        let limit = req.number("limit", 50).min(100);
        let page = req.number("page", 1).max(1);
        let items: Vec<Value> = self
            .products
            .values()
            .skip((page - 1) * limit)
            .take(limit)
            .map(render)
            .collect();
        SimResponse::json(StatusCode::OK, Value::Array(items))
    }

    /// `GET /products/search.json`. The document lists one answer besides 200: 404 "Invalid
    /// query." (`paths./products/search.json.get.responses.404`), and is silent on a search
    /// that matches nothing; the simulator answers that 404 too, the reading that asks most of
    /// a client (a look-up must take it as "nothing found", not as a refusal).
    fn search(&self, req: &SimRequest) -> SimResponse {
        let invalid = || message(StatusCode::NOT_FOUND, "Invalid query.");
        let Some(query) = req.query.get("query").filter(|q| !q.trim().is_empty()) else {
            return invalid();
        };
        let fields = req
            .query
            .get("fields")
            .map(String::as_str)
            .unwrap_or("name");
        let q = query.to_lowercase();
        let hits: Vec<Value> = self
            .products
            .values()
            .filter(|p| {
                fields.split(',').any(|f| match f.trim() {
                    "sku" => p
                        .sku
                        .as_deref()
                        .is_some_and(|s| s.to_lowercase().contains(&q)),
                    "name" => p.name.to_lowercase().contains(&q),
                    "description" => p.description.to_lowercase().contains(&q),
                    _ => false,
                })
            })
            .map(render)
            .collect();
        if hits.is_empty() {
            return invalid();
        }
        SimResponse::json(StatusCode::OK, Value::Array(hits))
    }

    fn create(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let fields = match product_fields(req, true) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let sku = fields
            .get("sku")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(msg) = sku.as_deref().and_then(|s| knobs.reject_skus.get(s)) {
            return message(StatusCode::UNPROCESSABLE_ENTITY, msg);
        }
        let id = self.id();
        let mut p = SimProduct {
            id,
            name: String::new(),
            sku: sku.clone(),
            price: 0.0,
            compare_at_price: None,
            stock: 0,
            description: String::new(),
            status: "available".to_string(),
            variants: Vec::new(),
            images: Vec::new(),
            barcode: None,
        };
        apply_fields(&mut p, &fields);
        if let Some(s) = &sku {
            stats.created(s);
        }
        let body = render(&p);
        self.products.insert(id, p);
        SimResponse::json(StatusCode::OK, body)
    }

    fn update(&mut self, id: u64, req: &SimRequest, knobs: &Knobs) -> SimResponse {
        let fields = match product_fields(req, true) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let Some(p) = self.products.get_mut(&id) else {
            return not_found();
        };
        let sku = fields
            .get("sku")
            .and_then(Value::as_str)
            .or(p.sku.as_deref());
        if let Some(msg) = sku.and_then(|s| knobs.reject_skus.get(s)) {
            return message(StatusCode::UNPROCESSABLE_ENTITY, msg);
        }
        apply_fields(p, &fields);
        SimResponse::json(StatusCode::OK, render(p))
    }

    fn create_variant(&mut self, id: u64, req: &SimRequest, stats: &mut SimStats) -> SimResponse {
        let fields = match wrapped(req, "variant") {
            Ok(f) => f,
            Err(r) => return r,
        };
        if let Err(r) = check_variant(&fields) {
            return r;
        }
        let vid = self.id();
        let Some(p) = self.products.get_mut(&id) else {
            return not_found();
        };
        let mut v = SimVariant {
            id: vid,
            sku: None,
            price: p.price,
            compare_at_price: None,
            stock: 0,
            options: Vec::new(),
            barcode: None,
        };
        apply_variant(&mut v, &fields);
        if let Some(s) = &v.sku {
            stats.created(s);
        }
        let body = render_variant(&v);
        p.variants.push(v);
        SimResponse::json(StatusCode::OK, body)
    }

    fn update_variant(&mut self, id: u64, vid: u64, req: &SimRequest) -> SimResponse {
        let fields = match wrapped(req, "variant") {
            Ok(f) => f,
            Err(r) => return r,
        };
        if let Err(r) = check_variant(&fields) {
            return r;
        }
        let Some(v) = self
            .products
            .get_mut(&id)
            .and_then(|p| p.variants.iter_mut().find(|v| v.id == vid))
        else {
            return not_found();
        };
        apply_variant(v, &fields);
        SimResponse::json(StatusCode::OK, render_variant(v))
    }

    fn create_image(&mut self, id: u64, req: &SimRequest) -> SimResponse {
        let fields = match wrapped(req, "image") {
            Ok(f) => f,
            Err(r) => return r,
        };
        let Some(url) = fields.get("url").and_then(Value::as_str) else {
            return message(StatusCode::UNPROCESSABLE_ENTITY, "Image url can't be blank");
        };
        let url = url.to_string();
        let position = fields.get("position").and_then(Value::as_u64);
        let iid = self.id();
        let Some(p) = self.products.get_mut(&id) else {
            return not_found();
        };
        let img = SimImage {
            id: iid,
            position: position.unwrap_or(p.images.len() as u64 + 1),
            url,
        };
        let body = render_image(&img);
        p.images.push(img);
        SimResponse::json(StatusCode::OK, body)
    }
}

impl SimApi for JumpsellerSim {
    fn dump(&self) -> Value {
        self.products
            .values()
            .map(|p| {
                json!({"id": p.id, "sku": p.sku, "status": p.status,
                       "variants": p.variants.len(), "images": p.images.len()})
            })
            .collect()
    }

    fn handle(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let headers = match self.admit(req.arrived, stats) {
            Ok(h) => h,
            Err(throttled) => return throttled,
        };
        let authorized = req
            .basic_auth()
            .is_some_and(|(l, t)| l == self.login && t == self.authtoken);
        let mut response = if authorized {
            self.route(req, stats, knobs)
        } else {
            message(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: invalid login or authtoken",
            )
        };
        if self.quota_headers {
            response.headers.extend(headers);
        }
        response
    }
}

/// The object inside `{"<key>": {...}}`, or a 422 saying what is wrong.
fn wrapped(req: &SimRequest, key: &str) -> Result<Map<String, Value>, SimResponse> {
    let Some(body) = req.json() else {
        return Err(message(StatusCode::BAD_REQUEST, "Invalid JSON"));
    };
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("param is missing or the value is empty: {key}"),
        )),
    }
}

/// The product fields of a create or edit, validated as the OpenAPI document types them.
fn product_fields(req: &SimRequest, require: bool) -> Result<Map<String, Value>, SimResponse> {
    let f = wrapped(req, "product")?;
    let unprocessable = |m: &str| Err(message(StatusCode::UNPROCESSABLE_ENTITY, m));
    match f.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        None if !require => {}
        _ => return unprocessable("Name can't be blank"),
    }
    match f.get("price") {
        Some(Value::Number(n)) if n.as_f64().is_some_and(|p| p >= 0.0) => {}
        None if !require => {}
        _ => return unprocessable("Price must be a number greater than or equal to 0"),
    }
    if let Some(s) = f.get("status") {
        if !matches!(s.as_str(), Some("available" | "not-available" | "disabled")) {
            return unprocessable("Status is not included in the list");
        }
    }
    if f.get("stock").is_some_and(|s| !s.is_i64()) {
        return unprocessable("Stock must be an integer");
    }
    if f.get("sku").is_some_and(|s| !s.is_string()) {
        return unprocessable("Sku must be a string");
    }
    if let Err(m) = check_compare_at(&f) {
        return unprocessable(m);
    }
    Ok(f)
}

/// `compare_at_price` is a number above the price sent with it (the document: "Value must be
/// higher than the price"), or `null` to take it away.
fn check_compare_at(f: &Map<String, Value>) -> Result<(), &'static str> {
    match f.get("compare_at_price") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(c)) => {
            let price = f.get("price").and_then(Value::as_f64);
            match (c.as_f64(), price) {
                (Some(c), Some(p)) if c <= p => {
                    Err("Compare at price must be higher than the price")
                }
                _ => Ok(()),
            }
        }
        Some(_) => Err("Compare at price must be a number"),
    }
}

fn check_variant(f: &Map<String, Value>) -> Result<(), SimResponse> {
    let bad = |m: &str| Err(message(StatusCode::UNPROCESSABLE_ENTITY, m));
    if f.get("price").is_some_and(|p| !p.is_number()) {
        return bad("Price must be a number");
    }
    if f.get("stock").is_some_and(|s| !s.is_i64()) {
        return bad("Stock must be an integer");
    }
    if let Err(m) = check_compare_at(f) {
        return bad(m);
    }
    if let Some(options) = f.get("options") {
        let Some(list) = options.as_array() else {
            return bad("Options must be an array");
        };
        for o in list {
            let named = o.get("name").and_then(Value::as_str).is_some();
            let valued = o.get("value").and_then(Value::as_str).is_some();
            let typed = o
                .get("option_type")
                .is_none_or(|t| matches!(t.as_str(), Some("option" | "color")));
            if !(named && valued && typed) {
                return bad("Options need a name, a value and an option_type of option or color");
            }
        }
    }
    Ok(())
}

fn apply_fields(p: &mut SimProduct, f: &Map<String, Value>) {
    if let Some(v) = f.get("name").and_then(Value::as_str) {
        p.name = v.to_string();
    }
    if let Some(v) = f.get("price").and_then(Value::as_f64) {
        p.price = v;
    }
    if let Some(v) = f.get("compare_at_price") {
        p.compare_at_price = v.as_f64();
    }
    if let Some(v) = f.get("stock").and_then(Value::as_i64) {
        p.stock = v;
    }
    if let Some(v) = f.get("description").and_then(Value::as_str) {
        p.description = v.to_string();
    }
    if let Some(v) = f.get("status").and_then(Value::as_str) {
        p.status = v.to_string();
    }
    if let Some(v) = f.get("sku").and_then(Value::as_str) {
        p.sku = Some(v.to_string());
    }
    if let Some(v) = f.get("barcode").and_then(Value::as_str) {
        p.barcode = Some(v.to_string());
    }
}

fn apply_variant(v: &mut SimVariant, f: &Map<String, Value>) {
    if let Some(x) = f.get("sku").and_then(Value::as_str) {
        v.sku = Some(x.to_string());
    }
    if let Some(x) = f.get("price").and_then(Value::as_f64) {
        v.price = x;
    }
    if let Some(x) = f.get("compare_at_price") {
        v.compare_at_price = x.as_f64();
    }
    if let Some(x) = f.get("stock").and_then(Value::as_i64) {
        v.stock = x;
    }
    if let Some(Value::Array(o)) = f.get("options") {
        v.options = o.clone();
    }
    if let Some(x) = f.get("barcode").and_then(Value::as_str) {
        v.barcode = Some(x.to_string());
    }
}

fn render_variant(v: &SimVariant) -> Value {
    json!({"variant": {"id": v.id, "sku": v.sku, "price": v.price, "compare_at_price": v.compare_at_price, "stock": v.stock, "options": v.options, "barcode": v.barcode}})
}

fn render_image(i: &SimImage) -> Value {
    json!({"image": {"id": i.id, "url": i.url, "position": i.position}})
}

fn render(p: &SimProduct) -> Value {
    json!({"product": {
        "id": p.id,
        "name": p.name,
        "sku": p.sku,
        "price": p.price,
        "compare_at_price": p.compare_at_price,
        "stock": p.stock,
        "description": p.description,
        "status": p.status,
        "barcode": p.barcode,
        "variants": p.variants.iter().map(|v| render_variant(v)["variant"].clone()).collect::<Vec<_>>(),
        "images": p.images.iter().map(|i| render_image(i)["image"].clone()).collect::<Vec<_>>(),
    }})
}
