//! The twelve events that predate catalog v2, with the payload shapes the platform already emits.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, Changes, EmailAddress, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<TicketCreated>(),
        CatalogEntry::of::<TicketUpdated>(),
        CatalogEntry::of::<TicketClosed>(),
        CatalogEntry::of::<TicketResponseStateChanged>(),
        CatalogEntry::of::<ProjectCreated>(),
        CatalogEntry::of::<InvoiceGenerated>(),
        CatalogEntry::of::<InvoiceFinalized>(),
        CatalogEntry::of::<CompanyCreated>(),
        CatalogEntry::of::<CompanyUpdated>(),
        CatalogEntry::of::<EmailProviderConnected>(),
        CatalogEntry::of::<EmailProviderDisconnected>(),
        CatalogEntry::of::<InboundEmailReceived>(),
    ]
}

/// A ticket was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketCreated {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The new ticket.
    pub ticket_id: Uuid,
    /// Staff user who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_user_id: Option<Uuid>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Field paths set at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Field values set at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(TicketCreated {
    event_type: "TICKET_CREATED",
    name: "Ticket Created",
    description: "A new ticket was created.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketCreated {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        created_by_user_id: Some(sample::id(2)),
        created_at: Some(sample::at()),
        updated_fields: Some(vec!["title".to_owned(), "priorityId".to_owned()]),
        changes: Some(sample::changes("title", "", "Printer offline")),
    },
});

/// Ticket fields were changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketUpdated {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The updated ticket.
    pub ticket_id: Uuid,
    /// Staff user who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by_user_id: Option<Uuid>,
    /// Field paths that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Before/after values of the changed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(TicketUpdated {
    event_type: "TICKET_UPDATED",
    name: "Ticket Updated",
    description: "A ticket's fields were updated.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketUpdated {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        updated_by_user_id: Some(sample::id(2)),
        updated_fields: Some(vec!["title".to_owned()]),
        changes: Some(sample::changes("title", "Printer offline", "Printer offline on floor 2")),
    },
});

/// A ticket was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketClosed {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The closed ticket.
    pub ticket_id: Uuid,
    /// Staff user who closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by_user_id: Option<Uuid>,
    /// When it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// Free-text reason for closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(TicketClosed {
    event_type: "TICKET_CLOSED",
    name: "Ticket Closed",
    description: "A ticket was closed.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketClosed {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        closed_by_user_id: Some(sample::id(2)),
        closed_at: Some(sample::at()),
        reason: Some("Resolved: toner replaced".to_owned()),
    },
});

/// A ticket's response state (who the ticket is waiting on) changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TicketResponseStateChanged {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The ticket whose response state changed.
    pub ticket_id: Uuid,
    /// Response state before the change (e.g. `awaiting_client`, `awaiting_internal`);
    /// absent when the ticket had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_state: Option<String>,
    /// Response state after the change (e.g. `awaiting_client`, `awaiting_internal`);
    /// absent when it was cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_response_state: Option<String>,
}

catalog_event!(TicketResponseStateChanged {
    event_type: "TICKET_RESPONSE_STATE_CHANGED",
    name: "Ticket Response State Changed",
    description: "A ticket's response state changed between awaiting the client and awaiting staff.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketResponseStateChanged {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        previous_response_state: Some("awaiting_internal".to_owned()),
        new_response_state: Some("awaiting_client".to_owned()),
    },
});

/// A project was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ProjectCreated {
    /// Tenant of the project.
    pub tenant_id: Uuid,
    /// The new project.
    pub project_id: Uuid,
    /// Staff user who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_user_id: Option<Uuid>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

catalog_event!(ProjectCreated {
    event_type: "PROJECT_CREATED",
    name: "Project Created",
    description: "A new project was created.",
    category: Projects,
    ordering_key: "project" => project_id,
    example: ProjectCreated {
        tenant_id: sample::TENANT,
        project_id: sample::id(1),
        created_by_user_id: Some(sample::id(2)),
        created_at: Some(sample::at()),
    },
});

