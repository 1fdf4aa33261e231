//! The Shopify simulator's GraphQL Admin API (`POST /admin/api/{version}/graphql.json`): the
//! operations the service sends (`productSet` synchronous, `productUpdate`, `productDelete`,
//! `product(id:)` and `productVariants(query: "sku:...")`), with Shopify's cost-based leaky
//! bucket: each operation's requested cost must be available before it runs (else the answer
//! is a `THROTTLED` error, with HTTP 200), its actual cost is taken, points come back at the
//! plan's restore rate, and every answer carries `extensions.cost` with `throttleStatus`.
//! Costs follow Shopify's documented model (`requested_cost`). It also keeps what the GraphQL
//! API alone says of a product: its publications (a product is on no sales channel until
//! `publishablePublish`), its variants' tracked inventory at the shop's locations (set through
//! `inventoryQuantities`), and the shop's `publications` and primary `location`.

use std::time::Instant;

use serde_json::{json, Value};
use warp::http::StatusCode;

use super::{ShopifyProduct, ShopifySim, ShopifyVariant};
use crate::sim::{Knobs, SimRequest, SimResponse, SimStats};

/// The app's cost bucket on the shop (the Standard plan: 2,000 points, 100 restored a second).
#[derive(Debug, Clone)]
pub struct CostBucket {
    pub max: f64,
    pub restore_rate: f64,
    available: f64,
    at: Option<Instant>,
}

impl CostBucket {
    pub fn new(max: f64, restore_rate: f64) -> CostBucket {
        CostBucket {
            max,
            restore_rate,
            available: max,
            at: None,
        }
    }

    /// The bucket with every point spent (by calls made before the test, say).
    pub fn spent(mut self) -> CostBucket {
        self.available = 0.0;
        self
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let restored = now.saturating_duration_since(at).as_secs_f64() * self.restore_rate;
            self.available = (self.available + restored).min(self.max);
        }
        self.at = Some(now);
    }

    fn status(&self) -> Value {
        json!({
            "maximumAvailable": self.max,
            "currentlyAvailable": self.available.floor(),
            "restoreRate": self.restore_rate,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    ProductSet,
    ProductUpdate,
    ProductDelete,
    /// `publishablePublish(id:, input: [{publicationId}])`: puts a product on sales channels.
    PublishablePublish,
    Product,
    ProductVariants,
    /// Objects by global id (`nodes(ids:)`), products here.
    Nodes,
    /// `publications(first:)`: the shop's sales channels.
    Publications,
    /// `location` without an id: the shop's primary location.
    Location,
    /// `metafieldDefinitionCreate(definition:)`.
    MetafieldDefinitionCreate,
}

/// The operations of a document, in the order they run: every mutation field it holds (a
/// document may carry several, which run one after the other), or its query fields.
fn operations(query: &str) -> Vec<Operation> {
    let has = |name: &str| query.contains(name);
    if query.trim_start().starts_with("mutation") {
        return [
            ("productSet(", Operation::ProductSet),
            ("productUpdate(", Operation::ProductUpdate),
            ("productDelete(", Operation::ProductDelete),
            ("publishablePublish(", Operation::PublishablePublish),
            (
                "metafieldDefinitionCreate(",
                Operation::MetafieldDefinitionCreate,
            ),
        ]
        .into_iter()
        .filter(|(name, _)| has(name))
        .map(|(_, op)| op)
        .collect();
    }
    let mut ops: Vec<Operation> = [
        ("nodes(", Operation::Nodes),
        ("productVariants(", Operation::ProductVariants),
        ("product(", Operation::Product),
    ]
    .into_iter()
    .find(|(name, _)| has(name))
    .map(|(_, op)| op)
    .into_iter()
    .collect();
    if has("publications(") {
        ops.push(Operation::Publications);
    }
    if has("location {") {
        ops.push(Operation::Location);
    }
    ops
}

/// Each `first: N` of the query.
fn firsts(query: &str) -> impl Iterator<Item = f64> + '_ {
    query.match_indices("first:").filter_map(|(at, _)| {
        let rest = query[at + "first:".len()..].trim_start();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<f64>().ok()
    })
}

/// What Shopify asks to be available before a document runs, by its documented model: a
/// mutation 10 points (`productSet` 10, 0.2 a variant, 0.6 a variant's file and 1.9 a product's
/// file, since 2025-10: shopify.dev changelog "Dynamic complexity cost for productSet"), a query
/// 1, a `nodes` read 1 an object; and every connection the selection asks `first: N` of, 2 and
/// N (a `nodes` read's, for each object).
fn requested_cost(ops: &[Operation], query: &str, variables: &Value) -> f64 {
    let selection: f64 = firsts(query).map(|n| 2.0 + n).sum();
    let base: f64 = ops
        .iter()
        .map(|op| match op {
            Operation::ProductSet => {
                let input = variables.get("input");
                let count = |path: &str| {
                    input
                        .and_then(|i| i.pointer(path))
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                };
                let variant_files: usize = input
                    .and_then(|i| i.get("variants"))
                    .and_then(Value::as_array)
                    .map_or(0, |vs| {
                        vs.iter().filter(|v| v.get("file").is_some()).count()
                    });
                (10.0
                    + 0.2 * count("/variants") as f64
                    + 0.6 * variant_files as f64
                    + 1.9 * count("/files") as f64)
                    .ceil()
            }
            Operation::ProductUpdate
            | Operation::ProductDelete
            | Operation::PublishablePublish
            | Operation::MetafieldDefinitionCreate => 10.0,
            Operation::Product | Operation::ProductVariants => 1.0,
            Operation::Publications | Operation::Location => 0.0,
            Operation::Nodes => 0.0,
        })
        .sum();
    if ops.contains(&Operation::Nodes) {
        let ids = variables
            .get("ids")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        return ids as f64 * (1.0 + selection);
    }
    let query_base = if ops
        .iter()
        .all(|op| matches!(op, Operation::Publications | Operation::Location))
    {
        1.0
    } else {
        0.0
    };
    base + query_base + selection
}

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn gid_number(v: Option<&Value>) -> Option<u64> {
    v?.as_str()?.rsplit('/').next()?.parse().ok()
}

fn user_error(field: &[&str], message: &str, code: &str) -> Value {
    json!({"field": field, "message": message, "code": code})
}

fn money(v: Option<&Value>) -> Result<Option<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<f64>()
            .map(|p| Some(format!("{p:.2}")))
            .map_err(|_| ()),
        Some(other) => other.as_f64().map(|p| Some(format!("{p:.2}"))).ok_or(()),
    }
}

