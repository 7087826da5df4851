//! The partitioned feed (engine v3, step 4b): a claim leases up to a bound of free
//! partitions with work and reads them together in one snapshot, each statement over all of
//! them at once (`unnest` of the partitions, a `LATERAL` read per partition);
//! [`crate::engine::feed_claim::plan`] decides, per partition, what goes out; the settle
//! moves the frontiers of the partitions the claim still holds, notes and forgets gaps, and
//! changes held scopes ([`crate::engine::feed_settle`]). Nothing here writes an event's row.

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

/// At most this many due held scopes walked per partition of a claim.
pub const WALKS_PER_CLAIM: i64 = 200;

/// At most this many gaps looked at per partition of a claim.
pub const GAPS_PER_CLAIM: i64 = 1000;

/// Whether partition `c` has work a claim could do now (`c` is the alias of its row).
macro_rules! has_work {
    () => {
        "((SELECT true FROM outbox_events e
            WHERE e.seq % 16 = c.part AND (e.seq % 16, e.seq) > (c.part, c.frontier)
            ORDER BY e.seq % 16, e.seq LIMIT 1) IS NOT NULL
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

/// Whether partition `c` is free: unleased, its lease run out, or its owner gone (no
/// longer registered in `outbox_relay_owners`).
macro_rules! is_free {
    () => {
        "(c.token IS NULL OR c.leased_until < statement_timestamp()
          OR (c.owner IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM outbox_relay_owners o WHERE o.owner = c.owner)))"
    };
}

/// Forgets the relays that are gone: their registration, once their ownership lock is
/// free (the lock is held until the transaction ends). The claim's transaction runs it
/// before [`ACQUIRE_SQL`], as a statement of its own (the last of the claim's `BEGIN`,
/// `CLAIM_BEGIN`): in a `WITH` of the lease's `UPDATE`, a row another claim changed
/// meanwhile makes PostgreSQL recheck it, and the recheck may not run a data-modifying
/// `WITH` ("ModifyTable should not be called during EvalPlanQual").
pub const FORGET_GONE_SQL: &str =
    "DELETE FROM outbox_relay_owners o WHERE pg_try_advisory_xact_lock(1869968482, o.owner)";

/// Leases the free partitions with work that moved least recently, at most `$5`: `$1` the
/// token, `$2` the owner, `$3` the relay, `$4` the lease in seconds. Returns each partition
/// and its frontier. Run after [`FORGET_GONE_SQL`], in its transaction (the claim's
/// `BEGIN`, `CLAIM_BEGIN`).
pub const ACQUIRE_SQL: &str = concat!(
    "UPDATE outbox_partitions p
        SET token = $1, owner = $2, relay_id = $3, claimed = 0,
            leased_until = clock_timestamp() + make_interval(secs => $4)
      WHERE p.part = ANY (ARRAY(SELECT c.part FROM outbox_partitions c
                       WHERE ",
    is_free!(),
    " AND ",
    has_work!(),
    "
                       ORDER BY c.advanced_at
                       LIMIT $5
                         FOR UPDATE SKIP LOCKED))
     RETURNING p.part, p.frontier"
);

