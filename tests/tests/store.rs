//! The delivery engine's store against real Postgres, without a broker: these tests call
//! `store::claim::claim` and `store::settle::settle` directly and play the relay's part, then
//! assert where every event they touched stands (`outbox_event_status`: status, `parked`,
//! the lease of its partition, attempts, when it is due).
//!
//! The engine reads the outbox as 16 partitioned feeds (engine v3, step 4b): a claim leases
//! one partition with work and returns that partition's events only. To reach the events of
//! a given partition, the tests write keys whose partition they compute in SQL
//! (`hashtextextended(outbox_scope(tenant, key), 0) & 15`, see [`keys_in`]).
//!
//! Concurrency cases (lock waits, writers holding a key, partitions locked by a settle) use
//! separate pool connections with open transactions, and prove a wait by looking at
//! `pg_locks`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use integration_tests::{TestDb, count_status, wait_until};
use outbox_relay::engine::lease::{OWNER_LOCK_CLASS, owner_lock_key};
use outbox_relay::ops::replay::{ReplayRequest, discard, replay};
use outbox_relay::ops::{EventFilter, ReplayableStatus};
use outbox_relay::store::claim::{Claim, ClaimedEvent, claim, claim_partitions, claim_within};
use outbox_relay::store::purge::idle_key_locks;
use outbox_relay::store::settle::{Outcome, Settled, settle};
use outbox_relay::store::stats::{blocked_keys, gauges, report};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// A lease long enough that no test sees it expire by accident.
const LEASE: Duration = Duration::from_secs(60);

/// The attempt limit the tests settle with unless they test the limit.
const MAX_ATTEMPTS: u32 = 10;

/// Where one event stands: `outbox_event_status` joined with its row.
#[derive(Debug, Clone)]
struct Row {
    #[expect(dead_code, reason = "shown in assertion messages")]
    id: Uuid,
    seq: i64,
    status: String,
    parked: bool,
    attempts: i32,
    lease_token: Option<Uuid>,
    leased_by: Option<String>,
    leased_until: Option<DateTime<Utc>>,
    due_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    #[expect(dead_code, reason = "shown in assertion messages")]
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
            lease_token: row.try_get("lease_token")?,
            leased_by: row.try_get("leased_by")?,
            leased_until: row.try_get("leased_until")?,
            due_at: row.try_get("due_at")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at")?,
        })
    }
}

impl Row {
    /// Pending, not leased, no attempt recorded; `parked` says whether it is at or behind
    /// its scope's held head.
    fn assert_fresh(&self, parked: bool) {
        assert_eq!(self.status, "pending", "{self:?}");
        assert_eq!(self.parked, parked, "{self:?}");
        assert_eq!(self.attempts, 0, "{self:?}");
        self.assert_unleased();
        assert_eq!(self.last_error, None, "{self:?}");
    }

    /// No lease at all.
    fn assert_unleased(&self) {
        assert_eq!(self.lease_token, None, "{self:?}");
        assert_eq!(self.leased_by, None, "{self:?}");
        assert_eq!(self.leased_until, None, "{self:?}");
    }

    /// Pending and leased (its partition) under `token` by `relay`.
    fn assert_leased(&self, token: Uuid, relay: &str) {
        assert_eq!(self.status, "pending", "{self:?}");
        assert_eq!(self.lease_token, Some(token), "{self:?}");
        assert_eq!(self.leased_by.as_deref(), Some(relay), "{self:?}");
        assert!(self.leased_until.is_some(), "{self:?}");
    }

    /// Delivered after `attempts` attempts, unleased. (No time of delivery is kept per event
    /// on the feed: the partition's row says when its frontier last moved.)
    fn assert_delivered(&self, attempts: i32) {
        assert_eq!(self.status, "delivered", "{self:?}");
        assert_eq!(self.attempts, attempts, "{self:?}");
        assert!(!self.parked, "{self:?}");
        self.assert_unleased();
    }
}

/// Reads one event.
async fn row(pool: &PgPool, id: Uuid) -> Result<Row> {
    Ok(sqlx::query_as(
        "SELECT s.id, e.seq, s.status, s.parked, s.attempts, s.lease_token, s.leased_by,
                s.leased_until, s.due_at, s.last_error, s.delivered_at
           FROM outbox_events e
           JOIN outbox_event_status s ON s.id = e.id
          WHERE e.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}

/// Reads events, in the order of `ids`.
async fn rows(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(row(pool, *id).await?);
    }
    Ok(out)
}

/// `n` ordering keys (without a tenant) whose scope lies in partition `part`, named
/// `<prefix><number>`.
async fn keys_in(pool: &PgPool, part: i64, prefix: &str, n: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT k FROM (SELECT $1 || g AS k, g FROM generate_series(0, 100000) g) s
          WHERE (hashtextextended(outbox_scope(NULL::uuid, k), 0) & 15) = $2
          ORDER BY g LIMIT $3",
    )
    .bind(prefix)
    .bind(part)
    .bind(n)
    .fetch_all(pool)
    .await?)
}

