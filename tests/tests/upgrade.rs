//! Upgrading a database from the schema before engine v3's first step (migrations up to
//! `20260501000001`) with events in every state: nothing is lost, nothing changes state,
//! per-scope order holds, and events that an earlier tenant's head held on the same key flow.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use integration_tests::upgrade_kit::{
    database_before, discard_at_step_4b, insert, insert_in, migrate_before, seq_of, set,
};
use integration_tests::{RunningRelay, TestBroker, relay_cli, relay_config, wait_until};
use sqlx::PgPool;
use uuid::Uuid;

/// The first migration of engine v3's first step.
const STEP_ONE: i64 = 20261206000001;

/// `columns` of each event, in the order given: from the rows before engine v3's step 3,
/// from `outbox_event_status` (which reads the failures, next tries and deaths the relay
/// keeps in `outbox_attempts`) after it.
async fn columns_of<T>(pool: &PgPool, ids: &[Uuid], columns: &str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let view: bool = sqlx::query_scalar("SELECT to_regclass('outbox_event_status') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let source = if view {
        "outbox_event_status"
    } else {
        "outbox_events"
    };
    let mut out = Vec::new();
    for id in ids {
        out.push(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {columns} FROM {source} WHERE id = $1"
            )))
            .bind(id)
            .fetch_one(pool)
            .await?,
        );
    }
    Ok(out)
}

/// (status, attempts, parked) of each event ([`columns_of`]).
async fn states(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(String, i32, bool)>> {
    columns_of(pool, ids, "status, attempts, parked").await
}

/// When each pending event may go out: `due_at` through `outbox_event_status` (engine v3's
/// step 3 on), its row's `available_at` before (which a relay rewrote on a failure).
async fn due_times(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<DateTime<Utc>>> {
    let view: bool = sqlx::query_scalar("SELECT to_regclass('outbox_event_status') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let column = if view { "due_at" } else { "available_at" };
    let due: Vec<(Option<DateTime<Utc>>,)> = columns_of(pool, ids, column).await?;
    ids.iter()
        .zip(due)
        .map(|(id, (due,))| due.with_context(|| format!("{id} is not pending")))
        .collect()
}

/// Checks that each of `ids` arrived (in `received`) no earlier than its `due` time (taken
/// before the upgrade: the time a migration takes counts).
fn went_out_on_time(
    received: &[(integration_tests::Received, DateTime<Utc>)],
    ids: &[Uuid],
    due: &[DateTime<Utc>],
) {
    for (id, due) in ids.iter().zip(due) {
        let at = received
            .iter()
            .find(|(m, _)| m.message_id == id.to_string())
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("{id} did not go out"));
        assert!(at >= *due, "{id} went out at {at}, before its time {due}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_with_events_in_every_state_loses_nothing_and_keeps_order() -> Result<()> {
    let db = database_before(STEP_ONE).await?;

    let tenant_a = Uuid::now_v7();
    let tenant_b = Uuid::now_v7();
    let shared = format!("order:{}", Uuid::now_v7());
    let retrying_key = format!("ticket:{}", Uuid::now_v7());
    let leased_key = format!("ticket:{}", Uuid::now_v7());
    let discarded_key = format!("ticket:{}", Uuid::now_v7());

    // Tenant A on the shared key: delivered, dead (its head), then one waiting behind it.
    let a_delivered = insert(&db.pool, Some(tenant_a), Some(&shared)).await?;
    set(
        &db.pool,
        a_delivered,
        "status = 'delivered', attempts = 1, delivered_at = now()",
    )
    .await?;
    let a_dead = insert(&db.pool, Some(tenant_a), Some(&shared)).await?;
    set(
        &db.pool,
        a_dead,
        "status = 'dead', attempts = 10, last_error = 'nacked'",
    )
    .await?;
    let a_waiting = insert(&db.pool, Some(tenant_a), Some(&shared)).await?;
    // Tenant B on the same key: the old engine parked it behind A's dead head.
    let b_first = insert(&db.pool, Some(tenant_b), Some(&shared)).await?;
    let b_second = insert(&db.pool, Some(tenant_b), Some(&shared)).await?;
    // No tenant: a retrying head with one behind it.
    let retrying = insert(&db.pool, None, Some(&retrying_key)).await?;
    set(
        &db.pool,
        retrying,
        "attempts = 2, last_error = 'timeout', available_at = now() + interval '1 second'",
    )
    .await?;
    let behind_retrying = insert(&db.pool, None, Some(&retrying_key)).await?;
    // Leased by a relay (stopped before the upgrade) until two seconds from now.
    let leased = insert(&db.pool, Some(tenant_a), Some(&leased_key)).await?;
    set(
        &db.pool,
        leased,
        "claim_token = gen_random_uuid(), locked_by = 'old-relay', locked_until = now() + interval '2 seconds'",
    )
    .await?;
    // Discarded by an operator, and the event after it.
    let discarded = insert(&db.pool, Some(tenant_b), Some(&discarded_key)).await?;
    set(
        &db.pool,
        discarded,
        "status = 'discarded', attempts = 10, parked = false",
    )
    .await?;
    let after_discarded = insert(&db.pool, Some(tenant_b), Some(&discarded_key)).await?;
    set(&db.pool, after_discarded, "parked = false").await?;
    // Unordered events: pending, delivered, dead.
    let unordered = insert(&db.pool, None, None).await?;
    let unordered_delivered = insert(&db.pool, None, None).await?;
    set(
        &db.pool,
        unordered_delivered,
        "status = 'delivered', attempts = 1, delivered_at = now()",
    )
    .await?;
    let unordered_dead = insert(&db.pool, None, None).await?;
    set(&db.pool, unordered_dead, "status = 'dead', attempts = 10").await?;
    // A rolled-back writer leaves nothing behind.
    let mut tx = db.pool.begin().await?;
    let rolled_back: Uuid = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         VALUES ('TICKET_UPDATED', '{\"ticketId\": \"x\"}', $1) RETURNING id",
    )
    .bind(&shared)
    .fetch_one(&mut *tx)
    .await?;
    tx.rollback().await?;

    let all = [
        a_delivered,
        a_dead,
        a_waiting,
        b_first,
        b_second,
        retrying,
        behind_retrying,
        leased,
        discarded,
        after_discarded,
        unordered,
        unordered_delivered,
        unordered_dead,
    ];
    let old = states(&db.pool, &all).await?;
    assert!(
        old[3].2,
        "the old engine parked tenant B behind tenant A's head: {old:?}"
    );
    let max_seq: i64 = sqlx::query_scalar("SELECT max(seq) FROM outbox_events")
        .fetch_one(&db.pool)
        .await?;

    // A writer role granted as the grants.sql of that schema did.
    let writer = format!("outbox_t_{}_writer", integration_tests::unique_suffix());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {writer} LOGIN;
         GRANT SELECT ON system_event_catalog TO {writer};
         GRANT SELECT, INSERT ON outbox_events TO {writer};
         GRANT USAGE ON SEQUENCE outbox_events_seq_seq TO {writer};
         GRANT SELECT, INSERT, UPDATE ON outbox_key_locks TO {writer};"
    )))
    .execute(&db.pool)
    .await?;

    migrate_before(&db.pool, 20261206000004).await?;

    // The writer still writes (the sequence the trigger now draws from kept its grants).
    let as_writer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options.clone().username(&writer))
        .await?;
    let by_writer = insert(&as_writer, Some(tenant_b), Some(&discarded_key)).await;
    as_writer.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {writer}; DROP ROLE {writer};"
    )))
    .execute(&db.pool)
    .await?;
    let by_writer = by_writer?;

    // Every status and attempt count is kept; B's first event is a head of its own now.
    let new = states(&db.pool, &all).await?;
    for (i, (was, is)) in old.iter().zip(&new).enumerate() {
        assert_eq!((&was.0, was.1), (&is.0, is.1), "event {i} changed state");
    }
    assert!(!new[3].2, "tenant B's first event is unparked: {new:?}");
    assert!(
        new[4].2,
        "tenant B's second event stays parked behind its first"
    );
    assert!(
        new[2].2,
        "tenant A's waiting event stays parked behind its dead head"
    );
    // New events continue the sequence.
    let next = insert(&db.pool, None, None).await?;
    let next_seq: i64 = sqlx::query_scalar("SELECT seq FROM outbox_events WHERE id = $1")
        .bind(next)
        .fetch_one(&db.pool)
        .await?;
    assert!(
        next_seq > max_seq,
        "seq continues after the upgrade: {next_seq} <= {max_seq}"
    );

    // The rest of the way (later steps), then the relay of today.
    outbox_core::migrate(&db.pool).await?;
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected = [
        b_first,
        b_second,
        retrying,
        behind_retrying,
        leased,
        after_discarded,
        by_writer,
        unordered,
        next,
    ];
    let received = broker
        .collect(expected.len(), Duration::from_secs(30))
        .await?;
    let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), expected.len(), "each once: {ids:?}");
    for id in &expected {
        assert!(ids.contains(&id.to_string()), "{id} not delivered: {ids:?}");
    }
    let position = |id: &Uuid| ids.iter().position(|x| *x == id.to_string());
    assert!(
        position(&b_first) < position(&b_second),
        "tenant B in order"
    );
    assert!(
        position(&retrying) < position(&behind_retrying),
        "retrying key in order"
    );
    assert!(
        position(&after_discarded) < position(&by_writer),
        "the writer's event after the earlier one of its scope"
    );
    for id in [a_waiting, rolled_back, discarded, unordered_dead, a_dead] {
        assert!(position(&id).is_none(), "{id} must not be published");
    }

    // Tenant A's key flows once its dead head is discarded.
    let (code, stdout, stderr) = relay_cli(
        &db,
        &["discard", "--id", &a_dead.to_string(), "--actor", "t"],
    )
    .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let pool = db.pool.clone();
    wait_until(
        Duration::from_secs(30),
        "tenant A's waiting event delivered",
        || {
            let pool = pool.clone();
            async move { Ok(states(&pool, &[a_waiting]).await?[0].0 == "delivered") }
        },
    )
    .await?;
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

