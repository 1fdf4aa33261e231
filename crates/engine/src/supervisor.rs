//! The Supervisor actor: one per node. It is the only place campaign locks are taken: it
//! handles one start or reset at a time (atomic handlers), so checking a lock and taking it
//! cannot interleave with another request of this node, and the store's transaction decides
//! between nodes. A start writes the run's lock, tracker and one work item per connection; it
//! does not run anything itself. On a timer and whenever it is signalled, the Supervisor renews
//! its heartbeat and its leases on connections, takes the leases its share allows of
//! connections with open work, and hands each open item of a connection it holds to the node's
//! CampaignRun of that run. On `force` it asks the running run to stop and waits for it to end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::dry_run::DryRun;
use super::run::{AddWork, CampaignRun, Cancel, Release, Retire, Suspend, WorkSink};
use super::tracker::{close_if_ended, Announce, Close, TrackerActor, WriteNow};
use super::worker::RunScope;
use super::{ActionError, ActionRequest, Deps, Started};
use domain::{
    fair_share, schedule, Campaign, CampaignProduct, CampaignStatus, ConnProgress, Connection, Id,
    Lease, Lock, MarketplaceInfo, Node, PriceChange, ProductStatus, StepRecord, Tracker,
    TrackerMeta, TrackerStatus, WorkItem,
};
use store::{SharedStore, Signal, Store};

pub struct Supervisor {
    deps: Deps,
    tracker: Addr<TrackerActor>,
    /// The run actors of this node, by tracker.
    runs: HashMap<Id, Addr<CampaignRun>>,
    /// (tracker, connection) items this node works on now.
    working: HashSet<(Id, Id)>,
    /// The connections this node holds a lease on.
    leases: HashSet<Id>,
    /// When the leases were last renewed: past two thirds of a lease without a renewal, this
    /// node stops sending to those connections, before another node may take them.
    renewed_at: tokio::time::Instant,
    /// Set when the service stops: no action starts, no work is taken up.
    stopping: bool,
}

impl Supervisor {
    pub fn new(deps: Deps, tracker: Addr<TrackerActor>) -> Supervisor {
        Supervisor {
            deps,
            tracker,
            runs: HashMap::new(),
            working: HashSet::new(),
            leases: HashSet::new(),
            renewed_at: tokio::time::Instant::now(),
            stopping: false,
        }
    }

    fn starter(&self) -> Starter {
        Starter {
            deps: self.deps.clone(),
            tracker: self.tracker.clone(),
        }
    }
}

/// Tells the Supervisor, from a run, that an item's work ended here.
struct SupervisorSink(Addr<Supervisor>);

impl WorkSink for SupervisorSink {
    fn work_ended(&self, tracker_id: Id, connection_id: Id, open: bool) {
        self.0.do_send(WorkEnded {
            tracker_id,
            connection_id,
            open,
        });
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    /// Prepares the runs a stopped process left, then looks for work at once, on every signal
    /// and on a timer.
    fn started(&mut self, ctx: &mut Self::Context) {
        let starter = self.starter();
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(async move { starter.prepare().await })
                .map(|(), _act, ctx| ctx.notify(Tick)),
        );
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut signals = self.deps.store.signals();
        let on_signal = Arc::clone(&wake);
        actix::spawn(async move {
            loop {
                match signals.recv().await {
                    Ok(Signal::Work) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        on_signal.notify_one()
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        // Wake-ups coalesce: one look at a time, and one more for whatever came meanwhile.
        let me = ctx.address();
        actix::spawn(async move {
            loop {
                wake.notified().await;
                if me.send(Tick).await.is_err() {
                    return;
                }
            }
        });
        ctx.run_interval(self.deps.cluster.heartbeat(), |_act, ctx| ctx.notify(Tick));
        ctx.run_interval(self.deps.cluster.lease(), |act, ctx| act.sweep_expired(ctx));
    }
}

impl Supervisor {
    /// Ends the runs nobody carries (see `Starter::end_abandoned`).
    fn sweep_expired(&mut self, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.deps.store);
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move { store.all_locks().await }).map(
                |locks, act, ctx| match locks {
                    Ok(locks) => act.free_expired(locks, ctx),
                    Err(error) => tracing::error!(%error, "could not read the locks"),
                },
            ),
        );
    }

    fn free_expired(&mut self, locks: Vec<Lock>, ctx: &mut Context<Self>) {
        let now = self.deps.clock.now_ms();
        for lock in locks {
            let local = self
                .working
                .iter()
                .any(|(tracker, _)| *tracker == lock.tracker_id);
            if local {
                continue;
            }
            let starter = self.starter();
            ctx.spawn(actix::fut::wrap_future::<_, Self>(async move {
                if let Err(error) = starter.end_abandoned(&lock, now).await {
                    tracing::error!(campaign_id = lock.campaign_id, %error, "could not end an abandoned run");
                }
            }));
        }
    }
}

/// Look at the work: renew, lease, hand out.
#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

impl Handler<Tick> for Supervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Tick, _ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let look = Look {
            store: Arc::clone(&self.deps.store),
            tracker: self.tracker.clone(),
            node: self.deps.instance.clone(),
            now: self.deps.clock.now_ms(),
            lease: self.deps.cluster.lease(),
            started: tokio::time::Instant::now(),
            held: self.leases.clone(),
            working: self.working.clone(),
            since_renewal: self.renewed_at.elapsed(),
        };
        AtomicResponse::new(Box::pin(
            actix::fut::wrap_future::<_, Self>(async move { look.run().await })
                .map(|plan, act, ctx| act.carry_out(plan, ctx)),
        ))
    }
}