/// One ordering key whose scope lies in partition `part`.
async fn key_in(pool: &PgPool, part: i64, prefix: &str) -> Result<String> {
    Ok(keys_in(pool, part, prefix, 1).await?.remove(0))
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

/// The claimed event ids, in seq order (checked: a claim returns its events so). Events of
/// one partition written one after the other by one writer are in seq order as written.
fn ids(claim: &Claim) -> Vec<Uuid> {
    assert!(
        claim.events.windows(2).all(|w| w[0].seq < w[1].seq),
        "a claim's events come in seq order"
    );
    claim.events.iter().map(|e| e.id).collect()
}

/// The partition a claim leased (it must have leased exactly one).
fn part(claim: &Claim) -> i64 {
    let parts = claim
        .feed
        .as_ref()
        .expect("a partition leased")
        .partitions();
    assert_eq!(parts.len(), 1, "one partition leased");
    let part = parts[0];
    for event in &claim.events {
        assert_eq!(
            event.seq % 16,
            part,
            "a claim returns its partition's events only"
        );
    }
    part
}

/// The same outcome for every event of a claim.
fn all(claim: &Claim, outcome: &Outcome) -> Vec<(Uuid, Outcome)> {
    claim
        .events
        .iter()
        .map(|e| (e.id, outcome.clone()))
        .collect()
}

/// Outcomes for every event of `claim`: `heads` failed (due again at once), the rest
/// released unpublished.
fn failing(claim: &Claim, heads: &[Uuid]) -> Vec<(Uuid, Outcome)> {
    claim
        .events
        .iter()
        .map(|e| {
            if heads.contains(&e.id) {
                (e.id, failed(Duration::ZERO))
            } else {
                (e.id, Outcome::Released)
            }
        })
        .collect()
}

/// Settles every event of `claim` as delivered.
async fn deliver_all(pool: &PgPool, claim: &Claim) -> Result<Settled> {
    Ok(settle(pool, claim, MAX_ATTEMPTS, &all(claim, &Outcome::Delivered)).await?)
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

/// Asserts that no claim finds anything to publish now: claims until none leases a
/// partition, each returning no event (a claim may lease a partition whose new events all
/// belong to held scopes: its settle moves the frontier past them).
async fn assert_nothing_to_claim(pool: &PgPool) -> Result<()> {
    for _ in 0..20 {
        let c = claim(pool, "relay-probe", 100, LEASE).await?;
        if c.feed.is_none() {
            return Ok(());
        }
        assert!(c.is_empty(), "claimed {:?}", ids(&c));
        settle(pool, &c, MAX_ATTEMPTS, &[]).await?;
    }
    panic!("claims kept leasing partitions");
}

/// Claims and delivers until no partition has work; returns every event delivered, in the
/// order of the claims.
async fn drain(pool: &PgPool) -> Result<Vec<ClaimedEvent>> {
    let mut delivered = Vec::new();
    for _ in 0..50 {
        let c = claim(pool, "relay-drain", 100, LEASE).await?;
        if c.feed.is_none() {
            return Ok(delivered);
        }
        deliver_all(pool, &c).await?;
        delivered.extend(c.events);
    }
    panic!("the outbox did not drain");
}

/// Makes the held scope of `key` (no tenant) due now, as if its time had come.
async fn make_due(pool: &PgPool, key: &str) -> Result<()> {
    let changed = sqlx::query(
        "UPDATE outbox_held SET due_at = now() - interval '1 second'
          WHERE scope = outbox_scope(NULL::uuid, $1)",
    )
    .bind(key)
    .execute(pool)
    .await?
    .rows_affected();
    assert_eq!(changed, 1, "{key} is held");
    Ok(())
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

/// Keys with a row in `outbox_key_locks` (scopes without a tenant, as keys), sorted.
async fn key_locks(pool: &PgPool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT regexp_replace(ordering_key, '^-/', '') FROM outbox_key_locks ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

fn sorted(keys: &[&String]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| (*k).clone()).collect();
    keys.sort();
    keys
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
async fn a_claim_takes_one_partition_in_seq_order_and_never_an_event_without_its_predecessors()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    // Three keys of partition 3, five events each, written key by key; one key of
    // partition 11.
    let mut by_key: Vec<(String, Vec<Uuid>)> = Vec::new();
    for key in keys_in(pool, 3, "k", 3).await? {
        let events = emit_n(pool, &key, 5).await?;
        by_key.push((key, events));
    }
    let in_seq: Vec<Uuid> = by_key.iter().flat_map(|(_, e)| e.clone()).collect();
    let other = key_in(pool, 11, "o").await?;
    let others = emit_n(pool, &other, 2).await?;
    for state in rows(pool, &in_seq).await? {
        state.assert_fresh(false);
    }

    // Two claims: each leases one partition and returns its events only, in seq order.
    let one = claim(pool, "relay-a", 100, LEASE).await?;
    let two = claim(pool, "relay-a", 100, LEASE).await?;
    let (p3, p11) = match (part(&one), part(&two)) {
        (3, 11) => (one, two),
        (11, 3) => (two, one),
        parts => panic!("partitions {parts:?}"),
    };
    assert_eq!(ids(&p3), in_seq);
    assert_eq!(ids(&p11), others);
    assert!(p3.undecodable.is_empty());
    for state in rows(pool, &in_seq).await? {
        state.assert_leased(p3.token, "relay-a");
        assert_eq!(state.attempts, 0);
    }
    for state in rows(pool, &others).await? {
        state.assert_leased(p11.token, "relay-a");
    }
    assert!(claim(pool, "relay-b", 100, LEASE).await?.feed.is_none());

    // Partition 11 delivered; partition 3 released unpublished: each key is held at its
    // first event, due at once; nothing counted.
    deliver_all(pool, &p11).await?;
    let released = settle(pool, &p3, MAX_ATTEMPTS, &all(&p3, &Outcome::Released)).await?;
    assert_eq!(
        released,
        Settled {
            released: 15,
            ..Settled::default()
        }
    );
    for state in rows(pool, &in_seq).await? {
        assert_eq!(state.status, "pending", "{state:?}");
        assert!(state.parked, "released: held at its key's head {state:?}");
        assert_eq!(state.attempts, 0, "{state:?}");
        state.assert_unleased();
    }

    // Round after round of limit 4: every claim takes at most 4 events, a prefix of each
    // key's remaining events, in seq order, and never an event whose predecessor is neither
    // delivered nor in the same claim.
    let position: HashMap<Uuid, (usize, usize)> = by_key
        .iter()
        .enumerate()
        .flat_map(|(k, (_, events))| events.iter().enumerate().map(move |(i, id)| (*id, (k, i))))
        .collect();
    let mut next = vec![0_usize; by_key.len()];
    let mut rounds = 0;
    loop {
        let batch = claim(pool, "relay-a", 4, LEASE).await?;
        if batch.feed.is_none() {
            break;
        }
        rounds += 1;
        assert!(rounds < 20, "too many rounds");
        // A claim's walks of due held scopes share its limit with the segment and replays:
        // after a release of 15 events, a claim of 4 returns 4.
        assert!(
            batch.len() <= 4,
            "a claim of 4 returned {} events",
            batch.len()
        );
        let mut taken: HashMap<usize, Vec<usize>> = HashMap::new();
        for event in &batch.events {
            let (k, i) = position[&event.id];
            taken.entry(k).or_default().push(i);
        }
        for (k, start) in next.iter_mut().enumerate() {
            let got = taken.remove(&k).unwrap_or_default();
            let prefix: Vec<usize> = (*start..*start + got.len()).collect();
            assert_eq!(got, prefix, "key {k}: not a run from its head");
            *start += got.len();
        }
        let settled = deliver_all(pool, &batch).await?;
        assert_eq!(settled.delivered, batch.len() as u64);
    }
    assert_eq!(next, vec![5, 5, 5], "every event delivered");
    for state in rows(pool, &[in_seq.clone(), others].concat()).await? {
        state.assert_delivered(1);
    }
    db.cleanup().await
}

// 2 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_partitions_events_are_not_claimed_by_another_relay_until_the_lease_ends()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = key_in(pool, 5, "K").await?;
    let a = key_in(pool, 6, "A").await?;
    let k_events = emit_n(pool, &k, 3).await?;
    let a_events = emit_n(pool, &a, 2).await?;

    // Relay A leases one partition with a claim of one event; relay B gets the other.
    let claim_a = claim(pool, "relay-a", 1, LEASE).await?;
    let claim_b = claim(pool, "relay-b", 100, LEASE).await?;
    assert_ne!(claim_a.token, claim_b.token);
    let (k_claim, k_relay, a_claim) = match part(&claim_a) {
        5 => (&claim_a, "relay-a", &claim_b),
        6 => (&claim_b, "relay-b", &claim_a),
        p => panic!("partition {p}"),
    };
    assert_eq!(part(a_claim), 6);
    if k_relay == "relay-a" {
        assert_eq!(ids(k_claim), vec![k_events[0]]);
        assert_eq!(ids(a_claim), a_events);
    } else {
        assert_eq!(ids(k_claim), k_events);
        assert_eq!(ids(a_claim), vec![a_events[0]]);
    }
    // Every pending event of a leased partition shows its lease, claimed or not.
    for state in rows(pool, &k_events).await? {
        state.assert_leased(k_claim.token, k_relay);
    }
    // Nothing for anyone else while both leases run.
    assert!(claim(pool, "relay-c", 100, LEASE).await?.feed.is_none());

    // Once K's claim is released, K's partition goes to the next claim, K's events in order.
    settle(
        pool,
        k_claim,
        MAX_ATTEMPTS,
        &all(k_claim, &Outcome::Released),
    )
    .await?;
    let claim_c = claim(pool, "relay-c", 100, LEASE).await?;
    assert_eq!(part(&claim_c), 5);
    assert_eq!(ids(&claim_c), k_events);
    for state in rows(pool, &k_events).await? {
        state.assert_leased(claim_c.token, "relay-c");
    }
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_in_a_row_take_different_partitions_while_the_first_is_leased() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let mut written = HashMap::new();
    for p in [2, 9, 14] {
        let key = key_in(pool, p, "P").await?;
        written.insert(p, emit_n(pool, &key, 2).await?);
    }
    let mut leased = HashSet::new();
    let mut claims = Vec::new();
    for _ in 0..3 {
        let c = claim(pool, "relay-a", 100, LEASE).await?;
        let p = part(&c);
        assert!(leased.insert(p), "partition {p} claimed twice while leased");
        assert_eq!(ids(&c), written[&p]);
        claims.push(c);
    }
    assert_eq!(leased, HashSet::from([2, 9, 14]));
    assert!(claim(pool, "relay-a", 100, LEASE).await?.feed.is_none());
    // The leases end with their settles, in any order.
    for c in claims.iter().rev() {
        let settled = settle(pool, c, MAX_ATTEMPTS, &all(c, &Outcome::Delivered)).await?;
        assert_eq!(settled.delivered, 2);
    }
    for events in written.values() {
        for state in rows(pool, events).await? {
            state.assert_delivered(1);
        }
    }
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_relay_is_gone_is_claimed_at_once() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = key_in(pool, 4, "K").await?;
    let events = emit_n(pool, &k, 2).await?;

    // A relay's ownership session: the owner's advisory lock, registered.
    let owner: u32 = 0x0bad_cafe;
    let mut session = db.connect().await?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)::text")
        .bind(OWNER_LOCK_CLASS)
        .bind(owner_lock_key(owner))
        .execute(&mut session)
        .await?;
    sqlx::query("INSERT INTO outbox_relay_owners (owner, relay_id) VALUES ($1, 'relay-a')")
        .bind(owner_lock_key(owner))
        .execute(&mut session)
        .await?;
    let held = claim_within(pool, LEASE, "relay-a", Some(owner), 100, LEASE, 1).await?;
    assert_eq!(ids(&held), events);
    // While the relay lives, its partition stays leased.
    assert!(claim(pool, "relay-b", 100, LEASE).await?.feed.is_none());

    // The relay dies (its session ends): the next claim takes its partition, long before the
    // lease's deadline.
    session.close().await?;
    wait_until(
        Duration::from_secs(10),
        "the owner's lock to be free",
        || async {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1::int4::oid",
            )
            .bind(owner_lock_key(owner))
            .fetch_one(pool)
            .await?;
            Ok(held == 0)
        },
    )
    .await?;
    let taken = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&taken), events);
    for state in rows(pool, &events).await? {
        state.assert_leased(taken.token, "relay-b");
    }
    // The dead relay's settle records nothing.
    let late = deliver_all(pool, &held).await?;
    assert_eq!(
        late,
        Settled {
            lost: 2,
            ..Settled::default()
        }
    );
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_skip_a_partition_whose_row_is_locked_instead_of_waiting() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit(pool, &key_in(pool, 7, "K").await?).await?;
    let l = emit(pool, &key_in(pool, 8, "L").await?).await?;

    // A settle of partition 7 in progress holds its row.
    let mut settling = pool.begin().await?;
    sqlx::query("SELECT part FROM outbox_partitions WHERE part = 7 FOR UPDATE")
        .execute(&mut *settling)
        .await?;
    let other =
        tokio::time::timeout(Duration::from_secs(5), claim(pool, "relay-a", 100, LEASE)).await??;
    assert_eq!(part(&other), 8, "the claim took the free partition");
    assert_eq!(ids(&other), vec![l]);
    let nothing =
        tokio::time::timeout(Duration::from_secs(5), claim(pool, "relay-a", 100, LEASE)).await??;
    assert!(
        nothing.feed.is_none(),
        "partition 7 was skipped, not waited for"
    );
    settling.commit().await?;
    let after = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&after), vec![k]);
    db.cleanup().await
}

