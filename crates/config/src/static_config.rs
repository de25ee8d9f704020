//! The static configuration, in Traefik's schema (`entryPoints`,
//! `providers`, `log`, `core`, ...), from a YAML/TOML file and flags.
//!
//! Sections of Traefik's static configuration that Sluice does not
//! implement yet (`api`, `metrics`, `accessLog`, other providers, ...) are
//! accepted as opaque JSON values so that an existing Traefik file loads;
//! everything that is typed rejects unknown keys with the full key path.
//!
//! Defaults are Traefik's (see each `Default` impl) except `log.level`,
//! which is `INFO` here (Traefik: `ERROR`).

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::GoDuration;
use crate::parse::{self, DisplayPath, Format};

/// The whole static configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StaticConfig {
    /// `global` (checkNewVersion, sendAnonymousUsage): accepted, unused.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub global: Option<Value>,
    /// Default HTTP servers transport (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub servers_transport: Option<Value>,
    /// Default TCP servers transport (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub tcp_servers_transport: Option<Value>,
    /// Entry points by name, in file order.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub entry_points: IndexMap<String, EntryPoint>,
    /// Providers.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub providers: Providers,
    /// `api` (dashboard): accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub api: Option<Value>,
    /// `metrics`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub metrics: Option<Value>,
    /// `ping`: `/ping` (liveness) and `/ready` on `ping.entryPoint` (default `traefik`).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub ping: Option<Value>,
    /// Sluice's own log.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub log: Log,
    /// `accessLog`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub access_log: Option<Value>,
    /// `tracing`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub tracing: Option<Value>,
    /// `hostResolver`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub host_resolver: Option<Value>,
    /// `certificatesResolvers` (ACME): accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub certificates_resolvers: Option<Value>,
    /// `experimental`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub experimental: Option<Value>,
    /// Core switches.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub core: Core,
    /// `spiffe`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub spiffe: Option<Value>,
    /// `ocsp`: accepted, not implemented.
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub ocsp: Option<Value>,
}

impl Default for StaticConfig {
    fn default() -> Self {
        StaticConfig {
            global: None,
            servers_transport: None,
            tcp_servers_transport: None,
            entry_points: IndexMap::new(),
            providers: Providers::default(),
            api: None,
            metrics: None,
            ping: None,
            log: Log::default(),
            access_log: None,
            tracing: None,
            host_resolver: None,
            certificates_resolvers: None,
            experimental: None,
            core: Core::default(),
            spiffe: None,
            ocsp: None,
        }
    }
}

/// One entry point (`entryPoints.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EntryPoint {
    /// Listen address, `[host]:port[/tcp|/udp]`.
    pub address: String,
    /// ACME challenge handling by custom routers (accepted, unused).
    #[serde(rename = "allowACMEByPass")]
    pub allow_acme_by_pass: bool,
    /// SO_REUSEPORT.
    pub reuse_port: bool,
    /// Part of the default entry points for routers without `entryPoints`.
    pub as_default: bool,
    /// Connection timeouts and shutdown behaviour.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub transport: EntryPointTransport,
    /// PROXY protocol (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub proxy_protocol: Option<Value>,
    /// Which clients' `X-Forwarded-*` headers are trusted.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub forwarded_headers: ForwardedHeaders,
    /// HTTP options: redirections, default middlewares/TLS, ... (not
    /// interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub http: Option<Value>,
    /// HTTP/2 options (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub http2: Option<Value>,
    /// HTTP/3 options (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub http3: Option<Value>,
    /// UDP options (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub udp: Option<Value>,
    /// Per-entry-point observability switches (not interpreted yet).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub observability: Option<Value>,
}

/// `entryPoints.<name>.transport`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EntryPointTransport {
    /// Graceful shutdown timings.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub life_cycle: LifeCycle,
    /// Client-side timeouts.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub responding_timeouts: RespondingTimeouts,
    /// Close a keep-alive connection after this long; 0 = never.
    pub keep_alive_max_time: GoDuration,
    /// Close a keep-alive connection after this many requests; 0 = never.
    pub keep_alive_max_requests: i64,
}

/// `transport.lifeCycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LifeCycle {
    /// Keep accepting requests this long after a stop signal (default 0).
    pub request_accept_grace_timeout: GoDuration,
    /// Then give in-flight requests this long to finish (default 10s).
    pub grace_time_out: GoDuration,
}

