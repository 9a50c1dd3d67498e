//! lanesd, the Lanes node network daemon, as a library: the binaries in
//! `src/bin` only parse arguments and call in here.
//!
//! Pure logic ([`cni`], [`ipam::block`], [`resources`]) is kept apart from
//! effects ([`dataplane`], [`store`], [`api`]); [`workload`] joins them.

pub mod api;
pub mod bgp;
pub mod cni;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod ipam;
pub mod k8s;
pub mod metrics;
pub mod nat;
pub mod resources;
pub mod secondary;
pub mod store;
pub mod workload;
