//! lanesd's configuration: a YAML file (`--config`) whose every key can also
//! be given as a kebab-case flag (`nodeName` → `--node-name`,
//! `primary.interface` → `--primary-interface`); a flag wins over the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Default: the hostname.
    pub node_name: String,
    pub datastore: DatastoreConfig,
    /// gRPC unix socket (mode 0600).
    pub socket: PathBuf,
    /// Optional TCP address for orchestrators; off when empty.
    pub listen: String,
    /// bird.conf, the bird control socket, locks.
    pub run_dir: PathBuf,
    pub primary: PrimaryConfig,
    pub bgp: BgpConfig,
    pub ovn: OvnConfig,
    /// Prometheus endpoint, e.g. 127.0.0.1:9099; off when empty.
    pub metrics: String,
    /// tracing filter, e.g. `info` or `lanes_manager=debug`.
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreType {
    File,
    Kubernetes,
    Etcd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DatastoreConfig {
    #[serde(rename = "type")]
    pub kind: DatastoreType,
    /// file: the resources and `state/`; kubernetes: local files only (BGP secrets under
    /// `secrets/<name>/<key>`, e.g. a mounted Secret).
    pub path: PathBuf,
    /// kubernetes: a kubeconfig file; empty = the in-cluster service account.
    pub kubeconfig: PathBuf,
    /// kubernetes: client-side requests per second (0 = unlimited) and burst; watches are exempt.
    pub qps: f64,
    pub burst: u32,
    /// kubernetes: deadline of each API call, in milliseconds.
    pub timeout_ms: u64,
    /// kubernetes: read Calico's `crd.projectcalico.org/v1` IPPool, BGPConfiguration and BGPPeer
    /// (read-only) instead of `lanes.dev/v1` ones, to take over a Calico cluster's settings.
    pub calico_resources: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PrimaryConfig {
    /// Node address autodetection and the default pod MTU come from here.
    pub interface: String,
    /// Pod MTU; 0 = the primary interface's MTU (1500 if it has none).
    pub mtu: u32,
    /// The cluster's Service CIDRs (kube-apiserver's `--service-cluster-ip-range`). A pod whose
    /// default route moves to a secondary lane keeps routes to these on eth0, with the pools
    /// and BGPConfiguration `serviceClusterIPs`.
    pub service_cidrs: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BgpConfig {
    pub enabled: bool,
    pub listen_address: String,
    pub bird_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OvnConfig {
    pub enabled: bool,
    pub ovsdb: String,
    pub northbound: String,
    pub southbound: String,
    pub encap_interface: String,
    pub encap_type: String,
    pub bridge: String,
    /// Deadline of each OVSDB call, and of the northbound part of one secondary ADD, in
    /// milliseconds: with NB unreachable an ADD fails (CNI code 11) after this long.
    pub call_timeout_ms: u64,
    /// How long a secondary ADD waits for ovn-controller to mark the port `ovn-installed`, in
    /// milliseconds; then it fails (CNI code 11) and rolls back.
    pub install_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: String::new(),
            datastore: DatastoreConfig::default(),
            socket: "/run/lanes/lanes.sock".into(),
            listen: String::new(),
            run_dir: "/run/lanes".into(),
            primary: PrimaryConfig::default(),
            bgp: BgpConfig::default(),
            ovn: OvnConfig::default(),
            metrics: String::new(),
            log_level: "info".into(),
        }
    }
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig {
            kind: DatastoreType::File,
            path: "/var/lib/lanes/store".into(),
            kubeconfig: PathBuf::new(),
            qps: 50.0,
            burst: 100,
            timeout_ms: 10_000,
            calico_resources: false,
        }
    }
}

impl Default for PrimaryConfig {
    fn default() -> Self {
        PrimaryConfig {
            interface: "ens2".into(),
            mtu: 0,
            service_cidrs: Vec::new(),
        }
    }
}

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            enabled: true,
            listen_address: String::new(),
            bird_path: "bird".into(),
        }
    }
}

impl Default for OvnConfig {
    fn default() -> Self {
        OvnConfig {
            enabled: false,
            ovsdb: "unix:/run/openvswitch/db.sock".into(),
            northbound: String::new(),
            southbound: String::new(),
            encap_interface: "ens3".into(),
            encap_type: "geneve".into(),
            bridge: "br-int".into(),
            call_timeout_ms: 5000,
            install_timeout_ms: 20_000,
        }
    }
}

