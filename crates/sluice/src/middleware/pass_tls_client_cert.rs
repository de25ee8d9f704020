//! `passTLSClientCert`: pass the client's TLS certificate (PEM, and/or selected fields) to the
//! origin in `X-Forwarded-Tls-Client-Cert` and `X-Forwarded-Tls-Client-Cert-Info`.
//!
//! The chain is the one the client sent during a mutual-TLS handshake (see
//! [`TlsInfo`](crate::tls::acceptor::TlsInfo)). The PEM header holds each certificate's base64
//! body without armour or line breaks, comma-separated; the info header holds, per
//! certificate, the selected `Subject="..."`, `Issuer="..."`, `SerialNumber`, `NB`, `NA` and
//! `SAN` fields joined by `;`, certificates joined by `,`, the whole query-escaped.
//!
//! For a request without a client certificate Traefik's middleware changes nothing: it neither
//! sets nor removes the two headers. Copies sent by an untrusted client never get this far,
//! because the entry point strips every `X-Forwarded-*` header (these two included) from
//! clients outside `forwardedHeaders.trustedIPs`; a trusted proxy in front may set them.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use base64::Engine as _;
use http::HeaderValue;

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
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        let chain = connection
            .tls_info
            .as_ref()
            .and_then(|tls| tls.peer_certificates.as_ref())
            .filter(|chain| !chain.is_empty());
        let Some(chain) = chain else {
            if self.pem || self.info.is_some() {
                tracing::debug!("passTLSClientCert: request without a client certificate");
            }
            return next.run(outgoing);
        };
        let mut outgoing = outgoing;
        if self.pem {
            let value = chain
                .iter()
                .map(|cert| base64::engine::general_purpose::STANDARD.encode(cert.as_ref()))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(value) = HeaderValue::from_str(&value) {
                outgoing.request.headers_mut().insert(CERT_HEADER, value);
            }
        }
        if let Some(info) = &self.info {
            let text = chain
                .iter()
                .map(|cert| info.describe(cert.as_ref()))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(value) = HeaderValue::from_str(&query_escape(&text)) {
                outgoing.request.headers_mut().insert(INFO_HEADER, value);
            }
        }
        next.run(outgoing)
    }
}

const CERT_HEADER: &str = "x-forwarded-tls-client-cert";
const INFO_HEADER: &str = "x-forwarded-tls-client-cert-info";

impl Info {
    /// The selected fields of one DER certificate (empty when it cannot be parsed).
    fn describe(&self, der: &[u8]) -> String {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return String::new();
        };
        let mut values = Vec::new();
        if let Some(subject) = &self.subject {
            let dn = distinguished_name(
                cert.subject(),
                &DnFields {
                    country: subject.country,
                    province: subject.province,
                    locality: subject.locality,
                    organization: subject.organization,
                    organizational_unit: subject.organizational_unit,
                    serial_number: subject.serial_number,
                    common_name: subject.common_name,
                    domain_component: subject.domain_component,
                },
            );
            if !dn.is_empty() {
                values.push(format!("Subject=\"{dn}\""));
            }
        }
        if let Some(issuer) = &self.issuer {
            let dn = distinguished_name(
                cert.issuer(),
                &DnFields {
                    country: issuer.country,
                    province: issuer.province,
                    locality: issuer.locality,
                    organization: issuer.organization,
                    organizational_unit: false,
                    serial_number: issuer.serial_number,
                    common_name: issuer.common_name,
                    domain_component: issuer.domain_component,
                },
            );
            if !dn.is_empty() {
                values.push(format!("Issuer=\"{dn}\""));
            }
        }
        if self.fields.serial_number {
            values.push(format!("SerialNumber=\"{}\"", cert.serial));
        }
        if self.fields.not_before {
            values.push(format!(
                "NB=\"{}\"",
                cert.validity().not_before.timestamp().max(0)
            ));
        }
        if self.fields.not_after {
            values.push(format!(
                "NA=\"{}\"",
                cert.validity().not_after.timestamp().max(0)
            ));
        }
        if self.fields.sans {
            let sans = subject_alternative_names(&cert);
            if !sans.is_empty() {
                values.push(format!("SAN=\"{}\"", sans.join(",")));
            }
        }
        values.join(";")
    }
}