/// An invoice was generated (as a draft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceGenerated {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The generated invoice.
    pub invoice_id: Uuid,
    /// The invoiced client (accepts `companyId` when reading).
    #[serde(default, alias = "companyId", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    /// Staff user who generated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Invoice total, in minor units (cents) of the invoice's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<i64>,
    /// Invoice status, e.g. `draft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Human-facing invoice number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<String>,
}

catalog_event!(InvoiceGenerated {
    event_type: "INVOICE_GENERATED",
    name: "Invoice Generated",
    description: "An invoice was generated.",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceGenerated {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        client_id: Some(sample::id(2)),
        user_id: Some(sample::id(3)),
        total_amount: Some(125_000),
        status: Some("draft".to_owned()),
        invoice_number: Some("INV-001042".to_owned()),
    },
});

/// An invoice was finalized (no longer editable, ready to send).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceFinalized {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The finalized invoice.
    pub invoice_id: Uuid,
    /// The invoiced client (accepts `companyId` when reading).
    #[serde(default, alias = "companyId", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    /// Staff user who finalized it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Invoice total, in minor units (cents) of the invoice's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<i64>,
    /// Invoice status after finalizing, e.g. `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Human-facing invoice number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<String>,
}

catalog_event!(InvoiceFinalized {
    event_type: "INVOICE_FINALIZED",
    name: "Invoice Finalized",
    description: "An invoice was finalized.",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceFinalized {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        client_id: Some(sample::id(2)),
        user_id: Some(sample::id(3)),
        total_amount: Some(125_000),
        status: Some("pending".to_owned()),
        invoice_number: Some("INV-001042".to_owned()),
    },
});

/// A company (client organisation) was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CompanyCreated {
    /// Tenant of the company.
    pub tenant_id: Uuid,
    /// The new company.
    pub company_id: Uuid,
    /// The company's name.
    pub company_name: String,
    /// Staff user who created it.
    pub created_by_user_id: Uuid,
}

catalog_event!(CompanyCreated {
    event_type: "COMPANY_CREATED",
    name: "Company Created",
    description: "A new company was created.",
    category: CompanyManagement,
    ordering_key: "company" => company_id,
    example: CompanyCreated {
        tenant_id: sample::TENANT,
        company_id: sample::id(1),
        company_name: "Acme Dental Group".to_owned(),
        created_by_user_id: sample::id(2),
    },
});

/// Company fields were changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CompanyUpdated {
    /// Tenant of the company.
    pub tenant_id: Uuid,
    /// The updated company.
    pub company_id: Uuid,
    /// Field paths that changed.
    pub updated_fields: Vec<String>,
    /// Staff user who made the change.
    pub updated_by_user_id: Uuid,
}

catalog_event!(CompanyUpdated {
    event_type: "COMPANY_UPDATED",
    name: "Company Updated",
    description: "A company's fields were updated.",
    category: CompanyManagement,
    ordering_key: "company" => company_id,
    example: CompanyUpdated {
        tenant_id: sample::TENANT,
        company_id: sample::id(1),
        updated_fields: vec!["phoneNo".to_owned(), "billingEmail".to_owned()],
        updated_by_user_id: sample::id(2),
    },
});

/// The kind of a connected e-mail provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EmailProviderType {
    /// Microsoft 365 / Exchange Online.
    Microsoft,
    /// Google Workspace / Gmail.
    Google,
}

/// An e-mail provider (mailbox) was connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailProviderConnected {
    /// Tenant of the provider configuration.
    pub tenant_id: Uuid,
    /// The provider configuration record.
    pub provider_id: Uuid,
    /// Which kind of provider.
    pub provider_type: EmailProviderType,
    /// Display name of the provider configuration.
    pub provider_name: String,
    /// The connected mailbox address.
    pub mailbox: String,
    /// When it was connected.
    pub connected_at: DateTime<Utc>,
}

catalog_event!(EmailProviderConnected {
    event_type: "EMAIL_PROVIDER_CONNECTED",
    name: "Email Provider Connected",
    description: "An email provider mailbox was connected.",
    category: EmailProcessing,
    ordering_key: "email_provider" => provider_id,
    example: EmailProviderConnected {
        tenant_id: sample::TENANT,
        provider_id: sample::id(1),
        provider_type: EmailProviderType::Microsoft,
        provider_name: "Support inbox".to_owned(),
        mailbox: "support@example.com".to_owned(),
        connected_at: sample::at(),
    },
});

