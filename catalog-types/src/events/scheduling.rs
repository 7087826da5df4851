//! Scheduling: appointments, availability blocks, capacity thresholds and field-ops
//! (technician dispatch, travel, arrival and check-out).
//!
//! Appointment and field-ops events are ordered by their appointment
//! (`appointment:<appointmentId>`), so an appointment's lifecycle and its technician's
//! progress arrive in order. Availability blocks are ordered by block
//! (`schedule_block:<scheduleBlockId>`) and capacity thresholds by team (`team:<teamId>`).
//!
//! `timezone` is an IANA time-zone name (e.g. `America/New_York`) the times are shown in;
//! the `...At` instants themselves are always UTC.

use chrono::{DateTime, NaiveDate, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<AppointmentCreated>(),
        CatalogEntry::of::<AppointmentRescheduled>(),
        CatalogEntry::of::<AppointmentCanceled>(),
        CatalogEntry::of::<AppointmentCompleted>(),
        CatalogEntry::of::<AppointmentNoShow>(),
        CatalogEntry::of::<AppointmentAssigned>(),
        CatalogEntry::of::<ScheduleBlockCreated>(),
        CatalogEntry::of::<ScheduleBlockDeleted>(),
        CatalogEntry::of::<CapacityThresholdReached>(),
        CatalogEntry::of::<TechnicianDispatched>(),
        CatalogEntry::of::<TechnicianEnRoute>(),
        CatalogEntry::of::<TechnicianArrived>(),
        CatalogEntry::of::<TechnicianCheckedOut>(),
    ]
}

/// An appointment was scheduled (often tied to a ticket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AppointmentCreated {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// The new appointment.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When the appointment starts.
    pub start_at: DateTime<Utc>,
    /// When the appointment ends.
    pub end_at: DateTime<Utc>,
    /// IANA time zone the appointment was booked in, e.g. `America/New_York`.
    pub timezone: String,
    /// User or team the appointment is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_id: Option<Uuid>,
    /// Kind of assignee, e.g. `user` or `team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_type: Option<String>,
    /// Staff user who scheduled it.
    pub created_by_user_id: Uuid,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// Where it takes place (address, room or meeting link), free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

catalog_event!(AppointmentCreated {
    event_type: "APPOINTMENT_CREATED",
    name: "Appointment Created",
    description: "Appointment scheduled (often tied to a ticket).",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: AppointmentCreated {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        start_at: sample::at() + chrono::Duration::days(1),
        end_at: sample::at() + chrono::Duration::days(1) + chrono::Duration::hours(1),
        timezone: "America/New_York".to_owned(),
        assignee_id: Some(sample::id(3)),
        assignee_type: Some("user".to_owned()),
        created_by_user_id: sample::id(4),
        created_at: sample::at(),
        location: Some("Client HQ, 100 Main St, Springfield".to_owned()),
    },
});

/// An appointment's time was changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AppointmentRescheduled {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// The rescheduled appointment.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Start before the change.
    pub previous_start_at: DateTime<Utc>,
    /// End before the change.
    pub previous_end_at: DateTime<Utc>,
    /// Start after the change.
    pub new_start_at: DateTime<Utc>,
    /// End after the change.
    pub new_end_at: DateTime<Utc>,
    /// IANA time zone the appointment is booked in, e.g. `America/New_York`.
    pub timezone: String,
    /// Staff user who rescheduled it.
    pub actor_user_id: Uuid,
    /// When it was rescheduled.
    pub rescheduled_at: DateTime<Utc>,
    /// Why it was rescheduled, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(AppointmentRescheduled {
    event_type: "APPOINTMENT_RESCHEDULED",
    name: "Appointment Rescheduled",
    description: "Time changed.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: AppointmentRescheduled {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        previous_start_at: sample::at() + chrono::Duration::days(1),
        previous_end_at: sample::at() + chrono::Duration::days(1) + chrono::Duration::hours(1),
        new_start_at: sample::at() + chrono::Duration::days(2),
        new_end_at: sample::at() + chrono::Duration::days(2) + chrono::Duration::hours(1),
        timezone: "America/New_York".to_owned(),
        actor_user_id: sample::id(3),
        rescheduled_at: sample::at(),
        reason: Some("Customer requested a later day".to_owned()),
    },
});

/// An appointment was canceled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AppointmentCanceled {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// The canceled appointment.
    pub appointment_id: Uuid,
    /// Ticket the appointment was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user who canceled it.
    pub actor_user_id: Uuid,
    /// When it was canceled.
    pub canceled_at: DateTime<Utc>,
    /// Why it was canceled, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(AppointmentCanceled {
    event_type: "APPOINTMENT_CANCELED",
    name: "Appointment Canceled",
    description: "Appointment canceled.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: AppointmentCanceled {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        actor_user_id: sample::id(3),
        canceled_at: sample::at(),
        reason: Some("Issue resolved remotely".to_owned()),
    },
});

