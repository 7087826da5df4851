//! When to look for work: a NOTIFY from an insert, a reconnect of the listener, or the poll
//! interval — whichever comes first. NOTIFY is only a hint; the poll is the safety net.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::BackoffPolicy;

/// The channel the insert trigger notifies.
pub const CHANNEL: &str = "outbox_events";

/// Wake-ups for the relay loop.
#[derive(Debug, Clone)]
pub struct Wakeup {
    notify: Arc<Notify>,
    poll_interval: Duration,
}

impl Wakeup {
    /// Wake-ups by polling only (no LISTEN).
    pub fn polling(poll_interval: Duration) -> Self {
        Wakeup {
            notify: Arc::new(Notify::new()),
            poll_interval,
        }
    }

    /// Wake-ups by LISTEN (in a background task that reconnects by itself) plus polling.
    pub fn listening(pool: &PgPool, poll_interval: Duration, cancel: CancellationToken) -> Self {
        let wakeup = Self::polling(poll_interval);
        let notify = wakeup.notify.clone();
        let pool = pool.clone();
        tokio::spawn(async move { listen(pool, notify, cancel).await });
        wakeup
    }

    /// Waits for a notification, the poll interval, or cancellation.
    pub async fn wait(&self, cancel: &CancellationToken) {
        tokio::select! {
            () = self.notify.notified() => {}
            () = tokio::time::sleep(self.poll_interval) => {}
            () = cancel.cancelled() => {}
        }
    }

    /// Wakes the loop now (used after a reconnect, and by tests).
    pub fn poke(&self) {
        self.notify.notify_one();
    }
}

async fn listen(pool: PgPool, notify: Arc<Notify>, cancel: CancellationToken) {
    let mut delays = BackoffPolicy::RECONNECT.delay_iter();
    let mut listener: Option<PgListener> = None;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let active = match listener.as_mut() {
            Some(active) => active,
            None => match subscribe(&pool).await {
                Ok(fresh) => {
                    info!(channel = CHANNEL, "listening for outbox inserts");
                    // Notifications sent while we were away are lost: scan now.
                    notify.notify_one();
                    listener.insert(fresh)
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(10));
                    warn!(%error, retry_in = ?delay, "LISTEN failed; relying on polling until it works");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = cancel.cancelled() => return,
                    }
                }
            },
        };
        let received = tokio::select! {
            received = active.try_recv() => received,
            () = cancel.cancelled() => return,
        };
        match received {
            Ok(Some(_)) => {
                debug!("notified of new outbox rows");
                notify.notify_one();
            }
            Ok(None) => {
                info!("LISTEN connection was lost and re-established; scanning");
                notify.notify_one();
            }
            Err(error) => {
                warn!(%error, "LISTEN connection failed");
                listener = None;
                notify.notify_one();
            }
        }
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
