//! What is done to the outbox outside the relay cannot break delivery:
//! - a producer cannot forge delivery state, whatever values it writes into whatever
//!   columns it can name (the event's row has no state column to name: it lives in the
//!   relay's tables);
//! - two outboxes in two schemas of one database are independent, whatever a writer's
//!   `search_path` (every function is bound to its own schema);
//! - a row deleted by an application or an operator (a cancelled scheduled head, a
//!   dead head deleted by hand) does not strand the events behind it;
//! - a settle that fails on one row's values records the others.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::{Context, Result, bail};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, relay_cli, relay_config, wait_until, with_db_and_broker,
};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The columns earlier versions kept delivery state in, on the event's row: gone.
const RELAY_STATE: [&str; 8] = [
    "status",
    "attempts",
    "last_error",
    "delivered_at",
    "locked_by",
    "locked_until",
    "claim_token",
    "parked",
];

/// Inserts a `TICKET_UPDATED` row on `key` by plain SQL, with `extra` columns set to the SQL
/// expressions given (as a service in any language could write them); returns its id.
async fn insert_raw(pool: &PgPool, key: &str, extra: &[(&str, &str)]) -> Result<Uuid> {
    let columns: String = extra.iter().map(|(c, _)| format!(", {c}")).collect();
    let values: String = extra.iter().map(|(_, v)| format!(", {v}")).collect();
    let statement = format!(
        "INSERT INTO outbox_events (event_type, payload, ordering_key{columns})
         VALUES ('TICKET_UPDATED', $1, $2{values}) RETURNING id"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
        .bind(key)
        .fetch_one(pool)
        .await
        .with_context(|| format!("insert with {extra:?}"))
}

/// The message ids received, in arrival order, until `count` arrived.
async fn received_in_order(broker: &TestBroker, count: usize) -> Result<Vec<String>> {
    let received = broker.collect(count, Duration::from_secs(30)).await?;
    Ok(received.into_iter().map(|m| m.message_id).collect())
}

/// Asserts `expected` arrived exactly once each and in this order among `received`.
fn assert_once_in_order(received: &[String], expected: &[Uuid], what: &str) {
    let seen: Vec<&String> = received
        .iter()
        .filter(|id| expected.iter().any(|e| e.to_string() == **id))
        .collect();
    let wanted: Vec<String> = expected.iter().map(Uuid::to_string).collect();
    assert_eq!(
        seen,
        wanted.iter().collect::<Vec<_>>(),
        "{what}: every event once, in seq order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_cannot_forge_delivery_state() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        // A producer with every privilege (a service that never applied grants.sql) names
        // each relay-owned column with hostile values, and the descriptive columns with
        // extreme ones. Two keys, so each row has events before and after it.
        let hostile: Vec<Vec<(&str, &str)>> = vec![
            vec![("status", "'delivered'")],
            vec![("status", "'dead'")],
            vec![("status", "'discarded'")],
            vec![("attempts", "2147483647")],
            vec![("status", "'pending'"), ("attempts", "2147483646")],
            vec![("last_error", "repeat('x', 100000)")],
            vec![("delivered_at", "now()")],
            vec![("delivered_at", "'-infinity'")],
            vec![("locked_by", "'a relay that does not exist'")],
            vec![("locked_until", "'infinity'")],
            vec![("claim_token", "gen_random_uuid()")],
            vec![
                ("claim_token", "gen_random_uuid()"),
                ("locked_until", "now() + interval '100 years'"),
            ],
            vec![("parked", "true")],
            vec![("seq", "9223372036854775807")],
            vec![("seq", "-9223372036854775808")],
            vec![("seq", "1")],
            vec![("status", "NULL::text")],
            vec![("tenant_id", "NULL")],
            vec![("tenant_id", "'ffffffff-ffff-ffff-ffff-ffffffffffff'")],
            vec![("occurred_at", "'0001-01-01Z'")],
            vec![("created_at", "'0001-01-01Z'")],
            vec![("created_at", "'9999-12-30Z'")],
            vec![("available_at", "'0001-01-01Z'")],
            vec![("headers", "'{\"x-note\": \"h\"}'")],
        ];
        let keys = [
            format!("ticket:{}", Uuid::now_v7()),
            format!("ticket:{}", Uuid::now_v7()),
        ];
        let mut per_key: [Vec<Uuid>; 2] = [Vec::new(), Vec::new()];
        // A row with a tenant is in a scope of its own (order is per tenant and key).
        let mut own_scope = Vec::new();
        for (i, extra) in hostile.iter().enumerate() {
            let k = i % 2;
            per_key[k].push(insert_raw(&db.pool, &keys[k], &[]).await?);
            let tenanted = extra.iter().any(|(c, v)| *c == "tenant_id" && *v != "NULL");
            match insert_raw(&db.pool, &keys[k], extra).await {
                Ok(id) if tenanted => own_scope.push(id),
                Ok(id) => per_key[k].push(id),
                // A column of the relay's is not on the row at all; a value no event may
                // hold is refused. Either way nothing is written.
                Err(error) => {
                    let text = format!("{error:#}");
                    let relay_owned = extra.iter().any(|(c, _)| RELAY_STATE.contains(c));
                    assert!(
                        if relay_owned {
                            text.contains("does not exist")
                        } else {
                            text.contains("violates") || text.contains("outbox:")
                        },
                        "{extra:?} was refused with an unclear error: {text}"
                    );
                }
            }
        }
        for k in 0..2 {
            per_key[k].push(insert_raw(&db.pool, &keys[k], &[]).await?);
        }

        // Every stored row is an ordinary new event, and the row holds only what describes
        // an event.
        let odd: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT id, seq FROM outbox_events WHERE seq < 1 OR seq > 1000000")
                .fetch_all(&db.pool)
                .await?;
        assert!(odd.is_empty(), "rows kept a forged seq: {odd:?}");
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = 'outbox_events'
              ORDER BY ordinal_position",
        )
        .fetch_all(&db.pool)
        .await?;
        assert_eq!(
            columns,
            [
                "id",
                "seq",
                "tenant_id",
                "event_type",
                "schema_ref",
                "category",
                "ordering_key",
                "payload",
                "headers",
                "dedupe_key",
                "occurred_at",
                "created_at",
                "available_at"
            ],
            "the event's row carries no delivery state"
        );

        let relay = RunningRelay::start(relay_config(db, broker));
        let total = per_key[0].len() + per_key[1].len() + own_scope.len();
        let received = received_in_order(broker, total).await?;
        relay.stop().await?;
        assert_eq!(
            received.len(),
            total,
            "every event published once: {received:?}"
        );
        for k in 0..2 {
            assert_once_in_order(&received, &per_key[k], &keys[k]);
        }
        for id in &own_scope {
            assert_once_in_order(&received, &[*id], "a tenant's own scope");
        }
        let states: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT status, attempts, count(*) FROM outbox_event_status GROUP BY 1, 2",
        )
        .fetch_all(&db.pool)
        .await?;
        assert_eq!(states, vec![("delivered".to_owned(), 1, total as i64)]);
        Ok(())
    })
    .await
}

