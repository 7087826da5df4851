//! The partitioned feed (engine v3, step 4b): a claim leases one partition and reads it in
//! one snapshot; [`crate::engine::feed_claim::plan`] decides what goes out; the settle moves
//! the partition's frontier, notes and forgets gaps, and changes held scopes
//! ([`crate::engine::feed_settle`]). Nothing here writes an event's row.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::engine::feed_claim::{
    self, FeedPlan, FeedRow, GapFound, HeldScope, PartitionRead, Walk,
};
use crate::engine::feed_settle::{self, Due, HeldChange};
use crate::engine::outcome::Outcome;

/// At most this many events of one held scope per walk.
pub const WALK_LIMIT: i64 = 100;

/// At most this many due held scopes walked per claim.
pub const WALKS_PER_CLAIM: i64 = 200;

/// At most this many gaps looked at per claim.
pub const GAPS_PER_CLAIM: i64 = 1000;

/// Whether partition `c` has work a claim could do now (`c` is the alias of its row).
macro_rules! has_work {
    () => {
        "(EXISTS (SELECT 1 FROM outbox_events e WHERE e.seq % 16 = c.part AND e.seq > c.frontier)
          OR EXISTS (SELECT 1 FROM outbox_held h
                      WHERE h.part = c.part AND h.due_at <= statement_timestamp())
          OR EXISTS (SELECT 1 FROM outbox_replays r JOIN outbox_events e ON e.id = r.event_id
                      WHERE r.part = c.part AND r.due_at <= statement_timestamp())
          OR EXISTS (SELECT 1 FROM outbox_gaps g
                      WHERE g.part = c.part
                        AND (pg_snapshot_xmin(pg_current_snapshot()) >= g.noted_xid
                             OR EXISTS (SELECT 1 FROM outbox_events e
                                         WHERE e.seq % 16 = g.part AND e.seq = g.seq))))"
    };
}

/// Whether partition `c` is free: unleased, its lease run out, or its owner gone (`gone`
/// holds the owners found gone by this statement).
macro_rules! is_free {
    () => {
        "(c.token IS NULL OR c.leased_until < statement_timestamp()
          OR c.owner IN (SELECT owner FROM gone)
          OR (c.owner IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM outbox_relay_owners o WHERE o.owner = c.owner)))"
    };
}

/// Forgets the relays that are gone (their ownership lock is free), then leases the free
/// partition with work that moved least recently: `$1` the token, `$2` the owner, `$3` the
/// relay, `$4` the lease in seconds. Returns the partition and its frontier.
pub const ACQUIRE_SQL: &str = concat!(
    "WITH gone AS (
         DELETE FROM outbox_relay_owners o
          WHERE pg_try_advisory_xact_lock(1869968482, o.owner)
         RETURNING o.owner)
     UPDATE outbox_partitions p
        SET token = $1, owner = $2, relay_id = $3,
            leased_until = clock_timestamp() + make_interval(secs => $4)
      WHERE p.part = (SELECT c.part FROM outbox_partitions c
                       WHERE ",
    is_free!(),
    " AND ",
    has_work!(),
    "
                       ORDER BY c.advanced_at
                       LIMIT 1
                         FOR UPDATE SKIP LOCKED)
     RETURNING p.part, p.frontier"
);

/// Whether a claim now would find work: a free partition with work.
pub const PROBE_SQL: &str = concat!(
    "WITH gone AS (SELECT o.owner FROM outbox_relay_owners o
                    WHERE pg_try_advisory_xact_lock(1869968482, o.owner))
     SELECT EXISTS (SELECT 1 FROM outbox_partitions c WHERE ",
    is_free!(),
    " AND ",
    has_work!(),
    ")"
);

/// The columns a claim reads of an event row `e`.
macro_rules! row_columns {
    () => {
        "e.id, e.seq, e.tenant_id, e.event_type, e.schema_ref, e.category, e.ordering_key,
         e.payload::text AS payload, e.headers::text AS headers, e.dedupe_key,
         CASE WHEN e.occurred_at BETWEEN '0001-01-01Z' AND '9999-12-31Z' THEN e.occurred_at END AS occurred_at,
         CASE WHEN e.created_at BETWEEN '0001-01-01Z' AND '9999-12-31Z' THEN e.created_at END AS created_at,
         COALESCE((SELECT LEAST(a.failures, 2147483646) FROM outbox_attempts a WHERE a.event_id = e.id), 0) AS attempts,
         COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text) AS feed_scope,
         CASE WHEN e.available_at > statement_timestamp() THEN e.available_at END AS not_before"
    };
}