/// What a look at the work found, for the Supervisor to act on.
#[derive(Default)]
struct Plan {
    /// The leases held now; `None` when they could not be renewed (nothing changes yet).
    held: Option<HashSet<Id>>,
    /// Leases this node no longer holds: their work stops here.
    lost: Vec<Id>,
    /// Leases just taken, with how long ago another node's lease on the connection ended
    /// (when another node held it last): what this process remembers of the connection is
    /// read again, and its limiter counts what that node may have sent.
    taken: Vec<(Id, Option<Duration>)>,
    renewed: bool,
    /// Until when the leases held may be used to send: two thirds of a lease after the look
    /// began, before anyone else may take them.
    send_until: Option<tokio::time::Instant>,
    /// Runs asked to stop that this node works on.
    cancel: Vec<Id>,
    /// Items claimed here, with their run's tracker and connection.
    start: Vec<(WorkItem, Tracker, Connection)>,
    /// The live nodes seen, which share each marketplace application's limits.
    nodes: Option<usize>,
}

/// One look at the work, as a plain value so it can run inside the Tick's future.
struct Look {
    store: SharedStore,
    tracker: Addr<TrackerActor>,
    node: String,
    now: i64,
    lease: Duration,
    /// When the look began: leases it renews or takes expire a lease after it, at the soonest.
    started: tokio::time::Instant,
    held: HashSet<Id>,
    working: HashSet<(Id, Id)>,
    since_renewal: Duration,
}

impl Look {
    async fn run(self) -> Plan {
        // A look that cannot finish within a third of a lease counts as failed: a node that
        // cannot reach the store must notice in time to stop sending.
        let looked = tokio::time::timeout(self.lease / 3, self.look()).await;
        match looked.unwrap_or(Err(store::StoreError::Config(
            "the store did not answer in time".to_string(),
        ))) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "could not look at the work");
                let mut plan = Plan::default();
                if stops_sending(self.since_renewal, self.lease) && !self.held.is_empty() {
                    tracing::warn!(
                        connections = self.held.len(),
                        "leases not renewed in time; this node stops sending to their connections"
                    );
                    plan.lost = self.held.iter().copied().collect();
                    plan.held = Some(HashSet::new());
                }
                plan
            }
        }
    }

    async fn look(&self) -> Result<Plan, store::StoreError> {
        let store = self.store.as_ref();
        let expires_at = self.now + self.lease.as_millis() as i64;
        store
            .heartbeat(&Node {
                id: self.node.clone(),
                expires_at,
            })
            .await?;
        let mine: Vec<Id> = self.held.iter().copied().collect();
        let renewed: HashSet<Id> = store
            .renew_leases(&self.node, &mine, expires_at)
            .await?
            .into_iter()
            .collect();
        let mut plan = Plan {
            renewed: true,
            send_until: Some(self.started + self.lease * 2 / 3),
            lost: mine
                .iter()
                .copied()
                .filter(|c| !renewed.contains(c))
                .collect(),
            ..Plan::default()
        };
        let mut held = renewed;
        let open = store.open_work().await?;
        plan.cancel = cancelled_here(&open, &self.working);
        let with_work: std::collections::BTreeSet<Id> =
            open.iter().map(|i| i.connection_id).collect();
        let idle = idle(&held, &with_work, &self.working);
        if !idle.is_empty() {
            store
                .release_leases(&self.node, Some(&idle), self.now)
                .await?;
            for c in &idle {
                held.remove(c);
            }
        }
        let nodes = store.live_nodes(self.now).await?;
        plan.nodes = Some(nodes);
        let share = fair_share(with_work.len(), nodes);
        for &connection in &with_work {
            if held.len() >= share {
                break;
            }
            if held.contains(&connection) {
                continue;
            }
            let lease = Lease {
                connection_id: connection,
                owner: self.node.clone(),
                expires_at,
            };
            if let Some(before) = store.acquire_lease(&lease, self.now).await? {
                held.insert(connection);
                let another = before.filter(|b| b.owner != self.node).map(|b| {
                    Duration::from_millis(self.now.saturating_sub(b.expires_at).max(0) as u64)
                });
                plan.taken.push((connection, another));
            }
        }
        for item in open.iter().filter(|i| held.contains(&i.connection_id)) {
            let key = (item.tracker_id, item.connection_id);
            if self.working.contains(&key) {
                continue;
            }
            if let Some(start) = self.claim(item).await? {
                plan.start.push(start);
            }
        }
        if !plan.start.is_empty() {
            // The attempts are durable before any request is sent for them.
            store.flush().await?;
        }
        plan.held = Some(held);
        Ok(plan)
    }

    /// Takes an open item up here: an item already asked to stop is ended at once.
    async fn claim(
        &self,
        item: &WorkItem,
    ) -> Result<Option<(WorkItem, Tracker, Connection)>, store::StoreError> {
        let store = self.store.as_ref();
        let tracker = store.tracker(item.tracker_id).await?;
        let connection = store.connection(item.tenant_id, item.connection_id).await?;
        let (Some(tracker), Some(connection), None) = (tracker, connection, &item.cancel) else {
            end_item(store, &self.tracker, item).await?;
            return Ok(None);
        };
        if tracker.status != TrackerStatus::Active {
            end_item(store, &self.tracker, item).await?;
            return Ok(None);
        }
        Ok(store
            .claim_work(item.tracker_id, item.connection_id)
            .await?
            .map(|before| (before, tracker, connection)))
    }
}