/// Migrates the outbox into `schema` of the test database.
async fn migrate_into(db: &TestDb, schema: &str) -> Result<PgPool> {
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&db.pool)
        .await?;
    let options: PgConnectOptions = db
        .options
        .clone()
        .options([("search_path", schema.to_owned())]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?;
    outbox_core::migrate(&pool).await?;
    Ok(pool)
}

async fn connect_with_search_path(db: &TestDb, search_path: &str) -> Result<PgConnection> {
    Ok(db
        .options
        .clone()
        .options([("search_path", search_path.to_owned())])
        .connect()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outboxes_in_two_schemas_are_independent_whatever_the_search_path() -> Result<()> {
    let db = TestDb::new().await?;
    let second = migrate_into(&db, "second_outbox").await?;
    // The other schema has had events on the key, so the sequence of the key's partition
    // stands at different places in the two (seq says the partition; each has its own 16).
    let key = format!("ticket:{}", Uuid::now_v7());
    for _ in 0..50 {
        insert_raw(&second, &key, &[]).await?;
    }
    let second_max: i64 = sqlx::query_scalar("SELECT max(seq) FROM second_outbox.outbox_events")
        .fetch_one(&db.pool)
        .await?;

    // Writer 1 (search_path = public) emits on the key and keeps its transaction open.
    let mut first = connect_with_search_path(&db, "public").await?;
    let mut first_tx = first.begin().await?;
    let first_seq: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         VALUES ('TICKET_UPDATED', '{\"ticketId\": \"t\"}', $1) RETURNING seq",
    )
    .bind(&key)
    .fetch_one(&mut *first_tx)
    .await?;

    // Writer 2 (search_path = the other schema first) writes to the same outbox and key by
    // its qualified name: it must queue behind writer 1 on that outbox's key lock and draw
    // that outbox's next seq.
    let mut other = connect_with_search_path(&db, "second_outbox, public").await?;
    let key_for_second = key.clone();
    let second_writer = tokio::spawn(async move {
        let mut tx = other.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO public.outbox_events (event_type, payload, ordering_key)
             VALUES ('TICKET_UPDATED', '{\"ticketId\": \"t\"}', $1) RETURNING seq",
        )
        .bind(&key_for_second)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        anyhow::Ok(seq)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !second_writer.is_finished(),
        "the second writer did not wait for the first one's key lock"
    );
    first_tx.commit().await?;
    let second_seq = tokio::time::timeout(Duration::from_secs(10), second_writer).await???;
    assert!(
        second_seq > first_seq,
        "seq order is commit order within the key: {first_seq} then {second_seq}"
    );
    let public_max: i64 = sqlx::query_scalar("SELECT max(seq) FROM public.outbox_events")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        public_max, second_seq,
        "drawn from the outbox's own sequence"
    );
    assert!(
        second_seq < second_max,
        "not from the other schema's sequence, which stands past {second_max}: {second_seq}"
    );
    // Nothing of it landed in the other outbox.
    let locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM second_outbox.outbox_key_locks WHERE ordering_key = $1",
    )
    .bind(&key)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(locks, 0, "the other schema's key lock was taken");
    second.close().await;
    db.cleanup().await
}

