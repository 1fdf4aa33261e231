//! The API's OpenAPI 3.1 document, served at `GET /api/openapi.json`. Request bodies are the
//! schemas of the very structs the handlers parse (`input.rs`, derived with utoipa); answers are
//! described by the types below, which mirror `views.rs` and the handlers' replies. The paths
//! come from one table keyed by `Route`, so a route the router knows and the table lacks fails
//! `every_route_is_documented`, and a black-box test checks real answers against the schemas.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi, PathItem, Ref, Required, Type};
use utoipa::OpenApi as _;

use super::route::{Body, IdOf, Page, Parameters, Spec, BESIDE, ROUTES};

/// Schemas of the answers. They are never built: the views write the JSON with these fields,
/// and `tests/api/openapi.rs` checks real answers against them.
#[allow(dead_code)]
mod schema {
    use std::collections::BTreeMap;

    use utoipa::ToSchema;

    /// Every error: a stable code, a message for people, and sometimes more fields (such as
    /// `retry_after_secs`, `tracker_id` or `field`).
    #[derive(ToSchema)]
    pub struct Error {
        /// The stable code, one of `ErrorCode`'s.
        pub error: crate::error::ErrorCode,
        pub message: String,
    }

    #[derive(ToSchema)]
    pub struct MarketplaceInfo {
        pub product_id: Option<String>,
        pub variant_ids: BTreeMap<String, String>,
        pub image_ids: BTreeMap<String, String>,
        pub remote_status: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct CampaignProduct {
        pub product_id: u64,
        pub sku: Option<String>,
        pub name: Option<String>,
        pub marketplace_id: u64,
        #[schema(pattern = "^(pending|published|paused|errored|finished)$")]
        pub status: String,
        pub marketplace_info: MarketplaceInfo,
        pub error_message: Option<String>,
        pub published_at: Option<String>,
        pub updated_at: String,
        pub last_tracker_id: Option<u64>,
        pub price: Option<f64>,
        pub sale_price: Option<f64>,
        pub presale_price: Option<f64>,
        pub on_sale: bool,
    }

    #[derive(ToSchema)]
    pub struct CampaignProductPage {
        pub data: Vec<CampaignProduct>,
        pub page: u64,
        pub per_page: u64,
        pub total: u64,
    }

    #[derive(ToSchema)]
    pub struct LatestProgress {
        pub tracker_id: u64,
        pub action: String,
        pub progress: f64,
        pub status: String,
        pub error_message: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct ProgressAnswer {
        pub success: bool,
        pub data: LatestProgress,
    }

    /// A dry run's answer: the plan of the action, per marketplace and product. Nothing was
    /// started, sent (but MercadoLibre's validation, with `"validate"`) or written.
    #[derive(ToSchema)]
    pub struct Plan {
        pub dry_run: bool,
        #[schema(pattern = "^(plan|validate)$")]
        pub mode: String,
        pub action: String,
        pub campaign_id: u64,
        /// The prices the run would send: regular, presale or sale.
        pub prices: String,
        /// The products the run would take.
        pub total_products: u64,
        /// The requests the run would send (a batch request counted once).
        pub requests: u64,
        /// The least time the accounts' limits give those requests (marketplaces run side by
        /// side: the longest of theirs).
        pub estimated_seconds: f64,
        pub problems: u64,
        pub marketplaces: Vec<PlanMarketplace>,
    }

    #[derive(ToSchema)]
    pub struct PlanMarketplace {
        pub marketplace_id: u64,
        pub system: String,
        pub products: u64,
        /// Products of the campaign the action leaves alone (in `plan` with their reason).
        pub skipped: u64,
        /// Products by operation: create, update, status, delete, read, skip, error.
        pub operations: BTreeMap<String, u64>,
        pub requests: u64,
        pub estimated_seconds: f64,
        pub rate_limit: crate::answers::RateLimit,
        pub batch_size: u64,
        pub problems: u64,
        pub plan: Vec<PlanProduct>,
    }

    #[derive(ToSchema)]
    pub struct PlanProduct {
        pub product_id: u64,
        pub sku: Option<String>,
        #[schema(pattern = "^(create|update|status|delete|read|skip|error)$")]
        pub operation: String,
        pub reason: Option<String>,
        pub problems: Vec<PlanProblem>,
        pub requests: Vec<PlanRequest>,
    }

