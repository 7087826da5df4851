//! Surveys and CSAT: survey requests, reminders, responses, expiry and CSAT alerts.
//!
//! Survey events are ordered by their survey (`survey:<surveyId>`); CSAT alerts, which name
//! no entity, by their aggregation window (`csat_window:<window>`).

use std::fmt;

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<SurveySent>(),
        CatalogEntry::of::<SurveyResponseReceived>(),
        CatalogEntry::of::<SurveyReminderSent>(),
        CatalogEntry::of::<SurveyExpired>(),
        CatalogEntry::of::<CsatAlertTriggered>(),
    ]
}

/// The kind of survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SurveyType {
    /// Customer satisfaction survey.
    Csat,
    /// Net Promoter Score survey.
    Nps,
    /// A tenant-defined survey.
    Custom,
}

/// A survey or CSAT request was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct SurveySent {
    /// Tenant of the survey.
    pub tenant_id: Uuid,
    /// The survey.
    pub survey_id: Uuid,
    /// Kind of survey.
    pub survey_type: SurveyType,
    /// Contact or user asked to respond.
    pub recipient_id: Uuid,
    /// Ticket the survey is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// Channel it was sent through, e.g. `email`, `sms`, `portal` (free text: the catalog lists no values).
    pub channel: String,
    /// Template the request was rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<Uuid>,
}

catalog_event!(SurveySent {
    event_type: "SURVEY_SENT",
    name: "Survey Sent",
    description: "Survey/CSAT request sent.",
    category: Surveys,
    ordering_key: "survey" => survey_id,
    example: SurveySent {
        tenant_id: sample::TENANT,
        survey_id: sample::id(1),
        survey_type: SurveyType::Csat,
        recipient_id: sample::id(2),
        ticket_id: Some(sample::id(3)),
        sent_at: sample::at(),
        channel: "email".to_owned(),
        template_id: Some(sample::id(4)),
    },
});

/// A survey response was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct SurveyResponseReceived {
    /// Tenant of the survey.
    pub tenant_id: Uuid,
    /// The survey answered.
    pub survey_id: Uuid,
    /// The recorded response.
    pub response_id: Uuid,
    /// Contact or user who responded.
    pub recipient_id: Uuid,
    /// Ticket the survey is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When the response was given.
    pub responded_at: DateTime<Utc>,
    /// Rating given, on the survey's integer scale (CSAT 1–5, NPS 0–10).
    pub score: u32,
    /// Free-text comment left with the rating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

catalog_event!(SurveyResponseReceived {
    event_type: "SURVEY_RESPONSE_RECEIVED",
    name: "Survey Response Received",
    description: "Survey response recorded.",
    category: Surveys,
    ordering_key: "survey" => survey_id,
    example: SurveyResponseReceived {
        tenant_id: sample::TENANT,
        survey_id: sample::id(1),
        response_id: sample::id(2),
        recipient_id: sample::id(3),
        ticket_id: Some(sample::id(4)),
        responded_at: sample::at(),
        score: 4,
        comment: Some("Quick fix, thanks!".to_owned()),
    },
});

/// A survey reminder was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct SurveyReminderSent {
    /// Tenant of the survey.
    pub tenant_id: Uuid,
    /// The survey.
    pub survey_id: Uuid,
    /// Contact or user reminded.
    pub recipient_id: Uuid,
    /// Ticket the survey is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When the reminder was sent.
    pub sent_at: DateTime<Utc>,
    /// Channel the reminder was sent through, e.g. `email`, `sms` (free text, as in `SURVEY_SENT`).
    pub channel: String,
    /// Which reminder this is, starting at 1.
    pub reminder_number: u32,
}

catalog_event!(SurveyReminderSent {
    event_type: "SURVEY_REMINDER_SENT",
    name: "Survey Reminder Sent",
    description: "Reminder sent.",
    category: Surveys,
    ordering_key: "survey" => survey_id,
    example: SurveyReminderSent {
        tenant_id: sample::TENANT,
        survey_id: sample::id(1),
        recipient_id: sample::id(2),
        ticket_id: Some(sample::id(3)),
        sent_at: sample::at(),
        channel: "email".to_owned(),
        reminder_number: 1,
    },
});

/// A survey expired without a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct SurveyExpired {
    /// Tenant of the survey.
    pub tenant_id: Uuid,
    /// The survey.
    pub survey_id: Uuid,
    /// Contact or user who did not respond.
    pub recipient_id: Uuid,
    /// Ticket the survey was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When it expired.
    pub expired_at: DateTime<Utc>,
}

catalog_event!(SurveyExpired {
    event_type: "SURVEY_EXPIRED",
    name: "Survey Expired",
    description: "Survey expired without response.",
    category: Surveys,
    ordering_key: "survey" => survey_id,
    example: SurveyExpired {
        tenant_id: sample::TENANT,
        survey_id: sample::id(1),
        recipient_id: sample::id(2),
        ticket_id: Some(sample::id(3)),
        expired_at: sample::at(),
    },
});

/// The period a CSAT score is aggregated over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CsatAlertWindow {
    /// The last day.
    Daily,
    /// The last week.
    Weekly,
    /// The last month.
    Monthly,
}

impl fmt::Display for CsatAlertWindow {
    /// Writes the JSON value (`daily`, `weekly`, `monthly`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsatAlertWindow::Daily => "daily",
            CsatAlertWindow::Weekly => "weekly",
            CsatAlertWindow::Monthly => "monthly",
        })
    }
}

/// What a CSAT alert's score covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CsatAlertScopeType {
    /// One agent's tickets.
    Agent,
    /// One team's tickets.
    Team,
    /// The whole organisation.
    Org,
}

/// A CSAT score dropped, or fell below the alert threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CsatAlertTriggered {
    /// Tenant of the alert.
    pub tenant_id: Uuid,
    /// Period the score is aggregated over.
    pub window: CsatAlertWindow,
    /// Aggregated CSAT score over the window (an average, so fractional), on the same scale as `threshold`.
    pub score: f64,
    /// Score of the comparison period the drop is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `score - baseline` (negative for a drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// Configured score below which the alert fires.
    pub threshold: f64,
    /// When the alert fired.
    pub triggered_at: DateTime<Utc>,
    /// What the score covers.
    pub scope_type: CsatAlertScopeType,
    /// The agent (user) or team the score covers; absent for `org`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<Uuid>,
}

catalog_event!(CsatAlertTriggered {
    event_type: "CSAT_ALERT_TRIGGERED",
    name: "CSAT Alert Triggered",
    description: "CSAT dropped / low score alert.",
    category: Surveys,
    // Alerts have no entity id; keying by tenant keeps one tenant's alerts in order
    // without funnelling every tenant's alerts through one key.
    ordering_key: "csat_alert" => tenant_id,
    example: CsatAlertTriggered {
        tenant_id: sample::TENANT,
        window: CsatAlertWindow::Weekly,
        score: 3.5,
        baseline: Some(4.25),
        delta: Some(-0.75),
        threshold: 4.0,
        triggered_at: sample::at(),
        scope_type: CsatAlertScopeType::Team,
        scope_id: Some(sample::id(1)),
    },
});
