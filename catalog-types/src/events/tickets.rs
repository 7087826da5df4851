//! Ticket events of catalog v2: status, priority, assignment, merges and splits, tags,
//! boards, escalation, messages, notes and time entries, plus the SLA stage and
//! approval groups.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<TicketStatusChanged>(),
        CatalogEntry::of::<TicketPriorityChanged>(),
        CatalogEntry::of::<TicketAssigned>(),
        CatalogEntry::of::<TicketUnassigned>(),
        CatalogEntry::of::<TicketReopened>(),
        CatalogEntry::of::<TicketMerged>(),
        CatalogEntry::of::<TicketSplit>(),
        CatalogEntry::of::<TicketTagsChanged>(),
        CatalogEntry::of::<TicketQueueChanged>(),
        CatalogEntry::of::<TicketEscalated>(),
        CatalogEntry::of::<TicketMessageAdded>(),
        CatalogEntry::of::<TicketCustomerReplied>(),
        CatalogEntry::of::<TicketInternalNoteAdded>(),
        CatalogEntry::of::<TicketTimeEntryAdded>(),
        CatalogEntry::of::<TicketSlaStageEntered>(),
        CatalogEntry::of::<TicketSlaStageMet>(),
        CatalogEntry::of::<TicketSlaStageBreached>(),
        CatalogEntry::of::<TicketApprovalRequested>(),
        CatalogEntry::of::<TicketApprovalGranted>(),
        CatalogEntry::of::<TicketApprovalRejected>(),
    ]
}

// ---------------------------------------------------------------------------------------
// Status, priority, assignment
// ---------------------------------------------------------------------------------------

/// A ticket moved from one status to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketStatusChanged {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket whose status changed.
    pub ticket_id: Uuid,
    /// Status before the change.
    pub previous_status_id: Uuid,
    /// Status after the change.
    pub new_status_id: Uuid,
    /// Staff user who changed the status.
    pub actor_user_id: Uuid,
    /// When the status changed.
    pub changed_at: DateTime<Utc>,
    /// Free-text reason given for the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketStatusChanged {
    event_type: "TICKET_STATUS_CHANGED",
    name: "Ticket Status Changed",
    description: "Ticket moved between statuses.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketStatusChanged {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_status_id: sample::id(2),
        new_status_id: sample::id(3),
        actor_user_id: sample::id(4),
        changed_at: sample::at(),
        reason: Some("Waiting on the customer's vendor".to_owned()),
    },
});

/// A ticket's priority was changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketPriorityChanged {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket whose priority changed.
    pub ticket_id: Uuid,
    /// Priority before the change.
    pub previous_priority_id: Uuid,
    /// Priority after the change.
    pub new_priority_id: Uuid,
    /// Staff user who changed the priority.
    pub actor_user_id: Uuid,
    /// When the priority changed.
    pub changed_at: DateTime<Utc>,
    /// Free-text reason given for the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketPriorityChanged {
    event_type: "TICKET_PRIORITY_CHANGED",
    name: "Ticket Priority Changed",
    description: "Priority updated.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketPriorityChanged {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_priority_id: sample::id(2),
        new_priority_id: sample::id(3),
        actor_user_id: sample::id(4),
        changed_at: sample::at(),
        reason: Some("Whole office is offline".to_owned()),
    },
});

/// A ticket was assigned (or reassigned) to an agent or a team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketAssigned {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The assigned ticket.
    pub ticket_id: Uuid,
    /// The previous assignee (user or team), when the ticket was already assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_assignee_id: Option<Uuid>,
    /// Kind of the previous assignee, e.g. `user` or `team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_assignee_type: Option<String>,
    /// The new assignee (user or team).
    pub new_assignee_id: Uuid,
    /// Kind of the new assignee, e.g. `user` or `team`.
    pub new_assignee_type: String,
    /// Staff user who made the assignment.
    pub actor_user_id: Uuid,
    /// When the ticket was assigned.
    pub assigned_at: DateTime<Utc>,
}

