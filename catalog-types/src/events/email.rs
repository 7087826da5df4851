//! Email lifecycle: inbound replies, outbound sending and delivery feedback from the provider.
//!
//! `messageId` and `threadId` here are e-mail identifiers (RFC 5322 `Message-ID`s or the
//! mail system's own thread ids), not platform UUIDs, so they are strings. Outbound and
//! feedback events are ordered by the message (`email_message:<messageId>`) so queued, sent,
//! delivered / bounced arrive in order; inbound replies by their thread; unsubscriptions by
//! the recipient's address. The pre-existing email events live in `existing.rs`.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, EmailAddress, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<InboundEmailReplyReceived>(),
        CatalogEntry::of::<OutboundEmailQueued>(),
        CatalogEntry::of::<OutboundEmailSent>(),
        CatalogEntry::of::<OutboundEmailFailed>(),
        CatalogEntry::of::<EmailDelivered>(),
        CatalogEntry::of::<EmailBounced>(),
        CatalogEntry::of::<EmailComplaintReceived>(),
        CatalogEntry::of::<EmailUnsubscribed>(),
    ]
}

/// An inbound e-mail was identified as a reply to an existing thread or ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InboundEmailReplyReceived {
    /// Tenant that received the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` of the reply (RFC 5322, text rather than a UUID).
    pub message_id: String,
    /// Thread the reply belongs to (the mail system's thread id, text).
    pub thread_id: String,
    /// Ticket the reply was matched to, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Sender of the reply.
    pub from: EmailAddress,
    /// Recipients of the reply.
    pub to: Vec<EmailAddress>,
    /// Subject line.
    pub subject: String,
    /// When the mailbox received it.
    pub received_at: DateTime<Utc>,
    /// Mail provider that delivered it, e.g. `microsoft`, `google`, `imap`.
    pub provider: String,
    /// How the reply was matched, e.g. `in_reply_to`, `references`, `subject_token`.
    pub matched_by: String,
}

catalog_event!(InboundEmailReplyReceived {
    event_type: "INBOUND_EMAIL_REPLY_RECEIVED",
    name: "Inbound Email Reply Received",
    description: "Inbound email identified as reply to existing thread/ticket.",
    category: EmailProcessing,
    ordering_key: "email_thread" => thread_id,
    example: InboundEmailReplyReceived {
        tenant_id: sample::TENANT,
        message_id: "<CAF1x7Qe9ZR@mail.example.com>".to_owned(),
        thread_id: "AAQkADk3ZTdhYzQ1LWI0".to_owned(),
        ticket_id: Some(sample::id(1)),
        from: EmailAddress {
            email: "jane.doe@example.com".to_owned(),
            name: Some("Jane Doe".to_owned()),
        },
        to: vec![EmailAddress::new("support@msp.example.net")],
        subject: "RE: [TKT-1042] Printer offline".to_owned(),
        received_at: sample::at(),
        provider: "microsoft".to_owned(),
        matched_by: "in_reply_to".to_owned(),
    },
});

/// An outbound e-mail was queued for sending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct OutboundEmailQueued {
    /// Tenant sending the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` assigned to the e-mail (RFC 5322, text rather than a UUID).
    pub message_id: String,
    /// Thread the e-mail continues (the mail system's thread id, text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Ticket the e-mail is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// Sender.
    pub from: EmailAddress,
    /// Primary recipients.
    pub to: Vec<EmailAddress>,
    /// Carbon-copy recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<EmailAddress>>,
    /// Subject line.
    pub subject: String,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// Mail provider that will send it, e.g. `microsoft`, `google`, `smtp`.
    pub provider: String,
}

catalog_event!(OutboundEmailQueued {
    event_type: "OUTBOUND_EMAIL_QUEUED",
    name: "Outbound Email Queued",
    description: "Outbound email queued for sending.",
    category: EmailProcessing,
    ordering_key: "email_message" => message_id,
    example: OutboundEmailQueued {
        tenant_id: sample::TENANT,
        message_id: "<tkt-1042.r3@msp.example.net>".to_owned(),
        thread_id: Some("AAQkADk3ZTdhYzQ1LWI0".to_owned()),
        ticket_id: Some(sample::id(1)),
        from: EmailAddress {
            email: "support@msp.example.net".to_owned(),
            name: Some("MSP Support".to_owned()),
        },
        to: vec![EmailAddress {
            email: "jane.doe@example.com".to_owned(),
            name: Some("Jane Doe".to_owned()),
        }],
        cc: Some(vec![EmailAddress::new("it-lead@example.com")]),
        subject: "RE: [TKT-1042] Printer offline".to_owned(),
        queued_at: sample::at(),
        provider: "microsoft".to_owned(),
    },
});

