//! Dry runs, the marketplace side: what one phase call would send, without sending anything,
//! and the problems a marketplace would refuse that can be seen before sending (`problems`).
//! An adapter's protocol is written once: a dry run executes the very code of the run
//! (`apply`, `find_listed`, `reconcile`, `drift`) on a gate that records each request in a
//! `Recorder` instead of sending it, and answers it as planned: the answer type's `Default`,
//! in which what a create makes has the id `NEW` (`RemoteId`), or what the protocol says a
//! plan takes an answer for (an update's answer names what it updated). Nothing describes
//! an adapter's requests a second time.
//! A plan is made on a scratch copy of the product's `MarketplaceInfo`, which each phase's plan
//! changes as its calls would (a create gives the product the id `NEW`), so that the next
//! phase plans on what the run would then hold.

use serde::Serialize;
use serde_json::Value;

use domain::{Action, MarketplaceInfo, Offer, Phase, Product, System};

/// The id a plan gives what a create would make, in the paths that follow it.
pub const NEW: &str = "{new}";

/// A marketplace's id of what it holds, as its answers give it (a number or a string). In a
/// plan, where nothing is sent, it is `NEW`: what a create would make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteId(pub String);

impl Default for RemoteId {
    fn default() -> RemoteId {
        RemoteId(NEW.to_string())
    }
}

impl std::fmt::Display for RemoteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RemoteId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RemoteId, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(u64),
            Text(String),
        }
        Ok(RemoteId(match Given::deserialize(d)? {
            Given::Number(n) => n.to_string(),
            Given::Text(s) => s,
        }))
    }
}

/// The requests a protocol executed for a plan would have sent, each with what it does to
/// the product, in order. One per dry run and connection; the dry run takes a call's share
/// after each call.
#[derive(Debug, Default)]
pub struct Recorder(std::sync::Mutex<Vec<(Operation, Request)>>);

impl Recorder {
    pub fn record(&self, operation: Operation, request: Request) {
        // A plain list: a panic elsewhere cannot leave it inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((operation, request));
    }

    /// What was recorded since the last take.
    pub fn take(&self) -> Vec<(Operation, Request)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The plan of a call executed on this recorder's gate, which ended in `outcome`: its
    /// requests, and the first operation among them other than a read (a read alone when it
    /// only read). A call that sent nothing names no operation (an earlier phase's stands);
    /// one that failed is the error it failed with.
    pub fn planned(&self, outcome: Result<(), super::MarketError>) -> Planned {
        let recorded = self.take();
        let first = |keep: fn(Operation) -> bool| {
            recorded
                .iter()
                .map(|(operation, _)| *operation)
                .find(|o| keep(*o))
        };
        let operation = first(|o| o != Operation::Read).or(first(|_| true));
        let requests = recorded.into_iter().map(|(_, r)| r).collect();
        match (outcome, operation) {
            (Err(e), _) => Planned {
                requests,
                ..Planned::error(e.to_string())
            },
            (Ok(()), Some(operation)) => Planned::op(operation, requests),
            (Ok(()), None) => Planned::more(requests),
        }
    }
}

/// The GraphQL operation a body's query names (`mutation productSet(…)` → `productSet`).
pub fn graphql_name(body: &Value) -> String {
    let query = body["query"]
        .as_str()
        .unwrap_or_default()
        .trim_start()
        .trim_start_matches("mutation ")
        .trim_start_matches("query ");
    query
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What a call does to the product on the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Create,
    Update,
    /// A status change alone (pause, finish, a publish of a listed product).
    Status,
    Delete,
    /// A read of the product's remote state (a drift check).
    Read,
    /// Nothing is sent for the product; the reason says why.
    Skip,
    /// The call would fail before or at the marketplace; the reason says why.
    Error,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Status => "status",
            Operation::Delete => "delete",
            Operation::Read => "read",
            Operation::Skip => "skip",
            Operation::Error => "error",
        }
    }
}

/// One request a call would send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    /// This product's part of a batch request shared with other products (`create`,
    /// `update`, `delete`): the run sends one such request for up to a batch of them.
    pub item: Option<&'static str>,
    /// The GraphQL operation a `POST /graphql.json` carries, and the points it asks for.
    pub graphql: Option<String>,
    pub cost: Option<f64>,
    pub body: Option<Value>,
}

impl Request {
    pub fn new(method: &'static str, path: impl Into<String>) -> Request {
        Request {
            method,
            path: path.into(),
            item: None,
            graphql: None,
            cost: None,
            body: None,
        }
    }