/// Whether a claim now would find work: a free partition with work (a partition whose
/// owner is gone, though still registered, counts as free).
pub const PROBE_SQL: &str = concat!(
    "WITH gone AS (SELECT o.owner FROM outbox_relay_owners o
                    WHERE pg_try_advisory_xact_lock(1869968482, o.owner))
     SELECT EXISTS (SELECT 1 FROM outbox_partitions c WHERE (c.owner IN (SELECT owner FROM gone) OR ",
    is_free!(),
    ") AND ",
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

/// The segments: after each partition's frontier, in seq order, at most its limit (`$1`
/// partitions, `$2` frontiers, `$3` limits).
pub const SEGMENT_SQL: &str = concat!(
    "SELECT p.part AS feed_part, ",
    row_columns!(),
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(part, frontier, lim)
     CROSS JOIN LATERAL (SELECT * FROM outbox_events e
                          WHERE e.seq % 16 = p.part AND (e.seq % 16, e.seq) > (p.part, p.frontier)
                          ORDER BY e.seq LIMIT p.lim) e"
);

/// The gaps of each partition (`$1`) whose rows are visible now, lowest first, at most its
/// limit (`$2`). (The gaps that will never fill are forgotten by the settle, all at once:
/// they need no reading.)
pub const GAPS_SQL: &str = concat!(
    "SELECT p.part AS feed_part, e.gap_seq, e.noted_xid::text::bigint AS noted_xid, ",
    row_columns!(),
    " FROM unnest($1::bigint[], $2::bigint[]) AS p(part, lim)
     CROSS JOIN LATERAL (SELECT g.seq AS gap_seq, g.noted_xid, e.*
                           FROM outbox_gaps g
                           JOIN outbox_events e ON e.seq % 16 = g.part AND e.seq = g.seq
                          WHERE g.part = p.part ORDER BY g.seq LIMIT p.lim) e"
);

/// The held scopes among `$1`.
pub const HELD_SQL: &str =
    "SELECT scope, head_seq, COALESCE(due_at <= statement_timestamp(), false) AS due
                          FROM outbox_held WHERE scope = ANY($1::text[])";

/// The due held scopes of each partition (`$1`), soonest first, at most its limit (`$2`).
pub const DUE_SQL: &str = "SELECT p.part AS feed_part, h.scope, h.head_seq, true AS due
       FROM unnest($1::bigint[], $2::bigint[]) AS p(part, lim)
      CROSS JOIN LATERAL (SELECT scope, head_seq FROM outbox_held
                           WHERE part = p.part AND due_at <= statement_timestamp()
                           ORDER BY due_at LIMIT p.lim) h";

/// Keyed scopes' walks: for each (`$1` scope, `$2` head, `$3` bound, `$4` limit), its
/// pending events from the head up to the bound, in seq order.
pub const WALK_KEYED_SQL: &str = concat!(
    "SELECT w.scope AS walk_scope, ",
    row_columns!(),
    " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS w(scope, head, bound, lim)
     CROSS JOIN LATERAL (SELECT * FROM outbox_events e
                          WHERE outbox_scope(e.tenant_id, e.ordering_key) = w.scope
                            AND e.seq >= w.head AND e.seq <= w.bound
                            AND e.status = 'pending'
                            AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.id)
                          ORDER BY e.seq LIMIT w.lim) e"
);

/// Unkeyed events' walks: the events `$1`, each still to go.
pub const WALK_ONE_SQL: &str = concat!(
    "SELECT '#' || e.id::text AS walk_scope, ",
    row_columns!(),
    " FROM outbox_events e
     WHERE e.id = ANY($1::uuid[]) AND e.status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.id)"
);

/// The due replays of each partition (`$1`), at most its limit (`$2`).
pub const REPLAYS_SQL: &str = concat!(
    "SELECT p.part AS feed_part, ",
    row_columns!(),
    " FROM unnest($1::bigint[], $2::bigint[]) AS p(part, lim)
     CROSS JOIN LATERAL (SELECT e.* FROM outbox_replays r JOIN outbox_events e ON e.id = r.event_id
                          WHERE r.part = p.part AND r.due_at <= statement_timestamp()
                          ORDER BY e.seq LIMIT p.lim) e"
);

/// The claim's reading statements that take only the partitions, their frontiers and
/// limits, by name (what `explain` and the benchmarks run).
pub const READ_STATEMENTS: [(&str, &str); 4] = [
    ("2. segments", SEGMENT_SQL),
    ("2. gaps", GAPS_SQL),
    ("2. due held scopes", DUE_SQL),
    ("2. due replays", REPLAYS_SQL),
];

/// What a settle of a feed claim needs besides the outcomes.
#[derive(Debug, Clone, Default)]
pub struct FeedClaim {
    /// The oldest transaction running when the claim read (`pg_snapshot_xmin`): the gaps
    /// noted before it whose rows it did not see will never fill.
    pub xmin: u64,
    /// The partitions leased, each with its claim's decisions.
    pub parts: Vec<PartitionClaim>,
}

/// One partition of a [`FeedClaim`].
#[derive(Debug, Clone, Default)]
pub struct PartitionClaim {
    /// The partition.
    pub part: i64,
    /// The claim's decisions for it.
    pub plan: FeedPlan,
    /// Its replayed events published (each on its own).
    pub replays: Vec<Uuid>,
}

impl FeedClaim {
    /// The partitions leased.
    pub fn partitions(&self) -> Vec<i64> {
        self.parts.iter().map(|p| p.part).collect()
    }
}