catalog_event!(TicketAssigned {
    event_type: "TICKET_ASSIGNED",
    name: "Ticket Assigned",
    description: "Assigned to an agent/team.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketAssigned {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_assignee_id: Some(sample::id(2)),
        previous_assignee_type: Some("team".to_owned()),
        new_assignee_id: sample::id(3),
        new_assignee_type: "user".to_owned(),
        actor_user_id: sample::id(4),
        assigned_at: sample::at(),
    },
});

/// A ticket was unassigned from its agent or team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketUnassigned {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The unassigned ticket.
    pub ticket_id: Uuid,
    /// The assignee (user or team) it was removed from.
    pub previous_assignee_id: Uuid,
    /// Kind of the previous assignee, e.g. `user` or `team`.
    pub previous_assignee_type: String,
    /// Staff user who removed the assignment.
    pub actor_user_id: Uuid,
    /// When the ticket was unassigned.
    pub unassigned_at: DateTime<Utc>,
    /// Free-text reason given for the unassignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketUnassigned {
    event_type: "TICKET_UNASSIGNED",
    name: "Ticket Unassigned",
    description: "Unassigned from agent/team.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketUnassigned {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_assignee_id: sample::id(2),
        previous_assignee_type: "user".to_owned(),
        actor_user_id: sample::id(3),
        unassigned_at: sample::at(),
        reason: Some("Technician on leave".to_owned()),
    },
});

/// A closed ticket was reopened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketReopened {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The reopened ticket.
    pub ticket_id: Uuid,
    /// The closed status it left.
    pub previous_status_id: Uuid,
    /// The open status it entered.
    pub new_status_id: Uuid,
    /// Staff user who reopened it.
    pub actor_user_id: Uuid,
    /// When it was reopened.
    pub reopened_at: DateTime<Utc>,
    /// Free-text reason given for reopening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketReopened {
    event_type: "TICKET_REOPENED",
    name: "Ticket Reopened",
    description: "Closed ticket reopened.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketReopened {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_status_id: sample::id(2),
        new_status_id: sample::id(3),
        actor_user_id: sample::id(4),
        reopened_at: sample::at(),
        reason: Some("Issue came back after reboot".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------
// Merge, split, tags, boards, escalation
// ---------------------------------------------------------------------------------------

/// A ticket was merged into another ticket.
///
/// Ordered by the source ticket, the one that stops existing on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketMerged {
    /// Tenant of the tickets.
    pub tenant_id: Uuid,
    /// The ticket that was merged away.
    pub source_ticket_id: Uuid,
    /// The ticket it was merged into.
    pub target_ticket_id: Uuid,
    /// Staff user who merged the tickets.
    pub actor_user_id: Uuid,
    /// When the merge happened.
    pub merged_at: DateTime<Utc>,
    /// Free-text reason given for the merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketMerged {
    event_type: "TICKET_MERGED",
    name: "Ticket Merged",
    description: "Ticket merged into another.",
    category: Tickets,
    ordering_key: "ticket" => source_ticket_id,
    example: TicketMerged {
        tenant_id: sample::TENANT,
        source_ticket_id: sample::id(1),
        target_ticket_id: sample::id(2),
        actor_user_id: sample::id(3),
        merged_at: sample::at(),
        reason: Some("Duplicate report of the same outage".to_owned()),
    },
});

/// A ticket was split into several tickets.
///
/// Ordered by the original ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketSplit {
    /// Tenant of the tickets.
    pub tenant_id: Uuid,
    /// The ticket that was split.
    pub original_ticket_id: Uuid,
    /// The tickets created by the split.
    pub new_ticket_ids: Vec<Uuid>,
    /// Staff user who split the ticket.
    pub actor_user_id: Uuid,
    /// When the split happened.
    pub split_at: DateTime<Utc>,
    /// Free-text reason given for the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketSplit {
    event_type: "TICKET_SPLIT",
    name: "Ticket Split",
    description: "Ticket split into multiple tickets.",
    category: Tickets,
    ordering_key: "ticket" => original_ticket_id,
    example: TicketSplit {
        tenant_id: sample::TENANT,
        original_ticket_id: sample::id(1),
        new_ticket_ids: vec![sample::id(2), sample::id(3)],
        actor_user_id: sample::id(4),
        split_at: sample::at(),
        reason: Some("Printer and VPN issues handled separately".to_owned()),
    },
});

