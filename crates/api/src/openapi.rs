//! The API's OpenAPI 3.1 document, served at `GET /api/openapi.json`. Request bodies are the
//! schemas of the very structs the handlers parse (`input.rs`, derived with utoipa); answers are
//! the schemas of the very types the handlers send (`answers.rs`). The paths
//! come from one table keyed by `Route`, so a route the router knows and the table lacks fails
//! `every_route_is_documented`, and a black-box test checks real answers against the schemas.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi, PathItem, Ref, Required, Type};
use utoipa::OpenApi as _;

use super::route::{Body, IdOf, Page, Parameters, Spec, BESIDE, ROUTES};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "campaignd",
        description = "Publishes, pauses, finishes and deletes a shop's campaign products on \
                       marketplaces, with live progress."
    ),
    components(schemas(
        crate::answers::ErrorAnswer,
        crate::error::ErrorCode,
        crate::answers::Health,
        crate::answers::Message,
        crate::answers::ConnectionList,
        crate::answers::Connection,
        crate::answers::ProductPage,
        crate::answers::Upserted,
        crate::answers::CampaignList,
        crate::answers::Campaign,
        crate::answers::CampaignProductPage,
        crate::answers::Added,
        crate::answers::Updated,
        crate::answers::TrackerList,
        crate::answers::TrackerAnswer,
        crate::answers::ProgressAnswer,
        crate::answers::Started,
        crate::answers::Plan,
        crate::answers::DriftReport,
        crate::answers::Reset,
        crate::answers::FailedList,
        crate::answers::NotificationList,
        crate::answers::NotificationAnswer,
        crate::answers::Marked,
        crate::answers::Webhook,
        crate::answers::TokenList,
        crate::answers::Token,
        crate::answers::Revoked,
        crate::answers::ServiceStatus,
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
        super::input::RetryInput,
        super::input::WebhookInput,
        super::input::TokenInput,
    ))
)]
struct Components;

/// A JSON body of a schema by name (`Name[]` for an array of them). A request's array carries
/// at least one item: every list the API takes refuses an empty one.
fn json_content(schema: &str, request: bool) -> utoipa::openapi::Content {
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
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(r(item))
                    .min_items(request.then_some(1)),
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
        .content("application/json", json_content("Error", false))
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
            .content("application/json", json_content(name, false))
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
            // A text to search for, read by `input::text`.
            "sku" => {
                of = of
                    .pattern(Some(crate::input::TEXT_PATTERN))
                    .max_length(Some(crate::input::MAX_NAME))
            }
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
                .content("application/json", json_content(schema, true))
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

/// Makes schema `name` require exactly one of `fields`: the derived object, and a `oneOf` of
/// objects each requiring one of them (two present match two, which `oneOf` refuses).
fn exactly_one_of(components: &mut utoipa::openapi::Components, name: &str, fields: &[&str]) {
    use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder, Schema};
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(derived)) = components.schemas.remove(name) else {
        return;
    };
    let one_of = fields.iter().fold(OneOfBuilder::new(), |of, field| {
        of.item(ObjectBuilder::new().required(*field))
    });
    let all = AllOfBuilder::new().item(derived).item(one_of).build();
    components
        .schemas
        .insert(name.to_string(), RefOr::T(Schema::AllOf(all)));
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
        for (name, fields) in crate::input::EXACTLY_ONE_OF {
            exactly_one_of(components, name, fields);
        }
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

    /// A body the document calls valid names its products (or its product) exactly one way, as
    /// the handlers take it.
    #[test]
    fn inputs_name_their_products_exactly_one_way() {
        let valid = |schema: &str, body: serde_json::Value| {
            let mut root = json().clone();
            root["$ref"] = serde_json::json!(format!("#/components/schemas/{schema}"));
            jsonschema::validator_for(&root)
                .expect("the document is a schema")
                .is_valid(&body)
        };
        let cases = [
            (
                "AddProductsInput",
                serde_json::json!({"product_ids": [1]}),
                true,
            ),
            ("AddProductsInput", serde_json::json!({"skus": ["A"]}), true),
            (
                "AddProductsInput",
                serde_json::json!({"product_ids": [1], "skus": ["A"]}),
                false,
            ),
            (
                "AddProductsInput",
                serde_json::json!({"marketplace_ids": [1]}),
                false,
            ),
            (
                "ProductPriceInput",
                serde_json::json!({"sku": "A", "sale_price": 5.0}),
                true,
            ),
            (
                "ProductPriceInput",
                serde_json::json!({"product_id": 1, "sku": "A"}),
                false,
            ),
            (
                "ProductPriceInput",
                serde_json::json!({"sale_price": 5.0}),
                false,
            ),
        ];
        for (schema, body, expected) in cases {
            assert_eq!(valid(schema, body.clone()), expected, "{schema} {body}");
        }
    }

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
        let any = crate::input::TEXT_PATTERN;
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
        let sent = serde_json::to_value(crate::error::ApiError::not_found("campaign").body())
            .expect("serializes");
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
