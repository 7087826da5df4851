//! Media: files entering the media pipeline and the outcome of their processing (thumbnails, virus scan).
//!
//! Every event is ordered by its file (`file:<fileId>`), so an upload is delivered before its
//! processing result.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<FileUploaded>(),
        CatalogEntry::of::<MediaProcessingSucceeded>(),
        CatalogEntry::of::<MediaProcessingFailed>(),
    ]
}

/// A file was uploaded to the media pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct FileUploaded {
    /// Tenant that owns the file.
    pub tenant_id: Uuid,
    /// The uploaded file.
    pub file_id: Uuid,
    /// User who uploaded it.
    pub uploaded_by_user_id: Uuid,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Original file name, e.g. `invoice-scan.pdf`.
    pub file_name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Where the file is stored (object-storage key, text).
    pub storage_key: String,
}

catalog_event!(FileUploaded {
    event_type: "FILE_UPLOADED",
    name: "File Uploaded",
    description: "File uploaded to media pipeline.",
    category: Media,
    ordering_key: "file" => file_id,
    example: FileUploaded {
        tenant_id: sample::TENANT,
        file_id: sample::id(1),
        uploaded_by_user_id: sample::id(2),
        uploaded_at: sample::at(),
        file_name: "network-diagram.png".to_owned(),
        content_type: "image/png".to_owned(),
        size_bytes: 482_133,
        storage_key: "tenants/0190/files/network-diagram.png".to_owned(),
    },
});

/// One product of media processing: a derived file (thumbnail, preview) or a check result (virus scan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct MediaOutput {
    /// What was produced, e.g. `thumbnail`, `preview`, `virus_scan` (free text).
    pub kind: String,
    /// Where a derived file is stored (object-storage key, text); absent for checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key: Option<String>,
    /// MIME type of a derived file, e.g. `image/webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Size of a derived file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Outcome of a check, e.g. `clean` for a virus scan (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// Processing of an uploaded file (thumbnails, virus scan) completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct MediaProcessingSucceeded {
    /// Tenant that owns the file.
    pub tenant_id: Uuid,
    /// The processed file.
    pub file_id: Uuid,
    /// When processing completed.
    pub processed_at: DateTime<Utc>,
    /// What processing produced: derived files and check results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<MediaOutput>>,
    /// How long processing took, in milliseconds.
    pub duration_ms: u64,
}

catalog_event!(MediaProcessingSucceeded {
    event_type: "MEDIA_PROCESSING_SUCCEEDED",
    name: "Media Processing Succeeded",
    description: "Processing complete (thumbnails/virus scan).",
    category: Media,
    ordering_key: "file" => file_id,
    example: MediaProcessingSucceeded {
        tenant_id: sample::TENANT,
        file_id: sample::id(1),
        processed_at: sample::at(),
        outputs: Some(vec![
            MediaOutput {
                kind: "thumbnail".to_owned(),
                storage_key: Some("tenants/0190/files/network-diagram.thumb.webp".to_owned()),
                content_type: Some("image/webp".to_owned()),
                size_bytes: Some(18_204),
                result: None,
            },
            MediaOutput {
                kind: "virus_scan".to_owned(),
                storage_key: None,
                content_type: None,
                size_bytes: None,
                result: Some("clean".to_owned()),
            },
        ]),
        duration_ms: 1_350,
    },
});

/// Processing of an uploaded file failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct MediaProcessingFailed {
    /// Tenant that owns the file.
    pub tenant_id: Uuid,
    /// The file whose processing failed.
    pub file_id: Uuid,
    /// When processing failed.
    pub failed_at: DateTime<Utc>,
    /// Machine-readable error code (text, e.g. `unsupported_format`, `virus_detected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error message.
    pub error_message: String,
    /// Whether retrying the processing may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(MediaProcessingFailed {
    event_type: "MEDIA_PROCESSING_FAILED",
    name: "Media Processing Failed",
    description: "Processing failed.",
    category: Media,
    ordering_key: "file" => file_id,
    example: MediaProcessingFailed {
        tenant_id: sample::TENANT,
        file_id: sample::id(1),
        failed_at: sample::at(),
        error_code: Some("unsupported_format".to_owned()),
        error_message: "Cannot render a thumbnail for image/heic".to_owned(),
        retryable: Some(false),
    },
});
