//! Claiming: lease a batch of events that may be published now, under a fresh token.
//!
//! A claim, under the exclusive claim lock:
//! 1. reaps expired leases (a crashed relay's rows become claimable again);
//! 2. unparks the heads of keys a settle left for re-checking, and the failed events whose
//!    next try is due (a failed event is parked while it backs off; its failures and next
//!    try live in `outbox_attempts`, not on its row);
//! 3. scans the *ready* index — unparked, due pending rows: the heads of keys and unkeyed
//!    events — past those of leased scopes, and confirms each is its key's head (no earlier undelivered event);
//!    a row that is not (an event replayed behind it, say) is parked;
//! 4. extends each head with the run of due events behind it (through the scope index,
//!    parked or not), so a hot key moves a batch at a time, not an event;
//! 5. leases the scopes of the chosen rows: one `outbox_leases` row per scope (or unordered
//!    event) with the token, the relay and a deadline from the clock *after* the lock wait.
//!    The event rows are not written: a leased scope is simply skipped by the next claim.
//!
//! Nothing here reads rows behind a blocked head, so its cost follows the batch size, not
//! the backlog. Row content is decoded row by row: a row that cannot be decoded is returned
//! in [`Claim::undecodable`] (to be marked dead), never fails the claim.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{ClaimLock, begin_locked, unpark_heads};
use crate::engine::claim_plan::{self, Candidate};
pub use crate::engine::event::ClaimedEvent;
use crate::foundation::db::within_deadline;

/// The lease key of the event row aliased `$alias` in a statement: its ordering scope
/// (`outbox_scope()`), or `#<id>` for an event without an ordering key (a scope's name starts
/// with a tenant id or `-`, never `#`). What `outbox_leases.lease_key` holds.
macro_rules! lease_key_of {
    ($alias:literal) => {
        concat!(
            "(CASE WHEN ",
            $alias,
            ".ordering_key IS NULL THEN '#' || ",
            $alias,
            ".id::text ELSE outbox_scope(",
            $alias,
            ".tenant_id, ",
            $alias,
            ".ordering_key) END)"
        )
    };
}
pub(crate) use lease_key_of;

/// Step 1: forgets the relays that are gone (registered owners whose advisory lock nobody
/// holds: one lock probe per running relay, see [`crate::engine::lease`]) and ends their
/// leases, ends expired leases, and reports whether any key waits for a re-check and
/// whether any failed event is due for its next try. Leases
/// live in `outbox_leases`, one row per leased scope: all of this reads a table the size
/// of what is in flight.
pub const REAP_SQL: &str = "WITH gone AS (
             DELETE FROM outbox_relay_owners o
              WHERE pg_try_advisory_xact_lock(1869968482, o.owner)
             RETURNING o.owner),
         reaped AS (
             DELETE FROM outbox_leases
              WHERE leased_until < statement_timestamp()
                 OR owner IN (SELECT owner FROM gone)
             RETURNING 1)
         SELECT (SELECT count(*) FROM reaped), EXISTS (SELECT 1 FROM outbox_key_recheck),
                COALESCE((SELECT array_agg(owner) FROM gone), '{}'),
                EXISTS (SELECT 1 FROM outbox_attempts
                         WHERE next_attempt_at <= statement_timestamp())";

/// Whether the claiming relay is still the registered, live owner `$1` (int4 key): leases
/// under an owner that is not registered would never be reaped, and under one whose lock
/// nobody holds (its session just ended) would be reaped by the next claim. (A lock this
/// transaction takes here, because nobody held it, goes with the transaction.)
pub const OWNER_ALIVE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM outbox_relay_owners WHERE owner = $1)
                AND NOT pg_try_advisory_xact_lock(1869968482, $1)";

