//! An event whose `CC` header is not an array of strings is dead at once, and costs nothing
//! to anyone else.
//!
//! RabbitMQ gives the `CC` and `BCC` headers a meaning (sender-selected distribution) and
//! refuses a message whose `CC` is anything but an array of strings by closing the channel
//! (406 PRECONDITION_FAILED). Such an event can never be published: it must become `dead`
//! on its first attempt, with the reason in `last_error`, and block only its own key. No
//! other event may lose an attempt over it, neither in its own delivery loop nor in the
//! others, which share the relay's one broker connection.
//!
//! With `batch_size = 1` a claim holds exactly one event, so an other event that records a
//! failed attempt could only have failed because of a refused event in another loop.

use std::time::Duration;

use anyhow::Result;
use integration_tests::{
    RunningRelay, count_status, emit_ticket, emit_tickets, id_set, relay_config, wait_until,
    with_db_and_broker,
};
use outbox_core::EmitOptions;
use uuid::Uuid;

const OTHERS: usize = 3_000;
const REFUSED: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_cc_header_the_broker_refuses_is_dead_at_once_and_costs_others_nothing()
-> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        // Refused events spread through the backlog, each on a key of its own, so that
        // (were they retried) their attempts would overlap the other loops' claims.
        let mut others = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..REFUSED {
            let chunk = OTHERS / REFUSED;
            others.extend(emit_tickets(&db.pool, chunk, chunk).await?);
            let options = EmitOptions::new().header("CC", "billing@example.com");
            refused.push(emit_ticket(&db.pool, Uuid::now_v7(), options).await?);
        }

        let mut config = relay_config(db, broker);
        config.batch_size = 1;
        config.in_flight_batches = 3;
        config.max_attempts = 8;
        config.retry.base = Duration::from_millis(200);
        config.retry.cap = Duration::from_secs(2);
        config.listen = false;
        let relay = RunningRelay::start(config);
        wait_until(
            Duration::from_secs(240),
            "every other event delivered and every refused one dead",
            || async {
                Ok(count_status(&db.pool, "delivered").await? == OTHERS as i64
                    && count_status(&db.pool, "dead").await? == REFUSED as i64)
            },
        )
        .await?;
        relay.stop().await?;

        let refused_states: Vec<(i32, Option<String>)> = sqlx::query_as(
            "SELECT attempts, last_error FROM outbox_event_status WHERE id = ANY($1) ORDER BY seq",
        )
        .bind(&refused)
        .fetch_all(&db.pool)
        .await?;
        for (attempts, last_error) in &refused_states {
            assert_eq!(
                *attempts, 1,
                "a refused event was retried: {refused_states:?}"
            );
            let reason = last_error.as_deref().unwrap_or_default();
            assert!(
                reason.contains("`CC`") && reason.contains("array of strings"),
                "last_error does not give the reason: {reason:?}"
            );
        }
        let others_retried: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_event_status WHERE id = ANY($1) AND attempts <> 1",
        )
        .bind(&others)
        .fetch_one(&db.pool)
        .await?;
        assert_eq!(
            others_retried, 0,
            "other events lost an attempt to the refused ones"
        );

        let (received, messages) = broker.received_ids(OTHERS, Duration::from_secs(5)).await?;
        assert_eq!(messages, OTHERS, "each other event arrives once");
        assert_eq!(received, id_set(&others), "exactly the other events arrive");
        Ok(())
    })
    .await
}