/// The oldest transaction running when the snapshot was taken.
pub const SNAPSHOT_SQL: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// The segment: `$1` partition, `$2` frontier, `$3` limit.
pub const SEGMENT_SQL: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM outbox_events e WHERE e.seq % 16 = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3"
);

/// The gaps of partition `$1` whose rows are visible now, lowest first, at most `$2`. (The
/// gaps that will never fill are forgotten by the settle, all at once: they need no
/// reading.)
pub const GAPS_SQL: &str = concat!(
    "SELECT g.seq AS gap_seq, g.noted_xid::text::bigint AS noted_xid, ",
    row_columns!(),
    " FROM outbox_gaps g
      JOIN outbox_events e ON e.seq % 16 = g.part AND e.seq = g.seq
     WHERE g.part = $1 ORDER BY g.seq LIMIT $2"
);

/// The held scopes among `$1`.
pub const HELD_SQL: &str =
    "SELECT scope, head_seq, COALESCE(due_at <= statement_timestamp(), false) AS due
                          FROM outbox_held WHERE scope = ANY($1::text[])";

/// The due held scopes of partition `$1`, soonest first, at most `$2`.
pub const DUE_SQL: &str = "SELECT scope, head_seq, true AS due FROM outbox_held
                        WHERE part = $1 AND due_at <= statement_timestamp()
                        ORDER BY due_at LIMIT $2";

/// A keyed scope's walk: `$1` scope, `$2` head, `$3` bound, `$4` limit.
pub const WALK_KEYED_SQL: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM outbox_events e
     WHERE outbox_scope(e.tenant_id, e.ordering_key) = $1 AND e.seq >= $2 AND e.seq <= $3
       AND e.status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.id)
     ORDER BY e.seq LIMIT $4"
);

/// An unkeyed event's walk: `$1` its id.
pub const WALK_ONE_SQL: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM outbox_events e
     WHERE e.id = $1 AND e.status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.id)"
);

/// The due replays of partition `$1`.
pub const REPLAYS_SQL: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM outbox_replays r JOIN outbox_events e ON e.id = r.event_id
     WHERE r.part = $1 AND r.due_at <= statement_timestamp()
     ORDER BY e.seq LIMIT $2"
);

/// The claim's reading statements that take only the partition, its frontier and a limit,
/// by name (what `explain` and the benchmarks run).
pub const READ_STATEMENTS: [(&str, &str); 4] = [
    ("2. segment", SEGMENT_SQL),
    ("2. gaps", GAPS_SQL),
    ("2. due held scopes", DUE_SQL),
    ("2. due replays", REPLAYS_SQL),
];

/// What a settle of a feed claim needs besides the outcomes.
#[derive(Debug, Clone, Default)]
pub struct FeedClaim {
    /// The partition leased.
    pub part: i64,
    /// The oldest transaction running when the claim read (`pg_snapshot_xmin`): the gaps
    /// noted before it whose rows it did not see will never fill.
    pub xmin: u64,
    /// The claim's decisions.
    pub plan: FeedPlan,
    /// The replayed events published (each on its own).
    pub replays: Vec<Uuid>,
}

fn feed_row(row: &PgRow) -> Result<FeedRow, sqlx::Error> {
    Ok(FeedRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        scope: row.try_get("feed_scope")?,
        not_before: row.try_get::<Option<DateTime<Utc>>, _>("not_before")?,
    })
}

/// Leases a free partition with work; `None` when there is none.
pub async fn acquire(
    conn: &mut PgConnection,
    token: Uuid,
    owner: Option<i32>,
    relay_id: &str,
    lease: Duration,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row: Option<(i32, i64)> = sqlx::query_as(ACQUIRE_SQL)
        .bind(token)
        .bind(owner)
        .bind(relay_id)
        .bind(lease.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(part, frontier)| (i64::from(part), frontier)))
}

