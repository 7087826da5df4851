//! The delivery engine's store against real Postgres, without a broker: these tests call
//! `store::claim::claim` and `store::settle::settle` directly and play the relay's part, then
//! assert the exact state of every row they touched (status, `parked`, lease, attempts).
//!
//! Concurrency cases (lock waits, writers holding a key) use separate pool connections with
//! open transactions, and prove a wait by looking at `pg_locks`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use integration_tests::{TestDb, count_status, wait_until};
use outbox_relay::ops::replay::{ReplayRequest, discard, replay};
use outbox_relay::ops::{EventFilter, ReplayableStatus};
use outbox_relay::store::claim::{Claim, claim};
use outbox_relay::store::purge::idle_key_locks;
use outbox_relay::store::settle::{Outcome, Settled, settle};
use outbox_relay::store::stats::{blocked_keys, gauges, report};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use outbox_relay::store::CLAIM_LOCK;

/// A lease long enough that no test sees it expire by accident.
const LEASE: Duration = Duration::from_secs(60);

/// The attempt limit the tests settle with unless they test the limit.
const MAX_ATTEMPTS: u32 = 10;

/// One row of `outbox_events`, the columns the state machine changes, with its lease (from
/// `outbox_leased_events`: leases live in `outbox_leases`, not on the row).
#[derive(Debug, Clone)]
struct Row {
    #[expect(dead_code, reason = "shown in assertion messages")]
    id: Uuid,
    seq: i64,
    status: String,
    parked: bool,
    attempts: i32,
    claim_token: Option<Uuid>,
    locked_by: Option<String>,
    locked_until: Option<DateTime<Utc>>,
    available_at: DateTime<Utc>,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for Row {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            id: row.try_get("id")?,
            seq: row.try_get("seq")?,
            status: row.try_get("status")?,
            parked: row.try_get("parked")?,
            attempts: row.try_get("attempts")?,
            claim_token: row.try_get("claim_token")?,
            locked_by: row.try_get("locked_by")?,
            locked_until: row.try_get("locked_until")?,
            available_at: row.try_get("available_at")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at")?,
        })
    }
}

impl Row {
    /// Pending, not leased, no attempt recorded.
    fn assert_fresh(&self, parked: bool) {
        assert_eq!(self.status, "pending", "{self:?}");
        assert_eq!(self.parked, parked, "{self:?}");
        assert_eq!(self.attempts, 0, "{self:?}");
        self.assert_unleased();
        assert_eq!(self.last_error, None, "{self:?}");
        assert_eq!(self.delivered_at, None, "{self:?}");
    }

    /// No lease at all.
    fn assert_unleased(&self) {
        assert_eq!(self.claim_token, None, "{self:?}");
        assert_eq!(self.locked_by, None, "{self:?}");
        assert_eq!(self.locked_until, None, "{self:?}");
    }

    /// Pending and leased under `token` by `relay`.
    fn assert_leased(&self, token: Uuid, relay: &str) {
        assert_eq!(self.status, "pending", "{self:?}");
        assert_eq!(self.claim_token, Some(token), "{self:?}");
        assert_eq!(self.locked_by.as_deref(), Some(relay), "{self:?}");
        assert!(self.locked_until.is_some(), "{self:?}");
    }

    /// Delivered after `attempts` attempts, lease and error cleared.
    fn assert_delivered(&self, attempts: i32) {
        assert_eq!(self.status, "delivered", "{self:?}");
        assert_eq!(self.attempts, attempts, "{self:?}");
        assert!(self.delivered_at.is_some(), "{self:?}");
        assert_eq!(self.last_error, None, "{self:?}");
        self.assert_unleased();
    }
}

/// Reads one row.
async fn row(pool: &PgPool, id: Uuid) -> Result<Row> {
    Ok(sqlx::query_as(
        "SELECT s.id, s.seq, s.status, s.parked, s.attempts, s.lease_token AS claim_token,
                s.leased_by AS locked_by, s.leased_until AS locked_until,
                COALESCE(s.due_at, s.available_at) AS available_at, s.last_error, s.delivered_at
           FROM outbox_event_status s
          WHERE s.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}

/// Reads rows, in the order of `ids`.
async fn rows(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(row(pool, *id).await?);
    }
    Ok(out)
}

/// Writes one event by plain SQL (as a service in another language would) on `conn`, which
/// may be inside an open transaction; returns its id.
async fn emit_on(conn: &mut PgConnection, key: Option<&str>) -> Result<Uuid> {
    let payload = serde_json::json!({
        "ticketId": Uuid::now_v7(),
        "tenantId": Uuid::now_v7(),
    });
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         VALUES ('TICKET_CREATED', $1, $2) RETURNING id",
    )
    .bind(payload)
    .bind(key)
    .fetch_one(conn)
    .await?)
}

/// Writes one event on `key` in its own transaction.
async fn emit(pool: &PgPool, key: &str) -> Result<Uuid> {
    let mut conn = pool.acquire().await?;
    emit_on(&mut conn, Some(key)).await
}

/// Writes `n` events on `key`, each in its own transaction; returns them in seq order.
async fn emit_n(pool: &PgPool, key: &str, n: usize) -> Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(emit(pool, key).await?);
    }
    Ok(ids)
}

/// The claimed event ids in the order they were written (the tests write one event per
/// transaction). A claim returns its events in seq order, checked here: each scope's in its
/// order; events of different scopes by partition (`seq % 16`), not as they were written.
fn ids(claim: &Claim) -> Vec<Uuid> {
    assert!(
        claim.events.windows(2).all(|w| w[0].seq < w[1].seq),
        "a claim's events come in seq order"
    );
    let mut events: Vec<_> = claim.events.iter().collect();
    events.sort_by_key(|e| (e.created_at, e.seq));
    events.iter().map(|e| e.id).collect()
}

/// The same outcome for every event of a claim.
fn all(claim: &Claim, outcome: &Outcome) -> Vec<(Uuid, Outcome)> {
    claim
        .events
        .iter()
        .map(|e| (e.id, outcome.clone()))
        .collect()
}

fn failed(retry_in: Duration) -> Outcome {
    Outcome::Failed {
        error: "nack from the broker".to_owned(),
        retry_in,
    }
}

fn rejected() -> Outcome {
    Outcome::Rejected {
        error: "message too large".to_owned(),
    }
}

