//! Reachability of the database and the broker, as the delivery loops last saw it, and the
//! broker's refusal of the relay, if it refuses it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Reachability of the two servers, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    database: AtomicBool,
    /// One bit per delivery loop whose broker link is up.
    broker: AtomicU64,
    /// Why the broker refuses the relay, in words, while it does.
    broker_refusal: Mutex<Option<String>>,
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

    /// Why the broker refuses the relay (`vhost "x" does not exist`), while it does: then
    /// the relay cannot deliver, whatever its links.
    pub fn broker_refusal(&self) -> Option<String> {
        self.broker_refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_broker_refusal(&self, cause: Option<String>) {
        *self
            .broker_refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cause;
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
