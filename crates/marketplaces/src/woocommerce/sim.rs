//! The WooCommerce simulator: REST v3 under `/wp-json/wc/v3`, a site on plain HTTP that takes
//! OAuth 1.0a signed requests (and ignores HTTP Basic, as WooCommerce does without HTTPS), products with `regular_price` as a string, statuses draft/pending/private/publish
//! (and trash after a DELETE without force), variations, the `?sku=` filter, and WordPress's
//! error shape `{"code", "message", "data": {"status"}}`, including the duplicate-SKU refusal
//! `product_invalid_sku` with `data.resource_id`. The batch endpoints (`products/batch` and
//! `products/{id}/variations/batch`) take up to 100 items and answer each item's failure
//! inline inside a 200. An optional host limit answers 429.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use crate::sim::{Knobs, SimApi, SimRequest, SimResponse, SimStats, SlidingLimit};

#[derive(Debug, Clone)]
pub struct WooProduct {
    pub id: u64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub sku: String,
    pub regular_price: String,
    /// `sale_price`: the price during a sale, `""` when there is none.
    pub sale_price: String,
    pub stock_quantity: Option<i64>,
    pub description: String,
    pub images: Vec<(u64, String)>,
    pub attributes: Vec<Value>,
    pub variations: Vec<WooVariation>,
    /// `global_unique_id`, the GTIN, UPC, EAN or ISBN (WooCommerce 9.2+): unique in the store,
    /// `WC_Product::set_global_unique_id` refusing one another product or variation holds.
    pub global_unique_id: String,
}

#[derive(Debug, Clone)]
pub struct WooVariation {
    pub id: u64,
    pub sku: String,
    pub regular_price: String,
    pub sale_price: String,
    pub stock_quantity: Option<i64>,
    pub attributes: Vec<Value>,
    pub global_unique_id: String,
}

pub struct WooSim {
    key: String,
    secret: String,
    /// A host's limit, when the site sits behind one (WooCommerce has none of its own).
    pub limit: SlidingLimit,
    pub products: BTreeMap<u64, WooProduct>,
    /// The nonces of OAuth 1.0a requests seen in the last 15 minutes.
    oauth: OAuth,
    /// The products whose SKU, or one of whose variations' SKUs, was each SKU when last
    /// written here: candidates only, checked against `products` at each look-up, so a product
    /// a test removes from `products` directly is simply not found.
    skus: HashMap<String, BTreeSet<u64>>,
    next_id: u64,
}

fn error(status: StatusCode, code: &str, text: &str) -> SimResponse {
    SimResponse::json(
        status,
        json!({"code": code, "message": text, "data": {"status": status.as_u16()}}),
    )
}

/// WooCommerce's refusal of a SKU that another product or variation already holds.
fn duplicate_sku(owner: u64, sku: &str) -> SimResponse {
    SimResponse::json(
        StatusCode::BAD_REQUEST,
        json!({
            "code": "product_invalid_sku",
            "message": "Invalid or duplicated SKU.",
            "data": {"status": 400, "resource_id": owner, "unique_sku": sku},
        }),
    )
}

/// The request's JSON object, or WordPress's answer to a body that is not one.
fn object(req: &SimRequest) -> Result<Map<String, Value>, SimResponse> {
    match req.json() {
        Some(Value::Object(f)) => Ok(f),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "rest_invalid_json",
            "Invalid JSON body passed.",
        )),
    }
}

fn invalid_id() -> SimResponse {
    error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_product_invalid_id",
        "Invalid ID.",
    )
}

fn invalid_param(param: &str, why: &str) -> SimResponse {
    SimResponse::json(
        StatusCode::BAD_REQUEST,
        json!({
            "code": "rest_invalid_param",
            "message": format!("Invalid parameter(s): {param}"),
            "data": {"status": 400, "params": {param: why}},
        }),
    )
}

