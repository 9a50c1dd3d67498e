//! OVSDB (RFC 7047) clients for the `Open_vSwitch` and `OVN_Northbound` databases, and OVS
//! port plumbing for the secondary (low-latency) lanes.
//!
//! # Layout
//!
//! - [`Client`] (`client/`): one connection to one `ovsdb-server`, `unix:PATH` or
//!   `tcp:HOST:PORT`, driven by a background task: JSON-RPC framing, request ids, a timeout on
//!   every call, answers to the server's `echo` (its inactivity probe), our own probe,
//!   reconnect with exponential backoff (0.5 s doubling to 30 s) and monitors re-sent after
//!   each reconnect.
//! - [`Op`], [`Cond`], [`Mutation`] (`ops.rs`): transaction operations as plain values
//!   (`insert` with `uuid-name`, `select`, `update`, `mutate`, `delete`, `wait`, `comment`),
//!   and reply parsing into [`OpResult`]s or an [`Error`] naming database, table, operation and
//!   the server's `error`/`details`.
//! - [`Monitor`] (`monitor.rs`): `monitor` requests and their `<table-updates>`.
//! - [`value`]: OVSDB values to and from JSON; [`Row`] getters.
//! - [`OvsDb`] (`ovs.rs`) and [`NbDb`] (`nb.rs`): typed, idempotent operations; both read,
//!   compare, and write only what differs (`ensure.rs`), so calling twice writes nothing the
//!   second time ([`Action::Unchanged`]).
//!
//! # Example
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use ovn_bridge::{Client, NbDb, OvsDb};
//!
//! # async fn attach() -> ovn_bridge::Result<()> {
//! let nb = NbDb::new(Client::new("tcp:192.168.122.10:6641")?);
//! let ovs = OvsDb::new(Client::new("unix:/run/openvswitch/db.sock")?);
//! let subnet = BTreeMap::from([("subnet".to_string(), "10.1.0.0/24".to_string())]);
//! nb.ensure_logical_switch("blue", &subnet, &BTreeMap::new()).await?;
//! let lsp = "default.blue_default_pod1";
//! nb.ensure_lsp("blue", lsp, &["dynamic".into()], &[], &BTreeMap::new()).await?;
//! let ids = BTreeMap::from([("iface-id".to_string(), lsp.to_string())]);
//! ovs.ensure_port("br-int", "lan0123abcd", "", &ids).await?;
//! let cancel = std::future::pending::<()>();
//! let waited = ovs
//!     .wait_interface_column("lan0123abcd", "external_ids:ovn-installed", "true", Duration::from_secs(10), cancel)
//!     .await?;
//! println!("ovn-installed after {waited:?}");
//! # Ok(())
//! # }
//! ```
//!
//! # What comes from the `ovsdb` crate (0.0.6) and what is ours
//!
//! Used from `ovsdb` (feature `protocol`, no client): the value notation types
//! [`ovsdb::protocol::Uuid`] (re-exported as [`Uuid`]), `Map`, `Set` and `UuidSet`, which
//! serialize exactly as RFC 7047 §5.1 says and decode the server's `uuid`, `map` and uuid-set
//! values; and [`ovsdb::schema::Schema`], which [`Client::get_schema`] returns and
//! [`Client::check_schema`] uses to fail early when a server lacks a table or column. One shim
//! is needed there: `ovsdb-server` sends a one-value `enum` as the bare atom
//! (`OVN_Northbound`'s `Meter_Band.action`: `"enum": "drop"`), which `Schema` refuses, so the
//! reply is rewritten to `["set", ["drop"]]` before parsing. (`Schema` also only knows string
//! enums; the two schemas used here have no others.)
//!
//! Not used, and why (checked against the 0.0.6 source):
//! - its `Client` and `Codec`: the codec `println!`s every message sent and received to
//!   stdout; it appends the whole read buffer to a finished message, so two messages in one
//!   read fail to parse; it does not skip escaped quotes inside strings. Its `Request`
//!   deserializer parses the *key* `"id"` as the uuid, so every request from the server fails
//!   to decode, and the client loop hits `todo!()` on a server request (the `echo` inactivity
//!   probe over TCP, every 5 s) and on any decode error: the task panics. It has no `monitor`,
//!   no `update` notifications, no timeouts, no reconnect, and `Response::error` is a string
//!   where `ovsdb-server` sends an object.
//! - its `Operation`: only `select`, with `where` as a list of strings.
//! - its `Set<T>` for decoding: the server sends a one-element set as the bare atom, which
//!   it rejects, and it panics on a malformed set; `Optional<T>` encodes `None` as an empty
//!   *map*. [`Row`] decodes sets itself.
//!
//! Ours: the framing (`framing.rs`), the client task, `monitor`, operations, reply and error
//! parsing, and the typed databases.
//!
//! What this crate does not do: `monitor_cond`/`update2` (OVS extensions; a plain `monitor`
//! of the Interface table's `name` plus one column is small on a node), locks, TLS.

mod client;
mod ensure;
mod error;
mod framing;
mod monitor;
mod nb;
mod ops;
mod ovs;
mod remote;
pub mod value;

pub use client::{Client, ClientOptions, ClientStats, ConnState};
pub use ensure::{Action, Ensured};
pub use error::{Error, Result, ServerError};
pub use monitor::{EventKind, Monitor, MonitorEvent, MonitorRequest, RowUpdate, TableUpdates};
pub use nb::{Lsp, LspAddresses, NbDb, OVN_NORTHBOUND};
pub use ops::{Cond, Mutation, Op, OpResult, Until};
pub use ovs::{FailMode, OvsDb, PortInfo, OPEN_VSWITCH};
pub use ovsdb::protocol::Uuid;
pub use remote::Remote;
pub use value::Row;
