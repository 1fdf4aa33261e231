//! Black-box tests of the whole service: the real app on port 0, a temporary sled directory and
//! marketplace simulators over HTTP on 127.0.0.1.

mod access;
mod actions;
mod crash;
mod dashboard;
mod failures;
mod faults;
mod helpers;
mod jumpseller_spec;
mod limits;
mod live;
mod locks;
mod marketplaces;
mod restart;
mod simulators;
