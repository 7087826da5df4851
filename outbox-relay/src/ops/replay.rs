//! `replay` and `discard`: an operator's decisions about dead (or delivered) events.
//!
//! `replay` puts events back to `pending` so the relay sends them again with their original
//! id (consumers' inboxes drop what they already applied); `discard` gives dead events up
//! (`discarded`, terminal), which lets the later events of their keys flow. Both need a
//! filter (or `--all`), show what they would do with `--dry-run`, and leave an audit record
//! (a dry run too, marked as one). When no event matches, the report says why and its
//! [`ReplayReport::exit_code`] is [`NOTHING_TO_DO_EXIT_CODE`].

use serde::Serialize;
use sqlx::PgPool;

use crate::engine::filter::{EventFilter, FilterError, ReplayableStatus};
use crate::foundation::table::printable;
use crate::store::Status;
use crate::store::operator::{self, Action};

pub use crate::store::operator::SelectedEvent as ReplayedEvent;

/// What to replay or discard.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRequest {
    /// Status the events are taken from (`discard` takes dead events only).
    pub status: ReplayableStatus,
    /// The selection.
    pub filter: EventFilter,
    /// At most this many events (oldest first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The operator accepts an empty filter.
    pub all: bool,
}

/// The exit code of `replay` and `discard` when no event matched, so nothing was (or, in a
/// dry run, would be) changed: distinct from 1 (an error) and 2 (a usage error), so that a
/// script can tell "nothing to do" from a failure.
pub const NOTHING_TO_DO_EXIT_CODE: u8 = 3;

/// The result of a replay, a discard, or a dry run of either.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// `replay` or `discard`.
    pub action: Action,
    /// The status the events were taken from.
    pub status: Status,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// How many events matched (and, unless a dry run, were changed).
    pub count: usize,
    /// Up to 10 of them, oldest first.
    pub sample: Vec<ReplayedEvent>,
    /// The audit record written (none when nothing matched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<i64>,
    /// When nothing matched: why (`event … is delivered (discard takes dead events only)`,
    /// `no dead event matched the filter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing_to_do: Option<String>,
    /// Ids given with `--id` that did not match, and what they are instead: an operator who
    /// names an event learns why it was left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_ids: Vec<UnmatchedId>,
}

/// An id given with `--id` that the command left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmatchedId {
    /// The id.
    pub id: uuid::Uuid,
    /// Its status (`pending`, `delivered`, ...), or `None` when no such event exists.
    pub status: Option<String>,
}

/// Why a replay or discard did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The filter was refused.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The database failed; nothing was changed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

const SAMPLE: usize = 10;

/// Replays (or, with `dry_run`, lists) the matching events, recording `actor` in the audit
/// table. A dead head goes again as its scope's head, the events waiting behind it after
/// it; a delivered or discarded event goes out once more on its own (`outbox_replays`),
/// with its original id, not ordered with its key's other events (consumers' inboxes
/// drop what they already applied).
pub async fn replay(
    pool: &PgPool,
    request: &ReplayRequest,
    actor: &str,
    dry_run: bool,
) -> Result<ReplayReport, ReplayError> {
    change(pool, Action::Replay, request, actor, dry_run).await
}

/// Discards (or, with `dry_run`, lists) the matching dead events, recording `actor` in the
/// audit table; their keys' later events are published next.
pub async fn discard(
    pool: &PgPool,
    request: &ReplayRequest,
    actor: &str,
    dry_run: bool,
) -> Result<ReplayReport, ReplayError> {
    change(pool, Action::Discard, request, actor, dry_run).await
}

