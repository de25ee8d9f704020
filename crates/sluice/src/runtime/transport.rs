//! Servers transports: how Sluice connects to origins, with one connection pool each.
//!
//! A transport is keyed by its configuration, and the set of transports outlives runtime
//! snapshots, so a reload that leaves a transport unchanged keeps its pooled connections.

pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use sluice_config::GoDuration;

use crate::dataplane::body::ProxyBody;
use crate::dataplane::pool::{Connector, H2Pool, H2Settings, Pool, PoolSettings, TlsConnector};
use crate::dataplane::worker;

/// A parsed and validated `http.serversTransports` entry.
///
/// Parsing reads the PEM files it names and builds its TLS configuration once, so unreadable
/// files, invalid PEM and impossible versions are errors naming the field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "ServersTransport")]
pub struct TransportConfig {
    /// The entry as written.
    pub spec: ServersTransport,
    /// Contents of the PEM files and inline PEM it refers to.
    pem: tls::LoadedPem,
}

impl TryFrom<ServersTransport> for TransportConfig {
    type Error = String;

    fn try_from(spec: ServersTransport) -> Result<Self, String> {
        let pem = tls::LoadedPem::load(&spec)?;
        tls::TlsConfigs::build(&spec, &pem)?;
        Ok(Self { spec, pem })
    }
}

/// Traefik's `serversTransports` entry (dynamic configuration), field for field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServersTransport {
    /// SNI and name verified for `https://` origins, instead of the server's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any origin certificate (handshake signatures are still checked).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Trusted CAs for origin certificates: PEM file paths or inline PEM (the CRD translation
    /// emits the content of Secrets and ConfigMaps). Empty: the webpki-roots trust store.
    #[serde(default, rename = "rootCAs")]
    pub root_cas: Vec<String>,
    /// Client certificates for mTLS towards origins (the first one is presented).
    #[serde(default)]
    pub certificates: Vec<ClientCertificate>,
    /// Go cipher-suite names; applied to TLS 1.2 where rustls implements them.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// `VersionTLS12`, `VersionTLS13` (TLS 1.0/1.1 mean 1.2: rustls has nothing older).
    #[serde(default)]
    pub min_version: Option<String>,
    /// Highest TLS version offered.
    #[serde(default)]
    pub max_version: Option<String>,
    #[serde(default)]
    pub max_idle_conns_per_host: Option<i64>,
    #[serde(default)]
    pub forwarding_timeouts: ForwardingTimeouts,
    /// Offer only HTTP/1.1 in ALPN to `https://` origins.
    #[serde(default, rename = "disableHTTP2")]
    pub disable_http2: bool,
    /// Verify that the origin certificate has this URI SAN (instead of its host name).
    #[serde(default, rename = "peerCertURI")]
    pub peer_cert_uri: Option<String>,
    /// Accepted, not applied yet: extra names the origin certificate may be valid for.
    #[serde(default, rename = "peerCertSANs")]
    pub peer_cert_sans: Vec<String>,
    /// Accepted and ignored: SPIFFE needs a Workload API agent, which Sluice does not talk to.
    #[serde(default)]
    pub spiffe: Option<serde_json::Value>,
}

/// One `certificates` entry of a servers transport: PEM file paths or inline PEM.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientCertificate {
    pub cert_file: String,
    pub key_file: String,
}

impl std::fmt::Debug for ClientCertificate {
    // The configuration's Debug form is a pool key and may be logged: an inline private key
    // must not appear in it (its digest is in `LoadedPem`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key_file.contains("-----BEGIN") {
            "<inline PEM>"
        } else {
            self.key_file.as_str()
        };
        f.debug_struct("ClientCertificate")
            .field("cert_file", &self.cert_file)
            .field("key_file", &key)
            .finish()
    }
}

/// `forwardingTimeouts` of a servers transport.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardingTimeouts {
    pub dial_timeout: Option<GoDuration>,
    pub response_header_timeout: Option<GoDuration>,
    pub idle_conn_timeout: Option<GoDuration>,
    /// HTTP/2 connections idle this long are pinged (0: never).
    pub read_idle_timeout: Option<GoDuration>,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    pub ping_timeout: Option<GoDuration>,
}

