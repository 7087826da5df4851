//! Waiting that a shutdown cuts short: every background loop of the relay sleeps between
//! rounds, and none may hold up a shutdown for the length of its sleep.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Sleeps for `delay` unless `cancel` fires first. Returns `true` when the whole delay
/// passed, `false` when cancelled (the caller should stop).
pub async fn sleep_unless_cancelled(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_ends_the_sleep_at_once() {
        let cancel = CancellationToken::new();
        assert!(sleep_unless_cancelled(Duration::from_millis(10), &cancel).await);
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            canceller.cancel();
        });
        let started = std::time::Instant::now();
        assert!(!sleep_unless_cancelled(Duration::from_secs(3600), &cancel).await);
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