async fn change(
    pool: &PgPool,
    action: Action,
    request: &ReplayRequest,
    actor: &str,
    dry_run: bool,
) -> Result<ReplayReport, ReplayError> {
    let verb = match action {
        Action::Replay => "replay",
        Action::Discard => "discard",
    };
    if request.filter.is_empty() && !request.all {
        return Err(FilterError::NoFilter(verb).into());
    }
    request.filter.validate()?;
    if let Some(limit) = request.limit
        && limit < 1
    {
        return Err(FilterError::Invalid {
            flag: "--limit",
            reason: "must be at least 1".to_owned(),
        }
        .into());
    }
    let from = match action {
        Action::Replay => request.status.status(),
        Action::Discard => Status::Dead,
    };
    let audit = serde_json::to_value(request).unwrap_or_default();
    let applied = operator::apply(
        pool,
        action,
        from,
        &request.filter,
        request.limit,
        actor,
        &audit,
        dry_run,
    )
    .await?;
    let count = applied.events.len();
    if let Some(audit_id) = applied.audit_id
        && !dry_run
    {
        tracing::info!(actor, audit_id, count, action = verb, filter = %audit, "operator change applied");
    }
    let matched: std::collections::HashSet<uuid::Uuid> =
        applied.events.iter().map(|event| event.id).collect();
    let others: Vec<uuid::Uuid> = request
        .filter
        .ids
        .iter()
        .filter(|id| !matched.contains(id))
        .copied()
        .collect();
    let unmatched_ids = if others.is_empty() {
        Vec::new()
    } else {
        let statuses = operator::statuses(pool, &others).await?;
        others
            .into_iter()
            .map(|id| UnmatchedId {
                id,
                status: statuses.get(&id).cloned(),
            })
            .collect()
    };
    let nothing_to_do =
        (count == 0).then(|| nothing_to_do(action, from, request.filter.ids.len(), &unmatched_ids));
    Ok(ReplayReport {
        action,
        status: from,
        dry_run,
        count,
        sample: applied.events.into_iter().take(SAMPLE).collect(),
        audit_id: applied.audit_id,
        unmatched_ids,
        nothing_to_do,
    })
}

/// Why a replay or discard matched no event with status `from`, given how many ids the
/// operator named and what those are: one named event is described by its status, several
/// are listed one by one after this line, and a filter without ids matched nothing.
pub fn nothing_to_do(
    action: Action,
    from: Status,
    named: usize,
    unmatched: &[UnmatchedId],
) -> String {
    match (named, unmatched) {
        (0, _) => format!("no {} event matched the filter", from.as_str()),
        (1, [one]) => match &one.status {
            None => format!("no event has the id {}", one.id),
            Some(status) => format!(
                "event {} {}",
                one.id,
                left_alone(action, from, status.as_str())
            ),
        },
        (named, _) => format!(
            "none of the {named} events named with --id is a {} event matching the filter",
            from.as_str()
        ),
    }
}

/// Why an event with `status` was left alone by `action` on `from` events: `is delivered
/// (discard takes dead events only)`.
fn left_alone(action: Action, from: Status, status: &str) -> String {
    match (status, action) {
        (status, _) if status == from.as_str() => {
            format!("is {status} but does not match the other filters")
        }
        ("pending", _) => "is pending (the relay sends it; nothing to do)".to_owned(),
        (status, Action::Replay) => {
            format!("is {status} (replay takes one status at a time: add --status {status})")
        }
        (status, Action::Discard) => {
            format!("is {status} (discard takes dead events only)")
        }
    }
}

