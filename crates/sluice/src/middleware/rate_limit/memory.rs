//! In-memory buckets, one per source, in a bounded map split into shards so that requests
//! from different sources rarely wait on the same lock.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::{Bucket, Clock, Decision, Limits};

/// Sources remembered at most, as Traefik's limiter (65536).
const MAX_SOURCES: usize = 65_536;
const SHARDS: usize = 16;

/// Buckets kept in this process.
#[derive(Debug)]
pub struct MemoryLimiter {
    limits: Limits,
    clock: Arc<dyn Clock>,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl MemoryLimiter {
    pub fn new(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        Self {
            limits,
            clock,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token from `source`'s bucket.
    pub fn take(&self, source: &str) -> Decision {
        if !self.limits.rate.is_finite() {
            return Decision::Proceed(std::time::Duration::ZERO);
        }
        let now = self.clock.now();
        let mut hasher = DefaultHasher::new();
        source.hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() as usize) % SHARDS];
        // A poisoned lock only means another request panicked mid-update; the map is still
        // usable, so carry on with it.
        let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(source) {
            return bucket.take(&self.limits, now);
        }
        if buckets.len() >= MAX_SOURCES / SHARDS {
            self.evict(&mut buckets, now);
        }
        let mut bucket = Bucket::full(&self.limits, now);
        let decision = bucket.take(&self.limits, now);
        buckets.insert(source.to_owned(), bucket);
        decision
    }

    /// Makes room in a full shard: first forgets buckets that have refilled completely (keeping
    /// them would change nothing), and if none has, the one idle the longest.
    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: std::time::Duration) {
        buckets.retain(|_, b| !b.is_full_at(&self.limits, now));
        if buckets.len() >= MAX_SOURCES / SHARDS {
            if let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone())
            {
                buckets.remove(&oldest);
            }
        }
    }

    /// Number of sources remembered (tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ManualClock;
    use super::*;

    #[test]
    fn sources_have_their_own_buckets() {
        let clock = Arc::new(ManualClock::default());
        let limiter = MemoryLimiter::new(Limits::new(1, Duration::from_secs(1), 2), clock.clone());
        assert!(matches!(limiter.take("a"), Decision::Proceed(_)));
        assert!(matches!(limiter.take("a"), Decision::Proceed(_)));
        assert!(matches!(limiter.take("a"), Decision::Refuse(_)));
        assert!(matches!(limiter.take("b"), Decision::Proceed(_)));
        clock.advance(Duration::from_secs(1));
        assert!(matches!(limiter.take("a"), Decision::Proceed(_)));
        assert!(matches!(limiter.take("a"), Decision::Refuse(_)));
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn the_map_stays_bounded() {
        let clock = Arc::new(ManualClock::default());
        let limiter = MemoryLimiter::new(Limits::new(1, Duration::from_secs(3600), 1), clock);
        for i in 0..(MAX_SOURCES + 100) {
            limiter.take(&format!("source-{i}"));
        }
        assert!(limiter.len() <= MAX_SOURCES, "{}", limiter.len());
    }
}