/// Connection pools to origins plus the timeouts that apply to requests through them.
#[derive(Debug)]
pub struct Transport {
    /// One set of pools per worker, so a pooled connection is always used by the thread that
    /// drives it.
    pools: Vec<Pools>,
    /// Time allowed between sending the request and receiving response headers (None: unlimited).
    pub response_header_timeout: Option<Duration>,
}

#[derive(Debug)]
struct Pools {
    /// `http://` origins: Sluice's own HTTP/1.1 pool (see [`Pool`]).
    http1: Pool,
    /// `https://` origins speaking HTTP/1.1 (ALPN said so, `disableHTTP2`, or upgrades).
    https1: Pool,
    /// `https://` origins that negotiate h2; None with `disableHTTP2`.
    https2: Option<H2Pool>,
    /// `h2c://` origins: one multiplexed connection per origin, from hyper-util's client.
    h2c: Client<HttpConnector, ProxyBody>,
}

impl Transport {
    fn new(config: &TransportConfig, workers: usize) -> Self {
        let spec = &config.spec;
        let timeouts = &spec.forwarding_timeouts;
        let dial = timeouts
            .dial_timeout
            .and_then(|d| d.as_std())
            .unwrap_or(Duration::from_secs(30));
        let idle = timeouts
            .idle_conn_timeout
            .and_then(|d| d.as_std())
            .unwrap_or(Duration::from_secs(90));
        // Traefik's default transport keeps up to 200 idle connections per host.
        let max_idle = match spec.max_idle_conns_per_host {
            None | Some(0) => 200,
            Some(n) if n < 0 => 0,
            Some(n) => n as usize,
        };
        // TCP keep-alive probes on idle origin connections, as Go's dialer sends them.
        let tcp_keepalive = Duration::from_secs(30);
        let settings = PoolSettings {
            max_idle,
            idle_timeout: idle,
            dial_timeout: dial,
            tcp_keepalive,
        };
        let h2_settings = H2Settings {
            keep_alive_interval: timeouts
                .read_idle_timeout
                .and_then(|d| d.as_std())
                .filter(|d| !d.is_zero()),
            keep_alive_timeout: timeouts
                .ping_timeout
                .and_then(|d| d.as_std())
                .unwrap_or(Duration::from_secs(15)),
        };
        // Parsing already built this configuration once, so this cannot fail in practice;
        // should it, https origins of this transport answer 502 with the reason.
        let tls = tls::TlsConfigs::build(spec, &config.pem).map_err(|e| {
            tracing::error!(error = %e, "serversTransport TLS configuration");
            e
        });
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(dial));
        connector.set_keepalive(Some(tcp_keepalive));
        connector.enforce_http(false);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(max_idle);
        let pools = (0..workers.max(1))
            .map(|_| {
                let (https1, https2) = match &tls {
                    Ok(tls) => (
                        Connector::Tls(TlsConnector {
                            config: tls.http1.clone(),
                            server_name: tls.server_name.clone(),
                        }),
                        tls.h2.as_ref().map(|h2| {
                            H2Pool::new(
                                settings,
                                h2_settings,
                                TlsConnector {
                                    config: h2.clone(),
                                    server_name: tls.server_name.clone(),
                                },
                            )
                        }),
                    ),
                    Err(e) => (Connector::Broken(e.clone()), None),
                };
                Pools {
                    http1: Pool::new(settings, Connector::Plain),
                    https1: Pool::new(settings, https1),
                    https2,
                    h2c: builder.clone().http2_only(true).build(connector.clone()),
                }
            })
            .collect();
        Self {
            pools,
            response_header_timeout: timeouts.response_header_timeout.and_then(|d| d.as_std()),
        }
    }

    /// The current worker's pools.
    fn pools(&self) -> &Pools {
        &self.pools[worker::current() % self.pools.len()]
    }

    /// The current worker's HTTP/1.1 pool, for `http://` servers.
    pub fn http1(&self) -> &Pool {
        &self.pools().http1
    }

    /// The current worker's HTTP/1.1-over-TLS pool, for `https://` servers without HTTP/2.
    pub fn https1(&self) -> &Pool {
        &self.pools().https1
    }

    /// The current worker's pool for `https://` servers that may negotiate h2 (None with
    /// `disableHTTP2`).
    pub fn https2(&self) -> Option<&H2Pool> {
        self.pools().https2.as_ref()
    }

    /// The current worker's h2c client, for `h2c://` servers.
    pub fn h2c(&self) -> &Client<HttpConnector, ProxyBody> {
        &self.pools().h2c
    }
}