/// Two thirds of a lease without renewal: a node stops sending before anyone else may take its
/// leases.
fn stops_sending(since_renewal: Duration, lease: Duration) -> bool {
    since_renewal > lease * 2 / 3
}

/// The runs asked to stop that this node works on.
fn cancelled_here(open: &[WorkItem], working: &HashSet<(Id, Id)>) -> Vec<Id> {
    open.iter()
        .filter(|i| i.cancel.is_some() && working.contains(&(i.tracker_id, i.connection_id)))
        .map(|i| i.tracker_id)
        .collect()
}

/// The connections held without work anywhere, nor work here: they go back for anyone to take.
fn idle(
    held: &HashSet<Id>,
    with_work: &std::collections::BTreeSet<Id>,
    working: &HashSet<(Id, Id)>,
) -> Vec<Id> {
    held.iter()
        .copied()
        .filter(|c| !with_work.contains(c) && !working.iter().any(|(_, w)| w == c))
        .collect()
}

/// Ends an item nobody will work on (its run was asked to stop, or its tracker or connection is
/// gone); the last one closes the run's tracker.
async fn end_item(
    store: &dyn Store,
    tracker: &Addr<TrackerActor>,
    item: &WorkItem,
) -> Result<(), store::StoreError> {
    let items = store
        .end_work(item.tracker_id, item.connection_id, None)
        .await?;
    close_if_ended(tracker, item.tracker_id, &items).await;
    Ok(())
}

impl Supervisor {
    fn carry_out(&mut self, plan: Plan, ctx: &mut Context<Self>) {
        if plan.renewed {
            self.renewed_at = tokio::time::Instant::now();
        }
        if let Some(held) = plan.held {
            self.leases = held;
        }
        if let Some(nodes) = plan.nodes {
            self.deps.registry.share_applications(nodes);
        }
        if let Some(until) = plan.send_until {
            // The workers' requests check it as they leave: a node whose looks are late (a
            // stalled machine) stops sending before its leases may pass to another node.
            for &connection in &self.leases {
                self.deps.registry.send_until(connection, until);
            }
        }
        for connection in plan.lost {
            tracing::warn!(
                connection_id = connection,
                "lease lost; stopping work on it"
            );
            for (tracker, c) in &self.working {
                if *c == connection {
                    if let Some(run) = self.runs.get(tracker) {
                        run.do_send(Release {
                            connection_id: connection,
                        });
                    }
                }
            }
        }
        for (connection, another_ended) in plan.taken {
            self.deps.registry.take_over(connection, another_ended);
        }
        for tracker in plan.cancel {
            if let Some(run) = self.runs.get(&tracker) {
                run.do_send(Cancel);
            }
        }
        for (item, tracker, connection) in plan.start {
            let run = self
                .runs
                .entry(item.tracker_id)
                .or_insert_with(|| {
                    CampaignRun::new(
                        self.deps.clone(),
                        self.tracker.clone(),
                        Arc::new(SupervisorSink(ctx.address())),
                        CampaignRun::scope_of(&tracker),
                    )
                    .start()
                })
                .clone();
            self.working.insert((item.tracker_id, item.connection_id));
            tracing::info!(
                tracker_id = item.tracker_id,
                connection_id = item.connection_id,
                resumed = item.attempts > 0,
                "working on a connection's part of a run"
            );
            run.do_send(AddWork {
                connection,
                tracker: item.tracker_id,
                resumed: item.attempts > 0,
            });
        }
    }
}

/// A run's work on one connection ended on this node (`open`: left for the next holder).
#[derive(Message)]
#[rtype(result = "()")]
struct WorkEnded {
    tracker_id: Id,
    connection_id: Id,
    open: bool,
}

impl Handler<WorkEnded> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WorkEnded, ctx: &mut Self::Context) {
        self.working.remove(&(msg.tracker_id, msg.connection_id));
        if !self.working.iter().any(|(t, _)| *t == msg.tracker_id) {
            if let Some(run) = self.runs.remove(&msg.tracker_id) {
                run.do_send(Retire);
            }
        }
        if msg.open && !self.stopping {
            // Someone should carry it on: maybe this node, at its next look.
            ctx.notify_later(Tick, self.deps.cluster.heartbeat());
        }
    }
}

/// Starts an action on a campaign or on some of its products.
#[derive(Message)]
#[rtype(result = "Result<Started, ActionError>")]
pub struct Start(pub ActionRequest);

impl Handler<Start> for Supervisor {
    type Result = AtomicResponse<Self, Result<Started, ActionError>>;

    fn handle(&mut self, msg: Start, _ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(
                ActionError::ShuttingDown,
            ))));
        }
        let starter = self.starter();
        let local = self.runs.clone();
        AtomicResponse::new(Box::pin(
            actix::fut::wrap_future::<_, Self>(async move { starter.start(msg.0, &local).await })
                .map(|started, _act, ctx| {
                    if started.is_ok() {
                        ctx.notify(Tick);
                    }
                    started
                }),
        ))
    }
}

/// The plan of an action instead of its run: nothing is started, sent (but for `validate`) or
/// written.
#[derive(Message)]
#[rtype(result = "Result<super::dry_run::Plan, ActionError>")]
pub struct DryRunAction(pub ActionRequest, pub DryRun);

impl Handler<DryRunAction> for Supervisor {
    type Result = ResponseFuture<Result<super::dry_run::Plan, ActionError>>;

