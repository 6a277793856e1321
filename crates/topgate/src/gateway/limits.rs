//! Per-app, per-method call limits (code 7 past them). Limits live in this node's memory: a
//! GCRA limiter per (app, method, configured rate), so a changed rate takes effect at once.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

#[derive(Default)]
pub struct RateLimits {
    limiters: Mutex<HashMap<(String, String, u32), Arc<DefaultDirectRateLimiter>>>,
}

impl RateLimits {
    /// Takes one call from the budget; `Err(seconds)` says how long until the next is allowed.
    pub fn check(&self, app_key: &str, method: &str, per_second: u32) -> Result<(), u64> {
        let Some(rate) = NonZeroU32::new(per_second) else {
            return Ok(());
        };
        let limiter = {
            let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                map.entry((app_key.to_string(), method.to_string(), per_second))
                    .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(rate)))),
            )
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs().max(1)
        })
    }
}
