//! Services: Kubernetes Service references become server load balancers,
//! TraefikServices become weighted / mirroring / HRW / failover services
//! (Traefik's `configBuilder`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sluice_config::dynamic::{
    Cookie, MirrorService, Mirroring, ResponseForwarding, ServersLoadBalancer, Service, Sticky,
    WeightedRoundRobin, WrrService,
};
use sluice_config::{Diagnostic, GoDuration};

use crate::names::{make_id, normalize};
use crate::options::CrdOptions;
use crate::store::Store;
use crate::types::{self, IntOrString, LoadBalancerSpec, TraefikService};

use super::error::{BuildError, Located};
use super::refs::{
    cross_provider_allowed, namespace_allowed, namespace_or_parent, resolve_reference,
    PROVIDER_NAME,
};
use super::servers::load_servers;

/// The generated services, by name.
pub type Services = BTreeMap<String, Service>;

/// Builds services for one referencing resource.
pub struct ServiceBuilder<'s, 'a> {
    /// Visible objects.
    pub store: &'s Store<'a>,
    /// Provider options.
    pub options: &'s CrdOptions,
    /// Honour `nativeLBByDefault` (Traefik passes it for IngressRoutes only).
    pub native_lb_by_default: bool,
    /// Refuse Node lookups (Traefik passes it for IngressRoutes only).
    pub disable_cluster_scope: bool,
    /// Warnings gathered while building.
    pub warnings: &'s mut Vec<Diagnostic>,
}

/// Traefik's load-balancer strategies.
const STRATEGIES: [&str; 4] = ["wrr", "p2c", "hrw", "leasttime"];

impl ServiceBuilder<'_, '_> {
    /// The configuration name of a service reference and, for a Kubernetes
    /// Service, its server load balancer (which the caller stores).
    pub fn name_and_service(
        &mut self,
        parent_ns: &str,
        spec: &LoadBalancerSpec,
        field: &str,
    ) -> Result<(String, Option<Service>), Located> {
        let mut spec = spec.clone();
        let cross_provider = spec.name.contains('@');
        if !cross_provider {
            spec.namespace = namespace_or_parent(&spec.namespace, parent_ns).to_string();
            if !namespace_allowed(
                self.options.allow_cross_namespace,
                parent_ns,
                &spec.namespace,
            ) {
                return Err(Located::new(
                    join(field, "namespace"),
                    BuildError::ServiceNotInParentNamespace {
                        service: format!("{}/{}", spec.namespace, spec.name),
                        parent: parent_ns.to_string(),
                    },
                ));
            }
        }
        if cross_provider
            && !cross_provider_allowed(&self.options.cross_provider_namespaces, parent_ns)
        {
            return Err(Located::new(
                join(field, "name"),
                BuildError::ServiceCrossProvider {
                    name: spec.name.clone(),
                    namespace: parent_ns.to_string(),
                },
            ));
        }
        match spec.kind.as_str() {
            "" | "Service" => {
                let lb = self.build_servers_lb(&spec, field)?;
                let port = spec.port.clone();
                Ok((full_service_name(&spec, &port), Some(lb)))
            }
            "TraefikService" => Ok((full_service_name(&spec, &IntOrString::Int(0)), None)),
            other => Err(Located::new(
                join(field, "kind"),
                BuildError::UnsupportedServiceKind(other.to_string()),
            )),
        }
    }

