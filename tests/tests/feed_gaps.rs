//! Gaps in numbers a claim does not read at once: a batch of 20,000 events rolled back
//! leaves more than a thousand gaps in each partition, and a writer of a scope that filled
//! one of them late must still see its event go out before the scope's later ones.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use anyhow::Result;
use catalog_types::CatalogEvent;
use integration_tests::{TEST_TENANT, TestDb, emit_ticket};
use outbox_relay::engine::outcome::Outcome;
use outbox_relay::store::feed;
use uuid::Uuid;

async fn part_of(db: &TestDb, id: Uuid) -> Result<i32> {
    let p: i64 = sqlx::query_scalar("SELECT seq % 16 FROM outbox_events WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await?;
    Ok(i32::try_from(p)?)
}

/// One claim of partition `p` (leased by hand), every event delivered; returns them in the
/// order the claim publishes them.
async fn claim_all(db: &TestDb, p: i32) -> Result<Vec<Uuid>> {
    let token = Uuid::now_v7();
    let frontier: i64 = sqlx::query_scalar(
        "UPDATE outbox_partitions SET token = $1, leased_until = now() + interval '1 hour'
          WHERE part = $2 RETURNING frontier",
    )
    .bind(token)
    .bind(p)
    .fetch_one(&db.pool)
    .await?;
    let mut conn = db.pool.acquire().await?;
    let (_rows, claim) = feed::read(&mut conn, &[(i64::from(p), frontier)], 500).await?;
    let ids: Vec<Uuid> = claim
        .parts
        .iter()
        .flat_map(|part| part.plan.publish.iter().map(|r| r.id))
        .collect();
    let outcomes: Vec<(Uuid, Outcome)> = ids.iter().map(|i| (*i, Outcome::Delivered)).collect();
    let mut tx = db.pool.begin().await?;
    feed::settle(&mut tx, token, &claim, 10, &outcomes).await?;
    tx.commit().await?;
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_filled_late_goes_out_before_its_scopes_later_events_however_many_gaps() -> Result<()>
{
    let db = TestDb::new().await?;
    let scope_ticket = Uuid::now_v7();
    let first = emit_ticket(&db.pool, scope_ticket, Default::default()).await?;
    let p = part_of(&db, first).await?;
    assert_eq!(claim_all(&db, p).await?, vec![first]);

    // A batch of 20,000 events rolled back: seqs drawn in every partition, none to fill.
    let mut batch = Vec::new();
    for _ in 0..20_000 {
        let event = catalog_types::TicketUpdated {
            tenant_id: TEST_TENANT,
            ticket_id: Uuid::now_v7(),
            ..catalog_types::TicketUpdated::example()
        };
        batch.push(outbox_core::NewEvent::new(&event)?);
    }
    let mut big = db.pool.begin().await?;
    outbox_core::emit_batch(&mut big, &batch).await?;
    big.rollback().await?;

    // A writer of the scope, still open, and another scope's event of the partition after it.
    let event = catalog_types::TicketUpdated {
        tenant_id: TEST_TENANT,
        ticket_id: scope_ticket,
        ..catalog_types::TicketUpdated::example()
    };
    let mut writer = db.pool.begin().await?;
    let a = outbox_core::emit_with(&mut writer, &event, Default::default()).await?;
    loop {
        let other = emit_ticket(&db.pool, Uuid::now_v7(), Default::default()).await?;
        if part_of(&db, other).await? == p {
            break;
        }
        sqlx::query("DELETE FROM outbox_events WHERE id = $1")
            .bind(other)
            .execute(&db.pool)
            .await?;
    }
    claim_all(&db, p).await?;
    let gaps: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_gaps WHERE part = $1")
        .bind(p)
        .fetch_one(&db.pool)
        .await?;
    assert!(gaps > 0, "the open writer's seq is a gap");

    // It commits; the scope's next event follows.
    writer.commit().await?;
    let b = emit_ticket(&db.pool, scope_ticket, Default::default()).await?;
    let mut published = Vec::new();
    for _ in 0..6 {
        published.extend(claim_all(&db, p).await?);
    }
    let at = |id: Uuid| published.iter().position(|x| *x == id);
    assert!(at(a).is_some() && at(b).is_some(), "{published:?}");
    assert!(at(a) < at(b), "the scope's events in order: {published:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_gaps WHERE part = $1")
        .bind(p)
        .fetch_one(&db.pool)
        .await?;
    assert!(
        left < gaps,
        "gaps that will never fill are forgotten ({gaps} -> {left})"
    );
    db.cleanup().await
}
