//! The translation cache gives exactly what a translation from scratch gives: random sequences
//! of changes (objects added, modified, deleted) over a small universe of routes in both API
//! groups, Services, EndpointSlices, Endpoints, Secrets, Nodes, Middlewares, TraefikServices
//! and a TLSStore, compared after every change, told what changed or not; and it reuses what
//! did not change.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sluice_crd::{
    manifest_from_json, translate_refs, CachedTranslation, CrdOptions, Manifest, ObjectRef,
    Objects, Revision, TranslationCache, Versioned, SERVICE_NAME_LABEL,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

const NAMESPACES: [&str; 2] = ["a", "b"];
const SERVICES: [&str; 4] = ["s0", "s1", "s2", "s3"];
const ROUTES: [&str; 6] = ["r0", "r1", "r2", "r3", "r4", "r5"];

/// Which object: kind, API group, namespace, name.
type Identity = (&'static str, &'static str, String, String);

fn meta(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let mut labels = serde_json::Map::new();
    if rng.chance(60) {
        labels.insert("app".into(), json!("x"));
    }
    json!({"name": name, "namespace": ns, "labels": labels})
}

fn service(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let kind = rng.pick(&[
        "ClusterIP",
        "ClusterIP",
        "ClusterIP",
        "ExternalName",
        "NodePort",
    ]);
    let ports = rng.pick(&[
        json!([{"name": "http", "port": 80, "nodePort": 30080}]),
        json!([{"name": "http", "port": 80, "nodePort": 30080}]),
        json!([{"name": "http", "port": 80, "nodePort": 30080}]),
        json!([{"name": "https", "port": 443}]),
        json!([{"name": "http", "port": 80}, {"name": "web", "port": 8080}]),
        json!([{"name": "http", "port": 81}]),
    ]);
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta(rng, ns, name),
        "spec": {"type": kind, "ports": ports,
                 "clusterIP": rng.pick(&["10.0.0.1", "10.0.0.2", "None", ""]),
                 "externalName": "ext.example.com"}
    })
}

fn endpoint_slice(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let service = &name[..2];
    let mut m = meta(rng, ns, name);
    m["labels"]["kubernetes.io/service-name"] = json!(service);
    m["creationTimestamp"] = json!(rng.pick(&["2024-01-01T00:00:00Z", "2023-01-01T00:00:00Z"]));
    let endpoints: Vec<Value> = (0..rng.pick(&[0, 1, 1, 2, 2, 3]))
        .map(|_| {
            let mut conditions = serde_json::Map::new();
            if rng.chance(30) {
                conditions.insert("serving".into(), json!(rng.chance(50)));
            }
            if rng.chance(20) {
                conditions.insert("terminating".into(), json!(true));
            }
            json!({"addresses": [rng.pick(&["10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00::1"])],
                   "conditions": conditions})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": m,
        "addressType": "IPv4",
        "ports": rng.pick(&[
            json!([{"name": "http", "port": 8080}]),
            json!([{"name": "http", "port": 8080}]),
            json!([{"name": "http", "port": 8080}]),
            json!([{"name": "web", "port": 9090}]),
            json!([{"name": "https", "port": 8443}]),
            json!([{"name": "http", "port": 8081}]),
        ]),
        "endpoints": endpoints
    })
}

fn endpoints(rng: &mut Rng, ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints", "metadata": meta(rng, ns, name),
        "subsets": [{"addresses": [{"ip": rng.pick(&["10.2.0.1", "10.2.0.2"])}],
                     "ports": [{"name": "http", "port": 7070}]}]
    })
}

fn secret(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let mut m = meta(rng, ns, name);
    if rng.chance(10) {
        m["labels"]["owner"] = json!("helm");
    }
    let data = rng.pick(&[
        json!({"tls.crt": "CERT-1", "tls.key": "KEY-1"}),
        json!({"tls.crt": "CERT-2", "tls.key": "KEY-2"}),
        json!({"tls.crt": "CERT-3"}),
        json!({"tls.crt": "", "tls.key": "KEY-4"}),
    ]);
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": m, "stringData": data})
}

