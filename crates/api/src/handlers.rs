//! The routes and their handlers. Each handler parses its input into domain values, checks it
//! fully before writing anything, and answers JSON.

use crate::error::ErrorCode;
use warp::http::StatusCode;
use warp::reply::Response;

use super::error::{parse_json, parse_json_list, parse_optional_json, ApiError};
use super::input::{
    self, validate_products, ActionInput, AddProductsInput, CampaignInput, CampaignPatch,
    ConnectionInput, PageQuery, ProductActionInput, ProductInput, ProductPriceInput, RetryInput,
    TokenInput, WebhookInput, MAX_PRODUCTS_PER_REQUEST,
};
use super::route::{not_found, Route};
use super::{answers, authenticate, reply_json, ApiState, Request};
use domain::{
    commands, schedule, Action, Campaign, CampaignStatus, Connection, Id, PriceChange, Product,
    ProductStatus, Schedule, Webhook,
};
use engine::notifier::new_secret;
use engine::supervisor::{AddProducts, DryRunAction, ForceReset, SetPrices, Start};
use engine::ActionRequest;
use net::egress::{self, Policy, Purpose};
use store::{self, CpFilter};

fn ok(body: impl serde::Serialize) -> Result<Response, ApiError> {
    Ok(reply_json(StatusCode::OK, &body))
}

fn created(body: impl serde::Serialize) -> Result<Response, ApiError> {
    Ok(reply_json(StatusCode::CREATED, &body))
}

/// Answers one request, and writes its access log line: method, route, status, duration and
/// tenant, never a body or a token.
pub async fn dispatch(state: &ApiState, req: Request) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let route = Route::parse(&req.method, &req.path, &req.query);
    let name = match &route {
        Ok(r) => {
            let debug = format!("{r:?}");
            debug.split('(').next().unwrap_or_default().to_string()
        }
        Err(_) => "unknown".to_string(),
    };
    let mut tenant = None;
    let answer = answer(state, route, &req, &mut tenant).await;
    let status = match &answer {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status().as_u16(),
    };
    tracing::info!(
        target: "campaignd::access",
        method = %req.method,
        route = %name,
        status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        tenant_id = tenant,
        "request"
    );
    answer
}

async fn answer(
    state: &ApiState,
    route: Result<Route, ApiError>,
    req: &Request,
    tenant_out: &mut Option<Id>,
) -> Result<Response, ApiError> {
    match route {
        Ok(Route::Health) => {
            return ok(answers::Health {
                status: "ok".into(),
            })
        }
        Ok(Route::OpenApi) => return ok(super::openapi::json().clone()),
        _ => {}
    }
    // Anything under /api asks for a token first, even a route that does not exist.
    if req.path.starts_with("/api") {
        let tenant = authenticate(state, req).await?;
        *tenant_out = Some(tenant);
        return handle(state, tenant, route?, req).await;
    }
    Err(route
        .err()
        .unwrap_or_else(|| not_found(&req.method, &req.path)))
}

