//! `digestAuth`: HTTP Digest authentication (RFC 2617, MD5, `qop="auth"`), as Traefik does it.
//!
//! Users are `name:realm:HA1` lines where HA1 = MD5(`name:realm:password`) (what `htdigest`
//! writes); only lines of the middleware's own realm can match. Every challenge mints a fresh
//! nonce that is remembered (up to about a thousand, oldest dropped first) together with the
//! highest nonce count seen, so a replayed request is refused and an out-of-order one is told
//! its nonce is stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use md5::{Digest as _, Md5};
use serde::Deserialize;
use serde_json::Value;

use super::htpasswd::constant_time_eq;
use super::{
    header_field, line_field, load_user_lines, parse_at, pass_authenticated, realm, unauthorized,
};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;
use crate::middleware::{Answer, Middleware, MiddlewareError, Next};

/// Nonces kept before the oldest are dropped, and how many beyond that trigger a purge (which
/// then drops twice that many): Traefik's defaults.
const NONCE_CACHE: usize = 1000;
const NONCE_TOLERANCE: usize = 100;

/// Traefik's `digestAuth` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    /// `name:realm:HA1` lines.
    #[serde(default)]
    users: Vec<String>,
    users_file: Option<String>,
    realm: Option<String>,
    #[serde(default)]
    remove_header: bool,
    header_field: Option<String>,
}

/// What is remembered about one issued nonce.
#[derive(Debug)]
struct NonceState {
    /// Highest nonce count accepted so far (0: none yet).
    count: u64,
    /// Logical time of last use, for dropping the oldest.
    last_seen: u64,
}

/// A compiled `digestAuth` middleware.
#[derive(Debug)]
pub struct DigestAuth {
    /// `name:realm` -> HA1.
    users: HashMap<String, String>,
    realm: String,
    /// Random per middleware instance; clients must echo it.
    opaque: String,
    nonces: Mutex<HashMap<String, NonceState>>,
    clock: AtomicU64,
    header_field: Option<HeaderName>,
    remove_header: bool,
}

/// Compiles `digestAuth`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let options: Options = parse_at(spec, "")?;
    let (lines, from_file) = load_user_lines(&options.users, options.users_file.as_deref())?;
    let mut users = HashMap::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let mut parts = line.split(':');
        let (Some(name), Some(user_realm), Some(ha1), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MiddlewareError::new(
                line_field(i, from_file),
                "a user must be written `name:realm:md5-of-name:realm:password` (htdigest format)",
            ));
        };
        users.insert(format!("{name}:{user_realm}"), ha1.to_owned());
    }
    Ok(Arc::new(DigestAuth {
        users,
        realm: realm(options.realm.as_deref())?,
        opaque: random_key(),
        nonces: Mutex::new(HashMap::new()),
        clock: AtomicU64::new(0),
        header_field: header_field(options.header_field.as_deref())?,
        remove_header: options.remove_header,
    }))
}

/// 12 random bytes in base64: the shape of go-http-auth's nonces and opaque values.
fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 12]>())
}