fn node(rng: &mut Rng, name: &str) -> Value {
    let kind = rng.pick(&["InternalIP", "InternalIP", "ExternalIP"]);
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": kind, "address": rng.pick(&["192.168.0.1", "192.168.0.2"])}]}
    })
}

fn service_ref(rng: &mut Rng) -> Value {
    let mut r = serde_json::Map::new();
    if rng.chance(15) {
        r.insert("name".into(), json!(rng.pick(&["t0", "t1"])));
        r.insert("kind".into(), json!("TraefikService"));
    } else if rng.chance(5) {
        r.insert("name".into(), json!("x@file"));
    } else {
        r.insert("name".into(), json!(rng.pick(&SERVICES)));
        r.insert(
            "port".into(),
            rng.pick(&[
                json!(80),
                json!(80),
                json!(80),
                json!(80),
                json!(443),
                json!("http"),
                json!(8080),
                json!(81),
            ]),
        );
    }
    if rng.chance(15) {
        r.insert("namespace".into(), json!(rng.pick(&NAMESPACES)));
    }
    if rng.chance(10) {
        r.insert("nativeLB".into(), json!(rng.chance(50)));
    }
    if rng.chance(10) {
        r.insert("nodePortLB".into(), json!(true));
    }
    if rng.chance(10) {
        r.insert(
            "strategy".into(),
            json!(rng.pick(&["wrr", "RoundRobin", "bogus"])),
        );
    }
    if rng.chance(20) {
        r.insert("weight".into(), json!(rng.below(3)));
    }
    Value::Object(r)
}

fn ingress_route(rng: &mut Rng, group: &str, ns: &str, name: &str) -> Value {
    let mut m = meta(rng, ns, name);
    if rng.chance(10) {
        m["annotations"] = json!({"kubernetes.io/ingress.class": "traefik"});
    }
    let mut spec = serde_json::Map::new();
    spec.insert("entryPoints".into(), json!(["web"]));
    if rng.chance(10) {
        spec.insert(
            "ingressClassName".into(),
            json!(rng.pick(&["traefik", "other"])),
        );
    }
    let routes: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            let mut route = serde_json::Map::new();
            // Few rules, so that routers of different routes collide.
            route.insert(
                "match".into(),
                json!(rng.pick(&["Host(`x`)", "Host(`y`)", "PathPrefix(`/z`)", "Host(`w`)", "Host(`v`)"])),
            );
            if rng.chance(3) {
                route.insert("match".into(), json!(""));
            }
            if rng.chance(20) {
                route.insert("kind".into(), json!(rng.pick(&["Rule", "", "Bad"])));
            }
            let services: Vec<Value> = (0..rng.pick(&[0, 1, 1, 1, 2, 3]))
                .map(|_| service_ref(rng))
                .collect();
            route.insert("services".into(), json!(services));
            if rng.chance(20) {
                route.insert(
                    "middlewares".into(),
                    json!([{"name": rng.pick(&["m0", "m1"]), "namespace": rng.pick(&["", "a", "b"])}]),
                );
            }
            Value::Object(route)
        })
        .collect();
    spec.insert("routes".into(), json!(routes));
    if rng.chance(25) {
        spec.insert(
            "tls".into(),
            json!({"secretName": rng.pick(&["tls0", "tls1", ""]), "options": {"name": "opt"}}),
        );
    }
    if rng.chance(15) {
        spec.insert(
            "parentRefs".into(),
            json!([{"name": rng.pick(&ROUTES), "namespace": rng.pick(&["", "a", "b"])}]),
        );
    }
    json!({"apiVersion": format!("{group}/v1alpha1"), "kind": "IngressRoute", "metadata": m, "spec": spec})
}

fn middleware(rng: &mut Rng, group: &str, ns: &str, name: &str) -> Value {
    let spec = rng.pick(&[
        json!({"headers": {"customRequestHeaders": {"X": "1"}}}),
        json!({"errors": {"status": ["500"], "query": "/", "service": {"name": "s0", "port": 80}}}),
        json!({"errors": {"status": ["502"], "query": "/", "service": {"name": "s1", "port": 80}}}),
        json!({"chain": {"middlewares": [{"name": "m0"}]}}),
    ]);
    json!({"apiVersion": format!("{group}/v1alpha1"), "kind": "Middleware", "metadata": meta(rng, ns, name), "spec": spec})
}