// 3 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_the_head_delivered_moves_the_frontier_and_the_next_events_follow() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let key = key_in(pool, 1, "K").await?;
    let k = emit_n(pool, &key, 3).await?;
    for state in rows(pool, &k).await? {
        state.assert_fresh(false);
    }

    let head = claim(pool, "relay-a", 1, LEASE).await?;
    assert_eq!(ids(&head), vec![k[0]]);
    let settled = deliver_all(pool, &head).await?;
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
    states[2].assert_fresh(false);
    let frontier: i64 = sqlx::query_scalar("SELECT frontier FROM outbox_partitions WHERE part = 1")
        .fetch_one(pool)
        .await?;
    assert_eq!(frontier, states[0].seq);

    let rest = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&rest), vec![k[1], k[2]]);
    deliver_all(pool, &rest).await?;
    for state in rows(pool, &k).await? {
        state.assert_delivered(1);
    }
    assert_nothing_to_claim(pool).await?;
    // A new event on K is pending, not held, and goes out with the next claim.
    let late = emit(pool, &key).await?;
    row(pool, late).await?.assert_fresh(false);
    let next = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&next), vec![late]);
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_event_goes_again_at_the_next_claim() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let key = key_in(pool, 10, "K").await?;
    let k = emit_n(pool, &key, 2).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), k);
    // The head is released (the lease ran short); the event after it has no outcome at all
    // (counts as released).
    let settled = settle(pool, &first, MAX_ATTEMPTS, &[(k[0], Outcome::Released)]).await?;
    assert_eq!(
        settled,
        Settled {
            released: 1,
            ..Settled::default()
        }
    );
    for state in rows(pool, &k).await? {
        assert_eq!(state.status, "pending", "{state:?}");
        assert_eq!(state.attempts, 0, "{state:?}");
        assert_eq!(state.last_error, None, "{state:?}");
        state.assert_unleased();
    }
    let head = row(pool, k[0]).await?;
    assert!(
        head.due_at
            .is_some_and(|at| at <= Utc::now() + chrono::Duration::seconds(1))
    );

    let again = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&again), k, "the same events, in order");
    assert_eq!(again.events[0].attempts, 0, "a release is no attempt");
    deliver_all(pool, &again).await?;
    for state in rows(pool, &k).await? {
        state.assert_delivered(1);
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_held")
        .fetch_one(pool)
        .await?;
    assert_eq!(held, 0, "a walk delivered to its end lets its scope go");
    db.cleanup().await
}

// 4 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_back_off_then_die_and_rejections_die_at_once() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 12, "K", 2).await?;
    let k = emit_n(pool, &keys[0], 3).await?;
    let j = emit(pool, &keys[1]).await?;

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
    let settled = settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
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
    assert!(
        head.parked,
        "a failed head holds its key while it backs off"
    );
    assert_eq!(head.attempts, 1);
    assert_eq!(head.last_error.as_deref(), Some("nack from the broker"));
    head.assert_unleased();
    let delay = (head.due_at.expect("a next try") - before).num_seconds();
    assert!((3590..=3610).contains(&delay), "retry in {delay} s");
    for state in rows(pool, &k[1..]).await? {
        state.assert_fresh(true);
    }
    // Rejected: dead at once, after a single attempt.
    let dead = row(pool, j).await?;
    assert_eq!(dead.status, "dead");
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.last_error.as_deref(), Some("message too large"));
    assert_eq!(dead.due_at, None);
    dead.assert_unleased();

    // Nothing of K is claimable while its head backs off.
    assert_nothing_to_claim(pool).await?;

    // The backoff is over: the head comes back with the rest of its key; the limit of 2
    // attempts is hit.
    make_due(pool, &keys[0]).await?;
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), k);
    assert_eq!(second.events[0].attempts, 1);
    let outcomes = vec![
        (k[0], failed(Duration::from_secs(3600))),
        (k[1], Outcome::Released),
        (k[2], Outcome::Released),
    ];
    let settled = settle(pool, &second, 2, &outcomes).await?;
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
    assert_eq!(head.due_at, None);
    head.assert_unleased();
    for state in rows(pool, &k[1..]).await? {
        state.assert_fresh(true);
    }
    assert_nothing_to_claim(pool).await?;
    assert_eq!(count_status(pool, "dead").await?, 2);
    db.cleanup().await
}

// 5 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_head_blocks_its_key_until_discarded_while_other_keys_flow() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 13, "K", 2).await?;
    let (kk, lk) = (&keys[0], &keys[1]);
    let k = emit_n(pool, kk, 3).await?;
    let l = emit_n(pool, lk, 2).await?;

    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), [k.clone(), l.clone()].concat());
    let outcomes = vec![
        (k[0], rejected()),
        (k[1], Outcome::Released),
        (k[2], Outcome::Released),
        (l[0], Outcome::Delivered),
        (l[1], Outcome::Delivered),
    ];
    settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;

    // Other keys of the same partition flow past the dead head, and so does nothing of K.
    let l3 = emit(pool, lk).await?;
    let k4 = emit(pool, kk).await?;
    row(pool, l3).await?.assert_fresh(false);
    row(pool, k4).await?.assert_fresh(true);
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), vec![l3]);
    deliver_all(pool, &second).await?;
    let k = [k, vec![k4]].concat();

    let blocked = blocked_keys(pool, 10, false).await?;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    let key = &blocked[0];
    assert_eq!(&key.ordering_key, kk);
    assert_eq!(key.head_id, k[0]);
    assert_eq!(key.event_type, "TICKET_CREATED");
    assert_eq!(key.status, "dead");
    assert_eq!(key.attempts, 1);
    assert_eq!(key.last_error.as_deref(), Some("message too large"));
    assert_eq!(key.retry_at, None);
    assert_eq!(key.waiting, 3);

    // The operator discards the dead head: K's next event is its head and goes out.
    let report = discard(
        pool,
        &dead_filter(EventFilter::default().ordering_key(kk)?),
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
    for state in rows(pool, &k[1..]).await? {
        assert_eq!(state.status, "pending", "{state:?}");
        assert_eq!(state.attempts, 0, "{state:?}");
    }
    assert!(blocked_keys(pool, 10, false).await?.is_empty());

    let third = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&third), k[1..].to_vec());
    deliver_all(pool, &third).await?;
    for state in rows(pool, &k[1..]).await? {
        state.assert_delivered(1);
    }
    assert_eq!(row(pool, k[0]).await?.status, "discarded");
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
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_head_is_pending_again_and_goes_out_first_in_its_key() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let key = key_in(pool, 0, "M").await?;
    let m = emit_n(pool, &key, 3).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    let outcomes = vec![
        (m[0], rejected()),
        (m[1], Outcome::Released),
        (m[2], Outcome::Released),
    ];
    settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
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
    // The held head again, due at once: attempts reset, error cleared, unleased.
    let states = rows(pool, &m).await?;
    for state in &states {
        state.assert_fresh(true);
    }
    assert!(states[0].due_at.is_some());

    let second = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(
        ids(&second),
        m,
        "the replayed head first, then its key in order"
    );
    assert_eq!(second.events[0].attempts, 0);
    deliver_all(pool, &second).await?;
    for state in rows(pool, &m).await? {
        state.assert_delivered(1);
    }
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

