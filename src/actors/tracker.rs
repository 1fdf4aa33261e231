//! The Tracker actor: the single writer of trackers. Workers send it one `Progress` per product
//! and phase; it keeps active trackers in memory and writes the changed ones every
//! `progress_flush_ms` (coalescing), and `Close` writes a run's final state together with its
//! campaign's status and lock release, then flushes the store before answering.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::Clock;
use crate::domain::{campaign_after_run, Delivery, Id, Notification, Tracker, TrackerStatus};
use crate::events::{Hub, Payload};
use crate::store::{SharedStore, StoreError};

pub struct TrackerActor {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    flush_every: Duration,
    /// Every written tracker and every notification is published here.
    hub: Arc<Hub>,
    /// Woken when a webhook delivery was queued.
    outbox: Arc<tokio::sync::Notify>,
    /// Trackers of runs in progress; the store copy lags by at most `flush_every`.
    active: HashMap<Id, Tracker>,
    /// Active trackers changed since they were last written.
    dirty: HashSet<Id>,
}

impl TrackerActor {
    pub fn new(
        store: SharedStore,
        clock: Arc<dyn Clock>,
        flush_every: Duration,
        hub: Arc<Hub>,
        outbox: Arc<tokio::sync::Notify>,
    ) -> TrackerActor {
        TrackerActor {
            store,
            clock,
            flush_every,
            hub,
            outbox,
            active: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// Takes the changed active trackers and returns the future that writes them, each then
    /// published. Run with `ctx.wait` or an atomic response, so that the actor handles nothing
    /// else until they are written: a later write of one tracker never overtakes an earlier one.
    fn write_dirty(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let now = self.clock.now_ms();
        let mut batch = Vec::with_capacity(self.dirty.len());
        for id in self.dirty.drain() {
            if let Some(t) = self.active.get_mut(&id) {
                t.updated_at = now;
                batch.push(t.clone());
            }
        }
        let store = Arc::clone(&self.store);
        let hub = Arc::clone(&self.hub);
        async move {
            for t in batch {
                match store.put_tracker(&t).await {
                    Ok(()) => hub.publish(t.tenant_id, Payload::Tracker(Arc::new(t))),
                    Err(error) => {
                        tracing::error!(tracker_id = t.id, %error, "could not write progress");
                    }
                }
            }
        }
    }

    fn closer(&self) -> Closer {
        Closer {
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
            hub: Arc::clone(&self.hub),
            outbox: Arc::clone(&self.outbox),
        }
    }
}

/// What closing a tracker needs, apart from the actor, so that it can run as a future.
struct Closer {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    hub: Arc<Hub>,
    outbox: Arc<tokio::sync::Notify>,
}

impl Closer {
    /// Ends a tracker: completed, or failed with `failure`. Writes it, the campaign's new status
    /// (for campaign-wide runs) and the release of the lock it held, in one transaction, then
    /// flushes the store. `live` is the actor's copy, if the tracker was active here.
    async fn close(&self, live: Option<Tracker>, msg: Close) -> Result<Tracker, StoreError> {
        let mut t = match live {
            Some(t) => t,
            None => match self.store.tracker(msg.tracker_id).await? {
                Some(t) => t,
                None => {
                    return Err(StoreError::Missing {
                        kind: "tracker",
                        id: msg.tracker_id,
                    })
                }
            },
        };
        if t.status != TrackerStatus::Active {
            return Ok(t);
        }
        let now = self.clock.now_ms();
        if let Some(event) = &msg.event {
            t.metadata.events.push(event.clone());
        }
        if msg.failure.is_some() {
            // Where it stopped, for whoever takes over or retries.
            let (done, total) = t
                .connections
                .iter()
                .flat_map(|c| c.phases.iter())
                .fold((0, 0), |(d, n), p| (d + p.processed(), n + p.total));
            t.metadata.events.push(format!(
                "stopped at {:.1} %: {done} of {total} product phases done",
                t.progress()
            ));
        }
        t.status = match &msg.failure {
            Some(_) => TrackerStatus::Failed,
            None => TrackerStatus::Completed,
        };
        if msg.failure.is_some() {
            t.error_message = msg.failure.clone();
        }
        t.completed_at = Some(now);
        t.updated_at = now;
        let campaign = if t.metadata.product_level {
            None
        } else {
            let reached_target = t
                .connections
                .iter()
                .any(|c| c.phases.last().is_some_and(|p| p.successful > 0));
            self.store
                .campaign(t.tenant_id, t.campaign_id)
                .await?
                .map(|mut c| {
                    campaign_after_run(
                        &mut c,
                        t.action,
                        msg.failure.is_some(),
                        reached_target,
                        t.has_failures(),
                        now,
                    );
                    c
                })
        };
        let notification = Notification::of_run(self.store.next_id("notification").await?, &t, now);
        let delivery = match self.store.webhook(t.tenant_id).await? {
            Some(hook) => {
                let n = self.store.next_id("delivery").await?;
                Some((n, delivery_of(n, &hook.url, &notification)))
            }
            None => None,
        };
        self.store
            .finish_run(
                &t,
                campaign.as_ref(),
                Some(&notification),
                delivery.as_ref().map(|(n, d)| (*n, d)),
            )
            .await?;
        self.hub
            .publish(t.tenant_id, Payload::Tracker(Arc::new(t.clone())));
        self.hub
            .publish(t.tenant_id, Payload::Notification(Arc::new(notification)));
        if delivery.is_some() {
            self.outbox.notify_one();
        }
        self.store.flush().await?;
        Ok(t)
    }
}

impl Actor for TrackerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_every, |act, ctx| {
            ctx.wait(actix::fut::wrap_future(act.write_dirty()));
        });
    }

    /// A last write of what changed, on whatever still runs; `WriteNow` is the orderly way.
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        actix::spawn(self.write_dirty());
    }
}