/// Lower-case hex MD5.
pub fn md5_hex(data: &str) -> String {
    Md5::digest(data.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a request was not authenticated.
enum Refusal {
    /// Send a fresh challenge.
    Challenge,
    /// The credentials were right but the nonce count went backwards: challenge with
    /// `stale="true"` so the client retries without asking its user again.
    Stale,
}

impl DigestAuth {
    /// Checks the Authorization header of a request for `method` and `request_uri`.
    fn check(
        &self,
        headers: &HeaderMap,
        method: &str,
        request_uri: &str,
    ) -> Result<String, Refusal> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::Challenge)?;
        let params = digest_params(value).ok_or(Refusal::Challenge)?;
        let param = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        let algorithm = params.get("algorithm").map(String::as_str).unwrap_or("MD5");
        if param("opaque") != self.opaque || algorithm != "MD5" || param("qop") != "auth" {
            return Err(Refusal::Challenge);
        }
        let uri = param("uri");
        if uri != request_uri && !uri_covers(uri, request_uri) {
            return Err(Refusal::Challenge);
        }
        let user = param("username");
        let ha1 = self
            .users
            .get(&format!("{user}:{}", self.realm))
            .map(String::as_str)
            .unwrap_or("");
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = md5_hex(&format!(
            "{ha1}:{}:{}:{}:{}:{ha2}",
            param("nonce"),
            param("nc"),
            param("cnonce"),
            param("qop")
        ));
        if !constant_time_eq(expected.as_bytes(), param("response").as_bytes()) {
            return Err(Refusal::Challenge);
        }
        let count = u64::from_str_radix(param("nc"), 16).map_err(|_| Refusal::Challenge)?;
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let state = nonces.get_mut(param("nonce")).ok_or(Refusal::Challenge)?;
        if state.count != 0 {
            if count == state.count {
                return Err(Refusal::Challenge); // a replay
            }
            if count < state.count {
                return Err(Refusal::Stale);
            }
        }
        state.count = count;
        state.last_seen = self.clock.fetch_add(1, Ordering::Relaxed);
        Ok(user.to_owned())
    }

    /// A 401 with a fresh nonce.
    fn challenge(&self, stale: bool) -> http::Response<crate::dataplane::body::ProxyBody> {
        let nonce = random_key();
        {
            let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
            if nonces.len() > NONCE_CACHE + NONCE_TOLERANCE {
                let mut ages: Vec<(u64, String)> = nonces
                    .iter()
                    .map(|(k, v)| (v.last_seen, k.clone()))
                    .collect();
                ages.sort_unstable();
                for (_, key) in ages.into_iter().take(NONCE_TOLERANCE * 2) {
                    nonces.remove(&key);
                }
            }
            nonces.insert(
                nonce.clone(),
                NonceState {
                    count: 0,
                    last_seen: self.clock.fetch_add(1, Ordering::Relaxed),
                },
            );
        }
        let stale = if stale { "stale=\"true\", " } else { "" };
        let text = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{}\", {stale}algorithm=\"MD5\", qop=\"auth\"",
            self.realm, self.opaque
        );
        // The realm was checked when compiling and the rest is base64.
        let value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Digest"));
        unauthorized(value)
    }
}

/// Whether an Authorization `uri` that differs from the request target still names it: Traefik
/// accepts a path that is a prefix of the request's path (a historical leniency it keeps).
fn uri_covers(uri: &str, request_uri: &str) -> bool {
    let path_of = |u: &str| -> String {
        let u = u.split(['?', '#']).next().unwrap_or("");
        // An absolute URI: keep only its path.
        match u.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map(|i| rest[i..].to_owned())
                .unwrap_or_default(),
            None => u.to_owned(),
        }
    };
    let wanted = path_of(uri);
    let actual = path_of(request_uri);
    wanted.len() <= actual.len() && actual.starts_with(&wanted)
}

/// The parameters of a `Digest ...` header value (scheme matched exactly), unquoted.
pub fn digest_params(value: &str) -> Option<HashMap<String, String>> {
    let (scheme, rest) = value.split_once(' ')?;
    if scheme != "Digest" {
        return None;
    }
    let mut params = HashMap::new();
    for item in split_list(rest.trim()) {
        match item.find('=') {
            None => {
                params.insert(item, String::new());
            }
            Some(i) => {
                let key = item[..i].to_owned();
                let mut v = &item[i + 1..];
                if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                    v = &v[1..v.len() - 1];
                }
                params.insert(key, v.to_owned());
            }
        }
    }
    Some(params)
}

/// Splits a comma-separated header list, keeping commas inside quoted strings; a backslash
/// inside quotes escapes the next character (which is kept, the backslash dropped).
fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => {
                    quoted = false;
                    current.push(c);
                }
                _ => current.push(c),
            }
        } else if c == ',' {
            items.push(current.trim().to_owned());
            current.clear();
        } else {
            if c == '"' {
                quoted = true;
            }
            current.push(c);
        }
    }
    if !current.is_empty() {
        items.push(current.trim().to_owned());
    }
    items
}

