//! The API's routes as a type: a request's method, path and query become one `Route` at the
//! edge, so handlers receive ids already parsed. `ROUTES` is the one table of operations
//! (method, template, operationId, summary, input, answer, query): the router matches it, and
//! the OpenAPI document and the tests read it.

use crate::error::ErrorCode;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::Type;
use warp::http::Method;

use super::error::ApiError;
use domain::{Action, Id};

/// Every route of the API behind `/api` (and the health check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    /// The API's OpenAPI document, public like the health check.
    OpenApi,
    ListConnections,
    CreateConnection,
    ListProducts,
    UpsertProducts,
    ListCampaigns,
    CreateCampaign,
    GetCampaign(Id),
    /// PATCH: the campaign's dates.
    UpdateCampaign(Id),
    AddCampaignProducts(Id),
    /// PATCH: campaign prices of products in the campaign.
    SetCampaignPrices(Id),
    ListCampaignProducts(Id),
    ListTrackers(Id),
    CampaignProgress(Id),
    ForceReset(Id),
    /// publish, republish, pause or finish a whole campaign.
    CampaignAction(Id, Action),
    /// The seed's actions on chosen products: publish and pause (POST), delete and finish
    /// (DELETE with `?action=`).
    ProductAction(Id, Action),
    /// Starts a drift check of the campaign (`POST .../drift`).
    StartDrift(Id),
    /// The last drift check's differences (`GET .../drift`).
    DriftReport(Id),
    /// Repairs what the last drift check found (`POST .../reconcile`).
    StartReconcile(Id),
    TrackerProgress(Id),
    FailedProducts(Id),
    Retry(Id),
    ListNotifications,
    ReadAllNotifications,
    ReadNotification(Id),
    GetWebhook,
    PutWebhook,
    DeleteWebhook,
    ListTokens,
    CreateToken,
    /// A token by its id (the first 8 bytes of its hash, as 16 hex digits).
    RevokeToken(u64),
    /// This node's view of the service and of the tenant's connections: resource use, rates
    /// against their limits, 429s, last errors, pauses.
    Status,
}

#[derive(serde::Deserialize)]
struct ActionQuery {
    action: Option<String>,
}

/// A page served beside the routes, GET only: the dashboard, the live streams and the operator's
/// pages (`{id}` stands for any one segment). The router and the API's document read `BESIDE`.
pub struct Page {
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// The success status, media type, description and shape of the body.
    pub ok: (u16, &'static str, &'static str, Body),
    pub parameters: Parameters,
    /// Needs no tenant's token (the operator's pages check the operator's own).
    pub public: bool,
}

/// The shape of a page's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Text,
    Object,
    /// A list of objects.
    List,
    /// None: a WebSocket's switch of protocols.
    Switch,
}

/// A page's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameters {
    None,
    /// A live feed's `campaign_id` and `since`.
    Live,
    /// The campaign's id in the path.
    Campaign,
}

pub static BESIDE: &[Page] = &[
    Page {
        path: "/",
        operation_id: "dashboard",
        summary: "The dashboard",
        tag: "service",
        ok: (200, "text/html", "the page", Body::Text),
        parameters: Parameters::None,
        public: true,
    },
    Page {
        path: "/metrics",
        operation_id: "metrics",
        summary: "Prometheus metrics (operator)",
        tag: "operator",
        ok: (200, "text/plain", "the text exposition format", Body::Text),
        parameters: Parameters::None,
        public: true,
    },
    Page {
        path: "/api/events",
        operation_id: "live_events_sse",
        summary: "Live events as Server-Sent Events",
        tag: "live",
        ok: (
            200,
            "text/event-stream",
            "tracker, notification and resync events",
            Body::Text,
        ),
        parameters: Parameters::Live,
        public: false,
    },
    Page {
        path: "/api/ws",
        operation_id: "live_events_websocket",
        summary: "Live events over a WebSocket (upgrade)",
        tag: "live",
        ok: (101, "", "switching to the WebSocket protocol", Body::Switch),
        parameters: Parameters::Live,
        public: false,
    },
    Page {
        path: "/admin/status",
        operation_id: "operator_status",
        summary: "Runs, locks, queues and the store's size, as `campaignd status` (operator)",
        tag: "operator",
        ok: (200, "application/json", "the status", Body::Object),
        parameters: Parameters::None,
        public: true,
    },
    Page {
        path: "/admin/campaigns",
        operation_id: "operator_campaigns",
        summary: "Every tenant's campaigns (operator)",
        tag: "operator",
        ok: (200, "application/json", "the campaigns", Body::List),
        parameters: Parameters::None,
        public: true,
    },
    Page {
        path: "/admin/campaigns/{id}/trackers",
        operation_id: "operator_campaign_trackers",
        summary: "A campaign's runs (operator)",
        tag: "operator",
        ok: (200, "application/json", "the runs", Body::List),
        parameters: Parameters::Campaign,
        public: true,
    },
    Page {
        path: "/admin/campaigns/{id}/failed",
        operation_id: "operator_campaign_failed",
        summary: "A campaign's errored products (operator)",
        tag: "operator",
        ok: (200, "application/json", "the products", Body::List),
        parameters: Parameters::Campaign,
        public: true,
    },
    Page {
        path: "/admin/check",
        operation_id: "operator_check",
        summary: "The store's invariants (operator)",
        tag: "operator",
        ok: (
            200,
            "application/json",
            "ok and the problems found",
            Body::Object,
        ),
        parameters: Parameters::None,
        public: true,
    },
];