    /// A servers load balancer for a Kubernetes Service reference.
    pub fn build_servers_lb(
        &mut self,
        spec: &LoadBalancerSpec,
        field: &str,
    ) -> Result<Service, Located> {
        let mut lb = ServersLoadBalancer {
            strategy: Some("wrr".to_string()),
            ..ServersLoadBalancer::default()
        };
        // The fake clients of Traefik's tests apply no CRD default, so an
        // absent strategy keeps the built-in default.
        if !spec.strategy.is_empty() {
            if STRATEGIES.contains(&spec.strategy.as_str()) {
                lb.strategy = Some(spec.strategy.clone());
            } else if spec.strategy == "RoundRobin" {
                self.warnings.push(
                    Diagnostic::warning(
                        "strategy `RoundRobin` is deprecated, use `wrr` (same behaviour)",
                    )
                    .with_field(join(field, "strategy")),
                );
            } else {
                return Err(Located::new(
                    join(field, "strategy"),
                    BuildError::Strategy(spec.strategy.clone()),
                ));
            }
        }

        lb.servers = load_servers(self, spec, field)?;

        if let Some(hc) = &spec.health_check {
            lb.health_check = Some(health_check(hc, &join(field, "healthCheck"))?);
        }
        if let Some(phc) = &spec.passive_health_check {
            let mut window = GoDuration::from_secs(10);
            if let Some(w) = &phc.failure_window {
                window = duration(
                    w,
                    "failureWindow",
                    &join(field, "passiveHealthCheck.failureWindow"),
                )?;
            }
            let mut obj = Map::new();
            if !window.is_zero() {
                obj.insert("failureWindow".into(), json!(window.to_string()));
            }
            let attempts = phc.max_failed_attempts.unwrap_or(1);
            if attempts != 0 {
                obj.insert("maxFailedAttempts".into(), json!(attempts));
            }
            lb.passive_health_check = Some(Value::Object(obj));
        }

        lb.pass_host_header = Some(spec.pass_host_header.unwrap_or(true));
        let mut flush = sluice_config::dynamic::DEFAULT_FLUSH_INTERVAL;
        if let Some(rf) = &spec.response_forwarding {
            if !rf.flush_interval.is_empty() {
                flush = GoDuration::parse_traefik(&rf.flush_interval).map_err(|e| {
                    Located::new(
                        join(field, "responseForwarding.flushInterval"),
                        BuildError::Duration {
                            field: "flushInterval",
                            reason: e.to_string(),
                        },
                    )
                })?;
            }
        }
        lb.response_forwarding = Some(ResponseForwarding {
            flush_interval: Some(flush),
        });

        lb.sticky = sticky(spec.sticky.as_ref());
        lb.servers_transport = self
            .servers_transport_key(&spec.namespace, &spec.servers_transport)
            .map_err(|e| Located::new(join(field, "serversTransport"), e))?;

        let mut service = Service {
            load_balancer: Some(lb),
            ..Service::default()
        };
        for (i, m) in spec.middlewares.iter().enumerate() {
            let name = resolve_reference(self.options, &spec.namespace, &m.namespace, &m.name)
                .map_err(|cause| {
                    Located::new(
                        format!("{}[{i}]", join(field, "middlewares")),
                        BuildError::ServiceMiddlewares(Box::new(BuildError::MiddlewareRef {
                            name: m.name.clone(),
                            cause,
                        })),
                    )
                })?;
            service.middlewares.push(name);
        }
        Ok(service)
    }

    fn servers_transport_key(
        &self,
        parent_ns: &str,
        name: &str,
    ) -> Result<Option<String>, BuildError> {
        if name.is_empty() {
            return Ok(None);
        }
        if name.contains('@') {
            if !self.options.allow_cross_namespace && name.ends_with(&format!("@{PROVIDER_NAME}")) {
                return Err(BuildError::ServersTransportCrdRef(name.to_string()));
            }
            if !cross_provider_allowed(&self.options.cross_provider_namespaces, parent_ns) {
                return Err(BuildError::ServersTransportCrossProvider {
                    name: name.to_string(),
                    namespace: parent_ns.to_string(),
                });
            }
            return Ok(Some(name.to_string()));
        }
        Ok(Some(normalize(&make_id(parent_ns, name))))
    }

