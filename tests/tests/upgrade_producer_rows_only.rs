//! Upgrading to engine v3's step 5 (`20261207000001_producer_rows_only`) from databases that
//! older engines left in every state: the delivery state that lived on the rows (`status`)
//! moves to the relay's tables, and nothing is delivered twice, lost or reordered.
//!
//! The old states are built as the engines of their time left them: rows written and
//! delivered before step 4a (their seqs from one sequence, so a scope's events can have
//! consecutive seqs), replayed by the old engine (a delivered row made `pending` again), then
//! the step-4b migration, then what a step-4b relay and its operators did (a head that died,
//! then was discarded), then this step's migration and today's relay.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::upgrade_kit::{
    database_before, discard_at_step_4b, insert, migrate_before, seq_of, set,
};
use integration_tests::{RunningRelay, TestBroker, relay_config};
use sqlx::PgPool;
use uuid::Uuid;

/// Step 4a: per-partition sequences (before it, one sequence: consecutive seqs).
const PARTITIONED_SEQ: i64 = 20261206000007;
/// Step 5: the state columns go.
const PRODUCER_ROWS_ONLY: i64 = 20261207000001;

/// What a step-4b relay's settle wrote when `id`, its scope's held head, failed for the last
/// time: the scope held dead at it, its death in `outbox_attempts`.
async fn died_under_step_4b(pool: &PgPool, id: Uuid) -> Result<()> {
    integration_tests::make_dead(pool, &[id], 10, Some("nacked")).await
}

/// The ids the broker received within `idle` of each other, at most `count`.
async fn received(broker: &TestBroker, count: usize, idle: Duration) -> Result<Vec<String>> {
    Ok(broker
        .collect(count, idle)
        .await?
        .into_iter()
        .map(|m| m.message_id)
        .collect())
}

/// A scope whose first event was delivered, then replayed by the old engine (`pending`
/// again, in front of its delivered successor), then died under step 4b and was discarded:
/// the step-4b discard moved the scope's head to `seq + 1`, which, for events written before
/// step 4a, is the seq of the scope's next event, a row delivered long ago. Step 4b's walk
/// skipped that row by its `status`; once the column is gone, the migration must have
/// recorded it as delivered, or today's walk publishes it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_event_at_a_moved_head_is_not_published_again_after_the_upgrade() -> Result<()>
{
    let db = database_before(PARTITIONED_SEQ).await?;
    let tenant = Uuid::now_v7();
    let key = format!("ticket:{}", Uuid::now_v7());
    // Before step 4a: two events of one scope, one after the other (consecutive seqs), both
    // delivered by the old engine.
    let first = insert(&db.pool, Some(tenant), Some(&key)).await?;
    let second = insert(&db.pool, Some(tenant), Some(&key)).await?;
    assert_eq!(
        seq_of(&db.pool, second).await?,
        seq_of(&db.pool, first).await? + 1
    );
    for id in [first, second] {
        set(
            &db.pool,
            id,
            "status = 'delivered', delivered_at = now(), attempts = 1",
        )
        .await?;
    }
    // The old engine's replay of the first: pending again, in front of the delivered second.
    set(
        &db.pool,
        first,
        "status = 'pending', delivered_at = NULL, attempts = 0",
    )
    .await?;

    // Step 4b: the scope is held at its first pending event. The replayed event dies; an
    // operator discards it (the head moves to its seq + 1: the second's seq). The relays are
    // stopped for the upgrade before any walks the scope again.
    migrate_before(&db.pool, PRODUCER_ROWS_ONLY).await?;
    died_under_step_4b(&db.pool, first).await?;
    discard_at_step_4b(&db.pool, first).await?;
    // A later event of the scope, written under step 4b.
    let later = insert(&db.pool, Some(tenant), Some(&key)).await?;

    outbox_core::migrate(&db.pool).await?;

    let status: String = sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
        .bind(second)
        .fetch_one(&db.pool)
        .await?;
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let ids = received(&broker, 3, Duration::from_secs(8)).await?;
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await?;
    assert_eq!(
        ids,
        vec![later.to_string()],
        "only the event written under step 4b goes out (the second was delivered before \
         step 4a, the first discarded): second {second}, first {first}"
    );
    assert_eq!(status, "delivered", "the second was delivered");
    Ok(())
}

