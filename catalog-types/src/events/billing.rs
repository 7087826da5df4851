//! Billing events of catalog v2: invoices and collections, payments, credits, contracts and
//! recurring billing runs (`INVOICE_GENERATED` / `INVOICE_FINALIZED` predate v2 and live in
//! `existing.rs`).

use chrono::{DateTime, NaiveDate, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, Changes, CurrencyCode, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<InvoiceSent>(),
        CatalogEntry::of::<InvoiceStatusChanged>(),
        CatalogEntry::of::<InvoiceDueDateChanged>(),
        CatalogEntry::of::<InvoiceOverdue>(),
        CatalogEntry::of::<InvoiceWrittenOff>(),
        CatalogEntry::of::<PaymentRecorded>(),
        CatalogEntry::of::<PaymentApplied>(),
        CatalogEntry::of::<PaymentFailed>(),
        CatalogEntry::of::<PaymentRefunded>(),
        CatalogEntry::of::<CreditNoteCreated>(),
        CatalogEntry::of::<CreditNoteApplied>(),
        CatalogEntry::of::<CreditNoteVoided>(),
        CatalogEntry::of::<ContractCreated>(),
        CatalogEntry::of::<ContractUpdated>(),
        CatalogEntry::of::<ContractStatusChanged>(),
        CatalogEntry::of::<ContractRenewalUpcoming>(),
        CatalogEntry::of::<RecurringBillingRunStarted>(),
        CatalogEntry::of::<RecurringBillingRunCompleted>(),
        CatalogEntry::of::<RecurringBillingRunFailed>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Invoices and collections
// ---------------------------------------------------------------------------------------------

/// How an invoice was delivered to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum InvoiceDeliveryMethod {
    /// Sent by e-mail.
    Email,
    /// Published to the client portal.
    Portal,
    /// Printed (postal or hand delivery).
    Print,
}

/// An invoice was delivered to the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceSent {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The invoice that was sent.
    pub invoice_id: Uuid,
    /// The billed client (`companyId` accepted when reading).
    #[serde(alias = "companyId")]
    pub client_id: Uuid,
    /// Staff user who sent the invoice.
    pub sent_by_user_id: Uuid,
    /// When the invoice was sent.
    pub sent_at: DateTime<Utc>,
    /// How the invoice was delivered.
    pub delivery_method: InvoiceDeliveryMethod,
}

catalog_event!(InvoiceSent {
    event_type: "INVOICE_SENT",
    name: "Invoice Sent",
    description: "Invoice delivered to customer.",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceSent {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        client_id: sample::id(2),
        sent_by_user_id: sample::id(3),
        sent_at: sample::at(),
        delivery_method: InvoiceDeliveryMethod::Email,
    },
});

/// An invoice moved between statuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceStatusChanged {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The invoice whose status changed.
    pub invoice_id: Uuid,
    /// Status before the transition (e.g. `draft`).
    pub previous_status: String,
    /// Status after the transition (e.g. `sent`).
    pub new_status: String,
    /// User (or system user) who made the change.
    pub actor_user_id: Uuid,
    /// When the status changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(InvoiceStatusChanged {
    event_type: "INVOICE_STATUS_CHANGED",
    name: "Invoice Status Changed",
    description: "Status transition (draft→sent→paid, etc).",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceStatusChanged {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        previous_status: "sent".to_owned(),
        new_status: "paid".to_owned(),
        actor_user_id: sample::id(2),
        changed_at: sample::at(),
    },
});

/// An invoice's due date was changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceDueDateChanged {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The invoice whose due date changed.
    pub invoice_id: Uuid,
    /// Due date before the change.
    pub previous_due_date: NaiveDate,
    /// Due date after the change.
    pub new_due_date: NaiveDate,
    /// User who changed the due date.
    pub actor_user_id: Uuid,
    /// When the due date was changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(InvoiceDueDateChanged {
    event_type: "INVOICE_DUE_DATE_CHANGED",
    name: "Invoice Due Date Changed",
    description: "Due date updated.",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceDueDateChanged {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        previous_due_date: sample::date(),
        new_due_date: sample::date() + chrono::Days::new(14),
        actor_user_id: sample::id(2),
        changed_at: sample::at(),
    },
});