fn feed_row(row: &PgRow) -> Result<FeedRow, sqlx::Error> {
    Ok(FeedRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        scope: row.try_get("feed_scope")?,
        not_before: row.try_get::<Option<DateTime<Utc>>, _>("not_before")?,
    })
}

/// Leases up to `partitions` free partitions with work; none when there is none. Returns
/// each partition leased with its frontier. Runs in the caller's transaction, begun by the
/// claim's `BEGIN` (`CLAIM_BEGIN`, which forgets the relays that are gone first).
pub async fn acquire(
    conn: &mut PgConnection,
    token: Uuid,
    owner: Option<i32>,
    relay_id: &str,
    lease: Duration,
    partitions: u32,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(ACQUIRE_SQL)
        .bind(token)
        .bind(owner)
        .bind(relay_id)
        .bind(lease.as_secs_f64())
        .bind(i64::from(partitions.max(1)))
        .fetch_all(&mut *conn)
        .await?;
    let mut leased: Vec<(i64, i64)> = rows
        .into_iter()
        .map(|(part, frontier)| (i64::from(part), frontier))
        .collect();
    leased.sort_unstable();
    Ok(leased)
}

/// Rows grouped by the partition in column `feed_part`.
fn by_part(rows: Vec<PgRow>) -> Result<HashMap<i64, Vec<PgRow>>, sqlx::Error> {
    let mut grouped: HashMap<i64, Vec<PgRow>> = HashMap::new();
    for row in rows {
        grouped
            .entry(row.try_get::<i64, _>("feed_part")?)
            .or_default()
            .push(row);
    }
    Ok(grouped)
}

/// How many rows `grouped` holds for `part`.
fn count_in(grouped: &HashMap<i64, Vec<PgRow>>, part: i64) -> i64 {
    grouped.get(&part).map_or(0, |rows| rows.len() as i64)
}

/// What a claim read of its partitions, in one snapshot: per partition, the rows as the
/// plan sees them and as they were read (to be decoded and published).
#[derive(Default)]
pub(crate) struct Found {
    /// `pg_snapshot_xmin` of the snapshot.
    xmin: i64,
    segments: HashMap<i64, Vec<FeedRow>>,
    segment_rows: HashMap<i64, Vec<PgRow>>,
    gaps: HashMap<i64, Vec<GapFound>>,
    gap_rows: HashMap<i64, Vec<PgRow>>,
    held: HashMap<i64, Vec<HeldScope>>,
    walks: HashMap<i64, Vec<Walk>>,
    walk_rows: HashMap<i64, Vec<PgRow>>,
    replay_rows: HashMap<i64, Vec<PgRow>>,
}

/// Reads the partitions `leased` (each with its frontier) in one snapshot, each up to its
/// share of `limit`, and decides for each what goes out: the rows to publish (in seq order
/// within each partition) and what the settle will need.
///
/// Most claims need only the segments and the held scopes among their events: one
/// statement reads them ([`SEGMENTS_FAST_SQL`]), and says in the same snapshot whether any
/// partition has more (a due held scope or replay, a filled gap); only then are the
/// partitions read again, in full, in one `REPEATABLE READ` transaction.
pub async fn read(
    conn: &mut PgConnection,
    leased: &[(i64, i64)],
    limit: i64,
) -> Result<(Vec<PgRow>, FeedClaim), sqlx::Error> {
    let found = match read_fast(conn, leased, limit).await? {
        Some(found) => found,
        None => read_full(conn, leased, &feed_claim::shares(limit, leased.len())).await?,
    };
    decide(leased, found)
}