/// An appointment was marked completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AppointmentCompleted {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// The completed appointment.
    pub appointment_id: Uuid,
    /// Ticket the appointment was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user who marked it completed.
    pub actor_user_id: Uuid,
    /// When it was marked completed.
    pub completed_at: DateTime<Utc>,
    /// Outcome of the appointment, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

catalog_event!(AppointmentCompleted {
    event_type: "APPOINTMENT_COMPLETED",
    name: "Appointment Completed",
    description: "Marked completed.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: AppointmentCompleted {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        actor_user_id: sample::id(3),
        completed_at: sample::at(),
        outcome: Some("Replaced failed switch; network restored".to_owned()),
    },
});

/// The party that did not show up to an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppointmentNoShowParty {
    /// The customer (client contact) did not show up.
    Customer,
    /// The agent (staff member) did not show up.
    Agent,
}

/// A no-show was recorded for an appointment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AppointmentNoShow {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// The missed appointment.
    pub appointment_id: Uuid,
    /// Ticket the appointment was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user who recorded the no-show.
    pub actor_user_id: Uuid,
    /// When the no-show was recorded.
    pub marked_at: DateTime<Utc>,
    /// Who did not show up.
    pub party: AppointmentNoShowParty,
}

catalog_event!(AppointmentNoShow {
    event_type: "APPOINTMENT_NO_SHOW",
    name: "Appointment No-Show",
    description: "No-show recorded.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: AppointmentNoShow {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        actor_user_id: sample::id(3),
        marked_at: sample::at(),
        party: AppointmentNoShowParty::Customer,
    },
});

/// An appointment was assigned or reassigned to an agent or team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AppointmentAssigned {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// The (re)assigned appointment.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// User or team it was assigned to before (absent on first assignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_assignee_id: Option<Uuid>,
    /// Kind of the previous assignee, e.g. `user` or `team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_assignee_type: Option<String>,
    /// User or team it is now assigned to.
    pub new_assignee_id: Uuid,
    /// Kind of the new assignee, e.g. `user` or `team`.
    pub new_assignee_type: String,
    /// Staff user who assigned it.
    pub actor_user_id: Uuid,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
}

catalog_event!(AppointmentAssigned {
    event_type: "APPOINTMENT_ASSIGNED",
    name: "Appointment Assigned",
    description: "Assigned/reassigned to an agent/team.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: AppointmentAssigned {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        previous_assignee_id: Some(sample::id(3)),
        previous_assignee_type: Some("user".to_owned()),
        new_assignee_id: sample::id(4),
        new_assignee_type: "team".to_owned(),
        actor_user_id: sample::id(5),
        assigned_at: sample::at(),
    },
});

/// Who owns an availability block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScheduleBlockOwnerType {
    /// A single staff user.
    User,
    /// A team.
    Team,
}

/// An availability block was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ScheduleBlockCreated {
    /// Tenant of the block.
    pub tenant_id: Uuid,
    /// The new availability block.
    pub schedule_block_id: Uuid,
    /// User or team whose availability it blocks.
    pub owner_id: Uuid,
    /// Whether the owner is a user or a team.
    pub owner_type: ScheduleBlockOwnerType,
    /// When the block starts.
    pub start_at: DateTime<Utc>,
    /// When the block ends.
    pub end_at: DateTime<Utc>,
    /// IANA time zone the block was entered in, e.g. `America/New_York`.
    pub timezone: String,
    /// Staff user who created it.
    pub actor_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Why the time is blocked, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(ScheduleBlockCreated {
    event_type: "SCHEDULE_BLOCK_CREATED",
    name: "Schedule Block Created",
    description: "Availability block created.",
    category: Scheduling,
    ordering_key: "schedule_block" => schedule_block_id,
    example: ScheduleBlockCreated {
        tenant_id: sample::TENANT,
        schedule_block_id: sample::id(1),
        owner_id: sample::id(2),
        owner_type: ScheduleBlockOwnerType::User,
        start_at: sample::at() + chrono::Duration::days(3),
        end_at: sample::at() + chrono::Duration::days(3) + chrono::Duration::hours(8),
        timezone: "America/New_York".to_owned(),
        actor_user_id: sample::id(3),
        created_at: sample::at(),
        reason: Some("Training day".to_owned()),
    },
});