impl WooSim {
    pub fn new(key: &str, secret: &str) -> WooSim {
        WooSim {
            key: key.to_string(),
            secret: secret.to_string(),
            limit: SlidingLimit::new(None),
            products: BTreeMap::new(),
            oauth: OAuth::default(),
            skus: HashMap::new(),
            next_id: 100,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The products that may hold `sku`, in id order (a site's SKU look-up is an index, not a
    /// scan: a simulator of a million products must answer as fast as one of ten).
    fn holding<'a>(&'a self, sku: &str) -> impl Iterator<Item = &'a WooProduct> + 'a {
        self.skus
            .get(sku)
            .into_iter()
            .flatten()
            .filter_map(|id| self.products.get(id))
    }

    /// Notes that product `id` holds `sku` (itself or through a variation).
    fn index(&mut self, sku: &str, id: u64) {
        if !sku.is_empty() {
            self.skus.entry(sku.to_string()).or_default().insert(id);
        }
    }

    /// A product the shop already has (made by hand, or by another system), under its own id.
    pub fn insert(&mut self, p: WooProduct) {
        self.next_id = self
            .next_id
            .max(p.id)
            .max(p.variations.iter().map(|v| v.id).max().unwrap_or(0));
        self.put(p);
    }

    /// Stores `p`, keeping the SKU index in step with what it replaces.
    fn put(&mut self, p: WooProduct) {
        let id = p.id;
        for sku in skus_of(&p) {
            self.index(&sku, id);
        }
        if let Some(old) = self.products.insert(id, p) {
            self.unindex(&old);
        }
    }

    /// Drops the index entries of `old` that its stored successor no longer holds.
    fn unindex(&mut self, old: &WooProduct) {
        let kept = self.products.get(&old.id).map(skus_of).unwrap_or_default();
        for sku in skus_of(old) {
            if kept.contains(&sku) {
                continue;
            }
            if let Some(ids) = self.skus.get_mut(&sku) {
                ids.remove(&old.id);
                if ids.is_empty() {
                    self.skus.remove(&sku);
                }
            }
        }
    }

    /// `GET products?sku=A,B`: the products and the variations holding any of the listed SKUs
    /// (or the whole text as one SKU), in id order. WooCommerce's products controller widens
    /// the query to variations when it filters by SKU (`class-wc-rest-products-controller.php`:
    /// "if ( ! empty( $request['sku'] ) ... $args['post_type'] = array( 'product',
    /// 'product_variation' )"; the SKUs are `explode( ',', $request['sku'] )`, matched exactly),
    /// so a variation comes back with `"type": "variation"` and its `parent_id`.
    fn by_skus(&self, text: &str) -> Vec<Value> {
        let mut wanted: BTreeSet<&str> = text.split(',').filter(|s| !s.is_empty()).collect();
        wanted.insert(text);
        let mut found: BTreeMap<u64, Value> = BTreeMap::new();
        for sku in &wanted {
            for p in self.holding(sku).filter(|p| p.status != "trash") {
                if p.sku == *sku {
                    found.insert(p.id, render(p));
                }
                for v in p.variations.iter().filter(|v| v.sku == *sku) {
                    let mut shown = render_variation(v);
                    if let Value::Object(fields) = &mut shown {
                        fields.insert("type".to_string(), json!("variation"));
                        fields.insert("parent_id".to_string(), json!(p.id));
                    }
                    found.insert(v.id, shown);
                }
            }
        }
        found.into_values().collect()
    }

    pub fn product_by_sku(&self, sku: &str) -> Option<&WooProduct> {
        self.holding(sku).find(|p| p.sku == sku)
    }

    fn sku_owner(&self, sku: &str, except: Option<u64>) -> Option<u64> {
        if sku.is_empty() {
            return None;
        }
        let in_products = self
            .holding(sku)
            .find(|p| p.sku == sku && p.status != "trash" && Some(p.id) != except)
            .map(|p| p.id);
        in_products.or_else(|| {
            self.holding(sku)
                .flat_map(|p| p.variations.iter())
                .find(|v| v.sku == sku && Some(v.id) != except)
                .map(|v| v.id)
        })
    }

    fn route(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let Some(path) = req.path.strip_prefix("/wp-json/wc/v3/") else {
            return error(
                StatusCode::NOT_FOUND,
                "rest_no_route",
                "No route was found matching the URL and request method.",
            );
        };
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let num = |s: &str| s.parse::<u64>().ok();
        match (&req.method, parts.as_slice()) {
            (&Method::GET, ["products"]) => {
                // As WordPress lists them: trashed products only when asked for by status.
                let visible = |p: &&WooProduct| p.status != "trash";
                let per_page = req.number("per_page", 10);
                if per_page > 100 {
                    return invalid_param(
                        "per_page",
                        "per_page must be between 1 (inclusive) and 100 (inclusive)",
                    );
                }
                let list: Vec<Value> = match (req.query.get("sku"), req.query.get("include")) {
                    (Some(skus), _) => self.by_skus(skus).into_iter().take(per_page).collect(),
                    (None, Some(ids)) => ids
                        .split(',')
                        .filter_map(num)
                        .filter_map(|i| self.products.get(&i))
                        .filter(visible)
                        .take(per_page)
                        .map(render)
                        .collect(),
                    (None, None) => self.products.values().filter(visible).map(render).collect(),
                };
                SimResponse::json(StatusCode::OK, Value::Array(list))
            }
            (&Method::POST, ["products"]) => self.create(req, stats, knobs),
            (&Method::POST, ["products", "batch"]) => self.batch(None, req, stats, knobs),
            (&Method::POST, ["products", id, "variations", "batch"]) => match num(id) {
                Some(i) if self.products.contains_key(&i) => self.batch(Some(i), req, stats, knobs),
                _ => invalid_id(),
            },
            (&Method::GET, ["products", id]) => match num(id).and_then(|i| self.products.get(&i)) {
                Some(p) => SimResponse::json(StatusCode::OK, render(p)),
                None => invalid_id(),
            },
            (&Method::PUT, ["products", id]) => match num(id) {
                Some(i) => self.update(i, req, knobs),
                None => invalid_id(),
            },
            (&Method::DELETE, ["products", id]) => {
                let force = req
                    .query
                    .get("force")
                    .is_some_and(|f| f == "true" || f == "1");
                let Some(i) = num(id) else {
                    return invalid_id();
                };
                if force {
                    return self.force_delete(i);
                }
                match self.products.get_mut(&i) {
                    Some(p) if p.status == "trash" => error(
                        StatusCode::GONE,
                        "woocommerce_rest_already_trashed",
                        "The product has already been deleted.",
                    ),
                    Some(p) => {
                        p.status = "trash".to_string();
                        SimResponse::json(StatusCode::OK, render(p))
                    }
                    None => invalid_id(),
                }
            }
            (&Method::GET, ["products", id, "variations"]) => {
                match num(id).and_then(|i| self.products.get(&i)) {
                    Some(p) => paged(req, &p.variations, render_variation),
                    None => invalid_id(),
                }
            }
            (&Method::POST, ["products", id, "variations"]) => match num(id) {
                Some(i) => self.create_variation(i, req, stats),
                None => invalid_id(),
            },
            (&Method::PUT, ["products", id, "variations", vid]) => match (num(id), num(vid)) {
                (Some(i), Some(v)) => self.update_variation(i, v, req),
                _ => invalid_id(),
            },
            _ => error(
                StatusCode::NOT_FOUND,
                "rest_no_route",
                "No route was found matching the URL and request method.",
            ),
        }
    }

    fn create(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        match object(req) {
            Ok(f) => self.create_from(&f, stats, knobs),
            Err(r) => r,
        }
    }

    fn create_from(
        &mut self,
        f: &Map<String, Value>,
        stats: &mut SimStats,
        knobs: &Knobs,
    ) -> SimResponse {
        if let Err(r) = check_product(f) {
            return r;
        }
        let sku = f
            .get("sku")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(msg) = knobs.reject_skus.get(&sku) {
            return error(
                StatusCode::BAD_REQUEST,
                "woocommerce_rest_invalid_product",
                msg,
            );
        }
        if let Some(owner) = self.sku_owner(&sku, None) {
            return duplicate_sku(owner, &sku);
        }
        let id = self.id();
        let mut p = WooProduct {
            id,
            name: String::new(),
            kind: "simple".to_string(),
            status: "publish".to_string(),
            sku: sku.clone(),
            regular_price: String::new(),
            sale_price: String::new(),
            stock_quantity: None,
            description: String::new(),
            images: Vec::new(),
            attributes: Vec::new(),
            variations: Vec::new(),
            global_unique_id: String::new(),
        };
        if let Some(refused) = self.gtin_refused(f, None) {
            return refused;
        }
        self.apply(&mut p, f);
        if !sku.is_empty() {
            stats.created(&sku);
        }
        let body = render(&p);
        self.put(p);
        SimResponse::json(StatusCode::CREATED, body)
    }

    fn update(&mut self, id: u64, req: &SimRequest, knobs: &Knobs) -> SimResponse {
        match object(req) {
            Ok(f) => self.update_from(id, &f, knobs),
            Err(r) => r,
        }
    }

    /// A `global_unique_id` another product or variation than `own` holds is refused, as
    /// `WC_Product::set_global_unique_id` does (`product_invalid_global_unique_id`, 400).
    fn gtin_refused(&self, f: &Map<String, Value>, own: Option<u64>) -> Option<SimResponse> {
        let code = f
            .get("global_unique_id")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())?;
        let held = self.products.values().any(|p| {
            (Some(p.id) != own && p.global_unique_id == code)
                || p.variations
                    .iter()
                    .any(|v| Some(v.id) != own && v.global_unique_id == code)
        });
        held.then(|| {
            error(
                StatusCode::BAD_REQUEST,
                "product_invalid_global_unique_id",
                "Invalid or duplicated GTIN, UPC, EAN or ISBN.",
            )
        })
    }

    fn update_from(&mut self, id: u64, f: &Map<String, Value>, knobs: &Knobs) -> SimResponse {
        if let Err(r) = check_product(f) {
            return r;
        }
        let Some(mut p) = self.products.get(&id).cloned() else {
            return invalid_id();
        };
        let sku = f
            .get("sku")
            .and_then(Value::as_str)
            .unwrap_or(&p.sku)
            .to_string();
        if let Some(msg) = knobs.reject_skus.get(&sku) {
            return error(
                StatusCode::BAD_REQUEST,
                "woocommerce_rest_invalid_product",
                msg,
            );
        }
        if let Some(owner) = self.sku_owner(&sku, Some(id)) {
            return duplicate_sku(owner, &sku);
        }
        if let Some(refused) = self.gtin_refused(f, Some(id)) {
            return refused;
        }
        self.apply(&mut p, f);
        let body = render(&p);
        self.put(p);
        SimResponse::json(StatusCode::OK, body)
    }

    fn apply(&mut self, p: &mut WooProduct, f: &Map<String, Value>) {
        let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(v) = text("name") {
            p.name = v;
        }
        if let Some(v) = text("type") {
            p.kind = v;
        }
        if let Some(v) = text("global_unique_id") {
            p.global_unique_id = v;
        }
        if let Some(v) = text("status") {
            p.status = v;
        }
        if let Some(v) = text("sku") {
            p.sku = v;
        }
        if let Some(v) = text("regular_price") {
            p.regular_price = v;
        }
        if let Some(v) = text("sale_price") {
            p.sale_price = v;
        }
        if let Some(v) = text("description") {
            p.description = v;
        }
        if let Some(v) = f.get("stock_quantity").and_then(Value::as_i64) {
            p.stock_quantity = Some(v);
        }
        if let Some(Value::Array(a)) = f.get("attributes") {
            p.attributes = a.clone();
        }
        if let Some(Value::Array(images)) = f.get("images") {
            let mut out = Vec::new();
            for img in images {
                match (
                    img.get("id").and_then(Value::as_u64),
                    img.get("src").and_then(Value::as_str),
                ) {
                    (Some(id), _) => {
                        let src = p
                            .images
                            .iter()
                            .find(|(i, _)| *i == id)
                            .map(|(_, s)| s.clone())
                            .unwrap_or_default();
                        out.push((id, src));
                    }
                    (None, Some(src)) => {
                        // WordPress side-loads the image into its media library.
                        let id = self.id();
                        out.push((
                            id,
                            format!(
                                "https://media.example/{id}-{}",
                                src.rsplit('/').next().unwrap_or("image")
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            p.images = out;
        }
    }

    fn create_variation(&mut self, id: u64, req: &SimRequest, stats: &mut SimStats) -> SimResponse {
        match object(req) {
            Ok(f) => self.create_variation_from(id, &f, stats),
            Err(r) => r,
        }
    }

    fn create_variation_from(
        &mut self,
        id: u64,
        f: &Map<String, Value>,
        stats: &mut SimStats,
    ) -> SimResponse {
        if let Err(r) = check_price(f) {
            return r;
        }
        let sku = f
            .get("sku")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(owner) = self.sku_owner(&sku, None) {
            return duplicate_sku(owner, &sku);
        }
        if let Some(refused) = self.gtin_refused(f, None) {
            return refused;
        }
        let vid = self.id();
        let Some(p) = self.products.get_mut(&id) else {
            return invalid_id();
        };
        let mut v = WooVariation {
            id: vid,
            sku: sku.clone(),
            regular_price: String::new(),
            sale_price: String::new(),
            stock_quantity: None,
            attributes: Vec::new(),
            global_unique_id: String::new(),
        };
        apply_variation(&mut v, f);
        if !sku.is_empty() {
            stats.created(&sku);
        }
        let body = render_variation(&v);
        p.variations.push(v);
        self.index(&sku, id);
        SimResponse::json(StatusCode::CREATED, body)
    }

    fn update_variation(&mut self, id: u64, vid: u64, req: &SimRequest) -> SimResponse {
        match object(req) {
            Ok(f) => self.update_variation_from(id, vid, &f),
            Err(r) => r,
        }
    }

    fn update_variation_from(&mut self, id: u64, vid: u64, f: &Map<String, Value>) -> SimResponse {
        if let Err(r) = check_price(f) {
            return r;
        }
        if let Some(refused) = self.gtin_refused(f, Some(vid)) {
            return refused;
        }
        let Some(v) = self
            .products
            .get_mut(&id)
            .and_then(|p| p.variations.iter_mut().find(|v| v.id == vid))
        else {
            return error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_product_variation_invalid_id",
                "Invalid ID.",
            );
        };
        apply_variation(v, f);
        let (body, sku) = (render_variation(v), v.sku.clone());
        self.index(&sku, id);
        SimResponse::json(StatusCode::OK, body)
    }

    fn force_delete(&mut self, id: u64) -> SimResponse {
        match self.products.remove(&id) {
            Some(p) => {
                self.unindex(&p);
                SimResponse::json(StatusCode::OK, render(&p))
            }
            None => invalid_id(),
        }
    }

    /// `POST products/batch` (or `products/{id}/variations/batch` with `parent`): each item is
    /// handled as its own request would be, and its failure comes back inline, inside a 200.
    fn batch(
        &mut self,
        parent: Option<u64>,
        req: &SimRequest,
        stats: &mut SimStats,
        knobs: &Knobs,
    ) -> SimResponse {
        let f = match object(req) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let list = |k: &str| match f.get(k) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let (create, update, delete) = (list("create"), list("update"), list("delete"));
        let total = create.len() + update.len() + delete.len();
        if total > MAX_BATCH_ITEMS {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "woocommerce_rest_request_entity_too_large",
                &format!("Unable to accept more than {MAX_BATCH_ITEMS} items for this request."),
            );
        }
        stats.batches += 1;
        stats.batch_items += total as u64;
        let inline = |id: u64, r: SimResponse| {
            if r.status.is_success() {
                r.body
            } else {
                json!({"id": id, "error": r.body})
            }
        };
        let fields = |v: &Value| match v {
            Value::Object(m) => Ok(m.clone()),
            _ => Err(error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_param",
                "Each batch item must be an object.",
            )),
        };
        let mut out = Map::new();
        let mut created = Vec::new();
        for item in &create {
            let r = match (fields(item), parent) {
                (Err(r), _) => r,
                (Ok(m), None) => self.create_from(&m, stats, knobs),
                (Ok(m), Some(pid)) => self.create_variation_from(pid, &m, stats),
            };
            created.push(inline(0, r));
        }
        let mut updated = Vec::new();
        for item in &update {
            let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
            let r = match (fields(item), parent) {
                (Err(r), _) => r,
                (Ok(mut m), None) => {
                    m.remove("id");
                    self.update_from(id, &m, knobs)
                }
                (Ok(mut m), Some(pid)) => {
                    m.remove("id");
                    self.update_variation_from(pid, id, &m)
                }
            };
            updated.push(inline(id, r));
        }
        let mut deleted = Vec::new();
        for item in &delete {
            let id = item.as_u64().unwrap_or(0);
            let r = match parent {
                None => self.force_delete(id),
                Some(_) => error(
                    StatusCode::BAD_REQUEST,
                    "rest_invalid_param",
                    "The simulator does not delete variations.",
                ),
            };
            deleted.push(inline(id, r));
        }
        if !create.is_empty() {
            out.insert("create".to_string(), Value::Array(created));
        }
        if !update.is_empty() {
            out.insert("update".to_string(), Value::Array(updated));
        }
        if !delete.is_empty() {
            out.insert("delete".to_string(), Value::Array(deleted));
        }
        SimResponse::json(StatusCode::OK, Value::Object(out))
    }
}

/// One page of a collection as WordPress's REST API answers it: `per_page` items (10 unless
/// asked, 100 at most) from `page` (from 1), with the collection's size in `X-WP-Total` and its
/// pages in `X-WP-TotalPages` (WooCommerce REST API docs, "Pagination": "per_page ... Default is
/// 10 ... maximum of 100"; the variations list included).
fn paged<T>(req: &SimRequest, all: &[T], render: fn(&T) -> Value) -> SimResponse {
    let per_page = req.number("per_page", 10);
    if !(1..=100).contains(&per_page) {
        return invalid_param(
            "per_page",
            "per_page must be between 1 (inclusive) and 100 (inclusive)",
        );
    }
    let page = req.number("page", 1).max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(render)
        .collect();
    let mut r = SimResponse::json(StatusCode::OK, Value::Array(items));
    r.headers = vec![
        ("X-WP-Total".to_string(), all.len().to_string()),
        (
            "X-WP-TotalPages".to_string(),
            all.len().div_ceil(per_page).to_string(),
        ),
    ];
    r
}

/// WooCommerce's OAuth 1.0a "one-legged" check of a request over plain HTTP, as
/// `class-wc-rest-authentication.php` performs it (`perform_oauth_authentication`,
/// `check_oauth_signature`, `check_oauth_timestamp_and_nonce`): the five parameters, the
/// consumer key, an HMAC-SHA256 signature (WooCommerce also takes HMAC-SHA1, which campaignd
/// does not send) keyed with "consumer_secret&" over
/// "METHOD&" + rawurlencode(base URL) + "&" + the sorted parameters (each key and value
/// rawurlencoded, joined with `=`, each pair rawurlencoded again, joined with "%26"), a
/// timestamp within 15 minutes either way, and a nonce not used before.
#[derive(Default)]
struct OAuth {
    used: HashMap<String, Instant>,
}

/// PHP's `rawurlencode`: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn rawurlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OAuth {
    /// `Ok(true)` for a valid signed request, `Ok(false)` for one without OAuth parameters
    /// (it runs as nobody), `Err` with WooCommerce's message for a bad one.
    fn check(&mut self, req: &SimRequest, key: &str, secret: &str) -> Result<bool, String> {
        use hmac::Mac;
        const NEEDED: [&str; 5] = [
            "oauth_consumer_key",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
        ];
        let present: Vec<&str> = NEEDED
            .into_iter()
            .filter(|k| req.query.contains_key(*k))
            .collect();
        if present.is_empty() {
            return Ok(false);
        }
        if present.len() < NEEDED.len() {
            return Err("Missing OAuth parameter(s)".to_string());
        }
        let q = |k: &str| req.query.get(k).map(String::as_str).unwrap_or_default();
        if q("oauth_consumer_key") != key {
            return Err("Consumer key is invalid.".to_string());
        }
        let mut params: Vec<(&String, &String)> = req
            .query
            .iter()
            .filter(|(k, _)| k.as_str() != "oauth_signature")
            .collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let normalized: Vec<String> = params
            .iter()
            .map(|(k, v)| rawurlencode(&format!("{}={}", rawurlencode(k), rawurlencode(v))))
            .collect();
        let host = req
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let base = format!("http://{host}{}", req.path);
        let to_sign = format!(
            "{}&{}&{}",
            req.method.as_str(),
            rawurlencode(&base),
            normalized.join("%26")
        );
        let secret = format!("{secret}&");
        let signature = match q("oauth_signature_method") {
            "HMAC-SHA256" => {
                hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).map(|mut m| {
                    m.update(to_sign.as_bytes());
                    m.finalize().into_bytes().to_vec()
                })
            }
            _ => return Err("Invalid signature - signature method is invalid.".to_string()),
        }
        .map_err(|_| "Invalid signature - signature method is invalid.".to_string())?;
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode(signature);
        if q("oauth_signature") != expected {
            return Err("Invalid signature - provided signature does not match.".to_string());
        }
        let now = chrono::Utc::now().timestamp();
        let stamp: i64 = q("oauth_timestamp").parse().unwrap_or(0);
        if (now - stamp).abs() > 15 * 60 {
            return Err("Invalid timestamp.".to_string());
        }
        let fifteen = std::time::Duration::from_secs(15 * 60);
        self.used.retain(|_, at| at.elapsed() < fifteen);
        if self
            .used
            .insert(q("oauth_nonce").to_string(), Instant::now())
            .is_some()
        {
            return Err("Invalid nonce - nonce has already been used.".to_string());
        }
        Ok(true)
    }
}

/// The non-empty SKUs a product holds: its own and its variations'.
fn skus_of(p: &WooProduct) -> BTreeSet<String> {
    std::iter::once(&p.sku)
        .chain(p.variations.iter().map(|v| &v.sku))
        .filter(|s| !s.is_empty())
        .cloned()
        .collect()
}

/// WooCommerce's limit of items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 100;

impl SimApi for WooSim {
    fn dump(&self) -> Value {
        self.products
            .values()
            .map(|p| json!({"id": p.id, "sku": p.sku, "status": p.status, "variants": p.variations.len()}))
            .collect()
    }

    fn handle(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        if !self.limit.admit(req.arrived, stats) {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "rest_too_many_requests",
                "Too many requests; slow down.",
            );
        }
        // The simulator is a site on plain HTTP: WooCommerce reads HTTP Basic only over HTTPS
        // (`class-wc-rest-authentication.php`: "if ( is_ssl() ) { $user_id =
        // $this->perform_basic_authentication(); }"), so a Basic header is ignored and the
        // request runs unauthenticated unless it carries OAuth 1.0a's parameters.
        match self.oauth.check(req, &self.key, &self.secret) {
            Ok(true) => self.route(req, stats, knobs),
            Ok(false) => error(
                StatusCode::UNAUTHORIZED,
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            ),
            Err(why) => error(
                StatusCode::UNAUTHORIZED,
                "woocommerce_rest_authentication_error",
                &why,
            ),
        }
    }

    /// What a product's or a variation's body holds that WooCommerce does not write: a field
    /// that is not among the writable "Product properties" and "Product variation properties"
    /// of the REST API's reference (read-only ones such as `price` or `on_sale` are taken and
    /// dropped without a word), in single requests and in batch items alike.
    fn ignored(&self, req: &SimRequest) -> Vec<String> {
        let Some(path) = req.path.strip_prefix("/wp-json/wc/v3/") else {
            return Vec::new();
        };
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let (known, batch) = match (&req.method, parts.as_slice()) {
            (&Method::POST, ["products"]) | (&Method::PUT, ["products", _]) => (PRODUCT, false),
            (&Method::POST, ["products", "batch"]) => (PRODUCT, true),
            (&Method::POST, ["products", _, "variations"])
            | (&Method::PUT, ["products", _, "variations", _]) => (VARIATION, false),
            (&Method::POST, ["products", _, "variations", "batch"]) => (VARIATION, true),
            _ => return Vec::new(),
        };
        let Some(Value::Object(f)) = req.json() else {
            return Vec::new();
        };
        let bodies: Vec<&Map<String, Value>> = match batch {
            false => vec![&f],
            true => ["create", "update"]
                .iter()
                .filter_map(|k| f.get(*k).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_object)
                .collect(),
        };
        bodies
            .into_iter()
            .flat_map(|b| b.keys())
            .filter(|k| !(known.contains(&k.as_str()) || batch && *k == "id"))
            .map(|k| format!("{} {}: {k}", req.method, req.path))
            .collect()
    }

    fn server_error(&self) -> SimResponse {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "There has been a critical error on this website.",
        )
    }
}