    fn handle(&mut self, msg: DryRunAction, _ctx: &mut Self::Context) -> Self::Result {
        let starter = self.starter();
        Box::pin(async move { starter.plan(msg.0, msg.1).await })
    }
}

/// The service is stopping: no action starts any more, and every run working here is
/// suspended (its workers stop taking products and let the calls in flight finish, within
/// `grace`); their work stays open and their locks stay, so the next start (or another node)
/// resumes them. Answers how many runs were suspended in time.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SuspendAll {
    pub grace: std::time::Duration,
}

impl Handler<SuspendAll> for Supervisor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: SuspendAll, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let runs: Vec<_> = self.runs.values().cloned().collect();
        let tracker = self.tracker.clone();
        let store = Arc::clone(&self.deps.store);
        let node = self.deps.instance.clone();
        let clock = self.deps.clock.clone();
        Box::pin(async move {
            let waits = runs.iter().map(|run| run.send(Suspend));
            let done = tokio::time::timeout(msg.grace, futures::future::join_all(waits)).await;
            let suspended = match done {
                Ok(all) => all.into_iter().filter(Result::is_ok).count(),
                Err(_) => {
                    tracing::warn!(
                        grace_secs = msg.grace.as_secs(),
                        "calls still in flight at the end of the grace period; they resume at the next start"
                    );
                    0
                }
            };
            // Progress counted so far reaches the store before it is flushed.
            let _ = tracker.send(WriteNow).await;
            // The connections are free for the other nodes at once.
            let now = clock.now_ms();
            if let Err(error) = store.release_leases(&node, None, now).await {
                tracing::warn!(%error, "could not release the leases");
            }
            let _ = store.signal(Signal::Work).await;
            suspended
        })
    }
}

/// Adds products to a campaign as pending on the given connections. Goes through the
/// supervisor so that it cannot interleave with the start of a run: a locked campaign refuses.
#[derive(Message)]
#[rtype(result = "Result<Added, ActionError>")]
pub struct AddProducts {
    pub tenant_id: Id,
    pub campaign_id: Id,
    pub connection_ids: Vec<Id>,
    pub product_ids: Vec<Id>,
    /// Campaign prices of some of the products.
    pub prices: HashMap<Id, PriceChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub added: u64,
    pub already: u64,
}

impl Handler<AddProducts> for Supervisor {
    type Result = AtomicResponse<Self, Result<Added, ActionError>>;

    fn handle(&mut self, msg: AddProducts, _ctx: &mut Self::Context) -> Self::Result {
        let store = Arc::clone(&self.deps.store);
        let now = self.deps.clock.now_ms();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            add_products(store.as_ref(), msg, now).await
        })))
    }
}

/// Refuses a change of a campaign's products while a run holds the campaign: the run's
/// workers write those records.
async fn refuse_if_locked(
    store: &dyn store::Store,
    campaign: Id,
    now: i64,
) -> Result<(), ActionError> {
    if let Some(lock) = store.lock(campaign).await? {
        if lock.expires_at > now {
            return Err(ActionError::InProgress {
                tracker_id: lock.tracker_id,
            });
        }
    }
    Ok(())
}

async fn add_products(
    store: &dyn store::Store,
    msg: AddProducts,
    now: i64,
) -> Result<Added, ActionError> {
    refuse_if_locked(store, msg.campaign_id, now).await?;
    let mut rows = Vec::new();
    let (mut added, mut already) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    for &connection_id in &msg.connection_ids {
        for &product_id in &msg.product_ids {
            if !seen.insert((connection_id, product_id)) {
                continue;
            }
            let change = msg.prices.get(&product_id).copied().unwrap_or_default();
            if let Some(mut cp) = store
                .campaign_product(msg.campaign_id, connection_id, product_id)
                .await?
            {
                already += 1;
                // Prices given for a product already in the campaign are its new prices.
                if change.apply(&mut cp) {
                    cp.updated_at = now;
                    rows.push(cp);
                }
                continue;
            }
            let mut cp = CampaignProduct {
                campaign_id: msg.campaign_id,
                connection_id,
                product_id,
                status: ProductStatus::Pending,
                marketplace_info: MarketplaceInfo::default(),
                error_message: None,
                published_at: None,
                updated_at: now,
                run: None,
                sale_price: None,
                presale_price: None,
                drift: None,
            };
            change.apply(&mut cp);
            rows.push(cp);
            added += 1;
        }
    }
    store.put_campaign_products(&rows).await?;
    Ok(Added { added, already })
}

/// Sets the campaign prices of products already in a campaign, on each of its marketplaces.
/// Goes through the supervisor, like adding products: a locked campaign refuses.
#[derive(Message)]
#[rtype(result = "Result<u64, ActionError>")]
pub struct SetPrices {
    pub campaign_id: Id,
    pub connection_ids: Vec<Id>,
    pub prices: Vec<(Id, PriceChange)>,
}

impl Handler<SetPrices> for Supervisor {
    type Result = AtomicResponse<Self, Result<u64, ActionError>>;

    fn handle(&mut self, msg: SetPrices, _ctx: &mut Self::Context) -> Self::Result {
        let store = Arc::clone(&self.deps.store);
        let now = self.deps.clock.now_ms();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            let store = store.as_ref();
            refuse_if_locked(store, msg.campaign_id, now).await?;
            let mut rows = Vec::new();
            for (product_id, change) in &msg.prices {
                for &connection_id in &msg.connection_ids {
                    let cp = store
                        .campaign_product(msg.campaign_id, connection_id, *product_id)
                        .await?;
                    if let Some(mut cp) = cp {
                        if change.apply(&mut cp) {
                            cp.updated_at = now;
                            rows.push(cp);
                        }
                    }
                }
            }
            store.put_campaign_products(&rows).await?;
            Ok(rows.len() as u64)
        })))
    }
}

