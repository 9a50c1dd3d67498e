//! Reading a store directory, and keeping the last good state across reloads.
//!
//! A bad document never stops the daemon: it is rejected, and whatever was accepted for the same
//! resource before stays. [`Loader::apply`] enforces, in this order:
//! 1. per document: the kind's own validation ([`super::parse_file`]);
//! 2. immutability: an IPPool's `cidr` and `blockSize` cannot change under the same name (delete
//!    the document, reload, then add the new one). The daemon keeps them as [`PoolPin`]s in its
//!    state, so a pool edited while lanesd was down is refused at the next start too;
//! 3. the previous version of every refused document, and every resource of a file that is not
//!    valid YAML, is carried over unless another document now provides it;
//! 4. duplicates (same kind, namespace and name), overlapping pools, and BGPPeers that would
//!    open the same session (same `peerIP` from the same nodes): the later document is
//!    rejected. "Later" is file order then document order, except that resources already
//!    accepted before go first: a new pool can never push out a pool that is in use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::ippool::overlaps;
use super::meta::FieldError;
use super::{parse_file, ParsedDocument, Rejection, Resource, ResourceKey, Resources};

/// Files bigger than this are refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 8 << 20;

/// One `*.yaml` / `*.yml` file of a store directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedFile {
    pub path: PathBuf,
    /// `path` as text, the `source` of its resources and rejections.
    pub source: String,
    /// Its documents, or why the file as a whole could not be used (unreadable, invalid YAML).
    pub documents: Result<Vec<ParsedDocument>, Rejection>,
}

/// Every resource file of a directory, in file-name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedFiles {
    pub files: Vec<LoadedFile>,
}

/// Reads every `*.yaml` and `*.yml` file directly in `dir` (not in subdirectories, not
/// dotfiles; symlinks followed, as in a mounted ConfigMap), sorted by name. Errors only when the
/// directory itself cannot be listed; a file that cannot be read becomes a file-level rejection.
pub fn load_dir(dir: &Path) -> io::Result<LoadedFiles> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::debug!(?name, "skipping a file whose name is not UTF-8");
            continue;
        };
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        match fs::metadata(entry.path()) {
            Ok(meta) if !meta.is_file() => continue,
            // A dangling symlink, or a file deleted since the listing: not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            _ => paths.push(entry.path()),
        }
    }
    paths.sort();
    Ok(LoadedFiles {
        files: paths.into_iter().filter_map(|p| load_file(&p)).collect(),
    })
}

fn load_file(path: &Path) -> Option<LoadedFile> {
    let source = path.display().to_string();
    let unusable = |reason: String| FieldError::new("", "", reason).reject(&source, 0, None, None);
    let documents = match read_capped(path) {
        Ok(text) => parse_file(&source, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => Err(unusable(format!("cannot read the file (whole file ignored): {e}"))),
    };
    Some(LoadedFile {
        path: path.to_path_buf(),
        source,
        documents,
    })
}

fn read_capped(path: &Path) -> io::Result<String> {
    let size = fs::metadata(path)?.len();
    if size > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{size} bytes is more than the {MAX_FILE_BYTES}-byte limit"),
        ));
    }
    fs::read_to_string(path)
}

/// The result of one reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The new snapshot (also [`Loader::current`]).
    pub resources: Resources,
    /// Every document or file not taken this time, in file and document order.
    pub rejections: Vec<Rejection>,
    /// Whether `resources` differs from the previous snapshot.
    pub changed: bool,
}

/// Turns store directories into snapshots, remembering the last good state.
#[derive(Debug, Default)]
pub struct Loader {
    current: Resources,
    accepted: BTreeMap<ResourceKey, Placed>,
    /// By pool name: what `cidr` and `blockSize` were when the pool was last accepted, here or
    /// by an earlier lanesd.
    pins: BTreeMap<String, PoolPin>,
}

/// The fields of an IPPool that never change under one name. Its blocks were cut with them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolPin {
    pub cidr: ipnet::IpNet,
    #[serde(rename = "blockSize")]
    pub block_size: u8,
}

