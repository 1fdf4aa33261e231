//! The Tracker actor: this node's writer of tracker progress. Workers send it one `Progress` per
//! batch of outcomes; it keeps the part of each active tracker this node works on (its
//! connections, new event lines, the first error) and writes it as a `TrackerPatch` every
//! `progress_flush_ms` (coalescing), so several nodes can work on one run. `Close` writes a
//! run's final state together with its campaign's status, notification, webhook delivery and
//! lock release, then flushes the store before answering. Every write is published on the
//! node's hub and signalled to the other nodes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::events::{Hub, Payload};
use domain::clock::Clock;
use domain::{
    all_done, campaign_after_run, drift::Tally, run_failure, Action, ConnProgress, Delivery, Id,
    Notification, Step, Tracker, TrackerPatch, TrackerStatus, WorkItem,
};
use store::{SharedStore, Signal, StoreError};

pub struct TrackerActor {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    flush_every: Duration,
    /// Every written tracker and every notification is published here.
    hub: Arc<Hub>,
    /// Woken when a webhook delivery was queued.
    outbox: Arc<tokio::sync::Notify>,
    /// This node's name, on the signals it sends.
    node: String,
    /// This node's part of the trackers of runs it works on.
    active: HashMap<Id, Local>,
    /// Active trackers changed since they were last written.
    dirty: HashSet<Id>,
    metrics: Arc<metrics::Metrics>,
    /// The body of a notification's webhook delivery: the API's wire form, which the engine
    /// stores and sends as it is given.
    webhook_body: WebhookBody,
}

/// Renders the body of a notification's webhook delivery.
pub type WebhookBody = fn(&Notification) -> String;

/// What this node holds of one active tracker.
struct Local {
    /// The tracker as last read or written here; only `connections` is this node's to change.
    tracker: Tracker,
    /// The connections this node works on in the run.
    connections: HashSet<Id>,
    /// Event lines not written yet.
    events: Vec<String>,
    /// A first error message not written yet.
    error: Option<String>,
}

impl Local {
    /// Takes what changed here as a patch.
    fn patch(&mut self, now: i64) -> TrackerPatch {
        TrackerPatch {
            connections: self
                .tracker
                .connections
                .iter()
                .filter(|c| self.connections.contains(&c.connection_id))
                .cloned()
                .collect(),
            events: std::mem::take(&mut self.events),
            error_message: self.error.take(),
            updated_at: now,
        }
    }
}

impl TrackerActor {
    pub fn new(
        store: SharedStore,
        clock: Arc<dyn Clock>,
        flush_every: Duration,
        hub: Arc<Hub>,
        outbox: Arc<tokio::sync::Notify>,
        node: String,
        webhook_body: WebhookBody,
    ) -> TrackerActor {
        TrackerActor {
            webhook_body,
            store,
            clock,
            flush_every,
            hub,
            outbox,
            node,
            active: HashMap::new(),
            dirty: HashSet::new(),
            metrics: Arc::default(),
        }
    }

    /// Counts the runs this node ends in `metrics`.
    pub fn measured(mut self, metrics: Arc<metrics::Metrics>) -> TrackerActor {
        self.metrics = metrics;
        self
    }

    fn publisher(&self) -> Publisher {
        Publisher {
            store: Arc::clone(&self.store),
            hub: Arc::clone(&self.hub),
            node: self.node.clone(),
        }
    }

    /// Takes the patches of the changed trackers and returns the future that writes them,
    /// each then published. Run with `ctx.wait` or an atomic response, so that the actor
    /// handles nothing else until they are written: a later patch of one tracker never
    /// overtakes an earlier one.
    fn write_dirty(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let now = self.clock.now_ms();
        let mut batch = Vec::with_capacity(self.dirty.len());
        for id in self.dirty.drain() {
            if let Some(local) = self.active.get_mut(&id) {
                batch.push((id, local.patch(now)));
            }
        }
        let publisher = self.publisher();
        async move { publisher.patch_all(batch).await }
    }

