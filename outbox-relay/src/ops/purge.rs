//! `purge`: delete what an outbox no longer needs, on an operator's command.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

use crate::foundation::human_duration::show;
use crate::store::purge::{self, Purgeable};

/// The age past which `outbox-relay purge` deletes by default.
pub const DEFAULT_OLDER_THAN: Duration = Duration::from_secs(7 * 86_400);

/// What `purge` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PurgeTarget {
    /// Delivered and discarded events (and then the key locks left idle).
    FinishedEvents,
    /// Consumer inbox records.
    Inbox,
}

impl PurgeTarget {
    fn describe(self) -> &'static str {
        match self {
            PurgeTarget::FinishedEvents => "delivered and discarded events",
            PurgeTarget::Inbox => "inbox records",
        }
    }

    fn kinds(self) -> &'static [Purgeable] {
        match self {
            PurgeTarget::FinishedEvents => &[Purgeable::Delivered, Purgeable::Discarded],
            PurgeTarget::Inbox => &[Purgeable::Inbox],
        }
    }
}

/// What a purge did, or with `dry_run` would do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeReport {
    /// What was purged.
    pub target: PurgeTarget,
    /// The age limit.
    #[serde(skip)]
    pub older_than: Duration,
    /// The age limit, in seconds.
    pub older_than_seconds: f64,
    /// Rows deleted (or that would be).
    pub count: u64,
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// How long the deletion took, in seconds (0 for a dry run).
    pub elapsed_seconds: f64,
}

/// Deletes `target` rows older than `older_than`, `batch` per statement, or with `dry_run`
/// counts them.
pub async fn purge(
    pool: &PgPool,
    target: PurgeTarget,
    older_than: Duration,
    batch: i64,
    dry_run: bool,
) -> Result<PurgeReport, sqlx::Error> {
    let started = Instant::now();
    let mut count = 0;
    if dry_run {
        for kind in target.kinds() {
            count += u64::try_from(purge::count(pool, *kind, older_than).await?).unwrap_or(0);
        }
    } else {
        count = match target {
            PurgeTarget::FinishedEvents => purge::finished_events(pool, older_than, batch).await?,
            PurgeTarget::Inbox => purge::purge(pool, Purgeable::Inbox, older_than, batch).await?,
        };
    }
    Ok(PurgeReport {
        target,
        older_than,
        older_than_seconds: older_than.as_secs_f64(),
        count,
        dry_run,
        elapsed_seconds: if dry_run {
            0.0
        } else {
            started.elapsed().as_secs_f64()
        },
    })
}

impl PurgeReport {
    /// One line for a terminal, e.g. `deleted 1200 inbox records older than 7d in 0.3s`.
    pub fn to_text(&self) -> String {
        let age = show(self.older_than);
        let what = self.target.describe();
        if self.dry_run {
            format!("would delete {} {what} older than {age}\n", self.count)
        } else {
            format!(
                "deleted {} {what} older than {age} in {:.1}s\n",
                self.count, self.elapsed_seconds
            )
        }
    }
}