/// Route → command → view.
async fn handle(
    state: &ApiState,
    tenant: Id,
    route: Route,
    req: &Request,
) -> Result<Response, ApiError> {
    match route {
        Route::Health => ok(answers::Health {
            status: "ok".into(),
        }),
        Route::OpenApi => ok(super::openapi::json().clone()),
        Route::ListConnections => list_connections(state, tenant).await,
        Route::CreateConnection => create_connection(state, tenant, req).await,
        Route::ListProducts => list_products(state, tenant, req).await,
        Route::UpsertProducts => upsert_products(state, tenant, req).await,
        Route::ListCampaigns => list_campaigns(state, tenant).await,
        Route::CreateCampaign => create_campaign(state, tenant, req).await,
        Route::GetCampaign(c) => get_campaign(state, tenant, c).await,
        Route::UpdateCampaign(c) => update_campaign(state, tenant, c, req).await,
        Route::AddCampaignProducts(c) => add_campaign_products(state, tenant, c, req).await,
        Route::SetCampaignPrices(c) => set_campaign_prices(state, tenant, c, req).await,
        Route::ListCampaignProducts(c) => list_campaign_products(state, tenant, c, req).await,
        Route::ListTrackers(c) => list_trackers(state, tenant, c).await,
        Route::CampaignProgress(c) => campaign_progress(state, tenant, c, req).await,
        Route::ForceReset(c) => force_reset(state, tenant, c).await,
        Route::CampaignAction(c, action) => {
            let input: ActionInput = parse_optional_json(&req.body)?;
            campaign_action(state, tenant, c, action, input, Level::Campaign, req).await
        }
        Route::ProductAction(c, action) => {
            let input: ProductActionInput = parse_json(&req.body)?;
            campaign_action(state, tenant, c, action, input.into(), Level::Products, req).await
        }
        Route::StartDrift(c) => {
            let input: ActionInput = parse_optional_json(&req.body)?;
            campaign_action(state, tenant, c, Action::Drift, input, Level::Campaign, req).await
        }
        Route::DriftReport(c) => drift_report(state, tenant, c, req).await,
        Route::StartReconcile(c) => {
            let input: ActionInput = parse_optional_json(&req.body)?;
            campaign_action(
                state,
                tenant,
                c,
                Action::Reconcile,
                input,
                Level::Campaign,
                req,
            )
            .await
        }
        Route::TrackerProgress(t) => tracker_progress(state, tenant, t).await,
        Route::FailedProducts(c) => failed_products(state, tenant, c).await,
        Route::Retry(c) => retry(state, tenant, c, req).await,
        Route::ListNotifications => list_notifications(state, tenant, req).await,
        Route::ReadAllNotifications => read_all_notifications(state, tenant).await,
        Route::ReadNotification(n) => read_notification(state, tenant, n).await,
        Route::GetWebhook => get_webhook(state, tenant).await,
        Route::PutWebhook => put_webhook(state, tenant, req).await,
        Route::ListTokens => list_tokens(state, tenant).await,
        Route::CreateToken => create_token(state, tenant, req).await,
        Route::RevokeToken(id) => revoke_token(state, tenant, id).await,
        Route::Status => service_status(state, tenant).await,
        Route::DeleteWebhook => {
            state.store.remove_webhook(tenant).await?;
            ok(answers::Message {
                message: "Webhook removed".into(),
            })
        }
    }
}

/// Whether an action is on the whole campaign or on chosen products (the seed's
/// CampaignProductController, which leaves the campaign's own status alone).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Campaign,
    Products,
}

// ----- connections -----

async fn list_connections(state: &ApiState, tenant: Id) -> Result<Response, ApiError> {
    let data = state
        .store
        .connections(tenant)
        .await?
        .iter()
        .map(answers::Connection::from)
        .collect();
    ok(answers::ConnectionList { data })
}

async fn create_connection(
    state: &ApiState,
    tenant: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let input: ConnectionInput = parse_json(&req.body)?;
    let valid = input.validate()?;
    let url = reqwest::Url::parse(&valid.base_url)
        .map_err(|e| ApiError::invalid(format!("base_url is not a URL: {e}")))?;
    marketplaces::kind::check_official_host(
        valid.system,
        &url,
        state.egress.marketplaces_allow_custom_hosts,
    )
    .map_err(|why| ApiError::url_refused("base_url", why))?;
    egress::check_resolved(&url, Policy::of(&state.egress, Purpose::Marketplaces))
        .await
        .map_err(|why| ApiError::url_refused("base_url", why))?;
    let connection = Connection {
        id: state.store.next_id("connection").await?,
        tenant_id: tenant,
        system: valid.system,
        name: valid.name,
        base_url: valid.base_url,
        credentials: valid.credentials,
        rate_limit: valid.rate_limit,
        // Unless told otherwise, enough in flight for a whole second's burst to go at once.
        max_in_flight: valid.max_in_flight.unwrap_or(
            state
                .runs
                .default_max_in_flight
                .max(valid.rate_limit.per_second)
                .min(256),
        ),
        settings: valid.settings,
        created_at: state.clock.now_ms(),
    };
    state.store.put_connection(&connection).await?;
    created(answers::Connection::from(&connection))
}

// ----- products -----

async fn list_products(state: &ApiState, tenant: Id, req: &Request) -> Result<Response, ApiError> {
    let q = PageQuery::parse(&req.query)?;
    let page = state
        .store
        .products_page(tenant, q.offset(), q.per_page)
        .await?;
    ok(answers::ProductPage {
        data: page.items.iter().map(answers::Product::from).collect(),
        page: q.page,
        per_page: q.per_page,
        total: page.total,
    })
}

