//! The MarketplaceWorker actor: one per connection in a run. It streams the run's products that
//! still have phases to pass from the store in chunks, and carries each through its remaining
//! phases in order, with a bounded number of products in flight (the connection's limiter paces
//! the requests). A product enters a phase only after it passed the previous one, but no product
//! waits for the others: there is no barrier between phases to leave the account's quota idle.
//! Each product's new state is stored right after its call; the tracker is told of every outcome.

use std::sync::Arc;

use actix::prelude::*;
use futures::future::BoxFuture;
use futures::{stream, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::tracker::{ConnectionFailed, Progress, TrackerActor};
use domain::clock::Clock;
use domain::{
    drift::{self, DriftCheck},
    Action, CampaignProduct, Connection, Id, MarketplaceInfo, Offer, Outcome, Phase, PriceMode,
    Product, ProductStatus, RunMark, Sent,
};
use marketplaces::{
    apply_once, with_retries, Checkpoint, MarketError, Marketplace, PhaseCall, RetryPolicy, Settle,
};
use store::{patiently, Patience, SharedStore};

/// How a worker's part of a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerOutcome {
    /// Every product went through every phase (some may have errored).
    Finished,
    /// The run was cancelled; products not reached keep their state.
    Cancelled,
    /// A product failed in a fail-fast run.
    FailFast(String),
    /// The connection refused our credentials; its remaining products were marked errored.
    ConnectionStopped(String),
    /// Our own side failed (the store).
    Broken(String),
}

/// What a run asks of every worker, and which products belong to it.
///
/// Membership is lazy: a product joins the run when phase 0 reaches it, if the action's rule
/// takes it and it is in scope; from then on its `RunMark` names the run. While the run holds
/// the campaign lock no product can join the campaign or change status behind it, so the count
/// taken at the start and what the workers find agree.
#[derive(Clone)]
pub struct RunScope {
    pub tenant_id: Id,
    pub campaign_id: Id,
    pub tracker_id: Id,
    pub action: Action,
    pub chunk_size: usize,
    pub fail_fast: bool,
    /// Only these products (sorted), or all of the campaign's.
    pub product_ids: Option<Arc<[Id]>>,
    /// The run was interrupted by a stop of the process and resumed: a create may have been
    /// sent whose record never reached the disk, so every product is reconciled with the
    /// marketplace once before anything is created for it again.
    pub resumed: bool,
    /// A retry: takes the chosen products that are errored.
    pub retry: bool,
    /// Which of the campaign's prices the run sends.
    pub prices: PriceMode,
}

impl RunScope {
    /// Whether the run takes a product it has not reached yet.
    pub fn takes(&self, cp: &CampaignProduct) -> bool {
        let chosen = self
            .product_ids
            .as_ref()
            .is_none_or(|ids| ids.binary_search(&cp.product_id).is_ok());
        if self.retry {
            return chosen && cp.status == ProductStatus::Errored;
        }
        if self.action == Action::Reconcile {
            // What the last drift check found different, and that no reconcile repaired since.
            let differs = cp
                .drift
                .as_ref()
                .is_some_and(|d| d.error.is_none() && !d.differences.is_empty());
            return chosen && differs && self.action.takes(cp.status);
        }
        chosen && self.action.takes(cp.status)
    }

    /// The phase a product waits in, if it belongs to this run and is not done with it.
    pub fn waiting_phase(&self, cp: &CampaignProduct, phases: usize) -> Option<usize> {
        match cp.run {
            Some(m) if m.tracker_id == self.tracker_id => {
                let next = m.phases_done as usize;
                (m.failed_phase.is_none() && next < phases).then_some(next)
            }
            _ => self.takes(cp).then_some(0),
        }
    }

    /// Whether the run looks the product up in the store before it creates it (`adopt`): a
    /// publish or republish reaching a product campaignd never created there, with no create of
    /// unknown outcome (those are looked up one by one, as every product of a resumed run is).
    pub fn looks_up_first(&self, cp: &CampaignProduct, phases: usize) -> bool {
        matches!(self.action, Action::Publish | Action::Republish)
            && !self.resumed
            && self.waiting_phase(cp, phases) == Some(0)
            && cp.marketplace_info.product_id.is_none()
            && !cp.marketplace_info.create_sent
    }