/// Clears a campaign's lock and fails its open trackers (stopping a live run first).
#[derive(Message)]
#[rtype(result = "Result<u64, ActionError>")]
pub struct ForceReset {
    pub tenant_id: Id,
    pub campaign_id: Id,
}

impl Handler<ForceReset> for Supervisor {
    type Result = AtomicResponse<Self, Result<u64, ActionError>>;

    fn handle(&mut self, msg: ForceReset, _ctx: &mut Self::Context) -> Self::Result {
        let starter = self.starter();
        let local = self.runs.clone();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            starter.reset(msg.tenant_id, msg.campaign_id, &local).await
        })))
    }
}

/// The work of the atomic handlers, as a plain value so it can run inside their futures.
/// The products a request takes, before its run has a tracker.
fn scope_of(req: &ActionRequest, campaign_id: Id, prices: domain::PriceMode) -> RunScope {
    RunScope {
        tenant_id: req.tenant_id,
        campaign_id,
        tracker_id: 0,
        action: req.action,
        chunk_size: req.chunk_size,
        fail_fast: req.fail_fast,
        product_ids: req.product_ids.clone().map(Into::into),
        resumed: false,
        retry: req.retry,
        prices,
    }
}

/// What `Starter::admit` found.
struct Admitted {
    campaign: Campaign,
    lock: Option<Lock>,
    held: bool,
    effective: CampaignStatus,
    connections: Vec<Connection>,
}

struct Starter {
    deps: Deps,
    tracker: Addr<TrackerActor>,
}

/// Whether an action may start on `campaign` with `lock` on it at `now`, before its connections
/// are read: whether the lock is held (a forced action takes it over), and the status the
/// state rule was checked against.
fn admission(
    req: &ActionRequest,
    campaign: &Campaign,
    lock: Option<&Lock>,
    now: i64,
) -> Result<(bool, CampaignStatus), ActionError> {
    // A running action is reported before any other refusal: the caller may want to force.
    // A scheduled step waits for any lock, even one whose run stopped renewing it: the sweep
    // ends that run, and the step goes on afterwards.
    let held = lock.is_some_and(|l| l.expires_at > now);
    if let Some(l) = lock {
        if (held && !req.force) || req.scheduled.is_some() {
            return Err(ActionError::InProgress {
                tracker_id: l.tracker_id,
            });
        }
    }
    // The state rule is checked against the status the campaign had before a running action,
    // so that `force` can take that action over.
    let effective = if is_transitional(campaign.status) {
        campaign.status_before_run.unwrap_or(campaign.status)
    } else {
        campaign.status
    };
    let refused = || ActionError::InvalidState {
        action: req.action,
        status: campaign.status,
    };
    if !req.product_level && !req.action.campaign_allows(effective) {
        return Err(refused());
    }
    // Products of a finished campaign can only be deleted (or finished again, on retry).
    let after_finish = match req.action {
        domain::Action::Delete => true,
        domain::Action::Finish => req.retry,
        _ => false,
    };
    if req.product_level && campaign.status == CampaignStatus::Finished && !after_finish {
        return Err(refused());
    }
    Ok((held, effective))
}

fn is_transitional(status: CampaignStatus) -> bool {
    matches!(
        status,
        CampaignStatus::Publishing | CampaignStatus::Pausing | CampaignStatus::Finishing
    )
}

impl Starter {
    async fn load_campaign(&self, tenant: Id, id: Id) -> Result<Campaign, ActionError> {
        self.deps
            .store
            .campaign(tenant, id)
            .await?
            .ok_or(ActionError::NotFound("campaign"))
    }

    /// Before the first look at the work: with a store only this process opens, every lease
    /// found was this node's before it stopped. Runs written before work items existed get
    /// theirs, and the locks of runs with open work are renewed, so that a node that was down
    /// longer than a lock lasts resumes its runs rather than failing them.
    async fn prepare(&self) {
        if let Err(error) = self.prepare_runs().await {
            tracing::error!(%error, "could not prepare the runs left by a stopped process");
        }
    }

