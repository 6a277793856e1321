//! Per-app, per-method call limits (code 7 past them).
//!
//! Both backends count calls in fixed one-second windows of the wall clock per (app, method), so
//! that a limit of N means at most N calls in any clock second, as `--calls-per-second` and
//! docs/deployment.md say; a refused call is told the ban lasts 1 more second. One node over SQLite counts them in memory; nodes sharing a
//! PostgreSQL database count them in it, so that together they allow no more. A smoothing
//! limiter (GCRA) was used in memory before: with a burst of N it let up to 2N − 1 calls
//! through within one clock second, which contradicted the limit as documented.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::args;
use crate::store::{Store, StoreError};

/// The calls counted in the current window of each (app, method): its second, and how many.
#[derive(Default)]
pub struct RateLimits {
    windows: Mutex<HashMap<(String, String), (i64, u32)>>,
}

impl RateLimits {
    /// Counts one call in the window of `now_ms`'s second; `Err(1)` past `per_second` calls
    /// (the next window is at most a second away). A limit of 0 means unlimited.
    pub fn check(
        &self,
        app_key: &str,
        method: &str,
        per_second: u32,
        now_ms: i64,
    ) -> Result<(), u64> {
        if per_second == 0 {
            return Ok(());
        }
        let window = now_ms.div_euclid(1000);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let key = (app_key.to_string(), method.to_string());
        let (at, calls) = windows.entry(key).or_insert((window, 0));
        if *at != window {
            (*at, *calls) = (window, 0);
        }
        if *calls >= per_second {
            return Err(1);
        }
        *calls += 1;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_limit_and_the_next_second_starts_afresh() {
        let limits = RateLimits::default();
        let second = 1_700_000_000_000;
        for at in [0, 10, 500] {
            assert_eq!(limits.check("a", "m", 3, second + at), Ok(()));
        }
        // However the calls are spread over the second, the fourth is refused.
        assert_eq!(limits.check("a", "m", 3, second + 999), Err(1));
        // Another method and another app have their own windows.
        assert_eq!(limits.check("a", "other", 3, second + 999), Ok(()));
        assert_eq!(limits.check("b", "m", 3, second + 999), Ok(()));
        assert_eq!(limits.check("a", "m", 3, second + 1000), Ok(()));
        // A raised rate takes effect within the window; 0 is unlimited.
        assert_eq!(limits.check("a", "m", 2, second + 1001), Ok(()));
        assert_eq!(limits.check("a", "m", 2, second + 1002), Err(1));
        assert_eq!(limits.check("a", "m", 3, second + 1003), Ok(()));
        assert_eq!(limits.check("a", "m", 0, second + 1004), Ok(()));
    }
}
