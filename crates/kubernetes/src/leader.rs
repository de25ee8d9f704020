//! Leader election through a `coordination.k8s.io/v1` Lease, for the work only one replica may
//! do (ACME orders and renewals, status updates).
//!
//! Every replica reads the Lease each `retry_period`. The holder renews `renewTime`; another
//! replica takes the Lease over only when it has seen the same record unchanged for a whole
//! `leaseDurationSeconds` (judged on its own clock, so clock skew between nodes does not
//! matter). Every write carries the `resourceVersion` that was read, so two candidates racing
//! for an expired Lease cannot both win: the API server rejects the second write with 409.
//! A leader that cannot renew within the lease duration steps down on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which Lease and who we are.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name, usually).
    pub identity: String,
    /// How long a record stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the Lease is read and renewed.
    pub retry_period: Duration,
}

impl Election {
    /// An election with client-go's usual timing (15 s lease, retry every 2 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Election {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A running candidate. Dropping it stops campaigning without releasing the Lease (as a crash
/// would); [`Candidate::release`] steps down cleanly.
#[derive(Debug)]
pub struct Candidate {
    leader: watch::Receiver<bool>,
    stop: Arc<tokio::sync::Notify>,
    task: Option<JoinHandle<()>>,
}

impl Candidate {
    /// Starts campaigning for the Lease.
    pub fn start(client: kube::Client, election: Election) -> Candidate {
        let (tx, leader) = watch::channel(false);
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(campaign(client, election, tx, stop.clone()));
        Candidate {
            leader,
            stop,
            task: Some(task),
        }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Stops campaigning and, if leading, gives the Lease up so another replica takes over at
    /// once instead of after the lease duration.
    pub async fn release(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The last record seen and when it last changed, on our clock.
struct Observed {
    holder: String,
    renew: Option<MicroTime>,
    at: Instant,
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One round's outcome.
enum Round {
    Leading,
    Following,
}

async fn campaign(
    client: kube::Client,
    election: Election,
    tx: watch::Sender<bool>,
    stop: Arc<tokio::sync::Notify>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        // Bounded, as client-go's renew deadline: the client retries some failures for long.
        let deadline = election.lease_duration * 2 / 3;
        let round = tokio::time::timeout(
            deadline,
            try_acquire_or_renew(&api, &election, &mut observed),
        )
        .await
        .unwrap_or_else(|_| Err(RoundError::Timeout(deadline)));
        match round {
            Ok(Round::Leading) => {
                last_renewed = Some(Instant::now());
                set(&tx, true, &election);
            }
            Ok(Round::Following) => {
                last_renewed = None;
                set(&tx, false, &election);
            }
            Err(error) => {
                tracing::warn!(lease = %election.name, %error, "leader election: cannot reach the Lease");
                // Leading without a renewal for a whole lease duration: others may have taken
                // over, so stop acting as leader.
                if last_renewed.is_none_or(|at| at.elapsed() >= election.lease_duration) {
                    set(&tx, false, &election);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(election.retry_period) => {}
            _ = stop.notified() => {
                if *tx.borrow() {
                    if let Err(error) = release(&api, &election).await {
                        tracing::warn!(lease = %election.name, %error, "leader election: cannot release the Lease");
                    }
                }
                set(&tx, false, &election);
                return;
            }
        }
    }
}

fn set(tx: &watch::Sender<bool>, leading: bool, election: &Election) {
    if *tx.borrow() != leading {
        if leading {
            tracing::info!(lease = %election.name, identity = %election.identity, "became leader");
        } else {
            tracing::info!(lease = %election.name, identity = %election.identity, "not the leader");
        }
        tx.send_replace(leading);
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    election: &Election,
    observed: &mut Option<Observed>,
) -> Result<Round, RoundError> {
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.name.clone()),
                namespace: Some(election.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(seconds(election.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following),
            Err(error) => Err(error.into()),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renew = spec.renew_time.clone();
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew != renew);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew: renew.clone(),
            at: Instant::now(),
        });
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(election.lease_duration);
    let expired = observed
        .as_ref()
        .is_some_and(|o| o.at.elapsed() >= duration);
    let ours = holder == election.identity;
    if !ours && !holder.is_empty() && !expired {
        return Ok(Round::Following);
    }
    if !ours {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.holder_identity = Some(election.identity.clone());
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(seconds(election.lease_duration));
    // `lease.metadata.resource_version` is the one read: a concurrent writer makes this fail.
    match api
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(written) => {
            *observed = written.spec.map(|s| Observed {
                holder: s.holder_identity.unwrap_or_default(),
                renew: s.renew_time,
                at: Instant::now(),
            });
            Ok(Round::Leading)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following),
        Err(error) => Err(error.into()),
    }
}

/// Gives the Lease up: no holder, so the next candidate takes it at its next round.
async fn release(api: &Api<Lease>, election: &Election) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    api.replace(&election.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}
