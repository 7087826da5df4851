//! While a writer holds a seq open (a gap below a committed event of its partition), an
//! idle relay's polling backs off.
//!
//! In wake-up mode `poll` (the migrated default) a delivery loop with nothing to do looks
//! for work at intervals that double from `--poll-min-interval` up to `--poll-interval`.
//! A gap (`outbox_gaps`) is work only once it can be settled — its row is visible, or every
//! transaction older than the settle that noted it has ended — so while the writer keeps
//! its transaction open, looks answer "nothing to do" and back off like empty ones instead
//! of claiming the partition again every few milliseconds.

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

async fn open_gaps(db: &TestDb) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox_gaps")
        .fetch_one(&db.pool)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_backs_off_while_a_writer_holds_a_gap_open() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let mode: String = sqlx::query_scalar("SELECT outbox_wakeup_mode()")
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(mode, "poll", "the migrated default");

        // Two tickets whose scopes share a partition: a writer draws the first one's seq and
        // stays open; the second one's event, drawn after it, commits.
        let tenant = TicketUpdated::example().tenant_id;
        let mut tickets = Vec::new();
        while tickets.len() < 2 {
            let ticket = Uuid::now_v7();
            let part: i64 = sqlx::query_scalar(
                "SELECT hashtextextended(outbox_scope($1, 'ticket:' || $2::text), 0) & 15",
            )
            .bind(tenant)
            .bind(ticket)
            .fetch_one(&db.pool)
            .await?;
            if part == 7 {
                tickets.push(ticket);
            }
        }
        let event = |ticket_id| TicketUpdated {
            ticket_id,
            ..TicketUpdated::example()
        };
        let mut writer = db.connect().await?;
        let mut writer_tx = sqlx::Connection::begin(&mut writer).await?;
        outbox_core::emit(&mut writer_tx, &event(tickets[0])).await?;
        let mut tx = db.pool.begin().await?;
        let head = outbox_core::emit(&mut tx, &event(tickets[1])).await?;
        tx.commit().await?;

        let mut config = relay_config(db, broker);
        config.poll_interval = Duration::from_millis(500);
        let relay = RunningRelay::start(config);
        wait_until_settled(&db.pool, &[head], Duration::from_secs(60)).await?;
        assert_eq!(event_state(&db.pool, head).await?.status, "delivered");
        assert_eq!(
            open_gaps(db).await?,
            1,
            "the settle noted the open writer's seq as a gap"
        );

        let held = transactions_per_second(db, Duration::from_secs(6)).await?;
        writer_tx.rollback().await?;
        drop(writer);
        // The next claim forgets the gap; then measure the idle relay for comparison.
        wait_until(Duration::from_secs(30), "the gap is forgotten", || async {
            Ok(open_gaps(db).await? == 0)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = transactions_per_second(db, Duration::from_secs(6)).await?;
        relay.stop().await?;
        eprintln!("transactions/s while a writer holds a gap open: {held:.0}; idle: {idle:.0}");

        // Backed off, each loop looks and claims about once per poll interval: the same
        // order as an idle relay (~10-20/s here). Claiming again every poll_min_interval
        // ran ~1,000/s. The bound leaves room for a busy machine on both sides.
        let limit = 3.0 * idle.max(10.0) + 100.0;
        assert!(
            held < limit,
            "an idle relay ran {held:.0} transactions/s (claims and looks for work) while a \
             writer held a gap open; {idle:.0}/s when idle, limit {limit:.0}/s"
        );
        Ok(())
    })
    .await
}
