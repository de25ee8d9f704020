//! Providers turn configuration sources into one dynamic configuration.
//!
//! Each provider's names are qualified with `@provider` here, so the runtime builder only ever
//! sees qualified names and references (`app@file`), and providers can refer to each other.

pub mod file;
pub mod kubernetes;

use sluice_config::dynamic::Configuration;

/// Appends `@provider` to a name that has no provider yet.
pub fn qualify_name(name: &str, provider: &str) -> String {
    if name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}@{provider}")
    }
}

/// Qualifies every HTTP router, service and transport name, and every reference between them.
pub fn qualify(mut config: Configuration, provider: &str) -> Configuration {
    // TLS options are named per provider too, except `default`, which every provider shares.
    if let Some(options) = config
        .tls
        .as_mut()
        .and_then(|tls| tls.get_mut("options"))
        .and_then(|o| o.as_object_mut())
    {
        *options = std::mem::take(options)
            .into_iter()
            .map(|(name, value)| {
                let name = if name == "default" {
                    name
                } else {
                    qualify_name(&name, provider)
                };
                (name, value)
            })
            .collect();
    }
    let Some(http) = config.http.as_mut() else {
        return config;
    };
    let q = |name: &str| qualify_name(name, provider);
    http.routers = std::mem::take(&mut http.routers)
        .into_iter()
        .map(|(name, mut router)| {
            router.service = q(&router.service);
            router.middlewares = router.middlewares.iter().map(|m| q(m)).collect();
            (q(&name), router)
        })
        .collect();
    http.services = std::mem::take(&mut http.services)
        .into_iter()
        .map(|(name, mut service)| {
            if let Some(lb) = service.load_balancer.as_mut() {
                if let Some(transport) = lb.servers_transport.as_mut() {
                    *transport = q(transport);
                }
            }
            if let Some(weighted) = service.weighted.as_mut() {
                for child in &mut weighted.services {
                    child.name = q(&child.name);
                }
            }
            if let Some(mirroring) = service.mirroring.as_mut() {
                mirroring.service = q(&mirroring.service);
                for mirror in &mut mirroring.mirrors {
                    mirror.name = q(&mirror.name);
                }
            }
            (q(&name), service)
        })
        .collect();
    http.middlewares = std::mem::take(&mut http.middlewares)
        .into_iter()
        .map(|(name, m)| (q(&name), m))
        .collect();
    http.servers_transports = std::mem::take(&mut http.servers_transports)
        .into_iter()
        .map(|(name, t)| (q(&name), t))
        .collect();
    config
}

/// Adds the qualified configuration `other` to `into`. Names carry their provider, so the two
/// cannot collide.
pub fn merge(into: &mut Configuration, other: Configuration) {
    if let Some(theirs) = other.http {
        let ours = into.http.get_or_insert_with(Default::default);
        ours.routers.extend(theirs.routers);
        ours.services.extend(theirs.services);
        ours.middlewares.extend(theirs.middlewares);
        ours.servers_transports.extend(theirs.servers_transports);
    }
    if into.tcp.is_none() {
        into.tcp = other.tcp;
    }
    if into.udp.is_none() {
        into.udp = other.udp;
    }
    if let Some(theirs) = other.tls {
        merge_tls(
            into.tls.get_or_insert_with(|| serde_json::json!({})),
            theirs,
        );
    }
}

/// Merges two providers' `tls` sections as Traefik's aggregator does: certificates add up,
/// options and stores join by name, and a `default` defined by both is dropped (so routers
/// needing it fail loudly instead of getting one provider's choice at random).
fn merge_tls(ours: &mut serde_json::Value, theirs: serde_json::Value) {
    let serde_json::Value::Object(theirs) = theirs else {
        return;
    };
    let Some(ours) = ours.as_object_mut() else {
        return;
    };
    for (section, value) in theirs {
        match (section.as_str(), ours.get_mut(&section), value) {
            (
                "certificates",
                Some(serde_json::Value::Array(mine)),
                serde_json::Value::Array(more),
            ) => mine.extend(more),
            (_, Some(serde_json::Value::Object(mine)), serde_json::Value::Object(more)) => {
                for (name, entry) in more {
                    if name == "default" && mine.contains_key("default") {
                        tracing::error!(
                            "tls.{section}.default is defined by more than one provider; it is dropped"
                        );
                        mine.remove("default");
                        continue;
                    }
                    mine.insert(name, entry);
                }
            }
            (_, _, value) => {
                ours.insert(section, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_sections_merge_and_options_are_qualified() {
        let parse = |v: serde_json::Value| -> Configuration { serde_json::from_value(v).unwrap() };
        let mut merged = qualify(
            parse(
                serde_json::json!({"tls": {"certificates": [{"certFile": "a"}],
                "options": {"default": {}, "x": {}}}}),
            ),
            "file",
        );
        let other = qualify(
            parse(
                serde_json::json!({"tls": {"certificates": [{"certFile": "b"}],
                "options": {"default": {}, "y": {}}, "stores": {"default": {}}}}),
            ),
            "kubernetescrd",
        );
        merge(&mut merged, other);
        let tls = merged.tls.unwrap();
        assert_eq!(tls["certificates"].as_array().unwrap().len(), 2);
        let names: Vec<&String> = tls["options"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["x@file", "y@kubernetescrd"]);
        assert!(tls["stores"]["default"].is_object());
    }

    #[test]
    fn names_keep_an_explicit_provider() {
        assert_eq!(qualify_name("app", "file"), "app@file");
        assert_eq!(qualify_name("api@internal", "file"), "api@internal");
    }
}
