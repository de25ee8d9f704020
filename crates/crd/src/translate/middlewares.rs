//! Middleware and MiddlewareTCP objects (best effort until middlewares are
//! typed): most specs map one-to-one onto the dynamic configuration; the
//! references inside `chain` and `errors` are resolved like Traefik does.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_config::Diagnostic;

use crate::names::{make_id, normalize};
use crate::options::CrdOptions;
use crate::store::Store;
use crate::types::LoadBalancerSpec;

use super::located_diag;
use super::refs::resolve_reference;
use super::services::{ServiceBuilder, Services};

/// Middleware objects -> `http.middlewares` (error-page services go to
/// `services`).
pub fn build_middlewares(
    store: &Store<'_>,
    options: &CrdOptions,
    services: &mut Services,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for item in &store.middlewares {
        let m = item.obj;
        let ns = m.metadata.ns();
        let id = normalize(&make_id(ns, &m.metadata.name));
        let resource = item.manifest.resource();
        let Value::Object(spec) = &m.spec else {
            out.insert(id, json!({}));
            continue;
        };
        let mut spec = spec.clone();
        let mut failed = None;

        if let Some(Value::Object(chain)) = spec.get_mut("chain") {
            let refs: Vec<Value> = chain
                .get("middlewares")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut names = Vec::new();
            for (i, r) in refs.iter().enumerate() {
                let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                let rns = r
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match resolve_reference(options, ns, rns, name) {
                    Ok(n) => names.push(n),
                    Err(e) => {
                        failed = Some((
                            format!("spec.chain.middlewares[{i}]"),
                            format!("invalid reference to middleware {name}: {e}"),
                        ));
                        break;
                    }
                }
            }
            chain.insert("middlewares".into(), json!(names));
        }

        if failed.is_none() {
            if let Err((field, msg)) = resolve_auth(store, ns, &mut spec) {
                failed = Some((field, msg));
            }
        }

        if failed.is_none() {
            if let Some(Value::Object(plugins)) = spec.get_mut("plugin") {
                for (plugin, conf) in plugins.iter_mut() {
                    if let Err(e) = load_secret_values(store, ns, conf) {
                        failed = Some((format!("spec.plugin.{plugin}"), e));
                        break;
                    }
                }
            }
        }

        if let Some(Value::Object(rl)) = spec.get_mut("rateLimit") {
            // Durations are written back in Go's canonical form.
            if let Some(p) = rl.get("period").cloned() {
                let text = match &p {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                if let Ok(d) = sluice_config::GoDuration::parse_traefik(&text) {
                    rl.insert("period".into(), json!(d.to_string()));
                }
            }
        }

        if failed.is_none() {
            if let Some(Value::Object(redis)) =
                spec.get_mut("rateLimit").and_then(|rl| rl.get_mut("redis"))
            {
                if let Err(e) = resolve_redis(store, ns, redis) {
                    failed = Some(e);
                }
            }
        }

        if failed.is_none() {
            if let Some(Value::Object(errors)) = spec.get_mut("errors") {
                if let Some(svc) = errors.remove("service") {
                    match serde_json::from_value::<LoadBalancerSpec>(svc) {
                        Ok(lb) => {
                            let mut builder = ServiceBuilder {
                                store,
                                options,
                                native_lb_by_default: false,
                                disable_cluster_scope: false,
                                warnings: diags,
                            };
                            match builder.name_and_service(ns, &lb, "spec.errors.service") {
                                Ok((_, Some(service))) => {
                                    let service_name = format!("{id}-errorpage-service");
                                    services.insert(service_name.clone(), service);
                                    errors.insert("service".into(), json!(service_name));
                                }
                                Ok((name, None)) => {
                                    errors.insert("service".into(), json!(name));
                                }
                                Err(e) => failed = Some((e.field, e.error.to_string())),
                            }
                        }
                        Err(e) => failed = Some(("spec.errors.service".into(), e.to_string())),
                    }
                }
            }
        }

        if let Some((field, msg)) = failed {
            diags.push(
                located_diag(item.manifest, &field, format!("{msg}; middleware skipped"))
                    .with_resource(resource),
            );
            continue;
        }
        out.insert(id, Value::Object(spec));
    }
    out
}

/// Rewrites the Kubernetes forms of `basicAuth`, `digestAuth` and `forwardAuth` into the
/// dynamic configuration's, as Traefik's `createBasicAuthMiddleware` and friends do: user lists
/// come from the Secret named by `secret`, TLS material from `caSecret`/`certSecret`, and only
/// the fields the CRD defines are kept (empty ones left out).
fn resolve_auth(
    store: &Store<'_>,
    ns: &str,
    spec: &mut serde_json::Map<String, Value>,
) -> Result<(), (String, String)> {
    if let Some(basic) = spec.get("basicAuth").filter(|v| !v.is_null()) {
        let users = auth_users(store, ns, basic, "spec.basicAuth", true)?;
        let mut out = serde_json::Map::new();
        out.insert("users".into(), json!(users));
        copy_nonempty(basic, &mut out, &["realm", "removeHeader", "headerField"]);
        spec.insert("basicAuth".into(), Value::Object(out));
    }
    if let Some(digest) = spec.get("digestAuth").filter(|v| !v.is_null()) {
        let users = auth_users(store, ns, digest, "spec.digestAuth", false)?;
        let mut out = serde_json::Map::new();
        out.insert("users".into(), json!(users));
        copy_nonempty(digest, &mut out, &["realm", "removeHeader", "headerField"]);
        spec.insert("digestAuth".into(), Value::Object(out));
    }
    if let Some(forward) = spec.get("forwardAuth").filter(|v| !v.is_null()) {
        let out = forward_auth(store, ns, forward)?;
        spec.insert("forwardAuth".into(), Value::Object(out));
    }
    Ok(())
}

/// Copies the listed fields that are set and not empty/false (Go's `omitempty`).
fn copy_nonempty(from: &Value, to: &mut serde_json::Map<String, Value>, fields: &[&str]) {
    for field in fields {
        match from.get(*field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v) => {
                to.insert((*field).to_string(), v.clone());
            }
        }
    }
}

