//! `status`: how the outbox is doing, for people and for scripts.

pub use crate::store::stats::{BlockedKey, StatusReport, TypeCounts, report as status};

/// Event types (and blocked keys) `status` lists unless told otherwise.
pub const DEFAULT_TOP: i64 = 10;

/// The most event types (and blocked keys) `status` lists.
pub const MAX_TOP: i64 = 1000;

impl StatusReport {
    /// A few aligned lines for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pending    {:>10}  (in flight {}, retrying {})",
            self.pending, self.in_flight, self.retrying
        );
        let _ = writeln!(out, "delivered  {:>10}", self.delivered);
        let _ = writeln!(out, "dead       {:>10}", self.dead);
        let _ = writeln!(out, "discarded  {:>10}", self.discarded);
        let _ = writeln!(
            out,
            "oldest pending age  {}",
            self.oldest_pending_age_seconds
                .map(|age| format!("{age:.1}s"))
                .unwrap_or_else(|| "- (nothing pending)".to_owned())
        );
        let _ = writeln!(
            out,
            "last delivered      {}",
            self.last_delivered_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".to_owned())
        );
        if !self.blocked_keys.is_empty() {
            let _ = writeln!(
                out,
                "\nBLOCKED KEYS (their later events wait: replay or discard a dead head; a retrying or scheduled head goes out when due)"
            );
            let _ = writeln!(
                out,
                "{:<40} {:<36} {:<9} {:>8}  LAST ERROR",
                "ORDERING KEY", "HEAD EVENT", "STATUS", "WAITING"
            );
            for key in &self.blocked_keys {
                let _ = writeln!(
                    out,
                    "{:<40} {:<36} {:<9} {:>8}  {}",
                    key.ordering_key,
                    key.head_id,
                    key.status,
                    key.waiting,
                    head_detail(key)
                );
            }
            if self.more_blocked_keys {
                let _ = writeln!(out, "... and more blocked keys (raise --top to list them)");
            }
        }
        if !self.by_event_type.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<40} {:>10} {:>10} {:>10}",
                "EVENT TYPE", "PENDING", "DELIVERED", "DEAD"
            );
            for row in &self.by_event_type {
                let _ = writeln!(
                    out,
                    "{:<40} {:>10} {:>10} {:>10}",
                    row.event_type, row.pending, row.delivered, row.dead
                );
            }
            let left_out = self.event_types_total - self.by_event_type.len() as i64;
            if left_out > 0 {
                let _ = writeln!(
                    out,
                    "... and {left_out} more event type(s) (raise --top to list them)"
                );
            }
        }
        out
    }
}

/// The last column of a blocked key: why its head is held, and until when.
fn head_detail(key: &crate::store::stats::BlockedKey) -> String {
    let due = key.retry_at.map(|at| at.to_rfc3339());
    match (key.last_error.as_deref(), due) {
        (Some(error), Some(due)) => format!("{error} (next try {due})"),
        (Some(error), None) => error.to_owned(),
        (None, Some(due)) => format!("due {due}"),
        (None, None) => "-".to_owned(),
    }
}
