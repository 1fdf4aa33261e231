//! Shopify on the GraphQL Admin API (`POST /admin/api/{version}/graphql.json`, the default;
//! `settings.api = "rest"` keeps a connection on REST). A product is created or updated with
//! its options, variants, images and stock (at the shop's location, tracked) in one
//! `productSet` mutation (synchronous), put on its sales channels with `publishablePublish`
//! (a product made through GraphQL is on none, whatever its status), its status changed with
//! `productUpdate` (ACTIVE, DRAFT, ARCHIVED) and removed with `productDelete`; a
//! create of unknown outcome is reconciled with `productVariants(query: "sku:...")` and the
//! `product(id:)` query, as on REST. Each call waits at the connection's limiter until its
//! requested cost is available in the app's cost bucket, as the last answer's
//! `extensions.cost.throttleStatus` reported it, so the adapter follows whatever the shop's plan
//! gives and meets no `THROTTLED`; one that does is tried again like a 429. Ids are kept as the
//! numbers at the end of Shopify's global ids, the same as REST's, so a connection can move
//! from one API to the other.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    copies_of, expected, gid_number, hold_of_graphql, listed_of, listed_query, naming_sku,
    naming_skus, products_with_sku, shown, status_word, LISTED_AT_ONCE, VARIANT_BY_SKU,
};
use crate::gather::{Fetch, Gatherer};
use crate::http::{Endpoint, Gate};
use crate::plan::{Operation, Request, NEW};
use crate::{
    create_once_reading, Checkpoint, MarketError, Marketplace, PhaseCall, Sale, READS_ONLY,
};
use domain::drift::{self, Difference, Shown, ShownVariant};
use domain::{Action, Connection, MarketplaceInfo, Offer, Product, ProductStatus};

pub struct ShopifyGraphql {
    api: Arc<Endpoint>,
    /// A drift check's reads, gathered into `nodes` queries.
    reads: Gatherer<Read>,
    /// What the answers taught of the shop's costs and API version.
    costs: Arc<Costs>,
    /// The shop's publications and location, looked up once a run, when first needed.
    setup: tokio::sync::OnceCell<Setup>,
    /// The custom id's definition, made sure of once a run, before its first create.
    custom_id: tokio::sync::OnceCell<()>,
    /// The publications a published product goes on, by name (`settings.publications`).
    publication_names: Vec<String>,
    /// The location stock is set at (`settings.location_id`), when not the shop's primary.
    location_id: Option<String>,
}

/// The publications products go on by default: the Online Store's.
pub const DEFAULT_PUBLICATIONS: &str = "Online Store";

/// The most nodes a connection answers (shopify.dev, "Paginating results with GraphQL": "up
/// to a maximum of 250 resources"); campaignd sends no product of more variants or images.
const MOST_NODES: usize = 250;

const PRODUCT_UPDATE: &str = "mutation productUpdate($product: ProductUpdateInput!) { productUpdate(product: $product) { product { id status } userErrors { field message } } }";
const PRODUCT_DELETE: &str = "mutation productDelete($input: ProductDeleteInput!) { productDelete(input: $input) { deletedProductId userErrors { field message } } }";
/// Puts a product on the publications named (shopify.dev, `publishablePublish`; scope
/// `write_publications`).
const PUBLISHABLE_PUBLISH: &str = "mutation publishablePublish($id: ID!, $input: [PublicationInput!]!) { publishablePublish(id: $id, input: $input) { userErrors { field message } } }";
/// A listed product published again: its status and its publications in one request (the two
/// mutations run one after the other).
const PUBLISH: &str = "mutation publish($product: ProductUpdateInput!, $id: ID!, $input: [PublicationInput!]!) { productUpdate(product: $product) { product { id status } userErrors { field message } } publishablePublish(id: $id, input: $input) { userErrors { field message } } }";
/// The shop's publications (the catalog's title names one; `name` is deprecated) and its
/// primary location (`location` without an id).
const SETUP: &str = "query setup { publications(first: 25) { nodes { id name catalog { title } } } location { id } }";

/// Where a product's custom id lives: the app's own namespace, key `sku` (a metafield of type
/// `id`, unique across the shop's products: shopify.dev, "Working with custom IDs").
const CUSTOM_ID: (&str, &str) = ("$app", "sku");
/// Makes the custom id's definition (shopify.dev, `metafieldDefinitionCreate`; a definition
/// that exists already is refused as `TAKEN`).
const DEFINITION_CREATE: &str = "mutation metafieldDefinitionCreate($definition: MetafieldDefinitionInput!) { metafieldDefinitionCreate(definition: $definition) { createdDefinition { id } userErrors { field message code } } }";

/// `productSet`, answering as many variants and media as it sets.
fn product_set_query(variants: usize, media: usize) -> String {
    format!(
        "mutation productSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {{ \
         productSet(synchronous: true, input: $input, identifier: $identifier) {{ product {{ id \
         status variants(first: {}) {{ nodes {{ id sku }} }} media(first: {}) {{ nodes {{ id }} \
         }} }} userErrors {{ field message code }} }} }}",
        variants.clamp(1, MOST_NODES),
        media.clamp(1, MOST_NODES)
    )
}