/// The status report's blocked keys, as JSON.
async fn blocked_keys(db: &TestDb) -> Result<Vec<Value>> {
    let (code, stdout, stderr) = relay_cli(db, &["status", "--format", "json"]).await?;
    if code != 0 {
        bail!("status failed: {stdout}{stderr}");
    }
    let report: Value = serde_json::from_str(&stdout)?;
    Ok(report["blockedKeys"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_scheduled_head_does_not_strand_its_key() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let key = format!("ticket:{}", Uuid::now_v7());
        let scheduled = insert_raw(
            &db.pool,
            &key,
            &[("available_at", "now() + interval '1 hour'")],
        )
        .await?;
        let behind = [
            insert_raw(&db.pool, &key, &[]).await?,
            insert_raw(&db.pool, &key, &[]).await?,
        ];
        let relay = RunningRelay::start(relay_config(db, broker));
        tokio::time::sleep(Duration::from_secs(1)).await;

        // `status` says the key is held, by which head, until when.
        let blocked = blocked_keys(db).await?;
        let entry = blocked
            .iter()
            .find(|k| k["orderingKey"] == json!(key))
            .unwrap_or_else(|| panic!("the scheduled head is not listed: {blocked:?}"));
        assert_eq!(entry["status"], json!("scheduled"), "{entry}");
        assert_eq!(entry["headId"], json!(scheduled.to_string()), "{entry}");
        assert_eq!(entry["waiting"], json!(2), "{entry}");
        assert!(entry["retryAt"].is_string(), "{entry}");

        // The application cancels the scheduled event: the events behind it go out.
        sqlx::query("DELETE FROM outbox_events WHERE id = $1")
            .bind(scheduled)
            .execute(&db.pool)
            .await?;
        let received = received_in_order(broker, 2).await?;
        relay.stop().await?;
        assert_once_in_order(&received, &behind, "behind the cancelled head");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_head_removed_by_hand_does_not_strand_its_key() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        // Two keys, each with a head that can never be published (larger than the relay's
        // message limit) and an event behind it.
        let big = json!({"ticketId": Uuid::now_v7(), "blob": "x".repeat(100 * 1024)}).to_string();
        let mut heads = Vec::new();
        let mut behind = Vec::new();
        for _ in 0..2 {
            let key = format!("ticket:{}", Uuid::now_v7());
            let mut tx = db.pool.begin().await?;
            let head: Uuid = sqlx::query_scalar(
                "INSERT INTO outbox_events (event_type, payload, ordering_key)
                 VALUES ('TICKET_UPDATED', $1::text::jsonb, $2) RETURNING id",
            )
            .bind(&big)
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            heads.push(head);
            behind.push(insert_raw(&db.pool, &key, &[]).await?);
        }
        let mut config = relay_config(db, broker);
        config.max_message_size = 64 * 1024;
        let relay = RunningRelay::start(config);
        let pool = db.pool.clone();
        let dead_heads = heads.clone();
        wait_until(Duration::from_secs(30), "both heads dead", || {
            let pool = pool.clone();
            let ids = dead_heads.clone();
            async move {
                let dead: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM outbox_event_status WHERE id = ANY($1) AND status = 'dead'",
                )
                .bind(&ids)
                .fetch_one(&pool)
                .await?;
                Ok(dead == 2)
            }
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_event_status WHERE id = ANY($1) AND status = 'pending'",
        )
        .bind(&behind)
        .fetch_one(&db.pool)
        .await?;
        assert_eq!(waiting, 2, "the events behind dead heads wait");

        // An operator deletes one dead head by hand, and the other in a clean-up of old rows
        // (a row has no status to close by hand any more: deleting is all there is).
        sqlx::query("DELETE FROM outbox_events WHERE id = $1")
            .bind(heads[0])
            .execute(&db.pool)
            .await?;
        sqlx::query("DELETE FROM outbox_events WHERE id = ANY($1) AND created_at < now()")
            .bind(vec![heads[1], Uuid::now_v7()])
            .execute(&db.pool)
            .await?;
        let received = received_in_order(broker, 2).await?;
        relay.stop().await?;
        for id in &behind {
            assert_once_in_order(&received, &[*id], "behind a head removed by hand");
        }
        Ok(())
    })
    .await
}

