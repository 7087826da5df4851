//! A long transaction costs the claims nothing while it runs (migration `20261207000002`,
//! docs/delivery-engine.md, "Gap groups").
//!
//! The seqs an open transaction drew are *gaps* below the frontiers of their partitions
//! once later events commit. The gaps one settle notes form a group that remembers which
//! transactions could still commit them; a claim reads a group only when one of those has
//! ended since it last read it. So with thousands of events of one transaction still open,
//! no partition has work and the claim's look for work touches a few pages, while a short
//! writer whose late commit fell among those gaps still goes out at once and in its scope's
//! order; when the long transaction commits, each of its events goes out once; when it
//! rolls back, its gaps and their groups are forgotten.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{TestDb, keys_in_one_partition, wait_until};
use outbox_relay::store::claim::{Claim, ClaimedEvent, claim_partitions};
use outbox_relay::store::feed;
use outbox_relay::store::settle::{Outcome, settle};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

/// `n` unkeyed events in `conn`'s transaction (by plain SQL, as any producer may write).
async fn insert_unkeyed(conn: &mut PgConnection, n: i64) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload)
         SELECT 'TICKET_UPDATED', jsonb_build_object('ticketId', gen_random_uuid(),
                                                     'updatedFields', jsonb_build_array('status'))
           FROM generate_series(1, $1)
         RETURNING id",
    )
    .bind(n)
    .fetch_all(&mut *conn)
    .await?)
}

/// One event on `key` (no tenant) in `conn`'s transaction.
async fn insert_keyed(conn: &mut PgConnection, key: &str) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         VALUES ('TICKET_UPDATED', jsonb_build_object('ticketId', gen_random_uuid(),
                                                      'updatedFields', jsonb_build_array('status')), $1)
         RETURNING id",
    )
    .bind(key)
    .fetch_one(&mut *conn)
    .await?)
}

/// Claims every partition and delivers what it takes until no partition has work; returns
/// what was delivered, in order.
async fn drain(pool: &PgPool) -> Result<Vec<ClaimedEvent>> {
    let mut delivered = Vec::new();
    for _ in 0..200 {
        let claim: Claim = claim_partitions(pool, "relay-gaps", 500, LEASE, 16).await?;
        if claim.feed.is_none() {
            return Ok(delivered);
        }
        let outcomes: Vec<(Uuid, Outcome)> = claim
            .events
            .iter()
            .map(|e| (e.id, Outcome::Delivered))
            .collect();
        settle(pool, &claim, 10, &outcomes).await?;
        delivered.extend(claim.events);
    }
    panic!("the outbox did not drain");
}

/// Partitions a relay would find work in now (the lease's own condition).
async fn partitions_with_work(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM outbox_partitions c WHERE {}",
        feed::HAS_WORK_SQL
    )))
    .fetch_one(pool)
    .await?)
}

/// Drains until no partition has work; what it delivers must be nothing. (Transactions of
/// other databases of the cluster are among those a group waits for: one of them ending
/// makes the group due once more, and the claim that reads it finds nothing to send.)
async fn settle_down(pool: &PgPool) -> Result<()> {
    for _ in 0..50 {
        assert_eq!(ids(&drain(pool).await?), Vec::<Uuid>::new());
        if partitions_with_work(pool).await? == 0 {
            return Ok(());
        }
    }
    panic!("partitions kept having work");
}

/// Shared buffers (hit or read) the statement `sql` touches, from its `EXPLAIN (ANALYZE,
/// BUFFERS)` (a count of pages, which a machine's speed does not change).
async fn buffers_of(pool: &PgPool, sql: &str) -> Result<i64> {
    let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"
    )))
    .fetch_one(pool)
    .await?;
    let top = &plan[0]["Plan"];
    Ok(top["Shared Hit Blocks"].as_i64().unwrap_or(0)
        + top["Shared Read Blocks"].as_i64().unwrap_or(0))
}

async fn count(pool: &PgPool, sql: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await?)
}