    /// This run's mark on a product after it passed `done` phases (or failed in `failed`).
    fn mark(&self, cp: &CampaignProduct, done: usize, failed: Option<usize>) -> RunMark {
        let mut mark = cp
            .run
            .filter(|m| m.tracker_id == self.tracker_id)
            .unwrap_or(RunMark::new(self.tracker_id));
        mark.phases_done = mark.phases_done.max(done as u8);
        mark.failed_phase = failed.map(|f| f as u8);
        mark
    }
}

/// Whether a failed call leaves its product as it is for whoever carries on: stopped while
/// the call could still pass (a stop of the service, a force), or while the store was away
/// (the product's state is saved by the checkpoints).
fn stopped(e: &MarketError, local: &CancellationToken) -> bool {
    (e.is_retriable() && local.is_cancelled()) || matches!(e, MarketError::Held)
}

/// What a publishing action sends of a product (`None` for other actions): the digest the
/// last phase records as sent, which a later republish compares with; and whether only the
/// prices changed since it was last sent, in which case a republish sends them alone.
pub fn sending(
    action: Action,
    product: &Product,
    offer: &Offer,
    info: &MarketplaceInfo,
) -> (Option<Sent>, bool) {
    let sending =
        matches!(action, Action::Publish | Action::Republish).then(|| Sent::of(product, offer));
    let prices_only = action == Action::Republish
        && sending
            .as_ref()
            .is_some_and(|now| Sent::only_prices_differ(info.sent.as_ref(), now));
    (sending, prices_only)
}

/// The work of one connection in one run; runs without the actor so tests can drive it.
pub struct WorkerJob {
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
    pub adapter: Arc<dyn Marketplace>,
    pub tracker: Addr<TrackerActor>,
    pub scope: RunScope,
    pub connection: Connection,
    /// The run's token: cancelled on force, reset, or another worker's fail-fast.
    pub cancel: CancellationToken,
    pub retry: RetryPolicy,
    /// Keeps a write from overtaking an earlier one of unknown outcome (`settle`).
    pub settle: Settle,
}

/// A `WorkerJob` running: the job and its outcomes not yet sent to the tracker.
struct Running {
    job: WorkerJob,
    tally: std::sync::Mutex<Tally>,
    /// Products read while an earlier write to them could still land (`settle`): taken after
    /// every other product, so that their wait holds none of the run's slots meanwhile.
    later: std::sync::Mutex<Vec<CampaignProduct>>,
}

impl std::ops::Deref for Running {
    type Target = WorkerJob;

    fn deref(&self) -> &WorkerJob {
        &self.job
    }
}

/// Outcomes are sent to the tracker after this many, or this long after the last batch.
const PROGRESS_BATCH: u32 = 256;
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Outcomes counted since the last batch sent to the tracker, per phase: [successful, failed].
struct Tally {
    counts: Vec<[u64; 2]>,
    pending: u32,
    since: std::time::Instant,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            counts: Vec::new(),
            pending: 0,
            since: std::time::Instant::now(),
        }
    }

    fn add(&mut self, phase: usize, success: bool) {
        if self.counts.len() <= phase {
            self.counts.resize(phase + 1, [0, 0]);
        }
        self.counts[phase][usize::from(!success)] += 1;
        self.pending += 1;
    }

    fn take(&mut self) -> Vec<[u64; 2]> {
        self.pending = 0;
        self.since = std::time::Instant::now();
        std::mem::take(&mut self.counts)
    }
}

enum Step {
    Done(Box<CampaignProduct>),
    Failed(MarketError),
    Cancelled,
    Broken(String),
}

impl From<Patience> for Step {
    /// A store call given up because the work stopped leaves the product as it was.
    fn from(p: Patience) -> Step {
        match p {
            Patience::Stopped => Step::Cancelled,
            Patience::Failed(e) => Step::Broken(e.to_string()),
        }
    }
}