/// Whether a claim now would find anything to do: a due head of a scope nobody leases (the
/// ready index, past the heads in flight), an expired lease, a relay that is gone (its
/// leases are to be reaped), or a key noted for a re-check. Index probes and one lock
/// probe per running relay, no lock held after it: cheap enough to run every few
/// milliseconds while polling (0.07 ms at a million rows once vacuumed with nothing in
/// flight; it walks past the heads of leased scopes — a look-up in `outbox_leases` each,
/// about 10 ms with 1,500 in flight on a busy machine — and, like the claim's own scan,
/// the dead index entries a vacuum has not yet removed: 200 ms after a million events
/// were delivered and before autovacuum got to them).
pub const PROBE_SQL: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM outbox_events e
                        WHERE e.status = 'pending' AND NOT e.parked
                          AND e.available_at <= statement_timestamp()
                          AND NOT EXISTS (SELECT 1 FROM outbox_leases l
                                           WHERE l.lease_key = ",
    lease_key_of!("e"),
    "))
             OR EXISTS (SELECT 1 FROM outbox_leases WHERE leased_until < statement_timestamp())
             OR EXISTS (SELECT 1 FROM outbox_relay_owners o
                         WHERE pg_try_advisory_xact_lock(1869968482, o.owner))
             OR EXISTS (SELECT 1 FROM outbox_key_recheck)
             OR EXISTS (SELECT 1 FROM outbox_attempts
                         WHERE next_attempt_at <= statement_timestamp())"
);

/// Runs [`PROBE_SQL`]: whether a claim now would find work.
pub async fn work_waiting(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(PROBE_SQL).fetch_one(pool).await
}

/// [`work_waiting`] within `deadline`; past it the connection is closed and the look
/// fails (see [`within_deadline`]).
pub async fn work_waiting_within(pool: &PgPool, deadline: Duration) -> Result<bool, sqlx::Error> {
    within_deadline(pool, deadline, async |conn| {
        sqlx::query_scalar(PROBE_SQL).fetch_one(&mut *conn).await
    })
    .await
}

/// Step 2: the keys noted for a re-check that no writer holds now (their key locks taken).
pub const RECHECK_SQL: &str = "SELECT k.ordering_key
               FROM outbox_key_recheck r JOIN outbox_key_locks k USING (ordering_key)
              ORDER BY k.ordering_key
              LIMIT 1000
                FOR UPDATE OF k SKIP LOCKED";

/// Step 2, first: lock rows for noted keys that lack one.
pub const RECHECK_LOCK_ROWS_SQL: &str = "INSERT INTO outbox_key_locks (ordering_key)
         SELECT r.ordering_key FROM outbox_key_recheck r
          WHERE NOT EXISTS (SELECT 1 FROM outbox_key_locks k WHERE k.ordering_key = r.ordering_key)
          ORDER BY r.ordering_key
         ON CONFLICT DO NOTHING";

/// Step 2, then: the failed events whose next try is due (at most 1,000, soonest first)
/// leave the retry schedule (`outbox_attempts.next_attempt_at`) and are unparked, so the
/// ready scan sees them again. A settle parks an event that failed and will be retried:
/// while it backs off, it is not in the ready index, and no claim walks past it. (One that
/// is no longer its scope's head — an earlier event was replayed meanwhile — is parked
/// again by the ready scan's head probe.)
pub const DUE_RETRIES_SQL: &str = "WITH due AS (
             UPDATE outbox_attempts SET next_attempt_at = NULL, updated_at = clock_timestamp()
              WHERE event_id IN (SELECT event_id FROM outbox_attempts
                                  WHERE next_attempt_at <= statement_timestamp()
                                  ORDER BY next_attempt_at
                                  LIMIT 1000)
             RETURNING event_id)
         UPDATE outbox_events e SET parked = false
           FROM due
          WHERE e.id = due.event_id AND e.status = 'pending' AND e.parked";

/// Step 2, after unparking: forgets the re-checked keys.
pub const RECHECK_DONE_SQL: &str =
    "DELETE FROM outbox_key_recheck WHERE ordering_key = ANY($1::text[])";