/// The first migration of engine v3's second step (leases off the event row).
const STEP_TWO: i64 = 20261206000004;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_step_one_moves_leases_off_the_rows_and_loses_nothing() -> Result<()> {
    let db = database_before(STEP_TWO).await?;

    let tenant = Uuid::now_v7();
    let leased_key = format!("ticket:{}", Uuid::now_v7());
    let dead_key = format!("ticket:{}", Uuid::now_v7());
    let retrying_key = format!("ticket:{}", Uuid::now_v7());
    let scheduled_key = format!("ticket:{}", Uuid::now_v7());

    // A head and its run leased by a step-one relay (stopped for the upgrade), one parked
    // behind the run.
    let leased: Vec<Uuid> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(insert(&db.pool, Some(tenant), Some(&leased_key)).await?);
        }
        ids
    };
    for id in &leased[..3] {
        set(
            &db.pool,
            *id,
            "claim_token = '00000001-0000-8000-8000-000000000000', locked_by = 'old-relay',
             locked_until = now() + interval '1 hour'",
        )
        .await?;
    }
    // An unordered event leased, with an expired lease.
    let unordered_leased = insert_in(&db.pool, None, None, "claim_token = gen_random_uuid(), locked_by = 'old-relay', locked_until = now() - interval '1 minute'").await?;
    // Delivered, dead with one behind, retrying with one behind, scheduled, discarded.
    let delivered = insert_in(
        &db.pool,
        None,
        Some(&dead_key),
        "status = 'delivered', attempts = 1, delivered_at = now()",
    )
    .await?;
    let dead = insert_in(
        &db.pool,
        None,
        Some(&dead_key),
        "status = 'dead', attempts = 10, last_error = 'nacked'",
    )
    .await?;
    let behind_dead = insert(&db.pool, None, Some(&dead_key)).await?;
    let retrying = insert_in(
        &db.pool,
        None,
        Some(&retrying_key),
        "attempts = 2, last_error = 'timeout', available_at = now() + interval '1 second'",
    )
    .await?;
    let behind_retrying = insert(&db.pool, None, Some(&retrying_key)).await?;
    let scheduled = insert_in(
        &db.pool,
        None,
        Some(&scheduled_key),
        "available_at = now() + interval '2 seconds'",
    )
    .await?;
    let discarded = insert_in(&db.pool, None, None, "status = 'discarded', attempts = 10").await?;
    sqlx::query("INSERT INTO outbox_discarded (event_id) VALUES ($1)")
        .bind(discarded)
        .execute(&db.pool)
        .await?;

    let all: Vec<Uuid> = leased
        .iter()
        .copied()
        .chain([
            unordered_leased,
            delivered,
            dead,
            behind_dead,
            retrying,
            behind_retrying,
            scheduled,
            discarded,
        ])
        .collect();
    let old = states(&db.pool, &all).await?;

    migrate_before(&db.pool, 20261206000007).await?;

    // States kept; no lease left on any row, none in the lease table; the row-lease index
    // gone, the ready index without the lease in its predicate.
    let new = states(&db.pool, &all).await?;
    // Status and attempts kept; so is parking, but for the dead and the retrying head, which
    // step 3 parks (their death and next try are in `outbox_attempts`).
    for (i, ((was, is), id)) in old.iter().zip(&new).zip(&all).enumerate() {
        assert_eq!((&was.0, was.1), (&is.0, is.1), "event {i} changed state");
        if *id == dead || *id == retrying {
            assert!(is.2, "event {i} is parked: {is:?}");
        } else {
            assert_eq!(was.2, is.2, "event {i} changed parking");
        }
    }
    let (on_rows, in_table): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_events
                  WHERE claim_token IS NOT NULL OR locked_by IS NOT NULL OR locked_until IS NOT NULL),
                (SELECT count(*) FROM outbox_leases)",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!((on_rows, in_table), (0, 0));
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'outbox_events'",
    )
    .fetch_all(&db.pool)
    .await?;
    assert!(
        !indexes
            .iter()
            .any(|(name, _)| name == "outbox_events_leased"),
        "{indexes:?}"
    );
    let ready = indexes
        .iter()
        .find(|(name, _)| name == "outbox_events_ready")
        .map(|(_, def)| def.clone())
        .unwrap_or_default();
    assert!(
        ready.contains("parked") && !ready.contains("claim_token"),
        "{ready}"
    );
    // A relay older than the migration, left running, cannot lease on the row any more
    // (new relays would not see it): its claim fails loudly; clearing the columns (its
    // settle) still works.
    let fenced = sqlx::query(
        "UPDATE outbox_events SET claim_token = gen_random_uuid(), locked_by = 'old-relay',
                locked_until = now() + interval '1 minute'
          WHERE id = $1",
    )
    .bind(leased[0])
    .execute(&db.pool)
    .await
    .expect_err("an old relay's lease on the row is refused");
    assert_eq!(
        fenced.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23514"),
        "{fenced}"
    );
    sqlx::query(
        "UPDATE outbox_events SET claim_token = NULL, locked_by = NULL, locked_until = NULL
          WHERE id = $1",
    )
    .bind(leased[0])
    .execute(&db.pool)
    .await?;

    // The relay delivers every pending event once, in order per scope.
    // The rest of the way (later steps), then the relay of today.
    outbox_core::migrate(&db.pool).await?;
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected: Vec<Uuid> = leased
        .iter()
        .copied()
        .chain([unordered_leased, retrying, behind_retrying, scheduled])
        .collect();
    let received = broker
        .collect(expected.len(), Duration::from_secs(30))
        .await?;
    let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), expected.len(), "each once: {ids:?}");
    let position = |id: &Uuid| ids.iter().position(|x| *x == id.to_string());
    for id in &expected {
        assert!(position(id).is_some(), "{id} not delivered: {ids:?}");
    }
    for pair in leased.windows(2) {
        assert!(
            position(&pair[0]) < position(&pair[1]),
            "leased key in order"
        );
    }
    assert!(position(&retrying) < position(&behind_retrying));
    for id in [delivered, dead, behind_dead, discarded] {
        assert!(position(&id).is_none(), "{id} must not be published");
    }
    let pool = db.pool.clone();
    wait_until(
        Duration::from_secs(10),
        "every lease ended by its settle",
        || {
            let pool = pool.clone();
            async move {
                let leases: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM outbox_partitions WHERE token IS NOT NULL",
                )
                .fetch_one(&pool)
                .await?;
                Ok(leases == 0)
            }
        },
    )
    .await?;
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

