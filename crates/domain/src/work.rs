//! The durable shape of a run's work: one `WorkItem` per (run, connection), which the node
//! holding that connection's lease carries out, and the `TrackerPatch` a node writes of the part
//! of a tracker it works on. Several nodes can work on one run; the rows, not any node's memory,
//! say what is left.

use serde::{Deserialize, Serialize};

use super::{ConnProgress, Id, Millis, Tracker};

/// One connection's part of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub tracker_id: Id,
    pub connection_id: Id,
    pub tenant_id: Id,
    pub campaign_id: Id,
    /// How many times a node took it up: above zero, a create may have been sent whose
    /// outcome nobody stored, so the next taker reconciles before creating.
    pub attempts: u32,
    pub done: bool,
    /// Why this part failed the whole run (fail-fast, a broken store), when it did.
    pub failure: Option<String>,
    /// Set when the run is asked to stop (force, reset, fail-fast elsewhere, the watchdog):
    /// whoever works on it stops between calls and ends it.
    pub cancel: Option<String>,
}

impl WorkItem {
    pub fn new(tracker: &Tracker, connection_id: Id) -> WorkItem {
        WorkItem {
            tracker_id: tracker.id,
            connection_id,
            tenant_id: tracker.tenant_id,
            campaign_id: tracker.campaign_id,
            attempts: 0,
            done: false,
            failure: None,
            cancel: None,
        }
    }
}

/// What one node changes of a tracker: the progress of the connections it works on (absolute
/// counts, so a patch written twice is the same patch), lines for the event log, and the first
/// error message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackerPatch {
    pub connections: Vec<ConnProgress>,
    pub events: Vec<String>,
    pub error_message: Option<String>,
    pub updated_at: Millis,
}

impl TrackerPatch {
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty() && self.events.is_empty() && self.error_message.is_none()
    }
}

impl Tracker {
    /// Ends an active run at `now`: completed, or failed with `failure`, which also records
    /// where it stopped (for whoever takes over or retries) after `event`, if any.
    pub fn end(&mut self, event: Option<String>, failure: Option<String>, now: super::Millis) {
        self.metadata.events.extend(event);
        if failure.is_some() {
            let (done, total) = self
                .connections
                .iter()
                .flat_map(|c| c.phases.iter())
                .fold((0, 0), |(d, n), p| (d + p.processed(), n + p.total));
            self.metadata.events.push(format!(
                "stopped at {:.1} %: {done} of {total} product phases done",
                self.progress()
            ));
            self.status = super::TrackerStatus::Failed;
            self.error_message = failure;
        } else {
            self.status = super::TrackerStatus::Completed;
        }
        self.completed_at = Some(now);
        self.updated_at = now;
    }

    /// Applies a node's patch; a tracker that ended is left as it is.
    pub fn apply(&mut self, patch: &TrackerPatch) -> bool {
        if self.status != super::TrackerStatus::Active {
            return false;
        }
        for c in &patch.connections {
            if let Some(slot) = self.connection_mut(c.connection_id) {
                *slot = c.clone();
            }
        }
        self.metadata.events.extend(patch.events.iter().cloned());
        if self.error_message.is_none() {
            self.error_message = patch.error_message.clone();
        }
        self.updated_at = self.updated_at.max(patch.updated_at);
        true
    }
}

/// Why a run whose items are all done failed, if it did: the first part that failed it, else
/// the first reason it was asked to stop for.
pub fn run_failure(items: &[WorkItem]) -> Option<String> {
    items
        .iter()
        .find_map(|i| i.failure.clone())
        .or_else(|| items.iter().find_map(|i| i.cancel.clone()))
}

/// Whether this is the end of a run: it has items, and every one is done.
pub fn all_done(items: &[WorkItem]) -> bool {
    !items.is_empty() && items.iter().all(|i| i.done)
}

/// A node of the service, as the others see it: alive while its heartbeat is recent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub expires_at: Millis,
}

/// A node's lease on a marketplace connection: while it holds, that node alone sends requests
/// to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub connection_id: Id,
    pub owner: String,
    pub expires_at: Millis,
}