    /// A GraphQL operation named `name`, asking for `cost` points.
    pub fn graphql(name: &'static str, cost: f64, body: &impl Serialize) -> Request {
        Request {
            graphql: Some(name.to_string()),
            cost: Some(cost),
            ..Request::new("POST", "/graphql.json").with_body(body)
        }
    }

    pub fn with_body(mut self, body: &impl Serialize) -> Request {
        // Bodies are built of plain strings and numbers: serializing them cannot fail.
        self.body = serde_json::to_value(body).ok();
        self
    }

    /// This product's item of a shared batch request.
    pub fn batched(mut self, item: &'static str) -> Request {
        self.item = Some(item);
        self
    }
}

/// What one phase call would do: the operation (none for a phase that goes on with the
/// product's create or update, such as Jumpseller's variants), why, and its requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Planned {
    pub operation: Option<Operation>,
    pub reason: Option<String>,
    pub requests: Vec<Request>,
}

impl Planned {
    pub fn op(operation: Operation, requests: Vec<Request>) -> Planned {
        Planned {
            operation: Some(operation),
            reason: None,
            requests,
        }
    }

    /// Requests that go on with the operation of an earlier phase.
    pub fn more(requests: Vec<Request>) -> Planned {
        Planned {
            operation: None,
            reason: None,
            requests,
        }
    }

    pub fn skip(reason: impl Into<String>) -> Planned {
        Planned {
            operation: Some(Operation::Skip),
            reason: Some(reason.into()),
            requests: Vec::new(),
        }
    }

    pub fn error(reason: impl Into<String>) -> Planned {
        Planned {
            operation: Some(Operation::Error),
            reason: Some(reason.into()),
            requests: Vec::new(),
        }
    }

    /// This phase's plan after `earlier`'s: the first operation named stands, unless a later
    /// phase fails.
    pub fn then(mut self, later: Planned) -> Planned {
        if later.operation == Some(Operation::Error) || self.operation.is_none() {
            self.operation = later.operation.or(self.operation);
            self.reason = later.reason.or(self.reason);
        }
        self.requests.extend(later.requests);
        self
    }
}

/// One phase call, as a plan sees it: `PhaseCall` without a checkpoint, on a scratch copy of
/// the product's info.
pub struct PlanCall<'a> {
    pub action: Action,
    pub phase: Phase,
    pub product: &'a Product,
    pub offer: Offer,
    pub prices_only: bool,
    pub info: &'a mut MarketplaceInfo,
}

impl<'a> PlanCall<'a> {
    /// The phase call a protocol that plans by running is executed with.
    pub fn with(self, checkpoint: super::Checkpoint<'a>) -> super::PhaseCall<'a> {
        super::PhaseCall {
            action: self.action,
            phase: self.phase,
            product: self.product,
            offer: self.offer,
            prices_only: self.prices_only,
            info: self.info,
            checkpoint,
        }
    }
}

/// Something the marketplace would refuse, or a price that would not show as the campaign
/// meant, found without sending anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

/// What `system` would refuse of `product` in `action`, or would show otherwise than the
/// campaign meant: a missing price, a campaign price that is not below the product's own, a
/// missing name, and what the marketplace's own kind finds (`ConnectionKind::plan_problems`:
/// a title too long for MercadoLibre, too many options for Shopify, a closed item, ...).
pub fn problems(
    system: System,
    action: Action,
    product: &Product,
    campaign_price: Option<f64>,
    info: &MarketplaceInfo,
) -> Vec<Problem> {
    let mut found = Vec::new();
    let sends_data = matches!(action, Action::Publish | Action::Republish);
    if sends_data {
        if product.price <= 0.0 {
            found.push(Problem::new("missing_price", "the product has no price"));
        }
        if let Some(v) = product.variants.iter().find(|v| v.price <= 0.0) {
            found.push(Problem::new(
                "missing_price",
                format!("variant {} has no price", v.sku),
            ));
        }
        if let Some(sale) = campaign_price {
            if sale >= product.price {
                found.push(Problem::new(
                    "price_not_below_regular",
                    format!(
                        "the campaign price {sale} is not below the product's own price {}: \
                         the product is sent at its own price, with no sale shown",
                        product.price
                    ),
                ));
            }
        }
        if product.name.trim().is_empty() {
            found.push(Problem::new("missing_title", "the product has no name"));
        }
    }
    found.extend(super::kind::kind(system).plan_problems(action, sends_data, product, info));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Variant;

    fn product(name: &str, price: f64, options: &[&str]) -> Product {
        Product {
            id: 1,
            tenant_id: 1,
            sku: "SKU-1".into(),
            name: name.to_string(),
            description: String::new(),
            price,
            stock: 1,
            variants: vec![Variant {
                sku: "SKU-1-A".into(),
                price: price / 2.0,
                stock: 1,
                options: options
                    .iter()
                    .map(|o| (o.to_string(), "x".to_string()))
                    .collect(),
                barcode: None,
            }],
            images: Vec::new(),
            updated_at: 0,
            details: Default::default(),
        }
    }

    fn codes(found: Vec<Problem>) -> Vec<&'static str> {
        found.into_iter().map(|p| p.code).collect()
    }