fn ids(events: &[ClaimedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// Commits `long` and drains the outbox: each of `written` goes out once, and no gap or
/// group is left.
async fn commit_and_drain(
    pool: &PgPool,
    long: sqlx::Transaction<'_, sqlx::Postgres>,
    written: Vec<Uuid>,
) -> Result<()> {
    long.commit().await?;
    let delivered = ids(&drain(pool).await?);
    assert_eq!(delivered.len(), written.len(), "each once");
    assert_eq!(
        delivered.into_iter().collect::<HashSet<_>>(),
        written.into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(count(pool, "SELECT count(*) FROM outbox_gaps").await?, 0);
    assert_eq!(
        count(pool, "SELECT count(*) FROM outbox_gap_groups").await?,
        0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transactions_gaps_are_read_again_only_when_a_writer_that_could_fill_them_ends()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;

    // A long transaction: 4,000 events over every partition, left open.
    let mut long = pool.begin().await?;
    let long_ids = insert_unkeyed(&mut long, 4_000).await?;
    let long_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *long)
        .await?;
    // Later events commit in every partition (400 unkeyed: each partition gets some), and go
    // out; the long transaction's seqs become gaps below every frontier.
    let mut conn = pool.acquire().await?;
    let committed = insert_unkeyed(&mut conn, 400).await?;
    drop(conn);
    let delivered = drain(pool).await?;
    assert_eq!(
        ids(&delivered).into_iter().collect::<HashSet<_>>(),
        committed.iter().copied().collect::<HashSet<_>>()
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM outbox_gaps").await?,
        4_000
    );
    // Each group was read in full once (noted with `recheck`), and now waits for the long
    // transaction (and what else runs in the cluster).
    let waiting: Vec<(bool, Vec<String>)> = sqlx::query(
        "SELECT recheck, ARRAY(SELECT x::text FROM unnest(waiting) x) FROM outbox_gap_groups",
    )
    .try_map(|r: sqlx::postgres::PgRow| Ok((r.try_get(0)?, r.try_get(1)?)))
    .fetch_all(pool)
    .await?;
    assert!(!waiting.is_empty());
    for (recheck, xids) in &waiting {
        assert!(!recheck, "read in full since noted");
        assert!(
            xids.contains(&long_xid.to_string()),
            "waits for the open transaction"
        );
    }
    // No partition has work, and looking for it touches a few pages, not the 4,000 gaps.
    settle_down(pool).await?;
    let look = format!(
        "SELECT count(*) FROM outbox_partitions c WHERE {}",
        feed::HAS_WORK_SQL
    );
    let pages = buffers_of(pool, &look).await?;
    assert!(pages < 400, "the look for work touched {pages} pages");

    // A short writer's event falls among the long transaction's gaps: it commits after the
    // event of another scope of its partition, drawn after it, went out.
    let keys = keys_in_one_partition(pool, None, "gap-order", 2).await?;
    let mut short = pool.begin().await?;
    let late = insert_keyed(&mut short, &keys[0]).await?;
    let mut conn = pool.acquire().await?;
    let other = insert_keyed(&mut conn, &keys[1]).await?;
    drop(conn);
    assert_eq!(ids(&drain(pool).await?), vec![other]);
    settle_down(pool).await?;
    short.commit().await?;
    // Its scope's next event commits too: the late one goes out first, at once, while the
    // long transaction still runs.
    let mut conn = pool.acquire().await?;
    let next = insert_keyed(&mut conn, &keys[0]).await?;
    drop(conn);
    assert_eq!(ids(&drain(pool).await?), vec![late, next]);
    assert_eq!(
        count(pool, "SELECT count(*) FROM outbox_gaps").await?,
        4_000
    );
    settle_down(pool).await?;

    // The long transaction commits: each of its events goes out once; nothing is left.
    commit_and_drain(pool, long, long_ids).await?;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM outbox_event_status WHERE status <> 'delivered'"
        )
        .await?,
        0
    );
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transactions_gaps_are_forgotten_with_their_groups() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let mut long = pool.begin().await?;
    let rolled_back = insert_unkeyed(&mut long, 3_000).await?;
    let mut conn = pool.acquire().await?;
    let committed = insert_unkeyed(&mut conn, 400).await?;
    drop(conn);
    assert_eq!(drain(pool).await?.len(), committed.len());
    assert_eq!(
        count(pool, "SELECT count(*) FROM outbox_gaps").await?,
        3_000
    );

    long.rollback().await?;
    // The groups go once every transaction older than the settles that noted them has
    // ended (other databases' transactions of the cluster included).
    let rolled_back = &rolled_back;
    wait_until(
        Duration::from_secs(60),
        "the gaps forgotten",
        || async move {
            let delivered = ids(&drain(pool).await?);
            assert!(
                delivered.iter().all(|id| !rolled_back.contains(id)),
                "nothing rolled back goes out"
            );
            Ok(count(pool, "SELECT count(*) FROM outbox_gaps").await? == 0
                && count(pool, "SELECT count(*) FROM outbox_gap_groups").await? == 0)
        },
    )
    .await?;

    // A gap without its group (what a relay older than the groups would note) is refused:
    // such a relay's settle fails instead of leaving a gap no claim would read.
    let refused = sqlx::query(
        "INSERT INTO outbox_gaps (seq, part, noted_xid) VALUES (16000003, 3, pg_current_xact_id())",
    )
    .execute(pool)
    .await
    .expect_err("a gap needs its group");
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("23503"),
        "{refused}"
    );
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_keeps_writing_leaves_one_group_per_partition() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let mut long = pool.begin().await?;
    let mut conn = pool.acquire().await?;
    let mut written = Vec::new();
    // Five rounds: the open transaction writes, later events commit and go out; each
    // round's settles note the new seqs of the open transaction as a group of their own.
    for _ in 0..5 {
        written.extend(insert_unkeyed(&mut long, 200).await?);
        insert_unkeyed(&mut conn, 100).await?;
        drain(pool).await?;
    }
    drop(conn);
    // Read in full, each new group waits for no more than the one before it: it merges
    // into it. (Other databases' transactions of the cluster that began in between keep a
    // group apart until they end.)
    wait_until(
        Duration::from_secs(60),
        "one group per partition",
        || async move {
            assert_eq!(ids(&drain(pool).await?), Vec::<Uuid>::new());
            Ok(count(
                pool,
                "SELECT count(*) FROM (SELECT part FROM outbox_gap_groups
                                    GROUP BY part HAVING count(*) > 1) AS several",
            )
            .await?
                == 0)
        },
    )
    .await?;
    assert_eq!(
        count(pool, "SELECT count(*) FROM outbox_gaps").await?,
        1_000
    );
    assert!(count(pool, "SELECT count(*) FROM outbox_gap_groups").await? <= 16);

    commit_and_drain(pool, long, written).await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_is_not_moved_into_a_small_one_noted_before_it() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    let keys = keys_in_one_partition(pool, None, "merge-bound", 4).await?;
    // A long transaction has its id first (as after a business write).
    let mut long = pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await?;
    // A small group of its partition waits for it: a writer's seq noted while it ran, the
    // writer rolled back since.
    let mut short = pool.begin().await?;
    insert_keyed(&mut short, &keys[0]).await?;
    let mut conn = pool.acquire().await?;
    insert_keyed(&mut conn, &keys[1]).await?;
    drain(pool).await?;
    short.rollback().await?;
    drain(pool).await?;
    // The long transaction writes more than a merge moves, on one scope of that partition;
    // a later event commits, and its seqs become a group read in full that waits for no more
    // than the small one: it stays where it is rather than move into it.
    let big: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         SELECT 'TICKET_UPDATED', jsonb_build_object('ticketId', gen_random_uuid(),
                                                     'updatedFields', jsonb_build_array('status')), $1
           FROM generate_series(1, 10001)
         RETURNING id",
    )
    .bind(&keys[2])
    .fetch_all(&mut *long)
    .await?;
    insert_keyed(&mut conn, &keys[3]).await?;
    drop(conn);
    drain(pool).await?;
    settle_down(pool).await?;
    let sizes: Vec<i64> = sqlx::query_scalar(
        "SELECT count(g.seq) FROM outbox_gap_groups gg
           LEFT JOIN outbox_gaps g ON g.part = gg.part AND g.noted_xid = gg.noted_xid
          GROUP BY gg.part, gg.noted_xid ORDER BY gg.part, gg.noted_xid",
    )
    .fetch_all(pool)
    .await?;
    assert!(
        sizes.contains(&10_001),
        "the long transaction's gaps stay in their own group: {sizes:?}"
    );
    long.commit().await?;
    let delivered = ids(&drain(pool).await?);
    assert_eq!(delivered, big, "in order, each once");
    db.cleanup().await
}

