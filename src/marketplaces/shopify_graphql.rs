//! Shopify on the GraphQL Admin API (`POST /admin/api/{version}/graphql.json`, the default;
//! `settings.api = "rest"` keeps a connection on REST). A product is created or updated with
//! its options, variants and images in one `productSet` mutation (synchronous), its status
//! changed with `productUpdate` (ACTIVE, DRAFT, ARCHIVED) and removed with `productDelete`; a
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

use super::gather::{Fetch, Gatherer};
use super::http::{Endpoint, Gate};
use super::plan::{Operation, PlanCall, Planned, Request, AS_REPAIRS, NEW};
use super::shopify::{
    expected, gid_number, hold_of_graphql, naming_sku, product_with_sku, shown, status_word,
    VARIANT_BY_SKU,
};
use super::{create_once, Checkpoint, MarketError, Marketplace, PhaseCall, Sale, READS_ONLY};
use crate::domain::drift::{self, Difference, Shown, ShownVariant};
use crate::domain::{Action, Connection, MarketplaceInfo, Offer, Product, ProductStatus};

pub struct ShopifyGraphql {
    api: Arc<Endpoint>,
    /// A drift check's reads, gathered into `nodes` queries.
    reads: Gatherer<Read>,
}

const PRODUCT_SET: &str = "mutation productSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) { productSet(synchronous: true, input: $input, identifier: $identifier) { product { id status variants(first: 100) { nodes { id sku } } media(first: 50) { nodes { id } } } userErrors { field message code } } }";
const PRODUCT_UPDATE: &str = "mutation productUpdate($product: ProductUpdateInput!) { productUpdate(product: $product) { product { id status } userErrors { field message } } }";
const PRODUCT_DELETE: &str = "mutation productDelete($input: ProductDeleteInput!) { productDelete(input: $input) { deletedProductId userErrors { field message } } }";

