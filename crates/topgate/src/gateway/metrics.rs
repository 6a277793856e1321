//! Prometheus metrics of the gateway, served at `/metrics`: calls by method and TOP code, and
//! the latency of each method as a histogram.
//!
//! One recorder per process (the first server of a process installs it; tests start many
//! servers). Only registered method names become labels, so clients cannot grow the label set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use top_protocol::error::catalogued_msg;

const CALLS: &str = "topgate_calls_total";
const DURATION: &str = "topgate_call_duration_seconds";
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.into()), BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Installs the recorder if this process has none yet.
pub fn install() {
    let _ = handle();
}

/// Counts one answered call: `method` is a registered name or `unknown`, `code` 0 for success.
/// Success and each code of TOP's catalogue have their own label, anything else is `other`: a
/// fixed set, so clients cannot grow it.
pub fn record(method: &'static str, code: u32, elapsed: Duration) {
    let code = (code == 0 || catalogued_msg(code).is_some()).then_some(code);
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        let (calls, duration) = handles.entry((method, code)).or_insert_with(|| {
            let code = code.map_or_else(|| "other".to_string(), |c| c.to_string());
            (
                metrics::counter!(CALLS, "method" => method, "code" => code),
                metrics::histogram!(DURATION, "method" => method),
            )
        });
        calls.increment(1);
        duration.record(elapsed.as_secs_f64());
    });
}

/// A method's call counter for one code, and its latency histogram.
type Handles = (Counter, Histogram);

thread_local! {
    /// The handles this thread has registered, by method and code (a few dozen at most):
    /// registering looks the labels up in the recorder's map, building and hashing a key, which
    /// cost a few percent of a lianbei call.
    static HANDLES: RefCell<HashMap<(&'static str, Option<u32>), Handles>> =
        RefCell::new(HashMap::new());
}

/// The current metrics in the Prometheus text format.
pub async fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}