/// Reads partition `part` from `frontier` in one snapshot and decides what goes out: the
/// rows to publish (in seq order) and what the settle will need.
pub async fn read(
    conn: &mut PgConnection,
    part: i64,
    frontier: i64,
    limit: i64,
) -> Result<(Vec<PgRow>, FeedClaim), sqlx::Error> {
    let mut tx = sqlx::Connection::begin_with(
        &mut *conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
    .await?;
    let xmin: i64 = sqlx::query_scalar(SNAPSHOT_SQL).fetch_one(&mut *tx).await?;
    // The batch's room: replays take at most a quarter of it; the due held scopes read
    // first share what is left with the segment (half each), so neither starves the other.
    let replay_rows: Vec<PgRow> = sqlx::query(REPLAYS_SQL)
        .bind(part)
        .bind((limit / 4).max(1))
        .fetch_all(&mut *tx)
        .await?;
    let mut room = limit.saturating_sub(replay_rows.len() as i64).max(1);
    let due: Vec<HeldScope> = sqlx::query_as(DUE_SQL)
        .bind(part)
        .bind(WALKS_PER_CLAIM.min(room))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(scope, head_seq, due): (String, i64, bool)| HeldScope {
            scope,
            head_seq,
            due,
        })
        .collect();
    let segment_limit = if due.is_empty() {
        room
    } else {
        (room / 2).max(1)
    };
    // Gaps filled since they were noted come before anything later of their scopes: when
    // there are more than this claim reads, it reads no segment (whose events could belong
    // to the scopes of the gaps left for the next claim).
    let gap_rows: Vec<PgRow> = sqlx::query(GAPS_SQL)
        .bind(part)
        .bind(GAPS_PER_CLAIM.min(segment_limit))
        .fetch_all(&mut *tx)
        .await?;
    let segment_rows: Vec<PgRow> = if gap_rows.len() as i64 >= GAPS_PER_CLAIM.min(segment_limit) {
        Vec::new()
    } else {
        sqlx::query(SEGMENT_SQL)
            .bind(part)
            .bind(frontier)
            .bind(segment_limit)
            .fetch_all(&mut *tx)
            .await?
    };
    room = room.saturating_sub(segment_rows.len() as i64 + gap_rows.len() as i64);
    let segment = segment_rows
        .iter()
        .map(feed_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut gaps = Vec::with_capacity(gap_rows.len());
    for row in &gap_rows {
        gaps.push(GapFound {
            seq: row.try_get("gap_seq")?,
            noted_xid: u64::try_from(row.try_get::<i64, _>("noted_xid")?).unwrap_or(u64::MAX),
            row: Some(feed_row(row)?),
        });
    }
    let scopes: Vec<&str> = segment
        .iter()
        .map(|r| r.scope.as_str())
        .chain(
            gaps.iter()
                .filter_map(|g| g.row.as_ref())
                .map(|r| r.scope.as_str()),
        )
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let held: Vec<HeldScope> = sqlx::query_as(HELD_SQL)
        .bind(&scopes)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(scope, head_seq, due): (String, i64, bool)| HeldScope {
            scope,
            head_seq,
            due,
        })
        .collect();
    let bound = segment.last().map_or(frontier, |r| r.seq.max(frontier));
    let mut walks = Vec::with_capacity(due.len());
    let mut walk_rows: Vec<PgRow> = Vec::new();
    for h in due {
        // Within the batch's room: the walks not taken now stay due for the next claim.
        let per_walk = WALK_LIMIT.min(room);
        if per_walk <= 0 {
            break;
        }
        let rows: Vec<PgRow> = match h.scope.strip_prefix('#') {
            Some(id) => match Uuid::parse_str(id) {
                Ok(id) => {
                    sqlx::query(WALK_ONE_SQL)
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?
                }
                Err(_) => Vec::new(),
            },
            None => {
                sqlx::query(WALK_KEYED_SQL)
                    .bind(&h.scope)
                    .bind(h.head_seq)
                    .bind(bound)
                    .bind(per_walk + 1)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let cut_short = rows.len() as i64 > per_walk;
        let taken: Vec<PgRow> = rows
            .into_iter()
            .take(usize::try_from(per_walk).unwrap_or(0))
            .collect();
        room = room.saturating_sub(taken.len() as i64);
        walks.push(Walk {
            held: h,
            rows: taken.iter().map(feed_row).collect::<Result<Vec<_>, _>>()?,
            cut_short,
        });
        walk_rows.extend(taken);
    }
    tx.commit().await?;

    let partition = PartitionRead {
        part,
        frontier,
        xmin: u64::try_from(xmin).unwrap_or(0),
        segment,
        gaps,
        held,
        walks,
    };
    let plan = feed_claim::plan(&partition);
    // The rows to publish, by id: each once (a replayed event goes out on its own).
    let wanted: HashMap<Uuid, ()> = plan.publish.iter().map(|r| (r.id, ())).collect();
    let mut rows: Vec<PgRow> = Vec::with_capacity(plan.publish.len() + replay_rows.len());
    let mut seen = BTreeSet::new();
    for row in walk_rows.into_iter().chain(gap_rows).chain(segment_rows) {
        let id: Uuid = row.try_get("id")?;
        if wanted.contains_key(&id) && seen.insert(id) {
            rows.push(row);
        }
    }
    let mut replays = Vec::new();
    for row in replay_rows {
        let id: Uuid = row.try_get("id")?;
        if seen.insert(id) {
            replays.push(id);
            rows.push(row);
        }
    }
    Ok((
        rows,
        FeedClaim {
            part,
            xmin: partition.xmin,
            plan,
            replays,
        },
    ))
}

/// Counts the events the claim `$2` of partition `$1` took (`$3`), for the gauges.
pub const CLAIMED_SQL: &str =
    "UPDATE outbox_partitions SET claimed = $3 WHERE part = $1 AND token = $2";

/// Ends the lease of `token` on `part` and moves the frontier: `$1` part, `$2` token, `$3`
/// the new frontier. No row: the lease was lost (reaped, or taken by another relay).
const ADVANCE_SQL: &str = "UPDATE outbox_partitions
                              SET frontier = GREATEST(frontier, $3), token = NULL, owner = NULL,
                                  relay_id = NULL, leased_until = NULL, claimed = 0,
                                  advanced_at = clock_timestamp()
                            WHERE part = $1 AND token = $2
                           RETURNING 1";

/// Notes new gaps (`$1` seqs, `$2` part) with the settle's own transaction id — assigned
/// after the claim's snapshot, so every writer that could still fill a gap has a smaller
/// one — and forgets the ones the claim read (`$3`) and, all at once, those that will
/// never fill: noted by a transaction older than every one running when the claim read
/// (`$4`, its `xmin`), and still without a row (had one committed, the claim would have seen
/// it, and the settle sees it too).
const GAPS_WRITE_SQL: &str = "WITH read AS (DELETE FROM outbox_gaps WHERE seq = ANY($3::bigint[])),
          never AS (DELETE FROM outbox_gaps g
                     WHERE g.part = $2 AND g.noted_xid <= $4::text::xid8
                       AND NOT EXISTS (SELECT 1 FROM outbox_events e
                                        WHERE e.seq % 16 = g.part AND e.seq = g.seq))
     INSERT INTO outbox_gaps (seq, part, noted_xid)
     SELECT s, $2, pg_current_xact_id() FROM unnest($1::bigint[]) AS s
     ON CONFLICT (seq) DO NOTHING";

/// Failures counted per event (`$1` ids, `$2` errors, `$3` whether rejected, `$4` the
/// attempt limit): returns each event's id and whether it is now dead.
const FAILURES_SQL: &str = "WITH input AS (
         SELECT DISTINCT ON (i.id) i.id, i.error, i.rejected
           FROM unnest($1::uuid[], $2::text[], $3::bool[]) AS i(id, error, rejected)
          ORDER BY i.id),
     counted AS (
         INSERT INTO outbox_attempts AS a (event_id, failures, last_error, next_attempt_at, dead_at, updated_at)
         SELECT i.id, 1, i.error, NULL, CASE WHEN i.rejected OR 1 >= $4 THEN clock_timestamp() END,
                clock_timestamp()
           FROM input i
         ON CONFLICT (event_id) DO UPDATE
            SET failures = LEAST(a.failures, 2147483646) + 1,
                last_error = EXCLUDED.last_error,
                dead_at = CASE WHEN EXCLUDED.dead_at IS NOT NULL
                                 OR LEAST(a.failures, 2147483646) + 1 >= $4
                               THEN clock_timestamp() END,
                updated_at = EXCLUDED.updated_at
         RETURNING a.event_id, a.dead_at IS NOT NULL AS dead)
     SELECT event_id, dead FROM counted";

/// Holds a scope: `$1` scope, `$2` part, `$3` head; due as `$4` says (`dead`: never; `at`:
/// at `$6`; otherwise `$5` seconds from now on the database's clock, at most a century);
/// `$7` the head expected (NULL: a scope not walked by this claim, held unless held earlier
/// already).
const HOLD_SQL: &str = "INSERT INTO outbox_held AS h (scope, part, head_seq, due_at)
     VALUES ($1, $2, $3,
             CASE $4 WHEN 'dead' THEN NULL
                     WHEN 'at' THEN $6
                     ELSE clock_timestamp() + make_interval(secs => LEAST($5, 3153600000.0)) END)
     ON CONFLICT (scope) DO UPDATE
        SET head_seq = EXCLUDED.head_seq, due_at = EXCLUDED.due_at, updated_at = clock_timestamp()
      WHERE ($7::bigint IS NOT NULL AND h.head_seq = $7)
         OR ($7::bigint IS NULL AND EXCLUDED.head_seq < h.head_seq)";

/// Lets a walked scope go: `$1` scope, `$2` the head walked from.
const RELEASE_SQL: &str = "DELETE FROM outbox_held WHERE scope = $1 AND head_seq = $2";

/// Settles replays: `$1` delivered (forgotten), `$2` failed again (due `$3` seconds later per
/// event, or dead when `$4` says so).
const REPLAYS_DONE_SQL: &str = "WITH done AS (DELETE FROM outbox_replays WHERE event_id = ANY($1::uuid[]))
     UPDATE outbox_replays r
        SET due_at = CASE WHEN f.dead THEN NULL
                          ELSE clock_timestamp() + make_interval(secs => LEAST(f.delay, 3153600000.0)) END
       FROM unnest($2::uuid[], $3::float8[], $4::bool[]) AS f(id, delay, dead)
      WHERE r.event_id = f.id";

/// What a settle recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettled {
    /// Events delivered.
    pub delivered: u64,
    /// Events that failed and will be retried.
    pub retrying: u64,
    /// Events now dead.
    pub dead: u64,
    /// Events released unpublished.
    pub released: u64,
    /// Outcomes not recorded: the partition's lease was lost.
    pub lost: u64,
}