/// A Secret's raw value (`stringData` wins, as on the API server).
fn secret_bytes(secret: &crate::types::Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.get(key) {
        return Some(v.as_bytes().to_vec());
    }
    crate::base64::decode(secret.data.get(key)?)
}

/// `rateLimit.redis` in a Middleware: credentials and TLS material come from Secrets
/// (`secret`: keys `username`/`password`; `tls.caSecret`: the CA; `tls.certSecret`:
/// `tls.crt`/`tls.key`) and are written inline, as Traefik's CRD provider does.
fn resolve_redis(
    store: &Store<'_>,
    ns: &str,
    redis: &mut serde_json::Map<String, Value>,
) -> Result<(), (String, String)> {
    let text = |secret: &crate::types::Secret, key: &str| {
        secret_bytes(secret, key).map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    if let Some(Value::String(name)) = redis.remove("secret") {
        let secret = auth_secret(store, ns, &name, "spec.rateLimit.redis.secret")?;
        for key in ["username", "password"] {
            if let Some(value) = text(secret, key).filter(|v| !v.is_empty()) {
                redis.insert(key.into(), json!(value));
            }
        }
    }
    if let Some(Value::Object(tls)) = redis.get_mut("tls") {
        if let Some(Value::String(name)) = tls.remove("caSecret") {
            let secret = auth_secret(store, ns, &name, "spec.rateLimit.redis.tls.caSecret")?;
            let ca = ["ca", "tls.ca", "ca.crt"]
                .iter()
                .find_map(|k| text(secret, k))
                .ok_or_else(|| {
                    (
                        "spec.rateLimit.redis.tls.caSecret".to_string(),
                        format!("secret '{ns}/{name}' has no CA (keys ca, tls.ca or ca.crt)"),
                    )
                })?;
            tls.insert("ca".into(), json!(ca));
        }
        if let Some(Value::String(name)) = tls.remove("certSecret") {
            let secret = auth_secret(store, ns, &name, "spec.rateLimit.redis.tls.certSecret")?;
            for (key, field) in [("tls.crt", "cert"), ("tls.key", "key")] {
                let value = text(secret, key).ok_or_else(|| {
                    (
                        "spec.rateLimit.redis.tls.certSecret".to_string(),
                        format!("secret '{ns}/{name}' is missing {key}"),
                    )
                })?;
                tls.insert(field.into(), json!(value));
            }
        }
    }
    // Go's omitempty: a zero database number is not written.
    if redis.get("db").and_then(Value::as_i64) == Some(0) {
        redis.remove("db");
    }
    Ok(())
}

/// Looks a Secret up for a middleware; errors are Traefik's wording.
fn auth_secret<'s>(
    store: &Store<'s>,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<&'s crate::types::Secret, (String, String)> {
    store
        .secret(ns, name)
        .map_err(|e| {
            (
                field.to_string(),
                format!("failed to fetch secret '{ns}/{name}': {e}"),
            )
        })?
        .ok_or_else(|| (field.to_string(), format!("secret '{ns}/{name}' not found")))
}

/// The user lines for basic/digest auth from the Secret named in `auth.secret`.
fn auth_users(
    store: &Store<'_>,
    ns: &str,
    auth: &Value,
    path: &str,
    basic: bool,
) -> Result<Vec<String>, (String, String)> {
    let field = format!("{path}.secret");
    let name = auth.get("secret").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err((field, "auth secret must be set".into()));
    }
    let secret = auth_secret(store, ns, name, &field)?;
    if basic && secret.type_ == "kubernetes.io/basic-auth" {
        // username/password Secrets: one user, its password stored as {SHA}.
        let (Some(user), Some(password)) = (
            secret_bytes(secret, "username"),
            secret_bytes(secret, "password"),
        ) else {
            return Err((
                field,
                format!("secret '{ns}/{name}' must contain both username and password keys"),
            ));
        };
        let user = String::from_utf8_lossy(&user);
        return Ok(vec![format!(
            "{user}:{{SHA}}{}",
            base64_encode(&sha1(&password))
        )]);
    }
    // Otherwise the Secret holds exactly one entry: htpasswd/htdigest lines.
    let keys: std::collections::BTreeSet<&String> = secret
        .data
        .keys()
        .chain(secret.string_data.keys())
        .collect();
    let Some(key) = keys.iter().next().filter(|_| keys.len() == 1) else {
        return Err((
            field,
            format!(
                "found {} elements for secret '{ns}/{name}', must be single element exactly",
                keys.len()
            ),
        ));
    };
    let content = secret_bytes(secret, key).unwrap_or_default();
    let users: Vec<String> = String::from_utf8_lossy(&content)
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if users.is_empty() {
        return Err((
            field,
            format!("secret '{ns}/{name}' does not contain any credentials"),
        ));
    }
    Ok(users)
}

