//! `replay` and `discard`: an operator's decisions about dead (or delivered) events.
//!
//! `replay` puts events back to `pending` so the relay sends them again with their original
//! id (consumers' inboxes drop what they already applied); `discard` gives dead events up
//! (`discarded`, terminal), which lets the later events of their keys flow. Both need a
//! filter (or `--all`), show what they would do with `--dry-run`, and leave an audit record.

use serde::Serialize;
use sqlx::PgPool;

use crate::engine::filter::{EventFilter, FilterError, ReplayableStatus};
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

/// The result of a replay, a discard, or a dry run of either.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// `replay` or `discard`.
    pub action: Action,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// How many events matched (and, unless a dry run, were changed).
    pub count: usize,
    /// Up to 10 of them, oldest first.
    pub sample: Vec<ReplayedEvent>,
    /// The audit record written (none for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<i64>,
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
/// table. The events keep their `seq`, so they stay in order with their key's other events.
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
    if let Some(audit_id) = applied.audit_id {
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
    Ok(ReplayReport {
        action,
        dry_run,
        count,
        sample: applied.events.into_iter().take(SAMPLE).collect(),
        audit_id: applied.audit_id,
        unmatched_ids,
    })
}

impl ReplayReport {
    /// A count, the audit record and the sample, one event per line, for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let verb = match (self.dry_run, self.action) {
            (true, Action::Replay) => "would replay",
            (false, Action::Replay) => "replayed",
            (true, Action::Discard) => "would discard",
            (false, Action::Discard) => "discarded",
        };
        let mut out = format!("{verb} {} event(s)\n", self.count);
        if let Some(audit) = self.audit_id {
            let _ = writeln!(out, "audit record {audit}");
        }
        for event in &self.sample {
            let _ = writeln!(
                out,
                "  {}  {}  {}  key={}  attempts={}",
                event.id,
                event.created_at.to_rfc3339(),
                event.event_type,
                event.ordering_key.as_deref().unwrap_or("-"),
                event.attempts
            );
        }
        if self.count > self.sample.len() {
            let _ = writeln!(out, "  ... and {} more", self.count - self.sample.len());
        }
        for unmatched in &self.unmatched_ids {
            let why = match (unmatched.status.as_deref(), self.action) {
                (None, _) => "no such event".to_owned(),
                (Some("pending"), _) => {
                    "left alone: it is pending (the relay sends it; nothing to do)".to_owned()
                }
                (Some(status), Action::Replay) => format!(
                    "left alone: it is {status} (replay takes one status at a time: add --status {status})"
                ),
                (Some(status), Action::Discard) => {
                    format!("left alone: it is {status} (discard takes dead events only)")
                }
            };
            let _ = writeln!(out, "  {}: {why}", unmatched.id);
        }
        out
    }
}
