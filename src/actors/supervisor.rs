//! The Supervisor actor: the only place campaign locks are taken. It handles one start or reset
//! at a time (atomic handlers), so checking a lock and taking it cannot interleave with another
//! request. It selects the action's products, opens the tracker, takes the lock and starts a
//! CampaignRun; on `force` it first cancels the running holder and waits for it to end.

use std::collections::HashMap;

use actix::prelude::*;

use super::run::{CampaignRun, Cancel, Suspend};
use super::tracker::{Close, Open, TrackerActor, WriteNow};
use super::worker::RunScope;
use super::{ActionError, ActionRequest, Deps, Started};
use crate::domain::{
    Campaign, CampaignProduct, CampaignStatus, ConnProgress, Id, Lock, MarketplaceInfo,
    ProductStatus, Tracker, TrackerMeta, TrackerStatus,
};

pub struct Supervisor {
    deps: Deps,
    tracker: Addr<TrackerActor>,
    /// The live run of each locked campaign in this process: (tracker id, run).
    runs: HashMap<Id, (Id, Addr<CampaignRun>)>,
    /// Set when the service stops: no action starts any more.
    stopping: bool,
}

impl Supervisor {
    pub fn new(deps: Deps, tracker: Addr<TrackerActor>) -> Supervisor {
        Supervisor {
            deps,
            tracker,
            runs: HashMap::new(),
            stopping: false,
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    /// Resumes the actions the last process left running, before taking any request.
    fn started(&mut self, ctx: &mut Self::Context) {
        let starter = Starter {
            deps: self.deps.clone(),
            tracker: self.tracker.clone(),
            supervisor: ctx.address(),
        };
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(async move { starter.resume_all().await }).map(
                |resumed, act, _ctx| {
                    for (campaign_id, tracker_id, run) in resumed {
                        act.runs.insert(campaign_id, (tracker_id, run));
                    }
                },
            ),
        );
        ctx.run_interval(self.deps.runs.lease(), |act, ctx| act.sweep_expired(ctx));
    }
}

impl Supervisor {
    /// Frees the campaigns whose lock expired without a live run in this process renewing it
    /// (its run died): their trackers are failed with the reason.
    fn sweep_expired(&mut self, ctx: &mut Context<Self>) {
        let store = std::sync::Arc::clone(&self.deps.store);
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
            let live = self
                .runs
                .get(&lock.campaign_id)
                .is_some_and(|(t, run)| *t == lock.tracker_id && run.connected());
            if live || lock.expires_at > now {
                continue;
            }
            let starter = Starter {
                deps: self.deps.clone(),
                tracker: self.tracker.clone(),
                supervisor: ctx.address(),
            };
            ctx.spawn(actix::fut::wrap_future::<_, Self>(async move {
                let reason = "the run holding the campaign stopped renewing its lock".to_string();
                tracing::warn!(campaign_id = lock.campaign_id, tracker_id = lock.tracker_id, "expired lock freed");
                if let Err(error) = starter.fail_stale(&lock, reason).await {
                    tracing::error!(campaign_id = lock.campaign_id, %error, "could not free an expired lock");
                }
            }));
        }
    }
}

/// Starts an action on a campaign or on some of its products.
#[derive(Message)]
#[rtype(result = "Result<Started, ActionError>")]
pub struct Start(pub ActionRequest);

impl Handler<Start> for Supervisor {
    type Result = AtomicResponse<Self, Result<Started, ActionError>>;

    fn handle(&mut self, msg: Start, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(
                ActionError::ShuttingDown,
            ))));
        }
        let live = self.runs.get(&msg.0.campaign_id).cloned();
        let starter = Starter {
            deps: self.deps.clone(),
            tracker: self.tracker.clone(),
            supervisor: ctx.address(),
        };
        let campaign_id = msg.0.campaign_id;
        AtomicResponse::new(Box::pin(
            actix::fut::wrap_future::<_, Self>(async move { starter.start(msg.0, live).await })
                .map(move |result, act, _ctx| {
                    result.map(|(started, run)| {
                        act.runs.insert(campaign_id, (started.tracker_id, run));
                        started
                    })
                }),
        ))
    }
}

/// The service is stopping: no action starts any more, and every live run is suspended (its
/// workers stop taking products and let the calls in flight finish, within `grace`); their locks
/// stay, so the next start resumes them. Answers how many runs were suspended in time.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SuspendAll {
    pub grace: std::time::Duration,
}

impl Handler<SuspendAll> for Supervisor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: SuspendAll, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let runs: Vec<_> = self.runs.values().map(|(_, run)| run.clone()).collect();
        let tracker = self.tracker.clone();
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub added: u64,
    pub already: u64,
}