fn traefik_service(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let children: Vec<Value> = (0..1 + rng.below(2))
        .map(|_| json!({"name": rng.pick(&SERVICES), "port": 80, "weight": 1 + rng.below(3)}))
        .collect();
    json!({"apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService", "metadata": meta(rng, ns, name),
           "spec": {"weighted": {"services": children}}})
}

fn tls_store(rng: &mut Rng) -> Value {
    let spec = rng.pick(&[
        json!({"certificates": [{"secretName": "tls0"}]}),
        json!({"defaultCertificate": {"secretName": "tls1"}}),
        json!({}),
    ]);
    json!({"apiVersion": "traefik.io/v1alpha1", "kind": "TLSStore", "metadata": {"name": "default", "namespace": "a"}, "spec": spec})
}

/// Every object identity of the universe.
fn identities() -> Vec<Identity> {
    let mut ids = Vec::new();
    for ns in NAMESPACES {
        for s in SERVICES {
            ids.push(("Service", "", ns.to_string(), s.to_string()));
            ids.push(("Endpoints", "", ns.to_string(), s.to_string()));
            for j in 0..2 {
                ids.push((
                    "EndpointSlice",
                    "discovery.k8s.io",
                    ns.to_string(),
                    format!("{s}-{j}"),
                ));
            }
        }
        for r in ROUTES {
            ids.push(("IngressRoute", "traefik.io", ns.to_string(), r.to_string()));
        }
        for r in &ROUTES[..3] {
            ids.push((
                "IngressRoute",
                "traefik.containo.us",
                ns.to_string(),
                r.to_string(),
            ));
        }
        for m in ["m0", "m1"] {
            ids.push(("Middleware", "traefik.io", ns.to_string(), m.to_string()));
        }
        ids.push((
            "Middleware",
            "traefik.containo.us",
            ns.to_string(),
            "m0".to_string(),
        ));
        for t in ["t0", "t1"] {
            ids.push((
                "TraefikService",
                "traefik.io",
                ns.to_string(),
                t.to_string(),
            ));
        }
        for s in ["tls0", "tls1"] {
            ids.push(("Secret", "", ns.to_string(), s.to_string()));
        }
    }
    for n in ["n0", "n1"] {
        ids.push(("Node", "", String::new(), n.to_string()));
    }
    ids.push(("TLSStore", "traefik.io", "a".into(), "default".into()));
    ids
}

fn generate(rng: &mut Rng, id: &Identity) -> Manifest {
    let (kind, group, ns, name) = id;
    let value = match *kind {
        "Service" => service(rng, ns, name),
        "Endpoints" => endpoints(rng, ns, name),
        "EndpointSlice" => endpoint_slice(rng, ns, name),
        "IngressRoute" => ingress_route(rng, group, ns, name),
        "Middleware" => middleware(rng, group, ns, name),
        "TraefikService" => traefik_service(rng, ns, name),
        "Secret" => secret(rng, ns, name),
        "Node" => node(rng, name),
        "TLSStore" => tls_store(rng),
        other => unreachable!("{other}"),
    };
    match manifest_from_json(&value, Path::new("cluster")) {
        Some(Ok(m)) => m,
        other => panic!("test object does not decode: {other:?}\n{value}"),
    }
}

/// The objects present, with revisions as the Kubernetes provider numbers them: a new one for
/// every new content.
#[derive(Default)]
struct Cluster {
    objects: BTreeMap<Identity, (Manifest, Revision)>,
    next: Revision,
}

impl Cluster {
    fn put(&mut self, id: Identity, manifest: Manifest) {
        if self.objects.get(&id).is_some_and(|(m, _)| *m == manifest) {
            return;
        }
        self.next += 1;
        self.objects.insert(id, (manifest, self.next));
    }