// 6 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_claims_own_token_settles_its_partition_even_with_one_relay_id() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, &key_in(pool, 2, "K").await?, 2).await?;
    let l = emit(pool, &key_in(pool, 3, "L").await?).await?;

    // Two replicas configured with the same relay id.
    let one = claim(pool, "relay", 100, LEASE).await?;
    let two = claim(pool, "relay", 100, LEASE).await?;
    assert_ne!(one.token, two.token);
    let (kc, lc) = if part(&one) == 2 {
        (one, two)
    } else {
        (two, one)
    };
    assert_eq!(ids(&kc), k);
    assert_eq!(ids(&lc), vec![l]);
    let before = rows(pool, &[k[0], k[1], l]).await?;
    before[0].assert_leased(kc.token, "relay");
    before[2].assert_leased(lc.token, "relay");

    // A token nobody holds changes nothing.
    let mut stranger = kc.clone();
    stranger.token = Uuid::now_v7();
    let settled = settle(
        pool,
        &stranger,
        MAX_ATTEMPTS,
        &[(k[0], Outcome::Delivered), (k[1], rejected())],
    )
    .await?;
    assert_eq!(
        settled,
        Settled {
            lost: 2,
            ..Settled::default()
        }
    );
    let after = rows(pool, &[k[0], k[1], l]).await?;
    assert_eq!(format!("{before:?}"), format!("{after:?}"));

    // L's claim settles outcomes it was given for events of the other partition too: only
    // its own event changes.
    let settled = settle(
        pool,
        &lc,
        MAX_ATTEMPTS,
        &[
            (k[0], failed(Duration::from_secs(60))),
            (l, Outcome::Delivered),
        ],
    )
    .await?;
    // A settle records outcomes only for events of its own claim: another claim's event is
    // left alone (counted lost), its failures unrecorded.
    row(pool, l).await?.assert_delivered(1);
    let k0 = row(pool, k[0]).await?;
    k0.assert_leased(kc.token, "relay");
    assert_eq!(k0.attempts, 0, "{k0:?}");
    assert_eq!(k0.last_error, None, "{k0:?}");
    assert_eq!(
        settled,
        Settled {
            delivered: 1,
            lost: 1,
            ..Settled::default()
        }
    );

    // K's claim settles its events; K moves on.
    let settled = deliver_all(pool, &kc).await?;
    assert_eq!(settled.delivered, 2);
    for state in rows(pool, &k).await? {
        state.assert_delivered(1);
    }
    db.cleanup().await
}

// 7 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_reaped_and_reclaimed_and_the_old_settle_is_lost() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let k = emit_n(pool, &key_in(pool, 15, "K").await?, 2).await?;

    let old = claim(pool, "relay-a", 100, Duration::from_secs(1)).await?;
    assert_eq!(ids(&old), k);
    // Not expired yet: nothing for anyone else.
    assert!(claim(pool, "relay-b", 100, LEASE).await?.feed.is_none());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let new = claim(pool, "relay-b", 100, LEASE).await?;
    assert_eq!(ids(&new), k, "the same events, claimed again in order");
    assert_ne!(old.token, new.token);
    for state in rows(pool, &k).await? {
        state.assert_leased(new.token, "relay-b");
        assert_eq!(state.attempts, 0);
    }

    // The old owner comes back and settles (a failure and a rejection): nothing changes.
    let late = settle(
        pool,
        &old,
        MAX_ATTEMPTS,
        &[(k[0], failed(Duration::from_secs(60))), (k[1], rejected())],
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
        assert_eq!(state.attempts, 0, "{state:?}");
        assert_eq!(state.last_error, None, "{state:?}");
    }
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_attempts")
        .fetch_one(pool)
        .await?;
    assert_eq!(attempts, 0, "a lost settle counts no failure");
    let settled = deliver_all(pool, &new).await?;
    assert_eq!(settled.delivered, 2);
    for state in rows(pool, &k).await? {
        state.assert_delivered(1);
    }
    db.cleanup().await
}

// 8 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_scope_waits_while_other_scopes_of_its_partition_flow() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 6, "H", 2).await?;
    let (kk, lk) = (&keys[0], &keys[1]);
    let mut k = emit_n(pool, kk, 2).await?;
    let l = emit(pool, lk).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), vec![k[0], k[1], l]);
    settle(
        pool,
        &first,
        MAX_ATTEMPTS,
        &[
            (k[0], failed(Duration::from_secs(3600))),
            (k[1], Outcome::Released),
            (l, Outcome::Delivered),
        ],
    )
    .await?;

    // New events of both keys: L's go out, K's wait behind its held head, round after round.
    for _ in 0..2 {
        k.push(emit(pool, kk).await?);
        let l_next = emit(pool, lk).await?;
        let c = claim(pool, "relay-a", 100, LEASE).await?;
        assert_eq!(ids(&c), vec![l_next]);
        deliver_all(pool, &c).await?;
        row(pool, l_next).await?.assert_delivered(1);
    }
    let states = rows(pool, &k).await?;
    assert_eq!(states[0].attempts, 1);
    for state in &states {
        assert_eq!(state.status, "pending", "{state:?}");
        assert!(state.parked, "{state:?}");
    }
    assert_nothing_to_claim(pool).await?;

    // K's head is due: its walk takes all of K, in order, behind the frontier.
    make_due(pool, kk).await?;
    let c = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&c), k);
    deliver_all(pool, &c).await?;
    let states = rows(pool, &k).await?;
    states[0].assert_delivered(2);
    for state in &states[1..] {
        state.assert_delivered(1);
    }
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_holds_its_scope_until_due_while_others_flow() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 9, "S", 2).await?;
    let (kk, lk) = (&keys[0], &keys[1]);
    // K's first event may go in 4 seconds (room for a slow machine); its second is due at
    // once but comes after it.
    let scheduled: Uuid = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key, available_at)
         VALUES ('TICKET_CREATED', '{}', $1, now() + interval '4 seconds') RETURNING id",
    )
    .bind(kk)
    .fetch_one(pool)
    .await?;
    let behind = emit(pool, kk).await?;
    let l = emit(pool, lk).await?;

    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(part(&first), 9);
    assert_eq!(ids(&first), vec![l], "K waits for its scheduled head");
    deliver_all(pool, &first).await?;
    let head = row(pool, scheduled).await?;
    assert_eq!(head.status, "pending");
    assert!(head.parked, "{head:?}");
    assert_eq!(head.attempts, 0);
    assert!(head.due_at.is_some_and(|at| at > Utc::now()), "{head:?}");
    row(pool, behind).await?.assert_fresh(true);
    let status = report(pool, 10).await?;
    let blocked: Vec<(&str, &str, i64)> = status
        .blocked_keys
        .iter()
        .map(|b| (b.ordering_key.as_str(), b.status.as_str(), b.waiting))
        .collect();
    assert_eq!(blocked, vec![(kk.as_str(), "scheduled", 1)]);

    // Others flow meanwhile.
    let l2 = emit(pool, lk).await?;
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), vec![l2]);
    deliver_all(pool, &second).await?;
    assert_nothing_to_claim(pool).await?;

    // Once due, K goes out in order.
    wait_until(
        Duration::from_secs(10),
        "the scheduled head to be due",
        || async {
            let due: bool =
                sqlx::query_scalar("SELECT available_at <= now() FROM outbox_events WHERE id = $1")
                    .bind(scheduled)
                    .fetch_one(pool)
                    .await?;
            Ok(due)
        },
    )
    .await?;
    let third = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&third), vec![scheduled, behind]);
    deliver_all(pool, &third).await?;
    for state in rows(pool, &[scheduled, behind]).await? {
        state.assert_delivered(1);
    }
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

