//! A small fake Kubernetes API server for tests, served as a `tower` service to `kube::Client`
//! (no HTTP socket): objects in memory with `resourceVersion`s and UIDs, LIST with label and
//! field selectors, WATCH streams (replaying from the requested `resourceVersion`), POST, PUT
//! with optimistic concurrency, merge PATCH (also on `/status`), DELETE with preconditions, and
//! switches to take it down, to fail chosen requests or to hold watch events back; it logs every
//! request and counts the 409s it answered. Enough to run the datastore conformance
//! suite, two nodes' IPAM and the reflector caches against; exact request sequences are tested
//! with `tower_test` instead.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type FakeBody = BoxBody<Bytes, Infallible>;

/// `(collection, namespace, name)`; collection is `group/version/plural` (`/v1/pods` for core).
type Key = (String, String, String);

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// (rv, collection, namespace, event) of every change, for watches that resume.
    log: Vec<(u64, String, String, Value)>,
    watchers: Vec<Watcher>,
    down: bool,
    /// (method, path substring, status code): the next matching request fails so.
    failures: VecDeque<(Method, String, u16)>,
    /// Every request as `METHOD path?query` (`?query` only when there is one).
    requests: Vec<String>,
    /// How many requests were answered 409 (conflicts, injected or real).
    conflicts: usize,
    /// While set (the rv when paused), changes are logged but not sent to open watches: a watch
    /// that lags behind the API, as the kubelet's pods sometimes outrun lanesd's.
    watches_paused: Option<u64>,
}

struct Watcher {
    collection: String,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    tx: mpsc::Sender<Value>,
}

/// The fake server; clone it freely, every clone is the same server.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

struct Target {
    collection: String,
    namespace: Option<String>,
    /// The object; a trailing subresource (`/status`) is served like the object itself.
    name: Option<String>,
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client talking to this server.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.serve(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    /// While down, every request gets 503 and open watches end.
    pub fn set_down(&self, down: bool) {
        let mut st = self.lock();
        st.down = down;
        if down {
            st.watchers.clear();
        }
    }

    /// The next `method` request whose path contains `path` fails with `code`.
    pub fn fail_next(&self, method: Method, path: &str, code: u16) {
        self.lock().failures.push_back((method, path.to_string(), code));
    }

    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// How many requests got a 409 so far.
    pub fn conflicts(&self) -> usize {
        self.lock().conflicts
    }

    /// Holds back watch events (the objects change, open watches hear nothing) until resumed;
    /// resuming sends what was held, in order.
    pub fn pause_watches(&self, paused: bool) {
        let mut st = self.lock();
        match (paused, st.watches_paused.take()) {
            (true, held) => st.watches_paused = Some(held.unwrap_or(st.rv)),
            (false, Some(since)) => {
                let held: Vec<_> = st.log.iter().filter(|e| e.0 > since).cloned().collect();
                for (_, collection, namespace, event) in held {
                    notify(&mut st, &collection, &namespace, &event);
                }
            }
            (false, None) => {}
        }
    }

    /// Stores an object as a client's POST would (server fields filled in).
    pub fn put(&self, collection: &str, obj: Value) -> Value {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut st = self.lock();
        let key = (collection.to_string(), ns, name);
        let kind = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let uid = st.objects.get(&key).map(|o| o["metadata"]["uid"].clone());
        store(&mut st, key, obj, kind, uid)
    }

    pub fn remove(&self, collection: &str, namespace: &str, name: &str) {
        let mut st = self.lock();
        let key = (collection.to_string(), namespace.to_string(), name.to_string());
        if let Some(obj) = st.objects.remove(&key) {
            st.rv += 1;
            emit(&mut st, &key, "DELETED", obj);
        }
    }

    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (collection.to_string(), namespace.to_string(), name.to_string());
        self.lock().objects.get(&key).cloned()
    }

