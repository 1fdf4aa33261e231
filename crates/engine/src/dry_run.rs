//! Dry runs: the plan of an action, answered at once instead of a tracker. The products are
//! the ones the run would take (the same `RunScope::takes`), each marketplace's own protocol
//! is executed on a gate that records its requests instead of sending them
//! (`Registry::planning`, `plan::Recorder`), `plan::problems` says what the marketplace
//! would refuse, and the account's limits how long the requests take at the least. Nothing is
//! sent and nothing is written; with `validate`, a marketplace that checks a body without
//! effect (MercadoLibre's `POST /items/validate`) is asked, under the connection's limiter.

use std::collections::BTreeMap;
use std::time::Duration;

use super::worker::{sending, RunScope};
use super::{ActionError, Deps};
use domain::{
    drift, Action, CampaignProduct, Connection, Offer, PriceMode, ProductStatus, RateLimit, System,
};
use marketplaces::limiter::shortest_span;
use marketplaces::plan::{self, Operation, PlanCall, Planned};

/// How a dry run is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRun {
    /// Ask the marketplaces that can check a body without effect.
    pub validate: bool,
    /// Show the requests' bodies.
    pub detail: bool,
}

/// The plan of an action: what a run would take and send, per connection and product.
#[derive(Debug)]
pub struct Plan {
    pub mode: DryRun,
    pub action: Action,
    pub campaign_id: domain::Id,
    /// The prices the run would send.
    pub prices: PriceMode,
    pub total_products: u64,
    /// The requests the run would send (a batch request counted once).
    pub requests: u64,
    /// The least time the accounts' limits give those requests (connections run side by
    /// side: the longest of theirs).
    pub estimated: Duration,
    pub problems: u64,
    pub connections: Vec<ConnectionPlan>,
}

/// One connection's part of a plan.
#[derive(Debug)]
pub struct ConnectionPlan {
    pub connection_id: domain::Id,
    pub system: System,
    pub products: u64,
    /// Products of the campaign the action leaves alone.
    pub skipped: u64,
    /// Products by operation (`Operation::as_str`).
    pub operations: BTreeMap<&'static str, u64>,
    pub requests: u64,
    pub estimated: Duration,
    pub rate_limit: RateLimit,
    pub batch_size: usize,
    pub problems: u64,
    pub products_planned: Vec<ProductPlan>,
}

/// One product's part of a connection's plan.
#[derive(Debug)]
pub struct ProductPlan {
    pub product_id: domain::Id,
    /// `None` for a product the action skips, or that no longer exists.
    pub sku: Option<String>,
    pub operation: Operation,
    pub reason: Option<String>,
    pub problems: Vec<plan::Problem>,
    /// The requests, with their bodies only when the dry run asked for them (`detail`).
    pub requests: Vec<plan::Request>,
}

impl ProductPlan {
    /// A product the plan sends nothing for, and why.
    fn left(cp: &CampaignProduct, operation: Operation, reason: String) -> ProductPlan {
        ProductPlan {
            product_id: cp.product_id,
            sku: None,
            operation,
            reason: Some(reason),
            problems: Vec::new(),
            requests: Vec::new(),
        }
    }
}

/// Why the action leaves a product of its campaign alone.
fn skip_reason(action: Action, status: ProductStatus, retry: bool) -> String {
    if retry {
        return format!(
            "a retry takes errored products; this one is {}",
            status.as_str()
        );
    }
    if action == Action::Reconcile {
        return "the last drift check found nothing to repair".to_string();
    }
    let takes: Vec<&str> = [
        ProductStatus::Pending,
        ProductStatus::Published,
        ProductStatus::Paused,
        ProductStatus::Errored,
        ProductStatus::Finished,
    ]
    .into_iter()
    .filter(|s| action.takes(*s))
    .map(ProductStatus::as_str)
    .collect();
    format!(
        "{} takes {} products; this one is {}",
        action.as_str(),
        takes.join(", "),
        status.as_str()
    )
}

/// The requests of a connection's plan as the run sends them: a batch request carries up to
/// `batch` products' items.
fn requests_sent(entries: &[Planned], batch: usize) -> u64 {
    let mut single = 0u64;
    let mut items: BTreeMap<&str, u64> = BTreeMap::new();
    for r in entries.iter().flat_map(|e| &e.requests) {
        match r.item {
            Some(_) => *items.entry(r.path.as_str()).or_default() += 1,
            None => single += 1,
        }
    }
    let batch = batch.max(1) as u64;
    single + items.values().map(|n| n.div_ceil(batch)).sum::<u64>()
}

