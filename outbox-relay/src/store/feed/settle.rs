//! The settle of a feed claim: frontiers, gaps, failures, held scopes and replays, for the
//! partitions the claim still holds.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::claimed::{FeedClaim, PartitionClaim};
use crate::engine::feed_claim;
use crate::engine::feed_settle::{self, Due, HeldChange};
use crate::engine::outcome::Outcome;

/// Ends the leases of `token` and moves the frontiers (`$1` partitions, `$2` their new
/// frontiers, `$3` the token), and in the partitions whose lease was still the claim's,
/// writes the gaps:
/// - notes new ones (`$4` seqs), one group per partition, with the settle's own transaction
///   id — assigned after the claim's snapshot, so every writer that could still fill a gap
///   has a smaller one — waiting for every transaction running now that is older than the
///   settle (the snapshot's running ones, and every id handed out from its `xmax` on: none
///   of those had ended when the snapshot was taken), and due at the next claim
///   (`recheck`: a writer may have ended between the claim's snapshot and this one);
/// - forgets the gaps the claim read (`$5`);
/// - narrows each group the claim read in full (`$6` partitions, `$7` noted ids) to the
///   transactions still running in the claim's snapshot (`$8`), and forgets it with its
///   gaps when none is (what is left of it will never fill) or no gap of it is left.
///
/// Returns the partitions settled; one missing was lost (its lease ran out, or its relay
/// was found gone, and another claim may hold it now): nothing of it is written.
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
     narrowing AS (
         SELECT gg.part, gg.noted_xid,
                ARRAY(SELECT w FROM unnest(gg.waiting) AS w
                       WHERE NOT pg_visible_in_snapshot(w, $8::text::pg_snapshot)) AS still,
                EXISTS (SELECT 1 FROM outbox_gaps g
                         WHERE g.part = gg.part AND g.noted_xid = gg.noted_xid
                           AND g.seq <> ALL($5::bigint[])) AS gaps_left
           FROM unnest($6::int[], $7::bigint[]) AS f(part, noted)
           JOIN outbox_gap_groups gg ON gg.part = f.part AND gg.noted_xid = f.noted::text::xid8
          WHERE gg.part IN (SELECT part FROM advanced)),
     done AS (
         DELETE FROM outbox_gap_groups gg USING narrowing n
          WHERE gg.part = n.part AND gg.noted_xid = n.noted_xid
            AND (cardinality(n.still) = 0 OR NOT n.gaps_left)),
     narrowed AS (
         UPDATE outbox_gap_groups gg SET waiting = n.still, recheck = false
           FROM narrowing n
          WHERE gg.part = n.part AND gg.noted_xid = n.noted_xid
            AND cardinality(n.still) > 0 AND n.gaps_left),
     grouped AS (
         INSERT INTO outbox_gap_groups (part, noted_xid, waiting)
         SELECT DISTINCT (s % 16)::int, pg_current_xact_id(),
                ARRAY(SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x
                      UNION
                      SELECT i::text::xid8
                        FROM generate_series(pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                                             pg_current_xact_id()::text::bigint - 1) AS i)
           FROM unnest($4::bigint[]) AS s
          WHERE (s % 16)::int IN (SELECT part FROM advanced)
         ON CONFLICT (part, noted_xid) DO NOTHING),
     noted AS (
         INSERT INTO outbox_gaps (seq, part, noted_xid)
         SELECT s, (s % 16)::int, pg_current_xact_id() FROM unnest($4::bigint[]) AS s
          WHERE (s % 16)::int IN (SELECT part FROM advanced)
         ON CONFLICT (seq) DO NOTHING)
     SELECT part FROM advanced";