/// The migration of engine v3's third step (failures off the event row).
const STEP_THREE: i64 = 20261206000006;

/// (status, attempts, last error) of each event ([`columns_of`]).
async fn facts(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(String, i32, Option<String>)>> {
    columns_of(pool, ids, "status, attempts, last_error").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_step_two_moves_failures_off_the_rows_and_loses_nothing() -> Result<()> {
    let db = database_before(STEP_THREE).await?;

    let tenant = Uuid::now_v7();
    let dead_key = format!("ticket:{}", Uuid::now_v7());
    let retrying_key = format!("ticket:{}", Uuid::now_v7());
    let leased_key = format!("ticket:{}", Uuid::now_v7());
    let scheduled_key = format!("ticket:{}", Uuid::now_v7());

    // Delivered after two failures, then a dead head with one parked behind it.
    let delivered = insert_in(
        &db.pool,
        Some(tenant),
        Some(&dead_key),
        "status = 'delivered', attempts = 3, delivered_at = now()",
    )
    .await?;
    let dead = insert_in(
        &db.pool,
        Some(tenant),
        Some(&dead_key),
        "status = 'dead', attempts = 10, last_error = 'nacked'",
    )
    .await?;
    let behind_dead = insert(&db.pool, Some(tenant), Some(&dead_key)).await?;
    // A keyed head retrying in two seconds (a step-two relay rewrote its available_at), one
    // parked behind it; an unordered event retrying in one.
    let retrying = insert_in(
        &db.pool,
        Some(tenant),
        Some(&retrying_key),
        "attempts = 2, last_error = 'timeout', available_at = now() + interval '2 seconds'",
    )
    .await?;
    let behind_retrying = insert(&db.pool, Some(tenant), Some(&retrying_key)).await?;
    let unordered_retrying = insert_in(
        &db.pool,
        None,
        None,
        "attempts = 1, last_error = 'returned', available_at = now() + interval '1 second'",
    )
    .await?;
    // Leased by a step-two relay (stopped for the upgrade) until a second from now.
    let leased = insert(&db.pool, Some(tenant), Some(&leased_key)).await?;
    sqlx::query(
        "INSERT INTO outbox_leases (lease_key, token, relay_id, leased_until, first_seq, last_seq, events)
         SELECT outbox_scope(tenant_id, ordering_key), gen_random_uuid(), 'old-relay',
                now() + interval '1 second', seq, seq, 1
           FROM outbox_events WHERE id = $1",
    )
    .bind(leased)
    .execute(&db.pool)
    .await?;
    // Scheduled, never tried; plain pending; discarded after ten failures.
    let scheduled = insert_in(
        &db.pool,
        None,
        Some(&scheduled_key),
        "available_at = now() + interval '2 seconds'",
    )
    .await?;
    let pending = insert(&db.pool, Some(tenant), None).await?;
    let discarded = insert_in(
        &db.pool,
        None,
        None,
        "status = 'discarded', attempts = 10, last_error = 'discarded by ops; last error: nacked'",
    )
    .await?;
    sqlx::query("INSERT INTO outbox_discarded (event_id) VALUES ($1)")
        .bind(discarded)
        .execute(&db.pool)
        .await?;

    let all = [
        delivered,
        dead,
        behind_dead,
        retrying,
        behind_retrying,
        unordered_retrying,
        leased,
        scheduled,
        pending,
        discarded,
    ];
    let old = facts(&db.pool, &all).await?;
    let old_parked = states(&db.pool, &all).await?;
    let timed = [retrying, unordered_retrying, scheduled];
    let due = due_times(&db.pool, &timed).await?;

    migrate_before(&db.pool, 20261206000007).await?;

    // Every event says the same through the status view; the failures of undelivered
    // events live in the relay's table now, not on their rows.
    let new = facts(&db.pool, &all).await?;
    assert_eq!(old, new, "what each event says changed");
    // Parking is kept, but for the dead and the retrying events: parked now.
    for ((was, is), id) in old_parked
        .iter()
        .zip(states(&db.pool, &all).await?)
        .zip(all)
    {
        if [dead, retrying, unordered_retrying].contains(&id) {
            assert!(is.2, "{id} is parked: {is:?}");
        } else {
            assert_eq!(was.2, is.2, "{id} changed parking");
        }
    }
    let on_rows: Vec<(Uuid, i32, Option<String>)> = sqlx::query_as(
        "SELECT id, attempts, last_error FROM outbox_events
          WHERE status <> 'delivered' AND (attempts <> 0 OR last_error IS NOT NULL)",
    )
    .fetch_all(&db.pool)
    .await?;
    assert!(on_rows.is_empty(), "failures left on rows: {on_rows:?}");
    let moved: Vec<(Uuid, i32, bool, bool)> = sqlx::query_as(
        "SELECT event_id, failures, next_attempt_at IS NOT NULL, dead_at IS NOT NULL
           FROM outbox_attempts ORDER BY event_id",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut expected_moved = vec![
        (dead, 10, false, true),
        (retrying, 2, true, false),
        (unordered_retrying, 1, true, false),
        (discarded, 10, false, false),
    ];
    expected_moved.sort();
    assert_eq!(moved, expected_moved);
    let delivered_row: i32 = sqlx::query_scalar("SELECT attempts FROM outbox_events WHERE id = $1")
        .bind(delivered)
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(delivered_row, 3, "a delivered event keeps its history");

    // The relay delivers every pending event once, in order, the retrying ones as their next
    // attempt (`x-attempt`) once their time comes; nothing dead, delivered or discarded.
    // The rest of the way (later steps), then the relay of today.
    outbox_core::migrate(&db.pool).await?;
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected = [
        retrying,
        behind_retrying,
        unordered_retrying,
        leased,
        scheduled,
        pending,
    ];
    let timed_received = broker
        .collect_timed(expected.len(), Duration::from_secs(30))
        .await?;
    let received: Vec<_> = timed_received.iter().map(|(m, _)| m.clone()).collect();
    let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    let position = |id: &Uuid| ids.iter().position(|x| *x == id.to_string());
    for id in &expected {
        assert!(position(id).is_some(), "{id} not delivered: {ids:?}");
    }
    assert_eq!(sorted.len(), expected.len(), "each once: {ids:?}");
    assert!(position(&retrying) < position(&behind_retrying));
    for id in [delivered, dead, behind_dead, discarded] {
        assert!(position(&id).is_none(), "{id} must not be published");
    }
    let attempt_of = |id: Uuid| {
        received
            .iter()
            .find(|m| m.message_id == id.to_string())
            .and_then(|m| m.headers.get("x-attempt").cloned())
    };
    assert_eq!(attempt_of(retrying).as_deref(), Some("3"));
    assert_eq!(attempt_of(unordered_retrying).as_deref(), Some("2"));
    assert_eq!(attempt_of(pending).as_deref(), Some("1"));
    // The retries and the scheduled event waited for their time.
    went_out_on_time(&timed_received, &timed, &due);
    relay.stop().await?;

    // What the events say after delivery: attempts counted from the failures.
    let after = facts(&db.pool, &[retrying, unordered_retrying, pending]).await?;
    assert_eq!(
        after
            .iter()
            .map(|(status, attempts, _)| (status.as_str(), *attempts))
            .collect::<Vec<_>>(),
        vec![("delivered", 3), ("delivered", 2), ("delivered", 1)]
    );

    // The dead head is replayed: its failures are forgotten, and it and the event behind it
    // go out.
    let (code, _, stderr) =
        relay_cli(&db, &["replay", "--id", &dead.to_string(), "--actor", "t"]).await?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        facts(&db.pool, &[dead]).await?,
        vec![("pending".to_owned(), 0, None)]
    );
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let again = broker.collect(2, Duration::from_secs(30)).await?;
    relay.stop().await?;
    let again: Vec<String> = again.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(again, vec![dead.to_string(), behind_dead.to_string()]);
    broker.cleanup().await?;
    db.cleanup().await
}

/// The migration of engine v3's step 4a (the partitioned seq).
const PARTITIONED_SEQ: i64 = 20261206000007;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_partitioned_seqs_keeps_every_scope_in_order() -> Result<()> {
    let db = database_before(PARTITIONED_SEQ).await?;
    let tenant = Uuid::now_v7();
    let key = format!("ticket:{}", Uuid::now_v7());
    let dead_key = format!("ticket:{}", Uuid::now_v7());

    // Events written before: a scope with three pending events, one whose dead head holds
    // the event behind it, an unordered one; the single sequence well past the rows' seqs
    // (values drawn by writers that rolled back).
    let mut old_keyed = Vec::new();
    for _ in 0..3 {
        old_keyed.push(insert(&db.pool, Some(tenant), Some(&key)).await?);
    }
    let dead = insert(&db.pool, Some(tenant), Some(&dead_key)).await?;
    let behind_dead = insert(&db.pool, Some(tenant), Some(&dead_key)).await?;
    integration_tests::make_dead(&db.pool, &[dead], 10, Some("nacked")).await?;
    let old_unordered = insert(&db.pool, None, None).await?;
    sqlx::query("SELECT setval('outbox_events_seq_seq', 1000003)")
        .execute(&db.pool)
        .await?;
    // A writer role granted as the grants.sql of that schema did.
    let writer = format!("outbox_t_{}_writer", integration_tests::unique_suffix());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {writer} LOGIN;
         GRANT SELECT ON system_event_catalog TO {writer};
         GRANT SELECT ON outbox_events TO {writer};
         GRANT INSERT (id, tenant_id, event_type, schema_ref, category, ordering_key, payload,
                       headers, dedupe_key, occurred_at, created_at, available_at)
            ON outbox_events TO {writer};
         GRANT USAGE ON SEQUENCE outbox_events_seq_seq TO {writer};
         GRANT SELECT, INSERT, UPDATE ON outbox_key_locks TO {writer};"
    )))
    .execute(&db.pool)
    .await?;

    migrate_before(&db.pool, 20261206000008).await?;

    // The writer still writes (each partition's sequence has the old one's grants), and
    // what it writes comes after everything written before.
    let as_writer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options.clone().username(&writer))
        .await?;
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(insert(&as_writer, Some(tenant), Some(&key)).await);
    }
    written.push(insert(&as_writer, None, None).await);
    as_writer.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {writer}; DROP ROLE {writer};"
    )))
    .execute(&db.pool)
    .await?;
    let written = written.into_iter().collect::<Result<Vec<Uuid>>>()?;
    let seq_of = async |id: Uuid| -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM outbox_events WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await?,
        )
    };
    let mut new_seqs = Vec::new();
    for id in &written {
        let seq = seq_of(*id).await?;
        assert!(
            seq > 1_000_003,
            "{seq} is not after the seqs handed out before"
        );
        new_seqs.push(seq);
    }
    // One scope, one partition; its seqs step through that partition's progression.
    let keyed = &new_seqs[..3];
    assert!(keyed.iter().all(|s| s % 16 == keyed[0] % 16), "{keyed:?}");
    assert!(keyed.windows(2).all(|w| w[0] < w[1]), "{keyed:?}");
    let partition: i64 =
        sqlx::query_scalar("SELECT hashtextextended(outbox_scope($1, $2), 0) & 15")
            .bind(tenant)
            .bind(&key)
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(
        keyed[0] % 16,
        partition,
        "the scope's partition is its hash's"
    );
    let sequences: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relkind = 'S' AND relname LIKE 'outbox_events_seq%'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        sequences, 16,
        "one sequence per partition, the single one gone"
    );

    // The relay delivers every pending event once, each scope in order, old before new;
    // the dead head still holds the event behind it.
    // The rest of the way (later steps), then the relay of today.
    outbox_core::migrate(&db.pool).await?;
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected: Vec<Uuid> = old_keyed
        .iter()
        .chain([&old_unordered])
        .chain(&written)
        .copied()
        .collect();
    let received = broker
        .collect(expected.len(), Duration::from_secs(30))
        .await?;
    relay.stop().await?;
    let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), expected.len(), "each once: {ids:?}");
    let in_scope: Vec<String> = ids
        .iter()
        .filter(|id| {
            old_keyed[..]
                .iter()
                .chain(&written[..3])
                .any(|k| k.to_string() == **id)
        })
        .cloned()
        .collect();
    let scope_order: Vec<String> = old_keyed
        .iter()
        .chain(&written[..3])
        .map(Uuid::to_string)
        .collect();
    assert_eq!(in_scope, scope_order, "the scope's events in order");
    for id in [dead, behind_dead] {
        assert!(!ids.contains(&id.to_string()), "{id} must wait");
    }
    broker.cleanup().await?;
    db.cleanup().await
}

