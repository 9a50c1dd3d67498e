//! OVSDB (RFC 7047) clients for the `Open_vSwitch` and `OVN_Northbound`
//! databases and OVS port plumbing for the secondary (low-latency) lanes.
//!
//! Placeholder crate: the secondary-network work fills it in. It exists now
//! so the workspace layout matches DESIGN.md.