/// The provider accepted an outbound e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct OutboundEmailSent {
    /// Tenant sending the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` of the e-mail (RFC 5322, text).
    pub message_id: String,
    /// The provider's id for the accepted message (text).
    pub provider_message_id: String,
    /// Thread the e-mail continues (the mail system's thread id, text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Ticket the e-mail is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When the provider accepted it.
    pub sent_at: DateTime<Utc>,
    /// Mail provider that sent it, e.g. `microsoft`, `google`, `smtp`.
    pub provider: String,
}

catalog_event!(OutboundEmailSent {
    event_type: "OUTBOUND_EMAIL_SENT",
    name: "Outbound Email Sent",
    description: "Provider accepted outbound email.",
    category: EmailProcessing,
    ordering_key: "email_message" => message_id,
    example: OutboundEmailSent {
        tenant_id: sample::TENANT,
        message_id: "<tkt-1042.r3@msp.example.net>".to_owned(),
        provider_message_id: "AAMkAGI2TG93AAA=".to_owned(),
        thread_id: Some("AAQkADk3ZTdhYzQ1LWI0".to_owned()),
        ticket_id: Some(sample::id(1)),
        sent_at: sample::at(),
        provider: "microsoft".to_owned(),
    },
});

/// The provider rejected an outbound e-mail, or sending it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct OutboundEmailFailed {
    /// Tenant sending the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` of the e-mail (RFC 5322, text).
    pub message_id: String,
    /// Thread the e-mail continues (the mail system's thread id, text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Ticket the e-mail is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<Uuid>,
    /// When sending failed.
    pub failed_at: DateTime<Utc>,
    /// Mail provider that failed, e.g. `microsoft`, `google`, `smtp`.
    pub provider: String,
    /// The provider's error code (text, provider-specific).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error.
    pub error_message: String,
    /// Whether sending again may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(OutboundEmailFailed {
    event_type: "OUTBOUND_EMAIL_FAILED",
    name: "Outbound Email Failed",
    description: "Provider rejected/failed outbound email.",
    category: EmailProcessing,
    ordering_key: "email_message" => message_id,
    example: OutboundEmailFailed {
        tenant_id: sample::TENANT,
        message_id: "<tkt-1042.r3@msp.example.net>".to_owned(),
        thread_id: Some("AAQkADk3ZTdhYzQ1LWI0".to_owned()),
        ticket_id: Some(sample::id(1)),
        failed_at: sample::at(),
        provider: "microsoft".to_owned(),
        error_code: Some("ErrorQuotaExceeded".to_owned()),
        error_message: "Mailbox send quota exceeded".to_owned(),
        retryable: Some(true),
    },
});

/// The provider confirmed delivery of an e-mail to a recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailDelivered {
    /// Tenant that sent the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` of the e-mail (RFC 5322, text).
    pub message_id: String,
    /// The provider's id for the message (text).
    pub provider_message_id: String,
    /// Address it was delivered to.
    pub to: String,
    /// When delivery was confirmed.
    pub delivered_at: DateTime<Utc>,
    /// Mail provider that reported delivery, e.g. `sendgrid`, `ses`.
    pub provider: String,
}

catalog_event!(EmailDelivered {
    event_type: "EMAIL_DELIVERED",
    name: "Email Delivered",
    description: "Provider confirmed delivery.",
    category: EmailProcessing,
    ordering_key: "email_message" => message_id,
    example: EmailDelivered {
        tenant_id: sample::TENANT,
        message_id: "<tkt-1042.r3@msp.example.net>".to_owned(),
        provider_message_id: "0100018d2f1c9a7e-4b1f".to_owned(),
        to: "jane.doe@example.com".to_owned(),
        delivered_at: sample::at(),
        provider: "ses".to_owned(),
    },
});

