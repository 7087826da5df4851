//! Upgrading a database from the schema before engine v3's first step (migrations up to
//! `20260501000001`) with events in every state: nothing is lost, nothing changes state,
//! per-scope order holds, and events that an earlier tenant's head held on the same key flow.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::{RunningRelay, TestBroker, TestDb, relay_cli, relay_config, wait_until};
use serde_json::json;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

/// The first migration of engine v3's first step.
const STEP_ONE: i64 = 20261206000001;

/// Inserts a ticket event as the old schema's writers did; returns its id.
async fn insert(pool: &PgPool, tenant: Option<Uuid>, key: Option<&str>) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key)
         VALUES ('TICKET_UPDATED', $1, $2, $3) RETURNING id",
    )
    .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
    .bind(tenant)
    .bind(key)
    .fetch_one(pool)
    .await?)
}

async fn set(pool: &PgPool, id: Uuid, assignments: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE outbox_events SET {assignments} WHERE id = $1"
    )))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// [`insert`], then [`set`]: an event written by the old schema's writers and brought into
/// a state by hand.
async fn insert_in(
    pool: &PgPool,
    tenant: Option<Uuid>,
    key: Option<&str>,
    assignments: &str,
) -> Result<Uuid> {
    let id = insert(pool, tenant, key).await?;
    set(pool, id, assignments).await?;
    Ok(id)
}

/// A new database at the schema before migration `version` (every older migration
/// applied, as the migrator does), with the catalog table filled.
async fn database_before(version: i64) -> Result<TestDb> {
    let db = TestDb::empty().await?;
    let before = Migrator::with_migrations(
        outbox_core::MIGRATOR
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    );
    before.run(&db.pool).await?;
    outbox_core::sync_catalog(&db.pool).await?;
    Ok(db)
}

/// Applies the migrations before `version` (the ones an upgrade test checks the effect of;
/// the test applies the rest before it starts today's relay).
async fn migrate_before(pool: &PgPool, version: i64) -> Result<()> {
    Migrator::with_migrations(
        outbox_core::MIGRATOR
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    )
    .run(pool)
    .await?;
    Ok(())
}

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
    let started = std::time::Instant::now();
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected = [
        retrying,
        behind_retrying,
        unordered_retrying,
        leased,
        scheduled,
        pending,
    ];
    let received = broker
        .collect(expected.len(), Duration::from_secs(30))
        .await?;
    let waited = started.elapsed();
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
    assert!(
        waited >= Duration::from_secs(1),
        "the retries waited for their time"
    );
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

    outbox_core::migrate(&db.pool).await?;

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

    // The relay delivers what was pending, each scope in order, the retry and the
    // scheduled one at their time; nothing dead, delivered or discarded.
    let broker = TestBroker::new(&["#"]).await?;
    let started = std::time::Instant::now();
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let expected = [
        pending[0],
        pending[1],
        retrying,
        behind_retrying,
        scheduled,
        unkeyed,
    ];
    let received = broker
        .collect(expected.len(), Duration::from_secs(30))
        .await?;
    let waited = started.elapsed();
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
    assert!(
        waited >= Duration::from_secs(1),
        "the retry waited for its time"
    );
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