async fn upsert_products(
    state: &ApiState,
    tenant: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let inputs: Vec<ProductInput> = parse_json_list(&req.body)?;
    let valid = validate_products(inputs)?;
    let now = state.clock.now_ms();
    let products = valid
        .into_iter()
        .map(|p| Product {
            id: 0,
            tenant_id: tenant,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: p.price,
            stock: p.stock,
            variants: p.variants,
            images: p.images,
            updated_at: now,
            details: p.details,
        })
        .collect();
    let store::Upserted {
        products,
        created: new_count,
    } = state.store.upsert_products(tenant, products).await?;
    ok(answers::Upserted {
        created: new_count,
        updated: products.len() as u64 - new_count,
        products: products
            .into_iter()
            .map(|p| answers::ProductRef {
                id: p.id,
                sku: p.sku,
            })
            .collect(),
    })
}

// ----- campaigns -----

async fn load_campaign(state: &ApiState, tenant: Id, id: Id) -> Result<Campaign, ApiError> {
    state
        .store
        .campaign(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))
}

async fn list_campaigns(state: &ApiState, tenant: Id) -> Result<Response, ApiError> {
    let mut list = Vec::new();
    for c in state.store.campaigns(tenant).await? {
        let schedule = state.store.schedule(c.id).await?;
        list.push(answers::Campaign::of(&c, schedule.as_ref()));
    }
    ok(answers::CampaignList { data: list })
}

/// Checks that every id names one of the tenant's connections.
async fn check_connections(state: &ApiState, tenant: Id, ids: &[Id]) -> Result<(), ApiError> {
    for id in ids {
        if state.store.connection(tenant, *id).await?.is_none() {
            return Err(ApiError::missing(format!("marketplace {id} not found")));
        }
    }
    Ok(())
}

async fn create_campaign(
    state: &ApiState,
    tenant: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let input: CampaignInput = parse_json(&req.body)?;
    let (name, ids) = commands::new_campaign(&input.name, input.marketplace_ids)?;
    let now = state.clock.now_ms();
    let mut given = Vec::new();
    let mut dated = |field: &'static str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        let at = v.as_deref().map(|v| input::date(field, v)).transpose()?;
        given.extend(at.map(|at| (field, at)));
        Ok(at)
    };
    let presale_at = dated("presale_at", &input.presale_at)?;
    let starts_at = dated("starts_at", &input.starts_at)?;
    let ends_at = dated("ends_at", &input.ends_at)?;
    schedule::check_dates(presale_at, starts_at, ends_at, &given, now)
        .map_err(ApiError::invalid)?;
    let drift_every_hours = input::drift_every_hours(input.drift_every_hours)?;
    check_connections(state, tenant, &ids).await?;
    let campaign = Campaign {
        id: state.store.next_id("campaign").await?,
        tenant_id: tenant,
        name,
        status: CampaignStatus::Pending,
        error: false,
        marketplace_ids: ids,
        status_before_run: None,
        created_at: now,
        updated_at: now,
    };
    let mut schedule = Schedule {
        presale_at,
        starts_at,
        ends_at,
        notify: input.notify_scheduled.unwrap_or(true),
        ..Schedule::new(tenant, campaign.id)
    };
    schedule.check_drift_every(drift_every_hours, now);
    state.store.put_campaign(&campaign).await?;
    state.store.put_schedule(&schedule).await?;
    created(answers::Campaign::of(&campaign, Some(&schedule)))
}

async fn get_campaign(state: &ApiState, tenant: Id, c: Id) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    store::for_each_campaign_product(state.store.as_ref(), campaign.id, |cp| {
        *counts.entry(cp.status.as_str()).or_default() += 1;
    })
    .await?;
    let lock = state.store.lock(campaign.id).await?;
    let schedule = state.store.schedule(campaign.id).await?;
    let mut answer = answers::Campaign::of(&campaign, schedule.as_ref());
    answer.product_counts = Some(
        counts
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
    );
    answer.running_tracker_id = Some(lock.as_ref().map(|l| l.tracker_id));
    if let (Some(next), Some(lock), Some(s)) = (answer.next_scheduled.as_mut(), &lock, &schedule) {
        // A step whose date came while an action runs waits for it.
        if s.due(state.clock.now_ms()).is_some() {
            next.waiting_for_tracker_id = Some(lock.tracker_id);
        }
    }
    ok(answer)
}