/// The least time the account's limits give `requests`, and `points` where the API charges
/// them from a bucket (`Marketplace::points_bucket`).
fn least_time(
    connection: &Connection,
    requests: u64,
    points: f64,
    bucket: Option<(f64, f64)>,
) -> Duration {
    let windows = shortest_span(
        requests as usize,
        connection.rate_limit.per_second as usize,
        connection.rate_limit.per_minute as usize,
    );
    let by_points = bucket.map_or(Duration::ZERO, |(size, restore)| {
        Duration::from_secs_f64(((points - size).max(0.0)) / restore)
    });
    windows.max(by_points)
}

/// A request as the plan shows it: its body only when the dry run asked for bodies.
fn shown(r: &plan::Request, detail: bool) -> plan::Request {
    plan::Request {
        body: r.body.clone().filter(|_| detail),
        ..r.clone()
    }
}

/// One call planned: the adapter's own protocol executed on its recording gate (a drift
/// check by its read, as the run checks it).
async fn plan_call(
    adapter: &dyn marketplaces::Marketplace,
    recorder: &plan::Recorder,
    call: PlanCall<'_>,
    status: ProductStatus,
) -> Planned {
    // Nothing of a plan is kept: its ids are the plan's own.
    let checkpoint: marketplaces::Checkpoint<'_> = &|_| Box::pin(async { Ok(()) });
    let outcome = match call.action {
        Action::Drift => adapter
            .drift(call.product, call.offer, status, call.info)
            .await
            .map(|_| ()),
        _ => adapter.apply(call.with(checkpoint)).await,
    };
    recorder.planned(outcome)
}

/// The look-up of which of a chunk's `products` the store already lists, as the run sends it
/// before the chunk's first create.
async fn listed_first(
    adapter: &dyn marketplaces::Marketplace,
    recorder: &plan::Recorder,
    products: &[domain::Product],
) -> Vec<plan::Request> {
    let refs: Vec<_> = products.iter().collect();
    let found = adapter.find_listed(&refs).await.map(|_| ());
    recorder.planned(found).requests
}

/// What a validating dry run asks a connection's marketplace, within its time.
struct Checks<'a> {
    adapter: &'a dyn marketplaces::Marketplace,
    connection: &'a Connection,
    within: Duration,
    until: tokio::time::Instant,
}

impl Checks<'_> {
    /// What the marketplace finds wrong with what `action` would send of `product`, or why
    /// it was not asked (the dry run's time ran out, or the marketplace could not check).
    async fn problems(
        &self,
        action: Action,
        product: &domain::Product,
        offer: Offer,
        cp: &CampaignProduct,
    ) -> Vec<plan::Problem> {
        let unchecked = |why: String| plan::Problem {
            code: "not_validated",
            message: why,
        };
        let late = || {
            unchecked(format!(
                "not checked: a dry run asks the marketplaces for {} ms at most, and the \
                 connection's limits ({} a second) left no room for this one",
                self.within.as_millis(),
                self.connection.rate_limit.per_second
            ))
        };
        if tokio::time::Instant::now() >= self.until {
            return vec![late()];
        }
        let asked = self
            .adapter
            .validate(action, product, offer, &cp.marketplace_info);
        match tokio::time::timeout_at(self.until, asked).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => vec![unchecked(format!(
                "the marketplace could not check the product: {e}"
            ))],
            Err(_) => vec![late()],
        }
    }
}

/// One product's calls, executed on a recording adapter.
struct Calls<'a> {
    adapter: &'a dyn marketplaces::Marketplace,
    recorder: &'a plan::Recorder,
    product: &'a domain::Product,
    offer: Offer,
    status: ProductStatus,
}

