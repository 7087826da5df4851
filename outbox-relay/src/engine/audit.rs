//! Which records of the replay/discard audit `audit` lists. Like [`EventFilter`], every value
//! reaches SQL as a bound parameter and a malformed one is refused up front with its flag.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::filter::{Action, EventFilter, FilterError, check_length};

/// The selection of audit records; unset fields match every record.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFilter {
    /// Recorded at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Replays or discards only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The actor the operator declared (`--actor`, default `$USER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The database role of the session that wrote the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `Some(true)`: dry runs only; `Some(false)`: changes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Records that touched one of these events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<Uuid>,
    /// Records that touched an event of this type, category, tenant and ordering key (each
    /// when set), among the events still in the table.
    #[serde(skip_serializing_if = "EventFilter::is_empty")]
    pub events: EventFilter,
}

impl AuditFilter {
    /// Sets the actor (any text up to [`super::filter::MAX_VALUE_LEN`], no control
    /// characters).
    pub fn actor(mut self, value: &str) -> Result<Self, FilterError> {
        check_length("--actor", value)?;
        self.actor = Some(value.to_owned());
        Ok(self)
    }

    /// Sets the database role (as `--actor`).
    pub fn role(mut self, value: &str) -> Result<Self, FilterError> {
        check_length("--role", value)?;
        self.role = Some(value.to_owned());
        Ok(self)
    }

    /// Checks the time window. The events' own criteria are checked as they are set
    /// ([`EventFilter::event_type`] and the others); their `since`/`until` are not used.
    pub fn validate(&self) -> Result<(), FilterError> {
        EventFilter {
            since: self.since,
            until: self.until,
            ..EventFilter::default()
        }
        .validate()?;
        if self.events.since.is_some() || self.events.until.is_some() {
            return Err(FilterError::Invalid {
                flag: "--since/--until",
                reason: "the audit's time window is the records' own (AuditFilter::since/until)"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// Whether a criterion on the events themselves (not their ids) is set: the records
    /// are then matched against the events still in the table.
    pub fn matches_on_events(&self) -> bool {
        self.events.event_type.is_some()
            || self.events.category.is_some()
            || self.events.tenant.is_some()
            || self.events.ordering_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_and_roles_are_held_to_the_filter_rules() {
        assert!(AuditFilter::default().actor("alice").is_ok());
        assert!(matches!(
            AuditFilter::default().actor("a\u{1b}[2J"),
            Err(FilterError::Invalid {
                flag: "--actor",
                ..
            })
        ));
        assert!(matches!(
            AuditFilter::default().role(&"r".repeat(10_000)),
            Err(FilterError::Invalid { flag: "--role", .. })
        ));
    }

    #[test]
    fn an_empty_window_is_refused() {
        let now = Utc::now();
        let filter = AuditFilter {
            since: Some(now),
            until: Some(now - chrono::Duration::hours(1)),
            ..AuditFilter::default()
        };
        assert!(filter.validate().is_err());
        let filter = AuditFilter {
            since: Some(now - chrono::Duration::hours(1)),
            until: Some(now),
            ..AuditFilter::default()
        };
        assert!(filter.validate().is_ok());
        assert!(!filter.matches_on_events());
        let by_type = AuditFilter {
            events: EventFilter::default()
                .event_type("ticket_created")
                .unwrap_or_default(),
            ..AuditFilter::default()
        };
        assert!(by_type.matches_on_events());
    }
}
