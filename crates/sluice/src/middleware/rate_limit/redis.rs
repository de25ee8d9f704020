//! Buckets kept in Redis, so every Sluice instance pointed at the same Redis shares one limit.
//!
//! Each decision is one Lua script run: Redis executes scripts atomically, so the read, refill,
//! take and write of a bucket cannot interleave with another instance's. The script reads
//! Redis's own clock (`TIME`), so instances whose clocks disagree still agree on the buckets.
//!
//! `tls` connects with rustls: `ca` (else the system's roots), `cert` + `key` for a client
//! certificate, `insecureSkipVerify`; each a file path or inline PEM (what the CRD provider
//! writes from Secrets). Not covered: cluster mode (with several `endpoints` they are tried in
//! order as fail-over candidates for one server). `poolSize`, `minIdleConns` and
//! `maxActiveConns` are accepted; one multiplexed connection carries every request, so there
//! is no pool to size. `readTimeout` and `writeTimeout` bound each script run together.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, RedisConnectionInfo, TlsCertificates,
};
use serde::Deserialize;
use sluice_config::GoDuration;
use tokio::sync::Mutex;

use super::{Decision, Limits};
use crate::middleware::auth::parse_at;
use crate::middleware::MiddlewareError;
use crate::runtime::transport::tls::read_pem;

/// `rateLimit.redis`, with Traefik's names.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisSpec {
    endpoints: Option<Vec<String>>,
    tls: Option<serde_json::Value>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    db: i64,
    #[serde(default)]
    pool_size: i64,
    #[serde(default)]
    min_idle_conns: i64,
    #[serde(default)]
    max_active_conns: i64,
    read_timeout: Option<GoDuration>,
    write_timeout: Option<GoDuration>,
    dial_timeout: Option<GoDuration>,
}

/// `rateLimit.redis.tls` (Traefik's client TLS options).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsSpec {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    /// A server-side notion in Traefik's shared TLS type; meaningless for a client: accepted.
    #[allow(dead_code)]
    ca_optional: Option<bool>,
}

/// How to reach Redis over TLS.
struct RedisTls {
    certificates: TlsCertificates,
    insecure: bool,
}

impl RedisTls {
    fn parse(spec: &serde_json::Value) -> Result<Self, MiddlewareError> {
        let spec: TlsSpec = parse_at(spec, "redis.tls")?;
        let pem = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| read_pem(field, v).map(String::into_bytes))
                .transpose()
                .map_err(|e| MiddlewareError::new(format!("redis.tls.{field}"), e))
        };
        let root_cert = pem("ca", &spec.ca)?;
        let client_tls = match (pem("cert", &spec.cert)?, pem("key", &spec.key)?) {
            (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
                client_cert,
                client_key,
            }),
            (None, None) => None,
            _ => {
                return Err(MiddlewareError::new(
                    "redis.tls",
                    "cert and key go together",
                ))
            }
        };
        // The redis client builds its rustls configuration from the process-wide provider;
        // make that the one Sluice uses everywhere else (a no-op once one is installed).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Ok(Self {
            certificates: TlsCertificates {
                client_tls,
                root_cert,
            },
            insecure: spec.insecure_skip_verify,
        })
    }
}

