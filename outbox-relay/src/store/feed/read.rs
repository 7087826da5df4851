//! The read of leased partitions in one snapshot, and the decision of what goes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::claimed::{FeedClaim, PartitionClaim};
use crate::engine::feed_claim::{
    self, FeedRow, GapGroup, GapGroupRead, HeldScope, PartitionRead, Walk,
};

/// At most this many events of one held scope per walk.
pub const WALK_LIMIT: i64 = 100;

/// At most this many due held scopes walked per partition of a claim.
pub const WALKS_PER_CLAIM: i64 = 200;

/// At most this many filled gaps taken per partition of a claim.
pub const GAPS_PER_CLAIM: i64 = 1000;

/// At most this many due gap groups read per partition of a claim (each up to the
/// partition's limit of filled gaps; the groups left are read by the next claims).
pub const GAP_GROUPS_PER_CLAIM: i64 = 8;

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

/// The snapshot (which transactions were running: the settle narrows what the gap groups
/// read in full wait for).
pub const SNAPSHOT_SQL: &str = "SELECT pg_current_snapshot()::text";

/// The segments: after each partition's frontier, in seq order, at most its limit (`$1`
/// partitions, `$2` frontiers, `$3` limits).
pub const SEGMENT_SQL: &str = concat!(
    "SELECT p.part AS feed_part, ",
    row_columns!(),
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(part, frontier, lim)
     CROSS JOIN LATERAL (SELECT * FROM outbox_events e
                          WHERE e.seq % 16 = p.part AND e.seq > p.frontier
                          ORDER BY e.seq % 16, e.seq LIMIT p.lim) e"
);

/// The due gap groups of each partition (`$1`) in the order noted, at most `$3`, each with
/// the rows of its gaps that are visible now, lowest first, at most the partition's limit
/// (`$2`); a group none of whose gaps is visible returns one row without an event (`id`
/// NULL). Groups that are not due are not looked at: every transaction that could fill
/// one of their gaps still runs.
pub const GAPS_SQL: &str = concat!(
    "SELECT p.part AS feed_part, gg.noted_xid::text::bigint AS group_xid, ",
    row_columns!(),
    " FROM unnest($1::bigint[], $2::bigint[]) AS p(part, lim)
     CROSS JOIN LATERAL (SELECT gg.noted_xid FROM outbox_gap_groups gg
                          WHERE gg.part = p.part AND ",
    gap_group_due!("gg"),
    " ORDER BY gg.noted_xid LIMIT $3) gg
     LEFT JOIN LATERAL (SELECT e.*
                          FROM outbox_gaps g
                          JOIN outbox_events e ON e.seq % 16 = g.part AND e.seq = g.seq
                         WHERE g.part = p.part AND g.noted_xid = gg.noted_xid
                         ORDER BY g.seq LIMIT p.lim) e ON true"
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
                          WHERE e.ordering_key IS NOT NULL
                            AND outbox_scope(e.tenant_id, e.ordering_key) = w.scope
                            AND e.seq >= w.head AND e.seq <= w.bound
                            AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.id)
                            AND NOT EXISTS (SELECT 1 FROM outbox_delivered_behind d
                                             WHERE d.event_id = e.id)
                          ORDER BY e.seq LIMIT w.lim) e"
);