/// Backends of this database waiting for a lock of `locktype` (`advisory`, `transactionid`,
/// `tuple`, ...).
async fn waiting_for(pool: &PgPool, locktype: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE NOT l.granted AND l.locktype = $1 AND a.datname = current_database()",
    )
    .bind(locktype)
    .fetch_one(pool)
    .await?)
}

/// Waits until some backend of this database waits for a lock of `locktype`.
async fn until_waiting(pool: &PgPool, locktype: &str) -> Result<()> {
    wait_until(
        Duration::from_secs(10),
        &format!("a backend waiting for a {locktype} lock"),
        || async { Ok(waiting_for(pool, locktype).await? > 0) },
    )
    .await
}

/// Keys listed in `outbox_key_recheck` (the rows name ordering scopes; these tests write
/// no tenant, so each is `-/<key>`, returned as the key).
async fn rechecks(pool: &PgPool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT regexp_replace(ordering_key, '^-/', '') FROM outbox_key_recheck ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// Keys with a row in `outbox_key_locks` (scopes without a tenant, as keys).
async fn key_locks(pool: &PgPool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT regexp_replace(ordering_key, '^-/', '') FROM outbox_key_locks ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// A transaction on its own pool connection holding the claim lock (`shared` as a settle or
/// an operator change does, else exclusively as a claim does).
async fn hold_claim_lock(pool: &PgPool, shared: bool) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    let statement = if shared {
        "SELECT pg_advisory_xact_lock_shared($1)::text"
    } else {
        "SELECT pg_advisory_xact_lock($1)::text"
    };
    sqlx::query(statement)
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// A claim run in its own task.
fn spawn_claim(
    pool: &PgPool,
    relay: &'static str,
    limit: u32,
    lease: Duration,
) -> tokio::task::JoinHandle<Result<Claim, sqlx::Error>> {
    let pool = pool.clone();
    tokio::spawn(async move { claim(&pool, relay, limit, lease).await })
}

fn dead_filter(filter: EventFilter) -> ReplayRequest {
    ReplayRequest {
        status: ReplayableStatus::Dead,
        filter,
        limit: None,
        all: false,
    }
}

// 1 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_heads_first_then_runs_and_never_a_follower_without_its_predecessors()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    // Key by key, so seq order alone would fill a small claim with the first key only.
    let mut by_key: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for key in ["k1", "k2", "k3"] {
        by_key.insert(key, emit_n(pool, key, 5).await?);
    }
    let in_seq: Vec<Uuid> = by_key.values().flatten().copied().collect();
    for events in by_key.values() {
        let states = rows(pool, events).await?;
        states[0].assert_fresh(false);
        for follower in &states[1..] {
            follower.assert_fresh(true);
        }
    }

    // One large claim: every event, heads and their whole runs, in seq order.
    let everything = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&everything), in_seq);
    assert!(everything.undecodable.is_empty());
    assert!(everything.events.windows(2).all(|w| w[0].seq < w[1].seq));
    for state in rows(pool, &in_seq).await? {
        state.assert_leased(everything.token, "relay-a");
        assert_eq!(state.attempts, 0);
    }
    // Released unpublished: back to unleased, attempts untouched, parked flags unchanged.
    let released = settle(
        pool,
        everything.token,
        MAX_ATTEMPTS,
        &all(&everything, &Outcome::Released),
    )
    .await?;
    assert_eq!(
        released,
        Settled {
            released: 15,
            ..Settled::default()
        }
    );
    for events in by_key.values() {
        let states = rows(pool, events).await?;
        states[0].assert_fresh(false);
        for follower in &states[1..] {
            follower.assert_fresh(true);
        }
    }

    // Limit 4: the three heads first, then one event of a run (k1's second).
    let first = claim(pool, "relay-a", 4, LEASE).await?;
    let expected = vec![
        by_key["k1"][0],
        by_key["k1"][1],
        by_key["k2"][0],
        by_key["k3"][0],
    ];
    assert_eq!(ids(&first), expected, "heads first, then k1's run");
    let outcomes = all(&first, &Outcome::Delivered);
    settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;

    // Round after round of limit 4: every claim takes a prefix of each key's remaining
    // events, includes the head of every key that has events left, and never an event whose
    // predecessor is neither delivered nor in the same claim.
    let position: HashMap<Uuid, (&str, usize)> = by_key
        .iter()
        .flat_map(|(key, events)| {
            events
                .iter()
                .enumerate()
                .map(move |(i, id)| (*id, (*key, i)))
        })
        .collect();
    let mut next: HashMap<&str, usize> = HashMap::from([("k1", 2), ("k2", 1), ("k3", 1)]);
    let mut rounds = 1;
    loop {
        let batch = claim(pool, "relay-a", 4, LEASE).await?;
        if batch.is_empty() {
            break;
        }
        rounds += 1;
        assert!(batch.len() <= 4, "{} events", batch.len());
        let mut taken: HashMap<&str, Vec<usize>> = HashMap::new();
        for event in &batch.events {
            let (key, i) = position[&event.id];
            taken.entry(key).or_default().push(i);
        }
        for (&key, events) in &by_key {
            let start = next[key];
            let got = taken.remove(key).unwrap_or_default();
            if start < events.len() {
                assert_eq!(got.first(), Some(&start), "head of {key} not claimed first");
            }
            let prefix: Vec<usize> = (start..start + got.len()).collect();
            assert_eq!(got, prefix, "{key}: not a run from its head");
            next.insert(key, start + got.len());
        }
        let outcomes = all(&batch, &Outcome::Delivered);
        let settled = settle(pool, batch.token, MAX_ATTEMPTS, &outcomes).await?;
        assert_eq!(settled.delivered, batch.len() as u64);
        assert!(rounds < 10, "too many rounds");
    }
    assert_eq!(rounds, 4, "15 events in claims of 4");
    for state in rows(pool, &in_seq).await? {
        state.assert_delivered(1);
    }
    // The delivery order within each key is seq order.
    for events in by_key.values() {
        let states = rows(pool, events).await?;
        assert!(
            states
                .windows(2)
                .all(|w| w[0].delivered_at <= w[1].delivered_at),
            "{states:?}"
        );
    }
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_heads_alone_fill_a_claim_the_oldest_come_with_runs() -> Result<()> {
    use outbox_relay::store::claim::RUN_DEPTH;
    let db = TestDb::new().await?;
    let pool = &db.pool;
    // Ten keys of six events each, written key by key: ten heads for a claim of eight.
    let mut keys = Vec::new();
    for n in 0..10 {
        keys.push(emit_n(pool, &format!("k{n}"), 6).await?);
    }
    let limit = 8;
    let batch = claim(pool, "relay-a", limit, LEASE).await?;
    // The two oldest heads (8 / RUN_DEPTH) with runs of three behind each.
    let leading = (limit as usize).div_ceil(RUN_DEPTH);
    let share = (limit as usize - leading) / leading;
    let expected: Vec<Uuid> = keys[..leading]
        .iter()
        .flat_map(|events| events[..=share].iter().copied())
        .collect();
    assert_eq!(ids(&batch), expected);

    // Delivered: each key's next head is unparked once; the next claim goes on in seq order
    // within every key and never skips a predecessor.
    settle(
        pool,
        batch.token,
        MAX_ATTEMPTS,
        &all(&batch, &Outcome::Delivered),
    )
    .await?;
    let next = claim(pool, "relay-a", limit, LEASE).await?;
    let delivered: HashSet<Uuid> = expected.iter().copied().collect();
    for event in &next.events {
        let key = keys
            .iter()
            .find(|events| events.contains(&event.id))
            .unwrap();
        let at = key.iter().position(|id| *id == event.id).unwrap();
        assert!(
            key[..at]
                .iter()
                .all(|id| delivered.contains(id) || ids(&next).contains(id)),
            "an event was claimed before one of its predecessors"
        );
    }
    assert_eq!(next.len(), limit as usize);
    db.cleanup().await
}