/// What Shopify asks to be available before a document runs, by its documented model: each
/// mutation 10 points, `productSet` 10, 0.2 a variant and 1.9 a product's file (shopify.dev
/// changelog, 2025-10: "Base cost: 10 points… Per variant: 0.2… Per product file: 1.9"); a
/// query 1; and each connection the selection asks `first: N` of, 2 and N.
fn requested_cost(query: &str, variants: usize, files: usize) -> f64 {
    let selection: f64 = query
        .match_indices("first:")
        .filter_map(|(at, _)| {
            let rest = query[at + "first:".len()..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<f64>().ok()
        })
        .map(|n| 2.0 + n)
        .sum();
    if !query.starts_with("mutation") {
        return 1.0 + selection;
    }
    let mut base = 0.0;
    if query.contains("productSet(") {
        base += (10.0 + 0.2 * variants as f64 + 1.9 * files as f64).ceil();
    }
    for other in [
        "productUpdate(",
        "productDelete(",
        "publishablePublish(",
        "metafieldDefinitionCreate(",
    ] {
        if query.contains(other) {
            base += 10.0;
        }
    }
    base + selection
}

/// The operation's name: the word after `mutation` or `query`.
fn name_of(query: &str) -> &str {
    let rest = query
        .strip_prefix("mutation ")
        .or_else(|| query.strip_prefix("query "))
        .unwrap_or("");
    rest.split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("")
}

/// What a plan takes a SKU look-up to answer: nothing found.
fn nothing() -> Value {
    json!({"productVariants": {"edges": []}})
}

/// A product's item of a `nodes` read, as a dry run records it, with the points it asks.
fn planned_read(r: &Read) -> Request {
    let query = nodes_query(r.variants, r.media);
    let body = json!({"query": query, "variables": {"ids": [product_gid(&r.id)]}});
    Request::graphql("nodes", requested_cost(&query, 0, 0), &body).batched("ids")
}

/// What a run learns of the shop from its answers.
struct Costs {
    /// By operation name, how many points Shopify asked beyond the documented model (its
    /// `requestedQueryCost`), which the next call of that name asks for too.
    extra: std::sync::Mutex<std::collections::HashMap<String, f64>>,
    /// The version the requests name, and whether a different one serving them was logged.
    version: String,
    told: std::sync::atomic::AtomicBool,
    connection: domain::Id,
}

impl Costs {
    fn extra(&self, name: &str) -> f64 {
        // A plain map: a panic elsewhere cannot leave it inconsistent.
        let extra = self.extra.lock().unwrap_or_else(|p| p.into_inner());
        extra.get(name).copied().unwrap_or(0.0)
    }

    /// Takes an answer's `requestedQueryCost` for a call whose documented cost was
    /// `documented`.
    fn learn(&self, name: &str, documented: f64, reported: Option<f64>) {
        let Some(reported) = reported else {
            return;
        };
        let mut extra = self.extra.lock().unwrap_or_else(|p| p.into_inner());
        extra.insert(name.to_string(), (reported - documented).max(0.0));
    }

    /// Logs, once, that Shopify served the requests with another version than they name
    /// (it falls forward to its oldest supported version).
    fn served(&self, headers: &reqwest::header::HeaderMap) {
        let served = headers
            .get("X-Shopify-API-Version")
            .and_then(|v| v.to_str().ok());
        if let Some(served) = served.filter(|s| *s != self.version) {
            if !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    connection_id = self.connection,
                    asked = %self.version,
                    served,
                    "Shopify answered with another API version than the connection names"
                );
            }
        }
    }
}

/// The shop's publications products go on, and the location their stock is set at.
#[derive(Debug, Clone)]
struct Setup {
    /// (global id, name) of each publication.
    publications: Vec<(String, String)>,
    location: String,
}

impl Setup {
    fn input(&self) -> Value {
        Value::Array(
            self.publications
                .iter()
                .map(|(id, _)| json!({"publicationId": id}))
                .collect(),
        )
    }

    /// The names of the publications a product with these publication ids is not on.
    fn missing(&self, on: &[String]) -> Vec<&str> {
        self.publications
            .iter()
            .filter(|(id, _)| !on.contains(id))
            .map(|(_, name)| name.as_str())
            .collect()
    }
}

fn product_gid(id: &str) -> String {
    format!("gid://shopify/Product/{id}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OptionValue<'a> {
    option_name: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VariantInput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    sku: &'a str,
    price: String,
    /// `null` takes an ended sale's struck-through price away.
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at_price: Option<Option<String>>,
    option_values: Vec<OptionValue<'a>>,
    /// Tracked, so the quantities show and sell down.
    inventory_item: InventoryItem,
    /// The stock at the connection's location.
    inventory_quantities: Vec<InventoryQuantity<'a>>,
    /// The variant's GTIN: `barcode`, which every supported version takes (`barcodes`, its
    /// successor, exists from 2026-10 only, and a variant cannot set both).
    #[serde(skip_serializing_if = "Option::is_none")]
    barcode: Option<&'a str>,
}

#[derive(Serialize)]
struct InventoryItem {
    tracked: bool,
}

/// `ProductSetInventoryInput`: `locationId`, `name` ("available" or "on_hand"), `quantity`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InventoryQuantity<'a> {
    location_id: &'a str,
    name: &'static str,
    quantity: i64,
}