/// Changes a campaign's dates (a `null` clears one), whether its steps notify, and its
/// periodic drift check. Steps already taken stay taken; the others follow the new dates.
async fn update_campaign(
    state: &ApiState,
    tenant: Id,
    c: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let input: CampaignPatch = parse_json(&req.body)?;
    let now = state.clock.now_ms();
    let mut schedule = state
        .store
        .schedule(campaign.id)
        .await?
        .unwrap_or_else(|| Schedule::new(tenant, campaign.id));
    let mut given = Vec::new();
    let mut apply = |field: &'static str,
                     patch: &Option<Option<String>>,
                     slot: &mut Option<i64>|
     -> Result<(), ApiError> {
        match patch {
            None => {}
            Some(None) => *slot = None,
            Some(Some(v)) => {
                let at = input::date(field, v)?;
                given.push((field, at));
                *slot = Some(at);
            }
        }
        Ok(())
    };
    apply("presale_at", &input.presale_at, &mut schedule.presale_at)?;
    apply("starts_at", &input.starts_at, &mut schedule.starts_at)?;
    apply("ends_at", &input.ends_at, &mut schedule.ends_at)?;
    if let Some(n) = input.notify_scheduled {
        schedule.notify = n;
    }
    if let Some(hours) = input.drift_every_hours {
        schedule.check_drift_every(input::drift_every_hours(hours)?, now);
    }
    schedule::check_dates(
        schedule.presale_at,
        schedule.starts_at,
        schedule.ends_at,
        &given,
        now,
    )
    .map_err(ApiError::invalid)?;
    if !state.store.put_schedule(&schedule).await? {
        return Err(ApiError::new(
            ErrorCode::ScheduleChanged,
            "the campaign's schedule changed meanwhile (a step was taken); read it and try again",
        ));
    }
    ok(answers::Campaign::of(&campaign, Some(&schedule)))
}

/// Finds the products a list of prices names (by id or SKU), in the tenant's catalog; `field`
/// names the list in messages (`products` in a body, empty for a body that is the list).
async fn priced_products(
    state: &ApiState,
    tenant: Id,
    field: &str,
    list: &[ProductPriceInput],
) -> Result<Vec<(Id, PriceChange)>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid("the list of products is empty"));
    }
    if list.len() > MAX_PRODUCTS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "at most {MAX_PRODUCTS_PER_REQUEST} products per request"
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut seen = std::collections::HashSet::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let id = match (item.product_id, item.sku.as_deref()) {
            (Some(id), None) => id,
            (None, Some(sku)) => state
                .store
                .product_id_by_sku(tenant, sku)
                .await?
                .ok_or_else(|| ApiError::invalid(format!("{at}: no product with sku {sku:?}")))?,
            _ => {
                return Err(ApiError::invalid(format!(
                    "{at} must name its product by product_id or by sku"
                )))
            }
        };
        let product = state
            .store
            .product(tenant, id)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("{at}: product {id} not found")))?;
        if !seen.insert(id) {
            return Err(ApiError::invalid(format!(
                "{at}: product {id} appears twice"
            )));
        }
        out.push((id, item.change(&at, product.price)?));
    }
    Ok(out)
}

/// Sets campaign prices of products already in the campaign (on all its marketplaces).
async fn set_campaign_prices(
    state: &ApiState,
    tenant: Id,
    c: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let list: Vec<ProductPriceInput> = parse_json_list(&req.body)?;
    let prices = priced_products(state, tenant, "", &list).await?;
    for (i, (id, _)) in prices.iter().enumerate() {
        let mut found = false;
        for conn in &campaign.marketplace_ids {
            if state
                .store
                .campaign_product(campaign.id, *conn, *id)
                .await?
                .is_some()
            {
                found = true;
                break;
            }
        }
        if !found {
            return Err(ApiError::invalid(format!(
                "[{i}]: product {id} is not in this campaign"
            )));
        }
    }
    let updated = state
        .supervisor
        .send(SetPrices {
            campaign_id: campaign.id,
            connection_ids: campaign.marketplace_ids.clone(),
            prices,
        })
        .await??;
    ok(answers::Updated { updated })
}

async fn add_campaign_products(
    state: &ApiState,
    tenant: Id,
    c: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let input: AddProductsInput = parse_json(&req.body)?;
    let connections = commands::adding_products(&campaign, input.marketplace_ids)?;
    let mut prices = std::collections::HashMap::new();
    let product_ids: Vec<Id> = match (input.product_ids, input.skus, input.products) {
        (None, None, Some(list)) => {
            let priced = priced_products(state, tenant, "products", &list).await?;
            let ids = priced.iter().map(|(id, _)| *id).collect();
            prices.extend(priced);
            ids
        }
        (Some(ids), None, None) => {
            for id in &ids {
                if state.store.product(tenant, *id).await?.is_none() {
                    return Err(ApiError::invalid(format!("product {id} not found")));
                }
            }
            ids
        }
        (None, Some(skus), None) => {
            let mut ids = Vec::with_capacity(skus.len());
            for sku in &skus {
                match state.store.product_id_by_sku(tenant, sku).await? {
                    Some(id) => ids.push(id),
                    None => return Err(ApiError::invalid(format!("no product with sku {sku:?}"))),
                }
            }
            ids
        }
        _ => {
            return Err(ApiError::invalid(
                "give one of product_ids, skus, or products (with their prices)",
            ))
        }
    };
    if product_ids.is_empty() {
        return Err(ApiError::invalid("the list of products is empty"));
    }
    let added = state
        .supervisor
        .send(AddProducts {
            tenant_id: tenant,
            campaign_id: campaign.id,
            connection_ids: connections,
            product_ids,
            prices,
        })
        .await??;
    ok(answers::Added {
        added: added.added,
        already_in_campaign: added.already,
    })
}