// 2 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_head_blocks_its_key_for_other_relays() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 3).await?;
    let a = emit_n(pool, "A", 2).await?;
    let b = emit_n(pool, "B", 2).await?;

    let claim_a = claim(pool, "relay-a", 1, LEASE).await?;
    assert_eq!(ids(&claim_a), vec![k[0]]);

    let claim_b = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&claim_b), vec![a[0], a[1], b[0], b[1]]);
    assert_ne!(claim_a.token, claim_b.token);

    row(pool, k[0])
        .await?
        .assert_leased(claim_a.token, "relay-a");
    for state in rows(pool, &k[1..]).await? {
        state.assert_fresh(true);
    }
    for state in rows(pool, &[a.clone(), b.clone()].concat()).await? {
        state.assert_leased(claim_b.token, "relay-b");
    }
    // Still nothing of K for anyone while its head is leased.
    let claim_c = claim(pool, "relay-c", 100, LEASE).await?;
    assert!(claim_c.is_empty(), "{:?}", ids(&claim_c));

    // Once relay A releases the head, K flows again (head and run together).
    settle(
        pool,
        claim_a.token,
        MAX_ATTEMPTS,
        &all(&claim_a, &Outcome::Released),
    )
    .await?;
    let claim_d = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&claim_d), k);
    db.cleanup().await
}

// 3 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_the_head_delivered_unparks_the_next_event_of_its_key() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 3).await?;
    let parked = |states: &[Row]| states.iter().map(|s| s.parked).collect::<Vec<_>>();
    assert_eq!(parked(&rows(pool, &k).await?), [false, true, true]);

    let head = claim(pool, "relay-a", 1, LEASE).await?;
    assert_eq!(ids(&head), vec![k[0]]);
    assert_eq!(parked(&rows(pool, &k).await?), [false, true, true]);

    let settled = settle(
        pool,
        head.token,
        MAX_ATTEMPTS,
        &all(&head, &Outcome::Delivered),
    )
    .await?;
    assert_eq!(
        settled,
        Settled {
            delivered: 1,
            ..Settled::default()
        }
    );
    let states = rows(pool, &k).await?;
    states[0].assert_delivered(1);
    states[1].assert_fresh(false);
    states[2].assert_fresh(true);
    assert!(rechecks(pool).await?.is_empty());

    let rest = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&rest), vec![k[1], k[2]]);
    let states = rows(pool, &k).await?;
    states[1].assert_leased(rest.token, "relay-b");
    states[2].assert_leased(rest.token, "relay-b");
    assert_eq!(
        parked(&states[1..]),
        [false, true],
        "leasing keeps the flags"
    );

    settle(
        pool,
        rest.token,
        MAX_ATTEMPTS,
        &all(&rest, &Outcome::Delivered),
    )
    .await?;
    for state in rows(pool, &k).await? {
        state.assert_delivered(1);
    }
    assert!(claim(pool, "relay-a", 100, LEASE).await?.is_empty());
    // A new event on K is now its head: born unparked.
    let late = emit(pool, "K").await?;
    row(pool, late).await?.assert_fresh(false);
    db.cleanup().await
}

// 4 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_back_off_then_die_and_rejections_die_at_once() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 3).await?;
    let j = emit(pool, "J").await?;

    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), vec![k[0], k[1], k[2], j]);
    // The relay publishes K's head, it fails; K's later events are released unpublished.
    let outcomes = vec![
        (k[0], failed(Duration::from_secs(3600))),
        (k[1], Outcome::Released),
        (k[2], Outcome::Released),
        (j, rejected()),
    ];
    let before: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    let settled = settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;
    assert_eq!(
        settled,
        Settled {
            retrying: 1,
            dead: 1,
            released: 2,
            ..Settled::default()
        }
    );
    let head = row(pool, k[0]).await?;
    assert_eq!(head.status, "pending");
    assert!(head.parked, "a failed event is parked while it backs off");
    assert_eq!(head.attempts, 1);
    assert_eq!(head.last_error.as_deref(), Some("nack from the broker"));
    head.assert_unleased();
    let delay = (head.available_at - before).num_seconds();
    assert!((3590..=3610).contains(&delay), "retry in {delay} s");
    for state in rows(pool, &k[1..]).await? {
        state.assert_fresh(true);
    }
    // Rejected: dead at once, after a single attempt.
    let dead = row(pool, j).await?;
    assert_eq!(dead.status, "dead");
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.last_error.as_deref(), Some("message too large"));
    dead.assert_unleased();

    // Nothing of K is claimable while its head backs off.
    let nothing = claim(pool, "relay-a", 100, LEASE).await?;
    assert!(nothing.is_empty(), "{:?}", ids(&nothing));

    // The backoff is over: the head comes back with its run; the limit of 2 attempts is hit.
    sqlx::query("UPDATE outbox_attempts SET next_attempt_at = now() WHERE event_id = $1")
        .bind(k[0])
        .execute(pool)
        .await?;
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), k);
    assert_eq!(second.events[0].attempts, 1);
    let outcomes = vec![
        (k[0], failed(Duration::from_secs(3600))),
        (k[1], Outcome::Released),
        (k[2], Outcome::Released),
    ];
    let settled = settle(pool, second.token, 2, &outcomes).await?;
    assert_eq!(
        settled,
        Settled {
            dead: 1,
            released: 2,
            ..Settled::default()
        }
    );
    let head = row(pool, k[0]).await?;
    assert_eq!(head.status, "dead");
    assert_eq!(head.attempts, 2);
    assert_eq!(head.last_error.as_deref(), Some("nack from the broker"));
    head.assert_unleased();
    for state in rows(pool, &k[1..]).await? {
        state.assert_fresh(true);
    }
    let nothing = claim(pool, "relay-a", 100, LEASE).await?;
    assert!(nothing.is_empty(), "{:?}", ids(&nothing));
    assert_eq!(count_status(pool, "dead").await?, 2);
    db.cleanup().await
}

