//! Leader election and Secret storage against the fake API server.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_kubernetes::fake::FakeApi;
use sluice_kubernetes::leader::{Candidate, Election};
use sluice_kubernetes::secrets::{SecretError, SecretStore};

fn election(identity: &str) -> Election {
    Election {
        namespace: "sluice".into(),
        name: "sluice-leader".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        retry_period: Duration::from_millis(100),
    }
}

async fn wait_for(candidate: &Candidate, leading: bool, limit: Duration) {
    let mut rx = candidate.subscribe();
    tokio::time::timeout(limit, rx.wait_for(|l| *l == leading))
        .await
        .unwrap_or_else(|_| panic!("leader={leading} not reached within {limit:?}"))
        .expect("campaign running");
}

fn holder(fake: &FakeApi) -> String {
    fake.get("coordination.k8s.io/v1", "Lease", "sluice", "sluice-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn two_replicas_one_leader_and_takeover_when_it_stops_renewing() {
    let fake = FakeApi::start().await.unwrap();
    let a = Candidate::start(fake.client(), election("a"));
    wait_for(&a, true, Duration::from_secs(5)).await;
    let b = Candidate::start(fake.client(), election("b"));
    // b keeps following while a renews, for longer than a lease duration.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(a.is_leader() && !b.is_leader());
    }
    assert_eq!(holder(&fake), "a");
    let renewed = fake
        .get("coordination.k8s.io/v1", "Lease", "sluice", "sluice-leader")
        .unwrap();
    assert_eq!(renewed["spec"]["leaseDurationSeconds"], 2);
    // a stops renewing (crash): b takes over after the lease duration.
    drop(a);
    wait_for(&b, true, Duration::from_secs(5)).await;
    assert_eq!(holder(&fake), "b");
    let lease = fake
        .get("coordination.k8s.io/v1", "Lease", "sluice", "sluice-leader")
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let fake = FakeApi::start().await.unwrap();
    let a = Candidate::start(fake.client(), election("a"));
    wait_for(&a, true, Duration::from_secs(5)).await;
    let mut long = election("b");
    long.lease_duration = Duration::from_secs(60);
    let b = Candidate::start(fake.client(), long);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_leader());
    a.release().await;
    assert_eq!(holder(&fake), "");
    // Well before a's 2 s lease would have run out.
    wait_for(&b, true, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn leadership_is_dropped_when_the_api_is_unreachable() {
    let fake = FakeApi::start().await.unwrap();
    let a = Candidate::start(fake.client(), election("a"));
    wait_for(&a, true, Duration::from_secs(5)).await;
    fake.set_down(true);
    wait_for(&a, false, Duration::from_secs(5)).await;
    fake.set_down(false);
    wait_for(&a, true, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn secrets_are_written_with_optimistic_concurrency() {
    let fake = FakeApi::start().await.unwrap();
    let store = SecretStore::new(fake.client(), "sluice");
    assert_eq!(store.get("acme").await.unwrap(), None);
    let data = BTreeMap::from([("account.json".to_string(), b"{\"k\":1}".to_vec())]);
    let labels = BTreeMap::from([("app".to_string(), "sluice".to_string())]);
    let v1 = store
        .put("acme", data.clone(), labels.clone(), None)
        .await
        .unwrap();
    let read = store.get("acme").await.unwrap().expect("stored");
    assert_eq!(read.data, data);
    assert_eq!(read.resource_version, v1);
    // Creating again conflicts.
    assert!(matches!(
        store.put("acme", data.clone(), labels.clone(), None).await,
        Err(SecretError::Conflict { .. })
    ));
    let newer = BTreeMap::from([("account.json".to_string(), b"{\"k\":2}".to_vec())]);
    let v2 = store
        .put("acme", newer.clone(), labels.clone(), Some(&v1))
        .await
        .unwrap();
    assert_ne!(v1, v2);
    // A writer holding the old version loses.
    assert!(matches!(
        store.put("acme", data, labels, Some(&v1)).await,
        Err(SecretError::Conflict { .. })
    ));
    assert_eq!(store.get("acme").await.unwrap().unwrap().data, newer);
    let raw = fake.get("v1", "Secret", "sluice", "acme").unwrap();
    assert_eq!(raw["data"]["account.json"], "eyJrIjoyfQ==");
}