/// Whether `path` (one trailing slash forgiven) is of the `template`'s shape.
fn fits(path: &str, template: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    shaped(&segments, template).is_some()
}

/// Whether `segments` are of the `template`'s shape, `{id}` standing for any one segment that
/// is not empty; then the segment at `{id}`, if the template has one.
fn shaped<'a>(segments: &[&'a str], template: &str) -> Option<Option<&'a str>> {
    let template = template.strip_suffix('/').unwrap_or(template);
    let template: Vec<&str> = template.split('/').collect();
    if template.len() != segments.len() {
        return None;
    }
    let mut id = None;
    for (t, s) in template.iter().zip(segments) {
        match *t {
            "{id}" if !s.is_empty() => id = Some(*s),
            _ if t == s => {}
            _ => return None,
        }
    }
    Some(id)
}

pub(super) fn id(segment: &str, what: &str) -> Result<Id, ApiError> {
    let canonical = !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    canonical
        .then(|| segment.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::not_found(what))
}

pub fn not_found(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {method} {path}"),
    )
}

impl Route {
    /// Whether the route needs a tenant's token.
    pub fn authenticated(self) -> bool {
        !matches!(self, Route::Health | Route::OpenApi)
    }

    /// The route of a request; an unknown one is `route_not_found`, a malformed id is the
    /// resource's `not_found`, and a product action without a known `?action=` is refused.
    pub fn parse(method: &Method, path: &str, query: &str) -> Result<Route, ApiError> {
        let matched = Route::matched(method, path, query);
        match &matched {
            Err(e) if e.code == ErrorCode::RouteNotFound => {}
            _ => return matched,
        }
        // A path the API has, asked with another method: 405 with the methods it answers.
        let allow: Vec<&str> = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ]
        .iter()
        .filter(|m| *m != method)
        .filter(|m| {
            Route::matched(m, path, query)
                .map_or_else(|e| e.code != ErrorCode::RouteNotFound, |_| true)
        })
        .map(Method::as_str)
        .collect();
        // The pages served beside the routes (the dashboard, live streams, operator pages)
        // answer GET only.
        let beside = BESIDE.iter().any(|page| fits(path, page.path));
        let allow = if allow.is_empty() && beside && method != Method::GET {
            vec![Method::GET.as_str()]
        } else {
            allow
        };
        if allow.is_empty() {
            return matched;
        }
        Err(ApiError {
            extra: crate::error::Extra {
                allow: Some(allow.clone()),
                ..Default::default()
            },
            ..ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{path} answers {}, not {method}", allow.join(", ")),
            )
        })
    }

    fn matched(method: &Method, path: &str, query: &str) -> Result<Route, ApiError> {
        // One trailing slash is forgiven; an empty segment elsewhere (`//api/...`) is not a
        // path of the API.
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = trimmed
            .strip_prefix('/')
            .unwrap_or(trimmed)
            .split('/')
            .collect();
        if segments.iter().any(|s| s.is_empty()) && !trimmed.is_empty() {
            return Err(not_found(method, path));
        }
        for spec in ROUTES.iter().filter(|s| s.method() == *method) {
            if let Some(id) = shaped(&segments, &spec.template[1..]) {
                let id = match id {
                    Some(segment) => spec.id.parse(segment)?,
                    None => 0,
                };
                return (spec.route)(id, query);
            }
        }
        Err(not_found(method, path))
    }
}