/// Before step 4b an operator could move an event out of `pending` by hand (README, "Nothing
/// done outside the relay strands a scope"): here the third event of a scope whose head is
/// dead, marked `delivered` by hand. The second event was never delivered and waits behind
/// the dead head (under step 4b as before). After the upgrade it must still wait. (A first
/// version of the migration turned "pending in front of a delivered row" into a replay,
/// sent on its own, which overtook the dead head; the delivered row is now passed over by
/// the walk instead, `outbox_delivered_behind`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_behind_a_dead_head_still_waits_after_the_upgrade() -> Result<()> {
    let db = database_before(PARTITIONED_SEQ).await?;
    let tenant = Uuid::now_v7();
    let key = format!("ticket:{}", Uuid::now_v7());
    let head = insert(&db.pool, Some(tenant), Some(&key)).await?;
    let behind = insert(&db.pool, Some(tenant), Some(&key)).await?;
    let skipped = insert(&db.pool, Some(tenant), Some(&key)).await?;
    // Step 3's engine: the head is dead (its death in outbox_attempts, the row parked).
    integration_tests::make_dead(&db.pool, &[head], 10, Some("nacked")).await?;
    set(&db.pool, behind, "parked = true").await?;
    // The third moved out of pending by hand.
    set(
        &db.pool,
        skipped,
        "status = 'delivered', delivered_at = now()",
    )
    .await?;

    // Step 4b: the scope is held dead at its head; the second waits behind it.
    migrate_before(&db.pool, PRODUCER_ROWS_ONLY).await?;
    let before: String = sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
        .bind(behind)
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(before, "pending");

    outbox_core::migrate(&db.pool).await?;

    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let ids = received(&broker, 3, Duration::from_secs(8)).await?;
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await?;
    assert!(
        ids.is_empty(),
        "nothing of the scope goes out while its head {head} is dead; published: {ids:?} \
         (behind: {behind}, skipped by hand: {skipped})"
    );
    Ok(())
}

/// What held up: scopes of two tenants on one key, each with an event replayed by the old
/// engine in front of delivered ones and later events behind; a legacy discarded row; a
/// legacy discarded row that was replayed under step 4b. Each pending event goes out once,
/// each scope in order after its replay; nothing delivered or discarded goes out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_replays_discards_and_tenants_go_out_once_after_the_upgrade() -> Result<()> {
    let db = database_before(PARTITIONED_SEQ).await?;
    let tenants = [Uuid::now_v7(), Uuid::now_v7()];
    let key = format!("ticket:{}", Uuid::now_v7());
    let mut replayed = Vec::new();
    let mut delivered = Vec::new();
    let mut waiting = Vec::new();
    for tenant in tenants {
        let ids = [
            insert(&db.pool, Some(tenant), Some(&key)).await?,
            insert(&db.pool, Some(tenant), Some(&key)).await?,
            insert(&db.pool, Some(tenant), Some(&key)).await?,
            insert(&db.pool, Some(tenant), Some(&key)).await?,
        ];
        for id in &ids[..3] {
            set(&db.pool, *id, "status = 'delivered', delivered_at = now()").await?;
        }
        // Old-engine replays of the first two (pending again, in front of the third).
        for id in &ids[..2] {
            set(&db.pool, *id, "status = 'pending', delivered_at = NULL").await?;
        }
        replayed.extend_from_slice(&ids[..2]);
        delivered.push(ids[2]);
        waiting.push(ids[3]);
    }
    let discarded = insert(&db.pool, None, None).await?;
    set(&db.pool, discarded, "status = 'discarded'").await?;
    let discarded_replayed = insert(&db.pool, None, Some("other")).await?;
    set(&db.pool, discarded_replayed, "status = 'discarded'").await?;

    migrate_before(&db.pool, PRODUCER_ROWS_ONLY).await?;
    // Under step 4b: the second discarded row replayed.
    sqlx::query(
        "INSERT INTO outbox_replays (event_id, part, due_at)
         SELECT id, (seq % 16)::integer, now() FROM outbox_events WHERE id = $1",
    )
    .bind(discarded_replayed)
    .execute(&db.pool)
    .await?;

    outbox_core::migrate(&db.pool).await?;

    let statuses: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, status FROM outbox_event_status WHERE id = ANY($1) ORDER BY seq",
    )
    .bind(
        [
            replayed.as_slice(),
            &delivered,
            &waiting,
            &[discarded, discarded_replayed],
        ]
        .concat(),
    )
    .fetch_all(&db.pool)
    .await?;
    for (id, status) in &statuses {
        let expected = if delivered.contains(id) {
            "delivered"
        } else if *id == discarded {
            "discarded"
        } else {
            "pending"
        };
        assert_eq!(status, expected, "{id}");
    }

    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let ids = received(&broker, 20, Duration::from_secs(8)).await?;
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await?;
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "each once: {ids:?}");
    let expected: Vec<String> = [replayed.as_slice(), &waiting, &[discarded_replayed]]
        .concat()
        .iter()
        .map(Uuid::to_string)
        .collect();
    for id in &expected {
        assert!(ids.contains(id), "{id} not published: {ids:?}");
    }
    assert_eq!(ids.len(), expected.len(), "{ids:?}");
    Ok(())
}
