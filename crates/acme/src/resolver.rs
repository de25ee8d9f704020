//! A running certificate resolver: keeps the wanted domain sets covered by valid
//! certificates, issuing and renewing over ACME.
//!
//! One task per resolver owns all state. It wakes when the wanted sets or the
//! leadership change, when a retry or renewal check is due, and when a published
//! certificate expires. Orders run one at a time; failures are retried per domain
//! set with capped exponential backoff and never end the task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::certificate::{Certificate, Domains};
use crate::challenges::Challenges;
use crate::http_client::AcmeHttpClient;
use crate::settings::{ChallengeKind, KeyType, ResolverSettings};
use crate::storage::{Storage, StoredAccount, StoredState};

/// Starts resolvers.
#[derive(Debug)]
pub struct Resolver;

/// Control and observation of a running resolver. Cheap to clone; the resolver
/// stops once every handle is dropped.
#[derive(Clone)]
pub struct ResolverHandle {
    name: Arc<str>,
    wanted: Arc<watch::Sender<Vec<Domains>>>,
    certificates: watch::Receiver<Arc<Vec<Certificate>>>,
    status: watch::Receiver<Arc<Vec<DomainStatus>>>,
}

/// Where one wanted domain set stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStatus {
    /// The wanted names.
    pub domains: Domains,
    /// Expiry of the certificate now serving these names, if any.
    pub valid_until: Option<SystemTime>,
    /// What the resolver is doing about them.
    pub state: DomainState,
}

/// Progress of one wanted domain set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainState {
    /// Covered by a certificate that needs nothing now.
    Valid,
    /// A certificate is being obtained or renewed, or waits for leadership.
    Pending,
    /// The last attempt failed.
    Failing {
        /// What went wrong.
        last_error: String,
        /// Consecutive failed attempts.
        attempts: u32,
        /// When the next attempt is due; `None` when retrying cannot help.
        next_retry: Option<SystemTime>,
    },
}

impl std::fmt::Debug for ResolverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Starts a resolver on the current Tokio runtime. It publishes the stored
    /// certificates, then obtains what [`ResolverHandle::request`] asks for.
    pub fn spawn(
        settings: ResolverSettings,
        challenges: Challenges,
        storage: Arc<dyn Storage>,
    ) -> ResolverHandle {
        Resolver::spawn_with_leader(settings, challenges, storage, None)
    }

    /// Like [`Resolver::spawn`], but issues and renews only while `leader` holds
    /// `true` (for replicas sharing one storage); stored certificates are published
    /// regardless. `None` means always leader.
    pub fn spawn_with_leader(
        settings: ResolverSettings,
        challenges: Challenges,
        storage: Arc<dyn Storage>,
        leader: Option<watch::Receiver<bool>>,
    ) -> ResolverHandle {
        let (wanted_tx, wanted_rx) = watch::channel(Vec::new());
        let (certs_tx, certs_rx) = watch::channel(Arc::new(Vec::new()));
        let (status_tx, status_rx) = watch::channel(Arc::new(Vec::new()));
        let name: Arc<str> = Arc::from(settings.name.as_str());
        if let Some(chain) = &settings.preferred_chain {
            tracing::warn!(resolver = %name, preferred_chain = %chain,
                "preferredChain is not supported; the ACME server's default chain is used");
        }
        let worker = Worker {
            settings,
            challenges,
            storage,
            wanted_rx,
            leader_rx: leader,
            leader_fixed: true,
            certs_tx,
            status_tx,
            account: None,
            stored: None,
            dirty: false,
            load_failure: None,
            wanted: Vec::new(),
            tracks: HashMap::new(),
            next_renew_check: Instant::now(),
            next_follower_reload: Instant::now(),
        };
        tokio::spawn(worker.run());
        ResolverHandle {
            name,
            wanted: Arc::new(wanted_tx),
            certificates: certs_rx,
            status: status_rx,
        }
    }
}

impl ResolverHandle {
    /// The resolver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the domain sets to keep certificates for (from routers' `tls.domains`,
    /// or the `Host` values of their rules).
    pub fn request(&self, wanted: Vec<Domains>) {
        self.wanted.send_replace(wanted);
    }

    /// The valid certificates: stored ones at start, then issued and renewed ones.
    pub fn certificates(&self) -> watch::Receiver<Arc<Vec<Certificate>>> {
        self.certificates.clone()
    }

