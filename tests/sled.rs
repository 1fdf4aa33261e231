//! The black-box suite on the embedded store: the real app on port 0 with a temporary sled
//! directory, and marketplace simulators over HTTP on 127.0.0.1. `tests/postgres.rs` runs the
//! same tests on PostgreSQL; the simulators' own tests run here only.

/// The store every test of this binary runs on.
pub const BACKEND: helpers::Backend = helpers::Backend::Sled;

#[path = "api/access.rs"]
mod access;
#[path = "api/actions.rs"]
mod actions;
#[path = "api/admin.rs"]
mod admin;
#[path = "api/adoption.rs"]
mod adoption;
#[path = "api/child.rs"]
mod child;
#[path = "api/crash.rs"]
mod crash;
#[path = "api/dashboard.rs"]
mod dashboard;
#[path = "api/drift.rs"]
mod drift;
#[path = "api/egress.rs"]
mod egress;
#[path = "api/failures.rs"]
mod failures;
#[path = "api/faults.rs"]
mod faults;
#[path = "api/hardening.rs"]
mod hardening;
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "api/jumpseller_spec.rs"]
mod jumpseller_spec;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/live.rs"]
mod live;
#[path = "api/locks.rs"]
mod locks;
#[path = "api/marketplaces.rs"]
mod marketplaces;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/openapi.rs"]
mod openapi;
use ::store::pg_server;
#[path = "api/plans.rs"]
mod plans;
#[path = "api/procs.rs"]
mod procs;
#[path = "api/real_stores.rs"]
mod real_stores;
#[path = "api/restart.rs"]
mod restart;
#[path = "api/schedule.rs"]
mod schedule;
#[path = "api/secrets.rs"]
mod secrets;
#[path = "api/settle.rs"]
mod settle;
#[path = "api/signals.rs"]
mod signals;
#[path = "api/simulators.rs"]
mod simulators;
