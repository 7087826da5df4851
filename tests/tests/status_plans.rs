//! `status`'s blocked keys, which the metrics endpoint also reads at every refresh of its
//! gauges (`store::stats::gauges`), keep to the scope index: no scan of the whole event
//! table, however large it is.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use anyhow::Result;
use integration_tests::TestDb;
use outbox_relay::store::stats;

/// 400,000 keyed events on 4,000 scopes and 100,000 unkeyed ones (the insert trigger off,
/// the seqs given), 300 scopes held dead at an event of theirs, analyzed.
async fn fill(db: &TestDb) -> Result<()> {
    sqlx::raw_sql(
        "ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_before_insert;
         INSERT INTO outbox_events (seq, tenant_id, event_type, schema_ref, category,
                                    ordering_key, payload, dedupe_key)
         SELECT n * 16 + (hashtextextended(outbox_scope(NULL, 'k' || (n % 4000)), 0) & 15),
                NULL, c.event_type, c.payload_schema_ref, c.category, 'k' || (n % 4000),
                jsonb_build_object('n', n, 'pad', repeat('x', 150)), 'k' || n
           FROM generate_series(1, 400000) AS n
          CROSS JOIN (SELECT * FROM system_event_catalog WHERE event_type = 'TICKET_CREATED') c;
         INSERT INTO outbox_events (seq, tenant_id, event_type, schema_ref, category,
                                    ordering_key, payload, dedupe_key)
         SELECT (400000 + n) * 16 + (n % 16), NULL, c.event_type, c.payload_schema_ref,
                c.category, NULL, jsonb_build_object('n', n, 'pad', repeat('x', 150)), 'u' || n
           FROM generate_series(1, 100000) AS n
          CROSS JOIN (SELECT * FROM system_event_catalog WHERE event_type = 'TICKET_CREATED') c;
         ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_before_insert;
         UPDATE outbox_partitions SET frontier = 600000 * 16 + part;
         INSERT INTO outbox_held (scope, part, head_seq, due_at)
         SELECT DISTINCT ON (s) s, (hashtextextended(s, 0) & 15)::integer, seq, NULL
           FROM (SELECT outbox_scope(tenant_id, ordering_key) AS s, seq FROM outbox_events
                  WHERE ordering_key IN (SELECT 'k' || g FROM generate_series(0, 299) g)
                    AND seq > 200000 * 16) e
          ORDER BY s, seq",
    )
    .execute(&db.pool)
    .await?;
    sqlx::raw_sql("VACUUM ANALYZE outbox_events")
        .execute(&db.pool)
        .await?;
    sqlx::raw_sql("ANALYZE outbox_held")
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_keys_do_not_scan_the_event_table() -> Result<()> {
    let db = TestDb::new().await?;
    fill(&db).await?;
    let mut tx = db.pool.begin().await?;
    // One process per plan, so that the transaction's own statistics see every scan.
    sqlx::raw_sql("SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off")
        .execute(&mut *tx)
        .await?;
    let scans = "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'outbox_events'";
    let before: i64 = sqlx::query_scalar(scans).fetch_one(&mut *tx).await?;
    let started = std::time::Instant::now();
    let dead = stats::blocked_keys(&mut *tx, 1_000, false).await?;
    let all = stats::blocked_keys(&mut *tx, 1_000, true).await?;
    let took = started.elapsed();
    let after: i64 = sqlx::query_scalar(scans).fetch_one(&mut *tx).await?;
    tx.rollback().await?;
    db.cleanup().await?;
    assert_eq!(dead.len(), 300);
    assert_eq!(all.len(), 300);
    assert_eq!(
        after - before,
        0,
        "blocked keys scanned the whole event table (both calls took {took:?})"
    );
    Ok(())
}
