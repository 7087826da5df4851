//! `status`: how the outbox is doing, for people and for scripts.

use crate::foundation::table::{Column, Table};

pub use crate::store::stats::{BlockedKey, StatusReport, TypeCounts, report as status};

/// Event types (and blocked keys) `status` lists unless told otherwise.
pub const DEFAULT_TOP: i64 = 10;

/// The most event types (and blocked keys) `status` lists.
pub const MAX_TOP: i64 = 1000;

/// The most characters of an ordering key or event type the tables show (the JSON report
/// has them whole).
const KEY_WIDTH: usize = 40;

/// The most characters of a blocked key's last error the table shows.
const ERROR_WIDTH: usize = 80;

impl StatusReport {
    /// A few aligned lines for a terminal; long keys and errors are cut with an ellipsis.
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
            let mut table = Table::new([
                Column::left("ORDERING KEY", KEY_WIDTH),
                Column::left("HEAD EVENT", 36),
                Column::left("STATUS", 9),
                Column::right("WAITING", 10),
                Column::left("LAST ERROR", ERROR_WIDTH),
            ]);
            for key in &self.blocked_keys {
                table.row([
                    key.ordering_key.clone(),
                    key.head_id.to_string(),
                    key.status.clone(),
                    key.waiting.to_string(),
                    head_detail(key),
                ]);
            }
            out.push_str(&table.render());
            if self.more_blocked_keys {
                let _ = writeln!(out, "... and more blocked keys (raise --top to list them)");
            }
        }
        if !self.by_event_type.is_empty() {
            let mut table = Table::new([
                Column::left("EVENT TYPE", KEY_WIDTH),
                Column::right("PENDING", 12),
                Column::right("DELIVERED", 12),
                Column::right("DEAD", 12),
            ]);
            for row in &self.by_event_type {
                table.row([
                    row.event_type.clone(),
                    row.pending.to_string(),
                    row.delivered.to_string(),
                    row.dead.to_string(),
                ]);
            }
            out.push('\n');
            out.push_str(&table.render());
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

/// The last column of a blocked key: until when its head is held, and why (the time first:
/// a long error is cut at the end of the column).
fn head_detail(key: &crate::store::stats::BlockedKey) -> String {
    let due = key.retry_at.map(|at| at.to_rfc3339());
    match (key.last_error.as_deref(), due) {
        (Some(error), Some(due)) => format!("next try {due}: {error}"),
        (Some(error), None) => error.to_owned(),
        (None, Some(due)) => format!("due {due}"),
        (None, None) => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(key: &str, error: &str) -> BlockedKey {
        BlockedKey {
            ordering_key: key.to_owned(),
            tenant_id: None,
            head_id: uuid::Uuid::nil(),
            event_type: "TICKET_CREATED".to_owned(),
            status: "dead".to_owned(),
            attempts: 10,
            last_error: Some(error.to_owned()),
            retry_at: None,
            waiting: 3,
        }
    }

    #[test]
    fn long_and_non_ascii_keys_keep_the_blocked_keys_table_aligned() {
        let report = StatusReport {
            pending: 3,
            in_flight: 0,
            retrying: 0,
            delivered: 0,
            dead: 2,
            discarded: 0,
            oldest_pending_age_seconds: None,
            last_delivered_at: None,
            by_event_type: Vec::new(),
            event_types_total: 0,
            blocked_keys: vec![
                blocked(&"k".repeat(300), &"e".repeat(500)),
                blocked("заказ:42", "unroutable\nsecond line"),
            ],
            more_blocked_keys: false,
        };
        let text = report.to_text();
        let lines: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("ORDERING KEY"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        // The head event column starts at the same character on every line.
        let at = |line: &str, what: &str| line.find(what).map(|b| line[..b].chars().count());
        let nil = uuid::Uuid::nil().to_string();
        assert_eq!(at(lines[0], "HEAD EVENT"), at(lines[1], &nil), "{text}");
        assert_eq!(at(lines[1], &nil), at(lines[2], &nil), "{text}");
        assert!(lines[1].starts_with(&format!("{}…", "k".repeat(KEY_WIDTH - 1))));
        assert!(
            lines[1].ends_with('…') && lines[1].chars().count() < 200,
            "{text}"
        );
    }
}