/// The product as the service's selections read it: the first `variants` and `media` asked
/// for (a connection answers `first: N` at most), its publications, and each variant's
/// `inventoryQuantity` (null when its inventory is not tracked).
fn product_node(p: &ShopifyProduct, query: &str) -> Value {
    let asked = |connection: &str| {
        query
            .find(&format!("{connection}(first:"))
            .and_then(|at| firsts(&query[at..]).next())
            .map_or(usize::MAX, |n| n as usize)
    };
    json!({
        "id": gid("Product", p.id),
        "status": p.status.to_uppercase(),
        "variants": {"nodes": p.variants.iter().take(asked("variants")).map(|v| json!({
            "id": gid("ProductVariant", v.id), "sku": v.sku, "price": v.price,
            "compareAtPrice": v.compare_at_price,
            "inventoryQuantity": v.inventory_quantity(),
        })).collect::<Vec<_>>()},
        "media": {"nodes": p.images.iter().take(asked("media")).map(|(id, _, _)| json!({
            "id": gid("MediaImage", *id),
        })).collect::<Vec<_>>()},
        "resourcePublications": {"nodes": p.published_on.iter().map(|id| json!({
            "publication": {"id": gid("Publication", *id)},
        })).collect::<Vec<_>>()},
    })
}

impl ShopifySim {
    /// Answers one GraphQL request under the cost bucket.
    pub(super) fn graphql(
        &mut self,
        req: &SimRequest,
        stats: &mut SimStats,
        knobs: &Knobs,
    ) -> SimResponse {
        let body = req.json().unwrap_or(Value::Null);
        let query = body.get("query").and_then(Value::as_str).unwrap_or("");
        let variables = body.get("variables").cloned().unwrap_or(Value::Null);
        let ops = operations(query);
        if ops.is_empty() {
            return SimResponse::json(
                StatusCode::OK,
                json!({"errors": [{"message": "the simulator does not know this operation"}]}),
            );
        }
        let requested = requested_cost(&ops, query, &variables);
        self.cost.refill(req.arrived);
        if self.cost.available < requested {
            stats.throttled += 1;
            return SimResponse::json(
                StatusCode::OK,
                json!({
                    "errors": [{"message": "Throttled", "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    }}],
                    "extensions": {"cost": {
                        "requestedQueryCost": requested,
                        "actualQueryCost": null,
                        "throttleStatus": self.cost.status(),
                    }},
                }),
            );
        }
        let mut data = serde_json::Map::new();
        for op in ops {
            let answer = match op {
                Operation::ProductSet => self.product_set(&variables, query, stats, knobs),
                Operation::ProductUpdate => self.product_update(&variables),
                Operation::ProductDelete => self.product_delete(&variables),
                Operation::PublishablePublish => self.publishable_publish(&variables),
                Operation::MetafieldDefinitionCreate => self.definition_create(&variables),
                Operation::Product => {
                    let found =
                        gid_number(variables.get("id")).and_then(|id| self.products.get(&id));
                    json!({"product": found.map(|p| product_node(p, query))})
                }
                Operation::ProductVariants => self.product_variants(&variables, query),
                Operation::Nodes => {
                    let ids = variables
                        .get("ids")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let nodes: Vec<Value> = ids
                        .iter()
                        .map(|id| {
                            gid_number(Some(id))
                                .and_then(|n| self.products.get(&n))
                                .map_or(Value::Null, |p| product_node(p, query))
                        })
                        .collect();
                    json!({"nodes": nodes})
                }
                Operation::Publications => json!({"publications": {"nodes":
                    self.publications.iter().map(|(id, title)| json!({
                        "id": gid("Publication", *id),
                        "name": title,
                        "catalog": {"title": title},
                    })).collect::<Vec<_>>()
                }}),
                Operation::Location => json!({"location": self.locations.first().map(
                    |id| json!({"id": gid("Location", *id)})
                )}),
            };
            if let Value::Object(fields) = answer {
                data.extend(fields);
            }
        }
        self.cost.available -= requested;
        SimResponse::json(
            StatusCode::OK,
            json!({
                "data": data,
                "extensions": {"cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": requested,
                    "throttleStatus": self.cost.status(),
                }},
            }),
        )
    }

    /// `metafieldDefinitionCreate`: a product definition of type `id` (shopify.dev, "Working
    /// with custom IDs", step 1: "ID metafield types are automatically configured to have
    /// unique values"); one of a namespace and key that exists already is refused as `TAKEN`.
    /// The simulator keeps the definitions of type `id` alone, the one kind campaignd makes.
    fn definition_create(&mut self, variables: &Value) -> Value {
        let d = variables.get("definition").cloned().unwrap_or(Value::Null);
        let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let failed = |field: &str, message: &str, code: &str| {
            json!({"metafieldDefinitionCreate": {"createdDefinition": null, "userErrors": [
                user_error(&["definition", field], message, code)
            ]}})
        };
        let (namespace, key) = (text("namespace"), text("key"));
        if text("ownerType") != "PRODUCT" || text("type") != "id" || key.is_empty() {
            return failed(
                "type",
                "The simulator makes product id definitions only",
                "INVALID",
            );
        }
        if self
            .id_definitions
            .contains(&(namespace.clone(), key.clone()))
        {
            return failed("key", "Key is in use for Product metafields", "TAKEN");
        }
        self.id_definitions.push((namespace, key));
        json!({"metafieldDefinitionCreate": {
            "createdDefinition": {"id": gid("MetafieldDefinition", self.id_definitions.len() as u64)},
            "userErrors": [],
        }})
    }

    /// `publishablePublish`: the product goes on each publication named.
    fn publishable_publish(&mut self, variables: &Value) -> Value {
        let failed = |field: &str, message: &str| {
            json!({"publishablePublish": {"publishable": null, "userErrors": [
                user_error(&[field], message, "INVALID")
            ]}})
        };
        let Some(p) = gid_number(variables.get("id")).and_then(|id| self.products.get_mut(&id))
        else {
            return failed("id", "Product does not exist");
        };
        let mut ids = Vec::new();
        for input in variables
            .get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match gid_number(input.get("publicationId")) {
                Some(id) if self.publications.iter().any(|(known, _)| *known == id) => ids.push(id),
                _ => return failed("input", "Publication does not exist"),
            }
        }
        p.published_on.extend(ids);
        json!({"publishablePublish": {
            "publishable": {"id": gid("Product", p.id)},
            "userErrors": [],
        }})
    }

