//! Claiming: lease partitions of the feed and take the events they may publish now.
//!
//! A claim (engine v3, step 4b; docs/delivery-engine.md):
//! 1. forgets the relays that are gone (their ownership lock is free) and leases, up to a
//!    bound, the free partitions with work that moved least recently (`outbox_partitions`: a
//!    token, the owner's session, a deadline): one row per partition written, in one short
//!    transaction;
//! 2. reads them in one `REPEATABLE READ` snapshot ([`feed::read`]), each statement over
//!    all of them: the segments after their frontiers, their gaps, the held scopes of what it
//!    read, the due held scopes with their walks, the due replays — each partition up to its
//!    share of the batch;
//! 3. lets [`crate::engine::feed_claim::plan`] decide, per partition, what goes out, in seq
//!    order.
//!
//! No event row is written. A partition is worked by one claim at a time, and a scope lives
//! in one partition, so per-scope order needs no lock between relays; several relays claim
//! different partitions at once. Row content is decoded row by row: a row that cannot be
//! decoded is returned in [`Claim::undecodable`] (to be marked dead), never fails the claim.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

pub use crate::engine::event::ClaimedEvent;
use crate::foundation::db::within_deadline;
use crate::store::feed::{self, FeedClaim};

/// Runs [`feed::PROBE_SQL`]: whether a claim now would find work (a free partition with
/// events after its frontier, a due held scope or replay, or a due gap group).
/// Index probes, 16 partitions, no lock held after it.
pub async fn work_waiting(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(feed::PROBE_SQL).fetch_one(pool).await
}

/// [`work_waiting`] within `deadline`; past it the connection is closed and the look
/// fails (see [`within_deadline`]).
pub async fn work_waiting_within(pool: &PgPool, deadline: Duration) -> Result<bool, sqlx::Error> {
    within_deadline(pool, deadline, async |conn| {
        sqlx::query_scalar(feed::PROBE_SQL)
            .fetch_one(&mut *conn)
            .await
    })
    .await
}

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
    /// The partitions leased and what their settle writes (`None` when no partition had
    /// work).
    pub feed: Option<FeedClaim>,
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
            feed: None,
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

/// How long each step of one claim took, as its client saw the round trips (for the
/// benchmarks: the claim's cost per step, from the claim itself).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClaimSteps {
    /// Step 1: the partitions' lease (with the forgetting of relays that are gone).
    pub acquire: Duration,
    /// Step 2: the partitions read in one snapshot (segments, gaps, held scopes, walks).
    pub read: Duration,
    /// Step 3: the plan and the rows decoded.
    pub plan: Duration,
}

/// Claims up to `limit` events of one partition for `relay_id`, leased for `lease` (what
/// a relay with 16 delivery loops would claim: see [`claim_partitions`]).
pub async fn claim(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    claim_partitions(pool, relay_id, limit, lease, 1).await
}

/// Claims up to `limit` events, from up to `partitions` partitions, for `relay_id`,
/// leased for `lease`.
pub async fn claim_partitions(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
    partitions: u32,
) -> Result<Claim, sqlx::Error> {
    Ok(claim_timed(pool, relay_id, limit, lease, partitions)
        .await?
        .0)
}

/// [`claim`] within `deadline` (taking a connection included): a database that stops
/// answering fails the claim then, and its connection is closed, not given back to the
/// pool (see [`within_deadline`]).
///
/// With `owner`, the partitions' lease names it: the lease then also ends when that
/// owner's advisory lock is released (its relay is gone), not only at its deadline. The
/// caller must hold that lock. At most `partitions` partitions are leased
/// ([`crate::engine::feed_claim::partitions_per_claim`] says how many for a relay).
pub async fn claim_within(
    pool: &PgPool,
    deadline: Duration,
    relay_id: &str,
    owner: Option<u32>,
    limit: u32,
    lease: Duration,
    partitions: u32,
) -> Result<Claim, sqlx::Error> {
    let token = match owner {
        Some(owner) => crate::engine::lease::owner_token(owner, Uuid::new_v4().as_u128()),
        None => Uuid::now_v7(),
    };
    within_deadline(pool, deadline, async |conn| {
        let (claim, steps) =
            claim_timed_on(conn, relay_id, token, limit, lease, partitions).await?;
        tracing::debug!(
            partitions = claim.feed.as_ref().map_or(0, |feed| feed.parts.len()),
            events = claim.len(),
            acquire_ms = steps.acquire.as_secs_f64() * 1e3,
            read_ms = steps.read.as_secs_f64() * 1e3,
            plan_ms = steps.plan.as_secs_f64() * 1e3,
            "claimed"
        );
        Ok(claim)
    })
    .await
}

/// [`claim`], with the time each of its steps took.
pub async fn claim_timed(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
    partitions: u32,
) -> Result<(Claim, ClaimSteps), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    claim_timed_on(
        &mut conn,
        relay_id,
        Uuid::now_v7(),
        limit,
        lease,
        partitions,
    )
    .await
}