impl Middleware for DigestAuth {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        mut outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let checked = self.check(
                outgoing.request.headers(),
                outgoing.request.method().as_str(),
                outgoing.path_and_query.as_str(),
            );
            let user = match checked {
                Ok(user) => user,
                Err(refusal) => {
                    tracing::debug!("digestAuth: authentication failed");
                    return Ok(self.challenge(matches!(refusal, Refusal::Stale)));
                }
            };
            pass_authenticated(
                outgoing.request.headers_mut(),
                self.header_field.as_ref(),
                self.remove_header,
                &user,
            );
            next.run(outgoing).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_params() {
        let p =
            digest_params(r#"Digest username="a, b", realm="r", nc=00000001, qop=auth, x="q\"t""#)
                .unwrap();
        assert_eq!(p["username"], "a, b");
        assert_eq!(p["realm"], "r");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["qop"], "auth");
        assert_eq!(p["x"], "q\"t");
        assert!(digest_params("Basic abc").is_none());
        assert!(digest_params("digest username=a").is_none());
    }

    #[test]
    fn uri_prefixes_are_accepted() {
        assert!(uri_covers("/dir", "/dir/index.html"));
        assert!(uri_covers("http://h/dir", "/dir/x?q=1"));
        assert!(!uri_covers("/dir/index.html", "/dir"));
        assert!(!uri_covers("/other", "/dir/x"));
    }

    fn authorization(
        auth: &DigestAuth,
        nonce: &str,
        nc: &str,
        user: &str,
        password: &str,
        uri: &str,
    ) -> HeaderMap {
        let ha1 = md5_hex(&format!("{user}:{}:{password}", auth.realm));
        let ha2 = md5_hex(&format!("GET:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!(
                r#"Digest username="{user}", realm="{}", nonce="{nonce}", uri="{uri}", algorithm=MD5, qop=auth, nc={nc}, cnonce="c0ffee", response="{response}", opaque="{}""#,
                auth.realm, auth.opaque
            ))
            .unwrap(),
        );
        headers
    }

    fn nonce_of(response: &http::Response<crate::dataplane::body::ProxyBody>) -> String {
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        digest_params(challenge).unwrap()["nonce"].clone()
    }

    fn instance(users: &[(&str, &str)]) -> DigestAuth {
        DigestAuth {
            users: users
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            realm: "traefik".into(),
            opaque: random_key(),
            nonces: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            header_field: None,
            remove_header: false,
        }
    }

    #[test]
    fn nonce_counts_must_grow() {
        let auth = instance(&[("alice:traefik", &md5_hex("alice:traefik:wonder"))]);
        let nonce = nonce_of(&auth.challenge(false));
        let ok = |nc: &str| {
            auth.check(
                &authorization(&auth, &nonce, nc, "alice", "wonder", "/x"),
                "GET",
                "/x",
            )
        };
        assert_eq!(ok("00000001").ok().as_deref(), Some("alice"));
        assert!(matches!(ok("00000001"), Err(Refusal::Challenge)), "replay");
        assert!(ok("00000003").is_ok());
        assert!(matches!(ok("00000002"), Err(Refusal::Stale)));
        let wrong = auth.check(
            &authorization(&auth, &nonce, "00000009", "alice", "nope", "/x"),
            "GET",
            "/x",
        );
        assert!(matches!(wrong, Err(Refusal::Challenge)));
        let unknown_nonce = auth.check(
            &authorization(&auth, "bogus", "00000001", "alice", "wonder", "/x"),
            "GET",
            "/x",
        );
        assert!(matches!(unknown_nonce, Err(Refusal::Challenge)));
    }

    #[test]
    fn old_nonces_are_purged() {
        let auth = instance(&[]);
        let first = nonce_of(&auth.challenge(false));
        for _ in 0..(NONCE_CACHE + NONCE_TOLERANCE + 1) {
            auth.challenge(false);
        }
        let nonces = auth.nonces.lock().unwrap();
        assert!(nonces.len() <= NONCE_CACHE + NONCE_TOLERANCE + 1);
        assert!(!nonces.contains_key(&first), "the oldest nonce goes first");
    }

    #[test]
    fn user_lines_need_three_parts() {
        let err = compile(&serde_json::json!({"users": ["a:b"]})).unwrap_err();
        assert_eq!(err.field, "users[0]");
        assert!(
            compile(&serde_json::json!({})).is_ok(),
            "Traefik accepts a digestAuth without users"
        );
    }
}