/// The segments after each frontier (`$1` partitions, `$2` frontiers), `$3` events in all,
/// taken from the partitions in turn (each partition's first event, then each one's second,
/// and so on: a partition with a backlog gets the room the others leave, and each partition
/// gives a prefix of its segment); each event with its scope's held head if it has one
/// (`held_head`, `held_due`); and per partition, in the same snapshot, whether it has more to
/// read (`more`: a due held scope, a due replay, a gap whose row is visible) and the
/// snapshot's `xmin`. A partition none of whose events is taken returns one row without an
/// event (`id` NULL).
pub const SEGMENTS_FAST_SQL: &str = concat!(
    "WITH p AS MATERIALIZED (
         SELECT u.part, u.frontier,
                pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS snapshot_xmin,
                (EXISTS (SELECT 1 FROM outbox_held h
                          WHERE h.part = u.part AND h.due_at <= statement_timestamp())
                 OR EXISTS (SELECT 1 FROM outbox_replays r
                             WHERE r.part = u.part AND r.due_at <= statement_timestamp())
                 OR EXISTS (SELECT 1 FROM outbox_gaps g
                              JOIN outbox_events e ON e.seq % 16 = g.part AND e.seq = g.seq
                             WHERE g.part = u.part)) AS more
           FROM unnest($1::bigint[], $2::bigint[]) AS u(part, frontier)),
     taken AS (
         SELECT c.part, c.seq FROM (
             SELECT p.part, s.seq, row_number() OVER (PARTITION BY p.part ORDER BY s.seq) AS turn
               FROM p CROSS JOIN LATERAL (SELECT e.seq FROM outbox_events e
                                           WHERE e.seq % 16 = p.part AND (e.seq % 16, e.seq) > (p.part, p.frontier)
                                           ORDER BY e.seq LIMIT $3) s) c
          ORDER BY c.turn, c.part LIMIT $3)
     SELECT p.part AS feed_part, p.snapshot_xmin, p.more,
            h.head_seq AS held_head, COALESCE(h.due_at <= statement_timestamp(), false) AS held_due, ",
    row_columns!(),
    " FROM p
     LEFT JOIN taken t ON t.part = p.part
     LEFT JOIN outbox_events e ON e.seq = t.seq
     -- One index look-up per event (the LIMIT keeps the planner from hashing the whole
     -- table of held scopes).
     LEFT JOIN LATERAL (SELECT h.head_seq, h.due_at FROM outbox_held h
                         WHERE e.id IS NOT NULL
                           AND h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key),
                                                  '#' || e.id::text)
                         LIMIT 1) h ON true"
);

/// The fast read ([`SEGMENTS_FAST_SQL`]): `None` when a partition has more to read than its
/// segment.
pub(crate) async fn read_fast(
    conn: &mut PgConnection,
    leased: &[(i64, i64)],
    limit: i64,
) -> Result<Option<Found>, sqlx::Error> {
    let parts: Vec<i64> = leased.iter().map(|&(part, _)| part).collect();
    let frontiers: Vec<i64> = leased.iter().map(|&(_, frontier)| frontier).collect();
    let rows = sqlx::query(SEGMENTS_FAST_SQL)
        .bind(&parts)
        .bind(&frontiers)
        .bind(limit.max(1))
        .fetch_all(&mut *conn)
        .await?;
    let mut found = Found::default();
    let mut held_seen = BTreeSet::new();
    let mut keyed: HashMap<i64, Vec<(FeedRow, PgRow)>> = HashMap::new();
    for row in rows {
        if row.try_get::<bool, _>("more")? {
            return Ok(None);
        }
        found.xmin = row.try_get("snapshot_xmin")?;
        if row.try_get::<Option<Uuid>, _>("id")?.is_none() {
            continue;
        }
        let part: i64 = row.try_get("feed_part")?;
        let feed = feed_row(&row)?;
        if let Some(head_seq) = row.try_get::<Option<i64>, _>("held_head")?
            && held_seen.insert(feed.scope.clone())
        {
            found.held.entry(part).or_default().push(HeldScope {
                scope: feed.scope.clone(),
                head_seq,
                due: row.try_get("held_due")?,
            });
        }
        keyed.entry(part).or_default().push((feed, row));
    }
    for (part, mut rows) in keyed {
        rows.sort_by_key(|(r, _)| r.seq);
        let (feed_rows, pg_rows): (Vec<FeedRow>, Vec<PgRow>) = rows.into_iter().unzip();
        found.segments.insert(part, feed_rows);
        found.segment_rows.insert(part, pg_rows);
    }
    Ok(Some(found))
}