    /// Something the marketplace would refuse, found before sending: missing_price,
    /// price_not_below_regular, missing_title, title_too_long, closed_item, too_many_options,
    /// too_many_variants, marketplace_refused (validation), not_validated.
    #[derive(ToSchema)]
    pub struct PlanProblem {
        pub code: String,
        pub message: String,
    }

    /// One request the run would send; `{new}` in a path stands for the id a create before it
    /// gives.
    #[derive(ToSchema)]
    pub struct PlanRequest {
        pub method: String,
        pub path: String,
        /// This product's item of a batch request shared with other products.
        pub item: Option<String>,
        /// The GraphQL operation, and the points it asks for.
        pub graphql: Option<String>,
        pub cost: Option<f64>,
        /// With `?detail=true`.
        #[schema(value_type = Option<Object>)]
        pub body: Option<serde_json::Value>,
    }

    /// The last drift check of a campaign.
    #[derive(ToSchema)]
    pub struct DriftReport {
        /// The drift check's run; null before the first.
        pub tracker: Option<crate::answers::Tracker>,
        /// Products it read (or tried to).
        pub checked: u64,
        /// Products that still differ or could not be read (a repaired product is listed with
        /// what was repaired).
        pub differing: u64,
        pub unreadable: u64,
        /// Products a reconcile repaired since the check.
        pub repaired: u64,
        /// Differences by kind: missing, adopted, status, price, stock, variants, images,
        /// copies.
        pub counts: BTreeMap<String, u64>,
        pub data: Vec<Drifted>,
        pub page: u64,
        pub per_page: u64,
        pub total: u64,
    }

    #[derive(ToSchema)]
    pub struct Drifted {
        pub product_id: u64,
        pub sku: Option<String>,
        pub marketplace_id: u64,
        pub status: String,
        pub remote_id: Option<String>,
        pub checked_at: Option<String>,
        /// Why the product could not be read.
        pub error: Option<String>,
        pub differences: Vec<DriftDifference>,
        /// What a reconcile repaired since the check.
        pub repaired: Vec<DriftDifference>,
    }

    /// One difference: `kind`, and what each side holds (`expected`, `found`; `sku` for a
    /// variant's price or stock; `missing` and `unknown` SKUs for variants; `stored` and
    /// `found` ids for an adopted product; `sku` and the other products' `ids` for copies of
    /// a product whose creates went unanswered).
    #[derive(ToSchema)]
    pub struct DriftDifference {
        #[schema(pattern = "^(missing|adopted|status|price|stock|variants|images|copies)$")]
        pub kind: String,
    }

    #[derive(ToSchema)]
    pub struct FailedProduct {
        pub product_id: u64,
        pub sku: Option<String>,
        pub marketplace_id: u64,
        pub error_message: Option<String>,
        pub action: Option<String>,
        pub tracker_id: Option<u64>,
        pub failed_phase: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct FailedList {
        pub data: Vec<FailedProduct>,
    }

    #[derive(ToSchema)]
    pub struct Notification {
        pub id: u64,
        pub campaign_id: u64,
        pub tracker_id: u64,
        pub action: String,
        #[schema(pattern = "^(completed|failed)$")]
        pub status: String,
        pub title: String,
        pub message: String,
        pub created_at: String,
        pub read: bool,
    }

    #[derive(ToSchema)]
    pub struct NotificationList {
        pub data: Vec<Notification>,
        pub unread: u64,
    }

    #[derive(ToSchema)]
    pub struct NotificationAnswer {
        pub data: Notification,
    }

    #[derive(ToSchema)]
    pub struct PendingDelivery {
        pub id: u64,
        pub attempts: u32,
        pub last_error: Option<String>,
        pub next_attempt_at: String,
    }