impl Calls<'_> {
    /// One call of `action` in `phase`, on `info`.
    async fn one(
        &self,
        action: Action,
        phase: domain::Phase,
        prices_only: bool,
        info: &mut domain::MarketplaceInfo,
    ) -> Planned {
        let call = PlanCall {
            action,
            phase,
            product: self.product,
            offer: self.offer,
            prices_only,
            info,
        };
        plan_call(self.adapter, self.recorder, call, self.status).await
    }

    /// A create of unknown outcome is looked up first (before `first`); the plan goes on as
    /// if nothing was found (what is found is adopted, and its create not sent).
    async fn look_up(&self, first: Action, info: &mut domain::MarketplaceInfo) -> Planned {
        let requests = match info.create_sent {
            false => Vec::new(),
            true => {
                let found = self.adapter.reconcile(first, self.product, info).await;
                self.recorder.planned(found).requests
            }
        };
        info.create_outcome_known();
        Planned::more(requests)
    }

    /// The product's calls of `action` in `phases`, on `info`, a copy of what is stored of it.
    /// A reconcile is planned as its repairs, each sent whole, after the copies campaignd's
    /// unanswered creates made are deleted; a product gone from the marketplace is looked up
    /// by its SKU before its first repair.
    async fn planned(
        &self,
        action: Action,
        phases: &[domain::Phase],
        prices_only: bool,
        cp: &CampaignProduct,
        info: &mut domain::MarketplaceInfo,
    ) -> Planned {
        let processing = domain::Phase::Processing;
        if action != Action::Reconcile {
            let mut planned = self.look_up(action, info).await;
            for phase in phases {
                planned = planned.then(self.one(action, *phase, prices_only, info).await);
            }
            return planned;
        }
        let differences = cp.drift.as_ref().map_or(&[][..], |d| &d.differences[..]);
        let mut planned = Planned::default();
        for (sku, id) in drift::removable(differences, info.unanswered_creates) {
            let mut copy = drift::copy_info(self.product, &sku, &id);
            let delete = self.one(Action::Delete, processing, false, &mut copy).await;
            planned = planned.then(delete);
        }
        let calls = drift::repairs(cp.status, differences, info);
        let first = calls.first().copied().unwrap_or(action);
        planned = planned.then(self.look_up(first, info).await);
        for repair in calls {
            planned = planned.then(self.one(repair, processing, false, info).await);
        }
        planned
    }
}

/// Why a product's plan is what it is, when the plan does not say: nothing to send, an
/// earlier request that may still land (the run waits it out), a create of unknown outcome.
fn reason_of(
    planned: &Planned,
    cp: &CampaignProduct,
    connection: &Connection,
    deps: &Deps,
) -> Option<String> {
    if planned.operation.is_none() {
        return Some(match cp.marketplace_info.product_id {
            None => format!("not on {}: nothing to send", connection.system.as_str()),
            Some(_) => "nothing to send".to_string(),
        });
    }
    if let Some(reason) = &planned.reason {
        return Some(reason.clone());
    }
    let now = deps.clock.now_ms();
    let settled_at =
        marketplaces::settle::open_until(&cp.marketplace_info, deps.runs.settle(), now);
    if let Some(until) = settled_at {
        return Some(format!(
            "an earlier request to this product may still be carried out by the marketplace: \
             nothing is sent to it before {} ({} s from now)",
            domain::clock::rfc3339(until),
            ((until - now) as u64).div_ceil(1000)
        ));
    }
    cp.marketplace_info.create_sent.then(|| {
        "an earlier create's outcome is unknown: the product is looked up by its SKU (or read \
         by its id) first, and what exists is adopted instead of created"
            .to_string()
    })
}

/// The plan of one action on `connections` (those of the campaign it targets, in order).
pub async fn plan(
    deps: &Deps,
    scope: &RunScope,
    connections: &[Connection],
    mode: DryRun,
) -> Result<Plan, ActionError> {
    let mut members: Vec<Vec<CampaignProduct>> = vec![Vec::new(); connections.len()];
    store::for_each_campaign_product(deps.store.as_ref(), scope.campaign_id, |cp| {
        if let Some(slot) = connections.iter().position(|c| c.id == cp.connection_id) {
            members[slot].push(cp);
        }
    })
    .await?;
    // A dry run answers at once: what the connections' limits (or a slow marketplace) leave
    // unasked by `runs.dry_run_validate_ms` is said to be unchecked rather than waited for.
    let within = deps.runs.dry_run_validate();
    let planning = Planning {
        deps,
        scope,
        mode,
        within,
        until: tokio::time::Instant::now() + within,
    };
    let mut parts = Vec::new();
    let (mut total, mut total_requests, mut total_problems) = (0u64, 0u64, 0u64);
    let mut longest = Duration::ZERO;
    for (connection, members) in connections.iter().zip(members) {
        let planned = planning.connection(connection, members).await?;
        total += planned.products;
        total_requests += planned.requests;
        total_problems += planned.problems;
        longest = longest.max(planned.estimated);
        parts.push(planned);
    }
    let action = scope.action;
    if total == 0 {
        return Err(ActionError::NothingToDo(action));
    }
    Ok(Plan {
        mode,
        action,
        campaign_id: scope.campaign_id,
        prices: scope.prices,
        total_products: total,
        requests: total_requests,
        estimated: longest,
        problems: total_problems,
        connections: parts,
    })
}