/// Tags were applied to and/or removed from a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketTagsChanged {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket whose tags changed.
    pub ticket_id: Uuid,
    /// Tags applied to the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_tag_ids: Option<Vec<Uuid>>,
    /// Tags removed from the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_tag_ids: Option<Vec<Uuid>>,
    /// Staff user who changed the tags.
    pub actor_user_id: Uuid,
    /// When the tags changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(TicketTagsChanged {
    event_type: "TICKET_TAGS_CHANGED",
    name: "Ticket Tags Changed",
    description: "Tags applied/removed on ticket.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketTagsChanged {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        added_tag_ids: Some(vec![sample::id(2), sample::id(3)]),
        removed_tag_ids: Some(vec![sample::id(4)]),
        actor_user_id: sample::id(5),
        changed_at: sample::at(),
    },
});

/// A ticket moved from one board (queue) to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketQueueChanged {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket that moved.
    pub ticket_id: Uuid,
    /// Board before the move, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_board_id: Option<Uuid>,
    /// Board after the move, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_board_id: Option<Uuid>,
    /// Staff user who moved the ticket.
    pub actor_user_id: Uuid,
    /// When the ticket moved.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(TicketQueueChanged {
    event_type: "TICKET_QUEUE_CHANGED",
    name: "Ticket Queue/Board Changed",
    description: "Ticket moved between boards/queues.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketQueueChanged {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_board_id: Some(sample::id(2)),
        new_board_id: Some(sample::id(3)),
        actor_user_id: sample::id(4),
        changed_at: sample::at(),
    },
});

/// A ticket was escalated to a higher tier, team or queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketEscalated {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The escalated ticket.
    pub ticket_id: Uuid,
    /// Queue (board) the ticket was escalated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_queue_id: Option<Uuid>,
    /// Queue (board) the ticket was escalated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_queue_id: Option<Uuid>,
    /// Staff user who escalated the ticket.
    pub actor_user_id: Uuid,
    /// When the ticket was escalated.
    pub escalated_at: DateTime<Utc>,
    /// Free-text reason given for the escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketEscalated {
    event_type: "TICKET_ESCALATED",
    name: "Ticket Escalated",
    description: "Escalated to higher tier/team/queue.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketEscalated {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        from_queue_id: Some(sample::id(2)),
        to_queue_id: Some(sample::id(3)),
        actor_user_id: sample::id(4),
        escalated_at: sample::at(),
        reason: Some("Needs a network engineer".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------
// Messages, notes, time
// ---------------------------------------------------------------------------------------

/// Who can see a ticket message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketMessageVisibility {
    /// Visible to the customer.
    Public,
    /// Visible to staff only.
    Internal,
}

/// Kind of author of a ticket message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketMessageAuthorType {
    /// A staff user.
    User,
    /// A client contact.
    Contact,
}

/// Channel through which a ticket message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketMessageChannel {
    /// By e-mail.
    Email,
    /// Through the client portal.
    Portal,
    /// Through the staff user interface.
    Ui,
    /// Through the API.
    Api,
}

/// A message or comment (public or internal) was added to a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketMessageAdded {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket the message belongs to.
    pub ticket_id: Uuid,
    /// The message (ticket comment) record.
    pub message_id: Uuid,
    /// Who can see the message.
    pub visibility: TicketMessageVisibility,
    /// The author: a user id or a contact id, per `authorType`.
    pub author_id: Uuid,
    /// Whether the author is a staff user or a contact.
    pub author_type: TicketMessageAuthorType,
    /// Channel the message came through.
    pub channel: TicketMessageChannel,
    /// When the message was added.
    pub created_at: DateTime<Utc>,
    /// Number of attachments on the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments_count: Option<u32>,
}

catalog_event!(TicketMessageAdded {
    event_type: "TICKET_MESSAGE_ADDED",
    name: "Ticket Message Added",
    description: "Any message/comment added (public/private).",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketMessageAdded {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        message_id: sample::id(2),
        visibility: TicketMessageVisibility::Public,
        author_id: sample::id(3),
        author_type: TicketMessageAuthorType::User,
        channel: TicketMessageChannel::Ui,
        created_at: sample::at(),
        attachments_count: Some(1),
    },
});

