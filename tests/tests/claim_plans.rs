//! The plans of the claim's statements on a million-row outbox, read with
//! `EXPLAIN (ANALYZE)`: every read of a partition goes through the feed index
//! (`((seq % 16), seq)`), however skewed the partitions, and every look-up of a held scope
//! through its primary key, however many are held. Plan shapes only, no timings (the machines
//! are noisy; `outbox-bench claim-shapes` measures).
//!
//! Partitions are skewed by nature: each draws its seqs from a sequence of its own (`n × 16 +
//! part`), so a partition with a busy scope holds large seqs and a quiet one small seqs. A
//! partition read whose planner does not know the partition (a statement over all leased
//! partitions at once) could walk an index on `seq` alone from a quiet partition's frontier
//! and filter the busy partition's million rows away (before step 5 there was one). And a
//! read must start at its partition's frontier: searched by a row comparison `(seq % 16,
//! seq) > (part, frontier)`, the feed index is entered at the partition's first entry and
//! walked through every event below the frontier — every delivered event retention keeps
//! (what a backfill left open showed: 250 pages per look for work at 62,500 events a
//! partition; `starts_at_the_frontier`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use anyhow::Result;
use integration_tests::TestDb;
use outbox_relay::store::feed;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// A key (no tenant) whose scope lies in partition `part`.
async fn key_in(pool: &PgPool, part: i64) -> Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT k FROM (SELECT 'hot' || g AS k, g FROM generate_series(0, 100000) g) s
          WHERE (hashtextextended(outbox_scope(NULL::uuid, k), 0) & 15) = $1
          ORDER BY g LIMIT 1",
    )
    .bind(part)
    .fetch_one(pool)
    .await?)
}

/// One busy scope in partition 3 with a million events, 1,000 of them after its frontier;
/// partitions 0, 1, 2, 4 and 5 with 50 events each, 40 after their frontiers. Written with
/// the insert trigger off (the seqs are given), then analyzed.
async fn fill_skewed(pool: &PgPool) -> Result<()> {
    let hot = key_in(pool, 3).await?;
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_before_insert")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO outbox_events (seq, event_type, schema_ref, category, ordering_key, payload,
                                    dedupe_key)
         SELECT n * 16 + 3, 'TICKET_CREATED', c.payload_schema_ref, c.category, $1,
                jsonb_build_object('ticketId', n, 'note', repeat('x', 200)), 'h' || n
           FROM generate_series(1, 1000000) AS n
          CROSS JOIN (SELECT * FROM system_event_catalog WHERE event_type = 'TICKET_CREATED') c",
    )
    .bind(&hot)
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql(
        "INSERT INTO outbox_events (seq, event_type, schema_ref, category, ordering_key, payload,
                                    dedupe_key)
         SELECT n * 16 + p, 'TICKET_CREATED', c.payload_schema_ref, c.category, NULL,
                jsonb_build_object('ticketId', n), 'c' || p || '/' || n
           FROM generate_series(1, 50) AS n, (VALUES (0), (1), (2), (4), (5)) AS v(p)
          CROSS JOIN (SELECT * FROM system_event_catalog WHERE event_type = 'TICKET_CREATED') c;
         ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_before_insert;
         UPDATE outbox_partitions SET frontier = CASE WHEN part = 3 THEN 999000 * 16 + 3
                                                      ELSE 10 * 16 + part END;
         SELECT setval('outbox_events_seq_p3', 1000001, false);
         SELECT setval('outbox_events_seq_p' || p, 51, false) FROM (VALUES (0), (1), (2), (4), (5)) v(p);
         ANALYZE",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The plan text of `statement` with `binds`, run as the relay runs it (no JIT), in a
/// transaction rolled back afterwards.
async fn plan_of(
    conn: &mut PgConnection,
    statement: &str,
    binds: impl FnOnce(
        sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<String> {
    sqlx::raw_sql("BEGIN; SET LOCAL jit = off")
        .execute(&mut *conn)
        .await?;
    let query = binds(sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS) {statement}"
    ))));
    let lines: Vec<String> = query
        .try_map(|r: sqlx::postgres::PgRow| r.try_get::<String, _>(0))
        .fetch_all(&mut *conn)
        .await?;
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    Ok(lines.join("\n"))
}

