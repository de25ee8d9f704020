//! Query-string reading with Go's `url.ParseQuery` semantics (as Traefik's matchers see it).

use std::borrow::Cow;

/// Calls `visit(key, value)` for every well-formed `key=value` pair of a raw query string, in
/// order, until `visit` returns true; returns whether it did.
///
/// Pairs are separated by `&` or `;` (Traefik's entry points allow semicolons by default), keys and
/// values are percent-decoded with `+` meaning space, a pair without `=` has an empty value, and a
/// pair whose key or value has a malformed escape is skipped, as Go does.
pub(crate) fn any_pair(raw: &str, mut visit: impl FnMut(&str, &str) -> bool) -> bool {
    for part in raw.split(['&', ';']) {
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let (Some(key), Some(value)) = (unescape(key), unescape(value)) else {
            continue;
        };
        if visit(&key, &value) {
            return true;
        }
    }
    false
}

/// First value of `key` in the raw query, gorilla/mux style (used by v2 `Query`): the raw key is
/// compared after decoding; a malformed value stops the search.
pub(crate) fn first_value<'a>(raw: &'a str, key: &str) -> Option<Cow<'a, str>> {
    for part in raw.split(['&', ';']) {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match unescape(k) {
            Some(k) if k == key => {}
            _ => continue,
        }
        return unescape(v);
    }
    None
}

/// `url.QueryUnescape`: `%XX` decoding and `+` -> space; `None` on a malformed escape.
/// Bytes that do not form UTF-8 become U+FFFD, which no rule argument can equal by accident.
pub(crate) fn unescape(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16))?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &str) -> Vec<(String, String)> {
        let mut v = Vec::new();
        any_pair(raw, |k, val| {
            v.push((k.to_string(), val.to_string()));
            false
        });
        v
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(
            pairs("a=1&b&c=&d=x%20y+z;e=%3D&&bad=%zz&f=a=b"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "".into()),
                ("c".into(), "".into()),
                ("d".into(), "x y z".into()),
                ("e".into(), "=".into()),
                ("f".into(), "a=b".into()),
            ]
        );
        assert!(pairs("").is_empty());
    }

    #[test]
    fn first_values() {
        assert_eq!(first_value("a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(first_value("b=1", "a"), None);
        assert_eq!(first_value("a%20b=x", "a b").as_deref(), Some("x"));
    }
}