/// Unkeyed events' walks: the events `$1`, each still to go.
pub const WALK_ONE_SQL: &str = concat!(
    "SELECT '#' || e.id::text AS walk_scope, ",
    row_columns!(),
    " FROM outbox_events e
     WHERE e.id = ANY($1::uuid[])
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

fn feed_row(row: &PgRow) -> Result<FeedRow, sqlx::Error> {
    Ok(FeedRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        scope: row.try_get("feed_scope")?,
        not_before: row.try_get::<Option<DateTime<Utc>>, _>("not_before")?,
    })
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

/// What a claim takes of one partition's rows of [`GAPS_SQL`] (`limit` its limit of filled
/// gaps): [`feed_claim::take_gaps`] over the groups in the order noted, and the rows taken
/// as read.
fn take_gap_rows(
    rows: Vec<PgRow>,
    limit: usize,
) -> Result<(feed_claim::GapsTaken, Vec<PgRow>), sqlx::Error> {
    let mut by_group: BTreeMap<u64, Vec<FeedRow>> = BTreeMap::new();
    let mut read: HashMap<i64, PgRow> = HashMap::new();
    for row in rows {
        let noted_xid = u64::try_from(row.try_get::<i64, _>("group_xid")?).unwrap_or(u64::MAX);
        let group = by_group.entry(noted_xid).or_default();
        if row.try_get::<Option<Uuid>, _>("id")?.is_some() {
            let feed = feed_row(&row)?;
            group.push(feed.clone());
            read.insert(feed.seq, row);
        }
    }
    let mut groups: Vec<GapGroupRead> = by_group
        .into_iter()
        .map(|(noted_xid, mut rows)| {
            rows.sort_by_key(|r| r.seq);
            GapGroupRead { noted_xid, rows }
        })
        .collect();
    let more = groups.len() > usize::try_from(GAP_GROUPS_PER_CLAIM).unwrap_or(usize::MAX);
    groups.truncate(usize::try_from(GAP_GROUPS_PER_CLAIM).unwrap_or(usize::MAX));
    let taken = feed_claim::take_gaps(groups, more, limit);
    let pg_rows = taken
        .rows
        .iter()
        .filter_map(|r| read.remove(&r.seq))
        .collect();
    Ok((taken, pg_rows))
}

/// What a claim read of its partitions, in one snapshot: per partition, the rows as the
/// plan sees them and as they were read (to be decoded and published).
#[derive(Default)]
pub(crate) struct Found {
    /// The snapshot, when the claim read gap groups.
    snapshot: Option<String>,
    segments: HashMap<i64, Vec<FeedRow>>,
    segment_rows: HashMap<i64, Vec<PgRow>>,
    gaps: HashMap<i64, Vec<FeedRow>>,
    gap_groups: HashMap<i64, Vec<GapGroup>>,
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
/// read (`more`: a due held scope, a due replay, a due gap group). A partition none of whose events is taken returns one row without an
/// event (`id` NULL).
pub const SEGMENTS_FAST_SQL: &str = concat!(
    "WITH p AS MATERIALIZED (
         SELECT u.part, u.frontier,
                (EXISTS (SELECT 1 FROM outbox_held h
                          WHERE h.part = u.part AND h.due_at <= statement_timestamp())
                 OR EXISTS (SELECT 1 FROM outbox_replays r
                             WHERE r.part = u.part AND r.due_at <= statement_timestamp())
                 OR EXISTS (SELECT 1 FROM outbox_gap_groups gg
                             WHERE gg.part = u.part AND ",
    gap_group_due!("gg"),
    ")) AS more
           FROM unnest($1::bigint[], $2::bigint[]) AS u(part, frontier)),
     taken AS (
         SELECT c.part, c.seq FROM (
             SELECT p.part, s.seq, row_number() OVER (PARTITION BY p.part ORDER BY s.seq) AS turn
               FROM p CROSS JOIN LATERAL (SELECT e.seq FROM outbox_events e
                                           WHERE e.seq % 16 = p.part AND e.seq > p.frontier
                                           ORDER BY e.seq % 16, e.seq LIMIT $3) s) c
          ORDER BY c.turn, c.part LIMIT $3)
     SELECT p.part AS feed_part, p.more,
            h.head_seq AS held_head, COALESCE(h.due_at <= statement_timestamp(), false) AS held_due, ",
    row_columns!(),
    " FROM p
     LEFT JOIN taken t ON t.part = p.part
     LEFT JOIN outbox_events e ON e.seq % 16 = t.part AND e.seq = t.seq
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
    let snapshot: String = sqlx::query_scalar(SNAPSHOT_SQL).fetch_one(&mut *tx).await?;
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
    // partition whose filled gaps this claim does not take all gets no segment read (whose
    // events could belong to the scopes of the gaps left for the next claim).
    let gap_limits: Vec<i64> = segment_rooms
        .iter()
        .map(|&r| GAPS_PER_CLAIM.min(r).max(0))
        .collect();
    let mut gap_rows: HashMap<i64, Vec<PgRow>> = HashMap::new();
    let mut gaps: HashMap<i64, Vec<FeedRow>> = HashMap::new();
    let mut gap_groups: HashMap<i64, Vec<GapGroup>> = HashMap::new();
    let mut gaps_complete: HashMap<i64, bool> = HashMap::new();
    let mut read_groups = by_part(
        sqlx::query(GAPS_SQL)
            .bind(&parts)
            .bind(&gap_limits)
            .bind(GAP_GROUPS_PER_CLAIM + 1)
            .fetch_all(&mut *tx)
            .await?,
    )?;
    for (&part, &limit) in parts.iter().zip(&gap_limits) {
        let rows = read_groups.remove(&part).unwrap_or_default();
        let (taken, pg_rows) = take_gap_rows(rows, usize::try_from(limit).unwrap_or(0))?;
        gaps_complete.insert(part, taken.complete);
        gaps.insert(part, taken.rows);
        gap_groups.insert(part, taken.groups);
        gap_rows.insert(part, pg_rows);
    }
    let segment_limits: Vec<i64> = parts
        .iter()
        .zip(&segment_rooms)
        .map(|(p, &segment_room)| {
            if gaps_complete.get(p).copied().unwrap_or(false) {
                segment_room
            } else {
                0
            }
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
    for (part, rows) in &gap_rows {
        if let Some(left) = room.get_mut(part) {
            *left = left.saturating_sub(rows.len() as i64);
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
        for r in found {
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
        snapshot: Some(snapshot),
        segments,
        segment_rows,
        gaps,
        gap_groups,
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
        snapshot,
        mut segments,
        mut segment_rows,
        mut gaps,
        mut gap_groups,
        mut gap_rows,
        mut held,
        mut walks,
        mut walk_rows,
        mut replay_rows,
    } = found;
    let mut claim = FeedClaim {
        snapshot,
        parts: Vec::with_capacity(leased.len()),
    };
    let mut rows: Vec<PgRow> = Vec::new();
    let mut seen = BTreeSet::new();
    for &(part, frontier) in leased {
        let partition = PartitionRead {
            part,
            frontier,
            segment: segments.remove(&part).unwrap_or_default(),
            gaps: gaps.remove(&part).unwrap_or_default(),
            gap_groups: gap_groups.remove(&part).unwrap_or_default(),
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