/// What a route's `{id}` names, which says how it is read and what is not found when it is
/// malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOf {
    None,
    Campaign,
    Tracker,
    Notification,
    /// A token's id: the first 8 bytes of its hash, as 16 hex digits.
    Token,
}

impl IdOf {
    fn parse(self, segment: &str) -> Result<Id, ApiError> {
        match self {
            IdOf::Token => {
                let valid = segment.len() == 16 && segment.bytes().all(|b| b.is_ascii_hexdigit());
                u64::from_str_radix(segment, 16)
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| ApiError::not_found("token"))
            }
            IdOf::None => Err(ApiError::not_found("resource")),
            IdOf::Campaign => id(segment, "campaign"),
            IdOf::Tracker => id(segment, "tracker"),
            IdOf::Notification => id(segment, "notification"),
        }
    }
}

/// A query parameter: name, JSON type, allowed values, description.
pub type Query = (&'static str, Type, &'static [&'static str], &'static str);

const PAGE_NUMBER: Query = ("page", Type::Integer, &[], "page number, from 1");
const PER_PAGE: Query = ("per_page", Type::Integer, &[], "items per page, 1 to 500");
/// A dry run's detail.
const DETAIL_FLAG: Query = (
    "detail",
    Type::Boolean,
    &[],
    "with dry_run: show each request's body",
);

const PAGE: &[Query] = &[PAGE_NUMBER, PER_PAGE];
const DETAIL: &[Query] = &[DETAIL_FLAG];

const PRODUCT_REMOVAL: &[Query] = &[
    (
        "action",
        Type::String,
        &["delete", "finish"],
        "what to do with the chosen products (required)",
    ),
    DETAIL_FLAG,
];

const CAMPAIGN_PRODUCTS: &[Query] = &[
    PAGE_NUMBER,
    PER_PAGE,
    (
        "status",
        Type::String,
        &["pending", "published", "paused", "errored", "finished"],
        "only products in this status",
    ),
    (
        "marketplace_id",
        Type::Integer,
        &[],
        "only products on this connection",
    ),
    (
        "sku",
        Type::String,
        &[],
        "only products whose SKU contains this text",
    ),
];

/// One operation of the API: what the router matches, and what the OpenAPI document says of it.
/// Written once, here; the router, the document and the tests all read `ROUTES`.
pub struct Spec {
    pub method: HttpMethod,
    /// The path, `{id}` standing for the one id segment.
    pub template: &'static str,
    /// The operation's name in the document, which generated clients name their calls after.
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub id: IdOf,
    /// The request body's schema, and whether it may be left out.
    pub body: Option<(&'static str, bool)>,
    /// The success status and its schema (`A|B` for either, `A[]` for a list).
    pub ok: (u16, &'static str),
    pub query: &'static [Query],
    /// Needs no token.
    pub public: bool,
    /// The route, from the template's id (0 without one) and the query string.
    pub route: fn(Id, &str) -> Result<Route, ApiError>,
    /// A query string that reaches this operation, for tests.
    pub example_query: &'static str,
}

impl Spec {
    pub fn method(&self) -> Method {
        match self.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Patch => Method::PATCH,
            HttpMethod::Delete => Method::DELETE,
            HttpMethod::Options => Method::OPTIONS,
            HttpMethod::Head => Method::HEAD,
            HttpMethod::Trace => Method::TRACE,
        }
    }
}

/// A protected operation without a query, on `template`, with its `{id}` of `id`.
// A row of the table: each argument is one of its columns, named by `Spec`.
#[allow(clippy::too_many_arguments)]
const fn spec(
    method: HttpMethod,
    template: &'static str,
    operation_id: &'static str,
    summary: &'static str,
    tag: &'static str,
    id: IdOf,
    body: Option<(&'static str, bool)>,
    ok: (u16, &'static str),
    route: fn(Id, &str) -> Result<Route, ApiError>,
) -> Spec {
    Spec {
        method,
        template,
        operation_id,
        summary,
        tag,
        id,
        body,
        ok,
        query: &[],
        public: false,
        route,
        example_query: "",
    }
}

/// The product-level removal: `?action=delete` or `?action=finish`.
fn product_removal(campaign: Id, query: &str) -> Result<Route, ApiError> {
    let q: ActionQuery = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
    let action = match q.action.as_deref() {
        Some("delete") => Action::Delete,
        Some("finish") => Action::Finish,
        _ => {
            return Err(ApiError::invalid(
                "action must be delete or finish (?action=delete|finish)",
            ))
        }
    };
    Ok(Route::ProductAction(campaign, action))
}

use HttpMethod::{Delete, Get, Patch, Post, Put};
use IdOf::{Campaign as C, None as N};

/// Every operation of the API, in the order of its document.
pub static ROUTES: &[Spec] = &[
    Spec {
        public: true,
        ..spec(Get, "/health", "health", "Health check", "service", N, None, (200, "Health"), |_, _| Ok(Route::Health))
    },
    Spec {
        public: true,
        ..spec(Get, "/api/openapi.json", "openapi_document", "This document", "service", N, None, (200, ""), |_, _| Ok(Route::OpenApi))
    },
    spec(Get, "/api/marketplaces", "list_connections", "The tenant's marketplace connections", "connections", N, None, (200, "ConnectionList"), |_, _| Ok(Route::ListConnections)),
    spec(Post, "/api/marketplaces", "create_connection", "Add a marketplace connection", "connections", N, Some(("ConnectionInput", false)), (201, "Connection"), |_, _| Ok(Route::CreateConnection)),
    Spec {
        query: PAGE,
        ..spec(Get, "/api/products", "list_products", "The tenant's products", "products", N, None, (200, "ProductPage"), |_, _| Ok(Route::ListProducts))
    },
    spec(Post, "/api/products", "upsert_products", "Create or update products by SKU (a JSON array)", "products", N, Some(("ProductInput[]", false)), (200, "Upserted"), |_, _| Ok(Route::UpsertProducts)),
    spec(Get, "/api/campaigns", "list_campaigns", "The tenant's campaigns", "campaigns", N, None, (200, "CampaignList"), |_, _| Ok(Route::ListCampaigns)),
    spec(Post, "/api/campaigns", "create_campaign", "Create a campaign, with dates if it runs itself", "campaigns", N, Some(("CampaignInput", false)), (201, "Campaign"), |_, _| Ok(Route::CreateCampaign)),
    spec(Get, "/api/campaigns/{id}", "get_campaign", "A campaign with its product counts and schedule", "campaigns", C, None, (200, "Campaign"), |c, _| Ok(Route::GetCampaign(c))),
    spec(Patch, "/api/campaigns/{id}", "update_campaign", "Change a campaign's dates (null clears one)", "campaigns", C, Some(("CampaignPatch", false)), (200, "Campaign"), |c, _| Ok(Route::UpdateCampaign(c))),
    spec(Post, "/api/campaigns/{id}/products", "add_campaign_products", "Add products to a campaign, with their campaign prices", "campaigns", C, Some(("AddProductsInput", false)), (200, "Added"), |c, _| Ok(Route::AddCampaignProducts(c))),
    spec(Patch, "/api/campaigns/{id}/products", "set_campaign_prices", "Set campaign prices of products in the campaign", "campaigns", C, Some(("ProductPriceInput[]", false)), (200, "Updated"), |c, _| Ok(Route::SetCampaignPrices(c))),
    Spec {
        query: CAMPAIGN_PRODUCTS,
        ..spec(Get, "/api/campaigns/{id}/products", "list_campaign_products", "A campaign's products with their state on each marketplace", "campaigns", C, None, (200, "CampaignProductPage"), |c, _| Ok(Route::ListCampaignProducts(c)))
    },
    spec(Get, "/api/campaigns/{id}/trackers", "list_trackers", "A campaign's runs, newest first", "runs", C, None, (200, "TrackerList"), |c, _| Ok(Route::ListTrackers(c))),
    Spec {
        query: &[(
            "action",
            Type::String,
            &["publish", "republish", "pause", "finish", "delete"],
            "the latest run of this action",
        )],
        ..spec(Get, "/api/campaigns/{id}/progress", "campaign_progress", "The progress of a campaign's latest run", "runs", C, None, (200, "ProgressAnswer"), |c, _| Ok(Route::CampaignProgress(c)))
    },
    spec(Post, "/api/campaigns/{id}/force-reset", "force_reset_campaign", "Clear a stuck campaign's lock and active runs", "runs", C, None, (200, "Reset"), |c, _| Ok(Route::ForceReset(c))),
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/publish", "publish_campaign", "Publish a whole campaign (or plan it: dry_run)", "actions", C, Some(("ActionInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::CampaignAction(c, Action::Publish)))
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/republish", "republish_campaign", "Republish a whole campaign: send its products' current data again (or plan it: dry_run)", "actions", C, Some(("ActionInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::CampaignAction(c, Action::Republish)))
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/pause", "pause_campaign", "Pause a whole campaign (or plan it: dry_run)", "actions", C, Some(("ActionInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::CampaignAction(c, Action::Pause)))
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/finish", "finish_campaign", "Finish a whole campaign (or plan it: dry_run)", "actions", C, Some(("ActionInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::CampaignAction(c, Action::Finish)))
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/ecommerce/campaign/{id}/product/publish", "publish_campaign_products", "Publish chosen products of a campaign (or plan it: dry_run)", "actions", C, Some(("ProductActionInput", false)), (200, "Started|Plan"), |c, _| Ok(Route::ProductAction(c, Action::Publish)))
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/ecommerce/campaign/{id}/product/pause", "pause_campaign_products", "Pause chosen products of a campaign (or plan it: dry_run)", "actions", C, Some(("ProductActionInput", false)), (200, "Started|Plan"), |c, _| Ok(Route::ProductAction(c, Action::Pause)))
    },
    Spec {
        query: PRODUCT_REMOVAL,
        example_query: "action=delete",
        ..spec(Delete, "/api/ecommerce/campaign/{id}/product", "remove_campaign_products", "Delete or finish chosen products of a campaign (or plan it: dry_run)", "actions", C, Some(("ProductActionInput", false)), (200, "Started|Plan"), product_removal)
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/drift", "start_drift_check", "Start a drift check: read each product's remote state against campaignd's (or plan it: dry_run)", "drift", C, Some(("ActionInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::StartDrift(c)))
    },
    Spec {
        query: PAGE,
        ..spec(Get, "/api/campaigns/{id}/drift", "drift_report", "The last drift check: counts, and the products that differ", "drift", C, None, (200, "DriftReport"), |c, _| Ok(Route::DriftReport(c)))
    },
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/reconcile", "reconcile_campaign", "Bring each marketplace back to campaignd's state where the last drift check found it differs (or plan it: dry_run)", "drift", C, Some(("ActionInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::StartReconcile(c)))
    },
    spec(Get, "/api/tracker/{id}/progress", "tracker_progress", "A run's progress by phase and connection", "runs", IdOf::Tracker, None, (200, "TrackerAnswer"), |t, _| Ok(Route::TrackerProgress(t))),
    spec(Get, "/api/campaigns/{id}/failed-products", "list_failed_products", "A campaign's errored products, with the action that failed them", "runs", C, None, (200, "FailedList"), |c, _| Ok(Route::FailedProducts(c))),
    Spec {
        query: DETAIL,
        ..spec(Post, "/api/campaigns/{id}/retry", "retry_failed_products", "Retry errored products as a new run of the action that failed them (or plan it: dry_run)", "actions", C, Some(("RetryInput", true)), (200, "Started|Plan"), |c, _| Ok(Route::Retry(c)))
    },
    Spec {
        query: &[("unread", Type::Boolean, &[], "only unread notifications")],
        ..spec(Get, "/api/notifications", "list_notifications", "The tenant's notifications, newest first", "notifications", N, None, (200, "NotificationList"), |_, _| Ok(Route::ListNotifications))
    },
    spec(Post, "/api/notifications/read-all", "read_all_notifications", "Mark every notification read", "notifications", N, None, (200, "Marked"), |_, _| Ok(Route::ReadAllNotifications)),
    spec(Post, "/api/notifications/{id}/read", "read_notification", "Mark one notification read", "notifications", IdOf::Notification, None, (200, "NotificationAnswer"), |n, _| Ok(Route::ReadNotification(n))),
    spec(Get, "/api/webhook", "get_webhook", "The tenant's webhook and its pending deliveries", "notifications", N, None, (200, "Webhook"), |_, _| Ok(Route::GetWebhook)),
    spec(Put, "/api/webhook", "set_webhook", "Set the webhook URL, with a new signing secret shown once", "notifications", N, Some(("WebhookInput", false)), (200, "Webhook"), |_, _| Ok(Route::PutWebhook)),
    spec(Delete, "/api/webhook", "delete_webhook", "Remove the webhook", "notifications", N, None, (200, "Message"), |_, _| Ok(Route::DeleteWebhook)),
    spec(Get, "/api/tokens", "list_tokens", "The tenant's API tokens (never the tokens themselves)", "tokens", N, None, (200, "TokenList"), |_, _| Ok(Route::ListTokens)),
    spec(Post, "/api/tokens", "create_token", "Create a token, shown once", "tokens", N, Some(("TokenInput", true)), (201, "Token"), |_, _| Ok(Route::CreateToken)),
    spec(Delete, "/api/tokens/{id}", "revoke_token", "Revoke a token by its id", "tokens", IdOf::Token, None, (200, "Revoked"), |t, _| Ok(Route::RevokeToken(t))),
    spec(Get, "/api/status", "service_status", "This node's resource use and the tenant's connections: rates against limits, 429s, last errors, pauses", "service", N, None, (200, "ServiceStatus"), |_, _| Ok(Route::Status)),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, query: &str, expect: Result<Route, &str>) {
        let got = Route::parse(&method, path, query).map_err(|e| serde_json::json!(e.code));
        let expect = expect.map_err(|code| serde_json::json!(code));
        assert_eq!(got, expect, "{method} {path}?{query}");
    }

    #[test]
    fn requests_become_routes_with_their_ids_parsed() {
        use Route::*;
        let cases: &[(Method, &str, &str, Result<Route, &str>)] = &[
            (Method::GET, "/health", "", Ok(Health)),
            (Method::GET, "/api/campaigns/", "", Ok(ListCampaigns)),
            (Method::GET, "/api/campaigns/7", "", Ok(GetCampaign(7))),
            (
                Method::POST,
                "/api/campaigns/7/publish",
                "",
                Ok(CampaignAction(7, Action::Publish)),
            ),
            (
                Method::POST,
                "/api/campaigns/7/republish",
                "",
                Ok(CampaignAction(7, Action::Republish)),
            ),
            (
                Method::POST,
                "/api/campaigns/7/delete",
                "",
                Err("route_not_found"),
            ),
            (
                Method::GET,
                "/api/campaigns/7/publish",
                "",
                Err("method_not_allowed"),
            ),
            (Method::GET, "/api/campaigns/x", "", Err("not_found")),
            (Method::GET, "/api/campaigns/+7", "", Err("not_found")),
            (Method::GET, "/api/campaigns/07", "", Err("not_found")),
            (Method::GET, "//api/campaigns/7", "", Err("route_not_found")),
            (Method::GET, "/api//campaigns", "", Err("route_not_found")),
            (Method::GET, "/api/campaigns//", "", Err("route_not_found")),
            (Method::PATCH, "/api/campaigns/7", "", Ok(UpdateCampaign(7))),
            (
                Method::PATCH,
                "/api/campaigns/7/products",
                "",
                Ok(SetCampaignPrices(7)),
            ),
            (
                Method::DELETE,
                "/api/ecommerce/campaign/3/product",
                "action=delete",
                Ok(ProductAction(3, Action::Delete)),
            ),
            (
                Method::DELETE,
                "/api/ecommerce/campaign/3/product",
                "action=pause",
                Err("validation_failed"),
            ),
            (
                Method::POST,
                "/api/ecommerce/campaign/3/product/pause",
                "",
                Ok(ProductAction(3, Action::Pause)),
            ),
            (
                Method::GET,
                "/api/tracker/9/progress",
                "",
                Ok(TrackerProgress(9)),
            ),
            (
                Method::POST,
                "/api/notifications/read-all",
                "",
                Ok(ReadAllNotifications),
            ),
            (
                Method::POST,
                "/api/notifications/4/read",
                "",
                Ok(ReadNotification(4)),
            ),
            (Method::DELETE, "/api/webhook", "", Ok(DeleteWebhook)),
            (
                Method::DELETE,
                "/api/tokens/00ff00ff00ff00ff",
                "",
                Ok(RevokeToken(0x00ff00ff00ff00ff)),
            ),
            (
                Method::DELETE,
                "/api/tokens/+0ff00ff00ff00ff",
                "",
                Err("not_found"),
            ),
            (Method::GET, "/nope", "", Err("route_not_found")),
        ];
        for (method, path, query, expect) in cases {
            check(method.clone(), path, query, *expect);
        }
        assert!(!Health.authenticated());
        assert!(ListCampaigns.authenticated());
    }
}