/// Step 3: the ready rows (the ready index) of scopes nobody leases, each with its ordering
/// scope (tenant and key, see `outbox_scope()`) and the scope's previous undelivered event
/// (the head probe; none for a head).
pub const READY_SQL: &str = concat!(
    "SELECT r.id, r.seq, r.scope,
                (SELECT b.seq FROM outbox_events b
                  WHERE outbox_scope(b.tenant_id, b.ordering_key) = r.scope AND b.seq < r.seq
                    AND b.status IN ('pending', 'dead')
                  ORDER BY b.seq DESC LIMIT 1) AS predecessor
           FROM (SELECT e.id, e.seq, outbox_scope(e.tenant_id, e.ordering_key) AS scope
                   FROM outbox_events e
                  WHERE e.status = 'pending' AND NOT e.parked
                    AND e.available_at <= statement_timestamp()
                    AND NOT EXISTS (SELECT 1 FROM outbox_leases l
                                     WHERE l.lease_key = ",
    lease_key_of!("e"),
    ")
                  ORDER BY e.available_at, e.seq
                  LIMIT $1) AS r"
);

/// Step 4: the run behind each head, through the scope index (at most `$3` per scope). The
/// head's scope is not leased (step 3), so no event of it is. A run ends at an event that
/// is not ready: scheduled later, dead, or backing off after a failure (found behind a
/// head when an earlier event of its scope was replayed).
pub const RUNS_SQL: &str = "SELECT h.key, x.id,
                x.status = 'pending' AND x.available_at <= statement_timestamp()
                AND NOT EXISTS (SELECT 1 FROM outbox_attempts a
                                 WHERE a.event_id = x.id
                                   AND (a.dead_at IS NOT NULL
                                        OR a.next_attempt_at > statement_timestamp())) AS ready
           FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS h(key, seq, n)
           CROSS JOIN LATERAL (
                SELECT e.id, e.seq, e.status, e.available_at
                  FROM outbox_events e
                 WHERE outbox_scope(e.tenant_id, e.ordering_key) = h.key AND e.seq > h.seq
                   AND e.status IN ('pending', 'dead')
                 ORDER BY e.seq
                 LIMIT $3) AS x
          ORDER BY h.n, x.seq";

/// Step 5: parks the rows found behind another event, leases the scopes of the chosen rows
/// (one `outbox_leases` row per scope, `$2` the token, `$6` the owner, `$3` the relay,
/// `$4` the lease in seconds from the clock *after* the lock wait) and returns the chosen
/// rows. A scope already leased (which the claim lock rules out) keeps its lease, and its
/// rows are not returned.
pub const LEASE_SQL: &str = concat!(
    "WITH parked AS (
             UPDATE outbox_events SET parked = true
              WHERE id = ANY($5::uuid[]) AND status = 'pending'
             RETURNING 1),
         chosen AS MATERIALIZED (
             SELECT o.*, ",
    lease_key_of!("o"),
    " AS lease_key
               FROM outbox_events o
              WHERE o.id = ANY($1::uuid[]) AND o.status = 'pending'),
         leased AS (
             INSERT INTO outbox_leases
                    (lease_key, token, owner, relay_id, leased_until, first_seq, last_seq, events)
             SELECT c.lease_key, $2, $6, $3, clock_timestamp() + make_interval(secs => $4),
                    min(c.seq), max(c.seq), count(*)
               FROM chosen c GROUP BY c.lease_key
             ON CONFLICT (lease_key) DO NOTHING
             RETURNING lease_key)
         SELECT o.id, o.seq, o.tenant_id, o.event_type, o.schema_ref, o.category,
                o.ordering_key, o.payload::text AS payload, o.headers::text AS headers,
                o.dedupe_key,
                CASE WHEN o.occurred_at BETWEEN '0001-01-01Z' AND '9999-12-31Z'
                     THEN o.occurred_at END AS occurred_at,
                CASE WHEN o.created_at BETWEEN '0001-01-01Z' AND '9999-12-31Z'
                     THEN o.created_at END AS created_at,
                COALESCE((SELECT a.failures FROM outbox_attempts a WHERE a.event_id = o.id), 0)
                    AS attempts
           FROM chosen o
          WHERE o.lease_key IN (SELECT lease_key FROM leased)"
);

