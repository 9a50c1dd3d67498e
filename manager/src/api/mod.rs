//! The gRPC API (`lanes.v1`): the `Cni` service the shim calls, the `Node`
//! service for orchestrators and lanesctl, plus health and reflection, served
//! on the unix socket and optionally on TCP.

pub mod client;
pub mod cni;
pub mod node;
pub mod server;
