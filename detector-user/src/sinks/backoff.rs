//! Retry timing of a failing sink: exponential backoff with jitter.

use std::time::Duration;

use crate::config::RetryConfig;

/// Next backoff: doubled, capped, with ±50% jitter so that many agents do not retry in step.
pub(super) fn backoff(prev: Option<Duration>, r: &RetryConfig) -> (Duration, Duration) {
    let base = match prev {
        None => r.initial,
        Some(p) => (p * 2).min(r.max),
    };
    let jitter = base.mul_f64(0.5 + fastrand::f64());
    (base, jitter.min(r.max))
}