// 9 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_writers_event_is_a_gap_and_goes_out_once_it_commits() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 4, "G", 2).await?;
    // A writer on K stays open; a later event of the same partition (L) is committed.
    let mut writer = pool.begin().await?;
    let written = emit_on(&mut writer, Some(&keys[0])).await?;
    let l = emit(pool, &keys[1]).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), vec![l]);
    deliver_all(pool, &first).await?;
    let gaps: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_gaps WHERE part = 4")
        .fetch_one(pool)
        .await?;
    assert_eq!(gaps, 1, "the open writer's seq is noted as a gap");

    writer.commit().await?;
    let state = row(pool, written).await?;
    assert_eq!(
        state.status, "pending",
        "a gap's event is pending {state:?}"
    );
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), vec![written]);
    deliver_all(pool, &second).await?;
    row(pool, written).await?.assert_delivered(1);
    let gaps: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_gaps")
        .fetch_one(pool)
        .await?;
    assert_eq!(gaps, 0, "a gap read is forgotten");

    // A writer that rolls back leaves a gap that is forgotten once it has ended.
    let mut rolled_back = pool.begin().await?;
    emit_on(&mut rolled_back, Some(&keys[0])).await?;
    let l2 = emit(pool, &keys[1]).await?;
    rolled_back.rollback().await?;
    let third = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&third), vec![l2]);
    deliver_all(pool, &third).await?;
    wait_until(
        Duration::from_secs(10),
        "the gap to be forgotten",
        || async {
            let c = claim(pool, "relay-a", 100, LEASE).await?;
            assert!(c.is_empty(), "{:?}", ids(&c));
            settle(pool, &c, MAX_ATTEMPTS, &[]).await?;
            let gaps: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_gaps")
                .fetch_one(pool)
                .await?;
            Ok(gaps == 0)
        },
    )
    .await?;
    db.cleanup().await
}

// 10 -----------------------------------------------------------------------------------------

/// Inserts on `key` in `tx` from a task; returns the transaction and the new row's id.
fn spawn_insert(
    mut tx: Transaction<'static, Postgres>,
    key: String,
) -> tokio::task::JoinHandle<Result<(Transaction<'static, Postgres>, Uuid)>> {
    tokio::spawn(async move {
        let id = emit_on(&mut tx, Some(&key)).await?;
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
    let second = spawn_insert(t2, "K".to_owned());
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
    assert_eq!(one.seq % 16, two.seq % 16, "a scope lies in one partition");
    // (`other` is another scope: its seq comes from its own partition's sequence, and says
    // nothing about when T2 drew.)
    let _ = row(pool, other).await?;
    one.assert_fresh(false);
    two.assert_fresh(false);

    // The reverse: T4's transaction starts first (and writes another key, drawing a seq),
    // but T3 takes L first; T4's insert on L waits and draws a later seq than T3's.
    let mut t4 = pool.begin().await?;
    let t4_other = emit_on(&mut t4, Some("J")).await?;
    let mut t3 = pool.begin().await?;
    let third = emit_on(&mut t3, Some("L")).await?;
    let fourth = spawn_insert(t4, "L".to_owned());
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
    four.assert_fresh(false);

    // A writer that rolls back releases the key; the waiter's row is then written.
    let mut t5 = pool.begin().await?;
    let _rolled_back = emit_on(&mut t5, Some("M")).await?;
    let t6 = pool.begin().await?;
    let sixth = spawn_insert(t6, "M".to_owned());
    until_waiting(pool, "transactionid").await?;
    t5.rollback().await?;
    let (t6, sixth) = tokio::time::timeout(Duration::from_secs(5), sixth).await???;
    t6.commit().await?;
    row(pool, sixth).await?.assert_fresh(false);

    // Claims (one per partition) deliver K and L each in commit order, and M's event.
    let delivered = drain(pool).await?;
    let of = |key: &str| -> Vec<Uuid> {
        delivered
            .iter()
            .filter(|e| e.ordering_key.as_deref() == Some(key))
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(of("K"), vec![first, second]);
    assert_eq!(of("L"), vec![third, fourth]);
    assert_eq!(of("M"), vec![sixth]);
    assert_eq!(delivered.len(), 7);
    db.cleanup().await
}

// 11 -----------------------------------------------------------------------------------------

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

    type Filled = (Uuid, i64, String, String, String);
    let insert = "INSERT INTO outbox_events (event_type, payload, ordering_key)
                  VALUES ('TICKET_CREATED', '{\"ticketId\": \"0190c7a6-0000-7000-8000-000000000001\", \"tenantId\": \"0190c7a6-0000-7000-8000-000000000002\"}', 'k')
                  RETURNING id, seq, schema_ref, category, dedupe_key";
    let first: Filled = sqlx::query_as(insert).fetch_one(pool).await?;
    let (id, seq, schema_ref, category, dedupe_key) = first.clone();
    assert_eq!(schema_ref, "payload.TicketCreated.v1");
    assert_eq!(schema_ref, entry.schema_ref);
    assert_eq!(category, "Tickets");
    assert_eq!(category, entry.category.name());
    assert_eq!(dedupe_key, id.to_string());
    assert!(seq > 0);
    let k_part: i64 =
        sqlx::query_scalar("SELECT hashtextextended(outbox_scope(NULL::uuid, 'k'), 0) & 15")
            .fetch_one(pool)
            .await?;
    assert_eq!(
        seq % 16,
        k_part,
        "a keyed event's seq names its scope's partition"
    );
    assert_eq!(key_locks(pool).await?, vec!["k".to_owned()]);
    // The second row of the key: a later seq of the same partition; nothing on the row says
    // it waits (the feed keeps the order).
    let second: Filled = sqlx::query_as(insert).fetch_one(pool).await?;
    assert!(second.1 > seq);
    assert_eq!(second.1 % 16, k_part);
    assert_eq!(second.4, second.0.to_string());
    // Without a key: no key lock.
    let unkeyed: Option<String> = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload)
         VALUES ('TICKET_CREATED', '{\"ticketId\": \"0190c7a6-0000-7000-8000-000000000003\"}')
         RETURNING ordering_key",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(unkeyed, None);
    assert_eq!(key_locks(pool).await?, vec!["k".to_owned()]);
    // The one column a writer may name but not choose: seq is drawn by the trigger.
    let drawn: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key, seq)
         VALUES ('TICKET_CREATED', '{}', 'k', 1)
         RETURNING seq",
    )
    .fetch_one(pool)
    .await?;
    assert!(drawn > second.1 && drawn % 16 == k_part, "{drawn}");

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
        "SELECT id, seq, schema_ref, category, dedupe_key FROM outbox_events WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    assert_eq!(after, first);
    assert_eq!(db.count_events().await?, 4);
    db.cleanup().await
}

// 12 -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_key_locks_go_only_for_keys_without_open_events_and_never_a_held_one() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 11, "I", 4).await?;
    let (ka, kb, kc, kd) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let a = emit(pool, ka).await?; // delivered: idle
    let b = emit(pool, kb).await?; // released: held, due
    let c = emit(pool, kc).await?; // dead: held
    let d = emit(pool, kd).await?; // delivered, but a writer holds the key
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&first), vec![a, b, c, d]);
    let outcomes = vec![
        (a, Outcome::Delivered),
        (b, Outcome::Released),
        (c, rejected()),
        (d, Outcome::Delivered),
    ];
    settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
    assert_eq!(row(pool, b).await?.status, "pending");
    assert_eq!(key_locks(pool).await?, sorted(&[ka, kb, kc, kd]));

    let mut writer = pool.begin().await?;
    let written = emit_on(&mut writer, Some(kd)).await?;
    let purged = tokio::time::timeout(Duration::from_secs(5), idle_key_locks(pool, 100)).await??;
    assert_eq!(purged, 1);
    assert_eq!(key_locks(pool).await?, sorted(&[kb, kc, kd]));
    writer.commit().await?;
    row(pool, written).await?.assert_fresh(false);
    // D now has a pending event: its lock stays.
    assert_eq!(idle_key_locks(pool, 100).await?, 0);
    assert_eq!(key_locks(pool).await?, sorted(&[kb, kc, kd]));

    // A key whose lock was purged gets it back with its next event.
    let again = emit(pool, ka).await?;
    row(pool, again).await?.assert_fresh(false);
    assert_eq!(key_locks(pool).await?, sorted(&[ka, kb, kc, kd]));

    // Everything but the dead key delivered: the locks go; the batch size bounds one call.
    let delivered = drain(pool).await?;
    assert_eq!(delivered.len(), 3, "B's walk, D's and A's new events");
    assert_eq!(count_status(pool, "pending").await?, 0);
    assert_eq!(idle_key_locks(pool, 1).await?, 1);
    assert_eq!(idle_key_locks(pool, 100).await?, 2);
    assert_eq!(
        key_locks(pool).await?,
        vec![kc.clone()],
        "the dead key keeps its lock"
    );
    db.cleanup().await
}

