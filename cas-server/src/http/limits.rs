//! Request rate limits: token buckets per client IP and per token (governor),
//! and the cap on uploads in flight.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

/// The limits of one server.
pub struct Limits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Option<DefaultKeyedRateLimiter<String>>,
    uploads: Arc<Semaphore>,
    /// Made once: creating a clock calibrates it (CPUID), far too slow per request.
    clock: DefaultClock,
    /// Longest stall between two chunks of a request body.
    pub body_idle: Duration,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rps: Option<u32>, burst: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rps = NonZeroU32::new(rps?)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rps);
    Some(RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst)))
}

impl Limits {
    /// Limits from the `[limits]` section.
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            per_ip: limiter(config.per_ip_rps, config.burst),
            per_token: limiter(config.per_token_rps, config.burst),
            uploads: Arc::new(Semaphore::new(config.max_inflight_uploads.max(1))),
            clock: DefaultClock::default(),
            body_idle: Duration::from_secs(config.body_idle_timeout_secs.max(1)),
        }
    }

    /// Takes one request from the caller's buckets; `Err(wait)` when over the rate.
    pub fn check_rate(&self, ip: IpAddr, token_name: Option<&str>) -> Result<(), Duration> {
        if self.per_ip.is_none() && self.per_token.is_none() {
            return Ok(());
        }
        let now = self.clock.now();
        if let Some(l) = &self.per_ip {
            l.check_key(&ip).map_err(|nu| nu.wait_time_from(now))?;
        }
        if let (Some(l), Some(name)) = (&self.per_token, token_name) {
            l.check_key(&name.to_string()).map_err(|nu| nu.wait_time_from(now))?;
        }
        Ok(())
    }

    /// A slot for one upload, or `None` when the cap is reached.
    pub fn upload_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.uploads.clone().try_acquire_owned().ok()
    }

    /// Drops idle entries of the keyed limiters (call now and then).
    pub fn housekeeping(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
        }
        if let Some(l) = &self.per_token {
            l.retain_recent();
        }
    }
}
