//! The black-box suite on PostgreSQL: the same tests as `tests/sled.rs`, each on a fresh
//! database of a private server the harness starts (`store::pg_server`), plus the tests of
//! what only a shared database has (`api/postgres.rs`).

/// The store every test of this binary runs on.
pub const BACKEND: helpers::Backend = helpers::Backend::Postgres;

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
#[path = "api/cluster.rs"]
mod cluster;
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
#[path = "api/postgres.rs"]
mod postgres;
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
