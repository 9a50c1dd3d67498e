//! Secondary networks (eth1, eth2, …): OVN logical switches defined by Multus
//! `NetworkAttachmentDefinition`s and requested per pod with `k8s.v1.cni.cncf.io/networks`.
//!
//! # Layout
//! - [`nad`]: a NAD document (`k8s.cni.cncf.io/v1`, config type `ovn-k8s-cni-overlay` or
//!   `lanes`) to a validated [`Network`] ([`parse_nad`]); [`subnets`]: its address fields.
//! - [`selection`]: the pod's `k8s.v1.cni.cncf.io/networks` annotation, short and JSON forms
//!   ([`parse_selection`]), Multus' interface numbering ([`assign_interfaces`]) and pairing with
//!   networks ([`resolve`]).
//! - [`status`]: the `k8s.v1.cni.cncf.io/network-status` annotation, byte for byte as Multus
//!   writes it ([`render_network_status`]).
//! - [`naming`]: OVN/OVS names as ovn-kubernetes gives them (logical switch and port, OVS
//!   `external_ids`) and the host-side veth name.
//!
//! Everything here is pure: no OVSDB, netlink or files. Errors become CNI error code 7
//! (`From<…> for CniError`).
//!
//! A pod's secondary attachments are worked out as
//! `parse_nad` over the store's NADs → `parse_selection(annotation, pod namespace)` →
//! `resolve(&selections, &networks)` → per [`Resolved`]: [`naming::lsp_name`],
//! [`naming::host_ifname`], [`naming::PortIds::external_ids`]; after ADD,
//! [`pod_network_status`] + [`render_network_status`].

pub mod nad;
pub mod naming;
pub mod selection;
pub mod status;
pub mod subnets;

pub use nad::{parse_nad, NadError, Network, PluginType, Topology};
pub use selection::{assign_interfaces, parse_selection, resolve, Resolved, Selection, SelectionError};
pub use status::{parse_network_status, pod_network_status, render_network_status, AttachmentStatus, NetworkStatus};
