//! Live events: the hub every change of a tracker and every new notification is published to,
//! in one process-wide order (`seq`), and the per-subscriber rules of delivery: which events a
//! subscription sees, and coalescing (at most one update per tracker per `COALESCE` to each
//! subscriber; a tracker's final state is never held back). Events are hints: a subscriber always
//! starts from a snapshot read from the store, and gets a fresh one whenever it fell behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use domain::{Id, Notification, Tracker, TrackerStatus};

/// The shortest time between two updates of one tracker sent to one subscriber.
pub const COALESCE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub enum Payload {
    Tracker(Arc<Tracker>),
    Notification(Arc<Notification>),
}

#[derive(Debug)]
pub struct Event {
    /// Position in the process-wide order of events.
    pub seq: u64,
    pub tenant_id: Id,
    pub payload: Payload,
    /// When this node published it: subscribers' delivery delay is counted from here.
    pub published: std::time::Instant,
    /// The event as sent to subscribers, rendered once (as UTF-8 JSON, by the API) for all of
    /// them into one buffer they share.
    pub wire: std::sync::OnceLock<bytes::Bytes>,
}

impl Event {
    pub fn campaign_id(&self) -> Option<Id> {
        match &self.payload {
            Payload::Tracker(t) => Some(t.campaign_id),
            Payload::Notification(n) => Some(n.campaign_id),
        }
    }

    pub fn tracker_id(&self) -> Option<Id> {
        match &self.payload {
            Payload::Tracker(t) => Some(t.id),
            Payload::Notification(n) => Some(n.tracker_id),
        }
    }