async fn list_campaign_products(
    state: &ApiState,
    tenant: Id,
    c: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let q = PageQuery::parse(&req.query)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ProductStatus::parse(s).ok_or_else(|| {
            ApiError::invalid("status must be pending, published, paused, errored or finished")
        })?),
    };
    let product_ids = match q.sku.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(sku) => Some(skus_containing(state, tenant, sku).await?),
    };
    let filter = CpFilter {
        status,
        connection_id: q.marketplace_id,
        product_ids,
    };
    let page = state
        .store
        .campaign_products_page(campaign.id, &filter, q.offset(), q.per_page)
        .await?;
    let mut data = Vec::with_capacity(page.items.len());
    for cp in &page.items {
        let product = state.store.product(tenant, cp.product_id).await?;
        data.push(answers::CampaignProduct::of(cp, product.as_ref()));
    }
    ok(answers::CampaignProductPage {
        data,
        page: q.page,
        per_page: q.per_page,
        total: page.total,
    })
}

/// Most products a SKU search names; a broader search is refused as too vague.
const MAX_SKU_MATCHES: usize = 10_000;

/// The tenant's products whose SKU contains `text` (ignoring case), sorted by id.
async fn skus_containing(state: &ApiState, tenant: Id, text: &str) -> Result<Vec<Id>, ApiError> {
    let needle = input::text("sku", text, input::MAX_NAME)?;
    state
        .store
        .product_ids_with_sku_containing(tenant, &needle, MAX_SKU_MATCHES)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "more than {MAX_SKU_MATCHES} SKUs contain {needle:?}; search for more of the SKU"
            ))
        })
}

// ----- drift -----

/// `GET /api/campaigns/{id}/drift`: the last drift check (its tracker), how many products it
/// read, and those that differ, could not be read or were repaired since, paginated.
async fn drift_report(
    state: &ApiState,
    tenant: Id,
    c: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let q = PageQuery::parse(&req.query)?;
    let campaign = load_campaign(state, tenant, c).await?;
    let last = state
        .store
        .campaign_trackers(campaign.id)
        .await?
        .into_iter()
        .filter(|t| t.action == Action::Drift)
        .max_by_key(|t| t.id);
    let last_id = last.as_ref().map(|t| t.id);
    let mut tally = domain::drift::Tally::default();
    let mut differing = Vec::new();
    store::for_each_campaign_product(state.store.as_ref(), campaign.id, |cp| {
        let Some(check) = cp.drift.as_ref().filter(|d| Some(d.tracker_id) == last_id) else {
            return;
        };
        if tally.add(check) {
            differing.push(cp);
        }
    })
    .await?;
    let total = differing.len() as u64;
    let mut data = Vec::new();
    for cp in differing
        .iter()
        .skip(q.offset() as usize)
        .take(q.per_page as usize)
    {
        let product = state.store.product(tenant, cp.product_id).await?;
        data.push(answers::Drifted::of(cp, product.as_ref()));
    }
    ok(answers::DriftReport {
        tracker: last.as_ref().map(answers::Tracker::from),
        checked: tally.checked,
        differing: tally.differing,
        unreadable: tally.unreadable,
        repaired: tally.repaired,
        counts: answers::texts(tally.counts),
        data,
        page: q.page,
        per_page: q.per_page,
        total,
    })
}

// ----- trackers and progress -----

async fn list_trackers(state: &ApiState, tenant: Id, c: Id) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let list: Vec<_> = state
        .store
        .campaign_trackers(campaign.id)
        .await?
        .iter()
        .map(answers::Tracker::from)
        .collect();
    ok(answers::TrackerList { data: list })
}

