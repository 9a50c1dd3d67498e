//! `Pod`: with the file datastore, a Pod document stands in for the API server and gives a pod
//! its labels and annotations (`k8s.v1.cni.cncf.io/networks`). Only metadata is read; `spec` and
//! `status` may be there (a pasted `kubectl get pod -o yaml`) and are ignored.

use std::collections::BTreeMap;

use super::meta::ObjectMeta;

/// A pod's identity and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodResource {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub source: String,
}

impl PodResource {
    /// The annotation `key`, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

pub(crate) fn from_meta(meta: ObjectMeta, source: &str) -> PodResource {
    PodResource {
        namespace: meta.namespace.unwrap_or_else(|| "default".to_string()),
        name: meta.name,
        uid: meta.uid,
        labels: meta.labels,
        annotations: meta.annotations,
        source: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::meta::Obj;
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_identity_and_annotations() {
        let doc = json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "1234",
                         "annotations": {"k8s.v1.cni.cncf.io/networks": "fast@eth1"}},
            "spec": {"containers": []}, "status": {"phase": "Running"}
        });
        let top = Obj::new("", Some(&doc)).unwrap();
        let pod = from_meta(ObjectMeta::parse(&top, true).unwrap(), "pods.yaml");
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("shop", "web"));
        assert_eq!(pod.uid.as_deref(), Some("1234"));
        assert_eq!(pod.annotation("k8s.v1.cni.cncf.io/networks"), Some("fast@eth1"));
        assert_eq!(pod.annotation("other"), None);
    }
}