// 5 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_head_blocks_its_key_until_discarded_while_other_keys_flow() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 3).await?;
    let l = emit_n(pool, "L", 2).await?;

    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), [k.clone(), l.clone()].concat());
    let outcomes = vec![
        (k[0], rejected()),
        (k[1], Outcome::Released),
        (k[2], Outcome::Released),
        (l[0], Outcome::Delivered),
        (l[1], Outcome::Delivered),
    ];
    settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;

    // Other keys flow past the dead head.
    let l3 = emit(pool, "L").await?;
    row(pool, l3).await?.assert_fresh(false);
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), vec![l3]);
    settle(
        pool,
        second.token,
        MAX_ATTEMPTS,
        &all(&second, &Outcome::Delivered),
    )
    .await?;

    let blocked = blocked_keys(pool, 10, false).await?;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    let key = &blocked[0];
    assert_eq!(key.ordering_key, "K");
    assert_eq!(key.head_id, k[0]);
    assert_eq!(key.event_type, "TICKET_CREATED");
    assert_eq!(key.status, "dead");
    assert_eq!(key.attempts, 1);
    assert_eq!(key.last_error.as_deref(), Some("message too large"));
    assert_eq!(key.retry_at, None);
    assert_eq!(key.waiting, 2);

    // The operator discards the dead head: K's next event is its head and goes out.
    let report = discard(
        pool,
        &dead_filter(EventFilter::default().ordering_key("K")?),
        "ops-test",
        false,
    )
    .await?;
    assert_eq!(report.count, 1);
    assert_eq!(report.sample[0].id, k[0]);
    let audit_id = report.audit_id.expect("an audit record");
    let (actor, action, count, event_ids): (String, String, i32, Vec<Uuid>) = sqlx::query_as(
        "SELECT actor, action, event_count, event_ids FROM outbox_replay_audit WHERE id = $1",
    )
    .bind(audit_id)
    .fetch_one(pool)
    .await?;
    assert_eq!(
        (actor.as_str(), action.as_str(), count, event_ids),
        ("ops-test", "discard", 1, vec![k[0]])
    );
    let head = row(pool, k[0]).await?;
    assert_eq!(head.status, "discarded");
    assert!(!head.parked);
    assert_eq!(head.attempts, 1);
    let error = head.last_error.unwrap_or_default();
    assert!(error.contains("discarded by ops-test"), "{error}");
    assert!(error.contains("message too large"), "{error}");
    let states = rows(pool, &k[1..]).await?;
    states[0].assert_fresh(false);
    states[1].assert_fresh(true);
    assert!(blocked_keys(pool, 10, false).await?.is_empty());

    let third = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&third), vec![k[1], k[2]]);
    settle(
        pool,
        third.token,
        MAX_ATTEMPTS,
        &all(&third, &Outcome::Delivered),
    )
    .await?;
    for state in rows(pool, &k[1..]).await? {
        state.assert_delivered(1);
    }
    // A discard of something not dead changes nothing and writes no audit record.
    let again = discard(
        pool,
        &dead_filter(EventFilter {
            ids: vec![k[0], k[1]],
            ..EventFilter::default()
        }),
        "ops-test",
        false,
    )
    .await?;
    assert_eq!((again.count, again.audit_id), (0, None));
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_head_is_pending_again_and_goes_out_first_in_its_key() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let m = emit_n(pool, "M", 3).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    let outcomes = vec![
        (m[0], rejected()),
        (m[1], Outcome::Released),
        (m[2], Outcome::Released),
    ];
    settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;
    assert_eq!(row(pool, m[0]).await?.status, "dead");

    let report = replay(
        pool,
        &dead_filter(EventFilter {
            ids: vec![m[0]],
            ..EventFilter::default()
        }),
        "ops-test",
        false,
    )
    .await?;
    assert_eq!(report.count, 1);
    let action: String = sqlx::query_scalar("SELECT action FROM outbox_replay_audit WHERE id = $1")
        .bind(report.audit_id.expect("an audit record"))
        .fetch_one(pool)
        .await?;
    assert_eq!(action, "replay");
    // Back to a fresh head: attempts reset, error cleared, unparked, unleased.
    let states = rows(pool, &m).await?;
    states[0].assert_fresh(false);
    states[1].assert_fresh(true);
    states[2].assert_fresh(true);

    let second = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(
        ids(&second),
        m,
        "the replayed head first, then its key in order"
    );
    settle(
        pool,
        second.token,
        MAX_ATTEMPTS,
        &all(&second, &Outcome::Delivered),
    )
    .await?;
    for state in rows(pool, &m).await? {
        state.assert_delivered(1);
    }
    db.cleanup().await
}

