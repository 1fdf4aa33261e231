//! campaignd publishes, republishes, pauses, finishes and deletes a shop's campaign products on
//! marketplaces (Jumpseller, WooCommerce, ...), within each account's rate limit, with progress
//! that survives restarts. It is one process with an embedded store: an appliance.
//!
//! # Layout
//! The service is a Cargo workspace (ARCHITECTURE.md, "Crates"); this package is the binary's
//! wiring and commands, and re-exports each crate under the module name it had before the
//! split, for the tests and benchmarks:
//! [`domain`] and [`clock`] (crate `domain`), [`store`] and [`secrets`] (`store`), [`metrics`],
//! [`egress`] (`net`), [`marketplaces`] and [`sim`] (`marketplaces`), [`actors`] and [`events`]
//! (`engine`), [`api`], [`admin`] and [`ops`] (`api`), and [`client`], the API's one typed
//! client, which the CLI, the demo and the benchmarks speak through.
//!
//! Here: [`app`] builds and stops the whole service, [`config`] reads the settings each crate
//! owns into one `Config`, [`cli`] and [`demo`] are the commands, [`logs`] says where log lines
//! go (and reopens them on SIGHUP), and [`memory`] reads the process's resident size.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod logs;
pub mod memory;

pub use ::api::{self, admin, ops};
pub use ::client;
pub use ::domain::{self, clock};
pub use ::engine::{self as actors, events};
pub use ::marketplaces::{self, sim};
pub use ::metrics;
pub use ::net::egress;
pub use ::store::{self, secrets};
