//! An in-memory Kubernetes API server on 127.0.0.1, for tests: the production watcher, leader
//! election and Secret code run against it unchanged through `kube::Config::new(url)`.
//!
//! It speaks the parts of the real protocol the provider uses, for every kind of
//! [`crate::kinds::all`]: paginated lists (`limit`/`continue`) carrying
//! `metadata.resourceVersion`, `labelSelector`, `watch=1` streams of JSON lines
//! (`ADDED`/`MODIFIED`/`DELETED`, `BOOKMARK` when `allowWatchBookmarks`), resumed from a
//! `resourceVersion` and ended after `timeoutSeconds`, an `ERROR` event with a 410 Status when
//! the version is older than the compacted history, and get/create/replace/delete with
//! `resourceVersion` conflicts (409). Like the real server, list items of built-in kinds carry
//! no `apiVersion`/`kind`.
//!
//! Test controls: [`FakeApi::apply`], [`FakeApi::delete`], [`FakeApi::expire_watches`] (410),
//! [`FakeApi::drop_watches`] (every connection cut, watches mid-stream), [`FakeApi::set_down`]
//! (connections cut and new ones refused, until set up again).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sluice_crd::LabelSelector;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::kinds::{self, Kind};

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// One change, as watchers see it.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: Kind,
    namespace: String,
    event: &'static str,
    object: Value,
}

/// Objects of one resource by `(namespace, name)`.
type Objects = BTreeMap<(String, String), Value>;

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Watches from a version at or below this one get 410.
    compacted: u64,
    /// By `(group, plural)`.
    objects: BTreeMap<(&'static str, &'static str), Objects>,
    log: Vec<Arc<Change>>,
    down: bool,
    uid: u64,
}

struct State {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    /// Bumped to cut every open watch (connection drop).
    cut: watch::Sender<u64>,
    /// Bumped to end every open watch with a 410.
    expire: watch::Sender<u64>,
    requests: AtomicU64,
    lists: AtomicU64,
    /// API groups answered 404, as when their CRDs are not installed.
    missing_groups: Mutex<Vec<String>>,
    bookmark_interval: Duration,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake API server. Dropping it stops it.
pub struct FakeApi {
    state: Arc<State>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
        self.state.cut.send_modify(|g| *g += 1);
    }
}

/// Why a test control call failed.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("object without apiVersion/kind")]
    NoKind,
    #[error("kind {0} is not served by the fake API")]
    UnknownKind(String),
    #[error("object without metadata.name")]
    NoName,
    #[error("invalid YAML: {0}")]
    Yaml(String),
}

impl FakeApi {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<FakeApi> {
        Self::start_with_bookmarks(Duration::from_secs(1)).await
    }

    /// Starts, sending a BOOKMARK on idle watches every `bookmark_interval`.
    pub async fn start_with_bookmarks(bookmark_interval: Duration) -> std::io::Result<FakeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (changes, _) = broadcast::channel(65_536);
        let state = Arc::new(State {
            inner: Mutex::new(Inner::default()),
            changes,
            cut: watch::channel(0).0,
            expire: watch::channel(0).0,
            requests: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            missing_groups: Mutex::new(Vec::new()),
            bookmark_interval,
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Down: connections are refused (closed at once).
                if serving.lock().down {
                    drop(stream);
                    continue;
                }
                let state = serving.clone();
                let mut cut = serving.cut.subscribe();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(FakeApi { state, addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let uri: http::Uri = self.url().parse().unwrap_or_default();
        let config = kube::Config::new(uri);
        // Building a plain-HTTP client cannot fail on TLS setup.
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("fake API client: {e}"))
    }

    /// Creates or updates an object (`apiVersion`, `kind`, `metadata.name`, and
    /// `metadata.namespace` for namespaced kinds, `default` when absent). Returns the new
    /// resource version.
    pub fn apply(&self, object: Value) -> Result<u64, FakeError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or(FakeError::NoKind)?;
        let kind_name = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(FakeError::NoKind)?;
        let kind = kinds::find(api_version, kind_name)
            .ok_or_else(|| FakeError::UnknownKind(format!("{api_version} {kind_name}")))?;
        let namespace = if kind.namespaced {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let mut inner = self.state.lock();
        upsert(&self.state, &mut inner, kind, &namespace, object, None)
            .map(|_| inner.rv)
            .map_err(|_| FakeError::NoName)
    }

    /// Applies every document of a multi-document YAML text.
    pub fn apply_yaml(&self, text: &str) -> Result<(), FakeError> {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|e| FakeError::Yaml(e.to_string()))?;
        for document in documents {
            if document.is_null() {
                continue;
            }
            self.apply(document)?;
        }
        Ok(())
    }

    /// Deletes the objects of this kind name (any API group) at `namespace/name` (`namespace`
    /// empty for Nodes). Returns whether one existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let mut inner = self.state.lock();
        let mut found = false;
        for k in kinds::all().into_iter().filter(|k| k.kind == kind) {
            found |= remove(&self.state, &mut inner, k, namespace, name).is_some();
        }
        found
    }