// 6 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_claims_own_token_settles_its_rows_even_with_one_relay_id() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 2).await?;
    let l = emit(pool, "L").await?;

    // Two replicas configured with the same relay id.
    let one = claim(pool, "relay", 1, LEASE).await?;
    let two = claim(pool, "relay", 100, LEASE).await?;
    assert_ne!(one.token, two.token);
    assert_eq!(ids(&one), vec![k[0]]);
    assert_eq!(ids(&two), vec![l]);
    let before = rows(pool, &[k[0], k[1], l]).await?;
    before[0].assert_leased(one.token, "relay");
    before[2].assert_leased(two.token, "relay");

    // A token nobody holds changes nothing.
    let stranger = settle(
        pool,
        Uuid::now_v7(),
        MAX_ATTEMPTS,
        &[
            (k[0], Outcome::Delivered),
            (k[1], Outcome::Delivered),
            (l, rejected()),
        ],
    )
    .await?;
    assert_eq!(
        stranger,
        Settled {
            lost: 3,
            ..Settled::default()
        }
    );
    let after = rows(pool, &[k[0], k[1], l]).await?;
    assert_eq!(format!("{before:?}"), format!("{after:?}"));

    // Replica two settles everything it thinks it has: only its own row changes.
    let settled = settle(
        pool,
        two.token,
        MAX_ATTEMPTS,
        &[(k[0], Outcome::Delivered), (l, Outcome::Delivered)],
    )
    .await?;
    assert_eq!(
        settled,
        Settled {
            delivered: 1,
            lost: 1,
            ..Settled::default()
        }
    );
    row(pool, k[0]).await?.assert_leased(one.token, "relay");
    row(pool, k[1]).await?.assert_fresh(true);
    row(pool, l).await?.assert_delivered(1);

    // Replica one settles its head; K moves on.
    let settled = settle(
        pool,
        one.token,
        MAX_ATTEMPTS,
        &all(&one, &Outcome::Delivered),
    )
    .await?;
    assert_eq!(settled.delivered, 1);
    row(pool, k[0]).await?.assert_delivered(1);
    row(pool, k[1]).await?.assert_fresh(false);
    db.cleanup().await
}

// 7 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_reaped_and_reclaimed_and_the_old_settle_is_lost() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 2).await?;

    let old = claim(pool, "relay-a", 100, Duration::from_secs(1)).await?;
    assert_eq!(ids(&old), k);
    // Not expired yet: nothing for anyone else.
    assert!(claim(pool, "relay-b", 100, LEASE).await?.is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let new = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&new), k, "the same rows, re-claimed in order");
    assert_ne!(old.token, new.token);
    for state in rows(pool, &k).await? {
        state.assert_leased(new.token, "relay-b");
        assert_eq!(state.attempts, 0);
    }

    // The old owner comes back and settles: nothing changes.
    let late = settle(
        pool,
        old.token,
        MAX_ATTEMPTS,
        &all(&old, &Outcome::Delivered),
    )
    .await?;
    assert_eq!(
        late,
        Settled {
            lost: 2,
            ..Settled::default()
        }
    );
    for state in rows(pool, &k).await? {
        state.assert_leased(new.token, "relay-b");
    }
    let settled = settle(
        pool,
        new.token,
        MAX_ATTEMPTS,
        &all(&new, &Outcome::Delivered),
    )
    .await?;
    assert_eq!(settled.delivered, 2);
    for state in rows(pool, &k).await? {
        state.assert_delivered(1);
    }
    db.cleanup().await
}

// 8 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_deadline_is_taken_after_the_claim_lock_wait() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit(pool, "K").await?;

    let holder = hold_claim_lock(pool, false).await?;
    let started = Instant::now();
    let pending = spawn_claim(pool, "relay-a", 10, Duration::from_secs(5));
    until_waiting(pool, "advisory").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !pending.is_finished(),
        "the claim did not wait for the lock"
    );
    holder.commit().await?;

    let claimed = pending.await??;
    let (returned_at,): (DateTime<Utc>,) = sqlx::query_as("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(ids(&claimed), vec![k]);
    let state = row(pool, k).await?;
    state.assert_leased(claimed.token, "relay-a");
    let left = (state.locked_until.unwrap() - returned_at).num_milliseconds() as f64 / 1000.0;
    assert!(
        (4.5..=5.0).contains(&left),
        "lease left when the claim returned: {left:.3} s (about 3 s means the deadline was \
         taken before the lock wait)"
    );
    db.cleanup().await
}

// 9 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_wait_for_settles_and_settles_wait_for_claims() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 2).await?;

    // A settle (or operator change) in progress holds the lock shared: a claim waits.
    let settling = hold_claim_lock(pool, true).await?;
    let pending = spawn_claim(pool, "relay-a", 1, LEASE);
    until_waiting(pool, "advisory").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "the claim ran during a settle");
    row(pool, k[0]).await?.assert_fresh(false);
    settling.commit().await?;
    let claimed = pending.await??;
    assert_eq!(ids(&claimed), vec![k[0]]);

    // Settles share the lock with each other: a settle is not held up by another one.
    let other_settle = hold_claim_lock(pool, true).await?;
    let released = tokio::time::timeout(
        Duration::from_secs(5),
        settle(
            pool,
            claimed.token,
            MAX_ATTEMPTS,
            &all(&claimed, &Outcome::Released),
        ),
    )
    .await??;
    assert_eq!(released.released, 1);
    other_settle.commit().await?;

    // A claim in progress holds it exclusively: a settle waits, and changes nothing meanwhile.
    let claimed = claim(pool, "relay-a", 1, LEASE).await?;
    assert_eq!(ids(&claimed), vec![k[0]]);
    let claiming = hold_claim_lock(pool, false).await?;
    let settle_task = {
        let pool = pool.clone();
        let outcomes = all(&claimed, &Outcome::Delivered);
        let token = claimed.token;
        tokio::spawn(async move { settle(&pool, token, MAX_ATTEMPTS, &outcomes).await })
    };
    until_waiting(pool, "advisory").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!settle_task.is_finished(), "the settle ran during a claim");
    row(pool, k[0])
        .await?
        .assert_leased(claimed.token, "relay-a");
    claiming.commit().await?;
    let settled = settle_task.await??;
    assert_eq!(settled.delivered, 1);
    row(pool, k[0]).await?.assert_delivered(1);
    row(pool, k[1]).await?.assert_fresh(false);
    db.cleanup().await
}