impl WorkerJob {
    pub async fn run(self) -> WorkerOutcome {
        let running = Running {
            job: self,
            tally: std::sync::Mutex::new(Tally::new()),
            later: std::sync::Mutex::new(Vec::new()),
        };
        let outcome = running.drive().await;
        running.flush_progress();
        outcome
    }
}

/// The most products one worker keeps in flight, whatever its connection's `max_in_flight` and
/// batch size: ten batches of 100 at once, or a thousand single-product requests.
const MAX_PRODUCTS_IN_FLIGHT: usize = 1024;

impl Running {
    async fn drive(&self) -> WorkerOutcome {
        let job = self;
        // A batching adapter needs a batch's worth of products per request it may have open, up
        // to a bound on what one worker holds (each product in flight holds its request and
        // answer bodies: 256 batches of 100 WooCommerce products held 682 MiB).
        let max_in_flight = self.connection.max_in_flight.max(1) as usize;
        let batch = if self.scope.action.reads_only() {
            self.adapter.read_batch_size()
        } else {
            self.adapter.batch_size()
        };
        let in_flight = (max_in_flight * batch).min(MAX_PRODUCTS_IN_FLIGHT.max(max_in_flight));
        // Cancelled by the run, or by this worker alone when its connection must stop.
        let local = self.cancel.child_token();
        let mut fail_fast = None;
        let mut stopped = None;
        let mut broken = None;
        let mut outcomes = std::pin::pin!(self
            .pending()
            .take_while(|_| futures::future::ready(!local.is_cancelled()))
            .map(|item| {
                let local = &local;
                async move {
                    match item {
                        Ok(cp) => job.carry(cp, local).await,
                        Err(e) => e.into(),
                    }
                }
            })
            .buffer_unordered(in_flight));
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Step::Done(_) | Step::Cancelled => {}
                Step::Broken(message) => {
                    broken.get_or_insert(message);
                    local.cancel();
                }
                Step::Failed(error) if error.stops_connection() => {
                    stopped.get_or_insert_with(|| self.connection_message(&error));
                    local.cancel();
                }
                Step::Failed(error) if self.scope.fail_fast => {
                    fail_fast.get_or_insert_with(|| self.connection_message(&error));
                    local.cancel();
                }
                Step::Failed(_) => {}
            }
        }
        if let Some(message) = broken {
            return WorkerOutcome::Broken(message);
        }
        if let Some(message) = fail_fast {
            return WorkerOutcome::FailFast(message);
        }
        if let Some(message) = stopped {
            return self.stop_connection(message).await;
        }
        if self.cancel.is_cancelled() {
            return WorkerOutcome::Cancelled;
        }
        WorkerOutcome::Finished
    }

    /// Takes one product through the phases it still has in this run, in order, reporting
    /// each to the tracker; products move independently, so no phase waits for another
    /// product to finish the previous one.
    async fn carry(&self, mut cp: CampaignProduct, local: &CancellationToken) -> Step {
        let phases = self.connection.system.phases(self.scope.action);
        let start = self
            .scope
            .waiting_phase(&cp, phases.len())
            .unwrap_or(phases.len());
        if self.scope.resumed {
            cp.marketplace_info.create_outcome_unknown();
        }
        for (index, phase) in phases.iter().copied().enumerate().skip(start) {
            match self.process(cp, index, phase, local).await {
                Step::Done(next) => {
                    self.progress(index, true);
                    cp = *next;
                }
                Step::Failed(error) => {
                    self.progress(index, false);
                    return Step::Failed(error);
                }
                other => return other,
            }
        }
        Step::Done(Box::new(cp))
    }

    fn connection_message(&self, error: &MarketError) -> String {
        format!(
            "{} connection '{}': {error}",
            self.connection.system.as_str(),
            self.connection.name
        )
    }

    /// Counts one outcome; the counts reach the tracker in batches (`flush_progress`).
    fn progress(&self, phase: usize, success: bool) {
        let full = {
            let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            tally.add(phase, success);
            tally.pending >= PROGRESS_BATCH || tally.since.elapsed() >= PROGRESS_EVERY
        };
        if full {
            self.flush_progress();
        }
    }

    /// Sends the counted outcomes to the tracker. Called before the worker reports done, so
    /// the tracker has every count before the run closes it.
    fn flush_progress(&self) {
        let counts = self.tally.lock().unwrap_or_else(|p| p.into_inner()).take();
        for (phase, [successful, failed]) in counts.into_iter().enumerate() {
            if successful + failed > 0 {
                self.tracker.do_send(Progress {
                    tracker_id: self.scope.tracker_id,
                    connection_id: self.connection.id,
                    phase,
                    successful,
                    failed,
                });
            }
        }
    }

    /// Up to a chunk of the run's products of this connection after product `after` that
    /// still have phases to pass, and the last product id read (the next chunk's cursor), or
    /// `None` once the connection's products are all read.
    async fn waiting_after(
        &self,
        after: Option<Id>,
    ) -> Result<Option<(Vec<CampaignProduct>, Id)>, Patience> {
        let phases = self.connection.system.phases(self.scope.action).len();
        let rows = patiently(&self.cancel, || {
            self.store.campaign_products_after(
                self.scope.campaign_id,
                self.connection.id,
                after,
                self.scope.chunk_size,
            )
        })
        .await?;
        let Some(last) = rows.last().map(|c| c.product_id) else {
            return Ok(None);
        };
        let mut waiting: Vec<CampaignProduct> = rows
            .into_iter()
            .filter(|cp| self.scope.waiting_phase(cp, phases).is_some())
            .collect();
        if self.scope.resumed {
            // A write under way when the process stopped (or its node lost the lease) may have
            // left until that moment, which was no later than now.
            for cp in &mut waiting {
                if cp.marketplace_info.unsettled_at.is_some() {
                    cp.marketplace_info.unsettled_at = Some(self.clock.now_ms());
                }
            }
        }
        let (later, mut waiting): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|cp| self.settle.open_until(&cp.marketplace_info).is_some());
        self.later
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(later);
        self.adopt(&mut waiting, phases).await?;
        Ok(Some((waiting, last)))
    }

    /// Before a chunk's creates: asks the store which of its products it already lists (a
    /// store filled by another system, or by hand) in the fewest requests its API allows, and
    /// gives each one found the remote id, with its create marked of unknown outcome, so that
    /// it is read and adopted by that id and updated instead of created again. When the store
    /// cannot be asked, every such product is looked up on its own before its create.
    async fn adopt(&self, chunk: &mut [CampaignProduct], phases: usize) -> Result<(), Patience> {
        if !self.adapter.finds_listed() {
            return Ok(());
        }
        let mut creating = Vec::new();
        for (at, cp) in chunk.iter().enumerate() {
            if !self.scope.looks_up_first(cp, phases) {
                continue;
            }
            let read = patiently(&self.cancel, || {
                self.store.product(self.scope.tenant_id, cp.product_id)
            })
            .await?;
            if let Some(product) = read {
                creating.push((at, product));
            }
        }
        if creating.is_empty() {
            return Ok(());
        }
        let products: Vec<&Product> = creating.iter().map(|(_, p)| p).collect();
        let listed = with_retries(&self.retry, &self.cancel, async || {
            self.adapter.find_listed(&products).await
        })
        .await;
        let listed = match listed {
            Ok(listed) => Some(listed),
            Err(e) => {
                tracing::warn!(
                    connection_id = self.connection.id,
                    error = %e,
                    "could not ask the store which products it lists; each is looked up alone"
                );
                None
            }
        };
        for (at, product) in &creating {
            let cp = &mut chunk[*at];
            let found = match &listed {
                Some(listed) => match listed.get(&product.id) {
                    Some(remote) => Some(remote.clone()),
                    None => continue,
                },
                None => None,
            };
            cp.marketplace_info.product_id = found;
            cp.marketplace_info.create_outcome_unknown();
            patiently(&self.cancel, || self.store.put_campaign_product(cp)).await?;
        }
        Ok(())
    }

    /// The run's products of this connection that still have phases to pass, read in chunks.
    /// Those whose earlier write may still land come last (`later`).
    fn pending(&self) -> impl Stream<Item = Result<CampaignProduct, Patience>> + '_ {
        let later = stream::once(async move {
            let later = std::mem::take(&mut *self.later.lock().unwrap_or_else(|p| p.into_inner()));
            stream::iter(later.into_iter().map(Ok))
        })
        .flatten();
        stream::unfold(Some(None::<Id>), move |cursor| async move {
            let after = cursor?;
            match self.waiting_after(after).await {
                Ok(None) => None,
                Ok(Some((rows, last))) => {
                    let items: Vec<_> = rows.into_iter().map(Ok).collect();
                    Some((stream::iter(items), Some(Some(last))))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
        .chain(later)
    }

    async fn process(
        &self,
        mut cp: CampaignProduct,
        index: usize,
        phase: Phase,
        local: &CancellationToken,
    ) -> Step {
        if local.is_cancelled() {
            return Step::Cancelled;
        }
        let product = match patiently(local, || {
            self.store.product(self.scope.tenant_id, cp.product_id)
        })
        .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                let gone = MarketError::Local("the product no longer exists".to_string());
                return self.fail(cp, index, gone, local).await;
            }
            Err(e) => return e.into(),
        };
        let store = self.store.clone();
        let base = cp.clone();
        let stop = local.clone();
        let checkpoint =
            move |info: &MarketplaceInfo| -> BoxFuture<'static, Result<(), MarketError>> {
                let mut saved = base.clone();
                saved.marketplace_info = info.clone();
                let store = Arc::clone(&store);
                let stop = stop.clone();
                Box::pin(async move {
                    match patiently(&stop, || store.put_campaign_product(&saved)).await {
                        Ok(()) => Ok(()),
                        Err(Patience::Stopped) => Err(MarketError::Held),
                        Err(Patience::Failed(e)) => {
                            Err(MarketError::Local(format!("could not save progress: {e}")))
                        }
                    }
                })
            };
        let offer = Offer::of(&product, self.scope.prices.campaign_price(&cp));
        let action = self.scope.action;
        if action.reads_only() {
            return self.check_drift(cp, index, &product, offer, local).await;
        }
        if action == Action::Reconcile {
            return self
                .repair(cp, index, &product, offer, &checkpoint, local)
                .await;
        }
        let mut info = cp.marketplace_info.clone();
        let (sending, prices_only) = sending(action, &product, &offer, &cp.marketplace_info);
        let result = with_retries(&self.retry, local, async || {
            let call = PhaseCall {
                action,
                phase,
                product: &product,
                offer,
                prices_only,
                info: &mut info,
                checkpoint: &checkpoint,
            };
            apply_once(self.adapter.as_ref(), call, &self.settle).await
        })
        .await;
        let last = index + 1 == self.connection.system.phases(action).len();
        // The last request may still land: once it can no longer, the store is read and
        // brought to what the action meant, like a drift repair.
        let result = match (result, action.product_result()) {
            (Err(e), Outcome::Becomes(status))
                if last && e.may_land_late() && !stopped(&e, local) =>
            {
                let verified = self
                    .verify(&product, offer, status, &mut info, &checkpoint, local)
                    .await;
                verified.map_err(|why| match why {
                    Some(later) => later,
                    None => e,
                })
            }
            (result, _) => result,
        };
        cp.marketplace_info = info;
        if let (true, true, Some(sent)) = (result.is_ok(), last, sending) {
            // What the marketplace now has, for the next republish to compare with.
            cp.marketplace_info.sent = Some(sent);
        }
        match result {
            Ok(()) => self.succeed(cp, index, local).await,
            Err(e) if stopped(&e, local) => Step::Cancelled,
            Err(e) => self.fail(cp, index, e, local).await,
        }
    }

    /// After the action's last request went unanswered and its retries ran out: waits until
    /// that request can no longer land (its settle window), reads the product at the store,
    /// and repairs what differs from `status` with the ordinary calls, each under the
    /// exactly-once rules. `Err(None)`: the store could not be read, and the product keeps the
    /// action's own error (and its mark, so the next action waits as well).
    async fn verify(
        &self,
        product: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
        local: &CancellationToken,
    ) -> Result<(), Option<MarketError>> {
        self.settle.wait(info).await.map_err(Some)?;
        let read = with_retries(&self.retry, local, async || {
            self.adapter.drift(product, offer, status, info).await
        })
        .await;
        let differences = match read {
            Ok(differences) => differences,
            Err(e) if stopped(&e, local) => return Err(Some(e)),
            Err(e) => {
                tracing::info!(
                    connection_id = self.connection.id,
                    product_id = product.id,
                    error = %e,
                    "could not read a product whose last request went unanswered"
                );
                return Err(None);
            }
        };
        // Whatever was under way has landed, or never will.
        info.unsettled_at = None;
        tracing::info!(
            connection_id = self.connection.id,
            product_id = product.id,
            differences = differences.len(),
            "read a product whose last request went unanswered, once it had settled"
        );
        let calls = drift::repairs(status, &differences, info);
        checkpoint(info).await.map_err(Some)?;
        self.apply_repairs(&calls, product, offer, info, checkpoint, local)
            .await
            .map_err(Some)
    }

    /// The ordinary calls that bring a product back to campaignd's state (`drift::repairs`),
    /// one after the other, each sent whole and under the exactly-once rules.
    async fn apply_repairs(
        &self,
        calls: &[Action],
        product: &Product,
        offer: Offer,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
        local: &CancellationToken,
    ) -> Result<(), MarketError> {
        for &action in calls {
            // Sent whole: what differs at the marketplace may be anything but the prices.
            let (sent, _) = sending(action, product, &offer, info);
            with_retries(&self.retry, local, async || {
                let call = PhaseCall {
                    action,
                    phase: Phase::Processing,
                    product,
                    offer,
                    prices_only: false,
                    info: &mut *info,
                    checkpoint,
                };
                apply_once(self.adapter.as_ref(), call, &self.settle).await
            })
            .await?;
            if let Some(sent) = sent {
                info.sent = Some(sent);
            }
        }
        Ok(())
    }

    /// A reconcile of one product: the ordinary calls of `drift::repairs`, one after the other,
    /// each under the exactly-once rules (a product missing remotely is looked up by SKU
    /// before it is created again); the differences they repaired move to the check's
    /// `repaired`. A call that fails fails the product as in any action, with its reason.
    async fn repair(
        &self,
        mut cp: CampaignProduct,
        index: usize,
        product: &Product,
        offer: Offer,
        checkpoint: Checkpoint<'_>,
        local: &CancellationToken,
    ) -> Step {
        let Some(mut check) = cp.drift.clone() else {
            return self.succeed(cp, index, local).await;
        };
        // The copies campaignd's unanswered creates made go first, each removed by the
        // marketplace's own delete of its id (a copy of nothing campaignd keeps, so nothing
        // of it is saved); then the product itself is repaired.
        let unanswered = cp.marketplace_info.unanswered_creates;
        let copies = drift::removable(&check.differences, unanswered);
        for (sku, id) in &copies {
            let mut copy = drift::copy_info(product, sku, id);
            let removed = with_retries(&self.retry, local, async || {
                let call = PhaseCall {
                    action: Action::Delete,
                    phase: Phase::Processing,
                    product,
                    offer,
                    prices_only: false,
                    info: &mut copy,
                    checkpoint: &|_| Box::pin(async { Ok(()) }),
                };
                self.adapter.apply(call).await
            })
            .await;
            match removed {
                Ok(()) => {}
                Err(e) if stopped(&e, local) => return Step::Cancelled,
                Err(e) => return self.fail(cp, index, e, local).await,
            }
        }
        let mut info = cp.marketplace_info.clone();
        if !copies.is_empty() {
            info.unanswered_creates = 0;
        }
        let calls = drift::repairs(cp.status, &check.differences, &mut info);
        if info != cp.marketplace_info {
            if let Err(e) = checkpoint(&info).await {
                cp.marketplace_info = info;
                return self.fail(cp, index, e, local).await;
            }
        }
        let result = self
            .apply_repairs(&calls, product, offer, &mut info, checkpoint, local)
            .await;
        cp.marketplace_info = info;
        match result {
            Ok(()) => {}
            Err(e) if stopped(&e, local) => return Step::Cancelled,
            Err(e) => return self.fail(cp, index, e, local).await,
        }
        // Copies campaignd cannot tell from the shop's stay reported.
        let (kept, repaired) = std::mem::take(&mut check.differences)
            .into_iter()
            .partition(|d| {
                matches!(d, drift::Difference::Copies { .. }) && !d.removes_with(unanswered)
            });
        check.differences = kept;
        check.repaired = repaired;
        cp.drift = Some(check);
        self.succeed(cp, index, local).await
    }

    /// A drift check of one product: its differences (or why it could not be read) are kept
    /// with it, and its status stays as it is.
    async fn check_drift(
        &self,
        mut cp: CampaignProduct,
        index: usize,
        product: &Product,
        offer: Offer,
        local: &CancellationToken,
    ) -> Step {
        let result = with_retries(&self.retry, local, async || {
            self.adapter
                .drift(product, offer, cp.status, &cp.marketplace_info)
                .await
        })
        .await;
        let check = |differences, error| DriftCheck {
            tracker_id: self.scope.tracker_id,
            checked_at: self.clock.now_ms(),
            differences,
            error,
            repaired: Vec::new(),
        };
        match result {
            Ok(differences) => {
                cp.drift = Some(check(differences, None));
                self.succeed(cp, index, local).await
            }
            Err(e) if stopped(&e, local) => Step::Cancelled,
            Err(e) => self.fail(cp, index, e, local).await,
        }
    }

    async fn succeed(
        &self,
        mut cp: CampaignProduct,
        index: usize,
        stop: &CancellationToken,
    ) -> Step {
        let now = self.clock.now_ms();
        let phases = self.connection.system.phases(self.scope.action).len();
        cp.run = Some(self.scope.mark(&cp, index + 1, None));
        cp.updated_at = now;
        let outcome = self.scope.action.product_result();
        let remove = index + 1 == phases && outcome == Outcome::Removed;
        if index + 1 == phases {
            if let Outcome::Becomes(status) = outcome {
                cp.status = status;
                cp.error_message = None;
                if status == ProductStatus::Published {
                    cp.published_at = Some(now);
                }
            }
        }
        let saved = patiently(stop, || async {
            if remove {
                self.store
                    .remove_campaign_product(cp.campaign_id, cp.connection_id, cp.product_id)
                    .await
            } else {
                self.store.put_campaign_product(&cp).await
            }
        })
        .await;
        match saved {
            Ok(()) => Step::Done(Box::new(cp)),
            Err(e) => e.into(),
        }
    }

    async fn fail(
        &self,
        mut cp: CampaignProduct,
        index: usize,
        error: MarketError,
        stop: &CancellationToken,
    ) -> Step {
        tracing::info!(
            campaign_id = cp.campaign_id,
            connection_id = cp.connection_id,
            product_id = cp.product_id,
            error = %error,
            "product errored"
        );
        if self.scope.action.reads_only() {
            // A product that could not be read is as it was; the check says why.
            cp.drift = Some(DriftCheck {
                tracker_id: self.scope.tracker_id,
                checked_at: self.clock.now_ms(),
                differences: Vec::new(),
                error: Some(error.to_string()),
                repaired: Vec::new(),
            });
        } else {
            cp.status = ProductStatus::Errored;
            cp.error_message = Some(error.to_string());
        }
        cp.updated_at = self.clock.now_ms();
        cp.run = Some(self.scope.mark(&cp, index, Some(index)));
        match patiently(stop, || self.store.put_campaign_product(&cp)).await {
            Ok(()) => Step::Failed(error),
            Err(e) => e.into(),
        }
    }

    /// The connection refused us: every product of the run still waiting on it is errored with
    /// the message, so none is left in between and the run can end.
    async fn stop_connection(&self, message: String) -> WorkerOutcome {
        let tracker_id = self.scope.tracker_id;
        let phases = self.connection.system.phases(self.scope.action).len();
        let mut after = None;
        loop {
            let rows = match self.waiting_after(after).await {
                Ok(None) => break,
                Ok(Some((rows, last))) => {
                    after = Some(last);
                    rows
                }
                Err(Patience::Stopped) => return WorkerOutcome::Cancelled,
                Err(Patience::Failed(e)) => return WorkerOutcome::Broken(e.to_string()),
            };
            for cp in rows {
                let phase = self.scope.waiting_phase(&cp, phases).unwrap_or(0);
                let error = MarketError::Local(message.clone());
                if let Step::Broken(e) = self.fail(cp, phase, error, &self.cancel).await {
                    return WorkerOutcome::Broken(e);
                }
                self.progress(phase, false);
            }
        }
        self.tracker.do_send(ConnectionFailed {
            tracker_id,
            connection_id: self.connection.id,
            message: message.clone(),
        });
        WorkerOutcome::ConnectionStopped(message)
    }
}

