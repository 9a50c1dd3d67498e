//! OVSDB (RFC 7047) clients for the `Open_vSwitch` and `OVN_Northbound` databases, and OVS
//! port plumbing for the secondary (low-latency) lanes.
mod client;
mod error;
mod framing;
mod monitor;
mod ops;
mod remote;
pub mod value;

pub use client::{Client, ClientOptions, ClientStats, ConnState};
pub use error::{Error, Result, ServerError};
pub use monitor::{EventKind, Monitor, MonitorEvent, MonitorRequest, RowUpdate, TableUpdates};
pub use ops::{Cond, Mutation, Op, OpResult, Until};
pub use ovsdb::protocol::Uuid;
pub use remote::Remote;
pub use value::Row;