/// A leased batch.
#[derive(Debug, Clone)]
pub struct Claim {
    /// This claim's token: only a settle presenting it changes these rows.
    pub token: Uuid,
    /// The leased events in seq order.
    pub events: Vec<ClaimedEvent>,
    /// Leased rows whose content cannot be read: settle them as permanent failures, and
    /// publish nothing behind them in their key.
    pub undecodable: Vec<Unreadable>,
    /// Rows this claim found behind another event of their key and parked. A claim that
    /// leased nothing but parked rows should be followed by another at once.
    pub parked: u64,
}

/// A leased row whose content cannot be read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Event id.
    pub id: Uuid,
    /// Its seq.
    pub seq: i64,
    /// Its ordering key; `None` when even the key cannot be read (then nothing of this claim
    /// after it may go out).
    pub ordering_key: Option<Option<String>>,
    /// Its tenant (with the key, its ordering scope); `None` when it cannot be read (then
    /// nothing of this claim after it on the same key may go out).
    pub tenant_id: Option<Option<Uuid>>,
    /// Why.
    pub error: String,
}

impl Claim {
    /// A claim that leased nothing.
    pub fn empty(token: Uuid) -> Claim {
        Claim {
            token,
            events: Vec::new(),
            undecodable: Vec::new(),
            parked: 0,
        }
    }

    /// Whether nothing was leased.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.undecodable.is_empty()
    }

    /// Rows leased.
    pub fn len(&self) -> usize {
        self.events.len() + self.undecodable.len()
    }
}

pub use crate::engine::claim_plan::RUN_DEPTH;

/// How long each step of one claim took, as its client saw the round trips (for the
/// benchmarks: the claim's cost per step, from the claim itself).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClaimSteps {
    /// `BEGIN` and the claim lock.
    pub begin_lock: Duration,
    /// Step 1, the reap.
    pub reap: Duration,
    /// Step 2, the re-check of noted keys and the due retries (zero when none waits).
    pub recheck: Duration,
    /// Step 3, the ready scan with its head probe.
    pub ready: Duration,
    /// Step 4, the run extension (zero when it is not needed).
    pub runs: Duration,
    /// Step 5, the lease (`RETURNING` the leased rows).
    pub lease: Duration,
    /// `COMMIT`.
    pub commit: Duration,
}

/// Claims up to `limit` events for `relay_id`, leased for `lease`.
pub async fn claim(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    Ok(claim_timed(pool, relay_id, limit, lease).await?.0)
}

/// [`claim`] within `deadline` (taking a connection included): a database that stops
/// answering fails the claim then, and its connection is closed, not given back to the
/// pool (see [`within_deadline`]). The claim's transaction is then rolled back by the
/// server when it sees the connection go, so nothing stays leased by it.
///
/// With `owner`, the claim's token names it ([`crate::engine::lease::owner_token`]): the
/// lease then also ends when that owner's advisory lock is released (its relay is gone),
/// not only at its deadline. The caller must hold that lock.
pub async fn claim_within(
    pool: &PgPool,
    deadline: Duration,
    relay_id: &str,
    owner: Option<u32>,
    limit: u32,
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    let token = match owner {
        Some(owner) => crate::engine::lease::owner_token(owner, Uuid::new_v4().as_u128()),
        None => Uuid::now_v7(),
    };
    within_deadline(pool, deadline, async |conn| {
        Ok(claim_timed_on(conn, relay_id, token, limit, lease).await?.0)
    })
    .await
}

/// [`claim`], with the time each of its steps took.
pub async fn claim_timed(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<(Claim, ClaimSteps), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    claim_timed_on(&mut conn, relay_id, Uuid::now_v7(), limit, lease).await
}

