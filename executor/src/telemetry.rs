//! The executor's Prometheus metrics that go beyond counters: the names, the histogram buckets, the
//! per-generation timings, and the gauges refreshed each time `/metrics` is scraped.

use infera_engine::Output;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram: from a request reaching the engine to its first output token (queueing and prefill
/// included), in seconds; label `source` (`job` or `gateway`).
pub const TIME_TO_FIRST_TOKEN: &str = "infera_executor_time_to_first_token_seconds";
/// Histogram: from the first output token to the last, in seconds; label `source`.
pub const DECODE_SECONDS: &str = "infera_executor_decode_seconds";
/// Histogram: output tokens after the first per second of decoding; label `source`.
pub const DECODE_RATE: &str = "infera_executor_decode_tokens_per_second";
/// Gauge: transactions sent and not final yet.
pub const PENDING_TRANSACTIONS: &str = "infera_executor_pending_transactions";
/// Gauge: blocks between the chain's head and the next block the job loop will scan.
pub const SCAN_LAG: &str = "infera_executor_scan_lag_blocks";
/// Gauge: requests running or waiting in the engines (reservations not counted).
pub const ENGINE_QUEUE: &str = "infera_executor_engine_queue";
/// Gauge: engine places reserved for accepted on-chain jobs and not used yet.
pub const ENGINE_RESERVED: &str = "infera_executor_engine_reserved";

/// Seconds, from 10 ms to 5 minutes (a CPU prefill of a long prompt takes tens of seconds).
const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Tokens per second, from CPU decoding (a few) to GPUs (hundreds).
const RATE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// A Prometheus recorder with the executor's histogram buckets, installed process-wide.
///
/// # Errors
/// [`BuildError`] when a recorder is installed already.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(TIME_TO_FIRST_TOKEN.into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(DECODE_SECONDS.into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(DECODE_RATE.into()), RATE_BUCKETS)?
        .install_recorder()
}

/// Records the timings of a finished generation.
pub(crate) fn record_generation(output: &Output, source: &'static str) {
    let timings = &output.timings;
    metrics::histogram!(TIME_TO_FIRST_TOKEN, "source" => source)
        .record(timings.time_to_first_token.as_secs_f64());
    if let Some(decode) = timings.total.checked_sub(timings.time_to_first_token) {
        metrics::histogram!(DECODE_SECONDS, "source" => source).record(decode.as_secs_f64());
    }
    if let Some(rate) = timings.decode_tokens_per_second(output.output_ids.len()) {
        metrics::histogram!(DECODE_RATE, "source" => source).record(rate);
    }
}