impl PoolPin {
    fn of(pool: &super::IpPool) -> Self {
        PoolPin {
            cidr: pool.cidr,
            block_size: pool.block_size,
        }
    }
}

/// An accepted resource and where it came from.
#[derive(Clone, Debug)]
struct Placed {
    resource: Resource,
    source: String,
    document: usize,
}

/// A resource competing for a place in the next snapshot.
struct Candidate {
    placed: Placed,
    /// (file, document) position, for "the later one is rejected".
    position: (usize, usize),
    /// Accepted before, under the same key (and for pools, the same cidr and blockSize).
    established: bool,
    /// Carried over from the previous snapshot rather than read now.
    carried: bool,
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// A loader that holds pools to what an earlier lanesd accepted ([`Loader::pins`]).
    pub fn with_pins(pins: BTreeMap<String, PoolPin>) -> Self {
        Loader {
            pins,
            ..Self::default()
        }
    }

    /// Every pool's `cidr` and `blockSize` as the daemon must remember them: those accepted now,
    /// plus earlier ones whose document is still there (refused) or unreadable. A pin goes only
    /// when its pool's document is gone: deleting it is how a pool's cidr may change.
    pub fn pins(&self) -> &BTreeMap<String, PoolPin> {
        &self.pins
    }

    /// The last snapshot (empty, with IPAM defaults, before the first reload).
    pub fn current(&self) -> &Resources {
        &self.current
    }

    /// Reads `dir` and makes the next snapshot. An `Err` (the directory cannot be listed) leaves
    /// the current snapshot as it is.
    pub fn reload(&mut self, dir: &Path) -> io::Result<ReloadOutcome> {
        Ok(self.apply(load_dir(dir)?))
    }

