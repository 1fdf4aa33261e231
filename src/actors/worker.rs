//! The MarketplaceWorker actor: one per connection in a run. It walks the run's phases in order
//! and, in each, streams the products still pending in that phase from the store in chunks,
//! carrying them through the connection's adapter with a bounded number in flight (the
//! connection's limiter paces the requests). Each product's new state is stored right after its
//! call; the tracker is told of every outcome.

use std::sync::Arc;

use actix::prelude::*;
use futures::{stream, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::run::{CampaignRun, WorkerDone};
use super::tracker::{ConnectionFailed, Progress, TrackerActor};
use crate::clock::Clock;
use crate::domain::{
    Action, CampaignProduct, Connection, Id, MarketplaceInfo, Phase, ProductStatus,
};
use crate::marketplaces::{MarketError, Marketplace, PhaseCall};
use crate::store::{Store, StoreError};

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

/// What a run asks of every worker.
#[derive(Clone)]
pub struct RunScope {
    pub tenant_id: Id,
    pub campaign_id: Id,
    pub tracker_id: Id,
    pub action: Action,
    pub chunk_size: usize,
    pub fail_fast: bool,
}

/// The work of one connection in one run; runs without the actor so tests can drive it.
pub struct WorkerJob {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub adapter: Arc<dyn Marketplace>,
    pub tracker: Addr<TrackerActor>,
    pub scope: RunScope,
    pub connection: Connection,
    /// The run's token: cancelled on force, reset, or another worker's fail-fast.
    pub cancel: CancellationToken,
}

enum Step {
    Done,
    Failed(MarketError),
    Cancelled,
    Broken(String),
}

impl WorkerJob {
    pub async fn run(self) -> WorkerOutcome {
        let job = &self;
        let phases = self.connection.system.phases(self.scope.action);
        let in_flight = self.connection.max_in_flight.max(1) as usize;
        // Cancelled by the run, or by this worker alone when its connection must stop.
        let local = self.cancel.child_token();
        for (index, phase) in phases.iter().copied().enumerate() {
            let mut fail_fast = None;
            let mut stopped = None;
            let mut broken = None;
            let mut steps = std::pin::pin!(self
                .pending(index)
                .take_while(|_| futures::future::ready(!local.is_cancelled()))
                .map(|item| {
                    let local = &local;
                    async move {
                        match item {
                            Ok(cp) => job.process(cp, index, phase, local).await,
                            Err(e) => Step::Broken(e.to_string()),
                        }
                    }
                })
                .buffer_unordered(in_flight));
            while let Some(step) = steps.next().await {
                match step {
                    Step::Done => self.progress(index, true),
                    Step::Cancelled => {}
                    Step::Broken(message) => {
                        broken.get_or_insert(message);
                        local.cancel();
                    }
                    Step::Failed(error) => {
                        self.progress(index, false);
                        if error.stops_connection() {
                            stopped.get_or_insert_with(|| self.connection_message(&error));
                            local.cancel();
                        } else if self.scope.fail_fast {
                            fail_fast.get_or_insert_with(|| self.connection_message(&error));
                            local.cancel();
                        }
                    }
                }
            }
            if let Some(message) = broken {
                return WorkerOutcome::Broken(message);
            }
            if let Some(message) = fail_fast {
                return WorkerOutcome::FailFast(message);
            }
            if let Some(message) = stopped {
                return self.stop_connection(message);
            }
            if self.cancel.is_cancelled() {
                return WorkerOutcome::Cancelled;
            }
        }
        WorkerOutcome::Finished
    }

    fn connection_message(&self, error: &MarketError) -> String {
        format!(
            "{} connection '{}': {error}",
            self.connection.system.as_str(),
            self.connection.name
        )
    }

    fn progress(&self, phase: usize, success: bool) {
        self.tracker.do_send(Progress {
            tracker_id: self.scope.tracker_id,
            connection_id: self.connection.id,
            phase,
            success,
        });
    }

    /// The run's products of this connection still pending in phase `index`, read in chunks.
    fn pending(
        &self,
        index: usize,
    ) -> impl Stream<Item = Result<CampaignProduct, StoreError>> + '_ {
        let tracker_id = self.scope.tracker_id;
        let phase = index as u8;
        stream::unfold(Some(None::<Id>), move |cursor| async move {
            let after = cursor?;
            let chunk = self.store.campaign_products_after(
                self.scope.campaign_id,
                self.connection.id,
                after,
                self.scope.chunk_size,
                |cp| cp.run.is_some_and(|m| m.pending_in(tracker_id, phase)),
            );
            match chunk {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = rows.last().map(|c| c.product_id);
                    let items: Vec<_> = rows.into_iter().map(Ok).collect();
                    Some((stream::iter(items), Some(next)))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
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
        let product = match self.store.product(self.scope.tenant_id, cp.product_id) {
            Ok(Some(p)) => p,
            Ok(None) => {
                let gone = MarketError::Local("the product no longer exists".to_string());
                return self.fail(cp, index, gone);
            }
            Err(e) => return Step::Broken(e.to_string()),
        };
        let store = self.store.clone();
        let base = cp.clone();
        let checkpoint = move |info: &MarketplaceInfo| -> Result<(), MarketError> {
            let mut saved = base.clone();
            saved.marketplace_info = info.clone();
            store
                .put_campaign_product(&saved)
                .map_err(|e| MarketError::Local(format!("could not save progress: {e}")))
        };
        let mut info = cp.marketplace_info.clone();
        let result = self
            .adapter
            .apply(PhaseCall {
                action: self.scope.action,
                phase,
                product: &product,
                info: &mut info,
                checkpoint: &checkpoint,
            })
            .await;
        cp.marketplace_info = info;
        match result {
            Ok(()) => self.succeed(cp, index),
            Err(e) => self.fail(cp, index, e),
        }
    }

    fn succeed(&self, mut cp: CampaignProduct, index: usize) -> Step {
        let now = self.clock.now_ms();
        let phases = self.connection.system.phases(self.scope.action).len();
        if let Some(mark) = cp.run.as_mut() {
            mark.phases_done = (index + 1) as u8;
        }
        cp.updated_at = now;
        let saved = if index + 1 < phases {
            self.store.put_campaign_product(&cp)
        } else {
            match self.scope.action.product_result() {
                Some(status) => {
                    cp.status = status;
                    cp.error_message = None;
                    if status == ProductStatus::Published {
                        cp.published_at = Some(now);
                    }
                    self.store.put_campaign_product(&cp)
                }
                None => self.store.remove_campaign_product(
                    cp.campaign_id,
                    cp.connection_id,
                    cp.product_id,
                ),
            }
        };
        match saved {
            Ok(()) => Step::Done,
            Err(e) => Step::Broken(e.to_string()),
        }
    }

    fn fail(&self, mut cp: CampaignProduct, index: usize, error: MarketError) -> Step {
        tracing::info!(
            campaign_id = cp.campaign_id,
            connection_id = cp.connection_id,
            product_id = cp.product_id,
            error = %error,
            "product errored"
        );
        cp.status = ProductStatus::Errored;
        cp.error_message = Some(error.to_string());
        cp.updated_at = self.clock.now_ms();
        if let Some(mark) = cp.run.as_mut() {
            mark.failed_phase = Some(index as u8);
        }
        match self.store.put_campaign_product(&cp) {
            Ok(()) => Step::Failed(error),
            Err(e) => Step::Broken(e.to_string()),
        }
    }

    /// The connection refused us: every product of the run still waiting on it is errored with
    /// the message, so none is left in between and the run can end.
    fn stop_connection(&self, message: String) -> WorkerOutcome {
        let tracker_id = self.scope.tracker_id;
        let phases = self.connection.system.phases(self.scope.action).len();
        let mut after = None;
        loop {
            let rows = self.store.campaign_products_after(
                self.scope.campaign_id,
                self.connection.id,
                after,
                self.scope.chunk_size,
                |cp| {
                    cp.run.is_some_and(|m| {
                        m.tracker_id == tracker_id
                            && m.failed_phase.is_none()
                            && (m.phases_done as usize) < phases
                    })
                },
            );
            let rows = match rows {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => rows,
                Err(e) => return WorkerOutcome::Broken(e.to_string()),
            };
            after = rows.last().map(|c| c.product_id);
            for cp in rows {
                let phase = cp.run.map(|m| m.phases_done as usize).unwrap_or(0);
                let error = MarketError::Local(message.clone());
                if let Step::Broken(e) = self.fail(cp, phase, error) {
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

/// The actor around a `WorkerJob`: runs it once and reports to its run.
pub struct Worker {
    job: Option<WorkerJob>,
    run: Addr<CampaignRun>,
    connection_id: Id,
}

impl Worker {
    pub fn new(job: WorkerJob, run: Addr<CampaignRun>) -> Worker {
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