/// Whether a bounce is permanent or temporary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EmailBounceType {
    /// Permanent failure (unknown address, rejected domain): do not retry.
    Hard,
    /// Temporary failure (mailbox full, server busy): may succeed later.
    Soft,
}

/// The provider reported that an e-mail bounced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailBounced {
    /// Tenant that sent the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` of the e-mail (RFC 5322, text).
    pub message_id: String,
    /// The provider's id for the message (text).
    pub provider_message_id: String,
    /// Address that bounced.
    pub to: String,
    /// When the bounce was reported.
    pub bounced_at: DateTime<Utc>,
    /// Permanent (`hard`) or temporary (`soft`).
    pub bounce_type: EmailBounceType,
    /// SMTP reply code of the rejection, e.g. `550` (the enhanced status code, if any, is in `smtpMessage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_code: Option<u16>,
    /// SMTP diagnostic text returned by the receiving server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_message: Option<String>,
}

catalog_event!(EmailBounced {
    event_type: "EMAIL_BOUNCED",
    name: "Email Bounced",
    description: "Provider reported bounce.",
    category: EmailProcessing,
    ordering_key: "email_message" => message_id,
    example: EmailBounced {
        tenant_id: sample::TENANT,
        message_id: "<tkt-1042.r3@msp.example.net>".to_owned(),
        provider_message_id: "0100018d2f1c9a7e-4b1f".to_owned(),
        to: "former.employee@example.com".to_owned(),
        bounced_at: sample::at(),
        bounce_type: EmailBounceType::Hard,
        smtp_code: Some(550),
        smtp_message: Some("5.1.1 The email account that you tried to reach does not exist".to_owned()),
    },
});

/// A recipient complained about an e-mail (marked it as spam).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailComplaintReceived {
    /// Tenant that sent the e-mail.
    pub tenant_id: Uuid,
    /// `Message-ID` of the e-mail (RFC 5322, text).
    pub message_id: String,
    /// The provider's id for the message (text).
    pub provider_message_id: String,
    /// Address of the complaining recipient.
    pub to: String,
    /// When the complaint was reported.
    pub complained_at: DateTime<Utc>,
    /// Mail provider that reported it, e.g. `sendgrid`, `ses`.
    pub provider: String,
    /// Kind of complaint as the provider labels it, e.g. `abuse`, `fraud`, `not-spam`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaint_type: Option<String>,
}

catalog_event!(EmailComplaintReceived {
    event_type: "EMAIL_COMPLAINT_RECEIVED",
    name: "Email Complaint Received",
    description: "Recipient complaint/spam report.",
    category: EmailProcessing,
    ordering_key: "email_message" => message_id,
    example: EmailComplaintReceived {
        tenant_id: sample::TENANT,
        message_id: "<newsletter-2026-01@msp.example.net>".to_owned(),
        provider_message_id: "0100018d2f1c9a7e-4b20".to_owned(),
        to: "jane.doe@example.com".to_owned(),
        complained_at: sample::at(),
        provider: "ses".to_owned(),
        complaint_type: Some("abuse".to_owned()),
    },
});

/// A recipient unsubscribed from e-mails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailUnsubscribed {
    /// Tenant the recipient unsubscribed from.
    pub tenant_id: Uuid,
    /// Address that unsubscribed.
    pub recipient_email: String,
    /// When the unsubscription was recorded.
    pub unsubscribed_at: DateTime<Utc>,
    /// Where it came from, e.g. `list_unsubscribe_header`, `preference_center`, `provider`.
    pub source: String,
    /// `Message-ID` of the e-mail whose link was used, when known (RFC 5322, text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

catalog_event!(EmailUnsubscribed {
    event_type: "EMAIL_UNSUBSCRIBED",
    name: "Email Unsubscribed",
    description: "Recipient unsubscribed.",
    category: EmailProcessing,
    ordering_key: "email_recipient" => recipient_email,
    example: EmailUnsubscribed {
        tenant_id: sample::TENANT,
        recipient_email: "jane.doe@example.com".to_owned(),
        unsubscribed_at: sample::at(),
        source: "list_unsubscribe_header".to_owned(),
        message_id: Some("<newsletter-2026-01@msp.example.net>".to_owned()),
    },
});