    #[test]
    fn each_marketplace_finds_what_it_would_refuse_before_anything_is_sent() {
        let fine = product("Shirt", 10.0, &["Size"]);
        let none = MarketplaceInfo::default();
        for system in [
            System::Jumpseller,
            System::Woocommerce,
            System::Mercadolibre,
            System::Shopify,
        ] {
            assert!(
                problems(system, Action::Publish, &fine, Some(8.0), &none).is_empty(),
                "{system:?}"
            );
            assert_eq!(
                codes(problems(system, Action::Publish, &fine, Some(12.0), &none)),
                ["price_not_below_regular"],
                "{system:?}"
            );
            assert_eq!(
                codes(problems(
                    system,
                    Action::Publish,
                    &product("Shirt", 0.0, &[]),
                    None,
                    &none
                )),
                ["missing_price", "missing_price"],
                "{system:?}: the product and its variant"
            );
        }
        let long = product(&"x".repeat(61), 10.0, &[]);
        assert_eq!(
            codes(problems(
                System::Mercadolibre,
                Action::Publish,
                &long,
                None,
                &none
            )),
            ["title_too_long"]
        );
        assert!(problems(System::Jumpseller, Action::Publish, &long, None, &none).is_empty());
        let closed = MarketplaceInfo {
            product_id: Some("MLC1".into()),
            remote_status: Some("closed".into()),
            ..MarketplaceInfo::default()
        };
        assert_eq!(
            codes(problems(
                System::Mercadolibre,
                Action::Pause,
                &fine,
                None,
                &closed
            )),
            ["closed_item"]
        );
        assert!(problems(System::Mercadolibre, Action::Delete, &fine, None, &closed).is_empty());
        let four = product("Shirt", 10.0, &["Size", "Colour", "Fit", "Sleeve"]);
        assert_eq!(
            codes(problems(
                System::Shopify,
                Action::Publish,
                &four,
                None,
                &none
            )),
            ["too_many_options"]
        );
        assert!(problems(System::Shopify, Action::Pause, &four, None, &none).is_empty());
    }

    #[test]
    fn a_recorded_call_is_its_first_write_or_a_read_or_the_error_it_ended_in() {
        let recorder = Recorder::default();
        let get = || Request::new("GET", "/p");
        recorder.record(Operation::Read, get());
        recorder.record(Operation::Create, Request::new("POST", "/p"));
        recorder.record(Operation::Update, Request::new("PUT", "/p/{new}"));
        let planned = recorder.planned(Ok(()));
        assert_eq!(planned.operation, Some(Operation::Create));
        assert_eq!(planned.requests.len(), 3, "each request, in order");
        assert_eq!(planned.requests[0].method, "GET");
        recorder.record(Operation::Read, get());
        assert_eq!(recorder.planned(Ok(())).operation, Some(Operation::Read));
        assert_eq!(recorder.planned(Ok(())), Planned::more(Vec::new()));
        recorder.record(Operation::Read, get());
        let failed = recorder.planned(Err(super::super::MarketError::Local("no id".into())));
        assert_eq!(failed.operation, Some(Operation::Error));
        assert_eq!(failed.requests.len(), 1, "what it sent before it failed");
    }

    #[test]
    fn a_remote_id_reads_numbers_and_strings_and_a_plans_is_new() {
        let id: RemoteId = serde_json::from_str("1001").expect("a number");
        assert_eq!(id.to_string(), "1001");
        let id: RemoteId = serde_json::from_str("\"MLC123\"").expect("a string");
        assert_eq!(id.to_string(), "MLC123");
        assert_eq!(RemoteId::default().to_string(), NEW);
        assert!(serde_json::from_str::<RemoteId>("null").is_err());
    }

    #[test]
    fn the_first_operation_named_stands_unless_a_later_phase_fails() {
        let create = Planned::op(Operation::Create, vec![Request::new("POST", "/p")]);
        let more = Planned::more(vec![Request::new("POST", "/p/{new}/v")]);
        let joined = create.clone().then(more);
        assert_eq!(joined.operation, Some(Operation::Create));
        assert_eq!(joined.requests.len(), 2);
        let failed = create.then(Planned::error("no id"));
        assert_eq!(failed.operation, Some(Operation::Error));
        assert_eq!(failed.reason.as_deref(), Some("no id"));
    }
}
