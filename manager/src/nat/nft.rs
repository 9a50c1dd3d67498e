//! Effects: running `nft -j` to load, inspect and delete the `natOutgoing` tables.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::rules::{loaded_digest, render, render_remove, Family, NatPool, NatRules, TABLE};
use super::{Error, Result};

/// Where Debian installs `nft`; a daemon's `PATH` (systemd's) need not contain `/usr/sbin`.
pub const DEFAULT_NFT: &str = "/usr/sbin/nft";

/// What [`Nft::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The loaded tables already matched; nothing ran but the listing.
    Unchanged,
    /// One transaction replaced (or deleted) the tables that differed.
    Updated,
}

/// The `nft` binary to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    program: PathBuf,
}

impl Default for Nft {
    /// [`DEFAULT_NFT`] if it exists, else `nft` from `PATH`.
    fn default() -> Self {
        let program = if Path::new(DEFAULT_NFT).exists() {
            DEFAULT_NFT.into()
        } else {
            "nft".into()
        };
        Nft { program }
    }
}

/// [`Nft::apply`] with the default `nft`.
pub fn apply(pools: &[NatPool]) -> Result<Applied> {
    Nft::default().apply(pools)
}

/// [`Nft::remove`] with the default `nft`.
pub fn remove() -> Result<()> {
    Nft::default().remove()
}

impl Nft {
    /// A specific `nft` binary.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Nft {
            program: program.into(),
        }
    }

    /// The binary this runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Makes `table ip lanes` and `table ip6 lanes` match the pools (see [`super`]), or
    /// deletes a family's table when none of its pools has `natOutgoing`.
    ///
    /// Reads the loaded digest of each family first (`nft -j list table <family> lanes`); if
    /// every family already matches, nothing is written and the counters live on. Otherwise
    /// one `nft -j -f -` transaction rewrites the families that differ.
    pub fn apply(&self, pools: &[NatPool]) -> Result<Applied> {
        let rules = NatRules::from_pools(pools);
        let stale: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|&family| self.loaded(family) != rules.get(family).map(|r| r.digest()))
            .collect();
        if stale.is_empty() {
            return Ok(Applied::Unchanged);
        }
        let ops: Vec<String> = stale.iter().map(|f| format!("{} {TABLE}", f.name())).collect();
        self.load(
            &render(&rules, &stale),
            &format!("nft -j -f - (table {})", ops.join(", table ")),
        )?;
        Ok(Applied::Updated)
    }

    /// [`Nft::apply`] without the check: rewrites both families (resetting the counters), for
    /// when the tables may have been edited by hand.
    pub fn reload(&self, pools: &[NatPool]) -> Result<()> {
        let batch = render(&NatRules::from_pools(pools), &Family::ALL);
        self.load(&batch, "nft -j -f - (table ip lanes, table ip6 lanes)")
    }

    /// `nft delete table ip lanes; nft delete table ip6 lanes` in one transaction; absent
    /// tables are fine. For when no pool has `natOutgoing` any more, or at uninstall.
    pub fn remove(&self) -> Result<()> {
        self.load(&render_remove(), "nft -j -f - (delete table ip lanes, table ip6 lanes)")
    }

    /// `nft -j list table <family> lanes`; `Ok(None)` when the table does not exist.
    pub fn list(&self, family: Family) -> Result<Option<Value>> {
        let op = format!("nft -j list table {} {TABLE}", family.name());
        match self.run(&["-j", "list", "table", family.name(), TABLE], None, &op) {
            Ok(out) => serde_json::from_slice(&out).map(Some).map_err(|e| Error::Output {
                op,
                detail: e.to_string(),
            }),
            Err(Error::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The digest of the loaded table, `None` if absent, unreadable or not ours.
    fn loaded(&self, family: Family) -> Option<String> {
        match self.list(family) {
            Ok(listing) => listing.as_ref().and_then(loaded_digest),
            Err(err) => {
                tracing::debug!(error = %err, "reading the natOutgoing table; rewriting it");
                None
            }
        }
    }

    /// `nft -j -f -` with `batch` on stdin: all of it, or nothing, takes effect.
    fn load(&self, batch: &Value, op: &str) -> Result<()> {
        self.run(&["-j", "-f", "-"], Some(batch.to_string().as_bytes()), op)
            .map(drop)
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>, op: &str) -> Result<Vec<u8>> {
        let spawn_error = |source| Error::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // nft reads all of stdin before it answers, so this cannot deadlock on its output.
            pipe.write_all(input).map_err(spawn_error)?;
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(Error::Failed {
            op: op.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