/// A product's writable properties (WooCommerce REST API, "Product properties").
const PRODUCT: &[&str] = &[
    "name",
    "slug",
    "type",
    "status",
    "featured",
    "catalog_visibility",
    "description",
    "short_description",
    "sku",
    "global_unique_id",
    "regular_price",
    "sale_price",
    "date_on_sale_from",
    "date_on_sale_from_gmt",
    "date_on_sale_to",
    "date_on_sale_to_gmt",
    "virtual",
    "downloadable",
    "downloads",
    "download_limit",
    "download_expiry",
    "external_url",
    "button_text",
    "tax_status",
    "tax_class",
    "manage_stock",
    "stock_quantity",
    "stock_status",
    "backorders",
    "low_stock_amount",
    "sold_individually",
    "weight",
    "dimensions",
    "shipping_class",
    "reviews_allowed",
    "upsell_ids",
    "cross_sell_ids",
    "parent_id",
    "purchase_note",
    "categories",
    "tags",
    "brands",
    "images",
    "attributes",
    "default_attributes",
    "menu_order",
    "meta_data",
];

/// A variation's writable properties (WooCommerce REST API, "Product variation properties").
const VARIATION: &[&str] = &[
    "description",
    "sku",
    "global_unique_id",
    "regular_price",
    "sale_price",
    "date_on_sale_from",
    "date_on_sale_from_gmt",
    "date_on_sale_to",
    "date_on_sale_to_gmt",
    "status",
    "virtual",
    "downloadable",
    "downloads",
    "download_limit",
    "download_expiry",
    "tax_status",
    "tax_class",
    "manage_stock",
    "stock_quantity",
    "stock_status",
    "backorders",
    "low_stock_amount",
    "weight",
    "dimensions",
    "shipping_class",
    "image",
    "attributes",
    "menu_order",
    "meta_data",
];

