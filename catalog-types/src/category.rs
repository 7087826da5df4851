//! The catalog UI's grouping of events.

use serde::{Deserialize, Serialize};

/// The user-facing module an event belongs to; drives the default routing key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// Tickets, including SLA and approvals.
    Tickets,
    /// Appointments, schedule blocks and field operations.
    Scheduling,
    /// Projects, tasks and project approvals.
    Projects,
    /// Invoices, payments, credits, contracts and recurring billing.
    Billing,
    /// Clients, contacts, interactions and notes.
    #[serde(rename = "CRM")]
    Crm,
    /// Tag definitions and tag application.
    Tags,
    /// Documents and e-signature.
    Documents,
    /// Email lifecycle and email providers.
    #[serde(rename = "Email Processing")]
    EmailProcessing,
    /// Notifications to users and contacts.
    Notifications,
    /// Surveys and CSAT.
    Surveys,
    /// Third-party integrations: sync, webhooks, connections, mappings.
    Integrations,
    /// Assets (devices, licences, ...).
    Assets,
    /// The media pipeline.
    Media,
    /// The pre-existing company events.
    #[serde(rename = "Company Management")]
    CompanyManagement,
}

impl Category {
    /// Every category, in catalog order.
    pub const ALL: [Category; 14] = [
        Category::Tickets,
        Category::Scheduling,
        Category::Projects,
        Category::Billing,
        Category::Crm,
        Category::Tags,
        Category::Documents,
        Category::EmailProcessing,
        Category::Notifications,
        Category::Surveys,
        Category::Integrations,
        Category::Assets,
        Category::Media,
        Category::CompanyManagement,
    ];

    /// The display name shown in the catalog UI and stored in `outbox_events.category`.
    pub const fn name(self) -> &'static str {
        match self {
            Category::Tickets => "Tickets",
            Category::Scheduling => "Scheduling",
            Category::Projects => "Projects",
            Category::Billing => "Billing",
            Category::Crm => "CRM",
            Category::Tags => "Tags",
            Category::Documents => "Documents",
            Category::EmailProcessing => "Email Processing",
            Category::Notifications => "Notifications",
            Category::Surveys => "Surveys",
            Category::Integrations => "Integrations",
            Category::Assets => "Assets",
            Category::Media => "Media",
            Category::CompanyManagement => "Company Management",
        }
    }

    /// The lower-case slug used as the first word of the default routing key.
    pub const fn slug(self) -> &'static str {
        match self {
            Category::Tickets => "tickets",
            Category::Scheduling => "scheduling",
            Category::Projects => "projects",
            Category::Billing => "billing",
            Category::Crm => "crm",
            Category::Tags => "tags",
            Category::Documents => "documents",
            Category::EmailProcessing => "email_processing",
            Category::Notifications => "notifications",
            Category::Surveys => "surveys",
            Category::Integrations => "integrations",
            Category::Assets => "assets",
            Category::Media => "media",
            Category::CompanyManagement => "company_management",
        }
    }

    /// Finds a category by display name or slug (case-insensitive).
    pub fn parse(text: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(text) || c.slug().eq_ignore_ascii_case(text))
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
