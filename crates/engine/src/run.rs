//! The CampaignRun actor: one per action on each node that works on it. The Supervisor hands it
//! the run's connections this node holds (`AddWork`); it starts a worker for each, renews the
//! campaign lock while it has work, stops its workers when the run is asked to stop, and when a
//! worker ends it writes that connection's work item done. Whoever ends a run's last item closes
//! its tracker (which also sets the campaign's status and releases the lock), so a run ends
//! even when the node that took the action is gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::tracker::{close_if_ended, Note, Track, TrackerActor, Untrack, WriteNow};
use super::worker::{RunScope, Worker, WorkerDone, WorkerJob, WorkerOutcome};
use super::Deps;
use domain::{Action, ConnProgress, Connection, Id, Tracker};
use store::{Signal, StoreError};

/// Where a run's work on one connection went, for whoever hands the work out.
pub trait WorkSink: Send + Sync {
    /// This node finished its part of the run on `connection_id`; `open` when it let the work
    /// go unfinished (a stop, a lost lease) for whoever holds the connection next.
    fn work_ended(&self, tracker_id: Id, connection_id: Id, open: bool);
}

pub struct CampaignRun {
    deps: Deps,
    tracker: Addr<TrackerActor>,
    sink: Arc<dyn WorkSink>,
    scope: RunScope,
    /// Cancelled when the run stops here; each worker has a child token of its own.
    cancel: CancellationToken,
    /// The workers of this node, by connection.
    workers: HashMap<Id, CancellationToken>,
    /// Connections whose lease this node lost: their work stays open for the next holder.
    released: HashSet<Id>,
    /// Who is waiting for the local workers to end after a suspend.
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// The service is stopping: the work ends here without being marked done, so that the
    /// next start (or another node) resumes it.
    suspending: bool,
    /// The watchdog's last look: products-phases processed, and since when that number holds.
    watched: Option<(u64, tokio::time::Instant)>,
}

impl CampaignRun {
    pub fn new(
        deps: Deps,
        tracker: Addr<TrackerActor>,
        sink: Arc<dyn WorkSink>,
        scope: RunScope,
    ) -> CampaignRun {
        CampaignRun {
            deps,
            tracker,
            sink,
            scope,
            cancel: CancellationToken::new(),
            workers: HashMap::new(),
            released: HashSet::new(),
            stop_waiters: Vec::new(),
            suspending: false,
            watched: None,
        }
    }

    /// The scope of a run, from its tracker.
    pub fn scope_of(t: &Tracker) -> RunScope {
        RunScope {
            tenant_id: t.tenant_id,
            campaign_id: t.campaign_id,
            tracker_id: t.id,
            action: t.action,
            chunk_size: t.metadata.chunk_size.max(1) as usize,
            fail_fast: t.metadata.fail_fast,
            product_ids: (!t.metadata.product_ids.is_empty())
                .then(|| t.metadata.product_ids.clone().into()),
            resumed: false,
            retry: t.metadata.retry,
            prices: t.metadata.prices,
        }
    }