    /// The state of every wanted domain set.
    pub fn status(&self) -> Vec<DomainStatus> {
        self.status.borrow().as_ref().clone()
    }

    /// Updates of [`ResolverHandle::status`], for waiting on progress.
    pub fn status_updates(&self) -> watch::Receiver<Arc<Vec<DomainStatus>>> {
        self.status.clone()
    }
}

/// A failure of one attempt.
#[derive(Debug, Clone)]
struct Failure {
    attempts: u32,
    last_error: String,
    retry_at: Option<Instant>,
    retry_at_wall: Option<SystemTime>,
}

impl Failure {
    fn next(
        previous: Option<&Failure>,
        error: &IssueError,
        settings: &ResolverSettings,
    ) -> Failure {
        let attempts = previous.map_or(0, |f| f.attempts).saturating_add(1);
        let delay = (!error.permanent).then(|| settings.retry.delay(attempts));
        Failure {
            attempts,
            last_error: error.to_string(),
            retry_at: delay.map(|d| Instant::now() + d),
            retry_at_wall: delay.map(|d| SystemTime::now() + d),
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| t <= now)
    }
}

/// Per wanted domain set bookkeeping.
#[derive(Debug, Default)]
struct Track {
    renew: bool,
    failure: Option<Failure>,
}

/// Why obtaining a certificate failed.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {detail}")]
struct IssueError {
    stage: &'static str,
    detail: String,
    /// Retrying the same request cannot succeed.
    permanent: bool,
}

impl IssueError {
    fn at<E: std::error::Error>(stage: &'static str) -> impl FnOnce(E) -> IssueError {
        move |error| IssueError {
            stage,
            detail: chain(&error),
            permanent: false,
        }
    }

    fn new(stage: &'static str, detail: impl Into<String>) -> IssueError {
        IssueError {
            stage,
            detail: detail.into(),
            permanent: false,
        }
    }
}

/// An error with its causes, so that "client error (Connect)" says what failed.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

struct Worker {
    settings: ResolverSettings,
    challenges: Challenges,
    storage: Arc<dyn Storage>,
    wanted_rx: watch::Receiver<Vec<Domains>>,
    leader_rx: Option<watch::Receiver<bool>>,
    /// Leadership once the leader channel is gone (or without one).
    leader_fixed: bool,
    certs_tx: watch::Sender<Arc<Vec<Certificate>>>,
    status_tx: watch::Sender<Arc<Vec<DomainStatus>>>,
    account: Option<Account>,
    /// Stored state; `None` until loaded, and nothing is saved before that.
    stored: Option<StoredState>,
    /// Stored state changed but the last save failed.
    dirty: bool,
    load_failure: Option<Failure>,
    /// Wanted domain sets, normalized.
    wanted: Vec<Domains>,
    tracks: HashMap<Domains, Track>,
    next_renew_check: Instant,
    /// When a follower (not leader) next re-reads what the leader stored.
    next_follower_reload: Instant,
}

/// Lower-cased main first, then SANs, without duplicates; `None` when empty.
fn normalize(domains: &Domains) -> Option<Domains> {
    let mut names = domains.names().into_iter();
    let main = names.next()?;
    Some(Domains {
        main,
        sans: names.collect(),
    })
}