/// [`claim_timed`] on a connection the caller holds.
async fn claim_timed_on(
    conn: &mut PgConnection,
    relay_id: &str,
    token: Uuid,
    limit: u32,
    lease: Duration,
) -> Result<(Claim, ClaimSteps), sqlx::Error> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let mut steps = ClaimSteps::default();
    let mut at = std::time::Instant::now();
    let mut lap = |step: &mut Duration| {
        let now = std::time::Instant::now();
        *step = now - at;
        at = now;
    };
    let mut tx = begin_locked(conn, ClaimLock::Exclusive).await?;
    lap(&mut steps.begin_lock);

    // 1. Reap expired leases and those of relays that are gone; learn whether any key
    //    waits for a re-check.
    let (reaped, recheck, gone, retries_due): (i64, bool, Vec<i32>, bool) =
        sqlx::query_as(REAP_SQL).fetch_one(&mut *tx).await?;
    // (A relay stopped cleanly leaves its row and no lease: forgetting it is not news.)
    if !gone.is_empty() && reaped > 0 {
        tracing::info!(
            owners = ?gone,
            "relays that are gone (their ownership sessions ended): their leases end now"
        );
    }
    // A relay whose ownership ended a moment ago (its heartbeat has not noticed yet) leases
    // nothing under it: the reaps above are kept, the claim is empty.
    let owner = crate::engine::lease::token_owner(token).map(crate::engine::lease::owner_lock_key);
    if let Some(owner) = owner {
        let alive: bool = sqlx::query_scalar(OWNER_ALIVE_SQL)
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?;
        if !alive {
            tx.commit().await?;
            return Ok((Claim::empty(token), steps));
        }
    }
    lap(&mut steps.reap);

    // 2. Keys whose head a settle could not unpark while a writer held them.
    if recheck {
        create_missing_key_locks(&mut tx).await?;
        let free: Vec<String> = sqlx::query_scalar(RECHECK_SQL).fetch_all(&mut *tx).await?;
        unpark_heads(&mut tx, &free).await?;
        sqlx::query(RECHECK_DONE_SQL)
            .bind(&free)
            .execute(&mut *tx)
            .await?;
    }
    // Failed events whose next try is due.
    if retries_due {
        sqlx::query(DUE_RETRIES_SQL).execute(&mut *tx).await?;
    }
    lap(&mut steps.recheck);

    // 3. Ready rows, each with its key's previous undelivered event (none for a head).
    let candidates: Vec<Candidate> = sqlx::query(READY_SQL)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .try_map(|row: PgRow| {
            Ok(Candidate {
                id: row.try_get("id")?,
                seq: row.try_get("seq")?,
                scope: row.try_get("scope")?,
                predecessor: row.try_get("predecessor")?,
            })
        })
        .fetch_all(&mut *tx)
        .await?;
    lap(&mut steps.ready);
    let (heads, to_park) = claim_plan::split(candidates);

    // 4. The run behind each keyed head, in the room the heads leave (`claim_plan`).
    let plan = claim_plan::plan_runs(&heads, limit);
    let runs = match &plan.runs {
        Some((keyed, share)) => runs_behind(&mut tx, keyed, *share).await?,
        None => Vec::new(),
    };
    let (chosen, to_park) = claim_plan::complete(&plan, runs, to_park, limit);
    lap(&mut steps.runs);

    // 5. Lease the chosen rows and park the rows found behind another event.
    let rows: Vec<PgRow> = sqlx::query(LEASE_SQL)
        .bind(&chosen)
        .bind(token)
        .bind(relay_id)
        .bind(lease.as_secs_f64())
        .bind(&to_park)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
    lap(&mut steps.lease);
    tx.commit().await?;
    lap(&mut steps.commit);

    let mut events = Vec::with_capacity(rows.len());
    let mut undecodable = Vec::new();
    for row in &rows {
        // A decoder that panics on a value (sqlx's chrono conversion does, beyond chrono's
        // range) costs this row, never the relay.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(row)))
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Decode(
                    "a column holds a value the relay cannot represent".into(),
                ))
            });
        match decoded {
            Ok(event) => events.push(event),
            Err(error) => {
                let Ok(id) = row.try_get::<Uuid, _>("id") else {
                    continue;
                };
                undecodable.push(Unreadable {
                    id,
                    seq: row.try_get("seq").unwrap_or(i64::MIN),
                    ordering_key: row.try_get("ordering_key").ok(),
                    tenant_id: row.try_get("tenant_id").ok(),
                    error: format!("cannot read the stored row: {error}"),
                });
            }
        }
    }
    events.sort_by_key(|e| e.seq);
    let claim = Claim {
        token,
        events,
        undecodable,
        parked: to_park.len() as u64,
    };
    Ok((claim, steps))
}