impl ReplayReport {
    /// A count, the audit record and the sample, one event per line, for a terminal; when
    /// nothing matched, why.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let verb = match (self.dry_run, self.action) {
            (true, Action::Replay) => "would replay",
            (false, Action::Replay) => "replayed",
            (true, Action::Discard) => "would discard",
            (false, Action::Discard) => "discarded",
        };
        let mut out = match &self.nothing_to_do {
            Some(why) => format!("nothing to {}: {why}\n", self.action.as_str()),
            None => format!("{verb} {} event(s)\n", self.count),
        };
        if let Some(audit) = self.audit_id {
            let kind = if self.dry_run { " (dry run)" } else { "" };
            let _ = writeln!(out, "audit record {audit}{kind}");
        }
        for event in &self.sample {
            let _ = writeln!(
                out,
                "  {}  {}  {}  key={}  attempts={}",
                event.id,
                event.created_at.to_rfc3339(),
                printable(&event.event_type),
                printable(event.ordering_key.as_deref().unwrap_or("-")),
                event.attempts
            );
        }
        if self.count > self.sample.len() {
            let _ = writeln!(out, "  ... and {} more", self.count - self.sample.len());
        }
        // One named event that matched nothing is described by the first line already.
        let described = self.count == 0 && self.unmatched_ids.len() == 1;
        for unmatched in self.unmatched_ids.iter().filter(|_| !described) {
            let why = match unmatched.status.as_deref() {
                None => "no such event".to_owned(),
                Some(status) => format!(
                    "left alone: it {}",
                    left_alone(self.action, self.status, status)
                ),
            };
            let _ = writeln!(out, "  {}: {why}", unmatched.id);
        }
        out
    }

    /// The command's exit code: 0 when events matched, [`NOTHING_TO_DO_EXIT_CODE`] when
    /// none did (dry run or not).
    pub fn exit_code(&self) -> u8 {
        if self.count == 0 {
            NOTHING_TO_DO_EXIT_CODE
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(action: Action, count: usize, unmatched: Vec<UnmatchedId>) -> ReplayReport {
        let from = match action {
            Action::Replay => Status::Delivered,
            Action::Discard => Status::Dead,
        };
        let named = unmatched.len();
        ReplayReport {
            action,
            status: from,
            dry_run: false,
            count,
            sample: Vec::new(),
            audit_id: (count > 0).then_some(7),
            nothing_to_do: (count == 0).then(|| nothing_to_do(action, from, named, &unmatched)),
            unmatched_ids: unmatched,
        }
    }

    fn id(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    #[test]
    fn nothing_to_do_says_why() {
        let delivered = UnmatchedId {
            id: id(1),
            status: Some("delivered".to_owned()),
        };
        let missing = UnmatchedId {
            id: id(2),
            status: None,
        };
        let dead = UnmatchedId {
            id: id(3),
            status: Some("dead".to_owned()),
        };
        let pending = UnmatchedId {
            id: id(4),
            status: Some("pending".to_owned()),
        };
        let why = |action, from, named, unmatched: &[UnmatchedId]| {
            nothing_to_do(action, from, named, unmatched)
        };
        assert_eq!(
            why(Action::Discard, Status::Dead, 0, &[]),
            "no dead event matched the filter"
        );
        assert_eq!(
            why(Action::Replay, Status::Delivered, 0, &[]),
            "no delivered event matched the filter"
        );
        assert_eq!(
            why(
                Action::Discard,
                Status::Dead,
                1,
                std::slice::from_ref(&delivered)
            ),
            format!(
                "event {} is delivered (discard takes dead events only)",
                id(1)
            )
        );
        assert_eq!(
            why(
                Action::Replay,
                Status::Dead,
                1,
                std::slice::from_ref(&delivered)
            ),
            format!(
                "event {} is delivered (replay takes one status at a time: add --status delivered)",
                id(1)
            )
        );
        assert_eq!(
            why(
                Action::Replay,
                Status::Dead,
                1,
                std::slice::from_ref(&missing)
            ),
            format!("no event has the id {}", id(2))
        );
        assert_eq!(
            why(Action::Replay, Status::Dead, 1, std::slice::from_ref(&dead)),
            format!(
                "event {} is dead but does not match the other filters",
                id(3)
            )
        );
        assert_eq!(
            why(
                Action::Discard,
                Status::Dead,
                1,
                std::slice::from_ref(&pending)
            ),
            format!(
                "event {} is pending (the relay sends it; nothing to do)",
                id(4)
            )
        );
        assert_eq!(
            why(Action::Discard, Status::Dead, 2, &[delivered, missing]),
            "none of the 2 events named with --id is a dead event matching the filter"
        );
    }

    #[test]
    fn a_change_of_nothing_has_an_exit_code_of_its_own_and_says_why() {
        let one = report(
            Action::Discard,
            0,
            vec![UnmatchedId {
                id: id(1),
                status: Some("delivered".to_owned()),
            }],
        );
        assert_eq!(one.exit_code(), NOTHING_TO_DO_EXIT_CODE);
        assert_eq!(
            one.to_text(),
            format!(
                "nothing to discard: event {} is delivered (discard takes dead events only)\n",
                id(1)
            )
        );
        let two = report(
            Action::Replay,
            0,
            vec![
                UnmatchedId {
                    id: id(1),
                    status: Some("dead".to_owned()),
                },
                UnmatchedId {
                    id: id(2),
                    status: None,
                },
            ],
        );
        assert_eq!(two.exit_code(), NOTHING_TO_DO_EXIT_CODE);
        let text = two.to_text();
        assert!(
            text.starts_with(
                "nothing to replay: none of the 2 events named with --id is a delivered event"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{}: left alone: it is dead (replay takes one status at a time: add --status dead)",
                id(1)
            )) && text.contains(&format!("{}: no such event", id(2))),
            "{text}"
        );
        let done = report(Action::Replay, 3, Vec::new());
        assert_eq!(done.exit_code(), 0);
        assert!(
            done.to_text()
                .starts_with("replayed 3 event(s)\naudit record 7\n")
        );
        let json = serde_json::to_value(&one).unwrap_or_default();
        assert_eq!(json["status"], "dead");
        assert!(json["nothingToDo"].is_string());
        assert!(serde_json::to_value(&done).unwrap_or_default()["nothingToDo"].is_null());
        assert_eq!(NOTHING_TO_DO_EXIT_CODE, 3);
    }
}
