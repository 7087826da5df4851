//! Which events an operator command acts on. Every value reaches SQL as a bound parameter,
//! and values that cannot match anything sensible are refused up front with the flag's name.

use catalog_types::{lookup_category, registry};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Longest text a filter value may have.
pub const MAX_VALUE_LEN: usize = 512;

/// The statuses `replay` takes events from (also the values of its `--status` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplayableStatus {
    /// Events that reached the attempt limit.
    Dead,
    /// Events already delivered (to send again, e.g. for a consumer that lost data).
    Delivered,
    /// Events an operator discarded (to undo the discard).
    Discarded,
}

impl ReplayableStatus {
    /// The stored status.
    pub fn status(self) -> crate::engine::status::Status {
        match self {
            ReplayableStatus::Dead => crate::engine::status::Status::Dead,
            ReplayableStatus::Delivered => crate::engine::status::Status::Delivered,
            ReplayableStatus::Discarded => crate::engine::status::Status::Discarded,
        }
    }

    /// The value of `outbox_events.status`.
    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }
}

/// What an operator does to the selected events (also the values of `audit --action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Back to `pending` with attempts reset, keeping id and seq: published again, in order
    /// with the rest of its key.
    Replay,
    /// `dead` → `discarded`: never published; its key's later events flow on.
    Discard,
}

impl Action {
    /// The command's name, as the audit records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Discard => "discard",
        }
    }
}

/// A malformed filter value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// The value is not acceptable for the flag.
    #[error("{flag}: {reason}")]
    Invalid {
        /// The flag, e.g. `--event-type`.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A replay without any filter would resend everything.
    #[error(
        "refusing to {0} without a filter: name events with --id, --event-type, --category, --tenant, --ordering-key, --since or --until, or pass --all"
    )]
    NoFilter(&'static str),
}

/// The selection of events; unset fields match everything.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFilter {
    /// Event ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<Uuid>,
    /// Catalog event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Catalog category (display name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    /// Ordering key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// Written at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Written before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// Whether no criterion is set.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.event_type.is_none()
            && self.category.is_none()
            && self.tenant.is_none()
            && self.ordering_key.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Sets the event type, which must be in the catalog; case does not matter
    /// (`ticket_created` is `TICKET_CREATED`), and a near miss is refused with the closest
    /// event type as a suggestion. A service's own event type (`acme.WIDGET_CREATED`, the
    /// naming rule of `catalog_types::split_service_event_type`) is taken as written.
    pub fn event_type(mut self, value: &str) -> Result<Self, FilterError> {
        check_length("--event-type", value)?;
        if catalog_types::is_service_event_type(value) {
            self.event_type = Some(value.to_owned());
            return Ok(self);
        }
        let entry = registry().lookup_event_type(value).map_err(|unknown| {
            FilterError::Invalid {
                flag: "--event-type",
                reason: format!(
                    "`{}` is not an event type of the catalog{} (see `outbox-relay catalog list`)",
                    shorten(value),
                    unknown.hint()
                ),
            }
        })?;
        self.event_type = Some(entry.event_type.to_owned());
        Ok(self)
    }

    /// Sets the category, by display name or slug (any case); a near miss is refused with
    /// the closest category as a suggestion.
    pub fn category(mut self, value: &str) -> Result<Self, FilterError> {
        check_length("--category", value)?;
        let category = lookup_category(value).map_err(|unknown| FilterError::Invalid {
            flag: "--category",
            reason: format!(
                "`{}` is not a catalog category{}",
                shorten(value),
                unknown.hint()
            ),
        })?;
        self.category = Some(category.name().to_owned());
        Ok(self)
    }

    /// Sets the ordering key (any text up to [`MAX_VALUE_LEN`]).
    pub fn ordering_key(mut self, value: &str) -> Result<Self, FilterError> {
        check_length("--ordering-key", value)?;
        self.ordering_key = Some(value.to_owned());
        Ok(self)
    }

    /// Checks the time window.
    pub fn validate(&self) -> Result<(), FilterError> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(FilterError::Invalid {
                flag: "--since/--until",
                reason: format!("the window is empty ({since} is not before {until})"),
            });
        }
        Ok(())
    }
}

pub(crate) fn check_length(flag: &'static str, value: &str) -> Result<(), FilterError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(FilterError::Invalid {
            flag,
            reason: format!(
                "{} bytes is longer than the {MAX_VALUE_LEN} allowed",
                value.len()
            ),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FilterError::Invalid {
            flag,
            reason: "control characters are not allowed".to_owned(),
        });
    }
    Ok(())
}

/// The value as an error message may show it: at most 60 characters, control characters
/// escaped (an escape sequence echoed to a terminal could rewrite what the operator sees).
fn shorten(value: &str) -> String {
    let mut shown: String = value
        .chars()
        .take(60)
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if value.chars().count() > 60 {
        shown.push('…');
    }
    shown
}

/// Parses `2026-01-15T09:30:00Z` (RFC 3339) or a relative age like `2h` / `30m` / `7d`
/// (that long before `now`).
pub fn parse_time(
    flag: &'static str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FilterError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(text).map_err(|_| FilterError::Invalid {
        flag,
        reason: format!(
            "`{}` is neither an RFC 3339 time nor an age like 2h or 7d",
            shorten(text)
        ),
    })?;
    let too_long_ago = || FilterError::Invalid {
        flag,
        reason: format!("`{}` is too long ago", shorten(text)),
    };
    let age = chrono::Duration::from_std(age).map_err(|_| too_long_ago())?;
    now.checked_sub_signed(age).ok_or_else(too_long_ago)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused_by_flag_name() {
        let injection = EventFilter::default().event_type("X'; DROP TABLE outbox_events;--");
        assert!(matches!(
            injection,
            Err(FilterError::Invalid {
                flag: "--event-type",
                ..
            })
        ));
        let long = "k".repeat(10_000);
        assert!(matches!(
            EventFilter::default().ordering_key(&long),
            Err(FilterError::Invalid {
                flag: "--ordering-key",
                ..
            })
        ));
        assert!(EventFilter::default().category("Tickets; --").is_err());
        assert!(EventFilter::default().category("email_processing").is_ok());
        let service = EventFilter::default().event_type("acme.WIDGET_CREATED");
        assert_eq!(
            service.ok().and_then(|f| f.event_type).as_deref(),
            Some("acme.WIDGET_CREATED")
        );
        assert!(EventFilter::default().event_type("acme.widget").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_relative() {
        let now = Utc::now();
        assert_eq!(
            parse_time("--since", "2h", now),
            Ok(now - chrono::Duration::hours(2))
        );
        assert!(parse_time("--since", "2026-01-15T09:30:00Z", now).is_ok());
        assert!(parse_time("--since", "yesterday-ish", now).is_err());
        assert!(parse_time("--since", "2026-13-45T99:00:00Z", now).is_err());
    }
}
