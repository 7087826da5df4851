//! The consumer fleet's test kit: a handler that records each event's effect (which process
//! applied it, from which queue) in `fleet_effects`, and the checks over that table: every
//! event applied exactly once, each ordering scope's events applied in seq order, each from
//! its partition's queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, ensure};
use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use outbox_consumer::{BoxError, Event, Handler};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::amqp_url;

/// The effects table the handler writes: one row per application, in application order.
pub const EFFECTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS fleet_effects (
    n bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    scope text,
    queue text NOT NULL,
    applied_by text NOT NULL
)";

/// The relay's routing key template in these tests.
pub const TEMPLATE: &str = "{category}.{event_type}.{partition}";

/// Records each event's effect; fails for the events of `failing` while its flag is up.
#[derive(Clone)]
pub struct EffectsHandler {
    /// The process's label, stored in `applied_by`.
    pub label: String,
    /// Events that fail while the flag is up (all, with a flag that is never lowered).
    pub failing: Option<(Vec<Uuid>, Arc<AtomicBool>)>,
    /// Whether those events make the handler panic rather than return an error.
    pub panics: bool,
}

impl EffectsHandler {
    /// A handler that never fails.
    pub fn new(label: impl Into<String>) -> Self {
        EffectsHandler {
            label: label.into(),
            failing: None,
            panics: false,
        }
    }
}

impl Handler for EffectsHandler {
    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
        if let Some((ids, broken)) = &self.failing
            && ids.contains(&event.id)
            && broken.load(Ordering::SeqCst)
        {
            let refusal = format!("the test's handler refuses event {}", event.id);
            if self.panics {
                panic!("{refusal}");
            }
            return Err(refusal.into());
        }
        sqlx::query(
            "INSERT INTO fleet_effects (event_id, scope, queue, applied_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(event.id)
        .bind(event.scope())
        .bind(&event.queue)
        .bind(&self.label)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Writes `per_scope` events for each of `keys` ordering keys under each tenant of
/// `tenants` (`None`: tenant-less), interleaved, in statements of 1,000 rows; returns the
/// number written.
pub async fn write_events(
    pool: &PgPool,
    tenants: &[Option<Uuid>],
    keys: usize,
    per_scope: usize,
) -> Result<usize> {
    let mut rows: Vec<(Option<Uuid>, String)> = Vec::new();
    for _ in 0..per_scope {
        for key in 0..keys {
            for tenant in tenants {
                rows.push((*tenant, format!("ticket:{key}")));
            }
        }
    }
    for chunk in rows.chunks(1000) {
        let tenants: Vec<Option<Uuid>> = chunk.iter().map(|(t, _)| *t).collect();
        let keys: Vec<String> = chunk.iter().map(|(_, k)| k.clone()).collect();
        sqlx::query(
            "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key)
             SELECT 'TICKET_UPDATED', jsonb_build_object('ticketId', gen_random_uuid()), t, k
               FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS r(t, k, i) ORDER BY i",
        )
        .bind(&tenants)
        .bind(&keys)
        .execute(pool)
        .await?;
    }
    Ok(rows.len())
}

/// Rows in `fleet_effects`.
pub async fn effects(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM fleet_effects")
        .fetch_one(pool)
        .await?)
}

/// Who applied the latest effect.
pub async fn latest_applier(pool: &PgPool) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT applied_by FROM fleet_effects ORDER BY n DESC LIMIT 1")
            .fetch_optional(pool)
            .await?,
    )
}

/// Effects per process label.
pub async fn appliers(pool: &PgPool) -> Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT applied_by, count(*) FROM fleet_effects GROUP BY 1")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The checks of the scale-out proof over the events of `outbox_events` (all of them, or
/// all but `except`): each applied exactly once, from the queue of its partition of
/// `partitions` under `prefix`, with the scope the database names; and per scope in seq
/// order.
pub async fn check_effects(
    pool: &PgPool,
    prefix: &str,
    partitions: u32,
    except: &[Uuid],
) -> Result<()> {
    let twice: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT event_id, count(*) FROM fleet_effects GROUP BY 1 HAVING count(*) > 1 LIMIT 5",
    )
    .fetch_all(pool)
    .await?;
    ensure!(twice.is_empty(), "events applied more than once: {twice:?}");
    let missing: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM outbox_events e
          WHERE NOT EXISTS (SELECT 1 FROM fleet_effects f WHERE f.event_id = e.id)
            AND e.id <> ALL($1) ORDER BY seq",
    )
    .bind(except)
    .fetch_all(pool)
    .await?;
    ensure!(
        missing.is_empty(),
        "{} events never applied, first {:?}",
        missing.len(),
        missing.first()
    );
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fleet_effects f WHERE NOT EXISTS
           (SELECT 1 FROM outbox_events e WHERE e.id = f.event_id)",
    )
    .fetch_one(pool)
    .await?;
    ensure!(foreign == 0, "{foreign} effects of events never written");
    let out_of_order: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT scope, prev, seq FROM (
             SELECT f.scope, e.seq, lag(e.seq) OVER (PARTITION BY f.scope ORDER BY f.n) AS prev
               FROM fleet_effects f JOIN outbox_events e ON e.id = f.event_id) x
          WHERE prev > seq LIMIT 5",
    )
    .fetch_all(pool)
    .await?;
    ensure!(
        out_of_order.is_empty(),
        "events applied out of their scope's order (scope, earlier seq applied after, seq): {out_of_order:?}"
    );
    let rows: Vec<EffectRow> = sqlx::query_as(
        "SELECT e.tenant_id, e.ordering_key, e.id, outbox_scope(e.tenant_id, e.ordering_key),
                    f.scope, f.queue
               FROM fleet_effects f JOIN outbox_events e ON e.id = f.event_id",
    )
    .fetch_all(pool)
    .await?;
    for (tenant, key, id, db_scope, scope, queue) in rows {
        ensure!(
            db_scope == scope,
            "event {id}: the consumer's scope {scope:?} is not the database's {db_scope:?}"
        );
        let partition = outbox_topology::event_partition(tenant, key.as_deref(), id, partitions);
        ensure!(
            queue == outbox_topology::partition_queue(prefix, partition),
            "event {id} of scope {scope:?} came from {queue}, not partition {partition}"
        );
    }
    Ok(())
}

/// An effect with its event: tenant, ordering key, id, the database's scope name, the
/// consumer's scope name, the queue it came from.
type EffectRow = (
    Option<Uuid>,
    Option<String>,
    Uuid,
    Option<String>,
    Option<String>,
    String,
);

/// Deletes `queues` (the partition and dead-letter queues a test declared).
pub async fn delete_queues(queues: &[String]) -> Result<()> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
