//! Notifications to users and contacts: sent, delivered, failed and read.
//!
//! Every event is ordered by its notification (`notification:<notificationId>`), so one
//! notification's sent / delivered / read events arrive in order.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<NotificationSent>(),
        CatalogEntry::of::<NotificationDelivered>(),
        CatalogEntry::of::<NotificationFailed>(),
        CatalogEntry::of::<NotificationRead>(),
    ]
}

/// The channel a notification is sent through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotificationChannel {
    /// E-mail.
    Email,
    /// SMS text message.
    Sms,
    /// The platform's in-app notification centre.
    InApp,
    /// Mobile or browser push notification.
    Push,
}

/// A notification was queued or sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct NotificationSent {
    /// Tenant of the notification.
    pub tenant_id: Uuid,
    /// The notification.
    pub notification_id: Uuid,
    /// Channel it is sent through.
    pub channel: NotificationChannel,
    /// User or contact it is sent to.
    pub recipient_id: Uuid,
    /// When it was queued or sent.
    pub sent_at: DateTime<Utc>,
    /// Template it was rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<Uuid>,
    /// Kind of entity it is about, e.g. `ticket`, `invoice`, `appointment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_type: Option<String>,
    /// The entity it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<Uuid>,
}

catalog_event!(NotificationSent {
    event_type: "NOTIFICATION_SENT",
    name: "Notification Sent",
    description: "Notification queued/sent.",
    category: Notifications,
    ordering_key: "notification" => notification_id,
    example: NotificationSent {
        tenant_id: sample::TENANT,
        notification_id: sample::id(1),
        channel: NotificationChannel::InApp,
        recipient_id: sample::id(2),
        sent_at: sample::at(),
        template_id: Some(sample::id(3)),
        context_type: Some("ticket".to_owned()),
        context_id: Some(sample::id(4)),
    },
});

/// The provider confirmed delivery of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct NotificationDelivered {
    /// Tenant of the notification.
    pub tenant_id: Uuid,
    /// The notification.
    pub notification_id: Uuid,
    /// Channel it was delivered through.
    pub channel: NotificationChannel,
    /// User or contact it was delivered to.
    pub recipient_id: Uuid,
    /// When delivery was confirmed.
    pub delivered_at: DateTime<Utc>,
    /// The delivery provider's id for the message (text, provider-specific).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

catalog_event!(NotificationDelivered {
    event_type: "NOTIFICATION_DELIVERED",
    name: "Notification Delivered",
    description: "Provider confirmed delivery.",
    category: Notifications,
    ordering_key: "notification" => notification_id,
    example: NotificationDelivered {
        tenant_id: sample::TENANT,
        notification_id: sample::id(1),
        channel: NotificationChannel::Sms,
        recipient_id: sample::id(2),
        delivered_at: sample::at(),
        provider_message_id: Some("SM1f2e3d4c5b6a79880a1b2c3d4e5f6a7b".to_owned()),
    },
});

/// Delivering a notification failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct NotificationFailed {
    /// Tenant of the notification.
    pub tenant_id: Uuid,
    /// The notification.
    pub notification_id: Uuid,
    /// Channel delivery was attempted through.
    pub channel: NotificationChannel,
    /// User or contact it was meant for.
    pub recipient_id: Uuid,
    /// When delivery failed.
    pub failed_at: DateTime<Utc>,
    /// The provider's or platform's error code (text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error.
    pub error_message: String,
    /// Whether trying again may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(NotificationFailed {
    event_type: "NOTIFICATION_FAILED",
    name: "Notification Failed",
    description: "Delivery failed.",
    category: Notifications,
    ordering_key: "notification" => notification_id,
    example: NotificationFailed {
        tenant_id: sample::TENANT,
        notification_id: sample::id(1),
        channel: NotificationChannel::Push,
        recipient_id: sample::id(2),
        failed_at: sample::at(),
        error_code: Some("unregistered_device".to_owned()),
        error_message: "The device token is no longer registered".to_owned(),
        retryable: Some(false),
    },
});

/// The recipient opened or read a notification (trackable channels only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct NotificationRead {
    /// Tenant of the notification.
    pub tenant_id: Uuid,
    /// The notification.
    pub notification_id: Uuid,
    /// Channel it was read in.
    pub channel: NotificationChannel,
    /// User or contact who read it.
    pub recipient_id: Uuid,
    /// When it was read.
    pub read_at: DateTime<Utc>,
    /// Client it was read with, e.g. `web`, `ios`, `android`, or a mail user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

catalog_event!(NotificationRead {
    event_type: "NOTIFICATION_READ",
    name: "Notification Read",
    description: "Recipient opened/read notification (trackable channels only).",
    category: Notifications,
    ordering_key: "notification" => notification_id,
    example: NotificationRead {
        tenant_id: sample::TENANT,
        notification_id: sample::id(1),
        channel: NotificationChannel::InApp,
        recipient_id: sample::id(2),
        read_at: sample::at(),
        client: Some("web".to_owned()),
    },
});