/// The relay never writes an event's row (engine v3, step 4b): a row that refuses every
/// change (as one with an out-of-range value would have refused the settles of earlier
/// engines) is claimed, settled and reported like any other, and so are the rows beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_refuse_every_change_are_settled_like_any_other() -> Result<()> {
    use outbox_relay::store::{claim, settle};
    let db = TestDb::new().await?;
    let key = format!("ticket:{}", Uuid::now_v7());
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(insert_raw(&db.pool, &key, &[]).await?);
    }
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'value out of range' USING ERRCODE = 'numeric_value_out_of_range'; END $$;
         CREATE TRIGGER refuse_change BEFORE UPDATE ON outbox_events FOR EACH ROW
             EXECUTE FUNCTION refuse_change();",
    )
    .execute(&db.pool)
    .await?;

    let batch = claim::claim(&db.pool, "test", 100, Duration::from_secs(30)).await?;
    assert_eq!(batch.events.len(), 5);
    // The third fails, the fourth is rejected: the scope is held at the third.
    let outcomes: Vec<(Uuid, settle::Outcome)> = batch
        .events
        .iter()
        .map(|e| {
            let outcome = if e.id == ids[2] {
                settle::Outcome::Failed {
                    error: "nack".to_owned(),
                    retry_in: Duration::ZERO,
                }
            } else if e.id == ids[3] || e.id == ids[4] {
                settle::Outcome::Released
            } else {
                settle::Outcome::Delivered
            };
            (e.id, outcome)
        })
        .collect();
    let settled = settle::settle(&db.pool, &batch, 10, &outcomes).await?;
    assert_eq!(
        (
            settled.delivered,
            settled.retrying,
            settled.released,
            settled.lost
        ),
        (2, 1, 2, 0),
        "{settled:?}"
    );
    let again = claim::claim(&db.pool, "test", 100, Duration::from_secs(30)).await?;
    let again_ids: Vec<Uuid> = again.events.iter().map(|e| e.id).collect();
    assert_eq!(
        again_ids,
        ids[2..].to_vec(),
        "the retry, then the rest of its scope"
    );
    let outcomes: Vec<_> = again_ids
        .iter()
        .map(|id| (*id, settle::Outcome::Delivered))
        .collect();
    let settled = settle::settle(&db.pool, &again, 10, &outcomes).await?;
    assert_eq!(settled.delivered, 3, "{settled:?}");
    let states: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT id, status, attempts FROM outbox_event_status ORDER BY seq")
            .fetch_all(&db.pool)
            .await?;
    for (id, status, attempts) in states {
        assert_eq!(status, "delivered", "{id}");
        assert_eq!(attempts, if id == ids[2] { 2 } else { 1 }, "{id}");
    }
    db.cleanup().await
}

