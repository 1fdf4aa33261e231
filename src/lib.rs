//! campaignd publishes, republishes, pauses, finishes and deletes a shop's campaign products on
//! marketplaces (Jumpseller, WooCommerce, ...), within each account's rate limit, with progress
//! that survives restarts. It is one process with an embedded store: an appliance.
//!
//! # Layout
//! The service is a Cargo workspace (ARCHITECTURE.md, "Crates"); this package is the binary's
//! wiring and commands. It re-exports nothing: the tests and benchmarks name each crate
//! (`::engine`, `::marketplaces::sim`, `::client`, ...), so every fact has one path.
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