/// An invoice passed its due date unpaid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceOverdue {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The overdue invoice.
    pub invoice_id: Uuid,
    /// The billed client (`companyId` accepted when reading).
    #[serde(alias = "companyId")]
    pub client_id: Uuid,
    /// When the invoice was detected/marked as overdue.
    pub overdue_at: DateTime<Utc>,
    /// The invoice's due date.
    pub due_date: NaiveDate,
    /// Outstanding amount, in minor units (cents) of `currency`.
    pub amount_due: i64,
    /// Currency of `amountDue`.
    pub currency: CurrencyCode,
    /// Whole days past the due date.
    pub days_overdue: u32,
}

catalog_event!(InvoiceOverdue {
    event_type: "INVOICE_OVERDUE",
    name: "Invoice Overdue",
    description: "Invoice became overdue.",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceOverdue {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        client_id: sample::id(2),
        overdue_at: sample::at(),
        due_date: sample::date(),
        amount_due: 125_000,
        currency: sample::usd(),
        days_overdue: 1,
    },
});

/// An invoice (or its remaining balance) was written off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InvoiceWrittenOff {
    /// Tenant of the invoice.
    pub tenant_id: Uuid,
    /// The written-off invoice.
    pub invoice_id: Uuid,
    /// User who wrote the invoice off.
    pub actor_user_id: Uuid,
    /// When it was written off.
    pub written_off_at: DateTime<Utc>,
    /// Amount written off, in minor units (cents) of `currency`.
    pub amount_written_off: i64,
    /// Currency of `amountWrittenOff`.
    pub currency: CurrencyCode,
    /// Why it was written off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(InvoiceWrittenOff {
    event_type: "INVOICE_WRITTEN_OFF",
    name: "Invoice Written Off",
    description: "Invoice written off.",
    category: Billing,
    ordering_key: "invoice" => invoice_id,
    example: InvoiceWrittenOff {
        tenant_id: sample::TENANT,
        invoice_id: sample::id(1),
        actor_user_id: sample::id(2),
        written_off_at: sample::at(),
        amount_written_off: 4_500,
        currency: sample::usd(),
        reason: Some("Uncollectable after client closed business".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------------------------

/// A payment was created/recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct PaymentRecorded {
    /// Tenant of the payment.
    pub tenant_id: Uuid,
    /// The recorded payment.
    pub payment_id: Uuid,
    /// The paying client (`companyId` accepted when reading).
    #[serde(alias = "companyId")]
    pub client_id: Uuid,
    /// When the payment was received.
    pub received_at: DateTime<Utc>,
    /// Amount received, in minor units (cents) of `currency`.
    pub amount: i64,
    /// Currency of `amount`.
    pub currency: CurrencyCode,
    /// Payment method (e.g. `card`, `ach`, `check`, `cash`).
    pub method: String,
    /// Staff user who recorded a manual payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_by_user_id: Option<Uuid>,
    /// The payment gateway's transaction id (provider-defined text, not a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_transaction_id: Option<String>,
}

catalog_event!(PaymentRecorded {
    event_type: "PAYMENT_RECORDED",
    name: "Payment Recorded",
    description: "Payment created/recorded.",
    category: Billing,
    ordering_key: "payment" => payment_id,
    example: PaymentRecorded {
        tenant_id: sample::TENANT,
        payment_id: sample::id(1),
        client_id: sample::id(2),
        received_at: sample::at(),
        amount: 125_000,
        currency: sample::usd(),
        method: "card".to_owned(),
        received_by_user_id: Some(sample::id(3)),
        gateway_transaction_id: Some("ch_3PqK8e2eZvKYlo2C1a2b3c4d".to_owned()),
    },
});

/// The part of a payment applied to one invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct PaymentApplication {
    /// The invoice the money was applied to.
    pub invoice_id: Uuid,
    /// Amount applied to that invoice, in minor units (cents) of the payment's currency.
    pub amount_applied: i64,
}

/// A payment was applied to one or more invoices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct PaymentApplied {
    /// Tenant of the payment.
    pub tenant_id: Uuid,
    /// The applied payment.
    pub payment_id: Uuid,
    /// When the payment was applied.
    pub applied_at: DateTime<Utc>,
    /// User who applied the payment.
    pub applied_by_user_id: Uuid,
    /// How the payment was split across invoices.
    pub applications: Vec<PaymentApplication>,
}