impl ShopifyGraphql {
    pub fn new(connection: &Connection, gate: Gate) -> ShopifyGraphql {
        let api = Arc::new(super::endpoint(connection, gate, hold_of_graphql));
        let costs = Arc::new(Costs {
            extra: std::sync::Mutex::default(),
            version: super::api_version(connection),
            told: std::sync::atomic::AtomicBool::new(false),
            connection: connection.id,
        });
        ShopifyGraphql {
            reads: Gatherer::new(NODES_AT_ONCE, nodes(Arc::clone(&api), Arc::clone(&costs)))
                .planned(
                    api.gate(),
                    planned_read,
                    |r| json!({"id": product_gid(&r.id)}),
                ),
            api,
            costs,
            setup: tokio::sync::OnceCell::new(),
            custom_id: tokio::sync::OnceCell::new(),
            publication_names: publication_names(connection),
            location_id: connection.settings.get("location_id").cloned(),
        }
    }

    /// Sends one operation, which does `operation` to the product, under its cost and
    /// answers its `data` (`planned` in a plan); Shopify's `THROTTLED` is transient, other
    /// top-level errors a protocol failure.
    async fn run(
        &self,
        operation: Operation,
        query: &str,
        variables: Value,
        size: (usize, usize),
        planned: Value,
    ) -> Result<Value, MarketError> {
        let documented = requested_cost(query, size.0, size.1);
        let call = (operation, query, variables, documented);
        run_on(&self.api, &self.costs, call, planned).await
    }

    /// The shop's publications and location, looked up on first use. A plan takes the
    /// shop for one that has them, named by placeholders.
    async fn setup(&self) -> Result<&Setup, MarketError> {
        self.setup
            .get_or_try_init(|| async {
                let planned = json!({
                    "publications": {"nodes": self.publication_names.iter().map(|n| {
                        json!({"id": format!("{{publication {n}}}"), "name": n})
                    }).collect::<Vec<_>>()},
                    "location": {"id": "{location}"},
                });
                let data = self
                    .run(Operation::Read, SETUP, json!({}), (0, 0), planned)
                    .await?;
                setup_of(&data, &self.publication_names, self.location_id.as_deref())
            })
            .await
    }

    /// Makes sure the shop has the custom id's definition, once a run: created, or refused as
    /// `TAKEN` (made by an earlier run). It changes no product, so a plan lists it as a read.
    async fn custom_id(&self) -> Result<(), MarketError> {
        self.custom_id
            .get_or_try_init(|| async {
                let definition = json!({"definition": {
                    "name": "campaignd SKU",
                    "namespace": CUSTOM_ID.0,
                    "key": CUSTOM_ID.1,
                    "type": "id",
                    "ownerType": "PRODUCT",
                }});
                let planned = json!({"metafieldDefinitionCreate": {"userErrors": []}});
                let data = self
                    .run(
                        Operation::Read,
                        DEFINITION_CREATE,
                        definition,
                        (0, 0),
                        planned,
                    )
                    .await?;
                let errors = data
                    .pointer("/metafieldDefinitionCreate/userErrors")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                match errors
                    .iter()
                    .find(|e| e.get("code").and_then(Value::as_str) != Some("TAKEN"))
                {
                    None => Ok(()),
                    Some(e) => Err(MarketError::Rejected {
                        status: 422,
                        message: format!(
                            "Shopify refused the definition of campaignd's custom id ({}): {}",
                            CUSTOM_ID.1,
                            e.get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("refused")
                        ),
                    }),
                }
            })
            .await
            .copied()
    }