/// Merges the gap groups of the partitions `$1`: each group read in full since it was
/// noted that waits for nothing its predecessor in the partition does not (that one read in
/// full too) joins it, its gaps moving there; a run of such groups joins its first. So a
/// transaction that stays open while settles keep noting its seqs (a backfill still
/// writing) leaves one group per partition behind, not one per settle. (Neighbours in seq
/// order merge, so the groups still lie in seq order; what the merged group waits for
/// covers every writer of its gaps.) A group of more than `$2` gaps is not moved (it
/// starts a run of its own, and later ones may join it): a merge moves few rows, never all
/// of a backfill's. Run after [`ADVANCE_SQL`] in the same transaction, when it narrowed a
/// group.
const MERGE_SQL: &str = "WITH g AS (
         SELECT gg.part, gg.noted_xid, gg.waiting, gg.recheck,
                lag(gg.waiting) OVER w AS prev_waiting, lag(gg.recheck) OVER w AS prev_recheck,
                (SELECT count(*) FROM (SELECT 1 FROM outbox_gaps x
                                        WHERE x.part = gg.part AND x.noted_xid = gg.noted_xid
                                        LIMIT $2 + 1) AS n) > $2 AS big
           FROM outbox_gap_groups gg
          WHERE gg.part = ANY($1::int[])
         WINDOW w AS (PARTITION BY gg.part ORDER BY gg.noted_xid)),
     runs AS (
         SELECT part, noted_xid,
                sum(CASE WHEN NOT recheck AND prev_recheck IS FALSE AND waiting <@ prev_waiting
                              AND NOT big
                         THEN 0 ELSE 1 END) OVER (PARTITION BY part ORDER BY noted_xid) AS run
           FROM g),
     heads AS (
         SELECT part, noted_xid,
                first_value(noted_xid) OVER (PARTITION BY part, run ORDER BY noted_xid) AS head
           FROM runs),
     moved AS (
         UPDATE outbox_gaps x SET noted_xid = h.head
           FROM heads h
          WHERE x.part = h.part AND x.noted_xid = h.noted_xid AND h.head <> h.noted_xid),
     merged AS (
         DELETE FROM outbox_gap_groups gg USING heads h
          WHERE gg.part = h.part AND gg.noted_xid = h.noted_xid AND h.head <> h.noted_xid)
     SELECT count(*) FROM heads WHERE head <> noted_xid";

/// The most gaps a merge moves from one group ([`MERGE_SQL`]).
const MERGE_AT_MOST: i64 = 10_000;

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

/// Counts of a settled claim.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettled {
    /// Events delivered.
    pub delivered: u64,
    /// Events that failed and will be retried.
    pub retrying: u64,
    /// Events now dead (attempt limit reached, or rejected).
    pub dead: u64,
    /// Events released unpublished.
    pub released: u64,
    /// Outcomes not recorded: the claim no longer held their partition (its lease ran out,
    /// or its relay was found gone).
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
    // The groups read in full (only a full read reads groups, and it keeps its snapshot).
    let (group_parts, read_groups): (Vec<i32>, Vec<i64>) = match &claim.snapshot {
        Some(_) => claim
            .parts
            .iter()
            .flat_map(|p| {
                let part = i32::try_from(p.part).unwrap_or(0);
                p.plan
                    .read_groups
                    .iter()
                    .map(move |&noted| (part, i64::try_from(noted).unwrap_or(i64::MAX)))
            })
            .unzip(),
        None => (Vec::new(), Vec::new()),
    };
    let advanced: BTreeSet<i64> = sqlx::query_scalar::<_, i32>(ADVANCE_SQL)
        .bind(&parts)
        .bind(&frontiers)
        .bind(token)
        .bind(&new_gaps)
        .bind(&forget_gaps)
        .bind(&group_parts)
        .bind(&read_groups)
        .bind(claim.snapshot.as_deref())
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
    let narrowed: Vec<i32> = group_parts
        .iter()
        .copied()
        .filter(|p| advanced.contains(&i64::from(*p)))
        .collect::<BTreeSet<i32>>()
        .into_iter()
        .collect();
    if !narrowed.is_empty() {
        sqlx::query(MERGE_SQL)
            .bind(&narrowed)
            .bind(MERGE_AT_MOST)
            .execute(&mut *conn)
            .await?;
    }
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
