//! `outbox_uuid_v7()`, the default id of rows written by plain SQL: version 7, the RFC 9562
//! variant, the time prefix in order, no collisions under concurrent writers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use anyhow::Result;
use integration_tests::TestDb;
use std::collections::HashSet;
use uuid::Uuid;

#[tokio::test]
async fn uuid_v7_bits_time_and_uniqueness() -> Result<()> {
    let db = TestDb::new().await?;
    let before = chrono::Utc::now().timestamp_millis() as u64;
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT outbox_uuid_v7() FROM generate_series(1, 200000)")
            .fetch_all(&db.pool)
            .await?;
    let after = chrono::Utc::now().timestamp_millis() as u64;
    let mut seen = HashSet::new();
    let mut prev_ms = 0u64;
    let mut same_ms_out_of_order = 0usize;
    let mut prev: Option<Uuid> = None;
    for id in &ids {
        assert_eq!(id.get_version_num(), 7, "{id}");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        let b = id.as_bytes();
        let ms = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
        assert!(
            ms + 1 >= before && ms <= after + 1,
            "{id}: {ms} not in {before}..{after}"
        );
        assert!(ms >= prev_ms, "time went backwards: {id}");
        if let Some(p) = prev
            && ms == prev_ms
            && *id < p
        {
            same_ms_out_of_order += 1;
        }
        prev_ms = ms;
        prev = Some(*id);
        assert!(seen.insert(*id), "duplicate {id}");
        // uuid crate agrees on the timestamp
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, ms);
    }
    eprintln!(
        "same-millisecond ids out of order: {same_ms_out_of_order} of {}",
        ids.len()
    );
    db.cleanup().await
}

#[tokio::test]
async fn plain_sql_rows_many_per_millisecond_no_pk_error() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    // 20k rows in one statement (unordered) and concurrent single-row inserts.
    sqlx::query(
        "INSERT INTO outbox_events (event_type, tenant_id, payload)
         SELECT 'TICKET_CREATED', $1, jsonb_build_object('tenant_id', $1::text)
           FROM generate_series(1, 20000)",
    )
    .bind(tenant)
    .execute(&db.pool)
    .await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                sqlx::query(
                    "INSERT INTO outbox_events (event_type, tenant_id, payload)
                     VALUES ('TICKET_CREATED', $1, '{}')",
                )
                .bind(tenant)
                .execute(&pool)
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let (n, distinct, v7, dedupe_is_id): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT id),
                count(*) FILTER (WHERE substr(id::text, 15, 1) = '7'
                                   AND substr(id::text, 20, 1) IN ('8','9','a','b')),
                count(*) FILTER (WHERE dedupe_key = id::text)
           FROM outbox_events",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        (n, distinct, v7, dedupe_is_id),
        (24000, 24000, 24000, 24000)
    );
    // The id's time prefix agrees with created_at (same clock, within the transaction).
    let off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events
          WHERE abs(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint
                    - floor(extract(epoch FROM created_at) * 1000)::bigint) > 60000",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        off, 0,
        "ids whose time prefix is over a minute from created_at"
    );
    db.cleanup().await
}