fn check_price(f: &Map<String, Value>) -> Result<(), SimResponse> {
    for field in ["regular_price", "sale_price"] {
        match f.get(field) {
            None | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(invalid_param(
                    field,
                    &format!("{field} is not of type string."),
                ))
            }
        }
    }
    Ok(())
}

fn check_product(f: &Map<String, Value>) -> Result<(), SimResponse> {
    check_price(f)?;
    if let Some(s) = f.get("status") {
        if !matches!(
            s.as_str(),
            Some("draft" | "pending" | "private" | "publish")
        ) {
            return Err(invalid_param(
                "status",
                "status is not one of draft, pending, private, publish, future.",
            ));
        }
    }
    if let Some(t) = f.get("type") {
        if !matches!(
            t.as_str(),
            Some("simple" | "grouped" | "external" | "variable")
        ) {
            return Err(invalid_param(
                "type",
                "type is not one of simple, grouped, external, variable.",
            ));
        }
    }
    if f.get("stock_quantity").is_some_and(|s| !s.is_i64()) {
        return Err(invalid_param(
            "stock_quantity",
            "stock_quantity is not of type integer.",
        ));
    }
    Ok(())
}

fn apply_variation(v: &mut WooVariation, f: &Map<String, Value>) {
    if let Some(x) = f.get("sku").and_then(Value::as_str) {
        v.sku = x.to_string();
    }
    if let Some(x) = f.get("regular_price").and_then(Value::as_str) {
        v.regular_price = x.to_string();
    }
    if let Some(x) = f.get("sale_price").and_then(Value::as_str) {
        v.sale_price = x.to_string();
    }
    if let Some(x) = f.get("stock_quantity").and_then(Value::as_i64) {
        v.stock_quantity = Some(x);
    }
    if let Some(Value::Array(a)) = f.get("attributes") {
        v.attributes = a.clone();
    }
    if let Some(x) = f.get("global_unique_id").and_then(Value::as_str) {
        v.global_unique_id = x.to_string();
    }
}