impl Default for LifeCycle {
    fn default() -> Self {
        LifeCycle {
            request_accept_grace_timeout: GoDuration::ZERO,
            grace_time_out: GoDuration::from_secs(10),
        }
    }
}

/// `transport.respondingTimeouts`; zero means no timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RespondingTimeouts {
    /// Whole request read, body included (default 60s).
    pub read_timeout: GoDuration,
    /// Response write (default 0 = none).
    pub write_timeout: GoDuration,
    /// Idle keep-alive connection (default 180s).
    pub idle_timeout: GoDuration,
}

impl Default for RespondingTimeouts {
    fn default() -> Self {
        RespondingTimeouts {
            read_timeout: GoDuration::from_secs(60),
            write_timeout: GoDuration::ZERO,
            idle_timeout: GoDuration::from_secs(180),
        }
    }
}

/// `entryPoints.<name>.forwardedHeaders`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ForwardedHeaders {
    /// Trust every client's forwarded headers.
    pub insecure: bool,
    /// IPs/CIDRs whose forwarded headers are trusted.
    #[serde(
        rename = "trustedIPs",
        deserialize_with = "crate::nullable::or_default"
    )]
    pub trusted_ips: Vec<String>,
    /// Connection-listed headers allowed through the middleware chain.
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub connection: Vec<String>,
    /// Do not append the client address to `X-Forwarded-For`.
    pub not_append_x_forwarded_for: bool,
    /// Also send `X-Forwarded-Scheme` and `X-Scheme`.
    pub add_x_forwarded_scheme_headers: bool,
}

/// `providers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Providers {
    /// Minimum time between two applied configuration changes (Traefik's
    /// default when unset: 2s).
    pub providers_throttle_duration: Option<GoDuration>,
    /// Provider order that decides ties between routers of equal priority (empty: Traefik's default order).
    #[serde(deserialize_with = "crate::nullable::or_default")]
    pub precedence: Vec<String>,
    /// The file provider.
    #[serde(deserialize_with = "crate::nullable::present")]
    pub file: Option<FileProvider>,
    /// The Kubernetes CRD provider (typed by a later change).
    #[serde(
        rename = "kubernetesCRD",
        deserialize_with = "crate::nullable::present_object"
    )]
    pub kubernetes_crd: Option<Value>,
    /// Docker (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub docker: Option<Value>,
    /// Docker Swarm (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub swarm: Option<Value>,
    /// Kubernetes Ingress (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub kubernetes_ingress: Option<Value>,
    /// Kubernetes Ingress NGINX (not implemented).
    #[serde(
        rename = "kubernetesIngressNGINX",
        deserialize_with = "crate::nullable::present_object"
    )]
    pub kubernetes_ingress_nginx: Option<Value>,
    /// Kubernetes Gateway API (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub kubernetes_gateway: Option<Value>,
    /// Knative (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub knative: Option<Value>,
    /// REST (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub rest: Option<Value>,
    /// Consul Catalog (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub consul_catalog: Option<Value>,
    /// Nomad (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub nomad: Option<Value>,
    /// AWS ECS (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub ecs: Option<Value>,
    /// Consul KV (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub consul: Option<Value>,
    /// etcd (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub etcd: Option<Value>,
    /// ZooKeeper (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub zoo_keeper: Option<Value>,
    /// Redis (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub redis: Option<Value>,
    /// HTTP provider (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub http: Option<Value>,
    /// Plugin providers (not implemented).
    #[serde(deserialize_with = "crate::nullable::present_object")]
    pub plugin: Option<Value>,
}

impl Providers {
    /// Names (Traefik's keys) of configured providers Sluice does not
    /// implement, so the binary can warn about them.
    pub fn unsupported(&self) -> Vec<&'static str> {
        [
            ("docker", &self.docker),
            ("swarm", &self.swarm),
            ("kubernetesIngress", &self.kubernetes_ingress),
            ("kubernetesIngressNGINX", &self.kubernetes_ingress_nginx),
            ("kubernetesGateway", &self.kubernetes_gateway),
            ("knative", &self.knative),
            ("rest", &self.rest),
            ("consulCatalog", &self.consul_catalog),
            ("nomad", &self.nomad),
            ("ecs", &self.ecs),
            ("consul", &self.consul),
            ("etcd", &self.etcd),
            ("zooKeeper", &self.zoo_keeper),
            ("redis", &self.redis),
            ("http", &self.http),
            ("plugin", &self.plugin),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(name, _)| name)
        .collect()
    }
}