    fn closer(&self) -> Closer {
        Closer {
            clock: Arc::clone(&self.clock),
            outbox: Arc::clone(&self.outbox),
            publisher: self.publisher(),
            metrics: Arc::clone(&self.metrics),
            webhook_body: self.webhook_body,
        }
    }
}

/// Writes trackers and tells everyone: the node's hub, and the other nodes by signal.
#[derive(Clone)]
struct Publisher {
    store: SharedStore,
    hub: Arc<Hub>,
    node: String,
}

impl Publisher {
    async fn patch(&self, id: Id, patch: &TrackerPatch) {
        self.patch_all(vec![(id, patch.clone())]).await;
    }

    /// Writes the patches, then publishes what was written together, then tells the others.
    async fn patch_all(&self, batch: Vec<(Id, TrackerPatch)>) {
        let mut written = Vec::with_capacity(batch.len());
        for (id, patch) in batch {
            if patch.is_empty() {
                continue;
            }
            match self.store.patch_tracker(id, &patch).await {
                Ok(Some(t)) => written.push(t),
                Ok(None) => {}
                Err(error) => tracing::error!(tracker_id = id, %error, "could not write progress"),
            }
        }
        self.announce_all(written).await;
    }

    async fn announce(&self, t: Tracker) {
        self.announce_all(vec![t]).await;
    }

    async fn announce_all(&self, trackers: Vec<Tracker>) {
        let signals: Vec<Signal> = trackers
            .iter()
            .map(|t| Signal::Tracker {
                origin: self.node.clone(),
                tenant: t.tenant_id,
                id: t.id,
            })
            .collect();
        for t in trackers {
            self.hub.publish(t.tenant_id, Payload::Tracker(Arc::new(t)));
        }
        for signal in signals {
            self.tell_others(signal).await;
        }
    }

    async fn tell_others(&self, signal: Signal) {
        if !self.store.shared() {
            return;
        }
        if let Err(error) = self.store.signal(signal).await {
            tracing::warn!(%error, "could not signal the other nodes");
        }
    }
}

/// What closing a tracker needs, apart from the actor, so that it can run as a future.
struct Closer {
    clock: Arc<dyn Clock>,
    outbox: Arc<tokio::sync::Notify>,
    publisher: Publisher,
    metrics: Arc<metrics::Metrics>,
    webhook_body: WebhookBody,
}