// 10 -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_holding_the_key_during_a_settle_leaves_a_recheck_for_the_next_claim() -> Result<()>
{
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let head = emit(pool, "K").await?;
    let claimed = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&claimed), vec![head]);

    // A writer inserts on K and stays open: it holds K's key lock; its row is parked behind
    // the (leased, undelivered) head.
    let mut writer = pool.begin().await?;
    let written = emit_on(&mut writer, Some("K")).await?;
    let parked: bool = sqlx::query_scalar("SELECT parked FROM outbox_events WHERE id = $1")
        .bind(written)
        .fetch_one(&mut *writer)
        .await?;
    assert!(parked, "a writer behind an undelivered head is born parked");

    // The settle cannot take K's lock: it notes K for a recheck instead of waiting.
    let settled = tokio::time::timeout(
        Duration::from_secs(5),
        settle(
            pool,
            claimed.token,
            MAX_ATTEMPTS,
            &all(&claimed, &Outcome::Delivered),
        ),
    )
    .await??;
    assert_eq!(settled.delivered, 1);
    row(pool, head).await?.assert_delivered(1);
    assert_eq!(rechecks(pool).await?, vec!["K".to_owned()]);

    // A claim while the writer is still open: the recheck stays, nothing of K is claimed.
    assert!(claim(pool, "relay-a", 100, LEASE).await?.is_empty());
    assert_eq!(rechecks(pool).await?, vec!["K".to_owned()]);

    writer.commit().await?;
    row(pool, written).await?.assert_fresh(true);
    let next = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&next), vec![written]);
    assert!(rechecks(pool).await?.is_empty());
    let state = row(pool, written).await?;
    assert!(!state.parked, "the claim unparked the writer's event");
    state.assert_leased(next.token, "relay-b");
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_after_a_committed_settle_writes_an_unparked_head() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let head = emit(pool, "K").await?;
    let claimed = claim(pool, "relay-a", 100, LEASE).await?;
    settle(
        pool,
        claimed.token,
        MAX_ATTEMPTS,
        &all(&claimed, &Outcome::Delivered),
    )
    .await?;
    row(pool, head).await?.assert_delivered(1);
    assert!(rechecks(pool).await?.is_empty());

    let mut writer = pool.begin().await?;
    let written = emit_on(&mut writer, Some("K")).await?;
    writer.commit().await?;
    row(pool, written).await?.assert_fresh(false);
    let next = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&next), vec![written]);
    db.cleanup().await
}

// 11 -----------------------------------------------------------------------------------------