    /// Every stored object of a collection.
    pub fn all(&self, collection: &str) -> Vec<Value> {
        let st = self.lock();
        st.objects
            .iter()
            .filter(|(k, _)| k.0 == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn serve(&self, req: Request<kube::client::Body>) -> Response<FakeBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let req_query = req.uri().query().map(str::to_string);
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), decode(v)))
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut st = self.lock();
        let line = match req_query.as_deref() {
            Some(q) if !q.is_empty() => format!("{method} {path}?{q}"),
            _ => format!("{method} {path}"),
        };
        st.requests.push(line);
        let resp = answer(&mut st, method, &path, &query, body);
        if resp.status() == StatusCode::CONFLICT {
            st.conflicts += 1;
        }
        resp
    }
}

/// The response to one request, with the server state locked.
fn answer(
    st: &mut State,
    method: Method,
    path: &str,
    query: &BTreeMap<String, String>,
    body: Value,
) -> Response<FakeBody> {
    if st.down {
        return status(503, "ServiceUnavailable", "the fake API server is down");
    }
    if let Some(i) = st
        .failures
        .iter()
        .position(|(m, p, _)| *m == method && path.contains(p.as_str()))
    {
        let (_, _, code) = st.failures.remove(i).expect("found");
        let reason = if code == 409 { "Conflict" } else { "InternalError" };
        return status(code, reason, "injected failure");
    }
    let Some(t) = target(path) else {
        return status(404, "NotFound", &format!("no route {path}"));
    };
    match (method.clone(), t.name.clone()) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true") => {
            let (tx, rx) = mpsc::channel(1024);
            let since: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let w = Watcher {
                collection: t.collection.clone(),
                namespace: t.namespace.clone(),
                labels: selector(query.get("labelSelector")),
                fields: selector(query.get("fieldSelector")),
                tx,
            };
            // Held-back events (paused watches) are sent on resume, not here.
            let until = st.watches_paused.unwrap_or(u64::MAX);
            for (rv, coll, ns, event) in &st.log {
                if *rv > since && *rv <= until && *coll == w.collection && matches(&w, ns, &event["object"]) {
                    let _ = w.tx.try_send(event.clone());
                }
            }
            st.watchers.push(w);
            let lines = ReceiverStream::new(rx).map(|ev| {
                let mut line = serde_json::to_vec(&ev).unwrap_or_default();
                line.push(b'\n');
                Ok(Frame::data(Bytes::from(line)))
            });
            Response::new(BodyExt::boxed(StreamBody::new(lines)))
        }
        (Method::GET, None) => {
            let labels = selector(query.get("labelSelector"));
            let fields = selector(query.get("fieldSelector"));
            let probe = Watcher {
                collection: t.collection.clone(),
                namespace: t.namespace.clone(),
                labels,
                fields,
                tx: mpsc::channel(1).0,
            };
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(k, v)| k.0 == t.collection && matches(&probe, &k.1, v))
                .map(|(_, v)| v.clone())
                .collect();
            ok(json!({"apiVersion": "v1", "kind": "List",
                          "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}))
        }
        (Method::GET, Some(name)) => match st.objects.get(&key_of(&t, &name)) {
            Some(obj) => ok(obj.clone()),
            None => not_found(&name),
        },
        (Method::POST, None) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let key = key_of(&t, &name);
            if st.objects.contains_key(&key) {
                return status(409, "AlreadyExists", &format!("{name} already exists"));
            }
            let mut obj = body;
            if let Some(ns) = &t.namespace {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let made = store(st, key, obj, "ADDED", None);
            respond(201, made)
        }
        (Method::PUT | Method::PATCH, Some(name)) => {
            let key = key_of(&t, &name);
            let Some(current) = st.objects.get(&key).cloned() else {
                return not_found(&name);
            };
            let mut obj = if method == Method::PATCH {
                // A merge patch (of the object or its status): applied over what is stored.
                let mut merged = current.clone();
                merge(&mut merged, &body);
                merged
            } else {
                body.clone()
            };
            let sent_rv = body["metadata"]["resourceVersion"].as_str();
            if sent_rv.is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str()) {
                return status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            obj["metadata"]["namespace"] = current["metadata"]["namespace"].clone();
            let uid = Some(current["metadata"]["uid"].clone());
            respond(200, store(st, key, obj, "MODIFIED", uid))
        }
        (Method::DELETE, Some(name)) => {
            let key = key_of(&t, &name);
            let Some(current) = st.objects.get(&key).cloned() else {
                return not_found(&name);
            };
            let pre = &body["preconditions"];
            let uid_ok = pre["uid"]
                .as_str()
                .is_none_or(|u| Some(u) == current["metadata"]["uid"].as_str());
            let rv_ok = pre["resourceVersion"]
                .as_str()
                .is_none_or(|r| Some(r) == current["metadata"]["resourceVersion"].as_str());
            if !uid_ok || !rv_ok {
                return status(409, "Conflict", "Precondition failed");
            }
            st.objects.remove(&key);
            st.rv += 1;
            emit(st, &key, "DELETED", current.clone());
            ok(current)
        }
        (m, _) => status(405, "MethodNotAllowed", &format!("{m} {path}")),
    }
}