/// The shared buffers (hit and read) of a plan's top node: the pages the statement touched.
fn pages(plan: &str) -> i64 {
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("Buffers: shared"))
        .unwrap_or_else(|| panic!("no buffers in:\n{plan}"));
    ["hit=", "read="]
        .iter()
        .filter_map(|key| {
            let at = line.find(key)? + key.len();
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum()
}

/// A read of a partition starts at its frontier, not at the partition's first entry (the
/// index is searched by both of its columns: a row comparison `(seq % 16, seq) > (part,
/// frontier)` beside `seq % 16 = part` is searched by the partition alone and walks every
/// entry below the frontier), however long retention keeps delivered events.
fn starts_at_the_frontier(name: &str, plan: &str) {
    assert!(
        !plan.contains("ROW(((seq %"),
        "{name} searches the feed index by a row comparison:\n{plan}"
    );
}

/// A look for work (nothing found in partition 3, whose million events lie below its
/// frontier but the last thousand) touches a few pages.
fn looks_at_a_few_pages(name: &str, plan: &str) {
    let touched = pages(plan);
    assert!(
        touched < 500,
        "{name} touched {touched} pages (walks a partition from its start?):\n{plan}"
    );
}

/// Partitions 0 to 5 and their frontiers.
async fn leased(pool: &PgPool) -> Result<(Vec<i64>, Vec<i64>)> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT part::bigint, frontier FROM outbox_partitions WHERE part < 6 ORDER BY part",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().unzip())
}

/// No scan of the unique `seq` index filtered by partition, and none of the whole table.
fn reads_by_the_feed_index(name: &str, plan: &str) {
    assert!(
        !plan.contains("outbox_events_seq_key") || !plan.contains("Rows Removed by Filter"),
        "{name} walks the seq index and filters by partition:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on outbox_events"),
        "{name} scans the table:\n{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_read_uses_the_feed_index_beside_a_partition_of_a_million_events()
-> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    fill_skewed(pool).await?;
    let (parts, frontiers) = leased(pool).await?;
    let mut conn = pool.acquire().await?;

    let fast = plan_of(&mut conn, feed::SEGMENTS_FAST_SQL, |q| {
        q.bind(parts.clone()).bind(frontiers.clone()).bind(500_i64)
    })
    .await?;
    reads_by_the_feed_index("the fast read", &fast);
    starts_at_the_frontier("the fast read", &fast);
    assert!(fast.contains("outbox_events_feed"), "{fast}");
    let full = plan_of(&mut conn, feed::SEGMENT_SQL, |q| {
        q.bind(parts.clone())
            .bind(frontiers.clone())
            .bind(vec![84_i64; 6])
    })
    .await?;
    reads_by_the_feed_index("the full read's segments", &full);
    starts_at_the_frontier("the full read's segments", &full);
    let acquire = plan_of(&mut conn, feed::ACQUIRE_SQL, |q| {
        q.bind(Uuid::now_v7())
            .bind(None::<i32>)
            .bind("explain")
            .bind(60.0_f64)
            .bind(6_i64)
    })
    .await?;
    reads_by_the_feed_index("the lease", &acquire);
    starts_at_the_frontier("the lease", &acquire);
    looks_at_a_few_pages("the lease", &acquire);
    let probe = plan_of(&mut conn, feed::PROBE_SQL, |q| q).await?;
    reads_by_the_feed_index("the probe for work", &probe);
    starts_at_the_frontier("the probe for work", &probe);
    looks_at_a_few_pages("the probe for work", &probe);
    let gauges = outbox_relay::store::stats::gauges(&mut conn).await?;
    assert_eq!(gauges.pending, 1000 + 5 * 40);
    drop(conn);
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_read_looks_up_held_scopes_by_key_however_many_are_held() -> Result<()> {
    let db = TestDb::new().await?;
    let pool = &db.pool;
    fill_skewed(pool).await?;
    // A broker outage failed 100,000 unkeyed events (each its own held scope), and the busy
    // scope is held too, not due.
    sqlx::raw_sql(
        "INSERT INTO outbox_held (scope, part, head_seq, due_at)
         SELECT '#' || gen_random_uuid(), i % 16, i, now() + interval '1 hour'
           FROM generate_series(1, 100000) i;
         INSERT INTO outbox_held (scope, part, head_seq, due_at)
         SELECT DISTINCT outbox_scope(tenant_id, ordering_key), 3, 999000 * 16 + 3,
                now() + interval '1 hour'
           FROM outbox_events WHERE seq = 999001 * 16 + 3;
         ANALYZE outbox_held",
    )
    .execute(pool)
    .await?;
    let (parts, frontiers) = leased(pool).await?;
    let mut conn = pool.acquire().await?;
    let fast = plan_of(&mut conn, feed::SEGMENTS_FAST_SQL, |q| {
        q.bind(parts.clone()).bind(frontiers.clone()).bind(500_i64)
    })
    .await?;
    assert!(
        !fast.contains("Seq Scan on outbox_held"),
        "the fast read scans every held scope:\n{fast}"
    );
    assert!(fast.contains("outbox_held_pkey"), "{fast}");
    drop(conn);
    db.cleanup().await
}
