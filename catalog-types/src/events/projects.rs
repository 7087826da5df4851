//! Projects: project changes, project tasks and their dependencies, and project approvals.
//!
//! (`PROJECT_CREATED` predates catalog v2 and lives with the existing events.)
//!
//! Every event here, task and approval events included, is ordered by its project
//! (`project:<projectId>`): a task's events then follow the project's creation, and a
//! task's "unblocked" event follows the completion of the task that blocked it, which a
//! per-task key would not guarantee. Project event volume is low, so the coarser key
//! costs no useful parallelism.
//!
//! Project and task statuses are tenant-configurable, so `status` / `previousStatus` /
//! `newStatus` are free strings.

use chrono::{DateTime, NaiveDate, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, Changes, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<ProjectUpdated>(),
        CatalogEntry::of::<ProjectStatusChanged>(),
        CatalogEntry::of::<ProjectTaskCreated>(),
        CatalogEntry::of::<ProjectTaskAssigned>(),
        CatalogEntry::of::<ProjectTaskStatusChanged>(),
        CatalogEntry::of::<ProjectTaskCompleted>(),
        CatalogEntry::of::<ProjectTaskDependencyBlocked>(),
        CatalogEntry::of::<ProjectTaskDependencyUnblocked>(),
        CatalogEntry::of::<ProjectApprovalRequested>(),
        CatalogEntry::of::<ProjectApprovalGranted>(),
        CatalogEntry::of::<ProjectApprovalRejected>(),
    ]
}

/// Project fields were changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectUpdated {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The updated project.
    pub project_id: Uuid,
    /// Staff user who changed it.
    pub actor_user_id: Uuid,
    /// When it was changed.
    pub updated_at: DateTime<Utc>,
    /// Paths of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Before/after values of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(ProjectUpdated {
    event_type: "PROJECT_UPDATED",
    name: "Project Updated",
    description: "Project fields changed.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectUpdated {
        tenant_id: sample::TENANT,
        project_id: sample::id(1),
        actor_user_id: sample::id(2),
        updated_at: sample::at(),
        updated_fields: Some(vec!["name".to_owned()]),
        changes: Some(sample::changes(
            "name",
            "Office move",
            "Office move (phase 1)",
        )),
    },
});

/// A project moved from one status to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectStatusChanged {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The project.
    pub project_id: Uuid,
    /// Status before the transition (tenant-defined status name).
    pub previous_status: String,
    /// Status after the transition (tenant-defined status name).
    pub new_status: String,
    /// Staff user who changed it.
    pub actor_user_id: Uuid,
    /// When it changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(ProjectStatusChanged {
    event_type: "PROJECT_STATUS_CHANGED",
    name: "Project Status Changed",
    description: "Project status transition.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectStatusChanged {
        tenant_id: sample::TENANT,
        project_id: sample::id(1),
        previous_status: "planning".to_owned(),
        new_status: "in_progress".to_owned(),
        actor_user_id: sample::id(2),
        changed_at: sample::at(),
    },
});

/// A task was added to a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectTaskCreated {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The new task.
    pub task_id: Uuid,
    /// Project the task belongs to.
    pub project_id: Uuid,
    /// Staff user who created it.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Title of the task.
    pub title: String,
    /// Day the task is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
    /// Initial status of the task (tenant-defined status name).
    pub status: String,
}

catalog_event!(ProjectTaskCreated {
    event_type: "PROJECT_TASK_CREATED",
    name: "Project Task Created",
    description: "Task added.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectTaskCreated {
        tenant_id: sample::TENANT,
        task_id: sample::id(1),
        project_id: sample::id(2),
        created_by_user_id: sample::id(3),
        created_at: sample::at(),
        title: "Run cabling to new floor".to_owned(),
        due_date: Some(sample::date()),
        status: "open".to_owned(),
    },
});

/// Whether a project task is assigned to a user or to a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProjectTaskAssigneeType {
    /// A single staff user.
    User,
    /// A team.
    Team,
}

/// A project task was assigned to a user or team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectTaskAssigned {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The assigned task.
    pub task_id: Uuid,
    /// Project the task belongs to.
    pub project_id: Uuid,
    /// User or team it is assigned to.
    pub assigned_to_id: Uuid,
    /// Whether the assignee is a user or a team.
    pub assigned_to_type: ProjectTaskAssigneeType,
    /// Staff user who assigned it.
    pub assigned_by_user_id: Uuid,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
}

catalog_event!(ProjectTaskAssigned {
    event_type: "PROJECT_TASK_ASSIGNED",
    name: "Project Task Assigned",
    description: "Task assigned to user/team.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectTaskAssigned {
        tenant_id: sample::TENANT,
        task_id: sample::id(1),
        project_id: sample::id(2),
        assigned_to_id: sample::id(3),
        assigned_to_type: ProjectTaskAssigneeType::User,
        assigned_by_user_id: sample::id(4),
        assigned_at: sample::at(),
    },
});

/// A project task moved from one status to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectTaskStatusChanged {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The task.
    pub task_id: Uuid,
    /// Project the task belongs to.
    pub project_id: Uuid,
    /// Status before the transition (tenant-defined status name).
    pub previous_status: String,
    /// Status after the transition (tenant-defined status name).
    pub new_status: String,
    /// Staff user who changed it.
    pub actor_user_id: Uuid,
    /// When it changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(ProjectTaskStatusChanged {
    event_type: "PROJECT_TASK_STATUS_CHANGED",
    name: "Project Task Status Changed",
    description: "Task status transition.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectTaskStatusChanged {
        tenant_id: sample::TENANT,
        task_id: sample::id(1),
        project_id: sample::id(2),
        previous_status: "open".to_owned(),
        new_status: "in_progress".to_owned(),
        actor_user_id: sample::id(3),
        changed_at: sample::at(),
    },
});