/// A noted key lacks a lock row when its row was purged while the key had nothing to
/// deliver and a replay revived it since. Creating the row takes its lock, so the re-check
/// can then proceed. If a writer is creating the same row right now, the insert would wait
/// for that writer, under the claim lock: it may wait a few milliseconds at most, and
/// otherwise leaves the key for the next claim.
async fn create_missing_key_locks(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<(), sqlx::Error> {
    let mut attempt = sqlx::Connection::begin(&mut **tx).await?;
    let previous: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')")
        .fetch_one(&mut *attempt)
        .await?;
    sqlx::query("SELECT set_config('lock_timeout', '20ms', true)")
        .execute(&mut *attempt)
        .await?;
    match sqlx::query(RECHECK_LOCK_ROWS_SQL)
        .execute(&mut *attempt)
        .await
    {
        Ok(_) => {
            sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                .bind(previous)
                .execute(&mut *attempt)
                .await?;
            attempt.commit().await
        }
        Err(error) if is_lock_timeout(&error) => attempt.rollback().await,
        Err(error) => Err(error),
    }
}

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}

/// Follows each head's key in seq order and returns the ids of the run behind it: the
/// consecutive undelivered events that are pending, due and unleased, at most `share` per
/// key, heads in the order given.
async fn runs_behind(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    heads: &[&Candidate],
    share: usize,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let keys: Vec<&str> = heads.iter().filter_map(|c| c.scope.as_deref()).collect();
    let seqs: Vec<i64> = heads.iter().map(|c| c.seq).collect();
    let rows: Vec<(String, Uuid, bool)> = sqlx::query_as(RUNS_SQL)
        .bind(&keys)
        .bind(&seqs)
        .bind(i32::try_from(share).unwrap_or(i32::MAX))
        .fetch_all(&mut **tx)
        .await?;
    Ok(claim_plan::runs_from(rows))
}