/// A worker ended its part of the run: what it reports to whoever started it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerDone {
    pub connection_id: Id,
    pub outcome: WorkerOutcome,
}

/// The actor around a `WorkerJob`: runs it once and reports to its run.
pub struct Worker {
    job: Option<WorkerJob>,
    run: Recipient<WorkerDone>,
    connection_id: Id,
}

impl Worker {
    pub fn new(job: WorkerJob, run: Recipient<WorkerDone>) -> Worker {
        Worker {
            connection_id: job.connection.id,
            job: Some(job),
            run,
        }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(job) = self.job.take() else {
            return;
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(job.run()).map(|outcome, act, ctx| {
                act.run.do_send(WorkerDone {
                    connection_id: act.connection_id,
                    outcome,
                });
                ctx.stop();
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::MarketplaceInfo;

    fn scope(action: Action, products: Option<Vec<Id>>) -> RunScope {
        RunScope {
            tenant_id: 1,
            campaign_id: 1,
            tracker_id: 7,
            action,
            chunk_size: 10,
            fail_fast: false,
            product_ids: products.map(Into::into),
            resumed: false,
            retry: false,
            prices: PriceMode::Regular,
        }
    }

    fn cp(product_id: Id, status: ProductStatus, run: Option<RunMark>) -> CampaignProduct {
        CampaignProduct {
            campaign_id: 1,
            connection_id: 2,
            product_id,
            status,
            marketplace_info: MarketplaceInfo::default(),
            error_message: None,
            published_at: None,
            updated_at: 0,
            run,
            sale_price: None,
            presale_price: None,
            drift: None,
        }
    }

    #[test]
    fn a_product_joins_the_run_in_phase_zero_only_if_the_rule_and_scope_take_it() {
        let s = scope(Action::Publish, Some(vec![1, 3]));
        let old_run = Some(RunMark::new(3));
        assert_eq!(
            s.waiting_phase(&cp(1, ProductStatus::Pending, old_run), 3),
            Some(0)
        );
        assert_eq!(
            s.waiting_phase(&cp(2, ProductStatus::Pending, None), 3),
            None
        );
        assert_eq!(
            s.waiting_phase(&cp(3, ProductStatus::Published, None), 3),
            None
        );
    }

    #[test]
    fn a_member_waits_in_its_next_phase_until_it_is_done_or_failed() {
        let s = scope(Action::Publish, None);
        let mut mark = RunMark::new(7);
        mark.phases_done = 1;
        // Still pending between phases: its own mark, not the rule, decides.
        assert_eq!(
            s.waiting_phase(&cp(1, ProductStatus::Pending, Some(mark)), 3),
            Some(1)
        );
        mark.phases_done = 3;
        assert_eq!(
            s.waiting_phase(&cp(1, ProductStatus::Pending, Some(mark)), 3),
            None
        );
        mark.phases_done = 1;
        mark.failed_phase = Some(1);
        assert_eq!(
            s.waiting_phase(&cp(1, ProductStatus::Errored, Some(mark)), 3),
            None
        );
    }

    #[test]
    fn marks_keep_progress_and_record_the_failed_phase() {
        let s = scope(Action::Publish, None);
        let fresh = cp(1, ProductStatus::Pending, Some(RunMark::new(3)));
        let m = s.mark(&fresh, 1, None);
        assert_eq!((m.tracker_id, m.phases_done, m.failed_phase), (7, 1, None));
        let failed = s.mark(&cp(1, ProductStatus::Pending, Some(m)), 1, Some(1));
        assert_eq!((failed.phases_done, failed.failed_phase), (1, Some(1)));
    }
}