    /// Makes the next snapshot from already-read files.
    pub fn apply(&mut self, files: LoadedFiles) -> ReloadOutcome {
        let mut rejections = Vec::new();
        let mut candidates = Vec::new();
        // Pools some document still names, and whether a file could not be read at all.
        let mut named_pools = BTreeSet::new();
        let mut unreadable = false;
        // Keys whose previous version should be carried over, with the position to give it.
        let mut carry: BTreeMap<ResourceKey, (usize, usize)> = BTreeMap::new();
        let file_order: HashMap<String, usize> = files
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.source.clone(), i))
            .collect();

        for (file, loaded) in files.files.into_iter().enumerate() {
            let documents = match loaded.documents {
                Ok(documents) => documents,
                Err(rejection) => {
                    rejections.push(rejection);
                    unreadable = true;
                    for (key, previous) in &self.accepted {
                        if previous.source == loaded.source {
                            carry.insert(key.clone(), (file, previous.document));
                        }
                    }
                    continue;
                }
            };
            for ParsedDocument { index, key, result } in documents {
                if let Some(k) = key.as_ref().filter(|k| k.kind == "IPPool") {
                    named_pools.insert(k.name.clone());
                }
                let refused = match result {
                    Ok(resource) => match self.check_immutable(&resource, index) {
                        Some(rejection) => rejection,
                        None => {
                            let established = self.accepted.contains_key(&resource.key());
                            let source = loaded.source.clone();
                            candidates.push(Candidate {
                                placed: Placed {
                                    resource,
                                    source,
                                    document: index,
                                },
                                position: (file, index),
                                established,
                                carried: false,
                            });
                            continue;
                        }
                    },
                    Err(rejection) => rejection,
                };
                if let Some(key) = key {
                    carry.entry(key).or_insert((file, index));
                }
                rejections.push(refused);
            }
        }

        let provided: BTreeSet<ResourceKey> = candidates.iter().map(|c| c.placed.resource.key()).collect();
        for (key, position) in carry {
            if let (false, Some(previous)) = (provided.contains(&key), self.accepted.get(&key)) {
                tracing::info!(resource = %key, "keeping the last accepted version");
                candidates.push(Candidate {
                    placed: previous.clone(),
                    position,
                    established: true,
                    carried: true,
                });
            }
        }

        candidates.sort_by_key(|c| (!c.established, c.position));
        let mut placed: BTreeMap<ResourceKey, Placed> = BTreeMap::new();
        for candidate in candidates {
            match conflict(&placed, &candidate.placed) {
                None => {
                    placed.insert(candidate.placed.resource.key(), candidate.placed);
                }
                // Carried-over resources were consistent together before; they cannot clash.
                Some(_) if candidate.carried => {}
                Some(rejection) => rejections.push(rejection),
            }
        }

        rejections.sort_by_key(|r| (file_order.get(&r.source).copied(), r.document));
        let mut resources = Resources::default();
        for p in placed.values() {
            resources.insert(p.resource.clone());
        }
        let changed = resources != self.current;
        for r in &rejections {
            tracing::warn!(rejection = %r, "resource rejected");
        }
        if changed {
            tracing::info!(
                pools = resources.pools.len(),
                nodes = resources.nodes.len(),
                pods = resources.pods.len(),
                bgp_configurations = resources.bgp_configurations.len(),
                bgp_peers = resources.bgp_peers.len(),
                others = resources.others.len(),
                "resources changed"
            );
        }
        let mut pins: BTreeMap<String, PoolPin> = resources
            .pools
            .iter()
            .map(|(name, pool)| (name.clone(), PoolPin::of(pool)))
            .collect();
        for (name, pin) in std::mem::take(&mut self.pins) {
            if unreadable || named_pools.contains(&name) {
                pins.entry(name).or_insert(pin);
            }
        }
        self.pins = pins;
        self.current = resources.clone();
        self.accepted = placed;
        ReloadOutcome {
            resources,
            rejections,
            changed,
        }
    }

    /// Refuses a pool whose cidr or blockSize differs from the pinned one of the same name.
    fn check_immutable(&self, resource: &Resource, document: usize) -> Option<Rejection> {
        let Resource::IpPool(new) = resource else {
            return None;
        };
        // The pins hold every accepted pool too, so they are the one record to check.
        let old = self.pins.get(&new.name)?;
        let error = if new.cidr != old.cidr {
            FieldError::new("spec.cidr", new.cidr.to_string(), immutable(&old.cidr))
        } else if new.block_size != old.block_size {
            FieldError::new("spec.blockSize", new.block_size.to_string(), immutable(&old.block_size))
        } else {
            return None;
        };
        Some(error.reject(&new.source, document, Some("IPPool"), Some(&new.name)))
    }
}

fn immutable(was: &dyn std::fmt::Display) -> String {
    format!("immutable: was {was} (to change it, delete the pool document, reload, then add the new one)")
}

