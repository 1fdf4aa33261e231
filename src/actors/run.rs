//! The CampaignRun actor: one per action. It starts a worker per connection in the run, renews
//! the campaign lock's lease while it lives, cancels every worker on fail-fast or on request, and
//! once all workers reported it closes the tracker (which also sets the campaign's status and
//! releases the lock) before telling the supervisor it ended.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::supervisor::{RunEnded, Supervisor};
use super::tracker::{Close, Note, TrackerActor};
use super::worker::{RunScope, Worker, WorkerJob, WorkerOutcome};
use super::Deps;
use crate::domain::{Connection, Id, Tracker};
use crate::store::StoreError;

pub struct CampaignRun {
    deps: Deps,
    tracker: Addr<TrackerActor>,
    supervisor: Addr<Supervisor>,
    scope: RunScope,
    connections: Vec<Connection>,
    /// Shared with every worker of the run; cancelling it stops them between calls.
    cancel: CancellationToken,
    workers_left: usize,
    /// Why the run failed, if it did; the first reason wins.
    failure: Option<String>,
    /// Who is waiting for the run to end after asking it to stop.
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// The service is stopping: the run ends without closing its tracker or releasing its
    /// lock, so that the next start resumes it.
    suspending: bool,
    /// The watchdog's last look: products-phases processed, and since when that number holds.
    watched: Option<(u64, std::time::Instant)>,
}

impl CampaignRun {
    pub fn new(
        deps: Deps,
        tracker: Addr<TrackerActor>,
        supervisor: Addr<Supervisor>,
        scope: RunScope,
        connections: Vec<Connection>,
    ) -> CampaignRun {
        CampaignRun {
            deps,
            tracker,
            supervisor,
            scope,
            connections,
            cancel: CancellationToken::new(),
            workers_left: 0,
            failure: None,
            stop_waiters: Vec::new(),
            suspending: false,
            watched: None,
        }
    }

    /// Fails the run when its tracker has not moved for `runs.stall_secs`: whatever the
    /// marketplaces do, a run always ends.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.cancel.is_cancelled() {
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
        let now = std::time::Instant::now();
        match self.watched {
            Some((seen, since)) if seen == processed => {
                let stalled = now.duration_since(since);
                if stalled >= self.deps.runs.stall() {
                    let reason = format!(
                        "no progress for {} s: the marketplaces stopped answering; the run was stopped by the watchdog",
                        stalled.as_secs()
                    );
                    tracing::warn!(tracker_id = self.scope.tracker_id, reason = %reason, "run stalled");
                    self.tracker.do_send(Note {
                        tracker_id: self.scope.tracker_id,
                        event: format!("stopping: {reason}"),
                    });
                    self.stop(reason, ctx);
                }
            }
            _ => self.watched = Some((processed, now)),
        }
    }

    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        let expires = self.deps.clock.now_ms() + self.deps.runs.lease().as_millis() as i64;
        let store = Arc::clone(&self.deps.store);
        let (campaign, tracker) = (self.scope.campaign_id, self.scope.tracker_id);
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                store.renew_lock(campaign, tracker, expires).await
            })
            .map(|renewed, act, ctx| act.renewed(renewed, ctx)),
        );
    }

    fn renewed(&mut self, renewed: Result<bool, StoreError>, ctx: &mut Context<Self>) {
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    campaign_id = self.scope.campaign_id,
                    tracker_id = self.scope.tracker_id,
                    "lost the campaign lock; stopping"
                );
                self.stop(
                    "the run lost its campaign lock (it was reset)".to_string(),
                    ctx,
                );
            }
            Err(error) => tracing::error!(
                campaign_id = self.scope.campaign_id,
                %error,
                "could not renew the campaign lock"
            ),
        }
    }

    fn stop(&mut self, reason: String, _ctx: &mut Context<Self>) {
        self.failure.get_or_insert(reason);
        self.cancel.cancel();
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        if self.suspending {
            tracing::info!(
                campaign_id = self.scope.campaign_id,
                tracker_id = self.scope.tracker_id,
                "run suspended; it resumes at the next start"
            );
            self.tracker.do_send(Note {
                tracker_id: self.scope.tracker_id,
                event: "suspended: the service stopped; calls in flight finished".to_string(),
            });
            self.supervisor.do_send(RunEnded {
                campaign_id: self.scope.campaign_id,
                tracker_id: self.scope.tracker_id,
            });
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
            ctx.stop();
            return;
        }
        let close = Close {
            tracker_id: self.scope.tracker_id,
            failure: self.failure.clone(),
            event: None,
        };
        let tracker_id = self.scope.tracker_id;
        let campaign_id = self.scope.campaign_id;
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(self.tracker.send(close)).map(
                move |closed, act, ctx| {
                    match closed {
                        Ok(Ok(t)) => tracing::info!(
                            campaign_id,
                            tracker_id,
                            status = ?t.status,
                            progress = t.progress(),
                            "run ended"
                        ),
                        Ok(Err(error)) => {
                            tracing::error!(campaign_id, tracker_id, %error, "could not close the tracker")
                        }
                        Err(error) => {
                            tracing::error!(campaign_id, tracker_id, %error, "the tracker is gone")
                        }
                    }
                    act.supervisor.do_send(RunEnded {
                        campaign_id,
                        tracker_id,
                    });
                    for waiter in act.stop_waiters.drain(..) {
                        let _ = waiter.send(());
                    }
                    ctx.stop();
                },
            ),
        );
    }
}