/// An availability block was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ScheduleBlockDeleted {
    /// Tenant of the block.
    pub tenant_id: Uuid,
    /// The removed availability block.
    pub schedule_block_id: Uuid,
    /// Staff user who removed it.
    pub actor_user_id: Uuid,
    /// When it was removed.
    pub deleted_at: DateTime<Utc>,
    /// Why it was removed, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(ScheduleBlockDeleted {
    event_type: "SCHEDULE_BLOCK_DELETED",
    name: "Schedule Block Deleted",
    description: "Availability block removed.",
    category: Scheduling,
    ordering_key: "schedule_block" => schedule_block_id,
    example: ScheduleBlockDeleted {
        tenant_id: sample::TENANT,
        schedule_block_id: sample::id(1),
        actor_user_id: sample::id(2),
        deleted_at: sample::at(),
        reason: Some("Training rescheduled".to_owned()),
    },
});

/// A team's capacity threshold for a day was hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CapacityThresholdReached {
    /// Tenant of the team.
    pub tenant_id: Uuid,
    /// Team whose capacity was reached.
    pub team_id: Uuid,
    /// Calendar day the capacity applies to.
    pub date: NaiveDate,
    /// Configured capacity of the team for that day (number of bookings).
    pub capacity_limit: u32,
    /// Bookings for the team on that day when the threshold was hit.
    pub current_booked: u32,
    /// When the threshold was hit.
    pub triggered_at: DateTime<Utc>,
}

catalog_event!(CapacityThresholdReached {
    event_type: "CAPACITY_THRESHOLD_REACHED",
    name: "Capacity Threshold Reached",
    description: "Team/day capacity threshold hit.",
    category: Scheduling,
    ordering_key: "team" => team_id,
    example: CapacityThresholdReached {
        tenant_id: sample::TENANT,
        team_id: sample::id(1),
        date: sample::date(),
        capacity_limit: 20,
        current_booked: 18,
        triggered_at: sample::at(),
    },
});

/// A technician was dispatched to an appointment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TechnicianDispatched {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// Appointment the technician is dispatched to.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user dispatched.
    pub technician_user_id: Uuid,
    /// Staff user (dispatcher) who dispatched them.
    pub dispatched_by_user_id: Uuid,
    /// When they were dispatched.
    pub dispatched_at: DateTime<Utc>,
}

catalog_event!(TechnicianDispatched {
    event_type: "TECHNICIAN_DISPATCHED",
    name: "Technician Dispatched",
    description: "Dispatch action taken.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: TechnicianDispatched {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        technician_user_id: sample::id(3),
        dispatched_by_user_id: sample::id(4),
        dispatched_at: sample::at(),
    },
});

/// A technician is on the way to an appointment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TechnicianEnRoute {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// Appointment the technician is travelling to.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user travelling.
    pub technician_user_id: Uuid,
    /// When they set off.
    pub started_at: DateTime<Utc>,
    /// Estimated time of arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<DateTime<Utc>>,
}

catalog_event!(TechnicianEnRoute {
    event_type: "TECHNICIAN_EN_ROUTE",
    name: "Technician En Route",
    description: "En route status update.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: TechnicianEnRoute {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        technician_user_id: sample::id(3),
        started_at: sample::at(),
        eta: Some(sample::at() + chrono::Duration::minutes(35)),
    },
});

/// A technician's arrival on site was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TechnicianArrived {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// Appointment the technician arrived for.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user who arrived.
    pub technician_user_id: Uuid,
    /// When they arrived.
    pub arrived_at: DateTime<Utc>,
    /// Where they checked in (address or coordinates), free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

catalog_event!(TechnicianArrived {
    event_type: "TECHNICIAN_ARRIVED",
    name: "Technician Arrived",
    description: "Arrival recorded.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: TechnicianArrived {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        technician_user_id: sample::id(3),
        arrived_at: sample::at(),
        location: Some("Client HQ, 100 Main St, Springfield".to_owned()),
    },
});

/// A technician checked out after completing on-site work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TechnicianCheckedOut {
    /// Tenant of the appointment.
    pub tenant_id: Uuid,
    /// Appointment the work was done for.
    pub appointment_id: Uuid,
    /// Ticket the appointment is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Staff user who checked out.
    pub technician_user_id: Uuid,
    /// When they checked out.
    pub checked_out_at: DateTime<Utc>,
    /// Summary of the work done on site, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_summary: Option<String>,
}

catalog_event!(TechnicianCheckedOut {
    event_type: "TECHNICIAN_CHECKED_OUT",
    name: "Technician Checked Out",
    description: "Completed onsite work.",
    category: Scheduling,
    ordering_key: "appointment" => appointment_id,
    example: TechnicianCheckedOut {
        tenant_id: sample::TENANT,
        appointment_id: sample::id(1),
        ticket_id: Some(sample::id(2)),
        technician_user_id: sample::id(3),
        checked_out_at: sample::at(),
        work_summary: Some("Replaced failed switch and verified connectivity".to_owned()),
    },
});
