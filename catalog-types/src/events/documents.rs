//! Documents: upload, deletion, association to entities, system generation and e-signature.
//!
//! Every event is ordered by its document (`document:<documentId>`), so the lifecycle of one
//! document (uploaded, associated, signature requested, signed, deleted) is delivered in order.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<DocumentUploaded>(),
        CatalogEntry::of::<DocumentDeleted>(),
        CatalogEntry::of::<DocumentAssociated>(),
        CatalogEntry::of::<DocumentDetached>(),
        CatalogEntry::of::<DocumentGenerated>(),
        CatalogEntry::of::<DocumentSignatureRequested>(),
        CatalogEntry::of::<DocumentSigned>(),
        CatalogEntry::of::<DocumentSignatureExpired>(),
    ]
}

/// A document was uploaded into storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentUploaded {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The uploaded document.
    pub document_id: Uuid,
    /// User who uploaded it.
    pub uploaded_by_user_id: Uuid,
    /// When the upload completed.
    pub uploaded_at: DateTime<Utc>,
    /// Original file name, e.g. `contract.pdf`.
    pub file_name: String,
    /// MIME type of the file, e.g. `application/pdf`.
    pub content_type: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Key of the object in the storage backend (opaque text, not a platform id).
    pub storage_key: String,
}

catalog_event!(DocumentUploaded {
    event_type: "DOCUMENT_UPLOADED",
    name: "Document Uploaded",
    description: "Document uploaded into storage.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentUploaded {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        uploaded_by_user_id: sample::id(2),
        uploaded_at: sample::at(),
        file_name: "service-agreement.pdf".to_owned(),
        content_type: "application/pdf".to_owned(),
        size_bytes: 248_331,
        storage_key: "tenants/0190/documents/service-agreement.pdf".to_owned(),
    },
});

/// A document was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentDeleted {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The deleted document.
    pub document_id: Uuid,
    /// User who deleted it.
    pub deleted_by_user_id: Uuid,
    /// When it was deleted.
    pub deleted_at: DateTime<Utc>,
    /// Why it was deleted, as entered by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(DocumentDeleted {
    event_type: "DOCUMENT_DELETED",
    name: "Document Deleted",
    description: "Document removed.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentDeleted {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        deleted_by_user_id: sample::id(2),
        deleted_at: sample::at(),
        reason: Some("Uploaded to the wrong client".to_owned()),
    },
});

/// A document was associated to an entity (ticket, client, project, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentAssociated {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The associated document.
    pub document_id: Uuid,
    /// Kind of entity it was associated to, e.g. `ticket`, `client`, `project`.
    pub entity_type: String,
    /// The entity it was associated to.
    pub entity_id: Uuid,
    /// User who made the association.
    pub associated_by_user_id: Uuid,
    /// When the association was made.
    pub associated_at: DateTime<Utc>,
}

catalog_event!(DocumentAssociated {
    event_type: "DOCUMENT_ASSOCIATED",
    name: "Document Associated",
    description: "Document associated to an entity.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentAssociated {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        entity_type: "ticket".to_owned(),
        entity_id: sample::id(2),
        associated_by_user_id: sample::id(3),
        associated_at: sample::at(),
    },
});

/// A document's association to an entity was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentDetached {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The detached document.
    pub document_id: Uuid,
    /// Kind of entity it was detached from, e.g. `ticket`, `client`, `project`.
    pub entity_type: String,
    /// The entity it was detached from.
    pub entity_id: Uuid,
    /// User who removed the association.
    pub detached_by_user_id: Uuid,
    /// When the association was removed.
    pub detached_at: DateTime<Utc>,
    /// Why it was removed, as entered by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(DocumentDetached {
    event_type: "DOCUMENT_DETACHED",
    name: "Document Detached",
    description: "Document association removed.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentDetached {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        entity_type: "ticket".to_owned(),
        entity_id: sample::id(2),
        detached_by_user_id: sample::id(3),
        detached_at: sample::at(),
        reason: Some("Attached to the wrong ticket".to_owned()),
    },
});

