//! The inbox refuses what would break exactly-once: a message without an id (every id-less
//! message would look like the first one) and a nameless consumer.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use anyhow::Result;
use integration_tests::TestDb;
use outbox_core::InboxOutcome;
use outbox_core::inbox::{self, InboxError};

#[tokio::test]
async fn an_empty_message_id_or_consumer_is_refused_and_the_transaction_stays_usable() -> Result<()>
{
    let db = TestDb::new().await?;
    let mut tx = db.pool.begin().await?;
    assert!(matches!(
        inbox::record(&mut tx, "billing", "").await,
        Err(InboxError::EmptyMessageId)
    ));
    assert!(matches!(
        inbox::record(&mut tx, "", "m-1").await,
        Err(InboxError::EmptyConsumer)
    ));
    let message = inbox::record(&mut tx, "billing", "")
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("message_id"), "{message}");
    // Refused before any SQL: the same transaction records a real id and commits.
    assert_eq!(
        inbox::record(&mut tx, "billing", "m-1").await?,
        InboxOutcome::Process
    );
    tx.commit().await?;

    // Plain SQL cannot slip an empty id in either.
    let refused =
        sqlx::query("INSERT INTO outbox_inbox (consumer, message_id) VALUES ('billing', '')")
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert!(
        refused.to_string().contains("outbox_inbox_ids_not_empty"),
        "{refused}"
    );
    db.cleanup().await
}