/// Starts tracking a new run; answers once the tracker is stored.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Open(pub Tracker);

impl Handler<Open> for TrackerActor {
    type Result = AtomicResponse<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: Open, _ctx: &mut Self::Context) -> Self::Result {
        let store = Arc::clone(&self.store);
        let t = msg.0;
        AtomicResponse::new(Box::pin(
            actix::fut::wrap_future::<_, Self>(
                async move { store.put_tracker(&t).await.map(|()| t) },
            )
            .map(|written, act, _ctx| {
                let t = written?;
                act.hub
                    .publish(t.tenant_id, Payload::Tracker(Arc::new(t.clone())));
                act.active.insert(t.id, t);
                Ok(())
            }),
        ))
    }
}

/// Products that passed (or failed) one phase on one connection since the last report.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Progress {
    pub tracker_id: Id,
    pub connection_id: Id,
    pub phase: usize,
    pub successful: u64,
    pub failed: u64,
}

impl Handler<Progress> for TrackerActor {
    type Result = ();

    fn handle(&mut self, msg: Progress, _ctx: &mut Self::Context) {
        let Some(t) = self.active.get_mut(&msg.tracker_id) else {
            return;
        };
        if let Some(c) = t.connection_mut(msg.connection_id) {
            c.record(msg.phase, msg.successful, msg.failed);
            self.dirty.insert(msg.tracker_id);
        }
    }
}

/// A connection's work stopped as a whole; the message is shown on the tracker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionFailed {
    pub tracker_id: Id,
    pub connection_id: Id,
    pub message: String,
}

impl Handler<ConnectionFailed> for TrackerActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectionFailed, _ctx: &mut Self::Context) {
        let Some(t) = self.active.get_mut(&msg.tracker_id) else {
            return;
        };
        if let Some(c) = t.connection_mut(msg.connection_id) {
            c.error = Some(msg.message.clone());
        }
        if t.error_message.is_none() {
            t.error_message = Some(msg.message);
        }
        self.dirty.insert(msg.tracker_id);
    }
}

/// Ends a run's tracker (see `Closer::close`) and flushes the store before answering.
#[derive(Message)]
#[rtype(result = "Result<Tracker, StoreError>")]
pub struct Close {
    pub tracker_id: Id,
    pub failure: Option<String>,
    /// A line for the tracker's event log (force take-over, reset).
    pub event: Option<String>,
}

impl Handler<Close> for TrackerActor {
    type Result = AtomicResponse<Self, Result<Tracker, StoreError>>;

    fn handle(&mut self, msg: Close, _ctx: &mut Self::Context) -> Self::Result {
        self.dirty.remove(&msg.tracker_id);
        let live = self.active.remove(&msg.tracker_id);
        let closer = self.closer();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            closer.close(live, msg).await
        })))
    }
}

/// Adds a line to an active tracker's event log (a run being stopped, and why).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Note {
    pub tracker_id: Id,
    pub event: String,
}

impl Handler<Note> for TrackerActor {
    type Result = ();

    fn handle(&mut self, msg: Note, _ctx: &mut Self::Context) {
        if let Some(t) = self.active.get_mut(&msg.tracker_id) {
            t.metadata.events.push(msg.event);
            self.dirty.insert(msg.tracker_id);
        }
    }
}

/// The webhook POST of a notification: its body is fixed now, so every attempt sends the same
/// bytes under the same id.
fn delivery_of(n: Id, url: &str, notification: &Notification) -> Delivery {
    let kind = if notification.status == TrackerStatus::Failed {
        "run.failed"
    } else {
        "run.completed"
    };
    let body = serde_json::json!({
        "type": kind,
        "timestamp": crate::clock::rfc3339(notification.created_at),
        "data": super::notifier::notification_json(notification),
    });
    Delivery {
        id: format!("msg_{n}"),
        tenant_id: notification.tenant_id,
        url: url.to_string(),
        body: body.to_string(),
        attempts: 0,
        next_attempt_at: notification.created_at,
        last_error: None,
    }
}

/// Writes every active tracker's counted progress now (before the store is flushed at a stop).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteNow;

impl Handler<WriteNow> for TrackerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: WriteNow, _ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(Box::pin(actix::fut::wrap_future(self.write_dirty())))
    }
}
