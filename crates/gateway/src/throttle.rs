//! A per-client-address limit on failed token lookups. Each address (an IPv4 address, or an IPv6
//! /64, which one client usually holds whole) has a bucket of `per_minute` failures that refills
//! continuously; while it is empty, that address's tokens that the cache does not already know are
//! refused with 429 before the store is read. A flood of junk tokens from one place thus costs the
//! store at most `per_minute` reads a minute, and other tenants' lookups are not slowed by it.
//!
//! Per replica and in memory: it protects this replica's store reads, and needs nothing shared.
//! Behind a load balancer every client has the balancer's address, so the limit should then be
//! raised (or the balancer should do this job).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most addresses tracked; beyond it full buckets are forgotten, and if none was full, all.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct FailureThrottle {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, as of `at`.
    left: f64,
    at: Instant,
}

impl FailureThrottle {
    /// `per_minute` failures per address and minute; 0 turns the throttle off.
    pub(crate) fn new(per_minute: u32) -> Self {
        FailureThrottle {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let capacity = f64::from(self.per_minute);
        (bucket.left + now.duration_since(bucket.at).as_secs_f64() * self.rate_per_sec())
            .min(capacity)
    }

    /// `Err(retry after)` when `addr` has used up its failures.
    pub(crate) fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let key = key(addr);
        let buckets = self.buckets.lock().expect("throttle lock");
        let Some(bucket) = buckets.get(&key) else {
            return Ok(());
        };
        let left = self.refilled(*bucket, Instant::now());
        if left >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - left) / self.rate_per_sec()))
        }
    }

    /// Counts one failed token from `addr`.
    pub(crate) fn failed(&self, addr: IpAddr) {
        if self.per_minute == 0 {
            return;
        }
        let key = key(addr);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("throttle lock");
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&key) {
            let capacity = f64::from(self.per_minute);
            buckets.retain(|_, b| self.refilled(*b, now) < capacity);
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let left = match buckets.get(&key) {
            Some(bucket) => self.refilled(*bucket, now),
            None => f64::from(self.per_minute),
        };
        buckets.insert(
            key,
            Bucket {
                left: (left - 1.0).max(0.0),
                at: now,
            },
        );
    }
}

/// The address a bucket belongs to: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_and_others_are_not() {
        let throttle = FailureThrottle::new(3);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let b: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(a).is_ok());
            throttle.failed(a);
        }
        let retry = throttle.check(same_64).unwrap_err();
        assert!(
            retry > Duration::from_secs(15) && retry <= Duration::from_secs(20),
            "{retry:?}"
        );
        assert!(throttle.check(b).is_ok());
        assert!(FailureThrottle::new(0).check(a).is_ok());
    }
}