impl Worker {
    async fn run(mut self) {
        tracing::info!(resolver = %self.settings.name, ca = %self.settings.ca_server, "ACME resolver started");
        loop {
            self.step().await;
            let wake = self.next_wake();
            tokio::select! {
                changed = self.wanted_rx.changed() => {
                    if changed.is_err() {
                        tracing::debug!(resolver = %self.settings.name, "all handles dropped; resolver stops");
                        return;
                    }
                    self.update_wanted();
                }
                became_leader = leader_change(&mut self.leader_rx) => {
                    match became_leader {
                        Some(true) => {
                            // Another replica may have written while we were not leader.
                            self.stored = None;
                            self.account = None;
                            self.next_renew_check = Instant::now();
                        }
                        Some(false) => {}
                        None => {
                            self.leader_fixed = false;
                            self.leader_rx = None;
                        }
                    }
                }
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// Not leader while another replica may be: storage changes under this resolver.
    fn is_follower(&self) -> bool {
        self.leader_rx.as_ref().is_some_and(|rx| !*rx.borrow())
    }

    fn is_leader(&self) -> bool {
        match &self.leader_rx {
            Some(rx) => *rx.borrow(),
            None => self.leader_fixed,
        }
    }

    fn update_wanted(&mut self) {
        let mut wanted: Vec<Domains> = Vec::new();
        for domains in self.wanted_rx.borrow_and_update().iter() {
            match normalize(domains) {
                Some(d) if !wanted.contains(&d) => wanted.push(d),
                Some(_) => {}
                None => {
                    tracing::warn!(resolver = %self.settings.name, "ignoring a domain set without names")
                }
            }
        }
        let now = std::time::SystemTime::now();
        let mut tracks = HashMap::new();
        for domains in &wanted {
            let track = self.tracks.remove(domains).unwrap_or_else(|| Track {
                // A newly wanted set with a stored certificate is checked for renewal at once.
                renew: self
                    .covering(domains)
                    .is_some_and(|c| c.remaining(now) < self.settings.renew_before),
                failure: None,
            });
            tracks.insert(domains.clone(), track);
        }
        self.tracks = tracks;
        self.wanted = wanted;
        self.publish_status();
    }

    /// The stored, unexpired certificate serving `wanted` the longest.
    fn covering(&self, wanted: &Domains) -> Option<&Certificate> {
        let now = SystemTime::now();
        self.stored
            .as_ref()?
            .certificates
            .iter()
            .filter(|c| c.not_after > now && c.domains.covers(wanted))
            .max_by_key(|c| c.not_after)
    }

    /// Missing, or due for renewal: flagged by a renewal check and still expiring
    /// soon (another set's fresh certificate may cover it by now).
    fn needs_work(&self, domains: &Domains) -> bool {
        match self.covering(domains) {
            None => true,
            Some(cert) => {
                self.tracks.get(domains).is_some_and(|t| t.renew)
                    && cert.remaining(SystemTime::now()) < self.settings.renew_before
            }
        }
    }

    async fn step(&mut self) {
        // A follower serves what the leader stores: re-read it now and then.
        if self.is_follower() && Instant::now() >= self.next_follower_reload {
            self.next_follower_reload = Instant::now() + self.settings.follower_refresh;
            if !self.dirty {
                self.stored = None;
            }
        }
        if self.stored.is_none() && !self.load().await {
            self.publish_status();
            return;
        }
        if self.dirty {
            self.save().await;
        }
        let now = Instant::now();
        if now >= self.next_renew_check {
            self.next_renew_check = now + self.settings.renew_interval;
            let wall = SystemTime::now();
            for domains in self.wanted.clone() {
                let due = self
                    .covering(&domains)
                    .is_some_and(|c| c.remaining(wall) < self.settings.renew_before);
                if let Some(track) = self.tracks.get_mut(&domains) {
                    track.renew |= due;
                }
            }
        }
        self.publish_certificates();
        self.publish_status();
        if !self.is_leader() {
            return;
        }
        for domains in self.wanted.clone() {
            if !self.needs_work(&domains) {
                continue;
            }
            let track = self.tracks.entry(domains.clone()).or_default();
            if track
                .failure
                .as_ref()
                .is_some_and(|f| !f.due(Instant::now()))
            {
                continue;
            }
            if let Some(failure) = track.failure.as_mut() {
                // Shown as pending while the retry runs.
                failure.retry_at = None;
            }
            self.attempt(domains).await;
        }
    }

    async fn attempt(&mut self, domains: Domains) {
        let started = Instant::now();
        tracing::info!(resolver = %self.settings.name, domains = %domains.names().join(","), "obtaining certificate");
        self.publish_status_pending(&domains);
        match self.issue(&domains).await {
            Ok(cert) => {
                tracing::info!(resolver = %self.settings.name, domains = %domains.names().join(","),
                    elapsed_ms = started.elapsed().as_millis() as u64, "certificate obtained");
                if let Some(stored) = self.stored.as_mut() {
                    let now = SystemTime::now();
                    stored.certificates.retain(|c| {
                        c.not_after > now && normalize(&c.domains).as_ref() != Some(&domains)
                    });
                    stored.certificates.push(cert);
                }
                if let Some(track) = self.tracks.get_mut(&domains) {
                    track.renew = false;
                    track.failure = None;
                }
                self.dirty = true;
                self.save().await;
                self.publish_certificates();
            }
            Err(error) => {
                let track = self.tracks.entry(domains.clone()).or_default();
                let failure = Failure::next(track.failure.as_ref(), &error, &self.settings);
                tracing::warn!(resolver = %self.settings.name, domains = %domains.names().join(","),
                    attempts = failure.attempts, retry_in_ms = failure.retry_at.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                    error = %error, "cannot obtain certificate");
                track.failure = Some(failure);
            }
        }
        self.publish_status();
    }

    async fn load(&mut self) -> bool {
        if self
            .load_failure
            .as_ref()
            .is_some_and(|f| !f.due(Instant::now()))
        {
            return false;
        }
        match self.storage.load(&self.settings.name).await {
            Ok(state) => {
                tracing::info!(resolver = %self.settings.name, certificates = state.certificates.len(), "stored state loaded");
                self.stored = Some(state);
                self.load_failure = None;
                self.publish_certificates();
                // Stored certificates may cover wanted sets that were marked missing.
                let now = SystemTime::now();
                for domains in self.wanted.clone() {
                    let due = self
                        .covering(&domains)
                        .is_some_and(|c| c.remaining(now) < self.settings.renew_before);
                    if let Some(track) = self.tracks.get_mut(&domains) {
                        track.renew |= due;
                    }
                }
                true
            }
            Err(e) => {
                let error = IssueError::new("loading stored certificates", chain(&e));
                let failure = Failure::next(self.load_failure.as_ref(), &error, &self.settings);
                tracing::error!(resolver = %self.settings.name, error = %error, attempts = failure.attempts, "cannot load stored state");
                self.load_failure = Some(failure);
                false
            }
        }
    }

    async fn save(&mut self) {
        let Some(stored) = self.stored.as_ref() else {
            return;
        };
        match self.storage.save(&self.settings.name, stored).await {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(resolver = %self.settings.name, error = %chain(&e), "cannot save certificates; will retry")
            }
        }
    }

    fn publish_certificates(&self) {
        let now = SystemTime::now();
        let valid: Vec<Certificate> = self
            .stored
            .as_ref()
            .map(|s| {
                s.certificates
                    .iter()
                    .filter(|c| c.not_after > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.certs_tx.send_if_modified(|current| {
            if current.as_ref() == &valid {
                false
            } else {
                *current = Arc::new(valid);
                true
            }
        });
    }

    fn status_of(&self, domains: &Domains) -> DomainStatus {
        let valid_until = self.covering(domains).map(|c| c.not_after);
        let failure = self
            .tracks
            .get(domains)
            .and_then(|t| t.failure.as_ref())
            .or(self.load_failure.as_ref());
        let state = match failure {
            Some(f) if f.retry_at.is_some() || f.retry_at_wall.is_none() => DomainState::Failing {
                last_error: f.last_error.clone(),
                attempts: f.attempts,
                next_retry: f.retry_at_wall,
            },
            _ if self.stored.is_none() || self.needs_work(domains) => DomainState::Pending,
            _ => DomainState::Valid,
        };
        DomainStatus {
            domains: domains.clone(),
            valid_until,
            state,
        }
    }

    fn publish_status(&self) {
        let status: Vec<DomainStatus> = self.wanted.iter().map(|d| self.status_of(d)).collect();
        self.status_tx.send_if_modified(|current| {
            if current.as_ref() == &status {
                false
            } else {
                *current = Arc::new(status);
                true
            }
        });
    }

    fn publish_status_pending(&self, domains: &Domains) {
        let mut status: Vec<DomainStatus> = self.wanted.iter().map(|d| self.status_of(d)).collect();
        for s in status.iter_mut().filter(|s| &s.domains == domains) {
            s.state = DomainState::Pending;
        }
        self.status_tx.send_replace(Arc::new(status));
    }

    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut wake: Option<Instant> = None;
        let mut consider = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if self.stored.is_none() {
            if let Some(t) = self.load_failure.as_ref().and_then(|f| f.retry_at) {
                consider(t);
            }
            return wake;
        }
        if self.dirty {
            consider(now + self.settings.retry.max.min(Duration::from_secs(60)));
        }
        if self.is_follower() {
            consider(self.next_follower_reload);
        }
        consider(self.next_renew_check);
        // Expiring certificates leave the published set (and may need a new order).
        if let Some(stored) = &self.stored {
            for cert in stored.certificates.iter().filter(|c| c.not_after > wall) {
                consider(now + cert.remaining(wall));
            }
        }
        if self.is_leader() {
            for domains in &self.wanted {
                if !self.needs_work(domains) {
                    continue;
                }
                match self.tracks.get(domains).and_then(|t| t.failure.as_ref()) {
                    Some(f) => {
                        if let Some(t) = f.retry_at {
                            consider(t);
                        }
                    }
                    None => consider(now),
                }
            }
        }
        wake
    }

    async fn account(&mut self) -> Result<Account, IssueError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let settings = &self.settings;
        let http = || -> Result<Box<AcmeHttpClient>, IssueError> {
            Ok(Box::new(
                AcmeHttpClient::new(settings).map_err(IssueError::at("HTTP client"))?,
            ))
        };
        let stored = self.stored.as_ref().and_then(|s| s.account.clone());
        if let Some(stored) = stored.filter(|a| same_host(&a.uri, &settings.ca_server)) {
            let key = rustls_pki_types::PrivatePkcs8KeyDer::from(stored.private_key_der.clone());
            if instant_acme::Key::from_pkcs8_der(key.clone_key()).is_ok() {
                let account = Account::builder_with_http(http()?)
                    .from_parts(stored.uri.clone(), key, settings.ca_server.clone())
                    .await
                    .map_err(IssueError::at("contacting the ACME server"))?;
                self.account = Some(account.clone());
                return Ok(account);
            }
            // Traefik's accounts have RSA keys, which instant-acme cannot sign with.
            tracing::info!(resolver = %settings.name, "stored account key is not a P-256 key; registering a new account");
        }

        let contact = format!("mailto:{}", settings.email);
        let contacts: Vec<&str> = if settings.email.is_empty() {
            Vec::new()
        } else {
            vec![contact.as_str()]
        };
        let eab = settings
            .eab
            .as_ref()
            .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
        let (account, credentials) = Account::builder_with_http(http()?)
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                settings.ca_server.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(IssueError::at("registering the ACME account"))?;
        tracing::info!(resolver = %settings.name, account = %account.id(), "ACME account registered");
        let stored_account = StoredAccount {
            email: settings.email.clone(),
            uri: account.id().to_owned(),
            body: serde_json::json!({"status": "valid", "contact": contacts}),
            private_key_der: credentials.private_key().secret_pkcs8_der().to_vec(),
            key_type: settings.key_type.lego_name().to_owned(),
        };
        if let Some(stored) = self.stored.as_mut() {
            stored.account = Some(stored_account);
            self.dirty = true;
        }
        self.save().await;
        self.account = Some(account.clone());
        Ok(account)
    }

    async fn issue(&mut self, domains: &Domains) -> Result<Certificate, IssueError> {
        let names = domains.names();
        if let Some(wildcard) = names.iter().find(|n| n.starts_with("*.")) {
            return Err(IssueError {
                stage: "ordering",
                detail: format!(
                    "{wildcard} is a wildcard, which needs a DNS-01 challenge; Sluice supports HTTP-01 and TLS-ALPN-01 only"
                ),
                permanent: true,
            });
        }
        let account = self.account().await?;
        let result = self.order(&account, domains, &names).await;
        if let Err(error) = &result {
            // Rebuild the client on the next attempt (fresh directory and nonces).
            self.account = None;
            // A server that lost the account (a reset CA, a deactivated account)
            // needs a new registration rather than the stored credentials.
            if error.detail.contains("accountDoesNotExist") {
                if let Some(stored) = self.stored.as_mut() {
                    stored.account = None;
                }
            }
        }
        result
    }

    async fn order(
        &self,
        account: &Account,
        domains: &Domains,
        names: &[String],
    ) -> Result<Certificate, IssueError> {
        let identifiers: Vec<Identifier> = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => Identifier::Dns(n.clone()),
            })
            .collect();
        let mut new_order = NewOrder::new(&identifiers);
        if let Some(profile) = &self.settings.profile {
            new_order = new_order.profile(profile);
        }
        let mut order = account
            .new_order(&new_order)
            .await
            .map_err(IssueError::at("creating the order"))?;

        let challenge_type = match self.settings.challenge {
            ChallengeKind::Http01 { .. } => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut answers = PublishedAnswers {
            challenges: self.challenges.clone(),
            http_tokens: Vec::new(),
            tls_names: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(IssueError::at("fetching authorizations"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(IssueError::new(
                        "authorizing",
                        format!("authorization is {other:?}"),
                    ))
                }
            }
            let identifier = authz.identifier().to_string();
            let mut challenge = authz.challenge(challenge_type.clone()).ok_or_else(|| {
                IssueError::new(
                    "authorizing",
                    format!(
                        "the ACME server offers no {challenge_type:?} challenge for {identifier}"
                    ),
                )
            })?;
            let key_authorization = challenge.key_authorization();
            match &self.settings.challenge {
                ChallengeKind::Http01 { delay, .. } => {
                    self.challenges
                        .publish_http01(&challenge.token, key_authorization.as_str());
                    answers.http_tokens.push(challenge.token.clone());
                    if !delay.is_zero() {
                        tokio::time::sleep(*delay).await;
                    }
                }
                ChallengeKind::TlsAlpn01 => {
                    self.challenges
                        .publish_tls_alpn01(&identifier, key_authorization.digest().as_ref())
                        .map_err(IssueError::at("authorizing"))?;
                    answers.tls_names.push(identifier.clone());
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(IssueError::at("starting validation"))?;
        }

        let retries = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(IssueError::at("waiting for validation"))?;
        if status != OrderStatus::Ready {
            let mut reasons = Vec::new();
            let mut authorizations = order.authorizations();
            while let Some(Ok(mut authz)) = authorizations.next().await {
                if let Ok(state) = authz.refresh().await {
                    for c in state.challenges.iter().filter_map(|c| c.error.as_ref()) {
                        reasons.push(format!("{}: {c}", state.identifier()));
                    }
                }
            }
            return Err(IssueError::new(
                "validation",
                format!("order is {status:?}: {}", reasons.join("; ")),
            ));
        }
        drop(answers);

        let key_type = self.settings.key_type;
        let main = names.first().cloned().unwrap_or_default();
        let csr_names = names.to_vec();
        let (csr, key_pem) = tokio::task::spawn_blocking(move || csr(key_type, &main, csr_names))
            .await
            .map_err(IssueError::at("generating the key"))?
            .map_err(IssueError::at("generating the key"))?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(IssueError::at("finalizing the order"))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(IssueError::at("downloading the certificate"))?;
        Certificate::from_pem(domains.clone(), chain_pem, key_pem)
            .map_err(IssueError::at("reading the issued certificate"))
    }
}

/// Challenge answers published for one order, withdrawn when the order is
/// settled or abandoned.
struct PublishedAnswers {
    challenges: Challenges,
    http_tokens: Vec<String>,
    tls_names: Vec<String>,
}

impl Drop for PublishedAnswers {
    fn drop(&mut self) {
        for token in &self.http_tokens {
            self.challenges.withdraw_http01(token);
        }
        for name in &self.tls_names {
            self.challenges.withdraw_tls_alpn01(name);
        }
    }
}

/// A fresh private key and a CSR for `names`; returns (CSR DER, key PEM).
fn csr(
    key_type: KeyType,
    main: &str,
    names: Vec<String>,
) -> Result<(Vec<u8>, String), rcgen::Error> {
    let key = match key_type {
        KeyType::Ec256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Ec384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
        }
        KeyType::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)?
        }
    };
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    // A common name is limited to 64 characters; longer names live only in the SANs.
    if main.len() <= 64 {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, main);
    }
    let request = params.serialize_request(&key)?;
    Ok((request.der().to_vec(), key.serialize_pem()))
}

/// Traefik keeps a stored account only while its URL is on the configured CA's host.
fn same_host(account_uri: &str, ca_server: &str) -> bool {
    let host = |url: &str| {
        url.parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
    };
    matches!((host(account_uri), host(ca_server)), (Some(a), Some(b)) if a == b)
}

/// Resolves with the new leadership value, or `None` once the channel is closed;
/// never resolves without a channel.
async fn leader_change(rx: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_host_check() {
        assert!(same_host(
            "https://acme-v02.api.letsencrypt.org/acme/acct/1",
            "https://acme-v02.api.letsencrypt.org/directory"
        ));
        assert!(!same_host(
            "https://acme-staging-v02.api.letsencrypt.org/acme/acct/1",
            "https://acme-v02.api.letsencrypt.org/directory"
        ));
    }

    #[test]
    fn csr_for_each_key_type() {
        for key_type in [KeyType::Ec256, KeyType::Ec384, KeyType::Rsa2048] {
            let (der, pem) =
                csr(key_type, "a.test", vec!["a.test".into(), "b.test".into()]).unwrap();
            assert!(!der.is_empty());
            assert!(pem.contains("PRIVATE KEY"));
        }
    }
}