/// Inserts on `key` in `tx` from a task; returns the transaction and the new row's id.
fn spawn_insert(
    mut tx: Transaction<'static, Postgres>,
    key: &'static str,
) -> tokio::task::JoinHandle<Result<(Transaction<'static, Postgres>, Uuid)>> {
    tokio::spawn(async move {
        let id = emit_on(&mut tx, Some(key)).await?;
        Ok((tx, id))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_key_queue_and_draw_seq_in_commit_order() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;

    // T1 inserts on K first and stays open; T2's insert on K waits for T1's commit.
    let mut t1 = pool.begin().await?;
    let first = emit_on(&mut t1, Some("K")).await?;
    let t2 = pool.begin().await?;
    let second = spawn_insert(t2, "K");
    until_waiting(pool, "transactionid").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "T2 inserted on K while T1 held it");
    // Another key is not held up.
    let other = emit(pool, "other").await?;
    t1.commit().await?;
    let (t2, second) = tokio::time::timeout(Duration::from_secs(5), second).await???;
    t2.commit().await?;
    let (one, two) = (row(pool, first).await?, row(pool, second).await?);
    assert!(two.seq > one.seq, "T2 {} after T1 {}", two.seq, one.seq);
    // (`other` is another scope: its seq comes from its own partition's sequence, and says
    // nothing about when T2 drew.)
    let _ = row(pool, other).await?;
    one.assert_fresh(false);
    two.assert_fresh(true);

    // The reverse: T4's transaction starts first (and writes another key, drawing a seq),
    // but T3 takes K first; T4's insert on K waits and draws a later seq than T3's.
    let mut t4 = pool.begin().await?;
    let t4_other = emit_on(&mut t4, Some("J")).await?;
    let mut t3 = pool.begin().await?;
    let third = emit_on(&mut t3, Some("L")).await?;
    let fourth = spawn_insert(t4, "L");
    until_waiting(pool, "transactionid").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!fourth.is_finished(), "T4 inserted on L while T3 held it");
    t3.commit().await?;
    let (t4, fourth) = tokio::time::timeout(Duration::from_secs(5), fourth).await???;
    t4.commit().await?;
    let (three, four) = (row(pool, third).await?, row(pool, fourth).await?);
    let _ = row(pool, t4_other).await?;
    assert!(
        four.seq > three.seq,
        "T4 {} after T3 {}",
        four.seq,
        three.seq
    );
    three.assert_fresh(false);
    four.assert_fresh(true);

    // A writer that rolls back releases the key; the waiter's row is then the head.
    let mut t5 = pool.begin().await?;
    let _rolled_back = emit_on(&mut t5, Some("M")).await?;
    let t6 = pool.begin().await?;
    let sixth = spawn_insert(t6, "M");
    until_waiting(pool, "transactionid").await?;
    t5.rollback().await?;
    let (t6, sixth) = tokio::time::timeout(Duration::from_secs(5), sixth).await???;
    t6.commit().await?;
    row(pool, sixth).await?.assert_fresh(false);

    // Claims see K and L each in commit order.
    let claimed = claim(pool, "relay-a", 100, LEASE).await?;
    let of = |key: &str| -> Vec<Uuid> {
        claimed
            .events
            .iter()
            .filter(|e| e.ordering_key.as_deref() == Some(key))
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(of("K"), vec![first, second]);
    assert_eq!(of("L"), vec![third, fourth]);
    db.cleanup().await
}

// 12 -----------------------------------------------------------------------------------------

fn sql_state(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_by_plain_sql_are_completed_and_checked_by_the_database() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let entry = catalog_types::registry()
        .by_event_type("TICKET_CREATED")
        .expect("TICKET_CREATED in the catalog");

    type Filled = (Uuid, i64, String, String, String, bool, String, i32);
    let insert = "INSERT INTO outbox_events (event_type, payload, ordering_key)
                  VALUES ('TICKET_CREATED', '{\"ticketId\": \"0190c7a6-0000-7000-8000-000000000001\", \"tenantId\": \"0190c7a6-0000-7000-8000-000000000002\"}', 'k')
                  RETURNING id, seq, schema_ref, category, dedupe_key, parked, status, attempts";
    let first: Filled = sqlx::query_as(insert).fetch_one(pool).await?;
    let (id, seq, schema_ref, category, dedupe_key, parked, status, attempts) = first.clone();
    assert_eq!(schema_ref, "payload.TicketCreated.v1");
    assert_eq!(schema_ref, entry.schema_ref);
    assert_eq!(category, "Tickets");
    assert_eq!(category, entry.category.name());
    assert_eq!(dedupe_key, id.to_string());
    assert!(seq > 0);
    assert!(!parked);
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert_eq!(key_locks(pool).await?, vec!["k".to_owned()]);
    // The second row of the key: a later seq, parked behind the first.
    let second: Filled = sqlx::query_as(insert).fetch_one(pool).await?;
    assert!(second.1 > seq);
    assert!(second.5, "the second event of 'k' is parked");
    assert_eq!(second.4, second.0.to_string());
    // Without a key: unparked, no key lock.
    let unkeyed: (Option<String>, bool) = sqlx::query_as(
        "INSERT INTO outbox_events (event_type, payload)
         VALUES ('TICKET_CREATED', '{\"ticketId\": \"0190c7a6-0000-7000-8000-000000000003\"}')
         RETURNING ordering_key, parked",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(unkeyed, (None, false));
    assert_eq!(key_locks(pool).await?, vec!["k".to_owned()]);
    // Columns a writer may not set are reset by the trigger.
    let forged: (bool, Option<Uuid>, Option<String>) = sqlx::query_as(
        "INSERT INTO outbox_events (event_type, payload, ordering_key, parked, claim_token, locked_by, locked_until)
         VALUES ('TICKET_CREATED', '{}', 'forged', true, gen_random_uuid(), 'me', now() + interval '1 hour')
         RETURNING parked, claim_token, locked_by",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(forged, (false, None, None));

    // Unknown event types are refused, even with a schema ref and category given.
    let unknown = sqlx::query(
        "INSERT INTO outbox_events (event_type, schema_ref, category, payload, ordering_key)
         VALUES ('NOT_IN_THE_CATALOG', 'payload.NotInTheCatalog.v1', 'Tickets', '{}', 'k')",
    )
    .execute(pool)
    .await
    .expect_err("unknown event type accepted");
    assert_eq!(sql_state(&unknown).as_deref(), Some("23503"), "{unknown}");
    assert!(
        unknown.to_string().contains("unknown event type"),
        "{unknown}"
    );
    // A schema ref or category that contradicts the catalog is refused too.
    for (schema_ref, category) in [
        ("payload.TicketUpdated.v1", "Tickets"),
        ("payload.TicketCreated.v1", "Billing"),
    ] {
        let wrong = sqlx::query(
            "INSERT INTO outbox_events (event_type, schema_ref, category, payload)
             VALUES ('TICKET_CREATED', $1, $2, '{}')",
        )
        .bind(schema_ref)
        .bind(category)
        .execute(pool)
        .await
        .expect_err("contradicting catalog data accepted");
        assert_eq!(sql_state(&wrong).as_deref(), Some("23514"), "{wrong}");
    }

    // An event's place in its key's order never changes.
    let moved = sqlx::query("UPDATE outbox_events SET ordering_key = 'elsewhere' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .expect_err("ordering_key changed");
    assert_eq!(sql_state(&moved).as_deref(), Some("23514"), "{moved}");
    assert!(moved.to_string().contains("cannot change"), "{moved}");
    let unkeyed_moved = sqlx::query("UPDATE outbox_events SET ordering_key = NULL WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .expect_err("ordering_key cleared");
    assert_eq!(sql_state(&unkeyed_moved).as_deref(), Some("23514"));
    // Setting it to the same value is no change and is allowed.
    sqlx::query("UPDATE outbox_events SET ordering_key = 'k' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    let after: Filled = sqlx::query_as(
        "SELECT id, seq, schema_ref, category, dedupe_key, parked, status, attempts
           FROM outbox_events WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    assert_eq!(after, first);
    assert_eq!(db.count_events().await?, 4);
    db.cleanup().await
}

// 13 -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_key_locks_go_only_for_keys_without_open_events_and_never_a_held_one() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let a = emit(pool, "A").await?; // delivered: idle
    let b = emit(pool, "B").await?; // pending
    let c = emit(pool, "C").await?; // dead
    let d = emit(pool, "D").await?; // delivered, but a writer holds the key
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    let outcomes = vec![
        (a, Outcome::Delivered),
        (b, Outcome::Released),
        (c, rejected()),
        (d, Outcome::Delivered),
    ];
    settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;
    row(pool, b).await?.assert_fresh(false);
    assert_eq!(key_locks(pool).await?, ["A", "B", "C", "D"]);

    let mut writer = pool.begin().await?;
    let written = emit_on(&mut writer, Some("D")).await?;
    let purged = tokio::time::timeout(Duration::from_secs(5), idle_key_locks(pool, 100)).await??;
    assert_eq!(purged, 1);
    assert_eq!(key_locks(pool).await?, ["B", "C", "D"]);
    writer.commit().await?;
    row(pool, written).await?.assert_fresh(false);
    // D now has a pending event: its lock stays.
    assert_eq!(idle_key_locks(pool, 100).await?, 0);
    assert_eq!(key_locks(pool).await?, ["B", "C", "D"]);

    // A key whose lock was purged gets it back with its next event, which is its head.
    let again = emit(pool, "A").await?;
    row(pool, again).await?.assert_fresh(false);
    assert_eq!(key_locks(pool).await?, ["A", "B", "C", "D"]);

    // Everything of D delivered: its lock goes; the batch size bounds one call.
    let claimed = claim(pool, "relay-a", 100, LEASE).await?;
    let outcomes: Vec<(Uuid, Outcome)> = claimed
        .events
        .iter()
        .map(|e| (e.id, Outcome::Delivered))
        .collect();
    settle(pool, claimed.token, MAX_ATTEMPTS, &outcomes).await?;
    assert_eq!(count_status(pool, "pending").await?, 0);
    assert_eq!(idle_key_locks(pool, 1).await?, 1);
    assert_eq!(idle_key_locks(pool, 100).await?, 2);
    assert_eq!(key_locks(pool).await?, ["C"], "the dead key keeps its lock");
    db.cleanup().await
}

// 14 -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_count_pending_in_flight_dead_and_blocked() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let empty = gauges(&mut *pool.acquire().await?).await?;
    assert_eq!(
        (
            empty.pending,
            empty.in_flight,
            empty.dead,
            empty.blocked_keys,
            empty.blocked_events
        ),
        (0, 0, 0, 0, 0)
    );
    assert!(empty.oldest_pending_age.abs() < f64::EPSILON);

    let k1 = emit_n(pool, "K1", 3).await?; // dead head, two behind
    let k3 = emit(pool, "K3").await?; // delivered
    let k4 = emit_n(pool, "K4", 2).await?; // head retrying in an hour, one behind
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(first.len(), 6);
    let outcomes = vec![
        (k1[0], rejected()),
        (k1[1], Outcome::Released),
        (k1[2], Outcome::Released),
        (k3, Outcome::Delivered),
        (k4[0], failed(Duration::from_secs(3600))),
        (k4[1], Outcome::Released),
    ];
    settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;
    let k2 = emit_n(pool, "K2", 2).await?; // head in flight, one behind
    let mut conn = pool.acquire().await?;
    let unkeyed = emit_on(&mut conn, None).await?;
    drop(conn);
    let in_flight = claim(pool, "relay-b", 1, LEASE).await?;
    assert_eq!(ids(&in_flight), vec![k2[0]]);
    row(pool, unkeyed).await?.assert_fresh(false);

    let g = gauges(&mut *pool.acquire().await?).await?;
    // Pending: K1's two, K2's two, K4's two, the unkeyed one.
    assert_eq!(g.pending, 7, "{g:?}");
    assert_eq!(g.in_flight, 1, "{g:?}");
    assert_eq!(g.dead, 1, "{g:?}");
    assert_eq!(g.blocked_keys, 1, "only dead heads block: {g:?}");
    assert_eq!(g.blocked_events, 2, "{g:?}");
    assert!(
        g.oldest_pending_age >= 0.0 && g.oldest_pending_age < 60.0,
        "{g:?}"
    );

    // The status report agrees, and lists the retrying key too.
    let status = report(pool, 10).await?;
    assert_eq!(
        (
            status.pending,
            status.in_flight,
            status.retrying,
            status.delivered,
            status.dead,
            status.discarded
        ),
        (7, 1, 1, 1, 1, 0)
    );
    let blocked: Vec<(&str, &str, i64)> = status
        .blocked_keys
        .iter()
        .map(|k| (k.ordering_key.as_str(), k.status.as_str(), k.waiting))
        .collect();
    assert_eq!(blocked, vec![("K1", "dead", 2), ("K4", "retrying", 1)]);
    let retrying = &status.blocked_keys[1];
    assert_eq!(retrying.head_id, k4[0]);
    assert!(retrying.retry_at.is_some_and(|at| at > Utc::now()));

    // Delivering the in-flight head and discarding the dead one empties the blocked figures.
    settle(
        pool,
        in_flight.token,
        MAX_ATTEMPTS,
        &all(&in_flight, &Outcome::Delivered),
    )
    .await?;
    discard(
        pool,
        &dead_filter(EventFilter::default().ordering_key("K1")?),
        "ops-test",
        false,
    )
    .await?;
    let g = gauges(&mut *pool.acquire().await?).await?;
    assert_eq!(
        (
            g.pending,
            g.in_flight,
            g.dead,
            g.blocked_keys,
            g.blocked_events
        ),
        (6, 0, 0, 0, 0),
        "{g:?}"
    );
    db.cleanup().await
}

// Regressions --------------------------------------------------------------------------------

/// A key whose writers' lock was purged (no undelivered event left) gets events back through
/// a replay of delivered events. A settle that later moves its head must still find a
/// key-lock row to take (the replay recreates it; the claim's re-check would too), or an
/// event parked behind the old head would never be unparked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_events_of_a_key_whose_lock_was_purged_all_go_out() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, "K", 2).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    settle(
        pool,
        first.token,
        MAX_ATTEMPTS,
        &all(&first, &Outcome::Delivered),
    )
    .await?;
    assert_eq!(idle_key_locks(pool, 10).await?, 1);
    let replayed = replay(
        pool,
        &ReplayRequest {
            status: ReplayableStatus::Delivered,
            filter: EventFilter::default().ordering_key("K")?,
            limit: None,
            all: false,
        },
        "ops-test",
        false,
    )
    .await?;
    assert_eq!(replayed.count, 2);
    // The head fails and backs off; a claim meanwhile parks the second event behind it.
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), k);
    let outcomes = vec![
        (k[0], failed(Duration::from_secs(3600))),
        (k[1], Outcome::Released),
    ];
    settle(pool, second.token, MAX_ATTEMPTS, &outcomes).await?;
    assert!(claim(pool, "relay-a", 100, LEASE).await?.is_empty());
    assert!(row(pool, k[1]).await?.parked);
    // The retry is due; the head goes out, the second event is released (lease ran short).
    sqlx::query("UPDATE outbox_attempts SET next_attempt_at = now() WHERE event_id = $1")
        .bind(k[0])
        .execute(pool)
        .await?;
    let third = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&third), k);
    let outcomes = vec![(k[0], Outcome::Delivered), (k[1], Outcome::Released)];
    settle(pool, third.token, MAX_ATTEMPTS, &outcomes).await?;
    // Expected: the second event is the key's head now and is claimed.
    let fourth = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(
        ids(&fourth),
        vec![k[1]],
        "stranded: {:?}, rechecks {:?}, key locks {:?}",
        row(pool, k[1]).await?,
        rechecks(pool).await?,
        key_locks(pool).await?
    );
    db.cleanup().await
}