/// A project task was completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectTaskCompleted {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The completed task.
    pub task_id: Uuid,
    /// Project the task belongs to.
    pub project_id: Uuid,
    /// Staff user who completed it.
    pub completed_by_user_id: Uuid,
    /// When it was completed.
    pub completed_at: DateTime<Utc>,
}

catalog_event!(ProjectTaskCompleted {
    event_type: "PROJECT_TASK_COMPLETED",
    name: "Project Task Completed",
    description: "Task completed.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectTaskCompleted {
        tenant_id: sample::TENANT,
        task_id: sample::id(1),
        project_id: sample::id(2),
        completed_by_user_id: sample::id(3),
        completed_at: sample::at(),
    },
});

/// A dependency now blocks a project task's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectTaskDependencyBlocked {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The blocked task.
    pub task_id: Uuid,
    /// Project the task belongs to.
    pub project_id: Uuid,
    /// Task it depends on that blocks it.
    pub blocked_by_task_id: Uuid,
    /// When it became blocked.
    pub blocked_at: DateTime<Utc>,
}

catalog_event!(ProjectTaskDependencyBlocked {
    event_type: "PROJECT_TASK_DEPENDENCY_BLOCKED",
    name: "Project Task Blocked",
    description: "Dependency blocks progress.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectTaskDependencyBlocked {
        tenant_id: sample::TENANT,
        task_id: sample::id(1),
        project_id: sample::id(2),
        blocked_by_task_id: sample::id(3),
        blocked_at: sample::at(),
    },
});

/// A dependency that blocked a project task was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectTaskDependencyUnblocked {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The unblocked task.
    pub task_id: Uuid,
    /// Project the task belongs to.
    pub project_id: Uuid,
    /// Task whose resolution unblocked it.
    pub unblocked_by_task_id: Uuid,
    /// When it was unblocked.
    pub unblocked_at: DateTime<Utc>,
}

catalog_event!(ProjectTaskDependencyUnblocked {
    event_type: "PROJECT_TASK_DEPENDENCY_UNBLOCKED",
    name: "Project Task Unblocked",
    description: "Dependency resolved.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectTaskDependencyUnblocked {
        tenant_id: sample::TENANT,
        task_id: sample::id(1),
        project_id: sample::id(2),
        unblocked_by_task_id: sample::id(3),
        unblocked_at: sample::at(),
    },
});

/// A scope, budget or change approval was requested for a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectApprovalRequested {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The approval request.
    pub approval_id: Uuid,
    /// Project it concerns.
    pub project_id: Uuid,
    /// Kind of approval, e.g. `scope`, `budget`, `change`.
    pub approval_type: String,
    /// Staff user who requested it.
    pub requested_by_user_id: Uuid,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// Notes from the requester, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

catalog_event!(ProjectApprovalRequested {
    event_type: "PROJECT_APPROVAL_REQUESTED",
    name: "Project Approval Requested",
    description: "Scope/budget/change approval request.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectApprovalRequested {
        tenant_id: sample::TENANT,
        approval_id: sample::id(1),
        project_id: sample::id(2),
        approval_type: "budget".to_owned(),
        requested_by_user_id: sample::id(3),
        requested_at: sample::at(),
        notes: Some("Extra 20 hours for additional cabling".to_owned()),
    },
});

/// A project approval was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectApprovalGranted {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The approval request.
    pub approval_id: Uuid,
    /// Project it concerns.
    pub project_id: Uuid,
    /// Kind of approval, e.g. `scope`, `budget`, `change`.
    pub approval_type: String,
    /// User who approved it.
    pub approved_by_user_id: Uuid,
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
    /// Notes from the approver, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

catalog_event!(ProjectApprovalGranted {
    event_type: "PROJECT_APPROVAL_GRANTED",
    name: "Project Approval Granted",
    description: "Approval granted.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectApprovalGranted {
        tenant_id: sample::TENANT,
        approval_id: sample::id(1),
        project_id: sample::id(2),
        approval_type: "budget".to_owned(),
        approved_by_user_id: sample::id(3),
        approved_at: sample::at(),
        notes: Some("Approved; track against the change order".to_owned()),
    },
});

/// A project approval was rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectApprovalRejected {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The approval request.
    pub approval_id: Uuid,
    /// Project it concerns.
    pub project_id: Uuid,
    /// Kind of approval, e.g. `scope`, `budget`, `change`.
    pub approval_type: String,
    /// User who rejected it.
    pub rejected_by_user_id: Uuid,
    /// When it was rejected.
    pub rejected_at: DateTime<Utc>,
    /// Why it was rejected, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(ProjectApprovalRejected {
    event_type: "PROJECT_APPROVAL_REJECTED",
    name: "Project Approval Rejected",
    description: "Approval rejected.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectApprovalRejected {
        tenant_id: sample::TENANT,
        approval_id: sample::id(1),
        project_id: sample::id(2),
        approval_type: "scope".to_owned(),
        rejected_by_user_id: sample::id(3),
        rejected_at: sample::at(),
        reason: Some("Out of contract scope; quote separately".to_owned()),
    },
});
