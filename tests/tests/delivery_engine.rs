//! The delivery engine under stress: per-key order with concurrent writers and crashing relay
//! processes (and a control run with the per-key lock removed, which must break the order),
//! rows whose content cannot be published, and an operator's discard of a dead head.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use catalog_types::{CatalogEvent, TicketUpdated};
use futures_util::StreamExt;
use integration_tests::{
    RelayProcess, TestBroker, TestDb, amqp_url, log_path, relay_cli, wait_until,
};
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use outbox_core::EmitOptions;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Test helpers
// ---------------------------------------------------------------------------------------

/// Short leases so a killed relay's rows come back quickly.
const SHORT_LEASE: [&str; 6] = [
    "--lease",
    "4s",
    "--confirm-timeout",
    "1s",
    "--publish-timeout",
    "1s",
];

/// A small xorshift64* generator (the test crate has no `rand`).
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        Rng(Uuid::new_v4().as_u64_pair().0 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One message as the test's consumer saw it, with its headers as AMQP values.
#[derive(Debug, Clone)]
struct Seen {
    message_id: String,
    ordering_key: Option<String>,
    headers: FieldTable,
    body: Vec<u8>,
}

impl Seen {
    fn from_delivery(delivery: &lapin::message::Delivery) -> Self {
        let properties = &delivery.properties;
        let headers = properties.headers().clone().unwrap_or_default();
        let ordering_key = headers.inner().get("x-ordering-key").map(text_of);
        Seen {
            message_id: properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            ordering_key,
            headers,
            body: delivery.data.clone(),
        }
    }

    fn envelope(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn text_of(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

/// An AMQP field value as the JSON value it stands for.
fn amqp_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => json!(text_of(value)),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(amqp_json).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
                .collect(),
        ),
        AMQPValue::Void => Value::Null,
        other => json!(format!("{other:?}")),
    }
}

/// A consumer on the test queue that records every delivery in arrival order.
struct Consumer {
    seen: Arc<Mutex<Vec<Seen>>>,
    cancel: CancellationToken,
    task: JoinHandle<Result<()>>,
}

impl Consumer {
    async fn start(queue: &str) -> Result<Self> {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .context("consumer: connect to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "delivery-engine-test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let seen = seen.clone();
            let cancel = cancel.clone();
            async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        next = consumer.next() => match next {
                            None => bail!("the consumer's stream ended"),
                            Some(delivery) => {
                                let seen_now = Seen::from_delivery(&delivery?);
                                seen.lock().unwrap().push(seen_now);
                            }
                        }
                    }
                }
                drop(channel);
                let _ = connection.close(200, "done".into()).await;
                Ok(())
            }
        });
        Ok(Consumer { seen, cancel, task })
    }

    /// The distinct message ids received so far.
    fn ids(&self) -> HashSet<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.message_id.clone())
            .collect()
    }

    /// The first delivery of `id`, if it arrived.
    fn find(&self, id: Uuid) -> Option<Seen> {
        let id = id.to_string();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.message_id == id)
            .cloned()
    }

    /// Waits until every id of `ids` arrived.
    async fn wait_for(&self, ids: &[Uuid], timeout: Duration) -> Result<()> {
        let wanted: HashSet<String> = ids.iter().map(ToString::to_string).collect();
        wait_until(timeout, "the consumer to receive every event", || {
            let seen = self.ids();
            let done = wanted.is_subset(&seen);
            async move { Ok(done) }
        })
        .await
    }

    async fn stop(self) -> Result<Vec<Seen>> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await???;
        Ok(std::mem::take(&mut *self.seen.lock().unwrap()))
    }
}

/// The last `lines` lines of a relay's log.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops a relay process with SIGTERM (or SIGKILL when it does not stop in time).
async fn stop_relay(relay: &mut RelayProcess) -> Result<()> {
    if relay.child.try_wait()?.is_some() {
        return Ok(());
    }
    relay.signal("TERM").await?;
    if tokio::time::timeout(Duration::from_secs(30), relay.child.wait())
        .await
        .is_err()
    {
        relay.signal("KILL").await?;
        relay.child.wait().await?;
    }
    Ok(())
}

/// One event's status, attempts and last error.
async fn row_state(pool: &PgPool, id: Uuid) -> Result<(String, i32, Option<String>)> {
    Ok(
        sqlx::query_as(
            "SELECT status, attempts, last_error FROM outbox_event_status WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await?,
    )
}

async fn wait_for_status(pool: &PgPool, id: Uuid, status: &str, timeout: Duration) -> Result<()> {
    wait_until(timeout, &format!("event {id} to be {status}"), || async {
        Ok(row_state(pool, id).await?.0 == status)
    })
    .await
}

/// A row written by plain SQL, as a service in another language would.
#[derive(Debug, Clone)]
struct RawRow {
    event_type: String,
    /// JSON text.
    payload: String,
    ordering_key: Option<String>,
    /// JSON text; `{}` when absent.
    headers: Option<String>,
    schema_ref: Option<String>,
    category: Option<String>,
    /// Timestamp text; `now()` when absent.
    occurred_at: Option<String>,
    /// Timestamp text; `now()` when absent.
    available_at: Option<String>,
}

impl RawRow {
    /// A `TICKET_UPDATED` row on `key` with a small payload.
    fn ticket(key: &str) -> Self {
        RawRow {
            event_type: TicketUpdated::EVENT_TYPE.to_owned(),
            payload: json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}).to_string(),
            ordering_key: Some(key.to_owned()),
            headers: None,
            schema_ref: None,
            category: None,
            occurred_at: None,
            available_at: None,
        }
    }

    async fn insert<'c, E>(&self, executor: E) -> Result<Uuid, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        sqlx::query_scalar(
            "INSERT INTO outbox_events
                 (event_type, payload, ordering_key, headers, schema_ref, category,
                  occurred_at, available_at)
             VALUES ($1, $2::text::jsonb, $3, COALESCE($4::text::jsonb, '{}'::jsonb), $5, $6,
                     COALESCE($7::text::timestamptz, now()),
                     COALESCE($8::text::timestamptz, now()))
             RETURNING id",
        )
        .bind(&self.event_type)
        .bind(&self.payload)
        .bind(&self.ordering_key)
        .bind(&self.headers)
        .bind(&self.schema_ref)
        .bind(&self.category)
        .bind(&self.occurred_at)
        .bind(&self.available_at)
        .fetch_one(executor)
        .await
    }
}