/// WooCommerce's `price`: the sale price while there is one, else the regular price.
fn current<'a>(regular: &'a str, sale: &'a str) -> &'a str {
    if sale.is_empty() {
        regular
    } else {
        sale
    }
}

fn render_variation(v: &WooVariation) -> Value {
    json!({
        "id": v.id, "sku": v.sku, "regular_price": v.regular_price, "sale_price": v.sale_price,
        "price": current(&v.regular_price, &v.sale_price), "on_sale": !v.sale_price.is_empty(),
        "stock_quantity": v.stock_quantity, "attributes": v.attributes,
        "global_unique_id": v.global_unique_id,
    })
}

fn render(p: &WooProduct) -> Value {
    json!({
        "id": p.id,
        "global_unique_id": p.global_unique_id,
        "name": p.name,
        "type": p.kind,
        "status": p.status,
        "sku": p.sku,
        "regular_price": p.regular_price,
        "sale_price": p.sale_price,
        "price": current(&p.regular_price, &p.sale_price),
        "on_sale": !p.sale_price.is_empty(),
        "stock_quantity": p.stock_quantity,
        "description": p.description,
        "images": p.images.iter().map(|(id, src)| json!({"id": id, "src": src})).collect::<Vec<_>>(),
        "attributes": p.attributes,
        "variations": p.variations.iter().map(|v| v.id).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object literal"),
        }
    }

    /// The SKU index follows a product's SKU as it is renamed, given to a variation and deleted,
    /// so a freed SKU can be taken again and a held one cannot.
    #[test]
    fn the_sku_index_follows_renames_variations_and_deletes() {
        let mut sim = WooSim::new("k", "s");
        let (mut stats, knobs) = (SimStats::default(), Knobs::default());
        let created = sim.create_from(
            &fields(json!({"sku": "A", "name": "a"})),
            &mut stats,
            &knobs,
        );
        assert_eq!(created.status, StatusCode::CREATED);
        let id = created.body["id"].as_u64().expect("an id");
        let again = sim.create_from(&fields(json!({"sku": "A"})), &mut stats, &knobs);
        assert_eq!(again.body["code"], "product_invalid_sku");
        assert_eq!(again.body["data"]["resource_id"], id);

        let renamed = sim.update_from(id, &fields(json!({"sku": "B"})), &knobs);
        assert_eq!(renamed.status, StatusCode::OK);
        assert!(sim.product_by_sku("A").is_none());
        assert_eq!(sim.product_by_sku("B").map(|p| p.id), Some(id));
        let v = sim.create_variation_from(id, &fields(json!({"sku": "B-1"})), &mut stats);
        assert_eq!(v.status, StatusCode::CREATED);
        let taken = sim.create_from(&fields(json!({"sku": "B-1"})), &mut stats, &knobs);
        assert_eq!(taken.body["data"]["resource_id"], v.body["id"]);

        assert_eq!(sim.force_delete(id).status, StatusCode::OK);
        for sku in ["A", "B", "B-1"] {
            let r = sim.create_from(&fields(json!({"sku": sku})), &mut stats, &knobs);
            assert_eq!(r.status, StatusCode::CREATED, "{sku} is free again");
        }
    }
}