/// `providers.file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FileProvider {
    /// Load every `.yml/.yaml/.toml` file below this directory.
    ///
    /// After [`StaticConfig::load`], a relative path from the configuration
    /// file is relative to that file's directory (already joined); one from a
    /// flag is left relative to the current directory.
    pub directory: Option<PathBuf>,
    /// Load this single file (same path rule as `directory`).
    pub filename: Option<PathBuf>,
    /// Reload on change (default true).
    pub watch: bool,
    /// Log the rendered template (accepted, unused: no templating yet).
    pub debug_log_generated_template: bool,
}

impl Default for FileProvider {
    fn default() -> Self {
        FileProvider {
            directory: None,
            filename: None,
            watch: true,
            debug_log_generated_template: false,
        }
    }
}

/// `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Log {
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, ... (default `INFO`).
    pub level: String,
    /// `common` or `json`; unset = `common`.
    pub format: Option<String>,
    /// No colours in the `common` format.
    pub no_color: bool,
    /// Log to this file instead of stdout.
    pub file_path: Option<PathBuf>,
    /// Rotation size in megabytes (accepted, unused).
    pub max_size: i64,
    /// Rotation age in days (accepted, unused).
    pub max_age: i64,
    /// Rotated files kept (accepted, unused).
    pub max_backups: i64,
    /// Compress rotated files (accepted, unused).
    pub compress: bool,
    /// OpenTelemetry log export (accepted, unused).
    pub otlp: Option<Value>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "INFO".to_string(),
            format: None,
            no_color: false,
            file_path: None,
            max_size: 0,
            max_age: 0,
            max_backups: 0,
            compress: false,
            otlp: None,
        }
    }
}

/// `core`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Core {
    /// Rule syntax for routers without `ruleSyntax`: `v3` or `v2`; unset
    /// means `v3`.
    pub default_rule_syntax: Option<String>,
}

/// Why the static configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Syntax error, unknown key or wrong type.
    #[error("{}", render_invalid(.file, .key_path, .line, .column, .message))]
    Invalid {
        /// The file, when the problem is in it (None: comes from flags).
        file: Option<PathBuf>,
        /// Full key path, e.g. `entryPoints.web.adress`.
        key_path: Option<String>,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// 1-based column, when the parser knows it.
        column: Option<usize>,
        /// The reason.
        message: String,
    },
    /// A command-line flag is malformed or names an unknown key.
    #[error("flag `--{flag}`: {message}")]
    Flag {
        /// The flag key as given (without `--`).
        flag: String,
        /// The reason.
        message: String,
    },
}

impl ConfigError {
    /// Full key path of the problem, when known.
    pub fn key_path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key_path, .. } => key_path.as_deref(),
            _ => None,
        }
    }

    /// 1-based (line, column), when known.
    pub fn position(&self) -> Option<(usize, Option<usize>)> {
        match self {
            ConfigError::Invalid {
                line: Some(line),
                column,
                ..
            } => Some((*line, *column)),
            _ => None,
        }
    }
}

fn render_invalid(
    file: &Option<PathBuf>,
    key_path: &Option<String>,
    line: &Option<usize>,
    column: &Option<usize>,
    message: &str,
) -> String {
    Located {
        file: file.as_deref(),
        key_path: key_path.as_deref(),
        line: *line,
        column: *column,
        message,
    }
    .to_string()
}

struct Located<'a> {
    file: Option<&'a Path>,
    key_path: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("flags")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = self.key_path {
            write!(f, "{key}: ")?;
        }
        f.write_str(self.message)
    }
}