    /// A TraefikService, stored (with its Kubernetes children) in `conf`.
    pub fn build_traefik_service(
        &mut self,
        ts: &TraefikService,
        conf: &mut Services,
    ) -> Result<(), Located> {
        let ns = ts.metadata.ns();
        let id = normalize(&make_id(ns, &ts.metadata.name));
        let spec = &ts.spec;
        if let Some(w) = &spec.weighted {
            return self.build_weighted(
                ns,
                &w.services,
                w.sticky.as_ref(),
                &id,
                conf,
                "spec.weighted.services",
            );
        }
        if let Some(m) = &spec.mirroring {
            let (main, lb) = self.name_and_service(ns, &m.service, "spec.mirroring")?;
            if let Some(lb) = lb {
                conf.insert(main.clone(), lb);
            }
            let mut mirrors = Vec::new();
            for (i, mirror) in m.mirrors.iter().enumerate() {
                let (name, lb) = self.name_and_service(
                    ns,
                    &mirror.service,
                    &format!("spec.mirroring.mirrors[{i}]"),
                )?;
                if let Some(lb) = lb {
                    conf.insert(name.clone(), lb);
                }
                mirrors.push(MirrorService {
                    name,
                    percent: mirror.percent,
                });
            }
            conf.insert(
                id,
                Service {
                    mirroring: Some(Mirroring {
                        service: main,
                        mirror_body: m.mirror_body,
                        max_body_size: m.max_body_size,
                        mirrors,
                        health_check: None,
                    }),
                    ..Service::default()
                },
            );
            return Ok(());
        }
        if let Some(h) = &spec.highest_random_weight {
            let mut children = Vec::new();
            for (i, child) in h.services.iter().enumerate() {
                let (name, lb) = self.name_and_service(
                    ns,
                    child,
                    &format!("spec.highestRandomWeight.services[{i}]"),
                )?;
                if let Some(lb) = lb {
                    conf.insert(name.clone(), lb);
                }
                children.push(json!({"name": name, "weight": child.weight.unwrap_or(1)}));
            }
            let mut hrw = Map::new();
            if !children.is_empty() {
                hrw.insert("services".into(), Value::Array(children));
            }
            conf.insert(
                id,
                Service {
                    highest_random_weight: Some(Value::Object(hrw)),
                    ..Service::default()
                },
            );
            return Ok(());
        }
        if let Some(f) = &spec.failover {
            let (main, main_lb) = self
                .name_and_service(ns, &f.service, "spec.failover.service")
                .map_err(|l| {
                    Located::new(l.field, BuildError::FailoverService(Box::new(l.error)))
                })?;
            let (fallback, fallback_lb) = self
                .name_and_service(ns, &f.fallback, "spec.failover.fallback")
                .map_err(|l| {
                    Located::new(l.field, BuildError::FailoverFallback(Box::new(l.error)))
                })?;
            let mut errors = Map::new();
            if let Some(max) = f.errors.max_request_body_bytes {
                errors.insert("maxRequestBodyBytes".into(), json!(max));
            }
            if !f.errors.status.is_empty() {
                errors.insert("status".into(), json!(f.errors.status));
            }
            let mut fo = Map::new();
            if !main.is_empty() {
                fo.insert("service".into(), json!(main));
            }
            if !fallback.is_empty() {
                fo.insert("fallback".into(), json!(fallback));
            }
            fo.insert("errors".into(), Value::Object(errors));
            conf.insert(
                id,
                Service {
                    failover: Some(Value::Object(fo)),
                    ..Service::default()
                },
            );
            if let Some(lb) = main_lb {
                conf.insert(main, lb);
            }
            if let Some(lb) = fallback_lb {
                conf.insert(fallback, lb);
            }
            return Ok(());
        }
        Err(Located::new("spec", BuildError::UnspecifiedServiceType))
    }

    /// A weighted service `id` over `children`; Kubernetes children are
    /// stored as they are built (so earlier ones stay if a later one fails,
    /// as in Traefik).
    pub fn build_weighted(
        &mut self,
        ns: &str,
        children: &[LoadBalancerSpec],
        sticky_spec: Option<&types::Sticky>,
        id: &str,
        conf: &mut Services,
        field: &str,
    ) -> Result<(), Located> {
        let mut services = Vec::new();
        for (i, child) in children.iter().enumerate() {
            let (name, lb) = self.name_and_service(ns, child, &format!("{field}[{i}]"))?;
            if let Some(lb) = lb {
                conf.insert(name.clone(), lb);
            }
            services.push(WrrService {
                name,
                weight: Some(child.weight.unwrap_or(1)),
            });
        }
        conf.insert(
            id.to_string(),
            Service {
                weighted: Some(WeightedRoundRobin {
                    services,
                    sticky: sticky(sticky_spec),
                    health_check: None,
                }),
                ..Service::default()
            },
        );
        Ok(())
    }
}