/// What every connection's part of one dry run shares.
struct Planning<'a> {
    deps: &'a Deps,
    scope: &'a RunScope,
    mode: DryRun,
    /// How long validation may ask the marketplaces, and until when.
    within: Duration,
    until: tokio::time::Instant,
}

impl Planning<'_> {
    /// Whether the action takes this product at all (a product-level action names its own).
    fn chosen(&self, cp: &CampaignProduct) -> bool {
        self.scope
            .product_ids
            .as_ref()
            .is_none_or(|ids| ids.binary_search(&cp.product_id).is_ok())
    }

    /// The plan of one connection's products (`members`, in the run's order).
    async fn connection(
        &self,
        connection: &Connection,
        members: Vec<CampaignProduct>,
    ) -> Result<ConnectionPlan, ActionError> {
        let (deps, scope, mode) = (self.deps, self.scope, self.mode);
        let store = deps.store.as_ref();
        let action = scope.action;
        let recorder = std::sync::Arc::new(plan::Recorder::default());
        let adapter = deps.registry.planning(
            connection,
            marketplaces::turns::Turn {
                run: 0,
                urgent: action.is_protective(),
            },
            std::sync::Arc::clone(&recorder),
        );
        let adapter = adapter.as_ref();
        let phases = connection.system.phases(action);
        self.prepare(adapter, connection).await;
        // The run reads the connection's products a chunk at a time and asks the store which
        // of a chunk's new products it already lists before creating any (`find_listed`),
        // which the plan executes with the chunk's first call.
        let chunk = scope.chunk_size.max(1);
        let looks_up =
            |cp: &CampaignProduct| adapter.finds_listed() && scope.looks_up_first(cp, phases.len());
        // Which chunks' look-ups are planned yet.
        let mut looked_up = vec![false; members.len().div_ceil(chunk)];
        let mut entries = Vec::new();
        let mut rows = Vec::new();
        let mut operations: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut taken, mut skipped, mut problems_here, mut points) = (0u64, 0u64, 0u64, 0.0);
        for (at, cp) in members.iter().enumerate().filter(|(_, cp)| self.chosen(cp)) {
            if !scope.takes(cp) {
                skipped += 1;
                *operations.entry(Operation::Skip.as_str()).or_default() += 1;
                let reason = skip_reason(action, cp.status, scope.retry);
                rows.push(ProductPlan::left(cp, Operation::Skip, reason));
                continue;
            }
            taken += 1;
            // The chunk's look-up of what the store already lists goes before its first call.
            let first_of_chunk = looks_up(cp)
                && looked_up
                    .get_mut(at / chunk)
                    .is_some_and(|planned_yet| !std::mem::replace(planned_yet, true));
            let mut listed = Vec::new();
            if first_of_chunk {
                let mut products = Vec::new();
                let chunk_members = members[at - at % chunk..].iter().take(chunk);
                for cp in chunk_members.filter(|cp| self.chosen(cp) && looks_up(cp)) {
                    products.extend(store.product(scope.tenant_id, cp.product_id).await?);
                }
                listed = listed_first(adapter, &recorder, &products).await;
            }
            let Some(product) = store.product(scope.tenant_id, cp.product_id).await? else {
                *operations.entry(Operation::Error.as_str()).or_default() += 1;
                let reason = "the product no longer exists".to_string();
                rows.push(ProductPlan::left(cp, Operation::Error, reason));
                continue;
            };
            let campaign_price = scope.prices.campaign_price(cp);
            let offer = Offer::of(&product, campaign_price);
            let (_, prices_only) = sending(action, &product, &offer, &cp.marketplace_info);
            let mut problems = plan::problems(
                connection.system,
                action,
                &product,
                campaign_price,
                &cp.marketplace_info,
            );
            if mode.validate {
                let checks = Checks {
                    adapter,
                    connection,
                    within: self.within,
                    until: self.until,
                };
                problems.extend(checks.problems(action, &product, offer, cp).await);
            }
            let calls = Calls {
                adapter,
                recorder: &recorder,
                product: &product,
                offer,
                status: cp.status,
            };
            let mut info = cp.marketplace_info.clone();
            let mut planned = Planned::more(listed).then(
                calls
                    .planned(action, phases, prices_only, cp, &mut info)
                    .await,
            );
            if looks_up(cp) {
                planned.reason.get_or_insert_with(|| {
                    "looked up in the store first: a product it already lists is adopted and \
                     updated, not created again"
                        .to_string()
                });
            }
            let operation = planned.operation.unwrap_or(Operation::Skip);
            let reason = reason_of(&planned, cp, connection, deps);
            *operations.entry(operation.as_str()).or_default() += 1;
            problems_here += problems.len() as u64;
            points += planned.requests.iter().filter_map(|r| r.cost).sum::<f64>();
            rows.push(ProductPlan {
                product_id: product.id,
                sku: Some(product.sku.clone()),
                operation,
                reason,
                problems,
                requests: planned
                    .requests
                    .iter()
                    .map(|r| shown(r, mode.detail))
                    .collect(),
            });
            entries.push(planned);
        }
        let batch = if action.reads_only() {
            adapter.read_batch_size()
        } else {
            adapter.batch_size()
        };
        let requests = requests_sent(&entries, batch);
        let time = least_time(connection, requests, points, adapter.points_bucket());
        Ok(ConnectionPlan {
            connection_id: connection.id,
            system: connection.system,
            products: taken,
            skipped,
            operations,
            requests,
            estimated: time,
            rate_limit: connection.rate_limit,
            batch_size: batch,
            problems: problems_here,
            products_planned: rows,
        })
    }

    /// Reads first what the plan must know of the account (a read, without effect); a plan
    /// made without it is the account's older model's, and says so in the log.
    async fn prepare(&self, adapter: &dyn marketplaces::Marketplace, connection: &Connection) {
        let prepared = tokio::time::timeout_at(self.until, adapter.prepare_plan()).await;
        if let Some(e) = match prepared {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer in the dry run's time".to_string()),
        } {
            tracing::warn!(
                connection_id = connection.id,
                error = %e,
                "a dry run could not read what its plan must know of the account"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan's least time is the longest of what the windows give its requests and, for an
    /// API that charges points from a bucket, what the points beyond the bucket take.
    #[test]
    fn points_beyond_the_bucket_take_their_restore_time() {
        let connection = Connection {
            id: 1,
            tenant_id: 1,
            system: domain::System::Shopify,
            name: "shop".into(),
            base_url: "https://shop.myshopify.com".into(),
            credentials: domain::Credentials::Shopify {
                access_token: "t".into(),
            },
            rate_limit: RateLimit {
                per_second: 1000,
                per_minute: 60_000,
            },
            max_in_flight: 4,
            settings: BTreeMap::new(),
            created_at: 0,
        };
        let bucket = Some((2000.0, 100.0));
        assert_eq!(
            least_time(&connection, 10, 3000.0, bucket),
            Duration::from_secs(10)
        );
        assert_eq!(least_time(&connection, 10, 1500.0, bucket), Duration::ZERO);
        assert_eq!(least_time(&connection, 10, 3000.0, None), Duration::ZERO);
    }

    #[test]
    fn batch_items_share_requests_and_others_count_one_each() {
        let item = |path: &str| plan::Request::new("POST", path).batched("create");
        let entries = vec![
            Planned::op(
                Operation::Create,
                vec![
                    item("/products/batch"),
                    plan::Request::new("POST", "/p/1/v"),
                ],
            ),
            Planned::op(Operation::Create, vec![item("/products/batch")]),
            Planned::op(Operation::Create, vec![item("/products/batch")]),
        ];
        assert_eq!(requests_sent(&entries, 2), 1 + 2);
        assert_eq!(requests_sent(&entries, 100), 1 + 1);
        assert_eq!(requests_sent(&entries, 1), 1 + 3);
    }

    #[test]
    fn a_skip_says_what_the_action_takes() {
        assert_eq!(
            skip_reason(Action::Publish, ProductStatus::Published, false),
            "publish takes pending, paused, errored products; this one is published"
        );
        assert_eq!(
            skip_reason(Action::Publish, ProductStatus::Published, true),
            "a retry takes errored products; this one is published"
        );
    }
}