/// The flags: one per config key, all optional so "not given" keeps the file's value.
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long, value_enum)]
    pub datastore_type: Option<DatastoreType>,
    #[arg(long)]
    pub datastore_path: Option<PathBuf>,
    #[arg(long)]
    pub datastore_kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub datastore_qps: Option<f64>,
    #[arg(long)]
    pub datastore_burst: Option<u32>,
    #[arg(long)]
    pub datastore_timeout_ms: Option<u64>,
    #[arg(long)]
    pub datastore_calico_resources: Option<bool>,
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub listen: Option<String>,
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    #[arg(long)]
    pub primary_interface: Option<String>,
    #[arg(long)]
    pub primary_mtu: Option<u32>,
    /// Comma-separated, e.g. `10.96.0.0/12,fd00:96::/108`.
    #[arg(long, value_delimiter = ',')]
    pub primary_service_cidrs: Option<Vec<ipnet::IpNet>>,
    #[arg(long)]
    pub bgp_enabled: Option<bool>,
    #[arg(long)]
    pub bgp_listen_address: Option<String>,
    #[arg(long)]
    pub bgp_bird_path: Option<String>,
    #[arg(long)]
    pub ovn_enabled: Option<bool>,
    #[arg(long)]
    pub ovn_ovsdb: Option<String>,
    #[arg(long)]
    pub ovn_northbound: Option<String>,
    #[arg(long)]
    pub ovn_southbound: Option<String>,
    #[arg(long)]
    pub ovn_encap_interface: Option<String>,
    #[arg(long)]
    pub ovn_encap_type: Option<String>,
    #[arg(long)]
    pub ovn_bridge: Option<String>,
    #[arg(long)]
    pub ovn_call_timeout_ms: Option<u64>,
    #[arg(long)]
    pub ovn_install_timeout_ms: Option<u64>,
    #[arg(long)]
    pub metrics: Option<String>,
    #[arg(long)]
    pub log_level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("config {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|reason| ConfigError::Parse {
            path: path.into(),
            reason,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }

    /// Apply flags over the file's values.
    pub fn apply(&mut self, o: Overrides) {
        fn set<T>(dst: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *dst = v;
            }
        }
        set(&mut self.node_name, o.node_name);
        set(&mut self.datastore.kind, o.datastore_type);
        set(&mut self.datastore.path, o.datastore_path);
        set(&mut self.datastore.kubeconfig, o.datastore_kubeconfig);
        set(&mut self.datastore.qps, o.datastore_qps);
        set(&mut self.datastore.burst, o.datastore_burst);
        set(&mut self.datastore.timeout_ms, o.datastore_timeout_ms);
        set(&mut self.datastore.calico_resources, o.datastore_calico_resources);
        set(&mut self.socket, o.socket);
        set(&mut self.listen, o.listen);
        set(&mut self.run_dir, o.run_dir);
        set(&mut self.primary.interface, o.primary_interface);
        set(&mut self.primary.mtu, o.primary_mtu);
        set(&mut self.primary.service_cidrs, o.primary_service_cidrs);
        set(&mut self.bgp.enabled, o.bgp_enabled);
        set(&mut self.bgp.listen_address, o.bgp_listen_address);
        set(&mut self.bgp.bird_path, o.bgp_bird_path);
        set(&mut self.ovn.enabled, o.ovn_enabled);
        set(&mut self.ovn.ovsdb, o.ovn_ovsdb);
        set(&mut self.ovn.northbound, o.ovn_northbound);
        set(&mut self.ovn.southbound, o.ovn_southbound);
        set(&mut self.ovn.encap_interface, o.ovn_encap_interface);
        set(&mut self.ovn.encap_type, o.ovn_encap_type);
        set(&mut self.ovn.bridge, o.ovn_bridge);
        set(&mut self.ovn.call_timeout_ms, o.ovn_call_timeout_ms);
        set(&mut self.ovn.install_timeout_ms, o.ovn_install_timeout_ms);
        set(&mut self.metrics, o.metrics);
        set(&mut self.log_level, o.log_level);
    }

    /// Fill defaults that depend on the machine, then check everything
    /// before any task starts.
    pub fn finish(mut self) -> Result<Config, ConfigError> {
        if self.node_name.is_empty() {
            self.node_name = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default();
        }
        let invalid = |key, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.to_string(),
        };
        if !crate::cni::env::is_dns1123_subdomain(&self.node_name) {
            return Err(invalid(
                "nodeName",
                &format!("{:?} is not a valid node name (lowercase DNS-1123)", self.node_name),
            ));
        }
        match self.datastore.kind {
            DatastoreType::File | DatastoreType::Kubernetes => {}
            DatastoreType::Etcd => {
                return Err(invalid(
                    "datastore.type",
                    "etcd is not supported yet; use file or kubernetes",
                ))
            }
        }
        if self.datastore.path.as_os_str().is_empty() {
            return Err(invalid(
                "datastore.path",
                "must be set (kubernetes: for local files such as BGP secrets)",
            ));
        }
        if !(self.datastore.qps.is_finite() && self.datastore.qps >= 0.0) {
            return Err(invalid(
                "datastore.qps",
                &format!("{} is not a rate >= 0", self.datastore.qps),
            ));
        }
        if !(100..=300_000).contains(&self.datastore.timeout_ms) {
            return Err(invalid(
                "datastore.timeoutMs",
                &format!("{} is outside 100..300000", self.datastore.timeout_ms),
            ));
        }
        if !self.socket.is_absolute() {
            return Err(invalid(
                "socket",
                &format!("{} is not an absolute path", self.socket.display()),
            ));
        }
        if !self.run_dir.is_absolute() {
            return Err(invalid(
                "runDir",
                &format!("{} is not an absolute path", self.run_dir.display()),
            ));
        }
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid("listen", &format!("{:?} is not host:port", self.listen)));
        }
        if !self.metrics.is_empty() && self.metrics.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid("metrics", &format!("{:?} is not host:port", self.metrics)));
        }
        if self.primary.mtu != 0 && !(68..=65535).contains(&self.primary.mtu) {
            return Err(invalid(
                "primary.mtu",
                &format!("{} is outside 68..65535", self.primary.mtu),
            ));
        }
        if !(100..=60_000).contains(&self.ovn.call_timeout_ms) {
            return Err(invalid(
                "ovn.callTimeoutMs",
                &format!("{} is outside 100..60000", self.ovn.call_timeout_ms),
            ));
        }
        if !(100..=600_000).contains(&self.ovn.install_timeout_ms) {
            return Err(invalid(
                "ovn.installTimeoutMs",
                &format!("{} is outside 100..600000", self.ovn.install_timeout_ms),
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_parses() {
        let c = Config::from_yaml(
            r#"
nodeName: node1
datastore:
  type: file
  path: /var/lib/lanes/store
socket: /run/lanes/lanes.sock
listen: ""
runDir: /run/lanes
primary:
  interface: ens2
bgp:
  enabled: true
  listenAddress: ""
  birdPath: bird
ovn:
  enabled: false
  ovsdb: unix:/run/openvswitch/db.sock
  northbound: tcp:192.168.122.10:6641
  southbound: tcp:192.168.122.10:6642
  encapInterface: ens3
  encapType: geneve
  bridge: br-int
metrics: ""
"#,
        )
        .unwrap();
        assert_eq!(c.node_name, "node1");
        assert_eq!(c.ovn.northbound, "tcp:192.168.122.10:6641");
        assert!(c.finish().is_ok());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_yaml("nodeName: a\nsockett: /x\n").unwrap_err();
        assert!(err.contains("sockett"), "{err}");
    }

    #[test]
    fn flags_win() {
        let mut c = Config::from_yaml("nodeName: a\nprimary:\n  interface: ens2\n").unwrap();
        c.apply(Overrides {
            node_name: Some("b".into()),
            primary_mtu: Some(1400),
            ..Default::default()
        });
        assert_eq!(
            (c.node_name.as_str(), c.primary.mtu, c.primary.interface.as_str()),
            ("b", 1400, "ens2")
        );
    }

    #[test]
    fn validation_names_the_key() {
        for (yaml, key) in [
            ("nodeName: Bad_Name", "nodeName"),
            ("nodeName: a\nsocket: rel/path", "socket"),
            ("nodeName: a\nlisten: nope", "listen"),
            ("nodeName: a\ndatastore:\n  type: etcd", "datastore.type"),
            ("nodeName: a\nprimary:\n  mtu: 10", "primary.mtu"),
            ("nodeName: a\novn:\n  callTimeoutMs: 0", "ovn.callTimeoutMs"),
            ("nodeName: a\novn:\n  installTimeoutMs: 10", "ovn.installTimeoutMs"),
            (
                "nodeName: a\ndatastore:\n  type: kubernetes\n  qps: -1",
                "datastore.qps",
            ),
            ("nodeName: a\ndatastore:\n  timeoutMs: 5", "datastore.timeoutMs"),
        ] {
            let err = Config::from_yaml(yaml).unwrap().finish().unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