    /// A mutation's payload, or its `userErrors` as the product's refusal (a product that no
    /// longer exists as a 404, which the callers read as gone).
    /// (`operation` says what it does to the product; a plan takes `planned` for its payload.)
    async fn mutate(
        &self,
        operation: Operation,
        query: &str,
        name: &str,
        variables: Value,
        variants: (usize, usize),
        planned: Value,
    ) -> Result<Value, MarketError> {
        let planned = json!({ name: planned });
        let data = self
            .run(operation, query, variables, variants, planned)
            .await?;
        let payload = data
            .get(name)
            .cloned()
            .ok_or_else(|| MarketError::Protocol(format!("no {name} in the answer")))?;
        // Every mutation the document ran: the first one's refusal stands for all.
        let errors: Vec<Value> = data
            .as_object()
            .into_iter()
            .flat_map(|fields| fields.values())
            .filter_map(|p| p.get("userErrors").and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect();
        if errors.is_empty() {
            return Ok(payload);
        }
        let gone = errors.iter().any(|e| {
            e.get("code").and_then(Value::as_str) == Some("PRODUCT_DOES_NOT_EXIST")
                || e.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.contains("does not exist"))
        });
        let message = errors
            .iter()
            .map(|e| {
                // The field's last name (not an index), as REST names it: "variants".
                let field = e.get("field").and_then(Value::as_array).and_then(|f| {
                    f.iter()
                        .rev()
                        .filter_map(Value::as_str)
                        .find(|s| s.parse::<usize>().is_err() && *s != "input")
                });
                let text = e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("refused");
                match field {
                    Some(f) => format!("{f} {text}"),
                    None => text.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(MarketError::Rejected {
            status: if gone { 404 } else { 422 },
            message,
        })
    }

    /// The `productSet` input: options, variants (a product without variants as its one
    /// default variant) and images, naming what Shopify already has by id so it is kept.
    fn input(
        p: &Product,
        pricing: &Sale,
        info: &MarketplaceInfo,
        status: &str,
        location: &str,
    ) -> (Value, usize, usize) {
        let stock = |quantity: i64| {
            vec![InventoryQuantity {
                location_id: location,
                name: "available",
                quantity,
            }]
        };
        let mut names: Vec<&str> = Vec::new();
        let mut values: Vec<Vec<&str>> = Vec::new();
        for v in &p.variants {
            for (name, value) in &v.options {
                let at = match names.iter().position(|n| n == name) {
                    Some(at) => at,
                    None => {
                        names.push(name);
                        values.push(Vec::new());
                        names.len() - 1
                    }
                };
                if !values[at].contains(&value.as_str()) {
                    values[at].push(value);
                }
            }
        }
        names.truncate(3);
        values.truncate(3);
        let variant_id = |sku: &str| {
            info.variant_id(sku)
                .map(|id| format!("gid://shopify/ProductVariant/{id}"))
        };
        let variants: Vec<VariantInput<'_>> = if p.variants.is_empty() {
            let (price, compare_at_price) = shown(pricing, None);
            names = vec!["Title"];
            values = vec![vec!["Default Title"]];
            vec![VariantInput {
                id: variant_id(&p.sku),
                sku: &p.sku,
                price,
                compare_at_price,
                option_values: vec![OptionValue {
                    option_name: "Title",
                    name: "Default Title",
                }],
                inventory_item: InventoryItem { tracked: true },
                inventory_quantities: stock(p.stock),
                barcode: p.details.barcode.as_deref(),
            }]
        } else {
            p.variants
                .iter()
                .map(|v| {
                    let (price, compare_at_price) = shown(pricing, Some(v));
                    VariantInput {
                        id: variant_id(&v.sku),
                        sku: &v.sku,
                        price,
                        compare_at_price,
                        option_values: names
                            .iter()
                            .filter_map(|name| {
                                Some(OptionValue {
                                    option_name: name,
                                    name: v.options.get(*name)?,
                                })
                            })
                            .collect(),
                        inventory_item: InventoryItem { tracked: true },
                        inventory_quantities: stock(v.stock),
                        barcode: v.barcode.as_deref(),
                    }
                })
                .collect()
        };
        let mut images: Vec<_> = p.images.iter().collect();
        images.sort_by_key(|i| i.position);
        let files: Vec<Value> = images
            .iter()
            .map(|i| match info.image_id(&i.url) {
                Some(id) => json!({"id": format!("gid://shopify/MediaImage/{id}")}),
                None => json!({"originalSource": i.url, "contentType": "IMAGE"}),
            })
            .collect();
        let options: Vec<Value> = names
            .iter()
            .zip(&values)
            .map(|(name, vs)| {
                json!({"name": name, "values": vs.iter().map(|v| json!({"name": v})).collect::<Vec<_>>()})
            })
            .collect();
        let (count, file_count) = (variants.len(), files.len());
        let mut input = json!({
            "title": p.name,
            "descriptionHtml": p.description,
            "status": status,
            "productOptions": options,
            "variants": variants,
            "files": files,
        });
        // The brand is the product's vendor; without one the shop's own stays.
        if let Some(brand) = &p.details.brand {
            input["vendor"] = json!(brand);
        }
        (input, count, file_count)
    }

    /// Takes the remote ids from a product node: variants by SKU, images by position.
    fn adopt(p: &Product, info: &mut MarketplaceInfo, node: &Value) -> Result<(), MarketError> {
        let gid = node.get("id").and_then(Value::as_str).unwrap_or("");
        // A plan's product is `{new}`, what its create would make.
        let id = gid_number(gid)
            .map(|n| n.to_string())
            .or_else(|| gid.ends_with(NEW).then(|| NEW.to_string()))
            .ok_or_else(|| MarketError::Protocol("a product without an id".to_string()))?;
        info.product_id = Some(id.to_string());
        if let Some(status) = node.get("status").and_then(Value::as_str) {
            info.remote_status = Some(status.to_lowercase());
        }
        let nodes = |path: &str| {
            node.pointer(path)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for v in nodes("/variants/nodes") {
            let (Some(sku), Some(vid)) = (
                v.get("sku").and_then(Value::as_str),
                v.get("id").and_then(Value::as_str).and_then(gid_number),
            ) else {
                continue;
            };
            if sku == p.sku || p.variants.iter().any(|pv| pv.sku == sku) {
                info.set_variant_id(sku, vid.to_string());
            }
        }
        info.images_by_position(
            p,
            nodes("/media/nodes").iter().map(|theirs| {
                let id = gid_number(theirs.get("id")?.as_str()?)?;
                Some(id.to_string())
            }),
        );
        Ok(())
    }

    /// The `productSet` of the product as `status`, with its stock at the setup's location.
    fn set_operation(
        p: &Product,
        pricing: &Sale,
        info: &MarketplaceInfo,
        status: &str,
        location: &str,
    ) -> (String, Value, (usize, usize)) {
        let (mut input, variants, files) = Self::input(p, pricing, info, status, location);
        // A create upserts by the product's custom id, its SKU: sent again while the first
        // may still land, it updates whichever product the first made, and Shopify keeps the
        // value unique, so one of two creates racing is refused rather than made twice.
        let identifier = match info.product_id.as_deref() {
            Some(id) => json!({"id": product_gid(id)}),
            None => {
                input["metafields"] = json!([{
                    "namespace": CUSTOM_ID.0, "key": CUSTOM_ID.1, "type": "id", "value": p.sku,
                }]);
                json!({"customId": {"namespace": CUSTOM_ID.0, "key": CUSTOM_ID.1, "value": p.sku}})
            }
        };
        (
            product_set_query(variants, files),
            json!({"input": input, "identifier": identifier}),
            (variants, files),
        )
    }

    async fn product_set(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &MarketplaceInfo,
        status: &str,
        setup: &Setup,
    ) -> Result<Value, MarketError> {
        let (query, variables, size) =
            Self::set_operation(p, pricing, info, status, &setup.location);
        let (operation, id) = match &info.product_id {
            Some(id) => (Operation::Update, id.as_str()),
            None => (Operation::Create, NEW),
        };
        let planned = json!({"product": {"id": product_gid(id)}});
        let payload = self
            .mutate(operation, &query, "productSet", variables, size, planned)
            .await?;
        payload
            .get("product")
            .cloned()
            .filter(|p| !p.is_null())
            .ok_or_else(|| MarketError::Protocol("productSet answered no product".to_string()))
    }

    /// Creates the product, then puts it on its publications (a product made through the
    /// GraphQL API is on no sales channel until then). Between the two the product is marked
    /// unpublished, so that whatever carries it on publishes it.
    async fn create(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let setup = self.setup().await?;
        self.custom_id().await?;
        let snapshot = info.clone();
        // Something created that cannot be read is looked up by the next attempt.
        create_once_reading(
            info,
            checkpoint,
            self.product_set(p, pricing, &snapshot, "ACTIVE", setup),
            |info, node| Self::adopt(p, info, &node),
        )
        .await?;
        info.remote_status = Some(UNPUBLISHED.to_string());
        checkpoint(info).await?;
        self.put_on_publications(info, setup, checkpoint).await
    }

    async fn put_on_publications(
        &self,
        info: &mut MarketplaceInfo,
        setup: &Setup,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(id) = info.product_id.clone() else {
            return Ok(());
        };
        self.mutate(
            Operation::Update,
            PUBLISHABLE_PUBLISH,
            "publishablePublish",
            json!({"id": product_gid(&id), "input": setup.input()}),
            (0, 0),
            json!({}),
        )
        .await?;
        info.remote_status = Some("active".to_string());
        checkpoint(info).await
    }

    async fn update(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let setup = self.setup().await?;
        let unpublished = info.remote_status.as_deref() == Some(UNPUBLISHED);
        let node = self.product_set(p, pricing, info, "ACTIVE", setup).await?;
        Self::adopt(p, info, &node)?;
        if unpublished {
            info.remote_status = Some(UNPUBLISHED.to_string());
            checkpoint(info).await?;
            return self.put_on_publications(info, setup, checkpoint).await;
        }
        checkpoint(info).await
    }

    async fn set_status(
        &self,
        info: &mut MarketplaceInfo,
        status: &str,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let id = remote_id(info)?;
        self.mutate(
            Operation::Status,
            PRODUCT_UPDATE,
            "productUpdate",
            json!({"product": {"id": product_gid(&id), "status": status}}),
            (0, 0),
            json!({}),
        )
        .await?;
        info.remote_status = Some(status.to_lowercase());
        checkpoint(info).await
    }

    /// A listed product made ACTIVE again and put on its publications, in one request (which
    /// also puts back a product someone took off its sales channels).
    async fn activate(
        &self,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let id = remote_id(info)?;
        let setup = self.setup().await?;
        self.mutate(
            Operation::Status,
            PUBLISH,
            "productUpdate",
            publish_variables(&id, setup),
            (0, 0),
            json!({}),
        )
        .await?;
        info.remote_status = Some("active".to_string());
        checkpoint(info).await
    }

    async fn publish(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        all: bool,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if info.product_id.is_none() {
            return self.create(p, pricing, info, checkpoint).await;
        }
        let result = if all {
            self.update(p, pricing, info, checkpoint).await
        } else {
            self.activate(info, checkpoint).await
        };
        match result {
            Err(MarketError::Rejected { status: 404, .. }) => {
                // Deleted in the shop meanwhile: publishing means creating it again.
                *info = MarketplaceInfo::default();
                checkpoint(info).await?;
                self.create(p, pricing, info, checkpoint).await
            }
            other => other,
        }
    }

    async fn delete(
        &self,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if let Some(id) = info.product_id.clone() {
            let done = self
                .mutate(
                    Operation::Delete,
                    PRODUCT_DELETE,
                    "productDelete",
                    json!({"input": {"id": product_gid(&id)}}),
                    (0, 0),
                    json!({}),
                )
                .await;
            match done {
                Ok(_) | Err(MarketError::Rejected { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        *info = MarketplaceInfo::default();
        info.remote_status = Some("deleted".to_string());
        checkpoint(info).await
    }

    /// Finds the product holding `sku`.
    async fn find_by_sku(&self, sku: &str) -> Result<Option<u64>, MarketError> {
        Ok(self.holders(sku).await?.into_iter().next())
    }

    /// Every product holding `sku`.
    async fn holders(&self, sku: &str) -> Result<Vec<u64>, MarketError> {
        let query = json!({"query": format!("sku:\"{sku}\"")});
        let data = self
            .run(Operation::Read, VARIANT_BY_SKU, query, (0, 0), nothing())
            .await?;
        products_with_sku(&data, sku)
    }
}

/// The product's Shopify id, which a status change needs.
fn remote_id(info: &MarketplaceInfo) -> Result<String, MarketError> {
    info.product_id
        .clone()
        .ok_or_else(|| MarketError::Protocol("the product has no Shopify id yet".to_string()))
}

/// A product created whose publication has not been confirmed yet (its stored status).
const UNPUBLISHED: &str = "active, unpublished";

fn publish_variables(id: &str, setup: &Setup) -> Value {
    json!({
        "product": {"id": product_gid(id), "status": "ACTIVE"},
        "id": product_gid(id),
        "input": setup.input(),
    })
}

/// The connection's publications by name (`settings.publications`, comma-separated).
fn publication_names(connection: &Connection) -> Vec<String> {
    connection
        .settings
        .get("publications")
        .map_or(DEFAULT_PUBLICATIONS, String::as_str)
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the setup query's answer: the publications named (by their catalog's title, or their
/// deprecated name where a publication has no catalog) and the location stock goes to (the
/// connection's, or the shop's primary). A name the shop does not have is the connection's
/// fault, said with the names it has.
fn setup_of(
    data: &Value,
    names: &[String],
    location_id: Option<&str>,
) -> Result<Setup, MarketError> {
    let listed: Vec<(String, String)> = data
        .pointer("/publications/nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let id = n.get("id")?.as_str()?.to_string();
            let title = n
                .pointer("/catalog/title")
                .and_then(Value::as_str)
                .or_else(|| n.get("name").and_then(Value::as_str))?;
            Some((id, title.to_string()))
        })
        .collect();
    let mut publications = Vec::new();
    for name in names {
        match listed
            .iter()
            .find(|(_, title)| title.eq_ignore_ascii_case(name))
        {
            Some(found) => publications.push(found.clone()),
            None => {
                let known: Vec<&str> = listed.iter().map(|(_, t)| t.as_str()).collect();
                return Err(MarketError::Rejected {
                    status: 422,
                    message: format!(
                        "the shop has no publication named {name:?} (settings.publications); it \
                         has: {}",
                        known.join(", ")
                    ),
                });
            }
        }
    }
    let location = match location_id {
        Some(id) if id.starts_with("gid://") => id.to_string(),
        Some(id) => format!("gid://shopify/Location/{id}"),
        None => data
            .pointer("/location/id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                MarketError::Protocol("the shop answered no primary location".to_string())
            })?,
    };
    Ok(Setup {
        publications,
        location,
    })
}

/// Sends one operation asking for its documented cost and what earlier answers said it costs
/// beyond, and answers its `data`; Shopify's `THROTTLED` is transient, other top-level errors a
/// protocol failure.
async fn run_on(
    api: &Endpoint,
    costs: &Costs,
    (operation, query, variables, documented): (Operation, &str, Value, f64),
    planned: Value,
) -> Result<Value, MarketError> {
    let name = name_of(query);
    let request = api
        .request(Method::POST, "/graphql.json")
        .json(&json!({"query": query, "variables": variables}));
    let cost = documented + costs.extra(name);
    let planned = json!({ "data": planned });
    let (answer, headers): (Value, _) = api
        .exchange_with_headers(operation, request, cost, planned)
        .await?;
    costs.served(&headers);
    costs.learn(
        name,
        documented,
        answer
            .pointer("/extensions/cost/requestedQueryCost")
            .and_then(Value::as_f64),
    );
    if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
        let throttled = errors
            .iter()
            .any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED"));
        if throttled {
            return Err(MarketError::Transient(
                "Shopify throttled the call (THROTTLED): not enough points in the bucket"
                    .to_string(),
            ));
        }
        return Err(MarketError::Protocol(format!(
            "GraphQL errors: {}",
            Value::Array(errors.clone())
        )));
    }
    answer
        .get("data")
        .cloned()
        .ok_or_else(|| MarketError::Protocol("a GraphQL answer without data".to_string()))
}

/// Products as a drift check reads them, several at once: status, publications, variants with
/// their prices and stock, and media, asking for one more variant and medium than campaignd
/// sent (so that extra ones show; 250 at most, what a connection answers) and no more, since
/// Shopify charges for what a query asks.
fn nodes_query(variants: u32, media: u32) -> String {
    format!(
        "query nodes($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on Product {{ id status \
         resourcePublications(first: 10) {{ nodes {{ publication {{ id }} }} }} \
         variants(first: {}) {{ nodes {{ id sku price inventoryQuantity }} }} \
         media(first: {}) {{ nodes {{ id }} }} }} }} }}",
        (variants as usize + 1).min(MOST_NODES),
        (media as usize + 1).min(MOST_NODES)
    )
}

/// Products one `nodes` read asks for: five products of 100 variants and 50 media stay
/// within the smallest bucket Shopify gives (1,000 points).
const NODES_AT_ONCE: usize = 5;

/// A product a drift check reads: its id, and how many variants and media campaignd sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Read {
    id: String,
    variants: u32,
    media: u32,
}

/// A `nodes` read of products: those found, by what was asked.
fn nodes(api: Arc<Endpoint>, costs: Arc<Costs>) -> Fetch<Read> {
    Arc::new(move |reads: Vec<Read>| {
        let (api, costs) = (Arc::clone(&api), Arc::clone(&costs));
        Box::pin(async move {
            let variants = reads.iter().map(|r| r.variants).max().unwrap_or(0);
            let media = reads.iter().map(|r| r.media).max().unwrap_or(0);
            let query = nodes_query(variants, media);
            let gids: Vec<String> = reads.iter().map(|r| product_gid(&r.id)).collect();
            let cost = requested_cost(&query, 0, 0) * gids.len() as f64;
            let call = (Operation::Read, query.as_str(), json!({"ids": gids}), cost);
            let data = run_on(&api, &costs, call, json!({"nodes": []})).await?;
            let found = data
                .get("nodes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let by_id: std::collections::HashMap<String, Value> = found
                .into_iter()
                .filter(|n| !n.is_null())
                .filter_map(|n| Some((gid_number(n.get("id")?.as_str()?)?.to_string(), n)))
                .collect();
            Ok(reads
                .into_iter()
                .filter_map(|r| {
                    let node = by_id.get(&r.id)?.clone();
                    Some((r, node))
                })
                .collect())
        })
    })
}

/// The product as reconcile reads it.
const PRODUCT: &str = "query product($id: ID!) { product(id: $id) { id status variants(first: 100) { nodes { id sku } } media(first: 50) { nodes { id } } } }";

#[async_trait]
impl Marketplace for ShopifyGraphql {
    /// A create upserts by the product's custom id (its SKU, unique in the shop): a create of
    /// unknown outcome is sent again at once, with no settle window, since a second one
    /// updates what the first made, whichever lands first.
    fn creates_are_idempotent(&self) -> bool {
        true
    }

    fn finds_listed(&self) -> bool {
        true
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
            let gid = product_gid(&id.to_string());
            let planned = json!({"product": {"id": gid}});
            let data = self
                .run(
                    Operation::Read,
                    PRODUCT,
                    json!({"id": gid}),
                    (0, 0),
                    planned,
                )
                .await?;
            match data.get("product").filter(|n| !n.is_null()) {
                Some(node) => {
                    Self::adopt(p, info, node)?;
                    // Whether our create was published before the answer was lost is not
                    // known: whatever carries it on publishes it.
                    if info.remote_status.as_deref() == Some("active") {
                        info.remote_status = Some(UNPUBLISHED.to_string());
                    }
                }
                None => *info = MarketplaceInfo::default(),
            }
        }
        Ok(())
    }

    /// Up to 25 products a `productVariants` search joined by `OR`; an answer that comes back
    /// full has the SKUs it does not show looked up one by one.
    async fn find_listed(
        &self,
        products: &[&Product],
    ) -> Result<std::collections::HashMap<domain::Id, String>, MarketError> {
        let mut found = std::collections::HashMap::new();
        for some in products.chunks(LISTED_AT_ONCE) {
            let (query, search) = listed_query(&naming_skus(some));
            let search = json!({"query": search});
            let data = self
                .run(Operation::Read, &query, search, (0, 0), nothing())
                .await?;
            let (listed, unsure) = listed_of(&data, some)?;
            found.extend(listed);
            for p in unsure {
                if let Some(id) = self.find_by_sku(naming_sku(p)).await? {
                    found.insert(p.id, id.to_string());
                }
            }
        }
        Ok(found)
    }

    fn read_batch_size(&self) -> usize {
        self.reads.size()
    }

    /// A standard plan's bucket: 2,000 points, restored at 100 a second.
    fn points_bucket(&self) -> Option<(f64, f64)> {
        Some((2000.0, 100.0))
    }

    async fn drift(
        &self,
        p: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        let stored = info.product_id.clone();
        if let Some(id) = &stored {
            let read = Read {
                id: id.clone(),
                variants: p.variants.len().max(1) as u32,
                media: p.images.len() as u32,
            };
            if let Some(node) = self.reads.get(read).await? {
                let setup = self.setup().await?;
                let variants = node
                    .pointer("/variants/nodes")
                    .and_then(Value::as_array)
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|v| ShownVariant {
                                sku: v["sku"].as_str().unwrap_or_default().to_string(),
                                price: v["price"].as_str().and_then(|p| p.parse().ok()),
                                stock: v["inventoryQuantity"].as_i64(),
                            })
                            .collect()
                    });
                // An active product off one of its publications is not what campaignd left:
                // buyers cannot see it there.
                let on: Vec<String> = node
                    .pointer("/resourcePublications/nodes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.pointer("/publication/id")?.as_str().map(str::to_string))
                    .collect();
                let found_status = node["status"].as_str().map(|word| {
                    let missing = setup.missing(&on);
                    match (word, missing.is_empty()) {
                        ("ACTIVE", false) => format!("ACTIVE, not on {}", missing.join(", ")),
                        _ => word.to_string(),
                    }
                });
                let shown = Shown {
                    status: found_status,
                    price: None,
                    stock: None,
                    variants,
                    images: node
                        .pointer("/media/nodes")
                        .and_then(Value::as_array)
                        .map(|m| m.len() as u32),
                };
                let word = status_word(status).to_uppercase();
                let mut expected = expected(p, &offer, &word);
                // Stock is sent, so it shows: each variant's (a product without variants as
                // its one default variant).
                if let Some(variants) = &mut expected.variants {
                    for v in variants.iter_mut() {
                        v.stock = Some(
                            p.variants
                                .iter()
                                .find(|pv| pv.sku == v.sku)
                                .map_or(p.stock, |pv| pv.stock),
                        );
                    }
                }
                let mut found = drift::compare(&expected, &shown);
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
                self.publish(product, &pricing, info, false, checkpoint)
                    .await
            }
            Action::Republish => {
                self.publish(product, &pricing, info, true, checkpoint)
                    .await
            }
            Action::Pause => self.set_status(info, "DRAFT", checkpoint).await,
            Action::Finish => self.set_status(info, "ARCHIVED", checkpoint).await,
            Action::Delete => self.delete(info, checkpoint).await,
            Action::Drift | Action::Reconcile => Err(READS_ONLY.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_asked_for_follows_shopifys_model() {
        // 10 + 0.4 for two variants + 3.8 for two files, rounded up; the answer's selection
        // of two variants and two media.
        assert_eq!(
            requested_cost(&product_set_query(2, 2), 2, 2),
            15.0 + 4.0 + 4.0
        );
        assert_eq!(requested_cost(PRODUCT_UPDATE, 0, 0), 10.0);
        assert_eq!(requested_cost(PUBLISH, 0, 0), 20.0);
        assert_eq!(requested_cost(PRODUCT, 0, 0), 1.0 + 102.0 + 52.0);
        assert_eq!(requested_cost(VARIANT_BY_SKU, 0, 0), 1.0 + 7.0);
        assert_eq!(requested_cost(SETUP, 0, 0), 1.0 + 27.0);
        assert_eq!(name_of(PUBLISH), "publish");
        assert_eq!(name_of(&product_set_query(1, 1)), "productSet");
    }

    #[test]
    fn an_answer_asking_more_than_the_model_teaches_the_next_call_of_its_kind() {
        let costs = Costs {
            extra: std::sync::Mutex::default(),
            version: "2026-10".to_string(),
            told: std::sync::atomic::AtomicBool::new(false),
            connection: 1,
        };
        assert_eq!(costs.extra("productSet"), 0.0);
        costs.learn("productSet", 23.0, Some(31.0));
        assert_eq!(costs.extra("productSet"), 8.0);
        assert_eq!(costs.extra("nodes"), 0.0, "by kind of call");
        costs.learn("productSet", 23.0, Some(20.0));
        assert_eq!(costs.extra("productSet"), 0.0, "never less than the model");
        costs.learn("productSet", 23.0, None);
        assert_eq!(costs.extra("productSet"), 0.0);
    }

    #[test]
    fn the_setup_finds_publications_by_catalog_title_and_says_which_exist() {
        let data = json!({
            "publications": {"nodes": [
                {"id": "gid://shopify/Publication/1", "name": "Online Store",
                 "catalog": {"title": "Online Store"}},
                {"id": "gid://shopify/Publication/2", "name": "Old name", "catalog": null},
            ]},
            "location": {"id": "gid://shopify/Location/9"},
        });
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let setup = setup_of(&data, &names(&["online store", "Old name"]), None).unwrap();
        assert_eq!(
            setup.publications,
            [
                (
                    "gid://shopify/Publication/1".to_string(),
                    "Online Store".to_string()
                ),
                (
                    "gid://shopify/Publication/2".to_string(),
                    "Old name".to_string()
                )
            ]
        );
        assert_eq!(setup.location, "gid://shopify/Location/9");
        assert_eq!(
            setup.missing(&["gid://shopify/Publication/2".to_string()]),
            ["Online Store"]
        );
        let chosen = setup_of(&data, &names(&["Online Store"]), Some("44")).unwrap();
        assert_eq!(chosen.location, "gid://shopify/Location/44");
        let wrong = setup_of(&data, &names(&["Shop app"]), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            wrong,
            "the shop has no publication named \"Shop app\" (settings.publications); it has: \
             Online Store, Old name"
        );
    }
}
