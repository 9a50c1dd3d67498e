//! The node registry: each lanesd records its autodetected address (and
//! VXLAN tunnel endpoint) under `nodes/<name>` in the shared store, so the
//! mesh, route reflectors and encapsulation find other nodes without anyone
//! writing Node documents by hand (what calico-node does with its Node).

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::store::{to_value, StateStore, StoreError};

pub const PREFIX: &str = "nodes/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    /// CIDR notation: the prefix tells CrossSubnet what "same subnet" is.
    pub address: Option<String>,
    pub as_number: Option<u32>,
    pub vtep_mac: Option<String>,
    pub vtep_ip: Option<String>,
}

impl NodeRecord {
    pub fn ipv4(&self) -> Option<Ipv4Net> {
        self.address.as_deref()?.parse().ok()
    }

    pub fn vtep_mac_bytes(&self) -> Option<[u8; 6]> {
        let v = crate::dataplane::neigh::parse_mac(self.vtep_mac.as_deref()?)?;
        v.try_into().ok()
    }
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Write our record when it changed (compare-and-swap; a conflict means
/// nobody else should be writing it, so last writer wins after a re-read).
pub async fn put(store: &dyn StateStore, rec: &NodeRecord) -> Result<(), StoreError> {
    let key = format!("{PREFIX}{}", rec.name);
    let value = to_value(&key, rec)?;
    for _ in 0..3 {
        match store.get(&key).await? {
            Some(e) if e.value == value => return Ok(()),
            Some(e) => match store.update(&key, &value, &e.revision).await {
                Err(err) if err.is_conflict() => continue,
                other => return other.map(drop),
            },
            None => match store.create(&key, &value).await {
                Err(err) if err.is_conflict() => continue,
                other => return other.map(drop),
            },
        }
    }
    Ok(())
}

pub async fn list(store: &dyn StateStore) -> Result<Vec<NodeRecord>, StoreError> {
    let mut out = Vec::new();
    for e in store.list(PREFIX).await? {
        out.push(e.decode()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::file::FileStore;

    #[tokio::test]
    async fn put_is_idempotent_and_listed() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::open(d.path()).unwrap();
        let mut r = NodeRecord {
            name: "node1".into(),
            address: Some("192.168.0.11/24".into()),
            as_number: None,
            vtep_mac: Some(mac_string(&[0x66, 1, 2, 3, 4, 5])),
            vtep_ip: None,
        };
        put(&s, &r).await.unwrap();
        let rev = s.get("nodes/node1").await.unwrap().unwrap().revision;
        put(&s, &r).await.unwrap();
        assert_eq!(
            s.get("nodes/node1").await.unwrap().unwrap().revision,
            rev,
            "unchanged: no write"
        );
        r.vtep_ip = Some("10.244.0.1".into());
        put(&s, &r).await.unwrap();
        let all = list(&s).await.unwrap();
        assert_eq!(all, vec![r.clone()]);
        assert_eq!(all[0].ipv4().unwrap().prefix_len(), 24);
        assert_eq!(all[0].vtep_mac_bytes(), Some([0x66, 1, 2, 3, 4, 5]));
    }
}