    /// The stored object, if any.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = kinds::find(api_version, kind)?;
        let inner = self.state.lock();
        inner
            .objects
            .get(&(kind.group, kind.plural))?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Compacts the history: every open watch ends with a 410 `ERROR` event and every resume
    /// from an older version gets one, forcing the clients to list again.
    pub fn expire_watches(&self) {
        {
            let mut inner = self.state.lock();
            inner.compacted = inner.rv;
        }
        self.state.expire.send_modify(|g| *g += 1);
    }

    /// Cuts every open connection, watches mid-stream (no final chunk).
    pub fn drop_watches(&self) {
        self.state.cut.send_modify(|g| *g += 1);
    }

    /// While down, open connections are cut, new ones are closed at once, and a request that
    /// still arrives is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state.lock().down = down;
        if down {
            self.drop_watches();
        }
    }

    /// Serves 404 for every resource of `group` (its CRDs not installed), or serves it again.
    pub fn set_group_missing(&self, group: &str, missing: bool) {
        let mut groups = self
            .state
            .missing_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        groups.retain(|g| g != group);
        if missing {
            groups.push(group.to_string());
        }
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// List requests served so far (initial lists and relists).
    pub fn lists(&self) -> u64 {
        self.state.lists.load(Ordering::Relaxed)
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().rv
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    })
}

type Failure = (StatusCode, Value);

/// Stores `object` under `kind`/`namespace`, stamping its metadata; `expected` is the
/// resource version a replace must match (`Some(None)`: must not exist).
fn upsert(
    state: &State,
    inner: &mut Inner,
    kind: Kind,
    namespace: &str,
    mut object: Value,
    expected: Option<Option<&str>>,
) -> Result<Value, Failure> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value",
                ),
            )
        })?;
    let key = (namespace.to_string(), name.clone());
    let existing = inner
        .objects
        .get(&(kind.group, kind.plural))
        .and_then(|m| m.get(&key))
        .cloned();
    match (expected, &existing) {
        (Some(None), Some(_)) => {
            return Err((
                StatusCode::CONFLICT,
                status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{} \"{name}\" already exists", kind.plural),
                ),
            ))
        }
        (Some(Some(_)), None) => {
            return Err((
                StatusCode::NOT_FOUND,
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{} \"{name}\" not found", kind.plural),
                ),
            ))
        }
        (Some(Some(wanted)), Some(current)) if !wanted.is_empty() => {
            let current_rv = current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            if current_rv != wanted {
                return Err((
                    StatusCode::CONFLICT,
                    status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                            kind.plural
                        ),
                    ),
                ));
            }
        }
        _ => {}
    }
    inner.rv += 1;
    let rv = inner.rv;
    if !object.is_object() {
        object = json!({});
    }
    object["apiVersion"] = kind.api_version().into();
    object["kind"] = kind.kind.into();
    let metadata = &mut object["metadata"];
    if kind.namespaced {
        metadata["namespace"] = namespace.into();
    }
    metadata["resourceVersion"] = rv.to_string().into();
    match existing.as_ref() {
        Some(previous) => {
            for field in ["uid", "creationTimestamp"] {
                metadata[field] = previous["metadata"][field].clone();
            }
        }
        None => {
            inner.uid += 1;
            metadata["uid"] = format!("00000000-0000-0000-0000-{:012}", inner.uid).into();
            if metadata.get("creationTimestamp").is_none_or(Value::is_null) {
                metadata["creationTimestamp"] = k8s_openapi::jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
                    .into();
            }
        }
    }
    let event = if existing.is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    inner
        .objects
        .entry((kind.group, kind.plural))
        .or_default()
        .insert(key, object.clone());
    record(state, inner, kind, namespace, event, object.clone());
    Ok(object)
}

fn remove(
    state: &State,
    inner: &mut Inner,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let mut object = inner
        .objects
        .get_mut(&(kind.group, kind.plural))?
        .remove(&(namespace.to_string(), name.to_string()))?;
    inner.rv += 1;
    object["metadata"]["resourceVersion"] = inner.rv.to_string().into();
    record(state, inner, kind, namespace, "DELETED", object.clone());
    Some(object)
}

fn record(
    state: &State,
    inner: &mut Inner,
    kind: Kind,
    namespace: &str,
    event: &'static str,
    object: Value,
) {
    let change = Arc::new(Change {
        rv: inner.rv,
        kind,
        namespace: namespace.to_string(),
        event,
        object,
    });
    inner.log.push(change.clone());
    let _ = state.changes.send(change);
}

