//! The lease of partitions: which are free and have work, forgetting the relays that are
//! gone, and the count of what a claim took (for the gauges).

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

/// Whether partition `c` has work a claim could do now (`c` is the alias of its row). A due
/// gap group is work whether or not a gap of it filled: the claim that reads it forgets
/// what will never fill and narrows what the group waits for.
macro_rules! has_work {
    () => {
        concat!(
            "((SELECT true FROM outbox_events e
            WHERE e.seq % 16 = c.part AND e.seq > c.frontier
            ORDER BY e.seq % 16, e.seq LIMIT 1) IS NOT NULL
          OR EXISTS (SELECT 1 FROM outbox_held h
                      WHERE h.part = c.part AND h.due_at <= statement_timestamp())
          OR EXISTS (SELECT 1 FROM outbox_replays r JOIN outbox_events e ON e.id = r.event_id
                      WHERE r.part = c.part AND r.due_at <= statement_timestamp())
          OR EXISTS (SELECT 1 FROM outbox_gap_groups gg
                      WHERE gg.part = c.part AND ",
            gap_group_due!("gg"),
            "))"
        )
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

/// The lease's own condition for partition `c` having work (`c` the alias of its
/// `outbox_partitions` row), for tools that report what a claim would find
/// (`outbox-bench claim-shapes`) without restating it.
pub const HAS_WORK_SQL: &str = has_work!();

/// The lease's own condition for partition `c` being free to lease, as [`HAS_WORK_SQL`].
pub const IS_FREE_SQL: &str = is_free!();

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

/// Counts the events the claim `$3` took in each partition (`$1` partitions, `$2` counts),
/// for the gauges.
pub const CLAIMED_SQL: &str = "UPDATE outbox_partitions p SET claimed = c.n
       FROM unnest($1::int[], $2::int[]) AS c(part, n)
      WHERE p.part = c.part AND p.token = $3";