catalog_event!(PaymentApplied {
    event_type: "PAYMENT_APPLIED",
    name: "Payment Applied",
    description: "Payment applied to invoices.",
    category: Billing,
    ordering_key: "payment" => payment_id,
    example: PaymentApplied {
        tenant_id: sample::TENANT,
        payment_id: sample::id(1),
        applied_at: sample::at(),
        applied_by_user_id: sample::id(2),
        applications: vec![
            PaymentApplication {
                invoice_id: sample::id(3),
                amount_applied: 100_000,
            },
            PaymentApplication {
                invoice_id: sample::id(4),
                amount_applied: 25_000,
            },
        ],
    },
});

/// A payment attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct PaymentFailed {
    /// Tenant of the payment.
    pub tenant_id: Uuid,
    /// The payment record, when one was created for the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<Uuid>,
    /// The invoice being paid, when the attempt targeted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<Uuid>,
    /// The paying client (`companyId` accepted when reading).
    #[serde(alias = "companyId")]
    pub client_id: Uuid,
    /// When the attempt failed.
    pub failed_at: DateTime<Utc>,
    /// Amount attempted, in minor units (cents) of `currency`.
    pub amount: i64,
    /// Currency of `amount`.
    pub currency: CurrencyCode,
    /// Payment method attempted (e.g. `card`, `ach`).
    pub method: String,
    /// Gateway/provider failure code (provider-defined text, e.g. `card_declined`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// Human-readable failure message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// Whether retrying the payment may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(PaymentFailed {
    event_type: "PAYMENT_FAILED",
    name: "Payment Failed",
    description: "Payment attempt failed.",
    category: Billing,
    // `paymentId` and `invoiceId` are optional here; the client is the one aggregate always present.
    ordering_key: "client" => client_id,
    example: PaymentFailed {
        tenant_id: sample::TENANT,
        payment_id: Some(sample::id(1)),
        invoice_id: Some(sample::id(2)),
        client_id: sample::id(3),
        failed_at: sample::at(),
        amount: 125_000,
        currency: sample::usd(),
        method: "card".to_owned(),
        failure_code: Some("card_declined".to_owned()),
        failure_message: Some("Your card was declined.".to_owned()),
        retryable: Some(true),
    },
});

/// A refund was issued for a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct PaymentRefunded {
    /// Tenant of the payment.
    pub tenant_id: Uuid,
    /// The refunded payment.
    pub payment_id: Uuid,
    /// When the refund was issued.
    pub refunded_at: DateTime<Utc>,
    /// User who issued the refund.
    pub refunded_by_user_id: Uuid,
    /// Amount refunded, in minor units (cents) of `currency`.
    pub amount: i64,
    /// Currency of `amount`.
    pub currency: CurrencyCode,
    /// Why the refund was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(PaymentRefunded {
    event_type: "PAYMENT_REFUNDED",
    name: "Payment Refunded",
    description: "Refund issued.",
    category: Billing,
    ordering_key: "payment" => payment_id,
    example: PaymentRefunded {
        tenant_id: sample::TENANT,
        payment_id: sample::id(1),
        refunded_at: sample::at(),
        refunded_by_user_id: sample::id(2),
        amount: 25_000,
        currency: sample::usd(),
        reason: Some("Duplicate charge".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------------
// Credits
// ---------------------------------------------------------------------------------------------

/// A credit note was issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CreditNoteCreated {
    /// Tenant of the credit note.
    pub tenant_id: Uuid,
    /// The new credit note.
    pub credit_note_id: Uuid,
    /// The credited client (`companyId` accepted when reading).
    #[serde(alias = "companyId")]
    pub client_id: Uuid,
    /// User who created the credit note.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Credit amount, in minor units (cents) of `currency`.
    pub amount: i64,
    /// Currency of `amount`.
    pub currency: CurrencyCode,
    /// Status of the credit note at creation (e.g. `draft`, `issued`).
    pub status: String,
}

catalog_event!(CreditNoteCreated {
    event_type: "CREDIT_NOTE_CREATED",
    name: "Credit Note Created",
    description: "Credit issued.",
    category: Billing,
    ordering_key: "credit_note" => credit_note_id,
    example: CreditNoteCreated {
        tenant_id: sample::TENANT,
        credit_note_id: sample::id(1),
        client_id: sample::id(2),
        created_by_user_id: sample::id(3),
        created_at: sample::at(),
        amount: 10_000,
        currency: sample::usd(),
        status: "issued".to_owned(),
    },
});

/// A credit note was applied to an invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CreditNoteApplied {
    /// Tenant of the credit note.
    pub tenant_id: Uuid,
    /// The applied credit note.
    pub credit_note_id: Uuid,
    /// The invoice the credit was applied to.
    pub invoice_id: Uuid,
    /// User who applied the credit.
    pub applied_by_user_id: Uuid,
    /// When the credit was applied.
    pub applied_at: DateTime<Utc>,
    /// Amount applied, in minor units (cents) of `currency`.
    pub amount_applied: i64,
    /// Currency of `amountApplied`.
    pub currency: CurrencyCode,
}