/// What Shopify asks to be available before a call runs, by its documented model: a mutation
/// 10 points (`productSet` 10 and 0.2 a variant); a query 1 and, for each connection asked
/// `first: N`, 2 and N.
fn requested_cost(query: &str, variants: usize) -> f64 {
    if query.starts_with("mutation productSet") {
        return 10.0 + (0.2 * variants as f64).ceil();
    }
    if query.starts_with("mutation") {
        return 10.0;
    }
    let connections: f64 = query
        .match_indices("first:")
        .filter_map(|(at, _)| {
            let rest = query[at + "first:".len()..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<f64>().ok()
        })
        .map(|n| 2.0 + n)
        .sum();
    1.0 + connections
}

/// A planned operation: `query` under its name, with the points it asks for.
fn operation(query: &str, name: &'static str, variables: Value, variants: usize) -> Request {
    Request::graphql(
        name,
        requested_cost(query, variants),
        &json!({"query": query, "variables": variables}),
    )
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
}

impl ShopifyGraphql {
    pub fn new(connection: &Connection, gate: Gate) -> ShopifyGraphql {
        let api = Arc::new(super::shopify::endpoint(connection, gate, hold_of_graphql));
        ShopifyGraphql {
            reads: Gatherer::new(NODES_AT_ONCE, nodes(Arc::clone(&api))),
            api,
        }
    }

    /// Sends one operation under its cost and answers its `data`; Shopify's `THROTTLED` is
    /// transient, other top-level errors a protocol failure.
    async fn run(
        &self,
        query: &str,
        variables: Value,
        variants: usize,
    ) -> Result<Value, MarketError> {
        run_on(&self.api, query, variables, requested_cost(query, variants)).await
    }

    /// A mutation's payload, or its `userErrors` as the product's refusal (a product that no
    /// longer exists as a 404, which the callers read as gone).
    async fn mutate(
        &self,
        query: &str,
        name: &str,
        variables: Value,
        variants: usize,
    ) -> Result<Value, MarketError> {
        let data = self.run(query, variables, variants).await?;
        let payload = data
            .get(name)
            .cloned()
            .ok_or_else(|| MarketError::Protocol(format!("no {name} in the answer")))?;
        let errors = payload
            .get("userErrors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
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
    fn input(p: &Product, pricing: &Sale, info: &MarketplaceInfo, status: &str) -> (Value, usize) {
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
        let count = variants.len();
        (
            json!({
                "title": p.name,
                "descriptionHtml": p.description,
                "status": status,
                "productOptions": options,
                "variants": variants,
                "files": files,
            }),
            count,
        )
    }

    /// Takes the remote ids from a product node: variants by SKU, images by position.
    fn adopt(p: &Product, info: &mut MarketplaceInfo, node: &Value) -> Result<(), MarketError> {
        let id = gid_number(node.get("id").and_then(Value::as_str).unwrap_or(""))
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
        let mut ours: Vec<_> = p.images.iter().collect();
        ours.sort_by_key(|i| i.position);
        info.image_ids = ours
            .iter()
            .zip(nodes("/media/nodes"))
            .filter_map(|(mine, theirs)| {
                let id = gid_number(theirs.get("id")?.as_str()?)?;
                Some((mine.url.clone(), id.to_string()))
            })
            .collect();
        Ok(())
    }

    async fn product_set(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &MarketplaceInfo,
        status: &str,
    ) -> Result<Value, MarketError> {
        let (input, variants) = Self::input(p, pricing, info, status);
        let identifier = info
            .product_id
            .as_deref()
            .map(|id| json!({"id": product_gid(id)}));
        let payload = self
            .mutate(
                PRODUCT_SET,
                "productSet",
                json!({"input": input, "identifier": identifier}),
                variants,
            )
            .await?;
        payload
            .get("product")
            .cloned()
            .filter(|p| !p.is_null())
            .ok_or_else(|| MarketError::Protocol("productSet answered no product".to_string()))
    }

    async fn create(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let snapshot = info.clone();
        let mut adopted = Ok(());
        create_once(
            info,
            checkpoint,
            self.product_set(p, pricing, &snapshot, "ACTIVE"),
            |info, node| adopted = Self::adopt(p, info, &node),
        )
        .await?;
        if let Err(e) = adopted {
            // Something was created that we could not read: the next attempt looks it up.
            info.create_sent = true;
            checkpoint(info).await?;
            return Err(e);
        }
        Ok(())
    }

    async fn update(
        &self,
        p: &Product,
        pricing: &Sale,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let node = self.product_set(p, pricing, info, "ACTIVE").await?;
        Self::adopt(p, info, &node)?;
        checkpoint(info).await
    }

    async fn set_status(
        &self,
        info: &mut MarketplaceInfo,
        status: &str,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let Some(id) = info.product_id.clone() else {
            return Err(MarketError::Protocol(
                "the product has no Shopify id yet".to_string(),
            ));
        };
        self.mutate(
            PRODUCT_UPDATE,
            "productUpdate",
            json!({"product": {"id": product_gid(&id), "status": status}}),
            0,
        )
        .await?;
        info.remote_status = Some(status.to_lowercase());
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
            self.set_status(info, "ACTIVE", checkpoint).await
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
                    PRODUCT_DELETE,
                    "productDelete",
                    json!({"input": {"id": product_gid(&id)}}),
                    0,
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
        let data = self
            .run(
                VARIANT_BY_SKU,
                json!({"query": format!("sku:\"{sku}\"")}),
                0,
            )
            .await?;
        product_with_sku(&data, sku)
    }
}

/// Sends one operation asking for `cost` points and answers its `data`; Shopify's `THROTTLED`
/// is transient, other top-level errors a protocol failure.
async fn run_on(
    api: &Endpoint,
    query: &str,
    variables: Value,
    cost: f64,
) -> Result<Value, MarketError> {
    let request = api
        .request(Method::POST, "/graphql.json")
        .json(&json!({"query": query, "variables": variables}));
    let answer: Value = api.call_costing(request, cost).await?;
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

/// Products as a drift check reads them, several at once: status, variants with their prices,
/// and media, asking for one more variant and medium than campaignd sent (so that extra ones
/// show) and no more, since Shopify charges for what a query asks.
fn nodes_query(variants: u32, media: u32) -> String {
    format!(
        "query nodes($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on Product {{ id status \
         variants(first: {}) {{ nodes {{ id sku price }} }} media(first: {}) {{ nodes {{ id }} }} \
         }} }} }}",
        variants + 1,
        media + 1
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
fn nodes(api: Arc<Endpoint>) -> Fetch<Read> {
    Arc::new(move |reads: Vec<Read>| {
        let api = Arc::clone(&api);
        Box::pin(async move {
            let variants = reads.iter().map(|r| r.variants).max().unwrap_or(0);
            let media = reads.iter().map(|r| r.media).max().unwrap_or(0);
            let query = nodes_query(variants, media);
            let gids: Vec<String> = reads.iter().map(|r| product_gid(&r.id)).collect();
            let cost = requested_cost(&query, 0) * gids.len() as f64;
            let data = run_on(&api, &query, json!({"ids": gids}), cost).await?;
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
            let data = self
                .run(PRODUCT, json!({"id": product_gid(&id.to_string())}), 0)
                .await?;
            match data.get("product").filter(|n| !n.is_null()) {
                Some(node) => Self::adopt(p, info, node)?,
                None => *info = MarketplaceInfo::default(),
            }
        }
        info.create_sent = false;
        Ok(())
    }

    fn plan_lookup(&self, _: Action, p: &Product, info: &MarketplaceInfo) -> Vec<Request> {
        vec![match &info.product_id {
            Some(id) => operation(PRODUCT, "product", json!({"id": product_gid(id)}), 0),
            None => operation(
                VARIANT_BY_SKU,
                "productVariants",
                json!({"query": format!("sku:\"{}\"", naming_sku(p))}),
                0,
            ),
        }]
    }

    fn plan(&self, call: PlanCall<'_>) -> Planned {
        let PlanCall {
            action,
            product: p,
            offer,
            prices_only,
            info,
            ..
        } = call;
        let pricing = Sale::of(offer, prices_only, info);
        let set = |info: &MarketplaceInfo| {
            let (input, variants) = Self::input(p, &pricing, info, "ACTIVE");
            let identifier = info
                .product_id
                .as_deref()
                .map(|id| json!({"id": product_gid(id)}));
            operation(
                PRODUCT_SET,
                "productSet",
                json!({"input": input, "identifier": identifier}),
                variants,
            )
        };
        let status = |id: &str, status: &str| {
            operation(
                PRODUCT_UPDATE,
                "productUpdate",
                json!({"product": {"id": product_gid(id), "status": status}}),
                0,
            )
        };
        let Some(id) = info.product_id.clone() else {
            return match action {
                // Looked up by its SKU.
                Action::Drift => Planned::op(Operation::Read, self.plan_lookup(action, p, info)),
                Action::Publish | Action::Republish => {
                    let create = set(info);
                    info.product_id = Some(NEW.to_string());
                    Planned::op(Operation::Create, vec![create])
                }
                Action::Delete => {
                    *info = MarketplaceInfo::default();
                    Planned::skip("not on Shopify: nothing to delete")
                }
                _ => Planned::error("the product has no Shopify id yet"),
            };
        };
        match action {
            Action::Reconcile => Planned::error(AS_REPAIRS),
            // One product of a `nodes` read.
            Action::Drift => {
                let query = nodes_query(p.variants.len().max(1) as u32, p.images.len() as u32);
                let mut read = Request::graphql(
                    "nodes",
                    requested_cost(&query, 0),
                    &json!({"query": query, "variables": {"ids": [product_gid(&id)]}}),
                );
                read.item = Some("ids");
                Planned::op(Operation::Read, vec![read])
            }
            Action::Publish => Planned::op(Operation::Status, vec![status(&id, "ACTIVE")]),
            Action::Republish => Planned::op(Operation::Update, vec![set(info)]),
            Action::Pause => Planned::op(Operation::Status, vec![status(&id, "DRAFT")]),
            Action::Finish => Planned::op(Operation::Status, vec![status(&id, "ARCHIVED")]),
            Action::Delete => {
                *info = MarketplaceInfo::default();
                Planned::op(
                    Operation::Delete,
                    vec![operation(
                        PRODUCT_DELETE,
                        "productDelete",
                        json!({"input": {"id": product_gid(&id)}}),
                        0,
                    )],
                )
            }
        }
    }

    fn read_batch_size(&self) -> usize {
        self.reads.size()
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
                let variants = node
                    .pointer("/variants/nodes")
                    .and_then(Value::as_array)
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|v| ShownVariant {
                                sku: v["sku"].as_str().unwrap_or_default().to_string(),
                                price: v["price"].as_str().and_then(|p| p.parse().ok()),
                                stock: None,
                            })
                            .collect()
                    });
                let shown = Shown {
                    status: node["status"].as_str().map(str::to_string),
                    price: None,
                    stock: None,
                    variants,
                    images: node
                        .pointer("/media/nodes")
                        .and_then(Value::as_array)
                        .map(|m| m.len() as u32),
                };
                let word = status_word(status).to_uppercase();
                return Ok(drift::compare(&expected(p, &offer, &word), &shown));
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
        assert_eq!(requested_cost(PRODUCT_SET, 2), 11.0);
        assert_eq!(requested_cost(PRODUCT_UPDATE, 0), 10.0);
        assert_eq!(requested_cost(PRODUCT, 0), 1.0 + 102.0 + 52.0);
        assert_eq!(requested_cost(VARIANT_BY_SKU, 0), 1.0 + 7.0);
    }
}