impl Handler<AddProducts> for Supervisor {
    type Result = AtomicResponse<Self, Result<Added, ActionError>>;

    fn handle(&mut self, msg: AddProducts, _ctx: &mut Self::Context) -> Self::Result {
        let store = std::sync::Arc::clone(&self.deps.store);
        let now = self.deps.clock.now_ms();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            add_products(store.as_ref(), msg, now).await
        })))
    }
}

async fn add_products(
    store: &dyn crate::store::Store,
    msg: AddProducts,
    now: i64,
) -> Result<Added, ActionError> {
    if let Some(lock) = store.lock(msg.campaign_id).await? {
        if lock.expires_at > now {
            return Err(ActionError::InProgress {
                tracker_id: lock.tracker_id,
            });
        }
    }
    let mut rows = Vec::new();
    let mut already = 0u64;
    let mut seen = std::collections::HashSet::new();
    for &connection_id in &msg.connection_ids {
        for &product_id in &msg.product_ids {
            if !seen.insert((connection_id, product_id)) {
                continue;
            }
            if store
                .campaign_product(msg.campaign_id, connection_id, product_id)
                .await?
                .is_some()
            {
                already += 1;
                continue;
            }
            rows.push(CampaignProduct {
                campaign_id: msg.campaign_id,
                connection_id,
                product_id,
                status: ProductStatus::Pending,
                marketplace_info: MarketplaceInfo::default(),
                error_message: None,
                published_at: None,
                updated_at: now,
                run: None,
            });
        }
    }
    store.put_campaign_products(&rows).await?;
    Ok(Added {
        added: rows.len() as u64,
        already,
    })
}

/// A run ended; its lock was released with its tracker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunEnded {
    pub campaign_id: Id,
    pub tracker_id: Id,
}

impl Handler<RunEnded> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: RunEnded, _ctx: &mut Self::Context) {
        if self
            .runs
            .get(&msg.campaign_id)
            .is_some_and(|(t, _)| *t == msg.tracker_id)
        {
            self.runs.remove(&msg.campaign_id);
        }
    }
}

/// Clears a campaign's lock and fails its open trackers (cancelling a live run first).
#[derive(Message)]
#[rtype(result = "Result<u64, ActionError>")]
pub struct ForceReset {
    pub tenant_id: Id,
    pub campaign_id: Id,
}

impl Handler<ForceReset> for Supervisor {
    type Result = AtomicResponse<Self, Result<u64, ActionError>>;

    fn handle(&mut self, msg: ForceReset, ctx: &mut Self::Context) -> Self::Result {
        let live = self.runs.get(&msg.campaign_id).cloned();
        let starter = Starter {
            deps: self.deps.clone(),
            tracker: self.tracker.clone(),
            supervisor: ctx.address(),
        };
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            starter.reset(msg.tenant_id, msg.campaign_id, live).await
        })))
    }
}

/// The work of the atomic handlers, as a plain value so it can run inside their futures.
struct Starter {
    deps: Deps,
    tracker: Addr<TrackerActor>,
    supervisor: Addr<Supervisor>,
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