async fn campaign_progress(
    state: &ApiState,
    tenant: Id,
    c: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let q = PageQuery::parse(&req.query)?;
    let action = match q.action.as_deref() {
        None => None,
        Some(a) => Some(Action::parse(a).ok_or_else(|| {
            ApiError::invalid("action must be publish, republish, pause, finish or delete")
        })?),
    };
    let latest = state
        .store
        .campaign_trackers(campaign.id)
        .await?
        .into_iter()
        .find(|t| action.is_none_or(|a| a == t.action))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "this campaign has no tracker for that action",
            )
        })?;
    ok(answers::ProgressAnswer {
        success: true,
        data: answers::LatestProgress::from(&latest),
    })
}

async fn tracker_progress(state: &ApiState, tenant: Id, id: Id) -> Result<Response, ApiError> {
    let tracker = state
        .store
        .tracker(id)
        .await?
        .filter(|t| t.tenant_id == tenant)
        .ok_or_else(|| ApiError::not_found("tracker"))?;
    ok(answers::TrackerAnswer {
        success: true,
        data: answers::Tracker::from(&tracker),
    })
}

// ----- actions -----

/// A dry run's `?detail=true`: the plan shows the requests' bodies.
fn detail(query: &str) -> Result<bool, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
    match pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "detail")
        .map(|(_, v)| v.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!(
            "detail must be true or false, not {other:?}"
        ))),
    }
}

/// The chunk size a request asked for, or the default, within the configured bounds.
fn chunk_size(state: &ApiState, asked: Option<u32>) -> Result<usize, ApiError> {
    Ok(commands::chunk_size(
        asked,
        state.runs.default_chunk_size,
        state.runs.max_chunk_size,
    )?)
}

async fn campaign_action(
    state: &ApiState,
    tenant: Id,
    c: Id,
    action: Action,
    input: ActionInput,
    level: Level,
    req: &Request,
) -> Result<Response, ApiError> {
    let product_level = level == Level::Products;
    let dry_run = input.dry_run.mode(detail(&req.query)?);
    let campaign_id = load_campaign(state, tenant, c).await?.id;
    let chunk_size = chunk_size(state, input.chunk_size)?;
    let commands::ActionScope {
        product_ids,
        connection_ids,
    } = commands::action_scope(input.product_ids, input.marketplace_ids)?;
    let request = ActionRequest {
        tenant_id: tenant,
        campaign_id,
        action,
        product_ids,
        connection_ids,
        chunk_size,
        fail_fast: input.fail_fast,
        force: input.force,
        product_level,
        retry: false,
        notify: input.notify,
        scheduled: None,
    };
    if let Some(mode) = dry_run {
        let plan = state.supervisor.send(DryRunAction(request, mode)).await??;
        return ok(answers::Plan::from(plan));
    }
    let started = state.supervisor.send(Start(request)).await??;
    ok(answers::Started {
        message: match product_level {
            true => action.product_started_message(),
            false => action.started_message(),
        }
        .to_string(),
        tracker_id: started.tracker_id,
        total_products: product_level.then_some(started.total_products),
        action: None,
    })
}