/// A request path, resolved.
struct Target {
    kind: Kind,
    /// `None`: all namespaces (or a cluster-scoped kind).
    namespace: Option<String>,
    name: Option<String>,
}

fn resolve(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some(name.to_string())),
        _ => return None,
    };
    let kind = kinds::all()
        .into_iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)?;
    Some(Target {
        kind,
        namespace,
        name,
    })
}

fn query(request: &Request<Incoming>) -> BTreeMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query component.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
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

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(bytes).map_err(|e| match e {}).boxed_unsync())
        .unwrap_or_default()
}

fn failure((code, body): Failure) -> Response<Body> {
    json_response(code, &body)
}

async fn handle(state: &Arc<State>, request: Request<Incoming>) -> Response<Body> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if state.lock().down {
        return failure((
            StatusCode::SERVICE_UNAVAILABLE,
            status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
        ));
    }
    let missing = |t: &Target| {
        state
            .missing_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|g| g == t.kind.group)
    };
    let Some(target) = resolve(request.uri().path()).filter(|t| !missing(t)) else {
        return failure((
            StatusCode::NOT_FOUND,
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ));
    };
    let params = query(&request);
    let selector =
        match LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str)) {
            Ok(s) => s,
            Err(e) => {
                return failure((
                    StatusCode::BAD_REQUEST,
                    status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                ))
            }
        };
    let method = request.method().clone();
    match (method, target.name.clone()) {
        (Method::GET, None) => {
            if params.get("watch").is_some_and(|w| w == "1" || w == "true") {
                watch_response(state, &target, &params, selector)
            } else {
                list(state, &target, &params, &selector)
            }
        }
        (Method::GET, Some(name)) => {
            let inner = state.lock();
            let ns = target.namespace.clone().unwrap_or_default();
            match inner
                .objects
                .get(&(target.kind.group, target.kind.plural))
                .and_then(|m| m.get(&(ns, name.clone())))
            {
                Some(object) => json_response(StatusCode::OK, object),
                None => failure((
                    StatusCode::NOT_FOUND,
                    status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{} \"{name}\" not found", target.kind.plural),
                    ),
                )),
            }
        }
        (Method::POST, None) | (Method::PUT, Some(_)) => {
            let creating = request.method() == Method::POST;
            let body = match request.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return json_response(StatusCode::BAD_REQUEST, &json!({})),
            };
            let object: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return failure((
                        StatusCode::BAD_REQUEST,
                        status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                    ))
                }
            };
            let ns = target.namespace.clone().unwrap_or_default();
            let wanted = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut inner = state.lock();
            let expected = if creating {
                Some(None)
            } else {
                Some(Some(wanted.as_str()))
            };
            match upsert(state, &mut inner, target.kind, &ns, object, expected) {
                Ok(stored) => {
                    let code = if creating {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    json_response(code, &stored)
                }
                Err(f) => failure(f),
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut inner = state.lock();
            let ns = target.namespace.clone().unwrap_or_default();
            match remove(state, &mut inner, target.kind, &ns, &name) {
                Some(object) => json_response(StatusCode::OK, &object),
                None => failure((
                    StatusCode::NOT_FOUND,
                    status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{name} not found"),
                    ),
                )),
            }
        }
        _ => failure((
            StatusCode::METHOD_NOT_ALLOWED,
            status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not supported",
            ),
        )),
    }
}

fn matches(target: &Target, selector: &LabelSelector, namespace: &str, object: &Value) -> bool {
    if target
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != namespace)
    {
        return false;
    }
    let labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    selector.matches(&labels)
}

/// How list items look: built-in kinds lose `apiVersion`/`kind`, as the real server sends them.
fn list_item(kind: Kind, object: &Value) -> Value {
    let mut item = object.clone();
    if !kind.is_traefik() {
        if let Some(map) = item.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
    }
    item
}

fn list(
    state: &State,
    target: &Target,
    params: &BTreeMap<String, String>,
    selector: &LabelSelector,
) -> Response<Body> {
    state.lists.fetch_add(1, Ordering::Relaxed);
    let inner = state.lock();
    // `continue` is `offset/resourceVersion` of the first page.
    let (offset, rv) = params
        .get("continue")
        .and_then(|c| c.split_once('/'))
        .and_then(|(o, r)| Some((o.parse::<usize>().ok()?, r.parse::<u64>().ok()?)))
        .unwrap_or((0, inner.rv));
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let empty = BTreeMap::new();
    let all: Vec<&Value> = inner
        .objects
        .get(&(target.kind.group, target.kind.plural))
        .unwrap_or(&empty)
        .iter()
        .filter(|((ns, _), o)| matches(target, selector, ns, o))
        .map(|(_, o)| o)
        .collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| list_item(target.kind, o))
        .collect();
    let next = offset.saturating_add(page.len());
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if next < all.len() {
        metadata["continue"] = format!("{next}/{rv}").into();
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.kind.kind),
            "apiVersion": target.kind.api_version(),
            "metadata": metadata,
            "items": page,
        }),
    )
}

