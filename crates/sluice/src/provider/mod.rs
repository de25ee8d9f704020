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
    if into.tls.is_none() {
        into.tls = other.tls;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_an_explicit_provider() {
        assert_eq!(qualify_name("app", "file"), "app@file");
        assert_eq!(qualify_name("api@internal", "file"), "api@internal");
    }
}
