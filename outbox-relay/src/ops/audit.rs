//! `audit`: the replay/discard audit, read. Every `replay` and `discard` (dry runs too)
//! leaves a record: who (the declared actor and the database role), when, which events,
//! with which filter, and whether it was a dry run. This lists them newest first, as a
//! table or as JSON.

use chrono::SecondsFormat;
use serde::Serialize;
use sqlx::PgPool;

use crate::engine::audit::AuditFilter;
use crate::engine::filter::FilterError;
use crate::foundation::table::{Column, Table};

pub use crate::store::audit::AuditRecord;

/// Records `audit` lists unless told otherwise.
pub const DEFAULT_LIMIT: i64 = 50;

/// The most records `audit` lists at once.
pub const MAX_LIMIT: i64 = 10_000;

/// Event ids the table shows per record (the JSON report has them all).
const IDS_SHOWN: usize = 2;

/// The records found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// Whether older records match too (beyond `--limit`).
    pub more: bool,
}

/// Why the audit could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The filter was refused.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The records `filter` selects, newest first, at most `limit` (1 to [`MAX_LIMIT`]).
pub async fn audit(
    pool: &PgPool,
    filter: &AuditFilter,
    limit: i64,
) -> Result<AuditReport, AuditError> {
    filter.validate()?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(FilterError::Invalid {
            flag: "--limit",
            reason: format!("must be between 1 and {MAX_LIMIT}"),
        }
        .into());
    }
    let mut records = crate::store::audit::list(pool, filter, limit + 1).await?;
    let more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(AuditReport { records, more })
}

impl AuditReport {
    /// A table, one record per line, for a terminal: long values are cut with an
    /// ellipsis, and at most two event ids are shown per record.
    pub fn to_text(&self) -> String {
        if self.records.is_empty() {
            return "no audit record matched\n".to_owned();
        }
        let mut table = Table::new([
            Column::right("ID", 12),
            Column::left("RECORDED AT", 25),
            Column::left("ACTION", 8),
            Column::left("DRY RUN", 7),
            Column::left("ACTOR", 24),
            Column::left("ROLE", 24),
            Column::right("EVENTS", 10),
            Column::left("FILTER", 60),
            Column::left("EVENT IDS", 96),
        ]);
        for record in &self.records {
            table.row([
                record.id.to_string(),
                record
                    .recorded_at
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
                record.action.clone(),
                if record.dry_run { "yes" } else { "no" }.to_owned(),
                record.actor.clone(),
                record
                    .session_role
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
                record.event_count.to_string(),
                filter_flags(&record.action, &record.filter),
                event_list(&record.event_ids),
            ]);
        }
        let mut out = table.render();
        if self.more {
            out.push_str("... and older records (raise --limit or narrow the filters)\n");
        }
        if self
            .records
            .iter()
            .any(|record| record.event_ids.len() > IDS_SHOWN)
        {
            out.push_str("(--format json lists every event id)\n");
        }
        out
    }
}

/// The first event ids of a record and how many more there are: `a b +3 more`.
pub fn event_list(ids: &[uuid::Uuid]) -> String {
    let mut shown: Vec<String> = ids
        .iter()
        .take(IDS_SHOWN)
        .map(ToString::to_string)
        .collect();
    if ids.len() > IDS_SHOWN {
        shown.push(format!("+{} more", ids.len() - IDS_SHOWN));
    }
    if shown.is_empty() {
        "-".to_owned()
    } else {
        shown.join(" ")
    }
}

/// A recorded request as the flags that would repeat it (`--status dead --event-type
/// TICKET_CREATED --since 2026-01-15T09:30:00Z`): the selection first, ids last. A record
/// of another shape (written by an older version) is shown as compact JSON.
pub fn filter_flags(action: &str, request: &serde_json::Value) -> String {
    use serde_json::Value;
    let Some(fields) = request.as_object() else {
        return request.to_string();
    };
    let known = ["status", "filter", "limit", "all"];
    let selection = match fields.get("filter") {
        Some(Value::Object(selection)) => selection.clone(),
        None => serde_json::Map::new(),
        Some(_) => return request.to_string(),
    };
    let selection_known = [
        "ids",
        "eventType",
        "category",
        "tenant",
        "orderingKey",
        "since",
        "until",
    ];
    if fields.keys().any(|key| !known.contains(&key.as_str()))
        || selection
            .keys()
            .any(|key| !selection_known.contains(&key.as_str()))
    {
        return request.to_string();
    }
    let text = |value: &Value| match value {
        Value::String(text) => quoted(text),
        other => other.to_string(),
    };
    let mut flags = Vec::new();
    if action != "discard"
        && let Some(status) = fields.get("status")
    {
        flags.push(format!("--status {}", text(status)));
    }
    for (key, flag) in [
        ("eventType", "--event-type"),
        ("category", "--category"),
        ("tenant", "--tenant"),
        ("orderingKey", "--ordering-key"),
        ("since", "--since"),
        ("until", "--until"),
    ] {
        if let Some(value) = selection.get(key) {
            flags.push(format!("{flag} {}", text(value)));
        }
    }
    if let Some(limit) = fields.get("limit") {
        flags.push(format!("--limit {}", text(limit)));
    }
    if fields.get("all") == Some(&Value::Bool(true)) {
        flags.push("--all".to_owned());
    }
    if let Some(Value::Array(ids)) = selection.get("ids") {
        flags.extend(ids.iter().map(|id| format!("--id {}", text(id))));
    }
    if flags.is_empty() {
        "-".to_owned()
    } else {
        flags.join(" ")
    }
}