fn line(value: &Value) -> Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Ok(Frame::data(Bytes::from(bytes)))
}

fn event(kind: &str, object: &Value) -> Value {
    json!({"type": kind, "object": object})
}

fn gone() -> Value {
    event(
        "ERROR",
        &status(StatusCode::GONE, "Expired", "too old resource version"),
    )
}

fn watch_response(
    state: &Arc<State>,
    target: &Target,
    params: &BTreeMap<String, String>,
    selector: LabelSelector,
) -> Response<Body> {
    let (tx, rx) =
        mpsc::channel::<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(1024);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let from = params.get("resourceVersion").cloned().unwrap_or_default();
    let target = Target {
        kind: target.kind,
        namespace: target.namespace.clone(),
        name: None,
    };
    let state = state.clone();

    // Decide what to replay and subscribe under one lock so no change falls in between.
    let (replay, mut changes, too_old, mut at) = {
        let inner = state.lock();
        let changes = state.changes.subscribe();
        match from.parse::<u64>() {
            Ok(rv) if rv > 0 => {
                if rv < inner.compacted {
                    (Vec::new(), changes, true, inner.rv)
                } else {
                    let start = inner.log.partition_point(|c| c.rv <= rv);
                    let replay: Vec<Arc<Change>> = inner.log[start..]
                        .iter()
                        .filter(|c| {
                            c.kind == target.kind
                                && matches(&target, &selector, &c.namespace, &c.object)
                        })
                        .cloned()
                        .collect();
                    (replay, changes, false, inner.rv)
                }
            }
            // No version: synthetic ADDED events for the current state.
            _ => {
                let replay = inner
                    .objects
                    .get(&(target.kind.group, target.kind.plural))
                    .map(|m| {
                        m.iter()
                            .filter(|((ns, _), o)| matches(&target, &selector, ns, o))
                            .map(|((ns, _), o)| {
                                Arc::new(Change {
                                    rv: inner.rv,
                                    kind: target.kind,
                                    namespace: ns.clone(),
                                    event: "ADDED",
                                    object: o.clone(),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (replay, changes, false, inner.rv)
            }
        }
    };
    let mut cut = state.cut.subscribe();
    let mut expire = state.expire.subscribe();
    cut.mark_unchanged();
    expire.mark_unchanged();

    tokio::spawn(async move {
        if too_old {
            let _ = tx.send(line(&gone())).await;
            return;
        }
        for change in replay {
            if tx
                .send(line(&event(change.event, &change.object)))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(state.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => {
                        at = at.max(change.rv);
                        if change.kind == target.kind
                            && matches(&target, &selector, &change.namespace, &change.object)
                            && tx.send(line(&event(change.event, &change.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    // This watcher fell behind the history kept for it: as the real server
                    // does when it cannot serve a version any more.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(line(&gone())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({
                        "kind": target.kind.kind,
                        "apiVersion": target.kind.api_version(),
                        "metadata": {"resourceVersion": at.to_string()},
                    });
                    if tx.send(line(&event("BOOKMARK", &bookmark))).await.is_err() {
                        return;
                    }
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => return,
                _ = cut.changed() => {
                    let _ = tx.send(Err("connection dropped by the fake API server".into())).await;
                    return;
                }
                _ = expire.changed() => {
                    let _ = tx.send(line(&gone())).await;
                    return;
                }
            }
        }
    });

    let body = StreamBody::new(tokio_stream(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(http_body_util::BodyExt::boxed_unsync(body))
        .unwrap_or_default()
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> futures_util::stream::BoxStream<'static, T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_kinds() {
        let t = resolve("/apis/traefik.io/v1alpha1/namespaces/prod/ingressroutes").unwrap();
        assert_eq!(
            (t.kind.kind, t.namespace.as_deref()),
            ("IngressRoute", Some("prod"))
        );
        let t = resolve("/api/v1/namespaces/default/secrets/acme").unwrap();
        assert_eq!((t.kind.kind, t.name.as_deref()), ("Secret", Some("acme")));
        let t = resolve("/apis/discovery.k8s.io/v1/endpointslices").unwrap();
        assert_eq!((t.kind.kind, t.namespace), ("EndpointSlice", None));
        assert!(resolve("/apis/apps/v1/deployments").is_none());
    }

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("owner%21%3Dhelm"), "owner!=helm");
        assert_eq!(decode("a+b%"), "a b%");
    }
}
