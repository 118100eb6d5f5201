//! Rate limits: a token bucket per caller (its token, or its address without one); a
//! request that finds its bucket empty is answered 429 with how long to wait.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Callers kept at most; past that, the buckets idle longest (full again anyway) go.
const MAX_CALLERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by caller.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: parking_lot::Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` requests a second on average, `burst` at once; a rate of 0 lets everything by.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `caller`'s bucket, or says how long until one is there.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        self.take_at(caller, Instant::now())
    }

    fn take_at(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            let full_after = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, b| now.duration_since(b.at) < full_after);
        }
        let b = buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = RateLimiter::new(10.0, 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.take_at("a", t0).is_ok());
        }
        let wait = l.take_at("a", t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // another caller has its own bucket
        assert!(l.take_at("b", t0).is_ok());
        // 100 ms later one more request is there
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.take_at("a", t1).is_ok());
        assert!(l.take_at("a", t1).is_err());
        assert!(RateLimiter::new(0.0, 0.0).take_at("a", t0).is_ok());
    }
}