struct DnFields {
    country: bool,
    province: bool,
    locality: bool,
    organization: bool,
    organizational_unit: bool,
    serial_number: bool,
    common_name: bool,
    domain_component: bool,
}

/// `DC=..,C=..,ST=..,L=..,O=..,OU=..,SN=..,CN=..` in Traefik's order, for the selected fields.
fn distinguished_name(name: &x509_parser::x509::X509Name<'_>, fields: &DnFields) -> String {
    use x509_parser::oid_registry::{
        OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_LOCALITY_NAME,
        OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME, OID_X509_SERIALNUMBER,
        OID_X509_STATE_OR_PROVINCE_NAME,
    };
    let dc = x509_parser::der_parser::oid!(0.9.2342 .19200300 .100 .1 .25);
    let values = |oid: &x509_parser::der_parser::Oid<'_>| -> Vec<String> {
        name.iter_by_oid(oid)
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .filter(|v| !v.is_empty())
            .collect()
    };
    let mut parts = Vec::new();
    let mut add = |on: bool, prefix: &str, found: Vec<String>| {
        if on {
            parts.extend(found.into_iter().map(|v| format!("{prefix}={v}")));
        }
    };
    add(fields.domain_component, "DC", values(&dc));
    add(fields.country, "C", values(&OID_X509_COUNTRY_NAME));
    add(
        fields.province,
        "ST",
        values(&OID_X509_STATE_OR_PROVINCE_NAME),
    );
    add(fields.locality, "L", values(&OID_X509_LOCALITY_NAME));
    add(
        fields.organization,
        "O",
        values(&OID_X509_ORGANIZATION_NAME),
    );
    add(
        fields.organizational_unit,
        "OU",
        values(&OID_X509_ORGANIZATIONAL_UNIT),
    );
    // Go keeps one serial number and one common name per name.
    add(
        fields.serial_number,
        "SN",
        values(&OID_X509_SERIALNUMBER).into_iter().take(1).collect(),
    );
    add(
        fields.common_name,
        "CN",
        values(&OID_X509_COMMON_NAME).into_iter().take(1).collect(),
    );
    parts.join(",")
}

/// DNS names, e-mail addresses, IPs and URIs, in that order (as Go groups them).
fn subject_alternative_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let names = &san.value.general_names;
    let mut out: Vec<String> = Vec::new();
    out.extend(names.iter().filter_map(|n| match n {
        GeneralName::DNSName(d) => Some(d.to_string()),
        _ => None,
    }));
    out.extend(names.iter().filter_map(|n| match n {
        GeneralName::RFC822Name(e) => Some(e.to_string()),
        _ => None,
    }));
    out.extend(names.iter().filter_map(|n| match n {
        GeneralName::IPAddress(b) => crate::tls::certificate::san_ip(b).map(|ip| ip.to_string()),
        _ => None,
    }));
    out.extend(names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    }));
    out
}

/// Go's `url.QueryEscape`: unreserved characters stay, spaces become `+`, the rest `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_lists_the_selected_fields_in_traefiks_order() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["a.test".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client one");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "FR");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x01, 0x00]));
        let cert = params.self_signed(&key).unwrap();
        let info = Info {
            fields: InfoOptions {
                sans: true,
                serial_number: true,
                ..Default::default()
            },
            subject: Some(SubjectOptions {
                common_name: true,
                organization: true,
                country: true,
                ..Default::default()
            }),
            issuer: None,
        };
        assert_eq!(
            info.describe(cert.der()),
            "Subject=\"C=FR,O=Acme,CN=client one\";SerialNumber=\"256\";SAN=\"a.test,127.0.0.1\""
        );
        assert_eq!(query_escape("a \"b\",c;d=e"), "a+%22b%22%2Cc%3Bd%3De");
    }

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