/// How many connections with work one node may lease: its share over the live nodes,
/// rounded up, so that adding a node spreads the load and no connection waits forever.
pub fn fair_share(connections_with_work: usize, live_nodes: usize) -> usize {
    connections_with_work.div_ceil(live_nodes.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Phase, System, TrackerStatus};

    fn item(
        connection_id: Id,
        done: bool,
        failure: Option<&str>,
        cancel: Option<&str>,
    ) -> WorkItem {
        WorkItem {
            tracker_id: 1,
            connection_id,
            tenant_id: 1,
            campaign_id: 1,
            attempts: 0,
            done,
            failure: failure.map(Into::into),
            cancel: cancel.map(Into::into),
        }
    }

    #[test]
    fn a_run_ends_when_all_its_items_are_done_and_fails_with_the_first_failure() {
        let cases: &[(&[WorkItem], bool, Option<&str>)] = &[
            (&[], false, None),
            (
                &[item(1, true, None, None), item(2, false, None, None)],
                false,
                None,
            ),
            (
                &[item(1, true, None, None), item(2, true, None, None)],
                true,
                None,
            ),
            (
                &[
                    item(1, true, None, Some("forced")),
                    item(2, true, Some("fail-fast"), Some("forced")),
                ],
                true,
                Some("fail-fast"),
            ),
            (
                &[
                    item(1, true, None, Some("reset")),
                    item(2, true, None, None),
                ],
                true,
                Some("reset"),
            ),
        ];
        for (items, done, failure) in cases {
            assert_eq!(all_done(items), *done, "{items:?}");
            assert_eq!(run_failure(items).as_deref(), *failure, "{items:?}");
        }
    }

    #[test]
    fn a_fair_share_rounds_up_and_is_never_zero() {
        let cases = [
            (0, 1, 1),
            (40, 1, 40),
            (40, 3, 14),
            (40, 2, 20),
            (1, 3, 1),
            (5, 0, 5),
        ];
        for (work, nodes, share) in cases {
            assert_eq!(fair_share(work, nodes), share, "{work} over {nodes}");
        }
    }

    #[test]
    fn a_run_ends_completed_or_failed_with_where_it_stopped() {
        let mut t = crate::fixtures::tracker(1, TrackerStatus::Active);
        t.connections = vec![ConnProgress::new(
            1,
            System::Jumpseller,
            &[Phase::Processing],
            4,
        )];
        t.connections[0].phases[0].successful = 1;
        let mut failed = t.clone();
        t.end(Some("done by hand".into()), None, 50);
        assert_eq!(t.status, TrackerStatus::Completed);
        assert_eq!(t.metadata.events, ["done by hand"]);
        assert_eq!(
            (t.completed_at, t.updated_at, t.error_message),
            (Some(50), 50, None)
        );
        failed.end(None, Some("the store refused".into()), 60);
        assert_eq!(failed.status, TrackerStatus::Failed);
        assert_eq!(failed.error_message.as_deref(), Some("the store refused"));
        assert_eq!(
            failed.metadata.events,
            ["stopped at 25.0 %: 1 of 4 product phases done"]
        );
        assert_eq!(failed.completed_at, Some(60));
    }

    #[test]
    fn a_patch_replaces_its_connections_and_appends_events_on_an_active_tracker_only() {
        let mut t = crate::fixtures::tracker(1, TrackerStatus::Active);
        t.connections = vec![
            ConnProgress::new(1, System::Jumpseller, &[Phase::Processing], 5),
            ConnProgress::new(2, System::Jumpseller, &[Phase::Processing], 5),
        ];
        let mut mine = t.connections[1].clone();
        mine.record(0, 3, 1);
        let patch = TrackerPatch {
            connections: vec![mine.clone()],
            events: vec!["took over".into()],
            error_message: Some("first".into()),
            updated_at: 9,
        };
        assert!(t.apply(&patch));
        assert!(t.apply(&TrackerPatch {
            error_message: Some("second".into()),
            ..TrackerPatch::default()
        }));
        assert_eq!(t.connections[1], mine);
        assert_eq!(t.connections[0].phases[0].processed(), 0);
        assert_eq!(
            t.metadata.events.last().map(String::as_str),
            Some("took over")
        );
        assert_eq!(t.error_message.as_deref(), Some("first"));
        t.status = TrackerStatus::Completed;
        assert!(!t.apply(&patch));
    }
}