catalog_event!(CreditNoteApplied {
    event_type: "CREDIT_NOTE_APPLIED",
    name: "Credit Note Applied",
    description: "Credit applied to invoice.",
    category: Billing,
    ordering_key: "credit_note" => credit_note_id,
    example: CreditNoteApplied {
        tenant_id: sample::TENANT,
        credit_note_id: sample::id(1),
        invoice_id: sample::id(2),
        applied_by_user_id: sample::id(3),
        applied_at: sample::at(),
        amount_applied: 10_000,
        currency: sample::usd(),
    },
});

/// A credit note was voided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct CreditNoteVoided {
    /// Tenant of the credit note.
    pub tenant_id: Uuid,
    /// The voided credit note.
    pub credit_note_id: Uuid,
    /// User who voided it.
    pub voided_by_user_id: Uuid,
    /// When it was voided.
    pub voided_at: DateTime<Utc>,
    /// Why it was voided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(CreditNoteVoided {
    event_type: "CREDIT_NOTE_VOIDED",
    name: "Credit Note Voided",
    description: "Credit voided.",
    category: Billing,
    ordering_key: "credit_note" => credit_note_id,
    example: CreditNoteVoided {
        tenant_id: sample::TENANT,
        credit_note_id: sample::id(1),
        voided_by_user_id: sample::id(2),
        voided_at: sample::at(),
        reason: Some("Issued against the wrong client".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------------
// Contracts / recurring
// ---------------------------------------------------------------------------------------------

/// A client contract was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContractCreated {
    /// Tenant of the contract.
    pub tenant_id: Uuid,
    /// The new contract.
    pub contract_id: Uuid,
    /// The contracted client.
    pub client_id: Uuid,
    /// User who created the contract.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// First day the contract is in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    /// Last day the contract is in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    /// Status at creation (e.g. `draft`, `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

catalog_event!(ContractCreated {
    event_type: "CONTRACT_CREATED",
    name: "Contract Created",
    description: "Client contract created.",
    category: Billing,
    ordering_key: "contract" => contract_id,
    example: ContractCreated {
        tenant_id: sample::TENANT,
        contract_id: sample::id(1),
        client_id: sample::id(2),
        created_by_user_id: sample::id(3),
        created_at: sample::at(),
        start_date: Some(sample::date()),
        end_date: Some(sample::date() + chrono::Days::new(364)),
        status: Some("active".to_owned()),
    },
});

/// Fields of a contract changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContractUpdated {
    /// Tenant of the contract.
    pub tenant_id: Uuid,
    /// The updated contract.
    pub contract_id: Uuid,
    /// The contracted client.
    pub client_id: Uuid,
    /// User who updated the contract.
    pub actor_user_id: Uuid,
    /// When it was updated.
    pub updated_at: DateTime<Utc>,
    /// Paths of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Before/after values of the changed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(ContractUpdated {
    event_type: "CONTRACT_UPDATED",
    name: "Contract Updated",
    description: "Contract fields changed.",
    category: Billing,
    ordering_key: "contract" => contract_id,
    example: ContractUpdated {
        tenant_id: sample::TENANT,
        contract_id: sample::id(1),
        client_id: sample::id(2),
        actor_user_id: sample::id(3),
        updated_at: sample::at(),
        updated_fields: Some(vec!["billingFrequency".to_owned()]),
        changes: Some(sample::changes("billingFrequency", "monthly", "quarterly")),
    },
});

