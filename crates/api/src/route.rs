//! The API's routes as a type: a request's method, path and query become one `Route` at the
//! edge, so handlers receive ids already parsed and the route table is data that tests read.

use warp::http::{Method, StatusCode};

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

/// The pages served beside the routes, GET only: the dashboard, the live streams and the
/// operator's pages (`{id}` stands for any one segment). The API's document lists the same.
pub const BESIDE: &[&str] = &[
    "/",
    "/metrics",
    "/api/events",
    "/api/ws",
    "/admin/status",
    "/admin/campaigns",
    "/admin/campaigns/{id}/trackers",
    "/admin/campaigns/{id}/failed",
    "/admin/check",
];

/// Whether `path` (one trailing slash forgiven) is of the `template`'s shape.
fn fits(path: &str, template: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let template = template.strip_suffix('/').unwrap_or(template);
    let (p, t): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(p, t)| p == t || (*t == "{id}" && !p.is_empty()))
}

/// An id as the API writes it: decimal digits, no sign, no leading zero.
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
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {method} {path}"),
    )
}

impl Route {
    /// One route of each kind (each action of the parametrised ones), in the order the API's
    /// document lists them. A new variant belongs here, or the document will lack it.
    pub fn examples() -> Vec<Route> {
        use Route::*;
        let mut all = vec![
            Health,
            OpenApi,
            ListConnections,
            CreateConnection,
            ListProducts,
            UpsertProducts,
            ListCampaigns,
            CreateCampaign,
            GetCampaign(7),
            UpdateCampaign(7),
            AddCampaignProducts(7),
            SetCampaignPrices(7),
            ListCampaignProducts(7),
            ListTrackers(7),
            CampaignProgress(7),
            ForceReset(7),
        ];
        for a in [
            Action::Publish,
            Action::Republish,
            Action::Pause,
            Action::Finish,
        ] {
            all.push(CampaignAction(7, a));
        }
        for a in [
            Action::Publish,
            Action::Pause,
            Action::Delete,
            Action::Finish,
        ] {
            all.push(ProductAction(7, a));
        }
        all.extend([
            StartDrift(7),
            DriftReport(7),
            StartReconcile(7),
            TrackerProgress(7),
            FailedProducts(7),
            Retry(7),
            ListNotifications,
            ReadAllNotifications,
            ReadNotification(7),
            GetWebhook,
            PutWebhook,
            DeleteWebhook,
            ListTokens,
            CreateToken,
            RevokeToken(0xab),
            Status,
        ]);
        all
    }

    /// Whether the route needs a tenant's token.
    pub fn authenticated(self) -> bool {
        !matches!(self, Route::Health | Route::OpenApi)
    }

    /// The route of a request; an unknown one is `route_not_found`, a malformed id is the
    /// resource's `not_found`, and a product action without a known `?action=` is refused.
    pub fn parse(method: &Method, path: &str, query: &str) -> Result<Route, ApiError> {
        let matched = Route::matched(method, path, query);
        match &matched {
            Err(e) if e.code == "route_not_found" => {}
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
            Route::matched(m, path, query).map_or_else(|e| e.code != "route_not_found", |_| true)
        })
        .map(Method::as_str)
        .collect();
        // The pages served beside the routes (the dashboard, live streams, operator pages)
        // answer GET only.
        let beside = BESIDE.iter().any(|template| fits(path, template));
        let allow = if allow.is_empty() && beside && method != Method::GET {
            vec![Method::GET.as_str()]
        } else {
            allow
        };
        if allow.is_empty() {
            return matched;
        }
        Err(ApiError {
            extra: Some(serde_json::json!({ "allow": allow })),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
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
        let m = method;
        let route = match segments.as_slice() {
            ["health"] if m == Method::GET => Route::Health,
            ["api", "openapi.json"] if m == Method::GET => Route::OpenApi,
            ["api", "marketplaces"] if m == Method::GET => Route::ListConnections,
            ["api", "marketplaces"] if m == Method::POST => Route::CreateConnection,
            ["api", "products"] if m == Method::GET => Route::ListProducts,
            ["api", "products"] if m == Method::POST => Route::UpsertProducts,
            ["api", "campaigns"] if m == Method::GET => Route::ListCampaigns,
            ["api", "campaigns"] if m == Method::POST => Route::CreateCampaign,
            ["api", "campaigns", c] if m == Method::GET => Route::GetCampaign(id(c, "campaign")?),
            ["api", "campaigns", c] if m == Method::PATCH => {
                Route::UpdateCampaign(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "products"] if m == Method::PATCH => {
                Route::SetCampaignPrices(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "products"] if m == Method::POST => {
                Route::AddCampaignProducts(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "products"] if m == Method::GET => {
                Route::ListCampaignProducts(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "trackers"] if m == Method::GET => {
                Route::ListTrackers(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "progress"] if m == Method::GET => {
                Route::CampaignProgress(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "drift"] if m == Method::POST => {
                Route::StartDrift(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "drift"] if m == Method::GET => {
                Route::DriftReport(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "reconcile"] if m == Method::POST => {
                Route::StartReconcile(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "force-reset"] if m == Method::POST => {
                Route::ForceReset(id(c, "campaign")?)
            }
            ["api", "campaigns", c, action @ ("publish" | "republish" | "pause" | "finish")]
                if m == Method::POST =>
            {
                let action = Action::parse(action).ok_or_else(|| not_found(method, path))?;
                Route::CampaignAction(id(c, "campaign")?, action)
            }
            ["api", "ecommerce", "campaign", c, "product"] if m == Method::DELETE => {
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
                Route::ProductAction(id(c, "campaign")?, action)
            }
            ["api", "ecommerce", "campaign", c, "product", action @ ("publish" | "pause")]
                if m == Method::POST =>
            {
                let action = Action::parse(action).ok_or_else(|| not_found(method, path))?;
                Route::ProductAction(id(c, "campaign")?, action)
            }
            ["api", "tracker", t, "progress"] if m == Method::GET => {
                Route::TrackerProgress(id(t, "tracker")?)
            }
            ["api", "campaigns", c, "failed-products"] if m == Method::GET => {
                Route::FailedProducts(id(c, "campaign")?)
            }
            ["api", "campaigns", c, "retry"] if m == Method::POST => {
                Route::Retry(id(c, "campaign")?)
            }
            ["api", "notifications"] if m == Method::GET => Route::ListNotifications,
            ["api", "notifications", "read-all"] if m == Method::POST => {
                Route::ReadAllNotifications
            }
            ["api", "notifications", n, "read"] if m == Method::POST => {
                Route::ReadNotification(id(n, "notification")?)
            }
            ["api", "webhook"] if m == Method::GET => Route::GetWebhook,
            ["api", "webhook"] if m == Method::PUT => Route::PutWebhook,
            ["api", "webhook"] if m == Method::DELETE => Route::DeleteWebhook,
            ["api", "status"] if m == Method::GET => Route::Status,
            ["api", "tokens"] if m == Method::GET => Route::ListTokens,
            ["api", "tokens"] if m == Method::POST => Route::CreateToken,
            ["api", "tokens", t] if m == Method::DELETE => {
                let valid = t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit());
                let id = u64::from_str_radix(t, 16).ok().filter(|_| valid);
                Route::RevokeToken(id.ok_or_else(|| ApiError::not_found("token"))?)
            }
            _ => return Err(not_found(method, path)),
        };
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, query: &str, expect: Result<Route, &str>) {
        let got = Route::parse(&method, path, query).map_err(|e| e.code);
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
