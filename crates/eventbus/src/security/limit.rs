//! Abuse limits kept in memory, per process: publish rates per key (a token bucket) and open
//! streams per key and per tenant (counters released by a guard).
//!
//! Both are per process: with N processes behind a load balancer, a key may reach N times its
//! limit. Both maps hold an entry only while it matters (a bucket until it is full again, a
//! counter while it is above zero), so memory follows the active keys, not every key ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Publish rates: a bucket of `rate` tokens per key, refilled at `rate` per second.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets are swept when the map grows past this many entries.
const SWEEP_AT: usize = 4096;

impl RateLimiter {
    /// Takes one token of `key`'s bucket (`rate` per second, at most `rate` saved); when it is
    /// empty, answers how long until the next token.
    pub fn check(&self, key: &str, rate: u32, now: Instant) -> Result<(), Duration> {
        if rate == 0 {
            return Ok(());
        }
        let rate = f64::from(rate);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= SWEEP_AT {
            // Full buckets carry no state: drop them.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < rate);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refilled).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// Open streams per key and per tenant.
#[derive(Debug, Default)]
pub struct ConnectionLimiter {
    counts: Mutex<HashMap<String, usize>>,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionLimit {
    /// The key (or token subject) has this many streams open.
    #[error("this key already has {0} open streams, its limit")]
    Key(usize),
    /// The tenant has this many streams open.
    #[error("this tenant already has {0} open streams, its limit")]
    Tenant(usize),
}

impl ConnectionLimiter {
    /// Counts one more stream for `key` (limit `per_key`) and its `tenant` (limit
    /// `per_tenant`), or refuses without counting. The guard uncounts it when dropped. A limit
    /// of 0 means none.
    pub fn acquire(
        self: &Arc<Self>,
        key: &str,
        per_key: usize,
        tenant: Option<&str>,
        per_tenant: usize,
    ) -> Result<ConnectionGuard, ConnectionLimit> {
        let key_slot = format!("k:{key}");
        let tenant_slot = tenant.map(|t| format!("t:{t}"));
        let mut counts = self.counts.lock().expect("connection limiter lock");
        let open = counts.get(&key_slot).copied().unwrap_or(0);
        if per_key > 0 && open >= per_key {
            return Err(ConnectionLimit::Key(open));
        }
        if let Some(slot) = &tenant_slot {
            let open = counts.get(slot).copied().unwrap_or(0);
            if per_tenant > 0 && open >= per_tenant {
                return Err(ConnectionLimit::Tenant(open));
            }
        }
        let mut slots = vec![key_slot];
        slots.extend(tenant_slot);
        for slot in &slots {
            *counts.entry(slot.clone()).or_insert(0) += 1;
        }
        Ok(ConnectionGuard {
            limiter: self.clone(),
            slots,
        })
    }

    /// Streams open for `key`.
    pub fn open_for_key(&self, key: &str) -> usize {
        let counts = self.counts.lock().expect("connection limiter lock");
        counts.get(&format!("k:{key}")).copied().unwrap_or(0)
    }
}

/// One counted stream; uncounted on drop.
#[derive(Debug)]
pub struct ConnectionGuard {
    limiter: Arc<ConnectionLimiter>,
    slots: Vec<String>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock().expect("connection limiter lock");
        for slot in &self.slots {
            if let Some(n) = counts.get_mut(slot) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_then_refills() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.check("a", 5, t0).unwrap();
        }
        let wait = limiter.check("a", 5, t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        limiter
            .check("b", 5, t0)
            .expect("another key has its own bucket");
        limiter
            .check("a", 5, t0 + Duration::from_millis(200))
            .expect("one token back after 1/rate seconds");
        assert!(
            limiter
                .check("a", 5, t0 + Duration::from_millis(200))
                .is_err()
        );
        limiter.check("a", 0, t0).expect("rate 0 is no limit");
    }

    #[test]
    fn connections_count_per_key_and_tenant_until_dropped() {
        let limiter = Arc::new(ConnectionLimiter::default());
        let a1 = limiter.acquire("k1", 2, Some("t"), 3).unwrap();
        let _a2 = limiter.acquire("k1", 2, Some("t"), 3).unwrap();
        assert_eq!(
            limiter.acquire("k1", 2, Some("t"), 3).unwrap_err(),
            ConnectionLimit::Key(2)
        );
        let _b1 = limiter.acquire("k2", 2, Some("t"), 3).unwrap();
        assert_eq!(
            limiter.acquire("k2", 2, Some("t"), 3).unwrap_err(),
            ConnectionLimit::Tenant(3)
        );
        limiter
            .acquire("k3", 2, Some("u"), 3)
            .expect("another tenant");
        drop(a1);
        assert_eq!(limiter.open_for_key("k1"), 1);
        limiter
            .acquire("k2", 2, Some("t"), 3)
            .expect("a slot was freed");
    }
}
