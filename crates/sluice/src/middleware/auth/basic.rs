//! `basicAuth`: HTTP Basic authentication (RFC 7617) against htpasswd users.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::htpasswd::{self, Scheme};
use super::{
    header_field, line_field, load_user_lines, parse_at, pass_authenticated, realm, unauthorized,
};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;
use crate::middleware::{Answer, Middleware, MiddlewareError, Next};

/// Traefik's `basicAuth` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    /// `name:hash` lines.
    #[serde(default)]
    users: Vec<String>,
    /// A file of `name:hash` lines, read when the configuration is loaded.
    users_file: Option<String>,
    realm: Option<String>,
    #[serde(default)]
    remove_header: bool,
    header_field: Option<String>,
}

/// A compiled `basicAuth` middleware.
#[derive(Debug)]
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// A real hash checked when the user is unknown, so that unknown users take as long to
    /// refuse as known ones.
    decoy: String,
    challenge: HeaderValue,
    header_field: Option<HeaderName>,
    remove_header: bool,
}

/// Compiles `basicAuth`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let options: Options = parse_at(spec, "")?;
    let (lines, from_file) = load_user_lines(&options.users, options.users_file.as_deref())?;
    let mut users = HashMap::with_capacity(lines.len());
    let mut decoy = None;
    for (i, line) in lines.iter().enumerate() {
        // Exactly one colon, as Traefik requires: `name:hash`.
        let mut parts = line.split(':');
        let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(MiddlewareError::new(
                line_field(i, from_file),
                "a user must be written `name:hashed-password` (htpasswd format)",
            ));
        };
        if htpasswd::scheme(hash) == Scheme::Md5Crypt && !hash.starts_with('$') {
            tracing::warn!(
                user = name,
                "basicAuth: this password is not an htpasswd hash (bcrypt, MD5 or SHA1); it can never match"
            );
        }
        decoy.get_or_insert_with(|| hash.to_owned());
        // A later line for the same user wins, as in Traefik.
        users.insert(name.to_owned(), hash.to_owned());
    }
    let Some(decoy) = decoy else {
        return Err(MiddlewareError::new("users", "no users are configured"));
    };
    let realm = realm(options.realm.as_deref())?;
    let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        .map_err(|_| MiddlewareError::new("realm", "cannot be sent in a header"))?;
    Ok(Arc::new(BasicAuth {
        users,
        decoy,
        challenge,
        header_field: header_field(options.header_field.as_deref())?,
        remove_header: options.remove_header,
    }))
}

/// The user and password of a `Basic` Authorization header, as Go's `Request.BasicAuth` reads
/// it: scheme case-insensitive, standard padded base64, split at the first colon.
pub fn credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let prefix = value.get(..6)?;
    if !prefix.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[6..])
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

impl BasicAuth {
    /// The authenticated user name, if the request carries valid credentials.
    async fn authenticate(&self, headers: &HeaderMap) -> Option<String> {
        let (user, password) = credentials(headers)?;
        let user = String::from_utf8(user).ok();
        let known = user.as_deref().and_then(|u| self.users.get(u));
        let hash = known.unwrap_or(&self.decoy).clone();
        let matches = if htpasswd::scheme(&hash) == Scheme::Bcrypt {
            // bcrypt takes milliseconds by design: keep it off the request workers.
            tokio::task::spawn_blocking(move || htpasswd::verify(&password, &hash))
                .await
                .unwrap_or(false)
        } else {
            htpasswd::verify(&password, &hash)
        };
        (matches && known.is_some()).then_some(user).flatten()
    }
}

impl Middleware for BasicAuth {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        mut outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let Some(user) = self.authenticate(outgoing.request.headers()).await else {
                tracing::debug!("basicAuth: authentication failed");
                return Ok(unauthorized(self.challenge.clone()));
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

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn reads_credentials_like_go() {
        // "user:pa:ss"
        let (u, p) = credentials(&headers("Basic dXNlcjpwYTpzcw==")).unwrap();
        assert_eq!((u.as_slice(), p.as_slice()), (&b"user"[..], &b"pa:ss"[..]));
        assert!(credentials(&headers("bAsIc dXNlcjpwYTpzcw==")).is_some());
        assert!(credentials(&headers("Bearer dXNlcjpwYTpzcw==")).is_none());
        // No colon, or unpadded base64: not credentials.
        assert!(credentials(&headers("Basic dXNlcg==")).is_none());
        assert!(credentials(&headers("Basic dXNlcjpwYTpzcw")).is_none());
        assert!(credentials(&HeaderMap::new()).is_none());
    }

    #[test]
    fn options_are_checked() {
        let err = compile(&serde_json::json!({"users": ["a:b:c"]})).unwrap_err();
        assert_eq!(err.field, "users[0]");
        let err = compile(&serde_json::json!({"users": []})).unwrap_err();
        assert_eq!(err.field, "users");
        let err = compile(&serde_json::json!({"user": ["a:{SHA}x"]})).unwrap_err();
        assert_eq!(err.field, "user");
        let err = compile(&serde_json::json!({"users": ["a:{SHA}x"], "headerField": "bad header"}))
            .unwrap_err();
        assert_eq!(err.field, "headerField");
        assert!(compile(&serde_json::json!({"users": ["a:{SHA}x"], "realm": "r"})).is_ok());
    }
}