// Failures of events deleted outside the relay ---------------------------------------------

/// A retrying or dead event deleted by hand (or by the application) leaves its failures in
/// `outbox_attempts`; retention forgets them, and an event that failed and was then
/// delivered keeps its count until it is purged with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_forgets_the_failures_of_events_deleted_by_hand() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let dead = emit_n(pool, "D", 1).await?;
    let retrying = emit_n(pool, "R", 1).await?;
    let kept = emit_n(pool, "K", 1).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(first.len(), 3);
    let outcomes = vec![
        (
            dead[0],
            Outcome::Rejected {
                error: "message too large".to_owned(),
            },
        ),
        (retrying[0], failed(Duration::from_secs(3600))),
        (kept[0], failed(Duration::from_secs(3600))),
    ];
    settle(pool, first.token, MAX_ATTEMPTS, &outcomes).await?;
    sqlx::query("DELETE FROM outbox_events WHERE id = ANY($1)")
        .bind([dead[0], retrying[0]])
        .execute(pool)
        .await?;
    outbox_relay::store::purge::finished_events(pool, Duration::from_secs(3600), 1000).await?;
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox_attempts")
        .fetch_all(pool)
        .await?;
    assert_eq!(left, kept, "only the failures of an event that exists stay");
    db.cleanup().await
}