impl Actor for CampaignRun {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        for connection in &self.connections {
            let job = WorkerJob {
                store: self.deps.store.clone(),
                clock: Arc::clone(&self.deps.clock),
                adapter: self.deps.registry.adapter(connection, self.cancel.clone()),
                tracker: self.tracker.clone(),
                scope: self.scope.clone(),
                connection: connection.clone(),
                cancel: self.cancel.clone(),
                retry: self.deps.runs.retry(),
            };
            let run = me.clone();
            match self.deps.worker_threads.next() {
                Some(arbiter) => {
                    Worker::start_in_arbiter(arbiter, move |_| Worker::new(job, run));
                }
                None => {
                    Worker::new(job, run).start();
                }
            }
            self.workers_left += 1;
        }
        let every = self.deps.runs.lease() / 3;
        ctx.run_interval(every, |act, ctx| act.renew_lease(ctx));
        let look = (self.deps.runs.stall() / 4).max(std::time::Duration::from_millis(50));
        ctx.run_interval(look, |act, ctx| act.watch(ctx));
        if self.workers_left == 0 {
            self.finish(ctx);
        }
    }
}

/// A worker ended its part of the run.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerDone {
    pub connection_id: Id,
    pub outcome: WorkerOutcome,
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
        match msg.outcome {
            WorkerOutcome::Finished
            | WorkerOutcome::Cancelled
            | WorkerOutcome::ConnectionStopped(_) => {}
            WorkerOutcome::FailFast(reason) | WorkerOutcome::Broken(reason) => {
                self.stop(reason, ctx)
            }
        }
        self.workers_left = self.workers_left.saturating_sub(1);
        if self.workers_left == 0 {
            self.finish(ctx);
        }
    }
}

/// Stops the run cooperatively (workers stop between calls); answers once the run has ended and
/// its tracker is failed with `reason`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel {
    pub reason: String,
}

impl Handler<Cancel> for CampaignRun {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        self.tracker.do_send(Note {
            tracker_id: self.scope.tracker_id,
            event: format!("stopping: {}", msg.reason),
        });
        self.stop(msg.reason, ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Suspends the run for a stop of the service: workers stop taking products, the calls in
/// flight finish, and the run ends with its tracker active and its lock held. Answers then.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Suspend;

impl Handler<Suspend> for CampaignRun {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Suspend, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        // A run already failing (fail-fast, a force) ends as it was going to; one whose
        // workers are all done is closing its tracker already and answers when it has.
        if self.failure.is_none() && self.workers_left > 0 {
            self.suspending = true;
        }
        self.cancel.cancel();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
