//! Message properties and the connection's `frame_max`.
//!
//! The relay asks the broker for a 32 KiB `frame_max` (it saves lapin's per-connection
//! buffers; see `FRAME_MAX` in the broker connection and `docs/delivery-engine.md`) unless
//! the AMQP URL sets `?frame_max=`. A message's properties, its headers included, travel in one
//! content header frame, so an event whose headers exceed the negotiated frame can never
//! be published on that connection: it becomes `dead` at once, with a `last_error` that
//! names `frame_max` (the way out), and blocks only its own key. With a larger `frame_max`
//! in the URL (up to the broker's own, 128 KiB by default) the same event is delivered.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{
    EventState, RunningRelay, amqp_url, emit_ticket, event_state, id_set, relay_config,
    wait_until_settled, with_db_and_broker,
};
use outbox_core::EmitOptions;
use uuid::Uuid;

/// A header of 40,000 bytes (say a W3C `baggage` or an integration's context blob): over
/// the relay's 32 KiB frame, well within RabbitMQ's default 128 KiB.
const BIG_HEADER: usize = 40_000;

/// What became of the events of one run.
struct Fates {
    /// The event with the big header.
    big: EventState,
    /// An event of the same key, emitted after it.
    follower: EventState,
    /// An event of another key.
    other: EventState,
    /// Message ids that reached the queue, by event.
    received: HashSet<String>,
    /// The ids of (big, follower, other).
    ids: [Uuid; 3],
}

/// Emits the three events, runs a relay on `url` until the big one and the other key's one
/// are settled, and reports.
async fn run_relay_on(url: String) -> Result<Fates> {
    with_db_and_broker(&["#"], async |db, broker| {
        let ticket = Uuid::now_v7();
        let options = EmitOptions::new().header("x-integration-context", "a".repeat(BIG_HEADER));
        let big = emit_ticket(&db.pool, ticket, options).await?;
        let follower = emit_ticket(&db.pool, ticket, EmitOptions::new()).await?;
        let other = emit_ticket(&db.pool, Uuid::now_v7(), EmitOptions::new()).await?;

        let mut config = relay_config(db, broker);
        config.amqp_url = url;
        let relay = RunningRelay::start(config);
        wait_until_settled(&db.pool, &[big, other], Duration::from_secs(60)).await?;
        let (received, _) = broker.received_ids(3, Duration::from_secs(3)).await?;
        relay.stop().await?;
        Ok(Fates {
            big: event_state(&db.pool, big).await?,
            follower: event_state(&db.pool, follower).await?,
            other: event_state(&db.pool, other).await?,
            received,
            ids: [big, follower, other],
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_relays_32_kib_frame_make_the_event_dead_and_block_only_its_key()
-> Result<()> {
    let fates = run_relay_on(amqp_url()).await?;
    let [_, _, other] = fates.ids;

    assert_eq!(
        (fates.big.status.as_str(), fates.big.attempts),
        ("dead", 1),
        "dead at once: {:?}",
        fates.big
    );
    let reason = fates.big.last_error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("frame_max"),
        "last_error should name frame_max: {reason:?}"
    );
    assert_eq!(
        (fates.follower.status.as_str(), fates.follower.attempts),
        ("pending", 0),
        "the next event of the key waits behind its dead head: {:?}",
        fates.follower
    );
    assert_eq!(
        (fates.other.status.as_str(), fates.other.attempts),
        ("delivered", 1),
        "another key's event is not held up: {:?}",
        fates.other
    );
    assert_eq!(
        fates.received,
        id_set(&[other]),
        "only the other key's event arrives"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_frame_max_131072_in_the_url_the_same_event_is_delivered() -> Result<()> {
    let mut url = url::Url::parse(&amqp_url())?;
    url.query_pairs_mut().append_pair("frame_max", "131072");
    let fates = run_relay_on(url.into()).await?;

    for state in [&fates.big, &fates.other] {
        assert_eq!(
            (state.status.as_str(), state.attempts),
            ("delivered", 1),
            "{state:?}"
        );
    }
    assert_eq!(
        fates.received,
        id_set(&fates.ids),
        "all three events arrive, the follower behind its head"
    );
    Ok(())
}