/// Every transport in use, keyed by configuration; kept across reloads.
#[derive(Debug, Default)]
pub struct Transports {
    by_config: Mutex<HashMap<String, Arc<Transport>>>,
    workers: usize,
}

impl Transports {
    /// Transports for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            by_config: Mutex::default(),
            workers,
        }
    }

    /// The transport for this configuration, reusing an existing pool when one matches.
    pub fn get(&self, config: &TransportConfig) -> Arc<Transport> {
        let key = format!("{config:?}");
        let mut map = self.by_config.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new(Transport::new(config, self.workers)))
            .clone()
    }

    /// Drops transports no longer referenced by any runtime (their pools close).
    pub fn prune(&self) {
        let mut map = self.by_config.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| Arc::strong_count(t) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<TransportConfig, String> {
        serde_json::from_value::<TransportConfig>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_traefik_fields() {
        let config = parse(serde_json::json!({
            "serverName": "origin.example",
            "insecureSkipVerify": true,
            "maxIdleConnsPerHost": 4,
            "disableHTTP2": true,
            "peerCertURI": "spiffe://x/y",
            "peerCertSANs": ["a"],
            "cipherSuites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
            "minVersion": "VersionTLS12",
            "maxVersion": "VersionTLS13",
            "spiffe": {"ids": ["spiffe://x/y"]},
            "forwardingTimeouts": {"dialTimeout": "1s", "readIdleTimeout": "10s", "pingTimeout": "15s"}
        }))
        .expect("valid transport");
        assert!(config.spec.disable_http2);
        assert_eq!(config.spec.server_name.as_deref(), Some("origin.example"));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(serde_json::json!({"rootCA": []})).unwrap_err();
        assert!(e.contains("unknown field `rootCA`"), "{e}");
        let e = parse(serde_json::json!({"forwardingTimeouts": {"dial": "1s"}})).unwrap_err();
        assert!(e.contains("unknown field `dial`"), "{e}");
        let e = parse(serde_json::json!({"rootCAs": ["/nonexistent/ca.pem"]})).unwrap_err();
        assert!(
            e.contains("rootCAs[0]: cannot read `/nonexistent/ca.pem`"),
            "{e}"
        );
        let e = parse(serde_json::json!({
            "rootCAs": ["-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"]
        }))
        .unwrap_err();
        assert!(e.contains("rootCAs[0]: invalid PEM certificate"), "{e}");
        let e = parse(serde_json::json!({
            "certificates": [{"certFile": "/nonexistent/c.pem", "keyFile": "/nonexistent/k.pem"}]
        }))
        .unwrap_err();
        assert!(e.contains("certificates[0].certFile"), "{e}");
        let e = parse(serde_json::json!({"minVersion": "VersionTLS14"})).unwrap_err();
        assert!(e.contains("minVersion: unknown TLS version"), "{e}");
        let e =
            parse(serde_json::json!({"minVersion": "VersionTLS13", "maxVersion": "VersionTLS12"}))
                .unwrap_err();
        assert!(e.contains("minVersion/maxVersion"), "{e}");
        let e = parse(serde_json::json!({"serverName": "bad name!"})).unwrap_err();
        assert!(e.contains("serverName"), "{e}");
    }

    #[test]
    fn pem_content_is_part_of_the_identity_but_not_shown() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let config = parse(serde_json::json!({
            "rootCAs": [cert.pem()],
            "certificates": [{"certFile": cert.pem(), "keyFile": key.serialize_pem()}]
        }))
        .expect("inline PEM");
        let shown = format!("{config:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