    async fn prepare_runs(&self) -> Result<(), ActionError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now_ms();
        for lock in store.all_locks().await? {
            let Some(t) = store.tracker(lock.tracker_id).await? else {
                store.remove_lock(lock.campaign_id).await?;
                continue;
            };
            if t.status != TrackerStatus::Active {
                store.remove_lock(lock.campaign_id).await?;
                continue;
            }
            let mut items = store.work(t.id).await?;
            if close_if_ended(&self.tracker, t.id, &items).await {
                continue;
            }
            if items.is_empty() {
                // A run of a version without work items: it was running, so it resumes.
                items = t
                    .connections
                    .iter()
                    .map(|c| WorkItem {
                        attempts: 1,
                        ..WorkItem::new(&t, c.connection_id)
                    })
                    .collect();
                store.put_work(&items).await?;
            }
            if items.iter().any(|i| !i.done) && !store.shared() {
                store
                    .put_lock(&Lock {
                        expires_at: now + self.deps.runs.lease().as_millis() as i64,
                        ..lock
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Ends whatever holds the campaign's lock: asks its run to stop and waits for its tracker
    /// to end (its workers stop between calls, wherever they are), or fails a stale tracker and
    /// drops the lock. Answers how many trackers it ended.
    async fn take_over(
        &self,
        lock: &Lock,
        local: &HashMap<Id, Addr<CampaignRun>>,
        reason: String,
    ) -> Result<u64, ActionError> {
        let store = &self.deps.store;
        tracing::info!(
            campaign_id = lock.campaign_id,
            tracker_id = lock.tracker_id,
            reason = %reason,
            "stopping the running action"
        );
        let mut signals = store.signals();
        store
            .cancel_run(lock.tracker_id, &reason, self.deps.clock.now_ms())
            .await?;
        store.signal(Signal::Work).await?;
        if let Some(run) = local.get(&lock.tracker_id) {
            run.do_send(Cancel);
        }
        let deadline = tokio::time::Instant::now() + self.deps.runs.shutdown_grace();
        loop {
            let active = store
                .tracker(lock.tracker_id)
                .await?
                .is_some_and(|t| t.status == TrackerStatus::Active);
            if !active {
                return Ok(1);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    tracker_id = lock.tracker_id,
                    "the run did not stop in time; failing it"
                );
                return self.fail_stale(lock, reason).await;
            }
            // Its end is signalled by whoever closes it (on PostgreSQL), and looked at again
            // every 20 ms.
            let _ = tokio::time::timeout(Duration::from_millis(20), signals.recv()).await;
        }
    }

    /// Ends a run nobody carries: one whose items are all done but whose tracker was never
    /// closed (its last worker's node stopped in between) closes as it ended; one whose lock
    /// expired without any node renewing it fails.
    async fn end_abandoned(&self, lock: &Lock, now: i64) -> Result<(), ActionError> {
        let items = self.deps.store.work(lock.tracker_id).await?;
        if close_if_ended(&self.tracker, lock.tracker_id, &items).await {
            return Ok(());
        }
        if lock.expires_at <= now {
            let reason = "the run holding the campaign stopped renewing its lock".to_string();
            tracing::warn!(
                campaign_id = lock.campaign_id,
                tracker_id = lock.tracker_id,
                "expired lock freed"
            );
            self.fail_stale(lock, reason).await?;
        }
        Ok(())
    }

    /// Fails the tracker of a lock whose run is not alive, and drops the lock; answers how many
    /// trackers it ended (0 when the tracker had ended already).
    async fn fail_stale(&self, lock: &Lock, reason: String) -> Result<u64, ActionError> {
        let closed = self
            .tracker
            .send(Close {
                tracker_id: lock.tracker_id,
                failure: Some(reason.clone()),
                event: Some(reason),
            })
            .await
            .map_err(|e| ActionError::Internal(e.to_string()))?;
        self.deps.store.remove_lock(lock.campaign_id).await?;
        Ok(u64::from(closed.is_ok()))
    }

    /// The checks an action passes before it starts (a dry run's too): the campaign, a run
    /// in progress (unless forced), the state rule, and the connections it targets.
    async fn admit(&self, req: &ActionRequest) -> Result<Admitted, ActionError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now_ms();
        let campaign = self.load_campaign(req.tenant_id, req.campaign_id).await?;
        let lock = store.lock(campaign.id).await?;
        let (held, effective) = admission(req, &campaign, lock.as_ref(), now)?;
        let connections = self.scope_connections(req, &campaign).await?;
        Ok(Admitted {
            campaign,
            lock,
            held,
            effective,
            connections,
        })
    }

    /// The plan of an action, as the run would carry it out now (see `dry_run`).
    async fn plan(
        &self,
        req: ActionRequest,
        mode: DryRun,
    ) -> Result<super::dry_run::Plan, ActionError> {
        let admitted = self.admit(&req).await?;
        let now = self.deps.clock.now_ms();
        let schedule = self.deps.store.schedule(admitted.campaign.id).await?;
        let prices = schedule::price_mode(schedule.as_ref(), now);
        let scope = scope_of(&req, admitted.campaign.id, prices);
        super::dry_run::plan(&self.deps, &scope, &admitted.connections, mode).await
    }

    async fn start(
        &self,
        req: ActionRequest,
        local: &HashMap<Id, Addr<CampaignRun>>,
    ) -> Result<Started, ActionError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now_ms();
        let Admitted {
            mut campaign,
            lock,
            held,
            effective,
            connections,
        } = self.admit(&req).await?;

        let mut force_event = None;
        let replacing = lock.as_ref().map(|l| l.tracker_id);
        if let Some(lock) = lock {
            let reason = if held {
                format!("taken over by a forced {} action", req.action.as_str())
            } else {
                "its lock expired without being renewed".to_string()
            };
            self.take_over(&lock, local, reason).await?;
            force_event = Some(format!("took over from tracker {}", lock.tracker_id));
            campaign = self.load_campaign(req.tenant_id, req.campaign_id).await?;
        }

        let scope = scope_of(&req, campaign.id, domain::PriceMode::Regular);
        let counts = self.count_products(&scope, &connections).await?;
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Err(ActionError::NothingToDo(req.action));
        }
        let prices = match req.scheduled.as_ref().and_then(|s| s.step.price_mode()) {
            Some(prices) => prices,
            None => schedule::price_mode(store.schedule(campaign.id).await?.as_ref(), now),
        };
        let tracker_id = store.next_id("tracker").await?;
        let schedule = req.scheduled.as_ref().map(|s| {
            let mut schedule = s.schedule.clone();
            schedule.took(StepRecord {
                step: s.step,
                due_at: s.due_at,
                at: now,
                action: Some(req.action),
                tracker_id: Some(tracker_id),
                skipped: None,
            });
            schedule
        });

        let connections: Vec<_> = connections
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect();
        let tracker = Tracker {
            id: tracker_id,
            tenant_id: req.tenant_id,
            campaign_id: campaign.id,
            marketplace_id: match connections.as_slice() {
                [(only, _)] => Some(only.id),
                _ => None,
            },
            action: req.action,
            status: TrackerStatus::Active,
            connections: connections
                .iter()
                .map(|(c, n)| ConnProgress::new(c.id, c.system, c.system.phases(req.action), *n))
                .collect(),
            metadata: TrackerMeta {
                campaign_name: campaign.name.clone(),
                total_products: total,
                chunk_size: req.chunk_size as u32,
                fail_fast: req.fail_fast,
                force: req.force,
                product_level: req.product_level,
                events: force_event.into_iter().collect(),
                product_ids: req.product_ids.clone().unwrap_or_default(),
                retry: req.retry,
                notify: req.notify,
                scheduled: req.scheduled.as_ref().map(|s| s.step),
                prices,
            },
            error_message: None,
            started_at: now,
            completed_at: None,
            updated_at: now,
        };
        let mut campaign_update = None;
        if !req.product_level {
            if let Some((during, _)) = req.action.campaign_transition() {
                campaign.status_before_run = Some(if is_transitional(campaign.status) {
                    campaign.status_before_run.unwrap_or(effective)
                } else {
                    campaign.status
                });
                campaign.status = during;
                campaign.error = false;
                campaign.updated_at = now;
                campaign_update = Some(&campaign);
            }
        }
        // The lock, the tracker, its work and the step in one transaction.
        let started = store
            .start_run(
                &Lock {
                    campaign_id: campaign.id,
                    tracker_id,
                    owner: self.deps.instance.clone(),
                    expires_at: now + self.deps.runs.lease().as_millis() as i64,
                },
                replacing,
                &tracker,
                campaign_update,
                schedule.as_ref(),
            )
            .await?;
        if !started {
            return Err(ActionError::Conflict);
        }
        // Durable before the user is told it started: a crash from here on resumes the run.
        store.flush().await?;
        self.deps
            .metrics
            .runs_started
            .get_or_create(&metrics::RunLabels {
                action: req.action.as_str().to_string(),
            })
            .inc();
        let _ = self.tracker.send(Announce(tracker)).await;
        store.signal(Signal::Work).await?;
        tracing::info!(
            campaign_id = campaign.id,
            tracker_id,
            action = req.action.as_str(),
            total_products = total,
            "action started"
        );
        Ok(Started {
            tracker_id,
            total_products: total,
        })
    }