    /// Fails the run when its tracker has not moved for `runs.stall_ms`: whatever the
    /// marketplaces do, a run always ends.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.cancel.is_cancelled() || self.workers.is_empty() {
            return;
        }
        let store = Arc::clone(&self.deps.store);
        let id = self.scope.tracker_id;
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move { store.tracker(id).await })
                .map(|read, act, ctx| act.look(read, ctx)),
        );
    }

    /// The watchdog's look at the stored tracker.
    fn look(&mut self, read: Result<Option<Tracker>, StoreError>, ctx: &mut Context<Self>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let processed = match read {
            Ok(Some(t)) => t
                .connections
                .iter()
                .flat_map(|c| c.phases.iter())
                .map(|p| p.processed())
                .sum::<u64>(),
            Ok(None) => return,
            Err(error) => {
                tracing::error!(tracker_id = self.scope.tracker_id, %error, "watchdog could not read the tracker");
                return;
            }
        };
        let now = tokio::time::Instant::now();
        match self.watched {
            Some((seen, since)) if seen == processed => {
                let stalled = now.duration_since(since);
                if stalled >= self.deps.runs.stall() {
                    let reason = format!(
                        "no progress for {} s: the marketplaces stopped answering; the run was stopped by the watchdog",
                        stalled.as_secs()
                    );
                    tracing::warn!(tracker_id = self.scope.tracker_id, reason = %reason, "run stalled");
                    self.stop_everywhere(reason, ctx);
                }
            }
            _ => self.watched = Some((processed, now)),
        }
    }

    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        if self.workers.is_empty() {
            return;
        }
        let expires = self.deps.clock.now_ms() + self.deps.runs.lease().as_millis() as i64;
        let store = Arc::clone(&self.deps.store);
        let (campaign, tracker) = (self.scope.campaign_id, self.scope.tracker_id);
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                store.renew_lock(campaign, tracker, expires).await
            })
            .map(|renewed, act, _ctx| act.renewed(renewed)),
        );
    }

    fn renewed(&mut self, renewed: Result<bool, StoreError>) {
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    campaign_id = self.scope.campaign_id,
                    tracker_id = self.scope.tracker_id,
                    "lost the campaign lock; stopping"
                );
                self.cancel.cancel();
            }
            Err(error) => tracing::error!(
                campaign_id = self.scope.campaign_id,
                %error,
                "could not renew the campaign lock"
            ),
        }
    }

    /// Stops the run on every node: its items are asked to stop (and the reason logged on the
    /// tracker), the other nodes are told, and this node's workers stop between calls.
    fn stop_everywhere(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.cancel.cancel();
        let store = Arc::clone(&self.deps.store);
        let tracker = self.scope.tracker_id;
        let now = self.deps.clock.now_ms();
        ctx.spawn(actix::fut::wrap_future(async move {
            if let Err(error) = store.cancel_run(tracker, &reason, now).await {
                tracing::error!(tracker_id = tracker, %error, "could not stop the run");
            }
            let _ = store.signal(Signal::Work).await;
        }));
    }

    /// Starts a worker on one connection, once its progress so far is counted.
    fn start_worker(&mut self, work: AddWork, ctx: &mut Context<Self>) {
        let connection = work.connection;
        let token = self.cancel.child_token();
        self.workers.insert(connection.id, token.clone());
        let mut scope = self.scope.clone();
        scope.resumed = work.resumed;
        let store = Arc::clone(&self.deps.store);
        let tracker = work.tracker;
        let event = work.resumed.then(|| {
            if store.shared() {
                format!(
                    "resumed by node {} where its last holder stopped",
                    self.deps.instance
                )
            } else {
                "resumed after the service restarted".to_string()
            }
        });
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(count_progress(store, tracker, connection.id))
                .map(move |counted, act, ctx| {
                    let (tracker, progress) = match counted {
                        Ok(counted) => counted,
                        Err(error) => {
                            tracing::error!(tracker_id = act.scope.tracker_id, %error, "could not count the run's progress");
                            // Left open for the next look.
                            act.workers.remove(&connection.id);
                            act.sink.work_ended(act.scope.tracker_id, connection.id, true);
                            return;
                        }
                    };
                    act.tracker.do_send(Track {
                        tracker,
                        progress,
                        event,
                    });
                    let job = WorkerJob {
                        store: Arc::clone(&act.deps.store),
                        clock: Arc::clone(&act.deps.clock),
                        adapter: act.deps.registry.adapter(
                            &connection,
                            token.clone(),
                            marketplaces::turns::Turn {
                                run: act.scope.tracker_id,
                                urgent: act.scope.action.is_protective(),
                            },
                        ),
                        tracker: act.tracker.clone(),
                        scope,
                        connection: connection.clone(),
                        settle: marketplaces::Settle {
                            clock: Arc::clone(&act.deps.clock),
                            window: act.deps.runs.settle(),
                            store: Arc::clone(&act.deps.store),
                            metrics: Arc::clone(&act.deps.metrics),
                            labels: metrics::Metrics::conn(
                                connection.system.as_str(),
                                connection.id,
                            ),
                            stop: token.clone(),
                        },
                        cancel: token,
                        retry: act.deps.runs.retry(),
                    };
                    let run = ctx.address().recipient();
                    match act.deps.worker_threads.next() {
                        Some(arbiter) => {
                            Worker::start_in_arbiter(arbiter, move |_| Worker::new(job, run));
                        }
                        None => {
                            Worker::new(job, run).start();
                        }
                    }
                }),
        );
    }

    fn wake_waiters(&mut self) {
        if self.workers.is_empty() {
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// A run's tracker and one connection's progress in it, counted again from the products'
/// marks, which are stored with each product's state (the tracker's own counts may lag them).
/// Deleted products leave no record, so a delete keeps the counts the tracker has.
async fn count_progress(
    store: store::SharedStore,
    tracker: Id,
    connection: Id,
) -> Result<(Tracker, ConnProgress), StoreError> {
    let t = store.tracker(tracker).await?.ok_or(StoreError::Missing {
        kind: "tracker",
        id: tracker,
    })?;
    let mut progress = t
        .connections
        .iter()
        .find(|c| c.connection_id == connection)
        .cloned()
        .ok_or(StoreError::Missing {
            kind: "tracker connection",
            id: connection,
        })?;
    if t.action == Action::Delete {
        return Ok((t, progress));
    }
    for p in &mut progress.phases {
        p.successful = 0;
        p.failed = 0;
        p.skipped = 0;
    }
    let mut after = None;
    loop {
        let rows = store
            .campaign_products_after(t.campaign_id, connection, after, 1000)
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.product_id);
        for cp in rows {
            let Some(mark) = cp.run.filter(|m| m.tracker_id == t.id) else {
                continue;
            };
            for phase in 0..mark.phases_done as usize {
                progress.record(phase, 1, 0);
            }
            if let Some(failed) = mark.failed_phase {
                progress.record(failed as usize, 0, 1);
            }
        }
    }
    Ok((t, progress))
}

impl Actor for CampaignRun {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = self.deps.runs.lease() / 3;
        ctx.run_interval(every, |act, ctx| act.renew_lease(ctx));
        let look = (self.deps.runs.stall() / 4).max(std::time::Duration::from_millis(50));
        ctx.run_interval(look, |act, ctx| act.watch(ctx));
    }
}

