//! The Scheduler actor: one per node. On a timer it asks the store for the campaigns with a
//! step due (by the injected clock) and starts each step as an ordinary action through the
//! Supervisor, with `metadata.scheduled` set. The step's record is written in the same
//! transaction as the run's start, checked against the schedule's version, so a step runs once
//! even when every node of a cluster sees it due; a step that meets a running action waits
//! for it (it stays due), and one with nothing to do is recorded as skipped, with the reason.
//! A campaign's periodic drift check is taken the same way, as the step `Drift`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use super::supervisor::{Start, Supervisor};
use super::tracker::{Note, TrackerActor};
use super::{ActionError, ActionRequest, Deps, ScheduledStep};
use domain::{Id, Schedule, Step, StepRecord};

pub struct Scheduler {
    deps: Deps,
    supervisor: Addr<Supervisor>,
    tracker: Addr<TrackerActor>,
    /// (campaign, step, running tracker) already told that the step waits for it.
    told: Arc<Mutex<HashSet<(Id, Step, Id)>>>,
}

impl Scheduler {
    pub fn new(deps: Deps, supervisor: Addr<Supervisor>, tracker: Addr<TrackerActor>) -> Scheduler {
        Scheduler {
            deps,
            supervisor,
            tracker,
            told: Arc::default(),
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(Look);
        ctx.run_interval(self.deps.cluster.heartbeat(), |_act, ctx| ctx.notify(Look));
    }
}

/// Look for due steps now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Look;

impl Handler<Look> for Scheduler {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Look, _ctx: &mut Self::Context) -> Self::Result {
        let taker = Taker {
            deps: self.deps.clone(),
            supervisor: self.supervisor.clone(),
            tracker: self.tracker.clone(),
            told: Arc::clone(&self.told),
        };
        AtomicResponse::new(Box::pin(actix::fut::wrap_future(async move {
            taker.look().await
        })))
    }
}

struct Taker {
    deps: Deps,
    supervisor: Addr<Supervisor>,
    tracker: Addr<TrackerActor>,
    told: Arc<Mutex<HashSet<(Id, Step, Id)>>>,
}

impl Taker {
    async fn look(&self) {
        let now = self.deps.clock.now_ms();
        let due = match self.deps.store.due_schedules(now).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not read the due schedules");
                return;
            }
        };
        for schedule in due {
            self.take(schedule, now).await;
        }
    }

    /// Takes the step due on one campaign, if it can be taken now; a dated step goes before
    /// the periodic drift check, which then waits for its run.
    async fn take(&self, schedule: Schedule, now: i64) {
        let Some(due) = schedule.due(now).or_else(|| schedule.drift_due(now)) else {
            return;
        };
        let campaign_id = schedule.campaign_id;
        let campaign = match self
            .deps
            .store
            .campaign(schedule.tenant_id, campaign_id)
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(campaign_id, %error, "could not read a scheduled campaign");
                return;
            }
        };
        let mut next = schedule.clone();
        for (step, at) in &due.superseded {
            next.steps.push(StepRecord {
                step: *step,
                due_at: *at,
                at: now,
                action: None,
                tracker_id: None,
                skipped: Some(format!(
                    "passed over: the {} was due too",
                    due.step.as_str()
                )),
            });
        }
        let skip = |next: &mut Schedule, reason: String| {
            next.took(StepRecord {
                step: due.step,
                due_at: due.at,
                at: now,
                action: None,
                tracker_id: None,
                skipped: Some(reason),
            });
        };
        let action = match due.step.action(campaign.status) {
            Ok(action) => action,
            // A run is on: the step waits for it to end.
            Err(_) if campaign.status_before_run.is_some() => {
                if let Ok(Some(lock)) = self.deps.store.lock(campaign_id).await {
                    self.waits(campaign_id, due.step, lock.tracker_id).await;
                }
                return;
            }
            Err(reason) => {
                skip(&mut next, reason);
                self.record(&next, due.step.as_str()).await;
                return;
            }
        };
        let request = ActionRequest {
            tenant_id: schedule.tenant_id,
            campaign_id,
            action,
            product_ids: None,
            connection_ids: None,
            chunk_size: self.deps.runs.default_chunk_size as usize,
            fail_fast: false,
            force: false,
            product_level: false,
            retry: false,
            notify: schedule.notify,
            scheduled: Some(ScheduledStep {
                step: due.step,
                due_at: due.at,
                schedule: next.clone(),
            }),
        };
        match self.supervisor.send(Start(request)).await {
            Ok(Ok(started)) => tracing::info!(
                campaign_id,
                step = due.step.as_str(),
                action = action.as_str(),
                tracker_id = started.tracker_id,
                "scheduled step started"
            ),
            Ok(Err(ActionError::InProgress { tracker_id })) => {
                self.waits(campaign_id, due.step, tracker_id).await
            }
            Ok(Err(ActionError::Conflict)) => {
                tracing::debug!(campaign_id, "another node took the step")
            }
            Ok(Err(ActionError::ShuttingDown)) | Err(_) => {}
            Ok(Err(
                e @ (ActionError::NothingToDo(_)
                | ActionError::InvalidState { .. }
                | ActionError::NotInCampaign(_)
                | ActionError::NotFound(_)),
            )) => {
                skip(&mut next, e.to_string());
                self.record(&next, due.step.as_str()).await;
            }
            Ok(Err(error)) => {
                tracing::warn!(campaign_id, step = due.step.as_str(), %error, "could not start a scheduled step; trying again at the next look")
            }
        }
    }

    /// A due step met a running action: it waits, and the running tracker's log says so once.
    async fn waits(&self, campaign_id: Id, step: Step, tracker_id: Id) {
        let first = self.told.lock().unwrap_or_else(|p| p.into_inner()).insert((
            campaign_id,
            step,
            tracker_id,
        ));
        if !first {
            return;
        }
        tracing::info!(
            campaign_id,
            step = step.as_str(),
            tracker_id,
            "scheduled step waits for the running action"
        );
        let _ = self
            .tracker
            .send(Note {
                tracker_id,
                event: format!("the scheduled {} waits for this run to end", step.as_str()),
            })
            .await;
    }

    async fn record(&self, next: &Schedule, step: &str) {
        let campaign_id = next.campaign_id;
        match self.deps.store.put_schedule(next).await {
            Ok(true) => tracing::info!(campaign_id, step, "scheduled step skipped"),
            Ok(false) => tracing::debug!(campaign_id, "the schedule changed meanwhile"),
            Err(error) => tracing::warn!(campaign_id, %error, "could not record a skipped step"),
        }
    }
}
