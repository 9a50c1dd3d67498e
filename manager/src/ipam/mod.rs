//! IPAM with Calico's semantics: pools cut into node-affine blocks, claimed
//! in two phases, borrowed from when a node runs out, never handing out an
//! address twice. [`block`] is the pure data model, [`allocator`] the node's
//! allocator over a [`crate::store::StateStore`].

pub mod allocator;
pub mod block;

pub use allocator::{Assigned, BlockHooks, Ipam, IpamError, NoHooks, Policy, PoolChoice};
pub use block::{Allocation, Block, BlockState, HandleKey};