    /// The campaign's connections the request targets, in the campaign's order.
    async fn scope_connections(
        &self,
        req: &ActionRequest,
        campaign: &Campaign,
    ) -> Result<Vec<Connection>, ActionError> {
        if let Some(ids) = &req.connection_ids {
            campaign
                .marketplaces_of(ids)
                .map_err(ActionError::NotInCampaign)?;
        }
        let mut out = Vec::new();
        for id in &campaign.marketplace_ids {
            if req
                .connection_ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(id))
            {
                continue;
            }
            if let Some(c) = self.deps.store.connection(req.tenant_id, *id).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Counts the products the run will take, per connection (one read-only pass).
    async fn count_products(
        &self,
        scope: &RunScope,
        connections: &[Connection],
    ) -> Result<Vec<u64>, ActionError> {
        let mut counts = vec![0u64; connections.len()];
        store::for_each_campaign_product(self.deps.store.as_ref(), scope.campaign_id, |cp| {
            if let Some(slot) = connections.iter().position(|c| c.id == cp.connection_id) {
                if scope.takes(&cp) {
                    counts[slot] += 1;
                }
            }
        })
        .await?;
        Ok(counts)
    }

    async fn reset(
        &self,
        tenant_id: Id,
        campaign_id: Id,
        local: &HashMap<Id, Addr<CampaignRun>>,
    ) -> Result<u64, ActionError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now_ms();
        self.load_campaign(tenant_id, campaign_id).await?;
        let mut cleared = 0;
        if let Some(lock) = store.lock(campaign_id).await? {
            cleared += self
                .take_over(&lock, local, "reset by force-reset".to_string())
                .await?;
        }
        for t in store.campaign_trackers(campaign_id).await? {
            if t.status != TrackerStatus::Active {
                continue;
            }
            let reason = "reset by force-reset".to_string();
            let closed = self
                .tracker
                .send(Close {
                    tracker_id: t.id,
                    failure: Some(reason.clone()),
                    event: Some(reason),
                })
                .await
                .map_err(|e| ActionError::Internal(e.to_string()))?;
            cleared += u64::from(closed.is_ok());
        }
        store.remove_lock(campaign_id).await?;
        let mut campaign = self.load_campaign(tenant_id, campaign_id).await?;
        if is_transitional(campaign.status) {
            campaign.status = campaign
                .status_before_run
                .unwrap_or(CampaignStatus::Pending);
            campaign.status_before_run = None;
            campaign.error = true;
            campaign.updated_at = now;
            store.put_campaign(&campaign).await?;
        }
        Ok(cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduledStep;
    use domain::{Action, Campaign, Schedule, Step};
    use CampaignStatus::*;

    fn campaign(status: CampaignStatus, before: Option<CampaignStatus>) -> Campaign {
        Campaign {
            id: 9,
            tenant_id: 1,
            name: "c".into(),
            status,
            error: false,
            marketplace_ids: vec![2],
            status_before_run: before,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// A request of `action`; `how` holds "force", "products", "retry", "scheduled".
    fn request(action: Action, how: &[&str]) -> ActionRequest {
        ActionRequest {
            tenant_id: 1,
            campaign_id: 9,
            action,
            product_ids: how.contains(&"products").then(|| vec![1]),
            connection_ids: None,
            chunk_size: 10,
            fail_fast: false,
            force: how.contains(&"force"),
            product_level: how.contains(&"products"),
            retry: how.contains(&"retry"),
            notify: true,
            scheduled: how.contains(&"scheduled").then(|| ScheduledStep {
                step: Step::Start,
                due_at: 0,
                schedule: Schedule::new(1, 9),
            }),
        }
    }

    fn lock(expires_at: i64) -> Lock {
        Lock {
            campaign_id: 9,
            tracker_id: 4,
            owner: "n".into(),
            expires_at,
        }
    }

    /// An action, how it is asked, the campaign's status and status before its run, the lock on
    /// it, and what `admission` answers.
    type Case<'a> = (
        Action,
        &'a [&'a str],
        CampaignStatus,
        Option<CampaignStatus>,
        Option<&'a Lock>,
        &'a str,
    );

    /// What `admission` answers, in short: `held/effective`, or the refusal's kind.
    fn admitted(req: &ActionRequest, c: &Campaign, l: Option<&Lock>) -> String {
        match admission(req, c, l, 100) {
            Ok((held, effective)) => format!("{held}/{}", effective.as_str()),
            Err(ActionError::InProgress { tracker_id }) => format!("in progress {tracker_id}"),
            Err(ActionError::InvalidState { .. }) => "invalid state".into(),
            Err(e) => format!("{e}"),
        }
    }

    #[test]
    fn an_action_is_admitted_by_the_lock_and_the_state_rule_in_that_order() {
        let live = lock(200);
        let expired = lock(50);
        let cases: &[Case] = &[
            (Action::Publish, &[], Pending, None, None, "false/pending"),
            (Action::Pause, &[], Pending, None, None, "invalid state"),
            // A running action is reported first, even when the state rule would refuse.
            (
                Action::Pause,
                &[],
                Publishing,
                Some(Pending),
                Some(&live),
                "in progress 4",
            ),
            // Forced: the lock is taken over, and the rule reads the status before the run.
            (
                Action::Publish,
                &["force"],
                Publishing,
                Some(Pending),
                Some(&live),
                "true/pending",
            ),
            (
                Action::Pause,
                &["force"],
                Publishing,
                Some(Pending),
                Some(&live),
                "invalid state",
            ),
            // A lock nobody renews is taken over without force...
            (
                Action::Publish,
                &[],
                Publishing,
                Some(Paused),
                Some(&expired),
                "false/paused",
            ),
            // ...but a scheduled step waits for any lock.
            (
                Action::Publish,
                &["scheduled"],
                Publishing,
                Some(Paused),
                Some(&expired),
                "in progress 4",
            ),
            // Product-level actions leave the campaign's rule aside, except after a finish.
            (
                Action::Pause,
                &["products"],
                Pending,
                None,
                None,
                "false/pending",
            ),
            (
                Action::Pause,
                &["products"],
                Finished,
                None,
                None,
                "invalid state",
            ),
            (
                Action::Delete,
                &["products"],
                Finished,
                None,
                None,
                "false/finished",
            ),
            (
                Action::Finish,
                &["products"],
                Finished,
                None,
                None,
                "invalid state",
            ),
            (
                Action::Finish,
                &["products", "retry"],
                Finished,
                None,
                None,
                "false/finished",
            ),
        ];
        for (action, how, status, before, l, expected) in cases {
            let req = request(*action, how);
            assert_eq!(
                admitted(&req, &campaign(*status, *before), *l),
                *expected,
                "{} {how:?} on a {} campaign, lock {l:?}",
                action.as_str(),
                status.as_str()
            );
        }
    }

    #[test]
    fn a_look_stops_what_was_cancelled_here_and_gives_back_connections_without_work() {
        let item = |tracker_id, connection_id, cancel: bool| WorkItem {
            tracker_id,
            connection_id,
            tenant_id: 1,
            campaign_id: 9,
            attempts: 0,
            done: false,
            failure: None,
            cancel: cancel.then(|| "forced".to_string()),
        };
        let open = [item(1, 10, true), item(2, 11, true), item(3, 12, false)];
        let working: HashSet<(Id, Id)> = [(1, 10), (3, 12), (5, 13)].into();
        assert_eq!(
            cancelled_here(&open, &working),
            [1],
            "run 2 is not worked on here"
        );
        let with_work = open.iter().map(|i| i.connection_id).collect();
        let held: HashSet<Id> = [10, 13, 14].into();
        assert_eq!(
            idle(&held, &with_work, &working),
            [14],
            "13 has no open item but is worked on here"
        );
    }

    #[test]
    fn a_node_stops_sending_after_two_thirds_of_a_lease_without_renewal() {
        let lease = Duration::from_secs(30);
        for (since, stops) in [(0, false), (19_999, false), (20_000, false), (20_001, true)] {
            assert_eq!(
                stops_sending(Duration::from_millis(since), lease),
                stops,
                "{since} ms since the last renewal"
            );
        }
    }
}