/// [`claim_timed`] on a connection the caller holds.
async fn claim_timed_on(
    conn: &mut PgConnection,
    relay_id: &str,
    token: Uuid,
    limit: u32,
    lease: Duration,
    partitions: u32,
) -> Result<(Claim, ClaimSteps), sqlx::Error> {
    let limit = i64::from(limit.max(1));
    let mut steps = ClaimSteps::default();
    let mut at = std::time::Instant::now();
    let mut lap = |step: &mut Duration| {
        let now = std::time::Instant::now();
        *step = now - at;
        at = now;
    };
    let owner = crate::engine::lease::token_owner(token).map(crate::engine::lease::owner_lock_key);

    // 1. Forget the relays that are gone, and lease partitions with work.
    let mut tx = sqlx::Connection::begin_with(&mut *conn, super::CLAIM_BEGIN).await?;
    // No more partitions than the batch holds events: each leased partition gets one.
    let partitions = partitions.min(u32::try_from(limit).unwrap_or(u32::MAX));
    let leased = feed::acquire(&mut tx, token, owner, relay_id, lease, partitions).await?;
    lap(&mut steps.acquire);
    if leased.is_empty() {
        tx.commit().await?;
        return Ok((Claim::empty(token), steps));
    }

    // 2. Read them in one snapshot and decide: most claims need only their segments, read
    //    by one statement in the lease's transaction (its snapshot is taken after the
    //    lease, so it sees whatever the partitions' previous settles wrote); the others are
    //    read in full once the lease is committed.
    let (rows, feed_claim) = match feed::read_fast(&mut tx, &leased, limit).await? {
        Some(found) => {
            let decided = feed::decide(&leased, found)?;
            count_claimed(&mut tx, token, &decided.1).await?;
            tx.commit().await?;
            decided
        }
        None => {
            tx.commit().await?;
            let shares = crate::engine::feed_claim::shares(limit, leased.len());
            let found = feed::read_full(&mut *conn, &leased, &shares).await?;
            let decided = feed::decide(&leased, found)?;
            let mut tx = sqlx::Connection::begin_with(&mut *conn, super::RELAY_BEGIN).await?;
            count_claimed(&mut tx, token, &decided.1).await?;
            tx.commit().await?;
            decided
        }
    };
    lap(&mut steps.read);

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
    lap(&mut steps.plan);
    let claim = Claim {
        token,
        events,
        undecodable,
        feed: Some(feed_claim),
    };
    Ok((claim, steps))
}

/// Records in each partition's row how many events the claim `token` took there, for the
/// gauges (nothing when it took none).
async fn count_claimed(
    conn: &mut PgConnection,
    token: Uuid,
    claim: &FeedClaim,
) -> Result<(), sqlx::Error> {
    let (counted, counts): (Vec<i32>, Vec<i32>) = claim
        .parts
        .iter()
        .filter_map(|p| {
            let n = p.plan.publish.len() + p.replays.len();
            (n > 0).then(|| {
                (
                    i32::try_from(p.part).unwrap_or(0),
                    i32::try_from(n).unwrap_or(i32::MAX),
                )
            })
        })
        .unzip();
    if !counted.is_empty() {
        sqlx::query(feed::CLAIMED_SQL)
            .bind(&counted)
            .bind(&counts)
            .bind(token)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Runs the statements of one claim of up to `limit` events from up to `partitions`
/// partitions, each under `EXPLAIN (ANALYZE, BUFFERS, WAL)`, in a transaction that is
/// rolled back: nothing is leased. Returns (statement, plan text) in the order the claim
/// runs them, with the values the claim would bind (the partitions that moved least
/// recently, their frontiers, each partition's share of `limit`).
pub async fn explain(
    pool: &PgPool,
    limit: u32,
    partitions: u32,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let limit = i64::from(limit.max(1));
    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut plans = Vec::new();
    plans.push((
        "1. lease partitions".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(feed::ACQUIRE_SQL)))
                .bind(Uuid::now_v7())
                .bind(None::<i32>)
                .bind("explain")
                .bind(60.0_f64)
                .bind(i64::from(partitions.max(1))),
        )
        .await?,
    ));
    let leased: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT part::bigint, frontier FROM outbox_partitions ORDER BY advanced_at LIMIT $1",
    )
    .bind(i64::from(partitions.max(1)))
    .fetch_all(&mut *tx)
    .await?;
    let parts: Vec<i64> = leased.iter().map(|&(part, _)| part).collect();
    let frontiers: Vec<i64> = leased.iter().map(|&(_, frontier)| frontier).collect();
    let shares = crate::engine::feed_claim::shares(limit, parts.len());
    plans.push((
        "2. segments in turn, held heads, more to read (most claims)".to_owned(),
        plan_of(
            &mut tx,
            sqlx::query(sqlx::AssertSqlSafe(explained(feed::SEGMENTS_FAST_SQL)))
                .bind(&parts)
                .bind(&frontiers)
                .bind(limit),
        )
        .await?,
    ));
    for (name, statement) in feed::READ_STATEMENTS {
        let query = sqlx::query(sqlx::AssertSqlSafe(explained(statement))).bind(&parts);
        let query = match name {
            "2. segments" => query.bind(&frontiers).bind(&shares),
            "2. gaps" => query.bind(&shares).bind(feed::GAP_GROUPS_PER_CLAIM + 1),
            _ => query.bind(&shares),
        };
        plans.push((name.to_owned(), plan_of(&mut tx, query).await?));
    }
    tx.rollback().await?;
    Ok(plans)
}

fn explained(statement: &str) -> String {
    format!("EXPLAIN (ANALYZE, BUFFERS, WAL) {statement}")
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