async fn force_reset(state: &ApiState, tenant: Id, c: Id) -> Result<Response, ApiError> {
    let campaign_id = load_campaign(state, tenant, c).await?.id;
    let cleared = state
        .supervisor
        .send(ForceReset {
            tenant_id: tenant,
            campaign_id,
        })
        .await??;
    ok(answers::Reset {
        message: "Campaign reset successfully".into(),
        cleared_trackers: cleared,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationQuery {
    #[serde(default)]
    unread: Option<bool>,
}

async fn list_notifications(
    state: &ApiState,
    tenant: Id,
    req: &Request,
) -> Result<Response, ApiError> {
    let q: NotificationQuery = serde_urlencoded::from_str(&req.query)
        .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
    let all = state.store.notifications(tenant).await?;
    let unread = all.iter().filter(|n| !n.read).count();
    let list: Vec<_> = all
        .iter()
        .filter(|n| q.unread != Some(true) || !n.read)
        .map(answers::Notification::from)
        .collect();
    ok(answers::NotificationList {
        data: list,
        unread: unread as u64,
    })
}

async fn read_notification(state: &ApiState, tenant: Id, n: Id) -> Result<Response, ApiError> {
    let mut notification = state
        .store
        .notification(tenant, n)
        .await?
        .ok_or_else(|| ApiError::not_found("notification"))?;
    notification.read = true;
    state.store.put_notification(&notification).await?;
    ok(answers::NotificationAnswer {
        data: answers::Notification::from(&notification),
    })
}

async fn read_all_notifications(state: &ApiState, tenant: Id) -> Result<Response, ApiError> {
    let mut marked = 0;
    for mut n in state.store.notifications(tenant).await? {
        if !n.read {
            n.read = true;
            state.store.put_notification(&n).await?;
            marked += 1;
        }
    }
    ok(answers::Marked { marked })
}

async fn get_webhook(state: &ApiState, tenant: Id) -> Result<Response, ApiError> {
    let hook = state
        .store
        .webhook(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let pending: Vec<_> = state
        .store
        .outbox()
        .await?
        .into_iter()
        .filter(|(_, d)| d.tenant_id == tenant)
        .map(|(_, d)| answers::PendingDelivery {
            id: d.id,
            attempts: d.attempts,
            last_error: d.last_error,
            next_attempt_at: domain::clock::rfc3339(d.next_attempt_at),
        })
        .collect();
    ok(answers::Webhook {
        url: hook.url.clone(),
        created_at: domain::clock::rfc3339(hook.created_at),
        pending: Some(pending),
        secret: None,
    })
}

/// Sets the tenant's webhook URL with a new signing secret, shown only in this answer.
async fn put_webhook(state: &ApiState, tenant: Id, req: &Request) -> Result<Response, ApiError> {
    let input: WebhookInput = parse_json(&req.body)?;
    if input.url.len() > input::MAX_URL {
        return Err(ApiError::invalid(format!(
            "url is longer than {} characters",
            input::MAX_URL
        )));
    }
    let url = reqwest::Url::parse(input.url.trim())
        .map_err(|e| ApiError::invalid(format!("url is not a URL: {e}")))?;
    egress::check_resolved(&url, Policy::of(&state.egress, Purpose::Webhooks))
        .await
        .map_err(|why| ApiError::url_refused("url", why))?;
    let hook = Webhook {
        url: url.to_string(),
        secret: new_secret(),
        created_at: state.clock.now_ms(),
    };
    state.store.put_webhook(tenant, &hook).await?;
    ok(answers::Webhook {
        url: hook.url.clone(),
        created_at: domain::clock::rfc3339(hook.created_at),
        pending: None,
        secret: Some(hook.secret.clone()),
    })
}

/// A campaign's errored products, each with the action of the run that failed it.
async fn errored(
    state: &ApiState,
    campaign: &Campaign,
) -> Result<Vec<(domain::CampaignProduct, Option<Action>)>, ApiError> {
    let mut actions: std::collections::HashMap<Id, Option<Action>> = Default::default();
    let mut out = Vec::new();
    let filter = store::CpFilter {
        status: Some(ProductStatus::Errored),
        ..Default::default()
    };
    let mut page = 0;
    loop {
        let rows = state
            .store
            .campaign_products_page(campaign.id, &filter, page * 500, 500)
            .await?;
        if rows.items.is_empty() {
            break;
        }
        for cp in rows.items {
            let action = match cp.run {
                Some(mark) => match actions.get(&mark.tracker_id) {
                    Some(known) => *known,
                    None => {
                        let action = state
                            .store
                            .tracker(mark.tracker_id)
                            .await
                            .ok()
                            .flatten()
                            .map(|t| t.action);
                        actions.insert(mark.tracker_id, action);
                        action
                    }
                },
                None => None,
            };
            out.push((cp, action));
        }
        page += 1;
    }
    Ok(out)
}

async fn failed_products(state: &ApiState, tenant: Id, c: Id) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let mut list = Vec::new();
    for (cp, action) in errored(state, &campaign).await? {
        let sku = state
            .store
            .product(tenant, cp.product_id)
            .await
            .ok()
            .flatten()
            .map(|p| p.sku);
        list.push(answers::FailedProduct {
            product_id: cp.product_id,
            sku,
            marketplace_id: cp.connection_id,
            error_message: cp.error_message,
            action: action.map(Action::as_str).map(Into::into),
            tracker_id: cp.run.map(|r| r.tracker_id),
            failed_phase: cp.run.and_then(|r| r.failed_phase),
        });
    }
    ok(answers::FailedList { data: list })
}

/// Retries errored products (all, or the chosen ones) as a new run of the action that failed
/// them.
async fn retry(state: &ApiState, tenant: Id, c: Id, req: &Request) -> Result<Response, ApiError> {
    let campaign = load_campaign(state, tenant, c).await?;
    let input: RetryInput = if req.body.iter().all(u8::is_ascii_whitespace) {
        RetryInput::default()
    } else {
        parse_json(&req.body)?
    };
    let errored = errored(state, &campaign).await?;
    let commands::RetryPlan {
        action,
        product_ids,
    } = commands::retry_plan(
        &errored,
        input.product_ids.as_deref(),
        input.marketplace_ids.as_deref(),
    )?;
    let chunk_size = chunk_size(state, input.chunk_size)?;
    let request = ActionRequest {
        tenant_id: tenant,
        campaign_id: campaign.id,
        action,
        product_ids: Some(product_ids),
        connection_ids: input.marketplace_ids,
        chunk_size,
        fail_fast: input.fail_fast,
        force: false,
        product_level: true,
        retry: true,
        notify: input.notify,
        scheduled: None,
    };
    if let Some(mode) = input.dry_run.mode(detail(&req.query)?) {
        let plan = state.supervisor.send(DryRunAction(request, mode)).await??;
        return ok(answers::Plan::from(plan));
    }
    let started = state.supervisor.send(Start(request)).await??;
    ok(answers::Started {
        message: format!(
            "Retrying {} errored products ({})",
            started.total_products,
            action.as_str()
        ),
        tracker_id: started.tracker_id,
        total_products: Some(started.total_products),
        action: Some(action.as_str().into()),
    })
}

// ----- tokens -----

/// The tenant's tokens, never the tokens themselves.
async fn list_tokens(state: &ApiState, tenant: Id) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let mut list: Vec<_> = state.store.tokens(Some(tenant)).await?;
    list.sort_by_key(|(_, t)| t.created_at);
    let data: Vec<_> = list
        .iter()
        .map(|(hash, t)| answers::Token::of(domain::token_id(hash), t, now))
        .collect();
    ok(answers::TokenList { data })
}

/// A new token of the tenant, shown in this answer only.
async fn create_token(state: &ApiState, tenant: Id, req: &Request) -> Result<Response, ApiError> {
    let input: TokenInput = parse_optional_json(&req.body)?;
    let name = input::text("name", &input.name, input::MAX_NAME)?;
    let expires_at = match input.expires_in_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => {
            Some(state.clock.now_ms() + i64::from(d) * 86_400_000)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in_days must be between 1 and 3650",
            ))
        }
    };
    let now = state.clock.now_ms();
    let made =
        crate::admin::new_token(state.store.as_ref(), tenant, &name, expires_at, now).await?;
    created(answers::Token {
        token: Some(made.token.clone()),
        ..answers::Token::of(made.id.clone(), &made.record, now)
    })
}