/// An e-mail provider (mailbox) was disconnected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailProviderDisconnected {
    /// Tenant of the provider configuration.
    pub tenant_id: Uuid,
    /// The provider configuration record.
    pub provider_id: Uuid,
    /// Which kind of provider.
    pub provider_type: EmailProviderType,
    /// Display name of the provider configuration.
    pub provider_name: String,
    /// When it was disconnected.
    pub disconnected_at: DateTime<Utc>,
    /// Why it was disconnected (e.g. revoked consent, expired token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(EmailProviderDisconnected {
    event_type: "EMAIL_PROVIDER_DISCONNECTED",
    name: "Email Provider Disconnected",
    description: "An email provider mailbox was disconnected.",
    category: EmailProcessing,
    ordering_key: "email_provider" => provider_id,
    example: EmailProviderDisconnected {
        tenant_id: sample::TENANT,
        provider_id: sample::id(1),
        provider_type: EmailProviderType::Google,
        provider_name: "Support inbox".to_owned(),
        disconnected_at: sample::at(),
        reason: Some("OAuth refresh token revoked".to_owned()),
    },
});

/// The body of an inbound e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InboundEmailBody {
    /// Plain-text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// An attachment of an inbound e-mail, as the provider describes it (content not included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InboundEmailAttachment {
    /// The provider's attachment id (opaque text, not a UUID).
    pub id: String,
    /// File name.
    pub name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME `Content-ID` for inline attachments referenced from the HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

/// An inbound e-mail message as fetched from the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InboundEmailData {
    /// The provider's message id (opaque text, not a UUID).
    pub id: String,
    /// The provider's conversation/thread id (opaque text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Sender.
    pub from: EmailAddress,
    /// Recipients.
    pub to: Vec<EmailAddress>,
    /// Carbon-copy recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<EmailAddress>>,
    /// Subject line.
    pub subject: String,
    /// Text and/or HTML body.
    pub body: InboundEmailBody,
    /// RFC 5322 `In-Reply-To` message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// RFC 5322 `References` message ids, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<String>>,
    /// Attachment descriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<InboundEmailAttachment>>,
    /// When the provider received the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
}

/// An e-mail arrived in a connected provider's mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InboundEmailReceived {
    /// Tenant of the provider configuration.
    pub tenant_id: Uuid,
    /// The provider configuration that received the message.
    pub provider_id: Uuid,
    /// The received message.
    pub email_data: InboundEmailData,
}

catalog_event!(InboundEmailReceived {
    event_type: "INBOUND_EMAIL_RECEIVED",
    name: "Inbound Email Received",
    description: "An email was received by a connected email provider.",
    category: EmailProcessing,
    ordering_key: "email_provider" => provider_id,
    example: InboundEmailReceived {
        tenant_id: sample::TENANT,
        provider_id: sample::id(1),
        email_data: InboundEmailData {
            id: "AAMkAGI2TG93AAA=".to_owned(),
            thread_id: Some("AAQkAGI2TG93Conv=".to_owned()),
            from: EmailAddress {
                email: "jane@client.example".to_owned(),
                name: Some("Jane Doe".to_owned()),
            },
            to: vec![EmailAddress::new("support@example.com")],
            cc: Some(vec![EmailAddress {
                email: "it-lead@client.example".to_owned(),
                name: Some("Sam Lee".to_owned()),
            }]),
            subject: "Re: Printer offline".to_owned(),
            body: InboundEmailBody {
                text: Some("Still offline after the restart.".to_owned()),
                html: Some("<p>Still offline after the restart.</p>".to_owned()),
            },
            in_reply_to: Some("<ticket-1042@example.com>".to_owned()),
            references: Some(vec!["<ticket-1042@example.com>".to_owned()]),
            attachments: Some(vec![InboundEmailAttachment {
                id: "AAMkAGI2att1=".to_owned(),
                name: "error.png".to_owned(),
                content_type: "image/png".to_owned(),
                size: 48_213,
                content_id: Some("image001.png@01DA4C2B".to_owned()),
            }]),
            received_at: Some(sample::at()),
        },
    },
});