/// Runs the statements of one [`claim`] of up to `limit` events, each under
/// `EXPLAIN (ANALYZE, BUFFERS, WAL)`, in a transaction that is rolled back: nothing is reaped,
/// parked or leased. Returns (statement, plan text) in the order the claim runs them.
///
/// Each statement is explained with the values the claim would bind (the candidates of the
/// ready scan feed the run extension and the lease). Statements with parameters are
/// explained twice: with a custom plan (for these values), and with the generic plan, which
/// is what a claim's cached prepared statement runs once the plan cache prefers it (from the
/// sixth execution on a connection). When the heads fill the batch the claim skips the run
/// extension; it is then explained with a share of one event per key, and named
/// accordingly. The re-check of step 2 is explained only when a key waits for one.
pub async fn explain(pool: &PgPool, limit: u32) -> Result<Vec<(String, String)>, sqlx::Error> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let mut conn = pool.acquire().await?;
    let mut tx = begin_locked(&mut conn, ClaimLock::Exclusive).await?;
    let mut plans = Vec::new();

    plans.push((
        "1. reap".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(REAP_SQL))),
        )
        .await?,
    ));
    // Executed again for its answer (nothing left to reap).
    let (_, recheck, _, retries_due): (i64, bool, Vec<i32>, bool) =
        sqlx::query_as(REAP_SQL).fetch_one(&mut *tx).await?;
    if retries_due {
        plans.push((
            "2. due retries".to_owned(),
            plan_of(
                &mut tx,
                sqlx::query(sqlx::AssertSqlSafe(explained(DUE_RETRIES_SQL))),
            )
            .await?,
        ));
    }
    if recheck {
        create_missing_key_locks(&mut tx).await?;
        plans.push((
            "2. re-check".to_owned(),
            plan_of(
                &mut tx,
                sqlx::query(sqlx::AssertSqlSafe(explained(RECHECK_SQL))),
            )
            .await?,
        ));
        let free: Vec<String> = sqlx::query_scalar(RECHECK_SQL).fetch_all(&mut *tx).await?;
        unpark_heads(&mut tx, &free).await?;
        sqlx::query(RECHECK_DONE_SQL)
            .bind(&free)
            .execute(&mut *tx)
            .await?;
    }

    let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
    plans.push((
        "3. ready scan + head probe (custom plan)".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(READY_SQL))).bind(limit_param),
        )
        .await?,
    ));
    let name = prepare_generic(&mut tx, READY_SQL).await?;
    plans.push((
        "3. ready scan + head probe (generic plan)".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(&format!(
                "EXECUTE {name}({limit_param})"
            )))),
        )
        .await?,
    ));
    unprepare(&mut tx, &name).await?;
    let candidates: Vec<Candidate> = sqlx::query_as(READY_SQL)
        .bind(limit_param)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(
            |(id, seq, scope, predecessor): (Uuid, i64, Option<String>, Option<i64>)| Candidate {
                id,
                seq,
                scope,
                predecessor,
            },
        )
        .collect();
    // The claim's own plan (`claim_plan`): the same heads, runs and parked rows.
    let (heads, to_park) = claim_plan::split(candidates);
    let plan = claim_plan::plan_runs(&heads, limit);
    let shown: Option<(Vec<&Candidate>, usize, &str)> = match &plan.runs {
        Some((keyed, share)) => Some((keyed.clone(), *share, "4. run extension")),
        None => {
            let keyed: Vec<&Candidate> =
                plan.leading.iter().filter(|c| c.scope.is_some()).collect();
            (!keyed.is_empty()).then_some((
                keyed,
                1,
                "4. run extension (skipped by the claim: the heads fill the batch; shown with a share of 1)",
            ))
        }
    };
    if let Some((keyed, share, name)) = shown {
        let keys: Vec<&str> = keyed.iter().filter_map(|c| c.scope.as_deref()).collect();
        let seqs: Vec<i64> = keyed.iter().map(|c| c.seq).collect();
        plans.push((
            format!("{name} (custom plan)"),
            plan_of(
                &mut tx,
                sqlx::query(sqlx::AssertSqlSafe(explained(RUNS_SQL)))
                    .bind(&keys)
                    .bind(&seqs)
                    .bind(i32::try_from(share).unwrap_or(i32::MAX)),
            )
            .await?,
        ));
        // EXECUTE takes no protocol parameters: the values go in as literals, quoted by
        // the server.
        let (keys_literal, seqs_literal): (String, String) = sqlx::query_as(
            "SELECT quote_literal($1::text[]) || '::text[]', quote_literal($2::bigint[]) || '::bigint[]'",
        )
        .bind(&keys)
        .bind(&seqs)
        .fetch_one(&mut *tx)
        .await?;
        let prepared = prepare_generic(&mut tx, RUNS_SQL).await?;
        plans.push((
            format!("{name} (generic plan)"),
            plan_of(
                &mut tx,
                sqlx::query(sqlx::AssertSqlSafe(explained(&format!(
                    "EXECUTE {prepared}({keys_literal}, {seqs_literal}, {share})"
                )))),
            )
            .await?,
        ));
        unprepare(&mut tx, &prepared).await?;
    }
    let runs = match &plan.runs {
        Some((keyed, share)) => runs_behind(&mut tx, keyed, *share).await?,
        None => Vec::new(),
    };
    let (chosen, to_park) = claim_plan::complete(&plan, runs, to_park, limit);

    // The lease runs twice, the generic plan (what a warm connection runs) first; it is
    // undone before the custom plan runs, whose index inserts then land beside the undone
    // ones (its timing is the pessimistic one).
    let (chosen_literal, park_literal): (String, String) = sqlx::query_as(
        "SELECT quote_literal($1::uuid[]) || '::uuid[]', quote_literal($2::uuid[]) || '::uuid[]'",
    )
    .bind(&chosen)
    .bind(&to_park)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SAVEPOINT outbox_explain_lease")
        .execute(&mut *tx)
        .await?;
    let name = prepare_generic(&mut tx, LEASE_SQL).await?;
    plans.push((
        "5. lease (generic plan)".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(&format!(
                "EXECUTE {name}({chosen_literal}, '{}'::uuid, 'explain', 60.0, {park_literal}, NULL)",
                Uuid::now_v7()
            )))),
        )
        .await?,
    ));
    sqlx::query("ROLLBACK TO SAVEPOINT outbox_explain_lease")
        .execute(&mut *tx)
        .await?;
    unprepare(&mut tx, &name).await?;
    plans.push((
        "5. lease (custom plan, after the generic run was undone)".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(LEASE_SQL)))
                .bind(&chosen)
                .bind(Uuid::now_v7())
                .bind("explain")
                .bind(60.0_f64)
                .bind(&to_park)
                .bind(None::<i32>),
        )
        .await?,
    ));
    tx.rollback().await?;
    Ok(plans)
}

