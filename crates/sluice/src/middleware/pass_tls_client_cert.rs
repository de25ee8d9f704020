//! `passTLSClientCert`: pass the client's TLS certificate (PEM, and/or selected fields) to the
//! origin in `X-Forwarded-Tls-Client-Cert` and `X-Forwarded-Tls-Client-Cert-Info`.
//!
//! Where the certificate will come from: Sluice has no TLS entry points yet. When they land,
//! the verified peer chain of a mutual-TLS connection belongs on
//! [`Connection`](crate::dataplane::request::Connection) (set once when the handshake
//! completes), and [`PassTlsClientCert::handle`] will format it here: the PEM bodies without
//! armour or line breaks, comma-separated and URL-escaped, and the selected info fields
//! (`Subject="..."`, `Issuer="..."`, `SerialNumber`, `NB`, `NA`, `SAN`) per certificate.
//!
//! Until then every request arrives without a client certificate, and for such requests
//! Traefik's middleware changes nothing: it neither sets nor removes the two headers. Copies
//! sent by an untrusted client never get this far, because the entry point strips every
//! `X-Forwarded-*` header (these two included) from clients outside
//! `forwardedHeaders.trustedIPs`; a trusted proxy in front may legitimately set them.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::auth::parse_at;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// Traefik's `passTLSClientCert` options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    #[serde(default)]
    pem: bool,
    info: Option<Value>,
}

/// `info`: which certificate fields go in `X-Forwarded-Tls-Client-Cert-Info`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InfoOptions {
    #[serde(default)]
    pub not_after: bool,
    #[serde(default)]
    pub not_before: bool,
    #[serde(default)]
    pub sans: bool,
    #[serde(default)]
    pub serial_number: bool,
    subject: Option<Value>,
    issuer: Option<Value>,
}

/// `info.subject`: distinguished-name fields of the subject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectOptions {
    #[serde(default)]
    pub country: bool,
    #[serde(default)]
    pub province: bool,
    #[serde(default)]
    pub locality: bool,
    #[serde(default)]
    pub organization: bool,
    #[serde(default)]
    pub organizational_unit: bool,
    #[serde(default)]
    pub common_name: bool,
    #[serde(default)]
    pub serial_number: bool,
    #[serde(default)]
    pub domain_component: bool,
}

/// `info.issuer`: distinguished-name fields of the issuer (no organizational unit, as in
/// Traefik).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerOptions {
    #[serde(default)]
    pub country: bool,
    #[serde(default)]
    pub province: bool,
    #[serde(default)]
    pub locality: bool,
    #[serde(default)]
    pub organization: bool,
    #[serde(default)]
    pub common_name: bool,
    #[serde(default)]
    pub serial_number: bool,
    #[serde(default)]
    pub domain_component: bool,
}

/// The selected info fields, validated.
#[derive(Debug)]
pub struct Info {
    pub fields: InfoOptions,
    pub subject: Option<SubjectOptions>,
    pub issuer: Option<IssuerOptions>,
}

/// A compiled `passTLSClientCert`.
#[derive(Debug)]
pub struct PassTlsClientCert {
    /// Send the PEM chain in `X-Forwarded-Tls-Client-Cert`.
    pub pem: bool,
    /// Send these fields in `X-Forwarded-Tls-Client-Cert-Info`.
    pub info: Option<Info>,
}

/// Compiles `passTLSClientCert`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let options: Options = parse_at(spec, "")?;
    let info = match &options.info {
        None => None,
        Some(info) => {
            let fields: InfoOptions = parse_at(info, "info")?;
            let subject = fields
                .subject
                .as_ref()
                .map(|s| parse_at(s, "info.subject"))
                .transpose()?;
            let issuer = fields
                .issuer
                .as_ref()
                .map(|s| parse_at(s, "info.issuer"))
                .transpose()?;
            Some(Info {
                fields,
                subject,
                issuer,
            })
        }
    };
    Ok(Arc::new(PassTlsClientCert {
        pem: options.pem,
        info,
    }))
}

impl Middleware for PassTlsClientCert {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        // No connection carries a client certificate yet (see the module documentation): like
        // Traefik for a request without one, leave the headers as they are.
        if self.pem || self.info.is_some() {
            tracing::trace!("passTLSClientCert: request without a client certificate");
        }
        next.run(outgoing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_option_set_is_accepted() {
        let all_dn = json!({"country": true, "province": true, "locality": true, "organization": true,
            "commonName": true, "serialNumber": true, "domainComponent": true});
        let mut subject = all_dn.clone();
        subject["organizationalUnit"] = json!(true);
        assert!(compile(
            &json!({"pem": true, "info": {"notAfter": true, "notBefore": true, "sans": true,
            "serialNumber": true, "subject": subject, "issuer": all_dn}})
        )
        .is_ok());
        assert!(compile(&json!({})).is_ok());
    }

    #[test]
    fn typos_name_their_path() {
        let err = |spec: Value| compile(&spec).unwrap_err().field;
        assert_eq!(err(json!({"pems": true})), "pems");
        assert_eq!(err(json!({"info": {"notafter": true}})), "info.notafter");
        assert_eq!(
            err(json!({"info": {"subject": {"cn": true}}})),
            "info.subject.cn"
        );
        // The issuer has no organizational unit in Traefik.
        assert_eq!(
            err(json!({"info": {"issuer": {"organizationalUnit": true}}})),
            "info.issuer.organizationalUnit"
        );
    }
}