    /// A tracker that ended: never coalesced away.
    pub fn is_final(&self) -> bool {
        match &self.payload {
            Payload::Tracker(t) => t.status != TrackerStatus::Active,
            Payload::Notification(_) => true,
        }
    }
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    /// Held while numbering and sending, so events leave in the order of their numbers.
    seq: Mutex<u64>,
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub {
            tx,
            seq: Mutex::new(0),
        }
    }

    pub fn publish(&self, tenant_id: Id, payload: Payload) {
        // A poisoned counter is still a number; go on numbering.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        // No subscriber is not an error.
        let _ = self.tx.send(Arc::new(Event {
            seq: *seq,
            tenant_id,
            payload,
            published: std::time::Instant::now(),
            wire: std::sync::OnceLock::new(),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The number of the last event published.
    pub fn seq(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a subscriber asked to follow, always within its own tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Trackers(Vec<Id>),
    Campaign(Id),
    Tenant,
}

impl Scope {
    pub fn matches(&self, tenant_id: Id, e: &Event) -> bool {
        if e.tenant_id != tenant_id {
            return false;
        }
        match self {
            Scope::Tenant => true,
            Scope::Campaign(c) => e.campaign_id() == Some(*c),
            Scope::Trackers(ids) => e.tracker_id().is_some_and(|t| ids.contains(&t)),
        }
    }
}

/// One subscriber's coalescing: each tracker's updates leave at most once per `every`; an update
/// arriving sooner waits (replacing any waiting one) until its tracker's time comes. Final
/// states and notifications leave at once, with any update of the same tracker dropped.
pub struct Coalescer {
    every: Duration,
    last_sent: HashMap<Id, Instant>,
    waiting: HashMap<Id, Arc<Event>>,
}

impl Coalescer {
    pub fn new(every: Duration) -> Coalescer {
        Coalescer {
            every,
            last_sent: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Takes an event; answers what may be sent now.
    pub fn offer(&mut self, e: Arc<Event>, now: Instant) -> Option<Arc<Event>> {
        let Some(tracker) = e.tracker_id() else {
            return Some(e);
        };
        if e.is_final() {
            if matches!(e.payload, Payload::Tracker(_)) {
                self.waiting.remove(&tracker);
                self.last_sent.remove(&tracker);
            }
            return Some(e);
        }
        let due = self
            .last_sent
            .get(&tracker)
            .is_none_or(|at| now.duration_since(*at) >= self.every);
        if due {
            self.last_sent.insert(tracker, now);
            self.waiting.remove(&tracker);
            Some(e)
        } else {
            self.waiting.insert(tracker, e);
            None
        }
    }

    /// When the next waiting update may leave.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting
            .keys()
            .filter_map(|t| self.last_sent.get(t).map(|at| *at + self.every))
            .min()
    }

    /// The waiting updates whose time has come, in the order of their numbers.
    pub fn due(&mut self, now: Instant) -> Vec<Arc<Event>> {
        let ready: Vec<Id> = self
            .waiting
            .keys()
            .copied()
            .filter(|t| {
                self.last_sent
                    .get(t)
                    .is_none_or(|at| now.duration_since(*at) >= self.every)
            })
            .collect();
        let mut out: Vec<Arc<Event>> = ready
            .into_iter()
            .filter_map(|t| {
                self.last_sent.insert(t, now);
                self.waiting.remove(&t)
            })
            .collect();
        out.sort_by_key(|e| e.seq);
        out
    }

    /// Forgets everything (a fresh snapshot replaces it).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.last_sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracker event's payload: tracker `id` of tenant 1, campaign 9.
    fn tracker(id: Id, status: TrackerStatus) -> Payload {
        Payload::Tracker(Arc::new(domain::fixtures::tracker(id, status)))
    }

    fn event(seq: u64, payload: Payload) -> Arc<Event> {
        Arc::new(Event {
            seq,
            tenant_id: 1,
            payload,
            published: std::time::Instant::now(),
            wire: std::sync::OnceLock::new(),
        })
    }

    #[test]
    fn updates_of_one_tracker_leave_at_most_once_per_interval_and_the_final_one_at_once() {
        let mut c = Coalescer::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(c
            .offer(event(1, tracker(5, TrackerStatus::Active)), ms(0))
            .is_some());
        // Too soon: waits, and a newer one replaces it.
        assert!(c
            .offer(event(2, tracker(5, TrackerStatus::Active)), ms(10))
            .is_none());
        assert!(c
            .offer(event(3, tracker(5, TrackerStatus::Active)), ms(20))
            .is_none());
        // Another tracker is not held back by the first.
        assert!(c
            .offer(event(4, tracker(6, TrackerStatus::Active)), ms(30))
            .is_some());
        assert_eq!(c.next_due(), Some(ms(100)));
        assert!(c.due(ms(99)).is_empty());
        let sent: Vec<u64> = c.due(ms(100)).iter().map(|e| e.seq).collect();
        assert_eq!(sent, vec![3]);
        assert!(c
            .offer(event(5, tracker(5, TrackerStatus::Active)), ms(150))
            .is_none());
        // The end never waits, and the update it replaces is dropped.
        let end = c.offer(event(6, tracker(5, TrackerStatus::Completed)), ms(160));
        assert_eq!(end.map(|e| e.seq), Some(6));
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn a_scope_sees_only_its_tenants_events_it_asked_for() {
        let e = event(1, tracker(5, TrackerStatus::Active));
        assert!(Scope::Tenant.matches(1, &e));
        assert!(!Scope::Tenant.matches(2, &e));
        assert!(Scope::Campaign(9).matches(1, &e));
        assert!(!Scope::Campaign(8).matches(1, &e));
        assert!(Scope::Trackers(vec![4, 5]).matches(1, &e));
        assert!(!Scope::Trackers(vec![4]).matches(1, &e));
    }

    #[tokio::test]
    async fn events_are_numbered_in_the_order_they_leave() {
        let hub = Hub::new(8);
        let mut rx = hub.subscribe();
        hub.publish(1, tracker(5, TrackerStatus::Active));
        hub.publish(2, tracker(6, TrackerStatus::Active));
        assert_eq!(rx.recv().await.unwrap().seq, 1);
        assert_eq!(rx.recv().await.unwrap().seq, 2);
        assert_eq!(hub.seq(), 2);
    }
}