/// The migration that brings the groups.
const GAP_GROUPS: i64 = 20261207000002;

/// The seq of event `id`, as `conn` sees it.
async fn seq_in(conn: &mut PgConnection, id: Uuid) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM outbox_events WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Gaps a relay of step 5 noted (a row each, no group) while one writer was still open and
/// another had rolled back: after the upgrade, each belongs to a group that waits for every
/// transaction running at the upgrade and is read at the first claim; the open writer's
/// event goes out when it commits, before its scope's next one, and the rolled-back one's
/// gap is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_noted_before_the_upgrade_are_read_and_forgotten_after_it() -> Result<()> {
    let db = integration_tests::upgrade_kit::database_before(GAP_GROUPS).await?;
    let pool = &db.pool;
    let keys = keys_in_one_partition(pool, None, "upgrade-gap", 3).await?;
    let mut open = pool.begin().await?;
    let late = insert_keyed(&mut open, &keys[0]).await?;
    let late_seq = seq_in(&mut open, late).await?;
    let open_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *open)
        .await?;
    let mut gone = pool.begin().await?;
    let gone_id = insert_keyed(&mut gone, &keys[2]).await?;
    let gone_seq = seq_in(&mut gone, gone_id).await?;
    gone.rollback().await?;
    let mut conn = pool.acquire().await?;
    let other = insert_keyed(&mut conn, &keys[1]).await?;
    let other_seq = seq_in(&mut conn, other).await?;
    assert!(late_seq < other_seq && gone_seq < other_seq);
    // What a step-5 relay left: the partition read (and delivered) up to `other`, the two
    // seqs below it noted as gaps.
    sqlx::query("UPDATE outbox_partitions SET frontier = $1 WHERE part = $1 % 16")
        .bind(other_seq)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO outbox_gaps (seq, part, noted_xid)
         SELECT s, (s % 16)::int, pg_current_xact_id() FROM unnest($1::bigint[]) AS s",
    )
    .bind(vec![late_seq, gone_seq])
    .execute(&mut *conn)
    .await?;

    // The upgrade, with the writer still open.
    outbox_core::migrate(pool).await?;
    let groups: Vec<(bool, Vec<String>)> = sqlx::query(
        "SELECT recheck, ARRAY(SELECT x::text FROM unnest(waiting) x) FROM outbox_gap_groups",
    )
    .try_map(|r: sqlx::postgres::PgRow| Ok((r.try_get(0)?, r.try_get(1)?)))
    .fetch_all(pool)
    .await?;
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(groups[0].0, "read at the first claim");
    assert!(
        groups[0].1.contains(&open_xid.to_string()),
        "waits for the open writer: {groups:?}"
    );

    // Nothing to send while the writer runs; then it commits, and its scope's next event.
    assert_eq!(ids(&drain(pool).await?), Vec::<Uuid>::new());
    open.commit().await?;
    let next = insert_keyed(&mut conn, &keys[0]).await?;
    drop(conn);
    assert_eq!(ids(&drain(pool).await?), vec![late, next]);
    wait_until(
        Duration::from_secs(60),
        "the rolled-back gap forgotten",
        || async move {
            assert_eq!(ids(&drain(pool).await?), Vec::<Uuid>::new());
            Ok(count(pool, "SELECT count(*) FROM outbox_gaps").await? == 0
                && count(pool, "SELECT count(*) FROM outbox_gap_groups").await? == 0)
        },
    )
    .await?;
    db.cleanup().await
}