    /// `productVariants(first: N, query: "sku:\"A\" OR sku:\"B\"")`: the variants holding any of
    /// the SKUs (shopify.dev, "Shopify API search syntax": terms join with `OR`), N at most.
    fn product_variants(&self, variables: &Value, query: &str) -> Value {
        let search = variables.get("query").and_then(Value::as_str).unwrap_or("");
        let skus: Vec<&str> = search
            .split(" OR ")
            .filter_map(|term| term.trim().strip_prefix("sku:"))
            .map(|s| s.trim_matches('"'))
            .filter(|s| !s.is_empty())
            .collect();
        let first = firsts(query).next().map_or(usize::MAX, |n| n as usize);
        let edges: Vec<Value> = self
            .products
            .values()
            .flat_map(|p| p.variants.iter().map(move |v| (p, v)))
            .filter(|(_, v)| skus.contains(&v.sku.as_str()))
            .take(first)
            .map(|(p, v)| {
                json!({"node": {
                    "id": gid("ProductVariant", v.id),
                    "sku": v.sku,
                    "product": {"id": gid("Product", p.id)},
                }})
            })
            .collect();
        json!({"productVariants": {"edges": edges}})
    }

    fn product_update(&mut self, variables: &Value) -> Value {
        let fields = variables.get("product").cloned().unwrap_or(Value::Null);
        let found = gid_number(fields.get("id")).and_then(|id| self.products.get_mut(&id));
        let Some(p) = found else {
            return json!({"productUpdate": {"product": null, "userErrors": [
                user_error(&["id"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")
            ]}});
        };
        if let Some(status) = fields.get("status").and_then(Value::as_str) {
            match status {
                "ACTIVE" | "DRAFT" | "ARCHIVED" => p.status = status.to_lowercase(),
                _ => {
                    return json!({"productUpdate": {"product": null, "userErrors": [
                        user_error(&["status"], "Status is not included in the list", "INVALID")
                    ]}})
                }
            }
        }
        json!({"productUpdate": {
            "product": {"id": gid("Product", p.id), "status": p.status.to_uppercase()},
            "userErrors": [],
        }})
    }

    fn product_delete(&mut self, variables: &Value) -> Value {
        let id = gid_number(variables.pointer("/input/id"));
        match id.and_then(|id| self.products.remove(&id)) {
            Some(p) => {
                json!({"productDelete": {"deletedProductId": gid("Product", p.id), "userErrors": []}})
            }
            None => json!({"productDelete": {"deletedProductId": null, "userErrors": [
                user_error(&["id"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")
            ]}}),
        }
    }

    fn product_set(
        &mut self,
        variables: &Value,
        query: &str,
        stats: &mut SimStats,
        knobs: &Knobs,
    ) -> Value {
        let failed =
            |errors: Vec<Value>| json!({"productSet": {"product": null, "userErrors": errors}});
        let Some(input) = variables.get("input").and_then(Value::as_object) else {
            return failed(vec![user_error(&["input"], "Input is required", "INVALID")]);
        };
        // `identifier.customId` upserts by a custom id (shopify.dev, changelog "productSet and
        // customerSet mutations now support upserts and custom IDs", 2025-04: "If an existing
        // record is found, then the mutation updates it ... Otherwise, the mutation creates a
        // new record"), which needs its `id` definition.
        let custom = variables
            .pointer("/identifier/customId")
            .filter(|c| !c.is_null())
            .map(|c| {
                let part = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                (part("namespace"), part("key"), part("value"))
            });
        if let Some((namespace, key, _)) = &custom {
            if !self
                .id_definitions
                .contains(&(namespace.clone(), key.clone()))
            {
                return failed(vec![user_error(
                    &["identifier", "customId"],
                    "Metafield definition does not exist",
                    "NOT_FOUND",
                )]);
            }
        }
        let held = custom.as_ref().and_then(|(namespace, key, value)| {
            self.products
                .values()
                .find(|p| {
                    p.metafields
                        .iter()
                        .any(|(n, k, v)| n == namespace && k == key && v == value)
                })
                .cloned()
        });
        let existing = match variables.pointer("/identifier/id") {
            None | Some(Value::Null) => held,
            id => match gid_number(id).and_then(|id| self.products.get(&id)) {
                Some(p) => Some(p.clone()),
                None => {
                    return failed(vec![user_error(
                        &["identifier", "id"],
                        "Product does not exist",
                        "PRODUCT_DOES_NOT_EXIST",
                    )])
                }
            },
        };
        let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
        if existing.is_none() && text("title").is_none_or(|t| t.trim().is_empty()) {
            return failed(vec![user_error(
                &["input", "title"],
                "Title can't be blank",
                "BLANK",
            )]);
        }
        let options: Vec<Value> = input
            .get("productOptions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if options.len() > 3 {
            return failed(vec![user_error(
                &["input", "productOptions"],
                "Options are limited to 3",
                "INVALID",
            )]);
        }
        let variants: Vec<Value> = input
            .get("variants")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (n, v) in variants.iter().enumerate() {
            let sku = v.get("sku").and_then(Value::as_str).unwrap_or("");
            if let Some(message) = knobs.reject_skus.get(sku) {
                let at = n.to_string();
                return failed(vec![user_error(
                    &["input", "variants", &at],
                    message,
                    "INVALID",
                )]);
            }
            if money(v.get("price")).is_err() || money(v.get("compareAtPrice")).is_err() {
                let at = n.to_string();
                return failed(vec![user_error(
                    &["input", "variants", &at, "price"],
                    "Price is not a number",
                    "INVALID",
                )]);
            }
            // `ProductSetInventoryInput`: a known location, `name` "available" or "on_hand",
            // a whole quantity. On an existing variant only the locations it is stocked at can
            // be set (shopify.dev, `ProductVariantSetInput.inventoryQuantities`).
            let stocked = existing.as_ref().and_then(|p| {
                let id = gid_number(v.get("id"))?;
                p.variants
                    .iter()
                    .find(|x| x.id == id)
                    .map(|x| x.available.clone())
            });
            for q in v
                .get("inventoryQuantities")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let at = n.to_string();
                let location = gid_number(q.get("locationId"));
                let known = location.is_some_and(|l| self.locations.contains(&l));
                let name = q.get("name").and_then(Value::as_str);
                let problem = if !known {
                    Some(("locationId", "Location does not exist", "NOT_FOUND"))
                } else if !matches!(name, Some("available" | "on_hand")) {
                    Some(("name", "Name must be available or on_hand", "INVALID"))
                } else if !q.get("quantity").is_some_and(Value::is_i64) {
                    Some(("quantity", "Quantity is not an integer", "INVALID"))
                } else if stocked
                    .as_ref()
                    .is_some_and(|s| location.is_some_and(|l| !s.contains_key(&l)))
                {
                    Some((
                        "locationId",
                        "The variant is not stocked at this location",
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                    ))
                } else {
                    None
                };
                if let Some((field, message, code)) = problem {
                    return failed(vec![user_error(
                        &["input", "variants", &at, "inventoryQuantities", field],
                        message,
                        code,
                    )]);
                }
            }
        }
        let mut p = existing.unwrap_or_else(|| ShopifyProduct::new(self.id()));
        if let Some(v) = text("title") {
            p.title = v;
        }
        if let Some(v) = text("descriptionHtml") {
            p.body_html = v;
        }
        if let Some(v) = text("vendor") {
            p.vendor = v;
        }
        if let Some(v) = text("status") {
            p.status = v.to_lowercase();
        }
        for m in input
            .get("metafields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let part = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (namespace, key, value) = (part("namespace"), part("key"), part("value"));
            p.metafields
                .retain(|(n, k, _)| !(*n == namespace && *k == key));
            p.metafields.push((namespace, key, value));
        }
        let names: Vec<String> = options
            .iter()
            .filter_map(|o| o.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        if input.contains_key("productOptions") {
            p.options = options
                .iter()
                .map(|o| {
                    let values: Vec<Value> = o
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|vs| vs.iter().filter_map(|v| v.get("name").cloned()).collect())
                        .unwrap_or_default();
                    json!({"name": o.get("name"), "values": values})
                })
                .collect();
        }
        if input.contains_key("variants") {
            let mut out = Vec::new();
            for v in &variants {
                let sku = v.get("sku").and_then(Value::as_str).unwrap_or("");
                // A variant given without an id is the product's variant of the same SKU
                // when it has one (an upsert by custom id names no variant ids; Shopify matches
                // such variants by their option values, which campaignd's SKUs stand for).
                let kept = match gid_number(v.get("id")) {
                    Some(id) => p.variants.iter().find(|x| x.id == id).cloned(),
                    None => p
                        .variants
                        .iter()
                        .find(|x| !sku.is_empty() && x.sku == sku)
                        .cloned(),
                };
                let mut var = match kept {
                    Some(var) => var,
                    None => {
                        if !sku.is_empty() {
                            stats.created(sku);
                        }
                        ShopifyVariant::new(self.id(), "")
                    }
                };
                var.sku = sku.to_string();
                if let Some(code) = v.get("barcode").and_then(Value::as_str) {
                    var.barcode = Some(code.to_string());
                }
                if let Ok(Some(price)) = money(v.get("price")) {
                    var.price = price;
                }
                if v.get("compareAtPrice").is_some() {
                    var.compare_at_price = money(v.get("compareAtPrice")).unwrap_or(None);
                }
                let value_of = |n: usize| {
                    let name = names.get(n)?;
                    v.get("optionValues")?.as_array()?.iter().find_map(|ov| {
                        (ov.get("optionName")?.as_str()? == name)
                            .then(|| ov.get("name")?.as_str().map(str::to_string))
                            .flatten()
                    })
                };
                var.option1 = value_of(0);
                var.option2 = value_of(1);
                var.option3 = value_of(2);
                if let Some(tracked) = v.pointer("/inventoryItem/tracked").and_then(Value::as_bool)
                {
                    var.tracked = tracked;
                }
                for q in v
                    .get("inventoryQuantities")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(location), Some(quantity)) = (
                        gid_number(q.get("locationId")),
                        q.get("quantity").and_then(Value::as_i64),
                    ) {
                        var.available.insert(location, quantity);
                    }
                }
                out.push(var);
            }
            p.variants = out;
        }
        if let Some(Value::Array(files)) = input.get("files") {
            let mut out = Vec::new();
            for (n, f) in files.iter().enumerate() {
                let position = n as u64 + 1;
                if let Some(id) = gid_number(f.get("id")) {
                    if let Some(kept) = p.images.iter().find(|(i, _, _)| *i == id) {
                        out.push((id, kept.1.clone(), position));
                    }
                } else if let Some(src) = f.get("originalSource").and_then(Value::as_str) {
                    out.push((self.id(), src.to_string(), position));
                }
            }
            p.images = out;
        }
        let node = product_node(&p, query);
        self.products.insert(p.id, p);
        json!({"productSet": {"product": node, "userErrors": []}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_shopifys_model() {
        let set = json!({"input": {"variants": [{}, {}, {}], "files": [{}, {}]}});
        let m = "mutation productSet { productSet(input: $input) { product { id variants(first: 3) { nodes { id } } } } }";
        assert_eq!(operations(m), [Operation::ProductSet]);
        // 10 + 0.6 for three variants + 3.8 for two files, rounded up; the selection 2 + 3.
        assert_eq!(requested_cost(&operations(m), m, &set), 15.0 + 5.0);
        let q = "query { product(id: $id) { variants(first: 2) { nodes { id } } media(first: 3) { nodes { id } } } }";
        assert_eq!(
            requested_cost(&operations(q), q, &Value::Null),
            1.0 + 4.0 + 5.0
        );
        assert_eq!(operations(q), [Operation::Product]);
        let both = "mutation publish { productUpdate(product: $p) { userErrors { field } } publishablePublish(id: $id, input: $input) { userErrors { field } } }";
        assert_eq!(
            operations(both),
            [Operation::ProductUpdate, Operation::PublishablePublish]
        );
        assert_eq!(requested_cost(&operations(both), both, &Value::Null), 20.0);
        let setup = "query setup { publications(first: 25) { nodes { id } } location { id } }";
        assert_eq!(
            operations(setup),
            [Operation::Publications, Operation::Location]
        );
        assert_eq!(
            requested_cost(&operations(setup), setup, &Value::Null),
            1.0 + 27.0
        );
    }

    #[test]
    fn the_bucket_restores_at_its_rate_up_to_its_size() {
        let mut b = CostBucket::new(100.0, 10.0);
        let t = Instant::now();
        b.refill(t);
        b.available -= 60.0;
        b.refill(t + std::time::Duration::from_secs(2));
        assert_eq!(b.available, 60.0);
        b.refill(t + std::time::Duration::from_secs(60));
        assert_eq!(b.available, 100.0);
    }
}