impl Closer {
    /// Ends a tracker: completed, or failed with `failure`. Writes it, the campaign's new status
    /// (for campaign-wide runs) and the release of the lock it held, in one transaction, then
    /// flushes the store. `patch` is this node's last part of it.
    async fn close(&self, patch: Option<TrackerPatch>, msg: Close) -> Result<Tracker, StoreError> {
        let store = &self.publisher.store;
        if let Some(patch) = patch {
            self.publisher.patch(msg.tracker_id, &patch).await;
        }
        let Some(mut t) = store.tracker(msg.tracker_id).await? else {
            return Err(StoreError::Missing {
                kind: "tracker",
                id: msg.tracker_id,
            });
        };
        if t.status != TrackerStatus::Active {
            return Ok(t);
        }
        let now = self.clock.now_ms();
        t.end(msg.event.clone(), msg.failure.clone(), now);
        let campaign = if t.metadata.product_level {
            None
        } else {
            let reached_target = t
                .connections
                .iter()
                .any(|c| c.phases.last().is_some_and(|p| p.successful > 0));
            store
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
        // What a drift check found, which its notification says.
        let drift = match t.action {
            Action::Drift => {
                let mut tally = Tally::default();
                store::for_each_campaign_product(store.as_ref(), t.campaign_id, |cp| {
                    if let Some(check) = cp.drift.as_ref().filter(|d| d.tracker_id == t.id) {
                        tally.add(check);
                    }
                })
                .await?;
                Some(tally)
            }
            _ => None,
        };
        // A quiet run (`notify: false`) ends without a notification or a webhook, and so does
        // a periodic drift check that found everything as campaignd left it.
        let nothing_found = t.metadata.scheduled == Some(Step::Drift)
            && t.status == TrackerStatus::Completed
            && drift.as_ref().is_some_and(|d| d.differing == 0);
        let notification = match t.metadata.notify && !nothing_found {
            true => Some(Notification::of_run(
                store.next_id("notification").await?,
                &t,
                drift.as_ref(),
                now,
            )),
            false => None,
        };
        let delivery = match (&notification, store.webhook(t.tenant_id).await?) {
            (Some(notification), Some(hook)) => {
                let n = store.next_id("delivery").await?;
                Some((
                    n,
                    delivery_of(n, &hook.url, notification, self.webhook_body),
                ))
            }
            _ => None,
        };
        let ended = store
            .finish_run(
                &t,
                campaign.as_ref(),
                notification.as_ref(),
                delivery.as_ref().map(|(n, d)| (*n, d)),
            )
            .await?;
        if !ended {
            // Another node closed it meanwhile: its end is the one announced.
            return store
                .tracker(msg.tracker_id)
                .await?
                .ok_or(StoreError::Missing {
                    kind: "tracker",
                    id: msg.tracker_id,
                });
        }
        self.measure_end(&t);
        self.publisher.announce(t.clone()).await;
        if let Some(notification) = notification {
            let signal = Signal::Notification {
                origin: self.publisher.node.clone(),
                tenant: notification.tenant_id,
                id: notification.id,
            };
            self.publisher
                .hub
                .publish(t.tenant_id, Payload::Notification(Arc::new(notification)));
            self.publisher.tell_others(signal).await;
        }
        if delivery.is_some() {
            self.outbox.notify_one();
        }
        let flushing = std::time::Instant::now();
        store.flush().await?;
        self.metrics
            .store_flush
            .observe(flushing.elapsed().as_secs_f64());
        Ok(t)
    }

    /// Counts an ended run and its duration in the metrics.
    fn measure_end(&self, t: &Tracker) {
        self.metrics
            .runs_ended
            .get_or_create(&metrics::RunEndLabels {
                action: t.action.as_str().to_string(),
                status: match t.status {
                    TrackerStatus::Failed => "failed",
                    _ => "completed",
                }
                .to_string(),
            })
            .inc();
        if let Some(end) = t.completed_at {
            self.metrics
                .run_duration
                .get_or_create(&metrics::RunLabels {
                    action: t.action.as_str().to_string(),
                })
                .observe((end - t.started_at).max(0) as f64 / 1000.0);
        }
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

/// A run was opened (its tracker is stored): tell the subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Announce(pub Tracker);

impl Handler<Announce> for TrackerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Announce, _ctx: &mut Self::Context) -> Self::Result {
        let publisher = self.publisher();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future(async move {
            publisher.announce(msg.0).await;
        })))
    }
}

/// This node starts working on one connection of a run, whose progress so far is `progress`
/// (counted from the products' stored marks); `event` goes to the tracker's log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub tracker: Tracker,
    pub progress: ConnProgress,
    pub event: Option<String>,
}

impl Handler<Track> for TrackerActor {
    type Result = ();

    fn handle(&mut self, msg: Track, _ctx: &mut Self::Context) {
        let id = msg.tracker.id;
        let local = self.active.entry(id).or_insert_with(|| Local {
            tracker: msg.tracker,
            connections: HashSet::new(),
            events: Vec::new(),
            error: None,
        });
        let connection_id = msg.progress.connection_id;
        if let Some(slot) = local.tracker.connection_mut(connection_id) {
            *slot = msg.progress;
        }
        local.connections.insert(connection_id);
        if let Some(event) = msg.event {
            local.tracker.metadata.events.push(event.clone());
            local.events.push(event);
        }
        self.dirty.insert(id);
    }
}

/// This node no longer works on one connection of a run (it ended, or went to another node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Untrack {
    pub tracker_id: Id,
    pub connection_id: Id,
}