    /// Every object in order (by kind, group, namespace, name).
    fn sorted(&self) -> Vec<&Manifest> {
        self.objects.values().map(|(m, _)| m).collect()
    }

    fn versioned(&self, keep: impl Fn(&Identity, &Manifest) -> bool) -> Vec<Versioned<'_>> {
        self.objects
            .iter()
            .filter(|(id, (m, _))| keep(id, m))
            .map(|(_, (manifest, revision))| Versioned {
                manifest,
                revision: *revision,
            })
            .collect()
    }
}

impl Objects for Cluster {
    fn list(&self, kind: &str, group: &str) -> Vec<Versioned<'_>> {
        self.versioned(|id, _| id.0 == kind && id.1 == group)
    }

    fn get(&self, kind: &str, group: &str, namespace: &str, name: &str) -> Option<Versioned<'_>> {
        self.versioned(|id, _| id.0 == kind && id.1 == group && id.2 == namespace && id.3 == name)
            .into_iter()
            .next()
    }

    fn endpoint_slices(&self, namespace: &str, service: &str) -> Vec<Versioned<'_>> {
        self.versioned(|id, m| {
            id.0 == "EndpointSlice"
                && id.2 == namespace
                && m.object
                    .meta()
                    .labels
                    .get(SERVICE_NAME_LABEL)
                    .map(String::as_str)
                    == Some(service)
        })
    }
}

fn options(value: Value) -> CrdOptions {
    serde_json::from_value(value).expect("options")
}

/// Translates with the cache and from scratch, and compares.
fn check(
    cache: &mut TranslationCache,
    cluster: &Cluster,
    changed: Option<&[ObjectRef<'_>]>,
    options: &CrdOptions,
    step: usize,
) -> CachedTranslation {
    let expected = translate_refs(&cluster.sorted(), options);
    let got = cache.translate(cluster, changed, options);
    assert_eq!(
        *got.config, expected.config,
        "configuration differs at step {step}"
    );
    assert_eq!(
        got.diagnostics, expected.diagnostics,
        "diagnostics differ at step {step}"
    );
    got
}

fn reference(id: &Identity) -> ObjectRef<'_> {
    ObjectRef {
        kind: id.0,
        group: id.1,
        namespace: &id.2,
        name: &id.3,
    }
}

#[test]
fn random_changes_translate_as_from_scratch() {
    let option_sets = [
        options(json!({})),
        options(
            json!({"allowCrossNamespace": true, "allowEmptyServices": true,
                       "allowExternalNameServices": true, "nativeLBByDefault": true}),
        ),
        options(json!({"namespaces": ["a"], "disableClusterScopeResources": true})),
        options(json!({"labelSelector": "app=x", "allowCrossNamespace": true})),
    ];
    let ids = identities();
    // One cache for every option set: a change of options starts it afresh.
    let mut cache = TranslationCache::new();
    let (mut reused, mut translated) = (0, 0);
    let (mut copied, mut updated) = (0, 0);
    for (seed, options) in option_sets.iter().enumerate() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1));
        let mut cluster = Cluster::default();
        for id in &ids {
            if rng.chance(75) {
                let m = generate(&mut rng, id);
                cluster.put(id.clone(), m);
            }
        }
        let mut last = check(&mut cache, &cluster, None, options, 0);
        // Configurations held elsewhere, as the provider's channel and its readers hold them.
        let mut published = last.config.clone();
        let mut lagging = None;
        for step in 1..500 {
            // One to three changes, then a translation.
            let mut touched = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let id = rng.pick(&ids);
                if rng.chance(15) {
                    cluster.objects.remove(&id);
                } else {
                    let m = generate(&mut rng, &id);
                    cluster.put(id.clone(), m);
                }
                touched.push(id);
            }
            let changed: Vec<ObjectRef<'_>> = touched.iter().map(reference).collect();
            // Now and then the cache is not told what changed.
            let told = !rng.chance(10);
            let got = check(
                &mut cache,
                &cluster,
                told.then_some(&changed[..]),
                options,
                step,
            );
            assert_eq!(
                got.changed,
                got.config != last.config,
                "`changed` is wrong at step {step}"
            );
            let reuse = cache.last_reuse();
            reused += reuse.reused;
            translated += reuse.translated;
            if reuse.copied {
                copied += 1;
            } else {
                updated += 1;
            }
            // Mostly published at once; now and then a reader keeps an older one a while.
            if rng.chance(80) {
                published = got.config.clone();
            }
            if rng.chance(10) {
                lagging = Some(published.clone());
            } else if rng.chance(30) {
                lagging = None;
            }
            last = got;
        }
        drop((published, lagging));
    }
    assert!(
        copied > 0 && updated > copied,
        "copied {copied}, updated {updated}"
    );
    assert!(
        reused > 10 * translated,
        "reused {reused}, translated {translated}"
    );
}