impl StaticConfig {
    /// Loads the static configuration from an optional file plus flags.
    ///
    /// * The file format comes from the extension: `.toml` is TOML,
    ///   anything else (`.yaml`, `.yml`, no extension) is YAML.
    /// * Each flag is `(key, value)` with a dotted key in Traefik's flag
    ///   form (`entryPoints.web.address`, a leading `--` is allowed) and is
    ///   applied over the file's values, in order. Known key names match
    ///   case-insensitively (`entrypoints.web.Address` works); map keys
    ///   such as entry point names match an existing key case-insensitively
    ///   and are otherwise kept as written. The value is typed by the
    ///   target: booleans (`true`/`false`, empty = `true`), integers,
    ///   durations, comma-separated lists (`trustedIPs=a,b`); an empty value
    ///   on a section (`providers.file`) creates it, `false` removes it.
    /// * A relative `providers.file.directory`/`filename` written in the file
    ///   is resolved against the file's directory; one given by a flag stays
    ///   relative to the current directory.
    pub fn load(
        path: Option<&Path>,
        flags: &[(String, String)],
    ) -> Result<StaticConfig, ConfigError> {
        let mut tree = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let format = Format::from_path(path).unwrap_or(Format::Yaml);
                let invalid = |f: parse::Failure| ConfigError::Invalid {
                    file: Some(path.to_path_buf()),
                    key_path: (!f.path.is_empty()).then(|| DisplayPath(&f.path).to_string()),
                    line: f.line,
                    column: f.column,
                    message: f.message,
                };
                // The file must be valid on its own. Decoding it straight
                // into the typed model gives positions for every error,
                // which the value tree used for flags no longer has.
                let from_file = parse::decode::<StaticConfig>(format, &text).map_err(invalid)?;
                if flags.is_empty() {
                    return Ok(finish(from_file, Some(path), &[]));
                }
                parse::decode::<Value>(format, &text).map_err(invalid)?
            }
            None => Value::Null,
        };
        if tree.is_null() {
            tree = Value::Object(serde_json::Map::new());
        }

        let mut flagged = Vec::new();
        for (key, value) in flags {
            flagged.push(flags::apply(&mut tree, key, value)?);
        }

        // Flag values were checked against the key table, so a failure here
        // is a flag that is well-formed but wrong for its field.
        let cfg: StaticConfig = serde_path_to_error::deserialize(&tree).map_err(|e| {
            let key_path = e.path().to_string();
            ConfigError::Invalid {
                file: None,
                key_path: (key_path != ".").then_some(key_path),
                line: None,
                column: None,
                message: e.into_inner().to_string(),
            }
        })?;
        Ok(finish(cfg, path, &flagged))
    }
}

/// Post-processing shared by both load paths: path resolution.
fn finish(mut cfg: StaticConfig, path: Option<&Path>, flagged: &[String]) -> StaticConfig {
    add_internal_entry_point(&mut cfg);
    if let Some(fp) = cfg.providers.file.as_mut() {
        let base = path.and_then(Path::parent);
        fp.directory = resolve(
            fp.directory.take(),
            base,
            flagged_at(flagged, "providers.file.directory"),
        );
        fp.filename = resolve(
            fp.filename.take(),
            base,
            flagged_at(flagged, "providers.file.filename"),
        );
    }
    cfg
}

/// Name of the entry point Traefik creates for its own endpoints.
pub const INTERNAL_ENTRY_POINT: &str = "traefik";

/// Traefik creates the `traefik` entry point on `:8080` when ping is served there (its default
/// entry point, without `manualRouting`) and the configuration does not define one.
fn add_internal_entry_point(cfg: &mut StaticConfig) {
    let Some(ping) = cfg.ping.as_ref() else {
        return;
    };
    let on_internal = ping
        .get("entryPoint")
        .and_then(|v| v.as_str())
        .is_none_or(|name| name.is_empty() || name == INTERNAL_ENTRY_POINT);
    let manual = ping
        .get("manualRouting")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if on_internal && !manual && !cfg.entry_points.contains_key(INTERNAL_ENTRY_POINT) {
        cfg.entry_points.insert(
            INTERNAL_ENTRY_POINT.to_owned(),
            EntryPoint {
                address: ":8080".to_owned(),
                ..EntryPoint::default()
            },
        );
    }
}

/// Whether a flag set exactly this key (a section flag such as
/// `--providers.file` keeps the file's values, so it does not count).
fn flagged_at(flagged: &[String], key: &str) -> bool {
    flagged.iter().any(|f| f == key)
}

/// Empty paths mean "unset" (Traefik tests `len(...) > 0`); relative paths
/// from the file are joined to the file's directory.
fn resolve(p: Option<PathBuf>, base: Option<&Path>, from_flag: bool) -> Option<PathBuf> {
    let p = p.filter(|p| !p.as_os_str().is_empty())?;
    match base {
        Some(base) if !from_flag && p.is_relative() && !base.as_os_str().is_empty() => {
            Some(base.join(p))
        }
        _ => Some(p),
    }
}

/// Flag application onto the raw value tree, guided by a table of the
/// typed schema (for case-insensitive names and value types).
mod flags {
    use serde_json::{Map, Value};

    use super::ConfigError;
    use crate::duration::GoDuration;

