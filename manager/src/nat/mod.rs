//! `natOutgoing`: masquerade pod traffic from pools that ask for it when it leaves for a
//! destination outside every pool, Calico style, in nftables tables of our own.
//!
//! The whole state, for pools 10.244.0.0/16 (natOutgoing) and 10.245.0.0/16 (not):
//!
//! ```text
//! table ip lanes {
//!     set lanes-pools { type ipv4_addr; flags interval; elements = { 10.244.0.0/16, 10.245.0.0/16 } }
//!     set lanes-masq-pools { type ipv4_addr; flags interval; elements = { 10.244.0.0/16 } }
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr @lanes-masq-pools ip daddr != @lanes-pools counter masquerade fully-random \
//!             comment "lanes natOutgoing sha256:<digest>"
//!     }
//! }
//! ```
//!
//! and the same as `table ip6 lanes` for IPv6 pools. Pool-to-pool traffic (across nodes too)
//! keeps its source. A family whose pools have no `natOutgoing` has no table.
//!
//! - [`rules`] (pure): pools → [`rules::NatRules`] → the `nft -j` JSON batch.
//! - [`nft`] (effects): runs `nft -j -f -` with the batch, atomically (one transaction that
//!   adds, deletes and re-adds each table) and only when the rule's digest comment differs
//!   from what is loaded, so an unchanged state keeps its counters.
//!
//! `nft` runs as a child process in the netns of the calling thread (the daemon's), and
//! blocks for a few milliseconds: call it from `tokio::task::spawn_blocking`.
//! The JSON is built with `serde_json` rather than the `nftables` crate (0.6, which also
//! pipes JSON into `nft`): one rule and two sets do not need another dependency.

pub mod nft;
pub mod rules;

use std::io;
use std::path::PathBuf;

pub use nft::{apply, remove, Applied, Nft};
pub use rules::{Family, NatPool, NatRules};

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Running `nft` failed; the message names the command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be started (not installed, not executable).
    #[error("run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `nft` ran and failed; `stderr` is its message (e.g. "Operation not permitted").
    #[error("{op}: nft exited with {status}: {stderr}")]
    Failed { op: String, status: String, stderr: String },
    /// `nft -j` printed something that is not the JSON we asked for.
    #[error("{op}: unexpected nft output: {detail}")]
    Output { op: String, detail: String },
}

#[cfg(test)]
mod tests;