/// `text` as a shell word: as it is when it is plain, in single quotes otherwise.
fn quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.:/+@=,%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    #[test]
    fn a_recorded_request_reads_as_the_flags_that_repeat_it() {
        let request = json!({
            "status": "delivered",
            "filter": {
                "ids": [id(1)],
                "eventType": "TICKET_CREATED",
                "tenant": id(2),
                "orderingKey": "ticket:1 (old)",
                "since": "2026-01-15T09:30:00Z"
            },
            "limit": 5,
            "all": false
        });
        assert_eq!(
            filter_flags("replay", &request),
            format!(
                "--status delivered --event-type TICKET_CREATED --tenant {} --ordering-key 'ticket:1 (old)' --since 2026-01-15T09:30:00Z --limit 5 --id {}",
                id(2),
                id(1)
            )
        );
        // A discard always takes dead events: its status is not a choice worth showing.
        let discard = json!({"status": "dead", "filter": {"category": "Tickets"}, "all": false});
        assert_eq!(filter_flags("discard", &discard), "--category Tickets");
        let everything = json!({"status": "dead", "filter": {}, "all": true});
        assert_eq!(filter_flags("discard", &everything), "--all");
        assert_eq!(filter_flags("discard", &json!({})), "-");
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_request_of_another_shape_is_shown_as_json() {
        for request in [
            json!({"status": "dead", "cursor": 5}),
            json!({"filter": {"seqFrom": 1}}),
            json!({"filter": "everything"}),
            json!([1, 2]),
        ] {
            assert_eq!(filter_flags("replay", &request), request.to_string());
        }
    }

    #[test]
    fn a_record_shows_two_event_ids_and_how_many_more() {
        assert_eq!(event_list(&[]), "-");
        assert_eq!(event_list(&[id(1)]), id(1).to_string());
        assert_eq!(
            event_list(&[id(1), id(2), id(3), id(4)]),
            format!("{} {} +2 more", id(1), id(2))
        );
    }

    #[test]
    fn the_table_lists_who_when_what_and_whether_it_was_a_dry_run() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-05-01T10:00:00.123Z")
            .map(|at| at.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let record = |n: i64, dry_run: bool, ids: Vec<uuid::Uuid>| AuditRecord {
            id: n,
            recorded_at: at,
            action: "replay".to_owned(),
            dry_run,
            actor: "alice".to_owned(),
            session_role: (n > 1).then(|| "outbox_operator".to_owned()),
            event_count: i32::try_from(ids.len()).unwrap_or(i32::MAX),
            event_ids: ids,
            filter: json!({"status": "dead", "filter": {"eventType": "INVOICE_GENERATED"}, "all": false}),
        };
        let report = AuditReport {
            records: vec![
                record(2, true, vec![id(1), id(2), id(3)]),
                record(1, false, vec![id(1)]),
            ],
            more: true,
        };
        let text = report.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ID  RECORDED AT           ACTION  DRY RUN  ACTOR"),
            "{text}"
        );
        assert!(
            lines[1]
                .starts_with(" 2  2026-05-01T10:00:00Z  replay  yes      alice  outbox_operator")
                && lines[1].ends_with(&format!("{} {} +1 more", id(1), id(2)))
                && lines[1].contains("--status dead --event-type INVOICE_GENERATED"),
            "{text}"
        );
        assert!(lines[2].contains(" no       alice  -  "), "{text}");
        assert_eq!(
            lines[3],
            "... and older records (raise --limit or narrow the filters)"
        );
        assert_eq!(lines[4], "(--format json lists every event id)");
        let empty = AuditReport {
            records: Vec::new(),
            more: false,
        };
        assert_eq!(empty.to_text(), "no audit record matched\n");
        let json = serde_json::to_value(&report).unwrap_or_default();
        let first = &json["records"][0];
        let keys: Vec<&str> = first
            .as_object()
            .map(|fields| fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "id",
                "recordedAt",
                "action",
                "dryRun",
                "actor",
                "sessionRole",
                "eventCount",
                "eventIds",
                "filter"
            ]
        );
    }
}
