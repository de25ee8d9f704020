//! ACME certificate resolvers for Sluice, configured like Traefik's
//! `certificatesResolvers.NAME.acme`.
//!
//! A [`Resolver`] keeps the domain sets it is asked for covered by valid
//! certificates: it loads what [`Storage`] holds, registers (or reuses) an ACME
//! account, orders missing certificates, renews them before expiry and publishes
//! the result on a watch channel. Entry points answer the validation requests
//! through [`Challenges`].
//!
//! Where Sluice differs from Traefik:
//! - Only wanted domain sets are renewed; stored certificates nobody asks for are
//!   published until they expire (Traefik renews every stored certificate).
//! - Account keys are ECDSA P-256 (instant-acme's only kind). An account in a
//!   Traefik `acme.json` (RSA key) is replaced by a new registration; its
//!   certificates load as they are.
//! - `preferredChain` is accepted but the server's default chain is used;
//!   `dnsChallenge`, `emailAddresses` and `keyType: RSA8192` are rejected with a
//!   clear error; renewal timing is Traefik's table, without ACME renewal info (ARI).

mod certificate;
mod challenges;
mod http_client;
mod resolver;
mod settings;
mod storage;
#[cfg(feature = "testing")]
pub mod testing;

pub use certificate::{Certificate, CertificateError, Domains};
pub use challenges::{Challenges, TlsAnswerError, ACME_TLS_ALPN, HTTP01_PATH_PREFIX};
pub use http_client::ClientError;
pub use resolver::{DomainState, DomainStatus, Resolver, ResolverHandle};
pub use settings::{
    renew_durations, Backoff, ChallengeKind, ExternalAccount, KeyType, ResolverSettings,
    SettingsError, LETS_ENCRYPT_PRODUCTION,
};
pub use storage::{FileStorage, Storage, StorageError, StoredAccount, StoredState};