/// `forwardAuth` with its TLS Secrets loaded and `maxBodySize` defaulted to -1.
fn forward_auth(
    store: &Store<'_>,
    ns: &str,
    auth: &Value,
) -> Result<serde_json::Map<String, Value>, (String, String)> {
    let address = auth.get("address").and_then(Value::as_str).unwrap_or("");
    if address.is_empty() {
        return Err((
            "spec.forwardAuth.address".into(),
            "forward authentication requires an address".into(),
        ));
    }
    let mut out = serde_json::Map::new();
    out.insert("address".into(), json!(address));
    // A pointer in Traefik: `false` is kept.
    if let Some(trust) = auth.get("trustForwardHeader").filter(|v| v.is_boolean()) {
        out.insert("trustForwardHeader".into(), trust.clone());
    }
    copy_nonempty(
        auth,
        &mut out,
        &[
            "authResponseHeaders",
            "authResponseHeadersRegex",
            "authRequestHeaders",
            "addAuthCookiesToResponse",
            "headerField",
            "forwardBody",
            "preserveLocationHeader",
            "preserveRequestMethod",
            "authSigninURL",
        ],
    );
    out.insert(
        "maxBodySize".into(),
        auth.get("maxBodySize")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!(-1)),
    );
    if let Some(size) = auth.get("maxResponseBodySize").filter(|v| !v.is_null()) {
        out.insert("maxResponseBodySize".into(), size.clone());
    }
    if let Some(tls) = auth.get("tls").filter(|v| v.is_object()) {
        let mut client = serde_json::Map::new();
        let text = |k: &str| tls.get(k).and_then(Value::as_str).unwrap_or("");
        let ca_secret = text("caSecret");
        if !ca_secret.is_empty() {
            let field = "spec.forwardAuth.tls.caSecret";
            let secret = auth_secret(store, ns, ca_secret, field)?;
            let ca = ["tls.ca", "ca.crt"]
                .iter()
                .find_map(|k| secret_bytes(secret, k))
                .or_else(|| {
                    // Older Traefik behaviour it keeps: a lone entry is the CA.
                    let keys: Vec<&String> =
                        secret.data.keys().chain(secret.string_data.keys()).collect();
                    match keys.as_slice() {
                        [only] => secret_bytes(secret, only),
                        _ => None,
                    }
                })
                .ok_or_else(|| {
                    (
                        field.to_string(),
                        format!("secret '{ns}/{ca_secret}' has no CA block: it contains neither tls.ca nor ca.crt"),
                    )
                })?;
            client.insert("ca".into(), json!(String::from_utf8_lossy(&ca)));
        }
        let cert_secret = text("certSecret");
        if !cert_secret.is_empty() {
            let field = "spec.forwardAuth.tls.certSecret";
            let secret = auth_secret(store, ns, cert_secret, field)?;
            let cert = secret_bytes(secret, "tls.crt").unwrap_or_default();
            let key = secret_bytes(secret, "tls.key").unwrap_or_default();
            let missing: Vec<&str> = [("tls.crt", &cert), ("tls.key", &key)]
                .iter()
                .filter(|(_, v)| v.is_empty())
                .map(|(k, _)| *k)
                .collect();
            if !missing.is_empty() {
                return Err((
                    field.to_string(),
                    format!(
                        "secret {ns}/{cert_secret} is missing or has empty TLS data entries: {}",
                        missing.join(", ")
                    ),
                ));
            }
            client.insert("cert".into(), json!(String::from_utf8_lossy(&cert)));
            client.insert("key".into(), json!(String::from_utf8_lossy(&key)));
        }
        if tls.get("insecureSkipVerify") == Some(&Value::Bool(true)) {
            client.insert("insecureSkipVerify".into(), json!(true));
        }
        if let Some(optional) = tls.get("caOptional").filter(|v| v.is_boolean()) {
            client.insert("caOptional".into(), optional.clone());
        }
        out.insert("tls".into(), Value::Object(client));
    }
    Ok(out)
}

