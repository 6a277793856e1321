//! Per-app, per-method call limits (code 7 past them).
//!
//! One node over SQLite keeps them in memory: a GCRA limiter per (app, method, configured rate),
//! so a changed rate takes effect at once and bursts are smoothed. Nodes sharing a PostgreSQL
//! database count calls in it instead: fixed one-second windows per (app, method), so that
//! together they allow at most the configured number of calls in any wall-clock second.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::args;
use crate::store::{Store, StoreError};

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

/// Counts one call in the shared window of the current second; `Err(1)` past the limit.
pub async fn check_shared(
    store: &Store,
    app_key: &str,
    method: &str,
    per_second: u32,
    now_ms: i64,
) -> Result<Result<(), u64>, StoreError> {
    let (app_key, method) = (app_key.to_string(), method.to_string());
    let window = now_ms.div_euclid(1000);
    let calls = store
        .write(move |tx| {
            tx.execute(
                "DELETE FROM rate_counters WHERE app_key = ? AND method = ? AND window_start < ?",
                args![app_key.as_str(), method.as_str(), window - 1],
            )?;
            let row = tx.query_opt(
                "INSERT INTO rate_counters (app_key, method, window_start, calls) VALUES (?, ?, ?, 1) \
                 ON CONFLICT (app_key, method, window_start) DO UPDATE SET calls = rate_counters.calls + 1 RETURNING calls",
                args![app_key.as_str(), method.as_str(), window],
            )?;
            Ok(row.map_or(1, |r| r.i64(0)))
        })
        .await?;
    Ok(if calls > i64::from(per_second) {
        Err(1)
    } else {
        Ok(())
    })
}
