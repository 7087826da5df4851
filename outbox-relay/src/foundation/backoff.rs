//! Retry delays: exponential with jitter, computed by `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Exponential backoff settings for failed publish attempts and reconnects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub base: Duration,
    /// Growth factor per further failure.
    pub factor: f32,
    /// Upper bound of any delay.
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy::PUBLISH_RETRY
    }
}

impl BackoffPolicy {
    /// Retrying a failed publish (the relay's `--retry-base`, `--retry-factor`,
    /// `--retry-cap` defaults): 1 s doubling to 5 min.
    pub const PUBLISH_RETRY: BackoffPolicy = BackoffPolicy {
        base: Duration::from_secs(1),
        factor: 2.0,
        cap: Duration::from_secs(300),
    };

    /// Retrying a lost connection (database, broker, LISTEN): 200 ms doubling to 10 s.
    pub const RECONNECT: BackoffPolicy = BackoffPolicy {
        base: Duration::from_millis(200),
        factor: 2.0,
        cap: Duration::from_secs(10),
    };

    /// Retrying the statement that records a batch's outcomes: 100 ms doubling to 5 s,
    /// quicker than a reconnect because the batch's lease is running.
    pub const SETTLE_RETRY: BackoffPolicy = BackoffPolicy {
        base: Duration::from_millis(100),
        factor: 2.0,
        cap: Duration::from_secs(5),
    };

    /// A `backon` builder for this policy (with jitter, without a retry limit).
    pub fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_factor(self.factor)
            .with_max_delay(self.cap)
            .with_jitter()
            .without_max_times()
    }

    /// An endless iterator of jittered delays, for reconnect loops.
    pub fn delay_iter(&self) -> impl Iterator<Item = Duration> + use<> {
        self.builder().build()
    }

    /// The delay before retry number `attempt` (1 = after the first failure).
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let index = attempt.saturating_sub(1).min(64) as usize;
        self.builder().build().nth(index).unwrap_or(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap_plus_jitter() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
        };
        let first = policy.delay_for(1);
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        let third = policy.delay_for(3);
        assert!(third >= Duration::from_millis(400), "{third:?}");
        for attempt in 1..50 {
            assert!(
                policy.delay_for(attempt) <= Duration::from_secs(2),
                "attempt {attempt}"
            );
        }
    }
}
