//! The actors that carry actions out: a Supervisor (locks, starts, take-overs), a CampaignRun per
//! action, a MarketplaceWorker per connection in a run, and the Tracker, single writer of
//! progress. The API only sends them messages; they are the only callers of marketplaces.
//!
//! # Layout
//! - `supervisor`: one per node; locks, starts, take-overs, leases and work items.
//! - `run`: a `CampaignRun` per action; `worker`: a `MarketplaceWorker` per connection of a run.
//! - `tracker`: the single writer of progress and the end of runs; `events`: the hub of live
//!   events; `notifier`: webhook deliveries from the outbox.
//! - `scheduler`: the steps of campaigns' schedules; `dry_run`: plans that send nothing.
//! - `config`: the `[runs]`, `[cluster]`, `[webhooks]` and `[events]` settings.

pub mod config;
pub mod dry_run;
pub mod events;
pub mod notifier;
pub mod run;
pub mod scheduler;
pub mod supervisor;
pub mod tracker;
pub mod worker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::ArbiterHandle;

use crate::config::{ClusterConfig, RunConfig};
use domain::clock::Clock;
use domain::{Action, CampaignStatus, Id, Millis, Schedule, Step};
use marketplaces::Registry;
use store::{SharedStore, StoreError};

/// What every actor of a run needs; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub store: SharedStore,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    pub runs: RunConfig,
    pub cluster: ClusterConfig,
    /// This node's name on the locks and leases it takes.
    pub instance: String,
    /// Threads the marketplace workers run on, so that connections proceed in parallel while
    /// the supervisor and tracker keep the main arbiter.
    pub worker_threads: Arc<WorkerThreads>,
    pub metrics: Arc<metrics::Metrics>,
}

/// A fixed pool of arbiters, handed out in turn.
pub struct WorkerThreads {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
}

impl WorkerThreads {
    pub fn new(arbiters: Vec<ArbiterHandle>) -> WorkerThreads {
        WorkerThreads {
            arbiters,
            next: AtomicUsize::new(0),
        }
    }

    /// The next arbiter in turn; `None` when the pool is empty (workers then share the
    /// caller's arbiter).
    pub fn next(&self) -> Option<&ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters.get(i)
    }
}

/// An action to start, already checked for shape by the API.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    pub tenant_id: Id,
    pub campaign_id: Id,
    pub action: Action,
    /// Only these products (sorted), for actions on chosen products.
    pub product_ids: Option<Vec<Id>>,
    /// Only these connections of the campaign.
    pub connection_ids: Option<Vec<Id>>,
    pub chunk_size: usize,
    pub fail_fast: bool,
    pub force: bool,
    /// An action on chosen products (the seed's CampaignProductController), which leaves the
    /// campaign's own status alone.
    pub product_level: bool,
    /// A retry of errored products: the chosen products that are errored are taken, whatever
    /// the action's own rule.
    pub retry: bool,
    /// Whether the run's end writes a notification and queues a webhook.
    pub notify: bool,
    /// Set when the scheduler starts a campaign's step.
    pub scheduled: Option<ScheduledStep>,
}

/// A step of a campaign's schedule, as the scheduler asks for it: the start writes the step's
/// record into `schedule` (read at its version, with the steps it passes over already
/// recorded), so the step is taken once or not at all.
#[derive(Debug, Clone)]
pub struct ScheduledStep {
    pub step: Step,
    pub due_at: Millis,
    pub schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub tracker_id: Id,
    pub total_products: u64,
}

/// Why an action could not start. Nothing was changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the service is stopping; try again once it is back")]
    ShuttingDown,
    #[error("cannot {} a campaign that is {}", .action.as_str(), .status.as_str())]
    InvalidState {
        action: Action,
        status: CampaignStatus,
    },
    #[error("another action is in progress on this campaign (tracker {tracker_id}); use force to take over")]
    InProgress { tracker_id: Id },
    #[error("no product of this campaign can be {} in its current status", .0.done_to())]
    NothingToDo(Action),
    /// A marketplace the request names is not one of the campaign's.
    #[error("{0}")]
    NotInCampaign(String),
    #[error("another start on this campaign came first")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}