    #[derive(ToSchema)]
    pub struct Webhook {
        pub url: String,
        pub created_at: String,
        /// Only in `GET`: deliveries waiting for their next attempt.
        pub pending: Option<Vec<PendingDelivery>>,
        /// Only in the answer to `PUT`: the signing secret, shown once.
        pub secret: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Token {
        #[schema(pattern = "^[0-9a-f]{16}$")]
        pub id: String,
        pub name: String,
        pub created_at: String,
        pub expires_at: Option<String>,
        pub expired: bool,
        /// Only in the answer to `POST`: the token itself, shown once.
        pub token: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct TokenList {
        pub data: Vec<Token>,
    }

    #[derive(ToSchema)]
    pub struct ServiceUse {
        pub version: String,
        pub resident_memory_bytes: u64,
        /// The store's size, read every 5 s.
        pub store_bytes: u64,
        pub live_subscribers: u64,
    }

    /// A connection as this node sees it.
    #[derive(ToSchema)]
    pub struct ConnectionHealth {
        pub marketplace_id: u64,
        pub system: String,
        pub name: String,
        pub per_second: u32,
        pub per_minute: u32,
        pub requests_last_second: u32,
        pub requests_last_minute: u32,
        /// 429s since this node started.
        pub throttled: u64,
        pub last_error: Option<String>,
        pub last_error_at: Option<String>,
        /// Set while the connection's requests wait (a 429, a spent quota).
        pub paused_until: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct ServiceStatus {
        pub service: ServiceUse,
        pub connections: Vec<ConnectionHealth>,
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "campaignd",
        description = "Publishes, pauses, finishes and deletes a shop's campaign products on \
                       marketplaces, with live progress."
    ),
    components(schemas(
        schema::Error,
        crate::error::ErrorCode,
        crate::answers::Health,
        crate::answers::Message,
        crate::answers::ConnectionList,
        crate::answers::Connection,
        crate::answers::ProductPage,
        crate::answers::Upserted,
        crate::answers::CampaignList,
        crate::answers::Campaign,
        schema::CampaignProductPage,
        crate::answers::Added,
        crate::answers::Updated,
        crate::answers::TrackerList,
        crate::answers::TrackerAnswer,
        schema::ProgressAnswer,
        crate::answers::Started,
        schema::Plan,
        schema::DriftReport,
        crate::answers::Reset,
        schema::FailedList,
        schema::NotificationList,
        schema::NotificationAnswer,
        crate::answers::Marked,
        schema::Webhook,
        schema::TokenList,
        schema::Token,
        crate::answers::Revoked,
        schema::ServiceStatus,
        super::input::ConnectionInput,
        super::input::ProductInput,
        super::input::VariantInput,
        super::input::MarketplacesInput,
        super::input::MercadoLibreInput,
        super::input::AttributeInput,
        crate::answers::ProductMarketplaces,
        super::input::CampaignInput,
        super::input::CampaignPatch,
        super::input::AddProductsInput,
        super::input::ProductPriceInput,
        super::input::ActionInput,
        super::input::ProductActionInput,
        super::handlers::RetryInput,
        super::handlers::WebhookInput,
        super::handlers::TokenInput,
    ))
)]
struct Components;

/// A JSON body of a schema by name (`Name[]` for an array of them).
fn json_content(schema: &str) -> utoipa::openapi::Content {
    let r = |name: &str| Ref::from_schema_name(name);
    if let Some((a, b)) = schema.split_once('|') {
        let one_of = utoipa::openapi::schema::OneOfBuilder::new()
            .item(r(a))
            .item(r(b));
        return ContentBuilder::new().schema(Some(one_of)).build();
    }
    match schema.strip_suffix("[]") {
        Some(item) => ContentBuilder::new()
            .schema(Some(
                utoipa::openapi::schema::ArrayBuilder::new().items(r(item)),
            ))
            .build(),
        None => ContentBuilder::new().schema(Some(r(schema))).build(),
    }
}

fn path_parameter(
    name: &str,
    description: &str,
    of: ObjectBuilder,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(of))
        .build()
}

/// The largest integer a query may give (`input::MAX_QUERY_INTEGER`, 2^53 - 1, exact in an f64).
const MAX_INTEGER: f64 = crate::input::MAX_QUERY_INTEGER as f64;

/// A record's id in a path (any that is not a record's is its `not_found`).
fn id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
}

/// The path parameter of an operation's `{id}`, if it has one.
fn path_parameters(spec: &Spec) -> Vec<utoipa::openapi::path::Parameter> {
    let of = match spec.id {
        IdOf::None => return Vec::new(),
        IdOf::Token => (
            "the token's id: 16 hex digits",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9a-f]{16}$")),
        ),
        IdOf::Campaign | IdOf::Tracker | IdOf::Notification => ("the resource's id", id()),
    };
    vec![path_parameter("id", of.0, of.1)]
}

/// Every operation's other answers: an error, with its stable code.
fn error_response() -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description("an error, with its stable code")
        .content("application/json", json_content("Error"))
        .build()
}

/// An id, or any other integer a query may give: from 0 to `MAX_INTEGER`.
fn integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_INTEGER))
}