impl Handler<Untrack> for TrackerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Untrack, _ctx: &mut Self::Context) -> Self::Result {
        // What is left of it is written first.
        let written = self.write_dirty();
        if let Some(local) = self.active.get_mut(&msg.tracker_id) {
            local.connections.remove(&msg.connection_id);
            if local.connections.is_empty() {
                self.active.remove(&msg.tracker_id);
            }
        }
        AtomicResponse::new(Box::pin(actix::fut::wrap_future(written)))
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
        let Some(local) = self.active.get_mut(&msg.tracker_id) else {
            return;
        };
        let action = local.tracker.action;
        if let Some(c) = local.tracker.connection_mut(msg.connection_id) {
            c.record(msg.phase, msg.successful, msg.failed);
            self.dirty.insert(msg.tracker_id);
            let count = |outcome: &str, n: u64| {
                if n > 0 {
                    self.metrics
                        .products
                        .get_or_create(&metrics::ProductLabels {
                            action: action.as_str().to_string(),
                            system: c.system.as_str().to_string(),
                            outcome: outcome.to_string(),
                        })
                        .inc_by(n);
                }
            };
            // A product fails at most once, in any phase; it is done when its last phase is.
            count("failed", msg.failed);
            if msg.phase + 1 == c.phases.len() {
                count("successful", msg.successful);
            }
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
        let Some(local) = self.active.get_mut(&msg.tracker_id) else {
            return;
        };
        if let Some(c) = local.tracker.connection_mut(msg.connection_id) {
            c.error = Some(msg.message.clone());
        }
        local.error.get_or_insert(msg.message);
        self.dirty.insert(msg.tracker_id);
    }
}

/// Closes a run's tracker if `items`, its work items, are all done: failed with the first part
/// that failed it, else with the first reason it was asked to stop for. Answers whether it was
/// the run's end.
pub async fn close_if_ended(
    tracker: &Addr<TrackerActor>,
    tracker_id: Id,
    items: &[WorkItem],
) -> bool {
    if !all_done(items) {
        return false;
    }
    let close = Close {
        tracker_id,
        failure: run_failure(items),
        event: None,
    };
    match tracker.send(close).await {
        Ok(Ok(t)) => tracing::info!(
            campaign_id = t.campaign_id,
            tracker_id,
            status = ?t.status,
            progress = t.progress(),
            "run ended"
        ),
        Ok(Err(error)) => tracing::error!(tracker_id, %error, "could not close the tracker"),
        Err(error) => tracing::error!(tracker_id, %error, "the tracker is gone"),
    }
    true
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
        let now = self.clock.now_ms();
        let patch = self
            .active
            .remove(&msg.tracker_id)
            .map(|mut local| local.patch(now));
        let closer = self.closer();
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            closer.close(patch, msg).await
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
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Note, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(local) = self.active.get_mut(&msg.tracker_id) {
            local.tracker.metadata.events.push(msg.event.clone());
            local.events.push(msg.event);
            self.dirty.insert(msg.tracker_id);
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        // Not worked on here: written at once.
        let publisher = self.publisher();
        let patch = TrackerPatch {
            events: vec![msg.event],
            updated_at: self.clock.now_ms(),
            ..TrackerPatch::default()
        };
        AtomicResponse::new(Box::pin(actix::fut::wrap_future(async move {
            publisher.patch(msg.tracker_id, &patch).await;
        })))
    }
}

/// The webhook POST of a notification: its body is fixed now, so every attempt sends the same
/// bytes under the same id.
fn delivery_of(n: Id, url: &str, notification: &Notification, body: WebhookBody) -> Delivery {
    Delivery {
        id: format!("msg_{n}"),
        tenant_id: notification.tenant_id,
        url: url.to_string(),
        body: body(notification),
        attempts: 0,
        next_attempt_at: notification.created_at,
        last_error: None,
    }
}

/// Writes every active tracker's counted progress now (before the store is flushed at a stop,
/// and before a node says its part of a run is done).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteNow;

impl Handler<WriteNow> for TrackerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: WriteNow, _ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(Box::pin(actix::fut::wrap_future(self.write_dirty())))
    }
}