/// A service allowed only to delete its events (to cancel a scheduled one) needs no
/// privilege on the relay's tables: the trigger that makes the held scope due runs as the
/// owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_may_only_delete_can_cancel_a_scheduled_head() -> Result<()> {
    let db = TestDb::new().await?;
    let role = format!("outbox_t_{}_canceller", integration_tests::unique_suffix());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN; GRANT SELECT, DELETE ON outbox_events TO {role};"
    )))
    .execute(&db.pool)
    .await?;
    let outcome = async {
        let key = format!("ticket:{}", Uuid::now_v7());
        let scheduled = insert_raw(
            &db.pool,
            &key,
            &[("available_at", "now() + interval '1 hour'")],
        )
        .await?;
        insert_raw(&db.pool, &key, &[]).await?;
        // A claim finds the head not due: its settle holds the scope until then.
        let claimed =
            outbox_relay::store::claim::claim(&db.pool, "relay", 100, Duration::from_secs(30))
                .await?;
        assert!(claimed.events.is_empty(), "{claimed:?}");
        outbox_relay::store::settle::settle(&db.pool, &claimed, 10, &[]).await?;
        let due_later: bool =
            sqlx::query_scalar("SELECT due_at > now() + interval '50 minutes' FROM outbox_held")
                .fetch_one(&db.pool)
                .await?;
        assert!(due_later, "held until the head is due");
        let canceller = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(db.options.clone().username(&role))
            .await?;
        sqlx::query("DELETE FROM outbox_events WHERE id = $1")
            .bind(scheduled)
            .execute(&canceller)
            .await?;
        canceller.close().await;
        let due: Vec<(String, bool)> =
            sqlx::query_as("SELECT scope, due_at <= now() FROM outbox_held")
                .fetch_all(&db.pool)
                .await?;
        assert_eq!(
            due,
            vec![(format!("-/{key}"), true)],
            "the scope is due at once"
        );
        anyhow::Ok(())
    }
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role};"
    )))
    .execute(&db.pool)
    .await?;
    outcome?;
    db.cleanup().await
}

/// Schema names that need quoting bind their own functions, also beside a schema whose
/// name differs only in case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_whose_names_need_quoting_bind_their_own_functions() -> Result<()> {
    let db = TestDb::new().await?;
    let mut pools = Vec::new();
    for schema in ["tenantx", "\"TenantX\"", "\"Out-Box\""] {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&db.pool)
            .await?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(
                db.options
                    .clone()
                    .options([("search_path", schema.to_owned())]),
            )
            .await?;
        outbox_core::migrate(&pool).await?;
        pools.push(pool);
    }
    let bound: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT n.nspname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.proname = 'outbox_events_before_insert' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(bound.len(), 4, "{bound:?}");
    for (schema, config) in &bound {
        let quoted: String = sqlx::query_scalar("SELECT quote_ident($1)")
            .bind(schema)
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(
            config,
            &vec![format!("search_path={quoted}, pg_catalog, pg_temp")],
            "{schema}"
        );
    }
    for pool in pools {
        pool.close().await;
    }
    db.cleanup().await
}

/// An event's tenant is part of its ordering scope: like its key and seq, it cannot change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_scope_cannot_change() -> Result<()> {
    let db = TestDb::new().await?;
    let id = insert_raw(&db.pool, "ticket:1", &[]).await?;
    for assignment in [
        "tenant_id = gen_random_uuid()",
        "ordering_key = 'ticket:2'",
        "seq = seq + 1",
    ] {
        let refused = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox_events SET {assignment} WHERE id = $1"
        )))
        .bind(id)
        .execute(&db.pool)
        .await;
        let error = format!("{:?}", refused.err());
        assert!(error.contains("cannot change"), "{assignment}: {error}");
    }
    db.cleanup().await
}