/// The migration of engine v3's step 4b (the partitioned feed).
const PARTITIONED_FEED: i64 = 20261206000008;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_the_partitioned_feed_keeps_where_every_event_stands() -> Result<()> {
    let db = database_before(PARTITIONED_FEED).await?;
    let tenant = Uuid::now_v7();
    let key = format!("ticket:{}", Uuid::now_v7());
    let dead_key = format!("ticket:{}", Uuid::now_v7());
    let retrying_key = format!("ticket:{}", Uuid::now_v7());
    let scheduled_key = format!("ticket:{}", Uuid::now_v7());

    // Delivered, then two pending on one scope (the first delivered by a step-4a relay).
    let delivered = insert_in(
        &db.pool,
        Some(tenant),
        Some(&key),
        "status = 'delivered', delivered_at = now()",
    )
    .await?;
    let pending = [
        insert(&db.pool, Some(tenant), Some(&key)).await?,
        insert(&db.pool, Some(tenant), Some(&key)).await?,
    ];
    // A dead head with one behind it.
    let dead = insert(&db.pool, Some(tenant), Some(&dead_key)).await?;
    let behind_dead = insert(&db.pool, Some(tenant), Some(&dead_key)).await?;
    integration_tests::make_dead(&db.pool, &[dead], 10, Some("nacked")).await?;
    // A head retrying in two seconds, one behind it.
    let retrying = insert(&db.pool, Some(tenant), Some(&retrying_key)).await?;
    let behind_retrying = insert(&db.pool, Some(tenant), Some(&retrying_key)).await?;
    sqlx::query(
        "INSERT INTO outbox_attempts (event_id, failures, last_error, next_attempt_at)
         VALUES ($1, 2, 'timeout', now() + interval '2 seconds')",
    )
    .bind(retrying)
    .execute(&db.pool)
    .await?;
    set(&db.pool, retrying, "parked = true").await?;
    // Scheduled for two seconds from now; unkeyed pending; discarded.
    let scheduled = insert_in(
        &db.pool,
        None,
        Some(&scheduled_key),
        "available_at = now() + interval '2 seconds'",
    )
    .await?;
    let unkeyed = insert(&db.pool, Some(tenant), None).await?;
    let discarded = insert_in(&db.pool, None, None, "status = 'discarded'").await?;
    sqlx::query("INSERT INTO outbox_discarded (event_id) VALUES ($1)")
        .bind(discarded)
        .execute(&db.pool)
        .await?;

    let all = [
        delivered,
        pending[0],
        pending[1],
        dead,
        behind_dead,
        retrying,
        behind_retrying,
        scheduled,
        unkeyed,
        discarded,
    ];
    let old: Vec<(String, i32, Option<String>)> = facts(&db.pool, &all).await?;
    let timed = [retrying, scheduled];
    let due = due_times(&db.pool, &timed).await?;

    migrate_before(&db.pool, PRODUCER_ROWS_ONLY).await?;

    // Each event says the same through the view; nothing is leased, every frontier is past
    // every event written before.
    assert_eq!(
        facts(&db.pool, &all).await?,
        old,
        "what each event says changed"
    );
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events e JOIN outbox_partitions p ON p.part = e.seq % 16
          WHERE e.seq > p.frontier",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        behind, 0,
        "every event lies at or below its partition's frontier"
    );

    // The rest of the way (later steps: the state columns go), then the relay of today.
    outbox_core::migrate(&db.pool).await?;
    assert_eq!(
        facts(&db.pool, &all).await?,
        old,
        "what each event says changed on the way"
    );

    // The relay delivers what was pending, each scope in order, the retry and the
    // scheduled one at their time; nothing dead, delivered or discarded.
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected = [
        pending[0],
        pending[1],
        retrying,
        behind_retrying,
        scheduled,
        unkeyed,
    ];
    let timed_received = broker
        .collect_timed(expected.len(), Duration::from_secs(30))
        .await?;
    let received: Vec<_> = timed_received.iter().map(|(m, _)| m.clone()).collect();
    let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), expected.len(), "each once: {ids:?}");
    let position = |id: &Uuid| ids.iter().position(|x| *x == id.to_string());
    for id in &expected {
        assert!(position(id).is_some(), "{id} not delivered: {ids:?}");
    }
    assert!(position(&pending[0]) < position(&pending[1]));
    assert!(position(&retrying) < position(&behind_retrying));
    for id in [delivered, dead, behind_dead, discarded] {
        assert!(position(&id).is_none(), "{id} must not be published");
    }
    // The retry and the scheduled event waited for their time.
    went_out_on_time(&timed_received, &timed, &due);
    let attempt_of = |id: Uuid| {
        received
            .iter()
            .find(|m| m.message_id == id.to_string())
            .and_then(|m| m.headers.get("x-attempt").cloned())
    };
    assert_eq!(attempt_of(retrying).as_deref(), Some("3"));

    // New events after the upgrade go out through the feed, behind the old ones of their
    // scope; the dead head still holds its own.
    let fresh = insert(&db.pool, Some(tenant), Some(&key)).await?;
    let held_back = insert(&db.pool, Some(tenant), Some(&dead_key)).await?;
    let more = broker.collect(1, Duration::from_secs(10)).await?;
    assert_eq!(more[0].message_id, fresh.to_string());
    assert_eq!(
        facts(&db.pool, &[held_back]).await?[0].0,
        "pending",
        "behind the dead head"
    );

    // Replaying the dead head sends it and what waits behind it, in order.
    let (code, _, stderr) =
        relay_cli(&db, &["replay", "--id", &dead.to_string(), "--actor", "t"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let again = broker.collect(3, Duration::from_secs(30)).await?;
    relay.stop().await?;
    let again: Vec<String> = again.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(
        again,
        vec![
            dead.to_string(),
            behind_dead.to_string(),
            held_back.to_string()
        ]
    );
    broker.cleanup().await?;
    db.cleanup().await
}

/// The migration of engine v3's step 5 (an event's row holds what its producer wrote).
const PRODUCER_ROWS_ONLY: i64 = 20261207000001;

/// Where an event stands through `outbox_event_status`: status, attempts, last error, due.
type Standing = (String, i32, Option<String>, Option<DateTime<Utc>>);

/// The [`Standing`] of each event.
async fn standings(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Standing>> {
    columns_of(pool, ids, "status, attempts, last_error, due_at").await
}

/// The scope's held head (`outbox_held`), as (head seq, dead), of the scope of event `id`.
async fn held_of(pool: &PgPool, id: Uuid) -> Result<Option<(i64, bool)>> {
    Ok(sqlx::query_as(
        "SELECT h.head_seq, h.due_at IS NULL FROM outbox_held h
           JOIN outbox_events e
             ON h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text)
          WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// When a held scope's head is due.
enum Due {
    /// This many seconds from now.
    In(f64),
    /// When its producer lets it go (`available_at`: a scheduled head).
    Available,
}

/// Holds the scope of event `id` at it, as a step-4b relay did, due as `due` says.
async fn hold_at(pool: &PgPool, id: Uuid, due: Due) -> Result<()> {
    let (seconds, available) = match due {
        Due::In(seconds) => (Some(seconds), false),
        Due::Available => (None, true),
    };
    sqlx::query(
        "INSERT INTO outbox_held AS h (scope, part, head_seq, due_at)
         SELECT COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text),
                CASE WHEN e.ordering_key IS NULL THEN (e.seq % 16)::integer
                     ELSE (hashtextextended(outbox_scope(e.tenant_id, e.ordering_key), 0)
                           & 15)::integer END,
                e.seq,
                CASE WHEN $3 THEN e.available_at ELSE now() + make_interval(secs => $2) END
           FROM outbox_events e WHERE e.id = $1
         ON CONFLICT (scope) DO UPDATE SET head_seq = EXCLUDED.head_seq, due_at = EXCLUDED.due_at",
    )
    .bind(id)
    .bind(seconds)
    .bind(available)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records `failures` failed attempts of event `id` (the last with `error`) in the relay's
/// table; with `next_in`, the next try's time that many seconds from now.
async fn failed(
    pool: &PgPool,
    id: Uuid,
    failures: i32,
    error: &str,
    next_in: Option<f64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox_attempts (event_id, failures, last_error, next_attempt_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(id)
    .bind(failures)
    .bind(error)
    .bind(next_in)
    .execute(pool)
    .await?;
    Ok(())
}

/// Step 5 drops the state columns: every event, in every state a database of step 4b can
/// hold (old rows' states on the rows included), stands where it stood through the view,
/// and the relay sends exactly what was pending. Rows old relays delivered at or behind a
/// held head are listed in `outbox_delivered_behind`, and the walks pass over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_producer_rows_only_keeps_where_every_event_stands() -> Result<()> {
    // Rows of the engines before the feed: one sequence (a scope's events written one after
    // the other take consecutive seqs), states on the rows.
    let db = database_before(PARTITIONED_SEQ).await?;
    let pool = &db.pool;
    let tenant = Uuid::now_v7();
    let other = Uuid::now_v7();
    let key = |name: &str| format!("{name}:{}", Uuid::now_v7());
    let delivered = "status = 'delivered', attempts = 1, delivered_at = now()";

    // A scope where an old relay's replay made a delivered event pending again, in front of
    // one delivered after it; one written since. (The first was delivered after two
    // failures: its history is on its row.)
    let r_key = key("replayed");
    let r_before = insert_in(
        pool,
        Some(tenant),
        Some(&r_key),
        "status = 'delivered', attempts = 3, last_error = 'timeout', delivered_at = now()",
    )
    .await?;
    let r_replayed = insert(pool, Some(tenant), Some(&r_key)).await?;
    let r_after = insert_in(pool, Some(tenant), Some(&r_key), delivered).await?;
    let r_new = insert(pool, Some(tenant), Some(&r_key)).await?;
    // The same, the replayed event dead since; nothing after the delivered one.
    let rd_key = key("replayed-dead");
    let rd_replayed = insert(pool, Some(tenant), Some(&rd_key)).await?;
    let rd_after = insert_in(pool, Some(tenant), Some(&rd_key), delivered).await?;
    integration_tests::make_dead(pool, &[rd_replayed], 10, Some("nacked")).await?;
    // The same, the replayed event retrying (below, at step 4b).
    let rr_key = key("replayed-retrying");
    let rr_replayed = insert(pool, None, Some(&rr_key)).await?;
    let rr_after = insert_in(pool, None, Some(&rr_key), delivered).await?;
    // The same, with an event that died before the replay behind the delivered one: the
    // feed holds the scope at the replayed event, and the dead one behind it is only
    // pending (a walk sends it).
    let rw_key = key("replayed-then-dead");
    let rw_replayed = insert(pool, Some(tenant), Some(&rw_key)).await?;
    let rw_after = insert_in(pool, Some(tenant), Some(&rw_key), delivered).await?;
    let rw_dead = insert(pool, Some(tenant), Some(&rw_key)).await?;
    integration_tests::make_dead(pool, &[rw_dead], 10, Some("rejected")).await?;
    // A replayed event that died, the delivered one right after it (the next seq), and a
    // pending one: step 4b's `discard` of the dead head moves the scope's head to the next
    // seq, the delivered row's.
    let dh_key = key("discarded-head");
    let dh_dead = insert(pool, Some(tenant), Some(&dh_key)).await?;
    let dh_delivered = insert_in(pool, Some(tenant), Some(&dh_key), delivered).await?;
    let dh_next = insert(pool, Some(tenant), Some(&dh_key)).await?;
    integration_tests::make_dead(pool, &[dh_dead], 10, Some("nacked")).await?;
    assert_eq!(
        seq_of(pool, dh_delivered).await?,
        seq_of(pool, dh_dead).await? + 1,
        "one sequence: the delivered row takes the next seq"
    );
    // A row an operator set `discarded` by hand (not in outbox_discarded), and the next one.
    let ld_key = key("discarded-by-hand");
    let ld_discarded = insert_in(pool, Some(other), Some(&ld_key), "status = 'discarded'").await?;
    let ld_next = insert(pool, Some(other), Some(&ld_key)).await?;
    // Unkeyed: delivered, pending.
    let u_delivered = insert_in(pool, None, None, delivered).await?;
    let u_pending = insert(pool, None, None).await?;

    // Steps 4a and 4b: the feed; then what a step-4b relay and its operators did.
    migrate_before(pool, PRODUCER_ROWS_ONLY).await?;
    let due_in = 5.0;
    // The retrying replayed event failed twice (a step-4b relay keeps the next try on the
    // held scope only).
    failed(pool, rr_replayed, 2, "timeout", None).await?;
    hold_at(pool, rr_replayed, Due::In(due_in)).await?;
    discard_at_step_4b(pool, dh_dead).await?;
    assert_eq!(
        held_of(pool, dh_delivered).await?,
        Some((seq_of(pool, dh_delivered).await?, false)),
        "the discard left the scope's head at the delivered row"
    );

    // Events the feed read (below its frontier): delivered; a dead head with two behind it;
    // a head retrying with one behind; an unkeyed event retrying; a dead head discarded, and
    // the one behind it; a scheduled head its application closed by hand, and the one behind
    // it; a delivered event replayed, and the one after it; an event its writer committed
    // after the feed had passed its seq (a gap); a scheduled head with one behind it.
    let d_key = key("dead");
    let rt_key = key("retrying");
    let x_key = key("discarded");
    let lh_key = key("closed");
    let rp_key = key("replay");
    let del_below = insert(pool, Some(other), Some(&key("delivered"))).await?;
    let d_dead = insert(pool, Some(tenant), Some(&d_key)).await?;
    let d_behind = [
        insert(pool, Some(tenant), Some(&d_key)).await?,
        insert(pool, Some(tenant), Some(&d_key)).await?,
    ];
    let rt_head = insert(pool, None, Some(&rt_key)).await?;
    let rt_behind = insert(pool, None, Some(&rt_key)).await?;
    let u_held = insert(pool, None, None).await?;
    let x_discarded = insert(pool, Some(other), Some(&x_key)).await?;
    let x_after = insert(pool, Some(other), Some(&x_key)).await?;
    let lh_head = insert_in(
        pool,
        Some(tenant),
        Some(&lh_key),
        "available_at = now() + interval '1 hour'",
    )
    .await?;
    let lh_behind = insert(pool, Some(tenant), Some(&lh_key)).await?;
    let rp_delivered = insert(pool, Some(tenant), Some(&rp_key)).await?;
    let rp_after = insert(pool, Some(tenant), Some(&rp_key)).await?;
    let gap = insert(pool, None, None).await?;
    let hs_key = key("held-scheduled");
    let hs_head = insert_in(
        pool,
        Some(other),
        Some(&hs_key),
        "available_at = now() + make_interval(secs => 5)",
    )
    .await?;
    let hs_behind = insert(pool, Some(other), Some(&hs_key)).await?;
    integration_tests::mark_delivered(
        pool,
        &[
            del_below,
            d_dead,
            d_behind[0],
            d_behind[1],
            rt_head,
            rt_behind,
            u_held,
            x_discarded,
            x_after,
            lh_head,
            lh_behind,
            rp_delivered,
            rp_after,
            gap,
            hs_head,
            hs_behind,
        ],
        None,
    )
    .await?;
    integration_tests::make_dead(pool, &[d_dead], 10, Some("nacked")).await?;
    failed(pool, rt_head, 2, "timeout", Some(due_in)).await?;
    hold_at(pool, rt_head, Due::In(due_in)).await?;
    failed(pool, u_held, 1, "returned", Some(due_in)).await?;
    hold_at(pool, u_held, Due::In(due_in)).await?;
    integration_tests::make_dead(pool, &[x_discarded], 10, Some("nacked")).await?;
    discard_at_step_4b(pool, x_discarded).await?;
    // Held when the feed found them not due, until their time; then the application closed
    // one of them (the trigger of step 4b makes its scope due at once).
    for id in [lh_head, hs_head] {
        hold_at(pool, id, Due::Available).await?;
    }
    set(pool, lh_head, "status = 'discarded'").await?;
    sqlx::query(
        "INSERT INTO outbox_replays (event_id, part, due_at)
         SELECT id, (seq % 16)::integer, now() FROM outbox_events WHERE id = $1",
    )
    .bind(rp_delivered)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO outbox_gaps (seq, part, noted_xid)
         SELECT seq, (seq % 16)::integer, pg_current_xact_id() FROM outbox_events WHERE id = $1",
    )
    .bind(gap)
    .execute(pool)
    .await?;
    // Events above the frontier: two pending on the dead scope's key of another tenant; a
    // scheduled one with one behind it; unkeyed.
    let pending = [
        insert(pool, Some(other), Some(&d_key)).await?,
        insert(pool, Some(other), Some(&d_key)).await?,
    ];
    let s_key = key("scheduled");
    let s_head = insert_in(
        pool,
        None,
        Some(&s_key),
        "available_at = now() + make_interval(secs => 5)",
    )
    .await?;
    let s_behind = insert(pool, None, Some(&s_key)).await?;
    let u_new = insert(pool, None, None).await?;

    // Each event by name (the messages of a failure name them).
    let named = [
        ("r_before", r_before),
        ("r_replayed", r_replayed),
        ("r_after", r_after),
        ("r_new", r_new),
        ("rd_replayed", rd_replayed),
        ("rd_after", rd_after),
        ("rr_replayed", rr_replayed),
        ("rr_after", rr_after),
        ("rw_replayed", rw_replayed),
        ("rw_after", rw_after),
        ("rw_dead", rw_dead),
        ("dh_dead", dh_dead),
        ("dh_delivered", dh_delivered),
        ("dh_next", dh_next),
        ("ld_discarded", ld_discarded),
        ("ld_next", ld_next),
        ("u_delivered", u_delivered),
        ("u_pending", u_pending),
        ("del_below", del_below),
        ("d_dead", d_dead),
        ("d_behind[0]", d_behind[0]),
        ("d_behind[1]", d_behind[1]),
        ("rt_head", rt_head),
        ("rt_behind", rt_behind),
        ("u_held", u_held),
        ("x_discarded", x_discarded),
        ("x_after", x_after),
        ("lh_head", lh_head),
        ("lh_behind", lh_behind),
        ("rp_delivered", rp_delivered),
        ("rp_after", rp_after),
        ("gap", gap),
        ("hs_head", hs_head),
        ("hs_behind", hs_behind),
        ("pending[0]", pending[0]),
        ("pending[1]", pending[1]),
        ("s_head", s_head),
        ("s_behind", s_behind),
        ("u_new", u_new),
    ];
    let all: Vec<Uuid> = named.iter().map(|&(_, id)| id).collect();
    let name = |id: &str| {
        named
            .iter()
            .find(|(_, x)| x.to_string() == id)
            .map_or_else(|| id.to_owned(), |(n, _)| (*n).to_owned())
    };
    let old = standings(pool, &all).await?;
    let status_of = |id: Uuid| {
        let i = all.iter().position(|x| *x == id).unwrap();
        old[i].0.as_str()
    };
    // The states the upgrade starts from.
    for (id, status) in [
        (r_before, "delivered"),
        (r_replayed, "pending"),
        (r_after, "delivered"),
        (rd_replayed, "dead"),
        (rw_dead, "pending"),
        (dh_dead, "discarded"),
        (dh_delivered, "delivered"),
        (ld_discarded, "discarded"),
        (d_dead, "dead"),
        (d_behind[0], "pending"),
        (x_discarded, "discarded"),
        (lh_head, "discarded"),
        (rp_delivered, "pending"),
        (rp_after, "delivered"),
        (gap, "pending"),
        (del_below, "delivered"),
    ] {
        assert_eq!(
            status_of(id),
            status,
            "{} before the upgrade: {old:?}",
            name(&id.to_string())
        );
    }
    assert_eq!(
        (old[0].1, old[0].2.as_deref()),
        (3, Some("timeout")),
        "the history of an event delivered by an old relay"
    );
    let timed = [rt_head, rr_replayed, u_held, s_head, hs_head];
    let due = due_times(pool, &timed).await?;
    let ids_before: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY id")
        .fetch_all(pool)
        .await?;

    outbox_core::migrate(pool).await?;

    // Every event stands where it stood, through the view; no row is lost.
    let new = standings(pool, &all).await?;
    let changed: Vec<(String, &Standing, &Standing)> = all
        .iter()
        .zip(&old)
        .zip(&new)
        .filter(|((_, was), is)| was != is)
        .map(|((id, was), is)| (name(&id.to_string()), was, is))
        .collect();
    assert!(
        changed.is_empty(),
        "changed (event, before, after): {changed:?}"
    );
    let ids_after: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY id")
        .fetch_all(pool)
        .await?;
    assert_eq!(ids_after, ids_before, "rows lost or added");
    // The rows old relays delivered at or behind a held head are passed over by the walks
    // (outbox_delivered_behind); the held scopes and the replays stay as they were.
    let mut behind: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM outbox_delivered_behind ORDER BY event_id")
            .fetch_all(pool)
            .await?;
    behind.sort();
    let mut expected_behind = vec![r_after, rd_after, rr_after, rw_after, dh_delivered];
    expected_behind.sort();
    assert_eq!(behind, expected_behind);
    let replays: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox_replays")
        .fetch_all(pool)
        .await?;
    assert_eq!(replays, vec![rp_delivered]);
    assert_eq!(
        held_of(pool, r_new).await?,
        Some((seq_of(pool, r_replayed).await?, false))
    );
    assert_eq!(
        held_of(pool, rd_after).await?,
        Some((seq_of(pool, rd_replayed).await?, true))
    );
    assert_eq!(
        held_of(pool, rw_dead).await?,
        Some((seq_of(pool, rw_replayed).await?, false))
    );
    assert_eq!(
        held_of(pool, dh_next).await?,
        Some((seq_of(pool, dh_delivered).await?, false))
    );
    let discarded: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM outbox_discarded ORDER BY event_id")
            .fetch_all(pool)
            .await?;
    let mut expected_discarded = vec![dh_dead, ld_discarded, x_discarded, lh_head];
    expected_discarded.sort();
    assert_eq!(discarded, expected_discarded);
    // The row holds what its producer wrote: four indexes, no delivery state, no re-check
    // table.
    let mut indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'outbox_events'",
    )
    .fetch_all(pool)
    .await?;
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "outbox_events_feed",
            "outbox_events_pkey",
            "outbox_events_scope",
            "outbox_events_tenant_dedupe"
        ]
    );
    let dropped: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = 'outbox_events'
            AND column_name IN ('status', 'attempts', 'last_error', 'delivered_at', 'parked',
                                'locked_by', 'locked_until', 'claim_token')",
    )
    .fetch_all(pool)
    .await?;
    assert!(dropped.is_empty(), "{dropped:?}");
    let recheck: bool = sqlx::query_scalar("SELECT to_regclass('outbox_key_recheck') IS NULL")
        .fetch_one(pool)
        .await?;
    assert!(recheck, "the re-check table is gone");

    // The relay sends what is pending, each once: each scope in order, the retrying and the
    // scheduled events at their time; nothing delivered, dead or discarded.
    let broker = TestBroker::new(&["#"]).await?;
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected = [
        r_replayed,
        r_new,
        rr_replayed,
        rw_replayed,
        rw_dead,
        dh_next,
        ld_next,
        u_pending,
        rt_head,
        rt_behind,
        u_held,
        x_after,
        lh_behind,
        rp_delivered,
        gap,
        hs_head,
        hs_behind,
        pending[0],
        pending[1],
        s_head,
        s_behind,
        u_new,
    ];
    let received = broker
        .collect_timed(expected.len(), Duration::from_secs(15))
        .await?;
    let ids: Vec<String> = received.iter().map(|(m, _)| m.message_id.clone()).collect();
    let names: Vec<String> = ids.iter().map(|id| name(id)).collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "each once: {names:?}");
    let position = |id: &Uuid| ids.iter().position(|x| *x == id.to_string());
    for id in &expected {
        assert!(
            position(id).is_some(),
            "{} not delivered: {names:?}",
            name(&id.to_string())
        );
    }
    assert_eq!(ids.len(), expected.len(), "{names:?}");
    for (first, then) in [
        (r_replayed, r_new),
        (rw_replayed, rw_dead),
        (rt_head, rt_behind),
        (s_head, s_behind),
        (hs_head, hs_behind),
        (pending[0], pending[1]),
    ] {
        assert!(
            position(&first) < position(&then),
            "{} before {}: {names:?}",
            name(&first.to_string()),
            name(&then.to_string())
        );
    }
    went_out_on_time(&received, &timed, &due);
    let attempt_of = |id: Uuid| {
        received
            .iter()
            .find(|(m, _)| m.message_id == id.to_string())
            .and_then(|(m, _)| m.headers.get("x-attempt").cloned())
    };
    assert_eq!(attempt_of(rt_head).as_deref(), Some("3"));
    assert_eq!(attempt_of(rr_replayed).as_deref(), Some("3"));
    assert_eq!(attempt_of(u_held).as_deref(), Some("2"));
    assert_eq!(attempt_of(u_new).as_deref(), Some("1"));

    // New events follow the old ones of their scope; the dead head still holds its own.
    let r_fresh = insert(pool, Some(tenant), Some(&r_key)).await?;
    let p_fresh = insert(pool, Some(other), Some(&d_key)).await?;
    let s_fresh = insert(pool, None, Some(&s_key)).await?;
    let d_fresh = insert(pool, Some(tenant), Some(&d_key)).await?;
    let more = broker.collect(3, Duration::from_secs(10)).await?;
    let mut more: Vec<String> = more.iter().map(|m| m.message_id.clone()).collect();
    more.sort();
    let mut fresh = vec![
        r_fresh.to_string(),
        p_fresh.to_string(),
        s_fresh.to_string(),
    ];
    fresh.sort();
    assert_eq!(more, fresh);
    assert_eq!(
        standings(pool, &[d_fresh]).await?[0].0,
        "pending",
        "behind the dead head"
    );

    // Replaying the dead head sends it and what waits behind it, in order; replaying the
    // other dead head sends it, and not the row an old relay delivered behind it.
    for id in [d_dead, rd_replayed] {
        let (code, _, stderr) =
            relay_cli(&db, &["replay", "--id", &id.to_string(), "--actor", "t"]).await?;
        assert_eq!(code, 0, "{stderr}");
    }
    let again = broker.collect(5, Duration::from_secs(15)).await?;
    let again: Vec<String> = again.iter().map(|m| m.message_id.clone()).collect();
    let in_scope: Vec<String> = again
        .iter()
        .filter(|id| **id != rd_replayed.to_string())
        .cloned()
        .collect();
    assert_eq!(
        in_scope,
        [d_dead, d_behind[0], d_behind[1], d_fresh].map(|id| id.to_string()),
        "{:?}",
        again.iter().map(|id| name(id)).collect::<Vec<_>>()
    );
    assert!(
        again.contains(&rd_replayed.to_string()),
        "{:?}",
        again.iter().map(|id| name(id)).collect::<Vec<_>>()
    );

    // Every event sent is delivered now, the others stand where they stood; nothing else
    // goes out.
    let sent: Vec<Uuid> = expected
        .iter()
        .copied()
        .chain([
            r_fresh,
            p_fresh,
            s_fresh,
            d_fresh,
            d_dead,
            d_behind[0],
            d_behind[1],
            rd_replayed,
        ])
        .collect();
    wait_until(
        Duration::from_secs(10),
        "every event sent is delivered",
        || {
            let pool = pool.clone();
            let sent = sent.clone();
            async move {
                Ok(standings(&pool, &sent)
                    .await?
                    .iter()
                    .all(|s| s.0 == "delivered"))
            }
        },
    )
    .await?;
    relay.stop().await?;
    let unsent: Vec<Uuid> = all
        .iter()
        .copied()
        .filter(|id| !sent.contains(id))
        .collect();
    let now = standings(pool, &unsent).await?;
    for (id, is) in unsent.iter().zip(&now) {
        assert_eq!(is.0, status_of(*id), "{} changed", name(&id.to_string()));
    }
    assert!(
        broker
            .collect(1, Duration::from_millis(500))
            .await?
            .is_empty(),
        "nothing else goes out"
    );
    broker.cleanup().await?;
    db.cleanup().await
}