    /// Ends whatever holds the campaign's lock: cancels the live run and waits for it, or fails
    /// a stale tracker and drops the lock. Answers how many trackers it ended.
    async fn take_over(
        &self,
        lock: &Lock,
        live: Option<(Id, Addr<CampaignRun>)>,
        reason: String,
    ) -> Result<u64, ActionError> {
        if let Some((tracker_id, run)) = live.filter(|(t, _)| *t == lock.tracker_id) {
            tracing::info!(
                campaign_id = lock.campaign_id,
                tracker_id,
                reason = %reason,
                "cancelling the running action"
            );
            // A run that ended meanwhile has closed its tracker already; either way it is over.
            let _ = run.send(Cancel { reason }).await;
            return Ok(1);
        }
        self.fail_stale(lock, reason).await
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

    async fn start(
        &self,
        req: ActionRequest,
        live: Option<(Id, Addr<CampaignRun>)>,
    ) -> Result<(Started, Addr<CampaignRun>), ActionError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now_ms();
        let mut campaign = self.load_campaign(req.tenant_id, req.campaign_id).await?;

        // A running action is reported before any other refusal: the caller may want to force.
        let lock = store.lock(campaign.id).await?;
        let held = lock.as_ref().is_some_and(|l| l.expires_at > now);
        if let (Some(l), true, false) = (&lock, held, req.force) {
            return Err(ActionError::InProgress {
                tracker_id: l.tracker_id,
            });
        }

        // The state rule is checked against the status the campaign had before a running
        // action, so that `force` can take that action over.
        let effective = if is_transitional(campaign.status) {
            campaign.status_before_run.unwrap_or(campaign.status)
        } else {
            campaign.status
        };
        if !req.product_level && !req.action.campaign_allows(effective) {
            return Err(ActionError::InvalidState {
                action: req.action,
                status: campaign.status,
            });
        }
        // Products of a finished campaign can only be deleted (or finished again, on retry).
        let after_finish = match req.action {
            crate::domain::Action::Delete => true,
            crate::domain::Action::Finish => req.retry,
            _ => false,
        };
        if req.product_level && campaign.status == CampaignStatus::Finished && !after_finish {
            return Err(ActionError::InvalidState {
                action: req.action,
                status: campaign.status,
            });
        }
        let connections = self.scope_connections(&req, &campaign).await?;

        let mut force_event = None;
        if let Some(lock) = lock {
            let reason = if held {
                format!("taken over by a forced {} action", req.action.as_str())
            } else {
                "its lock expired without being renewed".to_string()
            };
            self.take_over(&lock, live, reason).await?;
            force_event = Some(format!("took over from tracker {}", lock.tracker_id));
            campaign = self.load_campaign(req.tenant_id, req.campaign_id).await?;
        }

        let mut scope = RunScope {
            tenant_id: req.tenant_id,
            campaign_id: campaign.id,
            tracker_id: 0,
            action: req.action,
            chunk_size: req.chunk_size,
            fail_fast: req.fail_fast,
            product_ids: req.product_ids.clone().map(Into::into),
            resumed: false,
            retry: req.retry,
        };
        let counts = self.count_products(&scope, &connections).await?;
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Err(ActionError::NothingToDo(req.action));
        }
        let tracker_id = store.next_id("tracker").await?;
        scope.tracker_id = tracker_id;

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
            },
            error_message: None,
            started_at: now,
            completed_at: None,
            updated_at: now,
        };
        // The lock first: after a crash, a lock whose tracker was never written is dropped at
        // start-up, while a tracker without its lock would stay active forever.
        store
            .put_lock(&Lock {
                campaign_id: campaign.id,
                tracker_id,
                owner: self.deps.instance.clone(),
                expires_at: now + self.deps.runs.lease().as_millis() as i64,
            })
            .await?;
        let opened = self
            .tracker
            .send(Open(tracker))
            .await
            .map_err(|e| ActionError::Internal(e.to_string()))
            .and_then(|r| r.map_err(ActionError::from));
        if let Err(e) = opened {
            store.remove_lock(campaign.id).await?;
            return Err(e);
        }
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
                store.put_campaign(&campaign).await?;
            }
        }
        // Durable before the user is told it started: a crash from here on resumes the run.
        store.flush().await?;

        let run = CampaignRun::new(
            self.deps.clone(),
            self.tracker.clone(),
            self.supervisor.clone(),
            scope,
            connections.into_iter().map(|(c, _)| c).collect(),
        )
        .start();
        tracing::info!(
            campaign_id = campaign.id,
            tracker_id,
            action = req.action.as_str(),
            total_products = total,
            "action started"
        );
        Ok((
            Started {
                tracker_id,
                total_products: total,
            },
            run,
        ))
    }

    /// The campaign's connections the request targets, in the campaign's order.
    async fn scope_connections(
        &self,
        req: &ActionRequest,
        campaign: &Campaign,
    ) -> Result<Vec<crate::domain::Connection>, ActionError> {
        if let Some(ids) = &req.connection_ids {
            if let Some(bad) = ids.iter().find(|id| !campaign.marketplace_ids.contains(id)) {
                return Err(ActionError::BadScope(format!(
                    "marketplace {bad} is not a marketplace of this campaign"
                )));
            }
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

    /// Every lock in the store was left by a process that stopped (only one process opens the
    /// store): resume each active action under its tracker, and drop locks of ended ones.
    async fn resume_all(&self) -> Vec<(Id, Id, Addr<CampaignRun>)> {
        let locks = match self.deps.store.all_locks().await {
            Ok(locks) => locks,
            Err(error) => {
                tracing::error!(%error, "could not read the locks to resume runs");
                return Vec::new();
            }
        };
        let mut resumed = Vec::new();
        for lock in locks {
            match self.resume(&lock).await {
                Ok(Some(run)) => resumed.push((lock.campaign_id, lock.tracker_id, run)),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(campaign_id = lock.campaign_id, tracker_id = lock.tracker_id, %error, "could not resume");
                    let reason = format!("could not be resumed after a restart: {error}");
                    if let Err(error) = self.fail_stale(&lock, reason).await {
                        tracing::error!(campaign_id = lock.campaign_id, %error, "could not fail the tracker");
                    }
                }
            }
        }
        resumed
    }

    /// Restarts the run that held `lock`, under the same tracker, with its progress counted
    /// again from the products' stored states.
    async fn resume(&self, lock: &Lock) -> Result<Option<Addr<CampaignRun>>, ActionError> {
        let store = &self.deps.store;
        let Some(mut t) = store.tracker(lock.tracker_id).await? else {
            store.remove_lock(lock.campaign_id).await?;
            return Ok(None);
        };
        if t.status != TrackerStatus::Active {
            store.remove_lock(lock.campaign_id).await?;
            return Ok(None);
        }
        self.load_campaign(t.tenant_id, t.campaign_id).await?;
        let mut connections = Vec::new();
        for c in &t.connections {
            let connection = store
                .connection(t.tenant_id, c.connection_id)
                .await?
                .ok_or(ActionError::NotFound("marketplace connection"))?;
            connections.push(connection);
        }
        let scope = RunScope {
            tenant_id: t.tenant_id,
            campaign_id: t.campaign_id,
            tracker_id: t.id,
            action: t.action,
            chunk_size: t.metadata.chunk_size.max(1) as usize,
            fail_fast: t.metadata.fail_fast,
            product_ids: (!t.metadata.product_ids.is_empty())
                .then(|| t.metadata.product_ids.clone().into()),
            resumed: true,
            retry: t.metadata.retry,
        };
        self.recount(&mut t).await?;
        let now = self.deps.clock.now_ms();
        t.metadata
            .events
            .push("resumed after the service restarted".to_string());
        t.updated_at = now;
        self.tracker
            .send(Open(t.clone()))
            .await
            .map_err(|e| ActionError::Internal(e.to_string()))??;
        store
            .put_lock(&Lock {
                campaign_id: t.campaign_id,
                tracker_id: t.id,
                owner: self.deps.instance.clone(),
                expires_at: now + self.deps.runs.lease().as_millis() as i64,
            })
            .await?;
        tracing::info!(
            campaign_id = t.campaign_id,
            tracker_id = t.id,
            progress = t.progress(),
            "resuming an interrupted action"
        );
        Ok(Some(
            CampaignRun::new(
                self.deps.clone(),
                self.tracker.clone(),
                self.supervisor.clone(),
                scope,
                connections,
            )
            .start(),
        ))
    }

    /// Counts a run's progress again from its products' marks, which are stored with each
    /// product's state; the tracker's own counts may lag them by a flush interval. Deleted
    /// products leave no record, so a delete keeps the counts it had.
    async fn recount(&self, t: &mut Tracker) -> Result<(), ActionError> {
        if t.action == crate::domain::Action::Delete {
            return Ok(());
        }
        for c in &mut t.connections {
            for p in &mut c.phases {
                p.successful = 0;
                p.failed = 0;
                p.skipped = 0;
            }
        }
        let tracker_id = t.id;
        crate::store::for_each_campaign_product(self.deps.store.as_ref(), t.campaign_id, |cp| {
            let Some(mark) = cp.run.filter(|m| m.tracker_id == tracker_id) else {
                return;
            };
            if let Some(c) = t.connection_mut(cp.connection_id) {
                for phase in 0..mark.phases_done as usize {
                    c.record(phase, 1, 0);
                }
                if let Some(failed) = mark.failed_phase {
                    c.record(failed as usize, 0, 1);
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Counts the products the run will take, per connection (one read-only pass).
    async fn count_products(
        &self,
        scope: &RunScope,
        connections: &[crate::domain::Connection],
    ) -> Result<Vec<u64>, ActionError> {
        let mut counts = vec![0u64; connections.len()];
        crate::store::for_each_campaign_product(
            self.deps.store.as_ref(),
            scope.campaign_id,
            |cp| {
                if let Some(slot) = connections.iter().position(|c| c.id == cp.connection_id) {
                    if scope.takes(&cp) {
                        counts[slot] += 1;
                    }
                }
            },
        )
        .await?;
        Ok(counts)
    }

    async fn reset(
        &self,
        tenant_id: Id,
        campaign_id: Id,
        live: Option<(Id, Addr<CampaignRun>)>,
    ) -> Result<u64, ActionError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now_ms();
        self.load_campaign(tenant_id, campaign_id).await?;
        let mut cleared = 0;
        if let Some(lock) = store.lock(campaign_id).await? {
            cleared += self
                .take_over(&lock, live, "reset by force-reset".to_string())
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