/// A customer replied on a ticket (through the portal or by e-mail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketCustomerReplied {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket replied to.
    pub ticket_id: Uuid,
    /// The reply (ticket comment) record.
    pub message_id: Uuid,
    /// The contact who replied.
    pub contact_id: Uuid,
    /// Channel the reply came through.
    pub channel: TicketMessageChannel,
    /// When the reply was received.
    pub received_at: DateTime<Utc>,
    /// Number of attachments on the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments_count: Option<u32>,
}

catalog_event!(TicketCustomerReplied {
    event_type: "TICKET_CUSTOMER_REPLIED",
    name: "Ticket Customer Replied",
    description: "Customer reply received (portal/email).",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketCustomerReplied {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        message_id: sample::id(2),
        contact_id: sample::id(3),
        channel: TicketMessageChannel::Email,
        received_at: sample::at(),
        attachments_count: Some(2),
    },
});

/// An internal (staff-only) note was added to a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketInternalNoteAdded {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket the note belongs to.
    pub ticket_id: Uuid,
    /// The note record.
    pub note_id: Uuid,
    /// Staff user who wrote the note.
    pub actor_user_id: Uuid,
    /// When the note was added.
    pub created_at: DateTime<Utc>,
}

catalog_event!(TicketInternalNoteAdded {
    event_type: "TICKET_INTERNAL_NOTE_ADDED",
    name: "Ticket Internal Note Added",
    description: "Internal/private note added.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketInternalNoteAdded {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        note_id: sample::id(2),
        actor_user_id: sample::id(3),
        created_at: sample::at(),
    },
});

/// Time was logged against a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketTimeEntryAdded {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket the time was logged against.
    pub ticket_id: Uuid,
    /// The time entry record.
    pub time_entry_id: Uuid,
    /// Staff user who logged the time.
    pub actor_user_id: Uuid,
    /// Duration logged, in minutes.
    pub minutes: u32,
    /// Whether the time is billable.
    pub billable: bool,
    /// When the entry was created.
    pub created_at: DateTime<Utc>,
}

catalog_event!(TicketTimeEntryAdded {
    event_type: "TICKET_TIME_ENTRY_ADDED",
    name: "Ticket Time Entry Added",
    description: "Time logged against ticket.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketTimeEntryAdded {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        time_entry_id: sample::id(2),
        actor_user_id: sample::id(3),
        minutes: 45,
        billable: true,
        created_at: sample::at(),
    },
});

// ---------------------------------------------------------------------------------------
// SLA
// ---------------------------------------------------------------------------------------

/// The SLA stage a ticket SLA event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketSlaStage {
    /// Time to first response.
    Response,
    /// Time to resolution.
    Resolution,
    /// A stage defined by the SLA policy.
    Custom,
}

/// A ticket entered an SLA stage (its clock started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketSlaStageEntered {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket under SLA.
    pub ticket_id: Uuid,
    /// The SLA policy applied.
    pub sla_policy_id: Uuid,
    /// The stage that started.
    pub stage: TicketSlaStage,
    /// When the stage started.
    pub entered_at: DateTime<Utc>,
    /// When the stage must be met.
    pub target_at: DateTime<Utc>,
}

catalog_event!(TicketSlaStageEntered {
    event_type: "TICKET_SLA_STAGE_ENTERED",
    name: "Ticket SLA Stage Entered",
    description: "SLA stage started.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketSlaStageEntered {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        sla_policy_id: sample::id(2),
        stage: TicketSlaStage::Response,
        entered_at: sample::at(),
        target_at: sample::at() + chrono::Duration::hours(1),
    },
});

/// A ticket met an SLA stage before its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketSlaStageMet {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket under SLA.
    pub ticket_id: Uuid,
    /// The SLA policy applied.
    pub sla_policy_id: Uuid,
    /// The stage that was met.
    pub stage: TicketSlaStage,
    /// When the stage was met.
    pub met_at: DateTime<Utc>,
    /// When the stage had to be met.
    pub target_at: DateTime<Utc>,
}