/// `parent.child`, or `child` at the top.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// Sticky cookie with Traefik's defaults (path `/`).
fn sticky(spec: Option<&types::Sticky>) -> Option<Sticky> {
    let c = spec?.cookie.as_ref()?;
    Some(Sticky {
        cookie: Some(Cookie {
            name: c.name.clone(),
            secure: c.secure,
            http_only: c.http_only,
            same_site: c.same_site.clone(),
            max_age: c.max_age,
            path: Some(c.path.clone().unwrap_or_else(|| "/".to_string())),
            domain: c.domain.clone(),
        }),
    })
}

/// A duration given as integer seconds or a Go duration string.
fn duration(v: &IntOrString, name: &'static str, field: &str) -> Result<GoDuration, Located> {
    let parsed = match v {
        IntOrString::Int(n) => GoDuration::parse_traefik(&n.to_string()),
        IntOrString::String(s) => GoDuration::parse_traefik(s),
    };
    parsed.map_err(|e| {
        Located::new(
            field,
            BuildError::Duration {
                field: name,
                reason: e.to_string(),
            },
        )
    })
}

/// The dynamic health check of a service reference, with Traefik's
/// defaults (interval 30s, timeout 5s, followRedirects true, unhealthy
/// interval = interval) and its quirk: an unset `mode` stays empty.
fn health_check(hc: &types::ServerHealthCheck, field: &str) -> Result<Value, Located> {
    let mut interval = GoDuration::from_secs(30);
    let mut timeout = GoDuration::from_secs(5);
    if let Some(i) = &hc.interval {
        interval = duration(i, "interval", &join(field, "interval"))?;
    }
    let unhealthy = match &hc.unhealthy_interval {
        Some(u) => duration(u, "unhealthyInterval", &join(field, "unhealthyInterval"))?,
        None => interval,
    };
    if let Some(t) = &hc.timeout {
        timeout = duration(t, "timeout", &join(field, "timeout"))?;
    }
    let mode = if hc.mode == "http" {
        "http"
    } else {
        hc.mode.as_str()
    };
    let mut o = Map::new();
    let put_str = |o: &mut Map<String, Value>, k: &str, v: &str| {
        if !v.is_empty() {
            o.insert(k.to_string(), json!(v));
        }
    };
    put_str(&mut o, "scheme", &hc.scheme);
    put_str(&mut o, "mode", mode);
    put_str(&mut o, "path", &hc.path);
    put_str(&mut o, "method", &hc.method);
    if hc.status != 0 {
        o.insert("status".into(), json!(hc.status));
    }
    if hc.port != 0 {
        o.insert("port".into(), json!(hc.port));
    }
    if !interval.is_zero() {
        o.insert("interval".into(), json!(interval.to_string()));
    }
    // A pointer in Traefik: written even when zero.
    o.insert("unhealthyInterval".into(), json!(unhealthy.to_string()));
    if !timeout.is_zero() {
        o.insert("timeout".into(), json!(timeout.to_string()));
    }
    put_str(&mut o, "hostname", &hc.hostname);
    o.insert(
        "followRedirects".into(),
        json!(hc.follow_redirects.unwrap_or(true)),
    );
    if !hc.headers.is_empty() {
        o.insert("headers".into(), json!(hc.headers));
    }
    Ok(Value::Object(o))
}

/// The configuration name of a service reference: `ns-name-port` for a
/// Kubernetes Service, `ns-name` for a TraefikService, `name@provider`
/// kept for cross-provider references (`x@kubernetescrd` -> `ns-x`).
pub fn full_service_name(spec: &LoadBalancerSpec, port: &IntOrString) -> String {
    if !port.is_unset() {
        return normalize(&format!("{}-{}-{}", spec.namespace, spec.name, port));
    }
    if !spec.name.contains('@') {
        return normalize(&format!("{}-{}", spec.namespace, spec.name));
    }
    let (name, provider) = spec.name.rsplit_once('@').unwrap_or((&spec.name, ""));
    if provider == PROVIDER_NAME {
        return normalize(&format!("{}-{}", spec.namespace, name));
    }
    format!("{}@{}", normalize(name), provider)
}