// 13 -----------------------------------------------------------------------------------------

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

    let keys = keys_in(pool, 5, "G", 3).await?;
    let (k1k, k3k, k4k) = (&keys[0], &keys[1], &keys[2]);
    let k2k = key_in(pool, 10, "G2").await?;
    let k1 = emit_n(pool, k1k, 3).await?; // dead head, two behind
    let k3 = emit(pool, k3k).await?; // delivered
    let k4 = emit_n(pool, k4k, 2).await?; // head retrying in an hour, one behind
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
    settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
    let k2 = emit_n(pool, &k2k, 2).await?; // head in flight, one behind
    let in_flight = claim(pool, "relay-b", 1, LEASE).await?;
    assert_eq!(ids(&in_flight), vec![k2[0]]);
    let mut conn = pool.acquire().await?;
    let unkeyed = emit_on(&mut conn, None).await?;
    drop(conn);
    assert_eq!(row(pool, unkeyed).await?.status, "pending");

    // The status report counts from the view: K1's two, K2's two, K4's two, the unkeyed one.
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
    assert_eq!(
        blocked,
        vec![(k1k.as_str(), "dead", 2), (k4k.as_str(), "retrying", 1)]
    );
    let retrying = &status.blocked_keys[1];
    assert_eq!(retrying.head_id, k4[0]);
    assert!(retrying.retry_at.is_some_and(|at| at > Utc::now()));

    let g = gauges(&mut *pool.acquire().await?).await?;
    assert_eq!(g.in_flight, 1, "{g:?}");
    assert_eq!(g.dead, 1, "{g:?}");
    assert_eq!(g.blocked_keys, 1, "only dead heads block: {g:?}");
    assert_eq!(g.blocked_events, 2, "{g:?}");
    assert!(
        g.oldest_pending_age >= 0.0 && g.oldest_pending_age < 60.0,
        "{g:?}"
    );
    // The pending gauge counts what the status report counts: the events after each
    // frontier, those at or behind held heads (but dead heads), filled gaps and replays.
    assert_eq!(g.pending, status.pending, "{g:?}");

    // Delivering the in-flight head and discarding the dead one empties the blocked figures.
    deliver_all(pool, &in_flight).await?;
    discard(
        pool,
        &dead_filter(EventFilter::default().ordering_key(k1k)?),
        "ops-test",
        false,
    )
    .await?;
    let g = gauges(&mut *pool.acquire().await?).await?;
    assert_eq!(
        (g.in_flight, g.dead, g.blocked_keys, g.blocked_events),
        (0, 0, 0, 0),
        "{g:?}"
    );
    let status = report(pool, 10).await?;
    assert_eq!(
        (
            status.pending,
            status.in_flight,
            status.dead,
            status.discarded
        ),
        (6, 0, 0, 1)
    );
    // And again after the discard.
    assert_eq!(g.pending, 6, "{g:?}");
    db.cleanup().await
}

// Replays and retention ---------------------------------------------------------------------

/// A key whose writers' lock was purged (no undelivered event left) gets events back through
/// a replay of delivered events: each goes out once more, on its own, and a failure of one
/// does not lose the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_events_of_a_key_whose_lock_was_purged_all_go_out() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let key = key_in(pool, 14, "R").await?;
    let k = emit_n(pool, &key, 3).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    deliver_all(pool, &first).await?;
    assert_eq!(idle_key_locks(pool, 10).await?, 1);
    let replayed = replay(
        pool,
        &ReplayRequest {
            status: ReplayableStatus::Delivered,
            filter: EventFilter {
                ids: vec![k[0], k[1]],
                ..EventFilter::default()
            },
            limit: None,
            all: false,
        },
        "ops-test",
        false,
    )
    .await?;
    assert_eq!(replayed.count, 2);
    for state in rows(pool, &k[..2]).await? {
        assert_eq!(state.status, "pending", "{state:?}");
        assert_eq!(state.attempts, 0, "{state:?}");
    }
    row(pool, k[2]).await?.assert_delivered(1);

    // The replayed events only, not the delivered one after them.
    let second = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&second), k[..2].to_vec());
    let settled = settle(
        pool,
        &second,
        MAX_ATTEMPTS,
        &[
            (k[0], failed(Duration::from_secs(3600))),
            (k[1], Outcome::Released),
        ],
    )
    .await?;
    assert_eq!((settled.retrying, settled.released), (1, 1));
    let head = row(pool, k[0]).await?;
    assert_eq!((head.status.as_str(), head.attempts), ("pending", 1));
    assert!(head.due_at.is_some_and(|at| at > Utc::now()));
    // The released one goes again; the failed one once its retry is due.
    let third = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&third), vec![k[1]]);
    deliver_all(pool, &third).await?;
    assert_nothing_to_claim(pool).await?;
    sqlx::query("UPDATE outbox_replays SET due_at = now() WHERE event_id = $1")
        .bind(k[0])
        .execute(pool)
        .await?;
    let fourth = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&fourth), vec![k[0]]);
    assert_eq!(fourth.events[0].attempts, 1);
    deliver_all(pool, &fourth).await?;
    let states = rows(pool, &k).await?;
    states[0].assert_delivered(2);
    states[1].assert_delivered(1);
    states[2].assert_delivered(1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_replays")
        .fetch_one(pool)
        .await?;
    assert_eq!(left, 0);
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

/// Purge deletes delivered events below their partition's frontier, never a pending, held,
/// dead or replayed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_only_delivered_events_below_the_frontier() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 8, "P", 3).await?;
    let delivered = emit(pool, &keys[0]).await?;
    let dead = emit_n(pool, &keys[1], 2).await?;
    let retrying = emit(pool, &keys[2]).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    settle(
        pool,
        &first,
        MAX_ATTEMPTS,
        &[
            (delivered, Outcome::Delivered),
            (dead[0], rejected()),
            (dead[1], Outcome::Released),
            (retrying, failed(Duration::from_secs(3600))),
        ],
    )
    .await?;
    let pending = emit(pool, &keys[0]).await?; // above the frontier
    // Old enough for any retention.
    sqlx::query("UPDATE outbox_events SET created_at = created_at - interval '2 days'")
        .execute(pool)
        .await?;
    let purged =
        outbox_relay::store::purge::finished_events(pool, Duration::from_secs(3600), 1000).await?;
    assert_eq!(purged, 1);
    let left: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    assert_eq!(
        left,
        HashSet::from([dead[0], dead[1], retrying, pending]),
        "only the delivered event goes"
    );
    db.cleanup().await
}

/// A retrying or dead event deleted by hand (or by the application) leaves its failures in
/// `outbox_attempts`; retention forgets them, and the scopes they held do not stay stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_forgets_the_failures_of_events_deleted_by_hand() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in(pool, 7, "D", 3).await?;
    let dead = emit(pool, &keys[0]).await?;
    let retrying = emit(pool, &keys[1]).await?;
    let kept = emit(pool, &keys[2]).await?;
    let first = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(first.len(), 3);
    let outcomes = vec![
        (dead, rejected()),
        (retrying, failed(Duration::from_secs(3600))),
        (kept, failed(Duration::from_secs(3600))),
    ];
    settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
    sqlx::query("DELETE FROM outbox_events WHERE id = ANY($1)")
        .bind([dead, retrying])
        .execute(pool)
        .await?;
    outbox_relay::store::purge::finished_events(pool, Duration::from_secs(3600), 1000).await?;
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox_attempts")
        .fetch_all(pool)
        .await?;
    assert_eq!(
        left,
        vec![kept],
        "only the failures of an event that exists stay"
    );
    // The retrying key's next event goes out once its (deleted) head is due.
    let next = emit(pool, &keys[1]).await?;
    make_due(pool, &keys[1]).await?;
    let c = claim(pool, "relay-a", 100, LEASE).await?;
    assert_eq!(ids(&c), vec![next]);
    db.cleanup().await
}