/// Reads the partitions `leased` in full, in one `REPEATABLE READ` snapshot, each up to its
/// share of the batch (`shares`, in the order of `leased`: an even split, as these claims
/// are the rarer ones, with failures, schedules, replays or late commits to look at).
pub(crate) async fn read_full(
    conn: &mut PgConnection,
    leased: &[(i64, i64)],
    shares: &[i64],
) -> Result<Found, sqlx::Error> {
    let share_of: HashMap<i64, i64> = leased
        .iter()
        .zip(shares)
        .map(|(&(part, _), &share)| (part, share))
        .collect();
    let share = |part: &i64| share_of.get(part).copied().unwrap_or(1);
    let parts: Vec<i64> = leased.iter().map(|&(part, _)| part).collect();
    let frontiers: Vec<i64> = leased.iter().map(|&(_, frontier)| frontier).collect();
    let mut tx = sqlx::Connection::begin_with(
        &mut *conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
    .await?;
    let xmin: i64 = sqlx::query_scalar(SNAPSHOT_SQL).fetch_one(&mut *tx).await?;
    // Each partition's room: replays take at most a quarter of it; the due held scopes read
    // first share what is left with the gaps and the segment (half each), so neither starves
    // the other.
    let replay_rows = by_part(
        sqlx::query(REPLAYS_SQL)
            .bind(&parts)
            .bind(
                parts
                    .iter()
                    .map(|p| (share(p) / 4).max(1))
                    .collect::<Vec<i64>>(),
            )
            .fetch_all(&mut *tx)
            .await?,
    )?;
    let mut room: HashMap<i64, i64> = parts
        .iter()
        .map(|&part| {
            (
                part,
                share(&part)
                    .saturating_sub(count_in(&replay_rows, part))
                    .max(1),
            )
        })
        .collect();
    let due_limits: Vec<i64> = parts
        .iter()
        .map(|p| WALKS_PER_CLAIM.min(room.get(p).copied().unwrap_or(1)))
        .collect();
    let mut due: HashMap<i64, Vec<HeldScope>> = HashMap::new();
    for row in sqlx::query(DUE_SQL)
        .bind(&parts)
        .bind(&due_limits)
        .fetch_all(&mut *tx)
        .await?
    {
        due.entry(row.try_get("feed_part")?)
            .or_default()
            .push(HeldScope {
                scope: row.try_get("scope")?,
                head_seq: row.try_get("head_seq")?,
                due: true,
            });
    }
    let segment_rooms: Vec<i64> = parts
        .iter()
        .map(|p| {
            feed_claim::segment_room(
                room.get(p).copied().unwrap_or(1),
                due.get(p).map_or(0, Vec::len),
            )
        })
        .collect();
    // Gaps filled since they were noted come before anything later of their scopes: a
    // partition with more than this claim reads gets no segment read (whose events could
    // belong to the scopes of the gaps left for the next claim).
    let gap_limits: Vec<i64> = segment_rooms
        .iter()
        .map(|&r| GAPS_PER_CLAIM.min(r))
        .collect();
    let gap_rows = by_part(
        sqlx::query(GAPS_SQL)
            .bind(&parts)
            .bind(&gap_limits)
            .fetch_all(&mut *tx)
            .await?,
    )?;
    let segment_limits: Vec<i64> = parts
        .iter()
        .zip(segment_rooms.iter().zip(&gap_limits))
        .map(|(p, (&segment_room, &gap_limit))| {
            let gaps = count_in(&gap_rows, *p);
            if gaps >= gap_limit { 0 } else { segment_room }
        })
        .collect();
    let mut segment_rows = by_part(
        sqlx::query(SEGMENT_SQL)
            .bind(&parts)
            .bind(&frontiers)
            .bind(&segment_limits)
            .fetch_all(&mut *tx)
            .await?,
    )?;
    let mut segments: HashMap<i64, Vec<FeedRow>> = HashMap::new();
    for (part, rows) in &mut segment_rows {
        let mut keyed = Vec::with_capacity(rows.len());
        for row in rows.drain(..) {
            keyed.push((feed_row(&row)?, row));
        }
        keyed.sort_by_key(|(r, _)| r.seq);
        let (feed_rows, pg_rows): (Vec<FeedRow>, Vec<PgRow>) = keyed.into_iter().unzip();
        *rows = pg_rows;
        if let Some(left) = room.get_mut(part) {
            *left = left.saturating_sub(feed_rows.len() as i64);
        }
        segments.insert(*part, feed_rows);
    }
    let mut gaps: HashMap<i64, Vec<GapFound>> = HashMap::new();
    for (part, rows) in &gap_rows {
        if let Some(left) = room.get_mut(part) {
            *left = left.saturating_sub(rows.len() as i64);
        }
        for row in rows {
            gaps.entry(*part).or_default().push(GapFound {
                seq: row.try_get("gap_seq")?,
                noted_xid: u64::try_from(row.try_get::<i64, _>("noted_xid")?).unwrap_or(u64::MAX),
                row: Some(feed_row(row)?),
            });
        }
    }
    // The held scopes among those read, each in the partition that read it.
    let mut part_of_scope: HashMap<String, i64> = HashMap::new();
    for (part, rows) in &segments {
        for r in rows {
            part_of_scope.insert(r.scope.clone(), *part);
        }
    }
    for (part, found) in &gaps {
        for r in found.iter().filter_map(|g| g.row.as_ref()) {
            part_of_scope.insert(r.scope.clone(), *part);
        }
    }
    let scopes: Vec<&str> = part_of_scope
        .keys()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut held: HashMap<i64, Vec<HeldScope>> = HashMap::new();
    if !scopes.is_empty() {
        let found: Vec<(String, i64, bool)> = sqlx::query_as(HELD_SQL)
            .bind(&scopes)
            .fetch_all(&mut *tx)
            .await?;
        for (scope, head_seq, due) in found {
            if let Some(&part) = part_of_scope.get(&scope) {
                held.entry(part).or_default().push(HeldScope {
                    scope,
                    head_seq,
                    due,
                });
            }
        }
    }
    // The walks of the due held scopes, within each partition's room left: the walks not
    // taken now stay due for the next claim.
    let mut walked: Vec<(i64, HeldScope, i64)> = Vec::new();
    let (mut keyed_scopes, mut keyed_heads, mut keyed_bounds, mut keyed_limits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unkeyed: Vec<Uuid> = Vec::new();
    for (&part, &frontier) in parts.iter().zip(&frontiers) {
        let scopes = due.remove(&part).unwrap_or_default();
        let (taken, each) = feed_claim::walk_limits(
            room.get(&part).copied().unwrap_or(0),
            scopes.len(),
            WALK_LIMIT,
        );
        let bound = segments
            .get(&part)
            .and_then(|rows| rows.last())
            .map_or(frontier, |r| r.seq.max(frontier));
        for h in scopes.into_iter().take(taken) {
            match h.scope.strip_prefix('#') {
                Some(id) => {
                    if let Ok(id) = Uuid::parse_str(id) {
                        unkeyed.push(id);
                    }
                }
                None => {
                    keyed_scopes.push(h.scope.clone());
                    keyed_heads.push(h.head_seq);
                    keyed_bounds.push(bound);
                    keyed_limits.push(each + 1);
                }
            }
            walked.push((part, h, each));
        }
    }
    let mut walk_rows: Vec<PgRow> = Vec::new();
    if !keyed_scopes.is_empty() {
        walk_rows.extend(
            sqlx::query(WALK_KEYED_SQL)
                .bind(&keyed_scopes)
                .bind(&keyed_heads)
                .bind(&keyed_bounds)
                .bind(&keyed_limits)
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    if !unkeyed.is_empty() {
        walk_rows.extend(
            sqlx::query(WALK_ONE_SQL)
                .bind(&unkeyed)
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    tx.commit().await?;
    let mut rows_of_walk: HashMap<String, Vec<(FeedRow, PgRow)>> = HashMap::new();
    for row in walk_rows {
        let scope: String = row.try_get("walk_scope")?;
        rows_of_walk
            .entry(scope)
            .or_default()
            .push((feed_row(&row)?, row));
    }
    let mut walks: HashMap<i64, Vec<Walk>> = HashMap::new();
    let mut walk_pg_rows: HashMap<i64, Vec<PgRow>> = HashMap::new();
    for (part, h, each) in walked {
        let mut rows = rows_of_walk.remove(&h.scope).unwrap_or_default();
        rows.sort_by_key(|(r, _)| r.seq);
        let cut_short = rows.len() as i64 > each;
        rows.truncate(usize::try_from(each).unwrap_or(0));
        let (feed_rows, pg_rows): (Vec<FeedRow>, Vec<PgRow>) = rows.into_iter().unzip();
        walks.entry(part).or_default().push(Walk {
            held: h,
            rows: feed_rows,
            cut_short,
        });
        walk_pg_rows.entry(part).or_default().extend(pg_rows);
    }

    Ok(Found {
        xmin,
        segments,
        segment_rows,
        gaps,
        gap_rows,
        held,
        walks,
        walk_rows: walk_pg_rows,
        replay_rows,
    })
}

/// Each partition's plan from what its claim `found`, and the rows it publishes, by id:
/// each once (a replayed event goes out on its own).
pub(crate) fn decide(
    leased: &[(i64, i64)],
    found: Found,
) -> Result<(Vec<PgRow>, FeedClaim), sqlx::Error> {
    let Found {
        xmin,
        mut segments,
        mut segment_rows,
        mut gaps,
        mut gap_rows,
        mut held,
        mut walks,
        mut walk_rows,
        mut replay_rows,
    } = found;
    let xmin = u64::try_from(xmin).unwrap_or(0);
    let mut claim = FeedClaim {
        xmin,
        parts: Vec::with_capacity(leased.len()),
    };
    let mut rows: Vec<PgRow> = Vec::new();
    let mut seen = BTreeSet::new();
    for &(part, frontier) in leased {
        let partition = PartitionRead {
            part,
            frontier,
            xmin,
            segment: segments.remove(&part).unwrap_or_default(),
            gaps: gaps.remove(&part).unwrap_or_default(),
            held: held.remove(&part).unwrap_or_default(),
            walks: walks.remove(&part).unwrap_or_default(),
        };
        let plan = feed_claim::plan(&partition);
        let wanted: BTreeSet<Uuid> = plan.publish.iter().map(|r| r.id).collect();
        for row in walk_rows
            .remove(&part)
            .unwrap_or_default()
            .into_iter()
            .chain(gap_rows.remove(&part).unwrap_or_default())
            .chain(segment_rows.remove(&part).unwrap_or_default())
        {
            let id: Uuid = row.try_get("id")?;
            if wanted.contains(&id) && seen.insert(id) {
                rows.push(row);
            }
        }
        let mut replays = Vec::new();
        for row in replay_rows.remove(&part).unwrap_or_default() {
            let id: Uuid = row.try_get("id")?;
            if seen.insert(id) {
                replays.push(id);
                rows.push(row);
            }
        }
        claim.parts.push(PartitionClaim {
            part,
            plan,
            replays,
        });
    }
    Ok((rows, claim))
}

/// Counts the events the claim `$3` took in each partition (`$1` partitions, `$2` counts),
/// for the gauges.
pub const CLAIMED_SQL: &str = "UPDATE outbox_partitions p SET claimed = c.n
       FROM unnest($1::int[], $2::int[]) AS c(part, n)
      WHERE p.part = c.part AND p.token = $3";

/// Ends the leases of `token` and moves the frontiers (`$1` partitions, `$2` their new
/// frontiers, `$3` the token), and in the partitions whose lease was still the claim's,
/// writes the gaps: notes new ones (`$4` seqs) with the settle's own transaction id —
/// assigned after the claim's snapshot, so every writer that could still fill a gap has a
/// smaller one — and forgets the ones the claim read (`$5`) and, all at once, those that
/// will never fill: noted by a transaction older than every one running when the claim
/// read (`$6`, its `xmin`), and still without a row (had one committed, the claim would
/// have seen it). Returns the partitions settled; one missing was lost (its lease ran out,
/// or its relay was found gone, and another claim may hold it now): nothing of it is
/// written.
const ADVANCE_SQL: &str = "WITH advanced AS (
         UPDATE outbox_partitions p
            SET frontier = GREATEST(p.frontier, f.frontier), token = NULL, owner = NULL,
                relay_id = NULL, leased_until = NULL, claimed = 0,
                advanced_at = clock_timestamp()
           FROM unnest($1::int[], $2::bigint[]) AS f(part, frontier)
          WHERE p.part = f.part AND p.token = $3
         RETURNING p.part),
     read AS (
         DELETE FROM outbox_gaps g
          WHERE g.seq = ANY($5::bigint[]) AND g.part IN (SELECT part FROM advanced)),
     never AS (
         DELETE FROM outbox_gaps g
          WHERE g.part IN (SELECT part FROM advanced) AND g.noted_xid <= $6::text::xid8
            AND NOT EXISTS (SELECT 1 FROM outbox_events e
                             WHERE e.seq % 16 = g.part AND e.seq = g.seq)),
     noted AS (
         INSERT INTO outbox_gaps (seq, part, noted_xid)
         SELECT s, (s % 16)::int, pg_current_xact_id() FROM unnest($4::bigint[]) AS s
          WHERE (s % 16)::int IN (SELECT part FROM advanced)
         ON CONFLICT (seq) DO NOTHING)
     SELECT part FROM advanced";

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

/// Settles the claim `token`: all in the caller's transaction `conn`. Only the partitions
/// whose lease is still the claim's are settled; the outcomes of the others' events are
/// not recorded (their events go out again from the partition's next claim).
pub async fn settle(
    conn: &mut PgConnection,
    token: Uuid,
    claim: &FeedClaim,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<FeedSettled, sqlx::Error> {
    let mut settled = FeedSettled::default();
    if claim.parts.is_empty() {
        settled.lost = outcomes.len() as u64;
        return Ok(settled);
    }
    let parts: Vec<i32> = claim
        .parts
        .iter()
        .map(|p| i32::try_from(p.part).unwrap_or(0))
        .collect();
    let frontiers: Vec<i64> = claim.parts.iter().map(|p| p.plan.frontier).collect();
    let new_gaps: Vec<i64> = claim
        .parts
        .iter()
        .flat_map(|p| p.plan.new_gaps.iter().copied())
        .collect();
    let forget_gaps: Vec<i64> = claim
        .parts
        .iter()
        .flat_map(|p| p.plan.forget_gaps.iter().copied())
        .collect();
    let advanced: BTreeSet<i64> = sqlx::query_scalar::<_, i32>(ADVANCE_SQL)
        .bind(&parts)
        .bind(&frontiers)
        .bind(token)
        .bind(&new_gaps)
        .bind(&forget_gaps)
        .bind(claim.xmin.to_string())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(i64::from)
        .collect();
    let held_parts: Vec<&PartitionClaim> = claim
        .parts
        .iter()
        .filter(|p| advanced.contains(&p.part))
        .collect();
    // Only the events of the partitions still held: an outcome for any other is not this
    // settle's to record.
    let own: std::collections::HashSet<Uuid> = held_parts
        .iter()
        .flat_map(|p| {
            p.plan
                .publish
                .iter()
                .map(|r| r.id)
                .chain(p.replays.iter().copied())
        })
        .collect();
    let outcomes: Vec<&(Uuid, Outcome)> = outcomes
        .iter()
        .filter(|(id, _)| {
            let mine = own.contains(id);
            if !mine {
                settled.lost += 1;
            }
            mine
        })
        .collect();
    if held_parts.is_empty() {
        return Ok(settled);
    }
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
    for part in &held_parts {
        hold_scopes(conn, part, &by_id, &dead).await?;
    }
    // Replays.
    let replays: Vec<Uuid> = held_parts
        .iter()
        .flat_map(|p| p.replays.iter().copied())
        .collect();
    if !replays.is_empty() {
        let mut done = Vec::new();
        let mut again = Vec::new();
        let mut delays = Vec::new();
        let mut dead_again = Vec::new();
        for id in &replays {
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

/// Writes the held-scope changes of one settled partition (`outbox_held`): a statement
/// per scope that holds or is let go (a failure, a schedule, a walk's end), none for a
/// partition whose events all went out.
async fn hold_scopes(
    conn: &mut PgConnection,
    claim: &PartitionClaim,
    by_id: &HashMap<Uuid, Outcome>,
    dead: &HashMap<Uuid, bool>,
) -> Result<(), sqlx::Error> {
    let head_ids: HashMap<(&str, i64), Uuid> = claim
        .plan
        .publish
        .iter()
        .map(|r| ((r.scope.as_str(), r.seq), r.id))
        .collect();
    let part_of_scope = |scope: &str, seq: i64| -> i32 {
        let part = if scope.starts_with('#') {
            feed_claim::partition_of(seq)
        } else {
            claim.part
        };
        i32::try_from(part).unwrap_or(0)
    };
    for change in feed_settle::held_changes(&claim.plan, by_id) {
        match change {
            HeldChange::Hold {
                scope,
                head_seq,
                due,
                expected_head,
            } => {
                let head_dead = head_ids
                    .get(&(scope.as_str(), head_seq))
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
    Ok(())
}

/// An error text as the database can store it: PostgreSQL's text holds no NUL character.
fn storable(error: &str) -> String {
    error.replace('\0', "\u{fffd}")
}