/// Revokes one of the tenant's tokens (the caller's own included): refused at once for new
/// requests, and open streams that came with it close.
async fn revoke_token(state: &ApiState, tenant: Id, id: u64) -> Result<Response, ApiError> {
    let id = format!("{id:016x}");
    let hash = crate::admin::revoke_token(state.store.as_ref(), Some(tenant), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    state.store.flush().await?;
    let _ = state.revocations.send(hash);
    ok(answers::Revoked {
        message: "Token revoked".into(),
        id,
    })
}

/// This node's view of the service and of the tenant's connections, for the dashboard.
async fn service_status(state: &ApiState, tenant: Id) -> Result<Response, ApiError> {
    use metrics::Metrics;
    let metrics = &state.limits.metrics;
    let windows = metrics.windows();
    let now = state.clock.now_ms();
    let connections: Vec<_> = state
        .store
        .connections(tenant)
        .await?
        .iter()
        .map(|c| {
            let labels = Metrics::conn(c.system.as_str(), c.id);
            let used = windows.iter().find(|w| w.labels == labels);
            let health = metrics.health_of(&labels);
            answers::ConnectionHealth {
                marketplace_id: c.id,
                system: c.system.as_str().into(),
                name: c.name.clone(),
                per_second: c.rate_limit.per_second,
                per_minute: c.rate_limit.per_minute,
                requests_last_second: used.map_or(0, |w| w.last_second),
                requests_last_minute: used.map_or(0, |w| w.last_minute),
                throttled: metrics.throttled_of(&labels),
                last_error: health.last_error,
                last_error_at: health.last_error_at.map(domain::clock::rfc3339),
                paused_until: health
                    .paused_until
                    .filter(|t| *t > now)
                    .map(domain::clock::rfc3339),
            }
        })
        .collect();
    ok(answers::ServiceStatus {
        service: answers::ServiceUse {
            version: env!("CARGO_PKG_VERSION").into(),
            resident_memory_bytes: Metrics::resident_bytes(),
            store_bytes: metrics.store_bytes.get().max(0) as u64,
            live_subscribers: metrics.subscribers.get().max(0) as u64,
        },
        connections,
    })
}