/// The token bucket, run inside Redis. Arguments: rate in tokens per microsecond, burst,
/// key lifetime in seconds, longest allowed wait in microseconds. Returns whether the request
/// may go on and how long it must wait (microseconds, as text: Redis would truncate a Lua
/// number to an integer).
const SCRIPT: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(saved[1])
local last = tonumber(saved[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
if last > now then
  last = now
end
local refilled = math.min(burst, tokens + (now - last) * rate)
local left = refilled - 1
local wait = 0
local allowed = 1
if left < 0 then
  wait = -left / rate
  if wait > max_wait then
    allowed = 0
    left = refilled
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(left), 'last', tostring(now))
redis.call('EXPIRE', KEYS[1], ttl)
return {allowed, tostring(wait)}
";

/// Key prefix, as Traefik's.
const PREFIX: &str = "rate:";

/// A limiter whose buckets are in Redis.
pub struct RedisLimiter {
    limits: Limits,
    clients: Vec<Client>,
    config: AsyncConnectionConfig,
    /// The shared connection; `None` until the first request or after a failure.
    connection: Mutex<Option<MultiplexedConnection>>,
    script: redis::Script,
    ttl_seconds: u64,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Checks the options; nothing connects until the first request.
    pub fn new(spec: RedisSpec, limits: Limits) -> Result<Self, MiddlewareError> {
        let tls = spec.tls.as_ref().map(RedisTls::parse).transpose()?;
        let endpoints = spec
            .endpoints
            .unwrap_or_else(|| vec!["localhost:6379".to_owned()]);
        if endpoints.is_empty() {
            return Err(MiddlewareError::new(
                "redis.endpoints",
                "at least one endpoint is required",
            ));
        }
        for (field, value) in [
            ("poolSize", spec.pool_size),
            ("minIdleConns", spec.min_idle_conns),
            ("maxActiveConns", spec.max_active_conns),
            ("db", spec.db),
        ] {
            if value < 0 {
                return Err(MiddlewareError::new(
                    format!("redis.{field}"),
                    "must not be negative",
                ));
            }
        }
        let mut settings = RedisConnectionInfo::default().set_db(spec.db);
        if !spec.username.is_empty() {
            settings = settings.set_username(&spec.username);
        }
        if !spec.password.is_empty() {
            settings = settings.set_password(&spec.password);
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for (i, endpoint) in endpoints.iter().enumerate() {
            let field = || format!("redis.endpoints[{i}]");
            let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| {
                MiddlewareError::new(field(), format!("`{endpoint}` is not host:port"))
            })?;
            let port: u16 = port.parse().map_err(|_| {
                MiddlewareError::new(field(), format!("`{endpoint}` has no valid port"))
            })?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let address = match &tls {
                None => ConnectionAddr::Tcp(host, port),
                Some(tls) => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: tls.insecure,
                    tls_params: None,
                },
            };
            let info: ConnectionInfo = address
                .into_connection_info()
                .map_err(|e| MiddlewareError::new(field(), e.to_string()))?
                .set_redis_settings(settings.clone());
            let client = match &tls {
                None => Client::open(info),
                Some(tls) => Client::build_with_tls(info, tls.certificates.clone()),
            };
            clients.push(client.map_err(|e| match &tls {
                Some(_) => MiddlewareError::new("redis.tls", e.to_string()),
                None => MiddlewareError::new(field(), e.to_string()),
            })?);
        }
        let duration = |value: Option<GoDuration>, default: u64, field: &str| match value {
            None => Ok(Duration::from_secs(default)),
            Some(d) => d.as_std().ok_or_else(|| {
                MiddlewareError::new(format!("redis.{field}"), "must not be negative")
            }),
        };
        let read = duration(spec.read_timeout, 3, "readTimeout")?;
        let write = duration(spec.write_timeout, 3, "writeTimeout")?;
        let dial = duration(spec.dial_timeout, 5, "dialTimeout")?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(dial))
            .set_response_timeout(Some(read + write));
        Ok(Self {
            limits,
            clients,
            config,
            connection: Mutex::new(None),
            script: redis::Script::new(SCRIPT),
            ttl_seconds: limits.idle_ttl().as_secs().max(1) + 1,
        })
    }

    /// The shared connection, opened on first use (each endpoint tried in order).
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let mut last_error = String::from("no endpoint");
        for client in &self.clients {
            match client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
            {
                Ok(connection) => {
                    *slot = Some(connection.clone());
                    return Ok(connection);
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(format!("cannot connect to Redis: {last_error}"))
    }

    /// Takes a token from the bucket stored under `key`.
    pub async fn take(&self, key: &str) -> Result<Decision, String> {
        if !self.limits.rate.is_finite() {
            return Ok(Decision::Proceed(Duration::ZERO));
        }
        let mut connection = self.connection().await?;
        let result: Result<(i64, String), _> = self
            .script
            .key(format!("{PREFIX}{key}"))
            .arg(self.limits.rate / 1_000_000.0)
            .arg(self.limits.burst)
            .arg(self.ttl_seconds)
            .arg(self.limits.max_delay.as_micros() as u64)
            .invoke_async(&mut connection)
            .await;
        let (allowed, wait) = match result {
            Ok(answer) => answer,
            Err(error) => {
                // A broken connection is reopened on the next request.
                if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
                    *self.connection.lock().await = None;
                }
                return Err(error.to_string());
            }
        };
        let micros: f64 = wait
            .parse()
            .map_err(|_| format!("unexpected wait `{wait}` from Redis"))?;
        let wait = Duration::from_secs_f64(micros.max(0.0) / 1_000_000.0);
        Ok(if allowed == 1 {
            Decision::Proceed(wait)
        } else {
            Decision::Refuse(wait)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            rate: 1.0,
            burst: 1.0,
            max_delay: Duration::ZERO,
        }
    }

    fn limiter(redis: serde_json::Value) -> Result<RedisLimiter, MiddlewareError> {
        let spec: RedisSpec = serde_json::from_value(redis).expect("spec");
        RedisLimiter::new(spec, limits())
    }

    #[test]
    fn tls_options_are_checked_with_their_field() {
        let err = |redis| limiter(redis).unwrap_err().field;
        assert_eq!(
            err(json!({"tls": {"cert": "/nonexistent.crt"}})),
            "redis.tls.cert"
        );
        assert_eq!(
            err(json!({"tls": {"cert": "-----BEGIN CERTIFICATE-----\n"}})),
            "redis.tls"
        );
        assert_eq!(err(json!({"tls": {"sni": "x"}})), "redis.tls.sni");
        assert_eq!(
            err(
                json!({"tls": {"ca": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"}})
            ),
            "redis.tls"
        );
    }

    #[test]
    fn tls_uses_the_aws_lc_provider() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let limiter = limiter(json!({
            "endpoints": ["localhost:6380"],
            "tls": {"ca": cert.pem(), "cert": cert.pem(), "key": key.serialize_pem(), "caOptional": true},
        }))
        .unwrap();
        assert_eq!(limiter.clients.len(), 1);
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        assert_eq!(format!("{:?}", installed.key_provider), "AwsLcRs");
    }
}