/// The system generated a document (invoice PDF, report, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentGenerated {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The generated document.
    pub document_id: Uuid,
    /// Kind of entity it was generated from, e.g. `invoice`, `quote`, `report`.
    pub source_type: String,
    /// The entity it was generated from.
    pub source_id: Uuid,
    /// User who triggered the generation; absent when a background job did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_by_user_id: Option<Uuid>,
    /// When it was generated.
    pub generated_at: DateTime<Utc>,
    /// File name of the generated document, e.g. `INV-1042.pdf`.
    pub file_name: String,
}

catalog_event!(DocumentGenerated {
    event_type: "DOCUMENT_GENERATED",
    name: "Document Generated",
    description: "System-generated document created (invoice/PDF/etc).",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentGenerated {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        source_type: "invoice".to_owned(),
        source_id: sample::id(2),
        generated_by_user_id: Some(sample::id(3)),
        generated_at: sample::at(),
        file_name: "INV-1042.pdf".to_owned(),
    },
});

/// One person asked to sign a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentSigner {
    /// E-mail address the signature request is sent to.
    pub email: String,
    /// Display name of the signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Signatures on a document were requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentSignatureRequested {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The document to sign.
    pub document_id: Uuid,
    /// The platform's signature request (one per round of signing).
    pub request_id: Uuid,
    /// User who requested the signatures.
    pub requested_by_user_id: Uuid,
    /// When the signatures were requested.
    pub requested_at: DateTime<Utc>,
    /// Who is asked to sign.
    pub signers: Vec<DocumentSigner>,
    /// When the request expires if not fully signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

catalog_event!(DocumentSignatureRequested {
    event_type: "DOCUMENT_SIGNATURE_REQUESTED",
    name: "Document Signature Requested",
    description: "Signature requested.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentSignatureRequested {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        request_id: sample::id(2),
        requested_by_user_id: sample::id(3),
        requested_at: sample::at(),
        signers: vec![
            DocumentSigner {
                email: "jane.doe@example.com".to_owned(),
                name: Some("Jane Doe".to_owned()),
            },
            DocumentSigner {
                email: "cfo@example.com".to_owned(),
                name: None,
            },
        ],
        expires_at: Some(sample::at() + chrono::Duration::days(14)),
    },
});

/// A document was fully signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentSigned {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The signed document.
    pub document_id: Uuid,
    /// The signature request that completed.
    pub request_id: Uuid,
    /// When the last signature was applied.
    pub signed_at: DateTime<Utc>,
    /// E-mail address of the (last) signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_email: Option<String>,
    /// Platform user or contact id of the (last) signer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_id: Option<Uuid>,
}

catalog_event!(DocumentSigned {
    event_type: "DOCUMENT_SIGNED",
    name: "Document Signed",
    description: "Document fully signed.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentSigned {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        request_id: sample::id(2),
        signed_at: sample::at(),
        signer_email: Some("jane.doe@example.com".to_owned()),
        signer_id: Some(sample::id(3)),
    },
});

/// A signature request expired before the document was fully signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct DocumentSignatureExpired {
    /// Tenant of the document.
    pub tenant_id: Uuid,
    /// The document that was not signed.
    pub document_id: Uuid,
    /// The signature request that expired.
    pub request_id: Uuid,
    /// When the request expired.
    pub expired_at: DateTime<Utc>,
}

catalog_event!(DocumentSignatureExpired {
    event_type: "DOCUMENT_SIGNATURE_EXPIRED",
    name: "Document Signature Expired",
    description: "Signature request expired.",
    category: Documents,
    ordering_key: "document" => document_id,
    example: DocumentSignatureExpired {
        tenant_id: sample::TENANT,
        document_id: sample::id(1),
        request_id: sample::id(2),
        expired_at: sample::at(),
    },
});