/// This node holds `connection` and takes its part of the run up; `resumed` when someone took
/// it up before (a create may have been sent whose outcome nobody stored).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddWork {
    pub connection: Connection,
    pub tracker: Id,
    pub resumed: bool,
}

impl Handler<AddWork> for CampaignRun {
    type Result = ();

    fn handle(&mut self, msg: AddWork, ctx: &mut Self::Context) {
        if self.workers.contains_key(&msg.connection.id) {
            return;
        }
        if self.cancel.is_cancelled() {
            // Stopping here: the work stays open for whoever looks next.
            self.sink
                .work_ended(self.scope.tracker_id, msg.connection.id, true);
            return;
        }
        self.released.remove(&msg.connection.id);
        self.start_worker(msg, ctx);
    }
}

impl Handler<WorkerDone> for CampaignRun {
    type Result = ();

    fn handle(&mut self, msg: WorkerDone, ctx: &mut Self::Context) {
        tracing::debug!(
            tracker_id = self.scope.tracker_id,
            connection_id = msg.connection_id,
            outcome = ?msg.outcome,
            "worker done"
        );
        let connection_id = msg.connection_id;
        let tracker_id = self.scope.tracker_id;
        let failure = match msg.outcome {
            WorkerOutcome::FailFast(reason) | WorkerOutcome::Broken(reason) => {
                self.stop_everywhere(reason.clone(), ctx);
                Some(reason)
            }
            WorkerOutcome::Cancelled
                if self.suspending || self.released.contains(&connection_id) =>
            {
                // Not done: the work stays open for the next holder of the connection.
                self.workers.remove(&connection_id);
                let untracked = self.tracker.send(Untrack {
                    tracker_id,
                    connection_id,
                });
                let sink = Arc::clone(&self.sink);
                ctx.wait(
                    actix::fut::wrap_future::<_, Self>(untracked).map(move |_, act, _ctx| {
                        sink.work_ended(tracker_id, connection_id, true);
                        act.wake_waiters();
                    }),
                );
                return;
            }
            WorkerOutcome::Finished
            | WorkerOutcome::Cancelled
            | WorkerOutcome::ConnectionStopped(_) => None,
        };
        let store = Arc::clone(&self.deps.store);
        let tracker = self.tracker.clone();
        let ended = async move {
            // The connection's last counts are written before its item says it is done.
            let _ = tracker.send(WriteNow).await;
            let items = store.end_work(tracker_id, connection_id, failure).await?;
            close_if_ended(&tracker, tracker_id, &items).await;
            let _ = tracker
                .send(Untrack {
                    tracker_id,
                    connection_id,
                })
                .await;
            Ok::<_, StoreError>(())
        };
        let sink = Arc::clone(&self.sink);
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(ended).map(move |ended, act, _ctx| {
                act.workers.remove(&connection_id);
                match ended {
                    Ok(()) => sink.work_ended(tracker_id, connection_id, false),
                    Err(error) => {
                        // Left open: whoever looks next carries it on from the stored state.
                        tracing::error!(tracker_id, connection_id, %error, "could not end the work");
                        sink.work_ended(tracker_id, connection_id, true);
                    }
                }
                act.wake_waiters();
            }),
        );
    }
}

/// The run was asked to stop (its items carry the reason): this node's workers stop between
/// calls and end their items.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel;

impl Handler<Cancel> for CampaignRun {
    type Result = ();

    fn handle(&mut self, _msg: Cancel, _ctx: &mut Self::Context) {
        self.cancel.cancel();
    }
}

/// This node lost its lease on `connection_id`: its worker there stops before the lease
/// expires, and the work stays open for the next holder.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub connection_id: Id,
}

impl Handler<Release> for CampaignRun {
    type Result = ();

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) {
        if let Some(token) = self.workers.get(&msg.connection_id) {
            self.released.insert(msg.connection_id);
            token.cancel();
        }
    }
}

/// Suspends the run here for a stop of the service: workers stop taking products, the calls in
/// flight finish, and the work stays open with the lock held. Answers then.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Suspend;

impl Handler<Suspend> for CampaignRun {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Suspend, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        // A run already stopping (fail-fast, a force) ends as it was going to.
        if !self.cancel.is_cancelled() && !self.workers.is_empty() {
            self.suspending = true;
            self.tracker.do_send(Note {
                tracker_id: self.scope.tracker_id,
                event: "suspended: the service stopped; calls in flight finished".to_string(),
            });
        }
        self.cancel.cancel();
        self.wake_waiters();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// The run has no more work on this node: the actor ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for CampaignRun {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        if self.workers.is_empty() {
            ctx.stop();
        }
    }
}