fn route_to(ns: &str, name: &str, service: &str) -> Manifest {
    let value = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"routes": [{"match": format!("Host(`{name}`)"), "kind": "Rule",
                             "services": [{"name": service, "port": 80}]}]}
    });
    manifest_from_json(&value, Path::new("cluster"))
        .expect("known kind")
        .expect("valid")
}

fn plain(value: Value) -> Manifest {
    manifest_from_json(&value, Path::new("cluster"))
        .expect("known kind")
        .expect("valid")
}

fn service_with_slice(name: &str, address: &str) -> [Manifest; 2] {
    [
        plain(json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": "a"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})),
        plain(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": format!("{name}-x"), "namespace": "a",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "ports": [{"name": "http", "port": 8080}],
                     "endpoints": [{"addresses": [address]}]}),
        ),
    ]
}

/// The server URLs behind the router of the route named `route`.
fn servers(t: &CachedTranslation, route: &str) -> Vec<String> {
    let Some(http) = t.config.http.as_ref() else {
        return Vec::new();
    };
    http.routers
        .values()
        .find(|r| r.rule == format!("Host(`{route}`)"))
        .and_then(|r| http.services.get(&r.service))
        .and_then(|s| s.load_balancer.as_ref())
        .map(|lb| lb.servers.iter().map(|s| s.url.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn an_endpoint_change_translates_only_the_route_reading_it() {
    let mut cluster = Cluster::default();
    for i in 0..10 {
        let (route, service) = (format!("r{i}"), format!("s{i}"));
        cluster.put(
            ("IngressRoute", "traefik.io", "a".into(), route.clone()),
            route_to("a", &route, &service),
        );
        let [svc, slice] = service_with_slice(&service, "10.0.0.1");
        cluster.put(("Service", "", "a".into(), service.clone()), svc);
        cluster.put(
            (
                "EndpointSlice",
                "discovery.k8s.io",
                "a".into(),
                format!("{service}-x"),
            ),
            slice,
        );
    }
    let options = CrdOptions::default();
    let mut cache = TranslationCache::new();
    check(&mut cache, &cluster, None, &options, 0);
    assert_eq!(
        (cache.last_reuse().reused, cache.last_reuse().translated),
        (0, 10)
    );

    // s3's slice gets another address.
    let id: Identity = (
        "EndpointSlice",
        "discovery.k8s.io",
        "a".into(),
        "s3-x".into(),
    );
    cluster.put(id.clone(), service_with_slice("s3", "10.0.0.9")[1].clone());
    let t = check(&mut cache, &cluster, Some(&[reference(&id)]), &options, 1);
    assert_eq!(
        (cache.last_reuse().reused, cache.last_reuse().translated),
        (9, 1)
    );
    assert_eq!(servers(&t, "r3"), ["http://10.0.0.9:8080"]);
    assert_eq!(servers(&t, "r2"), ["http://10.0.0.1:8080"]);

    // Nothing changed: everything is reused, told so or not.
    check(&mut cache, &cluster, Some(&[]), &options, 2);
    assert_eq!(
        (cache.last_reuse().reused, cache.last_reuse().translated),
        (10, 0)
    );
    check(&mut cache, &cluster, None, &options, 3);
    assert_eq!(
        (cache.last_reuse().reused, cache.last_reuse().translated),
        (10, 0)
    );
}

#[test]
fn a_route_naming_a_missing_service_is_translated_again_when_it_appears() {
    let options = CrdOptions::default();
    let mut cache = TranslationCache::new();
    let mut cluster = Cluster::default();
    cluster.put(
        ("IngressRoute", "traefik.io", "a".into(), "r".into()),
        route_to("a", "r", "late"),
    );
    let t = check(&mut cache, &cluster, None, &options, 0);
    assert!(t.config.http.as_ref().is_some_and(|h| h.routers.is_empty()));
    assert!(t.diagnostics[0]
        .message
        .contains("kubernetes service not found: a/late"));

    let [service, slice] = service_with_slice("late", "10.0.0.7");
    let ids: [Identity; 2] = [
        ("Service", "", "a".into(), "late".into()),
        (
            "EndpointSlice",
            "discovery.k8s.io",
            "a".into(),
            "late-x".into(),
        ),
    ];
    cluster.put(ids[0].clone(), service);
    cluster.put(ids[1].clone(), slice);
    let changed: Vec<ObjectRef<'_>> = ids.iter().map(reference).collect();
    let t = check(&mut cache, &cluster, Some(&changed), &options, 1);
    assert_eq!(
        (cache.last_reuse().reused, cache.last_reuse().translated),
        (0, 1)
    );
    assert_eq!(servers(&t, "r"), ["http://10.0.0.7:8080"]);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
}

#[test]
fn the_last_route_producing_a_name_wins() {
    // Both routes produce the service `a-s0-80`: from the ClusterIP for one, from the
    // endpoints for the other (which comes last, by name).
    let weighted = |name: &str, native: bool| {
        plain(json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": name, "namespace": "a"},
            "spec": {"routes": [{"match": format!("Host(`{name}`)"), "kind": "Rule",
                                 "services": [{"name": "s0", "port": 80, "nativeLB": native},
                                              {"name": "s0", "port": 80, "nativeLB": native}]}]}
        }))
    };
    let first: Identity = ("IngressRoute", "traefik.io", "a".into(), "a-native".into());
    let last: Identity = (
        "IngressRoute",
        "traefik.io",
        "a".into(),
        "b-endpoints".into(),
    );
    let mut cluster = Cluster::default();
    cluster.put(first.clone(), weighted("a-native", true));
    cluster.put(last.clone(), weighted("b-endpoints", false));
    let [_, slice] = service_with_slice("s0", "10.0.0.5");
    cluster.put(
        ("Service", "", "a".into(), "s0".into()),
        plain(json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "s0", "namespace": "a"},
                     "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}]}})),
    );
    cluster.put(
        (
            "EndpointSlice",
            "discovery.k8s.io",
            "a".into(),
            "s0-x".into(),
        ),
        slice,
    );
    let options = CrdOptions::default();
    let mut cache = TranslationCache::new();
    let winner = |t: &CachedTranslation| {
        t.config
            .http
            .as_ref()
            .and_then(|h| h.services.get("a-s0-80"))
            .and_then(|s| s.load_balancer.as_ref())
            .map(|lb| lb.servers[0].url.clone())
            .unwrap_or_default()
    };
    let t = check(&mut cache, &cluster, None, &options, 0);
    assert_eq!(winner(&t), "http://10.0.0.5:8080");

    // The last one goes: the first one's value shows; it comes back: its own again.
    let removed = cluster.objects.remove(&last).expect("present");
    let t = check(&mut cache, &cluster, Some(&[reference(&last)]), &options, 1);
    assert_eq!(winner(&t), "http://10.96.0.1:80");
    cluster.put(last.clone(), removed.0);
    let t = check(&mut cache, &cluster, Some(&[reference(&last)]), &options, 2);
    assert_eq!(winner(&t), "http://10.0.0.5:8080");
    // The first one changes: the last one still wins.
    cluster.put(first.clone(), weighted("a-native", false));
    let t = check(
        &mut cache,
        &cluster,
        Some(&[reference(&first)]),
        &options,
        3,
    );
    assert_eq!(winner(&t), "http://10.0.0.5:8080");
}