fn query_parameter(
    name: &str,
    description: &str,
    required: bool,
    of: ObjectBuilder,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(of))
        .build()
}

fn operation(op: &Spec) -> utoipa::openapi::path::Operation {
    let success = match op.ok.1 {
        "" => ResponseBuilder::new()
            .description("the OpenAPI document")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                    .build(),
            )
            .build(),
        name => ResponseBuilder::new()
            .description("success")
            .content("application/json", json_content(name))
            .build(),
    };
    let mut parameters = path_parameters(op);
    for (name, kind, values, description) in op.query {
        let mut of = ObjectBuilder::new().schema_type(kind.clone());
        if !values.is_empty() {
            of = of.enum_values(Some(values.iter().copied()));
        }
        match *name {
            "page" => of = integer().minimum(Some(1)),
            "per_page" => of = of.minimum(Some(1)).maximum(Some(500)),
            _ if matches!(kind, Type::Integer) => of = integer(),
            _ => {}
        }
        let required = op.method == HttpMethod::Delete && *name == "action";
        parameters.push(query_parameter(name, description, required, of));
    }
    let mut builder = OperationBuilder::new()
        .operation_id(Some(op.operation_id))
        .summary(Some(op.summary))
        .tag(op.tag)
        .parameters(Some(parameters))
        .response(op.ok.0.to_string(), success)
        .response("default", error_response());
    if let Some((schema, optional)) = op.body {
        builder = builder.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(schema))
                .required(Some(if optional {
                    Required::False
                } else {
                    Required::True
                }))
                .build(),
        ));
    }
    if op.public {
        builder = builder.securities(Some(Vec::<SecurityRequirement>::new()));
    }
    builder.build()
}

/// The operation of a page served beside the routes (`route::BESIDE`).
fn page(page: &Page) -> utoipa::openapi::path::Operation {
    let (status, media, description, body) = page.ok;
    let schema: Option<utoipa::openapi::Schema> = match body {
        Body::Text => Some(ObjectBuilder::new().schema_type(Type::String).into()),
        Body::Object => Some(ObjectBuilder::new().schema_type(Type::Object).into()),
        Body::List => Some(
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Object))
                .into(),
        ),
        Body::Switch => None,
    };
    let mut answer = ResponseBuilder::new().description(description);
    if let Some(schema) = schema {
        answer = answer.content(media, ContentBuilder::new().schema(Some(schema)).build());
    }
    let parameters = match page.parameters {
        Parameters::None => vec![],
        Parameters::Live => vec![
            query_parameter(
                "campaign_id",
                "only this campaign's events",
                false,
                integer(),
            ),
            query_parameter(
                "since",
                "events after this sequence number",
                false,
                integer(),
            ),
        ],
        Parameters::Campaign => vec![path_parameter("id", "the campaign's id", id())],
    };
    let mut b = OperationBuilder::new()
        .operation_id(Some(page.operation_id))
        .summary(Some(page.summary))
        .tag(page.tag)
        .parameters(Some(parameters))
        .response(status.to_string(), answer.build())
        .response("default", error_response());
    if page.public {
        b = b.securities(Some(Vec::<SecurityRequirement>::new()));
    }
    b.build()
}