// Hostile values -----------------------------------------------------------------------------

/// Values a settle stores come from the broker (errors) and from the relay's configuration
/// (delays, limits): none of them may make a settle fail, or the relay would retry it for
/// ever while its partition waits. Each case runs in a partition of its own (a settle that
/// fails leaves its partition leased), and every failure is reported at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_cannot_wedge_a_settle() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let mut wedged: Vec<String> = Vec::new();

    // Each case: a key of its own partition, one event, a claim, a settle with `outcome`
    // (with `max_attempts`); `prepare` runs on the event before the claim.
    async fn case(
        pool: &PgPool,
        part: i64,
        prepare: &str,
        replayed: bool,
        outcome: Outcome,
        max_attempts: u32,
    ) -> Result<std::result::Result<(Uuid, Settled), String>> {
        let key = key_in(pool, part, "X").await?;
        let id = emit(pool, &key).await?;
        if replayed {
            let c = claim(pool, "relay-h", 100, LEASE).await?;
            assert_eq!(ids(&c), vec![id]);
            deliver_all(pool, &c).await?;
            replay(
                pool,
                &ReplayRequest {
                    status: ReplayableStatus::Delivered,
                    filter: EventFilter {
                        ids: vec![id],
                        ..EventFilter::default()
                    },
                    limit: None,
                    all: false,
                },
                "ops-test",
                false,
            )
            .await?;
        }
        if !prepare.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(prepare.to_owned()))
                .bind(id)
                .execute(pool)
                .await?;
        }
        let c = claim(pool, "relay-h", 100, LEASE).await?;
        assert_eq!(ids(&c), vec![id], "partition {part}");
        Ok(settle(pool, &c, max_attempts, &[(id, outcome)])
            .await
            .map(|settled| (id, settled))
            .map_err(|e| e.to_string()))
    }

    let huge: String = "ошибка брокера ☃ \u{7}\t".repeat(50_000);
    let cases: Vec<(&str, i64, &str, bool, Outcome, u32)> = vec![
        (
            "failures at the counter's limit, the attempt limit at u32::MAX",
            1,
            "INSERT INTO outbox_attempts (event_id, failures, last_error) VALUES ($1, 2147483647, 'old')",
            false,
            failed(Duration::from_secs(1)),
            u32::MAX,
        ),
        (
            "an error of a megabyte",
            2,
            "",
            false,
            failed(Duration::from_secs(1)),
            MAX_ATTEMPTS,
        ),
        (
            "an error with a NUL byte",
            3,
            "",
            false,
            Outcome::Failed {
                error: "reply text \0 from the broker".to_owned(),
                retry_in: Duration::from_secs(1),
            },
            MAX_ATTEMPTS,
        ),
        (
            "a rejection with a NUL byte",
            4,
            "",
            false,
            Outcome::Rejected {
                error: "header \0 refused".to_owned(),
            },
            MAX_ATTEMPTS,
        ),
        (
            "the longest retry",
            5,
            "",
            false,
            failed(Duration::MAX),
            MAX_ATTEMPTS,
        ),
        (
            "a replay failing with the longest retry",
            6,
            "",
            true,
            failed(Duration::MAX),
            MAX_ATTEMPTS,
        ),
        (
            "an attempt limit of 0",
            7,
            "",
            false,
            failed(Duration::from_secs(1)),
            0,
        ),
    ];
    for (name, part, prepare, replayed, outcome, max_attempts) in cases {
        let outcome = if name == "an error of a megabyte" {
            Outcome::Failed {
                error: huge.clone(),
                retry_in: Duration::from_secs(1),
            }
        } else {
            outcome
        };
        match case(pool, part, prepare, replayed, outcome, max_attempts).await? {
            Ok((id, settled)) => {
                assert_eq!(settled.lost, 0, "{name}: {settled:?}");
                let state = row(pool, id).await?;
                assert!(
                    ["pending", "dead"].contains(&state.status.as_str()),
                    "{name}: {state:?}"
                );
                state.assert_unleased();
            }
            Err(error) => wedged.push(format!("{name}: {error}")),
        }
    }
    // No value can fail a settle for ever: an error text with a NUL byte (PostgreSQL's text
    // holds none) is stored with the character replaced, and a retry beyond the timestamp
    // range is capped at a century on the database's clock.
    assert!(
        wedged.is_empty(),
        "settles that failed:\n{}",
        wedged.join("\n")
    );
    db.cleanup().await
}

/// The partitions a claim leased, in order (none: an empty list).
fn parts_of(claim: &Claim) -> Vec<i64> {
    claim
        .feed
        .as_ref()
        .map(|feed| feed.partitions())
        .unwrap_or_default()
}