    /// What a key holds.
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Kind {
        Bool,
        Int,
        Str,
        Duration,
        List,
        Struct(&'static [(&'static str, Kind)]),
        Map(&'static Kind),
        /// Untyped section: any keys, values guessed from their text.
        Opaque,
    }

    const OPAQUE: Kind = Kind::Opaque;

    const LIFE_CYCLE: &[(&str, Kind)] = &[
        ("requestAcceptGraceTimeout", Kind::Duration),
        ("graceTimeOut", Kind::Duration),
    ];
    const RESPONDING: &[(&str, Kind)] = &[
        ("readTimeout", Kind::Duration),
        ("writeTimeout", Kind::Duration),
        ("idleTimeout", Kind::Duration),
    ];
    const TRANSPORT: &[(&str, Kind)] = &[
        ("lifeCycle", Kind::Struct(LIFE_CYCLE)),
        ("respondingTimeouts", Kind::Struct(RESPONDING)),
        ("keepAliveMaxTime", Kind::Duration),
        ("keepAliveMaxRequests", Kind::Int),
    ];
    const FORWARDED: &[(&str, Kind)] = &[
        ("insecure", Kind::Bool),
        ("trustedIPs", Kind::List),
        ("connection", Kind::List),
        ("notAppendXForwardedFor", Kind::Bool),
        ("addXForwardedSchemeHeaders", Kind::Bool),
    ];
    const ENTRY_POINT: &[(&str, Kind)] = &[
        ("address", Kind::Str),
        ("allowACMEByPass", Kind::Bool),
        ("reusePort", Kind::Bool),
        ("asDefault", Kind::Bool),
        ("transport", Kind::Struct(TRANSPORT)),
        ("proxyProtocol", OPAQUE),
        ("forwardedHeaders", Kind::Struct(FORWARDED)),
        ("http", OPAQUE),
        ("http2", OPAQUE),
        ("http3", OPAQUE),
        ("udp", OPAQUE),
        ("observability", OPAQUE),
    ];
    const FILE_PROVIDER: &[(&str, Kind)] = &[
        ("directory", Kind::Str),
        ("filename", Kind::Str),
        ("watch", Kind::Bool),
        ("debugLogGeneratedTemplate", Kind::Bool),
    ];
    const PROVIDERS: &[(&str, Kind)] = &[
        ("providersThrottleDuration", Kind::Duration),
        ("precedence", Kind::List),
        ("file", Kind::Struct(FILE_PROVIDER)),
        ("kubernetesCRD", OPAQUE),
        ("docker", OPAQUE),
        ("swarm", OPAQUE),
        ("kubernetesIngress", OPAQUE),
        ("kubernetesIngressNGINX", OPAQUE),
        ("kubernetesGateway", OPAQUE),
        ("knative", OPAQUE),
        ("rest", OPAQUE),
        ("consulCatalog", OPAQUE),
        ("nomad", OPAQUE),
        ("ecs", OPAQUE),
        ("consul", OPAQUE),
        ("etcd", OPAQUE),
        ("zooKeeper", OPAQUE),
        ("redis", OPAQUE),
        ("http", OPAQUE),
        ("plugin", OPAQUE),
    ];
    const LOG: &[(&str, Kind)] = &[
        ("level", Kind::Str),
        ("format", Kind::Str),
        ("noColor", Kind::Bool),
        ("filePath", Kind::Str),
        ("maxSize", Kind::Int),
        ("maxAge", Kind::Int),
        ("maxBackups", Kind::Int),
        ("compress", Kind::Bool),
        ("otlp", OPAQUE),
    ];
    const CORE: &[(&str, Kind)] = &[("defaultRuleSyntax", Kind::Str)];
    pub(super) const ROOT: &[(&str, Kind)] = &[
        ("global", OPAQUE),
        ("serversTransport", OPAQUE),
        ("tcpServersTransport", OPAQUE),
        ("entryPoints", Kind::Map(&Kind::Struct(ENTRY_POINT))),
        ("providers", Kind::Struct(PROVIDERS)),
        ("api", OPAQUE),
        ("metrics", OPAQUE),
        ("ping", OPAQUE),
        ("log", Kind::Struct(LOG)),
        ("accessLog", OPAQUE),
        ("tracing", OPAQUE),
        ("hostResolver", OPAQUE),
        ("certificatesResolvers", OPAQUE),
        ("experimental", OPAQUE),
        ("core", Kind::Struct(CORE)),
        ("spiffe", OPAQUE),
        ("ocsp", OPAQUE),
    ];

    fn flag_err(flag: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Flag {
            flag: flag.to_string(),
            message: message.into(),
        }
    }

    /// The key to use in `map` for `segment`: an existing key that matches
    /// case-insensitively, else the segment as written.
    fn map_key(map: &Map<String, Value>, segment: &str) -> String {
        map.keys()
            .find(|k| k.eq_ignore_ascii_case(segment))
            .cloned()
            .unwrap_or_else(|| segment.to_string())
    }

    /// Applies one flag to the tree; returns the canonical dotted key.
    pub(super) fn apply(
        tree: &mut Value,
        raw_key: &str,
        value: &str,
    ) -> Result<String, ConfigError> {
        let key = raw_key.trim_start_matches('-');
        let segments: Vec<&str> = key.split('.').collect();
        if key.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(flag_err(key, "malformed key"));
        }
        let mut kind = Kind::Struct(ROOT);
        let mut node = tree;
        let mut canonical: Vec<String> = Vec::new();
        // Depth inside an opaque section: 0 = the section itself.
        let mut opaque_depth = 0usize;
        for (i, segment) in segments.iter().enumerate() {
            // Move (not reborrow) the cursor so that the map borrow can
            // become the next cursor.
            let current = node;
            if current.is_null() {
                *current = Value::Object(Map::new());
            }
            let Value::Object(map) = current else {
                // The file holds a scalar or list where the flag needs a
                // section; overwriting it would hide the file's mistake.
                let at = if canonical.is_empty() {
                    "the configuration file's top level".to_string()
                } else {
                    format!("`{}`", canonical.join("."))
                };
                return Err(flag_err(key, format!("{at} is not a section")));
            };
            let (name, child_kind) = match kind {
                Kind::Struct(fields) => {
                    let Some((name, k)) =
                        fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(segment))
                    else {
                        let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                        let under = if canonical.is_empty() {
                            String::new()
                        } else {
                            format!(" under `{}`", canonical.join("."))
                        };
                        return Err(flag_err(
                            key,
                            format!(
                                "unknown key `{segment}`{under}, expected one of {}",
                                known.join(", ")
                            ),
                        ));
                    };
                    (name.to_string(), *k)
                }
                Kind::Map(inner) => (map_key(map, segment), *inner),
                Kind::Opaque => {
                    opaque_depth += 1;
                    (map_key(map, segment), Kind::Opaque)
                }
                _ => {
                    return Err(flag_err(
                        key,
                        format!("`{}` is a value, not a section", canonical.join(".")),
                    ))
                }
            };
            canonical.push(name.clone());
            let last = i + 1 == segments.len();
            if last {
                match typed_value(child_kind, value, opaque_depth) {
                    Ok(Some(v)) => {
                        // A section flag keeps what the file already set.
                        let keep = v.is_object() && map.get(&name).is_some_and(Value::is_object);
                        if !keep {
                            map.insert(name, v);
                        }
                    }
                    Ok(None) => {
                        map.remove(&name);
                    }
                    Err(msg) => return Err(flag_err(key, msg)),
                }
                return Ok(canonical.join("."));
            }
            node = map.entry(name).or_insert(Value::Null);
            kind = child_kind;
        }
        Err(flag_err(key, "malformed key"))
    }

    /// The JSON value a flag's text stands for; `None` removes the key.
    fn typed_value(kind: Kind, text: &str, opaque_depth: usize) -> Result<Option<Value>, String> {
        let t = text.trim();
        Ok(Some(match kind {
            Kind::Bool => Value::Bool(
                parse_bool(t).ok_or_else(|| format!("expected true or false, got {text:?}"))?,
            ),
            Kind::Int => Value::from(
                t.parse::<i64>()
                    .map_err(|_| format!("expected an integer, got {text:?}"))?,
            ),
            Kind::Str => Value::String(text.to_string()),
            Kind::Duration => {
                GoDuration::parse_traefik(t).map_err(|e| e.to_string())?;
                Value::String(t.to_string())
            }
            Kind::List => Value::Array(
                t.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
            Kind::Struct(_) | Kind::Map(_) => match parse_bool(t) {
                Some(true) => Value::Object(Map::new()),
                Some(false) => return Ok(None),
                None => {
                    return Err(format!(
                        "`{text}` given to a section; use true, false or no value"
                    ))
                }
            },
            Kind::Opaque if opaque_depth == 0 => match parse_bool(t) {
                // The opaque section itself (`--api`): present or removed.
                Some(true) => Value::Object(Map::new()),
                Some(false) => return Ok(None),
                None => {
                    return Err(format!(
                        "`{text}` given to a section; use true, false or no value"
                    ))
                }
            },
            Kind::Opaque => {
                if t.is_empty() {
                    Value::Bool(true)
                } else if let Some(b) = parse_bool(t) {
                    Value::Bool(b)
                } else if let Ok(n) = t.parse::<i64>() {
                    Value::from(n)
                } else {
                    Value::String(text.to_string())
                }
            }
        }))
    }

    fn parse_bool(t: &str) -> Option<bool> {
        if t.is_empty() || t.eq_ignore_ascii_case("true") {
            Some(true)
        } else if t.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flags::{Kind, ROOT};
    use super::*;
    use serde_json::json;

    fn flags(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let cfg = StaticConfig::load(None, &[]).unwrap();
        assert_eq!(cfg, StaticConfig::default());
        assert_eq!(cfg.log.level, "INFO");
        assert_eq!(cfg.core.default_rule_syntax, None);
        let ep = EntryPoint::default();
        assert_eq!(
            ep.transport.responding_timeouts.read_timeout,
            GoDuration::from_secs(60)
        );
        assert_eq!(
            ep.transport.responding_timeouts.write_timeout,
            GoDuration::ZERO
        );
        assert_eq!(
            ep.transport.responding_timeouts.idle_timeout,
            GoDuration::from_secs(180)
        );
        assert_eq!(
            ep.transport.life_cycle.grace_time_out,
            GoDuration::from_secs(10)
        );
        assert_eq!(
            ep.transport.life_cycle.request_accept_grace_timeout,
            GoDuration::ZERO
        );
    }

    #[test]
    fn ping_on_the_internal_entry_point_creates_it() {
        let load = |list: &[(&str, &str)]| StaticConfig::load(None, &flags(list)).unwrap();
        let cfg = load(&[("entryPoints.web.address", ":8000"), ("ping", "")]);
        assert_eq!(cfg.entry_points["traefik"].address, ":8080");
        assert_eq!(
            cfg.entry_points["traefik"]
                .transport
                .responding_timeouts
                .read_timeout,
            GoDuration::from_secs(60)
        );
        let own = load(&[
            ("entryPoints.traefik.address", ":9000"),
            ("ping.entryPoint", "traefik"),
        ]);
        assert_eq!(own.entry_points["traefik"].address, ":9000");
        for elsewhere in [
            &[
                ("entryPoints.web.address", ":8000"),
                ("ping.entryPoint", "web"),
            ][..],
            &[
                ("entryPoints.web.address", ":8000"),
                ("ping.manualRouting", "true"),
            ],
            &[("entryPoints.web.address", ":8000")],
        ] {
            assert!(!load(elsewhere).entry_points.contains_key("traefik"));
        }
    }

    #[test]
    fn flags_build_a_config() {
        let cfg = StaticConfig::load(
            None,
            &flags(&[
                ("--entryPoints.web.address", ":8000"),
                (
                    "entrypoints.web.forwardedheaders.trustedips",
                    "127.0.0.1/32, 10.0.0.0/8",
                ),
                ("entryPoints.web.transport.lifeCycle.graceTimeOut", "3"),
                ("providers.file.directory", "dyn"),
                ("providers.file.watch", "false"),
                ("providers.providersThrottleDuration", "500ms"),
                ("log.level", "DEBUG"),
                ("api.insecure", ""),
                ("core.defaultRuleSyntax", "v2"),
            ]),
        )
        .unwrap();
        let web = &cfg.entry_points["web"];
        assert_eq!(web.address, ":8000");
        assert_eq!(
            web.forwarded_headers.trusted_ips,
            vec!["127.0.0.1/32", "10.0.0.0/8"]
        );
        assert_eq!(
            web.transport.life_cycle.grace_time_out,
            GoDuration::from_secs(3)
        );
        // Untouched siblings keep their defaults.
        assert_eq!(
            web.transport.responding_timeouts.idle_timeout,
            GoDuration::from_secs(180)
        );
        let file = cfg.providers.file.as_ref().unwrap();
        assert_eq!(file.directory.as_deref(), Some(Path::new("dyn")));
        assert!(!file.watch);
        assert_eq!(
            cfg.providers.providers_throttle_duration,
            Some(GoDuration::from_millis(500))
        );
        assert_eq!(cfg.log.level, "DEBUG");
        assert_eq!(cfg.api, Some(json!({"insecure": true})));
        assert_eq!(cfg.core.default_rule_syntax.as_deref(), Some("v2"));
    }

    #[test]
    fn section_flags() {
        let cfg = StaticConfig::load(None, &flags(&[("providers.file", "")])).unwrap();
        assert_eq!(cfg.providers.file, Some(FileProvider::default()));
        let cfg = StaticConfig::load(
            None,
            &flags(&[
                ("providers.file.filename", "a.yml"),
                ("providers.file", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cfg.providers.file.unwrap().filename.as_deref(),
            Some(Path::new("a.yml"))
        );
        let cfg = StaticConfig::load(
            None,
            &flags(&[
                ("providers.file.filename", "a.yml"),
                ("providers.file", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.providers.file, None);
        let cfg = StaticConfig::load(None, &flags(&[("providers.file.watch", "")])).unwrap();
        assert!(cfg.providers.file.unwrap().watch);
        let cfg = StaticConfig::load(None, &flags(&[("ping", "")])).unwrap();
        assert_eq!(cfg.ping, Some(json!({})));
    }

    #[test]
    fn flag_errors() {
        let e = StaticConfig::load(None, &flags(&[("entryPoints.web.adress", ":80")])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "flag `--entryPoints.web.adress`: unknown key `adress` under `entryPoints.web`"
            ),
            "{msg}"
        );
        assert!(msg.contains("address"), "{msg}");
        for (k, v) in [
            ("providers.file.watch", "maybe"),
            ("entryPoints.web.transport.keepAliveMaxRequests", "many"),
            ("entryPoints.web.transport.keepAliveMaxTime", "10x"),
            ("entryPoints.web.address.port", "1"),
            ("providers..file", ""),
            ("providers.file", "yes"),
            ("bogus", "1"),
        ] {
            let e = StaticConfig::load(None, &flags(&[(k, v)])).unwrap_err();
            assert!(matches!(e, ConfigError::Flag { .. }), "{k}: {e}");
        }
    }

    /// Every key of the flag table must be a real field: setting each leaf
    /// by flag must load.
    #[test]
    fn flag_table_matches_structs() {
        fn walk(prefix: &str, fields: &[(&str, Kind)], out: &mut Vec<(String, String)>) {
            for (name, kind) in fields {
                let key = format!("{prefix}{name}");
                match kind {
                    Kind::Struct(inner) => walk(&format!("{key}."), inner, out),
                    Kind::Map(inner) => match inner {
                        Kind::Struct(f) => walk(&format!("{key}.x."), f, out),
                        _ => out.push((format!("{key}.x"), String::new())),
                    },
                    Kind::Bool => out.push((key, "true".into())),
                    Kind::Int => out.push((key, "3".into())),
                    Kind::Duration => out.push((key, "2s".into())),
                    Kind::Str => out.push((key, "s".into())),
                    Kind::List => out.push((key, "a,b".into())),
                    Kind::Opaque => out.push((key, String::new())),
                }
            }
        }
        let mut all = Vec::new();
        walk("", ROOT, &mut all);
        for (k, v) in &all {
            StaticConfig::load(None, &[(k.clone(), v.clone())])
                .unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        assert!(all.len() > 50);
    }

    /// And every field of the structs must be in the flag table.
    #[test]
    fn structs_match_flag_table() {
        fn check(prefix: &str, v: &Value, fields: &[(&str, Kind)]) {
            let Value::Object(map) = v else { return };
            for (key, child) in map {
                let Some((_, kind)) = fields.iter().find(|(n, _)| n == key) else {
                    panic!("{prefix}{key} missing from the flag table");
                };
                match kind {
                    Kind::Struct(inner) => check(&format!("{prefix}{key}."), child, inner),
                    Kind::Map(Kind::Struct(inner)) => {
                        if let Value::Object(m) = child {
                            for (name, ep) in m {
                                check(&format!("{prefix}{key}.{name}."), ep, inner);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut cfg = StaticConfig::default();
        cfg.entry_points.insert("web".into(), EntryPoint::default());
        cfg.providers.file = Some(FileProvider::default());
        check("", &serde_json::to_value(&cfg).unwrap(), ROOT);
    }

    #[test]
    fn resolve_paths() {
        assert_eq!(
            resolve(Some("".into()), Some(Path::new("/etc")), false),
            None
        );
        assert_eq!(
            resolve(Some("dyn".into()), Some(Path::new("/etc/sluice")), false),
            Some(PathBuf::from("/etc/sluice/dyn"))
        );
        assert_eq!(
            resolve(Some("dyn".into()), Some(Path::new("/etc/sluice")), true),
            Some(PathBuf::from("dyn"))
        );
        assert_eq!(
            resolve(Some("/abs".into()), Some(Path::new("/etc")), false),
            Some(PathBuf::from("/abs"))
        );
        assert_eq!(
            resolve(Some("d".into()), Some(Path::new("")), false),
            Some(PathBuf::from("d"))
        );
    }
}