/// The document: every route's operation, the schemas, and bearer-token security.
pub fn document() -> OpenApi {
    let mut doc = Components::openapi();
    let mut paths = utoipa::openapi::path::PathsBuilder::new();
    for spec in ROUTES {
        paths = paths.path(
            spec.template,
            PathItem::new(spec.method.clone(), operation(spec)),
        );
    }
    for p in BESIDE {
        paths = paths.path(p.path, PathItem::new(HttpMethod::Get, page(p)));
    }
    doc.paths = paths.build();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a tenant's API token"))
                    .build(),
            ),
        );
    }
    doc.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    doc
}

/// The document as served, built once.
pub fn json() -> &'static serde_json::Value {
    static DOC: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        // A document of derived schemas always serializes; `Null` would only hide a bug that
        // `the_document_is_openapi_3_1` catches.
        serde_json::to_value(document()).unwrap_or(serde_json::Value::Null)
    });
    &DOC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = json();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(
            doc["components"]["schemas"]["CampaignInput"]["properties"]["starts_at"].is_object()
        );
        assert!(doc["paths"]["/api/campaigns/{id}"]["patch"].is_object());
    }

    /// Every text field `input::text` checks carries one pattern in the document, the same for
    /// all of them (no control character; not blank where it may not be).
    #[test]
    fn the_document_states_what_text_accepts() {
        let schemas = &json()["components"]["schemas"];
        let pattern = |schema: &str, field: &str| {
            schemas[schema]["properties"][field]["pattern"]
                .as_str()
                .unwrap_or_else(|| panic!("{schema}.{field} has no pattern"))
                .to_string()
        };
        let any = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
        assert_eq!(pattern("TokenInput", "name"), any);
        let not_blank = pattern("ProductInput", "name");
        assert!(not_blank.starts_with(&any[..any.len() - 1]), "{not_blank}");
        for (schema, field) in [
            ("ProductInput", "sku"),
            ("VariantInput", "sku"),
            ("CampaignInput", "name"),
            ("ConnectionInput", "name"),
        ] {
            assert_eq!(pattern(schema, field), not_blank, "{schema}.{field}");
        }
    }

    /// The error codes the document lists are `ErrorCode`'s, as answers spell them: no code it
    /// names is one the service never sends.
    #[test]
    fn the_documented_error_codes_are_the_ones_sent() {
        let doc = json();
        let error = &doc["components"]["schemas"]["Error"]["properties"]["error"];
        assert_eq!(error["$ref"], "#/components/schemas/ErrorCode", "{error}");
        let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("the codes");
        let sent = crate::error::ApiError::not_found("campaign").body();
        assert!(codes.contains(&sent["error"]), "{sent}");
        assert!(codes.contains(&serde_json::json!("route_not_found")));
        for never in ["invalid_request", "campaign_locked"] {
            assert!(!codes.contains(&serde_json::json!(never)), "{never}");
        }
    }

    /// Every route the router knows is in the document, and every operation of the document
    /// reaches its route when its parameters are filled in.
    #[test]
    fn every_route_is_documented() {
        let doc = json();
        for spec in ROUTES {
            let method = spec.method().as_str().to_lowercase();
            let documented = &doc["paths"][spec.template][&method];
            assert_eq!(
                documented["operationId"], spec.operation_id,
                "{method} {} is missing from the document",
                spec.template
            );
            let path = spec
                .template
                .replace("/api/tokens/{id}", "/api/tokens/00000000000000ab")
                .replace("{id}", "7");
            let id = if spec.id == IdOf::Token { 0xab } else { 7 };
            assert_eq!(
                Route::parse(&spec.method(), &path, spec.example_query).ok(),
                (spec.route)(id, spec.example_query).ok(),
                "{path}"
            );
        }
        let ids: std::collections::BTreeSet<_> = ROUTES.iter().map(|s| s.operation_id).collect();
        assert_eq!(ids.len(), ROUTES.len(), "every operationId is its own");
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        let distinct: std::collections::BTreeSet<_> = ROUTES
            .iter()
            .map(|spec| (spec.method(), spec.template))
            .collect();
        for p in BESIDE {
            assert_eq!(
                doc["paths"][p.path]["get"]["operationId"], p.operation_id,
                "{} is missing from the document",
                p.path
            );
        }
        assert_eq!(
            documented,
            distinct.len() + BESIDE.len(),
            "no operation beyond the routes and the pages beside them"
        );
    }
}
