//! campaignd publishes, republishes, pauses, finishes and deletes a shop's campaign products on
//! marketplaces (Jumpseller, WooCommerce, ...), within each account's rate limit, with progress
//! that survives restarts. It is one process with an embedded store: an appliance.
//!
//! # Layout
//! - [`domain`]: records and the rules of actions, phases and progress; no I/O.
//! - [`store`]: sled trees and the versioned record envelope.
//! - [`actors`]: supervisor, campaign runs, marketplace workers, tracker, notifier.
//! - [`marketplaces`]: the `Marketplace` trait, adapters, limiters, the HTTP client.
//! - [`egress`]: where tenant-given URLs may lead.
//! - [`events`]: the hub of live events and the rules of their delivery.
//! - [`api`]: the warp HTTP API, with WebSocket and SSE progress and the dashboard.
//! - [`logs`]: where log lines go, and their reopening on SIGHUP.
//! - [`metrics`]: the Prometheus metrics.
//! - [`secrets`]: the key that seals credentials at rest.
//! - [`sim`]: marketplace simulators for tests, benchmarks and the demo.
//! - [`app`]: starting and stopping the whole service; [`cli`] and [`demo`]: the commands.

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod logs;
pub mod memory;
pub mod ops;

pub use ::domain::{self, clock};
pub use ::engine::{self as actors, events};
pub use ::marketplaces::{self, sim};
pub use ::metrics;
pub use ::net::egress;
pub use ::store::{self, secrets};