/// Stores `obj` under `key` with a new resourceVersion (and a UID), telling watchers.
fn store(st: &mut State, key: Key, mut obj: Value, kind: &str, uid: Option<Value>) -> Value {
    st.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    // Kept across updates; a test may set its own on first store.
    let uid = uid
        .filter(|u| u.is_string())
        .or_else(|| Some(obj["metadata"]["uid"].clone()).filter(|u| u.is_string()))
        .unwrap_or_else(|| json!(format!("uid-{}", st.rv)));
    obj["metadata"]["uid"] = uid;
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.entry("creationTimestamp").or_insert(json!("2026-11-22T00:00:00Z"));
    }
    st.objects.insert(key.clone(), obj.clone());
    emit(st, &key, kind, obj.clone());
    obj
}

fn emit(st: &mut State, key: &Key, kind: &str, obj: Value) {
    let event = json!({"type": kind, "object": obj});
    st.log.push((st.rv, key.0.clone(), key.1.clone(), event.clone()));
    if st.watches_paused.is_none() {
        notify(st, &key.0, &key.1, &event);
    }
}

/// Sends `event` to the open watches it matches; drops the watches whose client went away.
fn notify(st: &mut State, collection: &str, namespace: &str, event: &Value) {
    st.watchers.retain(|w| {
        if w.collection != collection || !matches(w, namespace, &event["object"]) {
            return !w.tx.is_closed();
        }
        w.tx.try_send(event.clone()).is_ok()
    });
}

fn matches(w: &Watcher, namespace: &str, obj: &Value) -> bool {
    if w.namespace.as_deref().is_some_and(|ns| ns != namespace) {
        return false;
    }
    let labels_ok = w
        .labels
        .iter()
        .all(|(k, v)| obj["metadata"]["labels"][k].as_str() == Some(v.as_str()));
    let fields_ok = w.fields.iter().all(|(path, v)| {
        let mut at = obj;
        for part in path.split('.') {
            at = &at[part];
        }
        at.as_str() == Some(v.as_str())
    });
    labels_ok && fields_ok
}

/// `a=b,c=d` (the only selector form lanesd sends).
fn selector(raw: Option<&String>) -> Vec<(String, String)> {
    raw.map(|s| {
        s.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
    .unwrap_or_default()
}

fn target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("/v1".to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (plural, None),
        [plural, name] | [plural, name, _] => (plural, Some(name.to_string())),
        _ => return None,
    };
    Some(Target {
        collection: format!("{group_version}/{plural}"),
        namespace,
        name,
    })
}

fn key_of(t: &Target, name: &str) -> Key {
    (
        t.collection.clone(),
        t.namespace.clone().unwrap_or_default(),
        name.to_string(),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(code: u16, body: Value) -> Response<FakeBody> {
    let mut r = Response::new(BodyExt::boxed(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    ))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn ok(body: Value) -> Response<FakeBody> {
    respond(200, body)
}

fn status(code: u16, reason: &str, message: &str) -> Response<FakeBody> {
    respond(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn not_found(name: &str) -> Response<FakeBody> {
    status(404, "NotFound", &format!("\"{name}\" not found"))
}

/// Polls `cond` every 50 ms for up to 10 s (what reflectors and retries need to settle);
/// panics naming `what` when it never holds.
pub async fn wait(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out: {what}");
}
