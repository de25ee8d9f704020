//! The authentication middlewares: `basicAuth`, `digestAuth` and `forwardAuth`.
//!
//! Each family lives in its own module; this one holds what they share: reading users from
//! inline lists and files the way Traefik does, and the plain-text 401 answer.

pub mod basic;
pub mod digest;
pub mod forward;
pub mod htpasswd;

use std::sync::Arc;

use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Middleware, MiddlewareError};
use crate::dataplane::body::{full, ProxyBody};

/// Compiles `basicAuth`, `digestAuth` or `forwardAuth`.
pub fn compile(kind: &str, spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    match kind {
        "basicAuth" => basic::compile(spec),
        "digestAuth" => digest::compile(spec),
        "forwardAuth" => forward::compile(spec),
        other => Err(MiddlewareError::new(other, "unknown middleware type")),
    }
}

/// Decodes a middleware spec (or a nested object of one, at `path`) into its typed options.
///
/// Unknown and missing fields are errors naming the field's path. Nested objects are declared
/// as `Option<Value>` in the outer struct and decoded with their own path, so a typo deep inside
/// is reported where it is.
pub(crate) fn parse_at<T: DeserializeOwned>(
    spec: &Value,
    path: &str,
) -> Result<T, MiddlewareError> {
    // An empty YAML mapping may arrive as null.
    let empty = Value::Object(Default::default());
    let spec = if spec.is_null() { &empty } else { spec };
    T::deserialize(spec).map_err(|e| {
        let message = e.to_string();
        let named = message.starts_with("unknown field") || message.starts_with("missing field");
        let field = match message.split('`').nth(1).filter(|_| named) {
            Some(name) if path.is_empty() => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None => path.to_owned(),
        };
        MiddlewareError::new(field, message)
    })
}

/// The user lines of `usersFile` followed by the inline `users`, as Traefik gathers them: file
/// lines are trimmed, and blank lines and `#` comments are skipped. Also returns how many lines
/// came from the file.
pub(crate) fn load_user_lines(
    users: &[String],
    users_file: Option<&str>,
) -> Result<(Vec<String>, usize), MiddlewareError> {
    let mut lines = Vec::new();
    if let Some(path) = users_file.filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MiddlewareError::new("usersFile", format!("cannot read `{path}`: {e}")))?;
        lines.extend(
            text.split('\n')
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    let from_file = lines.len();
    lines.extend(users.iter().cloned());
    Ok((lines, from_file))
}

/// Where user line `index` of [`load_user_lines`] came from, for error messages.
pub(crate) fn line_field(index: usize, file_lines: usize) -> String {
    if index < file_lines {
        "usersFile".to_owned()
    } else {
        format!("users[{}]", index - file_lines)
    }
}

/// Parses `headerField`.
pub(crate) fn header_field(name: Option<&str>) -> Result<Option<HeaderName>, MiddlewareError> {
    match name.filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(name) => HeaderName::from_bytes(name.as_bytes())
            .map(Some)
            .map_err(|_| {
                MiddlewareError::new(
                    "headerField",
                    format!("`{name}` is not a valid header name"),
                )
            }),
    }
}

/// The realm, Traefik's default when unset; it must fit in a quoted header parameter.
pub(crate) fn realm(realm: Option<&str>) -> Result<String, MiddlewareError> {
    let realm = realm.filter(|r| !r.is_empty()).unwrap_or("traefik");
    if realm.contains('"') || HeaderValue::from_str(realm).is_err() {
        return Err(MiddlewareError::new(
            "realm",
            "must be printable text without double quotes",
        ));
    }
    Ok(realm.to_owned())
}

/// What basic and digest auth do to an authenticated request: `headerField` carries the user,
/// `removeHeader` drops the credentials before the origin.
pub(crate) fn pass_authenticated(
    headers: &mut http::HeaderMap,
    header_field: Option<&HeaderName>,
    remove_header: bool,
    user: &str,
) {
    if let Some(field) = header_field {
        // Whatever the client sent under this name is replaced, never passed on.
        headers.remove(field);
        if let Ok(value) = HeaderValue::from_str(user) {
            headers.insert(field.clone(), value);
        }
    }
    if remove_header {
        headers.remove(header::AUTHORIZATION);
    }
}

/// The 401 answer of basic and digest auth: `text/plain`, `401 Unauthorized`.
pub(crate) fn unauthorized(challenge: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(full("401 Unauthorized\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// Go's canonical header spelling (`x-auth-user` → `X-Auth-User`): Traefik matches
/// `authResponseHeadersRegex` against names in this form.
pub(crate) fn canonical_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_follow_go() {
        assert_eq!(canonical_name("x-auth-user"), "X-Auth-User");
        assert_eq!(canonical_name("www-authenticate"), "Www-Authenticate");
        assert_eq!(canonical_name("etag"), "Etag");
    }

    #[test]
    fn user_files_skip_blanks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "# admins\n  alice:{SHA}x  \n\n\tbob:{SHA}y\n").unwrap();
        let (lines, from_file) = load_user_lines(&["carol:{SHA}z".into()], path.to_str()).unwrap();
        assert_eq!(lines, ["alice:{SHA}x", "bob:{SHA}y", "carol:{SHA}z"]);
        assert_eq!(from_file, 2);
        assert_eq!(line_field(1, from_file), "usersFile");
        assert_eq!(line_field(2, from_file), "users[0]");
        let missing = load_user_lines(&[], Some("/nonexistent/users")).unwrap_err();
        assert_eq!(missing.field, "usersFile");
    }

    #[test]
    fn realms_default_and_reject_quotes() {
        assert_eq!(realm(None).unwrap(), "traefik");
        assert_eq!(realm(Some("")).unwrap(), "traefik");
        assert_eq!(realm(Some("team")).unwrap(), "team");
        assert_eq!(realm(Some("a\"b")).unwrap_err().field, "realm");
    }
}