/// Inserts `row` and expects the database to refuse it with a message containing every one
/// of `needles`; returns the message.
async fn expect_refused(pool: &PgPool, row: &RawRow, needles: &[&str]) -> Result<String> {
    match row.insert(pool).await {
        Ok(id) => bail!("the insert of {row:?} was accepted as {id}"),
        Err(error) => {
            let message = error.to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "the refusal should mention `{needle}`: {message}"
                );
            }
            Ok(message)
        }
    }
}

/// Rows not delivered, for a failure message.
async fn undelivered_rows(pool: &PgPool) -> Result<String> {
    let rows: Vec<Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('seq', seq, 'id', id, 'key', ordering_key, 'status', status,
                                   'parked', parked, 'leased_by', leased_by,
                                   'attempts', attempts, 'due_at', due_at,
                                   'last_error', last_error)
           FROM outbox_event_status WHERE status <> 'delivered' ORDER BY ordering_key, seq LIMIT 40",
    )
    .fetch_all(pool)
    .await?;
    let held: Vec<Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('scope', scope, 'part', part, 'head_seq', head_seq,
                                   'due_at', due_at)
           FROM outbox_held ORDER BY scope LIMIT 40",
    )
    .fetch_all(pool)
    .await?;
    Ok(format!(
        "undelivered rows (first 40):\n{}\nheld scopes (first 40): {held:?}",
        rows.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

// ---------------------------------------------------------------------------------------
// 1. Per-key order under concurrent writers and crashing relays
// ---------------------------------------------------------------------------------------

const WRITERS: usize = 8;
const HOT_KEYS: usize = 12;
const RELAYS: usize = 3;

/// What one writer task did.
#[derive(Debug, Default)]
struct WriterLog {
    committed: Vec<Uuid>,
    rolled_back: Vec<Uuid>,
    deadlocks: usize,
}

/// One writer: transactions of 1–3 events on random hot keys (keys sorted within a
/// transaction), held open 0–30 ms, committed or (about 10 %) rolled back, until `until`.
/// Events are written half by the library (`emit_with` with an ordering key override) and
/// half by plain SQL; with `explicit_columns` the SQL supplies schema_ref, category and
/// dedupe_key itself (as the library does), so it works with the insert trigger disabled.
async fn writer(
    pool: PgPool,
    tenant: Uuid,
    tickets: Arc<Vec<(Uuid, String)>>,
    explicit_columns: bool,
    until: Instant,
) -> Result<WriterLog> {
    let mut rng = Rng::seeded();
    let mut log = WriterLog::default();
    while Instant::now() < until {
        let mut picks: Vec<usize> = (0..1 + rng.below(3))
            .map(|_| rng.below(tickets.len()))
            .collect();
        picks.sort_unstable(); // `tickets` is sorted by key: one lock order for everyone
        let hold = Duration::from_millis(rng.below(31) as u64);
        let rollback = rng.below(10) == 0;
        let library: Vec<bool> = picks.iter().map(|_| rng.below(2) == 0).collect();
        let mut ids = Vec::new();
        let attempt: Result<()> = async {
            let mut tx = pool.begin().await?;
            for (&pick, &use_library) in picks.iter().zip(&library) {
                let (ticket, key) = &tickets[pick];
                let id = if use_library {
                    let event = TicketUpdated {
                        tenant_id: tenant,
                        ticket_id: *ticket,
                        ..TicketUpdated::example()
                    };
                    let options = EmitOptions::new().ordering_key(key.clone());
                    outbox_core::emit_with(&mut tx, &event, options).await?
                } else {
                    let payload = json!({
                        "tenantId": tenant,
                        "ticketId": ticket,
                        "updatedFields": ["status"],
                    });
                    if explicit_columns {
                        let id = Uuid::now_v7();
                        sqlx::query_scalar(
                            "INSERT INTO outbox_events
                                 (id, tenant_id, event_type, schema_ref, category, ordering_key,
                                  payload, dedupe_key)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $1::text)
                             RETURNING id",
                        )
                        .bind(id)
                        .bind(tenant)
                        .bind(TicketUpdated::EVENT_TYPE)
                        .bind(TicketUpdated::SCHEMA_REF)
                        .bind(TicketUpdated::CATEGORY.name())
                        .bind(key)
                        .bind(&payload)
                        .fetch_one(&mut *tx)
                        .await?
                    } else {
                        sqlx::query_scalar(
                            "INSERT INTO outbox_events (tenant_id, event_type, payload, ordering_key)
                             VALUES ($1, $2, $3, $4)
                             RETURNING id",
                        )
                        .bind(tenant)
                        .bind(TicketUpdated::EVENT_TYPE)
                        .bind(&payload)
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?
                    }
                };
                ids.push(id);
            }
            tokio::time::sleep(hold).await;
            if rollback {
                tx.rollback().await?;
            } else {
                tx.commit()
                    .await
                    .context("COMMIT failed (its outcome is unknown)")?;
            }
            Ok(())
        }
        .await;
        match attempt {
            Ok(()) if rollback => log.rolled_back.append(&mut ids),
            Ok(()) => log.committed.append(&mut ids),
            Err(error) if format!("{error:#}").contains("deadlock detected") => {
                // The transaction was rolled back by the server; try another.
                log.deadlocks += 1;
                log.rolled_back.append(&mut ids);
            }
            Err(error) => return Err(error),
        }
        // A short pause between transactions keeps the run at a few hundred events a second.
        tokio::time::sleep(Duration::from_millis(rng.below(40) as u64)).await;
    }
    Ok(log)
}

/// The outcome of a stress run.
#[derive(Debug)]
struct StressReport {
    committed: usize,
    rolled_back: usize,
    deadlocks: usize,
    kills: usize,
    /// Leases the killed relays still held when they died.
    orphaned_leases: i64,
    messages: usize,
    duplicates: usize,
    /// Events whose first delivery came after the first delivery of a later-seq event of
    /// the same key.
    violations: usize,
    /// Committed events never delivered.
    missing: usize,
    /// Rolled-back events that were delivered anyway.
    ghosts: usize,
    /// Deliveries whose `x-ordering-key` differs from the stored key.
    wrong_keys: usize,
    examples: Vec<String>,
    write_time: Duration,
    drain_time: Duration,
}

impl StressReport {
    fn summary(&self, mode: &str) -> String {
        format!(
            "[{mode}] events={} (rolled back {}, deadlock retries {}) keys={HOT_KEYS} writers={WRITERS} \
             relays={RELAYS} kills={} orphaned_leases={} messages={} duplicates={} violations={} \
             missing={} ghosts={} wrong_keys={} write={:.1?} drain={:.1?}",
            self.committed,
            self.rolled_back,
            self.deadlocks,
            self.kills,
            self.orphaned_leases,
            self.messages,
            self.duplicates,
            self.violations,
            self.missing,
            self.ghosts,
            self.wrong_keys,
            self.write_time,
            self.drain_time,
        )
    }
}

/// Runs writers for `write_for` against relay processes, SIGKILLing one relay at a third
/// and another at two thirds of the run (each replaced at once), then checks the first
/// deliveries of each key against the stored `seq`. With `key_lock` false the insert trigger
/// (per-key lock, seq drawn under it, parking) is disabled.
async fn stress(key_lock: bool, write_for: Duration) -> Result<StressReport> {
    let mode = if key_lock { "locked" } else { "unlocked" };
    let db = TestDb::new().await?;
    if !key_lock {
        // Without the trigger nothing draws seq: a plain default does (as before the trigger
        // drew it for every row), outside any lock.
        sqlx::raw_sql(
            "ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_before_insert;
             ALTER TABLE outbox_events ALTER COLUMN seq SET DEFAULT nextval('outbox_events_seq_p0') * 16",
        )
        .execute(&db.pool)
        .await?;
    }
    let broker = TestBroker::new(&["#"]).await?;
    let consumer = Consumer::start(&broker.queue).await?;

    let mut logs: Vec<PathBuf> = Vec::new();
    let mut start_relay = |n: usize| -> Result<(String, RelayProcess)> {
        let log = log_path(&format!("delivery-engine-{mode}-relay{n}"));
        let relay_id = format!("relay-{n}");
        let mut flags: Vec<&str> = SHORT_LEASE.to_vec();
        flags.extend(["--batch-size", "100", "--relay-id", &relay_id]);
        let relay = RelayProcess::start(&db, &broker, &flags, &log)?;
        logs.push(log);
        Ok((relay_id, relay))
    };
    let mut relays: Vec<(String, RelayProcess)> =
        (0..RELAYS).map(&mut start_relay).collect::<Result<_>>()?;

    let writer_pool = PgPoolOptions::new()
        .max_connections(u32::try_from(WRITERS).unwrap_or(8) + 2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(db.options.clone())
        .await?;
    let tenant = Uuid::now_v7();
    let mut tickets: Vec<(Uuid, String)> = (0..HOT_KEYS)
        .map(|_| {
            let ticket = Uuid::new_v4();
            (ticket, format!("ticket:{ticket}"))
        })
        .collect();
    tickets.sort_by(|a, b| a.1.cmp(&b.1));
    if !key_lock {
        // The trigger creates a key's lock row, which the relay takes (`SKIP LOCKED`) to
        // unpark the key's next head after a delivery; the relay of 49ce694 left the events
        // of a key without one parked for good. Create the rows here; no writer takes them.
        let keys: Vec<String> = tickets.iter().map(|(_, key)| key.clone()).collect();
        sqlx::query(
            "INSERT INTO outbox_key_locks (ordering_key)
             SELECT outbox_scope($2, k) FROM unnest($1::text[]) AS k",
        )
        .bind(&keys)
        .bind(tenant)
        .execute(&db.pool)
        .await?;
    }
    let tickets = Arc::new(tickets);

    let started = Instant::now();
    let until = started + write_for;
    let writers: Vec<JoinHandle<Result<WriterLog>>> = (0..WRITERS)
        .map(|_| {
            tokio::spawn(writer(
                writer_pool.clone(),
                tenant,
                tickets.clone(),
                !key_lock,
                until,
            ))
        })
        .collect();

    // SIGKILL a relay at a third and another at two thirds of the run, preferring one caught
    // holding a lease (so the kill strands rows mid-batch); replace each at once.
    let mut kills = 0;
    let mut orphaned_leases = 0;
    for (next_relay, at) in (RELAYS..).zip([write_for / 3, write_for * 2 / 3]) {
        tokio::time::sleep_until((started + at).into()).await;
        let ids: Vec<String> = relays.iter().map(|(id, _)| id.clone()).collect();
        let mut victim = kills % relays.len();
        let look_until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < look_until {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT relay_id FROM outbox_partitions WHERE relay_id = ANY($1) LIMIT 1",
            )
            .bind(&ids)
            .fetch_optional(&db.pool)
            .await?;
            if let Some(index) = holder.and_then(|h| ids.iter().position(|id| *id == h)) {
                victim = index;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (killed_id, process) = &mut relays[victim];
        process.signal("KILL").await?;
        process.child.wait().await?;
        kills += 1;
        orphaned_leases += sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox_leased_events WHERE relay_id = $1",
        )
        .bind(&*killed_id)
        .fetch_one(&db.pool)
        .await?;
        relays[victim] = start_relay(next_relay)?;
    }

    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    let mut deadlocks = 0;
    for handle in writers {
        let mut log = handle.await??;
        committed.append(&mut log.committed);
        rolled_back.append(&mut log.rolled_back);
        deadlocks += log.deadlocks;
    }
    let write_time = started.elapsed();
    writer_pool.close().await;

    // Every committed event delivered (as the database records it), then seen by the consumer.
    let drain_started = Instant::now();
    let target = i64::try_from(committed.len())?;
    let drained = wait_until(
        Duration::from_secs(120),
        "every committed event to be delivered",
        || async {
            let delivered: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox_event_status WHERE status = 'delivered'",
            )
            .fetch_one(&db.pool)
            .await?;
            Ok(delivered >= target)
        },
    )
    .await;
    if let Err(error) = &drained {
        let diagnosis = undelivered_rows(&db.pool).await?;
        let tails: Vec<String> = logs
            .iter()
            .map(|log| format!("--- {}\n{}", log.display(), log_tail(log, 15)))
            .collect();
        eprintln!("[{mode}] {error}\n{diagnosis}\n{}", tails.join("\n"));
        if key_lock {
            bail!("[{mode}] {error}");
        }
    } else {
        consumer
            .wait_for(&committed, Duration::from_secs(30))
            .await
            .with_context(|| format!("[{mode}] the consumer did not receive every event"))?;
        // Redeliveries of a killed relay's last wave arrive before its rows are settled, so
        // they are in; a moment more lets the consumer take anything still in transit.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_time = drain_started.elapsed();

    for (_, relay) in &mut relays {
        stop_relay(relay).await?;
    }
    let deliveries = consumer.stop().await?;

    // The stored seq and key of every event.
    let stored: HashMap<String, (i64, Option<String>)> =
        sqlx::query_as::<_, (Uuid, i64, Option<String>)>(
            "SELECT id, seq, ordering_key FROM outbox_events",
        )
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .map(|(id, seq, key)| (id.to_string(), (seq, key)))
        .collect();

    let mut first_seen = HashSet::new();
    let mut highest: HashMap<String, i64> = HashMap::new();
    let mut violations = 0;
    let mut wrong_keys = 0;
    let mut examples = Vec::new();
    for delivery in &deliveries {
        if !first_seen.insert(delivery.message_id.clone()) {
            continue; // a redelivery: only first deliveries count for order
        }
        let Some((seq, key)) = stored.get(&delivery.message_id) else {
            continue; // not a stored event (a rolled-back one): counted below
        };
        if delivery.ordering_key != *key {
            wrong_keys += 1;
        }
        let Some(key) = key else { continue };
        let top = highest.entry(key.clone()).or_insert(*seq);
        if *seq < *top {
            violations += 1;
            if examples.len() < 5 {
                examples.push(format!(
                    "key {key}: seq {seq} first delivered after seq {top}"
                ));
            }
        } else {
            *top = *seq;
        }
    }
    let committed_set: HashSet<String> = committed.iter().map(ToString::to_string).collect();
    let missing = committed_set.difference(&first_seen).count();
    let ghosts = rolled_back
        .iter()
        .filter(|id| first_seen.contains(&id.to_string()) || stored.contains_key(&id.to_string()))
        .count();

    let report = StressReport {
        committed: committed.len(),
        rolled_back: rolled_back.len(),
        deadlocks,
        kills,
        orphaned_leases,
        messages: deliveries.len(),
        duplicates: deliveries.len() - first_seen.len(),
        violations,
        missing,
        ghosts,
        wrong_keys,
        examples,
        write_time,
        drain_time,
    };
    eprintln!("{}", report.summary(mode));
    for example in &report.examples {
        eprintln!("[{mode}]   {example}");
    }
    broker.cleanup().await?;
    db.cleanup().await?;
    for log in logs {
        let _ = std::fs::remove_file(log);
    }
    Ok(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_killed_relays_keep_per_key_order() -> Result<()> {
    let report = stress(true, Duration::from_secs(25)).await?;
    assert!(
        report.committed >= 2_500,
        "the run committed only {} events",
        report.committed
    );
    assert_eq!(report.kills, 2);
    assert_eq!(report.missing, 0, "committed events never delivered");
    assert_eq!(
        report.ghosts, 0,
        "rolled-back events were stored or delivered"
    );
    assert_eq!(
        report.wrong_keys, 0,
        "x-ordering-key differs from the stored key"
    );
    assert_eq!(
        report.violations, 0,
        "per-key order broken: {:?}",
        report.examples
    );
    Ok(())
}

/// The control experiment: the same run with the insert trigger (per-key lock, seq drawn
/// under it) disabled must show out-of-order first deliveries, proving that the test above
/// can fail. Rows still supply schema_ref, category and dedupe_key, as the library does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_per_key_lock_the_same_run_breaks_per_key_order() -> Result<()> {
    let report = stress(false, Duration::from_secs(25)).await?;
    assert!(
        report.committed >= 2_500,
        "the run committed only {} events",
        report.committed
    );
    assert!(
        report.violations > 0,
        "with the per-key lock disabled, some event should have been delivered after a later \
         event of its key ({})",
        report.summary("unlocked")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. No row can stop the relay
// ---------------------------------------------------------------------------------------

/// The relay's message size limit in these tests.
const MAX_MESSAGE_SIZE: &str = "65536";

/// A payload whose envelope is far over [`MAX_MESSAGE_SIZE`].
fn oversized_payload() -> String {
    json!({"ticketId": Uuid::now_v7(), "blob": "x".repeat(100 * 1024)}).to_string()
}

/// Headers nested `depth` objects deep: valid jsonb, beyond serde_json's recursion limit.
fn deeply_nested_headers(depth: usize) -> String {
    format!(
        "{{\"deep\":{}1{}}}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_can_stop_the_relay() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let consumer = Consumer::start(&broker.queue).await?;
    let log = log_path("delivery-engine-hostile-rows");
    let mut flags: Vec<&str> = SHORT_LEASE.to_vec();
    flags.extend(["--max-message-size", MAX_MESSAGE_SIZE]);
    let mut relay = RelayProcess::start(&db, &broker, &flags, &log)?;
    let run = Uuid::now_v7();
    let mut normal = Vec::new();
    for i in 0..10 {
        normal.push(
            RawRow::ticket(&format!("normal:{run}:{i}"))
                .insert(&db.pool)
                .await?,
        );
    }

    // (a) A header name of 300 bytes: refused at insert, naming the AMQP limit.
    let mut row = RawRow::ticket(&format!("a:{run}"));
    row.headers = Some(json!({"h".repeat(300): "v"}).to_string());
    expect_refused(&db.pool, &row, &["header name", "255 bytes"]).await?;

    // (b) A 300-character event type, even with schema_ref and category given: unknown.
    let mut row = RawRow::ticket(&format!("b:{run}"));
    row.event_type = "E".repeat(300);
    row.schema_ref = Some(format!("payload.{}.v1", "E".repeat(300)));
    row.category = Some("Tickets".to_owned());
    expect_refused(&db.pool, &row, &["unknown event type"]).await?;

    // (c) Header values of every JSON type: delivered as typed AMQP values.
    let typed_headers = json!({
        "str": "text",
        "int": 42,
        "negative": -7,
        "big": 9_007_199_254_740_993_i64,
        "float": 3.25,
        "yes": true,
        "no": false,
        "nothing": null,
        "list": [1, "two", 3.5, false, null, [4], {"k": "v"}],
        "object": {"a": 1, "b": "two", "c": {"d": [true]}},
        "nested": {"l1": {"l2": {"l3": {"l4": [{"deep": "yes"}]}}}},
        "empty_object": {},
        "empty_list": [],
    });
    let mut row = RawRow::ticket(&format!("c:{run}"));
    row.headers = Some(typed_headers.to_string());
    let typed_id = row.insert(&db.pool).await?;

    // (d) A payload over --max-message-size, with a later event of its key in the same
    // transaction (one claim takes both) and another written afterwards.
    let oversized_key = format!("d:{run}");
    let mut tx = db.pool.begin().await?;
    let mut row = RawRow::ticket(&oversized_key);
    row.payload = oversized_payload();
    let oversized_id = row.insert(&mut *tx).await?;
    let behind_oversized = RawRow::ticket(&oversized_key).insert(&mut *tx).await?;
    tx.commit().await?;

    // (e) Control characters in payload strings and in the ordering key.
    let control_key = format!("e:\u{1}\u{2}\t\n\r\u{1b}\u{1f}\u{7f}:{run}");
    let control_text = "bell\u{7} esc\u{1b} nl\n tab\t cr\r us\u{1f} del\u{7f} soh\u{1}";
    let mut row = RawRow::ticket(&control_key);
    row.payload = json!({"ticketId": Uuid::now_v7(), "note": control_text}).to_string();
    let control_id = row.insert(&db.pool).await?;

    // (f) A far-future available_at: stays pending, blocks nobody else.
    let mut row = RawRow::ticket(&format!("f:{run}"));
    row.available_at = Some("3000-01-01T00:00:00Z".to_owned());
    let future_id = row.insert(&db.pool).await?;

    // (g) An ordering key of 600 bytes: refused.
    let row = RawRow::ticket(&"g".repeat(600));
    expect_refused(&db.pool, &row, &["ordering_key", "600 bytes"]).await?;

    // (h) Headers nested deeper than serde_json reads (128 levels): dead with the reason.
    let deep_key = format!("h:{run}");
    let mut row = RawRow::ticket(&deep_key);
    row.headers = Some(deeply_nested_headers(200));
    let deep_id = row.insert(&db.pool).await?;

    // (i) occurred_at = infinity, available_at = infinity, a year past 9999: refused.
    let mut row = RawRow::ticket(&format!("i:{run}"));
    row.occurred_at = Some("infinity".to_owned());
    expect_refused(&db.pool, &row, &["years 1 to 9999"]).await?;
    let mut row = RawRow::ticket(&format!("i2:{run}"));
    row.available_at = Some("infinity".to_owned());
    expect_refused(&db.pool, &row, &["years 1 to 9999"]).await?;
    let mut row = RawRow::ticket(&format!("i3:{run}"));
    row.occurred_at = Some("270000-01-01T00:00:00Z".to_owned());
    expect_refused(&db.pool, &row, &["years 1 to 9999"]).await?;

    // More normal events after the hostile ones.
    for i in 10..20 {
        normal.push(
            RawRow::ticket(&format!("normal:{run}:{i}"))
                .insert(&db.pool)
                .await?,
        );
    }

    // The unpublishable rows are dead after one attempt, with their reasons.
    wait_for_status(&db.pool, oversized_id, "dead", Duration::from_secs(30)).await?;
    let (_, attempts, error) = row_state(&db.pool, oversized_id).await?;
    let error = error.unwrap_or_default();
    assert_eq!(attempts, 1, "an oversized event is dead at once");
    assert!(
        error.contains("65536") && error.contains("max-message-size"),
        "the reason names the size limit: {error}"
    );
    wait_for_status(&db.pool, deep_id, "dead", Duration::from_secs(30)).await?;
    let (_, attempts, error) = row_state(&db.pool, deep_id).await?;
    let error = error.unwrap_or_default();
    assert_eq!(attempts, 1, "unreadable headers make an event dead at once");
    assert!(
        error.contains("headers") && error.contains("recursion limit"),
        "the reason says the headers cannot be read: {error}"
    );

    // Everything publishable arrives; the rest waits.
    let mut expected = normal.clone();
    expected.extend([typed_id, control_id]);
    consumer
        .wait_for(&expected, Duration::from_secs(30))
        .await?;

    // ... and still arrives after the bad rows were settled.
    let mut late = Vec::new();
    for i in 20..25 {
        late.push(
            RawRow::ticket(&format!("normal:{run}:{i}"))
                .insert(&db.pool)
                .await?,
        );
    }
    consumer.wait_for(&late, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (status, attempts, _) = row_state(&db.pool, behind_oversized).await?;
    assert_eq!(
        (status.as_str(), attempts),
        ("pending", 0),
        "the event behind the dead one waits, unattempted"
    );
    let (status, attempts, _) = row_state(&db.pool, future_id).await?;
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    let received = consumer.ids();
    for id in [oversized_id, behind_oversized, deep_id, future_id] {
        assert!(!received.contains(&id.to_string()), "{id} was published");
    }

    // (c) The typed headers, as the consumer sees them.
    let typed = consumer.find(typed_id).context("typed-header event")?;
    let kinds: HashMap<&str, char> = typed
        .headers
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str(), v.get_type().get_id()))
        .collect();
    for (name, kind) in [
        ("str", 'S'),
        ("int", 'l'),
        ("negative", 'l'),
        ("big", 'l'),
        ("float", 'd'),
        ("yes", 't'),
        ("no", 't'),
        ("nothing", 'V'),
        ("list", 'A'),
        ("object", 'F'),
        ("nested", 'F'),
        ("empty_object", 'F'),
        ("empty_list", 'A'),
    ] {
        assert_eq!(
            kinds.get(name),
            Some(&kind),
            "header {name}: AMQP types {kinds:?}"
        );
    }
    for (name, value) in typed_headers.as_object().context("headers object")? {
        let got = typed
            .headers
            .inner()
            .get(name.as_str())
            .map(amqp_json)
            .unwrap_or(Value::String("<missing>".to_owned()));
        assert_eq!(&got, value, "header {name}");
    }
    assert!(typed.headers.contains_key("x-dedupe-key"));

    // (e) Control characters arrive intact.
    let control = consumer
        .find(control_id)
        .context("control-character event")?;
    assert_eq!(control.ordering_key.as_deref(), Some(control_key.as_str()));
    assert_eq!(control.envelope()["payload"]["note"], json!(control_text));

    // The relay is still running, without a panic, and reports the blocked keys.
    assert!(
        relay.child.try_wait()?.is_none(),
        "the relay exited: {}",
        log_tail(&log, 30)
    );
    let log_text = std::fs::read_to_string(&log)?;
    assert!(!log_text.contains("panicked"), "{log_text}");
    let (code, stdout, stderr) = relay_cli(&db, &["status", "--format", "json"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let status: Value = serde_json::from_str(&stdout)?;
    let blocked: HashMap<String, String> = status["blockedKeys"]
        .as_array()
        .context("blockedKeys")?
        .iter()
        .map(|k| {
            (
                k["orderingKey"].as_str().unwrap_or_default().to_owned(),
                k["headId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        blocked.get(&oversized_key),
        Some(&oversized_id.to_string()),
        "{stdout}"
    );
    assert_eq!(
        blocked.get(&deep_key),
        Some(&deep_id.to_string()),
        "{stdout}"
    );
    assert_eq!(status["dead"], json!(2), "{stdout}");
    let (code, text, _) = relay_cli(&db, &["status"]).await?;
    assert_eq!(code, 0);
    assert!(
        text.contains(&oversized_key) && text.contains(&deep_key),
        "{text}"
    );

    stop_relay(&mut relay).await?;
    consumer.stop().await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await
}

// ---------------------------------------------------------------------------------------
// 3. An operator's discard unblocks the key
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_a_dead_oversized_event_unblocks_its_key() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let consumer = Consumer::start(&broker.queue).await?;
    let log = log_path("delivery-engine-discard");
    let mut flags: Vec<&str> = SHORT_LEASE.to_vec();
    flags.extend(["--max-message-size", MAX_MESSAGE_SIZE]);
    let mut relay = RelayProcess::start(&db, &broker, &flags, &log)?;

    let key = format!("ticket:{}", Uuid::now_v7());
    let mut tx = db.pool.begin().await?;
    let mut row = RawRow::ticket(&key);
    row.payload = oversized_payload();
    let dead_id = row.insert(&mut *tx).await?;
    let first_behind = RawRow::ticket(&key).insert(&mut *tx).await?;
    tx.commit().await?;
    let other = RawRow::ticket(&format!("other:{}", Uuid::now_v7()))
        .insert(&db.pool)
        .await?;
    wait_for_status(&db.pool, dead_id, "dead", Duration::from_secs(30)).await?;
    let second_behind = RawRow::ticket(&key).insert(&db.pool).await?;
    consumer.wait_for(&[other], Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in [first_behind, second_behind] {
        let (status, attempts, _) = row_state(&db.pool, id).await?;
        assert_eq!((status.as_str(), attempts), ("pending", 0), "{id} waits");
    }

    let dead = dead_id.to_string();
    let (code, stdout, stderr) =
        relay_cli(&db, &["discard", "--id", &dead, "--actor", "t"]).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("discarded 1 event(s)"), "{stdout}");
    let (status, _, error) = row_state(&db.pool, dead_id).await?;
    assert_eq!(status, "discarded");
    assert!(
        error.unwrap_or_default().contains("discarded by t"),
        "the last error records who discarded it"
    );

    // The key flows again, in order.
    consumer
        .wait_for(&[first_behind, second_behind], Duration::from_secs(30))
        .await?;
    let order: Vec<String> = consumer
        .stop()
        .await?
        .into_iter()
        .map(|s| s.message_id)
        .filter(|id| *id == first_behind.to_string() || *id == second_behind.to_string())
        .collect();
    assert_eq!(
        order.first(),
        Some(&first_behind.to_string()),
        "the key's events arrive in seq order: {order:?}"
    );
    assert!(
        !order.contains(&dead),
        "a discarded event is never published"
    );

    let audit: Vec<(String, String, Vec<Uuid>)> =
        sqlx::query_as("SELECT action, actor, event_ids FROM outbox_replay_audit")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(
        audit,
        vec![("discard".to_owned(), "t".to_owned(), vec![dead_id])]
    );

    stop_relay(&mut relay).await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await
}

// ---------------------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------------------

/// A head whose row cannot be decoded (here: headers nested deeper than serde_json's 128
/// levels) is settled dead, and the run behind it, leased in the same claim, must not be
/// published: it stays pending behind its dead head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_head_blocks_the_later_events_of_its_key() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let consumer = Consumer::start(&broker.queue).await?;
    let key = format!("ticket:{}", Uuid::now_v7());
    // Both rows committed before the relay starts, so its first claim takes the head and the
    // run behind it together.
    let mut tx = db.pool.begin().await?;
    let mut row = RawRow::ticket(&key);
    row.headers = Some(deeply_nested_headers(200));
    let head = row.insert(&mut *tx).await?;
    let behind = RawRow::ticket(&key).insert(&mut *tx).await?;
    tx.commit().await?;
    let other = RawRow::ticket(&format!("other:{}", Uuid::now_v7()))
        .insert(&db.pool)
        .await?;
    let log = log_path("delivery-engine-unreadable-head");
    let mut relay = RelayProcess::start(&db, &broker, &SHORT_LEASE, &log)?;
    wait_for_status(&db.pool, head, "dead", Duration::from_secs(30)).await?;
    consumer.wait_for(&[other], Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = row_state(&db.pool, behind).await?;
    let published = consumer.find(behind).is_some();
    stop_relay(&mut relay).await?;
    consumer.stop().await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await?;
    assert!(
        !published && state.0 == "pending" && state.1 == 0,
        "the event behind a dead (unreadable) head was published: {state:?}"
    );
    Ok(())
}

/// `purge::idle_key_locks` (run by `outbox-relay purge` and by `--retention`) deletes the
/// lock row of a key with nothing left to deliver. A replay of delivered events of that key
/// with two relays running: a claim parks the events behind the ones another relay leased,
/// and each delivery must still unpark the next head although no writer recreated the row.
/// (Before 4acc5dd the parked events stayed pending for good: `heads_moved` found no row to
/// take and the re-check never saw the key.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_key_whose_lock_row_was_purged_delivers_every_event() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let ids = integration_tests::emit_tickets(&db.pool, 60, 1).await?;
    let key: String = sqlx::query_scalar("SELECT ordering_key FROM outbox_events LIMIT 1")
        .fetch_one(&db.pool)
        .await?;
    let logs = [
        log_path("delivery-engine-replay-a"),
        log_path("delivery-engine-replay-b"),
    ];
    let flags = ["--batch-size", "10"];
    let mut relays = vec![
        RelayProcess::start(&db, &broker, &flags, &logs[0])?,
        RelayProcess::start(&db, &broker, &flags, &logs[1])?,
    ];
    wait_until(Duration::from_secs(30), "the first deliveries", || async {
        Ok(integration_tests::count_status(&db.pool, "delivered").await? == 60)
    })
    .await?;
    // The periodic purge (or `outbox-relay purge`) removes the idle key's lock row.
    let (code, _, stderr) = relay_cli(&db, &["purge", "--older-than", "1h"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let locks: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_key_locks")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(locks, 0, "the idle key's lock row is purged");

    let (code, stdout, stderr) = relay_cli(
        &db,
        &[
            "replay",
            "--status",
            "delivered",
            "--ordering-key",
            &key,
            "--actor",
            "t",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let done = wait_until(Duration::from_secs(30), "every replayed event", || async {
        Ok(integration_tests::count_status(&db.pool, "delivered").await? == 60)
    })
    .await;
    let stuck = undelivered_rows(&db.pool).await?;
    for relay in &mut relays {
        stop_relay(relay).await?;
    }
    broker.cleanup().await?;
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
    db.cleanup().await?;
    assert_eq!(ids.len(), 60);
    assert!(done.is_ok(), "replayed events stuck: {stuck}");
    Ok(())
}

/// Postgres accepts timestamps up to the year 294276; chrono (and so sqlx's decoder) stops at
/// 262142, and sqlx decodes with `NaiveDateTime + TimeDelta`, which panics on overflow. The
/// insert trigger refuses years past 9999, but an UPDATE (or a row from before the trigger)
/// can still hold one: the claim must make that row dead, never panic, and deliver the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_beyond_chronos_range_does_not_stop_the_relay() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let consumer = Consumer::start(&broker.queue).await?;
    let row = RawRow::ticket(&format!("far:{}", Uuid::now_v7()));
    let far = row.insert(&db.pool).await;
    if let Ok(id) = &far {
        sqlx::query(
            "UPDATE outbox_events SET occurred_at = '270000-01-01T00:00:00Z',
                    created_at = '270000-01-01T00:00:00Z' WHERE id = $1",
        )
        .bind(id)
        .execute(&db.pool)
        .await?;
    }
    let other = RawRow::ticket(&format!("other:{}", Uuid::now_v7()))
        .insert(&db.pool)
        .await?;
    let log = log_path("delivery-engine-far-future");
    let mut relay = RelayProcess::start(&db, &broker, &SHORT_LEASE, &log)?;
    let delivered = consumer.wait_for(&[other], Duration::from_secs(15)).await;
    let exited = relay.child.try_wait()?;
    // The settle that makes it dead commits just after the other event's confirm.
    if let Ok(id) = &far {
        let _ = wait_until(Duration::from_secs(10), "the far row settled", || async {
            Ok(row_state(&db.pool, *id).await?.0 != "pending")
        })
        .await;
    }
    let far_state = match &far {
        Ok(id) => Some(row_state(&db.pool, *id).await?),
        Err(_) => None,
    };
    let panics: Vec<String> = std::fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("overflowed"))
        .map(str::to_owned)
        .collect();
    stop_relay(&mut relay).await?;
    consumer.stop().await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await?;
    assert!(
        exited.is_none(),
        "the relay exited ({exited:?}): {panics:?}"
    );
    assert!(delivered.is_ok(), "the other key's event was not delivered");
    if let Some(state) = far_state {
        assert_eq!(
            state.0, "dead",
            "an unreadable timestamp is a permanent failure"
        );
    }
    Ok(())
}

/// RabbitMQ refuses a content header frame larger than its `frame_max` (131,072 bytes by
/// default) by closing the whole connection (`501 FRAME_ERROR ... frame_too_large`), which
/// would fail every other event of the wave. The relay must refuse such an event before it
/// is sent (dead, with the reason) and deliver the others on their first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_frame_size_fail_only_their_own_event() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let consumer = Consumer::start(&broker.queue).await?;
    let mut row = RawRow::ticket(&format!("big-headers:{}", Uuid::now_v7()));
    row.headers = Some(json!({"big": "x".repeat(300_000)}).to_string());
    let big = row.insert(&db.pool).await; // refusing it at insert is a fine answer too
    let mut others = Vec::new();
    for i in 0..20 {
        let key = format!("other:{i}:{}", Uuid::now_v7());
        others.push(RawRow::ticket(&key).insert(&db.pool).await?);
    }
    let log = log_path("delivery-engine-big-headers");
    let mut flags: Vec<&str> = SHORT_LEASE.to_vec();
    flags.extend(["--max-attempts", "3"]);
    let mut relay = RelayProcess::start(&db, &broker, &flags, &log)?;
    let settled = wait_until(Duration::from_secs(40), "every event settled", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_event_status WHERE status = 'pending'")
                .fetch_one(&db.pool)
                .await?;
        Ok(pending == 0)
    })
    .await;
    let states: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT status, attempts, last_error FROM outbox_event_status WHERE id = ANY($1) ORDER BY seq",
    )
    .bind(&others)
    .fetch_all(&db.pool)
    .await?;
    let big_state = match &big {
        Ok(id) => Some(row_state(&db.pool, *id).await?),
        Err(_) => None,
    };
    stop_relay(&mut relay).await?;
    consumer.stop().await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await?;
    settled?;
    let harmed: Vec<_> = states
        .iter()
        .filter(|(status, attempts, _)| status != "delivered" || *attempts != 1)
        .collect();
    assert!(
        harmed.is_empty(),
        "other keys' events failed beside the oversized headers: {harmed:?}"
    );
    if let Some((status, attempts, error)) = big_state {
        assert_eq!((status.as_str(), attempts), ("dead", 1), "{error:?}");
    }
    Ok(())
}