catalog_event!(TicketSlaStageMet {
    event_type: "TICKET_SLA_STAGE_MET",
    name: "Ticket SLA Stage Met",
    description: "SLA met.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketSlaStageMet {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        sla_policy_id: sample::id(2),
        stage: TicketSlaStage::Response,
        met_at: sample::at(),
        target_at: sample::at() + chrono::Duration::minutes(20),
    },
});

/// A ticket missed an SLA stage's target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketSlaStageBreached {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket under SLA.
    pub ticket_id: Uuid,
    /// The SLA policy applied.
    pub sla_policy_id: Uuid,
    /// The stage that was breached.
    pub stage: TicketSlaStage,
    /// When the breach was detected.
    pub breached_at: DateTime<Utc>,
    /// When the stage had to be met.
    pub target_at: DateTime<Utc>,
    /// How late the stage is at `breachedAt`, in seconds.
    pub overdue_by_seconds: u64,
}

catalog_event!(TicketSlaStageBreached {
    event_type: "TICKET_SLA_STAGE_BREACHED",
    name: "Ticket SLA Stage Breached",
    description: "SLA breached.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketSlaStageBreached {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        sla_policy_id: sample::id(2),
        stage: TicketSlaStage::Resolution,
        breached_at: sample::at(),
        target_at: sample::at() - chrono::Duration::minutes(5),
        overdue_by_seconds: 300,
    },
});

// ---------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------

/// Approval was requested on a ticket (access, spend, change ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketApprovalRequested {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket needing approval.
    pub ticket_id: Uuid,
    /// The approval request record.
    pub approval_request_id: Uuid,
    /// Kind of approval, e.g. `access`, `spend` or `change`.
    pub approval_type: String,
    /// Staff user who requested the approval.
    pub requested_by_user_id: Uuid,
    /// When the approval was requested.
    pub requested_at: DateTime<Utc>,
    /// Free-text notes for the approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

catalog_event!(TicketApprovalRequested {
    event_type: "TICKET_APPROVAL_REQUESTED",
    name: "Ticket Approval Requested",
    description: "Request approval (access/spend/change).",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketApprovalRequested {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        approval_request_id: sample::id(2),
        approval_type: "spend".to_owned(),
        requested_by_user_id: sample::id(3),
        requested_at: sample::at(),
        notes: Some("Replacement switch, quote attached".to_owned()),
    },
});

/// An approval requested on a ticket was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketApprovalGranted {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket the approval is for.
    pub ticket_id: Uuid,
    /// The approval request record.
    pub approval_request_id: Uuid,
    /// User who granted the approval.
    pub approved_by_user_id: Uuid,
    /// When the approval was granted.
    pub approved_at: DateTime<Utc>,
    /// Free-text conditions attached to the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<String>,
}

catalog_event!(TicketApprovalGranted {
    event_type: "TICKET_APPROVAL_GRANTED",
    name: "Ticket Approval Granted",
    description: "Approval granted.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketApprovalGranted {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        approval_request_id: sample::id(2),
        approved_by_user_id: sample::id(3),
        approved_at: sample::at(),
        conditions: Some("Up to $1,200 including shipping".to_owned()),
    },
});

/// An approval requested on a ticket was rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketApprovalRejected {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket the approval was for.
    pub ticket_id: Uuid,
    /// The approval request record.
    pub approval_request_id: Uuid,
    /// User who rejected the approval.
    pub rejected_by_user_id: Uuid,
    /// When the approval was rejected.
    pub rejected_at: DateTime<Utc>,
    /// Free-text reason for the rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketApprovalRejected {
    event_type: "TICKET_APPROVAL_REJECTED",
    name: "Ticket Approval Rejected",
    description: "Approval rejected.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketApprovalRejected {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        approval_request_id: sample::id(2),
        rejected_by_user_id: sample::id(3),
        rejected_at: sample::at(),
        reason: Some("Use the spare switch in stock".to_owned()),
    },
});
