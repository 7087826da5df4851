//! What the guides' code examples (`docs/guides/*.md`) run on when they are doctests.
//!
//! Each guide is included below as the doc comment of a private item, so `cargo test --doc
//! -p integration-tests` compiles and runs its ```rust blocks. A block's hidden last lines
//! call one of these helpers, so the example runs on a database (and a broker) of its own
//! and leaves nothing behind, like every other test.

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{RunningRelay, TestBroker, TestDb, relay_config};

/// Runs `example` on the pool of a fresh migrated [`TestDb`], which is dropped afterwards.
pub fn with_db(example: impl AsyncFnOnce(&PgPool) -> Result<()>) -> Result<()> {
    runtime()?.block_on(async {
        let db = TestDb::new().await?;
        let outcome = example(&db.pool).await;
        let cleaned = db.cleanup().await;
        outcome.and(cleaned)
    })
}

/// Runs `example` with a fresh database, a fresh exchange and queue (bound with
/// `binding_keys`), a relay publishing from the one to the other, and a channel for the
/// example's consumer; cleans all of it up afterwards.
pub fn with_db_and_relay(
    binding_keys: &[&str],
    example: impl AsyncFnOnce(&PgPool, &TestBroker, &lapin::Channel) -> Result<()>,
) -> Result<()> {
    runtime()?.block_on(crate::with_db_and_broker(
        binding_keys,
        async |db: &TestDb, broker: &TestBroker| {
            let relay = RunningRelay::start(relay_config(db, broker));
            let connection = lapin::Connection::connect(
                &crate::amqp_url(),
                lapin::ConnectionProperties::default(),
            )
            .await
            .context("connect the example's consumer")?;
            let channel = connection.create_channel().await?;
            let outcome = example(&db.pool, broker, &channel).await;
            let _ = connection.close(200, "done".into()).await;
            let stopped = relay.stop().await;
            outcome.and(stopped)
        },
    ))
}

/// Replays the delivered events `ids` as an operator would (`outbox-relay replay --status
/// delivered --id …`), once they are all delivered: their messages go out again with the
/// same ids.
pub async fn replay_delivered(pool: &PgPool, ids: &[Uuid]) -> Result<()> {
    use outbox_relay::ops::replay::{ReplayRequest, replay};
    use outbox_relay::ops::{EventFilter, ReplayableStatus};
    crate::wait_until(
        Duration::from_secs(30),
        "the events are delivered",
        || async {
            let delivered: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox_event_status WHERE id = ANY($1) AND status = 'delivered'",
            )
            .bind(ids)
            .fetch_one(pool)
            .await?;
            Ok(delivered == i64::try_from(ids.len())?)
        },
    )
    .await?;
    let request = ReplayRequest {
        status: ReplayableStatus::Delivered,
        filter: EventFilter {
            ids: ids.to_vec(),
            ..EventFilter::default()
        },
        limit: None,
        all: false,
    };
    replay(pool, &request, "guide", false).await?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

#[cfg(doctest)]
#[doc = include_str!("../../docs/guides/getting-started.md")]
struct GettingStarted;

#[cfg(doctest)]
#[doc = include_str!("../../docs/guides/producing-with-sql.md")]
struct ProducingWithSql;

#[cfg(doctest)]
#[doc = include_str!("../../docs/guides/consuming.md")]
struct Consuming;

#[cfg(doctest)]
#[doc = include_str!("../../docs/guides/operating.md")]
struct Operating;

#[cfg(doctest)]
#[doc = include_str!("../../docs/guides/event-types.md")]
struct EventTypes;
