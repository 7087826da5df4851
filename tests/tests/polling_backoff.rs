//! While a writer holds a key noted for re-check, an idle relay's polling backs off.
//!
//! In wake-up mode `poll` (the migrated default) a delivery loop with nothing to do looks
//! for work at intervals that double from `--poll-min-interval` up to `--poll-interval`.
//! A key noted in `outbox_key_recheck` makes every look answer "work waiting", but while a
//! writer's transaction still holds that key no claim can take it (`SKIP LOCKED`): each
//! claim comes back empty. Such looks must back off like empty ones, for as long as the
//! writer keeps its transaction open, instead of claiming again (under the exclusive claim
//! lock) every few milliseconds.
//!
//! The key gets noted naturally: a writer holds it while the relay delivers its head.

use std::time::Duration;

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketUpdated};
use integration_tests::{
    RunningRelay, TestDb, event_state, relay_config, wait_until, wait_until_settled,
    with_db_and_broker,
};
use uuid::Uuid;

/// Transactions committed or rolled back in the test database per second, over `window`.
async fn transactions_per_second(db: &TestDb, window: Duration) -> Result<f64> {
    let sample = || async {
        // A fresh connection, and a fresh snapshot of the cumulative statistics.
        let mut conn = db.connect().await?;
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database
              WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        anyhow::Ok(n)
    };
    let before = sample().await?;
    tokio::time::sleep(window).await;
    let after = sample().await?;
    Ok((after - before) as f64 / window.as_secs_f64())
}

async fn recheck_notes(db: &TestDb) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox_key_recheck")
            .fetch_one(&db.pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_backs_off_while_a_writer_holds_a_key_noted_for_recheck() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let mode: String = sqlx::query_scalar("SELECT outbox_wakeup_mode()")
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(mode, "poll", "the migrated default");

        // The key's head, committed; then a writer of the same scope (tenant and key) that
        // stays open.
        let event = TicketUpdated {
            ticket_id: Uuid::now_v7(),
            ..TicketUpdated::example()
        };
        let mut tx = db.pool.begin().await?;
        let head = outbox_core::emit(&mut tx, &event).await?;
        tx.commit().await?;
        let mut writer = db.connect().await?;
        let mut writer_tx = sqlx::Connection::begin(&mut writer).await?;
        outbox_core::emit(&mut writer_tx, &event).await?;

        let mut config = relay_config(db, broker);
        config.poll_interval = Duration::from_millis(500);
        let relay = RunningRelay::start(config);
        wait_until_settled(&db.pool, &[head], Duration::from_secs(60)).await?;
        assert_eq!(event_state(&db.pool, head).await?.status, "delivered");
        assert_eq!(
            recheck_notes(db).await?,
            1,
            "the settle noted the held key for a re-check"
        );

        let held = transactions_per_second(db, Duration::from_secs(6)).await?;
        writer_tx.rollback().await?;
        drop(writer);
        // The next claim clears the note; then measure the idle relay for comparison.
        wait_until(Duration::from_secs(30), "the re-check is done", || async {
            Ok(recheck_notes(db).await? == 0)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = transactions_per_second(db, Duration::from_secs(6)).await?;
        relay.stop().await?;
        eprintln!("transactions/s while a writer holds the noted key: {held:.0}; idle: {idle:.0}");

        // Backed off, each loop looks and claims about once per poll interval: the same
        // order as an idle relay (~10-20/s here). Claiming again every poll_min_interval
        // ran ~1,000/s. The bound leaves room for a busy machine on both sides.
        let limit = 3.0 * idle.max(10.0) + 100.0;
        assert!(
            held < limit,
            "an idle relay ran {held:.0} transactions/s (claims under the exclusive claim \
             lock, and looks for work) while a writer held a key noted for re-check; \
             {idle:.0}/s when idle, limit {limit:.0}/s"
        );
        Ok(())
    })
    .await
}
