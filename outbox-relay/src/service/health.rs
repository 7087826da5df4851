//! Reachability of the database and the broker, as the delivery loops last saw it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Reachability of the two servers, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    database: AtomicBool,
    /// One bit per delivery loop whose broker link is up.
    broker: AtomicU64,
}

impl Health {
    /// Whether the last database operation succeeded.
    pub fn database_ok(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    /// Whether a broker link is up (one is enough to deliver).
    pub fn broker_ok(&self) -> bool {
        self.broker.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn set_database(&self, ok: bool) {
        self.database.store(ok, Ordering::Relaxed);
    }

    pub(crate) fn set_broker(&self, lane: usize, ok: bool) {
        let bit = 1u64 << (lane % 64);
        if ok {
            self.broker.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.broker.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}