/// A contract moved between lifecycle statuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContractStatusChanged {
    /// Tenant of the contract.
    pub tenant_id: Uuid,
    /// The contract whose status changed.
    pub contract_id: Uuid,
    /// The contracted client.
    pub client_id: Uuid,
    /// Status before the transition (e.g. `draft`).
    pub previous_status: String,
    /// Status after the transition (e.g. `active`).
    pub new_status: String,
    /// User (or system user) who made the change.
    pub actor_user_id: Uuid,
    /// When the status changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(ContractStatusChanged {
    event_type: "CONTRACT_STATUS_CHANGED",
    name: "Contract Status Changed",
    description: "Contract lifecycle change.",
    category: Billing,
    ordering_key: "contract" => contract_id,
    example: ContractStatusChanged {
        tenant_id: sample::TENANT,
        contract_id: sample::id(1),
        client_id: sample::id(2),
        previous_status: "draft".to_owned(),
        new_status: "active".to_owned(),
        actor_user_id: sample::id(3),
        changed_at: sample::at(),
    },
});

/// A contract's renewal is approaching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContractRenewalUpcoming {
    /// Tenant of the contract.
    pub tenant_id: Uuid,
    /// The contract coming up for renewal.
    pub contract_id: Uuid,
    /// The contracted client.
    pub client_id: Uuid,
    /// When the contract renews.
    pub renewal_at: DateTime<Utc>,
    /// Whole days left until the renewal.
    pub days_until_renewal: u32,
}

catalog_event!(ContractRenewalUpcoming {
    event_type: "CONTRACT_RENEWAL_UPCOMING",
    name: "Contract Renewal Upcoming",
    description: "Renewal is approaching.",
    category: Billing,
    ordering_key: "contract" => contract_id,
    example: ContractRenewalUpcoming {
        tenant_id: sample::TENANT,
        contract_id: sample::id(1),
        client_id: sample::id(2),
        renewal_at: sample::at() + chrono::Duration::days(30),
        days_until_renewal: 30,
    },
});

/// A recurring billing run began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct RecurringBillingRunStarted {
    /// Tenant of the run.
    pub tenant_id: Uuid,
    /// The billing run.
    pub run_id: Uuid,
    /// The billing schedule that triggered the run, when scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<Uuid>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// User who started the run manually.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by_user_id: Option<Uuid>,
}

catalog_event!(RecurringBillingRunStarted {
    event_type: "RECURRING_BILLING_RUN_STARTED",
    name: "Recurring Billing Run Started",
    description: "Run begins.",
    category: Billing,
    ordering_key: "recurring_billing_run" => run_id,
    example: RecurringBillingRunStarted {
        tenant_id: sample::TENANT,
        run_id: sample::id(1),
        schedule_id: Some(sample::id(2)),
        started_at: sample::at(),
        initiated_by_user_id: Some(sample::id(3)),
    },
});

/// A recurring billing run completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct RecurringBillingRunCompleted {
    /// Tenant of the run.
    pub tenant_id: Uuid,
    /// The billing run.
    pub run_id: Uuid,
    /// When the run completed.
    pub completed_at: DateTime<Utc>,
    /// Number of invoices the run created.
    pub invoices_created: u32,
    /// Number of billing items/clients that failed.
    pub failed_count: u32,
    /// Non-fatal problems reported by the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

catalog_event!(RecurringBillingRunCompleted {
    event_type: "RECURRING_BILLING_RUN_COMPLETED",
    name: "Recurring Billing Run Completed",
    description: "Run completes.",
    category: Billing,
    ordering_key: "recurring_billing_run" => run_id,
    example: RecurringBillingRunCompleted {
        tenant_id: sample::TENANT,
        run_id: sample::id(1),
        completed_at: sample::at(),
        invoices_created: 42,
        failed_count: 1,
        warnings: Some(vec![
            "Client Acme Corp has no billing contact; invoice not e-mailed".to_owned(),
        ]),
    },
});

/// A recurring billing run failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct RecurringBillingRunFailed {
    /// Tenant of the run.
    pub tenant_id: Uuid,
    /// The billing run.
    pub run_id: Uuid,
    /// When the run failed.
    pub failed_at: DateTime<Utc>,
    /// Machine-readable error code (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error message.
    pub error_message: String,
    /// Whether re-running may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(RecurringBillingRunFailed {
    event_type: "RECURRING_BILLING_RUN_FAILED",
    name: "Recurring Billing Run Failed",
    description: "Run fails.",
    category: Billing,
    ordering_key: "recurring_billing_run" => run_id,
    example: RecurringBillingRunFailed {
        tenant_id: sample::TENANT,
        run_id: sample::id(1),
        failed_at: sample::at(),
        error_code: Some("TAX_SERVICE_UNAVAILABLE".to_owned()),
        error_message: "Tax rate lookup timed out after 3 attempts".to_owned(),
        retryable: Some(true),
    },
});