/// The claimed events of key `key`'s events `of`, in the order the claim returned them.
fn of_key(claim: &Claim, of: &[Uuid]) -> Vec<Uuid> {
    claim
        .events
        .iter()
        .map(|e| e.id)
        .filter(|id| of.contains(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_many_partitions_leases_free_ones_with_work_up_to_its_bound_and_shares_its_batch()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let mut keys = Vec::new();
    for part in 1..=5 {
        let key = key_in(pool, part, "M").await?;
        keys.push((part, emit_n(pool, &key, 4).await?));
    }

    // Bound 3, batch 6: three partitions, two events of each (the batch shared), each
    // partition's first two in order.
    let first = claim_partitions(pool, "relay-a", 6, LEASE, 3).await?;
    let first_parts = parts_of(&first);
    assert_eq!(first_parts.len(), 3, "{first_parts:?}");
    assert_eq!(first.events.len(), 6);
    for (part, events) in &keys {
        if first_parts.contains(part) {
            assert_eq!(
                of_key(&first, events),
                events[..2].to_vec(),
                "partition {part}"
            );
        }
    }
    // The other partitions are free: another relay's claim takes both, whole.
    let second = claim_partitions(pool, "relay-b", 100, LEASE, 16).await?;
    let second_parts = parts_of(&second);
    assert_eq!(second_parts.len(), 2, "{second_parts:?}");
    assert!(second_parts.iter().all(|p| !first_parts.contains(p)));
    for (part, events) in &keys {
        if second_parts.contains(part) {
            assert_eq!(of_key(&second, events), *events, "partition {part}");
        }
    }
    assert!(
        claim_partitions(pool, "relay-c", 100, LEASE, 16)
            .await?
            .feed
            .is_none()
    );

    // Both settle; the rest of the first claim's partitions follow, in order.
    let done = deliver_all(pool, &first).await?;
    assert_eq!(done.delivered, 6);
    let done = deliver_all(pool, &second).await?;
    assert_eq!(done.delivered, 8);
    let rest = claim_partitions(pool, "relay-c", 100, LEASE, 16).await?;
    assert_eq!(parts_of(&rest), first_parts);
    for (part, events) in &keys {
        if first_parts.contains(part) {
            assert_eq!(
                of_key(&rest, events),
                events[2..].to_vec(),
                "partition {part}"
            );
        }
    }
    deliver_all(pool, &rest).await?;
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_records_the_partitions_its_claim_still_holds_and_loses_only_the_others()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let kept = emit_n(pool, &key_in(pool, 6, "S").await?, 2).await?;
    let taken = emit_n(pool, &key_in(pool, 7, "T").await?, 2).await?;
    let old = claim_partitions(pool, "relay-a", 100, LEASE, 16).await?;
    assert_eq!(parts_of(&old), vec![6, 7]);
    assert_eq!(old.events.len(), 4);

    // Partition 7's lease runs out (the relay stalled) and another relay takes it.
    sqlx::query(
        "UPDATE outbox_partitions SET leased_until = now() - interval '1 second' WHERE part = 7",
    )
    .execute(pool)
    .await?;
    let new = claim_partitions(pool, "relay-b", 100, LEASE, 16).await?;
    assert_eq!(parts_of(&new), vec![7]);
    assert_eq!(ids(&new), taken);

    // The old claim's settle records partition 6 and nothing of 7.
    let outcomes = failing(&old, &[kept[0]]);
    let late = settle(pool, &old, MAX_ATTEMPTS, &outcomes).await?;
    assert_eq!(
        late,
        Settled {
            retrying: 1,
            released: 1,
            lost: 2,
            ..Settled::default()
        },
        "the head of partition 6 failed, the event behind it released"
    );
    let seven: (Option<Uuid>, i64) =
        sqlx::query_as("SELECT token, frontier FROM outbox_partitions WHERE part = 7")
            .fetch_one(pool)
            .await?;
    assert_eq!(
        seven.0,
        Some(new.token),
        "partition 7 stays the new claim's"
    );
    for state in rows(pool, &taken).await? {
        assert_eq!(state.attempts, 0, "{state:?}");
    }
    let done = deliver_all(pool, &new).await?;
    assert_eq!(done.delivered, 2);

    // Partition 6's scope went on holding at its failed head: it goes again, in order.
    let again = claim_partitions(pool, "relay-a", 100, LEASE, 16).await?;
    assert_eq!(parts_of(&again), vec![6]);
    assert_eq!(ids(&again), kept);
    assert_eq!(again.events[0].attempts, 1);
    deliver_all(pool, &again).await?;
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_walks_the_due_held_scopes_of_all_its_partitions_each_in_order() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let eight = emit_n(pool, &key_in(pool, 8, "W").await?, 3).await?;
    let nine = emit_n(pool, &key_in(pool, 9, "V").await?, 3).await?;
    let unkeyed = {
        let mut conn = pool.acquire().await?;
        emit_on(&mut conn, None).await?
    };
    // Every head fails once (due again at once): three held scopes, in up to three
    // partitions.
    let first = claim_partitions(pool, "relay-a", 100, LEASE, 16).await?;
    assert_eq!(first.events.len(), 7);
    let heads = [eight[0], nine[0], unkeyed];
    let outcomes = failing(&first, &heads);
    let done = settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
    assert_eq!((done.retrying, done.released), (3, 4));
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_held")
        .fetch_one(pool)
        .await?;
    assert_eq!(held, 3);

    // One claim walks all three, each scope from its head in order.
    let walked = claim_partitions(pool, "relay-a", 100, LEASE, 16).await?;
    assert_eq!(of_key(&walked, &eight), eight);
    assert_eq!(of_key(&walked, &nine), nine);
    assert_eq!(of_key(&walked, &[unkeyed]), vec![unkeyed]);
    assert_eq!(walked.events.len(), 7);
    deliver_all(pool, &walked).await?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_held")
        .fetch_one(pool)
        .await?;
    assert_eq!(held, 0, "every walk reached its scope's end");
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_racing_for_the_same_partitions_never_fail_a_claim() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    // Work in every partition, claims that take a few partitions each and settle at once:
    // a claim's snapshot often sees a partition row that another claim or settle changes
    // before this claim locks it (PostgreSQL rechecks the row then).
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for n in 0..3000 {
                emit(&pool, &format!("race-{}", n % 97)).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut relays = Vec::new();
    for r in 0..6 {
        let pool = pool.clone();
        relays.push(tokio::spawn(async move {
            let mut claims = 0_u32;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                let c = claim_partitions(&pool, &format!("relay-{r}"), 50, LEASE, 3).await?;
                if c.feed.is_none() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                claims += 1;
                deliver_all(&pool, &c).await?;
            }
            anyhow::Ok(claims)
        }));
    }
    writer.await??;
    let mut claims = 0;
    for relay in relays {
        claims += relay
            .await?
            .map_err(|e| anyhow::anyhow!("a claim failed: {e:#}"))?;
    }
    assert!(claims > 100, "only {claims} claims");
    drain(pool).await?;
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_its_partitions_in_turn_never_more_than_its_batch_and_a_backlog_gets_the_room_left()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    // A backlog on one key of partition 10; one event on each of partitions 11 to 13.
    let hot = emit_n(pool, &key_in(pool, 10, "H").await?, 60).await?;
    let mut single = Vec::new();
    for part in 11..=13 {
        single.push(emit(pool, &key_in(pool, part, "C").await?).await?);
    }
    // A batch of 40 over the four: each cold partition's event, and 37 of the backlog, in
    // order (an even split would have taken 10 of it).
    let first = claim_partitions(pool, "relay-a", 40, LEASE, 16).await?;
    assert_eq!(parts_of(&first), vec![10, 11, 12, 13]);
    assert_eq!(first.events.len(), 40);
    assert_eq!(of_key(&first, &hot), hot[..37].to_vec());
    assert_eq!(of_key(&first, &single), single);
    deliver_all(pool, &first).await?;
    // Four more partitions with 8 events each, a batch of 6: never more than the batch,
    // taken in turn (each of the five partitions' first, then partition 0's second).
    let mut keyed = Vec::new();
    for part in 0..4 {
        keyed.push(emit_n(pool, &key_in(pool, part, "E").await?, 8).await?);
    }
    let second = claim_partitions(pool, "relay-a", 6, LEASE, 16).await?;
    assert_eq!(second.events.len(), 6);
    let taken: Vec<usize> = keyed.iter().map(|k| of_key(&second, k).len()).collect();
    assert_eq!(taken, vec![2, 1, 1, 1]);
    assert_eq!(of_key(&second, &hot), hot[37..38].to_vec());
    for k in &keyed {
        let got = of_key(&second, k);
        assert_eq!(
            got,
            k[..got.len()].to_vec(),
            "a prefix of each partition's segment"
        );
    }
    deliver_all(pool, &second).await?;
    // A batch smaller than the partitions with work leases no more partitions than it holds
    // events.
    let third = claim_partitions(pool, "relay-a", 2, LEASE, 16).await?;
    assert_eq!(parts_of(&third).len(), 2);
    assert_eq!(third.events.len(), 2);
    deliver_all(pool, &third).await?;
    drain(pool).await?;
    assert_nothing_to_claim(pool).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_held_scope_goes_out_however_small_the_batch_while_its_partition_keeps_streaming()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let held_key = key_in(pool, 3, "H").await?;
    let busy_key = key_in(pool, 3, "B").await?;
    let other_key = key_in(pool, 4, "O").await?;
    let held = emit_n(pool, &held_key, 2).await?;
    // Its head fails once, due again at once.
    let first = claim_partitions(pool, "relay", 100, LEASE, 16).await?;
    let outcomes = failing(&first, &[held[0]]);
    settle(pool, &first, MAX_ATTEMPTS, &outcomes).await?;
    // Batches of 2 over 2 partitions (one event each), and a new event in both partitions
    // before every claim: the walk still gets its turn.
    let mut delivered = Vec::new();
    for _ in 0..20 {
        emit(pool, &busy_key).await?;
        emit(pool, &other_key).await?;
        let c = claim_partitions(pool, "relay", 2, LEASE, 2).await?;
        deliver_all(pool, &c).await?;
        delivered.extend(c.events.iter().map(|e| e.id));
    }
    let order: Vec<Uuid> = delivered
        .iter()
        .copied()
        .filter(|id| held.contains(id))
        .collect();
    assert_eq!(
        order,
        held,
        "the held scope went out, in order, among {} events",
        delivered.len()
    );
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_gauge_counts_only_what_live_claims_took() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let five = key_in(pool, 5, "G").await?;
    let six = key_in(pool, 6, "Q").await?;
    let taken = emit_n(pool, &five, 3).await?;
    let crashed = claim_partitions(pool, "relay-a", 100, LEASE, 16).await?;
    assert_eq!(parts_of(&crashed), vec![5]);
    // Relay A dies (its lease runs out); the application deletes those events and writes
    // one for later; partition 6 gets events.
    sqlx::query(
        "UPDATE outbox_partitions SET leased_until = now() - interval '1 second' WHERE part = 5",
    )
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM outbox_events WHERE id = ANY($1)")
        .bind(&taken)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO outbox_events (event_type, payload, ordering_key, available_at)
         VALUES ('TICKET_CREATED', $2, $1, now() + interval '1 hour')",
    )
    .bind(&five)
    .bind(serde_json::json!({"ticketId": Uuid::now_v7(), "tenantId": Uuid::now_v7()}))
    .execute(pool)
    .await?;
    emit_n(pool, &six, 2).await?;
    let b = claim_partitions(pool, "relay-b", 100, LEASE, 16).await?;
    assert_eq!(parts_of(&b), vec![5, 6]);
    assert_eq!(b.events.len(), 2);
    assert_eq!(
        gauges(&mut *pool.acquire().await?).await?.in_flight,
        2,
        "in flight: what relay B took, not what the dead relay had"
    );
    deliver_all(pool, &b).await?;
    db.cleanup().await
}