/// Settles the claim `token` of `claim.part`: all in the caller's transaction `conn`.
pub async fn settle(
    conn: &mut PgConnection,
    token: Uuid,
    claim: &FeedClaim,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<FeedSettled, sqlx::Error> {
    let mut settled = FeedSettled::default();
    // Only the claim's own events: an outcome for any other is not this settle's to record.
    let own: std::collections::HashSet<Uuid> = claim
        .plan
        .publish
        .iter()
        .map(|r| r.id)
        .chain(claim.replays.iter().copied())
        .collect();
    let outcomes: Vec<&(Uuid, Outcome)> = outcomes.iter().collect();
    let before = outcomes.len();
    let outcomes: Vec<&(Uuid, Outcome)> = outcomes
        .into_iter()
        .filter(|(id, _)| own.contains(id))
        .collect();
    settled.lost = (before - outcomes.len()) as u64;
    let advanced: Option<i32> = sqlx::query_scalar(ADVANCE_SQL)
        .bind(i32::try_from(claim.part).unwrap_or(0))
        .bind(token)
        .bind(claim.plan.frontier)
        .fetch_optional(&mut *conn)
        .await?;
    if advanced.is_none() {
        settled.lost += outcomes.len() as u64;
        return Ok(settled);
    }
    sqlx::query(GAPS_WRITE_SQL)
        .bind(&claim.plan.new_gaps)
        .bind(i32::try_from(claim.part).unwrap_or(0))
        .bind(&claim.plan.forget_gaps)
        .bind(claim.xmin.to_string())
        .execute(&mut *conn)
        .await?;
    // Failures, counted per event.
    let mut ids = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut rejected = Vec::new();
    for (id, outcome) in &outcomes {
        match outcome {
            Outcome::Failed { error, .. } => {
                ids.push(*id);
                errors.push(storable(error));
                rejected.push(false);
            }
            Outcome::Rejected { error } => {
                ids.push(*id);
                errors.push(storable(error));
                rejected.push(true);
            }
            Outcome::Delivered | Outcome::Released => {}
        }
    }
    let dead: HashMap<Uuid, bool> = if ids.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as(FAILURES_SQL)
            .bind(&ids)
            .bind(&errors)
            .bind(&rejected)
            .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
    };
    let by_id: HashMap<Uuid, Outcome> = outcomes.iter().map(|o| (*o).clone()).collect();
    for (id, outcome) in &outcomes {
        match outcome {
            Outcome::Delivered => settled.delivered += 1,
            Outcome::Released => settled.released += 1,
            Outcome::Failed { .. } | Outcome::Rejected { .. } => {
                if dead.get(id).copied().unwrap_or(false) {
                    settled.dead += 1;
                } else {
                    settled.retrying += 1;
                }
            }
        }
    }
    // Held scopes.
    let head_ids: HashMap<(String, i64), Uuid> = claim
        .plan
        .publish
        .iter()
        .map(|r| ((r.scope.clone(), r.seq), r.id))
        .collect();
    let part_of_scope = |scope: &str, seq: i64| -> i32 {
        if scope.starts_with('#') {
            feed_claim::partition_of(seq) as i32
        } else {
            claim.part as i32
        }
    };
    for change in feed_settle::held_changes(&claim.plan, &by_id) {
        match change {
            HeldChange::Hold {
                scope,
                head_seq,
                due,
                expected_head,
            } => {
                let head_dead = head_ids
                    .get(&(scope.clone(), head_seq))
                    .and_then(|id| dead.get(id))
                    .copied()
                    .unwrap_or(false);
                let (kind, delay, at): (&str, f64, Option<DateTime<Utc>>) = match due {
                    Due::Dead => ("dead", 0.0, None),
                    Due::Retry(_) if head_dead => ("dead", 0.0, None),
                    Due::Retry(delay) => ("in", delay.as_secs_f64(), None),
                    Due::Now => ("in", 0.0, None),
                    Due::At(at) => ("at", 0.0, Some(at)),
                };
                sqlx::query(HOLD_SQL)
                    .bind(&scope)
                    .bind(part_of_scope(&scope, head_seq))
                    .bind(head_seq)
                    .bind(kind)
                    .bind(delay)
                    .bind(at)
                    .bind(expected_head)
                    .execute(&mut *conn)
                    .await?;
            }
            HeldChange::Release {
                scope,
                expected_head,
            } => {
                sqlx::query(RELEASE_SQL)
                    .bind(&scope)
                    .bind(expected_head)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    // Replays.
    if !claim.replays.is_empty() {
        let mut done = Vec::new();
        let mut again = Vec::new();
        let mut delays = Vec::new();
        let mut dead_again = Vec::new();
        for id in &claim.replays {
            match by_id.get(id) {
                Some(Outcome::Delivered) => done.push(*id),
                Some(Outcome::Failed { retry_in, .. }) => {
                    again.push(*id);
                    delays.push(retry_in.as_secs_f64());
                    dead_again.push(dead.get(id).copied().unwrap_or(false));
                }
                Some(Outcome::Rejected { .. }) => {
                    again.push(*id);
                    delays.push(0.0);
                    dead_again.push(true);
                }
                Some(Outcome::Released) | None => {}
            }
        }
        sqlx::query(REPLAYS_DONE_SQL)
            .bind(&done)
            .bind(&again)
            .bind(&delays)
            .bind(&dead_again)
            .execute(&mut *conn)
            .await?;
    }
    Ok(settled)
}

/// An error text as the database can store it: PostgreSQL's text holds no NUL character.
fn storable(error: &str) -> String {
    error.replace('\0', "\u{fffd}")
}
