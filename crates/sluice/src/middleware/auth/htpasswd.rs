//! Checking a password against an htpasswd hash, with the formats Traefik accepts.
//!
//! Traefik (through go-http-auth) picks the algorithm from the hash's prefix: `{SHA}` is the
//! base64 SHA-1 of the password, `$2a$`/`$2b$`/`$2x$`/`$2y$` are bcrypt, and anything else is
//! tried as an MD5 crypt (`$apr1$salt$hash` from `htpasswd -m`, or `$1$salt$hash`). A plain
//! text password never matches, exactly as in Traefik.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// The hash algorithms recognised by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sha1,
    Bcrypt,
    Md5Crypt,
}

/// Which algorithm `hash` uses.
pub fn scheme(hash: &str) -> Scheme {
    if hash.starts_with("{SHA}") {
        Scheme::Sha1
    } else if ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        Scheme::Bcrypt
    } else {
        Scheme::Md5Crypt
    }
}

/// Whether `password` matches `hash`. bcrypt is slow by design: call this off the async
/// workers when the hash is bcrypt.
pub fn verify(password: &[u8], hash: &str) -> bool {
    match scheme(hash) {
        Scheme::Sha1 => {
            let digest = Sha1::digest(password);
            let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
            constant_time_eq(&hash.as_bytes()["{SHA}".len()..], encoded.as_bytes())
        }
        // `$2x$` is treated as `$2y$`, like Traefik: correct for 7-bit passwords.
        Scheme::Bcrypt => {
            let normalised;
            let hash = if let Some(rest) = hash.strip_prefix("$2x$") {
                normalised = format!("$2y${rest}");
                normalised.as_str()
            } else {
                hash
            };
            bcrypt::verify(password, hash).unwrap_or(false)
        }
        Scheme::Md5Crypt => {
            // `$magic$salt$hash`: four parts when split on the first three `$`.
            let mut parts = hash.splitn(4, '$');
            let (Some(""), Some(magic), Some(salt), Some(_)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            let expected = md5_crypt(password, salt.as_bytes(), format!("${magic}$").as_bytes());
            constant_time_eq(hash.as_bytes(), &expected)
        }
    }
}

/// Compares without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The crypt alphabet (not base64's order).
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5 crypt, parameterised by its magic (`$1$` or Apache's `$apr1$`).
/// Returns the full `magic salt $ encoded` string.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> Vec<u8> {
    let mut outer = Md5::new();
    outer.update(password);
    outer.update(magic);
    outer.update(salt);

    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    for i in 0..password.len() {
        outer.update([alternate[i % 16]]);
    }
    // One byte per bit of the length: NUL for a set bit, the first password byte otherwise.
    let mut length = password.len();
    while length != 0 {
        if length & 1 == 0 {
            outer.update([password.first().copied().unwrap_or(0)]);
        } else {
            outer.update([0u8]);
        }
        length >>= 1;
    }
    let mut digest = outer.finalize();

    // A thousand rounds to slow brute force down.
    for round in 0..1000 {
        let mut step = Md5::new();
        if round & 1 == 0 {
            step.update(digest);
        } else {
            step.update(password);
        }
        if round % 3 != 0 {
            step.update(salt);
        }
        if round % 7 != 0 {
            step.update(password);
        }
        if round & 1 == 0 {
            step.update(password);
        } else {
            step.update(digest);
        }
        digest = step.finalize();
    }

    // The digest bytes are emitted in this order, six bits at a time, low bits first.
    const ORDER: [usize; 16] = [12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11];
    let mut encoded = Vec::with_capacity(22);
    let mut bits: u32 = 0;
    let mut count: u32 = 0;
    for index in ORDER {
        bits |= u32::from(digest[index]) << count;
        count += 8;
        while count > 6 {
            encoded.push(CRYPT_ALPHABET[(bits & 0x3f) as usize]);
            bits >>= 6;
            count -= 6;
        }
    }
    encoded.push(CRYPT_ALPHABET[(bits & 0x3f) as usize]);

    let mut out = Vec::with_capacity(magic.len() + salt.len() + 1 + encoded.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(salt);
    out.push(b'$');
    out.extend_from_slice(&encoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_hashes() {
        assert!(verify(b"hello", "{SHA}qvTGHdzF6KLavt4PO0gs2a6pQ00="));
        assert!(!verify(b"hellO", "{SHA}qvTGHdzF6KLavt4PO0gs2a6pQ00="));
        // What Traefik's CRD provider writes for a kubernetes.io/basic-auth Secret.
        assert!(verify(b"password", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
    }

    #[test]
    fn apache_md5_hashes() {
        assert!(verify(b"hello2", "$apr1$a0j62R97$mYqFkloXH0/UOaUnAiV2b0"));
        assert!(verify(
            b"topsecret",
            "$apr1$JI4wh3am$AmhephVqLTUyAVpFQeHZC0"
        ));
        assert!(verify(b"test2", "$apr1$d9hr9HBB$4HxwgUir3HP4EsggP/QNo0"));
        assert!(!verify(b"hello3", "$apr1$a0j62R97$mYqFkloXH0/UOaUnAiV2b0"));
        // A broken prefix is not an MD5 crypt and never matches.
        assert!(!verify(b"hello", "$apr10.KbAJur$4G9MiqUjDLCuihkMfmg6e1"));
    }

    #[test]
    fn classic_md5_crypt() {
        // `openssl passwd -1 -salt saltsalt password`
        assert!(verify(b"password", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"));
        assert!(!verify(b"passwork", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"));
    }

    #[test]
    fn bcrypt_hashes_with_every_prefix() {
        let y = "$2y$05$ih3C91zUBSTFcAh2mQnZYuob0UOZVEf16wl/ukgjDhjvj.xgM1WwS";
        assert!(verify(b"hello3", y));
        assert!(!verify(b"hello", y));
        for prefix in ["$2a$", "$2b$", "$2x$"] {
            let other = format!("{prefix}{}", &y[4..]);
            assert!(verify(b"hello3", &other), "{prefix}");
        }
    }

    #[test]
    fn plain_text_never_matches() {
        assert!(!verify(b"secret", "secret"));
        assert!(!verify(b"", ""));
    }

    #[test]
    fn schemes_by_prefix() {
        assert_eq!(scheme("{SHA}x"), Scheme::Sha1);
        assert_eq!(scheme("$2b$10$x"), Scheme::Bcrypt);
        assert_eq!(scheme("$apr1$x$y"), Scheme::Md5Crypt);
    }
}