fn explained(statement: &str) -> String {
    format!("EXPLAIN (ANALYZE, BUFFERS, WAL) {statement}")
}

/// Prepares `statement` under a fresh name and makes the transaction use generic plans.
async fn prepare_generic(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    statement: &str,
) -> Result<String, sqlx::Error> {
    let name = format!("outbox_explain_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PREPARE {name} AS {statement}"
    )))
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
        .execute(&mut **tx)
        .await?;
    Ok(name)
}

/// Drops a statement of [`prepare_generic`] (prepared statements outlive transactions) and
/// lets the plan cache choose again.
async fn unprepare(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("DEALLOCATE {name}")))
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT set_config('plan_cache_mode', 'auto', true)")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The plan text of an `EXPLAIN`, one line per row.
async fn plan_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<String, sqlx::Error> {
    let lines: Vec<String> = query
        .try_map(|row: PgRow| row.try_get::<String, _>(0))
        .fetch_all(&mut **tx)
        .await?;
    Ok(lines.join("\n"))
}

/// A timestamp the claim returned only when it lies within the years 1 to 9999.
fn in_range(row: &PgRow, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    row.try_get::<Option<DateTime<Utc>>, _>(column)?
        .ok_or_else(|| {
            sqlx::Error::Decode(format!("{column} is outside the years 1 to 9999").into())
        })
}

/// Reads one claimed row; any column that cannot be decoded makes the row unpublishable.
fn decode(row: &PgRow) -> Result<ClaimedEvent, sqlx::Error> {
    let headers_text: String = row.try_get("headers")?;
    let headers = serde_json::from_str(&headers_text)
        .map_err(|e| sqlx::Error::Decode(format!("headers are not readable JSON ({e})").into()))?;
    Ok(ClaimedEvent {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        tenant_id: row.try_get("tenant_id")?,
        event_type: row.try_get("event_type")?,
        schema_ref: row.try_get("schema_ref")?,
        category: row.try_get("category")?,
        ordering_key: row.try_get("ordering_key")?,
        payload: row.try_get("payload")?,
        headers,
        dedupe_key: row.try_get("dedupe_key")?,
        occurred_at: in_range(row, "occurred_at")?,
        created_at: in_range(row, "created_at")?,
        attempts: row.try_get("attempts")?,
    })
}