/// Why `candidate` cannot join `placed`: an earlier document with the same key, a pool whose
/// CIDR overlaps, or a BGPPeer for the same session.
fn conflict(placed: &BTreeMap<ResourceKey, Placed>, candidate: &Placed) -> Option<Rejection> {
    let key = candidate.resource.key();
    let reject = |e: FieldError| {
        let kind = key.kind.as_str();
        e.reject(&candidate.source, candidate.document, Some(kind), Some(&key.name))
    };
    if let Some(first) = placed.get(&key) {
        let reason = format!(
            "duplicate: {key} is already defined in {} document {}",
            first.source, first.document
        );
        return Some(reject(FieldError::new("metadata.name", key.name.as_str(), reason)));
    }
    if let Resource::BgpPeer(peer) = &candidate.resource {
        return placed.values().find_map(|other| match &other.resource {
            Resource::BgpPeer(o) if o.duplicates(peer) => {
                let reason = format!(
                    "duplicate peering: BGPPeer {} ({} document {}) already peers with this address from the same nodes",
                    o.name, other.source, other.document
                );
                let address = peer.peer_address().map(|a| a.to_string()).unwrap_or_default();
                Some(reject(FieldError::new("spec.peerIP", address, reason)))
            }
            _ => None,
        });
    }
    let Resource::IpPool(pool) = &candidate.resource else {
        return None;
    };
    placed.values().find_map(|other| match &other.resource {
        Resource::IpPool(o) if overlaps(&o.cidr, &pool.cidr) => {
            let reason = format!(
                "overlaps IPPool {} ({}) from {} document {}",
                o.name, o.cidr, other.source, other.document
            );
            Some(reject(FieldError::new("spec.cidr", pool.cidr.to_string(), reason)))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{AllowedUse, EncapMode, IpamConfig};
    use super::*;

    const SEED: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  natOutgoing: true
  nodeSelector: all()
";

    struct Store(tempfile::TempDir);

    impl Store {
        fn new() -> Self {
            Store(tempfile::tempdir().unwrap())
        }

        fn write(&self, name: &str, text: &str) -> &Self {
            fs::write(self.0.path().join(name), text).unwrap();
            self
        }
        fn remove(&self, name: &str) {
            fs::remove_file(self.0.path().join(name)).unwrap();
        }
        fn source(&self, name: &str) -> String {
            self.0.path().join(name).display().to_string()
        }
        fn reload(&self, loader: &mut Loader) -> ReloadOutcome {
            loader.reload(self.0.path()).unwrap()
        }
    }

    fn pool(name: &str, cidr: &str, extra: &str) -> String {
        format!(
            "apiVersion: lanes.dev/v1\nkind: IPPool\nmetadata: {{name: {name}}}\n\
             spec: {{cidr: \"{cidr}\"{extra}}}\n"
        )
    }

    fn assert_rejected(outcome: &ReloadOutcome, field: &str, fragment: &str) -> Rejection {
        let mut found = outcome
            .rejections
            .iter()
            .filter(|r| r.field == field && r.reason.contains(fragment));
        found
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("no {field}: {fragment} in {:#?}", outcome.rejections))
    }

    #[test]
    fn seed_pool_pasted_verbatim() {
        let store = Store::new();
        store.write("pools.yaml", SEED);
        let mut loader = Loader::new();
        let outcome = store.reload(&mut loader);
        assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
        assert!(outcome.changed);
        let p = &outcome.resources.pools["default-ipv4-ippool"];
        assert_eq!((p.cidr.to_string(), p.block_size), ("10.244.0.0/16".into(), 26));
        assert_eq!((p.ipip_mode, p.vxlan_mode), (EncapMode::Never, EncapMode::Never));
        assert!(p.nat_outgoing && !p.disabled);
        assert_eq!(p.allowed_uses, [AllowedUse::Workload, AllowedUse::Tunnel]);
        assert_eq!(p.source, store.source("pools.yaml"));
        assert_eq!(loader.current(), &outcome.resources);
        assert!(!store.reload(&mut loader).changed);
    }

    #[test]
    fn only_top_level_yaml_files_in_name_order() {
        let store = Store::new();
        let node = |n: &str| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n");
        store.write("b.yml", &node("b")).write("a.yaml", &node("a"));
        store.write(".hidden.yaml", &node("h")).write("notes.txt", &node("t"));
        fs::create_dir(store.0.path().join("sub")).unwrap();
        fs::create_dir(store.0.path().join("dir.yaml")).unwrap();
        store.write("sub/c.yaml", &node("c"));
        let files = load_dir(store.0.path()).unwrap();
        let names: Vec<_> = files.files.iter().map(|f| f.path.file_name().unwrap()).collect();
        assert_eq!(names, ["a.yaml", "b.yml"]);
        let outcome = store.reload(&mut Loader::new());
        assert_eq!(outcome.resources.nodes.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_bad_document_keeps_the_previous_version() {
        let store = Store::new();
        store.write("p.yaml", &pool("p", "10.0.0.0/16", ", natOutgoing: true"));
        let mut loader = Loader::new();
        store.reload(&mut loader);
        let two = pool("p", "10.0.0.0/16", ", blockSize: 33") + "---\n" + &pool("q", "10.9.0.0/33", "");
        store.write("p.yaml", &two);
        let outcome = store.reload(&mut loader);
        let r = assert_rejected(&outcome, "spec.blockSize", "between 20 and 32");
        assert_eq!(
            r.to_string(),
            format!(
                "{} document 1 (IPPool p): spec.blockSize = 33: must be between 20 and 32 for an IPv4 pool",
                store.source("p.yaml")
            )
        );
        assert_eq!(assert_rejected(&outcome, "spec.cidr", "CIDR").document, 2);
        assert!(outcome.resources.pools["p"].nat_outgoing);
        assert!(!outcome.resources.pools.contains_key("q"));
        assert!(!outcome.changed);
    }

    #[test]
    fn invalid_yaml_keeps_everything_from_that_file() {
        let store = Store::new();
        let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {rack: r1}}\n";
        store.write("a.yaml", &format!("{}---\n{node}", pool("p1", "10.1.0.0/16", "")));
        store.write("b.yaml", &pool("p2", "10.2.0.0/16", ""));
        let mut loader = Loader::new();
        store.reload(&mut loader);
        store.write("a.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: [\n");
        store.write("b.yaml", &pool("p2", "10.2.0.0/16", ", natOutgoing: true"));
        let outcome = store.reload(&mut loader);
        let r = assert_rejected(&outcome, "", "invalid YAML");
        assert!(r.reason.contains("line") && r.source.ends_with("a.yaml"), "{r}");
        assert!(outcome.changed);
        assert!(outcome.resources.pools.contains_key("p1"));
        assert!(outcome.resources.pools["p2"].nat_outgoing);
        assert_eq!(outcome.resources.node_labels("n1")["rack"], "r1");
        // Not UTF-8: same.
        fs::write(store.0.path().join("a.yaml"), b"kind: \xff\xfe\n").unwrap();
        let outcome = store.reload(&mut loader);
        assert_eq!(assert_rejected(&outcome, "", "cannot read").document, 0);
        assert!(outcome.resources.pools.contains_key("p1") && !outcome.changed);
        // Fixed, with n1 gone: now it goes.
        store.write("a.yaml", &pool("p1", "10.1.0.0/16", ""));
        let outcome = store.reload(&mut loader);
        assert!(outcome.rejections.is_empty() && outcome.resources.nodes.is_empty());
    }

    #[test]
    fn pool_cidr_and_block_size_are_immutable() {
        let store = Store::new();
        let mut loader = Loader::new();
        store.write("p.yaml", &pool("p", "10.0.0.0/16", ""));
        store.reload(&mut loader);
        store.write("p.yaml", &pool("p", "10.1.0.0/16", ""));
        let outcome = store.reload(&mut loader);
        assert_rejected(&outcome, "spec.cidr", "immutable: was 10.0.0.0/16");
        assert_eq!(outcome.resources.pools["p"].cidr.to_string(), "10.0.0.0/16");
        store.write(
            "p.yaml",
            &pool("p", "10.0.0.0/16", ", blockSize: 24, natOutgoing: true"),
        );
        let outcome = store.reload(&mut loader);
        assert_rejected(&outcome, "spec.blockSize", "immutable: was 26");
        assert!(!outcome.resources.pools["p"].nat_outgoing);
        // Delete, reload, re-add with a new cidr: allowed.
        store.remove("p.yaml");
        assert!(store.reload(&mut loader).resources.pools.is_empty());
        store.write("p.yaml", &pool("p", "10.1.0.0/16", ""));
        let outcome = store.reload(&mut loader);
        assert!(outcome.rejections.is_empty());
        assert_eq!(outcome.resources.pools["p"].cidr.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn pins_hold_pools_to_what_an_earlier_loader_accepted() {
        let store = Store::new();
        let mut first = Loader::new();
        store.write("p.yaml", &pool("p", "10.0.0.0/16", ""));
        store.reload(&mut first);
        let pin = PoolPin {
            cidr: "10.0.0.0/16".parse().unwrap(),
            block_size: 26,
        };
        assert_eq!(first.pins().get("p"), Some(&pin));

        // "Restart" with the pool edited meanwhile: refused, and the pin stays.
        let mut second = Loader::with_pins(first.pins().clone());
        store.write("p.yaml", &pool("p", "10.1.0.0/16", ""));
        let outcome = store.reload(&mut second);
        assert_rejected(&outcome, "spec.cidr", "immutable: was 10.0.0.0/16");
        assert!(outcome.resources.pools.is_empty());
        assert_eq!(second.pins().get("p"), Some(&pin));
        store.write("p.yaml", &pool("p", "10.0.0.0/16", ", blockSize: 24"));
        assert_rejected(&store.reload(&mut second), "spec.blockSize", "immutable: was 26");

        // A file that cannot be read might hold the pool: the pin stays.
        store.write("p.yaml", "kind: [");
        store.reload(&mut second);
        assert_eq!(second.pins().get("p"), Some(&pin));

        // Deleting the document releases the pin; a new cidr is then accepted.
        store.remove("p.yaml");
        store.reload(&mut second);
        assert!(second.pins().is_empty());
        store.write("p.yaml", &pool("p", "10.1.0.0/16", ""));
        let outcome = store.reload(&mut second);
        assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
        assert_eq!(second.pins()["p"].cidr.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn overlapping_pools_reject_the_later_one() {
        let store = Store::new();
        store.write("a.yaml", &pool("p1", "10.0.0.0/16", ""));
        store.write("b.yaml", &pool("p2", "10.0.128.0/17", ""));
        let mut loader = Loader::new();
        let outcome = store.reload(&mut loader);
        let r = assert_rejected(&outcome, "spec.cidr", "overlaps IPPool p1 (10.0.0.0/16)");
        assert_eq!(r.name.as_deref(), Some("p2"));
        assert_eq!(outcome.resources.pools.keys().collect::<Vec<_>>(), ["p1"]);

        // A new pool in an earlier file never displaces one already in use.
        store.write("0.yaml", &pool("p0", "10.0.0.0/8", ""));
        let outcome = store.reload(&mut loader);
        assert_rejected(&outcome, "spec.cidr", "overlaps IPPool p1");
        assert_eq!(outcome.rejections.len(), 2, "{:?}", outcome.rejections);
        assert_eq!(outcome.resources.pools.keys().collect::<Vec<_>>(), ["p1"]);
        assert!(!outcome.changed);
    }

    #[test]
    fn duplicates_reject_the_later_document() {
        let store = Store::new();
        let pod = |ns: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {ns}}}\n");
        store.write("a.yaml", &pool("p", "10.0.0.0/16", ""));
        store.write(
            "b.yaml",
            &format!("{}---\n{}---\n{}", pool("p", "10.0.0.0/16", ""), pod("x"), pod("y")),
        );
        store.write("c.yaml", &pod("x"));
        let outcome = store.reload(&mut Loader::new());
        let r = assert_rejected(&outcome, "metadata.name", "duplicate: IPPool p is already defined in");
        assert!(
            r.reason.ends_with("a.yaml document 1") && r.source.ends_with("b.yaml"),
            "{r}"
        );
        assert_rejected(&outcome, "metadata.name", "duplicate: Pod x/web");
        assert_eq!(outcome.rejections.len(), 2);
        assert_eq!(outcome.resources.pods.len(), 2);
    }

    #[test]
    fn a_valid_duplicate_wins_over_a_rejected_one() {
        let store = Store::new();
        let mut loader = Loader::new();
        store.write("b.yaml", &pool("p", "10.0.0.0/16", ""));
        store.reload(&mut loader);
        store.write("a.yaml", &pool("p", "10.0.0.0/16", ", ipipMode: Sometimes"));
        store.write("b.yaml", &pool("p", "10.0.0.0/16", ", natOutgoing: true"));
        let outcome = store.reload(&mut loader);
        assert_eq!(outcome.rejections.len(), 1, "{:?}", outcome.rejections);
        assert_rejected(&outcome, "spec.ipipMode", "Never, Always, CrossSubnet");
        assert!(outcome.resources.pools["p"].nat_outgoing && outcome.changed);
    }

    fn bgp_peer(name: &str, spec: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    }

    #[test]
    fn duplicate_bgp_peers_reject_the_later_one() {
        let store = Store::new();
        store.write(
            "a.yaml",
            &bgp_peer(
                "tor-a",
                "{peerIP: 192.168.0.1, asNumber: 63400, nodeSelector: \"rack == 'r1'\"}",
            ),
        );
        let b = [
            bgp_peer(
                "tor-b",
                "{peerIP: 192.168.0.1, asNumber: 63401, nodeSelector: 'rack==\"r1\"'}",
            ),
            bgp_peer(
                "tor-c",
                "{peerIP: 192.168.0.1, asNumber: 63400, nodeSelector: \"rack == 'r2'\"}",
            ),
            bgp_peer(
                "tor-d",
                "{peerIP: '192.168.0.1:1790', asNumber: 63400, nodeSelector: \"rack == 'r1'\"}",
            ),
        ]
        .join("---\n");
        store.write("b.yaml", &b);
        let outcome = store.reload(&mut Loader::new());
        assert_eq!(outcome.rejections.len(), 1, "{:?}", outcome.rejections);
        let r = assert_rejected(&outcome, "spec.peerIP", "duplicate peering: BGPPeer tor-a (");
        assert_eq!((r.name.as_deref(), r.value.as_str()), (Some("tor-b"), "192.168.0.1"));
        assert!(r.reason.contains("a.yaml document 1"), "{r}");
        assert_eq!(
            outcome.resources.bgp_peers.keys().collect::<Vec<_>>(),
            ["tor-a", "tor-c", "tor-d"]
        );
    }

    #[test]
    fn a_bad_bgp_document_keeps_the_last_good_version() {
        let store = Store::new();
        let config = |spec: &str| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {spec}\n"
            )
        };
        let node = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\n\
                    spec: {bgp: {ipv4Address: 192.168.0.11/24, routeReflectorClusterID: 224.0.0.1}}\n";
        store.write("bgp.yaml", &config("{asNumber: 63400, nodeToNodeMeshEnabled: false}"));
        store.write(
            "peers.yaml",
            &bgp_peer(
                "rr",
                "{nodeSelector: all(), peerSelector: \"route-reflector == 'true'\"}",
            ),
        );
        store.write("nodes.yaml", node);
        let mut loader = Loader::new();
        let outcome = store.reload(&mut loader);
        assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
        assert_eq!(outcome.resources.bgp_settings("n1").as_number, 63400);

        store.write("bgp.yaml", &config("{asNumber: 0}"));
        store.write(
            "peers.yaml",
            &bgp_peer(
                "rr",
                "{nodeSelector: all(), peerSelector: \"route-reflector = 'true'\"}",
            ),
        );
        store.write("nodes.yaml", &node.replace("224.0.0.1", "cluster-1"));
        let outcome = store.reload(&mut loader);
        assert_rejected(&outcome, "spec.asNumber", "1 to 4294967295");
        assert_rejected(&outcome, "spec.peerSelector", "invalid selector: column");
        assert_rejected(&outcome, "spec.bgp.routeReflectorClusterID", "dotted quad");
        assert!(!outcome.changed);
        let settings = outcome.resources.bgp_settings("n1");
        assert!(!settings.node_to_node_mesh_enabled && settings.as_number == 63400);
        assert!(outcome.resources.bgp_peers.contains_key("rr"));
        assert!(outcome.resources.nodes["n1"].route_reflector_cluster_id().is_some());
    }

    #[test]
    fn changed_tracks_the_snapshot() {
        let store = Store::new();
        let mut loader = Loader::new();
        let outcome = store.reload(&mut loader);
        assert!(!outcome.changed && outcome.resources.ipam_config == IpamConfig::default());
        store.write("p.yaml", SEED);
        assert!(store.reload(&mut loader).changed);
        assert!(!store.reload(&mut loader).changed);
        store.write("p.yaml", &SEED.replace("natOutgoing: true", "natOutgoing: false"));
        assert!(store.reload(&mut loader).changed);
        // A directory that cannot be listed changes nothing.
        assert!(loader.reload(&store.0.path().join("nope")).is_err());
        assert_eq!(loader.current().pools.len(), 1);
        store.remove("p.yaml");
        let outcome = store.reload(&mut loader);
        assert!(outcome.changed && outcome.resources.pools.is_empty());
    }
}