/// Standard padded base64.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 (FIPS 180-4): only for the `{SHA}` htpasswd form Traefik writes for basic-auth
/// Secrets, not as a security primitive.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Replaces `urn:k8s:secret:<name>:<key>` strings of a plugin
/// configuration by the Secret's value.
fn load_secret_values(store: &Store<'_>, ns: &str, v: &mut Value) -> Result<(), String> {
    match v {
        Value::String(s) if s.starts_with("urn:k8s:secret:") => {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() != 5 {
                return Err(format!("malformed secret URN {s:?}"));
            }
            let (name, key) = (parts[3], parts[4]);
            let secret = store
                .secret(ns, name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("secret {ns}/{name} is not found"))?;
            let value = secret
                .value(key)
                .ok_or_else(|| format!("key {key:?} not found in secret {ns}/{name}"))?;
            *v = Value::String(value);
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|i| load_secret_values(store, ns, i)),
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|i| load_secret_values(store, ns, i)),
        _ => Ok(()),
    }
}

/// MiddlewareTCP objects -> `tcp.middlewares`.
pub fn build_middleware_tcps(store: &Store<'_>) -> BTreeMap<String, Value> {
    store
        .middleware_tcps
        .iter()
        .map(|item| {
            let m = item.obj;
            let id = normalize(&make_id(m.metadata.ns(), &m.metadata.name));
            (
                id,
                serde_json::to_value(&m.spec).unwrap_or_else(|_| json!({})),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use crate::{parse_manifests, translate, CrdOptions};

    fn middlewares(yaml: &str) -> (Value, Vec<String>) {
        let parsed = parse_manifests(Path::new("auth.yaml"), yaml);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let out = translate(&parsed.manifests, &CrdOptions::default());
        let config = serde_json::to_value(&out.config).unwrap();
        let diags = out.diagnostics.iter().map(|d| d.to_string()).collect();
        (config["http"]["middlewares"].clone(), diags)
    }

    /// Traefik's `with_auth.yml` provider fixture.
    const WITH_AUTH: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: authsecret
  namespace: default

data:
  users: |2
    dGVzdDokYXByMSRINnVza2trVyRJZ1hMUDZld1RyU3VCa1RycUU4d2ovCnRlc3QyOiRhcHIxJGQ5
    aHI5SEJCJDRIeHdnVWlyM0hQNEVzZ2dQL1FObzAK

---
apiVersion: v1
kind: Secret
metadata:
  name: casecret
  namespace: default

data:
  ca: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0=

---
apiVersion: v1
kind: Secret
metadata:
  name: tlssecret
  namespace: default

data:
  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0=
  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCi0tLS0tRU5EIFBSSVZBVEUgS0VZLS0tLS0=

---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata:
  name: basicauth
  namespace: default

spec:
  basicAuth:
    secret: authsecret

---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata:
  name: digestauth
  namespace: default

spec:
  digestAuth:
    secret: authsecret
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata:
  name: forwardauth
  namespace: default

spec:
  forwardAuth:
    address: test.com
    headerField: X-Header-Field
    tls:
      certSecret: tlssecret
      caSecret: casecret
"#;

    #[test]
    fn traefik_with_auth_fixture() {
        // The configuration Traefik's provider test expects from `with_auth.yml`.
        let (got, diags) = middlewares(WITH_AUTH);
        assert!(diags.is_empty(), "{diags:?}");
        let users = json!([
            "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/",
            "test2:$apr1$d9hr9HBB$4HxwgUir3HP4EsggP/QNo0"
        ]);
        assert_eq!(
            got,
            json!({
                "default-basicauth": {"basicAuth": {"users": users}},
                "default-digestauth": {"digestAuth": {"users": users}},
                "default-forwardauth": {"forwardAuth": {
                    "address": "test.com",
                    "headerField": "X-Header-Field",
                    "maxBodySize": -1,
                    "tls": {
                        "ca": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
                        "cert": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
                        "key": "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----"
                    }
                }}
            })
        );
    }

    #[test]
    fn basic_auth_secret_type_gives_one_sha_user() {
        let (got, diags) = middlewares(
            "apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: default}
type: kubernetes.io/basic-auth
stringData: {username: user, password: password}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: auth, namespace: default}
spec:
  basicAuth: {secret: creds, realm: Staff, removeHeader: true, headerField: X-User}
",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            got["default-auth"]["basicAuth"],
            json!({"users": ["user:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="], "realm": "Staff",
                   "removeHeader": true, "headerField": "X-User"})
        );
    }

    #[test]
    fn broken_auth_secrets_skip_the_middleware() {
        let (got, diags) = middlewares(
            "apiVersion: v1
kind: Secret
metadata: {name: two, namespace: default}
stringData: {a: 'x:y', b: 'z:w'}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: missing, namespace: default}
spec:
  basicAuth: {secret: nope}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: two-keys, namespace: default}
spec:
  digestAuth: {secret: two}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: no-address, namespace: default}
spec:
  forwardAuth: {trustForwardHeader: true}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: fwd, namespace: default}
spec:
  forwardAuth: {address: 'http://auth', trustForwardHeader: false, maxBodySize: 10, authResponseHeaders: []}
",
        );
        assert_eq!(
            got,
            json!({"default-fwd": {"forwardAuth": {"address": "http://auth", "trustForwardHeader": false, "maxBodySize": 10}}})
        );
        let all = diags.join("\n");
        assert!(all.contains("secret 'default/nope' not found"), "{all}");
        assert!(
            all.contains("found 2 elements for secret 'default/two'"),
            "{all}"
        );
        assert!(
            all.contains("forward authentication requires an address"),
            "{all}"
        );
    }

    #[test]
    fn sha1_and_base64() {
        assert_eq!(
            super::base64_encode(&super::sha1(b"abc")),
            "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
        );
        assert_eq!(
            super::base64_encode(&super::sha1(b"")),
            "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
        );
        assert_eq!(super::base64_encode(b"ab"), "YWI=");
        // Longer than one block.
        let long = vec![b'a'; 200];
        assert_eq!(
            super::base64_encode(&super::sha1(&long)),
            "5hz//g2RlaUl/GzwbKLXcRnCSkA="
        );
    }
}
